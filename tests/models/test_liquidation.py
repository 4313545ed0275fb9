"""Margin calls, liquidations and cascades on books (``marginlab.models.liquidation``).

Oracles, per test (each docstring names its own):

* The reflection principle for GBM: P(min_{t <= T} S_t <= B) in closed form, for one long
  position without impact; discrete monitoring against the Broadie-Glasserman-Kou continuity
  correction (barrier shifted by exp(-0.5826 sigma sqrt(dt))), 4 standard errors.
* Binance's published liquidation-price formulas (``marginlab.models.margin``, themselves
  tested against Binance's worked examples): the fast path's trigger prices equal them.
* Laws: one-way netting of position rows is exact; the fast and general engines agree on
  books both accept; the bookkeeping identity on every path; a liquidated account was called
  and a bankrupt one liquidated; an all-long book's marks never exceed the exogenous prices;
  the VaR / ES estimators against their definitions.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from marginlab.models import GBM, Book, MarketState
from marginlab.models.liquidation import (
    LiquidationRules,
    PriceImpact,
    perp_book,
    simulate_liquidations,
    var_es,
)
from marginlab.models.margin import (
    BracketTable,
    binance_btcusdt_2021,
    liquidation_price,
    liquidation_price_with_table,
)
from marginlab.simulate import simulate_paths

matplotlib.use("Agg")

N_SE = 4.0
HOUR = 1.0 / (365.0 * 24.0)
TWO_DAYS = 2.0 / 365.0
SPOT = {"BTC": 60_000.0, "ETH": 3_000.0}


def _book(positions: list[tuple], collateral: list[tuple], instruments=None) -> Book:
    inst = instruments if instruments is not None else pd.DataFrame({
        "instrument_id": ["BTCUSDT", "ETHUSDT", "BTCUSD", "ETHUSD"],
        "type": ["linear_perp", "linear_perp", "inverse_perp", "inverse_perp"],
        "underlying": ["BTC", "ETH", "BTC", "ETH"],
        "face_value": [np.nan, np.nan, 100.0, 10.0]})
    pos = pd.DataFrame(positions, columns=["account_id", "instrument_id", "quantity",
                                           "entry_price"])
    col = pd.DataFrame(collateral, columns=["account_id", "asset", "amount", "haircut"])
    return Book.from_frames(inst, pos, col)


# --------------------------------------------------------------------------- closed forms
def _first_passage(s0: float, barrier: float, mu: float, sigma: float, t: float) -> float:
    """P(min_{u <= t} S_u <= barrier) for GBM (reflection principle with drift)."""
    nu = mu - 0.5 * sigma**2
    b = math.log(barrier / s0)
    st = sigma * math.sqrt(t)
    return (norm.cdf((b - nu * t) / st)
            + math.exp(2.0 * nu * b / sigma**2) * norm.cdf((b + nu * t) / st))


def test_liquidation_probability_is_the_first_passage_probability():
    """Oracles: the reflection principle, the BGK continuity correction and Binance's
    liquidation price. One long BTC perpetual (1 BTC at 50,000 with 5,000 USDT, MMR 0.5 %)
    is liquidated when the hourly-or-finer mark falls below LP = 45,226.13 (Binance's
    formula). Without impact, P(liquidation) with monitoring every dt is within 4 SE of the
    continuous first-passage probability with the barrier shifted by
    exp(-0.5826 sigma sqrt(dt)); at the finest step (3,072 steps in two days) within 4 SE of
    the unshifted closed form. Coarser monitoring of the same paths never liquidates a path
    the finer one spares, and the bias shrinks with the step."""
    book = _book([("a", "BTCUSDT", 1.0, 50_000.0)], [("a", "USDT", 5_000.0, 0.0)])
    market = MarketState(spot={"BTC": 50_000.0})
    rules = LiquidationRules(maintenance={"BTC": 0.005}, liquidation_fee=0.0)
    sigma, mu = 0.8, 0.0
    n_fine, strides = 3_072, (256, 64, 16, 4, 1)
    n_paths, chunk = 20_000, 2_500
    hits = {s: [] for s in strides}
    lp = None
    for first in range(0, n_paths, chunk):
        fine = simulate_paths(GBM(mu=mu, sigma=sigma), 50_000.0, n_steps=n_fine,
                              dt=TWO_DAYS / n_fine, n_paths=chunk, seed=2024, first_path=first)
        for s in strides:
            res = simulate_liquidations(book, market, rules=rules, paths=fine[:, ::s],
                                        horizon=TWO_DAYS, record=0)
            hits[s].append(res.column("liquidations") > 0)
            lp = float(res.initial["liquidation_price_below"].iloc[0])
    assert lp == pytest.approx(float(liquidation_price("long", 1.0, 50_000.0, 5_000.0, 0.005,
                                                       0.0)), rel=1e-12)
    p_cont = _first_passage(50_000.0, lp, mu, sigma, TWO_DAYS)
    est, bias = [], []
    for s in strides:
        h = np.concatenate(hits[s])
        p = h.mean()
        se = math.sqrt(p * (1.0 - p) / h.size)
        dt = TWO_DAYS / (n_fine // s)
        p_bgk = _first_passage(50_000.0, lp * math.exp(-0.5826 * sigma * math.sqrt(dt)), mu,
                               sigma, TWO_DAYS)
        assert abs(p - p_bgk) <= N_SE * se, (n_fine // s, p, p_bgk, se)
        est.append(h)
        bias.append(p_cont - p)
    assert abs(bias[-1]) <= N_SE * math.sqrt(p_cont * (1 - p_cont) / n_paths)
    for coarse, finer in zip(est, est[1:], strict=False):
        assert np.all(coarse <= finer)  # nested monitoring dates
    assert all(b1 > b2 for b1, b2 in zip(bias, bias[1:], strict=False)), bias


def test_trigger_prices_equal_binance_formulas():
    """Oracle: Binance's USDⓈ-M and COIN-M liquidation prices (one-way, isolated wallet):
    a BTCUSDT long in the 2021 bracket table (the bracket found at the liquidation price), a
    short with a flat rate, and an inverse BTCUSD long with BTC as wallet balance."""
    table = binance_btcusdt_2021()
    inv_table = BracketTable([0, 5, 10], [5, 10, 20], [125, 100, 50], [0.004, 0.005, 0.01],
                             inverse=True)
    book = _book([("a", "BTCUSDT", 8.0, 59_000.0), ("b", "ETHUSDT", -20.0, 3_050.0),
                  ("c", "BTCUSD", 900.0, 61_000.0)],
                 [("a", "USDT", 60_000.0, 0.0), ("b", "USDT", 9_000.0, 0.0),
                  ("c", "BTC", 0.2, 0.0)])
    rules = LiquidationRules(maintenance={"BTCUSDT": table, "ETH": 0.01, "BTCUSD": inv_table})
    res = simulate_liquidations(book, MarketState(spot=SPOT), GBM(mu=0.0, sigma=[0.6, 0.7]),
                                rules=rules, n_paths=8, n_steps=4, seed=1)
    f = res.initial.set_index("account_id")
    expected_a = liquidation_price_with_table(table, "long", 8.0, 59_000.0, 60_000.0)
    expected_b = liquidation_price("short", 20.0, 3_050.0, 9_000.0, 0.01, 0.0)
    expected_c = liquidation_price_with_table(inv_table, "long", 900.0, 61_000.0, 0.2,
                                              contract_size=100.0)
    assert f.loc["a", "liquidation_price_below"] == pytest.approx(expected_a, rel=1e-12)
    assert f.loc["b", "liquidation_price_above"] == pytest.approx(expected_b, rel=1e-12)
    assert f.loc["c", "liquidation_price_below"] == pytest.approx(expected_c, rel=1e-12)
    assert f.loc["a", "liquidation_price_above"] == np.inf
    assert f.loc["b", "liquidation_price_below"] == 0.0


# --------------------------------------------------------------------------- laws
RULES = LiquidationRules(maintenance={"BTC": 0.006, "ETH": 0.01}, liquidation_fraction=0.8,
                         liquidation_fee=0.005, insurance_fund=1_000.0)
IMPACT = PriceImpact(depth={"BTC": 5e6, "ETH": 2e6}, linear=0.05, sqrt=0.02,
                     half_life=3 * HOUR)
MODEL = GBM(mu=0.0, sigma=[0.8, 1.0], corr=[[1.0, 0.8], [0.8, 1.0]])


@pytest.fixture(scope="module")
def retail():
    """A one-position book (linear and inverse, USDT and coin collateral) on two coins."""
    book = perp_book(400, 5, spot=SPOT, leverage=(8.0, 0.8), inverse_share=0.3)
    res = simulate_liquidations(book, MarketState(spot=SPOT), MODEL, rules=RULES,
                                impact=IMPACT, n_paths=1_000, seed=11, record=5,
                                compare_no_feedback=True)
    return book, res


def test_fast_and_general_engines_agree(retail):
    """Oracle: the general path (every account re-checked every round) on a book the fast
    path accepts gives the same results."""
    book, fast = retail
    slow = simulate_liquidations(book, MarketState(spot=SPOT), MODEL, rules=RULES,
                                 impact=IMPACT, n_paths=1_000, seed=11, record=5,
                                 method="general")
    assert fast.method == "fast" and slow.method == "general"
    assert fast.column("adl_events").sum() > 0 and fast.column("bankruptcies").sum() > 0
    np.testing.assert_array_equal(fast.raw.counts, slow.raw.counts)
    for name in ("liquidations", "bankruptcies", "adl_events", "margin_calls"):
        np.testing.assert_array_equal(fast.column(name), slow.column(name))
    for name in ("bad_debt", "fund_final", "fees", "adl_paid", "market_pnl"):
        np.testing.assert_allclose(fast.column(name), slow.column(name), rtol=1e-10,
                                   atol=1e-6)
    np.testing.assert_allclose(fast.raw.marks, slow.raw.marks, rtol=1e-14)


def test_bookkeeping_and_event_laws(retail):
    """Laws: the bookkeeping identity on every path; per account, liquidation implies a
    margin call (liquidation_fraction <= 1) and bankruptcy implies liquidation; bad debt is
    what the fund, ADL and the exchange paid."""
    _, res = retail
    scale = np.abs(res.column("market_pnl")).max() + res.initial["equity"].abs().sum()
    assert np.all(np.abs(res.conservation_residual()) <= 1e-12 * scale)
    f = res.to_frame()
    assert np.all(f["p_liquidation"] <= f["p_margin_call"])
    assert np.all(f["p_bankruptcy"] <= f["p_liquidation"])
    assert f["p_liquidation"].max() > 0 and f["p_adl"].max() > 0
    np.testing.assert_allclose(res.column("bad_debt"),
                               res.column("fund_paid") + res.column("exchange_paid")
                               + res.column("adl_received"), rtol=1e-14)
    assert np.all(res.column("fund_drawdown") >= 0.0)


def test_all_long_book_marks_never_exceed_the_exogenous_prices():
    """Law: liquidations of longs only sell, so with feedback the worst downside move is at
    least the exogenous one on every path and the amplification ratio is >= 1; liquidations
    and bad debt grow with feedback on average."""
    book = perp_book(300, 9, spot=SPOT, leverage=(10.0, 0.7), long_share=1.0)
    res = simulate_liquidations(book, MarketState(spot=SPOT), MODEL, rules=RULES,
                                impact=IMPACT, n_paths=500, seed=4, compare_no_feedback=True)
    assert np.all(res.asset_column("min_log_move") <= res.exo_min_log + 1e-15)
    amp = res.amplification(0.99)
    assert np.all(amp["down_ratio"] >= 1.0)
    nf = res.no_feedback
    assert res.column("liquidations").mean() > nf.column("liquidations").mean()
    assert res.column("bad_debt").mean() >= nf.column("bad_debt").mean()
    np.testing.assert_array_equal(nf.exo_min_log, res.exo_min_log)


def test_netting_position_rows_is_exact():
    """Law: one-way netting. Two rows per account and instrument (entries 50,000 and 51,000;
    inverse 60,000 and 62,000) give the same simulation as one row at the averaged entry
    (quantity-weighted for linear, harmonic for inverse)."""
    split = _book([("a", "BTCUSDT", 0.6, 50_000.0), ("a", "BTCUSDT", 0.4, 51_000.0),
                   ("b", "BTCUSD", -300.0, 60_000.0), ("b", "BTCUSD", -200.0, 62_000.0)],
                  [("a", "USDT", 6_000.0, 0.0), ("b", "BTC", 0.05, 0.1)])
    e_inv = 500.0 / (300.0 / 60_000.0 + 200.0 / 62_000.0)
    one = _book([("a", "BTCUSDT", 1.0, 50_400.0), ("b", "BTCUSD", -500.0, e_inv)],
                [("a", "USDT", 6_000.0, 0.0), ("b", "BTC", 0.05, 0.1)])
    kw = dict(rules=LiquidationRules(maintenance={"BTC": 0.005}),
              impact=PriceImpact(depth=1e5, linear=0.1), n_paths=300, seed=3)
    market = MarketState(spot={"BTC": 50_000.0})
    r1 = simulate_liquidations(split, market, GBM(mu=0.0, sigma=1.5), **kw)
    r2 = simulate_liquidations(one, market, GBM(mu=0.0, sigma=1.5), **kw)
    assert r1.column("liquidations").sum() > 0
    np.testing.assert_allclose(r1.raw.path, r2.raw.path, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(r1.raw.counts, r2.raw.counts)


def test_cross_margin_book_on_the_general_path():
    """Law: the bookkeeping identity on a cross-margin book (two positions, collateral in a
    coin of another underlying) with partial liquidation, a grace period and top-ups; the
    same seed gives the same result."""
    book = _book([("a", "BTCUSDT", 0.5, 60_000.0), ("a", "ETHUSD", -400.0, 3_000.0),
                  ("b", "ETHUSDT", 10.0, 3_050.0), ("c", "BTCUSDT", -0.4, 59_000.0),
                  ("c", "ETHUSDT", 6.0, 3_000.0), ("d", "ETHUSDT", -15.0, 2_950.0)],
                 [("a", "ETH", 2.0, 0.1), ("a", "USDT", 1_000.0, 0.0),
                  ("b", "BTC", 0.05, 0.05), ("c", "USDC", 4_000.0, 0.02),
                  ("d", "USDT", 9_000.0, 0.0)])
    rules = LiquidationRules(maintenance={"BTC": 0.006, "ETH": 0.01}, close_out="partial",
                             grace_period=2, topup_probability=0.3, liquidation_fraction=0.7,
                             insurance_fund=500.0)
    kw = dict(rules=rules, impact=IMPACT, n_paths=600, seed=7)
    res = simulate_liquidations(book, MarketState(spot=SPOT), GBM(mu=0.0, sigma=[1.5, 2.0]),
                                **kw)
    assert res.method == "general"
    assert res.column("liquidations").sum() > 0 and res.column("topups").sum() > 0
    scale = np.abs(res.column("market_pnl")).max() + res.initial["equity"].abs().sum()
    assert np.all(np.abs(res.conservation_residual()) <= 1e-12 * scale)
    again = simulate_liquidations(book, MarketState(spot=SPOT), GBM(mu=0.0, sigma=[1.5, 2.0]),
                                  **kw)
    np.testing.assert_array_equal(res.raw.path, again.raw.path)
    with pytest.raises(ValueError, match=r"method='fast' needs one position per account"):
        simulate_liquidations(book, MarketState(spot=SPOT), GBM(mu=0.0, sigma=[1.5, 2.0]),
                              method="fast", **kw)


# --------------------------------------------------------------------------- estimators
def test_var_es_match_their_definitions():
    """Oracle: definitions. VaR is the inverted-cdf quantile; with n (1 - level) an integer,
    ES is the mean of the worst n (1 - level) losses; otherwise the boundary order statistic
    enters with its fractional weight."""
    x = np.random.default_rng(0).standard_normal(1000)
    for level in (0.9, 0.99, 0.975):
        var, es = var_es(x, level)
        assert var == np.quantile(x, level, method="inverted_cdf")
        m = round(1000 * (1 - level))
        assert es == pytest.approx(np.sort(x)[-m:].mean(), rel=1e-12)
    var, es = var_es(np.arange(1.0, 11.0), 0.75)  # w = 2.5: (10 + 9 + 0.5 * 8) / 2.5
    assert (var, es) == (8.0, pytest.approx(9.2, rel=1e-14))


def test_summary_frames_and_plots(retail):
    """Law: summary rows are var_es of the per-path columns; frames have one row per account,
    path and bin; the plot helpers draw."""
    _, res = retail
    s = res.summary(0.99)
    var, es = var_es(res.column("bad_debt"), 0.99)
    assert s.loc["bad_debt (USD)", "var"] == var and s.loc["bad_debt (USD)", "es"] == es
    assert s.loc["bad_debt (USD)", "mean"] == pytest.approx(res.column("bad_debt").mean())
    assert len(res.to_frame()) == len(res.account_ids) == 400
    assert len(res.path_frame()) == res.n_paths
    v = res.volume_by_level("BTC")
    assert v["volume"].sum() * res.n_paths == pytest.approx(
        res.asset_column("liquidated_volume", "BTC").sum(), rel=1e-12)
    for ax in (res.plot_price_paths("BTC", n=3), res.plot_bad_debt(),
               res.plot_volume_by_level("ETH")):
        assert ax.has_data()
    assert {"down_ratio", "mean_liquidations_no_feedback"} <= set(res.amplification().columns)


# --------------------------------------------------------------------------- validation
def test_errors_name_the_problem():
    market = MarketState(spot=SPOT)
    ok = _book([("a", "BTCUSDT", 1.0, 60_000.0)], [("a", "USDT", 10_000.0, 0.0)])
    rules = LiquidationRules(maintenance={"BTC": 0.005})
    model = GBM(mu=0.0, sigma=0.6)
    opt = pd.DataFrame({"instrument_id": ["C"], "type": ["option"], "underlying": ["BTC"],
                        "strike": [60_000.0], "expiry": [0.1], "option_type": ["call"]})
    with pytest.raises(ValueError, match=r"option 'C' needs the implied vol of 'BTC'"):
        simulate_liquidations(_book([("a", "C", 1.0, 100.0)], [], instruments=opt), market,
                              model, rules=rules, n_paths=4)
    spot = pd.DataFrame({"instrument_id": ["S"], "type": ["spot"], "underlying": ["BTC"]})
    with pytest.raises(ValueError, match=r"instrument 'S' has type 'spot'.*excluded"):
        simulate_liquidations(_book([("a", "S", 1.0, 60_000.0)], [], instruments=spot), market,
                              model, rules=rules, n_paths=4)
    fut = pd.DataFrame({"instrument_id": ["F"], "type": ["linear_future"],
                        "underlying": ["BTC"], "expiry": [1.0 / 365.0]})
    with pytest.raises(ValueError, match=r"expires at .* within the horizon"):
        simulate_liquidations(_book([("a", "F", 1.0, 60_000.0)], [("a", "USDT", 1e4, 0.0)],
                                    instruments=fut), market, model, rules=rules, n_paths=4)
    with pytest.raises(ValueError, match=r"no entry for instrument 'BTCUSDT' or its underlying"):
        simulate_liquidations(ok, market, model, rules=LiquidationRules(maintenance={"ETH": 0.01}),
                              n_paths=4)
    with pytest.raises(ValueError, match=r"inverse bracket table but instrument 'BTCUSDT' is "
                                         r"linear"):
        inv = BracketTable([0], [10], [100], [0.005], inverse=True)
        simulate_liquidations(ok, market, model, rules=LiquidationRules(maintenance={"BTC": inv}),
                              n_paths=4)
    with pytest.raises(ValueError, match=r"model has 2 asset\(s\) but the book needs 1 price"):
        simulate_liquidations(ok, market, MODEL, rules=rules, n_paths=4)
    with pytest.raises(ValueError, match=r"account 'a' is already below its liquidation"):
        poor = _book([("a", "BTCUSDT", 1.0, 60_000.0)], [("a", "USDT", 100.0, 0.0)])
        simulate_liquidations(poor, market, model, rules=rules, n_paths=4)
    with pytest.raises(ValueError, match=r"impact depth has no entry for underlying 'BTC'"):
        simulate_liquidations(ok, market, model, rules=rules, n_paths=4,
                              impact=PriceImpact(depth={"ETH": 1e6}))
    with pytest.raises(ValueError, match=r"liquidation_fraction must be .*<= 1, got 1.2"):
        LiquidationRules(maintenance={"BTC": 0.005}, liquidation_fraction=1.2)
    with pytest.raises(ValueError, match=r"maintenance\['BTC'\] must be .*< 1, got 1.5"):
        LiquidationRules(maintenance={"BTC": 1.5})
    with pytest.raises(ValueError, match=r"close_out must be 'full' or 'partial'"):
        LiquidationRules(maintenance={"BTC": 0.005}, close_out="half")
    with pytest.raises(ValueError, match=r"depth\['BTC'\] must be > 0"):
        PriceImpact(depth={"BTC": -1.0})
    with pytest.raises(TypeError, match=r"grace_period must be an int"):
        LiquidationRules(maintenance={"BTC": 0.005}, grace_period=1.5)
    with pytest.raises(ValueError, match=r"paths must have shape \(n_paths, n_steps \+ 1, 1\)"):
        simulate_liquidations(ok, market, rules=rules, paths=np.ones((3, 5, 2)))


@pytest.mark.parametrize("method", ["fast", "general"])
def test_a_liquidated_inverse_position_keeps_no_exposure(method):
    """Oracle: hand computation (issue 14's reproducer). Inverse ETH perpetual, 1,000
    contracts x 10 USD long at 2,000 with 600 USDT, MMR 1 %, fee 0.5 %. At 1,890 the coin
    P&L is 10,000 (1/2,000 - 1/1,890) = -0.29101 ETH = -550 USD: equity 50, MB 50 < MM 100,
    liquidated; the fee 0.5 % x 10,000 = 50 takes the rest and the coin debt is bought back
    with USD at 1,890, so the account ends at 0 whatever the price does next (before the fix:
    600 - 50 - 0.29101 x 3,000 = -323 USD at the end, counted nowhere)."""
    book = Book.from_frames(
        pd.DataFrame({"instrument_id": ["ETH-IPERP"], "type": ["inverse_perp"],
                      "underlying": ["ETH"], "face_value": [10.0]}),
        pd.DataFrame({"account_id": ["a"], "instrument_id": ["ETH-IPERP"],
                      "quantity": [1000.0], "entry_price": [2000.0]}),
        pd.DataFrame({"account_id": ["a"], "asset": ["USDT"], "amount": [600.0]}))
    paths = np.array([[[2000.0], [1890.0], [2500.0], [3000.0]]])
    res = simulate_liquidations(
        book, MarketState(spot={"ETH": 2000.0}), horizon=3 / 8760, paths=paths, method=method,
        rules=LiquidationRules(maintenance={"ETH": 0.01}, liquidation_fee=0.005,
                               insurance_fund=1e6))
    equity0 = 600.0
    assert equity0 + res.column("wealth_change")[0] == pytest.approx(0.0, abs=1e-9)
    assert res.column("fees")[0] == pytest.approx(50.0, rel=1e-9)
    assert res.column("bad_debt")[0] == 0.0 and res.column("bankruptcies")[0] == 0
    assert res.column("liquidations")[0] == 1
    assert abs(res.conservation_residual()[0]) <= 1e-9
