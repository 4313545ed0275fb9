"""Options along the cascade paths (general engine, :mod:`marginlab.simulate._cascade_options`).

Oracles, per test (each docstring names its own): a brute-force reference written here in
plain numpy and scipy (Black-Scholes with ``scipy.special.ndtr``, full revaluation and margin
at every step, one account walked path by path), the payoff at expiry, the bookkeeping
identity of :mod:`marginlab.simulate.cascade` on every path, and the thread-count invariance
law.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy.special import ndtr

from marginlab.simulate import cascade as C

NO_IMPACT = C.ImpactParams(np.inf, 0.0, 0.0, 1.0)
MMR = 0.1
TABLES = C.MarginTables(np.array([[MMR]]), np.array([[0.0]]), np.array([1]))
DT = 1.0 / (365.0 * 24.0)  # hourly steps


def _gbm(n_paths: int, n_steps: int, sigma: float, seed: int, s0: float = 100.0,
         n_a: int = 1) -> np.ndarray:
    """GBM paths (n_paths, n_steps + 1, n_a) at hourly steps, zero drift."""
    z = np.random.default_rng(seed).standard_normal((n_paths, n_steps, n_a))
    logs = np.cumsum(sigma * np.sqrt(DT) * z - 0.5 * sigma**2 * DT, axis=1)
    return np.concatenate([np.full((n_paths, 1, n_a), s0), s0 * np.exp(logs)], axis=1)


def _one_account(usd: float = 0.0, coin: float = 0.0, w_coin: float = 1.0) -> C.CrossAccounts:
    """One account without linear positions: USD and/or coin (column 0) collateral."""
    return C.CrossAccounts(
        start=np.array([0, 0]), pos_asset=np.zeros(0, np.int64),
        pos_inverse=np.zeros(0, np.int64), pos_q=np.zeros(0), pos_entry=np.zeros(0),
        pos_face=np.zeros(0), pos_table=np.zeros(0, np.int64), usd=np.array([usd]),
        w_usd=np.ones(1), bal=np.array([[coin]]), w_bal=np.array([[w_coin]]))


def _options(q, strike, expiry, call, coin, vol, account=None) -> C.OptionPositions:
    n = len(q)
    return C.OptionPositions(
        account=np.zeros(n, np.int64) if account is None else np.asarray(account),
        asset=np.zeros(n, np.int64), q=np.asarray(q, float), strike=np.asarray(strike, float),
        expiry=np.asarray(expiry, float), call=np.asarray(call), coin=np.asarray(coin),
        vol=np.asarray(vol, float), table=np.zeros(n, np.int64))


def _bs(s, k, tau, sigma, call):
    """Black-Scholes value and delta (rate 0); tau <= 0: the payoff and its slope."""
    s = np.asarray(s, float)
    if tau <= 0.0:
        diff = (s - k) if call else (k - s)
        slope = np.where(diff > 0.0, 1.0, 0.0) * (1.0 if call else -1.0)
        return np.maximum(diff, 0.0), slope
    v = sigma * np.sqrt(tau)
    d1 = np.log(s / k) / v + 0.5 * v
    d2 = d1 - v
    if call:
        return s * ndtr(d1) - k * ndtr(d2), ndtr(d1)
    return k * ndtr(-d2) - s * ndtr(-d1), ndtr(d1) - 1.0


def _reference(paths, opts: C.OptionPositions, usd, coin, w_coin, fee, min_delta, every=1):
    """Brute force for one account of options, no impact, full close-out: per path the step
    of liquidation (-1 for none) and the final equity (USD).

    Every step: every option revalued at the step's price and time left (settled at its
    payoff once expired), margin balance = USD + haircut coin x price + option values,
    maintenance margin = sum over short options of MMR x |q| x price x max(|delta|,
    min_delta) (recomputed at steps that are multiples of ``every`` and when an option
    expires, held in between); liquidated at the first step with margin balance <
    maintenance margin: the options are sold at value, the fee (rate x |q| value) paid in
    USD, and a coin-collateral account's USD debt paid in coin at that price.
    """
    n_paths, n_t, _ = paths.shape
    n_steps = n_t - 1
    q = np.asarray(opts.q, float)
    liq_step = np.full(n_paths, -1)
    final = np.empty(n_paths)
    for p in range(n_paths):
        u, c = float(usd), float(coin)
        open_ = np.ones(q.size, bool)
        done = False
        mm_held = sum(MMR * -q[k] * paths[p, 0, 0] * max(abs(float(_bs(
            paths[p, 0, 0], opts.strike[k], opts.expiry[k], opts.vol[k],
            opts.call[k] == 1)[1])), min_delta) for k in range(q.size) if q[k] < 0.0)
        for t in range(1, n_steps + 1):
            s = paths[p, t, 0]
            val, mm = 0.0, 0.0
            expired = False
            vals = np.zeros(q.size)
            for k in range(q.size):
                if not open_[k]:
                    continue
                tau = opts.expiry[k] - t * DT
                tau = 0.0 if tau <= 1e-9 * DT else tau
                v, d = _bs(s, opts.strike[k], tau, opts.vol[k], opts.call[k] == 1)
                v, d = float(v), float(d)
                if tau == 0.0:  # settled at the payoff
                    if opts.coin[k]:
                        c += q[k] * v / s
                    else:
                        u += q[k] * v
                    open_[k] = False
                    expired = True
                    continue
                vals[k] = v
                val += q[k] * v
                if q[k] < 0.0:
                    mm += MMR * -q[k] * s * max(abs(d), min_delta)
            if t % every == 0 or expired:
                mm_held = mm
            mm = mm_held
            mb = u + (c * w_coin if c > 0 else c) * s + val
            if open_.any() and mb < mm:
                liq_step[p] = t
                gross = 0.0
                for k in np.flatnonzero(open_):
                    cash = q[k] * vals[k]
                    gross += abs(cash)
                    if opts.coin[k]:
                        c += cash / s
                    else:
                        u += cash
                w = u + c * s
                if w > 0.0:
                    u -= min(fee * gross, w)
                if c < 0.0:
                    u, c = u + c * s, 0.0
                if u < 0.0 and c > 0.0:
                    need = -u / s
                    u, c = (0.0, c - need) if need <= c else (u + c * s, 0.0)
                if u + c * s < 0.0:
                    u, c = 0.0, 0.0  # bankrupt: the fund takes the deficit
                final[p] = u + c * paths[p, -1, 0]
                done = True
                break
        if not done:
            s = paths[p, -1, 0]
            val = 0.0
            for k in np.flatnonzero(open_):
                tau = max(opts.expiry[k] - n_steps * DT, 0.0)
                val += q[k] * float(_bs(s, opts.strike[k], tau, opts.vol[k],
                                        opts.call[k] == 1)[0])
            final[p] = u + c * s + val
    return liq_step, final


def _residual(out: C.CascadeArrays, fund0: float) -> np.ndarray:
    f = {n: out.path[:, i] for i, n in enumerate(C.PATH_FIELDS)}
    fund_change = (f["fund_final"] - fund0 if np.isfinite(fund0)
                   else f["fees"] - f["fund_paid"])
    return (f["wealth_change"] + fund_change - f["market_pnl"]
            - f["exchange_paid"] - f["deposits"])


def _track(out: C.CascadeArrays, name: str) -> np.ndarray:
    return out.accounts[:, 0, C.TRACK_FIELDS.index(name)]


CASES = {
    # long call + short put, USD collateral (a synthetic long forward, liquidated on falls)
    "usd_risk_reversal": dict(q=[1.0, -1.0], strike=[105.0, 95.0], call=[1, 0], coin=[0, 0],
                              usd=9.0, coin_bal=0.0, w_coin=1.0),
    # short coin-settled put on coin collateral with a haircut (an inverse option account)
    "coin_short_put": dict(q=[-2.0], strike=[100.0], call=[0], coin=[1], usd=0.0,
                           coin_bal=0.28, w_coin=0.9),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_liquidation_probability_matches_brute_force(case):
    """Oracle: the brute-force reference :func:`_reference` (plain numpy/scipy, full
    revaluation and margin at every step). With ``remargin_every = 1`` the kernel applies the
    same rules, so the step of liquidation agrees path by path and the final equity to
    rounding. With the option margin recomputed every 6 steps (held in between) the kernel
    agrees path by path with the reference under the same interval; the stale margin of
    that interval changes the liquidation probability by more than its standard error in
    the coin case (a falling price raises a short put's delta), which is why the default is
    every step."""
    c = CASES[case]
    n_paths, n_steps, sigma = 1500, 48, 0.9
    paths = _gbm(n_paths, n_steps, sigma, seed=11)
    opts = _options(c["q"], c["strike"], [30 * DT] * len(c["q"]), c["call"], c["coin"],
                    [sigma] * len(c["q"]))
    acc = _one_account(c["usd"], c["coin_bal"], c["w_coin"])
    rules = C.CascadeRules(fee_rate=0.01, fund=np.inf)
    ref_step, ref_final = _reference(paths, opts, c["usd"], c["coin_bal"], c["w_coin"], 0.01,
                                     0.1)
    p_ref = np.mean(ref_step >= 0)
    assert 0.05 < p_ref < 0.6  # the case exercises liquidation and survival
    out = C.simulate_cascade(paths, acc, TABLES, NO_IMPACT, rules, track=[0], options=opts,
                             option_rules=C.OptionRules(dt=DT, min_delta=0.1))
    np.testing.assert_array_equal(_track(out, "liquidation_step"), ref_step)
    np.testing.assert_allclose(_track(out, "final_equity"), ref_final, rtol=1e-10, atol=1e-10)
    assert np.all(np.abs(_residual(out, np.inf)) < 1e-10)

    out6 = C.simulate_cascade(paths, acc, TABLES, NO_IMPACT, rules, track=[0], options=opts,
                              option_rules=C.OptionRules(dt=DT, min_delta=0.1,
                                                         remargin_every=6))
    ref6_step, ref6_final = _reference(paths, opts, c["usd"], c["coin_bal"], c["w_coin"], 0.01,
                                       0.1, every=6)
    np.testing.assert_array_equal(_track(out6, "liquidation_step"), ref6_step)
    np.testing.assert_allclose(_track(out6, "final_equity"), ref6_final, rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("coin", [0, 1])
def test_expiry_mid_path_settles_at_intrinsic(coin):
    """Oracle: the payoff. A long call and a short put expiring at step 10 of 20, on an
    account with collateral large enough never to be liquidated, are settled at
    ``q max(±(S_10 - K), 0)`` at the price of step 10: in USD (final equity = USD + the
    settlement) or in coin (final equity = USD + settlement / S_10 x S_20 when it is a
    gain; a coin debt of a closed account is bought back with USD at S_10, so a loss stays
    USD); the bookkeeping identity holds on every path (no fee, no fund)."""
    paths = _gbm(300, 20, 0.8, seed=5)
    opts = _options([1.0, -1.0], [100.0, 98.0], [10 * DT, 10 * DT], [1, 0], [coin, coin],
                    [0.8, 0.8])
    out = C.simulate_cascade(paths, _one_account(1e6), TABLES, NO_IMPACT, C.CascadeRules(),
                             track=[0], options=opts, option_rules=C.OptionRules(dt=DT))
    s10, s20 = paths[:, 10, 0], paths[:, 20, 0]
    settle = np.maximum(s10 - 100.0, 0.0) - np.maximum(98.0 - s10, 0.0)
    want = 1e6 + (np.where(settle > 0.0, settle / s10 * s20, settle) if coin else settle)
    np.testing.assert_allclose(_track(out, "final_equity"), want, rtol=1e-13)
    assert np.all(_track(out, "liquidation_step") == -1)
    assert np.all(np.abs(_residual(out, 0.0)) < 1e-8)


def _mixed_book(n_acc: int, seed: int):
    """Accounts with linear and inverse perps (two assets) and options, USD and coin
    collateral; every third account options only."""
    rng = np.random.default_rng(seed)
    start, pa, pinv, pq, pe, pf, pt = [0], [], [], [], [], [], []
    oa, oasset, oq, ok, ot, oc, ocoin = [], [], [], [], [], [], []
    for i in range(n_acc):
        if i % 3:
            for a in range(2):
                inv = int(rng.integers(2))
                pa.append(a)
                pinv.append(inv)
                pq.append(float(rng.choice([-1, 1]) * rng.uniform(0.5, 2.0)))
                pe.append(100.0 * rng.uniform(0.97, 1.03))
                pf.append(100.0)
                pt.append(0)
        start.append(len(pq))
        for _ in range(int(rng.integers(1, 3))):
            oa.append(i)
            oasset.append(int(rng.integers(2)))
            oq.append(float(rng.choice([-1, 1]) * rng.uniform(0.5, 3.0)))
            ok.append(100.0 * rng.uniform(0.9, 1.1))
            ot.append(DT * float(rng.integers(10, 60)))
            oc.append(int(rng.integers(2)))
            ocoin.append(int(rng.integers(2)))
    acc = C.CrossAccounts(
        np.array(start), np.array(pa), np.array(pinv), np.array(pq), np.array(pe),
        np.array(pf), np.array(pt), rng.uniform(30.0, 60.0, n_acc), np.full(n_acc, 1.0),
        rng.uniform(0.0, 0.2, (n_acc, 2)), np.full((n_acc, 2), 0.9))
    opts = C.OptionPositions(np.array(oa), np.array(oasset), np.array(oq), np.array(ok),
                             np.array(ot), np.array(oc), np.array(ocoin),
                             np.full(len(oa), 0.8), np.zeros(len(oa), np.int64))
    return acc, opts


@pytest.mark.parametrize("partial", [False, True])
def test_conservation_and_threads(partial):
    """Oracles: the bookkeeping identity of :mod:`marginlab.simulate.cascade` (sum of equity
    changes + fund change = market P&L + exchange payments + deposits, ADL paid = received)
    on every path of a book mixing linear, inverse and option positions with impact, ADL and
    vol paths; and the law that results do not depend on the number of threads (bit for
    bit, 1 vs 2 threads, over several path blocks)."""
    acc, opts = _mixed_book(30, seed=3)
    n_paths, n_steps = 2 * C.PATH_BLOCK + 100, 60
    paths = _gbm(n_paths, n_steps, 1.2, seed=4, n_a=2)
    vol = np.exp(np.cumsum(np.random.default_rng(8).normal(0, 0.05, (n_paths, n_steps + 1,
                                                                      2)), axis=1))
    rules = C.CascadeRules(fee_rate=0.005, fund=20.0, partial=partial, liq_fraction=0.8)
    impact = C.ImpactParams(2000.0, 0.5, 0.2, 0.9)
    orules = C.OptionRules(dt=DT, remargin_every=3, vol_paths=vol)
    outs = []
    before = numba.get_num_threads()
    try:
        for n_threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n_threads)
            outs.append(C.simulate_cascade(paths, acc, TABLES, impact, rules, options=opts,
                                           option_rules=orules, track=np.arange(30)))
    finally:
        numba.set_num_threads(before)
    a, b = outs
    for name in a._fields:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    f = {n: a.path[:, i] for i, n in enumerate(C.PATH_FIELDS)}
    assert f["liquidations"].mean() > 1.0 and f["adl_events"].sum() > 0
    if partial:
        assert f["partial_liquidations"].sum() > 0
    scale = 1.0 + np.abs(f["market_pnl"]).max()
    assert np.all(np.abs(_residual(a, 20.0)) <= 1e-11 * scale)
    np.testing.assert_allclose(f["adl_paid"], f["adl_received"], rtol=1e-12, atol=1e-12)
    # per account: the final equities sum to the total equity change's end point
    w_final = a.accounts[:, :, C.TRACK_FIELDS.index("final_equity")].sum(axis=1)
    assert np.all(np.isfinite(w_final))


@pytest.mark.parametrize("partial", [False, True])
def test_screen_changes_no_result(partial):
    """Oracle: full revaluation of every account at every step (``screen=False``). Revaluing
    only the accounts whose bounds put them near their threshold gives the same events per
    account and path, the same final equities and bad debts, and the same per-path outputs
    up to the summation order of the market P&L, on a book with linear, inverse and option
    positions, impact and ADL."""
    acc, opts = _mixed_book(30, seed=3)
    paths = _gbm(600, 60, 1.2, seed=6, n_a=2)
    rules = C.CascadeRules(fee_rate=0.005, fund=20.0, partial=partial, liq_fraction=0.8)
    impact = C.ImpactParams(2000.0, 0.5, 0.2, 0.9)
    out = {sc: C.simulate_cascade(paths, acc, TABLES, impact, rules, options=opts,
                                  option_rules=C.OptionRules(dt=DT, screen=sc),
                                  track=np.arange(30)) for sc in (True, False)}
    a, b = out[True], out[False]
    np.testing.assert_array_equal(a.counts, b.counts)
    steps = [C.TRACK_FIELDS.index(n) for n in ("call_step", "liquidation_step",
                                               "bankruptcy_step", "adl_step")]
    np.testing.assert_array_equal(a.accounts[:, :, steps], b.accounts[:, :, steps])
    np.testing.assert_allclose(a.accounts, b.accounts, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(a.path, b.path, rtol=1e-10, atol=1e-8)
    assert a.path[:, C.P_LIQUIDATIONS].sum() > 0 and a.path[:, C.P_ADL_EVENTS].sum() > 0
    scale = 1.0 + np.abs(a.path[:, C.P_MARKET_PNL]).max()
    assert np.all(np.abs(_residual(a, 20.0)) <= 1e-11 * scale)


def test_option_inputs_are_validated():
    """Oracle: the documented input rules (errors name the argument)."""
    paths = _gbm(4, 3, 0.5, seed=1)
    opts = _options([1.0], [100.0], [DT], [1], [0], [0.5])
    single = C.SingleAccounts(*(np.array([v]) for v in
                                (0, 0, 1.0, 100.0, 1.0, 0, 10.0, 1.0, 0.0, 1.0)))
    with pytest.raises(ValueError, match="options need CrossAccounts"):
        C.simulate_cascade(paths, single, TABLES, NO_IMPACT, C.CascadeRules(), options=opts,
                           option_rules=C.OptionRules(dt=DT))
    acc = _one_account(100.0)
    with pytest.raises(TypeError, match="option_rules must be OptionRules"):
        C.simulate_cascade(paths, acc, TABLES, NO_IMPACT, C.CascadeRules(), options=opts)
    with pytest.raises(ValueError, match="options.expiry"):
        C.simulate_cascade(paths, acc, TABLES, NO_IMPACT, C.CascadeRules(),
                           options=opts._replace(expiry=np.array([0.0])),
                           option_rules=C.OptionRules(dt=DT))
    with pytest.raises(ValueError, match="remargin_every"):
        C.simulate_cascade(paths, acc, TABLES, NO_IMPACT, C.CascadeRules(), options=opts,
                           option_rules=C.OptionRules(dt=DT, remargin_every=0))
    with pytest.raises(ValueError, match="vol_paths must have shape"):
        C.simulate_cascade(paths, acc, TABLES, NO_IMPACT, C.CascadeRules(), options=opts,
                           option_rules=C.OptionRules(dt=DT, vol_paths=np.ones((4, 3, 1))))
