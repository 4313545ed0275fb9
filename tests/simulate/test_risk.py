"""Tests of marginlab.simulate.risk: VaR, ES, their errors and intervals, Euler allocation,
incremental margin.

Oracles, named per test: closed forms (normal and Student-t quantiles and tail moments with
``scipy.stats`` / ``scipy.integrate``, the binomial law of order statistics, the uniform
distribution's density); peers (``numpy.quantile(method="inverted_cdf")``, ``numpy.sort``);
a plain sorted-array reference written out from the documented definitions (exact equality);
laws (coherence: ES >= VaR, positive homogeneity, translation invariance, sub-additivity;
full allocation; chunk- and thread-invariance). Monte Carlo tolerances are 4 standard errors
with fixed seeds; coverage rates use the binomial standard error of the repetition count.
"""

from __future__ import annotations

import dataclasses
import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, stats

from marginlab.simulate.risk import VarEs, allocate, es, incremental, var, var_es

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- helpers
def reference(x: np.ndarray, level: float) -> tuple[float, float]:
    """The documented estimators, written out plainly on a sorted copy (one column).

    w = n (1 - level), rounded when within 1e-10 n of an integer; j = floor(w);
    VaR = j-th largest (0-based) loss; ES in the documented excess form
    VaR + sum_{t < j} (d[t] - VaR) / w with the sum correctly rounded (math.fsum).
    """
    n = x.size
    w = n * (1.0 - level)
    if abs(w - round(w)) <= 1e-10 * n:
        w = float(round(w))
    j = min(math.floor(w), n - 1)  # VaR = the ceil(n level)-th smallest, and level > 0
    d = np.sort(x)[::-1]
    q = float(d[j])
    return q, q + math.fsum(d[:j] - q) / w


def ranked_scenarios(a: np.ndarray) -> np.ndarray:
    """Scenarios of one account by the documented ranking: larger loss first, equal losses
    by scenario index (numpy's stable sort of the negated losses)."""
    return np.argsort(-a, kind="stable")


def account_sums(x: np.ndarray, ids: np.ndarray, n_acc: int) -> np.ndarray:
    """Account losses summed in position order from 0.0, as the documentation states."""
    out = np.zeros((x.shape[0], n_acc))
    for p in range(x.shape[1]):
        out[:, ids[p]] = out[:, ids[p]] + x[:, p]
    return out


