"""Open orders (:mod:`marginlab.models.orders`), Vega's linear calculator and the liquidity
add-on (:mod:`marginlab.models.margin.liquidity`).

Oracles, named per test: Vega's margin-calculator specification 0019-MCAL (example 1, printed
541.6, and example 2's riskiest long / short table); Coinbase International's
``RP x sqrt(CoH)`` form written out as a closed form; the order-book VWAP by hand; laws (an
account without orders keeps its margin, allocations sum to IM, every method supports
orders); and the validation contract (file, line, column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marginlab.models import Book, MarketState
from marginlab.models.book import BookError
from marginlab.models.margin.grid import DeribitLike, SpanLike
from marginlab.models.margin.liquidity import LiquidityAddOn, exit_price
from marginlab.models.margin.vega import VegaLinearMargin
from marginlab.models.orders import Orders, WithOrders, fill_orders

NAN = float("nan")


def make_book(positions, collateral=None) -> Book:
    inst = pd.DataFrame([("F", "linear_future", "ETH", 1.0, NAN, NAN, 0.5, None),
                         ("P", "linear_perp", "ETH", 1.0, NAN, NAN, NAN, None)],
                        columns=["instrument_id", "type", "underlying", "multiplier",
                                 "face_value", "strike", "expiry", "option_type"])
    pos = pd.DataFrame(positions, columns=["account_id", "instrument_id", "quantity",
                                           "entry_price"])
    col = None if collateral is None else pd.DataFrame(collateral,
                                                      columns=["account_id", "asset", "amount"])
    return Book.from_frames(inst, pos, col)


def orders_frame(rows):
    return pd.DataFrame(rows, columns=["account_id", "instrument_id", "side", "quantity",
                                       "price"])


# Vega 0019-MCAL example 1: order book, risk factors, last trade 144, Trader1 {10, +4, -8}
VEGA_BIDS = [(120.0, 1.0), (110.0, 4.0), (108.0, 7.0)]
VEGA_ASKS = [(188.0, 3.0), (240.0, 5.0), (258.0, 3.0)]  # best (lowest) first


def test_vega_worked_example_1():
    """Oracle: Vega 0019-MCAL example 1, as printed. riskiest long = 10 + 4 = 14, riskiest
    short = min(10 - 8, 0) = 0; exit price of the open 10 = (1x120 + 4x110 + 5x108)/10 = 110,
    slippage 144 - 110 = 34 per unit; maintenance = 10 x 34 + 10 x 0.1 x 144 + 4 x 0.1 x 144
    = 541.6; initial = 1.2 x 541.6 (search 1.1 x, release 1.3 x)."""
    assert exit_price(VEGA_BIDS, 10.0, 144.0) == pytest.approx(110.0, rel=1e-15)
    book = make_book([("trader1", "F", 10.0, 144.0)])
    market = MarketState(spot={"ETH": 144.0})
    orders = Orders.from_frame(orders_frame([("trader1", "F", "buy", 4.0, 150.0),
                                             ("trader1", "F", "sell", 8.0, 160.0)]), book)
    vega = VegaLinearMargin(risk_factor_long=0.1, risk_factor_short=0.11)
    method = LiquidityAddOn(WithOrders(vega, orders),
                            depth={"F": {"bids": VEGA_BIDS, "asks": VEGA_ASKS}},
                            im_factor=1.2, mm_factor=1.0)
    res = method.compute(book, market)
    assert res.mm[0] == pytest.approx(541.6, rel=1e-12)
    assert res.im[0] == pytest.approx(1.2 * 541.6, rel=1e-12)
    assert res.details["liquidity_addon"][0] == pytest.approx(340.0, rel=1e-12)
    assert res.details["im_buys"][0] == pytest.approx(1.2 * 14 * 0.1 * 144, rel=1e-12)
    assert res.details["im_sells"][0] == pytest.approx(1.2 * 2 * 0.1 * 144, rel=1e-12)
    assert res.driver[0] == "liquidity add-on"  # 1.2 x 340 > 1.2 x 201.6
    assert WithOrders(vega, orders).compute(book, market).driver[0] == (
        "buys fill: risk factors x value")
    alloc = res.allocation.groupby("account_id")["im_contribution"].sum()
    assert alloc["trader1"] == pytest.approx(res.im[0], rel=1e-12)


@pytest.mark.parametrize("open_, buys, sells, long_, short_", [
    (1.0, 1.0, 2.0, 2.0, -1.0), (-1.0, 2.0, 0.0, 1.0, -1.0), (1.0, 0.0, 2.0, 1.0, -1.0)])
def test_vega_example_2_riskiest_long_and_short(open_, buys, sells, long_, short_):
    """Oracle: Vega 0019-MCAL example 2 (riskiest long / short per case). With symmetric
    risk factor 0.1 the margin is 0.1 x S x max(riskiest long, |riskiest short|)."""
    book = make_book([("a", "P", open_, 100.0)])
    rows = []
    if buys:
        rows.append(("a", "P", "buy", buys, 100.0))
    if sells:
        rows.append(("a", "P", "sell", sells, 100.0))
    orders = Orders.from_frame(orders_frame(rows), book)
    res = WithOrders(VegaLinearMargin(0.1, 0.1, initial_factor=1.0), orders).compute(
        book, MarketState(spot={"ETH": 100.0}))
    assert res.mm[0] == pytest.approx(0.1 * 100.0 * max(long_, -short_), rel=1e-12)


def test_every_method_supports_orders_and_no_orders_changes_nothing():
    """Laws: an account without orders gets exactly the wrapped method's margin; an
    account whose orders only reduce its position keeps its margin; the margin is the larger
    of the two fills, for a grid method as for any other; order-only accounts appear."""
    book = make_book([("a", "P", 2.0, 3000.0), ("b", "P", -1.0, 3000.0),
                      ("c", "P", 3.0, 3000.0)])
    market = MarketState(spot={"ETH": 3000.0})
    orders = Orders.from_frame(orders_frame([
        ("b", "P", "sell", 2.0, 3100.0), ("b", "P", "buy", 0.5, 2900.0),
        ("c", "P", "sell", 1.0, 3050.0), ("new", "F", "buy", 1.0, 3000.0)]), book)
    for method in (SpanLike(0.1, 0.2), DeribitLike(), VegaLinearMargin(0.1, 0.1)):
        plain = method.compute(book, market)
        res = WithOrders(method, orders).compute(book, market)
        assert list(res.account_ids) == ["a", "b", "c", "new"]
        assert res.im[0] == plain.im[0] and res.mm[0] == plain.mm[0]
        assert res.im[2] == pytest.approx(plain.im[2], rel=1e-12)  # sell reduces the long
        short3 = method.compute(make_book([("b", "P", -3.0, 3000.0)]), market)
        assert res.im[1] == pytest.approx(short3.im[0], rel=1e-12)
        assert res.driver[1].startswith("sells fill: ")
        assert res.im[3] > 0.0
        sums = res.allocation.groupby("account_id")["im_contribution"].sum()
        np.testing.assert_allclose(sums.reindex(res.account_ids).to_numpy(), res.im,
                                   rtol=1e-9, atol=1e-9)


def test_fill_orders_books():
    """Hand arithmetic: filling adds signed order quantities at the limit price."""
    book = make_book([("a", "P", 2.0, 3000.0)])
    orders = Orders.from_frame(orders_frame([("a", "P", "BUY", 1.5, 2900.0),
                                             ("a", "P", " sell ", 4.0, 3100.0)]), book)
    assert list(orders.table["side"]) == ["buy", "sell"]
    np.testing.assert_array_equal(orders.signed(), [1.5, -4.0])
    assert fill_orders(book, orders, "buy").holdings.toarray()[0, 1] == 3.5
    assert fill_orders(book, orders, "sell").holdings.toarray()[0, 1] == -2.0
    assert fill_orders(book, orders, None).holdings.toarray()[0, 1] == 2.0


def test_orders_file_errors_name_file_line_and_column(tmp_path):
    """Validation contract: like positions, errors name the file, the line and the column."""
    book = make_book([("a", "P", 2.0, 3000.0)])
    good = tmp_path / "orders.csv"
    good.write_text("account_id,instrument_id,side,quantity,price\na,P,buy,1,3000\n")
    assert len(Orders.from_file(good, book)) == 1
    cases = [
        ("a,P,hold,1,3000", r"orders.csv, line 3, column 'side': side must be 'buy' or 'sell'"),
        ("a,P,buy,0,3000", r"orders.csv, line 3, column 'quantity'"),
        ("a,P,buy,-1,3000", r"orders.csv, line 3, column 'quantity'"),
        ("a,P,buy,1,-5", r"orders.csv, line 3, column 'price'"),
        ("a,X,buy,1,3000", r"orders.csv, line 3, column 'instrument_id': instrument 'X'"),
        (",P,buy,1,3000", r"orders.csv, line 3, column 'account_id'"),
    ]
    for line, pattern in cases:
        bad = tmp_path / "orders.csv"
        bad.write_text("account_id,instrument_id,side,quantity,price\na,P,buy,1,3000\n"
                       f"{line}\n")
        with pytest.raises(BookError, match=pattern):
            Orders.from_file(bad, book)
    with pytest.raises(BookError, match=r"orders: missing column\(s\) \['price'\]"):
        Orders.from_frame(pd.DataFrame({"account_id": ["a"], "instrument_id": ["P"],
                                        "side": ["buy"], "quantity": [1.0]}), book)


# ----------------------------------------------------------------------------- liquidity
def test_sqrt_adv_addon_closed_form():
    """Closed form (Coinbase International IM = max(BIM, RP sqrt(CoH)), CoH = size / ADTV):
    long 400 ETH at 3,000 (N = 1.2M USD), ADV 10,000 ETH, RP 0.5, threshold 0.05 (the BIM
    already charged by the base): add-on = N (0.5 sqrt(0.04) - 0.05) = 0.05 N = 60,000. The
    base Vega-linear at 0.05 gives 60,000, so the total is max(BIM, RP sqrt(CoH)) N = 0.1 N.
    A position 100 times smaller pays no add-on (RP sqrt(0.0004) = 0.01 < 0.05): exact 0."""
    book = make_book([("big", "P", 400.0, 3000.0), ("small", "P", -4.0, 3000.0)])
    market = MarketState(spot={"ETH": 3000.0})
    base = VegaLinearMargin(0.05, 0.05, initial_factor=1.0)
    m = LiquidityAddOn(base, adv={"P": 10_000.0}, risk_parameter=0.5, threshold=0.05,
                       mm_factor=2 / 3)
    res = m.compute(book, market)
    assert res.details["liquidity_addon"][0] == pytest.approx(60_000.0, rel=1e-12)
    assert res.im[0] == pytest.approx(0.1 * 1.2e6, rel=1e-12)
    assert res.details["liquidity_addon"][1] == 0.0
    assert res.im[1] == res.details["base_im"][1]
    assert res.mm[0] == pytest.approx(res.details["base_mm"][0] + 40_000.0, rel=1e-12)
    assert res.driver[0] == "risk factors x value"  # the add-on equals, not exceeds, base
    sums = res.allocation.groupby("account_id")["im_contribution"].sum()
    np.testing.assert_allclose(sums.reindex(res.account_ids).to_numpy(), res.im, rtol=1e-12)
    # size law: without threshold the add-on scales as size^1.5
    m0 = LiquidityAddOn(base, adv={"P": 10_000.0}, risk_parameter=0.5)
    a1 = m0.addon(book, market).set_index("account_id")["addon"]
    assert a1["big"] / a1["small"] == pytest.approx(100.0**1.5, rel=1e-12)
    assert "liquidity" in m0.name


def test_exit_cost_thin_and_empty_book():
    """Hand VWAP (Vega 0019-MCAL exit price rules): a thinner book exits at the VWAP of all
    of it; an empty side exits at the mark (no charge); a short buys the asks."""
    assert exit_price(VEGA_BIDS, 100.0, 144.0) == pytest.approx(
        (120 + 440 + 756) / 12.0, rel=1e-15)
    assert exit_price([], 5.0, 144.0) == 144.0
    book = make_book([("s", "P", -4.0, 144.0)])
    m = LiquidityAddOn(VegaLinearMargin(0.0, 0.0), depth={"P": {"asks": VEGA_ASKS}})
    res = m.compute(book, MarketState(spot={"ETH": 144.0}))
    assert res.im[0] == pytest.approx(4 * ((3 * 188 + 240) / 4 - 144), rel=1e-12)
    assert res.driver[0] == "liquidity add-on"


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(adv={"P": 0.0}), ValueError, r"adv\['P'\] must be .*> 0"),
    (dict(risk_parameter=-1.0), ValueError, r"risk_parameter must be .*>= 0"),
    (dict(im_factor=1.0, mm_factor=2.0), ValueError, r"mm_factor must be <= im_factor"),
    (dict(depth={"P": {"bid": []}}), ValueError, r"depth\['P'\] must be a mapping"),
    (dict(depth={"P": {"bids": [(100.0, -1.0)]}}), ValueError,
     r"depth\['P'\]\['bids'\]\[0\] volume must be"),
    (dict(method=object()), TypeError, r"method must be a MarginMethod"),
])
def test_addon_bad_parameters(kwargs, exc, pattern):
    """Error contract: parameters name themselves, their value and the allowed range."""
    kw = {"method": VegaLinearMargin(0.1, 0.1), **kwargs}
    with pytest.raises(exc, match=pattern):
        LiquidityAddOn(**kw)


def test_book_carries_an_orders_table(tmp_path):
    """Documented behaviour: Book.from_files / from_frames take an optional orders table,
    validated like positions (errors name file, line, column); subset and to_files keep it;
    WithOrders without its own orders uses the book's, and gives the same margin."""
    book = make_book([("a", "P", 2.0, 3000.0), ("b", "P", -1.0, 3000.0)])
    paths = book.to_files(tmp_path)
    assert "orders" not in paths
    orders_csv = tmp_path / "orders.csv"
    orders_csv.write_text("account_id,instrument_id,side,quantity,price\n"
                          "b,P,sell,2,3100\n")
    withb = Book.from_files(paths["instruments"], paths["positions"], paths["collateral"],
                            orders=orders_csv)
    assert list(withb.orders["side"]) == ["sell"]
    np.testing.assert_array_equal(withb.holdings.toarray(), book.holdings.toarray())
    market = MarketState(spot={"ETH": 3000.0})
    method = SpanLike(0.1, 0.2)
    explicit = WithOrders(method, Orders.from_file(orders_csv, book)).compute(book, market)
    implicit = WithOrders(method).compute(withb, market)
    np.testing.assert_array_equal(implicit.im, explicit.im)
    np.testing.assert_array_equal(WithOrders(method).compute(book, market).im,
                                  method.compute(book, market).im)
    assert len(withb.subset(np.array([0])).orders) == 0
    assert len(withb.subset(np.array([1])).orders) == 1
    assert "orders" in withb.to_files(tmp_path / "out")
    orders_csv.write_text("account_id,instrument_id,side,quantity,price\n"
                          "b,P,sell,2,3100\nb,P,short,1,3000\n")
    with pytest.raises(BookError, match=r"orders.csv, line 3, column 'side'"):
        Book.from_files(paths["instruments"], paths["positions"], paths["collateral"],
                        orders=orders_csv)
