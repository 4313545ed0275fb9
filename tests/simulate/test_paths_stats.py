"""Statistical correctness of the path generators against their oracles.

Every test below draws with a fixed seed and compares a Monte Carlo estimate with an
independent oracle: a closed form (lognormal law, GARCH moments, Merton's 1976 series,
Poisson law, Student-t law), a peer library (``arch``'s own simulation forecasts, QuantLib's
Bates engine, scipy's distributions) or a self-consistency law (antithetic mirroring, exact
membership of bootstrapped rows). Estimates must lie within 4 standard errors of the oracle
value, and the SE always comes from the sample itself (i.i.d. draws, or per-path batch means
when several steps of one path are used); goodness-of-fit tests (KS, chi-square) must not
reject at the 0.1 % level.

Why per-path batch means: GARCH returns at different steps of one path are uncorrelated but
their squares are not. Paths are independent, so per-path averages are i.i.d. and their
sample covariance gives an exact (asymptotic) SE, by the delta method for ratios such as the
kurtosis.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import arch
import numpy as np
import pytest
import QuantLib as ql
from arch.univariate import Normal, StudentsT
from scipy import stats

from marginlab.models import GARCH, GBM, Bootstrap, MertonJump
from marginlab.simulate import simulate_extremes, simulate_paths, simulate_terminal

N_SE = 4.0  # tolerance of every mean-type check, in standard errors
ALPHA = 1e-3  # significance of every goodness-of-fit test


def _log_returns(paths: np.ndarray) -> np.ndarray:
    """Per-step log returns, shape (n_paths, n_steps, n_assets)."""
    return np.diff(np.log(paths), axis=1)


def _assert_within(name: str, estimate: float, expected: float, se: float) -> None:
    assert se > 0.0, f"{name}: standard error must be positive, got {se}"
    z = (estimate - expected) / se
    assert abs(z) <= N_SE, (
        f"{name}: estimate {estimate:.8g} vs oracle {expected:.8g} is {z:+.2f} SE "
        f"(SE {se:.3g}, tolerance {N_SE} SE)"
    )


def _var_and_se(x: np.ndarray) -> tuple[float, float]:
    """Sample variance and its SE sqrt((m4 - s^4) / n) (delta method, any i.i.d. law)."""
    c = x - x.mean()
    s2 = float(np.mean(c * c))
    m4 = float(np.mean(c**4))
    return s2, math.sqrt((m4 - s2 * s2) / x.size)


def _path_batches(
    model: GARCH,
    *,
    seed: int,
    n_paths: int,
    burn: int,
    n_keep: int,
    stats_fn: Callable[[np.ndarray], tuple[np.ndarray, ...]],
    chunk: int = 10_000,
) -> tuple[np.ndarray, ...]:
    """Per-path statistics of eps = r - mu over steps burn+1 .. burn+n_keep, in chunks.

    ``first_path`` slices give exactly the rows of one big run, so memory stays small.
    ``stats_fn`` maps eps of shape (chunk, n_keep, n_assets) to per-path arrays.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n_paths, chunk):
        paths = simulate_paths(
            model, 1.0, n_steps=burn + n_keep, dt=model.step,
            n_paths=min(chunk, n_paths - start), seed=seed, first_path=start,
        )  # fmt: skip
        eps = _log_returns(paths[:, burn:, :]) - model.mu
        parts.append(stats_fn(eps))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


# --------------------------------------------------------------------------------------- GBM
S0 = 100.0


def _gbm_terminal_law(mu: float, sigma: float, t: float) -> tuple[float, float]:
    """Mean and variance of log(S_T / S0) under GBM."""
    return (mu - 0.5 * sigma**2) * t, sigma**2 * t


