"""Futures basis as a scenario risk factor (issue 13, item 1): revaluation, Monte Carlo and
historical simulation.

Oracles: laws (no basis shock, or a zero one, gives today's numbers bit for bit; a
perpetual-only or spot-only book is untouched exactly); the closed form of a normal ES for a
calendar spread under a normal basis factor; brute force (the empirical ES of the calendar
spread's loss ``-10 S' db l`` recomputed from the historical basis moves by hand); the
inverse future's coin P&L formula; the measured basis vol reproduced by a plain loop over
the basis frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from marginlab.models import GBM, Book, MarketState
from marginlab.models.basis import (
    BTC_BASIS_VOL,
    CME_FILE,
    PERP_FILE,
    basis_loadings,
    basis_vol,
    cme_perp_basis,
    daily_basis_moves,
)
from marginlab.models.history import shared_data_dir
from marginlab.models.margin import HistoricalMargin, MonteCarloMargin
from marginlab.models.portfolio import revalue
from marginlab.models.scenarios import ScenarioSet, monte_carlo_scenarios
from marginlab.simulate.revalue import KIND_INVERSE, KIND_LINEAR, unit_pnl

DATA = shared_data_dir() or Path("/nonexistent/shared/data")
HAVE = (DATA / CME_FILE).is_file() and (DATA / PERP_FILE).is_file()
NAN = float("nan")
COLS = ["instrument_id", "type", "underlying", "multiplier", "face_value", "strike", "expiry",
        "option_type"]
INSTR = pd.DataFrame([("BTC-Q", "linear_future", "BTC", 1.0, NAN, NAN, 0.25, None),
                      ("BTC-PERP", "linear_perp", "BTC", 1.0, NAN, NAN, NAN, None),
                      ("BTC-IQ", "inverse_future", "BTC", NAN, 100.0, NAN, 0.25, None),
                      ("BTC", "spot", "BTC", 1.0, NAN, NAN, NAN, None)], columns=COLS)
MARKET = MarketState(spot={"BTC": 60_000.0})
LOAD_Q = math.sqrt(0.25 * 365.0 / 30.0)  # loading of the quarterly (sqrt(tau / 30 days))


def book(rows) -> Book:
    pos = pd.DataFrame(rows, columns=["account_id", "instrument_id", "quantity",
                                      "entry_price"])
    return Book.from_frames(INSTR, pos)


def calendar() -> Book:
    return book([("cal", "BTC-Q", 10.0, 60_000.0), ("cal", "BTC-PERP", -10.0, 60_000.0),
                 ("flat", "BTC-PERP", 10.0, 60_000.0), ("flat", "BTC", -10.0, 60_000.0),
                 ("perp", "BTC-PERP", 3.0, 60_000.0)])


def test_loadings_are_sqrt_tenor_for_futures_only():
    """Law: l = sqrt(tau / 30 days) for dated futures, 0 for perpetuals, spot and options."""
    ld = basis_loadings(["linear_future", "inverse_future", "linear_perp", "spot", "option"],
                        [30 / 365, 0.25, NAN, NAN, 0.25])
    assert ld[0] == pytest.approx(1.0, rel=1e-15)
    assert ld[1] == pytest.approx(LOAD_Q, rel=1e-15)
    assert np.all(ld[2:] == 0.0)


def test_no_or_zero_basis_shock_is_today_bit_for_bit():
    """Law: basis_shock None and basis_shock = 0 give the unit P&L of a set without the
    field, bit for bit (the kernel's flag path and the zero path)."""
    sc = monte_carlo_scenarios(GBM(mu=[0.0], sigma=[0.6]), MARKET, ["BTC"], horizon_days=2,
                               n_scenarios=2_000, seed=5)
    assert sc.basis_shock is None
    b = calendar()
    base = revalue(b, MARKET, sc).pnl
    zero = ScenarioSet(sc.underlyings, sc.prices, sc.vol_shock, sc.horizon,
                       basis_shock=np.zeros_like(sc.prices))
    assert np.array_equal(revalue(b, MARKET, zero).pnl, base)
    # the MC draw with basis_vol = 0 is the same set, and basis_vol leaves prices unchanged
    sb = monte_carlo_scenarios(GBM(mu=[0.0], sigma=[0.6]), MARKET, ["BTC"], horizon_days=2,
                               n_scenarios=2_000, seed=5, basis_vol=0.17)
    assert np.array_equal(sb.prices, sc.prices) and np.array_equal(sb.vol_shock, sc.vol_shock)


def test_unit_pnl_of_futures_under_a_basis_shock():
    """Closed form: linear future m (S' - S0) + m S' db l; inverse future (face F) worth
    F (S'/S0 - 1/(1 + db l)) USD (coin P&L F (1/S0 - 1/F') at S'); perpetual untouched."""
    prices = np.array([[55_000.0], [66_000.0]])
    db = np.array([[0.01], [-0.02]])
    kw = dict(kind=np.array([KIND_LINEAR, KIND_INVERSE, KIND_LINEAR]),
              underlying=np.zeros(3, np.int64), multiplier=np.array([2.0, 100.0, 2.0]),
              strike=np.ones(3), expiry=np.zeros(3), is_call=np.zeros(3, bool),
              implied_vol=np.zeros(3), funding=np.zeros(3), horizon=2 / 365)
    ld = np.array([1.5, 1.5, 0.0])
    u = unit_pnl(prices, None, np.array([60_000.0]), basis_shock=db, basis_loading=ld, **kw)
    s = prices[:, 0]
    x = db[:, 0] * 1.5
    np.testing.assert_allclose(u[0], 2.0 * (s - 60_000.0) + 2.0 * s * x, rtol=1e-14)
    coin = 100.0 * (1.0 / 60_000.0 - 1.0 / (s * (1.0 + x)))
    np.testing.assert_allclose(u[1], coin * s, rtol=1e-12)
    plain = unit_pnl(prices, None, np.array([60_000.0]), **kw)
    assert np.array_equal(u[2], plain[2])
    with pytest.raises(ValueError, match="basis_shock"):
        unit_pnl(prices, None, np.array([60_000.0]), basis_shock=db[:1], basis_loading=ld,
                 **kw)


def test_calendar_spread_mc_es_is_the_normal_closed_form():
    """Closed form: with basis_price_corr = 0 and a nearly still price (sigma 1 %), the
    calendar spread's loss is -10 S0 l db with db ~ N(0, (v sqrt(h))^2): 99 % ES =
    10 S0 l v sqrt(h) phi(z_.99) / 0.01, within 4 Monte Carlo standard errors plus the
    price's 0.1 % share; the perp-only and perp-vs-spot accounts are unchanged exactly (an
    exact 0 stays 0)."""
    g = GBM(mu=[0.0], sigma=[0.01])
    b = calendar()
    base = MonteCarloMargin(g, ["BTC"], n_scenarios=40_000, seed=3).compute(b, MARKET)
    res = MonteCarloMargin(g, ["BTC"], n_scenarios=40_000, seed=3,
                           basis_vol=BTC_BASIS_VOL).compute(b, MARKET)
    sd = 10 * 60_000.0 * LOAD_Q * BTC_BASIS_VOL * math.sqrt(2 / 365)
    closed = sd * norm.pdf(norm.ppf(0.99)) / 0.01
    assert base.im[0] == 0.0
    assert abs(res.im[0] - closed) <= 4 * res.details["es_se"][0] + 1e-3 * closed
    assert res.im[1] == 0.0 and base.im[1] == 0.0
    assert np.array_equal(res.details["es"][2], base.details["es"][2])
    assert np.array_equal(res.details["var"][1:], base.details["var"][1:])


def test_basis_price_correlation_moves_the_factor_with_the_return():
    """Law: basis_shock = v sqrt(h) (c Z_r + sqrt(1 - c^2) eps): its sample correlation with
    the standardised log return is c (within 4 / sqrt(n)) and its sd v sqrt(h)."""
    n = 20_000
    sc = monte_carlo_scenarios(GBM(mu=[0.0], sigma=[0.6]), MARKET, ["BTC"], horizon_days=2,
                               n_scenarios=n, seed=11, basis_vol=0.2, basis_price_corr=0.6)
    x = sc.basis_shock[:, 0]
    r = np.log(sc.prices[:, 0])
    assert np.corrcoef(x, r)[0, 1] == pytest.approx(0.6, abs=4 / math.sqrt(n))
    assert x.std() == pytest.approx(0.2 * math.sqrt(2 / 365), rel=4 / math.sqrt(2 * n))
    with pytest.raises(ValueError, match="basis_vol needs sampling='plain'"):
        monte_carlo_scenarios(GBM(mu=[0.0], sigma=[0.6]), MARKET, ["BTC"], horizon_days=2,
                              n_scenarios=64, seed=1, basis_vol=0.2, sampling="qmc",
                              randomizations=4)
    with pytest.raises(ValueError, match="basis_price_corr"):
        MonteCarloMargin(GBM(mu=[0.0], sigma=[0.6]), ["BTC"], basis_price_corr=1.5)


def synthetic_history(n=400, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2022-01-01", periods=n, freq="D")
    prices = pd.DataFrame({"BTC": 40_000.0 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))},
                          index=dates)
    # basis moves on weekdays only (a CME-like calendar), fat-tailed
    wd = dates[dates.day_of_week < 5]
    moves = pd.DataFrame({"BTC": rng.standard_t(3, len(wd)) * 0.004}, index=wd)
    return prices, moves


