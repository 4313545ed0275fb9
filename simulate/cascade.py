r"""Margin calls, liquidations and liquidation cascades along simulated price paths.

Arrays in, arrays out: the meaning (books, exchange rules, result tables) lives in
:mod:`marginlab.models.liquidation`. Two engines share one set of rules and one output layout:

* :func:`simulate_cascade` with :class:`SingleAccounts` (the **fast path**): every account
  holds one linear or inverse position, and collateral in USD and/or that position's own
  coin. Its margin balance and maintenance margin are then piecewise-linear in one price, so
  each account has fixed trigger prices (below / above), precomputed and sorted per asset. A
  path walks pointers through the sorted triggers: per step the cost is O(assets + events),
  not O(accounts). Accounts whose state changes during a path (liquidated, auto-deleveraged)
  are copied into per-path state and checked individually from then on.
* :func:`simulate_cascade` with :class:`CrossAccounts` (the **general path**): any number of
  linear / inverse positions per account (cross margin) and collateral in any asset; every
  account is re-evaluated in every round. It also offers partial liquidation, a grace period
  and top-ups. It is the slow, obviously correct reference of the fast path: on a book both
  accept they give the same results.

Options are not simulated (a book with options must be reduced to its linear and inverse
positions first).

The rules (one step ``t = 1..n_steps``)
---------------------------------------
Prices. Column ``a`` of ``paths`` is the exogenous price :math:`S_{t,a}`. Liquidation orders
move the traded (mark) price through an impact state :math:`J_a` (log price):
:math:`P = S e^{J}`. At the start of a step :math:`J \leftarrow \rho J` (decay per step) and
the step's base mark is :math:`P^0 = S_t e^{J}`. Within the step the signed liquidation flow
:math:`X` (USD notional, buys positive; linear contracts at :math:`P^0`, inverse at face
value) moves the mark to :math:`P = P^0 e^{g(X)}` with

.. math:: g(X) = \operatorname{sign}(X)\,\bigl(\lambda x + \eta \sqrt{x}\bigr),
          \qquad x = |X| / D,

(linear and square-root impact in notional relative to the depth :math:`D`). An order that
takes the flow from :math:`X_0` to :math:`X_1` fills at :math:`P^0 e^{\bar g}` where
:math:`\bar g = \int_{X_0}^{X_1} g / (X_1 - X_0)` is the average impact over its slice of the
book. At the end of the step :math:`J \leftarrow J + g(X)`: the impact persists and decays
(:math:`\rho = 2^{-\Delta t / \text{half-life}}`), so every later step and every other
account sees it. That is the cascade feedback.

Accounts. Margin balance :math:`MB` = USD balance and coin balances at the mark, each
positive balance times ``1 - haircut``, plus unrealised P&L; equity (wealth) :math:`W` is the
same without haircuts. Maintenance margin per position is a bracket table's upper envelope
:math:`\max_k(N\,mmr_k - cum_k)`, notional :math:`N = |q| P` (linear, USD) or
:math:`|q| F / P` (inverse, coin; times :math:`P` in USD). A flat rate is a one-bracket table.

Rounds. A step repeats rounds until a round finds nothing to do. A round (1) issues margin
calls (:math:`MB < MM`, first time; a call stays until cured by a top-up or, with a grace
period, by recovering before the deadline), (2) collects the accounts to liquidate:
:math:`MB < \ell\,MM` (``liq_fraction`` :math:`\ell \le 1`), or with a grace period still
:math:`MB < MM` ``grace`` steps after the call, (3) liquidates them in account order, each
re-checked at the marks its turn sees. (The fast path numbers accounts by trigger price,
:func:`trigger_order`; the general path given accounts in that order agrees with it.)
Liquidation closes every position (or, in partial mode, the fraction that restores
:math:`MB` to ``partial_target`` x MM at the mark).

Close-out. Liquidation orders go to the market (impact, slippage). After a close-out at
equity :math:`W`: if :math:`W > 0`, a fee ``min(fee_rate x notional, W)`` goes to the
insurance fund; if :math:`W < 0` the account is bankrupt and the fund pays :math:`-W`. If the
fund cannot pay the deficit the market close-out would leave, the position is instead
**auto-deleveraged** (ADL): opposite positions on the same asset, ranked by the published
BitMEX / Bybit / Binance score (PnL% x effective leverage if PnL% > 0, PnL% / effective
leverage otherwise; PnL% = ``sign (P / E - 1)``, effective leverage = position notional /
account equity; ranked once per step and side at the marks of the first ADL), take it over at
the mark, and pay the deficit at the mark pro rata to the notional they take (ADL transfers,
USD). ADL volume does not hit the market. What the ranked positions cannot absorb is sold in
the market and its deficit is paid by the fund, then by the exchange (``exchange_paid``).

Settlement of a closed account. An account left without open positions (liquidated in full,
or fully taken over by ADL) is no longer margined, so it must carry no leveraged exposure:
after the fee, its debts are settled at the marks. A negative coin balance (the realised
coin P&L of an inverse position on USD collateral) is bought back with USD, then a negative
USD balance (a linear loss or the fee on coin collateral) is paid by selling its coins, in
column order. Both trades are at the mark, so they change no wealth, only the exposure;
what remains is USD and non-negative coin balances (the account's own collateral), or, if
equity is negative, the bankruptcy above (all balances seized).

Bookkeeping (checked on every path by the tests). With :math:`G` the P&L of the accounts
against the market (price changes of their exposures plus slippage of liquidation fills),

.. math:: \sum_i \Delta W_i + \Delta F = G + \text{exchange\_paid} + \text{deposits},
          \qquad \text{adl\_paid} = \text{adl\_received}

where :math:`\Delta F` is the fund's change (fees minus payouts). ADL transfers move money
between accounts only.

Reproducibility. Paths are processed in fixed blocks of :data:`PATH_BLOCK`; per-account
counts are kept per block and summed in block order, and top-up draws come from one
xoshiro256++ stream per path, so results do not depend on the number of threads.

Performance note: the per-step code calls no helper that takes arrays (numba's reference
counting of array arguments costs more than the work); helpers take scalars only, and the
array-taking functions run once per path or per block.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ._numba import inline_kernel, kernel, parallel_kernel, prange
from .rng import block_state, seed_key, uniform

__all__ = [
    "PATH_BLOCK",
    "PATH_FIELDS",
    "ASSET_FIELDS",
    "COUNT_FIELDS",
    "TRACK_FIELDS",
    "SingleAccounts",
    "CrossAccounts",
    "MarginTables",
    "ImpactParams",
    "CascadeRules",
    "CascadeArrays",
    "trigger_prices",
    "margin_state",
    "trigger_order",
    "simulate_cascade",
]

PATH_BLOCK = 512
"""Paths per work block. Part of the reproducibility contract (per-account counts are summed
block by block), so a constant, not an option."""

# Per-path outputs, columns of CascadeArrays.path
(P_BAD_DEBT, P_FUND_PAID, P_EXCHANGE_PAID, P_FEES, P_FUND_FINAL, P_FUND_MIN, P_ADL_PAID,
 P_ADL_RECEIVED, P_MARKET_PNL, P_WEALTH_CHANGE, P_DEPOSITS, P_CALLS, P_LIQUIDATIONS,
 P_BANKRUPTCIES, P_ADL_EVENTS, P_PARTIALS, P_TOPUPS, N_PATH_FIELDS) = range(18)
PATH_FIELDS = (
    "bad_debt", "fund_paid", "exchange_paid", "fees", "fund_final", "fund_min", "adl_paid",
    "adl_received", "market_pnl", "wealth_change", "deposits", "margin_calls",
    "liquidations", "bankruptcies", "adl_events", "partial_liquidations", "topups",
)  # fmt: skip
"""Names of the per-path columns: USD amounts, then event counts (see the module notes)."""

# Per-path, per-asset outputs, last axis of CascadeArrays.asset
A_LIQ_VOLUME, A_ADL_VOLUME, A_MIN_LOG, A_MAX_LOG, A_MAX_IMPACT, N_ASSET_FIELDS = range(6)
ASSET_FIELDS = ("liquidated_volume", "adl_volume", "min_log_move", "max_log_move",
                "max_abs_impact")
"""USD volume liquidated in the market and taken over by ADL; extreme log moves of the mark,
``log(P / S_0)``; largest absolute log impact ``|log(P / S)|``."""

# Per-account event counts, rows of CascadeArrays.counts (paths with at least one event)
C_CALL, C_LIQ, C_BANKRUPT, C_ADL, N_COUNTS = range(5)
COUNT_FIELDS = ("margin_call", "liquidation", "bankruptcy", "adl")

# Per-path, per-tracked-account outputs, last axis of CascadeArrays.accounts
(T_FINAL_EQUITY, T_BAD_DEBT, T_CALL_STEP, T_LIQ_STEP, T_LIQ_PRICE, T_BANK_STEP, T_ADL_STEP,
 N_TRACK_FIELDS) = range(8)
TRACK_FIELDS = ("final_equity", "bad_debt", "call_step", "liquidation_step",
                "liquidation_price", "bankruptcy_step", "adl_step")
"""Per path and tracked account: equity at the final marks (USD), the deficit it left (USD,
paid by the fund, the exchange or ADL), the step of its first margin call, liquidation,
bankruptcy and ADL (``-1`` for none), and the mark (USD) of its reference asset (the asset of
its first position) that its first liquidation saw (NaN for none)."""

_NEG_INF = -np.inf


# =========================================================================== inputs
class MarginTables(NamedTuple):
    """Maintenance-margin tables: row ``k`` has ``n[k]`` brackets ``(mmr, cum)``.

    ``cum`` is in USD for linear tables and in coin for inverse ones; a flat rate ``m`` is
    the one-bracket table ``(m, 0)``. Shapes ``(n_tables, max_brackets)`` and ``(n_tables,)``.
    """

    mmr: np.ndarray
    cum: np.ndarray
    n: np.ndarray


class ImpactParams(NamedTuple):
    """Price impact per asset (shape ``(n_assets,)`` each).

    ``depth`` USD (``inf`` for no impact), ``linear`` and ``sqrt`` the dimensionless
    coefficients of ``x`` and ``sqrt(x)`` in the log impact, ``decay`` the factor ``rho`` in
    [0, 1] applied to the impact state once per step.
    """

    depth: np.ndarray
    linear: np.ndarray
    sqrt: np.ndarray
    decay: np.ndarray


class CascadeRules(NamedTuple):
    """Scalar rules (see the module notes).

    ``grace`` is the grace period in steps, ``-1`` for none; ``partial``, ``grace >= 0`` and
    ``topup_prob > 0`` need :class:`CrossAccounts`.
    """

    liq_fraction: float = 1.0
    fee_rate: float = 0.0
    fund: float = 0.0
    partial: bool = False
    partial_target: float = 1.5
    grace: int = -1
    topup_prob: float = 0.0
    topup_target: float = 2.0


class SingleAccounts(NamedTuple):
    """One position per account (the fast path); all arrays have shape ``(n_accounts,)``.

    ``asset`` price column of the position's underlying; ``inverse`` 0/1; ``q`` signed size
    (units of the underlying for linear contracts, contracts for inverse ones); ``entry``
    entry price; ``face`` USD face value per inverse contract (ignored for linear); ``table``
    row of :class:`MarginTables`; ``usd`` USD balance (stablecoin collateral) and ``w_usd``
    its weight ``1 - haircut``; ``coin`` balance of the position's own underlying and
    ``w_coin`` its weight.
    """

    asset: np.ndarray
    inverse: np.ndarray
    q: np.ndarray
    entry: np.ndarray
    face: np.ndarray
    table: np.ndarray
    usd: np.ndarray
    w_usd: np.ndarray
    coin: np.ndarray
    w_coin: np.ndarray


class CrossAccounts(NamedTuple):
    """Cross-margin accounts (the general path).

    Positions in CSR order: account ``i`` holds positions ``start[i]:start[i + 1]``, each with
    ``pos_asset``, ``pos_inverse``, ``pos_q``, ``pos_entry``, ``pos_face``, ``pos_table`` as in
    :class:`SingleAccounts`. Balances: ``usd``/``w_usd`` shape ``(n_accounts,)``,
    ``bal``/``w_bal`` shape ``(n_accounts, n_assets)`` (coin amounts per price column).
    """

    start: np.ndarray
    pos_asset: np.ndarray
    pos_inverse: np.ndarray
    pos_q: np.ndarray
    pos_entry: np.ndarray
    pos_face: np.ndarray
    pos_table: np.ndarray
    usd: np.ndarray
    w_usd: np.ndarray
    bal: np.ndarray
    w_bal: np.ndarray


class CascadeArrays(NamedTuple):
    """Raw outputs of :func:`simulate_cascade`.

    ``path`` ``(n_paths, len(PATH_FIELDS))``; ``asset`` ``(n_paths, n_assets,
    len(ASSET_FIELDS))``; ``counts`` ``(len(COUNT_FIELDS), n_accounts)`` int64, the number of
    paths on which each account had each event; ``levels`` ``(n_assets, n_bins)`` USD volume
    liquidated in the market by fill level ``log(fill / S_0)`` (bins ``level_edges``, the end
    bins also collect what lies beyond); ``marks`` ``(n_record, n_steps + 1, n_assets)`` the
    mark prices of the first ``n_record`` paths at the end of each step; ``accounts``
    ``(n_paths, n_track, len(TRACK_FIELDS))`` per path and tracked account (the ``track``
    argument of :func:`simulate_cascade`, in its order): final equity, bad debt, steps of the
    first events and the mark at the first liquidation.
    """

    path: np.ndarray
    asset: np.ndarray
    counts: np.ndarray
    levels: np.ndarray
    marks: np.ndarray
    accounts: np.ndarray


# =========================================================================== scalar helpers
@inline_kernel
def _impact(x, depth, k_lin, k_sqrt):
    # Log impact g(x) of the signed cumulative flow x (USD); odd in x; 0 when depth is inf.
    z = abs(x) / depth
    v = k_lin * z + k_sqrt * math.sqrt(z)
    return v if x >= 0.0 else -v


@inline_kernel
def _impact_area(x, depth, k_lin, k_sqrt):
    # Integral of g from 0 to x (even in x).
    z = abs(x) / depth
    return depth * z * (0.5 * k_lin * z + (2.0 / 3.0) * k_sqrt * math.sqrt(z))


@inline_kernel
def _fill_log(x0, x1, depth, k_lin, k_sqrt):
    # Average log impact over the slice [x0, x1] of the flow.
    if x1 == x0 or depth == np.inf:
        return _impact(x0, depth, k_lin, k_sqrt)
    return (_impact_area(x1, depth, k_lin, k_sqrt)
            - _impact_area(x0, depth, k_lin, k_sqrt)) / (x1 - x0)


@inline_kernel
def _weighted(x, w):
    # A balance counted for margin: positive balances after the haircut, debts in full.
    return x * w if x > 0.0 else x


@inline_kernel
def _upnl(q, pa, entry, face, inv):
    # Unrealised P&L in USD at mark pa.
    if inv:
        return q * face * (pa / entry - 1.0)
    return q * (pa - entry)


@inline_kernel
def _notional(q, pa, face, inv):
    return abs(q) * face if inv else abs(q) * pa


@inline_kernel
def _slope(q, entry, face, inv):
    # d(USD value of the position)/d(price): q for linear, q F / E for inverse.
    if inv:
        return q * face / entry
    return q


@inline_kernel
def _buy_back(u, c, pa):
    # A closed account owes coin (c < 0): buy it back with USD at the mark pa.
    if c < 0.0:
        return u + c * pa, 0.0
    return u, c


@inline_kernel
def _sell_for(u, c, pa):
    # A closed account owes USD (u < 0): sell its coin c at the mark pa until the debt is paid
    # (or the coin is gone).
    if u < 0.0 and c > 0.0:
        need = -u / pa
        if need <= c:
            return 0.0, c - need
        return u + c * pa, 0.0
    return u, c


@inline_kernel
def _adl_score(q, pa, entry, notional, equity):
    # BitMEX/Bybit/Binance ADL ranking: PnL% x leverage (profit) or PnL% / leverage (loss).
    if equity <= 0.0 or q == 0.0:
        return _NEG_INF
    pnl = (pa / entry - 1.0) if q > 0.0 else (1.0 - pa / entry)
    lev = notional / equity
    if pnl > 0.0:
        return pnl * lev
    return pnl / lev


# =========================================================================== fast path
@kernel
def _track_reset(acct_out, p, s):
    # A tracked account's row before a path: no events, no deficit.
    acct_out[p, s, T_FINAL_EQUITY] = 0.0
    acct_out[p, s, T_BAD_DEBT] = 0.0
    acct_out[p, s, T_CALL_STEP] = -1.0
    acct_out[p, s, T_LIQ_STEP] = -1.0
    acct_out[p, s, T_LIQ_PRICE] = np.nan
    acct_out[p, s, T_BANK_STEP] = -1.0
    acct_out[p, s, T_ADL_STEP] = -1.0


@kernel
def _rank_push(rank_key, rank_id, base, c, key, ident):
    # Put (key, ident) at slot c of the ADL ranking heap stored from ``base`` and sift it up.
    # The heap is a binary max-heap on (key, then the lower ident). Ranking happens only in
    # steps with a bankruptcy, so the per-call reference counting of these array arguments
    # does not show in the timings.
    rank_key[base + c] = key
    rank_id[base + c] = ident
    while c > 0:
        par = (c - 1) // 2
        kc = rank_key[base + c]
        kp = rank_key[base + par]
        if kc > kp or (kc == kp and rank_id[base + c] < rank_id[base + par]):
            rank_key[base + c] = kp
            rank_key[base + par] = kc
            ja = rank_id[base + c]
            rank_id[base + c] = rank_id[base + par]
            rank_id[base + par] = ja
            c = par
        else:
            break


@kernel
def _rank_pop(rank_key, rank_id, base, n_h):
    # Drop the top of the heap that held n_h + 1 entries: the last entry to the root, sifted
    # down over the n_h that remain.
    rank_key[base] = rank_key[base + n_h]
    rank_id[base] = rank_id[base + n_h]
    c = 0
    while True:
        ch = 2 * c + 1
        if ch >= n_h:
            break
        if ch + 1 < n_h:
            k1 = rank_key[base + ch]
            k2 = rank_key[base + ch + 1]
            if k2 > k1 or (k2 == k1 and rank_id[base + ch + 1] < rank_id[base + ch]):
                ch += 1
        kc = rank_key[base + ch]
        kp = rank_key[base + c]
        if kc > kp or (kc == kp and rank_id[base + ch] < rank_id[base + c]):
            rank_key[base + ch] = kp
            rank_key[base + c] = kc
            ja = rank_id[base + ch]
            rank_id[base + ch] = rank_id[base + c]
            rank_id[base + c] = ja
            c = ch
        else:
            break


@kernel
def _fast_path(
    p, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0,
    tab_mmr, tab_cum, tab_n,
    acc_asset, acc_inv, acc_q, acc_entry, acc_face, acc_tab, acc_usd, acc_wusd, acc_coin,
    acc_wcoin, a_full, b_full, a_tot, b_tot,
    liq_start, liq_acc, liq_thr, mc_start, mc_acc, mc_thr, side_start, side_acc,
    lvl_px,
    st_state, st_call, st_adl, cq, cu, cc, touched, live, live_pos, buf, rank_acc, rank_key,
    rank_len, rank_stamp,
    s0, J, P0, P, X, plast, H, liq_ptr, mc_ptr,
    out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
):  # fmt: skip
    n_a = s0.shape[0]
    n_lists = 2 * n_a
    n_lvl = levels.shape[1]
    n_rec = rec.shape[0]
    for a in range(n_a):
        s0[a] = paths[p, 0, a]
        J[a] = 0.0
        P[a] = s0[a]
        plast[a] = s0[a]
        H[a] = b_tot[a]
        out_asset[p, a, A_LIQ_VOLUME] = 0.0
        out_asset[p, a, A_ADL_VOLUME] = 0.0
        out_asset[p, a, A_MIN_LOG] = s0[a]  # extremes as prices until the end of the path
        out_asset[p, a, A_MAX_LOG] = s0[a]
        out_asset[p, a, A_MAX_IMPACT] = 0.0
        if p < n_rec:
            rec[p, 0, a] = s0[a]
    for lst in range(n_lists):
        liq_ptr[lst] = liq_start[lst]
        mc_ptr[lst] = mc_start[lst]
        rank_stamp[lst] = -1
    for s in range(trk_acc.shape[0]):
        _track_reset(acct_out, p, s)
    w0 = a_tot
    for a in range(n_a):
        w0 += b_tot[a] * s0[a]
    fund = fund0
    fund_min = fund0
    fees = 0.0
    fund_paid = 0.0
    exch = 0.0
    adl_paid = 0.0
    adl_recv = 0.0
    gmk = 0.0
    n_call = 0
    n_liq = 0
    n_bank = 0
    n_adl = 0
    n_t = 0
    n_live = 0
    for t in range(1, n_steps + 1):
        tstamp = p * (n_steps + 1) + t
        for a in range(n_a):
            J[a] *= rho[a]
            P0[a] = paths[p, t, a] * math.exp(J[a]) if J[a] != 0.0 else paths[p, t, a]
            P[a] = P0[a]
            X[a] = 0.0
            if P0[a] < out_asset[p, a, A_MIN_LOG]:
                out_asset[p, a, A_MIN_LOG] = P0[a]
            if P0[a] > out_asset[p, a, A_MAX_LOG]:
                out_asset[p, a, A_MAX_LOG] = P0[a]
            if abs(J[a]) > out_asset[p, a, A_MAX_IMPACT]:
                out_asset[p, a, A_MAX_IMPACT] = abs(J[a])
        while True:
            nb = 0
            for lst in range(n_lists):
                pa = P[lst // 2]
                up = lst % 2
                # ---- (1) margin calls: static accounts by their sorted call prices
                k = mc_ptr[lst]
                end = mc_start[lst + 1]
                while k < end and ((up == 0 and pa < mc_thr[k]) or (up == 1 and pa > mc_thr[k])):
                    i = mc_acc[k]
                    if st_state[i] != p and st_call[i] != p:
                        st_call[i] = p
                        n_call += 1
                        counts[C_CALL, i] += 1
                        if trk[i] >= 0:
                            acct_out[p, trk[i], T_CALL_STEP] = t
                    k += 1
                mc_ptr[lst] = k
                # ---- (2) static accounts by their sorted liquidation prices; they come in
                # increasing account numbers (see trigger_order) but for two-sided accounts
                k = liq_ptr[lst]
                end = liq_start[lst + 1]
                while k < end and ((up == 0 and pa < liq_thr[k]) or (up == 1 and pa > liq_thr[k])):
                    i = liq_acc[k]
                    if st_state[i] != p:
                        buf[nb] = i
                        nb += 1
                    k += 1
                liq_ptr[lst] = k
            # ---- (1) and (2) for accounts with their own state: checked directly
            for jl in range(n_live):
                i = live[jl]
                a = acc_asset[i]
                pa = P[a]
                inv = acc_inv[i] == 1
                q = cq[i]
                mb = (_weighted(cu[i], acc_wusd[i]) + _weighted(cc[i], acc_wcoin[i]) * pa
                      + _upnl(q, pa, acc_entry[i], acc_face[i], inv))
                tb = acc_tab[i]
                nn = abs(q) * acc_face[i] if inv else abs(q) * pa
                mm = 0.0
                for kb in range(tab_n[tb]):
                    v = nn * tab_mmr[tb, kb] - (tab_cum[tb, kb] * pa if inv else tab_cum[tb, kb])
                    if v > mm:
                        mm = v
                if mb < mm and st_call[i] != p:
                    st_call[i] = p
                    n_call += 1
                    counts[C_CALL, i] += 1
                    if trk[i] >= 0:
                        acct_out[p, trk[i], T_CALL_STEP] = t
                if mb < liq_frac * mm:
                    buf[nb] = i
                    nb += 1
            if nb == 0:
                break
            for r in range(1, nb):  # insertion sort: all but a few are in order already
                x_i = buf[r]
                s_i = r - 1
                while s_i >= 0 and buf[s_i] > x_i:
                    buf[s_i + 1] = buf[s_i]
                    s_i -= 1
                buf[s_i + 1] = x_i
            # ---- (3) liquidate in account order
            for r in range(nb):
                i = buf[r]
                a = acc_asset[i]
                inv = acc_inv[i] == 1
                ent = acc_entry[i]
                fc = acc_face[i]
                if st_state[i] != p:  # first change on this path: own state from now on
                    st_state[i] = p
                    cq[i] = acc_q[i]
                    cu[i] = acc_usd[i]
                    cc[i] = acc_coin[i]
                    touched[n_t] = i
                    n_t += 1
                    live_pos[i] = -1
                q = cq[i]
                if q == 0.0:
                    continue
                pa = P[a]
                # re-check at the marks this account's turn sees
                mb = (_weighted(cu[i], acc_wusd[i]) + _weighted(cc[i], acc_wcoin[i]) * pa
                      + _upnl(q, pa, ent, fc, inv))
                tb = acc_tab[i]
                nn = _notional(q, pa, fc, inv)
                mm = 0.0
                for kb in range(tab_n[tb]):
                    v = nn * tab_mmr[tb, kb] - (tab_cum[tb, kb] * pa if inv else tab_cum[tb, kb])
                    if v > mm:
                        mm = v
                if not mb < liq_frac * mm:
                    if live_pos[i] < 0:  # passed by its pointer: watch it directly from now on
                        live[n_live] = i
                        live_pos[i] = n_live
                        n_live += 1
                    continue
                # bring the market P&L up to the current marks
                for b in range(n_a):
                    gmk += H[b] * (P[b] - plast[b])
                    plast[b] = P[b]
                sg = 1.0 if q > 0.0 else -1.0
                slope0 = cc[i] + _slope(q, ent, fc, inv)
                # projected equity after a market close-out
                x0 = X[a]
                x1 = x0 - sg * (abs(q) * fc if inv else abs(q) * P0[a])
                if depth[a] == np.inf:
                    gi = 0.0
                    xf = P0[a]
                    pn = P0[a]
                else:
                    gi = _impact(x1, depth[a], k_lin[a], k_sqrt[a])
                    xf = P0[a] * math.exp(_fill_log(x0, x1, depth[a], k_lin[a], k_sqrt[a]))
                    pn = P0[a] * math.exp(gi)
                if inv:
                    w_proj = cu[i] + (cc[i] + q * fc * (1.0 / ent - 1.0 / xf)) * pn
                else:
                    w_proj = (cu[i] + q * (xf - ent)) + cc[i] * pn
                n_liq += 1
                counts[C_LIQ, i] += 1
                if trk[i] >= 0:
                    acct_out[p, trk[i], T_LIQ_STEP] = t
                    acct_out[p, trk[i], T_LIQ_PRICE] = pa
                market_q = abs(q)
                bankrupt = False
                if w_proj < 0.0 and fund < -w_proj:
                    # ---- auto-deleveraging: opposite positions take it over at the mark
                    bankrupt = True
                    w_mark = cu[i] + cc[i] * pa + _upnl(q, pa, ent, fc, inv)
                    deficit = -w_mark if w_mark < 0.0 else 0.0
                    q_usd = _notional(q, pa, fc, inv)
                    opp = 2 * a + (1 if q > 0.0 else 0)
                    base = side_start[opp]
                    if rank_stamp[opp] != tstamp:
                        # rank the opposite side once per step: a binary max-heap on
                        # (score, then lower account number) in this side's segment
                        n_r = 0
                        for k in range(side_start[opp], side_start[opp + 1]):
                            j = side_acc[k]
                            if st_state[j] == p:
                                qj = cq[j]
                                wj = cu[j] + cc[j] * pa
                            else:
                                qj = acc_q[j]
                                wj = acc_usd[j] + acc_coin[j] * pa
                            if qj == 0.0:
                                continue
                            invj = acc_inv[j] == 1
                            wj += _upnl(qj, pa, acc_entry[j], acc_face[j], invj)
                            score = _adl_score(qj, pa, acc_entry[j],
                                               _notional(qj, pa, acc_face[j], invj), wj)
                            _rank_push(rank_key, rank_acc, base, n_r, score, j)
                            n_r += 1
                        rank_len[opp] = n_r
                        rank_stamp[opp] = tstamp
                    rem = q_usd
                    while rem > 0.0 and rank_len[opp] > 0:
                        j = rank_acc[base]  # the top of the ranking
                        if st_state[j] != p:
                            st_state[j] = p
                            cq[j] = acc_q[j]
                            cu[j] = acc_usd[j]
                            cc[j] = acc_coin[j]
                            touched[n_t] = j
                            n_t += 1
                            live_pos[j] = -1
                        qj = cq[j]
                        pop = qj == 0.0  # closed since the ranking was made
                        if not pop:
                            invj = acc_inv[j] == 1
                            ej = acc_entry[j]
                            fj = acc_face[j]
                            sj = 1.0 if qj > 0.0 else -1.0
                            slope_j0 = cc[j] + _slope(qj, ej, fj, invj)
                            nj = _notional(qj, pa, fj, invj)
                            if nj <= rem:
                                take_usd = nj
                                take_q = abs(qj)
                                rem -= nj
                                new_q = 0.0
                                pop = True
                            else:
                                take_usd = rem
                                take_q = rem / fj if invj else rem / pa
                                rem = 0.0
                                new_q = qj - sj * take_q
                            if invj:
                                cc[j] += sj * take_q * fj * (1.0 / ej - 1.0 / pa)
                            else:
                                cu[j] += sj * take_q * (pa - ej)
                            cq[j] = new_q
                            tau = deficit * (take_usd / q_usd)
                            cu[j] -= tau
                            adl_paid += tau
                            H[a] += cc[j] + _slope(new_q, ej, fj, invj) - slope_j0
                            if new_q == 0.0:  # closed: its debts are settled at the mark
                                cj0 = cc[j]
                                uj, cj = _buy_back(cu[j], cj0, pa)
                                cu[j], cc[j] = _sell_for(uj, cj, pa)
                                H[a] += cc[j] - cj0
                                if live_pos[j] >= 0:
                                    last = live[n_live - 1]
                                    live[live_pos[j]] = last
                                    live_pos[last] = live_pos[j]
                                    live_pos[j] = -1
                                    n_live -= 1
                            elif live_pos[j] < 0:
                                live[n_live] = j
                                live_pos[j] = n_live
                                n_live += 1
                            if st_adl[j] != p:
                                st_adl[j] = p
                                counts[C_ADL, j] += 1
                                if trk[j] >= 0:
                                    acct_out[p, trk[j], T_ADL_STEP] = t
                            n_adl += 1
                            out_asset[p, a, A_ADL_VOLUME] += take_usd
                        if pop:  # last element to the root, sift down
                            rank_len[opp] -= 1
                            _rank_pop(rank_key, rank_acc, base, rank_len[opp])
                    taken = q_usd - rem
                    if rem == 0.0:
                        take_q = abs(q)
                    else:
                        take_q = taken / fc if inv else taken / pa
                    if inv:
                        cc[i] += sg * take_q * fc * (1.0 / ent - 1.0 / pa)
                    else:
                        cu[i] += sg * take_q * (pa - ent)
                    q = 0.0 if rem == 0.0 else q - sg * take_q
                    cq[i] = q
                    received = deficit * (taken / q_usd)
                    cu[i] += received
                    adl_recv += received
                    if trk[i] >= 0:
                        acct_out[p, trk[i], T_BAD_DEBT] += received
                    market_q = abs(q)
                    if market_q > 0.0:  # what the ranking could not absorb goes to market
                        x1 = x0 - sg * (market_q * fc if inv else market_q * P0[a])
                        if depth[a] != np.inf:
                            gi = _impact(x1, depth[a], k_lin[a], k_sqrt[a])
                            xf = P0[a] * math.exp(_fill_log(x0, x1, depth[a], k_lin[a],
                                                            k_sqrt[a]))
                            pn = P0[a] * math.exp(gi)
                market_usd = 0.0
                if market_q > 0.0:
                    # ---- market close-out at the fill, with slippage against the mark
                    if inv:
                        gmk += sg * market_q * fc * (1.0 - pa / xf)
                        cc[i] += q * fc * (1.0 / ent - 1.0 / xf)
                        market_usd = market_q * fc
                    else:
                        gmk += q * (xf - pa)
                        cu[i] += q * (xf - ent)
                        market_usd = market_q * xf
                    cq[i] = 0.0
                    X[a] = x1
                    out_asset[p, a, A_LIQ_VOLUME] += market_usd
                    lo_k = 1  # bin of the fill: interior price edges at or below it
                    hi_k = n_lvl
                    while lo_k < hi_k:
                        mid = (lo_k + hi_k) // 2
                        if lvl_px[a, mid] <= xf:
                            lo_k = mid + 1
                        else:
                            hi_k = mid
                    kb = lo_k - 1
                    levels[a, kb] += market_usd
                H[a] += cc[i] - slope0
                if market_q > 0.0:
                    P[a] = pn
                    gmk += H[a] * (pn - plast[a])  # the move the order caused, new exposure
                    plast[a] = pn
                    if pn < out_asset[p, a, A_MIN_LOG]:
                        out_asset[p, a, A_MIN_LOG] = pn
                    if pn > out_asset[p, a, A_MAX_LOG]:
                        out_asset[p, a, A_MAX_LOG] = pn
                    ji = abs(J[a] + gi)
                    if ji > out_asset[p, a, A_MAX_IMPACT]:
                        out_asset[p, a, A_MAX_IMPACT] = ji
                if live_pos[i] >= 0:
                    last = live[n_live - 1]
                    live[live_pos[i]] = last
                    live_pos[last] = live_pos[i]
                    live_pos[i] = -1
                    n_live -= 1
                # ---- settlement
                w = cu[i] + cc[i] * P[a]
                if w < 0.0:
                    bankrupt = True
                    pay = -w
                    fp = fund if fund < pay else pay
                    fund -= fp
                    fund_paid += fp
                    exch += pay - fp
                    if trk[i] >= 0:
                        acct_out[p, trk[i], T_BAD_DEBT] += pay
                    H[a] -= cc[i]  # the seized coin leaves the book at the mark
                    cu[i] = 0.0
                    cc[i] = 0.0
                else:
                    if w > 0.0 and market_usd > 0.0:
                        fee = fee_rate * market_usd
                        if fee > w:
                            fee = w
                        cu[i] -= fee
                        fund += fee
                        fees += fee
                    # the account is closed: its debts are settled at the mark (a coin debt
                    # bought back with USD, a USD debt paid by selling coin), so it keeps no
                    # exposure it is no longer margined for
                    ci0 = cc[i]
                    ui, ci = _buy_back(cu[i], ci0, P[a])
                    cu[i], cc[i] = _sell_for(ui, ci, P[a])
                    H[a] += cc[i] - ci0
                if fund < fund_min:
                    fund_min = fund
                if bankrupt:
                    n_bank += 1
                    counts[C_BANKRUPT, i] += 1
                    if trk[i] >= 0:
                        acct_out[p, trk[i], T_BANK_STEP] = t
        # ---- end of step: the step's impact joins the decaying state
        for a in range(n_a):
            if X[a] != 0.0:
                J[a] += _impact(X[a], depth[a], k_lin[a], k_sqrt[a])
            if p < n_rec:
                rec[p, t, a] = P[a]
    # ---- final marks: market P&L, wealth
    for b in range(n_a):
        gmk += H[b] * (P[b] - plast[b])
    w1 = a_tot
    for a in range(n_a):
        w1 += b_tot[a] * P[a]
    for k in range(n_t):
        i = touched[k]
        a = acc_asset[i]
        pa = P[a]
        w1 += (cu[i] + cc[i] * pa + _upnl(cq[i], pa, acc_entry[i], acc_face[i], acc_inv[i] == 1)
               - a_full[i] - b_full[i] * pa)
    for s in range(trk_acc.shape[0]):
        i = trk_acc[s]
        pa = P[acc_asset[i]]
        if st_state[i] == p:
            w = cu[i] + cc[i] * pa + _upnl(cq[i], pa, acc_entry[i], acc_face[i],
                                           acc_inv[i] == 1)
        else:
            w = a_full[i] + b_full[i] * pa
        acct_out[p, s, T_FINAL_EQUITY] = w
    for a in range(n_a):
        out_asset[p, a, A_MIN_LOG] = math.log(out_asset[p, a, A_MIN_LOG] / s0[a])
        out_asset[p, a, A_MAX_LOG] = math.log(out_asset[p, a, A_MAX_LOG] / s0[a])
    out_path[p, P_BAD_DEBT] = fund_paid + exch + adl_recv
    out_path[p, P_FUND_PAID] = fund_paid
    out_path[p, P_EXCHANGE_PAID] = exch
    out_path[p, P_FEES] = fees
    out_path[p, P_FUND_FINAL] = fund
    out_path[p, P_FUND_MIN] = fund_min
    out_path[p, P_ADL_PAID] = adl_paid
    out_path[p, P_ADL_RECEIVED] = adl_recv
    out_path[p, P_MARKET_PNL] = gmk
    out_path[p, P_WEALTH_CHANGE] = w1 - w0
    out_path[p, P_DEPOSITS] = 0.0
    out_path[p, P_CALLS] = n_call
    out_path[p, P_LIQUIDATIONS] = n_liq
    out_path[p, P_BANKRUPTCIES] = n_bank
    out_path[p, P_ADL_EVENTS] = n_adl
    out_path[p, P_PARTIALS] = 0.0
    out_path[p, P_TOPUPS] = 0.0


@kernel
def _fast_block(
    b, n_paths, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0,
    tab_mmr, tab_cum, tab_n,
    acc_asset, acc_inv, acc_q, acc_entry, acc_face, acc_tab, acc_usd, acc_wusd, acc_coin,
    acc_wcoin, a_full, b_full, a_tot, b_tot,
    liq_start, liq_acc, liq_thr, mc_start, mc_acc, mc_thr, side_start, side_acc,
    lvl_px, out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
):  # fmt: skip
    n_acc = acc_q.shape[0]
    n_a = paths.shape[2]
    n_lists = 2 * n_a
    st_state = np.full(n_acc, -1, np.int32)  # path index of the last write (no reset)
    st_call = np.full(n_acc, -1, np.int32)
    st_adl = np.full(n_acc, -1, np.int32)
    cq = np.empty(n_acc)  # read only where st_state says the path wrote them
    cu = np.empty(n_acc)
    cc = np.empty(n_acc)
    touched = np.empty(n_acc, np.int64)
    live = np.empty(n_acc, np.int64)
    live_pos = np.full(n_acc, -1, np.int32)
    buf = np.empty(n_acc, np.int64)
    rank_acc = np.empty(n_acc, np.int64)
    rank_key = np.empty(n_acc)
    rank_len = np.zeros(n_lists, np.int64)
    rank_stamp = np.full(n_lists, -1, np.int64)
    s0 = np.empty(n_a)
    J = np.empty(n_a)
    P0 = np.empty(n_a)
    P = np.empty(n_a)
    X = np.empty(n_a)
    plast = np.empty(n_a)
    H = np.empty(n_a)
    liq_ptr = np.empty(n_lists, np.int64)
    mc_ptr = np.empty(n_lists, np.int64)
    for p in range(b * PATH_BLOCK, min((b + 1) * PATH_BLOCK, n_paths)):
        _fast_path(
            p, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0,
            tab_mmr, tab_cum, tab_n,
            acc_asset, acc_inv, acc_q, acc_entry, acc_face, acc_tab, acc_usd, acc_wusd,
            acc_coin, acc_wcoin, a_full, b_full, a_tot, b_tot,
            liq_start, liq_acc, liq_thr, mc_start, mc_acc, mc_thr, side_start, side_acc,
            lvl_px,
            st_state, st_call, st_adl, cq, cu, cc, touched, live, live_pos, buf, rank_acc,
            rank_key, rank_len, rank_stamp,
            s0, J, P0, P, X, plast, H, liq_ptr, mc_ptr,
            out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
        )  # fmt: skip


@parallel_kernel
def _fast_kernel(
    n_paths, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0,
    tab_mmr, tab_cum, tab_n,
    acc_asset, acc_inv, acc_q, acc_entry, acc_face, acc_tab, acc_usd, acc_wusd, acc_coin,
    acc_wcoin, a_full, b_full, a_tot, b_tot,
    liq_start, liq_acc, liq_thr, mc_start, mc_acc, mc_thr, side_start, side_acc,
    lvl_px, out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
):  # fmt: skip
    n_blocks = (n_paths + PATH_BLOCK - 1) // PATH_BLOCK
    for b in prange(n_blocks):
        _fast_block(
            b, n_paths, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0,
            tab_mmr, tab_cum, tab_n,
            acc_asset, acc_inv, acc_q, acc_entry, acc_face, acc_tab, acc_usd, acc_wusd,
            acc_coin, acc_wcoin, a_full, b_full, a_tot, b_tot,
            liq_start, liq_acc, liq_thr, mc_start, mc_acc, mc_thr, side_start, side_acc,
            lvl_px, out_path, out_asset, counts[b], levels[b], rec, trk, trk_acc, acct_out,
        )  # fmt: skip


# =========================================================================== general path
@kernel
def _settle_if_closed(i, start, q, usd, bal, P, H):
    # Account i, if it has no open position left, settles its debts at the marks: coin debts
    # bought back with USD, then a USD debt paid by selling coins in column order. Wealth
    # neutral at the marks; the exposure H of the coins changes with the balances. Called
    # once per liquidation or full ADL of an account, not per step.
    for k in range(start[i], start[i + 1]):
        if q[k] != 0.0:
            return
    n_a = P.shape[0]
    u = usd[i]
    for b in range(n_a):
        c0 = bal[i, b]
        u, c = _buy_back(u, c0, P[b])
        bal[i, b] = c
        H[b] += c - c0
    for b in range(n_a):
        c0 = bal[i, b]
        u, c = _sell_for(u, c0, P[b])
        bal[i, b] = c
        H[b] += c - c0
    usd[i] = u


@kernel
def _cross_path(
    p, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0, partial,
    partial_target, grace, topup_prob, topup_target, key,
    tab_mmr, tab_cum, tab_n,
    start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0, w_usd,
    bal0, w_bal, side_start, side_pos, h0,
    lvl_px,
    q, usd, bal, call_step, part_step, st_call, st_liq, st_bank, st_adl, buf, rank_pos_arr,
    rank_key, rank_len, rank_stamp, xp, pp, balp,
    s0, J, P0, P, X, plast, H,
    out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
):  # fmt: skip
    n_a = s0.shape[0]
    n_acc = usd0.shape[0]
    n_pos = pos_q.shape[0]
    n_lvl = levels.shape[1]
    n_rec = rec.shape[0]
    rs = block_state(key, p)
    for a in range(n_a):
        s0[a] = paths[p, 0, a]
        J[a] = 0.0
        P[a] = s0[a]
        plast[a] = s0[a]
        H[a] = h0[a]
        out_asset[p, a, A_LIQ_VOLUME] = 0.0
        out_asset[p, a, A_ADL_VOLUME] = 0.0
        out_asset[p, a, A_MIN_LOG] = s0[a]  # extremes as prices until the end of the path
        out_asset[p, a, A_MAX_LOG] = s0[a]
        out_asset[p, a, A_MAX_IMPACT] = 0.0
        if p < n_rec:
            rec[p, 0, a] = s0[a]
    for k in range(n_pos):
        q[k] = pos_q[k]
    for lst in range(2 * n_a):
        rank_stamp[lst] = -1
    for s in range(trk_acc.shape[0]):
        _track_reset(acct_out, p, s)
    w0 = 0.0
    for i in range(n_acc):
        usd[i] = usd0[i]
        call_step[i] = -1
        part_step[i] = -1
        w = usd0[i]
        for a in range(n_a):
            bal[i, a] = bal0[i, a]
            w += bal0[i, a] * s0[a]
        for k in range(start[i], start[i + 1]):
            w += _upnl(q[k], s0[pos_asset[k]], pos_entry[k], pos_face[k], pos_inv[k] == 1)
        w0 += w
    fund = fund0
    fund_min = fund0
    fees = 0.0
    fund_paid = 0.0
    exch = 0.0
    adl_paid = 0.0
    adl_recv = 0.0
    deposits = 0.0
    gmk = 0.0
    n_call = 0
    n_liq = 0
    n_bank = 0
    n_adl = 0
    n_part = 0
    n_top = 0
    for t in range(1, n_steps + 1):
        tstamp = p * (n_steps + 1) + t
        for a in range(n_a):
            J[a] *= rho[a]
            P0[a] = paths[p, t, a] * math.exp(J[a]) if J[a] != 0.0 else paths[p, t, a]
            P[a] = P0[a]
            X[a] = 0.0
            if P0[a] < out_asset[p, a, A_MIN_LOG]:
                out_asset[p, a, A_MIN_LOG] = P0[a]
            if P0[a] > out_asset[p, a, A_MAX_LOG]:
                out_asset[p, a, A_MAX_LOG] = P0[a]
            if abs(J[a]) > out_asset[p, a, A_MAX_IMPACT]:
                out_asset[p, a, A_MAX_IMPACT] = abs(J[a])
        while True:
            # ---- (1) margin calls (and top-ups), (2) accounts to liquidate
            nb = 0
            for i in range(n_acc):
                alive = False
                mb = _weighted(usd[i], w_usd[i])
                mm = 0.0
                for a in range(n_a):
                    mb += _weighted(bal[i, a], w_bal[i, a]) * P[a]
                for k in range(start[i], start[i + 1]):
                    qk = q[k]
                    if qk == 0.0:
                        continue
                    alive = True
                    a = pos_asset[k]
                    inv = pos_inv[k] == 1
                    mb += _upnl(qk, P[a], pos_entry[k], pos_face[k], inv)
                    nn = _notional(qk, P[a], pos_face[k], inv)
                    tb = pos_tab[k]
                    mk = 0.0
                    for kb in range(tab_n[tb]):
                        v = nn * tab_mmr[tb, kb] - (tab_cum[tb, kb] * P[a] if inv
                                                    else tab_cum[tb, kb])
                        if v > mk:
                            mk = v
                    mm += mk
                if not alive:
                    continue
                if call_step[i] < 0 and mb < mm:
                    call_step[i] = t
                    n_call += 1
                    if st_call[i] != p:
                        st_call[i] = p
                        counts[C_CALL, i] += 1
                        if trk[i] >= 0:
                            acct_out[p, trk[i], T_CALL_STEP] = t
                    if topup_prob > 0.0:
                        u, rs = uniform(rs)
                        if u < topup_prob:
                            # deposit USD until MB = topup_target x MM at the marks
                            dep = (topup_target * mm - mb) / w_usd[i]
                            mb -= _weighted(usd[i], w_usd[i])
                            usd[i] += dep
                            mb += _weighted(usd[i], w_usd[i])
                            deposits += dep
                            n_top += 1
                            call_step[i] = -1
                if mb < liq_frac * mm:
                    buf[nb] = i
                    nb += 1
                elif grace >= 0 and call_step[i] >= 0 and t - call_step[i] >= grace:
                    if mb < mm:
                        buf[nb] = i
                        nb += 1
                    else:
                        call_step[i] = -1  # recovered by the deadline: the call is cured
            if nb == 0:
                break
            # ---- (3) liquidate in account order
            for r in range(nb):
                i = buf[r]
                mb = _weighted(usd[i], w_usd[i])
                mm = 0.0
                ntot = 0.0
                alive = False
                for a in range(n_a):
                    mb += _weighted(bal[i, a], w_bal[i, a]) * P[a]
                for k in range(start[i], start[i + 1]):
                    qk = q[k]
                    if qk == 0.0:
                        continue
                    alive = True
                    a = pos_asset[k]
                    inv = pos_inv[k] == 1
                    mb += _upnl(qk, P[a], pos_entry[k], pos_face[k], inv)
                    nn = _notional(qk, P[a], pos_face[k], inv)
                    ntot += nn
                    tb = pos_tab[k]
                    mk = 0.0
                    for kb in range(tab_n[tb]):
                        v = nn * tab_mmr[tb, kb] - (tab_cum[tb, kb] * P[a] if inv
                                                    else tab_cum[tb, kb])
                        if v > mk:
                            mk = v
                    mm += mk
                if not alive:
                    continue
                soft = grace >= 0 and call_step[i] >= 0 and t - call_step[i] >= grace
                if not (mb < liq_frac * mm or (soft and mb < mm)):
                    continue
                for b in range(n_a):
                    gmk += H[b] * (P[b] - plast[b])
                    plast[b] = P[b]
                phi = 1.0
                if partial and part_step[i] != t and mb > 0.0:
                    den = partial_target * mm - fee_rate * ntot
                    if den > 0.0:
                        phi = (partial_target * mm - mb) / den
                    if phi > 1.0:
                        phi = 1.0
                # projected equity after a market close-out of the fraction phi
                for _attempt in range(2):
                    usdp = usd[i]
                    for a in range(n_a):
                        xp[a] = X[a]
                        pp[a] = P[a]
                        balp[a] = bal[i, a]
                    for k in range(start[i], start[i + 1]):
                        qk = q[k]
                        if qk == 0.0:
                            continue
                        a = pos_asset[k]
                        inv = pos_inv[k] == 1
                        dq = qk if phi == 1.0 else phi * qk
                        sg = 1.0 if qk > 0.0 else -1.0
                        x1 = xp[a] - sg * (abs(dq) * pos_face[k] if inv else abs(dq) * P0[a])
                        xf = (P0[a] if depth[a] == np.inf else
                              P0[a] * math.exp(_fill_log(xp[a], x1, depth[a], k_lin[a],
                                                         k_sqrt[a])))
                        xp[a] = x1
                        pp[a] = (P0[a] if depth[a] == np.inf else
                                 P0[a] * math.exp(_impact(x1, depth[a], k_lin[a], k_sqrt[a])))
                        if inv:
                            balp[a] += dq * pos_face[k] * (1.0 / pos_entry[k] - 1.0 / xf)
                        else:
                            usdp += dq * (xf - pos_entry[k])
                    w_proj = usdp
                    for a in range(n_a):
                        w_proj += balp[a] * pp[a]
                    if phi < 1.0:
                        for k in range(start[i], start[i + 1]):
                            if q[k] != 0.0:
                                a = pos_asset[k]
                                w_proj += _upnl(q[k] - phi * q[k], pp[a], pos_entry[k],
                                                pos_face[k], pos_inv[k] == 1)
                        if w_proj < 0.0:
                            phi = 1.0
                            continue
                    break
                n_liq += 1
                if st_liq[i] != p:
                    st_liq[i] = p
                    counts[C_LIQ, i] += 1
                    if trk[i] >= 0:
                        acct_out[p, trk[i], T_LIQ_STEP] = t
                        acct_out[p, trk[i], T_LIQ_PRICE] = P[pos_asset[start[i]]]
                bankrupt = False
                market_usd = 0.0
                if phi == 1.0 and w_proj < 0.0 and fund < -w_proj:
                    # ---- auto-deleveraging of every position, at the marks
                    bankrupt = True
                    w_mark = usd[i]
                    for a in range(n_a):
                        w_mark += bal[i, a] * P[a]
                    for k in range(start[i], start[i + 1]):
                        if q[k] != 0.0:
                            a = pos_asset[k]
                            w_mark += _upnl(q[k], P[a], pos_entry[k], pos_face[k],
                                            pos_inv[k] == 1)
                    deficit = -w_mark if w_mark < 0.0 else 0.0
                    for k in range(start[i], start[i + 1]):
                        qk = q[k]
                        if qk == 0.0:
                            continue
                        a = pos_asset[k]
                        pa = P[a]
                        inv = pos_inv[k] == 1
                        ent = pos_entry[k]
                        fc = pos_face[k]
                        sg = 1.0 if qk > 0.0 else -1.0
                        q_usd = _notional(qk, pa, fc, inv)
                        d_k = deficit * (q_usd / ntot)
                        opp = 2 * a + (1 if qk > 0.0 else 0)
                        base = side_start[opp]
                        if rank_stamp[opp] != tstamp:
                            # rank the opposite side once per step: a binary max-heap on
                            # (score, then lower position number) in this side's segment
                            n_r = 0
                            for kk in range(side_start[opp], side_start[opp + 1]):
                                m = side_pos[kk]
                                if q[m] == 0.0:
                                    continue
                                j = pos_acc[m]
                                wj = usd[j]
                                for b in range(n_a):
                                    wj += bal[j, b] * P[b]
                                for m2 in range(start[j], start[j + 1]):
                                    if q[m2] != 0.0:
                                        b = pos_asset[m2]
                                        wj += _upnl(q[m2], P[b], pos_entry[m2], pos_face[m2],
                                                    pos_inv[m2] == 1)
                                score = _adl_score(
                                    q[m], pa, pos_entry[m],
                                    _notional(q[m], pa, pos_face[m], pos_inv[m] == 1), wj)
                                _rank_push(rank_key, rank_pos_arr, base, n_r, score, m)
                                n_r += 1
                            rank_len[opp] = n_r
                            rank_stamp[opp] = tstamp
                        rem = q_usd
                        while rem > 0.0 and rank_len[opp] > 0:
                            m = rank_pos_arr[base]  # the top of the ranking
                            qm = q[m]
                            j = pos_acc[m]
                            pop = qm == 0.0 or j == i  # closed, or the bankrupt's own hedge
                            if not pop:
                                invm = pos_inv[m] == 1
                                em = pos_entry[m]
                                fm = pos_face[m]
                                sm = 1.0 if qm > 0.0 else -1.0
                                slope_m0 = _slope(qm, em, fm, invm)
                                bal_j0 = bal[j, a]
                                nm = _notional(qm, pa, fm, invm)
                                if nm <= rem:
                                    take_usd = nm
                                    take_q = abs(qm)
                                    rem -= nm
                                    new_q = 0.0
                                    pop = True
                                else:
                                    take_usd = rem
                                    take_q = rem / fm if invm else rem / pa
                                    rem = 0.0
                                    new_q = qm - sm * take_q
                                if invm:
                                    bal[j, a] += sm * take_q * fm * (1.0 / em - 1.0 / pa)
                                else:
                                    usd[j] += sm * take_q * (pa - em)
                                q[m] = new_q
                                tau = d_k * (take_usd / q_usd)
                                usd[j] -= tau
                                adl_paid += tau
                                H[a] += (bal[j, a] - bal_j0 + _slope(new_q, em, fm, invm)
                                         - slope_m0)
                                if new_q == 0.0:
                                    _settle_if_closed(j, start, q, usd, bal, P, H)
                                if st_adl[j] != p:
                                    st_adl[j] = p
                                    counts[C_ADL, j] += 1
                                    if trk[j] >= 0:
                                        acct_out[p, trk[j], T_ADL_STEP] = t
                                n_adl += 1
                                out_asset[p, a, A_ADL_VOLUME] += take_usd
                            if pop:  # last element to the root, sift down
                                rank_len[opp] -= 1
                                _rank_pop(rank_key, rank_pos_arr, base, rank_len[opp])
                        taken = q_usd - rem
                        if rem == 0.0:
                            take_q = abs(qk)
                        else:
                            take_q = taken / fc if inv else taken / pa
                        bal_i0 = bal[i, a]
                        slope_k0 = _slope(qk, ent, fc, inv)
                        if inv:
                            bal[i, a] += sg * take_q * fc * (1.0 / ent - 1.0 / pa)
                        else:
                            usd[i] += sg * take_q * (pa - ent)
                        q[k] = 0.0 if rem == 0.0 else qk - sg * take_q
                        H[a] += bal[i, a] - bal_i0 + _slope(q[k], ent, fc, inv) - slope_k0
                        received = d_k * (taken / q_usd)
                        usd[i] += received
                        adl_recv += received
                        if trk[i] >= 0:
                            acct_out[p, trk[i], T_BAD_DEBT] += received
                    phi = 1.0
                # ---- market orders: the fraction phi, or what ADL left, of every position
                for k in range(start[i], start[i + 1]):
                    qk = q[k]
                    if qk == 0.0:
                        continue
                    a = pos_asset[k]
                    pa = P[a]
                    inv = pos_inv[k] == 1
                    ent = pos_entry[k]
                    fc = pos_face[k]
                    dq = qk if phi == 1.0 else phi * qk
                    sg = 1.0 if qk > 0.0 else -1.0
                    x1 = X[a] - sg * (abs(dq) * fc if inv else abs(dq) * P0[a])
                    if depth[a] == np.inf:
                        gi = 0.0
                        xf = P0[a]
                        pn = P0[a]
                    else:
                        gi = _impact(x1, depth[a], k_lin[a], k_sqrt[a])
                        xf = P0[a] * math.exp(_fill_log(X[a], x1, depth[a], k_lin[a],
                                                        k_sqrt[a]))
                        pn = P0[a] * math.exp(gi)
                    bal_i0 = bal[i, a]
                    slope_k0 = _slope(qk, ent, fc, inv)
                    if inv:
                        gmk += dq * fc * (1.0 - pa / xf)
                        bal[i, a] += dq * fc * (1.0 / ent - 1.0 / xf)
                        vol = abs(dq) * fc
                    else:
                        gmk += dq * (xf - pa)
                        usd[i] += dq * (xf - ent)
                        vol = abs(dq) * xf
                    q[k] = 0.0 if phi == 1.0 else qk - dq
                    H[a] += bal[i, a] - bal_i0 + _slope(q[k], ent, fc, inv) - slope_k0
                    X[a] = x1
                    P[a] = pn
                    gmk += H[a] * (pn - plast[a])
                    plast[a] = pn
                    market_usd += vol
                    out_asset[p, a, A_LIQ_VOLUME] += vol
                    if pn < out_asset[p, a, A_MIN_LOG]:
                        out_asset[p, a, A_MIN_LOG] = pn
                    if pn > out_asset[p, a, A_MAX_LOG]:
                        out_asset[p, a, A_MAX_LOG] = pn
                    lo_k = 1  # bin of the fill: interior price edges at or below it
                    hi_k = n_lvl
                    while lo_k < hi_k:
                        mid = (lo_k + hi_k) // 2
                        if lvl_px[a, mid] <= xf:
                            lo_k = mid + 1
                        else:
                            hi_k = mid
                    kb = lo_k - 1
                    levels[a, kb] += vol
                    ji = abs(J[a] + gi)
                    if ji > out_asset[p, a, A_MAX_IMPACT]:
                        out_asset[p, a, A_MAX_IMPACT] = ji
                # ---- settlement
                w = usd[i]
                for a in range(n_a):
                    w += bal[i, a] * P[a]
                for k in range(start[i], start[i + 1]):
                    if q[k] != 0.0:
                        a = pos_asset[k]
                        w += _upnl(q[k], P[a], pos_entry[k], pos_face[k], pos_inv[k] == 1)
                if w < 0.0:
                    bankrupt = True
                    pay = -w
                    fp = fund if fund < pay else pay
                    fund -= fp
                    fund_paid += fp
                    exch += pay - fp
                    if trk[i] >= 0:
                        acct_out[p, trk[i], T_BAD_DEBT] += pay
                    usd[i] = 0.0
                    for a in range(n_a):
                        H[a] -= bal[i, a]
                        bal[i, a] = 0.0
                else:
                    if w > 0.0 and market_usd > 0.0:
                        fee = fee_rate * market_usd
                        if fee > w:
                            fee = w
                        usd[i] -= fee
                        fund += fee
                        fees += fee
                    if phi == 1.0:  # closed: its debts are settled at the marks
                        _settle_if_closed(i, start, q, usd, bal, P, H)
                if fund < fund_min:
                    fund_min = fund
                if phi < 1.0:
                    n_part += 1
                    part_step[i] = t
                    call_step[i] = -1
                if bankrupt:
                    n_bank += 1
                    if st_bank[i] != p:
                        st_bank[i] = p
                        counts[C_BANKRUPT, i] += 1
                        if trk[i] >= 0:
                            acct_out[p, trk[i], T_BANK_STEP] = t
        for a in range(n_a):
            if X[a] != 0.0:
                J[a] += _impact(X[a], depth[a], k_lin[a], k_sqrt[a])
            if p < n_rec:
                rec[p, t, a] = P[a]
    for b in range(n_a):
        gmk += H[b] * (P[b] - plast[b])
    w1 = 0.0
    for i in range(n_acc):
        w = usd[i]
        for a in range(n_a):
            w += bal[i, a] * P[a]
        for k in range(start[i], start[i + 1]):
            if q[k] != 0.0:
                a = pos_asset[k]
                w += _upnl(q[k], P[a], pos_entry[k], pos_face[k], pos_inv[k] == 1)
        w1 += w
        if trk[i] >= 0:
            acct_out[p, trk[i], T_FINAL_EQUITY] = w
    for a in range(n_a):
        out_asset[p, a, A_MIN_LOG] = math.log(out_asset[p, a, A_MIN_LOG] / s0[a])
        out_asset[p, a, A_MAX_LOG] = math.log(out_asset[p, a, A_MAX_LOG] / s0[a])
    out_path[p, P_BAD_DEBT] = fund_paid + exch + adl_recv
    out_path[p, P_FUND_PAID] = fund_paid
    out_path[p, P_EXCHANGE_PAID] = exch
    out_path[p, P_FEES] = fees
    out_path[p, P_FUND_FINAL] = fund
    out_path[p, P_FUND_MIN] = fund_min
    out_path[p, P_ADL_PAID] = adl_paid
    out_path[p, P_ADL_RECEIVED] = adl_recv
    out_path[p, P_MARKET_PNL] = gmk
    out_path[p, P_WEALTH_CHANGE] = w1 - w0
    out_path[p, P_DEPOSITS] = deposits
    out_path[p, P_CALLS] = n_call
    out_path[p, P_LIQUIDATIONS] = n_liq
    out_path[p, P_BANKRUPTCIES] = n_bank
    out_path[p, P_ADL_EVENTS] = n_adl
    out_path[p, P_PARTIALS] = n_part
    out_path[p, P_TOPUPS] = n_top


@kernel
def _cross_block(
    b, n_paths, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0, partial,
    partial_target, grace, topup_prob, topup_target, key,
    tab_mmr, tab_cum, tab_n,
    start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0, w_usd,
    bal0, w_bal, side_start, side_pos, h0,
    lvl_px, out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
):  # fmt: skip
    n_acc = usd0.shape[0]
    n_pos = pos_q.shape[0]
    n_a = paths.shape[2]
    q = np.empty(n_pos)
    usd = np.empty(n_acc)
    bal = np.empty((n_acc, n_a))
    call_step = np.empty(n_acc, np.int64)
    part_step = np.empty(n_acc, np.int64)
    st_call = np.full(n_acc, -1, np.int32)
    st_liq = np.full(n_acc, -1, np.int32)
    st_bank = np.full(n_acc, -1, np.int32)
    st_adl = np.full(n_acc, -1, np.int32)
    buf = np.empty(n_acc, np.int64)
    rank_pos_arr = np.empty(max(n_pos, 1), np.int64)
    rank_key = np.empty(max(n_pos, 1))
    rank_len = np.zeros(2 * n_a, np.int64)
    rank_stamp = np.full(2 * n_a, -1, np.int64)
    xp = np.empty(n_a)
    pp = np.empty(n_a)
    balp = np.empty(n_a)
    s0 = np.empty(n_a)
    J = np.empty(n_a)
    P0 = np.empty(n_a)
    P = np.empty(n_a)
    X = np.empty(n_a)
    plast = np.empty(n_a)
    H = np.empty(n_a)
    for p in range(b * PATH_BLOCK, min((b + 1) * PATH_BLOCK, n_paths)):
        _cross_path(
            p, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0, partial,
            partial_target, grace, topup_prob, topup_target, key,
            tab_mmr, tab_cum, tab_n,
            start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0,
            w_usd, bal0, w_bal, side_start, side_pos, h0,
            lvl_px,
            q, usd, bal, call_step, part_step, st_call, st_liq, st_bank, st_adl, buf,
            rank_pos_arr, rank_key, rank_len, rank_stamp, xp, pp, balp,
            s0, J, P0, P, X, plast, H,
            out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
        )  # fmt: skip


@parallel_kernel
def _cross_kernel(
    n_paths, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0, partial,
    partial_target, grace, topup_prob, topup_target, key,
    tab_mmr, tab_cum, tab_n,
    start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0, w_usd,
    bal0, w_bal, side_start, side_pos, h0,
    lvl_px, out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
):  # fmt: skip
    n_blocks = (n_paths + PATH_BLOCK - 1) // PATH_BLOCK
    for b in prange(n_blocks):
        _cross_block(
            b, n_paths, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0,
            partial, partial_target, grace, topup_prob, topup_target, key,
            tab_mmr, tab_cum, tab_n,
            start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0,
            w_usd, bal0, w_bal, side_start, side_pos, h0,
            lvl_px, out_path, out_asset, counts[b], levels[b], rec, trk, trk_acc, acct_out,
        )  # fmt: skip


# =========================================================================== python layer
def _f64(x) -> np.ndarray:
    return np.array(x, dtype=np.float64, order="C")


def _i64(x) -> np.ndarray:
    return np.array(x, dtype=np.int64, order="C")


def _check(name: str, arr: np.ndarray, *, low=None, high=None, low_open=False,
           high_open=False, allow_inf=False) -> None:
    """Range check of an array; the error names the argument, the first bad index and value."""
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if np.any(bad):
        idx = tuple(int(v) for v in np.argwhere(bad)[0])
        where = f" at index {idx[0] if len(idx) == 1 else idx}" if arr.ndim else ""
        rng = []
        if low is not None:
            rng.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            rng.append(f"{'<' if high_open else '<='} {high:g}")
        kind = "not NaN" if allow_inf else "finite"
        raise ValueError(f"{name} must be {kind}{' and ' if rng else ''}{' and '.join(rng)}, "
                         f"got {arr[idx] if arr.ndim else float(arr)!r}{where}")


def _shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")


def _tables(tables: MarginTables) -> MarginTables:
    mmr, cum, n = _f64(tables.mmr), _f64(tables.cum), _i64(tables.n)
    if mmr.ndim != 2 or mmr.shape[0] == 0 or mmr.shape[1] == 0:
        raise ValueError(f"tables.mmr must be 2-D (n_tables, max_brackets), got shape "
                         f"{mmr.shape}")
    _shape("tables.cum", cum, mmr.shape)
    _shape("tables.n", n, (mmr.shape[0],))
    if np.any((n < 1) | (n > mmr.shape[1])):
        k = int(np.flatnonzero((n < 1) | (n > mmr.shape[1]))[0])
        raise ValueError(f"tables.n must be in [1, {mmr.shape[1]}], got {n[k]} at index {k}")
    used = np.arange(mmr.shape[1])[None, :] < n[:, None]
    _check("tables.mmr", np.where(used, mmr, 0.0), low=0.0, high=1.0, high_open=True)
    _check("tables.cum", np.where(used, cum, 0.0), low=0.0)
    return MarginTables(np.where(used, mmr, 0.0), np.where(used, cum, 0.0), n)


def _impact_params(impact: ImpactParams, n_a: int) -> ImpactParams:
    out = []
    for name, x in zip(("depth", "linear", "sqrt", "decay"), impact, strict=True):
        arr = _f64(x)
        if arr.ndim == 0:
            arr = np.full(n_a, float(arr))
        _shape(f"impact.{name}", arr, (n_a,))
        out.append(arr)
    depth, lin, sq, decay = out
    _check("impact.depth (USD)", depth, low=0.0, low_open=True, allow_inf=True)
    _check("impact.linear", lin, low=0.0)
    _check("impact.sqrt", sq, low=0.0)
    _check("impact.decay (per step)", decay, low=0.0, high=1.0)
    return ImpactParams(depth, lin, sq, decay)


def _rules(rules: CascadeRules) -> CascadeRules:
    def real(name, v, **kw):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"rules.{name} must be a real number, got {v!r}")
        _check(f"rules.{name}", np.asarray(float(v)), **kw)
        return float(v)

    if not isinstance(rules.partial, (bool, np.bool_)):
        raise TypeError(f"rules.partial must be True or False, got {rules.partial!r}")
    if isinstance(rules.grace, (bool, np.bool_)) or not isinstance(rules.grace, numbers.Integral):
        raise TypeError(f"rules.grace must be an int (steps, -1 for none), got {rules.grace!r}")
    if rules.grace < -1:
        raise ValueError(f"rules.grace must be >= -1 (steps; -1 for none), got {rules.grace}")
    return CascadeRules(
        real("liq_fraction", rules.liq_fraction, low=0.0, high=1.0, low_open=True),
        real("fee_rate", rules.fee_rate, low=0.0, high=1.0, high_open=True),
        real("fund", rules.fund, low=0.0, allow_inf=True),
        bool(rules.partial),
        real("partial_target", rules.partial_target, low=1.0),
        int(rules.grace),
        real("topup_prob", rules.topup_prob, low=0.0, high=1.0),
        real("topup_target", rules.topup_target, low=1.0),
    )


def _position_checks(prefix, asset, inverse, q, entry, face, table, n_a, n_tab):
    if np.any((asset < 0) | (asset >= n_a)):
        k = int(np.flatnonzero((asset < 0) | (asset >= n_a))[0])
        raise ValueError(f"{prefix}asset must be a price column in [0, {n_a}), got {asset[k]} "
                         f"at index {k}")
    if np.any((inverse != 0) & (inverse != 1)):
        k = int(np.flatnonzero((inverse != 0) & (inverse != 1))[0])
        raise ValueError(f"{prefix}inverse must be 0 or 1, got {inverse[k]} at index {k}")
    if np.any((table < 0) | (table >= n_tab)):
        k = int(np.flatnonzero((table < 0) | (table >= n_tab))[0])
        raise ValueError(f"{prefix}table must be a row of tables in [0, {n_tab}), got "
                         f"{table[k]} at index {k}")
    _check(f"{prefix}q", q)
    _check(f"{prefix}entry", entry, low=0.0, low_open=True)
    _check(f"{prefix}face", face, low=0.0, low_open=True)


def _single(acc: SingleAccounts, n_a: int, n_tab: int) -> SingleAccounts:
    asset, inverse, table = _i64(acc.asset), _i64(acc.inverse), _i64(acc.table)
    fl = [_f64(x) for x in (acc.q, acc.entry, acc.face, acc.usd, acc.w_usd, acc.coin,
                            acc.w_coin)]
    n = asset.shape[0]
    for name, arr in zip(SingleAccounts._fields, (asset, inverse, *fl[:3], table, *fl[3:]),
                         strict=True):
        _shape(f"accounts.{name}", arr, (n,))
    q, entry, face, usd, w_usd, coin, w_coin = fl
    _position_checks("accounts.", asset, inverse, q, entry, face, table, n_a, n_tab)
    _check("accounts.usd", usd)
    _check("accounts.coin", coin)
    _check("accounts.w_usd", w_usd, low=0.0, high=1.0, low_open=True)
    _check("accounts.w_coin", w_coin, low=0.0, high=1.0, low_open=True)
    return SingleAccounts(asset, inverse, q, entry, face, table, usd, w_usd, coin, w_coin)


def _cross(acc: CrossAccounts, n_a: int, n_tab: int) -> CrossAccounts:
    start = _i64(acc.start)
    if start.ndim != 1 or start.size < 1 or start[0] != 0 or np.any(np.diff(start) < 0):
        raise ValueError("accounts.start must be a non-decreasing 1-D CSR index starting at 0, "
                         f"got {start!r}")
    n_acc, n_pos = start.size - 1, int(start[-1])
    pos_asset, pos_inv, pos_tab = _i64(acc.pos_asset), _i64(acc.pos_inverse), _i64(acc.pos_table)
    pos_q, pos_entry, pos_face = _f64(acc.pos_q), _f64(acc.pos_entry), _f64(acc.pos_face)
    for name, arr in (("pos_asset", pos_asset), ("pos_inverse", pos_inv), ("pos_q", pos_q),
                      ("pos_entry", pos_entry), ("pos_face", pos_face), ("pos_table", pos_tab)):
        _shape(f"accounts.{name}", arr, (n_pos,))
    _position_checks("accounts.pos_", pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab,
                     n_a, n_tab)
    usd, w_usd, bal, w_bal = _f64(acc.usd), _f64(acc.w_usd), _f64(acc.bal), _f64(acc.w_bal)
    _shape("accounts.usd", usd, (n_acc,))
    _shape("accounts.w_usd", w_usd, (n_acc,))
    _shape("accounts.bal", bal, (n_acc, n_a))
    _shape("accounts.w_bal", w_bal, (n_acc, n_a))
    _check("accounts.usd", usd)
    _check("accounts.bal", bal)
    _check("accounts.w_usd", w_usd, low=0.0, high=1.0, low_open=True)
    _check("accounts.w_bal", w_bal, low=0.0, high=1.0, low_open=True)
    return CrossAccounts(start, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd,
                         w_usd, bal, w_bal)


def _max_lines(nn, price, inverse, table, tables):
    """MM = max_k (N mmr_k - cum_k) per position (USD), vectorised; N as in the kernels."""
    mmr, cum = tables.mmr[table], tables.cum[table]
    used = np.arange(mmr.shape[1])[None, :] < tables.n[table][:, None]
    lines = nn[:, None] * mmr - np.where(inverse[:, None] == 1, cum * price[:, None], cum)
    return np.max(np.where(used, lines, -np.inf), axis=1).clip(min=0.0)


def margin_state(accounts: SingleAccounts | CrossAccounts, tables: MarginTables,
                 prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Margin balance, maintenance margin and equity (USD) per account at ``prices``.

    Parameters
    ----------
    accounts : SingleAccounts or CrossAccounts
    tables : MarginTables
    prices : ndarray, shape (n_assets,)
        Mark price of every price column.

    Returns
    -------
    (mb, mm, equity) : three ndarrays of shape (n_accounts,)
        The quantities the kernels compare (see the module notes).
    """
    prices = _f64(prices)
    w = lambda x, wt: np.where(x > 0.0, x * wt, x)  # noqa: E731
    if isinstance(accounts, SingleAccounts):
        pa = prices[accounts.asset]
        inv = accounts.inverse
        upnl = np.where(inv == 1, accounts.q * accounts.face * (pa / accounts.entry - 1.0),
                        accounts.q * (pa - accounts.entry))
        nn = np.where(inv == 1, np.abs(accounts.q) * accounts.face, np.abs(accounts.q) * pa)
        mm = np.where(accounts.q != 0.0, _max_lines(nn, pa, inv, accounts.table, tables), 0.0)
        mb = w(accounts.usd, accounts.w_usd) + w(accounts.coin, accounts.w_coin) * pa + upnl
        eq = accounts.usd + accounts.coin * pa + upnl
        return mb, mm, eq
    pa = prices[accounts.pos_asset]
    inv = accounts.pos_inverse
    q = accounts.pos_q
    upnl = np.where(inv == 1, q * accounts.pos_face * (pa / accounts.pos_entry - 1.0),
                    q * (pa - accounts.pos_entry))
    nn = np.where(inv == 1, np.abs(q) * accounts.pos_face, np.abs(q) * pa)
    mm_pos = np.where(q != 0.0, _max_lines(nn, pa, inv, accounts.pos_table, tables), 0.0)
    n_acc = accounts.usd.shape[0]
    acc = np.repeat(np.arange(n_acc), np.diff(accounts.start))
    upnl_acc = np.bincount(acc, weights=upnl, minlength=n_acc)
    mm = np.bincount(acc, weights=mm_pos, minlength=n_acc)
    mb = (w(accounts.usd, accounts.w_usd) + (w(accounts.bal, accounts.w_bal) @ prices)
          + upnl_acc)
    eq = accounts.usd + accounts.bal @ prices + upnl_acc
    return mb, mm, eq


