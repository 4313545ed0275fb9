"""Random streams for the kernels: xoshiro256++ with one stream per (seed, block).

Design (after numpy's ``SeedSequence`` and SPEC 7):

* A user ``seed`` (int, ``np.random.SeedSequence``, ``np.random.Generator`` or ``None``, as
  SPEC 7 asks; :func:`normalize_seed` is the one place they are checked) is turned once into
  a 256-bit key by ``SeedSequence.generate_state``. A ``Generator`` gives
  ``SeedSequence(gen.integers(2**63, size=4))``, drawn once per public call.
* Paths are generated in fixed blocks of :data:`BLOCK_PATHS` paths. Block ``b`` draws from
  its own xoshiro256++ stream whose state is a SplitMix64 hash of (key, b). Which thread or
  which machine runs a block therefore never changes a single bit of its paths.
* The generator state lives in a 4-tuple of ``uint64`` that kernels thread through calls
  (``x, st = normal(st)``), so LLVM keeps it in registers. Kernels never touch numba's
  global ``np.random`` state.

Variates: uniforms on [0, 1) with 53 random bits; standard normals by the 256-layer
ziggurat of Marsaglia and Tsang (2000) in numpy's formulation (one 64-bit draw for 99 % of
variates); gamma by Marsaglia and Tsang (2000). Poisson jump counts are drawn in the path
kernels as the arrivals of a Poisson process (exponential gaps from :func:`uniform`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import uint64

from ._numba import inline_kernel, kernel

__all__ = ["BLOCK_PATHS", "normalize_seed", "seed_sequence", "seed_key", "block_state"]

BLOCK_PATHS = 256
"""Paths per random-stream block. Part of the reproducibility contract: changing it changes
every simulated number, so it is a constant, not an option."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_U53 = 1.0 / 9007199254740992.0  # 2**-53


def normalize_seed(seed: Any) -> int | np.random.SeedSequence | None:
    """Validate a user seed, as numpy's SPEC 7 asks: int, ``SeedSequence``, ``None`` or a
    ``numpy.random.Generator``.

    A ``Generator`` is turned once into ``SeedSequence(gen.integers(2**63, size=4))``
    (256 bits drawn from it, so the generator advances by four draws): the same generator
    state gives the same sequence, hence the same blocks, whatever the thread count.
    Call this once per public call and pass the result on, so that every stream derived
    from it (paths, children) comes from that one sequence.

    Parameters
    ----------
    seed : int, numpy.random.SeedSequence, numpy.random.Generator or None
        A non-negative integer, a ``SeedSequence``, a ``Generator`` or ``None`` (fresh OS
        entropy, not reproducible).

    Returns
    -------
    int, numpy.random.SeedSequence or None
        ``seed`` itself unless it was a ``Generator``.
    """
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(seed.integers(2**63, size=4).tolist())
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            "seed must be a non-negative int, a numpy.random.SeedSequence, a "
            f"numpy.random.Generator or None, got {type(seed).__name__} {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def seed_sequence(seed: Any) -> np.random.SeedSequence:
    """The ``SeedSequence`` of a user seed (see :func:`normalize_seed`; ``None``: fresh
    entropy)."""
    seed = normalize_seed(seed)
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(seed)


def seed_key(seed: Any) -> np.ndarray:
    """Turn a user seed into the 256-bit key from which every block stream is derived.

    Parameters
    ----------
    seed : int, numpy.random.SeedSequence, numpy.random.Generator or None
        A non-negative integer, a ``SeedSequence`` (its entropy and spawn key are used), a
        ``Generator`` (see :func:`normalize_seed`) or ``None`` for fresh OS entropy (not
        reproducible).

    Returns
    -------
    numpy.ndarray
        ``uint64`` array of length 4.
    """
    return seed_sequence(seed).generate_state(4, np.uint64)


# --------------------------------------------------------------------------- xoshiro256++
@inline_kernel
def _rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@inline_kernel
def _mix64(z):
    # SplitMix64 finaliser (Steele, Lea and Flood 2014).
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint64(31))


@kernel
def block_state(key, block):
    """xoshiro256++ state of stream ``block`` under ``key`` (a 4-tuple of uint64)."""
    h = _mix64(uint64(block) ^ key[0])
    s0 = _mix64(key[0] ^ (h + uint64(0x9E3779B97F4A7C15)))
    s1 = _mix64(key[1] ^ (h + uint64(0x3C6EF372FE94F82A)))
    s2 = _mix64(key[2] ^ (h + uint64(0xDAA66D2C7DDF743F)))
    s3 = _mix64(key[3] ^ (h + uint64(0x78DDE6E5FD29F054)))
    if (s0 | s1 | s2 | s3) == uint64(0):  # the one forbidden state
        s0 = uint64(1)
    return (s0, s1, s2, s3)


