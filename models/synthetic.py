"""Synthetic books: realistic crypto-derivatives accounts for demos, tests and benchmarks.

:func:`make_book` draws a book of ``n_accounts`` accounts, fully vectorised (no Python loop
over accounts or positions): 10^6 accounts with about 5 positions each build in seconds.
The same ``seed`` always gives the same book. :func:`default_market` returns the spot prices
and implied volatilities the book is priced at, so a demo can build a consistent market
snapshot.

Instrument universe, per underlying ``U`` with spot ``S`` (USD) and implied volatility
``sigma`` (annualised):

* ``U-PERP``: linear perpetual, multiplier 1, funding rate 1e-4 per 8 hours;
* ``U-FUT-3M``: linear future expiring in 0.25 years;
* for BTC and ETH only, Binance COIN-M style inverse contracts ``UUSD-PERP`` (inverse
  perpetual) and ``UUSD-FUT-3M`` (inverse future), face value 100 USD (BTC) or 10 USD (ETH);
* options ``U-<days>D-<strike>-<C|P>`` on strikes ``S x (0.7, 0.8, ..., 1.3)`` rounded to a
  tick of 1, 2, 2.5 or 5 x 10^k USD (the largest such tick <= 2 % of spot: 1000 for BTC at
  60,000, 50 for ETH at 3,000, 2.5 for SOL at 150), expiries 7, 30 and 90 days (years are
  days / 365), calls and puts: coin-settled ``inverse_option`` for BTC and ETH (Deribit
  style, multiplier 1 coin), USD-settled ``option`` for every other underlying.

Accounts ``acct000000``, ``acct000001`` ... (zero-padded to at least 6 digits) each have an
equity ``E`` in USD drawn lognormal (median 10,000 USD, log-standard deviation 1.5: mean about
31,000 USD, the top 0.1 % above 1 million), a main underlying (BTC 45 %, ETH 35 %, SOL 20 %
of the weight, 15 % for any other underlying, renormalised) and a strategy (see
:data:`STRATEGIES`):

* with probability ``option_share`` an option strategy: vertical spread (40 %: long ``K1``,
  short ``K2``, same expiry and type, ``K1`` and ``K2`` one or two strikes apart, risking
  5-30 % of equity), short strangle (20 %: short an out-of-the-money put and call one or two
  strikes from the money), short straddle (15 %: short the at-the-money put and call) or
  covered call (25 %: 50-90 % of equity held in the coin as collateral, all of it for a
  coin-margined account, and short calls one or two strikes out of the money on 50-90 % of
  equity's worth of coin);
* independently, with probability ``inverse_share``, the account is coin-margined: its main
  underlying is BTC or ETH, its collateral is that coin and its futures are inverse. A
  coin-margined account without an option strategy is a coin-margined trader (65 %:
  directional inverse perpetual) or a hedger (35 %: short inverse future worth 50-90 % of its
  coin);
* the other accounts are directional perpetual traders (70 %: long with probability 0.55 or
  short, leverage ``round(exp(N(ln 3, 0.8)))`` clipped to 1..20 times equity), basis
  traders (15 %: 50-90 % of equity in the coin, short a perpetual of the same size within
  3 %) or calendar traders (15 %: long perpetual, short the quarterly future of the same size
  within 3 %, leverage up to 5).

Extra positions (a negative-binomial count with dispersion 1.5, so a few accounts have
dozens) bring the mean number of position rows per account to ``positions_per_account``:
35 % perpetuals, 15 % futures, 50 % options (strikes centred on the money), 70 % on the
account's main underlying, each of notional ``E x exp(N(ln 0.2, 0.8))`` USD, long or short
with equal odds. Coin-margined accounts trade only their coin, and inverse futures.

Quantities are signed contracts rounded to the exchange lot (at least one lot): linear
futures in units of the coin, lot ``10^floor(log10(100 / S))`` (0.001 BTC, 0.01 ETH,
0.1 SOL); options in coins, lot ``10^floor(log10(1000 / S))`` (0.01 BTC, 0.1 ETH, 1 SOL);
inverse contracts in whole contracts. Entry prices of futures and perpetuals are
``S exp(N(0, 0.05))`` USD; option entry premiums are the Black-76 value at forward ``S``,
volatility ``sigma`` and ``r = 0`` (:func:`marginlab.simulate.pricing.black76_price`) times
``exp(N(0, 0.1))``, in USD for ``option`` and in coin (USD / ``S``) for ``inverse_option``,
floored at the Deribit minimum tick of 0.0001 coin (``1e-4 S`` USD).

Collateral: USD-margined accounts hold their USD equity in USDT (72 %), USDC (8 %) or, for
20 % of them ("multi-asset"), split between USDT, USDC and a coin by a Dirichlet(4, 2, 2)
draw. Coins are valued at spot. Haircuts: USDT and USDC 0, BTC 0.05, ETH 0.07, SOL 0.15, any
other coin 0.25 (:data:`HAIRCUTS`).

Within an account, position rows come in order: the strategy's legs first (the long leg
first for a vertical spread; the put first for strangles and straddles), then the extras.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import pandas as pd

from marginlab.simulate.pricing import black76_price
from marginlab.simulate.rng import normalize_seed

from ._validate import check_real
from .book import Book

__all__ = [
    "DEFAULT_SPOT",
    "DEFAULT_VOL",
    "HAIRCUTS",
    "INVERSE_FACE_VALUE",
    "STRATEGIES",
    "default_market",
    "make_book",
]

DEFAULT_SPOT: Mapping[str, float] = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0}
"""Default spot prices, USD per coin."""
DEFAULT_VOL: Mapping[str, float] = {"BTC": 0.55, "ETH": 0.70, "SOL": 0.90}
"""Default implied volatilities, annualised (0.55 is 55 % a year)."""
INVERSE_FACE_VALUE: Mapping[str, float] = {"BTC": 100.0, "ETH": 10.0}
"""Underlyings with inverse contracts and their face value, USD per contract."""
HAIRCUTS: Mapping[str, float] = {"USDT": 0.0, "USDC": 0.0, "BTC": 0.05, "ETH": 0.07,
                                 "SOL": 0.15}
"""Collateral haircuts (decimal); any other coin gets :data:`OTHER_HAIRCUT`."""
OTHER_HAIRCUT = 0.25
"""Haircut of a collateral coin not in :data:`HAIRCUTS`."""
STRATEGIES = (
    "directional_perp",
    "basis_spot_perp",
    "calendar_perp_future",
    "coin_directional",
    "coin_hedged",
    "vertical_spread",
    "short_strangle",
    "short_straddle",
    "covered_call",
)
"""Strategy labels of the accounts (see the module documentation)."""

FUNDING_RATE = 1e-4
"""Funding rate of every perpetual, decimal per 8-hour interval."""
FUTURE_EXPIRY = 0.25
"""Expiry of the quarterly futures, years."""
OPTION_DAYS = (7, 30, 90)
"""Option expiries, days (years are days / 365)."""
MONEYNESS = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
"""Option strikes as multiples of spot (before rounding to the tick)."""

_POPULARITY = {"BTC": 0.45, "ETH": 0.35, "SOL": 0.20}
_OTHER_POPULARITY = 0.15
_EQUITY_MEDIAN = 10_000.0
_EQUITY_LOG_SD = 1.5
_MIN_PREMIUM_COIN = 1e-4
_NB_DISPERSION = 1.5
_ATM = MONEYNESS.index(1.0)
(_DIRECTIONAL, _BASIS, _CALENDAR, _COIN_DIRECTIONAL, _COIN_HEDGED, _VERTICAL, _STRANGLE,
 _STRADDLE, _COVERED_CALL) = range(len(STRATEGIES))
_CORE_LEGS = np.array([1, 1, 2, 1, 1, 2, 2, 2, 1])


# ---------------------------------------------------------------------------- validation
def _check_underlyings(underlyings: Any) -> tuple[str, ...]:
    if isinstance(underlyings, str) or not isinstance(underlyings, Sequence):
        raise TypeError("underlyings must be a sequence of coin names such as ('BTC', 'ETH'), "
                        f"got {underlyings!r}")
    out = []
    for u in underlyings:
        if not isinstance(u, str) or not u.strip():
            raise TypeError(f"underlyings must contain non-empty strings, got {u!r} in "
                            f"{underlyings!r}")
        out.append(u.strip().upper())
    if not out:
        raise ValueError("underlyings must name at least one underlying, got an empty sequence")
    if len(set(out)) != len(out):
        raise ValueError(f"underlyings must be unique (case-insensitive), got {underlyings!r}")
    return tuple(out)


def _lookup(name: str, given: Any, defaults: Mapping[str, float], unds: tuple[str, ...],
            low: float, high: float) -> dict[str, float]:
    if given is not None and not isinstance(given, Mapping):
        raise TypeError(f"{name} must be a mapping from underlying to value such as "
                        f"{{'BTC': {defaults['BTC']:g}}}, or None, got {given!r}")
    lookup = {str(k).strip().upper(): v for k, v in (given or {}).items()}
    out = {}
    for u in unds:
        if u in lookup:
            out[u] = check_real(f"{name}[{u!r}]", lookup[u], low=low, low_open=True, high=high)
        elif u in defaults:
            out[u] = float(defaults[u])
        else:
            raise ValueError(f"{name} has no value for underlying {u!r}: defaults exist only "
                             f"for {', '.join(defaults)}; pass {name}={{{u!r}: value}}")
    return out


def _check_count(n_accounts: Any) -> int:
    if isinstance(n_accounts, (bool, np.bool_)) or not isinstance(n_accounts, numbers.Integral):
        raise TypeError(f"n_accounts must be an integer >= 1, got {type(n_accounts).__name__} "
                        f"{n_accounts!r}")
    if n_accounts < 1:
        raise ValueError(f"n_accounts must be an integer >= 1, got {n_accounts!r}")
    return int(n_accounts)


def _check_seed(seed: Any) -> int | np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):  # SPEC 7: one SeedSequence drawn from it
        return normalize_seed(seed)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError("seed must be an integer >= 0, a numpy SeedSequence or a Generator (a "
                        "book is reproducible from its seed), got "
                        f"{type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be an integer >= 0 or a SeedSequence, got {seed!r}")
    return int(seed)


# ---------------------------------------------------------------------------- market
def default_market(underlyings: Sequence[str] = ("BTC", "ETH", "SOL"), *,
                   spot: Mapping[str, float] | None = None,
                   vol: Mapping[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Spot prices and implied volatilities a synthetic book is priced at.

    Parameters
    ----------
    underlyings : sequence of str
        Underlying coins (case-insensitive; returned upper-case).
    spot : mapping of str to float, optional
        Spot prices in USD per coin, > 0, overriding :data:`DEFAULT_SPOT` (required for an
        underlying without a default). Keys not in ``underlyings`` are ignored.
    vol : mapping of str to float, optional
        Implied volatilities, annualised, in (0, 5], overriding :data:`DEFAULT_VOL`.

    Returns
    -------
    dict
        ``{"spot": {underlying: USD}, "vol": {underlying: annualised vol}}``, in the order of
        ``underlyings``: the same values :func:`make_book` uses with the same arguments.

    Raises
    ------
    ValueError
        An underlying has no default and no value in ``spot`` (or ``vol``), or a value is out
        of range.

    Examples
    --------
    >>> default_market(("BTC", "SOL"))
    {'spot': {'BTC': 60000.0, 'SOL': 150.0}, 'vol': {'BTC': 0.55, 'SOL': 0.9}}
    """
    unds = _check_underlyings(underlyings)
    return {"spot": _lookup("spot", spot, DEFAULT_SPOT, unds, 0.0, np.inf),
            "vol": _lookup("vol", vol, DEFAULT_VOL, unds, 0.0, 5.0)}


