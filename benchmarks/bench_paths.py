"""Path generators: throughput against the random-number limit and against peers; memory;
compile time.

Each throughput is in path-steps per second (paths x steps / best time of several calls,
after a setup call that compiles). The reference for marginlab's kernels is *the limit*: the
rate at which one thread draws standard normals from the same generator the kernels use
(xoshiro256++ streams and the ziggurat of :mod:`marginlab.simulate.rng`), measured by a small
kernel in this file. A path-step needs at least one normal, so ``rate / (threads x limit)``
is the fraction of the generator's speed a model keeps (1.0 would mean the rest of the step
is free).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from marginlab.models import GARCH, GBM, MertonJump
from marginlab.simulate import BLOCK_PATHS, simulate_paths, simulate_terminal
from marginlab.simulate._numba import kernel, numba, parallel_kernel, prange
from marginlab.simulate.rng import block_state, normal, seed_key

from ._harness import (
    Benchmark,
    Context,
    Row,
    Target,
    best_of_each,
    compile_rows,
    new_context,
    peak_rss,
)

SUBJECT = "paths"
TITLE = "Path generators"

SEED = 20240601
S0 = 50_000.0
DT = 1.0 / 365.0
MiB = 1024.0**2


def _count(n: int) -> str:
    """``10^7`` for exact powers of ten, else ``1,000``-style."""
    k = round(math.log10(n))
    return f"10^{k}" if 10**k == n else f"{n:,}"


# The models, in marginlab's units (annualised for GBM / Merton, per daily step for GARCH).
MODELS = {
    "gbm": GBM(mu=0.0, sigma=0.6),
    "merton": MertonJump(mu=0.0, sigma=0.6, lam=10.0, jump_mean=-0.02, jump_std=0.05),
    "garch": GARCH(omega=2e-5, alpha=0.08, beta=0.90),
    "gjr_t": GARCH(omega=1e-5, alpha=0.05, beta=0.90, gamma=0.08, dist="t", nu=5.0),
}
TARGETS = {
    "gbm": Target(">=", 0.6),
    "merton": Target(">=", 0.4),
    "garch": Target(">=", 0.25),
    # Reported for information: the GARCH target is for normal innovations; Student-t
    # innovations add a chi-square (gamma) draw per step, several normals' worth of work.
    "gjr_t": None,
}
PEER_TARGET = Target(">=", 10.0)
MEMORY_TARGET = Target("<", 1024.0, on="value")  # MiB


@dataclass(frozen=True)
class Sizes:
    n_paths: int  # also sets the limit kernel's work: n_paths x n_steps normals, same blocks
    n_steps: int
    numpy_paths: int
    ql_paths: int
    arch_sims: int
    mem_paths: int
    mem_steps: int
    compile_garch: bool
    repeat: int
    slow_repeat: int  # for arch, whose single call takes about a second at full size


FULL = Sizes(
    n_paths=2**15, n_steps=256, numpy_paths=2**15, ql_paths=2**10, arch_sims=2**14,
    mem_paths=10**7, mem_steps=10, compile_garch=True, repeat=7, slow_repeat=3,
)  # fmt: skip
QUICK = Sizes(
    n_paths=2**11, n_steps=32, numpy_paths=2**11, ql_paths=32, arch_sims=256,
    mem_paths=10**5, mem_steps=10, compile_garch=False, repeat=2, slow_repeat=1,
)  # fmt: skip


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


# --------------------------------------------------------------------------- 1. the limit
@kernel
def _fill_block(key, b, per_block, out):
    # One xoshiro256++ stream per block, as in the path kernels; normals stored in order.
    st = block_state(key, b)
    base = b * per_block
    for i in range(per_block):
        x, st = normal(st)
        out[base + i] = x


@kernel
def _fill_normals(key, n_blocks, per_block, out):
    for b in range(n_blocks):
        _fill_block(key, b, per_block, out)


@parallel_kernel
def _fill_normals_parallel(key, n_blocks, per_block, out):
    # The same work, blocks spread over numba's threads as in the path kernels.
    for b in prange(n_blocks):
        _fill_block(key, b, per_block, out)


@dataclass
class Limit:
    """The limit kernels, compiled, with their work: as many normals as a path benchmark
    has path-steps, in the same blocks (BLOCK_PATHS paths x n_steps)."""

    key: np.ndarray
    n_blocks: int
    per_block: int
    out: np.ndarray

    @property
    def count(self) -> int:
        return self.out.size

    def serial(self) -> None:
        _fill_normals(self.key, self.n_blocks, self.per_block, self.out)

    def parallel(self) -> None:
        _fill_normals_parallel(self.key, self.n_blocks, self.per_block, self.out)


def limit(ctx: Context) -> Limit:
    def make():
        s = ctx.sizes
        n_blocks = max(-(-s.n_paths // BLOCK_PATHS), 2 * ctx.threads)
        per_block = BLOCK_PATHS * s.n_steps
        lim = Limit(seed_key(SEED), n_blocks, per_block, np.empty(n_blocks * per_block))
        _fill_normals(lim.key, 1, 16, lim.out)  # compile
        numba.set_num_threads(ctx.threads)
        _fill_normals_parallel(lim.key, ctx.threads, 16, lim.out)
        lim.serial()
        mean, sd = lim.out.mean(), lim.out.std()
        if not (abs(mean) < 0.01 and abs(sd - 1.0) < 0.01):  # > 40 standard errors off
            raise AssertionError(f"limit kernel normals have mean {mean}, sd {sd}")
        return lim

    return ctx.memo("limit", make)


def bench_normal(ctx: Context) -> list[Row]:
    lim = limit(ctx)
    gen = np.random.default_rng(SEED)
    buf = np.empty(lim.count)
    numba.set_num_threads(ctx.threads)
    t = best_of_each(
        {"ours": lim.serial, "numpy": lambda: gen.standard_normal(out=buf),
         "parallel": lim.parallel},
        repeat=ctx.sizes.repeat,
    )  # fmt: skip
    ours, ref, par = (lim.count / t[k] for k in ("ours", "numpy", "parallel"))
    nominal = ctx.threads * ours
    ctx.notes.append(
        f"The limit: one thread draws {ours / 1e6:.0f} M normals/s from marginlab's generator "
        f"(numpy's `Generator.standard_normal`: {ref / 1e6:.0f} M/s). The same kernel on "
        f"{ctx.threads} threads reached {par / 1e6:.0f} M/s, {par / nominal:.2f} of perfect "
        "scaling: below 1, other load on the machine took CPU time from all-thread runs."
    )
    return [
        Row("normal.limit (1 thread)", ours / 1e6, "M normals/s", ref / 1e6,
            "numpy standard_normal", ours / ref),
        Row(f"normal.limit ({ctx.threads} threads)", par / 1e6, "M normals/s", nominal / 1e6,
            f"{ctx.threads} x 1 thread", par / nominal),
    ]  # fmt: skip


# --------------------------------------------------------------------------- 2. the models
def _caller(model: str, func, n_paths: int, n_steps: int, out: np.ndarray | None = None):
    m = MODELS[model]
    kw = {} if out is None else {"out": out}

    def call():
        return func(m, S0, n_steps=n_steps, dt=DT, n_paths=n_paths, seed=SEED, **kw)

    return call


def _compile(ctx: Context, model: str, func) -> None:
    numba.set_num_threads(ctx.threads)
    _caller(model, func, BLOCK_PATHS * ctx.threads, 4)()


def _paths_buffer(ctx: Context) -> np.ndarray:
    """One reused output buffer for the full-path runs, written once so its pages exist."""
    s = ctx.sizes
    return ctx.memo("paths_buffer", lambda: np.ones((s.n_paths, s.n_steps + 1, 1)))


def _model_rows(ctx: Context, model: str) -> list[Row]:
    # Full paths are timed into a reused buffer (``out=``), as the limit kernel writes its
    # normals into a reused array: both then measure generation, not the operating system's
    # page faults on fresh memory, which bench_page_faults reports on their own. The same call
    # with a fresh array is reported beside it.
    s = ctx.sizes
    lim = limit(ctx)
    buf = _paths_buffer(ctx)
    rows, vs_parallel = [], []
    cases = (
        ("paths", simulate_paths, buf, TARGETS[model]),
        ("terminal", simulate_terminal, None, TARGETS[model]),
        ("paths, fresh array", simulate_paths, None, None),
    )
    for kind, func, out, target in cases:
        t = best_of_each(
            {"model": _caller(model, func, s.n_paths, s.n_steps, out),
             "limit": lim.serial, "parallel": lim.parallel},
            repeat=s.repeat, setup=lambda f=func: _compile(ctx, model, f),
        )  # fmt: skip
        rate = s.n_paths * s.n_steps / t["model"]
        nominal = ctx.threads * lim.count / t["limit"]
        rows.append(Row(f"{model}.{kind}", rate / 1e6, "M steps/s", nominal / 1e6,
                        f"{ctx.threads} x normal", rate / nominal, target))  # fmt: skip
        vs_parallel.append(f"{kind} {rate * t['parallel'] / lim.count:.2f}")
    ctx.notes.append(
        f"{model}: against the {ctx.threads}-thread limit timed beside it (instead of "
        f"{ctx.threads} x the 1-thread limit) the ratios are " + ", ".join(vs_parallel) + "."
    )
    return rows


_TOUCH_PAGE = 512  # float64s per 4 KiB page


@parallel_kernel
def _touch_pages(a, n_chunks):
    # One write per 4 KiB page, chunks spread over numba's threads as blocks are.
    n = a.shape[0]
    size = -(-n // n_chunks)
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size), _TOUCH_PAGE):
            a[i] = 1.0


def bench_page_faults(ctx: Context) -> list[Row]:
    """First writes to a fresh array of the full-path output's size, against the same writes
    to a reused array: the cost of the page faults alone, on 1 thread and on all threads."""
    s = ctx.sizes
    n = s.n_paths * (s.n_steps + 1)
    lim = limit(ctx)
    reused = np.ones(n)
    rows = []
    for threads in sorted({1, ctx.threads}):
        numba.set_num_threads(threads)
        _touch_pages(reused, 2 * threads)
        t = best_of_each(
            {"fresh": lambda th=threads: _touch_pages(np.empty(n), 2 * th),
             "reused": lambda th=threads: _touch_pages(reused, 2 * th),
             "limit": lim.serial},
            repeat=s.repeat,
        )  # fmt: skip
        fault_ns = (t["fresh"] - t["reused"]) / n * 1e9 * threads  # per float64 per thread
        normal_ns = t["limit"] / lim.count * 1e9
        rows.append(Row(f"page faults ({threads} thread{'s' if threads > 1 else ''})",
                        fault_ns, "ns per float64 per thread", normal_ns,
                        "1 normal (1 thread)", fault_ns / normal_ns))  # fmt: skip
    numba.set_num_threads(ctx.threads)
    ctx.notes.append(
        "Page faults: the first write to each page of a fresh array makes the operating system "
        "map (and zero) it. The rows above are the time this adds per float64 written, per "
        "thread, measured by touching one float64 per 4 KiB page of a fresh and of a reused "
        "array of the full-path output's size; a full-path run writes one float64 per "
        "path-step. On virtual machines this can exceed the cost of the normal variate, and "
        "concurrent faults from several threads can be slower still (huge pages zeroed under "
        "a lock), which is why `simulate_paths(..., out=buf)` exists and why the full-path "
        "targets are timed with a reused buffer."
    )
    return rows


def bench_gbm(ctx):
    return _model_rows(ctx, "gbm")


def bench_merton(ctx):
    return _model_rows(ctx, "merton")


def bench_garch(ctx):
    return _model_rows(ctx, "garch")


def bench_gjr_t(ctx):
    return _model_rows(ctx, "gjr_t")


# --------------------------------------------------------------------------- 3. the peers
def numpy_gbm(gen, s0, mu, sigma, dt, n_paths, n_steps, z=None, out=None):
    """Plain vectorised numpy GBM with marginlab's output: (n_paths, n_steps + 1, 1) prices.

    ``z`` (n_paths, n_steps) and ``out`` are optional reused work arrays (numpy's ``out=``
    arguments), which spare it the page faults of fresh arrays."""
    if z is None:
        z = np.empty((n_paths, n_steps))
    if out is None:
        out = np.empty((n_paths, n_steps + 1, 1))
    gen.standard_normal(out=z)
    z *= sigma * math.sqrt(dt)
    z += (mu - 0.5 * sigma * sigma) * dt
    out[:, 0, 0] = 0.0
    np.cumsum(z, axis=1, out=out[:, 1:, 0])
    np.exp(out, out=out)
    out *= s0
    return out


def _ours_gbm_paths(ctx: Context, out: np.ndarray | None = None):
    s = ctx.sizes
    return _caller("gbm", simulate_paths, s.n_paths, s.n_steps, out)


def bench_numpy(ctx: Context) -> list[Row]:
    """Against plain numpy, both with reused buffers (the target row: numpy at its best)
    and both allocating fresh arrays."""
    s = ctx.sizes
    gen = np.random.default_rng(SEED)
    gbm = MODELS["gbm"]
    mu, sigma = float(gbm.mu[0]), float(gbm.sigma[0])
    z = np.ones((s.numpy_paths, s.n_steps))
    out = np.ones((s.numpy_paths, s.n_steps + 1, 1))
    t = best_of_each(
        {"ours": _ours_gbm_paths(ctx, _paths_buffer(ctx)),
         "numpy": lambda: numpy_gbm(gen, S0, mu, sigma, DT, s.numpy_paths, s.n_steps, z, out),
         "ours fresh": _ours_gbm_paths(ctx),
         "numpy fresh": lambda: numpy_gbm(gen, S0, mu, sigma, DT, s.numpy_paths, s.n_steps)},
        repeat=s.repeat, setup=lambda: _compile(ctx, "gbm", simulate_paths),
    )  # fmt: skip
    rows = []
    for suffix, target in (("", PEER_TARGET), (" fresh", None)):
        ours = s.n_paths * s.n_steps / t["ours" + suffix]
        ref = s.numpy_paths * s.n_steps / t["numpy" + suffix]
        label = "reused buffers" if not suffix else "fresh arrays"
        rows.append(Row(f"gbm.paths / numpy, {label}", ours / 1e6, "M steps/s", ref / 1e6,
                        f"numpy (1 thread), {label}", ours / ref, target))  # fmt: skip
    return rows


def _quantlib(n_paths: int, n_steps: int):
    """Two loops over QuantLib's GBM path generator: copying each path into a float64
    array, and reading only its last value."""
    import QuantLib as ql

    gbm = MODELS["gbm"]
    process = ql.GeometricBrownianMotionProcess(S0, float(gbm.mu[0]), float(gbm.sigma[0]))
    uniform = ql.UniformRandomSequenceGenerator(n_steps, ql.UniformRandomGenerator(SEED))
    gen = ql.GaussianPathGenerator(process, n_steps * DT, n_steps,
                                   ql.GaussianRandomSequenceGenerator(uniform), False)
    out = np.empty((n_paths, n_steps + 1, 1))

    def copied():
        for i in range(n_paths):
            out[i, :, 0] = list(gen.next().value())

    def bare():
        for i in range(n_paths):
            out[i, -1, 0] = gen.next().value().back()

    return copied, bare


def bench_quantlib(ctx: Context) -> list[Row]:
    s = ctx.sizes
    copied, bare = _quantlib(s.ql_paths, s.n_steps)
    t = best_of_each({"ours": _ours_gbm_paths(ctx, _paths_buffer(ctx)), "copied": copied,
                      "bare": bare},
                     repeat=s.repeat, setup=lambda: _compile(ctx, "gbm", simulate_paths))
    ours = s.n_paths * s.n_steps / t["ours"]
    ref_copied = s.ql_paths * s.n_steps / t["copied"]
    ref_bare = s.ql_paths * s.n_steps / t["bare"]
    return [
        Row("gbm.paths / QuantLib", ours / 1e6, "M steps/s", ref_copied / 1e6,
            "QuantLib paths into array", ours / ref_copied, PEER_TARGET),
        Row("gbm.paths / QuantLib generator only", ours / 1e6, "M steps/s", ref_bare / 1e6,
            "QuantLib, values not read", ours / ref_bare),
    ]  # fmt: skip


def bench_arch(ctx: Context) -> list[Row]:
    import warnings

    from arch import arch_model

    s = ctx.sizes
    m = MODELS["garch"]
    # arch works in percent returns: omega x 1e4, mu x 100; alpha, beta unchanged.
    params = [100.0 * m.mu[0], 1e4 * m.omega[0], m.alpha[0], m.beta[0]]
    y = np.random.default_rng(SEED).standard_normal(500) * 100.0 * math.sqrt(m.sigma2_0[0])
    horizon = s.n_steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1, dist="normal").fix(params)

        def run():
            return res.forecast(horizon=horizon, method="simulation",
                                simulations=s.arch_sims, reindex=False)  # fmt: skip

        shape = run().simulations.values.shape
        t = best_of_each(
            {"ours": _caller("garch", simulate_paths, s.n_paths, s.n_steps), "arch": run},
            repeat=s.slow_repeat, setup=lambda: _compile(ctx, "garch", simulate_paths),
            inner={"ours": 3},
        )  # fmt: skip
    if shape != (1, s.arch_sims, horizon):
        raise AssertionError(f"arch forecast simulations have shape {shape}")
    ours = s.n_paths * s.n_steps / t["ours"]
    ref = s.arch_sims * horizon / t["arch"]
    return [Row("garch.paths / arch", ours / 1e6, "M steps/s", ref / 1e6,
                "arch forecast(simulation)", ours / ref, PEER_TARGET)]  # fmt: skip


# --------------------------------------------------------------------------- 4. memory
_MEM_SNIPPET = """\
import numpy as np
from marginlab.models import GBM
from marginlab.simulate import {func}
out = {func}(GBM(mu=0.0, sigma=0.6), 50000.0, n_steps={n_steps}, dt=1 / 365,
             n_paths={n_paths}, seed=1)
