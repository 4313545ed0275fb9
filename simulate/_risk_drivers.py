"""Validation and chunked drivers shared by the estimators of :mod:`marginlab.simulate.risk`.

Argument checks (losses, levels, chunk, measure), the tail geometry of a set of levels
(:class:`_Levels`), and the Python drivers that run the kernels of :mod:`._risk_kernels`
chunk by chunk of accounts: tail selection, VaR and ES per chunk, weighted fallbacks and
shaping of the results.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._numba import numba
from ._risk_kernels import (
    BLOCK_ACCOUNTS,
    _capacity,
    _select_block,
    _select_tails,
    _var_es_block,
    _var_es_kernel,
)
from .weighted import weighted_var_es

_CHUNK_CELLS = 1 << 22
"""Default chunk: about this many cells of scratch per chunk (at least 64 accounts): tail
buffers of ~2k cells per account, or full columns when a chunk is copied or summed."""

_SNAP = 1e-10


# -------------------------------------------------------------------------- validation
def _check_losses(name: str, losses: Any, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    arr = np.asarray(losses)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        allowed = " or ".join(
            {1: "1-D (n_scenarios,)", 2: "2-D (n_scenarios, n_accounts)"}[d] for d in ndims
        )
        raise ValueError(f"{name} must be {allowed}, got ndim={arr.ndim} shape {arr.shape}")
    return arr


def _as_kernel_array(arr: np.ndarray) -> np.ndarray | None:
    """``arr`` itself if a kernel can read it in place (writable float64 C-contiguous 2-D)."""
    ok = arr.dtype == np.float64 and arr.flags.c_contiguous and arr.flags.writeable
    return arr if ok else None


def _check_chunk(chunk: Any) -> int | None:
    if chunk is None:
        return None
    if isinstance(chunk, (bool, np.bool_)) or not isinstance(chunk, numbers.Integral):
        raise TypeError(f"chunk must be an int >= 1 or None, got {type(chunk).__name__} {chunk!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be an int >= 1 or None, got {chunk}")
    return int(chunk)


def _resolve_chunk(chunk: int | None, cells: int) -> int:
    """``chunk``, or by default about _CHUNK_CELLS / ``cells`` accounts."""
    return chunk if chunk is not None else max(64, _CHUNK_CELLS // max(cells, 1))


def _check_measure(measure: Any) -> str:
    if measure not in ("es", "var"):
        raise ValueError(f"measure must be 'es' or 'var', got {measure!r}")
    return measure


def _check_unit(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a float in the open interval (0, 1), got "
            f"{type(value).__name__} {value!r}"
        )
    value = float(value)
    if not (0.0 < value < 1.0):
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    return value


class _Levels:
    """Validated levels and the tail geometry for ``n`` scenarios."""

    def __init__(self, level: Any, n: int, name: str = "level"):
        if isinstance(level, np.ndarray) and level.ndim == 0:
            level = level.item()
        scalar = np.ndim(level) == 0
        if not scalar and np.ndim(level) != 1:
            raise ValueError(f"{name} must be a scalar or a 1-D sequence, got shape "
                             f"{np.shape(level)}")  # fmt: skip
        items = [level] if scalar else list(level)
        if not items:
            raise ValueError(f"{name} must hold at least one level, got {level!r}")
        self.level = np.array([_check_unit(name, a) for a in items])
        self.scalar = scalar
        self.n = n
        w = n * (1.0 - self.level)
        near = np.round(w)
        w = np.where(np.abs(w - near) <= _SNAP * n, near, w)
        for a, wa in zip(self.level.tolist(), w.tolist(), strict=True):
            if wa < 1.0:
                top = 1.0 - 1.0 / n if n > 1 else None
                allowed = f"<= 1 - 1/n_scenarios = {top!r}" if top else "impossible for n=1"
                raise ValueError(
                    f"{name}={a!r} is too high for n_scenarios={n}: n_scenarios * (1 - {name})"
                    f" = {wa!r} < 1, so the tail holds no whole scenario; {name} must be "
                    f"{allowed}"
                )
        self.w = w
        # j = n - ceil(n level) <= n - 1 for any level > 0 (w may round to n below 1/n).
        self.fl = np.minimum(np.floor(w), n - 1).astype(np.int64)
        self.frac = w - self.fl
        self.k = int(self.fl.max()) + 1  # the tail size

    def shape(self, n_accounts: int | None) -> tuple[int, ...]:
        return (() if self.scalar else (self.level.size,)) + (
            () if n_accounts is None else (n_accounts,)
        )


def _shape_out(arr: np.ndarray, levels: _Levels, one_d: bool):
    res = arr.reshape(levels.shape(None if one_d else arr.shape[-1]))
    return res[()] if res.ndim == 0 else res


def _raise_bad(name: str, arr: np.ndarray, bad: np.ndarray, c0: int) -> None:
    hit = np.flatnonzero(bad >= 0)
    if hit.size:
        col = c0 + int(hit[0])
        row = int(bad[hit[0]])
        where = f"{name}[{row}]" if arr.ndim == 1 else f"{name}[{row}, {col}]"
        value = arr[row] if arr.ndim == 1 else arr[row, col]
        raise ValueError(f"{name} must be finite (no NaN or inf), got {value!r} at {where}")


def _ranks(*groups: Any) -> np.ndarray:
    """The sorted distinct tail positions (0-based descending ranks) a kernel must select."""
    r = np.unique(np.concatenate([np.asarray(g, dtype=np.int64).ravel() for g in groups]))
    return r[r >= 0]


def _tails(arr: np.ndarray, x: np.ndarray | None, c0: int, c1: int, ranks: np.ndarray,
           name: str):  # fmt: skip
    """Tails (losses, scenarios) of columns ``c0:c1`` with ``ranks`` selected in place."""
    if x is None:  # not readable in place: copy just this chunk
        xc = np.ascontiguousarray(arr.reshape(arr.shape[0], -1)[:, c0:c1], dtype=np.float64)
        if not xc.flags.writeable:
            xc = xc.copy()
        x_in, off = xc, 0
    else:
        x_in, off = x, c0
    m = c1 - c0
    k = int(ranks[-1]) + 1
    tv = np.empty((m, k))
    ti = np.empty((m, k), dtype=np.int64)
    bad = np.full(m, -1, dtype=np.int64)
    _select(x_in, off, ranks, tv, ti, bad)
    _raise_bad(name, arr, bad, c0)
    return tv, ti


def _block(m: int) -> int:
    # Accounts per prange task. Results never depend on it (each account is computed alone).
    per_thread = -(-m // (4 * numba.get_num_threads()))
    return max(8, min(BLOCK_ACCOUNTS, per_thread))


# One block of work runs the serial kernel directly: no parallel region to start.
def _select(x, c0, ranks, tv, ti, bad):
    k = int(ranks[-1]) + 1
    if not (ranks[0] >= 0 and k <= x.shape[0] and tv.shape[1] == k):
        raise AssertionError(f"tail positions {ranks} outside 0..{x.shape[0] - 1}")
    cap = _capacity(k, x.shape[0])
    block = _block(tv.shape[0])
    if tv.shape[0] <= block:
        _select_block(x, c0, 0, tv.shape[0], ranks, cap, tv, ti, bad)
    else:
        _select_tails(x, c0, ranks, cap, block, tv, ti, bad)


def _var_es_into(tv, lv, c0, var_out, es_out):
    block = _block(tv.shape[0])
    if tv.shape[0] <= block:
        _var_es_block(tv, 0, tv.shape[0], lv.fl, lv.w, c0, var_out, es_out)
    else:
        _var_es_kernel(tv, lv.fl, lv.w, c0, block, var_out, es_out)


def _chunks(n_accounts: int, chunk: int):
    for c0 in range(0, n_accounts, chunk):
        yield c0, min(n_accounts, c0 + chunk)


def _measures(arr: np.ndarray, levels: _Levels, chunk: int | None, name: str):
    """VaR and ES ``(n_levels, n_accounts)`` of a validated loss array, chunk by chunk."""
    x2 = arr.reshape(arr.shape[0], -1)
    x = _as_kernel_array(x2)
    chunk = _resolve_chunk(chunk, 2 * levels.k if x is not None else arr.shape[0])
    n_acc = x2.shape[1]
    var_out = np.empty((levels.level.size, n_acc))
    es_out = np.empty((levels.level.size, n_acc))
    for c0, c1 in _chunks(n_acc, chunk):
        tv, _ = _tails(arr, x, c0, c1, _ranks(levels.fl), name)
        _var_es_into(tv, levels, c0, var_out, es_out)
    return var_out, es_out


def _prepare(losses: Any, level: Any, chunk: Any, name: str = "losses"):
    arr = _check_losses(name, losses)
    n = arr.shape[0]
    if n < 1:
        raise ValueError(f"{name} must hold at least 1 scenario, got shape {arr.shape}")
    lv = _Levels(level, n)
    return arr, lv, _check_chunk(chunk)


def _weighted_field(arr: np.ndarray, lv: _Levels, weights: Any, field: str):
    _check_finite_all("losses", arr)
    r = weighted_var_es(arr, weights, lv.level)
    return _shape_out(r[field], lv, arr.ndim == 1)


def _check_finite_all(name: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        _check_finite(name, arr)


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = ", ".join(map(str, idx))
        raise ValueError(f"{name} must be finite (no NaN or inf), got {arr[idx]!r} at "
                         f"{name}[{where}]")  # fmt: skip
    raise ValueError(f"{name}: the sum of an account's positions overflows to inf")


def _measures_chunk(arr: np.ndarray, x: np.ndarray | None, c0: int, c1: int, lv: _Levels,
                    name: str):  # fmt: skip
    v = np.empty((lv.level.size, c1 - c0))
    e = np.empty((lv.level.size, c1 - c0))
    tv, _ = _tails(arr, x, c0, c1, _ranks(lv.fl), name)
    _var_es_into(tv, lv, 0, v, e)
    return v, e
