r"""Exchange-style leverage / margin bracket tables and the margin of positions.

A bracket table ("leverage and margin tiers", "position brackets") maps the notional value of
a position to its maximum leverage and maintenance margin rate (MMR). Every exchange that
publishes such tables (Binance USDⓈ-M and COIN-M, Bybit's risk limits, OKX's position tiers)
applies the rate of the bracket the *whole* notional falls in and subtracts a maintenance
amount that keeps the margin continuous at the bracket boundaries:

.. math:: MM(N) = N \cdot MMR_b - cum_b, \qquad
          cum_n = floor_n \,(MMR_n - MMR_{n-1}) + cum_{n-1}, \quad cum_1 = 0

SOURCE: Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", sections
"Maintenance Margin Rate" and "Maintenance Amount" ("Maintenance Amount formula = [Floor of
Position Bracket on Level n * difference between Maintenance Margin Rate on Level n and
Maintenance Margin Rate on Level n-1] + Maintenance Amount on Level n-1"; worked there as
250,000 * (1% - 0.5%) + 50 = 1,300 USDT) and "Maintenance Margin = Position Notional *
Maintenance Margin Rate on the level of position notional - Maintenance Amount on the level of
position notional"; the COIN-M page of the same title says the same with notional in coin.

Linear (USDⓈ-M) tables measure notional in the quote currency, ``N = |size| * price``; inverse
(COIN-M) tables measure it in the coin, ``N = |contracts| * contract_size / price``.

Bracket membership follows Binance's published tables, ``floor < N <= cap`` ("0 < Position <=
50,000"); a notional of exactly 0 is in the first bracket.
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import _check_range

__all__ = [
    "BracketTable",
    "AccountMargin",
    "maintenance_amounts",
    "position_notional",
    "unrealized_pnl",
    "cross_maintenance_margin",
    "binance_btcusdt_2021",
]

# canonical column -> accepted spellings (ours, Binance's /fapi/v1/leverageBracket and
# /dapi/v1/leverageBracket field names, short forms)
_ALIASES: dict[str, tuple[str, ...]] = {
    "notional_floor": ("notional_floor", "notionalFloor", "qtyFloor", "floor"),
    "notional_cap": ("notional_cap", "notionalCap", "qtyCap", "cap"),
    "max_leverage": ("max_leverage", "initialLeverage", "leverage"),
    "maintenance_margin_rate": ("maintenance_margin_rate", "maintMarginRatio", "mmr"),
    "initial_margin_rate": ("initial_margin_rate", "imr"),
    "maintenance_amount": ("maintenance_amount", "cum", "maintAmount"),
}
_REQUIRED = ("notional_floor", "notional_cap", "max_leverage", "maintenance_margin_rate")
_OPTIONAL = ("initial_margin_rate", "maintenance_amount")
_IGNORED = ("bracket", "tier", "level")

# A file's initial_margin_rate may be rounded as published (Binance prints 1/3 as 33.30 %).
_IMR_TOL = 5e-4


def maintenance_amounts(notional_floor: Any, maintenance_margin_rate: Any) -> np.ndarray:
    r"""The maintenance-amount ladder of a bracket table.

    .. math:: cum_1 = 0, \qquad cum_n = floor_n \,(MMR_n - MMR_{n-1}) + cum_{n-1}

    SOURCE: Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
    section "Maintenance Amount" (and the COIN-M page of the same title).

    Parameters
    ----------
    notional_floor, maintenance_margin_rate : array_like, shape (n_brackets,)
        Bracket floors and maintenance margin rates, in bracket order.

    Returns
    -------
    numpy.ndarray, shape (n_brackets,)
        ``cum`` for each bracket; it makes ``N * MMR - cum`` continuous at every floor.

    Examples
    --------
    >>> maintenance_amounts([0, 50_000, 250_000], [0.004, 0.005, 0.01]).tolist()
    [0.0, 50.0, 1300.0]
    """
    floor = np.asarray(notional_floor, dtype=np.float64).reshape(-1)
    mmr = np.asarray(maintenance_margin_rate, dtype=np.float64).reshape(-1)
    if floor.shape != mmr.shape:
        raise ValueError(f"notional_floor has {floor.size} brackets but maintenance_margin_rate "
                         f"has {mmr.size}")
    steps = np.zeros_like(floor)
    steps[1:] = floor[1:] * np.diff(mmr)
    return np.cumsum(steps)


def _column_error(source: str, row: str, column: str, problem: str) -> ValueError:
    return ValueError(f"{source}, {row}, column '{column}': {problem}")


def _as_column(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (one value per bracket), got "
                         f"shape {arr.shape}")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class BracketTable:
    r"""A leverage and margin bracket table, validated on construction.

    Parameters
    ----------
    notional_floor, notional_cap : array_like, shape (n_brackets,)
        Notional range of each bracket, ``floor < N <= cap``: quote currency (USDT) for a
        linear table, coin for an inverse one. The first floor is 0 and each floor equals the
        previous cap (no gaps, no overlaps).
    max_leverage : array_like, shape (n_brackets,)
        Maximum leverage of each bracket, >= 1. The initial margin rate is ``1 / max_leverage``
        (Binance, "Leverage and Margin of USDⓈ-M Futures": initial margin = notional /
        leverage).
    maintenance_margin_rate : array_like, shape (n_brackets,)
        MMR of each bracket, in [0, 1], strictly increasing, and never above the initial
        margin rate.
    maintenance_amount : array_like, optional
        Published maintenance amounts (``cum``). Checked against the ladder
        :func:`maintenance_amounts` (relative 1e-9); the ladder is what is stored and used.
    initial_margin_rate : array_like, optional
        Published initial margin rates, checked against ``1 / max_leverage`` to 5e-4
        (exchanges print them rounded, e.g. 33.30 % for 3x).
    inverse : bool
        True for a coin-margined (COIN-M) table whose notional is in coin.
    name : str
        A label, e.g. ``"BTCUSDT"``.
    source, source_rows, source_columns :
        Where the rows came from (file name, one label per row, the file's spelling of each
        column); set by the readers so that an error names the file, row and column. Leave
        empty when building directly: errors then name the argument and the bracket.

    Notes
    -----
    .. math:: MM(N) = N \cdot MMR_b - cum_b, \qquad IM(N) = N / \min(L, L^{max}_b)

    where ``b`` is the bracket with ``floor_b < N <= cap_b``. SOURCE: Binance, "How to
    Calculate Liquidation Price of USDⓈ-M Futures Contracts" (maintenance margin and amount)
    and "Leverage and Margin of USDⓈ-M Futures" (initial margin = notional / leverage, the
    leverage limited by the position's bracket).

    Because of the ladder, ``MM(N) = max_k (N MMR_k - cum_k)`` for ``N >= 0``: the margin is
    the upper envelope of the bracket lines, continuous and increasing in ``N``.

    Examples
    --------
    >>> t = BracketTable([0, 50_000, 250_000], [50_000, 250_000, 1_000_000], [125, 100, 50],
    ...                  [0.004, 0.005, 0.01], name="BTCUSDT (first three brackets)")
    >>> t.maintenance_amount.tolist()
    [0.0, 50.0, 1300.0]
    >>> t.maintenance_margin(500_000.0)
    3700.0
    """

    notional_floor: Any
    notional_cap: Any
    max_leverage: Any
    maintenance_margin_rate: Any
    maintenance_amount: Any = None
    initial_margin_rate: Any = None
    inverse: bool = False
    name: str = ""
    source: str = field(default="", repr=False)
    source_rows: tuple[str, ...] = field(default=(), repr=False)
    source_columns: Mapping[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.inverse, (bool, np.bool_)):
            raise TypeError(f"inverse must be True or False, got {self.inverse!r}")
        from_file = bool(self.source)
        cols: dict[str, Any] = {}  # column -> read-only float array, or None if not given
        for col in _REQUIRED + _OPTIONAL:
            value = getattr(self, col)
            cols[col] = None if value is None else _as_column(col, value)
        n = cols["notional_floor"].size
        for col, arr in cols.items():
            if arr is not None and arr.size != n:
                raise ValueError(f"{col} has {arr.size} brackets but notional_floor has {n}")
        rows = tuple(self.source_rows) if self.source_rows else tuple(
            f"bracket {i + 1}" for i in range(n))
        if len(rows) != n:
            raise ValueError(f"source_rows has {len(rows)} labels for {n} brackets")
        source = self.source or "BracketTable"

        spelled = dict(self.source_columns or {})

        def fail(i: int, col: str, problem: str) -> ValueError:
            if from_file:
                return _column_error(source, rows[i], spelled.get(col, col), problem)
            return ValueError(f"{col}[{i}] ({rows[i]}): {problem}")

        for col, arr in cols.items():
            if arr is not None:
                bad = np.flatnonzero(~np.isfinite(arr))
                if bad.size:
                    i = int(bad[0])
                    raise fail(i, col, f"must be a finite number, got {arr[i]!r}")

        floor, cap = cols["notional_floor"], cols["notional_cap"]
        lev, mmr = cols["max_leverage"], cols["maintenance_margin_rate"]
        if floor[0] != 0.0:
            raise fail(0, "notional_floor", f"the first bracket must start at 0, got "
                       f"{floor[0]:g}")
        for i in range(1, n):
            if floor[i] <= floor[i - 1]:
                raise fail(i, "notional_floor", f"floors must increase from row to row: "
                           f"{floor[i]:g} is not above the previous floor {floor[i - 1]:g}")
        for i in range(n):
            if cap[i] <= floor[i]:
                raise fail(i, "notional_cap", f"cap {cap[i]:g} must exceed the bracket's "
                           f"floor {floor[i]:g}")
        for i in range(1, n):
            if not math.isclose(floor[i], cap[i - 1], rel_tol=1e-12, abs_tol=0.0):
                kind = "gap" if floor[i] > cap[i - 1] else "overlap"
                raise fail(i, "notional_floor", f"{kind} between brackets: floor {floor[i]:g} "
                           f"must equal the previous bracket's cap {cap[i - 1]:g}")
        for i in range(n):
            if not 0.0 <= mmr[i] <= 1.0:
                raise fail(i, "maintenance_margin_rate", f"must be in [0, 1], got {mmr[i]:g}")
        for i in range(1, n):
            if mmr[i] <= mmr[i - 1]:
                raise fail(i, "maintenance_margin_rate", f"rates must increase from bracket "
                           f"to bracket: {mmr[i]:g} is not above {mmr[i - 1]:g}")
        for i in range(n):
            if lev[i] < 1.0:
                raise fail(i, "max_leverage", f"must be >= 1, got {lev[i]:g}")
        imr = 1.0 / lev
        given_imr = cols["initial_margin_rate"]
        if given_imr is not None:
            for i in range(n):
                if not 0.0 < given_imr[i] <= 1.0:
                    raise fail(i, "initial_margin_rate", f"must be in (0, 1], got "
                               f"{given_imr[i]:g}")
                if abs(given_imr[i] - imr[i]) > _IMR_TOL:
                    raise fail(i, "initial_margin_rate", f"{given_imr[i]:g} disagrees with "
                               f"1 / max_leverage = {imr[i]:.6g}")
        for i in range(n):
            if imr[i] < mmr[i]:
                col = "initial_margin_rate" if given_imr is not None else "max_leverage"
                raise fail(i, col, f"initial margin rate 1/{lev[i]:g} = {imr[i]:.6g} is below "
                           f"the maintenance margin rate {mmr[i]:g}")
        cum = maintenance_amounts(floor, mmr)
        given_cum = cols["maintenance_amount"]
        if given_cum is not None:
            atol = 1e-12 * float(cap[-1])
            for i in range(n):
                if not math.isclose(given_cum[i], cum[i], rel_tol=1e-9, abs_tol=atol):
                    raise fail(i, "maintenance_amount", f"{given_cum[i]:.10g} disagrees with "
                               f"the ladder floor_n*(MMR_n - MMR_n-1) + cum_n-1 = "
                               f"{cum[i]:.10g}")
        cum.flags.writeable = False
        imr.flags.writeable = False
        object.__setattr__(self, "maintenance_amount", cum)
        object.__setattr__(self, "initial_margin_rate", imr)
        for col in _REQUIRED:
            object.__setattr__(self, col, cols[col])
        object.__setattr__(self, "inverse", bool(self.inverse))
        object.__setattr__(self, "source_rows", rows)
        object.__setattr__(self, "source_columns", spelled)

    # ------------------------------------------------------------------ readers
    @classmethod
    def from_frame(cls, frame: Any, *, inverse: bool = False, name: str = "",
                   source: str = "") -> BracketTable:
        """Build from a pandas DataFrame (or a mapping of columns).

        Columns: ``notional_floor``, ``notional_cap``, ``max_leverage``,
        ``maintenance_margin_rate``, optional ``maintenance_amount`` and
        ``initial_margin_rate`` (Binance's API names ``notionalFloor``/``qtyFloor``,
        ``notionalCap``/``qtyCap``, ``initialLeverage``, ``maintMarginRatio``, ``cum`` are
        accepted). Errors name the frame's index label as the row.
        """
        import pandas as pd

        df = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
        src = source or "DataFrame"
        columns = _resolve_columns([str(c) for c in df.columns], src)
        labels = tuple(f"row {label!r}" for label in df.index)
        data: dict[str, list[float]] = {}
        for canon, actual in columns.items():
            values = []
            for label, raw in zip(labels, df[actual].tolist(), strict=True):
                values.append(_to_float(raw, src, label, actual))
            data[canon] = values
        return cls(**data, inverse=inverse, name=name, source=src, source_rows=labels,
                   source_columns=columns)

    @classmethod
    def from_csv(cls, path: str | Path, *, inverse: bool = False,
                 name: str = "") -> BracketTable:
        """Read a CSV file with a header row; lines starting with ``#`` are comments.

        Columns as in :meth:`from_frame`. Errors name the file, the line number (the header is
        line 1 unless preceded by comments) and the column.
        """
        path = Path(path)
        src = f"file '{path}'"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{src}: cannot read: {exc.strerror or exc}") from None
        header: list[str] | None = None
        records: list[tuple[int, list[str]]] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in next(csv.reader([line]))]
            if header is None:
                header = cells
            else:
                records.append((lineno, cells))
        if header is None or not records:
            raise ValueError(f"{src}: needs a header row and at least one bracket row")
        columns = _resolve_columns(header, src)
        index = {c: header.index(c) for c in header}
        data: dict[str, list[float]] = {canon: [] for canon in columns}
        labels = []
        for lineno, cells in records:
            label = f"row {lineno}"
            if len(cells) != len(header):
                raise ValueError(f"{src}, {label}: has {len(cells)} cells but the header has "
                                 f"{len(header)}")
            labels.append(label)
            for canon, actual in columns.items():
                data[canon].append(_to_float(cells[index[actual]], src, label, actual))
        return cls(**data, inverse=inverse, name=name or path.stem, source=src,
                   source_rows=tuple(labels), source_columns=columns)

    @classmethod
    def from_toml(cls, path: str | Path, *, name: str = "") -> BracketTable:
        """Read a TOML file: optional top-level ``name`` and ``inverse``, then one
        ``[[bracket]]`` table per bracket with the columns of :meth:`from_frame` as keys.

        Errors name the file, the bracket (its position among the ``[[bracket]]`` tables,
        counting from 1) and the key.
        """
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        path = Path(path)
        src = f"file '{path}'"
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{src}: cannot read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{src}: not valid TOML: {exc}") from None
        brackets = doc.get("bracket")
        if not isinstance(brackets, list) or not brackets:
            raise ValueError(f"{src}: needs one or more [[bracket]] tables")
        inverse = doc.get("inverse", False)
        if not isinstance(inverse, bool):
            raise ValueError(f"{src}, key 'inverse': must be true or false, got {inverse!r}")
        keys: list[str] = []
        for entry in brackets:
            keys.extend(k for k in entry if k not in keys)
        columns = _resolve_columns(keys, src)
        data: dict[str, list[float]] = {canon: [] for canon in columns}
        labels = []
        for i, entry in enumerate(brackets, start=1):
            label = f"row {i} ([[bracket]] number {i})"
            labels.append(label)
            for canon, actual in columns.items():
                if actual not in entry:
                    raise _column_error(src, label, actual, "missing")
                data[canon].append(_to_float(entry[actual], src, label, actual))
        return cls(**data, inverse=inverse, name=name or str(doc.get("name", path.stem)),
                   source=src, source_rows=tuple(labels), source_columns=columns)

    def to_frame(self) -> Any:
        """The table as a pandas DataFrame, one row per bracket (index from 1)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "notional_floor": self.notional_floor,
                "notional_cap": self.notional_cap,
                "max_leverage": self.max_leverage,
                "initial_margin_rate": self.initial_margin_rate,
                "maintenance_margin_rate": self.maintenance_margin_rate,
                "maintenance_amount": self.maintenance_amount,
            },
            index=pd.RangeIndex(1, self.n_brackets + 1, name="bracket"),
        )

    # ------------------------------------------------------------------ lookups
    @property
    def n_brackets(self) -> int:
        """Number of brackets."""
        return int(self.notional_floor.size)

    @property
    def max_notional(self) -> float:
        """The last bracket's cap: the largest position the table allows."""
        return float(self.notional_cap[-1])

    def _notional(self, notional: Any, extend_last: bool) -> np.ndarray:
        arr = _real_array("notional", notional)
        _check_range("notional", arr.reshape(-1), 0.0, None if extend_last else self.max_notional,
                     False, False, scalar=arr.ndim == 0)
        return arr

    def bracket_index(self, notional: Any, *, extend_last: bool = False) -> Any:
        """Index (0-based) of the bracket each notional falls in: ``floor < N <= cap``.

        ``notional`` >= 0 (an absolute value); above the last cap raises unless
        ``extend_last`` (the last bracket then continues without limit, as a scenario price
        can push a position beyond what the exchange would let one open).
        """
        arr = self._notional(notional, extend_last)
        idx = np.minimum(np.searchsorted(self.notional_cap, arr, side="left"),
                         self.n_brackets - 1)
        return int(idx) if idx.ndim == 0 else idx

    def maintenance_margin(self, notional: Any, *, extend_last: bool = False) -> Any:
        r""":math:`MM = N \cdot MMR_b - cum_b`, vectorised over any array of notionals.

        SOURCE: Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts":
        "Maintenance Margin = Position Notional * Maintenance Margin Rate on the level of
        position notional - Maintenance Amount on the level of position notional".
        """
        arr = self._notional(notional, extend_last)
        idx = np.minimum(np.searchsorted(self.notional_cap, arr, side="left"),
                         self.n_brackets - 1)
        out = arr * self.maintenance_margin_rate[idx] - self.maintenance_amount[idx]
        return _out(out)

    def max_leverage_at(self, notional: Any, *, extend_last: bool = False) -> Any:
        """Maximum leverage allowed for a position of this notional."""
        idx = np.asarray(self.bracket_index(notional, extend_last=extend_last))
        return _out(self.max_leverage[idx])

    def initial_margin(self, notional: Any, leverage: Any = None, *,
                       extend_last: bool = False) -> Any:
        r""":math:`IM = N / \min(L, L^{max}_b)`: notional over the chosen leverage, the
        leverage capped by the bracket's maximum; ``leverage=None`` uses the maximum.

        SOURCE: Binance, "Leverage and Margin of USDⓈ-M Futures" ("the Initial Margin is
        determined by the leverage you selected"; the larger the position, the lower the
        maximum leverage).
        """
        arr = self._notional(notional, extend_last)
        idx = np.minimum(np.searchsorted(self.notional_cap, arr, side="left"),
                         self.n_brackets - 1)
        lev_max = self.max_leverage[idx]
        if leverage is None:
            lev = lev_max
        else:
            lev_arr = _real_array("leverage", leverage)
            _check_range("leverage", lev_arr.reshape(-1), 1.0, None, False, False,
                         scalar=lev_arr.ndim == 0)
            lev = np.minimum(lev_arr, lev_max)
        return _out(arr / lev)

    # --------------------------------------------------------------- positions
    def position_maintenance_margin(self, size: Any, mark_price: Any, *,
                                    contract_size: float = 1.0,
                                    extend_last: bool = False) -> Any:
        """Isolated maintenance margin of each position: ``MM(N)`` with ``N`` from
        :func:`position_notional` (signed sizes allowed; margin depends on ``|size|``)."""
        n = position_notional(size, mark_price, inverse=self.inverse,
                              contract_size=contract_size)
        return self.maintenance_margin(n, extend_last=extend_last)

    def position_initial_margin(self, size: Any, price: Any, leverage: Any = None, *,
                                contract_size: float = 1.0, extend_last: bool = False) -> Any:
        """Initial margin of each position at ``price`` (see :meth:`initial_margin`)."""
        n = position_notional(size, price, inverse=self.inverse, contract_size=contract_size)
        return self.initial_margin(n, leverage, extend_last=extend_last)


