"""The fused per-account kernel for weighted scenarios (estimators: :mod:`.weighted`).

Per account: the loss vector from the unit P&L and the CSR holdings (as the unweighted
kernel of :mod:`.revalue`), then a partial selection: the ``m`` largest losses (a bounded
heap), gathered with their scenarios and ranked by (loss descending, scenario ascending).
``m`` starts at ``m0`` and doubles until the candidates reach every rank an estimate needs
(each level's VaR and the lower end of its Woodruff interval), so the result equals the
sort-based reference of
:func:`marginlab.simulate.weighted.weighted_var_es`. Each account is computed alone in its
own buffers: results do not depend on threads or account blocks.
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import kernel, parallel_kernel, prange

_ACC_BLOCK = 64

MASS_SNAP = 1e-10
"""Cumulative masses within this of the tail mass count as equal to it (the VaR is the next
scenario), as ``n (1 - level)`` is snapped to an integer in the unweighted estimators."""


@kernel
def _kth_largest(loss, m, heap):
    # The m-th largest value of loss (a bounded min-heap of size m in heap[:m]).
    n = loss.shape[0]
    for i in range(m):
        heap[i] = loss[i]
    for start in range(m // 2 - 1, -1, -1):
        i = start
        x = heap[i]
        while True:
            c = 2 * i + 1
            if c >= m:
                break
            if c + 1 < m and heap[c + 1] < heap[c]:
                c += 1
            if heap[c] < x:
                heap[i] = heap[c]
                i = c
            else:
                break
        heap[i] = x
    for s in range(m, n):
        x = loss[s]
        if x > heap[0]:
            i = 0
            while True:
                c = 2 * i + 1
                if c >= m:
                    break
                if c + 1 < m and heap[c + 1] < heap[c]:
                    c += 1
                if heap[c] < x:
                    heap[i] = heap[c]
                    i = c
                else:
                    break
            heap[i] = x
    return heap[0]


@kernel
def _first_above(cum, nc, m):
    # min{t < nc : cum[t] > m}, or -1.
    for t in range(nc):
        if cum[t] > m:
            return t
    return -1


@kernel
def _covered(cum, nc, ranked, p, p2, beta, z):
    # Do the nc candidates reach every rank an estimate needs: the VaR of each level and
    # the lower end of its Woodruff interval (tail mass beta + z sigma_F)?
    for li in range(beta.shape[0]):
        b = beta[li]
        ts = _first_above(cum, nc, b + MASS_SNAP)
        if ts < 0:
            return False
        p2t = 0.0
        for t in range(ts):
            p2t += p[ranked[t]] * p[ranked[t]]
        a = 1.0 - b
        lo_m = b + z * math.sqrt(p2t * a * a + (p2 - p2t) * b * b)
        if lo_m < 1.0 and _first_above(cum, nc, lo_m) < 0:
            return False
    return True


@kernel
def _account_block_w(a_lo, a_hi, U, indptr, indices, qty, p, p2, beta, z, m0,
                     alloc, out_var, out_es, out_var_lo, out_var_hi, out_es_se, out_alloc_var,
                     out_alloc_es):
    n = U.shape[1]
    n_levels = beta.shape[0]
    loss = np.empty(n)
    heap = np.empty(n)
    cand = np.empty(n, np.int64)
    neg = np.empty(n)
    cum = np.empty(n)
    for acc in range(a_lo, a_hi):
        loss[:] = 0.0
        for k in range(indptr[acc], indptr[acc + 1]):
            q = qty[k]
            row = indices[k]
            for s in range(n):
                loss[s] -= q * U[row, s]
        m = m0
        while True:
            thr = _kth_largest(loss, m, heap) if m < n else -np.inf
            nc = 0
            for s in range(n):
                if loss[s] >= thr:
                    cand[nc] = s
                    neg[nc] = -loss[s]
                    nc += 1
            order = np.argsort(neg[:nc], kind="mergesort")  # stable: ties by scenario index
            ranked = cand[:nc][order]
            c = 0.0
            for t in range(nc):
                c += p[ranked[t]]
                cum[t] = c
            if m >= n or _covered(cum, nc, ranked, p, p2, beta, z):
                break
            m = min(n, 2 * m)
        for li in range(n_levels):
            b = beta[li]
            ts = _first_above(cum, nc, b + MASS_SNAP)
            if ts < 0:
                ts = nc - 1
            s_star = ranked[ts]
            qv = loss[s_star]
            exc = 0.0
            p2t = 0.0
            for t in range(ts):
                s = ranked[t]
                exc += p[s] * (loss[s] - qv)
                p2t += p[s] * p[s]
            es = qv + exc / b
            ev = 0.0
            for t in range(ts):
                s = ranked[t]
                psi = qv - es + (loss[s] - qv) / b
                ev += p[s] * p[s] * psi * psi
            ev += (p2 - p2t) * (qv - es) * (qv - es)
            a = 1.0 - b
            sf = math.sqrt(p2t * a * a + (p2 - p2t) * b * b)
            lo_m = b + z * sf
            hi_m = b - z * sf
            v_lo = -np.inf
            if lo_m < 1.0:
                t_lo = _first_above(cum, nc, lo_m)
                if t_lo >= 0:
                    v_lo = loss[ranked[t_lo]]
            v_hi = np.inf
            if hi_m > 0.0:
                v_hi = loss[ranked[_first_above(cum, nc, hi_m)]]
            out_var[li, acc] = qv
            out_es[li, acc] = es
            out_var_lo[li, acc] = v_lo
            out_var_hi[li, acc] = v_hi
            out_es_se[li, acc] = math.sqrt(max(ev, 0.0))
            if alloc:
                for k in range(indptr[acc], indptr[acc + 1]):
                    q = qty[k]
                    row = indices[k]
                    base = -q * U[row, s_star]
                    ce = 0.0
                    for t in range(ts):
                        s = ranked[t]
                        ce += p[s] * (-q * U[row, s] - base)
                    out_alloc_var[li, k] = base
                    out_alloc_es[li, k] = base + ce / b


@parallel_kernel
def _account_kernel_w(U, indptr, indices, qty, p, p2, beta, z, m0, alloc, out_var,
                      out_es, out_var_lo, out_var_hi, out_es_se, out_alloc_var, out_alloc_es):
    n_acc = indptr.shape[0] - 1
    n_blocks = (n_acc + _ACC_BLOCK - 1) // _ACC_BLOCK
    for b in prange(n_blocks):
        _account_block_w(b * _ACC_BLOCK, min((b + 1) * _ACC_BLOCK, n_acc), U, indptr, indices,
                         qty, p, p2, beta, z, m0, alloc, out_var, out_es,
                         out_var_lo, out_var_hi, out_es_se, out_alloc_var, out_alloc_es)
