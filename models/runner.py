"""The overnight batch run: every account's margin under the configured methodologies.

:func:`run_batch` works in account blocks. Each block is computed from (config, block index)
alone: the scenarios are regenerated from the seed wherever the block runs, never shipped;
every account's numbers depend only on its own holdings and the scenarios, so the results do
not depend on the block size, the order of the blocks, the number of threads or where the
blocks run. After each block a checkpoint is written (to a temporary name, then renamed), so
``resume=True`` after a crash (SIGKILL included) recomputes only the missing blocks and the
final files are bit-identical to an uninterrupted run.

Outputs in the output folder (each written to a temporary name and renamed when complete;
``manifest.json`` last, and removed first when a new run starts, so the folder never looks
complete when it is not):

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
import pyarrow.parquet as pq

from .book import Book
from .config import RunConfig
from .scenarios import MarketState, ScenarioSet, monte_carlo_scenarios

__all__ = ["run_batch", "RunOutputs", "build_market", "build_model", "build_methods",
           "load_book"]

log = logging.getLogger("marginlab.run")

ACCOUNT_COLUMNS = ["account_id", "method", "im", "mm", "margin_balance", "excess",
                   "margin_ratio", "driver", "gross_notional", "var", "var_lo", "var_hi", "es",
                   "es_se", "es_lo", "es_hi"]
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


# ----------------------------------------------------------------------------- building
def build_market(cfg: RunConfig) -> MarketState:
    """The market snapshot of the config."""
    return MarketState(spot=cfg.market.spot, vol=cfg.market.vol, rate=cfg.market.rate)


def build_model(cfg: RunConfig) -> Any:
    """The scenario model of the config."""
    from .market import GARCH, GBM, MertonJump

    sc = cfg.scenarios
    cls = {"gbm": GBM, "merton": MertonJump, "garch": GARCH}[sc.model]
    try:
        return cls(**sc.params, corr=sc.corr)
    except TypeError as exc:
        raise ValueError(f"scenarios.params: {exc}") from None


def build_methods(cfg: RunConfig) -> list[Any]:
    """The configured margin methods, in order."""
    from .margin.risk_based import HistoricalMargin, MonteCarloMargin

    model = build_model(cfg)
    sc = cfg.scenarios
    out = []
    for i, m in enumerate(cfg.methods):
        name = m.name or m.type
        key = f"methods.{i}"
        try:
            if m.type == "monte_carlo":
                out.append(MonteCarloMargin(
                    model, sc.underlyings, measure=m.measure, level=m.level,
                    horizon_days=sc.horizon_days, n_scenarios=sc.n_scenarios, seed=sc.seed,
                    mm_fraction=m.mm_fraction, vol_of_vol=sc.vol_of_vol,
                    vol_price_corr=sc.vol_price_corr, name=name))
            elif m.type == "historical":
                params = dict(m.params)
                prices = pd.read_csv(cfg.path(params.pop("prices")), index_col=0,
                                     parse_dates=True)
                h = int(round(sc.horizon_days))
                out.append(HistoricalMargin(prices, measure=m.measure, level=m.level,
                                            horizon_days=h, mm_fraction=m.mm_fraction,
                                            name=name, **params))
            elif m.type in ("span", "deribit"):
                from .margin import grid

                cls = grid.SpanLike if m.type == "span" else grid.DeribitLike
                out.append(cls(**m.params, name=name))
            elif m.type == "tiered":
                from .margin.brackets import BracketTable, binance_btcusdt_2021
                from .margin.exchange import TieredMargin

                params = dict(m.params)
                tables = {}
                for key_, src in params.pop("tables", {}).items():
                    # a bracket file (CSV or TOML) or "builtin" for the shipped BTCUSDT table
                    if src == "builtin":
                        tables[key_] = binance_btcusdt_2021()
                    elif str(src).lower().endswith(".toml"):
                        tables[key_] = BracketTable.from_toml(cfg.path(src))
                    else:
                        tables[key_] = BracketTable.from_csv(cfg.path(src))
                out.append(TieredMargin(tables, name=name, **params))
            else:
                from .margin.exchange import DydxMargin

                out.append(DydxMargin(**m.params, name=name))
        except (TypeError, ValueError, KeyError, OSError) as exc:
            raise ValueError(f"{key} ({name!r}): {exc}") from None
    return out


def load_book(cfg: RunConfig) -> Book:
    """The book of the config: files (validated before any computation) or synthetic."""
    b = cfg.book
    if b.synthetic_accounts is not None:
        from .synthetic import make_book

        return make_book(b.synthetic_accounts, b.synthetic_seed)
    return Book.from_files(cfg.path(b.instruments), cfg.path(b.positions),
                           None if b.collateral is None else cfg.path(b.collateral))


# ----------------------------------------------------------------------------- one block
_STATE: dict[tuple[str, str], tuple[MarketState, ScenarioSet, list[Any]]] = {}


def _run_state(cfg: RunConfig) -> tuple[MarketState, ScenarioSet, list[Any]]:
    """Market, scenarios and methods of a config, built once per process (each block and each
    Dask worker reuses them instead of regenerating scenarios and re-reading inputs)."""
    key = (cfg.digest(), cfg.base_dir)
    if key not in _STATE:
        sc = cfg.scenarios
        market = build_market(cfg)
        scen = monte_carlo_scenarios(
            build_model(cfg), market, sc.underlyings, horizon_days=sc.horizon_days,
            n_scenarios=sc.n_scenarios, seed=sc.seed, vol_of_vol=sc.vol_of_vol,
            vol_price_corr=sc.vol_price_corr)
        _STATE.clear()
        _STATE[key] = (market, scen, build_methods(cfg))
    return _STATE[key]


def compute_block(cfg: RunConfig, book: Book, block: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Account rows and allocation rows of block ``block`` (accounts ``[b*B, (b+1)*B)``)."""
    size = cfg.run.account_block
    lo = block * size
    hi = min(lo + size, book.n_accounts)
    sub = book.subset(slice(lo, hi))
    market, scen, methods = _run_state(cfg)
    rows, allocs = [], []
    for method in methods:
        uses_scen = getattr(method, "uses_shared_scenarios", False)
        res = method.compute(sub, market, scenarios=scen if uses_scen else None)
        f = res.to_frame()
        for c in ACCOUNT_COLUMNS:
            if c not in f.columns:
                f[c] = np.nan
        rows.append(f[ACCOUNT_COLUMNS])
        a = res.allocation.copy()
        a["method"] = res.method
        allocs.append(a[ALLOC_COLUMNS])
    acc = pd.concat(rows, ignore_index=True)
    acc["driver"] = acc["driver"].astype(str)
    acc["account_id"] = acc["account_id"].astype(str)
    al = pd.concat(allocs, ignore_index=True)
    al["account_id"] = al["account_id"].astype(str)
    al["holding"] = al["holding"].astype(str)
    al["im_contribution"] = al["im_contribution"].astype(float)
    return acc, al


