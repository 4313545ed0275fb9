r"""GARCH, GJR-GARCH and filtered-historical-simulation fits (via ``arch``), with the
detection of degenerate fits and their fallbacks (see :func:`fit_garch`)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from arch import arch_model
from arch.univariate import GARCH as _ArchGARCH
from arch.univariate import StudentsT
from scipy import optimize
from scipy.special import gammaln

from .._warn import warn as _warn
from ..market import GARCH, Bootstrap
from ._inputs import CalibrationWarning, _as_returns, _frozen, _frozen_bool, _ic
from .results import FHSFit, GARCHFit


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


class _FlooredT(StudentsT):
    """arch's standardised Student-t with ``nu >= min_nu`` (instead of 2.05)."""

    def __init__(self, min_nu: float):
        super().__init__()
        self._min_nu = min_nu

    def bounds(self, resids):
        return [(self._min_nu, 500.0)]

    def starting_values(self, std_resid):
        return np.maximum(super().starting_values(std_resid), self._min_nu + 0.5)


#: Degenerate-fit flags (see :func:`fit_garch`, Notes) and what each means.
GARCH_FLAGS = {
    "persistence_bound": "persistence at max_persistence (integrated GARCH)",
    "gamma_minus_alpha": "gamma = -alpha: negative shocks do not move the variance",
    "no_arch": "alpha = gamma = 0: the conditional variance ignores the returns",
    "nu_floor": "Student-t nu below min_nu (tails too heavy for finite moments)",
    "not_converged": "arch's optimiser did not converge",
}
_TOL = 1e-4
_EWMA_LAMBDA = 0.94


def _garch_filter(y, mu, omega, alpha, gamma, beta, s2_init):
    """sigma2[0..n]: the GJR recursion over decimal returns y from s2_init (sigma2[n] is the
    one-step-ahead forecast after the last return)."""
    n = y.size
    s2 = np.empty(n + 1)
    s2[0] = s2_init
    e = y - mu
    for t in range(n):
        lev = gamma if e[t] < 0.0 else 0.0
        s2[t + 1] = omega + (alpha + lev) * e[t] * e[t] + beta * s2[t]
    return s2


def _arch_fit(y, dist, o, max_pers, c, min_nu, start=None):
    am = arch_model(100.0 * y, mean="Constant", vol="GARCH", p=1, o=o, q=1, dist=dist,
                    rescale=False)
    if dist == "t" and min_nu is not None:
        am.distribution = _FlooredT(min_nu)
    if max_pers is not None:
        am.volatility = _BoundedGARCH(o, max_pers, c)
    return am.fit(disp="off", show_warning=False, starting_values=start)


