"""Options in :func:`marginlab.models.simulate_liquidations`: from book rows to kernel inputs.

A book's ``option`` (USD-settled) and ``inverse_option`` (coin-settled, premium in coin as
Deribit quotes it) positions are simulated by the general path: revalued with Black-Scholes
at every step (the scenario's mark, the time left, the market's implied vol of the
underlying), margined (short options: the instrument's maintenance rule on the
delta-equivalent notional ``|q| S max(|delta|, LiquidationRules.option_min_delta)``,
recomputed every ``LiquidationRules.option_remargin_every`` steps; long options: none),
settled at their payoff when they expire within the horizon and closed at model value minus
the liquidation fee when the account is liquidated. The rules and their cost are in
:mod:`marginlab.simulate._cascade_options`.

Entry premiums: a position's ``entry_price`` is the premium per unit of the underlying it
paid (long) or received (short); the premium ``q x entry`` leaves (enters) the USD balance,
or the coin balance of the underlying for ``inverse_option``, so the account's equity today
is its collateral plus ``q (value - entry)``, as the margin methods count it.
"""

from __future__ import annotations

import numpy as np

from marginlab.simulate import cascade as K
from marginlab.simulate._cascade_options import option_arrays, option_margin

from .book import OPTION_TYPES, Book
from .scenarios import MarketState

__all__ = ["option_positions", "option_rules", "initial_option_margin"]


def option_positions(book: Book, market: MarketState, rows: np.ndarray, qn: np.ndarray,
                     account: np.ndarray, ins_of: np.ndarray, inst_col: np.ndarray,
                     inst_tab: np.ndarray) -> K.OptionPositions:
    """Kernel option positions of the netted rows ``rows`` (options with ``q != 0``).

    ``qn`` netted quantity x multiplier (units of the underlying), ``account`` the kernel
    account number of each netted row, ``ins_of`` its instrument, ``inst_col`` price column
    and ``inst_tab`` margin table per instrument. Positions are sorted by account.
    """
    inst = book.instruments
    ins = ins_of[rows]
    ids = inst["instrument_id"].to_numpy(str)
    vols = np.empty(rows.size)
    for n, k in enumerate(ins):
        und = str(inst["underlying"].iloc[k])
        try:
            vols[n] = market.implied_vol(und)
        except KeyError as err:
            raise ValueError(f"option {str(ids[k])!r} needs the implied vol of {und!r}: "
                             f"give MarketState(vol={{{und.upper()!r}: ...}}) ({err})") from None
    order = np.argsort(account[rows], kind="stable")
    types = inst["type"].to_numpy(str)[ins]
    return K.OptionPositions(
        account=np.asarray(account[rows][order], np.int64),
        asset=np.asarray(inst_col[ins][order], np.int64),
        q=np.asarray(qn[rows][order], float),
        strike=inst["strike"].to_numpy(float)[ins][order],
        expiry=inst["expiry"].to_numpy(float)[ins][order],
        call=(inst["option_type"].to_numpy(str)[ins] == "call").astype(np.int64)[order],
        coin=(types == "inverse_option").astype(np.int64)[order],
        vol=vols[order],
        table=np.asarray(inst_tab[ins][order], np.int64))


def option_premiums(book: Book, ins_of: np.ndarray, cost: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per netted row: the premium that left the USD balance and the one that left the coin
    balance (``q x entry``; negative for premiums received), zero for non-options."""
    types = book.instruments["type"].to_numpy(str)[ins_of]
    is_opt = np.isin(types, OPTION_TYPES)
    coin = types == "inverse_option"
    return np.where(is_opt & ~coin, cost, 0.0), np.where(coin, cost, 0.0)


def option_rules(rules, dt: float) -> K.OptionRules:
    """The kernel's option rules of :class:`~marginlab.models.LiquidationRules` ``rules``."""
    return K.OptionRules(dt=dt, min_delta=rules.option_min_delta,
                         remargin_every=rules.option_remargin_every)


def initial_option_margin(options: K.OptionPositions, orules: K.OptionRules,
                          tables: K.MarginTables, s0: np.ndarray, n_acc: int, n_paths: int,
                          n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Today's option value and option maintenance margin per kernel account (USD)."""
    from marginlab.simulate.cascade import _check, _max_lines

    opt = option_arrays(options, orules, n_acc, s0.size, tables.n.size, n_paths, n_steps,
                        _check)
    return option_margin(opt, _max_lines, tables, s0, n_acc)
