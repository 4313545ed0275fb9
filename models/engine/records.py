"""Records and helpers of the live margin engine (:mod:`marginlab.models.engine`).

* :class:`RemarginPolicy`: when a market update does a full re-margin.
* :class:`MarginEvent`, :class:`MarketUpdate`: what a change raised.
* :class:`WhatIf`: margin before and after what-if trades.
* mark helpers: the mark coefficients of position rows (unrealised P&L ``a V + b S + c``) and
  a numpy Black-Scholes value for the per-tick re-mark of a few options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .._validate import check_real
from ..book import INVERSE_TYPES

__all__ = ["MarginEvent", "MarketUpdate", "RemarginPolicy", "WhatIf"]

OK, CALL, LIQUIDATION = 0, 1, 2
_STATUS = ("ok", "margin_call", "liquidation")


# ============================================================================ small records
@dataclass(frozen=True)
class RemarginPolicy:
    """When :meth:`MarginEngine.update_market` does a full re-margin instead of the linear
    re-mark.

    Parameters
    ----------
    every_ticks : int, optional
        Full re-margin every ``every_ticks`` market updates (1: every tick).
    every_seconds : float, optional
        Full re-margin when at least this many seconds of market time (the ``time`` passed to
        ``update_market``) have passed since the last one.
    price_move : float, optional
        Full re-margin when any underlying's price has moved by more than this fraction
        (e.g. 0.05) since the last one.
    ratio_band : float, optional
        Accounts whose (re-marked) margin ratio ``MM / balance`` reaches this band (e.g. 0.8)
        are re-margined exactly on their own, on scenarios rebuilt at the current market.
    """

    every_ticks: int | None = None
    every_seconds: float | None = None
    price_move: float | None = None
    ratio_band: float | None = None

    def __post_init__(self) -> None:
        if self.every_ticks is not None and (not isinstance(self.every_ticks, int | np.integer)
                                             or self.every_ticks < 1):
            raise ValueError(f"every_ticks must be an int >= 1 or None, got {self.every_ticks!r}")
        if self.every_seconds is not None:
            check_real("every_seconds", self.every_seconds, low=0.0, low_open=True)
        if self.price_move is not None:
            check_real("price_move", self.price_move, low=0.0)
        if self.ratio_band is not None:
            check_real("ratio_band", self.ratio_band, low=0.0, low_open=True)


@dataclass(frozen=True)
class MarginEvent:
    """An account crossed a margin threshold.

    ``kind`` is ``margin_call`` (balance < IM), ``liquidation`` (MM / balance >= 1 or balance
    <= 0) or ``restored`` (back above IM); amounts in USD at the moment of the event."""

    tick: int
    time: Any
    account_id: str
    kind: str
    margin_balance: float
    im: float
    mm: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly except ``time``)."""
        return {"tick": self.tick, "time": self.time, "account_id": self.account_id,
                "kind": self.kind, "margin_balance": self.margin_balance, "im": self.im,
                "mm": self.mm}


@dataclass(frozen=True)
class MarketUpdate:
    """What one :meth:`MarginEngine.update_market` did: ``full`` re-margin or linear re-mark,
    how many accounts were re-margined exactly, and the events it raised."""

    tick: int
    time: Any
    full: bool
    n_exact: int
    events: tuple[MarginEvent, ...]


@dataclass(frozen=True, eq=False)
class WhatIf:
    """Margin of one account before and after what-if trades (nothing applied).

    ``before`` and ``after`` map ``im``, ``mm``, ``var``, ``var_lo``, ``var_hi``, ``var_se``,
    ``es``, ``es_se``, ``es_lo``, ``es_hi``, ``margin_balance`` and ``excess`` to USD numbers;
    both are computed on the engine's current scenario set, so their difference carries no
    independent Monte Carlo noise. ``contributions`` has one row per trade: instrument,
    quantity and its Euler contribution to the after-trade VaR and ES.
    """

    account_id: str
    level: float
    measure: str
    before: dict[str, float]
    after: dict[str, float]
    trades: tuple[tuple[str, float, float], ...]
    var_contribution: np.ndarray
    es_contribution: np.ndarray

    @property
    def change(self) -> float:
        """IM after minus IM before, USD."""
        return self.after["im"] - self.before["im"]

    def contributions(self) -> pd.DataFrame:
        """One row per trade: ``instrument_id``, ``quantity``, ``price``, VaR / ES contribution."""
        return pd.DataFrame({"instrument_id": [t[0] for t in self.trades],
                             "quantity": [t[1] for t in self.trades],
                             "price": [t[2] for t in self.trades],
                             "var_contribution": self.var_contribution,
                             "es_contribution": self.es_contribution})

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {"account_id": self.account_id, "level": self.level, "measure": self.measure,
                "before": dict(self.before), "after": dict(self.after),
                "im_change": self.change,
                "contributions": [
                    {"instrument_id": t[0], "quantity": t[1], "price": t[2],
                     "var_contribution": float(v), "es_contribution": float(e)}
                    for t, v, e in zip(self.trades, self.var_contribution,
                                       self.es_contribution, strict=True)]}

    def __repr__(self) -> str:
        return (f"WhatIf({self.account_id!r}: IM {self.before['im']:,.2f} -> "
                f"{self.after['im']:,.2f} USD, {len(self.trades)} trade(s))")


# ============================================================================ helpers
def _coefficients(types: np.ndarray, mult: np.ndarray, face: np.ndarray, q: np.ndarray,
                  entry: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mark coefficients of position rows: unrealised P&L = a V + b S + c (USD) with V the
    unit value of the instrument (option price) and S the spot (as in ``account_equity``)."""
    inv = np.isin(types, INVERSE_TYPES)
    opt = types == "option"
    iopt = types == "inverse_option"
    lin = ~(inv | opt | iopt)
    a = np.where(opt | iopt, q * mult, 0.0)
    b = np.select([lin, inv, iopt], [q * mult, q * face / entry, -q * mult * entry], 0.0)
    c = np.select([lin, inv, opt], [-q * mult * entry, -q * face, -q * mult * entry], 0.0)
    return a, b, c


def _bs_value(s: np.ndarray, k: np.ndarray, t: np.ndarray, sigma: np.ndarray, r: float,
              is_call: np.ndarray) -> np.ndarray:
    """Black-Scholes value (USD per unit, zero yield) of a few hundred options per tick, in
    numpy (the parallel pricing kernel's thread wake-up costs more than the work); the same
    formula as ``black_scholes_price`` (intrinsic value at zero time or vol)."""
    live = (t > 0) & (sigma > 0)
    sq = sigma * np.sqrt(np.where(live, t, 1.0))
    sq = np.where(live, sq, 1.0)
    d1 = (np.log(s / k) + (r + 0.5 * sigma * sigma) * t) / sq
    d2 = d1 - sq
    df = np.exp(-r * t)
    call = s * ndtr(d1) - k * df * ndtr(d2)
    put = k * df * ndtr(-d2) - s * ndtr(-d1)
    intrinsic = np.where(is_call, np.maximum(s - k * df, 0.0), np.maximum(k * df - s, 0.0))
    return np.where(live, np.where(is_call, call, put), intrinsic)


def _time_seconds(t: Any) -> float | None:
    if t is None:
        return None
    if isinstance(t, int | float | np.integer | np.floating):
        return float(t)
    return pd.Timestamp(t).value / 1e9


def _finite(name: str, x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v
