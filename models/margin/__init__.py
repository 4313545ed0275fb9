"""marginlab.models.margin: margin methodologies under one interface.

Every methodology is configured once and applied with ``method.compute(book, market,
scenarios=None) -> MarginResult`` (see :mod:`.base`):

* risk-based (:mod:`.risk_based`): ``MonteCarloMargin`` (VaR / ES from a market model),
  ``HistoricalMargin`` (HS and filtered HS), ``AntiProcyclical`` (EMIR Art. 28 tools);
* scenario grids (:mod:`.grid`): ``SpanLike`` (CME SPAN's 16 scenarios, spread charge,
  short option minimum) and ``DeribitLike`` (Deribit portfolio margin risk matrix);
* size-scaled exchange methods (:mod:`.exchange`): ``TieredMargin`` (bracket tables,
  isolated or cross), ``DydxMargin``, ``DriftMargin``, ``DeribitLinearMargin``;
* exchange rules: bracket (leverage and margin tier) tables, initial and maintenance margin of
  positions and cross-margin accounts, and Binance-style liquidation and bankruptcy prices for
  linear (USDⓈ-M) and inverse (COIN-M) contracts (:mod:`.brackets`, :mod:`.liquidation`);
  shipped Binance tables for BTC and ETH USDⓈ-M and COIN-M perpetuals, by name
  (:func:`builtin_table`, :mod:`.bracket_tables`).
"""

from .base import MarginMethod, MarginResult
from .bracket_tables import (
    BuiltinTableInfo,
    builtin_table,
    builtin_table_info,
    builtin_table_names,
)
from .brackets import (
    AccountMargin,
    BracketTable,
    binance_btcusdt_2021,
    cross_maintenance_margin,
    maintenance_amounts,
    position_notional,
    unrealized_pnl,
)
from .exchange import (
    DeribitLinearMargin,
    DriftMargin,
    DydxMargin,
    TieredMargin,
    drift_margin_ratio,
    dydx_initial_margin_fraction,
)
from .grid import SPAN_SCENARIOS, DeribitLike, SpanLike
from .liquidation import bankruptcy_price, liquidation_price, liquidation_price_with_table
from .risk_based import AntiProcyclical, HistoricalMargin, MonteCarloMargin, historical_scenarios

__all__ = [
    "MarginMethod",
    "MarginResult",
    "MonteCarloMargin",
    "HistoricalMargin",
    "AntiProcyclical",
    "historical_scenarios",
    "SpanLike",
    "DeribitLike",
    "SPAN_SCENARIOS",
    "TieredMargin",
    "DydxMargin",
    "DriftMargin",
    "DeribitLinearMargin",
    "dydx_initial_margin_fraction",
    "drift_margin_ratio",
    "AccountMargin",
    "BracketTable",
    "bankruptcy_price",
    "binance_btcusdt_2021",
    "BuiltinTableInfo",
    "builtin_table",
    "builtin_table_info",
    "builtin_table_names",
    "cross_maintenance_margin",
    "liquidation_price",
    "liquidation_price_with_table",
    "maintenance_amounts",
    "position_notional",
    "unrealized_pnl",
]
