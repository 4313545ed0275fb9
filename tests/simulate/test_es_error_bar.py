"""One ES error bar: ``simulate.var_es`` and the fused per-account kernel behind
``portfolio_risk`` (``simulate.account_risk``) share one estimator (README, Conventions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from marginlab.simulate import account_risk, var_es


def _kernel(losses: np.ndarray, levels):
    # One account per column: unit P&L row j = -losses[:, j], quantity 1, so the kernel's
    # loss 0 - 1 * (-x) is x exactly.
    n, m = losses.shape
    u = np.ascontiguousarray(-losses.T)
    return account_risk(u, np.arange(m + 1), np.arange(m), np.ones(m), levels,
                        allocate=False)


def _reference_se(x: np.ndarray, a: float) -> tuple[float, float, float]:
    """Sort-based README formula: VaR, ES (Acerbi-Tasche) and
    sqrt([Var(L | L >= VaR) + a (ES - VaR)^2] / (n (1 - a))) with the tail variance taken
    with the ES weights (boundary order statistic at the fractional weight)."""
    n = x.size
    d = np.sort(x)[::-1]
    w = n * (1.0 - a)
    if abs(w - round(w)) <= 1e-10 * n:
        w = float(round(w))
    j = min(math.floor(w), n - 1)
    q = d[j]
    es = q + math.fsum(d[:j] - q) / w
    tail = (math.fsum((d[:j] - es) ** 2) + (w - j) * (q - es) ** 2) / w
    return q, es, math.sqrt((tail + a * (es - q) ** 2) / w)


@pytest.mark.parametrize("n", [150, 1000])
def test_var_es_and_account_kernel_identical_on_student_t(n):
    """Oracle (law, issue 17 part 3): for identical Student-t(4) losses at 150 and 1,000
    scenarios the two public estimators give the same VaR, ES and ES standard error bit for
    bit, at levels with fractional (0.99 at n = 150: w = 1.5) and integer tails; and both
    equal the sort-based README formula (_reference_se) to 1e-12 relative."""
    x = np.random.default_rng(4).standard_t(4, size=(n, 5))
    levels = (0.99, 0.975, 0.95)
    k = _kernel(x, levels)
    r = var_es(x, levels)
    np.testing.assert_array_equal(k["var"], r.var)
    np.testing.assert_array_equal(k["es"], r.es)
    np.testing.assert_array_equal(k["es_se"], r.es_se)
    np.testing.assert_array_equal(k["es_lo"], r.es_lower)
    for li, a in enumerate(levels):
        for j in range(x.shape[1]):
            q, e, se = _reference_se(x[:, j], a)
            assert r.var[li, j] == q
            assert r.es[li, j] == pytest.approx(e, rel=1e-12)
            assert r.es_se[li, j] == pytest.approx(se, rel=1e-12)


def test_es_interval_coverage_by_replication():
    """Oracle: closed-form ES of N(0, 1) losses, phi(z_a) / (1 - a), by replication: 400
    independent samples of n = 10,000 at 99 %; the nominal 95 % intervals of both estimators
    (identical) cover the true ES in 95 % +- 3 binomial SE (sqrt(0.95 x 0.05 / 400))."""
    a = 0.99
    true = norm.pdf(norm.ppf(a)) / (1.0 - a)
    x = np.random.default_rng(11).standard_normal((10_000, 400))
    r = var_es(x, a)
    k = _kernel(x, a)
    np.testing.assert_array_equal(k["es_hi"][0], r.es_upper)
    cover = np.mean((r.es_lower <= true) & (true <= r.es_upper))
    assert abs(cover - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 400), cover
