"""Portfolio revaluation, equity, risk frames and incremental margin of
:mod:`marginlab.models.portfolio`, on a hand-built book.

Oracles, named per test: hand-worked arithmetic written out in the tests (hedged pairs whose
P&L is the funding alone; each account's collateral, haircut value and unrealised P&L per
instrument type, with option values from the Black-Scholes closed form written here with
``scipy.stats.norm``); self-consistency laws of incremental margin (a zero trade changes
nothing; closing every position leaves the collateral-only account; several trades on one
instrument add up); the documented frame layouts and error contract.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from marginlab.models import (
    GBM,
    Book,
    MarketState,
    ScenarioSet,
    account_equity,
    incremental_margin,
    monte_carlo_scenarios,
    portfolio_risk,
    revalue,
)
from marginlab.models.portfolio import account_pnl, holdings_matrix

NAN = float("nan")
H10 = 10.0 / 365.0  # ten days: 10 x 3 = 30 funding intervals of 8 hours


def hand_frames() -> dict[str, pd.DataFrame]:
    """Every instrument type, four accounts (D holds collateral only)."""
    instruments = pd.DataFrame({
        "instrument_id": ["BTC-SPOT", "BTC-PERP", "BTC-FUT", "BTC-IPERP", "BTC-IFUT",
                          "BTC-C60K", "BTC-P40K", "ETH-PERP"],
        "type": ["spot", "linear_perp", "linear_future", "inverse_perp", "inverse_future",
                 "option", "inverse_option", "linear_perp"],
        "underlying": ["BTC", "BTC", "BTC", "BTC", "BTC", "BTC", "BTC", "ETH"],
        "multiplier": [1.0, 0.001, 1.0, NAN, NAN, 1.0, 1.0, 1.0],
        "face_value": [NAN, NAN, NAN, 100.0, 10.0, NAN, NAN, NAN],
        "strike": [NAN, NAN, NAN, NAN, NAN, 60000.0, 40000.0, NAN],
        "expiry": [NAN, NAN, 0.25, NAN, 0.5, 0.25, 0.1, NAN],
        "option_type": [None, None, None, None, None, "call", "put", None],
        "funding_rate": [NAN, 1e-4, NAN, 1e-4, NAN, NAN, NAN, 2e-4],
    })  # fmt: skip
    positions = pd.DataFrame({
        "account_id": ["A", "A", "A", "B", "B", "C", "C", "C", "C", "C"],
        "instrument_id": ["BTC-PERP", "BTC-PERP", "ETH-PERP", "BTC-IPERP", "BTC-C60K",
                          "BTC-P40K", "BTC-SPOT", "BTC-FUT", "BTC-IFUT", "BTC-SPOT"],
        "quantity": [1000.0, 500.0, -10.0, -200.0, 2.0, -3.0, 0.5, 1.0, 100.0, 0.25],
        "entry_price": [48000.0, 52000.0, 2500.0, 40000.0, 1500.0, 0.01, 45000.0, 49000.0,
                        51000.0, 47000.0],
    })  # fmt: skip
    collateral = pd.DataFrame({
        "account_id": ["A", "B", "C", "C", "D"],
        "asset": ["USDT", "BTC", "ETH", "USDC", "USDT"],
        "amount": [10000.0, 1.0, 5.0, 2000.0, 500.0],
        "haircut": [0.0, 0.1, 0.2, 0.0, 0.0],
    })  # fmt: skip
    return {"instruments": instruments, "positions": positions, "collateral": collateral}


def hand_book(f: dict[str, pd.DataFrame] | None = None) -> Book:
    f = hand_frames() if f is None else f
    return Book.from_frames(f["instruments"], f["positions"], f["collateral"])


MARKET = MarketState(spot={"BTC": 50000.0, "ETH": 2000.0}, vol={"BTC": 0.6}, rate=0.02)
MODEL = GBM(mu=0.0, sigma=[0.6, 0.8], corr=[[1.0, 0.6], [0.6, 1.0]])


@pytest.fixture(scope="module")
def scenarios() -> ScenarioSet:
    return monte_carlo_scenarios(MODEL, MARKET, ["BTC", "ETH"], horizon_days=1,
                                 n_scenarios=4000, seed=42, vol_of_vol=1.0)


def bs(s, k, t, sigma, r, call):
    """Oracle: Black-Scholes closed form (zero yield) with scipy's normal CDF."""
    d1 = (math.log(s / k) + (r + 0.5 * sigma * sigma) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    if call:
        return s * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * norm.cdf(-d1)


# ----------------------------------------------------------------------------- hedged pairs
def _pair_book(instruments, positions, collateral=None):
    return Book.from_frames(pd.DataFrame(instruments), pd.DataFrame(positions),
                            None if collateral is None else pd.DataFrame(collateral))


def test_hedged_linear_perps_lose_only_the_funding_difference():
    """Oracle: hand arithmetic. Long 2 PERP-A (funding 1e-4 per 8 h) and short 2 PERP-B
    (funding 5e-5), both 1 BTC per contract: the price legs cancel in every scenario; over 10
    days = 30 intervals at S0 = 50,000 the long pays 2 x 1e-4 x 30 x 50,000 = 300 and the
    short receives 2 x 5e-5 x 30 x 50,000 = 150, a constant loss of 150 = VaR = ES at every
    level. With zero funding the loss is 0."""
    market = MarketState(spot={"BTC": 50000.0})
    s = monte_carlo_scenarios(GBM(mu=0.0, sigma=0.8), market, ["BTC"], horizon_days=10,
                              n_scenarios=2000, seed=1)
    for (fa, fb), expected in (((1e-4, 5e-5), 150.0), ((0.0, 0.0), 0.0)):
        book = _pair_book(
            {"instrument_id": ["A", "B"], "type": ["linear_perp"] * 2,
             "underlying": ["BTC"] * 2, "funding_rate": [fa, fb]},
            {"account_id": ["x", "x"], "instrument_id": ["A", "B"], "quantity": [2.0, -2.0],
             "entry_price": [50000.0, 50000.0]})
        risk = portfolio_risk(book, market, s, levels=(0.99, 0.9))
        np.testing.assert_allclose(risk.var, expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(risk.es, expected, rtol=1e-9, atol=1e-9)


def test_btc_collateral_hedged_by_short_inverse_perp():
    """Oracle: hand arithmetic. 1 BTC of collateral (P&L S_T - S0) and -500 inverse perps of
    100 USD face (50,000 USD = 1 BTC at S0 = 50,000; P&L -500 x 100 (S_T/S0 - 1) =
    -(S_T - S0)) cancel exactly: VaR = ES = 0 without funding. With funding 1e-4 per 8 h over
    10 days the short receives 500 x 1e-4 x 30 x 100 / S0 = 0.003 BTC, worth 150 S_T / S0
    USD: the loss is -150 S_T / S0, so VaR is -150 x the ceil(n a)-th smallest of -S_T/S0
    (an order statistic of the scenario prices)."""
    market = MarketState(spot={"BTC": 50000.0})
    s = monte_carlo_scenarios(GBM(mu=0.0, sigma=0.8), market, ["BTC"], horizon_days=10,
                              n_scenarios=2000, seed=2)
    for rate in (0.0, 1e-4):
        book = _pair_book(
            {"instrument_id": ["BTC-INV"], "type": ["inverse_perp"], "underlying": ["BTC"],
             "face_value": [100.0], "funding_rate": [rate]},
            {"account_id": ["x"], "instrument_id": ["BTC-INV"], "quantity": [-500.0],
             "entry_price": [50000.0]},
            {"account_id": ["x"], "asset": ["BTC"], "amount": [1.0]})
        risk = portfolio_risk(book, market, s, levels=0.99)
        loss = -150.0 * (rate / 1e-4) * s.prices[:, 0] / 50000.0
        k = math.ceil(0.99 * 2000)  # 1980
        expected_var = np.sort(loss)[k - 1]
        expected_es = np.sort(loss)[::-1][:20].mean()
        np.testing.assert_allclose(risk.var[0, 0], expected_var, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(risk.es[0, 0], expected_es, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- equity
def test_account_equity_hand_arithmetic():
    """Oracle: hand arithmetic at BTC 50,000, ETH 2,000, r = 2 %, BTC vol 60 %.

    A: BTC-PERP 1000 x 0.001 x (50000 - 48000) = 2000, 500 x 0.001 x (50000 - 52000) = -1000,
       ETH-PERP -10 x 1 x (2000 - 2500) = 5000: upnl 6000; USDT 10,000 (no haircut).
    B: inverse perp -200 x 100 x (1/40000 - 1/50000) x 50000 = -5000; call 2 x (C - 1500),
       C = BS(50000, 60000, 0.25, 0.6, 0.02); 1 BTC = 50,000, after 10 % haircut 45,000.
    C: inverse put -3 x (P/50000 - 0.01) x 50000 = -3 (P - 500), P = BS put(50000, 40000,
       0.1, 0.6, 0.02); spot 0.5 x 5000 + 0.25 x 3000 = 3250; future 1 x 1000 = 1000;
       inverse future 100 x 10 x (1/51000 - 1/50000) x 50000 = 1000 (50000/51000 - 1);
       ETH 5 x 2000 = 10,000 (8,000 after 20 %) + USDC 2,000.
    D: USDT 500.
    """
    c = bs(50000.0, 60000.0, 0.25, 0.6, 0.02, call=True)
    p = bs(50000.0, 40000.0, 0.1, 0.6, 0.02, call=False)
    upnl = {
        "A": 2000.0 - 1000.0 + 5000.0,
        "B": -5000.0 + 2.0 * (c - 1500.0),
        "C": -3.0 * (p - 500.0) + 3250.0 + 1000.0 + 1000.0 * (50000.0 / 51000.0 - 1.0),
        "D": 0.0,
    }
    coll = {"A": 10000.0, "B": 50000.0, "C": 12000.0, "D": 500.0}
    hair = {"A": 10000.0, "B": 45000.0, "C": 10000.0, "D": 500.0}
    eq = account_equity(hand_book(), MARKET).set_index("account_id")
    assert list(eq.columns) == ["collateral_value", "haircut_value", "upnl", "equity",
                                "margin_balance"]
    for a in "ABCD":
        np.testing.assert_allclose(eq.loc[a, "upnl"], upnl[a], rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(eq.loc[a, "collateral_value"], coll[a], rtol=1e-15)
        np.testing.assert_allclose(eq.loc[a, "haircut_value"], hair[a], rtol=1e-15)
        np.testing.assert_allclose(eq.loc[a, "equity"], coll[a] + upnl[a], rtol=1e-10)
        np.testing.assert_allclose(eq.loc[a, "margin_balance"], hair[a] + upnl[a], rtol=1e-10)


def test_account_equity_missing_market_data():
    """Oracle: documented MarketState contract -- a collateral asset without a price, or an
    option underlying without a vol, raises KeyError naming it."""
    with pytest.raises(KeyError, match="ETH"):
        account_equity(hand_book(), MarketState(spot={"BTC": 50000.0}, vol={"BTC": 0.6}))
    with pytest.raises(KeyError, match="no implied vol for 'BTC'"):
        account_equity(hand_book(), MarketState(spot={"BTC": 50000.0, "ETH": 2000.0}))


# ----------------------------------------------------------------------------- frames
def test_portfolio_risk_frames(scenarios):
    """Oracle: documented layouts -- to_frame has one row per (level, account) with the
    listed columns; allocation_frame one row per (level, holding); its contributions sum per
    account and level to the account's VaR / ES."""
    book = hand_book()
    levels = (0.99, 0.975, 0.95)
    risk = portfolio_risk(book, MARKET, scenarios, levels=levels)
    assert risk.var.shape == (3, 4) and risk.n_scenarios == 4000
    frame = risk.to_frame()
    assert list(frame.columns) == ["account_id", "level", "var", "var_lo", "var_hi", "var_se",
                                   "es", "es_lo", "es_hi", "es_se"]
    assert frame.shape == (3 * 4, 10)
    row = frame[(frame["account_id"] == "C") & (frame["level"] == 0.975)].iloc[0]
    assert row["var"] == risk.var[1, 2] and row["es"] == risk.es[1, 2]
    nnz = holdings_matrix(book).nnz
    assert nnz == 8 + 5  # instrument cells A 2, B 2, C 4; collateral cells A, B, C 2, D
    alloc = risk.allocation_frame()
    assert list(alloc.columns) == ["account_id", "holding", "quantity", "level",
                                   "var_contribution", "es_contribution"]
    assert alloc.shape == (3 * nnz, 6)
    assert set(alloc["holding"]) == {"BTC-SPOT", "BTC-PERP", "BTC-FUT", "BTC-IPERP",
                                     "BTC-IFUT", "BTC-C60K", "BTC-P40K", "ETH-PERP", "BTC",
                                     "ETH", "USDC", "USDT"}
    sums = alloc.groupby(["level", "account_id"])[["var_contribution", "es_contribution"]].sum()
    ref = frame.set_index(["level", "account_id"]).loc[sums.index]
    scale = alloc.assign(a=alloc["es_contribution"].abs()).groupby(
        ["level", "account_id"])["a"].sum().loc[sums.index].to_numpy() + 1.0
    assert np.all(np.abs(sums["es_contribution"].to_numpy() - ref["es"].to_numpy())
                  <= 1e-9 * scale)
    a_usdt = alloc[(alloc["account_id"] == "A") & (alloc["holding"] == "USDT")]
    assert list(a_usdt["quantity"]) == [10000.0] * 3
    assert np.all(a_usdt["es_contribution"] == 0.0)  # cash carries no risk
    no_alloc = portfolio_risk(book, MARKET, scenarios, levels=0.99, allocate=False)
    with pytest.raises(ValueError, match="allocations were not computed"):
        no_alloc.allocation_frame()


# ----------------------------------------------------------------------------- incremental
@pytest.mark.parametrize("measure", ["es", "var"])
def test_incremental_margin_zero_trade_is_zero(scenarios, measure):
    """Oracle (law): a zero-quantity trade changes nothing: change == 0 exactly and before
    equals portfolio_risk's figure for the account."""
    book = hand_book()
    trades = pd.DataFrame({"account_id": ["A", "C"], "instrument_id": ["BTC-C60K", "BTC-PERP"],
                           "quantity": [0.0, 0.0]})
    res = incremental_margin(book, MARKET, scenarios, trades, level=0.99, measure=measure)
    assert list(res.columns) == ["account_id", "before", "after", "change"]
    assert list(res["account_id"]) == ["A", "C"]
    np.testing.assert_array_equal(res["change"], 0.0)
    risk = portfolio_risk(book, MARKET, scenarios, levels=0.99, allocate=False)
    np.testing.assert_array_equal(res["before"], getattr(risk, measure)[0, [0, 2]])


@pytest.mark.parametrize("measure", ["es", "var"])
def test_incremental_margin_closing_everything(scenarios, measure):
    """Oracle (law): trades that close every position of accounts B and C leave their
    collateral only: after == measure(collateral-only account), computed on a book with
    those positions removed, and change == after - measure(account)."""
    f = hand_frames()
    book = hand_book(f)
    net = pd.DataFrame(book.holdings.toarray(), index=book.account_ids,
                       columns=book.instruments["instrument_id"])
    rows = [(a, i, -net.loc[a, i]) for a in ("B", "C") for i in net.columns if net.loc[a, i]]
    trades = pd.DataFrame(rows, columns=["account_id", "instrument_id", "quantity"])
    res = incremental_margin(book, MARKET, scenarios, trades, level=0.99, measure=measure)
    g = dict(f)
    g["positions"] = f["positions"][f["positions"]["account_id"] == "A"]
    coll_only = portfolio_risk(hand_book(g), MARKET, scenarios, levels=0.99, allocate=False)
    full = portfolio_risk(book, MARKET, scenarios, levels=0.99, allocate=False)
    # accounts B, C are rows 1, 2 of both books
    expected_after = getattr(coll_only, measure)[0, [1, 2]]
    np.testing.assert_allclose(res["after"], expected_after, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(res["change"], expected_after - getattr(full, measure)[0, [1, 2]],
                               rtol=1e-12, atol=1e-9)
    # B's collateral is 1 BTC: its loss is S0 - S_T, a tail statistic of the BTC prices
    loss_b = 50000.0 - scenarios.prices[:, 0]
    ref_b = (np.sort(loss_b)[::-1][:40].mean() if measure == "es"
             else np.sort(loss_b)[math.ceil(0.99 * 4000) - 1])
    np.testing.assert_allclose(res["after"].iloc[0], ref_b, rtol=1e-12)


def test_incremental_margin_trades_add_up(scenarios):
    """Oracle (law): two trades of +1 and +2 on one instrument equal one trade of +3, and
    account order in the result is the book's."""
    book = hand_book()
    split = pd.DataFrame({"account_id": ["D", "A", "A"],
                          "instrument_id": ["ETH-PERP", "BTC-C60K", "BTC-C60K"],
                          "quantity": [-4.0, 1.0, 2.0]})
    whole = pd.DataFrame({"account_id": ["A", "D"], "instrument_id": ["BTC-C60K", "ETH-PERP"],
                          "quantity": [3.0, -4.0]})
    a = incremental_margin(book, MARKET, scenarios, split)
    b = incremental_margin(book, MARKET, scenarios, whole)
    pd.testing.assert_frame_equal(a, b)
    assert list(a["account_id"]) == ["A", "D"]
    assert np.all(a["change"] != 0.0)


def test_incremental_margin_errors(scenarios):
    """Oracle: documented error contract of incremental_margin."""
    book = hand_book()

    def trades(**over):
        base = {"account_id": ["A"], "instrument_id": ["BTC-PERP"], "quantity": [1.0]}
        base.update(over)
        return pd.DataFrame(base)

    with pytest.raises(ValueError, match="unknown account_id 'Z'"):
        incremental_margin(book, MARKET, scenarios, trades(account_id=["Z"]))
    with pytest.raises(ValueError, match="unknown instrument_id 'SOL-PERP'"):
        incremental_margin(book, MARKET, scenarios, trades(instrument_id=["SOL-PERP"]))
    with pytest.raises(ValueError, match="trades is missing column 'quantity'"):
        incremental_margin(book, MARKET, scenarios, trades().drop(columns=["quantity"]))
    with pytest.raises(ValueError, match="quantity must be finite"):
        incremental_margin(book, MARKET, scenarios, trades(quantity=[NAN]))
    with pytest.raises(ValueError, match="measure must be 'es' or 'var'"):
        incremental_margin(book, MARKET, scenarios, trades(), measure="cvar")


# ----------------------------------------------------------------------------- revalue errors
MISSING_ETH = r"on 'ETH' but the scenarios only cover \['BTC'\]"


def test_scenarios_missing_an_underlying():
    """Oracle: documented contract -- positions on an underlying the scenarios do not cover
    raise ValueError naming it."""
    s = monte_carlo_scenarios(GBM(mu=0.0, sigma=0.6), MARKET, ["BTC"], horizon_days=1,
                              n_scenarios=100, seed=1)
    with pytest.raises(ValueError, match=MISSING_ETH):
        revalue(hand_book(), MARKET, s)
    with pytest.raises(ValueError, match=MISSING_ETH):
        portfolio_risk(hand_book(), MARKET, s)


def test_unheld_instrument_without_scenarios_does_not_change_risk():
    """Oracle (law): an instrument nobody holds cannot change any account's risk -- the book
    with ETH-PERP defined but not held, on BTC-only scenarios, gives the same VaR / ES as the
    book without ETH-PERP at all."""
    f = hand_frames()
    f["positions"] = f["positions"][f["positions"]["instrument_id"] != "ETH-PERP"]
    f["collateral"] = f["collateral"][f["collateral"]["asset"] != "ETH"]
    with_eth = hand_book(f)
    g = dict(f)
    g["instruments"] = f["instruments"][f["instruments"]["underlying"] == "BTC"]
    without = hand_book(g)
    s = monte_carlo_scenarios(GBM(mu=0.0, sigma=0.6), MARKET, ["BTC"], horizon_days=1,
                              n_scenarios=500, seed=1)
    a = portfolio_risk(with_eth, MARKET, s, allocate=False)
    b = portfolio_risk(without, MARKET, s, allocate=False)
    np.testing.assert_array_equal(a.var, b.var)
    np.testing.assert_array_equal(a.es, b.es)


def test_incremental_margin_trade_on_uncovered_underlying_raises():
    """Oracle: documented contract (scenarios must cover what is held) -- a what-if trade on
    ETH-PERP, with scenarios on BTC only, would hold ETH: it must raise like a position on
    ETH does, not report a zero change."""
    f = hand_frames()
    f["positions"] = f["positions"][f["positions"]["instrument_id"] != "ETH-PERP"]
    f["collateral"] = f["collateral"][f["collateral"]["asset"] != "ETH"]
    book = hand_book(f)
    s = monte_carlo_scenarios(GBM(mu=0.0, sigma=0.6), MARKET, ["BTC"], horizon_days=1,
                              n_scenarios=500, seed=1)
    trade = pd.DataFrame({"account_id": ["A"], "instrument_id": ["ETH-PERP"],
                          "quantity": [-100.0]})
    with pytest.raises(ValueError, match="ETH"):
        incremental_margin(book, MARKET, s, trade)


def test_incremental_margin_does_not_depend_on_other_accounts(scenarios):
    """Oracle (law): account A's incremental margin for selling 10 BTC-C60K calls is a
    function of A's holdings and the trade only; it must be the same whether or not other
    accounts hold options. (In the hand book B holds BTC-C60K and C the BTC-P40K put;
    removing both must not change A's figure.)"""
    f = hand_frames()
    trade = pd.DataFrame({"account_id": ["A"], "instrument_id": ["BTC-C60K"],
                          "quantity": [-10.0]})
    held = incremental_margin(hand_book(f), MARKET, scenarios, trade)
    g = dict(f)
    g["positions"] = f["positions"][~f["positions"]["instrument_id"].isin(["BTC-C60K",
                                                                           "BTC-P40K"])]
    unheld = incremental_margin(hand_book(g), MARKET, scenarios, trade)
    assert held["change"].iloc[0] > 0.0  # selling calls adds risk
    np.testing.assert_allclose(unheld[["before", "after", "change"]].to_numpy(),
                               held[["before", "after", "change"]].to_numpy(), rtol=1e-12)


def test_collateral_asset_without_scenario_prices():
    """Oracle: documented contract -- a non-stable collateral asset needs scenario prices."""
    f = hand_frames()
    f["positions"] = f["positions"][f["positions"]["instrument_id"] != "ETH-PERP"]
    f["instruments"] = f["instruments"][f["instruments"]["underlying"] == "BTC"]
    book = hand_book(f)  # ETH is still held as collateral by C
    s = monte_carlo_scenarios(GBM(mu=0.0, sigma=0.6), MARKET, ["BTC"], horizon_days=1,
                              n_scenarios=100, seed=1)
    with pytest.raises(ValueError, match="collateral asset 'ETH' has no scenario prices"):
        revalue(book, MARKET, s)


def test_revalue_rows_and_account_pnl(scenarios):
    """Oracle: documented layout and hand arithmetic -- unit P&L rows are the instruments in
    table order, then the collateral assets (stablecoins exactly 0, BTC S_T - S0); the
    materialised account P&L is holdings @ unit P&L."""
    book = hand_book()
    unit = revalue(book, MARKET, scenarios)
    assert unit.row_names == tuple(book.instruments["instrument_id"]) + ("BTC", "ETH", "USDC",
                                                                        "USDT")
    assert unit.pnl.shape == (12, 4000) and unit.n_instruments == 8
    np.testing.assert_array_equal(unit.pnl[8], scenarios.prices[:, 0] - 50000.0)
    np.testing.assert_array_equal(unit.pnl[9], scenarios.prices[:, 1] - 2000.0)
    assert np.all(unit.pnl[10:] == 0.0)
    pnl = account_pnl(book, unit)
    assert pnl.shape == (4000, 4)
    # D holds 500 USDT only: no P&L; B: -200 inverse perps, 2 calls, 1 BTC
    np.testing.assert_array_equal(pnl[:, 3], 0.0)
    np.testing.assert_allclose(pnl[:, 1], -200 * unit.pnl[3] + 2 * unit.pnl[5] + unit.pnl[8],
                               rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(account_pnl(book, unit, np.array([1]))[:, 0], pnl[:, 1],
                               rtol=0, atol=0)
