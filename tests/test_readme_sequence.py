"""The README's two set-up commands, run as written, in order, in a fresh virtualenv.

Oracle (the README is the contract): on a fresh machine a user copies the two commands of
"Set up on a fresh machine" into a shell with a new virtualenv active. The first must
install and run the demo; the second must install the test extras and run pytest without a
collection error. A regression of issue 11 (the demo's compiled kernels left inside
``site-packages`` turned ``marginlab.simulate`` into an empty namespace package that shadowed
the editable install: 19 collection errors) fails here.

The inner pytest collects every test module (so any import error fails it) but runs only a
small selection (``PYTEST_ADDOPTS``), and skips this test inside itself. Packages come from
the package index through pip's cache, so the first CI run on a machine pays the download.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INNER = "MARGINLAB_README_SEQUENCE_INNER"

_COPY_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", "build", "dist", ".ruff_cache", ".pytest_cache",
    ".hypothesis", "*.nbi", "*.nbc", "*.pyc", "marginlab-output", "marginlab-demo-output",
    "dask-scratch-space",
)  # fmt: skip


def readme_setup_commands(text: str) -> list[str]:
    """The shell commands of the README's "Set up on a fresh machine" section, in order."""
    m = re.search(r"^## Set up on a fresh machine\n(.*?)(?=^## )", text, re.S | re.M)
    if m is None:
        raise AssertionError("README.md has no '## Set up on a fresh machine' section")
    return [c.strip() for c in re.findall(r"```bash\n(.*?)```", m.group(1), re.S)]


def test_readme_has_exactly_two_setup_commands():
    """Oracle (the developers' guide): the README holds exactly two set-up commands, the
    first installs and runs the demo, the second installs the test extras and runs pytest,
    and .ci/run runs the same test command."""
    cmds = readme_setup_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(cmds) == 2, cmds
    assert "pip install ." in cmds[0] and "marginlab demo" in cmds[0]
    assert '".[test]"' in cmds[1] and "pytest" in cmds[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert cmds[1].replace('"', "").split("&&")[0].strip().split()[-1] == ".[test]"
    assert 'pip install -q -e ".[test]" && python -m pytest -q' in ci


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get(INNER) == "1", reason="this test is the outer run")
def test_readme_sequence_in_a_fresh_virtualenv(tmp_path):
    """Oracle (README contract, see the module docstring): both commands exit 0 in a fresh
    virtualenv, in order; the demo writes its manifest; no compiled kernel lands inside the
    installed package; the inner pytest reports passed tests and no error."""
    src = tmp_path / "marginlab"
    shutil.copytree(REPO, src, ignore=_COPY_IGNORE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bindir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")}
    env.update(
        VIRTUAL_ENV=str(venv), PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        MARGINLAB_CACHE_DIR=str(tmp_path / "kernel-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1",
        MPLBACKEND="Agg",
    )
    first, second = readme_setup_commands((src / "README.md").read_text(encoding="utf-8"))

    one = subprocess.run(["bash", "-c", first], cwd=src, env=env, capture_output=True,
                         text=True, timeout=1500)
    assert one.returncode == 0, (one.stdout[-3000:], one.stderr[-3000:])
    assert (src / "marginlab-demo-output" / "manifest.json").is_file()
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "marginlab" / "simulate" / "paths.py").is_file()
    assert not list((site / "marginlab").rglob("*.nbi")), "kernels cached inside the package"

    env_inner = dict(env, PYTEST_ADDOPTS="-k 'test_public_api or layering'", **{INNER: "1"})
    two = subprocess.run(["bash", "-c", second], cwd=src, env=env_inner, capture_output=True,
                         text=True, timeout=1500)
    out = two.stdout[-4000:] + two.stderr[-3000:]
    assert two.returncode == 0, out
    assert "error" not in two.stdout.lower().split("\n")[-2], out
    assert re.search(r"\d+ passed", two.stdout), out
