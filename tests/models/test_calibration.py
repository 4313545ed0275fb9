"""Tests of marginlab.models.calibration and marginlab.models.diagnostics.

Oracles, per test: recovery of known parameters from long series simulated with
marginlab.simulate.simulate_paths (each estimate within 4 of its reported standard errors);
the arch package's own fits (GARCH, EWMA); closed forms (normal likelihood, GARCH
one-step forecast, moments of the Merton density); scipy (densities, quadrature,
numerical derivatives); statsmodels when installed (ACF, Ljung-Box), else direct formulas;
and the documented facts of the real data (skipped when it is absent).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from arch import arch_model  # noqa: E402
from arch.univariate import EWMAVariance, ZeroMean  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import integrate, optimize, stats  # noqa: E402

from marginlab.models import GARCH, GBM, Bootstrap, MertonJump  # noqa: E402
from marginlab.models import calibration as cal  # noqa: E402
from marginlab.models.calibration import (  # noqa: E402
    CalibrationWarning,
    EWMAFit,
    FHSFit,
    GARCHFit,
    GBMFit,
    MertonFit,
    fit,
    fit_ewma,
    fit_fhs,
    fit_garch,
    fit_gbm,
    fit_merton,
    merton_logpdf,
)
from marginlab.models.diagnostics import (  # noqa: E402
    acf,
    fit_standardized_t,
    ljung_box,
    qq_plot,
)
from marginlab.models.history import PriceHistory, read_prices, shared_data_dir  # noqa: E402
from marginlab.simulate import simulate_paths  # noqa: E402

DATA = shared_data_dir() or Path("/nonexistent/shared/data")
needs_data = pytest.mark.skipif(not (DATA / "btc_usd_daily.csv").is_file(),
                                reason="real data not available")
DAY = 1 / 365


def _returns(model, n, seed, dt=DAY):
    """Log returns of one simulated path, shape (n, n_assets)."""
    k = model.n_assets
    p = simulate_paths(model, np.full(k, 100.0), n_steps=n, dt=dt, n_paths=1, seed=seed)
    return np.diff(np.log(p[0]), axis=0)


def _within(res, truth, n_se=4.0):
    for name, value in truth.items():
        est, se = res.params[name], res.std_err[name]
        assert np.all(np.isfinite(se)) and np.all(se > 0), name
        z = (est - np.asarray(value)) / se
        assert np.all(np.abs(z) < n_se), f"{name}: estimate {est}, truth {value}, se {se}"


# ================================================================ GBM


def test_gbm_recovers_parameters_and_corr():
    # Oracle: recovery of known parameters, 4 reported SEs.
    truth = GBM(mu=[0.3, -0.1], sigma=[0.7, 0.5], corr=[[1.0, 0.6], [0.6, 1.0]])
    r = _returns(truth, 10_000, seed=11)
    res = fit_gbm(r, DAY)
    assert isinstance(res, GBMFit) and isinstance(res.model, GBM)
    _within(res, {"mu": [0.3, -0.1], "sigma": [0.7, 0.5]})
    assert abs(res.corr[0, 1] - 0.6) < 4 * res.corr_std_err[0, 1]
    np.testing.assert_allclose(res.model.corr, res.corr)
    assert res.n_params == 5 and res.n_obs == 10_000


def test_gbm_closed_forms():
    # Oracles: the MLE is the sample mean and 1/n covariance; loglik equals scipy's
    # multivariate normal at the MLE; SEs equal the inverse numerical Hessian of the
    # likelihood in (mu, sigma).
    rng = np.random.default_rng(5)
    r = rng.multivariate_normal([0.001, -0.0005], [[4e-4, 1e-4], [1e-4, 9e-4]], size=3000)
    res = fit_gbm(r, DAY)
    m, cov = r.mean(axis=0), np.cov(r, rowvar=False, bias=True)
    sigma = np.sqrt(np.diag(cov) / DAY)
    np.testing.assert_allclose(res.params["sigma"], sigma, rtol=1e-12)
    np.testing.assert_allclose(res.params["mu"], m / DAY + sigma**2 / 2, rtol=1e-12)
    ll = stats.multivariate_normal(m, cov).logpdf(r).sum()
    assert res.loglik == pytest.approx(ll, rel=1e-10)
    assert res.aic == pytest.approx(2 * 5 - 2 * ll)
    assert res.bic == pytest.approx(5 * math.log(3000) - 2 * ll)

    x = r[:, 0]

    def ll1(theta):
        mu, s = theta
        return stats.norm.logpdf(x, (mu - s * s / 2) * DAY, s * math.sqrt(DAY)).sum()

    theta = np.array([res.params["mu"][0], res.params["sigma"][0]])
    h = np.array([1e-3, 1e-5])
    hess = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
            hess[i, j] = (ll1(theta + ei + ej) - ll1(theta + ei - ej) - ll1(theta - ei + ej)
                          + ll1(theta - ei - ej)) / (4 * h[i] * h[j])
    se = np.sqrt(np.diag(np.linalg.inv(-hess)))
    np.testing.assert_allclose([res.std_err["mu"][0], res.std_err["sigma"][0]], se, rtol=1e-3)


def test_gbm_summary_frame():
    r = _returns(GBM(mu=[0.0, 0.0], sigma=[0.5, 0.5]), 500, seed=1)
    df = fit_gbm(pd.DataFrame(r, columns=["BTC", "ETH"])).to_frame()
    assert list(df.columns) == ["estimate", "std_err", "z"]
    assert ("BTC", "sigma") in df.index and ("BTC,ETH", "corr") in df.index
    assert df.attrs["method"] == "gbm" and df.attrs["n_obs"] == 500


# ================================================================ EWMA


def _ewma_loop(r, lam):
    """Hand-written RiskMetrics loop, started at arch's backcast."""
    n = r.shape[0]
    tau = min(75, n)
    w = 0.94 ** np.arange(tau)
    w /= w.sum()
    s = sum(w[i] * np.outer(r[i], r[i]) for i in range(tau))
    out = []
    for t in range(n):
        out.append(s.copy())
        s = lam * s + (1 - lam) * np.outer(r[t], r[t])
    return np.array(out), s


