r"""The result of a liquidation cascade: :class:`CascadeResult`, and :func:`var_es`.

:class:`CascadeResult` is what :func:`~marginlab.models.liquidation.simulate_liquidations`
returns: per-path, per-asset and per-account outcomes, their summary (mean, VaR, ES), the
cascade amplification, liquidation volume by price level and plots. :func:`var_es` is the
VaR / ES estimator of a sample of losses its summary uses. Both are importable from
:mod:`marginlab.models.liquidation` as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marginlab.simulate import cascade as K
from marginlab.simulate import es as risk_es
from marginlab.simulate import var as risk_var

from ._summary import Summary, cascade_summary, short_repr
from ._validate import check_real
from .liquidation_rules import LiquidationRules

__all__ = ["CascadeResult", "var_es"]

_HOURS_PER_YEAR = 365.0 * 24.0


# =========================================================================== risk measures
def var_es(losses: np.ndarray, level: float) -> tuple[float, float]:
    r"""Value-at-risk and expected shortfall of a sample of losses (positive is bad).

    VaR is the :math:`\lceil n\alpha \rceil`-th smallest loss; ES is the Acerbi-Tasche
    estimator, the mean of the worst :math:`w = n(1-\alpha)` losses with a fractional weight
    on the boundary order statistic (the estimators of :mod:`marginlab.simulate.risk`).

    Examples
    --------
    >>> var_es(np.arange(1.0, 101.0), 0.95)
    (95.0, 98.0)
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    n = x.size
    if n == 0:
        raise ValueError("losses must not be empty")
    a = check_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    if n * (1.0 - a) < 1.0 - 1e-9:
        # fewer than one tail scenario: both measures are the largest loss
        worst = float(x.max())
        return worst, worst
    return float(risk_var(x, a)), float(risk_es(x, a))


