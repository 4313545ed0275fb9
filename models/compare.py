"""Side-by-side comparison of margin methodologies on one book and one market.

:func:`compare` runs several methods (anything with ``name`` and
``compute(book, market, scenarios=None)``) and returns one tidy table: per account and method
IM, MM, margin balance, IM / gross notional, and the offset benefit against isolated margin
under the same method (every position margined alone, the sum of those margins). Optional
summary plots are written as PNG files.

Scenarios: by default every method builds its own (its market model, its history). Handing
scenarios in is explicit: ``scenarios={name: ScenarioSet}`` per method, or one
``ScenarioSet`` with ``shared=[names]``; one set without ``shared`` still goes to every Monte
Carlo method but warns (:class:`~marginlab.models._warn.SharedScenariosWarning`), because it
replaces their own models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._warn import SharedScenariosWarning, warn
from .book import Book
from .scenarios import MarketState, ScenarioSet

__all__ = ["compare", "isolated_book", "comparison_plots", "plot_margin_over_notional",
           "plot_margin_vs_notional", "plot_method_vs_method"]

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
            scenarios: ScenarioSet | Mapping[str, ScenarioSet] | None = None,
            shared: Sequence[str] | None = None, isolated: bool = True,
            plots_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Run several margin methods on the same book and return one tidy table.

    Parameters
    ----------
    book : Book
    market : MarketState
    methods : sequence of margin methods
        Each with a unique ``name``.
    scenarios : ScenarioSet or mapping of str to ScenarioSet, optional
        Scenarios handed to methods instead of the ones they would build themselves.
        A mapping gives each named method its own set (keys: method names; methods not named
        build their own): the explicit form, e.g. GBM methods on one set for common random
        numbers and a GARCH method on another. A single ``ScenarioSet`` goes to the methods
        named in ``shared``.
    shared : sequence of str, optional
        With a single ``ScenarioSet``: the names of the methods that take it. **Those
        methods are valued on these scenarios, not on their own market model** (a GARCH or
        historical method given GBM scenarios is margined under GBM). Default (``None``):
        every method with ``uses_shared_scenarios`` (the Monte Carlo methods and wrappers of
        them); a :class:`~marginlab.models._warn.SharedScenariosWarning` then names them,
        since their own models are replaced. Pass the names (or ``()``) to silence it.
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
    given = _scenarios_by_method(methods, names, scenarios, shared)
    iso = isolated_book(book) if isolated and book.n_positions else None
    frames = []

    def _scen(m):
        return given.get(m.name)

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


def _scenarios_by_method(methods: Sequence[Any], names: list[str], scenarios: Any,
                         shared: Sequence[str] | None) -> dict[str, ScenarioSet]:
    """Which method gets which scenario set (see :func:`compare`)."""
    if scenarios is None:
        if shared is not None and len(shared):
            raise ValueError(f"shared={list(shared)} needs scenarios (a ScenarioSet)")
        return {}
    if isinstance(scenarios, Mapping):
        if shared is not None:
            raise ValueError("shared applies to a single ScenarioSet; with a mapping of "
                             "scenarios per method, leave shared=None")
        unknown = [k for k in scenarios if k not in names]
        if unknown:
            raise ValueError(f"scenarios names unknown method(s) {unknown}; methods: {names}")
        for k, v in scenarios.items():
            if not isinstance(v, ScenarioSet):
                raise TypeError(f"scenarios[{k!r}] must be a ScenarioSet, got "
                                f"{type(v).__name__}")
        return dict(scenarios)
    if not isinstance(scenarios, ScenarioSet):
        raise TypeError(f"scenarios must be a ScenarioSet, a mapping of method name to "
                        f"ScenarioSet, or None, got {type(scenarios).__name__}")
    if shared is None:
        takers = [n for m, n in zip(methods, names, strict=True)
                  if getattr(m, "uses_shared_scenarios", False)]
        if takers:
            warn(f"compare(scenarios=...): the shared scenarios replace the own market model "
                 f"of {takers}; pass shared={takers!r} to confirm (or a mapping of scenarios "
                 "per method)", SharedScenariosWarning)
        return dict.fromkeys(takers, scenarios)
    if isinstance(shared, str):
        raise TypeError(f"shared must be a sequence of method names, got the str {shared!r}")
    unknown = [k for k in shared if k not in names]
    if unknown:
        raise ValueError(f"shared names unknown method(s) {unknown}; methods: {names}")
    return dict.fromkeys(shared, scenarios)


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    os.replace(tmp, path)


def _grid(n: int, axes: Any, width: float = 3.6, height: float = 3.2) -> tuple[Any, list[Any]]:
    """``n`` axes in a grid of at most 4 columns (new Figure, Agg), or the caller's ``axes``."""
    if axes is not None:
        flat = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(flat) < n:
            raise ValueError(f"axes: {len(flat)} axes given, {n} needed (one per panel)")
        return flat[0].figure, flat[:n]
    from matplotlib.figure import Figure

    ncols = min(4, max(n, 1))
    nrows = -(-max(n, 1) // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    grid = np.ravel(np.asarray(fig.subplots(nrows, ncols, squeeze=False), dtype=object))
    for ax in grid[n:]:
        ax.set_visible(False)
    return fig, list(grid[:n])


def _positive(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Points with both coordinates finite and > 0 (log axes), and how many were left out."""
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return x[ok], y[ok], int((~ok).sum())


def plot_margin_over_notional(table: pd.DataFrame, *, ax: Any = None) -> Any:
    """Box plot of IM / gross notional per method (log scale, whiskers 5-95 %).

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``method`` and ``im_over_notional`` (dimensionless, USD / USD).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new :class:`matplotlib.figure.Figure` is made when absent.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(6.0, 1.1 * table["method"].nunique() + 2), 4),
                     layout="constrained")
        ax = fig.subplots()
    methods = list(dict.fromkeys(table["method"]))
    data, left_out = [], 0
    for m in methods:
        v = table.loc[table["method"] == m, "im_over_notional"].to_numpy(dtype=float)
        ok = np.isfinite(v) & (v > 0)
        left_out += int((~ok).sum())
        data.append(v[ok] if ok.any() else np.array([np.nan]))
    ax.boxplot(data, showfliers=False, whis=(5, 95))
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=25, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("IM / gross notional (USD per USD)")
    title = "Margin per unit of notional, by method"
    if left_out:
        title += f"\n({left_out:,} account-method rows with zero IM or notional left out)"
    ax.set_title(title, fontsize=9)
    return ax.figure


