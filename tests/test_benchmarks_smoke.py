"""Smoke test of the benchmark harness: ``python -m benchmarks --quick`` in a subprocess.

Oracle: the harness's own contract. Every benchmark runs and yields rows whose ratio is
finite and positive, and ``--write`` replaces exactly the text between the results markers.
No time is asserted: tests never time things (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- results:paths:start -->"
END = "<!-- results:paths:end -->"

pytest.importorskip("QuantLib")
pytest.importorskip("arch")


def _bench(*args: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("benchmarks")
    doc = tmp / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", doc)
    out = tmp / "results.json"
    proc = _bench("--quick", "--json", str(out), "--write", "--doc", str(doc))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), doc.read_text(), proc.stdout


def test_every_row_has_a_finite_positive_ratio(quick_run):
    results, _, _ = quick_run
    rows = results["subjects"]["paths"]["rows"]
    assert rows
    for row in rows:
        for key in ("ratio", "value", "baseline"):
            assert math.isfinite(row[key]) and row[key] > 0.0, (row["name"], key, row[key])
        assert row["status"] in {"pass", "FAIL", "info"}


def test_every_benchmark_of_the_brief_reports(quick_run):
    results, _, stdout = quick_run
    names = {row["name"].split(" ")[0] for row in results["subjects"]["paths"]["rows"]}
    expected = {
        "normal.limit", "gbm.paths", "gbm.terminal", "merton.paths", "merton.terminal",
        "garch.paths", "garch.terminal", "gjr_t.paths", "gjr_t.terminal",
        "memory.terminal", "memory.extremes", "compile.import", "compile.gbm", "page",
    }  # fmt: skip
    assert expected <= names
    peers = {row["baseline_name"] for row in results["subjects"]["paths"]["rows"]}
    assert {"numpy (1 thread), reused buffers", "numpy (1 thread), fresh arrays",
            "QuantLib paths into array", "arch forecast(simulation)"} <= peers
    assert "| benchmark" in stdout and "target(s) met" in stdout


def _outside_results(text: str) -> str:
    """The document with every results section (between its markers) removed."""
    import re

    return re.sub(r"<!-- results:(\w+):start -->.*?<!-- results:\1:end -->", "", text,
                  flags=re.S)


def test_write_replaces_only_the_results_sections(quick_run):
    """--write changes nothing outside the results markers, and fills every subject's."""
    results, written, _ = quick_run
    original = (ROOT / "BENCHMARKS.md").read_text()
    assert _outside_results(written) == _outside_results(original)
    section = written.split(START)[1].split(END)[0]
    assert "python -m benchmarks --quick" in section and "| gbm.paths" in section
    for subject in results["subjects"]:
        body = written.split(f"<!-- results:{subject}:start -->")[1].split(
            f"<!-- results:{subject}:end -->")[0]
        assert "| benchmark" in body, subject


def test_refuses_quick_results_in_the_real_document():
    proc = _bench("--quick", "--write", timeout=60.0)
    assert proc.returncode == 2 and "--write" in proc.stderr


def test_rejects_an_unknown_name():
    proc = _bench("--quick", "--only", "no_such_benchmark", timeout=60.0)
    assert proc.returncode != 0 and "unknown name" in proc.stderr


def test_engine_benchmark_reports(quick_run):
    """The live-engine subject reports its what-if latency, full re-margin, re-mark and HTTP
    load-test rows."""
    results, _, _ = quick_run
    rows = results["subjects"]["engine"]["rows"]
    names = {row["name"].split(" ")[0] for row in rows}
    assert {"what_if.median", "what_if.p99", "remargin.full", "remark.tick",
            "service.what_if"} <= names
    for row in rows:
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0.0, row["name"]
