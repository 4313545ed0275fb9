"""The overnight batch run: every account's margin under the configured methodologies.

:func:`run_batch` works in account blocks. Each block is computed from (config, block index)
alone: the scenarios are regenerated from the seed wherever the block runs, never shipped;
every account's numbers depend only on its own holdings and the scenarios, so the results do
not depend on the block size, the order of the blocks, the number of threads or where the
blocks run. After each block a checkpoint is written (to a temporary name, then renamed), so
``resume=True`` after a crash (SIGKILL included) recomputes only the missing blocks and the
final files are bit-identical to an uninterrupted run.

Before the output folder is touched, everything is checked (:func:`prepare_run`): the
configuration, the book, every method's price and bracket files, the memory estimate from the
sizes, the output path rules and the scheduler; a refused run leaves a previous run intact.
One run at a time holds the folder's lock. Checkpoints live in
``OUTPUT/.checkpoints/<run id>/``, where the run id digests the configuration, the bytes of
every input file and the package, and each block carries SHA-256 checksums (a truncated or
edited block is recomputed on ``--resume``). See :mod:`marginlab.models.app._runfiles`.

Outputs in the output folder (each written to a unique temporary name, flushed to disk and
renamed when complete; ``manifest.json`` last, and removed first when a new run starts, so the
folder never looks complete when it is not):

``accounts.parquet``
    One row per account and method (rows grouped by method, accounts in book order):
    ``account_id``, ``method``, ``im``, ``mm``, ``margin_balance``, ``excess``,
    ``margin_ratio``, ``driver``, ``gross_notional`` and, for
    risk-based methods, ``var``, ``var_lo``, ``var_hi``, ``es``, ``es_se``, ``es_lo``, ``es_hi``.
``allocations.parquet``
    One row per holding and method: ``account_id``, ``method``, ``holding``,
    ``im_contribution``.
``summary.csv``
    Per method: accounts, total IM and MM, IM / gross notional, accounts in deficit.
``manifest.json``
    Config digest, seed, package versions, timings, row counts.
``report.md`` (+ PNG plots)
    A short report.

Dask: ``workers=N`` starts a ``LocalCluster`` of N single-threaded worker processes on
loopback; ``scheduler="tcp://host:port"`` uses an existing ``dask.distributed`` cluster (the
book is scattered to the workers, blocks are retried on worker failure).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from ..book import Book
from ..scenarios import MarketState, ScenarioSet
from ._runfiles import (
    OutputLock,
    RunError,
    block_paths,
    drop_block,
    identity_changes,
    run_identity,
    save_block,
    verified_block,
    write_atomic,
)
from .build import (
    _profile_rules,
    _with_scenarios,
    base_method,
    build_market,
    build_methods,
    build_model,
    load_book,
    precision_scenarios,
    profile_paths,
)
from .config import RunConfig, check_scheduler_address

__all__ = ["run_batch", "RunOutputs", "RunError", "build_market", "build_model",
           "build_methods", "load_book", "prepare_run", "estimate_memory_mb"]

log = logging.getLogger("marginlab.run")

ACCOUNT_COLUMNS = ["account_id", "method", "im", "mm", "margin_balance", "excess",
                   "margin_ratio", "driver", "gross_notional", "var", "var_lo", "var_hi", "es",
                   "es_se", "es_lo", "es_hi", "liquidity_addon", "im_buys", "im_sells"]
ALLOC_COLUMNS = ["account_id", "method", "holding", "im_contribution"]


@dataclass(frozen=True)
class RunOutputs:
    """Paths of a finished run's outputs and its manifest content."""

    folder: Path
    accounts: Path
    allocations: Path
    summary: Path
    manifest: Path
    report: Path | None
    info: dict[str, Any]
    liquidation: Path | None = None


# ----------------------------------------------------------------------------- one block
_STATE: dict[str, tuple[MarketState, list[Any], list[ScenarioSet | None],
                        np.ndarray | None]] = {}


