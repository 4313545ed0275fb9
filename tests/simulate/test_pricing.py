"""Tests of marginlab.simulate.pricing.

Oracles, named per test: closed forms written out independently here with
``scipy.stats.norm``; QuantLib (``BlackCalculator`` and ``AnalyticEuropeanEngine`` on flat
curves); published examples (Haug 2007, *The Complete Guide to Option Pricing Formulas*,
2nd ed., chapter 1; Deribit's contract documentation); finite differences of the price;
exact identities (put-call parity, intrinsic value); hand-worked arithmetic.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import QuantLib as ql  # a declared test dependency: fail loudly, never skip the oracle
from scipy.stats import norm

from marginlab.simulate import pricing as P

# The grid of the brief: moneyness K/S 0.5..2, T one day..2 years, vol 5 %..200 %.
S0 = 100.0
MONEYNESS = np.array([0.5, 0.7, 0.9, 0.97, 1.0, 1.03, 1.1, 1.3, 1.6, 2.0])
TIMES = np.array([1 / 365, 7 / 365, 30 / 365, 0.25, 0.5, 1.0, 2.0])
VOLS = np.array([0.05, 0.2, 0.5, 0.8, 1.2, 2.0])
RATES = [(0.0, 0.0), (0.05, 0.0), (0.05, 0.02), (0.01, -0.03)]  # (r, q)


def _grid():
    k, t, v = np.meshgrid(MONEYNESS * S0, TIMES, VOLS, indexing="ij")
    return k.ravel(), t.ravel(), v.ravel()


def _scipy_bs(s, k, t, sigma, r, q, is_call):
    """Oracle: the Black-Scholes-Merton closed form with scipy's normal CDF."""
    d1 = (np.log(s / k) + (r - q + 0.5 * sigma**2) * t) / (sigma * np.sqrt(t))
    d2 = d1 - sigma * np.sqrt(t)
    call = s * np.exp(-q * t) * norm.cdf(d1) - k * np.exp(-r * t) * norm.cdf(d2)
    put = k * np.exp(-r * t) * norm.cdf(-d2) - s * np.exp(-q * t) * norm.cdf(-d1)
    return np.where(is_call, call, put)


def _scipy_b76(f, k, t, sigma, r, is_call):
    """Oracle: the Black-76 closed form with scipy's normal CDF."""
    d1 = (np.log(f / k) + 0.5 * sigma**2 * t) / (sigma * np.sqrt(t))
    d2 = d1 - sigma * np.sqrt(t)
    df = np.exp(-r * t)
    call = df * (f * norm.cdf(d1) - k * norm.cdf(d2))
    put = df * (k * norm.cdf(-d2) - f * norm.cdf(-d1))
    return np.where(is_call, call, put)


def _ql_calc(s, k, t, sigma, r, q, is_call):
    """Oracle: QuantLib's BlackCalculator with forward S e^{(r-q)T} and discount e^{-rT}."""
    opt = ql.Option.Call if is_call else ql.Option.Put
    fwd = s * math.exp((r - q) * t)
    return ql.BlackCalculator(
        ql.PlainVanillaPayoff(opt, k), fwd, sigma * math.sqrt(t), math.exp(-r * t)
    )


def _close(actual, expected, rtol, atol=0.0):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    err = np.abs(actual - expected)
    bad = err > rtol * np.abs(expected) + atol
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} off; worst rel err "
        f"{np.max(err / np.maximum(np.abs(expected), 1e-300))}"
    )


def _close_tails(ours, ref, scale):
    """1e-10 relative wherever the price is >= 1e-12 x scale (all but far-OTM short-dated
    corners of the grid); below that, 1e-8 relative. There the two-term closed form is
    ill-conditioned (F N(d1) and K N(d2) cancel, and N(d) for d ~ -30 amplifies the rounding
    of d by |d|), so two correct float64 evaluations differ by more: measured once against
    50-digit mpmath on this grid, the kernel was within 3e-9 on prices of 1e-290 and within
    2e-12 above 1e-12 x scale."""
    big = ref >= 1e-12 * scale
    _close(ours[big], ref[big], rtol=1e-10)
    _close(ours[~big], ref[~big], rtol=1e-8, atol=1e-300)
    assert big.mean() > 0.85


# ------------------------------------------------------------------ published examples


