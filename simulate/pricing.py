"""European option prices and greeks, futures and perpetual P&L, scenario revaluation.

Conventions (the one place they are written down for this module):

* Volatilities ``sigma`` are annualised (0.6 is 60 %), times ``T`` and ``horizon`` are in
  years (1/365 is one day: crypto trades every day), rates ``r``, ``q`` and ``carry`` are
  continuously compounded decimal rates per year (0.05 is 5 %).
* Prices of linear (USD-settled) options and of the USD leg of everything are in USD (or the
  USD stablecoin the contract settles in); coin amounts are in the base coin (BTC, ETH).
* Array arguments broadcast against each other like numpy ufuncs; results have the broadcast
  shape (a numpy scalar when every input is a scalar).
* ``qty`` / ``contracts`` are signed: positive for a long position, negative for a short.

Black-Scholes with continuous yield ``q`` (Merton 1973), spot ``S``, strike ``K``:

.. math::

    d_1 = \\frac{\\ln(S/K) + (r - q)T}{\\sigma\\sqrt{T}} + \\tfrac12\\sigma\\sqrt{T},
    \\qquad d_2 = d_1 - \\sigma\\sqrt{T},

    C = S e^{-qT} N(d_1) - K e^{-rT} N(d_2), \\qquad
    P = K e^{-rT} N(-d_2) - S e^{-qT} N(-d_1).

Black-76 on a forward (futures) price ``F`` is the same formula with ``S = F`` and
``q = r``: :math:`C = e^{-rT}[F N(d_1) - K N(d_2)]`. ``N`` is the standard normal CDF, computed
as ``0.5 * erfc(-x / sqrt(2))``, which keeps full relative accuracy deep in the lower tail,
and puts are evaluated directly (not by parity) so out-of-the-money prices keep theirs too.

Edge cases are exact: ``T <= 0`` gives the intrinsic value ``max(phi (S - K), 0)`` (an expired
option pays its intrinsic value, undiscounted; ``phi = +1`` call, ``-1`` put);
``sigma == 0`` gives the discounted intrinsic value of the forward,
``max(phi (S e^{-qT} - K e^{-rT}), 0)``; deep in- and out-of-the-money inputs give the limits
without NaN.

The numba kernels are private; the public wrappers validate, broadcast, allocate and call
them. The futures and P&L helpers are one-line numpy expressions (no loop to compile).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._numba import inline_kernel, kernel, parallel_kernel, prange

__all__ = [
    "Greeks",
    "PnL",
    "SETTLE_LINEAR",
    "SETTLE_INVERSE",
    "FUNDING_INTERVALS_PER_YEAR",
    "black_scholes_price",
    "black76_price",
    "black_scholes_greeks",
    "black76_greeks",
    "inverse_option_premium",
    "inverse_option_pnl",
    "linear_future_pnl",
    "linear_perpetual_pnl",
    "inverse_future_pnl",
    "inverse_perpetual_pnl",
    "funding_payment",
    "revalue_options",
]

SETTLE_LINEAR = 0
"""Settlement code of a linear option: premium and payoff in USD (USDC)."""
SETTLE_INVERSE = 1
"""Settlement code of an inverse (coin-settled) option: premium and payoff in the coin."""

FUNDING_INTERVALS_PER_YEAR = 3 * 365
"""Funding rates are quoted per 8-hour interval: 3 a day, 365 days a year."""

_INV_SQRT2 = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT2PI = 0.3989422804014327  # 1 / sqrt(2 pi)

_ELEM_BLOCK = 2048
"""Elements per parallel block of the element-wise kernels."""
_SCEN_BLOCK = 64
"""Scenarios per parallel block of :func:`revalue_options`."""


class Greeks(NamedTuple):
    """Price and sensitivities, each an array of the broadcast shape.

    Attributes
    ----------
    price : ndarray
        Option value (units of the strike).
    delta : ndarray
        dV/dS (Black-Scholes) or dV/dF (Black-76).
    gamma : ndarray
        d2V/dS2 or d2V/dF2.
    vega : ndarray
        dV/dsigma per 1.00 of annualised volatility (divide by 100 for one vol point).
    theta : ndarray
        dV/dt per year of calendar time, with the spot (or forward) and the volatility held
        fixed; usually negative. Divide by 365 for the one-day decay.
    """

    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray


class PnL(NamedTuple):
    """Profit and loss of a coin-settled position, in coin and in USD.

    ``usd`` is ``coin`` converted at the scenario (exit) price: the USD value, at that price,
    of the coin the trade gained or lost. It leaves out the revaluation of the account's
    coin collateral, which belongs to the account, not to the trade.
    """

    coin: np.ndarray
    usd: np.ndarray


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


# --------------------------------------------------------------------------------------
# Black-Scholes and Black-76
# --------------------------------------------------------------------------------------


def black_scholes_price(
    spot: Any,
    strike: Any,
    T: Any,
    sigma: Any,
    r: Any = 0.0,
    q: Any = 0.0,
    *,
    is_call: Any,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Black-Scholes-Merton price of a European call or put on a spot price.

    .. math::

        V = \\phi\\,[S e^{-qT} N(\\phi d_1) - K e^{-rT} N(\\phi d_2)],\\quad
        d_{1,2} = \\frac{\\ln(S/K) + (r - q)T}{\\sigma\\sqrt{T}} \\pm \\tfrac12\\sigma\\sqrt{T}

    with ``phi = +1`` for a call and ``-1`` for a put.

    Parameters
    ----------
    spot, strike : array_like
        Spot price and strike, > 0 (same currency).
    T : array_like
        Time to expiry in years. ``T <= 0`` gives the intrinsic value ``max(phi (S - K), 0)``.
    sigma : array_like
        Annualised volatility, >= 0. ``sigma == 0`` gives
        ``max(phi (S e^{-qT} - K e^{-rT}), 0)``.
    r, q : array_like, default 0
        Continuously compounded risk-free rate and dividend (or borrow / funding) yield.
    is_call : bool or array_like of bool
        True for a call, False for a put.
    out : ndarray, optional
        float64 C-contiguous output of the broadcast shape.

    Returns
    -------
    ndarray
        Prices in the currency of the strike, of the broadcast shape of the inputs.

    Examples
    --------
    Haug (2007), ch. 1: S=60, K=65, T=0.25, r=8 %, sigma=30 %, call = 2.1334.

    >>> from marginlab.simulate.pricing import black_scholes_price
    >>> round(float(black_scholes_price(60.0, 65.0, 0.25, 0.30, 0.08, is_call=True)), 4)
    2.1334
    """
    shape, (s, k, t, sg, rr, qq, ph) = _bs_inputs(spot, strike, T, sigma, r, q, is_call)
    res = _check_out(out, shape)
    _price_kernel(s, k, t, sg, rr, qq, ph, res.reshape(-1))
    return res if out is not None else _result(res)


