"""Exchange / protocol rule-based margin: brackets (Binance), dYdX v4, Drift, Deribit linear.

Oracles (each test names its own):

* [FAQ-USDM]  Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
  section "Example: Calculating Liquidation Price in One-way & Cross Margin mode" (2021
  version; the figures the bracket tests in test_brackets.py already check directly).
* [FAQ-COINM] Binance, "How to Calculate Liquidation Price of COIN-M Futures Contracts".
* [CALC-COINM] Binance futures calculator result quoted on Binance's developer forum,
  dev.binance.vision thread 6292 "Coin-margined futures liquidation price calculation help".
* [ANN-2021-03-18] Binance announcement "Updates to Leverage and Margin Tiers of Binance
  Futures Contracts (2021-03-18)", table "BTCUSDT 125x perpetual contract" (the shipped table).
* [DYDX-LT] dydxprotocol/v4-chain, protocol/x/perpetuals/types/liquidity_tier_test.go:
  TestGetInitialMarginQuoteQuantums, TestGetAdjustedInitialMarginPpm,
  TestLiquidityTierGetMaintenanceMarginPpm; [DYDX-LIB] protocol/x/perpetuals/lib/lib.go
  (maintenance margin from the base IMF).
* [DRIFT-PM] drift-labs/protocol-v2, programs/drift/src/state/perp_market/tests.rs,
  get_margin_ratio::smart_hlm_size; [DRIFT-MT] programs/drift/src/math/margin/tests.rs,
  spot_market_asset_weight and calculate_user_equity_value_tests.
* [DERIBIT-LP] Deribit support, "Linear Perpetual", table "Standard Margin IM & MM examples
  Linear perpetual" (BTC_USDC at 100,000; SOL_USDC at 200).
* Laws checked with hypothesis, each stated in its test's docstring.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginlab.models.book import Book
from marginlab.models.margin import BracketTable, binance_btcusdt_2021
from marginlab.models.margin.base import MarginMethod
from marginlab.models.margin.exchange import (
    DeribitLinearMargin,
    DriftMargin,
    DydxMargin,
    TieredMargin,
    drift_margin_ratio,
    dydx_initial_margin_fraction,
)
from marginlab.models.scenarios import MarketState

LAW = settings(max_examples=30, deadline=None)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def btc() -> BracketTable:
    return binance_btcusdt_2021()


def eth_2021() -> BracketTable:
    """ETHUSDT brackets of 2021 as listed in gist crackcomm/e29582030d9eeac6c6124a7503cd0ac2
    (caps, MMR, maintenance amounts; the same table test_brackets.py uses). Max leverage 1x is
    a placeholder: only maintenance margins and liquidation prices are checked with it."""
    caps = [10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
            20_000_000, 5_000_000_000]
    mmr = [0.005, 0.0065, 0.01, 0.02, 0.05, 0.10, 0.125, 0.15, 0.25]
    cum = [0, 15, 365, 5_365, 35_365, 135_365, 260_365, 510_365, 2_510_365]
    return BracketTable([0, *caps[:-1]], caps, [1] * len(caps), mmr, maintenance_amount=cum,
                        name="ETHUSDT")


def coin_table() -> BracketTable:
    """An illustrative COIN-M table (coin notional) for the laws; not a published one."""
    floors = [0, 5, 10, 20, 50, 100, 200]
    caps = [5, 10, 20, 50, 100, 200, 1e9]
    return BracketTable(floors, caps, [125, 100, 50, 20, 10, 5, 4],
                        [0.004, 0.005, 0.01, 0.025, 0.05, 0.10, 0.125], inverse=True,
                        name="BTCUSD_PERP")


INSTRUMENTS = pd.DataFrame({
    "instrument_id": ["BTCUSDT", "ETHUSDT", "BTCUSD_PERP", "SOLUSDC", "BTC-C"],
    "type": ["linear_perp", "linear_perp", "inverse_perp", "linear_perp", "option"],
    "underlying": ["BTC", "ETH", "BTC", "SOL", "BTC"],
    "face_value": [np.nan, np.nan, 100.0, np.nan, np.nan],
    "strike": [np.nan, np.nan, np.nan, np.nan, 50_000.0],
    "expiry": [np.nan, np.nan, np.nan, np.nan, 0.1],
    "option_type": ["", "", "", "", "call"],
})


def make_book(rows, collateral=None) -> Book:
    """rows: (account, instrument, quantity, entry_price); the book lists only the instruments
    it holds (account_equity prices every listed instrument)."""
    pos = pd.DataFrame(rows, columns=["account_id", "instrument_id", "quantity", "entry_price"])
    col = None
    if collateral:
        col = pd.DataFrame(collateral, columns=["account_id", "asset", "amount"])
    inst = INSTRUMENTS[INSTRUMENTS["instrument_id"].isin(pos["instrument_id"])]
    return Book.from_frames(inst.reset_index(drop=True), pos, col)


def tiered(mode="cross", **kw) -> TieredMargin:
    return TieredMargin({"BTCUSDT": binance_btcusdt_2021(), "BTCUSD_PERP": coin_table(),
                         "ETH": eth_2021()}, mode=mode, **kw)


# ======================================================================== TieredMargin
# [FAQ-USDM] cross-margin example (one-way mode).
WB = 1_535_443.01
BTC_SIZE, BTC_EP, BTC_MARK = 109.488, 32_481.98, 31_967.27
ETH_SIZE, ETH_EP, ETH_MARK = 3_683.979, 1_456.84, 1_335.18


@pytest.fixture(scope="module")
def faq_book() -> Book:
    return make_book([("A", "BTCUSDT", BTC_SIZE, BTC_EP), ("A", "ETHUSDT", ETH_SIZE, ETH_EP)],
                     [("A", "USDT", WB)])


FAQ_MARKET = MarketState({"BTC": BTC_MARK, "ETH": ETH_MARK})


def test_faq_usdm_cross_account_through_the_book(faq_book):
    """Oracle [FAQ-USDM]: maintenance margin 71,200.81144 (BTCUSDT) and 356,512.508 (ETHUSDT),
    unrealised PnL -56,354.57 and -448,192.89 with wallet balance 1,535,443.01, so the
    account's margin balance is 1,535,443.01 - 56,354.57 - 448,192.89 = 1,030,895.55."""
    res = tiered().compute(faq_book, FAQ_MARKET)
    alloc = res.allocation.set_index("holding")
    assert abs(alloc.loc["BTCUSDT", "mm_contribution"] - 71_200.81144) < 5e-6
    assert abs(alloc.loc["ETHUSDT", "mm_contribution"] - 356_512.508) < 5e-4
    assert res.mm[0] == pytest.approx(71_200.81144 + 356_512.508, abs=1e-3)
    # the two PnLs are published rounded to the cent, so their sum is good to 1 cent
    assert res.margin_balance[0] == pytest.approx(WB - 56_354.57 - 448_192.89, abs=0.01)
    assert alloc["im_contribution"].sum() == pytest.approx(res.im[0], rel=1e-12)
    assert isinstance(tiered(), MarginMethod)