def test_gbm_terminal_log_moments_and_lognormal_law():
    """Oracle: closed form, log S_T ~ N(log S0 + (mu - sigma^2/2) T, sigma^2 T).

    200k i.i.d. terminal prices (T = 1, 4 steps): log-price mean within 4 SE (SE s/sqrt(n)),
    variance within 4 SE (SE sqrt((m4 - s^4)/n)), KS test of S_T against
    ``scipy.stats.lognorm`` not rejected at 0.1 %, and E[S_T] = S0 exp(mu T) within 4 SE
    (SE std(S_T)/sqrt(n)).
    """
    mu, sigma, t, n = 0.05, 0.8, 1.0, 200_000
    s_t = simulate_terminal(GBM(mu, sigma), S0, n_steps=4, dt=t / 4, n_paths=n, seed=101)
    assert s_t.shape == (n, 1)
    x = np.log(s_t[:, 0] / S0)
    m, v = _gbm_terminal_law(mu, sigma, t)
    _assert_within("mean log S_T", x.mean(), m, x.std() / math.sqrt(n))
    s2, se = _var_and_se(x)
    _assert_within("var log S_T", s2, v, se)
    law = stats.lognorm(s=math.sqrt(v), scale=S0 * math.exp(m))
    assert stats.kstest(s_t[:, 0], law.cdf).pvalue > ALPHA
    _assert_within("E[S_T]", s_t.mean(), S0 * math.exp(mu * t), s_t.std() / math.sqrt(n))


def test_gbm_antithetic_same_law_and_smaller_se():
    """Oracles: the lognormal closed form, the antithetic mirror law and the closed-form
    variance of an antithetic pair.

    With antithetic=True, path 2k+1 uses the negated normals of path 2k, so
    log S_odd = 2 m - log S_even (m the mean log return): checked to rounding. The even rows
    are i.i.d. draws of the GBM law (KS against the lognormal, mean/variance within 4 SE).
    The pair mean Y = (S(Z) + S(-Z))/2 has Var Y = Var S (1 - exp(-sigma^2 T)) / 2 (because
    S(Z) S(-Z) = S0^2 exp(2 m) is constant): the sample Var Y is within 4 SE of it, E[S_T] from
    pair means is within 4 SE of S0 exp(mu T), and the SE of the antithetic mean estimator is
    below the plain one at the same number of paths (closed-form ratio
    sqrt(1 - exp(-sigma^2 T)) = 0.69 here).
    """
    mu, sigma, t, n = 0.05, 0.8, 1.0, 200_000
    m, v = _gbm_terminal_law(mu, sigma, t)
    s_t = simulate_terminal(
        GBM(mu, sigma), S0, n_steps=4, dt=t / 4, n_paths=n, seed=202, antithetic=True
    )[:, 0]
    x_even = np.log(s_t[0::2] / S0)
    x_odd = np.log(s_t[1::2] / S0)
    np.testing.assert_allclose(x_even + x_odd, 2.0 * m, rtol=0.0, atol=1e-12)
    n_pairs = x_even.size
    _assert_within("mean log S_T (even rows)", x_even.mean(), m,
                   x_even.std() / math.sqrt(n_pairs))
    s2, se = _var_and_se(x_even)
    _assert_within("var log S_T (even rows)", s2, v, se)
    law = stats.lognorm(s=math.sqrt(v), scale=S0 * math.exp(m))
    assert stats.kstest(s_t[0::2], law.cdf).pvalue > ALPHA

    y = 0.5 * (s_t[0::2] + s_t[1::2])
    var_s = S0**2 * math.exp(2 * mu * t) * math.expm1(v)
    var_y_exact = 0.5 * var_s * (1.0 - math.exp(-v))
    var_y, se_var_y = _var_and_se(y)
    _assert_within("Var of antithetic pair mean", var_y, var_y_exact, se_var_y)
    se_anti = y.std() / math.sqrt(n_pairs)
    _assert_within("E[S_T] antithetic", y.mean(), S0 * math.exp(mu * t), se_anti)

    plain = simulate_terminal(GBM(mu, sigma), S0, n_steps=4, dt=t / 4, n_paths=n, seed=203)
    se_plain = plain.std() / math.sqrt(n)
    assert se_anti < se_plain, (se_anti, se_plain)


