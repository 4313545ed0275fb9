"""Public path generators: full price paths and memory-light reductions.

Shape convention (the one place it is written down): price paths are
``(n_paths, n_steps + 1, n_assets)`` float64 with ``paths[:, 0, :] == s0``; terminal prices
and running extremes are ``(n_paths, n_assets)``.

Reproducibility: the same ``seed`` gives bit-identical results whatever the number of numba
threads, and ``first_path=a, n_paths=b - a`` gives exactly rows ``a:b`` of the run with
``first_path=0`` (so blocks of paths can be generated on different processes or machines).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from . import _path_kernels as K
from .rng import seed_key
from .specs import DIST_BOOTSTRAP, GARCHSpec, JumpDiffusionSpec

__all__ = [
    "simulate_paths",
    "simulate_terminal",
    "simulate_extremes",
    "standard_normal",
    "Extremes",
]


class Extremes(NamedTuple):
    """Terminal price and running extremes per path, each ``(n_paths, n_assets)``.

    ``minimum`` and ``maximum`` are taken over ``t = 0..n_steps`` (the start included).
    """

    terminal: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray


def _spec_of(model: Any):
    spec = model.to_spec() if hasattr(model, "to_spec") else model
    if not isinstance(spec, (JumpDiffusionSpec, GARCHSpec)):
        raise TypeError(
            "model must be a marginlab.models market model (GBM, MertonJump, GARCH) or a "
            f"marginlab.simulate spec, got {type(model).__name__}"
        )
    for name, value in spec._asdict().items():
        if isinstance(value, np.ndarray) and not np.all(np.isfinite(value)):
            raise ValueError(f"model parameter {name} must be finite, got {value!r}")
    return spec


def _check_int(name: str, value: Any, lowest: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {lowest}, got {type(value).__name__} {value!r}")
    if value < lowest:
        raise ValueError(f"{name} must be an int >= {lowest}, got {value}")
    return int(value)


def _check_s0(s0: Any, n_assets: int) -> np.ndarray:
    arr = np.asarray(s0, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.shape != (n_assets,):
        raise ValueError(
            f"s0 must hold one price per asset, shape ({n_assets},), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0.0):
        raise ValueError(f"s0 must be finite and > 0, got {arr!r}")
    return _arr(arr)


def _prepare(model, s0, n_steps, dt, n_paths, seed, antithetic, first_path):
    spec = _spec_of(model)
    n_steps = _check_int("n_steps", n_steps, 1)
    n_paths = _check_int("n_paths", n_paths, 1)
    first_path = _check_int("first_path", first_path, 0)
    if isinstance(dt, (bool, np.bool_)) or not isinstance(dt, numbers.Real):
        raise TypeError(f"dt must be a float > 0 (years), got {type(dt).__name__} {dt!r}")
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0.0):
        raise ValueError(f"dt must be finite and > 0 (years), got {dt}")
    if not isinstance(antithetic, (bool, np.bool_)):
        raise TypeError(f"antithetic must be a bool, got {antithetic!r}")
    if isinstance(spec, GARCHSpec):
        if not math.isclose(dt, spec.step, rel_tol=1e-9, abs_tol=0.0):
            raise ValueError(
                f"dt={dt!r} must equal the GARCH model's step={spec.step!r}: GARCH parameters "
                "are per step, so the model fixes the time step"
            )
        if antithetic and spec.dist == DIST_BOOTSTRAP:
            raise ValueError(
                "antithetic=True is not available with bootstrapped innovations: mirroring "
                "resampled residuals would make their distribution symmetric"
            )
    s0 = _check_s0(s0, spec.n_assets)
    key = seed_key(seed)
    return spec, s0, n_steps, dt, n_paths, key, 2 if antithetic else 1, first_path


def _check_out(out: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A new array of ``shape``, or ``out`` once checked to be a writable C-contiguous
    float64 array of exactly that shape."""
    if out is None:
        return np.empty(shape)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != np.float64:
        raise TypeError(f"out must have dtype float64, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(
            f"out must have shape (n_paths, n_steps + 1, n_assets) = {shape}, got {out.shape}"
        )
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous, got a non-contiguous view")
    if not out.flags.writeable:
        raise ValueError("out must be writable, got a read-only array")
    return out


