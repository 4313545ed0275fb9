r"""Bounded scenario moves: the cap that keeps every model's ES finite and seed-stable.

Why a cap
---------
A price is the exponential of its log return. Under Student-t innovations (and under any
GARCH whose innovations have a power tail) the log return over the margin period of risk
has a power tail, so :math:`E[e^{X}] = \infty`: the expected loss of a **short** position
does not exist, and its Monte Carlo ES does not settle as the number of scenarios grows
(the largest draw dominates the tail mean; one seed gives 19 % of notional, another
2,000,000 %). A floor on the degrees of freedom (``min_nu`` in
:func:`~marginlab.models.calibration.fit_garch`) thins the tail but cannot make
:math:`E[e^X]` finite. Only a bound on :math:`X` does.

The mechanism: a cap on the simulated horizon log move
------------------------------------------------------
Every scenario's log move over the horizon, :math:`X = \log(S_h / S_0)`, is clipped to
:math:`[-c, c]`:

.. math:: \tilde X = \max(-c, \min(c, X)), \qquad \tilde S_h = S_0 e^{\tilde X}.

For a daily-return path (backtests, options) the whole path is shrunk radially,
:math:`x_i \to x_i \min(1, c / |\sum_j x_j|)`, so its sum is :math:`\tilde X`.
This is how clearing houses bound their scan ranges: SPAN's price scan range and
PRISMA's / SPAN 2's filtered historical scenarios are capped at a multiple of the largest
move observed over a long look-back (CME, *SPAN 2 methodology*, 2021; Eurex, *PRISMA user
guide*, section on the "maximum shift"), and the literature on truncated and tempered
heavy-tailed innovations reaches the same conclusion for the existence of moments
(Rachev, Kim, Bianchi and Fabozzi, *Financial Models with Lévy Processes and Volatility
Clustering*, 2011, ch. 3: tempered stable laws, whose exponential moments are finite).

Consequences (what is guaranteed):

* Every loss of a linear position is bounded: per unit notional a long loses at most
  :math:`1 - e^{-c}` and a short at most :math:`e^{c} - 1` (:func:`max_loss_rate`), so VaR
  and ES never exceed them, and the ES estimator has a finite variance: its asymptotic
  standard error (:mod:`marginlab.simulate.risk`) is valid and across seeds the margins
  agree within their error bars (tested).
* When the cap binds in fewer than :math:`n(1-\alpha)` scenarios the VaR is unchanged; the
  ES changes only through the capped scenarios.

Calibrating the cap
-------------------
:func:`move_cap_from_history` sets :math:`c` as a CCP sets a scan-range cap: ``multiple``
times the largest absolute ``horizon``-step log move observed in the history available at
the margin date (an expanding window, as the EMIR 10-year floor), never below ``floor``.
With BTC daily closes since 2020 the largest 1-day and 2-day moves are both about 0.465
(12 March 2020, and 10-12 March); ``multiple=1.5`` gives :math:`c \approx 0.70`: a long
loses at most 50 % and a short at most 101 % of notional over the MPOR.

Without any history, :data:`DEFAULT_MOVE_CAP` (:math:`c = 1`, a factor :math:`e` either
way) applies: looser than any crypto move seen, tight enough to bound the ES.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ._validate import check_real

__all__ = [
    "DEFAULT_MOVE_CAP",
    "DEFAULT_CAP_MULTIPLE",
    "cap_log_moves",
    "cap_paths",
    "cap_scenarios",
    "max_loss_rate",
    "move_cap_from_history",
]

#: Default cap on the horizon log move when no history calibrates it: a factor e either way.
DEFAULT_MOVE_CAP = 1.0
#: Default multiple of the largest historical horizon move (see :func:`move_cap_from_history`).
DEFAULT_CAP_MULTIPLE = 1.5


def check_cap(name: str, cap: Any) -> float | None:
    """``cap`` as a float in (0, 20] log units, or None (no cap)."""
    if cap is None:
        return None
    return check_real(name, cap, low=0.0, high=20.0, low_open=True)


def max_loss_rate(cap: float) -> tuple[float, float]:
    """Largest loss per unit notional of a (long, short) linear position under the cap:
    :math:`(1 - e^{-c},\\ e^{c} - 1)`.

    Examples
    --------
    >>> [round(x, 4) for x in max_loss_rate(1.0)]
    [0.6321, 1.7183]
    """
    c = check_real("cap", cap, low=0.0, low_open=True)
    return -math.expm1(-c), math.expm1(c)


def cap_log_moves(x: Any, cap: float | None) -> np.ndarray:
    """Clip log moves to ``[-cap, cap]`` (a copy; ``cap=None`` returns ``x`` unchanged)."""
    x = np.asarray(x, dtype=np.float64)
    if cap is None:
        return x
    return np.clip(x, -cap, cap)


def cap_paths(x: np.ndarray, cap: float | None) -> np.ndarray:
    """Shrink each path of per-step log returns ``x`` (..., n_steps) radially so that its
    sum lies in ``[-cap, cap]``; paths inside the cap are returned bit for bit."""
    if cap is None:
        return x
    tot = x.sum(axis=-1, keepdims=True)
    a = np.abs(tot)
    over = a > cap
    if not np.any(over):
        return x
    scale = np.where(over, cap / np.where(over, a, 1.0), 1.0)
    return x * scale


def cap_scenarios(scenarios: Any, s0: Any, cap: float | None) -> Any:
    """A :class:`~marginlab.models.ScenarioSet` whose prices are moved at most ``cap`` in log
    from ``s0`` (per underlying); every other field (vol shocks, labels, weights) is kept."""
    if cap is None:
        return scenarios
    s0 = np.asarray(s0, dtype=np.float64)
    p = np.asarray(scenarios.prices, dtype=np.float64)
    x = np.log(p / s0)
    if np.all(np.abs(x) <= cap):
        return scenarios
    return dataclasses.replace(scenarios, prices=s0 * np.exp(np.clip(x, -cap, cap)))


def move_cap_from_history(log_returns: Any, horizon_steps: int,
                          multiple: float = DEFAULT_CAP_MULTIPLE, floor: float = 0.0) -> float:
    r"""Cap on the horizon log move: ``multiple`` x the largest observed |horizon move|.

    Parameters
    ----------
    log_returns : array_like, shape (n,)
        Per-step decimal log returns of the history available (NaN ignored).
    horizon_steps : int
        Steps in the margin period of risk (>= 1); moves are overlapping sums of that many
        consecutive returns.
    multiple : float, default 1.5
        Multiple of the largest move (>= 1).
    floor : float, default 0
        Smallest cap returned (log units, >= 0).

    Returns
    -------
    float
        :math:`c = \max(\text{floor},\ k \max_t |\sum_{i=0}^{h-1} r_{t+i}|)`.

    Examples
    --------
    >>> move_cap_from_history([0.01, -0.2, 0.05, 0.02], 2, multiple=1.5)
    0.285
    """
    r = np.asarray(log_returns, dtype=np.float64).reshape(-1)
    r = np.where(np.isfinite(r), r, 0.0)
    if isinstance(horizon_steps, bool) or not isinstance(horizon_steps, (int, np.integer)) \
            or horizon_steps < 1:
        raise ValueError(f"horizon_steps must be an int >= 1, got {horizon_steps!r}")
    k = check_real("multiple", multiple, low=1.0)
    f = check_real("floor", floor, low=0.0)
    if r.size < horizon_steps:
        raise ValueError(f"log_returns has {r.size} values, fewer than horizon_steps="
                         f"{horizon_steps}")
    c = np.concatenate([[0.0], np.cumsum(r)])
    moves = c[horizon_steps:] - c[:-horizon_steps]
    return float(max(f, k * float(np.max(np.abs(moves)))))