def test_faq_usdm_cross_liquidation_prices_through_the_book(faq_book):
    """Oracle [FAQ-USDM]: LP(BTCUSDT) = 26,316.89 in bracket 4 (MMR 2.5 %, cum 16,300) and
    LP(ETHUSDT) = 1,153.26 (MMR 10 %), published to the cent; here TMM1 and UPNL1 come from
    the book's other position and the wallet from its USDT collateral."""
    lp = tiered().liquidation_prices(faq_book, FAQ_MARKET).set_index("instrument_id")
    assert round(lp.loc["BTCUSDT", "liquidation_price"], 2) == 26_316.89
    assert lp.loc["BTCUSDT", "bracket"] == 4
    assert round(lp.loc["ETHUSDT", "liquidation_price"], 2) == 1_153.26
    assert eth_2021().maintenance_margin_rate[lp.loc["ETHUSDT", "bracket"] - 1] == 0.10
    assert (lp["side"] == "long").all() and (lp["mode"] == "cross").all()


def test_isolated_liquidation_hand_derivation_and_hedge_mode():
    """Oracle: hand derivation from [FAQ-USDM]'s formula in isolated mode (as in
    test_brackets.py): long 1 BTC at 10,000 with 20x has isolated wallet 10,000 / 20 = 500,
    bracket 1 (MMR 0.4 %): LP = (500 - 10,000) / (0.004 - 1) = 9,538.1526; the short:
    (500 + 10,000) / 1.004 = 10,458.1673. Both rows sit in one account (hedge mode: two
    isolated positions); cross (one-way) mode nets them to no position at all."""
    book = make_book([("H", "BTCUSDT", 1.0, 10_000.0), ("H", "BTCUSDT", -1.0, 10_000.0)])
    market = MarketState({"BTC": 10_000.0})
    iso = tiered("isolated", leverage=20).liquidation_prices(book, market)
    iso = iso.set_index("side")
    assert iso.loc["long", "liquidation_price"] == pytest.approx(9_538.1526, abs=5e-5)
    assert iso.loc["short", "liquidation_price"] == pytest.approx(10_458.1673, abs=5e-5)
    assert (iso["wallet_balance"] == 500.0).all() and (iso["bracket"] == 1).all()
    assert tiered("cross", leverage=20).liquidation_prices(book, market).empty