def test_haug_black76_example():
    # Oracle: Haug (2007) ch. 1, Black-76: F = K = 19, T = 0.75, r = 10 %, sigma = 28 %:
    # call = put = 1.7011 (d1 = 0.1212 = -d2).
    call = P.black76_price(19.0, 19.0, 0.75, 0.28, 0.10, is_call=True)
    put = P.black76_price(19.0, 19.0, 0.75, 0.28, 0.10, is_call=False)
    assert round(float(call), 4) == 1.7011
    assert round(float(put), 4) == 1.7011
    assert call == put  # at the money forward, exactly: phi terms are mirror images


def test_haug_black_scholes_examples():
    # Oracle: Haug (2007) ch. 1: Black-Scholes S=60, K=65, T=0.25, r=8 %, sigma=30 %:
    # call 2.1334; Merton (1973) S=100, K=95, T=0.5, r=10 %, q=5 %, sigma=20 %: put 2.4648.
    assert round(float(P.black_scholes_price(60.0, 65.0, 0.25, 0.30, 0.08, is_call=True)), 4) == (
        2.1334
    )
    put = P.black_scholes_price(100.0, 95.0, 0.5, 0.20, 0.10, 0.05, is_call=False)
    assert round(float(put), 4) == 2.4648


# ------------------------------------------------------------------ closed-form grids


@pytest.mark.parametrize("r,q", RATES)
@pytest.mark.parametrize("is_call", [True, False])
def test_black_scholes_vs_scipy_closed_form(r, q, is_call):
    # Oracle: the closed form with scipy.stats.norm, to 1e-10 relative over the grid (1e-8
    # on the astronomically small far-OTM prices, see _close_tails).
    k, t, v = _grid()
    ours = P.black_scholes_price(S0, k, t, v, r, q, is_call=is_call)
    ref = _scipy_bs(S0, k, t, v, r, q, is_call)
    _close_tails(ours, ref, S0)


@pytest.mark.parametrize("r", [0.0, 0.05, 0.10])
@pytest.mark.parametrize("is_call", [True, False])
def test_black76_vs_scipy_closed_form(r, is_call):
    # Oracle: the Black-76 closed form with scipy.stats.norm, to 1e-10 relative (1e-8 on the
    # astronomically small far-OTM prices, see _close_tails).
    k, t, v = _grid()
    ours = P.black76_price(S0, k, t, v, r, is_call=is_call)
    ref = _scipy_b76(S0, k, t, v, r, is_call)
    _close_tails(ours, ref, S0)


def _ql_tol(s, k):
    # QuantLib's N(x) = 0.5 (1 + erf(x / sqrt 2)) loses relative accuracy for x << 0 (an
    # absolute error ~1e-16, then an asymptotic series below N = 1e-8), so far-out-of-the-
    # money prices carry an absolute error ~1e-16 x (S + K) there. The tolerance is 1e-10
    # relative plus 1e-13 x max(S, K) absolute; scipy's tail-accurate ndtr pins the tails.
    return 1e-13 * max(s, k)


@pytest.mark.parametrize("r,q", RATES)
def test_black_scholes_vs_quantlib(r, q):
    # Oracle: QuantLib BlackCalculator (price, delta, gamma, vega, theta per year).
    k, t, v = _grid()
    for is_call in (True, False):
        g = P.black_scholes_greeks(S0, k, t, v, r, q, is_call=is_call)
        price = P.black_scholes_price(S0, k, t, v, r, q, is_call=is_call)
        np.testing.assert_array_equal(g.price, price)  # one formula, bit for bit
        for i in range(k.size):
            c = _ql_calc(S0, k[i], t[i], v[i], r, q, is_call)
            atol = _ql_tol(S0, k[i])
            _close(g.price[i], c.value(), 1e-10, atol)
            _close(g.delta[i], c.delta(S0), 1e-10, 1e-13)
            _close(g.gamma[i], c.gamma(S0), 1e-9, 1e-13 / S0)
            _close(g.vega[i], c.vega(t[i]), 1e-9, atol)
            _close(g.theta[i], c.theta(S0, t[i]), 1e-9, atol * (1 + v[i] ** 2 + 1 / t[i]))


