"""Synthetic books of :mod:`marginlab.models.synthetic`.

Oracles, per test: determinism of numpy's seeded generators (same seed, same book; a
SeedSequence built from the seed gives the generator the integer gives); the definitions in
the module documentation (instrument universe, strategy legs, lot sizes, haircuts); the
validating constructor ``Book.from_frames`` (it must accept the frames and return the
identical book); conservation of equity (collateral valued at spot equals the drawn equity);
the Black-76 closed form (log entry premium / Black-76 value is N(0, 0.1^2), log futures
entry / spot is N(0, 0.05^2): sample means within 5 standard errors); the binomial law
(strategy shares within 5 standard errors of ``option_share``, ``inverse_share``); the
documented argument ranges (each error names the argument).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from marginlab.models.book import INVERSE_TYPES, Book
from marginlab.models.synthetic import (
    DEFAULT_SPOT,
    DEFAULT_VOL,
    HAIRCUTS,
    OTHER_HAIRCUT,
    STRATEGIES,
    default_market,
    make_book,
)
from marginlab.simulate.pricing import black76_price

OPTION_STRATEGIES = {"vertical_spread", "short_strangle", "short_straddle", "covered_call"}
COIN_STRATEGIES = {"coin_directional", "coin_hedged"}


@pytest.fixture(scope="module")
def sample():
    return make_book(3000, 11, return_strategies=True)


def frames(book: Book) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return book.instruments, book.positions, book.collateral


def joined(book: Book) -> pd.DataFrame:
    inst = book.instruments.set_index("instrument_id")
    return book.positions.join(inst, on="instrument_id")


# ---------------------------------------------------------------------------- determinism
def test_same_seed_same_book_different_seed_different_book():
    # oracle: a seeded numpy Generator replays the same stream
    a, b, c = make_book(400, 3), make_book(400, 3), make_book(400, 4)
    for fa, fb in zip(frames(a), frames(b), strict=True):
        pd.testing.assert_frame_equal(fa, fb)
    pd.testing.assert_frame_equal(a.instruments, c.instruments)  # the universe is not random
    assert not a.positions.equals(c.positions)
    assert not a.collateral.equals(c.collateral)


def test_seed_sequence_is_the_integer_seed():
    # oracle: default_rng(n) seeds from SeedSequence(n)
    a, b = make_book(200, 9), make_book(200, np.random.SeedSequence(9))
    for fa, fb in zip(frames(a), frames(b), strict=True):
        pd.testing.assert_frame_equal(fa, fb)


# ---------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_exact_number_of_accounts_and_ids(n):
    # oracle: the documented ids acct000000 ... (zero-padded to 6 digits)
    book = make_book(n, 1)
    assert book.n_accounts == n
    assert list(book.account_ids) == [f"acct{i:06d}" for i in range(n)]


def test_ids_widen_past_a_million():
    # oracle: zero-padding to max(6, digits of n - 1) keeps ids sortable
    from marginlab.models.synthetic import _account_ids

    ids = _account_ids(1_000_001)
    assert ids[0] == "acct0000000" and ids[-1] == "acct1000000"


@pytest.mark.parametrize("ppa", [2.0, 5.0, 12.0])
def test_mean_positions_per_account(ppa):
    # oracle: extras of mean max(ppa - mean strategy legs, 0) bring the mean row count to ppa
    book = make_book(4000, 2, positions_per_account=ppa)
    mean = book.n_positions / book.n_accounts
    assert abs(mean - ppa) <= 0.2 * ppa
    assert book.positions.groupby("account_id").size().min() >= 1


# ---------------------------------------------------------------------------- universe
def test_instrument_universe_matches_the_documentation():
    # oracle: module documentation (2 linear + 2 inverse for BTC/ETH + 7 strikes x 3 x 2)
    inst = make_book(10, 0).instruments
    per = inst.groupby("underlying").size().to_dict()
    assert per == {"BTC": 46, "ETH": 46, "SOL": 44}
    ids = set(inst["instrument_id"])
    assert {"BTC-PERP", "BTC-FUT-3M", "BTCUSD-PERP", "ETHUSD-FUT-3M", "SOL-PERP",
            "BTC-30D-60000-C", "ETH-7D-2100-P", "SOL-90D-150-C"} <= ids
    btc = inst[(inst.underlying == "BTC") & (inst.type == "inverse_option")]
    assert sorted(set(btc.strike)) == [42000, 48000, 54000, 60000, 66000, 72000, 78000]
    assert sorted(set(np.round(btc.expiry * 365))) == [7, 30, 90]
    assert set(inst.loc[inst.underlying == "SOL", "type"]) == {"linear_perp", "linear_future",
                                                               "option"}
    face = inst.dropna(subset=["face_value"]).set_index("instrument_id")["face_value"]
    assert face.to_dict() == {"BTCUSD-PERP": 100.0, "BTCUSD-FUT-3M": 100.0,
                              "ETHUSD-PERP": 10.0, "ETHUSD-FUT-3M": 10.0}
    perps = inst[inst.type.str.endswith("perp")]
    assert np.all(perps.funding_rate == 1e-4)
    assert np.all(inst.loc[inst.type.str.endswith("future"), "expiry"] == 0.25)


def test_every_referenced_instrument_exists(sample):
    # oracle: set inclusion; Book maps each position to an instrument column
    book, _ = sample
    assert set(book.positions["instrument_id"]) <= set(book.instruments["instrument_id"])
    assert np.all(book.position_instrument >= 0)


def test_inverse_instruments_only_on_btc_and_eth(sample):
    # oracle: the documentation (Binance COIN-M and Deribit list inverse BTC and ETH only)
    book, info = sample
    inst = book.instruments
    inverse = inst.type.isin(INVERSE_TYPES + ("inverse_option",))
    assert set(inst.loc[inverse, "underlying"]) == {"BTC", "ETH"}
    p = joined(book)
    assert set(p.loc[p.type.isin(INVERSE_TYPES + ("inverse_option",)), "underlying"]) <= \
        {"BTC", "ETH"}
    assert set(info.loc[info.coin_margined, "underlying"]) <= {"BTC", "ETH"}


def test_no_inverse_universe_without_btc_and_eth():
    # oracle: the documentation (no inverse contracts, no coin-margined accounts)
    book, info = make_book(300, 5, underlyings=("SOL", "doge"), spot={"DOGE": 0.15},
                           vol={"DOGE": 1.1}, return_strategies=True)
    assert set(book.instruments.type) == {"linear_perp", "linear_future", "option"}
    assert not info.coin_margined.any()
    assert book.underlyings == ("DOGE", "SOL")
    assert "DOGE-30D-0.15-C" in set(book.instruments.instrument_id)


# ---------------------------------------------------------------------------- strategies
def test_vertical_spreads_are_spreads(sample):
    # oracle: definition of a vertical spread (same underlying, expiry and type; long K1,
    # short K2 != K1, same size); the documented leg order (strategy legs first)
    book, info = sample
    p = joined(book)
    first = p.groupby("account_id", sort=False).head(2)
    accts = info.loc[info.strategy == "vertical_spread", "account_id"]
    assert len(accts) > 50
    legs = first[first.account_id.isin(accts)]
    a, b = legs.iloc[0::2].reset_index(drop=True), legs.iloc[1::2].reset_index(drop=True)
    assert (a.account_id == b.account_id).all()
    assert a.type.isin(["option", "inverse_option"]).all()
    for col in ("underlying", "expiry", "option_type", "type"):
        assert (a[col] == b[col]).all(), col
    assert (a.strike != b.strike).all()
    assert (a.quantity > 0).all() and (b.quantity < 0).all()
    np.testing.assert_array_equal(a.quantity, -b.quantity)


def test_short_strangles_and_straddles(sample):
    # oracle: definitions (short an OTM put and an OTM call; short put and call at the money)
    book, info = sample
    p = joined(book)
    first = p.groupby("account_id", sort=False).head(2)
    spot = first.underlying.map(DEFAULT_SPOT)
    for strat in ("short_strangle", "short_straddle"):
        legs = first[first.account_id.isin(info.loc[info.strategy == strat, "account_id"])]
        put, call = legs.iloc[0::2], legs.iloc[1::2]
        assert len(put) > 20
        assert (put.option_type == "put").all() and (call.option_type == "call").all()
        assert (put.quantity < 0).all() and (call.quantity < 0).all()
        if strat == "short_strangle":
            assert (put.strike < spot[put.index]).all()
            assert (call.strike > spot[call.index]).all()
        else:
            assert (put.strike.to_numpy() == call.strike.to_numpy()).all()


def test_covered_calls_hold_the_coin(sample):
    # oracle: definition (short calls covered by the coin held as collateral)
    book, info = sample
    p = joined(book)
    first = p.groupby("account_id", sort=False).head(1).set_index("account_id")
    cc = info[info.strategy == "covered_call"]
    legs = first.loc[cc.account_id]
    assert (legs.option_type == "call").all() and (legs.quantity < 0).all()
    col = book.collateral.set_index(["account_id", "asset"])["amount"]
    held = col.reindex(list(zip(cc.account_id, cc.underlying, strict=True))).to_numpy()
    assert np.all(held > 0)


def test_strategy_shares_follow_the_arguments():
    # oracle: binomial law, shares within 5 standard errors; extremes are exact
    n = 6000
    _, info = make_book(n, 8, option_share=0.3, inverse_share=0.2, return_strategies=True)
    share = info.strategy.isin(OPTION_STRATEGIES).mean()
    assert abs(share - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    assert abs(info.coin_margined.mean() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    assert set(info.strategy) == set(STRATEGIES)
    _, info = make_book(500, 8, option_share=1.0, inverse_share=0.0, return_strategies=True)
    assert info.strategy.isin(OPTION_STRATEGIES).all() and not info.coin_margined.any()
    book, info = make_book(500, 8, option_share=0.0, inverse_share=0.0,
                           return_strategies=True)
    assert not info.strategy.isin(OPTION_STRATEGIES | COIN_STRATEGIES).any()
    assert not joined(book).type.isin(INVERSE_TYPES).any()
    _, info = make_book(500, 8, option_share=0.0, inverse_share=1.0, return_strategies=True)
    assert info.strategy.isin(COIN_STRATEGIES).all()


def test_coin_margined_accounts_hold_coin_and_trade_inverse(sample):
    # oracle: the documentation (coin collateral only; futures inverse, on their coin)
    book, info = sample
    coin = info[info.coin_margined]
    col = book.collateral[book.collateral.account_id.isin(coin.account_id)]
    main = col.account_id.map(coin.set_index("account_id").underlying)
    assert (col.asset == main).all()
    p = joined(book)
    p = p[p.account_id.isin(coin.account_id)]
    assert not p.type.isin(["linear_perp", "linear_future", "option"]).any()
    assert (p.underlying == p.account_id.map(coin.set_index("account_id").underlying)).all()


# ---------------------------------------------------------------------------- values
def test_entry_prices_positive_finite_and_priced_by_black76(sample):
    # oracle: Black-76 at forward = spot, r = 0 (premium in coin for inverse options), times
    # exp(N(0, 0.1)); futures spot x exp(N(0, 0.05)): means within 5 standard errors
    book, _ = sample
    p = joined(book)
    entry = p.entry_price.to_numpy()
    assert np.all(np.isfinite(entry)) and np.all(entry > 0)
    assert np.all(np.isfinite(p.quantity)) and np.all(p.quantity != 0)
    mkt = default_market()
    s = p.underlying.map(mkt["spot"]).to_numpy()
    vol = p.underlying.map(mkt["vol"]).to_numpy()
    opt = p.type.isin(["option", "inverse_option"]).to_numpy()
    ref = black76_price(s[opt], p.strike[opt].to_numpy(), p.expiry[opt].to_numpy(), vol[opt],
                        0.0, is_call=(p.option_type[opt] == "call").to_numpy())
    ref = np.where(p.type[opt] == "inverse_option", ref / s[opt], ref)
    floor = np.where(p.type[opt] == "inverse_option", 1e-4, 1e-4 * s[opt])
    assert np.all(entry[opt] >= floor)
    unfloored = ref > 20 * floor  # the floor cannot bind within 10 standard deviations
    z = np.log(entry[opt][unfloored] / ref[unfloored])
    assert abs(z.mean()) < 5 * 0.1 / math.sqrt(z.size)
    assert abs(z.std() / 0.1 - 1) < 0.05
    z = np.log(entry[~opt] / s[~opt])
    assert abs(z.mean()) < 5 * 0.05 / math.sqrt(z.size)
    assert abs(z.std() / 0.05 - 1) < 0.05


def test_quantities_are_whole_lots(sample):
    # oracle: the documented lots (whole inverse contracts; 0.001 BTC, 0.01 BTC options ...)
    p = joined(sample[0])
    lots = {("BTC", False): 1e-3, ("ETH", False): 1e-2, ("SOL", False): 1e-1,
            ("BTC", True): 1e-2, ("ETH", True): 1e-1, ("SOL", True): 1.0}
    inverse = p.type.isin(INVERSE_TYPES).to_numpy()
    q = p.quantity.to_numpy()
    assert np.all(q[inverse] == np.round(q[inverse]))
    is_opt = p.type.isin(["option", "inverse_option"]).to_numpy()
    lot = np.array([lots[(u, o)] for u, o in zip(p.underlying, is_opt, strict=True)])
    n_lots = q[~inverse] / lot[~inverse]
    np.testing.assert_allclose(n_lots, np.round(n_lots), atol=1e-6)
    assert np.all(np.abs(np.round(n_lots)) >= 1)


def test_collateral_is_the_equity_with_valid_haircuts(sample):
    # oracle: conservation (collateral valued at spot = drawn equity); haircut table
    book, info = sample
    col = book.collateral
    assert np.all(col.amount > 0)
    assert np.all((col.haircut >= 0) & (col.haircut < 1))
    np.testing.assert_array_equal(col.haircut, col.asset.map(HAIRCUTS).fillna(OTHER_HAIRCUT))
    assert not col.duplicated(["account_id", "asset"]).any()
    price = col.asset.map({"USDT": 1.0, "USDC": 1.0, **DEFAULT_SPOT}).astype(float)
    value = (col.amount * price).groupby(col.account_id).sum()
    np.testing.assert_allclose(value.reindex(info.account_id).to_numpy(),
                               info.equity_usd.to_numpy(), rtol=1e-12)
    assert set(col.asset) == {"USDT", "USDC", "BTC", "ETH", "SOL"}
    assert (col.asset == "USDT").sum() > col.account_id.nunique() / 2  # USDT for most
    assert 5_000 < info.equity_usd.median() < 20_000  # median equity about 10k USD


# ---------------------------------------------------------------------------- round trip
def test_from_frames_accepts_the_frames_and_builds_the_identical_book(sample):
    # oracle: the validating constructor Book.from_frames
    book, _ = sample
    again = Book.from_frames(*frames(book))
    for fa, fb in zip(frames(book), frames(again), strict=True):
        pd.testing.assert_frame_equal(fa, fb)
    np.testing.assert_array_equal(book.account_ids, again.account_ids)
    assert book.assets == again.assets
    for attr in ("holdings", "collateral_holdings", "haircut_holdings"):
        assert (getattr(book, attr) != getattr(again, attr)).nnz == 0, attr


def test_default_market_matches_the_defaults_and_overrides():
    # oracle: the documented default spot prices and vols
    m = default_market()
    assert m == {"spot": dict(DEFAULT_SPOT), "vol": dict(DEFAULT_VOL)}
    m = default_market(["eth", "XRP"], spot={"XRP": 0.5, "BTC": 1.0}, vol={"XRP": 1.2})
    assert m == {"spot": {"ETH": 3000.0, "XRP": 0.5}, "vol": {"ETH": 0.7, "XRP": 1.2}}


def test_spot_override_moves_the_strike_grid():
    # oracle: strikes = spot x moneyness rounded to the tick (2 % of 80,000 -> 1000)
    inst = make_book(5, 0, underlyings=("BTC",), spot={"BTC": 80_000}).instruments
    strikes = sorted(set(inst.strike.dropna()))
    assert strikes == [56000, 64000, 72000, 80000, 88000, 96000, 104000]


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(("kwargs", "exc", "words"), [
    ({"n_accounts": 0}, ValueError, ["n_accounts", ">= 1", "0"]),
    ({"n_accounts": -5}, ValueError, ["n_accounts", "-5"]),
    ({"n_accounts": 2.5}, TypeError, ["n_accounts"]),
    ({"n_accounts": True}, TypeError, ["n_accounts"]),
    ({"seed": None}, TypeError, ["seed"]),
    ({"seed": -1}, ValueError, ["seed", "-1"]),
    ({"underlyings": ("BTC", "DOGE")}, ValueError, ["spot", "DOGE"]),
    ({"underlyings": ("DOGE",), "spot": {"DOGE": 0.1}}, ValueError, ["vol", "DOGE"]),
    ({"underlyings": "BTC"}, TypeError, ["underlyings"]),
    ({"underlyings": ()}, ValueError, ["underlyings"]),
    ({"underlyings": ("BTC", "btc")}, ValueError, ["underlyings", "unique"]),
    ({"spot": {"BTC": -1.0}}, ValueError, ["spot['BTC']", "> 0", "-1"]),
    ({"spot": [60000]}, TypeError, ["spot"]),
    ({"vol": {"ETH": 0.0}}, ValueError, ["vol['ETH']", "> 0"]),
    ({"option_share": -0.1}, ValueError, ["option_share", ">= 0", "<= 1", "-0.1"]),
    ({"option_share": 1.5}, ValueError, ["option_share", "1.5"]),
    ({"option_share": float("nan")}, ValueError, ["option_share", "nan"]),
    ({"option_share": "0.3"}, TypeError, ["option_share"]),
    ({"inverse_share": 2.0}, ValueError, ["inverse_share", "2.0"]),
    ({"positions_per_account": 0.5}, ValueError, ["positions_per_account", ">= 1", "0.5"]),
])  # fmt: skip
def test_bad_arguments_name_the_argument(kwargs, exc, words):
    # oracle: the documented argument ranges
    args = {"n_accounts": 10, "seed": 0, **kwargs}
    with pytest.raises(exc) as err:
        make_book(args.pop("n_accounts"), args.pop("seed"), **args)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


# ---------------------------------------------------------------------------- scale
def test_a_hundred_thousand_accounts_build():
    # oracle: sizes law at scale (no assertion on time; the report quotes timings)
    book = make_book(100_000, 42)
    assert book.n_accounts == 100_000
    assert abs(book.n_positions / 100_000 - 5.0) < 1.0
    assert book.holdings.shape == (100_000, 136)
