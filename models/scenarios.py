"""Market snapshots and scenario sets: the state every margin method starts from.

A :class:`MarketState` holds today's prices and implied vols; a :class:`ScenarioSet` holds,
for each scenario, the price of every underlying at the horizon and a multiplicative shock to
its implied vols. Monte Carlo sets come from any market model of :mod:`.market`
(:func:`monte_carlo_scenarios`); fixed grids (SPAN-like, Deribit-like) from
:func:`grid_scenarios`. Using one set for several methods gives common random numbers: the
differences between methods are methodology, not noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marginlab.simulate import simulate_terminal, standard_normal
from marginlab.simulate.rng import normalize_seed
from marginlab.simulate.weighted import check_weights

from ._validate import check_real
from .book import STABLECOINS
from .vol_surface import DEFAULT_SKEW_PRICE_CORR, DEFAULT_TERM_LEVEL_CORR, VolSurface

__all__ = ["MarketState", "ScenarioSet", "monte_carlo_scenarios", "grid_scenarios", "SAMPLINGS"]


def _mapping(name: str, value: Any, *, positive: bool) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of asset -> number, got "
                        f"{type(value).__name__}")
    out = {}
    for k, v in value.items():
        key = str(k).upper()
        x = check_real(f"{name}[{k!r}]", v, low=0.0, low_open=positive)
        out[key] = x
    return out


@dataclass(frozen=True, eq=False)
class MarketState:
    """Today's market: spot prices (USD), implied vols and the USD rate.

    Parameters
    ----------
    spot : mapping of str to float
        USD price of each underlying / collateral asset (> 0). Stablecoins (USDT, USDC, ...)
        are worth 1 USD and need not be listed.
    vol : mapping of str to float, optional
        Annualised implied volatility per underlying (flat smile), e.g. 0.6 for 60 %. Needed
        for underlyings with options.
    rate : float, default 0.0
        Continuously compounded USD rate.
    surfaces : mapping of str to VolSurface, optional
        Implied-vol surface per underlying (:mod:`marginlab.models.vol_surface`). Where
        given, each option's vol is the surface's at its strike and expiry (today's spot);
        ``vol`` may then omit the underlying (:meth:`implied_vol` is the surface's 30-day
        ATM vol). A :meth:`VolSurface.flat` surface at ``vol``'s level changes nothing.
    """

    spot: Mapping[str, float]
    vol: Mapping[str, float] = field(default_factory=dict)
    rate: float = 0.0
    surfaces: Mapping[str, VolSurface] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spot", _mapping("spot", self.spot, positive=True))
        object.__setattr__(self, "vol", _mapping("vol", self.vol, positive=False))
        object.__setattr__(self, "rate", check_real("rate", self.rate, low=-1.0, high=1.0))
        if not isinstance(self.surfaces, Mapping):
            raise TypeError(f"surfaces must be a mapping of underlying -> VolSurface, got "
                            f"{type(self.surfaces).__name__}")
        surf = {}
        for k, v in self.surfaces.items():
            if not isinstance(v, VolSurface):
                raise TypeError(f"surfaces[{k!r}] must be a VolSurface, got "
                                f"{type(v).__name__}")
            surf[str(k).upper()] = v
        object.__setattr__(self, "surfaces", surf)

    def price(self, asset: str) -> float:
        """USD price of ``asset`` (1.0 for stablecoins)."""
        a = asset.upper()
        if a in self.spot:
            return self.spot[a]
        if a in STABLECOINS:
            return 1.0
        raise KeyError(f"market has no spot price for {asset!r}; known: {sorted(self.spot)}")

    def prices(self, assets: Sequence[str]) -> np.ndarray:
        """USD prices of several assets, shape (len(assets),)."""
        return np.array([self.price(a) for a in assets])

    def implied_vol(self, underlying: str) -> float:
        """Implied vol of ``underlying`` (``vol``, else its surface's 30-day ATM vol)."""
        u = underlying.upper()
        if u not in self.vol:
            if u in self.surfaces:
                return self.surfaces[u].atm_vol()
            raise KeyError(f"market has no implied vol for {underlying!r}; known: "
                           f"{sorted(set(self.vol) | set(self.surfaces))}")
        return self.vol[u]

    def has_vol(self, underlying: str) -> bool:
        """Whether ``underlying`` has a flat vol or a surface."""
        u = underlying.upper()
        return u in self.vol or u in self.surfaces

    def option_vols(self, underlying: str, strike: Any, expiry: Any) -> np.ndarray:
        """Implied vols of options on ``underlying`` (strikes USD, expiries in years): the
        surface's at today's spot where there is one, else the flat ``vol``."""
        u = underlying.upper()
        k = np.asarray(strike, float)
        if u in self.surfaces:
            return self.surfaces[u].iv(k, np.asarray(expiry, float), self.price(u), self.rate)
        return np.full(np.broadcast_shapes(k.shape, np.shape(expiry)), self.implied_vol(u))


@dataclass(frozen=True, eq=False)
class ScenarioSet:
    """Joint scenarios of underlying prices and implied-vol shocks at a horizon.

    Attributes
    ----------
    underlyings : tuple of str
        Column names of ``prices`` and ``vol_shock``.
    prices : ndarray, shape (n_scenarios, n_underlyings)
        USD prices at the horizon.
    vol_shock : ndarray, shape (n_scenarios, n_underlyings)
        Multiplicative shock to each underlying's implied vols (1.0 = unchanged).
    horizon : float
        Horizon (margin period of risk) in years.
    labels : tuple of str, optional
        Scenario names (grids); empty for Monte Carlo sets.
    weights : ndarray, shape (n_scenarios,), optional
        Likelihood-ratio weights of the scenarios (importance sampling): the density of the
        model over the density the scenarios were drawn from, up to a constant. ``None``:
        equally likely scenarios (plain Monte Carlo, QMC, grids). Risk measures then use the
        weighted estimators of :mod:`marginlab.simulate.weighted`.
    randomizations : int, default 1
        Randomised QMC: the scenarios are ``randomizations`` consecutive groups of equal
        size, each an independent randomisation of the same point set; error bars then come
        from the spread between the groups (see :func:`marginlab.models.portfolio_risk`).
    sampling : str
        How the set was drawn: ``"plain"``, ``"antithetic"``, ``"qmc"``, ``"mixture"``,
        ``"grid"`` or ``"historical"`` (informative).
    skew_shock, term_shock : ndarray, shape (n_scenarios, n_underlyings), optional
        Additive shocks of each underlying's implied-vol skew and term factors
        (:mod:`marginlab.models.vol_surface`): an option's vol is multiplied by
        ``vol_shock x exp(skew_shock x skew loading + term_shock x term loading)``.
        ``None``: no skew or term moves.
    basis_shock : ndarray, shape (n_scenarios, n_underlyings), optional
        Additive move ``db`` of each underlying's futures basis factor (fraction of the
        price, :mod:`marginlab.models.basis`): a dated future of loading
        ``l = sqrt(tau / 30 days)`` is marked at ``S' (1 + db l)``; perpetuals, spot and
        options are unaffected. ``None``: futures move one for one with spot.
    funding_shock : ndarray, shape (n_scenarios, n_underlyings), optional
        Extra funding a long perpetual pays over the horizon per unit of notional, beyond
        its ``funding_rate`` (historical simulation: the observed funding-rate moves summed
        over the horizon's settlements). ``None``: funding as the book's rates say.
    """

    underlyings: tuple[str, ...]
    prices: np.ndarray
    vol_shock: np.ndarray
    horizon: float
    labels: tuple[str, ...] = ()
    weights: np.ndarray | None = None
    randomizations: int = 1
    sampling: str = "plain"
    skew_shock: np.ndarray | None = None
    term_shock: np.ndarray | None = None
    basis_shock: np.ndarray | None = None
    funding_shock: np.ndarray | None = None

    def __post_init__(self) -> None:
        und = tuple(str(u).upper() for u in self.underlyings)
        p = np.array(self.prices, dtype=float)
        v = np.array(self.vol_shock, dtype=float)
        if p.ndim != 2 or p.shape[1] != len(und):
            raise ValueError(f"prices must have shape (n_scenarios, {len(und)}), got {p.shape}")
        if v.shape != p.shape:
            raise ValueError(f"vol_shock must have shape {p.shape}, got {v.shape}")
        if not np.all(np.isfinite(p)) or np.any(p <= 0.0):
            raise ValueError("prices must be finite and > 0")
        if not np.all(np.isfinite(v)) or np.any(v < 0.0):
            raise ValueError("vol_shock must be finite and >= 0")
        check_real("horizon", self.horizon, low=0.0)
        if self.labels and len(self.labels) != p.shape[0]:
            raise ValueError(f"labels must name every scenario ({p.shape[0]}), got "
                             f"{len(self.labels)}")
        if self.weights is not None:
            wt = check_weights(self.weights, p.shape[0])
            wt.flags.writeable = False
            object.__setattr__(self, "weights", wt)
        r = self.randomizations
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise ValueError(f"randomizations must be an int >= 1, got {r!r}")
        if p.shape[0] % int(r):
            raise ValueError(f"randomizations={r} must divide n_scenarios={p.shape[0]}")
        object.__setattr__(self, "randomizations", int(r))
        p.flags.writeable = False
        v.flags.writeable = False
        object.__setattr__(self, "underlyings", und)
        object.__setattr__(self, "prices", p)
        object.__setattr__(self, "vol_shock", v)
        object.__setattr__(self, "labels", tuple(self.labels))
        for name in ("skew_shock", "term_shock", "basis_shock", "funding_shock"):
            x = getattr(self, name)
            if x is None:
                continue
            x = np.array(x, dtype=float)
            if x.shape != p.shape:
                raise ValueError(f"{name} must have shape {p.shape}, got {x.shape}")
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{name} must be finite")
            x.flags.writeable = False
            object.__setattr__(self, name, x)

    @property
    def n_scenarios(self) -> int:
        """Number of scenarios."""
        return self.prices.shape[0]

    def column(self, underlying: str) -> int:
        """Column of ``underlying``."""
        try:
            return self.underlyings.index(underlying.upper())
        except ValueError:
            raise KeyError(f"scenarios have no underlying {underlying!r}; known: "
                           f"{list(self.underlyings)}") from None


def monte_carlo_scenarios(
    model: Any,
    market: MarketState,
    underlyings: Sequence[str],
    *,
    horizon_days: float,
    n_scenarios: int,
    seed: int | np.random.SeedSequence | None,
    steps_per_day: int = 1,
    vol_of_vol: float = 0.0,
    vol_price_corr: float = -0.5,
    antithetic: bool = False,
    sampling: str = "plain",
    randomizations: int = 16,
    mixture_scale: float = 2.5,
    mixture_share: float = 0.75,
    shift_size: float = 2.5,
    skew_vol: float = 0.0,
    skew_price_corr: float = DEFAULT_SKEW_PRICE_CORR,
    term_vol: float = 0.0,
    term_level_corr: float = DEFAULT_TERM_LEVEL_CORR,
    basis_vol: float = 0.0,
    basis_price_corr: float = 0.0,
) -> ScenarioSet:
    """Monte Carlo scenarios from a market model.

    Prices at the horizon are :func:`marginlab.simulate.simulate_terminal` draws started at
    today's spots (the model's assets in the order of ``underlyings``). Implied vols move with
    the price: each underlying's vol is multiplied by
    ``exp(nu sqrt(h) W - nu^2 h / 2)`` with ``W = rho Z_r + sqrt(1 - rho^2) eps``, where ``Z_r``
    is the scenario's standardised log return of that underlying, ``eps`` an independent
    normal, ``nu = vol_of_vol`` (annualised) and ``rho = vol_price_corr`` (negative in crypto:
    crashes raise implied vols). The shock has mean 1.

    Parameters
    ----------
    model : GBM, MertonJump or GARCH
        Market model with one asset per underlying.
    market : MarketState
        Today's prices.
    underlyings : sequence of str
        Underlyings in the model's asset order.
    horizon_days : float
        Margin period of risk in days (> 0). GARCH models need a whole number of steps.
    n_scenarios : int
        Number of scenarios (>= 1).
    seed : int or SeedSequence or None
        Seed; prices use it directly (the same seed gives the same prices as
        ``simulate_terminal``), vol shocks a child stream.
    steps_per_day : int
        Time steps per day for GBM / Merton (the horizon law is exact for GBM at any step).
    vol_of_vol, vol_price_corr : float
        Implied-vol dynamics (see above); ``vol_of_vol = 0`` keeps vols unchanged.
    antithetic : bool
        Antithetic price paths.
    sampling : {"plain", "qmc", "mixture", "shift"}
        ``"plain"``: Monte Carlo from the path generators. The variance-reduced designs
        (:mod:`marginlab.simulate.tail_sampling`) draw the exact horizon law of a GBM or
        MertonJump model directly (GARCH paths are path-dependent and are refused):
        ``"qmc"``: randomised QMC, ``randomizations`` independent scrambled Sobol' sets of
        ``n_scenarios / randomizations`` points each (a power of two is best); error bars
        come from the spread between them. ``"mixture"``: defensive-mixture importance
        sampling, a share ``mixture_share`` of scenarios with the shock of one asset (in
        turn) inflated ``mixture_scale`` times, each scenario carrying its likelihood-ratio
        weight (``ScenarioSet.weights``). ``"shift"``: defensive shift-mixture importance
        sampling, a share ``mixture_share`` of scenarios with the normals of one asset's
        shock shifted by ``+shift_size`` or ``-shift_size`` standard deviations (assets and
        signs in turn), with likelihood-ratio weights. For all, the vol shock's ``Z_r`` is the
        scenario's standardised diffusion shock (exact, not a sample standardisation).
    randomizations : int
        ``sampling="qmc"``: independent randomisations (>= 2, dividing ``n_scenarios``).
    mixture_scale, mixture_share : float
        ``sampling="mixture"``: inflation factor (> 1) and inflated share in (0, 1);
        ``mixture_share`` is also the shifted share of ``sampling="shift"``.
    shift_size : float
        ``sampling="shift"``: the shift in standard deviations, in (0, 10].
    skew_vol, skew_price_corr : float
        Implied-vol skew factor (:mod:`marginlab.models.vol_surface`): ``skew_shock =
        skew_vol sqrt(h) (c Z_r + sqrt(1 - c^2) eps_s)``, ``c = skew_price_corr``;
        ``skew_vol = 0`` (default): no skew shocks. Documented defaults to use:
        :data:`~marginlab.models.vol_surface.DEFAULT_SKEW_VOL` (0.8) and 0.5.
    term_vol, term_level_corr : float
        Term-structure factor: ``term_shock = term_vol sqrt(h) (c W + sqrt(1 - c^2)
        eps_t)``, ``W`` the level's driver above, ``c = term_level_corr``; ``term_vol = 0``
        (default): none. Documented defaults to use: 0.25 and -0.6. Skew and term shocks
        come from their own child stream, so they leave prices and level shocks unchanged;
        they need ``sampling="plain"``.
    basis_vol, basis_price_corr : float
        Futures basis factor per underlying (:mod:`marginlab.models.basis`): ``basis_shock =
        basis_vol sqrt(h) (c Z_r + sqrt(1 - c^2) eps_b)``, ``c = basis_price_corr``, from its
        own child stream (3), so prices and vol shocks are unchanged; ``basis_vol = 0``
        (default): no basis moves. Measured default for BTC:
        :data:`~marginlab.models.basis.BTC_BASIS_VOL` (0.17, 2-day MPOR). Needs
        ``sampling="plain"``.
    """
    und = tuple(str(u).upper() for u in underlyings)
    seed = normalize_seed(seed)  # SPEC 7: a Generator becomes one SeedSequence, used throughout
    if getattr(model, "n_assets", None) != len(und):
        raise ValueError(f"model has {getattr(model, 'n_assets', '?')} assets but "
                         f"{len(und)} underlyings were given: {list(und)}")
    h = check_real("horizon_days", horizon_days, low=0.0, low_open=True)
    nu = check_real("vol_of_vol", vol_of_vol, low=0.0)
    rho = check_real("vol_price_corr", vol_price_corr, low=-1.0, high=1.0)
    sv = check_real("skew_vol", skew_vol, low=0.0)
    sc = check_real("skew_price_corr", skew_price_corr, low=-1.0, high=1.0)
    tv = check_real("term_vol", term_vol, low=0.0)
    tc = check_real("term_level_corr", term_level_corr, low=-1.0, high=1.0)
    bv = check_real("basis_vol", basis_vol, low=0.0, high=10.0)
    bc = check_real("basis_price_corr", basis_price_corr, low=-1.0, high=1.0)
    if sampling != "plain" and bv > 0.0:
        raise ValueError(f"basis_vol needs sampling='plain', got sampling={sampling!r}")
    s0 = market.prices(und)
    if sampling != "plain" and (sv > 0.0 or tv > 0.0):
        raise ValueError(f"skew_vol and term_vol need sampling='plain', got sampling="
                         f"{sampling!r}")
    if sampling != "plain":
        if antithetic:
            raise ValueError(f"antithetic=True applies to sampling='plain' only, got "
                             f"sampling={sampling!r}")
        return _tail_scenarios(model, und, s0, h, n_scenarios, seed, nu, rho, sampling,
                               randomizations, mixture_scale, mixture_share, shift_size)
    step = getattr(model, "step", None)
    if step is not None:  # GARCH: per-step model
        n_steps_f = h / (step * 365.0)
        n_steps = int(round(n_steps_f))
        if n_steps < 1 or not math.isclose(n_steps, n_steps_f, rel_tol=1e-9):
            raise ValueError(f"horizon_days={h} is not a whole number of the GARCH model's "
                             f"steps ({step * 365.0:g} days)")
        dt = step
    else:
        if not isinstance(steps_per_day, int) or steps_per_day < 1:
            raise ValueError(f"steps_per_day must be an int >= 1, got {steps_per_day!r}")
        n_steps = max(1, int(round(h * steps_per_day)))
        dt = h / 365.0 / n_steps
    prices = simulate_terminal(model, s0, n_steps=n_steps, dt=dt, n_paths=n_scenarios,
                               seed=seed, antithetic=antithetic)
    hy = h / 365.0
    skew = term = None
    if nu > 0.0 or sv > 0.0 or tv > 0.0 or bv > 0.0:
        eps = standard_normal(n_scenarios, 1, len(und), seed=_child(seed, 1))[:, 0, :]
        logr = np.log(prices / s0)
        sd = logr.std(axis=0)
        zr = np.where(sd > 0, (logr - logr.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)
        w = rho * zr + math.sqrt(1.0 - rho * rho) * eps
    if nu > 0.0:
        shock = np.exp(nu * math.sqrt(hy) * w - 0.5 * nu * nu * hy)
    else:
        shock = np.ones_like(prices)
    if sv > 0.0 or tv > 0.0:
        e2 = standard_normal(n_scenarios, 1, 2 * len(und), seed=_child(seed, 2))[:, 0, :]
        d = len(und)
        skew = sv * math.sqrt(hy) * (sc * zr + math.sqrt(1.0 - sc * sc) * e2[:, :d])
        term = tv * math.sqrt(hy) * (tc * w + math.sqrt(1.0 - tc * tc) * e2[:, d:])
    basis = None
    if bv > 0.0:
        eb = standard_normal(n_scenarios, 1, len(und), seed=_child(seed, 3))[:, 0, :]
        basis = bv * math.sqrt(hy) * (bc * zr + math.sqrt(1.0 - bc * bc) * eb)
    return ScenarioSet(und, prices, shock, hy, skew_shock=skew, term_shock=term,
                       basis_shock=basis)


def _child(seed: Any, key: int) -> np.random.SeedSequence | None:
    """Child stream ``key`` of the scenario seed (1: level shocks, 2: skew and term, 3:
    basis)."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, key))
    if seed is None:
        return None
    return np.random.SeedSequence(int(seed), spawn_key=(key,))


SAMPLINGS = ("plain", "qmc", "mixture", "shift")
"""The scenario designs of :func:`monte_carlo_scenarios`."""


def _tail_scenarios(model: Any, und: tuple[str, ...], s0: np.ndarray, h: float, n: int,
                    seed: Any, nu: float, rho: float, sampling: str, randomizations: Any,
                    scale: Any, share: Any, shift: Any = 2.5) -> ScenarioSet:
    """Randomised-QMC or mixture/shift-IS scenarios from the exact horizon law (GBM,
    Merton)."""
    from scipy.special import ndtr, ndtri

    from marginlab.simulate.specs import JumpDiffusionSpec
    from marginlab.simulate.tail_sampling import (
        child_seed,
        mixture_normals,
        shift_normals,
        sobol_uniforms,
        terminal_log_returns,
    )

    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    spec = model.to_spec() if hasattr(model, "to_spec") else model
    if not isinstance(spec, JumpDiffusionSpec):
        raise ValueError(f"sampling={sampling!r} needs a model whose horizon law is driven by a "
                         f"fixed set of normals (GBM, MertonJump); {type(model).__name__} "
                         "paths are path-dependent: use sampling='plain'")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_scenarios must be an int >= 1, got {n!r}")
    if seed is None:
        raise ValueError(f"sampling={sampling!r} needs a seed (int or SeedSequence), got None")
    d = len(und)
    hy = h / 365.0
    jumps = bool(np.any(np.asarray(spec.lam) > 0.0))
    weights = None
    r = 1
    if sampling == "qmc":
        r = randomizations
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 2:
            raise ValueError(f"randomizations must be an int >= 2, got {r!r}")
        r = int(r)
        if n % r:
            raise ValueError(f"n_scenarios={n} must be a multiple of randomizations={r}")
        dims = d * (1 + 2 * jumps + (nu > 0.0))
        u = sobol_uniforms(n // r, dims, r, seed)
        z = ndtri(u[:, :d])
        ju = u[:, d:2 * d] if jumps else None
        jz = ndtri(u[:, 2 * d:3 * d]) if jumps else None
        eps = ndtri(u[:, dims - d:]) if nu > 0.0 else None
    else:
        c = check_real("mixture_scale", scale, low=1.0, low_open=True)
        sh = check_real("mixture_share", share, low=0.0, high=1.0, low_open=True,
                        high_open=True)
        chol = np.asarray(spec.chol, float)
        dirs = chol / np.linalg.norm(chol, axis=1)[:, None]
        if sampling == "shift":
            th = check_real("shift_size", shift, low=0.0, low_open=True, high=10.0)
            z, weights = shift_normals(n, dirs, shift=th, share=sh, seed=seed)
        else:
            z, weights = mixture_normals(n, dirs, scale=c, share=sh, seed=seed)
        ju = jz = None
        if jumps:
            g = standard_normal(n, 1, 2 * d, seed=child_seed(seed, 3))[:, 0, :]
            ju = np.clip(ndtr(g[:, :d]), 2.0**-53, 1.0 - 2.0**-53)
            jz = g[:, d:]
        eps = (standard_normal(n, 1, d, seed=child_seed(seed, 1))[:, 0, :]
               if nu > 0.0 else None)
    logr = terminal_log_returns(spec, hy, z, ju, jz)
    prices = s0 * np.exp(logr)
    if eps is not None:
        zr = z @ np.asarray(spec.chol, float).T  # standardised diffusion shock per asset
        w = rho * zr + math.sqrt(1.0 - rho * rho) * eps
        shock = np.exp(nu * math.sqrt(hy) * w - 0.5 * nu * nu * hy)
    else:
        shock = np.ones_like(prices)
    return ScenarioSet(und, prices, shock, hy, weights=weights, randomizations=r,
                       sampling=sampling)


def grid_scenarios(
    market: MarketState,
    underlyings: Sequence[str],
    *,
    price_moves: Sequence[float],
    vol_shocks: Sequence[float] = (1.0,),
    horizon_days: float = 0.0,
    joint: bool = True,
    skew_shocks: Sequence[float] = (0.0,),
) -> ScenarioSet:
    """A fixed grid of price moves x vol shocks (SPAN- or Deribit-style risk arrays).

    Parameters
    ----------
    market : MarketState
        Today's prices.
    underlyings : sequence of str
        Underlyings to shock.
    price_moves : sequence of float
        Relative price moves (e.g. -0.16 ... +0.16).
    vol_shocks : sequence of float
        Multiplicative implied-vol shocks (e.g. 0.7, 1.0, 1.3).
    horizon_days : float
        Time that passes in every scenario (0: instantaneous shocks).
    joint : bool
        If True all underlyings move together (one scenario per move x shock); if False each
        underlying is moved alone while the others stay (the grid per underlying, as exchanges
        apply them to one underlying's positions at a time).
    skew_shocks : sequence of float, default (0.0,)
        Additive shocks of the implied-vol skew factor (:mod:`marginlab.models.vol_surface`),
        crossed with the moves and vol shocks (e.g. (-0.15, 0, 0.15)). The default adds no
        scenarios and no ``skew_shock`` array.
    """
    und = tuple(str(u).upper() for u in underlyings)
    s0 = market.prices(und)
    moves = np.asarray(price_moves, float)
    shocks = np.asarray(vol_shocks, float)
    if moves.ndim != 1 or moves.size == 0 or np.any(~np.isfinite(moves)) or np.any(moves <= -1):
        raise ValueError(f"price_moves must be a non-empty sequence of moves > -1, got "
                         f"{price_moves!r}")
    if shocks.ndim != 1 or shocks.size == 0 or np.any(~np.isfinite(shocks)) or np.any(shocks < 0):
        raise ValueError(f"vol_shocks must be a non-empty sequence of factors >= 0, got "
                         f"{vol_shocks!r}")
    skews = np.asarray(skew_shocks, float)
    if skews.ndim != 1 or skews.size == 0 or np.any(~np.isfinite(skews)):
        raise ValueError(f"skew_shocks must be a non-empty sequence of finite shocks, got "
                         f"{skew_shocks!r}")
    with_skew = bool(np.any(skews != 0.0))
    rows_p, rows_v, rows_s, labels = [], [], [], []
    targets = [None] if joint else list(range(len(und)))
    for target in targets:
        for m in moves:
            for v in shocks:
                for sk in skews:
                    p = s0.copy()
                    vs = np.ones(len(und))
                    ss = np.zeros(len(und))
                    if target is None:
                        p = s0 * (1.0 + m)
                        vs[:] = v
                        ss[:] = sk
                        name = "all"
                    else:
                        p[target] = s0[target] * (1.0 + m)
                        vs[target] = v
                        ss[target] = sk
                        name = und[target]
                    rows_p.append(p)
                    rows_v.append(vs)
                    rows_s.append(ss)
                    labels.append(f"{name} price {m:+.2%} vol x{v:g}"
                                  + (f" skew {sk:+g}" if with_skew else ""))
    return ScenarioSet(und, np.array(rows_p), np.array(rows_v),
                       check_real("horizon_days", horizon_days, low=0.0) / 365.0,
                       tuple(labels), skew_shock=np.array(rows_s) if with_skew else None)