def test_isolated_entry_is_averaged_per_side():
    """Oracle: hand derivation. Two long rows of 1 BTC at 9,000 and 11,000 are one isolated
    position of 2 BTC at the average entry 10,000 (linear: quantity-weighted mean), wallet
    20,000 / 20 = 1,000, LP = (1,000 - 20,000) / (2 * 0.004 - 2) = 9,538.1526 as for 1 BTC."""
    book = make_book([("A", "BTCUSDT", 1.0, 9_000.0), ("A", "BTCUSDT", 1.0, 11_000.0)])
    lp = tiered("isolated", leverage=20).liquidation_prices(book, MarketState({"BTC": 1e4}))
    assert len(lp) == 1 and lp["entry_price"].iloc[0] == pytest.approx(10_000.0)
    assert lp["liquidation_price"].iloc[0] == pytest.approx(9_538.1526, abs=5e-5)


def test_initial_margin_leverage_capped_and_driver(btc):
    """Oracle: hand derivation from [ANN-2021-03-18]: 10 BTC at 50,000 = 500,000 USDT is in
    bracket 3 (max 50x), so 100x requested gives IM = 500,000 / 50 = 10,000, 20x gives 25,000,
    and no leverage the maximum (10,000); MM = 500,000 * 1 % - 1,300 = 3,700. The driver is
    the bracket: "BTCUSDT bracket 3"."""
    book = make_book([("A", "BTCUSDT", 10.0, 50_000.0)])
    market = MarketState({"BTC": 50_000.0})
    res = TieredMargin({"BTCUSDT": btc}, leverage=100).compute(book, market)
    assert res.im[0] == pytest.approx(10_000.0) and res.mm[0] == pytest.approx(3_700.0)
    assert res.driver[0] == "BTCUSDT bracket 3"
    assert TieredMargin({"BTC": btc}, leverage={"BTCUSDT": 20}).compute(
        book, market).im[0] == pytest.approx(25_000.0)
    assert TieredMargin({"BTC": btc}).compute(book, market).im[0] == pytest.approx(10_000.0)


def test_coinm_margin_in_coin_converted_to_usd():
    """Oracle [FAQ-COINM]: "100 BTCUSD Perpetual contracts, latest Mark Price 25,000:
    notional 100 * 100 / 25,000 = 0.4 BTC, ... Maintenance Margin = 0.4 * 0.4% - 0 =
    0.0016 BTC" (level 1: max 125x, MMR 0.4 %, as in Binance's /dapi/v1/leverageBracket
    example); in USD at 25,000: MM = 40, IM = 0.4 / 125 * 25,000 = 80."""
    table = BracketTable([0], [50], [125], [0.004], inverse=True, name="BTCUSD_PERP")
    book = make_book([("A", "BTCUSD_PERP", 100.0, 25_000.0)])
    res = TieredMargin({"BTCUSD_PERP": table}).compute(book, MarketState({"BTC": 25_000.0}))
    assert res.mm[0] == pytest.approx(0.0016 * 25_000.0, rel=1e-12)
    assert res.im[0] == pytest.approx(80.0, rel=1e-12)
    assert res.driver[0] == "BTCUSD_PERP bracket 1"


def test_coinm_cross_liquidation_calculator_figure():
    """Oracle [CALC-COINM]: WB 101 BTC, cross, long 100,000 BTCUSD contracts (100 USD) at
    45,000: Binance's calculator shows 33,599.40. At that price the position is 297.6 BTC,
    in the bracket [FAQ-COINM] quotes for 300 BTC (MMR 12.5 %, maintenance amount 11.605 BTC).
    The table here has that bracket above a placeholder first bracket (floor 250 BTC, MMR
    12.5 % - 11.605 / 250) chosen so that its ladder gives exactly 11.605: only the quoted
    bracket is constrained by the oracle."""
    mmr1 = 0.125 - 11.605 / 250
    table = BracketTable([0, 250], [250, 1_000], [10, 4], [mmr1, 0.125], inverse=True,
                         name="BTCUSD_PERP")
    assert table.maintenance_amount[1] == pytest.approx(11.605, abs=1e-12)
    book = make_book([("W", "BTCUSD_PERP", 100_000.0, 45_000.0)], [("W", "BTC", 101.0)])
    lp = TieredMargin({"BTC": table}).liquidation_prices(book, MarketState({"BTC": 45_000.0}))
    assert round(lp["liquidation_price"].iloc[0], 1) == 33_599.4
    assert lp["bracket"].iloc[0] == 2 and lp["wallet_balance"].iloc[0] == pytest.approx(101.0)