arrays = out if isinstance(out, tuple) else (out,)
print(sum(a.nbytes for a in arrays), all(bool(np.isfinite(a).all()) for a in arrays))
"""


def bench_memory(ctx: Context) -> list[Row]:
    s = ctx.sizes
    full = s.mem_paths * (s.mem_steps + 1) * 1 * 8  # (n_paths, n_steps + 1, 1) float64
    rows = []
    for func in ("simulate_terminal", "simulate_extremes"):
        # A small run first: fills numba's cache, so the measured process only loads it
        # (compiling would add LLVM's memory), and gives the fixed overhead.
        small, _ = peak_rss(_MEM_SNIPPET.format(func=func, n_steps=s.mem_steps, n_paths=256))
        peak, out = peak_rss(_MEM_SNIPPET.format(func=func, n_steps=s.mem_steps,
                                                 n_paths=s.mem_paths))  # fmt: skip
        nbytes, finite = out.split()
        if finite != "True":
            raise AssertionError(f"{func} produced non-finite prices")
        name = f"memory.{func.split('_')[1]} ({_count(s.mem_paths)} paths)"
        rows.append(Row(name, peak / MiB, "MiB peak RSS", full / MiB, "full paths array",
                        peak / full, MEMORY_TARGET))  # fmt: skip
        ctx.notes.append(
            f"`{func}`, {_count(s.mem_paths)} paths x {s.mem_steps} steps x 1 asset: peak RSS "
            f"{peak / MiB:.0f} MiB, of which the returned arrays are {int(nbytes) / MiB:.0f} MiB "
            f"and a fresh process importing marginlab and running 256 paths takes "
            f"{small / MiB:.0f} MiB. The full paths would need {full / MiB:.0f} MiB at "
            f"{s.mem_steps} steps, {s.mem_paths * 257 * 8 / MiB:,.0f} MiB at 256 steps."
        )
    return rows


# --------------------------------------------------------------------------- 5. compile
_COMPILE_SNIPPET = """\
import json, time
t0 = time.perf_counter()
from marginlab.models import GARCH, GBM
from marginlab.simulate import simulate_terminal
t1 = time.perf_counter()
simulate_terminal(GBM(mu=0.0, sigma=0.6), 50000.0, n_steps=4, dt=1 / 365, n_paths=8, seed=1)
t2 = time.perf_counter()
out = {{"import": t1 - t0, "gbm": t2 - t1}}
if {garch}:
    simulate_terminal(GARCH(omega=2e-5, alpha=0.08, beta=0.9), 50000.0, n_steps=4,
                      dt=1 / 365, n_paths=8, seed=1)
    out["garch"] = time.perf_counter() - t2
