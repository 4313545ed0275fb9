"""The fast engine of :func:`marginlab.simulate.cascade.simulate_cascade`: one-position
accounts walked by their sorted trigger prices (see the module notes there). Every rule it
applies (price update, impact and fills, margin, ADL ranking, settlement, bookkeeping) comes
from :mod:`._cascade_rules`; this module holds only the engine's own bookkeeping of which
accounts to look at (pointer walks, live list, per-path account state).
"""

from __future__ import annotations

import numpy as np

from ._cascade_rules import (
    A_ADL_VOLUME,
    C_ADL,
    C_BANKRUPT,
    C_CALL,
    C_LIQ,
    PATH_BLOCK,
    T_ADL_STEP,
    T_BAD_DEBT,
    T_BANK_STEP,
    T_CALL_STEP,
    T_FINAL_EQUITY,
    T_LIQ_PRICE,
    T_LIQ_STEP,
    _add_fill,
    _adl_score,
    _adl_take,
    _begin_path,
    _begin_step,
    _buy_back,
    _end_step,
    _fee,
    _fill,
    _finish_path,
    _fund_share,
    _mark_to_market,
    _mm_position,
    _notional,
    _rank_pop,
    _rank_push,
    _realised,
    _sell_for,
    _slope,
    _track_reset,
    _upnl,
    _weighted,
)
from ._numba import kernel, parallel_kernel, prange


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
    _begin_path(p, paths, b_tot, s0, J, P, plast, H, out_asset, rec)
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
        _begin_step(p, t, paths, rho, J, P0, P, X, out_asset)
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
                mm = _mm_position(_notional(q, pa, acc_face[i], inv), pa, inv, acc_tab[i],
                                  tab_mmr, tab_cum, tab_n)
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
                mm = _mm_position(_notional(q, pa, fc, inv), pa, inv, acc_tab[i], tab_mmr,
                                  tab_cum, tab_n)
                if not mb < liq_frac * mm:
                    if live_pos[i] < 0:  # passed by its pointer: watch it directly from now on
                        live[n_live] = i
                        live_pos[i] = n_live
                        n_live += 1
                    continue
                gmk = _mark_to_market(gmk, H, P, plast)  # up to the current marks
                sg = 1.0 if q > 0.0 else -1.0
                slope0 = cc[i] + _slope(q, ent, fc, inv)
                # projected equity after a market close-out
                x0 = X[a]
                x1 = x0 - sg * (abs(q) * fc if inv else abs(q) * P0[a])
                gi, xf, pn = _fill(x0, x1, P0[a], depth[a], k_lin[a], k_sqrt[a])
                if inv:
                    w_proj = cu[i] + (cc[i] + _realised(q, xf, ent, fc, inv)) * pn
                else:
                    w_proj = (cu[i] + _realised(q, xf, ent, fc, inv)) + cc[i] * pn
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
                            take_usd, take_q, rem, new_q = _adl_take(qj, nj, rem, pa, fj, invj)
                            pop = take_usd == nj  # taken whole
                            if invj:
                                cc[j] += _realised(sj * take_q, pa, ej, fj, invj)
                            else:
                                cu[j] += _realised(sj * take_q, pa, ej, fj, invj)
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
                        cc[i] += _realised(sg * take_q, pa, ent, fc, inv)
                    else:
                        cu[i] += _realised(sg * take_q, pa, ent, fc, inv)
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
                        gi, xf, pn = _fill(x0, x1, P0[a], depth[a], k_lin[a], k_sqrt[a])
                market_usd = 0.0
                if market_q > 0.0:
                    # ---- market close-out at the fill, with slippage against the mark
                    if inv:
                        gmk += sg * market_q * fc * (1.0 - pa / xf)
                        cc[i] += _realised(q, xf, ent, fc, inv)
                        market_usd = market_q * fc
                    else:
                        gmk += q * (xf - pa)
                        cu[i] += _realised(q, xf, ent, fc, inv)
                        market_usd = market_q * xf
                    cq[i] = 0.0
                    X[a] = x1
                H[a] += cc[i] - slope0
                if market_q > 0.0:
                    P[a] = pn
                    gmk += H[a] * (pn - plast[a])  # the move the order caused, new exposure
                    plast[a] = pn
                    _add_fill(out_asset, levels, lvl_px, p, a, xf, pn, abs(J[a] + gi),
                              market_usd)
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
                    fp = _fund_share(pay, fund)
                    fund -= fp
                    fund_paid += fp
                    exch += pay - fp
                    if trk[i] >= 0:
                        acct_out[p, trk[i], T_BAD_DEBT] += pay
                    H[a] -= cc[i]  # the seized coin leaves the book at the mark
                    cu[i] = 0.0
                    cc[i] = 0.0
                else:
                    fee = _fee(w, market_usd, fee_rate)
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
        _end_step(p, t, depth, k_lin, k_sqrt, J, X, P, rec)
    # ---- final marks: market P&L, wealth
    gmk = _mark_to_market(gmk, H, P, plast)
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
    _finish_path(out_path, out_asset, p, s0, fund_paid, exch, adl_recv, fees, fund, fund_min,
                 adl_paid, gmk, w1 - w0, 0.0, n_call, n_liq, n_bank, n_adl, 0, 0)


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
