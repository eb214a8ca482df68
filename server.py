"""The Starlette app: STORIS webhooks in, acknowledged once durably stored, handed to the worker.

    POST /webhooks/storis/{retailer}   202 once stored; 401 bad secret, 400 bad JSON or envelope,
                                       413 over 1 MiB, 415 not JSON, 404 unknown retailer.
                                       With ``X-Engine-Test: 1`` (``engine doctor``), an authenticated
                                       webhook is stored as "test": no jobs, nothing reaches Klaviyo
    POST /webhooks/klaviyo/{retailer}  unsubscribes from Klaviyo (system or flow webhook, see engine.consent);
                                       202 once stored; 401 unless genuine
    GET  /healthz                      the process answers
    GET  /readyz                       the store is writable and mappings are loaded
    GET  /metrics                      Prometheus text format
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine import consent, store_thread
from engine.compile import Retailer
from engine.connections import Connections
from engine.intake import Intake
from engine.metrics import CONTENT_TYPE, Metrics
from engine.paths import SCHEMAS
from engine.store import IncomingWebhook, Store
from engine.worker import Worker

MAX_BODY = 1024 * 1024
TEST_HEADER = "X-Engine-Test"
_ENVELOPE_SCHEMA = json.loads((SCHEMAS / "storis-envelope.schema.json").read_text(encoding="utf-8"))
# The same schema twice: compiled to Python for the hot path, and jsonschema to name what is wrong.
_ENVELOPE_FAST = fastjsonschema.compile(_ENVELOPE_SCHEMA)
_ENVELOPE = Draft202012Validator(_ENVELOPE_SCHEMA)
log = logging.getLogger("engine.server")


class _Rejected(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def create_app(*, store: Store, retailers: dict[str, Retailer], connections: dict[str, Connections],
               worker: Worker | None = None, metrics: Metrics | None = None,
               extra_routes: list[BaseRoute] | None = None) -> Starlette:
    """The service. With a ``worker``, it runs in the app's lifespan; without, another process works."""
    metrics = metrics or (worker.metrics if worker else Metrics())
    intake = Intake(store)

    async def storis_webhook(request: Request) -> Response:
        name = request.path_params["retailer"]
        try:
            retailer = retailers.get(name)
            if retailer is None:
                raise _Rejected(404, "unknown_retailer", f"no retailer named {name!r}")
            body = await _read_body(request)
            _authenticate(connections[name], request, body)
            envelope = _envelope(body)
        except _Rejected as exc:
            metrics.rejected.labels(exc.reason).inc()
            return JSONResponse({"error": exc.reason, "detail": str(exc)}, status_code=exc.status)
        event_type = envelope["eventType"]
        plan = retailer.webhooks.get(event_type)
        if request.headers.get(TEST_HEADER) == "1":
            # Proves the whole way in (address, signature, envelope, store) without fetching or forwarding.
            status = "test"
        else:
            status = "accepted" if plan is not None and plan.enabled else "ignored"
        entity_ids = [str(item["entityId"]) for item in envelope["data"]]
        receipt = await intake.record(IncomingWebhook(retailer=name, source="storis", event_type=event_type,
                                                      body=body, entity_ids=tuple(entity_ids), status=status))
        if status == "test":
            log.info("test webhook %s for %s stored; not processed", receipt.id, name)
        elif status == "ignored":
            metrics.ignored.labels(name).inc()
        elif not receipt.duplicate:
            metrics.received.labels(name, "storis").inc()
            if worker is not None:
                worker.wake()
        return JSONResponse({"status": status, "webhook_id": receipt.id, "duplicate": receipt.duplicate,
                             "entities": len(entity_ids)}, status_code=202)

    async def klaviyo_webhook(request: Request) -> Response:
        name = request.path_params["retailer"]
        try:
            if name not in retailers:
                raise _Rejected(404, "unknown_retailer", f"no retailer named {name!r}")
            body = await _read_body(request)
            conn = connections[name]
            if consent.is_system_webhook(request.headers):
                event_type = "klaviyo.system"
                unsubscribes = consent.verify_system(body, request.headers, conn.klaviyo_system_secret,
                                                     now=time.time())
            else:
                event_type = "klaviyo.flow"
                unsubscribes = consent.verify_flow(body, request.headers, conn.klaviyo_flow_secret)
        except (_Rejected, consent.Refused) as exc:
            metrics.rejected.labels(exc.reason).inc()
            return JSONResponse({"error": exc.reason, "detail": str(exc)}, status_code=exc.status)
        receipt, new = await store_thread.run(store.record_unsubscribes, retailer=name, event_type=event_type,
                                               body=body, unsubscribes=unsubscribes, now=time.time())
        if not receipt.duplicate:
            metrics.received.labels(name, "klaviyo").inc()
        if new and worker is not None:
            worker.wake()
        return JSONResponse({"status": "accepted", "webhook_id": receipt.id, "duplicate": receipt.duplicate,
                             "unsubscribes": len(unsubscribes), "new": new}, status_code=202)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        writable = await store_thread.run(store.is_writable)
        ready = writable and bool(retailers)
        return JSONResponse({"status": "ready" if ready else "not ready", "store_writable": writable,
                             "retailers": sorted(retailers)}, status_code=200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        counts = await store_thread.run(store.counts)
        depth = {"jobs": counts.get("jobs", {}).get("pending", 0),
                 "events": counts.get("events", {}).get("pending", 0)}
        return Response(metrics.render(lambda: depth), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if worker is None:
            yield
            return
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    routes: list[BaseRoute] = [
        Route("/webhooks/storis/{retailer}", storis_webhook, methods=["POST"]),
        Route("/webhooks/klaviyo/{retailer}", klaviyo_webhook, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _read_body(request: Request) -> bytes:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise _Rejected(415, "unsupported_media_type", "send the body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _Rejected(413, "too_large", f"body over {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Rejected(413, "too_large", f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _authenticate(conn: Connections, request: Request, body: bytes) -> None:
    presented = request.headers.get(conn.webhook_header)
    if not conn.webhook_secret or not presented:
        raise _Rejected(401, "unauthorized", f"missing or wrong {conn.webhook_header}")
    if conn.webhook_mode == "hmac_sha256":
        expected = hmac.new(conn.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        presented = presented.removeprefix("sha256=").strip().lower()
    else:
        expected = conn.webhook_secret
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise _Rejected(401, "unauthorized", f"missing or wrong {conn.webhook_header}")


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Rejected(400, "malformed_json", f"body is not JSON: {exc}") from exc
    if _passes_fast_check(envelope):
        return envelope
    error = next(iter(sorted(_ENVELOPE.iter_errors(envelope), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(envelope)"
        raise _Rejected(400, "invalid_envelope", f"{field}: {error.message}")
    return envelope


def _passes_fast_check(envelope: Any) -> bool:
    try:
        _ENVELOPE_FAST(envelope)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True
