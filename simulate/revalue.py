"""Revaluation and per-account risk kernels (arrays in, arrays out).

Two stages, the shape of the whole engine:

1. :func:`unit_pnl` revalues every *unique* instrument once per scenario: the USD P&L of
   one unit over the horizon, ``U`` of shape ``(n_instruments, n_scenarios)`` (instrument
   major, so each account reads contiguous rows). Parallel over scenario blocks.
2. :func:`account_risk` aggregates ``U`` to accounts through a sparse holdings matrix (CSR:
   ``indptr``, ``indices``, ``data`` = quantities) and computes each account's VaR, ES, their
   Monte Carlo error bars and the Euler allocation of both to the account's holdings, one
   account at a time in a thread-local buffer. The ``(n_scenarios, n_accounts)`` P&L matrix
   is never formed: memory is ``U`` plus O(threads x n_scenarios).

Instrument kinds (``kind``): ``KIND_LINEAR`` (spot, linear perpetuals and futures: P&L per
unit ``mult (S_T - S_0) - funding``), ``KIND_INVERSE`` (coin-margined contracts of face value
``mult`` USD: coin P&L ``mult (1/S_0 - 1/S_T)``, worth ``mult (S_T/S_0 - 1)`` USD at the
scenario price, funding in coin likewise converted), ``KIND_OPTION`` (European options, USD
value ``mult V``; coin-settled options have the same USD value, their premium in coin being
``V / S``). Options are priced with Black-76 on the forward ``S e^{r tau}`` (Black-Scholes with
zero yield) at the scenario price, implied vol ``sigma0 x shock`` and remaining life
``tau - horizon``; an option that expires within the horizon pays its intrinsic value.
With a basis shock (``basis_shock``, ``basis_loading``), a dated future is marked at
``S_T (1 + db l)`` instead of ``S_T``: one additive basis factor ``db`` per underlying and
scenario, the instrument's tenor loading ``l`` (0 for spot, perpetuals and options, which are
then computed exactly as without it).

Risk estimators (losses are ``-P&L``, positive is bad), for ``n`` scenarios and level ``a``:
VaR is the ``ceil(n a)``-th smallest loss; ES is the Acerbi-Tasche estimator, the mean of the
worst ``w = n (1 - a)`` losses with a fractional weight on the boundary order statistic.
These are the estimators of :mod:`marginlab.simulate.risk`; ES and its standard error come
from the one shared rule (:mod:`marginlab.simulate._estimators`), so ``portfolio_risk`` and
:func:`marginlab.simulate.var_es` agree bit for bit on identical losses.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ._estimators import _PARTIALS, _es_tail
from ._numba import inline_kernel, kernel, parallel_kernel, prange
from .pricing import _ncdf

__all__ = ["KIND_LINEAR", "KIND_INVERSE", "KIND_OPTION", "unit_pnl", "account_risk"]

KIND_LINEAR = 0
KIND_INVERSE = 1
KIND_OPTION = 2

_SCEN_BLOCK = 1024
_ACC_BLOCK = 64


# ----------------------------------------------------------------------------- unit P&L
@inline_kernel
def _black_forward(s, k, logm, dr, carry_t, sqrt_t, sigma, phi):
    # Black-76 on the forward s e^{carry_t}, discount dr, with the log-moneyness
    # logm = log(s) - log(k) given (one log per scenario and underlying, not per option).
    kdf = k * dr
    v = sigma * sqrt_t
    if not v > 0.0:
        return max(phi * (s - kdf), 0.0)
    d1 = (logm + carry_t) / v + 0.5 * v
    d2 = d1 - v
    return max(phi * (s * _ncdf(phi * d1) - kdf * _ncdf(phi * d2)), 0.0)


@kernel
def _unit_pnl_block(lo, hi, prices, log_prices, shock, s0, kind, und, mult, strike,
                    log_strike, phi, sigma0, v0, funding, dr_h, carry_h, sqrt_h, approx, delta,
                    gamma, vega, theta_h, surf, skew, term, skew_ld, term_ld, basis, bshock,
                    basis_ld, fshock, fund_ld, out):
    n_instr = kind.shape[0]
    for j in range(n_instr):
        a = und[j]
        k = kind[j]
        base = s0[a]
        m = mult[j]
        for i in range(lo, hi):
            s = prices[i, a]
            if k == KIND_LINEAR:
                out[j, i] = m * (s - base) - funding[j]
                if basis:
                    if basis_ld[j] != 0.0:
                        # dated future marked at S' (1 + db): its basis move on the notional
                        out[j, i] += m * s * (bshock[i, a] * basis_ld[j])
                    if fund_ld[j] != 0.0:
                        # perpetual: extra funding df per unit of notional, USD now
                        out[j, i] -= m * base * (fshock[i, a] * fund_ld[j])
            elif k == KIND_INVERSE:
                ratio = s / base
                if basis and basis_ld[j] != 0.0:
                    # coin P&L m (1/S0 - 1/F') with F' = S' (1 + db), in USD at S'
                    out[j, i] = m * (ratio - 1.0 / (1.0 + bshock[i, a] * basis_ld[j])) \
                        - funding[j] * ratio
                else:
                    out[j, i] = m * (ratio - 1.0) - funding[j] * ratio
                if basis and fund_ld[j] != 0.0:
                    # extra funding in coin (m df / S0) at the scenario price
                    out[j, i] -= m * (fshock[i, a] * fund_ld[j]) * ratio
            elif approx:
                ds = s - base
                f = shock[i, a]
                if surf:
                    f = f * math.exp(skew[i, a] * skew_ld[j] + term[i, a] * term_ld[j])
                dv = sigma0[j] * (f - 1.0)
                out[j, i] = m * (delta[j] * ds + 0.5 * gamma[j] * ds * ds + vega[j] * dv
                                 + theta_h[j])
            else:
                sig = sigma0[j] * shock[i, a]
                if surf:
                    sig = sig * math.exp(skew[i, a] * skew_ld[j] + term[i, a] * term_ld[j])
                v = _black_forward(s, strike[j], log_prices[i, a] - log_strike[j], dr_h[j],
                                   carry_h[j], sqrt_h[j], sig, phi[j])
                out[j, i] = m * (v - v0[j])


@parallel_kernel
def _unit_pnl_kernel(prices, log_prices, shock, s0, kind, und, mult, strike, log_strike, phi,
                     sigma0, v0, funding, dr_h, carry_h, sqrt_h, approx, delta, gamma, vega,
                     theta_h, surf, skew, term, skew_ld, term_ld, basis, bshock, basis_ld,
                     fshock, fund_ld, out):
    n = prices.shape[0]
    n_blocks = (n + _SCEN_BLOCK - 1) // _SCEN_BLOCK
    for b in prange(n_blocks):
        _unit_pnl_block(b * _SCEN_BLOCK, min((b + 1) * _SCEN_BLOCK, n), prices, log_prices,
                        shock, s0, kind, und, mult, strike, log_strike, phi, sigma0, v0,
                        funding, dr_h, carry_h, sqrt_h, approx, delta, gamma, vega, theta_h,
                        surf, skew, term, skew_ld, term_ld, basis, bshock, basis_ld, fshock,
                        fund_ld, out)


def _f64(x) -> np.ndarray:
    return np.array(x, dtype=np.float64, order="C")


def _bs_now(s, k, tau, sigma, rate, phi):
    """Price, delta, gamma, vega and theta (per year) at t = 0 of Black-76 options on the
    forward S e^{r tau}; vectorised numpy (only once per instrument, not per scenario)."""
    from scipy.special import ndtr

    s, k, tau, sigma, phi = (np.asarray(x, float) for x in (s, k, tau, sigma, phi))
    sqrt_t = np.sqrt(np.maximum(tau, 0.0))
    v = sigma * sqrt_t
    live = v > 0.0
    dr = np.exp(-rate * np.maximum(tau, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.where(live, (np.log(s / k) + rate * tau) / np.where(live, v, 1.0) + 0.5 * v, 0.0)
    d2 = d1 - v
    intrinsic = np.maximum(phi * (s - k * dr), 0.0)
    price = np.where(live, np.maximum(phi * (s * ndtr(phi * d1) - k * dr * ndtr(phi * d2)),
                                      0.0), intrinsic)
    pdf = np.exp(-0.5 * d1 * d1) / math.sqrt(2.0 * math.pi)
    itm = phi * (s - k * dr) > 0.0
    delta = np.where(live, phi * ndtr(phi * d1), np.where(itm, phi, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(live, pdf / (s * np.where(live, v, 1.0)), 0.0)
    vega = np.where(live, s * pdf * sqrt_t, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(live, -s * pdf * sigma / (2.0 * np.where(live, sqrt_t, 1.0))
                         - phi * rate * k * dr * ndtr(phi * d2), 0.0)
    return price, delta, gamma, vega, theta


def unit_pnl(
    prices: np.ndarray,
    vol_shock: np.ndarray | None,
    s0: np.ndarray,
    *,
    kind: np.ndarray,
    underlying: np.ndarray,
    multiplier: np.ndarray,
    strike: np.ndarray,
    expiry: np.ndarray,
    is_call: np.ndarray,
    implied_vol: np.ndarray,
    funding: np.ndarray,
    horizon: float,
    rate: float = 0.0,
    approx: bool = False,
    skew_shock: np.ndarray | None = None,
    term_shock: np.ndarray | None = None,
    skew_loading: np.ndarray | None = None,
    term_loading: np.ndarray | None = None,
    basis_shock: np.ndarray | None = None,
    basis_loading: np.ndarray | None = None,
    funding_shock: np.ndarray | None = None,
    funding_loading: np.ndarray | None = None,
) -> np.ndarray:
    """USD P&L of one unit of each instrument in each scenario over the horizon.

    Parameters
    ----------
    prices : ndarray, shape (n_scenarios, n_underlyings)
        Scenario prices of the underlyings at the horizon (USD).
    vol_shock : ndarray, shape (n_scenarios, n_underlyings), optional
        Multiplicative shock of each underlying's implied vols (1.0 = unchanged).
    s0 : ndarray, shape (n_underlyings,)
        Prices now.
    kind, underlying : int arrays, shape (n_instruments,)
        ``KIND_*`` code and column of the underlying in ``prices``.
    multiplier : ndarray, shape (n_instruments,)
        Units of the underlying per contract (linear, options) or USD face value (inverse).
    strike, expiry, is_call : arrays, shape (n_instruments,)
        Options only (others ignored): strike (USD), years to expiry now, call flag.
    implied_vol : ndarray, shape (n_instruments,)
        Annualised implied vol now (options only).
    funding : ndarray, shape (n_instruments,)
        Funding paid per unit over the horizon: USD for linear, coin x S_0 (USD now) for
        inverse; positive means the long pays.
    horizon : float
        Horizon (margin period of risk) in years.
    rate : float
        Continuously compounded USD rate (Black-76 discounting and forward).
    approx : bool
        Delta-gamma-vega(-theta) approximation of the options instead of full revaluation.
    skew_shock, term_shock : ndarray, shape (n_scenarios, n_underlyings), optional
        Additive shocks of the implied-vol surface's skew and term factors: option ``j``'s
        vol becomes ``implied_vol[j] x vol_shock x exp(skew_shock x skew_loading[j] +
        term_shock x term_loading[j])`` (:mod:`marginlab.models.vol_surface`). Both ``None``
        (or no loadings): the vol is ``implied_vol x vol_shock``, exactly as without them.
    skew_loading, term_loading : ndarray, shape (n_instruments,), optional
        Each option's exposure to the two factors (missing ones are 0).
    basis_shock : ndarray, shape (n_scenarios, n_underlyings), optional
        Additive shock ``db`` of each underlying's futures basis factor (fraction of the
        price, :mod:`marginlab.models.basis`): a dated future of loading ``l`` is marked at
        ``S' (1 + db l)`` at the horizon, so a linear future gains ``mult S' db l`` beside
        ``mult (S' - S_0)`` and an inverse future's coin P&L is ``mult (1/S_0 - 1/F')``
        with ``F' = S' (1 + db l)`` (today's basis enters neither: P&L depends on its change).
        ``None`` (or no loadings): every future moves one for one with spot, bit for bit as
        without it; instruments of loading 0 (spot, perpetuals, options) are never touched.
    basis_loading : ndarray, shape (n_instruments,), optional
        Each instrument's exposure ``l`` to its underlying's basis factor (linear and inverse
        rows only; e.g. :func:`marginlab.models.basis.basis_loadings`).
    funding_shock : ndarray, shape (n_scenarios, n_underlyings), optional
        Extra funding ``df`` paid by a long perpetual over the horizon per unit of notional
        (e.g. a historical change of the funding rate summed over the horizon's
        settlements): a linear row of loading ``f`` pays ``mult S_0 df f`` USD more, an
        inverse one ``mult df f / S_0`` coin more (worth ``mult df f S'/S_0`` USD).
    funding_loading : ndarray, shape (n_instruments,), optional
        1 for perpetuals, 0 for the rest (options never). ``None``: no funding moves.

    Returns
    -------
    ndarray, shape (n_instruments, n_scenarios)
    """
    prices = _f64(prices)
    if prices.ndim != 2:
        raise ValueError(f"prices must be 2-D (n_scenarios, n_underlyings), got shape "
                         f"{prices.shape}")
    n_scen, n_und = prices.shape
    if not np.all(np.isfinite(prices)) or np.any(prices <= 0.0):
        raise ValueError("prices must be finite and > 0")
    shock = np.ones_like(prices) if vol_shock is None else _f64(vol_shock)
    if shock.shape != prices.shape:
        raise ValueError(f"vol_shock must have the shape of prices {prices.shape}, got "
                         f"{shock.shape}")
    if not np.all(np.isfinite(shock)) or np.any(shock < 0.0):
        raise ValueError("vol_shock must be finite and >= 0")
    s0 = _f64(s0)
    if s0.shape != (n_und,):
        raise ValueError(f"s0 must have shape ({n_und},), got {s0.shape}")
    if not (math.isfinite(horizon) and horizon >= 0.0):
        raise ValueError(f"horizon must be finite and >= 0 (years), got {horizon}")
    kind = np.asarray(kind, np.int64)
    und = np.ascontiguousarray(underlying, np.int64)
    n = kind.shape[0]
    if np.any((und < 0) | (und >= n_und)):
        raise ValueError(f"underlying indices must lie in [0, {n_und})")
    mult, strike, expiry, sigma0, funding = (
        _f64(np.broadcast_to(x, (n,))) for x in (multiplier, strike, expiry, implied_vol,
                                                 funding))
    phi = np.where(np.asarray(is_call, bool), 1.0, -1.0) * np.ones(n)
    opt = kind == KIND_OPTION
    zeros = np.zeros(n)
    strike_o = np.where(opt, strike, 1.0)
    tau = np.where(opt, expiry, 0.0)
    sig_o = np.where(opt, sigma0, 0.0)
    price, delta, gamma, vega, theta = _bs_now(s0[und], strike_o, tau, sig_o, rate, phi)
    rem = np.maximum(tau - horizon, 0.0)
    dr_h = np.exp(-rate * rem)
    carry_h = rate * rem
    sqrt_h = np.sqrt(rem)
    theta_h = theta * min(horizon, 1e300) * (tau > horizon) + (tau <= horizon) * 0.0
    surf = (skew_shock is not None or term_shock is not None) and (
        skew_loading is not None or term_loading is not None)
    if surf:
        sk, tm = (np.zeros_like(prices) if x is None else _f64(x)
                  for x in (skew_shock, term_shock))
        for name, x in (("skew_shock", sk), ("term_shock", tm)):
            if x.shape != prices.shape or not np.all(np.isfinite(x)):
                raise ValueError(f"{name} must be finite with the shape of prices "
                                 f"{prices.shape}, got shape {x.shape}")
        skl, tml = (np.zeros(n) if x is None else _f64(np.broadcast_to(x, (n,)))
                    for x in (skew_loading, term_loading))
        skl, tml = _f64(np.where(opt, skl, 0.0)), _f64(np.where(opt, tml, 0.0))
    else:
        sk = tm = np.zeros((0, n_und))
        skl = tml = np.zeros(0)
    basis = False
    bsh = fsh = np.zeros((0, n_und))
    bld = fld = np.zeros(0)
    if funding_shock is not None and funding_loading is not None:
        fsh = _f64(funding_shock)
        if fsh.shape != prices.shape or not np.all(np.isfinite(fsh)):
            raise ValueError(f"funding_shock must be finite with the shape of prices "
                             f"{prices.shape}, got shape {fsh.shape}")
        fld = _f64(np.where(opt, 0.0, np.broadcast_to(funding_loading, (n,))))
        if not np.all(np.isfinite(fld)):
            raise ValueError("funding_loading must be finite")
        basis = bool(np.any(fld != 0.0))
    if basis_shock is not None and basis_loading is not None:
        bsh = _f64(basis_shock)
        if bsh.shape != prices.shape or not np.all(np.isfinite(bsh)):
            raise ValueError(f"basis_shock must be finite with the shape of prices "
                             f"{prices.shape}, got shape {bsh.shape}")
        bld = _f64(np.where(opt, 0.0, np.broadcast_to(basis_loading, (n,))))
        if not np.all(np.isfinite(bld)):
            raise ValueError("basis_loading must be finite")
        inv = (kind == KIND_INVERSE) & (bld != 0.0)
        if inv.any():
            worst = np.abs(bsh).max(axis=0)[und[inv]] * np.abs(bld[inv])
            if worst.max() >= 1.0:
                raise ValueError(f"basis_shock x basis_loading reaches {worst.max():g} on an "
                                 "inverse future: its scenario mark S' (1 + db l) must stay > 0")
        basis = basis or bool(np.any(bld != 0.0))
    if basis:  # both factors in one flag: the absent one is zero (never read)
        if bld.size == 0:
            bsh, bld = np.zeros((1, n_und)), np.zeros(n)
        if fld.size == 0:
            fsh, fld = np.zeros((1, n_und)), np.zeros(n)
    out = np.empty((n, n_scen))
    _unit_pnl_kernel(prices, np.log(prices), shock, s0, _f64(kind), und, mult, _f64(strike_o),
                     np.log(_f64(strike_o)), _f64(phi),
                     _f64(sig_o), _f64(np.where(opt, price, 0.0)), funding, _f64(dr_h),
                     _f64(carry_h), _f64(sqrt_h), bool(approx), _f64(np.where(opt, delta, 0)),
                     _f64(np.where(opt, gamma, 0)), _f64(np.where(opt, vega, 0)),
                     _f64(np.where(opt, theta_h, zeros)), bool(surf), sk, tm, skl, tml,
                     bool(basis), bsh, bld, fsh, fld, out)
    return out


# ----------------------------------------------------------------------------- account risk
@kernel
def _account_block(a_lo, a_hi, U, indptr, indices, qty, var_top, ci_lo_top, ci_hi_top, w_es,
                   level, m_keep, alloc, out_var, out_es, out_var_lo, out_var_hi, out_es_se,
                   out_alloc_var, out_alloc_es):
    n_scen = U.shape[1]
    n_levels = var_top.shape[0]
    loss = np.empty(n_scen)
    heap = np.empty(m_keep)
    cand = np.empty(n_scen, np.int64)
    scratch = np.empty(m_keep)
    partials = np.empty(_PARTIALS)
    fl = var_top
    for acc in range(a_lo, a_hi):
        loss[:] = 0.0
        for p in range(indptr[acc], indptr[acc + 1]):
            q = qty[p]
            row = indices[p]
            for s in range(n_scen):
                loss[s] -= q * U[row, s]
        # The m_keep largest losses: a bounded min-heap, written inline (a helper taking
        # arrays would pay atomic reference counting on every call), then sorted.
        for i in range(m_keep):
            heap[i] = loss[i]
        for start in range(m_keep // 2 - 1, -1, -1):
            i = start
            while True:
                c = 2 * i + 1
                if c >= m_keep:
                    break
                if c + 1 < m_keep and heap[c + 1] < heap[c]:
                    c += 1
                if heap[c] < heap[i]:
                    tmp = heap[i]
                    heap[i] = heap[c]
                    heap[c] = tmp
                    i = c
                else:
                    break
        for s in range(m_keep, n_scen):
            x = loss[s]
            if x > heap[0]:
                heap[0] = x
                i = 0
                while True:
                    c = 2 * i + 1
                    if c >= m_keep:
                        break
                    if c + 1 < m_keep and heap[c + 1] < heap[c]:
                        c += 1
                    if heap[c] < x:
                        heap[i] = heap[c]
                        i = c
                    else:
                        break
                heap[i] = x
        top = np.sort(heap)[::-1]
        t_min = top[m_keep - 1]
        n_cand = 0
        if alloc:
            for s in range(n_scen):
                if loss[s] >= t_min:
                    cand[n_cand] = s
                    n_cand += 1
        for li in range(n_levels):
            v = top[var_top[li]]
            out_var[li, acc] = v
            out_var_lo[li, acc] = top[ci_lo_top[li]]
            out_var_hi[li, acc] = top[ci_hi_top[li]]
            w = w_es[li]
            nf = fl[li]
            # ES and its standard error: the one rule of simulate.risk.var_es (_es_tail).
            es, se = _es_tail(top, nf, v, w, level[li], scratch, partials)
            out_es[li, acc] = es
            out_es_se[li, acc] = se
            boundary = v
            if alloc:
                # Euler allocation. ES: weights 1/w on losses above the boundary order
                # statistic t, the remaining weight spread over the scenarios equal to t;
                # VaR: the mean position loss over the scenarios whose loss equals VaR. Both
                # thresholds are >= t_min, so the candidates hold every scenario needed.
                t = boundary
                n_gt = 0
                n_eq = 0
                n_v = 0
                for i in range(n_cand):
                    ls = loss[cand[i]]
                    if ls > t:
                        n_gt += 1
                    elif ls == t:
                        n_eq += 1
                    if ls == v:
                        n_v += 1
                w_gt = 1.0 / w
                w_eq = (w - n_gt) / n_eq / w if n_eq > 0 else 0.0
                for p in range(indptr[acc], indptr[acc + 1]):
                    q = qty[p]
                    row = indices[p]
                    c_gt = 0.0
                    c_eq = 0.0
                    c_v = 0.0
                    for i in range(n_cand):
                        sc = cand[i]
                        ls = loss[sc]
                        u = U[row, sc]
                        if ls > t:
                            c_gt -= u
                        elif ls == t:
                            c_eq -= u
                        if ls == v:
                            c_v -= u
                    out_alloc_es[li, p] = q * (c_gt * w_gt + c_eq * w_eq)
                    out_alloc_var[li, p] = q * c_v / n_v


@parallel_kernel
def _account_kernel(U, indptr, indices, qty, var_top, ci_lo_top, ci_hi_top, w_es, level,
                    m_keep, alloc, out_var, out_es, out_var_lo, out_var_hi, out_es_se,
                    out_alloc_var, out_alloc_es):
    n_acc = indptr.shape[0] - 1
    n_blocks = (n_acc + _ACC_BLOCK - 1) // _ACC_BLOCK
    for b in prange(n_blocks):
        _account_block(b * _ACC_BLOCK, min((b + 1) * _ACC_BLOCK, n_acc), U, indptr, indices,
                       qty, var_top, ci_lo_top, ci_hi_top, w_es, level, m_keep, alloc, out_var,
                       out_es, out_var_lo, out_var_hi, out_es_se, out_alloc_var, out_alloc_es)


def level_indices(n_scenarios: int, levels: np.ndarray, ci: float):
    """Positions, counted from the largest loss (0 = worst), of the VaR order statistic and
    of its distribution-free confidence bounds, and the ES tail sizes ``w = n (1 - a)``.

    VaR is the ``ceil(n a)``-th smallest loss, i.e. ``n - ceil(n a)`` from the top. The
    order-statistic interval takes the ``j``-th smallest with ``j`` from the binomial(n, a)
    quantiles at ``(1 - ci)/2`` and ``(1 + ci)/2`` (plus one), which covers the true quantile
    with probability >= ci whatever the loss distribution.
    """
    from scipy.stats import binom

    n = n_scenarios
    # The tail geometry of simulate.risk (one snapping rule): w = n (1 - a), rounded to the
    # nearest integer within 1e-10 n; VaR = the (floor(w) + 1)-th largest = ceil(n a)-th
    # smallest loss.
    w = n * (1.0 - np.asarray(levels, float))
    near = np.round(w)
    w = np.where(np.abs(w - near) <= 1e-10 * n, near, w)
    var_top = np.minimum(np.floor(w), n - 1).astype(np.int64)
    j_lo = binom.ppf((1.0 - ci) / 2.0, n, levels).astype(np.int64)
    j_hi = binom.ppf((1.0 + ci) / 2.0, n, levels).astype(np.int64) + 1
    j_lo = np.clip(j_lo, 1, n)
    j_hi = np.clip(j_hi, 1, n)
    return var_top, n - j_lo, n - j_hi, w


def account_risk(
    U: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    quantities: np.ndarray,
    levels,
    *,
    ci: float = 0.95,
    allocate: bool = True,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-account VaR, ES, error bars and Euler allocations from unit P&L and CSR holdings.

    Parameters
    ----------
    U : ndarray, shape (n_instruments, n_scenarios)
        Unit P&L (USD), e.g. from :func:`unit_pnl`.
    indptr, indices, quantities : arrays
        CSR holdings of shape (n_accounts, n_instruments): account ``i`` holds
        ``quantities[p]`` units of instrument ``indices[p]`` for ``p`` in
        ``indptr[i]:indptr[i+1]``.
    levels : float or sequence of float
        Confidence levels in (0, 1), e.g. (0.99, 0.975).
    ci : float
        Confidence of the intervals.
    allocate : bool
        Also compute the Euler allocation of VaR and ES to every holding.
    weights : ndarray, shape (n_scenarios,), optional
        Likelihood-ratio weights of the scenarios (importance sampling): VaR, ES, error bars
        and allocations are then the weighted estimators of
        :mod:`marginlab.simulate.weighted` (self-normalised masses, weighted order
        statistics, Woodruff VaR interval, delta-method ES standard error). ``None`` (plain
        Monte Carlo) runs the unweighted kernel.

    Returns
    -------
    dict of ndarray
        ``var``, ``es``, ``var_lo``, ``var_hi`` (order-statistic interval), ``var_se``
        (half the interval width / z), ``es_se``, ``es_lo``, ``es_hi`` (normal interval), all
        of shape (n_levels, n_accounts); ``alloc_var``, ``alloc_es`` of shape
        (n_levels, nnz) when ``allocate``: they sum over each account's holdings to its
        VaR and ES.
    """
    U = _f64(U)
    if U.ndim != 2:
        raise ValueError(f"U must be 2-D (n_instruments, n_scenarios), got shape {U.shape}")
    n_instr, n_scen = U.shape
    lv = np.atleast_1d(np.asarray(levels, float))
    if lv.ndim != 1 or np.any(~np.isfinite(lv)) or np.any((lv <= 0.0) | (lv >= 1.0)):
        raise ValueError(f"levels must lie in (0, 1), got {levels!r}")
    if not (0.0 < ci < 1.0):
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")
    indptr = np.ascontiguousarray(indptr, np.int64)
    indices = np.ascontiguousarray(indices, np.int64)
    qty = _f64(quantities)
    if indices.size and (indices.min() < 0 or indices.max() >= n_instr):
        raise ValueError(f"holdings reference instruments outside [0, {n_instr})")
    var_top, lo_top, hi_top, w = level_indices(n_scen, lv, ci)
    if np.any(w < 1.0):
        raise ValueError(f"levels {lv.tolist()} leave fewer than 1 tail scenario out of "
                         f"{n_scen}: n (1 - level) must be >= 1")
    m_keep = int(min(n_scen, max(var_top.max(), lo_top.max(), hi_top.max(),
                                 np.floor(w).max()) + 1))
    n_acc = indptr.shape[0] - 1
    shape = (lv.size, n_acc)
    out = {k: np.empty(shape) for k in ("var", "es", "var_lo", "var_hi", "es_se")}
    a_shape = (lv.size, qty.size) if allocate else (lv.size, 0)
    out["alloc_var"] = np.zeros(a_shape)
    out["alloc_es"] = np.zeros(a_shape)
    if weights is not None:
        _weighted(U, indptr, indices, qty, lv, ci, allocate, weights, out)
    else:
        _account_kernel(U, indptr, indices, qty, var_top, lo_top, hi_top, _f64(w), lv, m_keep,
                        bool(allocate), out["var"], out["es"], out["var_lo"], out["var_hi"],
                        out["es_se"], out["alloc_var"], out["alloc_es"])
    z = NormalDist().inv_cdf(0.5 + 0.5 * ci)  # as simulate.risk.var_es
    # var_lo is the larger-index (lower) order statistic: bounds are (var_hi_top, var_lo_top)
    lo, hi = np.minimum(out["var_lo"], out["var_hi"]), np.maximum(out["var_lo"], out["var_hi"])
    out["var_lo"], out["var_hi"] = lo, hi
    out["var_se"] = (hi - lo) / (2.0 * z)
    out["es_lo"] = out["es"] - z * out["es_se"]
    out["es_hi"] = out["es"] + z * out["es_se"]
    if not allocate:
        del out["alloc_var"], out["alloc_es"]
    return out


def _weighted(U, indptr, indices, qty, lv, ci, allocate, weights, out) -> None:
    """Fill ``out`` with the weighted estimators (:mod:`marginlab.simulate.weighted`)."""
    from ._weighted_kernel import _account_kernel_w
    from .weighted import check_weights, masses

    n = U.shape[1]
    p, p2 = masses(check_weights(weights, n))
    beta = _f64(1.0 - lv)
    z = NormalDist().inv_cdf(0.5 + 0.5 * ci)
    m0 = int(min(n, max(128, 8.0 * beta.max() * n + 1)))  # importance sampling: tails hold
    # more scenarios of smaller mass; the kernel doubles m when they do not suffice
    _account_kernel_w(U, indptr, indices, qty, p, p2, beta, z, m0, bool(allocate),
                      out["var"], out["es"], out["var_lo"], out["var_hi"], out["es_se"],
                      out["alloc_var"], out["alloc_es"])
