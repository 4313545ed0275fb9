"""MarginEngine: equal to the batch path, what-if == apply == rebuilt engine, events exactly
where the batch margin crosses its thresholds, validation that leaves nothing half-applied.

Oracles: the batch functions ``portfolio_risk`` / ``MonteCarloMargin.compute`` /
``incremental_margin`` / ``account_equity`` on the same book and scenarios (bit for bit where
the same kernel sums in the same order, else 1e-12 relative), positive homogeneity of VaR/ES
(the linear re-mark is exact for accounts of linear contracts on one underlying), and the
hand-built books' thresholds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marginlab.models import (
    GBM,
    Book,
    MarketState,
    ScenarioSet,
    account_equity,
    default_market,
    incremental_margin,
    make_book,
    portfolio_risk,
)
from marginlab.models.engine import MarginEngine, RemarginPolicy
from marginlab.models.margin import MonteCarloMargin

RTOL = 1e-12
RISK = ("var", "var_lo", "var_hi", "es", "es_se", "es_lo", "es_hi")


def _close(a, b, scale=1.0):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.all(np.abs(a - b) <= RTOL * np.maximum(np.abs(b), scale)), np.max(np.abs(a - b))


@pytest.fixture(scope="module")
def synth():
    book = make_book(60, seed=11)
    snap = default_market()
    market = MarketState(spot=snap["spot"], vol=snap["vol"])
    und = tuple(book.underlyings)
    corr = np.array([[1.0, 0.8, 0.7], [0.8, 1.0, 0.75], [0.7, 0.75, 1.0]])
    mc = MonteCarloMargin(GBM(0.0, [snap["vol"][u] for u in und], corr=corr), und,
                          n_scenarios=2_000, seed=5)
    return book, market, mc


def _hand_book(collateral=(60_000.0, 20_000.0, 16_000.0)):
    """Three accounts long BTC linear perpetuals with decreasing collateral (USDT)."""
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP", "ETH-PERP"],
                         "type": ["linear_perp", "linear_perp"], "underlying": ["BTC", "ETH"]})
    pos = pd.DataFrame({"account_id": ["a", "b", "c"],
                        "instrument_id": ["BTC-PERP", "BTC-PERP", "BTC-PERP"],
                        "quantity": [1.0, 1.0, 1.0],
                        "entry_price": [100_000.0, 100_000.0, 100_000.0]})
    col = pd.DataFrame({"account_id": ["a", "b", "c"], "asset": "USDT",
                        "amount": list(collateral)})
    return Book.from_frames(inst, pos, col)


def _hand_scenarios(n=1_000, seed=3):
    rng = np.random.default_rng(seed)
    s0 = np.array([100_000.0, 3_000.0])
    p = s0 * np.exp(0.05 * rng.standard_normal((n, 2)))
    return ScenarioSet(("BTC", "ETH"), p, np.ones_like(p), 2 / 365)


HAND_MARKET = MarketState(spot={"BTC": 100_000.0, "ETH": 3_000.0})


def test_engine_equals_batch_method(synth):
    """Oracle: MonteCarloMargin.compute on the same book and market (same seed, same
    scenarios): risk numbers, IM and MM bit for bit; margin balance to 1e-12."""
    book, market, mc = synth
    eng = MarginEngine(book, market, mc)
    res = mc.compute(book, market)
    f = eng.to_frame()
    assert list(f["account_id"]) == list(res.account_ids)
    assert np.array_equal(f["im"], res.im) and np.array_equal(f["mm"], res.mm)
    for k in RISK:
        assert np.array_equal(f[k], res.details[k]), k
    _close(f["margin_balance"], res.margin_balance, scale=1e3)
    assert eng._fast is not None  # the fast path reproduced account_risk at build


def test_allocation_equals_portfolio_risk(synth):
    """Oracle: portfolio_risk's Euler allocation of ES to every holding, bit for bit."""
    book, market, mc = synth
    eng = MarginEngine(book, market, mc)
    risk = portfolio_risk(book, market, eng.scenarios, levels=(0.99,))
    for j in (0, 7, 31):
        acc = book.account_ids[j]
        got = eng.allocation(acc)["es_contribution"].to_numpy()
        want = risk.alloc_es[0][risk.holding_account == j]
        assert np.array_equal(got, want)


def _unheld(book, j):
    held = set(book.positions.loc[book.positions["account_id"] == book.account_ids[j],
                                  "instrument_id"])
    inst = book.instruments
    ok = inst[~inst["instrument_id"].isin(held) & (inst["type"] != "inverse_option")]
    return str(ok["instrument_id"].iloc[0])


