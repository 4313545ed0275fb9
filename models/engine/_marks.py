"""Marks and trades of the live margin engine: per-row spot, option value and re-mark scale at
a market state, and the parsing and valuation of trades (what-if, apply, orders)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..book import STABLECOINS
from ..scenarios import MarketState
from .records import _bs_value, _finite

__all__ = ["MarksMixin"]


class MarksMixin:
    """Marks and trade parsing (mixed into the engine)."""

    def _marks(self, market: MarketState) -> None:
        """Per row: spot S (underlying or asset price), unit value V (options), scale x."""
        n_i = self._n_inst
        spot = np.full(self._n_rows, np.nan)
        for u in set(self._und.tolist()):
            if u in market.spot:
                spot[:n_i][self._und == u] = market.spot[u]
        for k, asset in enumerate(self._assets):
            spot[n_i + k] = market.spot.get(asset, 1.0 if asset in STABLECOINS else np.nan)
        value = np.zeros(self._n_rows)
        opt = self._is_opt & np.isfinite(spot[:n_i])
        if opt.any():
            vol = np.array([market.vol.get(u, np.nan) for u in self._und[opt]])
            ok = np.isfinite(vol)
            sel = np.flatnonzero(opt)[ok]
            if sel.size:
                value[sel] = _bs_value(spot[sel], self._strike[sel], self._expiry[sel],
                                       vol[ok], market.rate, self._is_call[sel])
            value[np.flatnonzero(opt)[~ok]] = np.nan
        scale = spot.copy()
        scale[:n_i][self._is_inv] = 1.0
        self._spot, self._value, self._scale = spot, value, scale

    def _parse_trades(self, trades: Any) -> list[tuple[int, float, float | None]]:
        if isinstance(trades, pd.DataFrame):
            for colname in ("instrument_id", "quantity"):
                if colname not in trades.columns:
                    raise ValueError(f"trades is missing column {colname!r}")
            px = (trades["price"].tolist() if "price" in trades.columns
                  else [None] * len(trades))
            items = list(zip(trades["instrument_id"].tolist(), trades["quantity"].tolist(), px,
                             strict=True))
        elif isinstance(trades, Mapping):
            items = [(k, v, None) for k, v in trades.items()]
        elif isinstance(trades, Sequence) and not isinstance(trades, str):
            items = []
            for t in trades:
                if isinstance(t, Mapping):
                    if "instrument_id" not in t or "quantity" not in t:
                        raise ValueError("each trade needs instrument_id and quantity, got "
                                         f"{dict(t)!r}")
                    items.append((t["instrument_id"], t["quantity"], t.get("price")))
                elif isinstance(t, Sequence) and not isinstance(t, str) and len(t) in (2, 3):
                    items.append((t[0], t[1], t[2] if len(t) == 3 else None))
                else:
                    raise ValueError("a trade is (instrument_id, quantity[, price]) or a dict, "
                                     f"got {t!r}")
        else:
            raise TypeError("trades must be a DataFrame, a mapping instrument -> quantity or a "
                            f"sequence of (instrument_id, quantity[, price]); got "
                            f"{type(trades).__name__}")
        if not items:
            raise ValueError("trades is empty")
        out = []
        for inst, q, p in items:
            r = self._inst_index.get(str(inst))
            if r is None:
                raise ValueError(f"trades: unknown instrument_id {inst!r}")
            if not self._valued[r] or not np.isfinite(self._spot[r]) or not np.isfinite(
                    self._value[r]):
                raise ValueError(f"trades: instrument {inst!r} cannot be valued (no scenarios, "
                                 f"price or implied vol for {self._und[r]!r})")
            qf = _finite("quantity", q)
            pf = None if p is None else _finite("price", p)
            if pf is not None and pf <= 0:
                raise ValueError(f"price must be > 0, got {p!r}")
            out.append((r, qf, pf))
        return out

    def _mark_price(self, r: int) -> float:
        """Entry price of a trade at the current mark (the book's entry convention)."""
        t = self._types[r]
        if t == "option":
            return float(self._value[r])
        if t == "inverse_option":
            return float(self._value[r] / self._spot[r])
        return float(self._spot[r])

    def _trade_pnl(self, r: int, q: float, p: float) -> float:
        """Unrealised P&L (USD) at the current marks of a new trade of q units at price p
        (the scalar form of ``_coefficients``)."""
        t = self._types[r]
        m = self._mult[r]
        s = self._spot[r]
        if t == "option":
            return q * m * self._value[r] - q * m * p
        if t == "inverse_option":
            return q * m * self._value[r] - q * m * p * s
        if self._is_inv[r]:
            return q * self._face[r] / p * s - q * self._face[r]
        return q * m * s - q * m * p
