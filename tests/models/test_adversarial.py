"""Hostile input and failing machines: nothing lost, nothing mixed (issue 11).

Oracles:

* The contract of ``marginlab run`` (README): a malformed book or configuration exits 1 with
  one line on stderr that names the file and line and column (books) or the configuration's
  key path, no traceback, and a finished run already in the output folder stays byte for
  byte as it was. Each case below is run through the installed ``marginlab`` command in a
  real subprocess; the table of cases covers every class of issue 11 (book values, ids,
  encodings, empty tables, configuration keys, method parameters, sizes, memory, scheduler
  and TLS settings, output path rules).
* Run identity: a checkpoint is reused only by a run whose configuration, input file bytes
  and package are the same (brute force: each leaf field and each input file changed in
  turn changes the identity; an end-to-end resume after doubling the positions gives the
  numbers of a fresh run on the new book).
* Checkpoint checksums: a truncated or edited block is recomputed, and the outputs equal an
  uninterrupted run's.
* One writer per folder: a held lock refuses a second run with a clear message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from marginlab.models import make_book
from marginlab.models.app._runfiles import OutputLock, run_identity
from marginlab.models.app.config import config_from_dict
from marginlab.models.app.runner import run_batch

SPOT = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0}


def _marginlab() -> list[str]:
    exe = shutil.which("marginlab")
    return [exe] if exe else [sys.executable, "-m", "marginlab.models.app.cli"]


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def write_toml(path: Path, cfg: dict) -> Path:
    lines = []
    for section, body in cfg.items():
        if section == "methods":
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    for m in cfg.get("methods", []):
        lines.append("[[methods]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in m.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _prices_csv(path: Path) -> Path:
    rng = np.random.default_rng(3)
    days = pd.date_range("2023-01-01", periods=400, freq="D")
    cols = {}
    for k, (s0, vol) in {"BTC": (60_000, 0.6), "ETH": (3_000, 0.7), "SOL": (150, 0.9)}.items():
        r = rng.standard_normal(len(days)) * vol / np.sqrt(365)
        cols[k] = s0 * np.exp(np.cumsum(r))
    pd.DataFrame(cols, index=days).rename_axis("date").to_csv(path)
    return path


def base_config(folder: Path) -> dict:
    """A small valid configuration with a file book, two Monte Carlo methods, an FHS method
    on a price file and a SPAN-like grid, relative paths in ``folder``."""
    return {
        "book": {"instruments": "book/instruments.csv", "positions": "book/positions.csv",
                 "collateral": "book/collateral.csv"},
        "market": {"spot": dict(SPOT), "vol": {"BTC": 0.55, "ETH": 0.7, "SOL": 0.9}},
        "scenarios": {"model": "gbm", "underlyings": ["BTC", "ETH", "SOL"],
                      "params": {"mu": 0.0, "sigma": [0.55, 0.7, 0.9]},
                      "corr": [[1.0, 0.8, 0.7], [0.8, 1.0, 0.75], [0.7, 0.75, 1.0]],
                      "n_scenarios": 500, "seed": 7, "horizon_days": 2.0},
        "methods": [
            {"type": "monte_carlo", "name": "MC ES", "measure": "es", "level": 0.99},
            {"type": "historical", "name": "FHS", "params": {"prices": "prices.csv",
                                                             "filtered": True}},
            {"type": "span", "name": "SPAN", "params": {
                "price_scan": {"BTC": 0.15, "ETH": 0.18, "SOL": 0.25}, "vol_scan": 0.25}},
        ],
        "run": {"output": "out", "account_block": 20, "report": False},
    }


def make_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    book = make_book(50, 4)
    pos = book.positions.drop_duplicates(["account_id", "instrument_id"])
    (folder / "book").mkdir(exist_ok=True)
    book.instruments.to_csv(folder / "book" / "instruments.csv", index=False)
    pos.to_csv(folder / "book" / "positions.csv", index=False)
    book.collateral.to_csv(folder / "book" / "collateral.csv", index=False)
    _prices_csv(folder / "prices.csv")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (via the CLI) whose output folder every refused case must leave
    intact."""
    root = make_folder(tmp_path_factory.mktemp("finished"))
    cfg = write_toml(root / "run.toml", base_config(root))
    r = subprocess.run(_marginlab() + ["run", str(cfg), "--quiet"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (root / "out" / "manifest.json").is_file()
    return root


# ----------------------------------------------------------------------------- the cases
def _edit_csv(name: str, fn):
    def apply(folder: Path, cfg: dict) -> None:
        p = folder / "book" / f"{name}.csv"
        df = pd.read_csv(p, dtype={"account_id": str, "instrument_id": str})
        fn(df)
        df.to_csv(p, index=False)
    return apply


def _raw(name: str, fn):
    def apply(folder: Path, cfg: dict) -> None:
        p = folder / "book" / f"{name}.csv"
        p.write_bytes(fn(p.read_bytes()))
    return apply


def _cfg(fn):
    def apply(folder: Path, cfg: dict) -> None:
        fn(cfg)
    return apply


def _set(df, col, row, value):
    df[col] = df[col].astype(object)
    df.loc[row, col] = value


def _first_option(df):
    return int(np.flatnonzero(df["type"].isin(["option", "inverse_option"]).to_numpy())[0])


def _parquet_positions(transform):
    def apply(folder: Path, cfg: dict) -> None:
        df = pd.read_csv(folder / "book" / "positions.csv",
                         dtype={"account_id": str, "instrument_id": str})
        df = transform(df)
        df.to_parquet(folder / "book" / "positions.parquet", index=False)
        cfg["book"]["positions"] = "book/positions.parquet"
    return apply


def _dup_positions(folder, cfg):
    p = folder / "book" / "positions.csv"
    df = pd.read_csv(p, dtype=str)
    pd.concat([df, df.iloc[[3]]]).to_csv(p, index=False)
    cfg["book"]["duplicates"] = "raise"


def _id_spellings(folder, cfg):
    p = folder / "book" / "positions.csv"
    df = pd.read_csv(p, dtype=str)
    df.loc[0, "account_id"] = "1.0"
    df.to_csv(p, index=False)
    c = folder / "book" / "collateral.csv"
    dc = pd.read_csv(c, dtype=str)
    dc.loc[0, "account_id"] = "1"
    dc.to_csv(c, index=False)


def _header_only(name):
    def apply(folder, cfg):
        p = folder / "book" / f"{name}.csv"
        p.write_text(p.read_text().splitlines()[0] + "\n")
    return apply


def _missing_file(folder, cfg):
    (folder / "book" / "collateral.csv").unlink()


def _historical_dict_missing(cfg):
    cfg["methods"][1]["params"]["prices"] = {"BTC": "nope-btc.csv", "ETH": "eth.csv"}


def _tls_missing(cfg):
    cfg["cluster"] = {"scheduler": "tls://127.0.0.1:8786", "tls_ca_file": "ca.pem",
                      "tls_client_cert": "c.pem", "tls_client_key": "k.pem"}


CASES = [
    # (id, edit, expected fragments of the one-line message, extra CLI args)
    ("positions-repeated-row", _dup_positions,
     ["positions.csv, line", "column 'instrument_id'", "twice"], []),
    ("account-id-two-spellings", _id_spellings,
     ["'1.0' at", "positions.csv, line 2, column 'account_id'", "collateral.csv, line 2",
      "written differently"], []),
    ("quantity-boolean-parquet", _parquet_positions(
        lambda d: d.assign(quantity=d["quantity"] > 0)),
     ["positions.parquet, row 1, column 'quantity'", "boolean"], []),
    ("account-id-float-parquet", _parquet_positions(
        lambda d: d.assign(account_id=np.arange(len(d), dtype=float))),
     ["positions.parquet, row 1, column 'account_id'", "text or integers"], []),
    ("option-expiry-zero", _edit_csv("instruments", lambda d: _set(
        d, "expiry", _first_option(d), 0.0)), ["instruments.csv, line", "'expiry'", "> 0"],
     []),
    ("quantity-1e300", _edit_csv("positions", lambda d: _set(d, "quantity", 4, 1e300)),
     ["positions.csv, line 6, column 'quantity'", "at most"], []),
    ("multiplier-1e300", _edit_csv("instruments", lambda d: _set(d, "multiplier", 0, 1e300)),
     ["instruments.csv, line 2, column 'multiplier'", "at most"], []),
    ("quantity-inf", _edit_csv("positions", lambda d: _set(d, "quantity", 2, "inf")),
     ["positions.csv, line 4, column 'quantity'", "finite"], []),
    ("entry-price-text", _edit_csv("positions", lambda d: _set(d, "entry_price", 1, "12,5")),
     ["positions.csv, line 3, column 'entry_price'", "not a number"], []),
    ("account-id-control-char", _edit_csv("positions", lambda d: _set(
        d, "account_id", 0, "acct\x07bell")),
     ["positions.csv, line 2, column 'account_id'", "control character"], []),
    ("instrument-undefined", _edit_csv("positions", lambda d: _set(
        d, "instrument_id", 5, "DOGE-PERP")), ["positions.csv, line 7", "not defined"], []),
    ("haircut-one", _edit_csv("collateral", lambda d: _set(d, "haircut", 0, 1.0)),
     ["collateral.csv, line 2, column 'haircut'"], []),
    ("positions-not-utf8", _raw("positions", lambda b: b.replace(b"acct", b"\xe9cct", 1)),
     ["positions.csv, line 2, column 1", "not UTF-8"], []),
    ("positions-header-only", _header_only("positions"), ["positions.csv: no rows"], []),
    ("instruments-header-only", _header_only("instruments"), ["instruments.csv: no rows"],
     []),
    ("positions-empty-file", _raw("positions", lambda b: b""), ["positions.csv", "empty"], []),
    ("collateral-missing-file", _missing_file, ["book.collateral: no such file"], []),
    ("corr-not-psd", _cfg(lambda c: c["scenarios"].update(
        corr=[[1.0, 0.99, -0.99], [0.99, 1.0, 0.99], [-0.99, 0.99, 1.0]])),
     ["run.toml: scenarios.corr"], []),
    ("corr-wrong-shape", _cfg(lambda c: c["scenarios"].update(corr=[[1.0, 0.5], [0.5, 1.0]])),
     ["scenarios.corr: must be 3 x 3"], []),
    ("sigma-negative", _cfg(lambda c: c["scenarios"]["params"].update(sigma=[0.5, -0.7, 0.9])),
     ["scenarios.params.sigma"], []),
    ("model-param-unknown", _cfg(lambda c: c["scenarios"]["params"].update(kappa=2.0)),
     ["scenarios.params.kappa"], []),
    ("unknown-section-key", _cfg(lambda c: c["run"].update(levels=[0.99, 0.975])),
     ["run.levels: unknown key"], []),
    ("run-ci-ignored-before", _cfg(lambda c: c["run"].update(ci=0.9)),
     ["run.ci: unknown key"], []),
    ("mc-params-unused", _cfg(lambda c: c["methods"][0].update(params={"prices": "p.csv"})),
     ["methods[0].params.prices: unknown key"], []),
    ("span-level-unused", _cfg(lambda c: c["methods"][2].update(level=0.99)),
     ["methods[2].level: unknown key"], []),
    ("historical-prices-dict-missing", _cfg(_historical_dict_missing),
     ["methods[1].params.prices.BTC: no such file"], []),
    ("historical-prices-wrong-type", _cfg(lambda c: c["methods"][1]["params"].update(
        prices=3)), ["methods[1].params.prices"], []),
    ("method-type-unknown", _cfg(lambda c: c["methods"][0].update(type="magic")),
     ["methods[0]", "unknown method type"], []),
    ("level-out-of-range", _cfg(lambda c: c["methods"][0].update(level=1.5)),
     ["methods[0].level"], []),
    ("book-files-and-synthetic", _cfg(lambda c: c["book"].update(synthetic_accounts=10)),
     ["book: give either files"], []),
    ("n-scenarios-1e9", _cfg(lambda c: c["scenarios"].update(n_scenarios=1e9)),
     ["scenarios.n_scenarios"], []),
    ("n-scenarios-too-many", _cfg(lambda c: c["scenarios"].update(n_scenarios=10**9)),
     ["scenarios.n_scenarios", "50000000"], []),
    ("horizon-1e9-days", _cfg(lambda c: c["scenarios"].update(horizon_days=1e9)),
     ["scenarios.horizon_days", "365"], []),
    ("memory-budget-refusal", _cfg(lambda c: (c["scenarios"].update(n_scenarios=30_000_000),
                                              c["run"].update(memory_budget_mb=100))),
     ["run.memory_budget_mb", "estimated"], []),
    ("account-block-zero", _cfg(lambda c: c["run"].update(account_block=0)),
     ["run.account_block"], []),
    ("spot-negative", _cfg(lambda c: c["market"]["spot"].update(BTC=-1.0)),
     ["market.spot"], []),
    ("seed-negative", _cfg(lambda c: c["scenarios"].update(seed=-1)),
     ["scenarios.seed"], []),
    ("scheduler-cli-bad", _cfg(lambda c: None), ["--scheduler", "tcp://HOST:PORT"],
     ["--scheduler", "not an address"]),
    ("scheduler-config-bad", _cfg(lambda c: c.update(cluster={"scheduler": "localhost"})),
     ["cluster.scheduler"], []),
    ("tls-files-missing", _cfg(_tls_missing), ["cluster.tls_ca_file: no such file"], []),
    ("workers-negative", _cfg(lambda c: None), ["--workers"], ["--workers", "-2"]),
    ("output-empty", _cfg(lambda c: c["run"].update(output="")), ["run.output"], ["--own"]),
    ("output-outside-config", _cfg(lambda c: c["run"].update(output="../elsewhere")),
     ["run.output", "outside the configuration's folder"], ["--own"]),
]
BROKEN_TEXT = [
    ("toml-syntax", b"[book\nx = 1\n", ["not valid TOML"]),
    ("config-not-utf8", b"[book]\nx = \"\xff\"\n", ["not UTF-8"]),
]


def _run_case(finished: Path, tmp: Path, case) -> tuple[str, str | None]:
    cid, edit, fragments, extra = case
    folder = tmp / cid
    shutil.copytree(finished / "book", folder / "book")
    shutil.copy(finished / "prices.csv", folder / "prices.csv")
    cfg = base_config(folder)
    edit(folder, cfg)
    path = write_toml(folder / "run.toml", cfg)
    args = [a for a in extra if a != "--own"]
    out_args = [] if "--own" in extra else ["--output", str(finished / "out")]
    r = subprocess.run(_marginlab() + ["run", str(path), "--quiet", *out_args, *args],
                       capture_output=True, text=True, timeout=300, cwd=folder)
    return cid, _judge(r, fragments)


MESSAGES: dict[str, str] = {}


def _judge(r: subprocess.CompletedProcess, fragments: list[str]) -> str | None:
    err = r.stderr.strip()
    lines = [x for x in err.splitlines() if not x.startswith("marginlab: warning:")]
    MESSAGES[" ".join(r.args[-6:]) if isinstance(r.args, list) else str(r.args)] = err
    if r.returncode != 1:
        return f"exit {r.returncode}: {err[-500:]}"
    if "Traceback" in err or len(lines) != 1:
        return f"not one line: {err[-800:]}"
    if not lines[0].startswith("marginlab: error: ") or "internal error" in lines[0]:
        return f"not a clean refusal: {lines[0][:500]}"
    missing = [f for f in fragments if f not in lines[0]]
    return f"message lacks {missing}: {lines[0][:600]}" if missing else None


@pytest.mark.slow
def test_malformed_inputs_are_refused_in_one_line_and_the_finished_run_survives(
        finished, tmp_path):
    """Oracle (README contract, see the module docstring): every case exits 1 with one line
    naming file/line/column or key path, no traceback, and the finished run in the output
    folder is byte-for-byte unchanged afterwards."""
    before = snapshot(finished / "out")
    assert "manifest.json" in before
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: _run_case(finished, tmp_path, c), CASES))
    for cid, text, fragments in BROKEN_TEXT:
        folder = tmp_path / cid
        folder.mkdir()
        (folder / "run.toml").write_bytes(text)
        r = subprocess.run(_marginlab() + ["run", str(folder / "run.toml"), "--quiet"],
                           capture_output=True, text=True, timeout=300)
        results.append((cid, _judge(r, fragments)))
    for err in MESSAGES.values():
        print(err)  # the table of refusals, shown with pytest -s
    failures = {cid: why for cid, why in results if why is not None}
    assert not failures, json.dumps(failures, indent=1)
    assert len(results) == len(CASES) + len(BROKEN_TEXT) >= 40
    assert snapshot(finished / "out") == before