@inline_kernel
def next_u64(st):
    """One xoshiro256++ output (Blackman and Vigna 2019) and the advanced state."""
    s0, s1, s2, s3 = st
    result = _rotl(s0 + s3, 23) + s0
    t = s1 << uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, (s0, s1, s2, s3)


@inline_kernel
def uniform(st):
    """Uniform on [0, 1) with 53 random bits."""
    r, st = next_u64(st)
    return np.int64(r >> uint64(11)) * _U53, st


# --------------------------------------------------------------------------- ziggurat normal
def _ziggurat_tables(n=256, r=3.6541528853610088, v=4.92867323399e-3):
    """Marsaglia-Tsang ziggurat tables for the standard normal, 52-bit layout as numpy's."""
    m1 = 2.0**52

    def f(x):
        return math.exp(-0.5 * x * x)

    ki = np.zeros(n, np.int64)
    wi = np.zeros(n)
    fi = np.zeros(n)
    dn = tn = r
    q = v / f(dn)
    ki[0] = int((dn / q) * m1)
    wi[0] = q / m1
    wi[n - 1] = dn / m1
    fi[0] = 1.0
    fi[n - 1] = f(dn)
    for i in range(n - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + f(dn)))
        ki[i + 1] = int((dn / tn) * m1)
        tn = dn
        fi[i] = f(dn)
        wi[i] = dn / m1
    return ki, wi, fi, r


_KI, _WI, _FI, _ZIG_R = _ziggurat_tables()
_ZIG_INV_R = 1.0 / _ZIG_R


@kernel
def _normal_slow(rabs, idx, x, st):
    # Rare branch of the ziggurat: the base strip's tail, or a wedge test; else redraw.
    while True:
        if idx == 0:
            while True:
                u, st = uniform(st)
                v, st = uniform(st)
                xx = -_ZIG_INV_R * math.log1p(-u)
                yy = -math.log1p(-v)
                if yy + yy > xx * xx:
                    if (rabs >> 8) & 1:
                        return -(_ZIG_R + xx), st
                    return _ZIG_R + xx, st
        else:
            u, st = uniform(st)
            if (_FI[idx - 1] - _FI[idx]) * u + _FI[idx] < math.exp(-0.5 * x * x):
                return x, st
        r, st = next_u64(st)
        idx = np.intp(r & uint64(0xFF))
        r >>= uint64(8)
        rabs = np.int64((r >> uint64(1)) & uint64(0x000FFFFFFFFFFFFF))
        x = rabs * _WI[idx]
        if r & uint64(1):
            x = -x
        if rabs < _KI[idx]:
            return x, st


@inline_kernel
def normal(st):
    """Standard normal variate by the ziggurat; ~99 % of calls use one 64-bit draw."""
    r, st = next_u64(st)
    idx = np.intp(r & uint64(0xFF))
    r >>= uint64(8)
    rabs = np.int64((r >> uint64(1)) & uint64(0x000FFFFFFFFFFFFF))
    x = rabs * _WI[idx]
    if r & uint64(1):
        x = -x
    if rabs < _KI[idx]:
        return x, st
    return _normal_slow(rabs, idx, x, st)


@kernel
def _gamma_slow(d, c, x, u, st):
    # The rest of Marsaglia and Tsang's loop: the full acceptance test for (x, u), then fresh
    # pairs until one is accepted.
    while True:
        v = 1.0 + c * x
        if v > 0.0:
            v = v * v * v
            if u < 1.0 - 0.0331 * (x * x) * (x * x):
                return d * v, st
            if math.log(u) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
                return d * v, st
        x, st = normal(st)
        u, st = uniform(st)


@inline_kernel
def gamma(shape, st):
    """Gamma(shape, 1) variate, shape >= 1, by Marsaglia and Tsang (2000).

    Each trial draws a normal then a uniform; the common case (the squeeze accepts, about
    98 % of draws for shape 2.5) is inline and branch-light, the rest in :func:`_gamma_slow`.
    ``d`` and ``c`` depend only on ``shape``, so in a loop LLVM computes them once."""
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    x, st = normal(st)
    u, st = uniform(st)
    v = 1.0 + c * x
    if v > 0.0 and u < 1.0 - 0.0331 * (x * x) * (x * x):
        return d * (v * v * v), st
    return _gamma_slow(d, c, x, u, st)


@inline_kernel
def randbelow(n, st):
    """Uniform integer in [0, n) (53-bit float method, bias below n / 2**53)."""
    u, st = uniform(st)
    k = np.int64(u * n)
    if k >= n:
        k = n - 1
    return k, st
