"""The numba kernels of :mod:`marginlab.simulate.pricing` and the input helpers of its wrappers.

The Black-Scholes core (:func:`_ncdf`, :func:`_npdf`, the price and greeks of one option:
:func:`_price_core`, :func:`_greeks_core`), its serial block and ``prange`` forms over
flat arrays, the scenario revaluation kernel behind
:func:`~marginlab.simulate.pricing.revalue_options`, and the validation and broadcasting
helpers the public wrappers share. Formulas and conventions are in the notes of
:mod:`marginlab.simulate.pricing`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._numba import inline_kernel, kernel, parallel_kernel, prange

_INV_SQRT2 = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT2PI = 0.3989422804014327  # 1 / sqrt(2 pi)

_ELEM_BLOCK = 2048
"""Elements per parallel block of the element-wise kernels."""
_SCEN_BLOCK = 64
"""Scenarios per parallel block of :func:`revalue_options`."""


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@inline_kernel
def _ncdf(x):
    # Standard normal CDF; erfc keeps the relative accuracy for x << 0.
    return 0.5 * math.erfc(-x * _INV_SQRT2)


@inline_kernel
def _npdf(x):
    return _INV_SQRT2PI * math.exp(-0.5 * x * x)


@inline_kernel
def _price_core(s, k, dq, dr, carry_t, sqrt_t, sigma, phi):
    # European price from spot s, strike k, dq = exp(-q T), dr = exp(-r T),
    # carry_t = (r - q) T, sqrt_t = sqrt(T) >= 0, phi = +1 call / -1 put.
    fwd = s * dq
    kdf = k * dr
    v = sigma * sqrt_t
    if not v > 0.0:
        # Zero volatility or expired (T == 0 gives dq == dr == 1): discounted intrinsic value.
        return max(phi * (fwd - kdf), 0.0)
    d1 = (math.log(s / k) + carry_t) / v + 0.5 * v
    d2 = d1 - v
    return max(phi * (fwd * _ncdf(phi * d1) - kdf * _ncdf(phi * d2)), 0.0)


@kernel
def _price_block(lo, hi, s, k, t, sigma, r, q, phi, out):
    for i in range(lo, hi):
        tt = max(t[i], 0.0)
        out[i] = _price_core(
            s[i], k[i], math.exp(-q[i] * tt), math.exp(-r[i] * tt),
            (r[i] - q[i]) * tt, math.sqrt(tt), sigma[i], phi[i],
        )  # fmt: skip


@parallel_kernel
def _price_kernel(s, k, t, sigma, r, q, phi, out):
    """Black-Scholes prices of 1-D arrays of equal length into ``out``."""
    n = out.shape[0]
    n_blocks = (n + _ELEM_BLOCK - 1) // _ELEM_BLOCK
    for b in prange(n_blocks):
        _price_block(b * _ELEM_BLOCK, min((b + 1) * _ELEM_BLOCK, n),
                     s, k, t, sigma, r, q, phi, out)  # fmt: skip


@inline_kernel
def _greeks_core(s, k, t, sigma, r, q, phi):
    # (price, delta, gamma, vega, theta) of a Black-Scholes option; t may be <= 0.
    if t <= 0.0:
        # Expired: the payoff. Delta is its slope (half the jump at the kink), the rest 0.
        diff = phi * (s - k)
        step = 1.0 if diff > 0.0 else (0.0 if diff < 0.0 else 0.5)
        return max(diff, 0.0), phi * step, 0.0, 0.0, 0.0
    dq = math.exp(-q * t)
    dr = math.exp(-r * t)
    sqrt_t = math.sqrt(t)
    fwd = s * dq
    kdf = k * dr
    v = sigma * sqrt_t
    if not v > 0.0:
        # sigma == 0: the sigma -> 0 limits (d1, d2 -> +-inf, or 0 at the forward kink).
        diff = phi * (fwd - kdf)
        if diff > 0.0:
            nd1, pdf = 1.0, 0.0
        elif diff < 0.0:
            nd1, pdf = 0.0, 0.0
        else:
            nd1, pdf = 0.5, _INV_SQRT2PI
        nd2 = nd1
        price = max(diff, 0.0)
        gamma = 0.0
        theta = -phi * (r * kdf * nd2 - q * fwd * nd1)
    else:
        d1 = (math.log(s / k) + (r - q) * t) / v + 0.5 * v
        d2 = d1 - v
        nd1 = _ncdf(phi * d1)
        nd2 = _ncdf(phi * d2)
        pdf = _npdf(d1)
        price = max(phi * (fwd * nd1 - kdf * nd2), 0.0)
        gamma = dq * pdf / (s * v)
        theta = -fwd * pdf * sigma / (2.0 * sqrt_t) - phi * (r * kdf * nd2 - q * fwd * nd1)
    delta = phi * dq * nd1
    vega = fwd * pdf * sqrt_t
    return price, delta, gamma, vega, theta


@kernel
def _greeks_block(lo, hi, s, k, t, sigma, r, q, phi, price, delta, gamma, vega, theta):
    for i in range(lo, hi):
        p, d, g, v, th = _greeks_core(s[i], k[i], t[i], sigma[i], r[i], q[i], phi[i])
        price[i] = p
        delta[i] = d
        gamma[i] = g
        vega[i] = v
        theta[i] = th


@parallel_kernel
def _greeks_kernel(s, k, t, sigma, r, q, phi, price, delta, gamma, vega, theta):
    """Black-Scholes price and greeks of 1-D arrays of equal length into five outputs."""
    n = price.shape[0]
    n_blocks = (n + _ELEM_BLOCK - 1) // _ELEM_BLOCK
    for b in prange(n_blocks):
        _greeks_block(b * _ELEM_BLOCK, min((b + 1) * _ELEM_BLOCK, n),
                      s, k, t, sigma, r, q, phi, price, delta, gamma, vega, theta)  # fmt: skip


@kernel
def _revalue_block(lo, hi, prices, shock, relative, und, strike, sigma, phi,
                   dq, dr, carry_t, sqrt_t, coin, out):  # fmt: skip
    n_instr = strike.shape[0]
    for i in range(lo, hi):
        for j in range(n_instr):
            a = und[j]
            s = prices[i, a]
            if relative:
                sig = sigma[j] * (1.0 + shock[i, a])
            else:
                sig = sigma[j] + shock[i, a]
            sig = max(sig, 0.0)
            value = _price_core(s, strike[j], dq[j], dr[j], carry_t[j], sqrt_t[j], sig, phi[j])
            if coin[j] != 0.0:
                value = value / s
            out[i, j] = value


@parallel_kernel
def _revalue_kernel(prices, shock, relative, und, strike, sigma, phi,
                    dq, dr, carry_t, sqrt_t, coin, out):  # fmt: skip
    """Value every instrument ``j`` in every scenario ``i`` into ``out[i, j]``.

    ``prices`` and ``shock`` are ``(n_scenarios, n_underlyings)``; the per-instrument arrays
    hold the remaining-life factors ``dq = exp(-(r - carry) tau)``, ``dr = exp(-r tau)``,
    ``carry_t = carry tau``, ``sqrt_t = sqrt(tau)``; ``coin`` is 1.0 to divide by the
    scenario price (coin units)."""
    n = prices.shape[0]
    n_blocks = (n + _SCEN_BLOCK - 1) // _SCEN_BLOCK
    for b in prange(n_blocks):
        _revalue_block(b * _SCEN_BLOCK, min((b + 1) * _SCEN_BLOCK, n), prices, shock,
                       relative, und, strike, sigma, phi, dq, dr, carry_t, sqrt_t, coin,
                       out)  # fmt: skip


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _float(name: str, x: Any, *, positive: bool = False, nonneg: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a float or an array of floats, got {x!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr!r}")
    if positive and np.any(arr <= 0.0):
        raise ValueError(f"{name} must be > 0, got min {arr.min()!r}")
    if nonneg and np.any(arr < 0.0):
        raise ValueError(f"{name} must be >= 0, got min {arr.min()!r}")
    return arr


def _phi(is_call: Any) -> np.ndarray:
    arr = np.asarray(is_call)
    if arr.dtype != np.bool_:
        raise TypeError(
            f"is_call must be a bool or an array of bools (True call, False put), "
            f"got dtype {arr.dtype}"
        )
    return np.where(arr, 1.0, -1.0)


def _flat(arrays: list[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    # Writable C-contiguous float64 1-D views of the broadcast inputs: an input that already
    # is one (full shape) is used as is (the kernels never write to inputs), others copied.
    flat = []
    for a in arrays:
        if not (a.shape == shape and a.dtype == np.float64 and a.flags.c_contiguous
                and a.flags.writeable):  # fmt: skip
            a = np.array(np.broadcast_to(a, shape), dtype=np.float64, order="C")
        flat.append(a.reshape(-1))
    return flat


def _check_out(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != np.float64:
        raise ValueError(
            f"out must be float64 of shape {shape}, got {out.dtype} of shape {out.shape}"
        )
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be C-contiguous and writable")
    return out


def _result(arr: np.ndarray) -> np.ndarray:
    return arr[()] if arr.ndim == 0 else arr


def _bs_inputs(s, k, t, sigma, r, q, is_call):
    arrays = [
        _float("spot", s, positive=True),
        _float("strike", k, positive=True),
        _float("T", t),
        _float("sigma", sigma, nonneg=True),
        _float("r", r),
        _float("q", q),
        _phi(is_call),
    ]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return shape, _flat(arrays, shape)
