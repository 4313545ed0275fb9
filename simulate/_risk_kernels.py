"""The per-account numba kernels of :mod:`marginlab.simulate.risk`.

Selection of the largest losses of each account (a thresholded candidate buffer cut back by
branch-free quickselect), VaR and ES of the selected tails, the order statistics behind the
standard errors and intervals of :func:`~marginlab.simulate.risk.var_es`, the sums of
positions into accounts and the Euler contributions of
:func:`~marginlab.simulate.risk.allocate`. Each kernel has a serial block form and a
``prange`` form over blocks of accounts (or rows); the algorithm is described in the module
notes of :mod:`marginlab.simulate.risk`.
"""

from __future__ import annotations

import math

import numpy as np

from ._estimators import _PARTIALS, _es_tail, _fsum
from ._numba import inline_kernel, kernel, parallel_kernel, prange

BLOCK_ACCOUNTS = 256
"""Most accounts per ``prange`` task of the selection kernel (a row segment of 2 KiB); fewer
when that leaves less than 4 tasks per thread (at least 8 accounts: one cache line)."""

BLOCK_ROWS = 256
"""Scenarios per ``prange`` task when summing positions into accounts."""


def _capacity(k: int, n: int) -> int:
    # Candidate buffer per account: 2k + 16 balances appends against cut-backs (about 790
    # appends and 5 cut-backs for n = 10,000 normal losses and k = 101); at least 128, so
    # that small tails are not cut back every few scenarios.
    return min(n, max(2 * k + 16, 128))


# ----------------------------------------------------------------------------- kernels
@inline_kernel
def _first(v1, i1, v2, i2):
    # The ranking of scenarios: (v1, i1) comes before (v2, i2) when its loss is larger, or
    # equal and its scenario earlier. Scenario indices are unique: a strict total order.
    return v1 > v2 or (v1 == v2 and i1 < i2)


@kernel
def _sift(bv, bi, r, lo, pos, end, v, i):
    # Heap on bv[r, lo:lo + end] (losses) / bi (scenarios) whose root is the element ranked
    # last: fill the hole at ``pos`` with (v, i), moving lower-ranked children up.
    while True:
        c = 2 * pos + 1
        if c >= end:
            break
        d = c + 1
        if d < end and _first(bv[r, lo + c], bi[r, lo + c], bv[r, lo + d], bi[r, lo + d]):
            c = d
        if _first(v, i, bv[r, lo + c], bi[r, lo + c]):
            bv[r, lo + pos] = bv[r, lo + c]
            bi[r, lo + pos] = bi[r, lo + c]
            pos = c
        else:
            break
    bv[r, lo + pos] = v
    bi[r, lo + pos] = i


