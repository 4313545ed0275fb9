r"""Rolling out-of-sample margin backtests on daily closes.

:func:`run_backtest` replays history day by day. On every margin date :math:`t` (a daily
close) each methodology sets the margin of a reference position for the margin period of
risk (MPOR) of :math:`h` days using only the prices up to :math:`t`; the margin is then
compared with the loss realised over the :math:`h` days that follow, and the statistics of
:mod:`marginlab.models.backtest` are applied.

Timeline and windows
--------------------
Prices :math:`S_0, \dots, S_{n-1}` (one per calendar day, no gaps), daily log returns
:math:`r_k = \log S_k - \log S_{k-1}`.

* Margin dates are :math:`t = t_0, \dots, n - 1 - h` with :math:`t_0` = ``lookback_days``
  (or ``min_lookback_days``, after which the window grows to ``lookback_days``). The models
  are fitted on the returns :math:`r_{t-L+1}, \dots, r_t` (``L = lookback_days``).
* Re-fitting happens on the first margin date and then every ``refit_every`` days. Between
  refits the state is rolled forward cheaply with each new return: the GARCH-family
  conditional variance by its own recursion
  :math:`\sigma^2_{t+1} = \omega + (\alpha + \gamma 1[\varepsilon_t<0])\varepsilon_t^2
  + \beta\sigma^2_t`, :math:`\varepsilon_t = r_t - \hat\mu`, with the parameters frozen;
  EWMA by :math:`v_{t} = \lambda v_{t-1} + (1-\lambda) r_t^2` (every day); GBM and Merton
  have no state, so their parameters stay at the last fit.
* The realised loss of the margin set at :math:`t` is the loss of the position held from
  the close of :math:`t` to the close of :math:`t + h`, revalued with the same function as
  the scenarios (so model and realisation are measured alike).

The position: the reference portfolio
-------------------------------------
Each :class:`Position` is backtested on its own (one row per method and position):
``long`` (1 unit of the underlying, a linear perpetual/future with P&L
:math:`S_{t+h} - S_t`), ``short`` (-1 unit) and ``short_straddle`` (a 30-day at-the-money
call and put sold at :math:`t`, revalued with Black-76 at zero rate; the position is re-struck
on every margin date, a constant-maturity reference). The notional is
:math:`(|q_{lin}| + |q_{call}| + |q_{put}|)\,S_t` USD.

Implied volatility: there is no option-chain history, so the implied vol is a proxy, the
realised EWMA volatility (:math:`\lambda` = 0.94) times ``iv_multiplier`` (1.1, a typical
implied-over-realised premium): :math:`IV_t = 1.1\sqrt{365\,v_t}`. It moves with the
returns, so every scenario carries its own vol move: after the scenario returns
:math:`x_1..x_h`, :math:`v_{t+h} = \lambda^h v_t + (1-\lambda)\sum_i \lambda^{h-i} x_i^2`
and :math:`IV_{t+h} = IV_t \sqrt{v_{t+h}/v_t}`; the realised loss uses the realised returns
in the same formula. An external series (e.g. Deribit DVOL) can replace the proxy where
available (``implied_vol=``): scenarios then scale it by the same ratio, the realised loss
uses its value at :math:`t+h`.

Methodologies (:data:`METHODS`)
-------------------------------
``gbm``, ``ewma``, ``garch`` (normal GARCH(1,1)), ``garch_t`` (GJR-GARCH(1,1) with Student-t
innovations), ``merton`` and ``fhs`` (GJR-GARCH filter driven by its own standardised
residuals) are Monte Carlo methods: fitted with :mod:`marginlab.models.calibration`,
simulated with :func:`marginlab.simulate.simulate_paths` (``n_scenarios`` daily paths of
:math:`h` steps) with a fixed seed per (seed, asset, date), shared by the methods (common
random numbers), and **zero drift** (a 365-day drift estimate of a crypto asset has a
standard error of about its volatility, 60-80 % a year). ``hs``: historical simulation,
today's price moved by every overlapping :math:`h`-day return path of the look-back.
``exchange``: the exchange's initial margin, notional times the IMR of the Binance BTCUSDT
bracket table (:func:`~marginlab.models.margin.binance_btcusdt_2021`) at the maximum
leverage of the position's bracket (constant as a fraction of notional; the BTCUSDT table is
used for every asset, and for options it is applied to the underlying notional, a naive
baseline). ``grid``: the worst loss over a fixed grid of price moves
(:math:`\pm 15\,\%` in 7 points) times implied-vol shocks (-30 %, 0, +30 %), SPAN style.

VaR and ES come from the scenario losses with the estimators of
:mod:`marginlab.simulate.risk` (lower empirical quantile; Acerbi-Tasche ES). The margin is the
VaR (``measure="var"``, default) or the ES at ``level``, floored at 0; for ``exchange`` and
``grid`` VaR = ES = margin.

Statistics (horizon handling)
-----------------------------
With :math:`h > 1` consecutive margin windows overlap by :math:`h - 1` days, so one bad day
would produce up to :math:`h` exceptions. As in :func:`marginlab.models.backtest.exceptions`
the tests use only every :math:`h`-th margin date (offset 0, non-overlapping windows):
``n_obs`` :math:`= \lfloor n_{oos}/h \rfloor` independent observations, :math:`n_{oos}` the
number of daily returns after :math:`t_0`. On them: exceptions (loss > VaR), Kupiec,
Christoffersen, the traffic light scaled to ``n_obs`` (same binomial thresholds), and the
Acerbi-Szekely Z2 with the null simulated under the model: on each test date
``n_z2_sims`` losses are drawn from that date's own scenario losses
(:func:`~marginlab.models.backtest.resample_scenarios`).

Procyclicality and anti-procyclicality
--------------------------------------
Measured on the margin **rate** :math:`m_t / N_t` (a position re-sized daily to a constant
notional), so that a rising price level does not show as procyclicality: peak-to-trough
ratio :math:`\max_t m_t / \min_t m_t` and the largest relative :math:`k`-day increases
:math:`\max_t (m_t/m_{t-k} - 1)` for :math:`k` = 1, 5, 30 (Murphy, Vasios and Vause, "An
investigation into the procyclicality of risk-based initial margin models", Bank of England
Financial Stability Paper 29, 2014). The EMIR RTS 153/2013 Art. 28 tools are applied to
each rate series: (a) a 25 % buffer released in stress (:func:`apc_buffer`); (b) 25 % weight
on a stressed margin (:func:`apc_stressed_weight`), the stressed rate being the highest rate
seen so far by the method itself or by a rolling 365-day historical simulation (whose first
window already holds the earliest data, e.g. March 2020 for data starting in January 2020),
so that it is never below the current rate; (c) a floor (:func:`apc_floor`):
the historical-simulation rate on an expanding look-back of up to 10 years. **What the data
permit:** with daily data from 2020-01-01 the floor's look-back is 1 year on the first
margin date (2020-12-31 with a 365-day window) and grows to about 5.9 years by November
2025; a full 10-year look-back is never available, so the floor is a "longest available
history" floor.

Examples
--------
>>> from marginlab.models import GBM
>>> from marginlab.simulate import simulate_paths
>>> import pandas as pd
>>> path = simulate_paths(GBM(0.0, 0.7), 100.0, n_steps=400, dt=1 / 365, n_paths=1, seed=3)
>>> closes = pd.Series(path[0, :, 0], pd.date_range("2021-01-01", periods=401), name="X")
>>> res = run_backtest(closes, methods="gbm,hs", lookback_days=200, n_scenarios=1000,
...                    portfolio=("long",))  # doctest: +SKIP
>>> res.table()[["method", "exceptions", "n_obs", "zone"]]  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate import simulate_paths
from marginlab.simulate.pricing import black76_price
from marginlab.simulate.specs import GARCHSpec, JumpDiffusionSpec

from ._validate import as_1d, check_real
from .backtest import (
    FlatResult,
    acerbi_szekely_z2,
    christoffersen,
    exceptions,
    kupiec,
    resample_scenarios,
    traffic_light,
)
from .calibration import fit_fhs as _fit_fhs_calib
from .calibration import fit_garch, fit_gbm, fit_merton
from .history import PriceHistory, read_prices
from .liquidation import var_es as _var_es
from .margin.brackets import BracketTable, binance_btcusdt_2021
from .market import GARCH, GBM, MertonJump

__all__ = [
    "Position",
    "POSITIONS",
    "BacktestMethod",
    "METHODS",
    "register_method",
    "exchange_method",
    "grid_method",
    "ProcyclicalityResult",
    "procyclicality",
    "apc_buffer",
    "apc_stressed_weight",
    "apc_floor",
    "STRESS_EPISODES",
    "BacktestResult",
    "run_backtest",
    "add_backtest_parser",
    "backtest_command",
]

_DAYS_PER_YEAR = 365.0
_DAY = 1.0 / _DAYS_PER_YEAR
_APC_FLOOR_YEARS = 10
_DEFAULT_METHODS = ("gbm", "garch_t", "merton", "fhs", "hs", "exchange", "grid")
_DEFAULT_POSITIONS = ("long", "short", "short_straddle")

#: Stress episodes for :meth:`BacktestResult.plot_stress_episodes` (UTC dates, inclusive):
#: the COVID crash (12-13 March 2020), the May 2021 crash (19 May), the 3AC / Celsius
#: deleveraging (13-18 June 2022) and the FTX collapse (8-9 November 2022).
STRESS_EPISODES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "March 2020": ("2020-02-25", "2020-04-10"),
    "May 2021": ("2021-04-25", "2021-06-10"),
    "June 2022": ("2022-05-28", "2022-07-12"),
    "November 2022": ("2022-10-25", "2022-12-10"),
})


# ========================================================================== positions
@dataclass(frozen=True)
class Position:
    r"""A single-underlying reference position, revalued on each scenario.

    Parameters
    ----------
    name : str
        Label in tables and plots.
    linear : float, default 0
        Units of the underlying held through a linear perpetual / future (P&L
        :math:`q (S_{t+h} - S_t)`, no funding).
    calls, puts : float, default 0
        Option contracts on one unit each (negative: sold), struck at ``moneyness x S_t``
        with ``tenor_days`` to expiry on the margin date, priced by Black-76 at zero rate.
    tenor_days : float, default 30
        Days to expiry when the position is struck (> the MPOR).
    moneyness : float, default 1
        Strike over spot (1: at the money).

    Notes
    -----
    Notional :math:`N_t = (|q_{lin}| + |q_{call}| + |q_{put}|) S_t` USD. Loss over the MPOR,
    positive = loss:

    .. math:: L = -\big[q_{lin}(S_{t+h} - S_t) + q_c (C_{t+h} - C_t) + q_p (P_{t+h} - P_t)\big]
    """

    name: str
    linear: float = 0.0
    calls: float = 0.0
    puts: float = 0.0
    tenor_days: float = 30.0
    moneyness: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        for f in ("linear", "calls", "puts"):
            object.__setattr__(self, f, check_real(f, getattr(self, f)))
        object.__setattr__(self, "tenor_days",
                           check_real("tenor_days", self.tenor_days, low=0.0, low_open=True))
        object.__setattr__(self, "moneyness",
                           check_real("moneyness", self.moneyness, low=0.0, low_open=True))
        if self.gross_units == 0.0:
            raise ValueError(f"position {self.name!r} holds nothing (linear, calls and puts "
                             "are all 0)")

    @property
    def gross_units(self) -> float:
        """:math:`|q_{lin}| + |q_{call}| + |q_{put}|`: notional per unit of spot."""
        return abs(self.linear) + abs(self.calls) + abs(self.puts)

    @property
    def has_options(self) -> bool:
        """Whether the position holds options."""
        return self.calls != 0.0 or self.puts != 0.0

    def losses(self, s0: Any, iv0: Any, s_h: Any, iv_h: Any, horizon_days: int) -> np.ndarray:
        """Loss (USD, positive = loss) from spot ``s0`` and implied vol ``iv0`` to ``s_h``
        and ``iv_h`` after ``horizon_days``; arrays broadcast."""
        s0 = np.asarray(s0, dtype=np.float64)
        s_h = np.asarray(s_h, dtype=np.float64)
        pnl = self.linear * (s_h - s0)
        legs = [(q, c) for q, c in ((self.calls, True), (self.puts, False)) if q != 0.0]
        if legs:
            if horizon_days >= self.tenor_days:
                raise ValueError(f"position {self.name!r}: tenor_days={self.tenor_days} must "
                                 f"exceed the MPOR horizon_days={horizon_days}")
            qty = np.array([q for q, _ in legs])
            is_call = np.array([c for _, c in legs])
            nd = max(s0.ndim, s_h.ndim, np.ndim(iv0), np.ndim(iv_h))
            k = self.moneyness * s0
            t0 = self.tenor_days * _DAY
            t1 = (self.tenor_days - horizon_days) * _DAY
            leg_shape = (len(legs),) + (1,) * nd
            # one pricing call per date for all legs (the kernels' fixed cost dominates)
            v0 = black76_price(s0, k, t0, iv0, 0.0, is_call=is_call.reshape(leg_shape))
            v1 = black76_price(s_h, k, t1, iv_h, 0.0, is_call=is_call.reshape(leg_shape))
            pnl = pnl + np.tensordot(qty, v1 - v0, axes=1)
        return -np.asarray(pnl, dtype=np.float64)


#: The reference positions by name.
POSITIONS: Mapping[str, Position] = MappingProxyType({
    "long": Position("long", linear=1.0),
    "short": Position("short", linear=-1.0),
    "short_straddle": Position("short_straddle", calls=-1.0, puts=-1.0),
    "long_call": Position("long_call", calls=1.0),
})


# ========================================================================== methods
@dataclass(frozen=True)
class BacktestMethod:
    """A margin methodology of the rolling backtest.

    Parameters
    ----------
    name : str
        Label in tables and plots (unique in a run).
    kind : {"model", "ewma", "historical", "exchange", "grid"}
        ``model``: Monte Carlo from a market model that ``fit`` returns; ``ewma``: GBM with
        the EWMA volatility updated every day (``params["lam"]``); ``historical``:
        historical simulation on the look-back; ``exchange``: notional x IMR of a bracket
        table (``params["table"]``, ``params["leverage"]``); ``grid``: worst loss on a grid
        of price moves x vol shocks (``params["price_range"]``, ``params["n_price"]``,
        ``params["vol_shocks"]``).
    fit : callable, optional
        For ``kind="model"``: ``fit(returns, step) -> model`` with ``returns`` the
        look-back's decimal daily log returns (1-D) and ``step`` = 1/365; the model is a
        :class:`~marginlab.models.GBM`, :class:`~marginlab.models.MertonJump` or
        :class:`~marginlab.models.GARCH` of one asset (or a fit result with ``.model``). A
        GARCH's ``sigma2_0`` must be the variance forecast after the last return.
    params : mapping, optional
        Kind-specific settings (see ``kind``).
    min_obs : int, default 2
        Fewest look-back returns the method needs.
    description : str
        One line for reports.
    cost : float, default 1
        Relative run time (GBM = 1), used only to start the slowest methods first when
        ``run_backtest(workers > 1)``.
    """

    name: str
    kind: str
    fit: Callable[[np.ndarray, float], Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    min_obs: int = 2
    description: str = ""
    cost: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "," in self.name:
            raise ValueError(f"name must be a non-empty str without commas, got {self.name!r}")
        kinds = ("model", "ewma", "historical", "exchange", "grid")
        if self.kind not in kinds:
            raise ValueError(f"kind must be one of {kinds}, got {self.kind!r}")
        if self.kind == "model" and not callable(self.fit):
            raise TypeError(f"method {self.name!r}: kind='model' needs a callable fit, got "
                            f"{self.fit!r}")
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "cost", check_real("cost", self.cost, low=0.0))


def _fit_gbm(r: np.ndarray, step: float) -> Any:
    return fit_gbm(r, step=step).model


def _fit_garch_normal(r: np.ndarray, step: float) -> Any:
    return fit_garch(r, dist="normal", gjr=False, step=step).model


def _fit_garch_t(r: np.ndarray, step: float) -> Any:
    return fit_garch(r, dist="t", gjr=True, step=step).model


def _fit_merton(r: np.ndarray, step: float) -> Any:
    return fit_merton(r, step=step).model


def _fit_fhs(r: np.ndarray, step: float) -> Any:
    return _fit_fhs_calib(r, dist="t", gjr=True, step=step).model


def exchange_method(table: BracketTable | None = None, leverage: float | None = None, *,
                    name: str = "exchange") -> BacktestMethod:
    """Exchange initial margin: notional / min(leverage, bracket maximum).

    Parameters
    ----------
    table : BracketTable, optional
        Default :func:`~marginlab.models.margin.binance_btcusdt_2021` (loaded when the
        backtest runs).
    leverage : float, optional
        Chosen leverage (>= 1); None: the bracket's maximum (125x in the first BTCUSDT
        bracket, IMR 0.8 %).
    """
    if table is not None and not isinstance(table, BracketTable):
        raise TypeError(f"table must be a BracketTable, got {type(table).__name__}")
    if leverage is not None:
        leverage = check_real("leverage", leverage, low=1.0)
    return BacktestMethod(name, "exchange", params={"table": table, "leverage": leverage},
                          description="exchange IM: notional x IMR of the bracket table",
                          cost=0.01)


def grid_method(price_range: float = 0.15, n_price: int = 7,
                vol_shocks: Sequence[float] = (-0.3, 0.0, 0.3), *,
                name: str = "grid") -> BacktestMethod:
    """Scenario-grid margin: the worst loss over ``n_price`` price moves evenly spaced in
    ``[-price_range, +price_range]`` times the relative implied-vol shocks ``vol_shocks``.

    Parameters
    ----------
    price_range : float, default 0.15
        Largest relative price move, in (0, 1).
    n_price : int, default 7
        Number of price moves (>= 2; 7 gives steps of 5 % at the default range).
    vol_shocks : sequence of float, default (-0.3, 0, 0.3)
        Relative implied-vol shocks, each > -1.
    """
    price_range = check_real("price_range", price_range, low=0.0, high=1.0, low_open=True,
                             high_open=True)
    if isinstance(n_price, (bool, np.bool_)) or not isinstance(n_price, numbers.Integral) \
            or n_price < 2:
        raise ValueError(f"n_price must be an int >= 2, got {n_price!r}")
    shocks = tuple(check_real("vol_shocks", v, low=-1.0, low_open=True) for v in vol_shocks)
    if not shocks:
        raise ValueError("vol_shocks must hold at least one shock (0.0: none)")
    return BacktestMethod(name, "grid", params={"price_range": price_range,
                                                "n_price": int(n_price),
                                                "vol_shocks": shocks},
                          description=f"worst loss on +-{price_range:.0%} x "
                                      f"{len(shocks)} vol shocks", cost=0.01)


#: The registry of methodologies by name (see :func:`register_method`).
METHODS: dict[str, BacktestMethod] = {
    "gbm": BacktestMethod("gbm", "model", _fit_gbm,
                          description="GBM, look-back MLE volatility, zero drift"),
    "ewma": BacktestMethod("ewma", "ewma", params={"lam": 0.94},
                           description="GBM at the EWMA (0.94) volatility, updated daily"),
    "garch": BacktestMethod("garch", "model", _fit_garch_normal, min_obs=50,
                            description="GARCH(1,1), normal innovations", cost=3.0),
    "garch_t": BacktestMethod("garch_t", "model", _fit_garch_t, min_obs=50,
                              description="GJR-GARCH(1,1), Student-t innovations", cost=3.0),
    "merton": BacktestMethod("merton", "model", _fit_merton, min_obs=50,
                             description="Merton jump diffusion, zero drift", cost=30.0),
    "fhs": BacktestMethod("fhs", "model", _fit_fhs, min_obs=50,
                          description="filtered HS: GJR-GARCH-t filter, bootstrapped residuals",
                          cost=3.0),
    "hs": BacktestMethod("hs", "historical", cost=0.3,
                         description="historical simulation, overlapping h-day look-back paths"),
    "exchange": exchange_method(),
    "grid": grid_method(),
}


def register_method(method: BacktestMethod, *, overwrite: bool = False) -> BacktestMethod:
    """Add ``method`` to :data:`METHODS` under its name (``overwrite`` to replace one)."""
    if not isinstance(method, BacktestMethod):
        raise TypeError(f"method must be a BacktestMethod, got {type(method).__name__}")
    if method.name in METHODS and not overwrite:
        raise ValueError(f"a method named {method.name!r} is already registered; pass "
                         "overwrite=True to replace it")
    METHODS[method.name] = method
    return method


# ========================================================================== procyclicality
@dataclass(frozen=True)
class ProcyclicalityResult(FlatResult):
    """Procyclicality of one margin-rate series (see :func:`procyclicality`).

    Attributes
    ----------
    peak_to_trough : float
        ``max(rate) / min(rate)`` (inf if the minimum is 0).
    max_increase_1d, max_increase_5d, max_increase_30d : float
        Largest relative increase over 1, 5 and 30 observations; NaN when the series is
        too short.
    mean_rate : float
        Average margin / notional.
    n_obs : int
        Length of the series.
    """

    peak_to_trough: float
    max_increase_1d: float
    max_increase_5d: float
    max_increase_30d: float
    mean_rate: float
    n_obs: int


def _max_increase(x: np.ndarray, k: int) -> float:
    if x.size <= k:
        return math.nan
    prev, cur = x[:-k], x[k:]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(prev > 0, cur / np.where(prev > 0, prev, 1.0) - 1.0,
                       np.where(cur > 0, np.inf, 0.0))
    out = float(np.max(rel))
    return 0.0 if abs(out) < 1e-12 else out  # rounding noise of a constant rate


def _as_series_1d(name: str, value: Any, n: int | None = None) -> np.ndarray:
    """A finite, >= 0 float64 1-D series; with ``n`` (the margin series' length) a scalar
    broadcasts to it."""
    return as_1d(name, value, n=n, scalar_ok=n is not None, nonneg=True,
                  n_of="the margin dates")


def procyclicality(margin: Any, notional: Any = None) -> ProcyclicalityResult:
    r"""Procyclicality metrics of a margin series.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Margin per date (USD or already a rate), >= 0, in time order (one per day).
    notional : float or array_like, shape (n,), optional
        Notional per date, > 0; the metrics are then computed on ``margin / notional``.

    Returns
    -------
    ProcyclicalityResult

    Notes
    -----
    With the rate :math:`m_t` (margin / notional):

    .. math:: \text{peak-to-trough} = \frac{\max_t m_t}{\min_t m_t}, \qquad
              \Delta_k = \max_{t \ge k} \Big(\frac{m_t}{m_{t-k}} - 1\Big),\ k = 1, 5, 30

    (Murphy, Vasios and Vause 2014, Bank of England Financial Stability Paper 29). A
    positive rate after a zero one counts as an infinite increase.

    Examples
    --------
    >>> r = procyclicality([2.0, 4.0, 3.0, 1.0])
    >>> r.peak_to_trough, r.max_increase_1d
    (4.0, 1.0)
    """
    m = _as_series_1d("margin", margin)
    if notional is not None:
        n = _as_series_1d("notional", notional, m.size)
        if np.any(n <= 0.0):
            i = int(np.flatnonzero(n <= 0.0)[0])
            raise ValueError(f"notional must be > 0, got {n[i]!r} at index {i}")
        m = m / n
    lo = float(np.min(m))
    ptt = float(np.max(m)) / lo if lo > 0 else math.inf
    return ProcyclicalityResult(peak_to_trough=ptt, max_increase_1d=_max_increase(m, 1),
                                max_increase_5d=_max_increase(m, 5),
                                max_increase_30d=_max_increase(m, 30),
                                mean_rate=float(np.mean(m)), n_obs=int(m.size))


def apc_buffer(margin: Any, buffer: float = 0.25, rebuild_days: float = 20.0) -> np.ndarray:
    r"""EMIR Art. 28(1)(a): a buffer of ``buffer`` x margin, released in stress.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Base margin (or margin rate) per day, >= 0.
    buffer : float, default 0.25
        Buffer fraction (EMIR: at least 25 %), in [0, 10].
    rebuild_days : float, default 20
        Days to rebuild a fully released buffer: the called margin may rise by at most
        ``buffer / rebuild_days`` per day beyond what the base margin itself requires.

    Returns
    -------
    numpy.ndarray, shape (n,)
        The called margin :math:`a_t`.

    Notes
    -----
    .. math:: a_0 = (1+b)\,m_0, \qquad
              a_t = \max\!\Big(m_t,\ \min\big((1+b)\,m_t,\ a_{t-1}(1 + b/D)\big)\Big)

    In calm markets :math:`a_t = (1+b) m_t`. When the base margin rises faster than
    :math:`b/D` a day (stress) the buffer absorbs the rise: the called margin is held near
    its previous level and never falls below the base margin (the buffer is released, down
    to zero). It is rebuilt at :math:`b/D` a day (or at once when the base margin falls).

    Examples
    --------
    >>> apc_buffer([1.0, 1.0, 2.0, 2.0], 0.25, 20).round(4).tolist()
    [1.25, 1.25, 2.0, 2.025]
    """
    m = _as_series_1d("margin", margin)
    b = check_real("buffer", buffer, low=0.0, high=10.0)
    d = check_real("rebuild_days", rebuild_days, low=0.0, low_open=True)
    out = np.empty_like(m)
    out[0] = (1.0 + b) * m[0]
    g = 1.0 + b / d
    for t in range(1, m.size):
        out[t] = max(m[t], min((1.0 + b) * m[t], out[t - 1] * g))
    return out


def apc_stressed_weight(margin: Any, stressed: Any, weight: float = 0.25) -> np.ndarray:
    r"""EMIR Art. 28(1)(b): weight ``w`` on a stressed margin,
    :math:`a_t = (1 - w)\,m_t + w\,m^{stress}_t`.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Base margin (or rate), >= 0.
    stressed : float or array_like, shape (n,)
        Stressed margin (or rate) per date, >= 0 (e.g. the highest historical-simulation
        rate seen so far).
    weight : float, default 0.25
        EMIR: at least 25 %; in [0, 1].

    Examples
    --------
    >>> apc_stressed_weight([1.0, 3.0], 4.0).tolist()
    [1.75, 3.25]
    """
    m = _as_series_1d("margin", margin)
    s = _as_series_1d("stressed", stressed, m.size)
    w = check_real("weight", weight, low=0.0, high=1.0)
    return (1.0 - w) * m + w * s


def apc_floor(margin: Any, floor: Any) -> np.ndarray:
    r"""EMIR Art. 28(1)(c): :math:`a_t = \max(m_t, f_t)` with the floor :math:`f_t` from a
    (up to) 10-year look-back.

    Examples
    --------
    >>> apc_floor([1.0, 3.0], 2.0).tolist()
    [2.0, 3.0]
    """
    m = _as_series_1d("margin", margin)
    f = _as_series_1d("floor", floor, m.size)
    return np.maximum(m, f)


# ========================================================================== inputs
def _history_of(name: str | None, obj: Any, column: str) -> PriceHistory:
    if isinstance(obj, (str, os.PathLike)):
        h = read_prices(obj, column=column)
        return h if name is None else PriceHistory(h.times, h.prices, names=(name,),
                                                   source=h.source)
    if isinstance(obj, PriceHistory):
        if obj.n_assets != 1:
            raise ValueError(f"{name or obj.names}: expected one asset per entry, got "
                             f"{obj.n_assets}")
        return obj if name is None else PriceHistory(obj.times, obj.prices, names=(name,),
                                                     source=obj.source)
    if isinstance(obj, pd.Series):
        s = obj.dropna()
        label = name if name is not None else (str(obj.name) if obj.name is not None
                                               else "asset0")
        try:
            idx = pd.DatetimeIndex(s.index)
        except (TypeError, ValueError):
            raise TypeError(f"prices {label!r}: the index must be dates") from None
        if idx.tz is not None:
            idx = idx.tz_convert(None)
        return PriceHistory(idx.to_numpy(), s.to_numpy(dtype=np.float64), names=(label,))
    raise TypeError("prices must be a PriceHistory, a pandas Series/DataFrame of closes "
                    "indexed by date, a file path, or a mapping/sequence of those; got "
                    f"{type(obj).__name__}")


def _as_assets(prices: Any, column: str = "close") -> list[PriceHistory]:
    items: list[tuple[str | None, Any]] = []
    if isinstance(prices, PriceHistory) and prices.n_assets > 1:
        for j, nm in enumerate(prices.names):
            items.append((nm, PriceHistory(prices.times, prices.prices[:, j], names=(nm,))))
    elif isinstance(prices, pd.DataFrame):
        if prices.shape[1] == 0:
            raise ValueError("prices DataFrame has no columns")
        for c in prices.columns:
            items.append((str(c), prices[c]))
    elif isinstance(prices, Mapping):
        items = [(str(k), v) for k, v in prices.items()]
    elif isinstance(prices, (str, os.PathLike, PriceHistory, pd.Series)):
        items = [(None, prices)]
    elif isinstance(prices, Sequence):
        items = [(None, p) for p in prices]
    else:
        raise TypeError("prices must be a PriceHistory, a pandas Series/DataFrame, a file "
                        f"path, or a mapping/sequence of those; got {type(prices).__name__}")
    if not items:
        raise ValueError("prices must hold at least one asset")
    hists = [_history_of(k, v, column) for k, v in items]
    names = [h.names[0] for h in hists]
    if len(set(names)) != len(names):
        raise ValueError(f"asset names must be distinct, got {names}; pass a mapping "
                         "{name: prices}")
    for h in hists:
        days = h.step * _DAYS_PER_YEAR
        if abs(days - 1.0) > 0.01:
            raise ValueError(f"prices {h.names[0]!r}: daily closes are required, got a median "
                             f"spacing of {days:.4g} days")
        gaps = h.gaps()
        if gaps:
            g = gaps[0]
            raise ValueError(f"prices {h.names[0]!r}: {len(gaps)} gap(s) in the daily "
                             f"series, the first after {g.start} ({g.missing} missing "
                             "day(s)); the rolling backtest needs one close per day (prices "
                             "are never filled here)")
    return hists


def _implied_vol_for(name: str, dates: np.ndarray, implied_vol: Any) -> np.ndarray | None:
    if implied_vol is None:
        return None
    if not isinstance(implied_vol, Mapping):
        raise TypeError("implied_vol must be a mapping {asset: pandas Series of decimal "
                        f"implied vols indexed by date}}, got {type(implied_vol).__name__}")
    if name not in implied_vol:
        return None
    s = implied_vol[name]
    if not isinstance(s, pd.Series):
        raise TypeError(f"implied_vol[{name!r}] must be a pandas Series indexed by date, got "
                        f"{type(s).__name__}")
    s = s.dropna().astype(float)
    idx = pd.DatetimeIndex(s.index)
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    s = pd.Series(s.to_numpy(), index=idx.normalize()).sort_index()
    s = s[~s.index.duplicated(keep="last")]
    bad = (s <= 0) | (s > 5)
    if bad.any():
        raise ValueError(f"implied_vol[{name!r}] must be decimal vols in (0, 5], got "
                         f"{float(s[bad].iloc[0])!r} on {s[bad].index[0]:%Y-%m-%d} (DVOL is "
                         "quoted in percent: divide by 100)")
    full = s.reindex(pd.DatetimeIndex(dates).normalize().union(s.index)).ffill()
    return full.reindex(pd.DatetimeIndex(dates).normalize()).to_numpy(dtype=np.float64)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} "
                        f"{value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def _resolve_named(value: Any, cls: type, registry: dict[str, Any], *, arg: str, noun: str,
                   type_hint: str, empty: str, plural: str) -> list[Any]:
    """Objects of ``cls`` from ``value``: one, or a list, of ``cls`` instances or names in
    ``registry`` (a name may be a comma-separated list). Errors name ``arg``."""
    if isinstance(value, (str, cls)) or not isinstance(value, Iterable):
        value = [value]  # a lone non-name, such as a number, is then refused by name below
    out = []
    for item in value:
        if isinstance(item, cls):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"{arg} must {type_hint}, got {item!r}")
        for part in item.split(","):
            key = part.strip()
            if not key:
                continue
            if key not in registry:
                raise ValueError(f"{arg}: unknown {noun} {key!r}; known: {', '.join(registry)}")
            out.append(registry[key])
    if not out:
        raise ValueError(f"{arg} must {empty}")
    names = [x.name for x in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{plural} must have distinct names, got {names}")
    return out


def _resolve_methods(methods: Any) -> list[BacktestMethod]:
    return _resolve_named(methods, BacktestMethod, METHODS, arg="methods", noun="method",
                          type_hint="be names or BacktestMethod objects",
                          empty="name at least one method", plural="methods")


def _resolve_positions(portfolio: Any) -> list[Position]:
    return _resolve_named(portfolio, Position, POSITIONS, arg="portfolio", noun="position",
                          type_hint="hold position names or Position objects",
                          empty="hold at least one position", plural="portfolio positions")


# ========================================================================== engine
def _ewma_var(ret: np.ndarray, lam: float) -> np.ndarray:
    """EWMA variance v[k] after the return of day k (ret[0] unused): the forecast for k+1.

    v[0] is the mean square of the first min(30, n) returns (zero-mean, as RiskMetrics)."""
    n = ret.size
    v = np.empty(n)
    first = ret[1:min(31, n)]
    v[0] = float(np.mean(first**2)) if first.size else 1e-4
    v[0] = max(v[0], 1e-12)
    for k in range(1, n):
        v[k] = lam * v[k - 1] + (1.0 - lam) * ret[k] ** 2
    return v


def _scenario_moves(x: np.ndarray, v0: Any, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Gross return exp(sum x) and EWMA variance ratio v_h / v_0 of return paths x (.., h)."""
    h = x.shape[-1]
    w = lam ** np.arange(h - 1, -1, -1, dtype=np.float64)
    v0 = np.asarray(v0, dtype=np.float64)
    v_h = lam**h * v0 + (1.0 - lam) * ((x * x) @ w)
    return np.exp(x.sum(axis=-1)), v_h / v0


class _Static:
    """A model without state between refits (GBM, Merton): the kernel spec, zero drift."""

    def __init__(self, spec: JumpDiffusionSpec, zero_drift: bool):
        self.spec = spec._replace(mu=np.zeros_like(spec.mu)) if zero_drift else spec

    def update(self, r: float) -> None:
        pass

    def current(self) -> Any:
        return self.spec


class _Garch:
    """GARCH family: parameters frozen, conditional variance rolled with each new return."""

    def __init__(self, spec: GARCHSpec, zero_drift: bool):
        self.omega = float(spec.omega[0])
        self.alpha = float(spec.alpha[0])
        self.beta = float(spec.beta[0])
        self.gamma = float(spec.gamma[0])
        self.mu = float(spec.mu[0])
        self.s2 = float(spec.sigma2_0[0])
        self.spec = spec._replace(mu=np.zeros(1)) if zero_drift else spec

    def update(self, r: float) -> None:
        e = r - self.mu
        lev = self.gamma if e < 0.0 else 0.0
        self.s2 = self.omega + (self.alpha + lev) * e * e + self.beta * self.s2

    def current(self) -> Any:
        return self.spec._replace(sigma2_0=np.array([self.s2]))


class _Ewma:
    def __init__(self, v: float, lam: float):
        self.v, self.lam = v, lam
        self.spec = GBM(0.0, 0.1).to_spec()

    def update(self, r: float) -> None:
        self.v = self.lam * self.v + (1.0 - self.lam) * r * r

    def current(self) -> Any:
        return self.spec._replace(sigma=np.array([math.sqrt(self.v * _DAYS_PER_YEAR)]))


def _state_of(model: Any, name: str, zero_drift: bool) -> Any:
    model = getattr(model, "model", model)
    if isinstance(model, (GBM, MertonJump, GARCH)):
        if model.n_assets != 1:
            raise ValueError(f"method {name!r}: fit returned a model of {model.n_assets} "
                             "assets; one is needed")
        spec = model.to_spec()
    elif isinstance(model, (JumpDiffusionSpec, GARCHSpec)):
        spec = model
    else:
        raise TypeError(f"method {name!r}: fit must return a GBM, MertonJump or GARCH (or a "
                        f"fit result), got {type(model).__name__}")
    if isinstance(spec, GARCHSpec):
        return _Garch(spec, zero_drift)
    return _Static(spec, zero_drift)


@dataclass
class _Run:
    """What one (asset, method) produces."""

    margin: dict[str, np.ndarray]
    var: dict[str, np.ndarray]
    es: dict[str, np.ndarray]
    sims: dict[str, np.ndarray | None]
    n_refits: int = 0
    n_warnings: int = 0
    n_failures: int = 0
    fit_seconds: float = 0.0
    seconds: float = 0.0


@dataclass
class _Cfg:
    level: float
    horizon: int
    lookback: int
    min_lookback: int
    refit: Mapping[str, int]
    n_scenarios: int
    seed: int
    measure: str
    n_z2_sims: int
    iv_multiplier: float
    iv_lambda: float
    zero_drift: bool
    apc_buffer: float
    apc_rebuild_days: float
    apc_stressed_weight: float


class _AssetData:
    """Per-asset arrays shared by all methods."""

    def __init__(self, hist: PriceHistory, cfg: _Cfg, implied_vol: Any, asset_index: int):
        self.name = hist.names[0]
        self.index = asset_index
        self.dates = hist.times
        p = np.asarray(hist.prices, dtype=np.float64)
        self.prices = p
        n = p.size
        h = cfg.horizon
        ret = np.empty(n)
        ret[0] = np.nan
        ret[1:] = np.diff(np.log(p))
        self.ret = ret
        self.v = _ewma_var(np.where(np.isfinite(ret), ret, 0.0), cfg.iv_lambda)
        proxy = cfg.iv_multiplier * np.sqrt(_DAYS_PER_YEAR * self.v)
        ext = _implied_vol_for(self.name, self.dates, implied_vol)
        self.iv = proxy if ext is None else np.where(np.isfinite(ext), ext, proxy)
        self.iv_source = "ewma proxy" if ext is None else "external where available"
        t0 = cfg.min_lookback
        last = n - 1 - h
        if last < t0:
            raise ValueError(f"prices {self.name!r}: {n} closes are too few for a look-back "
                             f"of {t0} days plus a {h}-day horizon (need >= {t0 + h + 1})")
        self.t = np.arange(t0, last + 1)
        self.n_oos = n - 1 - t0
        self.test = np.arange(0, self.t.size, h)
        # realised h-day paths of daily returns after each margin date
        win = np.lib.stride_tricks.sliding_window_view(ret[1:], h)  # row m: ret[m+1..m+h]
        self.windows = win
        self.real_paths = win[self.t]                                # ret[t+1..t+h]

    def window(self, t: int, lookback: int) -> np.ndarray:
        lo = max(1, t - lookback + 1)
        return self.ret[lo:t + 1]

    def hs_paths(self, t: int, lookback: int, h: int) -> np.ndarray:
        """Overlapping h-day paths of the look-back: rows ret[j..j+h-1], j in window."""
        lo = max(1, t - lookback + 1)
        return self.windows[lo - 1:t - h + 1]


def _path_losses(positions: Sequence[Position], s0: Any, iv0: Any, v0: Any, x: np.ndarray,
                 lam: float, h: int) -> list[np.ndarray]:
    """Losses of each position on the daily-return paths ``x`` (..., h) from ``s0``."""
    gross, vratio = _scenario_moves(x, v0, lam)
    s0 = np.asarray(s0, dtype=np.float64)
    iv0 = np.asarray(iv0, dtype=np.float64)
    s_h = s0 * gross
    iv_h = iv0 * np.sqrt(vratio)
    return [p.losses(s0, iv0, s_h, iv_h, h) for p in positions]


def _seed_for(cfg: _Cfg, asset: int, t: int, *extra: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([cfg.seed, asset, t, *extra])


def _run_scenario_method(method: BacktestMethod, midx: int, ad: _AssetData,
                         positions: list[Position], cfg: _Cfg) -> _Run:
    """Monte Carlo and historical methods: a loop over the margin dates."""
    n_m = ad.t.size
    h = cfg.horizon
    level = cfg.level
    out = _Run({}, {}, {}, {})
    for p in positions:
        out.var[p.name] = np.empty(n_m)
        out.es[p.name] = np.empty(n_m)
    do_z2 = cfg.n_z2_sims > 0
    sims = {p.name: [] for p in positions} if do_z2 else None
    is_test = np.zeros(n_m, dtype=bool)
    is_test[ad.test] = True
    refit_every = cfg.refit.get(method.name, cfg.refit["*"])
    state = None
    last_fit = -10**9
    tic = time.perf_counter()
    for i, t in enumerate(ad.t):
        if method.kind == "historical":
            x = ad.hs_paths(int(t), cfg.lookback, h)
        else:
            if method.kind == "ewma":
                if state is None:
                    lam = float(method.params.get("lam", 0.94))
                    state = _Ewma(float(_ewma_var(np.where(np.isfinite(ad.ret[:t + 1]),
                                                           ad.ret[:t + 1], 0.0), lam)[-1]), lam)
                else:
                    state.update(float(ad.ret[t]))
            elif state is None or i - last_fit >= refit_every:
                window = ad.window(int(t), cfg.lookback)
                f0 = time.perf_counter()
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        model = method.fit(window, _DAY)
                    new_state = _state_of(model, method.name, cfg.zero_drift)
                    out.n_warnings += len(caught)
                    state = new_state
                    out.n_refits += 1
                except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                    out.n_failures += 1
                    if state is None:
                        raise ValueError(f"method {method.name!r}, asset {ad.name!r}: the fit "
                                         f"on {pd.Timestamp(ad.dates[t]):%Y-%m-%d} failed: "
                                         f"{exc}") from exc
                    state.update(float(ad.ret[t]))
                out.fit_seconds += time.perf_counter() - f0
                last_fit = i
            else:
                state.update(float(ad.ret[t]))
            paths = simulate_paths(state.current(), 1.0, n_steps=h, dt=_DAY,
                                   n_paths=cfg.n_scenarios, seed=_seed_for(cfg, ad.index, int(t)))
            x = np.diff(np.log(paths[:, :, 0]), axis=1)
        all_losses = _path_losses(positions, ad.prices[t], ad.iv[t], ad.v[t], x,
                                  cfg.iv_lambda, h)
        for p, loss in zip(positions, all_losses, strict=True):
            va, e = _var_es(loss, level)
            out.var[p.name][i] = va
            out.es[p.name][i] = e
            if do_z2 and is_test[i]:
                ss = _seed_for(cfg, ad.index, int(t), midx, 1)
                sims[p.name].append(resample_scenarios(loss[:, None], cfg.n_z2_sims,
                                                       seed=ss)[:, 0].astype(np.float32))
    for p in positions:
        m = out.var[p.name] if cfg.measure == "var" else out.es[p.name]
        out.margin[p.name] = np.maximum(m, 0.0)
        out.sims[p.name] = np.column_stack(sims[p.name]) if do_z2 and sims[p.name] else None
    out.seconds = time.perf_counter() - tic
    return out


def _run_exchange(method: BacktestMethod, ad: _AssetData, positions: list[Position],
                  cfg: _Cfg) -> _Run:
    tic = time.perf_counter()
    table = method.params.get("table")
    table = binance_btcusdt_2021() if table is None else table
    lev = method.params.get("leverage")
    out = _Run({}, {}, {}, {})
    s0 = ad.prices[ad.t]
    for p in positions:
        notional = p.gross_units * s0
        m = np.asarray(table.initial_margin(notional, lev, extend_last=True), dtype=np.float64)
        out.margin[p.name] = m
        out.var[p.name] = m.copy()
        out.es[p.name] = m.copy()
        out.sims[p.name] = None
    out.seconds = time.perf_counter() - tic
    return out


def _run_grid(method: BacktestMethod, ad: _AssetData, positions: list[Position],
              cfg: _Cfg) -> _Run:
    tic = time.perf_counter()
    rng_ = float(method.params["price_range"])
    moves = np.linspace(-rng_, rng_, int(method.params["n_price"]))
    shocks = np.asarray(method.params["vol_shocks"], dtype=np.float64)
    s0 = ad.prices[ad.t][:, None, None]
    iv0 = ad.iv[ad.t][:, None, None]
    s_h = s0 * (1.0 + moves)[None, :, None]
    iv_h = iv0 * (1.0 + shocks)[None, None, :]
    out = _Run({}, {}, {}, {})
    for p in positions:
        loss = p.losses(s0, iv0, s_h, iv_h, cfg.horizon)
        m = np.maximum(loss.reshape(loss.shape[0], -1).max(axis=1), 0.0)
        out.margin[p.name] = m
        out.var[p.name] = m.copy()
        out.es[p.name] = m.copy()
        out.sims[p.name] = None
    out.seconds = time.perf_counter() - tic
    return out


def _hs_rates(ad: _AssetData, positions: list[Position], cfg: _Cfg
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Historical-simulation margin rates for the APC tools: the rolling look-back rate and
    the expanding (<= 10 years) floor rate, per position; and the floor's look-back (days)."""
    h = cfg.horizon
    max_lb = int(_APC_FLOOR_YEARS * _DAYS_PER_YEAR)
    roll = {p.name: np.empty(ad.t.size) for p in positions}
    flo = {p.name: np.empty(ad.t.size) for p in positions}
    lb_used = np.empty(ad.t.size, dtype=np.int64)
    for i, t in enumerate(ad.t):
        t = int(t)
        s0, iv0, v0 = ad.prices[t], ad.iv[t], ad.v[t]
        x_all = ad.hs_paths(t, max_lb, h)
        lb_used[i] = min(t, max_lb)
        n_roll = max(min(t, cfg.lookback) - h + 1, 1)
        all_losses = _path_losses(positions, s0, iv0, v0, x_all, cfg.iv_lambda, h)
        for p, loss in zip(positions, all_losses, strict=True):
            lr = loss[-n_roll:]
            k = 0 if cfg.measure == "var" else 1
            m_roll = _var_es(lr, cfg.level)[k] if lr.size * (1 - cfg.level) >= 1 \
                else float(np.max(lr))
            m_all = _var_es(loss, cfg.level)[k] if loss.size * (1 - cfg.level) >= 1 \
                else float(np.max(loss))
            notional = p.gross_units * s0
            roll[p.name][i] = max(m_roll, 0.0) / notional
            flo[p.name][i] = max(m_all, 0.0) / notional
    return roll, flo, lb_used


# ========================================================================== result
_TABLE_COLUMNS = [
    "asset", "method", "position", "first_date", "last_date", "n_days", "n_obs",
    "exceptions", "expected", "exception_rate", "kupiec_lr", "kupiec_p", "christoffersen_lr_ind",
    "christoffersen_p_ind", "christoffersen_lr_cc", "christoffersen_p_cc", "zone", "z2",
    "z2_p", "z2_critical", "breaches", "peak_to_trough", "max_increase_1d", "max_increase_5d",
    "max_increase_30d", "avg_margin_over_notional", "exceptions_all_days",
]


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Output of :func:`run_backtest`.

    Attributes
    ----------
    series : pandas.DataFrame
        One row per (asset, method, position, margin date): ``date``, ``price``,
        ``notional``, ``margin``, ``var``, ``es``, ``loss`` (realised over the next
        ``horizon_days``), ``exception`` (loss > VaR, every day, overlapping),
        ``test`` (the date is one of the non-overlapping observations used by the tests),
        ``apc_buffer``, ``apc_stressed``, ``apc_floor`` (margin with each anti-procyclicality
        tool, USD).
    stats : pandas.DataFrame
        :meth:`table`.
    apc : pandas.DataFrame
        :meth:`procyclicality_table`.
    runs : pandas.DataFrame
        Per asset and method: ``n_refits``, ``n_fit_warnings``, ``n_fit_failures``,
        ``fit_seconds``, ``seconds``.
    settings : mapping
        The run's settings.
    elapsed : float
        Wall-clock seconds of the run.
    """

    series: pd.DataFrame
    stats: pd.DataFrame
    apc: pd.DataFrame
    runs: pd.DataFrame
    settings: Mapping[str, Any]
    elapsed: float

    def table(self) -> pd.DataFrame:
        """One row per asset, method and position.

        Columns: ``asset``, ``method``, ``position``, ``first_date``/``last_date`` (margin
        dates), ``n_days`` (daily returns after the first margin date), ``n_obs``
        (independent observations, ``floor(n_days / horizon)``), ``exceptions`` (loss > VaR
        on those), ``expected`` (``n_obs (1 - level)``), ``exception_rate``, ``kupiec_lr``,
        ``kupiec_p``, ``christoffersen_lr_ind``/``_p_ind``, ``christoffersen_lr_cc``/``_p_cc``,
        ``zone`` (traffic light on ``n_obs``), ``z2``, ``z2_p``, ``z2_critical`` (95 %
        critical value of the simulated null; NaN for exchange and grid),
        ``breaches`` (loss > margin: equals ``exceptions`` for ``measure="var"``),
        ``peak_to_trough``, ``max_increase_1d``/``_5d``/``_30d`` (relative, on the margin
        rate), ``avg_margin_over_notional`` and ``exceptions_all_days`` (every margin date,
        overlapping windows: for information only, not a test input).
        """
        return self.stats.copy()

    def procyclicality_table(self) -> pd.DataFrame:
        """Procyclicality and cost of each margin series without (``tool="none"``) and with
        each anti-procyclicality tool (``buffer``, ``stressed_weight``, ``floor``): one row
        per asset, method, position and tool, with the non-overlapping ``exceptions``
        against that margin."""
        return self.apc.copy()

    def to_frame(self) -> pd.DataFrame:
        """The daily series (see ``series``)."""
        return self.series.copy()

    # ------------------------------------------------------------------ plots
    def _pick(self, asset: str | None, position: str | None) -> tuple[str, str]:
        assets = list(dict.fromkeys(self.series["asset"]))
        positions = list(dict.fromkeys(self.series["position"]))
        asset = assets[0] if asset is None else asset
        position = positions[0] if position is None else position
        if asset not in assets:
            raise ValueError(f"asset must be one of {assets}, got {asset!r}")
        if position not in positions:
            raise ValueError(f"position must be one of {positions}, got {position!r}")
        return asset, position

    def plot_margin(self, asset: str | None = None, position: str | None = None,
                    methods: Sequence[str] | None = None) -> Any:
        """Margin against realised loss over time, exceptions marked; one panel per method.

        Both are shown as a fraction of notional. Red crosses: exceptions on the
        non-overlapping test dates (the ones the tests count); grey dots: exceptions on the
        other dates. Returns the matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        asset, position = self._pick(asset, position)
        df = self.series[(self.series["asset"] == asset) & (self.series["position"] == position)]
        ms = list(dict.fromkeys(df["method"])) if methods is None else list(methods)
        fig, axes = plt.subplots(len(ms), 1, figsize=(10, 1.9 * len(ms) + 0.8), sharex=True,
                                 squeeze=False)
        for ax, m in zip(axes[:, 0], ms, strict=True):
            d = df[df["method"] == m]
            if d.empty:
                raise ValueError(f"method {m!r} is not in the result")
            x = pd.DatetimeIndex(d["date"])
            loss = (d["loss"] / d["notional"]).to_numpy()
            ax.fill_between(x, 0, np.maximum(loss, 0), color="0.75", lw=0, step="mid",
                            label="realised loss")
            ax.plot(x, d["margin"] / d["notional"], lw=1.0, label="margin")
            exc = d["exception"].to_numpy()
            tst = d["test"].to_numpy()
            ax.plot(x[exc & tst], loss[exc & tst], "x", color="red", ms=6,
                    label=f"exception ({int((exc & tst).sum())} counted)")
            ax.plot(x[exc & ~tst], loss[exc & ~tst], ".", color="0.35", ms=4,
                    label="exception, overlapping date")
            ax.set_ylabel(f"{m}\n/ notional", fontsize=8)
            ax.legend(fontsize=7, loc="upper left", ncol=4)
        s = self.settings
        fig.suptitle(f"{asset} {position}: {s['level']:.1%} {s['horizon_days']}-day margin "
                     f"({s['measure'].upper()}) vs realised loss")
        fig.tight_layout()
        return fig

    def plot_stress_episodes(self, asset: str | None = None, position: str | None = None,
                             methods: Sequence[str] | None = None,
                             episodes: Mapping[str, tuple[str, str]] = STRESS_EPISODES) -> Any:
        """Margin / notional of every method across the stress episodes (one panel each),
        with the realised loss as grey bars. An episode outside the backtest is labelled so.
        Returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        asset, position = self._pick(asset, position)
        df = self.series[(self.series["asset"] == asset) & (self.series["position"] == position)]
        ms = list(dict.fromkeys(df["method"])) if methods is None else list(methods)
        n = len(episodes)
        ncol = 2 if n > 1 else 1
        nrow = math.ceil(n / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(6 * ncol, 3.3 * nrow), squeeze=False)
        first, last = pd.Timestamp(df["date"].min()), pd.Timestamp(df["date"].max())
        for k, (label, (a, b)) in enumerate(episodes.items()):
            ax = axes[k // ncol, k % ncol]
            lo, hi = pd.Timestamp(a), pd.Timestamp(b)
            win = df[(df["date"] >= lo) & (df["date"] <= hi)]
            ax.set_title(label, fontsize=10)
            if win.empty:
                ax.text(0.5, 0.5, f"outside the backtest\n(margin dates {first:%Y-%m-%d} to "
                        f"{last:%Y-%m-%d})", ha="center", va="center", transform=ax.transAxes,
                        fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            base = win[win["method"] == ms[0]]
            ax.bar(pd.DatetimeIndex(base["date"]),
                   np.maximum(base["loss"] / base["notional"], 0), color="0.8", width=1.0,
                   label="realised loss")
            for m in ms:
                d = win[win["method"] == m]
                ax.plot(pd.DatetimeIndex(d["date"]), d["margin"] / d["notional"], lw=1.2,
                        label=m)
            ax.tick_params(axis="x", labelsize=7, rotation=30)
            ax.set_ylabel("/ notional", fontsize=8)
        for k in range(n, nrow * ncol):
            axes[k // ncol, k % ncol].axis("off")
        handles, labels = [], []
        for ax in axes.ravel():
            hh, ll = ax.get_legend_handles_labels()
            for hnd, lab in zip(hh, ll, strict=True):
                if lab not in labels:
                    handles.append(hnd)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8)
        fig.suptitle(f"{asset} {position}: margin through stress episodes")
        fig.tight_layout(rect=(0, 0.06, 1, 0.97))
        return fig

    # ------------------------------------------------------------------ files
    def write(self, folder: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
        """Write ``backtest_table.csv``, ``backtest_procyclicality.csv``,
        ``backtest_runs.csv``, ``backtest_series.csv.gz`` and (``plots``) PNG files
        ``margin_<asset>_<position>.png`` and ``stress_<asset>_<position>.png``; each file
        is written to a temporary name and renamed (atomic). Returns the paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, frame in (("backtest_table.csv", self.stats),
                            ("backtest_procyclicality.csv", self.apc),
                            ("backtest_runs.csv", self.runs),
                            ("backtest_series.csv.gz", self.series)):
            path = out / name
            tmp = out / f".{name}.tmp"
            try:
                frame.to_csv(tmp, index=False, compression="gzip" if name.endswith(".gz")
                             else None)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            paths.append(path)
        if plots:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            for asset in dict.fromkeys(self.series["asset"]):
                for pos in dict.fromkeys(self.series["position"]):
                    safe = f"{_safe(asset)}_{_safe(pos)}"
                    for kind, fn in (("margin", self.plot_margin),
                                     ("stress", self.plot_stress_episodes)):
                        fig = fn(asset, pos)
                        path = out / f"{kind}_{safe}.png"
                        tmp = out / f".{kind}_{safe}.png.tmp"
                        try:
                            fig.savefig(tmp, dpi=100, format="png")
                            os.replace(tmp, path)
                        finally:
                            plt.close(fig)
                            tmp.unlink(missing_ok=True)
                        paths.append(path)
        return paths


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(s))


# ========================================================================== statistics
def _statistics(ad: _AssetData, method: BacktestMethod, run: _Run, positions: list[Position],
                cfg: _Cfg, losses: dict[str, np.ndarray], hs_roll: dict[str, np.ndarray],
                hs_floor: dict[str, np.ndarray]) -> tuple[list[dict], list[dict], list]:
    rows, apc_rows, frames = [], [], []
    h = cfg.horizon
    dates = ad.dates[ad.t]
    s0 = ad.prices[ad.t]
    is_test = np.zeros(ad.t.size, dtype=bool)
    is_test[ad.test] = True
    for p in positions:
        loss = losses[p.name]
        var = run.var[p.name]
        es = run.es[p.name]
        margin = run.margin[p.name]
        notional = p.gross_units * s0
        hits = exceptions(loss, var, horizon=h)
        n_obs = int(hits.size)
        x = int(np.count_nonzero(hits))
        kup = kupiec(x, n_obs, cfg.level)
        chf = christoffersen(hits, cfg.level) if n_obs >= 2 else None
        tl = traffic_light(x, n_obs, cfg.level)
        z2 = z2p = z2c = math.nan
        sims = run.sims.get(p.name)
        es_t = es[ad.test]
        if sims is not None and np.all(es_t > 0):
            zr = acerbi_szekely_z2(loss[ad.test], var[ad.test], es_t, cfg.level,
                                   simulated_losses=sims.astype(np.float64))
            z2, z2p, z2c = zr.statistic, zr.p_value, zr.critical_value
        elif np.all(es_t > 0) and method.kind not in ("exchange", "grid"):
            z2 = acerbi_szekely_z2(loss[ad.test], var[ad.test], es_t, cfg.level).statistic
        rate = margin / notional
        pc = procyclicality(rate)
        breaches = int(np.count_nonzero(exceptions(loss, margin, horizon=h)))
        rows.append({
            "asset": ad.name, "method": method.name, "position": p.name,
            "first_date": pd.Timestamp(dates[0]).date(),
            "last_date": pd.Timestamp(dates[-1]).date(), "n_days": ad.n_oos, "n_obs": n_obs,
            "exceptions": x, "expected": kup.expected_exceptions,
            "exception_rate": kup.exception_rate, "kupiec_lr": kup.statistic,
            "kupiec_p": kup.p_value,
            "christoffersen_lr_ind": chf.lr_ind if chf else math.nan,
            "christoffersen_p_ind": chf.p_value_ind if chf else math.nan,
            "christoffersen_lr_cc": chf.lr_cc if chf else math.nan,
            "christoffersen_p_cc": chf.p_value_cc if chf else math.nan,
            "zone": tl.zone, "z2": z2, "z2_p": z2p, "z2_critical": z2c, "breaches": breaches,
            "peak_to_trough": pc.peak_to_trough, "max_increase_1d": pc.max_increase_1d,
            "max_increase_5d": pc.max_increase_5d, "max_increase_30d": pc.max_increase_30d,
            "avg_margin_over_notional": pc.mean_rate,
            "exceptions_all_days": int(np.count_nonzero(loss > var)),
        })
        stressed = np.maximum.accumulate(np.maximum(hs_roll[p.name], rate))
        tools = {
            "none": rate,
            "buffer": apc_buffer(rate, cfg.apc_buffer, cfg.apc_rebuild_days),
            "stressed_weight": apc_stressed_weight(rate, stressed, cfg.apc_stressed_weight),
            "floor": apc_floor(rate, hs_floor[p.name]),
        }
        for tool, r in tools.items():
            pct = procyclicality(r)
            apc_rows.append({"asset": ad.name, "method": method.name, "position": p.name,
                             "tool": tool, **{k: v for k, v in pct.to_dict().items()
                                              if k != "n_obs"},
                             "exceptions": int(np.count_nonzero(
                                 exceptions(loss, r * notional, horizon=h))),
                             "n_obs": n_obs})
        frames.append(pd.DataFrame({
            "asset": ad.name, "method": method.name, "position": p.name,
            "date": pd.DatetimeIndex(dates), "price": s0, "notional": notional,
            "margin": margin, "var": var, "es": es, "loss": loss, "exception": loss > var,
            "test": is_test, "apc_buffer": tools["buffer"] * notional,
            "apc_stressed": tools["stressed_weight"] * notional,
            "apc_floor": tools["floor"] * notional,
        }))
    return rows, apc_rows, frames



def _method_task(payload: tuple) -> tuple:
    """One (asset, method): run the method over every margin date and its statistics."""
    hist, cfg, implied_vol, a, method, midx, positions, losses, hs_roll, hs_floor = payload
    ad = _AssetData(hist, cfg, implied_vol, a)
    if method.kind == "exchange":
        run = _run_exchange(method, ad, positions, cfg)
    elif method.kind == "grid":
        run = _run_grid(method, ad, positions, cfg)
    else:
        run = _run_scenario_method(method, midx, ad, positions, cfg)
    rows, apc_rows, frames = _statistics(ad, method, run, positions, cfg, losses, hs_roll,
                                         hs_floor)
    run_row = {"asset": ad.name, "method": method.name, "n_refits": run.n_refits,
               "n_fit_warnings": run.n_warnings, "n_fit_failures": run.n_failures,
               "fit_seconds": run.fit_seconds, "seconds": run.seconds}
    return rows, apc_rows, frames, run_row


def _worker_init() -> None:
    import numba

    numba.set_num_threads(1)


def _report(rr: dict, verbose: bool) -> None:
    if verbose:
        print(f"  {rr['asset']} {rr['method']}: {rr['seconds']:.1f} s ({rr['n_refits']} fits, "
              f"{rr['fit_seconds']:.1f} s fitting)", file=sys.stderr, flush=True)


def _run_tasks(tasks: list, workers: int, verbose: bool) -> dict:
    """Run the (asset, method) tasks serially or on ``workers`` spawned processes; results
    do not depend on where a task runs (its seeds depend only on seed, asset and date)."""
    done = {}
    if workers <= 1 or len(tasks) <= 1:
        for key, payload in tasks:
            done[key] = _method_task(payload)
            _report(done[key][3], verbose)
        return done
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # the slowest methods first (longest-processing-time scheduling)
    order = sorted(tasks, key=lambda kv: (-float(kv[1][4].cost), kv[0]))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                             initializer=_worker_init) as pool:
        futures = {pool.submit(_method_task, payload): key for key, payload in order}
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()
            _report(done[futures[fut]][3], verbose)
    return done


# ========================================================================== entry point
def run_backtest(prices: Any, methods: Any = _DEFAULT_METHODS, level: float = 0.99,
                 horizon_days: int = 2, lookback_days: int = 365,
                 refit_every: int | Mapping[str, int] = 20, portfolio: Any = _DEFAULT_POSITIONS,
                 n_scenarios: int = 5000, seed: int = 0, *, measure: str = "var",
                 min_lookback_days: int | None = None, n_z2_sims: int = 1000,
                 iv_multiplier: float = 1.1, iv_lambda: float = 0.94,
                 implied_vol: Mapping[str, pd.Series] | None = None, zero_drift: bool = True,
                 apc_buffer_fraction: float = 0.25, apc_rebuild_days: float = 20.0,
                 apc_stressed_weight_fraction: float = 0.25, column: str = "close",
                 workers: int = 1, verbose: bool = False) -> BacktestResult:
    r"""Rolling out-of-sample backtest of margin methodologies (see the module docstring).

    Parameters
    ----------
    prices : PriceHistory, pandas Series/DataFrame, path, or mapping/sequence of those
        Daily closes (one per calendar day, no gaps), one or several assets; each asset is
        backtested on its own. A DataFrame's columns and a multi-asset PriceHistory's names
        are the assets; a Series/PriceHistory is one asset.
    methods : str or sequence of str / BacktestMethod
        Names in :data:`METHODS` (a comma-separated string works too) or method objects.
        Default: gbm, garch_t, merton, fhs, hs, exchange, grid.
    level : float, default 0.99
        Confidence level of VaR / ES, in (0.5, 1).
    horizon_days : int, default 2
        MPOR :math:`h` in days, >= 1.
    lookback_days : int, default 365
        Returns in the fitting / historical window, >= 10 (>= each method's ``min_obs``).
    refit_every : int or mapping, default 20
        Days between refits (>= 1); a mapping ``{method: days}`` with an optional ``"*"``
        default sets it per method (e.g. ``{"merton": 60, "*": 20}``).
    portfolio : str or sequence of str / Position
        Names in :data:`POSITIONS` or :class:`Position` objects; default long, short,
        short_straddle.
    n_scenarios : int, default 5000
        Monte Carlo scenarios per date; ``n_scenarios (1 - level) >= 1``.
    seed : int, default 0
        Master seed: date ``t`` of asset ``a`` uses ``SeedSequence([seed, a, t])`` for every
        Monte Carlo method (common random numbers) and ``[seed, a, t, method, 1]`` for the
        Z2 resampling, so runs are reproducible and a date's scenarios do not depend on the
        other dates or on the refit schedule.
    measure : {"var", "es"}, default "var"
        The margin: VaR or ES at ``level`` (floored at 0). The coverage tests always use
        the VaR; Z2 uses VaR and ES.
    min_lookback_days : int, optional
        Start backtesting once this many returns exist, growing the window to
        ``lookback_days`` (default: ``lookback_days``, a full window from the start).
    n_z2_sims : int, default 1000
        Simulated Z2 statistics under each model (0: statistic only).
    iv_multiplier, iv_lambda : float, default 1.1 and 0.94
        Implied-vol proxy ``iv_multiplier * sqrt(365 v_t)``, ``v_t`` the EWMA variance with
        decay ``iv_lambda``.
    implied_vol : mapping of asset to pandas Series, optional
        External implied vols (decimal, e.g. DVOL / 100) used where available (forward
        filled), the proxy elsewhere.
    zero_drift : bool, default True
        Simulate the Monte Carlo models without drift.
    apc_buffer_fraction, apc_rebuild_days, apc_stressed_weight_fraction : float
        Settings of :func:`apc_buffer` and :func:`apc_stressed_weight` (25 %, 20 days, 25 %).
    column : str, default "close"
        Price column when ``prices`` names files.
    workers : int, default 1
        Run the (asset, method) pairs on this many spawned processes (the results are
        identical to a serial run). A custom method's ``fit`` must then be picklable (a
        module-level function), and a script calling this must guard its entry point with
        ``if __name__ == "__main__":`` (the usual ``multiprocessing`` rule).
    verbose : bool, default False
        Print one line per asset and method (timings) to stderr.

    Returns
    -------
    BacktestResult

    Raises
    ------
    ValueError, TypeError
        Naming the argument, the value and the allowed range.
    """
    tic = time.perf_counter()
    level = check_real("level", level, low=0.5, high=1.0, low_open=True, high_open=True)
    h = _check_int("horizon_days", horizon_days, 1)
    lookback = _check_int("lookback_days", lookback_days, 10)
    min_lb = lookback if min_lookback_days is None else _check_int("min_lookback_days",
                                                                   min_lookback_days, 10)
    if min_lb > lookback:
        raise ValueError(f"min_lookback_days must be <= lookback_days={lookback}, got {min_lb}")
    if h >= min_lb:
        raise ValueError(f"horizon_days must be < the look-back ({min_lb} days), got {h}")
    if isinstance(refit_every, Mapping):
        refit = {str(k): _check_int(f"refit_every[{k!r}]", v, 1) for k, v in
                 refit_every.items()}
        refit.setdefault("*", 20)
    else:
        refit = {"*": _check_int("refit_every", refit_every, 1)}
    n_scen = _check_int("n_scenarios", n_scenarios, 1)
    if n_scen * (1.0 - level) < 1.0 - 1e-9:
        raise ValueError(f"n_scenarios must be >= 1 / (1 - level) = "
                         f"{math.ceil(1 / (1 - level) - 1e-9)} so that the tail holds a "
                         f"scenario, got {n_scen}")
    seed = _check_int("seed", seed, 0)
    if measure not in ("var", "es"):
        raise ValueError(f"measure must be 'var' or 'es', got {measure!r}")
    n_z2 = _check_int("n_z2_sims", n_z2_sims, 0)
    workers = _check_int("workers", workers, 1)
    ivm = check_real("iv_multiplier", iv_multiplier, low=0.0, low_open=True)
    ivl = check_real("iv_lambda", iv_lambda, low=0.0, high=1.0, low_open=True, high_open=True)
    if not isinstance(zero_drift, (bool, np.bool_)):
        raise TypeError(f"zero_drift must be a bool, got {zero_drift!r}")
    check_real("apc_buffer_fraction", apc_buffer_fraction, low=0.0, high=10.0)
    check_real("apc_rebuild_days", apc_rebuild_days, low=0.0, low_open=True)
    check_real("apc_stressed_weight_fraction", apc_stressed_weight_fraction, low=0.0, high=1.0)
    meths = _resolve_methods(methods)
    for m in meths:
        if m.min_obs > min_lb:
            raise ValueError(f"method {m.name!r} needs at least {m.min_obs} look-back returns; "
                             f"lookback_days / min_lookback_days is {min_lb}")
    unknown = set(refit) - {m.name for m in meths} - {"*"}
    if unknown:
        raise ValueError(f"refit_every names unknown method(s) {sorted(unknown)}; methods are "
                         f"{[m.name for m in meths]}")
    positions = _resolve_positions(portfolio)
    for p in positions:
        if p.has_options and p.tenor_days <= h:
            raise ValueError(f"position {p.name!r}: tenor_days={p.tenor_days} must exceed "
                             f"horizon_days={h}")
    hists = _as_assets(prices, column)
    cfg = _Cfg(level=level, horizon=h, lookback=lookback, min_lookback=min_lb, refit=refit,
               n_scenarios=n_scen, seed=seed, measure=measure, n_z2_sims=n_z2,
               iv_multiplier=ivm, iv_lambda=ivl, zero_drift=bool(zero_drift),
               apc_buffer=float(apc_buffer_fraction), apc_rebuild_days=float(apc_rebuild_days),
               apc_stressed_weight=float(apc_stressed_weight_fraction))

    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # one small kernel per date: threads only add overhead
    try:
        tasks = []
        iv_sources = {}
        for a, hist in enumerate(hists):
            ad = _AssetData(hist, cfg, implied_vol, a)
            iv_sources[ad.name] = ad.iv_source
            real = _path_losses(positions, ad.prices[ad.t], ad.iv[ad.t], ad.v[ad.t],
                                ad.real_paths, ivl, h)
            losses = {p.name: lo for p, lo in zip(positions, real, strict=True)}
            hs_roll, hs_floor, _ = _hs_rates(ad, positions, cfg)
            for midx, m in enumerate(meths):
                tasks.append(((a, midx), (hist, cfg, implied_vol, a, m, midx, positions, losses,
                                          hs_roll, hs_floor)))
        done = _run_tasks(tasks, workers, verbose)
    finally:
        numba.set_num_threads(threads)
    rows, apc_rows, frames, run_rows = [], [], [], []
    for key, _ in tasks:
        r, ar, fr, rr = done[key]
        rows += r
        apc_rows += ar
        frames += fr
        run_rows.append(rr)
    settings = {
        "level": level, "horizon_days": h, "lookback_days": lookback,
        "min_lookback_days": min_lb, "refit_every": dict(refit), "n_scenarios": n_scen,
        "seed": seed, "measure": measure, "n_z2_sims": n_z2, "iv_multiplier": ivm,
        "iv_lambda": ivl, "iv_source": iv_sources, "zero_drift": bool(zero_drift),
        "methods": [m.name for m in meths], "positions": [p.name for p in positions],
        "apc_buffer_fraction": float(apc_buffer_fraction),
        "apc_rebuild_days": float(apc_rebuild_days),
        "apc_stressed_weight_fraction": float(apc_stressed_weight_fraction),
        "apc_floor_years": _APC_FLOOR_YEARS, "workers": workers,
    }
    stats = pd.DataFrame(rows, columns=_TABLE_COLUMNS)
    apc = pd.DataFrame(apc_rows)
    series = pd.concat(frames, ignore_index=True)
    return BacktestResult(series=series, stats=stats, apc=apc, runs=pd.DataFrame(run_rows),
                          settings=settings, elapsed=time.perf_counter() - tic)


# ========================================================================== CLI
_CLI_COLUMNS = ["asset", "method", "position", "n_obs", "exceptions", "expected", "kupiec_p",
                "christoffersen_p_cc", "zone", "z2", "z2_p", "peak_to_trough",
                "max_increase_5d", "avg_margin_over_notional"]


def _refit_arg(text: str) -> int | dict[str, int]:
    """``--refit-every``: ``20`` or ``20,merton=60`` (a default and per-method values)."""
    out: dict[str, int] = {}
    for part in str(text).split(","):
        part = part.strip()
        key, sep, val = part.partition("=")
        key = key.strip() if sep else "*"
        val = val if sep else part
        try:
            days = int(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected DAYS or METHOD=DAYS, got {part!r}"
                                             ) from None
        if days < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1 day, got {part!r}")
        out[key] = days
    return out["*"] if list(out) == ["*"] else out


def add_backtest_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``backtest`` subcommand to an ``argparse`` subparsers object.

    ``marginlab backtest PRICES.csv [PRICES2.csv ...] --methods gbm,garch_t,merton,fhs,hs,
    exchange,grid --level 0.99 --horizon 2 --output DIR``; the handler is
    :func:`backtest_command` (``set_defaults(func=...)``).
    """
    b = subparsers.add_parser(
        "backtest", help="rolling out-of-sample backtest of margin methods on price history",
        description="Replay daily closes: on every day fit each method on the look-back, set "
        "the margin of a long, a short and a short straddle position for the MPOR, and "
        "compare with the realised loss. Writes backtest_table.csv (exceptions, Kupiec, "
        "Christoffersen, traffic light, Z2, procyclicality, cost), "
        "backtest_procyclicality.csv, backtest_runs.csv, backtest_series.csv.gz and PNG "
        "plots to --output.")
    b.add_argument("prices", nargs="+", help="daily price file(s), one asset each (CSV or "
                   "Parquet with a date column and a close column)")
    b.add_argument("--methods", default=",".join(_DEFAULT_METHODS),
                   help=f"comma-separated, from {','.join(METHODS)} (default: "
                   f"{','.join(_DEFAULT_METHODS)})")
    b.add_argument("--positions", default=",".join(_DEFAULT_POSITIONS),
                   help=f"comma-separated, from {','.join(POSITIONS)} (default: "
                   f"{','.join(_DEFAULT_POSITIONS)})")
    b.add_argument("--level", type=float, default=0.99, help="VaR/ES level (default 0.99)")
    b.add_argument("--horizon", type=int, default=2, help="MPOR in days (default 2)")
    b.add_argument("--lookback", type=int, default=365, help="look-back days (default 365)")
    b.add_argument("--refit-every", type=_refit_arg, default=20, metavar="DAYS",
                   help="days between refits (default 20); per method as e.g. "
                   "'20,merton=60'")
    b.add_argument("--scenarios", type=int, default=5000, help="Monte Carlo scenarios per "
                   "date (default 5000)")
    b.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    b.add_argument("--measure", choices=("var", "es"), default="var",
                   help="margin = VaR or ES (default var)")
    b.add_argument("--column", default="close", help="price column (default close)")
    b.add_argument("--workers", type=int, default=1, help="processes for the (asset, method) "
                   "pairs (default 1; 2 halves the time on 2 idle cores)")
    b.add_argument("--output", default="marginlab-backtest", help="output folder")
    b.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    b.add_argument("--quiet", action="store_true", help="no progress lines")
    b.set_defaults(func=backtest_command)
    return b


def backtest_command(args: argparse.Namespace) -> int:
    """Handler of ``marginlab backtest``: run, print the table, write the outputs."""
    hists = {}
    for path in args.prices:
        h = read_prices(path, column=args.column)
        if h.names[0] in hists:
            raise ValueError(f"two price files have the asset name {h.names[0]!r}; rename one")
        hists[h.names[0]] = h
    if not args.quiet:
        refit = args.refit_every if isinstance(args.refit_every, int) else ", ".join(
            f"{k}: {v}" for k, v in args.refit_every.items())
        print(f"backtest of {', '.join(hists)}: methods {args.methods}, {args.level:.4g} "
              f"{args.horizon}-day margin, look-back {args.lookback} days, refit every "
              f"{refit} days, {args.scenarios:,} scenarios", file=sys.stderr)
    res = run_backtest(hists, methods=args.methods, level=args.level,
                       horizon_days=args.horizon, lookback_days=args.lookback,
                       refit_every=args.refit_every, portfolio=args.positions,
                       n_scenarios=args.scenarios, seed=args.seed, measure=args.measure,
                       column=args.column, workers=args.workers, verbose=not args.quiet)
    paths = res.write(args.output, plots=not args.no_plots)
    with pd.option_context("display.width", 160, "display.max_columns", 30,
                           "display.float_format", "{:,.4g}".format):
        print(res.table()[_CLI_COLUMNS].to_string(index=False))
    print(f"{len(res.stats)} rows in {res.elapsed:.1f} s; wrote {len(paths)} files to "
          f"{Path(args.output).resolve()}")
    return 0
