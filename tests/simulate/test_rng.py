"""Variates of :mod:`marginlab.simulate.rng` drawn directly (the path tests see them only
through the models).

Oracles: scipy.stats distributions (Kolmogorov-Smirnov at 0.1 %) and closed-form moments
within 4 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from marginlab.simulate._numba import kernel
from marginlab.simulate.rng import block_state, gamma, seed_key

N_SE = 4.0
ALPHA = 1e-3


@kernel
def _gammas(key, shape, n):
    st = block_state(key, 3)
    out = np.empty(n)
    for i in range(n):
        out[i], st = gamma(shape, st)
    return out


@pytest.mark.parametrize("shape", [1.0, 1.5, 2.5, 10.0, 250.0])
def test_gamma_matches_scipy(shape):
    """Oracle: scipy.stats.gamma(shape): KS does not reject at 0.1 % on 200k draws, and the
    sample mean and variance are within 4 SE of ``shape`` (the variance's SE from the
    fourth central moment, 3 shape^2 + 6 shape). Shape 1 has the most draws rejected by the
    squeeze, so the slow path's full test and redraws are exercised too."""
    n = 200_000
    x = _gammas(seed_key(20260), shape, n)
    assert stats.kstest(x, stats.gamma(shape).cdf).pvalue > ALPHA
    assert abs(x.mean() - shape) <= N_SE * math.sqrt(shape / n)
    var_se = math.sqrt((3.0 * shape**2 + 6.0 * shape - shape**2) / n)
    assert abs(x.var() - shape) <= N_SE * var_se
