"""The compiled Merton likelihood kernel and the faster Merton search (issue 12).

Oracles: a brute-force scipy mixture (``poisson.pmf * norm.pdf`` summed over k) for the
kernel's log-likelihood and no-jump posterior, its central finite differences and the
closed-form numpy gradient of the previous implementation for the kernel's gradient; and
the previous implementation of the fit (numpy objective, three starts each run to
convergence, kept verbatim below from commit e6599cb) for the results of ``fit_merton``,
on simulated series always and on the shared BTC daily closes when present.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

from marginlab.models import GBM, MertonJump
from marginlab.models.calibration import CalibrationWarning, fit_merton
from marginlab.models.calibration import merton as mm
from marginlab.models.history import read_prices, shared_data_dir
from marginlab.simulate import simulate_paths
from marginlab.simulate._merton_kernel import merton_mixture_loglik

DAY = 1 / 365
DATA = shared_data_dir() or Path("/nonexistent/shared/data")
BTC = DATA / "btc_usd_daily.csv"


def _returns(model, n, seed):
    p = simulate_paths(model, 100.0, n_steps=n, dt=DAY, n_paths=1, seed=seed)
    return np.diff(np.log(p[0, :, 0]))


def _brute(r, a, v0, p, m, s2, kmax):
    """log f(r_t) and the posterior of no jump, by scipy's pmf and pdf summed over k."""
    k = np.arange(kmax + 1)
    dens = stats.poisson.pmf(k, p) * stats.norm.pdf(r[:, None], a + k * m,
                                                      np.sqrt(v0 + k * s2))
    f = dens.sum(axis=1)
    return np.log(f), dens[:, 0] / f


def _numpy_grad(r, a, v0, p, m, s2, kmax):
    """Gradient of the log-likelihood in (a, v0, p, m, s2): the numpy formulas of the
    previous implementation (posterior-weighted scores of each normal term)."""
    kk = np.arange(kmax + 1, dtype=np.float64)
    logw = kk * math.log(p) - p - np.array([math.lgamma(x + 1.0) for x in kk])
    var = v0 + kk * s2
    e = r[:, None] - (a + kk * m)
    terms = logw - 0.5 * (math.log(2 * math.pi) + np.log(var) + e * e / var)
    q = np.exp(terms - np.logaddexp.reduce(terms, axis=1)[:, None])
    de, dv = e / var, 0.5 * (e * e / var - 1.0) / var
    return np.array([np.sum(q * de), np.sum(q * dv), np.sum(q * (kk / p - 1.0)),
                     np.sum(q * de * kk), np.sum(q * dv * kk)])


GRID = [  # (a, v0, p, m, s2, kmax): BTC-like, rare big jumps, many small ones, edges
    (0.001, 0.03**2, 0.1, -0.05, 0.1**2, 7),
    (0.0, 0.02**2, 1e-6, 0.0, 0.06**2, 7),
    (-0.002, 0.01**2, 0.05, 0.08, 0.02**2, 3),
    (0.0005, 0.04**2, 0.3, -0.01, 0.05**2, 12),
    (0.0, 0.03**2, 0.1, 0.0, 0.0, 7),  # jumps with no size: a normal
]


