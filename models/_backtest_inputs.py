"""Inputs of the backtest statistics: integers, levels, hit series, and the two call forms
``f(hits, level)`` / ``f(n_exceptions, n_obs, level)`` (see :mod:`~marginlab.models.backtest`)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy.special import xlogy

from ._validate import check_real


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """An integer (Python or numpy, not bool) within [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {v}")
    return v


def _check_level(level: Any, name: str = "level") -> float:
    return check_real(name, level, low=0.0, high=1.0, low_open=True, high_open=True)


def _as_hits(hits: Any) -> np.ndarray:
    """A boolean 1-D array from booleans or 0/1 numbers."""
    arr = np.asarray(hits)
    if arr.ndim != 1:
        raise ValueError(f"hits must be a 1-D sequence of booleans, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"hits must be booleans or 0/1 numbers, got dtype {arr.dtype}") from None
    bad = ~((num == 0.0) | (num == 1.0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"hits must be booleans or 0/1, got {arr[i]!r} at index {i}")
    return num == 1.0


def _hits_or_counts(fn: str, hits: Any, args: tuple, n_obs: Any, level: Any, *,
                    default_n_obs: Any = None, default_level: Any = None
                    ) -> tuple[int, int, float]:
    """``(n_exceptions, n_obs, level)`` from ``fn(hits, level)`` (a hit series, as
    :func:`christoffersen` takes) or ``fn(n_exceptions, n_obs, level)`` (counts)."""
    if np.ndim(hits) == 0:  # counts: fn(n_exceptions, n_obs, level)
        if len(args) > 2:
            raise TypeError(f"{fn}(n_exceptions, n_obs, level) takes 3 arguments, got "
                            f"{1 + len(args)}")
        for name, pos, kw in (("n_obs", 0, n_obs), ("level", 1, level)):
            if len(args) > pos and kw is not None:
                raise TypeError(f"{fn}() got {name} both by position and by keyword")
        t_in = args[0] if len(args) > 0 else (default_n_obs if n_obs is None else n_obs)
        lev_in = args[1] if len(args) > 1 else (default_level if level is None else level)
        if t_in is None:
            raise TypeError(f"{fn}(n_exceptions, n_obs, level) needs n_obs with a count of "
                            f"exceptions (or pass the hit series: {fn}(hits, level))")
        t = _check_int("n_obs", t_in, low=1)
        x = _check_int("n_exceptions", hits, low=0, high=t)
    else:  # a hit series: fn(hits, level)
        if len(args) > 1:
            raise TypeError(f"{fn}(hits, level) takes 2 arguments with a hit series, got "
                            f"{1 + len(args)}")
        if n_obs is not None:
            raise TypeError(f"{fn}(): n_obs is the length of the hit series; give it only "
                            "with a count of exceptions")
        if args and level is not None:
            raise TypeError(f"{fn}() got level both by position and by keyword")
        h = _as_hits(hits)
        if h.size < 1:
            raise ValueError("hits must have at least 1 observation, got 0")
        x, t = int(np.count_nonzero(h)), int(h.size)
        lev_in = args[0] if args else (default_level if level is None else level)
    if lev_in is None:
        raise TypeError(f"{fn}() needs the confidence level: {fn}(hits, level)")
    return x, t, _check_level(lev_in)


def _bernoulli_loglik(k: int, n: int) -> float:
    """Maximised Bernoulli log-likelihood of ``k`` successes in ``n`` trials (0 log 0 = 0)."""
    if n == 0:
        return 0.0
    q = k / n
    return float(xlogy(k, q) + xlogy(n - k, 1.0 - q))
