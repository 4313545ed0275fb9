"""marginlab.models: meaning on top of the fast kernels.

Market models and (as the project grows) calibration, instruments and books, margin
methodologies, liquidation, backtests, reports and the ``marginlab`` command.
"""

from .market import GARCH, GBM, Bootstrap, MertonJump

__all__ = ["GBM", "MertonJump", "GARCH", "Bootstrap"]
