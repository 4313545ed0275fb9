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

Sub-daily data, the move cap and degenerate fits
------------------------------------------------
Hourly (or any whole number of hours dividing 24) closes are accepted: every close is a
margin date, ``horizon_hours`` sets an MPOR such as 8 h or 24 h, and the day counts
(look-back, refit interval) are converted to steps; the models are fitted on the per-step
returns with ``step`` = the data's step. Every Monte Carlo scenario's MPOR log move is capped
(``move_cap="history"``: 1.5 x the largest MPOR move in the prices up to the margin date,
:mod:`marginlab.models.move_cap`), so that the ES of a short under Student-t innovations is
finite and seed-stable. GARCH-family refits whose fit was degenerate (see
:func:`~marginlab.models.calibration.fit_garch`) are counted in the table
(``n_flagged_fits``, ``n_fallback_fits``) and by kind in ``runs`` (``fit_flags``). The Z2 null
of a method is drawn from a stream keyed by its name, so it does not depend on the other
methods of the run.

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
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._validate import check_real
from .backtest_engine import (
    _APC_FLOOR_YEARS,
    _as_assets,
    _AssetData,
    _Cfg,
    _check_int,
    _hs_rates,
    _path_losses,
    _resolve_methods,
    _resolve_positions,
    _run_tasks,
)
from .backtest_methods import (
    METHODS,
    POSITIONS,
    BacktestMethod,
    Position,
    exchange_method,
    grid_method,
    register_method,
)
from .backtest_result import _TABLE_COLUMNS, STRESS_EPISODES, BacktestResult
from .history import read_prices
from .move_cap import DEFAULT_CAP_MULTIPLE, check_cap
from .procyclicality import (
    ProcyclicalityResult,
    apc_buffer,
    apc_floor,
    apc_stressed_weight,
    procyclicality,
)

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


