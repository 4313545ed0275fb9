"""The live margin engine behind a small HTTP JSON API (FastAPI, served by uvicorn).

Endpoints (JSON in and out, amounts in USD):

* ``GET /health``: status, accounts, tick, scenarios.
* ``GET /accounts/{account_id}/margin``: the account's IM, MM, margin balance, excess, margin
  ratio, status and risk numbers.
* ``POST /what-if`` ``{"account_id": ..., "trades": [{"instrument_id", "quantity",
  "price"?}]}``: margin before and after, the trades' Euler contributions; changes nothing.
* ``POST /trades`` ``{"trades": [{"account_id", "instrument_id", "quantity", "price"?}]}``:
  apply trades; returns the margin events.
* ``POST /collateral`` ``{"account_id", "asset", "amount", "action": "deposit"|"withdraw"}``.
* ``POST /market`` ``{"prices": {...}, "vols"?: {...}, "time"?: ..., "full"?: bool}``:
  a market update; returns whether a full re-margin ran and the events.
* ``POST /orders`` ``{"account_id", "instrument_id", "side": "buy"|"sell", "quantity",
  "price"?}``: rest a limit order (margined as the riskier side filling); returns its
  ``order_id``, the account's margin and the events. ``DELETE /orders/{order_id}`` cancels it.

Every call that changes state needs ``Authorization: Bearer <token>`` (401 otherwise). Every
request is validated: a malformed one gets a 4xx with a message (422 for a body that is not
valid JSON or does not match the schema, 400 for a value the engine refuses, 404 for an unknown
account), never a 500, and a refused request changes nothing (the engine validates a whole
batch before applying any of it). The engine's lock serialises the calls, so concurrent
requests never see a half-updated account. The server binds 127.0.0.1 unless told otherwise.

Needs the ``service`` extra: ``pip install marginlab[service]`` (fastapi, uvicorn).
"""

# No ``from __future__ import annotations``: FastAPI reads the request models of the
# endpoints (classes local to create_app) from the annotations at runtime.
import argparse
import hmac
import math
import os
import secrets
import sys
from typing import Any

from ..engine.engine import MarginEngine

__all__ = ["create_app", "add_serve_parser", "serve_command", "build_engine"]

MAX_TRADES = 10_000


def _require() -> Any:
    try:
        import fastapi
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("the margin service needs FastAPI and uvicorn: "
                          "pip install 'marginlab[service]'") from exc
    return fastapi


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become None, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str | bytes):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "isoformat"):
        return x.isoformat()
    return x


def create_app(engine: MarginEngine, token: str) -> Any:
    """A FastAPI app serving ``engine``; state-changing calls need the bearer ``token``."""
    fastapi = _require()
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    if not isinstance(token, str) or len(token) < 8:
        raise ValueError("token must be a string of at least 8 characters")
    expected = token.encode()

    class _Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    class Trade(_Strict):
        instrument_id: str = Field(min_length=1, max_length=200)
        quantity: float
        price: float | None = Field(default=None, gt=0)

    class AccountTrade(Trade):
        account_id: str = Field(min_length=1, max_length=200)

    class WhatIfRequest(_Strict):
        account_id: str = Field(min_length=1, max_length=200)
        trades: list[Trade] = Field(min_length=1, max_length=MAX_TRADES)

    class TradesRequest(_Strict):
        trades: list[AccountTrade] = Field(min_length=1, max_length=MAX_TRADES)

    class CollateralRequest(_Strict):
        account_id: str = Field(min_length=1, max_length=200)
        asset: str = Field(min_length=1, max_length=20)
        amount: float = Field(ge=0)
        action: str = Field(pattern="^(deposit|withdraw)$")

    class OrderRequest(_Strict):
        account_id: str = Field(min_length=1, max_length=200)
        instrument_id: str = Field(min_length=1, max_length=200)
        side: str = Field(min_length=1, max_length=10)
        quantity: float = Field(gt=0)
        price: float | None = Field(default=None, gt=0)

    class MarketRequest(_Strict):
        prices: dict[str, float] = Field(min_length=1, max_length=1000)
        vols: dict[str, float] | None = None
        time: float | None = None
        full: bool | None = None

    def authorise(request: Request) -> None:
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 expected):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="marginlab margin engine", version="1",
                  description="What-if margin, trades, collateral and market updates.")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):  # noqa: ARG001
        # The offending input is left out: it may not be JSON (NaN, a broken body).
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(KeyError)
    async def _not_found(request, exc):  # noqa: ARG001 - FastAPI's handler signature
        return JSONResponse(status_code=404, content={"detail": str(exc.args[0]) if exc.args
                                                      else "not found"})

    @app.exception_handler(ValueError)
    async def _bad_value(request, exc):  # noqa: ARG001
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(TypeError)
    async def _bad_type(request, exc):  # noqa: ARG001
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    def events(evs) -> list[dict[str, Any]]:
        return [_clean(e.to_dict()) for e in evs]

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "accounts": len(engine.account_ids), "tick": engine.tick,
                "scenarios": (None if engine.scenarios is None
                              else engine.scenarios.n_scenarios),
                "measure": engine.measure, "level": _clean(engine.level),
                "orders": len(engine.orders)}

    @app.get("/accounts/{account_id}/margin")
    def margin(account_id: str) -> dict[str, Any]:
        return _clean(engine.margin(account_id))

    @app.post("/what-if")
    def what_if(req: WhatIfRequest) -> dict[str, Any]:
        trades = [(t.instrument_id, t.quantity, t.price) for t in req.trades]
        return _clean(engine.what_if(req.account_id, trades).to_dict())

    @app.post("/trades", dependencies=[Depends(authorise)])
    def trades(req: TradesRequest) -> dict[str, Any]:
        rows = [t.model_dump() for t in req.trades]
        return {"applied": len(rows), "events": events(engine.apply(rows))}

    @app.post("/collateral", dependencies=[Depends(authorise)])
    def collateral(req: CollateralRequest) -> dict[str, Any]:
        if req.action == "deposit":
            evs = engine.deposit(req.account_id, req.asset, req.amount)
        else:
            evs = engine.withdraw(req.account_id, req.asset, req.amount)
        return {"margin": _clean(engine.margin(req.account_id)), "events": events(evs)}

    @app.post("/market", dependencies=[Depends(authorise)])
    def market(req: MarketRequest) -> dict[str, Any]:
        upd = engine.update_market(req.prices, req.vols, time=req.time, full=req.full)
        return {"tick": upd.tick, "full": upd.full, "n_exact": upd.n_exact,
                "events": events(upd.events)}

    @app.post("/orders", dependencies=[Depends(authorise)])
    def place_order(req: OrderRequest) -> dict[str, Any]:
        oid, evs = engine.place_order(req.account_id, req.instrument_id, req.side,
                                      req.quantity, req.price)
        return {"order_id": oid, "margin": _clean(engine.margin(req.account_id)),
                "events": events(evs)}

    @app.delete("/orders/{order_id}", dependencies=[Depends(authorise)])
    def cancel_order(order_id: int) -> dict[str, Any]:
        return {"cancelled": order_id, "events": events(engine.cancel_order(order_id))}

    app.state.engine = engine
    app.state.fastapi_version = fastapi.__version__
    return app


