"""Plain parameter records that the path kernels understand.

:mod:`marginlab.models` builds these from its validated model classes (``model.to_spec()``);
they can also be built directly for low-level use. Arrays are float64 of length
``n_assets`` (``chol`` is ``n_assets x n_assets``). No validation happens here beyond what
the simulation wrappers check: the models layer owns meaning and validation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["JumpDiffusionSpec", "GARCHSpec", "DIST_NORMAL", "DIST_T", "DIST_BOOTSTRAP"]

DIST_NORMAL = 0
DIST_T = 1
DIST_BOOTSTRAP = 2


class JumpDiffusionSpec(NamedTuple):
    """Correlated GBM plus independent compound-Poisson lognormal jumps per asset.

    All rates are annualised; ``lam = 0`` everywhere is plain GBM.

    Attributes
    ----------
    mu, sigma : ndarray, shape (n_assets,)
        Drift (such that E[S_T] = S_0 exp(mu T)) and diffusion volatility.
    lam, jump_mean, jump_std : ndarray, shape (n_assets,)
        Jump intensity per year; mean and standard deviation of the log jump size.
    chol : ndarray, shape (n_assets, n_assets)
        A factor ``C`` with ``C @ C.T == corr`` for the diffusion shocks.
    """

    mu: np.ndarray
    sigma: np.ndarray
    lam: np.ndarray
    jump_mean: np.ndarray
    jump_std: np.ndarray
    chol: np.ndarray

    @property
    def n_assets(self) -> int:
        return len(self.mu)


class GARCHSpec(NamedTuple):
    """GJR-GARCH(1,1) per asset with constant conditional correlation; per-step units.

    Attributes
    ----------
    omega, alpha, beta, gamma, mu, sigma2_0 : ndarray, shape (n_assets,)
        Per-step parameters of decimal log returns; ``sigma2_0`` is the conditional variance
        of the first simulated step.
    chol : ndarray, shape (n_assets, n_assets)
        Factor of the innovations' correlation (ignored for bootstrapped innovations).
    dist : int
        ``DIST_NORMAL``, ``DIST_T`` (multivariate Student-t scaled to unit variance, one
        chi-square mixing variable per step shared by all assets) or ``DIST_BOOTSTRAP``.
    nu : float
        Degrees of freedom for ``DIST_T`` (> 2), else ignored.
    residuals : ndarray, shape (n_obs, n_assets)
        Standardised residuals resampled by row for ``DIST_BOOTSTRAP``, else shape (0, n).
    step : float
        Length of one step in years (1/365 for daily crypto returns).
    """

    omega: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    mu: np.ndarray
    sigma2_0: np.ndarray
    chol: np.ndarray
    dist: int
    nu: float
    residuals: np.ndarray
    step: float

    @property
    def n_assets(self) -> int:
        return len(self.mu)
