"""Liquidation cascades: time and memory of the cascade engine against simulating the paths
alone; the fast path against the general path; compile time.

The subject is :func:`marginlab.models.liquidation.simulate_liquidations` and its kernels
(:mod:`marginlab.simulate.cascade`) on a book of one-position accounts in linear perpetuals
on two underlyings (``perp_book``), hourly steps over two days, with price-impact feedback,
an insurance fund and ADL. The baseline of every time is *simulating the paths alone*
(:func:`marginlab.simulate.simulate_paths` for the same model, paths and steps) timed beside
it: the ratio says what the cascade costs on top of the scenarios. The cascade's work is
O(paths x (steps + liquidation events)), so the notes give the events per path and the cost
per event, which is what makes the ratio large or small for a given book.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from marginlab.models import GBM, MarketState
from marginlab.models.liquidation import (
    LiquidationRules,
    PriceImpact,
    perp_book,
    simulate_liquidations,
)
from marginlab.simulate import cascade as C
from marginlab.simulate import simulate_paths
from marginlab.simulate._numba import numba

from ._harness import (
    Benchmark,
    Context,
    Row,
    best_of_each,
    compile_rows,
    new_context,
    peak_rss,
)

SUBJECT = "cascade"
TITLE = "Liquidation cascades"

SEED = 20240601
HOUR = 1.0 / (365.0 * 24.0)
SPOT = {"BTC": 60_000.0, "ETH": 3_000.0}
MODEL = GBM(mu=0.0, sigma=[0.6, 0.75], corr=[[1.0, 0.8], [0.8, 1.0]])
# Book: median effective leverage 4x (log-sd 0.7, capped at 50x), median position 5,000 USD
# (log-sd 1.0): about 0.8 bn USD of open interest over 10^5 accounts.
BOOK = dict(leverage=(4.0, 0.7), notional=(5_000.0, 1.0), max_leverage=50.0)
RULES = LiquidationRules(maintenance={"BTC": 0.005, "ETH": 0.005}, liquidation_fee=0.005,
                         insurance_fund=1e6)
# Depth: USD within ~2 % of mid; a liquidation of one depth moves the price 2 % + 1 %.
IMPACT = PriceImpact(depth={"BTC": 3e8, "ETH": 1e8}, linear=0.02, sqrt=0.01,
                      half_life_days=1 / 24)
MiB = 1024.0**2


@dataclass(frozen=True)
class Sizes:
    n_accounts: int
    n_paths: int
    n_steps: int
    general_accounts: int
    general_paths: int
    compile_general: bool  # the general path's cold compile takes ~20 s: not in quick runs
    repeat: int


FULL = Sizes(n_accounts=100_000, n_paths=10_000, n_steps=48, general_accounts=2_000,
             general_paths=2_000, compile_general=True, repeat=3)
QUICK = Sizes(n_accounts=2_000, n_paths=1_024, n_steps=48, general_accounts=200,
              general_paths=256, compile_general=False, repeat=1)


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


def _count(n: int) -> str:
    k = round(math.log10(n))
    return f"10^{k}" if 10**k == n else f"{n:,}"


@dataclass
class Setup:
    """The book converted once, the paths and the kernel inputs of the fast path."""

    book: object
    market: MarketState
    paths: np.ndarray
    accounts: C.SingleAccounts
    tables: C.MarginTables
    impact: C.ImpactParams
    rules: C.CascadeRules


def setup(ctx: Context) -> Setup:
    def make():
        s = ctx.sizes
        book = perp_book(s.n_accounts, SEED, spot=SPOT, **BOOK)
        market = MarketState(spot=SPOT)
        res = simulate_liquidations(book, market, MODEL, rules=RULES, impact=IMPACT,
                                    n_paths=256, n_steps=s.n_steps, seed=SEED,
                                    horizon_days=s.n_steps / 24, record=0)  # compiles
        from marginlab.models.liquidation import _convert

        conv = _convert(book, market, RULES, s.n_steps * HOUR, "fast")
        paths = simulate_paths(MODEL, conv.s0, n_steps=s.n_steps, dt=HOUR, n_paths=s.n_paths,
                               seed=SEED)
        assert res.method == "fast"
        return Setup(book, market, paths, conv.accounts, conv.tables,
                     IMPACT.arrays(conv.assets, conv.traded, HOUR), RULES.kernel_rules())

    return ctx.memo("setup", make)


def _paths_call(ctx: Context):
    s = ctx.sizes

    def call():
        return simulate_paths(MODEL, np.array([SPOT["BTC"], SPOT["ETH"]]), n_steps=s.n_steps,
                              dt=HOUR, n_paths=s.n_paths, seed=SEED)

    return call


# --------------------------------------------------------------------------- 1. the kernel
def bench_fast(ctx: Context) -> list[Row]:
    s = ctx.sizes
    st = setup(ctx)
    none = C.ImpactParams(np.full(2, np.inf), np.zeros(2), np.zeros(2), np.ones(2))
    numba.set_num_threads(ctx.threads)
    out = {}

    def run(imp, key):
        def call():
            out[key] = C.simulate_cascade(st.paths, st.accounts, st.tables, imp, st.rules)
        return call

    t = best_of_each({"paths": _paths_call(ctx), "feedback": run(st.impact, "feedback"),
                      "none": run(none, "none")}, repeat=s.repeat)
    rows = []
    label = f"{_count(s.n_accounts)} accounts x {_count(s.n_paths)} paths x {s.n_steps} steps"
    for key, name in (("feedback", "cascade.feedback"), ("none", "cascade.no_feedback")):
        p = out[key].path
        events = p[:, C.P_LIQUIDATIONS].sum() + p[:, C.P_ADL_EVENTS].sum()
        rows.append(Row(f"{name} ({label})", t[key], "s", t["paths"],
                        "simulate_paths alone", t[key] / t["paths"]))
        ctx.notes.append(
            f"`{name}`: {p[:, C.P_LIQUIDATIONS].mean():,.0f} liquidations per path on average "
            f"(99th percentile {np.percentile(p[:, C.P_LIQUIDATIONS], 99):,.0f}), "
            f"{p[:, C.P_ADL_EVENTS].mean():.2f} ADL events, ADL on "
            f"{np.mean(p[:, C.P_ADL_EVENTS] > 0):.1%} of paths; "
            f"{t[key] / max(events, 1) * 1e9 * ctx.threads:,.0f} ns of thread time per event "
            f"(whole run x threads / events). Paths alone: {t['paths'] * 1e3:.0f} ms.")
    fb, nf = out["feedback"], out["none"]
    ctx.notes.append(
        "Cascade amplification on this book (same paths): mean liquidations per path "
        f"{fb.path[:, C.P_LIQUIDATIONS].mean():,.0f} with feedback vs "
        f"{nf.path[:, C.P_LIQUIDATIONS].mean():,.0f} without; 99 % quantile of the worst BTC "
        f"log drop {-np.percentile(fb.asset[:, 0, C.A_MIN_LOG], 1):.4f} vs "
        f"{-np.percentile(nf.asset[:, 0, C.A_MIN_LOG], 1):.4f}.")
    return rows


def bench_api(ctx: Context) -> list[Row]:
    """End to end: book conversion, trigger prices, paths, cascade and result frames."""
    s = ctx.sizes
    st = setup(ctx)
    numba.set_num_threads(ctx.threads)

    def api():
        res = simulate_liquidations(st.book, st.market, MODEL, rules=RULES, impact=IMPACT,
                                    n_paths=s.n_paths, n_steps=s.n_steps, seed=SEED,
                                    horizon_days=s.n_steps / 24, record=0)
        res.summary()
        res.to_frame()

    t = best_of_each({"paths": _paths_call(ctx), "api": api}, repeat=s.repeat)
    return [Row(f"liquidations.api ({_count(s.n_accounts)} accounts, end to end)", t["api"],
                "s", t["paths"], "simulate_paths alone", t["api"] / t["paths"])]


def bench_calm(ctx: Context) -> list[Row]:
    """The same book at a quarter of the leverage (few liquidations): the per-step cost."""
    s = ctx.sizes
    st = setup(ctx)
    calm = st.accounts._replace(usd=st.accounts.usd * 4.0)
    numba.set_num_threads(ctx.threads)
    out = {}

    def call():
        out["r"] = C.simulate_cascade(st.paths, calm, st.tables, st.impact, st.rules)

    t = best_of_each({"paths": _paths_call(ctx), "calm": call}, repeat=s.repeat)
    liq = out["r"].path[:, C.P_LIQUIDATIONS].mean()
    ctx.notes.append(f"`cascade.calm`: the same accounts with 4x their collateral: "
                     f"{liq:.1f} liquidations per path; the time is the per-step walk and the "
                     "set-up (trigger prices, sorting, per-block scratch).")
    return [Row(f"cascade.calm ({_count(s.n_accounts)} accounts, {liq:.0f} liq./path)",
                t["calm"], "s", t["paths"], "simulate_paths alone", t["calm"] / t["paths"])]


# --------------------------------------------------------------------------- 2. general path
def bench_general(ctx: Context) -> list[Row]:
    """The general path (every account re-checked every round) on a smaller book."""
    s = ctx.sizes
    book = perp_book(s.general_accounts, SEED + 1, spot=SPOT, **BOOK)
    market = MarketState(spot=SPOT)
    kw = dict(rules=RULES, impact=IMPACT, n_paths=s.general_paths, n_steps=s.n_steps,
              seed=SEED, horizon_days=s.n_steps / 24, record=0)
    numba.set_num_threads(ctx.threads)
    res = {}

    def run(method):
        def call():
            res[method] = simulate_liquidations(book, market, MODEL, method=method, **kw)
        return call

    t = best_of_each({"fast": run("fast"), "general": run("general")}, repeat=s.repeat,
                     setup=lambda: (run("fast")(), run("general")()))
    same = np.array_equal(res["fast"].raw.counts, res["general"].raw.counts)
    ctx.notes.append(f"`general`: the general path on {_count(s.general_accounts)} accounts x "
                     f"{_count(s.general_paths)} paths gives the same per-account counts as the "
                     f"fast path: {same}.")
    return [Row(f"general.vs_fast ({_count(s.general_accounts)} accounts)", t["general"], "s",
                t["fast"], "fast path", t["general"] / t["fast"])]


# --------------------------------------------------------------------------- 3. memory
_MEM_SNIPPET = """\
import numpy as np
from marginlab.models import GBM, MarketState
from marginlab.models.liquidation import (LiquidationRules, PriceImpact, perp_book,
                                          simulate_liquidations)