def _arr(x) -> np.ndarray:
    # A fresh writable C-contiguous float64 copy: read-only model arrays would otherwise
    # make numba compile a second specialisation of every kernel.
    return np.array(x, dtype=np.float64, order="C")


def _run(mode, spec, s0, n_steps, dt, n_paths, key, pair, first, paths, term, lo, hi):
    if isinstance(spec, JumpDiffusionSpec):
        mu, sigma, lam = spec.mu, spec.sigma, spec.lam
        kappa = np.expm1(_arr(spec.jump_mean) + 0.5 * _arr(spec.jump_std) ** 2)
        drift = (mu - 0.5 * sigma**2 - lam * kappa) * dt
        vol = sigma * math.sqrt(dt)
        lam_dt = lam * dt
        if np.any(lam_dt > 500.0):
            raise ValueError(
                f"lam * dt must be <= 500 expected jumps per step, got {lam_dt.max()}"
            )
        K.jump_diffusion_kernel(
            key, first, n_paths, n_steps, pair, mode,
            _arr(drift), _arr(vol), _arr(spec.chol), _arr(lam_dt),
            _arr(spec.jump_mean), _arr(spec.jump_std), s0, paths, term, lo, hi,
        )  # fmt: skip
    else:
        K.garch_kernel(
            key, first, n_paths, n_steps, pair, mode,
            *(_arr(x) for x in (
                spec.omega, spec.alpha, spec.beta, spec.gamma, spec.mu, spec.sigma2_0)),
            _arr(spec.chol), int(spec.dist), float(spec.nu), _arr(spec.residuals),
            s0, paths, term, lo, hi,
        )  # fmt: skip


_EMPTY3 = np.empty((0, 0, 0))
_EMPTY2 = np.empty((0, 0))

_COMMON_DOC = """
    Parameters
    ----------
    model : GBM, MertonJump, GARCH or a spec from :mod:`marginlab.simulate.specs`
        The market model (see :mod:`marginlab.models`).
    s0 : float or array_like, shape (n_assets,)
        Prices at ``t = 0``, > 0.
    n_steps : int
        Number of time steps, >= 1.
    dt : float
        Step length in years (1/365 is one day; crypto trades every day). For GARCH it must
        equal the model's ``step``.
    n_paths : int
        Number of paths, >= 1.
    seed : int, numpy.random.SeedSequence, numpy.random.Generator or None
        Seed of the run. The same seed gives bit-identical output on any thread count; a
        ``Generator`` is drawn from once (``SeedSequence(gen.integers(2**63, size=4))``, see
        :func:`~marginlab.simulate.rng.normalize_seed`), so the same generator state gives the
        same paths.
    antithetic : bool, default False
        Pair path ``2k + 1`` with path ``2k`` by negating its normal variates (jump counts,
        chi-square mixing variables are shared).
    first_path : int, default 0
        Index of the first path to generate: ``first_path=a, n_paths=b - a`` returns rows
        ``a:b`` of the run that starts at 0, bit for bit.
"""


