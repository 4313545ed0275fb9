"""The general engine of :func:`marginlab.simulate.cascade.simulate_cascade`: cross-margin
accounts re-checked in every round, partial liquidation, grace periods and top-ups (see the
module notes there). Every rule it applies comes from :mod:`._cascade_rules`; this module
holds only the engine's loops over accounts and positions.
"""

from __future__ import annotations

import numpy as np

from ._cascade_rules import (
    A_ADL_VOLUME,
    C_ADL,
    C_BANKRUPT,
    C_CALL,
    C_LIQ,
    EXPIRY_TOL,
    PATH_BLOCK,
    SCREEN_SLACK,
    T_ADL_STEP,
    T_BAD_DEBT,
    T_BANK_STEP,
    T_CALL_STEP,
    T_FINAL_EQUITY,
    T_LIQ_PRICE,
    T_LIQ_STEP,
    _account_equity,
    _account_margin,
    _add_fill,
    _adl_score,
    _adl_take,
    _begin_path,
    _begin_step,
    _end_step,
    _fee,
    _fill,
    _finish_path,
    _fund_share,
    _mark_to_market,
    _notional,
    _option_cash,
    _option_mark,
    _option_vol,
    _options_bounds,
    _options_mm,
    _options_state,
    _rank_pop,
    _rank_push,
    _realised,
    _refresh_options,
    _revalue_options,
    _settle_if_closed,
    _slope,
    _track_reset,
    _upnl,
    _weighted,
)
from ._numba import kernel, parallel_kernel, prange
from .rng import block_state, uniform


