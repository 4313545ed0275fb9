"""Black-Scholes and Black-76 prices and greeks: the public wrappers over the kernels.

:func:`black_scholes_price`, :func:`black76_price`, :func:`black_scholes_greeks`,
:func:`black76_greeks` and their result :class:`Greeks`, all re-exported by
:mod:`marginlab.simulate.pricing`, whose notes give the formulas, units and edge cases.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._pricing_kernels import (
    _bs_inputs,
    _check_out,
    _float,
    _greeks_kernel,
    _price_kernel,
    _result,
)


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