@pytest.mark.parametrize("antithetic", [False, True])
def test_gbm_correlated_log_returns(antithetic):
    """Oracle: closed form. Per-step log returns of a 3-asset GBM are i.i.d.
    N((mu - sigma^2/2) dt, sigma^2 dt) with correlation ``corr``.

    40k paths x 5 steps = 200k i.i.d. return vectors (with antithetic, only the 100k even
    paths, which are i.i.d.; the odd paths must mirror them exactly). Each sample correlation
    is within 4 SE of corr (normal-theory SE (1 - rho^2)/sqrt(n)); each per-asset mean and
    variance within 4 SE.
    """
    mu = np.array([0.1, -0.2, 0.0])
    sigma = np.array([0.6, 0.9, 0.3])
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    dt, n_paths, n_steps = 1.0 / 365.0, 40_000, 5
    paths = simulate_paths(GBM(mu, sigma, corr), [50_000.0, 3_000.0, 1.0], n_steps=n_steps,
                           dt=dt, n_paths=n_paths, seed=303, antithetic=antithetic)
    assert paths.shape == (n_paths, n_steps + 1, 3)
    np.testing.assert_array_equal(paths[:, 0, :], np.broadcast_to([50_000.0, 3_000.0, 1.0],
                                                                   (n_paths, 3)))
    r = _log_returns(paths)
    drift = (mu - 0.5 * sigma**2) * dt
    if antithetic:
        np.testing.assert_allclose(r[0::2] + r[1::2], np.broadcast_to(2 * drift, r[1::2].shape),
                                   rtol=0.0, atol=1e-12)
        r = r[0::2]
    x = r.reshape(-1, 3)
    n = x.shape[0]
    for a in range(3):
        _assert_within(f"mean return asset {a}", x[:, a].mean(), drift[a],
                       x[:, a].std() / math.sqrt(n))
        s2, se = _var_and_se(x[:, a])
        _assert_within(f"var return asset {a}", s2, sigma[a] ** 2 * dt, se)
    c = np.corrcoef(x, rowvar=False)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        rho = corr[i, j]
        _assert_within(f"corr({i},{j})", c[i, j], rho, (1.0 - rho**2) / math.sqrt(n))


def test_gbm_running_extremes_two_steps():
    """Oracle: closed form via scipy's bivariate normal CDF.

    With 2 steps, L1 = X1 and L2 = X1 + X2 (X_i i.i.d. N(a, v)) are jointly normal with
    mean (a, 2a) and covariance [[v, v], [v, 2v]]; for y >= 0,
    P(max_t log(S_t/S0) <= y) = P(L1 <= y, L2 <= y) and P(min_t log(S_t/S0) >= -y) =
    P(-L1 <= y, -L2 <= y). Empirical proportions from 200k paths are within 4 binomial SE
    sqrt(p (1 - p) / n) at three levels; the terminal column has the lognormal law (KS).
    """
    mu, sigma, dt, n = 0.1, 0.7, 0.5, 200_000
    a, v = (mu - 0.5 * sigma**2) * dt, sigma**2 * dt
    ext = simulate_extremes(GBM(mu, sigma), S0, n_steps=2, dt=dt, n_paths=n, seed=404)
    assert ext.terminal.shape == ext.minimum.shape == ext.maximum.shape == (n, 1)
    log_max = np.log(ext.maximum[:, 0] / S0)
    log_min = np.log(ext.minimum[:, 0] / S0)
    cov = np.array([[v, v], [v, 2 * v]])
    for y in (0.1, 0.4, 0.9):
        for name, emp, mean in (
            ("max", np.mean(log_max <= y), [a, 2 * a]),
            ("min", np.mean(log_min >= -y), [-a, -2 * a]),
        ):
            p = stats.multivariate_normal(mean=mean, cov=cov).cdf([y, y])
            _assert_within(f"P({name} at level {y})", emp, p, math.sqrt(p * (1 - p) / n))
    law = stats.lognorm(s=math.sqrt(2 * v), scale=S0 * math.exp(2 * a))
    assert stats.kstest(ext.terminal[:, 0], law.cdf).pvalue > ALPHA


# ------------------------------------------------------------------------------------- GARCH
GARCH_BURN = 200  # E|moments - stationary| ~ 0.9225**200 ~ 1e-7 for the 4th moment


