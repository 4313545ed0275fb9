r"""Liquidation and bankruptcy prices of perpetual / futures positions, Binance style.

A position is liquidated when the margin balance falls to the maintenance margin. For one
symbol (contract 1) in a cross-margin account in one-way mode, with the rest of the account
summarised by its maintenance margin ``TMM1`` and unrealised PnL ``UPNL1``:

Linear (USDⓈ-M), balances in quote currency, ``Q`` = |size| in base units, side ``s = +/-1``:

.. math:: WB - TMM_1 + UPNL_1 + s\,Q\,(LP - EP) = Q \cdot LP \cdot MMR - cum
.. math:: LP = \frac{WB - TMM_1 + UPNL_1 + cum_B - s\,Q\,EP}{Q \cdot MMR_B - s\,Q}

SOURCE: Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts" (formula
for LP1 in one-way mode; isolated mode: WB is the isolated wallet balance and TMM = UPNL = 0).

Inverse (COIN-M), balances in coin, ``Q`` = |size| in contracts of ``CS`` USD:

.. math:: WB - TMM_1 + UPNL_1 + s\,Q\,CS\,(1/EP - 1/LP) = \frac{Q\,CS}{LP} MMR - cum
.. math:: LP = \frac{Q\,CS\,(MMR_B + s)}{WB - TMM_1 + UPNL_1 + cum_B + s\,Q\,CS / EP}

SOURCE: Binance, "How to Calculate Liquidation Price of COIN-M Futures Contracts" (one-way
mode terms of its formula; CS is the contract size, 100 USD for BTCUSD).

Bankruptcy price: the same with MMR = 0, cum = 0 and TMM1 = 0 (margin balance zero).

Returned values follow the trigger rule (a long is liquidated when mark <= LP, a short when
mark >= LP): where the formula has no positive root, the result is 0.0 or ``inf`` so that
the rule still says "never" or "always". Binance's interface shows "--" (its API "0") there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import _check_range
from .brackets import BracketTable, _check_contract_size, _out, _real_array

__all__ = ["liquidation_price", "bankruptcy_price", "liquidation_price_with_table"]

_SIDES = ("long", "short")


def _side_sign(side: Any) -> np.ndarray:
    arr = np.asarray(side, dtype=object)
    flat = arr.reshape(-1)
    for v in flat:
        if not isinstance(v, str) or v not in _SIDES:
            raise ValueError(f"side must be 'long' or 'short', got {v!r}")
    return np.where(arr == "long", 1.0, -1.0).astype(np.float64)


def _arg(name: str, value: Any, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> np.ndarray:
    arr = _real_array(name, value)
    _check_range(name, arr.reshape(-1), low, high, low_open, high_open, scalar=arr.ndim == 0)
    return arr


def _inputs(side, size, entry_price, wallet_balance, other_maintenance, other_unrealized_pnl):
    s = _side_sign(side)
    q = _arg("size", size, 0.0, None, low_open=True)
    ep = _arg("entry_price", entry_price, 0.0, None, low_open=True)
    wb = _arg("wallet_balance", wallet_balance)
    tmm = _arg("other_maintenance", other_maintenance, 0.0)
    upnl = _arg("other_unrealized_pnl", other_unrealized_pnl)
    return s, q, ep, wb, tmm, upnl


def _raw_price(s, q, ep, wb, mmr, cum, tmm, upnl, inverse, cs):
    """Root of the margin equation, before the trigger-rule encoding (see module notes)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if inverse:
            num = q * cs * (mmr + s)
            den = wb - tmm + upnl + cum + s * q * cs / ep
            lp = num / den
            # no positive root: a long is liquidated at every price, a short at none
            return np.where(lp > 0, lp, np.inf)
        num = wb - tmm + upnl + cum - s * q * ep
        den = q * mmr - s * q
        return np.maximum(num / den, 0.0)


