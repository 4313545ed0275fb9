"""Tests of marginlab.models.backtest.

Oracles: MathWorks' published ``varbacktest`` examples (pof, cci, cc, tl), the Basel
Committee's 1996 traffic-light table, the ``vartests`` package (Kupiec), scipy (binomial,
Student-t, numerical maximum likelihood, bivariate normal) and laws (E[Z2] = 0 and a
test's size under its null). Monte Carlo bands are 4 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import vartests
from scipy import optimize, stats

from marginlab.models.backtest import (
    acerbi_szekely_z2,
    christoffersen,
    exceptions,
    horizon_losses,
    kupiec,
    resample_scenarios,
    traffic_light,
)

SE_BAND = 4.0


def _t_var_es(nu: float, level: float) -> tuple[float, float]:
    """Closed-form VaR and ES (upper tail, losses positive) of a standard Student-t.

    ES = f(x) (nu + x^2) / ((nu - 1) (1 - level)), x = t.ppf(level) (McNeil, Frey and
    Embrechts, Quantitative Risk Management, Example 2.15).
    """
    x = stats.t.ppf(level, nu)
    es = stats.t.pdf(x, nu) * (nu + x * x) / ((nu - 1.0) * (1.0 - level))
    return float(x), float(es)


def _matlab_hits() -> np.ndarray:
    """A hit series with MathWorks' ``cci`` example counts: T = 1043, 57 exceptions,
    n00 = 932, n01 = n10 = 53, n11 = 4 (53 runs of exceptions, four of them two days long,
    separated by 54 runs of non-exceptions)."""
    zeros = [986 // 54] * 54
    for i in range(986 - sum(zeros)):
        zeros[i] += 1
    ones = [2] * 4 + [1] * 49
    seq: list[int] = []
    for z, o in zip(zeros[:-1], ones, strict=True):
        seq += [0] * z + [1] * o
    seq += [0] * zeros[-1]
    return np.array(seq, dtype=bool)


# --------------------------------------------------------------------------- Kupiec
def test_kupiec_matlab_pof_example():
    """Oracle: MathWorks varbacktest/pof example, EquityIndex vs Normal95 (T = 1043, 57
    failures, VaR level 0.95): LRatioPOF 0.46147, PValuePOF 0.49694."""
    r = kupiec(57, 1043, 0.95)
    assert r.statistic == pytest.approx(0.46147, abs=5e-6)
    assert r.p_value == pytest.approx(0.49694, abs=5e-6)
    assert r.expected_exceptions == pytest.approx(1043 * 0.05)
    assert r.exception_rate == pytest.approx(57 / 1043)
    assert r.ratio == pytest.approx(57 / (1043 * 0.05))


@pytest.mark.parametrize("n_obs,level", [(250, 0.99), (1043, 0.95), (30, 0.9)])
def test_kupiec_matches_vartests_over_all_counts(n_obs, level):
    """Oracle: vartests.kupiec_test (peer library) for every count 0..n_obs, edges included.

    The p-value tolerance is absolute 1e-6: when x / n equals 1 - level the statistic is 0
    up to rounding (1e-15), and the chi2(1) survival function has infinite slope at 0
    (sf(e) ~ 1 - sqrt(2 e / pi)), so the two implementations' rounding shows there."""
    for x in range(n_obs + 1):
        ours = kupiec(x, n_obs, level)
        ref = vartests.kupiec_test(x=x, n=n_obs, risk_conf_level=level)
        assert np.isfinite(ours.statistic) and np.isfinite(ours.p_value)
        assert ours.statistic == pytest.approx(ref["statistic"], rel=1e-9, abs=1e-10)
        assert ours.p_value == pytest.approx(ref["p-value"], rel=1e-9, abs=1e-6)


def test_kupiec_edges_zero_log_zero():
    """Oracle: the POF likelihood with 0 log 0 = 0: no exceptions gives LR = -2 T ln(level),
    only exceptions LR = -2 T ln(1 - level) (finite, no NaN)."""
    r0 = kupiec(0, 250, 0.99)
    assert r0.statistic == pytest.approx(-2 * 250 * math.log(0.99), rel=1e-12)
    assert r0.p_value == pytest.approx(stats.chi2.sf(-500 * math.log(0.99), 1), rel=1e-12)
    rn = kupiec(250, 250, 0.99)
    assert rn.statistic == pytest.approx(-2 * 250 * math.log(0.01), rel=1e-12)
    assert np.isfinite(rn.p_value)


