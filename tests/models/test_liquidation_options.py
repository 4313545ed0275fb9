"""Options in :func:`marginlab.models.simulate_liquidations` and the liquidation profile.

Oracles, per test (each docstring names its own): the documented conversion of a book's
option rows (premium out of the USD or coin balance, quantity x multiplier, strike, expiry,
call/put, coin settlement, the market's implied vol), checked against kernel inputs built
by hand; Black-Scholes prices from :func:`marginlab.simulate.black_scholes_price` (peer
function) for today's equity; the bookkeeping identity on every path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marginlab.models import Book, LiquidationRules, MarketState, simulate_liquidations
from marginlab.models.liquidation_profile import liquidation_profile
from marginlab.simulate import black_scholes_price
from marginlab.simulate import cascade as C

DAY = 1.0 / 365.0
SPOT = 60_000.0
VOL = 0.7


def _book() -> Book:
    """a: long 2 calls (K 63k, 1 day: expires mid-path) and short 3 puts (K 58k, 7 days), USD
    collateral; b: short 5 coin-settled puts (K 60k, 7 days) on BTC collateral (haircut 10 %);
    c: a linear perp only."""
    inst = pd.DataFrame({
        "instrument_id": ["C63", "P58", "IP60", "PERP"],
        "type": ["option", "option", "inverse_option", "linear_perp"],
        "underlying": ["BTC"] * 4, "strike": [63_000.0, 58_000.0, 60_000.0, np.nan],
        "expiry": [1 * DAY, 7 * DAY, 7 * DAY, np.nan],
        "option_type": ["call", "put", "put", ""], "multiplier": [1.0, 1.0, 1.0, 1.0]})
    pos = pd.DataFrame({
        "account_id": ["a", "a", "b", "c"], "instrument_id": ["C63", "P58", "IP60", "PERP"],
        "quantity": [2.0, -3.0, -5.0, 1.0], "entry_price": [400.0, 900.0, 0.03, 60_000.0]})
    coll = pd.DataFrame({"account_id": ["a", "b", "c"], "asset": ["USDT", "BTC", "USDT"],
                         "amount": [9_000.0, 0.3, 5_000.0], "haircut": [0.0, 0.1, 0.0]})
    return Book.from_frames(inst, pos, coll)


def _paths(n_paths: int, n_steps: int, horizon: float, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((n_paths, n_steps, 1))
    dt = horizon / n_steps
    logs = np.cumsum(VOL * np.sqrt(dt) * z - 0.5 * VOL**2 * dt, axis=1)
    return np.concatenate([np.full((n_paths, 1, 1), SPOT), SPOT * np.exp(logs)], axis=1)


RULES = LiquidationRules(maintenance={"BTC": 0.05}, liquidation_fee=0.005,
                         insurance_fund=1e5, option_min_delta=0.1)


def test_book_options_become_kernel_options():
    """Oracle: the documented conversion. The same run from kernel inputs built by hand
    (USD = 9,000 - (2 x 400 - 3 x 900), coin = 0.3 + 5 x 0.03 with the haircut on the
    collateral only, options with strike, expiry, call flag, coin settlement and the
    market's vol) gives identical outputs; today's equity of ``a`` is its collateral plus
    ``q (BS - entry)`` with the peer Black-Scholes price; the bookkeeping identity holds on
    every path."""
    horizon = 2 * DAY
    paths = _paths(600, 48, horizon, seed=2)
    market = MarketState(spot={"BTC": SPOT}, vol={"BTC": VOL})
    res = simulate_liquidations(_book(), market, rules=RULES, paths=paths,
                                horizon_days=2.0, track="all")
    assert res.method == "general"
    usd = np.array([9_000.0 - (2.0 * 400.0 - 3.0 * 900.0), 0.0, 5_000.0])
    bal = np.array([[0.0], [0.3 + 5.0 * 0.03], [0.0]])
    w_bal = np.array([[1.0], [0.3 * 0.9 + 5.0 * 0.03], [1.0]])
    w_bal[1, 0] /= bal[1, 0]
    acc = C.CrossAccounts(np.array([0, 0, 0, 1]), np.array([0]), np.array([0]),
                          np.array([1.0]), np.array([60_000.0]), np.array([1.0]),
                          np.array([0]), usd, np.ones(3), bal, w_bal)
    opts = C.OptionPositions(
        account=np.array([0, 0, 1]), asset=np.zeros(3, np.int64), q=np.array([2.0, -3.0, -5.0]),
        strike=np.array([63_000.0, 58_000.0, 60_000.0]), expiry=np.array([DAY, 7 * DAY, 7 * DAY]),
        call=np.array([1, 0, 0]), coin=np.array([0, 0, 1]), vol=np.full(3, VOL),
        table=np.zeros(3, np.int64))
    tables = C.MarginTables(np.array([[0.05]]), np.array([[0.0]]), np.array([1]))
    raw = C.simulate_cascade(
        paths, acc, tables, C.ImpactParams(np.inf, 0.0, 0.0, 1.0),
        C.CascadeRules(fee_rate=0.005, fund=1e5), track=np.arange(3), options=opts,
        option_rules=C.OptionRules(dt=horizon / 48, min_delta=0.1))
    np.testing.assert_allclose(res.raw.path, raw.path, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(res.raw.accounts, raw.accounts, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(res.raw.counts, raw.counts)

    bs = black_scholes_price(SPOT, np.array([63_000.0, 58_000.0]), np.array([DAY, 7 * DAY]),
                             VOL, is_call=np.array([True, False]))
    eq_a = 9_000.0 + 2.0 * (bs[0] - 400.0) - 3.0 * (bs[1] - 900.0)
    assert res.initial.set_index("account_id").loc["a", "equity"] == pytest.approx(eq_a,
                                                                                    rel=1e-12)
    assert np.all(np.abs(res.conservation_residual()) < 1e-6)
    liq = res.raw.counts[C.COUNT_FIELDS.index("liquidation")]
    assert liq[0] > 0 and liq[1] > 0  # both option accounts are liquidated on some paths


def test_profile_of_option_accounts_and_missing_vol():
    """Oracles: the reference asset of an account holding only options is its options'
    underlying and its liquidation probability is the share of paths on which the run
    liquidated it (the definition); an option without an implied vol in the market is
    refused with an error naming the option and the underlying."""
    paths = _paths(300, 48, 2 * DAY, seed=4)
    market = MarketState(spot={"BTC": SPOT}, vol={"BTC": VOL})
    prof = liquidation_profile(_book(), market, rules=RULES, paths=paths, horizon_days=2.0)
    row = prof.set_index("account_id").loc["b"]
    assert row["reference_asset"] == "BTC"
    res = simulate_liquidations(_book(), market, rules=RULES, paths=paths, horizon_days=2.0)
    p_b = res.raw.counts[C.COUNT_FIELDS.index("liquidation"), 1] / 300
    assert row["p_liquidation"] == pytest.approx(p_b, abs=1e-12)
    with pytest.raises(ValueError, match="option 'C63' needs the implied vol of 'BTC'"):
        simulate_liquidations(_book(), MarketState(spot={"BTC": SPOT}), rules=RULES,
                              paths=paths, horizon_days=2.0)