def _block_task(cfg_json: str, book: Book, block: int) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    # Runs on a Dask worker: everything is rebuilt from the config text and the book.
    cfg = RunConfig.model_validate_json(cfg_json)
    acc, al = compute_block(cfg, book, block)
    return block, acc, al


# ----------------------------------------------------------------------------- files
def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _ckpt_paths(folder: Path, block: int) -> tuple[Path, Path]:
    return (folder / f"block_{block:06d}.accounts.parquet",
            folder / f"block_{block:06d}.alloc.parquet")


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


def _check_memory(cfg: RunConfig, book: Book) -> None:
    n_rows = book.n_instruments + len(book.assets)
    n_scen = cfg.scenarios.n_scenarios
    threads = max(1, os.cpu_count() or 1)
    block = min(cfg.run.account_block, max(book.n_accounts, 1))
    per_block_rows = block * len(cfg.methods) * 24 * 8
    need = (n_rows * n_scen * 8 * 2 + threads * n_scen * 8 * 3 + per_block_rows) / 2**20
    if need > cfg.run.memory_budget_mb:
        raise ValueError(
            f"run.memory_budget_mb={cfg.run.memory_budget_mb:g} is below the estimated "
            f"{need:.0f} MB (unit P&L {n_rows} x {n_scen} scenarios, block of {block} "
            "accounts): lower scenarios.n_scenarios or run.account_block, or raise the budget")


