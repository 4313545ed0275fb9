"""Fitted models as configuration sections: what ``marginlab calibrate --output/--config``
writes, and ``marginlab run`` reads back to the same model.

Numbers are written with full precision (``repr`` of each float), so the model a
configuration builds (:func:`marginlab.models.app.runner.build_model`) has exactly the fitted
parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..market import GARCH, GBM, Bootstrap, MertonJump
from .results import FitResult

__all__ = ["scenario_params", "annual_vol", "market_section", "scenarios_section"]

_DAY = 1.0 / 365.0


def _floats(a: Any) -> list[float]:
    return [float(x) for x in np.asarray(a, dtype=float).ravel()]


def scenario_params(model: Any) -> tuple[str, dict[str, Any]]:
    """``(scenarios.model, scenarios.params)`` of a fitted model (``corr`` excluded).

    Raises
    ------
    ValueError
        For a GARCH with :class:`~marginlab.models.Bootstrap` innovations (FHS): its
        residuals have no configuration form; use a ``historical`` method with
        ``filtered = true`` on the same price files, or ``--model garch``.
    TypeError
        For an object that is not a GBM, MertonJump or GARCH.
    """
    if isinstance(model, GBM):
        return "gbm", {"mu": _floats(model.mu), "sigma": _floats(model.sigma)}
    if isinstance(model, MertonJump):
        return "merton", {k: _floats(getattr(model, k))
                          for k in ("mu", "sigma", "lam", "jump_mean", "jump_std")}
    if isinstance(model, GARCH):
        if isinstance(model.dist, Bootstrap):
            raise ValueError("model fhs: bootstrapped residuals cannot be written to a "
                             "configuration; use --model garch, or a historical method with "
                             "filtered = true on the same price files")
        p: dict[str, Any] = {k: _floats(getattr(model, k))
                             for k in ("omega", "alpha", "beta", "gamma", "mu")}
        p["dist"] = model.dist
        if model.dist == "t":
            p["nu"] = float(model.nu)
        p["sigma2_0"] = _floats(model.sigma2_0)
        if model.step != _DAY:
            p["step"] = float(model.step)
        return "garch", p
    raise TypeError(f"model must be a GBM, MertonJump or GARCH, got {type(model).__name__}")


def annual_vol(model: Any) -> np.ndarray:
    """Annualised volatility of each asset's log return under the model: GBM ``sigma``;
    Merton's total :math:`\\sqrt{\\sigma^2 + \\lambda (m^2 + s^2)}`; GARCH's current
    :math:`\\sqrt{\\sigma^2_0 / \\text{step}}` (its unconditional one without a state)."""
    if isinstance(model, GBM):
        return np.asarray(model.sigma, dtype=float)
    if isinstance(model, MertonJump):
        return np.sqrt(model.sigma**2 + model.lam * (model.jump_mean**2 + model.jump_std**2))
    if isinstance(model, GARCH):
        s2 = model.sigma2_0 if model.sigma2_0 is not None else model.omega / (
            1.0 - model.persistence)
        return np.sqrt(np.asarray(s2, dtype=float) / model.step)
    raise TypeError(f"model must be a GBM, MertonJump or GARCH, got {type(model).__name__}")


def market_section(spot: dict[str, float], fit: FitResult) -> dict[str, Any]:
    """``[market]``: ``spot`` as given (the last prices) and, as ``vol``, the fitted
    annualised volatility, a stand-in for implied volatilities (which price options)."""
    vol = annual_vol(fit.model)
    return {"spot": {k: float(v) for k, v in spot.items()},
            "vol": {n: float(v) for n, v in zip(fit.names, vol, strict=True)},
            "rate": 0.0}


def scenarios_section(fit: FitResult, *, n_scenarios: int = 10_000, seed: int = 0,
                      horizon_days: float = 2.0) -> dict[str, Any]:
    """``[scenarios]`` of a fit: model, underlyings (the fit's asset names), params, corr
    (the fitted correlation) and the run settings given."""
    model, params = scenario_params(fit.model)
    corr = np.asarray(fit.model.corr, dtype=float)
    return {"model": model, "underlyings": list(fit.names), "params": params,
            "corr": [_floats(row) for row in corr], "n_scenarios": int(n_scenarios),
            "seed": int(seed), "horizon_days": float(horizon_days)}
