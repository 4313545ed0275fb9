"""Revaluation and per-account risk kernels of :mod:`marginlab.simulate.revalue` (through the
book pipeline of :mod:`marginlab.models.portfolio` where a book is needed).

Oracles, named per test: hand-worked P&L arithmetic written out in the tests (linear and
inverse contracts, funding); ``black_scholes_price`` / ``black_scholes_greeks`` of
:mod:`marginlab.simulate.pricing` and QuantLib's ``BlackCalculator`` (options at the scenario
price, remaining life ``tau - h``, shocked vol; the delta-gamma-vega-theta Taylor polynomial);
the intrinsic value (options expiring within the horizon); a sort-based numpy VaR / ES
reference (``ceil(n a)``-th smallest loss, Acerbi-Tasche ES with the fractional boundary
weight) on the materialised account P&L; self-consistency laws (ES >= VaR, allocations add up,
chunked == unchunked and 1 thread == 2 threads bit for bit, positive homogeneity, translation
by a constant P&L, cash carries no risk); closed forms for standard normal losses (VaR
2.326348, ES 2.665214 at 99 %, asymptotic standard errors sqrt(a (1 - a) / n) / phi(q) and
sqrt([Var(L | L > q) + a (ES - q)^2] / (n (1 - a))), exact binomial coverage of the
order-statistic interval) within 4 standard errors at fixed seeds.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np
import pandas as pd
import pytest
import QuantLib as ql  # a declared test dependency: fail loudly, never skip the oracle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binom, norm

from marginlab.models import (
    GBM,
    Book,
    MarketState,
    ScenarioSet,
    monte_carlo_scenarios,
    portfolio_risk,
    revalue,
)
from marginlab.models.portfolio import UnitPnL, account_pnl, holdings_matrix
from marginlab.simulate.pricing import (
    black_scholes_greeks,
    black_scholes_price,
    inverse_option_premium,
)
from marginlab.simulate.revalue import (
    KIND_INVERSE,
    KIND_LINEAR,
    KIND_OPTION,
    account_risk,
    level_indices,
    unit_pnl,
)

NAN = float("nan")
S0 = 50000.0


def _kw(n, **over):
    """unit_pnl keyword arguments for n instruments on underlying column 0."""
    base = dict(kind=np.full(n, KIND_LINEAR), underlying=np.zeros(n, np.int64),
                multiplier=np.ones(n), strike=np.ones(n), expiry=np.zeros(n),
                is_call=np.ones(n, bool), implied_vol=np.zeros(n), funding=np.zeros(n),
                horizon=0.0, rate=0.0)
    base.update(over)
    return base


# ----------------------------------------------------------------------------- linear, inverse
def test_linear_unit_pnl_hand_example():
    """Oracle: hand arithmetic, P&L = mult (S_T - S_0) - funding.
    mult 0.001, funding 15 USD: S_T = 40,000 -> 0.001 x (-10,000) - 15 = -25;
    S_T = 55,000 -> 0.001 x 5,000 - 15 = -10; mult 1, no funding, S_T = 40,000 -> -10,000."""
    prices = np.array([[40000.0], [55000.0]])
    out = unit_pnl(prices, None, [S0], **_kw(2, multiplier=np.array([0.001, 1.0]),
                                             funding=np.array([15.0, 0.0])))
    np.testing.assert_allclose(out, [[-25.0, -10.0], [-10000.0, 5000.0]], rtol=1e-14)


def test_inverse_unit_pnl_hand_example():
    """Oracle: hand arithmetic. 100 inverse contracts of 100 USD face, S_0 = 50,000,
    S_T = 40,000: coin P&L = 100 x 100 x (1/50,000 - 1/40,000) = 10,000 x (-0.000005)
    = -0.05 BTC, worth -0.05 x 40,000 = -2,000 USD at the scenario price; per contract
    face (S_T/S_0 - 1) = 100 x (0.8 - 1) = -20 USD."""
    coin = 100 * 100.0 * (1.0 / 50000.0 - 1.0 / 40000.0)
    assert coin == pytest.approx(-0.05, rel=1e-12)
    out = unit_pnl(np.array([[40000.0], [62500.0]]), None, [S0],
                   **_kw(1, kind=np.array([KIND_INVERSE]), multiplier=np.array([100.0])))
    np.testing.assert_allclose(out[0, 0], -20.0, rtol=1e-14)
    np.testing.assert_allclose(100 * out[0, 0], coin * 40000.0, rtol=1e-12)
    np.testing.assert_allclose(100 * out[0, 0], -2000.0, rtol=1e-12)
    # S_T = 62,500: 100 x (1.25 - 1) = +25 per contract
    np.testing.assert_allclose(out[0, 1], 25.0, rtol=1e-14)


def _one_instrument_book(row: dict, quantity: float = 1.0) -> Book:
    inst = pd.DataFrame([{"instrument_id": "X", "underlying": "BTC", **row}])
    pos = pd.DataFrame({"account_id": ["a"], "instrument_id": ["X"], "quantity": [quantity],
                        "entry_price": [1.0]})
    return Book.from_frames(inst, pos)


def _two_point_scenarios(horizon_days: float) -> ScenarioSet:
    return ScenarioSet(("BTC",), np.array([[40000.0], [55000.0]]), np.ones((2, 1)),
                       horizon_days / 365.0)


def test_book_linear_perp_funding_hand_example():
    """Oracle: hand arithmetic through the book. BTC linear perp, multiplier 0.001, funding
    1e-4 per 8 h, horizon 10 days = 30 intervals: funding per contract
    1e-4 x 30 x 0.001 x 50,000 = 0.15 USD. S_T = 40,000: 0.001 x (-10,000) - 0.15 = -10.15;
    S_T = 55,000: 5 - 0.15 = 4.85."""
    book = _one_instrument_book({"type": "linear_perp", "multiplier": 0.001,
                                 "funding_rate": 1e-4})
    unit = revalue(book, MarketState(spot={"BTC": S0}), _two_point_scenarios(10))
    np.testing.assert_allclose(unit.pnl[0], [-10.15, 4.85], rtol=1e-12)


def test_book_inverse_perp_funding_hand_example():
    """Oracle: hand arithmetic through the book. BTC inverse perp, face 100 USD, funding 1e-4
    per 8 h, horizon 1 day = 3 intervals: the long pays 1e-4 x 3 x 100 / 50,000 = 6e-7 BTC
    per contract, worth 6e-7 x S_T USD: at S_T = 40,000 that is 0.024, so the unit P&L is
    100 x (0.8 - 1) - 0.024 = -20.024; at 55,000: 100 x 0.1 - 0.033 = 9.967."""
    book = _one_instrument_book({"type": "inverse_perp", "face_value": 100.0,
                                 "funding_rate": 1e-4})
    unit = revalue(book, MarketState(spot={"BTC": S0}), _two_point_scenarios(1))
    np.testing.assert_allclose(unit.pnl[0], [-20.024, 9.967], rtol=1e-12)


def test_book_futures_hand_example():
    """Oracle: hand arithmetic -- dated futures carry no funding: linear future mult 2:
    2 x (40,000 - 50,000) = -20,000; inverse future face 10: 10 x (0.8 - 1) = -2."""
    s = _two_point_scenarios(10)
    m = MarketState(spot={"BTC": S0})
    lin = revalue(_one_instrument_book({"type": "linear_future", "multiplier": 2.0,
                                        "expiry": 0.25, "funding_rate": 1e-3}), m, s)
    inv = revalue(_one_instrument_book({"type": "inverse_future", "face_value": 10.0,
                                        "expiry": 0.25}), m, s)
    np.testing.assert_allclose(lin.pnl[0], [-20000.0, 10000.0], rtol=1e-14)
    np.testing.assert_allclose(inv.pnl[0], [-2.0, 1.0], rtol=1e-14)


# ----------------------------------------------------------------------------- options
def _option_case(seed=0, n=400):
    rng = np.random.default_rng(seed)
    prices = S0 * np.exp(0.15 * rng.standard_normal((n, 1)))
    shock = np.exp(0.2 * rng.standard_normal((n, 1)))
    strikes = np.array([40000.0, 50000.0, 60000.0, 45000.0, 55000.0, 52000.0])
    expiry = np.array([0.5, 0.25, 0.1, 30 / 365, 1.0, 8 / 365])
    calls = np.array([True, False, True, False, True, True])
    vols = np.array([0.6, 0.5, 0.8, 0.7, 0.55, 1.1])
    mult = np.array([1.0, 0.1, 2.0, 1.0, 0.5, 3.0])
    return prices, shock, strikes, expiry, calls, vols, mult


@pytest.mark.parametrize("rate", [0.0, 0.04])
def test_option_unit_pnl_against_black_scholes(rate):
    """Oracle: black_scholes_price (zero yield) at the scenario price, remaining life
    tau - h, vol sigma0 x shock, minus today's value at tau, sigma0; times the multiplier."""
    prices, shock, k, tau, calls, vols, mult = _option_case()
    h = 7.0 / 365.0
    out = unit_pnl(prices, shock, [S0], **_kw(6, kind=np.full(6, KIND_OPTION), multiplier=mult,
                                              strike=k, expiry=tau, is_call=calls,
                                              implied_vol=vols, horizon=h, rate=rate))
    s_t = prices[:, 0][None, :]
    v_t = black_scholes_price(s_t, k[:, None], (tau - h)[:, None], vols[:, None] * shock[:, 0],
                              rate, 0.0, is_call=calls[:, None])
    v_0 = black_scholes_price(S0, k, tau, vols, rate, 0.0, is_call=calls)
    ref = mult[:, None] * (v_t - v_0[:, None])
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("s_t, k, tau, sigma, shock, r, call", [
    (45000.0, 50000.0, 0.25, 0.6, 1.3, 0.03, True),
    (61000.0, 55000.0, 0.5, 0.8, 0.7, 0.05, False),
    (50000.0, 48000.0, 30 / 365, 0.45, 1.0, 0.0, False),
])
def test_option_unit_pnl_against_quantlib(s_t, k, tau, sigma, shock, r, call):
    """Oracle: QuantLib BlackCalculator on the forward S e^{r T} with stdDev sigma sqrt(T)
    and discount e^{-r T}, at the scenario (S_T, tau - h, sigma x shock) and today."""
    h = 3.0 / 365.0

    def qlv(s, t, vol):
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, k)
        return ql.BlackCalculator(payoff, s * math.exp(r * t), vol * math.sqrt(t),
                                  math.exp(-r * t)).value()

    out = unit_pnl(np.array([[s_t]]), np.array([[shock]]), [S0],
                   **_kw(1, kind=np.array([KIND_OPTION]), strike=np.array([k]),
                         expiry=np.array([tau]), is_call=np.array([call]),
                         implied_vol=np.array([sigma]), horizon=h, rate=r))
    ref = qlv(s_t, tau - h, sigma * shock) - qlv(S0, tau, sigma)
    np.testing.assert_allclose(out[0, 0], ref, rtol=1e-9, atol=1e-8)


