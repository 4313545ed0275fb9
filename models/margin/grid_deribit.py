"""Deribit portfolio-margin-like grid method (:class:`DeribitLike`).

Split out of :mod:`marginlab.models.margin.grid`, whose module notes (conventions shared by
both grid methods) and shared scan engine it uses; import it from either module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate.pricing import black_scholes_greeks

from .._validate import check_real
from ..book import DATED_TYPES, INVERSE_TYPES, LINEAR_TYPES, OPTION_TYPES, Book
from ..scenarios import MarketState
from .base import MarginResult
from .grid import (
    _DAYS_PER_YEAR,
    _check_common,
    _check_int,
    _group_columns,
    _lookup,
    _losses,
    _nnz_in,
    _per_underlying,
    _pick_driver,
    _prepare,
    _Prepared,
    _result,
    _unit_grid,
    _worst,
)

__all__ = ["DeribitLike"]

_VOL_NAMES = ("up", "same", "down")
_COIN_TYPES = ("inverse_perp", "inverse_future", "inverse_option")


@dataclass(frozen=True, eq=False)
class DeribitLike:
    r"""Deribit-style portfolio margin: a risk matrix of price buckets x vol shocks per
    underlying, an extended table of large moves, and a roll-shock add-on.

    Defaults are Deribit's published BTC_USD model parameters and USD settlement-currency
    parameters (see SOURCES). Each ``float or mapping`` parameter takes one value for every
    underlying or a mapping underlying -> value.

    Parameters
    ----------
    price_move : float or mapping, default 0.16
        Maximum price move of the standard table (Deribit ``price_range``), in (0, 1).
    n_buckets : int, default 9
        Evenly spaced price buckets from ``-price_move`` to ``+price_move``, odd, in [3, 101]
        (so one bucket is the zero move; Deribit's ``buckets_count = 4`` per side).
    vol_range_up, vol_range_down : float or mapping, default 0.5, 0.25
        Relative implied-vol shocks at 30 days to expiry, in [0, 10].
    min_vol_for_shock_up : float or mapping, default 0.5
        Floor of the shocked-up vol (absolute, e.g. 0.5 = 50 %), in [0, 10].
    short_term_vega_power, long_term_vega_power : float, default 0.3, 0.13
        Exponent of the ``(30 / days)`` term-structure scaling of the vol shocks below and
        from 30 days to expiry, in [0, 2].
    extended_moves : sequence of float, default (-0.66, -0.33, 0.5, 1, 2, 3, 4, 5)
        Price moves of the extended table, each > -1 (may be empty).
    extended_factor : float or mapping, default 1.0
        Fraction of the extended-table loss counted (Deribit ``extended_table_factor``), in
        [0, 1].
    dampener : float or mapping, default 25_000.0
        USD amount taken off every extended-table loss (Deribit ``extended_dampener``), >= 0.
    min_annual_move, annual_move_risk : float or mapping, default 0.01, 0.1
        Roll shock rate ``max(min_annual_move, annual_move_risk x T)`` per unit of futures
        notional (Deribit ``min_annualised_move``, ``annualised_move_risk``), in [0, 1].
    mm_fraction : float, default 0.8
        MM = mm_fraction x IM (Deribit ``mm_factor``), in (0, 1].
    horizon_days : float, default 0.0
        Time passing in every scenario, days, in [0, 365].
    include_collateral : bool, default True
        Put non-stable collateral on its underlying's grid (see the module notes).
    coin_margin : bool, default True
        Measure coin-settled (inverse) holdings in their coin, as Deribit does (see Notes).
    name : str, default "Deribit-like"

    Notes
    -----
    For each underlying with price ``S`` and price move ``p``:

    **Standard table.** Buckets ``m_i = -p + 2 p i / (n - 1)``, ``i = 0..n-1``, each with
    three vol scenarios (up, same, down): ``3 n`` scenarios. An option with implied vol
    ``sigma`` and ``d`` days to expiry (floored at 1 day) is revalued at
    ``sigma_up = max(sigma (1 + r_up (30/d)^k), v_min)`` and
    ``sigma_down = max(sigma (1 - r_down (30/d)^k), 0)``, ``k`` the short-term vega power
    below 30 days and the long-term one from 30 days (an option with ``sigma = 0`` keeps its
    zero vol). Loss ``L_i = -sum_j q_j U_j(m_i, vol)``.

    **Extended table.** Moves ``e`` of ``extended_moves``, vol up only. Options are revalued
    at ``S (1 + e)``; every other holding (futures, perpetuals, spot, collateral) at the
    move clamped to ``[-p, +p]``, as Deribit's published risk vectors show (a perpetual's
    extended-table P&L equals its P&L at the edge bucket of the same sign): the extended table
    exists for large short out-of-the-money option positions. Counted loss
    ``E_e = max(f x L_e - D, 0)`` with ``f = extended_factor``, ``D = dampener``.

    **Worst case** ``W = max(0, max_i L_i, max_e E_e)`` (ties go to the "vol same" scenario).

    **No skew dimension.** Deribit's documented risk matrix shocks the price and the vol
    *level* only (each option's own vol, up and down with the ``(30/d)^k`` term scaling
    above): it has no skew or smile-shape scenario. Options are revalued at their own
    surface vols (``MarketState.surfaces``), so the skew enters through today's vols, but
    unlike :class:`~marginlab.models.margin.grid.SpanLike` (``skew_scan``, ``term_scan``)
    this grid adds no skew or term-shape scenarios: adding them would no longer describe
    Deribit's method.

    **Roll shock** ``RS = sum_{futures, perpetuals} |notional_j| x max(a_min, a x T_j)``
    (``T_j`` years to expiry, 0 for perpetuals; notional ``q m S`` linear, ``q F`` inverse):
    long and short futures each add, so offsetting futures pay for their basis risk.
    This roll shock is Deribit's documented futures treatment (the ``annualised_move_risk``
    and ``min_annualised_move`` currency parameters of ``private/pme/simulate``; its earlier
    portfolio-margin page charged a flat "contingency component of 1 % of underlying value
    for offsetting futures"): the grid itself moves every future and perpetual one for one
    with spot (Deribit's risk vectors show no basis dimension), so a calendar spread's
    worst case is exactly 0 and its IM the two legs' roll shocks, e.g. long 10 BTC
    quarterly (T = 0.25) against short 10 BTC perpetual at 60,000:
    ``600,000 x (max(0.01, 0.1 x 0.25) + 0.01) = 21,000`` USD. The scenario basis factor of
    the risk-based methods (``ScenarioSet.basis_shock``) is not applied on this grid.

    ``IM_u = W + RS``, ``IM = sum_u IM_u`` (segregated: no offset between underlyings),
    ``MM = mm_fraction x IM``. For a linear perpetual of notional ``N`` alone:
    ``IM = p N + a_min N`` (0.16 N + 0.01 N = 0.17 N with the defaults).

    Allocation: each holding's own loss in the driving scenario (scaled by ``E_e / (f L_e)``
    when it is an extended one) plus its own roll shock. ``details``: ``worst_case``,
    ``roll_shock`` (summed over underlyings).

    **Currency of measurement** (``coin_margin=True``, default, as Deribit does). Deribit
    keeps one portfolio per settlement currency: coin-settled contracts (``inverse_perp``,
    ``inverse_future``, ``inverse_option``) are margined in their coin, USD(C)-settled ones in
    USD. Each underlying therefore holds up to two portfolios, scanned separately and summed:
    the USD one (linear contracts, USD options, spot) with losses in USD, and the coin one
    (key ``"<U> (coin)"``) whose scenario P&L is the coin P&L, ``mult (1/S - 1/S')`` for an
    inverse contract (= USD P&L / (1 + m)) and ``V'/S' - V/S`` for a coin-settled option,
    times ``S`` to report it in USD at today's price. The coin IM is ``IM_coin = IM / S``.
    Coin collateral is the coin portfolio's numeraire: it carries no risk there (with
    ``coin_margin`` the ``include_collateral`` option has no effect on this method). A long
    inverse perpetual of face ``N`` USD needs ``p / (1 - p) N`` (worst bucket ``-p``), a
    short one ``p / (1 + p) N``; measured in USD both would need ``p N`` (16 % low and
    14 % high). ``coin_margin=False`` measures every holding in USD on one grid per underlying
    (the behaviour before issue 13).

    SOURCES: Deribit support, "Portfolio Margin" (S:PM: maximum price move e.g. +-16 % in 9
    evenly spaced buckets including zero; vol range up, same, down per bucket; extended
    table of e.g. -66 %, -33 %, +50 %, +100 %, +200 %, +300 %, +400 %, +500 %, vol up only,
    a fraction of the simulated P&L, with a dampener; worst scenario sets the margin). Deribit
    API documentation, ``private/pme/simulate`` response example (model parameters
    ``price_range`` 0.16, ``volatility_range_up`` 0.5, ``volatility_range_down`` 0.25,
    ``min_volatility_for_shock_up`` 0.5, ``short_term_vega_power`` 0.3,
    ``long_term_vega_power`` 0.13, ``extended_table_factor`` 1, ``buckets_count`` 4,
    ``vol_scenarios_count`` 3, ``mm_factor`` 0.8, USD ``extended_dampener`` 25 000,
    ``annualised_move_risk`` 0.1, ``min_annualised_move`` 0.01; and risk vectors from which
    ``risk_matrix_margin = worst_case + roll_shock`` (0.05968587 + 0.00315726 = 0.06284313
    BTC), ``roll_shock = 0.01 x (0.314538364 + 0.001187534)`` BTC and ``maintenance =
    0.8 x risk_matrix_margin`` follow). The vol-shock formula with the ``(30/days)^power``
    scaling and the up-shock floor: Deribit's earlier published rule "(30/days to
    expiration)^0.30 x 38 %" and the description of Deribit's rule by a third-party risk
    service (oreome.com, "Advanced Risk Scenarios"); not confirmed on Deribit's own page.

    Not modelled: delta shock (``max_delta_shock``, ``delta_total_liq_shock_threshold``),
    correlation contingency, ``pnl_offset`` haircuts of gains (they do not change the worst
    loss of one underlying), open-order and MMP margins, cross-currency aggregation (X:PM).
    The roll shock's growth with time to expiry (``annual_move_risk x T``) is our reading:
    the published examples only confirm the ``min_annual_move`` floor.
    """

    price_move: Any = 0.16
    n_buckets: int = 9
    vol_range_up: Any = 0.5
    vol_range_down: Any = 0.25
    min_vol_for_shock_up: Any = 0.5
    short_term_vega_power: float = 0.3
    long_term_vega_power: float = 0.13
    extended_moves: Sequence[float] = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
    extended_factor: Any = 1.0
    dampener: Any = 25_000.0
    min_annual_move: Any = 0.01
    annual_move_risk: Any = 0.1
    mm_fraction: float = 0.8
    horizon_days: float = 0.0
    include_collateral: bool = True
    coin_margin: bool = True
    name: str = "Deribit-like"

    def __post_init__(self) -> None:
        sets = object.__setattr__
        sets(self, "price_move", _per_underlying("price_move", self.price_move, low=0.0,
                                                 high=1.0, low_open=True, high_open=True))
        sets(self, "n_buckets", _check_int("n_buckets", self.n_buckets, 3, 101))
        if self.n_buckets % 2 == 0:
            raise ValueError(f"n_buckets must be odd (one bucket is the zero move), got "
                             f"{self.n_buckets}")
        for name in ("vol_range_up", "vol_range_down", "min_vol_for_shock_up"):
            sets(self, name, _per_underlying(name, getattr(self, name), low=0.0, high=10.0))
        for name in ("short_term_vega_power", "long_term_vega_power"):
            sets(self, name, check_real(name, getattr(self, name), low=0.0, high=2.0))
        moves = self.extended_moves
        if isinstance(moves, (str, bytes)) or not isinstance(moves, Sequence):
            raise TypeError(f"extended_moves must be a sequence of numbers, got {moves!r}")
        sets(self, "extended_moves", tuple(
            check_real(f"extended_moves[{i}]", m, low=-1.0, low_open=True, high=100.0)
            for i, m in enumerate(moves)))
        sets(self, "extended_factor", _per_underlying("extended_factor", self.extended_factor,
                                                      low=0.0, high=1.0))
        sets(self, "dampener", _per_underlying("dampener", self.dampener, low=0.0))
        for name in ("min_annual_move", "annual_move_risk"):
            sets(self, name, _per_underlying(name, getattr(self, name), low=0.0, high=1.0))
        if not isinstance(self.coin_margin, (bool, np.bool_)):
            raise TypeError(f"coin_margin must be a bool, got {self.coin_margin!r}")
        _check_common(self)

    # ------------------------------------------------------------------ scenarios
    def scenario_table(self, underlying: str) -> pd.DataFrame:
        """The scenarios of ``underlying``: standard buckets x vols, then the extended table.

        Columns ``table`` ("standard"/"extended"), ``bucket`` (1-based within the table),
        ``price_move`` (relative), ``vol`` ("up"/"same"/"down"), ``label``.
        """
        p = _lookup("price_move", self.price_move, str(underlying).upper())
        rows = []
        for i, m in enumerate(np.linspace(-p, p, self.n_buckets), start=1):
            m = 0.0 if abs(m) < 1e-15 else float(m)
            for v in _VOL_NAMES:
                rows.append(("standard", i, m, v))
        for i, e in enumerate(self.extended_moves, start=1):
            rows.append(("extended", i, float(e), "up"))
        table = pd.DataFrame(rows, columns=["table", "bucket", "price_move", "vol"])
        table["label"] = [f"{t} price {100 * m:+.4g}% vol {v}" for t, _, m, v in rows]
        return table

    def _vol_factors(self, prep: _Prepared, cols: np.ndarray, g: str) -> np.ndarray:
        """Implied-vol multipliers (up, same, down) per instrument column, shape (n, 3)."""
        n = len(cols)
        out = np.ones((n, 3))
        if n == 0:
            return out
        opt = np.isin(prep.types[cols], OPTION_TYPES)
        if not opt.any():
            return out
        a = prep.arrays
        sigma = np.asarray(a["implied_vol"])[cols]
        days = np.maximum(np.asarray(a["expiry"])[cols] * _DAYS_PER_YEAR, 1.0)
        power = np.where(days < 30.0, self.short_term_vega_power, self.long_term_vega_power)
        scale = (30.0 / days) ** power
        up = np.maximum(sigma * (1.0 + _lookup("vol_range_up", self.vol_range_up, g) * scale),
                        _lookup("min_vol_for_shock_up", self.min_vol_for_shock_up, g))
        down = np.maximum(sigma * (1.0 - _lookup("vol_range_down", self.vol_range_down, g)
                                   * scale), 0.0)
        live = opt & (sigma > 0.0)
        safe = np.where(live, sigma, 1.0)
        out[:, 0] = np.where(live, up / safe, 1.0)
        out[:, 2] = np.where(live, down / safe, 1.0)
        return out

    def _scan(self, book: Book, market: MarketState) -> tuple[_Prepared, dict[str, dict]]:
        prep = _prepare(book, market, self.horizon_days, self.include_collateral)
        out = {}
        for g in prep.groups:
            inst_cols, coll_cols = _group_columns(prep, g)
            tab = self.scenario_table(g)
            p = _lookup("price_move", self.price_move, g)
            std = (tab["table"] == "standard").to_numpy()
            moves = tab["price_move"].to_numpy()
            vol_idx = tab["vol"].map({v: i for i, v in enumerate(_VOL_NAMES)}).to_numpy()
            n_i = len(inst_cols)
            opt = np.isin(prep.types[inst_cols], OPTION_TYPES)
            clamped = np.where(std, moves, np.clip(moves, -p, p))
            inst_moves = np.where(opt[:, None], moves[None, :], clamped[None, :])
            vf = self._vol_factors(prep, inst_cols, g)[:, vol_idx].reshape(n_i, len(moves))
            s0 = market.price(g)
            U = _unit_grid(prep, market, inst_cols, coll_cols, s0, inst_moves, vf, clamped)
            cols = np.concatenate([inst_cols, coll_cols])
            common = {"g": g, "s0": s0, "std": std, "labels": tab["label"].to_numpy(),
                      "vol_idx": vol_idx}
            if not self.coin_margin:
                out[g] = {"cols": cols, "U": U, "raw": _losses(prep, cols, U), **common}
                continue
            # coin-settled holdings (and the coin collateral, the numeraire) in coin x S0
            n_c = len(cols)
            moves_all = np.vstack([inst_moves, np.tile(clamped, (len(coll_cols), 1))])
            coin = np.zeros(n_c, bool)
            coin[:n_i] = np.isin(prep.types[inst_cols], _COIN_TYPES)
            coin[n_i:] = True
            U_coin = U[coin] / (1.0 + moves_all[coin])
            col_types = np.concatenate([prep.types[inst_cols].astype(object),
                                        np.full(len(coll_cols), "collateral", dtype=object)])
            inv_opt = col_types[coin] == "inverse_option"
            if inv_opt.any():  # coin P&L V1/S1 - V0/S0: remove the premium's coin revaluation
                c = cols[coin][inv_opt]
                a = prep.arrays
                v0 = np.asarray(black_scholes_greeks(
                    s0, np.asarray(a["strike"])[c], np.asarray(a["expiry"])[c],
                    np.asarray(a["implied_vol"])[c], market.rate, 0.0,
                    is_call=np.asarray(a["is_call"])[c]).price)
                mult = np.asarray(a["multiplier"])[c]
                mv = moves_all[coin][inv_opt]
                U_coin[inv_opt] = (U[coin][inv_opt] - (mult * v0)[:, None] * mv) / (1.0 + mv)
            U_coin[np.flatnonzero(coin) >= n_i] = 0.0  # coin collateral: no risk in coin
            for key, sel, UU in ((g, ~coin, U[~coin]), (f"{g} (coin)", coin, U_coin)):
                if not sel.any():
                    continue
                cc = cols[sel]
                out[key] = {"cols": cc, "U": UU, "raw": _losses(prep, cc, UU), **common}
        return prep, out

    def risk_arrays(self, book: Book, market: MarketState) -> dict[str, dict[str, np.ndarray]]:
        """Raw losses per portfolio held: ``{"standard": (n_accounts, 3 n_buckets),
        "extended": (n_accounts, n_extended)}`` before the extended factor and dampener
        (Deribit's "pre-aggregated" vectors, as losses), in :meth:`scenario_table` order.

        Keys: the underlying (e.g. ``"BTC"``) for its USD-settled holdings, losses in USD;
        with ``coin_margin`` also ``"BTC (coin)"`` for its coin-settled holdings, losses in
        the coin (Deribit's own vectors, sign flipped)."""
        _, scan = self._scan(book, market)
        out = {}
        for key, d in scan.items():
            unit = d["s0"] if key.endswith("(coin)") else 1.0
            out[key] = {"standard": d["raw"][:, d["std"]] / unit,
                        "extended": d["raw"][:, ~d["std"]] / unit}
        return out

    # ------------------------------------------------------------------ margin
    def compute(self, book: Book, market: MarketState, *,
                scenarios: Any = None) -> MarginResult:
        """Deribit-like IM and MM of every account (``scenarios`` is ignored: see module)."""
        prep, scan = self._scan(book, market)
        n_acc = book.n_accounts
        im = np.zeros(n_acc)
        tot_w, tot_rs = np.zeros(n_acc), np.zeros(n_acc)
        driver = np.full(n_acc, "none", dtype=object)
        best = np.zeros(n_acc)
        contrib = np.zeros(len(prep.nnz_qty))
        for key, d in scan.items():
            g = d["g"]
            cols, U, s0, std, raw = d["cols"], d["U"], d["s0"], d["std"], d["raw"]
            f = _lookup("extended_factor", self.extended_factor, g)
            damp = _lookup("dampener", self.dampener, g)
            eff = raw.copy()
            eff[:, ~std] = np.maximum(f * raw[:, ~std] - damp, 0.0)
            prio = np.where(std & (d["vol_idx"] == 1), 0.0, np.where(std, 1.0, 2.0))
            worst, k = _worst(eff, prio)
            sel, loc = _nnz_in(prep, cols)
            acc, q = prep.nnz_acc[sel], prep.nnz_qty[sel]
            rate = self._roll_rates(prep, cols, g)
            notional = self._notional(prep, cols, s0)
            rs_own = np.abs(q) * notional[loc] * rate[loc]
            rs = np.bincount(acc, weights=rs_own, minlength=n_acc)
            im_g = worst + rs
            im += im_g
            tot_w += worst
            tot_rs += rs
            # allocation: own loss in the driving scenario (scaled on the extended table)
            rows = np.arange(n_acc)
            raw_k, eff_k = raw[rows, k], eff[rows, k]
            scale = np.where(std[k], 1.0, np.divide(eff_k, raw_k, out=np.zeros(n_acc),
                                                    where=raw_k > 0.0))
            own = np.where(worst[acc] > 0.0, -q * U[loc, k[acc]] * scale[acc], 0.0)
            contrib[sel] = own + rs_own
            labels = np.where(worst > 0.0, np.char.add(f"{key} ", d["labels"][k].astype(str)),
                              f"{key} roll shock").astype(object)
            _pick_driver(driver, best, im_g, labels)
        details = {"worst_case": tot_w, "roll_shock": tot_rs}
        return _result(self.name, book, market, prep, im, self.mm_fraction * im, driver,
                       contrib, details)

    # ------------------------------------------------------------------ helpers
    def _roll_rates(self, prep: _Prepared, cols: np.ndarray, g: str) -> np.ndarray:
        """Roll-shock rate per unit of notional of each column (0 but for futures/perps)."""
        rate = np.zeros(len(cols))
        inst = np.flatnonzero(prep.is_inst[cols])
        c = cols[inst]
        t = prep.types[c]
        fut = ~np.isin(t, OPTION_TYPES) & (t != "spot")
        tau = np.where(np.isin(t, DATED_TYPES), np.asarray(prep.arrays["expiry"])[c], 0.0)
        a_min = _lookup("min_annual_move", self.min_annual_move, g)
        a = _lookup("annual_move_risk", self.annual_move_risk, g)
        rate[inst] = np.where(fut, np.maximum(a_min, a * tau), 0.0)
        return rate

    @staticmethod
    def _notional(prep: _Prepared, cols: np.ndarray, s0: float) -> np.ndarray:
        """USD notional per unit held: ``m S`` (linear, options, collateral), ``F`` inverse."""
        out = np.full(len(cols), s0)
        inst = np.flatnonzero(prep.is_inst[cols])
        c = cols[inst]
        mult = np.asarray(prep.arrays["multiplier"])[c]
        t = prep.types[c]
        out[inst] = np.where(np.isin(t, INVERSE_TYPES), mult,
                             np.where(np.isin(t, LINEAR_TYPES + OPTION_TYPES), mult * s0, 0.0))
        return out

