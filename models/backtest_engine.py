"""The engine of the rolling backtest: inputs, per-date states, scenario methods and statistics
(private; the entry point is :func:`~marginlab.models.backtest_runner.run_backtest`)."""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from marginlab.simulate import simulate_paths
from marginlab.simulate.specs import GARCHSpec, JumpDiffusionSpec

from .backtest import (
    acerbi_szekely_z2,
    christoffersen,
    exceptions,
    kupiec,
    resample_scenarios,
    traffic_light,
)
from .backtest_methods import METHODS, POSITIONS, BacktestMethod, Position
from .history import PriceHistory, read_prices
from .liquidation import var_es as _var_es
from .margin.brackets import binance_btcusdt_2021
from .market import GARCH, GBM, MertonJump
from .move_cap import cap_paths
from .procyclicality import apc_buffer, apc_floor, apc_stressed_weight, procyclicality

_DAYS_PER_YEAR = 365.0
_APC_FLOOR_YEARS = 10


# ========================================================================== inputs
def _history_of(name: str | None, obj: Any, column: str) -> PriceHistory:
    if isinstance(obj, (str, os.PathLike)):
        h = read_prices(obj, column=column)
        return h if name is None else PriceHistory(h.times, h.prices, names=(name,),
                                                   source=h.source)
    if isinstance(obj, PriceHistory):
        if obj.n_assets != 1:
            raise ValueError(f"{name or obj.names}: expected one asset per entry, got "
                             f"{obj.n_assets}")
        return obj if name is None else PriceHistory(obj.times, obj.prices, names=(name,),
                                                     source=obj.source)
    if isinstance(obj, pd.Series):
        s = obj.dropna()
        label = name if name is not None else (str(obj.name) if obj.name is not None
                                               else "asset0")
        try:
            idx = pd.DatetimeIndex(s.index)
        except (TypeError, ValueError):
            raise TypeError(f"prices {label!r}: the index must be dates") from None
        if idx.tz is not None:
            idx = idx.tz_convert(None)
        return PriceHistory(idx.to_numpy(), s.to_numpy(dtype=np.float64), names=(label,))
    raise TypeError("prices must be a PriceHistory, a pandas Series/DataFrame of closes "
                    "indexed by date, a file path, or a mapping/sequence of those; got "
                    f"{type(obj).__name__}")


def _as_assets(prices: Any, column: str = "close") -> list[PriceHistory]:
    items: list[tuple[str | None, Any]] = []
    if isinstance(prices, PriceHistory) and prices.n_assets > 1:
        for j, nm in enumerate(prices.names):
            items.append((nm, PriceHistory(prices.times, prices.prices[:, j], names=(nm,))))
    elif isinstance(prices, pd.DataFrame):
        if prices.shape[1] == 0:
            raise ValueError("prices DataFrame has no columns")
        for c in prices.columns:
            items.append((str(c), prices[c]))
    elif isinstance(prices, Mapping):
        items = [(str(k), v) for k, v in prices.items()]
    elif isinstance(prices, (str, os.PathLike, PriceHistory, pd.Series)):
        items = [(None, prices)]
    elif isinstance(prices, Sequence):
        items = [(None, p) for p in prices]
    else:
        raise TypeError("prices must be a PriceHistory, a pandas Series/DataFrame, a file "
                        f"path, or a mapping/sequence of those; got {type(prices).__name__}")
    if not items:
        raise ValueError("prices must hold at least one asset")
    hists = [_history_of(k, v, column) for k, v in items]
    names = [h.names[0] for h in hists]
    if len(set(names)) != len(names):
        raise ValueError(f"asset names must be distinct, got {names}; pass a mapping "
                         "{name: prices}")
    steps = []
    for h in hists:
        hours = h.step * _DAYS_PER_YEAR * 24.0
        whole = round(hours)
        if whole < 1 or abs(hours - whole) > 0.01 * whole or 24 % whole:
            raise ValueError(f"prices {h.names[0]!r}: closes every day or every whole number "
                             f"of hours dividing 24 (1 h, 8 h, 1 d) are required, got a "
                             f"median spacing of {hours:.4g} hours")
        steps.append(int(whole))
        gaps = h.gaps()
        if gaps:
            g = gaps[0]
            raise ValueError(f"prices {h.names[0]!r}: {len(gaps)} gap(s) in the series, the "
                             f"first after {g.start} ({g.missing} missing step(s)); the "
                             "rolling backtest needs one close per step (prices are never "
                             "filled here)")
    if len(set(steps)) > 1:
        spacing = dict(zip(names, steps, strict=True))
        raise ValueError(f"all assets must have the same spacing, got {spacing} hours")
    return hists