def _tick(spot: float) -> float:
    """The largest of 1, 2, 2.5, 5 x 10^k that is <= 2 % of spot."""
    target = 0.02 * spot
    e = np.floor(np.log10(target))
    best = 10.0 ** e
    for m in (2.0, 2.5, 5.0):
        if m * 10.0 ** e <= target:
            best = m * 10.0 ** e
    return float(best)


def _fmt(x: float) -> str:
    if x == round(x) and abs(x) < 1e15:
        return str(int(round(x)))
    return np.format_float_positional(x, trim="-")


def _lot_exp(unit_usd: float) -> int:
    """Exponent ``k`` of the lot 10^k for a coin worth ``unit_usd`` USD."""
    return int(np.floor(np.log10(unit_usd)))


class _Universe:
    """Instrument table and the index arrays the vectorised draws use."""

    def __init__(self, unds: tuple[str, ...], spot: dict[str, float], vol: dict[str, float]):
        n_u, n_e, n_k = len(unds), len(OPTION_DAYS), len(MONEYNESS)
        self.underlyings = unds
        self.spot = np.array([spot[u] for u in unds])
        self.face = np.array([INVERSE_FACE_VALUE.get(u, np.nan) for u in unds])
        self.perp = np.full((n_u, 2), -1, np.int64)  # [underlying, linear/inverse]
        self.fut = np.full((n_u, 2), -1, np.int64)
        self.opt = np.full((n_u, n_e, n_k, 2), -1, np.int64)  # [u, expiry, strike, call/put]
        self.strikes = np.empty((n_u, n_k))
        rows: dict[str, list[Any]] = {c: [] for c in (
            "instrument_id", "type", "underlying", "multiplier", "face_value", "strike",
            "expiry", "option_type", "funding_rate", "und_code", "lot_exp", "unit_usd")}

        def add(iid, typ, ui, *, face=np.nan, strike=np.nan, expiry=np.nan, opt="",
                funding=0.0, lot_exp=0, unit_usd=0.0) -> int:
            for c, v in (("instrument_id", iid), ("type", typ), ("underlying", unds[ui]),
                         ("multiplier", 1.0), ("face_value", face), ("strike", strike),
                         ("expiry", expiry), ("option_type", opt), ("funding_rate", funding),
                         ("und_code", ui), ("lot_exp", lot_exp), ("unit_usd", unit_usd)):
                rows[c].append(v)
            return len(rows["instrument_id"]) - 1

        for ui, u in enumerate(unds):
            s = spot[u]
            lin_lot = _lot_exp(100.0 / s)
            opt_lot = _lot_exp(1000.0 / s)
            self.perp[ui, 0] = add(f"{u}-PERP", "linear_perp", ui, funding=FUNDING_RATE,
                                   lot_exp=lin_lot, unit_usd=s)
            self.fut[ui, 0] = add(f"{u}-FUT-3M", "linear_future", ui, expiry=FUTURE_EXPIRY,
                                  lot_exp=lin_lot, unit_usd=s)
            if u in INVERSE_FACE_VALUE:
                fv = float(INVERSE_FACE_VALUE[u])
                self.perp[ui, 1] = add(f"{u}USD-PERP", "inverse_perp", ui, face=fv,
                                       funding=FUNDING_RATE, unit_usd=fv)
                self.fut[ui, 1] = add(f"{u}USD-FUT-3M", "inverse_future", ui, face=fv,
                                      expiry=FUTURE_EXPIRY, unit_usd=fv)
            tick = _tick(s)
            for ki, m in enumerate(MONEYNESS):
                self.strikes[ui, ki] = float(f"{round(m * s / tick) * tick:.12g}")
            otype = "inverse_option" if u in INVERSE_FACE_VALUE else "option"
            for ei, days in enumerate(OPTION_DAYS):
                for ki in range(n_k):
                    k = self.strikes[ui, ki]
                    for ci, (name, letter) in enumerate((("call", "C"), ("put", "P"))):
                        self.opt[ui, ei, ki, ci] = add(
                            f"{u}-{days}D-{_fmt(k)}-{letter}", otype, ui, strike=k,
                            expiry=days / 365.0, opt=name, lot_exp=opt_lot, unit_usd=s)
        self.und = np.array(rows["und_code"], np.int64)
        self.lot_exp = np.array(rows["lot_exp"], np.int64)
        self.unit_usd = np.array(rows["unit_usd"], float)
        types = np.array(rows["type"], dtype=object)
        self.is_option = np.isin(types, ("option", "inverse_option"))
        inst_spot = self.spot[self.und]
        strike = np.array(rows["strike"], float)
        expiry = np.array(rows["expiry"], float)
        prem = np.zeros(len(types))
        o = self.is_option
        prem[o] = black76_price(inst_spot[o], strike[o], expiry[o],
                                np.array([vol[u] for u in unds])[self.und[o]], 0.0,
                                is_call=np.array(rows["option_type"], dtype=object)[o] == "call")
        coin = types == "inverse_option"
        prem[coin] /= inst_spot[coin]
        # the reference price of an entry: spot for futures, Black-76 premium for options,
        # and the minimum premium (Deribit tick 0.0001 coin) in the option's currency
        self.ref_price = np.where(o, prem, inst_spot)
        self.min_price = np.where(coin, _MIN_PREMIUM_COIN, _MIN_PREMIUM_COIN * inst_spot)
        self.frame = pd.DataFrame({
            "instrument_id": np.array(rows["instrument_id"], dtype=str),
            "type": np.array(rows["type"], dtype=str),
            "underlying": np.array(rows["underlying"], dtype=str),
            "multiplier": np.array(rows["multiplier"], float),
            "face_value": np.array(rows["face_value"], float),
            "strike": strike, "expiry": expiry,
            "option_type": np.array(rows["option_type"], dtype=str),
            "funding_rate": np.array(rows["funding_rate"], float),
        })

    def round_lots(self, qty: np.ndarray, inst: np.ndarray) -> np.ndarray:
        """Signed quantities rounded to the instrument's lot, at least one lot."""
        e = self.lot_exp[inst]
        lots = np.maximum(np.rint(np.abs(qty) * 10.0 ** (-e)), 1.0)
        # divide by 10^-e for decimal lots so 0.001 * 7 prints as 0.007
        size = np.where(e < 0, lots / 10.0 ** np.maximum(-e, 0), lots * 10.0 ** np.maximum(e, 0))
        return np.copysign(size, qty)


