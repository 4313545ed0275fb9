r"""Exchange bracket margin: :class:`TieredMargin` (Binance USDⓈ-M / COIN-M style).

Leverage and margin brackets (Binance, Bybit, OKX), cross (one-way) or isolated (hedge-mode)
margin, linear and inverse contracts, with per-position liquidation prices
(:meth:`TieredMargin.liquidation_prices`). The conventions shared with the other rule-based
methods are described in :mod:`marginlab.models.margin.exchange`, from which
:class:`TieredMargin` is importable as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..book import INVERSE_TYPES, Book
from ..portfolio import account_equity
from ..scenarios import MarketState
from ._exchange_common import (
    _MODES,
    _ON,
    FUTURES_TYPES,
    _check_choice,
    _check_key,
    _check_name,
    _driver,
    _lookup,
    _market_param,
    _net_positions,
    _Positions,
    _prices,
    _result,
    _select_rows,
)
from .base import MarginResult
from .brackets import BracketTable
from .liquidation import liquidation_price_with_table

__all__ = ["TieredMargin"]


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
