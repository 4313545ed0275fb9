r"""Implied volatility surfaces: SVI slices, SSVI, flat; no-arbitrage checks; surface shocks.

A :class:`VolSurface` gives the Black-76 implied vol of any strike and expiry of one
underlying, from its total implied variance :math:`w(k, T) = \sigma^2(k, T) T` in
log-moneyness :math:`k = \log(K / F)`, :math:`F = S e^{rT}`. Three parametrisations:

* **flat** (:meth:`VolSurface.flat`): one vol for every strike and expiry, exactly
  ``MarketState.vol``'s flat smile (revaluation with it is bit for bit today's).
* **SSVI** (:meth:`VolSurface.ssvi`, Gatheral and Jacquier, "Arbitrage-free SVI volatility
  surfaces", *Quantitative Finance* 14, 2014), built from a level (e.g. DVOL, the 30-day ATM
  vol) plus skew, curvature and term parameters:
  :math:`w(k, T) = \tfrac{\theta_T}{2}\big(1 + \rho\varphi k + \sqrt{(\varphi k + \rho)^2
  + 1 - \rho^2}\big)`, with the ATM total variance
  :math:`\theta_T = \sigma_{\rm ATM}^2 T_{\rm ref} (T / T_{\rm ref})^{1 + 2\beta}` (ATM vol
  :math:`\sigma_{\rm ATM}(T/T_{\rm ref})^\beta`, :math:`T_{\rm ref}` = 30 days) and the power
  law :math:`\varphi(\theta) = \eta\,\theta^{-\gamma}(1+\theta)^{\gamma - 1}`. It is free of
  static arbitrage when :math:`\beta \ge -1/2` (calendar), :math:`0 < \gamma \le 1/2` and
  :math:`\eta (1 + |\rho|) \le 2` (butterfly; their Remark 4.4); the constructor refuses the
  rest.
* **SVI slices** (:meth:`VolSurface.from_slices`, :meth:`VolSurface.from_chain`): raw SVI
  (Gatheral 2004) per listed expiry,
  :math:`w_i(k) = a + b\big(\rho(k - m) + \sqrt{(k - m)^2 + s^2}\big)`, fitted to an option
  chain by least squares in total variance; between expiries the total variance is linear in
  :math:`T` at fixed :math:`k` (which keeps the calendar order of the slices); outside them
  the vol of each :math:`k` is held (``w`` proportional to ``T``).

:meth:`VolSurface.check_arbitrage` lists the violations on a grid: butterfly (Gatheral's
density condition :math:`g(k) \ge 0`,
:math:`g = (1 - k w'/(2w))^2 - (w'^2/4)(1/w + 1/4) + w''/2`) and calendar (:math:`w`
non-decreasing in :math:`T` at fixed :math:`k`).

Scenario shocks (:func:`shocked_vol`) move the whole surface of an underlying with three
factors per scenario: the level :math:`L` (multiplicative, the scenario set's ``vol_shock``),
the skew :math:`s` and the term slope :math:`\tau`:
:math:`\sigma'(K, T) = \sigma(K, T)\, L\, \exp(s\,x + \tau\,y)` with the skew loading
:math:`x = 2\tanh(k / (2\sqrt{T}))` (about :math:`k/\sqrt T` near the money, bounded by
2 in the wings, smooth so that it adds no kink to the smile) and the term loading
:math:`y = \log(T/T_{\rm ref})` (``T`` floored at one day and capped at two years), both
computed once per option from today's spot (sticky strike). :math:`s` is the change of
:math:`d\log\sigma / d(k/\sqrt T)`; a 25-delta risk reversal at 60 % vol and 30 days has
loadings of about +0.45 (call) and -0.35 (put), so its vol spread (call minus put) moves
by about :math:`0.8\,\sigma s`, i.e. :math:`0.48\,s` at 60 % vol. The 30-day ATM vol moves only with
the level, so the level's dynamics are those of DVOL (a 30-day ATM index):
:func:`calibrate_dvol` measures them on the shared data. The skew and term factors are
driven as in :func:`marginlab.models.monte_carlo_scenarios`, with the documented defaults
:data:`DEFAULT_SKEW_VOL`, :data:`DEFAULT_SKEW_PRICE_CORR`, :data:`DEFAULT_TERM_VOL`,
:data:`DEFAULT_TERM_LEVEL_CORR` (no option-chain history was available to calibrate them;
see the constants).

Shocked surfaces are not arbitrage-free by construction: ``check_arbitrage(shock=(level,
skew, term))`` checks one. Measured on ``VolSurface.ssvi(0.6, rho=-0.3, eta=1, gamma=0.5,
term_slope=-0.1)`` (expiries 1 day to 2 years, ``k`` in [-1.5, 1.5]): no violation for levels
in [0.5, 1.25], ``|skew| <= 0.15`` (2.5 two-day standard deviations at the default skew vol)
and ``|term| <= 0.06``; a put-skew steepening of -0.2 with the level up 25 % and larger
joint moves (level x2 with ``|skew| >= 0.1``) break the butterfly condition in the wings
(the shocked wings grow past Lee's moment bound). Margins are still computed on them (a
scenario, not a quote); the check says how far the tail scenarios are from a consistent
surface.

Units: vols annualised decimals (0.6 is 60 %), expiries in years, strikes and spots in USD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._validate import check_real

__all__ = ["SVISlice", "VolSurface", "ArbitrageViolation", "shock_loadings", "shocked_vol",
           "calibrate_dvol", "dvol_history", "DVOLDynamics", "T_REF", "SKEW_CLIP",
           "DEFAULT_SKEW_VOL", "DEFAULT_SKEW_PRICE_CORR", "DEFAULT_TERM_VOL",
           "DEFAULT_TERM_LEVEL_CORR"]

T_REF = 30.0 / 365.0
"""Reference expiry (years): the 30 days of DVOL; the term loading is 0 there."""
SKEW_CLIP = 2.0
"""Bound ``c`` of the skew loading ``c tanh(k / (c sqrt(T)))`` (keeps far wings' shocks
finite)."""
_T_MIN = 1.0 / 365.0
_T_MAX = 2.0
DEFAULT_SKEW_VOL = 0.8
"""Annualised volatility of the skew factor ``s``: a daily standard deviation of 0.042,
about 2 vol points of 30-day 25-delta risk reversal at 60 % vol (BTC risk reversals
commonly move 1-2 vol points a day, more in sell-offs). An assumption, not a
calibration: no option-chain history is in the shared data."""
DEFAULT_SKEW_PRICE_CORR = 0.5
"""Correlation of the skew factor with the underlying's return: sell-offs steepen the put
skew (``s`` falls), rallies bid calls."""
DEFAULT_TERM_VOL = 0.25
"""Annualised volatility of the term factor ``tau`` (a daily standard deviation of 0.013:
the 1-year / 30-day vol ratio, loading 2.5, moves about 3 % a day). An assumption."""
DEFAULT_TERM_LEVEL_CORR = -0.6
"""Correlation of the term factor with the level's driver: vol spikes invert the term
structure (short expiries rise most)."""


# ----------------------------------------------------------------------------- SVI
@dataclass(frozen=True)
class SVISlice:
    """Raw SVI parameters of one expiry (Gatheral 2004).

    Parameters
    ----------
    expiry : float
        Years to expiry, > 0.
    a, b, rho, m, sigma : float
        :math:`w(k) = a + b(\\rho(k - m) + \\sqrt{(k - m)^2 + \\sigma^2})`: ``b >= 0``,
        ``|rho| < 1``, ``sigma > 0`` and ``a + b sigma sqrt(1 - rho^2) >= 0`` (the minimum
        total variance is not negative).
    """

    expiry: float
    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def __post_init__(self) -> None:
        check_real("expiry", self.expiry, low=0.0, low_open=True)
        check_real("a", self.a)
        check_real("b", self.b, low=0.0)
        check_real("rho", self.rho, low=-1.0, high=1.0, low_open=True, high_open=True)
        check_real("m", self.m)
        check_real("sigma", self.sigma, low=0.0, low_open=True)
        wmin = self.a + self.b * self.sigma * math.sqrt(1.0 - self.rho**2)
        if wmin < -1e-14:
            raise ValueError(f"a + b sigma sqrt(1 - rho^2) must be >= 0 (total variance not "
                             f"negative), got {wmin!r} (a={self.a!r})")

    def params(self) -> np.ndarray:
        """``(a, b, rho, m, sigma)``."""
        return np.array([self.a, self.b, self.rho, self.m, self.sigma])

    def total_variance(self, k: Any) -> np.ndarray:
        """Total implied variance at log-moneyness ``k``."""
        return _svi(np.asarray(k, float), *self.params())[0]


def _svi(k: np.ndarray, a, b, rho, m, sigma):
    """Raw SVI total variance and its first two derivatives in ``k``."""
    x = k - m
    r = np.sqrt(x * x + sigma * sigma)
    return a + b * (rho * x + r), b * (rho + x / r), b * sigma * sigma / r**3


def _ssvi_raw(theta, rho, eta, gamma):
    """Raw SVI parameters of the SSVI slice with ATM total variance ``theta``."""
    phi = eta * theta ** (-gamma) * (1.0 + theta) ** (gamma - 1.0)
    s = math.sqrt(1.0 - rho * rho)
    return theta / 2.0 * (1.0 - rho * rho), theta * phi / 2.0, rho, -rho / phi, s / phi


def _fit_slice(k: np.ndarray, w: np.ndarray, weight: np.ndarray, expiry: float) -> SVISlice:
    """Least-squares raw SVI fit of one expiry: a grid of (m, sigma) with the linear
    parameters solved exactly (Zeliade's quasi-explicit step), then a bounded polish."""
    from scipy.optimize import least_squares

    sw = np.sqrt(weight)
    best = (np.inf, None)
    span = max(float(k.max() - k.min()), 1e-3)
    for m in np.linspace(k.min(), k.max(), 9):
        for s in span * np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8]):
            y = (k - m) / s
            X = np.column_stack([np.ones_like(y), y, np.sqrt(y * y + 1.0)])
            coef, *_ = np.linalg.lstsq(X * sw[:, None], w * sw, rcond=None)
            a, d, c = coef
            if c <= 0.0 or abs(d) >= c:
                continue
            sse = float(np.sum(weight * (X @ coef - w) ** 2))
            if sse < best[0]:
                best = (sse, np.array([a, c / s, d / c, m, s]))
    x0 = best[1] if best[1] is not None else np.array([w.min(), 0.1, 0.0, 0.0, 0.1])
    x0[2] = np.clip(x0[2], -0.99, 0.99)
    lo = [-np.inf, 0.0, -0.999, k.min() - span, 1e-4]
    hi = [np.inf, np.inf, 0.999, k.max() + span, 10.0 * span + 1.0]
    x0 = np.clip(x0, np.array(lo) + 1e-12, np.array(hi) - 1e-12)

    def resid(p):
        return sw * (_svi(k, *p)[0] - w)

    p = least_squares(resid, x0, bounds=(lo, hi), xtol=1e-15, ftol=1e-15, gtol=1e-15,
                      max_nfev=5000).x
    a, b, rho, m, s = (float(v) for v in p)
    a = max(a, -b * s * math.sqrt(1.0 - rho * rho))
    return SVISlice(expiry, a, b, rho, m, s)


