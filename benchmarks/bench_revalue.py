"""Portfolio revaluation and per-account risk: the option and linear revaluation rates of
``unit_pnl`` against vectorised numpy, QuantLib and a plain memory write; the whole pipeline
(scenarios -> unit P&L -> per-account VaR / ES) on a synthetic book against its floor, its
growth with accounts and scenarios, and its peak memory.

Rates are in instrument-scenarios per second: one option (or perpetual) valued in one
scenario. Every reference is timed in the same process and run, interleaved with the kernel
it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marginlab.models import GBM, MarketState, monte_carlo_scenarios, portfolio_risk, revalue
from marginlab.models.portfolio import holdings_matrix
from marginlab.simulate._numba import numba, parallel_kernel, prange
from marginlab.simulate.revalue import KIND_LINEAR, KIND_OPTION, level_indices, unit_pnl

from ._harness import Benchmark, Context, Row, Target, best_of_each, new_context, peak_rss

SUBJECT = "revalue"
TITLE = "Portfolio revaluation and per-account risk"

SEED = 20240601
MiB = 1024.0**2
HORIZON_DAYS = 2
HORIZON = HORIZON_DAYS / 365.0
RATE = 0.04  # USD rate of the option micro-benchmarks (exercises discounting)
LEVELS = (0.99, 0.975)

# Micro-benchmark market: three underlyings, correlated GBM, implied vols that move with price.
UNDERLYINGS = ("BTC", "ETH", "SOL")
SPOT = {"BTC": 90_000.0, "ETH": 3_000.0, "SOL": 150.0}
VOL = {"BTC": 0.55, "ETH": 0.70, "SOL": 0.90}
CORR = np.array([[1.0, 0.8, 0.7], [0.8, 1.0, 0.75], [0.7, 0.75, 1.0]])
VOL_OF_VOL = 1.5  # annualised; vol_price_corr -0.5 (monte_carlo_scenarios' default)
EXPIRY_DAYS = (7, 14, 30, 60, 90, 180, 365)  # whole days (QuantLib dates), all past the horizon

OPTION_TARGET_PER_THREAD = 0.75  # ours >= 0.75 x threads x numpy (1 thread)
QUANTLIB_TARGET = Target(">=", 100.0)
E2E_TARGET = Target("<", 3.0)  # total / floor
FACTORS_TARGET = Target("<", 1.5)  # with the new risk factors / today's path (issue 13)
# The new factors (issue 13): an SSVI surface per underlying and skew / term / basis shocks.
SSVI = dict(rho=-0.3, eta=1.0, term_slope=-0.1)
MEMORY_TARGET = Target("<", 4096.0, on="value")  # MiB


def _k(n: int) -> str:
    """``100k`` / ``2.5k`` / ``800`` labels for sizes."""
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return f"{n:,}"


@dataclass(frozen=True)
class Sizes:
    n_options: int
    opt_scen: int
    ql_scen: int  # scenarios of the QuantLib loops (all options each)
    n_perps: int
    perp_scen: int
    accounts: int  # end to end
    scenarios: int
    grow_accounts: tuple[int, ...]  # smaller books at `scenarios`
    grow_scenarios: tuple[int, ...]  # fewer scenarios at `accounts`
    floor_block: int  # accounts per block of the floor (64: the fastest of 16..2048 here)
    repeat: int
    slow_repeat: int  # the end-to-end runs
    grow_repeat: int
    factor_accounts: int  # the new risk factors' cost (surfaces, skew / term, basis)
    factor_scenarios: int


FULL = Sizes(
    n_options=200, opt_scen=20_000, ql_scen=100, n_perps=500, perp_scen=20_000,
    accounts=100_000, scenarios=10_000, grow_accounts=(25_000, 50_000),
    grow_scenarios=(2_500, 5_000), floor_block=64, repeat=7, slow_repeat=3, grow_repeat=2,
    factor_accounts=100_000, factor_scenarios=10_000,
)  # fmt: skip
QUICK = Sizes(
    n_options=20, opt_scen=2048, ql_scen=4, n_perps=20, perp_scen=2048,
    accounts=2_000, scenarios=1_000, grow_accounts=(500, 1_000), grow_scenarios=(250, 500),
    floor_block=64, repeat=2, slow_repeat=1, grow_repeat=1,
    factor_accounts=300, factor_scenarios=200,
)  # fmt: skip


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


def _all_threads(ctx: Context) -> None:
    numba.set_num_threads(ctx.threads)


# --------------------------------------------------------------------------- inputs
def _scenarios(n_scenarios: int, seed: int = SEED):
    market = MarketState(spot=SPOT, vol=VOL, rate=RATE)
    model = GBM(mu=0.0, sigma=[VOL[u] for u in UNDERLYINGS], corr=CORR)
    scen = monte_carlo_scenarios(model, market, UNDERLYINGS, horizon_days=HORIZON_DAYS,
                                 n_scenarios=n_scenarios, seed=seed, vol_of_vol=VOL_OF_VOL)
    return market, scen


@dataclass
class Options:
    """An options-only instrument set and its scenarios, with the per-option constants the
    numpy and QuantLib references need (the kernel derives the same ones itself)."""

    prices: np.ndarray  # (n_scen, 3)
    shock: np.ndarray
    s0: np.ndarray
    und: np.ndarray
    strike: np.ndarray
    days: np.ndarray
    is_call: np.ndarray
    sigma0: np.ndarray
    v0: np.ndarray  # value now, per unit

    @property
    def n(self) -> int:
        return self.und.size

    def ours(self) -> np.ndarray:
        n = self.n
        return unit_pnl(self.prices, self.shock, self.s0, kind=np.full(n, KIND_OPTION),
                        underlying=self.und, multiplier=np.ones(n), strike=self.strike,
                        expiry=self.days / 365.0, is_call=self.is_call,
                        implied_vol=self.sigma0, funding=np.zeros(n), horizon=HORIZON,
                        rate=RATE)  # fmt: skip


def options(ctx: Context) -> Options:
    def make():
        s = ctx.sizes
        _, scen = _scenarios(s.opt_scen)
        rng = np.random.default_rng(SEED)
        n = s.n_options
        und = np.arange(n) % len(UNDERLYINGS)
        s0 = np.array([SPOT[u] for u in UNDERLYINGS])
        strike = s0[und] * np.exp(rng.uniform(-0.35, 0.35, n))
        days = rng.choice(np.array(EXPIRY_DAYS, float), n)
        is_call = rng.random(n) < 0.5
        base = np.array([VOL[u] for u in UNDERLYINGS])[und]
        sigma0 = base * (1.0 + 0.3 * np.log(strike / s0[und]) ** 2)  # a smile
        phi = np.where(is_call, 1.0, -1.0)
        v0 = _black(s0[und], strike, days / 365.0, sigma0, phi)
        return Options(np.ascontiguousarray(scen.prices), np.ascontiguousarray(scen.vol_shock),
                       s0, und, strike, days, is_call, sigma0, v0)

    return ctx.memo("options", make)


def _black(s, k, tau, sigma, phi):
    """Black-76 value on the forward ``s e^{r tau}`` (numpy, scipy's ndtr)."""
    from scipy.special import ndtr

    v = sigma * np.sqrt(tau)
    dr = np.exp(-RATE * tau)
    d1 = (np.log(s / k) + RATE * tau) / v + 0.5 * v
    return np.maximum(phi * (s * ndtr(phi * d1) - k * dr * ndtr(phi * (d1 - v))), 0.0)


# --------------------------------------------------------------------------- 1. options
def numpy_unit_pnl(o: Options, chunk: int = 512) -> np.ndarray:
    """The options' unit P&L, ``(n_options, n_scenarios)``, in vectorised numpy and scipy
    (``scipy.special.ndtr``), one thread: Black-76 at the scenario price and shocked vol with
    the remaining life ``tau - h``, minus today's value. Scenarios in chunks, so that the
    temporaries stay in cache (faster than whole-array expressions on this machine)."""
    from scipy.special import ndtr

    n_scen = o.prices.shape[0]
    out = np.empty((o.n, n_scen))
    rem = o.days / 365.0 - HORIZON
    sq = np.sqrt(rem)[:, None]
    carry = (RATE * rem)[:, None]
    kdr = (o.strike * np.exp(-RATE * rem))[:, None]
    k = o.strike[:, None]
    phi = np.where(o.is_call, 1.0, -1.0)[:, None]
    sig0 = o.sigma0[:, None]
    v0 = o.v0[:, None]
    for lo in range(0, n_scen, chunk):
        hi = min(lo + chunk, n_scen)
        s = o.prices[lo:hi, o.und].T
        v = o.shock[lo:hi, o.und].T
        v *= sig0
        v *= sq
        d1 = np.log(s / k)
        d1 += carry
        d1 /= v
        d1 += 0.5 * v
        d2 = d1 - v
        d1 *= phi
        d2 *= phi
        val = s * ndtr(d1)
        val -= kdr * ndtr(d2)
        val *= phi
        np.maximum(val, 0.0, out=val)
        np.subtract(val, v0, out=out[:, lo:hi])
    return out


def bench_options(ctx: Context) -> list[Row]:
    s = ctx.sizes
    o = options(ctx)
    _all_threads(ctx)
    ours, ref = o.ours(), numpy_unit_pnl(o)
    err = np.max(np.abs(ours - ref) / (1.0 + np.abs(o.v0))[:, None])
    if not err < 1e-9:
        raise AssertionError(f"unit_pnl and the numpy reference differ by {err:g}")
    def ours_1thread():
        numba.set_num_threads(1)
        try:
            o.ours()
        finally:
            numba.set_num_threads(ctx.threads)

    t = best_of_each({"ours": o.ours, "numpy": lambda: numpy_unit_pnl(o), "one": ours_1thread},
                     repeat=s.repeat)
    work = o.n * o.prices.shape[0]
    rate, base, one = work / t["ours"], work / t["numpy"], work / t["one"]
    nominal = ctx.threads * base
    ctx.notes.append(
        f"Options: {o.n} European options on 3 underlyings (strikes S0 x e^U(-0.35, 0.35), "
        f"expiries 7 to 365 days, smile, shocked implied vols) x {o.prices.shape[0]:,} "
        f"scenarios. `unit_pnl` on {ctx.threads} threads values {rate / 1e6:.1f} M "
        f"option-scenarios/s, {rate / base:.2f} x the vectorised numpy/scipy reference on one "
        f"thread ({base / 1e6:.1f} M/s); the two agree to {err:.1g} (relative). On one thread "
        f"`unit_pnl` values {one / 1e6:.1f} M/s, {one / base:.2f} x numpy: the target needs "
        f"{OPTION_TARGET_PER_THREAD:g} per thread."
    )
    return [Row("options.rate / numpy", rate / 1e6, "M opt-scen/s", nominal / 1e6,
                f"{ctx.threads} x numpy BS (1 thread)", rate / nominal,
                Target(">=", OPTION_TARGET_PER_THREAD))]  # fmt: skip


def _quantlib_loops(o: Options, n_scen: int):
    """Three per-option loops from Python over the first ``n_scen`` scenarios, each writing
    ``value - v0`` into a float64 array: ``ql.BlackCalculator(payoff, F, stdDev, discount)``,
    the free function ``ql.blackFormula``, and ``VanillaOption.NPV()`` with an
    ``AnalyticEuropeanEngine`` whose spot and vol quotes are set per scenario."""
    import QuantLib as ql

    n = o.n
    rem = o.days / 365.0 - HORIZON
    grow = np.exp(RATE * rem).tolist()
    disc = np.exp(-RATE * rem).tolist()
    sq = np.sqrt(rem).tolist()
    sig0 = o.sigma0.tolist()
    v0 = o.v0.tolist()
    und = o.und.tolist()
    strike = o.strike.tolist()
    types = [ql.Option.Call if c else ql.Option.Put for c in o.is_call]
    payoffs = [ql.PlainVanillaPayoff(types[j], strike[j]) for j in range(n)]
    prices = o.prices[:n_scen].tolist()
    shocks = o.shock[:n_scen].tolist()
    out = np.empty((n, n_scen))

    def calculator():
        for i in range(n_scen):
            p, sh = prices[i], shocks[i]
            for j in range(n):
                a = und[j]
                out[j, i] = ql.BlackCalculator(payoffs[j], p[a] * grow[j],
                                               sig0[j] * sh[a] * sq[j], disc[j]).value() - v0[j]

    def formula():
        for i in range(n_scen):
            p, sh = prices[i], shocks[i]
            for j in range(n):
                a = und[j]
                out[j, i] = ql.blackFormula(types[j], strike[j], p[a] * grow[j],
                                            sig0[j] * sh[a] * sq[j], disc[j]) - v0[j]

    # The engine: valuation date at the horizon, remaining life (days - 2) / 365 (Act/365).
    day = ql.Date(1, 1, 2025)
    ql.Settings.instance().evaluationDate = day
    dc = ql.Actual365Fixed()
    spot_q = [ql.SimpleQuote(SPOT[u]) for u in UNDERLYINGS]
    vol_qs = [ql.SimpleQuote(sig0[j]) for j in range(n)]  # per option: the smile
    rate_h = ql.YieldTermStructureHandle(ql.FlatForward(day, RATE, dc))
    div_h = ql.YieldTermStructureHandle(ql.FlatForward(day, 0.0, dc))
    opts = []
    for j in range(n):
        vol_h = ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(day, ql.NullCalendar(), ql.QuoteHandle(vol_qs[j]), dc))
        proc = ql.BlackScholesMertonProcess(ql.QuoteHandle(spot_q[und[j]]), div_h, rate_h,
                                            vol_h)  # fmt: skip
        opt = ql.VanillaOption(payoffs[j],
                               ql.EuropeanExercise(day + int(o.days[j]) - HORIZON_DAYS))
        opt.setPricingEngine(ql.AnalyticEuropeanEngine(proc))
        opts.append(opt)

    def engine():
        for i in range(n_scen):
            p, sh = prices[i], shocks[i]
            for a, q in enumerate(spot_q):
                q.setValue(p[a])
            for j in range(n):
                vol_qs[j].setValue(sig0[j] * sh[und[j]])
                out[j, i] = opts[j].NPV() - v0[j]

    return out, calculator, formula, engine


