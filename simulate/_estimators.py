"""The one ES estimator and its standard error, shared by every kernel that reports them.

:func:`marginlab.simulate.risk.var_es` and the fused per-account kernel of
:mod:`marginlab.simulate.revalue` (``portfolio_risk``) both call :func:`_es_tail`, so for
identical losses they give identical ES and ES standard errors, bit for bit.

For ``n`` equally weighted scenarios and level :math:`\\alpha`: tail mass
:math:`w = n(1 - \\alpha)`, :math:`j = \\lfloor w \\rfloor`, :math:`\\theta = w - j`, the
losses in descending order :math:`L_{[1]} \\ge L_{[2]} \\ge \\dots` and
:math:`q = L_{[j+1]}` (the VaR):

.. math::

    \\mathrm{ES} = q + \\frac{1}{w}\\sum_{t \\le j}(L_{[t]} - q), \\qquad
    \\hat\\sigma^2_{tail} = \\frac{1}{w}\\Big(\\sum_{t \\le j}(L_{[t]} - \\mathrm{ES})^2
        + \\theta (q - \\mathrm{ES})^2\\Big),

    \\mathrm{SE}^2 = \\frac{\\hat\\sigma^2_{tail} + \\alpha(\\mathrm{ES} - q)^2}{w}

(the Acerbi-Tasche estimator and its asymptotic variance, e.g. Manistre and Hancock 2005:
the tail variance with the ES weights, the boundary order statistic carrying the fractional
weight :math:`\\theta`). Both sums are correctly rounded (Shewchuk / ``math.fsum``), so the
result does not depend on the order in which the tail losses are held. The same number is
the plug-in variance of the influence function
:math:`q - \\mathrm{ES} + (L - q)^+ / (1 - \\alpha)` divided by ``n``, which is the form the
weighted estimator (:mod:`marginlab.simulate.weighted`) generalises.
"""

from __future__ import annotations

import math

from ._numba import kernel

_PARTIALS = 64
"""Room for the partials of an exact sum of doubles (at most about 40 are ever needed)."""


@kernel
def _fsum(a, m, p):
    # The correctly rounded sum of a[:m] (finite values): Shewchuk's exact non-overlapping
    # partials in p, then CPython's math.fsum rounding (with its half-even correction across
    # partials), so the result equals math.fsum and does not depend on the order of a.
    n = 0
    for t in range(m):
        x = a[t]
        i = 0
        for u in range(n):
            y = p[u]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                p[i] = lo
                i += 1
            x = hi
        if x != 0.0:
            p[i] = x
            i += 1
        n = i
    if n == 0:
        return 0.0
    n -= 1
    hi = p[n]
    lo = 0.0
    while n > 0:
        x = hi
        n -= 1
        y = p[n]
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            break
    if n > 0 and ((lo < 0.0 and p[n - 1] < 0.0) or (lo > 0.0 and p[n - 1] > 0.0)):
        y = lo * 2.0
        x = hi + y
        if y == x - hi:
            hi = x
    return hi



@kernel
def _es_tail(vals, m, q, w, level, a, p):
    # vals[:m]: the m = floor(w) losses ranked above the VaR q, in any order; w = n (1 - level)
    # (theta = w - m). Returns (ES, SE of ES) as in the module docstring. a: scratch of
    # length >= m, p: scratch of length _PARTIALS.
    for t in range(m):
        a[t] = vals[t] - q
    es = q + _fsum(a, m, p) / w
    for t in range(m):
        d = vals[t] - es
        a[t] = d * d
    dq = q - es
    tail_var = (_fsum(a, m, p) + (w - m) * dq * dq) / w
    return es, math.sqrt((tail_var + level * dq * dq) / w)