def liquidation_price(side: Any, size: Any, entry_price: Any, wallet_balance: Any, mmr: Any,
                      maintenance_amount: Any, *, other_maintenance: Any = 0.0,
                      other_unrealized_pnl: Any = 0.0, inverse: bool = False,
                      contract_size: float = 1.0) -> Any:
    r"""Liquidation price of a one-way position with a given maintenance rate and amount.

    Parameters
    ----------
    side : {"long", "short"} or array of them
    size : float or array_like
        Absolute position size, > 0: base units (BTC) for linear contracts, contracts of
        ``contract_size`` USD for inverse ones.
    entry_price : float or array_like
        Entry price (EP), > 0.
    wallet_balance : float or array_like
        WB: cross wallet balance (cross margin) or the position's isolated wallet balance
        (isolated margin), in quote currency (linear) or coin (inverse).
    mmr, maintenance_amount : float or array_like
        MMR_B in [0, 1) and cum_B >= 0 of the bracket the position is in **at the liquidation
        price**. Use :func:`liquidation_price_with_table` to have the bracket found.
    other_maintenance, other_unrealized_pnl : float or array_like
        TMM1 and UPNL1: maintenance margin (>= 0) and unrealised PnL of the account's other
        contracts (cross margin only; 0 for isolated margin).
    inverse : bool
        True for coin-margined (COIN-M) contracts.
    contract_size : float
        USD value of one inverse contract (100 for Binance BTCUSD); ignored when linear.

    Returns
    -------
    float or numpy.ndarray
        LP, broadcast over the array arguments. 0.0 where a linear long cannot be liquidated
        (or a linear short is liquidated at any price); ``inf`` where an inverse short cannot
        be liquidated (or an inverse long is liquidated at any price).

    Notes
    -----
    Linear, one-way mode (SOURCE: Binance, "How to Calculate Liquidation Price of USDⓈ-M
    Futures Contracts"):

    .. math:: LP = \frac{WB - TMM_1 + UPNL_1 + cum_B - Side_B \cdot Position_B \cdot EP_B}
                        {Position_B \cdot MMR_B - Side_B \cdot Position_B}

    Inverse, one-way mode (SOURCE: Binance, "How to Calculate Liquidation Price of COIN-M
    Futures Contracts"):

    .. math:: LP = \frac{(MMR_B + Side_B) \cdot B \cdot CS}
                        {WB - TMM_1 + UPNL_1 + cum_B + Side_B \cdot B \cdot CS / EP_B}

    Both are the price at which margin balance equals maintenance margin,
    ``WB - TMM1 + UPNL1 + UPNL(LP) = N(LP) * MMR_B - cum_B``. The MMR and cum are taken as
    given: if the notional at the result falls in another bracket, Binance says to
    substitute that bracket's values and recompute; :func:`liquidation_price_with_table`
    does that.

    Examples
    --------
    Binance's USDⓈ-M FAQ example (cross margin, one-way): BTCUSDT long 109.488 at 32,481.98
    with WB 1,535,443.01, TMM1 356,512.508, UPNL1 -448,192.89, MMR 2.5 %, cum 16,300:

    >>> round(liquidation_price("long", 109.488, 32_481.98, 1_535_443.01, 0.025, 16_300.0,
    ...                         other_maintenance=356_512.508,
    ...                         other_unrealized_pnl=-448_192.89), 2)
    26316.89
    """
    if not isinstance(inverse, (bool, np.bool_)):
        raise TypeError(f"inverse must be True or False, got {inverse!r}")
    s, q, ep, wb, tmm, upnl = _inputs(side, size, entry_price, wallet_balance,
                                      other_maintenance, other_unrealized_pnl)
    m = _arg("mmr", mmr, 0.0, 1.0, high_open=True)
    cum = _arg("maintenance_amount", maintenance_amount, 0.0)
    cs = _check_contract_size(contract_size)
    s, q, ep, wb, m, cum, tmm, upnl = np.broadcast_arrays(s, q, ep, wb, m, cum, tmm, upnl)
    return _out(_raw_price(s, q, ep, wb, m, cum, tmm, upnl, bool(inverse), cs))