def bench_quantlib(ctx: Context) -> list[Row]:
    s = ctx.sizes
    o = options(ctx)
    out, calculator, formula, engine = _quantlib_loops(o, s.ql_scen)
    _all_threads(ctx)
    ours = o.ours()
    for name, loop in (("BlackCalculator", calculator), ("blackFormula", formula),
                       ("engine", engine)):
        loop()
        err = np.max(np.abs(out - ours[:, : s.ql_scen]) / (1.0 + np.abs(o.v0))[:, None])
        if not err < 1e-8:
            raise AssertionError(f"QuantLib {name} and unit_pnl differ by {err:g}")
    t = best_of_each({"ours": o.ours, "calculator": calculator, "formula": formula,
                      "engine": engine}, repeat=s.slow_repeat, inner={"ours": 3})
    rate = o.n * o.prices.shape[0] / t["ours"]
    ql_work = o.n * s.ql_scen
    calc, form, eng = (ql_work / t[k] for k in ("calculator", "formula", "engine"))
    ctx.notes.append(
        f"QuantLib: {o.n} options x {s.ql_scen} scenarios per loop, {1e6 / calc:.2f} us per "
        f"`BlackCalculator(...).value()`, {1e6 / form:.2f} us per `blackFormula(...)`, "
        f"{1e6 / eng:.2f} us per `NPV()` with `AnalyticEuropeanEngine` (spot and vol quotes set "
        f"per scenario); values agree with `unit_pnl` to 1e-8 (relative)."
    )
    return [
        Row("options.rate / QuantLib BlackCalculator", rate / 1e6, "M opt-scen/s",
            calc / 1e6, "QuantLib BlackCalculator loop", rate / calc, QUANTLIB_TARGET),
        Row("options.rate / QuantLib engine NPV", rate / 1e6, "M opt-scen/s", eng / 1e6,
            "QuantLib AnalyticEuropeanEngine", rate / eng),
        Row("options.rate / QuantLib blackFormula", rate / 1e6, "M opt-scen/s", form / 1e6,
            "QuantLib blackFormula loop", rate / form),
    ]  # fmt: skip


