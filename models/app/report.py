"""The report of a batch run: ``report.md`` and a self-contained ``report.html``.

Both say the units (USD) of every amount, print numbers with thousands separators, list the
largest accounts with what drives their margin (the margin ``driver`` and, when the run wrote
``allocations.parquet``, their largest holdings by contribution to IM), give the Monte Carlo
error of the risk-based methods (the ``var_lo``/``var_hi`` and ``es_lo``/``es_hi`` confidence
bounds and ``es_se``), and show the comparison plots. The PNG plots are written beside the
Markdown report and embedded as base64 ``data:`` URIs in the HTML one, which needs no other
file. Plots are drawn on :class:`matplotlib.figure.Figure` objects (the Agg canvas); the
global pyplot state is never touched.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..compare import (
    plot_margin_over_notional,
    plot_margin_vs_notional,
    plot_method_vs_method,
)

__all__ = ["write_report", "plot_mc_error", "format_usd"]

_MAX_POINTS = 20_000  # accounts drawn in the plots (a fixed-seed sample of account ids)

_SUMMARY_COLUMNS = {  # column -> (header, kind)
    "method": ("method", "text"),
    "accounts": ("accounts", "int"),
    "total_im": ("total IM (USD)", "usd"),
    "total_mm": ("total MM (USD)", "usd"),
    "im_over_gross_notional": ("IM / gross notional", "pct"),
    "accounts_in_deficit": ("accounts in deficit", "int"),
    "total_deficit": ("total deficit (USD)", "usd"),
}


def format_usd(x: float) -> str:
    """A USD amount with thousands separators: whole dollars from 100 up, else cents.

    ``nan`` prints as an en dash. Never scientific notation.
    """
    if x is None or not np.isfinite(x):
        return "\u2013"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def _fmt(x: Any, kind: str) -> str:
    if kind == "text":
        return str(x)
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "\u2013"
    if kind == "int":
        return f"{int(x):,}"
    if kind == "pct":
        return f"{100 * float(x):,.2f} %"
    return format_usd(float(x))


def plot_mc_error(accounts: pd.DataFrame, method: str, *, top: int = 15, ax: Any = None) -> Any:
    """ES and VaR of the ``top`` largest accounts of a risk-based method, with 95 % MC bounds.

    Parameters
    ----------
    accounts : pandas.DataFrame
        ``accounts.parquet`` of a batch run: ``account_id``, ``method``, ``im``, ``es``,
        ``es_lo``, ``es_hi`` and optionally ``var``, ``var_lo``, ``var_hi`` (USD).
    method : str
        The method whose accounts are drawn.
    top : int
        Number of accounts, largest IM first.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new Figure when absent.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sub = accounts[accounts["method"] == method].dropna(subset=["es"])
    if sub.empty:
        raise ValueError(f"method: {method!r} has no accounts with an ES (not risk-based?)")
    sub = sub.nlargest(top, "im")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 0.32 * len(sub) + 1.4), layout="constrained")
        ax = fig.subplots()
    pos = np.arange(len(sub))[::-1]
    es = sub["es"].to_numpy(float)
    ax.errorbar(es, pos + 0.12, xerr=[es - sub["es_lo"].to_numpy(float),
                                      sub["es_hi"].to_numpy(float) - es],
                fmt="o", ms=4, capsize=3, label="ES, 95 % MC interval")
    if {"var", "var_lo", "var_hi"} <= set(sub.columns) and sub["var"].notna().all():
        v = sub["var"].to_numpy(float)
        ax.errorbar(v, pos - 0.12, xerr=[v - sub["var_lo"].to_numpy(float),
                                         sub["var_hi"].to_numpy(float) - v],
                    fmt="s", ms=4, capsize=3, label="VaR, 95 % MC interval")
    ax.set_yticks(pos, sub["account_id"].astype(str))
    ax.set_xlabel("loss over the horizon (USD)")
    ax.xaxis.set_major_formatter(_usd_formatter())
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{method}: Monte Carlo error of the {len(sub)} largest accounts", fontsize=9)
    return ax.figure


def _usd_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _: f"{x:,.0f}")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, bbox_inches="tight", format="png")
    return buf.getvalue()