# ============================================================================ CLI
def build_engine(accounts: int, *, seed: int = 0, scenarios: int = 10_000,
                 level: float = 0.99, book: str | None = None) -> MarginEngine:
    """The engine ``marginlab serve`` runs: a book (files in folder ``book``, or a synthetic
    ``make_book(accounts, seed)``) at ``default_market()``, Monte Carlo ES at ``level`` on
    correlated GBM at the market's implied vols."""
    import numpy as np

    from ..book import Book
    from ..margin import MonteCarloMargin
    from ..market import GBM
    from ..scenarios import MarketState
    from ..synthetic import default_market, make_book

    if book:
        from pathlib import Path

        folder = Path(book)

        def find(stem: str, required: bool = True):
            for ext in ("csv", "parquet"):
                if (folder / f"{stem}.{ext}").exists():
                    return folder / f"{stem}.{ext}"
            if required:
                raise ValueError(f"--book: {folder} has no {stem}.csv or {stem}.parquet")
            return None

        bk = Book.from_files(find("instruments"), find("positions"), find("collateral", False),
                             orders=find("orders", False))
    else:
        if not isinstance(accounts, int) or accounts < 1:
            raise ValueError(f"--accounts must be an integer >= 1, got {accounts!r}")
        bk = make_book(accounts, seed=seed)
    und = tuple(bk.underlyings)
    snap = default_market(und)
    market = MarketState(spot=snap["spot"], vol=snap["vol"])
    n = len(und)
    corr = np.full((n, n), 0.7) + 0.3 * np.eye(n)
    mc = MonteCarloMargin(GBM(0.0, [snap["vol"][u] for u in und], corr=corr), und,
                          level=level, n_scenarios=scenarios, seed=seed)
    return MarginEngine(bk, market, mc, assets=("USDT", "USDC"))


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand (handler :func:`serve_command`)."""
    p = subparsers.add_parser(
        "serve", help="serve the live margin engine over HTTP (loopback by default)",
        description="Build the margin engine for a book and serve what-if, account margin, "
        "trades, collateral and market updates as a JSON API (FastAPI + uvicorn). Calls that "
        "change state need 'Authorization: Bearer TOKEN'; the token is read from "
        "--token-file or the MARGINLAB_TOKEN environment variable, else generated and "
        "printed to stderr.")
    p.add_argument("--book", help="folder with instruments/positions/collateral files "
                   "(default: a synthetic book, see --accounts)")
    p.add_argument("--accounts", type=int, default=1000, help="synthetic book size")
    p.add_argument("--seed", type=int, default=0, help="seed of the book and scenarios")
    p.add_argument("--scenarios", type=int, default=10_000, help="Monte Carlo scenarios")
    p.add_argument("--level", type=float, default=0.99, help="ES level (default 0.99)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token-file", help="file holding the bearer token")
    p.set_defaults(func=serve_command)
    return p


def serve_command(args: argparse.Namespace) -> int:
    """Run ``marginlab serve``; returns the exit code when the server stops."""
    _require()
    import uvicorn

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if args.token_file:
        with open(args.token_file) as fh:
            token = fh.read().strip()
    else:
        token = os.environ.get("MARGINLAB_TOKEN", "")
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"marginlab serve: bearer token {token}", file=sys.stderr, flush=True)
    engine = build_engine(args.accounts, seed=args.seed, scenarios=args.scenarios,
                          level=args.level, book=args.book)
    app = create_app(engine, token)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning",
                access_log=False)
    return 0