# --------------------------------------------------------------------------- 2. linear
_FILL_BLOCK = 1 << 16


@parallel_kernel
def _fill(out, value):
    # A plain memory write on all threads: the same blocks-over-threads layout as the kernels.
    n = out.shape[0]
    n_blocks = (n + _FILL_BLOCK - 1) // _FILL_BLOCK
    for b in prange(n_blocks):
        for i in range(b * _FILL_BLOCK, min((b + 1) * _FILL_BLOCK, n)):
            out[i] = value


def bench_linear(ctx: Context) -> list[Row]:
    s = ctx.sizes
    _, scen = _scenarios(s.perp_scen)
    prices = np.ascontiguousarray(scen.prices)
    s0 = np.array([SPOT[u] for u in UNDERLYINGS])
    n = s.n_perps
    und = np.arange(n) % len(UNDERLYINGS)
    mult = np.ones(n)
    funding = 1e-4 * 3 * HORIZON_DAYS * s0[und]  # 1 bp per 8 h on the notional, USD
    zeros = np.zeros(n)

    def ours():
        return unit_pnl(prices, None, s0, kind=np.full(n, KIND_LINEAR), underlying=und,
                        multiplier=mult, strike=zeros + 1.0, expiry=zeros,
                        is_call=zeros.astype(bool), implied_vol=zeros, funding=funding,
                        horizon=HORIZON)  # fmt: skip

    out = np.empty((n, s.perp_scen))
    flat = out.reshape(-1)

    def write():
        _fill(flat, 1.0)

    def alloc_write():
        _fill(np.empty(flat.size), 1.0)

    def copyto():
        np.copyto(out, 1.0)

    _all_threads(ctx)
    ref = mult[:, None] * (prices[:, und].T - s0[und][:, None]) - funding[:, None]
    if not np.allclose(ours(), ref, rtol=1e-12, atol=1e-9):
        raise AssertionError("unit_pnl of the perpetuals differs from m (S - S0) - funding")
    t = best_of_each({"ours": ours, "write": write, "alloc": alloc_write, "copyto": copyto},
                     repeat=s.repeat, setup=write)
    nbytes = out.nbytes
    rate, w, a, c = (nbytes / t[k] / 1e9 for k in ("ours", "write", "alloc", "copyto"))
    ctx.notes.append(
        f"Linear: {n} USD-margined perpetuals x {s.perp_scen:,} scenarios, a "
        f"{nbytes / MiB:.0f} MiB float64 output. `unit_pnl` writes {rate:.1f} GB/s "
        f"({nbytes / 8 / t['ours'] / 1e6:,.0f} M instrument-scenarios/s) into the new array it "
        f"returns. Plain writes of the same array: `np.copyto(out, 1.0)` (one thread) "
        f"{c:.1f} GB/s, a numba fill on {ctx.threads} threads {w:.1f} GB/s into the existing "
        f"array and {a:.1f} GB/s into a fresh `np.empty` (page faults included)."
    )
    return [
        Row("linear.rate / memory write (np.copyto)", rate, "GB/s", c,
            "np.copyto, 1 thread", rate / c),
        Row("linear.rate / memory write (numba fill)", rate, "GB/s", w,
            f"numba fill, {ctx.threads} threads", rate / w),
    ]  # fmt: skip


