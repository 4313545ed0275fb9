"""The ``marginlab`` command.

Subcommands (each has ``--help``):

* ``marginlab demo``: simulate every market model on an embedded default market (no data
  files needed) and print a short summary per model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from marginlab.simulate import simulate_extremes

    from .demo import default_models

    for flag, value in (("--paths", args.paths), ("--days", args.days)):
        if value < 1:
            raise ValueError(f"{flag} must be an int >= 1 (n_paths / n_steps), got {value}")
    s0 = np.array([60_000.0, 3_000.0])
    horizon_days = args.days
    print(f"marginlab demo: {args.paths:,} paths x {horizon_days} daily steps, BTC and ETH "
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
            logr = np.log1p(ret)
            vol = float(logr.std() * np.sqrt(365.0 / horizon_days))
            p_dd = float(np.mean(ext.minimum[:, a] < 0.8 * s0[a]))
            print(f"{name:<18}{asset:<6}{1 + ret.mean():>10.4f}{vol:>10.1%}{var:>12.2%}"
                  f"{es:>11.2%}{p_dd:>13.2%}{elapsed:>8.2f}")
    print("VaR/ES: 99% loss of a long position over the horizon, as a fraction of notional.")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="marginlab",
        description="Monte Carlo VaR / expected-shortfall margin for crypto derivatives.",
    )
    p.add_argument("--verbose", action="store_true", help="print tracebacks and logs")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="simulate every market model on the embedded default",
                       description="Simulate GBM, Merton, GARCH-t and FHS on a synthetic "
                       "two-asset market and print margin-relevant statistics.")
    d.add_argument("--paths", type=int, default=200_000, help="paths per model (default 200000)")
    d.add_argument("--days", type=int, default=2, help="horizon (MPOR) in days (default 2)")
    d.add_argument("--seed", type=int, default=20240101, help="random seed")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marginlab`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError) as exc:
        if args.verbose:
            raise
        print(f"marginlab: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