# --------------------------------------------------------------------------- Christoffersen
def test_christoffersen_matlab_cci_cc_example():
    """Oracle: MathWorks varbacktest/cci and cc examples (T = 1043, 57 failures, N00 932,
    N10 53, N01 53, N11 4): LRatioCCI 0.25866 (p 0.61104), LRatioCC 0.72013 (p 0.69763),
    LRatioPOF 0.46147 (p 0.49694)."""
    hits = _matlab_hits()
    assert hits.size == 1043 and hits.sum() == 57
    r = christoffersen(hits, 0.95)
    assert (r.n00, r.n01, r.n10, r.n11) == (932, 53, 53, 4)
    assert (r.n_obs, r.n_exceptions) == (1043, 57)
    assert r.lr_ind == pytest.approx(0.25866, abs=5e-6)
    assert r.p_value_ind == pytest.approx(0.61104, abs=5e-6)
    assert r.lr_cc == pytest.approx(0.72013, abs=5e-6)
    assert r.p_value_cc == pytest.approx(0.69763, abs=5e-6)
    assert r.lr_pof == pytest.approx(0.46147, abs=5e-6)
    assert r.p_value_pof == pytest.approx(0.49694, abs=5e-6)


def _markov_hits(rng, n, pi0, pi1):
    h = np.zeros(n, dtype=bool)
    for t in range(1, n):
        h[t] = rng.random() < (pi1 if h[t - 1] else pi0)
    return h


def _lr_ind_by_optimizer(h: np.ndarray) -> float:
    """2 (max Markov log-likelihood - max iid log-likelihood), both maximised numerically."""
    prev, cur = h[:-1].astype(float), h[1:].astype(float)

    def nll_markov(q):
        p = np.where(prev == 1.0, q[1], q[0])
        return -np.sum(cur * np.log(p) + (1 - cur) * np.log1p(-p))

    def nll_iid(q):
        return -np.sum(cur * np.log(q[0]) + (1 - cur) * np.log1p(-q[0]))

    eps = 1e-12
    bnds = [(eps, 1 - eps)]
    m = optimize.minimize(nll_markov, x0=[0.3, 0.3], bounds=bnds * 2, method="L-BFGS-B",
                          options={"ftol": 1e-15, "gtol": 1e-12})
    i = optimize.minimize(nll_iid, x0=[0.3], bounds=bnds, method="L-BFGS-B",
                          options={"ftol": 1e-15, "gtol": 1e-12})
    return 2.0 * (i.fun - m.fun)


@pytest.mark.parametrize("pi0,pi1", [(0.05, 0.05), (0.03, 0.3), (0.1, 0.02)])
def test_christoffersen_random_sequences_against_vartests_and_mle(pi0, pi1):
    """Oracles: vartests.kupiec_test for the POF part of LR_cc; numerical maximum
    likelihood (scipy.optimize) for LR_ind; brute-force transition counts.

    vartests (0.4.1) has no Markov independence test: its only independence test,
    ``duration_test``, is Christoffersen and Pelletier's (2004) Weibull duration test, a
    different statistic, so LR_ind is checked against the likelihood it is defined from."""
    rng = np.random.default_rng(11)
    for _ in range(3):
        h = _markov_hits(rng, 600, pi0, pi1)
        r = christoffersen(h, 0.95)
        ref = vartests.kupiec_test(h.astype(int), risk_conf_level=0.95)
        assert r.lr_pof == pytest.approx(ref["statistic"], rel=1e-9, abs=1e-10)
        assert r.p_value_pof == pytest.approx(ref["p-value"], rel=1e-9, abs=1e-12)
        assert r.lr_cc == pytest.approx(r.lr_pof + r.lr_ind, rel=1e-12)
        assert r.p_value_cc == pytest.approx(stats.chi2.sf(r.lr_cc, 2), rel=1e-12)
        assert r.lr_ind == pytest.approx(_lr_ind_by_optimizer(h), abs=1e-5)
        pairs = list(zip(h[:-1].tolist(), h[1:].tolist(), strict=True))
        assert r.n00 == pairs.count((False, False))
        assert r.n01 == pairs.count((False, True))
        assert r.n10 == pairs.count((True, False))
        assert r.n11 == pairs.count((True, True))


