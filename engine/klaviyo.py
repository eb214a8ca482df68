"""The Klaviyo API client: events (one or in bulk jobs), bulk subscriptions, and key checks.

Every call first waits for the account's rate limiter (engine/ratelimit.py), then translates failures at
the boundary (engine/http_errors.py): no answer or a transient status -> RetryableDeliveryError, any other
non-2xx -> DeliveryError. A 429 also holds the whole account for the server's ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from urllib.parse import quote

import httpx

from engine.errors import DeliveryError
from engine.event_json import GROUP_WRAPPER, JOB_ENVELOPE, EventJson, bulk_job, compact_json
from engine.http_errors import MAX_BODY_CHARS, decode_json, parse_retry_after, raise_for_status, send
from engine.ratelimit import SHARED_LIMITERS, AccountLimiter, key_hash

SERVICE = "Klaviyo"
JSON_API = "application/vnd.api+json"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=5.0)

MAX_BULK_EVENTS = 1_000
# Klaviyo says "5MB"; the decimal reading is the stricter one.
MAX_BULK_BYTES = 5_000_000
MAX_BULK_PROFILES = 1_000


@dataclass(frozen=True)
class _Endpoint:
    name: str  # the OpenAPI operation id, which is also the rate limiter's key
    method: str
    path: str
    scopes: tuple[str, ...]


CREATE_EVENT = _Endpoint("create_event", "POST", "/api/events", ("events:write",))
BULK_CREATE_EVENTS = _Endpoint("bulk_create_events", "POST", "/api/event-bulk-create-jobs", ("events:write",))
BULK_SUBSCRIBE = _Endpoint("bulk_subscribe_profiles", "POST", "/api/profile-subscription-bulk-create-jobs",
                           ("lists:write", "profiles:write", "subscriptions:write"))
GET_PROFILE = _Endpoint("get_profile", "GET", "/api/profiles/{id}", ("profiles:read",))
GET_ACCOUNTS = _Endpoint("get_accounts", "GET", "/api/accounts", ("accounts:read",))

# Write scopes that can be checked by posting an invalid body: Klaviyo checks the scope (403) before the body (400).
_PROBES: dict[str, _Endpoint] = {
    "events:write": CREATE_EVENT,
    "subscriptions:write": BULK_SUBSCRIBE,
    "lists:write": BULK_SUBSCRIBE,
    "profiles:write": BULK_SUBSCRIBE,
}
# Read scopes are checked by reading something that cannot exist: 404 (or 200) means the scope was granted.
_READ_PROBES: dict[str, tuple[_Endpoint, str]] = {
    "profiles:read": (GET_PROFILE, GET_PROFILE.path.format(id="00000000000000000000000000")),
}


class KlaviyoClient:
    """One Klaviyo account (private API key). Use as ``async with KlaviyoClient(api_key=...) as klaviyo:``."""

    def __init__(self, *, api_key: str, base_url: str = "https://a.klaviyo.com", revision: str = "2026-07-15",
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, limiter: AccountLimiter | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not api_key:
            raise ValueError("api_key is empty")
        self.base_url = base_url
        self.revision = revision
        self._account = key_hash(api_key)
        self._limiter = limiter if limiter is not None else SHARED_LIMITERS.for_api_key(api_key)
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport,
            headers={"Authorization": f"Klaviyo-API-Key {api_key}", "revision": revision,
                     "Content-Type": JSON_API, "Accept": JSON_API})

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self.base_url!r}, revision={self.revision!r}, account={self._account!r})"

    async def __aenter__(self) -> KlaviyoClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_event(self, event: EventJson) -> None:
        """POST one event with Create Event."""
        await self._call(CREATE_EVENT, content=event.create_event())

    async def bulk_create_events(self, events: list[EventJson]) -> None:
        """Send ``events`` as ONE Bulk Create Events job; split backlogs with ``plan_bulk_jobs``.

        Raises ValueError when the job would break Klaviyo's rules (more than 1,000 events, more than 5 MB,
        a repeated unique_id), because sending it would fail every event in it.
        """
        if not events:
            return
        if len(events) > MAX_BULK_EVENTS:
            raise ValueError(f"a bulk job takes at most {MAX_BULK_EVENTS} events, got {len(events)}")
        seen: set[str] = set()
        for index, event in enumerate(events):
            if event.unique_id is not None:
                if event.unique_id in seen:
                    raise ValueError(f"event {index}: unique_id {event.unique_id!r} repeats within the bulk job")
                seen.add(event.unique_id)
        content = bulk_job(events)
        if len(content) > MAX_BULK_BYTES:
            raise ValueError(f"the bulk job is {len(content)} bytes encoded; the limit is {MAX_BULK_BYTES}")
        await self._call(BULK_CREATE_EVENTS, content=content)

    async def bulk_subscribe(self, list_id: str, profiles: list[dict]) -> None:
        """Subscribe ``profiles`` to email marketing and add them to list ``list_id``.

        Each profile is ``{"email"?, "phone_number"?, "sms"?: bool}``: an email gets email marketing consent;
        a phone number is sent as an identifier, and gets SMS marketing consent only with ``"sms": True``.
        """
        if not profiles:
            return
        if len(profiles) > MAX_BULK_PROFILES:
            raise ValueError(f"a bulk subscription takes at most {MAX_BULK_PROFILES} profiles, got {len(profiles)}")
        body = {"data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": {
                "profiles": {"data": [_subscription(profile, index) for index, profile in enumerate(profiles)]},
                "historical_import": False,
            },
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }}
        await self._call(BULK_SUBSCRIBE, content=compact_json(body).encode())

    async def get_profile(self, profile_id: str) -> dict:
        """The profile's attributes plus its ``id``."""
        path = GET_PROFILE.path.format(id=quote(profile_id, safe=""))
        response = await self._call(GET_PROFILE, path=path)
        return _resource(decode_json(response, service=SERVICE), response)

    async def get_account(self) -> dict:
        """The key's account: its attributes plus its ``id``. A cheap check that the key is accepted."""
        response = await self._call(GET_ACCOUNTS)
        document = decode_json(response, service=SERVICE)
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list) or not data:
            raise DeliveryError(f"{SERVICE} GET /api/accounts answered without an account",
                                status=response.status_code, body=response.text[:MAX_BODY_CHARS])
        return _resource({"data": data[0]}, response)

    async def probe_scope(self, scope: str) -> bool | None:
        """Whether the key has ``scope``, found without creating anything: True, False, or None if unknown.

        A write scope: posts ``{}`` to an endpoint that needs it; 400 (invalid body) means granted, 403 not.
        A read scope: reads an id that cannot exist; 404 means granted, 403 not. A 401 (key rejected) raises
        DeliveryError.
        """
        if scope in _READ_PROBES:
            endpoint, path = _READ_PROBES[scope]
            response = await self._send(endpoint, path, None)
            granted = (200, 404)
        elif scope in _PROBES:
            endpoint = _PROBES[scope]
            response = await self._send(endpoint, endpoint.path, b"{}")
            granted = (400,)
        else:
            raise ValueError(f"cannot probe scope {scope!r}; probe-able scopes: {sorted([*_PROBES, *_READ_PROBES])}")
        if response.status_code in granted:
            return True
        if response.status_code == 403:
            return False
        if response.status_code == 401:
            raise_for_status(response, service=SERVICE, hint=self._hint(endpoint, 401))
        return None

    async def _call(self, endpoint: _Endpoint, *, path: str | None = None, content: bytes | None = None
                    ) -> httpx.Response:
        response = await self._send(endpoint, path or endpoint.path, content)
        raise_for_status(response, service=SERVICE, hint=self._hint(endpoint, response.status_code))
        return response

    async def _send(self, endpoint: _Endpoint, path: str, content: bytes | None) -> httpx.Response:
        sent = await self._limiter.acquire(endpoint.name)

        async def trace(event: str, info: dict) -> None:
            if event.endswith("send_request_headers.started"):
                sent()

        request = self._http.build_request(endpoint.method, path, content=content, extensions={"trace": trace})
        response = await send(self._http, request, service=SERVICE)
        if response.status_code == 429:
            self._limiter.block(parse_retry_after(response.headers.get("Retry-After")) or 1.0)
        return response

    def _hint(self, endpoint: _Endpoint, status: int) -> str:
        if status == 403:
            needed = " and ".join(endpoint.scopes)
            return f"this endpoint needs the API key scope{'s' if len(endpoint.scopes) > 1 else ''} {needed}"
        if status == 401:
            return "Klaviyo rejected the API key"
        if status == 410:
            return f"API revision {self.revision} is retired; configure a newer one"
        return ""


