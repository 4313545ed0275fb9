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

The code is split by concept: the numba kernels are in :mod:`._risk_kernels`, validation and
the chunked drivers in :mod:`._risk_drivers`, Euler allocation and incremental margin in
:mod:`._risk_allocation`; this module holds :func:`var`, :func:`es` and :func:`var_es`, and
every name stays importable from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ._estimators import _PARTIALS, _es_tail, _fsum  # noqa: F401  (re-exported)
from ._numba import inline_kernel, kernel, numba, parallel_kernel, prange  # noqa: F401
from ._risk_allocation import allocate, incremental
from ._risk_drivers import (  # noqa: F401  (private names re-exported)
    _CHUNK_CELLS,
    _SNAP,
    _as_kernel_array,
    _block,
    _check_chunk,
    _check_finite,
    _check_finite_all,
    _check_losses,
    _check_measure,
    _check_unit,
    _chunks,
    _Levels,
    _measures,
    _measures_chunk,
    _prepare,
    _raise_bad,
    _ranks,
    _resolve_chunk,
    _select,
    _shape_out,
    _tails,
    _var_es_into,
    _weighted_field,
)
from ._risk_kernels import (  # noqa: F401  (kernels re-exported)
    BLOCK_ACCOUNTS,
    BLOCK_ROWS,
    _account_sum_block,
    _account_sums,
    _capacity,
    _contrib_block,
    _contributions,
    _excess_mean,
    _first,
    _heapsort,
    _partition,
    _pivot,
    _select_block,
    _select_range,
    _select_tails,
    _sift,
    _stats_block,
    _stats_kernel,
    _var_es_block,
    _var_es_kernel,
)
from .weighted import weighted_allocate, weighted_var_es  # noqa: F401

__all__ = ["VarEs", "allocate", "es", "incremental", "var", "var_es"]

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
