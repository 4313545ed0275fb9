"""Result objects read like statsmodels and arch (issue 15, item 3): ``summary()`` with the
statistics a reader needs, one-line reprs, ``_repr_html_`` for notebooks, and backtest
statistics that all take a hit series."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marginlab.models import GBM, Book, MarketState
from marginlab.models._summary import Summary, fmt
from marginlab.models.backtest import christoffersen, kupiec, traffic_light
from marginlab.models.backtest_result import BacktestResult
from marginlab.models.calibration import fit, fit_garch, fit_gbm
from marginlab.models.liquidation import LiquidationRules, simulate_liquidations
from marginlab.models.margin.brackets import binance_btcusdt_2021
from marginlab.models.margin.exchange import TieredMargin
from marginlab.models.portfolio import portfolio_risk
from marginlab.models.scenarios import monte_carlo_scenarios
from marginlab.simulate import simulate_paths


class _Checker(HTMLParser):
    """Counts tags; fails on a closing tag that does not close the innermost open one."""

    VOID = {"br", "hr", "img", "meta", "input", "col"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse_html(text: str) -> _Checker:
    p = _Checker()
    p.feed(text)
    p.close()
    assert not p.stack, p.stack
    return p


def _one_line(r: str) -> None:
    assert "\n" not in r and len(r) < 200, r


@pytest.fixture(scope="module")
def returns() -> np.ndarray:
    path = simulate_paths(GBM(mu=[0.0, 0.0], sigma=[0.6, 0.8], corr=[[1, 0.5], [0.5, 1]]),
                          [1.0, 1.0], n_steps=500, dt=1 / 365, n_paths=1, seed=11)[0]
    return np.diff(np.log(path), axis=0)


# ============================================================================ fits
def test_gbm_fit_summary_reports_the_closed_form_likelihood(returns):
    """Oracles: closed form and law. The summary's log-likelihood is the sum of the normal
    log-densities of the returns at the estimates (scipy), AIC = 2k - 2l, BIC = k log n - 2l;
    P>|z| is scipy's two-sided normal tail of the z column; ``as_frame`` keeps ``to_frame``'s
    numbers; the old DataFrame reads (``attrs``, ``loc``) still work on the summary."""
    res = fit_gbm(pd.DataFrame(returns, columns=["BTC", "ETH"]), step=1 / 365)
    s = res.summary()
    assert isinstance(s, Summary)
    info = dict(s.info)
    # closed form: marginal normal densities plus the bivariate correlation term
    mu = np.array([res.params["mu"][j] for j in range(2)]) / 365 - 0.5 * np.array(
        [res.params["sigma"][j] ** 2 for j in range(2)]) / 365
    sd = np.array([res.params["sigma"][j] for j in range(2)]) * math.sqrt(1 / 365)
    cov = np.outer(sd, sd) * res.corr
    ll = stats.multivariate_normal(mu, cov).logpdf(returns).sum()
    assert info["Log-likelihood"] == pytest.approx(ll, rel=1e-9)
    k, n = res.n_params, res.n_obs
    assert info["AIC"] == pytest.approx(2 * k - 2 * ll, rel=1e-9)
    assert info["BIC"] == pytest.approx(k * math.log(n) - 2 * ll, rel=1e-9)
    frame = s.as_frame()
    np.testing.assert_allclose(frame["P>|z|"], 2 * stats.norm.sf(np.abs(frame["z"])))
    pd.testing.assert_frame_equal(frame[["estimate", "std_err", "z"]], res.to_frame())
    assert s.attrs["method"] == "gbm" and s.loc[("BTC", "sigma"), "estimate"] > 0
    text = str(s)
    for needle in ("Log-likelihood", "AIC", "BIC", "std_err", "P>|z|", "BTC,ETH"):
        assert needle in text
    _one_line(repr(res))
    assert repr(res).startswith("GBMFit(method='gbm'")
    page = _parse_html(res._repr_html_())
    assert page.tags["table"] >= 2 and "Log-likelihood" in "".join(page.text)


def test_garch_fit_summary_shows_flags_and_a_one_line_repr():
    """Oracle: the documented degenerate case of test_calibration. On i.i.d. normal returns
    (seed 0) arch's MLE has alpha = 0: the fit is flagged ``no_arch`` and falls back to EWMA;
    the summary's notes say both, the repr is one line (no arch summaries), and fit() by
    name gives the same summary as fit_garch()."""
    r = np.random.default_rng(0).standard_normal(300) * 0.02
    f = fit_garch(r)
    notes = " ".join(f.summary().notes)
    assert "no_arch" in notes and "fallback applied: ewma" in notes
    assert "no standard error" in notes
    _one_line(repr(f))
    assert "ARCHModelResult" not in repr(f)
    assert str(fit(r, model="garch").summary()) == str(f.summary())


# ============================================================================ margin
def _book() -> Book:
    inst = pd.DataFrame({"instrument_id": ["BTCUSDT", "BTC-C"], "type": ["linear_perp", "option"],
                         "underlying": ["BTC", "BTC"], "strike": [np.nan, 60_000.0],
                         "expiry": [np.nan, 0.1], "option_type": [None, "call"]})
    pos = pd.DataFrame({"account_id": ["a", "b", "c", "d"],
                        "instrument_id": ["BTCUSDT", "BTCUSDT", "BTCUSDT", "BTC-C"],
                        "quantity": [1.0, -30.0, 5.0, -1.0],
                        "entry_price": [50_000.0, 50_000.0, 50_000.0, 1_000.0]})
    col = pd.DataFrame({"account_id": ["a", "b", "c", "d"], "asset": "USDT",
                        "amount": [10_000.0, 1_000.0, 5_000.0, 5_000.0]})
    return Book.from_frames(inst, pos, col)


MARKET = MarketState(spot={"BTC": 50_000.0}, vol={"BTC": 0.6})


def test_margin_result_summary_totals_and_largest_accounts():
    """Oracle: brute force. Totals are the sums of the per-account arrays, the largest
    accounts are the IM sort of the result, deficits count ``excess < 0``, the IM quantile
    table is numpy's; the repr is one line and the HTML is well formed."""
    res = TieredMargin({"BTC": binance_btcusdt_2021()}, on_unsupported="ignore").compute(
        _book(), MARKET)
    s = res.summary(top=2)
    info = dict(s.info)
    assert info["Total IM (USD)"] == pytest.approx(res.im.sum())
    assert info["Total MM (USD)"] == pytest.approx(res.mm.sum())
    assert info["Accounts in deficit"] == int(np.sum(res.excess < 0))
    assert info["Accounts"] == 4
    q = s.as_frame()
    assert q.loc["max", "IM (USD)"] == res.im.max() and q.loc["median", "IM (USD)"] == \
        pytest.approx(np.median(res.im))
    top = s.tables["Largest 2 accounts by IM"]
    order = np.argsort(-res.im, kind="stable")[:2]
    assert list(top["account_id"]) == list(np.asarray(res.account_ids)[order])
    assert list(top["driver"]) == list(np.asarray(res.driver)[order])
    deficit = int(np.sum(res.excess < 0))
    assert deficit >= 1 and any("deficit" in n for n in s.notes)
    _one_line(repr(res))
    assert f"accounts={4}" in repr(res)
    _parse_html(res._repr_html_())


