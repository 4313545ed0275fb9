r"""Margin calls, liquidations and cascades over the margin period of risk.

:func:`simulate_liquidations` walks a book of linear and inverse perpetuals / futures along
intraday price paths (e.g. hourly for two days) from any market model, tracks every account's
margin balance against its maintenance requirement, and simulates what the exchange does when
accounts fail: margin calls, liquidation orders that move the price for everybody (the cascade
feedback), an insurance fund that pays bankruptcy losses and collects liquidation fees, and
auto-deleveraging (ADL) of opposite positions when the fund is exhausted. The rules, their
equations and the bookkeeping identity are in :mod:`marginlab.simulate.cascade`; this module
gives them meaning: book conversion, validation, result tables and plots.

Scope and simplifications (all documented on the functions):

* Instruments: ``linear_perp``, ``linear_future``, ``inverse_perp``, ``inverse_future``, and
  ``option`` / ``inverse_option`` (general path: revalued with Black-Scholes at every step at
  the market's implied vol, margined, settled at expiry, closed at model value on
  liquidation; see :mod:`marginlab.models.liquidation_options`). Spot holdings are not
  simulated (a ``ValueError`` names them); dated futures
  must expire after the horizon and are treated like perpetuals (no basis); funding payments
  over the horizon are ignored.
* Positions are netted per account and instrument (one-way mode); collateral in stablecoins
  counts 1 USD per unit, other coins are valued at their simulated mark price, each after its
  haircut for margin (and in full for equity and bankruptcy).
* Triggers compare the *margin balance* (collateral after haircuts plus unrealised P&L)
  with the maintenance margin; bankruptcy and bad debt use *equity* (collateral in full).
  A bankrupt account's remaining coins are taken at the mark (they are not sold into the
  market); a closed account that is not bankrupt settles its debts at the mark (a coin debt
  from inverse P&L bought back with USD, a USD debt paid with its coins), so it keeps no
  exposure it is no longer margined for. Accounts without positions are not simulated.
* Monitoring is discrete: the mark is checked once per step (and again after every round
  of liquidations within the step). Coarse steps miss crossings between them, which
  understates liquidations and overstates bankruptcies; the tests quantify the effect with
  the Broadie-Glasserman-Kou correction.
* Two engines: the **fast path** for books where every account holds one position with
  collateral in USD and/or that position's own coin (the usual isolated-style retail book),
  which walks sorted liquidation prices; and the **general path** (cross margin, several
  positions and collateral coins per account, partial liquidation, grace periods, top-ups),
  which re-checks every account in every round. ``method="auto"`` picks the fast path when
  the book and rules allow it; on such a book both give the same results.

Units: prices and amounts in USD (coins in units of the coin); the horizon and the impact's
half-life are given in days (``horizon_days``, ``half_life_days``; one hour is ``1 / 24``), as
everywhere else in the package; the years keywords ``horizon`` and ``half_life`` still work
with a ``DeprecationWarning``. Results keep ``horizon`` and ``dt`` in years; grace periods
are in steps.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate import cascade as K
from marginlab.simulate import es as risk_es
from marginlab.simulate import simulate_paths
from marginlab.simulate import var as risk_var
from marginlab.simulate.rng import normalize_seed

from . import liquidation_options as _lo
from ._summary import Summary, cascade_summary, short_repr
from ._validate import check_real
from ._warn import warn as _warn
from .book import INVERSE_TYPES, OPTION_TYPES, STABLECOINS, Book
from .margin.brackets import BracketTable
from .scenarios import MarketState

__all__ = [
    "PriceImpact",
    "LiquidationRules",
    "CascadeResult",
    "simulate_liquidations",
    "perp_book",
    "var_es",
]

_SIMULATED_TYPES = ("linear_perp", "linear_future", "inverse_perp", "inverse_future")
_HOURS_PER_YEAR = 365.0 * 24.0


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


# =========================================================================== risk measures
def var_es(losses: np.ndarray, level: float) -> tuple[float, float]:
    r"""Value-at-risk and expected shortfall of a sample of losses (positive is bad).

    VaR is the :math:`\lceil n\alpha \rceil`-th smallest loss; ES is the Acerbi-Tasche
    estimator, the mean of the worst :math:`w = n(1-\alpha)` losses with a fractional weight
    on the boundary order statistic (the estimators of :mod:`marginlab.simulate.risk`).

    Examples
    --------
    >>> var_es(np.arange(1.0, 101.0), 0.95)
    (95.0, 98.0)
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    n = x.size
    if n == 0:
        raise ValueError("losses must not be empty")
    a = check_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    if n * (1.0 - a) < 1.0 - 1e-9:
        # fewer than one tail scenario: both measures are the largest loss
        worst = float(x.max())
        return worst, worst
    return float(risk_var(x, a)), float(risk_es(x, a))


# =========================================================================== book -> arrays
@dataclass(frozen=True)
class _Converted:
    accounts: Any  # SingleAccounts or CrossAccounts
    tables: K.MarginTables
    assets: tuple[str, ...]
    traded: set[str]
    s0: np.ndarray
    keep: np.ndarray  # account rows of the book that are simulated
    method: str
    why_general: str
    options: Any = None  # K.OptionPositions of the kept accounts, or None


