"""Books of :mod:`marginlab.models.book`: building, holdings, file round trips, validation.

Oracles, named per test: a hand-built book whose net holdings are written out by hand below
(positions on the same instrument in one account summed: one-way mode); pandas ``pivot_table``
summation (property test); identity of the three normalised tables after a CSV or Parquet
round trip (self-consistency law); the module's documented error contract (a BookError naming
the source, the row -- the index label for frames, the file LINE for files, the header being
line 1 -- and the column); the documented atomic write (temporary name, then rename).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginlab.models.book import INSTRUMENT_TYPES, Book, BookError, BookWarning, read_table

NAN = float("nan")
INF = float("inf")
NAMES = ("inst_src", "pos_src", "col_src")


# ----------------------------------------------------------------------------- the hand book
def frames() -> dict[str, pd.DataFrame]:
    """A small book holding every instrument type (fresh copies: tests mutate them)."""
    instruments = pd.DataFrame({
        "instrument_id": ["BTC-SPOT", "BTC-PERP", "BTC-FUT", "BTC-IPERP", "BTC-IFUT",
                          "BTC-C60K", "BTC-P40K", "ETH-PERP"],
        "type": ["spot", "linear_perp", "linear_future", "inverse_perp", "inverse_future",
                 "option", "inverse_option", "linear_perp"],
        "underlying": ["BTC", "btc", "BTC", "BTC", "BTC", "BTC", "BTC", "ETH"],
        "multiplier": [1.0, 0.001, 1.0, NAN, NAN, 1.0, 1.0, 1.0],
        "face_value": [NAN, NAN, NAN, 100.0, 10.0, NAN, NAN, NAN],
        "strike": [NAN, NAN, NAN, NAN, NAN, 60000.0, 40000.0, NAN],
        "expiry": [NAN, NAN, 0.25, NAN, 0.5, 0.25, 0.1, NAN],
        "option_type": [None, None, None, None, None, "call", "P", None],
        "funding_rate": [NAN, 1e-4, NAN, 1e-4, NAN, NAN, NAN, 2e-4],
    })  # fmt: skip
    positions = pd.DataFrame({
        "account_id": ["A", "A", "A", "B", "B", "C", "C", "C", "C", "C"],
        "instrument_id": ["BTC-PERP", "BTC-PERP", "ETH-PERP", "BTC-IPERP", "BTC-C60K",
                          "BTC-P40K", "BTC-SPOT", "BTC-FUT", "BTC-IFUT", "BTC-SPOT"],
        "quantity": [1000.0, 500.0, -10.0, -200.0, 2.0, -3.0, 0.5, 1.0, 100.0, 0.25],
        "entry_price": [48000.0, 52000.0, 2500.0, 40000.0, 1500.0, 0.01, 45000.0, 49000.0,
                        51000.0, 47000.0],
    })  # fmt: skip
    collateral = pd.DataFrame({
        "account_id": ["A", "B", "C", "C", "D"],
        "asset": ["USDT", "btc", "ETH", "USDC", "USDT"],
        "amount": [10000.0, 1.0, 5.0, 2000.0, 500.0],
        "haircut": [0.0, 0.1, 0.2, NAN, 0.0],
    })  # fmt: skip
    return {"instruments": instruments, "positions": positions, "collateral": collateral}


def build(f: dict[str, pd.DataFrame], **kw) -> Book:
    # The hand book repeats (account, instrument) rows on purpose: summed, one-way mode.
    kw.setdefault("duplicates", "sum")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BookWarning)
        return Book.from_frames(f["instruments"], f["positions"], f["collateral"], **kw)


def test_repeated_position_rows_summed_with_warning_or_refused():
    """Oracle (documented rule): repeated (account, instrument) rows are summed (one-way
    mode) with a BookWarning naming the rows, or refused with duplicates='raise', naming
    both rows."""
    f = frames()
    with pytest.raises(BookError, match=r"row 1, column 'instrument_id'.*'A' holds .*"
                                        r"'BTC-PERP' twice \(first at positions, row 0\)"):
        Book.from_frames(f["instruments"], f["positions"], f["collateral"],
                         duplicates="raise")
    with pytest.warns(BookWarning, match="2 position rows repeat.*summed"):
        book = Book.from_frames(f["instruments"], f["positions"], f["collateral"])
    np.testing.assert_array_equal(book.holdings.toarray(), HOLDINGS)


# Hand-computed net holdings. Accounts sorted: A, B, C, D. Instruments in table order:
# BTC-SPOT, BTC-PERP, BTC-FUT, BTC-IPERP, BTC-IFUT, BTC-C60K, BTC-P40K, ETH-PERP.
#   A: BTC-PERP 1000 + 500 = 1500; ETH-PERP -10
#   B: BTC-IPERP -200; BTC-C60K 2
#   C: BTC-SPOT 0.5 + 0.25 = 0.75; BTC-FUT 1; BTC-IFUT 100; BTC-P40K -3
#   D: collateral only
HOLDINGS = np.array([
    [0.0, 1500.0, 0.0, 0.0, 0.0, 0.0, 0.0, -10.0],
    [0.0, 0.0, 0.0, -200.0, 0.0, 2.0, 0.0, 0.0],
    [0.75, 0.0, 1.0, 0.0, 100.0, 0.0, -3.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
])  # fmt: skip
# Collateral, assets sorted BTC, ETH, USDC, USDT ("btc" is upper-cased).
COLLATERAL = np.array([
    [0.0, 0.0, 0.0, 10000.0],
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 5.0, 2000.0, 0.0],
    [0.0, 0.0, 0.0, 500.0],
])  # fmt: skip
# After haircuts: B's BTC 1 x (1 - 0.1) = 0.9; C's ETH 5 x (1 - 0.2) = 4; USDC haircut
# missing -> default 0.
HAIRCUT = np.array([
    [0.0, 0.0, 0.0, 10000.0],
    [0.9, 0.0, 0.0, 0.0],
    [0.0, 4.0, 2000.0, 0.0],
    [0.0, 0.0, 0.0, 500.0],
])  # fmt: skip


def test_from_frames_hand_book_holdings():
    """Oracle: hand-worked net holdings (HOLDINGS, COLLATERAL, HAIRCUT above)."""
    book = build(frames())
    assert set(book.instruments["type"]) == set(INSTRUMENT_TYPES)
    assert list(book.account_ids) == ["A", "B", "C", "D"]
    assert book.underlyings == ("BTC", "ETH")
    assert book.assets == ("BTC", "ETH", "USDC", "USDT")
    assert (book.n_accounts, book.n_instruments, book.n_positions) == (4, 8, 10)
    np.testing.assert_array_equal(book.holdings.toarray(), HOLDINGS)
    np.testing.assert_array_equal(book.collateral_holdings.toarray(), COLLATERAL)
    np.testing.assert_allclose(book.haircut_holdings.toarray(), HAIRCUT, rtol=1e-15)
    # position_account / position_instrument point each position row at its cell
    pos = book.positions
    np.testing.assert_array_equal(book.position_account, [0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(book.position_instrument, [1, 1, 7, 3, 5, 6, 0, 2, 4, 0])
    assert list(pos["quantity"]) == list(frames()["positions"]["quantity"])


def test_from_frames_normalises_instrument_fields():
    """Oracle: the module documentation -- defaults (multiplier 1, funding 0, haircut 0),
    option_type spelled 'call'/'put' ('P' -> 'put'), underlyings upper-cased, fields that do
    not apply to a type blanked (funding only for perpetuals, strike only for options)."""
    inst = build(frames()).instruments.set_index("instrument_id")
    assert inst.loc["BTC-P40K", "option_type"] == "put"
    assert inst.loc["BTC-C60K", "option_type"] == "call"
    assert inst.loc["BTC-SPOT", "option_type"] == ""
    assert inst.loc["BTC-PERP", "underlying"] == "BTC"
    assert inst.loc["BTC-IPERP", "multiplier"] == 1.0  # default where missing
    assert inst.loc["BTC-IPERP", "funding_rate"] == 1e-4
    assert inst.loc["BTC-SPOT", "funding_rate"] == 0.0
    assert np.isnan(inst.loc["BTC-SPOT", "strike"])
    assert np.isnan(inst.loc["BTC-PERP", "expiry"])
    assert inst.loc["BTC-IFUT", "face_value"] == 10.0
    assert np.isnan(inst.loc["BTC-FUT", "face_value"])


def test_no_collateral_table():
    """Oracle: documented default -- collateral=None means no collateral (zero columns)."""
    f = frames()
    book = Book.from_frames(f["instruments"], f["positions"])
    assert book.assets == ()
    assert book.collateral_holdings.shape == (3, 0)
    np.testing.assert_array_equal(book.holdings.toarray(), HOLDINGS[:3])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["a1", "a2", "a3", "007"]),
                          st.sampled_from(["BTC-SPOT", "BTC-PERP", "ETH-PERP", "BTC-C60K"]),
                          st.integers(-50, 50)),
                min_size=1, max_size=30))
def test_holdings_equal_pivot_sum(rows):
    """Oracle: pandas pivot_table(aggfunc='sum') of the positions (one-way netting);
    integer quantities make both sums exact."""
    f = frames()
    pos = pd.DataFrame(rows, columns=["account_id", "instrument_id", "quantity"])
    pos["quantity"] = pos["quantity"].astype(float)
    pos["entry_price"] = 100.0
    book = Book.from_frames(f["instruments"], pos, None)
    ref = pos.pivot_table(index="account_id", columns="instrument_id", values="quantity",
                          aggfunc="sum", fill_value=0.0)
    ref = ref.reindex(index=sorted(set(pos["account_id"])),
                      columns=list(f["instruments"]["instrument_id"]), fill_value=0.0)
    assert list(book.account_ids) == list(ref.index)
    np.testing.assert_array_equal(book.holdings.toarray(), ref.to_numpy(float))


# ----------------------------------------------------------------------------- round trips
def _assert_same_book(a: Book, b: Book) -> None:
    for name in ("instruments", "positions", "collateral"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_dtype=True)
    assert list(a.account_ids) == list(b.account_ids)
    assert a.underlyings == b.underlyings and a.assets == b.assets
    for name in ("holdings", "collateral_holdings", "haircut_holdings"):
        np.testing.assert_array_equal(getattr(a, name).toarray(), getattr(b, name).toarray())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_gives_identical_book(tmp_path, fmt):
    """Oracle (self-consistency law): to_files then from_files reproduces the normalised
    tables exactly, including text ids that look like numbers ('007', '1e3')."""
    f = frames()
    f["positions"].loc[0, "account_id"] = "007"
    f["collateral"].loc[0, "account_id"] = "007"
    f["instruments"].loc[7, "instrument_id"] = "1e3"
    f["positions"].loc[2, "instrument_id"] = "1e3"
    book = build(f)
    paths = book.to_files(tmp_path / "out", fmt=fmt)
    assert set(paths) == {"instruments", "positions", "collateral"}
    assert all(p.suffix == f".{fmt}" and p.exists() for p in paths.values())
    again = Book.from_files(paths["instruments"], paths["positions"], paths["collateral"])
    _assert_same_book(book, again)
    assert "007" in again.account_ids


def test_round_trip_without_collateral(tmp_path):
    """Oracle (self-consistency law): a book without collateral survives a CSV round trip."""
    f = frames()
    book = Book.from_frames(f["instruments"], f["positions"])
    paths = book.to_files(tmp_path, fmt="csv")
    again = Book.from_files(paths["instruments"], paths["positions"], paths["collateral"])
    _assert_same_book(book, again)


def test_to_files_leaves_only_the_three_files(tmp_path):
    """Oracle: documented atomic write -- after writing (twice, overwriting) the folder holds
    exactly the three tables, no temporary file."""
    book = build(frames())
    for fmt in ("csv", "csv", "parquet"):
        book.to_files(tmp_path, fmt=fmt)
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"{n}.{x}" for n in ("instruments", "positions", "collateral") for x in ("csv", "parquet"))


def _failing_to_csv(monkeypatch, fail_on: str):
    """Make DataFrame.to_csv write half a file and raise when writing ``fail_on``."""
    real = pd.DataFrame.to_csv

    def fake(self, path=None, *args, **kwargs):
        if path is not None and fail_on in str(path):
            Path(path).write_text("account_id,instr")  # a torn write
            raise OSError("disk full")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", fake)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    """Oracle: documented atomic write -- a write that fails midway leaves the previous
    complete file in place (the torn content only ever lives under a temporary name)."""
    book = build(frames())
    book.to_files(tmp_path)
    before = (tmp_path / "positions.csv").read_text()
    _failing_to_csv(monkeypatch, "positions")
    with pytest.raises(OSError, match="disk full"):
        book.to_files(tmp_path)
    assert (tmp_path / "positions.csv").read_text() == before


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Oracle: the brief's atomic-write contract -- no temporary file is left behind, also
    when the write fails."""
    book = build(frames())
    _failing_to_csv(monkeypatch, "positions")
    with pytest.raises(OSError, match="disk full"):
        book.to_files(tmp_path)
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert leftovers == []


