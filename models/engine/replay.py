"""Replay: drive a :class:`~marginlab.models.engine.MarginEngine` through a price history.

Each row of the history is one market tick: every account is re-marked (linear) and, where
the engine's :class:`~marginlab.models.engine.RemarginPolicy` says so, fully re-margined; an
account whose margin ratio reaches 1 is liquidated at that tick's prices (its positions closed
at the mark, no slippage), and a negative balance left after closing is bad debt. The result
is the time series of book IM, MM, margin balance, accounts in margin call / liquidation,
events and bad debt, with Parquet outputs and plots: how a researcher compares dynamic margin
policies on real intraday history, not only on simulated paths.

``marginlab replay PRICES.csv --underlying BTC --accounts 2000 --every-hours 8 --output DIR``
(see :func:`add_replay_parser`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..history import PriceHistory
from .engine import MarginEngine, RemarginPolicy

__all__ = ["ReplayResult", "replay", "synthetic_history", "add_replay_parser", "replay_command"]


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """What a replay produced.

    Attributes
    ----------
    series : pandas.DataFrame
        One row per tick (index: time): the prices, ``full`` (a full re-margin happened),
        ``n_exact`` (accounts re-margined exactly), book totals ``im``, ``mm``,
        ``margin_balance`` (USD), ``n_margin_call`` / ``n_liquidation`` (accounts in those
        states after the tick), ``margin_calls`` / ``liquidations`` (events at the tick),
        ``bad_debt`` (USD, at the tick) and ``cum_bad_debt``.
    events : pandas.DataFrame
        Every margin event: tick, time, account, kind, balance, IM, MM.
    accounts : pandas.DataFrame
        The engine's per-account frame after the last tick, with ``bad_debt`` and
        ``liquidated_at`` (time, NaT if never).
    policy : RemarginPolicy
    """

    series: pd.DataFrame
    events: pd.DataFrame
    accounts: pd.DataFrame
    policy: RemarginPolicy

    def summary(self) -> str:
        """A few lines for a reader: span, ticks, full re-margins, calls, liquidations, bad
        debt, peak IM."""
        s = self.series
        return "\n".join([
            f"Replay of {len(s):,} ticks from {s.index[0]} to {s.index[-1]} ({self.policy})",
            f"full re-margins: {int(s['full'].sum()):,}; margin calls: "
            f"{int(s['margin_calls'].sum()):,}; liquidations: {int(s['liquidations'].sum()):,}",
            f"bad debt: {s['bad_debt'].sum():,.2f} USD; peak book IM: {s['im'].max():,.2f} USD; "
            f"final margin balance: {s['margin_balance'].iloc[-1]:,.2f} USD",
        ])  # fmt: skip

    def __repr__(self) -> str:
        return (f"ReplayResult({len(self.series)} ticks, {len(self.events)} events, "
                f"bad debt {self.series['bad_debt'].sum():,.2f} USD)")

    def to_parquet(self, folder: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``series.parquet``, ``events.parquet`` and ``accounts.parquet``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, frame in (("series", self.series), ("events", self.events),
                            ("accounts", self.accounts)):
            p = out / f"{name}.parquet"
            frame.to_parquet(p)
            paths[name] = p
        return paths

    def plot(self, ax: Any = None):
        """Prices, book IM / MM / margin balance, and calls, liquidations and cumulative bad
        debt over time. With ``ax`` (three axes) draws into them; returns the figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
        else:
            fig = ax[0].figure
        s = self.series
        prices = [c for c in s.columns if c.startswith("price_")]
        for c in prices:
            ax[0].plot(s.index, s[c], lw=0.8, label=c[6:])
        ax[0].set_ylabel("price (USD)")
        ax[0].legend(loc="upper left")
        for c in ("im", "mm", "margin_balance"):
            ax[1].plot(s.index, s[c], lw=0.8, label=c)
        ax[1].set_ylabel("book total (USD)")
        ax[1].legend(loc="upper left")
        ax[2].plot(s.index, s["n_margin_call"], lw=0.8, label="accounts in margin call")
        ax[2].plot(s.index, s["liquidations"].cumsum(), lw=0.8, label="liquidations (cum.)")
        ax[2].set_ylabel("accounts")
        twin = ax[2].twinx()
        twin.plot(s.index, s["cum_bad_debt"], lw=0.8, color="k", label="bad debt (cum., USD)")
        twin.set_ylabel("bad debt (USD)")
        ax[2].legend(loc="upper left")
        twin.legend(loc="upper right")
        fig.tight_layout()
        return fig