@kernel
def _cross_path(
    p, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0, partial,
    partial_target, grace, topup_prob, topup_target, key,
    tab_mmr, tab_cum, tab_n,
    start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0, w_usd,
    bal0, w_bal, side_start, side_pos, h0,
    o_start, o_asset, o_inv, o_q, o_strike, o_expiry, o_phi, o_coin, o_vol, o_tab, vol_paths,
    dt, min_delta, remargin_every, screen,
    lvl_px,
    oq, oval, odelta, omm, os_r, otau_r, ostamp, ob_lo, ob_mm,
    q, usd, bal, call_step, part_step, st_call, st_liq, st_bank, st_adl, buf, rank_pos_arr,
    rank_key, rank_len, rank_stamp, xp, pp, balp,
    s0, J, P0, P, X, plast, H,
    out_path, out_asset, counts, levels, rec, trk, trk_acc, acct_out,
):  # fmt: skip
    n_a = s0.shape[0]
    n_acc = usd0.shape[0]
    n_pos = pos_q.shape[0]
    has_opt = o_q.shape[0] > 0
    rs = block_state(key, p)
    _begin_path(p, paths, h0, s0, J, P, plast, H, out_asset, rec)
    for k in range(n_pos):
        q[k] = pos_q[k]
    if has_opt:  # today's option values, deltas and margin
        for k in range(o_q.shape[0]):
            a = o_asset[k]
            oq[k] = o_q[k]
            os_r[k] = s0[a]
            otau_r[k] = o_expiry[k]
            oval[k], odelta[k] = _option_mark(s0[a], o_strike[k], o_expiry[k],
                                              _option_vol(k, a, p, 0, o_vol, vol_paths),
                                              o_phi[k])
        for i in range(n_acc):
            ostamp[i] = 0
            omm[i] = _options_mm(i, o_start, oq, odelta, o_asset, o_inv, o_tab, s0, min_delta,
                                 tab_mmr, tab_cum, tab_n)
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
        if has_opt:
            w += _options_state(i, o_start, oq, oval)[0]
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
        _begin_step(p, t, paths, rho, J, P0, P, X, out_asset)
        if has_opt:
            # ---- (0) options revalued at the step's base marks; expiring ones settled
            gmk = _mark_to_market(gmk, H, P, plast)
            remargin = t % remargin_every == 0
            for i in range(n_acc):
                if o_start[i] == o_start[i + 1]:
                    continue
                if screen:
                    # revalued now only if an option expires; otherwise bounds, and a
                    # revaluation when the bounds put the account near its threshold
                    due = False
                    for k in range(o_start[i], o_start[i + 1]):
                        if oq[k] != 0.0 and o_expiry[k] - t * dt <= EXPIRY_TOL * dt:
                            due = True
                    if not due:
                        ob_lo[i], ob_mm[i] = _options_bounds(
                            i, t, dt, o_start, o_asset, o_inv, o_tab, o_strike, o_expiry,
                            o_phi, o_vol, oq, oval, os_r, otau_r, P, min_delta, tab_mmr,
                            tab_cum, tab_n)
                        continue
                ostamp[i] = t
                dg, n_open, expired = _revalue_options(
                    i, p, t, dt, o_start, o_asset, o_strike, o_expiry, o_phi, o_vol,
                    vol_paths, o_coin, oq, oval, odelta, os_r, otau_r, usd, bal, P, H)
                gmk += dg
                if remargin or expired:
                    omm[i] = _options_mm(i, o_start, oq, odelta, o_asset, o_inv, o_tab, P,
                                         min_delta, tab_mmr, tab_cum, tab_n)
                if expired and n_open == 0:
                    _settle_if_closed(i, start, q, usd, bal, P, H)
        while True:
            # ---- (1) margin calls (and top-ups), (2) accounts to liquidate
            nb = 0
            for i in range(n_acc):
                mb, mm, _, alive = _account_margin(
                    i, start, q, pos_asset, pos_inv, pos_entry, pos_face, pos_tab, usd, w_usd,
                    bal, w_bal, P, tab_mmr, tab_cum, tab_n)
                if has_opt:
                    _, _, o_alive = _options_state(i, o_start, oq, oval)
                    if ostamp[i] != t and o_alive:  # screened: bounds, or revalue
                        lo_b = mb + ob_lo[i]
                        mm_b = mm + ob_mm[i]
                        if lo_b - mm_b > SCREEN_SLACK * (abs(lo_b) + mm_b):
                            mb, mm = lo_b, mm_b  # every trigger decides as at the values
                        else:
                            gmk += _refresh_options(
                                i, p, t, dt, o_start, o_asset, o_inv, o_tab, o_strike,
                                o_expiry, o_phi, o_vol, vol_paths, o_coin, oq, oval, odelta,
                                os_r, otau_r, omm, ostamp, usd, bal, P0, H, min_delta,
                                tab_mmr, tab_cum, tab_n)
                    if ostamp[i] == t or not o_alive:
                        mb += _options_state(i, o_start, oq, oval)[0]
                        mm += omm[i]
                    alive = alive or o_alive
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
                mb, mm, ntot, alive = _account_margin(
                    i, start, q, pos_asset, pos_inv, pos_entry, pos_face, pos_tab, usd, w_usd,
                    bal, w_bal, P, tab_mmr, tab_cum, tab_n)
                ogross = 0.0
                if has_opt:
                    ov, ogross, o_alive = _options_state(i, o_start, oq, oval)
                    mb += ov
                    mm += omm[i]
                    alive = alive or o_alive
                if not alive:
                    continue
                soft = grace >= 0 and call_step[i] >= 0 and t - call_step[i] >= grace
                if not (mb < liq_frac * mm or (soft and mb < mm)):
                    continue
                gmk = _mark_to_market(gmk, H, P, plast)  # up to the current marks
                phi = 1.0
                if partial and part_step[i] != t and mb > 0.0:
                    den = partial_target * mm - fee_rate * (ntot + ogross)
                    if den > 0.0:
                        phi = (partial_target * mm - mb) / den
                    if phi > 1.0:
                        phi = 1.0
                # projected equity after a market close-out of the fraction phi
                for _attempt in range(2):
                    usdp = usd[i]
                    wo_rest = 0.0
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
                        _, xf, pp[a] = _fill(xp[a], x1, P0[a], depth[a], k_lin[a], k_sqrt[a])
                        xp[a] = x1
                        if inv:
                            balp[a] += _realised(dq, xf, pos_entry[k], pos_face[k], inv)
                        else:
                            usdp += _realised(dq, xf, pos_entry[k], pos_face[k], inv)
                    if has_opt:  # options close at their value, without market impact
                        for k in range(o_start[i], o_start[i + 1]):
                            if oq[k] != 0.0:
                                cash = (oq[k] if phi == 1.0 else phi * oq[k]) * oval[k]
                                if o_coin[k] == 1:
                                    balp[o_asset[k]] += cash / P[o_asset[k]]
                                else:
                                    usdp += cash
                                if phi < 1.0:
                                    wo_rest += (oq[k] - phi * oq[k]) * oval[k]
                    w_proj = usdp
                    for a in range(n_a):
                        w_proj += balp[a] * pp[a]
                    if phi < 1.0:
                        w_proj += wo_rest
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
                        acct_out[p, trk[i], T_LIQ_PRICE] = P[
                            pos_asset[start[i]] if start[i] < start[i + 1]
                            else o_asset[o_start[i]]]
                bankrupt = False
                market_usd = 0.0
                if phi == 1.0 and w_proj < 0.0 and fund < -w_proj:
                    # ---- auto-deleveraging of every position, at the marks
                    bankrupt = True
                    w_mark = _account_equity(i, start, q, pos_asset, pos_inv, pos_entry,
                                             pos_face, usd, bal, P)
                    if has_opt:
                        w_mark += _options_state(i, o_start, oq, oval)[0]
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
                                wj = _account_equity(j, start, q, pos_asset, pos_inv,
                                                     pos_entry, pos_face, usd, bal, P)
                                if has_opt:
                                    if ostamp[j] != t:
                                        gmk += _refresh_options(
                                            j, p, t, dt, o_start, o_asset, o_inv, o_tab,
                                            o_strike, o_expiry, o_phi, o_vol, vol_paths,
                                            o_coin, oq, oval, odelta, os_r, otau_r, omm,
                                            ostamp, usd, bal, P0, H, min_delta, tab_mmr,
                                            tab_cum, tab_n)
                                    wj += _options_state(j, o_start, oq, oval)[0]
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
                                take_usd, take_q, rem, new_q = _adl_take(qm, nm, rem, pa, fm,
                                                                         invm)
                                pop = take_usd == nm  # taken whole
                                if invm:
                                    bal[j, a] += _realised(sm * take_q, pa, em, fm, invm)
                                else:
                                    usd[j] += _realised(sm * take_q, pa, em, fm, invm)
                                q[m] = new_q
                                tau = d_k * (take_usd / q_usd)
                                usd[j] -= tau
                                adl_paid += tau
                                H[a] += (bal[j, a] - bal_j0 + _slope(new_q, em, fm, invm)
                                         - slope_m0)
                                if new_q == 0.0 and not (
                                        has_opt and _options_state(j, o_start, oq, oval)[2]):
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
                            bal[i, a] += _realised(sg * take_q, pa, ent, fc, inv)
                        else:
                            usd[i] += _realised(sg * take_q, pa, ent, fc, inv)
                        q[k] = 0.0 if rem == 0.0 else qk - sg * take_q
                        H[a] += bal[i, a] - bal_i0 + _slope(q[k], ent, fc, inv) - slope_k0
                        received = d_k * (taken / q_usd)
                        usd[i] += received
                        adl_recv += received
                        if trk[i] >= 0:
                            acct_out[p, trk[i], T_BAD_DEBT] += received
                    phi = 1.0
                if has_opt:  # ---- options: the fraction phi closed at their value
                    for k in range(o_start[i], o_start[i + 1]):
                        if oq[k] != 0.0:
                            dq = oq[k] if phi == 1.0 else phi * oq[k]
                            market_usd += _option_cash(i, k, dq, o_asset, o_coin, oval, usd,
                                                       bal, P, H)
                            oq[k] = 0.0 if phi == 1.0 else oq[k] - dq
                    omm[i] = _options_mm(i, o_start, oq, odelta, o_asset, o_inv, o_tab, P,
                                         min_delta, tab_mmr, tab_cum, tab_n)
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
                    gi, xf, pn = _fill(X[a], x1, P0[a], depth[a], k_lin[a], k_sqrt[a])
                    bal_i0 = bal[i, a]
                    slope_k0 = _slope(qk, ent, fc, inv)
                    if inv:
                        gmk += dq * fc * (1.0 - pa / xf)
                        bal[i, a] += _realised(dq, xf, ent, fc, inv)
                        vol = abs(dq) * fc
                    else:
                        gmk += dq * (xf - pa)
                        usd[i] += _realised(dq, xf, ent, fc, inv)
                        vol = abs(dq) * xf
                    q[k] = 0.0 if phi == 1.0 else qk - dq
                    H[a] += bal[i, a] - bal_i0 + _slope(q[k], ent, fc, inv) - slope_k0
                    X[a] = x1
                    P[a] = pn
                    gmk += H[a] * (pn - plast[a])
                    plast[a] = pn
                    market_usd += vol
                    _add_fill(out_asset, levels, lvl_px, p, a, xf, pn, abs(J[a] + gi), vol)
                # ---- settlement
                w = _account_equity(i, start, q, pos_asset, pos_inv, pos_entry, pos_face, usd,
                                    bal, P)
                if has_opt:
                    w += _options_state(i, o_start, oq, oval)[0]
                if w < 0.0:
                    bankrupt = True
                    pay = -w
                    fp = _fund_share(pay, fund)
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
                    fee = _fee(w, market_usd, fee_rate)
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
        _end_step(p, t, depth, k_lin, k_sqrt, J, X, P, rec)
    if has_opt and screen:  # final values of the screened accounts
        for i in range(n_acc):
            if ostamp[i] != n_steps and o_start[i] < o_start[i + 1]:
                gmk += _refresh_options(
                    i, p, n_steps, dt, o_start, o_asset, o_inv, o_tab, o_strike, o_expiry,
                    o_phi, o_vol, vol_paths, o_coin, oq, oval, odelta, os_r, otau_r, omm,
                    ostamp, usd, bal, P0, H, min_delta, tab_mmr, tab_cum, tab_n)
    gmk = _mark_to_market(gmk, H, P, plast)
    w1 = 0.0
    for i in range(n_acc):
        w = _account_equity(i, start, q, pos_asset, pos_inv, pos_entry, pos_face, usd, bal, P)
        if has_opt:
            w += _options_state(i, o_start, oq, oval)[0]
        w1 += w
        if trk[i] >= 0:
            acct_out[p, trk[i], T_FINAL_EQUITY] = w
    _finish_path(out_path, out_asset, p, s0, fund_paid, exch, adl_recv, fees, fund, fund_min,
                 adl_paid, gmk, w1 - w0, deposits, n_call, n_liq, n_bank, n_adl, n_part, n_top)


