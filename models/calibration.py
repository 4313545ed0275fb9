r"""Calibration: fit the market models to historical log returns.

Every fit returns a frozen result holding ``.model`` (a :class:`~marginlab.models.GBM`,
:class:`~marginlab.models.MertonJump` or :class:`~marginlab.models.GARCH`, ready for
:func:`marginlab.simulate.simulate_paths`), the estimates ``.params`` and standard errors
``.std_err`` (dicts of arrays, one value per asset; NaN where not available), ``.loglik``,
``.aic``, ``.bic``, ``.n_obs`` and ``.summary()`` (a pandas DataFrame).

Inputs
------
``data`` is either a :class:`~marginlab.models.history.PriceHistory` (its
:meth:`~marginlab.models.history.PriceHistory.log_returns` with the default
``gap_policy="drop"`` are used, and its ``step``), or per-step **decimal log returns**
(not percent): an array or pandas object of shape ``(n_obs,)`` or ``(n_obs, n_assets)``.
``step`` is the length of one return in years (1/365 daily, 1/8760 hourly; crypto trades
every day); it defaults to the history's step, else to 1/365. Returns whose standard
deviation exceeds 1 (100 % per step) are rejected as probably percent.

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

import math
import numbers
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from arch import arch_model
from arch.univariate import GARCH as _ArchGARCH
from scipy import optimize, stats
from scipy.signal import lfilter
from scipy.special import gammaln, logsumexp

from .history import PriceHistory
from .market import GARCH, GBM, Bootstrap, MertonJump

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

_LOG_2PI = math.log(2.0 * math.pi)
#: Poisson mass left out of the Merton density.
MERTON_TAIL = 1e-12


class CalibrationWarning(UserWarning):
    """A fit converged poorly, hit a bound, or had to be constrained."""


# ----------------------------------------------------------------------------------------
# Inputs


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


def _ic(loglik: float, k: int, n: int) -> tuple[float, float]:
    return float(2.0 * k - 2.0 * loglik), float(k * math.log(n) - 2.0 * loglik)


# ----------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class FitResult:
    """What every fit returns.

    Attributes
    ----------
    model : GBM, MertonJump or GARCH
        The fitted model, ready to simulate (GARCH's ``step`` is the data's).
    params, std_err : mapping of str to numpy.ndarray
        Estimates and standard errors, one value per asset (NaN where unavailable);
        read-only.
    loglik : float
        Log-likelihood of the decimal per-step log returns at the estimates.
    aic, bic : float
        :math:`2k - 2\\ell` and :math:`k \\log n - 2\\ell`.
    n_params : int
        Number of estimated parameters ``k`` (all assets together).
    n_obs : int
        Number of return observations (rows).
    step : float
        Years per return.
    names : tuple of str
        Asset names.
    method : str
        ``"gbm"``, ``"ewma"``, ``"garch"``, ``"merton"`` or ``"fhs"``.
    """

    model: Any
    params: Mapping[str, np.ndarray]
    std_err: Mapping[str, np.ndarray]
    loglik: float
    aic: float
    bic: float
    n_params: int
    n_obs: int
    step: float
    names: tuple
    method: str

    def __post_init__(self) -> None:
        for name in ("params", "std_err"):
            d = {k: _frozen(v) for k, v in dict(getattr(self, name)).items()}
            object.__setattr__(self, name, MappingProxyType(d))

    def _extra_rows(self) -> Iterator[tuple[str, str, float, float]]:
        return iter(())

    def summary(self) -> pd.DataFrame:
        """Estimates and standard errors, indexed by (asset, parameter).

        Columns ``estimate``, ``std_err`` and ``z`` (estimate / std_err). ``.attrs`` holds
        ``method``, ``loglik``, ``aic``, ``bic``, ``n_obs``, ``n_params`` and ``step``.
        """
        rows = []
        for j, asset in enumerate(self.names):
            for p, v in self.params.items():
                rows.append((asset, p, float(v[j]), float(self.std_err[p][j])))
        rows.extend(self._extra_rows())
        df = pd.DataFrame(rows, columns=["asset", "parameter", "estimate", "std_err"])
        df["z"] = df["estimate"] / df["std_err"]
        df = df.set_index(["asset", "parameter"])
        df.attrs.update(method=self.method, loglik=self.loglik, aic=self.aic, bic=self.bic,
                        n_obs=self.n_obs, n_params=self.n_params, step=self.step)
        return df

    def to_frame(self) -> pd.DataFrame:
        """Same as :meth:`summary`."""
        return self.summary()


def _corr_rows(names, corr, corr_se):
    k = len(names)
    for i in range(k):
        for j in range(i + 1, k):
            se = np.nan if corr_se is None else float(corr_se[i, j])
            yield (f"{names[i]},{names[j]}", "corr", float(corr[i, j]), se)


@dataclass(frozen=True, eq=False)
class GBMFit(FitResult):
    """:func:`fit_gbm` result; adds ``corr`` and its asymptotic standard errors
    ``corr_std_err`` :math:`(1 - \\rho^2)/\\sqrt{n}` (both ``(n_assets, n_assets)``)."""

    corr: np.ndarray
    corr_std_err: np.ndarray

    def _extra_rows(self):
        return _corr_rows(self.names, self.corr, self.corr_std_err)


@dataclass(frozen=True, eq=False)
class EWMAFit(FitResult):
    """:func:`fit_ewma` result.

    Attributes
    ----------
    lam : float
        Decay factor.
    variance : numpy.ndarray, shape (n_obs, n_assets)
        Per-step conditional variance of each return given the earlier ones.
    forecast_variance : numpy.ndarray, shape (n_assets,)
        One-step-ahead per-step variance after the last return (the "current" forecast).
    corr : numpy.ndarray, shape (n_assets, n_assets)
        EWMA correlation forecast after the last return.
    """

    lam: float
    variance: np.ndarray
    forecast_variance: np.ndarray
    corr: np.ndarray

    @property
    def volatility(self) -> np.ndarray:
        """Per-step conditional volatility series, ``sqrt(variance)``."""
        return np.sqrt(self.variance)

    def _extra_rows(self):
        return _corr_rows(self.names, self.corr, None)


@dataclass(frozen=True, eq=False)
class GARCHFit(FitResult):
    """:func:`fit_garch` result.

    Attributes
    ----------
    dist : str
        Innovation distribution of the fit, ``"normal"`` or ``"t"``.
    gjr : bool
        Whether the leverage term ``gamma`` was estimated.
    std_resid : numpy.ndarray, shape (n_obs, n_assets)
        Standardised residuals :math:`(r_t - \\mu)/\\sigma_t` (NaN where an asset has no
        return).
    conditional_volatility : numpy.ndarray, shape (n_obs, n_assets)
        Per-step :math:`\\sigma_t` of the decimal returns.
    corr : numpy.ndarray, shape (n_assets, n_assets)
        Correlation of the jointly observed standardised residuals (constant conditional
        correlation).
    constrained : numpy.ndarray of bool, shape (n_assets,)
        Where the unconstrained fit reached ``max_persistence`` and was refitted under it.
    arch_results : tuple
        ``arch``'s ``ARCHModelResult`` per asset (percent returns).
    """

    dist: str
    gjr: bool
    std_resid: np.ndarray
    conditional_volatility: np.ndarray
    corr: np.ndarray
    constrained: np.ndarray
    arch_results: tuple

    @property
    def persistence(self) -> np.ndarray:
        """The model's persistence per asset (see :class:`~marginlab.models.GARCH`)."""
        return self.model.persistence

    def _extra_rows(self):
        return _corr_rows(self.names, self.corr, None)


