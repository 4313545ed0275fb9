"""Per-account bookkeeping of the cascade kernels, walked by hand.

Oracles, per test (each docstring names its own): hand computations from the rules in the
notes of :mod:`marginlab.simulate.cascade`, written out line by line in the docstrings and
asserted account by account (final equity, bad debt, steps and prices of the events), on
both engines. They check each account, not only the aggregate identity or the agreement of
the two engines (which share their helpers).
"""

from __future__ import annotations

import numpy as np
import pytest

from marginlab.simulate import cascade as C

NO_IMPACT = C.ImpactParams(np.inf, 0.0, 0.0, 1.0)


def _accounts(*rows: dict) -> C.SingleAccounts:
    """One-position accounts from dicts (defaults: linear long of 1 unit at 100, no coin)."""
    base = dict(asset=0, inverse=0, q=1.0, entry=100.0, face=1.0, table=0, usd=0.0,
                w_usd=1.0, coin=0.0, w_coin=1.0)
    cols = {k: [] for k in base}
    for r in rows:
        for k, v in {**base, **r}.items():
            cols[k].append(v)
    ints = {"asset", "inverse", "table"}
    return C.SingleAccounts(**{k: np.array(v, dtype=np.int64 if k in ints else np.float64)
                               for k, v in cols.items()})


def _run(engine: str, paths, acc, tables, rules) -> C.CascadeArrays:
    """Both engines, every account tracked, outputs in the given account order."""
    n = acc.q.size
    if engine == "fast":
        return C.simulate_cascade(paths, acc, tables, NO_IMPACT, rules, track=np.arange(n))
    perm = C.trigger_order(acc, tables, rules.liq_fraction)
    n_a = paths.shape[2]
    bal = np.zeros((n, n_a))
    w_bal = np.ones((n, n_a))
    bal[np.arange(n), acc.asset[perm]] = acc.coin[perm]
    w_bal[np.arange(n), acc.asset[perm]] = acc.w_coin[perm]
    cross = C.CrossAccounts(np.arange(n + 1), acc.asset[perm], acc.inverse[perm], acc.q[perm],
                            acc.entry[perm], acc.face[perm], acc.table[perm], acc.usd[perm],
                            acc.w_usd[perm], bal, w_bal)
    inv_perm = np.empty_like(perm)
    inv_perm[perm] = np.arange(n)
    out = C.simulate_cascade(paths, cross, tables, NO_IMPACT, rules, track=inv_perm)
    counts = np.empty_like(out.counts)
    counts[:, perm] = out.counts
    return out._replace(counts=counts)


def _field(out: C.CascadeArrays, name: str) -> np.ndarray:
    return out.accounts[0, :, C.TRACK_FIELDS.index(name)]


MMR_5PCT = C.MarginTables(np.array([[0.05]]), np.array([[0.0]]), np.array([1]))


