"""Risk-based margin methods (MC VaR/ES, HS/FHS), anti-procyclicality tools and compare()."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from marginlab.models import GBM, Book, MarketState
from marginlab.models.compare import compare, isolated_book
from marginlab.models.margin.base import MarginMethod
from marginlab.models.margin.risk_based import (
    AntiProcyclical,
    HistoricalMargin,
    MonteCarloMargin,
    historical_scenarios,
)

SPOT = {"BTC": 60_000.0, "ETH": 3_000.0}
MARKET = MarketState(spot=SPOT, vol={"BTC": 0.6, "ETH": 0.7})
CORR = [[1.0, 0.8], [0.8, 1.0]]


def _book(positions, collateral=None):
    inst = pd.DataFrame({
        "instrument_id": ["BTC-PERP", "ETH-PERP", "BTC-SPOT"],
        "type": ["linear_perp", "linear_perp", "spot"],
        "underlying": ["BTC", "ETH", "BTC"],
    })
    pos = pd.DataFrame(positions, columns=["account_id", "instrument_id", "quantity",
                                           "entry_price"])
    col = None if collateral is None else pd.DataFrame(
        collateral, columns=["account_id", "asset", "amount"])
    return Book.from_frames(inst, pos, col)


def _lognormal_long_es(s0, sigma, t, level):
    """Closed-form ES of the loss of one unit long lognormal: L = s0 - S_T, mu = 0.

    S_T = s0 exp(-sigma^2 t/2 + sigma sqrt(t) Z); the worst (1 - a) losses are Z < z_{1-a}:
    E[S_T | Z < q] = s0 Phi(q - sigma sqrt t) / Phi(q), so ES = s0 (1 - Phi(q - v)/(1 - a)).
    """
    v = sigma * math.sqrt(t)
    q = norm.ppf(1.0 - level)
    return s0 * (1.0 - norm.cdf(q - v) / (1.0 - level))


def test_methods_satisfy_the_interface():
    """Law: every method is a MarginMethod (name + compute)."""
    mc = MonteCarloMargin(GBM(0.0, [0.6, 0.7], corr=CORR), ["BTC", "ETH"], n_scenarios=100)
    assert isinstance(mc, MarginMethod)
    hs = HistoricalMargin(_prices(200))
    assert isinstance(hs, MarginMethod)
    assert isinstance(AntiProcyclical(hs), MarginMethod)


def test_mc_es_margin_converges_to_the_lognormal_closed_form():
    """Oracle: closed-form ES of a long GBM position; within 4 of the reported SE."""
    book = _book([("a", "BTC-PERP", 1.0, 60_000.0)], [("a", "USDT", 10_000.0)])
    for n in (20_000, 200_000):
        mc = MonteCarloMargin(GBM(0.0, 0.6), ["BTC"], level=0.99, horizon_days=2,
                              n_scenarios=n, seed=11)
        res = mc.compute(book, MarketState(spot={"BTC": 60_000.0}))
        truth = _lognormal_long_es(60_000.0, 0.6, 2 / 365, 0.99)
        se = res.details["es_se"][0]
        assert abs(res.im[0] - truth) < 4 * se, (n, res.im[0], truth, se)
    assert se < 0.4 * 60_000 * 0.6 * math.sqrt(2 / 365) / math.sqrt(n) * 30


def test_im_ge_mm_and_margin_balance():
    """Law: IM >= MM >= 0 and MM = mm_fraction x IM; margin balance = collateral + upnl."""
    book = _book([("a", "BTC-PERP", 2.0, 59_000.0), ("b", "ETH-PERP", -10.0, 3_100.0)],
                 [("a", "USDT", 5_000.0), ("b", "USDC", 2_000.0)])
    mc = MonteCarloMargin(GBM(0.0, [0.6, 0.7], corr=CORR), ["BTC", "ETH"], n_scenarios=5_000,
                          mm_fraction=0.6)
    res = mc.compute(book, MARKET)
    assert np.all(res.im >= res.mm) and np.all(res.mm >= 0)
    np.testing.assert_allclose(res.mm, 0.6 * res.im)
    # a: 5000 + 2 (60000 - 59000); b: 2000 - 10 (3000 - 3100)
    np.testing.assert_allclose(res.margin_balance, [7_000.0, 3_000.0])
    np.testing.assert_allclose(res.excess, res.margin_balance - res.im)


def test_hedged_pair_has_zero_portfolio_margin_but_full_isolated_margin():
    """Law: long and short the same perpetual cancel in portfolio margin, not in isolation."""
    book = _book([("a", "BTC-PERP", 1.0, 60_000.0), ("a", "BTC-PERP", -1.0, 60_000.0)],
                 [("a", "USDT", 1_000.0)])
    mc = MonteCarloMargin(GBM(0.0, 0.6), ["BTC"], n_scenarios=5_000, seed=2)
    table = compare(book, MarketState(spot={"BTC": 60_000.0}), [mc])
    assert table["im"].iloc[0] == 0.0
    single = _lognormal_long_es(60_000.0, 0.6, 2 / 365, 0.99)
    assert table["im_isolated"].iloc[0] > 1.5 * single  # two legs, each ~ the long ES
    assert table["offset_benefit"].iloc[0] == 1.0


def test_es_portfolio_margin_at_most_sum_of_isolated():
    """Law: ES is subadditive on common scenarios, so portfolio IM <= sum of isolated IMs."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(30):
        for _ in range(3):
            rows.append((f"acc{i}", ["BTC-PERP", "ETH-PERP", "BTC-SPOT"][rng.integers(3)],
                         float(rng.normal(0, 3)), 1.0 + rng.uniform(0, 1e5)))
    book = _book(rows, [(f"acc{i}", "USDT", 1e4) for i in range(30)])
    mc = MonteCarloMargin(GBM(0.0, [0.6, 0.7], corr=CORR), ["BTC", "ETH"], n_scenarios=4_000)
    table = compare(book, MARKET, [mc])
    assert np.all(table["im"] <= table["im_isolated"] * (1 + 1e-12) + 1e-9)


