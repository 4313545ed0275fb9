"""Risk-based margin: Monte Carlo VaR / ES, historical and filtered historical simulation, and
the anti-procyclicality tools that wrap them.

All three scenario methods share one engine: build a
:class:`~marginlab.models.scenarios.ScenarioSet`, revalue the book on it and take every
account's VaR or ES (:func:`marginlab.models.portfolio.portfolio_risk`), so IM comes with its
Monte Carlo error bar and an Euler allocation to holdings.

* :class:`MonteCarloMargin`: scenarios from a market model (GBM, Merton, GARCH family, FHS)
  over the margin period of risk (MPOR). IM = max(VaR or ES at ``level``, 0).
* :class:`HistoricalMargin`: CCP-style historical simulation (as in SPAN 2, Eurex PRISMA,
  LCH): the scenarios are today's prices moved by the MPOR returns observed in a look-back
  window; with ``filtered=True`` each historical return is rescaled by the ratio of today's
  EWMA volatility to the volatility at its date (filtered historical simulation, Hull and
  White 1998).
* :class:`AntiProcyclical`: the EMIR RTS 153/2013 Art. 28 tools: (a) a buffer of at least
  25 % of the computed margin, which may be released in stress; (b) at least 25 % weight on
  stressed observations; (c) a floor from a 10-year look-back.

MM is ``mm_fraction`` x IM for every risk-based method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate.rng import normalize_seed

from .._validate import check_real
from ..market import GARCH, with_zero_drift
from ..move_cap import DEFAULT_MOVE_CAP, cap_scenarios, check_cap
from ..portfolio import account_equity, gross_notional, portfolio_risk
from ..scenarios import MarketState, ScenarioSet, monte_carlo_scenarios
from ..vol_surface import DEFAULT_SKEW_PRICE_CORR, DEFAULT_TERM_LEVEL_CORR
from .base import MarginResult

__all__ = ["MonteCarloMargin", "HistoricalMargin", "AntiProcyclical", "historical_scenarios"]


def _check_measure(measure: str) -> str:
    if measure not in ("es", "var"):
        raise ValueError(f"measure must be 'es' or 'var', got {measure!r}")
    return measure


def _result_from_scenarios(name: str, book: Any, market: MarketState, scenarios: ScenarioSet,
                           measure: str, level: float, mm_fraction: float) -> MarginResult:
    risk = portfolio_risk(book, market, scenarios, levels=(level,))
    m = getattr(risk, measure)[0]
    im = np.maximum(m, 0.0)
    alloc = getattr(risk, f"alloc_{measure}")[0]
    # Contributions sum to the measure; where the measure is floored at 0 so is IM.
    positive = m[risk.holding_account] > 0.0
    contrib = np.where(positive, alloc, 0.0)
    names = np.asarray(risk.row_names, dtype=object)
    allocation = pd.DataFrame({"account_id": risk.account_ids[risk.holding_account],
                               "holding": names[risk.holding_row],
                               "im_contribution": contrib})
    label = f"{measure.upper()} {level:.1%}"
    eq = account_equity(book, market)["margin_balance"].to_numpy()
    details = {"var": risk.var[0], "var_lo": risk.var_lo[0], "var_hi": risk.var_hi[0],
               "es": risk.es[0], "es_se": risk.es_se[0], "es_lo": risk.es_lo[0],
               "es_hi": risk.es_hi[0]}
    return MarginResult(name, book.account_ids, im, mm_fraction * im, eq,
                        np.full(book.n_accounts, label, dtype=object), allocation, details,
                        gross_notional(book, market))


@dataclass(frozen=True, eq=False)
class MonteCarloMargin:
    """IM = VaR or ES of the account's loss over the MPOR, from a market model.

    Parameters
    ----------
    model : GBM, MertonJump or GARCH
        Market model with one asset per entry of ``underlyings``.
    underlyings : sequence of str
        The model's assets, in order (e.g. ("BTC", "ETH")).
    measure : {"es", "var"}
        Risk measure; ES is the modern CCP standard.
    level : float
        Confidence level in (0.5, 1), e.g. 0.99.
    horizon_days : float
        MPOR in days.
    n_scenarios : int
        Scenarios drawn (ignored when ``compute`` gets a ScenarioSet).
    seed : int, numpy.random.SeedSequence or numpy.random.Generator
        Seed of the scenarios. A ``Generator`` is drawn from once, at construction
        (:func:`~marginlab.simulate.rng.normalize_seed`), so every ``compute`` (the book and
        :func:`~marginlab.models.compare.compare`'s isolated book) sees the same scenarios.
    mm_fraction : float
        MM = mm_fraction x IM, in (0, 1].
    vol_of_vol, vol_price_corr : float
        Implied-vol dynamics of the scenarios (see ``monte_carlo_scenarios``).
    name : str
        Label in tables and plots.
    zero_drift : bool, default True
        Simulate with ``mu = 0`` (:func:`~marginlab.models.market.with_zero_drift`): no
        margin credit for a fitted drift. False keeps the model's drift.
    move_cap : float or None, default 1.0
        Cap on each underlying's log move over the MPOR (:mod:`marginlab.models.move_cap`):
        scenarios beyond it are clipped to it, so a long's loss is at most
        :math:`1 - e^{-c}` and a short's :math:`e^{c} - 1` of notional and the ES is finite
        and seed-stable under any innovation law. Calibrate it from history with
        :func:`~marginlab.models.move_cap.move_cap_from_history`; None: no cap. It applies
        to shared scenario sets passed to ``compute`` too.
    sampling : {"plain", "qmc", "mixture", "shift"}, default "plain"
        Scenario design (``monte_carlo_scenarios``): randomised QMC (error bars from the
        spread of ``randomizations`` scramblings), defensive-mixture importance sampling, or
        the shift mixture (normals shifted along each asset's shock direction; weighted
        scenarios); GBM and MertonJump only.
    randomizations : int, default 16
        ``sampling="qmc"``: independent randomisations (must divide ``n_scenarios``).
    skew_vol, skew_price_corr, term_vol, term_level_corr : float
        Skew and term-structure shocks of the implied-vol surfaces (``monte_carlo_scenarios``,
        :mod:`marginlab.models.vol_surface`); ``skew_vol = term_vol = 0`` (default): none.
        Documented defaults to switch them on: 0.8, 0.5, 0.25, -0.6.
    basis_vol, basis_price_corr : float
        Futures basis factor (``monte_carlo_scenarios``, :mod:`marginlab.models.basis`):
        annualised volatility of the 30-day-tenor basis move and its correlation with the
        price's return; ``basis_vol = 0`` (default): futures move one for one with spot.
        Measured for BTC (2-day MPOR): :data:`~marginlab.models.basis.BTC_BASIS_VOL` = 0.17.

    Raises
    ------
    ValueError
        For a :class:`~marginlab.models.GARCH` without a fitted or filtered ``sigma2_0``
        (``has_state`` False): it would silently start from the unconditional variance.

    Notes
    -----
    ``details`` carries the Monte Carlo error bar: ``es_se`` (asymptotic standard error of
    the ES estimator), ``es_lo``/``es_hi`` and the distribution-free VaR interval
    ``var_lo``/``var_hi``.
    """

    model: Any
    underlyings: Sequence[str]
    measure: str = "es"
    level: float = 0.99
    horizon_days: float = 2.0
    n_scenarios: int = 10_000
    seed: Any = 0
    mm_fraction: float = 0.5
    vol_of_vol: float = 0.0
    vol_price_corr: float = -0.5
    name: str = "MC ES"
    zero_drift: bool = True
    move_cap: float | None = DEFAULT_MOVE_CAP
    sampling: str = "plain"
    randomizations: int = 16
    skew_vol: float = 0.0
    skew_price_corr: float = DEFAULT_SKEW_PRICE_CORR
    term_vol: float = 0.0
    term_level_corr: float = DEFAULT_TERM_LEVEL_CORR
    basis_vol: float = 0.0
    basis_price_corr: float = 0.0
    uses_shared_scenarios = True  # compare() and the batch runner pass a shared ScenarioSet

    def __post_init__(self) -> None:
        object.__setattr__(self, "underlyings", tuple(str(u).upper() for u in self.underlyings))
        _check_measure(self.measure)
        check_real("level", self.level, low=0.5, high=1.0, low_open=True, high_open=True)
        check_real("horizon_days", self.horizon_days, low=0.0, low_open=True)
        check_real("mm_fraction", self.mm_fraction, low=0.0, high=1.0, low_open=True)
        if not isinstance(self.n_scenarios, int) or self.n_scenarios < 1:
            raise ValueError(f"n_scenarios must be an int >= 1, got {self.n_scenarios!r}")
        object.__setattr__(self, "seed", normalize_seed(self.seed))
        if getattr(self.model, "n_assets", None) != len(self.underlyings):
            raise ValueError(f"model has {getattr(self.model, 'n_assets', '?')} assets but "
                             f"underlyings has {len(self.underlyings)}")
        if not isinstance(self.zero_drift, (bool, np.bool_)):
            raise TypeError(f"zero_drift must be a bool, got {self.zero_drift!r}")
        object.__setattr__(self, "move_cap", check_cap("move_cap", self.move_cap))
        check_real("basis_vol", self.basis_vol, low=0.0, high=10.0)
        check_real("basis_price_corr", self.basis_price_corr, low=-1.0, high=1.0)
        if isinstance(self.model, GARCH) and not self.model.has_state:
            raise ValueError(
                "the GARCH model has no conditional-variance state (sigma2_0 was not given, "
                "so it would start from the unconditional variance, which for a "
                "near-integrated fit can be several times today's): use the model of a fit "
                "(fit_garch(history).model or fit_fhs(history).model, whose sigma2_0 is the "
                "forecast after the last return), filter the history with the parameters, or "
                "pass sigma2_0= explicitly")

    def scenario_model(self) -> Any:
        """The model the scenarios are drawn from (zero drift unless ``zero_drift=False``)."""
        return with_zero_drift(self.model) if self.zero_drift else self.model

    def scenarios(self, market: MarketState) -> ScenarioSet:
        """The scenario set this method draws for ``market`` (drift and cap applied)."""
        sc = monte_carlo_scenarios(self.scenario_model(), market, self.underlyings,
                                   horizon_days=self.horizon_days,
                                   n_scenarios=self.n_scenarios, seed=self.seed,
                                   vol_of_vol=self.vol_of_vol,
                                   vol_price_corr=self.vol_price_corr,
                                   sampling=self.sampling, randomizations=self.randomizations,
                                   skew_vol=self.skew_vol, skew_price_corr=self.skew_price_corr,
                                   term_vol=self.term_vol,
                                   term_level_corr=self.term_level_corr,
                                   basis_vol=self.basis_vol,
                                   basis_price_corr=self.basis_price_corr)
        return cap_scenarios(sc, market.prices(sc.underlyings), self.move_cap)

    def compute(self, book: Any, market: MarketState, *,
                scenarios: ScenarioSet | None = None) -> MarginResult:
        """Margin of every account; ``scenarios`` overrides the method's own draw (the move
        cap applies to it too)."""
        if scenarios is None:
            sc = self.scenarios(market)
        else:
            sc = cap_scenarios(scenarios, market.prices(scenarios.underlyings), self.move_cap)
        return _result_from_scenarios(self.name, book, market, sc, self.measure, self.level,
                                      self.mm_fraction)


def _ewma_vol(returns: np.ndarray, lam: float) -> np.ndarray:
    """EWMA volatility path: sigma_t^2 = lam sigma_{t-1}^2 + (1 - lam) r_{t-1}^2, started at
    the sample variance of the first 30 returns; sigma_t is known at the START of day t."""
    n, k = returns.shape
    out = np.empty((n + 1, k))
    out[0] = np.var(returns[: min(30, n)], axis=0) + 1e-300
    for t in range(n):
        out[t + 1] = lam * out[t] + (1.0 - lam) * returns[t] ** 2
    return np.sqrt(out)


def historical_scenarios(prices: pd.DataFrame, market: MarketState, *, horizon_days: int = 2,
                         lookback_days: int | None = 365, filtered: bool = False,
                         ewma_lambda: float = 0.94, stressed_window: tuple[Any, Any] | None = None,
                         implied_vol: pd.DataFrame | None = None,
                         basis: pd.DataFrame | None = None,
                         funding: pd.DataFrame | None = None) -> ScenarioSet:
    """Scenarios from observed MPOR returns: today's prices x exp(h-day log return).

    Parameters
    ----------
    prices : pandas.DataFrame
        Daily closes, index sorted dates, one column per underlying (USD, > 0).
    market : MarketState
        Today's prices (the scenario base).
    horizon_days : int
        MPOR h: overlapping h-day log returns ``log(P_{t+h} / P_t)``.
    lookback_days : int or None
        Use the last ``lookback_days`` return dates (None: all).
    filtered : bool
        Filtered HS: each daily return is rescaled by sigma_now / sigma_t (EWMA with
        ``ewma_lambda``) before aggregation to h days.
    stressed_window : (start, end), optional
        Use only return dates inside this window (e.g. the stressed period for the
        anti-procyclicality weight), instead of the look-back.
    implied_vol : pandas.DataFrame, optional
        Daily implied-vol levels (any unit, > 0; e.g. DVOL from
        :func:`~marginlab.models.vol_surface.dvol_history`), one column per underlying
        (a subset of ``prices``' columns). Each scenario's ``vol_shock`` is then the
        observed ratio ``IV(t + h) / IV(t)`` over the same days as its return (the implied-vol
        surface's level moves as it did), not filtered; the series is forward-filled onto the
        price dates and a ratio without data at either end is 1. Default: vol shocks of 1.
    basis : pandas.DataFrame, optional
        Daily moves of the futures basis factor (fraction of the price, 30-day tenor), one
        column per underlying (a subset of ``prices``' columns), indexed by date, e.g.
        ``pd.DataFrame({"BTC": daily_basis_moves(cme_perp_basis())})``
        (:mod:`marginlab.models.basis`). Each scenario's ``basis_shock`` is then the sum of
        the moves dated in the same days ``(t, t + h]`` as its return (not filtered); days
        without a move (weekends, holidays, rolls, before the series starts) count 0. The
        CME-based moves are taken at the 20:00 UTC CME close, the daily prices at their own
        close: the two windows are offset by those hours. Default: no basis moves.
    funding : pandas.DataFrame, optional
        Perpetual funding rates per settlement (decimal per interval, positive: longs pay),
        indexed by settlement time, one column per underlying (a subset of ``prices``'
        columns), e.g. :func:`marginlab.models.basis.funding_rates`. Each scenario's
        ``funding_shock`` is the funding-rate move over the same days as its return:
        ``sum_k (r_k - r_t)`` over the settlements dated (by UTC calendar day) in
        ``(t, t + h]``, ``r_t`` the last rate settled on or before day ``t``, so a perpetual
        pays its book ``funding_rate`` plus that move; 0 where the series has no rate at
        ``t``. Not filtered. Default: no funding moves.
    """
    if not isinstance(prices, pd.DataFrame) or prices.shape[1] == 0:
        raise TypeError("prices must be a DataFrame of closes, one column per underlying")
    p = prices.astype(float)
    if not p.index.is_monotonic_increasing:
        raise ValueError("prices must be sorted by date")
    arr = p.to_numpy()
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError("prices must be finite and > 0 (drop or fill gaps first)")
    if not isinstance(horizon_days, int) or horizon_days < 1:
        raise ValueError(f"horizon_days must be an int >= 1, got {horizon_days!r}")
    check_real("ewma_lambda", ewma_lambda, low=0.0, high=1.0, low_open=True, high_open=True)
    daily = np.diff(np.log(arr), axis=0)
    dates = p.index[1:]
    if filtered:
        sig = _ewma_vol(daily, ewma_lambda)
        daily = daily * (sig[-1] / sig[:-1])
    csum = np.vstack([np.zeros((1, daily.shape[1])), np.cumsum(daily, axis=0)])
    h = horizon_days
    hret = csum[h:] - csum[:-h]  # return over days (t, t+h], labelled by its last date
    hdates = dates[h - 1:]
    vratio = _vol_ratios(implied_vol, p, h)
    bmove = _basis_moves(basis, p, h)
    fmove = _funding_moves(funding, p, h)
    if stressed_window is not None:
        lo, hi = stressed_window
        keep = (hdates >= pd.Timestamp(lo)) & (hdates <= pd.Timestamp(hi))
        hret, vratio = hret[keep], vratio[keep]
        bmove = None if bmove is None else bmove[keep]
        fmove = None if fmove is None else fmove[keep]
    elif lookback_days is not None:
        if not isinstance(lookback_days, int) or lookback_days < 1:
            raise ValueError(f"lookback_days must be an int >= 1 or None, got {lookback_days!r}")
        hret, vratio = hret[-lookback_days:], vratio[-lookback_days:]
        bmove = None if bmove is None else bmove[-lookback_days:]
        fmove = None if fmove is None else fmove[-lookback_days:]
    if hret.shape[0] < 2:
        raise ValueError("fewer than 2 historical scenarios in the chosen window")
    und = tuple(str(c).upper() for c in p.columns)
    s0 = market.prices(und)
    return ScenarioSet(und, s0 * np.exp(hret), vratio, h / 365.0, basis_shock=bmove,
                       funding_shock=fmove)


def _history_columns(name: str, frame: Any, p: pd.DataFrame, what: str = ""):
    """Validate a per-underlying history table (``implied_vol``, ``basis``, ``funding``)
    against the price columns of ``p``; yield each column's name, its position in ``p`` and
    its values as floats without NaN, sorted by date."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a DataFrame{what} (one column per underlying), got "
                        f"{type(frame).__name__}")
    cols = [str(c).upper() for c in p.columns]
    for c in frame.columns:
        if str(c).upper() not in cols:
            raise ValueError(f"{name} column {c!r} is not a column of prices "
                             f"{list(p.columns)}")
        yield c, cols.index(str(c).upper()), frame[c].astype(float).dropna().sort_index()


def _at_dates(x: Any, dates: pd.Index) -> Any:
    """``x`` (Series or DataFrame indexed by date) as of each of ``dates``: the last value on
    or before it (NaN before the first)."""
    return x.reindex(x.index.union(dates)).ffill().reindex(dates)


def _funding_moves(funding: Any, p: pd.DataFrame, h: int) -> np.ndarray | None:
    """``sum_k (r_k - r_t)`` over the settlements of days ``(t, t + h]`` per h-day return row
    and column of ``p`` (None without ``funding``)."""
    if funding is None:
        return None
    out = np.zeros((p.shape[0] - h, p.shape[1]))
    days = pd.DatetimeIndex(p.index).normalize()
    for c, j, r in _history_columns("funding", funding, p, " of funding rates"):
        if np.any(~np.isfinite(r.to_numpy())) or np.any(np.abs(r.to_numpy()) > 1.0):
            raise ValueError(f"funding[{c!r}] must be finite rates in [-1, 1] per interval")
        day = pd.DatetimeIndex(r.index).normalize()
        g = pd.DataFrame({"s": r.to_numpy(), "n": 1.0, "last": r.to_numpy()}, index=day)
        g = g.groupby(level=0).agg({"s": "sum", "n": "sum", "last": "last"})
        g["s"], g["n"] = g["s"].cumsum(), g["n"].cumsum()
        at = _at_dates(g, days)
        cs, cn, last = (at[k].to_numpy() for k in ("s", "n", "last"))
        cs, cn = np.nan_to_num(cs), np.nan_to_num(cn)
        move = (cs[h:] - cs[:-h]) - (cn[h:] - cn[:-h]) * last[:-h]
        out[:, j] = np.where(np.isfinite(move), move, 0.0)
    return out


def _basis_moves(basis: Any, p: pd.DataFrame, h: int) -> np.ndarray | None:
    """Sum of the daily basis moves dated in ``(t, t + h]`` per h-day return row and column
    of ``p`` (None without ``basis``)."""
    if basis is None:
        return None
    out = np.zeros((p.shape[0] - h, p.shape[1]))
    for c, j, m in _history_columns("basis", basis, p, " of daily basis moves"):
        if np.any(~np.isfinite(m.to_numpy())):
            raise ValueError(f"basis[{c!r}] must be finite")
        if not m.index.is_unique:
            raise ValueError(f"basis[{c!r}] has repeated dates")
        # cumulative moves up to each price date; the move over (t, t + h] is a difference
        a = _at_dates(m.cumsum(), p.index).fillna(0.0).to_numpy()
        out[:, j] = a[h:] - a[:-h]
    return out


def _vol_ratios(implied_vol: Any, p: pd.DataFrame, h: int) -> np.ndarray:
    """``IV(t + h) / IV(t)`` per h-day return row and column of ``p`` (1 without data)."""
    out = np.ones((p.shape[0] - h, p.shape[1]))
    if implied_vol is None:
        return out
    for c, j, iv in _history_columns("implied_vol", implied_vol, p):
        if np.any(~np.isfinite(iv.to_numpy())) or np.any(iv.to_numpy() <= 0.0):
            raise ValueError(f"implied_vol[{c!r}] must be finite and > 0")
        v = _at_dates(iv, p.index).to_numpy()
        r = v[h:] / v[:-h]
        out[:, j] = np.where(np.isfinite(r), r, 1.0)
    return out


@dataclass(frozen=True, eq=False)
class HistoricalMargin:
    """Historical-simulation (HS) or filtered-HS margin, CCP style.

    Parameters
    ----------
    prices : pandas.DataFrame
        Daily closes, one column per underlying (see :func:`historical_scenarios`).
    measure : {"es", "var"}
    level : float
    horizon_days : int
        MPOR in days.
    lookback_days : int or None
        Look-back window of return dates.
    filtered : bool
        Filtered HS (EWMA volatility rescaling).
    ewma_lambda : float
        EWMA decay for filtering.
    mm_fraction : float
        MM = mm_fraction x IM.
    name : str
    implied_vol : pandas.DataFrame, optional
        Daily implied-vol levels per underlying (e.g. DVOL): the scenarios' vol shocks are
        their observed h-day ratios (see :func:`historical_scenarios`). Default: none.
    basis : pandas.DataFrame, optional
        Daily futures-basis moves per underlying (e.g. ``daily_basis_moves``): the scenarios'
        basis shocks are their sums over the same days (see :func:`historical_scenarios`).
        Default: none (futures move one for one with spot).
    funding : pandas.DataFrame, optional
        Perpetual funding rates per settlement and underlying (e.g. ``funding_rates``): the
        scenarios' funding moves over the same days (see :func:`historical_scenarios`).
    """

    prices: pd.DataFrame
    measure: str = "es"
    level: float = 0.99
    horizon_days: int = 2
    lookback_days: int | None = 365
    filtered: bool = False
    ewma_lambda: float = 0.94
    mm_fraction: float = 0.5
    name: str = "HS ES"
    implied_vol: pd.DataFrame | None = None
    basis: pd.DataFrame | None = None
    funding: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        _check_measure(self.measure)
        check_real("level", self.level, low=0.5, high=1.0, low_open=True, high_open=True)
        check_real("mm_fraction", self.mm_fraction, low=0.0, high=1.0, low_open=True)

    def scenarios(self, market: MarketState, *, stressed_window=None,
                  lookback_days: int | None | str = "default") -> ScenarioSet:
        """The historical scenario set for ``market``."""
        lb = self.lookback_days if lookback_days == "default" else lookback_days
        return historical_scenarios(self.prices, market, horizon_days=self.horizon_days,
                                    lookback_days=lb, filtered=self.filtered,
                                    ewma_lambda=self.ewma_lambda, stressed_window=stressed_window,
                                    implied_vol=self.implied_vol, basis=self.basis,
                                    funding=self.funding)

    def compute(self, book: Any, market: MarketState, *,
                scenarios: ScenarioSet | None = None) -> MarginResult:
        """Margin of every account; ``scenarios`` overrides the historical set."""
        sc = self.scenarios(market) if scenarios is None else scenarios
        return _result_from_scenarios(self.name, book, market, sc, self.measure, self.level,
                                      self.mm_fraction)


@dataclass(frozen=True, eq=False)
class AntiProcyclical:
    """EMIR RTS 153/2013 Art. 28 anti-procyclicality tools around a risk-based method.

    Parameters
    ----------
    method : MonteCarloMargin or HistoricalMargin (any MarginMethod)
        The base method.
    tool : {"buffer", "stressed_weight", "floor"}
        (a) ``buffer``: IM = (1 + buffer) x IM_base, the buffer (>= 25 %) released
        (IM = IM_base) when ``released`` is True (a period of stress);
        (b) ``stressed_weight``: IM = (1 - w) IM_base + w IM_stressed with w >= 25 %, where
        IM_stressed is the base method on stressed observations (``stressed`` method, e.g.
        the same HistoricalMargin on the stressed window or a MonteCarloMargin calibrated to
        stress);
        (c) ``floor``: IM = max(IM_base, IM_floor), IM_floor from the ``floor`` method (the
        base method on a 10-year look-back).
    buffer : float
        Buffer fraction, >= 0.25.
    released : bool
        Whether the buffer is currently released.
    stressed_weight : float
        Weight w of stressed observations, in [0.25, 1].
    stressed, floor : MarginMethod, optional
        The methods giving IM_stressed and IM_floor.
    name : str, optional
    """

    method: Any
    tool: str = "buffer"
    buffer: float = 0.25
    released: bool = False
    stressed_weight: float = 0.25
    stressed: Any = None
    floor: Any = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.tool not in ("buffer", "stressed_weight", "floor"):
            raise ValueError(f"tool must be 'buffer', 'stressed_weight' or 'floor', got "
                             f"{self.tool!r}")
        check_real("buffer", self.buffer, low=0.25, high=10.0)
        check_real("stressed_weight", self.stressed_weight, low=0.25, high=1.0)
        if self.tool == "stressed_weight" and self.stressed is None:
            raise ValueError("tool='stressed_weight' needs the stressed method (stressed=...)")
        if self.tool == "floor" and self.floor is None:
            raise ValueError("tool='floor' needs the look-back method (floor=...)")
        if not self.name:
            object.__setattr__(self, "name", f"{self.method.name} + APC {self.tool}")

    @property
    def uses_shared_scenarios(self) -> bool:
        """Whether the wrapped method takes shared Monte Carlo scenarios."""
        return bool(getattr(self.method, "uses_shared_scenarios", False))

    def compute(self, book: Any, market: MarketState, *,
                scenarios: ScenarioSet | None = None) -> MarginResult:
        """Margin with the anti-procyclicality tool applied."""
        base = self.method.compute(book, market, scenarios=scenarios)
        im = base.im
        driver = base.driver.copy()
        if self.tool == "buffer":
            factor = 1.0 if self.released else 1.0 + self.buffer
            im_new = im * factor
        elif self.tool == "stressed_weight":
            st = self.stressed.compute(book, market).im
            w = self.stressed_weight
            im_new = (1.0 - w) * im + w * st
        else:
            fl = self.floor.compute(book, market).im
            im_new = np.maximum(im, fl)
            driver = np.where(fl > im, "10y floor", driver).astype(object)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(im > 0, im_new / np.where(im > 0, im, 1.0), 0.0)
        alloc = base.allocation.copy()
        idx = pd.Index(base.account_ids).get_indexer(alloc["account_id"])
        alloc["im_contribution"] = alloc["im_contribution"].to_numpy() * scale[idx]
        mm_ratio = np.where(im > 0, base.mm / np.where(im > 0, im, 1.0), 0.0)
        return MarginResult(self.name, base.account_ids, im_new, mm_ratio * im_new,
                            base.margin_balance, driver, alloc,
                            {**base.details, "im_base": im}, base.gross_notional)