def test_ewma_matches_hand_loop_single_and_multi():
    # Oracle: a hand-written loop of the recursion (variances, covariances, forecast).
    r = _returns(GBM(mu=[0.0, 0.0], sigma=[0.6, 0.9], corr=[[1, 0.5], [0.5, 1]]), 400, seed=3)
    for lam in (0.94, 0.97):
        res = fit_ewma(r, lam=lam, step=DAY)
        series, last = _ewma_loop(r, lam)
        np.testing.assert_allclose(res.variance, np.diagonal(series, axis1=1, axis2=2),
                                   rtol=1e-12)
        np.testing.assert_allclose(res.forecast_variance, np.diag(last), rtol=1e-12)
        np.testing.assert_allclose(res.params["sigma"], np.sqrt(np.diag(last) / DAY), rtol=1e-12)
        c = last[0, 1] / math.sqrt(last[0, 0] * last[1, 1])
        assert res.corr[0, 1] == pytest.approx(c, rel=1e-12)
        np.testing.assert_array_equal(res.model.mu, 0.0)
        ll = sum(stats.multivariate_normal([0, 0], series[t]).logpdf(r[t]) for t in range(400))
        assert res.loglik == pytest.approx(ll, rel=1e-10)
    one = fit_ewma(r[:, 0], step=DAY)
    assert isinstance(one, EWMAFit) and one.model.n_assets == 1


def test_ewma_matches_arch():
    # Oracle: arch's ZeroMean + EWMAVariance(0.94) on percent returns.
    r = _returns(GARCH(omega=2e-5, alpha=0.1, beta=0.85), 1000, seed=4)[:, 0]
    res = fit_ewma(r, lam=0.94)
    a = ZeroMean(100 * r, volatility=EWMAVariance(0.94), rescale=False).fit(disp="off")
    np.testing.assert_allclose(res.volatility[:, 0], a.conditional_volatility / 100, rtol=1e-10)
    fc = a.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0] / 1e4
    assert res.forecast_variance[0] == pytest.approx(fc, rel=1e-10)
    assert res.loglik == pytest.approx(a.loglikelihood + r.size * math.log(100), rel=1e-10)