def trigger_prices(accounts: SingleAccounts, tables: MarginTables, fraction: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    r"""Prices at which each one-position account's margin balance falls below ``fraction``
    times its maintenance margin.

    Margin balance and ``fraction`` x maintenance margin are, per bracket ``k``, affine in the
    price, so :math:`MB - \ell MM = \min_k(\alpha_k + \beta_k P)` (concave) and the account is
    triggered exactly when :math:`P < P_{lo}` or :math:`P > P_{hi}` with
    :math:`P_{lo} = \max_{\beta_k > 0} (-\alpha_k / \beta_k)` and
    :math:`P_{hi} = \min_{\beta_k < 0} (-\alpha_k / \beta_k)`.

    Parameters
    ----------
    accounts : SingleAccounts
    tables : MarginTables
    fraction : float
        ``liq_fraction`` for liquidation prices, 1.0 for margin-call prices.

    Returns
    -------
    (lo, hi) : two ndarrays of shape (n_accounts,)
        ``lo = 0`` means no trigger from below, ``hi = inf`` none from above; an account
        triggered at every price has ``lo = inf``. Accounts with ``q == 0`` never trigger.
    """
    q, inv = accounts.q, accounts.inverse == 1
    e, f = accounts.entry, accounts.face
    uh = np.where(accounts.usd > 0.0, accounts.usd * accounts.w_usd, accounts.usd)
    ch = np.where(accounts.coin > 0.0, accounts.coin * accounts.w_coin, accounts.coin)
    a_h = uh - np.where(inv, q * f, q * e)
    b_h = ch + np.where(inv, q * f / e, q)
    mmr, cum = tables.mmr[accounts.table], tables.cum[accounts.table]
    used = np.arange(mmr.shape[1])[None, :] < tables.n[accounts.table][:, None]
    absq = np.abs(q)[:, None]
    lam = float(fraction)
    alpha = np.where(inv[:, None], a_h[:, None] - lam * absq * f[:, None] * mmr,
                     a_h[:, None] + lam * cum)
    beta = np.where(inv[:, None], b_h[:, None] + lam * cum, b_h[:, None] - lam * absq * mmr)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = -alpha / beta
    lo = np.max(np.where(used & (beta > 0.0), root, 0.0), axis=1).clip(min=0.0)
    hi = np.min(np.where(used & (beta < 0.0), root, np.inf), axis=1).clip(min=0.0)
    always = np.any(used & (beta == 0.0) & (alpha < 0.0), axis=1)
    lo = np.where(always, np.inf, lo)
    never = q == 0.0
    return np.where(never, 0.0, lo), np.where(never, np.inf, hi)


def _sorted_lists(asset, lo, hi, n_a):
    """CSR lists 2a (trigger below, by price descending) and 2a + 1 (above, ascending)."""
    idx = np.arange(asset.size)
    down = lo > 0.0
    up = hi < np.inf
    lst = np.concatenate([2 * asset[down], 2 * asset[up] + 1])
    acc = np.concatenate([idx[down], idx[up]])
    key = np.concatenate([-lo[down], hi[up]])
    order = np.lexsort((key, lst))  # stable: ties stay in account order
    start = np.zeros(2 * n_a + 1, np.int64)
    np.cumsum(np.bincount(lst, minlength=2 * n_a), out=start[1:])
    thr = np.concatenate([lo[down], hi[up]])[order]
    return start, _i64(acc[order]), _f64(thr)


def _side_lists(asset, q, n_a):
    """CSR lists 2a (long positions on asset a) and 2a + 1 (short), in index order."""
    idx = np.arange(asset.size)
    live = q != 0.0
    lst = 2 * asset[live] + (q[live] < 0.0)
    order = np.argsort(lst, kind="stable")
    start = np.zeros(2 * n_a + 1, np.int64)
    np.cumsum(np.bincount(lst, minlength=2 * n_a), out=start[1:])
    return start, _i64(idx[live][order])


def _topup_key(seed) -> np.ndarray:
    """Key of the top-up streams: a child of the seed's sequence, so that the same seed
    never gives the same streams as the paths (whose key is ``seed_key(seed)``)."""
    seed_key(seed)  # validates
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif seed is None:
        ss = np.random.SeedSequence()
    else:
        ss = np.random.SeedSequence(int(seed))
    child = np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 0x746F7075))
    return child.generate_state(4, np.uint64)


