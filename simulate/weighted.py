"""VaR, ES, their error bars and the Euler allocation from weighted scenarios.

Scenarios drawn from a sampling measure other than the model's (importance sampling, a
defensive mixture) carry likelihood-ratio weights :math:`w_s > 0`. The estimators below are
the self-normalised ones: probability masses :math:`p_s = w_s / \\sum_u w_u`, so any positive
multiple of the weights gives the same numbers, and equal weights give the masses
:math:`1/n` of plain Monte Carlo.

Conventions (as :mod:`marginlab.simulate.risk`): losses are positive; scenarios are ranked
by loss, largest first, equal losses by scenario index (the earlier scenario counts as the
larger loss): :math:`s_{[1]}, s_{[2]}, \\dots` with masses :math:`p_{[t]}` and cumulative
masses :math:`P_t = \\sum_{u \\le t} p_{[u]}`. For level :math:`\\alpha`, tail mass
:math:`\\beta = 1 - \\alpha`:

* **VaR** (weighted order statistic): :math:`q = L_{[t^*]}`,
  :math:`t^* = \\min\\{t : P_t > \\beta\\}` (masses within ``1e-10`` of
  :math:`\\beta` count as equal to it). With masses :math:`1/n` this is
  :math:`L_{[\\lfloor n\\beta \\rfloor + 1]}`, the unweighted VaR.
* **ES** (Acerbi-Tasche with masses): the mean loss over the tail of mass :math:`\\beta`,
  the boundary scenario carrying the remaining mass :math:`\\beta - P_{t^*-1}`:

  .. math::

      \\mathrm{ES} = q + \\frac{1}{\\beta}\\sum_{t < t^*} p_{[t]}(L_{[t]} - q).

* **ES standard error** (delta method for the self-normalised estimator, influence
  function :math:`\\psi_s = q - \\mathrm{ES} + (L_s - q)^+ / \\beta`):

  .. math::

      \\mathrm{SE}^2 = \\sum_s p_s^2\\,\\psi_s^2 .

  With masses :math:`1/n` this is exactly the unweighted rule of the README,
  :math:`[\\mathrm{Var}(L \\mid L \\ge q) + \\alpha(\\mathrm{ES} - q)^2] / (n\\beta)`.
  Under importance sampling it is the asymptotic variance
  :math:`E_g[w^2 \\psi^2] / (n E_g[w]^2)`, so it measures the variance reduction honestly.
* **VaR interval** (Woodruff 1952): the tail-mass estimate at :math:`q` has standard error
  :math:`\\sigma_F = (\\sum_s p_s^2 (1\\{s \\text{ ranked before } t^*\\} - \\beta)^2)^{1/2}`;
  the interval is :math:`[Q(\\beta + z\\sigma_F), Q(\\beta - z\\sigma_F)]` with
  :math:`Q(m) = L_{[\\min\\{t : P_t > m\\}]}` (``-inf`` / ``inf`` when the mass leaves
  (0, 1)), and the VaR standard error is its half-width over :math:`z`.
* **Euler allocation** to positions :math:`X_{s,p}` (losses summing to the account's):
  ES: :math:`C_p = X_{s^*,p} + \\frac{1}{\\beta}\\sum_{t<t^*} p_{[t]}(X_{s_{[t]},p} -
  X_{s^*,p})`, :math:`s^* = s_{[t^*]}` (they sum to ES); VaR: :math:`C_p = X_{s^*,p}`.

These functions are the sort-based reference (numpy, ``O(n log n)`` per account); the fused
per-account kernel behind ``portfolio_risk`` (:mod:`marginlab.simulate.revalue`) computes the
same estimators from a partial selection and is tested against them.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from ._weighted_kernel import MASS_SNAP

__all__ = ["check_weights", "weighted_var_es", "weighted_allocate"]


def check_weights(weights: Any, n: int, name: str = "weights") -> np.ndarray:
    """Validated float64 weights of shape ``(n,)``: finite, >= 0, with a positive sum."""
    w = np.asarray(weights)
    if w.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {w.dtype}")
    w = np.ascontiguousarray(w, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape (n_scenarios,) = ({n},), got {w.shape}")
    bad = ~np.isfinite(w) | (w < 0.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite and >= 0, got {float(w[i])!r} at {name}[{i}]")
    if not w.sum() > 0.0:
        raise ValueError(f"{name} must have a positive sum, got all zeros")
    return w


def masses(weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Probability masses ``p = w / sum(w)`` and ``sum(p ** 2)``."""
    p = weights / math.fsum(weights)
    return p, math.fsum(p * p)


def _ranked(losses: np.ndarray):
    # Descending by loss, ties by scenario index (stable sort of -loss).
    order = np.argsort(-losses, axis=0, kind="stable")
    return order, np.take_along_axis(losses, order, axis=0)


