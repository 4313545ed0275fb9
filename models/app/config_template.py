"""The commented example configuration of ``marginlab init``, generated from the schema.

Every section of :class:`~marginlab.models.app.config.RunConfig`, every method type of
:data:`~marginlab.models.app.config.METHOD_SCHEMAS` and every field of their ``params`` is written
from the pydantic models themselves: a field added to the schema appears in the template with
its type and default, so the template cannot fall behind the configuration it documents.
Settings that a first run needs are active; the others are commented out (``# key = ...``)
with their default; explanations are ``##`` lines.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ._toml import toml_value
from .config import METHOD_SCHEMAS, METHOD_TYPES, RunConfig

__all__ = ["example_config", "DOC"]

#: One-line explanations, by ``section.key`` or ``method_type.key`` (``params`` fields as
#: ``method_type.params.key``). Fields without an entry are still written, with their type.
DOC: dict[str, str] = {
    "book.instruments": "instrument table (CSV or Parquet), path relative to this file",
    "book.positions": "positions table: account_id, instrument_id, quantity",
    "book.collateral": "collateral table (optional): account_id, asset, amount",
    "book.orders": "open orders table (optional): margined as if they filled",
    "book.synthetic_accounts": "instead of files: a synthetic book of this many accounts "
                               "(BTC, ETH and SOL futures, perpetuals and options)",
    "book.synthetic_seed": "seed of the synthetic book",
    "book.duplicates": "repeated (account, instrument) rows: sum them (with a warning) or "
                       "refuse the book",
    "market.spot": "spot price per underlying (USD)",
    "market.vol": "implied volatility per underlying (decimal, annualised): prices options",
    "market.rate": "risk-free rate (decimal, annualised)",
    "scenarios.model": "market model of the Monte Carlo scenarios: gbm | merton | garch",
    "scenarios.underlyings": "underlyings simulated (every underlying of the book)",
    "scenarios.params": "the model's parameters, one value or one per underlying (see below)",
    "scenarios.corr": "correlation of the underlyings' shocks (n x n); default identity",
    "scenarios.n_scenarios": "number of Monte Carlo scenarios",
    "scenarios.seed": "random seed (same seed, same numbers, on any number of workers)",
    "scenarios.horizon_days": "margin period of risk (MPOR) in days",
    "scenarios.vol_of_vol": "implied-vol shock size per unit of annualised vol (0: none)",
    "scenarios.vol_price_corr": "correlation of the implied-vol shock with the price shock",
    "run.output": "output folder, relative to this file (a subfolder of its folder)",
    "run.output_outside_config": "allow run.output outside this file's folder",
    "run.account_block": "accounts per block (checkpoint and parallel unit)",
    "run.memory_budget_mb": "refuse to start if the estimated memory exceeds this (MB)",
    "run.report": "write report.md / report.html beside the tables",
    "cluster.workers": "local Dask processes (0: run in this process)",
    "cluster.scheduler": "address of an existing Dask scheduler, tcp://HOST:PORT",
    "methods.name": "label of the method in the outputs (unique; default: its type)",
    "methods.measure": "risk measure: es (expected shortfall) | var",
    "methods.level": "confidence level of the measure",
    "methods.mm_fraction": "maintenance margin as a fraction of the initial margin",
    "monte_carlo.params.zero_drift": "ignore the model's drift over the MPOR",
    "monte_carlo.params.move_cap": "cap on each underlying's log move over the MPOR",
    "historical.params.prices": "price history: one CSV with a column per underlying, or "
                                "{ BTC = \"btc.csv\", ... } of one-asset files",
    "historical.params.lookback_days": "days of history used",
    "historical.params.filtered": "filtered HS (FHS): rescale by the EWMA volatility",
    "historical.params.ewma_lambda": "EWMA decay of the FHS volatility",
    "span.params.price_scan": "price scan range (decimal move), one or per underlying",
    "span.params.vol_scan": "implied-vol scan range (decimal relative move)",
    "span.params.extreme_multiple": "extreme scenarios: multiple of the price scan",
    "span.params.extreme_cover": "fraction of the extreme scenarios' loss covered",
    "deribit.params.price_move": "price move of the risk matrix (decimal)",
    "tiered.params.tables": "bracket table per underlying (CSV/TOML file or \"builtin\")",
    "tiered.params.mode": "cross or isolated margin",
    "tiered.params.leverage": "chosen leverage (caps the bracket's maximum)",
    "dydx.params.imf_base": "base initial margin fraction",
    "dydx.params.mmf_fraction": "maintenance margin fraction as a fraction of the IMF",
    "dydx.params.open_interest": "open interest per underlying (scales the IMF)",
}

_HEADER = """\
marginlab configuration, written by `marginlab init`. Run it with

    marginlab run {name}

