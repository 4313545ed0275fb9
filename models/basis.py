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

Units: basis and its changes are fractions of the price; horizons in CME trading days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._validate import check_real

__all__ = ["BTC_INTRA_SPREAD_CHARGE", "cme_perp_basis", "basis_changes",
           "spread_charge_rate"]

BTC_INTRA_SPREAD_CHARGE = 0.04
"""Documented default SPAN-like intra-commodity spread charge for BTC (fraction of the price
per unit of calendar spread): the 99 % quantile of 2-day CME-vs-perpetual basis moves,
0.0395, rounded (see the module notes)."""

CME_FILE = "btc_cme_front_month_daily_yahoo_2017_2026.csv"
PERP_FILE = "btc_usdt_perp_hourly_binance_2019_2023.csv"


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