# --------------------------------------------------------------------------- 3. end to end
def _e2e_model(vol: dict, underlyings) -> GBM:
    """Correlated GBM on the book's underlyings at their implied vols (CORR's pattern)."""
    n = len(underlyings)
    return GBM(mu=0.0, sigma=[vol[u] for u in underlyings], corr=CORR[:n, :n])


@dataclass
class Pipeline:
    """A synthetic book, its market snapshot and scenario model: one end-to-end run is
    ``monte_carlo_scenarios`` + ``portfolio_risk``."""

    book: object
    market: MarketState
    model: GBM
    underlyings: tuple[str, ...]

    def scenarios(self, n_scen: int):
        return monte_carlo_scenarios(self.model, self.market, self.underlyings,
                                     horizon_days=HORIZON_DAYS, n_scenarios=n_scen, seed=SEED,
                                     vol_of_vol=VOL_OF_VOL)  # fmt: skip

    def run(self, n_scen: int, allocate: bool):
        return portfolio_risk(self.book, self.market, self.scenarios(n_scen), levels=LEVELS,
                              allocate=allocate)


def make_pipeline(n_accounts: int) -> Pipeline:
    from marginlab.models.synthetic import default_market, make_book

    snap = default_market()  # {"spot": {...}, "vol": {...}}: what make_book prices at
    book = make_book(n_accounts, seed=SEED)
    und = tuple(book.underlyings)
    return Pipeline(book, MarketState(spot=snap["spot"], vol=snap["vol"]),
                    _e2e_model(snap["vol"], und), und)


