"""Market models of :mod:`marginlab.models.market`: validation and closed forms.

Oracles, per test: the models' documented parameter ranges (each error names the argument
and the property that fails); closed forms (GARCH unconditional variance
omega / (1 - persistence), GJR persistence alpha + beta + gamma / 2); the definition of
standardised residuals; a self-consistency law (perfectly correlated assets with equal
volatilities have equal log returns).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from marginlab.models import GARCH, GBM, Bootstrap, MertonJump
from marginlab.simulate import simulate_paths

NAN, INF = float("nan"), float("inf")
DT = 1.0 / 365.0

BASE = {
    "GBM": (GBM, {"mu": 0.05, "sigma": 0.6}),
    "MertonJump": (MertonJump, {"mu": 0.05, "sigma": 0.5, "lam": 10.0, "jump_mean": -0.02,
                                "jump_std": 0.06}),
    "GARCH": (GARCH, {"omega": 1e-6, "alpha": 0.1, "beta": 0.85}),
}  # fmt: skip
MODEL_NAMES = list(BASE)


def build(name: str, **overrides):
    cls, kw = BASE[name]
    return cls(**{**kw, **overrides})


def resid(n_obs: int = 400, n_assets: int = 2, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(6.0, size=(n_obs, n_assets)) * 2.0 + 0.3


# --------------------------------------------------------------------------- correlation
NOT_PSD = [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]  # smallest eigenvalue -0.8


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(
    "corr, pattern",
    [
        pytest.param([[1.0, 0.5], [0.4, 1.0]], r"corr is not symmetric", id="asymmetric"),
        pytest.param([[1.0, 0.5], [0.5, 0.9]], r"corr must have a unit diagonal", id="diagonal"),
        pytest.param(NOT_PSD, r"corr is not positive semi-definite.*-0\.8", id="not-psd"),
        pytest.param([[1.0, 1.2], [1.2, 1.0]], r"corr entries must lie in \[-1, 1\]", id="range"),
        pytest.param([[1.0, 0.5, 0.2]], r"corr must be a square", id="not-square"),
        pytest.param([[1.0, NAN], [NAN, 1.0]], r"corr must be finite", id="nan"),
    ],
)
def test_bad_corr_names_the_failing_property(name, corr, pattern):
    """Oracle (API contract): each invalid correlation matrix raises ValueError naming
    ``corr`` and the property that fails (symmetry, unit diagonal, PSD, range, shape)."""
    with pytest.raises(ValueError, match=pattern):
        build(name, corr=corr)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_corr_of_wrong_size_raises(name):
    """Oracle (API contract): a 2 x 2 corr with 3-asset parameters raises ValueError naming
    corr and both asset counts."""
    param = "alpha" if name == "GARCH" else "sigma"
    values = [0.05, 0.06, 0.07] if name == "GARCH" else [0.5, 0.6, 0.7]
    with pytest.raises(ValueError, match=r"(?s)(?=.*corr)(?=.*\b3\b)(?=.*\b2\b).*assets"):
        build(name, corr=np.eye(2), **{param: values})


# --------------------------------------------------------------------------- finite params
FINITE_CASES = [
    (name, param)
    for name, (_, kw) in BASE.items()
    for param in kw
] + [("GARCH", "gamma"), ("GARCH", "mu"), ("GARCH", "sigma2_0"), ("GARCH", "step")]


@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name, param", FINITE_CASES)
def test_non_finite_parameter_raises_naming_it(name, param, bad):
    """Oracle (API contract): NaN or +-inf in any parameter (scalar or inside a vector)
    raises ValueError whose message starts with the parameter's name."""
    with pytest.raises(ValueError, match=rf"^{param} must be finite"):
        build(name, **{param: bad})
    if param != "step":
        with pytest.raises(ValueError, match=rf"^{param} must be finite.*index 1"):
            build(name, **{param: [0.01, bad, 0.02]})


def test_non_finite_nu_raises():
    """Oracle (API contract): nu = NaN or inf raises naming ``nu``."""
    for bad in (NAN, INF):
        with pytest.raises(ValueError, match=r"^nu must be finite"):
            build("GARCH", dist="t", nu=bad)