from marginlab.simulate import simulate_paths
spot = {{"BTC": 60000.0, "ETH": 3000.0}}
model = GBM(mu=0.0, sigma=[0.6, 0.75], corr=[[1.0, 0.8], [0.8, 1.0]])
hour = 1.0 / (365.0 * 24.0)
if {cascade}:
    book = perp_book({n_accounts}, 20240601, spot=spot, leverage=(4.0, 0.7),
                     notional=(5000.0, 1.0), max_leverage=50.0)
    rules = LiquidationRules(maintenance={{"BTC": 0.005, "ETH": 0.005}},
                             liquidation_fee=0.005, insurance_fund=1e6)
    impact = PriceImpact(depth={{"BTC": 3e8, "ETH": 1e8}}, linear=0.02, sqrt=0.01,
                         half_life_days=1 / 24)
    res = simulate_liquidations(book, MarketState(spot=spot), model, rules=rules,
                                impact=impact, n_paths={n_paths}, n_steps={n_steps},
                                horizon_days={n_steps} / 24, seed=1, record=0)
    print(float(res.column("liquidations").mean()))
else:
    p = simulate_paths(model, np.array([60000.0, 3000.0]), n_steps={n_steps}, dt=hour,
                       n_paths={n_paths}, seed=1)
    print(float(p.mean()))
