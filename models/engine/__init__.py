"""The live margin engine: a book kept hot in memory, what-if margin in microseconds, re-margin
on every market tick, margin-call and liquidation events, replay through price history and an
HTTP service.

* :class:`MarginEngine` (:mod:`.engine`): what-if, apply, deposit / withdraw, open orders,
  market updates; scenario VaR / ES methods (plain or weighted scenarios) on the hot path,
  any other margin method (grid, tiered) by exact recomputation (:mod:`._method`).
* :mod:`.records`: :class:`RemarginPolicy`, :class:`MarginEvent`, :class:`MarketUpdate`,
  :class:`WhatIf`.
* :func:`replay` (:mod:`.replay`): drive an engine through a price history.
* :mod:`.service`: the engine behind a FastAPI app (``marginlab serve``); imported lazily,
  it needs the ``service`` extra (``pip install marginlab[service]``).
"""

from .engine import MarginEngine
from .records import MarginEvent, MarketUpdate, RemarginPolicy, WhatIf
from .replay import ReplayResult, add_replay_parser, replay, synthetic_history

__all__ = [
    "MarginEngine",
    "MarginEvent",
    "MarketUpdate",
    "RemarginPolicy",
    "WhatIf",
    "ReplayResult",
    "replay",
    "synthetic_history",
    "add_replay_parser",
]