# ----------------------------------------------------------------------------- the run
def run_batch(cfg: RunConfig, *, resume: bool = False, workers: int = 0,
              scheduler: str | None = None, progress: bool = True,
              output: str | os.PathLike[str] | None = None,
              stop_after: int | None = None) -> RunOutputs:
    """Run the configured batch and write its outputs.

    Parameters
    ----------
    cfg : RunConfig
    resume : bool
        Reuse the checkpoints of an interrupted run of the same configuration.
    workers : int
        Run the blocks on a local Dask cluster of this many processes (0: in this process).
    scheduler : str, optional
        Address of an existing Dask scheduler (overrides ``workers``).
    progress : bool
        Show progress (a bar on a terminal, log lines otherwise).
    output : path, optional
        Output folder (default: the config's ``run.output``).
    stop_after : int, optional
        Stop after this many new blocks without assembling (tests of ``resume``).
    """
    t_start = time.perf_counter()
    out = Path(output) if output is not None else cfg.path(cfg.run.output)
    out.mkdir(parents=True, exist_ok=True)
    digest = cfg.digest()
    manifest = out / "manifest.json"
    if manifest.exists():
        manifest.unlink()  # the folder must not look complete while this run works
    ckpt = out / ".checkpoints" / digest
    if ckpt.exists() and not resume:
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    for stale in (out / ".checkpoints").iterdir():
        if stale.name != digest:
            shutil.rmtree(stale, ignore_errors=True)

    t0 = time.perf_counter()
    book = load_book(cfg)
    _run_state(cfg)  # validate the methods (and build the scenarios) before any computation
    _check_memory(cfg, book)
    t_load = time.perf_counter() - t0
    size = cfg.run.account_block
    n_blocks = max(1, -(-book.n_accounts // size))
    todo = [b for b in range(n_blocks) if not all(p.exists() for p in _ckpt_paths(ckpt, b))]
    log.info("%d accounts in %d blocks; %d to compute", book.n_accounts, n_blocks, len(todo))
    bar = _Progress(n_blocks, progress)
    bar.update(n_blocks - len(todo))
    t0 = time.perf_counter()
    done_new = 0

    def _save(block: int, acc: pd.DataFrame, al: pd.DataFrame) -> None:
        pa_acc, pa_al = _ckpt_paths(ckpt, block)
        _atomic_parquet(al, pa_al)
        _atomic_parquet(acc, pa_acc)  # accounts last: its presence marks the block done

    if scheduler is None and workers <= 0:
        for b in todo:
            acc, al = compute_block(cfg, book, b)
            _save(b, acc, al)
            bar.update()
            done_new += 1
            if stop_after is not None and done_new >= stop_after:
                bar.close()
                raise SystemExit(f"stopped after {done_new} blocks (stop_after)")
    else:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        try:
            book_f = client.scatter(book, broadcast=True)
            cfg_json = cfg.model_dump_json()
            futures = [client.submit(_block_task, cfg_json, book_f, b, retries=2, pure=False,
                                     key=f"marginlab-block-{digest[:12]}-{b}") for b in todo]
            for fut in as_completed(futures):
                b, acc, al = fut.result()
                _save(b, acc, al)
                bar.update()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    bar.close()
    t_compute = time.perf_counter() - t0

    # Assemble method by method, blocks in order (rows: method-major, then account order, so
    # the files do not depend on the block size), streaming: memory stays at one block.
    t0 = time.perf_counter()
    paths = {name: out / f"{name}.parquet" for name in ("accounts", "allocations")}
    n_rows = {}
    method_names = [m.name or m.type for m in cfg.methods]
    for name, idx in (("accounts", 0), ("allocations", 1)):
        tmp = out / f".{name}.parquet.tmp"
        writer = None
        rows = 0
        for method_name in method_names:
            for b in range(n_blocks):
                table = pq.read_table(_ckpt_paths(ckpt, b)[idx],
                                      filters=[("method", "=", method_name)])
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += table.num_rows
        writer.close()
        n_rows[name] = rows
    summary = _summary(out / ".accounts.parquet.tmp")
    for name in ("accounts", "allocations"):
        os.replace(out / f".{name}.parquet.tmp", paths[name])
    summary_path = out / "summary.csv"
    _atomic_text(summary.to_csv(index=False), summary_path)
    report_path = None
    if cfg.run.report:
        from .report import write_report

        report_path = write_report(out, paths["accounts"], summary, cfg)
    t_write = time.perf_counter() - t0
    info = {
        "config_digest": digest, "seed": cfg.scenarios.seed,
        "n_accounts": int(book.n_accounts), "n_positions": int(book.n_positions),
        "n_scenarios": cfg.scenarios.n_scenarios, "methods": [m.name or m.type
                                                             for m in cfg.methods],
        "blocks": n_blocks, "blocks_resumed": n_blocks - len(todo),
        "rows": n_rows, "versions": _versions(),
        "timings_s": {"load": round(t_load, 3), "compute": round(t_compute, 3),
                      "write": round(t_write, 3),
                      "total": round(time.perf_counter() - t_start, 3)},
        "workers": workers if scheduler is None else f"scheduler {scheduler}",
        "config": json.loads(cfg.model_dump_json()),
    }
    shutil.rmtree(ckpt, ignore_errors=True)
    try:
        (out / ".checkpoints").rmdir()  # only if no other run's checkpoints remain
    except OSError:
        pass
    _atomic_text(json.dumps(info, indent=2, default=str), manifest)
    return RunOutputs(out, paths["accounts"], paths["allocations"], summary_path, manifest,
                      report_path, info)


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


_ = pa  # pyarrow is used through pq; keep the import explicit for readers
