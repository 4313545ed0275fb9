"""Validation helpers shared by the models layer: errors name the argument, value and range."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["as_1d", "as_param", "broadcast_params", "check_corr", "corr_factor", "check_real"]


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite real scalar within [low, high] (or open ends), else ValueError/TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    _check_range(name, np.array([v]), low, high, low_open, high_open, scalar=True)
    return v


def _range_text(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return "finite" + ("" if not parts else " and " + " and ".join(parts))


def _check_range(name, arr, low, high, low_open, high_open, scalar=False):
    bad = ~np.isfinite(arr)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if np.any(bad):
        if scalar or arr.size == 1:
            shown = repr(float(arr[0]))
            where = ""
        else:
            shown = repr(arr.tolist())
            where = f" (bad at index {int(np.flatnonzero(bad)[0])})"
        raise ValueError(
            f"{name} must be {_range_text(low, high, low_open, high_open)}, got {shown}{where}"
        )


def as_param(name: str, value: Any, *, low: float | None = None, high: float | None = None,
             low_open: bool = False, high_open: bool = False) -> np.ndarray:
    """A scalar or 1-D array parameter as a read-only float64 1-D array, range-checked."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a real number or a 1-D array of them, got {value!r}"
        ) from None
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D (one value per asset), got shape "
                         f"{arr.shape}")
    arr = arr.reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    _check_range(name, arr, low, high, low_open, high_open)
    return arr


def broadcast_params(params: dict[str, np.ndarray], n_hint: int | None = None) -> int:
    """The common number of assets of 1-D parameters (length 1 broadcasts)."""
    sizes = {k: v.size for k, v in params.items() if v.size != 1}
    if n_hint is not None and n_hint != 1:
        sizes["corr"] = n_hint
    distinct = set(sizes.values())
    if len(distinct) > 1:
        listing = ", ".join(f"{k} has {v}" for k, v in sizes.items())
        raise ValueError(f"parameters disagree on the number of assets: {listing}")
    return distinct.pop() if distinct else 1


def freeze(arr: np.ndarray, n: int) -> np.ndarray:
    out = np.ascontiguousarray(np.broadcast_to(arr, (n,)), dtype=np.float64).copy()
    out.flags.writeable = False
    return out


def check_corr(corr: Any, n_assets: int | None = None, name: str = "corr") -> np.ndarray:
    """Validate a correlation matrix; the error says which property fails.

    Checks, in order: square 2-D, finite, symmetric (to 1e-10), unit diagonal (to 1e-10),
    entries in [-1, 1], positive semi-definite (smallest eigenvalue >= -1e-10).
    """
    try:
        c = np.array(corr, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a square matrix of real numbers, got {corr!r}") from None
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise ValueError(f"{name} must be a square n_assets x n_assets matrix, got shape "
                         f"{c.shape}")
    if n_assets is not None and n_assets != 1 and c.shape[0] != n_assets:
        raise ValueError(f"{name} is {c.shape[0]} x {c.shape[0]} but the parameters describe "
                         f"{n_assets} assets")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{name} must be finite, got {c!r}")
    asym = np.max(np.abs(c - c.T))
    if asym > 1e-10:
        raise ValueError(f"{name} is not symmetric: max |corr - corr.T| = {asym:.3g}")
    diag = np.max(np.abs(np.diag(c) - 1.0))
    if diag > 1e-10:
        raise ValueError(f"{name} must have a unit diagonal, got diagonal {np.diag(c)!r}")
    if np.any(np.abs(c) > 1.0 + 1e-12):
        raise ValueError(f"{name} entries must lie in [-1, 1], got max |entry| "
                         f"{np.max(np.abs(c)):.6g}")
    w_min = float(np.linalg.eigvalsh(c).min())
    if w_min < -1e-10:
        raise ValueError(f"{name} is not positive semi-definite: smallest eigenvalue {w_min:.3g}")
    c = 0.5 * (c + c.T)
    c.flags.writeable = False
    return c


def corr_factor(corr: np.ndarray) -> np.ndarray:
    """A factor ``C`` with ``C @ C.T == corr``: Cholesky, or a symmetric eigen-root when the
    matrix is only semi-definite (e.g. perfectly correlated assets)."""
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(corr)
        return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def as_1d(name: str, value: Any, *, n: int | None = None, scalar_ok: bool = False,
           positive: bool = False, nonneg: bool = False, n_of: str = "the losses") -> np.ndarray:
    """A finite float64 1-D array (a scalar broadcasts to length ``n`` if ``scalar_ok``),
    > 0 everywhere if ``positive``, >= 0 if ``nonneg``; ``n_of`` names what sets ``n``."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be real numbers, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D array of real numbers, got "
                        f"{type(value).__name__}") from None
    if arr.ndim == 0:
        if not scalar_ok:
            raise ValueError(f"{name} must be a 1-D array, got the scalar {value!r}")
        if n is None:
            raise ValueError(f"{name} must be a 1-D array, got a scalar")
        arr = np.full(n, float(arr))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if n is not None and arr.size != n:
        raise ValueError(f"{name} has length {arr.size} but {n_of} have length {n}")
    bad = ~np.isfinite(arr)
    if positive:
        bad |= arr <= 0.0
    elif nonneg:
        bad |= arr < 0.0
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        what = "finite and > 0" if positive else "finite and >= 0" if nonneg else "finite"
        raise ValueError(f"{name} must be {what}, got {float(arr[i])!r} at index {i}")
    return arr