def test_christoffersen_detects_clustering():
    """Oracle: law of the chi2(1) limit: with strongly clustered exceptions (pi1 = 0.5 vs
    pi0 = 0.02, T = 1000) the independence test rejects; the LR grows like T times the
    Kullback-Leibler divergence, far beyond the 1 % critical value 6.63."""
    rng = np.random.default_rng(5)
    r = christoffersen(_markov_hits(rng, 1000, 0.02, 0.5), 0.97)
    assert r.p_value_ind < 1e-6


def test_christoffersen_no_exceptions_and_all_exceptions():
    """Oracle: the likelihoods with 0 log 0 = 0: without exceptions LR_ind = 0 and
    LR_cc = LR_pof = -2 T ln(level); with only exceptions LR_ind = 0 too. No NaN."""
    r = christoffersen(np.zeros(250, dtype=bool), 0.99)
    assert r.lr_ind == 0.0 and r.p_value_ind == 1.0
    assert r.lr_cc == pytest.approx(-2 * 250 * math.log(0.99), rel=1e-12)
    assert math.isnan(r.pi1) and r.pi0 == 0.0
    r = christoffersen(np.ones(20, dtype=int), 0.95)
    assert r.lr_ind == 0.0 and np.isfinite(r.lr_cc)


# --------------------------------------------------------------------------- traffic light
# BCBS (1996), Table 2: exceptions -> (zone, plus factor, cumulative probability in %).
BCBS_TABLE = {
    0: ("green", 0.00, 8.11), 1: ("green", 0.00, 28.58), 2: ("green", 0.00, 54.32),
    3: ("green", 0.00, 75.81), 4: ("green", 0.00, 89.22), 5: ("yellow", 0.40, 95.88),
    6: ("yellow", 0.50, 98.63), 7: ("yellow", 0.65, 99.60), 8: ("yellow", 0.75, 99.89),
    9: ("yellow", 0.85, 99.97), 10: ("red", 1.00, 99.99),
}


def test_traffic_light_bcbs_table():
    """Oracle: BCBS (1996) supervisory framework, Table 2 (250 observations, 99 % VaR):
    zones, plus factors and cumulative probabilities as published (two decimals)."""
    for k, (zone, plus, cum_pct) in BCBS_TABLE.items():
        r = traffic_light(k)
        assert r.zone == zone, k
        assert r.plus_factor == pytest.approx(plus), k
        assert round(100 * r.cumulative_probability, 2) == cum_pct, k
    for k in (11, 15, 250):
        r = traffic_light(k)
        assert (r.zone, r.plus_factor) == ("red", 1.0)


def test_traffic_light_type1_jorion():
    """Oracle: Jorion (Value at Risk, 3rd ed., ch. 6): a correct 99 % model shows 5 or more
    exceptions in 250 days with probability 10.8 %."""
    assert round(100 * traffic_light(5).type1_error, 1) == 10.8


def test_traffic_light_other_settings():
    """Oracles: MathWorks varbacktest/tl example (T = 1043, 57 failures at 95 %: green,
    Probability 0.77913, TypeI 0.26396); MathWorks trafficLightVaRTest(0.9, 40, 250)
    returns zone 2 (yellow); cfrm17 'Backtesting KPIs': n = 750 at 99.5 % the yellow zone
    starts at 7 exceptions and the red at 13. The plus factor is NaN off the Basel table."""
    r = traffic_light(57, 1043, 0.95)
    assert r.zone == "green"
    assert r.cumulative_probability == pytest.approx(0.77913, abs=5e-6)
    assert r.type1_error == pytest.approx(0.26396, abs=5e-6)
    assert math.isnan(r.plus_factor)
    assert traffic_light(40, 250, 0.9).zone == "yellow"
    zones = [traffic_light(k, 750, 0.995).zone for k in (6, 7, 12, 13)]
    assert zones == ["green", "yellow", "yellow", "red"]


