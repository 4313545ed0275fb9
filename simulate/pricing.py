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

The code is split by concept: the numba kernels and input helpers are in
:mod:`._pricing_kernels`, the Black-Scholes and Black-76 wrappers and greeks in
:mod:`._black_scholes`, coin-settled options, futures and perpetuals in :mod:`._contracts`,
scenario revaluation in :mod:`._pricing_revalue`; every name stays importable from this
module.
"""

from __future__ import annotations

from ._black_scholes import (  # noqa: F401  (private _greeks re-exported)
    Greeks,
    _greeks,
    black76_greeks,
    black76_price,
    black_scholes_greeks,
    black_scholes_price,
)
from ._contracts import (
    FUNDING_INTERVALS_PER_YEAR,
    PnL,
    funding_payment,
    inverse_future_pnl,
    inverse_option_pnl,
    inverse_option_premium,
    inverse_perpetual_pnl,
    linear_future_pnl,
    linear_perpetual_pnl,
)
from ._numba import inline_kernel, kernel, parallel_kernel, prange  # noqa: F401
from ._pricing_kernels import (  # noqa: F401  (private names re-exported)
    _ELEM_BLOCK,
    _INV_SQRT2,
    _INV_SQRT2PI,
    _SCEN_BLOCK,
    _bs_inputs,
    _check_out,
    _flat,
    _float,
    _greeks_block,
    _greeks_core,
    _greeks_kernel,
    _ncdf,
    _npdf,
    _phi,
    _price_block,
    _price_core,
    _price_kernel,
    _result,
    _revalue_block,
    _revalue_kernel,
)
from ._pricing_revalue import (  # noqa: F401
    _SETTLE_NAMES,
    SETTLE_INVERSE,
    SETTLE_LINEAR,
    _settlement_codes,
    revalue_options,
)

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