@pytest.mark.parametrize("r", [0.0, 0.05])
def test_black76_greeks_vs_quantlib(r):
    # Oracle: QuantLib BlackCalculator on the forward: deltaForward, gammaForward, vega;
    # theta(spot=F) is the fixed-forward theta r V - F e^{-rT} n(d1) sigma / (2 sqrt T).
    k, t, v = _grid()
    for is_call in (True, False):
        g = P.black76_greeks(S0, k, t, v, r, is_call=is_call)
        for i in range(k.size):
            c = _ql_calc(S0, k[i], t[i], v[i], r, r, is_call)
            atol = _ql_tol(S0, k[i])
            _close(g.price[i], c.value(), 1e-10, atol)
            _close(g.delta[i], c.deltaForward(), 1e-10, 1e-13)
            _close(g.gamma[i], c.gammaForward(), 1e-9, 1e-13 / S0)
            _close(g.vega[i], c.vega(t[i]), 1e-9, atol)
            _close(g.theta[i], c.theta(S0, t[i]), 1e-9, atol * (1 + v[i] ** 2 + 1 / t[i]))


def test_black_scholes_vs_quantlib_analytic_engine():
    # Oracle: QuantLib EuropeanOption + AnalyticEuropeanEngine on flat curves (Actual/365
    # Fixed, so T = days / 365 exactly); NPV, delta, gamma, vega, theta per year.
    today = ql.Date(15, ql.January, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    cases = [  # (S, K, days, sigma, r, q, is_call)
        (50_000.0, 55_000.0, 30, 0.65, 0.05, 0.0, True),
        (50_000.0, 40_000.0, 7, 0.90, 0.0, 0.0, False),
        (3_000.0, 3_000.0, 365, 0.75, 0.03, 0.01, True),
        (100.0, 180.0, 1, 0.05, 0.05, 0.02, False),
        (100.0, 60.0, 730, 2.0, 0.02, -0.01, True),
    ]
    for s, k, days, sigma, r, q, is_call in cases:
        spot = ql.QuoteHandle(ql.SimpleQuote(s))
        rts = ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc))
        qts = ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc))
        vts = ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), sigma, dc)
        )
        process = ql.BlackScholesMertonProcess(spot, qts, rts, vts)
        opt = ql.EuropeanOption(
            ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, k),
            ql.EuropeanExercise(today + days),
        )
        opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        g = P.black_scholes_greeks(s, k, days / 365, sigma, r, q, is_call=is_call)
        atol = 1e-13 * max(s, k)
        _close(g.price, opt.NPV(), 1e-10, atol)
        _close(g.delta, opt.delta(), 1e-10, 1e-13)
        _close(g.gamma, opt.gamma(), 1e-9, 1e-13 / s)
        _close(g.vega, opt.vega(), 1e-9, atol)
        _close(g.theta, opt.theta(), 1e-9, atol * 365)


@pytest.mark.parametrize("r,q", RATES)
def test_put_call_parity(r, q):
    # Oracle: put-call parity C - P = S e^{-qT} - K e^{-rT}, to 1e-12 of the scale max(S, K).
    k, t, v = _grid()
    c = P.black_scholes_price(S0, k, t, v, r, q, is_call=True)
    p = P.black_scholes_price(S0, k, t, v, r, q, is_call=False)
    parity = S0 * np.exp(-q * t) - k * np.exp(-r * t)
    assert np.all(np.abs((c - p) - parity) <= 1e-12 * np.maximum(S0, k))
    c76 = P.black76_price(S0, k, t, v, r, is_call=True)
    p76 = P.black76_price(S0, k, t, v, r, is_call=False)
    assert np.all(np.abs((c76 - p76) - np.exp(-r * t) * (S0 - k)) <= 1e-12 * np.maximum(S0, k))


# ------------------------------------------------------------------ finite differences


@pytest.mark.parametrize("is_call", [True, False])
def test_greeks_vs_finite_differences(is_call):
    # Oracle: central finite differences of the price. Steps scale with the total
    # volatility v = sigma sqrt(T) (so the truncation error is ~1e-6 relative everywhere);
    # theta = -dV/dT at fixed S and sigma.
    r, q = 0.04, 0.01
    k, t, sig = _grid()
    s = np.full_like(k, S0)
    g = P.black_scholes_greeks(s, k, t, sig, r, q, is_call=is_call)

    def price(s_, t_=t, sig_=sig):
        return P.black_scholes_price(s_, k, t_, sig_, r, q, is_call=is_call)

    v = sig * np.sqrt(t)
    hs = 1e-3 * S0 * v
    fd_delta = (price(s + hs) - price(s - hs)) / (2 * hs)

    # gamma against the difference of the (separately checked) delta: a second difference
    # of the price would lose ~eps V / h^2 to rounding
    def delta(s_):
        return P.black_scholes_greeks(s_, k, t, sig, r, q, is_call=is_call).delta

    fd_gamma = (delta(s + hs) - delta(s - hs)) / (2 * hs)
    hv = 1e-4 * sig
    fd_vega = (price(s, sig_=sig + hv) - price(s, sig_=sig - hv)) / (2 * hv)
    ht = 1e-4 * t
    fd_theta = -(price(s, t_=t + ht) - price(s, t_=t - ht)) / (2 * ht)
    _close(g.delta, fd_delta, 1e-5, 1e-8)
    _close(g.gamma, fd_gamma, 1e-5, 1e-12)
    _close(g.vega, fd_vega, 1e-5, 1e-8 * S0)
    _close(g.theta, fd_theta, 1e-5, 1e-8 * S0 / t)