def test_option_expiring_within_horizon_pays_intrinsic():
    """Oracle: intrinsic value. A call K = 48,000 and a put K = 52,000 with 3 days left over
    a 7-day horizon (and one expiring exactly at the horizon) are worth max(phi (S_T - K), 0)
    at the horizon, whatever the vol shock; P&L = intrinsic - today's value (black_scholes
    at tau = 3 days)."""
    prices = np.array([[40000.0], [47000.0], [50000.0], [56000.0]])
    shock = np.array([[2.0], [0.5], [1.0], [3.0]])
    k = np.array([48000.0, 52000.0, 50000.0])
    tau = np.array([3 / 365, 3 / 365, 7 / 365])
    calls = np.array([True, False, True])
    out = unit_pnl(prices, shock, [S0], **_kw(3, kind=np.full(3, KIND_OPTION), strike=k,
                                              expiry=tau, is_call=calls,
                                              implied_vol=np.full(3, 0.7), horizon=7 / 365,
                                              rate=0.02))
    v0 = black_scholes_price(S0, k, tau, 0.7, 0.02, is_call=calls)
    s = prices[:, 0]
    intrinsic = np.array([np.maximum(s - 48000.0, 0.0), np.maximum(52000.0 - s, 0.0),
                          np.maximum(s - 50000.0, 0.0)])
    np.testing.assert_allclose(out, intrinsic - v0[:, None], rtol=1e-13, atol=1e-9)
    # hand values of the payoff part: call at 56,000 -> 8,000; put at 40,000 -> 12,000
    assert out[0, 3] + v0[0] == pytest.approx(8000.0, rel=1e-13)
    assert out[1, 0] + v0[1] == pytest.approx(12000.0, rel=1e-13)


