"""``marginlab calibrate`` on several price files, written as configuration and run: the
installed command in a subprocess.

Oracles, per test: exact round trip (the TOML numbers are ``repr`` floats, so the model that
``marginlab run`` builds from the written file has bit for bit the parameters of the same
fit made in this process); the CLI contract (exit 0 and a summary row per method; bad input
exits 1 with one ``marginlab: error:`` line naming the argument); a law of the synthetic
data (two return series drawn with correlation 0.7 over 600 days give a fitted correlation
within 0.1 of it, more than 3 standard errors of (1 - rho^2) / sqrt(n) = 0.02).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marginlab.models.app.config import load_config
from marginlab.models.app.runner import build_model
from marginlab.models.calibration import fit
from marginlab.models.calibration.export import scenario_params
from marginlab.models.history import read_many, shared_data_dir


def _command() -> list[str]:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("marginlab", path=search)
    return [exe] if exe is not None else [sys.executable, "-m", "marginlab"]


def marginlab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *args], capture_output=True, text=True, timeout=900,
                          cwd=cwd)


def _prices(folder: Path, n: int = 600, rho: float = 0.7) -> dict[str, Path]:
    """Two daily close files (btc_usd.csv, eth_usd.csv) of correlated log returns."""
    rng = np.random.default_rng(11)
    z = rng.standard_normal((n, 2)) @ np.linalg.cholesky([[1.0, rho], [rho, 1.0]]).T
    r = z * np.array([0.03, 0.04])
    dates = pd.date_range("2022-01-01", periods=n + 1, freq="D").strftime("%Y-%m-%d")
    out = {}
    for j, (name, s0) in enumerate((("btc", 40_000.0), ("eth", 3_000.0))):
        p = folder / f"{name}_usd.csv"
        close = s0 * np.exp(np.r_[0.0, np.cumsum(r[:, j])])
        pd.DataFrame({"date": dates, "close": close}).to_csv(p, index=False)
        out[name.upper()] = p
    return out


@pytest.mark.parametrize("model", ["gbm", "garch"])
def test_calibrate_two_files_round_trips_into_a_run(tmp_path, model):
    """Oracle (exact round trip + CLI contract + correlation law): calibrate two CSVs with
    --output and --config; the snippet's [scenarios] builds exactly the in-process fit's
    model; the whole configuration runs (exit 0, one row per method, positive IM)."""
    files = _prices(tmp_path)
    book = marginlab("make-book", "--accounts", "40", "--underlyings", "BTC,ETH", "book",
                     cwd=tmp_path)
    assert book.returncode == 0, book.stderr
    proc = marginlab("calibrate", "btc_usd.csv", "eth_usd.csv", "--model", model,
                     "--output", "snippet.toml", "--config", "run.toml", "--book", "book",
                     "--scenarios", "1000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "BTC" in proc.stdout and "ETH" in proc.stdout and "correlation" in proc.stdout

    kw = {"dist": "t", "gjr": False} if model == "garch" else {}
    res = fit(read_many(files), model=model, **kw)
    snippet = tomllib.loads((tmp_path / "snippet.toml").read_text())
    assert set(snippet) == {"market", "scenarios"}
    name, params = scenario_params(res.model)
    assert snippet["scenarios"]["model"] == name
    assert snippet["scenarios"]["params"] == params
    assert snippet["scenarios"]["underlyings"] == ["BTC", "ETH"]
    corr = np.array(snippet["scenarios"]["corr"])
    assert abs(corr[0, 1] - 0.7) < 0.1

    cfg = load_config(tmp_path / "run.toml")
    built = build_model(cfg)
    assert type(built) is type(res.model)
    for k in params:
        if k != "dist":
            np.testing.assert_array_equal(getattr(built, k), getattr(res.model, k))
    np.testing.assert_array_equal(built.corr, res.model.corr)
    assert cfg.market.spot == {"BTC": float(read_many(files).prices[-1, 0]),
                               "ETH": float(read_many(files).prices[-1, 1])}

    run = marginlab("run", "run.toml", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = pd.read_csv(tmp_path / "marginlab-output" / "summary.csv")
    assert list(summary["method"]) == [cfg.method_name(i) for i in range(len(cfg.methods))]
    assert (summary["total_im"] > 0).all()


@pytest.mark.parametrize("args, words", [
    (("btc_usd.csv", "--config", "x.toml"), ["--config", "--book"]),
    (("btc_usd.csv", "--model", "fhs", "--output", "x.toml"), ["fhs"]),
    (("btc_usd.csv", "BTC=eth_usd.csv"), ["BTC", "NAME=FILE"]),
    (("nofile.csv",), ["nofile.csv"]),
])
def test_calibrate_bad_input_is_one_line(tmp_path, args, words):
    """Oracle (CLI contract): exit 1, one ``marginlab: error:`` line naming the problem, no
    file written."""
    _prices(tmp_path, n=50)
    proc = marginlab("calibrate", *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("marginlab: error:") and proc.stderr.count("\n") == 1
    for w in words:
        assert w in proc.stderr, proc.stderr
    assert not (tmp_path / "x.toml").exists()


def test_calibrate_shared_data_snippet_is_accepted(tmp_path):
    """Oracle (CLI contract + exact round trip) on the project's real BTC and ETH daily
    closes, when present: the GJR-GARCH-t snippet validates inside a configuration and
    builds a model whose current variance is the one written."""
    data = shared_data_dir()
    if data is None or not (data / "btc_usd_daily.csv").is_file():
        pytest.skip("shared market data not available")
    proc = marginlab("calibrate", str(data / "btc_usd_daily.csv"),
                     str(data / "eth_usd_daily.csv"), "--model", "garch", "--gjr",
                     "--output", "snippet.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "snippet.toml").read_text()
    cfg_text = text + ('\n[book]\nsynthetic_accounts = 10\n\n[[methods]]\n'
                       'type = "monte_carlo"\n')
    # the synthetic book also holds SOL: the configuration is only validated here
    (tmp_path / "run.toml").write_text(cfg_text)
    cfg = load_config(tmp_path / "run.toml")
    assert cfg.scenarios.underlyings == ["BTC", "ETH"]
    model = build_model(cfg)
    assert list(model.sigma2_0) == tomllib.loads(text)["scenarios"]["params"]["sigma2_0"]


@pytest.mark.parametrize("model", ["gbm", "ewma", "merton", "garch"])
def test_written_sections_build_the_fitted_model(tmp_path, model):
    """Oracle (exact round trip): the [market]/[scenarios] TOML of a joint fit, read back
    and validated as a configuration, builds a model of the same class whose every written
    parameter and correlation equal the fitted model's bit for bit; market.vol is the
    fitted annualised volatility (positive)."""
    import warnings

    from marginlab.models.app import _toml
    from marginlab.models.app.config import config_from_dict
    from marginlab.models.calibration.export import market_section, scenarios_section

    hist = read_many(_prices(tmp_path, n=400))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(hist, model=model)
    data = {"book": {"synthetic_accounts": 10},
            "market": market_section({"BTC": 1.0, "ETH": 1.0, "SOL": 1.0}, res),
            "scenarios": scenarios_section(res, n_scenarios=500),
            "methods": [{"type": "monte_carlo"}]}
    cfg = config_from_dict(tomllib.loads(_toml.dumps(data)), tmp_path)
    built = build_model(cfg)
    assert type(built) is type(res.model)
    for k, v in cfg.scenarios.params.items():
        if k != "dist":
            np.testing.assert_array_equal(getattr(built, k), getattr(res.model, k), err_msg=k)
            np.testing.assert_array_equal(np.ravel(v), np.ravel(getattr(res.model, k)))
    np.testing.assert_array_equal(built.corr, res.model.corr)
    assert all(v > 0 for v in cfg.market.vol.values())


def test_fhs_is_refused_for_a_configuration():
    """Oracle (documented limit): bootstrapped residuals have no configuration form, so
    exporting an FHS model raises ValueError naming fhs and the alternatives."""
    from marginlab.models import GARCH, Bootstrap

    rng = np.random.default_rng(0)
    model = GARCH(omega=1e-5, alpha=0.05, beta=0.9, sigma2_0=1e-4,
                  dist=Bootstrap(rng.standard_normal((50, 1))))
    with pytest.raises(ValueError, match="fhs.*garch.*historical"):
        scenario_params(model)