def test_margin_grows_with_position_size():
    """Law: positive homogeneity of ES: doubling every position doubles IM exactly."""
    mc = MonteCarloMargin(GBM(0.0, [0.6, 0.7], corr=CORR), ["BTC", "ETH"], n_scenarios=3_000)
    b1 = _book([("a", "BTC-PERP", 1.0, 6e4), ("a", "ETH-PERP", -4.0, 3e3)])
    b2 = _book([("a", "BTC-PERP", 2.0, 6e4), ("a", "ETH-PERP", -8.0, 3e3)])
    np.testing.assert_allclose(mc.compute(b2, MARKET).im, 2 * mc.compute(b1, MARKET).im,
                               rtol=1e-12)


def test_allocation_sums_to_im():
    """Law: Euler allocation of ES sums to the account's IM."""
    book = _book([("a", "BTC-PERP", 1.0, 6e4), ("a", "ETH-PERP", 5.0, 3e3),
                  ("b", "ETH-PERP", -2.0, 3e3)], [("a", "BTC", 0.5)])
    mc = MonteCarloMargin(GBM(0.0, [0.6, 0.7], corr=CORR), ["BTC", "ETH"], n_scenarios=4_000)
    res = mc.compute(book, MARKET)
    sums = res.allocation.groupby("account_id")["im_contribution"].sum()
    np.testing.assert_allclose(sums.reindex(res.account_ids).to_numpy(), res.im, rtol=1e-10)


