"""Empirical value-at-risk and expected shortfall over scenarios, with standard errors,
confidence intervals, Euler allocation to positions and incremental (what-if) margin.

Conventions (the one place they are written down for this module):

* Losses are positive numbers (a loss is minus the P&L). ``losses`` is 1-D
  ``(n_scenarios,)`` (one portfolio) or 2-D ``(n_scenarios, n_accounts)``; the measures are
  taken along axis 0, per account.
* ``level`` is a confidence level in the open interval (0, 1) (0.99 is "99 %"), a scalar or a
  sequence of ``n_levels`` levels. Results have shape ``(n_levels, n_accounts)``; the level
  axis is dropped for a scalar level and the account axis for 1-D losses (both dropped: a
  numpy float64 scalar).
* Order statistics of the ``n`` losses of one account: ascending :math:`L_{(1)} \\le \\dots
  \\le L_{(n)}`, or descending :math:`L_{[1]} \\ge \\dots \\ge L_{[n]}` with
  :math:`L_{[t]} = L_{(n + 1 - t)}`. Where a scenario (not just a value) must be chosen
  (allocation), equal losses are ranked by scenario index: the earlier scenario counts as the
  larger loss.

Estimators, with tail mass :math:`w = n(1 - \\alpha)`, :math:`j = \\lfloor w \\rfloor`,
:math:`\\theta = w - j`:

.. math::

    \\mathrm{VaR}_\\alpha = L_{(\\lceil n\\alpha \\rceil)} = L_{[j + 1]}, \\qquad
    \\mathrm{ES}_\\alpha = \\frac{1}{w}\\Big(\\sum_{t=1}^{j} L_{[t]}
        + \\theta\\, L_{[j + 1]}\\Big).

VaR is the lower empirical quantile; ES is the Acerbi-Tasche (2002) estimator: the average of
the worst :math:`w` losses, the boundary order statistic (which is the VaR) carrying the
fractional weight :math:`\\theta` when :math:`w` is not an integer. ES is therefore a weighted
mean of losses that are all :math:`\\ge` VaR (so ES >= VaR), and it is coherent (monotone,
sub-additive, positively homogeneous, translation invariant) for every ``n``. It is computed
as :math:`\\mathrm{VaR} + \\frac{1}{w}\\sum_{t \\le j}(L_{[t]} - \\mathrm{VaR})`, the same number
in exact arithmetic, which keeps ES >= VaR after rounding. ``w`` is computed
in floating point and rounded to the nearest integer when it is within ``1e-10 * n`` of one,
so that e.g. ``n = 100, level = 0.9`` gives exactly :math:`L_{(90)}` although
``1 - 0.9 != 0.1`` in binary. ``w >= 1`` is required (the tail must hold a scenario). For
levels below ``1/n`` (``w`` rounds to ``n``), :math:`j = n - 1` and :math:`\\theta = w - j`:
VaR is the smallest loss and ES about the mean.

Performance: no column is sorted. Every level comes from one selection of the
:math:`k = \\lfloor n(1 - \\alpha_{min}) \\rfloor + 1` largest losses per account (a few more
for :func:`var_es`). A numba kernel, parallel over blocks of up to ``BLOCK_ACCOUNTS``
accounts (one serial kernel call per block), streams the rows of the loss matrix once,
reading each row segment of a block contiguously. Per account it keeps a buffer of
``2k + 16`` candidates: a loss is kept only when it exceeds a threshold, the k-th largest kept
so far (a branch-free append); a full buffer is cut back to its k first-ranked entries by
quickselect (branch-free partitions), which raises the threshold. For i.i.d. scenarios
O(k log(n/k)) losses are kept per account; every other loss costs a comparison. Nested
quickselects then place the ranks that are needed (the VaR of each level, the order
statistics of :func:`var_es`) and the sums over the tail are exact (Shewchuk's algorithm, as
``math.fsum``), so no ordering is needed and the results are correctly rounded sums. Worst
case: losses that increase along the scenario axis keep every loss, about twice numpy's
``partition`` work. Accounts are processed in chunks (``chunk`` accounts at a time), so the
extra memory is O(k x chunk) <= O(n_scenarios x chunk). Each account's result depends only
on its own column and fixed arithmetic, so results are bit-identical for any chunk size and
any number of numba threads.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ._estimators import _PARTIALS, _es_tail, _fsum
from ._numba import inline_kernel, kernel, numba, parallel_kernel, prange
from .weighted import weighted_allocate, weighted_var_es

__all__ = ["VarEs", "allocate", "es", "incremental", "var", "var_es"]

BLOCK_ACCOUNTS = 256
"""Most accounts per ``prange`` task of the selection kernel (a row segment of 2 KiB); fewer
when that leaves less than 4 tasks per thread (at least 8 accounts: one cache line)."""

BLOCK_ROWS = 256
"""Scenarios per ``prange`` task when summing positions into accounts."""

_CHUNK_CELLS = 1 << 22
"""Default chunk: about this many cells of scratch per chunk (at least 64 accounts): tail
buffers of ~2k cells per account, or full columns when a chunk is copied or summed."""

_SNAP = 1e-10



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


# -------------------------------------------------------------------------- validation
def _check_losses(name: str, losses: Any, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    arr = np.asarray(losses)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        allowed = " or ".join(
            {1: "1-D (n_scenarios,)", 2: "2-D (n_scenarios, n_accounts)"}[d] for d in ndims
        )
        raise ValueError(f"{name} must be {allowed}, got ndim={arr.ndim} shape {arr.shape}")
    return arr


def _as_kernel_array(arr: np.ndarray) -> np.ndarray | None:
    """``arr`` itself if a kernel can read it in place (writable float64 C-contiguous 2-D)."""
    ok = arr.dtype == np.float64 and arr.flags.c_contiguous and arr.flags.writeable
    return arr if ok else None


def _check_chunk(chunk: Any) -> int | None:
    if chunk is None:
        return None
    if isinstance(chunk, (bool, np.bool_)) or not isinstance(chunk, numbers.Integral):
        raise TypeError(f"chunk must be an int >= 1 or None, got {type(chunk).__name__} {chunk!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be an int >= 1 or None, got {chunk}")
    return int(chunk)


def _resolve_chunk(chunk: int | None, cells: int) -> int:
    """``chunk``, or by default about _CHUNK_CELLS / ``cells`` accounts."""
    return chunk if chunk is not None else max(64, _CHUNK_CELLS // max(cells, 1))


def _check_measure(measure: Any) -> str:
    if measure not in ("es", "var"):
        raise ValueError(f"measure must be 'es' or 'var', got {measure!r}")
    return measure


def _check_unit(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a float in the open interval (0, 1), got "
            f"{type(value).__name__} {value!r}"
        )
    value = float(value)
    if not (0.0 < value < 1.0):
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    return value


class _Levels:
    """Validated levels and the tail geometry for ``n`` scenarios."""

    def __init__(self, level: Any, n: int, name: str = "level"):
        if isinstance(level, np.ndarray) and level.ndim == 0:
            level = level.item()
        scalar = np.ndim(level) == 0
        if not scalar and np.ndim(level) != 1:
            raise ValueError(f"{name} must be a scalar or a 1-D sequence, got shape "
                             f"{np.shape(level)}")  # fmt: skip
        items = [level] if scalar else list(level)
        if not items:
            raise ValueError(f"{name} must hold at least one level, got {level!r}")
        self.level = np.array([_check_unit(name, a) for a in items])
        self.scalar = scalar
        self.n = n
        w = n * (1.0 - self.level)
        near = np.round(w)
        w = np.where(np.abs(w - near) <= _SNAP * n, near, w)
        for a, wa in zip(self.level.tolist(), w.tolist(), strict=True):
            if wa < 1.0:
                top = 1.0 - 1.0 / n if n > 1 else None
                allowed = f"<= 1 - 1/n_scenarios = {top!r}" if top else "impossible for n=1"
                raise ValueError(
                    f"{name}={a!r} is too high for n_scenarios={n}: n_scenarios * (1 - {name})"
                    f" = {wa!r} < 1, so the tail holds no whole scenario; {name} must be "
                    f"{allowed}"
                )
        self.w = w
        # j = n - ceil(n level) <= n - 1 for any level > 0 (w may round to n below 1/n).
        self.fl = np.minimum(np.floor(w), n - 1).astype(np.int64)
        self.frac = w - self.fl
        self.k = int(self.fl.max()) + 1  # the tail size

    def shape(self, n_accounts: int | None) -> tuple[int, ...]:
        return (() if self.scalar else (self.level.size,)) + (
            () if n_accounts is None else (n_accounts,)
        )


def _shape_out(arr: np.ndarray, levels: _Levels, one_d: bool):
    res = arr.reshape(levels.shape(None if one_d else arr.shape[-1]))
    return res[()] if res.ndim == 0 else res


def _raise_bad(name: str, arr: np.ndarray, bad: np.ndarray, c0: int) -> None:
    hit = np.flatnonzero(bad >= 0)
    if hit.size:
        col = c0 + int(hit[0])
        row = int(bad[hit[0]])
        where = f"{name}[{row}]" if arr.ndim == 1 else f"{name}[{row}, {col}]"
        value = arr[row] if arr.ndim == 1 else arr[row, col]
        raise ValueError(f"{name} must be finite (no NaN or inf), got {value!r} at {where}")


def _ranks(*groups: Any) -> np.ndarray:
    """The sorted distinct tail positions (0-based descending ranks) a kernel must select."""
    r = np.unique(np.concatenate([np.asarray(g, dtype=np.int64).ravel() for g in groups]))
    return r[r >= 0]


def _tails(arr: np.ndarray, x: np.ndarray | None, c0: int, c1: int, ranks: np.ndarray,
           name: str):  # fmt: skip
    """Tails (losses, scenarios) of columns ``c0:c1`` with ``ranks`` selected in place."""
    if x is None:  # not readable in place: copy just this chunk
        xc = np.ascontiguousarray(arr.reshape(arr.shape[0], -1)[:, c0:c1], dtype=np.float64)
        if not xc.flags.writeable:
            xc = xc.copy()
        x_in, off = xc, 0
    else:
        x_in, off = x, c0
    m = c1 - c0
    k = int(ranks[-1]) + 1
    tv = np.empty((m, k))
    ti = np.empty((m, k), dtype=np.int64)
    bad = np.full(m, -1, dtype=np.int64)
    _select(x_in, off, ranks, tv, ti, bad)
    _raise_bad(name, arr, bad, c0)
    return tv, ti


def _block(m: int) -> int:
    # Accounts per prange task. Results never depend on it (each account is computed alone).
    per_thread = -(-m // (4 * numba.get_num_threads()))
    return max(8, min(BLOCK_ACCOUNTS, per_thread))


# One block of work runs the serial kernel directly: no parallel region to start.
def _select(x, c0, ranks, tv, ti, bad):
    k = int(ranks[-1]) + 1
    if not (ranks[0] >= 0 and k <= x.shape[0] and tv.shape[1] == k):
        raise AssertionError(f"tail positions {ranks} outside 0..{x.shape[0] - 1}")
    cap = _capacity(k, x.shape[0])
    block = _block(tv.shape[0])
    if tv.shape[0] <= block:
        _select_block(x, c0, 0, tv.shape[0], ranks, cap, tv, ti, bad)
    else:
        _select_tails(x, c0, ranks, cap, block, tv, ti, bad)


def _var_es_into(tv, lv, c0, var_out, es_out):
    block = _block(tv.shape[0])
    if tv.shape[0] <= block:
        _var_es_block(tv, 0, tv.shape[0], lv.fl, lv.w, c0, var_out, es_out)
    else:
        _var_es_kernel(tv, lv.fl, lv.w, c0, block, var_out, es_out)


def _chunks(n_accounts: int, chunk: int):
    for c0 in range(0, n_accounts, chunk):
        yield c0, min(n_accounts, c0 + chunk)


def _measures(arr: np.ndarray, levels: _Levels, chunk: int | None, name: str):
    """VaR and ES ``(n_levels, n_accounts)`` of a validated loss array, chunk by chunk."""
    x2 = arr.reshape(arr.shape[0], -1)
    x = _as_kernel_array(x2)
    chunk = _resolve_chunk(chunk, 2 * levels.k if x is not None else arr.shape[0])
    n_acc = x2.shape[1]
    var_out = np.empty((levels.level.size, n_acc))
    es_out = np.empty((levels.level.size, n_acc))
    for c0, c1 in _chunks(n_acc, chunk):
        tv, _ = _tails(arr, x, c0, c1, _ranks(levels.fl), name)
        _var_es_into(tv, levels, c0, var_out, es_out)
    return var_out, es_out


def _prepare(losses: Any, level: Any, chunk: Any, name: str = "losses"):
    arr = _check_losses(name, losses)
    n = arr.shape[0]
    if n < 1:
        raise ValueError(f"{name} must hold at least 1 scenario, got shape {arr.shape}")
    lv = _Levels(level, n)
    return arr, lv, _check_chunk(chunk)


# ------------------------------------------------------------------------------ public
_SHAPES_DOC = """
    Parameters
    ----------
    losses : array_like, shape (n_scenarios,) or (n_scenarios, n_accounts)
        Scenario losses (positive = loss), finite. float64 C-contiguous writable arrays are
        read in place; anything else is converted one chunk of accounts at a time.
    level : float or sequence of float
        Confidence level(s) in (0, 1), with ``n_scenarios * (1 - level) >= 1``.
    chunk : int, optional
        Accounts processed per chunk: extra memory O(k x chunk), ``k`` the tail size, or
        O(n_scenarios x chunk) when the input must be converted. The default keeps a chunk's
        scratch near 2**22 cells. Results do not depend on it.
    weights : array_like, shape (n_scenarios,), optional
        Likelihood-ratio weights (importance sampling): the weighted estimators of
        :mod:`marginlab.simulate.weighted` (weighted order statistics, self-normalised).