def test_inverse_option_usd_value_equals_deribit_premium():
    """Oracle: pricing.inverse_option_premium (Deribit convention, r = 0): the USD P&L of a
    coin-settled option is premium_coin(S_T) x S_T - premium_coin(S0) x S0; and its row equals
    that of the same USD-settled option."""
    rng = np.random.default_rng(5)
    prices = S0 * np.exp(0.1 * rng.standard_normal((300, 1)))
    s = ScenarioSet(("BTC",), prices, np.ones_like(prices), 2 / 365)
    market = MarketState(spot={"BTC": S0}, vol={"BTC": 0.65})
    row = {"strike": 47000.0, "expiry": 0.2, "option_type": "put", "multiplier": 1.0}
    inv = revalue(_one_instrument_book({"type": "inverse_option", **row}), market, s).pnl[0]
    usd = revalue(_one_instrument_book({"type": "option", **row}), market, s).pnl[0]
    np.testing.assert_array_equal(inv, usd)
    p_t = inverse_option_premium(prices[:, 0], 47000.0, 0.2 - 2 / 365, 0.65, is_call=False)
    p_0 = inverse_option_premium(S0, 47000.0, 0.2, 0.65, is_call=False)
    np.testing.assert_allclose(inv, p_t * prices[:, 0] - p_0 * S0, rtol=1e-11, atol=1e-8)


# ----------------------------------------------------------------------------- delta-gamma-vega
def test_approx_is_exact_for_linear_and_inverse():
    """Oracle (law): the delta-gamma-vega mode only changes options; linear and inverse rows
    are the same numbers bit for bit."""
    rng = np.random.default_rng(1)
    prices = S0 * np.exp(0.3 * rng.standard_normal((2000, 1)))
    kw = _kw(3, kind=np.array([KIND_LINEAR, KIND_INVERSE, KIND_LINEAR]),
             multiplier=np.array([0.01, 100.0, 1.0]), funding=np.array([1.0, 0.5, 0.0]),
             horizon=1 / 365)
    np.testing.assert_array_equal(unit_pnl(prices, None, [S0], approx=True, **kw),
                                  unit_pnl(prices, None, [S0], **kw))


def test_approx_is_the_taylor_polynomial_of_pricing_greeks():
    """Oracle: black_scholes_greeks -- approx P&L = mult (delta dS + gamma dS^2 / 2
    + vega sigma0 (shock - 1) + theta h), greeks at today's spot, tau and sigma0."""
    prices, shock, k, tau, calls, vols, mult = _option_case(seed=3, n=200)
    h, r = 2.0 / 365.0, 0.03
    out = unit_pnl(prices, shock, [S0], approx=True,
                   **_kw(6, kind=np.full(6, KIND_OPTION), multiplier=mult, strike=k,
                         expiry=tau, is_call=calls, implied_vol=vols, horizon=h, rate=r))
    g = black_scholes_greeks(S0, k, tau, vols, r, 0.0, is_call=calls)
    ds = prices[:, 0][None, :] - S0
    dv = vols[:, None] * (shock[:, 0][None, :] - 1.0)
    ref = mult[:, None] * (g.delta[:, None] * ds + 0.5 * g.gamma[:, None] * ds * ds
                           + g.vega[:, None] * dv + g.theta[:, None] * h)
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-7)


# The option book of the approximation study: long 3 OTM calls, short 5 OTM puts, long an
# ATM straddle (2 x 2), 1-day horizon, BTC vol 60 %, r = 2 %.
DGV_BOOK = dict(strike=np.array([55000.0, 45000.0, 50000.0, 50000.0]),
                expiry=np.array([0.25, 0.1, 30 / 365, 30 / 365]),
                is_call=np.array([True, False, True, False]))
DGV_QTY = np.array([3.0, -5.0, 2.0, 2.0])
DGV_CASES = [  # (label, sd of the price move dS/S, sd of the relative vol shock)
    ("small: dS/S ~1%, vol ~1%", 0.01, 0.01),
    ("medium: dS/S ~5%, vol ~5%", 0.05, 0.05),
    ("large: dS/S ~10%, vol ~10%", 0.10, 0.10),
    ("very large: dS/S ~20%, vol ~20%", 0.20, 0.20),
]


def _dgv_errors():
    rng = np.random.default_rng(11)
    z, z2 = rng.standard_normal(20000), rng.standard_normal(20000)
    rows = []
    for label, mv, vv in DGV_CASES:
        prices = (S0 * np.exp(mv * z - 0.5 * mv * mv))[:, None]
        shock = np.exp(vv * z2 - 0.5 * vv * vv)[:, None]
        kw = _kw(4, kind=np.full(4, KIND_OPTION), implied_vol=np.full(4, 0.6),
                 horizon=1 / 365, rate=0.02, **DGV_BOOK)
        res = {}
        for approx in (False, True):
            u = unit_pnl(prices, shock, [S0], approx=approx, **kw)
            res[approx] = account_risk(u, np.array([0, 4]), np.arange(4), DGV_QTY,
                                       (0.99, 0.975), allocate=False)
        err_var = np.abs(res[True]["var"][:, 0] / res[False]["var"][:, 0] - 1.0)
        err_es = np.abs(res[True]["es"][:, 0] / res[False]["es"][:, 0] - 1.0)
        rows.append((label, res[False]["var"][0, 0], res[True]["var"][0, 0], err_var.max(),
                     res[False]["es"][0, 0], res[True]["es"][0, 0], err_es.max()))
    return rows