@dataclass(frozen=True, eq=False)
class FHSFit(GARCHFit):
    """:func:`fit_fhs` result: a :class:`GARCHFit` whose ``model`` draws its innovations
    from the standardised residuals; ``bootstrap_rows`` are the rows (of ``std_resid``) that
    were observed for every asset and form the :class:`~marginlab.models.Bootstrap`."""

    bootstrap_rows: np.ndarray


@dataclass(frozen=True, eq=False)
class MertonFit(FitResult):
    """:func:`fit_merton` result.

    Attributes
    ----------
    cov : numpy.ndarray, shape (n_assets, 5, 5)
        Covariance of (mu, sigma, lam, jump_mean, jump_std) from the inverse Hessian.
    jump_probability : numpy.ndarray, shape (n_obs, n_assets)
        Posterior probability that each step had at least one jump.
    converged : numpy.ndarray of bool, shape (n_assets,)
        Whether the best start's optimiser reported success.
    corr : numpy.ndarray
        Diffusion correlation (see :func:`fit_merton`).
    """

    cov: np.ndarray
    jump_probability: np.ndarray
    converged: np.ndarray
    corr: np.ndarray

    def _extra_rows(self):
        return _corr_rows(self.names, self.corr, None)


# ----------------------------------------------------------------------------------------
# GBM


def fit_gbm(data: Any, step: float | None = None) -> GBMFit:
    r"""Maximum-likelihood GBM: annualised drift and volatility, and correlations.

    Parameters
    ----------
    data : PriceHistory or array_like, shape (n_obs,) or (n_obs, n_assets)
        Prices, or per-step decimal log returns (see the module docstring).
    step : float, optional
        Years per return. Default: the history's step, else 1/365.

    Returns
    -------
    GBMFit
        ``params`` ``mu`` and ``sigma`` (annualised), ``corr``, and ``model`` a
        :class:`~marginlab.models.GBM`.

    Notes
    -----
    Per-step log returns are i.i.d. :math:`N(m, \Sigma)` with
    :math:`m_i = (\mu_i - \sigma_i^2/2)\Delta` and :math:`\Sigma_{ii} = \sigma_i^2 \Delta`.
    The MLE is the sample mean :math:`\hat m` and the (1/n) sample covariance
    :math:`\hat\Sigma`, so

    .. math:: \hat\sigma_i = \sqrt{\hat\Sigma_{ii}/\Delta}, \quad
              \hat\mu_i = \hat m_i/\Delta + \hat\sigma_i^2/2,
              \quad E[S_T] = S_0 e^{\mu T}.

    Standard errors from the closed-form Fisher information of :math:`(m, \Sigma_{ii})`
    (:math:`\mathrm{Var}\,\hat m = \Sigma_{ii}/n`, :math:`\mathrm{Var}\,\hat\Sigma_{ii} =
    2\Sigma_{ii}^2/n`, uncorrelated) mapped to :math:`(\mu, \sigma)`:

    .. math:: \mathrm{se}(\hat\sigma) = \frac{\sigma}{\sqrt{2n}}, \quad
              \mathrm{se}(\hat\mu) = \sqrt{\frac{\sigma^2}{n\Delta} + \frac{\sigma^4}{2n}},
              \quad \mathrm{se}(\hat\rho) = \frac{1 - \rho^2}{\sqrt n}.

    The drift is poorly determined: its standard error is about :math:`\sigma/\sqrt{T}` for
    a sample spanning :math:`T` years. The log-likelihood is the joint normal one
    :math:`-\tfrac n2 (k\log 2\pi + \log\det\hat\Sigma + k)`, with
    :math:`2k + k(k-1)/2` parameters.
    """
    r, step, names = _as_returns(data, step, min_obs=3)
    n, k = r.shape
    m = r.mean(axis=0)
    c = r - m
    cov = c.T @ c / n
    v = np.diag(cov).copy()
    if np.any(v <= 0.0):
        j = int(np.argmin(v))
        raise ValueError(f"returns of {names[j]} are constant; GBM needs a positive variance")
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        raise ValueError("the returns' covariance matrix is singular (collinear assets); "
                         "remove duplicated assets")
    sd = np.sqrt(v)
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    corr = 0.5 * (corr + corr.T)
    sigma = np.sqrt(v / step)
    mu = m / step + 0.5 * sigma**2
    se_sigma = sigma / math.sqrt(2.0 * n)
    se_mu = np.sqrt(sigma**2 / (n * step) + sigma**4 / (2.0 * n))
    corr_se = (1.0 - corr**2) / math.sqrt(n)
    np.fill_diagonal(corr_se, 0.0)
    loglik = -0.5 * n * (k * _LOG_2PI + logdet + k)
    n_par = 2 * k + k * (k - 1) // 2
    aic, bic = _ic(loglik, n_par, n)
    model = GBM(mu=mu, sigma=sigma, corr=corr if k > 1 else None)
    return GBMFit(model, {"mu": _frozen(mu), "sigma": _frozen(sigma)},
                  {"mu": _frozen(se_mu), "sigma": _frozen(se_sigma)}, float(loglik), aic, bic,
                  n_par, n, step, names, "gbm", _frozen(corr), _frozen(corr_se))


