"""The one interface every margin methodology implements, and its result.

A methodology is configured once (a frozen dataclass whose parameters validate on
construction) and applied with ``method.compute(book, market, scenarios=None)``, which
returns a :class:`MarginResult`: per account the initial margin (IM), maintenance margin (MM),
margin balance, what drove the number, and the allocation of IM to holdings. Methods that
simulate accept a shared :class:`~marginlab.models.scenarios.ScenarioSet` through
``scenarios`` so that several methods see the same scenarios (common random numbers) and
their differences are methodology, not noise.

Definitions shared by all methods (USD):

* ``margin_balance``: collateral after haircuts plus unrealised P&L
  (:func:`marginlab.models.portfolio.account_equity`).
* ``excess = margin_balance - im`` (negative: a deficit, the account cannot open more risk);
  ``margin_ratio = mm / margin_balance`` (>= 1: liquidation, as exchanges display it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["MarginMethod", "MarginResult", "check_fraction"]


def check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0,
                   low_open: bool = True) -> float:
    """A real number in (low, high] (or [low, high] with ``low_open=False``)."""
    from .._validate import check_real

    return check_real(name, value, low=low, high=high, low_open=low_open)


@runtime_checkable
class MarginMethod(Protocol):
    """What every margin methodology provides."""

    @property
    def name(self) -> str:  # pragma: no cover - protocol
        """Short label used in tables and plots."""
        ...

    def compute(self, book: Any, market: Any, *, scenarios: Any = None) -> MarginResult:
        """Initial and maintenance margin of every account of ``book``."""
        ...  # pragma: no cover - protocol


@dataclass(frozen=True, eq=False, repr=False)
class MarginResult:
    """Margin of every account under one methodology.

    Attributes
    ----------
    method : str
        The methodology's name.
    account_ids : ndarray of str, shape (n_accounts,)
    im, mm : ndarray, shape (n_accounts,)
        Initial and maintenance margin, USD, ``im >= mm >= 0``.
    margin_balance : ndarray, shape (n_accounts,)
        Haircut collateral plus unrealised P&L, USD.
    driver : ndarray of str, shape (n_accounts,)
        What set the IM: the worst scenario's label, the bracket, ``"ES 99%"`` ...
    allocation : pandas.DataFrame
        One row per holding: ``account_id``, ``holding``, ``im_contribution`` (summing to the
        account's IM where the method allocates; NaN where it does not).
    details : dict of ndarray
        Method-specific per-account numbers (e.g. ``var``, ``es``, ``es_se``, ``es_lo``,
        ``es_hi``); each of shape (n_accounts,).
    gross_notional : ndarray, shape (n_accounts,)
        Sum of ``|notional|`` of the account's positions at today's prices (for margin /
        notional comparisons).
    """

    method: str
    account_ids: np.ndarray
    im: np.ndarray
    mm: np.ndarray
    margin_balance: np.ndarray
    driver: np.ndarray
    allocation: pd.DataFrame
    details: dict[str, np.ndarray] = field(default_factory=dict)
    gross_notional: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.account_ids)
        for name in ("im", "mm", "margin_balance", "driver"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
        for k, v in self.details.items():
            if np.asarray(v).shape != (n,):
                raise ValueError(f"details[{k!r}] must have shape ({n},)")

    @property
    def excess(self) -> np.ndarray:
        """Margin balance minus IM (negative: deficit)."""
        return self.margin_balance - self.im

    @property
    def margin_ratio(self) -> np.ndarray:
        """MM / margin balance (inf where the balance is <= 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.margin_balance > 0, self.mm / self.margin_balance, np.inf)

    def to_frame(self) -> pd.DataFrame:
        """One row per account."""
        cols = {"account_id": self.account_ids, "method": self.method, "im": self.im,
                "mm": self.mm, "margin_balance": self.margin_balance, "excess": self.excess,
                "margin_ratio": self.margin_ratio, "driver": self.driver}
        if self.gross_notional is not None:
            cols["gross_notional"] = self.gross_notional
        for k, v in self.details.items():
            cols[k] = v
        return pd.DataFrame(cols)

    # ------------------------------------------------------------------ reading
    def __repr__(self) -> str:
        from .._summary import short_repr

        return short_repr(self, method=self.method, accounts=len(self.account_ids),
                          total_im=float(np.sum(self.im)), total_mm=float(np.sum(self.mm)),
                          in_deficit=int(np.sum(self.excess < 0)))

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def summary(self, top: int = 5) -> Any:
        """What a reader needs: totals, the distribution of IM, the largest accounts and
        what drives them, and the accounts in trouble.

        Parameters
        ----------
        top : int, default 5
            Largest accounts (by IM) listed.

        Returns
        -------
        Summary
            Facts: method, accounts, total IM / MM / margin balance (USD), IM over gross
            notional, accounts in deficit (``excess < 0``) and at or past maintenance
            (``margin_ratio >= 1``), and the Monte Carlo standard error of the total when the
            method reports ``es_se``. Tables: ``as_frame()`` is the IM distribution
            (quantiles, USD); then the ``top`` accounts with their driver, and the most
            frequent drivers. Notes: deficits and liquidations.
        """
        from .._summary import Summary

        im, mm, mb = (np.asarray(x, dtype=float) for x in (self.im, self.mm,
                                                           self.margin_balance))
        n = im.size
        info: list[tuple[str, Any]] = [("Method", self.method), ("Accounts", n),
                                       ("Total IM (USD)", float(im.sum())),
                                       ("Total MM (USD)", float(mm.sum())),
                                       ("Margin balance (USD)", float(mb.sum()))]
        if self.gross_notional is not None:
            gn = float(np.sum(self.gross_notional))
            info.append(("IM / gross notional", float(im.sum()) / gn if gn > 0 else np.nan))
        deficit = int(np.sum(self.excess < 0))
        liq = int(np.sum(self.margin_ratio >= 1.0))
        info += [("Accounts in deficit", deficit), ("At/past maintenance", liq)]
        se = self.details.get("es_se")
        if se is not None:
            # sum of per-account errors: an upper bound on the total's standard error
            info.append(("MC s.e. of total (<=)", float(np.nansum(se))))
        qs = (0.0, 0.5, 0.9, 0.99, 1.0)
        dist = pd.DataFrame({"IM (USD)": np.quantile(im, qs) if n else np.full(5, np.nan),
                             "MM (USD)": np.quantile(mm, qs) if n else np.full(5, np.nan)},
                            index=pd.Index(["min", "median", "90%", "99%", "max"],
                                           name="quantile over accounts"))
        order = np.argsort(-im, kind="stable")[:max(int(top), 0)]
        big = pd.DataFrame({"account_id": np.asarray(self.account_ids)[order],
                            "IM (USD)": im[order], "MM (USD)": mm[order],
                            "excess (USD)": self.excess[order],
                            "driver": np.asarray(self.driver, dtype=object)[order]})
        if se is not None:
            big.insert(3, "IM s.e. (USD)", np.asarray(se, dtype=float)[order])
        drivers = (pd.Series(np.asarray(self.driver, dtype=object)).value_counts().head(5)
                   .rename("accounts").rename_axis("driver").to_frame())
        notes = []
        if deficit:
            notes.append(f"{deficit:,} account(s) in deficit: margin balance below IM")
        if liq:
            notes.append(f"{liq:,} account(s) at or past maintenance (MM / balance >= 1): "
                         "liquidatable")
        return Summary(f"Margin: {self.method}", info,
                       {"Initial and maintenance margin over accounts": dist,
                        f"Largest {len(order)} accounts by IM": big,
                        "Most frequent drivers": drivers}, notes)
