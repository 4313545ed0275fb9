"""Coin-settled (inverse) options, futures and perpetuals: premiums, funding and P&L.

:func:`inverse_option_premium`, :func:`inverse_option_pnl`, :func:`funding_payment`, the
linear and inverse future and perpetual P&L and the :class:`PnL` result (coin and USD), all
re-exported by :mod:`marginlab.simulate.pricing`, whose notes give the units and sign
conventions. They are numpy expressions over broadcast arrays (no kernel).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._black_scholes import black76_price
from ._pricing_kernels import _float, _result

FUNDING_INTERVALS_PER_YEAR = 3 * 365
"""Funding rates are quoted per 8-hour interval: 3 a day, 365 days a year."""


class PnL(NamedTuple):
    """Profit and loss of a coin-settled position, in coin and in USD.

    ``usd`` is ``coin`` converted at the scenario (exit) price: the USD value, at that price,
    of the coin the trade gained or lost. It leaves out the revaluation of the account's
    coin collateral, which belongs to the account, not to the trade.
    """

    coin: np.ndarray
    usd: np.ndarray


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
