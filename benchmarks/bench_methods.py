"""Every margin methodology on the 100,000-account synthetic book: wall time and peak memory.

The book is ``make_book(100_000, SEED)`` (about 5 positions per account, options included,
BTC / ETH / SOL, linear and inverse contracts), priced at ``default_market()``. The
scenario methods share one set of 10,000 correlated-GBM scenarios over a 2-day horizon with
implied-vol shocks (as ``compare(..., scenarios=...)`` passes them); the historical methods
use the BTC / ETH / SOL daily closes of the data folder (or, without it, a history simulated
with a GJR-GARCH-t model); the rule-based methods use today's prices. Parameters are those
of ``notebooks/03_methodology_comparison.ipynb``.

Each method runs in a **fresh subprocess** (:func:`~benchmarks._harness.peak_rss`): the
process builds the book and the scenarios, compiles (or loads from numba's cache) on a small
book, then times ``method.compute(book, market, scenarios=...)`` as the best of a few calls.
Its peak RSS is the whole process's; a process that only builds the book and the scenarios
gives the floor it is compared with. ``--quick`` runs every method in one shared process on
a tiny book (a smoke run: one interpreter start instead of thirteen, and every memory row is
that process's peak).

The reference time is the previous issue's **raw revaluation + risk measure**:
``portfolio_risk(book, market, scenarios, levels=(0.99,), allocate=True)`` on the same
scenarios, timed in the Monte Carlo methods' processes interleaved with them
(:func:`~benchmarks._harness.best_of_each`). Target: the Monte Carlo method (ES and VaR)
within 2x of it; for the other methods the ratio is information.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ._harness import Benchmark, Context, Row, Target, new_context, peak_rss

SUBJECT = "methods"
TITLE = "Margin methodologies on the synthetic book"

SEED = 20240601
MiB = 1024.0**2
UNDERLYINGS = ("BTC", "ETH", "SOL")
CORR = [[1.0, 0.8, 0.7], [0.8, 1.0, 0.75], [0.7, 0.75, 1.0]]
HORIZON_DAYS = 2
LEVEL = 0.99
MC_TARGET = Target("<", 2.0)  # Monte Carlo method / raw portfolio_risk

def _data_dir() -> Path:
    from marginlab.models.history import shared_data_dir

    return shared_data_dir() or Path("/nonexistent/shared/data")


DATA_DIR = _data_dir()

# key -> label, in table order
METHODS = {
    "mc_es": "MC ES (GBM)",
    "mc_var": "MC VaR (GBM)",
    "hs_es": "HS ES",
    "fhs_es": "FHS ES",
    "apc_buffer": "MC ES + APC buffer",
    "span": "SPAN-like",
    "deribit_pm": "Deribit-like",
    "tiered_cross": "tiered cross (Binance-style)",
    "tiered_isolated": "tiered isolated (Binance-style)",
    "dydx": "dYdX v4",
    "drift": "Drift v2",
    "deribit_linear": "Deribit linear",
}
MONTE_CARLO = ("mc_es", "mc_var")


@dataclass(frozen=True)
class Sizes:
    accounts: int
    scenarios: int
    repeat: int  # calls timed per method (best of)
    mc_repeat: int  # rounds of (method, raw portfolio_risk) for the Monte Carlo methods
    warm_accounts: int  # the compile / cache-load book
    shared_process: bool  # all methods in one subprocess (quick) or one each (full)


FULL = Sizes(accounts=100_000, scenarios=10_000, repeat=3, mc_repeat=3, warm_accounts=300,
             shared_process=False)
QUICK = Sizes(accounts=1_000, scenarios=500, repeat=1, mc_repeat=1, warm_accounts=50,
              shared_process=True)


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


# --------------------------------------------------------------------------- inputs
def history():
    """Daily closes of BTC, ETH and SOL on common dates, and where they come from."""
    import numpy as np
    import pandas as pd

    files = {u: DATA_DIR / f"{u.lower()}_usd_daily.csv" for u in UNDERLYINGS}
    if all(f.exists() for f in files.values()):
        closes = pd.concat({u: pd.read_csv(f, parse_dates=["date"], index_col="date")["close"]
                            for u, f in files.items()}, axis=1, join="inner")
        return closes, "real daily closes"
    from marginlab.simulate import simulate_paths

    model = _gjr()
    path = simulate_paths(model, np.ones(len(UNDERLYINGS)), n_steps=2050, dt=model.step,
                          n_paths=1, seed=SEED)[0]
    dates = pd.date_range(end="2025-11-19", periods=path.shape[0], freq="D")
    return pd.DataFrame(path, index=dates, columns=list(UNDERLYINGS)), "simulated GJR-GARCH-t"


def _gjr():
    import numpy as np

    from marginlab.models import GARCH, default_market

    sigma = np.array([default_market(UNDERLYINGS)["vol"][u] for u in UNDERLYINGS])
    alpha, beta, gamma = 0.08, 0.88, 0.04
    return GARCH(omega=sigma**2 / 365 * (1 - alpha - beta - gamma / 2), alpha=alpha, beta=beta,
                 gamma=gamma, dist="t", nu=4.5, corr=CORR)


def inputs(n_accounts: int, n_scenarios: int):
    """The book, the market and the shared Monte Carlo scenarios."""
    from marginlab.models import GBM, MarketState, default_market, make_book, monte_carlo_scenarios

    snap = default_market(UNDERLYINGS)
    market = MarketState(**snap)
    book = make_book(n_accounts, seed=SEED)
    gbm = GBM(mu=0.0, sigma=[snap["vol"][u] for u in UNDERLYINGS], corr=CORR)
    scen = monte_carlo_scenarios(gbm, market, UNDERLYINGS, horizon_days=HORIZON_DAYS,
                                 n_scenarios=n_scenarios, seed=SEED, vol_of_vol=1.0)
    return book, market, scen, gbm


def _tables():
    from marginlab.models import default_market
    from marginlab.models.margin import BracketTable, binance_btcusdt_2021

    spot = default_market(UNDERLYINGS)["spot"]
    base = binance_btcusdt_2021()
    scale = {"BTC": 1.0, "ETH": 0.5, "SOL": 0.1}

    def table(u, inverse=False):
        k = scale[u] / (spot[u] if inverse else 1.0)
        return BracketTable(base.notional_floor * k, base.notional_cap * k, base.max_leverage,
                            base.maintenance_margin_rate, inverse=inverse,
                            name=f"{u}USD{'' if inverse else 'T'}")

    tables = {u: table(u) for u in UNDERLYINGS}
    for u in ("BTC", "ETH"):
        tables[f"{u}USD-PERP"] = tables[f"{u}USD-FUT-3M"] = table(u, inverse=True)
    return tables


def build_method(key: str, gbm, closes):
    """The method ``key`` of :data:`METHODS`, configured as in notebook 03."""
    from marginlab.models.margin import (
        AntiProcyclical,
        DeribitLinearMargin,
        DriftMargin,
        DydxMargin,
        HistoricalMargin,
        MonteCarloMargin,
        TieredMargin,
    )
    from marginlab.models.margin.grid import DeribitLike, SpanLike

    label = METHODS[key]

    def mc(measure, name):
        return MonteCarloMargin(gbm, UNDERLYINGS, measure=measure, level=LEVEL,
                                horizon_days=HORIZON_DAYS, name=name)

    def tiered(mode):
        return TieredMargin(_tables(), mode=mode, leverage=20.0, on_unsupported="ignore",
                            extend_last=True, name=label)

    per = {"BTC": 0.0, "ETH": 0.0}
    builders = {
        "mc_es": lambda: mc("es", label),
        "mc_var": lambda: mc("var", label),
        "hs_es": lambda: HistoricalMargin(closes, horizon_days=HORIZON_DAYS,
                                          lookback_days=None, name=label),
        "fhs_es": lambda: HistoricalMargin(closes, horizon_days=HORIZON_DAYS,
                                           lookback_days=None, filtered=True, name=label),
        "apc_buffer": lambda: AntiProcyclical(mc("es", "MC ES (GBM)"), tool="buffer",
                                              buffer=0.25, name=label),
        "span": lambda: SpanLike({"BTC": 0.15, "ETH": 0.18, "SOL": 0.25},
                                 {"BTC": 0.25, "ETH": 0.25, "SOL": 0.30},
                                 intra_spread_charge=dict.fromkeys(UNDERLYINGS, 0.01),
                                 short_option_minimum=dict.fromkeys(UNDERLYINGS, 0.01),
                                 name=label),
        "deribit_pm": lambda: DeribitLike(name=label),
        "tiered_cross": lambda: tiered("cross"),
        "tiered_isolated": lambda: tiered("isolated"),
        "dydx": lambda: DydxMargin(imf_base=0.05, mmf_fraction=0.6,
                                   oi_lower_cap={**per, "SOL": 40e6},
                                   oi_upper_cap={**per, "SOL": 100e6},
                                   open_interest={"SOL": 400_000.0}, on_unsupported="ignore",
                                   name=label),
        "drift": lambda: DriftMargin(base_imr=0.10, base_mmr=0.05, imf_factor=5e-4,
                                     on_unsupported="ignore", name=label),
        "deribit_linear": lambda: DeribitLinearMargin(
            im_base={"BTC": 0.02, "ETH": 0.02, "SOL": 0.04},
            mm_base={"BTC": 0.01, "ETH": 0.01, "SOL": 0.02},
            size_rate={"BTC": 5e-5, "ETH": 2.5e-6, "SOL": 5e-6},
            on_unsupported="ignore", name=label),
    }
    return builders[key]()


# --------------------------------------------------------------------------- the child
def child(keys: list[str], n_accounts: int, n_scenarios: int, repeat: int, mc_repeat: int,
          warm_accounts: int) -> None:
    """Run in a fresh process: build the inputs, time the methods ``keys`` (none: the inputs
    alone) and print one JSON line."""
    import time

    import numpy as np

    from marginlab.models import make_book, portfolio_risk

    from ._harness import best_of, best_of_each

    t0 = time.perf_counter()
    book, market, scen, gbm = inputs(n_accounts, n_scenarios)
    closes, source = history()
    out = {"build_s": time.perf_counter() - t0, "accounts": book.n_accounts,
           "positions": book.n_positions, "instruments": book.n_instruments,
           "history": source, "history_days": len(closes), "methods": {}}
    warm = make_book(warm_accounts, seed=SEED + 1) if keys else None
    for key in keys:
        method = build_method(key, gbm, closes)
        method.compute(warm, market, scenarios=scen)  # compile, or load numba's cache

        def run(method=method):
            return method.compute(book, market, scenarios=scen)

        info = {}
        if key in MONTE_CARLO:
            portfolio_risk(warm, market, scen, levels=(LEVEL,), allocate=True)
            t = best_of_each({"method": run,
                              "raw": lambda: portfolio_risk(book, market, scen,
                                                            levels=(LEVEL,), allocate=True)},
                             repeat=mc_repeat)
            info["wall"], info["raw"] = t["method"], t["raw"]
        else:
            info["wall"] = best_of(run, repeat=repeat)
        res = run()
        if not (np.all(np.isfinite(res.im)) and np.all(res.im >= res.mm - 1e-9 * np.abs(res.im))):
            raise AssertionError(f"{key}: IM not finite or below MM")
        info.update(total_im=float(res.im.sum()), zero_im=float(np.mean(res.im <= 0.0)))
        out["methods"][key] = info
    print(json.dumps(out))


_SNIPPET = """\
from benchmarks.bench_methods import child
child({keys!r}, {accounts}, {scenarios}, {repeat}, {mc_repeat}, {warm})
"""


def _run_child(ctx: Context, keys: tuple[str, ...]) -> tuple[float, dict]:
    def run():
        s = ctx.sizes
        snippet = _SNIPPET.format(keys=list(keys), accounts=s.accounts, scenarios=s.scenarios,
                                  repeat=s.repeat, mc_repeat=s.mc_repeat, warm=s.warm_accounts)
        peak, stdout = peak_rss(snippet, timeout=3600.0)
        return peak, json.loads(stdout.strip().splitlines()[-1])

    return ctx.memo(keys, run)


def _measure(ctx: Context, key: str) -> tuple[float, dict]:
    """Peak RSS of the process that ran method ``key`` and the method's timings."""
    keys = tuple(METHODS) if ctx.sizes.shared_process else (key,)
    peak, out = _run_child(ctx, keys)
    return peak, out["methods"][key]