# ================================================================ GARCH


GJR_T = dict(omega=2e-5, alpha=0.08, beta=0.88, gamma=0.05, mu=5e-4)


def test_garch_matches_arch_fit():
    # Oracles: arch's own fit on the same data (parameters after scaling, to 1e-6
    # relative); the GJR one-step forecast recursion by hand; the likelihood of decimal
    # returns by scipy's Student-t density.
    r = _returns(GARCH(**GJR_T, dist="t", nu=6.0), 4000, seed=21)[:, 0]
    res = fit_garch(r, dist="t", gjr=True, step=DAY)
    assert isinstance(res, GARCHFit) and isinstance(res.model, GARCH)
    a = arch_model(100 * r, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t",
                   rescale=False).fit(disp="off")
    p = a.params
    scale = {"mu": 100, "omega": 1e4, "alpha": 1, "gamma": 1, "beta": 1, "nu": 1}
    arch_name = {"mu": "mu", "omega": "omega", "alpha": "alpha[1]", "gamma": "gamma[1]",
                 "beta": "beta[1]", "nu": "nu"}
    for k, s in scale.items():
        assert res.params[k][0] * s == pytest.approx(p[arch_name[k]], rel=1e-6)
        assert res.std_err[k][0] * s == pytest.approx(a.std_err[arch_name[k]], rel=1e-6)
    m = res.model
    assert m.step == DAY and m.dist == "t" and m.nu == pytest.approx(p["nu"], rel=1e-6)
    # one-step forecast from the last fitted state, by hand
    e = r[-1] - m.mu[0]
    s2 = res.conditional_volatility[-1, 0] ** 2
    s2_next = m.omega[0] + (m.alpha[0] + m.gamma[0] * (e < 0)) * e * e + m.beta[0] * s2
    assert m.sigma2_0[0] == pytest.approx(s2_next, rel=1e-8)
    # likelihood of the decimal returns
    nu = m.nu
    c = np.sqrt((nu - 2) / nu) * res.conditional_volatility[:, 0]
    ll = np.sum(stats.t.logpdf((r - m.mu[0]) / c, nu) - np.log(c))
    assert res.loglik == pytest.approx(ll, rel=1e-8)
    np.testing.assert_allclose(res.std_resid[:, 0], (r - m.mu[0]) / res.conditional_volatility[
        :, 0], rtol=1e-8)
    assert not res.constrained[0]


def test_garch_recovers_parameters():
    # Oracle: recovery of known parameters within 4 reported (robust) SEs.
    truth = dict(omega=1e-5, alpha=0.1, beta=0.85, mu=3e-4)
    r = _returns(GARCH(**truth), 10_000, seed=31)
    _within(fit_garch(r, step=DAY), truth)
    r = _returns(GARCH(**GJR_T, dist="t", nu=5.0), 10_000, seed=32)
    _within(fit_garch(r, dist="t", gjr=True, step=DAY), dict(GJR_T, nu=5.0))


def test_garch_multi_asset_ccc_t():
    # Oracles: the correlation of the residuals is recovered within 4 SEs of the elliptical
    # sample-correlation formula sqrt((1 + 2/(nu-4)) (1 - rho^2)^2 / n); the common nu
    # maximises scipy's multivariate-t likelihood of the residual vectors (and is recovered
    # within 4 SEs from the curvature of that likelihood).
    rho, nu, n = 0.5, 6.0, 6000
    truth = GARCH(omega=2e-5, alpha=0.08, beta=0.88, dist="t", nu=nu,
                  corr=[[1, rho], [rho, 1]])
    r = _returns(truth, n, seed=41)
    res = fit_garch(pd.DataFrame(r, columns=["A", "B"]), dist="t", step=DAY)
    se_rho = math.sqrt((1 + 2 / (nu - 4)) * (1 - rho**2) ** 2 / n)
    assert abs(res.corr[0, 1] - rho) < 4 * se_rho
    z, c = res.std_resid, res.corr

    def ll(v):
        return stats.multivariate_t(shape=c * (v - 2) / v, df=v).logpdf(z).sum()

    nu_hat = res.model.nu
    h = 1e-2
    assert ll(nu_hat) >= max(ll(nu_hat - h), ll(nu_hat + h))
    curv = (ll(nu_hat + h) - 2 * ll(nu_hat) + ll(nu_hat - h)) / h**2
    assert abs(nu_hat - nu) < 4 / math.sqrt(-curv)
    np.testing.assert_array_equal(res.params["nu"], [nu_hat, nu_hat])
    assert res.n_params == 2 * 5   # the two marginal fits (mu, omega, alpha, beta, nu)


