"""MarginEngine with grid and exchange methods, open orders and weighted scenario sets.

Oracles: the batch ``method.compute(book, market)`` (``SpanLike``, ``DeribitLike``,
``TieredMargin``), ``WithOrders(method).compute`` and ``MonteCarloMargin.compute`` on the same
book, market and scenario set, to 1e-12 relative; positive homogeneity of a grid margin of
linear contracts on one underlying (the linear re-mark is then exact).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marginlab.models import GBM, Book, MarketState, default_market, make_book
from marginlab.models.engine import MarginEngine
from marginlab.models.margin import (
    DeribitLike,
    MonteCarloMargin,
    SpanLike,
    TieredMargin,
    binance_btcusdt_2021,
)
from marginlab.models.orders import WithOrders

RTOL = 1e-12
NAN = float("nan")


def _close(a, b, scale=1.0):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.all(np.abs(a - b) <= RTOL * np.maximum(np.abs(b), scale)), np.max(np.abs(a - b))


def _with_trade(book: Book, account: str, inst: str, qty: float, price: float) -> Book:
    """The batch oracle's book: ``book`` plus one position row."""
    row = pd.DataFrame({"account_id": [account], "instrument_id": [inst], "quantity": [qty],
                        "entry_price": [price]})
    return Book(book.instruments, pd.concat([book.positions, row], ignore_index=True),
                book.collateral, orders=book.orders)


def _check_equal(eng: MarginEngine, res) -> None:
    f = eng.to_frame()
    assert list(f["account_id"]) == list(res.account_ids)
    _close(f["im"], res.im, scale=1e-6)
    _close(f["mm"], res.mm, scale=1e-6)
    _close(f["margin_balance"], res.margin_balance, scale=1e3)


@pytest.fixture(scope="module")
def synth():
    book = make_book(40, seed=21)
    snap = default_market()
    return book, MarketState(spot=snap["spot"], vol=snap["vol"])


GRID = [SpanLike(0.1, 0.3, intra_spread_charge=0.01, short_option_minimum=0.02),
        DeribitLike(), DeribitLike(coin_margin=False)]


@pytest.mark.parametrize("method", GRID, ids=["span", "deribit", "deribit-usd"])
def test_grid_engine_equals_batch_build_what_if_apply_full(synth, method):
    """Oracle: method.compute on the same book and market (build), on the book with the
    trade (what-if after, apply), and at a moved market (full re-margin), to 1e-12."""
    book, market = synth
    eng = MarginEngine(book, market, method)
    _check_equal(eng, method.compute(book, market))
    assert eng.scenarios is None
    acc = str(book.account_ids[5])
    inst = str(book.instruments["instrument_id"].iloc[0])
    price = float(market.spot[book.instruments["underlying"].iloc[0]]) * 0.99
    w = eng.what_if(acc, [(inst, 2.0, price)])
    j = list(book.account_ids).index(acc)
    base = method.compute(book, market)
    _close(w.before["im"], base.im[j], scale=1e-6)
    traded = _with_trade(book, acc, inst, 2.0, price)
    after = method.compute(traded, market)
    _close(w.after["im"], after.im[j], scale=1e-6)
    _close(w.after["mm"], after.mm[j], scale=1e-6)
    _close(w.after["margin_balance"], after.margin_balance[j], scale=1e3)
    _check_equal(eng, base)  # what-if changed nothing
    eng.apply([{"account_id": acc, "instrument_id": inst, "quantity": 2.0, "price": price}])
    _check_equal(eng, after)
    _check_equal(eng, method.compute(eng.book, market))
    moved = {u: 1.04 * v for u, v in market.spot.items() if u in book.underlyings}
    eng.update_market(moved, full=True)
    _check_equal(eng, method.compute(traded, eng.market))


def test_grid_linear_remark_exact_for_linear_one_underlying():
    """Oracle: SpanLike on linear perpetuals on one underlying is proportional to the price
    (positive homogeneity), so the linear re-mark equals the batch at the new price; and a
    ratio-band re-margin equals the batch exactly."""
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "b", "c"], "instrument_id": "BTC-PERP",
                        "quantity": [1.0, -2.0, 0.5], "entry_price": 100_000.0})
    col = pd.DataFrame({"account_id": ["a", "b", "c"], "asset": "USDT",
                        "amount": [50_000.0, 60_000.0, 9_000.0]})
    book = Book.from_frames(inst, pos, col)
    span = SpanLike(0.1, 0.3)
    m0 = MarketState(spot={"BTC": 100_000.0})
    eng = MarginEngine(book, m0, span)
    upd = eng.update_market({"BTC": 103_000.0})
    assert not upd.full and upd.n_exact == 0
    _check_equal(eng, span.compute(book, eng.market))
    assert not eng.margin("a")["exact"]


