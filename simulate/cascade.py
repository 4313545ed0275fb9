r"""Margin calls, liquidations and liquidation cascades along simulated price paths.

Arrays in, arrays out: the meaning (books, exchange rules, result tables) lives in
:mod:`marginlab.models.liquidation`. Two engines share one set of rules and one output layout:

* :func:`simulate_cascade` with :class:`SingleAccounts` (the **fast path**): every account
  holds one linear or inverse position, and collateral in USD and/or that position's own
  coin. Its margin balance and maintenance margin are then piecewise-linear in one price, so
  each account has fixed trigger prices (below / above), precomputed and sorted per asset. A
  path walks pointers through the sorted triggers: per step the cost is O(assets + events),
  not O(accounts). Accounts whose state changes during a path (liquidated, auto-deleveraged)
  are copied into per-path state and checked individually from then on.
* :func:`simulate_cascade` with :class:`CrossAccounts` (the **general path**): any number of
  linear / inverse positions per account (cross margin) and collateral in any asset; every
  account is re-evaluated in every round. It also offers partial liquidation, a grace period
  and top-ups. It is the slow, obviously correct reference of the fast path: on a book both
  accept they give the same results.

Options (USD- or coin-settled European options held by ``CrossAccounts``, passed as
:class:`OptionPositions` with :class:`OptionRules`) are revalued at every step, margined, settled
at expiry and closed at liquidation by the general path: the rules and their cost are in
:mod:`._cascade_options`.

The rules (one step ``t = 1..n_steps``)
---------------------------------------
Prices. Column ``a`` of ``paths`` is the exogenous price :math:`S_{t,a}`. Liquidation orders
move the traded (mark) price through an impact state :math:`J_a` (log price):
:math:`P = S e^{J}`. At the start of a step :math:`J \leftarrow \rho J` (decay per step) and
the step's base mark is :math:`P^0 = S_t e^{J}`. Within the step the signed liquidation flow
:math:`X` (USD notional, buys positive; linear contracts at :math:`P^0`, inverse at face
value) moves the mark to :math:`P = P^0 e^{g(X)}` with

.. math:: g(X) = \operatorname{sign}(X)\,\bigl(\lambda x + \eta \sqrt{x}\bigr),
          \qquad x = |X| / D,

(linear and square-root impact in notional relative to the depth :math:`D`). An order that
takes the flow from :math:`X_0` to :math:`X_1` fills at :math:`P^0 e^{\bar g}` where
:math:`\bar g = \int_{X_0}^{X_1} g / (X_1 - X_0)` is the average impact over its slice of the
book. At the end of the step :math:`J \leftarrow J + g(X)`: the impact persists and decays
(:math:`\rho = 2^{-\Delta t / \text{half-life}}`), so every later step and every other
account sees it. That is the cascade feedback.

Accounts. Margin balance :math:`MB` = USD balance and coin balances at the mark, each
positive balance times ``1 - haircut``, plus unrealised P&L; equity (wealth) :math:`W` is the
same without haircuts. Maintenance margin per position is a bracket table's upper envelope
:math:`\max_k(N\,mmr_k - cum_k)`, notional :math:`N = |q| P` (linear, USD) or
:math:`|q| F / P` (inverse, coin; times :math:`P` in USD). A flat rate is a one-bracket table.

Rounds. A step repeats rounds until a round finds nothing to do. A round (1) issues margin
calls (:math:`MB < MM`, first time; a call stays until cured by a top-up or, with a grace
period, by recovering before the deadline), (2) collects the accounts to liquidate:
:math:`MB < \ell\,MM` (``liq_fraction`` :math:`\ell \le 1`), or with a grace period still
:math:`MB < MM` ``grace`` steps after the call, (3) liquidates them in account order, each
re-checked at the marks its turn sees. (The fast path numbers accounts by trigger price,
:func:`trigger_order`; the general path given accounts in that order agrees with it.)
Liquidation closes every position (or, in partial mode, the fraction that restores
:math:`MB` to ``partial_target`` x MM at the mark).

Close-out. Liquidation orders go to the market (impact, slippage). After a close-out at
equity :math:`W`: if :math:`W > 0`, a fee ``min(fee_rate x notional, W)`` goes to the
insurance fund; if :math:`W < 0` the account is bankrupt and the fund pays :math:`-W`. If the
fund cannot pay the deficit the market close-out would leave, the position is instead
**auto-deleveraged** (ADL): opposite positions on the same asset, ranked by the published
BitMEX / Bybit / Binance score (PnL% x effective leverage if PnL% > 0, PnL% / effective
leverage otherwise; PnL% = ``sign (P / E - 1)``, effective leverage = position notional /
account equity; ranked once per step and side at the marks of the first ADL), take it over at
the mark, and pay the deficit at the mark pro rata to the notional they take (ADL transfers,
USD). ADL volume does not hit the market. What the ranked positions cannot absorb is sold in
the market and its deficit is paid by the fund, then by the exchange (``exchange_paid``).

Settlement of a closed account. An account left without open positions (liquidated in full,
or fully taken over by ADL) is no longer margined, so it must carry no leveraged exposure:
after the fee, its debts are settled at the marks. A negative coin balance (the realised
coin P&L of an inverse position on USD collateral) is bought back with USD, then a negative
USD balance (a linear loss or the fee on coin collateral) is paid by selling its coins, in
column order. Both trades are at the mark, so they change no wealth, only the exposure;
what remains is USD and non-negative coin balances (the account's own collateral), or, if
equity is negative, the bankruptcy above (all balances seized).

Bookkeeping (checked on every path by the tests). With :math:`G` the P&L of the accounts
against the market (price changes of their exposures plus slippage of liquidation fills),

.. math:: \sum_i \Delta W_i + \Delta F = G + \text{exchange\_paid} + \text{deposits},
          \qquad \text{adl\_paid} = \text{adl\_received}

where :math:`\Delta F` is the fund's change (fees minus payouts). ADL transfers move money
between accounts only.

Reproducibility. Paths are processed in fixed blocks of :data:`PATH_BLOCK`; per-account
counts are kept per block and summed in block order, and top-up draws come from one
xoshiro256++ stream per path, so results do not depend on the number of threads.

Code layout. The rules above are written once, in :mod:`._cascade_rules` (price update,
impact and fills, maintenance margin of a position and of an account, realised P&L, ADL
take-over and ranking heap, fee, fund share, settlement of a closed account, per-path
outputs); the two engines, :mod:`._cascade_fast` and :mod:`._cascade_general`, hold only
their loops over accounts (pointer walks and live lists, or every account every round) and
call those helpers. This module holds the inputs, validation and the public functions.

Performance note: helpers called in the per-step code are inlined at numba's IR level
(``inline_kernel``), so an array argument costs no call and no reference counting; kernels
that take arrays and are *not* inlined (ranking heap, settlement of a closed account) run
once per event, not per step.

The code is split by concept: the input containers and their validation are in
:mod:`._cascade_inputs`; this module holds the margin and trigger diagnostics and the
:func:`simulate_cascade` wrapper, and every name stays importable from it.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._cascade_fast import _fast_kernel
from ._cascade_general import _cross_kernel
from ._cascade_inputs import (  # noqa: F401  (containers and checks re-exported)
    CascadeArrays,
    CascadeRules,
    CrossAccounts,
    ImpactParams,
    MarginTables,
    SingleAccounts,
    _check,
    _cross,
    _f64,
    _i64,
    _impact_params,
    _position_checks,
    _rules,
    _shape,
    _single,
    _tables,
)
from ._cascade_options import (
    OptionPositions,
    OptionRules,
    no_options,
    option_arrays,
    option_margin,
)
from ._cascade_rules import (  # noqa: F401  (constants and rules re-exported)
    A_ADL_VOLUME,
    A_LIQ_VOLUME,
    A_MAX_IMPACT,
    A_MAX_LOG,
    A_MIN_LOG,
    ASSET_FIELDS,
    C_ADL,
    C_BANKRUPT,
    C_CALL,
    C_LIQ,
    COUNT_FIELDS,
    N_ASSET_FIELDS,
    N_COUNTS,
    N_PATH_FIELDS,
    N_TRACK_FIELDS,
    P_ADL_EVENTS,
    P_ADL_PAID,
    P_ADL_RECEIVED,
    P_BAD_DEBT,
    P_BANKRUPTCIES,
    P_CALLS,
    P_DEPOSITS,
    P_EXCHANGE_PAID,
    P_FEES,
    P_FUND_FINAL,
    P_FUND_MIN,
    P_FUND_PAID,
    P_LIQUIDATIONS,
    P_MARKET_PNL,
    P_PARTIALS,
    P_TOPUPS,
    P_WEALTH_CHANGE,
    PATH_BLOCK,
    PATH_FIELDS,
    T_ADL_STEP,
    T_BAD_DEBT,
    T_BANK_STEP,
    T_CALL_STEP,
    T_FINAL_EQUITY,
    T_LIQ_PRICE,
    T_LIQ_STEP,
    TRACK_FIELDS,
    _fill_log,
    _impact,
)
from .rng import seed_sequence

__all__ = [
    "PATH_BLOCK",
    "PATH_FIELDS",
    "ASSET_FIELDS",
    "COUNT_FIELDS",
    "TRACK_FIELDS",
    "SingleAccounts",
    "CrossAccounts",
    "OptionPositions",
    "OptionRules",
    "MarginTables",
    "ImpactParams",
    "CascadeRules",
    "CascadeArrays",
    "trigger_prices",
    "margin_state",
    "trigger_order",
    "simulate_cascade",
]



def _max_lines(nn, price, inverse, table, tables):
    """MM = max_k (N mmr_k - cum_k) per position (USD), vectorised; N as in the kernels."""
    mmr, cum = tables.mmr[table], tables.cum[table]
    used = np.arange(mmr.shape[1])[None, :] < tables.n[table][:, None]
    lines = nn[:, None] * mmr - np.where(inverse[:, None] == 1, cum * price[:, None], cum)
    return np.max(np.where(used, lines, -np.inf), axis=1).clip(min=0.0)


def margin_state(accounts: SingleAccounts | CrossAccounts, tables: MarginTables,
                 prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Margin balance, maintenance margin and equity (USD) per account at ``prices``.

    Parameters
    ----------
    accounts : SingleAccounts or CrossAccounts
    tables : MarginTables
    prices : ndarray, shape (n_assets,)
        Mark price of every price column.

    Returns
    -------
    (mb, mm, equity) : three ndarrays of shape (n_accounts,)
        The quantities the kernels compare (see the module notes).
    """
    prices = _f64(prices)
    w = lambda x, wt: np.where(x > 0.0, x * wt, x)  # noqa: E731
    if isinstance(accounts, SingleAccounts):
        pa = prices[accounts.asset]
        inv = accounts.inverse
        upnl = np.where(inv == 1, accounts.q * accounts.face * (pa / accounts.entry - 1.0),
                        accounts.q * (pa - accounts.entry))
        nn = np.where(inv == 1, np.abs(accounts.q) * accounts.face, np.abs(accounts.q) * pa)
        mm = np.where(accounts.q != 0.0, _max_lines(nn, pa, inv, accounts.table, tables), 0.0)
        mb = w(accounts.usd, accounts.w_usd) + w(accounts.coin, accounts.w_coin) * pa + upnl
        eq = accounts.usd + accounts.coin * pa + upnl
        return mb, mm, eq
    pa = prices[accounts.pos_asset]
    inv = accounts.pos_inverse
    q = accounts.pos_q
    upnl = np.where(inv == 1, q * accounts.pos_face * (pa / accounts.pos_entry - 1.0),
                    q * (pa - accounts.pos_entry))
    nn = np.where(inv == 1, np.abs(q) * accounts.pos_face, np.abs(q) * pa)
    mm_pos = np.where(q != 0.0, _max_lines(nn, pa, inv, accounts.pos_table, tables), 0.0)
    n_acc = accounts.usd.shape[0]
    acc = np.repeat(np.arange(n_acc), np.diff(accounts.start))
    upnl_acc = np.bincount(acc, weights=upnl, minlength=n_acc)
    mm = np.bincount(acc, weights=mm_pos, minlength=n_acc)
    mb = (w(accounts.usd, accounts.w_usd) + (w(accounts.bal, accounts.w_bal) @ prices)
          + upnl_acc)
    eq = accounts.usd + accounts.bal @ prices + upnl_acc
    return mb, mm, eq


