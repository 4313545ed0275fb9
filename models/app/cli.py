"""The ``marginlab`` command.

Subcommands (each has ``--help``):

* ``marginlab init [PATH] [--force]``: write a commented example configuration (every
  section and method type, with their parameters) that ``marginlab run`` accepts as written.
* ``marginlab run CONFIG.toml [--resume] [--workers N | --scheduler ADDRESS]``: the batch run.
* ``marginlab demo``: the same on an embedded default (a synthetic book and market generated
  by our own models, no data files), after a short summary of every market model.
* ``marginlab make-book --accounts N --seed S OUT``: a synthetic book as CSV or Parquet files.
* ``marginlab calibrate PRICES [PRICES ...] --model garch --dist t [--output SNIPPET.toml |
  --config RUN.toml --book FOLDER]``: fit one market model jointly to several price files
  (correlation included); write the ``[market]``/``[scenarios]`` sections, or a whole
  configuration, that ``marginlab run`` accepts as written.
* ``marginlab compare CONFIG.toml``: run the configured methods side by side (table + plots).
* ``marginlab backtest PRICES.csv [PRICES2.csv ...] --methods gbm,garch_t,merton,fhs,hs,exchange,
  grid --level 0.99 --horizon 2 --output DIR``: rolling out-of-sample margin backtest.

``marginlab --version`` prints the version; ``python -m marginlab`` is the same command.

Exit codes: 0 on success; 1 with a one-line reason on stderr on bad input or failure; 2 for
command-line usage errors. ``--verbose`` shows logs and tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._runfiles import write_text_atomic

__all__ = ["main"]


def _models_summary(args: argparse.Namespace) -> None:
    from marginlab.simulate import simulate_extremes

    from .demo import default_models

    s0 = np.array([60_000.0, 3_000.0])
    horizon_days = args.days
    print(f"Market models: {args.paths:,} paths x {horizon_days} daily steps, BTC and ETH "
          f"from S0 = {s0[0]:,.0f} / {s0[1]:,.0f} USD, seed {args.seed}")
    header = (f"{'model':<18}{'asset':<6}{'E[S_T]/S0':>10}{'vol(ann.)':>10}"
              f"{'VaR99 long':>12}{'ES99 long':>11}{'P(min<-20%)':>13}{'time s':>8}")
    print(header)
    print("-" * len(header))
    for name, model in default_models().items():
        t0 = time.perf_counter()
        ext = simulate_extremes(model, s0, n_steps=horizon_days, dt=1 / 365,
                                n_paths=args.paths, seed=args.seed)
        elapsed = time.perf_counter() - t0
        for a, asset in enumerate(("BTC", "ETH")):
            ret = ext.terminal[:, a] / s0[a] - 1.0
            loss = -ret
            var = float(np.quantile(loss, 0.99))
            es = float(loss[loss >= var].mean())
            vol = float(np.log1p(ret).std() * np.sqrt(365.0 / horizon_days))
            p_dd = float(np.mean(ext.minimum[:, a] < 0.8 * s0[a]))
            print(f"{name:<18}{asset:<6}{1 + ret.mean():>10.4f}{vol:>10.1%}{var:>12.2%}"
                  f"{es:>11.2%}{p_dd:>13.2%}{elapsed:>8.2f}")
    print("VaR/ES: 99% loss of a long position over the horizon, as a fraction of notional.")


def _print_outputs(outputs) -> None:
    import pandas as pd

    summary = pd.read_csv(outputs.summary)
    with pd.option_context("display.width", 120, "display.max_columns", 20,
                           "display.float_format", "{:,.4g}".format):
        print(summary.to_string(index=False))
    t = outputs.info["timings_s"]
    print(f"{outputs.info['n_accounts']:,} accounts x {len(outputs.info['methods'])} methods "
          f"in {t['total']:.1f} s (compute {t['compute']:.1f} s).")
    print(f"Outputs written to {outputs.folder.resolve()}:")
    for p in (outputs.accounts, outputs.allocations, outputs.summary, outputs.report,
              outputs.manifest):
        if p is not None:
            print(f"  {p.name}")


def _demo(args: argparse.Namespace) -> int:
    for flag, value in (("--paths", args.paths), ("--days", args.days),
                        ("--accounts", args.accounts), ("--scenarios", args.scenarios)):
        if value < 1:
            raise ValueError(f"{flag} must be an int >= 1 (n_paths / n_steps), got {value}")
    _models_summary(args)
    if args.no_run:
        return 0
    from .config import config_from_dict
    from .demo import default_config
    from .runner import run_batch

    print()
    print(f"Batch run on the embedded default: {args.accounts:,} synthetic accounts, "
          f"{args.scenarios:,} scenarios")
    data = default_config(args.output, args.accounts, args.scenarios)
    cfg = config_from_dict(data, Path.cwd(), "embedded default")
    outputs = run_batch(cfg, progress=not args.quiet)
    _print_outputs(outputs)
    written = outputs.folder / "config.toml"
    write_text_atomic(written, demo_config_toml(data))
    print(f"  {written.name} (the configuration of this run: marginlab run {written} "
          "gives the same numbers)")
    return 0


def demo_config_toml(data: dict) -> str:
    """The demo's configuration as TOML, to be written in its output folder: the same
    numbers when run again, with the output in a ``rerun`` subfolder of that folder."""
    from . import _toml

    data = {**data, "run": {**data["run"], "output": "rerun"}}
    return _toml.dumps(data, header="The configuration that `marginlab demo` ran. "
                       "`marginlab run config.toml` gives the same numbers\n"
                       "(outputs in the rerun/ subfolder). "
                       "`marginlab init` writes a commented configuration.")


def _init(args: argparse.Namespace) -> int:
    from .config_template import example_config

    path = Path(args.path)
    if path.is_dir():
        raise ValueError(f"PATH: {path} is a folder; give a file name such as "
                         f"{path / 'marginlab.toml'}")
    if path.exists() and not args.force:
        raise ValueError(f"PATH: {path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise ValueError(f"PATH: the folder {path.parent} does not exist")
    write_text_atomic(path, example_config(path.name))
    print(f"wrote {path}: a synthetic book, GBM scenarios, and every method type (those "
          "needing files commented out)")
    print(f"run it with: marginlab run {path}")
    return 0




def _version() -> str:
    try:
        from importlib.metadata import version

        return version("marginlab")
    except Exception:  # a source tree that was never installed
        return "0+unknown"


def _run(args: argparse.Namespace) -> int:
    from .config import check_scheduler_address, load_config
    from .runner import run_batch

    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers: must be >= 0, got {args.workers}")
    if args.scheduler is not None:
        check_scheduler_address(args.scheduler, "--scheduler")
    cfg = load_config(args.config)
    outputs = run_batch(cfg, resume=args.resume, workers=args.workers,
                        scheduler=args.scheduler, progress=not args.quiet,
                        output=args.output)
    _print_outputs(outputs)
    return 0


def _make_book(args: argparse.Namespace) -> int:
    from ..synthetic import make_book

    if args.accounts < 1:
        raise ValueError(f"--accounts must be >= 1, got {args.accounts}")
    unds = [u.strip() for u in args.underlyings.split(",") if u.strip()]
    book = make_book(args.accounts, args.seed, underlyings=unds)
    paths = book.to_files(args.out, fmt=args.format)
    print(f"{book!r}")
    for p in paths.values():
        print(f"wrote {p}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate_cli import calibrate_command

    return calibrate_command(args)


def _compare(args: argparse.Namespace) -> int:
    from ..compare import compare
    from .config import load_config
    from .runner import build_market, build_methods, load_book

    cfg = load_config(args.config)
    book = load_book(cfg)
    table = compare(book, build_market(cfg), build_methods(cfg), plots_dir=args.output)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "comparison.csv"
    tmp = out / ".comparison.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    summary = table.groupby("method", sort=False)[["im", "mm", "im_isolated"]].sum()
    print(summary.to_string(float_format="{:,.0f}".format))
    print(f"wrote {path} and plots in {out.resolve()}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="marginlab",
        description="Monte Carlo VaR / expected-shortfall margin for crypto derivatives.",
    )
    p.add_argument("--verbose", action="store_true", help="show logs and tracebacks")
    p.add_argument("--version", action="version", version=f"marginlab {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    i = sub.add_parser("init", help="write a commented example configuration",
                       description="Write a commented example configuration: every section "
                       "and method type with its parameters, types and defaults. As written "
                       "it runs (a synthetic book, GBM scenarios, Monte Carlo, SPAN-like and "
                       "Deribit-like methods); methods needing files are commented out.")
    i.add_argument("path", nargs="?", default="marginlab.toml",
                   help="file to write (default marginlab.toml)")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")
    i.set_defaults(func=_init)

    r = sub.add_parser("run", help="batch run of a CONFIG.toml",
                       description="Compute every account's margin under the configured "
                       "methods; outputs Parquet, a summary CSV, a manifest and a report.")
    r.add_argument("config", help="configuration file (TOML)")
    r.add_argument("--resume", action="store_true",
                   help="reuse checkpoints of an interrupted run of the same config")
    r.add_argument("--workers", type=int, default=None,
                   help="run blocks on a local Dask cluster of N processes (default: the "
                   "configuration's cluster.workers, else 0: in this process)")
    r.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler, tcp://HOST:PORT (trusted "
                   "networks only: a scheduler runs the pickled tasks it is sent)")
    r.add_argument("--output", default=None, help="output folder (default: run.output)")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=_run)

    d = sub.add_parser("demo", help="run the embedded default (no data files needed)",
                       description="Summarise every market model, then run the batch on a "
                       "synthetic book and market generated by marginlab itself.")
    d.add_argument("--paths", type=int, default=200_000, help="paths per model (default 200000)")
    d.add_argument("--days", type=int, default=2, help="horizon (MPOR) in days (default 2)")
    d.add_argument("--seed", type=int, default=20240101, help="random seed")
    d.add_argument("--accounts", type=int, default=2_000, help="synthetic accounts (2000)")
    d.add_argument("--scenarios", type=int, default=10_000, help="scenarios (10000)")
    d.add_argument("--output", default="marginlab-demo-output", help="output folder")
    d.add_argument("--no-run", action="store_true", help="only the market-model summary")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.set_defaults(func=_demo)

    m = sub.add_parser("make-book", help="write a synthetic book",
                       description="Write instruments, positions and collateral files of a "
                       "synthetic book (marginlab.models.make_book).")
    m.add_argument("--accounts", type=int, required=True, help="number of accounts")
    m.add_argument("--seed", type=int, default=0, help="random seed")
    m.add_argument("--format", choices=("csv", "parquet"), default="csv")
    m.add_argument("--underlyings", default="BTC,ETH,SOL",
                   help="comma-separated underlyings (default BTC,ETH,SOL)")
    m.add_argument("out", help="output folder")
    m.set_defaults(func=_make_book)

    from .calibrate_cli import add_calibrate_arguments

    c = sub.add_parser("calibrate", help="fit a market model to price files, jointly",
                       description="Fit GBM, EWMA, GARCH/GJR, Merton or FHS jointly to one "
                       "or more CSV/Parquet price files (date or datetime column + close; "
                       "aligned on their common dates): per-asset estimates, the correlation "
                       "and fit diagnostics. --output writes the [market] and [scenarios] "
                       "sections, --config a whole configuration; marginlab run accepts "
                       "both as written.")
    add_calibrate_arguments(c)
    c.set_defaults(func=_calibrate)

    k = sub.add_parser("compare", help="compare the configured methods side by side",
                       description="Run the methods of CONFIG.toml on its book: one table "
                       "per account and method, with isolated-margin offsets, and plots.")
    k.add_argument("config", help="configuration file (TOML)")
    k.add_argument("--output", default="marginlab-compare", help="output folder")
    k.set_defaults(func=_compare)

    from ..backtest_runner import add_backtest_parser

    add_backtest_parser(sub)
    from ..engine import add_replay_parser
    from .service import add_serve_parser

    add_replay_parser(sub)
    add_serve_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marginlab`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:
        warnings.formatwarning = _warning_line
        for name in ("distributed", "tornado", "bokeh"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError, KeyError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"marginlab: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("marginlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, the traceback on --verbose
        if args.verbose:
            raise
        print(f"marginlab: error: internal error ({type(exc).__name__}: {_one_line(exc)}); "
              "run with --verbose for the traceback and please report it", file=sys.stderr)
        return 1


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"marginlab: warning: {' '.join(str(message).split())}\n"


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{exc.filename}: {msg}"
    return msg[:2000] if len(msg) > 2000 else msg


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
