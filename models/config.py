"""The batch-run configuration (``marginlab run CONFIG.toml``), validated up front.

Every problem is reported at once, each naming its key (``scenarios.n_scenarios: ...``);
unknown keys are rejected. Relative file paths are resolved against the config file's folder.

Example::

    [book]
    instruments = "book/instruments.csv"
    positions = "book/positions.csv"
    collateral = "book/collateral.csv"      # optional

    [market]
    spot = { BTC = 60000, ETH = 3000 }
    vol = { BTC = 0.6, ETH = 0.7 }
    rate = 0.0

    [scenarios]
    model = "gbm"                           # gbm | merton | garch
    underlyings = ["BTC", "ETH"]
    params = { mu = 0.0, sigma = [0.6, 0.7] }
    corr = [[1.0, 0.8], [0.8, 1.0]]
    n_scenarios = 10000
    seed = 42
    horizon_days = 2
    vol_of_vol = 1.0
    vol_price_corr = -0.5

    [[methods]]
    type = "monte_carlo"                    # see METHOD_TYPES
    name = "MC ES 99%"
    measure = "es"
    level = 0.99

    [run]
    output = "marginlab-output"
    account_block = 20000
    memory_budget_mb = 3000
    levels = [0.99, 0.975]
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["RunConfig", "ConfigError", "load_config", "METHOD_TYPES"]

METHOD_TYPES = ("monte_carlo", "historical", "span", "deribit", "tiered", "dydx")
"""Method types a config may name (``[[methods]] type = ...``)."""


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem with its key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BookSection(_Strict):
    instruments: str | None = None
    positions: str | None = None
    collateral: str | None = None
    synthetic_accounts: int | None = Field(None, ge=1)
    synthetic_seed: int = Field(0, ge=0)


class MarketSection(_Strict):
    spot: dict[str, float]
    vol: dict[str, float] = {}
    rate: float = Field(0.0, ge=-1.0, le=1.0)

    @field_validator("spot")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not (x > 0 and x < float("inf"))}
        if bad:
            raise ValueError(f"prices must be finite and > 0, got {bad}")
        return v

    @field_validator("vol")
    @classmethod
    def _nonneg(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not (x >= 0 and x < float("inf"))}
        if bad:
            raise ValueError(f"vols must be finite and >= 0, got {bad}")
        return v


class ScenarioSection(_Strict):
    model: Literal["gbm", "merton", "garch"] = "gbm"
    underlyings: list[str]
    params: dict[str, Any]
    corr: list[list[float]] | None = None
    n_scenarios: int = Field(10_000, ge=100)
    seed: int = Field(0, ge=0)
    horizon_days: float = Field(2.0, gt=0)
    vol_of_vol: float = Field(0.0, ge=0)
    vol_price_corr: float = Field(-0.5, ge=-1, le=1)


class MethodSection(_Strict):
    type: Literal["monte_carlo", "historical", "span", "deribit", "tiered", "dydx"]
    name: str | None = None
    measure: Literal["es", "var"] = "es"
    level: float = Field(0.99, gt=0.5, lt=1.0)
    mm_fraction: float = Field(0.5, gt=0.0, le=1.0)
    params: dict[str, Any] = {}


class RunSection(_Strict):
    output: str = "marginlab-output"
    account_block: int = Field(20_000, ge=1)
    memory_budget_mb: float = Field(4_000.0, gt=0)
    levels: list[float] = [0.99, 0.975]
    ci: float = Field(0.95, gt=0, lt=1)
    report: bool = True

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if not v or any(not (0.5 < x < 1.0) for x in v):
            raise ValueError(f"levels must be a non-empty list of values in (0.5, 1), got {v}")
        return v


class RunConfig(_Strict):
    """A validated batch-run configuration (see the module docstring for the layout)."""

    book: BookSection
    market: MarketSection
    scenarios: ScenarioSection
    methods: list[MethodSection] = Field(min_length=1)
    run: RunSection = RunSection()
    base_dir: str = "."

    def path(self, p: str) -> Path:
        """A config path resolved against the config file's folder."""
        q = Path(p)
        return q if q.is_absolute() else Path(self.base_dir) / q

    def digest(self) -> str:
        """SHA-256 of the configuration's content (without the output folder): the identity
        of a run for checkpoints and the manifest."""
        d = self.model_dump()
        d.pop("base_dir")
        d["run"].pop("output")
        d["run"].pop("report")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for e in exc.errors():
        key = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def config_from_dict(data: dict[str, Any], base_dir: str | os.PathLike[str] = ".",
                     source: str = "config") -> RunConfig:
    """Validate a configuration mapping; raise ConfigError listing every problem."""
    try:
        cfg = RunConfig(**data, base_dir=str(base_dir))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_errors(exc)}") from None
    problems = []
    b = cfg.book
    if b.synthetic_accounts is None and (b.instruments is None or b.positions is None):
        problems.append("book: give instruments and positions files, or synthetic_accounts")
    und = [u.upper() for u in cfg.scenarios.underlyings]
    spot = {k.upper() for k in cfg.market.spot}
    missing = [u for u in und if u not in spot]
    if missing:
        problems.append(f"market.spot: no price for underlyings {missing}")
    n = len(und)
    if cfg.scenarios.corr is not None and (len(cfg.scenarios.corr) != n or
                                           any(len(r) != n for r in cfg.scenarios.corr)):
        problems.append(f"scenarios.corr: must be {n} x {n} for underlyings {und}")
    names = [m.name or m.type for m in cfg.methods]
    if len(set(names)) != len(names):
        problems.append(f"methods: names must be unique, got {names}")
    for i, m in enumerate(cfg.methods):
        if m.type == "historical" and "prices" not in m.params:
            problems.append(f"methods.{i}.params.prices: required for type 'historical' "
                            "(a CSV of daily closes, one column per underlying)")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a TOML configuration file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such file")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return config_from_dict(data, p.resolve().parent, str(p))
