"""The batch-run configuration (``marginlab run CONFIG.toml``), validated up front.

Every problem is reported at once, each naming the configuration file and its key path
(``run.toml: scenarios.n_scenarios: ...``, ``methods[1].params.prices: ...``); unknown keys
are rejected, and so is any setting that the run would not use. Relative file paths are
resolved against the configuration file's folder. Each method type has its own typed
parameter schema (:data:`METHOD_SCHEMAS`), documented in the README.

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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["RunConfig", "ConfigError", "load_config", "config_from_dict", "METHOD_TYPES",
           "METHOD_SCHEMAS", "LIMITS", "check_scheduler_address"]

METHOD_TYPES = ("monte_carlo", "historical", "span", "deribit", "tiered", "dydx")
"""Method types a config may name (``[[methods]] type = ...``)."""

LIMITS = {
    "n_scenarios": 50_000_000,
    "horizon_days": 365.0,
    "synthetic_accounts": 50_000_000,
    "account_block": 10_000_000,
    "memory_budget_mb": 4_194_304.0,  # 4 TiB
    "underlyings": 1_000,
    "methods": 64,
}
"""Upper bounds of the size settings: a run within them can finish (the memory budget is then
checked against the estimate from the sizes before anything large is allocated)."""

_SEED_MAX = 2**63 - 1


_SHARED_SERIES = ("cme", "binance", "bybit")
"""Names of historical ``basis`` / ``funding`` series read from the shared data folder."""


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem with its key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FloatOrMap = float | dict[str, float]


# ----------------------------------------------------------------------------- sections
class BookSection(_Strict):
    """``[book]``: three table files, or a synthetic book of our own generator."""

    instruments: str | None = None
    positions: str | None = None
    collateral: str | None = None
    synthetic_accounts: int | None = Field(None, ge=1, le=LIMITS["synthetic_accounts"])
    synthetic_seed: int = Field(0, ge=0, le=2**31 - 1)
    duplicates: Literal["sum", "raise"] = "sum"
    orders: str | None = None


class FlatSurface(_Strict):
    """``kind = "flat"``: one implied vol (decimal) for every strike and expiry."""

    kind: Literal["flat"]
    level: float = Field(gt=0.0, le=20.0)


class SSVISurface(_Strict):
    """``kind = "ssvi"``: :meth:`~marginlab.models.vol_surface.VolSurface.ssvi` (ATM level at
    30 days, skew ``rho``, curvature ``eta``/``gamma``, ``term_slope``)."""

    kind: Literal["ssvi"]
    level: float = Field(gt=0.0, le=20.0)
    rho: float = Field(0.0, gt=-1.0, lt=1.0)
    eta: float = Field(0.5, gt=0.0, le=10.0)
    gamma: float = Field(0.5, gt=0.0, le=0.5)
    term_slope: float = Field(0.0, ge=-5.0, le=5.0)


class ChainSurface(_Strict):
    """``kind = "chain"``: raw SVI per expiry fitted to an option chain file (CSV/Parquet:
    ``expiry`` in years, ``strike``, ``implied_vol`` or ``price`` + ``option_type``) quoted
    against ``[market].spot``."""

    kind: Literal["chain"]
    file: str = Field(min_length=1)


SurfaceSpec = Annotated[FlatSurface | SSVISurface | ChainSurface, Field(discriminator="kind")]


class MarketSection(_Strict):
    """``[market]``: spot prices (USD), implied vols (decimal, annualised), rate, and optional
    implied-vol surfaces per underlying (options then take their strike's and expiry's vol)."""

    spot: dict[str, float]
    vol: dict[str, float] = {}
    rate: float = Field(0.0, ge=-1.0, le=1.0)
    surfaces: dict[str, SurfaceSpec] = {}

    @field_validator("spot")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not (0 < x <= 1e12)}
        if bad:
            raise ValueError(f"prices must be finite, > 0 and <= 1e12 USD, got {bad}")
        if not v:
            raise ValueError("at least one price is required")
        return v

    @field_validator("vol")
    @classmethod
    def _nonneg(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not (0 <= x <= 20)}
        if bad:
            raise ValueError(f"vols must be finite, >= 0 and <= 20 (2000 %), got {bad}")
        return v


class ScenarioSection(_Strict):
    """``[scenarios]``: the Monte Carlo market model and the margin period of risk."""

    model: Literal["gbm", "merton", "garch"] = "gbm"
    underlyings: list[str] = Field(min_length=1, max_length=LIMITS["underlyings"])
    params: dict[str, Any]
    corr: list[list[float]] | None = None
    n_scenarios: int = Field(10_000, ge=100, le=LIMITS["n_scenarios"])
    seed: int = Field(0, ge=0, le=_SEED_MAX)
    horizon_days: float = Field(2.0, gt=0, le=LIMITS["horizon_days"], allow_inf_nan=False)
    vol_of_vol: float = Field(0.0, ge=0, le=10.0)
    vol_price_corr: float = Field(-0.5, ge=-1, le=1)
    skew_vol: float = Field(0.0, ge=0, le=10.0)
    skew_price_corr: float = Field(0.5, ge=-1, le=1)
    term_vol: float = Field(0.0, ge=0, le=10.0)
    term_level_corr: float = Field(-0.6, ge=-1, le=1)
    basis_vol: float = Field(0.0, ge=0, le=10.0)
    basis_price_corr: float = Field(0.0, ge=-1, le=1)


# ----------------------------------------------------------------------------- methods
class MonteCarloParams(_Strict):
    """``params`` of a ``monte_carlo`` method (unset: the method's own default).

    ``move_cap``: cap on each underlying's log move over the MPOR (default 1.0), or
    ``"none"``. ``sampling``: ``"plain"``, ``"qmc"`` (randomised Sobol', ``randomizations``
    independent scramblings, which must divide ``scenarios.n_scenarios``) or ``"mixture"``
    (defensive-mixture importance sampling with likelihood-ratio weights) or ``"shift"``
    (defensive mixture of plain normals and normals shifted +-2.5 sd along each asset's
    shock direction, with likelihood-ratio weights).
    """

    zero_drift: bool | None = None
    move_cap: PositiveFloat | Literal["none"] | None = None
    sampling: Literal["plain", "qmc", "mixture", "shift"] | None = None
    randomizations: int | None = Field(None, ge=2, le=4096)


class HistoricalParams(_Strict):
    """``params`` of a ``historical`` method (HS, or FHS with ``filtered = true``).

    ``prices``: one CSV with a date column and one close column per underlying, or a table
    ``{ BTC = "btc.csv", ETH = "eth.csv" }`` of one-asset price files (date + close).
    """

    prices: str | dict[str, str]
    implied_vol: str | None = None
    basis: str | None = None
    funding: str | None = None
    lookback_days: int | None = Field(365, ge=2, le=100_000)
    filtered: bool = False
    ewma_lambda: float = Field(0.94, gt=0.0, lt=1.0)


class SpanParams(_Strict):
    """``params`` of a ``span`` (SPAN-like scenario grid) method; scans are decimal moves."""

    price_scan: FloatOrMap
    vol_scan: FloatOrMap
    extreme_multiple: PositiveFloat | None = None
    extreme_cover: float | None = Field(None, ge=0.0, le=1.0)
    intra_spread_charge: FloatOrMap | None = None
    short_option_minimum: FloatOrMap | None = None
    horizon_days: float | None = Field(None, ge=0.0, le=LIMITS["horizon_days"])
    include_collateral: bool | None = None
    initial_multiplier: float | None = Field(None, ge=1.0, le=10.0)
    skew_scan: FloatOrMap | None = None
    term_scan: FloatOrMap | None = None


class DeribitParams(_Strict):
    """``params`` of a ``deribit`` (Deribit-like risk matrix) method."""

    price_move: FloatOrMap | None = None
    n_buckets: int | None = Field(None, ge=1, le=1001)
    vol_range_up: FloatOrMap | None = None
    vol_range_down: FloatOrMap | None = None
    min_vol_for_shock_up: FloatOrMap | None = None
    short_term_vega_power: float | None = None
    long_term_vega_power: float | None = None
    extended_moves: list[float] | None = None
    extended_factor: FloatOrMap | None = None
    dampener: FloatOrMap | None = None
    min_annual_move: FloatOrMap | None = None
    annual_move_risk: FloatOrMap | None = None
    horizon_days: float | None = Field(None, ge=0.0, le=LIMITS["horizon_days"])
    include_collateral: bool | None = None
    coin_margin: bool | None = None


class TieredParams(_Strict):
    """``params`` of a ``tiered`` (exchange bracket table) method.

    ``tables``: per underlying (or instrument id), a bracket file (CSV or TOML), the name
    of a shipped table (``marginlab.models.margin.bracket_tables.builtin_table_names()``:
    Binance BTCUSDT, ETHUSDT, BTCBUSD, ETHBUSD USD-M and BTCUSD_PERP, ETHUSD_PERP COIN-M), or
    ``"builtin"`` for Binance BTCUSDT.
    """

    tables: dict[str, str] = Field(min_length=1)
    mode: Literal["cross", "isolated"] | None = None
    leverage: FloatOrMap | None = None
    on_missing: Literal["raise", "ignore"] | None = None
    on_unsupported: Literal["raise", "ignore"] | None = None
    extend_last: bool | None = None


class DydxParams(_Strict):
    """``params`` of a ``dydx`` (open-interest-scaled margin fractions) method."""

    imf_base: FloatOrMap
    mmf_fraction: FloatOrMap
    oi_lower_cap: FloatOrMap | None = None
    oi_upper_cap: FloatOrMap | None = None
    open_interest: dict[str, float] | None = None
    on_unsupported: Literal["raise", "ignore"] | None = None


class _Method(_Strict):
    name: str | None = Field(None, min_length=1, max_length=200)


class _RiskMethod(_Method):
    measure: Literal["es", "var"] = "es"
    level: float = Field(0.99, gt=0.5, lt=1.0)
    mm_fraction: float = Field(0.5, gt=0.0, le=1.0)


class MonteCarloMethod(_RiskMethod):
    """``type = "monte_carlo"``: VaR/ES over the ``[scenarios]`` model."""

    type: Literal["monte_carlo"]
    params: MonteCarloParams = MonteCarloParams()


class HistoricalMethod(_RiskMethod):
    """``type = "historical"``: HS / FHS over a price history."""

    type: Literal["historical"]
    params: HistoricalParams


class SpanMethod(_Method):
    """``type = "span"``: SPAN-like 16-scenario grid."""

    type: Literal["span"]
    mm_fraction: float | None = Field(None, gt=0.0, le=1.0)
    params: SpanParams


class DeribitMethod(_Method):
    """``type = "deribit"``: Deribit-like risk matrix."""

    type: Literal["deribit"]
    mm_fraction: float | None = Field(None, gt=0.0, le=1.0)
    params: DeribitParams = DeribitParams()


class TieredMethod(_Method):
    """``type = "tiered"``: exchange bracket tables."""

    type: Literal["tiered"]
    params: TieredParams


class DydxMethod(_Method):
    """``type = "dydx"``: dYdX v4 margin fractions."""

    type: Literal["dydx"]
    params: DydxParams


MethodSection = Annotated[
    MonteCarloMethod | HistoricalMethod | SpanMethod | DeribitMethod | TieredMethod
    | DydxMethod,
    Field(discriminator="type"),
]

METHOD_SCHEMAS: dict[str, type[_Method]] = {
    "monte_carlo": MonteCarloMethod, "historical": HistoricalMethod, "span": SpanMethod,
    "deribit": DeribitMethod, "tiered": TieredMethod, "dydx": DydxMethod,
}
"""The schema of each method type (fields and their ``params``)."""


class RunSection(_Strict):
    """``[run]``: where outputs go and how the work is cut."""

    output: str = Field("marginlab-output", min_length=1)
    output_outside_config: bool = False
    account_block: int = Field(20_000, ge=1, le=LIMITS["account_block"])
    memory_budget_mb: float = Field(4_000.0, gt=0, le=LIMITS["memory_budget_mb"])
    report: bool = True
    precision_target: float | None = Field(None, gt=0.0, lt=1.0)
    precision_share: float = Field(0.99, gt=0.0, le=1.0)
    max_scenarios: int = Field(1 << 20, ge=100, le=LIMITS["n_scenarios"])
    precision_sample_accounts: int | None = Field(2_000, ge=1, le=LIMITS["synthetic_accounts"])


class LiquiditySection(_Strict):
    """``[liquidity]``: a liquidity / concentration add-on on the risk-based methods
    (:class:`~marginlab.models.margin.liquidity.LiquidityAddOn`): ``adv`` is the average
    daily volume per instrument id (units of the underlying per day); the add-on is
    ``risk_parameter x max(sqrt(|q| / adv) - threshold, 0) x |q| x mark`` (USD), times
    ``im_factor`` in IM and ``mm_factor`` in MM. ``methods``: the names of the methods it
    applies to (default: every monte_carlo, historical, span and deribit method)."""

    adv: dict[str, PositiveFloat] = Field(min_length=1)
    risk_parameter: FloatOrMap = 0.0
    threshold: FloatOrMap = 0.0
    im_factor: float = Field(1.0, ge=0.0, le=100.0)
    mm_factor: float = Field(1.0, ge=0.0, le=100.0)
    methods: list[str] | None = None


class ClusterSection(_Strict):
    """``[cluster]``: a Dask cluster for the blocks (the CLI's ``--workers`` and
    ``--scheduler`` override ``workers`` and ``scheduler``). TLS files are passed to
    ``distributed.security.Security`` and require a ``tls://`` scheduler address. A run whose
    cluster has had no worker for ``lost_workers_timeout_s`` seconds stops with its
    checkpoints kept (resume with ``--resume``)."""

    workers: int = Field(0, ge=0, le=1024)
    scheduler: str | None = None
    lost_workers_timeout_s: float = Field(60.0, gt=0, le=86_400)
    tls_ca_file: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None


class LiquidationProfileSection(_Strict):
    """``[liquidation_profile]`` (opt-in): each account's liquidation risk over the MPOR,
    written to ``liquidation.parquet`` (:func:`~marginlab.models.liquidation_profile.
    liquidation_profile`, columns in its ``PROFILE_COLUMNS``). Paths of the ``[scenarios]``
    model (zero drift) with ``n_steps`` monitoring steps over ``horizon_days`` (default the
    scenarios' MPOR), seeded by child stream 1 of ``scenarios.seed``; an account is margin
    called / liquidated when its margin balance falls below ``maintenance`` (a rate of
    position notional per underlying or instrument id, or one rate for all), and pays
    ``liquidation_fee`` (of the closed notional). Accounts are judged each on its own (no
    price impact, an unlimited insurance fund, no ADL), so the numbers do not depend on how
    the book is split into blocks; cascades are for the API
    (:func:`~marginlab.models.liquidation.simulate_liquidations`)."""

    maintenance: FloatOrMap
    liquidation_fee: float = Field(0.005, ge=0.0, le=0.5)
    n_paths: int = Field(2_000, ge=100, le=1_000_000)
    n_steps: int = Field(48, ge=1, le=10_000)
    horizon_days: float | None = Field(None, gt=0, le=LIMITS["horizon_days"])
    quantiles: list[float] = Field([0.05, 0.5, 0.95], min_length=1, max_length=20)
    level: float = Field(0.99, gt=0.0, lt=1.0)


class RunConfig(_Strict):
    """A validated batch-run configuration (see the module docstring for the layout)."""

    book: BookSection
    market: MarketSection
    scenarios: ScenarioSection
    methods: list[MethodSection] = Field(min_length=1, max_length=LIMITS["methods"])
    run: RunSection = RunSection()
    cluster: ClusterSection = ClusterSection()
    liquidity: LiquiditySection | None = None
    liquidation_profile: LiquidationProfileSection | None = None
    base_dir: str = "."
    source: str = "config"

    def path(self, p: str) -> Path:
        """A config path resolved against the config file's folder."""
        q = Path(p)
        return q if q.is_absolute() else Path(self.base_dir) / q

    def method_name(self, i: int) -> str:
        """The name of method ``i`` (its ``name``, else its type)."""
        m = self.methods[i]
        return m.name or m.type

    def digest(self) -> str:
        """SHA-256 of the configuration's content that determines the numbers (not the
        output folder, the report switch or the cluster): part of a run's identity."""
        d = self.model_dump()
        for k in ("base_dir", "source", "cluster"):
            d.pop(k)
        d["run"].pop("output")
        d["run"].pop("output_outside_config")
        d["run"].pop("report")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def input_files(self) -> dict[str, Path]:
        """Every file the run reads, by key path (book tables, price and bracket files)."""
        out: dict[str, Path] = {}
        for key in ("instruments", "positions", "collateral", "orders"):
            v = getattr(self.book, key)
            if v is not None:
                out[f"book.{key}"] = self.path(v)
        for u, spec in self.market.surfaces.items():
            if isinstance(spec, ChainSurface):
                out[f"market.surfaces.{u}.file"] = self.path(spec.file)
        for i, m in enumerate(self.methods):
            if isinstance(m, HistoricalMethod):
                for key in ("implied_vol", "basis", "funding"):
                    v = getattr(m.params, key)
                    if v is not None and v not in _SHARED_SERIES:
                        out[f"methods[{i}].params.{key}"] = self.path(v)
            if isinstance(m, HistoricalMethod):
                p = m.params.prices
                if isinstance(p, str):
                    out[f"methods[{i}].params.prices"] = self.path(p)
                else:
                    for k, v in p.items():
                        out[f"methods[{i}].params.prices.{k}"] = self.path(v)
            elif isinstance(m, TieredMethod):
                from ..margin.bracket_tables import builtin_table_names

                for k, v in m.params.tables.items():
                    if v != "builtin" and v not in builtin_table_names():
                        out[f"methods[{i}].params.tables.{k}"] = self.path(v)
        return out


# ----------------------------------------------------------------------------- errors
def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    i = 0
    while i < len(loc):
        x = loc[i]
        if isinstance(x, int):
            parts.append(f"[{x}]")
            # a discriminated union adds the tag ("historical") after the index: drop it
            if (i >= 1 and loc[i - 1] == "methods" and i + 1 < len(loc)
                    and loc[i + 1] in METHOD_TYPES):
                i += 1
        elif str(x).startswith(("function-", "union[", "list[", "dict[")) or x in (
                "str", "float", "int", "bool", "list[float]", "dict[str,float]", "none"):
            pass  # pydantic's internal union branch labels
        else:
            parts.append(("." if parts else "") + str(x))
        i += 1
    return "".join(parts) or "(top level)"


def _format_errors(exc: ValidationError) -> list[str]:
    lines: dict[str, str] = {}
    for e in exc.errors():
        key = _key_path(tuple(e["loc"]))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not used by this section or method type)"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown method type; known: {', '.join(METHOD_TYPES)}"
        elif e["type"] == "union_tag_not_found":
            msg = f"a type is required; one of {', '.join(METHOD_TYPES)}"
        if e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif "input" in e and e["type"] not in ("missing", "extra_forbidden"):
            shown = repr(e["input"])
            if len(shown) <= 60:
                msg = f"{msg}, got {shown}"
        lines.setdefault(key, f"{key}: {msg}")  # one message per key (union branches repeat)
    return list(lines.values())


def check_scheduler_address(address: str, key: str = "--scheduler") -> str:
    """A Dask scheduler address ``tcp://host:port`` (or ``tls://``, ``inproc://``, ``ucx://``),
    checked before anything is started; raises ConfigError naming ``key``."""
    m = re.fullmatch(r"(tcp|tls|ucx|inproc)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})",
                     address.strip())
    if m is None or not (0 < int(m.group(3)) < 65536):
        raise ConfigError(f"{key}: not a scheduler address like tcp://HOST:PORT, "
                          f"got {address!r}")
    return address.strip()


def _model_problems(cfg: RunConfig) -> list[str]:
    """Build the scenario model (cheap) so that bad sigmas and correlations are reported
    with their keys now, not after the output folder is touched."""
    from .build import build_model  # local: build imports this module

    try:
        build_model(cfg)
    except (TypeError, ValueError) as exc:
        msg = str(exc).replace("\n", " ")
        msg = msg.removeprefix("scenarios.params: ")
        first = re.match(r"[A-Za-z_][A-Za-z0-9_]*", msg)
        word = first.group(0) if first else ""
        if word == "corr" or msg.startswith("correlation"):
            return [f"scenarios.corr: {msg}"]
        if word in cfg.scenarios.params:
            return [f"scenarios.params.{word}: {msg}"]
        m = re.search(r"unexpected keyword argument '(\w+)'", msg)
        if m:
            return [f"scenarios.params.{m.group(1)}: unknown parameter of model "
                    f"{cfg.scenarios.model!r}"]
        m = re.search(r"missing \d+ required (?:keyword-only |positional )?arguments?: (.*)", msg)
        if m:
            return [f"scenarios.params: model {cfg.scenarios.model!r} requires {m.group(1)}"]
        return [f"scenarios.params: {msg}"]
    return []


def config_from_dict(data: dict[str, Any], base_dir: str | os.PathLike[str] = ".",
                     source: str = "config") -> RunConfig:
    """Validate a configuration mapping; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a table of sections is required")
    try:
        cfg = RunConfig(**data, base_dir=str(base_dir), source=source)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_format_errors(exc))) from None
    except TypeError as exc:  # e.g. a key that collides with a keyword argument
        raise ConfigError(f"{source}: {exc}") from None
    problems = []
    b = cfg.book
    files_given = [k for k in ("instruments", "positions", "collateral")
                   if getattr(b, k) is not None]
    if b.synthetic_accounts is not None and files_given:
        problems.append(f"book: give either files ({', '.join(files_given)}) or "
                        "synthetic_accounts, not both")
    elif b.synthetic_accounts is None and (b.instruments is None or b.positions is None):
        problems.append("book: give instruments and positions files, or synthetic_accounts")
    und = [u.upper() for u in cfg.scenarios.underlyings]
    if len(set(und)) != len(und):
        problems.append(f"scenarios.underlyings: repeated names in {cfg.scenarios.underlyings}")
    spot = {k.upper() for k in cfg.market.spot}
    missing = [u for u in und if u not in spot]
    if missing:
        problems.append(f"market.spot: no price for underlyings {missing}")
    n = len(und)
    corr_ok = True
    if cfg.scenarios.corr is not None and (len(cfg.scenarios.corr) != n or
                                           any(len(r) != n for r in cfg.scenarios.corr)):
        problems.append(f"scenarios.corr: must be {n} x {n} for underlyings {und}")
        corr_ok = False
    names = [cfg.method_name(i) for i in range(len(cfg.methods))]
    if len(set(names)) != len(names):
        problems.append(f"methods: names must be unique, got {names}")
    for key, p in cfg.input_files().items():
        if not p.is_file():
            problems.append(f"{key}: no such file: {p}")
    cl = cfg.cluster
    if cl.scheduler is not None:
        try:
            check_scheduler_address(cl.scheduler, "cluster.scheduler")
        except ConfigError as exc:
            problems.append(str(exc))
    tls = {k: getattr(cl, k) for k in ("tls_ca_file", "tls_client_cert", "tls_client_key")}
    for k, v in tls.items():
        if v is not None and not cfg.path(v).is_file():
            problems.append(f"cluster.{k}: no such file: {cfg.path(v)}")
    if any(v is not None for v in tls.values()):
        if not all(v is not None for v in tls.values()):
            problems.append("cluster: TLS needs tls_ca_file, tls_client_cert and tls_client_key")
        if cl.scheduler is not None and not cl.scheduler.startswith("tls://"):
            problems.append("cluster.scheduler: TLS settings need a tls:// address")
    if not cfg.run.output.strip():
        problems.append("run.output: must name a folder")
    precise = cfg.run.precision_target is not None
    for i, m in enumerate(cfg.methods):
        if isinstance(m, MonteCarloMethod) and m.params.sampling == "qmc":
            r = m.params.randomizations or 16  # MonteCarloMargin's default
            for key, n in (("scenarios.n_scenarios", cfg.scenarios.n_scenarios),
                           ("run.max_scenarios", cfg.run.max_scenarios if precise else r)):
                if n % r:
                    problems.append(f"methods[{i}].params.randomizations: {r} must divide "
                                    f"{key} = {n}")
    if precise:
        if not any(m.type == "monte_carlo" for m in cfg.methods):
            problems.append("run.precision_target: needs a monte_carlo method")
        if cfg.run.max_scenarios < cfg.scenarios.n_scenarios:
            problems.append(f"run.max_scenarios: {cfg.run.max_scenarios} is below "
                            f"scenarios.n_scenarios = {cfg.scenarios.n_scenarios} (the first "
                            "step of a precision-targeted run)")
    if cfg.liquidity is not None and cfg.liquidity.methods is not None:
        unknown = [x for x in cfg.liquidity.methods if x not in names]
        if unknown:
            problems.append(f"liquidity.methods: no method named {unknown}; methods: {names}")
    if b.orders is not None and b.synthetic_accounts is not None:
        problems.append("book.orders: an orders file needs book files, not synthetic_accounts")
    if corr_ok and not missing:
        problems += _model_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a TOML configuration file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return config_from_dict(data, p.resolve().parent, str(p))
