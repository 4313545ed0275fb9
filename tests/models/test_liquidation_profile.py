"""Per-account liquidation profile (``marginlab.models.liquidation_profile``).

Oracles, per test (each docstring names its own):

* The reflection principle for GBM with the Broadie-Glasserman-Kou continuity correction
  for discrete monitoring: P(liquidation within the horizon) of one long position without
  impact, and its time profile, within 4 standard errors.
* A brute-force reference written here in numpy from the rules (first step below the
  liquidation price, fill at the mark, fee, bankruptcy): every column of the profile of a
  one-position account, path by path.
* Laws: the profile does not depend on how many accounts are reported per run (memory
  chunks), on the order or subset asked, or on the engine on books both accept; accounts
  without positions are never liquidated.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from marginlab.models import GBM, Book, MarketState, liquidation_profile
from marginlab.models.liquidation import LiquidationRules, perp_book, var_es
from marginlab.simulate import simulate_paths

N_SE = 4.0
DAYS = 2.0
YEARS = DAYS / 365.0
SIGMA = 0.8


def _first_passage(s0: float, barrier: float, mu: float, sigma: float, t: float) -> float:
    """P(min_{u <= t} S_u <= barrier) for GBM (reflection principle with drift)."""
    nu = mu - 0.5 * sigma**2
    b = math.log(barrier / s0)
    st = sigma * math.sqrt(t)
    return (norm.cdf((b - nu * t) / st)
            + math.exp(2.0 * nu * b / sigma**2) * norm.cdf((b + nu * t) / st))


def _one_long_book() -> Book:
    return Book.from_frames(
        pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                      "underlying": ["BTC"]}),
        pd.DataFrame({"account_id": ["a"], "instrument_id": ["BTC-PERP"],
                      "quantity": [1.0], "entry_price": [50_000.0]}),
        pd.DataFrame({"account_id": ["a", "idle"], "asset": ["USDT", "USDT"],
                      "amount": [5_000.0, 100.0]}))


@pytest.fixture(scope="module")
def one_long():
    n_steps, n_paths = 48, 20_000
    paths = simulate_paths(GBM(mu=0.0, sigma=SIGMA), 50_000.0, n_steps=n_steps,
                           dt=YEARS / n_steps, n_paths=n_paths, seed=99)
    rules = LiquidationRules(maintenance={"BTC": 0.005}, liquidation_fee=0.005)
    prof = liquidation_profile(_one_long_book(), MarketState(spot={"BTC": 50_000.0}),
                               rules=rules, paths=paths, horizon_days=DAYS,
                               quantiles=(0.1, 0.5, 0.9), level=0.99)
    return paths, prof


def test_liquidation_probability_is_the_bgk_first_passage_probability(one_long):
    """Oracle: reflection principle + BGK. The long (1 BTC at 50,000 with 5,000 USDT, MMR
    0.5 %) is liquidated when the hourly mark is below LP = 45,000 / 0.995; without impact
    P(liquidation within 2 days) is within 4 SE of the continuous first-passage probability
    of the barrier LP exp(-0.5826 sigma sqrt(dt)). Its time profile too: the conditional
    distribution of the time of liquidation puts its median where the BGK first-passage
    probability over [0, t] crosses half of the total (within a step and 4 SE)."""
    paths, prof = one_long
    row = prof.set_index("account_id").loc["a"]
    n_steps = paths.shape[1] - 1
    dt = YEARS / n_steps
    lp = 45_000.0 / 0.995
    shifted = lp * math.exp(-0.5826 * SIGMA * math.sqrt(dt))
    p_bgk = _first_passage(50_000.0, shifted, 0.0, SIGMA, YEARS)
    assert abs(row["p_liquidation"] - p_bgk) <= N_SE * row["se_liquidation"], (
        row["p_liquidation"], p_bgk, row["se_liquidation"])
    assert row["p_liquidation"] < _first_passage(50_000.0, lp, 0.0, SIGMA, YEARS)
    # time profile: F(t) = P(tau <= t) / P(tau <= T) at the median's neighbouring steps
    med_days = row["time_to_liquidation_days_q50"]
    step_days = DAYS / n_steps
    n_liq = row["p_liquidation"] * paths.shape[0]
    se_half = math.sqrt(0.25 / n_liq)
    below = _first_passage(50_000.0, shifted, 0.0, SIGMA, (med_days - step_days) / 365.0)
    above = _first_passage(50_000.0, shifted, 0.0, SIGMA, (med_days + step_days) / 365.0)
    assert below / p_bgk <= 0.5 + N_SE * se_half and above / p_bgk >= 0.5 - N_SE * se_half
    assert row["p_margin_call"] >= row["p_liquidation"] >= row["p_bankruptcy"]


def test_every_column_matches_a_brute_force_reference(one_long):
    """Oracle: brute force from the rules, in numpy. Per path: the first step whose price is
    below LP = 45,000 / 0.995 (liquidation; margin call below 45,000 / 0.995 too, as
    liquidation is at 1 x MM); equity at the fill (the mark) 5,000 + S - 50,000; a fee of
    min(0.5 % S, equity); bankrupt and bad debt -equity if negative; final equity that
    remainder, or 5,000 + S_T - 50,000 if never liquidated. The profile's probabilities,
    quantiles (numpy's linear interpolation), mean time, bad-debt mean and ES (the estimator
    of var_es) and mean final equity equal these."""
    paths, prof = one_long
    s = paths[:, :, 0]
    n_steps = s.shape[1] - 1
    lp = 45_000.0 / 0.995
    hit = s[:, 1:] < lp
    liq = hit.any(axis=1)
    first = np.where(liq, hit.argmax(axis=1) + 1, -1)
    s_liq = np.where(liq, s[np.arange(s.shape[0]), np.maximum(first, 0)], np.nan)
    eq = 5_000.0 + s_liq - 50_000.0
    fee = np.minimum(0.005 * s_liq, np.maximum(eq, 0.0))
    bad = np.where(liq & (eq < 0.0), -eq, 0.0)
    final = np.where(liq, np.where(eq < 0.0, 0.0, eq - fee), 5_000.0 + s[:, -1] - 50_000.0)
    row = prof.set_index("account_id").loc["a"]
    n = s.shape[0]
    assert row["p_liquidation"] == pytest.approx(liq.mean(), abs=0.5 / n)
    assert row["p_margin_call"] == pytest.approx(liq.mean(), abs=0.5 / n)
    assert row["p_bankruptcy"] == pytest.approx((bad > 0).mean(), abs=0.5 / n)
    assert row["p_bankruptcy"] > 0 and row["p_adl"] == 0.0
    assert row["se_liquidation"] == pytest.approx(math.sqrt(liq.mean() * (1 - liq.mean()) / n))
    t_days = first[liq] * DAYS / n_steps
    for q in (0.1, 0.5, 0.9):
        lab = f"q{100 * q:g}"
        assert row[f"time_to_liquidation_days_{lab}"] == pytest.approx(np.quantile(t_days, q))
        assert row[f"liquidation_price_{lab}"] == pytest.approx(np.quantile(s_liq[liq], q),
                                                                rel=1e-12)
        assert row[f"liquidation_price_{lab}"] < lp
    assert row["mean_time_to_liquidation_days"] == pytest.approx(t_days.mean())
    assert row["bad_debt_mean"] == pytest.approx(bad.mean(), rel=1e-9)
    assert row["bad_debt_es"] == pytest.approx(var_es(bad, 0.99)[1], rel=1e-9)
    assert row["final_equity_mean"] == pytest.approx(final.mean(), rel=1e-9)
    idle = prof.set_index("account_id").loc["idle"]
    assert not idle["simulated"] and idle["p_liquidation"] == 0.0
    assert math.isnan(idle["time_to_liquidation_days_q50"])


def test_profile_does_not_depend_on_chunks_subsets_or_engine():
    """Law: the whole book is simulated on every run, so reporting the accounts in several
    memory chunks, in another order or as a subset, or with the general engine on a book the
    fast one accepts, gives the same rows (mixed linear / inverse book, impact off, finite
    fund so ADL and the fund couple the accounts)."""
    spot = {"BTC": 60_000.0, "ETH": 3_000.0}
    book = perp_book(40, 5, spot=spot, leverage=(12.0, 0.5), inverse_share=0.4)
    market = MarketState(spot=spot)
    model = GBM(mu=0.0, sigma=[1.2, 1.5], corr=[[1.0, 0.8], [0.8, 1.0]])
    rules = LiquidationRules(maintenance={"BTC": 0.005, "ETH": 0.01}, insurance_fund=50.0)
    paths = simulate_paths(model, np.array([60_000.0, 3_000.0]), n_steps=24,
                           dt=YEARS / 24, n_paths=600, seed=3)
    base = liquidation_profile(book, market, rules=rules, paths=paths,
                               path_assets=["BTC", "ETH"])
    assert base["p_liquidation"].sum() > 0 and base["p_bankruptcy"].sum() > 0
    ids = list(base["account_id"])
    chunked = liquidation_profile(book, market, rules=rules, paths=paths,
                                  path_assets=["BTC", "ETH"], max_memory_mb=1e-3)
    pd.testing.assert_frame_equal(base, chunked)
    sub = ids[::-3]
    subset = liquidation_profile(book, market, rules=rules, paths=paths[:, :, ::-1],
                                 path_assets=["ETH", "BTC"], accounts=sub)
    pd.testing.assert_frame_equal(base.set_index("account_id").loc[sub].reset_index(),
                                  subset)
    general = liquidation_profile(book, market, rules=rules, paths=paths,
                                  path_assets=["BTC", "ETH"], method="general")
    pd.testing.assert_frame_equal(base, general, check_exact=False, rtol=1e-9, atol=1e-9)


def test_errors_name_the_argument():
    book = _one_long_book()
    market = MarketState(spot={"BTC": 50_000.0})
    rules = LiquidationRules(maintenance={"BTC": 0.005})
    paths = np.full((4, 3, 1), 50_000.0)
    with pytest.raises(ValueError, match=r"accounts names account\(s\) not in the book"):
        liquidation_profile(book, market, rules=rules, paths=paths, accounts=["zz"])
    with pytest.raises(ValueError, match=r"horizon_days must be"):
        liquidation_profile(book, market, rules=rules, paths=paths, horizon_days=0.0)
    with pytest.raises(ValueError, match=r"quantiles\[1\] must be"):
        liquidation_profile(book, market, rules=rules, paths=paths, quantiles=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"lack the price column"):
        liquidation_profile(book, market, rules=rules, paths=paths, path_assets=["ETH"])
    with pytest.raises(ValueError, match=r"give a market model"):
        liquidation_profile(book, market, rules=rules)
