"""The live margin engine: one book kept hot between batch runs.

A :class:`MarginEngine` is built once from a book, a market snapshot, a margin method and
optionally a fixed scenario set. With a risk-based method (Monte Carlo, historical or filtered
historical ES / VaR, plain or weighted scenarios) it is the scenario engine described below;
with any other method (grid: SPAN-like, Deribit-like; tiered and exchange methods) it
recomputes the touched accounts with the method itself (:mod:`._method`). Resting orders
(``Book.orders``, :meth:`MarginEngine.place_order`) are charged as the batch
:class:`~marginlab.models.orders.WithOrders` charges them (:mod:`._orders`).

The scenario engine holds in memory the unit P&L ``U`` of every listed instrument and
collateral asset in every scenario (the matrix :func:`~marginlab.models.portfolio.revalue`
computes), each account's holdings over the rows of ``U`` (CSR, as
:func:`~marginlab.models.portfolio.portfolio_risk` reads them), each account's risk measure
with its Euler allocation to holdings, and an LRU cache of accounts' scenario P&L vectors.

* :meth:`MarginEngine.what_if`: IM, MM, VaR / ES with error bars before and after some trades
  and the trades' Euler contributions, from the account's cached P&L vector plus the traded
  instruments' rows of ``U``: tens of microseconds, nothing changes.
* :meth:`MarginEngine.apply`, :meth:`~MarginEngine.deposit`, :meth:`~MarginEngine.withdraw`:
  change the book; the touched accounts are re-margined exactly at once.
* :meth:`MarginEngine.update_market`: new prices (and implied vols). Every tick re-marks every
  account: the margin balance exactly (linear and inverse contracts and collateral are linear
  in the spot, options are re-priced once per instrument) and the risk measure to first
  order, ``m + sum_h alloc_h (x_h / x_h,ref - 1)``, where ``alloc_h`` is holding ``h``'s
  Euler contribution and ``x_h`` its row's scale (the spot for linear contracts, options and
  coin collateral; 1 for inverse contracts, whose USD unit P&L does not scale with the spot).
  ES and VaR are positively homogeneous, so the re-mark is exact when every scale moves by the
  same factor and all instruments scale with it (an account of linear contracts on one
  underlying) and first order otherwise. A full re-margin (new scenarios at the new market,
  new ``U``, every account's risk recomputed exactly) happens where the
  :class:`RemarginPolicy` says so: every N ticks, every T seconds, when an underlying has
  moved more than a band since the last one, or, for single accounts, when an account's
  margin ratio enters a band.

After each change the engine compares every touched account's margin balance with its IM and
MM and emits :class:`MarginEvent` s: ``margin_call`` when the balance falls below IM
(``excess < 0``), ``liquidation`` when the margin ratio ``MM / balance`` reaches 1 (or the
balance is <= 0), ``restored`` when an account leaves those states. These are exactly the
tests of :class:`~marginlab.models.margin.base.MarginResult` (``excess``, ``margin_ratio``).

Equality with the batch path (tested): after a full re-margin every account's VaR, ES, error
bars, IM, MM and allocation are those of ``portfolio_risk`` / ``MarginMethod.compute`` on the
same book and scenarios, bit for bit (the same kernel on the same CSR rows); the margin
balance agrees with ``account_equity`` to rounding (it is summed per holding, not per position
row); a what-if's "before" is bit-identical and its "after" agrees with the batch on the
book with the trades to rounding (the trade rows are summed after the account's vector
instead of in instrument order).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate._engine_kernels import remark

from .._validate import check_real
from ..book import INVERSE_TYPES, OPTION_TYPES, Book
from ..orders import Orders, WithOrders, fill_orders
from ..portfolio import holdings_matrix
from ..scenarios import MarketState, ScenarioSet
from ._marks import MarksMixin
from ._method import MethodMixin
from ._orders import OrdersMixin
from ._reading import ReadingMixin
from ._scenario import ScenarioMixin
from .records import (
    _STATUS,
    CALL,
    LIQUIDATION,
    OK,
    MarginEvent,
    MarketUpdate,
    RemarginPolicy,
    WhatIf,
    _coefficients,
    _finite,
    _time_seconds,
)

__all__ = ["MarginEngine", "MarginEvent", "MarketUpdate", "RemarginPolicy", "WhatIf"]

_RISK_KEYS = ("var", "var_lo", "var_hi", "var_se", "es", "es_se", "es_lo", "es_hi")
_STATE_ARRAYS = ("_indptr", "_rows", "_qty", "_a", "_b", "_c", "_fb", "_fs", "_alloc", "_x_ref",
                 "_mb", "_m", "_im", "_mm", "_m_ref", "_exact_tick", "_status", "_mmr", "_n_ord")


def is_scenario_method(method: Any) -> bool:
    """Whether ``method`` is a scenario VaR / ES method the scenario engine serves (it has
    ``measure``, ``level``, ``mm_fraction`` and draws ``scenarios(market)``)."""
    return all(hasattr(method, a) for a in ("measure", "level", "mm_fraction", "scenarios"))


# ============================================================================ the engine
class MarginEngine(ScenarioMixin, MarksMixin, OrdersMixin, MethodMixin, ReadingMixin):
    """A book kept hot for what-if margin, live re-marking and margin events.

    Parameters
    ----------
    book : Book
        Accounts, positions and collateral at build time.
    market : MarketState
        Today's prices and implied vols.
    method : margin method, optional
        A risk-based method (``MonteCarloMargin``, ``HistoricalMargin``): its ``measure``,
        ``level`` and ``mm_fraction`` define IM = max(measure, 0) and MM = mm_fraction x IM,
        and, unless ``scenarios`` is given, its ``scenarios(market)`` draws the scenario set
        at each full re-margin (same seed, so the same draws rebased on the new market).
        Without a method, ``scenarios`` is required and ``measure``, ``level``,
        ``mm_fraction`` are used. Any other :class:`~marginlab.models.margin.MarginMethod`
        (``SpanLike``, ``DeribitLike``, ``TieredMargin``, ...) is served by recomputing the
        touched accounts with ``method.compute`` (see :mod:`._method` for the cost). A
        ``WithOrders(method)`` is unwrapped: its orders (or the book's) are the engine's.
    scenarios : ScenarioSet, optional
        A fixed scenario set at ``market``; at a full re-margin on a moved market its prices
        are rebased: multiplied by ``S_new / S_build`` per underlying.
    measure, level, mm_fraction : str, float, float
        Used when ``method`` is None (defaults ``"es"``, 0.99, 0.5).
    ci : float
        Confidence of the error bars.
    policy : RemarginPolicy, optional
        When market updates trigger a full re-margin (default: never automatically; call
        :meth:`remargin`).
    assets : sequence of str
        Collateral assets that may be deposited beyond those in the book.
    cache_mb : float
        Memory for cached account P&L vectors (LRU), MiB.

    Notes
    -----
    Thread safety: every public method takes one re-entrant lock, so concurrent callers
    never see a half-updated account; reads and writes are serialised.

    Resting orders (the book's ``orders`` table, :meth:`place_order`, :meth:`cancel_order`,
    :meth:`cancel_orders`) are margined as ``WithOrders(method)``: the riskier of all buys /
    all sells filling at their limit prices; :meth:`close_out` cancels the account's orders.
    With a non-scenario method (grid, tiered) the risk numbers (``var``, ``es`` ...) are NaN
    unless the method reports them in ``details``, and a what-if gives no Euler contributions
    (NaN); ``measure`` is ``"im"`` and ``level`` NaN.
    """

    def __init__(self, book: Book, market: MarketState, method: Any = None, *,
                 scenarios: ScenarioSet | None = None, measure: str = "es",
                 level: float = 0.99, mm_fraction: float = 0.5, ci: float = 0.95,
                 policy: RemarginPolicy | None = None, assets: Sequence[str] = (),
                 cache_mb: float = 512.0) -> None:
        if not isinstance(book, Book):
            raise TypeError(f"book must be a Book, got {type(book).__name__}")
        if not isinstance(market, MarketState):
            raise TypeError(f"market must be a MarketState, got {type(market).__name__}")
        if isinstance(method, WithOrders):
            if method.orders is not None:
                book = replace(book, orders=method.orders.table)
            method = method.method
        self._scenario_mode = method is None or is_scenario_method(method)
        if method is not None and self._scenario_mode:
            measure, level, mm_fraction = method.measure, method.level, method.mm_fraction
        elif method is not None:
            if not callable(getattr(method, "compute", None)):
                raise TypeError("method must be a margin method (with compute(book, market)), "
                                f"got {type(method).__name__}")
            measure, level = "im", float("nan")
            mf = getattr(method, "mm_fraction", None)
            mm_fraction = float(mf) if isinstance(mf, int | float) and 0 < mf <= 1 else 0.5
        elif scenarios is None:
            raise ValueError("pass a margin method or a scenario set (scenarios=)")
        if self._scenario_mode and measure not in ("es", "var"):
            raise ValueError(f"measure must be 'es' or 'var', got {measure!r}")
        if scenarios is not None and not isinstance(scenarios, ScenarioSet):
            raise TypeError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
        if self._scenario_mode:
            level = check_real("level", level, low=0.0, high=1.0, low_open=True,
                               high_open=True)
        self.level = level
        self.mm_fraction = check_real("mm_fraction", mm_fraction, low=0.0, high=1.0,
                                      low_open=True)
        self.ci = check_real("ci", ci, low=0.0, high=1.0, low_open=True, high_open=True)
        self.measure = measure
        self.method = method
        self.policy = policy or RemarginPolicy()
        if not isinstance(self.policy, RemarginPolicy):
            raise TypeError(f"policy must be a RemarginPolicy, got {type(policy).__name__}")
        self._lock = threading.RLock()
        self._fixed = scenarios
        self._fixed_market = market
        self._cache_bytes = check_real("cache_mb", cache_mb, low=0.0) * 2.0**20

        # ---- instruments and rows
        inst = book.instruments
        self._instruments = inst
        self._inst_ids = inst["instrument_id"].to_numpy(str)
        self._inst_index = {s: i for i, s in enumerate(self._inst_ids.tolist())}
        self._types = inst["type"].to_numpy(str)
        self._und = inst["underlying"].to_numpy(str)
        self._mult = inst["multiplier"].to_numpy(float)
        self._face = np.nan_to_num(inst["face_value"].to_numpy(float), nan=0.0)
        self._is_opt = np.isin(self._types, OPTION_TYPES)
        self._is_inv = np.isin(self._types, INVERSE_TYPES)
        self._strike = np.nan_to_num(inst["strike"].to_numpy(float), nan=1.0)
        self._expiry = np.nan_to_num(inst["expiry"].to_numpy(float), nan=0.0)
        self._is_call = inst["option_type"].to_numpy(str) == "call"
        extra = {str(a).upper() for a in assets}
        self._assets = tuple(book.assets) + tuple(sorted(extra - set(book.assets)))
        self._asset_index = {a: k for k, a in enumerate(self._assets)}
        self._n_inst = len(inst)
        self._n_rows = self._n_inst + len(self._assets)
        coll = pd.DataFrame({"account_id": "_", "asset": list(self._assets),
                             "amount": 0.0, "haircut": 0.0})
        # A book with the instruments and assets and no positions: what ``revalue`` needs
        # (built from already normalised tables, so an empty position table is accepted).
        self._skeleton = Book(inst, pd.DataFrame({
            "account_id": pd.Series([], dtype=object), "instrument_id": pd.Series([], dtype=object),
            "quantity": pd.Series([], dtype=float), "entry_price": pd.Series([], dtype=float)}),
            coll)

        # ---- accounts and holdings (CSR over rows, as holdings_matrix); resting orders add
        # a zero holding per (account, instrument) ordered, as fill_orders(book, orders, None)
        orders = book.orders if book.orders is not None and len(book.orders) else None
        if orders is not None:
            book = fill_orders(book, Orders(orders), None)
        self._account_ids: list[str] = [str(a) for a in book.account_ids]
        self._acc_index = {a: i for i, a in enumerate(self._account_ids)}
        h = holdings_matrix(book)
        if self._assets[: len(book.assets)] != tuple(book.assets):  # pragma: no cover
            raise AssertionError("asset order")
        self._indptr = h.indptr.astype(np.int64)
        self._rows = h.indices.astype(np.int64)
        self._qty = h.data.astype(float)
        nnz = self._rows.size
        pa = book.position_account
        pi = book.position_instrument
        pos = book.positions
        a, b, c = _coefficients(self._types[pi], self._mult[pi], self._face[pi],
                                pos["quantity"].to_numpy(float),
                                pos["entry_price"].to_numpy(float))
        hold_acc = np.repeat(np.arange(len(self._account_ids)), np.diff(self._indptr))
        key = hold_acc * self._n_rows + self._rows
        idx = np.searchsorted(key, pa * self._n_rows + pi)
        self._a = np.bincount(idx, weights=a, minlength=nnz)
        self._b = np.bincount(idx, weights=b, minlength=nnz)
        self._c = np.bincount(idx, weights=c, minlength=nnz)
        hh = book.haircut_holdings.tocoo()
        idx = np.searchsorted(key, hh.row.astype(np.int64) * self._n_rows + self._n_inst
                              + hh.col.astype(np.int64))
        self._b += np.bincount(idx, weights=hh.data, minlength=nnz)
        col = book.collateral
        self._haircut = {(str(r.account_id), str(r.asset)): float(r.haircut)
                         for r in col.itertuples(index=False)}
        real = pos.iloc[: len(pos) - (0 if orders is None else len(orders))]
        self._pos_log: list[pd.DataFrame] = [real.copy()]
        self._coll_amount = {(str(r.account_id), str(r.asset)): float(r.amount)
                             for r in col.itertuples(index=False)}
        self._row_names = np.concatenate([self._inst_ids, np.asarray(self._assets, dtype=str)])
        # per account: its position rows (instrument, quantity, entry) and collateral assets,
        # for the sub-books of the method path
        self._pos_acc: dict[str, list[tuple[str, float, float]]] = {}
        for r in real.itertuples(index=False):
            self._pos_acc.setdefault(str(r.account_id), []).append(
                (str(r.instrument_id), float(r.quantity), float(r.entry_price)))
        self._coll_acc: dict[str, list[str]] = {}
        for acc, asset in self._coll_amount:
            self._coll_acc.setdefault(acc, []).append(asset)
        self._init_orders(orders)

        # ---- market, scenarios, risk
        self._tick = 0
        self._time: Any = None
        self._last_full_time: float | None = None
        self._last_full_tick = 0
        self.market = market
        self._marks(market)
        self._full_market = market
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._vbuf = np.empty((0, 0))
        n = len(self._account_ids)
        self._status = np.zeros(n, np.int8)
        self._mmr = np.full(n, self.mm_fraction)
        self._full_remargin()
        self._status = self._status_of(np.arange(n))

    # ------------------------------------------------------------------ properties
    @property
    def account_ids(self) -> np.ndarray:
        """Account ids, in the engine's row order."""
        return np.asarray(self._account_ids, dtype=object)

    @property
    def scenarios(self) -> ScenarioSet | None:
        """The scenario set of the last full re-margin (None for a non-scenario method)."""
        return self._scen if self._scenario_mode else None

    @property
    def unit_pnl(self) -> np.ndarray:
        """The unit P&L ``U`` (rows: instruments, then assets; read-only view). Raises
        AttributeError for a non-scenario method."""
        if not self._scenario_mode:
            raise AttributeError(f"an engine on {type(self.method).__name__} has no unit P&L")
        v = self._U.view()
        v.flags.writeable = False
        return v

    @property
    def tick(self) -> int:
        """Number of market updates so far."""
        return self._tick

    @property
    def book(self) -> Book:
        """The current book, rebuilt: the build-time positions plus one row per applied trade
        (the holdings net them), collateral as deposited."""
        with self._lock:
            pos = pd.concat(self._pos_log, ignore_index=True)
            keys = sorted(self._coll_amount)
            col = pd.DataFrame({"account_id": [k[0] for k in keys],
                                "asset": [k[1] for k in keys],
                                "amount": [self._coll_amount[k] for k in keys],
                                "haircut": [self._haircut.get(k, 0.0) for k in keys]})
            # The Book constructor takes normalised tables as they are: one row per trade
            # (holdings net them), as the engine received them.
            return Book(self._instruments, pos, col, orders=self._orders_table())

    def __repr__(self) -> str:
        what = (f"{self._U.shape[1]} scenarios, {self.measure.upper()} {self.level:.1%}"
                if self._scenario_mode else getattr(self.method, "name", "method"))
        return (f"MarginEngine({len(self._account_ids)} accounts, {self._rows.size} holdings, "
                f"{len(self._orders)} orders, {what}, tick {self._tick})")

    def _risk_of(self, accounts: np.ndarray) -> None:
        """Exact risk (or IM, for a non-scenario method) of ``accounts`` (sorted rows)."""
        if not self._scenario_mode:
            self._exact_method(accounts)
            return
        with_orders = self._n_ord[accounts] > 0
        if with_orders.any():
            self._risk_with_orders(accounts[with_orders])
            accounts = accounts[~with_orders]
            if not accounts.size:
                return
        n = len(self._account_ids)
        if accounts.size == n:
            ip, rows, q = self._indptr, self._rows, self._qty
            sel = slice(None)
        else:
            lens = np.diff(self._indptr)[accounts]
            ip = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            sel = (np.repeat(self._indptr[accounts] - ip[:-1], lens)
                   + np.arange(ip[-1])).astype(np.int64)
            rows, q = self._rows[sel], self._qty[sel]
        r = self._acc_risk(self._U, ip, rows, q, allocate=True)
        for k in _RISK_KEYS:
            self._stats[k][accounts] = r[k][0]
        self._m_ref[accounts] = r[self.measure][0]
        self._alloc[sel] = r[f"alloc_{self.measure}"][0]
        self._x_ref[sel] = self._scale[rows]
        self._exact_tick[accounts] = self._tick

    def _full_remargin(self) -> None:
        if self._scenario_mode:
            self._revalue(self.market)
        else:
            self._valued = np.ones(self._n_inst, bool)
        n = len(self._account_ids)
        self._stats = {k: np.zeros(n) for k in _RISK_KEYS}
        self._m_ref = np.zeros(n)
        self._alloc = np.zeros(self._rows.size)
        self._x_ref = np.ones(self._rows.size)
        self._exact_tick = np.zeros(n, np.int64)
        self._risk_of(np.arange(n))
        self._full_market = self.market
        self._last_full_tick = self._tick
        self._last_full_time = _time_seconds(self._time)
        self._remark_all()

    def _remark_all(self) -> None:
        n = len(self._account_ids)
        self._mb = np.empty(n)
        self._m = np.empty(n)
        remark(self._indptr, self._rows, self._a, self._b, self._c, self._alloc, self._x_ref,
               self._m_ref, self._value, self._spot, self._scale, self._mb, self._m)
        self._im = np.maximum(self._m, 0.0)
        self._mm = self._mmr * self._im

    def _remark_one(self, i: int) -> None:
        mb = np.empty(1)
        m = np.empty(1)
        lo, hi = self._indptr[i], self._indptr[i + 1]
        ip = np.array([0, hi - lo], np.int64)
        remark(ip, self._rows[lo:hi], self._a[lo:hi], self._b[lo:hi], self._c[lo:hi],
               self._alloc[lo:hi], self._x_ref[lo:hi], self._m_ref[i:i + 1], self._value,
               self._spot, self._scale, mb, m)
        self._mb[i] = mb[0]
        self._m[i] = m[0]
        self._im[i] = max(m[0], 0.0)
        self._mm[i] = self._mmr[i] * self._im[i]

    # ------------------------------------------------------------------ status and events
    def _status_of(self, acc: np.ndarray) -> np.ndarray:
        mb, im, mm = self._mb[acc], self._im[acc], self._mm[acc]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(mb > 0, mm / np.where(mb > 0, mb, 1.0), np.inf)
        return np.where(ratio >= 1.0, LIQUIDATION, np.where(mb - im < 0, CALL, OK)).astype(
            np.int8)

    def _events(self, acc: np.ndarray | None = None) -> tuple[MarginEvent, ...]:
        acc = np.arange(len(self._account_ids)) if acc is None else np.asarray(acc, np.int64)
        new = self._status_of(acc)
        old = self._status[acc]
        changed = np.flatnonzero(new != old)
        out = []
        for j in changed:
            i = int(acc[j])
            kind = "restored" if new[j] == OK else _STATUS[new[j]]
            out.append(MarginEvent(self._tick, self._time, self._account_ids[i], kind,
                                   float(self._mb[i]), float(self._im[i]), float(self._mm[i])))
        self._status[acc] = new
        return tuple(out)

    # ------------------------------------------------------------------ reading
    def _account(self, account: Any) -> int:
        i = self._acc_index.get(str(account))
        if i is None:
            raise KeyError(f"unknown account_id {account!r}")
        return i

    # ------------------------------------------------------------------ what-if
    @staticmethod
    def _pair_dict(d: dict[str, float], mb: float) -> dict[str, float]:
        out = dict(d)
        out.update(margin_balance=mb, excess=mb - d["im"])
        return out

    def what_if(self, account: Any, trades: Any) -> WhatIf:
        """Margin of ``account`` before and after ``trades``; nothing changes.

        Parameters
        ----------
        account : str
            An account id of the engine.
        trades : mapping or sequence or DataFrame
            ``{instrument_id: quantity}``, or ``[(instrument_id, quantity[, price]), ...]``,
            or dicts / a DataFrame with ``instrument_id``, ``quantity`` and optional ``price``
            (the entry price, USD per unit of the underlying, option premium as in the book;
            default the current mark, so the trade's own P&L is zero).
        """
        with self._lock:
            i = self._account(account)
            parsed = self._parse_trades(trades)
            k = len(parsed)
            rows = np.fromiter((t[0] for t in parsed), np.int64, k)
            q = np.fromiter((t[1] for t in parsed), float, k)
            dmb = 0.0
            recs = []
            for r, qf, pf in parsed:
                p = self._mark_price(r) if pf is None else pf
                dmb += self._trade_pnl(r, qf, p)
                recs.append((str(self._inst_ids[r]), qf, p))
            mb = float(self._mb[i])
            acc = self._account_ids[i]
            if not self._scenario_mode:
                b, a = self._what_if_method(i, parsed, [t[2] for t in recs])
                nan = np.full(k, np.nan)
                return WhatIf(acc, self.level, self.measure, self._pair_dict(b, mb),
                              self._pair_dict(a, mb + dmb), tuple(recs), nan, nan.copy())
            if self._n_ord[i] > 0:
                before, out, c_var, c_es = self._what_if_orders(i, rows, q)
                return WhatIf(acc, self.level, self.measure, self._stats_pair(before, mb),
                              self._stats_pair(out, mb + dmb), tuple(recs), c_var, c_es)
            base, before = self._base(i)
            if self._vbuf.shape[0] < k + 1 or self._vbuf.shape[1] != base.size:
                self._vbuf = np.empty((max(k + 1, 8), base.size))
            V = self._vbuf[:k + 1]
            V[0] = base
            V[1:] = self._U[rows]
            qv = np.empty(k + 1)
            qv[0] = 1.0
            qv[1:] = q
            out = self._risk_virtual(V, qv)
            return WhatIf(acc, self.level, self.measure, self._stats_pair(before, mb),
                          self._stats_pair(out, mb + dmb), tuple(recs),
                          out["alloc_var"][0, 1:].copy(), out["alloc_es"][0, 1:].copy())

    # ------------------------------------------------------------------ writes
    @contextmanager
    def _atomic(self, accounts: Sequence[str]) -> Iterator[None]:
        """Undo every change of the block if it raises. Only a non-scenario method can fail
        after validation (its ``compute`` may refuse a position, e.g. beyond the last
        bracket), so only then is the state saved (a copy of the per-holding and per-account
        arrays: small beside the method's own cost)."""
        if self._scenario_mode:
            yield
            return
        arrays = {k: getattr(self, k).copy() for k in _STATE_ARRAYS}
        stats = {k: v.copy() for k, v in self._stats.items()}
        ids, idx = list(self._account_ids), dict(self._acc_index)
        pos_len = {a: len(self._pos_acc[a]) for a in accounts if a in self._pos_acc}
        coll_acc = {a: list(self._coll_acc[a]) for a in accounts if a in self._coll_acc}
        dicts = (dict(self._coll_amount), dict(self._haircut), dict(self._orders))
        n_log, next_oid = len(self._pos_log), self._next_oid
        try:
            yield
        except BaseException:
            for k, v in arrays.items():
                setattr(self, k, v)
            self._stats = stats
            self._account_ids, self._acc_index = ids, idx
            for a in accounts:
                if a in pos_len:
                    del self._pos_acc[a][pos_len[a]:]
                else:
                    self._pos_acc.pop(a, None)
                if a in coll_acc:
                    self._coll_acc[a] = coll_acc[a]
                else:
                    self._coll_acc.pop(a, None)
            self._coll_amount, self._haircut, self._orders = dicts
            del self._pos_log[n_log:]
            self._next_oid = next_oid
            self._cache.clear()
            raise

    def _new_account(self, account: str) -> int:
        i = len(self._account_ids)
        self._account_ids.append(account)
        self._acc_index[account] = i
        self._indptr = np.append(self._indptr, self._indptr[-1])
        for name in ("_mb", "_m", "_im", "_mm", "_m_ref"):
            setattr(self, name, np.append(getattr(self, name), 0.0))
        for k in self._stats:
            self._stats[k] = np.append(self._stats[k], 0.0)
        self._exact_tick = np.append(self._exact_tick, self._tick)
        self._status = np.append(self._status, np.int8(OK))
        self._mmr = np.append(self._mmr, self.mm_fraction)
        self._n_ord = np.append(self._n_ord, 0)
        return i

    def _splice(self, i: int, rows: np.ndarray, dq: np.ndarray, da: np.ndarray,
                db: np.ndarray, dc: np.ndarray) -> None:
        """Add quantities and mark coefficients to account ``i``'s holdings (rows sorted,
        new rows inserted in order)."""
        lo, hi = int(self._indptr[i]), int(self._indptr[i + 1])
        old = self._rows[lo:hi]
        new_rows = np.union1d(old, rows)
        pos_old = np.searchsorted(new_rows, old)
        pos_add = np.searchsorted(new_rows, rows)
        seg = {}
        z = np.zeros(rows.size)
        for name, add in (("_qty", dq), ("_a", da), ("_b", db), ("_c", dc), ("_fb", z),
                          ("_fs", z)):
            v = np.zeros(new_rows.size)
            v[pos_old] = getattr(self, name)[lo:hi]
            for p, x in zip(pos_add, add, strict=True):  # in trade order, like the batch
                v[p] += x
            seg[name] = v
        seg["_rows"] = new_rows
        seg["_alloc"] = np.zeros(new_rows.size)
        seg["_x_ref"] = np.ones(new_rows.size)
        for name, v in seg.items():
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr[:lo], v, arr[hi:]]))
        self._indptr[i + 1:] += new_rows.size - (hi - lo)

    def _reprice(self, accounts: list[int]) -> tuple[MarginEvent, ...]:
        acc = np.array(sorted(set(accounts)), np.int64)
        self._risk_of(acc)
        for i in acc:
            self._cache.pop(int(i), None)
            self._remark_one(int(i))
        return self._events(acc)

    def apply(self, trades: pd.DataFrame | Sequence[Mapping[str, Any]]) -> tuple[MarginEvent, ...]:
        """Add trades to the book and re-margin the accounts they touch exactly.

        ``trades``: a DataFrame (or a list of dicts) with ``account_id``, ``instrument_id``,
        ``quantity`` and optional ``price`` (entry price; default the current mark). The whole
        batch is validated before anything changes. Returns the events raised.
        """
        frame = pd.DataFrame(list(trades)) if not isinstance(trades, pd.DataFrame) else trades
        if "account_id" not in frame.columns:
            raise ValueError("trades is missing column 'account_id'")
        with self._lock:
            per_acc: dict[str, list] = {}
            parsed = self._parse_trades(frame)
            for acc, t in zip(frame["account_id"].astype(str).tolist(), parsed, strict=True):
                per_acc.setdefault(acc, []).append(t)
            with self._atomic(list(per_acc)):
                return self._apply(per_acc)

    def _apply(self, per_acc: dict[str, list]) -> tuple[MarginEvent, ...]:
        """Splice the validated trades into the book and re-margin the touched accounts."""
        pos_rows = []
        touched = []
        for acc, ts in per_acc.items():
            i = self._acc_index.get(acc)
            if i is None:
                i = self._new_account(acc)
            rows = np.array([t[0] for t in ts], np.int64)
            q = np.array([t[1] for t in ts])
            p = np.array([self._mark_price(t[0]) if t[2] is None else t[2] for t in ts])
            a, b, c = _coefficients(self._types[rows], self._mult[rows], self._face[rows],
                                    q, p)
            self._splice(i, rows, q, a, b, c)
            touched.append(i)
            new_rows = [(acc, str(self._inst_ids[r]), float(qq), float(pp))
                        for r, qq, pp in zip(rows, q, p, strict=True)]
            pos_rows += new_rows
            self._pos_acc.setdefault(acc, []).extend(t[1:] for t in new_rows)
        self._pos_log.append(pd.DataFrame(pos_rows, columns=["account_id", "instrument_id",
                                                             "quantity", "entry_price"]))
        return self._reprice(touched)

    def deposit(self, account: Any, asset: str, amount: float, *,
                haircut: float | None = None) -> tuple[MarginEvent, ...]:
        """Add ``amount`` units of collateral ``asset`` (>= 0) to ``account`` (created if
        new); ``haircut`` applies to a new (account, asset) pair. Returns the events."""
        return self._collateral(account, asset, _finite("amount", amount), haircut, +1)

    def withdraw(self, account: Any, asset: str, amount: float, *,
                 check_margin: bool = True) -> tuple[MarginEvent, ...]:
        """Remove ``amount`` units of ``asset`` from ``account``. Refused (ValueError, nothing
        changes) when the account holds less, or with ``check_margin`` when the account's
        margin balance after the withdrawal would fall below its IM."""
        return self._collateral(account, asset, _finite("amount", amount), None, -1,
                                check_margin)

    def _collateral(self, account, asset, amount, haircut, sign, check_margin=False):
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount!r}")
        a_name = str(asset).upper()
        k = self._asset_index.get(a_name)
        if k is None:
            raise ValueError(f"unknown collateral asset {asset!r}; the engine knows "
                             f"{list(self._assets)} (pass assets= when building it)")
        if haircut is not None:
            haircut = check_real("haircut", haircut, low=0.0, high=1.0, high_open=True)
        with self._lock:
            acc = str(account)
            key = (acc, a_name)
            held = self._coll_amount.get(key, 0.0)
            if sign < 0:
                if acc not in self._acc_index:
                    raise KeyError(f"unknown account_id {account!r}")
                if amount > held:
                    raise ValueError(f"cannot withdraw {amount} {a_name} from {acc!r}: it holds "
                                     f"{held}")
            h = self._haircut.get(key, 0.0 if haircut is None else haircut)
            if check_margin:
                i = self._acc_index[acc]
                price = self._spot[self._n_inst + k]
                mb_after = self._mb[i] - amount * (1.0 - h) * price
                if mb_after < self._im[i]:
                    raise ValueError(f"withdrawal refused: {acc!r} margin balance would be "
                                     f"{mb_after:,.2f} USD, below its IM {self._im[i]:,.2f}")
            with self._atomic([acc]):
                i = self._acc_index.get(acc)
                if i is None:
                    i = self._new_account(acc)
                row = np.array([self._n_inst + k], np.int64)
                dq = np.array([sign * amount])
                z = np.zeros(1)
                self._splice(i, row, dq, z, dq * (1.0 - h), z)
                if key not in self._coll_amount:
                    self._coll_acc.setdefault(acc, []).append(a_name)
                self._coll_amount[key] = held + sign * amount
                self._haircut[key] = h
                return self._reprice([i])

    def close_out(self, account: Any) -> tuple[float, tuple[MarginEvent, ...]]:
        """Close every position of ``account`` at the current marks (a liquidation without
        slippage) and cancel its resting orders: the unrealised P&L is realised into the
        account's balance, its collateral stays. Returns the margin balance after (USD;
        negative: bad debt) and the events."""
        with self._lock:
            i = self._account(account)
            cancelled = self.cancel_orders(account) if self._n_ord[i] > 0 else ()
            lo, hi = self._indptr[i], self._indptr[i + 1]
            rows = self._rows[lo:hi]
            q = self._qty[lo:hi]
            keep = (rows < self._n_inst) & (q != 0)
            events: tuple[MarginEvent, ...] = cancelled
            if keep.any():
                events += self.apply(pd.DataFrame({
                    "account_id": self._account_ids[i],
                    "instrument_id": self._inst_ids[rows[keep]], "quantity": -q[keep]}))
            return float(self._mb[i]), events

    def totals(self) -> dict[str, float]:
        """Book totals (USD) and the number of accounts in margin call and in liquidation."""
        with self._lock:
            return {"im": float(self._im.sum()), "mm": float(self._mm.sum()),
                    "margin_balance": float(self._mb.sum()),
                    "n_margin_call": int(np.count_nonzero(self._status == CALL)),
                    "n_liquidation": int(np.count_nonzero(self._status == LIQUIDATION))}

    # ------------------------------------------------------------------ market
    def remargin(self) -> tuple[MarginEvent, ...]:
        """Full re-margin now: new scenarios at the current market, every account exact."""
        with self._lock:
            self._full_remargin()
            return self._events()

    def update_market(self, prices: Mapping[str, float], vols: Mapping[str, float] | None = None,
                      *, time: Any = None, full: bool | None = None) -> MarketUpdate:
        """New prices (USD) and implied vols (optional, annualised) for some assets.

        Every account is re-marked (linear, see the module notes); a full re-margin follows
        when ``full`` is True or, with ``full=None``, when the policy says so; with a
        ``ratio_band`` policy the accounts in the band are re-margined exactly. Returns a
        :class:`MarketUpdate` with the events raised. A bad price leaves the engine unchanged.
        """
        with self._lock:
            spot = dict(self.market.spot)
            spot.update({str(k).upper(): v for k, v in prices.items()})
            vol = dict(self.market.vol)
            if vols:
                vol.update({str(k).upper(): v for k, v in vols.items()})
            market = MarketState(spot=spot, vol=vol, rate=self.market.rate,  # validates
                                 surfaces=self.market.surfaces)
            t_sec = _time_seconds(time)
            saved = (self._tick, self._time, self.market, self._spot, self._value, self._scale)
            try:
                return self._update(market, time, t_sec, full)
            except BaseException:
                # Nothing half-applied: a failure before the new state is complete restores
                # the marks (U, risk and balances are only replaced once fully computed).
                (self._tick, self._time, self.market, self._spot, self._value,
                 self._scale) = saved
                self._remark_all()
                raise

    def _update(self, market: MarketState, time: Any, t_sec: float | None,
                full: bool | None) -> MarketUpdate:
        self._tick += 1
        self._time = time
        self.market = market
        self._marks(market)
        pol = self.policy
        if full is None:
            full = False
            if pol.every_ticks is not None:
                full |= self._tick - self._last_full_tick >= pol.every_ticks
            if pol.every_seconds is not None and t_sec is not None:
                full |= (self._last_full_time is None
                         or t_sec - self._last_full_time >= pol.every_seconds)
            if pol.price_move is not None:
                und = [u for u in self._full_market.spot if u in market.spot]
                old = self._full_market.prices(und)
                new = market.prices(und)
                full |= bool(np.any(np.abs(new / old - 1.0) > pol.price_move))
        if full:
            self._full_remargin()
            return MarketUpdate(self._tick, time, True, len(self._account_ids),
                                self._events())
        self._remark_all()
        n_exact = 0
        if pol.ratio_band is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                band = np.flatnonzero((self._mb <= 0)
                                      | (self._mm >= pol.ratio_band * self._mb))
            if band.size:
                if self._scenario_mode:
                    self._revalue(market)
                self._risk_of(band)
                self._remark_all()
                n_exact = int(band.size)
        return MarketUpdate(self._tick, time, False, n_exact, self._events())