def pipeline(ctx: Context, n_accounts: int) -> Pipeline:
    return ctx.memo(("pipeline", n_accounts), lambda: make_pipeline(n_accounts))


def floor(h, U: np.ndarray, m_keep: int, block: int) -> None:
    """The floor: per block of accounts, the dense P&L ``h[block] @ U`` (scipy sparse times
    dense, one thread) and the selection of each account's ``m_keep`` largest losses
    (``ndarray.partition`` along the scenario axis, in place)."""
    n_acc = h.shape[0]
    for lo in range(0, n_acc, block):
        p = h[lo:lo + block] @ U  # (block, n_scen) P&L; the largest losses are the smallest
        p.partition(m_keep - 1, axis=1)


def _m_keep(n_scen: int) -> int:
    var_top, lo_top, hi_top, w = level_indices(n_scen, np.asarray(LEVELS), 0.95)
    return int(min(n_scen, max(var_top.max(), lo_top.max(), hi_top.max(),
                               np.floor(w).max()) + 1))  # fmt: skip


def _check_floor(h, U, m_keep, risk) -> None:
    # The floor's selection holds the accounts' VaR: compare the 99 % VaR of a few accounts.
    n_scen = U.shape[1]
    p = np.asarray(h[:64] @ U)
    p.partition(m_keep - 1, axis=1)
    tail = -np.sort(p[:, :m_keep], axis=1)  # losses, largest first
    var_top = level_indices(n_scen, np.asarray(LEVELS), 0.95)[0]
    if not np.allclose(tail[:, var_top[0]], risk.var[0, :64], rtol=1e-9, atol=1e-6):
        raise AssertionError("the floor's tail selection disagrees with portfolio_risk VaR")


