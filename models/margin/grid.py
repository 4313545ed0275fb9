r"""Grid (scenario-scan) margin: a CME SPAN-like and a Deribit portfolio-margin-like method.

Both methods stress every underlying ("combined commodity" in SPAN, "currency pair" at Deribit)
on its own fixed grid of price moves and implied-volatility shocks, revalue every holding in
full on each grid point (:func:`marginlab.simulate.revalue.unit_pnl`: linear and inverse
contracts exactly, options with Black-Scholes at the shocked price and vol, time passing by
``horizon_days``), and take the worst loss per underlying. Underlyings are margined
separately and summed: no credit between underlyings (SPAN's inter-commodity spread credits
and Deribit's cross-currency offsets are not modelled, which errs on the conservative side).

The loss of every account in every grid scenario of underlying ``u`` is one sparse product,
``-H_u @ U_u`` (holdings of the instruments on ``u`` times their unit P&L on ``u``'s grid), so a
book of any number of accounts costs a few dozen revaluations per instrument.

Conventions shared by both methods
----------------------------------
* Moves are relative to today's price (``MarketState.spot``): a price scan of 0.10 moves the
  underlying by +-10 %. Vol shocks are relative: a vol scan of 0.25 multiplies implied vols by
  1.25 and 0.75. Losses are positive and in USD at the scenario price.
* Holdings are the book's net positions per account (one-way mode); with
  ``include_collateral=True`` (default, as the Monte Carlo methods of this package do)
  non-stable collateral (e.g. BTC) is part of its underlying's grid like spot, so a BTC
  collateral hedges a short BTC perpetual. Exchanges margin positions only and treat
  collateral through haircuts (``margin_balance`` is haircut already); pass
  ``include_collateral=False`` for that convention.
* A shared :class:`~marginlab.models.scenarios.ScenarioSet` passed to ``compute`` is ignored:
  a grid method defines its own scenarios.
* ``allocation``: the IM of an underlying is allocated to its holdings as each holding's own
  loss in the driving (worst) scenario, which sums to the scanning loss because the P&L is
  additive, plus the add-ons allocated as documented per method; contributions sum to the
  account's IM (never NaN for these methods).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from marginlab.simulate.pricing import black_scholes_greeks
from marginlab.simulate.revalue import unit_pnl

from .._validate import check_real
from ..book import DATED_TYPES, INVERSE_TYPES, OPTION_TYPES, STABLECOINS, Book
from ..portfolio import _instrument_arrays, account_equity, gross_notional, holdings_matrix
from ..scenarios import MarketState, ScenarioSet
from .base import MarginResult

__all__ = ["SPAN_SCENARIOS", "SpanLike", "DeribitLike"]

SPAN_SCENARIOS: tuple[tuple[float, int, bool], ...] = (
    (0.0, +1, False), (0.0, -1, False),
    (1 / 3, +1, False), (1 / 3, -1, False), (-1 / 3, +1, False), (-1 / 3, -1, False),
    (2 / 3, +1, False), (2 / 3, -1, False), (-2 / 3, +1, False), (-2 / 3, -1, False),
    (1.0, +1, False), (1.0, -1, False), (-1.0, +1, False), (-1.0, -1, False),
    (1.0, 0, True), (-1.0, 0, True),
)  # fmt: skip
"""The 16 standard SPAN risk scenarios, in their published order, as
``(price move, vol move, extreme)``: scenarios 1-14 move the price by the given fraction of the
price scan range and the vol up (+1) or down (-1) by the vol scan range, weight 100 %;
scenarios 15-16 (``extreme``) move the price by +-``extreme_multiple`` price scan ranges with
the vol unchanged and count ``extreme_cover`` of the loss."""

_DAYS_PER_YEAR = 365.0


# ----------------------------------------------------------------------------- validation
def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    return name


def _check_common(method: Any) -> None:
    """Validate (and normalise in place) the fields both grid methods share: ``mm_fraction``,
    ``horizon_days``, ``include_collateral`` and ``name``."""
    sets = object.__setattr__
    sets(method, "mm_fraction", check_real("mm_fraction", method.mm_fraction, low=0.0,
                                           high=1.0, low_open=True))
    sets(method, "horizon_days", check_real("horizon_days", method.horizon_days, low=0.0,
                                            high=365.0))
    if not isinstance(method.include_collateral, (bool, np.bool_)):
        raise TypeError(f"include_collateral must be a bool, got {method.include_collateral!r}")
    _check_name(method.name)


def _per_underlying(name: str, value: Any, *, low: float | None = None,
                    high: float | None = None, low_open: bool = False,
                    high_open: bool = False) -> float | Mapping[str, float]:
    """A number for every underlying, or a mapping underlying -> number, range-checked."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k.strip():
                raise TypeError(f"{name} keys must be underlying names (str), got {k!r}")
            out[k.strip().upper()] = check_real(f"{name}[{k!r}]", v, low=low, high=high,
                                                low_open=low_open, high_open=high_open)
        return MappingProxyType(out)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or a mapping of underlying -> number, got "
                        f"{type(value).__name__} {value!r}")
    return check_real(name, value, low=low, high=high, low_open=low_open, high_open=high_open)


