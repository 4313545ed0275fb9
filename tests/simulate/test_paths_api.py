"""Public contract of the path generators in :mod:`marginlab.simulate.paths`.

Oracles, per test: the documented shape convention; self-consistency laws (reductions ==
full paths, slice == rows of the full run, 1 thread == 2 threads, in-process == fresh
processes, int seed == SeedSequence of the same int); a closed form (exact GBM recomputed
with numpy from the same normals); scipy's normal distribution for the raw normals.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from scipy import stats

from marginlab.models import GARCH, GBM, Bootstrap, MertonJump
from marginlab.simulate import (
    BLOCK_PATHS,
    simulate_extremes,
    simulate_paths,
    simulate_terminal,
    standard_normal,
)
from marginlab.simulate import _path_kernels as K

B = BLOCK_PATHS
DT = 1.0 / 365.0
CORR3 = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
S0 = {1: np.array([60_000.0]), 3: np.array([60_000.0, 3_000.0, 150.0])}
KINDS = ["gbm", "merton", "garch_normal", "garch_t", "gjr", "fhs"]
N_ASSETS = [1, 3]


@functools.cache
def make_model(kind: str, n_assets: int):
    """One model of each kind, with per-asset parameters when ``n_assets == 3``."""

    def vec(*values):
        return values[0] if n_assets == 1 else list(values)

    corr = None if n_assets == 1 else CORR3
    if kind == "gbm":
        return GBM(mu=vec(0.05, 0.1, -0.2), sigma=vec(0.6, 0.8, 1.1), corr=corr)
    if kind == "merton":
        return MertonJump(mu=vec(0.05, 0.0, -0.1), sigma=vec(0.5, 0.65, 0.9),
                          lam=vec(40.0, 60.0, 25.0), jump_mean=-0.03, jump_std=0.08, corr=corr)
    omega = vec(2e-5, 4e-5, 8e-5)
    if kind == "garch_normal":
        return GARCH(omega=omega, alpha=0.08, beta=0.88, mu=vec(1e-4, 0.0, -2e-4), corr=corr)
    if kind == "garch_t":
        return GARCH(omega=omega, alpha=0.08, beta=0.88, dist="t", nu=4.5, corr=corr)
    if kind == "gjr":
        return GARCH(omega=omega, alpha=0.04, beta=0.88, gamma=vec(0.1, 0.08, 0.12),
                     sigma2_0=vec(1e-3, 2e-3, 4e-3), corr=corr)
    if kind == "fhs":
        resid = np.random.default_rng(11).standard_t(5.0, size=(500, n_assets))
        return GARCH(omega=omega, alpha=0.06, beta=0.9, gamma=0.04, dist=Bootstrap(resid))
    raise AssertionError(kind)


MODEL_CASES = [pytest.param(k, n, id=f"{k}-{n}") for k in KINDS for n in N_ASSETS]
MODEL_ANTI_CASES = [
    pytest.param(k, n, anti, id=f"{k}-{n}-{'anti' if anti else 'plain'}")
    for k in KINDS
    for n in N_ASSETS
    for anti in (False, True)
    if not (k == "fhs" and anti)  # antithetic is refused for bootstrap innovations
]


def run(fn, kind, n_assets, **kw):
    args = {"n_steps": 5, "dt": DT, "seed": 123}
    args.update(kw)
    return fn(make_model(kind, n_assets), S0[n_assets], **args)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("kind, n_assets", MODEL_CASES)
def test_shapes_dtype_and_start(kind, n_assets):
    """Oracle: the documented shape convention; ``paths[:, 0, :] == s0`` exactly."""
    n_paths, n_steps = B + 9, 4
    paths = run(simulate_paths, kind, n_assets, n_paths=n_paths, n_steps=n_steps)
    assert paths.shape == (n_paths, n_steps + 1, n_assets)
    assert paths.dtype == np.float64
    assert np.array_equal(paths[:, 0, :], np.broadcast_to(S0[n_assets], (n_paths, n_assets)))
    assert np.all(np.isfinite(paths)) and np.all(paths > 0.0)
    # the paths move: no step is a copy of the start
    assert np.all(paths[:, 1:, :] != paths[:, :1, :])

    term = run(simulate_terminal, kind, n_assets, n_paths=n_paths, n_steps=n_steps)
    ext = run(simulate_extremes, kind, n_assets, n_paths=n_paths, n_steps=n_steps)
    for arr in (term, ext.terminal, ext.minimum, ext.maximum):
        assert arr.shape == (n_paths, n_assets)
        assert arr.dtype == np.float64


# --------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("kind, n_assets, antithetic", MODEL_ANTI_CASES)
@pytest.mark.parametrize("first_path", [0, B - 7])
def test_reductions_equal_full_paths(kind, n_assets, antithetic, first_path):
    """Oracle (self-consistency): terminal and running extremes equal the full paths' last
    row and min/max over t = 0..n_steps, bit for bit."""
    kw = {"n_paths": B + 45, "n_steps": 6, "antithetic": antithetic, "first_path": first_path}
    paths = run(simulate_paths, kind, n_assets, **kw)
    term = run(simulate_terminal, kind, n_assets, **kw)
    ext = run(simulate_extremes, kind, n_assets, **kw)
    assert np.array_equal(term, paths[:, -1, :])
    assert np.array_equal(ext.terminal, paths[:, -1, :])
    assert np.array_equal(ext.minimum, paths.min(axis=1))
    assert np.array_equal(ext.maximum, paths.max(axis=1))


@pytest.mark.parametrize("kind", ["gbm", "merton"])
@pytest.mark.parametrize("n_steps", [1, 1500, 5000])
def test_reductions_equal_full_paths_long_rows(kind, n_steps):
    """Oracle (self-consistency): as above with rows long enough that the one-asset kernel's
    exp pass covers a few rows at a time (1500 steps: 3 rows; 5000: 1) or a whole block
    (1 step), with a block boundary and a first path inside a block."""
    kw = {"n_paths": B + 21, "n_steps": n_steps, "first_path": 5}
    paths = run(simulate_paths, kind, 1, **kw)
    ext = run(simulate_extremes, kind, 1, **kw)
    assert np.array_equal(ext.terminal, paths[:, -1, :])
    assert np.array_equal(ext.minimum, paths.min(axis=1))
    assert np.array_equal(ext.maximum, paths.max(axis=1))


@pytest.mark.parametrize("lam", [0.0, 40.0, 2000.0])
def test_one_asset_fast_kernel_equals_general_one_asset_kernel(lam):
    """Oracle (self-consistency): the one-asset kernel without antithetic partners
    (``_plain_block_1``, what simulate_* run for GBM and one-asset Merton) gives the bits of
    the general one-asset kernel (``_jump_diffusion_block_1``) called with ``pair=1``: the same
    draws in the same order and the same arithmetic, with and without jumps, in every mode."""
    model = MertonJump(mu=0.05, sigma=0.7, lam=lam, jump_mean=-0.03, jump_std=0.08)
    first, n, n_steps, seed = 7, 2 * B + 5, 9, 77
    kw = {"n_steps": n_steps, "dt": DT, "n_paths": n, "seed": seed, "first_path": first}
    fast = simulate_paths(model, 60_000.0, **kw)
    fast_ext = simulate_extremes(model, 60_000.0, **kw)
    spec = model.to_spec()
    kappa = math.expm1(spec.jump_mean[0] + 0.5 * spec.jump_std[0] ** 2)
    drift = (spec.mu[0] - 0.5 * spec.sigma[0] ** 2 - spec.lam[0] * kappa) * DT
    vol = spec.sigma[0] * math.sqrt(DT)
    key = np.random.SeedSequence(seed).generate_state(4, np.uint64)
    paths = np.empty((n, n_steps + 1, 1))
    term, lo, hi = np.empty((n, 1)), np.empty((n, 1)), np.empty((n, 1))
    e3, e2 = np.empty((0, 0, 0)), np.empty((0, 0))
    for b in range(first // B, (first + n - 1) // B + 1):
        common = (b, key, first, n, n_steps, 1)
        params = (drift, vol, spec.chol[0, 0], spec.lam[0] * DT, spec.jump_mean[0],
                  spec.jump_std[0], 60_000.0)
        K._jump_diffusion_block_1(*common, K.MODE_PATHS, *params, paths, e2, e2, e2)
        K._jump_diffusion_block_1(*common, K.MODE_EXTREMES, *params, e3, term, lo, hi)
    assert np.array_equal(paths, fast)
    assert np.array_equal(term, fast_ext.terminal)
    assert np.array_equal(lo, fast_ext.minimum)
    assert np.array_equal(hi, fast_ext.maximum)


# --------------------------------------------------------------------------- out= buffer
@pytest.mark.parametrize("kind, n_assets", MODEL_CASES)
def test_out_buffer_is_filled_and_returned(kind, n_assets):
    """Oracle (self-consistency): ``out=`` gives the same bits as a fresh array, returns the
    buffer itself, and a reused (dirty) buffer is fully overwritten."""
    kw = {"n_paths": B + 13, "n_steps": 5, "first_path": 3}
    fresh = run(simulate_paths, kind, n_assets, **kw)
    buf = np.full(fresh.shape, np.nan)
    for _ in range(2):  # the second call writes over the first call's prices
        got = run(simulate_paths, kind, n_assets, out=buf, **kw)
        assert got is buf
        assert np.array_equal(buf, fresh)


BAD_OUT = [
    ([[1.0]], TypeError, r"out must be a numpy.ndarray.*list"),
    (np.empty((10, 4, 3), np.float32), TypeError, r"out must have dtype float64.*float32"),
    (np.empty((10, 3, 3)), ValueError, r"out must have shape.*\(10, 4, 3\).*\(10, 3, 3\)"),
    (np.empty((10, 4, 6))[:, :, ::2], ValueError, r"out must be C-contiguous"),
    (np.empty((10, 4, 3)).T.copy().T, ValueError, r"out must be C-contiguous"),
]


@pytest.mark.parametrize("out, exc, pattern", [pytest.param(*c, id=str(i)) for i, c in
                                               enumerate(BAD_OUT)])
def test_bad_out_buffer_raises(out, exc, pattern):
    """Oracle (API contract): a wrong buffer is refused naming ``out`` and what is wrong."""
    with pytest.raises(exc, match=pattern):
        run(simulate_paths, "gbm", 3, n_paths=10, n_steps=3, out=out)


def test_read_only_out_buffer_raises():
    """Oracle (API contract): a read-only buffer is refused, and left untouched."""
    buf = np.zeros((10, 4, 3))
    buf.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        run(simulate_paths, "gbm", 3, n_paths=10, n_steps=3, out=buf)
    assert not buf.any()


# --------------------------------------------------------------------------- slicing law
N_FULL = 3 * B + 11
RANGES = [
    (0, 1), (1, 2), (3, 40), (40, 77),            # inside block 0, odd and even ends
    (B - 1, B + 1), (B - 5, 2 * B + 3),           # across one boundary, across two
    (B, 2 * B), (2 * B, 3 * B), (3 * B + 1, N_FULL), (101, N_FULL),
]  # fmt: skip


@pytest.mark.parametrize("kind, n_assets, antithetic", MODEL_ANTI_CASES)
def test_slice_equals_rows_of_full_run(kind, n_assets, antithetic):
    """Oracle (self-consistency): ``first_path=a, n_paths=b - a`` == rows a:b of the run
    from 0, bit for bit, inside a block, across block boundaries, odd a/b with antithetic."""
    kw = {"n_steps": 4, "antithetic": antithetic}
    full = run(simulate_paths, kind, n_assets, n_paths=N_FULL, first_path=0, **kw)
    full_term = run(simulate_terminal, kind, n_assets, n_paths=N_FULL, **kw)
    for a, b in RANGES:
        part = run(simulate_paths, kind, n_assets, n_paths=b - a, first_path=a, **kw)
        assert np.array_equal(part, full[a:b]), (a, b)
    a, b = B - 5, 2 * B + 3
    term = run(simulate_terminal, kind, n_assets, n_paths=b - a, first_path=a, **kw)
    assert np.array_equal(term, full_term[a:b])
    ext = run(simulate_extremes, kind, n_assets, n_paths=b - a, first_path=a, **kw)
    assert np.array_equal(ext.minimum, full[a:b].min(axis=1))


@pytest.mark.parametrize("antithetic", [False, True])
def test_standard_normal_slice_equals_rows(antithetic):
    """Oracle (self-consistency): slices of ``standard_normal`` are rows of the full draw."""
    full = standard_normal(N_FULL, 3, 2, seed=5, antithetic=antithetic)
    for a, b in RANGES:
        part = standard_normal(b - a, 3, 2, seed=5, antithetic=antithetic, first_path=a)
        assert np.array_equal(part, full[a:b]), (a, b)


# --------------------------------------------------------------------------- threads
def _all_outputs(kind, n_assets, antithetic):
    kw = {"n_paths": 4 * B + 3, "n_steps": 4, "antithetic": antithetic}
    paths = run(simulate_paths, kind, n_assets, **kw)
    term = run(simulate_terminal, kind, n_assets, **kw)
    ext = run(simulate_extremes, kind, n_assets, **kw)
    return [paths, term, *ext]


def _max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.skipif(_max_threads() < 2, reason="numba was started with a single thread")
@pytest.mark.parametrize("kind, n_assets, antithetic", MODEL_ANTI_CASES)
def test_one_thread_equals_two_threads(kind, n_assets, antithetic):
    """Oracle (self-consistency): set_num_threads(1) == set_num_threads(2), bit for bit,
    over 5 random-stream blocks (so the two threads split the work)."""
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _all_outputs(kind, n_assets, antithetic)
        numba.set_num_threads(2)
        two = _all_outputs(kind, n_assets, antithetic)
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, two, strict=True):
        assert np.array_equal(x, y)


def digest() -> str:
    """sha256 of every model's paths and extremes (also run by the subprocesses below)."""
    h = hashlib.sha256()
    for kind in KINDS:
        for n_assets in N_ASSETS:
            for anti in (False, True):
                if kind == "fhs" and anti:
                    continue
                for arr in _all_outputs(kind, n_assets, anti):
                    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