def _first_above(cum: np.ndarray, m: np.ndarray) -> np.ndarray:
    # Per column j: min{t : cum[t, j] > m[j]} (len - 1 if none).
    hit = cum > m[None, :]
    t = np.argmax(hit, axis=0)
    return np.where(hit.any(axis=0), t, cum.shape[0] - 1)


def weighted_var_es(losses: Any, weights: Any, levels: Any, *, ci: float = 0.95) -> dict:
    """Weighted VaR, ES, standard errors and intervals (module docstring), sort-based.

    Parameters
    ----------
    losses : array_like, shape (n_scenarios,) or (n_scenarios, n_accounts)
        Losses (positive = loss), finite.
    weights : array_like, shape (n_scenarios,)
        Likelihood-ratio weights, >= 0 with a positive sum (normalised here).
    levels : float or sequence of float
        Levels in (0, 1).
    ci : float
        Confidence of the intervals.

    Returns
    -------
    dict of ndarray
        ``var``, ``es``, ``var_se``, ``es_se``, ``var_lower``, ``var_upper``, ``es_lower``,
        ``es_upper``, shape ``(n_levels, n_accounts)`` (a 1-D input counts as one account).
    """
    x = np.asarray(losses, dtype=np.float64)
    x2 = x.reshape(x.shape[0], -1)
    n, m_acc = x2.shape
    p, p2 = masses(check_weights(weights, n))
    lv = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    z = NormalDist().inv_cdf(0.5 + 0.5 * ci)
    order, d = _ranked(x2)
    pr = p[order]
    cum = np.cumsum(pr, axis=0)
    out = {k: np.empty((lv.size, m_acc)) for k in
           ("var", "es", "var_se", "es_se", "var_lower", "var_upper", "es_lower", "es_upper")}
    cols = np.arange(m_acc)
    for li, a in enumerate(lv):
        beta = 1.0 - a
        ts = _first_above(cum, np.full(m_acc, beta + MASS_SNAP))
        q = d[ts, cols]
        above = np.arange(n)[:, None] < ts[None, :]
        exc = np.where(above, pr * (d - q[None, :]), 0.0)
        es = q + exc.sum(axis=0) / beta
        psi_tail = q - es + np.where(above, d - q[None, :], 0.0) / beta
        p2_tail = np.where(above, pr * pr, 0.0).sum(axis=0)
        es_var = (np.where(above, pr * pr * psi_tail * psi_tail, 0.0).sum(axis=0)
                  + (p2 - p2_tail) * (q - es) ** 2)
        sf = np.sqrt(p2_tail * a * a + (p2 - p2_tail) * beta * beta)
        lo_m = beta + z * sf
        hi_m = beta - z * sf
        t_lo = _first_above(cum, lo_m)
        t_hi = _first_above(cum, hi_m)
        v_lo = np.where(lo_m < 1.0, d[t_lo, cols], -np.inf)
        v_hi = np.where(hi_m > 0.0, d[t_hi, cols], np.inf)
        se = np.sqrt(np.maximum(es_var, 0.0))
        out["var"][li], out["es"][li], out["es_se"][li] = q, es, se
        out["var_lower"][li], out["var_upper"][li] = v_lo, v_hi
        out["var_se"][li] = (v_hi - v_lo) / (2.0 * z)
        out["es_lower"][li], out["es_upper"][li] = es - z * se, es + z * se
    return out


def weighted_allocate(position_losses: Any, account_of_position: Any, weights: Any,
                      levels: Any, measure: str = "es") -> np.ndarray:
    """Weighted Euler allocation (module docstring), shape ``(n_levels, n_positions)``."""
    x = np.asarray(position_losses, dtype=np.float64)
    ids = np.asarray(account_of_position, dtype=np.int64)
    n, n_pos = x.shape
    p, _ = masses(check_weights(weights, n))
    lv = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    n_acc = int(ids.max()) + 1 if n_pos else 0
    acc = np.zeros((n, n_acc))
    for j in range(n_pos):  # position order, as simulate.risk.allocate
        acc[:, ids[j]] += x[:, j]
    order, _ = _ranked(acc)
    cum = np.cumsum(p[order], axis=0)
    out = np.zeros((lv.size, n_pos))
    for li, a in enumerate(lv):
        beta = 1.0 - a
        ts = _first_above(cum, np.full(n_acc, beta + MASS_SNAP))
        for j in range(n_pos):
            c = ids[j]
            s_star = order[ts[c], c]
            base = x[s_star, j]
            if measure == "var":
                out[li, j] = base
            else:
                top = order[: ts[c], c]
                out[li, j] = base + float(np.dot(p[top], x[top, j] - base)) / beta
    return out