def _values(value: float | Mapping[str, float]) -> list[tuple[str, float]]:
    if isinstance(value, Mapping):
        return [(f"{k!r}", v) for k, v in value.items()]
    return [("", float(value))]


def _lookup(name: str, value: float | Mapping[str, float], underlying: str,
            default: float | None = None) -> float:
    """The parameter's value for ``underlying``."""
    if not isinstance(value, Mapping):
        return float(value)
    if underlying in value:
        return float(value[underlying])
    if default is not None:
        return default
    raise ValueError(f"{name} has no entry for underlying {underlying!r} (held in the book); "
                     f"it covers {sorted(value)}")


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- shared engine
@dataclass(frozen=True, eq=False)
class _Prepared:
    """A book laid out for grid revaluation: holdings by column and each column's group."""

    H: sp.csc_matrix  # (n_accounts, n_cols): instruments, then collateral assets if included
    names: np.ndarray  # column names
    group: np.ndarray  # column -> underlying name ("" for stablecoins)
    is_inst: np.ndarray  # column is an instrument (not collateral)
    arrays: dict  # kernel arrays of the instruments (portfolio._instrument_arrays)
    types: np.ndarray  # instrument types
    groups: tuple[str, ...]  # underlyings with at least one non-zero holding
    nnz_acc: np.ndarray  # CSR layout of the holdings (allocation rows)
    nnz_col: np.ndarray
    nnz_qty: np.ndarray
    horizon: float  # years


def _prepare(book: Book, market: MarketState, horizon_days: float,
             include_collateral: bool) -> _Prepared:
    if not isinstance(book, Book):
        raise TypeError(f"book must be a Book, got {type(book).__name__}")
    if not isinstance(market, MarketState):
        raise TypeError(f"market must be a MarketState, got {type(market).__name__}")
    inst = book.instruments
    und = inst["underlying"].to_numpy(str).astype(object)
    unds = tuple(sorted(set(und)))
    horizon = horizon_days / _DAYS_PER_YEAR
    if unds:
        s0 = market.prices(unds)
        probe = ScenarioSet(unds, s0[None, :], np.ones((1, len(unds))), horizon)
        arrays, _ = _instrument_arrays(book, market, probe)
    else:
        arrays = {}
    if include_collateral:
        H = holdings_matrix(book)
        assets = np.array(book.assets, dtype=object)
        coll_group = np.array(["" if a in STABLECOINS else a for a in assets], dtype=object)
    else:
        H = book.holdings.tocsr()
        H.sort_indices()
        assets = np.zeros(0, dtype=object)
        coll_group = np.zeros(0, dtype=object)
    names = np.concatenate([inst["instrument_id"].to_numpy(str).astype(object), assets])
    group = np.concatenate([und, coll_group])
    is_inst = np.arange(len(names)) < len(inst)
    held = np.zeros(len(names), bool)
    held[H.indices[H.data != 0.0]] = True
    groups = tuple(sorted({g for g in group[held] if g}))
    nnz_acc = np.repeat(np.arange(H.shape[0]), np.diff(H.indptr))
    return _Prepared(H.tocsc(), names, group, is_inst, arrays, inst["type"].to_numpy(str),
                     groups, nnz_acc, H.indices.astype(np.int64), H.data.copy(), horizon)


def _group_columns(prep: _Prepared, g: str) -> tuple[np.ndarray, np.ndarray]:
    """Instrument columns and collateral columns of underlying ``g``."""
    cols = np.flatnonzero(prep.group == g)
    return cols[prep.is_inst[cols]], cols[~prep.is_inst[cols]]


