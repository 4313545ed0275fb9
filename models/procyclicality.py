"""Procyclicality metrics and the EMIR Art. 28 anti-procyclicality tools on margin series."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import as_1d, check_real
from .backtest import (
    FlatResult,
)

__all__ = ["ProcyclicalityResult", "procyclicality", "apc_buffer", "apc_stressed_weight",
           "apc_floor"]


# ========================================================================== procyclicality
@dataclass(frozen=True)
class ProcyclicalityResult(FlatResult):
    """Procyclicality of one margin-rate series (see :func:`procyclicality`).

    Attributes
    ----------
    peak_to_trough : float
        ``max(rate) / min(rate)`` (inf if the minimum is 0).
    max_increase_1d, max_increase_5d, max_increase_30d : float
        Largest relative increase over 1, 5 and 30 observations; NaN when the series is
        too short.
    mean_rate : float
        Average margin / notional.
    n_obs : int
        Length of the series.
    """

    peak_to_trough: float
    max_increase_1d: float
    max_increase_5d: float
    max_increase_30d: float
    mean_rate: float
    n_obs: int


def _max_increase(x: np.ndarray, k: int) -> float:
    if x.size <= k:
        return math.nan
    prev, cur = x[:-k], x[k:]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(prev > 0, cur / np.where(prev > 0, prev, 1.0) - 1.0,
                       np.where(cur > 0, np.inf, 0.0))
    out = float(np.max(rel))
    return 0.0 if abs(out) < 1e-12 else out  # rounding noise of a constant rate


def _as_series_1d(name: str, value: Any, n: int | None = None) -> np.ndarray:
    """A finite, >= 0 float64 1-D series; with ``n`` (the margin series' length) a scalar
    broadcasts to it."""
    return as_1d(name, value, n=n, scalar_ok=n is not None, nonneg=True,
                  n_of="the margin dates")


def procyclicality(margin: Any, notional: Any = None) -> ProcyclicalityResult:
    r"""Procyclicality metrics of a margin series.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Margin per date (USD or already a rate), >= 0, in time order (one per day).
    notional : float or array_like, shape (n,), optional
        Notional per date, > 0; the metrics are then computed on ``margin / notional``.

    Returns
    -------
    ProcyclicalityResult

    Notes
    -----
    With the rate :math:`m_t` (margin / notional):

    .. math:: \text{peak-to-trough} = \frac{\max_t m_t}{\min_t m_t}, \qquad
              \Delta_k = \max_{t \ge k} \Big(\frac{m_t}{m_{t-k}} - 1\Big),\ k = 1, 5, 30

    (Murphy, Vasios and Vause 2014, Bank of England Financial Stability Paper 29). A
    positive rate after a zero one counts as an infinite increase.

    Examples
    --------
    >>> r = procyclicality([2.0, 4.0, 3.0, 1.0])
    >>> r.peak_to_trough, r.max_increase_1d
    (4.0, 1.0)
    """
    m = _as_series_1d("margin", margin)
    if notional is not None:
        n = _as_series_1d("notional", notional, m.size)
        if np.any(n <= 0.0):
            i = int(np.flatnonzero(n <= 0.0)[0])
            raise ValueError(f"notional must be > 0, got {n[i]!r} at index {i}")
        m = m / n
    lo = float(np.min(m))
    ptt = float(np.max(m)) / lo if lo > 0 else math.inf
    return ProcyclicalityResult(peak_to_trough=ptt, max_increase_1d=_max_increase(m, 1),
                                max_increase_5d=_max_increase(m, 5),
                                max_increase_30d=_max_increase(m, 30),
                                mean_rate=float(np.mean(m)), n_obs=int(m.size))


def apc_buffer(margin: Any, buffer: float = 0.25, rebuild_days: float = 20.0) -> np.ndarray:
    r"""EMIR Art. 28(1)(a): a buffer of ``buffer`` x margin, released in stress.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Base margin (or margin rate) per day, >= 0.
    buffer : float, default 0.25
        Buffer fraction (EMIR: at least 25 %), in [0, 10].
    rebuild_days : float, default 20
        Days to rebuild a fully released buffer: the called margin may rise by at most
        ``buffer / rebuild_days`` per day beyond what the base margin itself requires.

    Returns
    -------
    numpy.ndarray, shape (n,)
        The called margin :math:`a_t`.

    Notes
    -----
    .. math:: a_0 = (1+b)\,m_0, \qquad
              a_t = \max\!\Big(m_t,\ \min\big((1+b)\,m_t,\ a_{t-1}(1 + b/D)\big)\Big)

    In calm markets :math:`a_t = (1+b) m_t`. When the base margin rises faster than
    :math:`b/D` a day (stress) the buffer absorbs the rise: the called margin is held near
    its previous level and never falls below the base margin (the buffer is released, down
    to zero). It is rebuilt at :math:`b/D` a day (or at once when the base margin falls).

    Examples
    --------
    >>> apc_buffer([1.0, 1.0, 2.0, 2.0], 0.25, 20).round(4).tolist()
    [1.25, 1.25, 2.0, 2.025]
    """
    m = _as_series_1d("margin", margin)
    b = check_real("buffer", buffer, low=0.0, high=10.0)
    d = check_real("rebuild_days", rebuild_days, low=0.0, low_open=True)
    out = np.empty_like(m)
    out[0] = (1.0 + b) * m[0]
    g = 1.0 + b / d
    for t in range(1, m.size):
        out[t] = max(m[t], min((1.0 + b) * m[t], out[t - 1] * g))
    return out


def apc_stressed_weight(margin: Any, stressed: Any, weight: float = 0.25) -> np.ndarray:
    r"""EMIR Art. 28(1)(b): weight ``w`` on a stressed margin,
    :math:`a_t = (1 - w)\,m_t + w\,m^{stress}_t`.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Base margin (or rate), >= 0.
    stressed : float or array_like, shape (n,)
        Stressed margin (or rate) per date, >= 0 (e.g. the highest historical-simulation
        rate seen so far).
    weight : float, default 0.25
        EMIR: at least 25 %; in [0, 1].

    Examples
    --------
    >>> apc_stressed_weight([1.0, 3.0], 4.0).tolist()
    [1.75, 3.25]
    """
    m = _as_series_1d("margin", margin)
    s = _as_series_1d("stressed", stressed, m.size)
    w = check_real("weight", weight, low=0.0, high=1.0)
    return (1.0 - w) * m + w * s


def apc_floor(margin: Any, floor: Any) -> np.ndarray:
    r"""EMIR Art. 28(1)(c): :math:`a_t = \max(m_t, f_t)` with the floor :math:`f_t` from a
    (up to) 10-year look-back.

    Examples
    --------
    >>> apc_floor([1.0, 3.0], 2.0).tolist()
    [2.0, 3.0]
    """
    m = _as_series_1d("margin", margin)
    f = _as_series_1d("floor", floor, m.size)
    return np.maximum(m, f)

