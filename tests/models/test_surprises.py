"""No surprises (issue 15, item 4): shared scenarios are explicit, cascades take days,
unmargined positions are named, prices are not mistaken for returns, warnings point at the
caller, and seeds accept what numpy's SPEC 7 asks (a Generator included)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from marginlab.models import GBM, Book, MarketState
from marginlab.models._warn import SharedScenariosWarning
from marginlab.models.book import BookWarning
from marginlab.models.calibration import CalibrationWarning, fit, fit_merton
from marginlab.models.compare import compare
from marginlab.models.history import PriceHistory
from marginlab.models.liquidation import LiquidationRules, PriceImpact, simulate_liquidations
from marginlab.models.margin.brackets import binance_btcusdt_2021
from marginlab.models.margin.exchange import TieredMargin
from marginlab.models.margin.risk_based import MonteCarloMargin
from marginlab.models.scenarios import monte_carlo_scenarios
from marginlab.models.synthetic import make_book
from marginlab.simulate import simulate_paths
from marginlab.simulate.rng import normalize_seed, seed_key
from marginlab.simulate.tail_sampling import child_seed

MARKET = MarketState(spot={"BTC": 50_000.0}, vol={"BTC": 0.6})


def _perp_book(accounts=("a", "b"), qty=(1.0, -2.0)) -> Book:
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": list(accounts), "instrument_id": "BTC-PERP",
                        "quantity": list(qty), "entry_price": 50_000.0})
    col = pd.DataFrame({"account_id": list(accounts), "asset": "USDT", "amount": 5_000.0})
    return Book.from_frames(inst, pos, col)


def _recorded(w, category):
    return [x for x in w if issubclass(x.category, category)]


# ============================================================================ compare
@dataclasses.dataclass(frozen=True)
class _Recorder:
    """A margin method that records which scenarios it was handed (None: its own)."""

    name: str
    uses_shared_scenarios: bool = True
    seen: list = dataclasses.field(default_factory=list)

    def compute(self, book, market, *, scenarios=None):
        self.seen.append(scenarios)
        return TieredMargin({"BTC": binance_btcusdt_2021()}, name=self.name).compute(book, market)


def test_compare_shared_scenarios_are_explicit():
    """Oracle: brute force (recording methods). One ScenarioSet without ``shared`` still
    goes to every method with uses_shared_scenarios, but warns, naming them, at this file's
    line; ``shared=[...]`` hands it to the named methods only, silently; a mapping gives each
    named method its own set and the others none; unknown names raise."""
    book = _perp_book()
    s1 = monte_carlo_scenarios(GBM(0.0, 0.6), MARKET, ["BTC"], horizon_days=2,
                               n_scenarios=100, seed=1)
    s2 = monte_carlo_scenarios(GBM(0.0, 0.9), MARKET, ["BTC"], horizon_days=2,
                               n_scenarios=100, seed=2)
    a, b, c = _Recorder("a"), _Recorder("b"), _Recorder("c", uses_shared_scenarios=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        compare(book, MARKET, [a, b, c], scenarios=s1, isolated=False)
    hit = _recorded(w, SharedScenariosWarning)
    assert len(hit) == 1 and "['a', 'b']" in str(hit[0].message)
    assert hit[0].filename == __file__
    assert a.seen == [s1] and b.seen == [s1] and c.seen == [None]

    a, b, c = _Recorder("a"), _Recorder("b"), _Recorder("c", uses_shared_scenarios=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharedScenariosWarning)
        compare(book, MARKET, [a, b, c], scenarios=s1, shared=["a"], isolated=False)
        assert a.seen == [s1] and b.seen == [None] and c.seen == [None]
        a, b, c = _Recorder("a"), _Recorder("b"), _Recorder("c", uses_shared_scenarios=False)
        compare(book, MARKET, [a, b, c], scenarios={"b": s2, "c": s1})
        assert a.seen == [None, None] and b.seen == [s2, s2] and c.seen == [s1, s1]
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['x'\]"):
        compare(book, MARKET, [a], scenarios=s1, shared=["x"])
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['x'\]"):
        compare(book, MARKET, [a], scenarios={"x": s1})


def test_compare_a_garch_method_keeps_its_model_unless_named():
    """Oracle: law. A Monte Carlo method left out of ``shared`` computes exactly what it
    computes alone (its own model and seed); named, it equals its compute on the shared
    set."""
    book = _perp_book()
    own = MonteCarloMargin(GBM(0.0, 1.5), ["BTC"], horizon_days=2, n_scenarios=2000, seed=7,
                           name="own")
    other = MonteCarloMargin(GBM(0.0, 0.5), ["BTC"], horizon_days=2, n_scenarios=2000,
                             seed=7, name="other")
    shared = monte_carlo_scenarios(GBM(0.0, 0.5), MARKET, ["BTC"], horizon_days=2,
                                   n_scenarios=2000, seed=3)
    t = compare(book, MARKET, [own, other], scenarios=shared, shared=["other"],
                isolated=False).set_index(["method", "account_id"])["im"]
    np.testing.assert_array_equal(t["own"].to_numpy(), own.compute(book, MARKET).im)
    np.testing.assert_array_equal(t["other"].to_numpy(),
                                  other.compute(book, MARKET, scenarios=shared).im)


# ============================================================================ cascades in days
def test_cascades_take_days_and_the_years_keywords_warn():
    """Oracle: law (unit conversion). horizon_days=2 gives bit-identical results to the
    deprecated horizon=2/365 with the same seed; the deprecated keyword warns
    (DeprecationWarning) at this file's line; PriceImpact(half_life=h years) equals
    PriceImpact(half_life_days=365 h) and dataclasses.replace keeps it silent."""
    book = _perp_book()
    rules = LiquidationRules(maintenance={"BTC": 0.005})
    kw = dict(rules=rules, n_paths=300, n_steps=12, seed=4)
    new = simulate_liquidations(book, MARKET, GBM(0.0, 1.0), horizon_days=2, **kw)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        old = simulate_liquidations(book, MARKET, GBM(0.0, 1.0), horizon=2 / 365, **kw)
    dep = _recorded(w, DeprecationWarning)
    assert len(dep) == 1 and "horizon_days=2" in str(dep[0].message)
    assert dep[0].filename == __file__
    np.testing.assert_array_equal(new.raw.path, old.raw.path)
    assert new.horizon_days == pytest.approx(2.0) and new.horizon == pytest.approx(2 / 365)
    with pytest.raises(ValueError, match="horizon_days"):
        simulate_liquidations(book, MARKET, GBM(0.0, 1.0), horizon_days=2, horizon=0.01, **kw)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        years = PriceImpact(depth={"BTC": 1e8}, sqrt=0.01, half_life={"BTC": 1 / 8760})
    dep = _recorded(w, DeprecationWarning)
    assert len(dep) == 1 and dep[0].filename == __file__
    days = PriceImpact(depth={"BTC": 1e8}, sqrt=0.01, half_life_days={"BTC": 1 / 24})
    assert years.half_life_days["BTC"] == pytest.approx(1 / 24)
    assert days.half_life["BTC"] == pytest.approx(1 / 8760)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = dataclasses.replace(days, linear=0.02)
    assert again.half_life_days == days.half_life_days
    assert PriceImpact(depth=1e8).half_life_days == float("inf")


# ============================================================================ tiered
def test_tiered_names_the_positions_it_does_not_margin():
    """Oracle: the documented label. An account holding only an option under a tiered
    (futures-only) method with on_unsupported='ignore' gets IM 0 and a driver naming the
    option and its type; an account without positions keeps "no positions"."""
    inst = pd.DataFrame({"instrument_id": ["BTCUSDT", "BTC-C"],
                         "type": ["linear_perp", "option"], "underlying": ["BTC", "BTC"],
                         "strike": [np.nan, 60_000.0], "expiry": [np.nan, 0.1],
                         "option_type": [None, "call"]})
    pos = pd.DataFrame({"account_id": ["a", "opt"], "instrument_id": ["BTCUSDT", "BTC-C"],
                        "quantity": [1.0, -1.0], "entry_price": [50_000.0, 1_000.0]})
    col = pd.DataFrame({"account_id": ["a", "opt", "cash"], "asset": "USDT",
                        "amount": 1_000.0})
    res = TieredMargin({"BTC": binance_btcusdt_2021()}, on_unsupported="ignore").compute(
        Book.from_frames(inst, pos, col), MARKET)
    d = dict(zip(res.account_ids, res.driver, strict=True))
    assert d["opt"] == "not margined by tiered-cross: BTC-C (option)"
    assert d["cash"] == "no positions"
    assert res.im[list(res.account_ids).index("opt")] == 0.0


# ============================================================================ prices to fit()
def test_fit_given_prices_says_prices():
    """Oracle: the documented rule (ten or more values, all positive, are prices). A price
    Series (levels near 0.05, whose standard deviation would pass the percent check) and a
    BTC-like price level both raise naming prices and how to pass them; their log returns
    fit; a PriceHistory of the same prices fits to the same estimates."""
    path = simulate_paths(GBM(0.0, 0.6), 0.05, n_steps=200, dt=1 / 365, n_paths=1,
                          seed=1)[0, :, 0]
    for level in (1.0, 1.2e6):
        s = pd.Series(path * level, name="ETHBTC")
        with pytest.raises(ValueError, match="looks like prices, not returns") as e:
            fit(s)
        assert "PriceHistory" in str(e.value) and "numpy.diff(numpy.log(prices))" in str(e.value)
    r = fit(np.diff(np.log(path)))
    days = pd.date_range("2024-01-01", periods=path.size, freq="D").to_numpy()
    h = fit(PriceHistory(days, path))
    assert r.params["sigma"][0] == pytest.approx(h.params["sigma"][0], rel=1e-12)


# ============================================================================ warnings
def test_calibration_warnings_point_at_the_caller():
    """Oracle: the warnings module's attribution. The Merton fit on GBM data warns that
    jumps sit on a bound (test_calibration's case); called directly or through fit() by
    name, the warning's filename is this test file, not a library module."""
    r = np.diff(np.log(simulate_paths(GBM(0.0, 0.5), 1.0, n_steps=2000, dt=1 / 365,
                                      n_paths=1, seed=2)[0, :, 0]))
    for call in (lambda: fit_merton(r), lambda: fit(r, model="merton")):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            call()
        cal = _recorded(w, CalibrationWarning)
        assert cal and all(x.filename == __file__ for x in cal), [x.filename for x in cal]


def test_book_warnings_point_at_the_caller():
    """Oracle: the warnings module's attribution. Duplicate position rows warn (BookWarning)
    at the line that built the book, though the frames are validated several calls deep."""
    inst = pd.DataFrame({"instrument_id": ["X"], "type": ["linear_perp"], "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "a"], "instrument_id": ["X", "X"],
                        "quantity": [1.0, 2.0], "entry_price": [1.0, 1.0]})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Book.from_frames(inst, pos)
    hit = _recorded(w, BookWarning)
    assert len(hit) == 1 and hit[0].filename == __file__


# ============================================================================ seeds
def test_a_generator_is_a_seed_everywhere():
    """Oracles: the documented derivation and reproducibility. A Generator seed equals the
    SeedSequence drawn from an identical generator, SeedSequence(gen.integers(2**63,
    size=4)) (so block reproducibility is that of a SeedSequence); two generators in the
    same state give the same paths, books, scenarios and child streams; bad seeds name the
    accepted types."""
    def gen():
        return np.random.default_rng(12345)

    ss = np.random.SeedSequence(gen().integers(2**63, size=4))
    np.testing.assert_array_equal(seed_key(gen()), seed_key(ss))
    kw = dict(n_steps=5, dt=1 / 365, n_paths=600)  # several blocks of 256 paths
    np.testing.assert_array_equal(simulate_paths(GBM(0.0, 0.6), 1.0, seed=gen(), **kw),
                                  simulate_paths(GBM(0.0, 0.6), 1.0, seed=ss, **kw))
    b1, b2 = make_book(20, seed=gen()), make_book(20, seed=gen())
    pd.testing.assert_frame_equal(b1.positions, b2.positions)
    sc = dict(horizon_days=2, n_scenarios=300, vol_of_vol=1.0)
    m1 = monte_carlo_scenarios(GBM(0.0, 0.6), MARKET, ["BTC"], seed=gen(), **sc)
    m2 = monte_carlo_scenarios(GBM(0.0, 0.6), MARKET, ["BTC"], seed=ss, **sc)
    np.testing.assert_array_equal(m1.prices, m2.prices)
    np.testing.assert_array_equal(m1.vol_shock, m2.vol_shock)
    c1 = child_seed(gen(), 1)
    np.testing.assert_array_equal(c1.generate_state(4), child_seed(ss, 1).generate_state(4))
    assert c1.spawn_key == (1,)
    res = [simulate_liquidations(_perp_book(), MARKET, GBM(0.0, 1.0), n_paths=300,
                                 seed=gen(), rules=LiquidationRules(maintenance={"BTC": 0.005}))
           for _ in range(2)]
    np.testing.assert_array_equal(res[0].raw.path, res[1].raw.path)
    assert normalize_seed(7) == 7 and normalize_seed(None) is None
    with pytest.raises(TypeError, match="Generator"):
        seed_key(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        seed_key(-1)


def test_a_monte_carlo_method_draws_its_generator_seed_once():
    """Oracle: reproducibility law. MonteCarloMargin(seed=Generator) turns the generator into
    one SeedSequence at construction: two computes give the same IM, equal to the method
    seeded with SeedSequence(gen.integers(2**63, size=4)) from an identical generator."""
    book = _perp_book()
    kw = dict(horizon_days=2, n_scenarios=2000)
    m = MonteCarloMargin(GBM(0.0, 0.6), ["BTC"], seed=np.random.default_rng(9), **kw)
    ss = np.random.SeedSequence(np.random.default_rng(9).integers(2**63, size=4))
    ref = MonteCarloMargin(GBM(0.0, 0.6), ["BTC"], seed=ss, **kw).compute(book, MARKET).im
    np.testing.assert_array_equal(m.compute(book, MARKET).im, ref)
    np.testing.assert_array_equal(m.compute(book, MARKET).im, ref)