def test_tiered_engine_equals_batch():
    """Oracle: TieredMargin (Binance BTCUSDT brackets, cross) on the same book, before and
    after a what-if and an apply that crosses a bracket, to 1e-12."""
    inst = pd.DataFrame({"instrument_id": ["BTCUSDT"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "b"], "instrument_id": "BTCUSDT",
                        "quantity": [1.0, -3.0], "entry_price": [40_000.0, 41_000.0]})
    col = pd.DataFrame({"account_id": ["a", "b"], "asset": "USDT", "amount": [5e4, 1e4]})
    book = Book.from_frames(inst, pos, col)
    market = MarketState(spot={"BTC": 42_000.0})
    tm = TieredMargin({"BTC": binance_btcusdt_2021()}, leverage=20)
    eng = MarginEngine(book, market, tm)
    _check_equal(eng, tm.compute(book, market))
    w = eng.what_if("a", {"BTCUSDT": 10.0})
    after = tm.compute(_with_trade(book, "a", "BTCUSDT", 10.0, 42_000.0), market)
    _close(w.after["im"], after.im[0])
    assert np.isnan(w.es_contribution).all()  # no Euler contribution for a bracket method
    eng.apply([{"account_id": "a", "instrument_id": "BTCUSDT", "quantity": 10.0}])
    _check_equal(eng, after)


def test_method_refusal_leaves_engine_unchanged():
    """Contract: a trade the method refuses (TieredMargin: a position beyond the last bracket
    raises) changes nothing: the frame, the book and later batch equality (oracle:
    TieredMargin.compute on the unchanged book) are as before."""
    inst = pd.DataFrame({"instrument_id": ["BTCUSDT"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "b"], "instrument_id": "BTCUSDT",
                        "quantity": [1.0, -3.0], "entry_price": [40_000.0, 41_000.0]})
    col = pd.DataFrame({"account_id": ["a", "b"], "asset": "USDT", "amount": [5e4, 1e4]})
    book = Book.from_frames(inst, pos, col)
    market = MarketState(spot={"BTC": 42_000.0})
    tm = TieredMargin({"BTC": binance_btcusdt_2021()})
    with pytest.raises(ValueError):
        tm.compute(_with_trade(book, "z", "BTCUSDT", 1e6, 42_000.0), market)
    eng = MarginEngine(book, market, tm)
    before = eng.to_frame()
    for bad in ([{"account_id": "a", "instrument_id": "BTCUSDT", "quantity": 1e6}],
                [{"account_id": "z", "instrument_id": "BTCUSDT", "quantity": 1e6}]):
        with pytest.raises(ValueError):
            eng.apply(bad)
        pd.testing.assert_frame_equal(eng.to_frame(), before)
        assert len(eng.book.positions) == 2
    with pytest.raises(ValueError):
        eng.place_order("a", "BTCUSDT", "buy", 1e6)
    assert len(eng.orders) == 0
    pd.testing.assert_frame_equal(eng.to_frame(), before)
    eng.apply([{"account_id": "b", "instrument_id": "BTCUSDT", "quantity": 1.0}])
    _check_equal(eng, tm.compute(_with_trade(book, "b", "BTCUSDT", 1.0, 42_000.0), market))