def _account_ids(n: int) -> np.ndarray:
    """``acct`` + zero-padded index (at least 6 digits), vectorised through a byte matrix."""
    width = max(6, len(str(n - 1)))
    chars = np.empty((n, 4 + width), np.uint8)
    chars[:, :4] = np.frombuffer(b"acct", np.uint8)
    idx = np.arange(n, dtype=np.int64)
    for j in range(width):
        chars[:, 3 + width - j] = 48 + (idx // 10**j) % 10
    return chars.view(f"S{4 + width}").ravel().astype(f"U{4 + width}")


# ---------------------------------------------------------------------------- the book
@overload
def make_book(n_accounts: int, seed: int | np.random.SeedSequence, *,
              underlyings: Sequence[str] = ..., spot: Mapping[str, float] | None = ...,
              positions_per_account: float = ..., option_share: float = ...,
              inverse_share: float = ..., vol: Mapping[str, float] | None = ...,
              return_strategies: Literal[False] = ...) -> Book: ...


@overload
def make_book(n_accounts: int, seed: int | np.random.SeedSequence, *,
              underlyings: Sequence[str] = ..., spot: Mapping[str, float] | None = ...,
              positions_per_account: float = ..., option_share: float = ...,
              inverse_share: float = ..., vol: Mapping[str, float] | None = ...,
              return_strategies: Literal[True]) -> tuple[Book, pd.DataFrame]: ...


def make_book(n_accounts: int, seed: int | np.random.SeedSequence, *,
              underlyings: Sequence[str] = ("BTC", "ETH", "SOL"),
              spot: Mapping[str, float] | None = None,
              positions_per_account: float = 5.0,
              option_share: float = 0.3,
              inverse_share: float = 0.2,
              vol: Mapping[str, float] | None = None,
              return_strategies: bool = False) -> Book | tuple[Book, pd.DataFrame]:
    """A synthetic book of realistic crypto-derivatives accounts (see the module notes).

    Parameters
    ----------
    n_accounts : int
        Number of accounts, >= 1. Peak memory is about 1.1 GB per 10^6 accounts at 5
        positions each.
    seed : int or numpy.random.SeedSequence
        Seed of ``numpy.random.default_rng``; the same seed gives the same book.
    underlyings : sequence of str
        Underlying coins. BTC and ETH get inverse contracts and coin-settled options.
    spot : mapping of str to float, optional
        Spot prices in USD per coin, overriding :data:`DEFAULT_SPOT`; required for an
        underlying without a default.
    positions_per_account : float
        Target mean number of position rows per account, in [1, 1000]. The strategies
        alone average about 1.4 legs, so targets below that are not reached.
    option_share : float
        Fraction of accounts, in [0, 1], whose strategy is an option strategy.
    inverse_share : float
        Fraction of accounts, in [0, 1], that are coin-margined (BTC or ETH collateral,
        inverse futures); none when neither BTC nor ETH is an underlying.
    vol : mapping of str to float, optional
        Implied volatilities (annualised, in (0, 5]) used to price option entry premiums,
        overriding :data:`DEFAULT_VOL`; required for an underlying without a default.
    return_strategies : bool
        Also return a frame describing each account.

    Returns
    -------
    Book
        The book; its tables are already normalised, exactly as
        :meth:`Book.from_frames <marginlab.models.book.Book.from_frames>` would return them.
    pandas.DataFrame
        Only with ``return_strategies``: one row per account, in the order of
        ``book.account_ids``, with ``account_id``, ``strategy`` (one of :data:`STRATEGIES`),
        ``underlying`` (main underlying), ``coin_margined`` (bool) and ``equity_usd``.

    Raises
    ------
    ValueError, TypeError
        An argument is out of range or of the wrong type; the message names it.

    Examples
    --------
    >>> book = make_book(1000, seed=1)
    >>> book.n_accounts
    1000
    >>> market = default_market()  # the spot prices and vols the book is priced at
    """
    n = _check_count(n_accounts)
    ss = _check_seed(seed)
    unds = _check_underlyings(underlyings)
    mkt = default_market(unds, spot=spot, vol=vol)
    ppa = check_real("positions_per_account", positions_per_account, low=1.0, high=1000.0)
    p_opt = check_real("option_share", option_share, low=0.0, high=1.0)
    p_inv = check_real("inverse_share", inverse_share, low=0.0, high=1.0)
    rng = np.random.default_rng(ss)
    uni = _Universe(unds, mkt["spot"], mkt["vol"])

    acc = _draw_accounts(rng, uni, n, p_opt, p_inv)
    legs = _core_legs(rng, uni, acc)
    core_mean = float(_CORE_LEGS[acc.strat].mean())
    ea, x_inst, x_qty = _extras(rng, uni, acc, max(ppa - core_mean, 0.0))
    p_acc, p_inst, p_qty = _assemble(legs, ea, x_inst, x_qty)
    del ea, x_inst, x_qty
    noise = rng.standard_normal(p_inst.size)
    noise *= np.where(uni.is_option[p_inst], 0.10, 0.05)
    entry = uni.ref_price[p_inst] * np.exp(noise, out=noise)
    np.maximum(entry, uni.min_price[p_inst], out=entry)
    del noise
    c_acc, c_asset, c_amount, assets = _collateral(rng, uni, acc, legs)

    # frames with the dtypes Book.from_frames produces (arrow-backed text, float numbers)
    ids = pd.array(_account_ids(n), dtype="str")
    inst_ids = pd.array(uni.frame["instrument_id"].to_numpy(), dtype="str")
    positions = pd.DataFrame({
        "account_id": ids.take(p_acc), "instrument_id": inst_ids.take(p_inst),
        "quantity": p_qty, "entry_price": entry})
    del p_acc, p_inst, p_qty, entry
    haircut = np.array([HAIRCUTS.get(a, OTHER_HAIRCUT) for a in assets])
    collateral = pd.DataFrame({
        "account_id": ids.take(c_acc),
        "asset": pd.array(np.array(assets, dtype=str), dtype="str").take(c_asset),
        "amount": c_amount, "haircut": haircut[c_asset]})
    del c_acc, c_asset, c_amount, legs
    book = Book(uni.frame, positions, collateral)
    if not return_strategies:
        return book
    info = pd.DataFrame({
        "account_id": ids,
        "strategy": pd.Categorical.from_codes(acc.strat, categories=list(STRATEGIES)),
        "underlying": pd.array(np.array(unds, dtype=str), dtype="str").take(acc.und),
        "coin_margined": acc.coin, "equity_usd": acc.equity})
    return book, info


class _Accounts(NamedTuple):
    equity: np.ndarray  # USD
    coin: np.ndarray  # bool: coin-margined
    und: np.ndarray  # main underlying code
    strat: np.ndarray  # strategy code (index into STRATEGIES)
    pop: np.ndarray  # underlying popularity weights, normalised


class _Legs(NamedTuple):
    leg_a: np.ndarray  # instrument of the first leg (every account has one)
    qty_a: np.ndarray
    leg_b: np.ndarray  # instrument of the second leg, -1 if none
    qty_b: np.ndarray
    coin_col: np.ndarray  # collateral in the main coin, coins
    usd_col: np.ndarray  # USD collateral value (stablecoins or a multi-asset mix)


def _draw_accounts(rng: np.random.Generator, uni: _Universe, n: int, p_opt: float,
                   p_inv: float) -> _Accounts:
    """Equity, margin mode, main underlying and strategy of every account."""
    unds = uni.underlyings
    n_u = len(unds)
    equity = np.exp(rng.normal(np.log(_EQUITY_MEDIAN), _EQUITY_LOG_SD, n))
    pop = np.array([_POPULARITY.get(u, _OTHER_POPULARITY) for u in unds])
    pop /= pop.sum()
    inv_codes = np.array([i for i, u in enumerate(unds) if u in INVERSE_FACE_VALUE], np.int64)
    is_opt = rng.random(n) < p_opt
    coin = rng.random(n) < p_inv if inv_codes.size else np.zeros(n, bool)
    und = rng.choice(n_u, size=n, p=pop)
    if inv_codes.size:
        w = pop[inv_codes]
        und = np.where(coin, inv_codes[rng.choice(inv_codes.size, size=n, p=w / w.sum())], und)
    u1 = rng.random(n)
    strat = np.select(
        [is_opt & (u1 < 0.40), is_opt & (u1 < 0.60), is_opt & (u1 < 0.75), is_opt,
         coin & (u1 < 0.65), coin, u1 < 0.70, u1 < 0.85],
        [_VERTICAL, _STRANGLE, _STRADDLE, _COVERED_CALL, _COIN_DIRECTIONAL, _COIN_HEDGED,
         _DIRECTIONAL, _BASIS], _CALENDAR).astype(np.int8)
    return _Accounts(equity, coin, und, strat, pop)


def _core_legs(rng: np.random.Generator, uni: _Universe, acc: _Accounts) -> _Legs:
    """The legs and collateral of each account's strategy (draws made for every account)."""
    equity, coin, und, strat = acc.equity, acc.coin, acc.und, acc.strat
    n = equity.size
    n_k = len(MONEYNESS)
    s_acc = uni.spot[und]
    sign = np.where(rng.random(n) < 0.55, 1.0, -1.0)
    lev = np.clip(np.rint(np.exp(rng.normal(np.log(3.0), 0.8, n))), 1.0, 20.0)
    frac = rng.uniform(0.5, 0.9, n)  # coin share (basis, covered call), hedge ratio
    match = np.exp(rng.normal(0.0, 0.03, n))  # size mismatch of hedges
    risk = rng.uniform(0.05, 0.30, n)  # vertical spread: max loss / equity
    short_size = rng.uniform(0.3, 1.5, n)  # strangle / straddle: coins per leg x S / equity
    expiry = rng.choice(len(OPTION_DAYS), size=n, p=[0.3, 0.4, 0.3])
    cp = rng.integers(0, 2, n)
    k1 = rng.integers(0, n_k, n)
    step = rng.integers(1, 3, n)
    k2 = np.where(rng.random(n) < 0.5, k1 + step, k1 - step)
    k2 = np.where((k2 < 0) | (k2 >= n_k), 2 * k1 - k2, k2)  # reflect into the grid
    otm = rng.integers(1, 3, n)  # strikes from the money: strangles, covered calls

    leg_a = np.empty(n, np.int64)
    qty_a = np.empty(n)
    leg_b = np.full(n, -1, np.int64)
    qty_b = np.zeros(n)
    coin_col = np.zeros(n)
    usd_col = np.zeros(n)

    def pick(code, a, qa, b=None, qb=None, coins=None, usd=None):
        m = strat == code
        leg_a[m], qty_a[m] = a[m], qa[m]
        if b is not None:
            leg_b[m], qty_b[m] = b[m], qb[m]
        coin_col[m] = 0.0 if coins is None else coins[m]
        usd_col[m] = 0.0 if usd is None else usd[m]

    zero = np.zeros(n, np.int64)
    one = np.ones(n, np.int64)
    atm = np.full(n, _ATM)
    lin_perp = uni.perp[und, zero]
    face = uni.face[und]
    all_coin = equity / s_acc
    # option strategies: coin-margined accounts hold their equity in the coin
    opt_coins = np.where(coin, all_coin, 0.0)
    opt_usd = np.where(coin, 0.0, equity)
    pick(_DIRECTIONAL, lin_perp, sign * lev * all_coin, usd=equity)
    pick(_BASIS, lin_perp, -frac * all_coin * match, coins=frac * all_coin,
         usd=(1 - frac) * equity)
    size = np.minimum(lev, 5.0) * all_coin
    pick(_CALENDAR, lin_perp, size, uni.fut[und, zero], -size * match, usd=equity)
    pick(_COIN_DIRECTIONAL, uni.perp[und, one], sign * lev * equity / face, coins=all_coin)
    pick(_COIN_HEDGED, uni.fut[und, one], -frac * equity / face, coins=all_coin)
    q = risk * equity / np.abs(uni.strikes[und, k1] - uni.strikes[und, k2])
    pick(_VERTICAL, uni.opt[und, expiry, k1, cp], q, uni.opt[und, expiry, k2, cp], -q,
         coins=opt_coins, usd=opt_usd)
    q = -short_size * all_coin
    pick(_STRANGLE, uni.opt[und, expiry, atm - otm, 1], q, uni.opt[und, expiry, atm + otm, 0],
         q, coins=opt_coins, usd=opt_usd)
    pick(_STRADDLE, uni.opt[und, expiry, atm, 1], q, uni.opt[und, expiry, atm, 0], q,
         coins=opt_coins, usd=opt_usd)
    pick(_COVERED_CALL, uni.opt[und, expiry, atm + otm, 0], -frac * all_coin,
         coins=np.where(coin, all_coin, frac * all_coin),
         usd=np.where(coin, 0.0, (1 - frac) * equity))
    qty_a = uni.round_lots(qty_a, leg_a)
    has_b = leg_b >= 0
    qty_b[has_b] = uni.round_lots(qty_b[has_b], leg_b[has_b])
    # both legs of a spread, strangle or straddle have the same size (after rounding)
    same = has_b & np.isin(strat, (_VERTICAL, _STRANGLE, _STRADDLE))
    qty_b[same] = np.copysign(qty_a[same], qty_b[same])
    return _Legs(leg_a, qty_a, leg_b, qty_b, coin_col, usd_col)


def _extras(rng: np.random.Generator, uni: _Universe, acc: _Accounts,
            lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extra positions: a negative-binomial count of mean ``lam`` per account.

    Returns the account, instrument and quantity of each, sorted by account."""
    n = acc.equity.size
    if lam > 0:
        n_extra = rng.negative_binomial(_NB_DISPERSION, _NB_DISPERSION / (_NB_DISPERSION + lam),
                                        n)
    else:
        n_extra = np.zeros(n, np.int64)
    ea = np.repeat(np.arange(n, dtype=np.int64), n_extra)
    del n_extra
    n_x = ea.size
    e_coin = acc.coin[ea]
    eu = acc.und[ea]
    # 30 % on another underlying (drawn by popularity), never for coin-margined accounts
    move = (rng.random(n_x) >= 0.7) & ~e_coin
    eu[move] = rng.choice(len(uni.underlyings), size=int(move.sum()), p=acc.pop)
    del move
    kind = rng.choice(3, size=n_x, p=[0.35, 0.15, 0.50]).astype(np.int8)
    ek = np.clip(np.rint(rng.normal(_ATM, 1.5, n_x)), 0, len(MONEYNESS) - 1).astype(np.int64)
    ee = rng.choice(len(OPTION_DAYS), size=n_x, p=[0.3, 0.4, 0.3])
    ec = rng.integers(0, 2, n_x)
    x_inst = uni.opt[eu, ee, ek, ec]
    del ee, ek, ec
    fam = e_coin.astype(np.int64)  # coin-margined accounts: inverse futures on their coin
    m = kind == 0
    x_inst[m] = uni.perp[eu[m], fam[m]]
    m = kind == 1
    x_inst[m] = uni.fut[eu[m], fam[m]]
    del m, fam, kind, eu, e_coin
    qty = acc.equity[ea] * np.exp(rng.normal(np.log(0.2), 0.8, n_x))  # notional, USD
    qty /= uni.unit_usd[x_inst]
    qty *= np.where(rng.random(n_x) < 0.5, 1.0, -1.0)
    return ea, x_inst, uni.round_lots(qty, x_inst)


def _assemble(legs: _Legs, ea: np.ndarray, x_inst: np.ndarray,
              x_qty: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position rows grouped by account: strategy legs first, then extras in draw order."""
    n = legs.leg_a.size
    has_b = legs.leg_b >= 0
    n_extra = np.bincount(ea, minlength=n)
    count = 1 + has_b + n_extra
    start = np.cumsum(count) - count
    total = int(count.sum())
    p_acc = np.repeat(np.arange(n, dtype=np.int64), count)
    p_inst = np.empty(total, np.int64)
    p_qty = np.empty(total)
    p_inst[start] = legs.leg_a
    p_qty[start] = legs.qty_a
    b_at = start[has_b] + 1
    p_inst[b_at] = legs.leg_b[has_b]
    p_qty[b_at] = legs.qty_b[has_b]
    # extras of account i fill start[i] + core[i] + 0, 1, ...; ea is sorted by account
    first_extra = np.cumsum(n_extra) - n_extra
    x_at = np.arange(ea.size, dtype=np.int64)
    x_at += (start + 1 + has_b - first_extra)[ea]
    p_inst[x_at] = x_inst
    p_qty[x_at] = x_qty
    return p_acc, p_inst, p_qty


def _collateral(rng: np.random.Generator, uni: _Universe, acc: _Accounts,
                legs: _Legs) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Collateral rows (account, asset code, amount) sorted by account then asset code."""
    n = acc.equity.size
    unds = uni.underlyings
    assets = ["USDT", "USDC"] + [u for u in unds if u not in ("USDT", "USDC")]
    coin_asset = np.array([assets.index(u) for u in unds], np.int64)
    amounts = np.zeros((n, len(assets)))
    rows = np.arange(n)
    amounts[rows, coin_asset[acc.und]] += legs.coin_col
    u2 = rng.random(n)
    multi = u2 < 0.20
    usdc = (u2 >= 0.20) & (u2 < 0.28)
    split = rng.dirichlet([4.0, 2.0, 2.0], size=n)
    mcoin = rng.choice(len(unds), size=n, p=acc.pop)
    usd = legs.usd_col
    amounts[:, 0] += np.where(multi, split[:, 0], np.where(usdc, 0.0, 1.0)) * usd
    amounts[:, 1] += np.where(multi, split[:, 1], np.where(usdc, 1.0, 0.0)) * usd
    amounts[rows, coin_asset[mcoin]] += np.where(multi, split[:, 2], 0.0) * usd \
        / uni.spot[mcoin]
    c_acc, c_asset = np.nonzero(amounts > 0.0)
    return c_acc, c_asset, amounts[c_acc, c_asset], assets