_CHILD = """
import sys
sys.path.insert(0, {here!r})
import numba
import test_paths_api as t
print(numba.get_num_threads(), t.digest())
"""


def test_thread_count_env_in_subprocesses(tmp_path):
    """Oracle (self-consistency): fresh processes with NUMBA_NUM_THREADS=1 and =2 produce
    the same output bytes as each other and as this process."""
    code = _CHILD.format(here=str(Path(__file__).resolve().parent))
    results = {}
    for n in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        threads, hexdigest = proc.stdout.split()
        assert int(threads) == n  # the environment variable took effect
        results[n] = hexdigest
    assert results[1] == results[2]
    assert results[1] == digest()


# --------------------------------------------------------------------------- exact GBM
@pytest.mark.parametrize("n_assets", N_ASSETS)
@pytest.mark.parametrize("antithetic", [False, True])
def test_gbm_equals_numpy_formula(n_assets, antithetic):
    """Oracle (closed form): exact GBM s0 exp(cumsum((mu - sigma^2/2) dt + sigma sqrt(dt)
    Z C^T)) with Z from ``standard_normal`` of the same seed and C = cholesky(corr)."""
    model = make_model("gbm", n_assets)
    n_paths, n_steps, seed = B + 45, 7, 2024
    paths = simulate_paths(model, S0[n_assets], n_steps=n_steps, dt=DT, n_paths=n_paths,
                           seed=seed, antithetic=antithetic)
    z = standard_normal(n_paths, n_steps, n_assets, seed=seed, antithetic=antithetic)
    corr = np.eye(1) if n_assets == 1 else CORR3
    chol = np.linalg.cholesky(corr)
    mu, sigma = np.asarray(model.mu), np.asarray(model.sigma)
    inc = (mu - 0.5 * sigma**2) * DT + sigma * math.sqrt(DT) * (z @ chol.T)
    logp = np.concatenate([np.zeros((n_paths, 1, n_assets)), np.cumsum(inc, axis=1)], axis=1)
    expected = S0[n_assets] * np.exp(logp)
    np.testing.assert_allclose(paths, expected, rtol=1e-12, atol=0.0)