def test_delta_gamma_vega_error_report(record_property, capsys):
    """Oracle: full revaluation (black_scholes at each scenario). REPORT of the relative
    error of the delta-gamma-vega-theta VaR / ES (99 % and 97.5 %, worst of the two) on an
    option book, 20,000 scenarios, fixed seed. Asserted: below 1 % for small moves
    (dS/S ~ 1 %, vol shock ~ 1 %); documented (asserted only as monotone growth): the error
    grows with the move size -- the Taylor polynomial misses the higher-order terms
    (speed, volga, vanna, charm) that dominate large moves."""
    rows = _dgv_errors()
    table = ["moves | VaR99 full | VaR99 DGV | max rel err VaR | ES99 full | ES99 DGV | "
             "max rel err ES"]
    for label, vf, va, ev, ef, ea, ee in rows:
        table.append(f"{label} | {vf:,.0f} | {va:,.0f} | {ev:.2%} | {ef:,.0f} | {ea:,.0f} | "
                     f"{ee:.2%}")
    with capsys.disabled():
        print("\nDelta-gamma-vega vs full revaluation:\n" + "\n".join(table))
    record_property("dgv_error_table", "\n".join(table))
    small = rows[0]
    assert small[3] < 0.01 and small[6] < 0.01, table
    errs = [max(r[3], r[6]) for r in rows]
    assert errs[-1] > errs[1] > errs[0], table
    assert errs[-1] > 0.1, table  # at 20 % moves the approximation is off by > 10 %


# ----------------------------------------------------------------------------- account risk
def ref_var_es(loss: np.ndarray, level: float) -> tuple[float, float]:
    """Oracle: VaR = ceil(n a)-th smallest loss; ES = (sum of the floor(w) largest losses +
    (w - floor(w)) x the next one) / w with w = n (1 - a); n a in exact decimal arithmetic."""
    n = loss.size
    na = Fraction(str(level)) * n
    k = math.ceil(na)
    srt = np.sort(loss)
    var = srt[k - 1]
    w = n - na
    nf = math.floor(w)
    desc = srt[::-1]
    es = (desc[:nf].sum() + float(w - nf) * (desc[nf] if nf < n else 0.0)) / float(w)
    return float(var), float(es)


def hand_book() -> Book:
    instruments = pd.DataFrame({
        "instrument_id": ["BTC-SPOT", "BTC-PERP", "BTC-FUT", "BTC-IPERP", "BTC-IFUT",
                          "BTC-C60K", "BTC-P40K", "ETH-PERP", "ETH-C"],
        "type": ["spot", "linear_perp", "linear_future", "inverse_perp", "inverse_future",
                 "option", "inverse_option", "linear_perp", "option"],
        "underlying": ["BTC"] * 7 + ["ETH", "ETH"],
        "multiplier": [1.0, 0.001, 1.0, NAN, NAN, 1.0, 1.0, 1.0, 1.0],
        "face_value": [NAN, NAN, NAN, 100.0, 10.0, NAN, NAN, NAN, NAN],
        "strike": [NAN, NAN, NAN, NAN, NAN, 60000.0, 40000.0, NAN, 2200.0],
        "expiry": [NAN, NAN, 0.25, NAN, 0.5, 0.25, 0.1, NAN, 0.1],
        "option_type": [None] * 5 + ["call", "put", None, "call"],
        "funding_rate": [NAN, 1e-4, NAN, 1e-4, NAN, NAN, NAN, 2e-4, NAN],
    })  # fmt: skip
    positions = pd.DataFrame({
        "account_id": ["A", "A", "A", "B", "B", "C", "C", "C", "C", "E", "E", "F"],
        "instrument_id": ["BTC-PERP", "BTC-PERP", "ETH-PERP", "BTC-IPERP", "BTC-C60K",
                          "BTC-P40K", "BTC-SPOT", "BTC-FUT", "BTC-IFUT", "ETH-C", "ETH-PERP",
                          "BTC-C60K"],
        "quantity": [1000.0, 500.0, -10.0, -200.0, 2.0, -3.0, 0.5, 1.0, 100.0, -20.0, 8.0,
                     -1.0],
        "entry_price": [48000.0, 52000.0, 2500.0, 40000.0, 1500.0, 0.01, 45000.0, 49000.0,
                        51000.0, 80.0, 2000.0, 1500.0],
    })  # fmt: skip
    collateral = pd.DataFrame({
        "account_id": ["A", "B", "C", "C", "D", "F"],
        "asset": ["USDT", "BTC", "ETH", "USDC", "USDT", "BTC"],
        "amount": [10000.0, 1.0, 5.0, 2000.0, 500.0, 1.0],
        "haircut": [0.0, 0.1, 0.2, 0.0, 0.0, 0.05],
    })  # fmt: skip
    return Book.from_frames(instruments, positions, collateral)


HAND_MARKET = MarketState(spot={"BTC": S0, "ETH": 2000.0}, vol={"BTC": 0.6, "ETH": 0.75},
                          rate=0.02)


def _synthetic():
    synthetic = pytest.importorskip("marginlab.models.synthetic")
    if not hasattr(synthetic, "make_book"):
        pytest.skip("marginlab.models.synthetic.make_book is not available yet")
    book = synthetic.make_book(200, 7)
    default = getattr(synthetic, "default_market", None)
    unds = list(book.underlyings)
    if default is not None:
        mk = default(unds)
        market = MarketState(spot=mk["spot"], vol=mk["vol"])
    else:  # a plausible market when the helper is missing
        market = MarketState(spot={u: 100.0 for u in unds}, vol={u: 0.6 for u in unds})
    return book, market


