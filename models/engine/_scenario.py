"""The scenario path of the live margin engine: unit P&L ``U`` on the engine's scenario set,
the exact risk estimators on it (plain, weighted or randomised-QMC, as the batch
``portfolio_risk`` runs them) and the what-if fast path.

For a plain scenario set, what-if runs the estimator kernel of ``account_risk`` itself on a
virtual account (the account's cached P&L vector plus the traded rows of ``U``), after a check
at every revaluation that this reproduces ``account_risk`` bit for bit. For a weighted set
(importance sampling, ``ScenarioSet.weights``) or randomised QMC (``randomizations > 1``) every
risk number, including what-if, comes from the batch's own block estimator
(:func:`marginlab.models.portfolio._block_risk`: the weighted estimators of
:mod:`marginlab.simulate.weighted`, error bars from the spread of the randomisations), so the
engine equals the batch ``MonteCarloMargin`` on the same set. What-if then costs what the
batch estimator costs for one account: for a weighted set the weighted kernel (its per-set
constants, the masses, are computed once per scenario set), measured at 14 to 30 ms at 10,240
mixture scenarios on the shared 2-core machine (the weighted tail selection dominates); for
randomised QMC ``R + 1`` estimator calls (about 15 to 60 ms at 16 x 640), against about
50 us for a plain set. Correct, not fast: use a plain set for interactive what-if.
"""

from __future__ import annotations

from dataclasses import replace
from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
from scipy.stats import norm

from marginlab.simulate._engine_kernels import account_pnl_into, what_if_risk
from marginlab.simulate._weighted_kernel import _account_kernel_w
from marginlab.simulate.revalue import account_risk, level_indices
from marginlab.simulate.weighted import check_weights, masses

from ..portfolio import _block_risk, revalue
from ..scenarios import MarketState, ScenarioSet

__all__ = ["ScenarioMixin"]

_RISK_KEYS = ("var", "var_lo", "var_hi", "var_se", "es", "es_se", "es_lo", "es_hi")