def trigger_prices(accounts: SingleAccounts, tables: MarginTables, fraction: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    r"""Prices at which each one-position account's margin balance falls below ``fraction``
    times its maintenance margin.

    Margin balance and ``fraction`` x maintenance margin are, per bracket ``k``, affine in the
    price, so :math:`MB - \ell MM = \min_k(\alpha_k + \beta_k P)` (concave) and the account is
    triggered exactly when :math:`P < P_{lo}` or :math:`P > P_{hi}` with
    :math:`P_{lo} = \max_{\beta_k > 0} (-\alpha_k / \beta_k)` and
    :math:`P_{hi} = \min_{\beta_k < 0} (-\alpha_k / \beta_k)`.

    Parameters
    ----------
    accounts : SingleAccounts
    tables : MarginTables
    fraction : float
        ``liq_fraction`` for liquidation prices, 1.0 for margin-call prices.

    Returns
    -------
    (lo, hi) : two ndarrays of shape (n_accounts,)
        ``lo = 0`` means no trigger from below, ``hi = inf`` none from above; an account
        triggered at every price has ``lo = inf``. Accounts with ``q == 0`` never trigger.
    """
    q, inv = accounts.q, accounts.inverse == 1
    e, f = accounts.entry, accounts.face
    uh = np.where(accounts.usd > 0.0, accounts.usd * accounts.w_usd, accounts.usd)
    ch = np.where(accounts.coin > 0.0, accounts.coin * accounts.w_coin, accounts.coin)
    a_h = uh - np.where(inv, q * f, q * e)
    b_h = ch + np.where(inv, q * f / e, q)
    mmr, cum = tables.mmr[accounts.table], tables.cum[accounts.table]
    used = np.arange(mmr.shape[1])[None, :] < tables.n[accounts.table][:, None]
    absq = np.abs(q)[:, None]
    lam = float(fraction)
    alpha = np.where(inv[:, None], a_h[:, None] - lam * absq * f[:, None] * mmr,
                     a_h[:, None] + lam * cum)
    beta = np.where(inv[:, None], b_h[:, None] + lam * cum, b_h[:, None] - lam * absq * mmr)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = -alpha / beta
    lo = np.max(np.where(used & (beta > 0.0), root, 0.0), axis=1).clip(min=0.0)
    hi = np.min(np.where(used & (beta < 0.0), root, np.inf), axis=1).clip(min=0.0)
    always = np.any(used & (beta == 0.0) & (alpha < 0.0), axis=1)
    lo = np.where(always, np.inf, lo)
    never = q == 0.0
    return np.where(never, 0.0, lo), np.where(never, np.inf, hi)


def _sorted_lists(asset, lo, hi, n_a):
    """CSR lists 2a (trigger below, by price descending) and 2a + 1 (above, ascending)."""
    idx = np.arange(asset.size)
    down = lo > 0.0
    up = hi < np.inf
    lst = np.concatenate([2 * asset[down], 2 * asset[up] + 1])
    acc = np.concatenate([idx[down], idx[up]])
    key = np.concatenate([-lo[down], hi[up]])
    order = np.lexsort((key, lst))  # stable: ties stay in account order
    start = np.zeros(2 * n_a + 1, np.int64)
    np.cumsum(np.bincount(lst, minlength=2 * n_a), out=start[1:])
    thr = np.concatenate([lo[down], hi[up]])[order]
    return start, _i64(acc[order]), _f64(thr)


def _side_lists(asset, q, n_a):
    """CSR lists 2a (long positions on asset a) and 2a + 1 (short), in index order."""
    idx = np.arange(asset.size)
    live = q != 0.0
    lst = 2 * asset[live] + (q[live] < 0.0)
    order = np.argsort(lst, kind="stable")
    start = np.zeros(2 * n_a + 1, np.int64)
    np.cumsum(np.bincount(lst, minlength=2 * n_a), out=start[1:])
    return start, _i64(idx[live][order])


def _topup_key(seed) -> np.ndarray:
    """Key of the top-up streams: a child of the seed's sequence, so that the same seed
    never gives the same streams as the paths (whose key is ``seed_key(seed)``)."""
    ss = seed_sequence(seed)  # validates; a Generator is drawn from once (SPEC 7)
    child = np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 0x746F7075))
    return child.generate_state(4, np.uint64)


