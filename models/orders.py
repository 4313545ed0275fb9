"""Open orders: a book's resting orders, and margin that charges the riskier side filling.

An orders table has one row per resting order: ``account_id``, ``instrument_id`` (defined in
the book's instruments table), ``side`` (``buy`` or ``sell``, any case), ``quantity``
(> 0, units as in the positions table) and ``price`` (> 0, the limit price, USD per unit as
``entry_price``). It is validated like the positions table: errors are :class:`BookError`
naming the file (or table), the line (or row) and the column.

:class:`WithOrders` makes any :class:`~marginlab.models.margin.base.MarginMethod` charge for
open orders as Vega's margin calculator (specification 0019-MCAL) does: the margin is that of
the riskier of "all buy orders fill" and "all sell orders fill". Vega's riskiest long is
``max(open_volume + buy_orders, 0)`` and riskiest short ``min(open_volume + sell_orders, 0)``;
it takes the larger of their margins. Here, per account, the wrapped method is applied to the
book with every buy order filled at its limit price and to the book with every sell order
filled, and the side with the larger IM sets IM, MM, driver and allocation (ties go to the
buy side). An account without orders gets exactly the wrapped method's numbers (both filled
books equal the book). Filling at the limit price is how a fill would book its entry price;
the margin balance reported is the book's (orders not yet filled).

Units: USD; quantities in the instrument's units.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .book import Book, _normalise_orders, _source
from .book import read_table as _read_table
from .margin.base import MarginMethod, MarginResult

__all__ = ["ORDER_SIDES", "Orders", "WithOrders", "fill_orders"]

ORDER_SIDES = ("buy", "sell")


@dataclass(frozen=True, eq=False)
class Orders:
    """A validated orders table (columns ``account_id``, ``instrument_id``, ``side``,
    ``quantity``, ``price``); build with :meth:`from_frame` or :meth:`from_file`."""

    table: pd.DataFrame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, book: Book, *, name: str | None = None,
                   file: bool = False) -> Orders:
        """Validate ``frame`` against ``book``'s instruments.

        Raises
        ------
        BookError
            Naming the source (``name``, default "orders"), row or line, and column.
        """
        src = _source(name, "orders", file)
        if not isinstance(book, Book):
            raise TypeError(f"book must be a Book, got {type(book).__name__}")
        return cls(_normalise_orders(frame, src, book.instruments))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], book: Book) -> Orders:
        """Read a CSV or Parquet orders file (errors cite its lines)."""
        return cls.from_frame(_read_table(path), book, name=str(path), file=True)

    def __len__(self) -> int:
        return len(self.table)

    def signed(self) -> np.ndarray:
        """Signed quantities: + buy, - sell."""
        return np.where(self.table["side"].to_numpy() == "buy", 1.0, -1.0) * self.table[
            "quantity"].to_numpy(float)


def fill_orders(book: Book, orders: Orders, side: str | None) -> Book:
    """``book`` with the ``side`` ("buy", "sell") orders filled at their limit prices.

    ``side=None`` fills nothing but, like the filled books, lists every account with orders
    (a zero position on each ordered instrument), so the three books share ``account_ids``.
    """
    if side not in (None, *ORDER_SIDES):
        raise ValueError(f"side must be 'buy', 'sell' or None, got {side!r}")
    t = orders.table
    zero = pd.DataFrame({"account_id": t["account_id"], "instrument_id": t["instrument_id"],
                         "quantity": 0.0, "entry_price": t["price"]})
    parts = [book.positions, zero]
    if side is not None:
        f = t[t["side"] == side]
        sign = 1.0 if side == "buy" else -1.0
        parts.append(pd.DataFrame({"account_id": f["account_id"],
                                   "instrument_id": f["instrument_id"],
                                   "quantity": sign * f["quantity"].to_numpy(float),
                                   "entry_price": f["price"]}))
    pos = pd.concat(parts, ignore_index=True)
    return Book(book.instruments, pos, book.collateral)


@dataclass(frozen=True, eq=False)
class WithOrders:
    """Any margin method, charged for open orders (riskier of all buys / all sells filling).

    Parameters
    ----------
    method : MarginMethod
        The wrapped method.
    orders : Orders, optional
        The resting orders; default: the orders table of the book passed to
        :meth:`compute` (``Book.orders``; none: the wrapped method's margin).
    name : str, optional
        Default: the wrapped method's name.

    Notes
    -----
    ``IM_a = max(IM_a(book + buys), IM_a(book + sells))`` per account ``a`` (Vega 0019-MCAL
    steps 1-3: riskiest long and riskiest short, the larger margin); MM, driver (prefixed
    ``"buys fill: "`` / ``"sells fill: "`` where orders changed the book) and allocation come
    from the same side. ``details`` gain ``im_buys`` and ``im_sells``.
    """

    method: Any
    orders: Orders | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.method, MarginMethod):
            raise TypeError(f"method must be a MarginMethod, got {type(self.method).__name__}")
        if self.orders is not None and not isinstance(self.orders, Orders):
            raise TypeError(f"orders must be an Orders table, got {type(self.orders).__name__}")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {self.name!r}")
        if not self.name.strip():
            object.__setattr__(self, "name", self.method.name)

    def compute(self, book: Book, market: Any, *, scenarios: Any = None) -> MarginResult:
        """Margin of every account of ``book`` (and of every account with orders)."""
        orders = self.orders
        if orders is None:
            if book.orders is None or len(book.orders) == 0:
                # no orders here: the wrapped method's numbers, in the same columns as a
                # book with orders (a batch block without orders looks like the others)
                r = self.method.compute(book, market, scenarios=scenarios)
                details = {**r.details, "im_buys": r.im, "im_sells": r.im}
                return MarginResult(self.name, r.account_ids, r.im, r.mm, r.margin_balance,
                                    r.driver, r.allocation, details, r.gross_notional)
            orders = Orders(book.orders)
        base = fill_orders(book, orders, None)
        buys = self.method.compute(fill_orders(book, orders, "buy"), market,
                                   scenarios=scenarios)
        sells = self.method.compute(fill_orders(book, orders, "sell"), market,
                                    scenarios=scenarios)
        ids = base.account_ids
        for r in (buys, sells):
            if not np.array_equal(r.account_ids, ids):
                raise ValueError("the wrapped method returned accounts other than the book's")
        take_sell = sells.im > buys.im
        has = pd.Index(ids).isin(orders.table["account_id"])
        im = np.where(take_sell, sells.im, buys.im)
        mm = np.where(take_sell, sells.mm, buys.mm)
        side = np.where(take_sell, "sells fill: ", "buys fill: ").astype(object)
        drv_raw = np.where(take_sell, sells.driver, buys.driver).astype(object)
        driver = np.where(has & (im > 0.0), side + drv_raw.astype(str), drv_raw).astype(object)
        sell_ids = set(ids[take_sell])
        ab, as_ = buys.allocation, sells.allocation
        allocation = pd.concat([ab[~ab["account_id"].isin(sell_ids)],
                                as_[as_["account_id"].isin(sell_ids)]], ignore_index=True)
        details = {k: np.where(take_sell, sells.details[k], v)
                   for k, v in buys.details.items() if k in sells.details}
        details["im_buys"] = buys.im
        details["im_sells"] = sells.im
        from .portfolio import account_equity, gross_notional

        eq = account_equity(base, market)["margin_balance"].to_numpy()
        return MarginResult(self.name, ids, im, mm, eq, driver, allocation, details,
                            gross_notional(base, market))