@pytest.mark.parametrize(
    "name, param",
    [("GBM", "sigma"), ("MertonJump", "sigma"), ("MertonJump", "lam"),
     ("MertonJump", "jump_std"), ("GARCH", "alpha"), ("GARCH", "beta")],
)  # fmt: skip
def test_negative_scale_parameter_raises(name, param):
    """Oracle (documented ranges): sigma, lam, jump_std, alpha, beta must be >= 0; zero is
    allowed (a degenerate but valid model)."""
    with pytest.raises(ValueError, match=rf"^{param} must be finite and >= 0.*-0\.1"):
        build(name, **{param: -0.1})
    assert np.all(getattr(build(name, **{param: 0.0}), param) == 0.0)


@pytest.mark.parametrize("param", ["mu", "sigma"])
def test_non_numeric_parameter_raises_type_error(param):
    """Oracle (API contract): a non-numeric parameter is a TypeError naming it."""
    with pytest.raises(TypeError, match=rf"^{param}"):
        build("GBM", **{param: "high"})
    with pytest.raises(TypeError, match=rf"^{param}"):
        build("GBM", **{param: True})


# --------------------------------------------------------------------------- GARCH
@pytest.mark.parametrize("omega", [0.0, -1e-6])
def test_garch_omega_must_be_positive(omega):
    """Oracle (documented range): omega > 0 (strictly)."""
    with pytest.raises(ValueError, match=r"^omega must be finite and > 0"):
        build("GARCH", omega=omega)


@pytest.mark.parametrize(
    "kw",
    [{"alpha": 0.2, "beta": 0.8}, {"alpha": 0.15, "beta": 0.9},
     {"alpha": 0.05, "beta": 0.9, "gamma": 0.1},  # alpha + beta + gamma / 2 == 1
     {"alpha": 0.05, "beta": 0.9, "gamma": 0.3, "dist": "t", "nu": 5.0}],
)  # fmt: skip
def test_garch_non_stationary_raises(kw):
    """Oracle (closed form): covariance stationarity needs alpha + beta + gamma/2 < 1."""
    with pytest.raises(ValueError, match=r"not covariance stationary.*persistence"):
        build("GARCH", **kw)


def test_garch_negative_leverage_sum_raises():
    """Oracle (documented range): alpha + gamma >= 0 keeps the variance positive; a negative
    gamma with alpha + gamma >= 0 is allowed."""
    with pytest.raises(ValueError, match=r"alpha \+ gamma must be >= 0"):
        build("GARCH", alpha=0.05, gamma=-0.1)
    assert build("GARCH", alpha=0.05, gamma=-0.05).gamma[0] == -0.05


@pytest.mark.parametrize("nu", [2.0, 1.5, 0.0, -3.0])
def test_garch_nu_must_exceed_two(nu):
    """Oracle (documented range): the unit-variance Student-t needs nu > 2."""
    with pytest.raises(ValueError, match=r"^nu must be finite and > 2"):
        build("GARCH", dist="t", nu=nu)


def test_garch_nu_required_with_t_and_refused_otherwise():
    """Oracle (API contract): nu is required with dist='t' and only then."""
    with pytest.raises(ValueError, match=r"nu .*required with dist='t'"):
        build("GARCH", dist="t")
    with pytest.raises(ValueError, match=r"nu=5.*only meaningful with dist='t'"):
        build("GARCH", nu=5.0)
    with pytest.raises(ValueError, match=r"nu=5.*only meaningful with dist='t'"):
        build("GARCH", nu=5.0, dist=Bootstrap(resid(n_assets=1)))
    assert build("GARCH", dist="t", nu=4.5).nu == 4.5


@pytest.mark.parametrize("dist", ["laplace", "Normal", None, 3])
def test_garch_unknown_dist_raises(dist):
    """Oracle (API contract): dist is 'normal', 't' or a Bootstrap; others name ``dist``."""
    with pytest.raises(ValueError, match=r"^dist must be 'normal', 't' or a Bootstrap"):
        build("GARCH", dist=dist)


def test_garch_corr_with_bootstrap_raises():
    """Oracle (API contract): bootstrapped rows carry their own dependence, so corr is
    refused with Bootstrap innovations."""
    with pytest.raises(ValueError, match=r"corr must be None with Bootstrap"):
        build("GARCH", dist=Bootstrap(resid()), corr=np.eye(2))


