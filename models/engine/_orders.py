"""Open orders in the live margin engine: place, cancel, and the riskier side filling.

The engine charges resting orders as the batch
:class:`~marginlab.models.orders.WithOrders` does (Vega 0019-MCAL): an account with orders
is margined on the book with all its buy orders filled at their limit prices and on the book
with all its sell orders filled, and the side with the larger IM sets IM, MM, the risk
numbers and the allocation (ties go to the buy side); its margin balance is the book's
(orders not filled). An account without orders gets the method's own numbers.

Storage: every (account, instrument) with an order is a holding of the account's CSR row
(quantity 0 if it holds no position, as ``fill_orders(book, orders, None)`` lists it), and
two arrays aligned with the holdings carry the summed fills, ``_fb`` (buys, >= 0) and ``_fs``
(sells, <= 0); the side books are then ``_qty + _fb`` and ``_qty + _fs``. With a scenario
method the two sides are two virtual accounts of one ``account_risk`` call; with any other
method the account is recomputed by ``WithOrders(method)`` on its own sub-book.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate._engine_kernels import account_pnl_into

from ..orders import ORDER_SIDES
from .records import MarginEvent, _finite

__all__ = ["OrdersMixin"]

_ORDER_COLUMNS = ["order_id", "account_id", "instrument_id", "side", "quantity", "price"]


class OrdersMixin:
    """Order book of a :class:`~marginlab.models.engine.MarginEngine` (mixed into it)."""

    # ------------------------------------------------------------------ state
    def _init_orders(self, table: pd.DataFrame | None) -> None:
        """Register the build-time orders (a normalised orders table, or None); the CSR
        already lists their (account, instrument) holdings."""
        nnz = self._rows.size
        self._fb = np.zeros(nnz)
        self._fs = np.zeros(nnz)
        self._n_ord = np.zeros(len(self._account_ids), np.int64)
        self._orders: dict[int, tuple[str, int, str, float, float]] = {}
        self._next_oid = 0
        if table is None or len(table) == 0:
            return
        for r in table.itertuples(index=False):
            self._register(str(r.account_id), self._inst_index[str(r.instrument_id)],
                           str(r.side), float(r.quantity), float(r.price))

    def _holding_pos(self, i: int, row: int) -> int:
        lo, hi = int(self._indptr[i]), int(self._indptr[i + 1])
        p = lo + int(np.searchsorted(self._rows[lo:hi], row))
        if p >= hi or self._rows[p] != row:  # pragma: no cover - the caller splices first
            raise AssertionError("order holding missing")
        return p

    def _register(self, acc: str, row: int, side: str, qty: float, price: float) -> int:
        i = self._acc_index[acc]
        p = self._holding_pos(i, row)
        if side == "buy":
            self._fb[p] += qty
        else:
            self._fs[p] -= qty
        oid = self._next_oid
        self._next_oid += 1
        self._orders[oid] = (acc, row, side, qty, price)
        self._n_ord[i] += 1
        return oid

    def _orders_table(self, accounts: set[str] | None = None) -> pd.DataFrame | None:
        """The resting orders as a normalised orders table (placement order), or None."""
        recs = [o for o in self._orders.values() if accounts is None or o[0] in accounts]
        if not recs:
            return None
        return pd.DataFrame({"account_id": [o[0] for o in recs],
                             "instrument_id": [str(self._inst_ids[o[1]]) for o in recs],
                             "side": [o[2] for o in recs],
                             "quantity": [o[3] for o in recs],
                             "price": [o[4] for o in recs]})

    # ------------------------------------------------------------------ public
    @property
    def orders(self) -> pd.DataFrame:
        """The resting orders: ``order_id``, ``account_id``, ``instrument_id``, ``side``,
        ``quantity``, ``price`` (placement order)."""
        with self._lock:
            recs = [(oid, o[0], str(self._inst_ids[o[1]]), o[2], o[3], o[4])
                    for oid, o in self._orders.items()]
            return pd.DataFrame(recs, columns=_ORDER_COLUMNS)

    def place_order(self, account: Any, instrument_id: str, side: str, quantity: float,
                    price: float | None = None) -> tuple[int, tuple[MarginEvent, ...]]:
        """Rest a limit order; the account (created if new) is re-margined with it at once.

        Parameters
        ----------
        account : str
        instrument_id : str
            A listed instrument the engine can value.
        side : {"buy", "sell"}
            Any case.
        quantity : float
            > 0, units as in the positions table.
        price : float, optional
            Limit price (> 0, as ``entry_price``); default the current mark.

        Returns
        -------
        (order_id, events)
            The id to cancel it with, and the margin events raised.
        """
        s = str(side).strip().lower()
        if s not in ORDER_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        q = _finite("quantity", quantity)
        if q <= 0:
            raise ValueError(f"quantity must be > 0, got {quantity!r}")
        with self._lock:
            ((r, _, p),) = self._parse_trades([(instrument_id, q, price)])
            if p is None:
                p = self._mark_price(r)
            acc = str(account)
            with self._atomic([acc]):
                i = self._acc_index.get(acc)
                if i is None:
                    i = self._new_account(acc)
                z = np.zeros(1)
                self._splice(i, np.array([r], np.int64), z, z, z, z)  # the holding if missing
                oid = self._register(acc, r, s, q, float(p))
                return oid, self._reprice([i])

    def cancel_order(self, order_id: int) -> tuple[MarginEvent, ...]:
        """Cancel a resting order (KeyError for an unknown id); returns the events raised."""
        with self._lock:
            try:
                oid = int(order_id)
            except (TypeError, ValueError):
                raise KeyError(f"unknown order_id {order_id!r}") from None
            o = self._orders.get(oid)
            if o is None:
                raise KeyError(f"unknown order_id {order_id!r}")
            acc, row, side, qty, _ = o
            with self._atomic([acc]):
                i = self._acc_index[acc]
                p = self._holding_pos(i, row)
                del self._orders[oid]
                self._n_ord[i] -= 1
                # Re-sum the remaining fills of this holding in placement order (as the batch
                # sums the orders table), so cancelling leaves no rounding residue.
                fb = fs = 0.0
                for a, rr, sd, qq, _ in self._orders.values():
                    if a == acc and rr == row:
                        if sd == "buy":
                            fb += qq
                        else:
                            fs -= qq
                self._fb[p], self._fs[p] = fb, fs
                return self._reprice([i])

    def cancel_orders(self, account: Any) -> tuple[MarginEvent, ...]:
        """Cancel every resting order of ``account``; returns the events raised."""
        with self._lock:
            i = self._account(account)
            acc = self._account_ids[i]
            with self._atomic([acc]):
                for oid in [k for k, o in self._orders.items() if o[0] == acc]:
                    del self._orders[oid]
                lo, hi = self._indptr[i], self._indptr[i + 1]
                self._fb[lo:hi] = 0.0
                self._fs[lo:hi] = 0.0
                self._n_ord[i] = 0
                return self._reprice([i])

    # ------------------------------------------------------------------ scenario risk
    def _side_csr(self, acc: np.ndarray, extra: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """CSR of two virtual accounts per account of ``acc``: the buy side then the sell
        side (its holdings, plus ``extra`` = (rows, quantities) trade entries). Returns
        ``indptr, indices, qty`` and the holding positions of each account's entries."""
        ind, qs, ptr, sel = [], [], [0], []
        for i in acc:
            lo, hi = int(self._indptr[i]), int(self._indptr[i + 1])
            rows = self._rows[lo:hi]
            base = self._qty[lo:hi]
            for fill in (self._fb[lo:hi], self._fs[lo:hi]):
                r, q = rows, base + fill
                if extra is not None:
                    r = np.concatenate([rows, extra[0]])
                    q = np.concatenate([q, extra[1]])
                ind.append(r)
                qs.append(q)
                ptr.append(ptr[-1] + r.size)
            sel.append(np.arange(lo, hi))
        return (np.asarray(ptr, np.int64), np.concatenate(ind).astype(np.int64),
                np.concatenate(qs), np.concatenate(sel) if sel else np.zeros(0, np.int64))

    @staticmethod
    def _pick_side(r: dict[str, np.ndarray], measure: str) -> np.ndarray:
        """Per account (pairs of virtual accounts): True where the sell side sets the IM."""
        m = r[measure][0]
        return np.maximum(m[1::2], 0.0) > np.maximum(m[0::2], 0.0)

    def _risk_with_orders(self, acc: np.ndarray) -> None:
        """Exact risk of accounts with orders (scenario methods): the riskier side."""
        ptr, ind, q, _ = self._side_csr(acc)
        r = self._acc_risk(self._U, ptr, ind, q, allocate=True)
        sell = self._pick_side(r, self.measure)
        for j, i in enumerate(acc):
            v = 2 * j + int(sell[j])
            for k in self._stats:
                self._stats[k][i] = r[k][0, v]
            self._m_ref[i] = r[self.measure][0, v]
            lo, hi = int(self._indptr[i]), int(self._indptr[i + 1])
            self._alloc[lo:hi] = r[f"alloc_{self.measure}"][0, ptr[v]:ptr[v + 1]]
            self._x_ref[lo:hi] = self._scale[self._rows[lo:hi]]
            self._exact_tick[i] = self._tick

    def _what_if_orders(self, i: int, rows: np.ndarray, q: np.ndarray
                        ) -> tuple[dict, dict, np.ndarray, np.ndarray]:
        """Before / after raw risk of account ``i`` with orders, and the trades' Euler
        contributions (VaR, ES) on the side that sets the after-trade IM: per side, the
        account's P&L vector with that side filled (summed in CSR order, as the batch
        kernel sums it) is row 0 of a virtual account, the traded instruments the others."""
        lo, hi = int(self._indptr[i]), int(self._indptr[i + 1])
        ptr = np.array([0, hi - lo], np.int64)
        k = rows.size
        n_scen = self._U.shape[1]
        qv = np.concatenate([[1.0], q])
        res = []
        for fill in (self._fb[lo:hi], self._fs[lo:hi]):
            V = np.empty((k + 1, n_scen))
            account_pnl_into(self._U, ptr, self._rows[lo:hi], self._qty[lo:hi] + fill, 0, V[0])
            V[1:] = self._U[rows]
            res.append((self._risk_virtual(V[:1], qv[:1]), self._risk_virtual(V, qv)))
        m = self.measure

        def side(pair: tuple[dict, dict]) -> int:
            return int(max(pair[1][m][0, 0], 0.0) > max(pair[0][m][0, 0], 0.0))

        before = res[side((res[0][0], res[1][0]))][0]
        after = res[side((res[0][1], res[1][1]))][1]
        return (before, after, after["alloc_var"][0, 1:].copy(),
                after["alloc_es"][0, 1:].copy())