def test_garch_persistence_constraint():
    # Oracle: a constrained MLE cannot beat the unconstrained one and satisfies its bound.
    r = _returns(GARCH(omega=1e-5, alpha=0.1, beta=0.87), 3000, seed=51)
    free = fit_garch(r)
    with pytest.warns(CalibrationWarning, match="stationarity bound"):
        tied = fit_garch(r, max_persistence=0.9)
    assert tied.constrained[0] and not free.constrained[0]
    assert tied.model.persistence[0] <= 0.9 + 1e-8
    assert tied.loglik <= free.loglik + 1e-6


# ================================================================ FHS


def test_fhs_bootstraps_own_residuals():
    # Oracles: the filter is fit_garch's (same parameters); the Bootstrap holds the
    # standardised residuals, re-standardised; persistence uses their E[z^2 1(z<0)].
    r = _returns(GARCH(**GJR_T, dist="t", nu=5.0), 3000, seed=61)
    res = fit_fhs(r, step=DAY)
    g = fit_garch(r, dist="t", gjr=True, step=DAY)
    assert isinstance(res, FHSFit) and isinstance(res.model.dist, Bootstrap)
    for k in ("mu", "omega", "alpha", "gamma", "beta"):
        assert res.params[k][0] == pytest.approx(g.params[k][0], rel=1e-12)
    assert "nu" not in res.params and res.model.nu is None
    z = res.std_resid[:, 0]
    np.testing.assert_allclose(res.model.dist.residuals[:, 0], (z - z.mean()) / z.std(),
                               rtol=1e-12)
    zz = (z - z.mean()) / z.std()
    neg = np.mean(np.where(zz < 0, zz**2, 0))
    m = res.model
    assert m.persistence[0] == pytest.approx(m.alpha[0] + m.beta[0] + m.gamma[0] * neg)
    assert m.sigma2_0[0] == pytest.approx(g.model.sigma2_0[0], rel=1e-12)
    paths = simulate_paths(m, 100.0, n_steps=3, dt=DAY, n_paths=50, seed=1)
    assert paths.shape == (50, 4, 1) and np.all(np.isfinite(paths))


def test_fhs_multi_asset_joint_rows():
    # Oracle: the bootstrap rows are exactly those where every asset has a return.
    r = _returns(GARCH(omega=2e-5, alpha=0.08, beta=0.88, corr=[[1, 0.7], [0.7, 1]]), 2000,
                 seed=71)
    df = pd.DataFrame(r, columns=["A", "B"])
    df.iloc[:150, 1] = np.nan           # B starts later
    df.iloc[1000, 0] = np.nan           # A misses one step
    res = fit_fhs(df, dist="normal", gjr=False)
    joint = np.flatnonzero(df.notna().all(axis=1).to_numpy())
    np.testing.assert_array_equal(res.bootstrap_rows, joint)
    assert res.model.dist.residuals.shape == (joint.size, 2)
    assert np.isnan(res.std_resid[0, 1]) and np.isfinite(res.std_resid[0, 0])
    emp = np.corrcoef(res.model.dist.residuals, rowvar=False)[0, 1]
    assert abs(emp - 0.7) < 4 * (1 - 0.49) / math.sqrt(joint.size)
    assert res.arch_results[1].nobs == 1850


# ================================================================ Merton


