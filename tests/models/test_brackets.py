"""Bracket tables, position / account margin, liquidation and bankruptcy prices.

Oracles (each test names its own):

* [FAQ-USDM]  Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", incl.
  its section "Example: Calculating Liquidation Price in One-way & Cross Margin mode" (2021
  version; inputs and outputs as quoted in freqtrade PR #5576 and its tests
  tests/leverage/test_liquidation_price.py / tests/exchange/test_binance.py).
* [FAQ-COINM] Binance, "How to Calculate Liquidation Price of COIN-M Futures Contracts".
* [CALC-COINM] Binance futures calculator result quoted on Binance's developer forum,
  dev.binance.vision thread 6292 "Coin-margined futures liquidation price calculation help".
* [ANN-2021-03-18] Binance announcement "Updates to Leverage and Margin Tiers of Binance
  Futures Contracts (2021-03-18)", table "BTCUSDT 125x perpetual contract".
* [GIST-2021-03-26] gist highfestiva/b71e76f51eed84d56c1be8ebbcc286b5, BTCUSDT maintenance
  amounts read from Binance's web app on 2021-03-26.
* Laws checked with hypothesis, each stated in its test's docstring.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from marginlab.models.margin import (
    BracketTable,
    bankruptcy_price,
    binance_btcusdt_2021,
    cross_maintenance_margin,
    liquidation_price,
    liquidation_price_with_table,
    maintenance_amounts,
    position_notional,
    unrealized_pnl,
)

DATA = Path(__file__).resolve().parents[2] / "models" / "data" / "binance_btcusdt_brackets.csv"

# [ANN-2021-03-18]: (floor, cap, max leverage, MMR) of BTCUSDT from 2021-03-18.
ANNOUNCED = [
    (0, 50_000, 125, 0.004),
    (50_000, 250_000, 100, 0.005),
    (250_000, 1_000_000, 50, 0.01),
    (1_000_000, 10_000_000, 20, 0.025),
    (10_000_000, 20_000_000, 10, 0.05),
    (20_000_000, 50_000_000, 5, 0.10),
    (50_000_000, 100_000_000, 4, 0.125),
    (100_000_000, 200_000_000, 3, 0.15),
    (200_000_000, 300_000_000, 2, 0.25),
    (300_000_000, 500_000_000, 1, 0.50),
]
# [GIST-2021-03-26]: the maintenance amounts of the same brackets.
PUBLISHED_CUM = [0, 50, 1_300, 16_300, 266_300, 1_266_300, 2_516_300, 5_016_300,
                 25_016_300, 100_016_300]

# [FAQ-USDM] cross-margin example (one-way mode).
WB = 1_535_443.01
BTC_SIZE, BTC_EP, BTC_MARK = 109.488, 32_481.98, 31_967.27
ETH_SIZE, ETH_EP, ETH_MARK = 3_683.979, 1_456.84, 1_335.18


@pytest.fixture(scope="module")
def btc() -> BracketTable:
    return binance_btcusdt_2021()


def eth_2021() -> BracketTable:
    """ETHUSDT brackets of 2021 as listed in gist crackcomm/e29582030d9eeac6c6124a7503cd0ac2
    ("Binance liquidation calculator", x100_lookup_table). That source gives caps, MMR and
    maintenance amounts only; max leverage 1x is a placeholder that passes validation and does
    not enter the maintenance margin, the only thing the oracle checks."""
    caps = [10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
            20_000_000, 5_000_000_000]
    mmr = [0.005, 0.0065, 0.01, 0.02, 0.05, 0.10, 0.125, 0.15, 0.25]
    cum = [0, 15, 365, 5_365, 35_365, 135_365, 260_365, 510_365, 2_510_365]
    return BracketTable([0, *caps[:-1]], caps, [1] * len(caps), mmr, maintenance_amount=cum,
                        name="ETHUSDT")


# --------------------------------------------------------------------- the shipped table
def test_shipped_table_is_the_announced_one(btc):
    """Oracle [ANN-2021-03-18]: brackets, leverage and MMR as announced; IMR = 1/leverage."""
    floor, cap, lev, mmr = (np.array(c, dtype=float) for c in zip(*ANNOUNCED, strict=True))
    np.testing.assert_array_equal(btc.notional_floor, floor)
    np.testing.assert_array_equal(btc.notional_cap, cap)
    np.testing.assert_array_equal(btc.max_leverage, lev)
    np.testing.assert_array_equal(btc.maintenance_margin_rate, mmr)
    np.testing.assert_allclose(btc.initial_margin_rate, 1.0 / lev)
    assert not btc.inverse


def test_cum_ladder_matches_published_maintenance_amounts(btc):
    """Oracle [GIST-2021-03-26]: the ladder cum_n = floor_n (MMR_n - MMR_n-1) + cum_n-1
    reproduces the published amounts exactly, and so does the file's own column."""
    floor = [row[0] for row in ANNOUNCED]
    mmr = [row[3] for row in ANNOUNCED]
    np.testing.assert_allclose(maintenance_amounts(floor, mmr), PUBLISHED_CUM, rtol=0, atol=1e-6)
    np.testing.assert_allclose(btc.maintenance_amount, PUBLISHED_CUM, rtol=0, atol=1e-6)
    with DATA.open() as fh:
        file_cum = [float(r["maintenance_amount"]) for r in csv.DictReader(fh)]
    assert file_cum == PUBLISHED_CUM