def _prices(n, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2020-01-01", periods=n, freq="D")
    return pd.DataFrame({"BTC": 60_000 * np.exp(np.cumsum(rng.normal(0, 0.03, n))),
                         "ETH": 3_000 * np.exp(np.cumsum(rng.normal(0, 0.04, n)))}, index=idx)


def test_historical_scenarios_are_todays_price_times_observed_returns():
    """Oracle: hand computation of overlapping 2-day log returns from the price table."""
    px = _prices(40)
    sc = historical_scenarios(px, MARKET, horizon_days=2, lookback_days=None)
    logp = np.log(px.to_numpy())
    expected = np.array([SPOT["BTC"], SPOT["ETH"]]) * np.exp(logp[2:] - logp[:-2])
    np.testing.assert_allclose(sc.prices, expected, rtol=1e-12)
    assert sc.horizon == pytest.approx(2 / 365)
    sc10 = historical_scenarios(px, MARKET, horizon_days=2, lookback_days=10)
    np.testing.assert_allclose(sc10.prices, expected[-10:], rtol=1e-12)


def test_hs_margin_is_the_empirical_es_of_the_window():
    """Oracle: the ES estimator applied by hand to the scenario losses of a linear position."""
    px = _prices(300, seed=3)
    hs = HistoricalMargin(px, level=0.95, lookback_days=200, horizon_days=1)
    book = _book([("a", "BTC-PERP", 1.0, 60_000.0)])
    res = hs.compute(book, MARKET)
    r = np.diff(np.log(px["BTC"].to_numpy()))[-200:]
    losses = np.sort(-(60_000.0 * np.exp(r) - 60_000.0))[::-1]
    # n (1 - a) = 10 exactly: ES is the mean of the 10 worst
    assert res.im[0] == pytest.approx(losses[:10].mean(), rel=1e-12)


def test_filtered_hs_rescales_to_current_volatility():
    """Law: FHS scales every historical return by sigma_now / sigma_t; if volatility doubled
    at the end of the sample, FHS margin exceeds plain HS margin."""
    rng = np.random.default_rng(9)
    n = 600
    r = np.concatenate([rng.normal(0, 0.02, n - 60), rng.normal(0, 0.06, 60)])
    px = pd.DataFrame({"BTC": 60_000 * np.exp(np.cumsum(r))},
                      index=pd.date_range("2021-01-01", periods=n))
    book = _book([("a", "BTC-PERP", 1.0, 60_000.0)])
    m = MarketState(spot={"BTC": 60_000.0})
    hs = HistoricalMargin(px, lookback_days=500).compute(book, m).im[0]
    fhs = HistoricalMargin(px, lookback_days=500, filtered=True).compute(book, m).im[0]
    assert fhs > 1.5 * hs


def test_apc_tools():
    """Oracle: the EMIR Art. 28 formulas: buffer 1.25 x, released 1.0 x; weighted blend;
    floor = max."""
    px = _prices(500, seed=4)
    book = _book([("a", "BTC-PERP", 1.0, 6e4), ("b", "ETH-PERP", -3.0, 3e3)])
    base = HistoricalMargin(px, lookback_days=100)
    im = base.compute(book, MARKET).im
    np.testing.assert_allclose(AntiProcyclical(base).compute(book, MARKET).im, 1.25 * im)
    np.testing.assert_allclose(
        AntiProcyclical(base, released=True).compute(book, MARKET).im, im)
    stressed = HistoricalMargin(px, lookback_days=None, name="stressed")
    st = stressed.compute(book, MARKET).im
    blend = AntiProcyclical(base, tool="stressed_weight", stressed=stressed,
                            stressed_weight=0.3).compute(book, MARKET)
    np.testing.assert_allclose(blend.im, 0.7 * im + 0.3 * st)
    floor = AntiProcyclical(base, tool="floor", floor=stressed).compute(book, MARKET)
    np.testing.assert_allclose(floor.im, np.maximum(im, st))
    assert np.all(floor.im >= floor.mm)


@pytest.mark.parametrize("kwargs, word", [
    ({"measure": "cvar"}, "measure"), ({"level": 1.0}, "level"),
    ({"mm_fraction": 0.0}, "mm_fraction"), ({"n_scenarios": 0}, "n_scenarios"),
    ({"horizon_days": -1}, "horizon_days"),
])
def test_bad_parameters_name_the_parameter(kwargs, word):
    """Validation: each bad parameter raises naming it."""
    with pytest.raises((ValueError, TypeError), match=word):
        MonteCarloMargin(GBM(0.0, 0.6), ["BTC"], **kwargs)


def test_bad_apc_and_compare_inputs():
    """Validation: APC below the regulatory minimums, missing helper methods, duplicate
    method names in compare."""
    hs = HistoricalMargin(_prices(100))
    with pytest.raises(ValueError, match="buffer"):
        AntiProcyclical(hs, buffer=0.1)
    with pytest.raises(ValueError, match="stressed_weight"):
        AntiProcyclical(hs, tool="stressed_weight", stressed=hs, stressed_weight=0.2)
    with pytest.raises(ValueError, match="stressed"):
        AntiProcyclical(hs, tool="stressed_weight")
    with pytest.raises(ValueError, match="tool"):
        AntiProcyclical(hs, tool="cap")
    with pytest.raises(ValueError, match="unique"):
        compare(_book([("a", "BTC-PERP", 1.0, 6e4)]), MARKET, [hs, hs])


def test_isolated_book_splits_every_position():
    """Law: the isolated book has one account per position and no collateral."""
    book = _book([("a", "BTC-PERP", 1.0, 6e4), ("a", "ETH-PERP", 2.0, 3e3)],
                 [("a", "USDT", 100.0)])
    iso = isolated_book(book)
    assert iso.n_accounts == 2 and iso.collateral.empty


def test_compare_writes_plots(tmp_path):
    """Outputs: the three PNG plots exist and are complete files (PNG signature)."""
    book = _book([("a", "BTC-PERP", 1.0, 6e4), ("b", "ETH-PERP", -2.0, 3e3)])
    mc = MonteCarloMargin(GBM(0.0, [0.6, 0.7], corr=CORR), ["BTC", "ETH"], n_scenarios=2_000)
    hs = HistoricalMargin(_prices(300))
    table = compare(book, MARKET, [mc, hs], plots_dir=tmp_path)
    assert set(table["method"]) == {"MC ES", "HS ES"}
    for name in ("margin_over_notional.png", "margin_vs_notional.png", "method_vs_method.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))