def bench_e2e(ctx: Context) -> list[Row]:
    s = ctx.sizes
    pl = pipeline(ctx, s.accounts)
    _all_threads(ctx)
    # Setup: compile, and check on a small scenario set that ES >= VaR and that the floor's
    # selection holds the accounts' VaR (the floor computes what the pipeline needs).
    n_check = min(s.scenarios, 1000)
    check_unit = revalue(pl.book, pl.market, pl.scenarios(n_check))
    for allocate in (True, False):
        r = pl.run(n_check, allocate)
        if not (np.all(r.es >= r.var - 1e-9) and np.all(np.isfinite(r.es))):
            raise AssertionError(f"portfolio_risk(allocate={allocate}): ES < VaR or not finite")
    h = holdings_matrix(pl.book)
    _check_floor(h, check_unit.pnl, _m_keep(n_check), r)
    scen = pl.scenarios(s.scenarios)
    unit = revalue(pl.book, pl.market, scen)
    m_keep = _m_keep(s.scenarios)
    def noalloc_1thread():
        numba.set_num_threads(1)
        try:
            pl.run(s.scenarios, False)
        finally:
            numba.set_num_threads(ctx.threads)

    t = best_of_each(
        {"alloc": lambda: pl.run(s.scenarios, True),
         "noalloc": lambda: pl.run(s.scenarios, False),
         "floor": lambda: floor(h, unit.pnl, m_keep, s.floor_block),
         "noalloc1": noalloc_1thread},
        repeat=s.slow_repeat,
    )  # fmt: skip
    # Where the time goes, for the notes: the rest is the holdings matrix and the accounts.
    parts = best_of_each(
        {"scenarios": lambda: pl.scenarios(s.scenarios),
         "revalue": lambda: revalue(pl.book, pl.market, scen)},
        repeat=s.repeat,
    )  # fmt: skip
    book = pl.book
    label = f"{_k(book.n_accounts)} acc x {_k(s.scenarios)} scen"
    ctx.notes.append(
        f"End to end: `make_book({s.accounts:,})` has {book.n_accounts:,} accounts, "
        f"{book.n_positions:,} positions, {book.n_instruments} instruments on "
        f"{', '.join(book.underlyings)} and collateral in {', '.join(book.assets)}; the unit "
        f"P&L has {unit.pnl.shape[0]} rows. One run is `monte_carlo_scenarios` (correlated GBM, "
        f"{HORIZON_DAYS}-day horizon, vol shocks) + `portfolio_risk(levels={LEVELS})`: "
        f"{t['alloc']:.2f} s with allocation, {t['noalloc']:.2f} s without, of which the "
        f"scenarios take {parts['scenarios']:.3f} s and the revaluation (`revalue`) "
        f"{parts['revalue']:.3f} s; the rest is the per-account kernel. The floor (scipy "
        f"`h[block] @ U`, then `ndarray.partition` keeping the {m_keep} largest losses of "
        f"each account, blocks of {s.floor_block} accounts, one thread) takes "
        f"{t['floor']:.2f} s. Both on one thread (info row), the pipeline without allocation "
        f"takes {t['noalloc1']:.2f} s: {t['noalloc1'] / t['floor']:.2f} x the floor, a ratio "
        f"other load on the machine affects less than the all-thread ones."
    )
    return [
        Row(f"e2e.allocate ({label})", t["alloc"], "s", t["floor"], "floor: sparse @ U + partition",
            t["alloc"] / t["floor"], E2E_TARGET),
        Row(f"e2e.no_allocate ({label})", t["noalloc"], "s", t["floor"],
            "floor: sparse @ U + partition", t["noalloc"] / t["floor"], E2E_TARGET),
        Row(f"e2e.no_allocate, 1 thread ({label})", t["noalloc1"], "s", t["floor"],
            "floor: sparse @ U + partition", t["noalloc1"] / t["floor"]),
    ]  # fmt: skip


def _slope(sizes, times) -> float:
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float))
    return float(np.polyfit(x, y, 1)[0])