@pytest.fixture
def two_threads():
    """Run with 1 and 2 numba threads, restoring the setting afterwards."""
    before = numba.get_num_threads()
    yield min(2, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(before)


@st.composite
def losses_and_level(draw, max_n=300, max_accounts=3, ties=True):
    n = draw(st.integers(2, max_n))
    m = draw(st.integers(1, max_accounts))
    if ties and draw(st.booleans()):
        elements = st.integers(-4, 4).map(float)  # many ties
    else:
        elements = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    x = draw(hnp.arrays(np.float64, (n, m), elements=elements))
    special = [a for a in (0.5, 0.9, 0.95, 0.975, 0.99) if n * (1 - a) >= 1]
    if special and draw(st.booleans()):
        level = draw(st.sampled_from(special))
    else:
        w = draw(st.floats(1.0, float(n), exclude_max=True))  # the tail size n (1 - level)
        level = 1.0 - w / n
        if not 0.0 < level < 1.0:
            level = 0.5
    return x, level


# ------------------------------------------------------------------ definitions (exact)
@SETTINGS
@given(data=losses_and_level())
def test_var_es_equal_sorted_reference_exactly(data):
    """Oracle: the plain sorted-array reference of the documented definitions, bit for bit
    (also through var_es, and 1-D input gives the first column)."""
    x, level = data
    v, e = var(x, level), es(x, level)
    ref = np.array([reference(x[:, j], level) for j in range(x.shape[1])])
    np.testing.assert_array_equal(v, ref[:, 0])
    np.testing.assert_array_equal(e, ref[:, 1])
    r = var_es(x, level)
    np.testing.assert_array_equal(r.var, v)
    np.testing.assert_array_equal(r.es, e)
    assert var(x[:, 0], level) == ref[0, 0]
    assert es(x[:, 0], level) == ref[0, 1]


@SETTINGS
@given(data=losses_and_level(ties=False))
def test_var_is_numpy_inverted_cdf_quantile(data):
    """Oracle (peer): VaR is numpy's ``inverted_cdf`` quantile, the ceil(n level)-th smallest,
    where n level is not within rounding of an integer (there the documented rounding of
    n (1 - level) applies; see the next test)."""
    x, level = data
    n = x.shape[0]
    if abs(n * level - round(n * level)) < 1e-6:
        return
    np.testing.assert_array_equal(
        var(x, level), np.quantile(x, level, axis=0, method="inverted_cdf")
    )


@pytest.mark.parametrize(
    ("n", "level", "rank"),
    [(100, 0.9, 90), (10, 0.7, 7), (10, 0.3, 3), (1000, 0.999, 999), (3, 0.5, 2)],
)
def test_documented_rounding_of_the_tail_size(n, level, rank):
    """Oracle (hand arithmetic): 1 - level is not exact in binary, yet VaR is the
    ceil(n level)-th smallest of 1..n computed in exact decimal arithmetic, and ES the mean
    of the w = n (1 - level) largest when w is an integer."""
    x = np.arange(1.0, n + 1.0)[::-1].copy()  # descending, so no sort is implied
    assert var(x, level) == float(rank)
    w = n - rank
    if w == round(n * (1 - level), 6):
        assert es(x, level) == pytest.approx(np.mean(np.arange(rank + 1, n + 1)), rel=1e-15)


def test_fractional_tail_weight():
    """Oracle (hand arithmetic, Acerbi-Tasche): n = 10, level = 0.75, w = 2.5: ES = (10 + 9
    + 0.5 * 8) / 2.5 = 9.2 and VaR = 8 (the 8th smallest = ceil(7.5))."""
    x = np.arange(1.0, 11.0)
    assert var(x, 0.75) == 8.0
    assert es(x, 0.75) == pytest.approx(9.2, rel=1e-15)


def test_levels_below_one_over_n():
    """Oracle (definition): for 0 < level < 1/n, ceil(n level) = 1, so VaR is the smallest
    loss; when moreover w = n (1 - level) rounds to n, all weights are 1 and ES is the mean
    of all losses."""
    x = np.random.default_rng(8).standard_normal((50, 2))
    for level in (1e-300, 1e-12, 0.5 / 50):
        np.testing.assert_array_equal(var(x, level), x.min(axis=0))
    for level in (1e-300, 1e-12):
        np.testing.assert_allclose(es(x, level), x.mean(axis=0), rtol=1e-12, atol=1e-14)


@SETTINGS
@given(data=losses_and_level(max_accounts=5), extra=st.integers(1, 40), off=st.integers(0, 2))
def test_selection_kernel_matches_stable_argsort(data, extra, off):
    """Oracle (slow, obviously correct version): numpy's stable argsort of the negated
    column ranks the scenarios as documented (larger loss first, earlier scenario first
    among equal losses). For random requested ranks, the private selection kernel puts the
    scenario of each requested rank q at position q and exactly the scenarios ranked before
    it at positions < q, for any candidate buffer size, column offset and block width."""
    from marginlab.simulate import risk as R

    x, _ = data
    n, m = x.shape
    rng = np.random.default_rng(extra)
    ranks = np.unique(rng.integers(0, n, size=rng.integers(1, 5)))
    k = int(ranks[-1]) + 1
    cap = min(n, k + extra)
    xp = np.zeros((n, m + off))
    xp[:, off:] = x
    tv = np.empty((m, k))
    ti = np.empty((m, k), dtype=np.int64)
    bad = np.full(m, -1, dtype=np.int64)
    R._select_tails(xp, off, ranks, cap, 1 + extra % 3, tv, ti, bad)
    assert np.all(bad == -1)
    order = np.argsort(-x, axis=0, kind="stable").T
    np.testing.assert_array_equal(tv, np.take_along_axis(x, ti.T, 0).T)
    for j in range(m):
        lo = 0
        for q in ranks:
            assert ti[j, q] == order[j, q]
            assert set(ti[j, lo:q]) == set(order[j, lo:q])
            lo = q + 1


def test_shapes_and_scalars():
    """Oracle: the documented shape convention."""
    x = np.random.default_rng(0).standard_normal((200, 3))
    assert isinstance(var(x[:, 0], 0.9), np.float64)
    assert var(x, 0.9).shape == (3,)
    assert es(x, [0.9, 0.95]).shape == (2, 3)
    assert es(x[:, 0], [0.9, 0.95]).shape == (2,)
    assert es(x, (0.9,)).shape == (1, 3)
    assert var(np.empty((10, 0)), 0.9).shape == (0,)
    np.testing.assert_array_equal(es(x, [0.9, 0.95])[1], es(x, 0.95))


# ---------------------------------------------------------------------------- laws
@SETTINGS
@given(data=losses_and_level())
def test_es_at_least_var(data):
    """Law: ES is a weighted mean of losses >= VaR, so ES >= VaR (exactly, ties included)."""
    x, level = data
    assert np.all(es(x, level) >= var(x, level))


@SETTINGS
@given(data=losses_and_level(), k=st.integers(-20, 20), c=st.floats(1e-3, 1e3))
def test_positive_homogeneity(data, k, c):
    """Law (positive homogeneity): rho(c L) = c rho(L) for c > 0; exact for VaR, and exact
    for ES when c is a power of two (scaling is then exact in binary)."""
    x, level = data
    p = 2.0**k
    np.testing.assert_array_equal(var(p * x, level), p * var(x, level))
    np.testing.assert_array_equal(es(p * x, level), p * es(x, level))
    np.testing.assert_array_equal(var(c * x, level), c * var(x, level))
    scale = c * np.abs(x).max(axis=0)
    assert np.all(np.abs(es(c * x, level) - c * es(x, level)) <= 1e-12 * scale + 1e-300)


@SETTINGS
@given(data=losses_and_level(), t=st.floats(-1e4, 1e4))
def test_translation_invariance(data, t):
    """Law (translation invariance): rho(L + t) = rho(L) + t. VaR exactly (rounding is
    monotone), ES to rounding (1e-12 of the scale)."""
    x, level = data
    np.testing.assert_array_equal(var(x + t, level), var(x, level) + t)
    scale = np.abs(x).max(axis=0) + abs(t)
    assert np.all(np.abs(es(x + t, level) - (es(x, level) + t)) <= 1e-12 * scale)


@SETTINGS
@given(data=losses_and_level(max_accounts=2, ties=False))
def test_es_subadditive(data):
    """Law (coherence, sub-additivity): ES(L1 + L2) <= ES(L1) + ES(L2), to rounding."""
    x, level = data
    if x.shape[1] < 2:
        return
    lhs = es(x[:, 0] + x[:, 1], level)
    rhs = es(x[:, 0], level) + es(x[:, 1], level)
    assert lhs <= rhs + 1e-12 * (np.abs(x).max() + 1.0)


def test_chunks_threads_and_layouts_do_not_change_results(two_threads):
    """Laws: any chunk size, 1 or 2 numba threads, and any input layout or dtype (float32,
    Fortran order, read-only, strided view) give bit-identical results to the default call
    on the float64 C-ordered copy."""
    rng = np.random.default_rng(3)
    x = rng.standard_t(4, size=(3000, 203))
    x[:, 7] = 0.0  # an all-tied column
    levels = [0.9, 0.99, 0.995]
    base = var_es(x, levels)
    ids = rng.integers(0, 40, size=203)
    base_alloc = allocate(x, ids, levels)
    base_inc = incremental(x, x[:, 5], levels)
    for threads in (1, two_threads):
        numba.set_num_threads(threads)
        for chunk in (1, 7, 64, None):
            r = var_es(x, levels, chunk=chunk)
            for f in dataclasses.fields(VarEs):
                np.testing.assert_array_equal(getattr(r, f.name), getattr(base, f.name))
            np.testing.assert_array_equal(allocate(x, ids, levels, chunk=chunk), base_alloc)
            np.testing.assert_array_equal(incremental(x, x[:, 5], levels, chunk=chunk),
                                          base_inc)  # fmt: skip
    ro = x.copy()
    ro.flags.writeable = False
    wide = np.zeros((3000, 406))
    wide[:, ::2] = x
    for variant in (np.asfortranarray(x), ro, wide[:, ::2]):
        np.testing.assert_array_equal(es(variant, levels), base.es)
        np.testing.assert_array_equal(var(variant, levels), base.var)
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(es(x32, levels), es(x32.astype(np.float64), levels))


# ----------------------------------------------------------------- closed-form oracles
A99 = 0.99
Z99 = stats.norm.ppf(A99)  # 2.326348
ES99 = stats.norm.pdf(Z99) / (1 - A99)  # 2.665214


def normal_ses(n: int, a: float) -> tuple[float, float]:
    """Closed forms: VaR SE = sqrt(a (1 - a) / n) / phi(z_a); ES SE from the asymptotic
    variance [Var(L | L >= VaR) + a (ES - VaR)^2] / (n (1 - a)) with the normal tail moments
    E[L | L > z] = phi(z) / (1 - a), E[L^2 | L > z] = 1 + z E[L | L > z]."""
    z = stats.norm.ppf(a)
    e = stats.norm.pdf(z) / (1 - a)
    tail_var = 1 + z * e - e * e
    return (math.sqrt(a * (1 - a) / n) / stats.norm.pdf(z),
            math.sqrt((tail_var + a * (e - z) ** 2) / (n * (1 - a))))  # fmt: skip


def test_normal_99_closed_form():
    """Oracle (closed form, N(0, 1), 99 %, n = 10,000): VaR 2.326348 and ES 2.665214 within
    4 closed-form SEs (0.0373, 0.0459); and the computed SEs agree with those closed forms
    within 4 standard deviations of the SE estimators, which are measured on 200 further
    independent samples."""
    n = 10_000
    se_var, se_es = normal_ses(n, A99)
    assert se_var == pytest.approx(0.0373, abs=5e-4) and se_es == pytest.approx(0.0459, abs=5e-4)
    assert Z99 == pytest.approx(2.326348, abs=1e-6) and ES99 == pytest.approx(2.665214, abs=1e-6)
    r = var_es(np.random.default_rng(11).standard_normal(n), A99)
    assert abs(r.var - Z99) < 4 * se_var
    assert abs(r.es - ES99) < 4 * se_es
    reps = var_es(np.random.default_rng(12).standard_normal((n, 200)), A99)
    assert abs(r.var_se - se_var) < 4 * reps.var_se.std()
    assert abs(r.es_se - se_es) < 4 * reps.es_se.std()


def test_normal_standard_errors_on_average():
    """Oracles (closed forms) for the mean over R = 200 samples of n = 10,000 N(0, 1) losses,
    within 4 standard errors of that mean:

    * VaR SE: the expectation of the documented difference quotient, sqrt(a (1 - a) / n) n
      (Phi^-1(p+) - Phi^-1(p-)) / (2m) with p+- = (r +- m) / (n + 1) (the means of the
      uniform order statistics), m from Bofinger's bandwidth; that expectation is itself
      within 6 % of the asymptotic 1 / phi(z_a) form (the smoothing bias, O(h^2): 5 % here);
    * ES SE: the asymptotic closed form.
    The spread of the 200 VaR and ES estimates matches the closed-form SEs (4 SEs of a
    standard deviation, sqrt(1 / (2 R)) relative)."""
    n, reps_n, a = 10_000, 200, A99
    se_var, se_es = normal_ses(n, a)
    x = np.random.default_rng(13).standard_normal((n, reps_n))
    r = var_es(x, a)
    z = stats.norm.ppf(a)
    phi = stats.norm.pdf(z)
    h = n ** (-0.2) * (4.5 * phi**4 / (2 * z * z + 1) ** 2) ** 0.2
    m = max(1, round(n * h))
    rank = math.ceil(n * a - 1e-9)
    quotient = n * (stats.norm.ppf((rank + m) / (n + 1)) - stats.norm.ppf((rank - m) / (n + 1)))
    expected_var_se = math.sqrt(a * (1 - a) / n) * quotient / (2 * m)
    assert expected_var_se == pytest.approx(se_var, rel=0.06)
    sem = 4 / math.sqrt(reps_n)
    assert abs(r.var_se.mean() - expected_var_se) < sem * r.var_se.std()
    assert abs(r.es_se.mean() - se_es) < sem * r.es_se.std()
    rel = 4 / math.sqrt(2 * reps_n)
    assert r.var.std() == pytest.approx(se_var, rel=rel)
    assert r.es.std() == pytest.approx(se_es, rel=rel)


def test_student_t3_closed_form():
    """Oracle (closed form, Student-t nu = 3, 97.5 %, n = 1,000,000): VaR = t_3^-1(0.975) =
    3.182446 and ES = f_t(q) (nu + q^2) / ((nu - 1)(1 - level)) = 5.039583 within 4
    closed-form SEs (tail variance by scipy quadrature)."""
    nu, a, n = 3, 0.975, 1_000_000
    q = stats.t.ppf(a, nu)
    f = stats.t.pdf(q, nu)
    es_t = f * (nu + q * q) / ((nu - 1) * (1 - a))
    assert q == pytest.approx(3.182446, abs=1e-6) and es_t == pytest.approx(5.039583, abs=1e-6)
    m2 = integrate.quad(lambda y: y * y * stats.t.pdf(y, nu), q, np.inf)[0] / (1 - a)
    se_var = math.sqrt(a * (1 - a) / n) / f
    se_es = math.sqrt((m2 - es_t**2 + a * (es_t - q) ** 2) / (n * (1 - a)))
    x = np.random.default_rng(21).standard_t(nu, size=n)
    r = var_es(x, a)
    assert abs(r.var - q) < 4 * se_var
    assert abs(r.es - es_t) < 4 * se_es
    assert r.var_se == pytest.approx(se_var, rel=0.2)  # m = 1300 order statistics: ~2 % noise


def test_uniform_var_se_is_exact():
    """Oracle (closed form): for losses 1..n (a uniform sample with density 1/n and unit
    spacings) the difference quotient is exactly n, so VaR SE = sqrt(a (1 - a) / n) n."""
    n = 5000
    x = np.random.default_rng(0).permutation(np.arange(1.0, n + 1.0))
    for a in (0.9, 0.99, 0.999):
        assert var_es(x, a).var_se == pytest.approx(math.sqrt(a * (1 - a) / n) * n, rel=1e-12)


def test_var_interval_is_the_binomial_order_statistic_interval():
    """Oracle (binomial law of order statistics, scipy.stats.binom): on losses 1..n the
    interval ends are the ranks l = F^-1(beta/2) and u = F^-1(1 - beta/2) + 1 of
    Bin(n, level); beyond the sample they are -inf / inf."""
    n = 2000
    x = np.arange(1.0, n + 1.0)
    for a, ci in ((0.99, 0.95), (0.95, 0.9), (0.5, 0.99)):
        r = var_es(x, a, ci=ci)
        beta = 1 - ci
        assert r.var_lower == stats.binom.ppf(beta / 2, n, a)
        assert r.var_upper == stats.binom.ppf(1 - beta / 2, n, a) + 1
    small = var_es(np.arange(1.0, 101.0), 0.99)
    assert small.var_upper == np.inf and np.isfinite(small.var_lower)


def test_interval_coverage():
    """Oracle (coverage by repetition, 400 samples of n = 2,000 N(0, 1) losses at 97.5 %):
    the VaR interval covers Phi^-1(0.975) at the rate P(l <= B <= u - 1) of
    B ~ Bin(n, level) (its exact coverage, >= 0.95) and the ES interval covers
    phi(z)/(1 - level) at rate 0.95, each within 4 binomial SEs of the repetition count.
    (The normal ES interval under-covers a little at n (1 - level) = 50: ~0.93 here.)"""
    n, reps_n, a = 2000, 400, 0.975
    r = var_es(np.random.default_rng(7).standard_normal((n, reps_n)), a)
    z = stats.norm.ppf(a)
    e = stats.norm.pdf(z) / (1 - a)
    lo = stats.binom.ppf(0.025, n, a)
    hi = stats.binom.ppf(0.975, n, a) + 1
    exact = stats.binom.cdf(hi - 1, n, a) - stats.binom.cdf(lo - 1, n, a)
    assert exact >= 0.95
    band = 4 * math.sqrt(0.95 * 0.05 / reps_n)
    var_rate = np.mean((r.var_lower <= z) & (z < r.var_upper))
    es_rate = np.mean((r.es_lower <= e) & (e <= r.es_upper))
    assert abs(var_rate - exact) < band
    assert abs(var_rate - 0.95) < band
    assert abs(es_rate - 0.95) < band


def test_var_es_result():
    """Oracle: the documented result type (frozen, shapes of var(), intervals around the
    estimates, ES interval = es +- z se) and its pandas form."""
    x = np.random.default_rng(1).standard_normal((4000, 3))
    r = var_es(x, [0.95, 0.99], ci=0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.var = 0  # type: ignore[misc]
    assert r.var.shape == r.es_se.shape == r.var_upper.shape == (2, 3)
    assert np.all((r.var_lower <= r.var) & (r.var <= r.var_upper))
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(r.es_upper - r.es, z * r.es_se, rtol=1e-12)
    np.testing.assert_allclose(r.es - r.es_lower, z * r.es_se, rtol=1e-12)
    frame = r.to_frame()
    assert len(frame) == 6 and frame["es"].to_numpy() == pytest.approx(r.es.ravel())
    one = var_es(x[:, 0], 0.99)
    assert one.var.shape == () and one.level.shape == (1,)


# ------------------------------------------------------------------------- allocation
def _book(seed=5, n=1500, n_pos=25, n_acc=6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_pos)) @ rng.standard_normal((n_pos, n_pos)) * 0.3
    ids = rng.integers(0, n_acc, size=n_pos)
    ids[ids == 2] = 3  # account 2 holds no position
    return x, ids, n_acc


def test_es_allocation_sums_to_account_es():
    """Law (Euler, full allocation): ES contributions of an account's positions sum to the
    account's ES (to 1e-12 of the sum of |contributions|), for several levels, including
    fractional tail weights; an account without positions has ES 0 and nothing to sum."""
    x, ids, n_acc = _book()
    levels = [0.9, 0.99, 0.9973]
    c = allocate(x, ids, levels)
    acc = account_sums(x, ids, n_acc)
    total = np.stack([np.bincount(ids, weights=c[i], minlength=n_acc) for i in range(3)])
    scale = np.stack([np.bincount(ids, weights=np.abs(c[i]), minlength=n_acc)
                      for i in range(3)])  # fmt: skip
    assert np.all(np.abs(total - es(acc, levels)) <= 1e-12 * scale + 1e-300)
    assert np.all(es(acc, levels)[:, 2] == 0.0)


def test_es_allocation_is_the_weighted_tail_mean():
    """Oracle (definition): the contribution is the position's loss averaged over the
    account's ranked tail scenarios with weights 1 (j times) and w - j, over w."""
    x, ids, n_acc = _book(n=997)
    a = 0.98  # w = 19.94
    acc = account_sums(x, ids, n_acc)
    c = allocate(x, ids, a)
    for p in range(x.shape[1]):
        order = ranked_scenarios(acc[:, ids[p]])
        w = x.shape[0] * (1 - a)
        j = math.floor(w)
        expected = (x[order[:j], p].sum() + (w - j) * x[order[j], p]) / w
        assert c[p] == pytest.approx(expected, rel=1e-13, abs=1e-13)


def test_var_allocation_sums_to_var_and_window():
    """Oracle (definition): unsmoothed VaR contributions are the losses in the VaR scenario
    and sum to the account's VaR; with window m they are the mean over the m scenarios
    ranked around it, and sum to the mean of those m account losses."""
    x, ids, n_acc = _book()
    acc = account_sums(x, ids, n_acc)
    a = 0.99
    c = allocate(x, ids, a, "var")
    total = np.bincount(ids, weights=c, minlength=n_acc)
    scale = np.bincount(ids, weights=np.abs(c), minlength=n_acc)
    assert np.all(np.abs(total - var(acc, a)) <= 1e-12 * scale + 1e-300)
    m = 9
    cm = allocate(x, ids, a, "var", window=m)
    j = math.floor(x.shape[0] * (1 - a) + 1e-9)
    for p in range(x.shape[1]):
        order = ranked_scenarios(acc[:, ids[p]])
        window = order[j - 4 : j + 5]
        assert cm[p] == pytest.approx(x[window, p].mean(), rel=1e-13, abs=1e-13)
    for k in range(n_acc):
        if k == 2:
            continue
        d = np.sort(acc[:, k])[::-1]
        got = cm[ids == k].sum()
        assert got == pytest.approx(d[j - 4 : j + 5].mean(), rel=1e-12)


def test_single_position_accounts_allocate_their_own_measure():
    """Law: an account of one position allocates exactly its own ES / VaR (same arithmetic,
    bit for bit)."""
    x = np.random.default_rng(2).standard_normal((800, 5))
    ids = np.arange(5)
    np.testing.assert_array_equal(allocate(x, ids, [0.95, 0.99]), es(x, [0.95, 0.99]))
    np.testing.assert_array_equal(allocate(x, ids[::-1].copy(), 0.99, "var"),
                                  var(x[:, ::-1], 0.99)[::-1])  # fmt: skip


def test_allocation_ties_take_the_earlier_scenario():
    """Oracle (documented tie rule): equal account losses rank by scenario index, earlier
    first. Account loss 5 in scenarios 3 and 7 (the two largest), n = 10, level 0.9: ES
    (w = 1) takes scenario 3 and VaR (the 2nd largest) scenario 7."""
    x = np.zeros((10, 2))
    x[:, 0] = np.arange(10) * 0.1
    x[:, 1] = -x[:, 0]
    x[3] = [2.0, 3.0]
    x[7] = [4.0, 1.0]
    ids = np.array([0, 0])
    np.testing.assert_array_equal(allocate(x, ids, 0.9), x[3])
    np.testing.assert_array_equal(allocate(x, ids, 0.9, "var"), x[7])


@SETTINGS
@given(data=losses_and_level(max_n=120, max_accounts=4), seed=st.integers(0, 2**32 - 1))
def test_allocation_sums_property(data, seed):
    """Law (full allocation) on random books, ties included: ES and VaR contributions sum to
    the account measures (1e-12 of the sum of |contributions|, plus 1e-12 of the losses for
    cancelling positions)."""
    x, level = data
    ids = np.random.default_rng(seed).integers(0, 2, size=x.shape[1])
    acc = account_sums(x, ids, 2)
    tol_x = 1e-12 * (np.abs(x).max() + 1.0) * x.shape[1]
    for measure, f in (("es", es), ("var", var)):
        c = allocate(x, ids, level, measure)
        total = np.bincount(ids, weights=c, minlength=2)
        scale = np.bincount(ids, weights=np.abs(c), minlength=2)
        assert np.all(np.abs(total - f(acc, level)) <= 1e-12 * scale + tol_x)


# ------------------------------------------------------------------------ incremental
def test_incremental_laws():
    """Laws: a zero trade adds exactly 0; a perfect hedge (trade = -account) gives
    measure(0) - measure(account) = -measure(account); a 1-D trade is the same trade added
    to every account; the definition measure(A + T) - measure(A) holds bit for bit."""
    rng = np.random.default_rng(4)
    acc = rng.standard_normal((2000, 6)) * [1, 2, 3, 4, 5, 6]
    for measure, f in (("es", es), ("var", var)):
        for level in (0.99, [0.95, 0.99]):
            zero = incremental(acc, np.zeros(2000), level, measure)
            assert np.all(zero == 0.0)
            hedge = incremental(acc, -acc, level, measure)
            np.testing.assert_array_equal(hedge, f(np.zeros_like(acc), level) - f(acc, level))
            np.testing.assert_array_equal(hedge, -f(acc, level))
            t = rng.standard_normal(2000)
            one = incremental(acc, t, level, measure)
            np.testing.assert_array_equal(one, incremental(acc, np.repeat(t[:, None], 6, 1),
                                                           level, measure))  # fmt: skip
            np.testing.assert_array_equal(one, f(acc + t[:, None], level) - f(acc, level))
    assert incremental(acc[:, 0], -acc[:, 0], 0.99) == -es(acc[:, 0], 0.99)


# -------------------------------------------------------------------------- bad input
def test_non_finite_losses_are_named():
    """Oracle (STYLE.md): errors name the argument, the value and where it is."""
    x = np.random.default_rng(0).standard_normal((300, 4))
    for bad, row, col in ((np.nan, 17, 2), (np.inf, 250, 0), (-np.inf, 3, 3)):
        y = x.copy()
        y[row, col] = bad
        for f in (var, es, var_es):
            with pytest.raises(ValueError, match=rf"losses.*finite.*losses\[{row}, {col}\]"):
                f(y, 0.99)
        with pytest.raises(ValueError, match=rf"losses\[{row}\]"):
            var(y[:, col], 0.99)
        with pytest.raises(ValueError, match="position_losses.*finite"):
            allocate(y, [0, 0, 1, 1], 0.99)
        with pytest.raises(ValueError, match="account_losses.*finite"):
            incremental(y, x[:, 0], 0.99)
        with pytest.raises(ValueError, match="trade_losses.*finite"):
            incremental(x, y[:, col], 0.99)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, float("nan"), [0.9, 1.2]])
