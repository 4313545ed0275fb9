"""Futures basis (:mod:`marginlab.models.basis`) and the SPAN-like calendar spread.

Oracles: a brute-force loop over the raw CSV rows (CME close vs the perpetual's 20:00 UTC
close, same contract, no expiry day) for the basis changes and their quantile; the historical
exceedance frequency of the calendar spread's margin (binomial standard error); the SPAN
spread-charge rule by hand; exact zeros on the grid (perpetual and future move together).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marginlab.models import Book, MarketState
from marginlab.models.basis import (
    BTC_INTRA_SPREAD_CHARGE,
    CME_FILE,
    PERP_FILE,
    basis_changes,
    cme_perp_basis,
    spread_charge_rate,
)
from marginlab.models.history import shared_data_dir
from marginlab.models.margin.grid import SpanLike

DATA = shared_data_dir() or Path("/nonexistent/shared/data")
HAVE = (DATA / CME_FILE).is_file() and (DATA / PERP_FILE).is_file()
NAN = float("nan")


def brute_force_changes(h: int) -> list[float]:
    """Plain-Python reading of the two CSV files (the oracle)."""
    perp = {}
    with open(DATA / PERP_FILE) as f:
        for r in csv.DictReader(f):
            if r["datetime_utc"][11:13] == "19":
                perp[r["datetime_utc"][:10]] = float(r["close"])
    rows = []
    with open(DATA / CME_FILE) as f:
        for r in csv.DictReader(f):
            if r["date"] in perp:
                rows.append((r["date"], r["expiry"], float(r["close"]) / perp[r["date"]] - 1))
    out = []
    for i in range(len(rows) - h):
        (d0, e0, b0), (d1, e1, b1) = rows[i], rows[i + h]
        if e0 == e1 and d0 != e0 and d1 != e1:
            out.append(b1 - b0)
    return out


@pytest.mark.skipif(not HAVE, reason="shared data folder absent")
def test_basis_changes_match_a_brute_force_reading_of_the_files():
    """Oracle: brute-force loop over the CSV rows; and the README's figures (median premium
    about +0.21 %, standard deviation about 0.9 %)."""
    frame = cme_perp_basis(DATA)
    assert frame["basis"].median() == pytest.approx(0.0021, abs=0.0005)
    assert frame["basis"].std() == pytest.approx(0.009, abs=0.001)
    for h in (1, 2):
        ours = basis_changes(frame, h)
        ref = brute_force_changes(h)
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)
    rate = spread_charge_rate(0.99, 2, DATA)
    ref = sorted(abs(x) for x in brute_force_changes(2))
    assert rate == pytest.approx(np.quantile(ref, 0.99), rel=1e-12)
    assert abs(rate - BTC_INTRA_SPREAD_CHARGE) < 0.002  # the documented default, rounded


def calendar_book() -> Book:
    inst = pd.DataFrame([("BTC-Q", "linear_future", "BTC", 1.0, NAN, NAN, 0.25, None),
                         ("BTC-PERP", "linear_perp", "BTC", 1.0, NAN, NAN, NAN, None)],
                        columns=["instrument_id", "type", "underlying", "multiplier",
                                 "face_value", "strike", "expiry", "option_type"])
    pos = pd.DataFrame([("cal", "BTC-Q", 10.0, 60_000.0), ("cal", "BTC-PERP", -10.0, 60_000.0)],
                       columns=["account_id", "instrument_id", "quantity", "entry_price"])
    return Book.from_frames(inst, pos)


def test_calendar_spread_margin_is_the_spread_charge_exactly():
    """Hand arithmetic (SPAN intra-commodity spread): long 10 BTC quarterly, short 10 BTC
    perpetual at 60,000: the scan is exactly 0 on every scenario (no 1e-13), one tier pair
    of 10 spreads, maintenance = 0.04 x 60,000 x 10 = 24,000, initial 1.1 x."""
    span = SpanLike(0.1, 0.3, intra_spread_charge={"BTC": BTC_INTRA_SPREAD_CHARGE})
    market = MarketState(spot={"BTC": 60_000.0})
    res = span.compute(calendar_book(), market)
    assert res.details["scanning_risk"][0] == 0.0
    assert np.all(span.risk_arrays(calendar_book(), market)["BTC"] == 0.0)
    assert res.mm[0] == pytest.approx(24_000.0, rel=1e-12)
    assert res.im[0] == pytest.approx(26_400.0, rel=1e-12)
    assert res.driver[0] == "BTC intra-commodity spread charge"
    assert SpanLike(0.1, 0.3).compute(calendar_book(), market).im[0] == 0.0


@pytest.mark.skipif(not HAVE, reason="shared data folder absent")
def test_calendar_spread_margin_is_in_line_with_historical_basis_moves():
    """Oracle: the historical record. The spread's 2-day loss on day t is 10 x 60,000 x
    |basis change| (the legs' notional times the basis move); its margin at the calibrated
    99 % rate is exceeded on 1 % of the days, within 3 binomial standard errors."""
    rate = spread_charge_rate(0.99, 2, DATA)
    span = SpanLike(0.1, 0.3, intra_spread_charge={"BTC": rate}, initial_multiplier=1.0)
    res = span.compute(calendar_book(), MarketState(spot={"BTC": 60_000.0}))
    losses = [10 * 60_000.0 * abs(x) for x in brute_force_changes(2)]
    n = len(losses)
    freq = sum(loss > res.im[0] for loss in losses) / n
    assert abs(freq - 0.01) <= 3 * math.sqrt(0.01 * 0.99 / n) + 1.0 / n


def test_basis_changes_bad_horizon():
    """Error contract."""
    frame = pd.DataFrame({"date": [], "expiry": [], "basis": []})
    with pytest.raises(ValueError, match=r"horizon_days must be an int in \[1, 60\], got 0"):
        basis_changes(frame, 0)
    assert basis_changes(frame, 2).size == 0