def test_what_if_matches_batch_before_and_after(synth):
    """Oracle: before == portfolio_risk on the book (bit for bit); after == portfolio_risk on
    the book with the trade added (1e-12), the trade's ES contribution == the batch Euler
    allocation of the new holding, the IM change == incremental_margin."""
    book, market, mc = synth
    eng = MarginEngine(book, market, mc)
    j = 9
    acc = str(book.account_ids[j])
    inst = _unheld(book, j)
    w = eng.what_if(acc, [(inst, 3.0)])
    base = portfolio_risk(book, market, eng.scenarios, levels=(0.99,))
    for k in RISK:
        assert w.before[k] == getattr(base, k)[0, j], k
    pos = pd.concat([book.positions, pd.DataFrame({
        "account_id": [acc], "instrument_id": [inst], "quantity": [3.0],
        "entry_price": [w.trades[0][2]]})], ignore_index=True)
    after_book = Book(book.instruments, pos, book.collateral)  # normalised tables as they are
    after = portfolio_risk(after_book, market, eng.scenarios, levels=(0.99,))
    ja = int(np.flatnonzero(after_book.account_ids == acc)[0])
    scale = float(np.abs(after.es[0, ja]))
    for k in RISK:
        _close(w.after[k], getattr(after, k)[0, ja], scale=scale)
    names = np.asarray(after.row_names)[after.holding_row]
    sel = (after.holding_account == ja) & (names == inst)
    _close(w.es_contribution[0], after.alloc_es[0][sel][0], scale=scale)
    inc = incremental_margin(book, market, eng.scenarios, pd.DataFrame(
        {"account_id": [acc], "instrument_id": [inst], "quantity": [3.0]}))
    _close(w.after["es"] - w.before["es"], inc["change"].iloc[0], scale=scale)
    # the trade at its mark adds no P&L; the margin balance is the batch one
    eq = account_equity(after_book, market)["margin_balance"].to_numpy()[ja]
    _close(w.after["margin_balance"], eq, scale=1e3)


def test_what_if_changes_nothing_and_fallback_agrees(synth):
    """Laws: what-if leaves the engine's state untouched; the public ``account_risk`` path
    (used when the fast kernel call cannot be verified) gives the same numbers."""
    book, market, mc = synth
    eng = MarginEngine(book, market, mc)
    before = eng.to_frame()
    acc = str(book.account_ids[3])
    trades = {str(book.instruments["instrument_id"].iloc[0]): -2.0,
              str(book.instruments["instrument_id"].iloc[1]): 1.5}
    w1 = eng.what_if(acc, trades)
    pd.testing.assert_frame_equal(eng.to_frame(), before)
    eng._fast = None
    eng._cache.clear()
    w2 = eng.what_if(acc, trades)
    assert w1.before == w2.before and w1.after == w2.after
    assert np.array_equal(w1.es_contribution, w2.es_contribution)


def test_apply_equals_what_if_and_rebuilt_engine(synth):
    """Oracle: after apply, the account's margin equals the what-if's 'after' (1e-12) and the
    whole engine equals an engine rebuilt from its book (risk bit for bit)."""
    book, market, mc = synth
    eng = MarginEngine(book, market, mc)
    acc = str(book.account_ids[4])
    inst = _unheld(book, 4)
    w = eng.what_if(acc, {inst: -1.25})
    eng.apply(pd.DataFrame({"account_id": [acc, "new-account"], "instrument_id": [inst, inst],
                            "quantity": [-1.25, 2.0]}))
    m = eng.margin(acc)
    for k in ("im", "mm", "es", "var", "es_se"):
        _close(m[k], w.after[k], scale=abs(w.after["es"]))
    _close(m["margin_balance"], w.after["margin_balance"], scale=1e3)
    rebuilt = MarginEngine(eng.book, market, mc)
    f1 = eng.to_frame().set_index("account_id").sort_index()
    f2 = rebuilt.to_frame().set_index("account_id").sort_index()
    assert list(f1.index) == list(f2.index)
    for k in ("im", "mm", *RISK):
        assert np.array_equal(f1[k], f2[k]), k
    _close(f1["margin_balance"], f2["margin_balance"], scale=1e3)


def test_full_remargin_after_market_move_equals_batch(synth):
    """Oracle: MonteCarloMargin.compute at the new market (the method redraws its scenarios
    with the same seed at the new spots), after a forced full re-margin."""
    book, market, mc = synth
    eng = MarginEngine(book, market, mc)
    prices = {u: market.spot[u] * f for u, f in zip(book.underlyings, (0.93, 1.04, 0.88),
                                                     strict=False)}
    upd = eng.update_market(prices, {"BTC": 0.7}, full=True)
    assert upd.full
    new = MarketState(spot={**market.spot, **prices}, vol={**market.vol, "BTC": 0.7})
    res = mc.compute(book, new)
    f = eng.to_frame()
    assert np.array_equal(f["im"], res.im)
    for k in RISK:
        assert np.array_equal(f[k], res.details[k]), k
    _close(f["margin_balance"], res.margin_balance, scale=1e3)


