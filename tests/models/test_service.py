"""The margin engine's HTTP service: a real uvicorn server process on a loopback port and a real
HTTP client (httpx).

Oracles: an in-process engine built with the same arguments (``build_engine``) answering the
same calls (JSON floats round-trip exactly); the set of states an account can be in between
serialised writes (readers must only ever see one of them); the service's contract (401
without the token, 4xx with a message for every malformed request, nothing half-applied).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from marginlab.models.app.service import build_engine  # noqa: E402

TOKEN = "test-token-0123456789"
ARGS = dict(accounts=40, seed=4, scenarios=1_000)
_EXE = shutil.which("marginlab")
SERVE = [_EXE] if _EXE else [sys.executable, "-m", "marginlab.models.app.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = dict(os.environ, MARGINLAB_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [*SERVE, "serve", "--accounts", str(ARGS["accounts"]), "--seed",
         str(ARGS["seed"]), "--scenarios", str(ARGS["scenarios"]), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240.0
    try:
        while True:  # bounded: the deadline above
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 240 s")
            time.sleep(0.25)
        with httpx.Client(base_url=url, timeout=30.0) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def oracle():
    return build_engine(**ARGS)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _instrument(eng, j=0):
    inst = eng._instruments
    ok = inst.loc[inst["type"] != "inverse_option", "instrument_id"]
    return str(ok.iloc[j])


def test_health_margin_and_what_if_equal_the_in_process_engine(server, oracle):
    """Oracle: the in-process engine built with the same arguments."""
    h = server.get("/health").json()
    assert h["status"] == "ok" and h["accounts"] == ARGS["accounts"] and h["tick"] == 0
    acc = str(oracle.account_ids[3])
    m = server.get(f"/accounts/{acc}/margin").json()
    want = oracle.margin(acc)
    for k in ("im", "mm", "margin_balance", "es", "var", "es_se"):
        assert m[k] == want[k], k
    inst = _instrument(oracle)
    r = server.post("/what-if", json={"account_id": acc,
                                      "trades": [{"instrument_id": inst, "quantity": 2.5}]})
    assert r.status_code == 200, r.text
    w = oracle.what_if(acc, [(inst, 2.5)]).to_dict()
    assert r.json()["after"] == w["after"] and r.json()["before"] == w["before"]
    assert r.json()["contributions"][0]["es_contribution"] == w["contributions"][0][
        "es_contribution"]


def test_state_changes_need_the_bearer_token(server, oracle):
    """Contract: POSTs that change state without / with a wrong token get 401 and change
    nothing."""
    acc = str(oracle.account_ids[5])
    before = server.get(f"/accounts/{acc}/margin").json()
    body = {"trades": [{"account_id": acc, "instrument_id": _instrument(oracle),
                        "quantity": 1.0}]}
    for headers in ({}, {"Authorization": "Bearer wrong-token-xxxxxxxx"},
                    {"Authorization": TOKEN}):
        assert server.post("/trades", json=body, headers=headers).status_code == 401
        assert server.post("/market", json={"prices": {"BTC": 1.0}},
                           headers=headers).status_code == 401
        assert server.post("/collateral", json={"account_id": acc, "asset": "USDT",
                                                "amount": 1.0, "action": "deposit"},
                           headers=headers).status_code == 401
    assert server.get(f"/accounts/{acc}/margin").json() == before
    assert server.get("/health").json()["tick"] == 0


def test_malformed_requests_get_4xx_with_a_message_and_change_nothing(server, oracle):
    """Contract: malformed JSON, schema violations, non-finite numbers, unknown ids and values
    the engine refuses are 4xx with a 'detail'; a batch with one bad trade is not applied."""
    acc = str(oracle.account_ids[7])
    inst = _instrument(oracle)
    before = server.get(f"/accounts/{acc}/margin").json()
    raw = {"content-type": "application/json", **AUTH}
    cases = [
        ("/trades", b"{not json", 422),
        ("/trades", b'{"trades": [{"account_id": "x", "instrument_id": "y", '
                    b'"quantity": NaN}]}', 422),
        ("/trades", json.dumps({"trades": []}).encode(), 422),
        ("/trades", json.dumps({"trades": [{"account_id": acc, "instrument_id": inst}]})
         .encode(), 422),
        ("/trades", json.dumps({"trades": [{"account_id": acc, "instrument_id": inst,
                                            "quantity": 1, "colour": "red"}]}).encode(), 422),
        ("/trades", json.dumps({"trades": [
            {"account_id": acc, "instrument_id": inst, "quantity": 1.0},
            {"account_id": acc, "instrument_id": "NO-SUCH", "quantity": 1.0}]}).encode(), 400),
        ("/what-if", json.dumps({"account_id": "nobody", "trades": [
            {"instrument_id": inst, "quantity": 1.0}]}).encode(), 404),
        ("/what-if", json.dumps({"account_id": acc, "trades": [
            {"instrument_id": inst, "quantity": 1.0, "price": -3}]}).encode(), 422),
        ("/collateral", json.dumps({"account_id": acc, "asset": "USDT", "amount": 1e12,
                                    "action": "withdraw"}).encode(), 400),
        ("/collateral", json.dumps({"account_id": acc, "asset": "USDT", "amount": 1.0,
                                    "action": "steal"}).encode(), 422),
        ("/market", json.dumps({"prices": {"BTC": -5.0}}).encode(), 400),
        ("/market", json.dumps({"prices": "BTC"}).encode(), 422),
    ]
    for path, body, status in cases:
        r = server.post(path, content=body, headers=raw)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        assert r.json()["detail"], (path, body)
    assert server.get("/accounts/nobody/margin").status_code == 404
    assert server.get(f"/accounts/{acc}/margin").json() == before
    assert server.get("/health").json()["tick"] == 0


def test_concurrent_writers_are_serialised(server, oracle):
    """Oracle: the in-process engine applying the same trades one at a time gives the states
    an account can be in; concurrent readers only ever see one of them, and the final state
    is the last one (bit for bit)."""
    acc = str(oracle.account_ids[11])
    inst = _instrument(oracle, 1)
    n_writers, per_writer = 6, 5
    states = {oracle.margin(acc)["im"]}
    for _ in range(n_writers * per_writer):
        oracle.apply([{"account_id": acc, "instrument_id": inst, "quantity": 1.0}])
        states.add(oracle.margin(acc)["im"])
    final = oracle.margin(acc)
    url = str(server.base_url)
    errors: list[str] = []
    seen: list[float] = []
    stop = threading.Event()

    def writer():
        with httpx.Client(base_url=url, timeout=30.0) as c:
            for _ in range(per_writer):
                r = c.post("/trades", headers=AUTH, json={"trades": [
                    {"account_id": acc, "instrument_id": inst, "quantity": 1.0}]})
                if r.status_code != 200:
                    errors.append(r.text)

    def reader():
        with httpx.Client(base_url=url, timeout=30.0) as c:
            for _ in range(200):  # bounded
                if stop.is_set():
                    break
                r = c.get(f"/accounts/{acc}/margin")
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    seen.append(r.json()["im"])

    threads = [threading.Thread(target=writer) for _ in range(n_writers)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert seen and set(seen) <= states
    got = server.get(f"/accounts/{acc}/margin").json()
    for k in ("im", "mm", "es", "margin_balance"):
        assert got[k] == final[k], k


def test_market_update_and_collateral_equal_the_in_process_engine(server, oracle):
    """Oracle: the in-process engine given the same market update and deposit."""
    body = {"prices": {"BTC": 0.95 * oracle.market.spot["BTC"]}, "full": True}
    r = server.post("/market", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    upd = oracle.update_market(body["prices"], full=True)
    assert r.json()["full"] and r.json()["tick"] == upd.tick == 1
    acc = str(oracle.account_ids[2])
    r = server.post("/collateral", headers=AUTH, json={"account_id": acc, "asset": "USDT",
                                                       "amount": 5000.0, "action": "deposit"})
    assert r.status_code == 200, r.text
    oracle.deposit(acc, "USDT", 5000.0)
    want = oracle.margin(acc)
    for k in ("im", "es", "margin_balance"):
        assert r.json()["margin"][k] == want[k], k


def test_orders_placed_and_cancelled_over_http_equal_the_in_process_engine(server, oracle):
    """Oracle: the in-process engine given the same place_order / cancel_order; contract:
    401 without the token, 400 for a bad side, 404 for an unknown order id."""
    acc = str(oracle.account_ids[9])
    inst = _instrument(oracle, 1)
    body = {"account_id": acc, "instrument_id": inst, "side": "sell", "quantity": 4.0}
    assert server.post("/orders", json=body).status_code == 401
    r = server.post("/orders", json={**body, "side": "hold"}, headers=AUTH)
    assert r.status_code == 400 and "side" in r.json()["detail"]
    r = server.post("/orders", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    oid, _ = oracle.place_order(acc, inst, "sell", 4.0)
    assert r.json()["order_id"] == oid
    for k in ("im", "es", "margin_balance"):
        assert r.json()["margin"][k] == oracle.margin(acc)[k], k
    assert server.get("/health").json()["orders"] == 1
    assert server.delete(f"/orders/{oid}").status_code == 401
    r = server.delete(f"/orders/{oid}", headers=AUTH)
    assert r.status_code == 200, r.text
    oracle.cancel_order(oid)
    assert server.get(f"/accounts/{acc}/margin").json()["im"] == oracle.margin(acc)["im"]
    assert server.delete(f"/orders/{oid}", headers=AUTH).status_code == 404
