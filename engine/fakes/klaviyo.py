"""A fake Klaviyo API: the endpoints the project uses, with Klaviyo's auth, scopes, validation, rate limits,
dedup and error shapes, plus ``/_`` routes to inspect and steer it. Routes are relative: mount it anywhere.

    create_app(keys=None, limits=None, lists=None) -> Starlette
    python -m engine.fakes.klaviyo --host 127.0.0.1 --port 8801

API routes (``Authorization: Klaviyo-API-Key <key>`` and a ``revision`` header required):

    POST /api/events                                  events:write           202, empty body
    POST /api/event-bulk-create-jobs                  events:write           202, job resource
    POST /api/profile-subscription-bulk-create-jobs   lists:write, profiles:write, subscriptions:write   202
    GET  /api/accounts                                accounts:read
    GET  /api/lists/{id}                              lists:read
    GET  /api/profiles/{id}                           profiles:read

A request meets, in order: the failure switch, the key (401), the revision header (400), the rate limit (429),
the scopes (403), then the body (400). Scopes come before the body, so a deliberately invalid body answers 400
exactly when the key holds the scopes, and creates nothing: clients probe a key's scopes that way.

Inspection, no auth: ``GET /_received`` (accepted events as Create Event bodies), ``/_profiles``,
``/_subscriptions``, ``/_requests`` (API requests: t, method, path, status, last 4 characters of the key);
``POST /_fail`` (see engine.fakes.common), ``POST /_reset``.

All state lives in one ``_State`` per app. Handlers are coroutines that touch state only between awaits, on
the server's one event loop, so no lock is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import klaviyo_schema
from engine.fakes.common import BadRequest, FailureSwitch, fail_endpoint, parse_json, relative_path
from engine.fakes.klaviyo_profiles import Profiles, has_identifier, identity
from engine.fakes.throttle import FixedWindows, Limits, Verdict

__all__ = ["Limits", "create_app", "main"]

MAX_BULK_EVENTS = 1_000
MAX_BULK_BYTES = 5_000_000
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=timezone.utc)
ALL_SCOPES = frozenset({"accounts:read", "events:read", "events:write", "lists:read", "lists:write",
                        "profiles:read", "profiles:write", "subscriptions:write", "webhooks:read", "webhooks:write"})

_REVISION = re.compile(r"\d{4}-\d{2}-\d{2}(\.[A-Za-z0-9_-]+)?")
_TITLES = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("request_too_large", "Request too large."),
    429: ("throttled", "Request was throttled."),
}

Handler = Callable[["_State", Request], Awaitable[Response]]


class _JSONAPIResponse(JSONResponse):
    """Klaviyo answers JSON:API, so its bodies carry JSON:API's media type."""

    media_type = "application/vnd.api+json"


class _Rejected(Exception):
    """Raised inside a handler to answer with ``response`` instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(frozen=True)
class _Operation:
    name: str  # Klaviyo's operation id, which is also the rate-limit bucket
    scopes: tuple[str, ...]
    handler: Handler


class _State:
    """Everything one fake Klaviyo app remembers."""

    def __init__(self, keys: dict[str, set[str]] | None, limits: Limits, lists: Iterable[str] | None,
                 validate: bool = True) -> None:
        self.keys = keys
        self.validate = validate
        self.lists = None if lists is None else frozenset(lists)
        self.windows = FixedWindows(limits)
        self.failures = FailureSwitch()
        self.reset()

    def reset(self) -> None:
        self.profiles = Profiles()
        self.received: list[dict[str, Any]] = []
        self.seen: set[tuple[str, str, str]] = set()
        self.subscriptions: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.jobs = 0
        self.windows.clear()
        self.failures.clear()

    def scopes_of(self, key: str) -> frozenset[str] | None:
        """The scopes ``key`` holds, or None for a key Klaviyo would not know."""
        if self.keys is None:
            return ALL_SCOPES if key.startswith("pk_") else None
        scopes = self.keys.get(key)
        return None if scopes is None else frozenset(scopes)

    def list_exists(self, list_id: str) -> bool:
        return list_id.startswith("L") if self.lists is None else list_id in self.lists

    def accept(self, body: dict[str, Any], received_at: datetime) -> None:
        """Record one Create Event body, unless Klaviyo's dedup drops it as a repeat (the profile still updates)."""
        attributes = body["data"]["attributes"]
        profile = self.profiles.upsert(attributes["profile"]["data"])
        key = (profile["id"], attributes["metric"]["data"]["attributes"]["name"], _dedup_id(attributes, received_at))
        if key not in self.seen:
            self.seen.add(key)
            self.received.append(body)


