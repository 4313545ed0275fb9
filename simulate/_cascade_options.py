r"""Options along the cascade paths: inputs, validation and today's option margin.

Option positions are held by :class:`~marginlab.simulate.cascade.CrossAccounts` accounts
(the general engine) and passed to :func:`~marginlab.simulate.cascade.simulate_cascade` as
:class:`OptionPositions` with :class:`OptionRules`. The rules (applied by
:mod:`._cascade_general`, written once in :mod:`._cascade_rules`):

* **Revaluation.** At the start of every step ``t`` each open option is revalued with
  Black-Scholes (rate and carry 0) at the step's base mark :math:`P^0` of its underlying, the
  time left :math:`T - t\,\Delta t` and its implied vol (its own vol times the optional
  per-path, per-step multiplier ``vol_paths`` of its underlying: a vol path or a surface's
  level moves). Its value counts in the account's equity and, in full, in its margin balance
  (mark-to-model). Impact of liquidations within a step reaches option values at the next
  step's revaluation. The change of value is market P&L (:math:`G` of the bookkeeping
  identity).
* **Margin.** A long option needs no maintenance margin (paid in full; its value is in the
  margin balance). A short option of ``q`` units needs the bracket rule of its ``table`` on
  its delta-equivalent notional :math:`|q|\,P^0\max(|\Delta|, \delta_{min})` (the floor
  charges deep out-of-the-money short options like a ``min_delta`` one). The option margin
  is recomputed every ``remargin_every`` steps (a risk-based or grid method run at an
  interval) and after the account's liquidation or an expiry; between recomputations it is
  held. A stale margin misses liquidations: for a short coin-settled put on coin collateral
  (hourly steps, vol 90 %, two days) recomputing every 6 steps instead of every step lowered
  the liquidation probability from 0.437 to 0.349 (1,500 paths; see the tests), so the
  default is every step.
* **Expiry.** An option whose expiry falls within the horizon is settled at its payoff at
  the step's base mark on the first step at or after its expiry: into the USD balance when
  USD-settled, into its underlying's coin at the mark when coin-settled (``coin = 1``, as
  Deribit's inverse options).
* **Liquidation.** A liquidated account's options are closed (all of them, or the fraction
  of a partial liquidation) at their last value, without market impact, into USD or coin
  as at expiry; the liquidation fee is charged on that cash amount :math:`|q| v` together
  with the market notional of its other positions.

Cost and the screen. A Black-Scholes evaluation (``log``, ``sqrt``, two ``erfc``, ``exp``)
costs about ten times an account's linear margin check, so revaluing every option at every
step made a 2,000-account book with one short option each ~10x slower than without options.
With ``OptionRules.screen`` (default; it applies when the margin is recomputed every step
and there are no vol paths) an account is revalued only when it is near its threshold: at
each step its options are bounded from their last revaluation without Black-Scholes (rate
0, constant vol: ``|delta| <= 1`` and the value falls with time, so a value moves by at
most ``|s - s_r|`` plus, for a long option, the time decay ``s sigma (sqrt(tau_r) -
sqrt(tau)) / sqrt(2 pi)``, and never below its payoff; a short option's margin is at most
its rule at delta 1). If the margin balance with the lower bounds exceeds the requirement
with the upper bounds, every trigger decides as it would at the exact values, and the
account is skipped; otherwise (and when an option expires, for ADL ranking and at the end
of the path) it is revalued at the step's base marks exactly as without the screen. The
results are the same (only the summation order of the market P&L differs, at rounding
level). Books without options skip all of it (one test per step and account round).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .pricing import black_scholes_greeks


class OptionPositions(NamedTuple):
    """European options held by cross-margin accounts (all arrays of shape ``(n_options,)``).

    ``account`` the holder (index into the accounts, non-decreasing); ``asset`` price column
    of the underlying; ``q`` signed size in units of the underlying (contracts x
    multiplier); ``strike`` USD; ``expiry`` years from today (``paths[:, 0]``), > 0; ``call``
    1 for a call, 0 for a put; ``coin`` 1 when settled in the underlying's coin (inverse
    option), 0 in USD; ``vol`` today's implied vol (annualised, >= 0); ``table`` row of the
    margin tables applied to a short option's delta-equivalent notional (an inverse table,
    ``cum`` in coin, when ``coin == 1``).
    """

    account: np.ndarray
    asset: np.ndarray
    q: np.ndarray
    strike: np.ndarray
    expiry: np.ndarray
    call: np.ndarray
    coin: np.ndarray
    vol: np.ndarray
    table: np.ndarray


class OptionRules(NamedTuple):
    """How options are revalued and margined along the paths.

    ``dt`` years per step of the paths (> 0); ``min_delta`` floor in [0, 1] of a short
    option's absolute delta in its margin; ``remargin_every`` steps between recomputations
    of the option margin (>= 1); ``vol_paths`` optional multipliers of the implied vols,
    shape ``(n_paths or 1, n_steps + 1, n_assets)``, > 0 (1 = today's vols); ``screen``
    revalue only the accounts near their threshold (see the module notes; it applies when
    the margin is recomputed every step and there are no vol paths, and changes no result).
    """

    dt: float
    min_delta: float = 0.1
    remargin_every: int = 1
    vol_paths: np.ndarray | None = None
    screen: bool = True


class OptionArrays(NamedTuple):
    """Kernel form: CSR index per account, then per-option arrays, then the scalars."""

    start: np.ndarray
    asset: np.ndarray
    inverse: np.ndarray
    q: np.ndarray
    strike: np.ndarray
    expiry: np.ndarray
    phi: np.ndarray
    coin: np.ndarray
    vol: np.ndarray
    table: np.ndarray
    vol_paths: np.ndarray
    dt: float
    min_delta: float
    remargin_every: int
    screen: bool


def _real(name: str, v, *, low: float, high: float | None = None, low_open: bool = False
          ) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    x = float(v)
    ok = np.isfinite(x) and (x > low if low_open else x >= low) and (high is None or x <= high)
    if not ok:
        rng = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high else "")
        raise ValueError(f"{name} must be finite and {rng}, got {v!r}")
    return x


def no_options(n_acc: int) -> OptionArrays:
    """The kernel arrays of a book without options."""
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    return OptionArrays(np.zeros(n_acc + 1, np.int64), zi, zi, z, z, z, z, zi, z, zi,
                        np.zeros((0, 0, 0)), 1.0, 0.0, 1, False)


def option_arrays(options: OptionPositions, rules: OptionRules | None, n_acc: int, n_a: int,
                  n_tab: int, n_paths: int, n_steps: int, check) -> OptionArrays:
    """Validated kernel arrays; ``check`` is the range check of :mod:`.cascade`."""
    if not isinstance(options, OptionPositions):
        raise TypeError(f"options must be OptionPositions, got {type(options).__name__}")
    if not isinstance(rules, OptionRules):
        raise TypeError(f"option_rules must be OptionRules (dt is needed to age the options), "
                        f"got {rules!r}")
    dt = _real("option_rules.dt (years per step)", rules.dt, low=0.0, low_open=True)
    min_delta = _real("option_rules.min_delta", rules.min_delta, low=0.0, high=1.0)
    ev = rules.remargin_every
    if isinstance(ev, (bool, np.bool_)) or not isinstance(ev, numbers.Integral) or ev < 1:
        raise ValueError(f"option_rules.remargin_every must be an int >= 1 (steps), got {ev!r}")
    ints = {n: np.array(getattr(options, n), dtype=np.int64, order="C")
            for n in ("account", "asset", "call", "coin", "table")}
    flts = {n: np.array(getattr(options, n), dtype=np.float64, order="C")
            for n in ("q", "strike", "expiry", "vol")}
    n = ints["account"].shape[0] if ints["account"].ndim == 1 else -1
    for name, arr in (*ints.items(), *flts.items()):
        if arr.shape != (n,):
            raise ValueError(f"options.{name} must have shape {(max(n, 0),)} (1-D, one per "
                             f"option), got {arr.shape}")
    acc = ints["account"]
    if np.any((acc < 0) | (acc >= n_acc)) or np.any(np.diff(acc) < 0):
        raise ValueError(f"options.account must be non-decreasing account indices in "
                         f"[0, {n_acc}), got {acc!r}")
    for name, hi in (("asset", n_a), ("table", n_tab), ("call", 2), ("coin", 2)):
        arr = ints[name]
        bad = (arr < 0) | (arr >= hi)
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"options.{name} must be in [0, {hi}), got {arr[k]} at index {k}")
    check("options.q", flts["q"])
    check("options.strike", flts["strike"], low=0.0, low_open=True)
    check("options.expiry (years)", flts["expiry"], low=0.0, low_open=True)
    check("options.vol", flts["vol"], low=0.0)
    vp = rules.vol_paths
    if vp is None:
        vp = np.zeros((0, 0, 0))
    else:
        vp = np.array(vp, dtype=np.float64, order="C")
        if vp.ndim != 3 or vp.shape[0] not in (1, n_paths) or vp.shape[1:] != (n_steps + 1,
                                                                                 n_a):
            raise ValueError(f"option_rules.vol_paths must have shape (n_paths = {n_paths} or "
                             f"1, n_steps + 1 = {n_steps + 1}, n_assets = {n_a}), got "
                             f"{vp.shape}")
        check("option_rules.vol_paths", vp, low=0.0, low_open=True)
    if not isinstance(rules.screen, (bool, np.bool_)):
        raise TypeError(f"option_rules.screen must be True or False, got {rules.screen!r}")
    screen = bool(rules.screen) and ev == 1 and vp.shape[0] == 0
    start = np.zeros(n_acc + 1, np.int64)
    np.cumsum(np.bincount(acc, minlength=n_acc), out=start[1:])
    return OptionArrays(start, ints["asset"], ints["coin"].copy(), flts["q"], flts["strike"],
                        flts["expiry"], np.where(ints["call"] == 1, 1.0, -1.0), ints["coin"],
                        flts["vol"], ints["table"], vp, dt, min_delta, int(ev), screen)


def option_margin(opt: OptionArrays, max_lines, tables, prices: np.ndarray, n_acc: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Today's option value and option maintenance margin per account (USD), as the kernel
    computes them at ``prices`` (``max_lines`` is the bracket rule of :mod:`.cascade`)."""
    if opt.q.size == 0:
        return np.zeros(n_acc), np.zeros(n_acc)
    acc = np.repeat(np.arange(n_acc), np.diff(opt.start))
    s = prices[opt.asset]
    sig = opt.vol * (opt.vol_paths[0, 0, opt.asset] if opt.vol_paths.shape[0] else 1.0)
    g = black_scholes_greeks(s, opt.strike, opt.expiry, sig, is_call=opt.phi > 0.0)
    value = np.bincount(acc, weights=opt.q * g.price, minlength=n_acc)
    nn = -np.minimum(opt.q, 0.0) * s * np.maximum(np.abs(g.delta), opt.min_delta)
    mm_k = np.where(opt.q < 0.0, max_lines(nn, s, opt.inverse, opt.table, tables), 0.0)
    return value, np.bincount(acc, weights=mm_k, minlength=n_acc)
