"""Futures basis from real data: CME front-month BTC futures against the perpetual.

The basis of a dated future is ``F / P - 1`` with ``P`` the perpetual's price at the same
moment. CME futures close at about 20:00 UTC, so the CME daily close is compared with the
Binance BTCUSDT perpetual's hourly close at 20:00 UTC (the candle opening at 19:00), not with
the midnight daily close (which pollutes the basis with eight hours of price moves, see the
data README). Basis changes are taken only within one contract (the same ``expiry`` at both
dates, neither date the expiry day, whose print is the final settlement): differencing across
a roll would measure the roll, not a basis move.

:func:`spread_charge_rate` turns the history into a SPAN intra-commodity spread charge: the
``level`` quantile of ``|basis(t + h) - basis(t)|`` over ``h`` CME trading days, a fraction of
the price per unit of spread (:class:`marginlab.models.margin.grid.SpanLike`'s
``intra_spread_charge``). Measured on the shared data (2019-09 to 2023-12, 1,087 matched days,
2-day horizon): the 99 % quantile is 0.0395 (95 %: 0.0168); :data:`BTC_INTRA_SPREAD_CHARGE`
is that figure rounded to 0.04, the documented default for BTC. Part of the tail is timing
noise (settlement window, daylight-saving shifts), which errs on the conservative side.

Basis as a scenario risk factor
-------------------------------
A dated future's mark is ``S (1 + b)``; scenarios move ``b`` by ``db x l(tau)``, one factor
``db`` per underlying (the basis change of a future with :data:`BASIS_TENOR_REF_DAYS` to expiry)
and the parametric tenor loading ``l(tau) = sqrt(tau / tau_ref)`` (:func:`basis_loadings`);
perpetuals (whose carry is their funding), spot and options have loading 0. The square root
is what the data suggest: front-month basis moves grow with time to expiry but much less than
proportionally (median absolute 1-day move 0.0016 at 0-14 days, 0.0027 at 14-32 days). Monte
Carlo draws ``db`` as a normal of annualised volatility ``basis_vol``, correlated with the
price's standardised return (:func:`marginlab.models.scenarios.monte_carlo_scenarios`);
:func:`basis_vol` measures it: on the shared data (2-day CME-vs-perpetual changes within one
contract starting at least 7 days before expiry, 838 of them, scaled to the 30-day reference
tenor by ``sqrt(30 / days to expiry)``, standard deviation annualised by ``sqrt(365 / 2)``) it
is 0.174, :data:`BTC_BASIS_VOL` = 0.17. The figure depends on the horizon (1 day: 0.249, 5
days: 0.111): part of the CME-vs-perpetual move is timing noise that does not accumulate, so
calibrate at the margin period of risk. The tails are fat: the 99 % quantile of absolute
2-day moves is 0.058 against 0.030 for the normal of the same standard deviation, so the
normal Monte Carlo factor understates extreme basis moves that historical simulation
replays. A quarterly future (91 days, loading 1.74) long against a perpetual short, 10 BTC at
60,000 USD: 2-day 99 % ES of the normal factor ``2.665 x 0.17 sqrt(2/365) x 1.74 x 600,000``,
about 35,000 USD. Historical simulation
replays :func:`daily_basis_moves` over the same days as the price returns
(:func:`marginlab.models.margin.historical_scenarios`), and the perpetual's funding-rate moves
(:func:`funding_rates`, Binance or Bybit every 8 hours) as its carry: the perpetual pays its
book ``funding_rate`` plus the observed change of the rate, summed over the horizon's
settlements. On the shared data (2020-2023, 2-day horizon, daily BTC closes, 10 BTC at
60,000 USD each leg), the quarterly-vs-perpetual calendar spread's 99 % ES is about 54,000
USD under HS with basis moves (last 365 days of 2023; 56,600 over 2020-2023), against 35,000
for the normal Monte Carlo factor at :data:`BTC_BASIS_VOL` and 24,000 SPAN-like maintenance
(:data:`BTC_INTRA_SPREAD_CHARGE`). Binance funding moves alone give it 497 USD (2023) and
2,796 USD (2020-2023; the largest 2-day move is 0.0073 of the notional, in March 2020); with
both, 54,280 and 57,160 USD.

Units: basis and its changes are fractions of the price; horizons in CME trading days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._validate import check_real

__all__ = ["BTC_INTRA_SPREAD_CHARGE", "BTC_BASIS_VOL", "BASIS_TENOR_REF_DAYS", "cme_perp_basis",
           "basis_changes", "spread_charge_rate", "basis_loadings", "basis_vol",
           "daily_basis_moves", "funding_rates"]

BTC_INTRA_SPREAD_CHARGE = 0.04
"""Documented default SPAN-like intra-commodity spread charge for BTC (fraction of the price
per unit of calendar spread): the 99 % quantile of 2-day CME-vs-perpetual basis moves,
0.0395, rounded (see the module notes)."""

CME_FILE = "btc_cme_front_month_daily_yahoo_2017_2026.csv"
PERP_FILE = "btc_usdt_perp_hourly_binance_2019_2023.csv"
FUNDING_FILES = {"binance": "btcusdt_funding_binance_8h.csv",
                 "bybit": "btcusdt_funding_bybit_8h.csv"}


def _folder(folder: str | Path | None) -> Path:
    from .history import shared_data_dir

    p = Path(folder) if folder is not None else shared_data_dir()
    if p is None or not p.is_dir():
        raise FileNotFoundError("no shared data folder (set MARGINLAB_DATA or pass folder=)")
    return p


def cme_perp_basis(folder: str | Path | None = None) -> pd.DataFrame:
    """Daily CME front-month basis against the perpetual at the CME close (20:00 UTC).

    Returns
    -------
    pandas.DataFrame
        ``date``, ``cme`` (USD), ``perp`` (USD, Binance close at 20:00 UTC), ``basis``
        (``cme / perp - 1``), ``expiry``, ``days_to_expiry``; one row per CME trading day
        with a perpetual price.
    """
    p = _folder(folder)
    cme = pd.read_csv(p / CME_FILE, parse_dates=["date", "expiry"])
    perp = pd.read_csv(p / PERP_FILE, parse_dates=["datetime_utc"])
    at20 = perp[perp["datetime_utc"].dt.hour == 19]  # candle opening 19:00, closing 20:00
    at20 = pd.DataFrame({"date": at20["datetime_utc"].dt.normalize(),
                         "perp": at20["close"].to_numpy(float)})
    m = cme.rename(columns={"close": "cme"}).merge(at20, on="date", how="inner")
    m["basis"] = m["cme"] / m["perp"] - 1.0
    m["days_to_expiry"] = (m["expiry"] - m["date"]).dt.days
    return m[["date", "cme", "perp", "basis", "expiry", "days_to_expiry"]].reset_index(
        drop=True)


def basis_changes(frame: pd.DataFrame, horizon_days: int = 2) -> np.ndarray:
    """Basis changes over ``horizon_days`` rows (CME trading days) within one contract.

    A change from row ``t`` to ``t + h`` is kept when both rows refer to the same expiry and
    neither is the expiry day itself.
    """
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, np.integer)) \
            or not 1 <= horizon_days <= 60:
        raise ValueError(f"horizon_days must be an int in [1, 60], got {horizon_days!r}")
    h = int(horizon_days)
    b = frame["basis"].to_numpy(float)
    exp = frame["expiry"].to_numpy()
    day = frame["date"].to_numpy()
    if len(b) <= h:
        return np.zeros(0)
    same = exp[h:] == exp[:-h]
    live = (day[:-h] != exp[:-h]) & (day[h:] != exp[h:])
    return (b[h:] - b[:-h])[same & live]


def spread_charge_rate(level: float = 0.99, horizon_days: int = 2,
                       folder: str | Path | None = None) -> float:
    """The ``level`` quantile of absolute basis changes over ``horizon_days`` (fraction of
    the price per unit of spread), for ``SpanLike(intra_spread_charge=...)``."""
    level = check_real("level", level, low=0.5, high=1.0, high_open=True)
    d = np.abs(basis_changes(cme_perp_basis(folder), horizon_days))
    if d.size == 0:
        raise ValueError("no basis changes in the data")
    return float(np.quantile(d, level))


BASIS_TENOR_REF_DAYS = 30.0
"""Reference tenor (days to expiry) of the basis factor: a future with 30 days left has
loading 1."""

BTC_BASIS_VOL = 0.17
"""Documented default annualised volatility of the BTC basis factor (fraction of the price
per sqrt(year), 30-day tenor) for a 2-day MPOR: :func:`basis_vol` on the shared data, 0.174,
rounded (module notes)."""


def basis_loadings(types, expiry, tau_ref_days: float = BASIS_TENOR_REF_DAYS) -> np.ndarray:
    """Exposure ``l = sqrt(tau / tau_ref)`` of each instrument to its underlying's basis
    factor: dated futures (``linear_future``, ``inverse_future``) only, 0 for the rest.

    Parameters
    ----------
    types : array of str
        Instrument types (:data:`marginlab.models.book.INSTRUMENT_TYPES`).
    expiry : array of float
        Years to expiry (NaN or anything for non-futures).
    tau_ref_days : float
        Reference tenor in days (> 0).
    """
    ref = check_real("tau_ref_days", tau_ref_days, low=0.0, low_open=True) / 365.0
    t = np.asarray(types, dtype=str)
    fut = np.isin(t, ("linear_future", "inverse_future"))
    tau = np.where(fut, np.nan_to_num(np.asarray(expiry, float), nan=0.0), 0.0)
    return np.where(fut, np.sqrt(np.maximum(tau, 0.0) / ref), 0.0)


def _scaled_changes(frame: pd.DataFrame, h: int, tau_ref_days: float, min_days: float):
    """Within-contract h-row basis changes scaled to the reference tenor, and their end
    dates (changes starting fewer than ``min_days`` before expiry left out)."""
    b = frame["basis"].to_numpy(float)
    exp = frame["expiry"].to_numpy()
    day = frame["date"].to_numpy()
    tte = frame["days_to_expiry"].to_numpy(float)
    if len(b) <= h:
        return np.zeros(0), day[:0]
    keep = (exp[h:] == exp[:-h]) & (day[:-h] != exp[:-h]) & (day[h:] != exp[h:]) \
        & (tte[:-h] > 0) & (tte[:-h] >= min_days)
    scale = np.sqrt(tau_ref_days / np.where(tte[:-h] > 0, tte[:-h], 1.0))
    return ((b[h:] - b[:-h]) * scale)[keep], day[h:][keep]


def basis_vol(frame: pd.DataFrame | None = None, horizon_days: int = 2,
              tau_ref_days: float = BASIS_TENOR_REF_DAYS, min_days_to_expiry: float = 7.0,
              folder: str | Path | None = None) -> float:
    """Annualised volatility of the basis factor measured from a basis history.

    The standard deviation of ``horizon_days`` basis changes within one contract (as
    :func:`basis_changes`), each scaled to the reference tenor by
    ``sqrt(tau_ref / days to expiry at its start)``, times ``sqrt(365 / horizon_days)``.
    Changes starting fewer than ``min_days_to_expiry`` days before expiry are left out (the
    scaling would blow their timing noise up).

    Parameters
    ----------
    frame : pandas.DataFrame, optional
        :func:`cme_perp_basis` output; default: built from the shared data (``folder``).
    horizon_days : int
        Horizon of the changes in CME trading days; use the margin period of risk (the
        figure falls with the horizon, see the module notes).
    """
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, np.integer)) \
            or not 1 <= horizon_days <= 60:
        raise ValueError(f"horizon_days must be an int in [1, 60], got {horizon_days!r}")
    ref = check_real("tau_ref_days", tau_ref_days, low=0.0, low_open=True)
    md = check_real("min_days_to_expiry", min_days_to_expiry, low=0.0)
    f = cme_perp_basis(folder) if frame is None else frame
    d, _ = _scaled_changes(f, int(horizon_days), ref, md)
    if d.size < 2:
        raise ValueError("fewer than 2 basis changes in the data")
    return float(np.std(d, ddof=1) * np.sqrt(365.0 / horizon_days))


def daily_basis_moves(frame: pd.DataFrame, tau_ref_days: float = BASIS_TENOR_REF_DAYS,
                      min_days_to_expiry: float = 7.0) -> pd.Series:
    """Day-to-day moves of the basis factor, indexed by the later date (for historical
    simulation: ``HistoricalMargin(basis=...)``).

    Consecutive rows of one contract (neither the expiry day), scaled to the reference tenor
    like :func:`basis_vol`; a roll (the first day of a new contract) has no observed move and
    is left out, i.e. counts as 0 when the moves are summed over a horizon, and so are moves
    starting fewer than ``min_days_to_expiry`` days before expiry (as in :func:`basis_vol`).
    """
    ref = check_real("tau_ref_days", tau_ref_days, low=0.0, low_open=True)
    md = check_real("min_days_to_expiry", min_days_to_expiry, low=0.0)
    d, day = _scaled_changes(frame, 1, ref, md)
    return pd.Series(d, index=pd.DatetimeIndex(day), name="basis_move")


def funding_rates(venue: str = "binance", folder: str | Path | None = None) -> pd.Series:
    """BTCUSDT perpetual funding rates every 8 hours from the shared data (decimal per
    interval, positive: longs pay), indexed by settlement time (UTC); for
    ``HistoricalMargin(funding=pd.DataFrame({"BTC": funding_rates()}))``.

    Parameters
    ----------
    venue : {"binance", "bybit"}
    """
    if venue not in FUNDING_FILES:
        raise ValueError(f"venue must be one of {sorted(FUNDING_FILES)}, got {venue!r}")
    f = pd.read_csv(_folder(folder) / FUNDING_FILES[venue], parse_dates=["datetime"])
    return pd.Series(f["funding_rate"].to_numpy(float), index=pd.DatetimeIndex(f["datetime"]),
                     name=f"funding_{venue}")
