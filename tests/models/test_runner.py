"""Batch runs: config validation, outputs, the Python-API law, resume after SIGKILL, Dask."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marginlab.models import make_book
from marginlab.models.app.config import ConfigError, config_from_dict, load_config
from marginlab.models.app.runner import build_market, build_methods, run_batch

SPOT = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0}
VOL = {"BTC": 0.55, "ETH": 0.7, "SOL": 0.9}


def _config(book_dir: Path | None = None, **run) -> dict:
    book = ({"instruments": str(book_dir / "instruments.csv"),
             "positions": str(book_dir / "positions.csv"),
             "collateral": str(book_dir / "collateral.csv")} if book_dir is not None
            else {"synthetic_accounts": 300, "synthetic_seed": 3})
    return {
        "book": book,
        "market": {"spot": SPOT, "vol": VOL},
        "scenarios": {"model": "gbm", "underlyings": ["BTC", "ETH", "SOL"],
                      "params": {"mu": 0.0, "sigma": [0.55, 0.7, 0.9]},
                      "corr": [[1, 0.8, 0.7], [0.8, 1, 0.75], [0.7, 0.75, 1]],
                      "n_scenarios": 2_000, "seed": 7, "horizon_days": 2, "vol_of_vol": 0.8},
        "methods": [{"type": "monte_carlo", "name": "MC ES", "measure": "es", "level": 0.99},
                    {"type": "monte_carlo", "name": "MC VaR", "measure": "var",
                     "level": 0.99}],
        "run": {"account_block": 100, **run},
    }


def _write_toml(path: Path, cfg: dict) -> Path:
    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    lines = []
    for section in ("book", "market", "scenarios", "run"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {val(v)}" for k, v in cfg[section].items()]
    for m in cfg["methods"]:
        lines.append("[[methods]]")
        lines += [f"{k} = {val(v)}" for k, v in m.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_reports_every_problem_with_its_key(tmp_path):
    """Validation: unknown keys are rejected and all problems are listed at once."""
    bad = _config()
    bad["scenarios"]["n_scenarios"] = 5
    bad["run"]["colour"] = "blue"
    bad["methods"][0]["level"] = 1.5
    with pytest.raises(ConfigError) as exc:
        config_from_dict(bad)
    msg = str(exc.value)
    for key in ("scenarios.n_scenarios", "run.colour", "unknown key", "methods[0].level"):
        assert key in msg, msg
    bad2 = _config()
    bad2["market"]["spot"] = {"BTC": 1.0}
    bad2["book"] = {}
    with pytest.raises(ConfigError) as exc:
        config_from_dict(bad2)
    assert "market.spot" in str(exc.value) and "book:" in str(exc.value)
    p = tmp_path / "x.toml"
    p.write_text("[book\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_run_outputs_schema_and_equality_with_python_api(tmp_path):
    """Law: the batch numbers equal the Python API's (method.compute on the whole book), and
    the documented files and columns exist; the manifest is written."""
    cfg = config_from_dict(_config(), tmp_path)
    out = run_batch(cfg, progress=False, output=tmp_path / "out")
    acc = pd.read_parquet(out.accounts)
    for col in ("account_id", "method", "im", "mm", "margin_balance", "excess",
                "margin_ratio", "driver", "var", "var_lo", "var_hi", "es", "es_lo",
                "es_hi", "es_se", "gross_notional"):
        assert col in acc.columns
    al = pd.read_parquet(out.allocations)
    assert list(al.columns) == ["account_id", "method", "holding", "im_contribution"]
    book = make_book(300, 3)
    market = build_market(cfg)
    for method in build_methods(cfg):
        ref = method.compute(book, market).to_frame()
        got = acc[acc["method"] == method.name].reset_index(drop=True)
        np.testing.assert_array_equal(got["account_id"].to_numpy(), ref["account_id"])
        np.testing.assert_array_equal(got["im"].to_numpy(), ref["im"].to_numpy())
        np.testing.assert_array_equal(got["es_hi"].to_numpy(), ref["es_hi"].to_numpy())
    summary = pd.read_csv(out.summary)
    assert set(summary["method"]) == {"MC ES", "MC VaR"}
    info = json.loads(out.manifest.read_text())
    assert info["n_accounts"] == 300 and info["rows"]["accounts"] == 600
    assert len(info["config_digest"]) == 64 and "numba" in info["versions"]
    assert out.report is not None and out.report.exists()
    assert not list((tmp_path / "out").glob(".*.tmp"))
    assert not (tmp_path / "out" / ".checkpoints").exists()


def test_block_size_and_resume_do_not_change_a_bit(tmp_path):
    """Law: results are independent of the block size, and a run stopped after one block
    and resumed equals an uninterrupted run bit for bit."""
    full = run_batch(config_from_dict(_config(), tmp_path), progress=False,
                     output=tmp_path / "a")
    big = run_batch(config_from_dict(_config(account_block=1_000), tmp_path), progress=False,
                    output=tmp_path / "b")
    ref = pd.read_parquet(full.accounts)
    pd.testing.assert_frame_equal(ref, pd.read_parquet(big.accounts))
    cfg = config_from_dict(_config(), tmp_path)
    with pytest.raises(SystemExit):
        run_batch(cfg, progress=False, output=tmp_path / "c", stop_after=1)
    assert not (tmp_path / "c" / "manifest.json").exists()
    res = run_batch(cfg, progress=False, output=tmp_path / "c", resume=True)
    assert res.info["blocks_resumed"] == 1
    pd.testing.assert_frame_equal(ref, pd.read_parquet(res.accounts))
    pd.testing.assert_frame_equal(pd.read_parquet(full.allocations),
                                  pd.read_parquet(res.allocations))


def _marginlab() -> list[str]:
    exe = shutil.which("marginlab")
    return [exe] if exe else [sys.executable, "-m", "marginlab.models.app.cli"]


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    """Law: a real `marginlab run` killed with SIGKILL mid-way and resumed with --resume
    gives the same outputs as an uninterrupted run."""
    book_dir = tmp_path / "book"
    make_book(3_000, 11).to_files(book_dir)
    cfg = _config(book_dir)
    cfg["run"]["output"] = str(tmp_path / "killed")
    cfg_path = _write_toml(tmp_path / "run.toml", cfg)
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.Popen(_marginlab() + ["run", str(cfg_path), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_root = tmp_path / "killed" / ".checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = list(ckpt_root.glob("*/block_*.json")) if ckpt_root.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists()
    r = subprocess.run(_marginlab() + ["run", str(cfg_path), "--resume", "--quiet"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert info["blocks_resumed"] >= 2
    ref = run_batch(config_from_dict(cfg, tmp_path), progress=False, output=tmp_path / "ref")
    for name in ("accounts", "allocations"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "killed" / f"{name}.parquet"),
                                      pd.read_parquet(getattr(ref, name)))


@pytest.mark.slow
def test_dask_local_cluster_equals_single_process(tmp_path):
    """Law: blocks run on a real LocalCluster of 2 worker processes (loopback) give results
    bit-identical to the single-process run."""
    pytest.importorskip("dask.distributed")
    cfg = config_from_dict(_config(), tmp_path)
    local = run_batch(cfg, progress=False, output=tmp_path / "local")
    dask = run_batch(cfg, progress=False, output=tmp_path / "dask", workers=2)
    for name in ("accounts", "allocations"):
        pd.testing.assert_frame_equal(pd.read_parquet(getattr(local, name)),
                                      pd.read_parquet(getattr(dask, name)))


def test_cli_bad_book_fails_before_computing_and_writes_nothing(tmp_path):
    """CLI: a malformed book file gives exit 1 and one line naming file, line and column;
    no output looks complete."""
    book_dir = tmp_path / "book"
    make_book(20, 1).to_files(book_dir)
    pos = pd.read_csv(book_dir / "positions.csv")
    pos = pos.astype({"quantity": object})
    pos.loc[3, "quantity"] = "lots"
    pos.to_csv(book_dir / "positions.csv", index=False)
    cfg = _config(book_dir)
    cfg["run"]["output"] = str(tmp_path / "out")
    cfg_path = _write_toml(tmp_path / "run.toml", cfg)
    r = subprocess.run(_marginlab() + ["run", str(cfg_path), "--quiet"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert "positions.csv" in lines[0] and "line 5" in lines[0] and "quantity" in lines[0]
    assert "Traceback" not in r.stderr
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists() and not (out / "accounts.parquet").exists()


def test_cli_make_book_and_unknown_key(tmp_path):
    """CLI: make-book writes the three files; a config with an unknown key exits 1 naming
    the key."""
    r = subprocess.run(_marginlab() + ["make-book", "--accounts", "50", "--seed", "2",
                                       str(tmp_path / "bk")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    for name in ("instruments", "positions", "collateral"):
        assert (tmp_path / "bk" / f"{name}.csv").exists()
    cfg = _config()
    cfg["scenarios"]["sigma"] = 0.5
    p = _write_toml(tmp_path / "bad.toml", cfg)
    r = subprocess.run(_marginlab() + ["run", str(p)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "scenarios.sigma" in r.stderr and "unknown key" in r.stderr


@pytest.mark.slow
def test_killed_dask_worker_block_is_recomputed(tmp_path):
    """Law: when a worker process dies mid-run (SIGKILL), its blocks are recomputed on the
    restarted worker and the results equal the single-process run bit for bit."""
    distributed = pytest.importorskip("dask.distributed")
    import threading

    cfg_dict = _config()
    cfg_dict["book"] = {"synthetic_accounts": 1_200, "synthetic_seed": 5}
    cfg = config_from_dict(cfg_dict, tmp_path)
    ref = run_batch(cfg, progress=False, output=tmp_path / "ref")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        pids = [w.process.process.pid for w in cluster.workers.values()]
        ckpt = tmp_path / "dask" / ".checkpoints"
        killed = []

        def killer():
            deadline = time.time() + 120
            while time.time() < deadline:
                if ckpt.exists() and list(ckpt.glob("*/block_*.accounts.parquet")):
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
                time.sleep(0.01)

        t = threading.Thread(target=killer)
        t.start()
        res = run_batch(cfg, progress=False, output=tmp_path / "dask",
                        scheduler=cluster.scheduler_address)
        t.join()
    finally:
        cluster.close()
    assert killed, "no block finished before the deadline"
    for name in ("accounts", "allocations"):
        pd.testing.assert_frame_equal(pd.read_parquet(getattr(ref, name)),
                                      pd.read_parquet(getattr(res, name)))