def test_merton_density_closed_forms():
    # Oracles: scipy quadrature of the density (total mass 1, mean and variance of the
    # closed forms); lam = 0 gives scipy's normal; the Poisson truncation leaves < 1e-12.
    mu, sig, lam, m, s, dt = 0.2, 0.5, 40.0, -0.05, 0.1, DAY
    f = lambda x: math.exp(merton_logpdf(x, mu, sig, lam, m, s, dt))  # noqa: E731
    pts = [-0.1, 0.0]
    mass = integrate.quad(f, -2, 2, points=pts, limit=200)[0]
    mean = integrate.quad(lambda x: x * f(x), -2, 2, points=pts, limit=200)[0]
    var = integrate.quad(lambda x: x * x * f(x), -2, 2, points=pts, limit=200)[0] - mean**2
    kappa = math.expm1(m + s * s / 2)
    assert mass == pytest.approx(1.0, abs=1e-9)
    assert mean == pytest.approx((mu - sig**2 / 2 - lam * kappa) * dt + lam * dt * m, abs=1e-10)
    assert var == pytest.approx(sig**2 * dt + lam * dt * (m * m + s * s), rel=1e-8)
    x = np.linspace(-0.1, 0.1, 7)
    np.testing.assert_allclose(merton_logpdf(x, mu, sig, 0.0, m, s, dt),
                               stats.norm.logpdf(x, (mu - sig**2 / 2) * dt, sig * math.sqrt(dt)),
                               rtol=1e-12)
    for p in (1e-6, 0.01, 0.3, 1.0):
        k = cal._poisson_k(p)
        assert stats.poisson.sf(k, p) < 1e-12 <= stats.poisson.sf(k - 1, p) or k == 0


def test_merton_gradient_matches_finite_differences():
    # Oracle: scipy's finite-difference gradient of the same likelihood.
    r = _returns(MertonJump(mu=0.1, sigma=0.5, lam=30.0, jump_mean=-0.02, jump_std=0.06), 500,
                 seed=81)[:, 0]
    obj = cal._MertonObjective(r, float(r.std()))
    z = np.array([0.02, math.log(0.7), math.log(0.05), -0.4, math.log(2.0)])
    g = obj.value_grad(z)[1]
    fd = optimize.approx_fprime(z, lambda v: obj.value_grad(v)[0], 1e-7)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-3)


def test_merton_recovers_parameters():
    # Oracle: recovery of known parameters within 4 SEs of the inverse Hessian.
    truth = dict(mu=0.2, sigma=0.5, lam=25.0, jump_mean=-0.03, jump_std=0.08)
    r = _returns(MertonJump(**truth), 20_000, seed=91)
    res = fit_merton(r, DAY)
    assert isinstance(res, MertonFit) and isinstance(res.model, MertonJump)
    _within(res, truth)
    assert res.converged[0]
    ll = merton_logpdf(r[:, 0], *(res.params[k][0] for k in truth), DAY).sum()
    assert res.loglik == pytest.approx(ll, rel=1e-10)
    assert res.jump_probability.shape == (20_000, 1)


def test_merton_multi_asset_corr():
    # Oracle: recovery of the diffusion correlation within 4 bivariate-normal SEs
    # (1 - rho^2)/sqrt(n).
    truth = MertonJump(mu=0.1, sigma=[0.5, 0.6], lam=[20.0, 30.0], jump_mean=-0.03,
                       jump_std=0.08, corr=[[1, 0.5], [0.5, 1]])
    r = _returns(truth, 4000, seed=0)
    res = fit_merton(r, DAY)
    assert abs(res.corr[0, 1] - 0.5) < 4 * 0.75 / math.sqrt(4000)
    np.testing.assert_allclose(res.model.corr, res.corr)


