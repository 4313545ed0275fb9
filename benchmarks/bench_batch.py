"""Batch runs: the overnight job at scale (``marginlab run`` on a synthetic book).

Each measurement runs :func:`marginlab.models.app.runner.run_batch` in a fresh subprocess (so its
peak RSS is the run's own) on the embedded default configuration: a synthetic book
(``make_book``, ~5 positions per account, options included, 3 underlyings), 10,000 GBM
scenarios with implied-vol shocks over a 2-day MPOR, Monte Carlo ES and VaR at 99 % with
their error bars and Euler allocations, plus the SPAN-like scenario grid when available.

* ``batch.100k``, ``batch.1m``: wall time and peak RSS of the whole run (load, compute, write
  Parquet / CSV / report). Targets (issue "Batch runs"): 10^6 accounts under 10 minutes and
  under 4 GB on this 2-core machine. The ratio column is time per account relative to the
  100k run: a value near 1 is linear growth in accounts.
* ``dask.local (N workers)``: the 100k-account run on a local Dask cluster of N worker
  processes, against the single-process run (the scaling curve). The notes turn it into a
  paper estimate for a 10-million-account book on N workers.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass

from ._harness import Benchmark, Context, Row, Target, new_context, peak_rss

SUBJECT = "batch"
TITLE = "Batch runs"
MiB = 1024.0**2

_SNIPPET = """\
import json, time
from marginlab.models.app.config import config_from_dict
from marginlab.models.app.demo import default_config
from marginlab.models.app.runner import run_batch
cfg = default_config({out!r} + "/run", accounts={accounts}, n_scenarios={scenarios})
cfg["run"]["account_block"] = {block}
cfg["run"]["memory_budget_mb"] = 8000
cfg = config_from_dict(cfg, {out!r})
t = time.perf_counter()
res = run_batch(cfg, progress=False, workers={workers})
print(json.dumps({{"wall": time.perf_counter() - t, "methods": res.info["methods"],
                  "timings": res.info["timings_s"], "rows": res.info["rows"]}}))
"""


@dataclass(frozen=True)
class Sizes:
    scenarios: int
    scale_accounts: tuple[int, int]  # the small and the large run of bench_scale
    dask_accounts: int
    dask_workers: tuple[int, ...]


FULL = Sizes(scenarios=10_000, scale_accounts=(100_000, 1_000_000), dask_accounts=100_000,
             dask_workers=(1, 2))
QUICK = Sizes(scenarios=200, scale_accounts=(300, 1_200), dask_accounts=600, dask_workers=(2,))


def make_context(quick: bool) -> Context:
    return new_context(QUICK if quick else FULL)


def _run(ctx: Context, accounts: int, workers: int = 0) -> tuple[float, float, dict]:
    def run():
        with tempfile.TemporaryDirectory() as tmp:
            snippet = _SNIPPET.format(out=tmp, accounts=accounts, scenarios=ctx.sizes.scenarios,
                                      block=max(1, min(50_000, accounts // 4)), workers=workers)
            peak, out = peak_rss(snippet, timeout=3600.0)
        return peak, json.loads(out.strip().splitlines()[-1])

    peak, info = ctx.memo((accounts, workers), run)
    return info["wall"], peak, info


def bench_scale(ctx: Context) -> list[Row]:
    small, large = ctx.sizes.scale_accounts
    rows = []
    t_small, rss_small, info_small = _run(ctx, small)
    rows.append(Row(f"batch.{_label(small)} wall time", t_small, "s", t_small, "itself", 1.0,
                    None))
    rows.append(Row(f"batch.{_label(small)} peak RSS", rss_small / MiB, "MiB", 4096.0,
                    "4 GiB budget", rss_small / MiB / 4096.0, Target("<", 1.0)))
    t_large, rss_large, info_large = _run(ctx, large)
    per_small = t_small / small
    rows.append(Row(f"batch.{_label(large)} wall time", t_large, "s", 600.0,
                    "10 min target", t_large / 600.0, Target("<", 1.0)))
    rows.append(Row(f"batch.{_label(large)} peak RSS", rss_large / MiB, "MiB", 4096.0,
                    "4 GiB budget", rss_large / MiB / 4096.0, Target("<", 1.0)))
    rows.append(Row(f"batch.{_label(large)} time per account", t_large / large * 1e6,
                    "us/account", per_small * 1e6, f"{_label(small)} run",
                    (t_large / large) / per_small, None))
    ctx.notes.append(
        f"Methods: {', '.join(info_large['methods'])}; {info_large['rows']['accounts']:,} "
        f"account rows and {info_large['rows']['allocations']:,} allocation rows written. "
        f"Phases of the {_label(large)} run (s): {info_large['timings']}.")
    return rows


def bench_dask(ctx: Context) -> list[Row]:
    accounts = ctx.sizes.dask_accounts
    t1, _, _ = _run(ctx, accounts)
    rows = []
    for workers in ctx.sizes.dask_workers:
        tw, _, info = _run(ctx, accounts, workers)
        rows.append(Row(f"dask.local ({workers} worker{'s' if workers > 1 else ''})", tw, "s",
                        t1, "single process", t1 / tw, None))
    per_account = t1 / accounts  # single process on both cores: core-time = 2 x wall
    ctx.notes.append(
        f"Scaling on this 2-core machine: {_label(accounts)} accounts take {t1:.1f} s in one "
        f"process (numba uses both cores); on a local Dask cluster (cluster start-up "
        f"included): " + ", ".join(f"{r.value:.1f} s ({r.name.split('(')[1][:-1]})"
                                   for r in rows) + ". "
        f"Paper estimate for 10^7 accounts (from the single-process run; cluster start-up "
        f"and scheduling add a few seconds per run and ~10 ms per block): compute is "
        f"linear in accounts at about "
        f"{per_account * 2 * 1e6:.0f} core-microseconds per account here, so N workers of one "
        f"core each need about {per_account * 2 * 1e7 / 60:.0f} / N minutes plus the book "
        f"broadcast and the assembly of the outputs (about 2 minutes of single-machine I/O for "
        f"10^7 rows); e.g. 16 workers: ~{per_account * 2 * 1e7 / 60 / 16 + 2:.0f} minutes.")
    return rows


def _label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


BENCHMARKS = [
    Benchmark("scale", bench_scale, "marginlab run: 100k and 1M accounts x 10k scenarios"),
    Benchmark("dask", bench_dask, "100k accounts on a local Dask cluster of 1 and 2 workers"),
]