def binance_btcusdt_2021() -> BracketTable:
    """Binance BTCUSDT (USDⓈ-M perpetual, 125x) brackets in force from 2021-03-18.

    Shipped as ``marginlab/models/data/binance_btcusdt_brackets.csv``; its source and date
    are documented in ``models/data/README.md``. A historical table: the live one differs.
    """
    ref = resources.files("marginlab.models").joinpath("data/binance_btcusdt_brackets.csv")
    with resources.as_file(ref) as path:
        return BracketTable.from_csv(path, name="BTCUSDT")


# ---------------------------------------------------------------------- helpers
def _resolve_columns(names: Sequence[str], source: str) -> dict[str, str]:
    """Map canonical column -> the spelling used in the file; errors name the column."""
    found: dict[str, str] = {}
    known = {alias: canon for canon, aliases in _ALIASES.items() for alias in aliases}
    for name in names:
        canon = known.get(name)
        if canon is None:
            if name.lower() in _IGNORED:
                continue
            raise ValueError(f"{source}, column '{name}': unknown column; expected "
                             f"{', '.join(_REQUIRED + _OPTIONAL)} (or 'bracket')")
        if canon in found:
            raise ValueError(f"{source}, column '{name}': duplicates column '{found[canon]}'")
        found[canon] = name
    missing = [c for c in _REQUIRED if c not in found]
    if missing:
        raise ValueError(f"{source}, column '{missing[0]}': missing (required columns: "
                         f"{', '.join(_REQUIRED)})")
    return found