# =========================================================================== results
@dataclass(frozen=True, eq=False)
class CascadeResult:
    """Outcome of :func:`simulate_liquidations`: per account, per path, per price column.

    Attributes
    ----------
    account_ids : ndarray of str, shape (n_accounts,)
        Simulated accounts (those with positions), in book order.
    assets : tuple of str
        Price columns (traded underlyings, then collateral coins, sorted).
    s0 : ndarray, shape (n_assets,)
        Today's prices, USD.
    horizon, dt : float
        Horizon and step, years.
    n_steps, n_paths : int
    method : str
        ``"fast"`` or ``"general"``.
    rules : LiquidationRules
    raw : marginlab.simulate.cascade.CascadeArrays
        Kernel outputs (per-path fields ``PATH_FIELDS``, per-asset fields ``ASSET_FIELDS``).
    exo_min_log, exo_max_log : ndarray, shape (n_paths, n_assets)
        Extreme log moves ``log(S / S_0)`` of the exogenous paths (no feedback).
    exogenous : ndarray, shape (n_record, n_steps + 1, n_assets)
        The exogenous prices of the recorded paths (``raw.marks`` holds their marks).
    level_edges : ndarray
        Bin edges of ``log(fill / S_0)`` of :meth:`volume_by_level`.
    initial : pandas.DataFrame
        Per account at t = 0: equity, margin balance, maintenance margin and, on the fast
        path, the trigger prices.
    no_feedback : CascadeResult or None
        The same paths and book without price impact (``compare_no_feedback=True``).
    tracked : ndarray of str
        Accounts whose outcome on every path is in ``raw.accounts`` (the ``track`` argument
        of :func:`simulate_liquidations`), in that order; see :meth:`account_outcomes` and
        :func:`~marginlab.models.liquidation_profile`.
    """

    account_ids: np.ndarray
    assets: tuple[str, ...]
    s0: np.ndarray
    horizon: float
    dt: float
    n_steps: int
    n_paths: int
    method: str
    rules: LiquidationRules
    raw: K.CascadeArrays
    exo_min_log: np.ndarray
    exo_max_log: np.ndarray
    exogenous: np.ndarray
    level_edges: np.ndarray
    initial: pd.DataFrame
    no_feedback: CascadeResult | None = field(default=None, repr=False)
    tracked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object), repr=False)

    @property
    def horizon_days(self) -> float:
        """The horizon in days (``horizon * 365``)."""
        return self.horizon * 365.0

    # ------------------------------------------------------------------ per path
    def column(self, name: str) -> np.ndarray:
        """One per-path field of :data:`marginlab.simulate.cascade.PATH_FIELDS`, or
        ``fund_drawdown`` (USD, initial fund minus its lowest level), ``n_paths`` values."""
        if name == "fund_drawdown":
            return self.rules.insurance_fund - self.column("fund_min") if math.isfinite(
                self.rules.insurance_fund) else np.zeros(self.n_paths)
        if name not in K.PATH_FIELDS:
            raise KeyError(f"unknown per-path field {name!r}; known: {K.PATH_FIELDS} and "
                           "'fund_drawdown'")
        return self.raw.path[:, K.PATH_FIELDS.index(name)]

    def asset_column(self, name: str, asset: str | None = None) -> np.ndarray:
        """A per-path, per-asset field of ``ASSET_FIELDS``: shape (n_paths,) for one asset,
        (n_paths, n_assets) for all."""
        if name not in K.ASSET_FIELDS:
            raise KeyError(f"unknown per-asset field {name!r}; known: {K.ASSET_FIELDS}")
        values = self.raw.asset[:, :, K.ASSET_FIELDS.index(name)]
        return values if asset is None else values[:, self._col(asset)]

    def _col(self, asset: str) -> int:
        a = str(asset).upper()
        if a not in self.assets:
            raise KeyError(f"asset {asset!r} is not a price column; columns: {self.assets}")
        return self.assets.index(a)

    def path_frame(self) -> pd.DataFrame:
        """One row per path: every per-path field, fund drawdown, and per asset the liquidated
        and ADL volume (USD), extreme log moves with and without feedback and the largest
        absolute log impact."""
        cols = {name: self.raw.path[:, k] for k, name in enumerate(K.PATH_FIELDS)}
        cols["fund_drawdown"] = self.column("fund_drawdown")
        for j, a in enumerate(self.assets):
            for k, name in enumerate(K.ASSET_FIELDS):
                cols[f"{name}[{a}]"] = self.raw.asset[:, j, k]
            cols[f"exogenous_min_log_move[{a}]"] = self.exo_min_log[:, j]
            cols[f"exogenous_max_log_move[{a}]"] = self.exo_max_log[:, j]
        return pd.DataFrame(cols, index=pd.RangeIndex(self.n_paths, name="path"))

    def conservation_residual(self) -> np.ndarray:
        """Per path: sum of accounts' equity changes + fund change - market P&L - exchange
        payments - deposits (USD); zero up to rounding (see :mod:`~marginlab.simulate.cascade`).
        """
        c = self.column
        fund_change = (c("fund_final") - self.rules.insurance_fund
                       if math.isfinite(self.rules.insurance_fund)
                       else c("fees") - c("fund_paid"))
        return (c("wealth_change") + fund_change - c("market_pnl") - c("exchange_paid")
                - c("deposits"))

    # ------------------------------------------------------------------ per account
    def to_frame(self) -> pd.DataFrame:
        """One row per account: the t = 0 state and the probabilities (over paths) of at least
        one margin call, liquidation, bankruptcy and ADL, with binomial standard errors."""
        frame = self.initial.copy()
        n = self.n_paths
        for k, name in enumerate(K.COUNT_FIELDS):
            p = self.raw.counts[k] / n
            frame[f"p_{name}"] = p
            frame[f"se_{name}"] = np.sqrt(p * (1.0 - p) / n)
        return frame

    # ------------------------------------------------------------------ distributions
    def summary(self, level: float = 0.99) -> Summary:
        """Distribution over paths of the key quantities: mean, its standard error, VaR and ES
        at ``level`` (upper tail), and the probability of a positive value; a
        :class:`~marginlab.models._summary.Summary` whose ``as_frame()`` is that table
        (``summary().loc[...]`` still reads it), with the run's settings and notes.

        Rows: bad debt (all bankruptcy losses), exchange-paid (uncovered) bad debt, insurance
        fund drawdown, ADL transfers, liquidated and ADL volume (USD), event counts, and per
        asset the worst downside move ``-min log(P / S_0)`` with and without feedback and the
        largest absolute log impact.
        """
        rows = {
            "bad_debt (USD)": self.column("bad_debt"),
            "exchange_paid (USD)": self.column("exchange_paid"),
            "fund_drawdown (USD)": self.column("fund_drawdown"),
            "adl_paid (USD)": self.column("adl_paid"),
            "liquidated_volume (USD)": self.asset_column("liquidated_volume").sum(axis=1),
            "adl_volume (USD)": self.asset_column("adl_volume").sum(axis=1),
            "margin_calls": self.column("margin_calls"),
            "liquidations": self.column("liquidations"),
            "bankruptcies": self.column("bankruptcies"),
            "adl_events": self.column("adl_events"),
        }
        for j, a in enumerate(self.assets):
            rows[f"worst_down_move[{a}]"] = -self.raw.asset[:, j, K.A_MIN_LOG]
            rows[f"worst_down_move_no_feedback[{a}]"] = -self.exo_min_log[:, j]
            rows[f"max_abs_impact[{a}]"] = self.raw.asset[:, j, K.A_MAX_IMPACT]
        out = []
        for name, x in rows.items():
            var, es = var_es(x, level)
            out.append({"metric": name, "mean": float(x.mean()),
                        "se": float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0,
                        "var": var, "es": es, "p_positive": float(np.mean(x > 0.0))})
        return cascade_summary(self, pd.DataFrame(out).set_index("metric"), level)

    def __repr__(self) -> str:
        return short_repr(self, accounts=len(self.account_ids), assets=", ".join(self.assets),
                          n_paths=self.n_paths, n_steps=self.n_steps,
                          horizon_days=self.horizon_days, method=self.method)

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def amplification(self, level: float = 0.99) -> pd.DataFrame:
        """Cascade amplification per asset: VaR at ``level`` of the worst downside and upside
        log moves with feedback (marks) and without (the exogenous paths, same seeds), and
        their ratio; with ``no_feedback`` also the mean liquidations and bad debt of both runs.
        """
        out = []
        for j, a in enumerate(self.assets):
            row = {"asset": a}
            for side, fb, exo in (("down", -self.raw.asset[:, j, K.A_MIN_LOG],
                                   -self.exo_min_log[:, j]),
                                  ("up", self.raw.asset[:, j, K.A_MAX_LOG],
                                   self.exo_max_log[:, j])):
                v_fb = var_es(fb, level)[0]
                v_exo = var_es(exo, level)[0]
                row[f"{side}_var_feedback"] = v_fb
                row[f"{side}_var_no_feedback"] = v_exo
                row[f"{side}_ratio"] = v_fb / v_exo if v_exo > 0 else math.nan
            out.append(row)
        frame = pd.DataFrame(out).set_index("asset")
        if self.no_feedback is not None:
            nf = self.no_feedback
            for name in ("liquidations", "bad_debt"):
                frame[f"mean_{name}_feedback"] = self.column(name).mean()
                frame[f"mean_{name}_no_feedback"] = nf.column(name).mean()
        return frame

    def volume_by_level(self, asset: str) -> pd.DataFrame:
        """Mean USD volume liquidated in the market per path, by fill level: bins of
        ``log(fill / S_0)`` (the end bins also hold what lies beyond)."""
        j = self._col(asset)
        e = self.level_edges
        return pd.DataFrame({"log_move_lo": e[:-1], "log_move_hi": e[1:],
                             "price_lo": self.s0[j] * np.exp(e[:-1]),
                             "price_hi": self.s0[j] * np.exp(e[1:]),
                             "volume": self.raw.levels[j] / self.n_paths})

    # ------------------------------------------------------------------ plots
    def plot_price_paths(self, asset: str | None = None, n: int = 10, ax=None):
        """Recorded mark paths (with feedback, solid) over the exogenous paths (dashed, same
        seeds), in hours; returns the matplotlib axes."""
        import matplotlib.pyplot as plt

        j = 0 if asset is None else self._col(asset)
        ax = ax or plt.subplots(figsize=(8, 4))[1]
        n = min(n, self.raw.marks.shape[0])
        if n == 0:
            raise ValueError("no paths were recorded: pass record > 0 to simulate_liquidations")
        hours = np.arange(self.n_steps + 1) * self.dt * _HOURS_PER_YEAR
        for k in range(n):
            line, = ax.plot(hours, self.raw.marks[k, :, j], lw=1.2)
            ax.plot(hours, self.exogenous[k, :, j], ls="--", lw=0.8, color=line.get_color())
        ax.set_xlabel("hours")
        ax.set_ylabel(f"{self.assets[j]} price (USD)")
        ax.set_title(f"{self.assets[j]}: marks with feedback (solid) vs without (dashed)")
        return ax

    def plot_bad_debt(self, level: float = 0.99, bins: int = 50, ax=None):
        """Histogram of bad debt over the paths with some (log count axis), with VaR and ES
        at ``level``."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(7, 4))[1]
        x = self.column("bad_debt")
        pos = x[x > 0.0]
        if pos.size:
            ax.hist(pos, bins=bins, color="tab:red", alpha=0.7)
            ax.set_yscale("log")
        var, es = var_es(x, level)
        ax.axvline(var, color="k", ls="--", label=f"VaR {level:.1%}: {var:,.0f}")
        ax.axvline(es, color="k", ls=":", label=f"ES {level:.1%}: {es:,.0f}")
        ax.set_xlabel("bad debt per path (USD)")
        ax.set_ylabel("paths")
        ax.set_title(f"Bad debt: P(> 0) = {np.mean(x > 0):.2%}, mean {x.mean():,.0f} USD")
        ax.legend()
        return ax

    def plot_volume_by_level(self, asset: str | None = None, ax=None):
        """Mean liquidated volume per path by fill price (USD per bin)."""
        import matplotlib.pyplot as plt

        a = self.assets[0] if asset is None else asset
        ax = ax or plt.subplots(figsize=(7, 4))[1]
        f = self.volume_by_level(a)
        mid = 0.5 * (f["price_lo"] + f["price_hi"])
        ax.bar(mid, f["volume"], width=(f["price_hi"] - f["price_lo"]) * 0.9, color="tab:blue")
        ax.axvline(self.s0[self._col(a)], color="k", lw=0.8, label="today")
        ax.set_xlabel(f"{str(a).upper()} fill price (USD)")
        ax.set_ylabel("mean liquidated volume per path (USD)")
        ax.set_title(f"{str(a).upper()}: liquidations by price level")
        ax.legend()
        return ax
