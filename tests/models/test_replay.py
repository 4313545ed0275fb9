"""Replay of the live margin engine through a price history.

Oracles: a hand-computed series on a two-account book of linear BTC perpetuals (margin balance
``collateral + q (S - E)``, IM ``= ES_0 S / S_0`` by positive homogeneity with ES_0 from sorted
scenario losses, the margin-call / liquidation tests, bad debt ``max(-balance, 0)`` at the
liquidation tick); the batch ``MonteCarloMargin.compute`` at the last tick of a replay with a
full re-margin every tick on the real hourly BTC perpetual (skipped without the data); the
CLI's files read back.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from marginlab.models import GBM, Book, MarketState, ScenarioSet, make_book
from marginlab.models.engine import MarginEngine, RemarginPolicy, replay, synthetic_history
from marginlab.models.history import read_prices, shared_data_dir
from marginlab.models.margin import MonteCarloMargin

S0 = 100_000.0
PATH = [99_000.0, 96_000.0, 93_000.0, 90_000.0, 95_000.0, 89_000.0, 70_000.0, 72_000.0]


def _book():
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
                         "underlying": ["BTC"]})
    pos = pd.DataFrame({"account_id": ["a", "b"], "instrument_id": ["BTC-PERP", "BTC-PERP"],
                        "quantity": [1.0, -0.5], "entry_price": [S0, S0]})
    col = pd.DataFrame({"account_id": ["a", "b"], "asset": "USDT", "amount": [20_000.0, 40_000.0]})
    return Book.from_frames(inst, pos, col)


def _scenarios(n=1_000):
    rng = np.random.default_rng(7)
    p = S0 * np.exp(0.05 * rng.standard_normal((n, 1)))
    return ScenarioSet(("BTC",), p, np.ones_like(p), 2 / 365), p[:, 0]


def _es_sorted(losses, level=0.99):
    w = losses.size * (1 - level)
    k = int(round(w))
    assert abs(w - k) < 1e-9
    return np.sort(losses)[::-1][:k].mean()


def _hand_series(p):
    """The series by hand: accounts a (long 1) and b (short 0.5)."""
    es_a = _es_sorted(-(p - S0))
    es_b = _es_sorted(0.5 * (p - S0))
    coll = {"a": 20_000.0, "b": 40_000.0}
    qty = {"a": 1.0, "b": -0.5}
    es0 = {"a": es_a, "b": es_b}
    status = {"a": 0, "b": 0}
    closed = {}
    rows = []
    for s in PATH:
        im, mm, mb, calls, liqs, bad = 0.0, 0.0, 0.0, 0, 0, 0.0
        for acc in ("a", "b"):
            if acc in closed:
                bal, i_m = closed[acc], 0.0
            else:
                bal = coll[acc] + qty[acc] * (s - S0)
                i_m = max(es0[acc] * s / S0, 0.0)
            m_m = 0.5 * i_m
            new = 2 if (bal <= 0 or m_m / bal >= 1) else (1 if bal < i_m else 0)
            if new != status[acc]:
                calls += new == 1
                liqs += new == 2
                if new == 2 and acc not in closed:
                    closed[acc] = bal  # positions closed at the mark: P&L realised
                    bad += max(-bal, 0.0)
                    i_m, m_m = 0.0, 0.0
                    new = 2 if bal <= 0 else 0
            status[acc] = new
            im, mm, mb = im + i_m, mm + m_m, mb + bal
        rows.append({"im": im, "mm": mm, "margin_balance": mb, "margin_calls": calls,
                     "liquidations": liqs, "bad_debt": bad})
    return pd.DataFrame(rows)


def test_replay_matches_hand_computed_series(tmp_path):
    """Oracle: the hand-computed series (see the module docstring), to 1e-12 relative; the
    liquidation at the 70k gap leaves 10,000 USD of bad debt."""
    book = _book()
    sc, p = _scenarios()
    eng = MarginEngine(book, MarketState(spot={"BTC": S0}), scenarios=sc)
    prices = pd.DataFrame({"BTC": PATH},
                          index=pd.date_range("2024-01-01 01:00", periods=len(PATH), freq="h"))
    res = replay(eng, prices)
    want = _hand_series(p)
    got = res.series.reset_index(drop=True)
    for c in ("im", "mm", "margin_balance", "bad_debt"):
        np.testing.assert_allclose(got[c], want[c], rtol=1e-12, atol=1e-8, err_msg=c)
    for c in ("margin_calls", "liquidations"):
        assert list(got[c]) == list(want[c]), c
    assert want["liquidations"].sum() >= 1 and want["margin_calls"].sum() >= 1
    assert res.series["cum_bad_debt"].iloc[-1] == pytest.approx(10_000.0, rel=1e-12)
    assert res.accounts.set_index("account_id").loc["a", "bad_debt"] == pytest.approx(10_000.0)
    paths = res.to_parquet(tmp_path)
    back = pd.read_parquet(paths["series"])
    pd.testing.assert_frame_equal(back, res.series, check_freq=False)
    assert len(pd.read_parquet(paths["events"])) == len(res.events)
    fig = res.plot()
    assert len(fig.axes) >= 3
    assert "bad debt: 10,000.00 USD" in res.summary()


def test_replay_validates_prices():
    """Bad histories are refused with the reason."""
    eng = MarginEngine(_book(), MarketState(spot={"BTC": S0}), scenarios=_scenarios()[0])
    idx = pd.date_range("2024-01-01", periods=2, freq="h")
    with pytest.raises(ValueError, match="finite and > 0"):
        replay(eng, pd.DataFrame({"BTC": [1.0, -2.0]}, index=idx))
    with pytest.raises(ValueError, match="sorted"):
        replay(eng, pd.DataFrame({"BTC": [1.0, 2.0]}, index=idx[::-1]))
    with pytest.raises(TypeError):
        replay(eng, [1.0, 2.0])
    assert eng.tick == 0


def test_replay_on_real_hourly_btc_equals_batch_at_the_end():
    """Oracle: with a full re-margin every tick, the engine after 48 hours of the real hourly
    BTC perpetual equals MonteCarloMargin.compute on its book at the last prices (risk bit
    for bit); laws: event counts match the series, bad debt >= 0."""
    data = shared_data_dir()
    f = None if data is None else data / "btc_usdt_perp_hourly_binance_2019_2023.csv"
    if f is None or not f.exists():
        pytest.skip("real data folder (MARGINLAB_DATA / shared/data) absent")
    hist = read_prices(f)
    frame = pd.DataFrame({"BTC": np.asarray(hist.prices)[:49]},
                         index=pd.DatetimeIndex(hist.times[:49]))
    s0 = float(frame.iloc[0, 0])
    book = make_book(40, seed=3, underlyings=("BTC",), spot={"BTC": s0}, vol={"BTC": 0.6})
    mc = MonteCarloMargin(GBM(0.0, 0.6), ["BTC"], n_scenarios=1_000, seed=1)
    eng = MarginEngine(book, MarketState(spot={"BTC": s0}, vol={"BTC": 0.6}), mc,
                       policy=RemarginPolicy(every_ticks=1))
    res = replay(eng, frame.iloc[1:], liquidate=False)
    assert len(res.series) == 48 and res.series["full"].all()
    last = MarketState(spot={"BTC": float(frame.iloc[-1, 0])}, vol={"BTC": 0.6})
    batch = mc.compute(eng.book, last)
    f_eng = eng.to_frame()
    assert np.array_equal(f_eng["im"], batch.im)
    assert np.array_equal(f_eng["es"], batch.details["es"])
    assert res.series["margin_calls"].sum() == (res.events["kind"] == "margin_call").sum()
    assert (res.series["bad_debt"] >= 0).all()


def test_replay_cli_writes_its_outputs(tmp_path):
    """Oracle: the files written by the installed ``marginlab replay`` (a real subprocess)
    read back, with one series row per replayed hour; a bad argument exits non-zero naming
    it."""
    hist = synthetic_history(30, seed=2, s0=60_000.0)
    csv = tmp_path / "btc.csv"
    hist.rename(columns={"BTC": "close"}).to_csv(csv, index_label="datetime_utc")
    exe = shutil.which("marginlab")
    cmd = [exe] if exe else [sys.executable, "-m", "marginlab.models.app.cli"]
    out = tmp_path / "out"
    proc = subprocess.run([*cmd, "replay", str(csv), "--accounts", "30",
                           "--scenarios", "500", "--every-hours", "6", "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    series = pd.read_parquet(out / "series.parquet")
    assert len(series) == 29 and series["full"].sum() >= 4
    assert (out / "replay.png").stat().st_size > 0 and "Replay of 29 ticks" in proc.stdout
    bad = subprocess.run([*cmd, "replay", str(csv), "--accounts", "0",
                          "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--accounts" in bad.stderr
