"""marginlab.models.margin: exchange margin rules.

Bracket (leverage and margin tier) tables, initial and maintenance margin of positions and
cross-margin accounts, and Binance-style liquidation and bankruptcy prices for linear
(USDⓈ-M) and inverse (COIN-M) contracts.
"""

from .brackets import (
    AccountMargin,
    BracketTable,
    binance_btcusdt_2021,
    cross_maintenance_margin,
    maintenance_amounts,
    position_notional,
    unrealized_pnl,
)
from .liquidation import bankruptcy_price, liquidation_price, liquidation_price_with_table

__all__ = [
    "AccountMargin",
    "BracketTable",
    "bankruptcy_price",
    "binance_btcusdt_2021",
    "cross_maintenance_margin",
    "liquidation_price",
    "liquidation_price_with_table",
    "maintenance_amounts",
    "position_notional",
    "unrealized_pnl",
]
