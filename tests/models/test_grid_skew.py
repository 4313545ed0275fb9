"""SPAN-like volatility-shape scenarios (``skew_scan``, ``term_scan``).

Oracles: laws (a zero scan is today's grid bit for bit; linear holdings do not see vol
shapes; the classic 16 scenarios are unchanged by the extra ones) and brute force (a 25-delta
risk reversal on an SSVI surface revalued with the Black-Scholes closed form, scipy's normal
CDF, at the skew-shocked vols ``sigma (1 + d v) exp(s x)``, ``x = 2 tanh(k / (2 sqrt T))``,
on every scenario of the table).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from marginlab.models import Book, MarketState
from marginlab.models.margin.grid import SPAN_SCENARIOS, DeribitLike, SpanLike
from marginlab.models.vol_surface import VolSurface

NAN = float("nan")
S0 = 60_000.0
RATE = 0.03
T = 30.0 / 365.0
H_DAYS = 1.0
SURFACE = VolSurface.ssvi(0.6, rho=-0.3, eta=1.0, gamma=0.5, term_slope=-0.1)
MARKET = MarketState(spot={"BTC": S0, "ETH": 3_000.0}, vol={"ETH": 0.7}, rate=RATE,
                     surfaces={"BTC": SURFACE})


def bs(s, k, t, sigma, r, call):
    """Black-Scholes value (no dividends), the closed form every option number here uses."""
    if t <= 0.0:
        return max(s - k, 0.0) if call else max(k - s, 0.0)
    v = sigma * math.sqrt(t)
    d1 = (math.log(s / k) + r * t) / v + 0.5 * v
    d2 = d1 - v
    if call:
        return s * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * norm.cdf(-d1)


def surface_vol(k):
    return float(SURFACE.iv(np.array([k]), np.array([T]), S0, RATE)[0])


def strike_25d(call):
    """Strike whose Black-Scholes delta at its own surface vol is +0.25 (call) / -0.25."""
    def f(k):
        v = surface_vol(k) * math.sqrt(T)
        d1 = (math.log(S0 / k) + RATE * T) / v + 0.5 * v
        return (norm.cdf(d1) - 0.25) if call else (norm.cdf(d1) - 1.0 + 0.25)
    return brentq(f, 0.3 * S0, 3.0 * S0, xtol=1e-10)


K_CALL, K_PUT = strike_25d(True), strike_25d(False)


def make_book(instruments, positions, collateral=None) -> Book:
    cols = ["instrument_id", "type", "underlying", "multiplier", "face_value", "strike",
            "expiry", "option_type"]
    inst = pd.DataFrame(instruments, columns=cols)
    pos = pd.DataFrame(positions, columns=["account_id", "instrument_id", "quantity",
                                           "entry_price"])
    col = None if collateral is None else pd.DataFrame(
        collateral, columns=["account_id", "asset", "amount"])
    return Book.from_frames(inst, pos, col)


INSTRUMENTS = [
    ("C25", "option", "BTC", 1.0, NAN, K_CALL, T, "call"),
    ("P25", "option", "BTC", 1.0, NAN, K_PUT, T, "put"),
    ("C90", "option", "BTC", 1.0, NAN, 70_000.0, 90 / 365, "call"),
    ("PERP", "linear_perp", "BTC", 1.0, NAN, NAN, NAN, None),
    ("FUT", "linear_future", "BTC", 1.0, NAN, NAN, 0.25, None),
    ("IPERP", "inverse_perp", "BTC", NAN, 100.0, NAN, NAN, None),
    ("EC", "option", "ETH", 1.0, NAN, 3_200.0, T, "call"),
]
BOOK = make_book(INSTRUMENTS, [
    ("rr", "C25", 1.0, 1.0), ("rr", "P25", -1.0, 1.0),           # long 25-delta risk reversal
    ("mix", "C90", -2.0, 1.0), ("mix", "PERP", 1.0, 1.0), ("mix", "EC", 3.0, 1.0),
    ("lin", "PERP", 2.0, 1.0), ("lin", "FUT", -1.0, 1.0), ("lin", "IPERP", -300.0, 1.0),
    ("cal", "C25", -1.0, 1.0), ("cal", "C90", 1.0, 1.0),
], [("lin", "BTC", 0.5), ("rr", "USDT", 10_000.0)])
PRICE_SCAN = {"BTC": 0.1, "ETH": 0.12}
VOL_SCAN = {"BTC": 0.25, "ETH": 0.3}


def span(**kw) -> SpanLike:
    return SpanLike(PRICE_SCAN, VOL_SCAN, short_option_minimum={"BTC": 0.005},
                    horizon_days=H_DAYS, **kw)


def row(book, account):
    return int(np.flatnonzero(book.account_ids == account)[0])


def assert_same(a, b):
    np.testing.assert_array_equal(a.im, b.im)
    np.testing.assert_array_equal(a.mm, b.mm)
    assert list(a.driver) == list(b.driver)
    for key in a.details:
        np.testing.assert_array_equal(a.details[key], b.details[key])


def test_zero_scans_are_todays_grid_bit_for_bit():
    """Law: ``skew_scan = term_scan = 0`` (explicit, or a mapping naming only an underlying
    with no scan) is today's SPAN-like grid: same IM, MM, driver, details, allocation and
    16-column risk arrays on a book with options, bit for bit."""
    base = span().compute(BOOK, MARKET)
    for kw in ({"skew_scan": 0.0, "term_scan": 0.0}, {"skew_scan": {"BTC": 0.0}},
               {"skew_scan": {"SOL": 0.2}, "term_scan": {"SOL": 0.1}}):
        other = span(**kw).compute(BOOK, MARKET)
        assert_same(base, other)
        pd.testing.assert_frame_equal(base.allocation, other.allocation, check_exact=True)
        arrays = span(**kw).risk_arrays(BOOK, MARKET)
        assert all(a.shape[1] == len(SPAN_SCENARIOS) for a in arrays.values())
        assert len(span(**kw).scenario_table("BTC")) == len(SPAN_SCENARIOS)
    assert base.im[row(BOOK, "rr")] > 0.0


def test_classic_scenarios_unchanged_and_linear_holdings_unaffected():
    """Law: with skew and term scans the first 16 risk-array columns are the classic ones
    bit for bit; linear contracts, spot collateral and inverse perpetuals do not depend on
    the vols, so their extra columns repeat scenarios 1-14 (in each shape block) and their
    IM, MM and driver are unchanged."""
    kw = {"skew_scan": 0.1, "term_scan": {"BTC": 0.05}}
    old, new = span().risk_arrays(BOOK, MARKET), span(**kw).risk_arrays(BOOK, MARKET)
    for g in old:
        np.testing.assert_array_equal(new[g][:, :16], old[g])
    assert new["BTC"].shape[1] == 16 + 8 * 14   # skew and term: 8 shape moves
    assert new["ETH"].shape[1] == 16 + 2 * 14   # skew only
    lin = row(BOOK, "lin")
    blocks = new["BTC"][lin, 16:].reshape(8, 14)
    np.testing.assert_array_equal(blocks, np.tile(old["BTC"][lin, :14], (8, 1)))
    a, b = span().compute(BOOK, MARKET), span(**kw).compute(BOOK, MARKET)
    assert a.im[lin] == b.im[lin] and a.mm[lin] == b.mm[lin] and a.driver[lin] == b.driver[lin]
    assert a.im[lin] > 0.0
    # margins never fall: the classic scenarios are still scanned
    assert np.all(b.im >= a.im)


def brute_force_rr_losses(method: SpanLike) -> np.ndarray:
    """Loss of the long risk reversal in every scenario of ``method``'s table (weights
    applied), Black-Scholes at the shocked price, level and skew."""
    table = method.scenario_table("BTC")
    h = H_DAYS / 365.0
    out = []
    for _, sc in table.iterrows():
        s = S0 * (1.0 + sc["price_move"])
        pnl = 0.0
        for k, call, q in ((K_CALL, True, 1.0), (K_PUT, False, -1.0)):
            sigma = surface_vol(k)
            x = 2.0 * math.tanh(math.log(k / (S0 * math.exp(RATE * T))) / (2.0 * math.sqrt(T)))
            y = math.log(T / (30.0 / 365.0))
            shocked = sigma * sc["vol_factor"] * math.exp(sc["skew_shock"] * x
                                                          + sc["term_shock"] * y)
            pnl += q * (bs(s, k, T - h, shocked, RATE, call) - bs(S0, k, T, sigma, RATE, call))
        out.append(-pnl * sc["weight"])
    return np.array(out)


@pytest.mark.parametrize("skew_scan", [0.05, 0.15])
def test_risk_reversal_margin_grows_by_the_brute_force_skew_loss(skew_scan):
    """Brute force: a long 25-delta risk reversal (long call, short put, SSVI surface with a
    put skew) gets a larger SPAN-like margin with ``skew_scan > 0``; the increase of its
    maintenance margin equals the Black-Scholes revaluation of the pair at the worst
    skew-shocked scenario minus its worst classic scenario (no SOM binds: checked), IM is
    1.1 x MM, and the driver is the brute-force worst scenario's label (a skew-down one)."""
    method = span(skew_scan=skew_scan)
    rr = row(BOOK, "rr")
    loss = brute_force_rr_losses(method)
    worst_classic, worst_all = loss[:16].max(), loss.max()
    assert worst_all > worst_classic * 1.01
    base, res = span().compute(BOOK, MARKET), method.compute(BOOK, MARKET)
    assert res.details["short_option_minimum"][rr] < res.details["scanning_risk"][rr]
    np.testing.assert_allclose(base.mm[rr], worst_classic, rtol=1e-9)
    np.testing.assert_allclose(res.mm[rr], worst_all, rtol=1e-9)
    np.testing.assert_allclose(res.mm[rr] - base.mm[rr], worst_all - worst_classic, rtol=1e-7)
    np.testing.assert_allclose(res.im[rr], 1.1 * res.mm[rr], rtol=1e-12)
    label = method.scenario_table("BTC")["label"].iloc[int(np.argmax(loss))]
    assert res.driver[rr] == f"BTC {label}"
    assert "skew down" in res.driver[rr]
    # the whole risk array matches the brute force, scenario by scenario
    np.testing.assert_allclose(method.risk_arrays(BOOK, MARKET)["BTC"][rr], loss,
                               rtol=1e-9, atol=1e-6)