def test_positions_without_table_and_options(btc):
    """Oracle: the documented options. A futures position with no table raises naming the
    instrument unless on_missing='ignore'; an option raises naming its type unless
    on_unsupported='ignore'; an account with nothing margined gets 0 and a driver naming what
    was left out ("no positions" when it holds none)."""
    book = make_book([("A", "BTCUSDT", 1.0, 50_000.0), ("A", "SOLUSDC", 10.0, 100.0),
                      ("B", "BTC-C", -1.0, 0.05)], [("C", "USDT", 10.0)])
    market = MarketState({"BTC": 50_000.0, "SOL": 100.0}, vol={"BTC": 0.6})
    with pytest.raises(ValueError, match=r"no bracket table for instrument 'SOLUSDC'"):
        TieredMargin({"BTC": btc}, on_unsupported="ignore").compute(book, market)
    with pytest.raises(ValueError, match=r"'BTC-C'\) is of type 'option'"):
        TieredMargin({"BTC": btc}, on_missing="ignore").compute(book, market)
    res = TieredMargin({"BTC": btc}, on_missing="ignore", on_unsupported="ignore").compute(
        book, market)
    assert list(res.account_ids) == ["A", "B", "C"]
    assert res.im[0] == pytest.approx(50_000.0 / 125) and res.im[1] == res.im[2] == 0.0
    assert list(res.driver) == ["BTCUSDT bracket 1", "not margined by tiered-cross: BTC-C (option)",
                                "no positions"]
    assert list(res.allocation["holding"]) == ["BTCUSDT"]


def test_table_kind_and_cap_errors(btc):
    """Oracle: the documented checks. A linear table cannot serve an inverse contract; a
    position above the last cap (5e8 USDT) raises naming the account unless
    extend_last=True, which continues the last bracket (MMR 50 %, cum 100,016,300)."""
    inv = make_book([("A", "BTCUSD_PERP", 10.0, 50_000.0)])
    with pytest.raises(ValueError, match=r"'BTCUSD_PERP'.*linear.*tables\['BTC'\]"):
        TieredMargin({"BTC": btc}).compute(inv, MarketState({"BTC": 50_000.0}))
    big = make_book([("Z", "BTCUSDT", 20_000.0, 50_000.0)])
    market = MarketState({"BTC": 50_000.0})
    with pytest.raises(ValueError, match=r"account 'Z' holds 'BTCUSDT'.*extend_last"):
        TieredMargin({"BTC": btc}).compute(big, market)
    res = TieredMargin({"BTC": btc}, extend_last=True).compute(big, market)
    assert res.mm[0] == pytest.approx(1e9 * 0.5 - 100_016_300)


# ----------------------------------------------------------------------------- laws
sizes = st.floats(0.001, 400.0, allow_nan=False)
signed = st.floats(-400.0, 400.0, allow_nan=False).filter(lambda x: abs(x) > 1e-3)


def _linear_methods():
    return [
        tiered("cross"), tiered("isolated", leverage=25.0),
        DydxMargin(0.05, 0.6, 1e6, 5e7, open_interest={"BTC": 300.0}),
        DriftMargin(0.1, 0.05, imf_factor=1e-3),
        DeribitLinearMargin(0.02, 0.01, 5e-5),
    ]


@LAW
@given(a=sizes, b=sizes, short=st.booleans(), k=st.integers(0, 4))
def test_law_margin_nondecreasing_in_size(a, b, short, k):
    """Law: for every method, a larger position (same side, same market) never needs less IM
    or MM: every rate is non-decreasing in the size and multiplies a larger notional."""
    lo, hi = sorted((a, b))
    s = -1.0 if short else 1.0
    method = _linear_methods()[k]
    market = MarketState({"BTC": 60_000.0})
    r_lo = method.compute(make_book([("A", "BTCUSDT", s * lo, 55_000.0)]), market)
    r_hi = method.compute(make_book([("A", "BTCUSDT", s * hi, 55_000.0)]), market)
    assert r_lo.im[0] <= r_hi.im[0] * (1 + 1e-12) + 1e-9
    assert r_lo.mm[0] <= r_hi.mm[0] * (1 + 1e-12) + 1e-9


@LAW
@given(q=st.lists(st.tuples(st.sampled_from(["BTCUSDT", "BTCUSD_PERP"]), signed),
                  min_size=1, max_size=6),
       lev=st.one_of(st.none(), st.floats(1.0, 150.0)))
def test_law_cross_at_most_sum_of_isolated(q, lev):
    """Law: for the same rows, cross (one-way netting per instrument) needs no more IM and MM
    than isolated (one long and one short position per instrument): with f increasing and
    f(0) = 0, f(|L - S|) <= f(max(L, S)) <= f(L) + f(S). Linear and inverse tables."""
    rows = [("A", i, x * (1_000.0 if i == "BTCUSD_PERP" else 1.0), 40_000.0) for i, x in q]
    book = make_book(rows)
    market = MarketState({"BTC": 45_000.0})
    cross = tiered("cross", leverage=lev).compute(book, market)
    iso = tiered("isolated", leverage=lev).compute(book, market)
    assert cross.im[0] <= iso.im[0] * (1 + 1e-12) + 1e-9
    assert cross.mm[0] <= iso.mm[0] * (1 + 1e-12) + 1e-9