def test_faq_usdm_rate_and_amount_lookups(btc):
    """Oracle [FAQ-USDM]: "if the position size of a USDT-margined BTCUSDT contract is
    264,000 USDT, then the maintenance margin rate would be 1%"; "... 500,000 USDT, then the
    maintenance amount would be 1,300 USDT" = 250,000 * (1% - 0.5%) + 50."""
    assert btc.maintenance_margin_rate[btc.bracket_index(264_000.0)] == 0.01
    assert btc.maintenance_amount[btc.bracket_index(500_000.0)] == 1_300.0
    assert maintenance_amounts([0, 50_000, 250_000], [0.004, 0.005, 0.01])[2] == 1_300.0


def test_faq_usdm_maintenance_margins(btc):
    """Oracle [FAQ-USDM] example: maintenance margin of BTCUSDT = 71,200.81144
    (3,500,032.458 * 2.50% - 16,300) and of ETHUSDT = 356,512.508
    (4,918,775.081 * 10.00% - 135,365), published to those decimals."""
    mm_btc = btc.position_maintenance_margin(BTC_SIZE, BTC_MARK)
    assert abs(mm_btc - 71_200.81144) < 5e-6
    assert abs(position_notional(BTC_SIZE, BTC_MARK) - 3_500_032.458) < 5e-4
    mm_eth = eth_2021().position_maintenance_margin(ETH_SIZE, ETH_MARK)
    assert abs(mm_eth - 356_512.508) < 5e-4


def test_faq_usdm_cross_account_and_unrealized_pnl(btc):
    """Oracle [FAQ-USDM] example: the account's per-symbol maintenance margins (TMM1 of each
    contract is the other one's) and unrealised PnLs -56,354.57 (BTCUSDT) and -448,192.89
    (ETHUSDT), published to the cent."""
    acct = cross_maintenance_margin(["BTCUSDT", "ETHUSDT"], [BTC_SIZE, ETH_SIZE],
                                    {"BTCUSDT": BTC_MARK, "ETHUSDT": ETH_MARK},
                                    {"BTCUSDT": btc, "ETHUSDT": eth_2021()})
    assert abs(acct.by_symbol["BTCUSDT"] - 71_200.81144) < 5e-6
    assert abs(acct.by_symbol["ETHUSDT"] - 356_512.508) < 5e-4
    assert acct.total == pytest.approx(71_200.81144 + 356_512.508, abs=1e-3)
    assert round(unrealized_pnl(BTC_SIZE, BTC_EP, BTC_MARK), 2) == -56_354.57
    assert round(unrealized_pnl(ETH_SIZE, ETH_EP, ETH_MARK), 2) == -448_192.89