def test_merton_on_gbm_data():
    # Oracle: nested models. GBM is Merton with lam = 0, so the Merton likelihood is at
    # least GBM's, and on GBM data the likelihood-ratio statistic stays below the
    # chi-square(3) 1e-4 quantile (less the cost of lam's floor); the total volatility is
    # the true 0.5 (4 GBM SEs). The
    # jump parameters are not identified, so some sit on a search bound (a warning, NaN SEs).
    r = _returns(GBM(mu=0.0, sigma=0.5), 2000, seed=2)
    g = fit_gbm(r)
    with pytest.warns(CalibrationWarning, match="bound"):
        res = fit_merton(r)
    lr = 2 * (res.loglik - g.loglik)
    # lam's floor (1e-6 jumps per step) costs at most n * 1e-6 of log-likelihood
    assert -2 * 2000 * 1e-6 < lr < stats.chi2.isf(1e-4, 3)
    assert not res.identified[0]
    p = {k: v[0] for k, v in res.params.items()}
    total = math.sqrt(p["sigma"] ** 2 + p["lam"] * (p["jump_mean"] ** 2 + p["jump_std"] ** 2))
    assert abs(total - 0.5) < 4 * g.std_err["sigma"][0]
    assert np.any(np.isnan([res.std_err[k][0] for k in ("lam", "jump_mean", "jump_std")]))


# ================================================================ dispatcher, inputs


def test_dispatcher_and_price_history():
    # Oracle: fit(model=name) returns what the named function returns.
    r = _returns(GARCH(omega=1e-5, alpha=0.1, beta=0.85), 600, seed=5)[:, 0]
    t = np.datetime64("2024-01-01") + np.arange(601).astype("timedelta64[h]")
    h = PriceHistory(t, 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)])))
    assert h.step == 1 / 8760
    res = fit(h, "gbm")
    assert res.step == 1 / 8760
    assert res.params["sigma"][0] == pytest.approx(np.std(r) / math.sqrt(1 / 8760), rel=1e-9)
    kinds = {"gbm": GBMFit, "ewma": EWMAFit, "garch": GARCHFit, "fhs": FHSFit}
    for name, cls in kinds.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            out = fit(h, name)
        assert type(out) is cls and out.method == name
    with pytest.raises(ValueError, match="model must be one of"):
        fit(h, "heston")
    with pytest.raises(ValueError, match="disagrees"):
        fit(h, "gbm", step=DAY)


def test_input_validation():
    r = np.random.default_rng(0).standard_normal(200) * 0.02
    with pytest.raises(ValueError, match="percent"):
        fit_gbm(100 * r)
    bad = r.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match=r"must be finite, got nan at row 7, column 0"):
        fit_gbm(bad)
    with pytest.raises(ValueError, match="step must be in"):
        fit_gbm(r, step=0.0)
    with pytest.raises(TypeError, match="step"):
        fit_gbm(r, step="daily")
    with pytest.raises(ValueError, match="lam must be in"):
        fit_ewma(r, lam=1.0)
    with pytest.raises(ValueError, match="dist must be"):
        fit_garch(r, dist="skewt")
    with pytest.raises(ValueError, match="at least 50"):
        fit_garch(r[:20])
    with pytest.raises(ValueError, match="max_persistence"):
        fit_garch(r, max_persistence=1.0)
    with pytest.raises(TypeError, match="read_prices"):
        fit_gbm("btc.csv")


# ================================================================ diagnostics