def test_standard_normal_antithetic_partners_are_negations():
    """Oracle (definition of antithetic variates): rows 2k+1 are exactly -rows 2k."""
    z = standard_normal(2 * B + 7, 5, 3, seed=9, antithetic=True)
    m = z.shape[0] // 2
    assert np.array_equal(z[1::2][:m], -z[0::2][:m])
    assert np.all(z != 0.0)


def test_standard_normal_is_standard_normal():
    """Oracle (peer library): 200k ziggurat draws pass scipy's KS test against N(0, 1);
    mean and variance within 5 standard errors of 0 and 1."""
    z = standard_normal(1000, 50, 4, seed=77).ravel()
    n = z.size
    assert abs(z.mean()) < 5.0 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5.0 * math.sqrt(2.0 / n)
    assert stats.kstest(z, stats.norm.cdf).pvalue > 1e-3


# --------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("kind", ["gbm", "garch_t"])
def test_int_seed_equals_seedsequence(kind):
    """Oracle (self-consistency): seed=k, np.int64(k) and SeedSequence(k) are one stream;
    another seed gives different numbers everywhere."""
    kw = {"n_paths": 50, "n_steps": 3}
    a = run(simulate_paths, kind, 3, seed=42, **kw)
    assert np.array_equal(a, run(simulate_paths, kind, 3, seed=np.random.SeedSequence(42), **kw))
    assert np.array_equal(a, run(simulate_paths, kind, 3, seed=np.int64(42), **kw))
    other = run(simulate_paths, kind, 3, seed=43, **kw)
    assert np.all(other[:, 1:] != a[:, 1:])
    assert np.array_equal(
        standard_normal(20, 3, 2, seed=42),
        standard_normal(20, 3, 2, seed=np.random.SeedSequence(42)),
    )