# --------------------------------------------------------- published liquidation prices
def test_faq_usdm_cross_liquidation_prices():
    """Oracle [FAQ-USDM] example, one-way & cross margin, published to the cent:
    LP(BTCUSDT) = 26,316.89 and LP(ETHUSDT) = 1,153.26, from WB = 1,535,443.01 and the
    published TMM1, UPNL1, MMR and cum of each contract."""
    lp_btc = liquidation_price("long", BTC_SIZE, BTC_EP, WB, 0.025, 16_300.0,
                               other_maintenance=356_512.508,
                               other_unrealized_pnl=-448_192.89)
    lp_eth = liquidation_price("long", ETH_SIZE, ETH_EP, WB, 0.10, 135_365.0,
                               other_maintenance=71_200.81144,
                               other_unrealized_pnl=-56_354.57)
    assert round(lp_btc, 2) == 26_316.89
    assert round(lp_eth, 2) == 1_153.26


def test_faq_usdm_cross_liquidation_with_tables_and_account(btc):
    """Oracle [FAQ-USDM] example again, end to end: the other contract's TMM1 and UPNL1
    computed by cross_maintenance_margin / unrealized_pnl from positions and mark prices, the
    bracket found by liquidation_price_with_table (BTCUSDT: 109.488 * 26,316.89 = 2.88M USDT,
    bracket 4, MMR 2.5 %, cum 16,300 as in the FAQ), giving 26,316.89 and 1,153.26."""
    eth = eth_2021()
    mm_eth = eth.position_maintenance_margin(ETH_SIZE, ETH_MARK)
    mm_btc = btc.position_maintenance_margin(BTC_SIZE, BTC_MARK)
    lp_btc, b = liquidation_price_with_table(
        btc, "long", BTC_SIZE, BTC_EP, WB, other_maintenance=mm_eth,
        other_unrealized_pnl=unrealized_pnl(ETH_SIZE, ETH_EP, ETH_MARK), return_bracket=True)
    lp_eth, b_eth = liquidation_price_with_table(
        eth, "long", ETH_SIZE, ETH_EP, WB, other_maintenance=mm_btc,
        other_unrealized_pnl=unrealized_pnl(BTC_SIZE, BTC_EP, BTC_MARK), return_bracket=True)
    assert round(lp_btc, 2) == 26_316.89 and b == 3
    assert round(lp_eth, 2) == 1_153.26 and eth.maintenance_margin_rate[b_eth] == 0.10


def test_isolated_linear_hand_derivation(btc):
    """Oracle: hand derivation from [FAQ-USDM]'s formula in isolated mode (TMM = UPNL = 0,
    WB = isolated wallet balance); Binance publishes no isolated figure.

    1) FAQ inputs for BTCUSDT, isolated: (1,535,443.01 + 16,300 - 109.488 * 32,481.98) /
       (109.488 * 0.025 - 109.488) = (-1,004,624.90) / (-106.7508) = 18,778.73
       (the figure freqtrade's test also derives).
    2) Long 1 BTC at 10,000 with 20x: WB = 10,000 / 20 = 500, bracket 1 (MMR 0.4 %, cum 0):
       LP = (500 - 10,000) / (0.004 - 1) = 9,500 / 0.996 = 9,538.1526; the table search keeps
       bracket 1 since 1 * 9,538 < 50,000. Short at 10,000 with 20x:
       LP = (500 + 10,000) / (0.004 + 1) = 10,500 / 1.004 = 10,458.1673.
    """
    lp = liquidation_price("long", BTC_SIZE, BTC_EP, WB, 0.025, 16_300.0)
    assert round(lp, 2) == 18_778.73
    assert liquidation_price("long", 1.0, 10_000.0, 500.0, 0.004, 0.0) == pytest.approx(
        9_500 / 0.996, rel=1e-12)
    assert liquidation_price_with_table(btc, "long", 1.0, 10_000.0, 500.0) == pytest.approx(
        9_538.1526, abs=5e-5)
    assert liquidation_price_with_table(btc, "short", 1.0, 10_000.0, 500.0) == pytest.approx(
        10_458.1673, abs=5e-5)


