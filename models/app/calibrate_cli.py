"""``marginlab calibrate``: a joint fit of several price files, printed and written as the
configuration sections that ``marginlab run`` reads.

``marginlab calibrate btc.csv eth.csv`` names the assets ``BTC`` and ``ETH`` (the file name
up to its first ``_``, ``-`` or ``.``, upper-cased); ``BTC=prices/x.csv`` names one
explicitly. The files are aligned on their common timestamps (:func:`read_many`) and fitted
jointly (one model per asset, and the correlation of their returns or standardised
residuals).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ._runfiles import write_text_atomic

__all__ = ["add_calibrate_arguments", "calibrate_command", "asset_name"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def add_calibrate_arguments(c: argparse.ArgumentParser) -> None:
    """The arguments of ``marginlab calibrate``."""
    c.add_argument("prices", nargs="+", metavar="[NAME=]FILE",
                   help="price files, one asset each; NAME defaults to the file name up to "
                   "its first _ - or . (btc_usd_daily.csv: BTC)")
    c.add_argument("--model", choices=("gbm", "ewma", "garch", "merton", "fhs"),
                   default="garch")
    c.add_argument("--dist", choices=("normal", "t"), default="t",
                   help="innovations of garch / fhs (default t)")
    c.add_argument("--gjr", action="store_true", help="GJR leverage term (garch / fhs)")
    c.add_argument("--column", default="close", help="price column (default close)")
    c.add_argument("--output", default=None, metavar="SNIPPET.toml",
                   help="write the [market] and [scenarios] sections (paste them into a "
                   "configuration)")
    c.add_argument("--config", default=None, metavar="RUN.toml",
                   help="write a whole configuration (needs --book): the fitted scenarios, "
                   "Monte Carlo ES and VaR 99%%, and FHS on the same price files")
    c.add_argument("--book", default=None, metavar="FOLDER",
                   help="book folder for --config: instruments, positions (and collateral) "
                   "as .csv or .parquet, e.g. from marginlab make-book --underlyings")
    c.add_argument("--scenarios", type=int, default=10_000,
                   help="scenarios.n_scenarios written (default 10000)")
    c.add_argument("--seed", type=int, default=0, help="scenarios.seed written (default 0)")
    c.add_argument("--horizon-days", type=float, default=2.0,
                   help="scenarios.horizon_days (MPOR) written (default 2)")
    c.add_argument("--force", action="store_true", help="overwrite existing output files")


def asset_name(arg: str) -> tuple[str, str]:
    """``(name, file)`` of a ``[NAME=]FILE`` argument."""
    if "=" in arg and _NAME.fullmatch(arg.split("=", 1)[0]):
        name, path = arg.split("=", 1)
        return name.upper(), path
    stem = Path(arg).name
    first = re.split(r"[_.\-]", stem, maxsplit=1)[0]
    if not _NAME.fullmatch(first):
        raise ValueError(f"PRICES: cannot name the asset of {arg!r} from its file name; "
                         f"write NAME={arg}")
    return first.upper(), arg


def _check_out(path: str | None, flag: str, force: bool) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag}: {p} is a folder; give a .toml file name")
    if p.exists() and not force:
        raise ValueError(f"{flag}: {p} exists; pass --force to overwrite it")
    if not p.parent.is_dir():
        raise ValueError(f"{flag}: the folder {p.parent} does not exist")
    return p


def _book_files(folder: str) -> dict[str, Path]:
    f = Path(folder)
    if not f.is_dir():
        raise ValueError(f"--book: {f} is not a folder")
    out = {}
    for key in ("instruments", "positions", "collateral"):
        found = [f / f"{key}.{ext}" for ext in ("csv", "parquet") if (f / f"{key}.{ext}").is_file()]
        if found:
            out[key] = found[0]
        elif key != "collateral":
            raise ValueError(f"--book: {f} has no {key}.csv or {key}.parquet")
    return out


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _print_fit(result: Any, hist: Any, files: dict[str, str]) -> None:
    import pandas as pd

    t = hist.times
    first, last = (np.datetime_as_string(t[i], unit="D") if np.issubdtype(t.dtype, np.datetime64)
                   else str(t[i]) for i in (0, -1))
    print(f"{result.method} fit to {hist.n_obs} common timestamps of {len(files)} file(s), "
          f"{first} .. {last} (step {hist.step * 365:g} days):")
    for name, path in files.items():
        print(f"  {name}: {path}")
    gaps = hist.gaps()
    if gaps:
        print(f"  {len(gaps)} gap(s) in the common timestamps (returns across them dropped)")
    table = result.summary()
    if isinstance(table, pd.DataFrame):
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            print(table.to_string(float_format=lambda x: f"{x:.6g}"))
        print(f"log-likelihood {result.loglik:.2f}  AIC {result.aic:.2f}  BIC "
              f"{result.bic:.2f}  ({result.n_params} parameters, {result.n_obs} returns)")
        for n, fl in zip(result.names, getattr(result, "flags", ()), strict=False):
            if fl:
                print(f"warning: {n}: degenerate fit: {', '.join(fl)}")
    else:  # a printable summary object (estimates, likelihood, warnings)
        print(table)
    from ..calibration.export import annual_vol

    vol = annual_vol(result.model)
    print("annualised volatility: " + ", ".join(
        f"{n} {v:.1%}" for n, v in zip(result.names, vol, strict=True)))
    if len(result.names) > 1:
        corr = pd.DataFrame(np.asarray(result.model.corr), index=result.names,
                            columns=result.names)
        print("correlation of the model's shocks:")
        print(corr.to_string(float_format=lambda x: f"{x:.3f}"))


def calibrate_command(args: argparse.Namespace) -> int:
    """Run ``marginlab calibrate``; returns the exit code."""
    from ..calibration import fit
    from ..calibration.export import market_section, scenarios_section
    from ..history import read_many
    from . import _toml

    if args.scenarios < 100:
        raise ValueError(f"--scenarios must be >= 100, got {args.scenarios}")
    if not (0.0 < args.horizon_days <= 365.0):
        raise ValueError(f"--horizon-days must be in (0, 365], got {args.horizon_days}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    out = _check_out(args.output, "--output", args.force)
    cfg_path = _check_out(args.config, "--config", args.force)
    if cfg_path is not None and args.book is None:
        raise ValueError("--config needs --book FOLDER (instruments and positions files); "
                         "make one with: marginlab make-book --accounts 1000 --underlyings "
                         "BTC,ETH book")
    if args.book is not None and cfg_path is None:
        raise ValueError("--book is only used with --config")
    if args.model == "fhs" and (out is not None or cfg_path is not None):
        raise ValueError("--model fhs: bootstrapped residuals cannot be written to a "
                         "configuration; use --model garch (a --config also gets an FHS "
                         "method on the same price files)")
    files: dict[str, str] = {}
    for arg in args.prices:
        name, path = asset_name(arg)
        if name in files:
            raise ValueError(f"PRICES: two files are named {name} ({files[name]}, {path}); "
                             f"write NAME=FILE to tell them apart")
        files[name] = path
    book = _book_files(args.book) if cfg_path is not None else None
    hist = read_many(files, column=args.column)
    kw: dict[str, Any] = {}
    if args.model in ("garch", "fhs"):
        kw = {"dist": args.dist, "gjr": args.gjr}
    result = fit(hist, model=args.model, **kw)
    _print_fit(result, hist, files)
    spot = {n: float(p) for n, p in zip(hist.names, hist.prices[-1], strict=True)}
    market = market_section(spot, result)
    scen = scenarios_section(result, n_scenarios=args.scenarios, seed=args.seed,
                             horizon_days=args.horizon_days)
    header = (f"written by: marginlab calibrate {' '.join(args.prices)} --model {args.model}"
              + (f" --dist {args.dist}" + (" --gjr" if args.gjr else "")
                 if args.model in ("garch", "fhs") else "")
              + f"\n{result.method} fit: {result.n_obs} returns, log-likelihood "
              f"{result.loglik:.2f}, AIC {result.aic:.2f}, BIC {result.bic:.2f}"
              "\n[market]: spot is the last common price; vol is the fitted annualised "
              "volatility,\na stand-in for implied volatilities (replace it to price "
              "options at market).")
    if out is not None:
        write_text_atomic(out, _toml.dumps({"market": market, "scenarios": scen}, header=header))
        print(f"wrote {out} ([market] and [scenarios]; add [book] and [[methods]])")
    if cfg_path is not None:
        assert book is not None
        base = cfg_path.parent
        _check_book_underlyings(book, list(hist.names))
        cfg = {
            "book": {k: _rel(v, base) for k, v in book.items()},
            "market": market,
            "scenarios": scen,
            "methods": [
                {"type": "monte_carlo", "name": "MC ES 99%", "measure": "es", "level": 0.99},
                {"type": "monte_carlo", "name": "MC VaR 99%", "measure": "var",
                 "level": 0.99},
                {"type": "historical", "name": "FHS ES 99%", "measure": "es", "level": 0.99,
                 "params": {"prices": {n: _rel(Path(p), base) for n, p in files.items()},
                            "filtered": True}},
            ],
            "run": {"output": "marginlab-output"},
        }
        write_text_atomic(cfg_path, _toml.dumps(cfg, header=header + f"\nrun it: marginlab run "
                                     f"{cfg_path.name}"))
        print(f"wrote {cfg_path}; run it with: marginlab run {cfg_path}")
    return 0


def _check_book_underlyings(book: dict[str, Path], names: list[str]) -> None:
    from ..book import Book

    b = Book.from_files(book["instruments"], book["positions"], book.get("collateral"))
    unds = sorted({str(u).upper() for u in b.instruments["underlying"]})
    missing = [u for u in unds if u not in names]
    if missing:
        raise ValueError(f"--book: its instruments have underlyings {missing} without a price "
                         f"file; calibrated: {names}")


