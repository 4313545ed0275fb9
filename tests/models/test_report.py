"""The batch-run report: a self-contained HTML report and a Markdown one a committee can read.

Oracles: the report's own inputs (accounts.parquet, allocations.parquet, summary.csv) read
back independently and formatted by hand; the PNG signature (the file format's law); an HTML
parser (html.parser from the standard library) for structure; matplotlib's own objects for
the ``ax=`` contract.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from marginlab.models.app.config import config_from_dict
from marginlab.models.app.report import format_usd, plot_mc_error
from marginlab.models.app.runner import run_batch
from marginlab.models.compare import (
    plot_margin_over_notional,
    plot_margin_vs_notional,
    plot_method_vs_method,
)

PNG = b"\x89PNG\r\n\x1a\n"
METHODS = [{"type": "monte_carlo", "name": f"MC {m.upper()} {lv:g}", "measure": m,
            "level": lv} for m in ("es", "var") for lv in (0.99, 0.975, 0.95, 0.9)]


class _Doc(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.imgs: list[str] = []
        self.links: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("link", "script") or (tag == "a" and "href" in a):
            self.links.append(a.get("href") or a.get("src") or tag)
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real small batch run with 8 risk-based methods and report=True."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = config_from_dict({
        "book": {"synthetic_accounts": 200, "synthetic_seed": 3},
        "market": {"spot": {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0},
                   "vol": {"BTC": 0.55, "ETH": 0.7, "SOL": 0.9}},
        "scenarios": {"model": "gbm", "underlyings": ["BTC", "ETH", "SOL"],
                      "params": {"mu": 0.0, "sigma": [0.55, 0.7, 0.9]},
                      "corr": [[1, 0.8, 0.7], [0.8, 1, 0.75], [0.7, 0.75, 1]],
                      "n_scenarios": 1_000, "seed": 7, "horizon_days": 2},
        "methods": METHODS,
        "run": {"account_block": 100, "report": True},
    }, tmp)
    res = run_batch(cfg, progress=False, output=tmp / "out")
    return tmp / "out", res


def test_html_report_is_self_contained_and_readable(run):
    """HTML parser: one document, every image an embedded PNG, no external asset; the
    summary table's totals equal summary.csv's formatted with thousands separators and USD."""
    out, _ = run
    text = (out / "report.html").read_text(encoding="utf-8")
    doc = _Doc()
    doc.feed(text)
    assert doc.tags[0] == "html" and "h1" in doc.tags and doc.tags.count("h2") >= 3
    assert doc.links == []
    assert len(doc.imgs) == 4
    for src in doc.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    body = " ".join(doc.text)
    assert "USD" in body
    assert not re.search(r"\d\.\d+e[+-]\d", body), "scientific notation in the report"
    summary = pd.read_csv(out / "summary.csv")
    table = doc.tables[0]
    assert table[0][:3] == ["method", "accounts", "total IM (USD)"]
    for row, (_, s) in zip(table[1:], summary.iterrows(), strict=True):
        assert row[0] == s["method"]
        assert row[2] == f"{s['total_im']:,.0f}" and "," in row[2]


def test_largest_accounts_show_driver_holdings_and_error_bars(run):
    """Independent read of accounts/allocations.parquet: the first listed account is the
    largest IM under the first method, with its driver, its ES interval and its largest
    holding by absolute IM contribution."""
    out, _ = run
    doc = _Doc()
    doc.feed((out / "report.html").read_text(encoding="utf-8"))
    acc = pd.read_parquet(out / "accounts.parquet")
    alloc = pd.read_parquet(out / "allocations.parquet")
    first = METHODS[0]["name"]
    top = acc[acc["method"] == first].nlargest(1, "im").iloc[0]
    largest = doc.tables[1]
    assert "driver" in largest[0] and "largest holdings (IM contribution, USD)" in largest[0]
    row = dict(zip(largest[0], largest[1], strict=True))
    assert row["account"] == top["account_id"]
    assert row["IM (USD)"] == f"{top['im']:,.0f}"
    assert row["driver"] == top["driver"]
    assert row["ES 95 % MC interval (USD)"] == f"{top['es_lo']:,.0f} to {top['es_hi']:,.0f}"
    a = alloc[(alloc["account_id"] == top["account_id"]) & (alloc["method"] == first)]
    h = a.loc[a["im_contribution"].abs().idxmax()]
    assert row["largest holdings (IM contribution, USD)"].startswith(
        f"{h['holding']}: {format_usd(h['im_contribution'])}")
    mc = [t for t in doc.tables if t[0][0] == "method" and "median ES standard error (USD)"
          in t[0]]
    assert len(mc) == 1 and len(mc[0]) == 1 + len(METHODS)
    g = acc[acc["method"] == first]
    assert mc[0][1][2] == format_usd(g["es_se"].median())


def test_units_come_from_the_parquet_schema(run):
    """The units table of the HTML report is the ``unit`` field metadata of accounts.parquet."""
    import pyarrow.parquet as pq

    out, _ = run
    doc = _Doc()
    doc.feed((out / "report.html").read_text(encoding="utf-8"))
    units = [t for t in doc.tables if t[0] == ["column of accounts.parquet", "unit"]]
    assert len(units) == 1
    schema = {f.name: f.metadata[b"unit"].decode() for f in pq.read_schema(
        out / "accounts.parquet") if f.metadata and b"unit" in f.metadata}
    assert dict(units[0][1:]) == schema and schema["im"] == "USD" and schema["es_se"] == "USD"


def test_markdown_report_has_units_and_no_scientific_notation(run):
    """Markdown report: USD headers, thousands separators, every linked plot exists as PNG."""
    out, _ = run
    md = (out / "report.md").read_text()
    assert "total IM (USD)" in md and "## Largest accounts" in md and "## Monte Carlo" in md
    assert not re.search(r"\d\.\d+e[+-]\d", md)
    summary = pd.read_csv(out / "summary.csv")
    assert f"{summary['total_im'].iloc[0]:,.0f}" in md
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / name).read_bytes().startswith(PNG)


def test_plots_take_ax_and_return_the_figure(run):
    """matplotlib contract (STYLE.md): given axes, each plot draws on them and returns their
    figure; log axes never reach zero or 1e-13 (zero margins are left out and counted)."""
    from matplotlib.figure import Figure

    out, _ = run
    acc = pd.read_parquet(out / "accounts.parquet")
    acc["im_over_notional"] = acc["im"] / acc["gross_notional"].where(acc["gross_notional"] > 0)
    fig = Figure()
    ax = fig.subplots()
    assert plot_margin_over_notional(acc, ax=ax) is fig
    assert plot_mc_error(acc, METHODS[0]["name"], ax=fig.subplots()) is fig
    fig8 = Figure()
    axes = fig8.subplots(2, 4)
    assert plot_margin_vs_notional(acc, axes=axes) is fig8
    fig7 = Figure()
    axes7 = fig7.subplots(2, 4)
    assert plot_method_vs_method(acc, axes=axes7) is fig7
    zero = acc["im"] <= 0
    for a in axes7.ravel()[:7]:
        assert a.get_xscale() == "log" and a.get_yscale() == "log"
        lo = min(a.get_xlim()[0], a.get_ylim()[0])
        assert lo > 1e-6 * acc.loc[~zero, "im"].min()
    grid = plot_method_vs_method(acc)
    assert len([a for a in grid.axes if a.get_visible() and a.get_xscale() == "log"]) == 7
    assert np.ravel(grid.axes).size >= 7
    with pytest.raises(ValueError, match="reference"):
        plot_method_vs_method(acc, reference="nope")
