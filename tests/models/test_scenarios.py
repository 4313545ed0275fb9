"""Market snapshots and scenario sets of :mod:`marginlab.models.scenarios`.

Oracles, named per test: the documented validation contract (errors name the argument or the
asset); self-consistency laws (Monte Carlo prices ARE ``simulate_terminal`` draws with the same
seed and step, bit for bit; a GARCH horizon is a whole number of the model's steps); closed
forms of the vol-shock law ``exp(nu sqrt(h) W - nu^2 h / 2)`` with ``W = rho Z_r + sqrt(1 -
rho^2) eps`` (mean 1, ``corr(W, Z_r) = rho``) checked within 4 standard errors at fixed seeds;
hand-written grids (sizes, prices, labels).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginlab.models import GARCH, GBM, MarketState, MertonJump, ScenarioSet
from marginlab.models.scenarios import grid_scenarios, monte_carlo_scenarios
from marginlab.simulate import simulate_terminal

NAN = float("nan")
MARKET = MarketState(spot={"BTC": 50000.0, "eth": 2500.0}, vol={"btc": 0.6, "ETH": 0.8},
                     rate=0.01)
GBM2 = GBM(mu=0.05, sigma=[0.6, 0.8], corr=[[1.0, 0.7], [0.7, 1.0]])


# ----------------------------------------------------------------------------- MarketState
def test_market_state_prices_and_stablecoins():
    """Oracle: documented contract -- names are case-insensitive, stablecoins are worth 1 USD
    without being listed, prices() keeps the order asked for."""
    assert MARKET.price("btc") == 50000.0
    assert MARKET.price("ETH") == 2500.0
    for coin in ("USDT", "usdc", "DAI", "USD"):
        assert MARKET.price(coin) == 1.0
    np.testing.assert_array_equal(MARKET.prices(["ETH", "USDT", "BTC"]), [2500.0, 1.0, 50000.0])
    assert MARKET.implied_vol("eth") == 0.8


def test_market_state_listed_stablecoin_keeps_its_price():
    """Oracle: documented contract -- a listed price wins (a de-pegged stablecoin)."""
    m = MarketState(spot={"USDT": 0.98})
    assert m.price("usdt") == 0.98
    assert m.price("USDC") == 1.0


@pytest.mark.parametrize("spot, pattern", [
    ({"BTC": 0.0}, r"spot\['BTC'\] must be finite and > 0"),
    ({"BTC": -1.0}, r"spot\['BTC'\] must be finite and > 0"),
    ({"BTC": NAN}, r"spot\['BTC'\] must be finite"),
    ({"BTC": float("inf")}, r"spot\['BTC'\] must be finite"),
])
def test_market_state_rejects_non_positive_spot(spot, pattern):
    """Oracle: documented contract -- spot prices are finite and > 0; the error names the
    asset."""
    with pytest.raises(ValueError, match=pattern):
        MarketState(spot=spot)


def test_market_state_other_validation():
    """Oracle: documented contract -- vols >= 0 (0 allowed), rate in [-1, 1], mappings only."""
    assert MarketState(spot={"BTC": 1.0}, vol={"BTC": 0.0}).implied_vol("BTC") == 0.0
    with pytest.raises(ValueError, match=r"vol\['BTC'\] must be finite and >= 0"):
        MarketState(spot={"BTC": 1.0}, vol={"BTC": -0.1})
    with pytest.raises(ValueError, match="rate must be"):
        MarketState(spot={"BTC": 1.0}, rate=2.0)
    with pytest.raises(TypeError, match="spot must be a mapping"):
        MarketState(spot=[("BTC", 1.0)])


def test_market_state_missing_names_raise_key_error_naming_asset():
    """Oracle: documented contract -- a missing price or vol raises KeyError naming it."""
    with pytest.raises(KeyError, match="no spot price for 'SOL'"):
        MARKET.price("SOL")
    m = MarketState(spot={"BTC": 50000.0, "ETH": 2500.0}, vol={"BTC": 0.6})
    with pytest.raises(KeyError, match="no implied vol for 'eth'"):
        m.implied_vol("eth")


# ----------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize("steps_per_day, horizon_days", [(1, 10), (4, 10), (1, 2.5), (3, 1)])
@pytest.mark.parametrize("seed", [7, np.random.SeedSequence(2024)])
def test_gbm_scenarios_are_simulate_terminal(steps_per_day, horizon_days, seed):
    """Oracle (law): prices are simulate_terminal draws from today's spots with the same seed,
    n_steps = round(horizon_days x steps_per_day) and dt = horizon / n_steps, bit for bit."""
    n_steps = max(1, round(horizon_days * steps_per_day))
    s = monte_carlo_scenarios(GBM2, MARKET, ["btc", "ETH"], horizon_days=horizon_days,
                              n_scenarios=2000, seed=seed, steps_per_day=steps_per_day)
    ref = simulate_terminal(GBM2, [50000.0, 2500.0], n_steps=n_steps,
                            dt=horizon_days / 365.0 / n_steps, n_paths=2000, seed=seed)
    np.testing.assert_array_equal(s.prices, ref)
    assert s.underlyings == ("BTC", "ETH")
    assert s.horizon == horizon_days / 365.0
    assert s.labels == ()
    np.testing.assert_array_equal(s.vol_shock, np.ones_like(ref))


def test_merton_scenarios_are_simulate_terminal():
    """Oracle (law): as for GBM, for the Merton jump model (antithetic as well)."""
    model = MertonJump(mu=0.0, sigma=0.5, lam=20.0, jump_mean=-0.03, jump_std=0.05)
    s = monte_carlo_scenarios(model, MARKET, ["BTC"], horizon_days=3, n_scenarios=1000,
                              seed=11, antithetic=True)
    ref = simulate_terminal(model, [50000.0], n_steps=3, dt=1.0 / 365.0, n_paths=1000,
                            seed=11, antithetic=True)
    np.testing.assert_array_equal(s.prices, ref)


@pytest.mark.parametrize("step_hours, horizon_days, n_steps",
                         [(24, 5, 5), (1, 1, 24), (8, 2, 6)])
def test_garch_horizon_in_whole_steps(step_hours, horizon_days, n_steps):
    """Oracle (law): a GARCH horizon of horizon_days is horizon_days / step whole steps, and
    the prices equal simulate_terminal with dt = the model's step, bit for bit."""
    model = GARCH(omega=1e-6, alpha=0.08, beta=0.9, step=step_hours / (365.0 * 24.0))
    s = monte_carlo_scenarios(model, MARKET, ["BTC"], horizon_days=horizon_days,
                              n_scenarios=1500, seed=5)
    ref = simulate_terminal(model, [50000.0], n_steps=n_steps, dt=model.step, n_paths=1500,
                            seed=5)
    np.testing.assert_array_equal(s.prices, ref)
    assert s.horizon == pytest.approx(horizon_days / 365.0, rel=1e-15)