def _sample(df: pd.DataFrame) -> pd.DataFrame:
    ids = df["account_id"].unique()
    if len(ids) <= _MAX_POINTS:
        return df
    keep = np.random.default_rng(0).choice(ids, _MAX_POINTS, replace=False)
    return df[df["account_id"].isin(keep)]


def _largest(df: pd.DataFrame, alloc: pd.DataFrame | None, method: str, top: int
             ) -> tuple[list[str], list[list[str]]]:
    sub = df[df["method"] == method].nlargest(top, "im")
    head = ["account", "IM (USD)", "MM (USD)", "gross notional (USD)", "IM / notional",
            "driver", "ES 95 % MC interval (USD)", "largest holdings (IM contribution, USD)"]
    rows = []
    for r in sub.itertuples(index=False):
        ci = "\u2013"
        if "es_lo" in sub.columns and np.isfinite(getattr(r, "es_lo", np.nan)):
            ci = f"{format_usd(r.es_lo)} to {format_usd(r.es_hi)}"
        hold = "\u2013"
        if alloc is not None:
            a = alloc[(alloc["account_id"] == r.account_id) & (alloc["method"] == method)
                      & (alloc["im_contribution"].abs() > 0)]
            if len(a):
                a = a.reindex(a["im_contribution"].abs().sort_values(ascending=False).index)
                hold = "; ".join(f"{h}: {format_usd(c)}" for h, c in
                                 zip(a["holding"].head(3), a["im_contribution"].head(3),
                                     strict=True))
        ratio = r.im / r.gross_notional if r.gross_notional and r.gross_notional > 0 else np.nan
        rows.append([str(r.account_id), format_usd(r.im), format_usd(r.mm),
                     format_usd(r.gross_notional), _fmt(ratio, "pct"), str(r.driver), ci, hold])
    return head, rows


def _mc_table(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    head = ["method", "accounts with ES", "median ES standard error (USD)",
            "median relative 95 % half-width of ES", "largest ES standard error (USD)"]
    rows = []
    if "es_se" not in df.columns:
        return head, rows
    for m, g in df.groupby("method", sort=False):
        g = g.dropna(subset=["es_se", "es"])
        if g.empty:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = ((g["es_hi"] - g["es_lo"]) / 2 / g["es"]).replace([np.inf, -np.inf], np.nan)
        rows.append([str(m), f"{len(g):,}", format_usd(g["es_se"].median()),
                     _fmt(rel.median(), "pct"), format_usd(g["es_se"].max())])
    return head, rows


def _units_table(accounts_path: Path) -> tuple[list[str], list[list[str]]]:
    """Column units from the field metadata (``unit``) of ``accounts.parquet``'s schema."""
    import pyarrow.parquet as pq

    head = ["column of accounts.parquet", "unit"]
    rows = []
    for f in pq.read_schema(accounts_path):
        unit = (f.metadata or {}).get(b"unit")
        if unit is not None:
            rows.append([f.name, unit.decode()])
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in esc), ""]


def _html_table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if 0 < i and c[:1] in "-0123456789" else "txt"}">'
                         f"{html.escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;font-size:0.9em}th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}"""


def _liquidation_table(path: Path, top: int) -> tuple[str, list[str], list[list[str]]]:
    """The accounts most likely to be liquidated (``liquidation.parquet``, when the run has a
    ``[liquidation_profile]``): probabilities with their standard errors, the range of the
    liquidation price and the ES of the bad debt."""
    if not path.exists():
        return "", [], []
    lq = pd.read_parquet(path)
    sim = lq[lq["simulated"]]
    qcols = [c for c in lq.columns if c.startswith("liquidation_price_q")]
    lo, hi = (qcols[0], qcols[-1]) if qcols else (None, None)
    note = (f"{len(sim):,} accounts simulated; expected number liquidated within the horizon "
            f"{sim['p_liquidation'].sum():,.1f}, margin called {sim['p_margin_call'].sum():,.1f}"
            f", expected bad debt {sim['bad_debt_mean'].sum():,.0f} USD. Accounts are judged "
            "each on its own (no price impact, no ADL). Probabilities with their binomial "
            "standard errors; the price range is the "
            + (f"{lo.removeprefix('liquidation_price_q')} to "
               f"{hi.removeprefix('liquidation_price_q')} quantile" if lo else "range")
            + " of the reference asset's mark at liquidation (USD).")
    head = ["account", "equity (USD)", "MM ratio", "P(call)", "P(liquidation)",
            "P(bankruptcy)", "price range (USD)", "bad debt ES (USD)"]
    rows = []
    for _, r in sim.nlargest(top, "p_liquidation").iterrows():
        rng = (f"{r[lo]:,.0f} - {r[hi]:,.0f} {r['reference_asset']}"
               if lo and np.isfinite(r[lo]) else "-")
        rows.append([str(r["account_id"]), f"{r['equity']:,.0f}", f"{r['margin_ratio']:,.2f}",
                     f"{r['p_margin_call']:.3f} ± {r['se_margin_call']:.3f}",
                     f"{r['p_liquidation']:.3f} ± {r['se_liquidation']:.3f}",
                     f"{r['p_bankruptcy']:.3f}", rng, f"{r['bad_debt_es']:,.0f}"])
    return note, head, rows


