"""One summary object for every result: text for the terminal, HTML for notebooks, frames.

After statsmodels' ``Summary`` and arch's ``ARCHModelResult.summary()``: a :class:`Summary`
has a title, a block of facts (model, sample size, likelihood, information criteria ...),
one or more tables and notes (warnings, flags). ``print(result.summary())`` shows the text,
a notebook renders :meth:`Summary._repr_html_`, and :meth:`Summary.as_frame` /
:attr:`Summary.tables` give the numbers as pandas objects.

Every result class of the package builds its summary with this class and its short
``repr`` with :func:`short_repr`; results render in notebooks through
:func:`html_of`.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Summary", "fmt", "short_repr"]

_WIDTH = 78


def fmt(x: Any) -> str:
    """A number as a reader wants it: thousands separators, 4 significant digits for small
    numbers, scientific only below 1e-4; ``n/a`` for NaN, ``inf`` kept."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, numbers.Integral):
        return f"{int(x):,}"
    if isinstance(x, numbers.Real):
        v = float(x)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        a = abs(v)
        if a == 0.0:
            return "0"
        if a >= 1e3:
            return f"{v:,.2f}" if a < 1e15 else f"{v:.4e}"
        if a >= 1e-4:
            return f"{v:.4g}"
        return f"{v:.4e}"
    if x is None:
        return ""
    return str(x)


def short_repr(obj: Any, **facts: Any) -> str:
    """``ClassName(key=value, ...)`` on one line, numbers through :func:`fmt`."""
    body = ", ".join(f"{k}={fmt(v) if not isinstance(v, str) else repr(v)}"
                     for k, v in facts.items())
    return f"{type(obj).__name__}({body})"


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        col = out[c]
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            out[c] = [fmt(v) for v in col.to_numpy()]
    return out