def _unit_grid(prep: _Prepared, market: MarketState, inst_cols: np.ndarray,
               coll_cols: np.ndarray, s0: float, inst_moves: np.ndarray,
               vol_factor: np.ndarray, coll_moves: np.ndarray,
               skew: np.ndarray | None = None, term: np.ndarray | None = None) -> np.ndarray:
    """Unit P&L (USD) of the columns of one underlying on its grid, shape (n_cols, K).

    ``inst_moves`` and ``vol_factor`` (n_instruments, K) give each instrument its own relative
    price move and vol multiplier in each scenario (one kernel column per instrument);
    ``coll_moves`` (K,) moves the collateral asset (P&L per unit ``s0 x move``). ``skew`` and
    ``term`` (K,), optional: additive shocks of the vol surface's skew and term factors in
    each scenario (:mod:`marginlab.models.vol_surface`); ``None`` (default): not passed to
    the kernel at all, so the grid is bit for bit the level-only one.
    """
    n_k = inst_moves.shape[1] if inst_moves.ndim == 2 else len(coll_moves)
    rows = []
    if len(inst_cols):
        n = len(inst_cols)
        a = {k: np.asarray(v)[inst_cols] for k, v in prep.arrays.items()}
        a["underlying"] = np.arange(n)
        prices = (s0 * (1.0 + inst_moves)).T
        shape = {}
        if skew is not None or term is not None:
            for key, x in (("skew_shock", skew), ("term_shock", term)):
                x = np.zeros(prices.shape[0]) if x is None else np.asarray(x, float)
                shape[key] = np.tile(x[:, None], (1, n))
        rows.append(unit_pnl(prices, vol_factor.T, np.full(n, s0), horizon=prep.horizon,
                             rate=market.rate, **a, **shape))
    if len(coll_cols):
        rows.append(np.tile(s0 * coll_moves, (len(coll_cols), 1)))
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, n_k))


