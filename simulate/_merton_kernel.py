"""Log-likelihood of the Merton one-step Poisson mixture and its gradient, in one pass.

For per-step log returns :math:`r_t` and per-step parameters ``a`` (diffusion mean),
``v0`` (diffusion variance), ``p`` (jump intensity per step, > 0), ``m`` and ``s2`` (jump
mean and variance), the density truncated at ``kmax`` jumps is

.. math:: f(r) = \\sum_{k=0}^{K} w_k\\, \\phi(r;\\ a + k m,\\ v_0 + k s^2), \\qquad
          w_k = e^{-p} p^k / k!,

and the kernel returns :math:`\\sum_t \\log f(r_t)` with its derivatives in
``(a, v0, p, m, s2)``: with :math:`q_{tk}` the posterior probability of ``k`` jumps,
:math:`e = r_t - a - k m` and :math:`V = v_0 + k s^2`,

.. math:: \\partial_a = \\sum q\\,e/V,\\ \\partial_m = \\sum q\\,k e/V,\\
          \\partial_{v_0} = \\sum q\\,\\tfrac12(e^2/V - 1)/V,\\
          \\partial_{s^2} = \\sum q\\,k\\,\\tfrac12(e^2/V - 1)/V,\\
          \\partial_p = \\sum q\\,(k/p - 1).

Used by :func:`marginlab.models.calibration.fit_merton` (whose plain numpy twin,
``_merton_terms``, is the test reference together with a brute-force scipy mixture).
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import kernel

_LOG_2PI = math.log(2.0 * math.pi)
_CUT = -100.0


@kernel
def merton_mixture_loglik(r, a, v0, p, m, s2, kmax, grad, q0):
    # r: (n,) returns; grad: (5,) output, d loglik / d (a, v0, p, m, s2); q0: (n,) output of
    # the posterior probability of no jump per return, or an array of another length (then
    # untouched). Returns the log-likelihood (sum over r). Requires p > 0, v0 > 0, s2 >= 0.
    nk = kmax + 1
    c = np.empty(nk)
    mean = np.empty(nk)
    ivar = np.empty(nk)
    ex = np.empty(nk)
    logp = math.log(p)
    for k in range(nk):
        var = v0 + k * s2
        mean[k] = a + k * m
        ivar[k] = 1.0 / var
        c[k] = k * logp - p - math.lgamma(k + 1.0) - 0.5 * (_LOG_2PI + math.log(var))
    n = r.shape[0]
    want_q = q0.shape[0] == n
    ll = 0.0
    g_a = 0.0
    g_m = 0.0
    g_v = 0.0
    g_s = 0.0
    g_k = 0.0
    for t in range(n):
        x = r[t]
        mx = -np.inf
        for k in range(nk):
            e = x - mean[k]
            tk = c[k] - 0.5 * e * e * ivar[k]
            ex[k] = tk
            if tk > mx:
                mx = tk
        s = 0.0
        for k in range(nk):
            u = ex[k] - mx
            # below e^-100 relative to the largest term a term is left out (it cannot move
            # the sums), which keeps exp off its slow underflow path and out of subnormals
            w = math.exp(u) if u > _CUT else 0.0
            ex[k] = w
            s += w
        ll += mx + math.log(s)
        inv = 1.0 / s
        ta = 0.0
        tm = 0.0
        tv = 0.0
        ts = 0.0
        tkk = 0.0
        for k in range(nk):
            if ex[k] == 0.0:
                continue
            q = ex[k] * inv
            e = x - mean[k]
            de = e * ivar[k]
            dv = 0.5 * (e * de - 1.0) * ivar[k]
            ta += q * de
            tm += q * de * k
            tv += q * dv
            ts += q * dv * k
            tkk += q * k
        g_a += ta
        g_m += tm
        g_v += tv
        g_s += ts
        g_k += tkk
        if want_q:
            q0[t] = ex[0] * inv
    grad[0] = g_a
    grad[1] = g_v
    grad[2] = g_k / p - n
    grad[3] = g_m
    grad[4] = g_s
    return ll
