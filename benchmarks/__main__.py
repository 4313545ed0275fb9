"""``python -m benchmarks``: run every ``bench_*.py`` file and print one results table.

Options: ``--quick`` (tiny sizes: a smoke run of the harness, numbers not representative),
``--only NAME[,NAME...]`` (a subject such as ``paths`` or a benchmark such as ``gbm``),
``--write`` (rewrite the results sections of ``BENCHMARKS.md`` between its
``<!-- results:<subject>:start -->`` / ``<!-- results:<subject>:end -->`` markers) and
``--json PATH`` (machine-readable results).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path
from types import ModuleType

import numba

from benchmarks import _harness

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "BENCHMARKS.md"


def discover() -> list[ModuleType]:
    """The ``benchmarks.bench_*`` modules, in name order."""
    pkg = importlib.import_module("benchmarks")
    names = sorted(
        m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("bench_")
    )
    return [importlib.import_module(f"benchmarks.{name}") for name in names]


def select(modules, only: str | None):
    """Pairs (module, benchmarks to run); ``only`` names subjects or benchmarks."""
    if not only:
        return [(m, list(m.BENCHMARKS)) for m in modules]
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    known = {m.SUBJECT for m in modules} | {b.name for m in modules for b in m.BENCHMARKS}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"--only: unknown name(s) {sorted(unknown)}; known: {sorted(known)}")
    chosen = []
    for m in modules:
        benches = [b for b in m.BENCHMARKS if m.SUBJECT in wanted or b.name in wanted]
        if benches:
            chosen.append((m, benches))
    return chosen


def run(quick: bool = False, only: str | None = None, log=None) -> dict[str, dict]:
    """Run the selected benchmarks; returns ``{subject: {"rows": [...], "notes": [...]}}``."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    threads = numba.get_num_threads()
    results = {}
    try:
        for module, benches in select(discover(), only):
            ctx = module.make_context(quick)
            rows = []
            for bench in benches:
                t0 = time.perf_counter()
                log(f"[{module.SUBJECT}] {bench.name}: {bench.doc} ...")
                rows += bench.func(ctx)
                log(f"[{module.SUBJECT}] {bench.name}: done in {time.perf_counter() - t0:.1f} s")
            results[module.SUBJECT] = {"title": module.TITLE, "rows": rows, "notes": ctx.notes}
    finally:
        numba.set_num_threads(threads)
    return results


def command(args) -> str:
    parts = ["python -m benchmarks"]
    if args.quick:
        parts.append("--quick")
    if args.only:
        parts.append(f"--only {args.only}")
    return " ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks the harness, numbers are not representative")
    parser.add_argument("--only", metavar="NAME[,NAME...]",
                        help="run only these subjects (e.g. paths) or benchmarks (e.g. gbm)")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the results section(s) of BENCHMARKS.md")
    parser.add_argument("--doc", type=Path, default=None,
                        help="document to --write into (default: BENCHMARKS.md at the root)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    if args.write and args.doc is None and (args.quick or args.only):
        parser.error("--write into BENCHMARKS.md needs a full run (no --quick / --only); "
                     "pass --doc PATH to write elsewhere")

    t0 = time.perf_counter()
    results = run(quick=args.quick, only=args.only)
    info = _harness.machine_info()
    elapsed = time.perf_counter() - t0

    print()
    print(_harness.format_machine(info))
    for res in results.values():
        print()
        print(f"## {res['title']}")
        print()
        print(_harness.format_table(res["rows"]))
        if res["notes"]:
            print()
            for note in res["notes"]:
                print(f"* {note}")
    n_fail = sum(r.status == "FAIL" for res in results.values() for r in res["rows"])
    n_pass = sum(r.status == "pass" for res in results.values() for r in res["rows"])
    print(f"\n{n_pass} target(s) met, {n_fail} missed; {elapsed:.0f} s in all.")

    if args.json:
        payload = {
            "command": command(args),
            "machine": info,
            "elapsed_s": elapsed,
            "subjects": {
                subject: {"title": res["title"], "notes": res["notes"],
                          "rows": [r.to_dict() for r in res["rows"]]}
                for subject, res in results.items()
            },
        }  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    if args.write:
        doc = args.doc or DOC
        text = doc.read_text()
        for subject, res in results.items():
            body = _harness.results_markdown(res["rows"], info, command(args), res["notes"])
            text = _harness.replace_results(text, subject, body)
        doc.write_text(text)
        print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