"""


def bench_memory(ctx: Context) -> list[Row]:
    s = ctx.sizes
    kw = dict(n_accounts=s.n_accounts, n_paths=s.n_paths, n_steps=s.n_steps)
    peak_rss(_MEM_SNIPPET.format(cascade=True, **{**kw, "n_paths": 256}))  # fill the cache
    cascade, _ = peak_rss(_MEM_SNIPPET.format(cascade=True, **kw))
    paths, _ = peak_rss(_MEM_SNIPPET.format(cascade=False, **kw))
    n_blocks = -(-s.n_paths // C.PATH_BLOCK)
    ctx.notes.append(
        f"`memory`: a fresh process building the {_count(s.n_accounts)}-account book and "
        f"running the cascade peaks at {cascade / MiB:.0f} MiB; one that only simulates the "
        f"paths at {paths / MiB:.0f} MiB. The per-block event counts are "
        f"{n_blocks} x 4 x {s.n_accounts:,} int16 = {n_blocks * 8 * s.n_accounts / MiB:.0f} "
        f"MiB; the paths {s.n_paths * (s.n_steps + 1) * 2 * 8 / MiB:.1f} MiB.")
    return [Row(f"memory.cascade ({_count(s.n_accounts)} accounts, {_count(s.n_paths)} paths)",
                cascade / MiB, "MiB peak RSS", paths / MiB, "paths alone", cascade / paths)]


# --------------------------------------------------------------------------- 4. compile
_COMPILE_SNIPPET = """\
import json, time
import numpy as np
t0 = time.perf_counter()
from marginlab.simulate import cascade as C
t1 = time.perf_counter()
acc = C.SingleAccounts(*(np.array([v]) for v in (0, 0, 1.0, 100.0, 1.0, 0, 10.0, 1.0, 0.0,
                                                  1.0)))
