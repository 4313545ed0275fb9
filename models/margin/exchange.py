r"""Exchange and protocol rule-based margin: Binance-style brackets, dYdX v4, Drift, Deribit.

Four deterministic methodologies of the :class:`~marginlab.models.margin.base.MarginMethod`
interface, each applied to the futures / perpetual positions of a
:class:`~marginlab.models.book.Book` at today's prices (``market``):

* :class:`TieredMargin`: leverage and margin brackets (Binance USDⓈ-M and COIN-M, Bybit,
  OKX), cross (one-way) or isolated (hedge-mode) margin, linear and inverse contracts, with
  per-position liquidation prices (:meth:`TieredMargin.liquidation_prices`).
* :class:`DydxMargin`: dYdX v4's open-interest-scaled initial margin fraction.
* :class:`DriftMargin`: Drift protocol-v2's size premium (margin ratio growing with the square
  root of the position size).
* :class:`DeribitLinearMargin`: Deribit's linear (USDC) perpetual rates, a base rate plus an
  add-on proportional to the position size in coin.

Conventions shared by the four:

* Only futures and perpetuals are margined. :class:`TieredMargin` takes linear and inverse
  ones (``linear_perp``, ``linear_future``, ``inverse_perp``, ``inverse_future``); the other
  three take linear ones only (dYdX, Drift and Deribit's linear book list no inverse
  contracts). Positions of other types (spot, options, and inverse contracts for the linear-only
  methods) raise ``ValueError`` by default; ``on_unsupported="ignore"`` leaves them out (their
  unrealised P&L still counts in the margin balance). An account whose positions were all
  left out gets IM = MM = 0 and the driver ``"not margined by <method>: <instrument> (<type>)"``;
  ``"no positions"`` is kept for accounts that hold none.
* Per-market parameters (bracket tables, leverage, dYdX tiers, Drift and Deribit rates,
  open interest) are given as one value for every market or as a mapping keyed by
  ``instrument_id`` or by ``underlying``: an instrument's own id is looked up first, then its
  underlying (case-insensitive).
* A position's size: ``quantity * multiplier`` units of the underlying for linear contracts,
  ``quantity`` contracts of ``face_value`` USD for inverse ones. Positions of one account on
  one instrument are netted (one-way mode: one position per symbol), except by
  :class:`TieredMargin` in isolated mode (hedge mode: one long and one short position per
  symbol).
* IM, MM in USD; ``margin_balance`` from :func:`marginlab.models.portfolio.account_equity`;
  the allocation gives each (account, instrument) holding its IM (``im_contribution``, summing
  to the account's IM) and MM (``mm_contribution``). The rules use today's prices only:
  ``scenarios`` is accepted for the common interface and ignored.
* Every computation is vectorised over positions and accounts; the only Python loops run over
  instruments, underlyings or bracket tables.

This module holds :class:`DriftMargin` and :class:`DeribitLinearMargin`;
:class:`TieredMargin` lives in :mod:`marginlab.models.margin.tiered`, :class:`DydxMargin` and
:func:`dydx_initial_margin_fraction` in :mod:`marginlab.models.margin.dydx`, and the shared
validation and position plumbing in :mod:`marginlab.models.margin._exchange_common`; all are
importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..book import Book
from ..scenarios import MarketState
from ._exchange_common import (  # noqa: F401  (re-exported: importable from here)
    _MODES,
    _NO_POSITION,
    _ON,
    FUTURES_TYPES,
    LINEAR_FUTURES_TYPES,
    _array_arg,
    _check_choice,
    _check_key,
    _check_name,
    _check_ordered,
    _driver,
    _explain_unmargined,
    _linear_setup,
    _lookup,
    _market_param,
    _net_positions,
    _Positions,
    _prices,
    _resolve,
    _result,
    _select_rows,
)
from .base import MarginResult
from .dydx import DydxMargin, dydx_initial_margin_fraction
from .tiered import TieredMargin

__all__ = [
    "TieredMargin",
    "DydxMargin",
    "DriftMargin",
    "DeribitLinearMargin",
    "dydx_initial_margin_fraction",
    "drift_margin_ratio",
]


# ============================================================================ Drift v2
def drift_margin_ratio(size: Any, base_ratio: Any, imf_factor: Any) -> Any:
    r"""Drift's size-adjusted margin ratio (the perp size premium), vectorised.

    .. math:: r(S) = \max\left(r_{base},\ \tfrac{4}{5} r_{base} + imf \sqrt{S}\right)
              \quad (imf > 0), \qquad r(S) = r_{base} \quad (imf = 0)

    with ``S`` the absolute position size in units of the base asset and ``imf`` the market's
    ``imf_factor`` as a fraction (Drift stores it in units of ``SPOT_IMF_PRECISION`` = 1e6).
    SOURCE: drift-labs/protocol-v2, ``programs/drift/src/math/margin.rs``,
    ``calculate_size_premium_liability_weight`` (``liability_weight - liability_weight / 5
    + sqrt(size) * imf_factor``, bounded below by ``liability_weight``), called by
    ``PerpMarket::get_margin_ratio`` in ``programs/drift/src/state/perp_market.rs`` for the
    initial and the maintenance ratio alike (non-high-leverage mode). Drift evaluates it in
    integers (``sqrt(size * 10 + 1)`` of a 1e9-scaled size, ratios in 1e-4); this is the
    real-valued formula.

    Examples
    --------
    Drift's unit test ``get_margin_ratio::smart_hlm_size``: initial ratio 10 %, imf factor
    50 (5e-5), size 1,000,000 base units -> 1300 / 1e4:

    >>> round(drift_margin_ratio(1e6, 0.10, 50e-6), 12)
    0.13
    """
    s = _array_arg("size", size, low=0.0)
    base = _array_arg("base_ratio", base_ratio, low=0.0)
    imf = _array_arg("imf_factor", imf_factor, low=0.0)
    s, base, imf = np.broadcast_arrays(s, base, imf)
    out = np.where(imf > 0.0, np.maximum(base, 0.8 * base + imf * np.sqrt(s)), base)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True, eq=False)
class DriftMargin:
    r"""Drift protocol-v2 perp cross margin with the IMF size premium.

    Parameters
    ----------
    base_imr : float or mapping of str to float
        ``margin_ratio_initial / MARGIN_PRECISION`` (e.g. 0.1 for 10x), in (0, 1].
    base_mmr : float or mapping
        ``margin_ratio_maintenance / MARGIN_PRECISION``, in [0, 1], <= ``base_imr``.
    imf_factor : float or mapping
        ``imf_factor / SPOT_IMF_PRECISION`` (e.g. 50 -> 5e-5), >= 0; 0 disables the premium.
    on_unsupported : {"raise", "ignore"}
        What to do with positions that are not linear futures / perpetuals.
    name : str
        Label; default ``"drift"``.

    Notes
    -----
    Per account (Drift cross-margins a user's perp positions, one per market):

    .. math:: IM = \sum_m |q_m| P_m \, r(|q_m|; r^{init}_m), \qquad
              MM = \sum_m |q_m| P_m \, r(|q_m|; r^{maint}_m)

    with ``r`` from :func:`drift_margin_ratio` and ``|q_m|`` the base-asset size. SOURCE:
    drift-labs/protocol-v2, ``programs/drift/src/math/margin.rs``,
    ``calculate_perp_position_value_and_pnl`` (``margin_requirement = worst_case_base_asset_
    value * margin_ratio / MARGIN_PRECISION``, the ratio from ``get_margin_ratio`` of the
    absolute base amount). Not modelled: open orders (worst-case base amount), the high-
    leverage mode, user custom margin ratios, the strict (TWAP-bounded) quote price and the
    unrealised-P&L asset weights (the margin balance is the common one of
    :func:`~marginlab.models.portfolio.account_equity`). Because ``r`` is increasing in its
    base ratio, ``base_mmr <= base_imr`` gives ``MM <= IM``.

    The driver names the account's largest-IM market and whether its size premium is active.
    """

    base_imr: float | Mapping[str, float]
    base_mmr: float | Mapping[str, float]
    imf_factor: float | Mapping[str, float] = 0.0
    on_unsupported: str = "raise"
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        imr = _market_param("base_imr", self.base_imr, low=0.0, high=1.0, low_open=True)
        mmr = _market_param("base_mmr", self.base_mmr, low=0.0, high=1.0)
        _check_ordered("base_mmr", mmr, "base_imr", imr)
        sets(self, "base_imr", imr)
        sets(self, "base_mmr", mmr)
        sets(self, "imf_factor", _market_param("imf_factor", self.imf_factor, low=0.0))
        _check_choice("on_unsupported", self.on_unsupported, _ON)
        sets(self, "name", _check_name(self.name, "drift"))

    def compute(self, book: Book, market: MarketState, *, scenarios: Any = None
                ) -> MarginResult:
        """IM and MM of every account at today's prices (``scenarios`` ignored)."""
        pos, used, _, units, notional = _linear_setup(book, market, self.on_unsupported,
                                                      self.name)
        i = pos.instrument
        imr = _resolve("base_imr", self.base_imr, book, used)[i]
        mmr = _resolve("base_mmr", self.base_mmr, book, used)[i]
        imf = _resolve("imf_factor", self.imf_factor, book, used)[i]
        r_im = np.asarray(drift_margin_ratio(units, imr, imf))
        r_mm = np.asarray(drift_margin_ratio(units, mmr, imf))
        im, mm = notional * r_im, notional * r_mm
        ids = book.instruments["instrument_id"].to_numpy(object)
        labels = np.concatenate([np.char.add(ids.astype(str), " base ratio"),
                                 np.char.add(ids.astype(str), " size premium")]).astype(object)
        code = i + book.n_instruments * (r_im > imr)
        driver = _driver(book.n_accounts, pos.account, im, labels, code)
        return _result(self.name, book, market, pos, im, mm, driver)


# ======================================================================== Deribit linear
@dataclass(frozen=True, eq=False)
class DeribitLinearMargin:
    r"""Deribit standard margin of linear (USDC) perpetuals: base rate plus a size add-on.

    Parameters
    ----------
    im_base, mm_base : float or mapping of str to float
        Base initial and maintenance rates (BTC_USDC: 2 % and 1 %; SOL_USDC: 4 % and 2 %),
        in [0, 1], ``mm_base <= im_base``; one for all markets or per market.
    size_rate : float or mapping
        Add-on per unit of the underlying held (BTC_USDC: 0.005 % = 5e-5 per BTC; SOL_USDC:
        0.0005 % = 5e-6 per SOL), >= 0, applied to both rates.
    on_unsupported : {"raise", "ignore"}
        What to do with positions that are not linear futures / perpetuals.
    name : str
        Label; default ``"deribit-linear"``.

    Notes
    -----
    For a net position of ``S = |q| m`` coins at index price ``P``:

    .. math:: IM = S P \,(im_{base} + k S), \qquad MM = S P \,(mm_{base} + k S)

    summed over the account's instruments. SOURCE: Deribit support, "Linear Perpetual",
    section "Margin calculation examples" ("Initial margin requirement: 2% + (POS Size in
    BTC) * 0.005%", "Maintenance margin requirement: 1% + (POS Size in BTC) * 0.005%";
    SOL_USDC 4 % / 2 % + size in SOL x 0.0005 %; margin computed on the index price in the
    margin currency). The rates are applied as published, without a cap.
    """

    im_base: float | Mapping[str, float]
    mm_base: float | Mapping[str, float]
    size_rate: float | Mapping[str, float]
    on_unsupported: str = "raise"
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        im = _market_param("im_base", self.im_base, low=0.0, high=1.0)
        mm = _market_param("mm_base", self.mm_base, low=0.0, high=1.0)
        _check_ordered("mm_base", mm, "im_base", im)
        sets(self, "im_base", im)
        sets(self, "mm_base", mm)
        sets(self, "size_rate", _market_param("size_rate", self.size_rate, low=0.0))
        _check_choice("on_unsupported", self.on_unsupported, _ON)
        sets(self, "name", _check_name(self.name, "deribit-linear"))

    def compute(self, book: Book, market: MarketState, *, scenarios: Any = None
                ) -> MarginResult:
        """IM and MM of every account at today's prices (``scenarios`` ignored)."""
        pos, used, _, units, notional = _linear_setup(book, market, self.on_unsupported,
                                                      self.name)
        i = pos.instrument
        k = _resolve("size_rate", self.size_rate, book, used)[i]
        im = notional * (_resolve("im_base", self.im_base, book, used)[i] + k * units)
        mm = notional * (_resolve("mm_base", self.mm_base, book, used)[i] + k * units)
        ids = book.instruments["instrument_id"].to_numpy(object)
        labels = np.char.add(ids.astype(str), " rate + size add-on").astype(object)
        driver = _driver(book.n_accounts, pos.account, im, labels, i)
        return _result(self.name, book, market, pos, im, mm, driver)
