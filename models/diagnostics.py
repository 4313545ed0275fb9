r"""Fit diagnostics: QQ plot, autocorrelation and the Ljung-Box test.

A well-specified GARCH leaves standardised residuals :math:`z_t` that are i.i.d. with the
assumed distribution: a straight QQ plot against it (:func:`qq_plot`) and no remaining
autocorrelation in :math:`z_t^2` (volatility clustering the model missed), which
:func:`acf` shows and :func:`ljung_box` tests.

Examples
--------
>>> import numpy as np
>>> z = np.random.default_rng(0).standard_normal(2000)
>>> bool(ljung_box(z**2, 10).pvalue[-1] > 0.01)
True
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = ["acf", "ljung_box", "LjungBox", "qq_plot", "fit_standardized_t"]


def _series(x: Any, name: str = "x", *, drop_nan: bool = False) -> np.ndarray:
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D array of real numbers, got "
                        f"{type(x).__name__}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}; pass one asset's column")
    if drop_nan:
        a = a[~np.isnan(a)]
    if not np.all(np.isfinite(a)):
        i = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{name} must be finite, got {a[i]!r} at index {i}")
    return a


def _check_lags(name: str, value: Any, n: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if not 1 <= value < n:
        raise ValueError(f"{name} must be in [1, {n - 1}] (fewer than the {n} observations), "
                         f"got {value}")
    return int(value)


def acf(x: Any, nlags: int) -> np.ndarray:
    r"""Sample autocorrelation function.

    Parameters
    ----------
    x : array_like, shape (n,)
        The series, e.g. squared standardised residuals ``std_resid**2``.
    nlags : int
        Largest lag, in [1, n - 1].

    Returns
    -------
    numpy.ndarray, shape (nlags + 1,)
        :math:`\hat\rho_0 = 1, \hat\rho_1, \dots, \hat\rho_{nlags}` with

        .. math:: \hat\rho_k = \frac{\sum_{t=k}^{n-1}(x_t - \bar x)(x_{t-k} - \bar x)}
                                   {\sum_{t=0}^{n-1}(x_t - \bar x)^2}

        (the usual biased estimator; ``statsmodels.tsa.stattools.acf`` with its defaults).
    """
    a = _series(x)
    nlags = _check_lags("nlags", nlags, a.size)
    c = a - a.mean()
    denom = float(c @ c)
    if denom == 0.0:
        raise ValueError("x is constant; its autocorrelation is undefined")
    out = np.empty(nlags + 1)
    out[0] = 1.0
    for k in range(1, nlags + 1):
        out[k] = float(c[k:] @ c[:-k]) / denom
    return out


class LjungBox(NamedTuple):
    """Ljung-Box statistics and p-values for lags ``1..lags`` (arrays of equal length)."""

    lags: np.ndarray
    stat: np.ndarray
    pvalue: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """``lb_stat`` and ``lb_pvalue`` indexed by lag (statsmodels' column names)."""
        return pd.DataFrame({"lb_stat": self.stat, "lb_pvalue": self.pvalue},
                            index=pd.Index(self.lags, name="lag"))


def ljung_box(x: Any, lags: int, *, model_df: int = 0) -> LjungBox:
    r"""Ljung-Box portmanteau test of no autocorrelation up to each lag.

    Parameters
    ----------
    x : array_like, shape (n,)
        The series; for a GARCH fit, the squared standardised residuals (a small p-value
        means volatility clustering is left in the residuals).
    lags : int
        Largest lag ``h``, in [1, n - 1]; statistics are returned for every lag ``1..h``.
    model_df : int, default 0
        Degrees of freedom used by a fitted model, subtracted from each lag's chi-square
        degrees of freedom (lags with ``lag <= model_df`` get NaN p-values).

    Returns
    -------
    LjungBox
        ``lags``, ``stat`` and ``pvalue``; ``.to_frame()`` for a DataFrame.

    Notes
    -----
    .. math:: Q(h) = n(n+2)\sum_{k=1}^{h} \frac{\hat\rho_k^2}{n-k}
              \ \sim\ \chi^2_{h - \text{model\_df}}

    under the null of no autocorrelation (Ljung and Box, 1978), with :math:`\hat\rho_k`
    from :func:`acf`.
    """
    a = _series(x)
    n = a.size
    lags = _check_lags("lags", lags, n)
    if isinstance(model_df, (bool, np.bool_)) or not isinstance(model_df, numbers.Integral) \
            or model_df < 0:
        raise ValueError(f"model_df must be an int >= 0, got {model_df!r}")
    rho = acf(a, lags)[1:]
    k = np.arange(1, lags + 1)
    q = n * (n + 2.0) * np.cumsum(rho**2 / (n - k))
    df = k - int(model_df)
    with np.errstate(invalid="ignore"):
        p = np.where(df > 0, stats.chi2.sf(q, np.maximum(df, 1)), np.nan)
    return LjungBox(k, q, p)


def fit_standardized_t(z: Any) -> float:
    r"""Maximum-likelihood degrees of freedom of a unit-variance Student-t for ``z``.

    The density is :math:`f(z) = t_\nu(z/c)/c` with :math:`c = \sqrt{(\nu-2)/\nu}`;
    :math:`\nu` is searched in [2.05, 500].
    """
    a = _series(z, "z", drop_nan=True)

    def nll(nu: float) -> float:
        c = math.sqrt((nu - 2.0) / nu)
        return -float(np.sum(stats.t.logpdf(a / c, nu))) + a.size * math.log(c)

    return float(optimize.minimize_scalar(nll, bounds=(2.05, 500.0), method="bounded",
                                          options={"xatol": 1e-6}).x)


def qq_plot(std_resid: Any, dist: str = "normal", ax: Any = None, *,
            nu: float | None = None) -> Any:
    r"""QQ plot of standardised residuals against the standard normal or a unit-variance t.

    Parameters
    ----------
    std_resid : array_like, shape (n,)
        Standardised residuals (NaN entries are dropped).
    dist : {"normal", "t"}, default "normal"
        Reference distribution. ``"t"``: Student-t scaled to unit variance, with ``nu``
        degrees of freedom, by default fitted to ``std_resid`` by
        :func:`fit_standardized_t` (pass the GARCH fit's ``nu`` to compare with it).
    ax : matplotlib.axes.Axes, optional
        Where to draw. Default: a new :class:`matplotlib.figure.Figure` (no pyplot state).
    nu : float, optional
        Degrees of freedom (> 2) for ``dist="t"``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.

    Notes
    -----
    The ``i``-th smallest residual (``i = 1..n``) is plotted against the reference quantile
    :math:`F^{-1}((i - 1/2)/n)`; points on the 45-degree line mean a good fit, points above
    it on the right (below on the left) mean fatter tails than the reference.
    """
    z = np.sort(_series(std_resid, "std_resid", drop_nan=True))
    if z.size < 2:
        raise ValueError(f"std_resid needs at least 2 finite values, got {z.size}")
    u = (np.arange(1, z.size + 1) - 0.5) / z.size
    if dist == "normal":
        if nu is not None:
            raise ValueError(f"nu={nu!r} is only meaningful with dist='t'")
        q = stats.norm.ppf(u)
        label = "standard normal"
    elif dist == "t":
        if nu is None:
            nu = fit_standardized_t(z)
        elif isinstance(nu, (bool, np.bool_)) or not isinstance(nu, numbers.Real) \
                or not (math.isfinite(nu) and nu > 2.0):
            raise ValueError(f"nu must be a finite number > 2, got {nu!r}")
        nu = float(nu)
        q = stats.t.ppf(u, nu) * math.sqrt((nu - 2.0) / nu)
        label = f"unit-variance t, nu = {nu:.3g}"
    else:
        raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.0, 5.0))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.scatter(q, z, s=6, alpha=0.6)
    lo, hi = float(min(q[0], z[0])), float(max(q[-1], z[-1]))
    ax.plot([lo, hi], [lo, hi], color="k", lw=1)
    ax.set_xlabel(f"{label} quantiles")
    ax.set_ylabel("standardised residual quantiles")
    ax.set_title("QQ plot")
    return fig