def _scenario_key(method: Any) -> tuple:
    return tuple(getattr(method, k, None) for k in ("zero_drift", "move_cap", "sampling",
                                                    "randomizations", "n_scenarios"))


def _run_state(cfg: RunConfig, run_id: str
               ) -> tuple[MarketState, list[Any], list[ScenarioSet | None], np.ndarray | None]:
    """Market, methods, each Monte Carlo method's scenarios and the liquidation-profile
    paths, built once per process and run identity (each block and each Dask worker reuses
    them); methods with the same scenario settings share one scenario set."""
    if run_id not in _STATE:
        market = build_market(cfg)
        methods = build_methods(cfg)
        by_key: dict[tuple, ScenarioSet] = {}
        scen: list[ScenarioSet | None] = []
        for m in map(base_method, methods):
            if getattr(m, "uses_shared_scenarios", False) and hasattr(m, "scenarios"):
                k = _scenario_key(m)
                if k not in by_key:
                    by_key[k] = m.scenarios(market)
                scen.append(by_key[k])
            else:
                scen.append(None)
        _STATE.clear()
        _STATE[run_id] = (market, methods, scen, profile_paths(cfg))
    return _STATE[run_id]


def _table(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def compute_block(cfg: RunConfig, book: Book, block: int, run_id: str = ""
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Account rows, allocation rows and (with ``[liquidation_profile]``) liquidation-profile
    rows of block ``block`` (accounts ``[b*B, (b+1)*B)``)."""
    size = cfg.run.account_block
    lo = block * size
    hi = min(lo + size, book.n_accounts)
    sub = book.subset(slice(lo, hi))
    market, methods, scens, paths = _run_state(cfg, run_id or cfg.digest())
    liq = None
    if paths is not None:
        from ..liquidation_profile import liquidation_profile

        lp = cfg.liquidation_profile
        sc = cfg.scenarios
        liq = liquidation_profile(
            sub, market, rules=_profile_rules(cfg), impact=None,
            horizon_days=sc.horizon_days if lp.horizon_days is None else lp.horizon_days,
            paths=paths, path_assets=[u.upper() for u in sc.underlyings],
            quantiles=tuple(lp.quantiles), level=lp.level, below_threshold="report")
    rows, allocs = [], []
    for method, scen in zip(methods, scens, strict=True):
        res = method.compute(sub, market, scenarios=scen)
        f = res.to_frame()
        for c in ACCOUNT_COLUMNS:
            if c not in f.columns:
                f[c] = np.nan
        rows.append(f[ACCOUNT_COLUMNS])
        a = res.allocation.copy()
        a["method"] = res.method
        for c in ALLOC_COLUMNS:
            if c not in a.columns:
                a[c] = pd.Series(dtype=object if c != "im_contribution" else float)
        allocs.append(a[ALLOC_COLUMNS])
    acc = pd.concat(rows, ignore_index=True)
    for c in ("driver", "account_id", "method"):
        acc[c] = acc[c].astype(str)
    for c in ACCOUNT_COLUMNS:
        if c not in ("driver", "account_id", "method"):
            acc[c] = acc[c].astype(float)
    al = pd.concat(allocs, ignore_index=True)
    for c in ("account_id", "holding", "method"):
        al[c] = al[c].astype(str)
    al["im_contribution"] = al["im_contribution"].astype(float)
    return acc, al, liq


def _block_task(cfg_json: str, book: Book, block: int, run_id: str
                ) -> tuple[int, pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    # Runs on a Dask worker: everything is rebuilt from the config text and the book.
    cfg = RunConfig.model_validate_json(cfg_json, strict=False)
    return (block, *compute_block(cfg, book, block, run_id))


def _block_names(cfg: RunConfig) -> tuple[str, ...]:
    """The data files of a checkpoint block of this configuration."""
    extra = ("liquidation",) if cfg.liquidation_profile is not None else ()
    return ("accounts", "allocations", *extra)


# ----------------------------------------------------------------------------- checks
def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("marginlab", "numpy", "numba", "scipy", "pandas", "pyarrow", "arch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class _Progress:
    """tqdm bar on a terminal; plain periodic log lines otherwise (CI, cron)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="block", desc="marginlab run")

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= 5.0 or self.done == self.total:
            self.last = now
            el = now - self.t0
            rate = self.done / el if el > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"marginlab run: {self.done}/{self.total} blocks, {rate:.2f} blocks/s, "
                  f"elapsed {el:.0f} s, eta {eta:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_BYTES_PER_SYNTHETIC_ACCOUNT = 2_500  # make_book's tables and sparse holdings, measured


def estimate_memory_mb(cfg: RunConfig, n_accounts: int, n_instruments: int,
                       n_assets: int) -> dict[str, float]:
    """Peak memory of a run in MB, by part, from the sizes alone (nothing is allocated).

    Scenario sets: spot and vol per underlying and scenario, for each distinct Monte Carlo
    setting; unit P&L: one row per instrument and collateral asset and scenario (plus the
    revaluation's copy); per thread: the account kernel's loss and tail buffers; per block:
    the result rows of every method."""
    n_scen = cfg.scenarios.n_scenarios
    n_und = len(cfg.scenarios.underlyings)
    n_mc = max(1, len({(getattr(m, "params", None) and repr(m.params))
                       for m in cfg.methods if m.type == "monte_carlo"}))
    threads = max(1, os.cpu_count() or 1)
    block = min(cfg.run.account_block, max(n_accounts, 1))
    parts = {
        "scenarios": n_mc * n_scen * n_und * 8 * 4,
        "unit_pnl": (n_instruments + n_assets) * n_scen * 8 * 2,
        "kernel": threads * n_scen * 8 * 3,
        "block_rows": block * len(cfg.methods) * 24 * 8,
        "book": n_accounts * _BYTES_PER_SYNTHETIC_ACCOUNT,
    }
    lp = cfg.liquidation_profile
    if lp is not None:  # the paths, and liquidation_profile's per-chunk budget (256 MB)
        parts["profile_paths"] = lp.n_paths * (lp.n_steps + 1) * n_und * 8
        parts["profile_outcomes"] = min(256 * 2**20, lp.n_paths * block * 56)
    return {k: v / 2**20 for k, v in parts.items()}


def _check_memory(cfg: RunConfig, parts: dict[str, float]) -> None:
    need = sum(parts.values())
    if need > cfg.run.memory_budget_mb:
        detail = ", ".join(f"{k} {v:,.0f}" for k, v in parts.items() if v >= 1)
        raise ValueError(
            f"{cfg.source}: run.memory_budget_mb: {cfg.run.memory_budget_mb:g} MB is below "
            f"the estimated {need:,.0f} MB ({detail} MB) for "
            f"scenarios.n_scenarios = {cfg.scenarios.n_scenarios:,}: lower "
            "scenarios.n_scenarios or run.account_block, or raise the budget")


def _output_folder(cfg: RunConfig, output: str | os.PathLike[str] | None) -> Path:
    """The output folder, checked against the path rules (see the README)."""
    if output is not None:
        if not str(output).strip():
            raise ValueError("--output: must name a folder, got ''")
        out = Path(output)
        key = "--output"
    else:
        out = cfg.path(cfg.run.output)
        key = f"{cfg.source}: run.output"
        base = Path(cfg.base_dir).resolve()
        res = out.resolve()
        if res == base:
            raise ValueError(f"{key}: must be a subfolder, not the configuration's own folder")
        if not res.is_relative_to(base) and not cfg.run.output_outside_config:
            raise ValueError(f"{key}: {res} is outside the configuration's folder {base}; "
                             "set run.output_outside_config = true, or pass --output, to "
                             "allow it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{key}: {out} exists and is not a folder")
    return out


def _dask_logs_quiet() -> None:
    if not logging.getLogger("marginlab").isEnabledFor(logging.INFO):
        for name in ("distributed", "tornado", "bokeh"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _connect(cfg: RunConfig, workers: int, scheduler: str | None) -> tuple[Any, Any]:
    """A Dask client (and the LocalCluster it owns, if any), started before the output
    folder is touched so that a bad address is refused first."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("Dask runs need dask.distributed: pip install 'marginlab[cluster]'"
                         ) from None
    _dask_logs_quiet()  # after the import: distributed sets its loggers' levels on import
    cl = cfg.cluster
    security = None
    if cl.tls_ca_file is not None:
        from distributed.security import Security

        security = Security(tls_ca_file=str(cfg.path(cl.tls_ca_file)),
                            tls_client_cert=str(cfg.path(cl.tls_client_cert)),
                            tls_client_key=str(cfg.path(cl.tls_client_key)),
                            require_encryption=True)
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="20s", security=security), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise RunError(f"cannot reach the Dask scheduler {scheduler}: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                       ) from None


@dataclass(frozen=True)
class _Plan:
    out: Path
    book: Book
    identity: dict[str, Any]
    memory_mb: dict[str, float]
    cfg: RunConfig
    precision: tuple[tuple[int, float], ...] = ()


def prepare_run(cfg: RunConfig, *, output: str | os.PathLike[str] | None = None) -> _Plan:
    """Every check of a run that touches nothing: output path rules, memory estimate from the
    sizes, the book, the methods (their price and bracket files) and the run identity."""
    out = _output_folder(cfg, output)
    n_und = len(cfg.scenarios.underlyings)
    if cfg.book.synthetic_accounts is not None:  # before generating it
        _check_memory(cfg, estimate_memory_mb(cfg, cfg.book.synthetic_accounts, 8 * n_und,
                                              4))
    book = load_book(cfg)
    top = cfg if cfg.run.precision_target is None else _with_scenarios(cfg,
                                                                       cfg.run.max_scenarios)
    mem = estimate_memory_mb(top, book.n_accounts, book.n_instruments, len(book.assets))
    _check_memory(top, mem)
    market = build_market(cfg)  # fits any option-chain surface
    methods = build_methods(cfg)  # reads price/bracket files and checks every method's params
    if cfg.liquidation_profile is not None:
        _profile_rules(cfg, book)
    history: tuple[tuple[int, float], ...] = ()
    if cfg.run.precision_target is not None:
        n, history = precision_scenarios(cfg, book, market=market, methods=methods)
        cfg = _with_scenarios(cfg, n)
    identity = run_identity(cfg.digest(), cfg.input_files())
    return _Plan(out, book, identity, mem, cfg, history)


# ----------------------------------------------------------------------------- the run
def run_batch(cfg: RunConfig, *, resume: bool = False, workers: int | None = None,
              scheduler: str | None = None, progress: bool = True,
              output: str | os.PathLike[str] | None = None,
              stop_after: int | None = None) -> RunOutputs:
    """Run the configured batch and write its outputs.

    Everything is checked before the output folder is touched (configuration, book, price
    files, memory estimate, scheduler); a refused run leaves a previous run's files as they
    were. One run at a time may write to an output folder.

    Parameters
    ----------
    cfg : RunConfig
    resume : bool
        Reuse the verified checkpoints of an interrupted run with the same identity
        (configuration, input files and package); others are recomputed.
    workers : int, optional
        Run the blocks on a local Dask cluster of this many processes (0: in this process;
        default: the configuration's ``cluster.workers``).
    scheduler : str, optional
        Address of an existing Dask scheduler (default: ``cluster.scheduler``).
    progress : bool
        Show progress (a bar on a terminal, log lines otherwise).
    output : path, optional
        Output folder (default: the config's ``run.output``).
    stop_after : int, optional
        Stop after this many new blocks without assembling (tests of ``resume``).

    Raises
    ------
    ValueError
        A configuration, input or size problem (nothing was written).
    RunError
        The run failed after it started (e.g. every Dask worker was lost); its checkpoints
        are kept and the message gives the command that resumes it.
    """
    t_start = time.perf_counter()
    workers = cfg.cluster.workers if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    scheduler = cfg.cluster.scheduler if scheduler is None else scheduler
    if scheduler is not None:
        check_scheduler_address(scheduler)
    t0 = time.perf_counter()
    plan = prepare_run(cfg, output=output)
    out, book, identity, cfg = plan.out, plan.book, plan.identity, plan.cfg
    run_id = identity["id"]
    client = cluster = None
    if scheduler is not None or workers > 0:
        client, cluster = _connect(cfg, workers, scheduler)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with OutputLock(out):
            result = _locked_run(cfg, out, book, identity, run_id, resume, client, progress,
                                 stop_after, t_start, time.perf_counter() - t0, plan,
                                 workers, scheduler)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return result


def _gather_blocks(client: Any, futures: list[Any], save: Any, bar: _Progress,
                   lost_timeout_s: float) -> None:
    """Save each block as its future completes; stop when the cluster has had no worker for
    ``lost_timeout_s`` seconds (its tasks would otherwise wait forever)."""
    from dask.distributed import wait

    pending = set(futures)
    no_workers_since: float | None = None
    while pending:
        try:
            done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        for fut in done:
            save(*fut.result())
            bar.update()
        if not done:
            if client.scheduler_info().get("workers"):
                no_workers_since = None
            elif no_workers_since is None:
                no_workers_since = time.monotonic()
            elif time.monotonic() - no_workers_since > lost_timeout_s:
                raise RunError(f"no Dask worker for {lost_timeout_s:g} s "
                               "(cluster.lost_workers_timeout_s)")


def _locked_run(cfg, out, book, identity, run_id, resume, client, progress, stop_after,
                t_start, t_load, plan, workers, scheduler) -> RunOutputs:
    manifest = out / "manifest.json"
    manifest.unlink(missing_ok=True)  # the folder must not look complete while this run works
    if cfg.liquidation_profile is None:  # a previous run's profile must not be reported
        (out / "liquidation.parquet").unlink(missing_ok=True)
    root = out / ".checkpoints"
    ckpt = root / run_id
    if root.exists():
        for stale in root.iterdir():
            if stale.name == run_id:
                continue
            if resume and (stale / "identity.json").exists():
                try:
                    old = json.loads((stale / "identity.json").read_text())
                    log.warning("--resume: checkpoints of %s were made with different inputs "
                                "(changed: %s); recomputing every block", out,
                                ", ".join(identity_changes(old, identity)) or "unknown")
                except (OSError, ValueError):
                    pass
            shutil.rmtree(stale, ignore_errors=True)
    if ckpt.exists() and not resume:
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    write_atomic(ckpt / "identity.json",
                 lambda p: p.write_text(json.dumps(identity, indent=1)))

    size = cfg.run.account_block
    n_blocks = max(1, -(-book.n_accounts // size))
    names = _block_names(cfg)
    todo = []
    for b in range(n_blocks):
        if verified_block(ckpt, b, names) is None:
            if block_paths(ckpt, b)["record"].exists():
                log.warning("checkpoint block %d failed its checksum; recomputing it", b)
            drop_block(ckpt, b)
            todo.append(b)
    log.info("%d accounts in %d blocks; %d to compute", book.n_accounts, n_blocks, len(todo))
    bar = _Progress(n_blocks, progress)
    bar.update(n_blocks - len(todo))
    t0 = time.perf_counter()
    done_new = 0

    def _save(block: int, acc: pd.DataFrame, al: pd.DataFrame,
              liq: pd.DataFrame | None = None) -> None:
        ta, tl = _table(acc, ACCOUNT_SCHEMA), _table(al, ALLOC_SCHEMA)
        write = {"allocations": lambda p: pq.write_table(tl, p),
                 "accounts": lambda p: pq.write_table(ta, p)}
        if liq is not None:
            tq = pa.Table.from_pandas(liq, preserve_index=False)
            write["liquidation"] = lambda p: pq.write_table(tq, p)
        save_block(ckpt, block, write)

    if client is None:
        for b in todo:
            _save(b, *compute_block(cfg, book, b, run_id))
            bar.update()
            done_new += 1
            if stop_after is not None and done_new >= stop_after:
                bar.close()
                raise SystemExit(f"stopped after {done_new} blocks (stop_after)")
    else:
        try:
            book_f = client.scatter(book, broadcast=True)
            cfg_json = cfg.model_dump_json()
            futures = [client.submit(_block_task, cfg_json, book_f, b, run_id, retries=2,
                                     pure=False, key=f"marginlab-block-{run_id[:12]}-{b}")
                       for b in todo]
            _gather_blocks(client, futures, _save, bar, cfg.cluster.lost_workers_timeout_s)
        except (Exception, asyncio.CancelledError) as exc:
            bar.close()
            done = sum(verified_block(ckpt, b, names) is not None for b in range(n_blocks))
            first = (str(exc).splitlines() or [""])[0][:200]
            raise RunError(
                f"the Dask cluster failed ({type(exc).__name__}: {first}); {done} of "
                f"{n_blocks} blocks are checkpointed in {ckpt}: run the same command again "
                "with --resume to finish") from None
    bar.close()
    t_compute = time.perf_counter() - t0

    # Assemble method by method, blocks in order (rows: method-major, then account order, so
    # the files do not depend on the block size), streaming: memory stays at one block.
    t0 = time.perf_counter()
    paths = {name: out / f"{name}.parquet" for name in ("accounts", "allocations")}
    n_rows = {}
    method_names = [cfg.method_name(i) for i in range(len(cfg.methods))]
    meta = _schema_metadata(cfg, identity)
    for name, schema in (("accounts", ACCOUNT_SCHEMA), ("allocations", ALLOC_SCHEMA)):
        rows = 0

        # method-major order needs every block per method: write blocks per method
        def _write_method_major(tmp: Path, name=name, schema=schema) -> None:
            nonlocal rows
            with pq.ParquetWriter(tmp, schema.with_metadata(meta)) as writer:
                for method_name in method_names:
                    for b in range(n_blocks):
                        data = verified_block(ckpt, b, names)
                        if data is None:
                            raise RunError(f"checkpoint block {b} in {ckpt} changed during "
                                           "the run; run the same command again with --resume")
                        table = pq.read_table(pa.BufferReader(data[name]))
                        part = table.filter(pa.compute.equal(table["method"], method_name))
                        writer.write_table(part.cast(schema))
                        rows += part.num_rows

        write_atomic(paths[name], _write_method_major)
        n_rows[name] = rows
    if "liquidation" in names:
        paths["liquidation"] = out / "liquidation.parquet"
        n_rows["liquidation"] = _write_liquidation(paths["liquidation"], ckpt, n_blocks, names,
                                                   meta)
    summary = _summary(paths["accounts"])
    summary_path = write_atomic(out / "summary.csv",
                                lambda p: summary.to_csv(p, index=False))
    report_path = None
    if cfg.run.report:
        from .report import write_report

        report_path = write_report(out, paths["accounts"], summary, cfg)
    t_write = time.perf_counter() - t0
    info = {
        "run_id": run_id, "config_digest": identity["config"], "inputs": identity["inputs"],
        "code_digest": identity["code"], "seed": cfg.scenarios.seed,
        "n_accounts": int(book.n_accounts), "n_positions": int(book.n_positions),
        "n_scenarios": cfg.scenarios.n_scenarios, "methods": method_names,
        "blocks": n_blocks, "blocks_resumed": n_blocks - len(todo),
        "rows": n_rows, "versions": _versions(),
        "memory_estimate_mb": {k: round(v, 1) for k, v in plan.memory_mb.items()},
        "timings_s": {"load": round(t_load, 3), "compute": round(t_compute, 3),
                      "write": round(t_write, 3),
                      "total": round(time.perf_counter() - t_start, 3)},
        "workers": workers if scheduler is None else f"scheduler {scheduler}",
        "config": json.loads(cfg.model_dump_json()),
    }
    if plan.precision:
        info["precision"] = {"target": cfg.run.precision_target,
                             "share": cfg.run.precision_share,
                             "history": [list(h) for h in plan.precision]}
    shutil.rmtree(ckpt, ignore_errors=True)
    try:
        (out / ".checkpoints").rmdir()  # only if no other run's checkpoints remain
    except OSError:
        pass
    text = json.dumps(info, indent=2, default=str)
    write_atomic(manifest, lambda p: p.write_text(text))
    return RunOutputs(out, paths["accounts"], paths["allocations"], summary_path, manifest,
                      report_path, info, paths.get("liquidation"))


def _write_liquidation(final: Path, ckpt: Path, n_blocks: int, names: tuple[str, ...],
                       meta: dict[str, str]) -> int:
    """``liquidation.parquet``: the blocks' liquidation-profile rows in book order, each
    column described in its field metadata (``PROFILE_COLUMNS``)."""
    from ..liquidation_profile import PROFILE_COLUMNS

    def describe(col: str) -> str:
        for pattern, text in PROFILE_COLUMNS.items():
            if col == pattern or (pattern.endswith("*") and col.startswith(pattern[:-1])):
                return text
        return ""

    tables = []
    for b in range(n_blocks):
        data = verified_block(ckpt, b, names)
        if data is None:
            raise RunError(f"checkpoint block {b} in {ckpt} changed during the run; run the "
                           "same command again with --resume")
        tables.append(pq.read_table(pa.BufferReader(data["liquidation"])))
    table = pa.concat_tables(tables)
    schema = pa.schema([f.with_metadata({"description": describe(f.name)})
                        for f in table.schema]).with_metadata(meta)
    table = table.cast(schema)
    write_atomic(final, lambda p: pq.write_table(table, p))
    return table.num_rows


_UNITS = {"im": "USD", "mm": "USD", "margin_balance": "USD", "excess": "USD",
          "margin_ratio": "1 (mm / margin balance)", "gross_notional": "USD", "var": "USD",
          "var_lo": "USD", "var_hi": "USD", "es": "USD", "es_se": "USD", "es_lo": "USD",
          "es_hi": "USD", "im_contribution": "USD", "liquidity_addon": "USD",
          "im_buys": "USD", "im_sells": "USD"}


def _schema(columns: list[str]) -> pa.Schema:
    text = {"account_id", "method", "driver", "holding"}
    return pa.schema([pa.field(c, pa.string() if c in text else pa.float64(),
                               metadata={"unit": _UNITS[c]} if c in _UNITS else None)
                      for c in columns])


ACCOUNT_SCHEMA = _schema(ACCOUNT_COLUMNS)
ALLOC_SCHEMA = _schema(ALLOC_COLUMNS)


def _schema_metadata(cfg: RunConfig, identity: dict[str, Any]) -> dict[str, str]:
    sc = cfg.scenarios
    return {"marginlab.run": json.dumps({
        "run_id": identity["id"], "config_digest": identity["config"],
        "seed": sc.seed, "n_scenarios": sc.n_scenarios, "horizon_days": sc.horizon_days,
        "model": sc.model, "currency": "USD", "marginlab": identity["marginlab"]})}


def _summary(accounts_path: Path) -> pd.DataFrame:
    df = pd.read_parquet(accounts_path, columns=["method", "im", "mm", "excess",
                                                 "gross_notional"])
    g = df.groupby("method", sort=False)
    out = pd.DataFrame({
        "accounts": g.size(),
        "total_im": g["im"].sum(),
        "total_mm": g["mm"].sum(),
        "im_over_gross_notional": g["im"].sum() / g["gross_notional"].sum(),
        "accounts_in_deficit": g["excess"].apply(lambda s: int((s < 0).sum())),
        "total_deficit": g["excess"].apply(lambda s: float(-s[s < 0].sum())),
    }).reset_index()
    return out