def test_garch_bootstrap_column_count_mismatch_raises():
    """Oracle (API contract): residual columns must match the parameters' asset count."""
    with pytest.raises(ValueError, match=r"Bootstrap residuals have 2 columns.*3 assets"):
        build("GARCH", omega=[1e-6, 2e-6, 3e-6], dist=Bootstrap(resid(n_assets=2)))
    model = build("GARCH", dist=Bootstrap(resid(n_assets=2)))  # scalars broadcast to 2
    assert model.n_assets == 2


def test_garch_unconditional_variance_closed_form():
    """Oracle (closed form): omega / (1 - alpha - beta) = 1e-6 / 0.05 = 2e-5; the default
    sigma2_0 is that value."""
    model = GARCH(omega=1e-6, alpha=0.1, beta=0.85)
    np.testing.assert_allclose(model.unconditional_variance, [2e-5], rtol=1e-12)
    assert np.array_equal(model.sigma2_0, model.unconditional_variance)
    given = GARCH(omega=1e-6, alpha=0.1, beta=0.85, sigma2_0=3e-4)
    assert np.array_equal(given.sigma2_0, [3e-4])


@pytest.mark.parametrize("dist, nu", [("normal", None), ("t", 5.0)])
def test_gjr_persistence_closed_form(dist, nu):
    """Oracle (closed form): for symmetric innovations E[z^2 1(z<0)] = 1/2, so persistence
    = alpha + beta + gamma/2 and the unconditional variance omega / (1 - that)."""
    alpha, beta, gamma, omega = 0.05, 0.85, np.array([0.1, 0.14, 0.0]), 2e-6
    model = GARCH(omega=omega, alpha=alpha, beta=beta, gamma=gamma, dist=dist, nu=nu)
    expected = alpha + beta + gamma / 2.0
    np.testing.assert_allclose(model.persistence, expected, rtol=1e-15)
    np.testing.assert_allclose(model.unconditional_variance, omega / (1.0 - expected),
                               rtol=1e-12)


def test_bootstrap_persistence_uses_empirical_negative_moment():
    """Oracle (closed form): with Bootstrap innovations the GJR weight is the residuals'
    own E[z^2 1(z<0)], computed here directly from the standardised rows."""
    b = Bootstrap(resid(n_assets=2))
    model = GARCH(omega=1e-6, alpha=0.05, beta=0.85, gamma=0.1, dist=b)
    r = b.residuals
    neg = np.array([np.mean(r[r[:, j] < 0, j] ** 2) * np.mean(r[:, j] < 0) for j in range(2)])
    np.testing.assert_allclose(model.persistence, 0.05 + 0.85 + 0.1 * neg, rtol=1e-12)


# --------------------------------------------------------------------------- broadcasting
@pytest.mark.parametrize(
    "name, vector",
    [("GBM", "sigma"), ("MertonJump", "lam"), ("MertonJump", "jump_std"), ("GARCH", "omega"),
     ("GARCH", "beta")],
)  # fmt: skip
def test_scalar_and_vector_parameters_broadcast(name, vector):
    """Oracle (definition of broadcasting): a length-3 parameter makes 3 assets; every
    scalar parameter becomes a length-3 array of its value."""
    values = {"sigma": [0.5, 0.6, 0.7], "lam": [1.0, 2.0, 3.0], "jump_std": [0.05, 0.06, 0.07],
              "omega": [1e-6, 2e-6, 3e-6], "beta": [0.8, 0.85, 0.87]}[vector]
    model = build(name, **{vector: values})
    assert model.n_assets == 3
    _, base = BASE[name]
    for param, value in base.items():
        arr = getattr(model, param)
        assert arr.shape == (3,) and arr.dtype == np.float64
        expected = values if param == vector else [value] * 3
        assert np.array_equal(arr, expected)
    assert np.array_equal(model.corr, np.eye(3))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_disagreeing_lengths_raise(name):
    """Oracle (API contract): vectors of lengths 2 and 3 raise, naming both parameters."""
    a, b = ("omega", "alpha") if name == "GARCH" else ("mu", "sigma")
    with pytest.raises(ValueError, match=rf"disagree on the number of assets.*{a} has 2.*{b}"):
        build(name, **{a: [1e-6, 2e-6], b: [0.01, 0.02, 0.03]})


def test_two_dimensional_parameter_raises():
    """Oracle (API contract): parameters are scalars or 1-D, one value per asset."""
    with pytest.raises(ValueError, match=r"^sigma must be a scalar or 1-D"):
        GBM(mu=0.0, sigma=[[0.5, 0.6]])