def test_term_scan_charges_an_option_calendar_spread():
    """Brute force: a calendar spread of calls (short 30 days, long 90 days) loses when the
    term slope falls; with ``term_scan`` its scanning risk is the Black-Scholes worst over
    the term-shocked table, above the classic one."""
    method = span(term_scan=0.1)
    h = H_DAYS / 365.0
    table = method.scenario_table("BTC")
    legs = ((K_CALL, T, -1.0), (70_000.0, 90 / 365, 1.0))
    loss = []
    for _, sc in table.iterrows():
        s = S0 * (1.0 + sc["price_move"])
        pnl = 0.0
        for k, t, q in legs:
            sigma = float(SURFACE.iv(np.array([k]), np.array([t]), S0, RATE)[0])
            x = 2.0 * math.tanh(math.log(k / (S0 * math.exp(RATE * t))) / (2.0 * math.sqrt(t)))
            shocked = sigma * sc["vol_factor"] * math.exp(sc["skew_shock"] * x
                                                          + sc["term_shock"]
                                                          * math.log(t / (30 / 365)))
            pnl += q * (bs(s, k, t - h, shocked, RATE, True) - bs(S0, k, t, sigma, RATE, True))
        loss.append(-pnl * sc["weight"])
    loss = np.array(loss)
    cal = row(BOOK, "cal")
    res, base = method.compute(BOOK, MARKET), span().compute(BOOK, MARKET)
    assert loss.max() > loss[:16].max()
    np.testing.assert_allclose(res.details["scanning_risk"][cal], loss.max(), rtol=1e-9)
    np.testing.assert_allclose(base.details["scanning_risk"][cal], loss[:16].max(), rtol=1e-9)
    assert "term down" in res.driver[cal]


@pytest.mark.parametrize("bad, err", [(-0.1, ValueError), (1.5, ValueError),
                                      ("0.1", TypeError), ({"BTC": -1.0}, ValueError),
                                      (True, TypeError)])
def test_scan_validation_names_the_argument(bad, err):
    """Law: invalid scans are refused at the boundary, naming the argument."""
    for name in ("skew_scan", "term_scan"):
        with pytest.raises(err, match=name):
            span(**{name: bad})


def test_deribit_like_keeps_its_documented_matrix():
    """Law: DeribitLike has no skew dimension (Deribit's documented risk matrix is price x
    vol level); it takes no ``skew_scan`` and says so in its docstring."""
    with pytest.raises(TypeError):
        DeribitLike(skew_scan=0.1)  # type: ignore[call-arg]
    assert "skew" in (DeribitLike.__doc__ or "")
