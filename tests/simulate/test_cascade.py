"""Liquidation-cascade kernels (``marginlab.simulate.cascade``) against their oracles.

Oracles, per test (each test's docstring names its own):

* Closed forms worked by hand from the rules in the module notes: a single liquidation with
  linear impact (fill at half the impact, decay of the impact state), an ADL with the
  published ranking (BitMEX / Bybit / Binance: PnL% x effective leverage), a partial
  liquidation that restores the target ratio, a grace period.
* The definition of the fill price: the average impact over the order's slice of the book,
  integrated numerically with ``scipy.integrate.quad``.
* The slow reference (QuantEcon's practice): the general path re-checks every account in
  every round; on books the fast path accepts, numbered in :func:`trigger_order`, the two
  give identical results.
* Laws: the bookkeeping identity on every path; the trigger set of each account is
  ``P < lo or P > hi``; impact only adds sells to an all-long book, so more impact means
  weakly lower marks and more liquidations on every path; a larger insurance fund means
  fewer ADL events; with an empty fund ADL covers each deficit exactly; thread count does not
  change a bit; top-ups are Bernoulli draws (binomial standard error, 4 SE).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy import integrate

from marginlab.models import GBM
from marginlab.simulate import cascade as C
from marginlab.simulate import simulate_paths

N_SE = 4.0
NO_IMPACT = C.ImpactParams(np.inf, 0.0, 0.0, 1.0)
FLAT_1PCT = C.MarginTables(np.array([[0.01]]), np.array([[0.0]]), np.array([1]))


def _accounts(*rows: dict) -> C.SingleAccounts:
    """One-position accounts from dicts (defaults: linear long of 1 unit, no coin)."""
    base = dict(asset=0, inverse=0, q=1.0, entry=100.0, face=1.0, table=0, usd=10.0,
                w_usd=1.0, coin=0.0, w_coin=1.0)
    cols = {k: [] for k in base}
    for r in rows:
        for k, v in {**base, **r}.items():
            cols[k].append(v)
    ints = {"asset", "inverse", "table"}
    return C.SingleAccounts(**{k: np.array(v, dtype=np.int64 if k in ints else np.float64)
                               for k, v in cols.items()})


def _cross(acc: C.SingleAccounts, tables: C.MarginTables, liq_fraction: float, n_a: int):
    """The same accounts as CrossAccounts, numbered in the fast path's order."""
    perm = C.trigger_order(acc, tables, liq_fraction)
    n = perm.size
    a = acc.asset[perm]
    bal = np.zeros((n, n_a))
    w_bal = np.ones((n, n_a))
    bal[np.arange(n), a] = acc.coin[perm]
    w_bal[np.arange(n), a] = acc.w_coin[perm]
    cross = C.CrossAccounts(np.arange(n + 1), a, acc.inverse[perm], acc.q[perm],
                            acc.entry[perm], acc.face[perm], acc.table[perm], acc.usd[perm],
                            acc.w_usd[perm], bal, w_bal)
    return cross, perm


def _residual(out: C.CascadeArrays, fund0: float) -> np.ndarray:
    p = out.path
    return (p[:, C.P_WEALTH_CHANGE] + (p[:, C.P_FUND_FINAL] - fund0) - p[:, C.P_MARKET_PNL]
            - p[:, C.P_EXCHANGE_PAID] - p[:, C.P_DEPOSITS])


def _ladder(floor, mmr):
    cum = np.zeros(len(floor))
    for k in range(1, len(floor)):
        cum[k] = floor[k] * (mmr[k] - mmr[k - 1]) + cum[k - 1]
    return cum