def bench_growth(ctx: Context) -> list[Row]:
    s = ctx.sizes
    _all_threads(ctx)
    full = pipeline(ctx, s.accounts)
    full.run(min(s.scenarios, 1000), False)  # compile
    acc_sizes = (*s.grow_accounts, s.accounts)
    funcs = {}
    for n in acc_sizes:
        pl = pipeline(ctx, n)
        funcs[("acc", n)] = lambda pl=pl: pl.run(s.scenarios, False)
    scen_sizes = (*s.grow_scenarios, s.scenarios)
    for m in scen_sizes[:-1]:
        funcs[("scen", m)] = lambda m=m: full.run(m, False)
    funcs[("scen", s.scenarios)] = funcs[("acc", s.accounts)]
    t = best_of_each({k: f for k, f in funcs.items() if k != ("scen", s.scenarios)},
                     repeat=s.grow_repeat)
    t[("scen", s.scenarios)] = t[("acc", s.accounts)]
    n_acc = [pipeline(ctx, n).book.n_accounts for n in acc_sizes]
    t_acc = [t[("acc", n)] for n in acc_sizes]
    t_scen = [t[("scen", m)] for m in scen_sizes]
    rows = []
    for axis, sizes, times, fixed in (
        ("accounts", n_acc, t_acc, f"{_k(s.scenarios)} scenarios"),
        ("scenarios", scen_sizes, t_scen, f"{_k(s.accounts)} accounts"),
    ):
        slope = _slope(sizes, times)
        steps = ", ".join(f"{_k(n)}: {x:.2f} s" for n, x in zip(sizes, times, strict=True))
        doubling = ", ".join(f"{b / a:.2f}" for a, b in zip(times, times[1:], strict=False))
        ctx.notes.append(
            f"Growth in {axis} at {fixed} (`portfolio_risk`, allocate=False, scenarios "
            f"included): {steps}. Time ratio per doubling {doubling} (2.00 is linear); "
            f"log-log slope {slope:.2f}."
        )
        rows.append(Row(f"e2e.growth {axis} ({_k(sizes[0])} -> {_k(sizes[-1])}, {fixed})",
                        slope, "log-log slope", 1.0, "linear", slope))  # fmt: skip
    return rows


def bench_factors(ctx: Context) -> list[Row]:
    """The cost of the risk factors of issue 13 on the benchmark book: today's path (flat
    vols, spot and vol-level shocks) against an SSVI surface for every underlying plus skew,
    term-structure and basis shocks, both ``monte_carlo_scenarios`` + ``portfolio_risk``."""
    from marginlab.models.basis import BTC_BASIS_VOL
    from marginlab.models.vol_surface import DEFAULT_SKEW_VOL, DEFAULT_TERM_VOL, VolSurface

    s = ctx.sizes
    pl = pipeline(ctx, s.factor_accounts)
    _all_threads(ctx)
    surfaces = {u: VolSurface.ssvi(pl.market.implied_vol(u), **SSVI) for u in pl.underlyings}
    market = MarketState(spot=pl.market.spot, vol=pl.market.vol, surfaces=surfaces)
    factors = dict(skew_vol=DEFAULT_SKEW_VOL, term_vol=DEFAULT_TERM_VOL,
                   basis_vol=BTC_BASIS_VOL)

    def scen_plain(n):
        return pl.scenarios(n)

    def scen_factors(n):
        return monte_carlo_scenarios(pl.model, market, pl.underlyings,
                                     horizon_days=HORIZON_DAYS, n_scenarios=n, seed=SEED,
                                     vol_of_vol=VOL_OF_VOL, **factors)  # fmt: skip

    def plain():
        return portfolio_risk(pl.book, pl.market, scen_plain(s.factor_scenarios),
                              levels=LEVELS, allocate=False)

    def with_factors():
        return portfolio_risk(pl.book, market, scen_factors(s.factor_scenarios),
                              levels=LEVELS, allocate=False)

    # Setup: compile both paths, and check that the factors change the risk (they are on)
    # and keep it sane (ES >= VaR, finite).
    n_check = min(s.factor_scenarios, 1000)
    base = portfolio_risk(pl.book, pl.market, scen_plain(n_check), levels=LEVELS)
    new = portfolio_risk(pl.book, market, scen_factors(n_check), levels=LEVELS)
    for name, r in (("plain", base), ("factors", new)):
        if not (np.all(np.isfinite(r.es)) and np.all(r.es >= r.var - 1e-9)):
            raise AssertionError(f"portfolio_risk ({name}): ES < VaR or not finite")
    if np.allclose(new.es, base.es):
        raise AssertionError("the new risk factors leave every account's ES unchanged")
    sp, sf = scen_plain(s.factor_scenarios), scen_factors(s.factor_scenarios)
    t = best_of_each({"plain": plain, "factors": with_factors,
                      "rv_plain": lambda: revalue(pl.book, pl.market, sp),
                      "rv_factors": lambda: revalue(pl.book, market, sf),
                      "sc_plain": lambda: scen_plain(s.factor_scenarios),
                      "sc_factors": lambda: scen_factors(s.factor_scenarios)},
                     repeat=s.slow_repeat)  # fmt: skip
    book = pl.book
    label = f"{_k(book.n_accounts)} acc x {_k(s.factor_scenarios)} scen"
    moved = float(np.median(np.abs(new.es[0] - base.es[0]) / np.maximum(base.es[0], 1e-9)))
    ctx.notes.append(
        f"New risk factors (issue 13) on `make_book({s.factor_accounts:,})` "
        f"({book.n_accounts:,} accounts, {book.n_positions:,} positions): today's path "
        f"(flat vols, spot and vol-level shocks) against an SSVI surface for each of "
        f"{', '.join(pl.underlyings)} (`VolSurface.ssvi(level, rho=-0.3, eta=1.0, "
        f"term_slope=-0.1)`) with `skew_vol={DEFAULT_SKEW_VOL}`, `term_vol={DEFAULT_TERM_VOL}` "
        f"and `basis_vol={BTC_BASIS_VOL}`; one run is `monte_carlo_scenarios` + "
        f"`portfolio_risk(levels={LEVELS}, allocate=False)`: {t['plain']:.2f} s today, "
        f"{t['factors']:.2f} s with the factors. Of which scenarios {t['sc_plain']:.3f} s -> "
        f"{t['sc_factors']:.3f} s and `revalue` {t['rv_plain']:.3f} s -> "
        f"{t['rv_factors']:.3f} s (the surface's vols, skew / term loadings and basis "
        f"loadings); the per-account kernel is unchanged. The factors move the median "
        f"account's 99 % ES by {100 * moved:.1f} % ({n_check:,}-scenario check)."
    )
    return [
        Row(f"factors.e2e ({label})", t["factors"], "s", t["plain"],
            "today's path (flat vols, no skew/term/basis)", t["factors"] / t["plain"],
            FACTORS_TARGET),
        Row(f"factors.revalue ({label})", t["rv_factors"], "s", t["rv_plain"],
            "revalue, flat vols", t["rv_factors"] / t["rv_plain"]),
    ]  # fmt: skip


