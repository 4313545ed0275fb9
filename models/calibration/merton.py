"""Merton jump-diffusion fit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, stats
from scipy.special import gammaln, logsumexp

from marginlab.simulate._merton_kernel import merton_mixture_loglik

from .._warn import warn as _warn
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


#: Identification of jumps (see :func:`fit_merton`): at most this many jumps per step on
#: average, and a jump standard deviation at least this multiple of the diffusion's per step.
MERTON_MAX_JUMPS_PER_STEP = 0.1
MERTON_MIN_JUMP_TO_DIFFUSION = 2.0


class _MertonObjective:
    """Negative log-likelihood and gradient in scaled coordinates
    z = (a/d, log(sd_diffusion/d), log(lam step), m/d, log(s/sd_diffusion)), d = sample std;
    the Poisson sum runs to ``kmax`` jumps per step (fixed over the search; None: the
    truncation of :func:`_poisson_k` at each evaluation). The likelihood and its gradient
    are one pass of the compiled kernel ``merton_mixture_loglik`` (its numpy twin:
    :func:`_merton_terms`)."""

    def __init__(self, r: np.ndarray, d: float, kmax: int | None = None):
        self.r, self.d, self.kmax = np.ascontiguousarray(r, dtype=np.float64), d, kmax
        self._g = np.empty(5)
        self._no_q = np.empty(0)

    def natural(self, z):
        d = self.d
        v0 = (d * math.exp(z[1])) ** 2
        return d * z[0], v0, math.exp(z[2]), d * z[3], v0 * math.exp(2.0 * z[4])

    def _kernel(self, z, q0):
        a, v0, p, m, s2 = self.natural(z)
        kmax = _poisson_k(p) if self.kmax is None else self.kmax
        ll = merton_mixture_loglik(self.r, a, v0, p, m, s2, kmax, self._g, q0)
        return ll, v0, p, s2

    def value_grad(self, z):
        ll, v0, p, s2 = self._kernel(z, self._no_q)
        g_a, g_v0, g_p, g_m, g_s2 = self._g
        grad = np.array([-g_a * self.d, -2.0 * (g_v0 * v0 + g_s2 * s2), -g_p * p,
                         -g_m * self.d, -2.0 * g_s2 * s2])
        return -ll, grad

    def posterior_no_jump(self, z):
        q0 = np.empty(self.r.size)
        self._kernel(z, q0)
        return q0


def _merton_theta(z, d, step):
    """(mu, sigma, lam, jump_mean, jump_std) and its Jacobian d theta / d z."""
    sd = d * math.exp(z[1])
    sigma = sd / math.sqrt(step)
    lam = math.exp(z[2]) / step
    m = d * z[3]
    s = sd * math.exp(z[4])
    kappa = math.expm1(m + 0.5 * s * s)
    mu = d * z[0] / step + 0.5 * sigma**2 + lam * kappa
    g = lam * (1.0 + kappa) * s * s
    jac = np.zeros((5, 5))
    jac[0] = [d / step, sigma**2 + g, lam * kappa, lam * (1.0 + kappa) * d, g]
    jac[1, 1] = sigma
    jac[2, 2] = lam
    jac[3, 3] = d
    jac[4, 1] = s
    jac[4, 4] = s
    return np.array([mu, sigma, lam, m, s]), jac


#: L-BFGS-B options of every start.
_LBFGSB = {"maxiter": 500, "ftol": 1e-12, "gtol": 1e-6}
#: A start is abandoned once an iterate comes this close (max |dz|) to an optimum already
#: found from an earlier start without having a lower value: it is descending into it.
_SAME_OPTIMUM = 0.05


def _multistart(fun, starts, bounds):
    """Best L-BFGS-B optimum over ``starts``, run in order.

    The first start runs to convergence; a later start stops early when an iterate enters
    the neighbourhood of an optimum found before (``_SAME_OPTIMUM`` in the scaled
    coordinates) with a value no lower than that optimum's, since it would only find it
    again; otherwise it runs to convergence and its optimum joins the list. (Skipping the
    GBM start when the data-driven optima beat its starting value is not safe: on 500
    simulated returns with 3 jumps a year it found a better optimum, at a bound.)"""
    best, found = None, []

    def watch(intermediate_result):
        x, f = intermediate_result.x, intermediate_result.fun
        for xo, fo in found:
            if f >= fo and np.max(np.abs(x - xo)) <= _SAME_OPTIMUM:
                raise StopIteration

    for z0 in starts:
        res = optimize.minimize(fun, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                                options=_LBFGSB, callback=watch if found else None)
        if res.status == 99:  # stopped by watch: a known optimum
            continue
        found.append((res.x, res.fun))
        if best is None or res.fun < best.fun:
            best = res
    return best


def _fit_one_merton(r: np.ndarray, step: float, label: str):
    d = float(np.std(r))
    if d <= 0.0:
        raise ValueError(f"returns of {label} are constant; cannot fit a jump diffusion")
    p_max = MERTON_MAX_JUMPS_PER_STEP
    obj = _MertonObjective(r, d, _poisson_k(p_max))
    big = float(np.max(np.abs(r - r.mean()))) / d + 1.0
    bounds = [(-big, big), (math.log(0.01), math.log(2.0)), (math.log(1e-6), math.log(p_max)),
              (-big, big), (math.log(MERTON_MIN_JUMP_TO_DIFFUSION), math.log(100.0 * big))]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    # starts: returns beyond 3 (robust) standard deviations taken as the jumps
    mean = float(r.mean())
    mad = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    out = np.abs(r - np.median(r)) > 3.0 * mad
    starts = []
    for p0 in (min(max(out.mean(), 0.005), 0.08), 0.02):
        sd0 = mad / d if mad > 0 else 0.7
        jumps = r[out] if out.sum() >= 2 else r
        s0 = max(float(np.std(jumps)) / (sd0 * d), 2.5)
        m0 = float(np.mean(jumps) - mean) / d if out.sum() >= 2 else 0.0
        z = np.array([mean / d, math.log(sd0), math.log(p0), m0, math.log(s0)])
        starts.append(np.clip(z, lo + 1e-3, hi - 1e-3))
    # and the nested GBM optimum (no jumps), so the fit is never worse than GBM
    starts.append(np.clip(np.array([mean / d, 0.0, lo[2], 0.0, math.log(3.0)]), lo, hi))
    best = _multistart(obj.value_grad, starts, bounds)
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
    identified = bool(free[2] and free[4])
    if not np.all(free):
        at = [names[i] for i in np.flatnonzero(~free)]
        _warn(f"{label}: Merton estimate(s) {at} at the identification/search bound "
              "(no rare large jumps found: lam at its floor or at "
              f"{MERTON_MAX_JUMPS_PER_STEP} per step, or jumps no larger than "
              f"{MERTON_MIN_JUMP_TO_DIFFUSION} x the diffusion); their standard "
              "errors are NaN", CalibrationWarning)
    elif not ok:
        _warn(f"{label}: the Merton Hessian is not positive definite; standard errors "
              "are NaN", CalibrationWarning)
    if not best.success:
        _warn(f"{label}: the Merton optimiser stopped without converging: "
              f"{best.message}", CalibrationWarning)
    q0 = obj.posterior_no_jump(z)
    return theta, cov, -float(best.fun), bool(best.success), q0, identified


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
    :func:`merton_logpdf` by L-BFGS-B with the analytic gradient.

    **Identification.** Left free, the likelihood of daily crypto returns is maximised by
    hundreds of small "jumps" a year (BTC: :math:`\lambda \approx 250`, jump size 3.4 %):
    a scale mixture of normals that fits fat tails, not jumps, and the likelihood of the
    Merton model is unbounded or flat in those directions (Honoré, "Pitfalls in estimating
    jump-diffusion models", 1998). The search is therefore restricted to what a jump means:
    rare, :math:`\lambda\Delta \le` ``MERTON_MAX_JUMPS_PER_STEP`` (0.1, one jump per ten
    steps on average), and large, :math:`s \ge` ``MERTON_MIN_JUMP_TO_DIFFUSION``
    :math:`\times\ \sigma\sqrt\Delta` (2). An estimate on one of these bounds means the
    data do not identify jumps: ``identified`` is False, its standard error NaN, and a
    :class:`CalibrationWarning` says so.

    **Search.** Scaled coordinates (``d`` the sample standard deviation per step):
    :math:`a/d` with :math:`a = (\mu - \sigma^2/2 - \lambda\kappa)\Delta`,
    :math:`\log(\sigma\sqrt\Delta/d)\in[\log 0.01, \log 2]`,
    :math:`\log(\lambda\Delta)\in[\log 10^{-6}, \log 0.1]`, :math:`m/d` bounded by the
    largest observed move and :math:`\log(s/(\sigma\sqrt\Delta)) \ge \log 2`. The Poisson
    sum runs to the fixed K whose omitted mass at :math:`\lambda\Delta = 0.1` is below
    1e-12. The log-likelihood and its gradient are one pass of a compiled, vectorised
    kernel (``marginlab.simulate._merton_kernel``). Three starts: returns beyond 3 robust
    (MAD) standard deviations taken as the jumps, 2 % jumps per step, and the nested GBM
    optimum (no jumps, so the fit is never worse than GBM); a later start is abandoned as
    soon as an iterate enters the neighbourhood (0.05 in the scaled coordinates) of an
    optimum already found with a value no lower; the best optimum is kept. (Before: six starts, no
    identification bounds, a per-evaluation truncation, numpy; see
    ``benchmarks/bench_calibration.py`` and BENCHMARKS.md for the fit times.) Standard
    errors come from the inverse of a numerical Hessian (central differences of the
    analytic gradient) mapped to the natural parameters by the delta method.

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
    ident = np.empty(k, dtype=bool)
    loglik = 0.0
    for j in range(k):
        theta, cov, ll, ok, q, ident[j] = _fit_one_merton(r[:, j], step, names[j])
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
                     _frozen_bool(conv), _frozen(corr), _frozen_bool(ident))