def black76_price(
    forward: Any,
    strike: Any,
    T: Any,
    sigma: Any,
    r: Any = 0.0,
    *,
    is_call: Any,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Black (1976) price of a European call or put on a forward or futures price.

    .. math::

        V = e^{-rT}\\,\\phi\\,[F N(\\phi d_1) - K N(\\phi d_2)],\\quad
        d_{1,2} = \\frac{\\ln(F/K)}{\\sigma\\sqrt{T}} \\pm \\tfrac12\\sigma\\sqrt{T}

    (Black-Scholes with ``S = F`` and ``q = r``). ``T <= 0`` gives ``max(phi (F - K), 0)``;
    ``sigma == 0`` gives ``e^{-rT} max(phi (F - K), 0)``.

    Parameters
    ----------
    forward, strike : array_like
        Forward (futures) price and strike, > 0.
    T : array_like
        Time to expiry in years.
    sigma : array_like
        Annualised volatility of the forward, >= 0.
    r : array_like, default 0
        Continuously compounded discount rate to the payment date.
    is_call : bool or array_like of bool
        True for a call, False for a put.
    out : ndarray, optional
        float64 C-contiguous output of the broadcast shape.

    Returns
    -------
    ndarray
        Prices in the currency of the strike.

    Examples
    --------
    Haug (2007), ch. 1: F=K=19, T=0.75, r=10 %, sigma=28 %: call = put = 1.7011.

    >>> from marginlab.simulate.pricing import black76_price
    >>> round(float(black76_price(19.0, 19.0, 0.75, 0.28, 0.10, is_call=True)), 4)
    1.7011
    """
    r_arr = _float("r", r)
    shape, (f, k, t, sg, rr, qq, ph) = _bs_inputs(forward, strike, T, sigma, r_arr, r_arr,
                                                  is_call)  # fmt: skip
    res = _check_out(out, shape)
    _price_kernel(f, k, t, sg, rr, qq, ph, res.reshape(-1))
    return res if out is not None else _result(res)


def _greeks(shape, s, k, t, sg, rr, qq, ph) -> Greeks:
    outs = [np.empty(shape) for _ in range(5)]
    _greeks_kernel(s, k, t, sg, rr, qq, ph, *(o.reshape(-1) for o in outs))
    return Greeks(*(_result(o) for o in outs))


def black_scholes_greeks(
    spot: Any,
    strike: Any,
    T: Any,
    sigma: Any,
    r: Any = 0.0,
    q: Any = 0.0,
    *,
    is_call: Any,
) -> Greeks:
    """Black-Scholes-Merton price, delta, gamma, vega and theta.

    .. math::

        \\Delta = \\phi e^{-qT} N(\\phi d_1),\\quad
        \\Gamma = \\frac{e^{-qT} n(d_1)}{S\\sigma\\sqrt{T}},\\quad
        \\mathcal{V} = S e^{-qT} n(d_1)\\sqrt{T},

        \\Theta = -\\frac{S e^{-qT} n(d_1)\\sigma}{2\\sqrt{T}}
                  - \\phi\\,[r K e^{-rT} N(\\phi d_2) - q S e^{-qT} N(\\phi d_1)]

    (``n`` the standard normal density; theta is dV/dt per year at fixed S and sigma).

    Degenerate cases are the limits of the discounted intrinsic value: with ``T <= 0``
    delta is the payoff's slope (``phi`` in the money, 0 out of it, ``phi / 2`` at
    ``S == K``) and gamma, vega, theta are 0; with ``sigma == 0`` delta is
    ``phi e^{-qT}`` or 0 (half at the forward kink), vega is 0 except at the kink where it
    is its limit ``S e^{-qT} n(0) sqrt(T)``, theta the time derivative of the discounted
    intrinsic value. Gamma at a kink is a Dirac mass, reported as 0.

    Parameters are those of :func:`black_scholes_price`.

    Returns
    -------
    Greeks
        ``(price, delta, gamma, vega, theta)``, each of the broadcast shape; vega per 1.00 of
        volatility, theta per year.
    """
    shape, flat = _bs_inputs(spot, strike, T, sigma, r, q, is_call)
    return _greeks(shape, *flat)


def black76_greeks(
    forward: Any,
    strike: Any,
    T: Any,
    sigma: Any,
    r: Any = 0.0,
    *,
    is_call: Any,
) -> Greeks:
    """Black-76 price and greeks with respect to the forward.

    .. math::

        \\Delta_F = \\phi e^{-rT} N(\\phi d_1),\\quad
        \\Gamma_F = \\frac{e^{-rT} n(d_1)}{F\\sigma\\sqrt{T}},\\quad
        \\mathcal{V} = F e^{-rT} n(d_1)\\sqrt{T},\\quad
        \\Theta = r V - \\frac{F e^{-rT} n(d_1)\\sigma}{2\\sqrt{T}}

    (theta at a fixed forward). Degenerate cases as in :func:`black_scholes_greeks`.
    Parameters are those of :func:`black76_price`.

    Returns
    -------
    Greeks
        ``(price, delta, gamma, vega, theta)``, each of the broadcast shape.
    """
    r_arr = _float("r", r)
    shape, flat = _bs_inputs(forward, strike, T, sigma, r_arr, r_arr, is_call)
    return _greeks(shape, *flat)


# --------------------------------------------------------------------------------------
# Inverse (coin-settled) options
# --------------------------------------------------------------------------------------


def inverse_option_premium(
    index: Any,
    strike: Any,
    T: Any,
    sigma: Any,
    r: Any = 0.0,
    *,
    is_call: Any,
    forward: Any = None,
) -> np.ndarray:
    """Value in coin of one coin-settled (inverse) option, as on Deribit.

    Deribit's BTC and ETH options have a multiplier of 1 coin, strikes in USD and premium
    and settlement in the coin; the USD price is the coin price times the index, and the
    implied volatility is quoted on the forward. Hence

    .. math::

        V_{coin} = \\frac{\\mathrm{Black76}(F, K, T, \\sigma, r)}{S},
        \\qquad V_{usd} = V_{coin}\\, S,

    and at expiry the option pays ``max(phi (S_T - K), 0) / S_T`` coin.

    Parameters
    ----------
    index : array_like
        Index (underlying) price ``S`` in USD, > 0.
    strike, T, sigma, r, is_call
        As in :func:`black76_price`; ``r`` defaults to 0 (Deribit's convention).
    forward : array_like, optional
        Forward (futures) price of the expiry in USD; defaults to ``index`` (zero basis).

    Returns
    -------
    ndarray
        Value per option in coin. Its USD value at a price ``S'`` is ``value * S'``.

    Examples
    --------
    A 300-strike call with the index at 400 at expiry is worth 100 USD = 0.25 BTC:

    >>> from marginlab.simulate.pricing import inverse_option_premium
    >>> float(inverse_option_premium(400.0, 300.0, 0.0, 0.5, is_call=True))
    0.25
    """
    s = _float("index", index, positive=True)
    f = s if forward is None else _float("forward", forward, positive=True)
    usd = black76_price(f, strike, T, sigma, r, is_call=is_call)
    return _result(np.asarray(usd / s))


def inverse_option_pnl(qty: Any, entry_premium: Any, value: Any, price: Any) -> PnL:
    """P&L of ``qty`` inverse options bought at ``entry_premium`` coin, now worth ``value``.

    .. math::

        \\mathrm{PnL}_{coin} = q\\,(V_{coin} - P_{entry}), \\qquad
        \\mathrm{PnL}_{usd} = \\mathrm{PnL}_{coin}\\, S'

    Parameters
    ----------
    qty : array_like
        Number of options (1 coin each), > 0 bought, < 0 sold.
    entry_premium : array_like
        Premium paid (received) per option, in coin.
    value : array_like
        Value per option in coin at the scenario, e.g. from :func:`inverse_option_premium` or
        :func:`revalue_options` (the payoff ``max(phi (S' - K), 0) / S'`` at expiry).
    price : array_like
        Scenario index price ``S'`` in USD, > 0, at which the coin P&L is converted.

    Returns
    -------
    PnL
        ``(coin, usd)`` arrays of the broadcast shape.
    """
    q = _float("qty", qty)
    p0 = _float("entry_premium", entry_premium)
    v = _float("value", value)
    s = _float("price", price, positive=True)
    coin = q * (v - p0)
    return PnL(_result(np.asarray(coin)), _result(np.asarray(coin * s)))


# --------------------------------------------------------------------------------------
# Futures and perpetuals
# --------------------------------------------------------------------------------------


def funding_payment(notional_usd: Any, funding_rate: Any, horizon: Any) -> np.ndarray:
    """Funding paid by a position over ``horizon`` years at a rate per 8-hour interval.

    .. math::

        \\mathrm{funding} = \\mathrm{notional}\\times f \\times 1095\\,h

    (1095 = 3 intervals a day x 365 days; simple accrual, funding is not compounded).
    Sign convention (Deribit, and every major venue): a positive rate means longs pay
    shorts. ``notional_usd`` is signed like the position, so the result is what the
    position *pays* (negative: receives); P&L helpers subtract it.

    Parameters
    ----------
    notional_usd : array_like
        Signed USD notional (positive long).
    funding_rate : array_like
        Decimal funding rate per 8 hours (0.0001 is 0.01 %).
    horizon : array_like
        Horizon in years, >= 0 (1/365 is one day = 3 funding intervals).

    Returns
    -------
    ndarray
        Funding paid, in USD.
    """
    n = _float("notional_usd", notional_usd)
    f = _float("funding_rate", funding_rate)
    h = _float("horizon", horizon, nonneg=True)
    return _result(np.asarray(n * f * (FUNDING_INTERVALS_PER_YEAR * h)))


def linear_future_pnl(qty: Any, multiplier: Any, entry_price: Any, exit_price: Any) -> np.ndarray:
    """P&L in USD of a linear (USD- or USDT-margined) future: ``qty m (S_T - S_0)``.

    Parameters
    ----------
    qty : array_like
        Signed number of contracts (positive long).
    multiplier : array_like
        Coin per contract, > 0 (1 for a contract on one BTC).
    entry_price, exit_price : array_like
        Prices ``S_0`` and ``S_T`` in USD, > 0. For a risk horizon, ``entry_price`` is
        today's mark and ``exit_price`` the scenario price.

    Returns
    -------
    ndarray
        P&L in USD (USDT).
    """
    q = _float("qty", qty)
    m = _float("multiplier", multiplier, positive=True)
    s0 = _float("entry_price", entry_price, positive=True)
    s1 = _float("exit_price", exit_price, positive=True)
    return _result(np.asarray(q * m * (s1 - s0)))


def linear_perpetual_pnl(
    qty: Any,
    multiplier: Any,
    entry_price: Any,
    exit_price: Any,
    funding_rate: Any,
    horizon: Any,
) -> np.ndarray:
    """P&L in USD of a linear perpetual over ``horizon`` years, funding included.

    .. math::

        \\mathrm{PnL} = q\\,m\\,(S_T - S_0) - q\\,m\\,S_0\\,f\\,1095\\,h

    Funding accrues on the notional at ``entry_price`` (the path inside the horizon is
    not modelled); a positive rate ``f`` per 8 hours means longs pay shorts.

    Parameters
    ----------
    qty, multiplier, entry_price, exit_price
        As in :func:`linear_future_pnl`.
    funding_rate : array_like
        Decimal funding rate per 8-hour interval.
    horizon : array_like
        Horizon in years, >= 0.

    Returns
    -------
    ndarray
        P&L in USD (USDT).
    """
    pnl = linear_future_pnl(qty, multiplier, entry_price, exit_price)
    notional = _float("qty", qty) * _float("multiplier", multiplier) * _float(
        "entry_price", entry_price)  # fmt: skip
    return _result(np.asarray(pnl - funding_payment(notional, funding_rate, horizon)))


def inverse_future_pnl(
    contracts: Any, face_value_usd: Any, entry_price: Any, exit_price: Any
) -> PnL:
    """P&L of an inverse (coin-margined) future, as on Deribit.

    A contract is worth ``face_value_usd`` USD of the coin (10 USD on Deribit BTC futures):

    .. math::

        \\mathrm{PnL}_{coin} = n\\,V_{face}\\,\\left(\\frac{1}{S_0} - \\frac{1}{S_T}\\right),
        \\qquad \\mathrm{PnL}_{usd} = \\mathrm{PnL}_{coin}\\, S_T

    Parameters
    ----------
    contracts : array_like
        Signed number of contracts (positive long).
    face_value_usd : array_like
        USD face value per contract, > 0.
    entry_price, exit_price : array_like
        Prices ``S_0`` and ``S_T`` in USD per coin, > 0.

    Returns
    -------
    PnL
        ``(coin, usd)``.

    Examples
    --------
    Deribit's example: 100 contracts of 10 USD bought at 600, sold at 700:
    1000/600 - 1000/700 = 0.238095 BTC, 166.67 USD at 700.

    >>> from marginlab.simulate.pricing import inverse_future_pnl
    >>> round(float(inverse_future_pnl(100, 10.0, 600.0, 700.0).coin), 6)
    0.238095
    """
    n = _float("contracts", contracts)
    face = _float("face_value_usd", face_value_usd, positive=True)
    s0 = _float("entry_price", entry_price, positive=True)
    s1 = _float("exit_price", exit_price, positive=True)
    coin = n * face * (1.0 / s0 - 1.0 / s1)
    return PnL(_result(np.asarray(coin)), _result(np.asarray(coin * s1)))


def inverse_perpetual_pnl(
    contracts: Any,
    face_value_usd: Any,
    entry_price: Any,
    exit_price: Any,
    funding_rate: Any,
    horizon: Any,
) -> PnL:
    """P&L of an inverse perpetual over ``horizon`` years, funding included.

    .. math::

        \\mathrm{PnL}_{coin} = n\\,V_{face}\\left(\\frac{1}{S_0} - \\frac{1}{S_T}\\right)
            - \\frac{n\\,V_{face}\\,f\\,1095\\,h}{S_0}, \\qquad
        \\mathrm{PnL}_{usd} = \\mathrm{PnL}_{coin}\\, S_T

    Funding is paid in coin on the USD notional ``n V_face``, converted at ``entry_price``;
    a positive rate ``f`` per 8 hours means longs pay shorts.

    Parameters
    ----------
    contracts, face_value_usd, entry_price, exit_price
        As in :func:`inverse_future_pnl`.
    funding_rate : array_like
        Decimal funding rate per 8-hour interval.
    horizon : array_like
        Horizon in years, >= 0.

    Returns
    -------
    PnL
        ``(coin, usd)``.
    """
    fut = inverse_future_pnl(contracts, face_value_usd, entry_price, exit_price)
    notional = _float("contracts", contracts) * _float("face_value_usd", face_value_usd)
    paid_coin = funding_payment(notional, funding_rate, horizon) / _float(
        "entry_price", entry_price)  # fmt: skip
    coin = fut.coin - paid_coin
    return PnL(_result(np.asarray(coin)),
               _result(np.asarray(coin * _float("exit_price", exit_price))))  # fmt: skip


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
