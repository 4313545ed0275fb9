r"""Book conversion of the liquidation cascade: a :class:`~marginlab.models.book.Book` to the
kernels' arrays.

:func:`_convert` nets positions per account and instrument (one-way mode), resolves the
maintenance rule of every instrument into the kernels' margin tables (:func:`_tables_for`),
values collateral after haircuts, books option premiums and undefined-entry residuals, and
decides between the fast path (one position per account, collateral in USD or that
position's coin) and the general path; :func:`_to_cross` gives a fast-path book the general
path's form. Private to :func:`~marginlab.models.liquidation.simulate_liquidations` (the names
are importable from :mod:`marginlab.models.liquidation` as well).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate import cascade as K

from . import liquidation_options as _lo
from .book import INVERSE_TYPES, OPTION_TYPES, STABLECOINS, Book
from .liquidation_rules import LiquidationRules
from .margin.brackets import BracketTable
from .scenarios import MarketState

_SIMULATED_TYPES = ("linear_perp", "linear_future", "inverse_perp", "inverse_future")


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