# ------------------------------------------------------------------ orders
def _order_book() -> tuple[Book, MarketState]:
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP", "ETH-PERP"],
                         "type": ["linear_perp", "linear_perp"], "underlying": ["BTC", "ETH"]})
    pos = pd.DataFrame({"account_id": ["a", "a", "b", "c"],
                        "instrument_id": ["BTC-PERP", "ETH-PERP", "BTC-PERP", "ETH-PERP"],
                        "quantity": [1.0, -10.0, -0.5, 20.0],
                        "entry_price": [100_000.0, 3_000.0, 101_000.0, 2_900.0]})
    col = pd.DataFrame({"account_id": ["a", "b", "c", "d"], "asset": "USDT",
                        "amount": [30_000.0, 20_000.0, 15_000.0, 5_000.0]})
    orders = pd.DataFrame({"account_id": ["a", "a", "b", "d", "e"],
                           "instrument_id": ["BTC-PERP", "ETH-PERP", "BTC-PERP", "ETH-PERP",
                                             "BTC-PERP"],
                           "side": ["buy", "sell", "buy", "sell", "buy"],
                           "quantity": [0.5, 30.0, 2.0, 5.0, 0.1],
                           "price": [99_000.0, 3_050.0, 98_000.0, 3_100.0, 97_000.0]})
    book = Book.from_frames(inst, pos, col, orders=orders)
    return book, MarketState(spot={"BTC": 100_000.0, "ETH": 3_000.0}, vol={})


def _mc(n=2_000, **kw):
    corr = np.array([[1.0, 0.8], [0.8, 1.0]])
    return MonteCarloMargin(GBM(0.0, [0.6, 0.75], corr=corr), ("BTC", "ETH"),
                            n_scenarios=n, seed=9, **kw)


@pytest.mark.parametrize("kind", ["mc", "span"])
def test_orders_engine_equals_batch_with_orders(kind):
    """Oracle: WithOrders(method).compute on the same book with orders (riskier of all buys /
    all sells filling, Vega 0019): at build, after place_order, after cancel_order and in a
    what-if (before and after) on an account with orders; to 1e-12."""
    book, market = _order_book()
    method = _mc() if kind == "mc" else SpanLike(0.1, 0.3)
    eng = MarginEngine(book, market, method)
    batch = WithOrders(method).compute(book, market)
    _check_equal(eng, batch)
    assert batch.details.get("im_buys") is not None
    assert "e" in set(eng.account_ids)  # an account with orders only
    if kind == "mc":
        f = eng.to_frame()
        for k in ("es", "var", "es_se"):
            _close(f[k], batch.details[k], scale=1e-6)
    # what-if on an account with orders
    w = eng.what_if("a", [("ETH-PERP", 5.0, 3_000.0)])
    after = WithOrders(method).compute(_with_trade(book, "a", "ETH-PERP", 5.0, 3_000.0),
                                       market)
    _close(w.before["im"], batch.im[0], scale=1e-6)
    _close(w.after["im"], after.im[0], scale=1e-6)
    # place and cancel
    oid, _ = eng.place_order("c", "BTC-PERP", "SELL", 0.3, 102_000.0)
    assert len(eng.orders) == 6 and eng.book.orders is not None
    _check_equal(eng, WithOrders(method).compute(eng.book, market))
    first = int(eng.orders["order_id"].iloc[1])  # a's ETH sell
    eng.cancel_order(first)
    _check_equal(eng, WithOrders(method).compute(eng.book, market))
    eng.cancel_order(oid)
    assert len(eng.orders) == 4
    _check_equal(eng, WithOrders(method).compute(eng.book, market))
    with pytest.raises(KeyError, match="order_id"):
        eng.cancel_order(oid)
    with pytest.raises(ValueError, match="side"):
        eng.place_order("a", "BTC-PERP", "hold", 1.0)
    with pytest.raises(ValueError, match="quantity"):
        eng.place_order("a", "BTC-PERP", "buy", -1.0)


def test_orders_apply_and_what_if_agree_with_rebuilt_engine():
    """Oracle: a rebuilt engine on the book after the trades (law: what-if then apply equals
    a rebuild), with orders resting."""
    book, market = _order_book()
    mc = _mc()
    eng = MarginEngine(book, market, mc)
    w = eng.what_if("b", {"ETH-PERP": -4.0})
    eng.apply([{"account_id": "b", "instrument_id": "ETH-PERP", "quantity": -4.0}])
    _close(eng.margin("b")["im"], w.after["im"], scale=1e-6)
    fresh = MarginEngine(eng.book, market, mc)
    _close(fresh.to_frame()["im"], eng.to_frame()["im"], scale=1e-6)