def _tables_for(book: Book, rules: LiquidationRules) -> tuple[K.MarginTables, np.ndarray]:
    inst = book.instruments
    by_und = {k.upper(): k for k in rules.maintenance}  # underlyings are upper case in books
    rows, tabs = [], {}
    for iid, und, typ in zip(inst["instrument_id"], inst["underlying"], inst["type"],
                             strict=True):
        key = iid if iid in rules.maintenance else by_und.get(str(und).upper())
        if key is None:
            rows.append(-1)
            continue
        spec = rules.maintenance[key]
        inverse = typ in INVERSE_TYPES or typ == "inverse_option"
        if isinstance(spec, BracketTable):
            if spec.inverse != inverse:
                raise ValueError(
                    f"maintenance[{key!r}] is a{'n inverse' if spec.inverse else ' linear'} "
                    f"bracket table but instrument {iid!r} is "
                    f"{'inverse' if inverse else 'linear'} ({typ})")
            ident = ("table", id(spec))
            value = (np.asarray(spec.maintenance_margin_rate, float),
                     np.asarray(spec.maintenance_amount, float))
        else:
            ident = ("rate", spec)
            value = (np.array([spec]), np.array([0.0]))
        if ident not in tabs:
            tabs[ident] = (len(tabs), value)
        rows.append(tabs[ident][0])
    n_tab = max(len(tabs), 1)
    width = max([v[1][0].size for v in tabs.values()], default=1)
    mmr = np.zeros((n_tab, width))
    cum = np.zeros((n_tab, width))
    nb = np.ones(n_tab, np.int64)
    for k, (m, c) in tabs.values():
        mmr[k, :m.size] = m
        cum[k, :c.size] = c
        nb[k] = m.size
    return K.MarginTables(mmr, cum, nb), np.array(rows, dtype=np.int64)


def _convert(book: Book, market: MarketState, rules: LiquidationRules, horizon: float,
             method: str) -> _Converted:
    inst = book.instruments
    types = inst["type"].to_numpy(str)
    bad = ~np.isin(types, _SIMULATED_TYPES + OPTION_TYPES)
    used = np.zeros(book.n_instruments, bool)
    used[np.unique(book.position_instrument)] = True
    if np.any(bad & used):
        k = int(np.flatnonzero(bad & used)[0])
        raise ValueError(
            f"instrument {inst['instrument_id'].iloc[k]!r} has type {str(types[k])!r}: the cascade "
            f"simulates {', '.join(_SIMULATED_TYPES + OPTION_TYPES)} only (spot holdings are "
            f"excluded; drop or hedge them out of the book first)")
    expiry = inst["expiry"].to_numpy(float)
    dated = used & np.isin(types, ("linear_future", "inverse_future")) & (expiry <= horizon)
    if np.any(dated):
        k = int(np.flatnonzero(dated)[0])
        raise ValueError(f"instrument {inst['instrument_id'].iloc[k]!r} expires at "
                         f"{expiry[k]:g} years, within the horizon {horizon:g}: dated futures "
                         f"must expire after it (they are simulated like perpetuals)")
    tables, inst_tab = _tables_for(book, rules)
    missing = used & (inst_tab < 0)
    if np.any(missing):
        k = int(np.flatnonzero(missing)[0])
        raise ValueError(f"rules.maintenance has no entry for instrument "
                         f"{inst['instrument_id'].iloc[k]!r} or its underlying "
                         f"{inst['underlying'].iloc[k]!r}")
    # price columns: traded underlyings and non-stable collateral coins
    unds = inst["underlying"].to_numpy(str)
    traded = {str(u).upper() for u in unds[used]}
    coins = {a.upper() for a in book.assets if a.upper() not in STABLECOINS}
    assets = tuple(sorted(traded | coins))
    col = {a: k for k, a in enumerate(assets)}
    s0 = market.prices(list(assets)) if assets else np.zeros(0)

    # positions netted per (account, instrument), one-way mode
    pos = book.positions
    pa, pi = book.position_account, book.position_instrument
    q_rows = pos["quantity"].to_numpy(float)
    e_rows = pos["entry_price"].to_numpy(float)
    inv_i = np.isin(types, INVERSE_TYPES)
    mult = np.where(inv_i, 1.0, inst["multiplier"].to_numpy(float))
    face = np.where(inv_i, inst["face_value"].to_numpy(float), 1.0)
    key = pa * book.n_instruments + pi
    uk, where = np.unique(key, return_inverse=True)
    qn = np.bincount(where, weights=q_rows * mult[pi])
    lin_cost = np.bincount(where, weights=q_rows * mult[pi] * e_rows)  # linear: sum q E
    inv_cost = np.bincount(where, weights=q_rows / e_rows)  # inverse: sum q / E
    acc_of, ins_of = uk // book.n_instruments, uk % book.n_instruments
    inv_of = inv_i[ins_of]
    inst_col = np.array([col.get(str(u).upper(), -1) for u in unds], dtype=np.int64)
    pos_asset_all = inst_col[ins_of]
    s0_of = s0[pos_asset_all] if uk.size else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = np.where(inv_of, qn / inv_cost, lin_cost / qn)
    ok = (qn != 0.0) & np.isfinite(ent) & (ent > 0.0)
    # netted rows whose average entry is undefined: entry = today's price, the difference
    # (a realised P&L) moves into the USD (linear) or coin (inverse) balance
    resid = np.where(ok, 0.0, np.where(inv_of, face[ins_of] * (inv_cost - qn / s0_of),
                                       qn * s0_of - lin_cost))
    ent = np.where(ok, ent, s0_of)
    prem_usd, prem_coin = _lo.option_premiums(book, ins_of, lin_cost)
    is_opt = np.isin(types[ins_of], OPTION_TYPES)
    resid = np.where(is_opt, 0.0, resid)
    live_opt = (qn != 0.0) & is_opt
    live = (qn != 0.0) & ~is_opt

    n_acc = book.n_accounts
    n_a = len(assets)
    usd = np.zeros(n_acc)
    usd_w = np.zeros(n_acc)
    bal = np.zeros((n_acc, n_a))
    bal_w = np.zeros((n_acc, n_a))
    coll = book.collateral
    if len(coll):
        ca = pd.Index(book.account_ids).get_indexer(coll["account_id"].astype(str))
        amt = coll["amount"].to_numpy(float)
        kept = amt * (1.0 - coll["haircut"].to_numpy(float))
        names = coll["asset"].astype(str).str.upper().to_numpy(dtype=object)
        stable = np.isin(names, list(STABLECOINS))
        np.add.at(usd, ca[stable], amt[stable])
        np.add.at(usd_w, ca[stable], kept[stable])
        cc = np.array([col[a] for a in names[~stable]], dtype=np.int64)
        np.add.at(bal, (ca[~stable], cc), amt[~stable])
        np.add.at(bal_w, (ca[~stable], cc), kept[~stable])
    lin_resid = np.where(inv_of, 0.0, resid) - prem_usd  # option premiums paid (received)
    oc = np.flatnonzero(prem_coin != 0.0)
    np.add.at(bal, (acc_of[oc], pos_asset_all[oc]), -prem_coin[oc])
    np.add.at(bal_w, (acc_of[oc], pos_asset_all[oc]), -prem_coin[oc])
    usd += np.bincount(acc_of, weights=lin_resid, minlength=n_acc)
    usd_w += np.bincount(acc_of, weights=lin_resid, minlength=n_acc)
    inv_resid = np.flatnonzero(inv_of & (resid != 0.0))
    np.add.at(bal, (acc_of[inv_resid], pos_asset_all[inv_resid]), resid[inv_resid])
    np.add.at(bal_w, (acc_of[inv_resid], pos_asset_all[inv_resid]), resid[inv_resid])
    with np.errstate(divide="ignore", invalid="ignore"):
        w_usd = np.where(usd > 0.0, usd_w / usd, 1.0)
        w_bal = np.where(bal > 0.0, bal_w / bal, 1.0)
    w_usd = np.clip(np.nan_to_num(w_usd, nan=1.0), 1e-12, 1.0)
    w_bal = np.clip(np.nan_to_num(w_bal, nan=1.0), 1e-12, 1.0)

    n_pos_acc = np.bincount(acc_of[live | live_opt], minlength=n_acc)
    keep = np.flatnonzero(n_pos_acc > 0)  # accounts without positions cannot be liquidated
    coins_held = (bal != 0.0)
    # fast-path eligibility: one position, coins only in that position's underlying
    why = ""
    if rules.needs_general_path:
        why = "the rules use partial liquidation, a grace period or top-ups"
    elif np.any(live_opt):
        why = (f"account {book.account_ids[acc_of[np.flatnonzero(live_opt)[0]]]!r} holds "
               "options (revalued along the paths by the general path)")
    elif np.any(n_pos_acc[keep] > 1):
        k = keep[int(np.flatnonzero(n_pos_acc[keep] > 1)[0])]
        why = f"account {book.account_ids[k]!r} holds {n_pos_acc[k]} positions"
    else:
        own = np.zeros((n_acc, n_a), bool)
        lr = np.flatnonzero(live)
        own[acc_of[lr], pos_asset_all[lr]] = True
        other = coins_held & ~own
        if np.any(other[keep]):
            k = keep[int(np.flatnonzero(other[keep].any(axis=1))[0])]
            why = (f"account {book.account_ids[k]!r} holds collateral in a coin other than "
                   "its position's underlying")
    if method == "auto":
        method = "general" if why else "fast"
    elif method == "fast" and why:
        raise ValueError(f"method='fast' needs one position per account with collateral in "
                         f"USD or that position's coin, and full close-out rules: {why}")
    lr = np.flatnonzero(live)
    order = np.argsort(acc_of[lr], kind="stable")
    lr = lr[order]
    remap = np.full(n_acc, -1, np.int64)
    remap[keep] = np.arange(keep.size)
    if not why:
        # exactly one live position per kept account, in account order
        r = lr
        a_idx = pos_asset_all[r]
        accounts = K.SingleAccounts(
            asset=a_idx, inverse=inv_of[r].astype(np.int64), q=qn[r], entry=ent[r],
            face=face[ins_of[r]], table=inst_tab[ins_of[r]], usd=usd[keep], w_usd=w_usd[keep],
            coin=bal[keep, a_idx], w_coin=w_bal[keep, a_idx])
    else:
        start = np.zeros(keep.size + 1, np.int64)
        np.cumsum(np.bincount(remap[acc_of[lr]], minlength=keep.size), out=start[1:])
        accounts = K.CrossAccounts(
            start=start, pos_asset=pos_asset_all[lr], pos_inverse=inv_of[lr].astype(np.int64),
            pos_q=qn[lr], pos_entry=ent[lr], pos_face=face[ins_of[lr]],
            pos_table=inst_tab[ins_of[lr]], usd=usd[keep], w_usd=w_usd[keep],
            bal=bal[keep].reshape(keep.size, n_a), w_bal=w_bal[keep].reshape(keep.size, n_a))
    options = None
    if np.any(live_opt):
        options = _lo.option_positions(book, market, np.flatnonzero(live_opt), qn,
                                       remap[acc_of], ins_of, inst_col, inst_tab)
    return _Converted(accounts, tables, assets, traded, s0, keep, method, why, options)


