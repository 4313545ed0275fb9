"""Weighted scenarios: VaR, ES, error bars and Euler allocation from likelihood-ratio
weights (marginlab.simulate.weighted and the fused kernel behind portfolio_risk)."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy.stats import norm

from marginlab.simulate import account_risk, allocate, es, var, var_es
from marginlab.simulate.weighted import weighted_var_es

LEVELS = (0.99, 0.975)


def _kernel(losses, levels, weights, allocate_=False):
    n, m = losses.shape
    return account_risk(np.ascontiguousarray(-losses.T), np.arange(m + 1), np.arange(m),
                        np.ones(m), levels, allocate=allocate_, weights=weights)


@pytest.mark.parametrize("n", [150, 2001])
def test_equal_weights_give_the_unweighted_estimators(n):
    """Oracle (law): with equal weights (any constant) the masses are 1/n, so VaR, ES and
    the ES standard error equal the unweighted estimators (README Conventions) -- VaR exactly,
    ES and its SE to 1e-12 relative; at integer (n = 2000 style) and fractional tails."""
    x = np.random.default_rng(1).standard_t(4, size=(n, 4))
    plain = var_es(x, LEVELS)
    for c in (1.0, 3.5):
        wr = var_es(x, LEVELS, weights=np.full(n, c))
        np.testing.assert_array_equal(wr.var, plain.var)
        np.testing.assert_allclose(wr.es, plain.es, rtol=1e-12)
        np.testing.assert_allclose(wr.es_se, plain.es_se, rtol=1e-12)
        k = _kernel(x, LEVELS, np.full(n, c))
        np.testing.assert_array_equal(k["var"], plain.var)
        np.testing.assert_allclose(k["es"], plain.es, rtol=1e-12)
        np.testing.assert_allclose(k["es_se"], plain.es_se, rtol=1e-12)


def test_kernel_equals_sort_reference_and_allocation_adds_up():
    """Oracle: the sort-based numpy reference (weighted_var_es, weighted_allocate) for the
    fused kernel, to 1e-12 relative, with random weights spanning 3 orders of magnitude and
    ties in the losses; Euler allocations sum to the account's VaR / ES (law) and equal the
    reference allocation of simulate.allocate(weights=)."""
    rng = np.random.default_rng(2)
    n = 3001
    u = np.round(rng.standard_normal((3, n)) * 20.0) / 4.0  # rounded: ties
    w = np.exp(rng.uniform(-3.5, 3.5, n))
    indptr = np.array([0, 1, 3, 6])
    indices = np.array([0, 0, 1, 0, 1, 2])
    qty = np.array([1.0, -2.0, 0.5, 1.0, 1.0, -3.0])
    k = account_risk(u, indptr, indices, qty, LEVELS, weights=w)
    pos_losses = np.stack([-qty[j] * u[indices[j]] for j in range(6)], axis=1)
    acc_of = np.repeat(np.arange(3), np.diff(indptr))
    acc_losses = np.stack([pos_losses[:, acc_of == a].sum(axis=1) for a in range(3)], axis=1)
    ref = weighted_var_es(acc_losses, w, LEVELS)
    np.testing.assert_array_equal(k["var"], ref["var"])
    np.testing.assert_allclose(k["es"], ref["es"], rtol=1e-12)
    np.testing.assert_allclose(k["es_se"], ref["es_se"], rtol=1e-12)
    np.testing.assert_array_equal(k["var_lo"], ref["var_lower"])
    np.testing.assert_array_equal(k["var_hi"], ref["var_upper"])
    for name, measure in (("alloc_es", "es"), ("alloc_var", "var")):
        sums = np.stack([np.bincount(acc_of, weights=k[name][li], minlength=3)
                         for li in range(2)])
        np.testing.assert_allclose(sums, k[measure], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(k[name], allocate(pos_losses, acc_of, LEVELS, measure,
                                                     weights=w), rtol=1e-12, atol=1e-12)
    # var / es with weights are the var_es fields
    np.testing.assert_array_equal(var(acc_losses, LEVELS, weights=w), ref["var"])
    np.testing.assert_array_equal(es(acc_losses, LEVELS, weights=w), ref["es"])


def test_weights_scale_free_and_thread_and_block_invariant():
    """Oracle (laws): self-normalised weights -- w and 4 w give the same bits (a power of two
    scales exactly), 7 w the same numbers to 1e-13; each account
    is computed alone -- 1 thread == 2 threads and a block of accounts == the whole book,
    bit for bit."""
    rng = np.random.default_rng(3)
    u = rng.standard_normal((4, 1500))
    w = rng.uniform(0.1, 3.0, 1500)
    n_acc = 300
    indices = rng.integers(0, 4, n_acc)
    indptr = np.arange(n_acc + 1)
    qty = rng.normal(size=n_acc)
    full = account_risk(u, indptr, indices, qty, LEVELS, weights=w)
    four = account_risk(u, indptr, indices, qty, LEVELS, weights=4.0 * w)
    seven = account_risk(u, indptr, indices, qty, LEVELS, weights=7.0 * w)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = account_risk(u, indptr, indices, qty, LEVELS, weights=w)
    finally:
        numba.set_num_threads(before)
    part = account_risk(u, indptr[100:201] - 100, indices[100:200], qty[100:200], LEVELS,
                        weights=w)
    for key in ("var", "es", "es_se", "var_lo", "var_hi", "alloc_es", "alloc_var"):
        np.testing.assert_array_equal(full[key], one[key])
    for key in ("var", "es", "es_se", "var_lo", "var_hi"):
        np.testing.assert_array_equal(full[key], four[key])
        np.testing.assert_allclose(full[key], seven[key], rtol=1e-13)
        np.testing.assert_array_equal(full[key][:, 100:200], part[key])


def test_importance_sampled_normal_unbiased_with_honest_intervals():
    """Oracle: closed forms of N(0, 1) losses (VaR z_a, ES phi(z_a) / (1 - a)) by
    replication: 400 samples of n = 4,000 drawn from N(0, 1.6^2) with weights
    phi(x) / (phi(x / 1.6) / 1.6). The mean ES and VaR are within 3 SE (sd / sqrt(R)) of
    the closed forms, the mean reported ES SE within 10 % of the observed sd of ES, and the
    nominal 95 % ES intervals cover in 95 % +- 3 binomial SE."""
    a, c, n, reps = 0.99, 1.6, 4000, 400
    q_true = norm.ppf(a)
    es_true = norm.pdf(q_true) / (1.0 - a)
    rng = np.random.default_rng(5)
    x = c * rng.standard_normal((n, reps))
    ves = []
    for j in range(reps):
        w = norm.pdf(x[:, j]) / (norm.pdf(x[:, j] / c) / c)
        ves.append(var_es(x[:, j], a, weights=w))
    v = np.array([r.var for r in ves])
    e = np.array([r.es for r in ves])
    se = np.array([r.es_se for r in ves])
    root = math.sqrt(reps)
    assert abs(e.mean() - es_true) < 3 * e.std(ddof=1) / root
    assert abs(v.mean() - q_true) < 3 * v.std(ddof=1) / root
    assert abs(se.mean() / e.std(ddof=1) - 1.0) < 0.10
    cover = np.mean([(r.es_lower <= es_true <= r.es_upper) for r in ves])
    assert abs(cover - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / reps), cover


def test_weight_errors():
    """Oracle: the validation contract -- bad weights are refused naming the argument."""
    x = np.zeros((10, 1))
    with pytest.raises(ValueError, match="weights must have shape"):
        var_es(x, 0.5, weights=np.ones(9))
    with pytest.raises(ValueError, match=r"weights must be finite and >= 0, got -1.0"):
        var_es(x, 0.5, weights=np.r_[np.ones(9), -1.0])
    with pytest.raises(ValueError, match="positive sum"):
        account_risk(np.zeros((1, 10)), [0, 1], [0], [1.0], 0.5, weights=np.zeros(10))
