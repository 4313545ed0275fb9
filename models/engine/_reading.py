"""Reading the live margin engine: one account's margin, every account as a frame, and an
account's allocation of its IM (or risk measure) to its holdings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .records import _STATUS

__all__ = ["ReadingMixin"]


class ReadingMixin:
    """Read-only views (mixed into the engine); every one takes the engine's lock."""

    def margin(self, account: Any) -> dict[str, Any]:
        """Current margin of one account (USD): ``im``, ``mm``, ``margin_balance``,
        ``excess``, ``margin_ratio``, ``status``, the risk numbers of its last exact
        re-margin and ``exact`` (whether no tick has moved it since)."""
        with self._lock:
            i = self._account(account)
            mb = float(self._mb[i])
            mm = float(self._mm[i])
            out = {"account_id": self._account_ids[i], "im": float(self._im[i]), "mm": mm,
                   "margin_balance": mb, "excess": mb - float(self._im[i]),
                   "margin_ratio": mm / mb if mb > 0 else float("inf"),
                   "status": _STATUS[self._status[i]],
                   "exact": bool(self._m[i] == self._m_ref[i]),
                   "exact_tick": int(self._exact_tick[i])}
            for k, v in self._stats.items():
                out[k] = float(v[i])
            return out

    def to_frame(self) -> pd.DataFrame:
        """One row per account: IM, MM, margin balance, excess, margin ratio, status and the
        risk numbers of the last exact re-margin."""
        with self._lock:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(self._mb > 0, self._mm / np.where(self._mb > 0, self._mb, 1.0),
                                 np.inf)
            cols = {"account_id": self.account_ids, "im": self._im.copy(),
                    "mm": self._mm.copy(), "margin_balance": self._mb.copy(),
                    "excess": self._mb - self._im, "margin_ratio": ratio,
                    "status": np.asarray(_STATUS, dtype=object)[self._status]}
            for k, v in self._stats.items():
                cols[k] = v.copy()
            return pd.DataFrame(cols)

    def allocation(self, account: Any) -> pd.DataFrame:
        """The account's holdings: row name, quantity and Euler contribution to the measure
        at its last exact re-margin (summing to the measure)."""
        with self._lock:
            i = self._account(account)
            lo, hi = self._indptr[i], self._indptr[i + 1]
            names = np.concatenate([self._inst_ids, np.asarray(self._assets, dtype=str)])
            return pd.DataFrame({"holding": names[self._rows[lo:hi]],
                                 "quantity": self._qty[lo:hi],
                                 f"{self.measure}_contribution": self._alloc[lo:hi]})