def _moment_batches(eps: np.ndarray) -> tuple[np.ndarray, ...]:
    e = eps[:, :, 0]
    e2 = e * e
    lead = e[:, :-1] * e2[:, 1:]  # eps_t * eps_{t+1}^2
    return e2.mean(axis=1), (e2 * e2).mean(axis=1), lead.mean(axis=1)


@pytest.fixture(scope="module")
def garch_normal_batches():
    """Per-path moment batches of GARCH(omega=1e-6, alpha=0.1, beta=0.85), normal."""
    model = GARCH(omega=1e-6, alpha=0.1, beta=0.85, mu=3e-4)
    return _path_batches(model, seed=505, n_paths=100_000, burn=GARCH_BURN, n_keep=400,
                         stats_fn=_moment_batches)


def test_garch_unconditional_variance_and_kurtosis(garch_normal_batches):
    """Oracle: closed forms for GARCH(1,1) with normal innovations:
    Var eps = omega / (1 - alpha - beta) = 2e-5 and
    kurtosis 3 (1 - (a+b)^2) / (1 - (a+b)^2 - 2 a^2) = 3.774194.

    100k independent paths, 200-step burn-in, then 400 steps each; per-path batch means give
    i.i.d. batches, SE of the variance = std(batch)/sqrt(n_paths), SE of the kurtosis
    m4 / m2^2 by the delta method on the batch covariance. The 8th moment is finite here
    (E[(beta + alpha z^2)^4] = 0.959 < 1), so the kurtosis SE exists. Both within 4 SE.
    """
    a, b = 0.1, 0.85
    m2_b, m4_b, _ = garch_normal_batches
    n = m2_b.size
    m2, m4 = m2_b.mean(), m4_b.mean()
    _assert_within("GARCH unconditional variance", m2, 1e-6 / (1 - a - b),
                   m2_b.std(ddof=1) / math.sqrt(n))
    p = (a + b) ** 2
    kurt_exact = 3 * (1 - p) / (1 - p - 2 * a * a)
    assert abs(kurt_exact - 3.774194) < 1e-6
    grad = np.array([-2 * m4 / m2**3, 1 / m2**2])
    se_kurt = math.sqrt(grad @ np.cov(m2_b, m4_b) @ grad / n)
    _assert_within("GARCH kurtosis", m4 / m2**2, kurt_exact, se_kurt)


def test_garch_no_leverage_without_gamma(garch_normal_batches):
    """Oracle: symmetry law. With gamma = 0 and symmetric innovations,
    E[eps_t eps_{t+1}^2] = alpha E[eps_t^3] + ... = 0, so corr(r_t, r_{t+1}^2) = 0.

    The per-path mean of eps_t eps_{t+1}^2 (i.i.d. across paths; its variance needs the 6th
    moment, finite here) is within 4 SE of 0.
    """
    _, _, lead = garch_normal_batches
    _assert_within("E[eps_t eps_{t+1}^2], gamma=0", lead.mean(), 0.0,
                   lead.std(ddof=1) / math.sqrt(lead.size))


def test_gjr_leverage_sign():
    """Oracle: sign law of GJR-GARCH. E[eps_t eps_{t+1}^2] = gamma E[eps_t^3 1(eps_t < 0)]
    < 0 when gamma > 0, so corr(r_t, r_{t+1}^2) (same sign) is negative.

    alpha=0.03, gamma=0.12, beta=0.85 (persistence 0.94, finite 6th moment:
    E[(beta + (alpha + gamma 1(z<0)) z^2)^3] = 0.924 < 1). The per-path mean of
    eps_t eps_{t+1}^2 must be below -4 SE (significantly negative), and the sample
    correlation of (r_t, r_{t+1}^2) must be negative.
    """
    model = GARCH(omega=1e-6, alpha=0.03, gamma=0.12, beta=0.85, mu=3e-4)

    def batches(eps):
        e = eps[:, :, 0]
        r_next2 = (e[:, 1:] + model.mu[0]) ** 2
        return (e[:, :-1] * e[:, 1:] ** 2).mean(axis=1), e[:, 5], r_next2[:, 5]

    lead, e_t, r2_next = _path_batches(model, seed=606, n_paths=20_000, burn=GARCH_BURN,
                                       n_keep=200, stats_fn=batches)
    z = lead.mean() / (lead.std(ddof=1) / math.sqrt(lead.size))
    assert z < -N_SE, f"E[eps_t eps_(t+1)^2] is only {z:.2f} SE from 0 with gamma > 0"
    assert np.corrcoef(e_t + model.mu[0], r2_next)[0, 1] < 0.0


