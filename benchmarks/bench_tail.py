"""Tail-efficient Monte Carlo: variance reduction factors of ES 99 % and cost per scenario of
the variance-reduced scenario designs (randomised QMC, defensive-mixture importance sampling)
against plain Monte Carlo at the same scenario count.

The variance reduction factor (VRF) of an account is ``Var(ES_plain) / Var(ES_method)``,
both variances over independent replications (seeds) at the same number of scenarios, on
the benchmark book of ``bench_revalue`` (``make_book``, correlated GBM on BTC / ETH / SOL,
2-day horizon, vol shocks), and on two one-position books (a short 30-day ATM BTC call, a
long BTC perpetual) valued on the same scenario sets. The cost per scenario is the time of
``monte_carlo_scenarios`` + ``portfolio_risk`` (allocation included) over the scenario count,
each design timed interleaved with plain Monte Carlo in the same run.

The precision-targeted run (``precision.<design>``) is the batch runner
(:func:`marginlab.models.app.runner.run_batch`, ``[run] precision_target``) on the embedded
default configuration (``marginlab.models.app.demo.default_config``, a synthetic book, GBM on
BTC / ETH / SOL with vol shocks) with the Monte Carlo ES 99 % method only, once with
``sampling = "plain"`` and once with a variance-reduced design, each in a fresh subprocess:
the scenario count the precision search settles on and the wall time of the whole run
(search, compute and output). The ratio is design / plain at the same precision target.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marginlab.models import Book, monte_carlo_scenarios, portfolio_risk, revalue

from ._harness import Benchmark, Context, Row, Target, new_context, peak_rss
from .bench_revalue import HORIZON_DAYS, VOL_OF_VOL, make_pipeline

SUBJECT = "tail"
TITLE = "Tail-efficient Monte Carlo (variance reduction per scenario)"

DESIGNS = {"qmc": {"sampling": "qmc", "randomizations": 8}, "mixture": {"sampling": "mixture"},
           "shift": {"sampling": "shift"}}
MEDIAN_TARGET = Target(">=", 5.0)
P10_TARGET = Target(">=", 2.0)
SINGLE_TARGET = Target(">=", 10.0)
COST_TARGET = Target("<", 1.3)


@dataclass(frozen=True)
class Sizes:
    accounts: int  # VRF book
    scenarios: int
    reps: int
    cost_accounts: int
    cost_scenarios: int
    cost_repeat: int
    run_accounts: int  # precision-targeted batch run
    run_start: int  # first scenario count of the precision search
    run_max: int
    run_target: float  # ES standard error <= target x ES ...
    run_share: float  # ... on this share of the judged accounts
    run_warm: bool  # warm-up runs first (compile time not counted)


FULL = Sizes(accounts=1_000, scenarios=4_096, reps=60, cost_accounts=20_000,
             cost_scenarios=8_192, cost_repeat=5, run_accounts=100_000, run_start=4_096,
             run_max=262_144, run_target=0.02, run_share=0.99, run_warm=True)
QUICK = Sizes(accounts=60, scenarios=1_024, reps=4, cost_accounts=300, cost_scenarios=1_024,
              cost_repeat=1, run_accounts=200, run_start=1_024, run_max=8_192, run_target=0.05,
              run_share=0.9, run_warm=False)
RUN_DESIGNS = {"qmc": {"sampling": "qmc", "randomizations": 8}}


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


def _single_books() -> dict[str, Book]:
    """A short 30-day ATM BTC call and a long BTC perpetual, one account each."""
    from marginlab.models.synthetic import default_market

    s0 = default_market()["spot"]["BTC"]
    inst = pd.DataFrame({"instrument_id": ["BTC-C", "BTC-PERP"],
                         "type": ["option", "linear_perp"], "underlying": ["BTC", "BTC"],
                         "strike": [s0, np.nan], "expiry": [30 / 365, np.nan],
                         "option_type": ["call", None], "funding_rate": [np.nan, 0.0]})
    cash = pd.DataFrame({"account_id": ["a"], "asset": ["USDT"], "amount": [1.0]})
    out = {}
    for name, iid, q, e in (("single option", "BTC-C", -1.0, 1_000.0),
                            ("single perpetual", "BTC-PERP", 1.0, s0)):
        pos = pd.DataFrame({"account_id": ["a"], "instrument_id": [iid], "quantity": [q],
                            "entry_price": [e]})
        out[name] = Book.from_frames(inst, pos, cash)
    return out


def _es(pipe, books, n: int, seed: int, design: dict) -> dict[str, np.ndarray]:
    sc = monte_carlo_scenarios(pipe.model, pipe.market, pipe.underlyings,
                               horizon_days=HORIZON_DAYS, n_scenarios=n, seed=seed,
                               vol_of_vol=VOL_OF_VOL, **design)
    out = {}
    for name, book in books.items():
        r = portfolio_risk(book, pipe.market, revalue(book, pipe.market, sc), levels=(0.99,),
                           allocate=False)
        out[name] = r.es[0]
    return out


def _replications(ctx: Context):
    s = ctx.sizes
    pipe = make_pipeline(s.accounts)
    books = {"book": pipe.book, **_single_books()}
    est = {}
    for label, design in (("plain", {}), *DESIGNS.items()):
        runs = [_es(pipe, books, s.scenarios, 10_000 + r, design) for r in range(s.reps)]
        est[label] = {k: np.stack([x[k] for x in runs]) for k in books}
    return est


def bench_vrf(ctx: Context) -> list[Row]:
    s = ctx.sizes
    est = ctx.memo("reps", lambda: _replications(ctx))
    plain = {k: v.var(axis=0, ddof=1) for k, v in est["plain"].items()}
    rows = []
    for label in DESIGNS:
        var = {k: v.var(axis=0, ddof=1) for k, v in est[label].items()}
        ok = (plain["book"] > 0) & (var["book"] > 0)
        vrf = plain["book"][ok] / var["book"][ok]
        base = f"plain MC, {s.scenarios:,} scenarios"
        rows.append(Row(f"vrf.{label} median account", float(np.median(vrf)), "x", 1.0, base,
                        float(np.median(vrf)), MEDIAN_TARGET))
        p10 = float(np.percentile(vrf, 10))
        rows.append(Row(f"vrf.{label} 10th-percentile account", p10, "x", 1.0, base, p10,
                        P10_TARGET))
        for name in ("single option", "single perpetual"):
            f = float(plain[name][0] / var[name][0])
            rows.append(Row(f"vrf.{label} {name}", f, "x", 1.0, base, f, SINGLE_TARGET))
    ctx.notes.append(
        f"VRF: {s.reps} independent seeds per design, `make_book({s.accounts:,})` "
        f"({int(ok.sum()):,} accounts with risk), {s.scenarios:,} scenarios, ES 99 %, "
        "variances with ddof=1 (a ratio of two variances from "
        f"{s.reps} replications has a relative noise of about {np.sqrt(4 / s.reps):.0%}, so "
        "per-account percentiles are biased low). QMC: 8 randomisations of "
        f"{s.scenarios // 8:,} scrambled Sobol' points; mixture: 75 % of scenarios with one "
        "asset's shock inflated 2.5x; shift: 75 % of scenarios with one asset's normals "
        "shifted by +-2.5 sd (assets and signs in turn); likelihood-ratio weights.")
    return rows


def _time(func, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_cost(ctx: Context) -> list[Row]:
    s = ctx.sizes
    pipe = make_pipeline(s.cost_accounts)
    n = s.cost_scenarios

    def run(design):
        sc = monte_carlo_scenarios(pipe.model, pipe.market, pipe.underlyings,
                                   horizon_days=HORIZON_DAYS, n_scenarios=n, seed=1,
                                   vol_of_vol=VOL_OF_VOL, **design)
        portfolio_risk(pipe.book, pipe.market, sc, levels=(0.99, 0.975), allocate=True)

    for design in ({}, *DESIGNS.values()):  # compile
        run(design)
    rows = []
    for label, design in DESIGNS.items():
        t_plain = np.inf
        t_new = np.inf
        for _ in range(s.cost_repeat):  # interleaved
            t_plain = min(t_plain, _time(lambda: run({}), 1))
            t_new = min(t_new, _time(lambda d=design: run(d), 1))
        rows.append(Row(f"cost.{label} per scenario", t_new / n * 1e6, "us / scenario",
                        t_plain / n * 1e6, "plain MC", t_new / t_plain, COST_TARGET))
    ctx.notes.append(
        f"Cost: `make_book({s.cost_accounts:,})`, {n:,} scenarios, scenarios + "
        "`portfolio_risk(levels=(0.99, 0.975), allocate=True)`, best of "
        f"{s.cost_repeat} interleaved runs, {ctx.threads} threads.")
    return rows


_RUN_SNIPPET = """\
import json, os, time
from marginlab.models.app.config import config_from_dict
from marginlab.models.app.demo import default_config
from marginlab.models.app.runner import run_batch

