"""The live margin engine with a margin method that is not a scenario VaR / ES.

Grid methods (:class:`~marginlab.models.margin.SpanLike`,
:class:`~marginlab.models.margin.DeribitLike`), the exchange methods
(:class:`~marginlab.models.margin.TieredMargin`, ``DydxMargin``, ``DriftMargin``,
``DeribitLinearMargin``) and wrappers such as
:class:`~marginlab.models.margin.AntiProcyclical` have no per-scenario P&L vector to keep
hot: their IM is a function of the whole account. The engine therefore recomputes an account
with the method itself, ``method.compute(sub_book, market)`` on a book holding only the
accounts concerned (or ``WithOrders(method)`` when they have resting orders), at the current
market:

* ``what_if``: one call on a two-account book (the account as it is and a copy with the
  trades), so "before" and "after" are the batch numbers at the current market;
* ``apply``, ``deposit``, ``withdraw``, ``place_order``, ``cancel_order``: one call on the
  touched accounts;
* a full re-margin: one call on the whole book (the batch itself).

Cost: a call builds a :class:`~marginlab.models.book.Book` and runs the method; for one
account it is dominated by fixed per-call overhead (pandas tables, the method's set-up), about
a millisecond or a few (see ``benchmarks/bench_engine.py``), against tens of microseconds for
the scenario path. This is exact by construction and needs every method to margin each
account on its own holdings only (true of all the methods above).

Between exact recomputations the per-tick re-mark is linear where the method allows it: when
the method's allocation of an account's IM to its holdings is finite and sums to the IM, the
IM is re-marked as ``IM_ref + sum_h alloc_h (x_h / x_h,ref - 1)`` (exact for a grid or tiered
margin of linear contracts on one underlying, whose IM is proportional to the price, as long
as no bracket boundary is crossed; first order otherwise); otherwise the IM is held at its last
exact value. MM keeps its last exact ratio to IM. The margin balance is re-marked exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..book import Book
from ..orders import Orders, WithOrders

__all__ = ["MethodMixin"]

_WHAT_IF_SUFFIX = "\x00what-if"
_RISK_KEYS = ("var", "var_lo", "var_hi", "var_se", "es", "es_se", "es_lo", "es_hi")


class MethodMixin:
    """Exact recomputation through ``method.compute`` (mixed into the engine)."""

    def _sub_book(self, accounts: list[str], extra: dict[str, tuple[str, list]] | None = None
                  ) -> Book:
        """Book of ``accounts`` as the engine holds them now (positions, collateral, orders);
        ``extra`` maps a new account id to (source account, extra position rows)."""
        acc_ids, inst_ids, qty, entry = [], [], [], []
        c_acc, c_asset, c_amt, c_hc = [], [], [], []
        o_acc, o_inst, o_side, o_qty, o_px = [], [], [], [], []
        by_acc = {a: [] for a in accounts}
        for o in self._orders.values():
            if o[0] in by_acc:
                by_acc[o[0]].append(o)
        jobs = [(a, a, []) for a in accounts]
        jobs += [(new, src, rows) for new, (src, rows) in (extra or {}).items()]
        for name, src, more in jobs:
            for inst, q, p in self._pos_acc.get(src, []) + more:
                acc_ids.append(name)
                inst_ids.append(inst)
                qty.append(q)
                entry.append(p)
            for asset in self._coll_acc.get(src, ()):
                c_acc.append(name)
                c_asset.append(asset)
                c_amt.append(self._coll_amount[(src, asset)])
                c_hc.append(self._haircut.get((src, asset), 0.0))
            for o in by_acc.get(src, ()) if name == src else _orders_of(self, src):
                o_acc.append(name)
                o_inst.append(str(self._inst_ids[o[1]]))
                o_side.append(o[2])
                o_qty.append(o[3])
                o_px.append(o[4])
        pos = pd.DataFrame({"account_id": pd.Series(acc_ids, dtype=object),
                            "instrument_id": pd.Series(inst_ids, dtype=object),
                            "quantity": np.asarray(qty, float),
                            "entry_price": np.asarray(entry, float)})
        col = pd.DataFrame({"account_id": pd.Series(c_acc, dtype=object),
                            "asset": pd.Series(c_asset, dtype=object),
                            "amount": np.asarray(c_amt, float),
                            "haircut": np.asarray(c_hc, float)})
        orders = None
        if o_acc:
            orders = pd.DataFrame({"account_id": o_acc, "instrument_id": o_inst,
                                   "side": o_side, "quantity": np.asarray(o_qty, float),
                                   "price": np.asarray(o_px, float)})
        return Book(self._instruments, pos, col, orders=orders)

    def _compute(self, book: Book) -> Any:
        """The batch method on ``book`` at the current market (with its orders, if any)."""
        m = self.method
        if book.orders is not None and len(book.orders):
            m = WithOrders(self.method, Orders(book.orders))
        return m.compute(book, self.market, scenarios=self._fixed)

    def _exact_method(self, acc: np.ndarray) -> None:
        """Recompute ``acc`` (sorted engine rows) with the method and store IM, MM, risk
        details and the allocation used by the linear re-mark."""
        n = len(self._account_ids)
        if acc.size == n:
            book = self._sub_book(list(self._account_ids))
        else:
            book = self._sub_book([self._account_ids[i] for i in acc])
        res = self._compute(book)
        pos = pd.Index(res.account_ids).get_indexer([self._account_ids[i] for i in acc])
        found = pos >= 0
        p = np.where(found, pos, 0)
        im = np.where(found, res.im[p], 0.0)
        mm = np.where(found, res.mm[p], 0.0)
        self._m_ref[acc] = im
        with np.errstate(divide="ignore", invalid="ignore"):
            self._mmr[acc] = np.where(im > 0, mm / np.where(im > 0, im, 1.0), 0.0)
        for k in _RISK_KEYS:
            v = res.details.get(k)
            self._stats[k][acc] = (np.where(found, np.asarray(v, float)[p], np.nan)
                                   if v is not None else np.nan)
        self._exact_tick[acc] = self._tick
        # allocation of IM to the engine's holdings (rows: instruments, then assets)
        lens = np.diff(self._indptr)[acc]
        sel = (np.repeat(self._indptr[acc], lens)
               + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)).astype(np.int64)
        self._alloc[sel] = 0.0
        self._x_ref[sel] = self._scale[self._rows[sel]]
        al = res.allocation
        if al is None or not len(al):
            return
        a_idx = np.array([self._acc_index.get(str(a), -1) for a in al["account_id"]])
        r_idx = pd.Index(self._row_names).get_indexer(al["holding"].astype(str))
        contrib = al["im_contribution"].to_numpy(float)
        keep = (a_idx >= 0) & (r_idx >= 0)
        a_idx, r_idx, contrib = a_idx[keep], r_idx[keep], contrib[keep]
        in_acc = np.zeros(n, bool)
        in_acc[acc] = True
        keep = in_acc[a_idx]
        a_idx, r_idx, contrib = a_idx[keep], r_idx[keep], contrib[keep]
        hold_acc = np.repeat(np.arange(n), np.diff(self._indptr))[sel]
        key = hold_acc * self._n_rows + self._rows[sel]
        loc = np.searchsorted(key, a_idx * self._n_rows + r_idx)
        ok = (loc < key.size) & (key[np.minimum(loc, key.size - 1)] == a_idx * self._n_rows
                                 + r_idx)
        alloc = np.zeros(sel.size)
        np.add.at(alloc, loc[ok], contrib[ok])
        total = np.zeros(n)
        np.add.at(total, a_idx, contrib)
        bad = np.zeros(n, bool)
        np.logical_or.at(bad, a_idx, ~np.isfinite(contrib) | ~ok)
        tol = 1e-9 * np.maximum(np.abs(self._m_ref), 1.0)
        bad |= ~(np.abs(total - self._m_ref) <= tol)
        # an account whose allocation is partial or does not add up keeps its IM constant
        self._alloc[sel] = np.where(bad[hold_acc], 0.0, alloc)

    def _what_if_method(self, i: int, parsed: list, prices: list[float]
                        ) -> tuple[dict[str, float], dict[str, float]]:
        """IM, MM and risk details of account ``i`` before and after the trades, from one
        ``method.compute`` on a two-account book."""
        acc = self._account_ids[i]
        ghost = acc + _WHAT_IF_SUFFIX
        more = [(str(self._inst_ids[r]), q, p) for (r, q, _), p in zip(parsed, prices,
                                                                        strict=True)]
        res = self._compute(self._sub_book([acc], {ghost: (acc, more)}))
        ids = pd.Index(res.account_ids)
        out = []
        for name in (acc, ghost):
            j = ids.get_loc(name) if name in ids else None
            d = {k: (float(res.details[k][j]) if j is not None and k in res.details
                     else float("nan")) for k in _RISK_KEYS}
            d["im"] = float(res.im[j]) if j is not None else 0.0
            d["mm"] = float(res.mm[j]) if j is not None else 0.0
            out.append(d)
        return out[0], out[1]


def _orders_of(eng: Any, acc: str) -> list:
    return [o for o in eng._orders.values() if o[0] == acc]
