"""Build the Sphinx documentation (API reference + notebooks) so it cannot rot.

Oracle: Sphinx itself (``sphinx-build`` exits 0 and writes no warning or error: a broken
docstring, a dangling reference or a failing notebook cell is reported), and the sources the
pages are built from: each public name of ``marginlab.simulate`` / ``marginlab.models`` gets
an anchor in the API pages carrying its docstring's first line, and the executed notebooks
carry outputs (figures) that the stored notebooks do not have.

Notebooks are executed with ``MARGINLAB_DOCS_EXECUTE=fast``: 01, 02 and 05 (a few seconds
each); 03 (every margin method on one book) and 04 (calibration and rolling backtests, ~50 s
alone) are shown as stored, without outputs, to keep this test short.
``tests/test_notebooks.py`` executes all five.
"""

from __future__ import annotations

import html
import inspect
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("numpydoc")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    warnings = out / "warnings.txt"
    env = {**os.environ, "MARGINLAB_DOCS_EXECUTE": "fast", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(warnings),
         "-d", str(out / "doctrees"), str(ROOT / "docs"), str(out / "html")],
        capture_output=True, text=True, env=env, timeout=900)
    return proc, warnings.read_text() if warnings.exists() else "", out / "html"


@pytest.mark.slow
def test_docs_build_without_warnings(built):
    """sphinx-build exits 0 and its warning file is empty (warnings listed on failure)."""
    proc, warnings, html_dir = built
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert warnings.strip() == "", warnings
    assert (html_dir / "index.html").exists()


@pytest.mark.slow
def test_api_reference_covers_the_public_api(built):
    """Every name in ``__all__`` of both packages has an anchor and its docstring's summary."""
    import marginlab.models as models
    import marginlab.simulate as simulate

    _, _, html_dir = built
    pages = {"simulate": (simulate, "marginlab.simulate"),
             "models": (models, "marginlab.models")}
    for page, (mod, prefix) in pages.items():
        text = html.unescape((html_dir / "api" / f"{page}.html").read_text())
        plain = re.sub(r"<[^>]+>", "", text)
        for smart, ascii_ in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'),
                              ("\u201d", '"'), ("\u2013", "--"), ("\u2014", "---")):
            plain = plain.replace(smart, ascii_)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
                continue
            assert f'id="{prefix}.{name}"' in text, f"{prefix}.{name} missing from {page}"
            doc = inspect.getdoc(obj)
            if doc:
                first = " ".join(doc.split("\n\n")[0].split())
                words = list(itertools.takewhile(lambda w: not set("`:*|\\_~") & set(w),
                                                 first.split()))[:4]
                assert " ".join(words) in " ".join(plain.split()), (name, words)
    runs = (html_dir / "api" / "runs.html").read_text()
    assert 'id="marginlab.models.app.report.write_report"' in runs
    assert 'id="marginlab.models.compare.plot_method_vs_method"' in runs


@pytest.mark.slow
def test_notebooks_rendered_with_outputs(built):
    """The executed notebooks (01, 02, 05) carry figures; 03 and 04 are rendered as stored."""
    _, _, html_dir = built
    nbs = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(nbs) == 5
    for nb in nbs:
        page = (html_dir / "notebooks" / f"{nb.stem}.html").read_text()
        if nb.stem[:2] in ("03", "04"):
            assert "cell_output" not in page
        else:
            assert "cell_output" in page, nb.stem
            assert re.search(r'<img[^>]+src="[^"]*\.png"', page), nb.stem
