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

One exp per term (``_vmath``'s vectorisable exp, within 1 ulp), one log per return; a term
below :math:`e^{-40}` of the largest of its return is dropped, which cannot change the sum
(it is under half an ulp of it). Used by :func:`marginlab.models.calibration.fit_merton`;
the tests compare it with a brute-force scipy mixture, its finite differences and the
numpy formulas of the previous implementation.
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import kernel
from ._vmath import scaled_exp_inplace_const

_LOG_2PI = math.log(2.0 * math.pi)
_TINY = math.exp(-40.0)
_BLOCK = 256


@kernel
def merton_mixture_loglik(r, a, v0, p, m, s2, kmax, grad, q0):
    # r: (n,) returns; grad: (5,) output, d loglik / d (a, v0, p, m, s2); q0: (n,) output of
    # the posterior probability of no jump per return, or an array of another length (then
    # untouched). Returns the log-likelihood (sum over r). Requires p > 0, v0 > 0, s2 >= 0.
    # Blocks of _BLOCK returns, each term laid out [k * _BLOCK + i], so that the arithmetic
    # and the exp (_vmath's, within 1 ulp) vectorise; per-return sums in arrays, reduced
    # once per call.
    nk = kmax + 1
    bl = _BLOCK
    c = np.empty(nk)
    mean = np.empty(nk)
    ivar = np.empty(nk)
    logp = math.log(p)
    for k in range(nk):
        var = v0 + k * s2
        mean[k] = a + k * m
        ivar[k] = 1.0 / var
        c[k] = k * logp - p - math.lgamma(k + 1.0) - 0.5 * (_LOG_2PI + math.log(var))
    n = r.shape[0]
    want_q = q0.shape[0] == n
    w = np.zeros(nk * bl)
    ev = np.zeros(nk * bl)
    mx = np.empty(bl)
    tot = np.empty(bl)
    acc = np.zeros((5, bl))
    ll = 0.0
    for start in range(0, n, bl):
        nb = min(bl, n - start)
        for i in range(nb):
            mx[i] = -np.inf
        for k in range(nk):
            ck = c[k]
            mk = mean[k]
            ik = ivar[k]
            off = k * bl
            for i in range(nb):
                e = r[start + i] - mk
                t = ck - 0.5 * e * e * ik
                ev[off + i] = e
                w[off + i] = t
                old = mx[i]
                mx[i] = t if t > old else old
        for k in range(nk):
            off = k * bl
            for i in range(nb):
                w[off + i] -= mx[i]
        scaled_exp_inplace_const(w, 1.0)
        for i in range(nb):
            tot[i] = 0.0
        for k in range(nk):
            off = k * bl
            for i in range(nb):
                # a term below e^-40 of the largest is under half an ulp of the sum (>= 1):
                # it cannot change it, and is dropped (so nothing reaches subnormals)
                x = w[off + i]
                x = x if x >= _TINY else 0.0
                w[off + i] = x
                tot[i] += x
        for i in range(nb):
            ll += mx[i] + math.log(tot[i])
            tot[i] = 1.0 / tot[i]
        for k in range(nk):
            off = k * bl
            ik = ivar[k]
            fk = float(k)
            for i in range(nb):
                q = w[off + i] * tot[i]
                e = ev[off + i]
                de = e * ik
                dv = 0.5 * (e * de - 1.0) * ik
                acc[0, i] += q * de
                acc[1, i] += q * dv
                acc[2, i] += q * fk
                acc[3, i] += q * de * fk
                acc[4, i] += q * dv * fk
        if want_q:
            for i in range(nb):
                q0[start + i] = w[i] * tot[i]
    for j in range(5):
        g = 0.0
        for i in range(bl):
            g += acc[j, i]
        grad[j] = g
    grad[2] = grad[2] / p - n
    return ll
