"""Numba kernels of the path generators (private: see :mod:`marginlab.simulate.paths`).

Every kernel generates paths ``[first, first + n)`` of a run. It walks the random-stream
blocks that cover that range in a ``prange`` loop; each block starts its own stream from
(key, block index) and generates *all* its paths from the block start (so a slice of a run
equals the same paths of the full run), writing only those inside the range.

Draw order inside a block, the reproducibility contract: units of ``pair`` paths (2 with
antithetic variates, else 1) in path order; per unit, first one uniform per asset with
jumps (its first jump arrival), then per step: the ``n_assets`` diffusion normals, then the
model's other variates (per asset with arrivals in the step, one uniform per arrival for the
next gap and one normal for the summed jump size; chi-square or bootstrap row). Antithetic
partners use the negated normals and share every other variate.

Outputs, by ``mode``: ``MODE_PATHS`` writes the running log-price increments ``L_t`` into
``paths`` then turns them into prices in place (``S_t = s0 * exp(L_t)`` with the vectorised
exp of :mod:`._vmath`, ``s0`` folded into its polynomial; ``L_0 = 0`` so ``S_0 == s0``
exactly; per path, or per batch of consecutive paths in the one-asset kernel);
``MODE_TERMINAL`` writes ``S_T`` into ``term``; ``MODE_EXTREMES`` also the running minimum
and maximum of ``S_t`` over ``t = 0..n_steps`` into ``lo`` and ``hi``. The reductions use the
same arithmetic (``scaled_exp1`` is bit-identical to the vector pass), so they equal
``paths[:, -1]``, ``paths.min(axis=1)`` and ``paths.max(axis=1)``.

Performance note: per-step code calls no helper that takes arrays. numba reference-counts
arrays passed to functions with atomic operations, which made such calls (even inlined ones)
cost more than the random variate itself. Helpers here take scalars and tuples only, or run
once per path.
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import inline_kernel, kernel, parallel_kernel, prange
from ._vmath import scaled_exp1, scaled_exp_inplace, scaled_exp_inplace_const
from .rng import BLOCK_PATHS, block_state, gamma, normal, randbelow, uniform

MODE_PATHS = 0
MODE_TERMINAL = 1
MODE_EXTREMES = 2

_EXP_BATCH = 4096  # log prices per exp pass in the one-asset kernel (32 KiB, within L1)


@kernel
def _finish_path(mode, s0, paths, term, lo, hi, row, L, j, lmin, lmax, scale):
    # Once per path: turn member j's log-price record into prices (scale: s0 tiled per step).
    n_assets = L.shape[1]
    if mode == MODE_PATHS:
        n_t = paths.shape[1]
        scaled_exp_inplace(paths[row].reshape(n_t * n_assets), scale)
    else:
        for a in range(n_assets):
            term[row, a] = scaled_exp1(s0[a], L[j, a])
        if mode == MODE_EXTREMES:
            for a in range(n_assets):
                lo[row, a] = scaled_exp1(s0[a], lmin[j, a])
                hi[row, a] = scaled_exp1(s0[a], lmax[j, a])


@kernel
def _finish_path_1(mode, s0, paths, term, lo, hi, row, L, lmin, lmax, scale):
    # Single-asset twin of _finish_path with the state in scalars.
    if mode == MODE_PATHS:
        scaled_exp_inplace(paths[row].reshape(paths.shape[1]), scale)
    else:
        term[row, 0] = scaled_exp1(s0, L)
        if mode == MODE_EXTREMES:
            lo[row, 0] = scaled_exp1(s0, lmin)
            hi[row, 0] = scaled_exp1(s0, lmax)


@kernel
def _member_rows(p, pair, first, p_hi):
    r0 = p - first if p >= first else -1
    r1 = p + 1 - first if (pair == 2 and p + 1 >= first and p + 1 < p_hi) else -1
    return r0, r1


@parallel_kernel
def jump_diffusion_kernel(
    key, first, n, n_steps, pair, mode,
    drift, vol, chol, lam_dt, jump_mean, jump_std,
    s0, paths, term, lo, hi,
):  # fmt: skip
    """GBM + Merton jumps. ``drift``/``vol`` are per step: (mu - sigma^2/2 - lam kappa) dt and
    sigma sqrt(dt); ``lam_dt`` the expected jumps per step.

    Jumps are the arrivals of a Poisson process of rate ``lam_dt`` per step, drawn as
    exponential gaps (see :func:`_next_arrival`): a step's count is the number of arrivals in
    ``(t - 1, t]``, exactly Poisson(lam_dt) and independent across steps, and a step without
    one costs a comparison instead of a uniform variate."""
    b_first = first // BLOCK_PATHS
    n_blocks = (first + n - 1) // BLOCK_PATHS - b_first + 1
    one = drift.shape[0] == 1
    for ib in prange(n_blocks):
        if one and pair == 1 and lam_dt[0] == 0.0:
            _plain_block_1(b_first + ib, key, first, n, n_steps, mode, drift[0],
                           vol[0] * chol[0, 0], None, s0[0], paths, term, lo, hi)
        elif one and pair == 1:
            _plain_block_1(b_first + ib, key, first, n, n_steps, mode, drift[0],
                           vol[0] * chol[0, 0], (lam_dt[0], jump_mean[0], jump_std[0]), s0[0],
                           paths, term, lo, hi)  # fmt: skip
        elif one:
            _jump_diffusion_block_1(
                b_first + ib, key, first, n, n_steps, pair, mode,
                drift[0], vol[0], chol[0, 0], lam_dt[0], jump_mean[0], jump_std[0], s0[0],
                paths, term, lo, hi,
            )  # fmt: skip
        else:
            _jump_diffusion_block(
                b_first + ib, key, first, n, n_steps, pair, mode,
                drift, vol, chol, lam_dt, jump_mean, jump_std,
                s0, paths, term, lo, hi,
            )  # fmt: skip


@inline_kernel
def _next_arrival(at, lam_dt, st):
    # The next arrival of a rate-lam_dt Poisson process after time ``at`` (in steps): an
    # exponential gap -log(1 - u) / lam_dt (1 - u is exact for the 53-bit u in [0, 1), and
    # log is three times cheaper than log1p). With lam_dt == 0 there is none (inf).
    if lam_dt == 0.0:
        return math.inf, st
    u, st = uniform(st)
    return at - math.log(1.0 - u) / lam_dt, st


@inline_kernel
def _count_arrivals(nxt, t, lam_dt, st):
    # Arrivals in (t - 1, t] given the first one after t - 1 is at ``nxt`` (> t - 1): their
    # number and the first arrival after t.
    k = 0
    while nxt <= t:
        k += 1
        nxt, st = _next_arrival(nxt, lam_dt, st)
    return k, nxt, st


@kernel
def _jump_diffusion_block(
    b, key, first, n, n_steps, pair, mode,
    drift, vol, chol, lam_dt, jump_mean, jump_std,
    s0, paths, term, lo, hi,
):  # fmt: skip
    n_assets = drift.shape[0]
    any_jumps = False
    for a in range(n_assets):
        if lam_dt[a] > 0.0:
            any_jumps = True
    st = block_state(key, b)
    z = np.empty(n_assets)
    zc = np.empty(n_assets)
    jp = np.zeros(n_assets)
    jn = np.zeros(n_assets)
    nxt = np.empty(n_assets)
    L = np.zeros((pair, n_assets))
    lmin = np.zeros((pair, n_assets))
    lmax = np.zeros((pair, n_assets))
    rows = np.empty(pair, np.int64)
    scale = np.empty(paths.shape[1] * n_assets)
    for i in range(scale.shape[0]):
        scale[i] = s0[i % n_assets]
    p_lo = b * BLOCK_PATHS
    p_hi = min(p_lo + BLOCK_PATHS, first + n)
    for p in range(p_lo, p_hi, pair):
        for j in range(pair):
            q = p + j
            rows[j] = q - first if (q >= first and q < p_hi) else -1
            for a in range(n_assets):
                L[j, a] = 0.0
                lmin[j, a] = 0.0
                lmax[j, a] = 0.0
                if mode == MODE_PATHS and rows[j] >= 0:
                    paths[rows[j], 0, a] = 0.0
        if any_jumps:
            for a in range(n_assets):
                nxt[a], st = _next_arrival(0.0, lam_dt[a], st)
        for t in range(1, n_steps + 1):
            for a in range(n_assets):
                z[a], st = normal(st)
            if n_assets == 1:
                zc[0] = chol[0, 0] * z[0]
            else:
                for i in range(n_assets):
                    acc = 0.0
                    for k in range(n_assets):
                        acc += chol[i, k] * z[k]
                    zc[i] = acc
            if any_jumps:
                for a in range(n_assets):
                    jp[a] = 0.0
                    jn[a] = 0.0
                    if nxt[a] <= t:
                        kj, nxt[a], st = _count_arrivals(nxt[a], t, lam_dt[a], st)
                        if kj > 0:
                            zj, st = normal(st)
                            base = kj * jump_mean[a]
                            spread = jump_std[a] * math.sqrt(kj) * zj
                            jp[a] = base + spread
                            jn[a] = base - spread
            for a in range(n_assets):
                dz = vol[a] * zc[a]
                L[0, a] += drift[a] + dz + jp[a]
                if pair == 2:
                    L[1, a] += drift[a] - dz + jn[a]
            if mode == MODE_PATHS:
                for j in range(pair):
                    if rows[j] >= 0:
                        for a in range(n_assets):
                            paths[rows[j], t, a] = L[j, a]
            elif mode == MODE_EXTREMES:
                for j in range(pair):
                    for a in range(n_assets):
                        lmin[j, a] = min(lmin[j, a], L[j, a])
                        lmax[j, a] = max(lmax[j, a], L[j, a])
        for j in range(pair):
            if rows[j] >= 0:
                _finish_path(mode, s0, paths, term, lo, hi, rows[j], L, j, lmin, lmax, scale)


@inline_kernel
def _jump_1(nxt, t, jumps, st):
    # The summed log jump of one step with arrivals (nxt <= t) and the next arrival after it:
    # kj Poisson arrivals, log jumps N(jump_mean, jump_std^2) each, summed with one normal.
    lam_dt, jump_mean, jump_std = jumps
    kj, nxt, st = _count_arrivals(nxt, t, lam_dt, st)
    zj, st = normal(st)
    return kj * jump_mean + jump_std * math.sqrt(kj) * zj, nxt, st


@inline_kernel
def _step_1(L, t, nxt, drift, vol, jumps, st):
    # One step of _plain_block_1: the diffusion normal, then the jumps that arrived by t.
    x, st = normal(st)
    jp = 0.0
    if jumps is not None:
        if nxt <= t:
            jp, nxt, st = _jump_1(nxt, t, jumps, st)
    return L + (drift + vol * x + jp), nxt, st


@kernel
def _plain_block_1(b, key, first, n, n_steps, mode, drift, vol, jumps, s0, paths, term, lo, hi):
    # The common case (one asset, no antithetic partner) with one loop per mode. ``jumps`` is
    # None for GBM or (lam_dt, jump_mean, jump_std): numba compiles one version for each and
    # prunes the ``jumps is None`` branches, so GBM's step loop has no branch at all and
    # Merton's only the rare "a jump arrived" one. The same draws and arithmetic as
    # _jump_diffusion_block_1 (vol is vol * c00 with c00 == 1 for one asset; adding the zero
    # jump term of a step without one changes no bit).
    st = block_state(key, b)
    n_t = paths.shape[1]
    flat = paths.reshape(paths.size)
    g0 = -1  # first row whose log prices still await the exp pass, -1 if none
    p_lo = b * BLOCK_PATHS
    p_hi = min(p_lo + BLOCK_PATHS, first + n)
    for p in range(p_lo, p_hi):
        row = p - first
        L = 0.0
        nxt = math.inf
        if jumps is not None:
            nxt, st = _next_arrival(0.0, jumps[0], st)
        if mode == MODE_PATHS and row >= 0:
            paths[row, 0, 0] = 0.0
            for t in range(1, n_steps + 1):
                L, nxt, st = _step_1(L, t, nxt, drift, vol, jumps, st)
                paths[row, t, 0] = L
            # The exp pass runs over about _EXP_BATCH values of consecutive rows at once
            # (contiguous, still in L1): fewer loop start-ups and unaligned ends than one row
            # at a time (~0.1 ns per value with 257-step rows).
            if g0 < 0:
                g0 = row
            if (row + 1 - g0) * n_t >= _EXP_BATCH or p == p_hi - 1:
                scaled_exp_inplace_const(flat[g0 * n_t:(row + 1) * n_t], s0)
                g0 = -1
        elif mode == MODE_EXTREMES:
            lmin = 0.0
            lmax = 0.0
            for t in range(1, n_steps + 1):
                L, nxt, st = _step_1(L, t, nxt, drift, vol, jumps, st)
                lmin = min(lmin, L)
                lmax = max(lmax, L)
            if row >= 0:
                term[row, 0] = scaled_exp1(s0, L)
                lo[row, 0] = scaled_exp1(s0, lmin)
                hi[row, 0] = scaled_exp1(s0, lmax)
        else:  # terminal prices, or a path before ``first`` whose draws are only skipped
            for t in range(1, n_steps + 1):
                L, nxt, st = _step_1(L, t, nxt, drift, vol, jumps, st)
            if row >= 0:
                term[row, 0] = scaled_exp1(s0, L)


@kernel
def _jump_diffusion_block_1(
    b, key, first, n, n_steps, pair, mode,
    drift, vol, c00, lam_dt, jump_mean, jump_std,
    s0, paths, term, lo, hi,
):  # fmt: skip
    # One asset: the same draws and arithmetic as _jump_diffusion_block, with the state in
    # registers (array loads and stores in the step loop cost more than the variates).
    st = block_state(key, b)
    scale = np.full(paths.shape[1], s0)
    p_lo = b * BLOCK_PATHS
    p_hi = min(p_lo + BLOCK_PATHS, first + n)
    for p in range(p_lo, p_hi, pair):
        r0, r1 = _member_rows(p, pair, first, p_hi)
        L0 = L1 = lo0 = lo1 = hi0 = hi1 = 0.0
        if mode == MODE_PATHS:
            if r0 >= 0:
                paths[r0, 0, 0] = 0.0
            if r1 >= 0:
                paths[r1, 0, 0] = 0.0
        nxt, st = _next_arrival(0.0, lam_dt, st)
        for t in range(1, n_steps + 1):
            x, st = normal(st)
            dz = vol * (c00 * x)
            jp = 0.0
            jn = 0.0
            if nxt <= t:
                kj, nxt, st = _count_arrivals(nxt, t, lam_dt, st)
                if kj > 0:
                    zj, st = normal(st)
                    base = kj * jump_mean
                    spread = jump_std * math.sqrt(kj) * zj
                    jp = base + spread
                    jn = base - spread
            L0 += drift + dz + jp
            if pair == 2:
                L1 += drift - dz + jn
            if mode == MODE_PATHS:
                if r0 >= 0:
                    paths[r0, t, 0] = L0
                if r1 >= 0:
                    paths[r1, t, 0] = L1
            elif mode == MODE_EXTREMES:
                lo0 = min(lo0, L0)
                hi0 = max(hi0, L0)
                lo1 = min(lo1, L1)
                hi1 = max(hi1, L1)
        if r0 >= 0:
            _finish_path_1(mode, s0, paths, term, lo, hi, r0, L0, lo0, hi0, scale)
        if r1 >= 0:
            _finish_path_1(mode, s0, paths, term, lo, hi, r1, L1, lo1, hi1, scale)


@parallel_kernel
def garch_kernel(
    key, first, n, n_steps, pair, mode,
    omega, alpha, beta, gam, mu, sigma2_0, chol, dist, nu, residuals,
    s0, paths, term, lo, hi,
):  # fmt: skip
    """GJR-GARCH(1,1) log returns r_t = mu + sqrt(h_t) z_t with CCC innovations.

    ``dist``: 0 normal, 1 multivariate Student-t (unit variance), 2 bootstrap rows.
    The variance recursion is written h_{t+1} = omega + h_t (beta + (alpha + gamma 1[z_t<0])
    z_t^2), which equals omega + (alpha + gamma 1[eps_t<0]) eps_t^2 + beta h_t with
    eps_t = sqrt(h_t) z_t but keeps the square root off the loop-carried dependency chain."""
    b_first = first // BLOCK_PATHS
    n_blocks = (first + n - 1) // BLOCK_PATHS - b_first + 1
    one = mu.shape[0] == 1
    for ib in prange(n_blocks):
        if one:
            _garch_block_1(
                b_first + ib, key, first, n, n_steps, pair, mode,
                omega[0], alpha[0], beta[0], gam[0], mu[0], sigma2_0[0], chol[0, 0], dist, nu,
                residuals, s0[0], paths, term, lo, hi,
            )  # fmt: skip
        else:
            _garch_block(
                b_first + ib, key, first, n, n_steps, pair, mode,
                omega, alpha, beta, gam, mu, sigma2_0, chol, dist, nu, residuals,
                s0, paths, term, lo, hi,
            )  # fmt: skip


@kernel
def _garch_block(
    b, key, first, n, n_steps, pair, mode,
    omega, alpha, beta, gam, mu, sigma2_0, chol, dist, nu, residuals,
    s0, paths, term, lo, hi,
):  # fmt: skip
    n_assets = mu.shape[0]
    n_obs = residuals.shape[0]
    t_scale = math.sqrt(nu - 2.0) if dist == 1 else 1.0
    half_nu = 0.5 * nu
    st = block_state(key, b)
    z = np.empty(n_assets)
    zc = np.empty(n_assets)
    L = np.zeros((pair, n_assets))
    h = np.empty((pair, n_assets))
    lmin = np.zeros((pair, n_assets))
    lmax = np.zeros((pair, n_assets))
    rows = np.empty(pair, np.int64)
    scale = np.empty(paths.shape[1] * n_assets)
    for i in range(scale.shape[0]):
        scale[i] = s0[i % n_assets]
    p_lo = b * BLOCK_PATHS
    p_hi = min(p_lo + BLOCK_PATHS, first + n)
    for p in range(p_lo, p_hi, pair):
        for j in range(pair):
            q = p + j
            rows[j] = q - first if (q >= first and q < p_hi) else -1
            for a in range(n_assets):
                L[j, a] = 0.0
                lmin[j, a] = 0.0
                lmax[j, a] = 0.0
                h[j, a] = sigma2_0[a]
                if mode == MODE_PATHS and rows[j] >= 0:
                    paths[rows[j], 0, a] = 0.0
        for t in range(1, n_steps + 1):
            if dist == 2:
                kr, st = randbelow(n_obs, st)
                for a in range(n_assets):
                    zc[a] = residuals[kr, a]
            else:
                for a in range(n_assets):
                    z[a], st = normal(st)
                if n_assets == 1:
                    zc[0] = chol[0, 0] * z[0]
                else:
                    for i in range(n_assets):
                        acc = 0.0
                        for k in range(n_assets):
                            acc += chol[i, k] * z[k]
                        zc[i] = acc
                if dist == 1:
                    w, st = gamma(half_nu, st)  # chi2(nu) / 2
                    scl = t_scale / math.sqrt(2.0 * w)
                    for a in range(n_assets):
                        zc[a] *= scl
            for j in range(pair):
                sgn = 1.0 if j == 0 else -1.0
                for a in range(n_assets):
                    za = sgn * zc[a]
                    L[j, a] += mu[a] + math.sqrt(h[j, a]) * za
                    lev = alpha[a] + gam[a] if za < 0.0 else alpha[a]
                    h[j, a] = omega[a] + h[j, a] * (beta[a] + lev * (za * za))
            if mode == MODE_PATHS:
                for j in range(pair):
                    if rows[j] >= 0:
                        for a in range(n_assets):
                            paths[rows[j], t, a] = L[j, a]
            elif mode == MODE_EXTREMES:
                for j in range(pair):
                    for a in range(n_assets):
                        lmin[j, a] = min(lmin[j, a], L[j, a])
                        lmax[j, a] = max(lmax[j, a], L[j, a])
        for j in range(pair):
            if rows[j] >= 0:
                _finish_path(mode, s0, paths, term, lo, hi, rows[j], L, j, lmin, lmax, scale)


@kernel
def _garch_block_1(
    b, key, first, n, n_steps, pair, mode,
    omega, alpha, beta, gam, mu, sigma2_0, c00, dist, nu, residuals,
    s0, paths, term, lo, hi,
):  # fmt: skip
    # One asset: the same draws and arithmetic as _garch_block with the state in registers.
    n_obs = residuals.shape[0]
    t_scale = math.sqrt(nu - 2.0) if dist == 1 else 1.0
    half_nu = 0.5 * nu
    alpha_neg = alpha + gam
    st = block_state(key, b)
    scale = np.full(paths.shape[1], s0)
    p_lo = b * BLOCK_PATHS
    p_hi = min(p_lo + BLOCK_PATHS, first + n)
    for p in range(p_lo, p_hi, pair):
        r0, r1 = _member_rows(p, pair, first, p_hi)
        L0 = L1 = lo0 = lo1 = hi0 = hi1 = 0.0
        h0 = h1 = sigma2_0
        if mode == MODE_PATHS:
            if r0 >= 0:
                paths[r0, 0, 0] = 0.0
            if r1 >= 0:
                paths[r1, 0, 0] = 0.0
        for t in range(1, n_steps + 1):
            if dist == 2:
                kr, st = randbelow(n_obs, st)
                zc = residuals[kr, 0]
            else:
                x, st = normal(st)
                zc = c00 * x
                if dist == 1:
                    w, st = gamma(half_nu, st)  # chi2(nu) / 2
                    zc *= t_scale / math.sqrt(2.0 * w)
            z2 = zc * zc
            L0 += mu + math.sqrt(h0) * zc
            h0 = omega + h0 * (beta + (alpha_neg if zc < 0.0 else alpha) * z2)
            if pair == 2:
                L1 += mu + math.sqrt(h1) * (-zc)
                h1 = omega + h1 * (beta + (alpha_neg if -zc < 0.0 else alpha) * z2)
            if mode == MODE_PATHS:
                if r0 >= 0:
                    paths[r0, t, 0] = L0
                if r1 >= 0:
                    paths[r1, t, 0] = L1
            elif mode == MODE_EXTREMES:
                lo0 = min(lo0, L0)
                hi0 = max(hi0, L0)
                lo1 = min(lo1, L1)
                hi1 = max(hi1, L1)
        if r0 >= 0:
            _finish_path_1(mode, s0, paths, term, lo, hi, r0, L0, lo0, hi0, scale)
        if r1 >= 0:
            _finish_path_1(mode, s0, paths, term, lo, hi, r1, L1, lo1, hi1, scale)


@parallel_kernel
def normal_kernel(key, first, n, n_steps, pair, out):
    """The raw diffusion normals of :func:`jump_diffusion_kernel` with ``lam = 0`` (GBM),
    in its draw order: ``out[i, t, a]`` drives path ``first + i`` at step ``t + 1``."""
    b_first = first // BLOCK_PATHS
    n_blocks = (first + n - 1) // BLOCK_PATHS - b_first + 1
    for ib in prange(n_blocks):
        _normal_block(b_first + ib, key, first, n, n_steps, pair, out)


@kernel
def _normal_block(b, key, first, n, n_steps, pair, out):
    n_assets = out.shape[2]
    st = block_state(key, b)
    p_lo = b * BLOCK_PATHS
    p_hi = min(p_lo + BLOCK_PATHS, first + n)
    for p in range(p_lo, p_hi, pair):
        for t in range(n_steps):
            for a in range(n_assets):
                x, st = normal(st)
                for j in range(pair):
                    q = p + j
                    if q >= first and q < p_hi:
                        out[q - first, t, a] = x if j == 0 else -x