def _fit_one_garch(y: np.ndarray, dist: str, gjr: bool, max_pers: float,
                   joint_rows: np.ndarray | None, label: str, min_nu: float | None,
                   fallback: bool) -> dict:
    """Fit one asset with arch (percent returns), detect degenerate fits, apply fallbacks.

    Returns a dict: ``res`` (the arch result), ``params``/``se`` (our units), ``std_resid``,
    ``cvol``, ``sigma2_next``, ``loglik`` (decimal returns), ``n_params``, ``constrained``,
    ``flags`` (list of :data:`GARCH_FLAGS` keys seen) and ``fallback`` (str, "" if none)."""
    o = int(gjr)
    res = _arch_fit(y, dist, o, None, 0.5, None)
    flags: list[str] = []
    fb: list[str] = []
    constrained = False

    def neg_c(res):
        if joint_rows is None:
            return 0.5
        return _neg_moment(np.asarray(res.std_resid)[joint_rows])

    def pers_of(res, c):
        p = res.params
        g = p["gamma[1]"] if o else 0.0
        return p["alpha[1]"] + p["beta[1]"] + c * g

    nu_low = dist == "t" and min_nu is not None and res.params["nu"] < min_nu - 1e-9
    if nu_low:
        flags.append("nu_floor")
        res = _arch_fit(y, dist, o, None, 0.5, min_nu)
        fb.append("nu_floor")
    c = neg_c(res)
    pers = pers_of(res, c)
    if pers > max_pers - _TOL:
        flags.append("persistence_bound")
    for _ in range(4):
        if pers <= max_pers + 1e-9:
            break
        sv = res.params.to_numpy().copy()
        sv[2:4 + o] *= 0.999 * max_pers / pers   # alpha, gamma, beta: feasible start
        res = _arch_fit(y, dist, o, max_pers, c, min_nu, sv)
        constrained = True
        c = neg_c(res)
        pers = pers_of(res, c)
    if constrained:
        fb.append("constrained")
        _warn(f"{label}: the GARCH fit reached the stationarity bound (integrated "
              f"GARCH); refitted with persistence <= max_persistence={max_pers}",
              CalibrationWarning)
    if res.convergence_flag != 0:
        flags.append("not_converged")
        _warn(f"{label}: arch's optimiser did not converge (flag "
              f"{res.convergence_flag}); estimates may be unreliable",
              CalibrationWarning)
    keys = ["mu", "omega", "alpha"] + (["gamma"] if gjr else []) + ["beta"] + \
        (["nu"] if dist == "t" else [])
    params = {k: float(res.params[_ARCH_NAMES[k]]) / _ARCH_SCALE[k] for k in keys}
    se = {k: float(res.std_err[_ARCH_NAMES[k]]) / _ARCH_SCALE[k] for k in keys}
    a, g = params["alpha"], params.get("gamma", 0.0)
    if gjr and a > _TOL and a + g < _TOL:
        flags.append("gamma_minus_alpha")
    if a < _TOL and (not gjr or abs(g) < _TOL):
        flags.append("no_arch")
    out = dict(res=res, params=params, se=se, std_resid=np.asarray(res.std_resid),
               cvol=np.asarray(res.conditional_volatility) / 100.0,
               sigma2_next=float(res.forecast(horizon=1, reindex=False).variance.to_numpy()
                                 [-1, 0]) / 1e4,
               loglik=float(res.loglikelihood) + y.size * math.log(100.0),
               n_params=int(res.num_params), constrained=constrained, flags=flags)
    if fallback and "no_arch" in flags:
        # EWMA (RiskMetrics, lambda 0.94) as a stationary GARCH: alpha = 1 - lambda,
        # beta = max_persistence - alpha, omega targets the sample variance.
        alpha = 1.0 - _EWMA_LAMBDA
        beta = max_pers - alpha
        mu = params["mu"]
        omega = (1.0 - max_pers) * float(np.var(y))
        s2 = _garch_filter(y, mu, omega, alpha, 0.0, beta, float(np.mean((y - mu) ** 2)))
        params.update(omega=omega, alpha=alpha, beta=beta)
        if gjr:
            params["gamma"] = 0.0
        se = {k: (se[k] if k in ("mu", "nu") else math.nan) for k in se}
        out.update(se=se, std_resid=(y - mu) / np.sqrt(s2[:-1]), cvol=np.sqrt(s2[:-1]),
                   sigma2_next=float(s2[-1]))
        fb.append("ewma")
    elif fallback and "gamma_minus_alpha" in flags:
        # the leverage term cancels the ARCH term for falls: refit symmetric GARCH
        sub = _fit_one_garch(y, dist, False, max_pers, joint_rows, label, min_nu, fallback)
        for k in sub["params"]:
            params[k] = sub["params"][k]
            se[k] = sub["se"][k]
        params["gamma"], se["gamma"] = 0.0, math.nan
        out.update({k: sub[k] for k in ("res", "std_resid", "cvol", "sigma2_next", "loglik",
                                        "n_params")})
        out["constrained"] = constrained or sub["constrained"]
        fb.append("symmetric")
        fb.extend(x for x in sub["fallback"].split("+") if x and x not in fb)
        flags.extend(x for x in sub["flags"] if x not in flags)
    out["params"], out["se"] = params, se
    out["fallback"] = "+".join(fb)
    return out


