"""Kernels of the live margin engine (:mod:`marginlab.models.engine`): arrays in, arrays out.

The engine keeps its book as CSR holdings over the rows of the unit P&L matrix ``U`` (the
instruments, then the collateral assets), as :func:`marginlab.simulate.revalue.account_risk`
reads them. Three kernels serve it:

* :func:`account_pnl_into`: one account's scenario P&L vector ``sum_h q_h U[row_h]``, summed
  in CSR order so that its negation is, bit for bit, the loss vector ``account_risk`` builds.
* :func:`remark`: the per-tick re-mark of every account (parallel over account blocks): the
  margin balance from per-holding coefficients, ``sum_h a_h V[row_h] + b_h S[row_h] + c_h``
  (``V`` the unit mark value, ``S`` the spot of the row), and the first-order (Euler)
  re-mark of the risk measure, ``m_ref + sum_h alloc_h (x[row_h] / x_ref_h - 1)`` with ``x`` the
  scale of the row (the spot for linear contracts, options and coin collateral, 1 for inverse
  contracts whose USD unit P&L does not scale with the spot).
* :func:`what_if_risk`: VaR / ES / error bars / Euler allocation of an account after what-if
  trades, by the estimator kernel of ``account_risk`` itself (so the two cannot drift apart)
  on a virtual account: row 0 the account's P&L vector, rows 1..k the traded instruments.
"""

from __future__ import annotations

import numpy as np

from ._numba import kernel, parallel_kernel, prange
from .revalue import _account_block

__all__ = ["account_pnl_into", "remark", "what_if_risk"]

_BLOCK = 256


@kernel
def _pnl_into(U, indptr, indices, qty, acc, out):
    n_scen = U.shape[1]
    for s in range(n_scen):
        out[s] = 0.0
    for p in range(indptr[acc], indptr[acc + 1]):
        q = qty[p]
        row = indices[p]
        for s in range(n_scen):
            out[s] += q * U[row, s]


def account_pnl_into(U: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                     qty: np.ndarray, account: int, out: np.ndarray) -> np.ndarray:
    """Write account ``account``'s scenario P&L (USD), ``sum_p qty[p] U[indices[p]]``, into
    ``out`` (shape ``(n_scenarios,)``) and return it. Inputs are the engine's own arrays
    (float64 / int64, C-contiguous); no validation."""
    _pnl_into(U, indptr, indices, qty, account, out)
    return out


@kernel
def _remark_block(lo, hi, indptr, rows, a, b, c, alloc, x_ref, m_ref, value, spot, scale,
                  mb_out, m_out):
    for acc in range(lo, hi):
        mb = 0.0
        dm = 0.0
        for p in range(indptr[acc], indptr[acc + 1]):
            r = rows[p]
            mb += a[p] * value[r] + b[p] * spot[r] + c[p]
            x = scale[r]
            if x != x_ref[p]:
                dm += alloc[p] * (x / x_ref[p] - 1.0)
        mb_out[acc] = mb
        m_out[acc] = m_ref[acc] + dm


@parallel_kernel
def _remark(indptr, rows, a, b, c, alloc, x_ref, m_ref, value, spot, scale, mb_out, m_out):
    n_acc = indptr.shape[0] - 1
    n_blocks = (n_acc + _BLOCK - 1) // _BLOCK
    for k in prange(n_blocks):
        _remark_block(k * _BLOCK, min((k + 1) * _BLOCK, n_acc), indptr, rows, a, b, c, alloc,
                      x_ref, m_ref, value, spot, scale, mb_out, m_out)


_SERIAL_HOLDINGS = 2_000_000  # below this a serial pass beats waking the thread pool


def remark(indptr, rows, a, b, c, alloc, x_ref, m_ref, value, spot, scale, mb_out, m_out):
    """Re-mark every account: margin balance into ``mb_out`` and the first-order risk
    measure into ``m_out`` (both shape ``(n_accounts,)``, USD). Per holding ``p``: ``a, b, c``
    the mark coefficients, ``alloc`` the Euler allocation of the measure and ``x_ref`` the row
    scale when it was computed; per account ``m_ref`` the measure then; per row ``value``,
    ``spot``, ``scale`` now. A holding whose scale has not moved adds exactly nothing."""
    if rows.shape[0] < _SERIAL_HOLDINGS:
        _remark_block(0, indptr.shape[0] - 1, indptr, rows, a, b, c, alloc, x_ref, m_ref, value,
                      spot, scale, mb_out, m_out)
    else:
        _remark(indptr, rows, a, b, c, alloc, x_ref, m_ref, value, spot, scale, mb_out, m_out)


def _risk_parameters() -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(_account_block.py_func).parameters)


_RISK_PARAMETERS = _risk_parameters()


def what_if_risk(V: np.ndarray, qty: np.ndarray, consts: dict) -> dict[str, np.ndarray]:
    """Raw estimator outputs for one virtual account holding ``qty[j]`` units of row ``j`` of
    ``V`` (shape ``(k, n_scen)``; the engine passes the account's P&L vector as row 0 with
    quantity 1, then the traded instruments' rows).

    ``consts`` holds the per-level constants of ``account_risk``'s estimator kernel by its
    parameter names (``var_top``, ``ci_lo_top``, ``ci_hi_top``, ``w_es``, ``m_keep`` and any
    others it takes, such as ``level``). Returns ``var, es, var_lo, var_hi, es_se`` of shape
    (n_levels, 1) and ``alloc_var, alloc_es`` of shape (n_levels, k), before the interval
    post-processing of ``account_risk``. Raises KeyError when the kernel takes a parameter
    ``consts`` lacks.
    """
    k = V.shape[0]
    n_lv = consts["var_top"].shape[0]
    named = dict(consts)
    named.update(a_lo=0, a_hi=1, U=V, indptr=np.array([0, k], np.int64),
                 indices=np.arange(k, dtype=np.int64), qty=qty, alloc=True)
    for name in ("out_var", "out_es", "out_var_lo", "out_var_hi", "out_es_se"):
        named[name] = np.empty((n_lv, 1))
    named["out_alloc_var"] = np.zeros((n_lv, k))
    named["out_alloc_es"] = np.zeros((n_lv, k))
    _account_block(*[named[p] for p in _RISK_PARAMETERS])
    return {name[4:]: named[name] for name in named if name.startswith("out_")}