def test_bracket_substitution_at_liquidation_price(btc):
    """Oracle: hand derivation of [FAQ-USDM]'s rule "if your position (calculated at the
    liquidation price) and the current position ... are of different levels, ... substitute
    the maintenance margin rate and amount of the position level to recalculate".
    Isolated short 20 BTC at 10,000 (notional 200,000, bracket 2), WB = 60,000.
    Bracket 2 (0.5 %, cum 50): LP = (60,000 + 50 + 200,000) / (20 * 1.005) = 12,937.81, but
    20 * 12,937.81 = 258,756 > 250,000 is in bracket 3. Bracket 3 (1 %, cum 1,300):
    LP = (60,000 + 1,300 + 200,000) / (20 * 1.01) = 261,300 / 20.2 = 12,935.64, notional
    258,713 in bracket 3: consistent."""
    fixed = liquidation_price("short", 20.0, 10_000.0, 60_000.0, 0.005, 50.0)
    assert round(fixed, 2) == 12_937.81
    lp, b = liquidation_price_with_table(btc, "short", 20.0, 10_000.0, 60_000.0,
                                         return_bracket=True)
    assert b == 2
    assert lp == pytest.approx(261_300 / 20.2, rel=1e-12)
    assert round(lp, 2) == 12_935.64


def test_direct_construction_errors_name_argument_and_bracket():
    """Oracle: the boundary-validation rule for tables built in code."""
    with pytest.raises(ValueError, match=r"notional_floor\[1\] \(bracket 2\): gap"):
        BracketTable([0, 60], [50, 100], [10, 5], [0.01, 0.02])
    with pytest.raises(ValueError, match=r"maintenance_margin_rate\[0\] \(bracket 1\)"):
        BracketTable([0], [50], [10], [-0.01])


def test_coinm_calculator_liquidation_price():
    """Oracle [CALC-COINM]: WB 101 BTC, cross, long 100,000 BTCUSD contracts (100 USD each,
    USD 10,000,000) at 45,000: Binance's calculator shows 33,599.40 (tick 0.1). The bracket
    at that price (10,000,000 / 33,599.4 = 297.6 BTC) is the one [FAQ-COINM] quotes for a
    300 BTC position: MMR 12.5 %, maintenance amount 11.605 BTC. The forum poster's own
    evaluation of the same formula with the FAQ's older amount 11.81 BTC was published as
    33,578.859744834."""
    lp = liquidation_price("long", 100_000, 45_000.0, 101.0, 0.125, 11.605, inverse=True,
                           contract_size=100.0)
    assert round(lp, 1) == 33_599.4
    old = liquidation_price("long", 100_000, 45_000.0, 101.0, 0.125, 11.81, inverse=True,
                            contract_size=100.0)
    assert old == pytest.approx(33_578.859744834, abs=1e-8)


def test_coinm_maintenance_margin_example():
    """Oracle [FAQ-COINM]: "100 BTCUSD Perpetual contracts, latest Mark Price 25,000: notional
    100 * 100 / 25,000 = 0.4 BTC, margin level 1: Maintenance Margin = 0.4 * 0.4% - 0 =
    0.0016 BTC". Level 1 of BTCUSD_PERP as in Binance's API documentation example for
    GET /dapi/v1/leverageBracket: qtyFloor 0, qtyCap 50, initialLeverage 125, MMR 0.004,
    cum 0 (read with Binance's own column names)."""
    table = BracketTable.from_frame(
        pd.DataFrame({"bracket": [1], "initialLeverage": [125], "qtyCap": [50],
                      "qtyFloor": [0], "maintMarginRatio": [0.004], "cum": [0.0]}),
        inverse=True, name="BTCUSD_PERP")
    assert position_notional(100, 25_000.0, inverse=True, contract_size=100) == 0.4
    assert table.position_maintenance_margin(100, 25_000.0, contract_size=100) == \
        pytest.approx(0.0016, abs=1e-15)