# --------------------------------------------------------------------------- exceptions
def test_exceptions_strict_inequality_and_pandas():
    """Oracle: the definition I_t = 1{L_t > m_t} (MathWorks: a failure when the loss
    exceeds the VaR), a loss equal to the margin being covered; pandas keeps the index."""
    loss = np.array([1.0, 2.0, 3.0, -1.0])
    assert exceptions(loss, 2.0).tolist() == [False, False, True, False]
    assert exceptions(loss, [0.5, 2.5, 2.5, -2.0]).tolist() == [True, False, True, True]
    idx = pd.date_range("2024-01-01", periods=4)
    s = exceptions(pd.Series(loss, index=idx), 2.0, horizon=2, offset=1)
    assert isinstance(s, pd.Series)
    assert list(s.index) == [idx[1], idx[3]] and s.tolist() == [False, False]


def test_horizon_losses_is_rolling_sum():
    """Oracle: numpy.convolve with a box of ones (the h-day sum of daily losses)."""
    x = np.random.default_rng(3).normal(size=40)
    for h in (1, 5, 10):
        np.testing.assert_allclose(horizon_losses(x, h), np.convolve(x, np.ones(h), "valid"),
                                   rtol=1e-12, atol=1e-12)


def test_exceptions_horizon_uses_non_overlapping_windows():
    """Oracle: law of overlapping sums of iid normals. With 10-day losses measured daily,
    consecutive windows share 9 days: P(hit | hit yesterday) is the bivariate-normal
    orthant ratio with correlation 0.9 (scipy), far above p. Keeping every 10th window
    (horizon=10) makes hits independent: P(hit | previous kept hit) = p = 0.05 and the
    series has ceil(n/h) observations. Bands: 4 binomial standard errors."""
    h, level, n_daily, reps = 10, 0.95, 2509, 200
    p = 1 - level
    margin = math.sqrt(h) * stats.norm.ppf(level)
    rng = np.random.default_rng(20240601)
    full_11 = full_1 = sub_11 = sub_1 = 0
    for _ in range(reps):
        loss = horizon_losses(rng.standard_normal(n_daily), h)
        full = exceptions(loss, margin)
        sub = exceptions(loss, margin, horizon=h)
        assert sub.size == math.ceil(loss.size / h) == 250
        np.testing.assert_array_equal(sub, full[::h])
        np.testing.assert_array_equal(exceptions(loss, margin, horizon=h, offset=3),
                                      full[3::h])
        full_1 += int(full[:-1].sum())
        full_11 += int((full[:-1] & full[1:]).sum())
        sub_1 += int(sub[:-1].sum())
        sub_11 += int((sub[:-1] & sub[1:]).sum())
    rho = (h - 1) / h
    z = stats.norm.ppf(level)
    both = stats.multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([-z, -z])
    pi1_overlap = both / p
    est = full_11 / full_1
    # hits of overlapping windows are autocorrelated, so inflate the binomial SE by the
    # run length (at most h)
    se_full = math.sqrt(pi1_overlap * (1 - pi1_overlap) / full_1) * math.sqrt(h)
    assert abs(est - pi1_overlap) < SE_BAND * se_full
    assert pi1_overlap > 0.5
    est_sub = sub_11 / sub_1
    assert abs(est_sub - p) < SE_BAND * math.sqrt(p * (1 - p) / sub_1)


# --------------------------------------------------------------------------- Acerbi-Szekely
def test_student_t_es_closed_form_helper():
    """Oracle: scipy.stats.t.expect, the conditional mean above the quantile (definition
    of ES), for the closed form used by the Z2 tests below."""
    for nu, level in [(3.0, 0.975), (4.0, 0.99), (10.0, 0.95)]:
        x, es = _t_var_es(nu, level)
        ref = stats.t.expect(lambda y: y, args=(nu,), lb=x, conditional=True)
        assert es == pytest.approx(ref, rel=1e-7)


def test_z2_worked_example_and_sign_convention():
    """Oracle: Acerbi and Szekely (2014), Z2 = sum X_t I_t / (T alpha ES_t) + 1 with P&L
    X_t = -L_t, evaluated by hand: losses (1, 5, -2, 0.5), VaR 2, ES 4, alpha 0.25: one
    exception of 5, paper's Z2 = -5/(4 * 0.25 * 4) + 1 = -0.25; ours is its negative,
    +0.25 (under-margined)."""
    r = acerbi_szekely_z2([1.0, 5.0, -2.0, 0.5], 2.0, 4.0, 0.75)
    assert r.statistic == pytest.approx(0.25, abs=1e-15)
    assert r.n_exceptions == 1 and r.n_obs == 4
    assert math.isnan(r.p_value) and math.isnan(r.critical_value) and r.n_sims == 0