def _mixed_book(n: int, seed: int, s0: np.ndarray, liq_fraction: float):
    """Random linear / inverse one-position accounts with USD or own-coin collateral, flat
    rates and bracket tables, all above their liquidation threshold today."""
    rng = np.random.default_rng(seed)
    lin_floor, lin_mmr = [0, 5e4, 2.5e5, 1e6], [0.004, 0.005, 0.01, 0.025]
    inv_floor, inv_mmr = [0, 5.0, 10.0, 20.0], [0.005, 0.0075, 0.01, 0.02]
    mmr = np.array([[0.01, 0, 0, 0], lin_mmr, inv_mmr])
    cum = np.array([[0.0, 0, 0, 0], _ladder(lin_floor, lin_mmr), _ladder(inv_floor, inv_mmr)])
    tables = C.MarginTables(mmr, cum, np.array([1, 4, 4]))
    asset = rng.integers(0, 2, n)
    inv = (rng.random(n) < 0.35).astype(np.int64)
    side = np.where(rng.random(n) < 0.6, 1.0, -1.0)
    size = np.exp(rng.normal(np.log(2e4), 1.0, n))
    entry = s0[asset] * np.exp(rng.normal(0.0, 0.02, n))
    face = np.where(inv == 1, 100.0, 1.0)
    q = np.where(inv == 1, side * np.maximum(np.round(size / 100.0), 1.0), side * size / entry)
    lev = np.exp(rng.uniform(np.log(2.0), np.log(40.0), n))
    margin = size / lev
    coin_coll = rng.random(n) < 0.3
    coin = np.where(coin_coll, margin / s0[asset], 0.0)
    usd = np.where(coin_coll, 0.0, margin) + np.maximum(
        np.where(inv == 1, -q * 100.0 * (s0[asset] / entry - 1.0), -q * (s0[asset] - entry)),
        0.0)
    table = np.where(inv == 1, 2, np.where(asset == 0, 1, 0))
    acc = C.SingleAccounts(asset.astype(np.int64), inv, q, entry, face, table.astype(np.int64),
                           usd, np.where(rng.random(n) < 0.3, 0.95, 1.0), coin,
                           np.where(coin_coll, 0.9, 1.0))
    mb, mm, _ = C.margin_state(acc, tables, s0)
    keep = mb > 1.2 * liq_fraction * mm
    return C.SingleAccounts(*(np.ascontiguousarray(x[keep]) for x in acc)), tables


S0_2 = np.array([60_000.0, 3_000.0])
MODEL_2 = GBM(mu=0.0, sigma=[1.2, 1.5], corr=[[1.0, 0.8], [0.8, 1.0]])
HOUR = 1.0 / (365.0 * 24.0)


@pytest.fixture(scope="module")
def mixed():
    """A mixed book, 600 paths (two path blocks) of hourly steps over two days, impact on
    both assets and a small fund, so that bankruptcies, fund payouts and ADL all occur."""
    rules = C.CascadeRules(liq_fraction=0.8, fee_rate=0.005, fund=5_000.0)
    acc, tables = _mixed_book(160, 7, S0_2, rules.liq_fraction)
    paths = simulate_paths(MODEL_2, S0_2, n_steps=48, dt=HOUR, n_paths=600, seed=42)
    impact = C.ImpactParams(np.array([4e6, 1e6]), np.array([0.05, 0.08]),
                            np.array([0.02, 0.03]), np.array([0.7, 0.8]))
    return acc, tables, paths, impact, rules


# --------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("x0, x1", [(0.0, -500.0), (-300.0, -900.0), (200.0, -700.0),
                                    (50.0, 800.0), (-10.0, -10.0)])
def test_fill_is_the_average_impact_over_the_order_slice(x0, x1):
    """Oracle: the definition, (1 / (x1 - x0)) * integral of g over [x0, x1], by quad."""
    depth, lin, sq = 1_000.0, 0.1, 0.05

    def g(x):
        z = abs(x) / depth
        return math.copysign(lin * z + sq * math.sqrt(z), x)

    got = C._fill_log(x0, x1, depth, lin, sq)
    if x1 == x0:
        expected = g(x0)
    else:
        expected = integrate.quad(g, x0, x1, points=[0.0], epsabs=1e-14)[0] / (x1 - x0)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-14)
    assert C._impact(x1, math.inf, lin, sq) == 0.0


