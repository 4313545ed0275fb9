"""Merton jump-diffusion fit."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import optimize, stats
from scipy.special import gammaln, logsumexp

from ..market import MertonJump
from ._inputs import _LOG_2PI, CalibrationWarning, _as_returns, _frozen, _frozen_bool, _ic
from .results import MertonFit

#: Poisson mass left out of the Merton density.
MERTON_TAIL = 1e-12


def _poisson_k(p: float) -> int:
    """Smallest K with P(N > K) < MERTON_TAIL for N ~ Poisson(p)."""
    kk = int(stats.poisson.isf(MERTON_TAIL, p)) if p > 0 else 0
    kk = max(kk, 0)
    while stats.poisson.sf(kk, p) >= MERTON_TAIL:
        kk += 1
    while kk > 0 and stats.poisson.sf(kk - 1, p) < MERTON_TAIL:
        kk -= 1
    return kk


def _merton_terms(r: np.ndarray, a: float, v0: float, p: float, m: float, s2: float):
    """Log of each Poisson-mixture term, shape (n, K+1), and the k grid."""
    kk = np.arange(_poisson_k(p) + 1, dtype=np.float64)
    logw = kk * math.log(p) - p - gammaln(kk + 1.0) if p > 0 else np.where(kk == 0, 0.0,
                                                                              -np.inf)
    mean = a + kk * m
    var = v0 + kk * s2
    e = r[:, None] - mean
    logphi = -0.5 * (_LOG_2PI + np.log(var) + e * e / var)
    return logw + logphi, kk, e, var


def merton_logpdf(r: Any, mu: float, sigma: float, lam: float, jump_mean: float,
                  jump_std: float, step: float) -> np.ndarray:
    r"""Log density of one step's log return under :class:`~marginlab.models.MertonJump`.

    .. math:: f(r) = \sum_{k=0}^{K} \frac{e^{-\lambda\Delta}(\lambda\Delta)^k}{k!}\,
              \phi\!\left(r;\ (\mu - \tfrac{\sigma^2}{2} - \lambda\kappa)\Delta + k m,\
              \sigma^2\Delta + k s^2\right), \quad \kappa = e^{m + s^2/2} - 1,

    with ``K`` the smallest integer whose omitted Poisson mass is below 1e-12. Parameters
    are annualised (``step`` in years), as in :class:`~marginlab.models.MertonJump`.
    """
    r = np.asarray(r, dtype=np.float64)
    kappa = math.expm1(jump_mean + 0.5 * jump_std**2)
    a = (mu - 0.5 * sigma**2 - lam * kappa) * step
    terms, *_ = _merton_terms(r.reshape(-1), a, sigma**2 * step, lam * step, jump_mean,
                              jump_std**2)
    return logsumexp(terms, axis=1).reshape(r.shape)


class _MertonObjective:
    """Negative log-likelihood and gradient in scaled coordinates
    z = (a/d, log(sd_diffusion/d), log(lam step), m/d, log(s/d)), d = sample std."""

    def __init__(self, r: np.ndarray, d: float):
        self.r, self.d = r, d

    def natural(self, z):
        d = self.d
        return d * z[0], (d * math.exp(z[1])) ** 2, math.exp(z[2]), d * z[3], \
            (d * math.exp(z[4])) ** 2

    def value_grad(self, z):
        a, v0, p, m, s2 = self.natural(z)
        terms, kk, e, var = _merton_terms(self.r, a, v0, p, m, s2)
        lse = logsumexp(terms, axis=1)
        q = np.exp(terms - lse[:, None])
        de = e / var                                    # d log phi / d mean
        dv = 0.5 * (e * e / var - 1.0) / var            # d log phi / d var
        g_a = np.sum(q * de)
        g_m = np.sum(q * de * kk)
        g_v0 = np.sum(q * dv)
        g_s2 = np.sum(q * dv * kk)
        g_p = np.sum(q * (kk / p - 1.0))
        grad = np.array([g_a * self.d, g_v0 * 2.0 * v0, g_p * p, g_m * self.d, g_s2 * 2.0 * s2])
        return -float(np.sum(lse)), -grad

    def posterior_no_jump(self, z):
        terms, *_ = _merton_terms(self.r, *self.natural(z))
        return np.exp(terms[:, 0] - logsumexp(terms, axis=1))


def _merton_theta(z, d, step):
    """(mu, sigma, lam, jump_mean, jump_std) and its Jacobian d theta / d z."""
    sigma = d * math.exp(z[1]) / math.sqrt(step)
    lam = math.exp(z[2]) / step
    m = d * z[3]
    s = d * math.exp(z[4])
    kappa = math.expm1(m + 0.5 * s * s)
    mu = d * z[0] / step + 0.5 * sigma**2 + lam * kappa
    jac = np.zeros((5, 5))
    jac[0] = [d / step, sigma**2, lam * kappa, lam * (1.0 + kappa) * d,
              lam * (1.0 + kappa) * s * s]
    jac[1, 1] = sigma
    jac[2, 2] = lam
    jac[3, 3] = d
    jac[4, 4] = s
    return np.array([mu, sigma, lam, m, s]), jac


def _fit_one_merton(r: np.ndarray, step: float, label: str):
    d = float(np.std(r))
    if d <= 0.0:
        raise ValueError(f"returns of {label} are constant; cannot fit a jump diffusion")
    obj = _MertonObjective(r, d)
    big = float(np.max(np.abs(r - r.mean()))) / d + 1.0
    bounds = [(-big, big), (math.log(0.01), math.log(2.0)), (math.log(1e-6), 0.0),
              (-big, big), (math.log(0.01), math.log(big))]
    mean = float(r.mean())
    starts = []
    for p0 in (0.005, 0.03, 0.15):
        for share in (0.25, 0.6):
            s0 = math.sqrt(share / p0)
            sd0 = math.sqrt(1.0 - share)
            z = np.array([mean / d, math.log(sd0), math.log(p0), 0.0, math.log(s0)])
            starts.append(np.clip(z, [b[0] for b in bounds], [b[1] for b in bounds]))
    best = None
    for z0 in starts:
        res = optimize.minimize(obj.value_grad, z0, jac=True, method="L-BFGS-B",
                                bounds=bounds, options={"maxiter": 500, "ftol": 1e-13,
                                                        "gtol": 1e-7})
        if best is None or res.fun < best.fun:
            best = res
    z = best.x
    # Hessian of the negative log-likelihood by central differences of the gradient.
    h = 1e-5
    hess = np.empty((5, 5))
    for j in range(5):
        zp, zm = z.copy(), z.copy()
        zp[j] += h
        zm[j] -= h
        hess[:, j] = (obj.value_grad(zp)[1] - obj.value_grad(zm)[1]) / (2.0 * h)
    hess = 0.5 * (hess + hess.T)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    free = (z - lo > 1e-6) & (hi - z > 1e-6)
    theta, jac = _merton_theta(z, d, step)
    cov_z = np.full((5, 5), np.nan)
    ok = False
    if np.any(free):
        hf = hess[np.ix_(free, free)]
        try:
            np.linalg.cholesky(hf)
            cov_z_free = np.linalg.inv(hf)
            ok = True
        except np.linalg.LinAlgError:
            pass
        if ok:
            cov_z = np.zeros((5, 5))
            cov_z[np.ix_(free, free)] = cov_z_free
    cov = jac @ cov_z @ jac.T
    if ok and not np.all(free):
        # parameters on a bound have no standard error
        fixed_theta = ~free
        cov[fixed_theta, :] = np.nan
        cov[:, fixed_theta] = np.nan
    names = ["mu", "sigma", "lam", "jump_mean", "jump_std"]
    if not np.all(free):
        at = [names[i] for i in np.flatnonzero(~free)]
        warnings.warn(f"{label}: Merton estimate(s) {at} at the search bound (e.g. no jumps "
                      "detected); their standard errors are NaN", CalibrationWarning,
                      stacklevel=3)
    elif not ok:
        warnings.warn(f"{label}: the Merton Hessian is not positive definite; standard errors "
                      "are NaN", CalibrationWarning, stacklevel=3)
    if not best.success:
        warnings.warn(f"{label}: the Merton optimiser stopped without converging: "
                      f"{best.message}", CalibrationWarning, stacklevel=3)
    q0 = obj.posterior_no_jump(z)
    return theta, cov, -float(best.fun), bool(best.success), q0


def _merton_marginal(theta: np.ndarray, step: float):
    """Per-step (a, v0, p, m, s2) of annualised (mu, sigma, lam, jump_mean, jump_std)."""
    mu, sigma, lam, m, s = (float(x) for x in theta)
    kappa = math.expm1(m + 0.5 * s * s)
    return (mu - 0.5 * sigma**2 - lam * kappa) * step, sigma**2 * step, lam * step, m, s * s


def _merton_pair_rho(x: np.ndarray, y: np.ndarray, th1: np.ndarray, th2: np.ndarray,
                     step: float) -> float:
    """Diffusion correlation maximising the bivariate Merton likelihood, margins fixed."""
    grids = []
    for th, v in ((th1, x), (th2, y)):
        a, v0, p, m, s2 = _merton_marginal(th, step)
        kk = np.arange(_poisson_k(p) + 1, dtype=np.float64)
        logw = kk * math.log(p) - p - gammaln(kk + 1.0)
        grids.append((logw, v[:, None] - (a + kk * m), v0 + kk * s2, v0))
    (lw1, dx, var1, v01), (lw2, dy, var2, v02) = grids
    logw = lw1[:, None] + lw2[None, :]
    dx2, dy2 = (dx * dx)[:, :, None], (dy * dy)[:, None, :]
    dxy = dx[:, :, None] * dy[:, None, :]
    sd0 = math.sqrt(v01 * v02)

    def nll(rho: float) -> float:
        c = rho * sd0
        det = var1[:, None] * var2[None, :] - c * c
        quad = (dx2 * var2[None, None, :] - 2.0 * c * dxy + dy2 * var1[None, :, None]) \
            / det[None]
        terms = logw[None] - _LOG_2PI - 0.5 * np.log(det)[None] - 0.5 * quad
        return -float(np.sum(logsumexp(terms.reshape(x.size, -1), axis=1)))

    res = optimize.minimize_scalar(nll, bounds=(-0.999, 0.999), method="bounded",
                                   options={"xatol": 1e-7})
    return float(res.x)


def _nearest_corr(c: np.ndarray) -> np.ndarray:
    """Clip negative eigenvalues and rescale to a unit diagonal (identity if already PSD)."""
    w, v = np.linalg.eigh(c)
    if w.min() >= 0.0:
        return c
    c = (v * np.clip(w, 1e-10, None)) @ v.T
    d = np.sqrt(np.diag(c))
    c = c / np.outer(d, d)
    return 0.5 * (c + c.T)


def fit_merton(data: Any, step: float | None = None) -> MertonFit:
    r"""Maximum-likelihood Merton jump diffusion (annualised parameters).

    Parameters
    ----------
    data : PriceHistory or array_like, shape (n_obs,) or (n_obs, n_assets)
        Prices, or per-step decimal log returns.
    step : float, optional
        Years per return. Default: the history's step, else 1/365.

    Returns
    -------
    MertonFit
        ``params`` ``mu``, ``sigma``, ``lam`` (jumps per year), ``jump_mean``,
        ``jump_std``; ``model`` a :class:`~marginlab.models.MertonJump`.

    Notes
    -----
    Maximises :math:`\sum_t \log f(r_t)` with the Poisson-mixture density of
    :func:`merton_logpdf` (truncated where the omitted Poisson mass is below 1e-12), by
    L-BFGS-B with the analytic gradient, from six starting points (expected jumps per step
    0.005, 0.03, 0.15 times jump-variance shares 0.25, 0.6 of the sample variance); the
    best optimum is kept. The search runs in scaled coordinates (``d`` the sample standard
    deviation per step): :math:`a/d` with :math:`a = (\mu - \sigma^2/2 - \lambda\kappa)\Delta`,
    :math:`\log(\sigma\sqrt\Delta/d)\in[\log 0.01, \log 2]`,
    :math:`\log(\lambda\Delta)\in[\log 10^{-6}, 0]`, :math:`m/d` and :math:`\log(s/d)`
    bounded by the largest observed move; the lower bound on the diffusion volatility
    keeps the mixture likelihood bounded. Standard errors come from the inverse of a
    numerical Hessian (central differences of the analytic gradient) mapped to the natural
    parameters by the delta method; an estimate on a bound (e.g. ``lam`` at its floor when
    the data show no jumps) gets a NaN standard error and a :class:`CalibrationWarning`.

    Several assets: each is fitted alone (jumps are independent across assets in
    :class:`~marginlab.models.MertonJump`), then each pair's diffusion correlation
    :math:`\rho_{ij}` maximises the pair's bivariate Poisson-mixture likelihood with the
    marginal parameters held at their estimates (inference functions for margins); the
    matrix is projected onto the positive semi-definite correlations if needed (eigenvalue
    clipping). ``loglik`` is the sum of the marginal log-likelihoods.
    """
    r, step, names = _as_returns(data, step, min_obs=50)
    n, k = r.shape
    keys = ["mu", "sigma", "lam", "jump_mean", "jump_std"]
    est = np.empty((5, k))
    covs = np.empty((k, 5, 5))
    q0 = np.empty((n, k))
    conv = np.empty(k, dtype=bool)
    loglik = 0.0
    for j in range(k):
        theta, cov, ll, ok, q = _fit_one_merton(r[:, j], step, names[j])
        est[:, j], covs[j], conv[j], q0[:, j] = theta, cov, ok, q
        loglik += ll
    corr = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            corr[i, j] = corr[j, i] = _merton_pair_rho(r[:, i], r[:, j], est[:, i],
                                                       est[:, j], step)
    if k > 2:
        corr = _nearest_corr(corr)
    n_par = 5 * k + k * (k - 1) // 2
    aic, bic = _ic(loglik, n_par, n)
    se = np.sqrt(np.diagonal(covs, axis1=1, axis2=2)).T
    model = MertonJump(mu=est[0], sigma=est[1], lam=est[2], jump_mean=est[3],
                       jump_std=est[4], corr=corr if k > 1 else None)
    return MertonFit(model, {key: _frozen(est[i]) for i, key in enumerate(keys)},
                     {key: _frozen(se[i]) for i, key in enumerate(keys)}, loglik, aic, bic,
                     n_par, n, step, names, "merton", _frozen(covs), _frozen(1.0 - q0),
                     _frozen_bool(conv), _frozen(corr))

