"""Precision-targeted runs (models.precision)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from marginlab.models import GBM, MarketState
from marginlab.models.precision import precision_met, precision_risk
from marginlab.models.synthetic import default_market, make_book

SNAP = default_market()
MARKET = MarketState(spot=SNAP["spot"], vol=SNAP["vol"])
BOOK = make_book(40, seed=3)
UND = tuple(BOOK.underlyings)
MODEL = GBM(mu=0.0, sigma=[SNAP["vol"][u] for u in UND],
            corr=np.full((len(UND), len(UND)), 0.7) + 0.3 * np.eye(len(UND)))


def _run(target=0.05, **kw):
    return precision_risk(BOOK, MARKET, MODEL, UND, horizon_days=2, seed=11, target=target,
                          share=0.9, start_scenarios=1024, max_scenarios=16384,
                          allocate=False, **kw)


@pytest.mark.parametrize("sampling", ["plain", "mixture"])
def test_stops_at_the_first_count_meeting_the_target(sampling):
    """Oracle (laws): the returned count is the first of 1024 x 2^k whose share of accounts
    with ES SE <= 2.5 % of ES reaches 90 % (every earlier step below it), the final risk meets
    it (recomputed with precision_met), and the ES SE shrinks about as 1/sqrt(n) between
    the first and the last step (median ratio within 35 % of sqrt(n_last / n_first))."""
    res = _run(target=0.025, sampling=sampling)
    assert len(res.history) >= 2  # the test sees at least one step
    assert res.met
    shares = [f for _, f in res.history]
    assert all(f < 0.9 for f in shares[:-1]) and shares[-1] >= 0.9
    assert res.n_scenarios == res.history[-1][0] == res.scenarios.n_scenarios
    assert np.mean(precision_met(res.risk.es[0], res.risk.es_se[0], 0.025)) == shares[-1]
    if len(res.history) > 1:
        first = precision_risk(BOOK, MARKET, MODEL, UND, horizon_days=2, seed=11,
                               target=0.025, share=0.9, start_scenarios=1024,
                               max_scenarios=1024, allocate=False, sampling=sampling)
        ok = (first.risk.es[0] > 0) & (res.risk.es[0] > 0)
        ratio = np.median(first.risk.es_se[0][ok] / res.risk.es_se[0][ok])
        expect = np.sqrt(res.n_scenarios / 1024)
        assert abs(ratio / expect - 1.0) < 0.35, (ratio, expect)


def test_reproducible_on_any_thread_count_and_sample():
    """Oracle (laws): the same seed and target give the same count and the same bits on 1
    and 2 threads; judging on an evenly spaced account sample gives a count from the same
    sequence and, at that count, the whole book's numbers equal a plain run at it."""
    a = _run()
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b = _run()
    finally:
        numba.set_num_threads(before)
    assert a.n_scenarios == b.n_scenarios
    np.testing.assert_array_equal(a.risk.es, b.risk.es)
    np.testing.assert_array_equal(a.risk.es_se, b.risk.es_se)
    c = _run(sample_accounts=15)
    assert c.n_scenarios in (1024, 2048, 4096, 8192, 16384)
    d = precision_risk(BOOK, MARKET, MODEL, UND, horizon_days=2, seed=11, target=0.05,
                       share=0.9, start_scenarios=c.n_scenarios,
                       max_scenarios=c.n_scenarios, allocate=False)
    np.testing.assert_array_equal(c.risk.es, d.risk.es)
    assert "scenarios" in c.summary()


def test_precision_errors():
    """Oracle: the validation contract (argument named, value shown)."""
    with pytest.raises(ValueError, match="target"):
        precision_risk(BOOK, MARKET, MODEL, UND, horizon_days=2, seed=1, target=1.5)
    with pytest.raises(ValueError, match="seed"):
        precision_risk(BOOK, MARKET, MODEL, UND, horizon_days=2, seed=None)
    with pytest.raises(ValueError, match="max_scenarios"):
        precision_risk(BOOK, MARKET, MODEL, UND, horizon_days=2, seed=1, start_scenarios=64,
                       max_scenarios=32)
