"""marginlab.simulate: the hot loops (arrays in, arrays out).

Random streams and path generators (:mod:`.paths`), option and futures pricing
(:mod:`.pricing`), revaluation and per-account risk (:mod:`.revalue`), risk measures with
Monte Carlo error bars and Euler allocation (:mod:`.risk`). This layer never imports
:mod:`marginlab.models`.
"""

from .paths import (
    Extremes,
    simulate_extremes,
    simulate_paths,
    simulate_terminal,
    standard_normal,
)
from .pricing import (
    black76_greeks,
    black76_price,
    black_scholes_greeks,
    black_scholes_price,
    inverse_option_premium,
)
from .revalue import account_risk, unit_pnl
from .risk import VarEs, allocate, es, incremental, var, var_es
from .rng import BLOCK_PATHS
from .specs import GARCHSpec, JumpDiffusionSpec

__all__ = [
    "var",
    "es",
    "var_es",
    "VarEs",
    "allocate",
    "incremental",
    "black_scholes_price",
    "black76_price",
    "black_scholes_greeks",
    "black76_greeks",
    "inverse_option_premium",
    "unit_pnl",
    "account_risk",
    "BLOCK_PATHS",
    "Extremes",
    "GARCHSpec",
    "JumpDiffusionSpec",
    "simulate_extremes",
    "simulate_paths",
    "simulate_terminal",
    "standard_normal",
]