# ----------------------------------------------------------------------------- surface
@dataclass(frozen=True)
class ArbitrageViolation:
    """One grid point where the surface admits static arbitrage.

    ``kind`` is ``"butterfly"`` (``value`` = Gatheral's ``g(k) < 0``) or ``"calendar"``
    (``value`` = ``w(k, T2) - w(k, T1) < 0`` with ``expiry`` = ``T2``)."""

    kind: str
    expiry: float
    k: float
    value: float


class VolSurface:
    """Implied volatility surface of one underlying (see the module notes).

    Build with :meth:`flat`, :meth:`ssvi`, :meth:`from_slices` or :meth:`from_chain`.
    """

    def __init__(self, kind: str, params: Any) -> None:
        if kind not in ("flat", "ssvi", "svi"):
            raise ValueError(f"kind must be 'flat', 'ssvi' or 'svi', got {kind!r}")
        self.kind = kind
        self._p = params

    def __repr__(self) -> str:
        if self.kind == "flat":
            return f"VolSurface.flat({self._p!r})"
        if self.kind == "ssvi":
            return "VolSurface.ssvi(" + ", ".join(f"{k}={v!r}" for k, v in self._p.items()) + ")"
        return f"VolSurface(<{len(self._p)} SVI slices, T={[s.expiry for s in self._p]}>)"

    # -- constructors
    @classmethod
    def flat(cls, level: float) -> VolSurface:
        """One implied vol ``level`` (> 0) for every strike and expiry."""
        return cls("flat", check_real("level", level, low=0.0, low_open=True))

    @classmethod
    def ssvi(cls, level: float, *, rho: float = 0.0, eta: float = 0.5, gamma: float = 0.5,
             term_slope: float = 0.0, t_ref: float = T_REF) -> VolSurface:
        """SSVI surface from a level plus skew, curvature and term parameters.

        Parameters
        ----------
        level : float
            ATM implied vol at ``t_ref`` (> 0), e.g. DVOL / 100.
        rho : float, default 0.0
            Skew, in (-1, 1): negative puts a put skew (crypto: mostly slightly negative).
        eta, gamma : float, default 0.5, 0.5
            Curvature of the power law :math:`\\varphi`; ``eta > 0``, ``0 < gamma <= 0.5``
            and ``eta (1 + |rho|) <= 2`` (no butterfly arbitrage).
        term_slope : float, default 0.0
            :math:`\\beta`: ATM vol :math:`\\propto (T / t_{ref})^\\beta`, ``>= -0.5``
            (no calendar arbitrage); negative is an inverted term structure.
        t_ref : float
            Reference expiry of ``level`` in years (30 days).
        """
        p = dict(level=check_real("level", level, low=0.0, low_open=True),
                 rho=check_real("rho", rho, low=-1.0, high=1.0, low_open=True, high_open=True),
                 eta=check_real("eta", eta, low=0.0, low_open=True),
                 gamma=check_real("gamma", gamma, low=0.0, high=0.5, low_open=True),
                 term_slope=check_real("term_slope", term_slope, low=-0.5),
                 t_ref=check_real("t_ref", t_ref, low=0.0, low_open=True))
        if p["eta"] * (1.0 + abs(p["rho"])) > 2.0:
            raise ValueError(f"eta (1 + |rho|) must be <= 2 (no butterfly arbitrage), got "
                             f"eta={eta!r}, rho={rho!r}")
        return cls("ssvi", p)

    @classmethod
    def from_slices(cls, slices: Sequence[SVISlice]) -> VolSurface:
        """Surface from raw SVI slices (distinct expiries; sorted here)."""
        sl = sorted(slices, key=lambda s: s.expiry)
        if not sl or not all(isinstance(s, SVISlice) for s in sl):
            raise ValueError("slices must be a non-empty sequence of SVISlice")
        t = [s.expiry for s in sl]
        if len(set(t)) != len(t):
            raise ValueError(f"slices must have distinct expiries, got {t}")
        return cls("svi", tuple(sl))

    @classmethod
    def from_chain(cls, chain: pd.DataFrame | str | Path, spot: float, *, rate: float = 0.0,
                   min_points: int = 5) -> VolSurface:
        """Fit raw SVI per expiry to an option chain.

        Parameters
        ----------
        chain : DataFrame or path to CSV / Parquet
            Columns ``expiry`` (years), ``strike`` (USD) and either ``implied_vol`` (decimal)
            or ``price`` (USD per unit) with ``option_type`` (``call`` / ``put``); an
            optional ``weight`` column weights the squared total-variance errors.
        spot : float
            Underlying price the chain was quoted against.
        rate : float
            USD rate (the forward is ``spot e^{rate T}``).
        min_points : int
            Quotes needed per expiry (>= 5, the SVI parameter count).
        """
        df = _read_chain(chain)
        s = check_real("spot", spot, low=0.0, low_open=True)
        r = check_real("rate", rate, low=-1.0, high=1.0)
        for col in ("expiry", "strike"):
            if col not in df.columns:
                raise ValueError(f"chain must have a {col!r} column; columns: {list(df.columns)}")
        t = df["expiry"].to_numpy(float)
        kk = df["strike"].to_numpy(float)
        if np.any(~np.isfinite(t)) or np.any(t <= 0.0):
            raise ValueError(f"chain expiry must be finite years > 0, got {t[~(t > 0)][:3]}")
        if np.any(~np.isfinite(kk)) or np.any(kk <= 0.0):
            raise ValueError("chain strike must be finite and > 0")
        if "implied_vol" in df.columns:
            iv = df["implied_vol"].to_numpy(float)
        elif "price" in df.columns and "option_type" in df.columns:
            iv = _implied_vol(s, kk, t, r, df["price"].to_numpy(float),
                              df["option_type"].astype(str).str.lower().to_numpy() == "call")
        else:
            raise ValueError("chain needs an 'implied_vol' column, or 'price' and "
                             "'option_type'")
        ok = np.isfinite(iv) & (iv > 0.0)
        wt = df["weight"].to_numpy(float) if "weight" in df.columns else np.ones(len(df))
        k = np.log(kk / (s * np.exp(r * t)))
        slices = []
        for te in np.unique(t):
            sel = (t == te) & ok
            if sel.sum() < max(int(min_points), 5):
                raise ValueError(f"expiry {te:g} has {int(sel.sum())} usable quotes; SVI needs "
                                 f">= {max(int(min_points), 5)}")
            slices.append(_fit_slice(k[sel], iv[sel] ** 2 * te, wt[sel], float(te)))
        return cls.from_slices(slices)

    # -- evaluation
    @property
    def expiries(self) -> tuple[float, ...]:
        """Listed expiries (SVI slices) or a default check grid (flat, SSVI)."""
        if self.kind == "svi":
            return tuple(s.expiry for s in self._p)
        return tuple(d / 365.0 for d in (1, 7, 14, 30, 60, 90, 180, 365, 730))

    def total_variance(self, k: Any, expiry: Any, *, derivatives: bool = False):
        """Total implied variance ``w(k, T)`` (and ``dw/dk``, ``d2w/dk2`` if asked)."""
        k, t = np.broadcast_arrays(np.asarray(k, float), np.asarray(expiry, float))
        if self.kind == "flat":
            w = self._p**2 * t + 0.0 * k
            out = (w, np.zeros_like(w), np.zeros_like(w))
        elif self.kind == "ssvi":
            out = self._ssvi_w(k, t)
        else:
            out = self._slices_w(k, t)
        return out if derivatives else out[0]

    def _ssvi_w(self, k, t):
        p = self._p
        theta = p["level"] ** 2 * p["t_ref"] * (t / p["t_ref"]) ** (1.0 + 2.0 * p["term_slope"])
        theta = np.maximum(theta, 1e-300)
        phi = p["eta"] * theta ** (-p["gamma"]) * (1.0 + theta) ** (p["gamma"] - 1.0)
        rho = p["rho"]
        s = 1.0 - rho * rho
        a, b, m, sig = theta / 2.0 * s, theta * phi / 2.0, -rho / phi, np.sqrt(s) / phi
        return _svi(k, a, b, rho, m, sig)

    def _slices_w(self, k, t):
        sl = self._p
        te = np.array([s.expiry for s in sl])
        i = np.clip(np.searchsorted(te, t, side="right") - 1, 0, len(te) - 1)
        j = np.clip(i + 1, 0, len(te) - 1)
        par = np.array([s.params() for s in sl])
        wi = _svi(k, *par[i].T)
        wj = _svi(k, *par[j].T)
        ti, tj = te[i], te[j]
        ext = (t < te[0]) | (t >= te[-1])
        lam = np.where(ext, 0.0, (t - ti) / np.where(tj > ti, tj - ti, 1.0))
        return tuple(np.where(ext, a * (t / ti), (1.0 - lam) * a + lam * b)
                     for a, b in zip(wi, wj, strict=True))

    def iv(self, strike: Any, expiry: Any, spot: Any, rate: float = 0.0) -> np.ndarray:
        """Implied vol of strikes ``strike`` (USD) expiring in ``expiry`` years, with the
        underlying at ``spot``; vectorised (arrays broadcast). Expiries below one day are
        evaluated at one day."""
        kk, t, s = np.broadcast_arrays(*(np.asarray(x, float) for x in (strike, expiry, spot)))
        if self.kind == "flat":
            return np.full(kk.shape, self._p)
        t = np.maximum(t, _T_MIN)
        k = np.log(kk / (s * np.exp(rate * t)))
        return np.sqrt(np.maximum(self.total_variance(k, t), 0.0) / t)

    def atm_vol(self, expiry: float = T_REF) -> float:
        """ATM-forward implied vol at ``expiry`` (30 days by default)."""
        if self.kind == "flat":
            return self._p
        t = max(float(expiry), _T_MIN)
        return float(np.sqrt(self.total_variance(0.0, t) / t))

    # -- arbitrage
    def check_arbitrage(self, k: Any = None, expiries: Any = None, *, tol: float = 1e-10,
                        shock: tuple[float, float, float] | None = None
                        ) -> list[ArbitrageViolation]:
        """Static-arbitrage violations on a grid (empty list: none found).

        Parameters
        ----------
        k : array_like, optional
            Log-moneyness grid; default 401 points on [-1.5, 1.5].
        expiries : array_like, optional
            Expiries in years; default the listed expiries plus midpoints between them
            (interpolated slices are checked too).
        tol : float
            Tolerance below zero of ``g`` and of the calendar differences.
        shock : (level, skew, term), optional
            Check the surface as a scenario moves it (module notes: vols x ``level x
            exp(skew x + term y)``, rate 0), with exact derivatives of the shock factor.
        """
        kg = np.linspace(-1.5, 1.5, 401) if k is None else np.asarray(k, float)
        if expiries is None:
            te = np.array(self.expiries)
            mids = 0.5 * (te[1:] + te[:-1])
            expiries = np.sort(np.concatenate([te, mids]))
        tg = np.sort(np.asarray(expiries, float))
        out = []
        prev = None
        for t in tg:
            w, w1, w2 = self.total_variance(kg, t, derivatives=True)
            if shock is not None:
                w, w1, w2 = _shock_w(kg, float(t), w, w1, w2, shock)
            with np.errstate(divide="ignore", invalid="ignore"):
                g = (1.0 - kg * w1 / (2.0 * w)) ** 2 - w1**2 / 4.0 * (1.0 / w + 0.25) + w2 / 2.0
            g = np.where(w > 0.0, g, -np.inf)
            for i in np.flatnonzero(g < -tol):
                out.append(ArbitrageViolation("butterfly", float(t), float(kg[i]), float(g[i])))
            if prev is not None:
                d = w - prev
                for i in np.flatnonzero(d < -tol):
                    out.append(ArbitrageViolation("calendar", float(t), float(kg[i]),
                                                  float(d[i])))
            prev = w
        return out


