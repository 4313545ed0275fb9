"""Execute every notebook in ``notebooks/`` top to bottom.

The oracle is that the notebook runs without error: each notebook asserts its own key results
(e.g. fat tails of GARCH against GBM, ES >= VaR), so a failed check fails this test.
Notebooks are stored without outputs; this test never writes them back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "python3"
CELL_TIMEOUT = 600  # seconds per cell


def _ensure_kernelspec() -> None:
    """Install an ipykernel ``python3`` kernelspec for this interpreter if none exists."""
    from jupyter_client.kernelspec import find_kernel_specs

    if KERNEL_NAME in find_kernel_specs():
        return
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", KERNEL_NAME],
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ensure_kernelspec()
    monkeypatch.setenv("MPLBACKEND", "Agg")  # inherited by the kernel process
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's cwd
    )
    client.execute()