def create_app(*, keys: dict[str, set[str]] | None = None, limits: Limits | None = None,
               lists: Iterable[str] | None = None, validate: bool = True) -> Starlette:
    """A fake Klaviyo.

    ``keys`` maps API key to granted scopes; None accepts any key starting with ``pk_`` with every scope.
    ``limits`` defaults to Klaviyo's published rate limits. ``lists`` are the list ids that exist; None means
    any id starting with "L". ``validate=False`` skips the JSON Schema check of request bodies (about 25 ms
    per 1,000-event bulk job): only for benchmarks measuring the client, never for tests.
    """
    state = _State(keys, limits or Limits(), lists, validate)
    operations = [
        ("POST", "/api/events", _Operation("create_event", ("events:write",), _create_event)),
        ("POST", "/api/event-bulk-create-jobs", _Operation("bulk_create_events", ("events:write",), _bulk_create)),
        ("POST", "/api/profile-subscription-bulk-create-jobs", _Operation(
            "bulk_subscribe_profiles", ("lists:write", "profiles:write", "subscriptions:write"), _bulk_subscribe)),
        ("GET", "/api/accounts", _Operation("get_accounts", ("accounts:read",), _get_accounts)),
        ("GET", "/api/lists/{id}", _Operation("get_list", ("lists:read",), _get_list)),
        ("GET", "/api/profiles/{id}", _Operation("get_profile", ("profiles:read",), _get_profile)),
    ]
    routes = []
    for method, path, operation in operations:
        endpoint = _api_endpoint(state, operation)
        # Klaviyo answers with and without the trailing slash; a redirect would surprise clients.
        routes += [Route(path, endpoint, methods=[method]), Route(path + "/", endpoint, methods=[method])]

    async def received(request: Request) -> Response:
        return JSONResponse(state.received)

    async def profiles(request: Request) -> Response:
        base = _base_url(request)
        return JSONResponse([state.profiles.resource(p, base) for p in state.profiles.by_id.values()])

    async def subscriptions(request: Request) -> Response:
        return JSONResponse(state.subscriptions)

    async def requests(request: Request) -> Response:
        return JSONResponse(state.requests)

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    routes += [
        Route("/_received", received, methods=["GET"]),
        Route("/_profiles", profiles, methods=["GET"]),
        Route("/_subscriptions", subscriptions, methods=["GET"]),
        Route("/_requests", requests, methods=["GET"]),
        Route("/_fail", fail_endpoint(state.failures), methods=["POST"]),
        Route("/_reset", reset, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})