def test_linear_remark_is_exact_for_linear_single_underlying():
    """Oracle: positive homogeneity of ES. With fixed scenarios rebased on the spot, an
    account of linear BTC contracts has ES proportional to the BTC price, so the per-tick
    linear re-mark equals the batch at the new market (rebased scenarios) to rounding, and the
    margin balance equals account_equity."""
    book = _hand_book()
    sc = _hand_scenarios()
    eng = MarginEngine(book, HAND_MARKET, scenarios=sc)
    upd = eng.update_market({"BTC": 91_000.0})
    assert not upd.full and eng.margin("a")["exact"] is False
    new = MarketState(spot={"BTC": 91_000.0, "ETH": 3_000.0})
    rebased = ScenarioSet(sc.underlyings, sc.prices * np.array([0.91, 1.0]), sc.vol_shock,
                          sc.horizon)
    risk = portfolio_risk(book, new, rebased, levels=(0.99,))
    f = eng.to_frame()
    _close(f["im"], np.maximum(risk.es[0], 0.0), scale=1.0)
    _close(f["margin_balance"], account_equity(book, new)["margin_balance"], scale=1e3)


def _batch_status(book, market, scenarios):
    res = MonteCarloMargin(GBM(0.0, [0.5, 0.6], corr=[[1, 0.5], [0.5, 1]]),
                           ["BTC", "ETH"]).compute(book, market, scenarios=scenarios)
    liq = res.margin_ratio >= 1.0
    call = res.excess < 0
    return np.where(liq, 2, np.where(call, 1, 0))


@pytest.mark.parametrize("every", [1, None])
def test_events_fire_exactly_when_batch_margin_crosses(every):
    """Oracle: the batch MarginResult at each tick's market on the scenarios rebased to it
    (excess < 0: margin call; margin_ratio >= 1: liquidation). Events are the transitions of
    that status, account by account, tick by tick, with full re-margin every tick or linear
    re-marks only (exact here: linear BTC contracts)."""
    book = _hand_book()
    sc = _hand_scenarios()
    mc = MonteCarloMargin(GBM(0.0, [0.5, 0.6], corr=[[1, 0.5], [0.5, 1]]), ["BTC", "ETH"])
    pol = RemarginPolicy(every_ticks=every) if every else RemarginPolicy()
    eng = MarginEngine(book, HAND_MARKET, mc, scenarios=sc, policy=pol)
    status = _batch_status(book, HAND_MARKET, sc)
    assert list(status) == [0, 0, 0]
    path = [99_000.0, 97_000.0, 94_000.0, 96_500.0, 92_000.0, 85_000.0, 80_000.0, 99_500.0]
    kinds = {0: "restored", 1: "margin_call", 2: "liquidation"}
    n_events = 0
    for t, px in enumerate(path, start=1):
        upd = eng.update_market({"BTC": px}, time=t * 3600.0)
        new = MarketState(spot={"BTC": px, "ETH": 3_000.0})
        rebased = ScenarioSet(sc.underlyings, sc.prices * np.array([px / 100_000.0, 1.0]),
                              sc.vol_shock, sc.horizon)
        want = _batch_status(book, new, rebased)
        expected = {(str(book.account_ids[i]), kinds[int(want[i])])
                    for i in np.flatnonzero(want != status)}
        got = {(e.account_id, e.kind) for e in upd.events}
        assert got == expected, (t, px)
        assert all(e.tick == t and e.time == t * 3600.0 for e in upd.events)
        n_events += len(got)
        status = want
    assert n_events >= 4  # the path crosses IM and MM both ways