def test_to_files_bad_format(tmp_path):
    """Oracle: API contract -- only 'csv' and 'parquet' are formats."""
    with pytest.raises(ValueError, match="fmt must be 'csv' or 'parquet'"):
        build(frames()).to_files(tmp_path, fmt="xlsx")


# ----------------------------------------------------------------------------- frame errors
def _set(table, row, col, value):
    def mutate(f):
        frame = f[table]
        if frame[col].dtype != object and isinstance(value, str):
            frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
    return mutate


def _drop(table, col):
    def mutate(f):
        f[table] = f[table].drop(columns=[col])
    return mutate


def _append(table, row):
    def mutate(f):
        f[table] = pd.concat([f[table], pd.DataFrame([row])], ignore_index=True)
    return mutate


# (mutation, source, row text, column, message fragment); rows are frame index labels
MALFORMED = {
    "unknown-type": (_set("instruments", 2, "type", "swap"), "inst_src", "row 2", "type",
                     "unknown instrument type 'swap'"),
    "missing-column-instruments": (_drop("instruments", "underlying"), "inst_src", None,
                                   "underlying", "missing column"),
    "missing-column-positions": (_drop("positions", "quantity"), "pos_src", None, "quantity",
                                 "missing column"),
    "missing-column-collateral": (_drop("collateral", "amount"), "col_src", None, "amount",
                                  "missing column"),
    "quantity-inf": (_set("positions", 3, "quantity", INF), "pos_src", "row 3", "quantity",
                     "finite"),
    "quantity-nan": (_set("positions", 4, "quantity", NAN), "pos_src", "row 4", "quantity",
                     "a number is required"),
    "quantity-text": (_set("positions", 5, "quantity", "12x"), "pos_src", "row 5", "quantity",
                      "not a number: '12x'"),
    "quantity-text-inf": (_set("positions", 5, "quantity", "-inf"), "pos_src", "row 5",
                          "quantity", "finite"),
    "entry-zero": (_set("positions", 1, "entry_price", 0.0), "pos_src", "row 1",
                   "entry_price", "must be > 0"),
    "entry-negative": (_set("positions", 6, "entry_price", -1.0), "pos_src", "row 6",
                       "entry_price", "must be > 0"),
    "strike-zero": (_set("instruments", 5, "strike", 0.0), "inst_src", "row 5", "strike",
                    "must be > 0"),
    "strike-negative": (_set("instruments", 6, "strike", -40000.0), "inst_src", "row 6",
                        "strike", "must be > 0"),
    "option-type-blank": (_set("instruments", 5, "option_type", None), "inst_src", "row 5",
                          "option_type", "must be 'call' or 'put'"),
    "option-type-junk": (_set("instruments", 6, "option_type", "straddle"), "inst_src", "row 6",
                         "option_type", "must be 'call' or 'put'"),
    "option-type-column-missing": (_drop("instruments", "option_type"), "inst_src", "row 5",
                                   "option_type", "must be 'call' or 'put'"),
    "inverse-no-face": (_set("instruments", 4, "face_value", NAN), "inst_src", "row 4",
                        "face_value", "required"),
    "inverse-face-column-missing": (_drop("instruments", "face_value"), "inst_src", "row 3",
                                    "face_value", "required"),
    "option-no-expiry": (_set("instruments", 6, "expiry", NAN), "inst_src", "row 6", "expiry",
                         "required"),
    "expiry-column-missing": (_drop("instruments", "expiry"), "inst_src", "row 2", "expiry",
                              "required"),
    "undefined-instrument": (_set("positions", 1, "instrument_id", "NOPE"), "pos_src", "row 1",
                             "instrument_id", "'NOPE' is not defined"),
    "duplicate-instrument": (_set("instruments", 7, "instrument_id", "BTC-SPOT"), "inst_src",
                             "row 7", "instrument_id", "duplicate instrument_id 'BTC-SPOT'"),
    "duplicate-collateral": (_append("collateral", {"account_id": "A", "asset": "usdt",
                                                    "amount": 1.0, "haircut": 0.0}),
                             "col_src", "row 5", "asset", "duplicate collateral row"),
    "haircut-one": (_set("collateral", 1, "haircut", 1.0), "col_src", "row 1", "haircut",
                    "< 1"),
    "haircut-above-one": (_set("collateral", 2, "haircut", 1.5), "col_src", "row 2", "haircut",
                          "< 1"),
    "haircut-negative": (_set("collateral", 2, "haircut", -0.1), "col_src", "row 2", "haircut",
                         ">= 0"),
    "amount-negative": (_set("collateral", 3, "amount", -5.0), "col_src", "row 3", "amount",
                        ">= 0"),
    "account-blank": (_set("positions", 2, "account_id", "  "), "pos_src", "row 2",
                      "account_id", "a value is required"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_frame_raises_book_error(case):
    """Oracle: documented error contract -- BookError naming the source, the row (frame index
    label) and the column of the first problem."""
    mutate, source, row, column, fragment = MALFORMED[case]
    f = frames()
    mutate(f)
    with pytest.raises(BookError) as info:
        build(f, names=NAMES)
    msg = str(info.value)
    assert msg.startswith(source), msg
    if row is not None:
        assert f"{source}, {row}, column '{column}'" in msg, msg
    else:
        assert column in msg, msg
    assert fragment in msg, msg


def test_error_names_index_label_of_frame():
    """Oracle: documented error contract -- for frames the row is the index label."""
    f = frames()
    f["positions"].index = [f"p{i}" for i in range(len(f["positions"]))]
    f["positions"].loc["p4", "entry_price"] = -3.0
    with pytest.raises(BookError, match=r"^positions, row 'p4', column 'entry_price'"):
        build(f)


def test_duplicate_collateral_cites_first_row():
    """Oracle: hand example -- asset names are case-insensitive, so 'usdt' duplicates row 0's
    'USDT' of account A; the message cites both rows."""
    mutate = MALFORMED["duplicate-collateral"][0]
    f = frames()
    mutate(f)
    with pytest.raises(BookError, match=r"account 'A' and asset 'USDT' \(first at col_src, "
                                        r"row 0\)"):
        build(f, names=NAMES)


# ----------------------------------------------------------------------------- file errors
def _write_csvs(folder: Path, f: dict[str, pd.DataFrame]) -> dict[str, Path]:
    paths = {}
    for name, frame in f.items():
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


# (mutation, table, data row index, column): the expected line is index + 2 (header = line 1)
FILE_CASES = {
    "unknown-type": (_set("instruments", 6, "type", "swap"), "instruments", 6, "type"),
    "quantity-text": (_set("positions", 2, "quantity", "abc"), "positions", 2, "quantity"),
    "entry-zero": (_set("positions", 9, "entry_price", 0.0), "positions", 9, "entry_price"),
    "haircut-one": (_set("collateral", 1, "haircut", 1.0), "collateral", 1, "haircut"),
    "undefined-instrument": (_set("positions", 0, "instrument_id", "X"), "positions", 0,
                             "instrument_id"),
}


@pytest.mark.parametrize("case", list(FILE_CASES), ids=list(FILE_CASES))
def test_csv_error_cites_line_and_path(tmp_path, case):
    """Oracle: documented error contract -- for files the row is the LINE number (header =
    line 1, so data row i is line i + 2) and the source is the file path."""
    mutate, table, row, column = FILE_CASES[case]
    f = frames()
    mutate(f)
    paths = _write_csvs(tmp_path, f)
    with pytest.raises(BookError) as info:
        Book.from_files(paths["instruments"], paths["positions"], paths["collateral"])
    msg = str(info.value)
    assert msg.startswith(f"{paths[table]}, line {row + 2}, column '{column}'"), msg
    # cross-check the line number against the file itself: that line holds the bad value
    lines = paths[table].read_text().splitlines()
    field = lines[row + 1].split(",")[lines[0].split(",").index(column)]
    value = f[table].loc[row, column]
    assert field == str(value) or float(field) == float(value), (field, value)


def test_csv_duplicate_cites_both_lines(tmp_path):
    """Oracle: hand example -- instrument row 7 duplicates row 0: lines 9 and 2."""
    f = frames()
    _set("instruments", 7, "instrument_id", "BTC-SPOT")(f)
    paths = _write_csvs(tmp_path, f)
    p = paths["instruments"]
    with pytest.raises(BookError, match=re.escape(
            f"{p}, line 9, column 'instrument_id': duplicate instrument_id 'BTC-SPOT' "
            f"(first at {p}, line 2)")):
        Book.from_files(paths["instruments"], paths["positions"], paths["collateral"])


def test_csv_error_line_counts_blank_lines(tmp_path):
    """Oracle: hand-written file -- the bad value sits on physical line 4 (header line 1, a
    data line, a blank line, then the bad line); the error must cite line 4."""
    f = frames()
    paths = _write_csvs(tmp_path, f)
    bad = tmp_path / "bad_positions.csv"
    bad.write_text("account_id,instrument_id,quantity,entry_price\n"
                   "A,BTC-PERP,1,50000\n"
                   "\n"
                   "A,BTC-PERP,abc,50000\n")
    with pytest.raises(BookError) as info:
        Book.from_files(paths["instruments"], bad, paths["collateral"])
    msg = str(info.value)
    assert f"{bad}, line 4, column 'quantity'" in msg, msg


def test_csv_missing_column_names_file(tmp_path):
    """Oracle: documented error contract -- a missing column names the file and column."""
    f = frames()
    f["collateral"] = f["collateral"].drop(columns=["asset"])
    paths = _write_csvs(tmp_path, f)
    with pytest.raises(BookError, match=re.escape(f"{paths['collateral']}: missing column(s) "
                                                  "['asset']")):
        Book.from_files(paths["instruments"], paths["positions"], paths["collateral"])


def test_read_table_errors(tmp_path):
    """Oracle: API contract of read_table -- missing file, empty file, unknown extension."""
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_table(tmp_path / "absent.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BookError, match=re.escape(f"{empty}: the file is empty")):
        read_table(empty)
    odd = tmp_path / "table.xlsx"
    odd.write_text("x")
    with pytest.raises(BookError, match=r"unknown table format '\.xlsx'"):
        read_table(odd)


def test_parquet_error_cites_row(tmp_path):
    """Oracle: documented error contract -- Parquet has no lines, so errors cite the data
    row counted from 1 (frame index 3 is row 4)."""
    f = frames()
    f["positions"].loc[3, "entry_price"] = -2.0
    for name, frame in f.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    p = tmp_path / "positions.parquet"
    with pytest.raises(BookError, match=re.escape(f"{p}, row 4, column 'entry_price'")):
        Book.from_files(tmp_path / "instruments.parquet", p, tmp_path / "collateral.parquet")


def test_subset_keeps_selected_accounts():
    """Oracle: hand holdings -- subset to accounts B and D gives rows 1 and 3 of HOLDINGS."""
    book = build(frames()).subset(np.array([1, 3]))
    assert list(book.account_ids) == ["B", "D"]
    np.testing.assert_array_equal(book.holdings.toarray(), HOLDINGS[[1, 3]])