def test_level_outside_open_interval(level):
    """Oracle: level must be in (0, 1); the message names it, the value and the range."""
    x = np.ones((100, 2))
    for f in (var, es, var_es):
        with pytest.raises(ValueError, match=r"level.*\(0, 1\)"):
            f(x, level)
    with pytest.raises(ValueError, match=r"level.*\(0, 1\)"):
        allocate(x, [0, 1], level)


def test_level_too_high_for_the_sample():
    """Oracle: n (1 - level) < 1 leaves no scenario in the tail: rejected with the highest
    allowed level 1 - 1/n."""
    x = np.ones(1000)
    with pytest.raises(ValueError, match=r"level=0\.9999 is too high.*n_scenarios=1000.*0\.999"):
        es(x, 0.9999)
    assert var(x, 0.999) == 1.0  # the boundary itself is allowed
    with pytest.raises(ValueError, match="too high"):
        var(np.ones(1), 0.5)


@pytest.mark.parametrize("bad", [np.ones(()), np.ones((3, 3, 3))])
def test_wrong_ndim(bad):
    """Oracle: losses are 1-D or 2-D; the message names the argument and the shape."""
    for f in (var, es, var_es):
        with pytest.raises(ValueError, match=r"losses must be 1-D.*or 2-D.*ndim"):
            f(bad, 0.5)
    with pytest.raises(ValueError, match=r"position_losses must be 2-D"):
        allocate(np.ones(10), [0], 0.5)