def _as_frame(prices: pd.DataFrame | PriceHistory, names: Any) -> pd.DataFrame:
    if isinstance(prices, PriceHistory):
        arr = np.asarray(prices.prices, float)
        arr = arr[:, None] if arr.ndim == 1 else arr
        cols = list(names) if names is not None else list(prices.names)
        if len(cols) != arr.shape[1]:
            raise ValueError(f"names must name the {arr.shape[1]} asset(s), got {cols}")
        return pd.DataFrame(arr, index=pd.DatetimeIndex(prices.times), columns=cols)
    if not isinstance(prices, pd.DataFrame):
        raise TypeError("prices must be a DataFrame (index: time, one column per underlying) "
                        f"or a PriceHistory, got {type(prices).__name__}")
    frame = prices if names is None else prices.set_axis(list(names), axis=1)
    if len(frame) < 1:
        raise ValueError("prices has no rows")
    vals = frame.to_numpy(float)
    if not np.all(np.isfinite(vals)) or np.any(vals <= 0):
        raise ValueError("prices must be finite and > 0 (drop or fill gaps first)")
    if not frame.index.is_monotonic_increasing:
        raise ValueError("prices must be sorted by time")
    return frame


def replay(engine: MarginEngine, prices: pd.DataFrame | PriceHistory, *,
           names: Any = None, liquidate: bool = True,
           progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Drive ``engine`` through ``prices``, one market tick per row.

    Parameters
    ----------
    engine : MarginEngine
        Built at the history's first prices (its policy decides full re-margins); it is
        updated in place.
    prices : pandas.DataFrame or PriceHistory
        Index: time; one column per underlying (USD).
    names : sequence of str, optional
        Underlying names for the columns (e.g. ``["BTC"]`` for a file named after a symbol).
    liquidate : bool
        Close out an account's positions at the mark when it reaches liquidation; a negative
        balance left is bad debt (counted once per account).
    progress : callable, optional
        ``progress(done, total)`` after each tick.
    """
    frame = _as_frame(prices, names)
    cols = [str(c).upper() for c in frame.columns]
    vals = frame.to_numpy(float)
    n = len(frame)
    rows = []
    ev_rows = []
    bad_debt: dict[str, float] = {}
    liq_at: dict[str, Any] = {}
    for k in range(n):
        t = frame.index[k]
        upd = engine.update_market(dict(zip(cols, vals[k], strict=True)), time=t)
        events = list(upd.events)
        bad = 0.0
        if liquidate:
            for e in upd.events:
                if e.kind == "liquidation" and e.account_id not in liq_at:
                    liq_at[e.account_id] = t
                    mb, more = engine.close_out(e.account_id)
                    events += more
                    if mb < 0:
                        bad_debt[e.account_id] = -mb
                        bad += -mb
        tot = engine.totals()
        rec = {"time": t, **{f"price_{c}": v for c, v in zip(cols, vals[k], strict=True)},
               "full": upd.full, "n_exact": upd.n_exact, **tot,
               "margin_calls": sum(e.kind == "margin_call" for e in events),
               "liquidations": sum(e.kind == "liquidation" for e in events),
               "bad_debt": bad}
        rows.append(rec)
        ev_rows += [e.to_dict() for e in events]
        if progress is not None:
            progress(k + 1, n)
    series = pd.DataFrame(rows).set_index("time")
    series["cum_bad_debt"] = series["bad_debt"].cumsum()
    events = pd.DataFrame(ev_rows, columns=["tick", "time", "account_id", "kind",
                                            "margin_balance", "im", "mm"])
    acc = engine.to_frame()
    acc["bad_debt"] = acc["account_id"].map(bad_debt).fillna(0.0)
    acc["liquidated_at"] = pd.to_datetime(acc["account_id"].map(liq_at))
    return ReplayResult(series, events, acc, engine.policy)


def synthetic_history(n_hours: int, *, seed: int = 0, s0: float = 100_000.0,
                      vol: float = 0.6, start: str = "2024-01-01",
                      name: str = "BTC") -> pd.DataFrame:
    """An hourly GBM price path (annualised ``vol``, zero drift) as a one-column DataFrame:
    a stand-in history when no real data is at hand."""
    if not isinstance(n_hours, int) or n_hours < 1:
        raise ValueError(f"n_hours must be an int >= 1, got {n_hours!r}")
    rng = np.random.default_rng(seed)
    dt = 1.0 / 8760.0
    z = rng.standard_normal(n_hours - 1)
    logp = np.concatenate([[0.0], np.cumsum(vol * np.sqrt(dt) * z - 0.5 * vol**2 * dt)])
    idx = pd.date_range(start, periods=n_hours, freq="h")
    return pd.DataFrame({name: s0 * np.exp(logp)}, index=idx)


# ============================================================================ CLI
def add_replay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to an ``argparse`` subparsers object (handler:
    :func:`replay_command`, set with ``set_defaults(func=...)``)."""
    p = subparsers.add_parser(
        "replay", help="drive the live margin engine through a price history",
        description="Replay a price history (e.g. hourly BTC perpetual closes) through the live "
        "margin engine for a book: re-mark every tick, full re-margin by policy, margin calls, "
        "liquidations and bad debt. Writes series.parquet, events.parquet, accounts.parquet, "
        "replay.png and summary.txt to --output.")
    p.add_argument("prices", help="price file (CSV or Parquet with a time and a close column)")
    p.add_argument("--underlying", default="BTC", help="name of the file's asset (default BTC)")
    p.add_argument("--book", help="folder with instruments/positions/collateral .csv or "
                   ".parquet files (default: a synthetic book, see --accounts)")
    p.add_argument("--accounts", type=int, default=1000,
                   help="accounts of the synthetic book (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the book and scenarios")
    p.add_argument("--scenarios", type=int, default=5000, help="Monte Carlo scenarios")
    p.add_argument("--level", type=float, default=0.99, help="ES level (default 0.99)")
    p.add_argument("--vol", type=float, default=0.6,
                   help="annualised vol of the GBM scenarios and implied vol (default 0.6)")
    p.add_argument("--horizon-days", type=float, default=2.0, help="MPOR in days (default 2)")
    p.add_argument("--every-hours", type=float, default=None,
                   help="full re-margin every H hours of history (default: only linear "
                   "re-marks unless --price-move)")
    p.add_argument("--price-move", type=float, default=None,
                   help="full re-margin when the price moved more than this fraction")
    p.add_argument("--ratio-band", type=float, default=None,
                   help="re-margin accounts exactly once MM / balance reaches this band")
    p.add_argument("--start", help="first time to replay (e.g. 2022-11-01)")
    p.add_argument("--end", help="last time to replay")
    p.add_argument("--max-steps", type=int, default=None, help="replay at most N rows")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--no-plots", action="store_true", help="skip replay.png")
    p.set_defaults(func=replay_command)
    return p


def _check_positive(name: str, v: Any, integer: bool = False) -> None:
    if v is None:
        return
    if (integer and (not isinstance(v, int) or v < 1)) or (not integer and not v > 0):
        raise ValueError(f"--{name} must be {'an integer >= 1' if integer else '> 0'}, got "
                         f"{v!r}")


def replay_command(args: argparse.Namespace) -> int:
    """Run ``marginlab replay`` from parsed arguments; returns the exit code."""
    from ..book import Book
    from ..history import read_prices
    from ..margin import MonteCarloMargin
    from ..market import GBM
    from ..scenarios import MarketState
    from ..synthetic import make_book

    for name, v, integer in (("accounts", args.accounts, True), ("scenarios", args.scenarios,
                             True), ("vol", args.vol, False), ("every-hours", args.every_hours,
                             False), ("max-steps", args.max_steps, True)):
        _check_positive(name, v, integer)
    hist = read_prices(args.prices)
    und = args.underlying.upper()
    frame = _as_frame(hist, [und])
    if args.start:
        frame = frame[frame.index >= pd.Timestamp(args.start)]
    if args.end:
        frame = frame[frame.index <= pd.Timestamp(args.end)]
    if args.max_steps:
        frame = frame.iloc[: args.max_steps + 1]
    if len(frame) < 2:
        raise ValueError("fewer than 2 price rows to replay after --start/--end/--max-steps")
    s0 = float(frame.iloc[0, 0])
    market = MarketState(spot={und: s0}, vol={und: args.vol})
    if args.book:
        folder = Path(args.book)
        files = {}
        for stem in ("instruments", "positions", "collateral"):
            found = [folder / f"{stem}.{ext}" for ext in ("csv", "parquet")
                     if (folder / f"{stem}.{ext}").exists()]
            if not found and stem != "collateral":
                raise ValueError(f"--book: {folder} has no {stem}.csv or {stem}.parquet")
            files[stem] = found[0] if found else None
        book = Book.from_files(files["instruments"], files["positions"], files["collateral"])
    else:
        book = make_book(args.accounts, seed=args.seed, underlyings=(und,), spot={und: s0},
                         vol={und: args.vol})
    method = MonteCarloMargin(GBM(0.0, args.vol), [und], level=args.level,
                              horizon_days=args.horizon_days, n_scenarios=args.scenarios,
                              seed=args.seed)
    policy = RemarginPolicy(
        every_seconds=None if args.every_hours is None else args.every_hours * 3600.0,
        price_move=args.price_move, ratio_band=args.ratio_band)
    engine = MarginEngine(book, market, method, policy=policy)
    res = replay(engine, frame.iloc[1:])
    out = Path(args.output)
    res.to_parquet(out)
    if not args.no_plots:
        import matplotlib

        matplotlib.use("Agg")
        fig = res.plot()
        fig.savefig(out / "replay.png", dpi=110)
    text = res.summary()
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0
