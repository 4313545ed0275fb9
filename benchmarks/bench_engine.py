"""The live margin engine (``marginlab.models.engine.MarginEngine``): what-if latency, full
re-margin against the batch ``portfolio_risk``, and the per-tick linear re-mark.

* ``what_if``: one account of 50 holdings, Monte Carlo ES 99 % at 10,000 scenarios, a
  one-instrument trade, in process. The distribution (median, p90, p99, max) of single calls
  with the account's P&L vector cached (the steady state of a hot account) and cold (the cache
  emptied before each call, so the account's vector is rebuilt from its 50 rows). Baseline:
  ``incremental_margin`` on the same account and trade with the unit P&L precomputed (the
  batch answer to the same question), timed in the same process.
* ``remargin``: full re-margin of a 100,000-account book (``make_book``, ~5 positions, options
  included) at 10,000 scenarios (new scenarios at the market, revaluation, every account's
  VaR / ES / allocation, margin balance) against the batch ``portfolio_risk`` on the same
  book with the scenarios drawn in the timed call too; interleaved, best of 2.
* ``remark``: ``update_market`` with a linear re-mark of all 100,000 accounts (options
  re-priced, margin balance and first-order IM of every account, status and events).
* ``what_if_methods``: what-if latency (median, p99) of an engine on the grid method
  ``SpanLike`` (a 2,000-account book; the engine recomputes the account and a copy with the
  trade by ``method.compute`` on a two-account book) against the batch ``SpanLike.compute``
  on the one-account book with the trade; and of the Monte Carlo engine above for the
  50-holding account with two resting orders (buy and sell sides risked, as ``WithOrders``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._harness import Benchmark, Context, Row, Target, best_of_each, new_context

SUBJECT = "engine"
TITLE = "Live margin engine"

SEED = 20240601
HOLDINGS = 50


@dataclass(frozen=True)
class Sizes:
    accounts: int
    scenarios: int
    samples: int  # what-if calls timed (hot); cold: samples // 5
    repeat: int
    ticks: int
    http_accounts: int  # the service's synthetic book
    http_clients: int
    http_requests: int  # per client
    grid_accounts: int  # the SpanLike engine's book
    grid_samples: int


FULL = Sizes(accounts=100_000, scenarios=10_000, samples=5_000, repeat=2, ticks=20,
             http_accounts=10_000, http_clients=8, http_requests=250, grid_accounts=2_000,
             grid_samples=200)
QUICK = Sizes(accounts=2_000, scenarios=1_000, samples=200, repeat=1, ticks=3,
              http_accounts=200, http_clients=4, http_requests=10, grid_accounts=100,
              grid_samples=20)


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


def _setup(ctx: Context):
    def make():
        from marginlab.models import GBM, MarketState, default_market, make_book
        from marginlab.models.engine import MarginEngine
        from marginlab.models.margin import MonteCarloMargin

        s = ctx.sizes
        book = make_book(s.accounts, seed=SEED)
        snap = default_market()
        market = MarketState(spot=snap["spot"], vol=snap["vol"])
        und = tuple(book.underlyings)
        corr = np.array([[1.0, 0.8, 0.7], [0.8, 1.0, 0.75], [0.7, 0.75, 1.0]])[:len(und),
                                                                               :len(und)]
        mc = MonteCarloMargin(GBM(0.0, [snap["vol"][u] for u in und], corr=corr), und,
                              n_scenarios=s.scenarios, seed=SEED, vol_of_vol=1.5)
        eng = MarginEngine(book, market, mc)
        # The what-if account: 50 holdings (distinct instruments, mixed signs).
        inst = book.instruments
        ids = inst.loc[inst["type"] != "inverse_option", "instrument_id"].to_numpy(str)
        rng = np.random.default_rng(SEED)
        pick = rng.choice(ids, size=min(HOLDINGS, ids.size), replace=False)
        eng.apply(pd.DataFrame({"account_id": "whatif-50", "instrument_id": pick,
                                "quantity": rng.choice([-2.0, -1.0, 1.0, 3.0], pick.size)}))
        eng.deposit("whatif-50", "USDT", 1e6)
        trade = str(ids[~np.isin(ids, pick)][0])
        return book, market, mc, eng, trade, int(pick.size)

    return ctx.memo("setup", make)


def _pct(ts: np.ndarray) -> dict[str, float]:
    us = ts * 1e6
    return {"median": float(np.median(us)), "p90": float(np.percentile(us, 90)),
            "p99": float(np.percentile(us, 99)), "max": float(us.max()),
            "mean": float(us.mean())}


def bench_what_if(ctx: Context) -> list[Row]:
    import time

    from marginlab.models import incremental_margin

    book, market, mc, eng, trade, n_hold = _setup(ctx)
    s = ctx.sizes
    acc = "whatif-50"
    trades = [(trade, 1.0)]
    eng.what_if(acc, trades)  # compile / fill the cache
    hot = np.empty(s.samples)
    for k in range(s.samples):
        t0 = time.perf_counter()
        eng.what_if(acc, trades)
        hot[k] = time.perf_counter() - t0
    cold = np.empty(max(s.samples // 5, 10))
    for k in range(cold.size):
        eng._cache.clear()
        t0 = time.perf_counter()
        eng.what_if(acc, trades)
        cold[k] = time.perf_counter() - t0
    # Batch baseline: incremental_margin on the engine's book and unit P&L.
    from marginlab.models.portfolio import UnitPnL

    cur = eng.book
    unit = UnitPnL(eng.unit_pnl, tuple(cur.instruments["instrument_id"]) + tuple(cur.assets),
                   cur.n_instruments, eng.scenarios)
    frame = pd.DataFrame({"account_id": [acc], "instrument_id": [trade], "quantity": [1.0]})
    sub = cur.subset(np.flatnonzero(cur.account_ids == acc))
    base = np.empty(max(s.samples // 50, 5))
    for k in range(base.size):
        t0 = time.perf_counter()
        incremental_margin(sub, market, unit, frame)
        base[k] = time.perf_counter() - t0
    h, c, b = _pct(hot), _pct(cold), _pct(base)
    ctx.notes.append(
        f"what_if ({n_hold} holdings, {s.scenarios:,} scenarios, MC ES 99 %, 1 trade), "
        f"{hot.size:,} hot calls (us): median {h['median']:.1f}, p90 {h['p90']:.1f}, "
        f"p99 {h['p99']:.1f}, max {h['max']:.0f}, mean {h['mean']:.1f}; {cold.size} cold calls "
        f"(cache emptied): median {c['median']:.1f}, p99 {c['p99']:.1f}; batch "
        f"incremental_margin on the one-account book with U precomputed: median "
        f"{b['median']:.0f} us.")
    return [
        Row("what_if.median (hot)", h["median"], "us", b["median"],
            "incremental_margin, U given", h["median"] / b["median"], Target("<", 100.0, "value"),
            note=f"{n_hold} holdings, {s.scenarios:,} scenarios"),
        Row("what_if.p99 (hot)", h["p99"], "us", b["median"], "incremental_margin, U given",
            h["p99"] / b["median"], Target("<", 1000.0, "value")),
        Row("what_if.median (cold)", c["median"], "us", b["median"],
            "incremental_margin, U given", c["median"] / b["median"]),
    ]  # fmt: skip


def bench_remargin(ctx: Context) -> list[Row]:
    from marginlab.models import portfolio_risk

    book, market, mc, eng, _, _ = _setup(ctx)
    s = ctx.sizes
    # The engine's book has the what-if account added; the batch gets the same book.
    cur = eng.book
    best = best_of_each({
        "engine": eng.remargin,
        "batch": lambda: portfolio_risk(cur, market, mc.scenarios(market), levels=(0.99,)),
    }, repeat=s.repeat)  # fmt: skip
    n = cur.n_accounts
    return [Row(f"remargin.full ({n:,} accounts)", best["engine"], "s", best["batch"],
                "portfolio_risk (scenarios drawn in the call)", best["engine"] / best["batch"],
                Target("<", 1.0), note=f"{s.scenarios:,} scenarios")]


def bench_remark(ctx: Context) -> list[Row]:
    import time

    book, market, mc, eng, _, _ = _setup(ctx)
    s = ctx.sizes
    rng = np.random.default_rng(SEED)
    ts = []
    base = dict(market.spot)
    for _ in range(s.ticks):
        px = {u: base[u] * float(np.exp(0.002 * rng.standard_normal())) for u in base}
        t0 = time.perf_counter()
        upd = eng.update_market(px, full=False)
        ts.append(time.perf_counter() - t0)
        assert not upd.full
    ts = np.array(ts) * 1e3
    # The raw kernel alone (no market object, marks, status or events).
    from marginlab.simulate._engine_kernels import remark

    mb = np.empty(len(eng.account_ids))
    m = np.empty_like(mb)
    k = best_of_each({"kernel": lambda: remark(eng._indptr, eng._rows, eng._a, eng._b, eng._c,
                                                eng._alloc, eng._x_ref, eng._m_ref,
                                                eng._value, eng._spot, eng._scale, mb, m)},
                     repeat=5)["kernel"] * 1e3
    n = len(eng.account_ids)
    ctx.notes.append(f"update_market (linear re-mark of {n:,} accounts, {eng._rows.size:,} "
                     f"holdings) over {s.ticks} ticks (ms): median {np.median(ts):.2f}, max "
                     f"{ts.max():.2f}; the re-mark kernel alone: {k:.2f} ms.")
    return [Row(f"remark.tick ({n:,} accounts)", float(np.median(ts)), "ms", 50.0,
                "50 ms budget", float(np.median(ts)) / 50.0, Target("<", 1.0),
                note="median of ticks")]


def bench_what_if_methods(ctx: Context) -> list[Row]:
    import time

    from marginlab.models import Book, make_book
    from marginlab.models.engine import MarginEngine
    from marginlab.models.margin import SpanLike

    _, market, _, eng, trade, n_hold = _setup(ctx)
    s = ctx.sizes
    # Grid: SpanLike engine, one account, one-instrument trade.
    book = make_book(s.grid_accounts, seed=SEED)
    span = SpanLike(0.1, 0.3, intra_spread_charge=0.01, short_option_minimum=0.02)
    geng = MarginEngine(book, market, span)
    acc = str(book.account_ids[0])
    ids = book.instruments["instrument_id"].to_numpy(str)
    gtr = [(str(ids[0]), 1.0)]
    geng.what_if(acc, gtr)
    g = np.empty(s.grid_samples)
    for k in range(g.size):
        t0 = time.perf_counter()
        geng.what_if(acc, gtr)
        g[k] = time.perf_counter() - t0
    sub = book.subset(np.array([0]))
    row = pd.DataFrame({"account_id": [acc], "instrument_id": [gtr[0][0]], "quantity": [1.0],
                        "entry_price": [float(geng._mark_price(0))]})
    one = Book(sub.instruments, pd.concat([sub.positions, row], ignore_index=True),
               sub.collateral)
    b = np.empty(max(s.grid_samples // 4, 5))
    for k in range(b.size):
        t0 = time.perf_counter()
        span.compute(one, market)
        b[k] = time.perf_counter() - t0
    # Monte Carlo engine, the 50-holding account with a buy and a sell order resting.
    held = str(eng.allocation("whatif-50")["holding"].iloc[0])
    o1, _ = eng.place_order("whatif-50", held, "buy", 2.0)
    o2, _ = eng.place_order("whatif-50", held, "sell", 3.0)
    trades = [(trade, 1.0)]
    eng.what_if("whatif-50", trades)
    o = np.empty(s.samples)
    for k in range(o.size):
        t0 = time.perf_counter()
        eng.what_if("whatif-50", trades)
        o[k] = time.perf_counter() - t0
    eng.cancel_order(o1)
    eng.cancel_order(o2)
    gp, bp, op = _pct(g), _pct(b), _pct(o)
    ctx.notes.append(
        f"what_if on SpanLike ({s.grid_accounts:,}-account book, {g.size} calls, ms): median "
        f"{gp['median'] / 1e3:.2f}, p99 {gp['p99'] / 1e3:.2f}; batch SpanLike.compute on the "
        f"one-account book with the trade: median {bp['median'] / 1e3:.2f} ms. what_if with 2 "
        f"resting orders ({n_hold} holdings, {s.scenarios:,} scenarios, MC ES 99 %, "
        f"{o.size:,} calls, us): median {op['median']:.1f}, p99 {op['p99']:.1f}.")
    return [
        Row("what_if.median (SpanLike grid)", gp["median"] / 1e3, "ms", bp["median"] / 1e3,
            "SpanLike.compute, 1 account", gp["median"] / bp["median"],
            note=f"{s.grid_accounts:,}-account book"),
        Row("what_if.p99 (SpanLike grid)", gp["p99"] / 1e3, "ms", bp["median"] / 1e3,
            "SpanLike.compute, 1 account", gp["p99"] / bp["median"]),
        Row("what_if.median (MC, 2 orders)", op["median"], "us", 100.0, "100 us budget",
            op["median"] / 100.0, note=f"{n_hold} holdings, {s.scenarios:,} scenarios"),
    ]  # fmt: skip


_SERVE = ("import argparse, sys\n"
          "from marginlab.models.app.service import add_serve_parser\n"
          "p = argparse.ArgumentParser(prog='marginlab')\n"
          "add_serve_parser(p.add_subparsers())\n"
          "a = p.parse_args(sys.argv[1:])\n"
          "sys.exit(a.func(a))\n")


def bench_service(ctx: Context) -> list[Row]:
    """Loopback load test: ``marginlab serve`` in a subprocess, ``http_clients`` threads each
    sending ``http_requests`` what-if requests (httpx, keep-alive), bounded in count and by a
    10-minute deadline; any error fails the benchmark."""
    import os
    import socket
    import subprocess
    import sys
    import threading
    import time

    import httpx

    s = ctx.sizes
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "bench-token-0123456789"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "serve", "--accounts", str(s.http_accounts),
         "--scenarios", str(s.scenarios), "--seed", str(SEED), "--port", str(port)],
        env=dict(os.environ, MARGINLAB_TOKEN=token), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600.0
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 600 s")
            time.sleep(0.25)
        from marginlab.models import make_book

        book = make_book(s.http_accounts, seed=SEED)
        inst = book.instruments
        ids = inst.loc[inst["type"] != "inverse_option", "instrument_id"].to_numpy(str)
        accs = book.account_ids.astype(str)
        lat: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(k: int) -> None:
            rng = np.random.default_rng(SEED + k)
            mine = []
            with httpx.Client(base_url=url, timeout=60.0) as c:
                for _ in range(s.http_requests):
                    body = {"account_id": str(rng.choice(accs)), "trades": [
                        {"instrument_id": str(rng.choice(ids)), "quantity": 1.0}]}
                    t0 = time.perf_counter()
                    r = c.post("/what-if", json=body)
                    mine.append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        with lock:
                            errors.append(f"{r.status_code} {r.text[:200]}")
            with lock:
                lat.extend(mine)

        with httpx.Client(base_url=url, timeout=60.0) as c:  # warm-up: compile, caches
            for a in accs[:20]:
                c.post("/what-if", json={"account_id": str(a), "trades": [
                    {"instrument_id": str(ids[0]), "quantity": 1.0}]})
        threads = [threading.Thread(target=client, args=(k,)) for k in range(s.http_clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600.0)
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    n = len(lat)
    ms = np.array(lat) * 1e3
    rps = n / wall
    p50, p99 = float(np.median(ms)), float(np.percentile(ms, 99))
    ctx.notes.append(
        f"service: {s.http_clients} concurrent clients x {s.http_requests} what-if requests "
        f"(random account of a {s.http_accounts:,}-account book, one random trade; "
        f"{s.scenarios:,} scenarios) over loopback: {n:,} requests in {wall:.1f} s, "
        f"{rps:,.0f} requests/s, latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, max "
        f"{ms.max():.1f} ms, 0 errors. Client threads share the 2 cores with the server.")
    return [
        Row("service.what_if throughput", rps, "req/s", float(s.http_clients),
            "clients", rps / s.http_clients, note=f"{n:,} requests, 0 errors"),
        Row("service.what_if p50", p50, "ms", 1.0, "1 ms", p50),
        Row("service.what_if p99", p99, "ms", 1.0, "1 ms", p99),
    ]


BENCHMARKS = [
    Benchmark("what_if", bench_what_if, "what-if latency distribution, 50 holdings, 10k scen"),
    Benchmark("remargin", bench_remargin, "full re-margin vs batch portfolio_risk, 100k accts"),
    Benchmark("remark", bench_remark, "per-tick linear re-mark of every account"),
    Benchmark("what_if_methods", bench_what_if_methods,
              "what-if latency: SpanLike grid engine; MC engine with resting orders"),
    Benchmark("service", bench_service, "HTTP what-if under a bounded loopback load test"),
]
