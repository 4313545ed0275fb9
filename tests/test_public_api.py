"""The public names the issues promise, and agreement between the two risk engines."""

from __future__ import annotations

import inspect

import numpy as np

import marginlab.models as models
import marginlab.simulate as simulate


def test_promised_names_exist():
    """Contract: every public name the issues rely on is importable where they say."""
    for name in ("simulate_paths", "simulate_terminal", "simulate_extremes", "var", "es",
                 "var_es", "allocate", "incremental", "unit_pnl", "account_risk"):
        assert callable(getattr(simulate, name)), name
    for name in ("GBM", "MertonJump", "GARCH", "Bootstrap", "Book", "make_book", "compare",
                 "MarketState", "monte_carlo_scenarios", "portfolio_risk", "fit",
                 "read_prices", "liquidation_profile"):
        assert hasattr(models, name), name
    assert callable(models.Book.from_frames) and callable(models.Book.from_files)
    from marginlab.models import backtest, margin

    for name in ("kupiec", "christoffersen", "traffic_light", "acerbi_szekely_z2"):
        assert callable(getattr(backtest, name)), name
    sig = inspect.signature(margin.liquidation_price)
    assert list(sig.parameters)[:6] == ["side", "size", "entry_price", "wallet_balance", "mmr",
                                        "maintenance_amount"]
    for name in ("MonteCarloMargin", "HistoricalMargin", "AntiProcyclical", "SpanLike",
                 "DeribitLike", "TieredMargin", "DydxMargin", "DriftMargin", "MarginResult"):
        assert hasattr(margin, name), name
    sig = inspect.signature(simulate.simulate_paths)
    for kw in ("n_steps", "dt", "n_paths", "seed", "antithetic"):
        assert sig.parameters[kw].kind is inspect.Parameter.KEYWORD_ONLY


def test_the_two_risk_engines_agree():
    """Law: simulate.var_es on a materialised loss matrix and the fused per-account kernel
    (revalue.account_risk) implement the same VaR and ES estimators: equal values."""
    rng = np.random.default_rng(3)
    n_scen, n_instr, n_acc = 4_001, 7, 40
    U = rng.standard_t(4, size=(n_instr, n_scen)) * rng.uniform(1, 50, (n_instr, 1))
    rows, cols, q = [], [], []
    for a in range(n_acc):
        k = rng.integers(1, 5)
        rows += [a] * k
        cols += list(rng.choice(n_instr, k, replace=False))
        q += list(rng.normal(0, 3, k))
    import scipy.sparse as sp

    h = sp.csr_matrix((q, (rows, cols)), shape=(n_acc, n_instr))
    h.sort_indices()
    levels = [0.99, 0.975, 0.9]
    fused = simulate.account_risk(U, h.indptr, h.indices, h.data, levels, allocate=False)
    losses = -np.asarray((h @ U).T)  # (n_scenarios, n_accounts)
    ref = simulate.var_es(losses, levels)
    np.testing.assert_array_equal(fused["var"], ref.var)
    np.testing.assert_allclose(fused["es"], ref.es, rtol=1e-12)