_DEFAULT_METHODS = ("gbm", "garch_t", "merton", "fhs", "hs", "exchange", "grid")
_DEFAULT_POSITIONS = ("long", "short", "short_straddle")


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
                 workers: int = 1, verbose: bool = False, horizon_hours: int | None = None,
                 move_cap: float | str | None = "history",
                 move_cap_multiple: float = DEFAULT_CAP_MULTIPLE) -> BacktestResult:
    r"""Rolling out-of-sample backtest of margin methodologies (see the module docstring).

    Parameters
    ----------
    prices : PriceHistory, pandas Series/DataFrame, path, or mapping/sequence of those
        Closes one per day, or one per whole number of hours dividing 24 (hourly data: a
        margin date every hour), without gaps; one or several assets (same spacing); each
        asset is backtested on its own. Day counts (``lookback_days``, ``refit_every``,
        ...) are converted to steps of the data. A DataFrame's columns and a multi-asset
        PriceHistory's names are the assets; a Series/PriceHistory is one asset.
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
    horizon_hours : int, optional
        MPOR in hours (e.g. 8 for perpetuals on hourly data); overrides ``horizon_days``
        and must be a whole number of data steps.
    move_cap : "history", float or None, default "history"
        Cap on each Monte Carlo scenario's log move over the MPOR
        (:mod:`marginlab.models.move_cap`): ``"history"`` = ``move_cap_multiple`` x the
        largest absolute MPOR move in the prices up to the margin date; a float: that log
        move; None: no cap (the ES of a short under Student-t innovations then has no
        finite mean). The number of capped scenarios is in ``runs`` (``n_capped_scenarios``).
    move_cap_multiple : float, default 1.5
        Multiple for ``move_cap="history"`` (>= 1).

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
    unknown = set(refit) - {m.name for m in meths} - {"*"}
    if unknown:
        raise ValueError(f"refit_every names unknown method(s) {sorted(unknown)}; methods are "
                         f"{[m.name for m in meths]}")
    positions = _resolve_positions(portfolio)
    for p in positions:
        if p.has_options and p.tenor_days <= h:
            raise ValueError(f"position {p.name!r}: tenor_days={p.tenor_days} must exceed "
                             f"horizon_days={h}")
    if isinstance(move_cap, str):
        if move_cap != "history":
            raise ValueError(f"move_cap must be 'history', a float > 0 or None, got {move_cap!r}")
    else:
        move_cap = check_cap("move_cap", move_cap)
    cap_mult = check_real("move_cap_multiple", move_cap_multiple, low=1.0)
    hists = _as_assets(prices, column)
    step_hours = int(round(hists[0].step * 365.0 * 24.0))
    spd = 24 // step_hours                       # steps per day
    h_days = h
    if horizon_hours is not None:
        hh = _check_int("horizon_hours", horizon_hours, 1)
        if hh % step_hours:
            raise ValueError(f"horizon_hours must be a whole number of the data's {step_hours}-"
                             f"hour steps, got {hh}")
        h = hh // step_hours
        h_days = hh / 24.0
        if hh % 24 == 0:
            h_days = hh // 24
        if h >= min_lb * spd:
            raise ValueError(f"horizon_hours must be shorter than the look-back ({min_lb} days)"
                             f", got {hh}")
        for p in positions:
            if p.has_options and p.tenor_days <= h_days:
                raise ValueError(f"position {p.name!r}: tenor_days={p.tenor_days} must exceed "
                                 f"the horizon ({hh} hours)")
    else:
        h = h * spd
    refit = {k: v * spd for k, v in refit.items()}
    for m in meths:
        if m.min_obs > min_lb * spd:
            raise ValueError(f"method {m.name!r} needs at least {m.min_obs} look-back returns; "
                             f"lookback_days / min_lookback_days is {min_lb}")
    cfg = _Cfg(level=level, horizon=h, lookback=lookback * spd, min_lookback=min_lb * spd,
               refit=refit, step_hours=step_hours, move_cap=move_cap,
               move_cap_multiple=cap_mult,
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
                                ad.real_paths, ivl, h, cfg.step_days)
            losses = {p.name: lo for p, lo in zip(positions, real, strict=True)}
            hs_roll, hs_floor, _ = _hs_rates(ad, positions, cfg)
            for midx, m in enumerate(meths):  # noqa: B007 (midx keys the task)
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
        "level": level, "horizon_days": h_days, "horizon_steps": h, "step_hours": step_hours,
        "move_cap": move_cap, "move_cap_multiple": cap_mult, "lookback_days": lookback,
        "min_lookback_days": min_lb, "refit_every": {k: v // spd for k, v in refit.items()},
        "n_scenarios": n_scen,
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


def _move_cap_arg(text: str) -> float | str | None:
    """``--move-cap``: 'history', 'none' or a positive log move."""
    t = str(text).strip().lower()
    if t in ("history", "none"):
        return None if t == "none" else "history"
    try:
        return float(t)
    except ValueError:
        raise ValueError(f"--move-cap must be 'history', 'none' or a number, got {text!r}"
                         ) from None


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
    b.add_argument("--min-lookback", type=int, default=None, metavar="DAYS",
                   help="start once this many days of returns exist, the window growing to "
                   "--lookback (default: a full look-back from the start)")
    b.add_argument("--horizon-hours", type=int, default=None, metavar="HOURS",
                   help="MPOR in hours for sub-daily data (e.g. 8); overrides --horizon")
    b.add_argument("--move-cap", default="history", metavar="CAP",
                   help="cap on simulated MPOR log moves: 'history' (1.5 x the largest move "
                   "so far, default), a number (log move) or 'none'")
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
                       column=args.column, workers=args.workers, verbose=not args.quiet,
                       min_lookback_days=args.min_lookback, horizon_hours=args.horizon_hours,
                       move_cap=_move_cap_arg(args.move_cap))
    paths = res.write(args.output, plots=not args.no_plots)
    with pd.option_context("display.width", 160, "display.max_columns", 30,
                           "display.float_format", "{:,.4g}".format):
        print(res.table()[_CLI_COLUMNS].to_string(index=False))
    print(f"{len(res.stats)} rows in {res.elapsed:.1f} s; wrote {len(paths)} files to "
          f"{Path(args.output).resolve()}")
    return 0