# --------------------------------------------------------------------------- immutability
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_are_frozen(name):
    """Oracle (API contract): frozen dataclasses; their arrays are read-only too, so a model
    cannot change after validation."""
    model = build(name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.mu = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.corr = np.eye(1)
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if isinstance(value, np.ndarray):
            with pytest.raises(ValueError, match="read-only"):
                value[...] = 0.0


def test_bootstrap_is_frozen():
    """Oracle (API contract): Bootstrap is frozen and its residuals read-only."""
    b = Bootstrap(resid())
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.residuals = np.zeros((3, 2))
    with pytest.raises(ValueError, match="read-only"):
        b.residuals[0, 0] = 1.0


def test_model_does_not_alias_caller_arrays():
    """Oracle (self-consistency): mutating the caller's array afterwards leaves the model
    unchanged."""
    sigma = np.array([0.5, 0.6])
    corr = np.array([[1.0, 0.3], [0.3, 1.0]])
    model = GBM(mu=0.0, sigma=sigma, corr=corr)
    sigma[0] = 9.0
    corr[0, 1] = corr[1, 0] = 0.9
    assert model.sigma[0] == 0.5 and model.corr[0, 1] == 0.3


# --------------------------------------------------------------------------- Bootstrap
def test_bootstrap_standardises_each_column():
    """Oracle (definition): standardised columns have mean 0 and population variance 1, and
    are an affine map of the input column; standardize=False keeps the rows as given."""
    raw = resid(n_obs=300, n_assets=3)
    b = Bootstrap(raw)
    r = b.residuals
    assert r.shape == (300, 3) and b.n_assets == 3
    np.testing.assert_allclose(r.mean(axis=0), 0.0, atol=1e-13)
    np.testing.assert_allclose(r.var(axis=0), 1.0, rtol=1e-12)
    expected = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-14)
    assert np.array_equal(Bootstrap(raw, standardize=False).residuals, raw)
    one = Bootstrap(raw[:, 0])  # a 1-D series is one asset
    assert one.residuals.shape == (300, 1)


@pytest.mark.parametrize(
    "residuals, exc, pattern",
    [
        (np.ones((10, 2)), ValueError, "constant column"),
        (np.zeros((1, 2)), ValueError, "at least 2 rows"),
        (np.zeros((4, 2, 2)), ValueError, "1-D or 2-D"),
        ([[0.0, 1.0], [NAN, 2.0], [1.0, 0.5]], ValueError, r"finite.*row 1, column 0"),
        ("abc", TypeError, "residuals"),
    ],
)
def test_bootstrap_bad_residuals(residuals, exc, pattern):
    """Oracle (API contract): unusable residuals raise, naming the problem and location."""
    with pytest.raises(exc, match=pattern):
        Bootstrap(residuals)