def test_memory_refusal_allocates_nothing(tmp_path):
    """Oracle (sizes known before allocation): 30 million scenarios on a 100 MB budget are
    refused from the estimate; the refusing process's peak RSS stays that of the imports
    (< 600 MB; the scenario set alone would be 2.9 GB)."""
    folder = make_folder(tmp_path / "mem")
    cfg = base_config(folder)
    cfg["scenarios"]["n_scenarios"] = 30_000_000
    cfg["run"]["memory_budget_mb"] = 100
    path = write_toml(folder / "run.toml", cfg)
    code = ("import resource, sys\nfrom marginlab.models.app.cli import main\n"
            f"rc = main(['run', {str(path)!r}, '--quiet'])\n"
            "print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    rc, peak_kib = r.stdout.split()
    assert rc == "1" and "run.memory_budget_mb" in r.stderr, r.stderr
    assert int(peak_kib) / 1024 < 600, peak_kib
    assert not (folder / "out").exists()


# ----------------------------------------------------------------------------- identity
def _leaf_edits(d: dict, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaf_edits(v, (*prefix, k))
        else:
            yield (*prefix, k), v


def _changed(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v * 0.97 + 1 if isinstance(v, float) else v + 1
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, list):
        return v + v[-1:] if not v or not isinstance(v[0], list) else [r[:] for r in v[::-1]]
    return v


def test_every_configuration_field_changes_the_run_identity(tmp_path):
    """Oracle (brute force over the schema): changing any leaf field of the configuration
    that can affect numbers changes its digest; only the documented non-numeric fields
    (output folder, report switch, cluster placement) do not."""
    folder = make_folder(tmp_path / "cfg")
    base = base_config(folder)
    base["run"]["memory_budget_mb"] = 4000.0
    base_digest = config_from_dict(base, folder).digest()
    neutral = {("run", "output"), ("run", "report"), ("run", "output_outside_config")}
    tried = 0
    for path, value in _leaf_edits(json.loads(json.dumps(base))):
        if path[0] == "methods":
            continue
        cfg = json.loads(json.dumps(base))
        node = cfg
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = _changed(value)
        try:
            digest = config_from_dict(cfg, folder).digest()
        except ValueError:
            continue  # the change is itself invalid (e.g. a reordered correlation)
        tried += 1
        assert (digest == base_digest) == (path in neutral), path
    for i, m in enumerate(base["methods"]):
        for key, value in _leaf_edits({k: v for k, v in m.items() if k != "type"}):
            cfg = json.loads(json.dumps(base))
            node = cfg["methods"][i]
            for k in key[:-1]:
                node = node[k]
            node[key[-1]] = _changed(value)
            try:
                digest = config_from_dict(cfg, folder).digest()
            except ValueError:
                continue
            tried += 1
            assert digest != base_digest, ("methods", i, key)
    assert tried >= 20


def test_every_input_file_changes_the_run_identity(tmp_path):
    """Oracle (brute force): one byte changed in any input file (book tables, price file)
    changes the run identity; the same files give the same identity."""
    folder = make_folder(tmp_path / "inp")
    cfg = config_from_dict(base_config(folder), folder)
    files = cfg.input_files()
    assert set(files) == {"book.instruments", "book.positions", "book.collateral",
                          "methods[1].params.prices"}
    ref = run_identity(cfg.digest(), files)["id"]
    assert run_identity(cfg.digest(), files)["id"] == ref
    for key, p in files.items():
        data = p.read_bytes()
        p.write_bytes(data + b"\n")
        assert run_identity(cfg.digest(), files)["id"] != ref, key
        p.write_bytes(data)


def _tables(out) -> list[pd.DataFrame]:
    return [pq.read_table(getattr(out, n)).to_pandas() for n in ("accounts", "allocations")]


@pytest.mark.slow
def test_resume_after_the_book_changed_recomputes_everything(tmp_path):
    """Oracle (fresh run on the new book): interrupt after one block, double every quantity
    in positions.csv, resume: no block of the old book is reused and the outputs equal a
    fresh run on the doubled book."""
    folder = make_folder(tmp_path / "chg")
    cfg_d = base_config(folder)
    cfg_d["methods"] = cfg_d["methods"][:1]
    cfg = config_from_dict(cfg_d, folder)
    with pytest.raises(SystemExit):
        run_batch(cfg, progress=False, stop_after=1)
    p = folder / "book" / "positions.csv"
    df = pd.read_csv(p, dtype={"account_id": str, "instrument_id": str})
    df["quantity"] *= 2
    df.to_csv(p, index=False)
    res = run_batch(cfg, resume=True, progress=False)
    assert res.info["blocks_resumed"] == 0
    fresh = run_batch(cfg, progress=False, output=tmp_path / "fresh")
    for a, b in zip(_tables(res), _tables(fresh), strict=True):
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "tamper", "drop-record"])
def test_damaged_checkpoint_is_detected_and_recomputed(tmp_path, damage):
    """Oracle (uninterrupted run): a checkpoint block truncated, rewritten with other
    numbers (a valid Parquet file), or missing its checksum record is recomputed on resume;
    the outputs equal an uninterrupted run's."""
    folder = make_folder(tmp_path / "dmg")
    cfg_d = base_config(folder)
    cfg_d["methods"] = cfg_d["methods"][:1]
    cfg = config_from_dict(cfg_d, folder)
    ref = run_batch(cfg, progress=False, output=tmp_path / "ref")
    with pytest.raises(SystemExit):
        run_batch(cfg, progress=False, stop_after=2)
    ckpt = next((folder / "out" / ".checkpoints").iterdir())
    acc = ckpt / "block_000000.accounts.parquet"
    if damage == "truncate":
        acc.write_bytes(acc.read_bytes()[:100])
    elif damage == "tamper":
        t = pq.read_table(acc).to_pandas()
        t["im"] *= 0.5
        t.to_parquet(acc, index=False)
    else:
        (ckpt / "block_000000.json").unlink()
    res = run_batch(cfg, resume=True, progress=False)
    assert res.info["blocks_resumed"] == 1
    for a, b in zip(_tables(res), _tables(ref), strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_a_second_writer_is_refused(tmp_path):
    """Oracle (one writer per folder): while a run holds the output folder's lock, a second
    ``marginlab run`` on it exits 1 naming the holder, and writes nothing."""
    folder = make_folder(tmp_path / "lock")
    path = write_toml(folder / "run.toml", base_config(folder))
    out = folder / "out"
    out.mkdir()
    with OutputLock(out):
        r = subprocess.run(_marginlab() + ["run", str(path), "--quiet"], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 1, r.stderr
        assert "another marginlab run (pid" in r.stderr and "Traceback" not in r.stderr
        assert sorted(x.name for x in out.iterdir()) == [".marginlab.lock"]


def test_collateral_only_account_is_margined(tmp_path):
    """Oracle (hand count): an account with collateral and no position gets a row per
    method with IM = MM = 0 and excess = its collateral value; the run finishes."""
    folder = make_folder(tmp_path / "colonly")
    c = folder / "book" / "collateral.csv"
    dc = pd.read_csv(c, dtype={"account_id": str})
    extra = pd.DataFrame({"account_id": ["zz-cash-only"], "asset": ["USDT"],
                          "amount": [1234.5], "haircut": [0.0]})
    pd.concat([dc, extra]).to_csv(c, index=False)
    cfg_d = base_config(folder)
    cfg_d["run"]["account_block"] = 1  # the cash-only account is a block of its own
    res = run_batch(config_from_dict(cfg_d, folder), progress=False)
    acc = pd.read_parquet(res.accounts)
    rows = acc[acc["account_id"] == "zz-cash-only"]
    assert len(rows) == len(cfg_d["methods"])
    assert (rows["im"] == 0).all() and (rows["mm"] == 0).all()
    np.testing.assert_allclose(rows["excess"], 1234.5)


def test_outputs_carry_units_and_run_metadata(tmp_path):
    """Oracle (README, outputs): every money column of accounts.parquet carries unit USD in
    its field metadata, and the schema metadata names the run id of the manifest."""
    folder = make_folder(tmp_path / "units")
    cfg_d = base_config(folder)
    cfg_d["methods"] = cfg_d["methods"][:1]
    res = run_batch(config_from_dict(cfg_d, folder), progress=False)
    schema = pq.read_schema(res.accounts)
    assert schema.field("im").metadata[b"unit"] == b"USD"
    meta = json.loads(schema.metadata[b"marginlab.run"])
    assert meta["run_id"] == json.loads(res.manifest.read_text())["run_id"]
    assert os.path.basename(res.accounts) == "accounts.parquet"


# ----------------------------------------------------------------------------- clusters
def _wait_for(pred, timeout: float, what: str) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_losing_every_dask_worker_is_one_resumable_line(tmp_path):
    """Oracle (README contract; fresh in-process run): a real scheduler and a single worker
    (``dask scheduler`` / ``dask worker --no-nanny`` processes on loopback); the worker is
    SIGKILLed after the first block is checkpointed. ``marginlab run`` exits 1 with one line
    that says to rerun with --resume, prints no distributed INFO lines, keeps its
    checkpoints and writes no manifest; the resumed run reuses them and equals a fresh
    run."""
    pytest.importorskip("dask.distributed")
    import signal

    folder = make_folder(tmp_path / "dask")
    cfg_d = base_config(folder)
    cfg_d["methods"] = cfg_d["methods"][:1]
    cfg_d["scenarios"]["n_scenarios"] = 100_000
    cfg_d["run"]["account_block"] = 2
    cfg_d["cluster"] = {"lost_workers_timeout_s": 3.0}
    path = write_toml(folder / "run.toml", cfg_d)
    sfile = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sfile)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        _wait_for(sfile.exists, 60, "the scheduler file")
        _wait_for(lambda: json.loads(sfile.read_text() or "{}").get("address"), 30,
                  "the scheduler address")
        address = json.loads(sfile.read_text())["address"]
        worker = subprocess.Popen(
            ["dask", "worker", "--scheduler-file", str(sfile), "--nthreads", "1",
             "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(worker)
        run = subprocess.Popen(_marginlab() + ["run", str(path), "--scheduler", address],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(run)
        ckpt = folder / "out" / ".checkpoints"
        _wait_for(lambda: ckpt.exists() and list(ckpt.glob("*/block_*.json")), 300,
                  "a checkpointed block")
        worker.send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    lines = [x for x in err.strip().splitlines() if not x.startswith("marginlab run:")]
    assert run.returncode == 1, err
    assert len(lines) == 1 and lines[0].startswith("marginlab: error:"), err
    assert "--resume" in lines[0] and "blocks are checkpointed" in lines[0], err
    assert "INFO" not in err and "Traceback" not in err
    assert not (folder / "out" / "manifest.json").exists()
    cfg = config_from_dict(cfg_d, folder)
    res = run_batch(cfg, resume=True, progress=False)
    assert res.info["blocks_resumed"] >= 1
    fresh = run_batch(cfg, progress=False, output=tmp_path / "fresh")
    for a, b in zip(_tables(res), _tables(fresh), strict=True):
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_local_cluster_run_prints_no_distributed_logs(tmp_path):
    """Oracle (README: logs only with --verbose; law: cluster == one process): ``marginlab
    run --workers 1`` writes nothing to stderr and its accounts equal the in-process run's."""
    pytest.importorskip("dask.distributed")
    folder = make_folder(tmp_path / "quiet")
    cfg_d = base_config(folder)
    cfg_d["methods"] = cfg_d["methods"][:1]
    path = write_toml(folder / "run.toml", cfg_d)
    r = subprocess.run(_marginlab() + ["run", str(path), "--workers", "1", "--quiet"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
    ref = run_batch(config_from_dict(cfg_d, folder), progress=False, output=tmp_path / "ref")
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "out" / "accounts.parquet"),
                                  pd.read_parquet(ref.accounts))


@pytest.mark.slow
def test_two_concurrent_runs_on_one_folder(tmp_path):
    """Oracle (one writer per folder; reference run): two ``marginlab run`` processes started
    together on one output folder never mix: each either finishes or is refused with the
    lock message, at least one finishes, and the folder ends with one complete run equal to
    a reference run; no temporary file is left."""
    folder = make_folder(tmp_path / "two")
    cfg_d = base_config(folder)
    cfg_d["methods"] = cfg_d["methods"][:1]
    cfg_d["scenarios"]["n_scenarios"] = 50_000
    cfg_d["run"]["account_block"] = 5
    path = write_toml(folder / "run.toml", cfg_d)
    procs = [subprocess.Popen(_marginlab() + ["run", str(path), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        assert rc == 0 or (rc == 1 and "another marginlab run" in err), (rc, err)
    ref = run_batch(config_from_dict(cfg_d, folder), progress=False, output=tmp_path / "ref")
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "out" / "accounts.parquet"),
                                  pd.read_parquet(ref.accounts))
    assert (folder / "out" / "manifest.json").is_file()
    assert not list((folder / "out").rglob("*.tmp"))
