"""Price histories: read, validate and align close prices for calibration.

:func:`read_prices` reads one asset's prices from a CSV or Parquet file into a
:class:`PriceHistory`; :func:`read_many` aligns several assets on their common timestamps for
multi-asset fits. Errors name the file, the line (CSV; ``row`` for Parquet) and the column.

Time: timestamps are stored as UTC ``numpy.datetime64[ns]`` without a time zone. The step is
inferred from the median spacing and expressed in years of 365 days (crypto trades every
day): daily data has ``step = 1/365``, hourly data ``step = 1/8760``.

Gaps
----
A *gap* is a spacing of more than 1.5 steps between consecutive observations (a missing day
in daily data, a missing hour in hourly data). Prices are never filled or interpolated. The
return across a gap spans several steps, so it is not a draw from the per-step distribution
that the models are fitted to. :meth:`PriceHistory.log_returns` therefore offers

* ``gap_policy="drop"`` (default): drop the returns that span a gap; every remaining return
  covers exactly one step. Neighbouring returns are then treated as consecutive by
  recursive models (GARCH, EWMA).
* ``gap_policy="keep"``: keep them, unscaled (a return spanning ``k`` steps has about ``k``
  times the per-step variance; nothing is rescaled by ``sqrt(k)``).

:meth:`PriceHistory.gaps` lists the gaps so that they can be reported.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "shared_data_dir","PriceHistory", "Gap", "read_prices", "read_many", "TIME_COLUMNS",
           "SECONDS_PER_YEAR"]

#: Time-column names recognised (case-insensitively, in this order) when none is given.
TIME_COLUMNS = ("date", "datetime", "datetime_utc", "timestamp", "time")
#: Seconds in a year of 365 days: steps are in these years (one day is 1/365).
SECONDS_PER_YEAR = 365 * 86_400
#: A spacing above this many median steps is a gap.
GAP_FACTOR = 1.5
_OHLC = ("open", "high", "low", "close")
_GAP_POLICIES = ("drop", "keep")
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


class Gap(NamedTuple):
    """Missing observations between two consecutive rows.

    ``start`` is the last observed time before the gap, ``end`` the first one after it and
    ``missing`` the number of missing steps (``round((end - start) / step) - 1``).
    """

    start: np.datetime64
    end: np.datetime64
    missing: int


def _check_gap_policy(gap_policy: Any) -> str:
    if gap_policy not in _GAP_POLICIES:
        raise ValueError(f"gap_policy must be 'drop' or 'keep', got {gap_policy!r}")
    return gap_policy


@dataclass(frozen=True, eq=False)
class PriceHistory:
    r"""Validated prices of one or several assets on a common, increasing time grid.

    Parameters
    ----------
    times : array_like of datetime64, shape (n_obs,)
        Observation times (UTC), strictly increasing. Stored as ``datetime64[ns]``.
    prices : array_like, shape (n_obs,) or (n_obs, n_assets)
        Prices, finite and > 0. One asset: 1-D; several assets (:func:`read_many`): 2-D.
    names : sequence of str, optional
        One name per asset. Default: ``("close",)`` or ``("asset0", "asset1", ...)``.
    source : str or tuple of str, optional
        The file(s) the prices were read from.
    step : float, optional
        Years per step. Default: the median spacing in years of 365 days (daily data gives
        exactly 1/365, hourly data 1/8760).
    extra : mapping of str to array, optional
        Further per-row columns of a single asset (e.g. ``open``, ``high``, ``low``), shown by
        :meth:`to_frame`.

    Notes
    -----
    Log returns are :math:`r_t = \log S_t - \log S_{t-1}`; see the module docstring for the
    handling of gaps.

    Examples
    --------
    >>> days = np.array(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05"],
    ...                 dtype="datetime64[D]")
    >>> h = PriceHistory(days, [100.0, 110.0, 99.0, 101.0])
    >>> h.step == 1 / 365, h.gaps()[0].missing, h.log_returns().size
    (True, 1, 2)
    """

    times: Any
    prices: Any
    names: Any = None
    source: Any = None
    step: Any = None
    extra: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            t = np.asarray(self.times).astype("datetime64[ns]")
        except (TypeError, ValueError):
            raise TypeError(f"times must be an array of datetime64, got {self.times!r}") from None
        if t.ndim != 1:
            raise ValueError(f"times must be 1-D, got shape {t.shape}")
        if np.any(np.isnat(t)):
            raise ValueError(f"times must not contain NaT (at index "
                             f"{int(np.flatnonzero(np.isnat(t))[0])})")
        try:
            p = np.array(self.prices, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"prices must be an array of real numbers, got "
                            f"{type(self.prices).__name__}") from None
        if p.ndim not in (1, 2) or p.shape[0] != t.size:
            raise ValueError(f"prices must have shape ({t.size},) or ({t.size}, n_assets) to "
                             f"match times, got shape {p.shape}")
        if t.size < 2:
            raise ValueError(f"a price history needs at least 2 observations, got {t.size}")
        bad = ~(np.isfinite(p) & (p > 0.0))
        if np.any(bad):
            idx = np.argwhere(bad)[0]
            at = tuple(int(i) for i in idx) if p.ndim == 2 else int(idx[0])
            raise ValueError(f"prices must be finite and > 0, got {float(p[tuple(idx)])!r} at "
                             f"index {at}")
        dt = np.diff(t)
        if np.any(dt <= np.timedelta64(0, "ns")):
            i = int(np.flatnonzero(dt <= np.timedelta64(0, "ns"))[0]) + 1
            raise ValueError(f"times must be strictly increasing, got {t[i]} at index {i} after "
                             f"{t[i - 1]}")
        n_assets = 1 if p.ndim == 1 else p.shape[1]
        if self.names is None:
            names = ("close",) if p.ndim == 1 else tuple(f"asset{i}" for i in range(n_assets))
        else:
            names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
            if len(names) != n_assets or not all(isinstance(x, str) for x in names):
                raise ValueError(f"names must be {n_assets} string(s), one per asset, got "
                                 f"{self.names!r}")
            if len(set(names)) != len(names):
                raise ValueError(f"names must be distinct, got {names!r}")
        median_s = float(np.median(dt.astype(np.int64))) / 1e9
        step = (1.0 / (SECONDS_PER_YEAR / median_s)) if self.step is None else self.step
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, float, np.floating)):
            raise TypeError(f"step must be a float > 0 (years), got {step!r}")
        step = float(step)
        if not (math.isfinite(step) and step > 0.0):
            raise ValueError(f"step must be finite and > 0 (years), got {step!r}")
        extra = {}
        if self.extra:
            if p.ndim != 1:
                raise ValueError("extra columns are only kept for a single asset")
            for k, v in dict(self.extra).items():
                a = np.array(v, dtype=np.float64)
                if a.shape != (t.size,):
                    raise ValueError(f"extra column {k!r} must have shape ({t.size},), got "
                                     f"{a.shape}")
                a.flags.writeable = False
                extra[str(k)] = a
        t.flags.writeable = False
        p.flags.writeable = False
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "prices", p)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "extra", extra)

    @property
    def n_obs(self) -> int:
        """Number of price observations (rows)."""
        return self.times.size

    @property
    def n_assets(self) -> int:
        """Number of assets (columns of a 2-D ``prices``)."""
        return 1 if self.prices.ndim == 1 else self.prices.shape[1]

    def _spans(self) -> np.ndarray:
        """Steps spanned by each return (1 when no observation is missing), shape (n_obs-1,)."""
        dt_s = np.diff(self.times).astype(np.int64) / 1e9
        return dt_s / (self.step * SECONDS_PER_YEAR)

    def _gap_mask(self) -> np.ndarray:
        return self._spans() > GAP_FACTOR

    def gaps(self) -> list[Gap]:
        """The gaps: spacings of more than 1.5 steps between consecutive rows.

        Returns
        -------
        list of Gap
            ``(start, end, missing)`` per gap, in time order; empty when complete.
        """
        spans = self._spans()
        out = []
        for i in np.flatnonzero(spans > GAP_FACTOR):
            out.append(Gap(self.times[i], self.times[i + 1], int(round(spans[i])) - 1))
        return out

    def log_returns(self, gap_policy: str = "drop") -> np.ndarray:
        r"""Per-step log returns :math:`\log S_t - \log S_{t-1}` (decimal, not percent).

        Parameters
        ----------
        gap_policy : {"drop", "keep"}, default "drop"
            ``"drop"`` removes the returns that span a gap, ``"keep"`` keeps them unscaled
            (see the module docstring).

        Returns
        -------
        numpy.ndarray
            Shape ``(n_returns,)`` for one asset, ``(n_returns, n_assets)`` for several.
        """
        _check_gap_policy(gap_policy)
        r = np.diff(np.log(self.prices), axis=0)
        if gap_policy == "drop":
            r = r[~self._gap_mask()]
        return r

    def return_times(self, gap_policy: str = "drop") -> np.ndarray:
        """End times of the returns of :meth:`log_returns` with the same ``gap_policy``."""
        _check_gap_policy(gap_policy)
        t = self.times[1:]
        return t[~self._gap_mask()] if gap_policy == "drop" else t

    def to_frame(self) -> pd.DataFrame:
        """Prices (and any extra columns) indexed by time, one column per asset."""
        cols = self.prices if self.prices.ndim == 2 else self.prices[:, None]
        df = pd.DataFrame(cols, index=pd.DatetimeIndex(self.times, name="time"),
                          columns=list(self.names))
        for k, v in self.extra.items():
            df[k] = v
        return df

    def summary(self) -> pd.DataFrame:
        """One row per asset: first/last time, observations, step, gaps, last price."""
        p = self.prices if self.prices.ndim == 2 else self.prices[:, None]
        gaps = self.gaps()
        return pd.DataFrame(
            {
                "first": [self.times[0]] * self.n_assets,
                "last": [self.times[-1]] * self.n_assets,
                "n_obs": self.n_obs,
                "step_years": self.step,
                "n_gaps": len(gaps),
                "missing_steps": sum(g.missing for g in gaps),
                "last_price": p[-1],
            },
            index=pd.Index(self.names, name="asset"),
        )


# ----------------------------------------------------------------------------------------
# Reading files


class _Where:
    """Formats the location of a value in a file: CSV line number or Parquet row."""

    def __init__(self, path: str, csv: bool, line_of_row: np.ndarray):
        self.path, self.csv, self.line_of_row = path, csv, line_of_row

    def __call__(self, row: int | None, column: str | None) -> str:
        parts = [self.path]
        if row is not None:
            parts.append(f"line {int(self.line_of_row[row])}" if self.csv else f"row {row}")
        elif self.csv:
            parts.append("line 1 (header)")
        if column is not None:
            parts.append(f"column {column!r}")
        return ", ".join(parts)


def _find_column(columns: Sequence[str], wanted: str) -> str | None:
    lower = {str(c).strip().lower(): c for c in columns}
    return lower.get(wanted.strip().lower())


def _parse_times(raw: pd.Series, where: _Where, col: str) -> np.ndarray:
    """Raw column -> datetime64[ns] (UTC, naive); errors name the first bad row."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        ts = pd.to_datetime(raw, utc=True)
        bad = ts.isna().to_numpy()
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where(i, col)}: missing timestamp")
        return ts.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
    text = raw.astype(str).str.strip()
    empty = (text == "") | raw.isna().to_numpy()
    numeric = text.str.match(_NUMBER).to_numpy()
    if np.all(numeric | empty.to_numpy()) and np.any(numeric):
        # Unix epoch; unit from the magnitude (s ~ 1e9, ms ~ 1e12, us ~ 1e15, ns ~ 1e18).
        vals = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(dtype=float)
        mag = np.nanmedian(np.abs(vals))
        unit = "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"
        ts = pd.to_datetime(vals, unit=unit, utc=True, errors="coerce")
        ts = pd.Series(ts)
    else:
        ts = pd.to_datetime(text.where(~empty), utc=True, errors="coerce", format="ISO8601")
    bad = ts.isna().to_numpy()
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(i, col)}: cannot parse timestamp {raw.iloc[i]!r} (expected "
                         "ISO 8601 such as 2024-01-31 or 2024-01-31 13:00:00, or Unix epoch "
                         "seconds/milliseconds)")
    return ts.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")


