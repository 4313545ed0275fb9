"""Calibration speed: the Merton fit before and after issue 12, and the GARCH fits.

The Merton fit was 1.8 s on a shared machine and dominated backtests that refit it (issue
12). Issue 12 restricts the search to identified jumps (at most 0.1 per step, jump sd >= 2
diffusion sd), fixes the Poisson truncation for the whole search, computes the
log-likelihood and its gradient in one compiled, vectorised pass
(``simulate/_merton_kernel.py``) and abandons a later start (of three) once it descends
into an optimum already found (BTC: 115 and 103 likelihood evaluations per fit, Hessian
and posteriors included, against 189 and 166 for the baseline at 365 and 2,149 returns).
The **baseline** is the previous fit's optimisation (six L-BFGS-B starts over the unrestricted
parameters, the truncation recomputed with scipy at every evaluation, scipy's
``logsumexp``), kept verbatim below and timed in the same process, interleaved with the new
``fit_merton`` (which also computes the Hessian, standard errors and posteriors, so the
ratio understates the speed-up of the optimisation). Target: >= 10x.

``garch_t`` rows time ``fit_garch(dist="t", gjr=True)`` (with the degenerate-fit checks and
fallbacks) against a plain ``arch`` GJR-t fit of the same returns: information.

Data: BTC daily closes of the data folder (last 365 days and all 2,149 returns); without
it, a Merton path simulated with BTC-like parameters.

Note: L-BFGS-B's Fortran driver calls BLAS; with several BLAS threads on a loaded 2-core
machine it spent ~7 ms per iteration spinning (both versions): run with
``OPENBLAS_NUM_THREADS=1`` for representative absolute times.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats
from scipy.special import gammaln, logsumexp

from ._harness import Benchmark, Context, Row, Target, best_of_each, new_context

SUBJECT = "calibration"
TITLE = "Calibration: fit times"
MERTON_TAIL = 1e-12
_LOG_2PI = math.log(2.0 * math.pi)
SPEEDUP = Target(">=", 10.0)


@dataclass(frozen=True)
class Sizes:
    repeat: int
    windows: tuple  # look-back lengths (returns)


FULL = Sizes(repeat=5, windows=(365, 2149))
QUICK = Sizes(repeat=1, windows=(365,))


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


def _returns() -> tuple[np.ndarray, str]:
    from marginlab.models.history import read_prices, shared_data_dir

    d = shared_data_dir()
    if d is not None and (d / "btc_usd_daily.csv").is_file():
        return read_prices(d / "btc_usd_daily.csv").log_returns().reshape(-1), "BTC daily"
    from marginlab.models import MertonJump
    from marginlab.simulate import simulate_paths

    m = MertonJump(mu=0.0, sigma=0.5, lam=12.0, jump_mean=-0.05, jump_std=0.1)
    p = simulate_paths(m, 1.0, n_steps=2149, dt=1 / 365, n_paths=1, seed=1)[0, :, 0]
    return np.diff(np.log(p)), "simulated Merton"


# --------------------------------------------------------------------------- the baseline
class CalibrationWarning(UserWarning):
    pass


def _poisson_k(p: float) -> int:
    """Smallest K with P(N > K) < MERTON_TAIL for N ~ Poisson(p)."""
    kk = int(stats.poisson.isf(MERTON_TAIL, p)) if p > 0 else 0
    kk = max(kk, 0)
    while stats.poisson.sf(kk, p) >= MERTON_TAIL:
        kk += 1
    while kk > 0 and stats.poisson.sf(kk - 1, p) < MERTON_TAIL:
        kk -= 1
    return kk


def _merton_terms(r: np.ndarray, a: float, v0: float, p: float, m: float, s2: float):
    """Log of each Poisson-mixture term, shape (n, K+1), and the k grid."""
    kk = np.arange(_poisson_k(p) + 1, dtype=np.float64)
    logw = kk * math.log(p) - p - gammaln(kk + 1.0) if p > 0 else np.where(kk == 0, 0.0,
                                                                              -np.inf)
    mean = a + kk * m
    var = v0 + kk * s2
    e = r[:, None] - mean
    logphi = -0.5 * (_LOG_2PI + np.log(var) + e * e / var)
    return logw + logphi, kk, e, var


class _MertonObjective:
    """Negative log-likelihood and gradient in scaled coordinates
    z = (a/d, log(sd_diffusion/d), log(lam step), m/d, log(s/d)), d = sample std."""

    def __init__(self, r: np.ndarray, d: float):
        self.r, self.d = r, d

    def natural(self, z):
        d = self.d
        return d * z[0], (d * math.exp(z[1])) ** 2, math.exp(z[2]), d * z[3], \
            (d * math.exp(z[4])) ** 2

    def value_grad(self, z):
        a, v0, p, m, s2 = self.natural(z)
        terms, kk, e, var = _merton_terms(self.r, a, v0, p, m, s2)
        lse = logsumexp(terms, axis=1)
        q = np.exp(terms - lse[:, None])
        de = e / var                                    # d log phi / d mean
        dv = 0.5 * (e * e / var - 1.0) / var            # d log phi / d var
        g_a = np.sum(q * de)
        g_m = np.sum(q * de * kk)
        g_v0 = np.sum(q * dv)
        g_s2 = np.sum(q * dv * kk)
        g_p = np.sum(q * (kk / p - 1.0))
        grad = np.array([g_a * self.d, g_v0 * 2.0 * v0, g_p * p, g_m * self.d, g_s2 * 2.0 * s2])
        return -float(np.sum(lse)), -grad

    def posterior_no_jump(self, z):
        terms, *_ = _merton_terms(self.r, *self.natural(z))
        return np.exp(terms[:, 0] - logsumexp(terms, axis=1))


def _merton_theta(z, d, step):
    """(mu, sigma, lam, jump_mean, jump_std) and its Jacobian d theta / d z."""
    sigma = d * math.exp(z[1]) / math.sqrt(step)
    lam = math.exp(z[2]) / step
    m = d * z[3]
    s = d * math.exp(z[4])
    kappa = math.expm1(m + 0.5 * s * s)
    mu = d * z[0] / step + 0.5 * sigma**2 + lam * kappa
    jac = np.zeros((5, 5))
    jac[0] = [d / step, sigma**2, lam * kappa, lam * (1.0 + kappa) * d,
              lam * (1.0 + kappa) * s * s]
    jac[1, 1] = sigma
    jac[2, 2] = lam
    jac[3, 3] = d
    jac[4, 4] = s
    return np.array([mu, sigma, lam, m, s]), jac


def _legacy_merton_fit(r: np.ndarray, step: float, label: str = "legacy"):
    """The Merton MLE before issue 12 (six starts, no identification bounds, truncation
    recomputed per evaluation): the optimisation part, as the baseline."""
    d = float(np.std(r))
    if d <= 0.0:
        raise ValueError(f"returns of {label} are constant; cannot fit a jump diffusion")
    obj = _MertonObjective(r, d)
    big = float(np.max(np.abs(r - r.mean()))) / d + 1.0
    bounds = [(-big, big), (math.log(0.01), math.log(2.0)), (math.log(1e-6), 0.0),
              (-big, big), (math.log(0.01), math.log(big))]
    mean = float(r.mean())
    starts = []
    for p0 in (0.005, 0.03, 0.15):
        for share in (0.25, 0.6):
            s0 = math.sqrt(share / p0)
            sd0 = math.sqrt(1.0 - share)
            z = np.array([mean / d, math.log(sd0), math.log(p0), 0.0, math.log(s0)])
            starts.append(np.clip(z, [b[0] for b in bounds], [b[1] for b in bounds]))
    best = None
    for z0 in starts:
        res = optimize.minimize(obj.value_grad, z0, jac=True, method="L-BFGS-B",
                                bounds=bounds, options={"maxiter": 500, "ftol": 1e-13,
                                                        "gtol": 1e-7})
        if best is None or res.fun < best.fun:
            best = res
    return best.x, -float(best.fun)


# --------------------------------------------------------------------------- benchmarks
def bench_merton(ctx: Context) -> list[Row]:
    from marginlab.models.calibration import fit_merton

    r, label = ctx.memo("returns", _returns)
    rows = []
    for n in ctx.sizes.windows:
        w = r[-n:]

        def ours(w=w):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_merton(w, 1 / 365)

        def legacy(w=w):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _legacy_merton_fit(w, 1 / 365)

        t = best_of_each({"ours": ours, "legacy": legacy}, repeat=ctx.sizes.repeat,
                         setup=ours)
        rows.append(Row(f"merton.fit {n} returns", t["ours"], "s", t["legacy"],
                        "pre-issue-12 Merton MLE (optimisation only)",
                        t["legacy"] / t["ours"], SPEEDUP, note=label))
    return rows


def bench_garch(ctx: Context) -> list[Row]:
    from arch import arch_model

    from marginlab.models.calibration import fit_garch

    r, label = ctx.memo("returns", _returns)
    rows = []
    for n in ctx.sizes.windows:
        w = r[-n:]

        def ours(w=w):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_garch(w, dist="t", gjr=True)

        def plain(w=w):
            arch_model(100 * w, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t",
                       rescale=False).fit(disp="off", show_warning=False)

        t = best_of_each({"ours": ours, "arch": plain}, repeat=ctx.sizes.repeat, setup=ours)
        rows.append(Row(f"garch_t.fit {n} returns", t["ours"], "s", t["arch"],
                        "one plain arch GJR-t fit", t["ours"] / t["arch"], None, note=label))
    return rows


BENCHMARKS = [
    Benchmark("merton", bench_merton, "Merton fit, new vs pre-issue-12"),
    Benchmark("garch_t", bench_garch, "GJR-t fit with checks vs plain arch"),
]