@pytest.mark.parametrize("par", GRID)
def test_kernel_value_and_posterior_equal_the_brute_force_mixture(par):
    """Oracle: brute force, scipy's Poisson pmf times normal pdf summed over k (returns
    spread over +-0.35, where no density underflows)."""
    r = np.concatenate([np.linspace(-0.35, 0.35, 141),
                        np.random.default_rng(3).standard_normal(200) * 0.04])
    g, q0 = np.empty(5), np.empty(r.size)
    ll = merton_mixture_loglik(r, *par, g, q0)
    ref, ref_q0 = _brute(r, *par)
    assert ll == pytest.approx(ref.sum(), rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(q0, ref_q0, rtol=1e-9, atol=1e-14)
    # q0 of another length is left alone and the value does not depend on it
    untouched = np.full(3, 7.0)
    assert merton_mixture_loglik(r, *par, g, untouched) == ll
    assert np.all(untouched == 7.0)


@pytest.mark.parametrize("par", GRID[:4])
def test_kernel_gradient_equals_numpy_formulas_and_finite_differences(par):
    """Oracles: the closed-form numpy gradient of the previous implementation (to
    rounding), and central differences of the brute-force scipy log-likelihood."""
    r = np.random.default_rng(5).standard_normal(300) * 0.04
    r[::37] -= 0.15  # a few crash-like returns
    g = np.empty(5)
    merton_mixture_loglik(r, *par, g, np.empty(0))
    np.testing.assert_allclose(g, _numpy_grad(r, *par), rtol=1e-10,
                               atol=1e-10 * np.max(np.abs(g)))
    x = np.array(par[:5], dtype=np.float64)
    fd = np.empty(5)
    for j in range(5):
        h = 1e-6 * max(abs(x[j]), 1e-3 if j != 1 else x[1])
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        fd[j] = (_brute(r, *xp, par[5])[0].sum() - _brute(r, *xm, par[5])[0].sum()) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(g)))


# ----------------------------------------------------------------- the previous fit
class _OldObjective:
    """The numpy objective of commit e6599cb (verbatim but for names)."""

    def __init__(self, r, d, kmax):
        self.r, self.d = r, d
        self.kk = np.arange(kmax + 1, dtype=np.float64)
        self.lgam = np.array([math.lgamma(x + 1.0) for x in self.kk])

    def natural(self, z):
        d = self.d
        v0 = (d * math.exp(z[1])) ** 2
        return d * z[0], v0, math.exp(z[2]), d * z[3], v0 * math.exp(2.0 * z[4])

    def terms(self, a, v0, p, m, s2):
        kk = self.kk
        logw = kk * math.log(p) - p - self.lgam
        var = v0 + kk * s2
        e = self.r[:, None] - (a + kk * m)
        return logw - 0.5 * (math.log(2 * math.pi) + np.log(var) + e * e / var), kk, e, var

    def value_grad(self, z):
        a, v0, p, m, s2 = self.natural(z)
        terms, kk, e, var = self.terms(a, v0, p, m, s2)
        mx = terms.max(axis=1)
        lse = mx + np.log(np.sum(np.exp(terms - mx[:, None]), axis=1))
        q = np.exp(terms - lse[:, None])
        de = e / var
        dv = 0.5 * (e * e / var - 1.0) / var
        qde, qdv = q * de, q * dv
        g_a, g_m = qde.sum(), qde.sum(axis=0) @ kk
        g_v0, g_s2 = qdv.sum(), qdv.sum(axis=0) @ kk
        g_p = q.sum(axis=0) @ (kk / p - 1.0)
        grad = np.array([g_a * self.d, 2.0 * (g_v0 * v0 + g_s2 * s2), g_p * p, g_m * self.d,
                         2.0 * g_s2 * s2])
        return -float(np.sum(lse)), -grad

    def posterior_no_jump(self, z):
        terms, *_ = self.terms(*self.natural(z))
        mx = terms.max(axis=1)
        return np.exp(terms[:, 0] - mx - np.log(np.sum(np.exp(terms - mx[:, None]), axis=1)))


def _old_fit(r, step):
    """Search, Hessian and delta method of commit e6599cb: (theta, se, loglik, q0)."""
    d = float(np.std(r))
    p_max = 0.1
    obj = _OldObjective(r, d, mm._poisson_k(p_max))
    big = float(np.max(np.abs(r - r.mean()))) / d + 1.0
    bounds = [(-big, big), (math.log(0.01), math.log(2.0)), (math.log(1e-6), math.log(p_max)),
              (-big, big), (math.log(2.0), math.log(100.0 * big))]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
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
    starts.append(np.clip(np.array([mean / d, 0.0, lo[2], 0.0, math.log(3.0)]), lo, hi))
    best = None
    for z0 in starts:
        res = optimize.minimize(obj.value_grad, z0, jac=True, method="L-BFGS-B",
                                bounds=bounds, options={"maxiter": 500, "ftol": 1e-12,
                                                        "gtol": 1e-6})
        if best is None or res.fun < best.fun:
            best = res
    z = best.x
    h = 1e-5
    hess = np.empty((5, 5))
    for j in range(5):
        zp, zm = z.copy(), z.copy()
        zp[j] += h
        zm[j] -= h
        hess[:, j] = (obj.value_grad(zp)[1] - obj.value_grad(zm)[1]) / (2.0 * h)
    hess = 0.5 * (hess + hess.T)
    free = (z - lo > 1e-6) & (hi - z > 1e-6)
    theta, jac = mm._merton_theta(z, d, step)
    cov_z = np.zeros((5, 5))
    cov_z[np.ix_(free, free)] = np.linalg.inv(hess[np.ix_(free, free)])
    se = np.sqrt(np.diag(jac @ cov_z @ jac.T))
    se[~free] = np.nan
    return theta, se, -float(best.fun), obj.posterior_no_jump(z), bool(free[2] and free[4])