Lines starting with `# key =` are settings left at their default: remove the `# ` to set
them. Lines starting with `##` explain. Relative paths are relative to this file's folder.
Every problem is reported at once with its key path; unknown keys are refused."""

# What the template sets, per section (the rest is written commented out).
_ACTIVE: dict[str, dict[str, Any]] = {
    "book": {"synthetic_accounts": 500, "synthetic_seed": 0},
    "market": {"spot": {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0},
               "vol": {"BTC": 0.6, "ETH": 0.75, "SOL": 0.95}, "rate": 0.0},
    "scenarios": {"model": "gbm", "underlyings": ["BTC", "ETH", "SOL"],
                  "params": {"mu": 0.0, "sigma": [0.6, 0.75, 0.95]},
                  "corr": [[1.0, 0.8, 0.7], [0.8, 1.0, 0.75], [0.7, 0.75, 1.0]],
                  "n_scenarios": 5_000, "seed": 42, "horizon_days": 2.0},
    "run": {"output": "marginlab-output"},
}

# One example block per method type; ``active``: whether the template runs it as written.
_METHODS: dict[str, dict[str, Any]] = {
    "monte_carlo": {"active": True, "fields": {"name": "MC ES 99%", "measure": "es",
                                               "level": 0.99}, "params": {}},
    "historical": {"active": False,
                   "fields": {"name": "FHS ES 99%", "measure": "es", "level": 0.99},
                   "params": {"prices": {"BTC": "prices/btc.csv", "ETH": "prices/eth.csv",
                                         "SOL": "prices/sol.csv"},
                              "filtered": True},
                   "why": "needs price files (date + close), e.g. those `marginlab "
                          "calibrate` read"},
    "span": {"active": True, "fields": {"name": "SPAN-like"},
             "params": {"price_scan": {"BTC": 0.15, "ETH": 0.18, "SOL": 0.25},
                        "vol_scan": {"BTC": 0.25, "ETH": 0.25, "SOL": 0.3}}},
    "deribit": {"active": True, "fields": {"name": "Deribit-like"}, "params": {}},
    "tiered": {"active": False, "fields": {"name": "Binance tiers"},
               "params": {"tables": {"BTC": "builtin"}},
               "why": "needs a bracket table for every underlying of the book (\"builtin\" "
                      "is Binance BTCUSDT)"},
    "dydx": {"active": False, "fields": {"name": "dYdX v4"},
             "params": {"imf_base": 0.05, "mmf_fraction": 0.6},
             "why": "margins perpetuals and futures only: a book with options is refused"},
}

_MODEL_DOC = {
    "gbm": "GBM: mu (drift, annualised), sigma (volatility, annualised)",
    "merton": "Merton jump diffusion: mu, sigma, lam (jumps per year), jump_mean, jump_std "
              "(of the log jump size)",
    "garch": "GJR-GARCH(1,1) per daily step: omega, alpha, beta, gamma, mu, dist (\"normal\" "
             "| \"t\"), nu, sigma2_0 (current variance; `marginlab calibrate --model garch` "
             "writes all of them)",
}


def _type_text(ann: Any) -> str:
    """A short reader's form of a field's annotation (``float | { NAME = float }``)."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(toml_value(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args if a is not type(None))
    if origin is dict:
        return "{ NAME = " + _type_text(args[1]) + " }"
    if origin is list:
        return "[" + _type_text(args[0]) + ", ...]"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "table"
    return {str: "text", float: "number", int: "integer", bool: "true | false",
            Any: "value"}.get(ann, getattr(ann, "__name__", str(ann)))


def _doc(key: str) -> str:
    return DOC.get(key, "")