def test_seed_none_draws_fresh_entropy():
    """Oracle (definition): seed=None runs and two such runs differ (fresh OS entropy)."""
    a = run(simulate_paths, "gbm", 3, n_paths=20, seed=None)
    b = run(simulate_paths, "gbm", 3, n_paths=20, seed=None)
    assert a.shape == (20, 6, 3) and np.all(np.isfinite(a))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("fn", [simulate_paths, simulate_terminal, simulate_extremes])
@pytest.mark.parametrize(
    "seed, exc",
    [(-1, ValueError), (1.5, TypeError), ("7", TypeError), (True, TypeError),
     (np.float64(3.0), TypeError)],
)  # fmt: skip
def test_bad_seed_raises(fn, seed, exc):
    """Oracle (API contract): negative or non-integer seeds raise, naming ``seed``."""
    with pytest.raises(exc, match="seed"):
        run(fn, "gbm", 3, n_paths=4, seed=seed)
    with pytest.raises(exc, match="seed"):
        standard_normal(4, 2, 1, seed=seed)


# --------------------------------------------------------------------------- bad arguments
NAN = float("nan")
BAD_ARGS = [
    ({"n_paths": 0}, ValueError, r"n_paths.*>= 1.*got 0"),
    ({"n_paths": -3}, ValueError, r"n_paths.*>= 1.*-3"),
    ({"n_steps": 0}, ValueError, r"n_steps.*>= 1.*got 0"),
    ({"n_paths": 10.0}, TypeError, r"n_paths.*int.*10\.0"),
    ({"n_paths": "10"}, TypeError, r"n_paths"),
    ({"n_paths": True}, TypeError, r"n_paths"),
    ({"n_steps": 2.5}, TypeError, r"n_steps.*2\.5"),
    ({"first_path": -1}, ValueError, r"first_path.*>= 0.*-1"),
    ({"dt": 0.0}, ValueError, r"dt.*> 0.*0\.0"),
    ({"dt": -DT}, ValueError, r"dt.*> 0"),
    ({"dt": NAN}, ValueError, r"dt.*nan"),
    ({"dt": float("inf")}, ValueError, r"dt.*inf"),
    ({"dt": "1/365"}, TypeError, r"dt"),
    ({"s0": [60_000.0, 3_000.0]}, ValueError, r"s0.*\(3,\).*\(2,\)"),
    ({"s0": 60_000.0}, ValueError, r"s0.*\(3,\)"),
    ({"s0": [60_000.0, 0.0, 150.0]}, ValueError, r"s0.*> 0"),
    ({"s0": [60_000.0, -3_000.0, 150.0]}, ValueError, r"s0.*> 0"),
    ({"s0": [60_000.0, NAN, 150.0]}, ValueError, r"s0.*nan"),
    ({"antithetic": "yes"}, TypeError, r"antithetic"),
    ({"model": "garch_normal", "dt": 1.0 / 252.0}, ValueError, r"dt.*step"),
    ({"model": "fhs", "antithetic": True}, ValueError, r"antithetic"),
    ({"model": object()}, TypeError, r"model.*object"),
    ({"model": {"mu": 0.0, "sigma": 0.5}}, TypeError, r"model.*dict"),
]


