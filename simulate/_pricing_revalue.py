"""Scenario revaluation of option books: :func:`revalue_options` and the settlement codes.

Re-exported by :mod:`marginlab.simulate.pricing`; the kernel is in :mod:`._pricing_kernels`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._pricing_kernels import (
    _check_out,
    _flat,
    _float,
    _phi,
    _revalue_kernel,
)

SETTLE_LINEAR = 0
"""Settlement code of a linear option: premium and payoff in USD (USDC)."""
SETTLE_INVERSE = 1
"""Settlement code of an inverse (coin-settled) option: premium and payoff in the coin."""

# --------------------------------------------------------------------------------------
# Scenario revaluation
# --------------------------------------------------------------------------------------

_SETTLE_NAMES = {"linear": SETTLE_LINEAR, "usd": SETTLE_LINEAR, "inverse": SETTLE_INVERSE,
                 "coin": SETTLE_INVERSE}  # fmt: skip


def _settlement_codes(settlement: Any, n: int) -> np.ndarray:
    if settlement is None:
        return np.zeros(n, dtype=np.int64)
    arr = np.asarray(settlement)
    if arr.dtype.kind in "US":
        try:
            arr = np.vectorize(lambda s: _SETTLE_NAMES[str(s).lower()], otypes=[np.int64])(arr)
        except KeyError as exc:
            raise ValueError(
                f"settlement must be 'linear' or 'inverse' (or SETTLE_LINEAR / "
                f"SETTLE_INVERSE), got {settlement!r}"
            ) from exc
    elif arr.dtype.kind not in "iub":
        raise TypeError(f"settlement must hold ints or names, got dtype {arr.dtype}")
    arr = np.broadcast_to(arr.astype(np.int64), (n,))
    if np.any((arr != SETTLE_LINEAR) & (arr != SETTLE_INVERSE)):
        raise ValueError(f"settlement codes must be {SETTLE_LINEAR} or {SETTLE_INVERSE}")
    return arr


def revalue_options(
    prices: Any,
    strike: Any,
    expiry: Any,
    sigma: Any,
    is_call: Any,
    *,
    horizon: float,
    underlying: Any = None,
    settlement: Any = None,
    r: Any = 0.0,
    carry: Any = 0.0,
    vol_shock: Any = None,
    vol_shock_mode: str = "additive",
    units: str = "settlement",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Value a set of European options in every price scenario at a horizon.

    For scenario ``i`` and instrument ``j`` on underlying ``a = underlying[j]``, with the
    remaining life ``tau_j = max(expiry_j - horizon, 0)``:

    .. math::

        F_{ij} = S_{ia} e^{b_j \\tau_j}, \\qquad
        \\sigma_{ij} = \\max(\\sigma_j + \\delta_{ia}, 0)\\ \\text{(additive)}\\ \\text{or}\\
        \\max(\\sigma_j (1 + \\delta_{ia}), 0)\\ \\text{(relative)},

        V_{ij} = \\mathrm{Black76}(F_{ij}, K_j, \\tau_j, \\sigma_{ij}, r_j)
        \\quad [\\,/\\,S_{ia} \\text{ for inverse options in settlement units}].

    Options with ``tau_j == 0`` (expired by the horizon) pay their intrinsic value
    ``max(phi (S - K), 0)`` (divided by ``S`` for inverse options). Work is split over
    fixed blocks of scenarios, so the result does not depend on the number of threads.

    Parameters
    ----------
    prices : array_like, shape (n_scenarios,) or (n_scenarios, n_underlyings)
        Scenario index prices at the horizon, USD, > 0.
    strike, expiry, sigma : array_like, shape (n_instruments,) or broadcastable
        Strikes (USD, > 0), times to expiry from today (years) and annualised implied
        volatilities (>= 0) of the unique options.
    is_call : bool or array_like of bool
        True for calls.
    horizon : float
        Risk horizon in years, >= 0: time to expiry shrinks to ``expiry - horizon``.
    underlying : array_like of int, optional
        Column of ``prices`` of each instrument; default 0.
    settlement : array_like of int or str, optional
        ``SETTLE_LINEAR`` / ``'linear'`` (USD) or ``SETTLE_INVERSE`` / ``'inverse'`` (coin,
        as on Deribit) per instrument; default linear.
    r : array_like, default 0
        Discount rate per instrument.
    carry : array_like, default 0
        Forward drift ``b`` per instrument, ``F = S e^{b tau}`` (0: forward = index; use
        ``ln(F_0 / S_0) / T`` to keep today's basis).
    vol_shock : array_like, optional, shape (n_scenarios,) or (n_scenarios, n_underlyings)
        Per-scenario volatility shock of each underlying (a shift of the whole surface):
        absolute vol points in ``'additive'`` mode (0.05 adds 5 vol points), a fraction in
        ``'relative'`` mode (0.1 multiplies vols by 1.1). Shocked vols are floored at 0.
    vol_shock_mode : {'additive', 'relative'}
    units : {'settlement', 'usd'}
        ``'settlement'``: inverse options in coin, linear options in USD; ``'usd'``:
        everything in USD (the coin value times the scenario price).
    out : ndarray, optional
        float64 C-contiguous ``(n_scenarios, n_instruments)`` output.

    Returns
    -------
    ndarray, shape (n_scenarios, n_instruments)
        Value per option (one unit of underlying) in every scenario.
    """
    p = _float("prices", prices, positive=True)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(
            "prices must have shape (n_scenarios,) or (n_scenarios, n_underlyings), "
            f"non-empty, got shape {np.shape(prices)}"
        )
    n_scen, n_und = p.shape
    h = _float("horizon", horizon, nonneg=True)
    if h.ndim != 0:
        raise ValueError(f"horizon must be a scalar (years), got shape {h.shape}")
    if vol_shock_mode not in ("additive", "relative"):
        raise ValueError(f"vol_shock_mode must be 'additive' or 'relative', got {vol_shock_mode!r}")
    if units not in ("settlement", "usd"):
        raise ValueError(f"units must be 'settlement' or 'usd', got {units!r}")

    per = [
        _float("strike", strike, positive=True),
        _float("expiry", expiry),
        _float("sigma", sigma, nonneg=True),
        _phi(is_call),
        _float("r", r),
        _float("carry", carry),
    ]
    und_raw = np.zeros((), dtype=np.int64) if underlying is None else np.asarray(underlying)
    if und_raw.dtype.kind not in "iu":
        raise TypeError(f"underlying must hold ints, got dtype {und_raw.dtype}")
    shape = np.broadcast_shapes(*(a.shape for a in per), und_raw.shape)
    if len(shape) != 1:
        raise ValueError(f"instrument arrays must broadcast to one dimension, got {shape}")
    n_instr = shape[0]
    k, t, sg, ph, rr, bb = _flat(per, shape)
    und = np.array(np.broadcast_to(und_raw, shape), dtype=np.int64, order="C")
    if np.any((und < 0) | (und >= n_und)):
        raise ValueError(f"underlying indices must be in [0, {n_und}), got {und!r}")
    codes = _settlement_codes(settlement, n_instr)
    coin = (codes == SETTLE_INVERSE).astype(np.float64) if units == "settlement" else (
        np.zeros(n_instr))  # fmt: skip

    if vol_shock is None:
        shock = np.zeros((n_scen, n_und))
    else:
        sh = _float("vol_shock", vol_shock)
        if sh.ndim == 1:
            sh = sh[:, None]
        try:
            shock = np.array(np.broadcast_to(sh, (n_scen, n_und)), dtype=np.float64, order="C")
        except ValueError as exc:
            raise ValueError(
                f"vol_shock must have shape ({n_scen},) or ({n_scen}, {n_und}), "
                f"got {np.shape(vol_shock)}"
            ) from exc

    tau = np.maximum(t - float(h), 0.0)
    dq = np.exp(-(rr - bb) * tau)
    dr = np.exp(-rr * tau)
    carry_t = bb * tau
    sqrt_t = np.sqrt(tau)
    res = _check_out(out, (n_scen, n_instr))
    p = np.array(p, dtype=np.float64, order="C")
    _revalue_kernel(p, shock, vol_shock_mode == "relative", und, k, sg, ph, dq, dr, carry_t,
                    sqrt_t, coin, res)  # fmt: skip
    return res