def _to_float(raw: Any, source: str, row: str, column: str) -> float:
    if isinstance(raw, bool) or (not isinstance(raw, (numbers.Real, str))):
        raise _column_error(source, row, column, f"not a number: {raw!r}")
    try:
        value = float(raw.replace("_", "").replace(",", "") if isinstance(raw, str) else raw)
    except ValueError:
        raise _column_error(source, row, column, f"not a number: {raw!r}") from None
    return value


def _real_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or an array of them, "
                        f"got {value!r}") from None


def _out(arr: np.ndarray) -> Any:
    return float(arr) if np.ndim(arr) == 0 else arr


def position_notional(size: Any, price: Any, *, inverse: bool = False,
                      contract_size: float = 1.0) -> Any:
    r"""Notional value of positions, the quantity brackets are looked up with.

    .. math:: N_{linear} = |size| \cdot P, \qquad N_{inverse} = |size| \cdot CS / P

    Linear (USDⓈ-M): ``size`` in base units (BTC), notional in quote (USDT). Inverse
    (COIN-M): ``size`` in contracts of ``contract_size`` USD each, notional in coin.
    SOURCE: Binance, "How to Calculate Liquidation Price of COIN-M Futures Contracts"
    (notional = contracts * contract size / mark price, e.g. 100 * 100 / 25,000 = 0.4 BTC).
    """
    s = _real_array("size", size)
    p = _real_array("price", price)
    _check_range("price", p.reshape(-1), 0.0, None, True, False, scalar=p.ndim == 0)
    _check_range("size", s.reshape(-1), None, None, False, False, scalar=s.ndim == 0)
    cs = _check_contract_size(contract_size)
    out = np.abs(s) * cs / p if inverse else np.abs(s) * p
    return _out(out)