def test_initial_margin_leverage_capped_by_bracket(btc):
    """Oracle: hand derivation from [ANN-2021-03-18]. 500,000 USDT is in bracket 3 (max 50x):
    at 100x requested the leverage is capped, IM = 500,000 / 50 = 10,000; at 20x,
    IM = 25,000; with no leverage given the maximum is used (10,000). 40,000 USDT at 125x:
    IM = 320."""
    assert btc.initial_margin(500_000.0, 100) == 10_000.0
    assert btc.initial_margin(500_000.0, 20) == 25_000.0
    assert btc.initial_margin(500_000.0) == 10_000.0
    np.testing.assert_allclose(btc.initial_margin([40_000.0, 500_000.0]), [320.0, 10_000.0])
    assert btc.max_leverage_at(1_000_000.0) == 50.0  # cap inclusive: 0 < N <= 1,000,000


def test_one_way_netting_in_cross_account(btc):
    """Oracle: hand derivation. One-way mode nets a symbol: +2 and -0.5 BTC at 40,000 is a
    1.5 BTC long, notional 60,000 in bracket 2: MM = 60,000 * 0.5 % - 50 = 250."""
    acct = cross_maintenance_margin(["BTCUSDT", "BTCUSDT"], [2.0, -0.5], {"BTCUSDT": 40_000.0},
                                    {"BTCUSDT": btc})
    assert acct.net_size == {"BTCUSDT": 1.5}
    assert acct.total == pytest.approx(250.0, abs=1e-9)
    assert list(acct.to_frame().columns) == ["net_size", "notional", "maintenance_margin"]


# ---------------------------------------------------------------------------- laws
@st.composite
def tables(draw, inverse: bool = False) -> BracketTable:
    n = draw(st.integers(1, 6))
    widths = draw(st.lists(st.floats(1.0, 1e6), min_size=n, max_size=n))
    edges = np.concatenate([[0.0], np.cumsum(widths)])
    steps = draw(st.lists(st.floats(1e-4, 0.1), min_size=n, max_size=n))
    mmr = np.cumsum(steps)
    mmr = mmr / max(1.0, mmr[-1] / 0.5)  # keep every rate <= 0.5
    assume(np.all(np.diff(mmr) > 1e-9))
    lev = np.maximum(1.0, np.floor(1.0 / mmr))
    return BracketTable(edges[:-1], edges[1:], lev, mmr, inverse=inverse)


@given(tables(), st.floats(0.0, 1.0))
def test_law_maintenance_margin_continuous_at_boundaries(table, frac):
    """Law: the cum ladder makes MM continuous at every cap (and it is the upper envelope
    max_k (N MMR_k - cum_k) of the bracket lines)."""
    caps = table.notional_cap[:-1]
    below = table.maintenance_margin(caps)
    above = table.maintenance_margin(caps * (1 + 1e-12))
    np.testing.assert_allclose(above, below, rtol=1e-9, atol=1e-9 * table.max_notional)
    n = frac * table.max_notional
    lines = n * table.maintenance_margin_rate - table.maintenance_amount
    assert table.maintenance_margin(n) == pytest.approx(lines.max(), rel=1e-12,
                                                        abs=1e-12 * table.max_notional)


@given(tables(), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20))
def test_law_maintenance_margin_increasing(table, fracs):
    """Law: MM is non-decreasing in the notional (and non-negative)."""
    n = np.sort(np.array(fracs)) * table.max_notional
    mm = table.maintenance_margin(n)
    assert np.all(np.diff(mm) >= -1e-9 * table.max_notional)
    assert np.all(mm >= -1e-9 * table.max_notional)


def _equity_minus_mm(table, s, q, ep, wb, tmm, upnl, price, cs):
    """Margin balance minus maintenance margin at ``price`` (the defining equation)."""
    signed = s * q
    own_upnl = unrealized_pnl(signed, ep, price, inverse=table.inverse, contract_size=cs)
    n = position_notional(q, price, inverse=table.inverse, contract_size=cs)
    return wb - tmm + upnl + own_upnl - table.maintenance_margin(n, extend_last=True)