def test_portfolio_risk_summary_totals_and_precision():
    """Oracle: brute force. Per level, the summary's total VaR and ES are the sums over
    accounts and the median relative error is the median of es_se / es; the largest accounts
    at the highest level are the ES sort."""
    scen = monte_carlo_scenarios(GBM(0.0, 0.6), MARKET, ["BTC"], horizon_days=2,
                                 n_scenarios=4000, seed=3)
    risk = portfolio_risk(_book(), MARKET, scen, levels=(0.99, 0.975))
    s = risk.summary(top=3)
    per = s.as_frame()
    for i, lv in enumerate(risk.levels):
        assert per.loc[lv, "total ES (USD)"] == pytest.approx(risk.es[i].sum())
        assert per.loc[lv, "total VaR (USD)"] == pytest.approx(risk.var[i].sum())
        rel = risk.es_se[i] / risk.es[i]
        assert per.loc[lv, "median ES s.e. / ES"] == pytest.approx(
            np.median(rel[np.isfinite(rel)]))
    k = int(np.argmax(risk.levels))
    top = s.tables["Largest 3 accounts by ES at 0.99"]
    assert list(top["account_id"]) == list(risk.account_ids[np.argsort(-risk.es[k])[:3]])
    _one_line(repr(risk))
    _parse_html(risk._repr_html_())