@pytest.mark.parametrize("step_hours, horizon_days", [(24, 2.5), (24, 0.5), (8, 1.5),
                                                      (1, 1.0 / 48.0)])
def test_garch_horizon_not_whole_steps_raises(step_hours, horizon_days):
    """Oracle: documented contract -- GARCH needs a whole number (>= 1) of steps."""
    model = GARCH(omega=1e-6, alpha=0.08, beta=0.9, step=step_hours / (365.0 * 24.0))
    with pytest.raises(ValueError, match="not a whole number of the GARCH model's steps"):
        monte_carlo_scenarios(model, MARKET, ["BTC"], horizon_days=horizon_days,
                              n_scenarios=10, seed=5)


def test_monte_carlo_argument_errors():
    """Oracle: documented contract -- one underlying per model asset, positive horizon,
    vol_price_corr in [-1, 1], vol_of_vol >= 0, steps_per_day an int >= 1."""
    kw = dict(horizon_days=1, n_scenarios=10, seed=1)
    with pytest.raises(ValueError, match="model has 2 assets but 1 underlyings"):
        monte_carlo_scenarios(GBM2, MARKET, ["BTC"], **kw)
    with pytest.raises(ValueError, match="horizon_days must be"):
        monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], horizon_days=0.0, n_scenarios=10,
                              seed=1)
    with pytest.raises(ValueError, match="vol_price_corr must be"):
        monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], vol_price_corr=-1.5, **kw)
    with pytest.raises(ValueError, match="vol_of_vol must be"):
        monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], vol_of_vol=-0.1, **kw)
    with pytest.raises(ValueError, match="steps_per_day must be an int >= 1"):
        monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], steps_per_day=0, **kw)
    with pytest.raises(KeyError, match="SOL"):
        monte_carlo_scenarios(GBM2, MARKET, ["BTC", "SOL"], **kw)


def _w_and_zr(s: ScenarioSet, nu: float, s0: np.ndarray):
    """Invert the documented shock law: W = (log shock + nu^2 h / 2) / (nu sqrt h), and the
    standardised log return Z_r of each column."""
    h = s.horizon
    w = (np.log(s.vol_shock) + 0.5 * nu * nu * h) / (nu * math.sqrt(h))
    logr = np.log(s.prices / s0)
    zr = (logr - logr.mean(axis=0)) / logr.std(axis=0)
    return w, zr