def _shock_w(k, t, w, w1, w2, shock):
    """Total variance and its k-derivatives times the squared shock factor ``f``."""
    lev, sk, tm = (float(x) for x in shock)
    tc = min(max(t, _T_MIN), _T_MAX)
    c, rt = SKEW_CLIP, math.sqrt(tc)
    th = np.tanh(k / (c * rt))
    sech2 = 1.0 - th * th
    x, x1, x2 = c * th, sech2 / rt, -2.0 * sech2 * th / (c * tc)
    f = (lev * np.exp(sk * x + tm * math.log(tc / T_REF))) ** 2
    f1 = f * 2.0 * sk * x1
    f2 = f * ((2.0 * sk * x1) ** 2 + 2.0 * sk * x2)
    return w * f, w1 * f + w * f1, w2 * f + 2.0 * w1 * f1 + w * f2


def _read_chain(chain: Any) -> pd.DataFrame:
    if isinstance(chain, pd.DataFrame):
        return chain
    p = Path(chain)
    if not p.is_file():
        raise FileNotFoundError(f"chain file {str(p)!r} not found")
    return pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)


def _implied_vol(s, k, t, r, price, is_call) -> np.ndarray:
    """Black-76 implied vols by vectorised bisection (NaN outside the no-arbitrage bounds)."""
    from scipy.special import ndtr

    phi = np.where(is_call, 1.0, -1.0)
    df_ = np.exp(-r * t)
    fwd = s * np.exp(r * t)

    def bs(v):
        sd = v * np.sqrt(t)
        d1 = np.log(fwd / k) / sd + 0.5 * sd
        return df_ * phi * (fwd * ndtr(phi * d1) - k * ndtr(phi * (d1 - sd)))

    lo, hi = np.full(price.shape, 1e-4), np.full(price.shape, 10.0)
    ok = (price > bs(lo)) & (price < bs(hi))
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        up = bs(mid) < price
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return np.where(ok, 0.5 * (lo + hi), np.nan)


