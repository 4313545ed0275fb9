r"""Exchange and protocol rule-based margin: Binance-style brackets, dYdX v4, Drift, Deribit.

Four deterministic methodologies of the :class:`~marginlab.models.margin.base.MarginMethod`
interface, each applied to the futures / perpetual positions of a
:class:`~marginlab.models.book.Book` at today's prices (``market``):

* :class:`TieredMargin`: leverage and margin brackets (Binance USDⓈ-M and COIN-M, Bybit,
  OKX), cross (one-way) or isolated (hedge-mode) margin, linear and inverse contracts, with
  per-position liquidation prices (:meth:`TieredMargin.liquidation_prices`).
* :class:`DydxMargin`: dYdX v4's open-interest-scaled initial margin fraction.
* :class:`DriftMargin`: Drift protocol-v2's size premium (margin ratio growing with the square
  root of the position size).
* :class:`DeribitLinearMargin`: Deribit's linear (USDC) perpetual rates, a base rate plus an
  add-on proportional to the position size in coin.

Conventions shared by the four:

* Only futures and perpetuals are margined. :class:`TieredMargin` takes linear and inverse
  ones (``linear_perp``, ``linear_future``, ``inverse_perp``, ``inverse_future``); the other
  three take linear ones only (dYdX, Drift and Deribit's linear book list no inverse
  contracts). Positions of other types (spot, options, and inverse contracts for the linear-only
  methods) raise ``ValueError`` by default; ``on_unsupported="ignore"`` leaves them out (their
  unrealised P&L still counts in the margin balance). An account whose positions were all
  left out gets IM = MM = 0 and the driver ``"not margined by <method>: <instrument> (<type>)"``;
  ``"no positions"`` is kept for accounts that hold none.
* Per-market parameters (bracket tables, leverage, dYdX tiers, Drift and Deribit rates,
  open interest) are given as one value for every market or as a mapping keyed by
  ``instrument_id`` or by ``underlying``: an instrument's own id is looked up first, then its
  underlying (case-insensitive).
* A position's size: ``quantity * multiplier`` units of the underlying for linear contracts,
  ``quantity`` contracts of ``face_value`` USD for inverse ones. Positions of one account on
  one instrument are netted (one-way mode: one position per symbol), except by
  :class:`TieredMargin` in isolated mode (hedge mode: one long and one short position per
  symbol).
* IM, MM in USD; ``margin_balance`` from :func:`marginlab.models.portfolio.account_equity`;
  the allocation gives each (account, instrument) holding its IM (``im_contribution``, summing
  to the account's IM) and MM (``mm_contribution``). The rules use today's prices only:
  ``scenarios`` is accepted for the common interface and ignored.
* Every computation is vectorised over positions and accounts; the only Python loops run over
  instruments, underlyings or bracket tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validate import _check_range, check_real
from ..book import INVERSE_TYPES, Book
from ..portfolio import account_equity, gross_notional
from ..scenarios import MarketState
from .base import MarginResult
from .brackets import BracketTable
from .liquidation import liquidation_price_with_table

__all__ = [
    "TieredMargin",
    "DydxMargin",
    "DriftMargin",
    "DeribitLinearMargin",
    "dydx_initial_margin_fraction",
    "drift_margin_ratio",
]

FUTURES_TYPES = ("linear_perp", "linear_future", "inverse_perp", "inverse_future")
LINEAR_FUTURES_TYPES = ("linear_perp", "linear_future")
_MODES = ("cross", "isolated")
_ON = ("raise", "ignore")
_NO_POSITION = "no positions"


# ------------------------------------------------------------------------ validation helpers
def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _check_name(value: Any, default: str) -> str:
    if value == "":
        return default
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name must be a non-empty string, got {value!r}")
    return value


def _check_key(name: str, key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise TypeError(f"{name} keys must be non-empty strings (instrument ids or "
                        f"underlyings), got {key!r}")
    return key


def _market_param(name: str, value: Any, **bounds: Any) -> float | dict[str, float]:
    """One real number for every market, or a mapping market -> number; range-checked."""
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{name} must not be an empty mapping")
        return {_check_key(name, k): check_real(f"{name}[{k!r}]", v, **bounds)
                for k, v in value.items()}
    return check_real(name, value, **bounds)


def _lookup(param: Mapping[str, Any], instrument_id: str, underlying: str) -> Any:
    """``param[instrument_id]``, else ``param[underlying]`` (case-insensitive), else None."""
    if instrument_id in param:
        return param[instrument_id]
    u = underlying.upper()
    for k, v in param.items():
        if k.upper() == u:
            return v
    return None


def _resolve(name: str, param: float | Mapping[str, float], book: Book,
             used: np.ndarray) -> np.ndarray:
    """Per-instrument values of a market parameter (NaN for instruments not in ``used``)."""
    out = np.full(book.n_instruments, np.nan)
    if not isinstance(param, Mapping):
        out[used] = param
        return out
    ids = book.instruments["instrument_id"].to_numpy(object)
    und = book.instruments["underlying"].to_numpy(object)
    for i in used.tolist():
        v = _lookup(param, ids[i], und[i])
        if v is None:
            raise ValueError(f"{name} has no value for instrument {ids[i]!r} (underlying "
                             f"{und[i]!r}); keys given: {sorted(param)}")
        out[i] = v
    return out


# ----------------------------------------------------------------------- position plumbing
def _select_rows(book: Book, allowed: tuple[str, ...], on_unsupported: str,
                 method: str) -> np.ndarray:
    """Mask of the position rows a method margins (non-zero, of an allowed type)."""
    types = book.instruments["type"].to_numpy(str)[book.position_instrument]
    qty = book.positions["quantity"].to_numpy(float)
    ok = np.isin(types, allowed)
    bad = ~ok & (qty != 0.0)
    if on_unsupported == "raise" and bad.any():
        i = int(np.flatnonzero(bad)[0])
        pos = book.positions
        raise ValueError(
            f"{method}: position row {i} (account {pos['account_id'].iloc[i]!r}, instrument "
            f"{pos['instrument_id'].iloc[i]!r}) is of type {str(types[i])!r}, which this "
            f"method does not margin (it margins {', '.join(allowed)}); pass "
            "on_unsupported='ignore' to leave such positions out")
    return ok & (qty != 0.0)


@dataclass(frozen=True)
class _Positions:
    """Netted positions: one row per (account, instrument) or (account, instrument, side)."""

    account: np.ndarray      # int64 account row
    instrument: np.ndarray   # int64 instrument column
    quantity: np.ndarray     # signed contracts
    entry: np.ndarray        # average entry price (isolated groups), NaN when netted across sides


def _net_positions(book: Book, rows: np.ndarray, *, by_side: bool) -> _Positions:
    """Net the selected rows per (account, instrument), or per (account, instrument, side).

    The average entry of a one-sided group is the quantity-weighted mean for linear contracts
    and the harmonic mean for inverse ones (the price at which the group's P&L equals the sum
    of its rows' P&L), as exchanges average entries when a position is increased.
    """
    n_inst = book.n_instruments
    pa = book.position_account[rows].astype(np.int64)
    pi = book.position_instrument[rows].astype(np.int64)
    q = book.positions["quantity"].to_numpy(float)[rows]
    key = pa * n_inst + pi
    if by_side:
        key = key * 2 + (q < 0)
    uniq, inv = np.unique(key, return_inverse=True)
    net = np.bincount(inv, weights=q, minlength=uniq.size)
    gross = np.bincount(inv, weights=np.abs(q), minlength=uniq.size)
    base = uniq // 2 if by_side else uniq
    acc, inst = base // n_inst, base % n_inst
    if by_side:
        e = book.positions["entry_price"].to_numpy(float)[rows]
        is_inv = np.isin(book.instruments["type"].to_numpy(str), INVERSE_TYPES)
        qe = np.bincount(inv, weights=np.where(is_inv[pi], q / e, q * e), minlength=uniq.size)
        inv_group = is_inv[inst]
        with np.errstate(divide="ignore", invalid="ignore"):
            entry = np.where(inv_group, net / qe, qe / net)
    else:
        entry = np.full(uniq.size, np.nan)
    keep = np.abs(net) > 1e-12 * gross
    return _Positions(acc[keep], inst[keep], net[keep], entry[keep])


def _prices(book: Book, market: MarketState, used: np.ndarray) -> np.ndarray:
    """Today's price of each used instrument's underlying (NaN elsewhere)."""
    und = book.instruments["underlying"].to_numpy(object)
    out = np.full(book.n_instruments, np.nan)
    for u in sorted(set(und[used].tolist())):
        out[und == u] = market.price(u)
    return out


def _driver(n_accounts: int, account: np.ndarray, weight: np.ndarray, labels: np.ndarray,
            code: np.ndarray) -> np.ndarray:
    """Per account, the label of the position with the largest ``weight`` (vectorised)."""
    out = np.full(n_accounts, _NO_POSITION, dtype=object)
    if account.size == 0:
        return out
    order = np.lexsort((weight, account))
    a = account[order]
    last = np.flatnonzero(np.r_[a[1:] != a[:-1], True])
    best = order[last]
    out[account[best]] = labels[code[best]]
    return out


def _explain_unmargined(method: str, book: Book, pos: _Positions,
                        driver: np.ndarray) -> np.ndarray:
    """Say why an account that holds positions has nothing margined: the positions this
    method left out (``on_unsupported="ignore"``, ``on_missing="ignore"``) or netted to
    zero, instead of "no positions"."""
    qty = book.positions["quantity"].to_numpy(float)
    live = qty != 0.0
    acc = book.position_account[live]
    holds = np.zeros(book.n_accounts, dtype=bool)
    holds[acc] = True
    holds[pos.account] = False
    if not holds.any():
        return driver
    out = driver.copy()
    ids = book.instruments["instrument_id"].to_numpy(str)[book.position_instrument[live]]
    types = book.instruments["type"].to_numpy(str)[book.position_instrument[live]]
    for a in np.flatnonzero(holds):
        rows = np.flatnonzero(acc == a)
        seen = list(dict.fromkeys(f"{ids[r]} ({types[r]})" for r in rows))
        shown = ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
        out[a] = f"not margined by {method}: {shown}"
    return out


def _result(method: str, book: Book, market: MarketState, pos: _Positions, im: np.ndarray,
            mm: np.ndarray, driver: np.ndarray,
            details: dict[str, np.ndarray] | None = None) -> MarginResult:
    n_acc, n_inst = book.n_accounts, book.n_instruments
    im_acc = np.bincount(pos.account, weights=im, minlength=n_acc)
    mm_acc = np.bincount(pos.account, weights=mm, minlength=n_acc)
    key = pos.account * n_inst + pos.instrument
    uniq, inv = np.unique(key, return_inverse=True)
    ids = book.instruments["instrument_id"].to_numpy(object)
    allocation = pd.DataFrame({
        "account_id": np.asarray(book.account_ids, dtype=object)[uniq // n_inst],
        "holding": ids[uniq % n_inst],
        "im_contribution": np.bincount(inv, weights=im, minlength=uniq.size),
        "mm_contribution": np.bincount(inv, weights=mm, minlength=uniq.size),
    })
    driver = _explain_unmargined(method, book, pos, driver)
    mb = account_equity(book, market)["margin_balance"].to_numpy(float)
    return MarginResult(method=method, account_ids=book.account_ids, im=im_acc, mm=mm_acc,
                        margin_balance=mb, driver=driver, allocation=allocation,
                        details=details or {}, gross_notional=gross_notional(book, market))


def _linear_setup(book: Book, market: MarketState, on_unsupported: str, method: str):
    """Netted linear positions, their instruments, size in units and USD notional."""
    rows = _select_rows(book, LINEAR_FUTURES_TYPES, on_unsupported, method)
    pos = _net_positions(book, rows, by_side=False)
    used = np.unique(pos.instrument)
    price = _prices(book, market, used)
    mult = book.instruments["multiplier"].to_numpy(float)
    units = np.abs(pos.quantity) * mult[pos.instrument]
    return pos, used, price, units, units * price[pos.instrument]


# ======================================================================== bracket margin
@dataclass(frozen=True, eq=False)
class TieredMargin:
    r"""Exchange bracket margin (Binance USDⓈ-M / COIN-M style), cross or isolated.

    Parameters
    ----------
    tables : mapping of str to BracketTable
        Bracket table of each market, keyed by ``instrument_id`` or by ``underlying`` (an
        instrument's id is looked up first, then its underlying, case-insensitively). An
        inverse table (``table.inverse``) serves inverse contracts, a linear one linear
        contracts; a mismatch raises.
    mode : {"cross", "isolated"}
        ``"cross"``: one-way mode, an account's positions on one instrument are netted into one
        position and the account's requirement is the sum over its instruments.
        ``"isolated"``: hedge mode, the account's long and short rows on one instrument are two
        positions (rows of the same side are one position), each margined alone.
    leverage : float or mapping of str to float, optional
        Chosen leverage (>= 1), one for every market or per market (keys as ``tables``;
        markets missing from the mapping use the bracket maximum). The leverage in force is
        ``min(leverage, bracket maximum)``. ``None``: the bracket maximum.
    on_missing : {"raise", "ignore"}
        What to do with futures positions whose market has no table.
    on_unsupported : {"raise", "ignore"}
        What to do with spot and option positions (not margined by brackets).
    extend_last : bool
        Continue the last bracket beyond its cap (a position larger than the exchange allows,
        e.g. a synthetic book); by default such a position raises, naming it.
    name : str
        Label; default ``"tiered-cross"`` or ``"tiered-isolated"``.

    Notes
    -----
    For a position of notional ``N`` (``N = |q| m P`` USDT for linear contracts,
    ``N = |q| F / P`` coin for inverse ones, ``P`` today's price) in bracket ``b``
    (``floor_b < N <= cap_b``):

    .. math:: IM = \frac{N}{\min(L, L^{max}_b)}, \qquad MM = N \cdot MMR_b - cum_b

    in the table's currency; inverse margins are converted to USD at ``P``. SOURCE: Binance,
    "Leverage and Margin of USDⓈ-M Futures" (initial margin = notional / leverage, the
    leverage capped by the position's bracket); Binance, "How to Calculate Liquidation Price of
    USDⓈ-M Futures Contracts" and "... of COIN-M Futures Contracts" (maintenance margin =
    notional x MMR - maintenance amount; COIN-M notional in coin). See
    :class:`~marginlab.models.margin.brackets.BracketTable`.

    Cross (one-way) mode nets an account's positions per instrument first,
    ``N_s = |\sum_{i \in s} q_i| \ldots``, then sums over instruments (the per-instrument form
    of :func:`~marginlab.models.margin.brackets.cross_maintenance_margin`, vectorised over
    accounts). Isolated (hedge) mode margins the long and the short position of each
    instrument separately, so a hedged pair carries both margins. Because both IM and MM grow
    with ``N`` and vanish at 0, ``IM_cross <= IM_isolated`` and ``MM_cross <= MM_isolated``
    account by account.

    The driver of an account is the bracket of its position with the largest IM, e.g.
    ``"BTCUSDT bracket 3"`` (the table's name, or its key when unnamed).

    Examples
    --------
    >>> from marginlab.models.margin import binance_btcusdt_2021
    >>> method = TieredMargin({"BTC": binance_btcusdt_2021()}, mode="cross", leverage=20)
    >>> method.mode
    'cross'
    """

    tables: Mapping[str, BracketTable]
    mode: str = "cross"
    leverage: float | Mapping[str, float] | None = None
    on_missing: str = "raise"
    on_unsupported: str = "raise"
    extend_last: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        if not isinstance(self.tables, Mapping) or not self.tables:
            raise ValueError("tables must be a non-empty mapping of market (instrument_id or "
                             f"underlying) -> BracketTable, got {self.tables!r}")
        tables = {}
        for k, t in self.tables.items():
            _check_key("tables", k)
            if not isinstance(t, BracketTable):
                raise TypeError(f"tables[{k!r}] must be a BracketTable, got "
                                f"{type(t).__name__}")
            tables[k] = t
        sets(self, "tables", tables)
        _check_choice("mode", self.mode, _MODES)
        if self.leverage is not None:
            sets(self, "leverage", _market_param("leverage", self.leverage, low=1.0))
        _check_choice("on_missing", self.on_missing, _ON)
        _check_choice("on_unsupported", self.on_unsupported, _ON)
        if not isinstance(self.extend_last, (bool, np.bool_)):
            raise TypeError(f"extend_last must be True or False, got {self.extend_last!r}")
        sets(self, "name", _check_name(self.name, f"tiered-{self.mode}"))

    # ------------------------------------------------------------------ internals
    def _table_of_instruments(self, book: Book) -> np.ndarray:
        """Index into ``list(self.tables)`` of each instrument's table (-1: none)."""
        keys = list(self.tables)
        pos_key = {k: i for i, k in enumerate(keys)}
        ids = book.instruments["instrument_id"].to_numpy(object)
        und = book.instruments["underlying"].to_numpy(object)
        types = book.instruments["type"].to_numpy(str)
        out = np.full(book.n_instruments, -1, dtype=np.int64)
        for i in range(book.n_instruments):
            if types[i] not in FUTURES_TYPES:
                continue
            key = ids[i] if ids[i] in self.tables else None
            if key is None:
                u = und[i].upper()
                key = next((k for k in keys if k.upper() == u), None)
            if key is None:
                continue
            table = self.tables[key]
            if bool(table.inverse) != (types[i] in INVERSE_TYPES):
                kind = "an inverse (COIN-M)" if table.inverse else "a linear (USDⓈ-M)"
                raise ValueError(f"{self.name}: instrument {ids[i]!r} of type {str(types[i])!r} is "
                                 f"matched to {kind} table tables[{key!r}]; give its "
                                 "instrument_id a table of the right kind")
            out[i] = pos_key[key]
        return out

    def _positions(self, book: Book, market: MarketState) -> dict[str, Any]:
        rows = _select_rows(book, FUTURES_TYPES, self.on_unsupported, self.name)
        table_of = self._table_of_instruments(book)
        missing = rows & (table_of[book.position_instrument] < 0)
        if missing.any():
            if self.on_missing == "raise":
                i = int(np.flatnonzero(missing)[0])
                p = book.positions
                inst = book.instruments.set_index("instrument_id")
                iid = p["instrument_id"].iloc[i]
                raise ValueError(
                    f"{self.name}: no bracket table for instrument {iid!r} (underlying "
                    f"{inst.loc[iid, 'underlying']!r}) held by account "
                    f"{p['account_id'].iloc[i]!r}; tables has keys {sorted(self.tables)} "
                    "(pass on_missing='ignore' to leave such positions out)")
            rows = rows & ~missing
        pos = _net_positions(book, rows, by_side=self.mode == "isolated")
        used = np.unique(pos.instrument)
        price_inst = _prices(book, market, used)
        inst = book.instruments
        inverse = np.isin(inst["type"].to_numpy(str), INVERSE_TYPES)[pos.instrument]
        mult = inst["multiplier"].to_numpy(float)[pos.instrument]
        face = inst["face_value"].to_numpy(float)[pos.instrument]
        price = price_inst[pos.instrument]
        # size: base units (linear) or USD face (inverse: contracts x face value)
        size = np.abs(pos.quantity) * np.where(inverse, face, mult)
        notional = np.where(inverse, size / price, size * price)
        lev_inst = (np.full(book.n_instruments, np.nan) if self.leverage is None
                    else self._leverage_of_instruments(book, used))
        return dict(pos=pos, table=table_of[pos.instrument], inverse=inverse, price=price,
                    size=size, notional=notional, leverage=lev_inst[pos.instrument])

    def _leverage_of_instruments(self, book: Book, used: np.ndarray) -> np.ndarray:
        if self.leverage is None or not isinstance(self.leverage, Mapping):
            return np.full(book.n_instruments, np.nan if self.leverage is None
                           else float(self.leverage))
        out = np.full(book.n_instruments, np.nan)
        ids = book.instruments["instrument_id"].to_numpy(object)
        und = book.instruments["underlying"].to_numpy(object)
        for i in used.tolist():
            v = _lookup(self.leverage, ids[i], und[i])
            out[i] = np.nan if v is None else v
        return out

    def _check_cap(self, book: Book, pos: _Positions, sel: np.ndarray, notional: np.ndarray,
                   key: str, table: BracketTable, what: str) -> None:
        if self.extend_last:
            return
        over = notional > table.max_notional
        if over.any():
            j = int(np.flatnonzero(over)[0])
            k = np.flatnonzero(sel)[j]
            unit = "coin" if table.inverse else "USD"
            raise ValueError(
                f"{self.name}: account {book.account_ids[pos.account[k]]!r} holds "
                f"{book.instruments['instrument_id'].iloc[pos.instrument[k]]!r} with {what} "
                f"{notional[j]:,.6g} {unit}, above the last cap {table.max_notional:,.6g} of "
                f"tables[{key!r}]; pass extend_last=True to continue the last bracket")

    def _margins(self, book: Book, p: dict[str, Any]):
        """IM, MM (table currency), bracket index and driver code of every position."""
        n = p["notional"].size
        im_t, mm_t = np.zeros(n), np.zeros(n)
        bracket = np.zeros(n, dtype=np.int64)
        code = np.zeros(n, dtype=np.int64)
        labels: list[str] = []
        for k, (key, table) in enumerate(self.tables.items()):
            offset = len(labels)
            label = table.name or key
            labels.extend(f"{label} bracket {b + 1}" for b in range(table.n_brackets))
            sel = p["table"] == k
            if not sel.any():
                continue
            n_k = p["notional"][sel]
            self._check_cap(book, p["pos"], sel, n_k, key, table, "notional")
            b = np.asarray(table.bracket_index(n_k, extend_last=True))
            lev = np.where(np.isnan(p["leverage"][sel]), table.max_leverage[b],
                           p["leverage"][sel])
            im_t[sel] = table.initial_margin(n_k, lev, extend_last=True)
            mm_t[sel] = table.maintenance_margin(n_k, extend_last=True)
            bracket[sel] = b
            code[sel] = offset + b
        return im_t, mm_t, bracket, code, np.array(labels, dtype=object)

    # ------------------------------------------------------------------ public API
    def compute(self, book: Book, market: MarketState, *, scenarios: Any = None
                ) -> MarginResult:
        """IM and MM of every account of ``book`` at today's prices (``scenarios`` ignored).

        Returns
        -------
        MarginResult
            ``driver``: bracket of the account's largest-IM position; ``allocation``: IM and
            MM of each (account, instrument) holding (in isolated mode the sum of its long and
            short positions).
        """
        p = self._positions(book, market)
        im_t, mm_t, _, code, labels = self._margins(book, p)
        to_usd = np.where(p["inverse"], p["price"], 1.0)
        im, mm = im_t * to_usd, mm_t * to_usd
        driver = _driver(book.n_accounts, p["pos"].account, im, labels, code)
        return _result(self.name, book, market, p["pos"], im, mm, driver)

    def liquidation_prices(self, book: Book, market: MarketState) -> pd.DataFrame:
        r"""Liquidation price of every position (per instrument in cross mode, per instrument
        and side in isolated mode), with the bracket in force at that price.

        Returns
        -------
        pandas.DataFrame
            One row per position: ``account_id``, ``instrument_id``, ``side``, ``quantity``
            (signed contracts), ``notional`` (table currency at today's price),
            ``mark_price``, ``entry_price`` (average entry; NaN in cross mode, where the
            position's P&L is carried in the margin balance instead), ``wallet_balance``
            (table currency), ``liquidation_price``, ``bracket`` (1-based, at the liquidation
            price), ``mode``. A long is liquidated when the mark is at or below the price, a
            short at or above; 0.0 / ``inf`` encode "never" / "always" as in
            :func:`~marginlab.models.margin.liquidation.liquidation_price`.

        Notes
        -----
        Binance's one-way formula (SOURCE: "How to Calculate Liquidation Price of USDⓈ-M
        Futures Contracts" and "... of COIN-M Futures Contracts"), solved by
        :func:`~marginlab.models.margin.liquidation.liquidation_price_with_table`, which
        substitutes the bracket the notional falls in at the liquidation price.

        Isolated: ``WB`` is the position's isolated margin, assumed to be its initial margin at
        the average entry price ``EP`` (notional at ``EP`` over the leverage in force there,
        in the table currency); ``TMM1 = UPNL1 = 0``. The book does not record isolated
        wallet balances, so this is the position as opened, without added margin.

        Cross: the account's margin balance ``MB`` (haircut collateral plus unrealised P&L of
        all positions, :func:`~marginlab.models.portfolio.account_equity`) and the
        maintenance margin of its other positions ``TMM1`` stay at today's values while the
        position's own price moves. Entering the formula with ``EP`` = today's price ``P``
        and ``WB + UPNL1 = MB`` is exactly Binance's equation (the position's P&L at the
        liquidation price is its P&L today plus ``s Q (LP - P)``). For an inverse position
        ``MB`` and ``TMM1`` are converted to coin at ``P`` (a COIN-M wallet held in the coin).
        Exact for the exchange's own setting (a stablecoin wallet with linear contracts, a
        coin wallet with that coin's inverse contracts); otherwise the other collateral and
        positions are held at today's value.
        """
        p = self._positions(book, market)
        pos: _Positions = p["pos"]
        im_t, mm_t, _, _, _ = self._margins(book, p)
        n = pos.quantity.size
        side = np.where(pos.quantity > 0, "long", "short")
        lp = np.full(n, np.nan)
        bracket = np.zeros(n, dtype=np.int64)
        wallet = np.full(n, np.nan)
        cross = self.mode == "cross"
        if cross:
            to_usd = np.where(p["inverse"], p["price"], 1.0)
            mm_usd = mm_t * to_usd
            tmm = np.bincount(pos.account, weights=mm_usd, minlength=book.n_accounts)
            mb = account_equity(book, market)["margin_balance"].to_numpy(float)
            other = np.maximum(tmm[pos.account] - mm_usd, 0.0)
        for k, (key, table) in enumerate(self.tables.items()):
            sel = p["table"] == k
            if not sel.any():
                continue
            size, price = p["size"][sel], p["price"][sel]
            if cross:
                conv = np.where(p["inverse"][sel], price, 1.0)
                entry, wb, tmm1 = price, mb[pos.account[sel]] / conv, other[sel] / conv
            else:
                entry = pos.entry[sel]
                n_entry = size / entry if table.inverse else size * entry
                self._check_cap(book, pos, sel, n_entry, key, table, "notional at entry")
                b_e = np.asarray(table.bracket_index(n_entry, extend_last=True))
                lev = np.where(np.isnan(p["leverage"][sel]), table.max_leverage[b_e],
                               p["leverage"][sel])
                wb = np.asarray(table.initial_margin(n_entry, lev, extend_last=True))
                tmm1 = 0.0
            # inverse: size is contracts x face value, so the contract size is 1 USD
            price_k, b_k = liquidation_price_with_table(
                table, side[sel], size, entry, wb, other_maintenance=tmm1,
                contract_size=1.0, return_bracket=True)
            lp[sel] = price_k
            bracket[sel] = np.asarray(b_k) + 1
            wallet[sel] = wb
        ids = book.instruments["instrument_id"].to_numpy(object)
        return pd.DataFrame({
            "account_id": np.asarray(book.account_ids, dtype=object)[pos.account],
            "instrument_id": ids[pos.instrument],
            "side": side,
            "quantity": pos.quantity,
            "notional": p["notional"],
            "mark_price": p["price"],
            "entry_price": pos.entry,
            "wallet_balance": wallet,
            "liquidation_price": lp,
            "bracket": bracket,
            "mode": self.mode,
        })


# ============================================================================== dYdX v4
def dydx_initial_margin_fraction(open_interest_notional: Any, imf_base: Any,
                                 oi_lower_cap: Any, oi_upper_cap: Any) -> Any:
    r"""dYdX v4's open-interest-scaled initial margin fraction (OIMF), vectorised.

    .. math::
        IMF = \begin{cases}
            1 & OI \ge U,\ U \ne 0 \\
            IMF_{base} & U = 0 \text{ or } OI \le L \\
            \min\left(IMF_{base} + \frac{OI - L}{U - L}(1 - IMF_{base}),\ 1\right)
                & \text{otherwise}
        \end{cases}

    with ``OI`` the market's open notional (open interest x oracle price), ``L`` and ``U``
    the liquidity tier's ``OpenInterestLowerCap`` and ``OpenInterestUpperCap`` (``U = 0``
    disables the scaling). SOURCE: dydxprotocol/v4-chain,
    ``protocol/x/perpetuals/types/liquidity_tier.go``, ``GetInitialMarginQuoteQuantums``
    ("Scaling Factor = (Open Notional - Lower Cap) / (Upper Cap - Lower Cap)", "IMF Increase
    = Scaling Factor * (1 - Base IMF)", "Effective IMF = Min(Base IMF + Max(IMF Increase, 0),
    1.0)"), and ``protocol/x/perpetuals/lib/lib.go`` (open interest converted to quote
    quantums at the oracle price). dYdX works in integer quantums and rounds the margin up;
    this is the exact rational value.

    Parameters
    ----------
    open_interest_notional : float or array_like
        Open notional, >= 0 (USD).
    imf_base : float or array_like
        Base initial margin fraction (``InitialMarginPpm / 1e6``), in [0, 1].
    oi_lower_cap, oi_upper_cap : float or array_like
        Caps (USD), >= 0, ``lower <= upper``.

    Examples
    --------
    dYdX's unit test "base IMF = 20%, scaling_factor = 0.5" (caps 1M and 2M, OI 1.5M):

    >>> round(dydx_initial_margin_fraction(1.5e6, 0.2, 1e6, 2e6), 12)
    0.6
    """
    oi = _array_arg("open_interest_notional", open_interest_notional, low=0.0)
    base = _array_arg("imf_base", imf_base, low=0.0, high=1.0)
    lo = _array_arg("oi_lower_cap", oi_lower_cap, low=0.0)
    up = _array_arg("oi_upper_cap", oi_upper_cap, low=0.0)
    oi, base, lo, up = np.broadcast_arrays(oi, base, lo, up)
    if np.any(lo > up):
        i = int(np.flatnonzero((lo > up).reshape(-1))[0])
        raise ValueError(f"oi_lower_cap must be <= oi_upper_cap (dYdX rejects a tier with "
                         f"lower cap > upper cap), got {lo.reshape(-1)[i]!r} > "
                         f"{up.reshape(-1)[i]!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(up > lo, (oi - lo) / (up - lo), 0.0)
    eff = np.minimum(base + np.maximum(scale, 0.0) * (1.0 - base), 1.0)
    eff = np.where((up == 0.0) | (oi <= lo), base, eff)
    eff = np.where((up != 0.0) & (oi >= up), 1.0, eff)
    return float(eff) if eff.ndim == 0 else eff


def _array_arg(name: str, value: Any, *, low: float | None = None,
               high: float | None = None) -> np.ndarray:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or an array of them, "
                        f"got {value!r}") from None
    _check_range(name, arr.reshape(-1), low, high, False, False, scalar=arr.ndim == 0)
    return arr


@dataclass(frozen=True, eq=False)
class DydxMargin:
    r"""dYdX v4 cross margin with the open-interest-scaled initial margin fraction.

    Parameters
    ----------
    imf_base : float or mapping of str to float
        Base initial margin fraction of the market's liquidity tier (``InitialMarginPpm /
        1e6``), in [0, 1]; one for all markets or per market.
    mmf_fraction : float or mapping
        ``MaintenanceFractionPpm / 1e6``, in [0, 1]: the maintenance margin fraction is
        ``imf_base x mmf_fraction``.
    oi_lower_cap, oi_upper_cap : float or mapping
        ``OpenInterestLowerCap`` and ``OpenInterestUpperCap`` of the tier, USD notional, >= 0,
        lower <= upper; ``oi_upper_cap = 0`` disables the scaling (dYdX's large-cap tier).
    open_interest : mapping of str to float
        Each market's open interest in units of the underlying (as dYdX's indexer reports
        ``openInterest``), >= 0; converted to notional at today's price. Needed only for
        markets whose upper cap is non-zero.
    on_unsupported : {"raise", "ignore"}
        What to do with positions that are not linear futures / perpetuals.
    name : str
        Label; default ``"dydx-v4"``.

    Notes
    -----
    Per account (a dYdX subaccount is cross-margined, one position per market):

    .. math:: IM = \sum_m |N_m| \cdot IMF_m(OI_m P_m), \qquad
              MM = \sum_m |N_m| \cdot IMF^{base}_m \cdot f^{maint}_m

    with ``IMF_m`` from :func:`dydx_initial_margin_fraction` and ``N_m = q m P`` the
    position's USD notional. SOURCE: dydxprotocol/v4-chain,
    ``protocol/x/perpetuals/lib/lib.go``, ``GetMarginRequirementsInQuoteQuantums``: the
    maintenance requirement is the *base* initial margin times the maintenance fraction
    ("Maintenance margin requirement quote quantums = IM in quote quantums * maintenance
    fraction PPM", applied to the base IM computed before the open-interest scaling), while
    the initial requirement uses the scaled fraction; ``liquidity_tier.go``,
    ``GetMaintenanceMarginPpm`` (maintenance margin = initial margin x maintenance fraction).
    The scaled IMF is never below the base one, so ``IM >= MM``.

    The driver is the market of the account's largest-IM position and its IMF.
    """

    imf_base: float | Mapping[str, float]
    mmf_fraction: float | Mapping[str, float]
    oi_lower_cap: float | Mapping[str, float] = 0.0
    oi_upper_cap: float | Mapping[str, float] = 0.0
    open_interest: Mapping[str, float] | None = None
    on_unsupported: str = "raise"
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        sets(self, "imf_base", _market_param("imf_base", self.imf_base, low=0.0, high=1.0))
        sets(self, "mmf_fraction", _market_param("mmf_fraction", self.mmf_fraction, low=0.0,
                                                 high=1.0))
        lo = _market_param("oi_lower_cap", self.oi_lower_cap, low=0.0)
        up = _market_param("oi_upper_cap", self.oi_upper_cap, low=0.0)
        _check_ordered("oi_lower_cap", lo, "oi_upper_cap", up)
        sets(self, "oi_lower_cap", lo)
        sets(self, "oi_upper_cap", up)
        oi = self.open_interest
        if oi is not None:
            if not isinstance(oi, Mapping):
                raise TypeError("open_interest must be a mapping of market (instrument_id or "
                                f"underlying) -> open interest in units, got {oi!r}")
            oi = {_check_key("open_interest", k): check_real(f"open_interest[{k!r}]", v,
                                                             low=0.0)
                  for k, v in oi.items()}
        sets(self, "open_interest", oi)
        _check_choice("on_unsupported", self.on_unsupported, _ON)
        sets(self, "name", _check_name(self.name, "dydx-v4"))

    def initial_margin_fractions(self, book: Book, market: MarketState) -> pd.Series:
        """Effective (open-interest-scaled) IMF of each linear futures instrument held."""
        pos, used, price, _, _ = _linear_setup(book, market, self.on_unsupported, self.name)
        imf = self._imf(book, used, price)
        ids = book.instruments["instrument_id"].to_numpy(object)
        return pd.Series(imf[used], index=pd.Index(ids[used], name="instrument_id"),
                         name="imf")

    def _imf(self, book: Book, used: np.ndarray, price: np.ndarray) -> np.ndarray:
        base = _resolve("imf_base", self.imf_base, book, used)
        lo = _resolve("oi_lower_cap", self.oi_lower_cap, book, used)
        up = _resolve("oi_upper_cap", self.oi_upper_cap, book, used)
        oi_units = np.zeros(book.n_instruments)
        needs = used[up[used] > 0.0]
        if needs.size:
            if self.open_interest is None:
                iid = book.instruments["instrument_id"].iloc[needs[0]]
                raise ValueError(f"{self.name}: open_interest is required for instrument "
                                 f"{iid!r}, whose oi_upper_cap is non-zero")
            oi_units = _resolve("open_interest", self.open_interest, book, needs)
        out = np.full(book.n_instruments, np.nan)
        if used.size:
            out[used] = dydx_initial_margin_fraction(
                np.nan_to_num(oi_units[used]) * price[used], base[used], lo[used], up[used])
        return out

    def compute(self, book: Book, market: MarketState, *, scenarios: Any = None
                ) -> MarginResult:
        """IM and MM of every account at today's prices (``scenarios`` ignored)."""
        pos, used, price, _, notional = _linear_setup(book, market, self.on_unsupported,
                                                      self.name)
        imf = self._imf(book, used, price)
        mmr = (_resolve("imf_base", self.imf_base, book, used)
               * _resolve("mmf_fraction", self.mmf_fraction, book, used))
        im = notional * imf[pos.instrument]
        mm = notional * mmr[pos.instrument]
        ids = book.instruments["instrument_id"].to_numpy(object)
        labels = np.full(book.n_instruments, "", dtype=object)
        for j in used.tolist():
            labels[j] = f"{ids[j]} IMF {100 * imf[j]:.6g}%"
        driver = _driver(book.n_accounts, pos.account, im, labels, pos.instrument)
        return _result(self.name, book, market, pos, im, mm, driver)


# ============================================================================ Drift v2
def drift_margin_ratio(size: Any, base_ratio: Any, imf_factor: Any) -> Any:
    r"""Drift's size-adjusted margin ratio (the perp size premium), vectorised.

    .. math:: r(S) = \max\left(r_{base},\ \tfrac{4}{5} r_{base} + imf \sqrt{S}\right)
              \quad (imf > 0), \qquad r(S) = r_{base} \quad (imf = 0)

    with ``S`` the absolute position size in units of the base asset and ``imf`` the market's
    ``imf_factor`` as a fraction (Drift stores it in units of ``SPOT_IMF_PRECISION`` = 1e6).
    SOURCE: drift-labs/protocol-v2, ``programs/drift/src/math/margin.rs``,
    ``calculate_size_premium_liability_weight`` (``liability_weight - liability_weight / 5
    + sqrt(size) * imf_factor``, bounded below by ``liability_weight``), called by
    ``PerpMarket::get_margin_ratio`` in ``programs/drift/src/state/perp_market.rs`` for the
    initial and the maintenance ratio alike (non-high-leverage mode). Drift evaluates it in
    integers (``sqrt(size * 10 + 1)`` of a 1e9-scaled size, ratios in 1e-4); this is the
    real-valued formula.

    Examples
    --------
    Drift's unit test ``get_margin_ratio::smart_hlm_size``: initial ratio 10 %, imf factor
    50 (5e-5), size 1,000,000 base units -> 1300 / 1e4:

    >>> round(drift_margin_ratio(1e6, 0.10, 50e-6), 12)
    0.13
    """
    s = _array_arg("size", size, low=0.0)
    base = _array_arg("base_ratio", base_ratio, low=0.0)
    imf = _array_arg("imf_factor", imf_factor, low=0.0)
    s, base, imf = np.broadcast_arrays(s, base, imf)
    out = np.where(imf > 0.0, np.maximum(base, 0.8 * base + imf * np.sqrt(s)), base)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True, eq=False)
class DriftMargin:
    r"""Drift protocol-v2 perp cross margin with the IMF size premium.

    Parameters
    ----------
    base_imr : float or mapping of str to float
        ``margin_ratio_initial / MARGIN_PRECISION`` (e.g. 0.1 for 10x), in (0, 1].
    base_mmr : float or mapping
        ``margin_ratio_maintenance / MARGIN_PRECISION``, in [0, 1], <= ``base_imr``.
    imf_factor : float or mapping
        ``imf_factor / SPOT_IMF_PRECISION`` (e.g. 50 -> 5e-5), >= 0; 0 disables the premium.
    on_unsupported : {"raise", "ignore"}
        What to do with positions that are not linear futures / perpetuals.
    name : str
        Label; default ``"drift"``.

    Notes
    -----
    Per account (Drift cross-margins a user's perp positions, one per market):

    .. math:: IM = \sum_m |q_m| P_m \, r(|q_m|; r^{init}_m), \qquad
              MM = \sum_m |q_m| P_m \, r(|q_m|; r^{maint}_m)

    with ``r`` from :func:`drift_margin_ratio` and ``|q_m|`` the base-asset size. SOURCE:
    drift-labs/protocol-v2, ``programs/drift/src/math/margin.rs``,
    ``calculate_perp_position_value_and_pnl`` (``margin_requirement = worst_case_base_asset_
    value * margin_ratio / MARGIN_PRECISION``, the ratio from ``get_margin_ratio`` of the
    absolute base amount). Not modelled: open orders (worst-case base amount), the high-
    leverage mode, user custom margin ratios, the strict (TWAP-bounded) quote price and the
    unrealised-P&L asset weights (the margin balance is the common one of
    :func:`~marginlab.models.portfolio.account_equity`). Because ``r`` is increasing in its
    base ratio, ``base_mmr <= base_imr`` gives ``MM <= IM``.

    The driver names the account's largest-IM market and whether its size premium is active.
    """

    base_imr: float | Mapping[str, float]
    base_mmr: float | Mapping[str, float]
    imf_factor: float | Mapping[str, float] = 0.0
    on_unsupported: str = "raise"
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        imr = _market_param("base_imr", self.base_imr, low=0.0, high=1.0, low_open=True)
        mmr = _market_param("base_mmr", self.base_mmr, low=0.0, high=1.0)
        _check_ordered("base_mmr", mmr, "base_imr", imr)
        sets(self, "base_imr", imr)
        sets(self, "base_mmr", mmr)
        sets(self, "imf_factor", _market_param("imf_factor", self.imf_factor, low=0.0))
        _check_choice("on_unsupported", self.on_unsupported, _ON)
        sets(self, "name", _check_name(self.name, "drift"))

    def compute(self, book: Book, market: MarketState, *, scenarios: Any = None
                ) -> MarginResult:
        """IM and MM of every account at today's prices (``scenarios`` ignored)."""
        pos, used, _, units, notional = _linear_setup(book, market, self.on_unsupported,
                                                      self.name)
        i = pos.instrument
        imr = _resolve("base_imr", self.base_imr, book, used)[i]
        mmr = _resolve("base_mmr", self.base_mmr, book, used)[i]
        imf = _resolve("imf_factor", self.imf_factor, book, used)[i]
        r_im = np.asarray(drift_margin_ratio(units, imr, imf))
        r_mm = np.asarray(drift_margin_ratio(units, mmr, imf))
        im, mm = notional * r_im, notional * r_mm
        ids = book.instruments["instrument_id"].to_numpy(object)
        labels = np.concatenate([np.char.add(ids.astype(str), " base ratio"),
                                 np.char.add(ids.astype(str), " size premium")]).astype(object)
        code = i + book.n_instruments * (r_im > imr)
        driver = _driver(book.n_accounts, pos.account, im, labels, code)
        return _result(self.name, book, market, pos, im, mm, driver)


def _check_ordered(low_name: str, low: Any, high_name: str, high: Any) -> None:
    """``low <= high`` for scalar or per-market parameters (keys present in both)."""
    keys = set(low) if isinstance(low, Mapping) else set()
    keys |= set(high) if isinstance(high, Mapping) else set()
    for k in sorted(keys) or [None]:
        lo = low.get(k) if isinstance(low, Mapping) else low
        hi = high.get(k) if isinstance(high, Mapping) else high
        if lo is not None and hi is not None and lo > hi:
            where = "" if k is None else f"[{k!r}]"
            raise ValueError(f"{low_name}{where} must be <= {high_name}{where}, got {lo!r} > "
                             f"{hi!r}")


# ======================================================================== Deribit linear
@dataclass(frozen=True, eq=False)
class DeribitLinearMargin:
    r"""Deribit standard margin of linear (USDC) perpetuals: base rate plus a size add-on.

    Parameters
    ----------
    im_base, mm_base : float or mapping of str to float
        Base initial and maintenance rates (BTC_USDC: 2 % and 1 %; SOL_USDC: 4 % and 2 %),
        in [0, 1], ``mm_base <= im_base``; one for all markets or per market.
    size_rate : float or mapping
        Add-on per unit of the underlying held (BTC_USDC: 0.005 % = 5e-5 per BTC; SOL_USDC:
        0.0005 % = 5e-6 per SOL), >= 0, applied to both rates.
    on_unsupported : {"raise", "ignore"}
        What to do with positions that are not linear futures / perpetuals.
    name : str
        Label; default ``"deribit-linear"``.

    Notes
    -----
    For a net position of ``S = |q| m`` coins at index price ``P``:

    .. math:: IM = S P \,(im_{base} + k S), \qquad MM = S P \,(mm_{base} + k S)

    summed over the account's instruments. SOURCE: Deribit support, "Linear Perpetual",
    section "Margin calculation examples" ("Initial margin requirement: 2% + (POS Size in
    BTC) * 0.005%", "Maintenance margin requirement: 1% + (POS Size in BTC) * 0.005%";
    SOL_USDC 4 % / 2 % + size in SOL x 0.0005 %; margin computed on the index price in the
    margin currency). The rates are applied as published, without a cap.
    """

    im_base: float | Mapping[str, float]
    mm_base: float | Mapping[str, float]
    size_rate: float | Mapping[str, float]
    on_unsupported: str = "raise"
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        im = _market_param("im_base", self.im_base, low=0.0, high=1.0)
        mm = _market_param("mm_base", self.mm_base, low=0.0, high=1.0)
        _check_ordered("mm_base", mm, "im_base", im)
        sets(self, "im_base", im)
        sets(self, "mm_base", mm)
        sets(self, "size_rate", _market_param("size_rate", self.size_rate, low=0.0))
        _check_choice("on_unsupported", self.on_unsupported, _ON)
        sets(self, "name", _check_name(self.name, "deribit-linear"))

    def compute(self, book: Book, market: MarketState, *, scenarios: Any = None
                ) -> MarginResult:
        """IM and MM of every account at today's prices (``scenarios`` ignored)."""
        pos, used, _, units, notional = _linear_setup(book, market, self.on_unsupported,
                                                      self.name)
        i = pos.instrument
        k = _resolve("size_rate", self.size_rate, book, used)[i]
        im = notional * (_resolve("im_base", self.im_base, book, used)[i] + k * units)
        mm = notional * (_resolve("mm_base", self.mm_base, book, used)[i] + k * units)
        ids = book.instruments["instrument_id"].to_numpy(object)
        labels = np.char.add(ids.astype(str), " rate + size add-on").astype(object)
        driver = _driver(book.n_accounts, pos.account, im, labels, i)
        return _result(self.name, book, market, pos, im, mm, driver)
