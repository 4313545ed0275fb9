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


@dataclass(frozen=True, eq=False)
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