def _field_lines(model: type[BaseModel], doc_prefix: str, active: Mapping[str, Any],
                 skip: tuple[str, ...] = (), commented: bool = False) -> list[str]:
    """The lines of a table's fields: active ones as ``key = value``, the others as
    ``# key = default`` (or ``# key = <type>`` when required or without a default)."""
    out = []
    lead = "# " if commented else ""
    for name, f in model.model_fields.items():
        if name in skip:
            continue
        doc = _doc(f"{doc_prefix}.{name}")
        kind = _type_text(f.annotation)
        out.append(f"## {name}: {doc + '; ' if doc else ''}{kind}"
                   + ("" if f.is_required() or f.default is None
                      else f" (default {toml_value(f.default)})")
                   + (" (required)" if f.is_required() else ""))
        if name in active:
            out.append(f"{lead}{name} = {toml_value(active[name])}")
        elif f.is_required():
            out.append(f"# {name} = <{kind}>")
        elif f.default is None or isinstance(f.default, BaseModel):
            out.append(f"# {name} =")
        else:
            out.append(f"# {name} = {toml_value(f.default)}")
    return out


def _section(name: str, model: type[BaseModel], required: bool) -> list[str]:
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("``", "`")
    lines = [f"## {' '.join(doc.split())}"] if doc else []
    active = _ACTIVE.get(name, {})
    commented = not active and required
    lines.append(f"# [{name}]" if commented else f"[{name}]")
    lines += _field_lines(model, name, active, commented=commented)
    if name == "scenarios":
        lines.append("## Parameters of each model (scenarios.params):")
        lines += [f"##   {k}: {v}" for k, v in _MODEL_DOC.items()]
        lines += [f"##     fields of {k}: " + ", ".join(_model_fields(k)) for k in _MODEL_DOC]
    return lines


def _model_fields(model: str) -> list[str]:
    from ..market import GARCH, GBM, MertonJump

    cls = {"gbm": GBM, "merton": MertonJump, "garch": GARCH}[model]
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name != "corr"]


def _method_block(mtype: str, example: Mapping[str, Any], active: bool) -> list[str]:
    schema = METHOD_SCHEMAS[mtype]
    lead = "" if active else "# "
    doc = " ".join((schema.__doc__ or "").replace("``", "`").split())
    lines = [f"## ---- {doc}"]
    if not active:
        lines.append(f"## (commented out: {example.get('why', 'optional')}; to use it, "
                     "remove the `# ` before its lines that have a value)")
    lines.append(f"{lead}[[methods]]")
    lines.append(f"{lead}type = {toml_value(mtype)}")
    lines += _field_lines(schema, "methods", example["fields"], skip=("type", "params"),
                          commented=not active)
    pmodel = schema.model_fields["params"].annotation
    assert isinstance(pmodel, type) and issubclass(pmodel, BaseModel), pmodel
    lines.append(f"## params of {mtype}:")
    lines.append(f"{lead}[methods.params]")
    lines += _field_lines(pmodel, f"{mtype}.params", example["params"], commented=not active)
    return lines


def example_config(name: str = "marginlab.toml", *,
                   enable: tuple[str, ...] = (),
                   params: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The commented example configuration (TOML text) of ``marginlab init``.

    Parameters
    ----------
    name : str, default "marginlab.toml"
        File name quoted in the header's ``marginlab run`` line.
    enable : tuple of str
        Method types to write active although the default template comments them out
        (``"historical"``, ``"tiered"``, ``"dydx"``); their example files must then exist.
    params : mapping, optional
        Per method type, ``params`` replacing the example's (e.g. price file paths).

    Returns
    -------
    str
        TOML text that ``marginlab run`` accepts as written (a synthetic book, GBM
        scenarios, the Monte Carlo, SPAN-like and Deribit-like methods).
    """
    bad = [m for m in enable if m not in METHOD_TYPES]
    if bad:
        raise ValueError(f"enable: unknown method types {bad}; known: {', '.join(METHOD_TYPES)}")
    lines = [f"# {line}".rstrip() for line in _HEADER.format(name=name).split("\n")]
    for sec, f in RunConfig.model_fields.items():
        if sec in ("base_dir", "source"):
            continue
        if sec == "methods":
            lines += ["", "## ==== [[methods]]: the margin methods, one block each; every "
                      "method type is shown below."]
            for mtype in METHOD_TYPES:
                ex = dict(_METHODS[mtype])
                if params and mtype in params:
                    ex["params"] = dict(params[mtype])
                lines.append("")
                lines += _method_block(mtype, ex, ex["active"] or mtype in enable)
            continue
        ann = f.annotation
        model = next(a for a in (ann, *typing.get_args(ann))
                     if isinstance(a, type) and issubclass(a, BaseModel))
        lines.append("")
        lines += _section(sec, model, f.is_required() or f.default is None
                          or f.default is PydanticUndefined)
    return "\n".join(lines) + "\n"