# --------------------------------------------------------------------------- by hand
def test_one_liquidation_with_linear_impact_by_hand():
    """Oracle: closed forms. Long 1 at 100 with 10 USD, MMR 5 %: liquidated when
    10 + (P - 100) < 0.05 P, i.e. P < 90 / 0.95. At P0 = 94 it sells 94 USD into depth 1000
    with linear impact 0.1: the mark moves by exp(-0.0094), the fill by exp(-0.0047) (half,
    the average of a linear impact); the fee is 1 % of the fill; the impact then decays by
    0.5 a step."""
    acc = _accounts(dict(q=1.0, entry=100.0, usd=10.0))
    tables = C.MarginTables(np.array([[0.05]]), np.array([[0.0]]), np.array([1]))
    lo, hi = C.trigger_prices(acc, tables, 1.0)
    assert lo[0] == pytest.approx(90.0 / 0.95, rel=1e-14) and hi[0] == np.inf
    paths = np.array([[[100.0], [94.0], [94.0], [94.0]]])
    impact = C.ImpactParams(np.array([1_000.0]), np.array([0.1]), np.array([0.0]),
                            np.array([0.5]))
    out = C.simulate_cascade(paths, acc, tables, impact,
                             C.CascadeRules(fee_rate=0.01, fund=100.0), record=1)
    g = -0.1 * 94.0 / 1_000.0
    fill = 94.0 * math.exp(g / 2)
    fee = 0.01 * fill
    p = out.path[0]
    assert p[C.P_LIQUIDATIONS] == 1 and p[C.P_CALLS] == 1 and p[C.P_BANKRUPTCIES] == 0
    assert p[C.P_FEES] == pytest.approx(fee, rel=1e-13)
    assert p[C.P_FUND_FINAL] == pytest.approx(100.0 + fee, rel=1e-13)
    assert p[C.P_WEALTH_CHANGE] == pytest.approx(fill - 100.0 - fee, rel=1e-12)
    assert p[C.P_MARKET_PNL] == pytest.approx(fill - 100.0, rel=1e-12)
    assert out.asset[0, 0, C.A_LIQ_VOLUME] == pytest.approx(fill, rel=1e-13)
    np.testing.assert_allclose(out.marks[0, :, 0], [100.0, 94.0 * math.exp(g),
                                                    94.0 * math.exp(0.5 * g),
                                                    94.0 * math.exp(0.25 * g)], rtol=1e-13)
    assert out.asset[0, 0, C.A_MIN_LOG] == pytest.approx(math.log(0.94) + g, rel=1e-12)
    assert out.levels.sum() == pytest.approx(fill, rel=1e-13)
    assert out.counts[:, 0].tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize("engine", ["fast", "general"])
def test_adl_by_hand_with_the_published_ranking(engine):
    """Oracle: closed forms. Fund 0, no fee, no impact; at P = 90 the long A (1 at 100, 5 USD)
    has equity -5. Counterparties, scored PnL% x leverage (leverage = notional / equity):
    B short 2 at 110 with 50 USD (0.1818 x 180 / 90 = 0.364), C short 1 at 120 with 5 USD
    (0.25 x 90 / 35 = 0.643). C ranks first, takes A's 90 USD at the mark (its whole
    position) and pays the 5 USD deficit; B is untouched."""
    acc = _accounts(dict(q=1.0, entry=100.0, usd=5.0), dict(q=-2.0, entry=110.0, usd=50.0),
                    dict(q=-1.0, entry=120.0, usd=5.0))
    paths = np.array([[[100.0], [90.0]]])
    rules = C.CascadeRules(fee_rate=0.0, fund=0.0)
    if engine == "fast":
        out = C.simulate_cascade(paths, acc, FLAT_1PCT, NO_IMPACT, rules)
        counts = out.counts
    else:
        cross, perm = _cross(acc, FLAT_1PCT, 1.0, 1)
        out = C.simulate_cascade(paths, cross, FLAT_1PCT, NO_IMPACT, rules)
        counts = np.empty_like(out.counts)
        counts[:, perm] = out.counts
    p = out.path[0]
    assert p[C.P_ADL_PAID] == pytest.approx(5.0, rel=1e-14)
    assert p[C.P_ADL_RECEIVED] == pytest.approx(5.0, rel=1e-14)
    assert p[C.P_BAD_DEBT] == pytest.approx(5.0, rel=1e-14)
    assert p[C.P_FUND_PAID] == 0.0 and p[C.P_EXCHANGE_PAID] == 0.0
    assert p[C.P_ADL_EVENTS] == 1 and p[C.P_BANKRUPTCIES] == 1
    assert out.asset[0, 0, C.A_ADL_VOLUME] == pytest.approx(90.0, rel=1e-14)
    assert out.asset[0, 0, C.A_LIQ_VOLUME] == 0.0
    # equity: A 5 -> 0, B 70 -> 90 (position unchanged), C 25 -> 30 (closed at 90, paid 5);
    # market P&L: net exposure 1 - 2 - 1 = -2 units over a move of -10
    assert p[C.P_WEALTH_CHANGE] == pytest.approx((0 + 90 + 30) - (5 + 70 + 25), abs=1e-12)
    assert p[C.P_MARKET_PNL] == pytest.approx(-2.0 * (90.0 - 100.0), abs=1e-12)
    assert counts[C.C_ADL].tolist() == [0, 0, 1]
    assert counts[C.C_LIQ].tolist() == [1, 0, 0]
    assert counts[C.C_BANKRUPT].tolist() == [1, 0, 0]


