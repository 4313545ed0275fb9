"""Vega's linearised margin calculator (specification 0019-MCAL, without order-book slippage).

``MM = sum_j |q_j| x rf x |value_j|`` per account, ``rf`` the long risk factor for a long
position and the short one for a short position, ``value_j`` the product value of one unit
at today's mark (``multiplier x S`` for linear contracts, spot and options' underlying
exposure; ``face`` for inverse contracts); ``IM = initial_factor x MM`` (Vega's margin
scaling levels: search ``search_factor x MM``, release ``release_factor x MM``, in
``details``). Vega's open-order rule (riskiest long / short) is
:class:`marginlab.models.orders.WithOrders`; its slippage on the open position (exit price
from the order book) is :class:`marginlab.models.margin.liquidity.LiquidityAddOn` with
``depth``. Composed, ``LiquidityAddOn(WithOrders(VegaLinearMargin(...), orders), depth=...)``
reproduces the specification's worked example.

SOURCES: vegaprotocol/specs, ``protocol/0019-MCAL-margin_calculator.md`` (steps 1-4,
example 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validate import check_real
from ..book import INVERSE_TYPES, Book
from ..portfolio import account_equity, gross_notional
from ..scenarios import MarketState
from .base import MarginResult

__all__ = ["VegaLinearMargin"]


@dataclass(frozen=True, eq=False)
class VegaLinearMargin:
    """Vega's linearised maintenance margin with scaling levels.

    Parameters
    ----------
    risk_factor_long, risk_factor_short : float
        Risk factors (fraction of the product value), in [0, 10].
    search_factor, initial_factor, release_factor : float, default 1.1, 1.2, 1.3
        Scaling of MM into the search level, IM and release level, each >= 1.
    name : str, default "Vega-linear"
    """

    risk_factor_long: float
    risk_factor_short: float
    search_factor: float = 1.1
    initial_factor: float = 1.2
    release_factor: float = 1.3
    name: str = "Vega-linear"

    def __post_init__(self) -> None:
        sets = object.__setattr__
        for n in ("risk_factor_long", "risk_factor_short"):
            sets(self, n, check_real(n, getattr(self, n), low=0.0, high=10.0))
        for n in ("search_factor", "initial_factor", "release_factor"):
            sets(self, n, check_real(n, getattr(self, n), low=1.0, high=100.0))
        if not isinstance(self.name, str) or not self.name.strip():
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")

    def compute(self, book: Book, market: MarketState, *,
                scenarios: Any = None) -> MarginResult:
        """Vega-linear IM and MM of every account (``scenarios`` is ignored)."""
        inst = book.instruments
        s = market.prices(tuple(inst["underlying"])) if len(inst) else np.zeros(0)
        mult = inst["multiplier"].to_numpy(float)
        face = inst["face_value"].to_numpy(float)
        value = np.where(np.isin(inst["type"].to_numpy(str), INVERSE_TYPES), face, mult * s)
        H = book.holdings.tocoo()
        q = H.data
        rf = np.where(q > 0, self.risk_factor_long, self.risk_factor_short)
        own = np.abs(q) * rf * np.abs(value[H.col])
        mm = np.bincount(H.row, weights=own, minlength=book.n_accounts)
        im = self.initial_factor * mm
        allocation = pd.DataFrame({"account_id": book.account_ids[H.row],
                                   "holding": inst["instrument_id"].to_numpy(str)[H.col],
                                   "im_contribution": self.initial_factor * own})
        eq = account_equity(book, market)["margin_balance"].to_numpy()
        driver = np.where(mm > 0, "risk factors x value", "none").astype(object)
        details = {"search_level": self.search_factor * mm,
                   "release_level": self.release_factor * mm}
        return MarginResult(self.name, book.account_ids, im, mm, eq, driver, allocation,
                            details, gross_notional(book, market))
