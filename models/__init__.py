"""marginlab.models: meaning on top of the fast kernels.

Market models, books and market snapshots, scenario sets, portfolio revaluation and risk,
margin methodologies (:mod:`marginlab.models.margin`), backtests
(:mod:`marginlab.models.backtest`) and the ``marginlab`` command.
"""

from . import backtest, margin
from .backtest_runner import BacktestResult, run_backtest
from .book import Book, BookError
from .calibration import fit
from .compare import compare
from .history import PriceHistory, read_many, read_prices
from .liquidation import CascadeResult, LiquidationRules, PriceImpact, simulate_liquidations
from .liquidation_profile import liquidation_profile
from .market import GARCH, GBM, Bootstrap, MertonJump
from .portfolio import (
    PortfolioRisk,
    UnitPnL,
    account_equity,
    account_pnl,
    incremental_margin,
    portfolio_risk,
    revalue,
)
from .scenarios import MarketState, ScenarioSet, grid_scenarios, monte_carlo_scenarios
from .synthetic import default_market, make_book

__all__ = [
    "GBM",
    "MertonJump",
    "GARCH",
    "Bootstrap",
    "Book",
    "BookError",
    "MarketState",
    "ScenarioSet",
    "monte_carlo_scenarios",
    "grid_scenarios",
    "UnitPnL",
    "PortfolioRisk",
    "revalue",
    "account_pnl",
    "account_equity",
    "portfolio_risk",
    "incremental_margin",
    "make_book",
    "default_market",
    "fit",
    "read_prices",
    "read_many",
    "PriceHistory",
    "compare",
    "simulate_liquidations",
    "liquidation_profile",
    "LiquidationRules",
    "PriceImpact",
    "CascadeResult",
    "backtest",
    "run_backtest",
    "BacktestResult",
    "margin",
]