def _arch_forecast_sims(
    spec: dict, params: list[float], names: list[str], seed: int, n_sims: int, horizon: int
):
    """arch's own simulated percent returns (n_sims, horizon) and one-step variance."""
    y = np.random.default_rng(seed).standard_normal(1000) * 2.0  # percent returns
    am = arch.arch_model(y, mean="Constant", vol="GARCH", **spec)
    dist_cls = StudentsT if spec["dist"] == "t" else Normal
    am.distribution = dist_cls(seed=np.random.default_rng(seed + 1))
    res = am.fix(params)
    assert list(res.params.index) == names
    fc = res.forecast(horizon=horizon, method="simulation", simulations=n_sims)
    return fc.simulations.values[-1], float(fc.variance.values[-1, 0])


@pytest.mark.parametrize(
    "case",
    [
        dict(omega=2e-6, alpha=0.08, gamma=0.0, beta=0.9, mu=5e-4, dist="normal", nu=None),
        dict(omega=3e-6, alpha=0.03, gamma=0.1, beta=0.88, mu=3e-4, dist="t", nu=6.0),
    ],
    ids=["garch-normal", "gjr-t"],
)
def test_garch_matches_arch_simulation_forecast(case):
    """Oracle: peer library ``arch`` (its ``forecast(method="simulation")``).

    arch is given the same parameters in percent units (omega * 1e4, mu * 100; alpha, gamma,
    beta, nu unchanged; names checked) and we start from arch's one-step-ahead variance
    forecast / 1e4. 50k 10-step paths from each: two-sample KS tests of the 10-step
    aggregated log return and of the 10th one-step return do not reject at 0.1 %.
    """
    horizon, n = 10, 50_000
    o = 1 if case["gamma"] else 0
    if o:
        names = ["mu", "omega", "alpha[1]", "gamma[1]", "beta[1]"]
        params = [case["mu"] * 100, case["omega"] * 1e4, case["alpha"], case["gamma"],
                  case["beta"]]
    else:
        names = ["mu", "omega", "alpha[1]", "beta[1]"]
        params = [case["mu"] * 100, case["omega"] * 1e4, case["alpha"], case["beta"]]
    if case["dist"] == "t":
        names.append("nu")
        params.append(case["nu"])
    sims, h1 = _arch_forecast_sims(dict(p=1, o=o, q=1, dist=case["dist"]), params, names,
                                   seed=707, n_sims=n, horizon=horizon)
    arch_r = sims / 100.0
    model = GARCH(omega=case["omega"], alpha=case["alpha"], beta=case["beta"],
                  gamma=case["gamma"], mu=case["mu"], dist=case["dist"], nu=case["nu"],
                  sigma2_0=h1 / 1e4)
    ours = _log_returns(simulate_paths(model, 1.0, n_steps=horizon, dt=model.step,
                                       n_paths=n, seed=708))[:, :, 0]
    assert stats.ks_2samp(ours.sum(axis=1), arch_r.sum(axis=1)).pvalue > ALPHA
    assert stats.ks_2samp(ours[:, -1], arch_r[:, -1]).pvalue > ALPHA


@pytest.mark.parametrize("nu", [2.5, 5.0, 30.0])
def test_student_t_innovations_law(nu):
    """Oracle: scipy.stats.t. With alpha = beta = gamma = 0 the returns are i.i.d.
    r = mu + sqrt(omega) z, z ~ t(nu) scaled to unit variance, i.e.
    ``scipy.stats.t(nu, scale=sqrt((nu - 2) / nu))``. KS on 200k standardised z does not
    reject at 0.1 %.
    """
    omega, mu = 4e-4, 1e-3
    model = GARCH(omega=omega, alpha=0.0, beta=0.0, mu=mu, dist="t", nu=nu)
    r = _log_returns(simulate_paths(model, 1.0, n_steps=10, dt=model.step, n_paths=20_000,
                                    seed=808))
    z = ((r - mu) / math.sqrt(omega)).ravel()
    law = stats.t(nu, scale=math.sqrt((nu - 2.0) / nu))
    assert stats.kstest(z, law.cdf).pvalue > ALPHA