def _scenarios_for(book: Book, market: MarketState, n: int, seed: int) -> ScenarioSet:
    unds = sorted(set(book.underlyings) | {a for a in book.assets if a not in
                                           ("USD", "USDT", "USDC", "DAI", "BUSD", "FDUSD",
                                            "TUSD", "USDE")})
    m = len(unds)
    corr = np.full((m, m), 0.6) + 0.4 * np.eye(m)
    model = GBM(mu=0.0, sigma=np.linspace(0.5, 0.9, m), corr=corr)
    return monte_carlo_scenarios(model, market, unds, horizon_days=2, n_scenarios=n,
                                 seed=seed, vol_of_vol=1.0)


@pytest.fixture(scope="module", params=["hand", "synthetic"])
def case(request):
    """(book, market, unit P&L) for the hand book and, when available, a synthetic one."""
    if request.param == "hand":
        book, market = hand_book(), HAND_MARKET
    else:
        book, market = _synthetic()
    s = _scenarios_for(book, market, 2001, seed=17)
    return book, market, revalue(book, market, s)


@pytest.mark.parametrize("levels", [0.99, (0.99,), (0.99, 0.975, 0.95, 0.9975)])
def test_account_risk_equals_sort_reference(case, levels):
    """Oracle: sort-based numpy VaR / ES (ref_var_es) on the materialised account P&L
    (account_pnl), to 1e-9 relative; n = 2001 makes n (1 - a) fractional at every level."""
    book, market, unit = case
    risk = portfolio_risk(book, market, unit, levels=levels)
    lv = np.atleast_1d(levels)
    assert risk.var.shape == (lv.size, book.n_accounts)
    loss = -account_pnl(book, unit)
    for li, a in enumerate(lv):
        for j in range(book.n_accounts):
            v, e = ref_var_es(loss[:, j], float(a))
            scale = np.abs(loss[:, j]).max() + 1e-300
            assert abs(risk.var[li, j] - v) <= 1e-9 * max(abs(v), 1e-6 * scale), (a, j)
            assert abs(risk.es[li, j] - e) <= 1e-9 * max(abs(e), 1e-6 * scale), (a, j)


def test_account_risk_integer_tail_reference():
    """Oracle: ref_var_es with n (1 - a) integer (n = 2000: w = 20, 50) -- ES is the plain
    mean of the w largest losses."""
    book, market = hand_book(), HAND_MARKET
    unit = revalue(book, market, _scenarios_for(book, market, 2000, seed=4))
    risk = portfolio_risk(book, market, unit, levels=(0.99, 0.975))
    loss = -account_pnl(book, unit)
    for li, w in enumerate((20, 50)):  # levels 0.99, 0.975
        es = np.sort(loss, axis=0)[::-1][:w].mean(axis=0)
        var = np.sort(loss, axis=0)[2000 - w - 1]
        np.testing.assert_allclose(risk.es[li], es, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(risk.var[li], var, rtol=1e-9, atol=1e-9)


def test_es_at_least_var_and_allocations_add_up(case):
    """Oracle (laws): ES >= VaR; Euler allocations sum over each account's holdings to its
    VaR and ES (1e-9 relative to the account's gross contributions); VaR interval brackets
    VaR; es_lo <= ES <= es_hi."""
    book, market, unit = case
    risk = portfolio_risk(book, market, unit, levels=(0.99, 0.975, 0.9))
    assert np.all(risk.es >= risk.var - 1e-12 * np.abs(risk.var))
    assert np.all((risk.var_lo <= risk.var) & (risk.var <= risk.var_hi))
    assert np.all((risk.es_lo <= risk.es) & (risk.es <= risk.es_hi))
    n_acc = book.n_accounts
    for name, total in (("alloc_var", risk.var), ("alloc_es", risk.es)):
        alloc = getattr(risk, name)
        for li in range(alloc.shape[0]):
            s = np.bincount(risk.holding_account, weights=alloc[li], minlength=n_acc)
            gross = np.bincount(risk.holding_account, weights=np.abs(alloc[li]),
                                minlength=n_acc)
            assert np.all(np.abs(s - total[li]) <= 1e-9 * np.maximum(gross, np.abs(total[li]))
                          + 1e-12), name


def test_chunked_equals_unchunked_bit_for_bit(case):
    """Oracle (law): accounts are independent, so streaming them in blocks of 1, 3 or 7
    gives the same arrays bit for bit; progress reports every block."""
    book, market, unit = case
    full = portfolio_risk(book, market, unit)
    calls = []
    for block in (1, 3, 7):
        part = portfolio_risk(book, market, unit, account_block=block,
                              progress=lambda d, n: calls.append((d, n)))
        for name in ("var", "es", "var_lo", "var_hi", "var_se", "es_se", "es_lo", "es_hi",
                     "alloc_var", "alloc_es", "holding_account", "holding_row"):
            np.testing.assert_array_equal(getattr(part, name), getattr(full, name), err_msg=name)
    assert calls[-1] == (book.n_accounts, book.n_accounts)
    with pytest.raises(ValueError, match="account_block must be >= 1"):
        portfolio_risk(book, market, unit, account_block=0)


def test_one_thread_equals_two_threads_bit_for_bit():
    """Oracle (law): set_num_threads(1) == set_num_threads(2), bit for bit, for revaluation
    (> 1 block of 1024 scenarios) and account risk (> 1 block of 64 accounts), on a book of
    hand accounts replicated to 150 accounts with varied quantities."""
    n_threads = int(numba.config.NUMBA_NUM_THREADS)
    if n_threads < 2:
        pytest.skip("numba has a single thread")
    base = hand_book()
    rng = np.random.default_rng(8)
    pos = pd.concat([base.positions.assign(
        account_id=base.positions["account_id"] + f"{i:03d}",
        quantity=base.positions["quantity"] * rng.uniform(0.5, 2.0, base.n_positions))
        for i in range(25)], ignore_index=True)
    col = pd.concat([base.collateral.assign(account_id=base.collateral["account_id"]
                                            + f"{i:03d}") for i in range(25)],
                    ignore_index=True)
    book = Book.from_frames(base.instruments, pos, col)
    assert book.n_accounts == 150
    s = _scenarios_for(book, HAND_MARKET, 3000, seed=21)
    before = numba.get_num_threads()
    try:
        out = {}
        for t in (1, 2):
            numba.set_num_threads(t)
            unit = revalue(book, HAND_MARKET, s)
            unit_approx = revalue(book, HAND_MARKET, s, approx=True)
            out[t] = (unit.pnl, unit_approx.pnl, portfolio_risk(book, HAND_MARKET, unit))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(out[1][0], out[2][0])
    np.testing.assert_array_equal(out[1][1], out[2][1])
    for name in ("var", "es", "var_se", "es_se", "alloc_var", "alloc_es"):
        np.testing.assert_array_equal(getattr(out[1][2], name), getattr(out[2][2], name))


# ----------------------------------------------------------------------------- homogeneity
def _flat_scenarios(n: int = 1000, seed: int = 3) -> tuple[ScenarioSet, MarketState]:
    """BTC and ETH from GBM; FLAT never moves (a perp on it has a constant P&L: funding)."""
    market = MarketState(spot={"BTC": S0, "ETH": 2000.0, "FLAT": 1000.0},
                         vol={"BTC": 0.6, "ETH": 0.75})
    s = monte_carlo_scenarios(GBM(mu=0.0, sigma=[0.6, 0.8], corr=[[1.0, 0.5], [0.5, 1.0]]),
                              market, ["BTC", "ETH"], horizon_days=10, n_scenarios=n,
                              seed=seed, vol_of_vol=1.0)
    prices = np.column_stack([s.prices, np.full(n, 1000.0)])
    shock = np.column_stack([s.vol_shock, np.ones(n)])
    return ScenarioSet(("BTC", "ETH", "FLAT"), prices, shock, s.horizon), market


HOMO_INST = pd.DataFrame({
    "instrument_id": ["BTC-PERP", "ETH-PERP", "BTC-C", "BTC-IPERP", "FLAT-PERP"],
    "type": ["linear_perp", "linear_perp", "option", "inverse_perp", "linear_perp"],
    "underlying": ["BTC", "ETH", "BTC", "BTC", "FLAT"],
    "face_value": [NAN, NAN, NAN, 100.0, NAN],
    "strike": [NAN, NAN, 52000.0, NAN, NAN],
    "expiry": [NAN, NAN, 0.2, NAN, NAN],
    "option_type": [None, None, "put", None, None],
    "funding_rate": [1e-4, -5e-5, NAN, 1e-4, 1e-4],
})  # fmt: skip


def _homo_book(q: np.ndarray, collateral_btc: float, cash: float = 0.0,
               flat: float = 0.0) -> Book:
    ids = ["BTC-PERP", "ETH-PERP", "BTC-C", "BTC-IPERP"]
    rows = [("x", i, qi) for i, qi in zip(ids, q, strict=True) if qi != 0.0]
    rows += [("y", "BTC-PERP", -q[0]), ("y", "ETH-PERP", q[1] + 1.0)]
    if flat:
        rows.append(("x", "FLAT-PERP", flat))
    pos = pd.DataFrame(rows, columns=["account_id", "instrument_id", "quantity"])
    pos["entry_price"] = 1.0
    col = [("x", "BTC", collateral_btc), ("y", "USDT", 1000.0)]
    if cash:
        col.append(("x", "USDT", cash))
    return Book.from_frames(HOMO_INST, pos, pd.DataFrame(col, columns=["account_id", "asset",
                                                                      "amount"]))


HOMO_Q = np.array([0.5, -20.0, 3.0, -300.0])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.differing_executors])
@given(c=st.floats(min_value=1e-3, max_value=1e3), signs=st.lists(st.sampled_from([-1, 1]),
                                                                  min_size=4, max_size=4))
