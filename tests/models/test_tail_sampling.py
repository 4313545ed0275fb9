"""Variance-reduced scenario sets (randomised QMC, defensive-mixture importance sampling)
through the whole margin engine: scenarios -> revaluation -> portfolio_risk."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from marginlab.models import GARCH, GBM, Book, MarketState, MertonJump
from marginlab.models.portfolio import portfolio_risk, revalue
from marginlab.models.scenarios import monte_carlo_scenarios
from marginlab.simulate.pricing import black_scholes_price

MODEL = GBM(mu=0.0, sigma=[0.6, 0.8], corr=[[1.0, 0.8], [0.8, 1.0]])
MARKET = MarketState(spot={"BTC": 60_000.0, "ETH": 3_000.0}, vol={"BTC": 0.6, "ETH": 0.8})
H_DAYS = 2.0
T = H_DAYS / 365.0
A = 0.99


def _cash(accounts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"account_id": accounts, "asset": ["USDT"] * len(accounts),
                         "amount": [1000.0] * len(accounts)})


def _book(kind: str) -> Book:
    if kind == "perp":
        inst = pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                             "underlying": ["BTC"], "funding_rate": [0.0]})
        qty, entry, iid = 1.0, 60_000.0, "BTC-PERP"
    else:
        inst = pd.DataFrame({"instrument_id": ["BTC-C"], "type": ["option"],
                             "underlying": ["BTC"], "strike": [63_000.0], "expiry": [0.1],
                             "option_type": ["call"]})
        qty, entry, iid = -1.0, 1_000.0, "BTC-C"
    pos = pd.DataFrame({"account_id": ["a"], "instrument_id": [iid],
                        "quantity": [qty], "entry_price": [entry]})
    return Book.from_frames(inst, pos, _cash(["a"]))


def _loss_of_x(kind: str, x: float) -> float:
    """Loss of the position when BTC's horizon log return is x."""
    s = 60_000.0 * math.exp(x)
    if kind == "perp":
        return 60_000.0 - s
    v0 = black_scholes_price(60_000.0, 63_000.0, 0.1, 0.6, 0.0, 0.0, is_call=True)
    v1 = black_scholes_price(s, 63_000.0, 0.1 - T, 0.6, 0.0, 0.0, is_call=True)
    return float(v1 - v0)


def _closed_form(kind: str) -> tuple[float, float]:
    """VaR / ES at 99 % of a loss monotone in the lognormal BTC price: the quantile of
    log S_T and the tail integral of the loss against the normal density (quadrature; for
    the perpetual the lognormal closed form, checked against the quadrature)."""
    m, sd = -0.5 * 0.36 * T, 0.6 * math.sqrt(T)
    sign = -1.0 if kind == "perp" else 1.0  # losing side: down for the long perp
    x_a = m + sign * sd * norm.ppf(A)
    var = _loss_of_x(kind, x_a)
    if kind == "perp":
        es = 60_000.0 * (1.0 - math.exp(m + sd * sd / 2) * norm.cdf((x_a - m - sd * sd) / sd)
                         / (1.0 - A))
    else:
        es = quad(lambda y: _loss_of_x(kind, m + sd * y) * norm.pdf(y), norm.ppf(A), 12.0,
                  epsabs=1e-9)[0] / (1.0 - A)
    return var, es


def test_perp_closed_form_matches_quadrature():
    """Oracle: the lognormal closed-form ES of a long BTC perpetual equals the quadrature of
    its loss over the tail (the oracle of the option test) to 1e-8 relative."""
    m, sd = -0.5 * 0.36 * T, 0.6 * math.sqrt(T)
    q = quad(lambda y: _loss_of_x("perp", m + sd * y) * norm.pdf(y), -12.0, norm.ppf(1 - A),
             epsabs=1e-9)[0] / (1 - A)
    assert _closed_form("perp")[1] == pytest.approx(q, rel=1e-8)


@pytest.mark.parametrize("kind", ["perp", "option"])
@pytest.mark.parametrize("sampling", ["qmc", "mixture", "shift"])
def test_unbiased_with_honest_intervals(kind, sampling):
    """Oracle: closed forms (lognormal VaR / ES of one long perpetual; tail quadrature of a
    Black-Scholes short call revalued at the horizon), by replication: 80 independent seeds
    of n = 4,096 scenarios through portfolio_risk. The mean ES is within 3 SE (sd / sqrt(80))
    of the closed form, and the nominal 95 % ES intervals (QMC: Student-t on 15 d.o.f. from
    the spread of 16 randomisations; mixture and shift: delta method with weights) cover it in
    95 % +- 3 binomial SE of the replications."""
    book = _book(kind)
    var_true, es_true = _closed_form(kind)
    reps = 80
    es, cover = [], 0
    for seed in range(reps):
        sc = monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=H_DAYS,
                                   n_scenarios=4096, seed=1000 + seed, sampling=sampling)
        r = portfolio_risk(book, MARKET, sc, levels=A, allocate=False)
        es.append(r.es[0, 0])
        cover += bool(r.es_lo[0, 0] <= es_true <= r.es_hi[0, 0])
    es = np.array(es)
    assert abs(es.mean() - es_true) < 3 * es.std(ddof=1) / math.sqrt(reps), (es.mean(), es_true)
    assert abs(cover / reps - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / reps), cover / reps