def unrealized_pnl(size: Any, entry_price: Any, mark_price: Any, *, inverse: bool = False,
                   contract_size: float = 1.0) -> Any:
    r"""Unrealised profit of signed positions (+ long, - short).

    .. math:: UPNL_{linear} = size \,(P - EP), \qquad
              UPNL_{inverse} = size \cdot CS \,(1/EP - 1/P)

    in quote currency (linear) or coin (inverse). SOURCE: Binance, "How to Calculate
    Liquidation Price of USDⓈ-M Futures Contracts" / "... COIN-M ..." (the liquidation
    formulas are these equalities solved for the price).
    """
    s = _real_array("size", size)
    ep = _real_array("entry_price", entry_price)
    p = _real_array("mark_price", mark_price)
    for nm, arr in (("entry_price", ep), ("mark_price", p)):
        _check_range(nm, arr.reshape(-1), 0.0, None, True, False, scalar=arr.ndim == 0)
    _check_range("size", s.reshape(-1), None, None, False, False, scalar=s.ndim == 0)
    cs = _check_contract_size(contract_size)
    out = s * cs * (1.0 / ep - 1.0 / p) if inverse else s * (p - ep)
    return _out(out)


def _check_contract_size(contract_size: Any) -> float:
    if isinstance(contract_size, (bool, np.bool_)) or not isinstance(contract_size,
                                                                     numbers.Real):
        raise TypeError(f"contract_size must be a real number, got {contract_size!r}")
    cs = float(contract_size)
    if not (math.isfinite(cs) and cs > 0):
        raise ValueError(f"contract_size must be finite and > 0, got {contract_size!r}")
    return cs


