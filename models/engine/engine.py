"""The live margin engine: one book kept hot between batch runs.

A :class:`MarginEngine` is built once from a book, a market snapshot, a risk-based margin
method (Monte Carlo, historical or filtered historical ES / VaR) and optionally a fixed
scenario set. It holds in memory the unit P&L ``U`` of every listed instrument and collateral
asset in every scenario (the matrix :func:`~marginlab.models.portfolio.revalue` computes),
each account's holdings over the rows of ``U`` (CSR, as
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr
from scipy.stats import norm

from marginlab.simulate._engine_kernels import account_pnl_into, remark, what_if_risk
from marginlab.simulate.revalue import account_risk, level_indices

from .._validate import check_real
from ..book import INVERSE_TYPES, OPTION_TYPES, STABLECOINS, Book
from ..portfolio import holdings_matrix, revalue
from ..scenarios import MarketState, ScenarioSet

__all__ = ["MarginEngine", "MarginEvent", "MarketUpdate", "RemarginPolicy", "WhatIf"]

OK, CALL, LIQUIDATION = 0, 1, 2
_STATUS = ("ok", "margin_call", "liquidation")


# ============================================================================ small records
@dataclass(frozen=True)
class RemarginPolicy:
    """When :meth:`MarginEngine.update_market` does a full re-margin instead of the linear
    re-mark.

    Parameters
    ----------
    every_ticks : int, optional
        Full re-margin every ``every_ticks`` market updates (1: every tick).
    every_seconds : float, optional
        Full re-margin when at least this many seconds of market time (the ``time`` passed to
        ``update_market``) have passed since the last one.
    price_move : float, optional
        Full re-margin when any underlying's price has moved by more than this fraction
        (e.g. 0.05) since the last one.
    ratio_band : float, optional
        Accounts whose (re-marked) margin ratio ``MM / balance`` reaches this band (e.g. 0.8)
        are re-margined exactly on their own, on scenarios rebuilt at the current market.
    """

    every_ticks: int | None = None
    every_seconds: float | None = None
    price_move: float | None = None
    ratio_band: float | None = None

    def __post_init__(self) -> None:
        if self.every_ticks is not None and (not isinstance(self.every_ticks, int | np.integer)
                                             or self.every_ticks < 1):
            raise ValueError(f"every_ticks must be an int >= 1 or None, got {self.every_ticks!r}")
        if self.every_seconds is not None:
            check_real("every_seconds", self.every_seconds, low=0.0, low_open=True)
        if self.price_move is not None:
            check_real("price_move", self.price_move, low=0.0)
        if self.ratio_band is not None:
            check_real("ratio_band", self.ratio_band, low=0.0, low_open=True)


@dataclass(frozen=True)
class MarginEvent:
    """An account crossed a margin threshold.

    ``kind`` is ``margin_call`` (balance < IM), ``liquidation`` (MM / balance >= 1 or balance
    <= 0) or ``restored`` (back above IM); amounts in USD at the moment of the event."""

    tick: int
    time: Any
    account_id: str
    kind: str
    margin_balance: float
    im: float
    mm: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly except ``time``)."""
        return {"tick": self.tick, "time": self.time, "account_id": self.account_id,
                "kind": self.kind, "margin_balance": self.margin_balance, "im": self.im,
                "mm": self.mm}


@dataclass(frozen=True)
class MarketUpdate:
    """What one :meth:`MarginEngine.update_market` did: ``full`` re-margin or linear re-mark,
    how many accounts were re-margined exactly, and the events it raised."""

    tick: int
    time: Any
    full: bool
    n_exact: int
    events: tuple[MarginEvent, ...]