def test_black76_greeks_vs_finite_differences():
    # Oracle: central finite differences of the Black-76 price in F, sigma and T.
    r = 0.05
    k, t, sig = _grid()
    f = np.full_like(k, S0)
    for is_call in (True, False):
        g = P.black76_greeks(f, k, t, sig, r, is_call=is_call)
        h = 1e-3 * S0 * sig * np.sqrt(t)
        up = P.black76_price(f + h, k, t, sig, r, is_call=is_call)
        dn = P.black76_price(f - h, k, t, sig, r, is_call=is_call)
        _close(g.delta, (up - dn) / (2 * h), 1e-5, 1e-8)
        d_up = P.black76_greeks(f + h, k, t, sig, r, is_call=is_call).delta
        d_dn = P.black76_greeks(f - h, k, t, sig, r, is_call=is_call).delta
        _close(g.gamma, (d_up - d_dn) / (2 * h), 1e-5, 1e-12)
        ht = 1e-4 * t
        th = -(P.black76_price(f, k, t + ht, sig, r, is_call=is_call)
               - P.black76_price(f, k, t - ht, sig, r, is_call=is_call)) / (2 * ht)  # fmt: skip
        _close(g.theta, th, 1e-5, 1e-8 * S0 / t)


# ------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("is_call", [True, False])
def test_expired_options_pay_intrinsic(is_call):
    # Oracle: the payoff max(phi (S - K), 0), undiscounted, for T == 0 and T < 0.
    s = np.array([50.0, 100.0, 150.0, 100.0])
    k = np.array([100.0, 100.0, 100.0, 1e-6])
    phi = 1.0 if is_call else -1.0
    intrinsic = np.maximum(phi * (s - k), 0.0)
    for t in (0.0, -0.5):
        np.testing.assert_array_equal(
            P.black_scholes_price(s, k, t, 0.8, 0.05, 0.02, is_call=is_call), intrinsic
        )
        np.testing.assert_array_equal(P.black76_price(s, k, t, 0.8, 0.05, is_call=is_call),
                                      intrinsic)  # fmt: skip
        g = P.black_scholes_greeks(s, k, t, 0.8, 0.05, 0.02, is_call=is_call)
        np.testing.assert_array_equal(g.price, intrinsic)
        # delta is the payoff's slope, half at the kink S == K; the rest are 0
        slope = np.array([0.0, 0.5, 1.0, 1.0]) if is_call else np.array([-1.0, -0.5, 0, 0])
        np.testing.assert_array_equal(g.delta, slope)
        for x in (g.gamma, g.vega, g.theta):
            np.testing.assert_array_equal(x, 0.0)


@pytest.mark.parametrize("is_call", [True, False])
def test_zero_vol_is_discounted_forward_intrinsic(is_call):
    # Oracle: sigma = 0 -> max(phi (S e^{-qT} - K e^{-rT}), 0), the discounted intrinsic
    # value of the forward; delta phi e^{-qT} or 0; gamma, vega 0 away from the kink.
    r, q, t = 0.05, 0.02, 0.5
    s = 100.0
    k = np.array([50.0, 90.0, 110.0, 200.0])
    phi = 1.0 if is_call else -1.0
    ref = np.maximum(phi * (s * math.exp(-q * t) - k * math.exp(-r * t)), 0.0)
    _close(P.black_scholes_price(s, k, t, 0.0, r, q, is_call=is_call), ref, 1e-15)
    g = P.black_scholes_greeks(s, k, t, 0.0, r, q, is_call=is_call)
    _close(g.price, ref, 1e-15)
    itm = ref > 0
    _close(g.delta, np.where(itm, phi * math.exp(-q * t), 0.0), 1e-15)
    np.testing.assert_array_equal(g.gamma, 0.0)
    np.testing.assert_array_equal(g.vega, 0.0)
    # theta = d/dt of phi (S e^{-q(T-t)} - K e^{-r(T-t)}) where in the money
    theta_ref = np.where(itm, phi * (q * s * math.exp(-q * t) - r * k * math.exp(-r * t)), 0.0)
    _close(g.theta, theta_ref, 1e-14, 1e-14)
    # Black-76: e^{-rT} max(phi (F - K), 0)
    _close(P.black76_price(s, k, t, 0.0, r, is_call=is_call),
           math.exp(-r * t) * np.maximum(phi * (s - k), 0.0), 1e-15)  # fmt: skip