def run(params, accounts, tag):
    out = os.path.join({out!r}, tag)
    cfg = default_config(out + "/run", accounts=accounts, n_scenarios={start})
    cfg["methods"] = [{{"type": "monte_carlo", "name": "MC ES 99%", "measure": "es",
                        "level": 0.99, "params": params}}]
    cfg["run"].update(account_block={block}, memory_budget_mb=8000,
                      precision_target={target}, precision_share={share},
                      max_scenarios={max_n})
    cfg = config_from_dict(cfg, out)
    t = time.perf_counter()
    res = run_batch(cfg, progress=False)
    return {{"wall": time.perf_counter() - t, "precision": res.info["precision"],
             "timings": res.info["timings_s"]}}

designs = {designs!r}
for label, params in designs.items() if {warm} else ():  # compile, warm up on a tiny book
    run(params, 50, "warm-" + label)
print(json.dumps({{label: run(params, {accounts}, label) for label, params in designs.items()}}))
"""


def _precision_runs(ctx: Context) -> dict:
    """Every design's precision-targeted run, one after the other in one fresh process
    (full size: after a warm-up run of each on a 50-account book, so compile time is not
    counted)."""
    s = ctx.sizes

    def run():
        with tempfile.TemporaryDirectory() as tmp:
            designs = {"plain": {"sampling": "plain"}, **RUN_DESIGNS}
            snippet = _RUN_SNIPPET.format(
                out=tmp, accounts=s.run_accounts, start=s.run_start, designs=designs,
                block=max(1, min(20_000, s.run_accounts // 4)), target=s.run_target,
                share=s.run_share, max_n=s.run_max, warm=s.run_warm)
            _, out = peak_rss(snippet, timeout=7200.0)
        return json.loads(out.strip().splitlines()[-1])

    return ctx.memo("runs", run)


def bench_precision(ctx: Context) -> list[Row]:
    s = ctx.sizes
    runs = _precision_runs(ctx)
    plain = runs["plain"]
    n_plain = plain["precision"]["history"][-1][0]
    rows = [Row("precision.plain scenarios", n_plain, "scenarios", n_plain, "itself", 1.0),
            Row("precision.plain wall time", plain["wall"], "s", plain["wall"], "itself", 1.0)]
    hist = {"plain": plain["precision"]["history"]}
    for label in RUN_DESIGNS:
        r = runs[label]
        n = r["precision"]["history"][-1][0]
        hist[label] = r["precision"]["history"]
        rows.append(Row(f"precision.{label} scenarios", n, "scenarios", n_plain,
                        "plain MC, same target", n / n_plain))
        rows.append(Row(f"precision.{label} wall time", r["wall"], "s", plain["wall"],
                        "plain MC, same target", r["wall"] / plain["wall"]))
    ctx.notes.append(
        f"Precision-targeted runs: `run_batch` on `default_config(accounts="
        f"{s.run_accounts:,})` with the MC ES 99 % method only, `precision_target = "
        f"{s.run_target}` on `precision_share = {s.run_share}` of the judged accounts "
        f"(2,000 evenly spaced accounts by default), counts doubled from {s.run_start:,} up "
        f"to {s.run_max:,}; wall time of the whole run (search + compute + outputs), the "
        "designs one after the other in one fresh process"
        + (" after a warm-up run of each on 50 accounts" if s.run_warm else "")
        + ". Search history (scenarios, share of accounts meeting the target): "
        + "; ".join(f"{k}: " + ", ".join(f"{n:,} -> {w:.3f}" for n, w in v)
                    for k, v in hist.items()) + ".")
    return rows


BENCHMARKS = [
    Benchmark("vrf", bench_vrf, "variance reduction factor of ES 99 % vs plain MC"),
    Benchmark("cost", bench_cost, "cost per scenario of QMC / mixture / shift vs plain MC"),
    Benchmark("precision", bench_precision,
              "precision-targeted batch run: scenario count and wall time vs plain MC"),
]