N_MC = 20000


@pytest.mark.parametrize("rho", [-0.5, 0.0, 0.7])
def test_vol_shock_mean_one_and_correlation(rho):
    """Oracle (closed form): E[shock] = 1 (the -nu^2 h / 2 compensator) and
    corr(W, Z_r) = rho, per underlying; W ~ N(0, 1). Tolerances: 4 standard errors --
    sd / sqrt(n) for the mean, (1 - rho^2) / sqrt(n) for the sample correlation, sqrt(2 / n)
    for the sample variance of W (normal: Var(s^2) = 2 / n)."""
    nu = 1.5
    s = monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], horizon_days=30,
                              n_scenarios=N_MC, seed=123, vol_of_vol=nu, vol_price_corr=rho)
    shock = s.vol_shock
    assert shock.shape == (N_MC, 2) and np.all(shock > 0)
    se_mean = shock.std(axis=0, ddof=1) / math.sqrt(N_MC)
    np.testing.assert_array_less(np.abs(shock.mean(axis=0) - 1.0), 4 * se_mean)
    w, zr = _w_and_zr(s, nu, np.array([50000.0, 2500.0]))
    for j in range(2):
        corr = np.corrcoef(w[:, j], zr[:, j])[0, 1]
        assert abs(corr - rho) < 4 * (1 - rho * rho) / math.sqrt(N_MC) + 1e-12, (j, corr)
        assert abs(w[:, j].mean()) < 4 / math.sqrt(N_MC)
        assert abs(w[:, j].var() - 1.0) < 4 * math.sqrt(2.0 / N_MC)


def test_vol_shock_perfect_negative_correlation_is_exact():
    """Oracle (closed form): with rho = -1, W = -Z_r exactly (no independent part)."""
    nu = 0.8
    s = monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], horizon_days=7, n_scenarios=500,
                              seed=9, vol_of_vol=nu, vol_price_corr=-1.0)
    w, zr = _w_and_zr(s, nu, np.array([50000.0, 2500.0]))
    np.testing.assert_allclose(w, -zr, atol=1e-9)


def test_vol_shock_does_not_change_prices_and_is_reproducible():
    """Oracle (law): prices use the seed directly whatever vol_of_vol (common random numbers);
    the same seed gives the same shocks, another seed other shocks."""
    kw = dict(horizon_days=5, n_scenarios=800, vol_of_vol=1.0)
    a = monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], seed=3, **kw)
    b = monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], seed=3, **kw)
    c = monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], seed=4, **kw)
    plain = monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], seed=3, horizon_days=5,
                                  n_scenarios=800)
    np.testing.assert_array_equal(a.prices, plain.prices)
    np.testing.assert_array_equal(a.vol_shock, b.vol_shock)
    assert not np.array_equal(a.vol_shock, c.vol_shock)


def test_vol_of_vol_zero_gives_all_ones():
    """Oracle: documented contract -- vol_of_vol = 0 keeps vols unchanged (shock == 1)."""
    s = monte_carlo_scenarios(GBM2, MARKET, ["BTC", "ETH"], horizon_days=10, n_scenarios=300,
                              seed=1, vol_of_vol=0.0, vol_price_corr=-0.9)
    assert np.all(s.vol_shock == 1.0)


# ----------------------------------------------------------------------------- grids
MOVES = (-0.1, 0.0, 0.1)
SHOCKS = (0.8, 1.0, 1.25)


def test_joint_grid_sizes_prices_labels():
    """Oracle: hand-written grid -- 3 moves x 3 vol shocks = 9 scenarios, move-major; all
    underlyings move together: row 0 is BTC 50000 x 0.9 = 45000, ETH 2500 x 0.9 = 2250, both
    vols x 0.8, labelled 'all price -10.00% vol x0.8'."""
    g = grid_scenarios(MARKET, ["btc", "eth"], price_moves=MOVES, vol_shocks=SHOCKS,
                       horizon_days=1)
    assert g.n_scenarios == 9 and g.underlyings == ("BTC", "ETH")
    assert g.horizon == 1 / 365
    np.testing.assert_allclose(g.prices[0], [45000.0, 2250.0], rtol=1e-15)
    np.testing.assert_array_equal(g.vol_shock[0], [0.8, 0.8])
    np.testing.assert_allclose(g.prices[8], [55000.0, 2750.0], rtol=1e-15)
    np.testing.assert_array_equal(g.vol_shock[8], [1.25, 1.25])
    np.testing.assert_array_equal(g.prices[3:6], np.tile([50000.0, 2500.0], (3, 1)))
    assert g.labels[0] == "all price -10.00% vol x0.8"
    assert g.labels[4] == "all price +0.00% vol x1"
    assert g.labels[8] == "all price +10.00% vol x1.25"
    assert len(set(g.labels)) == 9