def test_zero_vol_at_the_forward_kink():
    # Oracle: the sigma -> 0 limits at F == K: price 0, delta half the ITM slope, vega the
    # limit F e^{-rT} n(0) sqrt(T) of the closed form, no NaN.
    g = P.black76_greeks(100.0, 100.0, 0.25, 0.0, 0.05, is_call=True)
    assert g.price == 0.0
    _close(g.delta, 0.5 * math.exp(-0.05 * 0.25), 1e-15)
    _close(g.vega, 100.0 * math.exp(-0.05 * 0.25) * 0.5 / math.sqrt(2 * math.pi), 1e-15)
    assert g.gamma == 0.0
    tiny = P.black76_greeks(100.0, 100.0, 0.25, 1e-9, 0.05, is_call=True)
    _close(tiny.vega, g.vega, 1e-12)  # continuity of the limit


@pytest.mark.parametrize("is_call", [True, False])
def test_deep_itm_otm_without_nan(is_call):
    # Oracle: the limits. With total vol sigma sqrt(T) <= 0.071 and strikes a factor >= 1000
    # from the spot, out-of-the-money prices underflow to 0 and in-the-money prices equal
    # the discounted forward intrinsic value phi (S e^{-qT} - K e^{-rT}) to 1e-15 relative.
    # With sigma = 200 %, T = 2 the prices stay finite and within the no-arbitrage bounds
    # max(phi (S e^{-qT} - K e^{-rT}), 0) <= V <= S e^{-qT} (call) or K e^{-rT} (put).
    r, q = 0.05, 0.02
    s = 100.0
    k = np.array([1e-3, 0.1, 1e4, 1e6])
    t = np.array([[1e-8], [1 / 365], [2.0]])
    sig = np.array([[[1e-12]], [[0.05]], [[2.0]]])
    phi = 1.0 if is_call else -1.0
    for f in (P.black_scholes_price, P.black_scholes_greeks):
        res = f(s, k, t, sig, r, q, is_call=is_call)
        for x in res if isinstance(res, tuple) else (res,):
            assert x.shape == (3, 3, 4) and np.all(np.isfinite(x))
    price = P.black_scholes_price(s, k, t, sig, r, q, is_call=is_call)
    fwd_intrinsic = np.broadcast_to(phi * (s * np.exp(-q * t) - k * np.exp(-r * t)), price.shape)
    itm = np.broadcast_to((k < s) if is_call else (k > s), price.shape)
    low = np.broadcast_to(sig < 1.0, price.shape)
    _close(price[low & itm], fwd_intrinsic[low & itm], 1e-15)
    assert np.all(price[low & ~itm] == 0.0)
    hi = price[2]  # sigma = 200 %
    upper = s * np.exp(-q * t) if is_call else k * np.exp(-r * t)
    assert np.all(hi >= np.maximum(fwd_intrinsic[2], 0.0)) and np.all(hi <= upper)


def test_validation_errors():
    # Oracle: the documented domain (S, K > 0; sigma >= 0; finite; is_call bool).
    with pytest.raises(ValueError, match="spot"):
        P.black_scholes_price(0.0, 100.0, 1.0, 0.5, is_call=True)
    with pytest.raises(ValueError, match="strike"):
        P.black76_price(100.0, -1.0, 1.0, 0.5, is_call=True)
    with pytest.raises(ValueError, match="sigma"):
        P.black_scholes_price(100.0, 100.0, 1.0, -0.1, is_call=True)
    with pytest.raises(ValueError, match="T must be finite"):
        P.black_scholes_price(100.0, 100.0, np.nan, 0.5, is_call=True)
    with pytest.raises(TypeError, match="is_call"):
        P.black_scholes_price(100.0, 100.0, 1.0, 0.5, is_call=1)
    with pytest.raises(ValueError, match="out must be float64"):
        P.black_scholes_price(100.0, [90.0, 100.0], 1.0, 0.5, is_call=True, out=np.empty(3))