# ============================================================================ backtests
def _matlab_hits() -> np.ndarray:
    h = np.zeros(1043, dtype=bool)
    h[np.linspace(3, 1040, 57).astype(int)] = True
    return h


def test_kupiec_and_traffic_light_take_the_hit_series_as_christoffersen_does():
    """Oracles: published example and law. MathWorks' pof example (57 exceptions of a 95 %
    VaR in 1,043 days: LR 0.46147, p 0.49694) from a hit series with 57 hits; every field
    equals the count form; traffic_light(hits, level) equals the count form (BCBS: 5 of 250
    is yellow, 95.88 %); christoffersen's POF part equals kupiec on the same series."""
    h = _matlab_hits()
    r = kupiec(h, 0.95)
    assert (round(r.statistic, 5), round(r.p_value, 5)) == (0.46147, 0.49694)
    assert r == kupiec(57, 1043, 0.95) == kupiec(h, level=0.95)
    assert christoffersen(h, 0.95).lr_pof == r.statistic
    h5 = np.zeros(250, dtype=int)
    h5[[10, 50, 90, 130, 170]] = 1
    assert traffic_light(h5, 0.99) == traffic_light(5) == traffic_light(5, 250, 0.99)
    assert round(100 * traffic_light(h5).cumulative_probability, 2) == 95.88
    with pytest.raises(TypeError, match="n_obs is the length of the hit series"):
        kupiec(h, 0.95, n_obs=10)
    with pytest.raises(TypeError, match="needs n_obs"):
        kupiec(57, level=0.95)
    with pytest.raises(ValueError, match="hits must be booleans or 0/1"):
        kupiec([0, 2, 1], 0.95)


def test_backtest_statistic_summaries_carry_their_p_values_and_decisions():
    """Oracle: law. The summary table repeats the result's statistics and p-values, rejects
    exactly where p < alpha, and the note points the right way: 7 clustered exceptions in
    250 days of a 99 % VaR (2.5 expected) reject coverage (too many: under-margined) and
    independence (they cluster)."""
    h = np.zeros(250, dtype=bool)
    h[[3, 4, 5, 6, 7, 8, 100]] = True
    c = christoffersen(h, 0.99)
    t = c.summary().as_frame()
    assert list(t.index) == ["POF (Kupiec)", "independence", "conditional coverage"]
    np.testing.assert_allclose(t["p_value"], [c.p_value_pof, c.p_value_ind, c.p_value_cc])
    assert list(t["reject"]) == [p < 0.05 for p in t["p_value"]]
    notes = " ".join(c.summary().notes)
    assert "under-margined" in notes and "cluster" in notes
    ok = kupiec(57, 1043, 0.95).summary()
    assert not ok.as_frame()["reject"].any() and not ok.notes
    for res in (c, kupiec(h, 0.99), traffic_light(h, 0.99)):
        _one_line(repr(res))
        _parse_html(res._repr_html_())


