"""The shipped exchange bracket tables, selected by name (``builtin_table``).

Oracles (each test names its own):

* [FAQ-USDM]  Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
  (binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93), cross-margin example.
* [FAQ-COINM] Binance, "How to Calculate Liquidation Price of COIN-M Futures Contracts"
  (binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46), version of 2021-02-05.
* [LEV-COINM] Binance, "Leverage and Margin in Coin-Margined Futures Contracts"
  (binance.com/en/support/faq/be2c7d9d95b04a7e8044ed02dd7dfe5c).
* [ANN-2021-04-05] Binance announcement 9c6a1766be424fccacd2549db3d61a3f (COIN-M quarterly
  maintenance margin, column "Before Adjustment").
* [ANN-2021-08-18] Binance announcement "Updates on Leverage and Margin Tiers of Binance
  Futures Contracts (2021-08-18)", table "BTCBUSD, ETHBUSD".
* Laws (monotone rates, continuity at every boundary), stated in each test's docstring.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginlab.models.margin import (
    BracketTable,
    binance_btcusdt_2021,
    builtin_table,
    builtin_table_info,
    builtin_table_names,
    position_notional,
)

NAMES = builtin_table_names()


@pytest.fixture(scope="module")
def tables() -> dict[str, BracketTable]:
    return {name: builtin_table(name) for name in NAMES}


def test_the_promised_contracts_ship():
    """Contract (issue 15, item 5): BTC and ETH perpetuals, USDⓈ-M and COIN-M, by name."""
    assert {"binance_btcusdt_2021", "binance_ethusdt_2021", "binance_btcusd_perp_2021",
            "binance_ethusd_perp_2021"} <= set(NAMES)
    assert NAMES == tuple(sorted(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_every_table_has_a_source_a_date_and_a_unit(name, tables):
    """Contract: every shipped table names its exchange source (https URL), when its figures
    were in force, its unit, and inverse tables carry the exchange's contract size; the file
    is package data; the table is named after the exchange symbol."""
    info = builtin_table_info(name)
    table = tables[name]
    assert info.name == name and table.name == info.symbol
    assert info.sources and all(s.startswith("https://www.binance.com/") for s in info.sources)
    assert info.in_force.strip() and info.notional_unit.strip()
    assert table.inverse is info.inverse
    if info.inverse:
        assert info.notional_unit in ("BTC", "ETH") and info.contract_size in (100.0, 10.0)
    else:
        assert info.notional_unit in ("USDT", "BUSD") and info.contract_size == 1.0
    assert resources.files("marginlab.models").joinpath(f"data/{info.file}").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_rates_rise_with_notional(name, tables):
    """Law: maintenance margin rates strictly rise from bracket to bracket, maximum leverage
    never rises, and the initial margin rate 1/leverage is at least the maintenance rate."""
    t = tables[name]
    assert np.all(np.diff(t.maintenance_margin_rate) > 0)
    assert np.all(np.diff(t.max_leverage) <= 0)
    assert np.all(t.initial_margin_rate >= t.maintenance_margin_rate)
    assert t.notional_floor[0] == 0 and np.array_equal(t.notional_floor[1:], t.notional_cap[:-1])


@pytest.mark.parametrize("name", NAMES)
def test_margin_is_continuous_at_every_boundary(name, tables):
    """Law: the maintenance amounts make N * MMR - cum continuous at every bracket floor (the
    two adjacent brackets' lines meet there), and the margin either side of a boundary is
    within (largest MMR) x (distance) of the boundary value."""
    t = tables[name]
    for b in range(1, t.n_brackets):
        f = t.notional_floor[b]
        below = f * t.maintenance_margin_rate[b - 1] - t.maintenance_amount[b - 1]
        above = f * t.maintenance_margin_rate[b] - t.maintenance_amount[b]
        assert above == pytest.approx(below, rel=1e-12, abs=1e-9 * f)
        eps = 1e-6 * f
        left, mid, right = t.maintenance_margin(np.array([f - eps, f, f + eps]))
        assert abs(right - mid) <= 1.0 * eps and abs(mid - left) <= 1.0 * eps
        assert left <= mid <= right


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(NAMES), u=st.floats(0, 1), v=st.floats(0, 1))
def test_margin_is_the_upper_envelope_and_increasing(tables, name, u, v):
    """Law: MM(N) = max_k (N MMR_k - cum_k) for 0 <= N <= max notional (the ladder's
    envelope property), hence MM is increasing in N."""
    t = tables[name]
    n1, n2 = sorted((u * t.max_notional, v * t.max_notional))
    mm1, mm2 = t.maintenance_margin(n1), t.maintenance_margin(n2)
    env = np.max(n1 * t.maintenance_margin_rate - t.maintenance_amount)
    assert mm1 == pytest.approx(env, rel=1e-12, abs=1e-9)
    assert mm1 <= mm2 + 1e-9 * max(1.0, abs(mm2))


def test_btcusd_perp_reproduces_the_coinm_faq():
    """Oracle [FAQ-COINM]: "if the BTCUSD contract position is 300 BTC, the Maintenance
    Margin Rate would be 12.5%" and "the maintenance amount would be 11.81 BTC"; "Level 5 =
    50 BTC * (5% - 2.5%) + 0.56 BTC = 1.81 BTC"; 100 contracts at a mark of 25,000 are
    100 * 100 / 25,000 = 0.4 BTC, level 1, maintenance margin 0.4 * 0.4% - 0 = 0.0016 BTC."""
    t = builtin_table("binance_btcusd_perp_2021")
    cs = builtin_table_info("binance_btcusd_perp_2021").contract_size
    b = t.bracket_index(300.0)
    assert t.maintenance_margin_rate[b] == 0.125
    assert t.maintenance_amount[b] == pytest.approx(11.81, abs=1e-12)
    assert t.maintenance_amount[3] == pytest.approx(0.56, abs=1e-12)
    assert t.maintenance_amount[4] == pytest.approx(1.81, abs=1e-12)
    assert t.maintenance_margin_rate[3:5].tolist() == [0.025, 0.05]
    assert position_notional(100, 25_000.0, inverse=True, contract_size=cs) == 0.4
    assert t.position_maintenance_margin(100, 25_000.0, contract_size=cs) == pytest.approx(
        0.0016, abs=1e-15)


def test_btcusd_perp_tiers_and_leverage_as_published():
    """Oracles [LEV-COINM] (max position 10, 20, 30, 50, 100, 200, 400, 1,000 BTC at 125x,
    100x, 50x, 20x, 10x, 5x, 4x, 3x) and [ANN-2021-04-05] (BTCUSD rates before adjustment
    0.40, 0.50, 1.00, 2.50, 5.00, 10.00, 12.50, 15.00 % on the same tiers)."""
    t = builtin_table("binance_btcusd_perp_2021")
    assert t.notional_cap.tolist() == [10, 20, 30, 50, 100, 200, 400, 1_000]
    assert t.max_leverage.tolist() == [125, 100, 50, 20, 10, 5, 4, 3]
    np.testing.assert_array_equal(t.maintenance_margin_rate,
                                  [0.004, 0.005, 0.01, 0.025, 0.05, 0.10, 0.125, 0.15])


def test_ethusd_perp_tiers_and_rates_as_published():
    """Oracles [LEV-COINM] (ETHUSD max position 100, 500, 1,000, 2,000, 4,000, 6,000, 8,000,
    10,000 ETH at 100x, 75x, 50x, 20x, 10x, 5x, 4x, 3x) and [ANN-2021-04-05] (ETHUSD rates
    before adjustment 0.50, 0.65, 1.00, 2.50, 5.00, 10.00, 12.50, 15.00 % on the same tiers);
    the ladder's amounts by hand: 100 * 0.15% = 0.15, + 500 * 0.35% = 1.9 ETH."""
    t = builtin_table("binance_ethusd_perp_2021")
    assert t.inverse and t.notional_cap.tolist() == [100, 500, 1_000, 2_000, 4_000, 6_000,
                                                     8_000, 10_000]
    assert t.max_leverage.tolist() == [100, 75, 50, 20, 10, 5, 4, 3]
    np.testing.assert_array_equal(t.maintenance_margin_rate,
                                  [0.005, 0.0065, 0.01, 0.025, 0.05, 0.10, 0.125, 0.15])
    assert t.maintenance_amount[1:3] == pytest.approx([0.15, 1.9], abs=1e-12)


def test_ethusdt_reproduces_the_usdm_faq_example():
    """Oracle [FAQ-USDM] cross-margin example: an ETHUSDT position of 3,683.979 ETH at a mark
    of 1,335.18 has notional 4,918,775.081 USDT, MMR 10 %, maintenance amount 135,365 USDT and
    maintenance margin 356,512.508 USDT (published to those decimals)."""
    t = builtin_table("binance_ethusdt_2021")
    n = position_notional(3_683.979, 1_335.18)
    assert n == pytest.approx(4_918_775.081, abs=5e-4)
    b = t.bracket_index(n)
    assert (t.maintenance_margin_rate[b], t.maintenance_amount[b]) == (0.10, 135_365.0)
    assert t.position_maintenance_margin(3_683.979, 1_335.18) == pytest.approx(356_512.508,
                                                                               abs=5e-4)


def test_busd_tables_as_announced():
    """Oracle [ANN-2021-08-18]: positions after change (BUSD) 25k, 100k, 500k, 1M, 2M, 5M,
    10M, 20M, 30M, 60M; leverage (top of range) 50, 25, 20, 10, 6, 5, 4, 3, 2, 1; MMR 0.40,
    0.50, 1.00, 2.50, 5.00, 10.00, 12.50, 15.00, 25.00, 50.00 %; one table for BTC and ETH."""
    eth, btc = builtin_table("binance_ethbusd_2021"), builtin_table("binance_btcbusd_2021")
    for t in (eth, btc):
        assert t.notional_cap.tolist() == [25e3, 100e3, 500e3, 1e6, 2e6, 5e6, 10e6, 20e6, 30e6,
                                           60e6]
        assert t.max_leverage.tolist() == [50, 25, 20, 10, 6, 5, 4, 3, 2, 1]
        np.testing.assert_array_equal(
            t.maintenance_margin_rate,
            [0.004, 0.005, 0.01, 0.025, 0.05, 0.10, 0.125, 0.15, 0.25, 0.50])
    assert (eth.name, btc.name) == ("ETHBUSD", "BTCBUSD")


def test_btcusdt_by_name_is_the_historical_function():
    """Contract: builtin_table("binance_btcusdt_2021") is the table binance_btcusdt_2021()
    returns (same brackets and rates)."""
    a, b = builtin_table("binance_btcusdt_2021"), binance_btcusdt_2021()
    for col in ("notional_floor", "notional_cap", "max_leverage", "maintenance_margin_rate",
                "maintenance_amount"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


def test_unknown_names_are_refused_with_the_known_ones():
    """Contract: an unknown name raises ValueError naming it and listing the shipped tables;
    a non-string raises TypeError."""
    with pytest.raises(ValueError, match=r"'binance_solusdt'.*binance_btcusdt_2021"):
        builtin_table("binance_solusdt")
    with pytest.raises(TypeError, match="name must be a str"):
        builtin_table_info(3)  # type: ignore[arg-type]


def test_a_tiered_configuration_selects_shipped_tables_by_name(tmp_path):
    """Contract: in a ``tiered`` method's ``params.tables``, a shipped table's name loads that
    table (same brackets and rates as builtin_table(name)); "builtin" stays BTCUSDT."""
    from marginlab.models.app.config import config_from_dict
    from marginlab.models.app.runner import build_methods

    cfg = config_from_dict({
        "book": {"synthetic_accounts": 10, "synthetic_seed": 1},
        "market": {"spot": {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0},
                   "vol": {"BTC": 0.6, "ETH": 0.7, "SOL": 0.9}},
        "scenarios": {"model": "gbm", "underlyings": ["BTC", "ETH", "SOL"],
                      "params": {"mu": 0.0, "sigma": [0.55, 0.7, 0.9]},
                      "n_scenarios": 1_000, "seed": 1, "horizon_days": 2},
        "methods": [{"type": "tiered", "name": "Binance tiers",
                     "params": {"tables": {"BTC": "builtin", "ETH": "binance_ethusdt_2021",
                                           "SOL": "binance_ethbusd_2021"}}}],
    }, tmp_path)
    (method,) = build_methods(cfg)
    for key, name in (("BTC", "binance_btcusdt_2021"), ("ETH", "binance_ethusdt_2021"),
                      ("SOL", "binance_ethbusd_2021")):
        got, want = method.tables[key], builtin_table(name)
        np.testing.assert_array_equal(got.notional_cap, want.notional_cap)
        np.testing.assert_array_equal(got.maintenance_margin_rate, want.maintenance_margin_rate)