@kernel
def _cross_block(
    b, n_paths, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0, partial,
    partial_target, grace, topup_prob, topup_target, key,
    tab_mmr, tab_cum, tab_n,
    start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0, w_usd,
    bal0, w_bal, side_start, side_pos, h0,
    o_start, o_asset, o_inv, o_q, o_strike, o_expiry, o_phi, o_coin, o_vol, o_tab, vol_paths,
    dt, min_delta, remargin_every, screen,
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
    n_opt = o_q.shape[0]
    oq = np.empty(n_opt)
    oval = np.empty(n_opt)
    odelta = np.empty(n_opt)
    omm = np.zeros(n_acc)
    os_r = np.empty(n_opt)
    otau_r = np.empty(n_opt)
    ostamp = np.zeros(n_acc, np.int64)
    ob_lo = np.zeros(n_acc)
    ob_mm = np.zeros(n_acc)
    for p in range(b * PATH_BLOCK, min((b + 1) * PATH_BLOCK, n_paths)):
        _cross_path(
            p, paths, n_steps, depth, k_lin, k_sqrt, rho, liq_frac, fee_rate, fund0, partial,
            partial_target, grace, topup_prob, topup_target, key,
            tab_mmr, tab_cum, tab_n,
            start, pos_acc, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd0,
            w_usd, bal0, w_bal, side_start, side_pos, h0,
            o_start, o_asset, o_inv, o_q, o_strike, o_expiry, o_phi, o_coin, o_vol, o_tab,
            vol_paths, dt, min_delta, remargin_every, screen,
            lvl_px,
            oq, oval, odelta, omm, os_r, otau_r, ostamp, ob_lo, ob_mm,
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
    o_start, o_asset, o_inv, o_q, o_strike, o_expiry, o_phi, o_coin, o_vol, o_tab, vol_paths,
    dt, min_delta, remargin_every, screen,
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
            o_start, o_asset, o_inv, o_q, o_strike, o_expiry, o_phi, o_coin, o_vol, o_tab,
            vol_paths, dt, min_delta, remargin_every, screen,
            lvl_px, out_path, out_asset, counts[b], levels[b], rec, trk, trk_acc, acct_out,
        )  # fmt: skip
