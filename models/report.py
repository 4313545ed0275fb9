"""The short Markdown report of a batch run, with PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .compare import comparison_plots

__all__ = ["write_report"]

_MAX_POINTS = 20_000  # accounts per method drawn in the plots


def write_report(folder: Path, accounts_path: Path, summary: pd.DataFrame, cfg: Any) -> Path:
    """Write ``report.md`` and its plots into ``folder``; returns the report's path.

    Plots use at most 20,000 accounts per method (a fixed-seed sample), so a report of a
    million-account run stays small.
    """
    df = pd.read_parquet(accounts_path, columns=["account_id", "method", "im", "mm",
                                                 "gross_notional", "excess"])
    rng = np.random.default_rng(0)
    parts = []
    for _, g in df.groupby("method", sort=False):
        parts.append(g.iloc[np.sort(rng.choice(len(g), min(len(g), _MAX_POINTS),
                                               replace=False))] if len(g) > _MAX_POINTS else g)
    sample = pd.concat(parts, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        sample["im_over_notional"] = np.where(sample["gross_notional"] > 0,
                                              sample["im"] / sample["gross_notional"], np.nan)
    plots = comparison_plots(sample, folder)
    sc = cfg.scenarios
    lines = [
        "# marginlab run report",
        "",
        f"* accounts: {df['account_id'].nunique():,}; methods: "
        f"{', '.join(summary['method'])}",
        f"* scenarios: {sc.n_scenarios:,} from a {sc.model} model on "
        f"{', '.join(sc.underlyings)}, horizon (MPOR) {sc.horizon_days:g} days, seed {sc.seed}",
        f"* config digest: `{cfg.digest()[:16]}`",
        "",
        "## Summary by method",
        "",
        summary.to_markdown(index=False, floatfmt=",.4g") if _has_tabulate() else
        summary.to_string(index=False),
        "",
        "## Plots",
        "",
    ]
    for p in plots:
        lines += [f"![{p.stem}]({p.name})", ""]
    path = folder / "report.md"
    tmp = folder / ".report.md.tmp"
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