def test_acf_and_ljung_box():
    # Oracles: statsmodels' acf/acorr_ljungbox if installed; always the direct formulas
    # (np.correlate for the ACF, Q = n(n+2) sum rho_k^2/(n-k) with scipy's chi-square).
    x = np.random.default_rng(3).standard_t(5, 800) ** 2
    a = acf(x, 12)
    c = x - x.mean()
    direct = np.correlate(c, c, mode="full")[c.size - 1:c.size + 12] / (c @ c)
    np.testing.assert_allclose(a, direct, rtol=1e-12)
    lb = ljung_box(x, 12, model_df=2)
    k = np.arange(1, 13)
    q = 800 * 802 * np.cumsum(direct[1:] ** 2 / (800 - k))
    np.testing.assert_allclose(lb.stat, q, rtol=1e-12)
    np.testing.assert_allclose(lb.pvalue[2:], stats.chi2.sf(q[2:], k[2:] - 2), rtol=1e-12)
    assert np.all(np.isnan(lb.pvalue[:2]))
    try:
        from statsmodels.stats.diagnostic import acorr_ljungbox
        from statsmodels.tsa.stattools import acf as sm_acf
    except ImportError:
        return
    np.testing.assert_allclose(a, sm_acf(x, nlags=12), rtol=1e-10)
    sm = acorr_ljungbox(x, lags=12, model_df=2)
    np.testing.assert_allclose(lb.stat, sm["lb_stat"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(lb.pvalue[2:], sm["lb_pvalue"].to_numpy()[2:], rtol=1e-10)
    assert list(lb.to_frame().columns) == ["lb_stat", "lb_pvalue"]


def test_ljung_box_detects_clustering():
    # Oracle: the Ljung-Box null. Squared GARCH returns are autocorrelated (tiny p-value);
    # the squared standardised residuals of the correct fit are not (p above 1e-3).
    r = _returns(GARCH(omega=1e-5, alpha=0.12, beta=0.85), 5000, seed=7)[:, 0]
    assert ljung_box(r**2, 10).pvalue[-1] < 1e-6
    z = fit_garch(r).std_resid[:, 0]
    assert ljung_box(z**2, 10).pvalue[-1] > 1e-3
    with pytest.raises(ValueError, match="lags"):
        ljung_box(z, 0)
    with pytest.raises(ValueError, match="1-D"):
        acf(np.ones((3, 3)), 1)


def test_qq_plot_and_standardized_t():
    # Oracle: recovery of nu from unit-variance t draws within 4 SEs (curvature of scipy's
    # t log-likelihood); the plot is a Figure (Agg backend, nothing drawn to screen).
    nu = 5.0
    z = np.random.default_rng(8).standard_t(nu, 20_000) * math.sqrt((nu - 2) / nu)
    nu_hat = fit_standardized_t(z)

    def ll(v):
        c = math.sqrt((v - 2) / v)
        return np.sum(stats.t.logpdf(z / c, v)) - z.size * math.log(c)

    h = 1e-2
    curv = (ll(nu_hat + h) - 2 * ll(nu_hat) + ll(nu_hat - h)) / h**2
    assert abs(nu_hat - nu) < 4 / math.sqrt(-curv)
    assert isinstance(qq_plot(z[:500]), Figure)
    assert isinstance(qq_plot(z[:500], dist="t"), Figure)
    fig = Figure()
    ax = fig.add_subplot()
    assert qq_plot(z[:500], dist="t", ax=ax, nu=5.0) is fig
    with pytest.raises(ValueError, match="dist"):
        qq_plot(z, dist="cauchy")


# ================================================================ real data


@needs_data
def test_real_btc_daily_all_fits():
    # Oracle: stylised facts of BTC daily returns: fat tails (GARCH-t nu < 10), a
    # stationary GARCH (persistence < 1), jumps (Merton lam > 0 with a finite SE).
    h = read_prices(DATA / "btc_usd_daily.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        out = {
            "gbm": fit(h, "gbm"),
            "ewma": fit(h, "ewma"),
            "garch": fit(h, "garch"),
            "garch_t": fit(h, "garch", dist="t", gjr=True),
            "merton": fit(h, "merton"),
            "fhs": fit(h, "fhs"),
        }
    gt = out["garch_t"]
    assert gt.params["nu"][0] < 10
    assert gt.model.persistence[0] < 1 and out["fhs"].model.persistence[0] < 1
    # Merton: daily BTC does not identify rare large jumps (the unrestricted MLE was a
    # variance mixture, lam ~ 250 a year); lam sits on the 0.1-per-step bound and says so
    assert out["merton"].params["lam"][0] > 0
    assert not out["merton"].identified[0]
    assert np.isnan(out["merton"].std_err["lam"][0])
    assert 0.3 < out["gbm"].params["sigma"][0] < 1.2
    for res in out.values():
        assert np.isfinite(res.loglik) and res.n_obs == 2149
        assert isinstance(res.summary().as_frame(), pd.DataFrame)
        p = simulate_paths(res.model, h.prices[-1], n_steps=2, dt=h.step, n_paths=20, seed=1)
        assert np.all(np.isfinite(p))
    # fat tails beat the normal: AIC of GARCH-t below GARCH-normal below GBM
    assert gt.aic < out["garch"].aic < out["gbm"].aic


def test_merton_identifies_rare_jumps_under_a_realistic_diffusion():
    """Oracle: simulated recovery. Ten years of daily returns from a Merton model with a
    crypto-like diffusion (60 % a year) and 12 crash-like jumps a year (mean -5 %, sd 10 %):
    the fit flags the jumps as identified and recovers lam, jump_mean and jump_std within 4
    standard errors (inverse Hessian), and sigma within 4 SEs."""
    truth = dict(mu=0.0, sigma=0.6, lam=12.0, jump_mean=-0.05, jump_std=0.10)
    r = _returns(MertonJump(**truth), 3650, seed=17)
    res = fit_merton(r, DAY)
    assert res.identified[0]
    for k in ("sigma", "lam", "jump_mean", "jump_std"):
        est, se = res.params[k][0], res.std_err[k][0]
        assert np.isfinite(se) and abs(est - truth[k]) < 4 * se, (k, est, truth[k], se)


def test_garch_degenerate_fits_are_flagged_and_fall_back():
    """Oracles: (1) no_arch: on i.i.d. normal returns (seed 0) arch's MLE has alpha = 0; the
    fallback is the documented EWMA-as-GARCH, whose sigma2_0 equals a brute-force run of
    its recursion; (2) nu_floor: on GARCH-t data with nu = 2.5 the free fit's nu is below 4
    and the default fit sits on the floor nu = 4; (3) fallback=False keeps the fit, flagged."""
    r = np.random.default_rng(0).standard_normal(300) * 0.02
    raw = fit_garch(r, fallback=False)
    assert raw.flags == (("no_arch",),) and raw.fallback == ("",)
    f = fit_garch(r)
    assert f.fallback == ("ewma",)
    p = {k: float(v[0]) for k, v in f.params.items()}
    assert p["alpha"] == pytest.approx(0.06) and p["beta"] == pytest.approx(0.9999 - 0.06)
    assert p["omega"] == pytest.approx((1 - 0.9999) * np.var(r), rel=1e-12)
    s2 = np.mean((r - p["mu"]) ** 2)
    for x in r:
        s2 = p["omega"] + p["alpha"] * (x - p["mu"]) ** 2 + p["beta"] * s2
    assert f.model.sigma2_0[0] == pytest.approx(s2, rel=1e-10)
    assert f.summary().attrs["fallback"] == {"asset0": "ewma"}
    heavy = GARCH(omega=2e-5, alpha=0.08, beta=0.88, dist="t", nu=2.5)
    y = _returns(heavy, 3000, seed=3)
    free = fit_garch(y, dist="t", min_nu=None)
    assert free.params["nu"][0] < 4.0 and "nu_floor" not in free.flags[0]
    floored = fit_garch(y, dist="t")
    assert floored.params["nu"][0] == pytest.approx(4.0, abs=1e-6)
    assert "nu_floor" in floored.flags[0] and "nu_floor" in floored.fallback[0]
    assert floored.loglik <= free.loglik + 1e-6        # a constrained MLE


@pytest.mark.skipif(not (DATA / "btc_usd_daily.csv").is_file(),
                    reason="real market data (../shared/data) not available")
def test_gamma_minus_alpha_falls_back_to_the_symmetric_fit():
    """Oracle: the symmetric GARCH-t fit itself. On the BTC window 2023-04-15 .. 2024-04-13
    the GJR-t MLE has gamma = -alpha (falls do not move the variance); the fallback equals
    fit_garch(gjr=False) on the same returns, with gamma = 0."""
    r = read_prices(DATA / "btc_usd_daily.csv").log_returns()[1200:1565]
    f = fit_garch(r, dist="t", gjr=True)
    assert "gamma_minus_alpha" in f.flags[0] and "symmetric" in f.fallback[0]
    sym = fit_garch(r, dist="t", gjr=False)
    assert f.params["gamma"][0] == 0.0
    for k in ("omega", "alpha", "beta", "nu"):
        assert f.params[k][0] == pytest.approx(sym.params[k][0], rel=1e-10)
    assert f.model.sigma2_0[0] == pytest.approx(sym.model.sigma2_0[0], rel=1e-10)
