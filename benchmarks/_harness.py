"""Timing, memory and reporting helpers shared by the ``bench_*.py`` files.

Conventions (see ``BENCHMARKS.md``):

* Every throughput is reported beside a baseline timed in the same process and run, and
  judged by the *ratio*: the machine is shared and noisy, so absolute numbers drift while
  ratios of two measurements taken moments apart are much more stable.
* A timing is the best (minimum) of several repeats of a call whose compilation was done
  beforehand, in a setup step; compile time is measured separately, in fresh processes.
* Peak memory is measured in a fresh subprocess, so that nothing the harness itself has
  allocated counts.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Benchmark",
    "Row",
    "Target",
    "best_of",
    "best_of_each",
    "compile_rows",
    "format_table",
    "machine_info",
    "peak_rss",
    "replace_results",
    "run_snippet",
]


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Target:
    """A pass/fail criterion on a row's ``ratio`` or on its absolute ``value``.

    ``op`` is ``">="`` or ``"<"``; ``on`` is ``"ratio"`` or ``"value"``.
    """

    op: str
    threshold: float
    on: str = "ratio"

    def __post_init__(self) -> None:
        if self.op not in (">=", "<"):
            raise ValueError(f"Target.op must be '>=' or '<', got {self.op!r}")
        if self.on not in ("ratio", "value"):
            raise ValueError(f"Target.on must be 'ratio' or 'value', got {self.on!r}")

    def check(self, row: Row) -> bool:
        x = row.ratio if self.on == "ratio" else row.value
        if not math.isfinite(x):
            return False
        return x >= self.threshold if self.op == ">=" else x < self.threshold

    def describe(self, unit: str) -> str:
        if self.on == "ratio":
            return f"ratio {self.op} {self.threshold:g}"
        return f"{self.op} {self.threshold:g} {unit}"


@dataclass
class Row:
    """One line of the results table.

    ``value`` is what we measured for marginlab (in ``unit``), ``baseline`` the reference it
    is compared with (same unit unless ``baseline_unit`` says otherwise), ``baseline_name``
    what that reference is, and ``ratio`` their quotient as defined by the benchmark (always
    oriented so the target reads naturally, e.g. ours / peer).
    """

    name: str
    value: float
    unit: str
    baseline: float
    baseline_name: str
    ratio: float
    target: Target | None = None
    note: str = ""
    baseline_unit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.target is None:
            return "info"
        return "pass" if self.target.check(self) else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = None if self.target is None else self.target.describe(self.unit)
        d["status"] = self.status
        return d


@dataclass(frozen=True)
class Benchmark:
    """A named group of measurements: ``func(ctx)`` returns its rows.

    ``ctx`` is a per-file object (whatever the file's ``make_context`` returns) that holds the
    run's sizes and memoises shared measurements such as a baseline rate.
    """

    name: str
    func: Callable[[Any], list[Row]]
    doc: str = ""


# --------------------------------------------------------------------------- timing
def best_of(
    func: Callable[[], Any],
    *,
    repeat: int = 5,
    number: int = 1,
    setup: Callable[[], Any] | None = None,
) -> float:
    """Best (minimum) wall time in seconds of ``number`` calls of ``func``, over ``repeat`` runs.

    ``setup`` (e.g. a small call that triggers numba compilation) runs once before timing.
    The minimum estimates the undisturbed cost: noise from other processes only adds time.
    """
    if repeat < 1 or number < 1:
        raise ValueError(f"repeat and number must be >= 1, got {repeat} and {number}")
    if setup is not None:
        setup()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, time.perf_counter() - t0)
    return best / number


def best_of_each(
    funcs: Mapping[str, Callable[[], Any]],
    *,
    repeat: int = 5,
    setup: Callable[[], Any] | None = None,
    inner: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Best wall time in seconds of one call of each function, timed in turn, ``repeat`` rounds.

    Interleaving a kernel with its baseline means both are measured within moments of each
    other, so a change in the machine's load affects both and largely cancels in the ratio.
    ``inner[name]`` calls of ``name`` (each timed on its own) per round, default 1: more
    samples for a fast function that is interleaved with a slow one.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    inner = dict(inner or {})
    if setup is not None:
        setup()
    best = dict.fromkeys(funcs, math.inf)
    for _ in range(repeat):
        for name, func in funcs.items():
            for _ in range(inner.get(name, 1)):
                t0 = time.perf_counter()
                func()
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------- subprocesses
_RSS_WRAPPER = """\
import json, resource, subprocess, sys
proc = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "maxrss": usage.ru_maxrss,
                  "stdout": proc.stdout, "stderr": proc.stderr[-4000:]}))
"""


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    out = dict(os.environ)
    if env:
        out.update(env)
    return out


def peak_rss(snippet: str, *, env: dict[str, str] | None = None, timeout: float = 600.0):
    """Peak resident set size (bytes) of a fresh Python process that runs ``snippet``.

    The snippet runs as the only child of a small wrapper process, which reads
    ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the child has exited (reading it in
    the harness itself would report the largest of *all* its children so far).

    Returns
    -------
    (int, str)
        Peak RSS in bytes and the snippet's standard output.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, snippet],
        capture_output=True, text=True, timeout=timeout, env=_child_env(env),
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"peak_rss wrapper failed:\n{proc.stderr}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        raise RuntimeError(f"peak_rss snippet failed (exit {report['rc']}):\n{report['stderr']}")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return int(report["maxrss"]) * scale, report["stdout"]


