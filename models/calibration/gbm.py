"""GBM (maximum likelihood) and RiskMetrics EWMA fits."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from scipy import stats
from scipy.signal import lfilter

from ..market import GBM
from ._inputs import _LOG_2PI, _as_returns, _frozen, _ic
from .results import EWMAFit, GBMFit


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