tables = C.MarginTables(np.array([[0.01]]), np.array([[0.0]]), np.array([1]))
paths = np.array([[[100.0], [94.0]]])
imp = C.ImpactParams(np.inf, 0.0, 0.0, 1.0)
C.simulate_cascade(paths, acc, tables, imp, C.CascadeRules())
t2 = time.perf_counter()
out = {{"import": t1 - t0, "fast": t2 - t1}}
if {general}:
    cross = C.CrossAccounts(np.array([0, 1]), acc.asset, acc.inverse, acc.q, acc.entry, acc.face,
                            acc.table, acc.usd, acc.w_usd, np.zeros((1, 1)), np.ones((1, 1)))
    C.simulate_cascade(paths, cross, tables, imp, C.CascadeRules())
    out["general"] = time.perf_counter() - t2
out["total"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def bench_compile(ctx: Context) -> list[Row]:
    return compile_rows(
        _COMPILE_SNIPPET.format(general=ctx.sizes.compile_general),
        {"fast": "first fast-path call", "general": "first general-path call",
         "total": "import + first calls"},
    )  # fmt: skip


BENCHMARKS = [
    Benchmark("cascade_fast", bench_fast,
              "fast-path cascade with / without feedback vs simulating the paths"),
    Benchmark("cascade_calm", bench_calm, "the same book with few liquidations"),
    Benchmark("cascade_api", bench_api, "simulate_liquidations end to end"),
    Benchmark("cascade_general", bench_general, "general path vs fast path, same results"),
    Benchmark("cascade_memory", bench_memory, "peak RSS, cascade vs paths alone"),
    Benchmark("cascade_compile", bench_compile, "first calls, empty vs filled numba cache"),
]