def _losses(prep: _Prepared, cols: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Loss of every account in every scenario, ``-H[:, cols] @ U``, shape (n_accounts, K)."""
    if len(cols) == 0:
        return np.zeros((prep.H.shape[0], U.shape[1]))
    return -np.asarray(prep.H[:, cols] @ U)


def _worst(eff: np.ndarray, priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Worst effective loss per account (floored at 0) and its scenario.

    Ties (within 1e-12 relative) go to the scenario of lowest ``priority``, then the first.
    """
    worst = eff.max(axis=1)
    tol = 1e-12 * np.maximum(1.0, np.abs(worst))
    tied = eff >= (worst - tol)[:, None]
    k = np.argmin(np.where(tied, priority[None, :], np.inf), axis=1)
    return np.maximum(worst, 0.0), k


def _nnz_in(prep: _Prepared, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Holdings (CSR entries) on ``cols`` and each one's row in ``cols``."""
    local = np.full(len(prep.names), -1)
    local[cols] = np.arange(len(cols))
    loc = local[prep.nnz_col]
    sel = np.flatnonzero(loc >= 0)
    return sel, loc[sel]


def _result(name: str, book: Book, market: MarketState, prep: _Prepared, im: np.ndarray,
            mm: np.ndarray, driver: np.ndarray, contrib: np.ndarray,
            details: dict[str, np.ndarray]) -> MarginResult:
    allocation = pd.DataFrame({"account_id": book.account_ids[prep.nnz_acc],
                               "holding": prep.names[prep.nnz_col],
                               "im_contribution": contrib})
    eq = account_equity(book, market)["margin_balance"].to_numpy()
    return MarginResult(name, book.account_ids, im, mm, eq, driver, allocation, details,
                        gross_notional(book, market))


def _pick_driver(driver: np.ndarray, best: np.ndarray, im_g: np.ndarray,
                 labels: np.ndarray) -> None:
    """Set ``driver`` where underlying ``g``'s IM is the account's largest so far."""
    take = im_g > best
    driver[take] = labels[take]
    best[take] = im_g[take]


# ----------------------------------------------------------------------------- SPAN-like
def _span_label(number: int, frac: float, vdir: int, extreme: bool, multiple: float,
                cover: float) -> str:
    if extreme:
        return (f"{number}: price {'up' if frac > 0 else 'down'} extreme "
                f"({multiple:g}x range), {cover:.0%} of loss")
    thirds = round(abs(frac) * 3)
    price = "price unchanged" if thirds == 0 else (
        f"price {'up' if frac > 0 else 'down'} {thirds}/3 range")
    return f"{number}: {price}, vol {'up' if vdir > 0 else 'down'}"


_DIR_NAMES = {+1: "up", -1: "down"}


def _shape_label(sdir: int, tdir: int) -> str:
    """``", skew up"``, ``", term down"``, ``", skew up, term down"`` (empty for (0, 0))."""
    return "".join(f", {name} {_DIR_NAMES[d]}" for name, d in (("skew", sdir), ("term", tdir))
                   if d)


@dataclass(frozen=True, eq=False)
class SpanLike:
    r"""CME SPAN-style margin: 16 risk scenarios per underlying, spread charge, SOM.

    Parameters
    ----------
    price_scan : float or mapping of str to float
        Price scan range per underlying (or one for all) as a fraction of today's price, in
        (0, 1), with ``extreme_multiple x price_scan < 1`` (the extreme down move must leave a
        positive price). CME quotes it in dollars per contract (it equals the outright
        maintenance margin of one futures contract); here ``PSR$ = price_scan x S x
        contract size``.
    vol_scan : float or mapping of str to float
        Volatility scan range per underlying, relative, in [0, 1]: implied vols are
        multiplied by ``1 + vol_scan`` (vol up) and ``1 - vol_scan`` (vol down). Needed for
        underlyings with options held; others may be omitted.
    extreme_multiple : float, default 2.0
        Size of the extreme moves (scenarios 15-16) in price scan ranges, in (0, 10].
    extreme_cover : float, default 0.35
        Fraction of the extreme-move loss counted, in [0, 1].
    intra_spread_charge : float or mapping of str to float, default {}
        Intra-commodity (calendar) spread charge per unit of spread, as a fraction of today's
        price, in [0, 1). Underlyings not listed are charged nothing.
    short_option_minimum : float or mapping of str to float, default {}
        Short option minimum (SOM) per unit of the underlying of short options, as a
        fraction of today's price, in [0, 1) (CME quotes a percentage of the outright
        futures margin: ``percentage x price_scan``). Underlyings not listed: no minimum.
    mm_fraction : float, optional
        MM / IM, in (0, 1]: the reciprocal of ``initial_multiplier`` (give one of the two).
    horizon_days : float, default 0.0
        SPAN's look-ahead time in days, in [0, 365] (CME uses one trading day; 0 gives
        instantaneous shocks).
    include_collateral : bool, default True
        Put non-stable collateral on its underlying's grid (see the module notes).
    initial_multiplier : float, optional
        IM = initial_multiplier x MM, in [1, 10]; default 1.1 (CME's speculator initial
        margin, 110 % of maintenance) unless ``mm_fraction`` is given.
    name : str, default "SPAN-like"
    skew_scan : float or mapping of str to float, default 0.0
        Skew scan range per underlying: the size of the additive shock ``s`` of the implied
        vol surface's skew factor (:mod:`marginlab.models.vol_surface`), in [0, 1]. Greater
        than 0: scenarios 1-14 are repeated with the skew up (``+s``) and down (``-s``), see
        Notes. 0 (default, and underlyings not listed in a mapping): the 16 scenarios
        alone, bit for bit.
    term_scan : float or mapping of str to float, default 0.0
        Term-structure scan range: the size of the additive shock ``tau`` of the surface's
        term factor, in [0, 1]; repeats scenarios 1-14 with the term slope up and down as
        ``skew_scan`` does (jointly with the skew variants when both are set).

    Notes
    -----
    **Risk arrays.** For each underlying ``u`` (a SPAN "combined commodity": every contract on
    the same underlying) with price scan ``p``, vol scan ``v``, today's price ``S`` and implied
    vol ``sigma``, scenario ``k`` of :data:`SPAN_SCENARIOS` sets the price to
    ``S (1 + f_k p)`` (``f_k`` in {0, +-1/3, +-2/3, +-1}, or +-``extreme_multiple`` for 15-16)
    and the vols to ``sigma (1 + d_k v)`` (``d_k`` in {+1, -1}, 0 for 15-16). The account's
    risk array is its loss there times the weight: ``R_k = w_k x (-sum_j q_j U_jk)`` with
    ``w_k = 1`` for 1-14 and ``extreme_cover`` for 15-16 (CME's published risk arrays already
    hold the covered fraction of the extreme loss).

    **Volatility-shape scenarios** (``skew_scan``, ``term_scan``). Classic SPAN shifts one
    implied-vol level per underlying, so risk reversals and option calendar spreads carry no
    skew or term-structure risk; CME's SPAN 2 instead revalues on scenarios that move the
    whole volatility surface. In that spirit, with skew scan ``s_u > 0`` and/or term scan
    ``t_u > 0`` every scenario 1-14 (price ``f_k``, vol ``d_k``) is repeated for each shape
    move ``(a, b)`` with ``a`` in {0, +1, -1} (only 0 when ``s_u = 0``), ``b`` in
    {0, +1, -1} (only 0 when ``t_u = 0``), ``(a, b) != (0, 0)``: option ``j`` is revalued at
    ``sigma_j (1 + d_k v) exp(a s_u x_j + b t_u y_j)``, ``x_j = 2 tanh(k_j / (2 sqrt T_j))``
    its skew loading and ``y_j = log(T_j / 30 d)`` its term loading (sticky strike, from
    today's spot; :func:`marginlab.models.vol_surface.shock_loadings`), weight 1. Skew up
    (``a = +1``) raises the vols of strikes above the forward and lowers those below (a put
    skew flattening); term up (``b = +1``) raises the vols of expiries beyond 30 days and
    lowers the shorter ones. Skew only: 16 + 28 = 44 scenarios, numbered 17-30 (skew up,
    in the order of 1-14) and 31-44 (skew down); term only likewise; both: 16 + 8 x 14 =
    128, in the order (skew, term) = (0, +), (0, -), (+, 0), (+, +), (+, -), (-, 0),
    (-, +), (-, -) (:meth:`scenario_table` lists them). The extreme moves 15-16 keep the vol
    and its shape unchanged, as in SPAN. Linear contracts, spot and collateral do not depend
    on the vols, so their risk arrays on the extra scenarios repeat scenarios 1-14 and their
    margin does not change. The worst case is taken over all the scenarios at once (one
    scan, same ties rule: the lowest scenario number among ties, so a book without skew or
    term exposure keeps its classic driver); the driver string names the shape move, e.g.
    ``"BTC 21: price up 2/3 range, vol up, skew down"``. The margin cannot fall: the 16
    classic scenarios are still scanned.

    **Scanning risk** ``SR_u = max(0, max_k R_k)``; the driving scenario is the arg max.

    **Intra-commodity spread charge.** SPAN's scan assumes all expiries of an underlying move
    together; the spread charge covers the basis risk between them. Simple faithful version:
    every holding's delta-equivalent (units of the underlying: ``q x multiplier`` for linear
    contracts and spot, ``q x face / S`` for inverse contracts, ``q x multiplier x Delta_BS``
    for options, ``Delta_BS`` the Black-Scholes delta at today's price) is summed per expiry
    tier (one tier per expiry day; perpetuals, spot and collateral form tier 0). With tier
    deltas ``D_t``, the spreads formed are ``n = min(sum_t max(D_t, 0), sum_t max(-D_t, 0))``
    (long deltas of some tiers against short deltas of others: any greedy pairing at one
    charge rate forms this many) and ``SC_u = c_u x S x n``.

    **Short option minimum** ``SOM_u = m_u x S x sum_{options j} max(-q_j, 0) x
    multiplier_j`` (per short option, calls and puts counted separately).

    **Total.** The SPAN requirement ``R_u = max(SR_u + SC_u, SOM_u)``, summed over
    underlyings (no inter-commodity credit), is the *maintenance* margin, as at CME:
    ``MM = sum_u R_u`` and ``IM = initial_multiplier x MM`` (1.1 by default). ``details``
    (``scanning_risk``, ``spread_charge``, ``short_option_minimum``) are maintenance-level
    amounts; the allocation sums to IM (each contribution times the multiplier).

    ``driver`` is ``"<underlying> <scenario label>"`` of the underlying with the largest
    ``IM_u`` (or ``"<underlying> short option minimum"`` / ``"... intra-commodity spread
    charge"`` when those set it; ``"none"`` when IM is 0). Allocation: when
    ``SR_u + SC_u`` binds, each holding gets its own weighted loss in the driving scenario
    (these sum to ``SR_u``) plus ``SC_u`` in proportion to its absolute delta-equivalent;
    when the SOM binds, each short option gets its own ``m_u S |q| multiplier`` and the other
    holdings 0.

    SOURCES: the 16 scenarios, their order and the 35 % cover of the extreme moves: the
    standard SPAN risk-scenario table (e.g. NSE's SPAN documentation reproduced in
    "Financial Derivatives", Table 12.1: price moves 0, +-1/3, +-2/3, +-1 of the scan range
    with vol +-1, and +-2 with 35 %), and CME's S&P 500 futures example in McMillan,
    *Options as a Strategic Investment*, ch. 34 (scan range $10,000, extreme move
    $7,000 = 35 % x 2 x $10,000). Exchanges set the extreme multiple and cover per product
    (CME Clearing advisory 08-303 lists "Extreme Move Value 3, Coverage 0.33" for some
    NYMEX options). Combined commodity, scan ranges, intra-commodity spreads between
    expiries and the short option minimum: CME Group, "CME SPAN Methodology Overview" and
    the SPAN report documentation ("Risk Arrays", "Intra Spreads", "SOM Tiers"); CME
    advisories (e.g. 20-319) set "the SOM charge per short calls or short puts" as "a
    percentage of the outright margin on one underlying futures contract", i.e. our
    ``short_option_minimum = percentage x price_scan``. Initial vs maintenance: the SPAN
    result is the maintenance requirement (McMillan: "the SPAN requirement ... maintenance
    margin" of $10,000 for the S&P future) and CME sets speculators' initial margin at
    110 % of it (e.g. CME Clearing advisory 16-247: $25 Dow futures spec initial $17,875 vs
    maintenance $16,250), hence the default ``initial_multiplier = 1.1``.

    Not modelled: inter-commodity credits, delivery-month charges, net option value
    (premium) adjustments, CME's tiered spread priorities and composite deltas averaged over
    the scenarios (the delta at today's price is used).

    Examples
    --------
    >>> span = SpanLike({"BTC": 0.12}, {"BTC": 0.25}, short_option_minimum={"BTC": 0.01})
    >>> float(span.scenario_table("BTC").loc[13, "price_move"])  # scenario 14: down 3/3
    -0.12
    """

    price_scan: Any
    vol_scan: Any
    extreme_multiple: float = 2.0
    extreme_cover: float = 0.35
    intra_spread_charge: Any = field(default_factory=dict)
    short_option_minimum: Any = field(default_factory=dict)
    mm_fraction: float | None = None
    horizon_days: float = 0.0
    include_collateral: bool = True
    initial_multiplier: float | None = None
    name: str = "SPAN-like"
    skew_scan: Any = 0.0
    term_scan: Any = 0.0

    def __post_init__(self) -> None:
        sets = object.__setattr__
        mult = check_real("extreme_multiple", self.extreme_multiple, low=0.0, high=10.0,
                          low_open=True)
        sets(self, "extreme_multiple", mult)
        ps = _per_underlying("price_scan", self.price_scan, low=0.0, high=1.0, low_open=True,
                             high_open=True)
        for key, v in _values(ps):
            if v * mult >= 1.0:
                where = f"price_scan[{key}]" if key else "price_scan"
                raise ValueError(f"{where} x extreme_multiple must be < 1 (the extreme down "
                                 f"move must leave a positive price), got {v:g} x {mult:g}")
        sets(self, "price_scan", ps)
        sets(self, "vol_scan", _per_underlying("vol_scan", self.vol_scan, low=0.0, high=1.0))
        sets(self, "extreme_cover", check_real("extreme_cover", self.extreme_cover, low=0.0,
                                               high=1.0))
        sets(self, "intra_spread_charge",
             _per_underlying("intra_spread_charge", self.intra_spread_charge, low=0.0,
                             high=1.0, high_open=True))
        sets(self, "short_option_minimum",
             _per_underlying("short_option_minimum", self.short_option_minimum, low=0.0,
                             high=1.0, high_open=True))
        # IM = initial_multiplier x MM; mm_fraction (the runner's key) is its reciprocal
        if self.initial_multiplier is not None and self.mm_fraction is not None:
            raise ValueError(f"give initial_multiplier or mm_fraction, not both (got "
                             f"{self.initial_multiplier!r} and {self.mm_fraction!r})")
        if self.initial_multiplier is not None:
            m = check_real("initial_multiplier", self.initial_multiplier, low=1.0, high=10.0)
        elif self.mm_fraction is not None:
            m = 1.0 / check_real("mm_fraction", self.mm_fraction, low=0.0, high=1.0,
                                 low_open=True)
        else:
            m = 1.1
        sets(self, "initial_multiplier", m)
        sets(self, "mm_fraction", 1.0 / m)
        sets(self, "skew_scan", _per_underlying("skew_scan", self.skew_scan, low=0.0, high=1.0))
        sets(self, "term_scan", _per_underlying("term_scan", self.term_scan, low=0.0, high=1.0))
        _check_common(self)

    # ------------------------------------------------------------------ scenarios
    def _shape_moves(self, underlying: str | None) -> list[tuple[int, int]]:
        """The volatility-shape moves ``(skew dir, term dir)`` added to scenarios 1-14."""
        def on(name: str, value: Any) -> bool:
            if underlying is None:
                return any(v > 0.0 for _, v in _values(value))
            return _lookup(name, value, underlying, default=0.0) > 0.0

        sdirs = (0, +1, -1) if on("skew_scan", self.skew_scan) else (0,)
        tdirs = (0, +1, -1) if on("term_scan", self.term_scan) else (0,)
        return [(a, b) for a in sdirs for b in tdirs if (a, b) != (0, 0)]

    def scenario_table(self, underlying: str | None = None) -> pd.DataFrame:
        """The scenarios: number, label, moves in scan ranges, weight.

        Columns ``scenario`` (1-16, then 17... for the volatility-shape variants of 1-14 when
        ``skew_scan`` or ``term_scan`` is set: see Notes), ``label``, ``price_scans`` (price
        move in price scan ranges), ``vol_scans`` (+1 up, -1 down, 0 unchanged),
        ``skew_scans`` and ``term_scans`` (+1, -1, 0: the shape move in skew / term scan
        ranges), ``weight``; with ``underlying`` also ``price_move`` (relative),
        ``vol_factor`` (implied-vol level multiplier), ``skew_shock`` and ``term_shock``
        (additive factor shocks) for that underlying's parameters. Without ``underlying``
        the shape variants are listed when any underlying has a non-zero scan.
        """
        m, c = self.extreme_multiple, self.extreme_cover
        u = None if underlying is None else str(underlying).strip().upper()
        rows = []
        for i, (frac, vdir, ext) in enumerate(SPAN_SCENARIOS, start=1):
            f = frac * m if ext else frac
            rows.append({"scenario": i, "label": _span_label(i, frac, vdir, ext, m, c),
                         "price_scans": f, "vol_scans": vdir, "skew_scans": 0,
                         "term_scans": 0, "weight": c if ext else 1.0})
        number = len(SPAN_SCENARIOS)
        for a, b in self._shape_moves(u):
            for frac, vdir, ext in SPAN_SCENARIOS:
                if ext:
                    continue
                number += 1
                rows.append({"scenario": number,
                             "label": _span_label(number, frac, vdir, ext, m, c)
                             + _shape_label(a, b),
                             "price_scans": frac, "vol_scans": vdir, "skew_scans": a,
                             "term_scans": b, "weight": 1.0})
        table = pd.DataFrame(rows)
        if u is not None:
            p = _lookup("price_scan", self.price_scan, u)
            v = _lookup("vol_scan", self.vol_scan, u, default=0.0)
            table["price_move"] = table["price_scans"] * p
            table["vol_factor"] = 1.0 + table["vol_scans"] * v
            table["skew_shock"] = table["skew_scans"] * _lookup("skew_scan", self.skew_scan,
                                                               u, default=0.0)
            table["term_shock"] = table["term_scans"] * _lookup("term_scan", self.term_scan,
                                                               u, default=0.0)
        return table

    def _scan(self, book: Book, market: MarketState) -> tuple[_Prepared, dict[str, dict]]:
        prep = _prepare(book, market, self.horizon_days, self.include_collateral)
        out = {}
        for g in prep.groups:
            inst_cols, coll_cols = _group_columns(prep, g)
            if _has_options(prep, inst_cols):
                _lookup("vol_scan", self.vol_scan, g)  # required: raises naming it
            tab = self.scenario_table(g)
            moves = tab["price_move"].to_numpy()
            vf = tab["vol_factor"].to_numpy()
            w = tab["weight"].to_numpy()
            s0 = market.price(g)
            n_i = len(inst_cols)
            shaped = len(tab) > len(SPAN_SCENARIOS)
            U = _unit_grid(prep, market, inst_cols, coll_cols, s0,
                           np.tile(moves, (n_i, 1)), np.tile(vf, (n_i, 1)), moves,
                           skew=tab["skew_shock"].to_numpy() if shaped else None,
                           term=tab["term_shock"].to_numpy() if shaped else None)
            cols = np.concatenate([inst_cols, coll_cols])
            out[g] = {"cols": cols, "U": U, "w": w, "s0": s0,
                      "risk": _losses(prep, cols, U) * w, "labels": tab["label"].to_numpy()}
        return prep, out

    def risk_arrays(self, book: Book, market: MarketState) -> dict[str, np.ndarray]:
        """Each account's SPAN risk array per underlying held: shape (n_accounts, K), USD.

        ``K`` is 16, or the length of :meth:`scenario_table` for the underlying when it has
        a skew or term scan. Entry ``k`` is the account's loss (positive) in scenario
        ``k + 1`` times the scenario's weight (``extreme_cover`` for 15-16), rows in
        ``book.account_ids`` order.
        """
        _, scan = self._scan(book, market)
        return {g: d["risk"] for g, d in scan.items()}

    # ------------------------------------------------------------------ margin
    def compute(self, book: Book, market: MarketState, *,
                scenarios: Any = None) -> MarginResult:
        """SPAN-like IM and MM of every account (``scenarios`` is ignored: see module)."""
        prep, scan = self._scan(book, market)
        n_acc = book.n_accounts
        im = np.zeros(n_acc)
        tot_sr, tot_sc, tot_som = np.zeros(n_acc), np.zeros(n_acc), np.zeros(n_acc)
        driver = np.full(n_acc, "none", dtype=object)
        best = np.zeros(n_acc)
        contrib = np.zeros(len(prep.nnz_qty))
        for g, d in scan.items():
            cols, U, w, s0, risk = d["cols"], d["U"], d["w"], d["s0"], d["risk"]
            sr, k = _worst(risk, np.zeros(risk.shape[1]))
            delta, tier = self._deltas(prep, market, cols, s0)
            sel, loc = _nnz_in(prep, cols)
            acc, q = prep.nnz_acc[sel], prep.nnz_qty[sel]
            # spread charge: tier deltas per account
            n_tiers = int(tier.max()) + 1 if len(tier) else 1
            dq = q * delta[loc]
            D = np.zeros((n_acc, n_tiers))
            np.add.at(D, (acc, tier[loc]), dq)
            spreads = np.minimum(np.clip(D, 0.0, None).sum(1), np.clip(-D, 0.0, None).sum(1))
            rate_sc = _lookup("intra_spread_charge", self.intra_spread_charge, g, default=0.0)
            sc = rate_sc * s0 * spreads
            # short option minimum
            opt = self._is_option(prep, cols)
            mult = self._multiplier(prep, cols)
            short_units = np.where(opt[loc], np.maximum(-q, 0.0) * mult[loc], 0.0)
            rate_som = _lookup("short_option_minimum", self.short_option_minimum, g,
                               default=0.0)
            som_own = rate_som * s0 * short_units
            som = np.bincount(acc, weights=som_own, minlength=n_acc)
            im_g = np.maximum(sr + sc, som)
            im += im_g
            tot_sr += sr
            tot_sc += sc
            tot_som += som
            # allocation
            som_binds = som > sr + sc
            own_loss = np.where(sr[acc] > 0.0, -q * U[loc, k[acc]] * w[k[acc]], 0.0)
            absd = np.abs(dq)
            tot_absd = np.bincount(acc, weights=absd, minlength=n_acc)
            share = np.divide(absd, tot_absd[acc], out=np.zeros_like(absd),
                              where=tot_absd[acc] > 0)
            contrib[sel] = np.where(som_binds[acc], som_own, own_loss + sc[acc] * share)
            labels = np.where(som_binds, f"{g} short option minimum",
                              np.where(sr > 0.0, np.char.add(f"{g} ", d["labels"][k].astype(str)),
                                       f"{g} intra-commodity spread charge")).astype(object)
            _pick_driver(driver, best, im_g, labels)
        details = {"scanning_risk": tot_sr, "spread_charge": tot_sc,
                   "short_option_minimum": tot_som}
        mult = self.initial_multiplier
        return _result(self.name, book, market, prep, mult * im, im, driver, mult * contrib,
                       details)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _is_option(prep: _Prepared, cols: np.ndarray) -> np.ndarray:
        t = np.full(len(cols), "", dtype=object)
        inst = prep.is_inst[cols]
        t[inst] = prep.types[cols[inst]]
        return np.isin(t, OPTION_TYPES)

    @staticmethod
    def _multiplier(prep: _Prepared, cols: np.ndarray) -> np.ndarray:
        mult = np.ones(len(cols))
        inst = prep.is_inst[cols]
        mult[inst] = np.asarray(prep.arrays["multiplier"])[cols[inst]]
        return mult

    @staticmethod
    def _deltas(prep: _Prepared, market: MarketState, cols: np.ndarray,
                s0: float) -> tuple[np.ndarray, np.ndarray]:
        """Delta-equivalent (units of the underlying per unit held) and expiry tier per col."""
        delta = np.ones(len(cols))
        tier_days = np.zeros(len(cols))
        inst = np.flatnonzero(prep.is_inst[cols])
        if len(inst):
            c = cols[inst]
            t = prep.types[c]
            a = prep.arrays
            mult = np.asarray(a["multiplier"])[c]
            d = np.where(np.isin(t, INVERSE_TYPES), mult / s0, mult)
            opt = np.isin(t, OPTION_TYPES)
            if opt.any():
                g = black_scholes_greeks(s0, np.asarray(a["strike"])[c][opt],
                                         np.asarray(a["expiry"])[c][opt],
                                         np.asarray(a["implied_vol"])[c][opt], market.rate, 0.0,
                                         is_call=np.asarray(a["is_call"])[c][opt])
                d[opt] = mult[opt] * np.asarray(g.delta)
            delta[inst] = d
            dated = np.isin(t, DATED_TYPES)
            tier_days[inst] = np.where(dated, np.round(np.asarray(a["expiry"])[c]
                                                       * _DAYS_PER_YEAR), 0.0)
        _, tier = np.unique(tier_days, return_inverse=True)
        return delta, tier.reshape(-1)


def _has_options(prep: _Prepared, inst_cols: np.ndarray) -> bool:
    return bool(np.isin(prep.types[inst_cols], OPTION_TYPES).any()) if len(inst_cols) else False


# Deribit-like lives in its own module (it uses the engine above); re-exported here.
from .grid_deribit import DeribitLike  # noqa: E402
