"""Batch-run options beyond the basics: Monte Carlo sampling and move cap, grid conventions,
open orders, the liquidity add-on and precision-targeted scenario counts.

Each run is compared with the same method built through the public API on the same book
(oracle: the API the configuration names), or with a law.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marginlab.models import Book, make_book
from marginlab.models.app.config import ConfigError, config_from_dict
from marginlab.models.app.runner import base_method, build_market, build_methods, run_batch
from marginlab.models.margin.grid import DeribitLike, SpanLike
from marginlab.models.margin.liquidity import LiquidityAddOn
from marginlab.models.margin.risk_based import MonteCarloMargin
from marginlab.models.orders import WithOrders
from marginlab.models.precision import precision_met

SPOT = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0}
VOL = {"BTC": 0.55, "ETH": 0.7, "SOL": 0.9}


def _config(tmp: Path, methods: list[dict], book: dict | None = None, **extra) -> dict:
    cfg = {
        "book": book or {"synthetic_accounts": 120, "synthetic_seed": 5},
        "market": {"spot": SPOT, "vol": VOL},
        "scenarios": {"model": "gbm", "underlyings": ["BTC", "ETH", "SOL"],
                      "params": {"mu": 0.0, "sigma": [0.55, 0.7, 0.9]},
                      "corr": [[1, 0.8, 0.7], [0.8, 1, 0.75], [0.7, 0.75, 1]],
                      "n_scenarios": 1_024, "seed": 11, "horizon_days": 2},
        "methods": methods,
        "run": {"account_block": 50, "output": "out", "report": False},
    }
    for k, v in extra.items():
        if k in cfg and isinstance(v, dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


def _run(tmp: Path, data: dict, **kw):
    cfg = config_from_dict(data, tmp)
    res = run_batch(cfg, progress=False, **kw)
    return cfg, res, pd.read_parquet(res.accounts)


def _rows(df: pd.DataFrame, method: str) -> pd.DataFrame:
    return df[df["method"] == method].set_index("account_id")


def _book_files(tmp: Path, with_orders: bool) -> dict:
    book = make_book(60, seed=2)
    if with_orders:
        pos = book.positions
        lin = pos[pos["instrument_id"].isin(
            book.instruments.loc[book.instruments["type"].isin(["linear_perp",
                                                                 "linear_future"]),
                                 "instrument_id"])]
        rows = lin.groupby("account_id", sort=False).head(1).head(25)
        orders = pd.DataFrame({
            "account_id": rows["account_id"].to_numpy(),
            "instrument_id": rows["instrument_id"].to_numpy(),
            "side": np.where(np.arange(len(rows)) % 2 == 0, "buy", "sell"),
            "quantity": np.abs(rows["quantity"].to_numpy()) * 3.0 + 1.0,
            "price": rows["entry_price"].to_numpy()})
        book = Book(book.instruments, book.positions, book.collateral, orders=orders)
    book.to_files(tmp / "book")
    out = {k: str(tmp / "book" / f"{k}.csv") for k in ("instruments", "positions",
                                                      "collateral")}
    if with_orders:
        out["orders"] = str(tmp / "book" / "orders.csv")
    return out


def test_monte_carlo_sampling_and_move_cap_follow_the_api(tmp_path):
    """Oracle: MonteCarloMargin built through the API with the same sampling (randomised
    QMC, defensive mixture) and move cap ("none") gives the run's IM to 1e-12; methods with
    different sampling do not share a scenario set."""
    methods = [
        {"type": "monte_carlo", "name": "plain", "params": {"move_cap": "none"}},
        {"type": "monte_carlo", "name": "qmc",
         "params": {"sampling": "qmc", "randomizations": 8}},
        {"type": "monte_carlo", "name": "mixture", "params": {"sampling": "mixture"}},
        {"type": "monte_carlo", "name": "shift", "params": {"sampling": "shift"}},
    ]
    cfg, _, df = _run(tmp_path, _config(tmp_path, methods))
    book = make_book(120, 5)
    market = build_market(cfg)
    built = build_methods(cfg)
    assert built[0].move_cap is None and built[1].sampling == "qmc"
    assert built[1].randomizations == 8 and built[2].sampling == "mixture"
    ims = {}
    for m in built:
        ref = MonteCarloMargin(m.model, m.underlyings, horizon_days=2.0, n_scenarios=1_024,
                               seed=11, name=m.name, move_cap=m.move_cap,
                               sampling=m.sampling, randomizations=m.randomizations)
        expect = ref.compute(book, market)
        got = _rows(df, m.name).loc[expect.account_ids, "im"].to_numpy()
        np.testing.assert_allclose(got, expect.im, rtol=1e-12, atol=1e-9)
        ims[m.name] = got
    assert not np.allclose(ims["plain"], ims["qmc"])
    assert not np.allclose(ims["qmc"], ims["mixture"])


def test_grid_conventions_from_the_configuration(tmp_path):
    """Oracle: SpanLike(initial_multiplier=1.25, skew_scan=0.1) and
    DeribitLike(coin_margin=False) from the API; law: SPAN-like IM = initial_multiplier x
    MM."""
    methods = [
        {"type": "span", "name": "span",
         "params": {"price_scan": 0.15, "vol_scan": 0.25, "initial_multiplier": 1.25,
                    "skew_scan": 0.1}},
        {"type": "deribit", "name": "deribit usd", "params": {"coin_margin": False}},
    ]
    cfg, _, df = _run(tmp_path, _config(tmp_path, methods))
    book, market = make_book(120, 5), build_market(cfg)
    span = _rows(df, "span")
    assert (span["im"] > 0).any()
    np.testing.assert_allclose(span["im"], 1.25 * span["mm"], rtol=1e-12)
    for name, ref in (("span", SpanLike(price_scan=0.15, vol_scan=0.25,
                                        initial_multiplier=1.25, skew_scan=0.1, name="span")),
                      ("deribit usd", DeribitLike(coin_margin=False, name="deribit usd"))):
        expect = ref.compute(book, market)
        np.testing.assert_allclose(_rows(df, name).loc[expect.account_ids, "im"],
                                   expect.im, rtol=1e-12, atol=1e-9)


def test_orders_and_liquidity_add_on_in_a_run(tmp_path):
    """Oracle: WithOrders(LiquidityAddOn(method)) built through the API on the same book
    and orders gives the run's IM, MM, add-on and the two fill sides; laws: the add-on is
    IM - base IM for the method it applies to, and absent (NaN) for the one it does not;
    accounts without orders equal the unwrapped method."""
    files = _book_files(tmp_path, with_orders=True)
    book = Book.from_files(files["instruments"], files["positions"], files["collateral"],
                           orders=files["orders"])
    insts = book.instruments["instrument_id"].tolist()
    liquidity = {"adv": {i: 50.0 for i in insts}, "risk_parameter": 0.05,
                 "threshold": 0.0, "methods": ["mc"]}
    methods = [{"type": "monte_carlo", "name": "mc"},
               {"type": "span", "name": "span",
                "params": {"price_scan": 0.15, "vol_scan": 0.25}}]
    cfg, _, df = _run(tmp_path, _config(tmp_path, methods, book=files, liquidity=liquidity))
    market = build_market(cfg)
    built = build_methods(cfg)
    assert all(isinstance(m, WithOrders) for m in built)
    mc = base_method(built[0])
    assert isinstance(mc, MonteCarloMargin)
    ref = WithOrders(LiquidityAddOn(mc, adv=liquidity["adv"], risk_parameter=0.05,
                                    name="mc"), name="mc")
    expect = ref.compute(book, market)
    got = _rows(df, "mc").loc[expect.account_ids]
    np.testing.assert_allclose(got["im"], expect.im, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got["mm"], expect.mm, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got["im_buys"], expect.details["im_buys"], rtol=1e-12,
                               atol=1e-9)
    assert (got["liquidity_addon"] > 0).any()
    assert _rows(df, "span")["liquidity_addon"].isna().all()
    plain = mc.compute(book.subset(slice(0, book.n_accounts)), market)
    no_orders = ~np.isin(plain.account_ids, book.orders["account_id"].unique())
    base_im = _rows(df, "mc").loc[plain.account_ids[no_orders]]
    np.testing.assert_allclose(base_im["im"] - base_im["liquidity_addon"],
                               plain.im[no_orders], rtol=1e-9, atol=1e-6)


def test_precision_target_chooses_a_reproducible_count(tmp_path):
    """Oracle: brute force. The manifest's count is the first of n, 2n, ... at which the ES
    standard error is <= target x ES on the judged accounts' required share (recomputed here
    through the API for every count of the history); law: the same seed and target give the
    same count and the same bits with another account block and with two Dask workers."""
    methods = [{"type": "monte_carlo", "name": "mc"}]
    data = _config(tmp_path, methods, run={"precision_target": 0.03, "precision_share": 0.9,
                                           "max_scenarios": 8_192,
                                           "precision_sample_accounts": 40})
    data["scenarios"]["n_scenarios"] = 512
    cfg, res, df = _run(tmp_path, data)
    info = json.loads(Path(res.manifest).read_text())
    hist = info["precision"]["history"]
    n = info["n_scenarios"]
    assert hist[-1][0] == n and [h[0] for h in hist] == [512 * 2**i for i in range(len(hist))]
    assert len(hist) >= 2, "the target should need more than the first step"
    book, market = make_book(120, 5), build_market(cfg)
    judge = book.subset(np.unique(np.linspace(0, 119, 40).round().astype(np.int64)))
    mc = build_methods(cfg)[0]
    for count, share in hist:
        d = replace(mc, n_scenarios=count).compute(judge, market).details
        frac = float(np.mean(precision_met(d["es"], d["es_se"], 0.03)))
        assert frac == pytest.approx(share, abs=1e-12)
        assert (frac >= 0.9) == (count == n)
    expect = replace(mc, n_scenarios=n).compute(book, market)
    np.testing.assert_array_equal(_rows(df, "mc").loc[expect.account_ids, "im"], expect.im)
    data2 = json.loads(json.dumps(data))
    data2["run"]["account_block"] = 17
    data2["run"]["output"] = "out2"
    _, res2, df2 = _run(tmp_path, data2, workers=2)
    assert json.loads(Path(res2.manifest).read_text())["n_scenarios"] == n
    pd.testing.assert_frame_equal(df.reset_index(drop=True), df2.reset_index(drop=True))


@pytest.mark.parametrize("change, key", [
    (lambda d: d["methods"][0].update(params={"sampling": "qmc", "randomizations": 7}),
     "methods[0].params.randomizations"),
    (lambda d: d["methods"][0].update(params={"sampling": "sobol"}),
     "methods[0].params.sampling"),
    (lambda d: d["methods"][0].update(params={"move_cap": "off"}),
     "methods[0].params.move_cap"),
    (lambda d: d.update(liquidity={"adv": {"BTC-PERP": 10.0}, "methods": ["nope"]}),
     "liquidity.methods"),
    (lambda d: d.update(liquidity={"adv": {"BTC-PERP": -1.0}}), "liquidity.adv"),
    (lambda d: d["book"].update(orders="orders.csv"), "book.orders"),
    (lambda d: d["run"].update(precision_target=0.01, max_scenarios=100),
     "run.max_scenarios"),
    (lambda d: d["methods"].__setitem__(0, {"type": "span", "params": {
        "price_scan": 0.1, "vol_scan": 0.2, "initial_multiplier": 0.5}}),
     "methods[0].params.initial_multiplier"),
])
def test_bad_options_name_their_key(tmp_path, change, key):
    """Validation: each bad option is refused naming its key path."""
    data = _config(tmp_path, [{"type": "monte_carlo", "name": "mc"}])
    change(data)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(data, tmp_path)


def _linear_book_files(tmp: Path) -> dict:
    """A book of linear perpetuals, leverage 2x to 25x (some accounts near liquidation) and
    two accounts at 200x, already below their liquidation threshold today."""
    rng = np.random.default_rng(4)
    n = 40
    inst = pd.DataFrame({"instrument_id": ["BTC-PERP", "ETH-PERP"],
                         "type": ["linear_perp", "linear_perp"], "underlying": ["BTC", "ETH"]})
    acc = [f"a{i:02d}" for i in range(n)]
    qty = rng.choice([-1.0, 1.0], n) * rng.uniform(0.2, 2.0, n)
    pos = pd.DataFrame({"account_id": acc, "instrument_id": "BTC-PERP", "quantity": qty,
                        "entry_price": 60_000.0})
    eth = pd.DataFrame({"account_id": acc[::3], "instrument_id": "ETH-PERP",
                        "quantity": -qty[::3] * 20.0, "entry_price": 3_000.0})
    lev = rng.uniform(2.0, 25.0, n)
    lev[:2] = 200.0  # two accounts already below their liquidation threshold today
    col = pd.DataFrame({"account_id": acc, "asset": "USDT",
                        "amount": np.abs(qty) * 60_000.0 / lev})
    book = Book.from_frames(inst, pd.concat([pos, eth], ignore_index=True), col)
    book.to_files(tmp / "lin")
    return {k: str(tmp / "lin" / f"{k}.csv") for k in ("instruments", "positions",
                                                     "collateral")}


def test_liquidation_profile_in_a_run(tmp_path):
    """Oracle: liquidation_profile through the API on the whole book with the run's paths
    gives liquidation.parquet exactly (the run computes it block by block: accounts are
    judged each on its own, so the split does not matter); an account already under water
    today is reported liquidated now instead of stopping the run; law: another account block
    gives the same file; the report lists the accounts most likely to be liquidated."""
    from marginlab.models.app.runner import profile_paths
    from marginlab.models.liquidation import LiquidationRules
    from marginlab.models.liquidation_profile import liquidation_profile

    files = _linear_book_files(tmp_path)
    lp = {"maintenance": {"BTC": 0.01, "ETH": 0.02}, "n_paths": 500, "n_steps": 24,
          "quantiles": [0.1, 0.9]}
    data = _config(tmp_path, [{"type": "monte_carlo", "name": "mc"}], book=files,
                   liquidation_profile=lp, run={"report": True, "account_block": 7})
    data["scenarios"].update(underlyings=["BTC", "ETH"], corr=[[1, 0.8], [0.8, 1]],
                             params={"mu": 0.0, "sigma": [0.6, 0.75]})
    cfg, res, _ = _run(tmp_path, data)
    got = pd.read_parquet(res.liquidation)
    book = Book.from_files(files["instruments"], files["positions"], files["collateral"])
    expect = liquidation_profile(
        book, build_market(cfg), paths=profile_paths(cfg), path_assets=["BTC", "ETH"],
        rules=LiquidationRules(maintenance={"BTC": 0.01, "ETH": 0.02}, insurance_fund=np.inf),
        horizon_days=2.0, quantiles=(0.1, 0.9), below_threshold="report")
    pd.testing.assert_frame_equal(got, expect, check_dtype=False)
    assert (got["p_margin_call"] >= got["p_liquidation"]).all()
    now = got[got["account_id"].isin(["a00", "a01"])]
    assert (now["p_liquidation"] == 1.0).all() and (now["time_to_liquidation_days_q10"] == 0).all()
    later = got[~got["account_id"].isin(["a00", "a01"])]
    assert 0 < later["p_liquidation"].max() < 1
    with pytest.raises(ValueError, match="already below its liquidation threshold"):
        liquidation_profile(book, build_market(cfg), paths=profile_paths(cfg),
                            path_assets=["BTC", "ETH"], horizon_days=2.0,
                            rules=LiquidationRules(maintenance={"BTC": 0.01, "ETH": 0.02}))
    data2 = json.loads(json.dumps(data))
    data2["run"].update(account_block=40, output="out2", report=False)
    _, res2, _ = _run(tmp_path, data2)
    pd.testing.assert_frame_equal(got, pd.read_parquet(res2.liquidation))
    report = (res.folder / "report.md").read_text()
    top = got.nlargest(1, "p_liquidation")["account_id"].iloc[0]
    assert "## Liquidation risk" in report and f"| {top} |" in report


def test_vol_surfaces_and_skew_term_shocks_in_a_run(tmp_path):
    """Oracle: MonteCarloMargin through the API on a MarketState whose surfaces are built
    with VolSurface (SSVI for BTC, SVI fitted to the same chain file for ETH) and the same
    skew/term shock settings gives the run's IM to 1e-12; law: a surface different from the
    flat vol changes the options' margin. A chain file that cannot be fitted is refused
    naming market.surfaces.ETH before the output folder exists."""
    from marginlab.models.scenarios import MarketState
    from marginlab.models.vol_surface import VolSurface

    truth = VolSurface.ssvi(0.7, rho=-0.2, eta=0.8, gamma=0.5, term_slope=-0.05)
    k = np.linspace(2_000.0, 4_500.0, 15)
    chain = pd.concat([pd.DataFrame({"expiry": t, "strike": k,
                                     "implied_vol": truth.iv(k, t, 3_000.0)})
                       for t in (7 / 365, 30 / 365, 90 / 365)], ignore_index=True)
    chain.to_csv(tmp_path / "eth_chain.csv", index=False)
    surfaces = {"BTC": {"kind": "ssvi", "level": 0.6, "rho": -0.3, "eta": 1.0,
                        "term_slope": -0.1},
                "ETH": {"kind": "chain", "file": "eth_chain.csv"}}
    data = _config(tmp_path, [{"type": "monte_carlo", "name": "mc"}])
    data["market"]["surfaces"] = surfaces
    data["scenarios"].update(vol_of_vol=0.9, skew_vol=0.8, term_vol=0.25)
    cfg, _, df = _run(tmp_path, data)
    book = make_book(120, 5)
    market = MarketState(spot=SPOT, vol=VOL, surfaces={
        "BTC": VolSurface.ssvi(0.6, rho=-0.3, eta=1.0, term_slope=-0.1),
        "ETH": VolSurface.from_chain(tmp_path / "eth_chain.csv", 3_000.0)})
    mc = build_methods(cfg)[0]
    assert mc.skew_vol == 0.8 and mc.term_vol == 0.25
    expect = mc.compute(book, market)
    got = _rows(df, "mc").loc[expect.account_ids, "im"].to_numpy()
    np.testing.assert_allclose(got, expect.im, rtol=1e-12, atol=1e-9)
    flat = mc.compute(book, MarketState(spot=SPOT, vol=VOL))
    assert not np.allclose(flat.im, expect.im)

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "eth_chain.csv").write_text("expiry,strike,implied_vol\n0.1,3000,0.5\n")
    bad = json.loads(json.dumps(data))
    bad["run"]["output"] = "never"
    with pytest.raises(ValueError, match=r"market\.surfaces\.ETH"):
        run_batch(config_from_dict(bad, tmp_path / "bad"), progress=False)
    assert not (tmp_path / "bad" / "never").exists()


def test_historical_implied_vol_file(tmp_path):
    """Oracle: HistoricalMargin(prices, implied_vol=DataFrame) through the API equals the run
    whose historical method names the same price and implied-vol files."""
    from marginlab.models.margin.risk_based import HistoricalMargin

    rng = np.random.default_rng(3)
    dates = pd.date_range("2023-01-01", periods=400, freq="D")
    r = rng.standard_t(4, size=(400, 3)) * 0.02
    prices = pd.DataFrame(np.exp(np.cumsum(r, axis=0)) * np.array(list(SPOT.values())),
                          index=dates, columns=list(SPOT))
    iv = pd.DataFrame(np.exp(np.cumsum(rng.normal(0, 0.03, (400, 3)), axis=0))
                      * np.array(list(VOL.values())), index=dates, columns=list(SPOT))
    prices.to_csv(tmp_path / "prices.csv", index_label="date")
    iv.to_csv(tmp_path / "iv.csv", index_label="date")
    data = _config(tmp_path, [{"type": "historical", "name": "hs",
                               "params": {"prices": "prices.csv", "implied_vol": "iv.csv"}}])
    cfg, _, df = _run(tmp_path, data)
    book, market = make_book(120, 5), build_market(cfg)
    ref = HistoricalMargin(pd.read_csv(tmp_path / "prices.csv", index_col=0, parse_dates=True),
                           horizon_days=2, name="hs",
                           implied_vol=pd.read_csv(tmp_path / "iv.csv", index_col=0,
                                                   parse_dates=True))
    expect = ref.compute(book, market)
    np.testing.assert_allclose(_rows(df, "hs").loc[expect.account_ids, "im"], expect.im,
                               rtol=1e-12, atol=1e-9)
    plain = HistoricalMargin(prices, horizon_days=2, name="hs").compute(book, market)
    assert not np.allclose(plain.im, expect.im)


def test_basis_and_funding_factors_in_a_run(tmp_path):
    """Oracle: MonteCarloMargin(basis_vol=, basis_price_corr=) and HistoricalMargin(basis=,
    funding=) through the API give the run's IM for a calendar spread (long quarterly, short
    perpetual); law: the spread, riskless without basis factors (IM exactly 0 under Monte
    Carlo), gets a positive margin with them."""
    nan = float("nan")
    inst = pd.DataFrame({"instrument_id": ["BTC-Q", "BTC-PERP"],
                         "type": ["linear_future", "linear_perp"], "underlying": ["BTC", "BTC"],
                         "expiry": [0.25, nan]})
    pos = pd.DataFrame({"account_id": ["cal", "cal"], "instrument_id": ["BTC-Q", "BTC-PERP"],
                        "quantity": [10.0, -10.0], "entry_price": [60_000.0, 60_000.0]})
    book = Book.from_frames(inst, pos)
    book.to_files(tmp_path / "cal")
    files = {k: str(tmp_path / "cal" / f"{k}.csv") for k in ("instruments", "positions")}
    rng = np.random.default_rng(9)
    dates = pd.date_range("2023-01-01", periods=300, freq="D")
    pd.DataFrame({"BTC": 60_000.0 * np.exp(np.cumsum(rng.normal(0, 0.03, 300)))},
                 index=dates).to_csv(tmp_path / "btc.csv", index_label="date")
    pd.DataFrame({"BTC": rng.standard_t(3, 300) * 0.004}, index=dates).to_csv(
        tmp_path / "basis.csv", index_label="date")
    times = pd.date_range("2023-01-01", periods=900, freq="8h")
    pd.DataFrame({"BTC": 1e-4 + np.cumsum(rng.normal(0, 2e-5, 900))}, index=times).to_csv(
        tmp_path / "funding.csv", index_label="datetime")
    methods = [{"type": "monte_carlo", "name": "mc"},
               {"type": "historical", "name": "hs",
                "params": {"prices": "btc.csv", "basis": "basis.csv",
                           "funding": "funding.csv"}}]
    data = _config(tmp_path, methods, book=files)
    data["market"] = {"spot": {"BTC": 60_000.0}, "vol": {"BTC": 0.6}}
    data["scenarios"].update(underlyings=["BTC"], params={"mu": 0.0, "sigma": 0.6},
                             corr=None, basis_vol=0.17, basis_price_corr=0.2)
    data["scenarios"].pop("corr")
    cfg, _, df = _run(tmp_path, data)
    market = build_market(cfg)
    mc, hs = build_methods(cfg)
    assert (mc.basis_vol, mc.basis_price_corr) == (0.17, 0.2)
    got = df.set_index("method")["im"]
    assert got["mc"] == mc.compute(book, market).im[0] > 0
    assert got["hs"] == hs.compute(book, market).im[0] > 0
    no_basis = replace(mc, basis_vol=0.0).compute(book, market)
    assert no_basis.im[0] == 0.0
    bad = json.loads(json.dumps(data))
    bad["methods"][1]["params"]["basis"] = "bybit"
    with pytest.raises(ValueError, match=r"methods\[1\]\.params.*basis = 'bybit'"):
        build_methods(config_from_dict(bad, tmp_path))


@pytest.mark.parametrize("maintenance, match", [
    ({"BTC": -0.01, "ETH": 0.02}, r"liquidation_profile: .*maintenance\['BTC'\]"),
    ({"BTC": 0.01}, r"liquidation_profile\.maintenance: no rate for underlying\(s\) \['ETH'\]"),
])
def test_bad_liquidation_profile_is_refused_before_the_output(tmp_path, maintenance, match):
    """Validation: a negative maintenance rate, or none for an underlying the book holds, is
    refused naming liquidation_profile before the output folder exists (it used to fail in
    the first block, after the output folder was touched)."""
    files = _linear_book_files(tmp_path)
    data = _config(tmp_path, [{"type": "monte_carlo", "name": "mc"}], book=files,
                   liquidation_profile={"maintenance": maintenance, "n_paths": 200})
    data["scenarios"].update(underlyings=["BTC", "ETH"], corr=[[1, 0.8], [0.8, 1]],
                             params={"mu": 0.0, "sigma": [0.6, 0.75]})
    data["run"]["output"] = "never"
    with pytest.raises(ValueError, match=match):
        run_batch(config_from_dict(data, tmp_path), progress=False)
    assert not (tmp_path / "never").exists()