def test_per_underlying_grid_sizes_prices_labels():
    """Oracle: hand-written grid -- per underlying, 2 underlyings x 3 x 3 = 18 scenarios;
    the first 9 move BTC alone (ETH stays 2500 with vol shock 1), the next 9 ETH alone."""
    g = grid_scenarios(MARKET, ["BTC", "ETH"], price_moves=MOVES, vol_shocks=SHOCKS,
                       joint=False)
    assert g.n_scenarios == 18 and g.horizon == 0.0
    np.testing.assert_array_equal(g.prices[:9, 1], 2500.0)
    np.testing.assert_array_equal(g.vol_shock[:9, 1], 1.0)
    np.testing.assert_array_equal(g.prices[9:, 0], 50000.0)
    np.testing.assert_array_equal(g.vol_shock[9:, 0], 1.0)
    np.testing.assert_allclose(g.prices[0, 0], 45000.0, rtol=1e-15)
    np.testing.assert_allclose(g.prices[17, 1], 2750.0, rtol=1e-15)
    assert g.labels[0] == "BTC price -10.00% vol x0.8"
    assert g.labels[17] == "ETH price +10.00% vol x1.25"
    assert all(lab.startswith("BTC") for lab in g.labels[:9])
    assert all(lab.startswith("ETH") for lab in g.labels[9:])


@pytest.mark.parametrize("kw, pattern", [
    (dict(price_moves=()), "price_moves must be a non-empty"),
    (dict(price_moves=(-1.0, 0.1)), "price_moves must be a non-empty sequence of moves > -1"),
    (dict(price_moves=(NAN,)), "price_moves"),
    (dict(price_moves=(0.1,), vol_shocks=(-0.5,)), "vol_shocks must be"),
    (dict(price_moves=(0.1,), vol_shocks=()), "vol_shocks must be"),
    (dict(price_moves=(0.1,), horizon_days=-1.0), "horizon_days must be"),
])
def test_grid_errors(kw, pattern):
    """Oracle: documented contract of grid_scenarios' arguments."""
    with pytest.raises(ValueError, match=pattern):
        grid_scenarios(MARKET, ["BTC"], **kw)


# ----------------------------------------------------------------------------- ScenarioSet
def _set(**over):
    base = dict(underlyings=("BTC", "ETH"), prices=np.full((3, 2), 10.0),
                vol_shock=np.ones((3, 2)), horizon=0.01)
    base.update(over)
    return ScenarioSet(**base)


@pytest.mark.parametrize("over, pattern", [
    (dict(prices=np.full((3, 3), 10.0)), r"prices must have shape \(n_scenarios, 2\)"),
    (dict(prices=np.full(3, 10.0)), r"prices must have shape"),
    (dict(vol_shock=np.ones((2, 2))), r"vol_shock must have shape \(3, 2\)"),
    (dict(prices=np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 1.0]])), "prices must be finite and > 0"),
    (dict(prices=np.array([[1.0, 2.0], [NAN, 1.0], [1.0, 1.0]])), "prices must be finite"),
    (dict(vol_shock=np.array([[1.0, 1.0], [1.0, -0.1], [1.0, 1.0]])),
     "vol_shock must be finite and >= 0"),
    (dict(horizon=-0.1), "horizon must be"),
    (dict(labels=("a", "b")), r"labels must name every scenario \(3\), got 2"),
])
def test_scenario_set_validation(over, pattern):
    """Oracle: documented contract -- shapes agree, prices finite > 0, shocks finite >= 0,
    horizon >= 0, one label per scenario."""
    with pytest.raises(ValueError, match=pattern):
        _set(**over)


def test_scenario_set_is_read_only_and_indexes_columns():
    """Oracle: documented contract -- arrays are frozen copies; column() is case-insensitive
    and a missing underlying raises KeyError naming it."""
    src = np.full((3, 2), 10.0)
    s = _set(prices=src, underlyings=("btc", "Eth"))
    src[0, 0] = 99.0
    assert s.prices[0, 0] == 10.0
    with pytest.raises(ValueError):
        s.prices[0, 0] = 1.0
    assert s.underlyings == ("BTC", "ETH")
    assert s.column("eth") == 1
    with pytest.raises(KeyError, match="no underlying 'SOL'"):
        s.column("SOL")