def _api_endpoint(state: _State, operation: _Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.time()
        # Klaviyo counts a request against the rate limits when it arrives. This one process may get to it
        # later, after the jobs queued before it: counting then would shift its windows and refuse requests
        # a client rightly paced by their sending time.
        arrived = state.windows.now()
        key = _api_key(request)
        # Read the body before any failure delay: a client that gives up meanwhile has still sent it.
        await request.body()
        # Logged on arrival, so the log is in arrival order even when a slow answer finishes last.
        entry = {"t": started, "method": request.method, "path": relative_path(request.scope), "status": None,
                 "key": key[-4:] if key else None}
        state.requests.append(entry)
        response = await _answer(state, operation, request, key, arrived)
        entry["status"] = response.status_code
        return response
    return endpoint


async def _answer(state: _State, operation: _Operation, request: Request, key: str | None,
                  arrived: float) -> Response:
    failure = state.failures.take()
    if failure is not None:
        failed = await failure.respond(_status_error)
        if failed is not None:
            return failed
    if not key:
        return _error(401, "Authentication credentials were not provided.", code="not_authenticated")
    scopes = state.scopes_of(key)
    if scopes is None:
        return _error(401, "Incorrect authentication credentials.", code="authentication_failed",
                      title="Incorrect authentication credentials.")
    revision = request.headers.get("revision")
    if not revision:
        return _error(400, "Missing required header 'revision'.", parameter="revision")
    if not _REVISION.fullmatch(revision):
        return _error(400, f"Invalid revision {revision!r}: expected YYYY-MM-DD.", parameter="revision")
    verdict = state.windows.hit(key, operation.name, arrived=arrived)
    if not verdict.allowed:
        return _status_error(429, verdict.reset)
    missing = [scope for scope in operation.scopes if scope not in scopes]
    if missing:
        return _error(403, f"Your API key is missing required scopes: {', '.join(missing)}.")
    try:
        response = await operation.handler(state, request)
    except _Rejected as rejected:
        response = rejected.response
    except BadRequest as exc:
        response = _error(400, f"JSON parse error - {exc}", code="parse_error", title="Malformed request.")
    response.headers.update(_rate_headers(verdict))
    return response


async def _create_event(state: _State, request: Request) -> Response:
    body = parse_json(await request.body())
    _validate("create_event", body)
    attributes = body["data"]["attributes"]
    now = datetime.now(timezone.utc)
    problems = _event_problems(attributes, "/data/attributes", now)
    if not has_identifier(attributes["profile"]["data"]):
        problems.append(("/data/attributes/profile/data/attributes", "must include at least one profile identifier"))
    _reject_if(problems)
    state.accept(body, now)
    return Response(status_code=202)


async def _bulk_create(state: _State, request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_BULK_BYTES:
        return _error(413, f"The payload is {len(raw)} bytes; at most {MAX_BULK_BYTES} are accepted.")
    now = datetime.now(timezone.utc)
    # Checking a job of a few MB takes this one process a while. Off the event loop, requests arriving
    # meanwhile are still counted against the rate limits as they arrive, as Klaviyo counts them.
    entries, total = await run_in_threadpool(_checked_bulk_job, raw, state.validate, now)
    for entry in entries:
        for event in entry["attributes"]["events"]["data"]:
            state.accept(_as_create_event(entry, event), now)
    state.jobs += 1
    job_id = f"01FAKEJOB{state.jobs:017d}"
    return _JSONAPIResponse({"data": {
        "type": "event-bulk-create-job", "id": job_id,
        "attributes": {"status": "complete", "created_at": now.isoformat(timespec="seconds"),
                       "total_count": total, "completed_count": total, "failed_count": 0},
        "links": {"self": f"{_base_url(request)}/api/event-bulk-create-jobs/{job_id}/"},
    }}, status_code=202)


def _checked_bulk_job(raw: bytes, validate: bool, now: datetime) -> tuple[list[dict[str, Any]], int]:
    """The job's entries and its number of events, once it passes everything Klaviyo checks; raises
    _Rejected or BadRequest."""
    body = parse_json(raw)
    if validate:
        _validate("bulk_create_events", body)
    where = "/data/attributes/events-bulk-create/data"
    entries = body["data"]["attributes"]["events-bulk-create"]["data"]
    total = sum(len(entry["attributes"]["events"]["data"]) for entry in entries)
    if total > MAX_BULK_EVENTS:
        _reject_if([(where, f"has {total} events, at most {MAX_BULK_EVENTS} allowed in one job")])
    problems: list[tuple[str, str]] = []
    first_seen: dict[tuple[tuple[str, str], str, str], str] = {}
    for i, entry in enumerate(entries):
        profile = entry["attributes"]["profile"]["data"]
        if not has_identifier(profile):
            problems.append((f"{where}/{i}/attributes/profile/data/attributes",
                             "must include at least one profile identifier"))
        for j, event in enumerate(entry["attributes"]["events"]["data"]):
            at = f"{where}/{i}/attributes/events/data/{j}/attributes"
            problems += _event_problems(event["attributes"], at, now)
            key = (identity(profile), event["attributes"]["metric"]["data"]["attributes"]["name"],
                   _dedup_id(event["attributes"], now))
            if key in first_seen:
                # Klaviyo refuses the whole job rather than guess which of the two events is meant.
                problems.append((f"{at}/unique_id", f"repeats the unique_id of {first_seen[key]} "
                                 "for the same profile and metric"))
            first_seen.setdefault(key, at)
    _reject_if(problems)
    return entries, total


async def _bulk_subscribe(state: _State, request: Request) -> Response:
    body = parse_json(await request.body())
    _validate("bulk_subscribe_profiles", body)
    attributes = body["data"]["attributes"]
    where = "/data/attributes/profiles/data"
    problems = []
    for i, profile in enumerate(attributes["profiles"]["data"]):
        given = profile["attributes"]
        if not (profile.get("id") or given.get("email") or given.get("phone_number")):
            problems.append((f"{where}/{i}/attributes", "must include an email or a phone_number"))
        historical = attributes.get("historical_import")
        for channel, kinds in (given["subscriptions"] or {}).items():
            for kind, consent in (kinds or {}).items():
                if isinstance(consent, dict) and consent.get("consented_at") and not historical:
                    problems.append((f"{where}/{i}/attributes/subscriptions/{channel}/{kind}/consented_at",
                                     "is only allowed when historical_import is true"))
    _reject_if(problems)
    list_data = ((body["data"].get("relationships") or {}).get("list") or {}).get("data") or {}
    list_id = list_data.get("id")
    if list_id is not None and not state.list_exists(list_id):
        return _error(404, f"List {list_id!r} does not exist.", pointer="/data/relationships/list/data/id")
    for profile in attributes["profiles"]["data"]:
        given = profile["attributes"]
        state.subscriptions.append({
            "t": time.time(), "list_id": list_id, "email": given.get("email"),
            "phone_number": given.get("phone_number"), "consent": given["subscriptions"],
            "custom_source": attributes.get("custom_source"),
        })
    return Response(status_code=202)


async def _get_accounts(state: _State, request: Request) -> Response:
    key = _api_key(request) or ""
    account_id = "FAKE" + hashlib.sha256(key.encode()).hexdigest()[:6].upper()
    base = _base_url(request)
    return _JSONAPIResponse({"data": [{
        "type": "account", "id": account_id,
        "attributes": {
            "test_account": True,
            "contact_information": {
                "default_sender_name": "Fake Klaviyo", "default_sender_email": "sender@example.com",
                "website_url": "https://www.example.com", "organization_name": "Fake Klaviyo Account",
                "street_address": {"address1": "1 Example Way", "address2": None, "city": "Boston",
                                   "region": "MA", "country": "US", "zip": "02110"},
            },
            "industry": "Retail", "timezone": "America/New_York", "preferred_currency": "USD",
            "public_api_key": account_id[4:], "locale": "en-US",
        },
        "links": {"self": f"{base}/api/accounts/{account_id}/"},
    }], "links": {"self": f"{base}/api/accounts/"}})


async def _get_list(state: _State, request: Request) -> Response:
    list_id = request.path_params["id"]
    if not state.list_exists(list_id):
        return _error(404, f"A list with id {list_id} does not exist.")
    self_link = f"{_base_url(request)}/api/lists/{list_id}/"
    return _JSONAPIResponse({"data": {
        "type": "list", "id": list_id,
        "attributes": {"name": f"Fake list {list_id}", "created": "2026-01-15T00:00:00+00:00",
                       "updated": "2026-01-15T00:00:00+00:00", "opt_in_process": "single_opt_in"},
        "links": {"self": self_link},
    }, "links": {"self": self_link}})


async def _get_profile(state: _State, request: Request) -> Response:
    profile = state.profiles.by_id.get(request.path_params["id"])
    if profile is None:
        return _error(404, f"A profile with id {request.path_params['id']} does not exist.")
    resource = state.profiles.resource(profile, _base_url(request))
    return _JSONAPIResponse({"data": resource, "links": {"self": resource["links"]["self"]}})


def _validate(name: str, body: object) -> None:
    _reject_if(klaviyo_schema.violations(name, body))


def _reject_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise _Rejected(_JSONAPIResponse({"errors": [_error_item(400, detail, pointer=where)
                                                     for where, detail in problems]}, status_code=400))


def _event_problems(attributes: dict[str, Any], at: str, now: datetime) -> list[tuple[str, str]]:
    """What Klaviyo refuses in an event beyond its schema: a time outside 2000-01-01 .. one year ahead."""
    if not attributes.get("time"):
        return []
    moment = _parse_time(attributes["time"])
    if moment < EARLIEST_EVENT:
        return [(f"{at}/time", "must not be before 2000-01-01")]
    if moment > now + timedelta(days=365):
        return [(f"{at}/time", "must not be more than one year in the future")]
    return []


def _dedup_id(attributes: dict[str, Any], received_at: datetime) -> str:
    """Klaviyo's dedup key part for an event: its unique_id, else its time (or arrival) to the second."""
    if attributes.get("unique_id"):
        return "unique_id:" + attributes["unique_id"]
    moment = _parse_time(attributes["time"]) if attributes.get("time") else received_at
    return "time:" + moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def _parse_time(value: str) -> datetime:
    # The schema has already checked the RFC 3339 shape, offset included.
    return datetime.fromisoformat(value.upper())


def _as_create_event(entry: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """One event of a bulk job as the Create Event body that would have sent it alone."""
    profile = entry["attributes"]["profile"]["data"]
    profile_out: dict[str, Any] = {"type": "profile"}
    if profile.get("id"):
        profile_out["id"] = profile["id"]
    profile_out["attributes"] = dict(profile["attributes"])
    if profile.get("meta") is not None:
        profile_out["attributes"]["meta"] = profile["meta"]
    attributes = dict(event["attributes"])
    if attributes.get("backfill") is None and entry["attributes"].get("backfill") is not None:
        attributes["backfill"] = entry["attributes"]["backfill"]
    attributes["profile"] = {"data": profile_out}
    return {"data": {"type": "event", "attributes": attributes}}


def _api_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "klaviyo-api-key":
        return None
    return key.strip() or None


def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


def _rate_headers(verdict: Verdict) -> dict[str, str]:
    return {"RateLimit-Limit": str(verdict.limit), "RateLimit-Remaining": str(verdict.remaining),
            "RateLimit-Reset": str(verdict.reset)}


def _error_item(status: int, detail: str, *, code: str | None = None, title: str | None = None,
                pointer: str | None = None, parameter: str | None = None) -> dict[str, Any]:
    default_code, default_title = _TITLES.get(status) or (
        HTTPStatus(status).phrase.lower().replace(" ", "_"), HTTPStatus(status).phrase + ".")
    item: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code or default_code,
                            "title": title or default_title, "detail": detail}
    if pointer is not None:
        item["source"] = {"pointer": pointer}
    elif parameter is not None:
        item["source"] = {"parameter": parameter}
    return item


def _error(status: int, detail: str, **item: Any) -> Response:
    return _JSONAPIResponse({"errors": [_error_item(status, detail, **item)]}, status_code=status)


def _status_error(status: int, retry_after: int | None) -> Response:
    """The errors[] answer for a bare status: throttling, the failure switch."""
    if status == 429:
        wait = max(1, retry_after or 1)
        unit = "second" if wait == 1 else "seconds"
        response = _error(429, f"Request was throttled. Expected available in {wait} {unit}.")
        response.headers["Retry-After"] = str(wait)
        return response
    return _error(status, HTTPStatus(status).phrase + ".")


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _error(status, HTTPStatus(status).phrase + ".")


def main(argv: list[str] | None = None) -> None:
    """Run the fake Klaviyo standalone under uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m engine.fakes.klaviyo",
                                     description="Run the fake Klaviyo API under uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8801)
    parser.add_argument("--no-validation", action="store_true",
                        help="skip the schema check of bulk jobs (benchmarks of the client only)")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(validate=not args.no_validation), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
