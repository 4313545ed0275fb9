"""Numba kernels of the path generators (private: see :mod:`marginlab.simulate.paths`).

Every kernel generates paths ``[first, first + n)`` of a run. It walks the random-stream
blocks that cover that range in a ``prange`` loop; each block starts its own stream from
(key, block index) and generates *all* its paths from the block start (so a slice of a run
equals the same paths of the full run), writing only those inside the range.

Draw order inside a block, the reproducibility contract: units of ``pair`` paths (2 with
antithetic variates, else 1) in path order; per unit, per step: the ``n_assets`` diffusion
normals, then the model's other variates (jumps per asset; chi-square or bootstrap row).
Antithetic partners use the negated normals and share every other variate.

Outputs, by ``mode``:
``MODE_PATHS`` writes log-price increments' running sums into ``paths`` then turns them into
prices in place (``S_t = s0 * exp(L_t)``, so ``S_0 == s0`` exactly); ``MODE_TERMINAL`` writes
``S_T`` into ``term``; ``MODE_EXTREMES`` also the running minimum and maximum of ``S_t`` over
``t = 0..n_steps`` into ``lo`` and ``hi``. The reductions use the same arithmetic as the full
paths, so they equal ``paths[:, -1]``, ``paths.min(axis=1)`` and ``paths.max(axis=1)``.
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import inline_kernel, kernel, parallel_kernel, prange
from .rng import BLOCK_PATHS, block_state, gamma, normal, poisson_small, randbelow

MODE_PATHS = 0
MODE_TERMINAL = 1
MODE_EXTREMES = 2


@inline_kernel
def _correlate(z, chol, zc):
    n = z.shape[0]
    if n == 1:
        zc[0] = z[0] * chol[0, 0]
        return
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += chol[i, j] * z[j]
        zc[i] = acc


@inline_kernel
def _block_range(b, first, n):
    lo = b * BLOCK_PATHS
    hi = min(lo + BLOCK_PATHS, first + n)
    return lo, hi


@inline_kernel
def _record(mode, paths, row, t, L, j, lmin, lmax):
    # Store the running log price of member j at step t (paths mode) or its extremes.
    n_assets = L.shape[1]
    if mode == MODE_PATHS:
        if row >= 0:
            for a in range(n_assets):
                paths[row, t, a] = L[j, a]
    elif mode == MODE_EXTREMES:
        for a in range(n_assets):
            if L[j, a] < lmin[j, a]:
                lmin[j, a] = L[j, a]
            if L[j, a] > lmax[j, a]:
                lmax[j, a] = L[j, a]


@inline_kernel
def _finish(mode, s0, paths, term, lo, hi, row, L, j, lmin, lmax):
    # Turn the log-price record of member j into prices.
    n_assets = L.shape[1]
    if row < 0:
        return
    if mode == MODE_PATHS:
        n_t = paths.shape[1]
        for t in range(n_t):
            for a in range(n_assets):
                paths[row, t, a] = s0[a] * math.exp(paths[row, t, a])
    else:
        for a in range(n_assets):
            term[row, a] = s0[a] * math.exp(L[j, a])
        if mode == MODE_EXTREMES:
            for a in range(n_assets):
                lo[row, a] = s0[a] * math.exp(lmin[j, a])
                hi[row, a] = s0[a] * math.exp(lmax[j, a])


@parallel_kernel
def jump_diffusion_kernel(
    key, first, n, n_steps, pair, mode,
    drift, vol, chol, lam_dt, exp_neg_lam_dt, jump_mean, jump_std,
    s0, paths, term, lo, hi,
):  # fmt: skip
    """GBM + Merton jumps. ``drift``/``vol`` are per step: (mu - sigma^2/2 - lam kappa) dt and
    sigma sqrt(dt); ``lam_dt`` the expected jumps per step."""
    b_first = first // BLOCK_PATHS
    n_blocks = (first + n - 1) // BLOCK_PATHS - b_first + 1
    for ib in prange(n_blocks):
        _jump_diffusion_block(
            b_first + ib, key, first, n, n_steps, pair, mode,
            drift, vol, chol, lam_dt, exp_neg_lam_dt, jump_mean, jump_std,
            s0, paths, term, lo, hi,
        )  # fmt: skip


@kernel
def _jump_diffusion_block(
    b, key, first, n, n_steps, pair, mode,
    drift, vol, chol, lam_dt, exp_neg_lam_dt, jump_mean, jump_std,
    s0, paths, term, lo, hi,
):  # fmt: skip
    n_assets = drift.shape[0]
    st = block_state(key, b)
    z = np.empty(n_assets)
    zc = np.empty(n_assets)
    L = np.zeros((pair, n_assets))
    lmin = np.zeros((pair, n_assets))
    lmax = np.zeros((pair, n_assets))
    p_lo, p_hi = _block_range(b, first, n)
    for p in range(p_lo, p_hi, pair):
        L[:] = 0.0
        lmin[:] = 0.0
        lmax[:] = 0.0
        for j in range(pair):
            row = p + j - first if (p + j >= first and p + j < p_hi) else -1
            _record(mode, paths, row, 0, L, j, lmin, lmax)
        for t in range(1, n_steps + 1):
            for a in range(n_assets):
                z[a], st = normal(st)
            _correlate(z, chol, zc)
            for a in range(n_assets):
                dz = vol[a] * zc[a]
                jump_pos = 0.0
                jump_neg = 0.0
                if lam_dt[a] > 0.0:
                    k, st = poisson_small(lam_dt[a], exp_neg_lam_dt[a], st)
                    if k > 0:
                        zj, st = normal(st)
                        base = k * jump_mean[a]
                        spread = jump_std[a] * math.sqrt(k) * zj
                        jump_pos = base + spread
                        jump_neg = base - spread
                L[0, a] += drift[a] + dz + jump_pos
                if pair == 2:
                    L[1, a] += drift[a] - dz + jump_neg
            for j in range(pair):
                row = p + j - first if (p + j >= first and p + j < p_hi) else -1
                _record(mode, paths, row, t, L, j, lmin, lmax)
        for j in range(pair):
            row = p + j - first if (p + j >= first and p + j < p_hi) else -1
            _finish(mode, s0, paths, term, lo, hi, row, L, j, lmin, lmax)


@parallel_kernel
def garch_kernel(
    key, first, n, n_steps, pair, mode,
    omega, alpha, beta, gam, mu, sigma2_0, chol, dist, nu, residuals,
    s0, paths, term, lo, hi,
):  # fmt: skip
    """GJR-GARCH(1,1) log returns r_t = mu + sqrt(h_t) z_t with CCC innovations.

    ``dist``: 0 normal, 1 multivariate Student-t (unit variance), 2 bootstrap rows."""
    b_first = first // BLOCK_PATHS
    n_blocks = (first + n - 1) // BLOCK_PATHS - b_first + 1
    for ib in prange(n_blocks):
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
    p_lo, p_hi = _block_range(b, first, n)
    for p in range(p_lo, p_hi, pair):
        L[:] = 0.0
        lmin[:] = 0.0
        lmax[:] = 0.0
        for j in range(pair):
            h[j, :] = sigma2_0
            row = p + j - first if (p + j >= first and p + j < p_hi) else -1
            _record(mode, paths, row, 0, L, j, lmin, lmax)
        for t in range(1, n_steps + 1):
            if dist == 2:
                k, st = randbelow(n_obs, st)
                for a in range(n_assets):
                    zc[a] = residuals[k, a]
            else:
                for a in range(n_assets):
                    z[a], st = normal(st)
                _correlate(z, chol, zc)
                if dist == 1:
                    w, st = gamma(half_nu, st)  # chi2(nu) / 2
                    scale = t_scale / math.sqrt(2.0 * w)
                    for a in range(n_assets):
                        zc[a] *= scale
            for j in range(pair):
                sgn = 1.0 if j == 0 else -1.0
                for a in range(n_assets):
                    eps = math.sqrt(h[j, a]) * (sgn * zc[a])
                    L[j, a] += mu[a] + eps
                    lev = alpha[a] + gam[a] if eps < 0.0 else alpha[a]
                    h[j, a] = omega[a] + lev * eps * eps + beta[a] * h[j, a]
                row = p + j - first if (p + j >= first and p + j < p_hi) else -1
                _record(mode, paths, row, t, L, j, lmin, lmax)
        for j in range(pair):
            row = p + j - first if (p + j >= first and p + j < p_hi) else -1
            _finish(mode, s0, paths, term, lo, hi, row, L, j, lmin, lmax)


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
    p_lo, p_hi = _block_range(b, first, n)
    for p in range(p_lo, p_hi, pair):
        for t in range(n_steps):
            for a in range(n_assets):
                x, st = normal(st)
                for j in range(pair):
                    q = p + j
                    if q >= first and q < p_hi:
                        out[q - first, t, a] = x if j == 0 else -x