def test_reproducible_and_weights_have_mean_one():
    """Oracle (laws): the same seed gives the same bits; mixture weights are likelihood
    ratios, so their mean under the sampling measure is 1 (within 4 SE); QMC sets carry
    their randomisation count and no weights; an account's result does not depend on the
    block of accounts it is computed in (account_block)."""
    for sampling in ("qmc", "shift", "mixture"):
        a = monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=H_DAYS,
                                  n_scenarios=2048, seed=7, sampling=sampling, vol_of_vol=1.0)
        b = monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=H_DAYS,
                                  n_scenarios=2048, seed=7, sampling=sampling, vol_of_vol=1.0)
        np.testing.assert_array_equal(a.prices, b.prices)
        np.testing.assert_array_equal(a.vol_shock, b.vol_shock)
        assert a.sampling == sampling
    assert a.weights is not None
    w = a.weights
    assert abs(w.mean() - 1.0) < 4 * w.std() / math.sqrt(w.size)
    assert np.all(w <= 1.0 / (1.0 - 0.75) + 1e-12)
    q = monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=H_DAYS,
                              n_scenarios=2048, seed=7, sampling="qmc", randomizations=8)
    assert q.weights is None and q.randomizations == 8
    inst = pd.DataFrame({"instrument_id": ["B", "E"], "type": ["linear_perp"] * 2,
                         "underlying": ["BTC", "ETH"], "funding_rate": [0.0, 0.0]})
    pos = pd.DataFrame({"account_id": ["x", "y", "y", "z"], "instrument_id": ["B", "B", "E", "E"],
                        "quantity": [1.0, -1.0, 20.0, -3.0],
                        "entry_price": [60_000.0, 60_000.0, 3_000.0, 3_000.0]})
    book = Book.from_frames(inst, pos, _cash(["x", "y", "z"]))
    for sc in (a, q):
        unit = revalue(book, MARKET, sc)
        full = portfolio_risk(book, MARKET, unit)
        split = portfolio_risk(book, MARKET, unit, account_block=1)
        for name in ("var", "es", "es_se", "var_lo", "es_hi", "alloc_es"):
            np.testing.assert_array_equal(getattr(full, name), getattr(split, name))


def test_merton_qmc_mean_price_and_garch_refused():
    """Oracle: the Merton martingale law E[S_T] = S_0 e^{mu T} (within 4 SE over the QMC
    set, SE from the spread of 16 randomisations); GARCH (path-dependent) and bad options
    are refused naming the argument."""
    mj = MertonJump(mu=0.0, sigma=[0.5, 0.7], lam=[20.0, 10.0], jump_mean=[-0.05, -0.08],
                    jump_std=[0.1, 0.12], corr=[[1.0, 0.5], [0.5, 1.0]])
    sc = monte_carlo_scenarios(mj, MARKET, ["BTC", "ETH"], horizon_days=5, n_scenarios=8192,
                               seed=3, sampling="qmc")
    g = sc.prices.reshape(16, -1, 2).mean(axis=1)
    se = g.std(axis=0, ddof=1) / 4.0
    np.testing.assert_array_less(np.abs(g.mean(axis=0) - [60_000.0, 3_000.0]), 4 * se)
    garch = GARCH(omega=2e-5, alpha=0.08, beta=0.9, sigma2_0=4e-4)
    with pytest.raises(ValueError, match="path-dependent"):
        monte_carlo_scenarios(garch, MarketState(spot={"BTC": 1.0}), ["BTC"], horizon_days=2,
                              n_scenarios=64, seed=1, sampling="qmc")
    with pytest.raises(ValueError, match="multiple of randomizations"):
        monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=2, n_scenarios=100,
                              seed=1, sampling="qmc", randomizations=16)
    with pytest.raises(ValueError, match="sampling must be one of"):
        monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=2, n_scenarios=100,
                              seed=1, sampling="lhs")
    with pytest.raises(ValueError, match="mixture_scale"):
        monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=2, n_scenarios=100,
                              seed=1, sampling="mixture", mixture_scale=0.5)


