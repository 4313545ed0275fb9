"""Market models: the meaning and validation of the scenario generators' parameters.

Each model is a frozen dataclass that validates on construction and converts to the plain
record the numba kernels use (``to_spec()``). Simulate with
:func:`marginlab.simulate.simulate_paths` and its reductions.

Units: ``GBM`` and ``MertonJump`` take annualised parameters (time in years; one day is
1/365 since crypto trades every day). ``GARCH`` is a per-step model of decimal log returns
(``step`` years per step, daily by default). Parameter names follow the literature and the
``arch`` package (``omega``, ``alpha``, ``beta``, ``gamma``, ``nu``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marginlab.simulate.specs import (
    DIST_BOOTSTRAP,
    DIST_NORMAL,
    DIST_T,
    GARCHSpec,
    JumpDiffusionSpec,
)

from ._validate import as_param, broadcast_params, check_corr, check_real, corr_factor, freeze

__all__ = ["GBM", "MertonJump", "GARCH", "Bootstrap", "with_zero_drift"]


def _setup(obj: Any, params: dict[str, np.ndarray], corr: Any) -> int:
    """Broadcast parameters to n_assets, validate corr, freeze everything onto ``obj``."""
    n_corr = None
    if corr is not None:
        c = np.asarray(corr)
        n_corr = c.shape[0] if c.ndim == 2 else None
    n = broadcast_params(params, n_corr)
    for name, arr in params.items():
        object.__setattr__(obj, name, freeze(arr, n))
    c = np.eye(n) if corr is None else check_corr(corr, n)
    if corr is None:
        c.flags.writeable = False
    object.__setattr__(obj, "corr", c)
    return n


@dataclass(frozen=True, eq=False)
class GBM:
    r"""Correlated geometric Brownian motion.

    Parameters
    ----------
    mu : float or array_like, shape (n_assets,)
        Annualised drift: :math:`E[S_T] = S_0 e^{\mu T}`.
    sigma : float or array_like, shape (n_assets,)
        Annualised volatility, >= 0 (0.6 is 60 % a year).
    corr : array_like, shape (n_assets, n_assets), optional
        Correlation of the Brownian motions: symmetric, unit diagonal, positive
        semi-definite. Default: independent assets.

    Notes
    -----
    .. math:: \log S_{t+\Delta} = \log S_t + (\mu - \sigma^2/2)\Delta + \sigma\sqrt{\Delta} Z,
              \quad Z \sim N(0, \Sigma_\rho)

    The scheme is exact in distribution for any step.

    Examples
    --------
    >>> GBM(mu=0.0, sigma=[0.6, 0.8], corr=[[1.0, 0.7], [0.7, 1.0]]).n_assets
    2
    """

    mu: Any
    sigma: Any
    corr: Any = None

    def __post_init__(self) -> None:
        params = {
            "mu": as_param("mu", self.mu),
            "sigma": as_param("sigma", self.sigma, low=0.0),
        }
        _setup(self, params, self.corr)

    @property
    def n_assets(self) -> int:
        """Number of assets."""
        return self.mu.size

    def to_spec(self) -> JumpDiffusionSpec:
        """The kernel record (a jump diffusion without jumps)."""
        zero = np.zeros(self.n_assets)
        return JumpDiffusionSpec(self.mu, self.sigma, zero, zero, zero, corr_factor(self.corr))

    def expected_price(self, s0: Any, t: float) -> np.ndarray:
        """:math:`E[S_t] = S_0 e^{\\mu t}` for ``t`` in years."""
        return np.asarray(s0, dtype=float) * np.exp(self.mu * t)


@dataclass(frozen=True, eq=False)
class MertonJump:
    r"""Merton (1976) jump diffusion: GBM plus compensated compound-Poisson lognormal jumps.

    Parameters
    ----------
    mu : float or array_like
        Annualised drift of the price, jumps included: :math:`E[S_T] = S_0 e^{\mu T}`
        (with ``mu = r`` this is Merton's risk-neutral model).
    sigma : float or array_like
        Annualised diffusion volatility, >= 0.
    lam : float or array_like
        Jump intensity, expected jumps per year, >= 0.
    jump_mean, jump_std : float or array_like
        Mean and standard deviation (>= 0) of the log jump size :math:`Y \sim N(m, s^2)`.
    corr : array_like, optional
        Correlation of the diffusions. Jump processes are independent across assets.

    Notes
    -----
    .. math:: \log S_{t+\Delta} = \log S_t + (\mu - \sigma^2/2 - \lambda\kappa)\Delta
              + \sigma\sqrt{\Delta} Z + \sum_{j=1}^{N_\Delta} Y_j,
              \quad \kappa = e^{m + s^2/2} - 1,\ N_\Delta \sim \mathrm{Poisson}(\lambda\Delta)

    Exact in distribution for any step. Given ``k`` jumps in a step, their sum is drawn as
    :math:`k m + s\sqrt{k} Z'`.
    """

    mu: Any
    sigma: Any
    lam: Any
    jump_mean: Any
    jump_std: Any
    corr: Any = None

    def __post_init__(self) -> None:
        params = {
            "mu": as_param("mu", self.mu),
            "sigma": as_param("sigma", self.sigma, low=0.0),
            "lam": as_param("lam", self.lam, low=0.0),
            "jump_mean": as_param("jump_mean", self.jump_mean),
            "jump_std": as_param("jump_std", self.jump_std, low=0.0),
        }
        _setup(self, params, self.corr)

    @property
    def n_assets(self) -> int:
        """Number of assets."""
        return self.mu.size

    @property
    def kappa(self) -> np.ndarray:
        """Mean relative jump size :math:`E[e^Y] - 1`."""
        return np.expm1(self.jump_mean + 0.5 * self.jump_std**2)

    def to_spec(self) -> JumpDiffusionSpec:
        """The kernel record."""
        return JumpDiffusionSpec(self.mu, self.sigma, self.lam, self.jump_mean, self.jump_std,
                                 corr_factor(self.corr))


@dataclass(frozen=True, eq=False)
class Bootstrap:
    """Empirical innovations for filtered historical simulation (FHS).

    Pass as ``GARCH(..., dist=Bootstrap(residuals))``: each step's standardised innovation
    vector is a row drawn uniformly, with replacement, from ``residuals``. Rows are drawn
    jointly across assets, which keeps their cross-sectional dependence.

    Parameters
    ----------
    residuals : array_like, shape (n_obs,) or (n_obs, n_assets)
        Standardised residuals, e.g. ``eps_t / sigma_t`` from a fitted GARCH model.
    standardize : bool, default True
        Demean each column and scale it to unit variance (population), so that the GARCH
        recursion's variance is exact. Set False to use the rows as given.
    """

    residuals: Any
    standardize: bool = True
    n_assets: int = field(init=False)

    def __post_init__(self) -> None:
        try:
            r = np.array(self.residuals, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("residuals must be an array of real numbers") from None
        if r.ndim == 1:
            r = r[:, None]
        if r.ndim != 2:
            raise ValueError(f"residuals must be 1-D or 2-D (n_obs, n_assets), got shape "
                             f"{r.shape}")
        if r.shape[0] < 2:
            raise ValueError(f"residuals must have at least 2 rows, got {r.shape[0]}")
        bad = ~np.isfinite(r)
        if np.any(bad):
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"residuals must be finite, got {r[i, j]!r} at row {i}, column {j}")
        if self.standardize:
            r = r - r.mean(axis=0)
            sd = r.std(axis=0)
            if np.any(sd == 0.0):
                raise ValueError("residuals has a constant column; it cannot be standardised")
            r = r / sd
        r.flags.writeable = False
        object.__setattr__(self, "residuals", r)
        object.__setattr__(self, "n_assets", r.shape[1])

    def negative_second_moment(self) -> np.ndarray:
        """:math:`E[z^2 1\\{z < 0\\}]` per asset, the GJR term's weight in the persistence."""
        r = self.residuals
        return np.mean(np.where(r < 0.0, r * r, 0.0), axis=0)


@dataclass(frozen=True, eq=False)
class GARCH:
    r"""GJR-GARCH(1,1) per step, with constant conditional correlation across assets.

    Parameters
    ----------
    omega : float or array_like
        Variance intercept per step (decimal returns), > 0.
    alpha : float or array_like
        ARCH coefficient, >= 0.
    beta : float or array_like
        GARCH coefficient, >= 0.
    gamma : float or array_like, default 0.0
        Leverage (GJR) coefficient; ``alpha + gamma >= 0``. Positive ``gamma`` makes
        negative returns raise volatility more.
    mu : float or array_like, default 0.0
        Mean log return per step.
    dist : {"normal", "t"} or Bootstrap, default "normal"
        Innovations: standard normal; Student-t with ``nu`` degrees of freedom scaled to unit
        variance (multivariate t with one mixing variable per step when there are several
        assets); or resampled standardised residuals (filtered historical simulation).
    nu : float, optional
        Degrees of freedom, > 2, required for ``dist="t"`` and only then.
    sigma2_0 : float or array_like, optional
        Conditional variance of the first simulated step: the fitted / filtered state
        (:func:`~marginlab.models.calibration.fit_garch` sets it to the forecast after the
        last return). Default: the unconditional variance ``omega / (1 - persistence)``;
        ``has_state`` is then False and margin methods refuse the model (a near-integrated
        GARCH's unconditional variance can be ten times the current one).
    corr : array_like, optional
        Correlation of the innovations (not allowed with ``Bootstrap``, whose rows carry
        their own dependence).
    step : float, default 1/365
        Length of one step in years; ``simulate_paths`` requires ``dt == step``.

    Notes
    -----
    .. math::
        r_t = \mu + \varepsilon_t, \quad \varepsilon_t = \sigma_t z_t, \quad
        \sigma_t^2 = \omega + (\alpha + \gamma 1[\varepsilon_{t-1} < 0])\varepsilon_{t-1}^2
                     + \beta \sigma_{t-1}^2

    Prices follow :math:`S_t = S_{t-1} e^{r_t}`. Covariance stationarity requires the
    persistence :math:`\alpha + \beta + \gamma E[z^2 1\{z<0\}] < 1`, where the expectation is
    1/2 for the symmetric normal and t innovations. Unconditional variance
    :math:`\omega / (1 - \text{persistence})`; for normal innovations and
    :math:`\gamma = 0` the kurtosis of :math:`\varepsilon` is
    :math:`3(1 - (\alpha+\beta)^2) / (1 - (\alpha+\beta)^2 - 2\alpha^2)`.

    ``arch`` fits on percent returns: its ``omega`` is ours times 1e4 and its ``mu`` ours
    times 100; ``alpha``, ``beta``, ``gamma`` and ``nu`` are the same.
    """

    omega: Any
    alpha: Any
    beta: Any
    gamma: Any = 0.0
    mu: Any = 0.0
    dist: Any = "normal"
    nu: Any = None
    sigma2_0: Any = None
    corr: Any = None
    step: float = 1.0 / 365.0

    def __post_init__(self) -> None:
        params = {
            "omega": as_param("omega", self.omega, low=0.0, low_open=True),
            "alpha": as_param("alpha", self.alpha, low=0.0),
            "beta": as_param("beta", self.beta, low=0.0),
            "gamma": as_param("gamma", self.gamma),
            "mu": as_param("mu", self.mu),
        }
        if self.sigma2_0 is not None:
            params["sigma2_0"] = as_param("sigma2_0", self.sigma2_0, low=0.0, low_open=True)
        check_real("step", self.step, low=0.0, low_open=True)
        dist = self.dist
        if isinstance(dist, Bootstrap):
            if self.corr is not None:
                raise ValueError("corr must be None with Bootstrap innovations: the resampled "
                                 "rows carry the dependence between assets")
            n_hint = dist.n_assets
        elif isinstance(dist, str) and dist in ("normal", "t"):
            n_hint = None
        else:
            raise ValueError(f"dist must be 'normal', 't' or a Bootstrap, got {dist!r}")
        if dist == "t":
            if self.nu is None:
                raise ValueError("nu (degrees of freedom, > 2) is required with dist='t'")
            object.__setattr__(self, "nu", check_real("nu", self.nu, low=2.0, low_open=True))
        elif self.nu is not None:
            raise ValueError(f"nu={self.nu!r} is only meaningful with dist='t', got dist="
                             f"{dist if isinstance(dist, str) else 'Bootstrap'!r}")
        if n_hint is not None:
            c = np.eye(n_hint)
        else:
            c = self.corr
        sizes = {k: v.size for k, v in params.items() if v.size != 1}
        if isinstance(dist, Bootstrap) and sizes and set(sizes.values()) != {n_hint}:
            raise ValueError(f"Bootstrap residuals have {n_hint} columns but the parameters "
                             f"describe {max(sizes.values())} assets")
        n = _setup(self, params, c)
        if isinstance(dist, Bootstrap) and dist.n_assets != n:
            raise ValueError(f"Bootstrap residuals have {dist.n_assets} columns but the "
                             f"parameters describe {n} assets")
        if self.corr is None and not isinstance(dist, Bootstrap):
            object.__setattr__(self, "corr", np.eye(n))
        lev = self.alpha + self.gamma
        if np.any(lev < 0.0):
            raise ValueError(f"alpha + gamma must be >= 0 (variance stays positive), got "
                             f"{lev!r}")
        pers = self.persistence
        if np.any(pers >= 1.0):
            raise ValueError(
                "GARCH is not covariance stationary: persistence alpha + beta + "
                f"gamma E[z^2 1(z<0)] must be < 1, got {pers!r}"
            )
        object.__setattr__(self, "_has_state", self.sigma2_0 is not None)
        if self.sigma2_0 is None:
            object.__setattr__(self, "sigma2_0", freeze(self.unconditional_variance, n))

    @property
    def has_state(self) -> bool:
        """Whether ``sigma2_0`` was given (a fitted or filtered state), not defaulted to the
        unconditional variance."""
        return self._has_state

    @property
    def n_assets(self) -> int:
        """Number of assets."""
        return self.mu.size

    @property
    def persistence(self) -> np.ndarray:
        """:math:`\\alpha + \\beta + \\gamma E[z^2 1\\{z<0\\}]` per asset."""
        if isinstance(self.dist, Bootstrap):
            neg = self.dist.negative_second_moment()
        else:
            neg = 0.5
        return self.alpha + self.beta + self.gamma * neg

    @property
    def unconditional_variance(self) -> np.ndarray:
        """Per-step unconditional variance :math:`\\omega / (1 - \\text{persistence})`."""
        return self.omega / (1.0 - self.persistence)

    def to_step(self, step: float) -> GARCH:
        r"""The same process observed every ``step`` years: temporal aggregation of a
        symmetric GARCH(1,1) (Drost and Nijman, "Temporal aggregation of GARCH processes",
        *Econometrica* 61, 1993, flow variables).

        Parameters
        ----------
        step : float
            New step in years; must be a whole multiple ``m`` of ``self.step`` (e.g. hourly
            to 8-hourly, m = 8, or to daily, m = 24).

        Returns
        -------
        GARCH
            The weak GARCH(1,1) of the m-step log returns: with :math:`\rho = \alpha+\beta`,
            :math:`\omega_m = m\omega(1-\rho^m)/(1-\rho)`, :math:`\alpha_m+\beta_m = \rho^m`,
            :math:`\beta_m` the root in (0, 1) of
            :math:`\beta_m/(1+\beta_m^2) = (a\rho^m - b)/(a(1+\rho^{2m}) - 2b)` with
            :math:`a = m(1-\beta)^2 + 2m(m-1)(1-\rho)^2(1-\beta^2-2\alpha\beta)/((\kappa-1)
            (1-\rho^2)) + 4(m-1-m\rho+\rho^m)(\alpha-\alpha\beta\rho)/(1-\rho^2)`,
            :math:`b = (\alpha-\alpha\beta\rho)(1-\rho^{2m})/(1-\rho^2)`, :math:`\kappa` the
            kurtosis of the one-step returns; the m-step kurtosis
            :math:`\kappa_m = 3 + (\kappa-3)/m + 6(\kappa-1)(m-1-m\rho+\rho^m)
            (\alpha-\alpha\beta\rho)/(m^2(1-\rho)^2(1-\beta^2-2\alpha\beta))` sets the
            innovations: Student-t with the matching kurtosis (normal if it is 3);
            ``mu`` becomes ``m mu``; ``sigma2_0`` (if the model has a state) the exact
            conditional variance of the next m-step return,
            :math:`m\bar\sigma^2 + (\sigma^2_0 - \bar\sigma^2)(1-\rho^m)/(1-\rho)`.

        Raises
        ------
        ValueError
            Where the conversion is not defined: a step that is not a whole multiple (a
            GARCH is not closed under disaggregation), a GJR term (``gamma != 0``),
            bootstrapped innovations, several assets, Student-t with ``nu <= 4`` or a
            process without a finite fourth moment (no kurtosis).
        """
        st = check_real("step", step, low=0.0, low_open=True)
        m_f = st / self.step
        m = int(round(m_f))
        if m < 1 or abs(m - m_f) > 1e-9 * max(1.0, m_f):
            raise ValueError(f"step={st!r} is not a whole multiple of the model's step "
                             f"{self.step!r}: GARCH is closed under temporal aggregation "
                             "only (Drost and Nijman 1993), not under disaggregation")
        if self.n_assets != 1:
            raise ValueError("to_step converts one asset at a time (no multivariate result)")
        if isinstance(self.dist, Bootstrap):
            raise ValueError("to_step is not defined for bootstrapped innovations")
        if np.any(self.gamma != 0.0):
            raise ValueError("to_step is defined for symmetric GARCH only (gamma = 0); a GJR "
                             "model has no closed-form aggregation")
        if self.dist == "t" and self.nu <= 4.0:
            raise ValueError(f"to_step needs a finite kurtosis: nu must be > 4, got {self.nu}")
        a, b, w = float(self.alpha[0]), float(self.beta[0]), float(self.omega[0])
        rho = a + b
        kz = 3.0 if self.dist == "normal" else 3.0 * (self.nu - 2.0) / (self.nu - 4.0)
        den = 1.0 - rho**2 - (kz - 1.0) * a * a
        if den <= 0.0:
            raise ValueError("to_step needs a finite fourth moment of the returns: "
                             f"1 - rho^2 - (kappa_z - 1) alpha^2 = {den:.4g} <= 0")
        ky = kz * (1.0 - rho**2) / den
        if m == 1:
            return self
        rm = rho**m
        c = a - a * b * rho
        q = m - 1.0 - m * rho + rm
        aa = (m * (1.0 - b) ** 2
              + 2.0 * m * (m - 1.0) * (1.0 - rho) ** 2 * (1.0 - b * b - 2.0 * a * b)
              / ((ky - 1.0) * (1.0 - rho**2))
              + 4.0 * q * c / (1.0 - rho**2))
        bb = c * (1.0 - rho ** (2 * m)) / (1.0 - rho**2)
        ratio = (aa * rm - bb) / (aa * (1.0 + rm * rm) - 2.0 * bb)
        if ratio <= 0.0:
            beta_m = 0.0
        else:
            beta_m = (1.0 - math.sqrt(max(1.0 - 4.0 * ratio * ratio, 0.0))) / (2.0 * ratio)
        alpha_m = rm - beta_m
        omega_m = m * w * (1.0 - rm) / (1.0 - rho)
        k_m = 3.0 + (ky - 3.0) / m + 6.0 * (ky - 1.0) * q * c / (
            m * m * (1.0 - rho) ** 2 * (1.0 - b * b - 2.0 * a * b))
        rm2 = alpha_m + beta_m
        kz_m = k_m * (1.0 - rm2**2 + alpha_m**2) / (1.0 - rm2**2 + k_m * alpha_m**2)
        s2 = None
        if self.has_state:
            vbar = w / (1.0 - rho)
            s2 = m * vbar + (float(self.sigma2_0[0]) - vbar) * (1.0 - rm) / (1.0 - rho)
        kw = dict(omega=omega_m, alpha=alpha_m, beta=beta_m, mu=m * float(self.mu[0]),
                  sigma2_0=s2, step=st)
        if kz_m > 3.0 + 1e-9:
            return GARCH(dist="t", nu=(4.0 * kz_m - 6.0) / (kz_m - 3.0), **kw)
        return GARCH(dist="normal", **kw)

    def to_spec(self) -> GARCHSpec:
        """The kernel record."""
        n = self.n_assets
        if isinstance(self.dist, Bootstrap):
            code, nu, res = DIST_BOOTSTRAP, 0.0, self.dist.residuals
        elif self.dist == "t":
            code, nu, res = DIST_T, float(self.nu), np.empty((0, n))
        else:
            code, nu, res = DIST_NORMAL, 0.0, np.empty((0, n))
        return GARCHSpec(self.omega, self.alpha, self.beta, self.gamma, self.mu, self.sigma2_0,
                         corr_factor(self.corr), code, nu, res, float(self.step))


def with_zero_drift(model: Any) -> Any:
    """A copy of ``model`` with ``mu = 0`` (everything else, GARCH state included, kept).

    For :class:`GBM` and :class:`MertonJump` the price is then a martingale,
    :math:`E[S_T] = S_0`; for :class:`GARCH` the mean log return per step is 0. Margin
    scenarios use this by default: a drift estimated from a year of crypto prices has a
    standard error about as large as the volatility (60-80 % a year), and a positive one
    would lower the margin of longs.
    """
    if isinstance(model, GARCH):
        return GARCH(omega=model.omega, alpha=model.alpha, beta=model.beta, gamma=model.gamma,
                     mu=np.zeros(model.n_assets), dist=model.dist, nu=model.nu,
                     sigma2_0=model.sigma2_0 if model.has_state else None,
                     corr=None if isinstance(model.dist, Bootstrap) else model.corr,
                     step=model.step)
    if isinstance(model, MertonJump):
        return MertonJump(mu=np.zeros(model.n_assets), sigma=model.sigma, lam=model.lam,
                          jump_mean=model.jump_mean, jump_std=model.jump_std, corr=model.corr)
    if isinstance(model, GBM):
        return GBM(mu=np.zeros(model.n_assets), sigma=model.sigma, corr=model.corr)
    raise TypeError(f"model must be a GBM, MertonJump or GARCH, got {type(model).__name__}")
