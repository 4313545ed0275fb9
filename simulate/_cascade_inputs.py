"""The input containers of :func:`marginlab.simulate.cascade.simulate_cascade` and their checks.

:class:`MarginTables`, :class:`ImpactParams`, :class:`CascadeRules`, :class:`SingleAccounts`,
:class:`CrossAccounts` and the output container :class:`CascadeArrays` (all re-exported by
:mod:`marginlab.simulate.cascade`, whose notes define every field), and the Python-layer
validation that converts them to the C-contiguous float64 / int64 arrays the kernels read.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np


# =========================================================================== inputs
class MarginTables(NamedTuple):
    """Maintenance-margin tables: row ``k`` has ``n[k]`` brackets ``(mmr, cum)``.

    ``cum`` is in USD for linear tables and in coin for inverse ones; a flat rate ``m`` is
    the one-bracket table ``(m, 0)``. Shapes ``(n_tables, max_brackets)`` and ``(n_tables,)``.
    """

    mmr: np.ndarray
    cum: np.ndarray
    n: np.ndarray


class ImpactParams(NamedTuple):
    """Price impact per asset (shape ``(n_assets,)`` each).

    ``depth`` USD (``inf`` for no impact), ``linear`` and ``sqrt`` the dimensionless
    coefficients of ``x`` and ``sqrt(x)`` in the log impact, ``decay`` the factor ``rho`` in
    [0, 1] applied to the impact state once per step.
    """

    depth: np.ndarray
    linear: np.ndarray
    sqrt: np.ndarray
    decay: np.ndarray


class CascadeRules(NamedTuple):
    """Scalar rules (see the module notes).

    ``grace`` is the grace period in steps, ``-1`` for none; ``partial``, ``grace >= 0`` and
    ``topup_prob > 0`` need :class:`CrossAccounts`.
    """

    liq_fraction: float = 1.0
    fee_rate: float = 0.0
    fund: float = 0.0
    partial: bool = False
    partial_target: float = 1.5
    grace: int = -1
    topup_prob: float = 0.0
    topup_target: float = 2.0


class SingleAccounts(NamedTuple):
    """One position per account (the fast path); all arrays have shape ``(n_accounts,)``.

    ``asset`` price column of the position's underlying; ``inverse`` 0/1; ``q`` signed size
    (units of the underlying for linear contracts, contracts for inverse ones); ``entry``
    entry price; ``face`` USD face value per inverse contract (ignored for linear); ``table``
    row of :class:`MarginTables`; ``usd`` USD balance (stablecoin collateral) and ``w_usd``
    its weight ``1 - haircut``; ``coin`` balance of the position's own underlying and
    ``w_coin`` its weight.
    """

    asset: np.ndarray
    inverse: np.ndarray
    q: np.ndarray
    entry: np.ndarray
    face: np.ndarray
    table: np.ndarray
    usd: np.ndarray
    w_usd: np.ndarray
    coin: np.ndarray
    w_coin: np.ndarray


class CrossAccounts(NamedTuple):
    """Cross-margin accounts (the general path).

    Positions in CSR order: account ``i`` holds positions ``start[i]:start[i + 1]``, each with
    ``pos_asset``, ``pos_inverse``, ``pos_q``, ``pos_entry``, ``pos_face``, ``pos_table`` as in
    :class:`SingleAccounts`. Balances: ``usd``/``w_usd`` shape ``(n_accounts,)``,
    ``bal``/``w_bal`` shape ``(n_accounts, n_assets)`` (coin amounts per price column).
    """

    start: np.ndarray
    pos_asset: np.ndarray
    pos_inverse: np.ndarray
    pos_q: np.ndarray
    pos_entry: np.ndarray
    pos_face: np.ndarray
    pos_table: np.ndarray
    usd: np.ndarray
    w_usd: np.ndarray
    bal: np.ndarray
    w_bal: np.ndarray


class CascadeArrays(NamedTuple):
    """Raw outputs of :func:`simulate_cascade`.

    ``path`` ``(n_paths, len(PATH_FIELDS))``; ``asset`` ``(n_paths, n_assets,
    len(ASSET_FIELDS))``; ``counts`` ``(len(COUNT_FIELDS), n_accounts)`` int64, the number of
    paths on which each account had each event; ``levels`` ``(n_assets, n_bins)`` USD volume
    liquidated in the market by fill level ``log(fill / S_0)`` (bins ``level_edges``, the end
    bins also collect what lies beyond); ``marks`` ``(n_record, n_steps + 1, n_assets)`` the
    mark prices of the first ``n_record`` paths at the end of each step; ``accounts``
    ``(n_paths, n_track, len(TRACK_FIELDS))`` per path and tracked account (the ``track``
    argument of :func:`simulate_cascade`, in its order): final equity, bad debt, steps of the
    first events and the mark at the first liquidation.
    """

    path: np.ndarray
    asset: np.ndarray
    counts: np.ndarray
    levels: np.ndarray
    marks: np.ndarray
    accounts: np.ndarray


# =========================================================================== python layer
def _f64(x) -> np.ndarray:
    return np.array(x, dtype=np.float64, order="C")


def _i64(x) -> np.ndarray:
    return np.array(x, dtype=np.int64, order="C")


def _check(name: str, arr: np.ndarray, *, low=None, high=None, low_open=False,
           high_open=False, allow_inf=False) -> None:
    """Range check of an array; the error names the argument, the first bad index and value."""
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if np.any(bad):
        idx = tuple(int(v) for v in np.argwhere(bad)[0])
        where = f" at index {idx[0] if len(idx) == 1 else idx}" if arr.ndim else ""
        rng = []
        if low is not None:
            rng.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            rng.append(f"{'<' if high_open else '<='} {high:g}")
        kind = "not NaN" if allow_inf else "finite"
        raise ValueError(f"{name} must be {kind}{' and ' if rng else ''}{' and '.join(rng)}, "
                         f"got {arr[idx] if arr.ndim else float(arr)!r}{where}")


def _shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")


def _tables(tables: MarginTables) -> MarginTables:
    mmr, cum, n = _f64(tables.mmr), _f64(tables.cum), _i64(tables.n)
    if mmr.ndim != 2 or mmr.shape[0] == 0 or mmr.shape[1] == 0:
        raise ValueError(f"tables.mmr must be 2-D (n_tables, max_brackets), got shape "
                         f"{mmr.shape}")
    _shape("tables.cum", cum, mmr.shape)
    _shape("tables.n", n, (mmr.shape[0],))
    if np.any((n < 1) | (n > mmr.shape[1])):
        k = int(np.flatnonzero((n < 1) | (n > mmr.shape[1]))[0])
        raise ValueError(f"tables.n must be in [1, {mmr.shape[1]}], got {n[k]} at index {k}")
    used = np.arange(mmr.shape[1])[None, :] < n[:, None]
    _check("tables.mmr", np.where(used, mmr, 0.0), low=0.0, high=1.0, high_open=True)
    _check("tables.cum", np.where(used, cum, 0.0), low=0.0)
    return MarginTables(np.where(used, mmr, 0.0), np.where(used, cum, 0.0), n)


def _impact_params(impact: ImpactParams, n_a: int) -> ImpactParams:
    out = []
    for name, x in zip(("depth", "linear", "sqrt", "decay"), impact, strict=True):
        arr = _f64(x)
        if arr.ndim == 0:
            arr = np.full(n_a, float(arr))
        _shape(f"impact.{name}", arr, (n_a,))
        out.append(arr)
    depth, lin, sq, decay = out
    _check("impact.depth (USD)", depth, low=0.0, low_open=True, allow_inf=True)
    _check("impact.linear", lin, low=0.0)
    _check("impact.sqrt", sq, low=0.0)
    _check("impact.decay (per step)", decay, low=0.0, high=1.0)
    return ImpactParams(depth, lin, sq, decay)


def _rules(rules: CascadeRules) -> CascadeRules:
    def real(name, v, **kw):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"rules.{name} must be a real number, got {v!r}")
        _check(f"rules.{name}", np.asarray(float(v)), **kw)
        return float(v)

    if not isinstance(rules.partial, (bool, np.bool_)):
        raise TypeError(f"rules.partial must be True or False, got {rules.partial!r}")
    if isinstance(rules.grace, (bool, np.bool_)) or not isinstance(rules.grace, numbers.Integral):
        raise TypeError(f"rules.grace must be an int (steps, -1 for none), got {rules.grace!r}")
    if rules.grace < -1:
        raise ValueError(f"rules.grace must be >= -1 (steps; -1 for none), got {rules.grace}")
    return CascadeRules(
        real("liq_fraction", rules.liq_fraction, low=0.0, high=1.0, low_open=True),
        real("fee_rate", rules.fee_rate, low=0.0, high=1.0, high_open=True),
        real("fund", rules.fund, low=0.0, allow_inf=True),
        bool(rules.partial),
        real("partial_target", rules.partial_target, low=1.0),
        int(rules.grace),
        real("topup_prob", rules.topup_prob, low=0.0, high=1.0),
        real("topup_target", rules.topup_target, low=1.0),
    )


def _position_checks(prefix, asset, inverse, q, entry, face, table, n_a, n_tab):
    if np.any((asset < 0) | (asset >= n_a)):
        k = int(np.flatnonzero((asset < 0) | (asset >= n_a))[0])
        raise ValueError(f"{prefix}asset must be a price column in [0, {n_a}), got {asset[k]} "
                         f"at index {k}")
    if np.any((inverse != 0) & (inverse != 1)):
        k = int(np.flatnonzero((inverse != 0) & (inverse != 1))[0])
        raise ValueError(f"{prefix}inverse must be 0 or 1, got {inverse[k]} at index {k}")
    if np.any((table < 0) | (table >= n_tab)):
        k = int(np.flatnonzero((table < 0) | (table >= n_tab))[0])
        raise ValueError(f"{prefix}table must be a row of tables in [0, {n_tab}), got "
                         f"{table[k]} at index {k}")
    _check(f"{prefix}q", q)
    _check(f"{prefix}entry", entry, low=0.0, low_open=True)
    _check(f"{prefix}face", face, low=0.0, low_open=True)


def _single(acc: SingleAccounts, n_a: int, n_tab: int) -> SingleAccounts:
    asset, inverse, table = _i64(acc.asset), _i64(acc.inverse), _i64(acc.table)
    fl = [_f64(x) for x in (acc.q, acc.entry, acc.face, acc.usd, acc.w_usd, acc.coin,
                            acc.w_coin)]
    n = asset.shape[0]
    for name, arr in zip(SingleAccounts._fields, (asset, inverse, *fl[:3], table, *fl[3:]),
                         strict=True):
        _shape(f"accounts.{name}", arr, (n,))
    q, entry, face, usd, w_usd, coin, w_coin = fl
    _position_checks("accounts.", asset, inverse, q, entry, face, table, n_a, n_tab)
    _check("accounts.usd", usd)
    _check("accounts.coin", coin)
    _check("accounts.w_usd", w_usd, low=0.0, high=1.0, low_open=True)
    _check("accounts.w_coin", w_coin, low=0.0, high=1.0, low_open=True)
    return SingleAccounts(asset, inverse, q, entry, face, table, usd, w_usd, coin, w_coin)


def _cross(acc: CrossAccounts, n_a: int, n_tab: int) -> CrossAccounts:
    start = _i64(acc.start)
    if start.ndim != 1 or start.size < 1 or start[0] != 0 or np.any(np.diff(start) < 0):
        raise ValueError("accounts.start must be a non-decreasing 1-D CSR index starting at 0, "
                         f"got {start!r}")
    n_acc, n_pos = start.size - 1, int(start[-1])
    pos_asset, pos_inv, pos_tab = _i64(acc.pos_asset), _i64(acc.pos_inverse), _i64(acc.pos_table)
    pos_q, pos_entry, pos_face = _f64(acc.pos_q), _f64(acc.pos_entry), _f64(acc.pos_face)
    for name, arr in (("pos_asset", pos_asset), ("pos_inverse", pos_inv), ("pos_q", pos_q),
                      ("pos_entry", pos_entry), ("pos_face", pos_face), ("pos_table", pos_tab)):
        _shape(f"accounts.{name}", arr, (n_pos,))
    _position_checks("accounts.pos_", pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab,
                     n_a, n_tab)
    usd, w_usd, bal, w_bal = _f64(acc.usd), _f64(acc.w_usd), _f64(acc.bal), _f64(acc.w_bal)
    _shape("accounts.usd", usd, (n_acc,))
    _shape("accounts.w_usd", w_usd, (n_acc,))
    _shape("accounts.bal", bal, (n_acc, n_a))
    _shape("accounts.w_bal", w_bal, (n_acc, n_a))
    _check("accounts.usd", usd)
    _check("accounts.bal", bal)
    _check("accounts.w_usd", w_usd, low=0.0, high=1.0, low_open=True)
    _check("accounts.w_bal", w_bal, low=0.0, high=1.0, low_open=True)
    return CrossAccounts(start, pos_asset, pos_inv, pos_q, pos_entry, pos_face, pos_tab, usd,
                         w_usd, bal, w_bal)