def test_student_t_two_assets_correlation_and_shared_mixing():
    """Oracles: closed forms for the unit-variance multivariate t (one chi-square per step).

    For z = sqrt(nu - 2) x / sqrt(chi2_nu), x ~ N(0, [[1, rho], [rho, 1]]):
    corr(z1, z2) = rho and E[z1^2 z2^2] = (nu - 2)(1 + 2 rho^2) / (nu - 4) (independent
    mixing variables would give 1 + 2 rho^2 instead). 200k i.i.d. vectors, nu = 12: the sample
    correlation is within 4 SE of rho, with the elliptical-law SE
    sqrt(1 + kappa) (1 - rho^2) / sqrt(n), kappa = 2 / (nu - 4) (Muirhead 1982, Thm 5.1.6);
    the mean of z1^2 z2^2 is within 4 SE (SE std/sqrt(n), finite as nu > 8).
    """
    nu, rho, omega = 12.0, 0.5, 1e-4
    corr = [[1.0, rho], [rho, 1.0]]
    model = GARCH(omega=omega, alpha=0.0, beta=0.0, dist="t", nu=nu, corr=corr)
    r = _log_returns(simulate_paths(model, [1.0, 1.0], n_steps=10, dt=model.step,
                                    n_paths=20_000, seed=909))
    z = r.reshape(-1, 2) / math.sqrt(omega)
    n = z.shape[0]
    kappa = 2.0 / (nu - 4.0)
    _assert_within("t corr", np.corrcoef(z, rowvar=False)[0, 1], rho,
                   math.sqrt(1 + kappa) * (1 - rho**2) / math.sqrt(n))
    q = z[:, 0] ** 2 * z[:, 1] ** 2
    _assert_within("E[z1^2 z2^2]", q.mean(), (nu - 2) * (1 + 2 * rho**2) / (nu - 4),
                   q.std() / math.sqrt(n))


# ------------------------------------------------------------------------------------ Merton
def _bs_call(s: float, k: float, t: float, r: np.ndarray, var: np.ndarray) -> np.ndarray:
    sd = np.sqrt(var * t)
    d1 = (math.log(s / k) + (r + 0.5 * var) * t) / sd
    return s * stats.norm.cdf(d1) - k * np.exp(-r * t) * stats.norm.cdf(d1 - sd)


def merton_call(s: float, k: float, t: float, r: float, sigma: float, lam: float,
                jump_mean: float, jump_std: float) -> float:
    """Merton (1976) series: sum_n Poisson(n; lam' T) BS(s, k, T, r_n, sigma_n), with
    lam' = lam (1 + kappa), r_n = r - lam kappa + n ln(1 + kappa) / T and
    sigma_n^2 = sigma^2 + n s^2 / T."""
    kappa = math.expm1(jump_mean + 0.5 * jump_std**2)
    lam_p = lam * (1.0 + kappa)
    n = np.arange(int(lam_p * t + 20 * math.sqrt(lam_p * t) + 30))
    w = stats.poisson.pmf(n, lam_p * t)
    r_n = r - lam * kappa + n * math.log1p(kappa) / t
    var_n = sigma**2 + n * jump_std**2 / t
    return float(np.sum(w * _bs_call(s, k, t, r_n, var_n)))


# (r, sigma, lam, jump_mean, jump_std, T in days/365, n_steps, strikes)
MERTON_CASES = {
    "frequent-small": (0.05, 0.2, 50.0, -0.005, 0.03, 73, 4, (85.0, 100.0, 115.0)),
    "rare-crash": (0.03, 0.4, 0.5, -0.3, 0.15, 365, 4, (70.0, 100.0, 130.0)),
}


