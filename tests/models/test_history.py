"""Tests of marginlab.models.history: reading, validating and aligning price files.

Oracles: hand-written files whose content is known, closed forms for returns
(log(p1/p0)), and the documented facts of ../shared/data/README.md (row counts, gaps,
spot prices) for the real data (skipped when it is absent).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marginlab.models.history import Gap, PriceHistory, read_many, read_prices, shared_data_dir

DATA = shared_data_dir() or Path("/nonexistent/shared/data")
needs_data = pytest.mark.skipif(not (DATA / "btc_usd_daily.csv").is_file(),
                                reason="real data not available")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "date,open,high,low,close\n" + "".join(
    f"2024-01-{d:02d},{100 + d},{101 + d},{99 + d},{100.5 + d}\n" for d in range(1, 8)
)


# ---------------------------------------------------------------- good files


def test_read_csv_basic(tmp_path):
    # Oracle: the file's own values and log(p_t / p_{t-1}).
    p = _write(tmp_path, "asset.csv", GOOD)
    h = read_prices(p)
    assert h.names == ("asset",)
    assert h.source == str(p)
    assert h.times.dtype == np.dtype("datetime64[ns]")
    assert h.times[0] == np.datetime64("2024-01-01")
    np.testing.assert_array_equal(h.prices, 100.5 + np.arange(1, 8))
    assert h.step == 1 / 365
    assert h.gaps() == []
    np.testing.assert_allclose(h.log_returns(), np.log(h.prices[1:] / h.prices[:-1]),
                               rtol=1e-12)
    assert set(h.extra) == {"open", "high", "low"}
    df = h.to_frame()
    assert list(df.columns) == ["asset", "open", "high", "low"]
    assert df.index.name == "time"
    assert h.summary().loc["asset", "n_obs"] == 7


def test_hourly_step_and_other_columns(tmp_path):
    # Oracle: 1 hour = 1/8760 of a 365-day year; column names are case-insensitive.
    text = "Timestamp,Price\n" + "".join(
        f"2024-03-01T{h:02d}:00:00Z,{50 + h}\n" for h in range(6))
    h = read_prices(_write(tmp_path, "h.csv", text), column="price")
    assert h.step == 1 / 8760
    assert h.times[2] == np.datetime64("2024-03-01T02:00")


def test_time_zone_offsets_convert_to_utc(tmp_path):
    # Oracle: 01:00+01:00 is 00:00 UTC.
    text = "datetime,close\n2024-03-01T01:00:00+01:00,1\n2024-03-01T01:00:00Z,2\n" \
           "2024-03-01T02:00:00Z,3\n"
    h = read_prices(_write(tmp_path, "tz.csv", text))
    assert h.times[0] == np.datetime64("2024-03-01T00:00")


def test_epoch_milliseconds(tmp_path):
    # Oracle: 1704067200000 ms is 2024-01-01T00:00Z.
    text = "timestamp,close\n" + "".join(
        f"{1704067200000 + 86_400_000 * i},{10 + i}\n" for i in range(4))
    h = read_prices(_write(tmp_path, "ms.csv", text))
    assert h.times[0] == np.datetime64("2024-01-01")
    assert h.step == 1 / 365


def test_explicit_time_and_price_columns(tmp_path):
    text = "when,date,mark\n2024-01-01,x,1\n2024-01-02,y,2\n2024-01-03,z,3\n"
    h = read_prices(_write(tmp_path, "c.csv", text), column="MARK", time_column="when")
    np.testing.assert_array_equal(h.prices, [1.0, 2.0, 3.0])


def test_parquet_round_trip(tmp_path):
    # Oracle: the same frame written as CSV and as Parquet reads identically.
    csv = _write(tmp_path, "a.csv", GOOD)
    df = pd.read_csv(csv)
    df["date"] = pd.to_datetime(df["date"])
    pq = tmp_path / "a.parquet"
    df.to_parquet(pq)
    a, b = read_prices(csv), read_prices(pq)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.prices, b.prices)
    # datetime index instead of a column
    pq2 = tmp_path / "b.parquet"
    df.set_index("date").to_parquet(pq2)
    np.testing.assert_array_equal(read_prices(pq2).times, a.times)


def test_blank_line_is_skipped_but_counted(tmp_path):
    text = "date,close\n2024-01-01,1\n\n2024-01-02,2\n2024-01-03,-3\n"
    p = _write(tmp_path, "blank.csv", text)
    with pytest.raises(ValueError, match=r"line 5, column 'close'"):
        read_prices(p)


# ---------------------------------------------------------------- gaps


def test_gaps_drop_and_keep(tmp_path):
    # Oracle: prices 1, 2, (missing 3rd and 4th), 4, 8: one gap of 2 missing days; the
    # return across it is log(4/2) and is dropped by default.
    text = "date,close\n2024-01-01,1\n2024-01-02,2\n2024-01-05,4\n2024-01-06,8\n"
    h = read_prices(_write(tmp_path, "gap.csv", text))
    assert h.step == 1 / 365
    assert h.gaps() == [Gap(np.datetime64("2024-01-02", "ns"), np.datetime64("2024-01-05", "ns"),
                            2)]
    np.testing.assert_allclose(h.log_returns(), [math.log(2), math.log(2)])
    np.testing.assert_allclose(h.log_returns("keep"), [math.log(2), math.log(2), math.log(2)])
    np.testing.assert_array_equal(h.return_times(), h.times[[1, 3]])
    assert h.summary().loc["gap", "missing_steps"] == 2
    with pytest.raises(ValueError, match="gap_policy"):
        h.log_returns("fill")


# ---------------------------------------------------------------- bad files


BAD = {
    "negative": ("date,close\n2024-01-01,1\n2024-01-02,-2\n2024-01-03,3\n", 3, "close",
                 "-2"),
    "nan": ("date,close\n2024-01-01,1\n2024-01-02,2\n2024-01-03,NaN\n", 4, "close", "NaN"),
    "zero": ("date,close\n2024-01-01,0\n2024-01-02,2\n", 2, "close", "'0'"),
    "inf": ("date,close\n2024-01-01,1\n2024-01-02,inf\n", 3, "close", "inf"),
    "empty_price": ("date,close\n2024-01-01,1\n2024-01-02,\n2024-01-03,3\n", 3, "close",
                    "''"),
    "text_price": ("date,close\n2024-01-01,1\n2024-01-02,abc\n", 3, "close", "abc"),
    "duplicate": ("date,close\n2024-01-01,1\n2024-01-02,2\n2024-01-02,3\n", 4, "date",
                  "duplicate"),
    "unsorted": ("date,close\n2024-01-01,1\n2024-01-03,2\n2024-01-02,3\n", 4, "date",
                 "sorted"),
    "bad_time": ("date,close\n2024-01-01,1\n2024-13-45,2\n", 3, "date", "2024-13-45"),
    "missing_close": ("date,open\n2024-01-01,1\n2024-01-02,2\n", 1, "close", "missing"),
    "missing_time": ("day,close\n2024-01-01,1\n2024-01-02,2\n", 1, None, "no time column"),
    "bad_open": ("date,open,close\n2024-01-01,1,1\n2024-01-02,-5,2\n", 3, "open", "-5"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_names_file_line_column(tmp_path, case):
    # Oracle: the hand-made defect's known location.
    text, line, column, detail = BAD[case]
    p = _write(tmp_path, f"{case}.csv", text)
    with pytest.raises(ValueError) as info:
        read_prices(p)
    msg = str(info.value)
    assert str(p) in msg
    assert (f"line {line}" if line > 1 else "line 1 (header)") in msg
    if column is not None:
        assert f"column '{column}'" in msg
    assert detail in msg


def test_bad_parquet_names_row(tmp_path):
    df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=3), "close": [1.0, np.nan,
                                                                               3.0]})
    p = tmp_path / "bad.parquet"
    df.to_parquet(p)
    with pytest.raises(ValueError, match=r"bad\.parquet, row 1, column 'close'"):
        read_prices(p)


def test_other_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_prices(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_prices(_write(tmp_path, "x.txt", GOOD))
    with pytest.raises(ValueError, match="empty"):
        read_prices(_write(tmp_path, "e.csv", ""))
    with pytest.raises(ValueError, match="at least 2 data rows"):
        read_prices(_write(tmp_path, "one.csv", "date,close\n2024-01-01,1\n"))


def test_price_history_validation():
    t = np.array(["2024-01-01", "2024-01-02", "2024-01-02"], dtype="datetime64[D]")
    with pytest.raises(ValueError, match="strictly increasing"):
        PriceHistory(t, [1.0, 2.0, 3.0])
    t = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[D]")
    with pytest.raises(ValueError, match=r"prices must be finite and > 0, got -2\.0"):
        PriceHistory(t, [1.0, -2.0, 3.0])
    with pytest.raises(ValueError, match="shape"):
        PriceHistory(t, [1.0, 2.0])
    with pytest.raises(ValueError, match="names"):
        PriceHistory(t, np.ones((3, 2)), names=("a",))
    with pytest.raises(ValueError, match="step"):
        PriceHistory(t, [1.0, 2.0, 3.0], step=-1.0)


# ---------------------------------------------------------------- read_many


def test_read_many_inner_join(tmp_path):
    # Oracle: the dates both files share, by hand.
    a = _write(tmp_path, "a.csv", "date,close\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n"
               "2024-01-04,4\n")
    b = _write(tmp_path, "b.csv", "date,close\n2024-01-02,20\n2024-01-03,30\n2024-01-04,40\n"
               "2024-01-05,50\n")
    h = read_many({"A": a, "B": b})
    assert h.names == ("A", "B")
    assert h.prices.shape == (3, 2)
    np.testing.assert_array_equal(h.prices, [[2, 20], [3, 30], [4, 40]])
    assert h.times[0] == np.datetime64("2024-01-02")
    assert h.log_returns().shape == (2, 2)
    assert read_many([a, b]).names == ("a", "b")
    assert h.source == (str(a), str(b))


def test_read_many_errors(tmp_path):
    d = _write(tmp_path, "d.csv", "date,close\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n")
    hr = _write(tmp_path, "h.csv", "datetime,close\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n"
                "2024-01-01 02:00,3\n")
    with pytest.raises(ValueError, match="different steps"):
        read_many([d, hr])
    with pytest.raises(ValueError, match="distinct"):
        read_many([d, d])
    with pytest.raises(TypeError, match="read_prices"):
        read_many(d)
    with pytest.raises(ValueError, match="at least one"):
        read_many([])
    late = _write(tmp_path, "late.csv", "date,close\n2025-01-01,1\n2025-01-02,2\n")
    with pytest.raises(ValueError, match="share 0"):
        read_many([d, late])


def test_read_many_join_creates_gap(tmp_path):
    # Oracle: B lacks 2024-01-03, so the joined history has a one-day gap.
    a = _write(tmp_path, "a.csv", "date,close\n" + "".join(
        f"2024-01-0{i},{i}\n" for i in range(1, 7)))
    b = _write(tmp_path, "b.csv", "date,close\n" + "".join(
        f"2024-01-0{i},{i}\n" for i in (1, 2, 4, 5, 6)))
    h = read_many([a, b])
    assert h.step == 1 / 365
    assert [g.missing for g in h.gaps()] == [1]
    assert h.log_returns().shape == (3, 2)


# ---------------------------------------------------------------- real data


@needs_data
def test_real_daily_btc():
    # Oracle: README.md (2150 rows, no gaps, close 4970.79 on 2020-03-12).
    h = read_prices(DATA / "btc_usd_daily.csv")
    assert h.n_obs == 2150 and h.step == 1 / 365 and h.gaps() == []
    i = np.searchsorted(h.times, np.datetime64("2020-03-12"))
    assert h.prices[i] == 4970.79


@needs_data
def test_real_dvol_gaps():
    # Oracle: README.md (1594 rows, 260 missing days).
    h = read_prices(DATA / "btc_dvol_daily_2021_2026.csv", column="dvol_close")
    assert h.n_obs == 1594 and h.step == 1 / 365
    gaps = h.gaps()
    assert sum(g.missing for g in gaps) == 260
    assert h.log_returns("keep").size == 1593
    assert h.log_returns().size == 1593 - len(gaps)


@needs_data
def test_real_hourly_and_many():
    # Oracle: README.md (37806 hourly rows, complete; SOL starts 2020-04-10).
    h = read_prices(DATA / "btc_usdt_perp_hourly_binance_2019_2023.csv")
    assert h.n_obs == 37806 and h.step == 1 / 8760 and h.gaps() == []
    m = read_many({"BTC": DATA / "btc_usd_daily.csv", "SOL": DATA / "sol_usd_daily.csv"})
    assert m.prices.shape == (2050, 2)
    assert m.times[0] == np.datetime64("2020-04-10")


def test_shared_data_dir_lookup(tmp_path, monkeypatch):
    """Contract: MARGINLAB_DATA wins; otherwise a shared/data folder is found upwards from the
    working directory; an absent folder gives None (tests and notebooks then skip)."""
    monkeypatch.setenv("MARGINLAB_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("MARGINLAB_DATA", str(tmp_path / "missing"))
    assert shared_data_dir() is None
    monkeypatch.delenv("MARGINLAB_DATA")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    assert shared_data_dir() == (tmp_path / "shared" / "data").resolve()
