"""Precision-targeted Monte Carlo runs: ask for a precision, not a scenario count.

"ES standard error <= 1 % of ES for 99 % of accounts": :func:`precision_risk` draws scenario
sets of growing size ``n_k = start_scenarios x 2^k`` from one seed and stops at the first
one that meets the target (or at ``max_scenarios``). Every set is a deterministic function
of ``(seed, n)`` (for plain Monte Carlo and mixture sampling the first ``n`` scenarios of a
larger set are exactly the smaller set; QMC sets regenerate each randomisation with more
Sobol' points of the same scrambling), and each account's numbers depend only on its
holdings and the scenarios, so the same seed and target give the same scenario count and the
same bits on any number of threads.

For batch runs split into account blocks (``marginlab run``, Dask), the stopping decision
must not depend on the split: decide the count once for the whole book (or a fixed,
evenly spaced sample of its accounts, ``sample_accounts``) with :func:`precision_risk` in
the driver, then run every block with ``n_scenarios`` equal to the returned count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from marginlab.simulate.rng import normalize_seed

from ._validate import check_real
from .portfolio import PortfolioRisk, portfolio_risk, revalue
from .scenarios import MarketState, ScenarioSet, monte_carlo_scenarios

__all__ = ["PrecisionResult", "precision_met", "precision_risk"]


def precision_met(es: np.ndarray, es_se: np.ndarray, target: float) -> np.ndarray:
    """Accounts whose ES standard error is at most ``target`` x |ES| (an account with no
    risk, ES = SE = 0, meets any target)."""
    es = np.asarray(es, float)
    se = np.asarray(es_se, float)
    return se <= target * np.abs(es)


@dataclass(frozen=True, eq=False)
class PrecisionResult:
    """Outcome of a precision-targeted run.

    Attributes
    ----------
    risk : PortfolioRisk
        Risk of every account on the final scenario set.
    scenarios : ScenarioSet
        The final scenario set.
    n_scenarios : int
        Its size: the scenario count to use for this seed and target.
    met : bool
        Whether the target was met (False: stopped at ``max_scenarios``).
    history : tuple of (int, float)
        (scenario count, share of accounts meeting the target) at every step.
    """

    risk: PortfolioRisk
    scenarios: ScenarioSet
    n_scenarios: int
    met: bool
    history: tuple[tuple[int, float], ...]

    def summary(self) -> str:
        steps = ", ".join(f"{n:,}: {f:.1%}" for n, f in self.history)
        state = "met" if self.met else "NOT met (max_scenarios reached)"
        return f"precision target {state} at {self.n_scenarios:,} scenarios ({steps})"


def precision_risk(
    book: Any,
    market: MarketState,
    model: Any,
    underlyings: Any,
    *,
    horizon_days: float,
    seed: int | np.random.SeedSequence,
    target: float = 0.01,
    share: float = 0.99,
    level: float = 0.99,
    start_scenarios: int = 4096,
    max_scenarios: int = 1 << 20,
    sample_accounts: int | None = None,
    allocate: bool = True,
    **scenario_options: Any,
) -> PrecisionResult:
    """Add scenarios until ES SE <= ``target`` x ES for a ``share`` of the accounts.

    Parameters
    ----------
    book, market : Book, MarketState
    model, underlyings : market model and its assets (as :func:`monte_carlo_scenarios`)
    horizon_days : float
        Margin period of risk.
    seed : int or SeedSequence
        One seed for every step (required: the run must be reproducible).
    target : float
        Relative ES standard error wanted, in (0, 1) (0.01 = 1 % of ES).
    share : float
        Share of accounts that must meet it, in (0, 1].
    level : float
        ES level.
    start_scenarios, max_scenarios : int
        First and largest scenario count; the count doubles between steps. For
        ``sampling="qmc"`` both must be multiples of ``randomizations``.
    sample_accounts : int, optional
        Judge the target on this many evenly spaced accounts (a fixed subset, so the
        decision does not depend on how a batch splits the book); the final risk is then
        computed for the whole book at the chosen count. None: all accounts.
    allocate : bool
        Euler allocation in the final risk.
    **scenario_options
        Passed to :func:`monte_carlo_scenarios` (``sampling``, ``vol_of_vol``, ...).

    Returns
    -------
    PrecisionResult
    """
    target = check_real("target", target, low=0.0, high=1.0, low_open=True, high_open=True)
    share = check_real("share", share, low=0.0, high=1.0, low_open=True)
    if seed is None:
        raise ValueError("seed must be an int, SeedSequence or Generator for a reproducible "
                         "run, got None")
    seed = normalize_seed(seed)  # a Generator: one SeedSequence for every round
    for name, v in (("start_scenarios", start_scenarios), ("max_scenarios", max_scenarios)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if max_scenarios < start_scenarios:
        raise ValueError(f"max_scenarios={max_scenarios} must be >= start_scenarios="
                         f"{start_scenarios}")
    judge = book
    if sample_accounts is not None:
        if not isinstance(sample_accounts, (int, np.integer)) or sample_accounts < 1:
            raise ValueError(f"sample_accounts must be an int >= 1, got {sample_accounts!r}")
        if sample_accounts < book.n_accounts:
            idx = np.unique(np.linspace(0, book.n_accounts - 1, int(sample_accounts))
                            .round().astype(np.int64))
            judge = book.subset(idx)
    history = []
    n = int(start_scenarios)
    while True:
        sc = monte_carlo_scenarios(model, market, underlyings, horizon_days=horizon_days,
                                   n_scenarios=n, seed=seed, **scenario_options)
        unit = revalue(judge, market, sc)
        r = portfolio_risk(judge, market, unit, levels=(level,), allocate=allocate and
                           judge is book)
        frac = float(np.mean(precision_met(r.es[0], r.es_se[0], target)))
        history.append((n, frac))
        met = frac >= share
        if met or n >= max_scenarios:
            break
        n = min(2 * n, int(max_scenarios))
    if judge is not book:
        r = portfolio_risk(book, market, sc, levels=(level,), allocate=allocate)
    return PrecisionResult(r, sc, n, met, tuple(history))