def simulate_paths(
    model: Any,
    s0: Any,
    *,
    n_steps: int,
    dt: float,
    n_paths: int,
    seed: int | np.random.SeedSequence | None,
    antithetic: bool = False,
    first_path: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Simulate price paths.

    Returns
    -------
    numpy.ndarray
        float64 prices of shape ``(n_paths, n_steps + 1, n_assets)``, ``[:, 0, :] == s0``;
        ``out`` itself when given.

    Notes
    -----
    ``out`` receives the paths instead of a new array: its contents are overwritten, and the
    results are the same bits as without it.
    Repeated runs of the same size, such as a backtest's daily re-simulation or a batch of
    blocks, then reuse one buffer: a fresh array costs the operating system's page faults
    on first write, which on some virtual machines cost more than generating the paths
    (see ``BENCHMARKS.md``).

    Examples
    --------
    >>> from marginlab.models import GBM
    >>> from marginlab.simulate import simulate_paths
    >>> paths = simulate_paths(GBM(mu=0.0, sigma=0.6), 50_000.0, n_steps=2, dt=1 / 365,
    ...                        n_paths=4, seed=1)
    >>> paths.shape
    (4, 3, 1)
    """
    spec, s0, n_steps, dt, n_paths, key, pair, first = _prepare(
        model, s0, n_steps, dt, n_paths, seed, antithetic, first_path
    )
    paths = _check_out(out, (n_paths, n_steps + 1, spec.n_assets))
    _run(K.MODE_PATHS, spec, s0, n_steps, dt, n_paths, key, pair, first,
         paths, _EMPTY2, _EMPTY2, _EMPTY2)  # fmt: skip
    return paths


def simulate_terminal(
    model: Any,
    s0: Any,
    *,
    n_steps: int,
    dt: float,
    n_paths: int,
    seed: int | np.random.SeedSequence | None,
    antithetic: bool = False,
    first_path: int = 0,
) -> np.ndarray:
    """Terminal prices ``S_T`` only; memory O(n_paths x n_assets).

    Equal, bit for bit, to ``simulate_paths(...)[:, -1, :]`` with the same arguments.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_paths, n_assets)``.
    """
    spec, s0, n_steps, dt, n_paths, key, pair, first = _prepare(
        model, s0, n_steps, dt, n_paths, seed, antithetic, first_path
    )
    term = np.empty((n_paths, spec.n_assets))
    _run(K.MODE_TERMINAL, spec, s0, n_steps, dt, n_paths, key, pair, first,
         _EMPTY3, term, _EMPTY2, _EMPTY2)  # fmt: skip
    return term


def simulate_extremes(
    model: Any,
    s0: Any,
    *,
    n_steps: int,
    dt: float,
    n_paths: int,
    seed: int | np.random.SeedSequence | None,
    antithetic: bool = False,
    first_path: int = 0,
) -> Extremes:
    """Terminal price and running minimum / maximum per path; memory O(n_paths x n_assets).

    The extremes are over the monitoring dates ``t = 0, dt, ..., n_steps dt`` and equal,
    bit for bit, ``paths.min(axis=1)`` and ``paths.max(axis=1)`` of :func:`simulate_paths`.

    Returns
    -------
    Extremes
        ``(terminal, minimum, maximum)``, each float64 of shape ``(n_paths, n_assets)``.
    """
    spec, s0, n_steps, dt, n_paths, key, pair, first = _prepare(
        model, s0, n_steps, dt, n_paths, seed, antithetic, first_path
    )
    shape = (n_paths, spec.n_assets)
    term, lo, hi = np.empty(shape), np.empty(shape), np.empty(shape)
    _run(K.MODE_EXTREMES, spec, s0, n_steps, dt, n_paths, key, pair, first,
         _EMPTY3, term, lo, hi)  # fmt: skip
    return Extremes(term, lo, hi)


_OUT_DOC = """    out : numpy.ndarray, optional
        Buffer for the result, shape ``(n_paths, n_steps + 1, n_assets)``, float64,
        C-contiguous and writable (see Notes).
"""

for _f, _extra in ((simulate_paths, _OUT_DOC), (simulate_terminal, ""), (simulate_extremes, "")):
    _head, _sep, _tail = _f.__doc__.partition("\n\n")
    _f.__doc__ = _head + "\n" + _COMMON_DOC + _extra + "\n" + _tail


def standard_normal(
    n_paths: int,
    n_steps: int,
    n_assets: int,
    *,
    seed: int | np.random.SeedSequence | None,
    antithetic: bool = False,
    first_path: int = 0,
) -> np.ndarray:
    """The independent standard normals that drive GBM paths of the same seed.

    ``out[i, t, :]`` are the (uncorrelated) shocks of path ``first_path + i`` at step
    ``t + 1``: a GBM path is ``s0 * exp(cumsum((mu - sigma**2 / 2) dt
    + sigma sqrt(dt) (out @ chol.T)))``. Useful for common random numbers across methods
    and for exact tests of the kernels.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_paths, n_steps, n_assets)``.
    """
    n_paths = _check_int("n_paths", n_paths, 1)
    n_steps = _check_int("n_steps", n_steps, 1)
    n_assets = _check_int("n_assets", n_assets, 1)
    first_path = _check_int("first_path", first_path, 0)
    out = np.empty((n_paths, n_steps, n_assets))
    K.normal_kernel(seed_key(seed), first_path, n_paths, n_steps, 2 if antithetic else 1, out)
    return out