def _k(n: int) -> str:
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


# --------------------------------------------------------------------------- benchmarks
def bench_methods(ctx: Context) -> list[Row]:
    s = ctx.sizes
    base_peak, base = _run_child(ctx, ())
    _, mc_info = _measure(ctx, "mc_es")
    raw = mc_info["raw"]
    size = f"{_k(s.accounts)} acc"
    rows = []
    walls = {}
    for key, label in METHODS.items():
        peak, info = _measure(ctx, key)
        walls[key] = info["wall"]
        if key in MONTE_CARLO:
            base_t, base_name = info["raw"], "raw portfolio_risk, same process"
            target = MC_TARGET
        else:
            base_t, base_name = raw, "raw portfolio_risk (MC ES run)"
            target = None
        rows.append(Row(f"{label} time ({size})", info["wall"], "s", base_t, base_name,
                        info["wall"] / base_t, target))
        rows.append(Row(f"{label} peak RSS ({size})", peak / MiB, "MiB", base_peak / MiB,
                        "book + scenarios alone", peak / base_peak, None))
    ctx.notes.append(
        f"Book: `make_book({s.accounts:,}, seed={SEED})`: {base['accounts']:,} accounts, "
        f"{base['positions']:,} positions, {base['instruments']} instruments; "
        f"{s.scenarios:,} GBM scenarios (2-day horizon, vol shocks) shared by the Monte Carlo "
        f"methods and the APC buffer; HS / FHS on {base['history_days']:,} days of "
        f"{base['history']} (every overlapping 2-day return). Building the inputs takes "
        f"{base['build_s']:.1f} s and peaks at {base_peak / MiB:,.0f} MiB. The raw "
        f"`portfolio_risk(levels=(0.99,), allocate=True)` takes {raw:.2f} s and MC ES "
        f"{walls['mc_es']:.2f} s on the same scenarios: MC ES is that call plus the margin "
        f"balance, gross notional and allocation table of its MarginResult (a few vectorised "
        f"passes over accounts and holdings), so its ratio is about 1; on a shared machine "
        f"the load during each interleaved call moves it either way.")
    ctx.notes.append(
        "Rule-based methods (tiered, dYdX, Drift, Deribit linear) margin futures only "
        "(options ignored, dYdX / Drift / Deribit linear also leave inverse contracts out); "
        "the grids (SPAN-like, Deribit-like) revalue every holding on their own few dozen "
        "scenarios per underlying, so they need no Monte Carlo set.")
    return rows


BENCHMARKS = [
    Benchmark("margin_methods", bench_methods,
              "every method on make_book(100k) x 10k scenarios, each in a fresh process"),
]