positions = st.tuples(
    st.sampled_from(["long", "short"]),
    st.floats(0.01, 100.0),          # size (base units, or contracts / 100 for inverse)
    st.floats(100.0, 100_000.0),     # entry price
    st.floats(0.02, 2.0),            # wallet balance as a fraction of entry notional
    st.floats(0.0, 0.05),            # other maintenance, fraction of entry notional
    st.floats(-0.05, 0.05),          # other unrealised PnL, fraction of entry notional
)


def _scaled(table, pos):
    side, q, ep, wb_f, tmm_f, upnl_f = pos
    cs = 100.0 if table.inverse else 1.0
    if table.inverse:
        q = q * 100.0
    n0 = position_notional(q, ep, inverse=table.inverse, contract_size=cs)
    return side, q, ep, wb_f * n0, tmm_f * n0, upnl_f * n0, cs, n0


@settings(max_examples=200)
@given(st.booleans().flatmap(tables), positions)
def test_law_liquidation_price_solves_margin_equation(table, pos):
    """Law: at the liquidation price margin balance equals maintenance margin (plug LP back,
    with the MM of the notional at LP); the bracket reported contains that notional and the
    fixed-bracket formula with its (MMR, cum) gives the same price."""
    side, q, ep, wb, tmm, upnl, cs, n0 = _scaled(table, pos)
    lp, b = liquidation_price_with_table(table, side, q, ep, wb, other_maintenance=tmm,
                                         other_unrealized_pnl=upnl, contract_size=cs,
                                         return_bracket=True)
    assume(0.0 < lp < math.inf)
    s = 1.0 if side == "long" else -1.0
    gap = _equity_minus_mm(table, s, q, ep, wb, tmm, upnl, lp, cs)
    assert abs(gap) <= 1e-7 * (n0 + abs(wb) + tmm + abs(upnl))
    n_lp = position_notional(q, lp, inverse=table.inverse, contract_size=cs)
    assert table.notional_floor[b] * (1 - 1e-9) <= n_lp
    assert n_lp <= table.notional_cap[b] * (1 + 1e-9) or b == table.n_brackets - 1
    again = liquidation_price(side, q, ep, wb, table.maintenance_margin_rate[b],
                              table.maintenance_amount[b], other_maintenance=tmm,
                              other_unrealized_pnl=upnl, inverse=table.inverse,
                              contract_size=cs)
    assert again == pytest.approx(lp, rel=1e-9)


@given(st.booleans().flatmap(tables), positions)
def test_law_long_lp_below_entry_below_short_lp(table, pos):
    """Law: isolated, wallet balance above the maintenance margin at entry => a long's LP is
    below the entry price and a short's above it; the bankruptcy price lies beyond."""
    _, q, ep, wb, _, _, cs, n0 = _scaled(table, pos)
    assume(n0 <= table.max_notional)
    assume(wb > table.maintenance_margin(n0) * (1 + 1e-9) + 1e-9 * n0)
    kw = dict(contract_size=cs)
    lp_long = liquidation_price_with_table(table, "long", q, ep, wb, **kw)
    lp_short = liquidation_price_with_table(table, "short", q, ep, wb, **kw)
    assert lp_long < ep < lp_short
    bp_long = bankruptcy_price("long", q, ep, wb, inverse=table.inverse, **kw)
    bp_short = bankruptcy_price("short", q, ep, wb, inverse=table.inverse, **kw)
    assert bp_long <= lp_long * (1 + 1e-12)
    assert bp_short >= lp_short * (1 - 1e-12)


@given(st.booleans().flatmap(tables), positions)
def test_law_bankruptcy_beyond_liquidation_in_cross(table, pos):
    """Law: with other maintenance >= 0 the bankruptcy price (zero margin balance) is at or
    beyond the liquidation price: BP <= LP for a long, BP >= LP for a short."""
    side, q, ep, wb, tmm, upnl, cs, _ = _scaled(table, pos)
    lp = liquidation_price_with_table(table, side, q, ep, wb, other_maintenance=tmm,
                                      other_unrealized_pnl=upnl, contract_size=cs)
    bp = bankruptcy_price(side, q, ep, wb, other_unrealized_pnl=upnl, inverse=table.inverse,
                          contract_size=cs)
    if side == "long":
        assert bp <= lp * (1 + 1e-12)
    else:
        assert bp >= lp * (1 - 1e-12)