def test_mismatched_shapes_and_bad_arguments():
    """Oracle: mismatched shapes and wrong types name the argument and what was expected."""
    x = np.random.default_rng(0).standard_normal((100, 3))
    with pytest.raises(ValueError, match=r"account_of_position must have shape.*\(3,\)"):
        allocate(x, [0, 1], 0.9)
    with pytest.raises(TypeError, match="account_of_position must hold integer"):
        allocate(x, [0.0, 1.0, 1.0], 0.9)
    with pytest.raises(ValueError, match="account_of_position must hold account ids >= 0"):
        allocate(x, [0, -1, 1], 0.9)
    with pytest.raises(ValueError, match=r"trade_losses must have shape \(100,\) or"):
        incremental(x, np.ones(99), 0.9)
    with pytest.raises(ValueError, match=r"trade_losses must have shape"):
        incremental(x, np.ones((100, 2)), 0.9)
    with pytest.raises(ValueError, match="measure must be 'es' or 'var'"):
        allocate(x, [0, 1, 1], 0.9, "cvar")
    with pytest.raises(ValueError, match="measure must be 'es' or 'var'"):
        incremental(x, x[:, 0], 0.9, "VaR")
    with pytest.raises(ValueError, match=r"window must be an odd int in \[1, 21\]"):
        allocate(x, [0, 1, 1], 0.9, "var", window=4)
    with pytest.raises(ValueError, match=r"window must be an odd int in \[1, 21\]"):
        allocate(x, [0, 1, 1], 0.9, "var", window=23)
    with pytest.raises(ValueError, match="window applies to measure='var' only"):
        allocate(x, [0, 1, 1], 0.9, window=3)
    with pytest.raises(TypeError, match="level must be a float"):
        var(x, "0.99")
    with pytest.raises(TypeError, match="level must be a float"):
        var(x, True)
    with pytest.raises(ValueError, match="level must be a scalar or a 1-D sequence"):
        var(x, [[0.9]])
    with pytest.raises(TypeError, match="losses must be an array of real numbers"):
        es(np.array(["a", "b"]), 0.5)
    with pytest.raises(TypeError, match="losses must be an array of real numbers"):
        es(np.ones(4, dtype=complex), 0.5)
    with pytest.raises(ValueError, match=r"ci must be in the open interval \(0, 1\)"):
        var_es(x, 0.9, ci=1.0)
    with pytest.raises(ValueError, match="chunk must be an int >= 1"):
        es(x, 0.9, chunk=0)
    with pytest.raises(TypeError, match="chunk must be an int >= 1"):
        es(x, 0.9, chunk=2.5)
