"""Euler allocation and incremental margin: :func:`allocate` and :func:`incremental`.

Both are re-exported by :mod:`marginlab.simulate.risk`, whose module notes give the
conventions (losses positive, level axis first, ranking of equal losses by scenario).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._risk_drivers import (
    _as_kernel_array,
    _block,
    _check_chunk,
    _check_finite,
    _check_finite_all,
    _check_losses,
    _check_measure,
    _chunks,
    _Levels,
    _measures_chunk,
    _prepare,
    _ranks,
    _resolve_chunk,
    _select,
    _shape_out,
)
from ._risk_kernels import (
    BLOCK_ROWS,
    _account_sum_block,
    _account_sums,
    _contrib_block,
    _contributions,
)
from .weighted import weighted_allocate


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