def _fit_garch_impl(data, dist, gjr, step, max_persistence, fhs, min_nu=4.0, fallback=True):
    if dist not in ("normal", "t"):
        raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")
    if not isinstance(gjr, (bool, np.bool_)):
        raise TypeError(f"gjr must be a bool, got {gjr!r}")
    if not isinstance(fallback, (bool, np.bool_)):
        raise TypeError(f"fallback must be a bool, got {fallback!r}")
    if isinstance(max_persistence, (bool, np.bool_)) or not isinstance(max_persistence,
                                                                       numbers.Real):
        raise TypeError(f"max_persistence must be a float in (0, 1), got {max_persistence!r}")
    if not (0.0 < max_persistence < 1.0):
        raise ValueError(f"max_persistence must be in (0, 1), got {max_persistence!r}")
    if min_nu is not None:
        if isinstance(min_nu, (bool, np.bool_)) or not isinstance(min_nu, numbers.Real) \
                or not (2.05 <= float(min_nu) < 500.0):
            raise ValueError(f"min_nu must be None or a float in [2.05, 500), got {min_nu!r}")
        min_nu = float(min_nu)
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
    results, flags, fallbacks = [], [], []
    loglik = 0.0
    n_par = 0
    for j in range(k):
        rows = np.flatnonzero(observed[:, j])
        joint_rows = np.flatnonzero(joint[rows]) if fhs else None
        one = _fit_one_garch(r[rows, j], dist, bool(gjr), float(max_persistence), joint_rows,
                             names[j], min_nu, bool(fallback))
        constrained[j] = one["constrained"]
        results.append(one["res"])
        flags.append(tuple(one["flags"]))
        fallbacks.append(one["fallback"])
        for key in keys:
            est[key][j] = one["params"][key]
            se[key][j] = one["se"][key]
        std_resid[rows, j] = one["std_resid"]
        cvol[rows, j] = one["cvol"]
        sigma2_0[j] = one["sigma2_next"]
        loglik += one["loglik"]
        n_par += one["n_params"]
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
             _frozen_bool(constrained), tuple(results), tuple(flags), tuple(fallbacks))
    if fhs:
        rows_b = np.flatnonzero(joint)
        rows_b.flags.writeable = False
        return FHSFit(*args, "fhs", *extra, rows_b)
    return GARCHFit(*args, "garch", *extra)


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
              *, max_persistence: float = 0.9999, min_nu: float | None = 4.0,
              fallback: bool = True) -> GARCHFit:
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
    min_nu : float or None, default 4
        Floor on the Student-t degrees of freedom (``dist="t"``): a fit below it is redone
        with ``nu`` constrained to ``>= min_nu`` (flag ``nu_floor``). None: arch's own
        bound, 2.05.
    fallback : bool, default True
        Replace degenerate fits (see Notes); False keeps them (still flagged).

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

    **Degenerate fits and fallbacks.** Every fit is checked, and what was found is listed
    per asset in ``flags`` (keys of :data:`GARCH_FLAGS`; shown by ``summary()``) and what was
    done in ``fallback``:

    * ``nu_floor``: :math:`\hat\nu <` ``min_nu``. With :math:`\nu \le 4` the innovations
      have no fourth moment, the robust standard errors are invalid, and fits near 2
      (seen on crypto just before crashes) make simulated tails explode. Fallback: the
      constrained MLE with :math:`\nu \ge` ``min_nu``.
    * ``persistence_bound``: the persistence reached ``max_persistence`` (integrated
      GARCH); fallback ``constrained``: the MLE under persistence <= ``max_persistence``.
      The model's ``sigma2_0`` is the filtered state, so short horizons are unaffected;
      the unconditional variance is not meaningful.
    * ``gamma_minus_alpha``: :math:`\alpha + \gamma \approx 0`, a fall does not raise
      the variance (a margin that ignores crashes); fallback ``symmetric``: refit without
      the leverage term (``gamma = 0``, standard error NaN).
    * ``no_arch``: :math:`\alpha = \gamma = 0`, a constant-variance fit whose filter
      ignores the returns; fallback ``ewma``: RiskMetrics EWMA written as a stationary
      GARCH, :math:`\alpha = 1 - 0.94`, :math:`\beta` = ``max_persistence`` - alpha,
      :math:`\omega = (1 - \text{max\_persistence})\,\widehat{\mathrm{Var}}(r)`
      (variance targeting), filtered from the mean square return; standard errors NaN,
      ``loglik`` the arch fit's.
    * ``not_converged``: reported only (and warned).

    A tolerance of 1e-4 decides "at the bound" and "= 0".
    """
    return _fit_garch_impl(data, dist, gjr, step, max_persistence, False, min_nu, fallback)


def fit_fhs(data: Any, dist: str = "t", gjr: bool = True, step: float | None = None, *,
            max_persistence: float = 0.9999, min_nu: float | None = 4.0,
            fallback: bool = True) -> FHSFit:
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
    return _fit_garch_impl(data, dist, gjr, step, max_persistence, True, min_nu, fallback)