out["total"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def bench_compile(ctx: Context) -> list[Row]:
    return compile_rows(
        _COMPILE_SNIPPET.format(garch=ctx.sizes.compile_garch),
        {"import": "import marginlab", "gbm": "first GBM call",
         "garch": "first GARCH call", "total": "import + first calls"},
    )  # fmt: skip


BENCHMARKS = [
    Benchmark("normal", bench_normal, "normals/s of marginlab's generator, one thread"),
    Benchmark("page_faults", bench_page_faults, "first writes to fresh memory vs reused"),
    Benchmark("gbm", bench_gbm, "GBM path-steps/s vs threads x normal rate"),
    Benchmark("merton", bench_merton, "Merton (lam=10/yr) path-steps/s vs threads x normal"),
    Benchmark("garch", bench_garch, "GARCH(1,1) normal path-steps/s vs threads x normal"),
    Benchmark("gjr_t", bench_gjr_t, "GJR-GARCH Student-t path-steps/s vs threads x normal"),
    Benchmark("numpy", bench_numpy, "GBM full paths vs plain vectorised numpy"),
    Benchmark("quantlib", bench_quantlib, "GBM full paths vs QuantLib's path generator"),
    Benchmark("arch", bench_arch, "GARCH full paths vs arch forecast(method='simulation')"),
    Benchmark("memory", bench_memory, "peak RSS of terminal / extremes for 1e7 paths"),
    Benchmark("compile", bench_compile, "first call, empty vs filled numba cache"),
]