def test_scenario_set_fields_and_rqmc_error_bar():
    """Oracle: the validation contract of ScenarioSet's new fields, and the definition of the
    randomised-QMC error bar: portfolio_risk's es_se equals sd(ES of each randomisation,
    ddof=1) / sqrt(R), computed here group by group with portfolio_risk on plain sets, and
    the point estimate is the ES of the pooled set."""
    from marginlab.models.scenarios import ScenarioSet

    p = np.full((8, 1), 100.0)
    with pytest.raises(ValueError, match="weights must have shape"):
        ScenarioSet(("X",), p, np.ones_like(p), 0.01, weights=np.ones(7))
    with pytest.raises(ValueError, match="randomizations=3 must divide"):
        ScenarioSet(("X",), p, np.ones_like(p), 0.01, randomizations=3)
    book = _book("perp")
    sc = monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=H_DAYS,
                               n_scenarios=2048, seed=5, sampling="qmc", randomizations=8)
    r = portfolio_risk(book, MARKET, sc, levels=A, allocate=False)
    groups = []
    for g in range(8):
        sub = ScenarioSet(sc.underlyings, sc.prices[g * 256:(g + 1) * 256],
                          sc.vol_shock[g * 256:(g + 1) * 256], sc.horizon)
        groups.append(portfolio_risk(book, MARKET, sub, levels=A, allocate=False).es[0, 0])
    pooled = ScenarioSet(sc.underlyings, sc.prices, sc.vol_shock, sc.horizon)
    assert r.es[0, 0] == portfolio_risk(book, MARKET, pooled, levels=A).es[0, 0]
    assert r.es_se[0, 0] == pytest.approx(np.std(groups, ddof=1) / math.sqrt(8), rel=1e-12)


def test_monte_carlo_margin_passes_sampling_through():
    """Oracle (law): MonteCarloMargin(sampling=...) draws the same set as
    monte_carlo_scenarios with the same options (zero drift: the model's mu is already 0,
    cap: moves of 2 days never reach it), weights included, and its IM is the weighted ES."""
    from marginlab.models.margin.risk_based import MonteCarloMargin

    m = MonteCarloMargin(MODEL, ["BTC", "ETH"], n_scenarios=2048, seed=4, sampling="mixture")
    sc = m.scenarios(MARKET)
    ref = monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=2.0,
                                n_scenarios=2048, seed=4, sampling="mixture")
    np.testing.assert_array_equal(sc.weights, ref.weights)
    np.testing.assert_array_equal(sc.prices, ref.prices)
    book = _book("perp")
    res = m.compute(book, MARKET)
    es = portfolio_risk(book, MARKET, ref, levels=0.99).es[0, 0]
    assert res.im[0] == max(es, 0.0)


def test_shift_weights_are_the_likelihood_ratio():
    """Oracle: the mixture density written out by hand. Shift-mixture weights equal
    phi(z) / q(z), q the defensive mixture of N(0, I) and N(+-theta u_k, I) evaluated with
    scipy's multivariate normal density; the shifted scenarios are the plain draws of
    standard_normal plus +-theta u_k in the documented order; E_q[w h(z)] = E[h(Z)] for
    h = 1{u_0.z > 2.33} (the tail probability 1 - Phi(2.33)) within 4 SE."""
    from scipy.stats import multivariate_normal

    from marginlab.simulate import standard_normal
    from marginlab.simulate.tail_sampling import component_of, shift_normals

    u = np.array([[1.0, 0.0], [0.6, 0.8]])
    th, s, n = 2.5, 0.75, 40_000
    z, w = shift_normals(n, u, shift=th, share=s, seed=11)
    base = standard_normal(n, 1, 2, seed=11)[:, 0, :]
    comp = component_of(n, s, 4)
    shifts = np.zeros((n, 2))
    for c in range(4):
        shifts[comp == c] = (th if c % 2 == 0 else -th) * u[c // 2]
    np.testing.assert_allclose(z, base + shifts, rtol=0, atol=1e-12)
    k = 500
    phi = multivariate_normal(np.zeros(2)).pdf(z[:k])
    q = (1 - s) * phi + sum(s / 4 * multivariate_normal(sg * th * uk).pdf(z[:k])
                            for uk in u for sg in (1.0, -1.0))
    np.testing.assert_allclose(w[:k], phi / q, rtol=1e-10)
    h = (z @ u[0] > 2.33) * w
    assert abs(h.mean() - norm.sf(2.33)) < 4 * h.std() / math.sqrt(n)
    with pytest.raises(ValueError, match="shift_size"):
        monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=2, n_scenarios=100,
                              seed=1, sampling="shift", shift_size=-1.0)