@pytest.mark.parametrize("case", list(MERTON_CASES))
def test_merton_series_oracle_matches_quantlib(case):
    """Oracle of the oracle: QuantLib's analytic Bates engine with (almost) constant variance
    (v0 = theta = sigma^2, vol-of-vol 1e-4) is Merton's model; our series agrees to 1e-6."""
    r, sigma, lam, m, s, days, _, strikes = MERTON_CASES[case]
    today = ql.Date(2, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    rts = ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc, ql.Continuous))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, dc, ql.Continuous))
    v = sigma**2
    process = ql.BatesProcess(rts, qts, ql.QuoteHandle(ql.SimpleQuote(S0)), v, 1.0, v, 1e-4,
                              0.0, lam, m, s)
    engine = ql.BatesEngine(ql.BatesModel(process))
    for k in strikes:
        option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call, k),
                                  ql.EuropeanExercise(today + days))
        option.setPricingEngine(engine)
        assert merton_call(S0, k, days / 365, r, sigma, lam, m, s) == pytest.approx(
            option.NPV(), abs=1e-6)


@pytest.mark.parametrize("case", list(MERTON_CASES))
def test_merton_call_prices(case):
    """Oracle: Merton's (1976) closed-form series (checked against QuantLib above).

    With mu = r the simulated S_T is risk-neutral; the discounted mean payoff of 400k paths
    for ITM / ATM / OTM calls is within 4 SE (SE = e^{-rT} std(payoff)/sqrt(n)). Also
    E[S_T] = S0 e^{rT} within 4 SE (martingale after discounting).
    """
    r, sigma, lam, m, s, days, n_steps, strikes = MERTON_CASES[case]
    t, n = days / 365, 400_000
    model = MertonJump(mu=r, sigma=sigma, lam=lam, jump_mean=m, jump_std=s)
    s_t = simulate_terminal(model, S0, n_steps=n_steps, dt=t / n_steps, n_paths=n,
                            seed=1001)[:, 0]
    _assert_within("E[S_T]", s_t.mean(), S0 * math.exp(r * t), s_t.std() / math.sqrt(n))
    disc = math.exp(-r * t)
    for k in strikes:
        pay = np.maximum(s_t - k, 0.0)
        _assert_within(f"call K={k}", disc * pay.mean(),
                       merton_call(S0, k, t, r, sigma, lam, m, s),
                       disc * pay.std() / math.sqrt(n))


@pytest.mark.parametrize("lam_dt", [0.05, 2.0, 12.0])
@pytest.mark.parametrize("kernel", ["one_asset", "antithetic", "two_assets"])
def test_merton_jump_counts_are_poisson(lam_dt, kernel):
    """Oracle: scipy.stats.poisson(lam dt). With sigma = 0 and jump_std = 0 each step's log
    return is exactly (mu - lam kappa) dt + k jump_mean, so k is recovered (to 1e-6 of an
    integer); its distribution over 200k i.i.d. steps passes a chi-square goodness-of-fit
    test (bins with expected count >= 5, tails pooled) at 0.1 %. Each of the three kernels
    that draw jump arrivals is checked: one asset, antithetic pairs (every other path, the
    partner shares the jumps), and two assets (both assets' counts).
    """
    mu, m, dt = 0.02, 0.1, 1.0 / 365.0
    lam = lam_dt / dt
    n_assets = 2 if kernel == "two_assets" else 1
    model = MertonJump(mu=[mu] * n_assets, sigma=[0.0] * n_assets, lam=[lam] * n_assets,
                       jump_mean=m, jump_std=0.0)
    paths = simulate_paths(model, [1.0] * n_assets, n_steps=10, dt=dt, seed=1102,
                           n_paths=40_000 if kernel == "antithetic" else 20_000 // n_assets,
                           antithetic=kernel == "antithetic")
    r = _log_returns(paths[::2] if kernel == "antithetic" else paths)
    kf = (r.ravel() - (mu - lam * math.expm1(m)) * dt) / m
    k = np.rint(kf).astype(np.int64)
    assert np.max(np.abs(kf - k)) < 1e-6
    assert k.min() >= 0
    n = k.size
    law = stats.poisson(lam_dt)
    support = np.arange(k.max() + 2)
    big = np.flatnonzero(n * law.pmf(support) >= 5.0)
    lo, hi = int(big[0]), int(big[-1])
    observed = [np.sum(k <= lo)] + [np.sum(k == j) for j in range(lo + 1, hi)]
    observed.append(np.sum(k >= hi))
    expected = [law.cdf(lo)] + [law.pmf(j) for j in range(lo + 1, hi)] + [law.sf(hi - 1)]
    expected = n * np.asarray(expected)
    assert len(observed) >= 2
    assert stats.chisquare(observed, expected).pvalue > ALPHA


