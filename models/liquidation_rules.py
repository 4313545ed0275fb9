r"""The parameters of a liquidation cascade: :class:`LiquidationRules` and :class:`PriceImpact`.

:class:`LiquidationRules` holds an exchange's margin-call, liquidation and loss-sharing rules
(maintenance rates or bracket tables, liquidation trigger, close-out, fee, insurance fund,
grace periods, top-ups, option margin); :class:`PriceImpact` the price impact of liquidation
orders per underlying. Both validate their arguments and give the scalar / per-price-column
records of the kernels (:mod:`marginlab.simulate.cascade`). They are used by
:func:`~marginlab.models.liquidation.simulate_liquidations`, and importable from
:mod:`marginlab.models.liquidation` as well.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marginlab.simulate import cascade as K

from ._validate import check_real
from ._warn import warn as _warn
from .margin.brackets import BracketTable

__all__ = ["PriceImpact", "LiquidationRules"]


# =========================================================================== parameters
def _per_asset(name: str, value: Any, *, low: float, low_open: bool = False,
               allow_inf: bool = False) -> float | dict[str, float]:
    """A scalar, or a mapping asset -> scalar, range-checked (the error names the key)."""
    def one(label, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{label} must be a real number, got {type(v).__name__} {v!r}")
        x = float(v)
        if math.isnan(x) or (math.isinf(x) and not (allow_inf and x > 0)) or (
                x <= low if low_open else x < low):
            rng = f"{'>' if low_open else '>='} {low:g}" + (" (inf allowed)" if allow_inf else "")
            raise ValueError(f"{label} must be {rng}, got {x!r}")
        return x

    if isinstance(value, Mapping):
        return {str(k).upper(): one(f"{name}[{k!r}]", v) for k, v in value.items()}
    return one(name, value)


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, dict):
        return {k: v * factor for k, v in value.items()}
    return value * factor


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) != isinstance(b, dict):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b or math.isclose(a, b, rel_tol=1e-12)


@dataclass(frozen=True, eq=False)
class PriceImpact:
    r"""Price impact of liquidation orders, per underlying.

    Parameters
    ----------
    depth : float or mapping of str to float
        Market depth :math:`D` in USD (``inf`` for no impact), e.g. the notional resting
        within 2 % of the mid price.
    linear : float or mapping, default 0.0
        Coefficient :math:`\lambda` of the linear term (dimensionless).
    sqrt : float or mapping, default 0.0
        Coefficient :math:`\eta` of the square-root term (dimensionless).
    half_life : float or mapping, optional
        Deprecated: the half-life in years (``half_life_days / 365``). Given, it warns
        (``DeprecationWarning``) and sets ``half_life_days``; after construction the attribute
        holds the half-life in years, derived from ``half_life_days`` (what the kernels use).
    half_life_days : float or mapping, default inf
        Half-life of the impact in days (``inf``: permanent; ``0``: it lasts only the step
        in which it happened). The impact state decays by :math:`2^{-\Delta t / h}` per step.

    Notes
    -----
    Net liquidation flow :math:`X` (USD notional, sells negative) moves the log price by

    .. math:: g(X) = \operatorname{sign}(X)\,(\lambda x + \eta\sqrt{x}), \qquad x = |X| / D

    (a linear Kyle-type term and the square-root law of meta-order impact). Each order fills
    at the average impact over its slice of the book; the impact persists into later steps and
    decays exponentially. A mapping must name every underlying that has positions; other price
    columns (collateral-only coins) get no impact.

    Examples
    --------
    >>> PriceImpact(depth={"BTC": 3e8, "ETH": 1e8}, linear=0.02, sqrt=0.01,
    ...             half_life_days=2 / 24).depth["ETH"]
    100000000.0
    """

    depth: Any
    linear: Any = 0.0
    sqrt: Any = 0.0
    half_life: Any = None
    half_life_days: Any = None

    def __post_init__(self) -> None:
        sets = object.__setattr__
        sets(self, "depth", _per_asset("depth", self.depth, low=0.0, low_open=True,
                                       allow_inf=True))
        sets(self, "linear", _per_asset("linear", self.linear, low=0.0))
        sets(self, "sqrt", _per_asset("sqrt", self.sqrt, low=0.0))
        days = (None if self.half_life_days is None else
                _per_asset("half_life_days", self.half_life_days, low=0.0, allow_inf=True))
        if self.half_life is not None:
            years = _per_asset("half_life", self.half_life, low=0.0, allow_inf=True)
            from_years = _scaled(years, 365.0)
            if days is None:
                _warn("PriceImpact(half_life=...) in years is deprecated; pass "
                      f"half_life_days={from_years!r} (days)", DeprecationWarning)
                days = from_years
            elif not _same(days, from_years):  # dataclasses.replace passes both: must agree
                raise ValueError(f"half_life={self.half_life!r} (years) and half_life_days="
                                 f"{self.half_life_days!r} disagree; pass half_life_days only")
        days = math.inf if days is None else days
        sets(self, "half_life_days", days)
        sets(self, "half_life", _scaled(days, 1.0 / 365.0))

    @classmethod
    def none(cls) -> PriceImpact:
        """No impact: liquidation orders fill at the mark and move nothing."""
        return cls(depth=math.inf)

    def arrays(self, assets: tuple[str, ...], traded: set[str], dt: float) -> K.ImpactParams:
        """Per-price-column arrays for the kernels (``dt`` is the step in years)."""
        out = []
        for name in ("depth", "linear", "sqrt", "half_life"):
            value = getattr(self, name)
            col = []
            for a in assets:
                if isinstance(value, dict):
                    if a in value:
                        col.append(value[a])
                    elif a in traded:
                        raise ValueError(f"impact {name} has no entry for underlying {a!r}; "
                                         f"given for {sorted(value)}")
                    else:
                        col.append(math.inf if name in ("depth", "half_life") else 0.0)
                else:
                    col.append(value)
            out.append(np.array(col, dtype=np.float64))
        depth, lin, sq, half = out
        with np.errstate(divide="ignore"):
            decay = np.where(half == 0.0, 0.0, np.exp2(-dt / half))
        return K.ImpactParams(depth, lin, sq, decay)


@dataclass(frozen=True, eq=False)
class LiquidationRules:
    """An exchange's margin-call, liquidation and loss-sharing rules.

    Parameters
    ----------
    maintenance : mapping of str to float or BracketTable
        Maintenance requirement per instrument id or underlying (the instrument id wins): a
        flat maintenance margin rate in [0, 1) of the notional, or a bracket table (a linear
        table for linear contracts, an inverse one, ``inverse=True``, for coin-margined ones).
    liquidation_fraction : float, default 1.0
        Liquidation when margin balance < ``liquidation_fraction`` x maintenance margin, in
        (0, 1]. Margin calls are at 1.0 x maintenance margin.
    close_out : {"full", "partial"}, default "full"
        Close every position, or only the fraction that restores the margin balance to
        ``partial_target`` x maintenance margin at the mark (a second trigger in the same step
        closes everything). Partial needs the general path.
    partial_target : float, default 1.5
        Margin balance / maintenance margin after a partial liquidation, >= 1.
    liquidation_fee : float, default 0.005
        Fee on the liquidated notional, paid into the insurance fund when the account's
        remaining equity covers it (otherwise the remaining equity), in [0, 1).
    insurance_fund : float, default 0.0
        Initial insurance fund in USD (``inf`` allowed: never ADL).
    grace_period : int or None, default None
        Steps a called account has to recover above maintenance margin before it is
        liquidated (in addition to the liquidation trigger). ``None``: no such rule.
    topup_probability : float, default 0.0
        Probability that a called account deposits USD at once, bringing its margin balance to
        ``topup_target`` x maintenance margin (the call is then cured).
    topup_target : float, default 2.0
        Margin balance / maintenance margin after a top-up, >= 1.
    option_min_delta : float, default 0.1
        Options: a short option's maintenance margin is its instrument's maintenance rule on
        the delta-equivalent notional ``|q| S max(|delta|, option_min_delta)``, in [0, 1].
    option_remargin_every : int, default 1
        Options: steps between recomputations of the option margin (a risk-based or grid
        method run at an interval), >= 1; option values are revalued every step.

    Notes
    -----
    A margin call is issued the first time an account's margin balance falls below its
    maintenance margin; the call stands until cured (top-up, or recovery by the grace
    deadline). Grace periods, top-ups and partial liquidation need the general path.
    """

    maintenance: Mapping[str, Any]
    liquidation_fraction: float = 1.0
    close_out: str = "full"
    partial_target: float = 1.5
    liquidation_fee: float = 0.005
    insurance_fund: float = 0.0
    grace_period: int | None = None
    topup_probability: float = 0.0
    topup_target: float = 2.0
    option_min_delta: float = 0.1
    option_remargin_every: int = 1

    def __post_init__(self) -> None:
        sets = object.__setattr__
        if not isinstance(self.maintenance, Mapping) or not self.maintenance:
            raise TypeError("maintenance must be a non-empty mapping of instrument id or "
                            "underlying -> maintenance margin rate or BracketTable, got "
                            f"{self.maintenance!r}")
        m = {}
        for k, v in self.maintenance.items():
            if isinstance(v, BracketTable):
                m[str(k)] = v
            else:
                m[str(k)] = check_real(f"maintenance[{k!r}]", v, low=0.0, high=1.0,
                                       high_open=True)
        sets(self, "maintenance", m)
        sets(self, "liquidation_fraction",
             check_real("liquidation_fraction", self.liquidation_fraction, low=0.0, high=1.0,
                        low_open=True))
        if self.close_out not in ("full", "partial"):
            raise ValueError(f"close_out must be 'full' or 'partial', got {self.close_out!r}")
        sets(self, "partial_target", check_real("partial_target", self.partial_target, low=1.0))
        sets(self, "liquidation_fee", check_real("liquidation_fee", self.liquidation_fee,
                                                 low=0.0, high=1.0, high_open=True))
        fund = self.insurance_fund
        if isinstance(fund, (bool, np.bool_)) or not isinstance(fund, numbers.Real) or not (
                float(fund) >= 0.0):
            raise ValueError(f"insurance_fund must be >= 0 USD (inf allowed), got {fund!r}")
        sets(self, "insurance_fund", float(fund))
        g = self.grace_period
        if g is not None:
            if isinstance(g, (bool, np.bool_)) or not isinstance(g, numbers.Integral):
                raise TypeError(f"grace_period must be an int >= 0 (steps) or None, got {g!r}")
            if g < 0:
                raise ValueError(f"grace_period must be >= 0 steps or None, got {g}")
            sets(self, "grace_period", int(g))
        sets(self, "topup_probability", check_real("topup_probability", self.topup_probability,
                                                   low=0.0, high=1.0))
        sets(self, "topup_target", check_real("topup_target", self.topup_target, low=1.0))
        sets(self, "option_min_delta", check_real("option_min_delta", self.option_min_delta,
                                                  low=0.0, high=1.0))
        ev = self.option_remargin_every
        if isinstance(ev, (bool, np.bool_)) or not isinstance(ev, numbers.Integral) or ev < 1:
            raise ValueError(f"option_remargin_every must be an int >= 1 (steps), got {ev!r}")
        sets(self, "option_remargin_every", int(ev))

    @property
    def needs_general_path(self) -> bool:
        """Whether the rules use features only the general path has."""
        return (self.close_out == "partial" or self.grace_period is not None
                or self.topup_probability > 0.0)

    def kernel_rules(self) -> K.CascadeRules:
        """The scalar rules record of the kernels."""
        return K.CascadeRules(
            liq_fraction=self.liquidation_fraction, fee_rate=self.liquidation_fee,
            fund=self.insurance_fund, partial=self.close_out == "partial",
            partial_target=self.partial_target,
            grace=-1 if self.grace_period is None else self.grace_period,
            topup_prob=self.topup_probability, topup_target=self.topup_target)