# --------------------------------------------------------------------------- semi-definite
SINGULAR = np.array([[1.0, 1.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(GBM(mu=0.05, sigma=0.7, corr=SINGULAR), id="GBM"),
        pytest.param(GARCH(omega=2e-5, alpha=0.08, beta=0.88, gamma=0.05, corr=SINGULAR),
                     id="GJR-normal"),
        pytest.param(GARCH(omega=2e-5, alpha=0.08, beta=0.88, dist="t", nu=4.0, corr=SINGULAR),
                     id="GARCH-t"),
    ],
)
def test_semidefinite_corr_is_accepted_and_simulates(model):
    """Oracle (self-consistency): two perfectly correlated assets with equal parameters have
    equal log returns (rtol 1e-12); the factor reproduces corr (C C^T == corr)."""
    chol = model.to_spec().chol
    np.testing.assert_allclose(chol @ chol.T, SINGULAR, atol=1e-12)
    paths = simulate_paths(model, [100.0, 100.0], n_steps=20, dt=DT, n_paths=300, seed=8)
    logret = np.diff(np.log(paths), axis=1)
    assert np.all(np.isfinite(logret)) and np.std(logret) > 0.0
    np.testing.assert_allclose(logret[..., 0], logret[..., 1], rtol=1e-12, atol=1e-15)


def test_merton_semidefinite_diffusions_are_equal_without_jumps():
    """Oracle (self-consistency): MertonJump with lam = 0 and corr of ones is GBM with two
    identical assets: equal log returns; with jumps (independent per asset) they differ."""
    plain = MertonJump(mu=0.0, sigma=0.6, lam=0.0, jump_mean=0.0, jump_std=0.1, corr=SINGULAR)
    paths = simulate_paths(plain, [1.0, 1.0], n_steps=10, dt=DT, n_paths=100, seed=4)
    logret = np.diff(np.log(paths), axis=1)
    np.testing.assert_allclose(logret[..., 0], logret[..., 1], rtol=1e-12, atol=1e-15)
    jumpy = MertonJump(mu=0.0, sigma=0.6, lam=100.0, jump_mean=0.0, jump_std=0.1,
                       corr=SINGULAR)
    paths = simulate_paths(jumpy, [1.0, 1.0], n_steps=10, dt=DT, n_paths=100, seed=4)
    assert not np.allclose(paths[..., 0], paths[..., 1])


def test_garch_to_step_aggregation_matches_simulation():
    """Oracles: (1) laws of Drost-Nijman aggregation: m = 1 is the identity, the m-step
    variance is m x the one-step variance, alpha_m + beta_m = rho^m, sigma2_0 is the sum of
    the m one-step variance forecasts (brute-force recursion of the forecasts); (2) a
    simulation of the daily model aggregated to 5 days: the variance, the lag-1
    autocorrelation of squared returns implied by the weak GARCH(1,1), and its kurtosis, each
    within 4 standard errors across 2,000 independent paths; (3) refusals where the
    conversion is not defined."""
    from marginlab.simulate import simulate_paths

    g = GARCH(omega=2e-5, alpha=0.05, beta=0.9, sigma2_0=8e-4)
    assert g.to_step(g.step) is g
    m = 5
    g5 = g.to_step(m * g.step)
    rho = 0.95
    assert g5.unconditional_variance[0] == pytest.approx(m * g.unconditional_variance[0],
                                                         rel=1e-12)
    assert g5.alpha[0] + g5.beta[0] == pytest.approx(rho**m, rel=1e-12)
    s2, tot = 8e-4, 0.0
    for _ in range(m):       # E[sigma^2_{t+k}] = vbar + rho^k (sigma2_0 - vbar)
        tot += s2
        s2 = g.omega[0] + rho * s2
    assert g5.sigma2_0[0] == pytest.approx(tot, rel=1e-12)
    # simulation (stationary: 300 burn-in days)
    sim = GARCH(omega=2e-5, alpha=0.05, beta=0.9)
    p = simulate_paths(sim, 1.0, n_steps=300 + 800, dt=sim.step, n_paths=2000, seed=5)[:, :, 0]
    x = np.diff(np.log(p[:, 300:]), axis=1)
    y = x.reshape(2000, -1, m).sum(axis=2)
    y2 = y * y
    per_var = y2.mean(axis=1)
    c = (y2[:, 1:] - y2.mean()) * (y2[:, :-1] - y2.mean())
    per_ac = c.mean(axis=1) / y2.var()
    a5, b5 = float(g5.alpha[0]), float(g5.beta[0])
    rho1 = a5 * (1 - b5**2 - a5 * b5) / (1 - b5**2 - 2 * a5 * b5)
    kz = 3.0 if g5.dist == "normal" else 3 * (g5.nu - 2) / (g5.nu - 4)
    r5 = a5 + b5
    k5 = kz * (1 - r5**2) / (1 - r5**2 - (kz - 1) * a5**2)
    for est, truth in ((per_var, m * sim.unconditional_variance[0]), (per_ac, rho1)):
        se = est.std() / math.sqrt(est.size)
        assert abs(est.mean() - truth) < 4 * se, (est.mean(), truth, se)
    # pooled kurtosis A / B^2 with its delta-method standard error over the paths
    a4, b2 = (y**4).mean(axis=1), per_var
    A, B = a4.mean(), b2.mean()
    grad = np.array([1 / B**2, -2 * A / B**3])
    se_k = math.sqrt(grad @ np.cov(a4, b2) @ grad / a4.size)
    assert abs(A / B**2 - k5) < 4 * se_k, (A / B**2, k5, se_k)
    with pytest.raises(ValueError, match="multiple"):
        g.to_step(g.step / 24)
    with pytest.raises(ValueError, match="gamma"):
        GARCH(omega=2e-5, alpha=0.05, beta=0.9, gamma=0.02).to_step(2 * g.step)
    with pytest.raises(ValueError, match="nu"):
        GARCH(omega=2e-5, alpha=0.05, beta=0.9, dist="t", nu=3.5).to_step(2 * g.step)