def plan_bulk_jobs(events: list[EventJson]) -> list[list[EventJson]]:
    """Split ``events`` into valid Bulk Create Events jobs, keeping their order.

    Each job has at most 1,000 events, encodes to at most 5 MB and repeats no unique_id. Raises ValueError
    for an event that alone exceeds 5 MB.
    """
    jobs: list[list[EventJson]] = []
    job: list[EventJson] = []
    size = JOB_ENVELOPE
    seen: set[str] = set()
    for index, event in enumerate(events):
        # Upper bound: the event in a group of its own. Grouping by profile only shrinks the job.
        cost = event.size + GROUP_WRAPPER
        if JOB_ENVELOPE + cost > MAX_BULK_BYTES:
            raise ValueError(f"event {index} alone encodes to more than {MAX_BULK_BYTES} bytes")
        if job and (len(job) == MAX_BULK_EVENTS or size + cost > MAX_BULK_BYTES or event.unique_id in seen):
            jobs.append(job)
            job, size, seen = [], JOB_ENVELOPE, set()
        job.append(event)
        size += cost
        if event.unique_id is not None:
            seen.add(event.unique_id)
    if job:
        jobs.append(job)
    return jobs


def _subscription(profile: dict, index: int) -> dict:
    email = profile.get("email")
    phone = profile.get("phone_number")
    attributes: dict = {}
    channels: dict = {}
    if email:
        attributes["email"] = email
        channels["email"] = {"marketing": {"consent": "SUBSCRIBED"}}
    if phone:
        attributes["phone_number"] = phone
        if profile.get("sms") is True:
            channels["sms"] = {"marketing": {"consent": "SUBSCRIBED"}}
    if not channels:
        raise ValueError(f"profile {index} has nothing to subscribe: it needs an email, or a phone_number with sms")
    attributes["subscriptions"] = channels
    return {"type": "profile", "attributes": attributes}


def _resource(document: object, response: httpx.Response) -> dict:
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or "id" not in data:
        raise DeliveryError(f"{SERVICE} {response.request.url.path} answered without a resource",
                            status=response.status_code, body=response.text[:MAX_BODY_CHARS])
    return {**(data.get("attributes") or {}), "id": data["id"]}
