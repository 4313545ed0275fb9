"""``marginlab init``, the example configurations of ``examples/`` and the configuration the
demo writes, run through the installed ``marginlab`` in a subprocess.

Oracles, per test: the configuration schema itself (every section, method type and
``params`` field of :mod:`marginlab.models.app.config` appears in the template; the template
validates); the CLI contract (``marginlab run`` exits 0 on a configuration the tool wrote;
a refused overwrite exits 1 with one line and leaves the file byte for byte); determinism
(the same configuration and seed give identical numbers, so the demo's numbers are
reproduced by rerunning the configuration it wrote).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from marginlab.models.app.config import METHOD_SCHEMAS, METHOD_TYPES, RunConfig, config_from_dict
from marginlab.models.app.config_template import example_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def _command() -> list[str]:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("marginlab", path=search)
    return [exe] if exe is not None else [sys.executable, "-m", "marginlab"]


def marginlab(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _fields_in(text: str) -> set[str]:
    """Keys set or shown commented out (``key =`` / ``# key =``) in a TOML text."""
    return set(re.findall(r"^(?:# )?([A-Za-z_][A-Za-z0-9_]*) =", text, flags=re.M))


def test_template_shows_every_section_method_type_and_field():
    """Oracle (the schema): every section of RunConfig appears as a table header, every
    method type as ``type = "..."``, and every field of every section, method and params
    schema as a ``key =`` line (set, or commented out with its default)."""
    text = example_config()
    keys = _fields_in(text)
    for sec, f in RunConfig.model_fields.items():
        if sec in ("base_dir", "source", "methods"):
            continue
        assert re.search(rf"^(# )?\[{sec}\]$", text, flags=re.M), sec
        model = next(a for a in (f.annotation, *getattr(f.annotation, "__args__", ()))
                     if isinstance(a, type) and hasattr(a, "model_fields"))
        assert set(model.model_fields) <= keys, (sec, set(model.model_fields) - keys)
    for mtype in METHOD_TYPES:
        assert re.search(rf'^(# )?type = "{mtype}"$', text, flags=re.M), mtype
        schema = METHOD_SCHEMAS[mtype]
        params = schema.model_fields["params"].annotation
        assert set(schema.model_fields) - {"params"} <= keys, mtype
        assert set(params.model_fields) <= keys, (mtype, set(params.model_fields) - keys)


def test_template_with_every_method_enabled_validates(tmp_path):
    """Oracle (the schema): with the commented-out method types enabled (historical on
    price files that exist), the template is a valid configuration with one method of each
    type."""
    prices = {}
    for u in ("BTC", "ETH", "SOL"):
        p = tmp_path / f"{u.lower()}.csv"
        p.write_text("date,close\n2024-01-01,100\n2024-01-02,101\n2024-01-03,99\n")
        prices[u] = p.name
    text = example_config(enable=("historical", "tiered", "dydx"),
                          params={"historical": {"prices": prices, "filtered": True}})
    cfg = config_from_dict(tomllib.loads(text), tmp_path, "template")
    assert sorted(m.type for m in cfg.methods) == sorted(METHOD_TYPES)


def test_init_writes_a_configuration_that_runs(tmp_path):
    """Oracle (CLI contract): ``marginlab init`` writes a file that ``marginlab run`` accepts
    as written (exit 0, one summary row per active method); a second ``init`` without
    ``--force`` exits 1 with one line and leaves the file as it was; with ``--force`` it
    rewrites it."""
    proc = marginlab("init", "my.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "my.toml"
    before = path.read_bytes()
    path.write_bytes(before + b"\n# edited\n")
    again = marginlab("init", "my.toml", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "--force" in again.stderr, again.stderr
    assert path.read_bytes() == before + b"\n# edited\n"
    forced = marginlab("init", "my.toml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert path.read_bytes() == before

    run = marginlab("run", "my.toml", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = pd.read_csv(tmp_path / "marginlab-output" / "summary.csv")
    active = [m.name or m.type for m in config_from_dict(
        tomllib.loads(before.decode()), tmp_path).methods]
    assert list(summary["method"]) == active
    assert (summary["total_im"] > 0).all()


def _missing_inputs(cfg: dict, folder: Path) -> list[Path]:
    """Price files a configuration reads that are absent (the shared market data)."""
    out = []
    for m in cfg["methods"]:
        prices = m.get("params", {}).get("prices")
        if prices is not None:
            values = [prices] if isinstance(prices, str) else list(prices.values())
            out += [folder / v for v in values if not (folder / v).is_file()]
    return out


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_example_configuration_runs(tmp_path, example):
    """Oracle (CLI contract): each configuration of ``examples/`` runs as written, in place,
    through ``marginlab run`` (exit 0, a positive IM for each of its methods); an example
    reading the shared market data is skipped when that data is absent."""
    cfg = tomllib.loads((EXAMPLES / example).read_text())
    missing = _missing_inputs(cfg, EXAMPLES)
    if missing:
        pytest.skip(f"input files absent: {missing[0]}")
    out = tmp_path / "out"
    run = marginlab("run", str(EXAMPLES / example), "--output", str(out), "--quiet",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"]) == [m.get("name", m["type"]) for m in cfg["methods"]]
    assert (summary["total_im"] > 0).all()


def test_demo_writes_the_configuration_it_ran(tmp_path):
    """Oracle (determinism): ``marginlab demo`` writes ``config.toml`` beside its outputs;
    ``marginlab run`` on that file reproduces the demo's summary and per-account margins
    exactly (same configuration, same seed)."""
    demo = marginlab("demo", "--paths", "500", "--accounts", "60", "--scenarios", "500",
                     "--output", "demo-out", "--quiet", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    written = tmp_path / "demo-out" / "config.toml"
    assert written.is_file()
    rerun = marginlab("run", str(written), "--quiet", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    first = pd.read_parquet(tmp_path / "demo-out" / "accounts.parquet")
    second = pd.read_parquet(tmp_path / "demo-out" / "rerun" / "accounts.parquet")
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "demo-out" / "summary.csv"),
                                  pd.read_csv(tmp_path / "demo-out" / "rerun" / "summary.csv"))


def test_version_and_python_dash_m(tmp_path):
    """Oracle (the installed distribution's metadata): ``marginlab.__version__``,
    ``marginlab --version`` and ``python -m marginlab --version`` all give the version of
    the installed ``marginlab`` distribution; ``python -m marginlab --help`` is the same
    command as ``marginlab --help``."""
    from importlib.metadata import version

    import marginlab

    expected = version("marginlab")
    assert marginlab.__version__ == expected
    for cmd in (_command(), [sys.executable, "-m", "marginlab"]):
        proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"marginlab {expected}"
    helps = [subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path).stdout
             for cmd in (_command(), [sys.executable, "-m", "marginlab"])]
    assert helps[0] == helps[1] and "init" in helps[0] and "calibrate" in helps[0]
