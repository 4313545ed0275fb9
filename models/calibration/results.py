"""Fit results: what every fit returns, per model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from .._summary import Summary, short_repr
from ._inputs import _frozen

_TITLES = {"gbm": "GBM fit (geometric Brownian motion)", "ewma": "EWMA variance filter",
           "garch": "GARCH fit", "merton": "Merton jump-diffusion fit",
           "fhs": "FHS fit (GARCH filtered historical simulation)"}


@dataclass(frozen=True, eq=False, repr=False)
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

    def to_frame(self) -> pd.DataFrame:
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

    # ------------------------------------------------------------------ reading
    def _title(self) -> str:
        return _TITLES.get(self.method, f"{self.method} fit")

    def _notes(self) -> list[str]:
        out = []
        for j, a in enumerate(self.names):
            bad = [p for p, se in self.std_err.items()
                   if np.isfinite(self.params[p][j]) and not np.isfinite(se[j])]
            if bad:
                out.append(f"{a}: no standard error for {', '.join(bad)} (fixed, at a bound, "
                           "or not estimated)")
        return out

    def summary(self) -> Summary:
        """What a reader needs to judge the fit, as statsmodels and arch print it.

        Facts: model, assets, observations, step, log-likelihood (of the decimal per-step
        log returns), AIC, BIC and the number of parameters; a table of estimates with
        standard errors, z statistics and two-sided normal p-values ``P>|z|`` (correlations
        included); notes for flags, fallbacks and missing standard errors.
        ``summary().as_frame()`` is that table (``to_frame()``'s estimates, ``std_err`` and
        ``z``, plus ``P>|z|``; flags are in the notes). Parameters are those of the model
        (annualised where the model is: GBM and Merton ``mu``, ``sigma``, ``lam``; per step
        for GARCH).

        Returns
        -------
        Summary
            ``print`` it, or let a notebook render it.
        """
        df = self.to_frame()[["estimate", "std_err", "z"]]
        with np.errstate(invalid="ignore"):
            df["P>|z|"] = 2.0 * norm.sf(np.abs(df["z"].to_numpy(dtype=float)))
        info = [("Model", self.method), ("Assets", ", ".join(self.names)),
                ("Observations", self.n_obs), ("Step (days)", self.step * 365.0),
                ("Log-likelihood", self.loglik), ("AIC", self.aic), ("BIC", self.bic),
                ("Parameters", self.n_params)]
        info += self._extra_info()
        return Summary(self._title(), info, {"Estimates": df}, self._notes())

    def _extra_info(self) -> list[tuple[str, Any]]:
        return []

    def __repr__(self) -> str:
        return short_repr(self, method=self.method, assets=len(self.names), n_obs=self.n_obs,
                          loglik=round(self.loglik, 2), aic=round(self.aic, 2))

    def _repr_html_(self) -> str:
        return self.summary().as_html()


def _corr_rows(names, corr, corr_se):
    k = len(names)
    for i in range(k):
        for j in range(i + 1, k):
            se = np.nan if corr_se is None else float(corr_se[i, j])
            yield (f"{names[i]},{names[j]}", "corr", float(corr[i, j]), se)


@dataclass(frozen=True, eq=False, repr=False)
class GBMFit(FitResult):
    """:func:`fit_gbm` result; adds ``corr`` and its asymptotic standard errors
    ``corr_std_err`` :math:`(1 - \\rho^2)/\\sqrt{n}` (both ``(n_assets, n_assets)``)."""

    corr: np.ndarray
    corr_std_err: np.ndarray

    def _extra_rows(self):
        return _corr_rows(self.names, self.corr, self.corr_std_err)


@dataclass(frozen=True, eq=False, repr=False)
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

    def _extra_info(self):
        return [("lambda", self.lam)]


@dataclass(frozen=True, eq=False, repr=False)
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
    flags : tuple of tuple of str
        Per asset, the degenerate-fit conditions found (keys of
        :data:`~marginlab.models.calibration.garch.GARCH_FLAGS`); empty when the fit is clean.
    fallback : tuple of str
        Per asset, the fallbacks applied, joined by ``+`` (``nu_floor``, ``constrained``,
        ``symmetric``, ``ewma``); ``""`` when none.
    """

    dist: str
    gjr: bool
    std_resid: np.ndarray
    conditional_volatility: np.ndarray
    corr: np.ndarray
    constrained: np.ndarray
    arch_results: tuple
    flags: tuple
    fallback: tuple

    @property
    def n_flagged(self) -> int:
        """Assets whose fit raised at least one flag."""
        return sum(1 for f in self.flags if f)

    def to_frame(self) -> pd.DataFrame:
        """As :meth:`FitResult.to_frame`; ``.attrs`` adds ``flags`` and ``fallback`` (per
        asset, ``{asset: ...}``), and a ``flags`` column repeats each asset's flags."""
        df = super().to_frame()
        fl = dict(zip(self.names, self.flags, strict=False))
        fb = dict(zip(self.names, self.fallback, strict=False))
        df.attrs.update(flags=fl, fallback=fb)
        assets = df.index.get_level_values("asset")
        df["flags"] = [",".join(fl.get(a, ())) for a in assets]
        df["fallback"] = [fb.get(a, "") for a in assets]
        return df

    def _title(self) -> str:
        base = _TITLES.get(self.method, "GARCH fit")
        kind = ("GJR-GARCH(1,1,1)" if self.gjr else "GARCH(1,1)") + \
            (", Student-t" if self.dist == "t" else ", normal")
        return f"{base}: {kind}"

    def _extra_info(self):
        return [("Persistence", ", ".join(f"{p:.4f}" for p in self.persistence)),
                ("Flagged assets", self.n_flagged)]

    def _notes(self) -> list[str]:
        from .garch import GARCH_FLAGS

        out = super()._notes()
        for a, fl, fb, con in zip(self.names, self.flags, self.fallback, self.constrained,
                                  strict=False):
            for f in fl:
                out.append(f"{a}: {f}: {GARCH_FLAGS.get(f, f)}")
            if fb:
                out.append(f"{a}: fallback applied: {fb}")
            if con and "constrained" not in fb:
                out.append(f"{a}: refitted under max_persistence (constrained)")
        return out

    @property
    def persistence(self) -> np.ndarray:
        """The model's persistence per asset (see :class:`~marginlab.models.GARCH`)."""
        return self.model.persistence

    def _extra_rows(self):
        return _corr_rows(self.names, self.corr, None)