# ----------------------------------------------------------------------------------------
# EWMA


def _ewma_backcast(r: np.ndarray) -> np.ndarray:
    """arch's start value: 0.94-weighted mean of the first min(75, n) outer products."""
    tau = min(75, r.shape[0])
    w = 0.94 ** np.arange(tau)
    w = w / w.sum()
    x = r[:tau]
    return np.einsum("t,ti,tj->ij", w, x, x)


def _ewma_cov(r: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Conditional covariances S_0..S_n (n+1, k, k): S_0 = backcast,
    S_t = lam S_{t-1} + (1 - lam) r_{t-1} r_{t-1}'."""
    n, k = r.shape
    s0 = _ewma_backcast(r)
    x = (r[:, :, None] * r[:, None, :]).reshape(n, k * k)
    z = lfilter([1.0 - lam], [1.0, -lam], x, axis=0)
    decay = lam ** np.arange(1, n + 1, dtype=np.float64)
    out = np.empty((n + 1, k * k))
    out[0] = s0.reshape(-1)
    out[1:] = z + decay[:, None] * s0.reshape(1, -1)
    return out.reshape(n + 1, k, k), s0


def fit_ewma(data: Any, lam: float = 0.94, step: float | None = None) -> EWMAFit:
    r"""RiskMetrics EWMA volatility (and correlation), as a GBM for simulation.

    Parameters
    ----------
    data : PriceHistory or array_like, shape (n_obs,) or (n_obs, n_assets)
        Prices, or per-step decimal log returns.
    lam : float, default 0.94
        Decay factor in (0, 1) (RiskMetrics: 0.94 for daily data).
    step : float, optional
        Years per return. Default: the history's step, else 1/365.

    Returns
    -------
    EWMAFit
        ``variance`` (the series), ``forecast_variance`` (the current one-step-ahead value),
        ``params["sigma"]`` its annualised square root, and ``model`` a
        :class:`~marginlab.models.GBM` with ``mu = 0`` and that ``sigma`` (and the EWMA
        correlation forecast).

    Notes
    -----
    Zero-mean recursion on the raw returns (RiskMetrics, 1996):

    .. math:: \Sigma_{t} = \lambda \Sigma_{t-1} + (1-\lambda)\, r_{t-1} r_{t-1}^\top,
              \qquad \Sigma_0 = \sum_{i<\tau} w_i r_i r_i^\top,\
              w_i \propto 0.94^i,\ \tau = \min(75, n)

    (the start value is ``arch``'s backcast, so the series equals ``arch``'s
    ``EWMAVariance``). :math:`\Sigma_t` is the variance of :math:`r_t` given the earlier
    returns; the forecast is :math:`\Sigma_n`. The annualised volatility is
    :math:`\sigma = \sqrt{\Sigma_{n,ii}/\Delta}`.

    EWMA forecasts the same per-step variance for every future step, which is what a GBM
    with that :math:`\sigma` simulates. The drift is set to zero (:math:`E[S_T] = S_0`),
    RiskMetrics' zero-mean assumption. ``loglik`` is the Gaussian likelihood of the
    returns under :math:`r_t \sim N(0, \Sigma_t)`; with ``lam`` fixed, no parameter is
    estimated (``n_params = 0``) and ``std_err`` is NaN.
    """
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam must be a float in (0, 1), got {lam!r}")
    lam = float(lam)
    if not (0.0 < lam < 1.0):
        raise ValueError(f"lam must be in (0, 1) (RiskMetrics daily: 0.94), got {lam!r}")
    r, step, names = _as_returns(data, step, min_obs=2)
    n, k = r.shape
    covs, _ = _ewma_cov(r, lam)
    var_series = np.diagonal(covs[:-1], axis1=1, axis2=2).copy()
    fc = covs[-1]
    fvar = np.diag(fc).copy()
    sd = np.sqrt(fvar)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = fc / np.outer(sd, sd)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    corr = np.clip(0.5 * (corr + corr.T), -1.0, 1.0)
    if k == 1:
        if np.any(var_series <= 0.0):
            raise ValueError("the EWMA variance is zero (all returns zero); cannot fit")
        loglik = float(np.sum(stats.norm.logpdf(r[:, 0], scale=np.sqrt(var_series[:, 0]))))
    else:
        sign, logdet = np.linalg.slogdet(covs[:-1])
        if np.any(sign <= 0):
            raise ValueError("an EWMA covariance matrix is singular (collinear assets or "
                             "zero returns); cannot evaluate the likelihood")
        quad = np.einsum("ti,ti->t", r, np.linalg.solve(covs[:-1], r[:, :, None])[:, :, 0])
        loglik = float(-0.5 * np.sum(k * _LOG_2PI + logdet + quad))
    sigma = np.sqrt(fvar / step)
    aic, bic = _ic(loglik, 0, n)
    model = GBM(mu=np.zeros(k), sigma=sigma, corr=corr if k > 1 else None)
    var_series = _frozen(var_series)
    nan = _frozen(np.full(k, np.nan))
    return EWMAFit(model, {"sigma": _frozen(sigma)}, {"sigma": nan}, loglik, aic, bic, 0, n,
                   step, names, "ewma", lam, var_series, _frozen(fvar), _frozen(corr))


# ----------------------------------------------------------------------------------------
# GARCH via arch


class _BoundedGARCH(_ArchGARCH):
    """arch's GJR-GARCH(1,o,1) with alpha + beta + c gamma <= max_persistence."""

    def __init__(self, o: int, max_persistence: float, neg_moment: float):
        super().__init__(p=1, o=o, q=1)
        self._max_persistence = max_persistence
        self._neg_moment = neg_moment

    def constraints(self):
        a, b = super().constraints()
        a[-1, 2:2 + self.o] = -self._neg_moment
        b[-1] = -self._max_persistence
        return a, b


def _neg_moment(z: np.ndarray) -> float:
    """E[z^2 1{z<0}] of z standardised as Bootstrap does (demeaned, unit variance)."""
    z = z - z.mean()
    z = z / z.std()
    return float(np.mean(np.where(z < 0.0, z * z, 0.0)))


_ARCH_NAMES = {"mu": "mu", "omega": "omega", "alpha": "alpha[1]", "gamma": "gamma[1]",
               "beta": "beta[1]", "nu": "nu"}
_ARCH_SCALE = {"mu": 100.0, "omega": 1e4, "alpha": 1.0, "gamma": 1.0, "beta": 1.0, "nu": 1.0}


def _fit_one_garch(y: np.ndarray, dist: str, gjr: bool, max_pers: float,
                   joint_rows: np.ndarray | None, label: str):
    """Fit one asset with arch (percent returns); constrain persistence if needed."""
    o = int(gjr)
    am = arch_model(100.0 * y, mean="Constant", vol="GARCH", p=1, o=o, q=1, dist=dist,
                    rescale=False)
    res = am.fit(disp="off", show_warning=False)
    constrained = False

    def pers_of(res):
        p = res.params
        if joint_rows is None:
            c = 0.5
        else:
            c = _neg_moment(np.asarray(res.std_resid)[joint_rows])
        g = p["gamma[1]"] if gjr else 0.0
        return p["alpha[1]"] + p["beta[1]"] + c * g, c

    pers, c = pers_of(res)
    for _ in range(4):
        if pers <= max_pers + 1e-9:
            break
        am.volatility = _BoundedGARCH(o, max_pers, c)
        sv = res.params.to_numpy().copy()
        sv[2:4 + o] *= 0.999 * max_pers / pers   # alpha, gamma, beta: feasible start
        res = am.fit(disp="off", show_warning=False, starting_values=sv)
        constrained = True
        pers, c = pers_of(res)
    if res.convergence_flag != 0:
        warnings.warn(f"{label}: arch's optimiser did not converge (flag "
                      f"{res.convergence_flag}); estimates may be unreliable",
                      CalibrationWarning, stacklevel=4)
    if constrained:
        warnings.warn(f"{label}: the GARCH fit reached the stationarity bound (integrated "
                      f"GARCH); refitted with persistence <= max_persistence={max_pers}",
                      CalibrationWarning, stacklevel=4)
    return res, constrained


def _fit_garch_impl(data, dist, gjr, step, max_persistence, fhs):
    if dist not in ("normal", "t"):
        raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")
    if not isinstance(gjr, (bool, np.bool_)):
        raise TypeError(f"gjr must be a bool, got {gjr!r}")
    if isinstance(max_persistence, (bool, np.bool_)) or not isinstance(max_persistence,
                                                                       numbers.Real):
        raise TypeError(f"max_persistence must be a float in (0, 1), got {max_persistence!r}")
    if not (0.0 < max_persistence < 1.0):
        raise ValueError(f"max_persistence must be in (0, 1), got {max_persistence!r}")
    r, step, names = _as_returns(data, step, min_obs=50, allow_nan=True)
    n, k = r.shape
    observed = np.isfinite(r)
    joint = np.all(observed, axis=1)
    if k > 1 and joint.sum() < 2:
        raise ValueError("the assets have fewer than 2 jointly observed returns")
    keys = ["mu", "omega", "alpha"] + (["gamma"] if gjr else []) + ["beta"]
    if dist == "t":
        keys.append("nu")
    est = {key: np.empty(k) for key in keys}
    se = {key: np.empty(k) for key in keys}
    std_resid = np.full((n, k), np.nan)
    cvol = np.full((n, k), np.nan)
    sigma2_0 = np.empty(k)
    constrained = np.zeros(k, dtype=bool)
    results = []
    loglik = 0.0
    n_par = 0
    for j in range(k):
        rows = np.flatnonzero(observed[:, j])
        joint_rows = np.flatnonzero(joint[rows]) if fhs else None
        res, constrained[j] = _fit_one_garch(r[rows, j], dist, bool(gjr), float(max_persistence),
                                             joint_rows, names[j])
        results.append(res)
        for key in keys:
            est[key][j] = res.params[_ARCH_NAMES[key]] / _ARCH_SCALE[key]
            se[key][j] = res.std_err[_ARCH_NAMES[key]] / _ARCH_SCALE[key]
        std_resid[rows, j] = np.asarray(res.std_resid)
        cvol[rows, j] = np.asarray(res.conditional_volatility) / 100.0
        fc = res.forecast(horizon=1, reindex=False).variance.to_numpy()
        sigma2_0[j] = fc[-1, 0] / 1e4
        loglik += float(res.loglikelihood) + rows.size * math.log(100.0)
        n_par += int(res.num_params)
    zj = std_resid[joint]
    corr = np.corrcoef(zj, rowvar=False).reshape(k, k) if k > 1 else np.eye(1)
    corr = 0.5 * (corr + corr.T)
    np.fill_diagonal(corr, 1.0)
    gamma = est.get("gamma", np.zeros(k))
    # arch may return alpha + gamma a rounding error below 0 (e.g. -1e-13); our GARCH requires
    # alpha + gamma >= 0, so clip gamma at -alpha (a change far below the standard errors).
    gamma = np.maximum(gamma, -np.asarray(est["alpha"], float))
    common = dict(omega=est["omega"], alpha=est["alpha"], beta=est["beta"], gamma=gamma,
                  mu=est["mu"], sigma2_0=sigma2_0, step=step)
    if fhs:
        rows_b = np.flatnonzero(joint)
        boot = Bootstrap(std_resid[rows_b])
        model = GARCH(dist=boot, **common)
        est.pop("nu", None)
        se.pop("nu", None)
    elif dist == "t":
        if k == 1:
            nu = float(est["nu"][0])
        else:
            nu = _joint_t_nu(zj, corr)
            est["nu"] = np.full(k, nu)
            se["nu"] = np.full(k, np.nan)
        model = GARCH(dist="t", nu=nu, corr=corr if k > 1 else None, **common)
    else:
        model = GARCH(dist="normal", corr=corr if k > 1 else None, **common)
    aic, bic = _ic(loglik, n_par, n)
    args = (model, {key: _frozen(v) for key, v in est.items()},
            {key: _frozen(v) for key, v in se.items()}, loglik, aic, bic, n_par, n, step, names)
    extra = (dist, bool(gjr), _frozen(std_resid), _frozen(cvol), _frozen(corr),
             _frozen_bool(constrained), tuple(results))
    if fhs:
        rows_b = np.flatnonzero(joint)
        rows_b.flags.writeable = False
        return FHSFit(*args, "fhs", *extra, rows_b)
    return GARCHFit(*args, "garch", *extra)


def _frozen_bool(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=bool)
    a.flags.writeable = False
    return a


def _joint_t_nu(z: np.ndarray, corr: np.ndarray) -> float:
    """MLE of the common nu of a unit-variance multivariate t with correlation corr."""
    k = z.shape[1]
    _, logdet = np.linalg.slogdet(corr)
    quad = np.einsum("ti,ti->t", z, np.linalg.solve(corr, z.T).T)

    def nll(nu):
        # density of z = sqrt((nu-2)/nu) * T, T multivariate t(nu) with shape corr
        scale = (nu - 2.0) / nu
        return -np.sum(gammaln((nu + k) / 2.0) - gammaln(nu / 2.0)
                       - 0.5 * k * math.log(nu * math.pi) - 0.5 * logdet - 0.5 * k * math.log(scale)
                       - 0.5 * (nu + k) * np.log1p(quad / (scale * nu)))

    res = optimize.minimize_scalar(nll, bounds=(2.05, 500.0), method="bounded",
                                   options={"xatol": 1e-6})
    return float(res.x)


def fit_garch(data: Any, dist: str = "normal", gjr: bool = False, step: float | None = None,
              *, max_persistence: float = 0.9999) -> GARCHFit:
    r"""GARCH(1,1) or GJR-GARCH(1,1) by maximum likelihood with ``arch``.

    Parameters
    ----------
    data : PriceHistory or array_like, shape (n_obs,) or (n_obs, n_assets)
        Prices, or per-step decimal log returns. With several assets, NaN marks a missing
        return: each asset is fitted on its own returns.
    dist : {"normal", "t"}, default "normal"
        Innovation distribution (``t``: Student-t scaled to unit variance).
    gjr : bool, default False
        Estimate the leverage term ``gamma`` (GJR-GARCH).
    step : float, optional
        Years per return; becomes the model's ``step``. Default: the history's, else 1/365.
    max_persistence : float, default 0.9999
        If the fit's persistence :math:`\alpha + \beta + \gamma/2` exceeds this (``arch``
        allows up to 1, integrated GARCH, which our covariance-stationary
        :class:`~marginlab.models.GARCH` rejects), the model is refitted by ``arch`` under
        the constraint persistence <= ``max_persistence`` and a
        :class:`CalibrationWarning` is issued (``constrained`` records it).

    Returns
    -------
    GARCHFit
        ``params`` ``mu``, ``omega``, ``alpha``, (``gamma``), ``beta``, (``nu``) in our
        units; ``model`` a :class:`~marginlab.models.GARCH` whose ``sigma2_0`` is the
        one-step-ahead conditional variance after the last return, so simulations start
        from the last fitted state.

    Notes
    -----
    ``arch`` fits best on percent returns; the conversion happens here, once:
    ``arch_model(100 * r, mean="Constant", vol="GARCH", p=1, o=int(gjr), q=1, dist=dist)``,
    then

    .. math:: \mu = \mu_{arch}/100,\ \omega = \omega_{arch}/10^4,\
              \sigma^2_0 = \hat\sigma^2_{n+1, arch}/10^4,

    with ``alpha``, ``beta``, ``gamma``, ``nu`` unchanged; standard errors are ``arch``'s
    (robust, Bollerslev-Wooldridge) scaled the same way. The model is

    .. math:: r_t = \mu + \sigma_t z_t,\quad \sigma_t^2 = \omega +
              (\alpha + \gamma 1[\varepsilon_{t-1}<0])\varepsilon_{t-1}^2 + \beta\sigma_{t-1}^2.

    ``loglik`` is ``arch``'s plus ``n log 100`` (the likelihood of decimal returns).

    Several assets (constant conditional correlation, estimated in steps): each asset is
    fitted alone; ``corr`` is the correlation of the jointly observed standardised
    residuals; with ``dist="t"`` the model's single ``nu`` (multivariate t, one mixing
    variable per step) is the maximum-likelihood value for those residual vectors given
    ``corr`` (its standard error is NaN; the per-asset values are in ``arch_results``).
    ``loglik``, ``n_params``, ``aic`` and ``bic`` are those of the per-asset fits taken
    together (the sum of the marginal log-likelihoods); the correlation and the common
    ``nu`` are not counted.
    """
    return _fit_garch_impl(data, dist, gjr, step, max_persistence, fhs=False)


def fit_fhs(data: Any, dist: str = "t", gjr: bool = True, step: float | None = None, *,
            max_persistence: float = 0.9999) -> FHSFit:
    r"""Filtered historical simulation: a GARCH filter driven by its own residuals.

    Fits :func:`fit_garch` (``dist`` and ``gjr`` choose the filter's quasi-likelihood) and
    returns ``GARCH(..., dist=Bootstrap(std_resid))``: each simulated step's innovation is
    a resampled standardised residual (Barone-Adesi, Giannopoulos and Vosper, 1999).

    Parameters
    ----------
    data : PriceHistory or array_like, shape (n_obs,) or (n_obs, n_assets)
        Prices, or per-step decimal log returns (NaN marks a missing return of one asset).
    dist : {"normal", "t"}, default "t"
        The filter's innovation distribution.
    gjr : bool, default True
        Estimate the leverage term.
    step : float, optional
        Years per return. Default: the history's, else 1/365.
    max_persistence : float, default 0.9999
        Upper bound on the persistence :math:`\alpha + \beta + \gamma E[z^2 1\{z<0\}]`
        under the *empirical* residuals (the distribution that drives the simulation);
        if exceeded, the filter is refitted under it (see :func:`fit_garch`).

    Returns
    -------
    FHSFit
        ``params`` as :func:`fit_garch` without ``nu`` (the filter's ``nu`` is in
        ``arch_results``); ``loglik`` is the filter's.

    Notes
    -----
    Several assets: each is filtered alone; the bootstrap uses the rows of standardised
    residuals observed for every asset (``bootstrap_rows``), drawn jointly, which keeps
    their cross-sectional dependence, so ``corr`` is not used by the model.
    :class:`~marginlab.models.Bootstrap` re-standardises each column (mean 0, variance 1).
    """
    return _fit_garch_impl(data, dist, gjr, step, max_persistence, fhs=True)


# ----------------------------------------------------------------------------------------
# Merton jump diffusion


def _poisson_k(p: float) -> int:
    """Smallest K with P(N > K) < MERTON_TAIL for N ~ Poisson(p)."""
    kk = int(stats.poisson.isf(MERTON_TAIL, p)) if p > 0 else 0
    kk = max(kk, 0)
    while stats.poisson.sf(kk, p) >= MERTON_TAIL:
        kk += 1
    while kk > 0 and stats.poisson.sf(kk - 1, p) < MERTON_TAIL:
        kk -= 1
    return kk


def _merton_terms(r: np.ndarray, a: float, v0: float, p: float, m: float, s2: float):
    """Log of each Poisson-mixture term, shape (n, K+1), and the k grid."""
    kk = np.arange(_poisson_k(p) + 1, dtype=np.float64)
    logw = kk * math.log(p) - p - gammaln(kk + 1.0) if p > 0 else np.where(kk == 0, 0.0,
                                                                              -np.inf)
    mean = a + kk * m
    var = v0 + kk * s2
    e = r[:, None] - mean
    logphi = -0.5 * (_LOG_2PI + np.log(var) + e * e / var)
    return logw + logphi, kk, e, var


def merton_logpdf(r: Any, mu: float, sigma: float, lam: float, jump_mean: float,
                  jump_std: float, step: float) -> np.ndarray:
    r"""Log density of one step's log return under :class:`~marginlab.models.MertonJump`.

    .. math:: f(r) = \sum_{k=0}^{K} \frac{e^{-\lambda\Delta}(\lambda\Delta)^k}{k!}\,
              \phi\!\left(r;\ (\mu - \tfrac{\sigma^2}{2} - \lambda\kappa)\Delta + k m,\
              \sigma^2\Delta + k s^2\right), \quad \kappa = e^{m + s^2/2} - 1,

    with ``K`` the smallest integer whose omitted Poisson mass is below 1e-12. Parameters
    are annualised (``step`` in years), as in :class:`~marginlab.models.MertonJump`.
    """
    r = np.asarray(r, dtype=np.float64)
    kappa = math.expm1(jump_mean + 0.5 * jump_std**2)
    a = (mu - 0.5 * sigma**2 - lam * kappa) * step
    terms, *_ = _merton_terms(r.reshape(-1), a, sigma**2 * step, lam * step, jump_mean,
                              jump_std**2)
    return logsumexp(terms, axis=1).reshape(r.shape)


class _MertonObjective:
    """Negative log-likelihood and gradient in scaled coordinates
    z = (a/d, log(sd_diffusion/d), log(lam step), m/d, log(s/d)), d = sample std."""

    def __init__(self, r: np.ndarray, d: float):
        self.r, self.d = r, d

    def natural(self, z):
        d = self.d
        return d * z[0], (d * math.exp(z[1])) ** 2, math.exp(z[2]), d * z[3], \
            (d * math.exp(z[4])) ** 2

    def value_grad(self, z):
        a, v0, p, m, s2 = self.natural(z)
        terms, kk, e, var = _merton_terms(self.r, a, v0, p, m, s2)
        lse = logsumexp(terms, axis=1)
        q = np.exp(terms - lse[:, None])
        de = e / var                                    # d log phi / d mean
        dv = 0.5 * (e * e / var - 1.0) / var            # d log phi / d var
        g_a = np.sum(q * de)
        g_m = np.sum(q * de * kk)
        g_v0 = np.sum(q * dv)
        g_s2 = np.sum(q * dv * kk)
        g_p = np.sum(q * (kk / p - 1.0))
        grad = np.array([g_a * self.d, g_v0 * 2.0 * v0, g_p * p, g_m * self.d, g_s2 * 2.0 * s2])
        return -float(np.sum(lse)), -grad

    def posterior_no_jump(self, z):
        terms, *_ = _merton_terms(self.r, *self.natural(z))
        return np.exp(terms[:, 0] - logsumexp(terms, axis=1))


def _merton_theta(z, d, step):
    """(mu, sigma, lam, jump_mean, jump_std) and its Jacobian d theta / d z."""
    sigma = d * math.exp(z[1]) / math.sqrt(step)
    lam = math.exp(z[2]) / step
    m = d * z[3]
    s = d * math.exp(z[4])
    kappa = math.expm1(m + 0.5 * s * s)
    mu = d * z[0] / step + 0.5 * sigma**2 + lam * kappa
    jac = np.zeros((5, 5))
    jac[0] = [d / step, sigma**2, lam * kappa, lam * (1.0 + kappa) * d,
              lam * (1.0 + kappa) * s * s]
    jac[1, 1] = sigma
    jac[2, 2] = lam
    jac[3, 3] = d
    jac[4, 4] = s
    return np.array([mu, sigma, lam, m, s]), jac


def _fit_one_merton(r: np.ndarray, step: float, label: str):
    d = float(np.std(r))
    if d <= 0.0:
        raise ValueError(f"returns of {label} are constant; cannot fit a jump diffusion")
    obj = _MertonObjective(r, d)
    big = float(np.max(np.abs(r - r.mean()))) / d + 1.0
    bounds = [(-big, big), (math.log(0.01), math.log(2.0)), (math.log(1e-6), 0.0),
              (-big, big), (math.log(0.01), math.log(big))]
    mean = float(r.mean())
    starts = []
    for p0 in (0.005, 0.03, 0.15):
        for share in (0.25, 0.6):
            s0 = math.sqrt(share / p0)
            sd0 = math.sqrt(1.0 - share)
            z = np.array([mean / d, math.log(sd0), math.log(p0), 0.0, math.log(s0)])
            starts.append(np.clip(z, [b[0] for b in bounds], [b[1] for b in bounds]))
    best = None
    for z0 in starts:
        res = optimize.minimize(obj.value_grad, z0, jac=True, method="L-BFGS-B",
                                bounds=bounds, options={"maxiter": 500, "ftol": 1e-13,
                                                        "gtol": 1e-7})
        if best is None or res.fun < best.fun:
            best = res
    z = best.x
    # Hessian of the negative log-likelihood by central differences of the gradient.
    h = 1e-5
    hess = np.empty((5, 5))
    for j in range(5):
        zp, zm = z.copy(), z.copy()
        zp[j] += h
        zm[j] -= h
        hess[:, j] = (obj.value_grad(zp)[1] - obj.value_grad(zm)[1]) / (2.0 * h)
    hess = 0.5 * (hess + hess.T)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    free = (z - lo > 1e-6) & (hi - z > 1e-6)
    theta, jac = _merton_theta(z, d, step)
    cov_z = np.full((5, 5), np.nan)
    ok = False
    if np.any(free):
        hf = hess[np.ix_(free, free)]
        try:
            np.linalg.cholesky(hf)
            cov_z_free = np.linalg.inv(hf)
            ok = True
        except np.linalg.LinAlgError:
            pass
        if ok:
            cov_z = np.zeros((5, 5))
            cov_z[np.ix_(free, free)] = cov_z_free
    cov = jac @ cov_z @ jac.T
    if ok and not np.all(free):
        # parameters on a bound have no standard error
        fixed_theta = ~free
        cov[fixed_theta, :] = np.nan
        cov[:, fixed_theta] = np.nan
    names = ["mu", "sigma", "lam", "jump_mean", "jump_std"]
    if not np.all(free):
        at = [names[i] for i in np.flatnonzero(~free)]
        warnings.warn(f"{label}: Merton estimate(s) {at} at the search bound (e.g. no jumps "
                      "detected); their standard errors are NaN", CalibrationWarning,
                      stacklevel=3)
    elif not ok:
        warnings.warn(f"{label}: the Merton Hessian is not positive definite; standard errors "
                      "are NaN", CalibrationWarning, stacklevel=3)
    if not best.success:
        warnings.warn(f"{label}: the Merton optimiser stopped without converging: "
                      f"{best.message}", CalibrationWarning, stacklevel=3)
    q0 = obj.posterior_no_jump(z)
    return theta, cov, -float(best.fun), bool(best.success), q0


def _merton_marginal(theta: np.ndarray, step: float):
    """Per-step (a, v0, p, m, s2) of annualised (mu, sigma, lam, jump_mean, jump_std)."""
    mu, sigma, lam, m, s = (float(x) for x in theta)
    kappa = math.expm1(m + 0.5 * s * s)
    return (mu - 0.5 * sigma**2 - lam * kappa) * step, sigma**2 * step, lam * step, m, s * s


def _merton_pair_rho(x: np.ndarray, y: np.ndarray, th1: np.ndarray, th2: np.ndarray,
                     step: float) -> float:
    """Diffusion correlation maximising the bivariate Merton likelihood, margins fixed."""
    grids = []
    for th, v in ((th1, x), (th2, y)):
        a, v0, p, m, s2 = _merton_marginal(th, step)
        kk = np.arange(_poisson_k(p) + 1, dtype=np.float64)
        logw = kk * math.log(p) - p - gammaln(kk + 1.0)
        grids.append((logw, v[:, None] - (a + kk * m), v0 + kk * s2, v0))
    (lw1, dx, var1, v01), (lw2, dy, var2, v02) = grids
    logw = lw1[:, None] + lw2[None, :]
    dx2, dy2 = (dx * dx)[:, :, None], (dy * dy)[:, None, :]
    dxy = dx[:, :, None] * dy[:, None, :]
    sd0 = math.sqrt(v01 * v02)

    def nll(rho: float) -> float:
        c = rho * sd0
        det = var1[:, None] * var2[None, :] - c * c
        quad = (dx2 * var2[None, None, :] - 2.0 * c * dxy + dy2 * var1[None, :, None]) \
            / det[None]
        terms = logw[None] - _LOG_2PI - 0.5 * np.log(det)[None] - 0.5 * quad
        return -float(np.sum(logsumexp(terms.reshape(x.size, -1), axis=1)))

    res = optimize.minimize_scalar(nll, bounds=(-0.999, 0.999), method="bounded",
                                   options={"xatol": 1e-7})
    return float(res.x)


def _nearest_corr(c: np.ndarray) -> np.ndarray:
    """Clip negative eigenvalues and rescale to a unit diagonal (identity if already PSD)."""
    w, v = np.linalg.eigh(c)
    if w.min() >= 0.0:
        return c
    c = (v * np.clip(w, 1e-10, None)) @ v.T
    d = np.sqrt(np.diag(c))
    c = c / np.outer(d, d)
    return 0.5 * (c + c.T)


def fit_merton(data: Any, step: float | None = None) -> MertonFit:
    r"""Maximum-likelihood Merton jump diffusion (annualised parameters).

    Parameters
    ----------
    data : PriceHistory or array_like, shape (n_obs,) or (n_obs, n_assets)
        Prices, or per-step decimal log returns.
    step : float, optional
        Years per return. Default: the history's step, else 1/365.

    Returns
    -------
    MertonFit
        ``params`` ``mu``, ``sigma``, ``lam`` (jumps per year), ``jump_mean``,
        ``jump_std``; ``model`` a :class:`~marginlab.models.MertonJump`.

    Notes
    -----
    Maximises :math:`\sum_t \log f(r_t)` with the Poisson-mixture density of
    :func:`merton_logpdf` (truncated where the omitted Poisson mass is below 1e-12), by
    L-BFGS-B with the analytic gradient, from six starting points (expected jumps per step
    0.005, 0.03, 0.15 times jump-variance shares 0.25, 0.6 of the sample variance); the
    best optimum is kept. The search runs in scaled coordinates (``d`` the sample standard
    deviation per step): :math:`a/d` with :math:`a = (\mu - \sigma^2/2 - \lambda\kappa)\Delta`,
    :math:`\log(\sigma\sqrt\Delta/d)\in[\log 0.01, \log 2]`,
    :math:`\log(\lambda\Delta)\in[\log 10^{-6}, 0]`, :math:`m/d` and :math:`\log(s/d)`
    bounded by the largest observed move; the lower bound on the diffusion volatility
    keeps the mixture likelihood bounded. Standard errors come from the inverse of a
    numerical Hessian (central differences of the analytic gradient) mapped to the natural
    parameters by the delta method; an estimate on a bound (e.g. ``lam`` at its floor when
    the data show no jumps) gets a NaN standard error and a :class:`CalibrationWarning`.

    Several assets: each is fitted alone (jumps are independent across assets in
    :class:`~marginlab.models.MertonJump`), then each pair's diffusion correlation
    :math:`\rho_{ij}` maximises the pair's bivariate Poisson-mixture likelihood with the
    marginal parameters held at their estimates (inference functions for margins); the
    matrix is projected onto the positive semi-definite correlations if needed (eigenvalue
    clipping). ``loglik`` is the sum of the marginal log-likelihoods.
    """
    r, step, names = _as_returns(data, step, min_obs=50)
    n, k = r.shape
    keys = ["mu", "sigma", "lam", "jump_mean", "jump_std"]
    est = np.empty((5, k))
    covs = np.empty((k, 5, 5))
    q0 = np.empty((n, k))
    conv = np.empty(k, dtype=bool)
    loglik = 0.0
    for j in range(k):
        theta, cov, ll, ok, q = _fit_one_merton(r[:, j], step, names[j])
        est[:, j], covs[j], conv[j], q0[:, j] = theta, cov, ok, q
        loglik += ll
    corr = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            corr[i, j] = corr[j, i] = _merton_pair_rho(r[:, i], r[:, j], est[:, i],
                                                       est[:, j], step)
    if k > 2:
        corr = _nearest_corr(corr)
    n_par = 5 * k + k * (k - 1) // 2
    aic, bic = _ic(loglik, n_par, n)
    se = np.sqrt(np.diagonal(covs, axis1=1, axis2=2)).T
    model = MertonJump(mu=est[0], sigma=est[1], lam=est[2], jump_mean=est[3],
                       jump_std=est[4], corr=corr if k > 1 else None)
    return MertonFit(model, {key: _frozen(est[i]) for i, key in enumerate(keys)},
                     {key: _frozen(se[i]) for i, key in enumerate(keys)}, loglik, aic, bic,
                     n_par, n, step, names, "merton", _frozen(covs), _frozen(1.0 - q0),
                     _frozen_bool(conv), _frozen(corr))


# ----------------------------------------------------------------------------------------
# Dispatcher

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