def plot_margin_vs_notional(table: pd.DataFrame, *, axes: Any = None,
                            gridsize: int = 35) -> Any:
    """Density (hexbin, log colour) of IM against gross notional, one panel per method.

    Log-log axes; accounts with zero or negative IM or notional cannot be drawn on them and
    are counted in each panel's title instead.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``method``, ``im`` (USD) and ``gross_notional`` (USD).
    axes : sequence of matplotlib.axes.Axes, optional
        One axes per method; a new Figure with a grid of at most 4 columns when absent.
    gridsize : int
        Hexagons across the x axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    methods = list(dict.fromkeys(table["method"]))
    fig, flat = _grid(len(methods), axes)
    for ax, m in zip(flat, methods, strict=True):
        sub = table[table["method"] == m]
        x, y, n_out = _positive(sub["gross_notional"].to_numpy(float),
                                sub["im"].to_numpy(float))
        if len(x):
            hb = ax.hexbin(x, y, xscale="log", yscale="log", gridsize=gridsize, bins="log",
                           mincnt=1, cmap="viridis")
            fig.colorbar(hb, ax=ax, label="accounts")
        ax.set_xlabel("gross notional (USD)")
        ax.set_ylabel("initial margin (USD)")
        ax.set_title(f"{m}" + (f" ({n_out:,} at zero left out)" if n_out else ""), fontsize=9)
    fig.suptitle("Initial margin against gross notional (density of accounts)")
    return fig


def plot_method_vs_method(table: pd.DataFrame, reference: str | None = None, *,
                          axes: Any = None, gridsize: int = 30) -> Any:
    """Each method's IM against a reference method's, per account: log-log density panels.

    Small multiples (at most 4 columns), so 8 methods stay readable; the grey diagonal is
    equal margin, the dashed lines a factor 2 either way. Accounts with zero IM under either
    method are left out and counted in the panel's title.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``account_id``, ``method`` and ``im`` (USD).
    reference : str, optional
        Method on the x axis of every panel; the first method when absent.
    axes : sequence of matplotlib.axes.Axes, optional
        One axes per other method; a new Figure when absent.
    gridsize : int
        Hexagons across the x axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    methods = list(dict.fromkeys(table["method"]))
    base = methods[0] if reference is None else reference
    if base not in methods:
        raise ValueError(f"reference: {base!r} is not one of the methods {methods}")
    others = [m for m in methods if m != base]
    if not others:
        raise ValueError("table: method_vs_method needs at least two methods")
    wide = table.pivot_table(index="account_id", columns="method", values="im", aggfunc="first")
    fig, flat = _grid(len(others), axes)
    for ax, m in zip(flat, others, strict=True):
        x, y, n_out = _positive(wide[base].to_numpy(float), wide[m].to_numpy(float))
        if len(x):
            ax.hexbin(x, y, xscale="log", yscale="log", gridsize=gridsize, bins="log",
                      mincnt=1, cmap="viridis")
            lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            for f in (0.5, 2.0):
                ax.plot([lo, hi], [lo * f, hi * f], color="grey", lw=0.6, ls="--")
            ratio = np.median(y / x)
            m_title = f"{m}: median ratio {ratio:,.2f}"
        else:
            m_title = m
        ax.set_xlabel(f"{base} IM (USD)")
        ax.set_ylabel(f"{m} IM (USD)")
        ax.set_title(m_title + (f"\n({n_out:,} account(s) at zero left out)" if n_out else ""),
                     fontsize=9)
    fig.suptitle(f"Each method against {base} (diagonal: equal margin; dashed: x2, x0.5)")
    return fig


def comparison_plots(table: pd.DataFrame, folder: str | os.PathLike[str]) -> list[Path]:
    """Write the comparison plots of a :func:`compare` table as PNG; returns their paths.

    ``margin_over_notional.png`` (:func:`plot_margin_over_notional`),
    ``margin_vs_notional.png`` (:func:`plot_margin_vs_notional`) and, with two methods or
    more, ``method_vs_method.png`` (:func:`plot_method_vs_method`).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "margin_over_notional.png"]
    _save(plot_margin_over_notional(table), paths[-1])
    paths.append(out / "margin_vs_notional.png")
    _save(plot_margin_vs_notional(table), paths[-1])
    if table["method"].nunique() > 1:
        paths.append(out / "method_vs_method.png")
        _save(plot_method_vs_method(table), paths[-1])
    return paths