def test_broadcasting_and_out():
    # Oracle: element-by-element scalar calls equal the broadcast call; out is filled.
    k = np.array([[80.0], [100.0], [120.0]])
    t = np.array([0.1, 0.5])
    is_call = np.array([True, False])
    out = np.empty((3, 2))
    res = P.black_scholes_price(100.0, k, t, 0.6, 0.01, is_call=is_call, out=out)
    assert res is out
    for i in range(3):
        for j in range(2):
            x = P.black_scholes_price(100.0, k[i, 0], t[j], 0.6, 0.01, is_call=bool(is_call[j]))
            assert out[i, j] == x
    assert isinstance(P.black76_price(1.0, 1.0, 1.0, 0.5, is_call=True), np.floating)


# ------------------------------------------------------------------ inverse options


def test_inverse_option_premium_is_usd_price_over_index():
    # Oracle: Deribit's definition, coin premium = Black-76 USD price (on the forward) / index.
    s = np.array([40_000.0, 50_000.0, 65_000.0])
    f = s * 1.01
    k, t, sig = 50_000.0, 45 / 365, 0.7
    for is_call in (True, False):
        coin = P.inverse_option_premium(s, k, t, sig, 0.0, is_call=is_call, forward=f)
        _close(coin, P.black76_price(f, k, t, sig, 0.0, is_call=is_call) / s, 1e-15)
        _close(coin, _scipy_b76(f, k, t, sig, 0.0, is_call) / s, 1e-10)


def test_inverse_option_hand_worked_atm():
    # Oracle: hand-worked. ATM forward (F = S = K = 50,000), r = 0, T = 30/365, sigma = 60 %:
    # v = 0.6 sqrt(30/365) = 0.6 x 0.2866911 = 0.1720147; d1 = v/2 = -d2, so
    # USD price = F (N(v/2) - N(-v/2)) = F erf(x), x = v / (2 sqrt 2) = 0.0608164;
    # erf(x) = (2 / sqrt(pi)) (x - x^3/3 + x^5/10 - ...)
    #        = 1.1283792 x (0.0608164 - 0.0000750 + 0.0000001) = 1.1283792 x 0.0607415
    #        = 0.0685394;
    # USD price = 50,000 x 0.0685394 = 3426.97; coin premium = 3426.97 / 50,000 = 0.0685394.
    v = 0.6 * math.sqrt(30 / 365)
    coin = P.inverse_option_premium(50_000.0, 50_000.0, 30 / 365, 0.6, is_call=True)
    _close(coin, math.erf(v / (2 * math.sqrt(2))), 1e-14)
    assert round(float(coin), 7) == 0.0685394
    # the USD value at a scenario price S' is coin x S'
    assert round(float(coin) * 50_000.0, 2) == 3426.97


def test_inverse_option_deribit_examples_at_expiry():
    # Oracle: Deribit's documentation. A 300 call with delivery price 400 settles 100 USD =
    # 100 / 400 = 0.25 BTC; a 300 put with delivery 200 settles 100 / 200 = 0.5 BTC.
    # A 100,000 call bought for 0.05 BTC, index 125,000 at expiry: 25,000 USD =
    # 25,000 / 125,000 = 0.2 BTC, P&L 0.2 - 0.05 = 0.15 BTC (0.15 x 125,000 = 18,750 USD).
    assert P.inverse_option_premium(400.0, 300.0, 0.0, 0.5, is_call=True) == 0.25
    assert P.inverse_option_premium(200.0, 300.0, 0.0, 0.5, is_call=False) == 0.5
    value = P.inverse_option_premium(125_000.0, 100_000.0, 0.0, 0.5, is_call=True)
    assert value == 0.2
    pnl = P.inverse_option_pnl(1.0, 0.05, value, 125_000.0)
    _close(pnl.coin, 0.15, 1e-15)
    _close(pnl.usd, 18_750.0, 1e-15)
    # the seller of 2 of them: -0.3 BTC
    _close(P.inverse_option_pnl(-2.0, 0.05, value, 125_000.0).coin, -0.3, 1e-15)


# ------------------------------------------------------------------ futures, perpetuals


def test_inverse_future_hand_worked():
    # Oracle: hand-worked. 100 contracts of 100 USD = 10,000 USD, entry 50,000, exit 40,000:
    # 10,000 x (1/50,000 - 1/40,000) = 10,000 x (0.00002 - 0.000025) = -0.05 BTC,
    # worth -0.05 x 40,000 = -2,000 USD at the exit price.
    pnl = P.inverse_future_pnl(100, 100.0, 50_000.0, 40_000.0)
    _close(pnl.coin, -0.05, 1e-14)
    _close(pnl.usd, -2_000.0, 1e-14)
    _close(P.inverse_future_pnl(-100, 100.0, 50_000.0, 40_000.0).coin, 0.05, 1e-14)


