"""The fused per-account kernel for weighted scenarios (estimators: :mod:`.weighted`).

Per account: the loss vector from the unit P&L and the CSR holdings (as the unweighted
kernel of :mod:`.revalue`), then a partial selection: about the ``m`` largest losses (a
threshold from the order statistic of a subsample of about 1,024 losses) are gathered with
their scenarios and masses, and
weighted quickselects in the ranking order (loss descending, scenario ascending) place
each level's VaR and Woodruff bounds, no sort. ``m`` starts at ``m0`` and grows until the
candidates reach every rank an estimate needs, so the result equals the sort-based reference of
:func:`marginlab.simulate.weighted.weighted_var_es`. Each account is computed alone in its
own buffers: results do not depend on threads or account blocks.
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import inline_kernel, kernel, parallel_kernel, prange

_ACC_BLOCK = 64
_SUB = 1024  # subsample size of the candidate threshold (_threshold)

MASS_SNAP = 1e-10
"""Cumulative masses within this of the tail mass count as equal to it (the VaR is the next
scenario), as ``n (1 - level)`` is snapped to an integer in the unweighted estimators."""


@inline_kernel
def _before(cv, ci, a, b):
    # Candidate a is ranked before candidate b: larger loss, or equal loss and earlier.
    return cv[a] > cv[b] or (cv[a] == cv[b] and ci[a] < ci[b])


@inline_kernel
def _swap(cv, ci, cp, a, b):
    cv[a], cv[b] = cv[b], cv[a]
    ci[a], ci[b] = ci[b], ci[a]
    cp[a], cp[b] = cp[b], cp[a]


@kernel
def _wselect(cv, ci, cp, lo, hi, acc, target):
    # Weighted quickselect over the candidates (loss cv, scenario ci, mass cp) at positions
    # [lo, hi), all ranked after those at positions < lo, whose mass is ``acc``: reorder
    # them so that position t holds the first-ranked candidate whose cumulative mass (itself
    # and every candidate ranked before it) exceeds ``target``, and positions in [lo, t)
    # the candidates of the range ranked before it; return t (-1 if the mass never exceeds
    # it). Median-of-three pivots in the (strict, total) ranking order; expected O(hi - lo).
    while lo < hi:
        if hi - lo == 1:
            return lo if acc + cp[lo] > target else -1
        mid = (lo + hi) >> 1
        e = hi - 1
        # median of (lo, mid, e) by rank -> position e
        if _before(cv, ci, mid, lo):
            _swap(cv, ci, cp, mid, lo)
        if _before(cv, ci, e, lo):
            _swap(cv, ci, cp, e, lo)
        if _before(cv, ci, mid, e):
            _swap(cv, ci, cp, mid, e)
        store = lo
        m_before = 0.0
        for t in range(lo, e):
            if _before(cv, ci, t, e):
                m_before += cp[t]
                _swap(cv, ci, cp, t, store)
                store += 1
        _swap(cv, ci, cp, store, e)
        if acc + m_before > target:
            hi = store
        elif acc + m_before + cp[store] > target:
            return store
        else:
            acc += m_before + cp[store]
            lo = store + 1
    return -1


@kernel
def _threshold(loss, sub, m, stride):
    # A loss threshold with about m losses at or above it: the matching order statistic of
    # the subsample loss[::stride] (one partition of n / stride values instead of n), padded
    # by 25 % and 8 subsample ranks against its sampling error; -inf (every scenario) when
    # that reaches the whole subsample. Any threshold is correct: the candidates, all losses
    # >= it, are the first ones in the ranking order, and the caller doubles m (lowers the
    # threshold) until they hold every rank an estimate needs.
    n_sub = sub.shape[0]
    k = (m * 5) // (4 * stride) + 8
    if k >= n_sub:
        return -np.inf
    j = 0
    for s in range(0, loss.shape[0], stride):
        sub[j] = loss[s]
        j += 1
    return np.partition(sub, n_sub - k)[n_sub - k]


@kernel
def _account_block_w(a_lo, a_hi, U, indptr, indices, qty, p, p2, beta, z, m0,
                     alloc, out_var, out_es, out_var_lo, out_var_hi, out_es_se, out_alloc_var,
                     out_alloc_es):
    n = U.shape[1]
    n_levels = beta.shape[0]
    loss = np.empty(n)
    cv = np.empty(n)
    ci = np.empty(n, np.int64)
    cp = np.empty(n)
    res = np.empty((n_levels, 5))
    stride = max(1, n // _SUB)
    sub = np.empty((n + stride - 1) // stride)
    for acc in range(a_lo, a_hi):
        loss[:] = 0.0
        for k in range(indptr[acc], indptr[acc + 1]):
            q = qty[k]
            row = indices[k]
            for s in range(n):
                loss[s] -= q * U[row, s]
        m = m0
        while True:
            thr = _threshold(loss, sub, m, stride)
            nc = 0
            mass = 0.0
            for s in range(n):
                if loss[s] >= thr:
                    cv[nc] = loss[s]
                    ci[nc] = s
                    cp[nc] = p[s]
                    mass += p[s]
                    nc += 1
            ok = True
            need = 0.0
            for li in range(n_levels):
                b = beta[li]
                a = 1.0 - b
                ts = _wselect(cv, ci, cp, 0, nc, 0.0, b + MASS_SNAP)
                if ts < 0:
                    ok = False
                    need = b + MASS_SNAP
                    break
                p2t = 0.0
                m_ts = 0.0
                for t in range(ts):
                    p2t += cp[t] * cp[t]
                    m_ts += cp[t]
                sf = math.sqrt(p2t * a * a + (p2 - p2t) * b * b)
                lo_m = b + z * sf
                hi_m = b - z * sf
                # The bounds are selected inside [ts + 1, nc) and [0, ts): the VaR stays at
                # ts with exactly the candidates ranked before it at positions < ts.
                v_lo = -np.inf
                if lo_m < 1.0:
                    if m_ts + cp[ts] > lo_m:
                        v_lo = cv[ts]
                    else:
                        t_lo = _wselect(cv, ci, cp, ts + 1, nc, m_ts + cp[ts], lo_m)
                        if t_lo < 0 and nc < n:
                            ok = False
                            need = lo_m
                            break
                        if t_lo >= 0:
                            v_lo = cv[t_lo]
                v_hi = np.inf
                if hi_m > 0.0:
                    if m_ts > hi_m:
                        v_hi = cv[_wselect(cv, ci, cp, 0, ts, 0.0, hi_m)]
                    else:
                        v_hi = cv[ts]
                qv = cv[ts]
                exc = 0.0
                for t in range(ts):
                    exc += cp[t] * (cv[t] - qv)
                es = qv + exc / b
                ev = 0.0
                for t in range(ts):
                    psi = qv - es + (cv[t] - qv) / b
                    ev += cp[t] * cp[t] * psi * psi
                ev += (p2 - p2t) * (qv - es) * (qv - es)
                res[li, 0] = qv
                res[li, 1] = es
                res[li, 2] = v_lo
                res[li, 3] = v_hi
                res[li, 4] = math.sqrt(max(ev, 0.0))
                if alloc:
                    for k in range(indptr[acc], indptr[acc + 1]):
                        q = qty[k]
                        row = indices[k]
                        base = -q * U[row, ci[ts]]
                        ce = 0.0
                        for t in range(ts):
                            ce += cp[t] * (-q * U[row, ci[t]] - base)
                        out_alloc_var[li, k] = base
                        out_alloc_es[li, k] = base + ce / b
            if ok or nc >= n:
                break
            # Too few candidates for tail mass ``need``: extrapolate their count from their
            # mass (+25 %), at least 1.5 m.
            m = max(m + m // 2, int(min(1.25 * nc * need / max(mass, 1e-300), n)) + 16)
        for li in range(n_levels):
            out_var[li, acc] = res[li, 0]
            out_es[li, acc] = res[li, 1]
            out_var_lo[li, acc] = res[li, 2]
            out_var_hi[li, acc] = res[li, 3]
            out_es_se[li, acc] = res[li, 4]


@parallel_kernel
def _account_kernel_w(U, indptr, indices, qty, p, p2, beta, z, m0, alloc, out_var,
                      out_es, out_var_lo, out_var_hi, out_es_se, out_alloc_var, out_alloc_es):
    # First candidate count: at most m0, about twice the plain tail count of the largest
    # tail mass (enough when the weights are near-equal); under importance sampling the tail
    # holds more scenarios of smaller mass and the count grows from the candidates' mass,
    # cheaper than gathering (and selecting among) a generous m0 for every account.
    n_acc = indptr.shape[0] - 1
    m_start = min(m0, max(64, int(2.0 * beta.max() * U.shape[1]) + 1))
    n_blocks = (n_acc + _ACC_BLOCK - 1) // _ACC_BLOCK
    for b in prange(n_blocks):
        _account_block_w(b * _ACC_BLOCK, min((b + 1) * _ACC_BLOCK, n_acc), U, indptr, indices,
                         qty, p, p2, beta, z, m_start, alloc, out_var, out_es,
                         out_var_lo, out_var_hi, out_es_se, out_alloc_var, out_alloc_es)
