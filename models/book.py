"""Books: accounts, their positions and collateral, validated, with sparse holdings.

A book is three tables (pandas frames, CSV or Parquet files with the same columns):

``instruments`` (one row per tradable instrument)
    ``instrument_id`` (unique text), ``type`` (see :data:`INSTRUMENT_TYPES`), ``underlying``
    (e.g. ``BTC``), and as the type needs: ``multiplier`` (units of the underlying per contract
    for spot, linear contracts and options; default 1), ``face_value`` (USD per contract of
    inverse futures/perpetuals), ``strike`` (USD, options), ``expiry`` (years from the
    valuation date, futures and options), ``option_type`` (``call``/``put``),
    ``funding_rate`` (perpetuals: decimal rate per 8-hour interval, positive means longs pay
    shorts; default 0).
``positions`` (one row per holding)
    ``account_id``, ``instrument_id``, ``quantity`` (signed contracts; negative is short),
    ``entry_price`` (USD per unit of the underlying for linear and inverse contracts; the
    premium per unit of the underlying for options, in USD for ``option`` and in coin for
    ``inverse_option``, as Deribit quotes it).
``collateral`` (one row per account and asset)
    ``account_id``, ``asset`` (``USDT``, ``BTC`` ...), ``amount`` (units of the asset, >= 0),
    ``haircut`` (decimal in [0, 1), default 0).
``orders`` (optional, one row per resting order)
    ``account_id``, ``instrument_id`` (defined in the instruments table), ``side`` (``buy`` /
    ``sell``, any case), ``quantity`` (> 0, contracts), ``price`` (> 0, limit price, units as
    ``entry_price``). Margin methods charge them through
    :class:`marginlab.models.orders.WithOrders`; holdings ignore them.

Errors in the tables name the source (file or frame), the row and the column. For files, the
row is the line number (the header is line 1); for frames, the index label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._warn import warn as _warn

__all__ = [
    "INSTRUMENT_TYPES",
    "LINEAR_TYPES",
    "INVERSE_TYPES",
    "OPTION_TYPES",
    "STABLECOINS",
    "Book",
    "BookError",
    "BookWarning",
    "read_table",
]

INSTRUMENT_TYPES = (
    "spot",
    "linear_perp",
    "linear_future",
    "inverse_perp",
    "inverse_future",
    "option",
    "inverse_option",
)
"""Instrument types a book may hold."""

LINEAR_TYPES = ("spot", "linear_perp", "linear_future")
INVERSE_TYPES = ("inverse_perp", "inverse_future")
OPTION_TYPES = ("option", "inverse_option")
PERP_TYPES = ("linear_perp", "inverse_perp")
DATED_TYPES = ("linear_future", "inverse_future", "option", "inverse_option")

STABLECOINS = frozenset({"USD", "USDT", "USDC", "DAI", "BUSD", "FDUSD", "TUSD", "USDE"})
"""Assets valued at 1 USD."""

TYPE_CODES = {name: i for i, name in enumerate(INSTRUMENT_TYPES)}


class BookError(ValueError):
    """A book table is malformed; the message names the source, row and column."""


class BookWarning(UserWarning):
    """A book was accepted under a documented rule the user should know about."""


@dataclass(frozen=True)
class _Source:
    name: str
    is_file: bool

    def where(self, frame: pd.DataFrame, pos: int, column: str | None) -> str:
        if self.is_file and frame.attrs.get("parquet"):
            row = f"row {pos + 1}"  # Parquet has no lines: data rows counted from 1
        elif self.is_file:
            lines = frame.attrs.get("lines")
            row = f"line {lines[pos] if lines is not None else pos + 2}"
        else:
            row = f"row {frame.index[pos]!r}"
        col = f", column {column!r}" if column is not None else ""
        return f"{self.name}, {row}{col}"


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV or Parquet table (by extension) with every column as read, ids as text."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        _check_utf8(p)
        try:
            frame = pd.read_csv(p, dtype={"account_id": str, "instrument_id": str,
                                          "asset": str, "underlying": str},
                                keep_default_na=True, skip_blank_lines=False,
                                encoding="utf-8")
        except pd.errors.EmptyDataError:
            raise BookError(f"{p}: the file is empty (a header row is required)") from None
        except pd.errors.ParserError as exc:
            raise BookError(f"{p}: not a valid CSV table: {exc}") from None
        # Blank lines are kept by the reader so that row i sits on line i + 2; drop them now
        # and remember each remaining row's line for error messages. (A quoted field that
        # spans several lines would still shift the count.)
        blank = frame.isna().all(axis=1).to_numpy()
        lines = np.flatnonzero(~blank) + 2
        frame = frame.loc[~blank].reset_index(drop=True)
        frame.attrs["lines"] = lines
        return frame
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(p)
        except (OSError, ValueError) as exc:
            msg = " ".join(str(exc).split())[:300]
            raise BookError(f"{p}: not a readable Parquet table: {msg}") from None
        frame.attrs["parquet"] = True
        return frame
    raise BookError(f"{p}: unknown table format {suffix!r}; use .csv or .parquet")


def _check_utf8(p: Path) -> None:
    """Refuse a file that is not UTF-8 text, naming the line and column of the first bad
    byte (pandas would raise a multi-line decoding error deep inside its parser)."""
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise BookError(f"{p}, line {line}, column {col} (byte {exc.start}): not UTF-8 text "
                        f"(byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


_CONTROL = r"[\x00-\x1f\x7f]"

LIMITS = {
    "quantity": 1e12, "multiplier": 1e9, "face_value": 1e9, "strike": 1e12,
    "entry_price": 1e12, "expiry": 100.0, "amount": 1e15,
}
"""Largest magnitudes accepted per column (contracts, units, USD, years): beyond them a
margin would overflow or be meaningless, so the book is refused."""


def _require_rows(frame: pd.DataFrame, src: _Source) -> None:
    if len(frame) == 0:
        raise BookError(f"{src.name}: no rows (the table has only a header)")


def _require(frame: pd.DataFrame, src: _Source, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BookError(f"{src.name}: missing column(s) {missing}; found {list(frame.columns)}")


def _text(frame: pd.DataFrame, src: _Source, col: str, *, lower: bool = False) -> np.ndarray:
    """A required text column, stripped (vectorised; the error names the first bad row)."""
    ser = frame[col]
    if ((pd.api.types.is_float_dtype(ser) or pd.api.types.is_bool_dtype(ser))
            and ser.notna().any()):
        i = int(np.flatnonzero(ser.notna().to_numpy())[0])
        raise BookError(f"{src.where(frame, i, col)}: must be text or integers, got a "
                        f"{ser.dtype} column (1.0 and 1 would be two different ids)")
    if ser.dtype == object:
        kinds = ser.map(lambda v: isinstance(v, (float, bool, np.floating, np.bool_))
                        and not (isinstance(v, float) and np.isnan(v))).to_numpy(dtype=bool)
        if kinds.any():
            i = int(np.flatnonzero(kinds)[0])
            raise BookError(f"{src.where(frame, i, col)}: must be text or an integer, got "
                            f"{type(ser.iloc[i]).__name__} {ser.iloc[i]!r}")
    text = ser.astype("string").str.strip()
    bad = (ser.isna() | text.isna() | (text == "")).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BookError(f"{src.where(frame, i, col)}: a value is required")
    ctrl = text.str.contains(_CONTROL, regex=True).to_numpy(dtype=bool)
    if ctrl.any():
        i = int(np.flatnonzero(ctrl)[0])
        raise BookError(f"{src.where(frame, i, col)}: control character in {ser.iloc[i]!r}")
    if lower:
        text = text.str.lower()
    return text.to_numpy(dtype=object)


def _number(frame: pd.DataFrame, src: _Source, col: str, *, default: float | None = None,
            required_mask: np.ndarray | None = None, low: float | None = None,
            low_open: bool = False, high: float | None = None, high_open: bool = False,
            what: str = "", limit: float | None = None) -> np.ndarray:
    """A float column: parse, check finiteness and range where required, default elsewhere.

    Vectorised; the error names the first bad row."""
    n = len(frame)
    needed = np.ones(n, bool) if required_mask is None else np.asarray(required_mask, bool)
    if col not in frame.columns:
        if default is None and needed.any():
            i = int(np.flatnonzero(needed)[0])
            raise BookError(f"{src.where(frame, i, col)}: column {col!r} is required {what}")
        return np.full(n, np.nan if default is None else default)
    ser = frame[col]
    if pd.api.types.is_bool_dtype(ser) and n:
        raise BookError(f"{src.where(frame, 0, col)}: must be numbers, got a boolean column")
    if ser.dtype == object:
        is_bool = ser.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        if is_bool.any():
            i = int(np.flatnonzero(is_bool)[0])
            raise BookError(f"{src.where(frame, i, col)}: not a number: {ser.iloc[i]!r}")
    if pd.api.types.is_numeric_dtype(ser):
        x = ser.to_numpy(dtype=float, na_value=np.nan)
    else:
        blank = ser.astype("string").str.strip().fillna("") == ""
        x = pd.to_numeric(ser.where(~blank, None), errors="coerce").to_numpy(dtype=float)
        unparsed = np.isnan(x) & ~blank.to_numpy(dtype=bool) & ser.notna().to_numpy(dtype=bool)
        # the literal text "nan" parses as NaN: treat it as missing, anything else is an error
        text = ser.astype("string").str.strip().str.lower().fillna("")
        unparsed &= (text != "nan").to_numpy(dtype=bool)
        if unparsed.any():
            i = int(np.flatnonzero(unparsed)[0])
            raise BookError(f"{src.where(frame, i, col)}: not a number: {ser.iloc[i]!r}")
    missing = np.isnan(x)
    if default is None:
        bad = missing & needed
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BookError(f"{src.where(frame, i, col)}: a number is required {what}")
    else:
        x = np.where(missing, default, x)
        missing = np.zeros(n, bool)
    inf = np.isinf(x)
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise BookError(f"{src.where(frame, i, col)}: must be finite, got {ser.iloc[i]}")
    check = needed & ~missing
    if limit is not None:
        huge = check & (np.abs(x) > limit)
        if huge.any():
            i = int(np.flatnonzero(huge)[0])
            raise BookError(f"{src.where(frame, i, col)}: must be at most {limit:g} in "
                            f"magnitude, got {x[i]:g}")
    bad = np.zeros(n, bool)
    if low is not None:
        bad |= check & ((x <= low) if low_open else (x < low))
    if high is not None:
        bad |= check & ((x >= high) if high_open else (x > high))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        rng = []
        if low is not None:
            rng.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            rng.append(f"{'<' if high_open else '<='} {high:g}")
        raise BookError(f"{src.where(frame, i, col)}: must be {' and '.join(rng)}, "
                        f"got {x[i]:g}")
    return x


def _unique(frame: pd.DataFrame, src: _Source, ids: np.ndarray, col: str) -> None:
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero(ids == ids[i])[0])
        raise BookError(f"{src.where(frame, i, col)}: duplicate {col} {ids[i]!r} (first at "
                        f"{src.where(frame, first, None)})")


def _source(name: str | None, default: str, is_file: bool) -> _Source:
    return _Source(name or default, is_file)


@dataclass(frozen=True, eq=False)
class Book:
    """A validated book of accounts, positions and collateral.

    Build with :meth:`from_frames` or :meth:`from_files` (or
    :func:`marginlab.models.make_book` for a synthetic one); the constructor expects the
    normalised tables those produce.

    Attributes
    ----------
    instruments : pandas.DataFrame
        Normalised instrument table (all columns present, numeric columns float).
    positions, collateral : pandas.DataFrame
        Normalised position and collateral tables.
    account_ids : numpy.ndarray of str, shape (n_accounts,)
        Sorted account ids: row ``i`` of every per-account array is ``account_ids[i]``.
    underlyings : tuple of str
        Underlyings referenced by instruments, sorted.
    holdings : scipy.sparse.csr_matrix, shape (n_accounts, n_instruments)
        Net quantity of each instrument per account (positions on the same instrument in one
        account are summed: one-way mode).
    position_account, position_instrument : numpy.ndarray of int, shape (n_positions,)
        Account row and instrument column of each position row.
    """

    instruments: pd.DataFrame
    positions: pd.DataFrame
    collateral: pd.DataFrame
    account_ids: np.ndarray = field(init=False)
    underlyings: tuple[str, ...] = field(init=False)
    assets: tuple[str, ...] = field(init=False)
    holdings: sp.csr_matrix = field(init=False)
    collateral_holdings: sp.csr_matrix = field(init=False)
    haircut_holdings: sp.csr_matrix = field(init=False)
    position_account: np.ndarray = field(init=False)
    position_instrument: np.ndarray = field(init=False)
    orders: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        inst, pos, col = self.instruments, self.positions, self.collateral
        acc_codes, accounts = pd.factorize(
            pd.concat([pos["account_id"], col["account_id"]], ignore_index=True), sort=True)
        accounts = np.asarray(accounts, dtype=object)
        pa = acc_codes[: len(pos)].astype(np.int64)
        ca = acc_codes[len(pos):].astype(np.int64)
        pi = pd.Index(inst["instrument_id"]).get_indexer(pos["instrument_id"]).astype(np.int64)
        hold = sp.csr_matrix((pos["quantity"].to_numpy(float), (pa, pi)),
                             shape=(len(accounts), len(inst)))
        hold.sum_duplicates()
        cs, assets_idx = pd.factorize(col["asset"], sort=True)
        assets = tuple(str(a) for a in assets_idx)
        amount = col["amount"].to_numpy(float)
        chold = sp.csr_matrix((amount, (ca, cs)), shape=(len(accounts), len(assets)))
        chold.sum_duplicates()
        hhold = sp.csr_matrix((amount * (1.0 - col["haircut"].to_numpy(float)), (ca, cs)),
                              shape=(len(accounts), len(assets)))
        hhold.sum_duplicates()
        sets = object.__setattr__
        sets(self, "account_ids", accounts)
        sets(self, "underlyings", tuple(sorted(set(inst["underlying"]))))
        sets(self, "assets", assets)
        sets(self, "holdings", hold)
        sets(self, "collateral_holdings", chold)
        sets(self, "haircut_holdings", hhold)
        sets(self, "position_account", pa)
        sets(self, "position_instrument", pi)

    # ------------------------------------------------------------------ sizes
    @property
    def n_accounts(self) -> int:
        """Number of accounts."""
        return len(self.account_ids)

    @property
    def n_instruments(self) -> int:
        """Number of unique instruments."""
        return len(self.instruments)

    @property
    def n_positions(self) -> int:
        """Number of position rows."""
        return len(self.positions)

    def __repr__(self) -> str:
        return (f"Book({self.n_accounts} accounts, {self.n_positions} positions, "
                f"{self.n_instruments} instruments on {', '.join(self.underlyings)}; "
                f"collateral in {', '.join(self.assets)})")

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_frames(cls, instruments: pd.DataFrame, positions: pd.DataFrame,
                    collateral: pd.DataFrame | None = None, *,
                    names: tuple[str, ...] | None = None,
                    files: bool = False, duplicates: str = "sum",
                    orders: pd.DataFrame | None = None) -> Book:
        """Validate three tables and build the book.

        Parameters
        ----------
        instruments, positions, collateral : pandas.DataFrame
            Tables with the columns of the module documentation; ``collateral`` may be
            ``None`` (no collateral).
        names : tuple of 3 (or 4, with orders) str, optional
            Names of the sources for error messages (file paths when read from files).
        files : bool
            Whether the sources are files (errors then cite line numbers).
        duplicates : {"sum", "raise"}
            Several position rows for one account and instrument: summed into one net
            position (one-way mode, the default) with a :class:`BookWarning` naming the
            first repeated row and the count, or refused with a :class:`BookError`.
        orders : pandas.DataFrame, optional
            Resting orders (see the module documentation), validated like positions.

        Raises
        ------
        BookError
            Naming the source, row and column of the first problem found.
        """
        names = tuple(names) if names else ("instruments", "positions", "collateral")
        n_inst, n_pos, n_col = names[:3]
        n_ord = names[3] if len(names) > 3 else "orders"
        inst = _normalise_instruments(instruments, _source(None, n_inst, files))
        if duplicates not in ("raise", "sum"):
            raise ValueError(f"duplicates must be 'raise' or 'sum', got {duplicates!r}")
        pos = _normalise_positions(positions, _source(None, n_pos, files), inst, duplicates)
        if collateral is None:
            collateral = pd.DataFrame({"account_id": [], "asset": [], "amount": [],
                                       "haircut": []})
        col = _normalise_collateral(collateral, _source(None, n_col, files))
        _check_account_spellings(pos, col, positions, collateral, (n_pos, n_col), files)
        orde = None if orders is None else _normalise_orders(orders, _source(None, n_ord, files),
                                                             inst)
        return cls(inst, pos, col, orders=orde)

    @classmethod
    def from_files(cls, instruments: str | os.PathLike[str],
                   positions: str | os.PathLike[str],
                   collateral: str | os.PathLike[str] | None = None, *,
                   duplicates: str = "sum",
                   orders: str | os.PathLike[str] | None = None) -> Book:
        """Read and validate a book from CSV or Parquet files (chosen by extension); see
        :meth:`from_frames` for ``duplicates``; ``orders`` is an optional orders file."""
        frames = [read_table(instruments), read_table(positions),
                  None if collateral is None else read_table(collateral)]
        names = (str(instruments), str(positions),
                 str(collateral) if collateral is not None else "collateral",
                 str(orders) if orders is not None else "orders")
        return cls.from_frames(*frames, names=names, files=True, duplicates=duplicates,
                               orders=None if orders is None else read_table(orders))

    def to_files(self, folder: str | os.PathLike[str], fmt: str = "csv") -> dict[str, Path]:
        """Write the three tables as ``instruments``, ``positions``, ``collateral`` files.

        Each file is written to a temporary name and renamed when complete.
        """
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        tables = [("instruments", self.instruments), ("positions", self.positions),
                  ("collateral", self.collateral)]
        if self.orders is not None:
            tables.append(("orders", self.orders))
        for name, frame in tables:
            final = out / f"{name}.{fmt}"
            tmp = out / f".{name}.{fmt}.tmp"
            try:
                if fmt == "csv":
                    frame.to_csv(tmp, index=False)
                else:
                    frame.to_parquet(tmp, index=False)
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            paths[name] = final
        return paths

    # ------------------------------------------------------------------ views
    def subset(self, accounts: np.ndarray | slice) -> Book:
        """The book restricted to some accounts (by row index array or slice)."""
        keep = set(np.asarray(self.account_ids[accounts]).tolist())
        pos = self.positions[self.positions["account_id"].isin(keep)]
        col = self.collateral[self.collateral["account_id"].isin(keep)]
        orde = None if self.orders is None else self.orders[
            self.orders["account_id"].isin(keep)].reset_index(drop=True)
        return Book(self.instruments, pos.reset_index(drop=True), col.reset_index(drop=True),
                    orders=orde)


def _check_account_spellings(pos: pd.DataFrame, col: pd.DataFrame, raw_pos: pd.DataFrame,
                             raw_col: pd.DataFrame, names: tuple[str, str],
                             files: bool) -> None:
    """Refuse account ids that are the same number written differently (``1`` and ``1.0``,
    ``007`` and ``7``) in the positions and collateral tables, or within one of them: they
    would silently become different accounts."""
    ids = pd.concat([pos["account_id"], col["account_id"]], ignore_index=True)
    num = pd.to_numeric(ids, errors="coerce")
    ok = num.notna().to_numpy()
    if not ok.any():
        return
    frame = pd.DataFrame({"id": ids[ok], "num": num[ok]}).drop_duplicates()
    clash = frame[frame.duplicated("num", keep=False)]
    if clash.empty:
        return
    spellings = sorted(clash[clash["num"] == clash["num"].iloc[0]]["id"].tolist())
    where = []
    for spelled in spellings[:2]:
        for table, name, raw in ((pos, names[0], raw_pos), (col, names[1], raw_col)):
            hit = np.flatnonzero(table["account_id"].to_numpy() == spelled)
            if hit.size:
                src = _Source(name, files)
                ref = raw if len(raw) == len(table) else table
                where.append(f"{spelled!r} at {src.where(ref, int(hit[0]), 'account_id')}")
                break
    raise BookError("; ".join(where) + ": the same account id written differently "
                    f"(spellings {spellings}); write each account id one way in every file")


def _normalise_instruments(frame: pd.DataFrame, src: _Source) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{src.name} must be a pandas DataFrame, got {type(frame).__name__}")
    _require(frame, src, ("instrument_id", "type", "underlying"))
    _require_rows(frame, src)
    ids = _text(frame, src, "instrument_id")
    _unique(frame, src, ids, "instrument_id")
    types = _text(frame, src, "type", lower=True)
    for i, t in enumerate(types):
        if t not in TYPE_CODES:
            raise BookError(f"{src.where(frame, i, 'type')}: unknown instrument type {t!r}; "
                            f"known: {', '.join(INSTRUMENT_TYPES)}")
    und = pd.Series(_text(frame, src, "underlying")).str.upper().to_numpy(dtype=object)
    is_opt = np.isin(types, OPTION_TYPES)
    is_inv = np.isin(types, INVERSE_TYPES)
    is_dated = np.isin(types, DATED_TYPES)
    is_perp = np.isin(types, PERP_TYPES)
    mult = _number(frame, src, "multiplier", default=1.0, low=0.0, low_open=True,
                   limit=LIMITS["multiplier"])
    face = _number(frame, src, "face_value", required_mask=is_inv, low=0.0, low_open=True,
                   what="for inverse contracts (USD per contract)", limit=LIMITS["face_value"])
    strike = _number(frame, src, "strike", required_mask=is_opt, low=0.0, low_open=True,
                     what="for options", limit=LIMITS["strike"])
    expiry = _number(frame, src, "expiry", required_mask=is_dated, low=0.0,
                     what="for futures and options (years to expiry)", limit=LIMITS["expiry"])
    expired = is_opt & (expiry <= 0)
    if expired.any():
        i = int(np.flatnonzero(expired)[0])
        raise BookError(f"{src.where(frame, i, 'expiry')}: an option needs expiry > 0 years "
                        f"(an expired option is settled, not margined), got {expiry[i]:g}")
    funding = _number(frame, src, "funding_rate", default=0.0, low=-1.0, high=1.0)
    funding = np.where(is_perp, funding, 0.0)
    if "option_type" in frame.columns:
        raw = frame["option_type"].to_numpy(dtype=object)
    else:
        raw = np.full(len(frame), None, dtype=object)
    opt_type = np.full(len(frame), "", dtype=object)
    for i in np.flatnonzero(is_opt):
        v = raw[i]
        s = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip().lower()
        if s in ("c", "call"):
            opt_type[i] = "call"
        elif s in ("p", "put"):
            opt_type[i] = "put"
        else:
            raise BookError(f"{src.where(frame, i, 'option_type')}: must be 'call' or 'put' "
                            f"for options, got {v!r}")
    return pd.DataFrame({
        "instrument_id": ids.astype(str), "type": types.astype(str), "underlying": und.astype(str),
        "multiplier": mult, "face_value": np.where(is_inv, face, np.nan),
        "strike": np.where(is_opt, strike, np.nan), "expiry": np.where(is_dated, expiry, np.nan),
        "option_type": opt_type.astype(str), "funding_rate": funding,
    })


def _normalise_positions(frame: pd.DataFrame, src: _Source, inst: pd.DataFrame,
                         duplicates: str = "sum") -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{src.name} must be a pandas DataFrame, got {type(frame).__name__}")
    _require(frame, src, ("account_id", "instrument_id", "quantity", "entry_price"))
    _require_rows(frame, src)
    acc = _text(frame, src, "account_id")
    ids = _text(frame, src, "instrument_id")
    unknown = ~pd.Series(ids).isin(inst["instrument_id"]).to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise BookError(f"{src.where(frame, i, 'instrument_id')}: instrument {ids[i]!r} is not "
                        "defined in the instruments table")
    qty = _number(frame, src, "quantity", limit=LIMITS["quantity"])
    entry = _number(frame, src, "entry_price", low=0.0, low_open=True,
                    limit=LIMITS["entry_price"])
    dup = pd.DataFrame({"a": acc, "i": ids}).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((acc == acc[i]) & (ids == ids[i]))[0])
        if duplicates == "sum":
            _warn(f"{src.where(frame, i, 'instrument_id')}: {int(dup.sum())} position "
                  f"rows repeat an account and instrument (first: account {acc[i]!r}, "
                  f"{ids[i]!r}, also at {src.where(frame, first, None)}); they are "
                  "summed into net positions (one-way mode; duplicates='raise' "
                  "refuses them)", BookWarning)
        else:
            raise BookError(f"{src.where(frame, i, 'instrument_id')}: account {acc[i]!r} holds "
                            f"instrument {ids[i]!r} twice (first at "
                            f"{src.where(frame, first, None)}); give one net position per "
                            "account and instrument (duplicates='sum' nets them)")
    return pd.DataFrame({"account_id": acc.astype(str), "instrument_id": ids.astype(str),
                         "quantity": qty, "entry_price": entry})


def _normalise_orders(frame: pd.DataFrame, src: _Source, inst: pd.DataFrame) -> pd.DataFrame:
    """Validate an orders table like positions (file, line, column in every error)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{src.name} must be a pandas DataFrame, got {type(frame).__name__}")
    _require(frame, src, ("account_id", "instrument_id", "side", "quantity", "price"))
    _require_rows(frame, src)
    acc = _text(frame, src, "account_id")
    ids = _text(frame, src, "instrument_id")
    unknown = ~pd.Series(ids).isin(inst["instrument_id"]).to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise BookError(f"{src.where(frame, i, 'instrument_id')}: instrument {ids[i]!r} is not "
                        "defined in the instruments table")
    side = _text(frame, src, "side", lower=True)
    bad = ~np.isin(side, ("buy", "sell"))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BookError(f"{src.where(frame, i, 'side')}: side must be 'buy' or 'sell', got "
                        f"{frame['side'].iloc[i]!r}")
    qty = _number(frame, src, "quantity", low=0.0, low_open=True, limit=LIMITS["quantity"])
    price = _number(frame, src, "price", low=0.0, low_open=True, limit=LIMITS["entry_price"])
    return pd.DataFrame({"account_id": acc.astype(str), "instrument_id": ids.astype(str),
                         "side": side.astype(str), "quantity": qty, "price": price})


def _normalise_collateral(frame: pd.DataFrame, src: _Source) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{src.name} must be a pandas DataFrame, got {type(frame).__name__}")
    _require(frame, src, ("account_id", "asset", "amount"))
    acc = _text(frame, src, "account_id")
    asset = pd.Series(_text(frame, src, "asset")).str.upper().to_numpy(dtype=object)
    amount = _number(frame, src, "amount", low=0.0, limit=LIMITS["amount"])
    haircut = _number(frame, src, "haircut", default=0.0, low=0.0, high=1.0, high_open=True)
    dup = pd.DataFrame({"a": acc, "b": asset}).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((acc == acc[i]) & (asset == asset[i]))[0])
        raise BookError(f"{src.where(frame, i, 'asset')}: duplicate collateral row for "
                        f"account {acc[i]!r} and asset {asset[i]!r} (first at "
                        f"{src.where(frame, first, None)})")
    return pd.DataFrame({"account_id": acc.astype(str), "asset": asset.astype(str),
                         "amount": amount, "haircut": haircut})