@LAW
@given(x=sizes, inst=st.sampled_from(["BTCUSDT", "BTCUSD_PERP"]))
def test_law_hedged_pair(x, inst):
    """Law: a long and a short of the same size on one instrument net to nothing in cross
    (one-way) mode (zero margin), while isolated (hedge) mode margins both: twice the margin of
    one leg, the two legs having the same notional."""
    scale = 1_000.0 if inst == "BTCUSD_PERP" else 1.0
    market = MarketState({"BTC": 45_000.0})
    pair = make_book([("A", inst, x * scale, 44_000.0), ("A", inst, -x * scale, 46_000.0)])
    leg = make_book([("A", inst, x * scale, 44_000.0)])
    cross = tiered("cross").compute(pair, market)
    iso = tiered("isolated").compute(pair, market)
    one = tiered("isolated").compute(leg, market)
    assert cross.im[0] == 0.0 and cross.mm[0] == 0.0
    assert iso.im[0] == pytest.approx(2 * one.im[0], rel=1e-12)
    assert iso.mm[0] == pytest.approx(2 * one.mm[0], rel=1e-12)


@LAW
@given(q=st.lists(st.tuples(st.sampled_from(["A", "B", "C"]),
                            st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDC"]), signed),
                  min_size=1, max_size=8),
       k=st.integers(0, 4))
def test_law_im_above_mm_and_accounts_independent(q, k):
    """Laws: IM >= MM >= 0 for every account and method; and the vectorised computation over
    a multi-account book equals computing each account's sub-book alone (accounts share
    nothing in these rules)."""
    method = _linear_methods()[k]
    if isinstance(method, TieredMargin):
        method = TieredMargin({**method.tables, "SOL": binance_btcusdt_2021()},
                              mode=method.mode, leverage=method.leverage)
    if isinstance(method, DydxMargin):
        method = DydxMargin(0.05, 0.6, 1e6, 5e7,
                            open_interest={"BTC": 300.0, "ETH": 4_000.0, "SOL": 1e5})
    book = make_book([(a, i, x, 1_000.0) for a, i, x in q])
    market = MarketState({"BTC": 45_000.0, "ETH": 2_500.0, "SOL": 150.0})
    res = method.compute(book, market)
    assert np.all(res.mm >= 0.0)
    assert np.all(res.im >= res.mm * (1 - 1e-12) - 1e-9)
    for j in range(len(res.account_ids)):
        alone = method.compute(book.subset(np.array([j])), market)
        assert alone.im[0] == pytest.approx(res.im[j], rel=1e-12, abs=1e-9)
        assert alone.mm[0] == pytest.approx(res.mm[j], rel=1e-12, abs=1e-9)
    alloc = res.allocation.groupby("account_id")["im_contribution"].sum()
    np.testing.assert_allclose(alloc.reindex(res.account_ids, fill_value=0.0), res.im,
                               rtol=1e-12, atol=1e-9)


@LAW
@given(x=st.floats(0.01, 300.0), short=st.booleans(), other=st.floats(-200.0, 200.0),
       inst=st.sampled_from(["BTCUSDT", "BTCUSD_PERP"]), wallet=st.floats(0.05, 2.0))
def test_law_margin_balance_equals_mm_at_cross_liquidation_price(x, short, other, inst,
                                                                 wallet):
    """Law: in cross mode, repricing the underlying to a position's liquidation price makes the
    account's margin balance equal to its maintenance margin (Binance's defining equation),
    the other position (ETH) held fixed. Linear contract with a USDT wallet; inverse contract
    with a BTC wallet (the COIN-M setting, where the formula is exact)."""
    inverse = inst == "BTCUSD_PERP"
    size = (-x if short else x) * (450.0 if inverse else 1.0)
    price = 45_000.0
    coll = ("A", "BTC", wallet * x) if inverse else ("A", "USDT", wallet * x * price)
    rows = [("A", inst, size, 44_000.0)]
    if not inverse and abs(other) > 1e-3:
        rows.append(("A", "ETHUSDT", other, 2_400.0))
    book = make_book(rows, [coll])
    method = tiered("cross", extend_last=True)
    lp = method.liquidation_prices(book, MarketState({"BTC": price, "ETH": 2_500.0}))
    lp = lp.set_index("instrument_id").loc[inst, "liquidation_price"]
    if not (0.0 < lp < np.inf):
        return  # "never" / "always": no finite price to reprice at
    at = method.compute(book, MarketState({"BTC": lp, "ETH": 2_500.0}))
    assert at.margin_balance[0] == pytest.approx(at.mm[0], rel=1e-7, abs=1e-6 * price)


# ============================================================================== dYdX v4
# [DYDX-LT] TestGetInitialMarginQuoteQuantums: (InitialMarginPpm, quote quantums, open
# notional, lower cap, upper cap, expected IM quote quantums, rounded up by dYdX).
DYDX_IM_CASES = [
    (200_000, 500_000, 0, 0, 0, 100_000),
    (500_000, 1_000_000, 0, 0, 0, 500_000),
    (100_000, 1, 0, 0, 0, 1),
    (567_243, 123_456, 0, 0, 0, 70_030),
    (200_000, 500_000, 1_500_000_000_000, 0, 0, 100_000),
    (200_000, 500_000, 1_500_000_000_000, 1_000_000_000_000, 2_000_000_000_000, 300_000),
    (200_000, 500_000, 80_000_000_000_000, 25_000_000_000_000, 50_000_000_000_000, 500_000),
    (200_000, 500_000, 25_000_000_000_000, 25_000_000_000_000, 50_000_000_000_000, 100_000),
    (200_000, 500_000, 28_123_456_789_123, 25_000_000_000_000, 60_000_000_000_000, 135_697),
]


@pytest.mark.parametrize("ppm, quote, oi, lower, upper, expected", DYDX_IM_CASES)
def test_dydx_initial_margin_unit_test_figures(ppm, quote, oi, lower, upper, expected):
    """Oracle [DYDX-LT] TestGetInitialMarginQuoteQuantums, every case: IM = effective IMF x
    quote quantums, rounded up to a whole quantum as dYdX does. Reproduced twice: with the
    IMF function on quantums, and through DydxMargin on a book whose position notional is the
    case's quote quantums in USD (open interest given in BTC at a 50,000 price)."""
    imf = dydx_initial_margin_fraction(oi, ppm / 1e6, lower, upper)
    assert math.ceil(imf * quote - 1e-9) == expected
    price = 50_000.0
    method = DydxMargin(ppm / 1e6, 0.5, lower, upper, open_interest={"BTC": oi / price})
    book = make_book([("A", "BTCUSDT", -quote / price, 1.0)])
    res = method.compute(book, MarketState({"BTC": price}))
    assert math.ceil(res.im[0] - 1e-6) == expected


@pytest.mark.parametrize("oi, lower, upper, ppm", [
    (0, 1_000_000, 2_000_000, 200_000),
    (1_500_000, 1_000_000, 2_000_000, 600_000),
    (1_234_567, 1_000_000, 2_000_000, 387_653),
    (1_000_000, 1_000_000, 2_000_000, 200_000),
    (2_000_000, 1_000_000, 2_000_000, 1_000_000),
    (2_500_000, 1_000_000, 2_000_000, 1_000_000),
    (1_500_000, 0, 0, 200_000),
])
def test_dydx_adjusted_imf_ppm_figures(oi, lower, upper, ppm):
    """Oracle [DYDX-LT] TestGetAdjustedInitialMarginPpm (base 200,000 ppm), every case,
    e.g. 0.2 + 0.234567 * 0.8 = 0.3876536 "rounded down to 0.387_653"; at the upper cap and
    above, 100 %; caps 0 disable the scaling."""
    imf = dydx_initial_margin_fraction(oi, 0.2, lower, upper)
    assert math.floor(imf * 1e6 + 1e-6) == ppm


@pytest.mark.parametrize("imf, mf, mmr_ppm", [
    (0.15, 0.80, 120_000), (0.45, 0.77, 346_500), (0.637239, 0.289284, 184_343),
    (1.0, 1.0, 1_000_000), (0.0, 1.0, 0), (1.0, 0.0, 0),
])
def test_dydx_maintenance_fraction_figures(imf, mf, mmr_ppm):
    """Oracle [DYDX-LT] TestLiquidityTierGetMaintenanceMarginPpm: maintenance margin ppm =
    initial margin ppm x maintenance fraction (15 % x 80 % = 12 %, 45 % x 77 % = 34.65 %,
    63.7239 % x 28.9284 % = 184,343 ppm, ...), as MM / notional of a position."""
    book = make_book([("A", "BTCUSDT", 2.0, 1.0)])
    res = DydxMargin(imf, mf).compute(book, MarketState({"BTC": 50_000.0}))
    assert round(res.mm[0] / 100_000.0 * 1e6) == mmr_ppm
    assert res.im[0] == pytest.approx(imf * 100_000.0, rel=1e-12)


def test_dydx_maintenance_uses_base_imf_and_driver():
    """Oracle [DYDX-LIB] GetMarginRequirementsInQuoteQuantums: MM = base IM x maintenance
    fraction, the base IM taken before the open-interest scaling, while IM uses the scaled
    IMF. With [DYDX-LT]'s "scaling_factor = 0.5" market (base 20 %, caps 1M / 2M, open
    notional 1.5M): IMF 60 %, so a 10,000 USD position has IM 6,000 and, at fraction 0.8,
    MM = 10,000 x 20 % x 80 % = 1,600. Per-market parameters; the driver names the IMF."""
    method = DydxMargin({"BTC": 0.2, "ETH": 0.1}, 0.8, {"BTC": 1e6, "ETH": 0.0},
                        {"BTC": 2e6, "ETH": 0.0}, open_interest={"BTCUSDT": 30.0})
    book = make_book([("A", "BTCUSDT", 0.2, 1.0), ("A", "ETHUSDT", -1.0, 1.0)])
    res = method.compute(book, MarketState({"BTC": 50_000.0, "ETH": 1_000.0}))
    alloc = res.allocation.set_index("holding")
    assert alloc.loc["BTCUSDT", "im_contribution"] == pytest.approx(6_000.0)
    assert alloc.loc["BTCUSDT", "mm_contribution"] == pytest.approx(1_600.0)
    assert alloc.loc["ETHUSDT", "im_contribution"] == pytest.approx(100.0)
    assert res.driver[0] == "BTCUSDT IMF 60%"
    fr = method.initial_margin_fractions(book, MarketState({"BTC": 50_000.0, "ETH": 1e3}))
    assert fr["BTCUSDT"] == pytest.approx(0.6) and fr["ETHUSDT"] == pytest.approx(0.1)


# ============================================================================= Drift
def test_drift_size_premium_unit_test_figures():
    """Oracle [DRIFT-PM] smart_hlm_size: margin_ratio_initial 1000 (10 %), imf_factor 50,
    size 1,000,000 base units: get_margin_ratio(.., Initial, false) = 1300 (13 %); and
    [DRIFT-MT] spot_market_asset_weight, the same calculate_size_premium_liability_weight on
    1,000 tokens: weight 11000 with imf 10000 -> 11962, with imf SPOT_IMF_PRECISION / 10 ->
    40422, a zero maintenance weight -> 31622 (all in 1e-4, truncated)."""
    assert math.floor(drift_margin_ratio(1e6, 0.10, 50e-6) * 1e4 + 1e-9) == 1300
    assert math.floor(drift_margin_ratio(1_000.0, 1.1, 0.01) * 1e4) == 11_962
    assert math.floor(drift_margin_ratio(1_000.0, 1.1, 0.1) * 1e4) == 40_422
    assert math.floor(drift_margin_ratio(1_000.0, 0.0, 0.1) * 1e4) == 31_622
    assert drift_margin_ratio(1_000.0, 1.1, 0.0) == 1.1
    book = make_book([("A", "BTCUSDT", 1e6, 1.0)])
    res = DriftMargin(0.10, 0.05, imf_factor=50e-6).compute(book, MarketState({"BTC": 1.0}))
    assert res.im[0] == pytest.approx(130_000.0, rel=1e-12)
    assert res.driver[0] == "BTCUSDT size premium"


def test_drift_perp_margin_requirement_unit_test_figures():
    """Oracle [DRIFT-MT] calculate_user_equity_value_tests: short 6.147540983 base (the
    1e9-scaled amount -12295081967 / 2), margin_ratio_initial 1000, imf_factor 1000: the
    premium 0.08 + 0.001 * sqrt(6.1475) stays below 10 %, so the initial requirement is
    10 % of the value: 13555327867 at oracle 22,050 and 12940573769 at 21,050 (1e-6 USD,
    truncated)."""
    method = DriftMargin(0.10, 0.05, imf_factor=1_000 / 1e6)
    book = make_book([("A", "BTCUSDT", -(12295081967 // 2) / 1e9, 25_000.0)])
    for oracle, pmr in ((22_050.0, 13_555_327_867), (21_050.0, 12_940_573_769)):
        res = method.compute(book, MarketState({"BTC": oracle}))
        assert math.floor(res.im[0] * 1e6) == pmr
        assert res.driver[0] == "BTCUSDT base ratio"


# =========================================================================== Deribit
def test_deribit_linear_perpetual_published_examples():
    """Oracle [DERIBIT-LP]: BTC_USDC at 100,000: 25 BTC -> IM 2.125 % = 53,125 USDC, MM
    1.125 % = 28,125 USDC; 350 BTC -> IM 3.75 % = 1,312,500 USDC. SOL_USDC at 200: 25 SOL ->
    IM 4.0125 % = 200.625 USDC, MM 2.0125 % = 100.625 USDC; 6,000 SOL -> IM 7 % = 84,000 USDC.
    Short positions margin the same."""
    method = DeribitLinearMargin({"BTC": 0.02, "SOL": 0.04}, {"BTC": 0.01, "SOL": 0.02},
                                 {"BTC": 5e-5, "SOL": 5e-6})
    book = make_book([("b25", "BTCUSDT", 25.0, 1.0), ("b350", "BTCUSDT", -350.0, 1.0),
                      ("s25", "SOLUSDC", 25.0, 1.0), ("s6000", "SOLUSDC", 6_000.0, 1.0)])
    res = method.compute(book, MarketState({"BTC": 100_000.0, "SOL": 200.0}))
    im = dict(zip(res.account_ids, res.im, strict=True))
    mm = dict(zip(res.account_ids, res.mm, strict=True))
    assert im["b25"] == pytest.approx(53_125.0) and mm["b25"] == pytest.approx(28_125.0)
    assert im["b350"] == pytest.approx(1_312_500.0)
    assert im["s25"] == pytest.approx(200.625) and mm["s25"] == pytest.approx(100.625)
    assert im["s6000"] == pytest.approx(84_000.0)


# ============================================================================ errors
@pytest.mark.parametrize("make, match", [
    (lambda: TieredMargin({}), r"tables must be a non-empty mapping"),
    (lambda: TieredMargin({"BTC": 3}), r"tables\['BTC'\] must be a BracketTable"),
    (lambda: TieredMargin({"BTC": binance_btcusdt_2021()}, mode="both"), r"mode must be"),
    (lambda: TieredMargin({"BTC": binance_btcusdt_2021()}, leverage=0.5),
     r"leverage must be finite and >= 1, got 0.5"),
    (lambda: TieredMargin({"BTC": binance_btcusdt_2021()}, leverage={"BTC": 0}),
     r"leverage\['BTC'\] must be finite and >= 1"),
    (lambda: TieredMargin({"BTC": binance_btcusdt_2021()}, on_missing="skip"),
     r"on_missing must be one of 'raise', 'ignore'"),
    (lambda: TieredMargin({"BTC": binance_btcusdt_2021()}, name=3), r"name must be"),
    (lambda: DydxMargin(1.5, 0.5), r"imf_base must be finite and >= 0 and <= 1, got 1.5"),
    (lambda: DydxMargin(0.1, -0.1), r"mmf_fraction must be"),
    (lambda: DydxMargin(0.1, 0.5, 2e6, 1e6), r"oi_lower_cap must be <= oi_upper_cap"),
    (lambda: DydxMargin(0.1, 0.5, 1e6, 0.0), r"oi_lower_cap must be <= oi_upper_cap"),
    (lambda: DydxMargin(0.1, 0.5, open_interest={"BTC": -1}),
     r"open_interest\['BTC'\] must be finite and >= 0"),
    (lambda: DriftMargin(0.0, 0.0), r"base_imr must be finite and > 0"),
    (lambda: DriftMargin(0.1, 0.2), r"base_mmr must be <= base_imr, got 0.2 > 0.1"),
    (lambda: DriftMargin({"BTC": 0.1}, {"BTC": 0.2}), r"base_mmr\['BTC'\] must be <="),
    (lambda: DriftMargin(0.1, 0.05, imf_factor=-1), r"imf_factor must be finite and >= 0"),
    (lambda: DeribitLinearMargin(0.01, 0.02, 0.0), r"mm_base must be <= im_base"),
    (lambda: DeribitLinearMargin(0.02, 0.01, float("nan")), r"size_rate must be finite"),
    (lambda: dydx_initial_margin_fraction(-1.0, 0.1, 0, 0),
     r"open_interest_notional must be finite and >= 0"),
    (lambda: drift_margin_ratio(1.0, 0.1, -0.5), r"imf_factor must be finite and >= 0"),
])
def test_bad_parameters_are_named(make, match):
    """Oracle: the validation rule (errors name the parameter, the value and the range);
    dYdX's own rule for caps ([DYDX-LT] TestLiquidityTierValidate: lower cap larger than
    upper cap, including upper cap 0, is an error)."""
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_compute_time_errors_name_the_market():
    """Oracle: the documented behaviour. Missing per-market values and open interest raise
    naming the instrument; inverse contracts are out of scope of the linear-only methods."""
    market = MarketState({"BTC": 50_000.0, "ETH": 2_000.0})
    book = make_book([("A", "BTCUSDT", 1.0, 1.0), ("A", "ETHUSDT", 1.0, 1.0)])
    with pytest.raises(ValueError, match=r"base_imr has no value for instrument 'ETHUSDT'"):
        DriftMargin({"BTC": 0.1}, 0.05).compute(book, market)
    with pytest.raises(ValueError, match=r"open_interest is required for instrument"):
        DydxMargin(0.05, 0.6, 1e6, 2e6).compute(book, market)
    inv = make_book([("A", "BTCUSD_PERP", 10.0, 1.0)])
    with pytest.raises(ValueError, match=r"type 'inverse_perp'"):
        DeribitLinearMargin(0.02, 0.01, 5e-5).compute(inv, market)
    res = DeribitLinearMargin(0.02, 0.01, 5e-5, on_unsupported="ignore").compute(inv, market)
    assert res.im[0] == 0.0
    assert res.driver[0] == "not margined by deribit-linear: BTCUSD_PERP (inverse_perp)"
    assert res.method == "deribit-linear"