def test_positive_homogeneity(c, signs):
    """Oracle (law): scaling every quantity and collateral amount of a book by c > 0 scales
    VaR, ES and every Euler allocation by c (1e-9 relative)."""
    s, market = _flat_scenarios()
    q = HOMO_Q * np.array(signs, float)
    base = _homo_book(q, 0.3)
    scaled = Book.from_frames(HOMO_INST,
                              base.positions.assign(quantity=base.positions["quantity"] * c),
                              base.collateral.assign(amount=base.collateral["amount"] * c))
    unit = revalue(base, market, s)
    r1 = portfolio_risk(base, market, unit, levels=(0.99, 0.95))
    rc = portfolio_risk(scaled, market, unit, levels=(0.99, 0.95))
    for name in ("var", "es", "alloc_var", "alloc_es", "var_lo", "var_hi", "es_se"):
        a, b = getattr(rc, name), c * getattr(r1, name)
        tol = 1e-9 * np.max(np.abs(b)) + 1e-12
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=tol, err_msg=name)


def test_cash_carries_no_risk_and_constant_pnl_translates():
    """Oracle (laws): (1) adding 1e6 USDT of cash changes no VaR / ES / allocation and its own
    allocation is 0 (stablecoin P&L is 0); (2) translation: adding 7 FLAT-PERP contracts
    (multiplier 1, funding 1e-4 per 8 h, FLAT fixed at 1,000 in every scenario) adds the
    constant loss 7 x 1e-4 x 30 x 1,000 = 21 USD over 10 days: VaR and ES rise by exactly 21
    and the FLAT holding is allocated 21."""
    s, market = _flat_scenarios()
    base = _homo_book(HOMO_Q, 0.3)
    cash = _homo_book(HOMO_Q, 0.3, cash=1e6)
    flat = _homo_book(HOMO_Q, 0.3, flat=7.0)
    r0 = portfolio_risk(base, market, s, levels=(0.99, 0.975))
    rc = portfolio_risk(cash, market, s, levels=(0.99, 0.975))
    rf = portfolio_risk(flat, market, s, levels=(0.99, 0.975))
    np.testing.assert_array_equal(rc.var, r0.var)
    np.testing.assert_array_equal(rc.es, r0.es)
    usdt = [k for k in range(rc.holding_row.size)
            if rc.row_names[rc.holding_row[k]] == "USDT" and rc.holding_account[k] == 0]
    assert len(usdt) == 1 and np.all(rc.alloc_es[:, usdt[0]] == 0.0)
    assert np.all(rc.alloc_var[:, usdt[0]] == 0.0)
    expected = 7 * 1e-4 * 30 * 1000.0
    np.testing.assert_allclose(rf.var[:, 0], r0.var[:, 0] + expected, rtol=1e-10)
    np.testing.assert_allclose(rf.es[:, 0], r0.es[:, 0] + expected, rtol=1e-10)
    np.testing.assert_array_equal(rf.var[:, 1], r0.var[:, 1])  # account y untouched
    k = [k for k in range(rf.holding_row.size) if rf.row_names[rf.holding_row[k]] == "FLAT-PERP"]
    np.testing.assert_allclose(rf.alloc_es[:, k[0]], expected, rtol=1e-10)
    np.testing.assert_allclose(rf.alloc_var[:, k[0]], expected, rtol=1e-10)