def trigger_order(accounts: SingleAccounts, tables: MarginTables, liq_fraction: float, *,
                  prices: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The order in which the fast path numbers (and, within a round, processes) accounts.

    Accounts are sorted by asset, then trigger side (from below first), then trigger price
    (the first to trigger first), then index, so that a pointer walk through the sorted
    liquidation prices reads consecutive memory. :func:`simulate_cascade` with
    ``CrossAccounts`` built in this order gives the same results as with ``SingleAccounts``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_accounts,)
        A permutation of ``range(n_accounts)``.
    """
    lo, hi = trigger_prices(accounts, tables, liq_fraction) if prices is None else prices
    asset = np.asarray(accounts.asset, dtype=np.int64)
    primary = np.where(lo > 0.0, 2 * asset, np.where(hi < np.inf, 2 * asset + 1,
                                                     2 * asset + 2))
    key = np.where(lo > 0.0, -lo, np.where(hi < np.inf, hi, 0.0))
    return np.lexsort((key, primary)).astype(np.int64)  # stable: ties in index order


def _track(track, n_acc: int) -> np.ndarray:
    """Validated indices of the tracked accounts (int64, distinct, in [0, n_acc))."""
    if track is None:
        return np.zeros(0, np.int64)
    arr = np.asarray(track)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"track must be a 1-D array of account indices, got {track!r}")
    arr = _i64(arr)
    if np.any((arr < 0) | (arr >= n_acc)):
        k = int(np.flatnonzero((arr < 0) | (arr >= n_acc))[0])
        raise ValueError(f"track must hold account indices in [0, {n_acc}), got {arr[k]} at "
                         f"index {k}")
    if np.unique(arr).size != arr.size:
        raise ValueError("track must not repeat an account")
    return arr


def _slots(trk_acc: np.ndarray, n_acc: int) -> np.ndarray:
    """Per account (kernel numbering): its slot in the tracked outputs, or -1."""
    slot = np.full(n_acc, -1, np.int64)
    slot[trk_acc] = np.arange(trk_acc.size)
    return slot


def _check_initial(accounts, tables, s0, liq_fraction) -> None:
    mb, mm, _ = margin_state(accounts, tables, s0)
    bad = mb < liq_fraction * mm
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"account index {k} is already below its liquidation threshold at t = 0 (margin "
            f"balance {mb[k]:.6g} < {liq_fraction:g} x maintenance margin {mm[k]:.6g}); "
            f"{int(bad.sum())} account(s) in all")


def simulate_cascade(
    paths: np.ndarray,
    accounts: SingleAccounts | CrossAccounts,
    tables: MarginTables,
    impact: ImpactParams,
    rules: CascadeRules,
    *,
    level_edges: np.ndarray | None = None,
    record: int = 0,
    seed: int | np.random.SeedSequence | None = None,
    track: np.ndarray | None = None,
) -> CascadeArrays:
    """Run margin calls, liquidations, the insurance fund and ADL along every path.

    Parameters
    ----------
    paths : ndarray, shape (n_paths, n_steps + 1, n_assets)
        Exogenous prices (USD) per step, ``paths[:, 0]`` equal on every path (today's
        prices), as from :func:`marginlab.simulate.simulate_paths`.
    accounts : SingleAccounts or CrossAccounts
        One-position accounts (fast path) or cross-margin accounts (general path).
    tables : MarginTables
        Maintenance-margin bracket tables referenced by the positions.
    impact : ImpactParams
        Price impact per asset (a scalar broadcasts).
    rules : CascadeRules
        Liquidation fraction, fee rate, insurance fund (USD), partial liquidation, grace
        period (steps), top-ups. Partial liquidation, a grace period and top-ups need
        ``CrossAccounts``.
    level_edges : ndarray, optional
        Increasing, equally spaced bin edges of ``log(fill / S_0)`` for the liquidation
        volume by price level (default 80 bins over [-0.4, 0.4]).
    record : int
        Keep the mark prices of the first ``record`` paths.
    seed : int, SeedSequence or None
        Seed of the top-up draws (one stream per path, from a child of the seed's
        ``SeedSequence``, so the seed of the paths can be reused); only used when
        ``rules.topup_prob > 0``.
    track : array of int, optional
        Accounts (indices into ``accounts``) whose outcome on every path is kept in
        ``CascadeArrays.accounts`` (``TRACK_FIELDS``); memory ``n_paths x len(track) x 56``
        bytes. Default: none.

    Returns
    -------
    CascadeArrays

    Examples
    --------
    One long of 1 unit at 100 with 10 USD, maintenance rate 5 %, no impact: liquidated when
    the price falls to 94 (below 90 / 0.95), paying a 1 % fee on the 94 USD it sells.

    >>> acc = SingleAccounts(*(np.array([v]) for v in
    ...                        (0, 0, 1.0, 100.0, 1.0, 0, 10.0, 1.0, 0.0, 1.0)))
    >>> tables = MarginTables(np.array([[0.05]]), np.array([[0.0]]), np.array([1]))
    >>> out = simulate_cascade(np.array([[[100.0], [94.0]]]), acc, tables,
    ...                        ImpactParams(np.inf, 0.0, 0.0, 1.0), CascadeRules(fee_rate=0.01))
    >>> row = dict(zip(PATH_FIELDS, out.path[0].tolist()))
    >>> row["liquidations"], round(row["fees"], 6), round(row["wealth_change"], 6)
    (1.0, 0.94, -6.94)
    """
    paths = np.asarray(paths)
    if paths.dtype != np.float64 or not paths.flags.c_contiguous or not paths.flags.writeable:
        paths = _f64(paths)
    if paths.ndim != 3 or paths.shape[0] < 1 or paths.shape[1] < 2 or paths.shape[2] < 1:
        raise ValueError(f"paths must have shape (n_paths >= 1, n_steps + 1 >= 2, n_assets >= 1),"
                         f" got {paths.shape}")
    if not np.all(np.isfinite(paths)) or np.any(paths <= 0.0):
        raise ValueError("paths must be finite and > 0")
    if np.any(paths[:, 0, :] != paths[0, 0, :]):
        raise ValueError("paths[:, 0, :] must be today's prices, equal on every path")
    n_paths, n_t, n_a = paths.shape
    n_steps = n_t - 1
    tables = _tables(tables)
    n_tab = tables.n.shape[0]
    impact = _impact_params(impact, n_a)
    rules = _rules(rules)
    if isinstance(record, (bool, np.bool_)) or not isinstance(record, numbers.Integral):
        raise TypeError(f"record must be an int in [0, n_paths], got {record!r}")
    if not 0 <= record <= n_paths:
        raise ValueError(f"record must be in [0, n_paths = {n_paths}], got {record}")
    edges = np.linspace(-0.4, 0.4, 81) if level_edges is None else _f64(level_edges)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)):
        raise ValueError("level_edges must be a 1-D array of >= 2 finite edges")
    width = np.diff(edges)
    if np.any(width <= 0.0) or not np.allclose(width, width[0], rtol=1e-9, atol=0.0):
        raise ValueError("level_edges must be increasing and equally spaced")
    n_lvl = edges.size - 1
    n_blocks = (n_paths + PATH_BLOCK - 1) // PATH_BLOCK
    out_path = np.zeros((n_paths, N_PATH_FIELDS))
    out_asset = np.zeros((n_paths, n_a, N_ASSET_FIELDS))
    levels = np.zeros((n_blocks, n_a, n_lvl))
    rec = np.zeros((record, n_t, n_a))
    s0 = paths[0, 0, :].copy()
    lvl_px = _f64(s0[:, None] * np.exp(edges[None, :]))  # bin edges as prices
    n_given = (np.size(accounts.q) if isinstance(accounts, SingleAccounts)
               else np.size(accounts.start) - 1 if isinstance(accounts, CrossAccounts) else 0)
    trk_acc = _track(track, n_given)
    acct_out = np.zeros((n_paths, trk_acc.size, N_TRACK_FIELDS))
    if isinstance(accounts, SingleAccounts):
        if rules.partial or rules.grace >= 0 or rules.topup_prob > 0.0:
            raise ValueError("partial liquidation, a grace period and top-ups need "
                             "CrossAccounts (the general path); got SingleAccounts")
        acc = _single(accounts, n_a, n_tab)
        n_acc = acc.q.shape[0]
        _check_initial(acc, tables, s0, rules.liq_fraction)
        lo, hi = trigger_prices(acc, tables, rules.liq_fraction)
        perm = trigger_order(acc, tables, rules.liq_fraction, prices=(lo, hi))
        acc = SingleAccounts(*(_i64(x[perm]) if x.dtype == np.int64 else _f64(x[perm])
                               for x in acc))
        inv_perm = np.empty_like(perm)
        inv_perm[perm] = np.arange(perm.size)
        trk_acc = _i64(inv_perm[trk_acc])  # kernel numbering
        lo, hi = lo[perm], hi[perm]
        inv = acc.inverse == 1
        a_full = acc.usd - np.where(inv, acc.q * acc.face, acc.q * acc.entry)
        b_full = acc.coin + np.where(inv, acc.q * acc.face / acc.entry, acc.q)
        b_tot = np.bincount(acc.asset, weights=b_full, minlength=n_a)
        liq_start, liq_acc, liq_thr = _sorted_lists(acc.asset, lo, hi, n_a)
        mlo, mhi = trigger_prices(acc, tables, 1.0)
        mc_start, mc_acc, mc_thr = _sorted_lists(acc.asset, mlo, mhi, n_a)
        side_start, side_acc = _side_lists(acc.asset, acc.q, n_a)
        counts = np.zeros((n_blocks, N_COUNTS, n_acc), np.int16)  # <= PATH_BLOCK per block
        _fast_kernel(
            n_paths, paths, n_steps, impact.depth, impact.linear, impact.sqrt, impact.decay,
            rules.liq_fraction, rules.fee_rate, rules.fund,
            tables.mmr, tables.cum, tables.n,
            acc.asset, acc.inverse, acc.q, acc.entry, acc.face, acc.table, acc.usd, acc.w_usd,
            acc.coin, acc.w_coin, _f64(a_full), _f64(b_full), float(a_full.sum()), _f64(b_tot),
            liq_start, liq_acc, liq_thr, mc_start, mc_acc, mc_thr, side_start, side_acc,
            lvl_px, out_path, out_asset, counts, levels, rec, _slots(trk_acc, n_acc), trk_acc,
            acct_out,
        )  # fmt: skip
    elif isinstance(accounts, CrossAccounts):
        acc = _cross(accounts, n_a, n_tab)
        n_acc = acc.usd.shape[0]
        _check_initial(acc, tables, s0, rules.liq_fraction)
        pos_acc = np.repeat(np.arange(n_acc, dtype=np.int64), np.diff(acc.start))
        side_start, side_pos = _side_lists(acc.pos_asset, acc.pos_q, n_a)
        slope = np.where(acc.pos_inverse == 1, acc.pos_q * acc.pos_face / acc.pos_entry,
                         acc.pos_q)
        h0 = acc.bal.sum(axis=0) + np.bincount(acc.pos_asset, weights=slope, minlength=n_a)
        key = _topup_key(seed)
        counts = np.zeros((n_blocks, N_COUNTS, n_acc), np.int16)  # <= PATH_BLOCK per block
        _cross_kernel(
            n_paths, paths, n_steps, impact.depth, impact.linear, impact.sqrt, impact.decay,
            rules.liq_fraction, rules.fee_rate, rules.fund, rules.partial,
            rules.partial_target, rules.grace, rules.topup_prob, rules.topup_target, key,
            tables.mmr, tables.cum, tables.n,
            acc.start, _i64(pos_acc), acc.pos_asset, acc.pos_inverse, acc.pos_q,
            acc.pos_entry, acc.pos_face, acc.pos_table, acc.usd, acc.w_usd, acc.bal,
            acc.w_bal, side_start, side_pos, _f64(h0),
            lvl_px, out_path, out_asset, counts, levels, rec, _slots(trk_acc, n_acc), trk_acc,
            acct_out,
        )  # fmt: skip
    else:
        raise TypeError(f"accounts must be SingleAccounts or CrossAccounts, got "
                        f"{type(accounts).__name__}")
    total = counts.sum(axis=0, dtype=np.int64)
    if isinstance(accounts, SingleAccounts):  # back to the caller's account order
        unperm = np.empty_like(total)
        unperm[:, perm] = total
        total = unperm
    return CascadeArrays(out_path, out_asset, total, levels.sum(axis=0), rec, acct_out)

