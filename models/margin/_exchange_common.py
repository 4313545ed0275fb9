r"""Shared plumbing of the rule-based exchange margin methods.

Validation helpers (choices, names, per-market parameters and their lookup by instrument id
or underlying, real arrays, ordered pairs) and position plumbing (selecting the position
rows a method margins, netting them per account and instrument or per side, today's prices,
the per-account driver label and the :class:`~marginlab.models.margin.base.MarginResult`
with its allocation) used by :class:`~marginlab.models.margin.tiered.TieredMargin`,
:class:`~marginlab.models.margin.dydx.DydxMargin` and the Drift and Deribit methods of
:mod:`marginlab.models.margin.exchange` (the conventions are described there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validate import _check_range, check_real
from ..book import INVERSE_TYPES, Book
from ..portfolio import account_equity, gross_notional
from ..scenarios import MarketState
from .base import MarginResult

FUTURES_TYPES = ("linear_perp", "linear_future", "inverse_perp", "inverse_future")
LINEAR_FUTURES_TYPES = ("linear_perp", "linear_future")
_MODES = ("cross", "isolated")
_ON = ("raise", "ignore")
_NO_POSITION = "no positions"


# ------------------------------------------------------------------------ validation helpers
def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _check_name(value: Any, default: str) -> str:
    if value == "":
        return default
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name must be a non-empty string, got {value!r}")
    return value


def _check_key(name: str, key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise TypeError(f"{name} keys must be non-empty strings (instrument ids or "
                        f"underlyings), got {key!r}")
    return key


def _market_param(name: str, value: Any, **bounds: Any) -> float | dict[str, float]:
    """One real number for every market, or a mapping market -> number; range-checked."""
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{name} must not be an empty mapping")
        return {_check_key(name, k): check_real(f"{name}[{k!r}]", v, **bounds)
                for k, v in value.items()}
    return check_real(name, value, **bounds)


def _lookup(param: Mapping[str, Any], instrument_id: str, underlying: str) -> Any:
    """``param[instrument_id]``, else ``param[underlying]`` (case-insensitive), else None."""
    if instrument_id in param:
        return param[instrument_id]
    u = underlying.upper()
    for k, v in param.items():
        if k.upper() == u:
            return v
    return None


def _resolve(name: str, param: float | Mapping[str, float], book: Book,
             used: np.ndarray) -> np.ndarray:
    """Per-instrument values of a market parameter (NaN for instruments not in ``used``)."""
    out = np.full(book.n_instruments, np.nan)
    if not isinstance(param, Mapping):
        out[used] = param
        return out
    ids = book.instruments["instrument_id"].to_numpy(object)
    und = book.instruments["underlying"].to_numpy(object)
    for i in used.tolist():
        v = _lookup(param, ids[i], und[i])
        if v is None:
            raise ValueError(f"{name} has no value for instrument {ids[i]!r} (underlying "
                             f"{und[i]!r}); keys given: {sorted(param)}")
        out[i] = v
    return out


# ----------------------------------------------------------------------- position plumbing
def _select_rows(book: Book, allowed: tuple[str, ...], on_unsupported: str,
                 method: str) -> np.ndarray:
    """Mask of the position rows a method margins (non-zero, of an allowed type)."""
    types = book.instruments["type"].to_numpy(str)[book.position_instrument]
    qty = book.positions["quantity"].to_numpy(float)
    ok = np.isin(types, allowed)
    bad = ~ok & (qty != 0.0)
    if on_unsupported == "raise" and bad.any():
        i = int(np.flatnonzero(bad)[0])
        pos = book.positions
        raise ValueError(
            f"{method}: position row {i} (account {pos['account_id'].iloc[i]!r}, instrument "
            f"{pos['instrument_id'].iloc[i]!r}) is of type {str(types[i])!r}, which this "
            f"method does not margin (it margins {', '.join(allowed)}); pass "
            "on_unsupported='ignore' to leave such positions out")
    return ok & (qty != 0.0)


@dataclass(frozen=True)
class _Positions:
    """Netted positions: one row per (account, instrument) or (account, instrument, side)."""

    account: np.ndarray      # int64 account row
    instrument: np.ndarray   # int64 instrument column
    quantity: np.ndarray     # signed contracts
    entry: np.ndarray        # average entry price (isolated groups), NaN when netted across sides


def _net_positions(book: Book, rows: np.ndarray, *, by_side: bool) -> _Positions:
    """Net the selected rows per (account, instrument), or per (account, instrument, side).

    The average entry of a one-sided group is the quantity-weighted mean for linear contracts
    and the harmonic mean for inverse ones (the price at which the group's P&L equals the sum
    of its rows' P&L), as exchanges average entries when a position is increased.
    """
    n_inst = book.n_instruments
    pa = book.position_account[rows].astype(np.int64)
    pi = book.position_instrument[rows].astype(np.int64)
    q = book.positions["quantity"].to_numpy(float)[rows]
    key = pa * n_inst + pi
    if by_side:
        key = key * 2 + (q < 0)
    uniq, inv = np.unique(key, return_inverse=True)
    net = np.bincount(inv, weights=q, minlength=uniq.size)
    gross = np.bincount(inv, weights=np.abs(q), minlength=uniq.size)
    base = uniq // 2 if by_side else uniq
    acc, inst = base // n_inst, base % n_inst
    if by_side:
        e = book.positions["entry_price"].to_numpy(float)[rows]
        is_inv = np.isin(book.instruments["type"].to_numpy(str), INVERSE_TYPES)
        qe = np.bincount(inv, weights=np.where(is_inv[pi], q / e, q * e), minlength=uniq.size)
        inv_group = is_inv[inst]
        with np.errstate(divide="ignore", invalid="ignore"):
            entry = np.where(inv_group, net / qe, qe / net)
    else:
        entry = np.full(uniq.size, np.nan)
    keep = np.abs(net) > 1e-12 * gross
    return _Positions(acc[keep], inst[keep], net[keep], entry[keep])


def _prices(book: Book, market: MarketState, used: np.ndarray) -> np.ndarray:
    """Today's price of each used instrument's underlying (NaN elsewhere)."""
    und = book.instruments["underlying"].to_numpy(object)
    out = np.full(book.n_instruments, np.nan)
    for u in sorted(set(und[used].tolist())):
        out[und == u] = market.price(u)
    return out


def _driver(n_accounts: int, account: np.ndarray, weight: np.ndarray, labels: np.ndarray,
            code: np.ndarray) -> np.ndarray:
    """Per account, the label of the position with the largest ``weight`` (vectorised)."""
    out = np.full(n_accounts, _NO_POSITION, dtype=object)
    if account.size == 0:
        return out
    order = np.lexsort((weight, account))
    a = account[order]
    last = np.flatnonzero(np.r_[a[1:] != a[:-1], True])
    best = order[last]
    out[account[best]] = labels[code[best]]
    return out


def _explain_unmargined(method: str, book: Book, pos: _Positions,
                        driver: np.ndarray) -> np.ndarray:
    """Say why an account that holds positions has nothing margined: the positions this
    method left out (``on_unsupported="ignore"``, ``on_missing="ignore"``) or netted to
    zero, instead of "no positions"."""
    qty = book.positions["quantity"].to_numpy(float)
    live = qty != 0.0
    acc = book.position_account[live]
    holds = np.zeros(book.n_accounts, dtype=bool)
    holds[acc] = True
    holds[pos.account] = False
    if not holds.any():
        return driver
    out = driver.copy()
    ids = book.instruments["instrument_id"].to_numpy(str)[book.position_instrument[live]]
    types = book.instruments["type"].to_numpy(str)[book.position_instrument[live]]
    for a in np.flatnonzero(holds):
        rows = np.flatnonzero(acc == a)
        seen = list(dict.fromkeys(f"{ids[r]} ({types[r]})" for r in rows))
        shown = ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
        out[a] = f"not margined by {method}: {shown}"
    return out


def _result(method: str, book: Book, market: MarketState, pos: _Positions, im: np.ndarray,
            mm: np.ndarray, driver: np.ndarray,
            details: dict[str, np.ndarray] | None = None) -> MarginResult:
    n_acc, n_inst = book.n_accounts, book.n_instruments
    im_acc = np.bincount(pos.account, weights=im, minlength=n_acc)
    mm_acc = np.bincount(pos.account, weights=mm, minlength=n_acc)
    key = pos.account * n_inst + pos.instrument
    uniq, inv = np.unique(key, return_inverse=True)
    ids = book.instruments["instrument_id"].to_numpy(object)
    allocation = pd.DataFrame({
        "account_id": np.asarray(book.account_ids, dtype=object)[uniq // n_inst],
        "holding": ids[uniq % n_inst],
        "im_contribution": np.bincount(inv, weights=im, minlength=uniq.size),
        "mm_contribution": np.bincount(inv, weights=mm, minlength=uniq.size),
    })
    driver = _explain_unmargined(method, book, pos, driver)
    mb = account_equity(book, market)["margin_balance"].to_numpy(float)
    return MarginResult(method=method, account_ids=book.account_ids, im=im_acc, mm=mm_acc,
                        margin_balance=mb, driver=driver, allocation=allocation,
                        details=details or {}, gross_notional=gross_notional(book, market))


def _linear_setup(book: Book, market: MarketState, on_unsupported: str, method: str):
    """Netted linear positions, their instruments, size in units and USD notional."""
    rows = _select_rows(book, LINEAR_FUTURES_TYPES, on_unsupported, method)
    pos = _net_positions(book, rows, by_side=False)
    used = np.unique(pos.instrument)
    price = _prices(book, market, used)
    mult = book.instruments["multiplier"].to_numpy(float)
    units = np.abs(pos.quantity) * mult[pos.instrument]
    return pos, used, price, units, units * price[pos.instrument]


def _array_arg(name: str, value: Any, *, low: float | None = None,
               high: float | None = None) -> np.ndarray:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or an array of them, "
                        f"got {value!r}") from None
    _check_range(name, arr.reshape(-1), low, high, False, False, scalar=arr.ndim == 0)
    return arr


def _check_ordered(low_name: str, low: Any, high_name: str, high: Any) -> None:
    """``low <= high`` for scalar or per-market parameters (keys present in both)."""
    keys = set(low) if isinstance(low, Mapping) else set()
    keys |= set(high) if isinstance(high, Mapping) else set()
    for k in sorted(keys) or [None]:
        lo = low.get(k) if isinstance(low, Mapping) else low
        hi = high.get(k) if isinstance(high, Mapping) else high
        if lo is not None and hi is not None and lo > hi:
            where = "" if k is None else f"[{k!r}]"
            raise ValueError(f"{low_name}{where} must be <= {high_name}{where}, got {lo!r} > "
                             f"{hi!r}")
