r"""Per-account liquidation profile: when and how likely each account is liquidated.

For cross and portfolio-margined accounts no single liquidation price answers "when and how
likely will this account be liquidated?"; :func:`liquidation_profile` answers it from the
paths of :func:`~marginlab.models.liquidation.simulate_liquidations`, one row per account:
the probabilities of a margin call, a liquidation, a bankruptcy and an ADL within the
horizon (with binomial standard errors), the distribution of the time to liquidation (days)
and of the mark at which it happens (a range, not a point), and the mean and expected
shortfall of the account's bad debt.

Every quantity is per path of the cascade simulation, so it includes the feedback of other
accounts' liquidations (price impact), the insurance fund and ADL. Without impact and with
an infinite insurance fund, accounts do not interact: each account's profile then depends
only on its own holdings and the paths (what a batch run split in account blocks needs).

Units: USD, prices in USD, time in days (``horizon_days``; a step is ``horizon_days /
n_steps``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate import cascade as K
from marginlab.simulate import simulate_paths

from ._validate import check_real
from .book import Book
from .liquidation import (
    CascadeResult,
    LiquidationRules,
    PriceImpact,
    _convert,
    _under_water,
    simulate_liquidations,
    var_es,
)
from .scenarios import MarketState

__all__ = ["liquidation_profile", "profile_frame", "PROFILE_COLUMNS"]

_DAYS_PER_YEAR = 365.0

PROFILE_COLUMNS = {
    "account_id": "account id",
    "simulated": "False for an account without positions (never liquidated; zeros and NaN)",
    "reference_asset": "asset of the account's first position: the liquidation price's asset",
    "equity": "equity today (USD): collateral in full plus unrealised P&L",
    "margin_ratio": "margin balance / maintenance margin today",
    "p_margin_call": "P(margin balance < maintenance margin at some step within the horizon)",
    "p_liquidation": "P(liquidated within the horizon)",
    "p_bankruptcy": "P(equity < 0 after a liquidation within the horizon)",
    "p_adl": "P(auto-deleveraged as a counterparty within the horizon)",
    "se_*": "binomial standard error of p_*: sqrt(p (1 - p) / n_paths)",
    "time_to_liquidation_days_q*": "quantiles of the time of the first liquidation (days "
                                   "from today), over the paths on which it is liquidated",
    "mean_time_to_liquidation_days": "its mean",
    "liquidation_price_q*": "quantiles of the mark (USD) of the reference asset that the "
                            "first liquidation saw, over the paths on which it is liquidated",
    "bad_debt_mean": "mean over all paths of the deficit the account leaves (USD; paid by "
                     "the fund, the exchange or ADL)",
    "bad_debt_es": "expected shortfall at `level` of that deficit over all paths (USD)",
    "final_equity_mean": "mean equity at the horizon (USD, after any liquidation)",
}
"""The columns of :func:`liquidation_profile` (``*``: one per quantile, e.g. ``q5``, ``q50``,
``q95`` for 0.05, 0.5, 0.95)."""


def _quantile_label(q: float) -> str:
    return f"q{100.0 * q:g}"


def _check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    if isinstance(quantiles, (str, bytes)) or not isinstance(quantiles, Sequence) or not len(
            quantiles):
        raise TypeError(f"quantiles must be a non-empty sequence of numbers in [0, 1], got "
                        f"{quantiles!r}")
    return tuple(check_real(f"quantiles[{k}]", q, low=0.0, high=1.0)
                 for k, q in enumerate(quantiles))


def profile_frame(result: CascadeResult, *, quantiles: Sequence[float] = (0.05, 0.5, 0.95),
                  level: float = 0.99, reference: dict[str, str] | None = None
                  ) -> pd.DataFrame:
    """The profile of the accounts tracked by a :class:`CascadeResult` (``track=``).

    Parameters
    ----------
    result : CascadeResult
        From :func:`simulate_liquidations` with ``track`` set.
    quantiles : sequence of float
        Quantiles of the time to liquidation and of the liquidation price.
    level : float
        Level of the expected shortfall of the bad debt, in (0, 1).
    reference : mapping of str to str, optional
        Account id -> reference asset, for cross-margin accounts (one-position accounts
        have theirs in ``result.initial``).

    Returns
    -------
    pandas.DataFrame
        One row per tracked account, columns :data:`PROFILE_COLUMNS`.
    """
    qs = _check_quantiles(quantiles)
    level = check_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    acc = result.raw.accounts  # (n_paths, n_tracked, fields)
    n = result.n_paths
    f = K.TRACK_FIELDS.index
    init = result.initial.set_index("account_id")
    rows = init.loc[list(result.tracked)]
    out = pd.DataFrame({"account_id": np.asarray(result.tracked, dtype=object),
                        "simulated": True})
    # reference asset: the asset of the account's first position
    if "asset" in rows.columns:
        out["reference_asset"] = rows["asset"].to_numpy(object)
    else:
        out["reference_asset"] = np.asarray(
            [None if reference is None else reference.get(a) for a in result.tracked],
            dtype=object)
    out["equity"] = rows["equity"].to_numpy(float)
    out["margin_ratio"] = rows["margin_ratio"].to_numpy(float)
    step_days = result.dt * _DAYS_PER_YEAR
    for name, field in (("margin_call", "call_step"), ("liquidation", "liquidation_step"),
                        ("bankruptcy", "bankruptcy_step"), ("adl", "adl_step")):
        p = (acc[:, :, f(field)] >= 0).mean(axis=0) if n else np.zeros(acc.shape[1])
        out[f"p_{name}"] = p
        out[f"se_{name}"] = np.sqrt(p * (1.0 - p) / n)
    step = acc[:, :, f("liquidation_step")]
    liq = step >= 0
    t_days = np.where(liq, step * step_days, np.nan)
    price = np.where(liq, acc[:, :, f("liquidation_price")], np.nan)
    some = liq.any(axis=0)
    for q in qs:
        lab = _quantile_label(q)
        out[f"time_to_liquidation_days_{lab}"] = _nanquantile(t_days, q, some)
    out["mean_time_to_liquidation_days"] = _nanmean(t_days, some)
    for q in qs:
        out[f"liquidation_price_{_quantile_label(q)}"] = _nanquantile(price, q, some)
    bad = acc[:, :, f("bad_debt")]
    out["bad_debt_mean"] = bad.mean(axis=0)
    out["bad_debt_es"] = [var_es(bad[:, k], level)[1] for k in range(bad.shape[1])]
    out["final_equity_mean"] = acc[:, :, f("final_equity")].mean(axis=0)
    return out


def _nanquantile(x: np.ndarray, q: float, some: np.ndarray) -> np.ndarray:
    res = np.full(x.shape[1], np.nan)
    if np.any(some):
        res[some] = np.nanquantile(x[:, some], q, axis=0)
    return res


def _nanmean(x: np.ndarray, some: np.ndarray) -> np.ndarray:
    res = np.full(x.shape[1], np.nan)
    if np.any(some):
        res[some] = np.nanmean(x[:, some], axis=0)
    return res


def _empty_rows(ids: Sequence[str], qs: tuple[float, ...]) -> pd.DataFrame:
    """Rows of accounts without positions: never called, liquidated or bankrupt."""
    k = len(ids)
    out = pd.DataFrame({"account_id": np.asarray(ids, dtype=object), "simulated": False,
                        "reference_asset": np.full(k, None, dtype=object),
                        "equity": np.nan, "margin_ratio": np.inf})
    for name in ("margin_call", "liquidation", "bankruptcy", "adl"):
        out[f"p_{name}"] = 0.0
        out[f"se_{name}"] = 0.0
    for q in qs:
        out[f"time_to_liquidation_days_{_quantile_label(q)}"] = np.nan
    out["mean_time_to_liquidation_days"] = np.nan
    for q in qs:
        out[f"liquidation_price_{_quantile_label(q)}"] = np.nan
    out["bad_debt_mean"] = 0.0
    out["bad_debt_es"] = 0.0
    out["final_equity_mean"] = np.nan
    return out


def _liquidated_now(under: pd.DataFrame, reference: dict[str, str], market: MarketState,
                    qs: tuple[float, ...]) -> pd.DataFrame:
    """Rows of accounts already below their liquidation threshold today (see
    ``below_threshold="report"``)."""
    ids = under["account_id"].astype(str).tolist()
    out = _empty_rows(ids, qs)
    eq = under["equity"].to_numpy(float)
    mm = under["maintenance_margin"].to_numpy(float)
    mb = under["margin_balance"].to_numpy(float)
    out["simulated"] = True
    out["reference_asset"] = np.asarray([reference.get(a) for a in ids], dtype=object)
    out["equity"] = eq
    out["margin_ratio"] = np.where(mm > 0, mb / np.where(mm > 0, mm, 1.0), np.inf)
    out["p_margin_call"] = 1.0
    out["p_liquidation"] = 1.0
    out["p_bankruptcy"] = (eq < 0).astype(float)
    mark = np.array([market.price(r) if r is not None else np.nan
                     for r in out["reference_asset"]], float)
    for q in qs:
        out[f"time_to_liquidation_days_{_quantile_label(q)}"] = 0.0
        out[f"liquidation_price_{_quantile_label(q)}"] = mark
    out["mean_time_to_liquidation_days"] = 0.0
    out["bad_debt_mean"] = np.maximum(-eq, 0.0)
    out["bad_debt_es"] = np.maximum(-eq, 0.0)
    out["final_equity_mean"] = np.maximum(eq, 0.0)
    return out


def liquidation_profile(
    book: Book,
    market: MarketState,
    model: Any = None,
    *,
    rules: LiquidationRules,
    impact: PriceImpact | None = None,
    horizon_days: float = 2.0,
    n_steps: int = 48,
    n_paths: int = 10_000,
    seed: int | np.random.SeedSequence | None = None,
    paths: np.ndarray | None = None,
    path_assets: Sequence[str] | None = None,
    accounts: Sequence[str] | None = None,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
    level: float = 0.99,
    method: str = "auto",
    max_memory_mb: float = 256.0,
    below_threshold: str = "raise",
) -> pd.DataFrame:
    r"""Liquidation risk of every account: probabilities, timing, price range, bad debt.

    Simulates the whole book along the paths (margin calls, liquidations, cascades, fund and
    ADL as in :func:`~marginlab.models.liquidation.simulate_liquidations`) and summarises,
    per account, what happened to it on each path.

    Parameters
    ----------
    book : Book
        Accounts, positions (linear / inverse perpetuals and futures) and collateral.
    market : MarketState
        Today's prices (USD).
    model : market model or spec, optional
        Model of the book's price columns (not needed with ``paths``).
    rules : LiquidationRules
    impact : PriceImpact, optional
        Default: none (accounts then interact only through the fund and ADL; with
        ``rules.insurance_fund = inf`` not at all).
    horizon_days : float
        Horizon in days (default 2).
    n_steps, n_paths : int
        Monitoring steps over the horizon and paths (when simulating ``paths``).
    seed : int, SeedSequence or None
        Seed of the paths.
    paths : ndarray, shape (n_paths, n_steps + 1, n_columns), optional
        Precomputed prices (USD); with ``path_assets`` naming its columns (e.g. paths of every
        asset of a run, shared by all account blocks), otherwise exactly the book's price
        columns (traded underlyings and collateral coins, sorted by name).
    path_assets : sequence of str, optional
        Names of the columns of ``paths``.
    accounts : sequence of str, optional
        Accounts to report, in this order (default: every account of the book). The whole
        book is simulated whatever the subset, so feedback, fund and ADL are those of the
        whole book; accounts without positions get rows with zero probabilities.
    quantiles : sequence of float
        Quantiles of the time to liquidation and of the liquidation price.
    level : float
        Level of the expected shortfall of each account's bad debt.
    method : {"auto", "fast", "general"}
        Cascade engine (see :func:`simulate_liquidations`).
    below_threshold : {"raise", "report"}
        An account already below its liquidation threshold at today's prices: ``"raise"``
        (default) refuses the book, as :func:`simulate_liquidations` does; ``"report"``
        leaves it out of the simulation and reports it as liquidated now (probabilities of
        margin call and liquidation 1, time 0, the price its reference asset's mark today,
        bankruptcy 1 if its equity is negative, bad debt its deficit ``max(-equity, 0)``
        before the fee, final equity ``max(equity, 0)``) -- the batch run's choice.
    max_memory_mb : float
        Budget of the per-path outcomes (``n_paths x accounts x 56`` bytes); more accounts
        are reported in several runs over the same paths (identical simulations).

    Returns
    -------
    pandas.DataFrame
        One row per account, columns described in :data:`PROFILE_COLUMNS`.

    Notes
    -----
    Cost: one cascade run (see ``BENCHMARKS.md``) per chunk of
    ``max_memory_mb / (56 n_paths)`` reported accounts, plus a sort per account for the
    quantiles and the ES. Monitoring is discrete: the liquidation probability of a
    barrier-type account is the first-passage probability of the barrier shifted by
    :math:`e^{-0.5826\,\sigma\sqrt{\Delta t}}` (Broadie-Glasserman-Kou), i.e. below the
    continuous one; the times are step times (multiples of ``horizon_days / n_steps``).

    Examples
    --------
    >>> import pandas as pd
    >>> from marginlab.models import GBM, Book, MarketState, LiquidationRules
    >>> book = Book.from_frames(
    ...     pd.DataFrame({"instrument_id": ["BTC-PERP"], "type": ["linear_perp"],
    ...                   "underlying": ["BTC"]}),
    ...     pd.DataFrame({"account_id": ["a"], "instrument_id": ["BTC-PERP"],
    ...                   "quantity": [1.0], "entry_price": [50_000.0]}),
    ...     pd.DataFrame({"account_id": ["a"], "asset": ["USDT"], "amount": [5_000.0]}))
    >>> prof = liquidation_profile(book, MarketState(spot={"BTC": 50_000.0}),
    ...                            GBM(mu=0.0, sigma=0.8), n_paths=2_000, seed=1,
    ...                            rules=LiquidationRules(maintenance={"BTC": 0.005}))
    >>> list(prof.columns[:5])
    ['account_id', 'simulated', 'reference_asset', 'equity', 'margin_ratio']
    """
    if not isinstance(book, Book):
        raise TypeError(f"book must be a marginlab.models.Book, got {type(book).__name__}")
    if not isinstance(rules, LiquidationRules):
        raise TypeError(f"rules must be a LiquidationRules, got {type(rules).__name__}")
    days = check_real("horizon_days", horizon_days, low=0.0, low_open=True)
    qs = _check_quantiles(quantiles)
    check_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    budget = check_real("max_memory_mb", max_memory_mb, low=0.0, low_open=True)
    horizon = days / _DAYS_PER_YEAR
    all_ids = [str(a) for a in book.account_ids]
    wanted = all_ids if accounts is None else [str(a) for a in accounts]
    unknown = sorted(set(wanted) - set(all_ids))
    if unknown:
        raise ValueError(f"accounts names account(s) not in the book: {unknown[:5]}")
    if len(set(wanted)) != len(wanted):
        raise ValueError("accounts must not repeat an account id")
    if below_threshold not in ("raise", "report"):
        raise ValueError(f"below_threshold must be 'raise' or 'report', got {below_threshold!r}")
    conv = _convert(book, market, rules, horizon, method)
    under = None
    if below_threshold == "report" and conv.keep.size:
        steps = paths.shape[1] - 1 if paths is not None and np.ndim(paths) == 3 else n_steps
        under = _under_water(book, conv, rules, horizon / steps, steps)
        if len(under):  # simulate the others; converted again only in this rare case
            ref_all = _reference_by_account(book, conv)
            keep = ~np.isin(np.asarray(book.account_ids, dtype=str), under["account_id"])
            book = book.subset(np.flatnonzero(keep))
            conv = _convert(book, market, rules, horizon, method)
        else:
            under = None
    simulated = {str(a) for a in book.account_ids[conv.keep]}
    sim_ids = [a for a in wanted if a in simulated]
    if paths is None:
        if model is None:
            raise ValueError("give a market model (or precomputed paths)")
        for name, v in (("n_steps", n_steps), ("n_paths", n_paths)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        spec = model.to_spec() if hasattr(model, "to_spec") else model
        if getattr(spec, "n_assets", None) != len(conv.assets):
            raise ValueError(f"the model has {getattr(spec, 'n_assets', None)} asset(s) but "
                             f"the book needs {len(conv.assets)} price column(s), in this "
                             f"order: {list(conv.assets)}")
        paths = simulate_paths(model, conv.s0, n_steps=n_steps, dt=horizon / n_steps,
                               n_paths=n_paths, seed=seed)
        path_assets = list(conv.assets)
    paths = np.asarray(paths, dtype=np.float64)
    n_p = paths.shape[0] if paths.ndim == 3 else 1
    chunk = max(1, int(budget * 2**20 // (n_p * 8 * K.N_TRACK_FIELDS)))
    frames = []
    ref = _reference_by_account(book, conv)
    for lo in range(0, max(len(sim_ids), 1), chunk):
        part = sim_ids[lo:lo + chunk]
        if not part:
            break
        res = simulate_liquidations(book, market, rules=rules, impact=impact,
                                    horizon_days=days,
                                    paths=paths, path_assets=path_assets, method=method,
                                    record=0, track=part)
        frames.append(profile_frame(res, quantiles=qs, level=level, reference=ref))
    if under is not None:
        gone = set(under["account_id"])
        frames.append(_liquidated_now(under[under["account_id"].isin(wanted)], ref_all,
                                      market, qs))
        simulated |= gone
    empty = [a for a in wanted if a not in simulated]
    if empty:
        frames.append(_empty_rows(empty, qs))
    if not frames:
        return _empty_rows([], qs)
    out = pd.concat(frames, ignore_index=True)
    order = pd.Index(out["account_id"]).get_indexer(wanted)
    return out.iloc[order].reset_index(drop=True)


def _reference_by_account(book: Book, conv) -> dict[str, str]:
    """Account id -> asset of its first position (the general path's reference asset)."""
    ids = book.account_ids[conv.keep]
    acc = conv.accounts
    if isinstance(acc, K.SingleAccounts):
        a = np.asarray(acc.asset)
    else:  # the first linear position, or the first option of an account with options only
        start = np.asarray(acc.start)
        a = np.full(start.size - 1, -1, np.int64)
        has_pos = start[:-1] < start[1:]
        a[has_pos] = np.asarray(acc.pos_asset)[start[:-1][has_pos]]
        if conv.options is not None:
            holders, first = np.unique(np.asarray(conv.options.account), return_index=True)
            fill = a[holders] < 0
            a[holders[fill]] = np.asarray(conv.options.asset)[first[fill]]
    names = np.asarray(conv.assets, dtype=object)[a]
    return {str(i): str(n) for i, n in zip(ids, names, strict=True)}