def test_inverse_future_deribit_example():
    # Oracle: Deribit's futures example. 100 contracts of 10 USD bought at 600, sold at 700:
    # 1000/600 - 1000/700 = 1.6666667 - 1.4285714 = 0.2380952 BTC = 166.67 USD at 700.
    pnl = P.inverse_future_pnl(100, 10.0, 600.0, 700.0)
    _close(pnl.coin, 1000 / 600 - 1000 / 700, 1e-15)
    assert round(float(pnl.coin), 6) == 0.238095
    assert round(float(pnl.usd), 2) == 166.67


def test_inverse_perpetual_funding_hand_worked():
    # Oracle: hand-worked, Deribit's convention (positive rate: longs pay shorts;
    # payment = rate x position size x time / 8h). 1,000 contracts x 10 USD = 10,000 USD
    # long, price flat at 50,000, rate 0.01 % per 8 h, one day = 3 intervals:
    # 10,000 x 0.0001 x 3 = 3 USD = 3 / 50,000 = 0.00006 BTC paid.
    pnl = P.inverse_perpetual_pnl(1000, 10.0, 50_000.0, 50_000.0, 0.0001, 1 / 365)
    _close(pnl.coin, -0.00006, 1e-12)
    _close(pnl.usd, -3.0, 1e-12)
    short = P.inverse_perpetual_pnl(-1000, 10.0, 50_000.0, 50_000.0, 0.0001, 1 / 365)
    _close(short.coin, 0.00006, 1e-12)
    # with a move to 40,000: -0.25 BTC from the price, -0.00006 from funding
    pnl = P.inverse_perpetual_pnl(1000, 10.0, 50_000.0, 40_000.0, 0.0001, 1 / 365)
    _close(pnl.coin, 10_000 * (1 / 50_000 - 1 / 40_000) - 0.00006, 1e-12)


def test_linear_future_and_perpetual_hand_worked():
    # Oracle: hand-worked. 2 BTC (qty 2, multiplier 1) long 50,000 -> 51,000: +2,000 USD.
    # Perpetual over one day at 0.01 % per 8 h on 100,000 USD notional: 3 x 10 = 30 USD paid,
    # so 1,970 USD; the short loses 2,000 and receives the 30: -1,970.
    assert P.linear_future_pnl(2.0, 1.0, 50_000.0, 51_000.0) == 2_000.0
    _close(P.linear_perpetual_pnl(2.0, 1.0, 50_000.0, 51_000.0, 0.0001, 1 / 365), 1_970.0, 1e-12)
    _close(P.linear_perpetual_pnl(-2.0, 1.0, 50_000.0, 51_000.0, 0.0001, 1 / 365), -1_970.0,
           1e-12)  # fmt: skip
    # negative funding: shorts pay longs
    _close(P.linear_perpetual_pnl(2.0, 1.0, 50_000.0, 50_000.0, -0.0001, 1 / 365), 30.0, 1e-12)
    # ETH contract of 0.01 ETH (multiplier): 100 contracts = 1 ETH, 3,000 -> 2,900: -100 USD
    _close(P.linear_future_pnl(100, 0.01, 3_000.0, 2_900.0), -100.0, 1e-12)
    _close(P.funding_payment(10_000.0, 0.0001, 1.0), 10_000 * 0.0001 * 1095, 1e-15)


# ------------------------------------------------------------------ scenario revaluation


def _book():
    strike = np.array([50_000.0, 45_000.0, 60_000.0, 3_000.0, 2_500.0, 50_000.0, 3_200.0])
    expiry = np.array([30, 7, 90, 14, 60, 0.5, 0.5]) / 365
    sigma = np.array([0.6, 0.7, 0.55, 0.8, 0.75, 0.6, 0.9])
    is_call = np.array([True, False, True, True, False, True, False])
    und = np.array([0, 0, 0, 1, 1, 0, 1])
    settle = np.array(["inverse", "inverse", "linear", "inverse", "linear", "inverse", "linear"])
    return strike, expiry, sigma, is_call, und, settle


