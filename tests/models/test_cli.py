"""The installed ``marginlab`` command, run as a user runs it (a subprocess).

Oracles, per test: the CLI contract (``--help`` exits 0; ``demo`` prints one block per
market model; a bad argument exits non-zero with one ``marginlab: error:`` line on stderr
naming the argument, and no traceback); for the demo's numbers, the models' zero drift
(E[S_T]/S0 = 1 within many standard errors).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _command() -> list[str]:
    """The ``marginlab`` console script of this interpreter, else ``python -m``."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("marginlab", path=search)
    if exe is not None:
        return [exe]
    return [sys.executable, "-m", "marginlab.models.app.cli"]


def marginlab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([*_command(), *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


@pytest.mark.parametrize(
    "args, expected",
    [(("--help",), ["demo", "--verbose"]), (("demo", "--help"), ["--paths", "--days", "--seed"])],
)
def test_help_exits_zero(tmp_path, args, expected):
    """Oracle (CLI contract): ``--help`` exits 0 and lists the subcommand / its options."""
    proc = marginlab(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: marginlab")
    for word in expected:
        assert word in proc.stdout
    assert proc.stderr == ""


def test_no_subcommand_prints_help_and_fails(tmp_path):
    """Oracle (CLI contract): a bare ``marginlab`` shows usage and exits non-zero."""
    proc = marginlab(cwd=tmp_path)
    assert proc.returncode != 0
    assert "usage: marginlab" in proc.stdout + proc.stderr


def test_demo_runs_every_model(tmp_path):
    """Oracle (CLI contract + zero drift): ``demo --paths 2000 --days 2`` exits 0, names GBM,
    Merton, GARCH and FHS with a BTC and an ETH row each, prints no NaN, and each model's
    E[S_T]/S0 is 1 within 0.02 (> 10 standard errors at 2000 paths and 2 days)."""
    proc = marginlab("demo", "--paths", "2000", "--days", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    for model in ("GBM", "Merton", "GARCH", "FHS"):
        assert model in out, model
    assert "nan" not in out.lower()
    row = re.compile(r"^(?P<model>\S.*?)\s+(?P<asset>BTC|ETH)\s+(?P<ratio>\d+\.\d+)\s")
    rows = [m for m in map(row.match, out.splitlines()) if m]
    assert len(rows) == 8, out
    for model in ("GBM", "Merton", "GARCH", "FHS"):
        assert {m["asset"] for m in rows if model in m["model"]} == {"BTC", "ETH"}, model
    for m in rows:
        assert abs(float(m["ratio"]) - 1.0) < 0.02, m.string

@pytest.mark.parametrize("args, name", [(("--paths", "0"), "n_paths"),
                                        (("--paths", "-5"), "n_paths")])
def test_demo_bad_paths_is_a_one_line_error(tmp_path, args, name):
    """Oracle (CLI contract): an invalid path count exits non-zero with exactly one stderr
    line, ``marginlab: error: ...`` naming ``n_paths``, and no traceback."""
    proc = marginlab("demo", *args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("marginlab: error:")
    assert name in lines[0]