@dataclass(frozen=True)
class AccountMargin:
    """Cross-margin maintenance requirement of one account, per symbol and in total.

    Attributes
    ----------
    total : float
        Sum of the symbols' maintenance margins (TMM in Binance's notation).
    by_symbol : dict
        Maintenance margin of each symbol's net position.
    net_size : dict
        Net signed size of each symbol (one-way mode nets long and short orders).
    notional : dict
        Notional of each symbol's net position at the mark price.
    """

    total: float
    by_symbol: dict[str, float]
    net_size: dict[str, float]
    notional: dict[str, float]

    def to_frame(self) -> Any:
        """Per-symbol rows: net size, notional, maintenance margin."""
        import pandas as pd

        return pd.DataFrame({"net_size": self.net_size, "notional": self.notional,
                             "maintenance_margin": self.by_symbol}).rename_axis("symbol")


def cross_maintenance_margin(symbols: Sequence[str], sizes: Any,
                             mark_prices: Mapping[str, float],
                             tables: Mapping[str, BracketTable], *,
                             contract_sizes: Mapping[str, float] | None = None,
                             extend_last: bool = False) -> AccountMargin:
    r"""Maintenance margin of a cross-margin account in one-way mode.

    Positions are netted per symbol first (one-way mode holds one ``BOTH`` position per
    symbol, so a buy against an open short reduces it), then each symbol's net notional is
    looked up in its own table, and the account requirement is the sum:

    .. math:: TMM = \sum_{symbols} \left(N_s \cdot MMR_{b(N_s)} - cum_{b(N_s)}\right),
              \qquad N_s = |\textstyle\sum_{i \in s} size_i| \cdot P_s

    SOURCE: Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
    (TMM: maintenance margin of all contracts; one-way mode uses the BOTH position). Hedge
    mode (separate LONG and SHORT positions per symbol) is not modelled.

    Parameters
    ----------
    symbols : sequence of str, length n_positions
    sizes : array_like, shape (n_positions,)
        Signed sizes (+ long, - short): base units for linear tables, contracts for inverse.
    mark_prices : mapping symbol -> price
    tables : mapping symbol -> BracketTable
    contract_sizes : mapping symbol -> contract size, optional
        For inverse symbols (default 1.0).
    """
    sym = np.asarray(list(symbols), dtype=object)
    size = _real_array("sizes", sizes).reshape(-1)
    if sym.size != size.size:
        raise ValueError(f"symbols has {sym.size} entries but sizes has {size.size}")
    _check_range("sizes", size, None, None, False, False)
    names, inv = np.unique(sym.astype(str), return_inverse=True)
    net = np.bincount(inv, weights=size, minlength=names.size)
    by_symbol: dict[str, float] = {}
    notional: dict[str, float] = {}
    for name, q in zip(names.tolist(), net.tolist(), strict=True):
        if name not in tables:
            raise ValueError(f"tables has no bracket table for symbol {name!r}")
        if name not in mark_prices:
            raise ValueError(f"mark_prices has no price for symbol {name!r}")
        table = tables[name]
        cs = 1.0 if contract_sizes is None else contract_sizes.get(name, 1.0)
        n = position_notional(q, mark_prices[name], inverse=table.inverse, contract_size=cs)
        notional[name] = float(n)
        by_symbol[name] = float(table.maintenance_margin(n, extend_last=extend_last))
    net_size = dict(zip(names.tolist(), net.tolist(), strict=True))
    return AccountMargin(total=float(sum(by_symbol.values())), by_symbol=by_symbol,
                         net_size=net_size, notional=notional)
