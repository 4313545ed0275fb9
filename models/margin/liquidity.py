r"""Liquidity and concentration add-on for any margin method.

:class:`LiquidityAddOn` wraps a :class:`~marginlab.models.margin.base.MarginMethod` and adds,
per account, a charge for the cost of closing positions that are large relative to the
market, reported as its own column (``details["liquidity_addon"]``, beside
``details["base_im"]`` and ``details["base_mm"]``) and allocated to the holdings that cause
it (rows of the allocation, added to the base method's contributions).

Two documented forms, per instrument ``j`` held by an account, with net quantity ``q_j``:

**Square-root of size over volume** (``adv``; Coinbase International's form). With
``x_j = |q_j| m_j`` the position in units of the underlying (``|q_j| F_j / S`` for inverse
contracts of face ``F_j``), ``ADV_j`` the average daily volume in the same units and ``N_j``
the position's absolute notional (USD),

.. math::  A_j = N_j \max\left(k_j \sqrt{x_j / ADV_j} - b_j,\ 0\right)

with ``k_j`` the risk parameter and ``b_j`` the threshold (default 0). Coinbase
International sets initial margin to ``max(BIM, RP x sqrt(CoH))`` with the close-out horizon
``CoH`` the position as a fraction of the 30-day average daily trading volume; with a base
method charging ``BIM`` on the notional, ``threshold = BIM`` adds exactly the excess.
Positive homogeneity fails on purpose: doubling a position multiplies its add-on by
``2^1.5`` (``b = 0``).

**Order-book exit cost** (``depth``; Vega 0019-MCAL's slippage). A long position is exited
by selling into the bids, a short one by buying the asks: ``A_j = |q_j| m_j x
max(side x (S - P_exit), 0)`` with ``P_exit`` the volume-weighted price of the first
``|q_j| m_j`` units of the book side (of all of it when the book is thinner; the mark, so no
charge, when that side is empty), ``side`` +1 long, -1 short.

``IM = base IM + im_factor x A``, ``MM = base MM + mm_factor x A`` (defaults 1 and 1; Vega
scales its maintenance margin, slippage included, by the initial factor: ``im_factor =
initial_factor``, ``mm_factor = 1``). Instruments absent from ``adv`` / ``depth`` get no
add-on. Exact zeros stay exact.

SOURCES: Coinbase International Exchange, "Leverage and Margin Trading Policy" (defined terms:
ADTV, Close out Horizon, ``IM = max(BIM, RP x sqrt(CoH))``, ``MM = 2/3 IM``); vegaprotocol
specs ``0019-MCAL-margin_calculator.md`` (exit price, slippage per unit, example 1).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .._validate import check_real
from ..book import INVERSE_TYPES, Book
from ..scenarios import MarketState
from .base import MarginMethod, MarginResult

__all__ = ["LiquidityAddOn", "exit_price"]


def exit_price(levels: Sequence[tuple[float, float]], size: float, mark: float) -> float:
    """Volume-weighted price of the first ``size`` units of a book side.

    ``levels`` are ``(price, volume)`` in the order they are consumed (best first); thinner
    than ``size``: the VWAP of all of it; empty (or ``size`` 0): ``mark``.
    """
    got, cost = 0.0, 0.0
    for price, vol in levels:
        take = min(float(vol), size - got)
        if take <= 0.0:
            break
        got += take
        cost += take * float(price)
    return cost / got if got > 0.0 else float(mark)


def _per_instrument(name: str, value: Any, *, low: float, low_open: bool = False,
                    high: float | None = None) -> Mapping[str, float] | float:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k.strip():
                raise TypeError(f"{name} keys must be instrument ids (str), got {k!r}")
            out[k.strip()] = check_real(f"{name}[{k!r}]", v, low=low, low_open=low_open,
                                        high=high)
        return MappingProxyType(out)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or a mapping of instrument id -> number, "
                        f"got {type(value).__name__} {value!r}")
    return check_real(name, value, low=low, low_open=low_open, high=high)


def _get(value: Mapping[str, float] | float, key: str, default: float) -> float:
    if isinstance(value, Mapping):
        return float(value.get(key, default))
    return float(value)


@dataclass(frozen=True, eq=False)
class LiquidityAddOn:
    """A margin method plus a liquidity / concentration add-on (see the module notes).

    Parameters
    ----------
    method : MarginMethod
        The base method.
    adv : mapping of str to float, optional
        Average daily volume per instrument id, units of the underlying per day, > 0.
    risk_parameter : float or mapping of str to float, default 0.0
        ``k`` per instrument (or one for all), in [0, 10]; used with ``adv``.
    threshold : float or mapping of str to float, default 0.0
        ``b`` per instrument (or one for all), in [0, 10].
    depth : mapping of str to mapping, optional
        Order book per instrument id: ``{"bids": [(price, volume), ...], "asks": [...]}``,
        best level first, prices > 0, volumes >= 0 (units of the underlying).
    im_factor, mm_factor : float, default 1.0
        Multiples of the add-on added to IM and MM, in [0, 100], ``im_factor >= mm_factor``.
    name : str, optional
        Default ``"<base name> + liquidity"``.
    """

    method: Any
    adv: Mapping[str, float] = field(default_factory=dict)
    risk_parameter: Any = 0.0
    threshold: Any = 0.0
    depth: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]] = field(
        default_factory=dict)
    im_factor: float = 1.0
    mm_factor: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        if not isinstance(self.method, MarginMethod):
            raise TypeError(f"method must be a MarginMethod, got {type(self.method).__name__}")
        if not isinstance(self.adv, Mapping):
            raise TypeError(f"adv must be a mapping of instrument id -> volume, got "
                            f"{self.adv!r}")
        sets(self, "adv", _per_instrument("adv", self.adv, low=0.0, low_open=True))
        sets(self, "risk_parameter", _per_instrument("risk_parameter", self.risk_parameter,
                                                     low=0.0, high=10.0))
        sets(self, "threshold", _per_instrument("threshold", self.threshold, low=0.0,
                                                high=10.0))
        if not isinstance(self.depth, Mapping):
            raise TypeError(f"depth must be a mapping of instrument id -> order book, got "
                            f"{self.depth!r}")
        books = {}
        for k, side_map in self.depth.items():
            if not isinstance(side_map, Mapping) or set(side_map) - {"bids", "asks"}:
                raise ValueError(f"depth[{k!r}] must be a mapping with keys 'bids' and/or "
                                 f"'asks', got {side_map!r}")
            clean = {}
            for side in ("bids", "asks"):
                levels = []
                for i, lvl in enumerate(side_map.get(side, ())):
                    if not isinstance(lvl, (tuple, list)) or len(lvl) != 2:
                        raise ValueError(f"depth[{k!r}][{side!r}][{i}] must be (price, volume),"
                                         f" got {lvl!r}")
                    p = check_real(f"depth[{k!r}][{side!r}][{i}] price", lvl[0], low=0.0,
                                   low_open=True)
                    v = check_real(f"depth[{k!r}][{side!r}][{i}] volume", lvl[1], low=0.0)
                    levels.append((p, v))
                clean[side] = tuple(levels)
            books[str(k)] = MappingProxyType(clean)
        sets(self, "depth", MappingProxyType(books))
        imf = check_real("im_factor", self.im_factor, low=0.0, high=100.0)
        mmf = check_real("mm_factor", self.mm_factor, low=0.0, high=100.0)
        if mmf > imf:
            raise ValueError(f"mm_factor must be <= im_factor (IM >= MM), got {mmf:g} > "
                             f"{imf:g}")
        sets(self, "im_factor", imf)
        sets(self, "mm_factor", mmf)
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {self.name!r}")
        if not self.name.strip():
            sets(self, "name", f"{self.method.name} + liquidity")

    def addon(self, book: Book, market: MarketState) -> pd.DataFrame:
        """The add-on of every non-zero holding: ``account_id``, ``holding``, ``units``,
        ``notional`` (USD), ``addon`` (USD), ``form`` ("adv", "depth" or "")."""
        inst = book.instruments
        H = book.holdings.tocoo()
        keep = H.data != 0.0
        rows, cols, q = H.row[keep], H.col[keep], H.data[keep]
        ids = inst["instrument_id"].to_numpy(str)[cols]
        und = inst["underlying"].to_numpy(str)[cols]
        s = market.prices(tuple(und)) if len(und) else np.zeros(0)
        mult = inst["multiplier"].to_numpy(float)[cols]
        face = inst["face_value"].to_numpy(float)[cols]
        inverse = np.isin(inst["type"].to_numpy(str)[cols], INVERSE_TYPES)
        units = np.where(inverse, np.abs(q) * np.nan_to_num(face) / s,
                         np.abs(q) * np.nan_to_num(mult))
        notional = units * s
        add = np.zeros(len(q))
        form = np.full(len(q), "", dtype=object)
        for n in range(len(q)):
            key = ids[n]
            if key in self.adv:
                k = _get(self.risk_parameter, key, 0.0)
                b = _get(self.threshold, key, 0.0)
                rate = max(k * np.sqrt(units[n] / self.adv[key]) - b, 0.0)
                add[n] += notional[n] * rate
                form[n] = "adv"
            if key in self.depth:
                side = self.depth[key]["bids" if q[n] > 0 else "asks"]
                px = exit_price(side, units[n], s[n])
                slip = (s[n] - px) if q[n] > 0 else (px - s[n])
                add[n] += units[n] * max(slip, 0.0)
                form[n] = "depth" if not form[n] else "adv+depth"
        return pd.DataFrame({"account_id": book.account_ids[rows], "holding": ids,
                             "units": units, "notional": notional, "addon": add,
                             "form": form})

    def compute(self, book: Book, market: MarketState, *,
                scenarios: Any = None) -> MarginResult:
        """Base margin plus the add-on, per account."""
        base = self.method.compute(book, market, scenarios=scenarios)
        per = self.addon(book, market)
        idx = pd.Index(base.account_ids).get_indexer(per["account_id"])
        if (idx < 0).any():
            raise ValueError("the wrapped method returned fewer accounts than the book holds")
        add = np.bincount(idx, weights=per["addon"].to_numpy(), minlength=len(base.im))
        im = base.im + self.im_factor * add
        mm = base.mm + self.mm_factor * add
        alloc = base.allocation.copy()
        extra = per.loc[per["addon"] > 0.0, ["account_id", "holding", "addon"]]
        if len(extra):
            key = ["account_id", "holding"]
            merged = alloc.merge(extra, on=key, how="outer", indicator=True)
            extra_im = self.im_factor * merged["addon"].fillna(0.0)
            new_row = (merged["_merge"] == "right_only").to_numpy()
            # rows the base allocates get the add-on on top (NaN, not allocated, stays NaN)
            merged["im_contribution"] = np.where(new_row, extra_im,
                                                 merged["im_contribution"] + extra_im)
            alloc = merged.drop(columns=["addon", "_merge"])
        driver = np.where((add > 0.0) & (self.im_factor * add > base.im),
                          "liquidity add-on", base.driver).astype(object)
        details = dict(base.details)
        details.update(base_im=base.im, base_mm=base.mm, liquidity_addon=add)
        return MarginResult(self.name, base.account_ids, im, mm, base.margin_balance, driver,
                            alloc, details, base.gross_notional)