@given(st.booleans().flatmap(tables), positions, st.floats(1e-3, 0.5))
def test_law_cross_profit_moves_long_liquidation_down(table, pos, gain):
    """Law: in cross margin, more unrealised profit on the other contracts lowers a long's
    liquidation price (strictly while it is positive and finite)."""
    _, q, ep, wb, tmm, upnl, cs, n0 = _scaled(table, pos)
    kw = dict(other_maintenance=tmm, contract_size=cs)
    base = liquidation_price_with_table(table, "long", q, ep, wb, other_unrealized_pnl=upnl,
                                        **kw)
    more = liquidation_price_with_table(table, "long", q, ep, wb,
                                        other_unrealized_pnl=upnl + gain * n0, **kw)
    if 0.0 < base < math.inf:
        assert more < base
    else:
        assert more <= base


@given(st.booleans().flatmap(tables), st.lists(positions, min_size=1, max_size=8))
def test_law_vectorised_equals_scalar(table, many):
    """Law: array arguments give the same prices as one call per position."""
    rows = [_scaled(table, p) for p in many]
    side = np.array([r[0] for r in rows], dtype=object)
    q, ep, wb, tmm, upnl = (np.array([r[i] for r in rows]) for i in range(1, 6))
    cs = rows[0][6]
    vec = liquidation_price_with_table(table, side, q, ep, wb, other_maintenance=tmm,
                                       other_unrealized_pnl=upnl, contract_size=cs)
    one = [liquidation_price_with_table(table, r[0], r[1], r[2], r[3], other_maintenance=r[4],
                                        other_unrealized_pnl=r[5], contract_size=cs)
           for r in rows]
    np.testing.assert_allclose(vec, one, rtol=1e-12)


# ------------------------------------------------------------------------- bad input
HEADER = "bracket,notional_floor,notional_cap,max_leverage,maintenance_margin_rate\n"


def _write(tmp_path: Path, body: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "rows, line, column, words",
    [
        # gap: bracket 2 starts at 60,000 but bracket 1 ends at 50,000 (file line 3)
        ("1,0,50000,125,0.004\n2,60000,250000,100,0.005\n", 3, "notional_floor", "gap"),
        # non-increasing floors
        ("1,0,50000,125,0.004\n2,50000,250000,100,0.005\n3,50000,300000,50,0.01\n", 4,
         "notional_floor", "increase"),
        # negative MMR
        ("1,0,50000,125,-0.004\n", 2, "maintenance_margin_rate", "[0, 1]"),
        # MMR above 1
        ("1,0,50000,1,1.5\n", 2, "maintenance_margin_rate", "[0, 1]"),
        # MMR not increasing
        ("1,0,50000,125,0.005\n2,50000,250000,100,0.005\n", 3, "maintenance_margin_rate",
         "increase"),
        # IMR (1/max leverage) below MMR: 1/125 = 0.008 < 0.01
        ("1,0,50000,125,0.01\n", 2, "max_leverage", "below the maintenance"),
        # max leverage below 1
        ("1,0,50000,0.5,0.004\n", 2, "max_leverage", ">= 1"),
        # overlap
        ("1,0,50000,125,0.004\n2,40000,250000,100,0.005\n", 3, "notional_floor", "overlap"),
        # not a number
        ("1,0,50000,125,abc\n", 2, "maintenance_margin_rate", "not a number"),
    ],
)
def test_bad_csv_names_file_row_column(tmp_path, rows, line, column, words):
    """Oracle: the validation rules of the brief; the message names file, row and column."""
    path = _write(tmp_path, HEADER + rows)
    with pytest.raises(ValueError) as err:
        BracketTable.from_csv(path)
    msg = str(err.value)
    assert str(path) in msg and f"row {line}" in msg and f"'{column}'" in msg
    assert words in msg