@pytest.mark.parametrize("engine", ["fast", "general"])
def test_closed_accounts_keep_no_exposure_by_hand(engine):
    """Oracle: hand computation. Price path 100 -> 90 -> 120 -> 60, MMR 5 %, fee 1 % of the
    liquidated notional (USD; inverse: contracts x face), fund 1,000, no impact.

    A linear long 1 @ 100, 12 USD. Step 1 (90): MB = 12 - 10 = 2 < 4.5: liquidated at 90;
      equity 2, fee min(0.9, 2) = 0.9; final 1.1 USD (no position, no coin).
    B inverse long 1,000 x 1 USD @ 100, 120 USD with haircut 10 % (weight 0.9). Step 1: MB =
      108 - 100 = 8 < 50: liquidated; the coin P&L 1000 (1/100 - 1/90) = -1.1111 coin, equity
      120 - 100 = 20, fee 10, then the coin debt is bought back at 90 (-100 USD): final 10 USD.
      (Before the fix the -1.1111 coin stayed marked: 110 - 1.1111 x 60 = 43.3 at the end,
      and -23.3 at 120.)
    C inverse long 1,000 @ 100, 0.7 coin weight 0.8 (MB today 56 >= 50). Step 1: coin balance
      0.7 - 1.1111 = -0.4111, equity -37: bankrupt, the fund pays 37 (its bad debt); final 0.
    D linear short 1 @ 100, 0.2 coin weight 0.9. Step 1: MB = 16.2 + 10 = 26.2 (no call).
      Step 2 (120): MB = 21.6 - 20 = 1.6 < 6: liquidated; USD -20, equity -20 + 24 = 4, fee
      min(1.2, 4) = 1.2, the USD debt 21.2 is paid by selling 21.2 / 120 = 0.17667 coin:
      0.02333 coin left, final 0.02333 x 60 = 1.4 USD. (Before: -21.2 + 0.2 x 60 = -9.2.)
    E linear long 0.1 @ 100, 50 USD: never called; final 50 - 4 = 46.
    F inverse short 1,000 @ 100, 1.8 coin weight 0.5 (MB today 90). Step 2: MB = 108 - 200 <
      60: liquidated; coin 1.8 - 1000 (1/100 - 1/120) = 0.1333, equity 16, fee 10 leaves
      USD -10, paid with 10 / 120 = 0.0833 coin: 0.05 coin left, final 0.05 x 60 = 3 USD.
    """
    acc = _accounts(
        dict(q=1.0, usd=12.0),                                           # A
        dict(inverse=1, q=1000.0, usd=120.0, w_usd=0.9),                 # B
        dict(inverse=1, q=1000.0, coin=0.7, w_coin=0.8),                 # C
        dict(q=-1.0, coin=0.2, w_coin=0.9),                              # D
        dict(q=0.1, usd=50.0),                                           # E
        dict(inverse=1, q=-1000.0, coin=1.8, w_coin=0.5),                # F
    )
    paths = np.array([[[100.0], [90.0], [120.0], [60.0]]])
    rules = C.CascadeRules(fee_rate=0.01, fund=1_000.0)
    out = _run(engine, paths, acc, MMR_5PCT, rules)
    final = [1.1, 10.0, 0.0, 1.4, 46.0, 3.0]
    np.testing.assert_allclose(_field(out, "final_equity"), final, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_field(out, "bad_debt"), [0, 0, 37.0, 0, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(_field(out, "call_step"), [1, 1, 1, 2, -1, 2])
    np.testing.assert_array_equal(_field(out, "liquidation_step"), [1, 1, 1, 2, -1, 2])
    np.testing.assert_array_equal(_field(out, "bankruptcy_step"), [-1, -1, 1, -1, -1, -1])
    np.testing.assert_array_equal(_field(out, "adl_step"), [-1] * 6)
    np.testing.assert_array_equal(_field(out, "liquidation_price"),
                                  [90.0, 90.0, 90.0, 120.0, np.nan, 120.0])
    p = out.path[0]
    fees = 0.9 + 10.0 + 1.2 + 10.0
    assert p[C.P_FEES] == pytest.approx(fees, rel=1e-12)
    assert p[C.P_FUND_PAID] == pytest.approx(37.0, rel=1e-12)
    assert p[C.P_BAD_DEBT] == pytest.approx(37.0, rel=1e-12)
    assert p[C.P_FUND_FINAL] == pytest.approx(1_000.0 + fees - 37.0, rel=1e-13)
    assert p[C.P_LIQUIDATIONS] == 5 and p[C.P_BANKRUPTCIES] == 1 and p[C.P_CALLS] == 5
    initial = 12.0 + 120.0 + 70.0 + 20.0 + 50.0 + 180.0
    assert p[C.P_WEALTH_CHANGE] == pytest.approx(sum(final) - initial, rel=1e-12)
    # the identity: the market P&L of the exposures held step by step, by hand
    # step 1 (100 -> 90): A 1, B 1000/100 coin, C 0.7 + 10, D 0.2 - 1, E 0.1, F 1.8 - 10
    # step 2 (90 -> 120): D, E, F only (A, B, C closed at 90 with no coin left)
    # step 3 (120 -> 60): E 0.1, D 0.02333 coin, F 0.05 coin
    h1 = 1.0 + 10.0 + 10.7 - 0.8 + 0.1 - 8.2
    h2 = -0.8 + 0.1 - 8.2
    h3 = 0.1 + (0.2 - 21.2 / 120.0) + 0.05
    gmk = h1 * -10.0 + h2 * 30.0 + h3 * -60.0
    assert p[C.P_MARKET_PNL] == pytest.approx(gmk, rel=1e-12)
    assert out.counts[C.C_BANKRUPT].tolist() == [0, 0, 1, 0, 0, 0]


@pytest.mark.parametrize("engine", ["fast", "general"])
def test_adl_on_a_two_sided_book_by_hand(engine):
    """Oracle: hand computation with the published ranking (BitMEX / Bybit / Binance: PnL% x
    effective leverage in profit, PnL% / leverage in loss; leverage = notional / equity).
    Fund 0, no fee, MMR 1 %, no impact, price 100 -> 80 -> 125.

    Step 1 (80): long L1 (1 @ 100, 15 USD) has equity -5: bankrupt, nothing in the fund, so
    the shorts take its 80 USD at the mark. Scores: S2 (0.5 @ 90, 8 USD) PnL% 1/9, equity 13,
    leverage 40/13: 0.3419; S1 (1 @ 100, 40 USD) 0.2 x 80/60 = 0.2667; S3 (2 @ 70, 100 USD)
    -1/7 / (160/80) = -0.0714. S2 takes 40 USD (all of it): +5 realised, pays 5 x 40/80 = 2.5:
    10.5 USD. S1 takes the other 40 USD (0.5 of its 1): +10 realised, pays 2.5: 47.5 USD and
    short 0.5 @ 100. L1 receives 5: equity 0. S3 is not touched.
    Step 2 (125): S3 has equity 100 - 110 = -10: bankrupt; the longs take its 250 USD. Scores:
    L2 (1 @ 60, 10 USD) (125/60 - 1) x 125/75 = 1.806; L3 (2 @ 100, 60 USD) 0.25 x 250/110 =
    0.568; L1 is closed. L2 takes 125 USD (all): +65, pays 10 x 125/250 = 5: 70 USD. L3 takes
    125 USD (1 of its 2): +25, pays 5: 80 USD and long 1 @ 100. S3 receives 10: equity 0.
    Final at 125: L1 0, L2 70, L3 80 + 25 = 105, S1 47.5 - 12.5 = 35, S2 10.5, S3 0.
    """
    acc = _accounts(
        dict(q=1.0, usd=15.0),                  # L1
        dict(q=1.0, entry=60.0, usd=10.0),      # L2
        dict(q=2.0, usd=60.0),                  # L3
        dict(q=-1.0, usd=40.0),                 # S1
        dict(q=-0.5, entry=90.0, usd=8.0),      # S2
        dict(q=-2.0, entry=70.0, usd=100.0),    # S3
    )
    paths = np.array([[[100.0], [80.0], [125.0]]])
    tables = C.MarginTables(np.array([[0.01]]), np.array([[0.0]]), np.array([1]))
    out = _run(engine, paths, acc, tables, C.CascadeRules(fee_rate=0.0, fund=0.0))
    np.testing.assert_allclose(_field(out, "final_equity"), [0.0, 70.0, 105.0, 35.0, 10.5, 0.0],
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_field(out, "bad_debt"), [5.0, 0, 0, 0, 0, 10.0], rtol=1e-12)
    np.testing.assert_array_equal(_field(out, "adl_step"), [-1, 2, 2, 1, 1, -1])
    np.testing.assert_array_equal(_field(out, "bankruptcy_step"), [1, -1, -1, -1, -1, 2])
    np.testing.assert_array_equal(_field(out, "liquidation_step"), [1, -1, -1, -1, -1, 2])
    p = out.path[0]
    assert p[C.P_ADL_PAID] == pytest.approx(15.0, rel=1e-13)
    assert p[C.P_ADL_RECEIVED] == pytest.approx(15.0, rel=1e-13)
    assert p[C.P_BAD_DEBT] == pytest.approx(15.0, rel=1e-13)
    assert p[C.P_FUND_PAID] == 0.0 and p[C.P_EXCHANGE_PAID] == 0.0
    assert p[C.P_ADL_EVENTS] == 4 and p[C.P_BANKRUPTCIES] == 2 and p[C.P_LIQUIDATIONS] == 2
    assert out.asset[0, 0, C.A_ADL_VOLUME] == pytest.approx(80.0 + 250.0, rel=1e-13)
    assert out.asset[0, 0, C.A_LIQ_VOLUME] == 0.0
    # net exposure 1 + 1 + 2 - 1 - 0.5 - 2 = 0.5 before and after each ADL (it nets out)
    assert p[C.P_MARKET_PNL] == pytest.approx(0.5 * -20.0 + 0.5 * 45.0, rel=1e-13)
    initial = 15.0 + 50.0 + 60.0 + 40.0 + 3.0 + 40.0
    assert p[C.P_WEALTH_CHANGE] == pytest.approx(220.5 - initial, rel=1e-13)
    assert out.counts[C.C_ADL].tolist() == [0, 1, 1, 1, 1, 0]