def _implied_vol_for(name: str, dates: np.ndarray, implied_vol: Any) -> np.ndarray | None:
    if implied_vol is None:
        return None
    if not isinstance(implied_vol, Mapping):
        raise TypeError("implied_vol must be a mapping {asset: pandas Series of decimal "
                        f"implied vols indexed by date}}, got {type(implied_vol).__name__}")
    if name not in implied_vol:
        return None
    s = implied_vol[name]
    if not isinstance(s, pd.Series):
        raise TypeError(f"implied_vol[{name!r}] must be a pandas Series indexed by date, got "
                        f"{type(s).__name__}")
    s = s.dropna().astype(float)
    idx = pd.DatetimeIndex(s.index)
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    s = pd.Series(s.to_numpy(), index=idx.normalize()).sort_index()
    s = s[~s.index.duplicated(keep="last")]
    bad = (s <= 0) | (s > 5)
    if bad.any():
        raise ValueError(f"implied_vol[{name!r}] must be decimal vols in (0, 5], got "
                         f"{float(s[bad].iloc[0])!r} on {s[bad].index[0]:%Y-%m-%d} (DVOL is "
                         "quoted in percent: divide by 100)")
    full = s.reindex(pd.DatetimeIndex(dates).normalize().union(s.index)).ffill()
    return full.reindex(pd.DatetimeIndex(dates).normalize()).to_numpy(dtype=np.float64)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} "
                        f"{value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def _resolve_named(value: Any, cls: type, registry: dict[str, Any], *, arg: str, noun: str,
                   type_hint: str, empty: str, plural: str) -> list[Any]:
    """Objects of ``cls`` from ``value``: one, or a list, of ``cls`` instances or names in
    ``registry`` (a name may be a comma-separated list). Errors name ``arg``."""
    if isinstance(value, (str, cls)) or not isinstance(value, Iterable):
        value = [value]  # a lone non-name, such as a number, is then refused by name below
    out = []
    for item in value:
        if isinstance(item, cls):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"{arg} must {type_hint}, got {item!r}")
        for part in item.split(","):
            key = part.strip()
            if not key:
                continue
            if key not in registry:
                raise ValueError(f"{arg}: unknown {noun} {key!r}; known: {', '.join(registry)}")
            out.append(registry[key])
    if not out:
        raise ValueError(f"{arg} must {empty}")
    names = [x.name for x in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{plural} must have distinct names, got {names}")
    return out


def _resolve_methods(methods: Any) -> list[BacktestMethod]:
    return _resolve_named(methods, BacktestMethod, METHODS, arg="methods", noun="method",
                          type_hint="be names or BacktestMethod objects",
                          empty="name at least one method", plural="methods")


def _resolve_positions(portfolio: Any) -> list[Position]:
    return _resolve_named(portfolio, Position, POSITIONS, arg="portfolio", noun="position",
                          type_hint="hold position names or Position objects",
                          empty="hold at least one position", plural="portfolio positions")


# ========================================================================== engine
def _ewma_var(ret: np.ndarray, lam: float) -> np.ndarray:
    """EWMA variance v[k] after the return of day k (ret[0] unused): the forecast for k+1.

    v[0] is the mean square of the first min(30, n) returns (zero-mean, as RiskMetrics)."""
    n = ret.size
    v = np.empty(n)
    first = ret[1:min(31, n)]
    v[0] = float(np.mean(first**2)) if first.size else 1e-4
    v[0] = max(v[0], 1e-12)
    for k in range(1, n):
        v[k] = lam * v[k - 1] + (1.0 - lam) * ret[k] ** 2
    return v


def _scenario_moves(x: np.ndarray, v0: Any, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Gross return exp(sum x) and EWMA variance ratio v_h / v_0 of return paths x (.., h)."""
    h = x.shape[-1]
    w = lam ** np.arange(h - 1, -1, -1, dtype=np.float64)
    v0 = np.asarray(v0, dtype=np.float64)
    v_h = lam**h * v0 + (1.0 - lam) * ((x * x) @ w)
    return np.exp(x.sum(axis=-1)), v_h / v0


class _Static:
    """A model without state between refits (GBM, Merton): the kernel spec, zero drift."""

    def __init__(self, spec: JumpDiffusionSpec, zero_drift: bool):
        self.spec = spec._replace(mu=np.zeros_like(spec.mu)) if zero_drift else spec

    def update(self, r: float) -> None:
        pass

    def current(self) -> Any:
        return self.spec


class _Garch:
    """GARCH family: parameters frozen, conditional variance rolled with each new return."""

    def __init__(self, spec: GARCHSpec, zero_drift: bool):
        self.omega = float(spec.omega[0])
        self.alpha = float(spec.alpha[0])
        self.beta = float(spec.beta[0])
        self.gamma = float(spec.gamma[0])
        self.mu = float(spec.mu[0])
        self.s2 = float(spec.sigma2_0[0])
        self.spec = spec._replace(mu=np.zeros(1)) if zero_drift else spec

    def update(self, r: float) -> None:
        e = r - self.mu
        lev = self.gamma if e < 0.0 else 0.0
        self.s2 = self.omega + (self.alpha + lev) * e * e + self.beta * self.s2

    def current(self) -> Any:
        return self.spec._replace(sigma2_0=np.array([self.s2]))


class _Ewma:
    def __init__(self, v: float, lam: float, step: float):
        self.v, self.lam, self.step = v, lam, step
        self.spec = GBM(0.0, 0.1).to_spec()

    def update(self, r: float) -> None:
        self.v = self.lam * self.v + (1.0 - self.lam) * r * r

    def current(self) -> Any:
        return self.spec._replace(sigma=np.array([math.sqrt(self.v / self.step)]))


def _state_of(model: Any, name: str, zero_drift: bool) -> Any:
    model = getattr(model, "model", model)
    if isinstance(model, (GBM, MertonJump, GARCH)):
        if model.n_assets != 1:
            raise ValueError(f"method {name!r}: fit returned a model of {model.n_assets} "
                             "assets; one is needed")
        spec = model.to_spec()
    elif isinstance(model, (JumpDiffusionSpec, GARCHSpec)):
        spec = model
    else:
        raise TypeError(f"method {name!r}: fit must return a GBM, MertonJump or GARCH (or a "
                        f"fit result), got {type(model).__name__}")
    if isinstance(spec, GARCHSpec):
        return _Garch(spec, zero_drift)
    return _Static(spec, zero_drift)


@dataclass
class _Run:
    """What one (asset, method) produces."""

    margin: dict[str, np.ndarray]
    var: dict[str, np.ndarray]
    es: dict[str, np.ndarray]
    sims: dict[str, np.ndarray | None]
    n_refits: int = 0
    n_warnings: int = 0
    n_failures: int = 0
    n_flagged: int = 0
    n_fallback: int = 0
    flag_counts: dict = field(default_factory=dict)
    n_capped: int = 0
    fit_seconds: float = 0.0
    seconds: float = 0.0


@dataclass
class _Cfg:
    level: float
    horizon: int
    lookback: int
    min_lookback: int
    refit: Mapping[str, int]
    n_scenarios: int
    seed: int
    measure: str
    n_z2_sims: int
    iv_multiplier: float
    iv_lambda: float
    zero_drift: bool
    apc_buffer: float
    apc_rebuild_days: float
    apc_stressed_weight: float
    step_hours: int = 24
    move_cap: Any = "history"
    move_cap_multiple: float = 1.5

    @property
    def step_days(self) -> float:
        return self.step_hours / 24.0

    @property
    def step_years(self) -> float:
        return self.step_days / _DAYS_PER_YEAR

    @property
    def horizon_days(self) -> float:
        return self.horizon * self.step_days


class _AssetData:
    """Per-asset arrays shared by all methods."""

    def __init__(self, hist: PriceHistory, cfg: _Cfg, implied_vol: Any, asset_index: int):
        self.name = hist.names[0]
        self.index = asset_index
        self.dates = hist.times
        p = np.asarray(hist.prices, dtype=np.float64)
        self.prices = p
        n = p.size
        h = cfg.horizon
        ret = np.empty(n)
        ret[0] = np.nan
        ret[1:] = np.diff(np.log(p))
        self.ret = ret
        self.v = _ewma_var(np.where(np.isfinite(ret), ret, 0.0), cfg.iv_lambda)
        proxy = cfg.iv_multiplier * np.sqrt(self.v / cfg.step_years)
        ext = _implied_vol_for(self.name, self.dates, implied_vol)
        self.iv = proxy if ext is None else np.where(np.isfinite(ext), ext, proxy)
        self.iv_source = "ewma proxy" if ext is None else "external where available"
        t0 = cfg.min_lookback
        last = n - 1 - h
        if last < t0:
            raise ValueError(f"prices {self.name!r}: {n} closes are too few for a look-back "
                             f"of {t0} steps plus a {h}-step horizon (need >= {t0 + h + 1})")
        self.t = np.arange(t0, last + 1)
        self.n_oos = n - 1 - t0
        self.test = np.arange(0, self.t.size, h)
        # realised h-day paths of daily returns after each margin date
        win = np.lib.stride_tricks.sliding_window_view(ret[1:], h)  # row m: ret[m+1..m+h]
        self.windows = win
        self.real_paths = win[self.t]                                # ret[t+1..t+h]
        # the move cap on each margin date: a multiple of the largest |h-step move| seen in
        # the history up to that date (an expanding window; see models.move_cap)
        if cfg.move_cap == "history":
            csum = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(ret), ret, 0.0)[1:])])
            moves = np.abs(csum[h:] - csum[:-h])           # moves[m]: ret[m+1..m+h]
            run_max = np.maximum.accumulate(moves)
            # at date t the last complete move ends at t: index t - h
            self.cap = cfg.move_cap_multiple * run_max[np.maximum(self.t - h, 0)]
        elif cfg.move_cap is None:
            self.cap = None
        else:
            self.cap = np.full(self.t.size, float(cfg.move_cap))

    def window(self, t: int, lookback: int) -> np.ndarray:
        lo = max(1, t - lookback + 1)
        return self.ret[lo:t + 1]

    def hs_paths(self, t: int, lookback: int, h: int) -> np.ndarray:
        """Overlapping h-day paths of the look-back: rows ret[j..j+h-1], j in window."""
        lo = max(1, t - lookback + 1)
        return self.windows[lo - 1:t - h + 1]


def _path_losses(positions: Sequence[Position], s0: Any, iv0: Any, v0: Any, x: np.ndarray,
                 lam: float, h: int, step_days: float = 1.0) -> list[np.ndarray]:
    """Losses of each position on the per-step return paths ``x`` (..., h) from ``s0``."""
    gross, vratio = _scenario_moves(x, v0, lam)
    s0 = np.asarray(s0, dtype=np.float64)
    iv0 = np.asarray(iv0, dtype=np.float64)
    s_h = s0 * gross
    iv_h = iv0 * np.sqrt(vratio)
    return [p.losses(s0, iv0, s_h, iv_h, h * step_days) for p in positions]


def _seed_for(cfg: _Cfg, asset: int, t: int, *extra: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([cfg.seed, asset, t, *extra])


def _name_key(name: str) -> int:
    """A stable 64-bit integer of a method's name (its Z2 stream does not depend on which
    other methods run, nor on their order)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def _run_scenario_method(method: BacktestMethod, midx: int, ad: _AssetData,
                         positions: list[Position], cfg: _Cfg) -> _Run:
    """Monte Carlo and historical methods: a loop over the margin dates."""
    n_m = ad.t.size
    h = cfg.horizon
    level = cfg.level
    out = _Run({}, {}, {}, {})
    for p in positions:
        out.var[p.name] = np.empty(n_m)
        out.es[p.name] = np.empty(n_m)
    do_z2 = cfg.n_z2_sims > 0
    sims = {p.name: [] for p in positions} if do_z2 else None
    is_test = np.zeros(n_m, dtype=bool)
    is_test[ad.test] = True
    refit_every = cfg.refit.get(method.name, cfg.refit["*"])
    state = None
    last_fit = -10**9
    tic = time.perf_counter()
    for i, t in enumerate(ad.t):
        if method.kind == "historical":
            x = ad.hs_paths(int(t), cfg.lookback, h)
        else:
            if method.kind == "ewma":
                if state is None:
                    lam = float(method.params.get("lam", 0.94))
                    state = _Ewma(float(_ewma_var(np.where(np.isfinite(ad.ret[:t + 1]),
                                                           ad.ret[:t + 1], 0.0), lam)[-1]), lam,
                                  cfg.step_years)
                else:
                    state.update(float(ad.ret[t]))
            elif state is None or i - last_fit >= refit_every:
                window = ad.window(int(t), cfg.lookback)
                f0 = time.perf_counter()
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        model = method.fit(window, cfg.step_years)
                    new_state = _state_of(model, method.name, cfg.zero_drift)
                    out.n_warnings += len(caught)
                    _count_flags(out, model)
                    state = new_state
                    out.n_refits += 1
                except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                    out.n_failures += 1
                    if state is None:
                        raise ValueError(f"method {method.name!r}, asset {ad.name!r}: the fit "
                                         f"on {pd.Timestamp(ad.dates[t]):%Y-%m-%d} failed: "
                                         f"{exc}") from exc
                    state.update(float(ad.ret[t]))
                out.fit_seconds += time.perf_counter() - f0
                last_fit = i
            else:
                state.update(float(ad.ret[t]))
            paths = simulate_paths(state.current(), 1.0, n_steps=h, dt=cfg.step_years,
                                   n_paths=cfg.n_scenarios, seed=_seed_for(cfg, ad.index, int(t)))
            x = np.diff(np.log(paths[:, :, 0]), axis=1)
            if ad.cap is not None:
                cap = float(ad.cap[i])
                out.n_capped += int(np.count_nonzero(np.abs(x.sum(axis=1)) > cap))
                x = cap_paths(x, cap)
        all_losses = _path_losses(positions, ad.prices[t], ad.iv[t], ad.v[t], x,
                                  cfg.iv_lambda, h, cfg.step_days)
        for p, loss in zip(positions, all_losses, strict=True):
            va, e = _var_es(loss, level)
            out.var[p.name][i] = va
            out.es[p.name][i] = e
            if do_z2 and is_test[i]:
                ss = _seed_for(cfg, ad.index, int(t), _name_key(method.name), 1)
                sims[p.name].append(resample_scenarios(loss[:, None], cfg.n_z2_sims,
                                                       seed=ss)[:, 0].astype(np.float32))
    for p in positions:
        m = out.var[p.name] if cfg.measure == "var" else out.es[p.name]
        out.margin[p.name] = np.maximum(m, 0.0)
        out.sims[p.name] = np.column_stack(sims[p.name]) if do_z2 and sims[p.name] else None
    out.seconds = time.perf_counter() - tic
    return out


def _count_flags(out: _Run, fitted: Any) -> None:
    """Count a fit's degenerate-fit flags and fallbacks (GARCH-family fit results)."""
    flags = getattr(fitted, "flags", None)
    if not flags:
        return
    if any(flags):
        out.n_flagged += 1
    if any(getattr(fitted, "fallback", ())):
        out.n_fallback += 1
    for f in {x for fl in flags for x in fl}:
        out.flag_counts[f] = out.flag_counts.get(f, 0) + 1


def _run_exchange(method: BacktestMethod, ad: _AssetData, positions: list[Position],
                  cfg: _Cfg) -> _Run:
    tic = time.perf_counter()
    table = method.params.get("table")
    table = binance_btcusdt_2021() if table is None else table
    lev = method.params.get("leverage")
    out = _Run({}, {}, {}, {})
    s0 = ad.prices[ad.t]
    for p in positions:
        notional = p.gross_units * s0
        m = np.asarray(table.initial_margin(notional, lev, extend_last=True), dtype=np.float64)
        out.margin[p.name] = m
        out.var[p.name] = m.copy()
        out.es[p.name] = m.copy()
        out.sims[p.name] = None
    out.seconds = time.perf_counter() - tic
    return out


def _run_grid(method: BacktestMethod, ad: _AssetData, positions: list[Position],
              cfg: _Cfg) -> _Run:
    tic = time.perf_counter()
    rng_ = float(method.params["price_range"])
    moves = np.linspace(-rng_, rng_, int(method.params["n_price"]))
    shocks = np.asarray(method.params["vol_shocks"], dtype=np.float64)
    s0 = ad.prices[ad.t][:, None, None]
    iv0 = ad.iv[ad.t][:, None, None]
    s_h = s0 * (1.0 + moves)[None, :, None]
    iv_h = iv0 * (1.0 + shocks)[None, None, :]
    out = _Run({}, {}, {}, {})
    for p in positions:
        loss = p.losses(s0, iv0, s_h, iv_h, cfg.horizon_days)
        m = np.maximum(loss.reshape(loss.shape[0], -1).max(axis=1), 0.0)
        out.margin[p.name] = m
        out.var[p.name] = m.copy()
        out.es[p.name] = m.copy()
        out.sims[p.name] = None
    out.seconds = time.perf_counter() - tic
    return out


def _hs_rates(ad: _AssetData, positions: list[Position], cfg: _Cfg
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Historical-simulation margin rates for the APC tools: the rolling look-back rate and
    the expanding (<= 10 years) floor rate, per position; and the floor's look-back (days)."""
    h = cfg.horizon
    max_lb = int(round(_APC_FLOOR_YEARS * _DAYS_PER_YEAR / cfg.step_days))
    roll = {p.name: np.empty(ad.t.size) for p in positions}
    flo = {p.name: np.empty(ad.t.size) for p in positions}
    lb_used = np.empty(ad.t.size, dtype=np.int64)
    for i, t in enumerate(ad.t):
        t = int(t)
        s0, iv0, v0 = ad.prices[t], ad.iv[t], ad.v[t]
        x_all = ad.hs_paths(t, max_lb, h)
        lb_used[i] = min(t, max_lb)
        n_roll = max(min(t, cfg.lookback) - h + 1, 1)
        all_losses = _path_losses(positions, s0, iv0, v0, x_all, cfg.iv_lambda, h, cfg.step_days)
        for p, loss in zip(positions, all_losses, strict=True):
            lr = loss[-n_roll:]
            k = 0 if cfg.measure == "var" else 1
            m_roll = _var_es(lr, cfg.level)[k] if lr.size * (1 - cfg.level) >= 1 \
                else float(np.max(lr))
            m_all = _var_es(loss, cfg.level)[k] if loss.size * (1 - cfg.level) >= 1 \
                else float(np.max(loss))
            notional = p.gross_units * s0
            roll[p.name][i] = max(m_roll, 0.0) / notional
            flo[p.name][i] = max(m_all, 0.0) / notional
    return roll, flo, lb_used


# ========================================================================== statistics
def _statistics(ad: _AssetData, method: BacktestMethod, run: _Run, positions: list[Position],
                cfg: _Cfg, losses: dict[str, np.ndarray], hs_roll: dict[str, np.ndarray],
                hs_floor: dict[str, np.ndarray]) -> tuple[list[dict], list[dict], list]:
    rows, apc_rows, frames = [], [], []
    h = cfg.horizon
    dates = ad.dates[ad.t]
    s0 = ad.prices[ad.t]
    is_test = np.zeros(ad.t.size, dtype=bool)
    is_test[ad.test] = True
    for p in positions:
        loss = losses[p.name]
        var = run.var[p.name]
        es = run.es[p.name]
        margin = run.margin[p.name]
        notional = p.gross_units * s0
        hits = exceptions(loss, var, horizon=h)
        n_obs = int(hits.size)
        x = int(np.count_nonzero(hits))
        kup = kupiec(x, n_obs, cfg.level)
        chf = christoffersen(hits, cfg.level) if n_obs >= 2 else None
        tl = traffic_light(x, n_obs, cfg.level)
        z2 = z2p = z2c = math.nan
        sims = run.sims.get(p.name)
        es_t = es[ad.test]
        if sims is not None and np.all(es_t > 0):
            zr = acerbi_szekely_z2(loss[ad.test], var[ad.test], es_t, cfg.level,
                                   simulated_losses=sims.astype(np.float64))
            z2, z2p, z2c = zr.statistic, zr.p_value, zr.critical_value
        elif np.all(es_t > 0) and method.kind not in ("exchange", "grid"):
            z2 = acerbi_szekely_z2(loss[ad.test], var[ad.test], es_t, cfg.level).statistic
        rate = margin / notional
        pc = procyclicality(rate)
        breaches = int(np.count_nonzero(exceptions(loss, margin, horizon=h)))
        rows.append({
            "asset": ad.name, "method": method.name, "position": p.name,
            "first_date": pd.Timestamp(dates[0]).date(),
            "last_date": pd.Timestamp(dates[-1]).date(), "n_days": ad.n_oos, "n_obs": n_obs,
            "exceptions": x, "expected": kup.expected_exceptions,
            "exception_rate": kup.exception_rate, "kupiec_lr": kup.statistic,
            "kupiec_p": kup.p_value,
            "christoffersen_lr_ind": chf.lr_ind if chf else math.nan,
            "christoffersen_p_ind": chf.p_value_ind if chf else math.nan,
            "christoffersen_lr_cc": chf.lr_cc if chf else math.nan,
            "christoffersen_p_cc": chf.p_value_cc if chf else math.nan,
            "zone": tl.zone, "z2": z2, "z2_p": z2p, "z2_critical": z2c, "breaches": breaches,
            "peak_to_trough": pc.peak_to_trough, "max_increase_1d": pc.max_increase_1d,
            "max_increase_5d": pc.max_increase_5d, "max_increase_30d": pc.max_increase_30d,
            "avg_margin_over_notional": pc.mean_rate,
            "exceptions_all_days": int(np.count_nonzero(loss > var)),
            "n_refits": run.n_refits, "n_flagged_fits": run.n_flagged,
            "n_fallback_fits": run.n_fallback,
        })
        stressed = np.maximum.accumulate(np.maximum(hs_roll[p.name], rate))
        tools = {
            "none": rate,
            "buffer": apc_buffer(rate, cfg.apc_buffer, cfg.apc_rebuild_days),
            "stressed_weight": apc_stressed_weight(rate, stressed, cfg.apc_stressed_weight),
            "floor": apc_floor(rate, hs_floor[p.name]),
        }
        for tool, r in tools.items():
            pct = procyclicality(r)
            apc_rows.append({"asset": ad.name, "method": method.name, "position": p.name,
                             "tool": tool, **{k: v for k, v in pct.to_dict().items()
                                              if k != "n_obs"},
                             "exceptions": int(np.count_nonzero(
                                 exceptions(loss, r * notional, horizon=h))),
                             "n_obs": n_obs})
        frames.append(pd.DataFrame({
            "asset": ad.name, "method": method.name, "position": p.name,
            "date": pd.DatetimeIndex(dates), "price": s0, "notional": notional,
            "margin": margin, "var": var, "es": es, "loss": loss, "exception": loss > var,
            "test": is_test, "apc_buffer": tools["buffer"] * notional,
            "apc_stressed": tools["stressed_weight"] * notional,
            "apc_floor": tools["floor"] * notional,
        }))
    return rows, apc_rows, frames



def _method_task(payload: tuple) -> tuple:
    """One (asset, method): run the method over every margin date and its statistics."""
    hist, cfg, implied_vol, a, method, midx, positions, losses, hs_roll, hs_floor = payload
    ad = _AssetData(hist, cfg, implied_vol, a)
    if method.kind == "exchange":
        run = _run_exchange(method, ad, positions, cfg)
    elif method.kind == "grid":
        run = _run_grid(method, ad, positions, cfg)
    else:
        run = _run_scenario_method(method, midx, ad, positions, cfg)
    rows, apc_rows, frames = _statistics(ad, method, run, positions, cfg, losses, hs_roll,
                                         hs_floor)
    run_row = {"asset": ad.name, "method": method.name, "n_refits": run.n_refits,
               "n_fit_warnings": run.n_warnings, "n_fit_failures": run.n_failures,
               "n_flagged_fits": run.n_flagged, "n_fallback_fits": run.n_fallback,
               "fit_flags": ",".join(f"{k}:{v}" for k, v in sorted(run.flag_counts.items())),
               "n_capped_scenarios": run.n_capped,
               "fit_seconds": run.fit_seconds, "seconds": run.seconds}
    return rows, apc_rows, frames, run_row


def _worker_init() -> None:
    import numba

    numba.set_num_threads(1)


def _report(rr: dict, verbose: bool) -> None:
    if verbose:
        print(f"  {rr['asset']} {rr['method']}: {rr['seconds']:.1f} s ({rr['n_refits']} fits, "
              f"{rr['fit_seconds']:.1f} s fitting)", file=sys.stderr, flush=True)


def _run_tasks(tasks: list, workers: int, verbose: bool) -> dict:
    """Run the (asset, method) tasks serially or on ``workers`` spawned processes; results
    do not depend on where a task runs (its seeds depend only on seed, asset and date)."""
    done = {}
    if workers <= 1 or len(tasks) <= 1:
        for key, payload in tasks:
            done[key] = _method_task(payload)
            _report(done[key][3], verbose)
        return done
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # the slowest methods first (longest-processing-time scheduling)
    order = sorted(tasks, key=lambda kv: (-float(kv[1][4].cost), kv[0]))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                             initializer=_worker_init) as pool:
        futures = {pool.submit(_method_task, payload): key for key, payload in order}
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()
            _report(done[futures[fut]][3], verbose)
    return done