def _to_cross(acc: K.SingleAccounts, n_a: int, order: np.ndarray) -> K.CrossAccounts:
    """The general-path form of one-position accounts, numbered in ``order``."""
    n = order.size
    bal = np.zeros((n, n_a))
    w_bal = np.ones((n, n_a))
    a = np.asarray(acc.asset)[order]
    bal[np.arange(n), a] = np.asarray(acc.coin)[order]
    w_bal[np.arange(n), a] = np.asarray(acc.w_coin)[order]
    take = lambda x: np.asarray(x)[order]  # noqa: E731
    return K.CrossAccounts(np.arange(n + 1), a, take(acc.inverse), take(acc.q),
                           take(acc.entry), take(acc.face), take(acc.table), take(acc.usd),
                           take(acc.w_usd), bal, w_bal)


# =========================================================================== results
@dataclass(frozen=True, eq=False)
class CascadeResult:
    """Outcome of :func:`simulate_liquidations`: per account, per path, per price column.

    Attributes
    ----------
    account_ids : ndarray of str, shape (n_accounts,)
        Simulated accounts (those with positions), in book order.
    assets : tuple of str
        Price columns (traded underlyings, then collateral coins, sorted).
    s0 : ndarray, shape (n_assets,)
        Today's prices, USD.
    horizon, dt : float
        Horizon and step, years.
    n_steps, n_paths : int
    method : str
        ``"fast"`` or ``"general"``.
    rules : LiquidationRules
    raw : marginlab.simulate.cascade.CascadeArrays
        Kernel outputs (per-path fields ``PATH_FIELDS``, per-asset fields ``ASSET_FIELDS``).
    exo_min_log, exo_max_log : ndarray, shape (n_paths, n_assets)
        Extreme log moves ``log(S / S_0)`` of the exogenous paths (no feedback).
    exogenous : ndarray, shape (n_record, n_steps + 1, n_assets)
        The exogenous prices of the recorded paths (``raw.marks`` holds their marks).
    level_edges : ndarray
        Bin edges of ``log(fill / S_0)`` of :meth:`volume_by_level`.
    initial : pandas.DataFrame
        Per account at t = 0: equity, margin balance, maintenance margin and, on the fast
        path, the trigger prices.
    no_feedback : CascadeResult or None
        The same paths and book without price impact (``compare_no_feedback=True``).
    tracked : ndarray of str
        Accounts whose outcome on every path is in ``raw.accounts`` (the ``track`` argument
        of :func:`simulate_liquidations`), in that order; see :meth:`account_outcomes` and
        :func:`~marginlab.models.liquidation_profile`.
    """

    account_ids: np.ndarray
    assets: tuple[str, ...]
    s0: np.ndarray
    horizon: float
    dt: float
    n_steps: int
    n_paths: int
    method: str
    rules: LiquidationRules
    raw: K.CascadeArrays
    exo_min_log: np.ndarray
    exo_max_log: np.ndarray
    exogenous: np.ndarray
    level_edges: np.ndarray
    initial: pd.DataFrame
    no_feedback: CascadeResult | None = field(default=None, repr=False)
    tracked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object), repr=False)

    @property
    def horizon_days(self) -> float:
        """The horizon in days (``horizon * 365``)."""
        return self.horizon * 365.0

    # ------------------------------------------------------------------ per path
    def column(self, name: str) -> np.ndarray:
        """One per-path field of :data:`marginlab.simulate.cascade.PATH_FIELDS`, or
        ``fund_drawdown`` (USD, initial fund minus its lowest level), ``n_paths`` values."""
        if name == "fund_drawdown":
            return self.rules.insurance_fund - self.column("fund_min") if math.isfinite(
                self.rules.insurance_fund) else np.zeros(self.n_paths)
        if name not in K.PATH_FIELDS:
            raise KeyError(f"unknown per-path field {name!r}; known: {K.PATH_FIELDS} and "
                           "'fund_drawdown'")
        return self.raw.path[:, K.PATH_FIELDS.index(name)]

    def asset_column(self, name: str, asset: str | None = None) -> np.ndarray:
        """A per-path, per-asset field of ``ASSET_FIELDS``: shape (n_paths,) for one asset,
        (n_paths, n_assets) for all."""
        if name not in K.ASSET_FIELDS:
            raise KeyError(f"unknown per-asset field {name!r}; known: {K.ASSET_FIELDS}")
        values = self.raw.asset[:, :, K.ASSET_FIELDS.index(name)]
        return values if asset is None else values[:, self._col(asset)]

    def _col(self, asset: str) -> int:
        a = str(asset).upper()
        if a not in self.assets:
            raise KeyError(f"asset {asset!r} is not a price column; columns: {self.assets}")
        return self.assets.index(a)

    def path_frame(self) -> pd.DataFrame:
        """One row per path: every per-path field, fund drawdown, and per asset the liquidated
        and ADL volume (USD), extreme log moves with and without feedback and the largest
        absolute log impact."""
        cols = {name: self.raw.path[:, k] for k, name in enumerate(K.PATH_FIELDS)}
        cols["fund_drawdown"] = self.column("fund_drawdown")
        for j, a in enumerate(self.assets):
            for k, name in enumerate(K.ASSET_FIELDS):
                cols[f"{name}[{a}]"] = self.raw.asset[:, j, k]
            cols[f"exogenous_min_log_move[{a}]"] = self.exo_min_log[:, j]
            cols[f"exogenous_max_log_move[{a}]"] = self.exo_max_log[:, j]
        return pd.DataFrame(cols, index=pd.RangeIndex(self.n_paths, name="path"))

    def conservation_residual(self) -> np.ndarray:
        """Per path: sum of accounts' equity changes + fund change - market P&L - exchange
        payments - deposits (USD); zero up to rounding (see :mod:`~marginlab.simulate.cascade`).
        """
        c = self.column
        fund_change = (c("fund_final") - self.rules.insurance_fund
                       if math.isfinite(self.rules.insurance_fund)
                       else c("fees") - c("fund_paid"))
        return (c("wealth_change") + fund_change - c("market_pnl") - c("exchange_paid")
                - c("deposits"))

    # ------------------------------------------------------------------ per account
    def to_frame(self) -> pd.DataFrame:
        """One row per account: the t = 0 state and the probabilities (over paths) of at least
        one margin call, liquidation, bankruptcy and ADL, with binomial standard errors."""
        frame = self.initial.copy()
        n = self.n_paths
        for k, name in enumerate(K.COUNT_FIELDS):
            p = self.raw.counts[k] / n
            frame[f"p_{name}"] = p
            frame[f"se_{name}"] = np.sqrt(p * (1.0 - p) / n)
        return frame

    # ------------------------------------------------------------------ distributions
    def summary(self, level: float = 0.99) -> Summary:
        """Distribution over paths of the key quantities: mean, its standard error, VaR and ES
        at ``level`` (upper tail), and the probability of a positive value; a
        :class:`~marginlab.models._summary.Summary` whose ``as_frame()`` is that table
        (``summary().loc[...]`` still reads it), with the run's settings and notes.

        Rows: bad debt (all bankruptcy losses), exchange-paid (uncovered) bad debt, insurance
        fund drawdown, ADL transfers, liquidated and ADL volume (USD), event counts, and per
        asset the worst downside move ``-min log(P / S_0)`` with and without feedback and the
        largest absolute log impact.
        """
        rows = {
            "bad_debt (USD)": self.column("bad_debt"),
            "exchange_paid (USD)": self.column("exchange_paid"),
            "fund_drawdown (USD)": self.column("fund_drawdown"),
            "adl_paid (USD)": self.column("adl_paid"),
            "liquidated_volume (USD)": self.asset_column("liquidated_volume").sum(axis=1),
            "adl_volume (USD)": self.asset_column("adl_volume").sum(axis=1),
            "margin_calls": self.column("margin_calls"),
            "liquidations": self.column("liquidations"),
            "bankruptcies": self.column("bankruptcies"),
            "adl_events": self.column("adl_events"),
        }
        for j, a in enumerate(self.assets):
            rows[f"worst_down_move[{a}]"] = -self.raw.asset[:, j, K.A_MIN_LOG]
            rows[f"worst_down_move_no_feedback[{a}]"] = -self.exo_min_log[:, j]
            rows[f"max_abs_impact[{a}]"] = self.raw.asset[:, j, K.A_MAX_IMPACT]
        out = []
        for name, x in rows.items():
            var, es = var_es(x, level)
            out.append({"metric": name, "mean": float(x.mean()),
                        "se": float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0,
                        "var": var, "es": es, "p_positive": float(np.mean(x > 0.0))})
        return cascade_summary(self, pd.DataFrame(out).set_index("metric"), level)

    def __repr__(self) -> str:
        return short_repr(self, accounts=len(self.account_ids), assets=", ".join(self.assets),
                          n_paths=self.n_paths, n_steps=self.n_steps,
                          horizon_days=self.horizon_days, method=self.method)

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def amplification(self, level: float = 0.99) -> pd.DataFrame:
        """Cascade amplification per asset: VaR at ``level`` of the worst downside and upside
        log moves with feedback (marks) and without (the exogenous paths, same seeds), and
        their ratio; with ``no_feedback`` also the mean liquidations and bad debt of both runs.
        """
        out = []
        for j, a in enumerate(self.assets):
            row = {"asset": a}
            for side, fb, exo in (("down", -self.raw.asset[:, j, K.A_MIN_LOG],
                                   -self.exo_min_log[:, j]),
                                  ("up", self.raw.asset[:, j, K.A_MAX_LOG],
                                   self.exo_max_log[:, j])):
                v_fb = var_es(fb, level)[0]
                v_exo = var_es(exo, level)[0]
                row[f"{side}_var_feedback"] = v_fb
                row[f"{side}_var_no_feedback"] = v_exo
                row[f"{side}_ratio"] = v_fb / v_exo if v_exo > 0 else math.nan
            out.append(row)
        frame = pd.DataFrame(out).set_index("asset")
        if self.no_feedback is not None:
            nf = self.no_feedback
            for name in ("liquidations", "bad_debt"):
                frame[f"mean_{name}_feedback"] = self.column(name).mean()
                frame[f"mean_{name}_no_feedback"] = nf.column(name).mean()
        return frame

    def volume_by_level(self, asset: str) -> pd.DataFrame:
        """Mean USD volume liquidated in the market per path, by fill level: bins of
        ``log(fill / S_0)`` (the end bins also hold what lies beyond)."""
        j = self._col(asset)
        e = self.level_edges
        return pd.DataFrame({"log_move_lo": e[:-1], "log_move_hi": e[1:],
                             "price_lo": self.s0[j] * np.exp(e[:-1]),
                             "price_hi": self.s0[j] * np.exp(e[1:]),
                             "volume": self.raw.levels[j] / self.n_paths})

    # ------------------------------------------------------------------ plots
    def plot_price_paths(self, asset: str | None = None, n: int = 10, ax=None):
        """Recorded mark paths (with feedback, solid) over the exogenous paths (dashed, same
        seeds), in hours; returns the matplotlib axes."""
        import matplotlib.pyplot as plt

        j = 0 if asset is None else self._col(asset)
        ax = ax or plt.subplots(figsize=(8, 4))[1]
        n = min(n, self.raw.marks.shape[0])
        if n == 0:
            raise ValueError("no paths were recorded: pass record > 0 to simulate_liquidations")
        hours = np.arange(self.n_steps + 1) * self.dt * _HOURS_PER_YEAR
        for k in range(n):
            line, = ax.plot(hours, self.raw.marks[k, :, j], lw=1.2)
            ax.plot(hours, self.exogenous[k, :, j], ls="--", lw=0.8, color=line.get_color())
        ax.set_xlabel("hours")
        ax.set_ylabel(f"{self.assets[j]} price (USD)")
        ax.set_title(f"{self.assets[j]}: marks with feedback (solid) vs without (dashed)")
        return ax

    def plot_bad_debt(self, level: float = 0.99, bins: int = 50, ax=None):
        """Histogram of bad debt over the paths with some (log count axis), with VaR and ES
        at ``level``."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(7, 4))[1]
        x = self.column("bad_debt")
        pos = x[x > 0.0]
        if pos.size:
            ax.hist(pos, bins=bins, color="tab:red", alpha=0.7)
            ax.set_yscale("log")
        var, es = var_es(x, level)
        ax.axvline(var, color="k", ls="--", label=f"VaR {level:.1%}: {var:,.0f}")
        ax.axvline(es, color="k", ls=":", label=f"ES {level:.1%}: {es:,.0f}")
        ax.set_xlabel("bad debt per path (USD)")
        ax.set_ylabel("paths")
        ax.set_title(f"Bad debt: P(> 0) = {np.mean(x > 0):.2%}, mean {x.mean():,.0f} USD")
        ax.legend()
        return ax

    def plot_volume_by_level(self, asset: str | None = None, ax=None):
        """Mean liquidated volume per path by fill price (USD per bin)."""
        import matplotlib.pyplot as plt

        a = self.assets[0] if asset is None else asset
        ax = ax or plt.subplots(figsize=(7, 4))[1]
        f = self.volume_by_level(a)
        mid = 0.5 * (f["price_lo"] + f["price_hi"])
        ax.bar(mid, f["volume"], width=(f["price_hi"] - f["price_lo"]) * 0.9, color="tab:blue")
        ax.axvline(self.s0[self._col(a)], color="k", lw=0.8, label="today")
        ax.set_xlabel(f"{str(a).upper()} fill price (USD)")
        ax.set_ylabel("mean liquidated volume per path (USD)")
        ax.set_title(f"{str(a).upper()}: liquidations by price level")
        ax.legend()
        return ax


# =========================================================================== entry point
def _positive_int(name: str, value: Any, lowest: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {lowest}, got {value!r}")
    if value < lowest:
        raise ValueError(f"{name} must be an int >= {lowest}, got {value}")
    return int(value)


def _tracked(track: Any, ids: np.ndarray) -> np.ndarray:
    """The tracked account ids (object array), validated against the simulated ids."""
    if track is None:
        return np.zeros(0, dtype=object)
    if isinstance(track, str):
        if track != "all":
            raise ValueError(f"track must be 'all', a sequence of account ids or None, got "
                             f"{track!r}")
        return np.asarray(ids, dtype=object)
    out = np.asarray([str(a) for a in track], dtype=object)
    known = pd.Index(ids)
    missing = [a for a in out if a not in known]
    if missing:
        raise ValueError(f"track names account(s) {missing[:5]} that are not simulated (not in "
                         "the book, or without positions)")
    if len(set(out)) != out.size:
        raise ValueError("track must not repeat an account id")
    return out


def _horizon_years(horizon_days: Any, horizon: Any) -> float:
    """The horizon in years from ``horizon_days`` (default 2) or the deprecated ``horizon``."""
    if horizon is not None:
        if horizon_days is not None:
            raise ValueError(f"give horizon_days (days) only, not also horizon={horizon!r} "
                             "(years, deprecated)")
        years = check_real("horizon", horizon, low=0.0, low_open=True)
        _warn(f"horizon= in years is deprecated; pass horizon_days={years * 365.0:g} (days)",
              DeprecationWarning)
        return years
    days = 2.0 if horizon_days is None else horizon_days
    return check_real("horizon_days", days, low=0.0, low_open=True) / 365.0


def simulate_liquidations(
    book: Book,
    market: MarketState,
    model: Any = None,
    *,
    rules: LiquidationRules,
    impact: PriceImpact | None = None,
    horizon_days: float | None = None,
    n_steps: int = 48,
    n_paths: int = 10_000,
    seed: int | np.random.SeedSequence | None = None,
    paths: np.ndarray | None = None,
    method: str = "auto",
    record: int = 20,
    level_edges: np.ndarray | None = None,
    compare_no_feedback: bool = False,
    track: str | Any = None,
    path_assets: Any = None,
    horizon: float | None = None,
) -> CascadeResult:
    """Simulate margin calls, liquidations, cascades, bad debt and ADL over a horizon.

    Parameters
    ----------
    book : Book
        Accounts, positions (linear / inverse perpetuals and futures) and collateral.
    market : MarketState
        Today's prices (USD) of every traded underlying and collateral coin.
    model : GBM, MertonJump, GARCH or a spec, optional
        Market model of the price columns ``result.assets`` (traded underlyings and
        collateral coins, sorted by name), one model asset per column. Not needed with
        ``paths``.
    rules : LiquidationRules
    impact : PriceImpact, optional
        Default: no impact (liquidations fill at the mark and move nothing).
    horizon_days : float, default 2.0
        Margin period of risk in days (as ``horizon_days`` everywhere else).
    n_steps : int
        Monitoring steps over the horizon (default 48: hourly for two days).
    n_paths : int
        Number of paths.
    seed : int, SeedSequence, numpy.random.Generator or None
        Seed of the paths (and of the top-up draws); a ``Generator`` gives one
        ``SeedSequence(gen.integers(2**63, size=4))`` for both.
    paths : ndarray, optional
        Precomputed exogenous prices, shape (n_paths, n_steps + 1, n_assets) with
        ``paths[:, 0] == market prices``; then ``model``, ``n_paths`` and ``n_steps`` come
        from it (``horizon_days`` still sets the step ``dt = horizon_days / 365 / n_steps``
        years).
    method : {"auto", "fast", "general"}
        Engine; ``"auto"`` takes the fast path when every account holds one position with
        collateral in USD or that position's coin and the rules are full close-out without
        grace or top-ups. On books both accept they agree.
    record : int
        Keep the mark paths of the first ``record`` paths (for :meth:`~CascadeResult.
        plot_price_paths`).
    level_edges : ndarray, optional
        Bins of ``log(fill / S_0)`` for liquidation volume by price level.
    compare_no_feedback : bool
        Also run the same paths without impact (``result.no_feedback``).
    track : "all", sequence of str or None
        Accounts (ids with positions) whose outcome on every path is kept
        (``result.tracked``, ``result.raw.accounts``): final equity, bad debt, steps of the
        first margin call, liquidation, bankruptcy and ADL, mark at the liquidation. Memory
        ``n_paths x n_tracked x 56`` bytes. Default: none.
    path_assets : sequence of str, optional
        Names of the columns of ``paths`` (e.g. shared paths of every asset of a run); the
        columns the book needs are taken from them by name. Default: ``paths`` has exactly
        the columns ``result.assets``.
    horizon : float, optional
        Deprecated: the horizon in years (``horizon_days / 365``); warns
        (``DeprecationWarning``). ``result.horizon`` stays in years.

    Returns
    -------
    CascadeResult

    Examples
    --------
    >>> import pandas as pd
    >>> from marginlab.models import GBM, Book, MarketState
    >>> book = Book.from_frames(
    ...     pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
    ...                   "underlying": ["BTC"]}),
    ...     pd.DataFrame({"account_id": ["a"], "instrument_id": ["BTC-PERP"],
    ...                   "quantity": [1.0], "entry_price": [50_000.0]}),
    ...     pd.DataFrame({"account_id": ["a"], "asset": ["USDT"], "amount": [5_000.0]}))
    >>> res = simulate_liquidations(book, MarketState(spot={"BTC": 50_000.0}),
    ...                             GBM(mu=0.0, sigma=0.8), n_paths=1_000, seed=1,
    ...                             rules=LiquidationRules(maintenance={"BTC": 0.005}))
    >>> res.method, round(float(res.initial["liquidation_price_below"].iloc[0]), 2)
    ('fast', 45226.13)
    """
    if not isinstance(book, Book):
        raise TypeError(f"book must be a marginlab.models.Book, got {type(book).__name__}")
    if not isinstance(market, MarketState):
        raise TypeError(f"market must be a MarketState, got {type(market).__name__}")
    if not isinstance(rules, LiquidationRules):
        raise TypeError(f"rules must be a LiquidationRules, got {type(rules).__name__}")
    impact = PriceImpact.none() if impact is None else impact
    if not isinstance(impact, PriceImpact):
        raise TypeError(f"impact must be a PriceImpact or None, got {type(impact).__name__}")
    if method not in ("auto", "fast", "general"):
        raise ValueError(f"method must be 'auto', 'fast' or 'general', got {method!r}")
    if not isinstance(compare_no_feedback, (bool, np.bool_)):
        raise TypeError(f"compare_no_feedback must be True or False, got {compare_no_feedback!r}")
    horizon = _horizon_years(horizon_days, horizon)
    seed = normalize_seed(seed)  # SPEC 7: a Generator gives one SeedSequence (paths, top-ups)
    conv = _convert(book, market, rules, horizon, method)
    n_a = len(conv.assets)
    if conv.keep.size == 0:
        raise ValueError("the book has no positions to simulate")
    if paths is None:
        if model is None:
            raise ValueError("give a market model (or precomputed paths)")
        n_steps = _positive_int("n_steps", n_steps)
        n_paths = _positive_int("n_paths", n_paths)
        spec = model.to_spec() if hasattr(model, "to_spec") else model
        n_model = getattr(spec, "n_assets", None)
        if n_model != n_a:
            raise ValueError(f"the model has {n_model} asset(s) but the book needs {n_a} price "
                             f"column(s), in this order: {list(conv.assets)}")
        paths = simulate_paths(model, conv.s0, n_steps=n_steps, dt=horizon / n_steps,
                               n_paths=n_paths, seed=seed)
    else:
        paths = np.asarray(paths, dtype=np.float64)
        if path_assets is not None:
            names = [str(a).upper() for a in path_assets]
            if paths.ndim != 3 or paths.shape[2] != len(names):
                raise ValueError(f"paths must have shape (n_paths, n_steps + 1, "
                                 f"{len(names)}) for path_assets {names}, got {paths.shape}")
            lacking = [a for a in conv.assets if a not in names]
            if lacking:
                raise ValueError(f"path_assets {names} lack the price column(s) {lacking} the "
                                 "book needs")
            paths = np.ascontiguousarray(paths[:, :, [names.index(a) for a in conv.assets]])
        if paths.ndim != 3 or paths.shape[2] != n_a:
            raise ValueError(f"paths must have shape (n_paths, n_steps + 1, {n_a}) for the "
                             f"price columns {list(conv.assets)}, got {paths.shape}")
        if not np.allclose(paths[0, 0], conv.s0, rtol=1e-12, atol=0.0):
            raise ValueError(f"paths[:, 0] must equal today's prices {conv.s0.tolist()} of "
                             f"{list(conv.assets)}, got {paths[0, 0].tolist()}")
        n_paths, n_steps = paths.shape[0], paths.shape[1] - 1
    dt = horizon / n_steps
    record = min(_positive_int("record", record, 0), n_paths)
    karr = impact.arrays(conv.assets, conv.traded, dt)
    krules = rules.kernel_rules()
    edges = np.linspace(-0.4, 0.4, 81) if level_edges is None else np.asarray(level_edges, float)
    accounts = conv.accounts
    mb, mm, eq = K.margin_state(accounts, conv.tables, conv.s0)
    orules = None if conv.options is None else _lo.option_rules(rules, dt)
    if conv.options is not None:  # option values (mark-to-model) and short-option margin
        ov, omm = _lo.initial_option_margin(conv.options, orules, conv.tables, conv.s0,
                                            mb.size, n_paths, n_steps)
        mb, mm, eq = mb + ov, mm + omm, eq + ov
    ids = book.account_ids[conv.keep]
    bad = mb < rules.liquidation_fraction * mm
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"account {ids[k]!r} is already below its liquidation threshold today "
                         f"(margin balance {mb[k]:,.2f} < {rules.liquidation_fraction:g} x "
                         f"maintenance margin {mm[k]:,.2f} USD); {int(bad.sum())} account(s) in "
                         "all")
    initial = pd.DataFrame({"account_id": ids, "equity": eq, "margin_balance": mb,
                            "maintenance_margin": mm,
                            "margin_ratio": np.where(mm > 0, mb / np.where(mm > 0, mm, 1.0),
                                                     np.inf)})
    if isinstance(accounts, K.SingleAccounts):
        lo, hi = K.trigger_prices(accounts, conv.tables, rules.liquidation_fraction)
        clo, chi = K.trigger_prices(accounts, conv.tables, 1.0)
        initial["asset"] = np.asarray(conv.assets, dtype=object)[np.asarray(accounts.asset)]
        initial["liquidation_price_below"] = lo
        initial["liquidation_price_above"] = hi
        initial["margin_call_price_below"] = clo
        initial["margin_call_price_above"] = chi

    perm = None
    if conv.method == "general" and isinstance(accounts, K.SingleAccounts):
        # a book the fast path accepts, on the general path: number the accounts in the fast
        # path's order, so that both engines give the same results
        perm = K.trigger_order(accounts, conv.tables, rules.liquidation_fraction)
        accounts = _to_cross(accounts, n_a, perm)

    tracked = _tracked(track, ids)
    idx = pd.Index(ids).get_indexer(tracked).astype(np.int64)
    if perm is not None:  # general-path numbering
        inv_perm = np.empty_like(perm)
        inv_perm[perm] = np.arange(perm.size)
        idx = inv_perm[idx]

    def run(imp: K.ImpactParams) -> K.CascadeArrays:
        raw = K.simulate_cascade(paths, accounts, conv.tables, imp, krules,
                                 level_edges=edges, record=record, seed=seed, track=idx,
                                 options=conv.options, option_rules=orules)
        if perm is not None:
            counts = np.empty_like(raw.counts)
            counts[:, perm] = raw.counts
            raw = raw._replace(counts=counts)
        return raw

    def build(raw: K.CascadeArrays, nf: CascadeResult | None) -> CascadeResult:
        with np.errstate(divide="ignore"):
            logs = np.log(paths / paths[:1, :1, :])
        return CascadeResult(
            account_ids=ids, assets=conv.assets, s0=conv.s0, horizon=horizon, dt=dt,
            n_steps=n_steps, n_paths=n_paths, method=conv.method, rules=rules, raw=raw,
            exo_min_log=logs.min(axis=1), exo_max_log=logs.max(axis=1),
            exogenous=paths[:record].copy(), level_edges=np.asarray(edges, float),
            initial=initial, no_feedback=nf, tracked=tracked)

    nf = None
    if compare_no_feedback:
        none = K.ImpactParams(np.full(n_a, np.inf), np.zeros(n_a), np.zeros(n_a), np.ones(n_a))
        nf = build(run(none), None)
    return build(run(karr), nf)


# =========================================================================== synthetic book
def perp_book(
    n_accounts: int,
    seed: int | np.random.SeedSequence,
    *,
    spot: Mapping[str, float],
    leverage: tuple[float, float] = (5.0, 0.7),
    notional: tuple[float, float] = (5_000.0, 1.0),
    long_share: float = 0.5,
    inverse_share: float = 0.0,
    max_leverage: float = 50.0,
    entry_dispersion: float = 0.02,
    face_value: float = 100.0,
) -> Book:
    """A synthetic book of one-position accounts (the fast path's shape), for studies.

    Each account trades one perpetual on an underlying drawn uniformly from ``spot``: a
    linear ``<U>USDT-PERP`` with USDT collateral or, with probability ``inverse_share``, an
    inverse ``<U>USD-PERP`` (``face_value`` USD per contract) with collateral in the coin.
    Sizes are lognormal (median and log-sd ``notional``, USD), effective leverage today,
    notional / margin balance, lognormal (median and log-sd ``leverage``) clipped to
    ``[1, max_leverage]``; entry prices are today's times ``exp(N(0, entry_dispersion^2))``
    and collateral is what gives the account that leverage at today's prices (at least 0).

    Parameters
    ----------
    n_accounts : int
        Number of accounts, >= 1.
    seed : int or numpy.random.SeedSequence
        Seed of ``numpy.random.default_rng``: the same seed gives the same book.
    spot : mapping of str to float
        Today's USD price of each underlying.

    Returns
    -------
    Book
    """
    n = _positive_int("n_accounts", n_accounts)
    if not isinstance(spot, Mapping) or not spot:
        raise TypeError(f"spot must be a non-empty mapping of underlying -> USD price, got "
                        f"{spot!r}")
    unds = [str(u).upper() for u in spot]
    s = np.array([check_real(f"spot[{u!r}]", spot[u], low=0.0, low_open=True) for u in spot])
    lev_med = check_real("leverage[0]", leverage[0], low=1.0)
    lev_sd = check_real("leverage[1]", leverage[1], low=0.0)
    n_med = check_real("notional[0]", notional[0], low=0.0, low_open=True)
    n_sd = check_real("notional[1]", notional[1], low=0.0)
    p_long = check_real("long_share", long_share, low=0.0, high=1.0)
    p_inv = check_real("inverse_share", inverse_share, low=0.0, high=1.0)
    max_lev = check_real("max_leverage", max_leverage, low=1.0)
    disp = check_real("entry_dispersion", entry_dispersion, low=0.0)
    face = check_real("face_value", face_value, low=0.0, low_open=True)
    rng = np.random.default_rng(seed)
    u = rng.integers(0, len(unds), n)
    inv = rng.random(n) < p_inv
    side = np.where(rng.random(n) < p_long, 1.0, -1.0)
    size_usd = n_med * np.exp(n_sd * rng.standard_normal(n))
    lev = np.clip(lev_med * np.exp(lev_sd * rng.standard_normal(n)), 1.0, max_lev)
    s0 = s[u]
    entry = s0 * np.exp(disp * rng.standard_normal(n))
    contracts = np.maximum(np.round(size_usd / face), 1.0)
    qty = np.where(inv, side * contracts, side * size_usd / entry)
    upnl = np.where(inv, qty * face * (s0 / entry - 1.0), qty * (s0 - entry))
    notional_now = np.where(inv, contracts * face, np.abs(qty) * s0)
    margin_usd = np.maximum(notional_now / lev - upnl, 0.0)
    ids = np.array([f"acct{k:07d}" for k in range(n)], dtype=object)
    inst_ids = [f"{x}USDT-PERP" for x in unds] + [f"{x}USD-PERP" for x in unds]
    instruments = pd.DataFrame({
        "instrument_id": inst_ids,
        "type": ["linear_perp"] * len(unds) + ["inverse_perp"] * len(unds),
        "underlying": unds * 2,
        "face_value": [np.nan] * len(unds) + [face] * len(unds)})
    positions = pd.DataFrame({
        "account_id": ids, "instrument_id": np.array(inst_ids, dtype=object)[u + inv * len(unds)],
        "quantity": qty, "entry_price": entry})
    collateral = pd.DataFrame({
        "account_id": ids,
        "asset": np.where(inv, np.array(unds, dtype=object)[u], "USDT"),
        "amount": np.where(inv, margin_usd / s0, margin_usd)})
    return Book.from_frames(instruments, positions, collateral)
