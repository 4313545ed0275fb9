r"""Crypto stress library: the joint moves of the crash episodes, found in the data.

The rule (documented, deterministic)
------------------------------------
Each episode is a calendar **search window** around a known crash (:data:`EPISODES`). In
it, with daily closes of several assets on common dates and a margin period of risk of
``h`` days, the **driver** asset's (BTC by default) overlapping h-day log returns
:math:`x_t = \log S_{t+h} - \log S_t` are computed for every start date ``t`` whose whole
window lies inside the search window, and two dates are kept:

* ``<episode> down``: the start date of the driver's most negative h-day move;
* ``<episode> up``: the start date of its most positive h-day move (a squeeze, the shorts'
  stress).

The scenario is the **joint** h-day log move of every asset over the same dates (the
historical cross-section, correlations and all), applied to today's prices:
:math:`S^{stress}_i = S_i \exp(x_{i,t})`. Nothing is scaled or filled: these are moves that
happened, the practice of CCP stress libraries (e.g. Eurex PRISMA's stress periods, CME
SPAN 2's historical stressed scenarios).

Uses: :func:`stress_scenarios` gives a :class:`~marginlab.models.ScenarioSet` (labelled by
episode) that every margin method accepts through ``compute(book, market,
scenarios=...)``; :class:`StressMargin` is a margin method whose IM is the worst loss over the
library (the stressed-period margin of the EMIR Art. 28(1)(b) tool:
``AntiProcyclical(base, tool="stressed_weight", stressed=StressMargin(...))``); and
:func:`stress_margin_rate` gives, for the rolling backtest's reference positions, the
library's margin rate to blend into a margin series with
:func:`~marginlab.models.procyclicality.apc_stressed_weight`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ._validate import check_real
from .margin.base import MarginResult
from .portfolio import account_equity, account_pnl, gross_notional, revalue
from .scenarios import MarketState, ScenarioSet

__all__ = ["EPISODES", "find_stress_moves", "stress_scenarios", "StressMargin",
           "stress_margin_rate", "load_daily_closes"]

#: Search windows (UTC dates, inclusive) of the crypto crash episodes.
EPISODES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "March 2020": ("2020-03-05", "2020-03-25"),       # COVID crash, 12-13 March
    "May 2021": ("2021-05-10", "2021-05-30"),         # China mining ban, 19 May
    "June 2022": ("2022-06-08", "2022-06-25"),        # Celsius / 3AC, 13-18 June
    "November 2022": ("2022-11-04", "2022-11-22"),    # FTX, 8-9 November
    "March 2023": ("2023-03-06", "2023-03-20"),       # SVB / USDC de-peg, 9-11 March
    "August 2024": ("2024-07-29", "2024-08-12"),      # yen carry unwind, 5 August
    "October 2025": ("2025-10-06", "2025-10-20"),     # liquidation cascade, 10 October
})


def load_daily_closes(assets: Sequence[str] = ("BTC", "ETH", "SOL", "BNB", "XRP"),
                      folder: Any = None) -> pd.DataFrame:
    """Daily closes ``{asset}_usd_daily.csv`` of the shared data folder (the project's
    :func:`~marginlab.models.history.shared_data_dir` when ``folder`` is None), on common
    dates of the first asset (an asset listed later, such as SOL from April 2020, is NaN
    before its first close), one column per asset."""
    from pathlib import Path

    from .history import read_prices, shared_data_dir

    d = shared_data_dir() if folder is None else Path(folder)
    if d is None:
        raise FileNotFoundError("no shared data folder (set MARGINLAB_DATA or pass folder=)")
    cols = {}
    for a in assets:
        h = read_prices(Path(d) / f"{a.lower()}_usd_daily.csv")
        cols[a.upper()] = pd.Series(np.asarray(h.prices).reshape(-1),
                                    index=pd.DatetimeIndex(h.times))
    first = next(iter(cols))
    return pd.concat(cols, axis=1).reindex(cols[first].index).sort_index()


def find_stress_moves(closes: pd.DataFrame, horizon_days: int = 2, *,
                      episodes: Mapping[str, tuple[str, str]] = EPISODES,
                      driver: str = "BTC") -> pd.DataFrame:
    """The library's joint h-day log moves by the rule of the module docstring.

    Parameters
    ----------
    closes : pandas.DataFrame
        Daily closes (> 0) indexed by date, one column per asset, including ``driver``.
    horizon_days : int, default 2
        MPOR ``h`` in days (>= 1).
    episodes : mapping of name to (start, end)
        Search windows; an episode with no complete h-day window in the data is skipped.
    driver : str, default "BTC"
        The asset whose worst (best) move picks the dates.

    Returns
    -------
    pandas.DataFrame
        Indexed by scenario label (``"<episode> down"``, ``"<episode> up"``), columns
        ``episode``, ``direction``, ``start``, ``end`` and one decimal log move per asset.
    """
    if not isinstance(closes, pd.DataFrame) or closes.shape[1] == 0:
        raise TypeError("closes must be a DataFrame of daily closes, one column per asset")
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, np.integer)) \
            or horizon_days < 1:
        raise ValueError(f"horizon_days must be an int >= 1, got {horizon_days!r}")
    cols = [str(c).upper() for c in closes.columns]
    if driver.upper() not in cols:
        raise ValueError(f"driver {driver!r} is not a column of closes ({cols})")
    p = closes.astype(float)
    p.columns = cols
    arr = p.to_numpy()
    if not np.all(np.isfinite(p[driver.upper()].to_numpy())) or np.any(arr[np.isfinite(arr)]
                                                                         <= 0):
        raise ValueError("closes must be > 0, and finite for the driver (NaN marks an asset "
                         "not yet listed)")
    lp = np.log(p)
    h = int(horizon_days)
    moves = (lp.shift(-h) - lp).iloc[:-h]            # move from date t to t + h
    ends = p.index[h:]
    rows = []
    for name, (a, b) in episodes.items():
        lo, hi = pd.Timestamp(a), pd.Timestamp(b)
        ok = (moves.index >= lo) & (ends <= hi)
        if not ok.any():
            continue
        m = moves[ok]
        x = m[driver.upper()]
        for direction, t in (("down", x.idxmin()), ("up", x.idxmax())):
            k = p.index.get_loc(t)
            rows.append({"label": f"{name} {direction}", "episode": name,
                         "direction": direction, "start": t, "end": p.index[k + h],
                         **{c: float(m.loc[t, c]) for c in cols}})  # NaN: not listed
    if not rows:
        raise ValueError("no episode has a complete h-day window in the data")
    return pd.DataFrame(rows).set_index("label")


def stress_scenarios(moves: pd.DataFrame, market: MarketState,
                     underlyings: Sequence[str] | None = None) -> ScenarioSet:
    """The library as a labelled :class:`~marginlab.models.ScenarioSet`: today's prices
    moved by each scenario's historical joint log move (implied vols unchanged). Scenarios
    in which one of ``underlyings`` was not yet listed (NaN move) are left out."""
    und = [str(u).upper() for u in (underlyings or [c for c in moves.columns
                                                    if c not in ("episode", "direction",
                                                                 "start", "end")])]
    missing = [u for u in und if u not in moves.columns]
    if missing:
        raise ValueError(f"moves has no column for {missing}")
    moves = moves[np.all(np.isfinite(moves[und].to_numpy(dtype=np.float64)), axis=1)]
    if moves.empty:
        raise ValueError(f"no scenario has a move for every one of {und}")
    x = moves[und].to_numpy(dtype=np.float64)
    s0 = market.prices(und)
    ends = pd.to_datetime(moves["end"]) - pd.to_datetime(moves["start"])
    days = float(ends.dt.days.max())
    return ScenarioSet(tuple(und), s0 * np.exp(x), np.ones_like(x), days / 365.0,
                       labels=tuple(str(i) for i in moves.index))


@dataclass(frozen=True, eq=False)
class StressMargin:
    """IM = the worst loss of the account over the stress library (floored at 0).

    Parameters
    ----------
    moves : pandas.DataFrame
        :func:`find_stress_moves` output.
    underlyings : sequence of str, optional
        The assets to move (default: every asset column of ``moves``).
    mm_fraction : float, default 0.5
        MM = mm_fraction x IM.
    name : str, default "stress library"

    Notes
    -----
    ``driver`` is the label of each account's worst scenario; ``details["worst_loss"]``
    the loss (USD). Allocation to holdings is not computed (NaN), as for the grids' own
    worst-case rules. With ``compute(..., scenarios=...)`` another set replaces the library.
    """

    moves: pd.DataFrame
    underlyings: Sequence[str] | None = None
    mm_fraction: float = 0.5
    name: str = "stress library"

    def __post_init__(self) -> None:
        check_real("mm_fraction", self.mm_fraction, low=0.0, high=1.0, low_open=True)

    def scenarios(self, market: MarketState) -> ScenarioSet:
        """The library's scenario set for ``market``."""
        return stress_scenarios(self.moves, market, self.underlyings)

    def compute(self, book: Any, market: MarketState, *,
                scenarios: ScenarioSet | None = None) -> MarginResult:
        """Margin of every account."""
        sc = self.scenarios(market) if scenarios is None else scenarios
        pnl = account_pnl(book, revalue(book, market, sc))       # (n_scen, n_accounts)
        loss = -pnl
        worst = loss.argmax(axis=0)
        im = np.maximum(loss.max(axis=0), 0.0)
        labels = np.array(sc.labels if sc.labels else
                          [f"scenario {i}" for i in range(loss.shape[0])], dtype=object)
        eq = account_equity(book, market)["margin_balance"].to_numpy()
        alloc = pd.DataFrame({"account_id": book.account_ids[book.position_account],
                              "holding": book.instruments["instrument_id"].to_numpy(
                                  dtype=object)[book.position_instrument],
                              "im_contribution": np.nan})
        return MarginResult(self.name, book.account_ids, im, self.mm_fraction * im, eq,
                            labels[worst], alloc, {"worst_loss": loss.max(axis=0)},
                            gross_notional(book, market))


def stress_margin_rate(moves: pd.DataFrame, asset: str, linear: float = 1.0) -> float:
    """Margin rate (loss / notional) of a linear position of ``linear`` units of ``asset``
    over the library: :math:`\\max(0, \\max_s -q (e^{x_s} - 1)) / |q|`, e.g. to blend into
    a backtest's margin-rate series with
    :func:`~marginlab.models.procyclicality.apc_stressed_weight`."""
    q = check_real("linear", linear)
    if q == 0.0:
        raise ValueError("linear must be non-zero")
    a = str(asset).upper()
    if a not in moves.columns:
        raise ValueError(f"moves has no column {asset!r}")
    x = moves[a].to_numpy(dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(max(0.0, np.max(-q * np.expm1(x)))) / abs(q)