def test_backtest_result_summary_lists_the_rejections():
    """Oracle: brute force on a hand-made table. The notes name exactly the rows whose
    Kupiec, conditional-coverage or Z2 p-value is below alpha and the red zones; as_frame
    is the table indexed by (asset, method, position)."""
    stats_ = pd.DataFrame({
        "asset": ["BTC", "BTC", "ETH"], "method": ["gbm", "fhs", "gbm"],
        "position": ["long", "long", "long"], "first_date": ["2021-01-01"] * 3,
        "last_date": ["2024-01-01"] * 3, "n_obs": [500, 500, 500],
        "exceptions": [15, 5, 2], "expected": [5.0, 5.0, 5.0],
        "kupiec_p": [0.0004, 1.0, 0.12], "christoffersen_p_ind": [0.5, 0.6, 0.7],
        "christoffersen_p_cc": [0.001, 0.9, 0.2], "zone": ["red", "green", "green"],
        "z2": [0.5, 0.0, -0.1], "z2_p": [0.01, 0.5, 0.9], "peak_to_trough": [3.0, 2.0, 2.5],
        "avg_margin_over_notional": [0.1, 0.12, 0.11], "n_refits": [10, 10, 10],
        "n_flagged_fits": [0, 2, 0]})
    res = BacktestResult(series=pd.DataFrame(), stats=stats_, apc=pd.DataFrame(),
                         runs=pd.DataFrame(), settings={"level": 0.99, "horizon_days": 2},
                         elapsed=1.5)
    s = res.summary()
    assert s.as_frame().index.names == ["asset", "method", "position"]
    assert len(s.as_frame()) == 3
    notes = s.notes
    assert notes[0].startswith("BTC / gbm / long: Kupiec, conditional coverage, Z2 rejected")
    assert "too many" in notes[0]
    assert "BTC / gbm / long: Basel red zone" in notes
    assert "BTC / fhs / long: 2 of 10 refits flagged (see runs)" in notes
    assert not any(n.startswith("ETH") for n in notes)
    _one_line(repr(res))
    _parse_html(res._repr_html_())


# ============================================================================ cascades
def test_cascade_summary_keeps_its_table_and_adds_settings():
    """Oracle: law. The summary's table is the per-path distribution (the bad-debt mean is
    the mean of the per-path column, p_positive its share of positive paths); the settings
    repeat the run (paths, steps, horizon in days); the note's probability is that share;
    the repr is one line."""
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "b"], "instrument_id": ["BTC-PERP"] * 2,
                        "quantity": [1.0, -1.0], "entry_price": [50_000.0] * 2})
    col = pd.DataFrame({"account_id": ["a", "b"], "asset": "USDT", "amount": [3_000.0] * 2})
    res = simulate_liquidations(Book.from_frames(inst, pos, col),
                                MarketState(spot={"BTC": 50_000.0}), GBM(0.0, 1.2),
                                rules=LiquidationRules(maintenance={"BTC": 0.005}),
                                horizon_days=2, n_paths=2000, seed=5)
    s = res.summary(0.99)
    bad = res.column("bad_debt")
    assert s.as_frame().loc["bad_debt (USD)", "mean"] == pytest.approx(bad.mean())
    assert s.loc["bad_debt (USD)", "p_positive"] == np.mean(bad > 0)
    info = dict(s.info)
    assert (info["Paths"], info["Steps"], info["Horizon (days)"]) == (2000, 48,
                                                                      pytest.approx(2.0))
    assert np.mean(bad > 0) > 0
    assert f"bad debt on {np.mean(bad > 0):.2%} of paths" in s.notes[0]
    _one_line(repr(res))
    _parse_html(res._repr_html_())


def test_fmt_reads_like_a_report():
    """Oracle: the documented format. Thousands separators, 4 significant digits below
    1,000, n/a for NaN."""
    assert fmt(4.574642e8) == "457,464,200.00"
    assert fmt(1234567) == "1,234,567"
    assert fmt(0.012345) == "0.01235"
    assert fmt(float("nan")) == "n/a"
    assert fmt(2.5e-7) == "2.5000e-07"