"""


def var(losses: Any, level: Any, *, chunk: int | None = None,
        weights: Any = None) -> np.ndarray | np.float64:
    """Empirical value-at-risk along the scenario axis: the lower empirical quantile.

    .. math::

        \\mathrm{VaR}_\\alpha = L_{(\\lceil n\\alpha \\rceil)},

    the :math:`\\lceil n\\alpha \\rceil`-th smallest of the ``n`` losses (equivalently the
    :math:`(j + 1)`-th largest, :math:`j = \\lfloor n(1 - \\alpha) \\rfloor`); this is
    ``numpy.quantile(losses, level, method="inverted_cdf", axis=0)``.

    Returns
    -------
    numpy.ndarray or numpy.float64
        Shape ``(n_levels, n_accounts)``, without the level axis for a scalar ``level`` and
        without the account axis for 1-D ``losses``.

    Examples
    --------
    >>> import numpy as np
    >>> from marginlab.simulate.risk import var
    >>> float(var(np.arange(1.0, 101.0), 0.95))
    95.0
    """
    arr, levels, chunk = _prepare(losses, level, chunk)
    if weights is not None:
        return _weighted_field(arr, levels, weights, "var")
    v, _ = _measures(arr, levels, chunk, "losses")
    return _shape_out(v, levels, arr.ndim == 1)


def es(losses: Any, level: Any, *, chunk: int | None = None,
       weights: Any = None) -> np.ndarray | np.float64:
    """Empirical expected shortfall (Acerbi-Tasche) along the scenario axis.

    With :math:`w = n(1 - \\alpha)`, :math:`j = \\lfloor w \\rfloor`, :math:`\\theta = w - j`
    and the losses in descending order :math:`L_{[1]} \\ge L_{[2]} \\ge \\dots`:

    .. math::

        \\mathrm{ES}_\\alpha = \\frac{1}{w}\\Big(\\sum_{t=1}^{j} L_{[t]}
            + \\theta\\, L_{[j + 1]}\\Big),

    the average of the worst :math:`w` losses with the fractional weight :math:`\\theta` on
    the boundary order statistic :math:`L_{[j+1]} = \\mathrm{VaR}_\\alpha`; ES is coherent.
    It is computed in the equivalent excess form

    .. math::

        \\mathrm{ES}_\\alpha = \\mathrm{VaR}_\\alpha
            + \\frac{1}{w}\\sum_{t=1}^{j}\\big(L_{[t]} - \\mathrm{VaR}_\\alpha\\big),

    the sum correctly rounded (as ``math.fsum``): every term is >= 0 after rounding, so
    ES >= VaR holds in floating point too, and a constant loss gives exactly that constant.

    Returns
    -------
    numpy.ndarray or numpy.float64
        Shape ``(n_levels, n_accounts)``, without the level axis for a scalar ``level`` and
        without the account axis for 1-D ``losses``.

    Examples
    --------
    >>> import numpy as np
    >>> from marginlab.simulate.risk import es
    >>> float(es(np.arange(1.0, 101.0), 0.95))  # mean of 96..100
    98.0
    """
    arr, levels, chunk = _prepare(losses, level, chunk)
    if weights is not None:
        return _weighted_field(arr, levels, weights, "es")
    _, e = _measures(arr, levels, chunk, "losses")
    return _shape_out(e, levels, arr.ndim == 1)


for _f in (var, es):
    _head, _sep, _tail = (_f.__doc__ or "").partition("\n    Returns\n")
    _f.__doc__ = _head + _SHAPES_DOC + "\n    Returns\n" + _tail


@dataclass(frozen=True)
class VarEs:
    """VaR and ES with standard errors and confidence intervals (see :func:`var_es`).

    Every array has the shape of :func:`var`'s result: ``(n_levels, n_accounts)`` without
    the level axis for a scalar level and without the account axis for 1-D losses.
    """

    level: np.ndarray
    """The levels, shape ``(n_levels,)`` (also for a scalar level)."""
    ci: float
    """Confidence of the intervals."""
    n_scenarios: int
    var: np.ndarray
    es: np.ndarray
    var_se: np.ndarray
    """Asymptotic standard error of VaR: sqrt(level (1 - level) / n) / f(VaR)."""
    es_se: np.ndarray
    """Asymptotic standard error of ES."""
    var_lower: np.ndarray
    """Distribution-free order-statistic interval (``-inf`` when below the sample)."""
    var_upper: np.ndarray
    """Distribution-free order-statistic interval (``inf`` when above the sample)."""
    es_lower: np.ndarray
    """Normal interval ``es - z se``."""
    es_upper: np.ndarray
    """Normal interval ``es + z se``."""

    def to_frame(self):
        """A long ``pandas.DataFrame``: one row per (level, account), one column per field."""
        import pandas as pd

        fields = ("var", "es", "var_se", "es_se", "var_lower", "var_upper", "es_lower",
                  "es_upper")  # fmt: skip
        n_lv = self.level.size
        cols = {f: np.asarray(getattr(self, f)).reshape(n_lv, -1) for f in fields}
        n_acc = cols["var"].shape[1]
        frame = pd.DataFrame(
            {
                "level": np.repeat(self.level, n_acc),
                "account": np.tile(np.arange(n_acc), n_lv),
                **{f: c.reshape(-1) for f, c in cols.items()},
            }
        )
        return frame


def _bofinger(level: float, n: int) -> float:
    # Bofinger (1975) bandwidth for the sparsity 1/f at the level-quantile, normal reference.
    z = NormalDist().inv_cdf(level)
    phi = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return n ** (-0.2) * (4.5 * phi**4 / (2.0 * z * z + 1.0) ** 2) ** 0.2


def var_es(losses: Any, levels: Any, *, ci: float = 0.95, chunk: int | None = None,
           weights: Any = None) -> VarEs:
    """VaR and ES (as :func:`var` and :func:`es`) with standard errors and intervals.

    All come from one tail selection per account.

    **VaR interval** (distribution-free). For continuous losses the number of scenarios at
    or below the true quantile :math:`q_\\alpha` is :math:`B \\sim \\mathrm{Bin}(n, \\alpha)`
    and :math:`P(L_{(l)} \\le q_\\alpha < L_{(u)}) = P(l \\le B \\le u - 1)`. With
    :math:`\\beta = 1 - \\mathrm{ci}`, :math:`l = F_B^{-1}(\\beta/2)` and
    :math:`u = F_B^{-1}(1 - \\beta/2) + 1` (``F_B^{-1}`` the binomial quantile function) the
    interval :math:`[L_{(l)}, L_{(u)}]` covers :math:`q_\\alpha` with probability at least
    ``ci``. When :math:`l < 1` the lower end is ``-inf``, when :math:`u > n` the upper end is
    ``inf`` (too few scenarios to bound the quantile on that side).

    **VaR standard error** (asymptotic): :math:`\\sqrt{\\alpha(1-\\alpha)/n}\\,/\\,f(q_\\alpha)`
    with the sparsity :math:`1/f` estimated by the Siddiqui-Bloch-Gastwirth difference
    quotient of order statistics around the VaR rank :math:`r = \\lceil n\\alpha \\rceil`:

    .. math::

        \\widehat{1/f} = n\\,\\frac{L_{(r + m_+)} - L_{(r - m_-)}}{m_+ + m_-},

    :math:`m_\\pm = \\min(m, \\text{room in the sample})`, :math:`m = \\max(1,
    \\mathrm{round}(n h))` and :math:`h` Bofinger's normal-reference bandwidth
    :math:`h = n^{-1/5}[4.5\\,\\varphi(z_\\alpha)^4 / (2 z_\\alpha^2 + 1)^2]^{1/5}`,
    :math:`z_\\alpha = \\Phi^{-1}(\\alpha)`. Its relative noise is about
    :math:`1/\\sqrt{2m}`. Tied losses around the VaR give a zero spread and a zero SE.

    **ES standard error** (asymptotic, e.g. Manistre & Hancock 2005):

    .. math::

        \\mathrm{SE}^2 = \\frac{\\mathrm{Var}(L \\mid L \\ge \\mathrm{VaR})
            + \\alpha (\\mathrm{ES} - \\mathrm{VaR})^2}{n(1 - \\alpha)},

    the tail variance estimated with the ES weights,
    :math:`\\frac{1}{w}(\\sum_{t \\le j}(L_{[t]} - \\mathrm{ES})^2
    + \\theta (L_{[j+1]} - \\mathrm{ES})^2)`; interval :math:`\\mathrm{ES} \\pm
    \\Phi^{-1}((1 + \\mathrm{ci})/2)\\,\\mathrm{SE}`.

    Parameters
    ----------
    losses : array_like, shape (n_scenarios,) or (n_scenarios, n_accounts)
        Scenario losses (positive = loss), finite.
    levels : float or sequence of float
        Confidence level(s) in (0, 1), with ``n_scenarios * (1 - level) >= 1``.
    ci : float, default 0.95
        Confidence of the intervals, in (0, 1).
    chunk : int, optional
        Accounts per chunk (extra memory O(k x chunk)). Results do not depend on it.
    weights : array_like, shape (n_scenarios,), optional
        Likelihood-ratio weights: the weighted estimators of
        :mod:`marginlab.simulate.weighted` (Woodruff VaR interval, delta-method ES error).

    Returns
    -------
    VarEs
        Frozen result; arrays shaped like :func:`var`'s result.

    Examples
    --------
    >>> import numpy as np
    >>> from marginlab.simulate.risk import var_es
    >>> r = var_es(np.random.default_rng(0).standard_normal(10_000), 0.99)
    >>> bool(r.var_lower <= r.var <= r.var_upper)
    True
    """
    from scipy.stats import binom

    arr, lv, chunk = _prepare(losses, levels, chunk)
    ci = _check_unit("ci", ci)
    if weights is not None:
        _check_finite_all("losses", arr)
        r = weighted_var_es(arr, weights, lv.level, ci=ci)
        one = arr.ndim == 1
        return VarEs(level=lv.level.copy(), ci=ci, n_scenarios=arr.shape[0],
                     **{k: _shape_out(v, lv, one) for k, v in r.items()})
    n = lv.n
    a = lv.level
    fl = lv.fl
    # Density window around descending index fl (the VaR).
    m = np.array([max(1, round(n * _bofinger(x, n))) for x in a], dtype=np.int64)
    m_hi = np.minimum(m, fl)  # towards larger losses (smaller descending index)
    m_lo = np.minimum(m, n - 1 - fl)
    t_dens_hi = fl - m_hi
    t_dens_lo = fl + m_lo
    # Binomial order-statistic interval, ascending ranks l, u -> descending indices n - rank.
    beta = 1.0 - ci
    l_rank = binom.ppf(beta / 2.0, n, a).astype(np.int64)
    u_rank = binom.ppf(1.0 - beta / 2.0, n, a).astype(np.int64) + 1
    t_ci_lo = np.where(l_rank >= 1, n - l_rank, -1)
    t_ci_hi = np.where(u_rank <= n, n - u_rank, -1)
    ranks = _ranks(fl, t_dens_hi, t_dens_lo, t_ci_lo, t_ci_hi)

    x2 = arr.reshape(n, -1)
    x = _as_kernel_array(x2)
    chunk = _resolve_chunk(chunk, 2 * int(ranks[-1] + 1) if x is not None else n)
    n_acc = x2.shape[1]
    out = np.empty((6, a.size, n_acc))
    for c0, c1 in _chunks(n_acc, chunk):
        tv, _ = _tails(arr, x, c0, c1, ranks, "losses")
        args = (fl, a, lv.w, t_dens_hi, t_dens_lo, t_ci_hi, t_ci_lo, c0)
        block = _block(c1 - c0)
        if c1 - c0 <= block:
            _stats_block(tv, 0, c1 - c0, *args, out)
        else:
            _stats_kernel(tv, *args, block, out)
    v, e, es_se, spread, v_lo, v_hi = out
    a_col = a[:, None]
    sparsity = n * spread / (m_hi + m_lo)[:, None]
    var_se = np.sqrt(a_col * (1.0 - a_col) / n) * sparsity
    z = NormalDist().inv_cdf(0.5 + 0.5 * ci)
    one_d = arr.ndim == 1

    def shaped(y):
        return _shape_out(y, lv, one_d)

    return VarEs(
        level=a.copy(), ci=ci, n_scenarios=n,
        var=shaped(v), es=shaped(e), var_se=shaped(var_se), es_se=shaped(es_se),
        var_lower=shaped(v_lo), var_upper=shaped(v_hi),
        es_lower=shaped(e - z * es_se), es_upper=shaped(e + z * es_se),
    )  # fmt: skip


def allocate(
    position_losses: Any,
    account_of_position: Any,
    level: Any,
    measure: str = "es",
    *,
    window: int = 1,
    chunk: int | None = None,
    weights: Any = None,
) -> np.ndarray:
    """Euler allocation of each account's VaR or ES to its positions.

    The loss of account ``a`` in scenario ``s`` is :math:`A_s = \\sum_{p \\in a} X_{s,p}`
    (summed in position order). Rank the scenarios of each account by :math:`A_s`, largest
    first, equal losses by scenario index (earlier first): :math:`s_{[1]}, s_{[2]}, \\dots`.
    With :math:`w, j, \\theta` as in :func:`es`:

    * ES (``measure="es"``): the estimator's weights applied to the position,

      .. math::

          C_p = \\frac{1}{w}\\Big(\\sum_{t=1}^{j} X_{s_{[t]}, p}
              + \\theta\\, X_{s_{[j+1]}, p}\\Big)
              = X_{s_{[j+1]}, p} + \\frac{1}{w}\\sum_{t=1}^{j}
                \\big(X_{s_{[t]}, p} - X_{s_{[j+1]}, p}\\big),

      the weighted mean of the position's loss over the account's tail scenarios, computed
      in the second (excess) form with an exact sum like :func:`es`, so that a
      single-position account gets exactly its own ES. Summed over the account's positions
      the contributions give the account's ES (exactly in real arithmetic; in floating
      point to rounding, ~1e-15 relative to the sum of ``|C_p|``).
    * VaR (``measure="var"``): the position's loss in the scenario realising the VaR,
      :math:`C_p = X_{s_{[j+1]}, p}`; the contributions sum to the VaR. With ``window=m``
      (odd) they are smoothed: :math:`C_p = \\frac{1}{m}\\sum_{t=j+1-h}^{j+1+h}
      X_{s_{[t]}, p}`, :math:`h = (m - 1)/2`, the average over the ``m`` scenarios nearest
      in rank to the VaR scenario (a kernel estimate of :math:`E[X_p \\mid A = \\mathrm{VaR}]`,
      less noisy); they then sum to the average of those ``m`` account losses, not exactly
      to the VaR.

    Parameters
    ----------
    position_losses : array_like, shape (n_scenarios, n_positions)
        Loss of each position in each scenario, finite. A float64 C-contiguous writable
        array is read in place; anything else is copied once.
    account_of_position : array_like of int, shape (n_positions,)
        Account id of each position, in ``0 .. n_accounts - 1`` (``n_accounts`` is the
        largest id + 1).
    level : float or sequence of float
        Confidence level(s) in (0, 1), with ``n_scenarios * (1 - level) >= 1``.
    measure : {"es", "var"}, default "es"
    window : int, default 1
        ``measure="var"`` only: the odd number ``m`` of scenarios averaged;
        ``(m - 1) / 2`` must be at most ``floor(n (1 - level))`` and at most
        ``n - 1 - floor(n (1 - level))``.
    chunk : int, optional
        Accounts per chunk (extra memory O(n_scenarios x chunk)). Results do not depend
        on it.
    weights : array_like, shape (n_scenarios,), optional
        Likelihood-ratio weights: the weighted Euler allocation of
        :mod:`marginlab.simulate.weighted` (``window`` must then be 1).

    Returns
    -------
    numpy.ndarray
        Contributions, shape ``(n_levels, n_positions)``, or ``(n_positions,)`` for a scalar
        level.

    Examples
    --------
    >>> import numpy as np
    >>> from marginlab.simulate.risk import allocate, es
    >>> x = np.random.default_rng(0).standard_normal((1000, 3))
    >>> c = allocate(x, [0, 0, 0], 0.99)
    >>> bool(np.isclose(c.sum(), es(x.sum(axis=1), 0.99)))
    True
    """
    arr = _check_losses("position_losses", position_losses, ndims=(2,))
    n, n_pos = arr.shape
    if n < 1:
        raise ValueError(f"position_losses must hold at least 1 scenario, got shape {arr.shape}")
    ids = np.asarray(account_of_position)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"account_of_position must hold integer account ids, got dtype {ids.dtype}")
    if ids.shape != (n_pos,):
        raise ValueError(
            f"account_of_position must have shape (n_positions,) = ({n_pos},) to match "
            f"position_losses {arr.shape}, got shape {ids.shape}"
        )
    if n_pos and ids.min() < 0:
        raise ValueError(
            f"account_of_position must hold account ids >= 0, got {ids.min()} at position "
            f"{int(np.argmin(ids))}"
        )
    lv = _Levels(level, n)
    measure = _check_measure(measure)
    chunk = _resolve_chunk(_check_chunk(chunk), n)
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, numbers.Integral):
        raise TypeError(f"window must be an odd int >= 1, got {type(window).__name__} {window!r}")
    h = (int(window) - 1) // 2
    h_max = int(min(lv.fl.min(), n - 1 - lv.fl.max()))
    if window < 1 or window % 2 == 0 or h > h_max:
        raise ValueError(
            f"window must be an odd int in [1, {2 * h_max + 1}] for n_scenarios={n} and "
            f"level={lv.level.tolist() if not lv.scalar else float(lv.level[0])!r}, got {window}"
        )
    if window != 1 and measure != "var":
        raise ValueError(f"window applies to measure='var' only, got window={window} with "
                         f"measure={measure!r}")  # fmt: skip

    if weights is not None:
        if window != 1:
            raise ValueError(f"window must be 1 with weights, got {window}")
        _check_finite_all("position_losses", arr)
        out_w = weighted_allocate(arr, ids, weights, lv.level, measure)
        return out_w[0] if lv.scalar else out_w
    x = _as_kernel_array(arr)
    if x is None:
        x = np.array(arr, dtype=np.float64, order="C")
    excess = measure == "es"
    if excess:
        t0 = np.zeros(lv.level.size, dtype=np.int64)
        t1 = lv.fl.copy()
        den = lv.w.copy()
    else:
        t0 = lv.fl - h
        t1 = lv.fl + h
        den = np.full(lv.level.size, float(window))
    ranks = _ranks(t0 - 1, t1)  # the window's edges: its entries are then exactly known
    k = int(ranks[-1]) + 1
    out = np.zeros((lv.level.size, n_pos))
    if n_pos:
        ids64 = ids.astype(np.int64)
        n_acc = int(ids64.max()) + 1
        pos = np.argsort(ids64, kind="stable").astype(np.int64)
        starts = np.zeros(n_acc + 1, dtype=np.int64)
        np.cumsum(np.bincount(ids64, minlength=n_acc), out=starts[1:])
        for a0, a1 in _chunks(n_acc, chunk):
            acc_losses = np.empty((n, a1 - a0))
            if n <= BLOCK_ROWS:
                _account_sum_block(x, pos, starts, a0, 0, n, acc_losses)
            else:
                _account_sums(x, pos, starts, a0, BLOCK_ROWS, acc_losses)
            bad = np.full(a1 - a0, -1, dtype=np.int64)
            tv = np.empty((a1 - a0, k))
            ti = np.empty((a1 - a0, k), dtype=np.int64)
            _select(acc_losses, 0, ranks, tv, ti, bad)
            if np.any(bad >= 0):
                _check_finite("position_losses", arr)
            block = _block(a1 - a0)
            if a1 - a0 <= block:
                _contrib_block(x, pos, starts, a0, 0, a1 - a0, ti, t0, t1, den, excess, out)
            else:
                _contributions(x, pos, starts, a0, ti, t0, t1, den, excess, block, out)
    return out[0] if lv.scalar else out


def _weighted_field(arr: np.ndarray, lv: _Levels, weights: Any, field: str):
    _check_finite_all("losses", arr)
    r = weighted_var_es(arr, weights, lv.level)
    return _shape_out(r[field], lv, arr.ndim == 1)


def _check_finite_all(name: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        _check_finite(name, arr)


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = ", ".join(map(str, idx))
        raise ValueError(f"{name} must be finite (no NaN or inf), got {arr[idx]!r} at "
                         f"{name}[{where}]")  # fmt: skip
    raise ValueError(f"{name}: the sum of an account's positions overflows to inf")


def incremental(
    account_losses: Any,
    trade_losses: Any,
    level: Any,
    measure: str = "es",
    *,
    chunk: int | None = None,
) -> np.ndarray | np.float64:
    """Margin change of adding a what-if trade: ``measure(account + trade) - measure(account)``.

    Both terms use the same estimator (:func:`var` or :func:`es`) on the same scenarios, so a
    zero trade gives exactly 0 and a perfect hedge (``trade = -account``) gives
    ``-measure(account)``.

    Parameters
    ----------
    account_losses : array_like, shape (n_scenarios,) or (n_scenarios, n_accounts)
        Current losses of each account, finite.
    trade_losses : array_like, shape (n_scenarios,) or the shape of ``account_losses``
        Losses of the trade in the same scenarios: one trade added to every account (1-D), or
        one trade per account (2-D).
    level : float or sequence of float
        Confidence level(s) in (0, 1), with ``n_scenarios * (1 - level) >= 1``.
    measure : {"es", "var"}, default "es"
    chunk : int, optional
        Accounts per chunk (extra memory O(n_scenarios x chunk)). Results do not depend
        on it.

    Returns
    -------
    numpy.ndarray or numpy.float64
        Shaped like :func:`var`'s result for ``account_losses``.

    Examples
    --------
    >>> import numpy as np
    >>> from marginlab.simulate.risk import incremental
    >>> book = np.random.default_rng(0).standard_normal((1000, 2))
    >>> incremental(book, np.zeros(1000), 0.99).tolist()
    [0.0, 0.0]
    """
    arr, lv, chunk = _prepare(account_losses, level, chunk, "account_losses")
    chunk = _resolve_chunk(chunk, arr.shape[0])
    measure = _check_measure(measure)
    trade = _check_losses("trade_losses", trade_losses)
    n = arr.shape[0]
    if trade.shape != (n,) and trade.shape != arr.shape:
        raise ValueError(
            f"trade_losses must have shape ({n},) or {arr.shape} to match account_losses, got "
            f"shape {trade.shape}"
        )
    pick = 0 if measure == "var" else 1
    a2 = arr.reshape(n, -1)
    n_acc = a2.shape[1]
    t2 = trade.reshape(n, -1)
    out = np.empty((lv.level.size, n_acc))
    x = _as_kernel_array(a2)
    for c0, c1 in _chunks(n_acc, chunk):
        base = _measures_chunk(arr, x, c0, c1, lv, "account_losses")[pick]
        tc = t2 if t2.shape[1] == 1 else t2[:, c0:c1]
        both = np.add(a2[:, c0:c1], tc, dtype=np.float64)
        if not np.isfinite(tc).all():
            _check_finite("trade_losses", trade)
        new = _measures_chunk(both, both, 0, c1 - c0, lv, "account_losses + trade_losses")
        out[:, c0:c1] = new[pick] - base
    return _shape_out(out, lv, arr.ndim == 1)


def _measures_chunk(arr: np.ndarray, x: np.ndarray | None, c0: int, c1: int, lv: _Levels,
                    name: str):  # fmt: skip
    v = np.empty((lv.level.size, c1 - c0))
    e = np.empty((lv.level.size, c1 - c0))
    tv, _ = _tails(arr, x, c0, c1, _ranks(lv.fl), name)
    _var_es_into(tv, lv, 0, v, e)
    return v, e