# ----------------------------------------------------------------------------- N(0, 1) losses
Q99 = norm.ppf(0.99)  # 2.326348
ES99 = norm.pdf(Q99) / 0.01  # 2.665214
N_NORMAL = 10000
# closed-form asymptotic standard errors at n = 10,000, level 0.99
SE_VAR = math.sqrt(0.99 * 0.01 / N_NORMAL) / norm.pdf(Q99)  # 0.03733
_TAIL_VAR = 1.0 + Q99 * ES99 - ES99 * ES99  # Var(L | L > q) of the standard normal
SE_ES = math.sqrt((_TAIL_VAR + 0.99 * (ES99 - Q99) ** 2) / (N_NORMAL * 0.01))  # 0.04589
R_REPS = 400


def test_closed_form_constants():
    """Oracle: the closed forms quoted in the brief (2.326348, 2.665214, 0.037, 0.046)."""
    assert Q99 == pytest.approx(2.326348, abs=1e-6)
    assert ES99 == pytest.approx(2.665214, abs=1e-6)
    assert SE_VAR == pytest.approx(0.0373, abs=1e-4)
    assert SE_ES == pytest.approx(0.0459, abs=1e-4)


@pytest.fixture(scope="module")
def normal_reps():
    """R_REPS independent samples of n = 10,000 standard normal losses, one account each
    (identity holdings), risk at 99 %."""
    z = np.random.default_rng(20240601).standard_normal((R_REPS, N_NORMAL))
    return account_risk(z, np.arange(R_REPS + 1), np.arange(R_REPS), np.ones(R_REPS), 0.99,
                        allocate=False)


def test_normal_losses_closed_form_via_book(normal_reps):
    """Oracle: closed forms for N(0, 1) losses at 99 %, n = 10,000 -- VaR 2.326348 within
    4 SE (0.0373), ES 2.665214 within 4 SE (0.0459). The book is one spot unit on an
    underlying X whose scenario prices are 100 + z, so its unit P&L is z ~ N(0, 1). The
    reported SEs are compared with the closed-form SEs within 4 x their own sampling sd
    (estimated from the repetitions)."""
    z = np.random.default_rng(99).standard_normal(N_NORMAL)
    inst = pd.DataFrame({"instrument_id": ["X-SPOT"], "type": ["spot"], "underlying": ["X"]})
    pos = pd.DataFrame({"account_id": ["n"], "instrument_id": ["X-SPOT"], "quantity": [1.0],
                        "entry_price": [100.0]})
    book = Book.from_frames(inst, pos)
    s = ScenarioSet(("X",), (100.0 + z)[:, None], np.ones((N_NORMAL, 1)), 1 / 365)
    market = MarketState(spot={"X": 100.0})
    unit = revalue(book, market, s)
    np.testing.assert_allclose(unit.pnl[0], z, rtol=0, atol=1e-12)
    risk = portfolio_risk(book, market, s, levels=0.99)
    assert abs(risk.var[0, 0] - Q99) < 4 * SE_VAR
    assert abs(risk.es[0, 0] - ES99) < 4 * SE_ES
    sd_var_se = normal_reps["var_se"][0].std(ddof=1)
    sd_es_se = normal_reps["es_se"][0].std(ddof=1)
    assert abs(risk.var_se[0, 0] - SE_VAR) < 4 * sd_var_se
    assert abs(risk.es_se[0, 0] - SE_ES) < 4 * sd_es_se


def test_normal_losses_repetitions(normal_reps):
    """Oracle: closed forms, by repetition (400 samples of n = 10,000): the mean VaR / ES
    estimate is within 4 SE (sd / sqrt(R)) of 2.326348 / 2.665214; the sampling sd of the
    estimates is within 4 SE (sd / sqrt(2 (R - 1))) of the asymptotic SEs 0.0373 / 0.0459;
    the mean reported ES SE is within 4 SE of 0.0459; the mean reported VaR SE is within
    4 SE of its expected value (Phi^-1(j_hi / (n + 1)) - Phi^-1(j_lo / (n + 1))) / (2 z),
    the order-statistic interval's half-width over z, which is the asymptotic 0.0373 up to
    the discreteness of the binomial indices (checked to 5 %)."""
    r = normal_reps
    var, es = r["var"][0], r["es"][0]
    root_r = math.sqrt(R_REPS)
    assert abs(var.mean() - Q99) < 4 * var.std(ddof=1) / root_r
    assert abs(es.mean() - ES99) < 4 * es.std(ddof=1) / root_r
    se_sd = 1.0 / math.sqrt(2 * (R_REPS - 1))
    assert abs(var.std(ddof=1) - SE_VAR) < 4 * SE_VAR * se_sd
    assert abs(es.std(ddof=1) - SE_ES) < 4 * SE_ES * se_sd
    es_se = r["es_se"][0]
    assert abs(es_se.mean() - SE_ES) < 4 * es_se.std(ddof=1) / root_r
    z95 = norm.ppf(0.975)
    j_lo = binom.ppf(0.025, N_NORMAL, 0.99)
    j_hi = binom.ppf(0.975, N_NORMAL, 0.99) + 1
    expected = (norm.ppf(j_hi / (N_NORMAL + 1)) - norm.ppf(j_lo / (N_NORMAL + 1))) / (2 * z95)
    assert abs(expected / SE_VAR - 1.0) < 0.05
    var_se = r["var_se"][0]
    assert abs(var_se.mean() - expected) < 4 * var_se.std(ddof=1) / root_r


