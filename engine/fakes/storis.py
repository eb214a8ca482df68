"""A fake STORIS API serving records from a folder of Detail responses, with STORIS's token auth and wrapped
answers, plus ``/_`` routes to inspect and steer it. Routes are relative: mount it anywhere.

    create_app(records_dir=..., client_id="demo", client_secret="demo-secret", token_ttl_seconds=None)
    python -m engine.fakes.storis --records DIR --port 8802

Every ``*.json`` under ``records_dir`` is a Detail response; its ``data.orders``, ``data.fulfillments``,
``data.customers`` and ``data.products`` records are served by ``id``. A customer is also found through the
``customer`` object embedded in orders and fulfillments.

    POST /api/authenticate                  HTTP Basic client id and secret -> bearer token
    GET  /api/Orders/Detail?OrderIds=       (also Fulfillments/FulfillmentIds, Customers/CustomerIds,
                                             Products/ProductIds); unknown ids are simply absent
    PUT  /api/Customers/Update              any JSON (POST too); applies ``okToSolicit`` to every copy of the
                                            customer named by customerId/id, 404 when no customer has that id
    POST /api/Customers/Search              {"emailAddress"}: matching customers, ignoring case
    GET, POST /api/Webhooks/Subscriptions   list, or create {"eventType", "url"} (idempotent)

Inspection and control, no auth: ``GET /_requests`` (every non-GET API request: t, method, path, body,
status), ``POST /_fail`` (see engine.fakes.common), ``POST /_control`` ({"revoke_tokens": true},
{"events_enabled": false}), ``POST /_reset`` (back to the records as loaded, no tokens, no subscriptions).

All state lives in one ``_State`` per app; handlers touch it only between awaits, on one event loop.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.errors import ConfigError
from engine.fakes.common import BadRequest, FailureSwitch, fail_endpoint, parse_json, relative_path

__all__ = ["create_app", "load_records", "main"]

# Detail endpoint -> (query parameter, collection in data)
DETAILS = {
    "Orders": ("OrderIds", "orders"),
    "Fulfillments": ("FulfillmentIds", "fulfillments"),
    "Customers": ("CustomerIds", "customers"),
    "Products": ("ProductIds", "products"),
}
EVENTS_DISABLED = "Webhook events are not enabled for this account. Contact STORIS support."
# ASP.NET Web API's own answer to a missing or bad bearer token.
DENIED = "Authorization has been denied for this request."

Records = dict[str, dict[str, dict[str, Any]]]


def load_records(records_dir: Path) -> Records:
    """Every record under ``records_dir`` by collection and id; ConfigError names a file that does not fit."""
    if not records_dir.is_dir():
        raise ConfigError(f"records_dir: {records_dir} is not a folder")
    records: Records = {collection: {} for _, collection in DETAILS.values()}
    origin: dict[tuple[str, str], Path] = {}
    for path in sorted(records_dir.rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not readable JSON ({exc})") from exc
        data = document.get("data") if isinstance(document, dict) else None
        found = [c for c in records if isinstance(data, dict) and isinstance(data.get(c), list)]
        if not found:
            raise ConfigError(f"{path}: not a STORIS Detail response "
                              "(no data.orders, data.fulfillments, data.customers or data.products list)")
        for collection in found:
            for i, record in enumerate(data[collection]):
                if not isinstance(record, dict) or record.get("id") in (None, ""):
                    raise ConfigError(f"{path}: data.{collection}[{i}] has no id")
                record_id = str(record["id"])
                if (collection, record_id) in origin:
                    raise ConfigError(f"{path}: data.{collection}[{i}] repeats id {record_id!r} "
                                      f"from {origin[collection, record_id]}")
                origin[collection, record_id] = path
                records[collection][record_id] = record
    return records


class _State:
    """Everything one fake STORIS app remembers."""

    def __init__(self, records: Records, client_id: str, client_secret: str, token_ttl: float | None) -> None:
        self.initial = records
        self.credentials = (client_id, client_secret)
        self.token_ttl = token_ttl
        self.failures = FailureSwitch()
        self.reset()

    def reset(self) -> None:
        self.records = copy.deepcopy(self.initial)
        # Every copy of each customer, the customers file's first, so an update reaches them all.
        self.customers: dict[str, list[dict[str, Any]]] = {}
        embedded = [r.get("customer") for c in ("orders", "fulfillments") for r in self.records[c].values()]
        for customer in [*self.records["customers"].values(), *embedded]:
            if isinstance(customer, dict) and customer.get("id") not in (None, ""):
                self.customers.setdefault(str(customer["id"]), []).append(customer)
        self.tokens: dict[str, float | None] = {}
        self.subscriptions: list[dict[str, Any]] = []
        self.events_enabled = True
        self.requests: list[dict[str, Any]] = []
        self.failures.clear()

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = None if self.token_ttl is None else time.monotonic() + self.token_ttl
        return token

    def token_valid(self, token: str) -> bool:
        if token not in self.tokens:
            return False
        expires = self.tokens[token]
        return expires is None or time.monotonic() < expires

    def find(self, collection: str, record_id: str) -> dict[str, Any] | None:
        if collection == "customers":
            copies = self.customers.get(record_id)
            return copies[0] if copies else None
        return self.records[collection].get(record_id)


def create_app(*, records_dir: Path, client_id: str = "demo", client_secret: str = "demo-secret",
               token_ttl_seconds: float | None = None) -> Starlette:
    """A fake STORIS serving the Detail responses in ``records_dir``; tokens expire after ``token_ttl_seconds``."""
    state = _State(load_records(Path(records_dir)), client_id, client_secret, token_ttl_seconds)

    def api(path: str, handler: Callable[[_State, Request], Awaitable[Response]], methods: list[str],
            *, public: bool = False) -> Route:
        return Route(path, _api_endpoint(state, handler, public=public), methods=methods)

    routes = [
        api("/api/authenticate", _authenticate, ["POST"], public=True),
        *(api(f"/api/{name}/Detail", _detail(param, collection), ["GET"])
          for name, (param, collection) in DETAILS.items()),
        api("/api/Customers/Update", _update_customer, ["PUT", "POST"]),
        api("/api/Customers/Search", _search_customers, ["POST"]),
        api("/api/Webhooks/Subscriptions", _subscriptions, ["GET", "POST"]),
    ]

    async def requests(request: Request) -> Response:
        return JSONResponse(state.requests)

    async def control(request: Request) -> Response:
        try:
            _control(state, parse_json(await request.body()))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"events_enabled": state.events_enabled, "tokens": len(state.tokens)})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    routes += [
        Route("/_requests", requests, methods=["GET"]),
        Route("/_fail", fail_endpoint(state.failures), methods=["POST"]),
        Route("/_control", control, methods=["POST"]),
        Route("/_reset", reset, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})


def _api_endpoint(state: _State, handler: Callable[[_State, Request], Awaitable[Response]],
                  *, public: bool) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        entry: dict[str, Any] = {"t": time.time(), "method": request.method, "path": relative_path(request.scope),
                                 "body": None, "status": None}
        # Read before any failure delay: a client that gives up meanwhile has still sent it.
        raw = await request.body()
        if request.method != "GET":
            try:
                entry["body"] = parse_json(raw) if raw else None
            except BadRequest:
                entry["body"] = raw.decode("utf-8", "replace")
            # Logged on arrival, so the log is in arrival order even when a slow answer finishes last.
            state.requests.append(entry)
        response = await _answer(state, handler, request, public=public)
        entry["status"] = response.status_code
        return response
    return endpoint


async def _answer(state: _State, handler: Callable[[_State, Request], Awaitable[Response]], request: Request,
                  *, public: bool) -> Response:
    failure = state.failures.take()
    if failure is not None:
        failed = await failure.respond(_status_error)
        if failed is not None:
            return failed
    if not public:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not state.token_valid(token.strip()):
            return _fail(401, DENIED, headers={"WWW-Authenticate": "Bearer"})
    try:
        return await handler(state, request)
    except BadRequest as exc:
        return _fail(400, str(exc))


async def _authenticate(state: _State, request: Request) -> Response:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        client_id, secret = "", ""
    expected_id, expected_secret = state.credentials
    matches = (secrets.compare_digest(client_id.encode(), expected_id.encode())
               & secrets.compare_digest(secret.encode(), expected_secret.encode()))
    if scheme.lower() != "basic" or not matches:
        return _fail(401, "Invalid client credentials")
    return JSONResponse({"success": True, "message": None, "token": {
        # STORIS states the lifetime in days, whatever the server actually enforces.
        "access_token": state.issue_token(), "expires_in": 1, "token_type": "Bearer"}})


def _detail(param: str, collection: str) -> Callable[[_State, Request], Awaitable[Response]]:
    async def handler(state: _State, request: Request) -> Response:
        # ASP.NET binds query parameters ignoring case.
        ids = [value for name, value in request.query_params.multi_items() if name.lower() == param.lower()]
        if not ids:
            raise BadRequest(f"{param} is required")
        found = [record for record in (state.find(collection, i) for i in dict.fromkeys(ids)) if record is not None]
        return _ok({collection: found})
    return handler


async def _update_customer(state: _State, request: Request) -> Response:
    body = parse_json(await request.body())
    customer_id = next((str(body[k]) for k in ("customerId", "CustomerId", "id") if isinstance(body, dict)
                        and body.get(k) not in (None, "")), None)
    if customer_id is not None and customer_id not in state.customers:
        return _fail(404, f"Customer {customer_id} was not found")
    copies = state.customers.get(customer_id or "", [])
    if isinstance(body, dict) and isinstance(body.get("okToSolicit"), bool):
        for customer in copies:
            customer["okToSolicit"] = body["okToSolicit"]
    return _ok({"customers": copies[:1]})


async def _search_customers(state: _State, request: Request) -> Response:
    body = parse_json(await request.body())
    wanted = body.get("emailAddress") if isinstance(body, dict) else None
    if not isinstance(wanted, str) or not wanted.strip():
        # Any JSON is accepted; a search without an email address simply finds no one.
        return _ok({"customers": []})
    wanted = wanted.strip().casefold()
    found = [copies[0] for copies in state.customers.values()
             if any(str(c.get("emailAddress") or "").strip().casefold() == wanted for c in copies)]
    return _ok({"customers": found})


async def _subscriptions(state: _State, request: Request) -> Response:
    if not state.events_enabled:
        return _fail(403, EVENTS_DISABLED)
    if request.method == "GET":
        return _ok({"subscriptions": state.subscriptions})
    body = parse_json(await request.body())
    event_type = body.get("eventType") if isinstance(body, dict) else None
    url = body.get("url") if isinstance(body, dict) else None
    if not (isinstance(event_type, str) and event_type and isinstance(url, str) and url):
        raise BadRequest("eventType and url are required")
    for subscription in state.subscriptions:
        if subscription["eventType"] == event_type and subscription["url"] == url:
            return _ok({"subscription": subscription})
    subscription = {"id": f"WS-{len(state.subscriptions) + 1:04d}", "eventType": event_type, "url": url,
                    "status": "Active"}
    state.subscriptions.append(subscription)
    return _ok({"subscription": subscription})


def _control(state: _State, body: object) -> None:
    if not isinstance(body, dict) or not body:
        raise BadRequest("expected a JSON object with revoke_tokens and/or events_enabled")
    unknown = sorted(set(body) - {"revoke_tokens", "events_enabled"})
    if unknown:
        raise BadRequest(f"unknown keys {unknown}; allowed: revoke_tokens, events_enabled")
    for name, value in body.items():
        if not isinstance(value, bool):
            raise BadRequest(f"{name}: expected true or false, got {value!r}")
    if body.get("revoke_tokens"):
        state.tokens.clear()
    if "events_enabled" in body:
        state.events_enabled = body["events_enabled"]


def _ok(data: dict[str, Any]) -> Response:
    return JSONResponse({"success": True, "message": None, "transactionId": str(uuid.uuid4()), "data": data})


def _fail(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"success": False, "message": message}, status_code=status, headers=headers)


def _status_error(status: int, retry_after: int | None) -> Response:
    """The answer for a bare status set by the failure switch."""
    return _fail(status, f"{status} {HTTPStatus(status).phrase}")


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _fail(status, HTTPStatus(status).phrase)


def main(argv: list[str] | None = None) -> None:
    """Run the fake STORIS standalone under uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m engine.fakes.storis",
                                     description="Run the fake STORIS API under uvicorn.")
    parser.add_argument("--records", type=Path, required=True, help="folder of STORIS Detail responses (*.json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8802)
    parser.add_argument("--client-id", default="demo")
    parser.add_argument("--client-secret", default="demo-secret")
    parser.add_argument("--token-ttl", type=float, default=None, help="seconds before a token stops working")
    args = parser.parse_args(argv)
    try:
        app = create_app(records_dir=args.records, client_id=args.client_id, client_secret=args.client_secret,
                         token_ttl_seconds=args.token_ttl)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