def test_hs_calendar_spread_is_the_empirical_es_of_the_basis_moves():
    """Brute force: the HS scenario's basis shock is the sum of the moves dated in
    (t, t + h] (a loop over dates), and the calendar spread's HS ES is the ES of the losses
    -10 S' db l computed by hand (300 scenarios at 99 %: the mean of the 3 worst); without
    ``basis`` the spread's margin is 0."""
    prices, moves = synthetic_history()
    h = 2
    b = calendar()
    hm = HistoricalMargin(prices, horizon_days=h, lookback_days=300, basis=moves)
    sc = hm.scenarios(MARKET)
    d = prices.index
    ref = []
    for i in range(len(d) - h):
        sel = (moves.index > d[i]) & (moves.index <= d[i + h])
        ref.append(moves["BTC"].to_numpy()[sel].sum())
    ref = np.array(ref)[-300:]
    np.testing.assert_allclose(sc.basis_shock[:, 0], ref, rtol=0, atol=1e-15)
    res = hm.compute(b, MARKET)
    loss = -10.0 * sc.prices[:, 0] * ref * LOAD_Q
    top3 = np.sort(loss)[-3:].mean()  # 300 scenarios at 99 %: the mean of the 3 worst
    assert res.details["es"][0] == pytest.approx(top3, rel=1e-9)
    assert res.im[0] > 0.0 and res.im[1] == 0.0
    assert HistoricalMargin(prices, horizon_days=h, lookback_days=300).compute(
        b, MARKET).im[0] == 0.0
    with pytest.raises(ValueError, match="basis column 'ETH'"):
        HistoricalMargin(prices, basis=moves.rename(columns={"BTC": "ETH"})).scenarios(MARKET)