def test_bad_maintenance_amount_column(tmp_path):
    """Oracle [FAQ-USDM] ladder: a supplied amount that is not 250,000 * 0.5 % + 50 = 1,300
    for bracket 3 is rejected, naming file, row and column."""
    body = ("notional_floor,notional_cap,max_leverage,maintenance_margin_rate,cum\n"
            "0,50000,125,0.004,0\n50000,250000,100,0.005,50\n250000,1000000,50,0.01,1250\n")
    path = _write(tmp_path, body)
    with pytest.raises(ValueError, match=r"row 4, column 'cum'.*1300"):
        BracketTable.from_csv(path)


def test_bad_toml_and_frame_name_row_and_column(tmp_path):
    """Oracle: the validation rules; TOML errors name the [[bracket]] number and key, frame
    errors the index label."""
    toml = ('name = "X"\n[[bracket]]\nnotional_floor = 0\nnotional_cap = 5000\n'
            'max_leverage = 50\nmaintenance_margin_rate = 0.01\n'
            '[[bracket]]\nnotional_floor = 6000\nnotional_cap = 25000\n'
            'max_leverage = 20\nmaintenance_margin_rate = 0.025\n')
    path = _write(tmp_path, toml, "t.toml")
    with pytest.raises(ValueError) as err:
        BracketTable.from_toml(path)
    assert str(path) in str(err.value) and "row 2" in str(err.value)
    assert "'notional_floor'" in str(err.value) and "gap" in str(err.value)
    frame = pd.DataFrame({"notional_floor": [0.0], "notional_cap": [1e4], "max_leverage": [10],
                          "maintenance_margin_rate": [-0.01]}, index=["tier-A"])
    with pytest.raises(ValueError, match=r"DataFrame, row 'tier-A', column "
                                         r"'maintenance_margin_rate'"):
        BracketTable.from_frame(frame)
    with pytest.raises(ValueError, match=r"column 'notional_cap': missing"):
        BracketTable.from_frame({"notional_floor": [0], "max_leverage": [1],
                                 "maintenance_margin_rate": [0.1]})


def test_toml_reads_the_same_table(tmp_path, btc):
    """Oracle [ANN-2021-03-18]/[GIST-2021-03-26]: the shipped table written as TOML reads back
    identical."""
    parts = ['name = "BTCUSDT"\ninverse = false\n']
    for _, r in btc.to_frame().iterrows():
        parts.append("[[bracket]]\n" + "".join(f"{k} = {float(v)!r}\n" for k, v in r.items()
                                              if k != "initial_margin_rate"))
    t = BracketTable.from_toml(_write(tmp_path, "".join(parts), "b.toml"))
    pd.testing.assert_frame_equal(t.to_frame(), btc.to_frame())


def test_bad_arguments_are_named(btc):
    """Oracle: the boundary-validation rule: a bad argument names itself, its value and the
    allowed range."""
    with pytest.raises(ValueError, match=r"side must be 'long' or 'short', got 'buy'"):
        liquidation_price("buy", 1.0, 100.0, 10.0, 0.01, 0.0)
    with pytest.raises(ValueError, match=r"side must be 'long' or 'short'"):
        liquidation_price_with_table(btc, ["long", "LONG"], 1.0, 100.0, 10.0)
    with pytest.raises(ValueError, match=r"size must be .*> 0.*-1"):
        liquidation_price("long", -1.0, 100.0, 10.0, 0.01, 0.0)
    with pytest.raises(ValueError, match=r"mmr must be .*< 1"):
        liquidation_price("long", 1.0, 100.0, 10.0, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"notional must be .*<= 5e\+08"):
        btc.maintenance_margin(6e8)
    assert btc.maintenance_margin(6e8, extend_last=True) == 6e8 * 0.5 - 100_016_300
    with pytest.raises(ValueError, match=r"leverage must be .*>= 1"):
        btc.initial_margin(1_000.0, 0.5)
    with pytest.raises(TypeError, match=r"contract_size must be a real number"):
        liquidation_price("long", 1.0, 100.0, 10.0, 0.01, 0.0, contract_size="100")