@pytest.mark.parametrize("fn", [simulate_paths, simulate_terminal, simulate_extremes])
@pytest.mark.parametrize(
    "override, exc, pattern", [pytest.param(*case, id=str(i)) for i, case in enumerate(BAD_ARGS)]
)
def test_bad_arguments_raise_naming_the_argument(fn, override, exc, pattern):
    """Oracle (API contract): each bad argument raises ValueError/TypeError whose message
    names the argument (and, where it is a number, its value and the allowed range)."""
    override = dict(override)
    model = override.pop("model", "gbm")
    if isinstance(model, str):
        model = make_model(model, 3)
    kw = {"s0": S0[3], "n_steps": 3, "dt": DT, "n_paths": 10, "seed": 1}
    kw.update(override)
    s0 = kw.pop("s0")
    with pytest.raises(exc, match=pattern):
        fn(model, s0, **kw)


@pytest.mark.parametrize(
    "args, pattern",
    [((0, 2, 1), "n_paths"), ((2, 0, 1), "n_steps"), ((2, 2, 0), "n_assets")],
)
def test_standard_normal_bad_sizes(args, pattern):
    """Oracle (API contract): sizes < 1 raise ValueError naming the size."""
    with pytest.raises(ValueError, match=pattern):
        standard_normal(*args, seed=1)


def test_non_finite_raw_spec_parameter_raises():
    """Oracle (API contract): a hand-built spec with a NaN parameter is refused by name."""
    spec = make_model("gbm", 1).to_spec()._replace(sigma=np.array([NAN]))
    with pytest.raises(ValueError, match="sigma"):
        simulate_paths(spec, 1.0, n_steps=2, dt=DT, n_paths=3, seed=1)
