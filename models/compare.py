"""Side-by-side comparison of margin methodologies on one book and one market.

:func:`compare` runs several methods (anything with ``name`` and
``compute(book, market, scenarios=None)``) and returns one tidy table: per account and method
IM, MM, margin balance, IM / gross notional, and the offset benefit against isolated margin
under the same method (every position margined alone, the sum of those margins). Optional
summary plots are written as PNG files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .book import Book
from .scenarios import MarketState, ScenarioSet

__all__ = ["compare", "isolated_book", "comparison_plots"]

_SEP = "\x1f"


def isolated_book(book: Book) -> Book:
    """The book with every position in an account of its own (no collateral).

    Account ids are ``f"{account_id}\\x1f{row}"``; :func:`compare` maps them back.
    """
    pos = book.positions.copy()
    pos["account_id"] = pos["account_id"] + _SEP + np.arange(len(pos)).astype(str)
    col = book.collateral.iloc[:0].copy()
    return Book(book.instruments, pos.reset_index(drop=True), col)


def compare(book: Book, market: MarketState, methods: Sequence[Any], *,
            scenarios: ScenarioSet | None = None, isolated: bool = True,
            plots_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Run several margin methods on the same book and return one tidy table.

    Parameters
    ----------
    book : Book
    market : MarketState
    methods : sequence of margin methods
        Each with a unique ``name``.
    scenarios : ScenarioSet, optional
        Shared scenarios for the Monte Carlo methods (those with ``uses_shared_scenarios``),
        giving common random numbers; historical and rule-based methods keep their own.
    isolated : bool
        Also compute each method's isolated margin (sum over position rows margined alone,
        without collateral) and the offset benefit ``1 - IM / IM_isolated``. This is not an
        exchange's isolated mode (which merges same-side rows of an instrument), and dropping
        risky coin collateral can make the offset negative.
    plots_dir : path, optional
        Write summary plots (PNG) there: margin / notional per method, margin vs notional, and
        each method against the first.

    Returns
    -------
    pandas.DataFrame
        Columns ``account_id``, ``method``, ``im``, ``mm``, ``margin_balance``, ``excess``,
        ``gross_notional``, ``im_over_notional``, ``driver`` and, with ``isolated``,
        ``im_isolated`` and ``offset_benefit``.
    """
    if not methods:
        raise ValueError("methods must name at least one margin method")
    names = [getattr(m, "name", None) for m in methods]
    for m, n in zip(methods, names, strict=True):
        if not isinstance(n, str) or not callable(getattr(m, "compute", None)):
            raise TypeError(f"methods must have a name and a compute() method, got {m!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    iso = isolated_book(book) if isolated and book.n_positions else None
    frames = []
    def _scen(m):
        # Shared scenarios go only to methods built on market-model scenarios (Monte Carlo);
        # historical and rule-based methods keep their own.
        return scenarios if getattr(m, "uses_shared_scenarios", False) else None

    for m in methods:
        res = m.compute(book, market, scenarios=_scen(m))
        f = res.to_frame()[["account_id", "method", "im", "mm", "margin_balance", "excess",
                            "driver"]].copy()
        gn = res.gross_notional if res.gross_notional is not None else np.full(len(f), np.nan)
        f["gross_notional"] = gn
        with np.errstate(divide="ignore", invalid="ignore"):
            f["im_over_notional"] = np.where(gn > 0, f["im"] / gn, np.nan)
        if iso is not None:
            r_iso = m.compute(iso, market, scenarios=_scen(m))
            owner = pd.Series(r_iso.account_ids).str.split(_SEP).str[0].to_numpy()
            per = pd.Series(r_iso.im).groupby(owner).sum()
            f["im_isolated"] = per.reindex(f["account_id"]).fillna(0.0).to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                f["offset_benefit"] = np.where(f["im_isolated"] > 0,
                                               1.0 - f["im"] / f["im_isolated"], np.nan)
        frames.append(f)
    table = pd.concat(frames, ignore_index=True)
    if plots_dir is not None:
        comparison_plots(table, plots_dir)
    return table


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    os.replace(tmp, path)


def comparison_plots(table: pd.DataFrame, folder: str | os.PathLike[str]) -> list[Path]:
    """Write the comparison plots of a :func:`compare` table as PNG; returns their paths."""
    from matplotlib.figure import Figure

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(table["method"]))
    paths = []
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    data = [table.loc[table["method"] == m, "im_over_notional"].dropna().to_numpy()
            for m in methods]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=20)
    ax.set_ylabel("IM / gross notional")
    ax.set_title("Margin per unit of notional, by method")
    paths.append(out / "margin_over_notional.png")
    _save(fig, paths[-1])
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for m in methods:
        sub = table[(table["method"] == m) & (table["gross_notional"] > 0) & (table["im"] > 0)]
        ax.scatter(sub["gross_notional"], sub["im"], s=6, alpha=0.5, label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gross notional (USD)")
    ax.set_ylabel("initial margin (USD)")
    ax.legend(fontsize=8)
    ax.set_title("Margin vs notional")
    paths.append(out / "margin_vs_notional.png")
    _save(fig, paths[-1])
    if len(methods) > 1:
        wide = table.pivot(index="account_id", columns="method", values="im")
        base = methods[0]
        fig = Figure(figsize=(4.5 * (len(methods) - 1), 4.2))
        axes = fig.subplots(1, len(methods) - 1, squeeze=False)
        for ax, m in zip(axes[0], methods[1:], strict=True):
            ax.scatter(wide[base], wide[m], s=6, alpha=0.5)
            hi = np.nanmax(wide[[base, m]].to_numpy()) if len(wide) else 1.0
            ax.plot([0, hi], [0, hi], color="grey", lw=0.8)
            ax.set_xlabel(f"{base} IM")
            ax.set_ylabel(f"{m} IM")
        fig.suptitle("Method against method (diagonal: equal margin)")
        paths.append(out / "method_vs_method.png")
        _save(fig, paths[-1])
    return paths