# ------------------------------------------------------------------------ Bootstrap (FHS)
def _residuals(seed: int, n_obs: int = 40) -> np.ndarray:
    """Skewed, cross-dependent 2-column residuals (standardised by Bootstrap)."""
    g = np.random.default_rng(seed)
    x = g.exponential(size=n_obs) - 1.0
    return np.column_stack([x, 0.6 * x + 0.8 * g.standard_normal(n_obs)])


def test_bootstrap_rows_resampled_jointly_and_uniformly():
    """Oracles: exact membership law and scipy's chi-square test of uniformity.

    With alpha = beta = gamma = 0 every step's return vector is mu + sqrt(omega) * z_k for a
    row k of the standardised residuals: each simulated vector matches one row in both
    assets at once (to 1e-9 in z units, far below the gap between rows). The 100k row
    indices are uniform over the rows: chi-square test not rejected at 0.1 %.
    """
    omega, mu = 4e-4, np.array([5e-4, -2e-4])
    boot = Bootstrap(_residuals(1201))
    res = boot.residuals
    order = np.argsort(res[:, 0])
    col0 = res[order, 0]
    assert np.min(np.diff(col0)) > 1e-6  # rows are identifiable from column 0
    model = GARCH(omega=omega, alpha=0.0, beta=0.0, mu=mu, dist=boot)
    r = _log_returns(simulate_paths(model, [1.0, 1.0], n_steps=25, dt=model.step,
                                    n_paths=4_000, seed=1202))
    z = ((r - mu) / math.sqrt(omega)).reshape(-1, 2)
    pos = np.clip(np.searchsorted(col0, z[:, 0]), 1, col0.size - 1)
    nearer_left = np.abs(z[:, 0] - col0[pos - 1]) < np.abs(z[:, 0] - col0[pos])
    k = order[np.where(nearer_left, pos - 1, pos)]
    np.testing.assert_allclose(z, res[k], rtol=0.0, atol=1e-9)
    counts = np.bincount(k, minlength=res.shape[0])
    assert stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize("gamma", [0.0, 0.06])
def test_bootstrap_garch_unconditional_variance(gamma):
    """Oracle: closed form Var eps = omega / (1 - persistence), persistence =
    alpha + beta + gamma E[z^2 1(z<0)] over the resampled rows (``model.persistence``, itself
    checked against that formula computed here from the rows).

    sigma2_0 defaults to that variance and E[z^2] = 1 exactly for standardised rows, so
    E[eps_t^2] equals it at every step (no burn-in needed). 20k paths x 100 steps; per-path
    batch means give the SE; within 4 SE. The skewed residuals make E[z^2 1(z<0)] differ
    from 1/2, which the gamma > 0 case exercises.
    """
    boot = Bootstrap(_residuals(1301)[:, :1])
    model = GARCH(omega=1e-6, alpha=0.08, beta=0.9 - gamma / 2, gamma=gamma, mu=1e-4,
                  dist=boot)
    z = boot.residuals[:, 0]
    neg = np.mean(np.where(z < 0.0, z * z, 0.0))
    assert model.persistence[0] == pytest.approx(0.08 + (0.9 - gamma / 2) + gamma * neg)
    assert abs(neg - 0.5) > 0.05
    (m2_b,) = _path_batches(model, seed=1302, n_paths=20_000, burn=0, n_keep=100,
                            stats_fn=lambda e: ((e[:, :, 0] ** 2).mean(axis=1),))
    expected = 1e-6 / (1.0 - model.persistence[0])
    _assert_within("FHS unconditional variance", m2_b.mean(), expected,
                   m2_b.std(ddof=1) / math.sqrt(m2_b.size))