# ----------------------------------------------------------------------------- shocks
def shock_loadings(strike: Any, expiry: Any, spot: Any, rate: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Skew and term loadings of options (module notes): ``2 tanh(k / (2 sqrt(T)))`` and
    ``log(T / T_REF)``, ``T`` clipped to [1 day, 2 years], ``k = log(K / (S e^{rT}))``."""
    kk, t, s = np.broadcast_arrays(*(np.asarray(x, float) for x in (strike, expiry, spot)))
    t = np.clip(t, _T_MIN, _T_MAX)
    k = np.log(kk / (s * np.exp(rate * t)))
    return SKEW_CLIP * np.tanh(k / (SKEW_CLIP * np.sqrt(t))), np.log(t / T_REF)


def shocked_vol(vol: Any, level: Any, skew: Any, term: Any, skew_loading: Any,
                term_loading: Any) -> np.ndarray:
    """``vol x level x exp(skew x skew_loading + term x term_loading)`` (the revaluation
    kernel's rule, in numpy; for checks and plots)."""
    return (np.asarray(vol, float) * level) * np.exp(np.asarray(skew) * skew_loading
                                                     + np.asarray(term) * term_loading)


# ----------------------------------------------------------------------------- DVOL
DVOL_FILE = "btc_dvol_daily_2021_2026.csv"
SPOT_FILE = "btc_usd_daily.csv"


@dataclass(frozen=True)
class DVOLDynamics:
    """Level dynamics measured on DVOL history (:func:`calibrate_dvol`).

    Attributes
    ----------
    vol_of_vol : float
        Annualised standard deviation of ``log DVOL`` changes over the horizon
        (``monte_carlo_scenarios(vol_of_vol=...)``).
    vol_price_corr : float
        Correlation of those changes with the log return of BTC over the same days
        (``vol_price_corr=...``).
    horizon_days : int
    n_obs : int
        Pairs of dates used (both ends observed; no filling).
    start, end : str
        First and last date of the pairs.
    level : float
        Last DVOL close as a decimal vol (a level for :meth:`VolSurface.ssvi`).
    """

    vol_of_vol: float
    vol_price_corr: float
    horizon_days: int
    n_obs: int
    start: str
    end: str
    level: float


def _data_folder(folder: str | Path | None) -> Path:
    from .history import shared_data_dir

    p = Path(folder) if folder is not None else shared_data_dir()
    if p is None or not (p / DVOL_FILE).is_file():
        raise FileNotFoundError(f"no {DVOL_FILE} in the shared data folder ({p})")
    return p


def dvol_history(folder: str | Path | None = None) -> pd.Series:
    """Deribit's BTC DVOL daily closes as decimal vols (0.6 is 60 %), indexed by date.

    The file's missing days are left out (not filled): see the data README.

    Raises
    ------
    FileNotFoundError
        No shared data folder or no DVOL file in it.
    """
    p = _data_folder(folder)
    dv = pd.read_csv(p / DVOL_FILE, parse_dates=["date"]).set_index("date")["dvol_close"]
    dv = dv[dv > 0].sort_index() / 100.0
    dv.name = "BTC"
    return dv


def calibrate_dvol(folder: str | Path | None = None, *, horizon_days: int = 1
                   ) -> DVOLDynamics:
    """Vol of vol and vol-price correlation of the level from Deribit's BTC DVOL.

    ``h``-day changes of ``log DVOL`` are taken only between dates that are both in the file
    (its missing days are arbitrary drops, see the data README, so nothing is filled); BTC
    log returns (daily close, UTC) over the same pairs of dates give the correlation.
    ``vol_of_vol = std(dlog DVOL) / sqrt(h / 365)``.

    Raises
    ------
    FileNotFoundError
        No shared data folder or no DVOL file in it.
    """
    h = int(horizon_days)
    if isinstance(horizon_days, bool) or h != horizon_days or h < 1:
        raise ValueError(f"horizon_days must be an int >= 1, got {horizon_days!r}")
    p = _data_folder(folder)
    dv = dvol_history(p)
    px = pd.read_csv(p / SPOT_FILE, parse_dates=["date"]).set_index("date")["close"]
    later = dv.index + pd.Timedelta(days=h)
    has = later.isin(dv.index) & dv.index.isin(px.index) & later.isin(px.index)
    t0, t1 = dv.index[has], later[has]
    dlv = np.log(dv.loc[t1].to_numpy() / dv.loc[t0].to_numpy())
    ret = np.log(px.loc[t1].to_numpy() / px.loc[t0].to_numpy())
    if dlv.size < 30:
        raise ValueError(f"only {dlv.size} DVOL pairs {h} days apart; need >= 30")
    return DVOLDynamics(float(dlv.std(ddof=1) / math.sqrt(h / 365.0)),
                        float(np.corrcoef(dlv, ret)[0, 1]), h, int(dlv.size),
                        str(t0.min().date()), str(t1.max().date()), float(dv.iloc[-1]))