class Summary:
    """A result's summary: title, facts, tables and notes.

    Parameters
    ----------
    title : str
        First line, e.g. ``"GARCH fit"``.
    info : mapping or sequence of (str, value) pairs
        Facts shown in two columns under the title (numbers through :func:`fmt`).
    tables : mapping of str to pandas.DataFrame
        Named tables, shown in order; the first is :meth:`as_frame`.
    notes : sequence of str
        Warnings and flags a reader must see, shown last (``"none"`` is not printed).

    Notes
    -----
    Until this class existed some ``summary()`` methods returned their main DataFrame;
    attribute access and indexing that a Summary does not define are passed to
    :meth:`as_frame` (``summary().loc[...]``, ``summary().attrs``), so such code keeps
    working. New code should call :meth:`as_frame`.

    Examples
    --------
    >>> s = Summary("Example", {"n": 3}, {"values": pd.DataFrame({"x": [1.5, 2500.0]})})
    >>> "2,500.00" in str(s)  # thousands separators in the text
    True
    >>> s.as_frame()["x"].tolist()
    [1.5, 2500.0]
    """

    def __init__(self, title: str, info: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
                 tables: Mapping[str, pd.DataFrame] | None = None,
                 notes: Sequence[str] = ()) -> None:
        self.title = str(title)
        self.info: list[tuple[str, Any]] = list(info.items() if isinstance(info, Mapping)
                                                else info)
        self.tables: dict[str, pd.DataFrame] = dict(tables or {})
        self.notes: list[str] = [str(n) for n in notes]

    # ------------------------------------------------------------------ frames
    def as_frame(self) -> pd.DataFrame:
        """The first (main) table, numbers unformatted; an empty frame when there is none."""
        if not self.tables:
            return pd.DataFrame()
        return next(iter(self.tables.values()))

    def info_frame(self) -> pd.Series:
        """The facts as a Series (values unformatted)."""
        return pd.Series(dict(self.info), dtype=object, name=self.title)

    def __getattr__(self, name: str) -> Any:
        # private and dunder names are never delegated (IPython probes _repr_*_ names)
        if name.startswith("_") or name in ("title", "info", "tables", "notes"):
            raise AttributeError(name)
        return getattr(self.as_frame(), name)

    def __getitem__(self, key: Any) -> Any:
        return self.as_frame()[key]

    # ------------------------------------------------------------------ text
    def _info_lines(self) -> list[str]:
        cells = [f"{k + ':':<22} {fmt(v):>14}" for k, v in self.info]
        half = -(-len(cells) // 2)
        left, right = cells[:half], cells[half:]
        return [(a + "   " + (right[i] if i < len(right) else "")).rstrip()
                for i, a in enumerate(left)]

    def as_text(self) -> str:
        """The summary as plain text (what ``print`` shows)."""
        rule, thin = "=" * _WIDTH, "-" * _WIDTH
        lines = [rule, self.title.center(_WIDTH).rstrip(), rule]
        lines += self._info_lines()
        for name, frame in self.tables.items():
            lines += [thin, name]
            with pd.option_context("display.max_rows", 60, "display.width", 200,
                                   "display.max_columns", 30):
                lines.append(_formatted(frame).to_string() if len(frame) else "(empty)")
        if self.notes:
            lines += [thin, "Notes and warnings:"]
            lines += [f"[{i}] {n}" for i, n in enumerate(self.notes, 1)]
        lines.append(rule)
        return "\n".join(lines)

    def to_string(self) -> str:
        """Same as :meth:`as_text` (``DataFrame.to_string`` compatible)."""
        return self.as_text()

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()

    # ------------------------------------------------------------------ html
    def as_html(self) -> str:
        """The summary as an HTML fragment (what a notebook shows)."""
        esc = html.escape
        parts = [f"<div class='marginlab-summary'><h4>{esc(self.title)}</h4>"]
        if self.info:
            rows = "".join(f"<tr><th style='text-align:left'>{esc(k)}</th>"
                           f"<td style='text-align:right'>{esc(fmt(v))}</td></tr>"
                           for k, v in self.info)
            parts.append(f"<table>{rows}</table>")
        for name, frame in self.tables.items():
            parts.append(f"<p><b>{esc(name)}</b></p>")
            parts.append(_formatted(frame).to_html(max_rows=60, border=0))
        if self.notes:
            items = "".join(f"<li>{esc(n)}</li>" for n in self.notes)
            parts.append(f"<p><b>Notes and warnings</b></p><ol>{items}</ol>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.as_html()


# --------------------------------------------------------------------------- builders
def portfolio_risk_summary(risk: Any, top: int = 5) -> Summary:
    """The :meth:`~marginlab.models.portfolio.PortfolioRisk.summary` of ``risk``."""
    levels = np.asarray(risk.levels, dtype=float)
    es, var = np.asarray(risk.es, dtype=float), np.asarray(risk.var, dtype=float)
    es_se = np.asarray(risk.es_se, dtype=float)
    n_acc = es.shape[1] if es.ndim == 2 else 0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(es > 0, es_se / es, np.nan)
    rows = []
    for i, lv in enumerate(levels):
        r = rel[i][np.isfinite(rel[i])]
        rows.append({"level": lv, "total VaR (USD)": float(var[i].sum()),
                     "total ES (USD)": float(es[i].sum()),
                     "median ES (USD)": float(np.median(es[i])) if n_acc else np.nan,
                     "max ES (USD)": float(es[i].max()) if n_acc else np.nan,
                     "median ES s.e. / ES": float(np.median(r)) if r.size else np.nan,
                     "max ES s.e. / ES": float(r.max()) if r.size else np.nan})
    per_level = pd.DataFrame(rows).set_index("level")
    k = int(np.argmax(levels)) if levels.size else 0
    order = np.argsort(-es[k], kind="stable")[:max(int(top), 0)] if n_acc else np.zeros(0, int)
    big = pd.DataFrame({"account_id": np.asarray(risk.account_ids)[order],
                        "VaR (USD)": var[k][order], "ES (USD)": es[k][order],
                        "ES s.e. (USD)": es_se[k][order],
                        f"ES {risk.ci:.0%} low": np.asarray(risk.es_lo)[k][order],
                        f"ES {risk.ci:.0%} high": np.asarray(risk.es_hi)[k][order]})
    info = [("Accounts", n_acc), ("Levels", ", ".join(f"{v:g}" for v in levels)),
            ("Horizon (days)", float(risk.horizon) * 365.0), ("Scenarios", int(risk.n_scenarios)),
            ("Confidence of bounds", float(risk.ci)),
            ("Allocations", "yes" if risk.alloc_es is not None else "no")]
    notes = []
    noisy = int(np.sum(rel[k] > 0.05)) if n_acc else 0
    if noisy:
        notes.append(f"{noisy:,} account(s) have an ES standard error above 5 % of their ES at "
                     f"level {levels[k]:g}: use more scenarios for them")
    title = "Portfolio risk: VaR and ES per account (losses in USD)"
    return Summary(title, info, {"Totals and precision per level": per_level,
                                 f"Largest {len(order)} accounts by ES at {levels[k]:g}": big},
                   notes)


def html_of(obj: Any) -> str:
    """``obj.summary().as_html()`` (for ``_repr_html_``)."""
    return obj.summary().as_html()


_SHORT_FIELDS = ("zone", "statistic", "p_value", "lr_cc", "p_value_cc", "critical_value",
                 "n_exceptions", "n_obs", "level")


def flat_repr(result: Any) -> str:
    """One line for a backtest statistic: its key numbers, not every field."""
    facts = {k: getattr(result, k) for k in _SHORT_FIELDS if hasattr(result, k)}
    return short_repr(result, **facts)


def backtest_test_summary(result: Any, alpha: float = 0.05) -> Summary:
    """The summary of a backtest statistic (Kupiec, Christoffersen, traffic light, Z2); a
    result without exception counts (procyclicality) shows its fields."""
    if not hasattr(result, "n_exceptions"):
        return Summary(type(result).__name__, list(result.to_dict().items()))
    x, t, lev = result.n_exceptions, result.n_obs, result.level
    expected = t * (1.0 - lev)
    info: list[tuple[str, Any]] = [("Level", lev), ("Observations", t), ("Exceptions", x),
                                   ("Expected", expected),
                                   ("Exception rate", x / t if t else math.nan),
                                   ("Expected rate", 1.0 - lev)]
    for k in ("zone", "cumulative_probability", "type1_error", "plus_factor", "pi0", "pi1",
              "critical_value", "test_level", "n_sims"):
        if hasattr(result, k):
            info.append((k.replace("_", " "), getattr(result, k)))
    rows = [{"test": name, "statistic": stat, "df": df, "p_value": p,
             "reject": bool(np.isfinite(p) and p < alpha)}
            for name, stat, df, p in result._tests()]
    tables = {}
    if rows:
        tables[f"Tests (reject at {alpha:g})"] = pd.DataFrame(rows).set_index("test")
    notes = []
    rejected = {r["test"] for r in rows if r["reject"]}
    if rejected & {"POF (Kupiec)", "conditional coverage"} and x != expected:
        if x > expected:
            notes.append(f"coverage rejected with more exceptions than expected ({x:,} > "
                         f"{expected:,.1f}): the margin is too low (under-margined)")
        else:
            notes.append(f"coverage rejected with fewer exceptions than expected ({x:,} < "
                         f"{expected:,.1f}): the margin is too high (over-margined)")
    if "independence" in rejected:
        notes.append(f"independence rejected: P(exception | exception the day before) = "
                     f"{fmt(result.pi1)} against {fmt(result.pi0)} otherwise (exceptions "
                     "cluster in time)")
    if rejected & {"Z2 (simulated null)"}:
        notes.append("Z2 rejected: realised tail losses exceed the forecast ES "
                     "(under-margined in the tail)")
    if getattr(result, "zone", None) in ("yellow", "red"):
        notes.append(f"Basel {result.zone} zone")
    return Summary(type(result)._title, info, tables, notes)


def cascade_summary(res: Any, frame: pd.DataFrame, level: float) -> Summary:
    """The :meth:`~marginlab.models.liquidation.CascadeResult.summary` of ``res``: the
    distribution table ``frame`` with the run's settings and notes."""
    n = res.n_paths
    info = [("Accounts", len(res.account_ids)), ("Price columns", ", ".join(res.assets)),
            ("Paths", n), ("Steps", res.n_steps), ("Horizon (days)", res.horizon * 365.0),
            ("Step (hours)", res.dt * 365.0 * 24.0), ("Engine", res.method),
            ("Level of VaR/ES", level),
            ("Insurance fund (USD)", float(res.rules.insurance_fund)),
            ("With no-feedback run", "yes" if res.no_feedback is not None else "no")]
    notes = []
    for metric, what in (("bad_debt (USD)", "bad debt"),
                         ("exchange_paid (USD)", "bad debt not covered by the fund or ADL"),
                         ("adl_paid (USD)", "auto-deleveraging")):
        if metric in frame.index and frame.loc[metric, "p_positive"] > 0:
            p = float(frame.loc[metric, "p_positive"])
            notes.append(f"{what} on {p:.2%} of paths (s.e. {math.sqrt(p * (1 - p) / n):.2%}); "
                         f"ES {level:g}: {fmt(float(frame.loc[metric, 'es']))} USD")
    if n < 1000:
        notes.append(f"only {n:,} paths: tail figures at {level:g} rest on "
                     f"{max(int(n * (1 - level)), 0):,} paths")
    return Summary("Liquidation cascade: distribution over paths", info,
                   {"Distribution over paths": frame}, notes)
