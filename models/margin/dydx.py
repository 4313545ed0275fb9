r"""dYdX v4 margin: :class:`DydxMargin` and :func:`dydx_initial_margin_fraction`.

dYdX v4's cross margin with the open-interest-scaled initial margin fraction (OIMF) of its
liquidity tiers. The conventions shared with the other rule-based methods are described in
:mod:`marginlab.models.margin.exchange`, from which both names are importable as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validate import check_real
from ..book import Book
from ..scenarios import MarketState
from ._exchange_common import (
    _ON,
    _array_arg,
    _check_choice,
    _check_key,
    _check_name,
    _check_ordered,
    _driver,
    _linear_setup,
    _market_param,
    _resolve,
    _result,
)
from .base import MarginResult

__all__ = ["DydxMargin", "dydx_initial_margin_fraction"]


# ============================================================================== dYdX v4
def dydx_initial_margin_fraction(open_interest_notional: Any, imf_base: Any,
                                 oi_lower_cap: Any, oi_upper_cap: Any) -> Any:
    r"""dYdX v4's open-interest-scaled initial margin fraction (OIMF), vectorised.

    .. math::
        IMF = \begin{cases}
            1 & OI \ge U,\ U \ne 0 \\
            IMF_{base} & U = 0 \text{ or } OI \le L \\
            \min\left(IMF_{base} + \frac{OI - L}{U - L}(1 - IMF_{base}),\ 1\right)
                & \text{otherwise}
        \end{cases}

    with ``OI`` the market's open notional (open interest x oracle price), ``L`` and ``U``
    the liquidity tier's ``OpenInterestLowerCap`` and ``OpenInterestUpperCap`` (``U = 0``
    disables the scaling). SOURCE: dydxprotocol/v4-chain,
    ``protocol/x/perpetuals/types/liquidity_tier.go``, ``GetInitialMarginQuoteQuantums``
    ("Scaling Factor = (Open Notional - Lower Cap) / (Upper Cap - Lower Cap)", "IMF Increase
    = Scaling Factor * (1 - Base IMF)", "Effective IMF = Min(Base IMF + Max(IMF Increase, 0),
    1.0)"), and ``protocol/x/perpetuals/lib/lib.go`` (open interest converted to quote
    quantums at the oracle price). dYdX works in integer quantums and rounds the margin up;
    this is the exact rational value.

    Parameters
    ----------
    open_interest_notional : float or array_like
        Open notional, >= 0 (USD).
    imf_base : float or array_like
        Base initial margin fraction (``InitialMarginPpm / 1e6``), in [0, 1].
    oi_lower_cap, oi_upper_cap : float or array_like
        Caps (USD), >= 0, ``lower <= upper``.

    Examples
    --------
    dYdX's unit test "base IMF = 20%, scaling_factor = 0.5" (caps 1M and 2M, OI 1.5M):

    >>> round(dydx_initial_margin_fraction(1.5e6, 0.2, 1e6, 2e6), 12)
    0.6
    """
    oi = _array_arg("open_interest_notional", open_interest_notional, low=0.0)
    base = _array_arg("imf_base", imf_base, low=0.0, high=1.0)
    lo = _array_arg("oi_lower_cap", oi_lower_cap, low=0.0)
    up = _array_arg("oi_upper_cap", oi_upper_cap, low=0.0)
    oi, base, lo, up = np.broadcast_arrays(oi, base, lo, up)
    if np.any(lo > up):
        i = int(np.flatnonzero((lo > up).reshape(-1))[0])
        raise ValueError(f"oi_lower_cap must be <= oi_upper_cap (dYdX rejects a tier with "
                         f"lower cap > upper cap), got {lo.reshape(-1)[i]!r} > "
                         f"{up.reshape(-1)[i]!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(up > lo, (oi - lo) / (up - lo), 0.0)
    eff = np.minimum(base + np.maximum(scale, 0.0) * (1.0 - base), 1.0)
    eff = np.where((up == 0.0) | (oi <= lo), base, eff)
    eff = np.where((up != 0.0) & (oi >= up), 1.0, eff)
    return float(eff) if eff.ndim == 0 else eff


@dataclass(frozen=True, eq=False)
class DydxMargin:
    r"""dYdX v4 cross margin with the open-interest-scaled initial margin fraction.

    Parameters
    ----------
    imf_base : float or mapping of str to float
        Base initial margin fraction of the market's liquidity tier (``InitialMarginPpm /
        1e6``), in [0, 1]; one for all markets or per market.
    mmf_fraction : float or mapping
        ``MaintenanceFractionPpm / 1e6``, in [0, 1]: the maintenance margin fraction is
        ``imf_base x mmf_fraction``.
    oi_lower_cap, oi_upper_cap : float or mapping
        ``OpenInterestLowerCap`` and ``OpenInterestUpperCap`` of the tier, USD notional, >= 0,
        lower <= upper; ``oi_upper_cap = 0`` disables the scaling (dYdX's large-cap tier).
    open_interest : mapping of str to float
        Each market's open interest in units of the underlying (as dYdX's indexer reports
        ``openInterest``), >= 0; converted to notional at today's price. Needed only for
        markets whose upper cap is non-zero.
    on_unsupported : {"raise", "ignore"}
        What to do with positions that are not linear futures / perpetuals.
    name : str
        Label; default ``"dydx-v4"``.

    Notes
    -----
    Per account (a dYdX subaccount is cross-margined, one position per market):

    .. math:: IM = \sum_m |N_m| \cdot IMF_m(OI_m P_m), \qquad
              MM = \sum_m |N_m| \cdot IMF^{base}_m \cdot f^{maint}_m

    with ``IMF_m`` from :func:`dydx_initial_margin_fraction` and ``N_m = q m P`` the
    position's USD notional. SOURCE: dydxprotocol/v4-chain,
    ``protocol/x/perpetuals/lib/lib.go``, ``GetMarginRequirementsInQuoteQuantums``: the
    maintenance requirement is the *base* initial margin times the maintenance fraction
    ("Maintenance margin requirement quote quantums = IM in quote quantums * maintenance
    fraction PPM", applied to the base IM computed before the open-interest scaling), while
    the initial requirement uses the scaled fraction; ``liquidity_tier.go``,
    ``GetMaintenanceMarginPpm`` (maintenance margin = initial margin x maintenance fraction).
    The scaled IMF is never below the base one, so ``IM >= MM``.

    The driver is the market of the account's largest-IM position and its IMF.
    """

    imf_base: float | Mapping[str, float]
    mmf_fraction: float | Mapping[str, float]
    oi_lower_cap: float | Mapping[str, float] = 0.0
    oi_upper_cap: float | Mapping[str, float] = 0.0
    open_interest: Mapping[str, float] | None = None
    on_unsupported: str = "raise"
    name: str = ""

    def __post_init__(self) -> None:
        sets = object.__setattr__
        sets(self, "imf_base", _market_param("imf_base", self.imf_base, low=0.0, high=1.0))
        sets(self, "mmf_fraction", _market_param("mmf_fraction", self.mmf_fraction, low=0.0,
                                                 high=1.0))
        lo = _market_param("oi_lower_cap", self.oi_lower_cap, low=0.0)
        up = _market_param("oi_upper_cap", self.oi_upper_cap, low=0.0)
        _check_ordered("oi_lower_cap", lo, "oi_upper_cap", up)
        sets(self, "oi_lower_cap", lo)
        sets(self, "oi_upper_cap", up)
        oi = self.open_interest
        if oi is not None:
            if not isinstance(oi, Mapping):
                raise TypeError("open_interest must be a mapping of market (instrument_id or "
                                f"underlying) -> open interest in units, got {oi!r}")
            oi = {_check_key("open_interest", k): check_real(f"open_interest[{k!r}]", v,
                                                             low=0.0)
                  for k, v in oi.items()}
        sets(self, "open_interest", oi)
        _check_choice("on_unsupported", self.on_unsupported, _ON)
        sets(self, "name", _check_name(self.name, "dydx-v4"))

    def initial_margin_fractions(self, book: Book, market: MarketState) -> pd.Series:
        """Effective (open-interest-scaled) IMF of each linear futures instrument held."""
        pos, used, price, _, _ = _linear_setup(book, market, self.on_unsupported, self.name)
        imf = self._imf(book, used, price)
        ids = book.instruments["instrument_id"].to_numpy(object)
        return pd.Series(imf[used], index=pd.Index(ids[used], name="instrument_id"),
                         name="imf")

    def _imf(self, book: Book, used: np.ndarray, price: np.ndarray) -> np.ndarray:
        base = _resolve("imf_base", self.imf_base, book, used)
        lo = _resolve("oi_lower_cap", self.oi_lower_cap, book, used)
        up = _resolve("oi_upper_cap", self.oi_upper_cap, book, used)
        oi_units = np.zeros(book.n_instruments)
        needs = used[up[used] > 0.0]
        if needs.size:
            if self.open_interest is None:
                iid = book.instruments["instrument_id"].iloc[needs[0]]
                raise ValueError(f"{self.name}: open_interest is required for instrument "
                                 f"{iid!r}, whose oi_upper_cap is non-zero")
            oi_units = _resolve("open_interest", self.open_interest, book, needs)
        out = np.full(book.n_instruments, np.nan)
        if used.size:
            out[used] = dydx_initial_margin_fraction(
                np.nan_to_num(oi_units[used]) * price[used], base[used], lo[used], up[used])
        return out

    def compute(self, book: Book, market: MarketState, *, scenarios: Any = None
                ) -> MarginResult:
        """IM and MM of every account at today's prices (``scenarios`` ignored)."""
        pos, used, price, _, notional = _linear_setup(book, market, self.on_unsupported,
                                                      self.name)
        imf = self._imf(book, used, price)
        mmr = (_resolve("imf_base", self.imf_base, book, used)
               * _resolve("mmf_fraction", self.mmf_fraction, book, used))
        im = notional * imf[pos.instrument]
        mm = notional * mmr[pos.instrument]
        ids = book.instruments["instrument_id"].to_numpy(object)
        labels = np.full(book.n_instruments, "", dtype=object)
        for j in used.tolist():
            labels[j] = f"{ids[j]} IMF {100 * imf[j]:.6g}%"
        driver = _driver(book.n_accounts, pos.account, im, labels, pos.instrument)
        return _result(self.name, book, market, pos, im, mm, driver)