@pytest.mark.skipif(not HAVE, reason="shared data folder absent")
def test_measured_basis_vol_and_daily_moves_on_the_shared_data():
    """Brute force: a plain loop over the basis frame (same contract, not the expiry day, at
    least 7 days left, change scaled by sqrt(30 / days left)) gives basis_vol; the
    documented default is that figure rounded; daily moves are the 1-day such changes."""
    f = cme_perp_basis(DATA)
    rows = list(f.itertuples(index=False))
    ch = [(b.basis - a.basis) * math.sqrt(30.0 / a.days_to_expiry)
          for a, b in zip(rows[:-2], rows[2:], strict=True)
          if a.expiry == b.expiry and a.date != a.expiry and b.date != b.expiry
          and a.days_to_expiry >= 7]
    ref = float(np.std(ch, ddof=1) * math.sqrt(365 / 2))
    assert basis_vol(f, 2) == pytest.approx(ref, rel=1e-12)
    assert abs(ref - BTC_BASIS_VOL) < 0.01
    m = daily_basis_moves(f)
    assert m.index.is_unique and len(m) > 500
    assert m.std() * math.sqrt(365) == pytest.approx(basis_vol(f, 1), rel=1e-12)


def test_deribit_calendar_spread_is_its_roll_shocks_with_an_exact_zero_scan():
    """Hand arithmetic (Deribit's documented roll shock): long 10 BTC quarterly against short
    10 BTC perpetual at 60,000, and the inverse pair of 6,000 x 100 USD faces: the grid's
    worst case is exactly 0 (no 1e-13) and IM = 600,000 x (max(0.01, 0.1 x 0.25) + 0.01)
    = 21,000 for each."""
    from marginlab.models.margin.grid import DeribitLike

    inst = pd.concat([INSTR, pd.DataFrame([("BTC-IP", "inverse_perp", "BTC", NAN, 100.0, NAN,
                                            NAN, None)], columns=COLS)], ignore_index=True)
    pos = pd.DataFrame([("cal", "BTC-Q", 10.0, 60_000.0), ("cal", "BTC-PERP", -10.0, 60_000.0),
                        ("ical", "BTC-IQ", 6_000.0, 60_000.0),
                        ("ical", "BTC-IP", -6_000.0, 60_000.0)],
                       columns=["account_id", "instrument_id", "quantity", "entry_price"])
    res = DeribitLike().compute(Book.from_frames(inst, pos), MARKET)
    assert np.all(res.details["worst_case"] == 0.0)
    np.testing.assert_allclose(res.im, [21_000.0, 21_000.0], rtol=1e-12)


