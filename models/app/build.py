"""Building a run from its configuration: the market snapshot (with its implied-vol
surfaces), the scenario model, the margin methods (with the liquidity and open-order
wrappers), the book, the liquidation-profile paths and the scenario count of a
precision-targeted run. Everything here is deterministic in the configuration and the input
files; :mod:`.runner` calls it once per process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..book import Book
from ..scenarios import MarketState
from .config import RunConfig

__all__ = ["build_market", "build_model", "build_methods", "base_method", "load_book",
           "profile_paths", "precision_scenarios"]

def build_market(cfg: RunConfig) -> MarketState:
    """The market snapshot of the config (surfaces built, chain files fitted)."""
    from ..vol_surface import VolSurface
    from .config import ChainSurface, FlatSurface

    mk = cfg.market
    spot = {k.upper(): v for k, v in mk.spot.items()}
    surfaces = {}
    for u, spec in mk.surfaces.items():
        try:
            if isinstance(spec, FlatSurface):
                surfaces[u.upper()] = VolSurface.flat(spec.level)
            elif isinstance(spec, ChainSurface):
                if u.upper() not in spot:
                    raise ValueError(f"no market.spot price for {u}")
                surfaces[u.upper()] = VolSurface.from_chain(cfg.path(spec.file), spot[u.upper()],
                                                            rate=mk.rate)
            else:
                surfaces[u.upper()] = VolSurface.ssvi(spec.level, rho=spec.rho, eta=spec.eta,
                                                      gamma=spec.gamma,
                                                      term_slope=spec.term_slope)
        except (TypeError, ValueError, KeyError, OSError) as exc:
            msg = str(exc).replace("\n", " ")
            raise ValueError(f"{cfg.source}: market.surfaces.{u}: {msg}") from None
    return MarketState(spot=mk.spot, vol=mk.vol, rate=mk.rate, surfaces=surfaces)


def build_model(cfg: RunConfig) -> Any:
    """The scenario model of the config."""
    from ..market import GARCH, GBM, MertonJump

    sc = cfg.scenarios
    cls = {"gbm": GBM, "merton": MertonJump, "garch": GARCH}[sc.model]
    try:
        return cls(**sc.params, corr=sc.corr)
    except TypeError as exc:
        raise ValueError(f"scenarios.params: {exc}") from None


def _set(params: Any) -> dict[str, Any]:
    """The parameters a configuration sets (unset ones keep the method's defaults)."""
    return params.model_dump(exclude_none=True)


def _historical_prices(cfg: RunConfig, prices: str | dict[str, str]) -> pd.DataFrame:
    if isinstance(prices, str):
        return pd.read_csv(cfg.path(prices), index_col=0, parse_dates=True)
    from ..history import read_many

    hist = read_many({k.upper(): cfg.path(v) for k, v in prices.items()})
    return hist.to_frame()


def _history_table(cfg: RunConfig, key: str, src: str) -> pd.DataFrame:
    """A historical method's implied-vol, basis or funding table: a CSV (date or datetime
    index, one column per underlying), or for ``basis`` ``"cme"`` (CME-vs-perpetual BTC
    basis moves) and for ``funding`` ``"binance"`` / ``"bybit"`` (BTCUSDT funding rates),
    read from the shared data folder."""
    from .. import basis as B

    if key == "basis" and src == "cme":
        return pd.DataFrame({"BTC": B.daily_basis_moves(B.cme_perp_basis())})
    if key == "funding" and src in ("binance", "bybit"):
        return pd.DataFrame({"BTC": B.funding_rates(src)})
    if src in ("cme", "binance", "bybit"):
        raise ValueError(f"{key} = {src!r} is not a {key} series; a CSV file or "
                         + ("'cme'" if key == "basis" else "'binance' / 'bybit'"))
    return pd.read_csv(cfg.path(src), index_col=0, parse_dates=True)


def build_methods(cfg: RunConfig) -> list[Any]:
    """The configured margin methods, in order (price and bracket files are read here)."""
    from ..margin.risk_based import HistoricalMargin, MonteCarloMargin

    model = None
    sc = cfg.scenarios
    out = []
    for i, m in enumerate(cfg.methods):
        name = cfg.method_name(i)
        key = f"methods[{i}]"
        try:
            if m.type == "monte_carlo":
                model = model if model is not None else build_model(cfg)
                params = _set(m.params)
                if params.get("move_cap") == "none":
                    params["move_cap"] = None
                out.append(MonteCarloMargin(
                    model, sc.underlyings, measure=m.measure, level=m.level,
                    horizon_days=sc.horizon_days, n_scenarios=sc.n_scenarios, seed=sc.seed,
                    mm_fraction=m.mm_fraction, vol_of_vol=sc.vol_of_vol,
                    vol_price_corr=sc.vol_price_corr, skew_vol=sc.skew_vol,
                    skew_price_corr=sc.skew_price_corr, term_vol=sc.term_vol,
                    term_level_corr=sc.term_level_corr, basis_vol=sc.basis_vol,
                    basis_price_corr=sc.basis_price_corr, name=name, **params))
            elif m.type == "historical":
                params = _set(m.params)
                prices = _historical_prices(cfg, params.pop("prices"))
                for k in ("implied_vol", "basis", "funding"):
                    if k in params:
                        params[k] = _history_table(cfg, k, params[k])
                h = int(round(sc.horizon_days))
                out.append(HistoricalMargin(prices, measure=m.measure, level=m.level,
                                            horizon_days=max(h, 1),
                                            mm_fraction=m.mm_fraction, name=name, **params))
            elif m.type in ("span", "deribit"):
                from ..margin import grid

                cls = grid.SpanLike if m.type == "span" else grid.DeribitLike
                extra = {} if m.mm_fraction is None else {"mm_fraction": m.mm_fraction}
                out.append(cls(**_set(m.params), **extra, name=name))
            elif m.type == "tiered":
                from ..margin.bracket_tables import builtin_table, builtin_table_names
                from ..margin.brackets import BracketTable, binance_btcusdt_2021
                from ..margin.exchange import TieredMargin

                params = _set(m.params)
                tables = {}
                for key_, src in params.pop("tables").items():
                    if src == "builtin":
                        tables[key_] = binance_btcusdt_2021()
                    elif src in builtin_table_names():  # a shipped table by name
                        tables[key_] = builtin_table(src)
                    elif str(src).lower().endswith(".toml"):
                        tables[key_] = BracketTable.from_toml(cfg.path(src))
                    else:
                        tables[key_] = BracketTable.from_csv(cfg.path(src))
                out.append(TieredMargin(tables, name=name, **params))
            else:
                from ..margin.exchange import DydxMargin

                out.append(DydxMargin(**_set(m.params), name=name))
        except (TypeError, ValueError, KeyError, OSError) as exc:
            msg = str(exc).replace("\n", " ")
            raise ValueError(f"{cfg.source}: {key}.params ({name!r}): {msg}") from None
    return _wrapped(cfg, out)


_RISK_TYPES = ("monte_carlo", "historical", "span", "deribit")


def _wrapped(cfg: RunConfig, methods: list[Any]) -> list[Any]:
    """The ``[liquidity]`` add-on on the risk-based methods it names, then open orders
    (``book.orders``) on every method: orders that fill also pay the add-on."""
    liq = cfg.liquidity
    if liq is not None:
        from ..margin.liquidity import LiquidityAddOn

        chosen = liq.methods
        for i, m in enumerate(cfg.methods):
            name = cfg.method_name(i)
            if (name in chosen) if chosen is not None else (m.type in _RISK_TYPES):
                try:
                    methods[i] = LiquidityAddOn(
                        methods[i], adv=liq.adv, risk_parameter=liq.risk_parameter,
                        threshold=liq.threshold, im_factor=liq.im_factor,
                        mm_factor=liq.mm_factor, name=name)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{cfg.source}: liquidity: {exc}") from None
    if cfg.book.orders is not None:
        from ..orders import WithOrders

        methods = [WithOrders(m, name=m.name) for m in methods]
    return methods


def base_method(method: Any) -> Any:
    """The method inside the liquidity and open-order wrappers (itself if unwrapped)."""
    while hasattr(method, "method") and not hasattr(method, "scenarios"):
        method = method.method
    return method


def load_book(cfg: RunConfig) -> Book:
    """The book of the config: files (validated before any computation) or synthetic."""
    b = cfg.book
    if b.synthetic_accounts is not None:
        from ..synthetic import make_book

        return make_book(b.synthetic_accounts, b.synthetic_seed)
    return Book.from_files(cfg.path(b.instruments), cfg.path(b.positions),
                           None if b.collateral is None else cfg.path(b.collateral),
                           duplicates=b.duplicates,
                           orders=None if b.orders is None else cfg.path(b.orders))



def profile_paths(cfg: RunConfig) -> np.ndarray | None:
    """Price paths of ``[liquidation_profile]`` (None without it): the ``[scenarios]``
    model with zero drift, columns in ``scenarios.underlyings`` order (USD), seeded by child
    stream 1 of ``scenarios.seed``; shape ``(n_paths, n_steps + 1, n_underlyings)``."""
    lp = cfg.liquidation_profile
    if lp is None:
        return None
    from marginlab.simulate import simulate_paths

    from ..market import with_zero_drift

    sc = cfg.scenarios
    days = sc.horizon_days if lp.horizon_days is None else lp.horizon_days
    spot = {k.upper(): v for k, v in cfg.market.spot.items()}
    s0 = np.array([spot[u.upper()] for u in sc.underlyings])
    return simulate_paths(with_zero_drift(build_model(cfg)), s0, n_steps=lp.n_steps,
                          dt=days / 365.0 / lp.n_steps, n_paths=lp.n_paths,
                          seed=np.random.SeedSequence(sc.seed, spawn_key=(1,)))


def _profile_rules(cfg: RunConfig, book: Book | None = None) -> Any:
    """The liquidation rules of ``[liquidation_profile]``; with ``book``, also checked to
    cover every instrument the book holds (by instrument id or underlying) and every price
    column it needs to be among ``scenarios.underlyings``, so that a run is refused before
    its output folder is touched."""
    from ..liquidation import LiquidationRules

    lp = cfg.liquidation_profile
    mm = lp.maintenance
    if not isinstance(mm, dict):
        mm = {u.upper(): float(mm) for u in cfg.scenarios.underlyings}
    key = f"{cfg.source}: liquidation_profile"
    try:
        rules = LiquidationRules(maintenance=mm, liquidation_fee=lp.liquidation_fee,
                                 insurance_fund=np.inf)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: {exc}") from None
    if book is not None:
        held = book.instruments[book.instruments["instrument_id"].isin(
            book.positions["instrument_id"])]
        keys = {str(k).upper() for k in rules.maintenance} | set(rules.maintenance)
        lacking = sorted({str(u) for i, u in zip(held["instrument_id"], held["underlying"],
                                                 strict=True)
                          if i not in keys and str(u).upper() not in keys})
        if lacking:
            raise ValueError(f"{key}.maintenance: no rate for underlying(s) {lacking} that "
                             "the book holds")
        und = {u.upper() for u in cfg.scenarios.underlyings}
        missing = sorted({str(u).upper() for u in held["underlying"]} - und)
        if missing:
            raise ValueError(f"{key}: the book holds {missing}, which are not among "
                             "scenarios.underlyings (the profile's price paths)")
    return rules


def _with_scenarios(cfg: RunConfig, n: int) -> RunConfig:
    return cfg.model_copy(update={"scenarios": cfg.scenarios.model_copy(
        update={"n_scenarios": int(n)})})


def precision_scenarios(cfg: RunConfig, book: Book, *, market: MarketState | None = None,
                        methods: list[Any] | None = None
                        ) -> tuple[int, tuple[tuple[int, float], ...]]:
    """The scenario count of a precision-targeted run (``run.precision_target``).

    From ``scenarios.n_scenarios``, the count doubles (capped at ``run.max_scenarios``) until,
    for every Monte Carlo method, the ES standard error is at most ``precision_target`` x ES
    on at least ``precision_share`` of the judged accounts: ``precision_sample_accounts``
    evenly spaced accounts of the whole book (a fixed subset, so the count does not depend
    on blocks, threads or workers), or all. Returns the count and the history
    ``((n, worst share met), ...)``; the run then uses that count everywhere, so the same
    seed and target give the same count and the same bits. ``market`` and ``methods``: the
    configuration's, when already built (else built here).
    """
    from dataclasses import replace

    from ..margin.risk_based import MonteCarloMargin
    from ..precision import precision_met

    run = cfg.run
    market = build_market(cfg) if market is None else market
    methods = build_methods(cfg) if methods is None else methods
    mcs = [m for m in map(base_method, methods) if isinstance(m, MonteCarloMargin)]
    judge = book
    k = run.precision_sample_accounts
    if k is not None and k < book.n_accounts:
        judge = book.subset(np.unique(np.linspace(0, book.n_accounts - 1, k).round()
                                      .astype(np.int64)))
    n = cfg.scenarios.n_scenarios
    history = []
    while True:
        worst = 1.0
        for m in mcs:
            d = replace(m, n_scenarios=n).compute(judge, market).details
            worst = min(worst, float(np.mean(precision_met(d["es"], d["es_se"],
                                                           run.precision_target))))
        history.append((n, worst))
        if worst >= run.precision_share or n >= run.max_scenarios:
            return n, tuple(history)
        n = min(2 * n, run.max_scenarios)