def _parse_prices(raw: pd.Series, where: _Where, col: str) -> np.ndarray:
    """Raw column -> float64 > 0; errors name the first bad row and show the raw value."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        vals = raw.to_numpy(dtype=float, na_value=np.nan)
    else:
        vals = pd.to_numeric(raw.astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(vals) & (vals > 0.0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(i, col)}: price must be a finite number > 0, got "
                         f"{raw.iloc[i]!r}")
    return vals


def _check_order(t: np.ndarray, where: _Where, col: str) -> None:
    d = np.diff(t)
    zero = np.flatnonzero(d == np.timedelta64(0, "ns"))
    neg = np.flatnonzero(d < np.timedelta64(0, "ns"))
    first = min(zero[0] if zero.size else t.size, neg[0] if neg.size else t.size)
    if first == t.size:
        return
    i = int(first) + 1
    prev = where(i - 1, None).split(", ", 1)[-1]
    if d[first] == np.timedelta64(0, "ns"):
        raise ValueError(f"{where(i, col)}: duplicate timestamp {t[i]} (same as {prev})")
    raise ValueError(f"{where(i, col)}: timestamp {t[i]} is earlier than {t[i - 1]} on {prev}; "
                     "rows must be sorted by time, ascending")


def read_prices(path: str | os.PathLike, *, column: str = "close",
                time_column: str | None = None) -> PriceHistory:
    """Read one asset's prices from a CSV or Parquet file.

    Parameters
    ----------
    path : str or path-like
        ``.csv`` (optionally ``.csv.gz``) or ``.parquet``/``.pq`` file with a header row.
    column : str, default "close"
        The price column (case-insensitive). Any of ``open``, ``high``, ``low``, ``close``
        also present are validated the same way and kept as :attr:`PriceHistory.extra`.
    time_column : str, optional
        The time column (case-insensitive). Default: the first of ``date``, ``datetime``,
        ``datetime_utc``, ``timestamp``, ``time`` present. Values are ISO 8601 dates or
        date-times (an offset or ``Z`` is converted to UTC; none means UTC) or Unix epoch
        numbers (seconds, ms, us or ns, told apart by magnitude). A Parquet datetime column
        or a datetime index is used as is.

    Returns
    -------
    PriceHistory
        With ``names == (stem,)``, the file name without its extension(s).

    Raises
    ------
    ValueError
        Naming the file, the line (CSV, header is line 1; Parquet: 0-based ``row``) and the
        column, for: a missing column, an unparsable timestamp, a duplicate or out-of-order
        timestamp, a price that is missing, not a number, non-finite or <= 0, or fewer
        than 2 rows.
    FileNotFoundError
        If the file does not exist.

    Notes
    -----
    Blank lines in a CSV are skipped (line numbers still count them). Nothing is filled or
    interpolated; missing days/hours are reported by :meth:`PriceHistory.gaps`.

    Examples
    --------
    >>> h = read_prices("btc_usd_daily.csv")  # doctest: +SKIP
    >>> r = h.log_returns()                    # doctest: +SKIP
    """
    p = Path(path)
    name = str(path)
    suffixes = [s.lower() for s in p.suffixes]
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no such file")
    if suffixes[-1:] in ([".parquet"], [".pq"]):
        csv = False
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises several types
            raise ValueError(f"{name}: cannot read as Parquet: {exc}") from None
        if not isinstance(df.index, pd.RangeIndex):
            df = df.reset_index()
        line_of_row = np.arange(len(df))
    elif ".csv" in suffixes[-2:]:
        csv = True
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False, skip_blank_lines=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"{name}: cannot read as CSV: {exc}") from None
        except pd.errors.EmptyDataError:
            raise ValueError(f"{name}: the file is empty (no header row)") from None
        line_of_row = np.arange(len(df)) + 2
        blank = (df.apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
        if np.any(blank):
            df = df.loc[~blank].reset_index(drop=True)
            line_of_row = line_of_row[~blank]
    else:
        raise ValueError(f"{name}: unsupported file type {p.suffix!r}; expected .csv or "
                         ".parquet")
    where = _Where(name, csv, line_of_row)
    cols = [str(c) for c in df.columns]
    df.columns = cols
    if time_column is None:
        tcol = next((c for c in (_find_column(cols, w) for w in TIME_COLUMNS) if c), None)
        if tcol is None:
            raise ValueError(f"{where(None, None)}: no time column; expected one of "
                             f"{', '.join(TIME_COLUMNS)} (or pass time_column=), found columns "
                             f"{cols}")
    else:
        tcol = _find_column(cols, time_column)
        if tcol is None:
            raise ValueError(f"{where(None, time_column)}: missing time column "
                             f"{time_column!r}; found columns {cols}")
    if not isinstance(column, str):
        raise TypeError(f"column must be a str, got {column!r}")
    pcol = _find_column(cols, column)
    if pcol is None:
        raise ValueError(f"{where(None, column)}: missing price column {column!r}; found "
                         f"columns {cols}")
    if len(df) < 2:
        raise ValueError(f"{name}: needs at least 2 data rows, got {len(df)}")
    times = _parse_times(df[tcol], where, tcol)
    _check_order(times, where, tcol)
    prices = _parse_prices(df[pcol], where, pcol)
    extra = {}
    for k in _OHLC:
        c = _find_column(cols, k)
        if c is not None and c != pcol:
            extra[k] = _parse_prices(df[c], where, c)
    stem = p.name
    for s in p.suffixes:
        stem = stem[: -len(s)] if stem.endswith(s) else stem
    return PriceHistory(times, prices, names=(stem or pcol,), source=name, extra=extra)


def read_many(paths: Sequence[str | os.PathLike | PriceHistory]
              | Mapping[str, str | os.PathLike | PriceHistory], *,
              column: str = "close", time_column: str | None = None) -> PriceHistory:
    """Read several assets and align them on their common timestamps (inner join).

    Parameters
    ----------
    paths : sequence or mapping
        Files (or :class:`PriceHistory` objects of one asset). A mapping gives the asset
        names (``{"BTC": "btc.csv", ...}``); a sequence names each asset by its file stem.
    column, time_column : str, optional
        Passed to :func:`read_prices` for every file.

    Returns
    -------
    PriceHistory
        ``prices`` of shape ``(n_common, n_assets)``; ``source`` is the tuple of files. Rows
        present in some assets but not all are dropped, which may create gaps (see
        :meth:`PriceHistory.gaps`).

    Raises
    ------
    ValueError
        If fewer than 1 asset is given, names repeat, the assets' steps differ (e.g. daily
        and hourly), or fewer than 2 common timestamps remain.
    """
    if isinstance(paths, Mapping):
        items = [(str(k), v) for k, v in paths.items()]
    elif isinstance(paths, (str, os.PathLike, PriceHistory)):
        raise TypeError("paths must be a sequence or a mapping of files; for one file use "
                        "read_prices")
    else:
        items = [(None, v) for v in paths]
    if not items:
        raise ValueError("paths must name at least one file")
    hists, names = [], []
    for key, v in items:
        h = v if isinstance(v, PriceHistory) else read_prices(v, column=column,
                                                              time_column=time_column)
        if h.n_assets != 1:
            raise ValueError(f"{key or h.source}: read_many aligns single-asset histories, got "
                             f"{h.n_assets} assets")
        hists.append(h)
        names.append(key if key is not None else h.names[0])
    if len(set(names)) != len(names):
        raise ValueError(f"asset names must be distinct, got {names}; pass a mapping "
                         "{name: path} to name them")
    steps = [h.step for h in hists]
    if max(steps) > 1.01 * min(steps):
        listing = ", ".join(f"{n}: {s:.6g}" for n, s in zip(names, steps, strict=True))
        raise ValueError(f"the assets have different steps (years): {listing}")
    common = hists[0].times
    for h in hists[1:]:
        common = np.intersect1d(common, h.times, assume_unique=True)
    if common.size < 2:
        raise ValueError(f"the assets {names} share {common.size} timestamp(s); need >= 2")
    cols = [h.prices[np.searchsorted(h.times, common)] for h in hists]
    sources = tuple(str(h.source) for h in hists)
    return PriceHistory(common, np.column_stack(cols), names=tuple(names), source=sources,
                        step=hists[0].step)


def shared_data_dir() -> Path | None:
    """The folder of the project's real market data, or None when it is absent.

    Looked up in order: the environment variable ``MARGINLAB_DATA``; a ``shared/data`` folder
    beside the repository checkout, searched upwards from the current directory and from this
    package's location (the data is read where it lies, never copied into the repository).
    """
    env = os.environ.get("MARGINLAB_DATA")
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            cand = folder / "shared" / "data"
            if cand.is_dir():
                return cand
    return None