_MEM_SNIPPET = """\
import numpy as np
from benchmarks.bench_revalue import make_pipeline
r = make_pipeline({n_accounts}).run({n_scen}, True)
print(r.var.size, bool(np.all(r.es >= r.var - 1e-9)))
"""


def bench_memory(ctx: Context) -> list[Row]:
    s = ctx.sizes
    dense = s.accounts * s.scenarios * 8  # the (n_scenarios, n_accounts) P&L never formed
    # A small run first: fills numba's cache, so the measured process loads machine code
    # (compiling would add LLVM's memory), and gives the fixed overhead.
    small, _ = peak_rss(_MEM_SNIPPET.format(n_accounts=200, n_scen=500))
    peak, out = peak_rss(_MEM_SNIPPET.format(n_accounts=s.accounts, n_scen=s.scenarios))
    _, ok = out.split()
    if ok != "True":
        raise AssertionError("memory run: ES < VaR")
    label = f"{_k(s.accounts)} acc x {_k(s.scenarios)} scen"
    ctx.notes.append(
        f"Memory: a fresh process that builds `make_book({s.accounts:,})`, its scenarios and "
        f"`portfolio_risk(allocate=True)` peaks at {peak / MiB:,.0f} MiB RSS (the same with "
        f"200 accounts x 500 scenarios: {small / MiB:,.0f} MiB). The dense per-account P&L "
        f"matrix it never forms would be {dense / MiB:,.0f} MiB."
    )
    return [Row(f"memory.e2e ({label})", peak / MiB, "MiB peak RSS", dense / MiB,
                "dense P&L matrix", peak / dense, MEMORY_TARGET)]  # fmt: skip


BENCHMARKS = [
    Benchmark("options", bench_options, "unit_pnl on options vs vectorised numpy/scipy BS"),
    Benchmark("quantlib_options", bench_quantlib, "unit_pnl on options vs QuantLib loops"),
    Benchmark("linear", bench_linear, "unit_pnl on perpetuals vs a plain memory write"),
    Benchmark("e2e", bench_e2e, "make_book + scenarios + portfolio_risk vs the floor"),
    Benchmark("growth", bench_growth, "end-to-end time vs accounts and vs scenarios"),
    Benchmark("factors", bench_factors,
              "portfolio_risk with surfaces + skew/term/basis shocks vs today's path"),
    Benchmark("e2e_memory", bench_memory, "peak RSS of the end-to-end run, subprocess"),
]