# ------------------------------------------------------------------ weighted sets
@pytest.mark.parametrize("sampling", ["mixture", "qmc"])
def test_weighted_scenario_sets_equal_batch(sampling):
    """Oracle: MonteCarloMargin.compute on the same weighted (defensive mixture) or randomised
    QMC scenario set: IM and the error bars at build, a what-if's after-trade ES, to 1e-12."""
    book, market = _order_book()
    book = Book(book.instruments, book.positions, book.collateral)  # no orders
    mc = _mc(n=2_048, sampling=sampling)
    scen = mc.scenarios(market)
    assert scen.weights is not None or scen.randomizations > 1
    eng = MarginEngine(book, market, mc)
    res = mc.compute(book, market, scenarios=scen)
    _check_equal(eng, res)
    f = eng.to_frame()
    for k in ("es", "es_se", "es_lo", "var", "var_lo", "var_hi"):
        _close(f[k], res.details[k], scale=1e-6)
    w = eng.what_if("c", {"BTC-PERP": 0.2})
    after = mc.compute(_with_trade(book, "c", "BTC-PERP", 0.2, 100_000.0), market,
                       scenarios=scen)
    j = list(res.account_ids).index("c")
    _close(w.after["es"], after.details["es"][j], scale=1e-6)
    _close(w.after["es_se"], after.details["es_se"][j], scale=1e-6)


def test_grid_events_and_deposit_follow_the_batch_margin():
    """Oracle: SpanLike.compute at the moved market and after a deposit: an account is in
    margin call exactly when the batch excess < 0, in liquidation when the batch margin ratio
    >= 1, and the engine's events are those status changes."""
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "b", "c"], "instrument_id": "BTC-PERP",
                        "quantity": [1.0, 1.0, 1.0], "entry_price": 100_000.0})
    col = pd.DataFrame({"account_id": ["a", "b", "c"], "asset": "USDT",
                        "amount": [60_000.0, 16_000.0, 14_000.0]})
    book = Book.from_frames(inst, pos, col)
    span = SpanLike(0.1, 0.3)  # IM = 1.1 x 10 % x S per BTC, MM = 10 % x S
    # at S = 94,000: b has 10,000 < IM 10,340 (call), c 8,000 < MM 9,400 (liquidation)

    def status(res):
        kind = np.where(res.margin_ratio >= 1.0, "liquidation",
                        np.where(res.excess < 0, "margin_call", "ok"))
        return dict(zip(res.account_ids, kind, strict=True))

    eng = MarginEngine(book, MarketState(spot={"BTC": 100_000.0}), span)
    assert {e["account_id"]: e["status"] for _, e in eng.to_frame().iterrows()} == status(
        span.compute(book, eng.market))
    upd = eng.update_market({"BTC": 94_000.0}, full=True)
    want = status(span.compute(book, eng.market))
    got = {r.account_id: r.status for r in eng.to_frame().itertuples()}
    assert got == want and want["b"] == "margin_call" and want["c"] == "liquidation"
    assert {(e.account_id, e.kind) for e in upd.events} == {("b", "margin_call"),
                                                            ("c", "liquidation")}
    evs = eng.deposit("c", "USDT", 10_000.0)
    col2 = col.assign(amount=[60_000.0, 16_000.0, 24_000.0])
    res = span.compute(Book.from_frames(inst, pos, col2), eng.market)
    _check_equal(eng, res)
    assert [(e.account_id, e.kind) for e in evs] == [("c", "restored")]


def test_replay_with_a_grid_method_equals_batch_each_tick():
    """Oracle: SpanLike.compute at each tick's price (a full re-margin every 2 ticks, the
    linear re-mark between: exact here, linear perpetuals on one underlying), summed over
    the book, against the replay's IM series."""
    from marginlab.models.engine import RemarginPolicy, replay, synthetic_history

    inst = pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "b"], "instrument_id": "BTC-PERP",
                        "quantity": [1.0, -2.0], "entry_price": 100_000.0})
    col = pd.DataFrame({"account_id": ["a", "b"], "asset": "USDT", "amount": [1e6, 1e6]})
    book = Book.from_frames(inst, pos, col)
    hist = synthetic_history(6, seed=2)
    span = SpanLike(0.1, 0.3)
    eng = MarginEngine(book, MarketState(spot={"BTC": float(hist["BTC"].iloc[0])}), span,
                       policy=RemarginPolicy(every_ticks=2))
    res = replay(eng, hist)
    want = [span.compute(book, MarketState(spot={"BTC": float(p)})).im.sum()
            for p in hist["BTC"]]
    _close(res.series["im"].to_numpy(), want)
    assert res.series["full"].any() and not res.series["full"].all()