def write_report(folder: Path, accounts_path: Path, summary: pd.DataFrame, cfg: Any, *,
                 top: int = 10, html_report: bool = True) -> Path:
    """Write ``report.md`` (and ``report.html``) with their plots into ``folder``.

    Parameters
    ----------
    folder : pathlib.Path
        Output folder of the run; ``allocations.parquet`` there is used when present.
    accounts_path : pathlib.Path
        The run's ``accounts.parquet`` (amounts in USD).
    summary : pandas.DataFrame
        The run's summary by method (``summary.csv``).
    cfg : marginlab.models.app.config.RunConfig
        The validated configuration (scenarios and digest are reported).
    top : int
        Largest accounts listed (by IM under each method).
    html_report : bool
        Also write the self-contained ``report.html`` (PNG plots as base64 data URIs).

    Returns
    -------
    pathlib.Path
        Path of ``report.md``.

    Notes
    -----
    Plots use at most 20,000 accounts (a fixed-seed sample of account ids, the same accounts
    under every method), so a report of a million-account run stays small. Log axes cannot
    show zero margins; each plot says how many accounts it left out for that reason.
    """
    folder = Path(folder)
    df = pd.read_parquet(accounts_path)
    methods = list(dict.fromkeys(df["method"]))
    top_ids = sorted({a for m in methods
                      for a in df[df["method"] == m].nlargest(top, "im")["account_id"]})
    alloc_path = folder / "allocations.parquet"
    alloc = (pd.read_parquet(alloc_path, filters=[("account_id", "in", top_ids)])
             if alloc_path.exists() and top_ids else None)
    sample = _sample(df).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sample["im_over_notional"] = np.where(sample["gross_notional"] > 0,
                                              sample["im"] / sample["gross_notional"], np.nan)
    figures: list[tuple[str, str, Any]] = [
        ("margin_over_notional", "IM per USD of gross notional, by method (log scale; box: "
         "quartiles, whiskers: 5th-95th percentile).", plot_margin_over_notional(sample)),
        ("margin_vs_notional", "Density of accounts: IM (USD) against gross notional (USD), "
         "log-log, one panel per method.", plot_margin_vs_notional(sample)),
    ]
    if len(methods) > 1:
        figures.append(("method_vs_method", f"Each method's IM against {methods[0]}'s, per "
                        "account (log-log density).", plot_method_vs_method(sample)))
    risk = [m for m in methods if "es" in df.columns
            and df.loc[df["method"] == m, "es"].notna().any()]
    if risk:
        figures.append(("mc_error", f"Monte Carlo error (95 % intervals) of the largest "
                        f"accounts under {risk[0]} (USD).", plot_mc_error(df, risk[0])))
    pngs = {}
    for name, _, fig in figures:
        data = _png(fig)
        tmp = folder / f".{name}.png.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / f"{name}.png")
        pngs[name] = data

    sc = cfg.scenarios
    sum_cols = [c for c in summary.columns if c in _SUMMARY_COLUMNS]
    extra = [c for c in summary.columns if c not in _SUMMARY_COLUMNS]
    s_head = [_SUMMARY_COLUMNS[c][0] for c in sum_cols] + extra
    s_rows = [[_fmt(r[c], _SUMMARY_COLUMNS[c][1]) for c in sum_cols]
              + [(_fmt(r[c], "usd") if isinstance(r[c], float) else str(r[c])) for c in extra]
              for _, r in summary.iterrows()]
    mc_head, mc_rows = _mc_table(df)
    lq_note, lq_head, lq_rows = _liquidation_table(folder / "liquidation.parquet", top)
    u_head, u_rows = _units_table(accounts_path)
    facts = [
        f"accounts: {df['account_id'].nunique():,}; methods ({len(methods)}): "
        f"{', '.join(methods)}",
        f"scenarios: {sc.n_scenarios:,} from a {sc.model} model on "
        f"{', '.join(sc.underlyings)}, horizon (margin period of risk) {sc.horizon_days:g} "
        f"days, seed {sc.seed}",
        "amounts: USD; IM = initial margin, MM = maintenance margin; losses positive",
        f"config digest: {cfg.digest()[:16]}",
    ]
    largest = [(m, *_largest(df, alloc, m, top)) for m in methods]
    mc_note = ("Intervals are 95 % Monte Carlo confidence intervals of each account's VaR and "
               "ES (``var_lo``/``var_hi``, ``es_lo``/``es_hi`` in accounts.parquet); they "
               "shrink as 1/sqrt(n_scenarios).")
    drv_note = ("The driver column says what set the margin (the risk measure, a floor or "
                "an add-on). Holdings are ranked by their absolute contribution to IM (Euler "
                "allocation, USD; contributions sum to the account's IM).")

    md = ["# marginlab run report", "", *(f"* {f}" for f in facts), "",
          "## Summary by method (amounts in USD)", "", *_md_table(s_head, s_rows),
          "## Largest accounts and what drives their margin", "", drv_note, ""]
    for m, h, rows in largest:
        md += [f"### {m}: {len(rows)} largest accounts by IM", "", *_md_table(h, rows)]
    if mc_rows:
        md += ["## Monte Carlo error", "", mc_note, "", *_md_table(mc_head, mc_rows)]
    if lq_head:
        md += ["## Liquidation risk", "", lq_note, "", *_md_table(lq_head, lq_rows)]
    if u_rows:
        md += ["## Units of the output files", "", *_md_table(u_head, u_rows)]
    md += ["## Plots", ""]
    for name, cap, _ in figures:
        md += [f"![{name}]({name}.png)", "", f"*{cap}*", ""]
    path = folder / "report.md"
    tmp = folder / ".report.md.tmp"
    tmp.write_text("\n".join(md))
    os.replace(tmp, path)

    if html_report:
        e = html.escape
        parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
                 "<title>marginlab run report</title>", f"<style>{_CSS}</style></head><body>",
                 "<h1>marginlab run report</h1>",
                 "<ul>" + "".join(f"<li>{e(f)}</li>" for f in facts) + "</ul>",
                 "<h2>Summary by method (amounts in USD)</h2>", _html_table(s_head, s_rows),
                 "<h2>Largest accounts and what drives their margin</h2>", f"<p>{e(drv_note)}</p>"]
        for m, h, rows in largest:
            parts += [f"<h3>{e(m)}: {len(rows)} largest accounts by IM</h3>",
                      _html_table(h, rows)]
        if mc_rows:
            parts += ["<h2>Monte Carlo error</h2>", f"<p>{e(mc_note)}</p>",
                      _html_table(mc_head, mc_rows)]
        if lq_head:
            parts += ["<h2>Liquidation risk</h2>", f"<p>{e(lq_note)}</p>",
                      _html_table(lq_head, lq_rows)]
        if u_rows:
            parts += ["<h2>Units of the output files</h2>", _html_table(u_head, u_rows)]
        parts.append("<h2>Plots</h2>")
        for name, cap, _ in figures:
            b64 = base64.b64encode(pngs[name]).decode("ascii")
            parts.append(f'<figure id="{name}"><img alt="{e(name)}" '
                         f'src="data:image/png;base64,{b64}"><figcaption>{e(cap)}'
                         "</figcaption></figure>")
        parts.append("</body></html>")
        tmp = folder / ".report.html.tmp"
        tmp.write_text("\n".join(parts), encoding="utf-8")
        os.replace(tmp, folder / "report.html")
    return path
