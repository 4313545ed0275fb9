"""Reference positions and margin methodologies of the rolling backtest (see
:mod:`marginlab.models.backtest_runner`)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from marginlab.simulate.pricing import black76_price

from ._validate import check_real
from .calibration import fit_fhs as _fit_fhs_calib
from .calibration import fit_garch, fit_gbm, fit_merton
from .margin.brackets import BracketTable

_DAYS_PER_YEAR = 365.0
_DAY = 1.0 / _DAYS_PER_YEAR

__all__ = ["Position", "POSITIONS", "BacktestMethod", "METHODS", "register_method",
           "exchange_method", "grid_method"]


# ========================================================================== positions
@dataclass(frozen=True)
class Position:
    r"""A single-underlying reference position, revalued on each scenario.

    Parameters
    ----------
    name : str
        Label in tables and plots.
    linear : float, default 0
        Units of the underlying held through a linear perpetual / future (P&L
        :math:`q (S_{t+h} - S_t)`, no funding).
    calls, puts : float, default 0
        Option contracts on one unit each (negative: sold), struck at ``moneyness x S_t``
        with ``tenor_days`` to expiry on the margin date, priced by Black-76 at zero rate.
    tenor_days : float, default 30
        Days to expiry when the position is struck (> the MPOR).
    moneyness : float, default 1
        Strike over spot (1: at the money).

    Notes
    -----
    Notional :math:`N_t = (|q_{lin}| + |q_{call}| + |q_{put}|) S_t` USD. Loss over the MPOR,
    positive = loss:

    .. math:: L = -\big[q_{lin}(S_{t+h} - S_t) + q_c (C_{t+h} - C_t) + q_p (P_{t+h} - P_t)\big]
    """

    name: str
    linear: float = 0.0
    calls: float = 0.0
    puts: float = 0.0
    tenor_days: float = 30.0
    moneyness: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        for f in ("linear", "calls", "puts"):
            object.__setattr__(self, f, check_real(f, getattr(self, f)))
        object.__setattr__(self, "tenor_days",
                           check_real("tenor_days", self.tenor_days, low=0.0, low_open=True))
        object.__setattr__(self, "moneyness",
                           check_real("moneyness", self.moneyness, low=0.0, low_open=True))
        if self.gross_units == 0.0:
            raise ValueError(f"position {self.name!r} holds nothing (linear, calls and puts "
                             "are all 0)")

    @property
    def gross_units(self) -> float:
        """:math:`|q_{lin}| + |q_{call}| + |q_{put}|`: notional per unit of spot."""
        return abs(self.linear) + abs(self.calls) + abs(self.puts)

    @property
    def has_options(self) -> bool:
        """Whether the position holds options."""
        return self.calls != 0.0 or self.puts != 0.0

    def losses(self, s0: Any, iv0: Any, s_h: Any, iv_h: Any, horizon_days: int) -> np.ndarray:
        """Loss (USD, positive = loss) from spot ``s0`` and implied vol ``iv0`` to ``s_h``
        and ``iv_h`` after ``horizon_days``; arrays broadcast."""
        s0 = np.asarray(s0, dtype=np.float64)
        s_h = np.asarray(s_h, dtype=np.float64)
        pnl = self.linear * (s_h - s0)
        legs = [(q, c) for q, c in ((self.calls, True), (self.puts, False)) if q != 0.0]
        if legs:
            if horizon_days >= self.tenor_days:
                raise ValueError(f"position {self.name!r}: tenor_days={self.tenor_days} must "
                                 f"exceed the MPOR horizon_days={horizon_days}")
            qty = np.array([q for q, _ in legs])
            is_call = np.array([c for _, c in legs])
            nd = max(s0.ndim, s_h.ndim, np.ndim(iv0), np.ndim(iv_h))
            k = self.moneyness * s0
            t0 = self.tenor_days * _DAY
            t1 = (self.tenor_days - horizon_days) * _DAY
            leg_shape = (len(legs),) + (1,) * nd
            # one pricing call per date for all legs (the kernels' fixed cost dominates)
            v0 = black76_price(s0, k, t0, iv0, 0.0, is_call=is_call.reshape(leg_shape))
            v1 = black76_price(s_h, k, t1, iv_h, 0.0, is_call=is_call.reshape(leg_shape))
            pnl = pnl + np.tensordot(qty, v1 - v0, axes=1)
        return -np.asarray(pnl, dtype=np.float64)


#: The reference positions by name.
POSITIONS: Mapping[str, Position] = MappingProxyType({
    "long": Position("long", linear=1.0),
    "short": Position("short", linear=-1.0),
    "short_straddle": Position("short_straddle", calls=-1.0, puts=-1.0),
    "long_call": Position("long_call", calls=1.0),
})


# ========================================================================== methods
@dataclass(frozen=True)
class BacktestMethod:
    """A margin methodology of the rolling backtest.

    Parameters
    ----------
    name : str
        Label in tables and plots (unique in a run).
    kind : {"model", "ewma", "historical", "exchange", "grid"}
        ``model``: Monte Carlo from a market model that ``fit`` returns; ``ewma``: GBM with
        the EWMA volatility updated every day (``params["lam"]``); ``historical``:
        historical simulation on the look-back; ``exchange``: notional x IMR of a bracket
        table (``params["table"]``, ``params["leverage"]``); ``grid``: worst loss on a grid
        of price moves x vol shocks (``params["price_range"]``, ``params["n_price"]``,
        ``params["vol_shocks"]``).
    fit : callable, optional
        For ``kind="model"``: ``fit(returns, step) -> model`` with ``returns`` the
        look-back's decimal per-step log returns (1-D) and ``step`` the data's step in years
        (1/365 for daily closes, 1/8760 hourly); the model is a
        :class:`~marginlab.models.GBM`, :class:`~marginlab.models.MertonJump` or
        :class:`~marginlab.models.GARCH` of one asset (or a fit result with ``.model``). A
        GARCH's ``sigma2_0`` must be the variance forecast after the last return.
    params : mapping, optional
        Kind-specific settings (see ``kind``).
    min_obs : int, default 2
        Fewest look-back returns the method needs.
    description : str
        One line for reports.
    cost : float, default 1
        Relative run time (GBM = 1), used only to start the slowest methods first when
        ``run_backtest(workers > 1)``.
    """

    name: str
    kind: str
    fit: Callable[[np.ndarray, float], Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    min_obs: int = 2
    description: str = ""
    cost: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "," in self.name:
            raise ValueError(f"name must be a non-empty str without commas, got {self.name!r}")
        kinds = ("model", "ewma", "historical", "exchange", "grid")
        if self.kind not in kinds:
            raise ValueError(f"kind must be one of {kinds}, got {self.kind!r}")
        if self.kind == "model" and not callable(self.fit):
            raise TypeError(f"method {self.name!r}: kind='model' needs a callable fit, got "
                            f"{self.fit!r}")
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "cost", check_real("cost", self.cost, low=0.0))


def _fit_gbm(r: np.ndarray, step: float) -> Any:
    return fit_gbm(r, step=step).model


def _fit_garch_normal(r: np.ndarray, step: float) -> Any:
    return fit_garch(r, dist="normal", gjr=False, step=step)


def _fit_garch_t(r: np.ndarray, step: float) -> Any:
    return fit_garch(r, dist="t", gjr=True, step=step)


def _fit_merton(r: np.ndarray, step: float) -> Any:
    return fit_merton(r, step=step).model


def _fit_fhs(r: np.ndarray, step: float) -> Any:
    return _fit_fhs_calib(r, dist="t", gjr=True, step=step)


def exchange_method(table: BracketTable | None = None, leverage: float | None = None, *,
                    name: str = "exchange") -> BacktestMethod:
    """Exchange initial margin: notional / min(leverage, bracket maximum).

    Parameters
    ----------
    table : BracketTable, optional
        Default :func:`~marginlab.models.margin.binance_btcusdt_2021` (loaded when the
        backtest runs).
    leverage : float, optional
        Chosen leverage (>= 1); None: the bracket's maximum (125x in the first BTCUSDT
        bracket, IMR 0.8 %).
    """
    if table is not None and not isinstance(table, BracketTable):
        raise TypeError(f"table must be a BracketTable, got {type(table).__name__}")
    if leverage is not None:
        leverage = check_real("leverage", leverage, low=1.0)
    return BacktestMethod(name, "exchange", params={"table": table, "leverage": leverage},
                          description="exchange IM: notional x IMR of the bracket table",
                          cost=0.01)


def grid_method(price_range: float = 0.15, n_price: int = 7,
                vol_shocks: Sequence[float] = (-0.3, 0.0, 0.3), *,
                name: str = "grid") -> BacktestMethod:
    """Scenario-grid margin: the worst loss over ``n_price`` price moves evenly spaced in
    ``[-price_range, +price_range]`` times the relative implied-vol shocks ``vol_shocks``.

    Parameters
    ----------
    price_range : float, default 0.15
        Largest relative price move, in (0, 1).
    n_price : int, default 7
        Number of price moves (>= 2; 7 gives steps of 5 % at the default range).
    vol_shocks : sequence of float, default (-0.3, 0, 0.3)
        Relative implied-vol shocks, each > -1.
    """
    price_range = check_real("price_range", price_range, low=0.0, high=1.0, low_open=True,
                             high_open=True)
    if isinstance(n_price, (bool, np.bool_)) or not isinstance(n_price, numbers.Integral) \
            or n_price < 2:
        raise ValueError(f"n_price must be an int >= 2, got {n_price!r}")
    shocks = tuple(check_real("vol_shocks", v, low=-1.0, low_open=True) for v in vol_shocks)
    if not shocks:
        raise ValueError("vol_shocks must hold at least one shock (0.0: none)")
    return BacktestMethod(name, "grid", params={"price_range": price_range,
                                                "n_price": int(n_price),
                                                "vol_shocks": shocks},
                          description=f"worst loss on +-{price_range:.0%} x "
                                      f"{len(shocks)} vol shocks", cost=0.01)


#: The registry of methodologies by name (see :func:`register_method`).
METHODS: dict[str, BacktestMethod] = {
    "gbm": BacktestMethod("gbm", "model", _fit_gbm,
                          description="GBM, look-back MLE volatility, zero drift"),
    "ewma": BacktestMethod("ewma", "ewma", params={"lam": 0.94},
                           description="GBM at the EWMA (0.94) volatility, updated daily"),
    "garch": BacktestMethod("garch", "model", _fit_garch_normal, min_obs=50,
                            description="GARCH(1,1), normal innovations", cost=3.0),
    "garch_t": BacktestMethod("garch_t", "model", _fit_garch_t, min_obs=50,
                              description="GJR-GARCH(1,1), Student-t innovations", cost=3.0),
    "merton": BacktestMethod("merton", "model", _fit_merton, min_obs=50,
                             description="Merton jump diffusion, zero drift", cost=30.0),
    "fhs": BacktestMethod("fhs", "model", _fit_fhs, min_obs=50,
                          description="filtered HS: GJR-GARCH-t filter, bootstrapped residuals",
                          cost=3.0),
    "hs": BacktestMethod("hs", "historical", cost=0.3,
                         description="historical simulation, overlapping h-day look-back paths"),
    "exchange": exchange_method(),
    "grid": grid_method(),
}


def register_method(method: BacktestMethod, *, overwrite: bool = False) -> BacktestMethod:
    """Add ``method`` to :data:`METHODS` under its name (``overwrite`` to replace one)."""
    if not isinstance(method, BacktestMethod):
        raise TypeError(f"method must be a BacktestMethod, got {type(method).__name__}")
    if method.name in METHODS and not overwrite:
        raise ValueError(f"a method named {method.name!r} is already registered; pass "
                         "overwrite=True to replace it")
    METHODS[method.name] = method
    return method

