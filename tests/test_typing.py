"""The type checker over the package: ``python -m mypy -p marginlab`` reports no error.

Oracle: mypy itself, configured by ``[tool.mypy]`` in pyproject.toml. Every module of
``marginlab`` is analysed; errors are reported for the public API the configuration lists
(package ``__init__``s and the modules defining what they export; the list and what is not
in it yet are documented there).
The source tree is laid out as the installed package (``marginlab/simulate`` ->
``simulate/``, ``marginlab/models`` -> ``models/``) with symbolic links in a temporary
folder, so that mypy checks this checkout whatever is installed. About 10-30 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_reports_no_error(tmp_path):
    """mypy exits 0 on the package (its report is shown on failure)."""
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is not installed: it is in the 'test' extra (pip install -e '.[test]')")
    pkg = tmp_path / "marginlab"
    pkg.mkdir()
    (pkg / "simulate").symlink_to(ROOT / "simulate", target_is_directory=True)
    (pkg / "models").symlink_to(ROOT / "models", target_is_directory=True)
    top = ROOT / "marginlab"
    if (top / "__init__.py").is_file():
        for f in top.glob("*.py"):
            (pkg / f.name).symlink_to(f)
    else:
        (pkg / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), "--no-error-summary", "-p", "marginlab"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
