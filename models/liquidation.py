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

This module holds the entry point :func:`simulate_liquidations` (argument checks, paths, the
kernel runs) and the synthetic book :func:`perp_book`. The rules and the impact
(:class:`LiquidationRules`, :class:`PriceImpact`) live in
:mod:`marginlab.models.liquidation_rules`, the result (:class:`CascadeResult`, :func:`var_es`)
in :mod:`marginlab.models.cascade_result`, and the book conversion in
:mod:`marginlab.models._liquidation_inputs`; all are importable from here too.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate import cascade as K
from marginlab.simulate import simulate_paths
from marginlab.simulate.rng import normalize_seed

from . import liquidation_options as _lo
from ._liquidation_inputs import (  # noqa: F401  (re-exported: importable from here)
    _SIMULATED_TYPES,
    _convert,
    _Converted,
    _tables_for,
    _to_cross,
)
from ._validate import check_real
from ._warn import warn as _warn
from .book import Book
from .cascade_result import _HOURS_PER_YEAR, CascadeResult, var_es  # noqa: F401
from .liquidation_rules import (  # noqa: F401  (re-exported: importable from here)
    LiquidationRules,
    PriceImpact,
    _per_asset,
    _same,
    _scaled,
)
from .scenarios import MarketState

__all__ = [
    "PriceImpact",
    "LiquidationRules",
    "CascadeResult",
    "simulate_liquidations",
    "perp_book",
    "var_es",
]


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


def _state_today(book: Book, conv: Any, rules: LiquidationRules, dt: float, n_paths: int,
                 n_steps: int) -> tuple[np.ndarray, ...]:
    """Simulated accounts' ids, margin balance, maintenance margin and equity today (USD;
    options at model value with their short-option margin) and the kernel's option rules."""
    mb, mm, eq = K.margin_state(conv.accounts, conv.tables, conv.s0)
    orules = None if conv.options is None else _lo.option_rules(rules, dt)
    if conv.options is not None:  # option values (mark-to-model) and short-option margin
        ov, omm = _lo.initial_option_margin(conv.options, orules, conv.tables, conv.s0,
                                            mb.size, n_paths, n_steps)
        mb, mm, eq = mb + ov, mm + omm, eq + ov
    return book.account_ids[conv.keep], mb, mm, eq, orules


def _under_water(book: Book, conv: Any, rules: LiquidationRules, dt: float,
                 n_steps: int) -> pd.DataFrame:
    """Accounts of ``book`` (converted as ``conv``) whose margin balance is already below
    ``liquidation_fraction`` x maintenance margin at today's prices, which
    :func:`simulate_liquidations` refuses to simulate: ``account_id``, ``equity``,
    ``margin_balance``, ``maintenance_margin`` (USD), one row each (empty when none)."""
    ids, mb, mm, eq, _ = _state_today(book, conv, rules, dt, 1, n_steps)
    bad = mb < rules.liquidation_fraction * mm
    return pd.DataFrame({"account_id": ids[bad].astype(str), "equity": eq[bad],
                         "margin_balance": mb[bad], "maintenance_margin": mm[bad]})


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
    ids, mb, mm, eq, orules = _state_today(book, conv, rules, dt, n_paths, n_steps)
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