def test_unit_pnl_of_perpetuals_under_a_funding_move():
    """Closed form: a linear perpetual pays mult S0 df more, an inverse one (face F) F df / S0
    coin more, worth F df S'/S0 USD; futures and spot untouched; no funding_shock: bit for
    bit."""
    prices = np.array([[55_000.0], [66_000.0]])
    df = np.array([[0.002], [-0.001]])
    kw = dict(kind=np.array([KIND_LINEAR, KIND_INVERSE, KIND_LINEAR]),
              underlying=np.zeros(3, np.int64), multiplier=np.array([2.0, 100.0, 2.0]),
              strike=np.ones(3), expiry=np.zeros(3), is_call=np.zeros(3, bool),
              implied_vol=np.zeros(3), funding=np.array([3.0, 0.5, 0.0]), horizon=2 / 365)
    s0 = np.array([60_000.0])
    plain = unit_pnl(prices, None, s0, **kw)
    u = unit_pnl(prices, None, s0, funding_shock=df, funding_loading=np.array([1.0, 1.0, 0.0]),
                 **kw)
    np.testing.assert_allclose(u[0], plain[0] - 2.0 * 60_000.0 * df[:, 0], rtol=1e-14)
    np.testing.assert_allclose(u[1], plain[1] - 100.0 * df[:, 0] * prices[:, 0] / 60_000.0,
                               rtol=1e-14)
    assert np.array_equal(u[2], plain[2])
    assert np.array_equal(unit_pnl(prices, None, s0, funding_shock=df, **kw), plain)


def test_hs_funding_moves_are_the_observed_rate_changes_over_the_same_days():
    """Brute force: a loop over the 8-hour settlements gives sum_k (r_k - r_t) over the
    settlements of days (t, t + h], r_t the last rate of day t or before; the calendar
    spread (short the perpetual) then loses -10 x 60,000 x df and its HS ES is the mean of
    the 3 worst such losses out of 300 (no basis moves given), and the long perpetual
    hedged with spot the same with the sign turned."""
    prices, _ = synthetic_history(n=330, seed=4)
    rng = np.random.default_rng(9)
    times = pd.date_range("2021-12-20 08:00", "2022-12-31 16:00", freq="8h")
    rates = pd.DataFrame({"BTC": 1e-4 + rng.standard_t(3, len(times)) * 2e-4}, index=times)
    h = 2
    hm = HistoricalMargin(prices, horizon_days=h, lookback_days=300, funding=rates)
    sc = hm.scenarios(MARKET)
    d = prices.index
    day = rates.index.normalize()
    r = rates["BTC"].to_numpy()
    ref = []
    for i in range(len(d) - h):
        before = np.flatnonzero(day <= d[i])
        if before.size == 0:
            ref.append(0.0)
            continue
        rt = r[before[-1]]
        sel = (day > d[i]) & (day <= d[i + h])
        ref.append(float(np.sum(r[sel] - rt)))
    ref = np.array(ref)[-300:]
    np.testing.assert_allclose(sc.funding_shock[:, 0], ref, rtol=0, atol=1e-15)
    res = hm.compute(calendar(), MARKET)
    loss = -10.0 * 60_000.0 * ref
    assert res.details["es"][0] == pytest.approx(np.sort(loss)[-3:].mean(), rel=1e-9)
    # long perpetual against short spot: the price legs cancel, the funding moves remain
    assert res.details["es"][1] == pytest.approx(np.sort(-loss)[-3:].mean(), rel=1e-9)