@dataclass(frozen=True, eq=False)
class WhatIf:
    """Margin of one account before and after what-if trades (nothing applied).

    ``before`` and ``after`` map ``im``, ``mm``, ``var``, ``var_lo``, ``var_hi``, ``var_se``,
    ``es``, ``es_se``, ``es_lo``, ``es_hi``, ``margin_balance`` and ``excess`` to USD numbers;
    both are computed on the engine's current scenario set, so their difference carries no
    independent Monte Carlo noise. ``contributions`` has one row per trade: instrument,
    quantity and its Euler contribution to the after-trade VaR and ES.
    """

    account_id: str
    level: float
    measure: str
    before: dict[str, float]
    after: dict[str, float]
    trades: tuple[tuple[str, float, float], ...]
    var_contribution: np.ndarray
    es_contribution: np.ndarray

    @property
    def change(self) -> float:
        """IM after minus IM before, USD."""
        return self.after["im"] - self.before["im"]

    def contributions(self) -> pd.DataFrame:
        """One row per trade: ``instrument_id``, ``quantity``, ``price``, VaR / ES contribution."""
        return pd.DataFrame({"instrument_id": [t[0] for t in self.trades],
                             "quantity": [t[1] for t in self.trades],
                             "price": [t[2] for t in self.trades],
                             "var_contribution": self.var_contribution,
                             "es_contribution": self.es_contribution})

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {"account_id": self.account_id, "level": self.level, "measure": self.measure,
                "before": dict(self.before), "after": dict(self.after),
                "im_change": self.change,
                "contributions": [
                    {"instrument_id": t[0], "quantity": t[1], "price": t[2],
                     "var_contribution": float(v), "es_contribution": float(e)}
                    for t, v, e in zip(self.trades, self.var_contribution,
                                       self.es_contribution, strict=True)]}

    def __repr__(self) -> str:
        return (f"WhatIf({self.account_id!r}: IM {self.before['im']:,.2f} -> "
                f"{self.after['im']:,.2f} USD, {len(self.trades)} trade(s))")