def trigger_order(accounts: SingleAccounts, tables: MarginTables, liq_fraction: float, *,
                  prices: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The order in which the fast path numbers (and, within a round, processes) accounts.

    Accounts are sorted by asset, then trigger side (from below first), then trigger price
    (the first to trigger first), then index, so that a pointer walk through the sorted
    liquidation prices reads consecutive memory. :func:`simulate_cascade` with
    ``CrossAccounts`` built in this order gives the same results as with ``SingleAccounts``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_accounts,)
        A permutation of ``range(n_accounts)``.
    """
    lo, hi = trigger_prices(accounts, tables, liq_fraction) if prices is None else prices
    asset = np.asarray(accounts.asset, dtype=np.int64)
    primary = np.where(lo > 0.0, 2 * asset, np.where(hi < np.inf, 2 * asset + 1,
                                                     2 * asset + 2))
    key = np.where(lo > 0.0, -lo, np.where(hi < np.inf, hi, 0.0))
    return np.lexsort((key, primary)).astype(np.int64)  # stable: ties in index order


def _track(track, n_acc: int) -> np.ndarray:
    """Validated indices of the tracked accounts (int64, distinct, in [0, n_acc))."""
    if track is None:
        return np.zeros(0, np.int64)
    arr = np.asarray(track)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"track must be a 1-D array of account indices, got {track!r}")
    arr = _i64(arr)
    if np.any((arr < 0) | (arr >= n_acc)):
        k = int(np.flatnonzero((arr < 0) | (arr >= n_acc))[0])
        raise ValueError(f"track must hold account indices in [0, {n_acc}), got {arr[k]} at "
                         f"index {k}")
    if np.unique(arr).size != arr.size:
        raise ValueError("track must not repeat an account")
    return arr


def _slots(trk_acc: np.ndarray, n_acc: int) -> np.ndarray:
    """Per account (kernel numbering): its slot in the tracked outputs, or -1."""
    slot = np.full(n_acc, -1, np.int64)
    slot[trk_acc] = np.arange(trk_acc.size)
    return slot


def _check_initial(accounts, tables, s0, liq_fraction, opt=None) -> None:
    mb, mm, _ = margin_state(accounts, tables, s0)
    if opt is not None:
        ov, omm = option_margin(opt, _max_lines, tables, s0, mb.size)
        mb, mm = mb + ov, mm + omm
    bad = mb < liq_fraction * mm
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"account index {k} is already below its liquidation threshold at t = 0 (margin "
            f"balance {mb[k]:.6g} < {liq_fraction:g} x maintenance margin {mm[k]:.6g}); "
            f"{int(bad.sum())} account(s) in all")


def simulate_cascade(
    paths: np.ndarray,
    accounts: SingleAccounts | CrossAccounts,
    tables: MarginTables,
    impact: ImpactParams,
    rules: CascadeRules,
    *,
    level_edges: np.ndarray | None = None,
    record: int = 0,
    seed: int | np.random.SeedSequence | None = None,
    track: np.ndarray | None = None,
    options: OptionPositions | None = None,
    option_rules: OptionRules | None = None,
) -> CascadeArrays:
    """Run margin calls, liquidations, the insurance fund and ADL along every path.

    Parameters
    ----------
    paths : ndarray, shape (n_paths, n_steps + 1, n_assets)
        Exogenous prices (USD) per step, ``paths[:, 0]`` equal on every path (today's
        prices), as from :func:`marginlab.simulate.simulate_paths`.
    accounts : SingleAccounts or CrossAccounts
        One-position accounts (fast path) or cross-margin accounts (general path).
    tables : MarginTables
        Maintenance-margin bracket tables referenced by the positions.
    impact : ImpactParams
        Price impact per asset (a scalar broadcasts).
    rules : CascadeRules
        Liquidation fraction, fee rate, insurance fund (USD), partial liquidation, grace
        period (steps), top-ups. Partial liquidation, a grace period and top-ups need
        ``CrossAccounts``.
    level_edges : ndarray, optional
        Increasing, equally spaced bin edges of ``log(fill / S_0)`` for the liquidation
        volume by price level (default 80 bins over [-0.4, 0.4]).
    record : int
        Keep the mark prices of the first ``record`` paths.
    seed : int, SeedSequence, numpy.random.Generator or None
        Seed of the top-up draws (one stream per path, from a child of the seed's
        ``SeedSequence``, so the seed of the paths can be reused); only used when
        ``rules.topup_prob > 0``.
    track : array of int, optional
        Accounts (indices into ``accounts``) whose outcome on every path is kept in
        ``CascadeArrays.accounts`` (``TRACK_FIELDS``); memory ``n_paths x len(track) x 56``
        bytes. Default: none.
    options : OptionPositions, optional
        Options held by the accounts (``CrossAccounts`` only); revalued, margined, settled
        at expiry and liquidated along the paths (see :mod:`._cascade_options`).
    option_rules : OptionRules, optional
        Step length, margin floor and interval, vol paths; required with ``options``.

    Returns
    -------
    CascadeArrays

    Examples
    --------
    One long of 1 unit at 100 with 10 USD, maintenance rate 5 %, no impact: liquidated when
    the price falls to 94 (below 90 / 0.95), paying a 1 % fee on the 94 USD it sells.

    >>> acc = SingleAccounts(*(np.array([v]) for v in
    ...                        (0, 0, 1.0, 100.0, 1.0, 0, 10.0, 1.0, 0.0, 1.0)))
    >>> tables = MarginTables(np.array([[0.05]]), np.array([[0.0]]), np.array([1]))
    >>> out = simulate_cascade(np.array([[[100.0], [94.0]]]), acc, tables,
    ...                        ImpactParams(np.inf, 0.0, 0.0, 1.0), CascadeRules(fee_rate=0.01))
    >>> row = dict(zip(PATH_FIELDS, out.path[0].tolist()))
    >>> row["liquidations"], round(row["fees"], 6), round(row["wealth_change"], 6)
    (1.0, 0.94, -6.94)
    """
    paths = np.asarray(paths)
    if paths.dtype != np.float64 or not paths.flags.c_contiguous or not paths.flags.writeable:
        paths = _f64(paths)
    if paths.ndim != 3 or paths.shape[0] < 1 or paths.shape[1] < 2 or paths.shape[2] < 1:
        raise ValueError(f"paths must have shape (n_paths >= 1, n_steps + 1 >= 2, n_assets >= 1),"
                         f" got {paths.shape}")
    if not np.all(np.isfinite(paths)) or np.any(paths <= 0.0):
        raise ValueError("paths must be finite and > 0")
    if np.any(paths[:, 0, :] != paths[0, 0, :]):
        raise ValueError("paths[:, 0, :] must be today's prices, equal on every path")
    n_paths, n_t, n_a = paths.shape
    n_steps = n_t - 1
    tables = _tables(tables)
    n_tab = tables.n.shape[0]
    impact = _impact_params(impact, n_a)
    rules = _rules(rules)
    if isinstance(record, (bool, np.bool_)) or not isinstance(record, numbers.Integral):
        raise TypeError(f"record must be an int in [0, n_paths], got {record!r}")
    if not 0 <= record <= n_paths:
        raise ValueError(f"record must be in [0, n_paths = {n_paths}], got {record}")
    edges = np.linspace(-0.4, 0.4, 81) if level_edges is None else _f64(level_edges)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)):
        raise ValueError("level_edges must be a 1-D array of >= 2 finite edges")
    width = np.diff(edges)
    if np.any(width <= 0.0) or not np.allclose(width, width[0], rtol=1e-9, atol=0.0):
        raise ValueError("level_edges must be increasing and equally spaced")
    n_lvl = edges.size - 1
    n_blocks = (n_paths + PATH_BLOCK - 1) // PATH_BLOCK
    out_path = np.zeros((n_paths, N_PATH_FIELDS))
    out_asset = np.zeros((n_paths, n_a, N_ASSET_FIELDS))
    levels = np.zeros((n_blocks, n_a, n_lvl))
    rec = np.zeros((record, n_t, n_a))
    s0 = paths[0, 0, :].copy()
    lvl_px = _f64(s0[:, None] * np.exp(edges[None, :]))  # bin edges as prices
    n_given = (np.size(accounts.q) if isinstance(accounts, SingleAccounts)
               else np.size(accounts.start) - 1 if isinstance(accounts, CrossAccounts) else 0)
    trk_acc = _track(track, n_given)
    acct_out = np.zeros((n_paths, trk_acc.size, N_TRACK_FIELDS))
    if options is not None and not isinstance(accounts, CrossAccounts):
        raise ValueError("options need CrossAccounts (the general path); got "
                         f"{type(accounts).__name__}")
    if isinstance(accounts, SingleAccounts):
        if rules.partial or rules.grace >= 0 or rules.topup_prob > 0.0:
            raise ValueError("partial liquidation, a grace period and top-ups need "
                             "CrossAccounts (the general path); got SingleAccounts")
        acc = _single(accounts, n_a, n_tab)
        n_acc = acc.q.shape[0]
        _check_initial(acc, tables, s0, rules.liq_fraction)
        lo, hi = trigger_prices(acc, tables, rules.liq_fraction)
        perm = trigger_order(acc, tables, rules.liq_fraction, prices=(lo, hi))
        acc = SingleAccounts(*(_i64(x[perm]) if x.dtype == np.int64 else _f64(x[perm])
                               for x in acc))
        inv_perm = np.empty_like(perm)
        inv_perm[perm] = np.arange(perm.size)
        trk_acc = _i64(inv_perm[trk_acc])  # kernel numbering
        lo, hi = lo[perm], hi[perm]
        inv = acc.inverse == 1
        a_full = acc.usd - np.where(inv, acc.q * acc.face, acc.q * acc.entry)
        b_full = acc.coin + np.where(inv, acc.q * acc.face / acc.entry, acc.q)
        b_tot = np.bincount(acc.asset, weights=b_full, minlength=n_a)
        liq_start, liq_acc, liq_thr = _sorted_lists(acc.asset, lo, hi, n_a)
        mlo, mhi = trigger_prices(acc, tables, 1.0)
        mc_start, mc_acc, mc_thr = _sorted_lists(acc.asset, mlo, mhi, n_a)
        side_start, side_acc = _side_lists(acc.asset, acc.q, n_a)
        counts = np.zeros((n_blocks, N_COUNTS, n_acc), np.int16)  # <= PATH_BLOCK per block
        _fast_kernel(
            n_paths, paths, n_steps, impact.depth, impact.linear, impact.sqrt, impact.decay,
            rules.liq_fraction, rules.fee_rate, rules.fund,
            tables.mmr, tables.cum, tables.n,
            acc.asset, acc.inverse, acc.q, acc.entry, acc.face, acc.table, acc.usd, acc.w_usd,
            acc.coin, acc.w_coin, _f64(a_full), _f64(b_full), float(a_full.sum()), _f64(b_tot),
            liq_start, liq_acc, liq_thr, mc_start, mc_acc, mc_thr, side_start, side_acc,
            lvl_px, out_path, out_asset, counts, levels, rec, _slots(trk_acc, n_acc), trk_acc,
            acct_out,
        )  # fmt: skip
    elif isinstance(accounts, CrossAccounts):
        acc = _cross(accounts, n_a, n_tab)
        n_acc = acc.usd.shape[0]
        opt = (no_options(n_acc) if options is None else
               option_arrays(options, option_rules, n_acc, n_a, n_tab, n_paths, n_steps, _check))
        _check_initial(acc, tables, s0, rules.liq_fraction, opt if opt.q.size else None)
        pos_acc = np.repeat(np.arange(n_acc, dtype=np.int64), np.diff(acc.start))
        side_start, side_pos = _side_lists(acc.pos_asset, acc.pos_q, n_a)
        slope = np.where(acc.pos_inverse == 1, acc.pos_q * acc.pos_face / acc.pos_entry,
                         acc.pos_q)
        h0 = acc.bal.sum(axis=0) + np.bincount(acc.pos_asset, weights=slope, minlength=n_a)
        key = _topup_key(seed)
        counts = np.zeros((n_blocks, N_COUNTS, n_acc), np.int16)  # <= PATH_BLOCK per block
        _cross_kernel(
            n_paths, paths, n_steps, impact.depth, impact.linear, impact.sqrt, impact.decay,
            rules.liq_fraction, rules.fee_rate, rules.fund, rules.partial,
            rules.partial_target, rules.grace, rules.topup_prob, rules.topup_target, key,
            tables.mmr, tables.cum, tables.n,
            acc.start, _i64(pos_acc), acc.pos_asset, acc.pos_inverse, acc.pos_q,
            acc.pos_entry, acc.pos_face, acc.pos_table, acc.usd, acc.w_usd, acc.bal,
            acc.w_bal, side_start, side_pos, _f64(h0), *opt,
            lvl_px, out_path, out_asset, counts, levels, rec, _slots(trk_acc, n_acc), trk_acc,
            acct_out,
        )  # fmt: skip
    else:
        raise TypeError(f"accounts must be SingleAccounts or CrossAccounts, got "
                        f"{type(accounts).__name__}")
    total = counts.sum(axis=0, dtype=np.int64)
    if isinstance(accounts, SingleAccounts):  # back to the caller's account order
        unperm = np.empty_like(total)
        unperm[:, perm] = total
        total = unperm
    return CascadeArrays(out_path, out_asset, total, levels.sum(axis=0), rec, acct_out)