def run_snippet(
    snippet: str, *, env: dict[str, str] | None = None, timeout: float = 600.0
) -> dict[str, Any]:
    """Run ``snippet`` in a fresh Python process and parse the JSON object on its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", snippet],
        capture_output=True, text=True, timeout=timeout, env=_child_env(env),
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"snippet failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_rows(snippet: str, labels: Mapping[str, str]) -> list[Row]:
    """Rows ``compile.<key> (<label>)``: the seconds the snippet reports under each key (a JSON
    object on its last line) in a fresh process with an empty numba cache, against a second
    process that finds the cache filled. Keys the snippet does not report are left out."""
    with tempfile.TemporaryDirectory(prefix="marginlab-numba-cache-") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = run_snippet(snippet, env=env)
        if not os.listdir(cache):
            raise AssertionError("the cold process did not fill NUMBA_CACHE_DIR")
        warm = run_snippet(snippet, env=env)
    return [
        Row(f"compile.{key} ({label})", cold[key], "s, empty cache", warm[key],
            "cache filled", cold[key] / warm[key], baseline_unit="s")
        for key, label in labels.items() if key in cold
    ]  # fmt: skip


# --------------------------------------------------------------------------- reporting
def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table: name, value, unit, baseline, ratio, target, pass/fail."""
    header = ["benchmark", "value", "unit", "baseline", "ratio", "target", "result"]
    lines = [header]
    for r in rows:
        base_unit = r.baseline_unit if r.baseline_unit is not None else r.unit
        base = f"{r.baseline_name}: {_fmt(r.baseline)}"
        if base_unit != r.unit:
            base += f" {base_unit}"
        lines.append([
            r.name, _fmt(r.value), r.unit, base, _fmt(r.ratio),
            "-" if r.target is None else r.target.describe(r.unit), r.status,
        ])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {1, 4}

    def render(cells: list[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
               enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(out) + " |"

    sep = ["-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)]
    body = [render(lines[0]), "|" + "|".join(sep) + "|"]
    body += [render(cells) for cells in lines[1:]]
    return "\n".join(body)


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def machine_info() -> dict[str, str]:
    """Machine and library versions, for the record (CPU from ``lscpu``)."""
    import numba
    import numpy

    cpu = _lscpu()
    flags = set(cpu.get("Flags", "").split())
    simd = [f for f in ("avx", "avx2", "avx512f") if f in flags]
    try:
        import llvmlite.binding as ll

        llvm_cpu = ll.get_host_cpu_name()
    except Exception:  # pragma: no cover - diagnostics only
        llvm_cpu = "?"
    return {
        "cpu": cpu.get("Model name", platform.processor() or "?"),
        "cpus": cpu.get("CPU(s)", str(os.cpu_count())),
        "threads_per_core": cpu.get("Thread(s) per core", "?"),
        "simd_flags": ",".join(simd) or "none listed",
        "llvm_host_cpu": llvm_cpu,
        "numba_threads": str(numba.config.NUMBA_NUM_THREADS),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def format_machine(info: dict[str, str]) -> str:
    return (
        f"Machine: {info['cpu']}, {info['cpus']} CPUs ({info['threads_per_core']} thread(s) "
        f"per core; lscpu SIMD flags {info['simd_flags']}; LLVM host CPU "
        f"{info['llvm_host_cpu']}), numba threads {info['numba_threads']}. Python "
        f"{info['python']}, numpy {info['numpy']}, numba {info['numba']}, {info['platform']}. "
        f"Run {info['date']}."
    )


def _markers(subject: str) -> tuple[str, str]:
    return f"<!-- results:{subject}:start -->", f"<!-- results:{subject}:end -->"


def replace_results(text: str, subject: str, body: str) -> str:
    """Replace what lies between ``subject``'s start and end marker comments by ``body``."""
    start, end = _markers(subject)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(
            f"expected exactly one pair of markers {start} ... {end} in the document"
        )
    return pattern.sub(lambda _m: f"{start}\n{body.strip()}\n{end}", text)


def results_markdown(rows: Iterable[Row], info: dict[str, str], command: str,
                     notes: Iterable[str] = ()) -> str:
    """The generated results section: the command, the machine, the table and notes."""
    parts = [f"Command: `{command}`", "", format_machine(info), "", format_table(list(rows))]
    notes = [n for n in notes if n]
    if notes:
        parts += [""] + [f"* {n}" for n in notes]
    return "\n".join(parts)


@dataclass
class Context:
    """What a benchmark file's functions share during one run: its sizes, the thread count,
    notes for the results section, and a memo of expensive set-ups."""

    sizes: Any
    threads: int
    notes: list[str] = field(default_factory=list)
    _memo: dict = field(default_factory=dict)

    def memo(self, key, func):
        if key not in self._memo:
            self._memo[key] = func()
        return self._memo[key]


def new_context(sizes: Any) -> Context:
    """A Context for ``sizes`` with all of numba's threads."""
    import numba

    return Context(sizes=sizes, threads=int(numba.config.NUMBA_NUM_THREADS))