def test_interval_coverage(normal_reps):
    """Oracle: coverage by repetition (400 samples). The VaR order-statistic interval covers
    the true quantile with the exact binomial probability P(j_lo <= B <= j_hi - 1),
    B ~ Bin(n, 0.99) (0.9558 here); the ES normal interval with nominal 0.95. Each observed
    coverage lies within 4 binomial SEs sqrt(p (1 - p) / R) of its target."""
    r = normal_reps
    j_lo = binom.ppf(0.025, N_NORMAL, 0.99)
    j_hi = binom.ppf(0.975, N_NORMAL, 0.99) + 1
    p_var = binom.cdf(j_hi - 1, N_NORMAL, 0.99) - binom.cdf(j_lo - 1, N_NORMAL, 0.99)
    assert 0.95 <= p_var < 0.97
    cov_var = np.mean((r["var_lo"][0] <= Q99) & (Q99 <= r["var_hi"][0]))
    cov_es = np.mean((r["es_lo"][0] <= ES99) & (ES99 <= r["es_hi"][0]))
    assert abs(cov_var - p_var) < 4 * math.sqrt(p_var * (1 - p_var) / R_REPS), cov_var
    assert abs(cov_es - 0.95) < 4 * math.sqrt(0.95 * 0.05 / R_REPS), cov_es


# ----------------------------------------------------------------------------- small pieces
def test_level_indices_hand_example():
    """Oracle: hand arithmetic -- n = 100, a = 0.99: VaR is the 99th smallest = index 1 from
    the top, w = 1; a = 0.975: 98th smallest (ceil 97.5) = index 2, w = 2.5."""
    var_top, lo_top, hi_top, w = level_indices(100, np.array([0.99, 0.975]), 0.95)
    np.testing.assert_array_equal(var_top, [1, 2])
    np.testing.assert_allclose(w, [1.0, 2.5], rtol=1e-12)
    assert np.all(hi_top <= var_top) and np.all(var_top <= lo_top)


def test_account_risk_hand_example():
    """Oracle: hand arithmetic on 10 scenarios, one account holding 2 units of a row with
    P&L -1..-10 and 1 unit of a row with P&L 0: losses 2, 4, ..., 20. a = 0.8: VaR = 8th
    smallest = 16, ES = mean of the 2 largest = 19; a = 0.75: VaR = ceil(7.5) = 8th = 16,
    ES = (20 + 18 + 0.5 x 16) / 2.5 = 18.4. Euler: the row-0 holding carries it all."""
    u = np.vstack([-np.arange(1.0, 11.0), np.zeros(10)])
    r = account_risk(u, np.array([0, 2]), np.array([0, 1]), np.array([2.0, 1.0]), (0.8, 0.75))
    np.testing.assert_allclose(r["var"][:, 0], [16.0, 16.0], rtol=1e-15)
    np.testing.assert_allclose(r["es"][:, 0], [19.0, 18.4], rtol=1e-14)
    np.testing.assert_allclose(r["alloc_es"], [[19.0, 0.0], [18.4, 0.0]], rtol=1e-14)
    np.testing.assert_allclose(r["alloc_var"], [[16.0, 0.0], [16.0, 0.0]], rtol=1e-15)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(levels=1.0), r"levels must lie in \(0, 1\)"),
    (dict(levels=0.0), r"levels must lie in \(0, 1\)"),
    (dict(levels=0.999), "fewer than 1 tail scenario"),
    (dict(levels=0.9, ci=1.0), r"ci must lie in \(0, 1\)"),
    (dict(levels=0.9, indices=np.array([5])), "outside"),
])
def test_account_risk_errors(kwargs, pattern):
    """Oracle: documented contract -- levels and ci in (0, 1), at least one tail scenario,
    holdings inside the unit P&L rows."""
    u = np.ones((2, 100))
    indices = kwargs.pop("indices", np.array([0]))
    with pytest.raises(ValueError, match=pattern):
        account_risk(u, np.array([0, 1]), indices, np.array([1.0]), **kwargs)


def test_unit_pnl_errors():
    """Oracle: documented contract of unit_pnl's arrays."""
    kw = _kw(1)
    with pytest.raises(ValueError, match="prices must be finite and > 0"):
        unit_pnl(np.array([[0.0]]), None, [S0], **kw)
    with pytest.raises(ValueError, match="vol_shock must have the shape"):
        unit_pnl(np.ones((2, 1)), np.ones((3, 1)), [S0], **kw)
    with pytest.raises(ValueError, match=r"s0 must have shape \(1,\)"):
        unit_pnl(np.ones((2, 1)), None, [S0, S0], **kw)
    with pytest.raises(ValueError, match="underlying indices must lie in"):
        unit_pnl(np.ones((2, 1)), None, [S0], **_kw(1, underlying=np.array([1])))
    with pytest.raises(ValueError, match="horizon must be finite and >= 0"):
        unit_pnl(np.ones((2, 1)), None, [S0], **_kw(1, horizon=-1.0))


def test_portfolio_risk_accepts_unit_pnl_or_scenarios():
    """Oracle (law): passing the ScenarioSet or its precomputed UnitPnL gives identical
    results; the holdings matrix is positions then collateral."""
    book, market = hand_book(), HAND_MARKET
    s = _scenarios_for(book, market, 500, seed=2)
    unit = revalue(book, market, s)
    assert isinstance(unit, UnitPnL)
    a = portfolio_risk(book, market, s)
    b = portfolio_risk(book, market, unit)
    np.testing.assert_array_equal(a.var, b.var)
    np.testing.assert_array_equal(a.alloc_es, b.alloc_es)
    assert holdings_matrix(book).shape == (book.n_accounts, book.n_instruments + len(book.assets))
