r"""Calibration: fit the market models to historical log returns.

Every fit returns a frozen result holding ``.model`` (a :class:`~marginlab.models.GBM`,
:class:`~marginlab.models.MertonJump` or :class:`~marginlab.models.GARCH`, ready for
:func:`marginlab.simulate.simulate_paths`), the estimates ``.params`` and standard errors
``.std_err`` (dicts of arrays, one value per asset; NaN where not available), ``.loglik``,
``.aic``, ``.bic``, ``.n_obs``, ``.to_frame()`` (estimates, standard errors and z statistics as
a pandas DataFrame) and ``.summary()`` (a :class:`~marginlab.models._summary.Summary`: estimates,
standard errors, p-values, log-likelihood, AIC, BIC and the fit's flags, printed as text and
rendered in notebooks). ``repr`` is one line.

Inputs
------
``data`` is either a :class:`~marginlab.models.history.PriceHistory` (its
:meth:`~marginlab.models.history.PriceHistory.log_returns` with the default
``gap_policy="drop"`` are used, and its ``step``), or per-step **decimal log returns**
(not percent): an array or pandas object of shape ``(n_obs,)`` or ``(n_obs, n_assets)``.
``step`` is the length of one return in years (1/365 daily, 1/8760 hourly; crypto trades
every day); it defaults to the history's step, else to 1/365. Returns whose standard
deviation exceeds 1 (100 % per step) are rejected as probably percent, and a column of ten
or more values that are all positive is rejected as prices (with how to pass them).
Calibration warnings (:class:`CalibrationWarning`) are reported at the caller's line.

Log-likelihoods are those of the decimal per-step log returns, so they are comparable across
models fitted to the same data (``arch`` reports the likelihood of percent returns, which is
lower by ``n_obs * log(100)``); :math:`\mathrm{AIC} = 2k - 2\ell`,
:math:`\mathrm{BIC} = k \log n - 2\ell`.

Examples
--------
>>> import numpy as np
>>> from marginlab.models import GBM
>>> from marginlab.simulate import simulate_paths
>>> path = simulate_paths(GBM(0.1, 0.6), 1.0, n_steps=2000, dt=1 / 365, n_paths=1, seed=3)
>>> res = fit(np.diff(np.log(path[0, :, 0])), model="gbm", step=1 / 365)
>>> bool(abs(res.params["sigma"][0] - 0.6) < 4 * res.std_err["sigma"][0])
True
"""

from __future__ import annotations

from typing import Any

from ._inputs import CalibrationWarning
from .garch import fit_fhs, fit_garch
from .gbm import fit_ewma, fit_gbm
from .merton import (  # noqa: F401  (MERTON_TAIL and the private names: tests, old imports)
    MERTON_TAIL,
    _MertonObjective,
    _poisson_k,
    fit_merton,
    merton_logpdf,
)
from .results import EWMAFit, FHSFit, FitResult, GARCHFit, GBMFit, MertonFit

__all__ = [
    "CalibrationWarning",
    "FitResult",
    "GBMFit",
    "EWMAFit",
    "GARCHFit",
    "MertonFit",
    "FHSFit",
    "fit",
    "fit_gbm",
    "fit_ewma",
    "fit_garch",
    "fit_merton",
    "fit_fhs",
    "merton_logpdf",
]

_FITS = {"gbm": fit_gbm, "ewma": fit_ewma, "garch": fit_garch, "merton": fit_merton,
         "fhs": fit_fhs}


def fit(data: Any, model: str = "gbm", **kwargs: Any) -> FitResult:
    """Fit a market model by name.

    Parameters
    ----------
    data : PriceHistory or array_like
        Prices (a :class:`~marginlab.models.history.PriceHistory`) or per-step decimal log
        returns.
    model : {"gbm", "ewma", "garch", "merton", "fhs"}, default "gbm"
        Which fit: :func:`fit_gbm`, :func:`fit_ewma`, :func:`fit_garch`,
        :func:`fit_merton` or :func:`fit_fhs`.
    **kwargs
        Passed to that function (e.g. ``step``, ``dist``, ``gjr``, ``lam``).

    Returns
    -------
    FitResult
        The subclass the chosen function returns.
    """
    if model not in _FITS:
        raise ValueError(f"model must be one of {', '.join(map(repr, _FITS))}, got {model!r}")
    return _FITS[model](data, **kwargs)