class ScenarioMixin:
    """Scenario revaluation and risk estimators (mixed into the engine)."""

    def _scenario_set(self, market: MarketState) -> ScenarioSet:
        if self._fixed is None:
            return self.method.scenarios(market)
        base = self._fixed
        s_old = self._fixed_market.prices(base.underlyings)
        s_new = market.prices(base.underlyings)
        if np.array_equal(s_old, s_new):
            return base
        return replace(base, prices=base.prices * (s_new / s_old))  # weights etc. kept

    def _revalue(self, market: MarketState) -> None:
        scen = self._scenario_set(market)
        covered = np.isin(self._und, scen.underlyings)
        valued = covered & (~self._is_opt | np.isin(self._und, list(market.vol)))
        held = np.zeros(self._n_inst, bool)
        held[self._rows[self._rows < self._n_inst]] = True
        bad = held & ~valued
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            why = ("the scenarios do not cover its underlying" if not covered[i]
                   else "the market has no implied vol for its underlying")
            raise ValueError(f"instrument {self._inst_ids[i]!r} is held but cannot be "
                             f"valued: {why} ({self._und[i]!r})")
        unit = revalue(self._skeleton, market, scen, also_held=np.flatnonzero(valued))
        self._U = np.ascontiguousarray(unit.pnl, dtype=float)
        self._valued = valued
        self._scen = scen
        self._setup_fast()
        self._cache.clear()

    def _setup_fast(self) -> None:
        """Constants of the what-if fast path, and a check that it reproduces the public
        ``account_risk`` bit for bit on a virtual book (otherwise what-if calls
        ``account_risk`` itself: slower, never wrong)."""
        n_scen = self._U.shape[1]
        lv = np.array([self.level])
        self._fast = None
        if np.any(n_scen - n_scen * lv < 1.0 - 1e-9):
            raise ValueError(f"level {self.level} leaves fewer than 1 tail scenario out of "
                             f"{n_scen}")
        self._wconsts = None
        if self._scen.weights is not None and self._scen.randomizations == 1:
            # the constants account_risk's weighted branch computes on every call (masses,
            # tail mass, z, initial tail size), computed once per scenario set the same way
            p, p2 = masses(check_weights(self._scen.weights, n_scen))
            beta = np.ascontiguousarray(1.0 - lv, dtype=np.float64)
            self._wconsts = (p, p2, beta, NormalDist().inv_cdf(0.5 + 0.5 * self.ci),
                             int(min(n_scen, max(128, 8.0 * beta.max() * n_scen + 1))))
        if self._scen.weights is not None or self._scen.randomizations != 1:
            return  # weighted / randomised QMC: the batch estimators themselves (_acc_risk)
        try:
            var_top, lo_top, hi_top, w = level_indices(n_scen, lv, self.ci)
            m_keep = int(min(n_scen, max(var_top.max(), lo_top.max(), hi_top.max(),
                                         np.floor(w).max()) + 1))
            consts = {"var_top": np.asarray(var_top, np.int64),
                      "ci_lo_top": np.asarray(lo_top, np.int64),
                      "ci_hi_top": np.asarray(hi_top, np.int64), "w_es": np.asarray(w, float),
                      "level": lv, "m_keep": m_keep}
            r = int(np.flatnonzero(self._valued)[0]) if self._valued.any() else 0
            V = np.ascontiguousarray(np.vstack([self._U.sum(axis=0) * 0.01, self._U[r]]))
            q = np.array([1.0, -3.0])
            raw = what_if_risk(V, q, consts)
            ref = account_risk(V, np.array([0, 2]), np.array([0, 1]), q, (self.level,),
                               ci=self.ci)
        except (KeyError, TypeError, ValueError, IndexError):  # kernel signature changed
            return
        for z in (NormalDist().inv_cdf(0.5 + 0.5 * self.ci), float(norm.ppf(0.5 + self.ci / 2))):
            got = self._post(raw, z)
            if all(np.array_equal(got[k], ref[k]) for k in ref):
                self._fast = consts
                self._z = z
                return

    @staticmethod
    def _post(raw: dict[str, np.ndarray], z: float) -> dict[str, np.ndarray]:
        """``account_risk``'s interval post-processing of the raw kernel outputs."""
        out = dict(raw)
        lo = np.minimum(raw["var_lo"], raw["var_hi"])
        hi = np.maximum(raw["var_lo"], raw["var_hi"])
        out["var_lo"], out["var_hi"] = lo, hi
        out["var_se"] = (hi - lo) / (2.0 * z)
        out["es_lo"] = raw["es"] - z * raw["es_se"]
        out["es_hi"] = raw["es"] + z * raw["es_se"]
        return out

    def _acc_risk(self, U: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                  qty: np.ndarray, allocate: bool = True) -> dict[str, np.ndarray]:
        """``account_risk`` on the engine's scenario set, as the batch ``portfolio_risk``
        calls it: weighted estimators for a weighted set, error bars from the spread between
        randomisations for randomised QMC."""
        sc = self._scen
        if sc.weights is None and sc.randomizations == 1:
            return account_risk(U, indptr, indices, qty, (self.level,), ci=self.ci,
                                allocate=allocate)
        if self._wconsts is not None:
            # account_risk's weighted branch with its per-set constants precomputed: the
            # same kernel on the same inputs (its Python set-up costs milliseconds a call)
            p, p2, beta, z, m0 = self._wconsts
            indptr = np.ascontiguousarray(indptr, np.int64)
            qty = np.ascontiguousarray(qty, np.float64)
            n_acc, nnz = indptr.shape[0] - 1, qty.size if allocate else 0
            out = {k: np.empty((1, n_acc)) for k in ("var", "es", "var_lo", "var_hi", "es_se")}
            out["alloc_var"] = np.zeros((1, nnz))
            out["alloc_es"] = np.zeros((1, nnz))
            _account_kernel_w(np.ascontiguousarray(U, np.float64), indptr,
                              np.ascontiguousarray(indices, np.int64), qty, p, p2, beta, z, m0,
                              bool(allocate), out["var"], out["es"], out["var_lo"],
                              out["var_hi"], out["es_se"], out["alloc_var"], out["alloc_es"])
            return self._post(out, z)
        hb = SimpleNamespace(indptr=np.asarray(indptr, np.int64),
                             indices=np.asarray(indices, np.int64), data=np.asarray(qty, float))
        return _block_risk(SimpleNamespace(pnl=U, scenarios=sc), hb, (self.level,), self.ci,
                           allocate)

    def _risk_virtual(self, V: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
        """Risk of one virtual account holding ``q[j]`` units of row ``j`` of ``V``."""
        if self._fast is not None:
            return self._post(what_if_risk(V, q, self._fast), self._z)
        k = V.shape[0]
        return self._acc_risk(V, np.array([0, k]), np.arange(k), q, allocate=True)

    def _base(self, i: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Account ``i``'s scenario P&L vector on the current U and its risk (LRU cache)."""
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        v = account_pnl_into(self._U, self._indptr, self._rows, self._qty, i,
                             np.empty(self._U.shape[1]))
        hit = (v, self._risk_virtual(v[None, :], np.ones(1)))
        if self._cache_bytes >= v.nbytes:
            self._cache[i] = hit
            while len(self._cache) * v.nbytes > self._cache_bytes:
                self._cache.popitem(last=False)
        return hit

    def _stats_pair(self, out: dict[str, np.ndarray], mb: float) -> dict[str, float]:
        d = {k: float(out[k][0, 0]) for k in _RISK_KEYS}
        im = max(d[self.measure], 0.0)
        d.update(im=im, mm=self.mm_fraction * im, margin_balance=mb, excess=mb - im)
        return d
