"""Portfolio risk of a whole book: revaluation, per-account VaR / ES and their allocation.

The pipeline (see :mod:`marginlab.simulate.revalue` for the kernels):

1. :func:`revalue` prices every unique instrument once per scenario, and every non-stable
   collateral asset, into the unit P&L matrix ``(n_rows, n_scenarios)``.
2. :func:`portfolio_risk` aggregates it to accounts through the sparse holdings (positions
   and collateral) and returns each account's VaR and ES at several levels, with Monte Carlo
   error bars and the Euler allocation to each holding, without forming the
   ``(n_scenarios, n_accounts)`` P&L matrix (memory: the unit P&L plus O(threads x
   n_scenarios)). ``account_block`` streams the accounts in blocks (e.g. to report progress
   or bound the result arrays of a huge book).
3. :func:`incremental_margin` answers "what does this trade do to the account's margin".

Losses are positive: ``loss = -P&L`` in USD over the scenario set's horizon.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from marginlab.simulate.pricing import black_scholes_price
from marginlab.simulate.revalue import (
    KIND_INVERSE,
    KIND_LINEAR,
    KIND_OPTION,
    account_risk,
    unit_pnl,
)

from ._summary import Summary, portfolio_risk_summary, short_repr
from .basis import basis_loadings
from .book import INVERSE_TYPES, OPTION_TYPES, PERP_TYPES, STABLECOINS, Book
from .scenarios import MarketState, ScenarioSet
from .vol_surface import shock_loadings

__all__ = [
    "UnitPnL",
    "PortfolioRisk",
    "revalue",
    "holdings_matrix",
    "account_pnl",
    "account_equity",
    "gross_notional",
    "position_notional",
    "portfolio_risk",
    "incremental_margin",
    "FUNDING_INTERVALS_PER_YEAR",
    "instrument_arrays",
]

FUNDING_INTERVALS_PER_YEAR = 3 * 365
"""Perpetual funding is exchanged every 8 hours."""


@dataclass(frozen=True, eq=False)
class UnitPnL:
    """USD P&L of one unit of each instrument and collateral asset in each scenario.

    Attributes
    ----------
    pnl : ndarray, shape (n_instruments + n_assets, n_scenarios)
        Rows: the book's instruments in table order, then its collateral assets.
    row_names : tuple of str
        Instrument ids, then asset names.
    n_instruments : int
        Number of instrument rows.
    scenarios : ScenarioSet
        The scenarios the P&L was computed on.
    """

    pnl: np.ndarray
    row_names: tuple[str, ...]
    n_instruments: int
    scenarios: ScenarioSet


def _instrument_arrays(book: Book, market: MarketState, scenarios: ScenarioSet,
                       also_held: np.ndarray | None = None):
    # ``also_held``: instrument columns that must be valued although nobody in the book holds
    # them (what-if trades).
    inst = book.instruments
    types = inst["type"].to_numpy(str)
    und_names = inst["underlying"].to_numpy(str)
    held = np.diff(book.holdings.tocsc().indptr) > 0  # instruments someone holds
    if also_held is not None:
        held[also_held] = True
    covered = np.isin(und_names, scenarios.underlyings)
    missing = held & ~covered
    if missing.any():
        u = str(und_names[np.flatnonzero(missing)[0]])
        raise ValueError(f"positions on {u!r} but the scenarios only cover "
                         f"{list(scenarios.underlyings)}")
    und = np.array([scenarios.column(u) if c else 0 for u, c in zip(und_names, covered,
                                                                    strict=True)],
                   dtype=np.int64)
    is_opt = np.isin(types, OPTION_TYPES)
    is_inv = np.isin(types, INVERSE_TYPES)
    is_perp = np.isin(types, PERP_TYPES)
    kind = np.where(is_opt, KIND_OPTION, np.where(is_inv, KIND_INVERSE, KIND_LINEAR))
    mult = np.where(is_inv, inst["face_value"].to_numpy(float), inst["multiplier"].to_numpy(float))
    # Instruments nobody holds on underlyings without scenarios: a zero row.
    kind = np.where(covered, kind, KIND_LINEAR)
    mult = np.where(covered, mult, 0.0)
    is_opt &= covered
    s0 = market.prices(scenarios.underlyings)
    vol = np.zeros(len(inst))
    strike = np.nan_to_num(inst["strike"].to_numpy(float), nan=1.0)
    expiry = np.nan_to_num(inst["expiry"].to_numpy(float), nan=0.0)
    # Options nobody holds on covered underlyings: value them too when the market has a vol,
    # so every row is meaningful whoever holds what.
    u_held = set(und_names[is_opt & held])
    u_all = u_held | {u for u in set(und_names[is_opt & ~held]) if market.has_vol(str(u))}
    for u in sorted(u_all):
        sel = (und_names == u) & is_opt
        vol[sel] = market.option_vols(str(u), strike[sel], expiry[sel])
    skew_ld, term_ld = shock_loadings(np.where(is_opt, strike, 1.0), expiry, s0[und],
                                      market.rate)
    n_funding = scenarios.horizon * FUNDING_INTERVALS_PER_YEAR
    rate = inst["funding_rate"].to_numpy(float)
    # Funding per unit over the horizon, USD now: linear on the notional mult x S0, inverse on
    # the face value (paid in coin, face / S0 coins, converted at the scenario price in-kernel).
    funding = np.where(is_perp, rate * n_funding * np.where(is_inv, mult, mult * s0[und]), 0.0)
    return dict(kind=kind, underlying=und, multiplier=mult, strike=strike, expiry=expiry,
                is_call=inst["option_type"].to_numpy(str) == "call", implied_vol=vol,
                funding=funding, skew_loading=np.where(is_opt, skew_ld, 0.0),
                term_loading=np.where(is_opt, term_ld, 0.0),
                basis_loading=np.where(covered, basis_loadings(types, expiry), 0.0),
                funding_loading=np.where(is_perp & covered, 1.0, 0.0)), s0


instrument_arrays = _instrument_arrays
"""Public name of the per-instrument kernel arrays (used by the scenario-grid methods)."""


def revalue(book: Book, market: MarketState, scenarios: ScenarioSet, *,
            approx: bool = False, also_held: np.ndarray | None = None) -> UnitPnL:
    """Unit P&L of every instrument and collateral asset of ``book`` in every scenario.

    Parameters
    ----------
    book : Book
    market : MarketState
        Today's prices and implied vols.
    scenarios : ScenarioSet
        Prices and vol shocks at the horizon.
    approx : bool
        Delta-gamma-vega-theta approximation of options instead of full revaluation.
    also_held : array of int, optional
        Instrument columns to value as if held (what-if trades); by default instruments that
        nobody holds may get a zero row when their underlying has no scenarios.
    """
    arrays, s0 = _instrument_arrays(book, market, scenarios, also_held)
    u_inst = unit_pnl(scenarios.prices, scenarios.vol_shock, s0, horizon=scenarios.horizon,
                      rate=market.rate, approx=approx, skew_shock=scenarios.skew_shock,
                      term_shock=scenarios.term_shock, basis_shock=scenarios.basis_shock,
                      funding_shock=scenarios.funding_shock, **arrays)
    rows = [u_inst]
    for asset in book.assets:
        if asset in STABLECOINS:
            rows.append(np.zeros((1, scenarios.n_scenarios)))
        else:
            j = scenarios.column(asset) if asset in scenarios.underlyings else None
            if j is None:
                raise ValueError(f"collateral asset {asset!r} has no scenario prices; the "
                                 f"scenarios cover {list(scenarios.underlyings)}")
            rows.append((scenarios.prices[:, j] - s0[j])[None, :])
    pnl = np.concatenate(rows, axis=0) if len(rows) > 1 else u_inst
    names = tuple(book.instruments["instrument_id"]) + tuple(book.assets)
    return UnitPnL(pnl, names, book.n_instruments, scenarios)


def holdings_matrix(book: Book) -> sp.csr_matrix:
    """Quantities of positions and collateral, shape (n_accounts, n_instruments + n_assets)."""
    h = sp.hstack([book.holdings, book.collateral_holdings], format="csr")
    h.sort_indices()
    return h


def account_pnl(book: Book, unit: UnitPnL, accounts: np.ndarray | slice | None = None
                ) -> np.ndarray:
    """Materialised P&L matrix ``(n_scenarios, n_selected_accounts)`` (small books)."""
    h = holdings_matrix(book)
    if accounts is not None:
        h = h[accounts]
    return np.asarray((h @ unit.pnl).T)


def _instrument_spots(book: Book, market: MarketState) -> np.ndarray:
    """Today's spot of each instrument's underlying (NaN where nobody holds it)."""
    und = book.instruments["underlying"].to_numpy(str)
    held = np.zeros(book.n_instruments, bool)
    held[book.position_instrument] = True
    out = np.full(book.n_instruments, np.nan)
    for u in sorted(set(und[held])):
        out[und == u] = market.price(str(u))
    return out


def account_equity(book: Book, market: MarketState) -> pd.DataFrame:
    """Per account: collateral value, haircut collateral value, unrealised P&L, equity.

    ``equity = collateral_value + upnl``; ``margin_balance = haircut_value + upnl``
    (collateral counted after haircuts, as exchanges do for multi-asset margin). Unrealised
    P&L marks each position to today's spot (and Black-76 value for options) against its
    entry price: linear ``q m (S - E)``, inverse ``q F (1/E - 1/S) S``, option
    ``q m (V - E)``, coin-settled option ``q m (V/S - E) S``.
    """
    inst = book.instruments
    types = inst["type"].to_numpy(str)
    s = _instrument_spots(book, market)
    opt = np.isin(types, OPTION_TYPES) & np.isfinite(s)
    value = np.zeros(len(inst))
    if opt.any():
        vol = np.full(len(inst), 0.2)
        und = inst["underlying"].to_numpy(str)
        for u in sorted(set(und[opt])):
            sel = opt & (und == u)
            vol[sel] = market.option_vols(str(u), inst["strike"].to_numpy(float)[sel],
                                          inst["expiry"].to_numpy(float)[sel])
        value[opt] = black_scholes_price(
            s[opt], inst["strike"].to_numpy(float)[opt], inst["expiry"].to_numpy(float)[opt],
            vol[opt], market.rate, 0.0, is_call=inst["option_type"].to_numpy(str)[opt] == "call")
    pi, pa = book.position_instrument, book.position_account
    q = book.positions["quantity"].to_numpy(float)
    e = book.positions["entry_price"].to_numpy(float)
    t = types[pi]
    m = inst["multiplier"].to_numpy(float)[pi]
    face = inst["face_value"].to_numpy(float)[pi]
    sp_ = s[pi]
    v = value[pi]
    upnl = np.select(
        [np.isin(t, INVERSE_TYPES), t == "option", t == "inverse_option"],
        [q * face * (1.0 / e - 1.0 / sp_) * sp_, q * m * (v - e), q * m * (v / sp_ - e) * sp_],
        default=q * m * (sp_ - e),
    )
    upnl_acc = np.bincount(pa, weights=upnl, minlength=book.n_accounts)
    px = market.prices(book.assets) if book.assets else np.zeros(0)
    coll = book.collateral_holdings @ px
    hair = book.haircut_holdings @ px
    return pd.DataFrame({"account_id": book.account_ids, "collateral_value": coll,
                         "haircut_value": hair, "upnl": upnl_acc, "equity": coll + upnl_acc,
                         "margin_balance": hair + upnl_acc})


def position_notional(book: Book, market: MarketState) -> np.ndarray:
    """USD notional of each position row at today's prices, signed like the quantity.

    Linear contracts and options: ``q m S`` (options on the underlying's notional); inverse
    contracts: ``q F`` (the face value is USD)."""
    inst = book.instruments
    pi = book.position_instrument
    t = inst["type"].to_numpy(str)[pi]
    q = book.positions["quantity"].to_numpy(float)
    s = _instrument_spots(book, market)[pi]
    m = inst["multiplier"].to_numpy(float)[pi]
    face = inst["face_value"].to_numpy(float)[pi]
    return np.where(np.isin(t, INVERSE_TYPES), q * face, q * m * s)


def gross_notional(book: Book, market: MarketState) -> np.ndarray:
    """Sum of |position notional| per account, USD, shape (n_accounts,)."""
    return np.bincount(book.position_account, weights=np.abs(position_notional(book, market)),
                       minlength=book.n_accounts)


@dataclass(frozen=True, eq=False, repr=False)
class PortfolioRisk:
    """Per-account VaR and ES at several levels, with error bars and Euler allocations.

    Arrays ``var``, ``es``, ``var_lo``, ``var_hi``, ``var_se``, ``es_se``, ``es_lo``,
    ``es_hi`` have shape (n_levels, n_accounts), USD losses over ``horizon`` years;
    ``alloc_var``, ``alloc_es`` have shape (n_levels, n_holdings) where holding ``k`` is
    (``holding_account[k]``, ``holding_row[k]``): a row of the unit P&L (instrument or
    collateral asset). Allocations sum over an account's holdings to its VaR / ES.
    """

    levels: np.ndarray
    account_ids: np.ndarray
    var: np.ndarray
    es: np.ndarray
    var_lo: np.ndarray
    var_hi: np.ndarray
    var_se: np.ndarray
    es_se: np.ndarray
    es_lo: np.ndarray
    es_hi: np.ndarray
    alloc_var: np.ndarray | None
    alloc_es: np.ndarray | None
    holding_account: np.ndarray
    holding_row: np.ndarray
    holding_quantity: np.ndarray
    row_names: tuple[str, ...]
    horizon: float
    n_scenarios: int
    ci: float

    def to_frame(self) -> pd.DataFrame:
        """One row per account and level."""
        n_lv, n_acc = self.var.shape
        cols = {"account_id": np.tile(self.account_ids, n_lv),
                "level": np.repeat(self.levels, n_acc)}
        for name in ("var", "var_lo", "var_hi", "var_se", "es", "es_lo", "es_hi", "es_se"):
            cols[name] = getattr(self, name).reshape(-1)
        return pd.DataFrame(cols)

    def allocation_frame(self) -> pd.DataFrame:
        """One row per holding and level: quantity and its VaR / ES contribution."""
        if self.alloc_es is None:
            raise ValueError("allocations were not computed (allocate=False)")
        n_lv, nnz = self.alloc_es.shape
        names = np.asarray(self.row_names, dtype=object)
        return pd.DataFrame({
            "account_id": np.tile(self.account_ids[self.holding_account], n_lv),
            "holding": np.tile(names[self.holding_row], n_lv),
            "quantity": np.tile(self.holding_quantity, n_lv),
            "level": np.repeat(self.levels, nnz),
            "var_contribution": self.alloc_var.reshape(-1),
            "es_contribution": self.alloc_es.reshape(-1),
        })

    def summary(self, top: int = 5) -> Summary:
        """Totals and Monte Carlo precision per level, and the largest accounts with their
        error bars; a :class:`~marginlab.models._summary.Summary` (``print`` it, or let a
        notebook render it; ``as_frame()`` is the per-level table)."""
        return portfolio_risk_summary(self, top)

    def __repr__(self) -> str:
        return short_repr(self, accounts=len(self.account_ids),
                          levels=", ".join(f"{v:g}" for v in np.atleast_1d(self.levels)),
                          horizon_days=float(self.horizon) * 365.0, n_scenarios=self.n_scenarios)

    def _repr_html_(self) -> str:
        return self.summary().as_html()


def portfolio_risk(
    book: Book,
    market: MarketState,
    scenarios: ScenarioSet | UnitPnL,
    *,
    levels: float | Sequence[float] = (0.99, 0.975),
    ci: float = 0.95,
    allocate: bool = True,
    approx: bool = False,
    account_block: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PortfolioRisk:
    """VaR, ES, error bars and Euler allocations for every account of a book.

    Parameters
    ----------
    book : Book
    market : MarketState
    scenarios : ScenarioSet or UnitPnL
        Scenarios (revalued here) or an already computed unit P&L.
    levels : float or sequence of float
        Confidence levels, e.g. (0.99, 0.975).
    ci : float
        Confidence of the error-bar intervals.
    allocate : bool
        Compute the Euler allocation to every holding.
    approx : bool
        Delta-gamma-vega approximation of options (ignored when a UnitPnL is given).
    account_block : int, optional
        Process accounts in blocks of this size (results are identical; see module notes).
    progress : callable, optional
        Called as ``progress(done_accounts, n_accounts)`` after each block.

    Notes
    -----
    Weighted scenario sets (``scenarios.weights``, importance sampling) use the weighted
    estimators of :mod:`marginlab.simulate.weighted`: weighted order statistics for VaR,
    Acerbi-Tasche ES with probability masses, delta-method ES standard error, Woodruff VaR
    interval, weighted Euler allocation. Randomised QMC sets (``scenarios.randomizations =
    R > 1``) report VaR, ES and allocations from all scenarios and standard errors from the
    spread of the R per-randomisation estimates (``sd / sqrt(R)``), intervals with Student-t
    quantiles on R - 1 degrees of freedom.
    """
    unit = scenarios if isinstance(scenarios, UnitPnL) else revalue(book, market, scenarios,
                                                                    approx=approx)
    h = holdings_matrix(book)
    n_acc = h.shape[0]
    block = n_acc if account_block is None else int(account_block)
    if block < 1:
        raise ValueError(f"account_block must be >= 1, got {account_block!r}")
    parts = []
    for lo in range(0, max(n_acc, 1), block):
        hi = min(lo + block, n_acc)
        hb = h[lo:hi]
        parts.append(_block_risk(unit, hb, levels, ci, allocate))
        if progress is not None:
            progress(hi, n_acc)
    out = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
    coo_acc = np.repeat(np.arange(n_acc), np.diff(h.indptr))
    return PortfolioRisk(
        levels=np.atleast_1d(np.asarray(levels, float)), account_ids=book.account_ids,
        var=out["var"], es=out["es"], var_lo=out["var_lo"], var_hi=out["var_hi"],
        var_se=out["var_se"], es_se=out["es_se"], es_lo=out["es_lo"], es_hi=out["es_hi"],
        alloc_var=out.get("alloc_var"), alloc_es=out.get("alloc_es"),
        holding_account=coo_acc, holding_row=h.indices.astype(np.int64),
        holding_quantity=h.data.copy(), row_names=unit.row_names, horizon=unit.scenarios.horizon,
        n_scenarios=unit.pnl.shape[1], ci=ci)


def _block_risk(unit: UnitPnL, hb: sp.csr_matrix, levels, ci: float, allocate: bool) -> dict:
    """Risk of one block of accounts: the (weighted) estimators on the whole scenario set;
    for randomised QMC (``randomizations = R > 1``) the error bars are replaced by the
    spread between the R randomisations."""
    sc = unit.scenarios
    res = account_risk(unit.pnl, hb.indptr, hb.indices, hb.data, levels, ci=ci,
                       allocate=allocate, weights=sc.weights)
    r = sc.randomizations
    if r > 1:
        from scipy.stats import t as student_t

        m = unit.pnl.shape[1] // r
        var_g, es_g = [], []
        for g in range(r):
            wg = None if sc.weights is None else sc.weights[g * m:(g + 1) * m]
            rg = account_risk(np.ascontiguousarray(unit.pnl[:, g * m:(g + 1) * m]), hb.indptr,
                              hb.indices, hb.data, levels, ci=ci, allocate=False, weights=wg)
            var_g.append(rg["var"])
            es_g.append(rg["es"])
        q = float(student_t.ppf(0.5 + 0.5 * ci, r - 1))
        for name, groups in (("var", var_g), ("es", es_g)):
            se = np.std(np.stack(groups), axis=0, ddof=1) / np.sqrt(r)
            res[f"{name}_se"] = se
            res[f"{name}_lo"] = res[name] - q * se
            res[f"{name}_hi"] = res[name] + q * se
    return res


def incremental_margin(
    book: Book,
    market: MarketState,
    scenarios: ScenarioSet | UnitPnL,
    trades: pd.DataFrame,
    *,
    level: float = 0.99,
    measure: str = "es",
) -> pd.DataFrame:
    """Change of each affected account's VaR or ES from adding what-if trades.

    ``trades`` has columns ``account_id``, ``instrument_id``, ``quantity`` (instruments of the
    book). The same scenarios value the account before and after, so the difference carries no
    independent Monte Carlo noise. Returns ``account_id``, ``before``, ``after``, ``change``.
    """
    if measure not in ("es", "var"):
        raise ValueError(f"measure must be 'es' or 'var', got {measure!r}")
    for col in ("account_id", "instrument_id", "quantity"):
        if col not in trades.columns:
            raise ValueError(f"trades is missing column {col!r}")
    acc_index = pd.Index(book.account_ids)
    inst_index = pd.Index(book.instruments["instrument_id"])
    ai = acc_index.get_indexer(trades["account_id"].astype(str))
    ii = inst_index.get_indexer(trades["instrument_id"].astype(str))
    if np.any(ai < 0):
        bad = trades["account_id"].iloc[int(np.flatnonzero(ai < 0)[0])]
        raise ValueError(f"trades: unknown account_id {bad!r}")
    if np.any(ii < 0):
        bad = trades["instrument_id"].iloc[int(np.flatnonzero(ii < 0)[0])]
        raise ValueError(f"trades: unknown instrument_id {bad!r}")
    if isinstance(scenarios, UnitPnL):
        unit = scenarios
    else:
        unit = revalue(book, market, scenarios, also_held=np.unique(ii))
    q = trades["quantity"].to_numpy(float)
    if not np.all(np.isfinite(q)):
        raise ValueError("trades: quantity must be finite")
    h = holdings_matrix(book)
    accounts = np.unique(ai)
    before = h[accounts]
    delta = sp.csr_matrix((q, (np.searchsorted(accounts, ai), ii)), shape=before.shape)
    after = (before + delta).tocsr()
    after.sort_indices()
    wts = unit.scenarios.weights
    res_b = account_risk(unit.pnl, before.indptr, before.indices, before.data, level,
                         allocate=False, weights=wts)
    res_a = account_risk(unit.pnl, after.indptr, after.indices, after.data, level,
                         allocate=False, weights=wts)
    b = res_b[measure][0]
    a = res_a[measure][0]
    return pd.DataFrame({"account_id": book.account_ids[accounts], "before": b, "after": a,
                         "change": a - b})