def test_partial_liquidation_restores_the_target_ratio():
    """Oracle: closed form. Long 10 at 100 with 90 USD, MMR 5 %, target 1.5, fee 1 %, no
    impact. At P = 95: MB = 40, MM = 47.5, N = 950; closing the fraction
    phi = (1.5 MM - MB) / (1.5 MM - fee N) = 31.25 / 61.75 leaves MB' = 1.5 MM' at the mark,
    so the account is not liquidated again while the price stays."""
    acc = _accounts(dict(q=10.0, entry=100.0, usd=90.0))
    tables = C.MarginTables(np.array([[0.05]]), np.array([[0.0]]), np.array([1]))
    cross, _ = _cross(acc, tables, 1.0, 1)
    paths = np.array([[[100.0], [95.0], [95.0], [95.0]]])
    rules = C.CascadeRules(fee_rate=0.01, fund=0.0, partial=True, partial_target=1.5)
    out = C.simulate_cascade(paths, cross, tables, NO_IMPACT, rules)
    phi = (1.5 * 47.5 - 40.0) / (1.5 * 47.5 - 0.01 * 950.0)
    p = out.path[0]
    assert p[C.P_PARTIALS] == 1 and p[C.P_LIQUIDATIONS] == 1
    assert out.asset[0, 0, C.A_LIQ_VOLUME] == pytest.approx(phi * 950.0, rel=1e-13)
    assert p[C.P_FEES] == pytest.approx(0.01 * phi * 950.0, rel=1e-13)
    mb_after = 40.0 - 0.01 * phi * 950.0
    mm_after = 0.05 * (1.0 - phi) * 10.0 * 95.0
    assert mb_after / mm_after == pytest.approx(1.5, rel=1e-12)
    assert _residual(out, 0.0)[0] == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("grace", [0, 2, 5])
def test_grace_period_delays_liquidation_by_exactly_its_steps(grace):
    """Oracle: the rule. At P = 95 the account (MB 5 < MM 9.5, above 0.4 MM) is called at
    step 1 and stays below maintenance; it is liquidated at step 1 + grace, not before."""
    acc = _accounts(dict(q=2.0, entry=100.0, usd=15.0))
    tables = C.MarginTables(np.array([[0.05]]), np.array([[0.0]]), np.array([1]))
    cross, _ = _cross(acc, tables, 0.4, 1)
    rules = C.CascadeRules(liq_fraction=0.4, fee_rate=0.0, fund=0.0, grace=grace)
    for n_steps, expected in ((grace, 0), (grace + 1, 1)):
        if n_steps == 0:
            continue
        paths = np.full((1, n_steps + 1, 1), 95.0)
        paths[0, 0, 0] = 100.0
        out = C.simulate_cascade(paths, cross, tables, NO_IMPACT, rules)
        assert out.path[0, C.P_CALLS] == 1
        assert out.path[0, C.P_LIQUIDATIONS] == expected, (n_steps, expected)