def bankruptcy_price(side: Any, size: Any, entry_price: Any, wallet_balance: Any, *,
                     other_unrealized_pnl: Any = 0.0, inverse: bool = False,
                     contract_size: float = 1.0) -> Any:
    r"""Price at which the margin balance is zero (the bankruptcy price).

    :func:`liquidation_price` with ``mmr = 0``, ``maintenance_amount = 0`` and no other
    maintenance margin: ``WB + UPNL1 + UPNL(BP) = 0``. Linear:

    .. math:: BP = EP - s \, \frac{WB + UPNL_1}{Q}

    SOURCE: the zero-margin case of Binance's liquidation formulas (see
    :func:`liquidation_price`); Bybit, "What is Bankruptcy Price?" (price at which the
    position margin is zero). For a long, ``BP <= LP``; for a short, ``BP >= LP``.
    """
    return liquidation_price(side, size, entry_price, wallet_balance, 0.0, 0.0,
                             other_maintenance=0.0, other_unrealized_pnl=other_unrealized_pnl,
                             inverse=inverse, contract_size=contract_size)


def liquidation_price_with_table(table: BracketTable, side: Any, size: Any, entry_price: Any,
                                 wallet_balance: Any, *, other_maintenance: Any = 0.0,
                                 other_unrealized_pnl: Any = 0.0, contract_size: float = 1.0,
                                 return_bracket: bool = False) -> Any:
    r"""Liquidation price with the bracket of the position's notional *at that price*.

    Binance: "If your position (calculated at the liquidation price) and the current
    position (calculated at the opening price) are of different levels, then you must
    substitute ... the maintenance margin rate and the maintenance margin amount of the
    position level, to recalculate the liquidation price" (SOURCE: "How to Calculate
    Liquidation Price of USDⓈ-M Futures Contracts", section "Maintenance Margin Rate"; the
    COIN-M page says the same). The notional at the liquidation price differs from the one
    at entry, so the bracket is not known in advance.

    Parameters
    ----------
    table : BracketTable
        Linear or inverse (``table.inverse``); its last bracket is extended beyond its cap.
    side, size, entry_price, wallet_balance, other_maintenance, other_unrealized_pnl,
    contract_size :
        As in :func:`liquidation_price`.
    return_bracket : bool
        Also return the 0-based index of the bracket used.

    Returns
    -------
    float or numpy.ndarray, or (price, bracket)

    Notes
    -----
    The formula is evaluated with every bracket's ``(MMR_k, cum_k)`` (vectorised, no loop
    over positions) and the bracket whose range ``floor_k < N(LP_k) <= cap_k`` contains the
    notional at its own price is reported. Because the cum ladder makes the maintenance
    margin the upper envelope ``max_k (N MMR_k - cum_k)``, and margin balance minus
    maintenance margin is monotone in the price, that consistent price is the largest of the
    per-bracket prices for a long and the smallest for a short; that is how it is computed,
    so the answer is unique (brackets meeting at a boundary give equal prices).
    """
    if not isinstance(table, BracketTable):
        raise TypeError(f"table must be a BracketTable, got {type(table).__name__}")
    s, q, ep, wb, tmm, upnl = _inputs(side, size, entry_price, wallet_balance,
                                      other_maintenance, other_unrealized_pnl)
    cs = _check_contract_size(contract_size)
    s, q, ep, wb, tmm, upnl = np.broadcast_arrays(s, q, ep, wb, tmm, upnl)
    ax = (Ellipsis, None)
    raw = _raw_price(s[ax], q[ax], ep[ax], wb[ax], table.maintenance_margin_rate,
                     table.maintenance_amount, tmm[ax], upnl[ax], table.inverse, cs)
    price = np.where(s > 0, raw.max(axis=-1), raw.min(axis=-1))
    if not return_bracket:
        return _out(price)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = q * cs / price if table.inverse else q * price
    n = np.where(np.isfinite(n), n, table.max_notional)
    bracket = np.minimum(np.searchsorted(table.notional_cap, n, side="left"),
                         table.n_brackets - 1)
    return _out(price), (int(bracket) if bracket.ndim == 0 else bracket)