@kernel
def _heapsort(bv, bi, r, lo, hi):
    # Sort bv[r, lo:hi] / bi[r, lo:hi] in ranking order, O(m log m) in the worst case.
    m = hi - lo
    for pos in range(m // 2 - 1, -1, -1):
        _sift(bv, bi, r, lo, pos, m, bv[r, lo + pos], bi[r, lo + pos])
    for end in range(m - 1, 0, -1):
        v = bv[r, lo + end]
        i = bi[r, lo + end]
        bv[r, lo + end] = bv[r, lo]
        bi[r, lo + end] = bi[r, lo]
        _sift(bv, bi, r, lo, 0, end, v, i)


@kernel
def _partition(bv, bi, r, lo, hi, pv, pi, sv, si, ties):
    # Branch-free partition of bv[r, lo:hi] into sv[lo:hi + 1]: the entries ranked before the
    # pivot (pv, pi) to the front, the others to the back, one free slot left between them at
    # the returned split p. Each entry is written at both ends; the wrong copy is overwritten
    # later. By value only (and counting entries equal to pv) unless ``ties``.
    wl = lo
    wh = hi
    eq = 0
    for t in range(lo, hi):
        v = bv[r, t]
        i = bi[r, t]
        sv[wl] = v
        si[wl] = i
        sv[wh] = v
        si[wh] = i
        if ties:
            f = np.int64(v > pv) + np.int64(v == pv) * np.int64(i < pi)
        else:
            f = np.int64(v > pv)
            eq += np.int64(v == pv)
        wl += f
        wh -= 1 - f
    return wl, eq


@kernel
def _pivot(bv, bi, r, lo, hi, t):
    # Position of a pivot for selecting position t in bv[r, lo:hi]: below 64 entries the
    # median of three; else the entry of a sorted sample (7, 15 or 31 evenly spaced entries,
    # growing with m) whose rank fraction matches the target's, which usually leaves a range
    # of ~m / sqrt(sample) for the next round (Floyd-Rivest's idea, simplified).
    m = hi - lo
    if m < 64:
        a = lo
        b = (lo + hi) >> 1
        c = hi - 1
        fab = _first(bv[r, a], bi[r, a], bv[r, b], bi[r, b])
        fbc = _first(bv[r, b], bi[r, b], bv[r, c], bi[r, c])
        fac = _first(bv[r, a], bi[r, a], bv[r, c], bi[r, c])
        if fab == fbc:
            return b
        if fab == fac:
            return c
        return a
    ns = 7 if m < 512 else (15 if m < 4096 else 31)
    pos = np.empty(ns, dtype=np.int64)
    for u in range(ns):
        pos[u] = lo + (u * (m - 1)) // (ns - 1)
    for u in range(1, ns):
        c = pos[u]
        v = bv[r, c]
        i = bi[r, c]
        d = u - 1
        while d >= 0 and _first(v, i, bv[r, pos[d]], bi[r, pos[d]]):
            pos[d + 1] = pos[d]
            d -= 1
        pos[d + 1] = c
    return pos[((t - lo) * (ns - 1) + (m - 1) // 2) // (m - 1)]


@kernel
def _select_range(bv, bi, r, lo, hi, t, sv, si):
    # Reorder bv[r, lo:hi] / bi[r, lo:hi] so that position t (lo <= t < hi) holds the entry
    # with exactly t - lo entries of the range ranked before it, those entries in
    # [lo, t) and the others in (t, hi), in no particular order. Quickselect with sampled
    # pivots and the branch-free partition (by value; again with the full
    # ranking when the pivot's value is tied), falling back to heapsort of the remaining
    # range after 2 log2(m) + 8 rounds, so the worst case is O(m log m). sv / si: scratch of
    # length >= hi.
    budget = 2 * int(math.log2(hi - lo + 1)) + 8
    while hi - lo > 1:
        if budget == 0:
            _heapsort(bv, bi, r, lo, hi)
            return
        budget -= 1
        q = _pivot(bv, bi, r, lo, hi, t)
        pv = bv[r, q]
        pi = bi[r, q]
        bv[r, q] = bv[r, hi - 1]
        bi[r, q] = bi[r, hi - 1]
        p, eq = _partition(bv, bi, r, lo, hi - 1, pv, pi, sv, si, False)
        if eq > 0:
            p, eq = _partition(bv, bi, r, lo, hi - 1, pv, pi, sv, si, True)
        sv[p] = pv
        si[p] = pi
        for u in range(lo, hi):
            bv[r, u] = sv[u]
            bi[r, u] = si[u]
        if p == t:
            return
        if p > t:
            hi = p
        else:
            lo = p + 1


@kernel
def _select_block(x, c0, j0, j1, ranks, cap, tv, ti, bad):
    # Columns c0 + j0 .. c0 + j1 - 1 of x, each into row j of tv (losses) and ti (scenarios),
    # j = j0 .. j1 - 1: its k = ranks[-1] + 1 first-ranked entries, such that for every q in
    # ``ranks`` (ascending) position q holds the entry of rank q and positions < q the entries
    # ranked before it (sets, unordered between the selected ranks). bad[j] gets the first
    # row of the column holding NaN or +-inf (else it stays -1). cap > k unless cap == n.
    # The rows are streamed once, each row segment of the block read contiguously. Per column
    # a buffer of ``cap`` candidates: a loss is appended only when it exceeds the threshold
    # ``thr``, the k-th largest kept so far; a full buffer is cut back to its k first-ranked
    # entries, which raises the threshold. A later scenario with a loss equal to the
    # threshold ranks below every kept entry, hence the strict ">".
    n = x.shape[0]
    nb = j1 - j0
    col = c0 + j0
    k = ranks[ranks.shape[0] - 1] + 1
    bv = np.empty((nb, cap))
    bi = np.empty((nb, cap), dtype=np.int64)
    sv = np.empty(cap)
    si = np.empty(cap, dtype=np.int64)
    cnt = np.zeros(nb, dtype=np.int64)
    thr = np.full(nb, -np.inf)
    for s in range(n):
        for jj in range(nb):
            v = x[s, col + jj]
            if not (v - v == 0.0):
                if bad[j0 + jj] < 0:
                    bad[j0 + jj] = s
                continue
            # Branch-free append: written always, kept when above the threshold.
            c = cnt[jj]
            bv[jj, c] = v
            bi[jj, c] = s
            c += np.int64(v > thr[jj])
            if c == cap:
                _select_range(bv, bi, jj, 0, cap, k - 1, sv, si)
                thr[jj] = bv[jj, k - 1]
                c = k
            cnt[jj] = c
    for jj in range(nb):
        c = cnt[jj]
        if c < k:  # only with non-finite entries (reported by the caller)
            for t in range(c, k):
                bv[jj, t] = np.nan
                bi[jj, t] = 0
            c = k
        hi = c
        for ir in range(ranks.shape[0] - 1, -1, -1):
            _select_range(bv, bi, jj, 0, hi, ranks[ir], sv, si)
            hi = ranks[ir]
        for t in range(k):
            tv[j0 + jj, t] = bv[jj, t]
            ti[j0 + jj, t] = bi[jj, t]


@parallel_kernel
def _select_tails(x, c0, ranks, cap, block, tv, ti, bad):
    # Tails of columns c0 .. c0 + tv.shape[0] - 1 of x, prange over blocks of columns.
    m = tv.shape[0]
    n_blocks = (m + block - 1) // block
    for b in prange(n_blocks):
        _select_block(x, c0, b * block, min(m, (b + 1) * block), ranks, cap, tv, ti, bad)


@kernel
def _excess_mean(tv, j, f, q, w, a, p):
    # q + fsum(tv[j, t] - q for t < f) / w: the ES of one column, order-independent.
    for t in range(f):
        a[t] = tv[j, t] - q
    return q + _fsum(a, f, p) / w


@kernel
def _var_es_block(tv, j0, j1, fl, w, c0, var_out, es_out):
    # Per level: VaR = tail[fl]; ES = VaR + fsum_{t < fl} (tail[t] - VaR) / w.
    p = np.empty(_PARTIALS)
    a = np.empty(tv.shape[1])
    for j in range(j0, j1):
        for lv in range(fl.shape[0]):
            q = tv[j, fl[lv]]
            var_out[lv, c0 + j] = q
            es_out[lv, c0 + j] = _excess_mean(tv, j, fl[lv], q, w[lv], a, p)


@parallel_kernel
def _var_es_kernel(tv, fl, w, c0, block, var_out, es_out):
    m = tv.shape[0]
    n_blocks = (m + block - 1) // block
    for b in prange(n_blocks):
        _var_es_block(tv, b * block, min(m, (b + 1) * block), fl, w, c0, var_out, es_out)


@kernel
def _stats_block(tv, j0, j1, fl, level, w, t_dens_hi, t_dens_lo, t_ci_hi, t_ci_lo, c0, out):
    # out[0..5, level, c0 + j]: VaR, ES, ES standard error (the one rule, _es_tail), density
    # spread tail[t_dens_hi] - tail[t_dens_lo], VaR CI lower and upper values (-inf / inf
    # when the order statistic falls outside the sample: index -1).
    p = np.empty(_PARTIALS)
    a = np.empty(tv.shape[1])
    for j in range(j0, j1):
        for lv in range(fl.shape[0]):
            f = fl[lv]
            q = tv[j, f]
            e, se = _es_tail(tv[j], f, q, w[lv], level[lv], a, p)
            out[0, lv, c0 + j] = q
            out[1, lv, c0 + j] = e
            out[2, lv, c0 + j] = se
            out[3, lv, c0 + j] = tv[j, t_dens_hi[lv]] - tv[j, t_dens_lo[lv]]
            out[4, lv, c0 + j] = -np.inf if t_ci_lo[lv] < 0 else tv[j, t_ci_lo[lv]]
            out[5, lv, c0 + j] = np.inf if t_ci_hi[lv] < 0 else tv[j, t_ci_hi[lv]]


@parallel_kernel
def _stats_kernel(tv, fl, level, w, t_dens_hi, t_dens_lo, t_ci_hi, t_ci_lo, c0, block, out):
    m = tv.shape[0]
    n_blocks = (m + block - 1) // block
    for b in prange(n_blocks):
        _stats_block(
            tv, b * block, min(m, (b + 1) * block), fl, level, w,
            t_dens_hi, t_dens_lo, t_ci_hi, t_ci_lo, c0, out,
        )  # fmt: skip


@kernel
def _account_sum_block(x, pos, starts, a0, s0, s1, out):
    # out[s, a] = sum of x[s, p] over the positions p of account a0 + a, in position order.
    n_acc = out.shape[1]
    for s in range(s0, s1):
        for a in range(n_acc):
            acc = 0.0
            for q in range(starts[a0 + a], starts[a0 + a + 1]):
                acc += x[s, pos[q]]
            out[s, a] = acc


@parallel_kernel
def _account_sums(x, pos, starts, a0, block, out):
    n = out.shape[0]
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        _account_sum_block(x, pos, starts, a0, b * block, min(n, (b + 1) * block), out)


@kernel
def _contrib_block(x, pos, starts, a0, j0, j1, ti, t0, t1, den, excess, out):
    # For the positions p of account a0 + j, with s_t = ti[j, t] (scenarios by rank), exact
    # sums (fsum):
    # excess (ES): out[lv, p] = x[s_t1, p] + sum_{t0 <= t < t1} (x[s_t, p] - x[s_t1, p]) / den;
    # else (VaR): out[lv, p] = sum_{t0 <= t <= t1} x[s_t, p] / den.
    ps = np.empty(_PARTIALS)
    terms = np.empty(ti.shape[1])
    for j in range(j0, j1):
        a = a0 + j
        for q in range(starts[a], starts[a + 1]):
            p = pos[q]
            for lv in range(t0.shape[0]):
                if excess:
                    base = x[ti[j, t1[lv]], p]
                    m = t1[lv] - t0[lv]
                    for t in range(m):
                        terms[t] = x[ti[j, t0[lv] + t], p] - base
                    out[lv, p] = base + _fsum(terms, m, ps) / den[lv]
                else:
                    m = t1[lv] - t0[lv] + 1
                    for t in range(m):
                        terms[t] = x[ti[j, t0[lv] + t], p]
                    out[lv, p] = _fsum(terms, m, ps) / den[lv]


@parallel_kernel
def _contributions(x, pos, starts, a0, ti, t0, t1, den, excess, block, out):
    m = ti.shape[0]
    n_blocks = (m + block - 1) // block
    for b in prange(n_blocks):
        _contrib_block(
            x, pos, starts, a0, b * block, min(m, (b + 1) * block), ti, t0, t1, den, excess, out
        )
