"""Variance-reduced draws for the terminal law of jump-diffusion models (arrays in, out).

Two designs for Monte Carlo margin, both for models whose horizon law is driven by a fixed
number of random inputs per scenario (GBM: ``d`` normals; Merton: ``d`` normals, ``d``
Poisson counts and ``d`` jump-size normals):

* **Randomised QMC** (:func:`sobol_uniforms`): ``randomizations`` independent Owen-scrambled
  Sobol' point sets (``scipy.stats.qmc.Sobol``), each of ``n_per`` points, stacked. Each
  randomisation is an unbiased estimate on its own and the randomisations are independent,
  so error bars come from the spread between them (Owen 1997; L'Ecuyer and Lemieux 2002).
* **Defensive mixture importance sampling** (:func:`mixture_normals`, Hesterberg 1995):
  the diffusion normals come from the mixture ``(1 - share) N(0, I) + share / K sum_k
  N(0, I + (c^2 - 1) u_k u_k^T)``: a share of scenarios has its shock inflated by ``c``
  along one of ``K`` directions ``u_k`` (for a market model, the direction of each
  asset's shock, so every account, whatever its direction, finds its own tail oversampled).
  The component of scenario ``i`` is fixed by its index (a deterministic mixture, Owen and
  Zhou 2000), and its likelihood-ratio weight is the balance-heuristic weight
  :math:`w(z) = 1 / \\big((1 - s) + \\frac{s}{K}\\sum_k c^{-1}
  \\exp(\\tfrac12 (u_k^\\top z)^2 (1 - c^{-2}))\\big) \\le 1 / (1 - s)`, bounded, so the
  estimator can never be much worse than plain Monte Carlo.
* **Defensive shift mixture importance sampling** (:func:`shift_normals`, Glasserman,
  Heidelberger and Shahabuddin 2000 for the mean shift, made defensive and two-sided for a
  whole book): the diffusion normals come from

  .. math::

      q(z) = (1 - s)\\,\\varphi(z) + \\frac{s}{2K}\\sum_{k=1}^{K}\\big(
          \\varphi(z - \\theta u_k) + \\varphi(z + \\theta u_k)\\big),

  :math:`\\varphi` the standard normal density of :math:`\\mathbb{R}^d`: a share ``s`` of
  scenarios has its normals shifted by :math:`\\pm\\theta` along one of the ``K``
  directions ``u_k`` (for a market model, asset ``k``'s standardised shock, whose loss
  gradient is the book's aggregate sensitivity to that asset; both signs, because accounts
  are long and short). The likelihood ratio :math:`\\varphi(z \\mp \\theta u_k) / \\varphi(z)
  = \\exp(\\pm\\theta u_k^\\top z - \\theta^2/2)` gives the balance-heuristic weight

  .. math::

      w(z) = \\frac{\\varphi(z)}{q(z)} = \\Big((1 - s) + \\frac{s}{K}\\,e^{-\\theta^2/2}
          \\sum_k \\cosh(\\theta\\, u_k^\\top z)\\Big)^{-1} \\le \\frac{1}{1 - s}.

  A shifted component puts about half of its scenarios beyond the 99 % quantile of its
  direction (for :math:`\\theta \\approx z_{0.99}`) with nearly equal weights across that
  tail, where inflating the variance (the mixture above) spreads them further out with
  falling weights.

:func:`terminal_log_returns` turns standard normals (and, for jumps, uniforms) into the
exact horizon log returns of a :class:`~.specs.JumpDiffusionSpec`.

Reproducibility: QMC points depend only on the seed and the randomisation index (a child
``SeedSequence`` per randomisation); mixture normals come from
:func:`marginlab.simulate.standard_normal` (fixed blocks of 256 scenarios with their own
streams), so the same seed gives the same bits on any number of threads.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .paths import standard_normal
from .rng import seed_sequence
from .specs import JumpDiffusionSpec

__all__ = ["sobol_uniforms", "mixture_normals", "shift_normals", "terminal_log_returns",
           "child_seed"]

_U_EPS = 2.0**-53


def child_seed(seed: Any, *key: int) -> np.random.SeedSequence | None:
    """The child ``SeedSequence`` of ``seed`` (int, SeedSequence or Generator, see
    :func:`~marginlab.simulate.rng.normalize_seed`) under ``key``."""
    if seed is None:
        return None
    ss = seed_sequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, *key))


def sobol_uniforms(n_per: int, dim: int, randomizations: int, seed: Any) -> np.ndarray:
    """Stacked independent scrambled Sobol' point sets in the open unit cube.

    Parameters
    ----------
    n_per : int
        Points per randomisation (a power of two keeps Sobol's balance properties).
    dim : int
        Dimension.
    randomizations : int
        Number of independent scramblings.
    seed : int or SeedSequence
        Randomisation ``r`` is scrambled from ``child_seed(seed, 2, r)``.

    Returns
    -------
    ndarray, shape (randomizations * n_per, dim)
        Rows ``r * n_per:(r + 1) * n_per`` are randomisation ``r``; values in
        ``[2^-53, 1 - 2^-53]``.
    """
    from scipy.stats import qmc

    out = np.empty((randomizations * n_per, dim))
    for r in range(randomizations):
        gen = np.random.default_rng(child_seed(seed, 2, r))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # n_per not a power of two
            pts = qmc.Sobol(dim, scramble=True, seed=gen).random(n_per)
        out[r * n_per:(r + 1) * n_per] = pts
    np.clip(out, _U_EPS, 1.0 - _U_EPS, out=out)
    return out


def component_of(n: int, share: float, n_components: int) -> np.ndarray:
    """Mixture component of each scenario index: -1 (the model) or 0..K-1, spread evenly.

    Scenario ``i`` is inflated when ``floor((i + 1) s) > floor(i s)``; inflated scenarios
    take the directions in turn."""
    i = np.arange(n, dtype=np.float64)
    inflated = np.floor((i + 1.0) * share) > np.floor(i * share)
    comp = np.full(n, -1, dtype=np.int64)
    idx = np.cumsum(inflated) - 1
    comp[inflated] = idx[inflated] % n_components
    return comp


def mixture_normals(n: int, directions: np.ndarray, *, scale: float, share: float,
                    seed: Any) -> tuple[np.ndarray, np.ndarray]:
    """Standard normals from the defensive mixture, and their likelihood-ratio weights.

    Parameters
    ----------
    n : int
        Scenarios.
    directions : ndarray, shape (K, d)
        Unit directions ``u_k`` along which a component inflates the shock.
    scale : float
        Inflation factor ``c`` (> 1).
    share : float
        Share ``s`` of scenarios drawn from the inflated components, in [0, 1).
    seed : int or SeedSequence

    Returns
    -------
    z : ndarray, shape (n, d)
    weights : ndarray, shape (n,)
        ``f(z) / q(z)``, the model's density over the mixture's (mean 1 under the mixture).
    """
    u = np.asarray(directions, dtype=np.float64)
    k, d = u.shape
    z = standard_normal(n, 1, d, seed=seed)[:, 0, :].copy()
    comp = component_of(n, share, k)
    for j in range(k):
        rows = comp == j
        z[rows] += (scale - 1.0) * (z[rows] @ u[j])[:, None] * u[j][None, :]
    proj = z @ u.T
    lr = np.exp(0.5 * proj * proj * (1.0 - 1.0 / (scale * scale))) / scale
    w = 1.0 / ((1.0 - share) + (share / k) * lr.sum(axis=1))
    return z, w


def shift_normals(n: int, directions: np.ndarray, *, shift: float, share: float,
                  seed: Any) -> tuple[np.ndarray, np.ndarray]:
    """Standard normals from the defensive two-sided shift mixture, and their weights.

    Scenario ``i``'s component is fixed by its index (:func:`component_of` over the ``2K``
    shifted components: ``2k`` is ``+theta u_k``, ``2k + 1`` is ``-theta u_k``); its
    normals are the plain draw plus that shift, and its weight is the balance-heuristic
    likelihood ratio of the module docstring.

    Parameters
    ----------
    n : int
        Scenarios.
    directions : ndarray, shape (K, d)
        Unit directions ``u_k``.
    shift : float
        Shift ``theta`` (> 0), in standard deviations.
    share : float
        Share ``s`` of shifted scenarios, in [0, 1).
    seed : int or SeedSequence

    Returns
    -------
    z : ndarray, shape (n, d)
    weights : ndarray, shape (n,)
        ``f(z) / q(z)``, bounded by ``1 / (1 - share)``, mean 1 under the mixture.
    """
    u = np.asarray(directions, dtype=np.float64)
    k, d = u.shape
    z = standard_normal(n, 1, d, seed=seed)[:, 0, :].copy()
    comp = component_of(n, share, 2 * k)
    hit = comp >= 0
    sign = np.where(comp % 2 == 0, shift, -shift)
    z[hit] += sign[hit, None] * u[comp[hit] // 2]
    lr = np.cosh(shift * (z @ u.T)).sum(axis=1) * math.exp(-0.5 * shift * shift)
    w = 1.0 / ((1.0 - share) + (share / k) * lr)
    return z, w


def terminal_log_returns(spec: JumpDiffusionSpec, horizon: float, normals: np.ndarray,
                         jump_uniforms: np.ndarray | None = None,
                         jump_normals: np.ndarray | None = None) -> np.ndarray:
    """Exact horizon log returns of a jump diffusion from given random inputs.

    .. math::

        \\log\\frac{S_T}{S_0} = (\\mu - \\tfrac12\\sigma^2 - \\lambda\\kappa) T
            + \\sigma\\sqrt{T}\\,(C z) + N m_J + \\sqrt{N} s_J \\xi,

    :math:`N = F^{-1}_{\\mathrm{Poisson}(\\lambda T)}(u)`, :math:`\\kappa = e^{m_J +
    s_J^2/2} - 1` (the sum of ``N`` normal log jumps given ``N`` is exactly normal).

    Parameters
    ----------
    spec : JumpDiffusionSpec
    horizon : float
        Years.
    normals : ndarray, shape (n, d)
        Independent standard normals of the diffusion (``C`` correlates them).
    jump_uniforms, jump_normals : ndarray, shape (n, d), optional
        Uniforms for the jump counts and normals for the jump sizes; required when any
        ``lam > 0``.
    """
    mu, sigma, lam, m, s, chol = (np.asarray(x, float) for x in spec)
    kappa = np.expm1(m + 0.5 * s * s)
    drift = (mu - 0.5 * sigma * sigma - lam * kappa) * horizon
    out = drift + (normals @ chol.T) * (sigma * math.sqrt(horizon))
    if np.any(lam > 0.0):
        from scipy.stats import poisson

        if jump_uniforms is None or jump_normals is None:
            raise ValueError("a model with jumps (lam > 0) needs jump_uniforms and "
                             "jump_normals")
        rate = lam * horizon
        cnt = np.where(rate > 0.0, poisson.ppf(jump_uniforms, np.maximum(rate, 1e-300)), 0.0)
        out = out + cnt * m + np.sqrt(cnt) * s * jump_normals
    return out
