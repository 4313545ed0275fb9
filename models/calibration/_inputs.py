"""Inputs of the fits: returns from prices or arrays, frozen arrays, information criteria."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..history import PriceHistory

_LOG_2PI = math.log(2.0 * math.pi)


class CalibrationWarning(UserWarning):
    """A fit converged poorly, hit a bound, or had to be constrained."""


def _frozen(a: Any) -> np.ndarray:
    out = np.array(a, dtype=np.float64)
    out.flags.writeable = False
    return out


def _as_returns(data: Any, step: Any, *, min_obs: int, allow_nan: bool = False,
                name: str = "data") -> tuple[np.ndarray, float, tuple[str, ...]]:
    """Returns as a float64 (n_obs, n_assets) array, the step and the asset names."""
    hist_step = None
    if isinstance(data, PriceHistory):
        r = data.log_returns("drop")
        names = data.names
        hist_step = data.step
    elif isinstance(data, pd.DataFrame):
        r = data.to_numpy(dtype=np.float64, na_value=np.nan)
        names = tuple(str(c) for c in data.columns)
    elif isinstance(data, pd.Series):
        r = data.to_numpy(dtype=np.float64, na_value=np.nan)
        names = (str(data.name) if data.name is not None else "asset0",)
    else:
        if isinstance(data, (str, bytes)):
            raise TypeError(f"{name} must be log returns (array) or a PriceHistory, got a str; "
                            "read files with marginlab.models.history.read_prices")
        try:
            r = np.array(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of log returns or a PriceHistory, got "
                            f"{type(data).__name__}") from None
        names = None
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2:
        raise ValueError(f"{name} must have shape (n_obs,) or (n_obs, n_assets), got shape "
                         f"{r.shape}")
    if names is None:
        names = ("asset0",) if r.shape[1] == 1 else tuple(f"asset{i}" for i in range(r.shape[1]))
    if r.shape[1] == 0:
        raise ValueError(f"{name} has no assets (shape {r.shape})")
    bad = np.isinf(r) if allow_nan else ~np.isfinite(r)
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name} must be finite, got {float(r[i, j])!r} at row {i}, column {j} "
                         f"({names[j]})")
    n_valid = np.sum(np.isfinite(r), axis=0)
    if np.any(n_valid < min_obs):
        j = int(np.argmin(n_valid))
        raise ValueError(f"{name} needs at least {min_obs} returns per asset, got "
                         f"{int(n_valid[j])} for {names[j]}")
    _reject_prices(r, names, name, isinstance(data, (pd.Series, pd.DataFrame)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(r, axis=0)
    if np.any(sd > 1.0):
        j = int(np.argmax(sd))
        raise ValueError(f"{name} column {names[j]} has a per-step standard deviation of "
                         f"{sd[j]:.4g} (> 1, i.e. 100 %); pass decimal log returns, not "
                         "percent (divide by 100)")
    if step is None:
        step = 1.0 / 365.0 if hist_step is None else hist_step
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Real):
        raise TypeError(f"step must be a float > 0 (years per return), got {step!r}")
    step = float(step)
    if not (math.isfinite(step) and 0.0 < step <= 1.0):
        raise ValueError(f"step must be in (0, 1] years per return (1/365 daily, 1/8760 "
                         f"hourly), got {step!r}")
    if hist_step is not None and not math.isclose(step, hist_step, rel_tol=1e-6):
        raise ValueError(f"step={step!r} disagrees with the price history's step "
                         f"{hist_step!r}; omit step to use the history's")
    return r, step, tuple(names)


_PRICE_MIN_OBS = 10


def _reject_prices(r: np.ndarray, names: tuple[str, ...], name: str, indexed: bool) -> None:
    """Raise when a column looks like prices, not returns: at least ten values, all > 0.

    Log returns of a traded asset are never all positive (ten in a row have probability
    about 2**-10 for a driftless asset, and a level series is positive by construction).
    """
    for j in range(r.shape[1]):
        x = r[:, j][np.isfinite(r[:, j])]
        if x.size >= _PRICE_MIN_OBS and np.all(x > 0.0):
            how = ("marginlab.models.history.PriceHistory(series.index, series.to_numpy(), "
                   "names=[...])" if indexed else
                   "marginlab.models.history.PriceHistory(times, prices)")
            raise ValueError(
                f"{name} column {names[j]} looks like prices, not returns: all {x.size} values "
                f"are positive (from {x.min():.6g} to {x.max():.6g}). Pass the prices as a "
                f"PriceHistory ({how}, or read_prices(path)), or per-step decimal log returns "
                "(numpy.diff(numpy.log(prices)))")


def _ic(loglik: float, k: int, n: int) -> tuple[float, float]:
    return float(2.0 * k - 2.0 * loglik), float(k * math.log(n) - 2.0 * loglik)



def _frozen_bool(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=bool)
    a.flags.writeable = False
    return a