def test_revalue_options_vs_black76():
    # Oracle: the public Black-76 pricer on the forward F = S e^{b tau}, tau = T - horizon,
    # divided by S for inverse options; expired (T <= horizon) options pay intrinsic.
    rng = np.random.default_rng(7)
    n = 300
    prices = np.column_stack([50_000 * np.exp(0.1 * rng.standard_normal(n)),
                              3_000 * np.exp(0.12 * rng.standard_normal(n))])  # fmt: skip
    shock = 0.05 * rng.standard_normal((n, 2))
    strike, expiry, sigma, is_call, und, settle = _book()
    r = np.array([0.0, 0.0, 0.05, 0.0, 0.05, 0.0, 0.05])
    carry = np.array([0.02, 0.0, 0.03, 0.0, 0.0, 0.0, 0.0])
    h = 1 / 365
    for mode in ("additive", "relative"):
        out = P.revalue_options(prices, strike, expiry, sigma, is_call, horizon=h,
                                underlying=und, settlement=settle, r=r, carry=carry,
                                vol_shock=shock, vol_shock_mode=mode)  # fmt: skip
        assert out.shape == (n, strike.size)
        s = prices[:, und]
        sig = sigma + shock[:, und] if mode == "additive" else sigma * (1 + shock[:, und])
        tau = np.maximum(expiry - h, 0.0)
        ref = P.black76_price(s * np.exp(carry * tau), strike, tau, np.maximum(sig, 0.0), r,
                              is_call=is_call)  # fmt: skip
        inverse = settle == "inverse"
        ref = np.where(inverse, ref / s, ref)
        _close(out, ref, 1e-12, 1e-15)
        # the last two expire before the horizon: intrinsic value (in coin for inverse)
        _close(out[:, 5], np.maximum(prices[:, 0] - 50_000.0, 0) / prices[:, 0], 0, 0)
        _close(out[:, 6], np.maximum(3_200.0 - prices[:, 1], 0), 0, 0)
        usd = P.revalue_options(prices, strike, expiry, sigma, is_call, horizon=h,
                                underlying=und, settlement=settle, r=r, carry=carry,
                                vol_shock=shock, vol_shock_mode=mode, units="usd")  # fmt: skip
        _close(usd, np.where(inverse, out * s, out), 1e-14)


def test_revalue_options_one_underlying_and_codes():
    # Oracle: Black-76 with F = S, no shock; settlement given as the integer codes.
    prices = np.array([40_000.0, 50_000.0, 60_000.0])
    strike = np.array([45_000.0, 55_000.0])
    out = P.revalue_options(prices, strike, 0.25, 0.6, np.array([True, False]), horizon=0.0,
                            settlement=[P.SETTLE_INVERSE, P.SETTLE_LINEAR])  # fmt: skip
    ref_c = P.black76_price(prices, 45_000.0, 0.25, 0.6, is_call=True) / prices
    ref_p = P.black76_price(prices, 55_000.0, 0.25, 0.6, is_call=False)
    _close(out[:, 0], ref_c, 1e-13)
    _close(out[:, 1], ref_p, 1e-13)
    with pytest.raises(ValueError, match="underlying indices"):
        P.revalue_options(prices, strike, 0.25, 0.6, True, horizon=0.0, underlying=[0, 1])
    with pytest.raises(ValueError, match="settlement"):
        P.revalue_options(prices, strike, 0.25, 0.6, True, horizon=0.0, settlement="coinz")


def test_revalue_options_thread_count_invariant():
    # Oracle: the same computation on 1 and 2 numba threads, bit for bit.
    rng = np.random.default_rng(11)
    n = 1_000
    prices = np.column_stack([50_000 * np.exp(0.1 * rng.standard_normal(n)),
                              3_000 * np.exp(0.1 * rng.standard_normal(n))])  # fmt: skip
    shock = 0.05 * rng.standard_normal(n)
    strike, expiry, sigma, is_call, und, settle = _book()
    kwargs = dict(horizon=1 / 365, underlying=und, settlement=settle, vol_shock=shock)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = P.revalue_options(prices, strike, expiry, sigma, is_call, **kwargs)
        p1 = P.black_scholes_greeks(prices[:, 0], 50_000.0, 0.1, 0.6, 0.01, is_call=True)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = P.revalue_options(prices, strike, expiry, sigma, is_call, **kwargs)
        p2 = P.black_scholes_greeks(prices[:, 0], 50_000.0, 0.1, 0.6, 0.01, is_call=True)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    for a, b in zip(p1, p2, strict=True):
        np.testing.assert_array_equal(a, b)