@dataclass(frozen=True, eq=False, repr=False)
class FHSFit(GARCHFit):
    """:func:`fit_fhs` result: a :class:`GARCHFit` whose ``model`` draws its innovations
    from the standardised residuals; ``bootstrap_rows`` are the rows (of ``std_resid``) that
    were observed for every asset and form the :class:`~marginlab.models.Bootstrap`."""

    bootstrap_rows: np.ndarray


@dataclass(frozen=True, eq=False, repr=False)
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
    identified : numpy.ndarray of bool, shape (n_assets,)
        Whether jumps were identified: neither ``lam`` nor ``jump_std`` at an
        identification bound (see :func:`fit_merton`).
    """

    cov: np.ndarray
    jump_probability: np.ndarray
    converged: np.ndarray
    corr: np.ndarray
    identified: np.ndarray

    def _extra_rows(self):
        return _corr_rows(self.names, self.corr, None)

    def _notes(self) -> list[str]:
        out = super()._notes()
        for a, ok, ident in zip(self.names, self.converged, self.identified, strict=False):
            if not ok:
                out.append(f"{a}: the optimiser did not report convergence")
            if not ident:
                out.append(f"{a}: jumps not identified (lam or jump_std at an "
                           "identification bound): the fit is a variance mixture, not rare "
                           "large jumps")
        return out