# --------------------------------------------------------------------------- reference
def test_fast_path_equals_the_general_path(mixed):
    """Oracle: the slow reference. The general path, given the same accounts in the fast
    path's order, re-checks every account in every round; every output agrees."""
    acc, tables, paths, impact, rules = mixed
    fast = C.simulate_cascade(paths, acc, tables, impact, rules, record=5)
    cross, perm = _cross(acc, tables, rules.liq_fraction, 2)
    slow = C.simulate_cascade(paths, cross, tables, impact, rules, record=5)
    p = fast.path
    assert p[:, C.P_ADL_EVENTS].sum() > 0 and p[:, C.P_FUND_PAID].sum() > 0
    assert p[:, C.P_EXCHANGE_PAID].sum() >= 0 and p[:, C.P_BANKRUPTCIES].sum() > 0
    scale = 1.0 + np.abs(p).max(axis=0)
    np.testing.assert_allclose(fast.path, slow.path, rtol=0, atol=1e-9 * scale.max())
    np.testing.assert_array_equal(fast.path[:, C.P_CALLS:], slow.path[:, C.P_CALLS:])
    np.testing.assert_allclose(fast.asset, slow.asset, rtol=1e-12, atol=1e-6)
    np.testing.assert_array_equal(fast.counts[:, perm], slow.counts)
    np.testing.assert_allclose(fast.levels, slow.levels, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(fast.marks, slow.marks, rtol=1e-14)


# --------------------------------------------------------------------------- laws
def test_bookkeeping_identity_on_every_path_fast(mixed):
    """Law: sum of equity changes + fund change = market P&L + exchange payments (+ deposits),
    and ADL transfers paid = received, on every path (relative 1e-12 of the book's size)."""
    acc, tables, paths, impact, rules = mixed
    out = C.simulate_cascade(paths, acc, tables, impact, rules)
    scale = np.abs(out.path[:, C.P_MARKET_PNL]).max() + np.abs(acc.usd).sum()
    assert np.all(np.abs(_residual(out, rules.fund)) <= 1e-12 * scale)
    np.testing.assert_allclose(out.path[:, C.P_ADL_PAID], out.path[:, C.P_ADL_RECEIVED],
                               rtol=1e-12, atol=1e-9)
    bad = out.path[:, C.P_BAD_DEBT]
    parts = (out.path[:, C.P_FUND_PAID] + out.path[:, C.P_EXCHANGE_PAID]
             + out.path[:, C.P_ADL_RECEIVED])
    np.testing.assert_allclose(bad, parts, rtol=1e-14)


@pytest.mark.parametrize("rules", [
    C.CascadeRules(liq_fraction=0.8, fee_rate=0.005, fund=5_000.0, partial=True),
    C.CascadeRules(liq_fraction=0.6, fee_rate=0.002, fund=1_000.0, grace=3, topup_prob=0.3),
    C.CascadeRules(liq_fraction=1.0, fee_rate=0.0, fund=0.0, topup_prob=1.0),
])
def test_bookkeeping_identity_on_every_path_general(mixed, rules):
    """Law: the same identity with partial liquidation, grace periods and top-ups (deposits
    enter from outside), on cross-margin accounts holding two positions and two coins. With
    certain top-ups and liquidation at maintenance margin, nobody is ever liquidated."""
    acc, tables, paths, impact, _ = mixed
    n = acc.q.size // 2 * 2
    # pair accounts: account k holds the positions and balances of rows 2k and 2k + 1
    bal = np.zeros((n // 2, 2))
    w_bal = np.ones((n // 2, 2))
    np.add.at(bal, (np.arange(n) // 2, acc.asset[:n]), acc.coin[:n])
    np.minimum.at(w_bal, (np.arange(n) // 2, acc.asset[:n]), acc.w_coin[:n])
    cross = C.CrossAccounts(np.arange(0, n + 1, 2), acc.asset[:n], acc.inverse[:n],
                            acc.q[:n], acc.entry[:n], acc.face[:n], acc.table[:n],
                            acc.usd[:n].reshape(-1, 2).sum(axis=1), np.ones(n // 2), bal, w_bal)
    mb, mm, _ = C.margin_state(cross, tables, S0_2)
    keep = np.flatnonzero(mb > rules.liq_fraction * mm * 1.01)
    start = np.concatenate([[0], np.cumsum(np.diff(cross.start)[keep])])
    rows = np.concatenate([np.arange(cross.start[k], cross.start[k + 1]) for k in keep])
    cross = C.CrossAccounts(start, *(x[rows] for x in cross[1:7]), cross.usd[keep],
                            cross.w_usd[keep], cross.bal[keep], cross.w_bal[keep])
    out = C.simulate_cascade(paths, cross, tables, impact, rules, seed=3)
    scale = np.abs(out.path[:, C.P_MARKET_PNL]).max() + np.abs(cross.usd).sum()
    assert np.all(np.abs(_residual(out, rules.fund)) <= 1e-12 * scale)
    if rules.topup_prob == 1.0 and rules.liq_fraction == 1.0:
        # law: a certain top-up at the call cures every account before it can be liquidated
        assert out.path[:, C.P_LIQUIDATIONS].sum() == 0
        assert out.path[:, C.P_TOPUPS].sum() == out.path[:, C.P_CALLS].sum() > 0
    else:
        assert out.path[:, C.P_LIQUIDATIONS].sum() > 0
    if rules.partial:
        assert out.path[:, C.P_PARTIALS].sum() > 0
    if rules.topup_prob > 0:
        assert out.path[:, C.P_DEPOSITS].sum() > 0


def test_trigger_prices_are_exactly_where_the_margin_test_fails(mixed):
    """Law: on a price grid, MB(P) < l MM(P) (evaluated directly by margin_state) holds
    exactly when P < lo or P > hi (away from the boundary by a relative 1e-9)."""
    acc, tables, *_ = mixed
    for frac in (1.0, 0.7):
        lo, hi = C.trigger_prices(acc, tables, frac)
        for scale in np.linspace(0.3, 2.5, 221):
            prices = S0_2 * scale
            mb, mm, _ = C.margin_state(acc, tables, prices)
            p = prices[acc.asset]
            direct = mb < frac * mm
            by_price = (p < lo) | (p > hi)
            near = (np.abs(p - lo) <= 1e-9 * p) | (np.abs(p - hi) <= 1e-9 * p)
            assert np.array_equal(direct[~near], by_price[~near]), (frac, scale)


def _long_book(n: int, seed: int):
    rng = np.random.default_rng(seed)
    size = np.exp(rng.normal(np.log(1e4), 0.8, n))
    entry = 100.0 * np.exp(rng.normal(0.0, 0.01, n))
    q = size / entry
    lev = np.exp(rng.uniform(np.log(3.0), np.log(30.0), n))
    usd = size / lev + np.maximum(q * (entry - 100.0), 0.0) + 0.02 * size
    return _accounts(*[dict(q=q[k], entry=entry[k], usd=usd[k]) for k in range(n)])


def test_more_impact_means_weakly_lower_marks_and_more_liquidations_on_every_path():
    """Law: an all-long book only sells, so impact only lowers marks; more impact (larger
    coefficients, same seeds) gives on every path weakly lower marks, at least as many
    liquidations and as much liquidated volume, and more bad debt on average."""
    acc = _long_book(300, 3)
    paths = simulate_paths(GBM(mu=0.0, sigma=0.9), 100.0, n_steps=48, dt=HOUR, n_paths=400,
                           seed=5)
    rules = C.CascadeRules(liq_fraction=1.0, fee_rate=0.005, fund=math.inf)
    runs = []
    for lin, sq in ((0.0, 0.0), (0.02, 0.01), (0.1, 0.04), (0.3, 0.1)):
        imp = C.ImpactParams(np.array([2e6]), np.array([lin]), np.array([sq]),
                             np.array([0.8]))
        runs.append(C.simulate_cascade(paths, acc, FLAT_1PCT, imp, rules))
    for weak, strong in zip(runs, runs[1:], strict=False):
        assert np.all(strong.path[:, C.P_LIQUIDATIONS] >= weak.path[:, C.P_LIQUIDATIONS])
        assert np.all(strong.asset[:, 0, C.A_MIN_LOG] <= weak.asset[:, 0, C.A_MIN_LOG])
        assert strong.path[:, C.P_BAD_DEBT].mean() >= weak.path[:, C.P_BAD_DEBT].mean()
        assert np.all(strong.counts[C.C_LIQ] >= weak.counts[C.C_LIQ])
    assert runs[-1].path[:, C.P_LIQUIDATIONS].sum() > runs[0].path[:, C.P_LIQUIDATIONS].sum()


def test_a_larger_insurance_fund_means_fewer_adl_events(mixed):
    """Law: ADL only happens when the fund cannot pay a deficit; over the same paths the
    number of ADL events does not grow with the fund, and an infinite fund never deleverages.
    """
    acc, tables, paths, impact, rules = mixed
    events = []
    for fund in (0.0, 2_000.0, 20_000.0, 200_000.0, math.inf):
        out = C.simulate_cascade(paths, acc, tables, impact, rules._replace(fund=fund))
        events.append(out.path[:, C.P_ADL_EVENTS].sum())
    assert events[0] > 0
    assert all(b <= a for a, b in zip(events, events[1:], strict=False)), events
    assert events[-1] == 0


def test_with_an_empty_fund_adl_covers_each_deficit_exactly():
    """Law: with no fund and no fees the fund never pays; every bankruptcy is deleveraged at
    the mark and the transfers received equal the deficits (all bad debt), with nothing left
    to the exchange while opposite positions suffice (a book of many low-leverage shorts)."""
    longs = _long_book(120, 11)
    rng = np.random.default_rng(12)
    shorts = _accounts(*[dict(q=-float(x), entry=100.0, usd=100.0 * x)
                         for x in rng.uniform(50.0, 150.0, 120)])
    acc = C.SingleAccounts(*(np.concatenate([a, b]) for a, b in zip(longs, shorts,
                                                                  strict=True)))
    paths = simulate_paths(GBM(mu=0.0, sigma=1.2), 100.0, n_steps=48, dt=HOUR, n_paths=300,
                           seed=8)
    imp = C.ImpactParams(np.array([1e6]), np.array([0.05]), np.array([0.02]),
                         np.array([0.8]))
    out = C.simulate_cascade(paths, acc, FLAT_1PCT, imp, C.CascadeRules(fee_rate=0.0, fund=0.0))
    p = out.path
    assert p[:, C.P_ADL_EVENTS].sum() > 0
    assert np.all(p[:, C.P_FUND_PAID] == 0.0)
    assert np.all(p[:, C.P_FUND_FINAL] == 0.0)
    np.testing.assert_allclose(p[:, C.P_ADL_RECEIVED], p[:, C.P_BAD_DEBT], rtol=1e-12,
                               atol=1e-9)
    np.testing.assert_allclose(p[:, C.P_ADL_PAID], p[:, C.P_ADL_RECEIVED], rtol=1e-12,
                               atol=1e-9)
    assert np.all(p[:, C.P_EXCHANGE_PAID] <= 1e-9 * (1.0 + p[:, C.P_BAD_DEBT]))


def test_same_seed_same_result_on_one_and_two_threads(mixed):
    """Law (reproducibility contract): fixed path blocks and per-path top-up streams make
    every output bit-identical whatever the number of numba threads, on both engines."""
    acc, tables, paths, impact, rules = mixed
    cross, _ = _cross(acc, tables, rules.liq_fraction, 2)
    general = rules._replace(grace=2, topup_prob=0.4)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append((C.simulate_cascade(paths, acc, tables, impact, rules, record=3),
                            C.simulate_cascade(paths, cross, tables, impact, general, seed=9)))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[0], results[1], strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_topups_are_bernoulli_draws():
    """Oracle: the binomial law. Every margin call is followed by a top-up with probability
    p, independently; the observed fraction is within 4 standard errors of p."""
    acc = _long_book(200, 21)
    cross, _ = _cross(acc, FLAT_1PCT, 0.5, 1)
    paths = simulate_paths(GBM(mu=0.0, sigma=1.0), 100.0, n_steps=48, dt=HOUR, n_paths=500,
                           seed=22)
    p_top = 0.3
    out = C.simulate_cascade(paths, cross, FLAT_1PCT, NO_IMPACT,
                             C.CascadeRules(liq_fraction=0.5, fund=math.inf,
                                            topup_prob=p_top), seed=23)
    calls = out.path[:, C.P_CALLS].sum()
    tops = out.path[:, C.P_TOPUPS].sum()
    se = math.sqrt(p_top * (1 - p_top) / calls)
    assert calls > 500
    assert abs(tops / calls - p_top) <= N_SE * se, (tops / calls, se)


def test_volume_by_level_adds_up_to_the_liquidated_volume(mixed):
    """Law: every market fill lands in one level bin (end bins collect the rest)."""
    acc, tables, paths, impact, rules = mixed
    out = C.simulate_cascade(paths, acc, tables, impact, rules,
                             level_edges=np.linspace(-0.05, 0.05, 11))
    np.testing.assert_allclose(out.levels.sum(axis=1),
                               out.asset[:, :, C.A_LIQ_VOLUME].sum(axis=0), rtol=1e-12)


# --------------------------------------------------------------------------- validation
def test_errors_name_the_argument_and_the_allowed_range(mixed):
    acc, tables, paths, impact, rules = mixed
    with pytest.raises(ValueError, match=r"impact.depth \(USD\) must be .*> 0"):
        C.simulate_cascade(paths, acc, tables, impact._replace(depth=np.array([0.0, 1.0])),
                           rules)
    with pytest.raises(ValueError, match=r"impact.decay \(per step\) must be .*<= 1"):
        C.simulate_cascade(paths, acc, tables, impact._replace(decay=1.5), rules)
    with pytest.raises(ValueError, match=r"rules.liq_fraction must be .*> 0 and <= 1, got 1.5"):
        C.simulate_cascade(paths, acc, tables, impact, rules._replace(liq_fraction=1.5))
    with pytest.raises(ValueError, match=r"need CrossAccounts"):
        C.simulate_cascade(paths, acc, tables, impact, rules._replace(partial=True))
    with pytest.raises(ValueError, match=r"accounts.asset must be a price column in \[0, 2\)"):
        C.simulate_cascade(paths, acc._replace(asset=acc.asset + 5), tables, impact, rules)
    with pytest.raises(ValueError, match=r"accounts.entry must be finite and > 0"):
        C.simulate_cascade(paths, acc._replace(entry=-acc.entry), tables, impact, rules)
    with pytest.raises(ValueError, match=r"tables.mmr must be .*< 1"):
        C.simulate_cascade(paths, acc, tables._replace(mmr=tables.mmr + 1.0), impact, rules)
    with pytest.raises(ValueError, match=r"paths must have shape"):
        C.simulate_cascade(paths[:, :1], acc, tables, impact, rules)
    with pytest.raises(ValueError, match=r"equal on every path"):
        bad = paths.copy()
        bad[1, 0, 0] *= 1.01
        C.simulate_cascade(bad, acc, tables, impact, rules)
    with pytest.raises(ValueError, match=r"already below its liquidation threshold"):
        C.simulate_cascade(paths, acc._replace(usd=acc.usd * 0.0), tables, impact, rules)
    with pytest.raises(TypeError, match=r"rules.grace must be an int"):
        C.simulate_cascade(paths, acc, tables, impact, rules._replace(grace=1.5))
    with pytest.raises(TypeError, match=r"SingleAccounts or CrossAccounts"):
        C.simulate_cascade(paths, object(), tables, impact, rules)
