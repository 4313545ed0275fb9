"""marginlab.simulate: the hot loops (arrays in, arrays out).

Random streams, path generators and, later, revaluation and risk kernels. This layer never
imports :mod:`marginlab.models`.
"""

from .paths import (
    Extremes,
    simulate_extremes,
    simulate_paths,
    simulate_terminal,
    standard_normal,
)
from .rng import BLOCK_PATHS
from .specs import GARCHSpec, JumpDiffusionSpec

__all__ = [
    "BLOCK_PATHS",
    "Extremes",
    "GARCHSpec",
    "JumpDiffusionSpec",
    "simulate_extremes",
    "simulate_paths",
    "simulate_terminal",
    "standard_normal",
]