def test_z2_expectation_zero_under_null():
    """Oracle: law E[L 1{L > VaR}] = (1 - level) ES for a continuous law, so E[Z2] = 0
    under a correct model (Student-t, nu = 5, day-varying scale); |mean| < 4 SE."""
    nu, level, t_days, n_sims = 5.0, 0.975, 250, 20_000
    x, es = _t_var_es(nu, level)
    rng = np.random.default_rng(7)
    scale = np.exp(rng.normal(0.0, 0.4, t_days))
    sims = rng.standard_t(nu, size=(n_sims, t_days)) * scale
    r = acerbi_szekely_z2(sims[0], x * scale, es * scale, level, simulated_losses=sims)
    z = r.simulated_statistics
    assert z.size == n_sims and not z.flags.writeable
    assert abs(z.mean()) < SE_BAND * z.std(ddof=1) / math.sqrt(n_sims)


def test_z2_size_under_correct_model():
    """Oracle: law of a simulated (Monte Carlo) test: when the observed path and the
    simulations are exchangeable draws of the model, P(p_value < 0.05) = 10/200 = 0.05 with
    199 simulations. 1000 repetitions, Student-t nu = 4 with day-varying scale;
    band 4 binomial SE."""
    nu, level, t_days, n_sims, reps = 4.0, 0.975, 100, 199, 1000
    x, es = _t_var_es(nu, level)
    rng = np.random.default_rng(2014)
    rejections = 0
    for _ in range(reps):
        scale = np.exp(rng.normal(0.0, 0.3, t_days))
        draws = rng.standard_t(nu, size=(n_sims + 1, t_days)) * scale
        r = acerbi_szekely_z2(draws[0], x * scale, es * scale, level,
                              simulated_losses=draws[1:])
        rejections += r.p_value < 0.05
        assert (r.p_value < 0.05) == (r.statistic > np.sort(r.simulated_statistics)[-10])
    rate = rejections / reps
    assert abs(rate - 0.05) < SE_BAND * math.sqrt(0.05 * 0.95 / reps)


def test_z2_rejects_under_margining_model():
    """Oracle: law (power > size). The model under test is the true Student-t law scaled
    by 0.7, so its ES (and VaR) is 0.7 times the truth and its simulations are drawn from
    that scaled law; realised losses come from the truth. (Scaling only the ES while
    simulating from the true law would shift the simulated null by the same amount and
    could not be detected: the simulations must come from the model whose ES is tested.)
    Over 100 repetitions the rejection rate at 5 % must exceed the size by far: above
    0.05 + 4 SE and above one half."""
    nu, level, t_days, n_sims, reps = 4.0, 0.975, 500, 299, 100
    x, es = _t_var_es(nu, level)
    rng = np.random.default_rng(70)
    rejections = 0
    for _ in range(reps):
        scale = np.exp(rng.normal(0.0, 0.3, t_days))
        obs = rng.standard_t(nu, size=t_days) * scale
        sims = 0.7 * rng.standard_t(nu, size=(n_sims, t_days)) * scale
        r = acerbi_szekely_z2(obs, 0.7 * x * scale, 0.7 * es * scale, level,
                              simulated_losses=sims)
        rejections += r.p_value < 0.05
    rate = rejections / reps
    assert rate > 0.05 + SE_BAND * math.sqrt(0.05 * 0.95 / reps)
    assert rate > 0.5


def test_z2_callable_sampler_matches_array():
    """Oracle: SPEC 7 reproducibility: a callable sampler called with default_rng(seed)
    gives exactly the result of the array it would draw; the seed fixes the p-value."""
    nu, level, t_days = 4.0, 0.99, 60
    x, es = _t_var_es(nu, level)
    obs = np.random.default_rng(1).standard_t(nu, size=t_days)

    def sampler(rng, n):
        return rng.standard_t(nu, size=(n, t_days))

    a = acerbi_szekely_z2(obs, x, es, level, simulated_losses=sampler, n_sims=300, seed=9)
    arr = sampler(np.random.default_rng(9), 300)
    b = acerbi_szekely_z2(obs, x, es, level, simulated_losses=arr)
    assert a.to_dict() == b.to_dict() and a.n_sims == 300
    with pytest.raises(ValueError, match="n_sims"):
        acerbi_szekely_z2(obs, x, es, level, simulated_losses=lambda rng, n: arr[:10],
                          n_sims=300)