# ============================================================================ helpers
def _coefficients(types: np.ndarray, mult: np.ndarray, face: np.ndarray, q: np.ndarray,
                  entry: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mark coefficients of position rows: unrealised P&L = a V + b S + c (USD) with V the
    unit value of the instrument (option price) and S the spot (as in ``account_equity``)."""
    inv = np.isin(types, INVERSE_TYPES)
    opt = types == "option"
    iopt = types == "inverse_option"
    lin = ~(inv | opt | iopt)
    a = np.where(opt | iopt, q * mult, 0.0)
    b = np.select([lin, inv, iopt], [q * mult, q * face / entry, -q * mult * entry], 0.0)
    c = np.select([lin, inv, opt], [-q * mult * entry, -q * face, -q * mult * entry], 0.0)
    return a, b, c


def _bs_value(s: np.ndarray, k: np.ndarray, t: np.ndarray, sigma: np.ndarray, r: float,
              is_call: np.ndarray) -> np.ndarray:
    """Black-Scholes value (USD per unit, zero yield) of a few hundred options per tick, in
    numpy (the parallel pricing kernel's thread wake-up costs more than the work); the same
    formula as ``black_scholes_price`` (intrinsic value at zero time or vol)."""
    live = (t > 0) & (sigma > 0)
    sq = sigma * np.sqrt(np.where(live, t, 1.0))
    sq = np.where(live, sq, 1.0)
    d1 = (np.log(s / k) + (r + 0.5 * sigma * sigma) * t) / sq
    d2 = d1 - sq
    df = np.exp(-r * t)
    call = s * ndtr(d1) - k * df * ndtr(d2)
    put = k * df * ndtr(-d2) - s * ndtr(-d1)
    intrinsic = np.where(is_call, np.maximum(s - k * df, 0.0), np.maximum(k * df - s, 0.0))
    return np.where(live, np.where(is_call, call, put), intrinsic)


def _time_seconds(t: Any) -> float | None:
    if t is None:
        return None
    if isinstance(t, int | float | np.integer | np.floating):
        return float(t)
    return pd.Timestamp(t).value / 1e9


def _finite(name: str, x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


# ============================================================================ the engine
class MarginEngine:
    """A book kept hot for what-if margin, live re-marking and margin events.

    Parameters
    ----------
    book : Book
        Accounts, positions and collateral at build time.
    market : MarketState
        Today's prices and implied vols.
    method : MonteCarloMargin or HistoricalMargin, optional
        The risk-based margin method: its ``measure``, ``level`` and ``mm_fraction`` define
        IM = max(measure, 0) and MM = mm_fraction x IM, and, unless ``scenarios`` is given,
        its ``scenarios(market)`` draws the scenario set at each full re-margin (same seed,
        so the same draws rebased on the new market). Without a method, ``scenarios`` is
        required and ``measure``, ``level``, ``mm_fraction`` are used.
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
        if method is not None:
            for attr in ("measure", "level", "mm_fraction"):
                if not hasattr(method, attr):
                    raise TypeError("method must be a risk-based margin method with measure, "
                                    "level and mm_fraction (MonteCarloMargin, "
                                    f"HistoricalMargin); {type(method).__name__} has no "
                                    f"{attr!r}")
            measure, level, mm_fraction = method.measure, method.level, method.mm_fraction
            if scenarios is None and not hasattr(method, "scenarios"):
                raise TypeError(f"{type(method).__name__} cannot draw scenarios; pass "
                                "scenarios=")
        elif scenarios is None:
            raise ValueError("pass a margin method or a scenario set (scenarios=)")
        if measure not in ("es", "var"):
            raise ValueError(f"measure must be 'es' or 'var', got {measure!r}")
        if scenarios is not None and not isinstance(scenarios, ScenarioSet):
            raise TypeError(f"scenarios must be a ScenarioSet, got {type(scenarios).__name__}")
        self.level = check_real("level", level, low=0.0, high=1.0, low_open=True,
                                high_open=True)
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

        # ---- accounts and holdings (CSR over rows, as holdings_matrix)
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
        self._pos_log: list[pd.DataFrame] = [pos.copy()]
        self._coll_amount = {(str(r.account_id), str(r.asset)): float(r.amount)
                             for r in col.itertuples(index=False)}

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
        self._full_remargin()
        self._status = self._status_of(np.arange(n))

    # ------------------------------------------------------------------ properties
    @property
    def account_ids(self) -> np.ndarray:
        """Account ids, in the engine's row order."""
        return np.asarray(self._account_ids, dtype=object)

    @property
    def scenarios(self) -> ScenarioSet:
        """The scenario set of the last full re-margin."""
        return self._scen

    @property
    def unit_pnl(self) -> np.ndarray:
        """The unit P&L ``U`` (rows: instruments, then assets; read-only view)."""
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
            return Book(self._instruments, pos, col)

    def __repr__(self) -> str:
        return (f"MarginEngine({len(self._account_ids)} accounts, {self._rows.size} holdings, "
                f"{self._U.shape[1]} scenarios, {self.measure.upper()} {self.level:.1%}, "
                f"tick {self._tick})")

    # ------------------------------------------------------------------ marks
    def _marks(self, market: MarketState) -> None:
        """Per row: spot S (underlying or asset price), unit value V (options), scale x."""
        n_i = self._n_inst
        spot = np.full(self._n_rows, np.nan)
        for u in set(self._und.tolist()):
            if u in market.spot:
                spot[:n_i][self._und == u] = market.spot[u]
        for k, asset in enumerate(self._assets):
            spot[n_i + k] = market.spot.get(asset, 1.0 if asset in STABLECOINS else np.nan)
        value = np.zeros(self._n_rows)
        opt = self._is_opt & np.isfinite(spot[:n_i])
        if opt.any():
            vol = np.array([market.vol.get(u, np.nan) for u in self._und[opt]])
            ok = np.isfinite(vol)
            sel = np.flatnonzero(opt)[ok]
            if sel.size:
                value[sel] = _bs_value(spot[sel], self._strike[sel], self._expiry[sel],
                                       vol[ok], market.rate, self._is_call[sel])
            value[np.flatnonzero(opt)[~ok]] = np.nan
        scale = spot.copy()
        scale[:n_i][self._is_inv] = 1.0
        self._spot, self._value, self._scale = spot, value, scale

    def _scenario_set(self, market: MarketState) -> ScenarioSet:
        if self._fixed is None:
            return self.method.scenarios(market)
        base = self._fixed
        s_old = self._fixed_market.prices(base.underlyings)
        s_new = market.prices(base.underlyings)
        if np.array_equal(s_old, s_new):
            return base
        return ScenarioSet(base.underlyings, base.prices * (s_new / s_old), base.vol_shock,
                           base.horizon, base.labels)

    def _revalue(self, market: MarketState) -> None:
        scen = self._scenario_set(market)
        if getattr(scen, "weights", None) is not None or getattr(scen, "randomizations", 1) != 1:
            raise ValueError("weighted or randomised-QMC scenario sets are not supported by the "
                             "engine yet (its what-if and re-mark kernels are unweighted)")
        covered = np.isin(self._und, scen.underlyings)
        valued = covered & (~self._is_opt | np.isin(self._und, list(market.vol)))
        held = np.zeros(self._n_inst, bool)
        held[self._rows[self._rows < self._n_inst]] = True
        bad = held & ~valued
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            why = ("the scenarios do not cover its underlying" if not covered[i]
                   else "the market has no implied vol for its underlying")
            raise ValueError(f"instrument {self._inst_ids[i]!r} is held but cannot be "
                             f"valued: {why} ({self._und[i]!r})")
        unit = revalue(self._skeleton, market, scen, also_held=np.flatnonzero(valued))
        self._U = np.ascontiguousarray(unit.pnl, dtype=float)
        self._valued = valued
        self._scen = scen
        self._setup_fast()
        self._cache.clear()

    def _setup_fast(self) -> None:
        """Constants of the what-if fast path, and a check that it reproduces the public
        ``account_risk`` bit for bit on a virtual book (otherwise what-if calls
        ``account_risk`` itself: slower, never wrong)."""
        n_scen = self._U.shape[1]
        lv = np.array([self.level])
        self._fast = None
        if np.any(n_scen - n_scen * lv < 1.0 - 1e-9):
            raise ValueError(f"level {self.level} leaves fewer than 1 tail scenario out of "
                             f"{n_scen}")
        try:
            var_top, lo_top, hi_top, w = level_indices(n_scen, lv, self.ci)
            m_keep = int(min(n_scen, max(var_top.max(), lo_top.max(), hi_top.max(),
                                         np.floor(w).max()) + 1))
            consts = {"var_top": np.asarray(var_top, np.int64),
                      "ci_lo_top": np.asarray(lo_top, np.int64),
                      "ci_hi_top": np.asarray(hi_top, np.int64), "w_es": np.asarray(w, float),
                      "level": lv, "m_keep": m_keep}
            r = int(np.flatnonzero(self._valued)[0]) if self._valued.any() else 0
            V = np.ascontiguousarray(np.vstack([self._U.sum(axis=0) * 0.01, self._U[r]]))
            q = np.array([1.0, -3.0])
            raw = what_if_risk(V, q, consts)
            ref = account_risk(V, np.array([0, 2]), np.array([0, 1]), q, (self.level,),
                               ci=self.ci)
        except (KeyError, TypeError, ValueError, IndexError):  # kernel signature changed
            return
        for z in (NormalDist().inv_cdf(0.5 + 0.5 * self.ci), float(norm.ppf(0.5 + self.ci / 2))):
            got = self._post(raw, z)
            if all(np.array_equal(got[k], ref[k]) for k in ref):
                self._fast = consts
                self._z = z
                return

    @staticmethod
    def _post(raw: dict[str, np.ndarray], z: float) -> dict[str, np.ndarray]:
        """``account_risk``'s interval post-processing of the raw kernel outputs."""
        out = dict(raw)
        lo = np.minimum(raw["var_lo"], raw["var_hi"])
        hi = np.maximum(raw["var_lo"], raw["var_hi"])
        out["var_lo"], out["var_hi"] = lo, hi
        out["var_se"] = (hi - lo) / (2.0 * z)
        out["es_lo"] = raw["es"] - z * raw["es_se"]
        out["es_hi"] = raw["es"] + z * raw["es_se"]
        return out

    def _risk_of(self, accounts: np.ndarray) -> None:
        """Exact risk of ``accounts`` (sorted row indices) on the current U."""
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
        r = account_risk(self._U, ip, rows, q, (self.level,), ci=self.ci, allocate=True)
        for k in ("var", "es", "var_lo", "var_hi", "var_se", "es_se", "es_lo", "es_hi"):
            self._stats[k][accounts] = r[k][0]
        self._m_ref[accounts] = r[self.measure][0]
        self._alloc[sel] = r[f"alloc_{self.measure}"][0]
        self._x_ref[sel] = self._scale[rows]
        self._exact_tick[accounts] = self._tick

    def _full_remargin(self) -> None:
        self._revalue(self.market)
        n = len(self._account_ids)
        self._stats = {k: np.zeros(n) for k in ("var", "es", "var_lo", "var_hi", "var_se",
                                                  "es_se", "es_lo", "es_hi")}
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
        self._mm = self.mm_fraction * self._im

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
        self._mm[i] = self.mm_fraction * self._im[i]

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

    def margin(self, account: Any) -> dict[str, Any]:
        """Current margin of one account (USD): ``im``, ``mm``, ``margin_balance``,
        ``excess``, ``margin_ratio``, ``status``, the risk numbers of its last exact
        re-margin and ``exact`` (whether no tick has moved it since)."""
        with self._lock:
            i = self._account(account)
            mb = float(self._mb[i])
            mm = float(self._mm[i])
            out = {"account_id": self._account_ids[i], "im": float(self._im[i]), "mm": mm,
                   "margin_balance": mb, "excess": mb - float(self._im[i]),
                   "margin_ratio": mm / mb if mb > 0 else float("inf"),
                   "status": _STATUS[self._status[i]],
                   "exact": bool(self._m[i] == self._m_ref[i]),
                   "exact_tick": int(self._exact_tick[i])}
            for k, v in self._stats.items():
                out[k] = float(v[i])
            return out

    def to_frame(self) -> pd.DataFrame:
        """One row per account: IM, MM, margin balance, excess, margin ratio, status and the
        risk numbers of the last exact re-margin."""
        with self._lock:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(self._mb > 0, self._mm / np.where(self._mb > 0, self._mb, 1.0),
                                 np.inf)
            cols = {"account_id": self.account_ids, "im": self._im.copy(),
                    "mm": self._mm.copy(), "margin_balance": self._mb.copy(),
                    "excess": self._mb - self._im, "margin_ratio": ratio,
                    "status": np.asarray(_STATUS, dtype=object)[self._status]}
            for k, v in self._stats.items():
                cols[k] = v.copy()
            return pd.DataFrame(cols)

    def allocation(self, account: Any) -> pd.DataFrame:
        """The account's holdings: row name, quantity and Euler contribution to the measure
        at its last exact re-margin (summing to the measure)."""
        with self._lock:
            i = self._account(account)
            lo, hi = self._indptr[i], self._indptr[i + 1]
            names = np.concatenate([self._inst_ids, np.asarray(self._assets, dtype=str)])
            return pd.DataFrame({"holding": names[self._rows[lo:hi]],
                                 "quantity": self._qty[lo:hi],
                                 f"{self.measure}_contribution": self._alloc[lo:hi]})

    # ------------------------------------------------------------------ what-if
    def _risk_virtual(self, V: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
        """Risk of one virtual account holding ``q[j]`` units of row ``j`` of ``V``."""
        if self._fast is not None:
            return self._post(what_if_risk(V, q, self._fast), self._z)
        k = V.shape[0]
        return account_risk(V, np.array([0, k]), np.arange(k), q, (self.level,), ci=self.ci)

    def _base(self, i: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Account ``i``'s scenario P&L vector on the current U and its risk (LRU cache)."""
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        v = account_pnl_into(self._U, self._indptr, self._rows, self._qty, i,
                             np.empty(self._U.shape[1]))
        hit = (v, self._risk_virtual(v[None, :], np.ones(1)))
        if self._cache_bytes >= v.nbytes:
            self._cache[i] = hit
            while len(self._cache) * v.nbytes > self._cache_bytes:
                self._cache.popitem(last=False)
        return hit

    def _parse_trades(self, trades: Any) -> list[tuple[int, float, float | None]]:
        if isinstance(trades, pd.DataFrame):
            for colname in ("instrument_id", "quantity"):
                if colname not in trades.columns:
                    raise ValueError(f"trades is missing column {colname!r}")
            px = (trades["price"].tolist() if "price" in trades.columns
                  else [None] * len(trades))
            items = list(zip(trades["instrument_id"].tolist(), trades["quantity"].tolist(), px,
                             strict=True))
        elif isinstance(trades, Mapping):
            items = [(k, v, None) for k, v in trades.items()]
        elif isinstance(trades, Sequence) and not isinstance(trades, str):
            items = []
            for t in trades:
                if isinstance(t, Mapping):
                    if "instrument_id" not in t or "quantity" not in t:
                        raise ValueError("each trade needs instrument_id and quantity, got "
                                         f"{dict(t)!r}")
                    items.append((t["instrument_id"], t["quantity"], t.get("price")))
                elif isinstance(t, Sequence) and not isinstance(t, str) and len(t) in (2, 3):
                    items.append((t[0], t[1], t[2] if len(t) == 3 else None))
                else:
                    raise ValueError("a trade is (instrument_id, quantity[, price]) or a dict, "
                                     f"got {t!r}")
        else:
            raise TypeError("trades must be a DataFrame, a mapping instrument -> quantity or a "
                            f"sequence of (instrument_id, quantity[, price]); got "
                            f"{type(trades).__name__}")
        if not items:
            raise ValueError("trades is empty")
        out = []
        for inst, q, p in items:
            r = self._inst_index.get(str(inst))
            if r is None:
                raise ValueError(f"trades: unknown instrument_id {inst!r}")
            if not self._valued[r] or not np.isfinite(self._spot[r]) or not np.isfinite(
                    self._value[r]):
                raise ValueError(f"trades: instrument {inst!r} cannot be valued (no scenarios, "
                                 f"price or implied vol for {self._und[r]!r})")
            qf = _finite("quantity", q)
            pf = None if p is None else _finite("price", p)
            if pf is not None and pf <= 0:
                raise ValueError(f"price must be > 0, got {p!r}")
            out.append((r, qf, pf))
        return out

    def _mark_price(self, r: int) -> float:
        """Entry price of a trade at the current mark (the book's entry convention)."""
        t = self._types[r]
        if t == "option":
            return float(self._value[r])
        if t == "inverse_option":
            return float(self._value[r] / self._spot[r])
        return float(self._spot[r])

    def _trade_pnl(self, r: int, q: float, p: float) -> float:
        """Unrealised P&L (USD) at the current marks of a new trade of q units at price p
        (the scalar form of ``_coefficients``)."""
        t = self._types[r]
        m = self._mult[r]
        s = self._spot[r]
        if t == "option":
            return q * m * self._value[r] - q * m * p
        if t == "inverse_option":
            return q * m * self._value[r] - q * m * p * s
        if self._is_inv[r]:
            return q * self._face[r] / p * s - q * self._face[r]
        return q * m * s - q * m * p

    def _stats_pair(self, out: dict[str, np.ndarray], mb: float) -> dict[str, float]:
        d = {k: float(out[k][0, 0]) for k in ("var", "var_lo", "var_hi", "var_se", "es",
                                                 "es_se", "es_lo", "es_hi")}
        im = max(d[self.measure], 0.0)
        d.update(im=im, mm=self.mm_fraction * im, margin_balance=mb, excess=mb - im)
        return d

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
            dmb = 0.0
            recs = []
            for r, qf, pf in parsed:
                p = self._mark_price(r) if pf is None else pf
                dmb += self._trade_pnl(r, qf, p)
                recs.append((str(self._inst_ids[r]), qf, p))
            mb = float(self._mb[i])
            return WhatIf(self._account_ids[i], self.level, self.measure,
                          self._stats_pair(before, mb), self._stats_pair(out, mb + dmb),
                          tuple(recs), out["alloc_var"][0, 1:].copy(),
                          out["alloc_es"][0, 1:].copy())

    # ------------------------------------------------------------------ writes
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
        for name, add in (("_qty", dq), ("_a", da), ("_b", db), ("_c", dc)):
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
                pos_rows += [(acc, str(self._inst_ids[r]), qq, pp)
                             for r, qq, pp in zip(rows, q, p, strict=True)]
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
            i = self._acc_index.get(acc)
            if i is None:
                i = self._new_account(acc)
            row = np.array([self._n_inst + k], np.int64)
            dq = np.array([sign * amount])
            z = np.zeros(1)
            self._splice(i, row, dq, z, dq * (1.0 - h), z)
            self._coll_amount[key] = held + sign * amount
            self._haircut[key] = h
            return self._reprice([i])

    def close_out(self, account: Any) -> tuple[float, tuple[MarginEvent, ...]]:
        """Close every position of ``account`` at the current marks (a liquidation without
        slippage): the unrealised P&L is realised into the account's balance, its collateral
        stays. Returns the margin balance after (USD; negative: bad debt) and the events."""
        with self._lock:
            i = self._account(account)
            lo, hi = self._indptr[i], self._indptr[i + 1]
            rows = self._rows[lo:hi]
            q = self._qty[lo:hi]
            keep = (rows < self._n_inst) & (q != 0)
            events: tuple[MarginEvent, ...] = ()
            if keep.any():
                events = self.apply(pd.DataFrame({
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
            market = MarketState(spot=spot, vol=vol, rate=self.market.rate)  # validates
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
                self._revalue(market)
                self._risk_of(band)
                self._remark_all()
                n_exact = int(band.size)
        return MarketUpdate(self._tick, time, False, n_exact, self._events())
