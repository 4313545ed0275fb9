"""Implied-volatility surfaces (:mod:`marginlab.models.vol_surface`) and their use in
revaluation and scenarios.

Oracles, named per test: a law (a flat surface, and zero skew / term shocks, leave every
number bit for bit as with the flat ``MarketState.vol``); brute force (an SVI fit recovers the
parameters that generated a synthetic chain; the butterfly check agrees with the sign of
finite-difference call-price convexity; the DVOL calibration agrees with a plain loop over the
file); a published example (Axel Vogt's SVI slice with butterfly arbitrage, Gatheral and
Jacquier 2014, section 2.2); the closed form (Black-Scholes with scipy's normal CDF for a risk
reversal under a skew shock; SSVI's no-arbitrage conditions of Gatheral and Jacquier);
Monte Carlo moments within standard errors.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from marginlab.models import (
    GBM,
    Book,
    MarketState,
    account_equity,
    grid_scenarios,
    monte_carlo_scenarios,
    portfolio_risk,
    revalue,
)
from marginlab.models.history import shared_data_dir
from marginlab.models.margin import (
    DeribitLike,
    HistoricalMargin,
    MonteCarloMargin,
    SpanLike,
    historical_scenarios,
)
from marginlab.models.vol_surface import (
    DVOL_FILE,
    SPOT_FILE,
    SVISlice,
    VolSurface,
    calibrate_dvol,
    dvol_history,
    shock_loadings,
)

S0 = 50_000.0
T30 = 30.0 / 365.0


def bs(s, k, t, sigma, r, call):
    """Oracle: Black-Scholes closed form (zero yield) with scipy's normal CDF."""
    d1 = (math.log(s / k) + (r + 0.5 * sigma * sigma) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    if call:
        return s * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * norm.cdf(-d1)


def delta_strike(s, t, sigma, r, delta, call):
    """Strike of a Black-Scholes option with the given |delta| (closed-form inversion)."""
    z = norm.ppf(delta) if call else -norm.ppf(delta)
    return s * math.exp((r + 0.5 * sigma * sigma) * t - z * sigma * math.sqrt(t))


def option_book(extra: list[tuple[str, float]] | None = None) -> Book:
    """Options of several strikes and expiries, a perpetual, three accounts; account RR is a
    30-day 25-delta risk reversal (long call, short put) at 60 % vol."""
    kc = delta_strike(S0, T30, 0.6, 0.0, 0.25, True)
    kp = delta_strike(S0, T30, 0.6, 0.0, 0.25, False)
    inst = pd.DataFrame({
        "instrument_id": ["C-RR", "P-RR", "C60K-90", "P40K-7", "C50K-365", "PERP"],
        "type": ["option", "option", "option", "option", "inverse_option", "linear_perp"],
        "underlying": ["BTC"] * 6,
        "multiplier": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        "face_value": [np.nan] * 6,
        "strike": [kc, kp, 60_000.0, 40_000.0, 50_000.0, np.nan],
        "expiry": [T30, T30, 90 / 365, 7 / 365, 1.0, np.nan],
        "option_type": ["call", "put", "call", "put", "call", None],
        "funding_rate": [np.nan] * 5 + [1e-4],
    })  # fmt: skip
    pos = pd.DataFrame({
        "account_id": ["RR", "RR", "MIX", "MIX", "MIX", "MIX"],
        "instrument_id": ["C-RR", "P-RR", "C60K-90", "P40K-7", "C50K-365", "PERP"],
        "quantity": [10.0, -10.0, -3.0, 5.0, 2.0, 0.5],
        "entry_price": [1000.0, 1000.0, 2000.0, 100.0, 0.2, 50_000.0],
    })  # fmt: skip
    return Book.from_frames(inst, pos, None)


MODEL = GBM(mu=0.0, sigma=0.6)
FLAT = MarketState(spot={"BTC": S0}, vol={"BTC": 0.6}, rate=0.02)


# ----------------------------------------------------------------------------- flat = today
def test_flat_surface_reproduces_flat_vol_bit_for_bit():
    """Oracle: law. A flat surface at the market's vol, with or without ``vol``, gives the
    same unit P&L (full and delta-gamma-vega), equity, MC ES and SPAN-/Deribit-like IM as
    the flat ``MarketState.vol``, bit for bit."""
    book = option_book()
    surf = {"BTC": VolSurface.flat(0.6)}
    m1 = MarketState(spot={"BTC": S0}, vol={"BTC": 0.6}, rate=0.02, surfaces=surf)
    m2 = MarketState(spot={"BTC": S0}, rate=0.02, surfaces=surf)
    sc = monte_carlo_scenarios(MODEL, FLAT, ["BTC"], horizon_days=2, n_scenarios=2000,
                               seed=3, vol_of_vol=1.0)
    for approx in (False, True):
        base = revalue(book, FLAT, sc, approx=approx).pnl
        for m in (m1, m2):
            assert np.array_equal(revalue(book, m, sc, approx=approx).pnl, base)
    eq = account_equity(book, FLAT)
    r0 = portfolio_risk(book, FLAT, sc)
    for m in (m1, m2):
        pd.testing.assert_frame_equal(account_equity(book, m), eq, check_exact=True)
        r = portfolio_risk(book, m, sc)
        assert np.array_equal(r.es, r0.es) and np.array_equal(r.var, r0.var)
    for method in (SpanLike(price_scan=0.1, vol_scan=0.25), DeribitLike()):
        im0 = method.compute(book, FLAT).im
        for m in (m1, m2):
            assert np.array_equal(method.compute(book, m).im, im0)


def test_zero_skew_and_term_shocks_change_nothing():
    """Oracle: law (``exp(0) = 1``). Scenarios carrying all-zero skew and term shocks give
    the unit P&L of the same scenarios without them, bit for bit; so do a grid with
    ``skew_shocks=(0.0,)`` and MC with ``skew_vol = term_vol = 0`` (no arrays at all)."""
    book = option_book()
    sc = monte_carlo_scenarios(MODEL, FLAT, ["BTC"], horizon_days=2, n_scenarios=1000,
                               seed=5, vol_of_vol=1.0)
    assert sc.skew_shock is None and sc.term_shock is None
    z = np.zeros_like(sc.prices)
    sz = dataclasses.replace(sc, skew_shock=z, term_shock=z)
    assert np.array_equal(revalue(book, FLAT, sz).pnl, revalue(book, FLAT, sc).pnl)
    g0 = grid_scenarios(FLAT, ["BTC"], price_moves=[-0.1, 0.0, 0.1], vol_shocks=[0.8, 1.2])
    g1 = grid_scenarios(FLAT, ["BTC"], price_moves=[-0.1, 0.0, 0.1], vol_shocks=[0.8, 1.2],
                        skew_shocks=(0.0,))
    assert g1.skew_shock is None and g1.labels == g0.labels
    assert np.array_equal(revalue(book, FLAT, g1).pnl, revalue(book, FLAT, g0).pnl)


# ----------------------------------------------------------------------------- SVI fit
TRUE_SLICES = [SVISlice(7 / 365, 0.0010, 0.030, -0.35, 0.01, 0.08),
               SVISlice(T30, 0.0080, 0.060, -0.30, 0.02, 0.15),
               SVISlice(0.25, 0.030, 0.100, -0.25, 0.04, 0.25),
               SVISlice(1.0, 0.150, 0.200, -0.20, 0.06, 0.35)]


def _chain(surface: VolSurface, prices: bool = False) -> pd.DataFrame:
    rows = []
    for t in surface.expiries:
        strikes = S0 * np.exp(np.linspace(-0.5, 0.5, 21) * math.sqrt(max(t, 0.1)))
        iv = surface.iv(strikes, t, S0, 0.01)
        for k, v in zip(strikes, iv, strict=True):
            row = dict(expiry=t, strike=k, implied_vol=v)
            if prices:
                call = k >= S0
                row = dict(expiry=t, strike=k, option_type="call" if call else "put",
                           price=bs(S0, k, t, v, 0.01, call))
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("prices", [False, True])
def test_svi_fit_recovers_the_generating_parameters(prices):
    """Oracle: brute force. A chain generated from known raw SVI slices (implied vols, or
    Black-Scholes prices of OTM options that the fit inverts) is fitted back to the same
    parameters (1e-6; prices through a 100-step bisection) and the fitted surface passes the
    arbitrage checks like the true one."""
    true = VolSurface.from_slices(TRUE_SLICES)
    assert true.check_arbitrage() == []
    fit = VolSurface.from_chain(_chain(true, prices), S0, rate=0.01)
    assert fit.expiries == pytest.approx(true.expiries, abs=0)
    for got, want in zip(fit._p, TRUE_SLICES, strict=True):
        np.testing.assert_allclose(got.params(), want.params(), atol=1e-6)
    assert fit.check_arbitrage() == []


def test_chain_from_files_and_errors(tmp_path):
    """Oracle: law (a CSV and a Parquet copy of a chain fit to the DataFrame's surface) and
    the error contract (a missing column, too few quotes, a bad SSVI parameter name the
    argument)."""
    true = VolSurface.from_slices(TRUE_SLICES)
    df = _chain(true)
    df.to_csv(tmp_path / "chain.csv", index=False)
    df.to_parquet(tmp_path / "chain.parquet")
    k = np.linspace(-1, 1, 11)
    w = VolSurface.from_chain(df, S0, rate=0.01).total_variance(k, 0.5)
    for f in ("chain.csv", "chain.parquet"):
        got = VolSurface.from_chain(tmp_path / f, S0, rate=0.01).total_variance(k, 0.5)
        np.testing.assert_allclose(got, w, rtol=1e-9)
    with pytest.raises(ValueError, match="implied_vol"):
        VolSurface.from_chain(df.drop(columns="implied_vol"), S0)
    with pytest.raises(ValueError, match="usable quotes"):
        VolSurface.from_chain(df.iloc[:4], S0)
    with pytest.raises(ValueError, match="eta"):
        VolSurface.ssvi(0.6, rho=-0.5, eta=1.5)
    with pytest.raises(ValueError, match="term_slope"):
        VolSurface.ssvi(0.6, term_slope=-0.6)
    with pytest.raises(ValueError, match="a \\+ b sigma"):
        SVISlice(0.5, -0.1, 0.1, 0.0, 0.0, 0.1)


# ----------------------------------------------------------------------------- arbitrage
def test_svi_interpolates_between_slices_and_keeps_vols_outside():
    """Oracle: the documented rule, by hand. At a listed expiry the surface is the slice;
    midway between two it is the mean of their total variances; beyond the last (before the
    first) each strike keeps the slice's implied vol."""
    s = VolSurface.from_slices(TRUE_SLICES)
    k = np.linspace(-1, 1, 9)
    a, b = TRUE_SLICES[1], TRUE_SLICES[2]
    assert np.array_equal(s.total_variance(k, a.expiry), a.total_variance(k))
    mid = 0.5 * (a.expiry + b.expiry)
    np.testing.assert_allclose(s.total_variance(k, mid),
                               0.5 * (a.total_variance(k) + b.total_variance(k)), rtol=1e-12)
    last, first = TRUE_SLICES[-1], TRUE_SLICES[0]
    np.testing.assert_allclose(s.total_variance(k, 2.0) / 2.0, last.total_variance(k),
                               rtol=1e-12)
    np.testing.assert_allclose(s.total_variance(k, 1 / 365) * 365,
                               first.total_variance(k) / first.expiry, rtol=1e-12)


@pytest.mark.parametrize("rho, eta, gamma, slope", [(-0.3, 1.0, 0.5, 0.0),
                                                    (-0.7, 1.1, 0.3, -0.3),
                                                    (0.2, 1.6, 0.5, 0.4),
                                                    (0.0, 2.0, 0.1, -0.5)])
def test_ssvi_in_the_admissible_region_has_no_static_arbitrage(rho, eta, gamma, slope):
    """Oracle: closed form (Gatheral and Jacquier 2014: SSVI with the power law is free of
    static arbitrage for 0 < gamma <= 1/2, eta (1 + |rho|) <= 2 and non-decreasing ATM total
    variance), checked on a grid of 401 strikes and 17 expiries from 1 day to 2 years, and
    by brute force: call prices from the surface are convex in the strike and increase with
    expiry."""
    s = VolSurface.ssvi(0.6, rho=rho, eta=eta, gamma=gamma, term_slope=slope)
    t = np.array([1, 3, 7, 14, 21, 30, 45, 60, 90, 120, 180, 270, 365, 450, 540, 630, 730])
    assert s.check_arbitrage(expiries=t / 365.0) == []
    strikes = S0 * np.linspace(math.exp(-1.0), math.exp(1.0), 201)  # uniform in K
    prev = None
    for te in t / 365.0:
        c = np.array([bs(S0, k, te, v, 0.0, True)
                      for k, v in zip(strikes, s.iv(strikes, te, S0), strict=True)])
        assert np.all(np.diff(c, 2) >= -1e-9 * S0)
        if prev is not None:
            assert np.all(c - prev >= -1e-9 * S0)
        prev = c


def test_arbitrage_checks_flag_vogt_butterfly_and_a_calendar_inversion():
    """Oracle: published example and brute force. Axel Vogt's raw SVI slice (a, b, rho, m,
    sigma) = (-0.0410, 0.1331, 0.3060, 0.3586, 0.4153), T = 1 (Gatheral and Jacquier 2014,
    section 2.2) has g(k) < 0 near k = 0.7; the check flags it there, and the call prices of
    the slice fail convexity (negative second differences) at the same strikes. Two slices
    whose total variance falls from T = 0.5 to T = 1 are flagged as calendar arbitrage."""
    vogt = VolSurface.from_slices([SVISlice(1.0, -0.0410, 0.1331, 0.3060, 0.3586, 0.4153)])
    bad = [v for v in vogt.check_arbitrage(expiries=[1.0]) if v.kind == "butterfly"]
    assert bad and all(0.2 < v.k < 1.5 for v in bad)
    kmin = min(v.k for v in bad)
    kmax = max(v.k for v in bad)
    ks = np.linspace(kmin, kmax, 41)
    c = np.array([bs(1.0, math.exp(k), 1.0, v, 0.0, True)
                  for k, v in zip(ks, vogt.iv(np.exp(ks), 1.0, 1.0), strict=True)])
    d2 = np.diff(c, 2) / np.diff(np.exp(ks))[1:] ** 2
    assert d2.min() < 0.0
    cal = VolSurface.from_slices([SVISlice(0.5, 0.10, 0.05, 0.0, 0.0, 0.2),
                                  SVISlice(1.0, 0.05, 0.05, 0.0, 0.0, 0.2)])
    viol = cal.check_arbitrage(expiries=[0.5, 1.0])
    assert {v.kind for v in viol} == {"calendar"}
    assert len(viol) == 401 and all(v.value == pytest.approx(-0.05) for v in viol)
    assert VolSurface.flat(0.6).check_arbitrage() == []


def test_shocked_surface_check_flags_large_skew_shocks_and_passes_moderate_ones():
    """Oracle: brute force and the documented measurement. The shocked check's derivatives
    agree with finite differences of the shocked total variance; moderate joint shocks
    (level 0.5 to 1.25, skew +-0.15, term +-0.06) of the documented SSVI example pass; a
    skew shock of -0.6 is flagged as butterfly arbitrage, and call prices at the shocked vols
    (``shocked_vol`` with ``shock_loadings``) fail convexity in the strike by brute force."""
    from marginlab.models.vol_surface import _shock_w, shocked_vol

    base = VolSurface.ssvi(0.6, rho=-0.3, eta=1.0, gamma=0.5, term_slope=-0.1)
    k = np.linspace(-1.0, 1.0, 4001)
    w, w1, w2 = _shock_w(k, 0.2, *base.total_variance(k, 0.2, derivatives=True),
                         (1.3, 0.4, 0.1))
    h = k[1] - k[0]
    np.testing.assert_allclose(np.gradient(w, h)[5:-5], w1[5:-5], atol=1e-6)
    np.testing.assert_allclose(np.gradient(w1, h)[5:-5], w2[5:-5], atol=1e-5)
    t = np.array([1, 3, 7, 14, 30, 60, 90, 180, 365, 730]) / 365.0
    for lev in (0.5, 1.0, 1.25):
        for sk in (-0.15, 0.15):
            for tm in (-0.06, 0.06):
                assert base.check_arbitrage(expiries=t, shock=(lev, sk, tm)) == []
    bad = base.check_arbitrage(expiries=[90 / 365], shock=(1.0, -0.6, 0.0))
    assert bad and {v.kind for v in bad} == {"butterfly"}
    te = 90 / 365
    strikes = S0 * np.linspace(0.2, 1.2, 2001)
    x, y = shock_loadings(strikes, te, S0)
    vols = shocked_vol(base.iv(strikes, te, S0), 1.0, -0.6, 0.0, x, y)
    c = np.array([bs(S0, kk, te, v, 0.0, True) for kk, v in zip(strikes, vols, strict=True)])
    assert np.diff(c, 2).min() < -1e-9 * S0


# ----------------------------------------------------------------------------- in revaluation
def test_surface_vols_price_the_options_and_equity():
    """Oracle: closed form. With an SSVI surface each option is valued (account equity) at
    the Black-Scholes price at the surface's vol for its strike and expiry, and a scenario
    with no price or vol move over no time has zero P&L."""
    book = option_book()
    surf = VolSurface.ssvi(0.6, rho=-0.4, eta=1.2, term_slope=-0.2)
    m = MarketState(spot={"BTC": S0}, rate=0.02, surfaces={"btc": surf})
    assert m.implied_vol("BTC") == pytest.approx(0.6, rel=1e-12)
    inst = book.instruments
    want = {"RR": 0.0, "MIX": 0.0}
    for _, p in book.positions.iterrows():
        r = inst.set_index("instrument_id").loc[p["instrument_id"]]
        if r["type"] == "option":
            v = surf.iv(r["strike"], r["expiry"], S0, 0.02)
            val = bs(S0, r["strike"], r["expiry"], float(v), 0.02, r["option_type"] == "call")
            want[p["account_id"]] += p["quantity"] * (val - p["entry_price"])
    eq = account_equity(book, m).set_index("account_id")["upnl"]
    assert eq["RR"] == pytest.approx(want["RR"], rel=1e-9)
    g = grid_scenarios(m, ["BTC"], price_moves=[0.0])
    assert np.abs(revalue(book, m, g).pnl[:5]).max() < 1e-9 * S0


def _rr_closed_form(s_shock, market, skew_vol_change=None):
    """Risk reversal P&L (10 x (call - put)) at unchanged spot, instantly, under skew shock s,
    from Black-Scholes with the documented rule vol x exp(s x loading)."""
    kc = delta_strike(S0, T30, 0.6, 0.0, 0.25, True)
    kp = delta_strike(S0, T30, 0.6, 0.0, 0.25, False)
    (xc, xp), _ = shock_loadings([kc, kp], T30, S0, market.rate)
    c0, p0 = bs(S0, kc, T30, 0.6, market.rate, True), bs(S0, kp, T30, 0.6, market.rate, False)
    c1 = bs(S0, kc, T30, 0.6 * math.exp(s_shock * xc), market.rate, True)
    p1 = bs(S0, kp, T30, 0.6 * math.exp(s_shock * xp), market.rate, False)
    return 10.0 * ((c1 - c0) - (p1 - p0))


def test_risk_reversal_responds_to_skew_shocks():
    """Oracle: closed form. On a grid of skew shocks at unchanged spot and level, the risk
    reversal's P&L is Black-Scholes at vol x exp(s x loading) for each leg (loadings about
    +0.45 call, -0.35 put); a skew fall (puts bid) is a loss and the P&L is monotone
    in the shock. Zero shock: the unit P&L of the grid without skew shocks, bit for bit."""
    book = option_book()
    shocks = [-0.3, -0.1, 0.0, 0.1, 0.3]
    g = grid_scenarios(FLAT, ["BTC"], price_moves=[0.0], skew_shocks=shocks)
    pnl = revalue(book, FLAT, g).pnl
    rr = 10.0 * (pnl[0] - pnl[1])
    for i, s in enumerate(shocks):
        assert rr[i] == pytest.approx(_rr_closed_form(s, FLAT), rel=1e-9, abs=1e-9)
    assert rr[0] < rr[1] < rr[2] < rr[3] < rr[4] and rr[1] < -1.0 and rr[3] > 1.0
    g0 = grid_scenarios(FLAT, ["BTC"], price_moves=[0.0])
    assert np.array_equal(pnl[:, [2]], revalue(book, FLAT, g0).pnl)
    (xc, xp), _ = shock_loadings([book.instruments["strike"][0], book.instruments["strike"][1]],
                                 T30, S0, FLAT.rate)
    assert 0.38 < xc < 0.48 and -0.43 < xp < -0.33


def test_term_shock_tilts_vols_by_log_expiry_and_spares_30_days():
    """Oracle: closed form. Under a term shock tau at unchanged spot and level, an option of
    expiry T is revalued at Black-Scholes with vol x (T / 30 days)^tau: the 90-day and 1-year
    calls move (opposite to the 7-day put's), the 30-day risk-reversal legs (loading 0) do
    not move at all."""
    from marginlab.models import ScenarioSet

    book = option_book()
    tau = np.array([[-0.2], [0.0], [0.2]])
    sc = ScenarioSet(("BTC",), np.full((3, 1), S0), np.ones((3, 1)), 0.0,
                     term_shock=tau)
    pnl = revalue(book, FLAT, sc).pnl
    base = revalue(book, FLAT, dataclasses.replace(sc, term_shock=None)).pnl
    assert np.array_equal(pnl[:2], base[:2])
    inst = book.instruments
    for j in (2, 3):
        k, t = inst["strike"][j], inst["expiry"][j]
        call = inst["option_type"][j] == "call"
        for i, x in enumerate(tau[:, 0]):
            want = (bs(S0, k, t, 0.6 * (t / T30) ** x, 0.02, call)
                    - bs(S0, k, t, 0.6, 0.02, call))
            assert pnl[j, i] - base[j, i] == pytest.approx(want, rel=1e-9, abs=1e-8)
    assert pnl[2, 2] > pnl[2, 1] > pnl[2, 0] and pnl[3, 2] < pnl[3, 1] < pnl[3, 0]


def test_monte_carlo_margin_of_a_risk_reversal_moves_with_skew_vol():
    """Oracle: law and Monte Carlo. The MC ES of the risk-reversal account is unchanged by
    ``skew_vol = 0`` whatever ``skew_price_corr`` (no skew sensitivity without shocks), and
    the draws' skew shocks have standard deviation skew_vol sqrt(h) and correlation
    skew_price_corr with the log return (within 4 standard errors); with skew_vol on, the ES
    of the risk reversal changes, and with a near-still spot the skew shocks alone add to
    the ES of its two days' time decay."""
    book = option_book()
    base = dict(model=GBM(mu=0.0, sigma=0.6), underlyings=["BTC"], n_scenarios=20_000, seed=1,
                horizon_days=2.0, vol_of_vol=0.9)
    im0 = MonteCarloMargin(**base).compute(book, FLAT).im
    im0b = MonteCarloMargin(**base, skew_price_corr=-0.9).compute(book, FLAT).im
    assert np.array_equal(im0, im0b)
    mc = MonteCarloMargin(**base, skew_vol=0.8, skew_price_corr=0.5, term_vol=0.25)
    im1 = mc.compute(book, FLAT).im
    assert im1[list(book.account_ids).index("RR")] != im0[list(book.account_ids).index("RR")]
    sc = mc.scenarios(FLAT)
    h = 2.0 / 365.0
    n = sc.n_scenarios
    assert sc.skew_shock[:, 0].std() == pytest.approx(0.8 * math.sqrt(h),
                                                     rel=4.0 / math.sqrt(2 * n))
    r = np.corrcoef(sc.skew_shock[:, 0], np.log(sc.prices[:, 0]))[0, 1]
    assert abs(r - 0.5) < 4.0 * (1 - 0.25) / math.sqrt(n)
    quiet = {**base, "model": GBM(mu=0.0, sigma=1e-6), "vol_of_vol": 0.0, "move_cap": None}
    rr = list(book.account_ids).index("RR")
    im_theta = MonteCarloMargin(**quiet).compute(book, FLAT).im[rr]  # time decay only
    assert MonteCarloMargin(**quiet, skew_vol=0.8).compute(book, FLAT).im[rr] > im_theta + 50


# ----------------------------------------------------------------------------- DVOL
def test_dvol_calibration_matches_a_plain_loop_over_the_file():
    """Oracle: brute force. ``calibrate_dvol`` equals a loop over the DVOL and BTC files that
    keeps only date pairs h days apart with both ends present (1 and 5 days); the measured
    figures are those documented in the report (2-day vol of vol about 0.91, correlation
    with BTC about -0.24)."""
    folder = shared_data_dir()
    if folder is None or not (folder / DVOL_FILE).is_file():
        pytest.skip("shared DVOL data absent")
    dv = dict(pd.read_csv(folder / DVOL_FILE)[["date", "dvol_close"]].itertuples(index=False))
    px = dict(pd.read_csv(folder / SPOT_FILE)[["date", "close"]].itertuples(index=False))
    for h in (1, 5):
        x, y = [], []
        for d, v in dv.items():
            d2 = str((pd.Timestamp(d) + pd.Timedelta(days=h)).date())
            if d2 in dv and d in px and d2 in px and v > 0:
                x.append(math.log(dv[d2] / v))
                y.append(math.log(px[d2] / px[d]))
        got = calibrate_dvol(folder, horizon_days=h)
        assert got.n_obs == len(x)
        assert got.vol_of_vol == pytest.approx(np.std(x, ddof=1) / math.sqrt(h / 365), rel=1e-12)
        assert got.vol_price_corr == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    two = calibrate_dvol(folder, horizon_days=2)
    assert 0.85 < two.vol_of_vol < 0.95 and -0.3 < two.vol_price_corr < -0.2


# ----------------------------------------------------------------------------- HS
def test_historical_scenarios_move_the_level_as_the_implied_vol_history_did():
    """Oracle: brute force and law. With an implied-vol history (days missing, starting
    after the prices), each HS scenario's vol shock is IV(t + h) / IV(t) over its return's
    days, from a hand loop that forward-fills the series (1 where it has not started); a
    constant history gives the vol shocks of no history bit for bit; the HS margin of an
    option book then moves with the history."""
    dates = pd.date_range("2024-01-01", periods=60)
    rng = np.random.default_rng(2)
    px = pd.DataFrame({"BTC": S0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, 60)))}, index=dates)
    iv = pd.Series(0.6 * np.exp(np.cumsum(rng.normal(0.0, 0.05, 60))), index=dates)
    gappy = iv.drop(dates[[10, 11, 30]]).iloc[5:]
    sc = historical_scenarios(px, FLAT, horizon_days=2, lookback_days=None,
                              implied_vol=pd.DataFrame({"BTC": gappy}))
    last, ff = None, []
    for d in dates:
        last = gappy[d] if d in gappy.index else last
        ff.append(last)
    want = [ff[r + 2] / ff[r] if ff[r] is not None else 1.0 for r in range(58)]
    np.testing.assert_allclose(sc.vol_shock[:, 0], want, rtol=1e-15)
    const = pd.DataFrame({"BTC": pd.Series(0.6, index=dates)})
    none = historical_scenarios(px, FLAT, horizon_days=2, lookback_days=None)
    assert np.array_equal(historical_scenarios(px, FLAT, horizon_days=2, lookback_days=None,
                                               implied_vol=const).vol_shock, none.vol_shock)
    book = option_book()
    im0 = HistoricalMargin(px, lookback_days=None, level=0.95).compute(book, FLAT).im
    im1 = HistoricalMargin(px, lookback_days=None, level=0.95,
                           implied_vol=pd.DataFrame({"BTC": iv})).compute(book, FLAT).im
    assert np.all(im1 != im0)
    with pytest.raises(ValueError, match="ETH"):
        historical_scenarios(px, FLAT, implied_vol=pd.DataFrame({"ETH": iv}))


def test_dvol_history_matches_the_data_readme():
    """Oracle: the data README's spot checks (DVOL 124.83 on 2021-05-19, 156.20 on
    2021-05-23, 114.72 on 2022-11-09), as decimal vols."""
    folder = shared_data_dir()
    if folder is None or not (folder / DVOL_FILE).is_file():
        pytest.skip("shared DVOL data absent")
    dv = dvol_history(folder)
    assert dv[pd.Timestamp("2021-05-19")] == pytest.approx(1.2483, abs=1e-12)
    assert dv.max() == pytest.approx(1.5620, abs=1e-12)
    assert dv[pd.Timestamp("2022-11-09")] == pytest.approx(1.1472, abs=1e-12)
