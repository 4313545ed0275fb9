"""The result of :func:`~marginlab.models.backtest_runner.run_backtest`: tables, plots, files."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ._summary import Summary, short_repr

__all__ = ["BacktestResult", "STRESS_EPISODES"]

#: Stress episodes for :meth:`BacktestResult.plot_stress_episodes` (UTC dates, inclusive):
#: the COVID crash (12-13 March 2020), the May 2021 crash (19 May), the 3AC / Celsius
#: deleveraging (13-18 June 2022) and the FTX collapse (8-9 November 2022).
STRESS_EPISODES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "March 2020": ("2020-02-25", "2020-04-10"),
    "May 2021": ("2021-04-25", "2021-06-10"),
    "June 2022": ("2022-05-28", "2022-07-12"),
    "November 2022": ("2022-10-25", "2022-12-10"),
})


_SUMMARY_COLUMNS = [
    "asset", "method", "position", "n_obs", "exceptions", "expected", "kupiec_p",
    "christoffersen_p_ind", "christoffersen_p_cc", "zone", "z2", "z2_p", "peak_to_trough",
    "avg_margin_over_notional", "n_flagged_fits",
]


# ========================================================================== result
_TABLE_COLUMNS = [
    "asset", "method", "position", "first_date", "last_date", "n_days", "n_obs",
    "exceptions", "expected", "exception_rate", "kupiec_lr", "kupiec_p", "christoffersen_lr_ind",
    "christoffersen_p_ind", "christoffersen_lr_cc", "christoffersen_p_cc", "zone", "z2",
    "z2_p", "z2_critical", "breaches", "peak_to_trough", "max_increase_1d", "max_increase_5d",
    "max_increase_30d", "avg_margin_over_notional", "exceptions_all_days", "n_refits",
    "n_flagged_fits", "n_fallback_fits",
]


@dataclass(frozen=True, eq=False, repr=False)
class BacktestResult:
    """Output of :func:`run_backtest`.

    Attributes
    ----------
    series : pandas.DataFrame
        One row per (asset, method, position, margin date): ``date``, ``price``,
        ``notional``, ``margin``, ``var``, ``es``, ``loss`` (realised over the next
        ``horizon_days``), ``exception`` (loss > VaR, every day, overlapping),
        ``test`` (the date is one of the non-overlapping observations used by the tests),
        ``apc_buffer``, ``apc_stressed``, ``apc_floor`` (margin with each anti-procyclicality
        tool, USD).
    stats : pandas.DataFrame
        :meth:`table`.
    apc : pandas.DataFrame
        :meth:`procyclicality_table`.
    runs : pandas.DataFrame
        Per asset and method: ``n_refits``, ``n_fit_warnings``, ``n_fit_failures``,
        ``fit_seconds``, ``seconds``.
    settings : mapping
        The run's settings.
    elapsed : float
        Wall-clock seconds of the run.
    """

    series: pd.DataFrame
    stats: pd.DataFrame
    apc: pd.DataFrame
    runs: pd.DataFrame
    settings: Mapping[str, Any]
    elapsed: float

    def table(self) -> pd.DataFrame:
        """One row per asset, method and position.

        Columns: ``asset``, ``method``, ``position``, ``first_date``/``last_date`` (margin
        dates), ``n_days`` (daily returns after the first margin date), ``n_obs``
        (independent observations, ``floor(n_days / horizon)``), ``exceptions`` (loss > VaR
        on those), ``expected`` (``n_obs (1 - level)``), ``exception_rate``, ``kupiec_lr``,
        ``kupiec_p``, ``christoffersen_lr_ind``/``_p_ind``, ``christoffersen_lr_cc``/``_p_cc``,
        ``zone`` (traffic light on ``n_obs``), ``z2``, ``z2_p``, ``z2_critical`` (95 %
        critical value of the simulated null; NaN for exchange and grid),
        ``breaches`` (loss > margin: equals ``exceptions`` for ``measure="var"``),
        ``peak_to_trough``, ``max_increase_1d``/``_5d``/``_30d`` (relative, on the margin
        rate), ``avg_margin_over_notional`` and ``exceptions_all_days`` (every margin date,
        overlapping windows: for information only, not a test input), ``n_refits``,
        ``n_flagged_fits`` (refits whose fit raised a degenerate-fit flag, see
        :func:`~marginlab.models.calibration.fit_garch`) and ``n_fallback_fits`` (refits
        where a fallback was applied); the flags by kind are in ``runs``.
        """
        return self.stats.copy()

    def procyclicality_table(self) -> pd.DataFrame:
        """Procyclicality and cost of each margin series without (``tool="none"``) and with
        each anti-procyclicality tool (``buffer``, ``stressed_weight``, ``floor``): one row
        per asset, method, position and tool, with the non-overlapping ``exceptions``
        against that margin."""
        return self.apc.copy()

    def to_frame(self) -> pd.DataFrame:
        """The daily series (see ``series``)."""
        return self.series.copy()

    # ------------------------------------------------------------------ reading
    def summary(self, alpha: float = 0.05) -> Summary:
        """The backtest as a reader judges it: settings, then per asset, method and position
        the exceptions against expectation, the coverage and independence p-values, the
        Basel zone, the ES test and procyclicality; notes list the rejections at ``alpha``,
        red zones and degenerate fits.

        Returns
        -------
        Summary
            ``as_frame()`` is the per-(asset, method, position) table (a subset of
            :meth:`table`'s columns).
        """
        st = self.stats
        cols = [c for c in _SUMMARY_COLUMNS if c in st.columns]
        table = st[cols].set_index(["asset", "method", "position"]) if len(st) else st[cols]
        keys = ("level", "horizon_days", "lookback_days", "n_scenarios", "measure", "seed")
        info: list[tuple[str, Any]] = [(k.replace("_", " "), self.settings[k]) for k in keys
                                       if k in self.settings]
        if len(st):
            info += [("Assets", st["asset"].nunique()), ("Methods", st["method"].nunique()),
                     ("Positions", st["position"].nunique()),
                     ("Margin dates", f"{st['first_date'].min()} .. {st['last_date'].max()}")]
        info.append(("Run time (s)", float(self.elapsed)))
        notes = []
        for _, r in st.iterrows():
            label = f"{r['asset']} / {r['method']} / {r['position']}"
            tests = [(n, r.get(c)) for n, c in (("Kupiec", "kupiec_p"),
                                                ("conditional coverage", "christoffersen_p_cc"),
                                                ("Z2", "z2_p"))]
            bad = [n for n, p in tests if p is not None and np.isfinite(p) and p < alpha]
            if bad:
                side = "too many" if r["exceptions"] > r["expected"] else "too few"
                notes.append(f"{label}: {', '.join(bad)} rejected at {alpha:g} "
                             f"({int(r['exceptions'])} exceptions, {r['expected']:.1f} "
                             f"expected: {side})")
            if r.get("zone") == "red":
                notes.append(f"{label}: Basel red zone")
            if r.get("n_flagged_fits", 0):
                notes.append(f"{label}: {int(r['n_flagged_fits'])} of {int(r['n_refits'])} "
                             "refits flagged (see runs)")
        return Summary("Margin backtest", info, {"Backtests": table}, notes)

    def __repr__(self) -> str:
        st = self.stats
        return short_repr(self, rows=len(st),
                          assets=int(st["asset"].nunique()) if len(st) else 0,
                          methods=int(st["method"].nunique()) if len(st) else 0,
                          level=self.settings.get("level", float("nan")),
                          horizon_days=self.settings.get("horizon_days", float("nan")))

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    # ------------------------------------------------------------------ plots
    def _pick(self, asset: str | None, position: str | None) -> tuple[str, str]:
        assets = list(dict.fromkeys(self.series["asset"]))
        positions = list(dict.fromkeys(self.series["position"]))
        asset = assets[0] if asset is None else asset
        position = positions[0] if position is None else position
        if asset not in assets:
            raise ValueError(f"asset must be one of {assets}, got {asset!r}")
        if position not in positions:
            raise ValueError(f"position must be one of {positions}, got {position!r}")
        return asset, position

    def plot_margin(self, asset: str | None = None, position: str | None = None,
                    methods: Sequence[str] | None = None) -> Any:
        """Margin against realised loss over time, exceptions marked; one panel per method.

        Both are shown as a fraction of notional. Red crosses: exceptions on the
        non-overlapping test dates (the ones the tests count); grey dots: exceptions on the
        other dates. The panel label counts the refits whose fit was flagged degenerate.
        Returns the matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        asset, position = self._pick(asset, position)
        df = self.series[(self.series["asset"] == asset) & (self.series["position"] == position)]
        ms = list(dict.fromkeys(df["method"])) if methods is None else list(methods)
        fig, axes = plt.subplots(len(ms), 1, figsize=(10, 1.9 * len(ms) + 0.8), sharex=True,
                                 squeeze=False)
        for ax, m in zip(axes[:, 0], ms, strict=True):
            d = df[df["method"] == m]
            if d.empty:
                raise ValueError(f"method {m!r} is not in the result")
            x = pd.DatetimeIndex(d["date"])
            loss = (d["loss"] / d["notional"]).to_numpy()
            ax.fill_between(x, 0, np.maximum(loss, 0), color="0.75", lw=0, step="mid",
                            label="realised loss")
            ax.plot(x, d["margin"] / d["notional"], lw=1.0, label="margin")
            exc = d["exception"].to_numpy()
            tst = d["test"].to_numpy()
            ax.plot(x[exc & tst], loss[exc & tst], "x", color="red", ms=6,
                    label=f"exception ({int((exc & tst).sum())} counted)")
            ax.plot(x[exc & ~tst], loss[exc & ~tst], ".", color="0.35", ms=4,
                    label="exception, overlapping date")
            label = f"{m}\n/ notional"
            runs = self.runs
            if "n_flagged_fits" in runs.columns:
                rr = runs[(runs["asset"] == asset) & (runs["method"] == m)]
                if len(rr) and int(rr["n_refits"].iloc[0]) > 0:
                    label += (f"\n{int(rr['n_flagged_fits'].iloc[0])}/"
                              f"{int(rr['n_refits'].iloc[0])} fits flagged")
            ax.set_ylabel(label, fontsize=8)
            ax.legend(fontsize=7, loc="upper left", ncol=4)
        s = self.settings
        fig.suptitle(f"{asset} {position}: {s['level']:.1%} {s['horizon_days']}-day margin "
                     f"({s['measure'].upper()}) vs realised loss")
        fig.tight_layout()
        return fig

    def plot_stress_episodes(self, asset: str | None = None, position: str | None = None,
                             methods: Sequence[str] | None = None,
                             episodes: Mapping[str, tuple[str, str]] = STRESS_EPISODES) -> Any:
        """Margin / notional of every method across the stress episodes (one panel each),
        with the realised loss as grey bars. An episode outside the backtest is labelled so.
        Returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        asset, position = self._pick(asset, position)
        df = self.series[(self.series["asset"] == asset) & (self.series["position"] == position)]
        ms = list(dict.fromkeys(df["method"])) if methods is None else list(methods)
        n = len(episodes)
        ncol = 2 if n > 1 else 1
        nrow = math.ceil(n / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(6 * ncol, 3.3 * nrow), squeeze=False)
        first, last = pd.Timestamp(df["date"].min()), pd.Timestamp(df["date"].max())
        for k, (label, (a, b)) in enumerate(episodes.items()):
            ax = axes[k // ncol, k % ncol]
            lo, hi = pd.Timestamp(a), pd.Timestamp(b)
            win = df[(df["date"] >= lo) & (df["date"] <= hi)]
            ax.set_title(label, fontsize=10)
            if win.empty:
                ax.text(0.5, 0.5, f"outside the backtest\n(margin dates {first:%Y-%m-%d} to "
                        f"{last:%Y-%m-%d})", ha="center", va="center", transform=ax.transAxes,
                        fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            base = win[win["method"] == ms[0]]
            ax.bar(pd.DatetimeIndex(base["date"]),
                   np.maximum(base["loss"] / base["notional"], 0), color="0.8", width=1.0,
                   label="realised loss")
            for m in ms:
                d = win[win["method"] == m]
                ax.plot(pd.DatetimeIndex(d["date"]), d["margin"] / d["notional"], lw=1.2,
                        label=m)
            ax.tick_params(axis="x", labelsize=7, rotation=30)
            ax.set_ylabel("/ notional", fontsize=8)
        for k in range(n, nrow * ncol):
            axes[k // ncol, k % ncol].axis("off")
        handles, labels = [], []
        for ax in axes.ravel():
            hh, ll = ax.get_legend_handles_labels()
            for hnd, lab in zip(hh, ll, strict=True):
                if lab not in labels:
                    handles.append(hnd)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8)
        fig.suptitle(f"{asset} {position}: margin through stress episodes")
        fig.tight_layout(rect=(0, 0.06, 1, 0.97))
        return fig

    # ------------------------------------------------------------------ files
    def write(self, folder: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
        """Write ``backtest_table.csv``, ``backtest_procyclicality.csv``,
        ``backtest_runs.csv``, ``backtest_series.csv.gz`` and (``plots``) PNG files
        ``margin_<asset>_<position>.png`` and ``stress_<asset>_<position>.png``; each file
        is written to a temporary name and renamed (atomic). Returns the paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, frame in (("backtest_table.csv", self.stats),
                            ("backtest_procyclicality.csv", self.apc),
                            ("backtest_runs.csv", self.runs),
                            ("backtest_series.csv.gz", self.series)):
            path = out / name
            tmp = out / f".{name}.tmp"
            try:
                frame.to_csv(tmp, index=False, compression="gzip" if name.endswith(".gz")
                             else None)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            paths.append(path)
        if plots:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            for asset in dict.fromkeys(self.series["asset"]):
                for pos in dict.fromkeys(self.series["position"]):
                    safe = f"{_safe(asset)}_{_safe(pos)}"
                    for kind, fn in (("margin", self.plot_margin),
                                     ("stress", self.plot_stress_episodes)):
                        fig = fn(asset, pos)
                        path = out / f"{kind}_{safe}.png"
                        tmp = out / f".{kind}_{safe}.png.tmp"
                        try:
                            fig.savefig(tmp, dpi=100, format="png")
                            os.replace(tmp, path)
                        finally:
                            plt.close(fig)
                            tmp.unlink(missing_ok=True)
                        paths.append(path)
        return paths


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(s))