def test_resample_scenarios_per_day_and_exact_null():
    """Oracles: definition (each column resampled from that day's scenarios, reproducible
    by seed) and the law E[Z2] = 0 for the empirical scenario law when VaR is the order
    statistic below the top k = alpha n_scen scenarios and ES their mean; |mean| < 4 SE."""
    n_scen, t_days, level = 400, 50, 0.975
    k = round((1 - level) * n_scen)
    rng = np.random.default_rng(4)
    scen = rng.standard_t(3.0, size=(n_scen, t_days)) * np.exp(rng.normal(0, 0.5, t_days))
    out = resample_scenarios(scen, 5000, seed=12)
    assert out.shape == (5000, t_days)
    for t in range(t_days):
        assert np.isin(out[:, t], scen[:, t]).all()
    np.testing.assert_array_equal(out, resample_scenarios(scen, 5000, seed=12))
    srt = np.sort(scen, axis=0)
    var = srt[n_scen - k - 1]
    es = srt[n_scen - k:].mean(axis=0)
    r = acerbi_szekely_z2(out[0], var, es, level, simulated_losses=out)
    z = r.simulated_statistics
    assert abs(z.mean()) < SE_BAND * z.std(ddof=1) / math.sqrt(z.size)


# --------------------------------------------------------------------------- API contract
def test_results_convert_to_pandas():
    """Oracle: project convention (frozen dataclasses with to_dict that pandas tabulates)."""
    rows = [kupiec(5, 250, 0.99).to_dict(), kupiec(57, 1043, 0.95).to_dict()]
    df = pd.DataFrame(rows)
    assert df.shape == (2, 8) and df["n_obs"].tolist() == [250, 1043]
    assert set(christoffersen(_matlab_hits(), 0.95).to_dict()) >= {"lr_ind", "lr_cc", "n11"}
    assert pd.Series(traffic_light(7).to_dict())["zone"] == "yellow"
    r = acerbi_szekely_z2([1.0, 3.0], 2.0, 2.5, 0.9, simulated_losses=[[0.0, 1.0]])
    assert "simulated_statistics" not in r.to_dict()
    with pytest.raises(AttributeError):
        r.statistic = 0.0  # frozen


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (lambda: kupiec(6, 5, 0.99), ValueError, ["n_exceptions", "<= 5", "6"]),
        (lambda: kupiec(1, 0, 0.99), ValueError, ["n_obs", ">= 1", "0"]),
        (lambda: kupiec(1, 10, 1.0), ValueError, ["level", "< 1", "1.0"]),
        (lambda: kupiec(1.0, 10, 0.99), TypeError, ["n_exceptions", "integer"]),
        (lambda: christoffersen([0, 2, 1], 0.99), ValueError, ["hits", "2", "index 1"]),
        (lambda: christoffersen([True], 0.99), ValueError, ["hits", "at least 2"]),
        (lambda: traffic_light(3, 250, 0.0), ValueError, ["level", "> 0"]),
        (lambda: exceptions([1.0, np.nan], 0.0), ValueError, ["losses", "nan", "index 1"]),
        (lambda: exceptions([1.0, 2.0], [1.0]), ValueError, ["margin", "length 1"]),
        (lambda: exceptions([1.0, 2.0], 0.0, horizon=3), ValueError, ["horizon", "<= 2"]),
        (lambda: exceptions([1.0, 2.0], 0.0, horizon=2, offset=2), ValueError,
         ["offset", "<= 1"]),
        (lambda: acerbi_szekely_z2([1.0, 2.0], 1.0, [1.0, 0.0], 0.9), ValueError,
         ["es", "> 0", "index 1"]),
        (lambda: acerbi_szekely_z2([1.0, 2.0], 1.0, 1.5, 0.9, simulated_losses=np.ones(2)),
         ValueError, ["simulated_losses", "(n_sims, 2)"]),
        (lambda: resample_scenarios(np.ones(3), 10), ValueError, ["scenarios", "2-D"]),
        (lambda: resample_scenarios(np.ones((3, 2)), 0), ValueError, ["n_sims", ">= 1"]),
    ],
)
def test_bad_arguments_name_argument_value_and_range(call, exc, words):
    """Oracle: project convention: errors name the argument, its value and the range."""
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)
