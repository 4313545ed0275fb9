"""The cascade rules, written once: the scalar and small-array helpers that both engines
(:mod:`._cascade_fast`, :mod:`._cascade_general`) call for the price update, impact and fills,
margin, liquidation, ADL ranking, settlement and bookkeeping. The rules themselves are
described in the notes of :mod:`marginlab.simulate.cascade`.

Helpers are inlined into the engines (``inline_kernel``) or, for those that run once per
event (ranking heap, settlement of a closed account), compiled as small kernels.
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import inline_kernel, kernel
from .pricing import _greeks_core

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


# =========================================================================== shared rules
@inline_kernel
def _begin_path(p, paths, h0, s0, J, P, plast, H, out_asset, rec):
    # Today's prices, no impact, exposures h0 (coin units per price column), empty outputs.
    for a in range(s0.shape[0]):
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
        if p < rec.shape[0]:
            rec[p, 0, a] = s0[a]


@inline_kernel
def _begin_step(p, t, paths, rho, J, P0, P, X, out_asset):
    # The price update: the impact state decays, the step's base mark P0 = S_t exp(J).
    for a in range(P.shape[0]):
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


@inline_kernel
def _end_step(p, t, depth, k_lin, k_sqrt, J, X, P, rec):
    # The step's impact joins the decaying state; the marks are recorded.
    for a in range(P.shape[0]):
        if X[a] != 0.0:
            J[a] += _impact(X[a], depth[a], k_lin[a], k_sqrt[a])
        if p < rec.shape[0]:
            rec[p, t, a] = P[a]


@inline_kernel
def _mark_to_market(gmk, H, P, plast):
    # Market P&L of the exposures H over the moves since the last marks; returns the new total.
    for b in range(P.shape[0]):
        gmk += H[b] * (P[b] - plast[b])
        plast[b] = P[b]
    return gmk


@inline_kernel
def _mm_position(nn, pa, inv, tb, tab_mmr, tab_cum, tab_n):
    # Maintenance margin (USD) of one position of notional nn: the bracket table's upper
    # envelope max_k(nn mmr_k - cum_k), cum in coin (times the mark) for inverse tables.
    mm = 0.0
    for kb in range(tab_n[tb]):
        v = nn * tab_mmr[tb, kb] - (tab_cum[tb, kb] * pa if inv else tab_cum[tb, kb])
        if v > mm:
            mm = v
    return mm


@inline_kernel
def _fill(x0, x1, p0, depth, k_lin, k_sqrt):
    # An order taking the flow from x0 to x1: (log impact after it, fill price, new mark).
    if depth == np.inf:
        return 0.0, p0, p0
    gi = _impact(x1, depth, k_lin, k_sqrt)
    return gi, p0 * math.exp(_fill_log(x0, x1, depth, k_lin, k_sqrt)), p0 * math.exp(gi)


@inline_kernel
def _realised(sq, price, entry, face, inv):
    # P&L of closing the signed quantity sq at price: coin for inverse, USD for linear.
    if inv:
        return sq * face * (1.0 / entry - 1.0 / price)
    return sq * (price - entry)


@inline_kernel
def _adl_take(qj, nj, rem, pa, fj, invj):
    # A ranked position of notional nj (USD) takes min(nj, rem) of the deleveraged notional:
    # (USD taken, quantity taken, notional remaining, its new quantity).
    if nj <= rem:
        return nj, abs(qj), rem - nj, 0.0
    take_q = rem / fj if invj else rem / pa
    return rem, take_q, 0.0, qj - (1.0 if qj > 0.0 else -1.0) * take_q


@inline_kernel
def _add_fill(out_asset, levels, lvl_px, p, a, xf, pn, ji, vol):
    # Bookkeeping of one market fill: volume, volume by price level, extremes of the mark
    # and of the absolute log impact ji.
    out_asset[p, a, A_LIQ_VOLUME] += vol
    n_lvl = levels.shape[1]
    lo_k = 1  # bin of the fill: interior price edges at or below it
    hi_k = n_lvl
    while lo_k < hi_k:
        mid = (lo_k + hi_k) // 2
        if lvl_px[a, mid] <= xf:
            lo_k = mid + 1
        else:
            hi_k = mid
    levels[a, lo_k - 1] += vol
    if pn < out_asset[p, a, A_MIN_LOG]:
        out_asset[p, a, A_MIN_LOG] = pn
    if pn > out_asset[p, a, A_MAX_LOG]:
        out_asset[p, a, A_MAX_LOG] = pn
    if ji > out_asset[p, a, A_MAX_IMPACT]:
        out_asset[p, a, A_MAX_IMPACT] = ji


@inline_kernel
def _fund_share(pay, fund):
    # The part of a deficit the insurance fund pays (the rest falls to the exchange).
    return fund if fund < pay else pay


@inline_kernel
def _fee(w, market_usd, fee_rate):
    # Liquidation fee (USD) on the notional sold in the market, capped by the equity w left.
    if w > 0.0 and market_usd > 0.0:
        fee = fee_rate * market_usd
        return w if fee > w else fee
    return 0.0


@inline_kernel
def _finish_path(out_path, out_asset, p, s0, fund_paid, exch, adl_recv, fees, fund, fund_min,
                 adl_paid, gmk, dw, deposits, n_call, n_liq, n_bank, n_adl, n_part, n_top):
    # The per-path outputs; extremes of the marks as log moves.
    for a in range(s0.shape[0]):
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
    out_path[p, P_WEALTH_CHANGE] = dw
    out_path[p, P_DEPOSITS] = deposits
    out_path[p, P_CALLS] = n_call
    out_path[p, P_LIQUIDATIONS] = n_liq
    out_path[p, P_BANKRUPTCIES] = n_bank
    out_path[p, P_ADL_EVENTS] = n_adl
    out_path[p, P_PARTIALS] = n_part
    out_path[p, P_TOPUPS] = n_top


@inline_kernel
def _account_margin(i, start, q, pos_asset, pos_inv, pos_entry, pos_face, pos_tab, usd, w_usd,
                    bal, w_bal, P, tab_mmr, tab_cum, tab_n):
    # Cross-margin account i at the marks P: (margin balance, maintenance margin, gross
    # notional, whether it has an open position), all USD.
    mb = _weighted(usd[i], w_usd[i])
    mm = 0.0
    ntot = 0.0
    alive = False
    for a in range(P.shape[0]):
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
        mm += _mm_position(nn, P[a], inv, pos_tab[k], tab_mmr, tab_cum, tab_n)
    return mb, mm, ntot, alive


@inline_kernel
def _account_equity(i, start, q, pos_asset, pos_inv, pos_entry, pos_face, usd, bal, P):
    # Equity (USD) of cross-margin account i at the marks P: balances in full plus P&L.
    w = usd[i]
    for a in range(P.shape[0]):
        w += bal[i, a] * P[a]
    for k in range(start[i], start[i + 1]):
        if q[k] != 0.0:
            a = pos_asset[k]
            w += _upnl(q[k], P[a], pos_entry[k], pos_face[k], pos_inv[k] == 1)
    return w


# =========================================================================== options
EXPIRY_TOL = 1e-9
"""An option is expired at step ``t`` when ``expiry - t dt <= EXPIRY_TOL x dt`` (years)."""


@inline_kernel
def _option_vol(k, a, p, t, o_vol, vol_paths):
    # Implied vol of option k at step t of path p: its own vol times the multiplier of its
    # underlying's vols on that path (``vol_paths`` with 0 rows for none, 1 row for the same
    # multipliers on every path).
    n_v = vol_paths.shape[0]
    if n_v == 0:
        return o_vol[k]
    return o_vol[k] * vol_paths[p if n_v > 1 else 0, t, a]


@inline_kernel
def _option_mark(s, strike, tau, sigma, phi):
    # Black-Scholes value (USD per unit of the underlying) and delta of a European option at
    # spot s, tau years to expiry (rate and carry 0); tau <= 0 gives the payoff.
    v, d, _, _, _ = _greeks_core(s, strike, tau, sigma, 0.0, 0.0, phi)
    return v, d


@inline_kernel
def _option_mm(qo, s, delta, min_delta, inv, tb, tab_mmr, tab_cum, tab_n):
    # Maintenance margin (USD) of an option position: none when long (the premium is paid and
    # its value counts in the margin balance), the position's bracket rule on the
    # delta-equivalent notional |q| S max(|delta|, min_delta) when short.
    if qo >= 0.0:
        return 0.0
    d = abs(delta)
    if d < min_delta:
        d = min_delta
    return _mm_position(-qo * s * d, s, inv, tb, tab_mmr, tab_cum, tab_n)


@inline_kernel
def _options_state(i, o_start, oq, oval):
    # Account i's options at their last revaluation: (value, gross value |q| v, any open), USD.
    val = 0.0
    gross = 0.0
    alive = False
    for k in range(o_start[i], o_start[i + 1]):
        if oq[k] != 0.0:
            alive = True
            val += oq[k] * oval[k]
            gross += abs(oq[k]) * oval[k]
    return val, gross, alive


@inline_kernel
def _options_mm(i, o_start, oq, odelta, o_asset, o_inv, o_tab, P, min_delta, tab_mmr, tab_cum,
                tab_n):
    # Maintenance margin (USD) of account i's options at the marks P and their last deltas.
    mm = 0.0
    for k in range(o_start[i], o_start[i + 1]):
        if oq[k] < 0.0:
            a = o_asset[k]
            mm += _option_mm(oq[k], P[a], odelta[k], min_delta, o_inv[k] == 1, o_tab[k],
                             tab_mmr, tab_cum, tab_n)
    return mm


@inline_kernel
def _option_cash(i, k, dq, o_asset, o_coin, oval, usd, bal, P, H):
    # Close (or settle at expiry) the quantity dq of option k of account i at its value:
    # USD-settled into the USD balance, coin-settled into the coin of its underlying at the
    # mark (wealth neutral). Returns the USD amount |dq v|.
    cash = dq * oval[k]
    if o_coin[k] == 1:
        a = o_asset[k]
        c = cash / P[a]
        bal[i, a] += c
        H[a] += c
    else:
        usd[i] += cash
    return abs(cash)


@inline_kernel
def _revalue_options(i, p, t, dt, o_start, o_asset, o_strike, o_expiry, o_phi, o_vol,
                     vol_paths, o_coin, oq, oval, odelta, os_r, otau_r, usd, bal, P, H):
    # The per-step revaluation of account i's options at the marks P (the step's base marks),
    # the remaining time to expiry and the step's implied vols; options that expire are
    # settled at their payoff. Returns (market P&L of the revaluation, open options left,
    # whether one expired). Coin settlement changes the exposure H at the marks P: the caller
    # has marked H to P before.
    dg = 0.0
    n_open = 0
    expired = False
    for k in range(o_start[i], o_start[i + 1]):
        qk = oq[k]
        if qk == 0.0:
            continue
        a = o_asset[k]
        tau = o_expiry[k] - t * dt
        if tau <= EXPIRY_TOL * dt:
            tau = 0.0
        v, d = _option_mark(P[a], o_strike[k], tau, _option_vol(k, a, p, t, o_vol, vol_paths),
                            o_phi[k])
        dg += qk * (v - oval[k])
        oval[k] = v
        odelta[k] = d
        os_r[k] = P[a]
        otau_r[k] = tau
        if tau == 0.0:
            _option_cash(i, k, qk, o_asset, o_coin, oval, usd, bal, P, H)
            oq[k] = 0.0
            oval[k] = 0.0
            expired = True
        else:
            n_open += 1
    return dg, n_open, expired


_INV_SQRT_2PI = 0.3989422804014327
SCREEN_SLACK = 1e-9
"""Relative slack of the screen: an account is skipped only when its bound margin balance
exceeds its bound requirement by more than this fraction (rounding of the bounds)."""


@inline_kernel
def _options_bounds(i, t, dt, o_start, o_asset, o_inv, o_tab, o_strike, o_expiry, o_phi,
                    o_vol, oq, oval, os_r, otau_r, P, min_delta, tab_mmr, tab_cum, tab_n):
    # Bounds, without Black-Scholes, on account i's options at the marks P and step t from
    # their last revaluation (spot s_r, time left tau_r, value v_r), rate 0 and constant vol:
    # |delta| <= 1 and the value falls as time passes, so v <= v_r + |s - s_r| (the bound of a
    # short option's liability) and v >= max(payoff, v_r - |s - s_r| - s sigma (sqrt(tau_r) -
    # sqrt(tau)) / sqrt(2 pi)) (dv/dtau = s n(d1) sigma / (2 sqrt(tau))); the margin of a
    # short option is at most its rule at delta 1. Returns (lower bound of the value, upper
    # bound of the option margin), USD.
    lo = 0.0
    mm = 0.0
    for k in range(o_start[i], o_start[i + 1]):
        qk = oq[k]
        if qk == 0.0:
            continue
        a = o_asset[k]
        s = P[a]
        ds = abs(s - os_r[k])
        if qk > 0.0:
            tau = o_expiry[k] - t * dt
            if tau < 0.0:
                tau = 0.0
            decay = s * o_vol[k] * (math.sqrt(otau_r[k]) - math.sqrt(tau)) * _INV_SQRT_2PI
            v = oval[k] - ds - decay
            pay = o_phi[k] * (s - o_strike[k])
            if v < pay:
                v = pay
            if v < 0.0:
                v = 0.0
            lo += qk * v
        else:
            lo += qk * (oval[k] + ds)
            mm += _option_mm(qk, s, 1.0, min_delta, o_inv[k] == 1, o_tab[k], tab_mmr, tab_cum,
                             tab_n)
    return lo, mm


@inline_kernel
def _refresh_options(i, p, t, dt, o_start, o_asset, o_inv, o_tab, o_strike, o_expiry, o_phi,
                     o_vol, vol_paths, o_coin, oq, oval, odelta, os_r, otau_r, omm, ostamp,
                     usd, bal, P0, H, min_delta, tab_mmr, tab_cum, tab_n):
    # A screened account found near its threshold: its options revalued at the step's base
    # marks P0 (the values every account got at the start of the step without the screen)
    # and its option margin recomputed. Returns the market P&L of the revaluation.
    dg, _, _ = _revalue_options(i, p, t, dt, o_start, o_asset, o_strike, o_expiry, o_phi,
                                o_vol, vol_paths, o_coin, oq, oval, odelta, os_r, otau_r, usd,
                                bal, P0, H)
    omm[i] = _options_mm(i, o_start, oq, odelta, o_asset, o_inv, o_tab, P0, min_delta,
                         tab_mmr, tab_cum, tab_n)
    ostamp[i] = t
    return dg