KEYS = ["mu", "sigma", "lam", "jump_mean", "jump_std"]


def _assert_same_fit(r, identified_params=KEYS):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        new = fit_merton(r, DAY)
    theta, se, ll, q0, ident = _old_fit(r, DAY)
    # optimiser tolerance: ftol 1e-12 on values of order n, gtol 1e-6 in scaled coordinates
    assert new.loglik == pytest.approx(ll, abs=1e-7 * r.size)
    assert new.identified[0] == ident
    for i, key in enumerate(KEYS):
        if key in identified_params:
            assert new.params[key][0] == pytest.approx(theta[i], rel=1e-4, abs=1e-5), key
            if np.isfinite(se[i]):
                assert new.std_err[key][0] == pytest.approx(se[i], rel=1e-3), key
            else:
                assert np.isnan(new.std_err[key][0]), key
    np.testing.assert_allclose(1.0 - new.jump_probability[:, 0], q0, atol=1e-4)


def test_fit_equals_previous_implementation_on_rare_jumps():
    """Oracle: the previous implementation (three full starts, numpy objective) on ten
    years of simulated daily returns with identified jumps (lam 12/yr, 60 % diffusion)."""
    truth = MertonJump(mu=0.0, sigma=0.6, lam=12.0, jump_mean=-0.05, jump_std=0.10)
    _assert_same_fit(_returns(truth, 3650, seed=17))


def test_fit_equals_previous_implementation_on_a_short_window():
    """Oracle: the previous implementation, on one simulated year of BTC-like returns."""
    truth = MertonJump(mu=0.0, sigma=0.5, lam=12.0, jump_mean=-0.05, jump_std=0.1)
    _assert_same_fit(_returns(truth, 365, seed=1))


def test_fit_equals_previous_implementation_on_gbm():
    """Oracle: the previous implementation on GBM data, where the jump size is not
    identified (lam at its floor, the likelihood flat in jump_mean): loglik, the diffusion
    and lam agree; jump_mean and jump_std are free along a flat ridge."""
    _assert_same_fit(_returns(GBM(mu=0.0, sigma=0.5), 2000, seed=2),
                     identified_params=["mu", "sigma", "lam"])


@pytest.mark.skipif(not BTC.is_file(), reason="shared BTC data not available")
@pytest.mark.parametrize("n", [365, 2149])
def test_fit_equals_previous_implementation_on_btc(n):
    """Oracle: the previous implementation on the last n BTC daily returns (lam on its
    0.1-per-step bound: not identified, same estimates and NaN standard errors)."""
    r = read_prices(BTC).log_returns().reshape(-1)
    _assert_same_fit(r[-n:])


def test_fit_equals_previous_implementation_where_the_gbm_start_wins():
    """Oracle: the previous implementation, on 500 simulated returns with 3 large jumps a
    year (seed 103) where the best optimum (jump sd on its 2 x diffusion bound, not
    identified) is reached only from the nested GBM start, not from the data-driven ones."""
    truth = MertonJump(mu=0.0, sigma=0.8, lam=3.0, jump_mean=-0.1, jump_std=0.15)
    _assert_same_fit(_returns(truth, 500, seed=103), identified_params=["sigma", "lam"])