def test_deposit_withdraw_and_refusals_leave_state_unchanged():
    """Oracles: account_equity of the rebuilt book after a deposit (1e-12); refused calls
    (bad account, asset, amount, over-withdrawal, withdrawal below IM, unknown instrument,
    non-finite quantity, bad market price) raise and leave the engine's frame unchanged."""
    book = _hand_book()
    eng = MarginEngine(book, HAND_MARKET, scenarios=_hand_scenarios())
    eng.deposit("c", "USDT", 1_000.0)
    _close(eng.to_frame()["margin_balance"],
           account_equity(eng.book, HAND_MARKET)["margin_balance"], scale=1e3)
    assert eng.margin("c")["margin_balance"] == pytest.approx(17_000.0)
    snap = eng.to_frame()
    bad = [
        lambda: eng.withdraw("c", "USDT", 17_001.0),
        lambda: eng.withdraw("c", "USDT", 4_999.0),  # leaves the account below IM (~12.1k)
        lambda: eng.withdraw("zz", "USDT", 1.0),
        lambda: eng.deposit("c", "DOGE", 1.0),
        lambda: eng.deposit("c", "USDT", -1.0),
        lambda: eng.deposit("c", "USDT", float("nan")),
        lambda: eng.what_if("c", {"NOPE": 1.0}),
        lambda: eng.what_if("zz", {"BTC-PERP": 1.0}),
        lambda: eng.apply([{"account_id": "a", "instrument_id": "BTC-PERP", "quantity": 1.0},
                           {"account_id": "b", "instrument_id": "BTC-PERP",
                            "quantity": float("inf")}]),
        lambda: eng.apply([{"account_id": "a", "instrument_id": "BTC-PERP", "quantity": 1.0,
                            "price": -5.0}]),
        lambda: eng.update_market({"BTC": -1.0}),
        lambda: eng.update_market({"BTC": "x"}),
    ]
    for call in bad:
        with pytest.raises((ValueError, KeyError, TypeError)):
            call()
        pd.testing.assert_frame_equal(eng.to_frame(), snap)
    assert eng.tick == 0
    eng.withdraw("c", "USDT", 500.0)
    assert eng.margin("c")["margin_balance"] == pytest.approx(16_500.0)


def test_ratio_band_remargins_accounts_in_the_band_exactly():
    """Oracle: portfolio_risk at the new market on the rebased scenarios for the accounts in
    the band (bit for bit), while the others keep their linear re-mark."""
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP", "ETH-PERP"],
                         "type": ["linear_perp", "linear_perp"], "underlying": ["BTC", "ETH"]})
    pos = pd.DataFrame({"account_id": ["a", "a", "b", "b"],
                        "instrument_id": ["BTC-PERP", "ETH-PERP", "BTC-PERP", "ETH-PERP"],
                        "quantity": [1.0, -20.0, 0.1, -2.0],
                        "entry_price": [100_000.0, 3_000.0, 100_000.0, 3_000.0]})
    col = pd.DataFrame({"account_id": ["a", "b"], "asset": "USDT", "amount": [9_000.0, 9e5]})
    book = Book.from_frames(inst, pos, col)
    sc = _hand_scenarios()
    eng = MarginEngine(book, HAND_MARKET, scenarios=sc, policy=RemarginPolicy(ratio_band=0.5))
    upd = eng.update_market({"BTC": 97_000.0, "ETH": 3_200.0})
    assert upd.n_exact == 1
    new = MarketState(spot={"BTC": 97_000.0, "ETH": 3_200.0})
    risk = portfolio_risk(book, new, eng.scenarios, levels=(0.99,))
    assert eng.margin("a")["es"] == risk.es[0, 0] and eng.margin("a")["exact"]
    assert not eng.margin("b")["exact"]


def test_constructor_validation(synth):
    """Bad arguments are refused, naming the argument."""
    book, market, mc = synth
    with pytest.raises(ValueError, match="scenarios"):
        MarginEngine(book, market)
    with pytest.raises(TypeError, match="book"):
        MarginEngine("book", market, mc)
    with pytest.raises(ValueError, match="every_ticks"):
        RemarginPolicy(every_ticks=0)
    with pytest.raises(ValueError, match="measure"):
        MarginEngine(_hand_book(), HAND_MARKET, scenarios=_hand_scenarios(), measure="cvar")


def test_full_remargin_keeps_the_vol_surfaces(synth):
    """Oracle: MonteCarloMargin.compute at the new spots on a market with the same implied-vol
    surfaces, after a forced full re-margin (a market update must not drop the surfaces)."""
    from marginlab.models.vol_surface import VolSurface

    book, market, mc = synth
    surfaces = {u: VolSurface.ssvi(market.vol[u], rho=-0.3, eta=1.0, term_slope=-0.1)
                for u in book.underlyings}
    base = MarketState(spot=market.spot, vol=market.vol, surfaces=surfaces)
    eng = MarginEngine(book, base, mc)
    prices = {u: market.spot[u] * 1.05 for u in book.underlyings}
    assert eng.update_market(prices, full=True).full
    res = mc.compute(book, MarketState(spot={**market.spot, **prices}, vol=market.vol,
                                       surfaces=surfaces))
    flat = mc.compute(book, MarketState(spot={**market.spot, **prices}, vol=market.vol))
    assert np.array_equal(eng.to_frame()["im"], res.im)
    assert not np.array_equal(res.im, flat.im)
