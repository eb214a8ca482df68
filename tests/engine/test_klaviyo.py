from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import jsonschema
import pytest

from engine.errors import DeliveryError, RetryableDeliveryError
from engine.event_json import EventJson, bulk_job
from engine.fakes import klaviyo as fake_klaviyo
from engine.klaviyo import DEFAULT_TIMEOUT, MAX_BULK_BYTES, KlaviyoClient, plan_bulk_jobs
from engine.ratelimit import SHARED_LIMITERS, AccountLimiter

pytestmark = pytest.mark.anyio

API_KEY = "pk_test_0123456789abcdef"
Handler = Callable[[httpx.Request], httpx.Response]



class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Recorder:
    """A Klaviyo stand-in answering from a handler and keeping every request it saw."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler or (lambda request: httpx.Response(202))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def bodies(self) -> list[dict]:
        return [json.loads(request.content) for request in self.requests]


def client(recorder: Recorder, clock: FakeClock | None = None) -> KlaviyoClient:
    clock = clock or FakeClock()
    return KlaviyoClient(api_key=API_KEY, base_url="https://klaviyo.test",
                         limiter=AccountLimiter(clock=clock, sleep=clock.sleep),
                         transport=httpx.MockTransport(recorder))


def event(unique_id: str | None, email: str = "ana@example.com", **extra: object) -> EventJson:
    return EventJson.from_body(body(unique_id, email, **extra))


def body(unique_id: str | None, email: str = "ana@example.com", **extra: object) -> dict:
    attributes: dict = {
        "properties": {"OrderId": unique_id, **extra},
        "time": "2026-03-01T10:00:00+00:00",
        "value": 12.5,
        "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": email, "first_name": "Ana"}}},
    }
    if unique_id is not None:
        attributes["unique_id"] = unique_id
    return {"data": {"type": "event", "attributes": attributes}}


def openapi_validator(shared: Path, file: str, schema: str) -> jsonschema.Draft202012Validator:
    components = _nullable_to_null(json.loads((shared / "klaviyo-openapi" / file).read_text())["components"])
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": components})


def _nullable_to_null(node: object) -> object:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema that also accepts null."""
    if isinstance(node, list):
        return [_nullable_to_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_to_null(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


async def test_create_event_sends_the_body_with_klaviyo_headers() -> None:
    recorder = Recorder()
    async with client(recorder) as klaviyo:
        await klaviyo.create_event(event("o-1"))
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("POST", "https://klaviyo.test/api/events")
    assert request.headers["Authorization"] == f"Klaviyo-API-Key {API_KEY}"
    assert request.headers["revision"] == "2026-07-15"
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert request.headers["Accept"] == "application/vnd.api+json"
    assert json.loads(request.content) == body("o-1")


def test_timeouts_are_explicit_and_the_key_stays_out_of_repr() -> None:
    timeout = DEFAULT_TIMEOUT
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (5, 15, 15, 5)
    assert API_KEY not in repr(KlaviyoClient(api_key=API_KEY))


async def test_clients_of_one_key_share_the_process_wide_limiter_by_default() -> None:
    async with KlaviyoClient(api_key="pk_shared") as one, KlaviyoClient(api_key="pk_shared") as two:
        assert one._limiter is two._limiter is SHARED_LIMITERS.for_api_key("pk_shared")


async def test_every_call_acquires_its_endpoint_limit_first() -> None:
    acquired: list[str] = []

    class Spy(AccountLimiter):
        async def acquire(self, endpoint: str) -> Callable[[], None]:
            acquired.append(endpoint)
            return lambda: None

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/api/accounts":
            return httpx.Response(200, json={"data": [{"type": "account", "id": "A1", "attributes": {}}]})
        if request.method == "GET":
            return httpx.Response(200, json={"data": {"type": "profile", "id": "P1", "attributes": {}}})
        return httpx.Response(202)

    async with KlaviyoClient(api_key=API_KEY, limiter=Spy(), transport=httpx.MockTransport(answer)) as klaviyo:
        await klaviyo.create_event(event("o-1"))
        await klaviyo.bulk_create_events([event("o-1")])
        await klaviyo.bulk_subscribe("L1", [{"email": "ana@example.com"}])
        await klaviyo.get_profile("P1")
        await klaviyo.get_account()
    assert acquired == ["create_event", "bulk_create_events", "bulk_subscribe_profiles", "get_profile", "get_accounts"]


async def test_bulk_create_events_groups_events_under_their_profile() -> None:
    recorder = Recorder()
    bodies = [body("o-1"), body("o-2", email="bo@example.com"), body("o-3")]
    bodies[2]["data"]["attributes"]["profile"]["data"]["attributes"]["meta"] = {
        "patch_properties": {"append": {"skus": "92538"}}}
    async with client(recorder) as klaviyo:
        await klaviyo.bulk_create_events([EventJson.from_body(b) for b in bodies])
    (request,) = recorder.requests
    assert request.url.path == "/api/event-bulk-create-jobs"
    (job,) = recorder.bodies()
    assert job["data"]["type"] == "event-bulk-create-job"
    groups = job["data"]["attributes"]["events-bulk-create"]["data"]
    summary = [(g["attributes"]["profile"]["data"]["attributes"]["email"],
                [e["attributes"]["unique_id"] for e in g["attributes"]["events"]["data"]]) for g in groups]
    assert summary == [("ana@example.com", ["o-1"]), ("bo@example.com", ["o-2"]), ("ana@example.com", ["o-3"])]
    # Create Event keeps profile meta in attributes; the bulk schema has it beside them.
    third = groups[2]["attributes"]["profile"]["data"]
    assert third["meta"] == {"patch_properties": {"append": {"skus": "92538"}}}
    assert "meta" not in third["attributes"]
    assert "profile" not in groups[0]["attributes"]["events"]["data"][0]["attributes"]


def test_same_profile_events_share_one_group() -> None:
    groups = json.loads(bulk_job([event("o-1"), event("o-2", email="bo@example.com"), event("o-3")]))[
        "data"]["attributes"]["events-bulk-create"]["data"]
    assert [len(g["attributes"]["events"]["data"]) for g in groups] == [2, 1]


def test_bulk_job_matches_klaviyos_schema(shared: Path) -> None:
    validator = openapi_validator(shared, "bulk_create_events.json", "EventsBulkCreateJob")
    first = body("o-1")
    first["data"]["attributes"]["profile"]["data"]["attributes"]["meta"] = {"patch_properties": {"unset": "x"}}
    validator.validate(json.loads(bulk_job([EventJson.from_body(first), event("o-2", email="bo@example.com"),
                                            event(None)])))


async def test_bulk_create_events_refuses_jobs_klaviyo_would_fail() -> None:
    async with client(Recorder()) as klaviyo:
        with pytest.raises(ValueError, match="at most 1000 events, got 1001"):
            await klaviyo.bulk_create_events([event(f"o-{n}") for n in range(1_001)])
        with pytest.raises(ValueError, match="event 2: unique_id 'o-1' repeats"):
            await klaviyo.bulk_create_events([event("o-1"), event("o-2"), event("o-1", email="bo@example.com")])
        big = "x" * 90_000
        with pytest.raises(ValueError, match=f"limit is {MAX_BULK_BYTES}"):
            await klaviyo.bulk_create_events([event(f"o-{n}", note=big) for n in range(60)])


async def test_empty_batches_send_nothing() -> None:
    recorder = Recorder()
    async with client(recorder) as klaviyo:
        await klaviyo.bulk_create_events([])
        await klaviyo.bulk_subscribe("L1", [])
    assert recorder.requests == []


def test_plan_bulk_jobs_splits_a_backlog_into_valid_jobs_in_order() -> None:
    backlog = [event(f"o-{n}", email=f"c{n % 7}@example.com") for n in range(2_500)]
    jobs = plan_bulk_jobs(backlog)
    assert [len(job) for job in jobs] == [1_000, 1_000, 500]
    assert [e for job in jobs for e in job] == backlog


def test_plan_bulk_jobs_never_repeats_a_unique_id_in_a_job() -> None:
    backlog = [event("a"), event("b"), event("a"), event("c"), event("a")]
    assert [[e.unique_id for e in job] for job in plan_bulk_jobs(backlog)] == [
        ["a", "b"], ["a", "c"], ["a"]]


def test_plan_bulk_jobs_respects_the_size_limit() -> None:
    big = "x" * 90_000
    backlog = [event(f"o-{n}", note=big) for n in range(130)]
    jobs = plan_bulk_jobs(backlog)
    assert len(jobs) == 3
    assert [e for job in jobs for e in job] == backlog
    for job in jobs:
        assert len(bulk_job(job)) <= MAX_BULK_BYTES


def test_plan_bulk_jobs_refuses_an_event_too_big_for_any_job() -> None:
    with pytest.raises(ValueError, match="event 1 alone"):
        plan_bulk_jobs([event("a"), event("b", note="x" * MAX_BULK_BYTES)])


async def test_bulk_subscribe_sends_email_consent_to_the_list(shared: Path) -> None:
    recorder = Recorder()
    async with client(recorder) as klaviyo:
        await klaviyo.bulk_subscribe("Y6nRLr", [
            {"email": "ana@example.com"},
            {"email": "bo@example.com", "phone_number": "+15005550006"},
            {"phone_number": "+15005550007", "sms": True},
        ])
    (request,) = recorder.requests
    assert request.url.path == "/api/profile-subscription-bulk-create-jobs"
    (body,) = recorder.bodies()
    email = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
    assert body == {"data": {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {
            "profiles": {"data": [
                {"type": "profile", "attributes": {"email": "ana@example.com", "subscriptions": email}},
                {"type": "profile", "attributes": {"email": "bo@example.com", "phone_number": "+15005550006",
                                                   "subscriptions": email}},
                {"type": "profile", "attributes": {"phone_number": "+15005550007",
                                                   "subscriptions": {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}}},
            ]},
            "historical_import": False,
        },
        "relationships": {"list": {"data": {"type": "list", "id": "Y6nRLr"}}},
    }}
    openapi_validator(shared, "bulk_subscribe_profiles.json", "SubscriptionCreateJobCreateQuery").validate(body)


async def test_bulk_subscribe_refuses_what_it_cannot_send() -> None:
    async with client(Recorder()) as klaviyo:
        with pytest.raises(ValueError, match="at most 1000 profiles"):
            await klaviyo.bulk_subscribe("L1", [{"email": f"c{n}@example.com"} for n in range(1_001)])
        with pytest.raises(ValueError, match="profile 1 has nothing to subscribe"):
            await klaviyo.bulk_subscribe("L1", [{"email": "a@example.com"}, {"phone_number": "+15005550006"}])


async def test_get_profile_returns_attributes_and_id() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json={"data": {
        "type": "profile", "id": "01GDDKASAP8TKDDA2GRZDSVP4H", "attributes": {"email": "ana@example.com"}}}))
    async with client(recorder) as klaviyo:
        profile = await klaviyo.get_profile("01GDDKASAP8TKDDA2GRZDSVP4H")
    assert profile == {"id": "01GDDKASAP8TKDDA2GRZDSVP4H", "email": "ana@example.com"}
    assert recorder.requests[0].url.path == "/api/profiles/01GDDKASAP8TKDDA2GRZDSVP4H"


async def test_get_profile_quotes_the_id() -> None:
    recorder = Recorder(lambda request: httpx.Response(404, json={"errors": [{"detail": "Not found."}]}))
    async with client(recorder) as klaviyo:
        with pytest.raises(DeliveryError, match="answered 404: Not found."):
            await klaviyo.get_profile("../accounts")
    assert recorder.requests[0].url.raw_path == b"/api/profiles/..%2Faccounts"


async def test_get_account_returns_the_first_account() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json={"data": [
        {"type": "account", "id": "AbC123", "attributes": {"contact_information": {"organization_name": "Sunrise"}}}]}))
    async with client(recorder) as klaviyo:
        account = await klaviyo.get_account()
    assert account == {"id": "AbC123", "contact_information": {"organization_name": "Sunrise"}}
    assert recorder.requests[0].url.path == "/api/accounts"


@pytest.mark.parametrize("payload", [{"data": []}, {"data": {}}, [], {"data": [{"type": "account"}]}])
async def test_get_account_refuses_an_answer_without_an_account(payload: object) -> None:
    async with client(Recorder(lambda request: httpx.Response(200, json=payload))) as klaviyo:
        with pytest.raises(DeliveryError, match="without"):
            await klaviyo.get_account()


@pytest.mark.parametrize(("scope", "path"), [
    ("events:write", "/api/events"),
    ("subscriptions:write", "/api/profile-subscription-bulk-create-jobs"),
    ("lists:write", "/api/profile-subscription-bulk-create-jobs"),
    ("profiles:write", "/api/profile-subscription-bulk-create-jobs"),
])
@pytest.mark.parametrize(("status", "expected"), [(400, True), (403, False), (500, None), (202, None), (429, None)])
async def test_probe_scope_posts_an_invalid_body_and_reads_the_status(
        scope: str, path: str, status: int, expected: bool | None) -> None:
    recorder = Recorder(lambda request: httpx.Response(status, json={"errors": []}))
    async with client(recorder) as klaviyo:
        assert await klaviyo.probe_scope(scope) is expected
    (request,) = recorder.requests
    assert (request.method, request.url.path, request.content) == ("POST", path, b"{}")


@pytest.mark.parametrize(("status", "expected"), [(404, True), (200, True), (403, False), (500, None)])
async def test_probe_scope_of_a_read_scope_reads_something_that_cannot_exist(status: int, expected: bool | None
                                                                            ) -> None:
    recorder = Recorder(lambda request: httpx.Response(status, json={"errors": []}))
    async with client(recorder) as klaviyo:
        assert await klaviyo.probe_scope("profiles:read") is expected
    (request,) = recorder.requests
    assert request.method == "GET" and request.url.path.startswith("/api/profiles/") and not request.content


async def test_probe_scope_raises_when_the_key_is_rejected() -> None:
    recorder = Recorder(lambda request: httpx.Response(401, json={"errors": [{"detail": "Invalid API key."}]}))
    async with client(recorder) as klaviyo:
        with pytest.raises(DeliveryError, match="Invalid API key.") as info:
            await klaviyo.probe_scope("events:write")
    assert info.value.status == 401 and not isinstance(info.value, RetryableDeliveryError)


async def test_probe_scope_refuses_unknown_scopes() -> None:
    async with client(Recorder()) as klaviyo:
        with pytest.raises(ValueError, match="cannot probe scope 'metrics:read'"):
            await klaviyo.probe_scope("metrics:read")


FOREIGN = [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, httpx.ConnectError,
           httpx.ReadError, httpx.WriteError, httpx.CloseError, httpx.RemoteProtocolError, httpx.LocalProtocolError,
           httpx.ProxyError, httpx.DecodingError]


@pytest.mark.parametrize("exc_type", FOREIGN, ids=[t.__name__ for t in FOREIGN])
async def test_network_failures_become_retryable_errors(exc_type: type[httpx.HTTPError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    async with client(Recorder(fail)) as klaviyo:
        with pytest.raises(RetryableDeliveryError) as info:
            await klaviyo.create_event(event("o-1"))
    assert info.value.status is None
    assert isinstance(info.value.__cause__, exc_type)
    assert str(info.value).startswith("Klaviyo POST /api/events: ")


async def test_a_base_url_with_a_bad_scheme_is_not_retried() -> None:
    async with KlaviyoClient(api_key=API_KEY, base_url="ftp://klaviyo.test",
                             limiter=AccountLimiter()) as klaviyo:
        with pytest.raises(DeliveryError, match="unsupported URL scheme") as info:
            await klaviyo.create_event(event("o-1"))
    assert not isinstance(info.value, RetryableDeliveryError)
    assert isinstance(info.value.__cause__, httpx.UnsupportedProtocol)


@pytest.mark.parametrize(("status", "retryable"), [
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (524, True),
    (400, False), (401, False), (404, False), (409, False), (413, False), (422, False),
])
async def test_statuses_are_classified(status: int, retryable: bool) -> None:
    detail = {"errors": [{"id": "x", "code": "c", "title": "t", "detail": "Something specific."}]}
    async with client(Recorder(lambda request: httpx.Response(status, json=detail))) as klaviyo:
        with pytest.raises(DeliveryError) as info:
            await klaviyo.create_event(event("o-1"))
    assert isinstance(info.value, RetryableDeliveryError) is retryable
    assert info.value.status == status
    assert json.loads(info.value.body) == detail
    assert f"answered {status}: Something specific." in str(info.value)


@pytest.mark.parametrize(("call", "scopes"), [
    (lambda k: k.create_event(event("o-1")), "scope events:write"),
    (lambda k: k.bulk_subscribe("L1", [{"email": "a@example.com"}]),
     "scopes lists:write and profiles:write and subscriptions:write"),
    (lambda k: k.get_profile("P1"), "scope profiles:read"),
    (lambda k: k.get_account(), "scope accounts:read"),
])
async def test_a_403_names_the_scope_the_endpoint_needs(call: Callable, scopes: str) -> None:
    forbidden = {"errors": [{"detail": "You do not have permission to perform this action."}]}
    async with client(Recorder(lambda request: httpx.Response(403, json=forbidden))) as klaviyo:
        with pytest.raises(DeliveryError) as info:
            await call(klaviyo)
    assert f"this endpoint needs the API key {scopes}" in str(info.value)


async def test_a_retired_revision_says_so() -> None:
    async with client(Recorder(lambda request: httpx.Response(410, text=""))) as klaviyo:
        with pytest.raises(DeliveryError, match="API revision 2026-07-15 is retired"):
            await klaviyo.create_event(event("o-1"))


async def test_an_html_error_page_gives_a_short_message() -> None:
    page = "<html><head><title>Attention Required! | Cloudflare</title></head><body>" + "x" * 5_000 + "</body></html>"
    async with client(Recorder(lambda request: httpx.Response(503, text=page))) as klaviyo:
        with pytest.raises(RetryableDeliveryError) as info:
            await klaviyo.create_event(event("o-1"))
    assert str(info.value) == "Klaviyo POST /api/events answered 503: Attention Required! | Cloudflare"
    assert info.value.body == page


async def test_a_429_holds_every_request_of_the_account_for_retry_after() -> None:
    clock = FakeClock()
    sent_at: list[tuple[float, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent_at.append((clock.now, request.url.path))
        if len(sent_at) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"errors": [
                {"code": "throttled", "detail": "Request was throttled. Expected available in 7 seconds."}]})
        return httpx.Response(202)

    async with client(Recorder(answer), clock) as klaviyo:
        with pytest.raises(RetryableDeliveryError) as info:
            await klaviyo.create_event(event("o-1"))
        assert (info.value.status, info.value.retry_after) == (429, 7.0)
        await klaviyo.bulk_create_events([event("o-2")])
    assert sent_at == [(0.0, "/api/events"), (7.0, "/api/event-bulk-create-jobs")]


async def test_a_429_without_retry_after_holds_the_account_for_a_second() -> None:
    clock = FakeClock()
    answers = iter([httpx.Response(429, text=""), httpx.Response(202)])
    async with client(Recorder(lambda request: next(answers)), clock) as klaviyo:
        with pytest.raises(RetryableDeliveryError) as info:
            await klaviyo.create_event(event("o-1"))
        assert info.value.retry_after is None
        await klaviyo.create_event(event("o-2"))
    assert clock.now == 1.0


async def test_a_success_with_a_body_that_is_not_json_is_a_delivery_error() -> None:
    async with client(Recorder(lambda request: httpx.Response(200, text="<html>hi</html>"))) as klaviyo:
        with pytest.raises(DeliveryError, match="not JSON") as info:
            await klaviyo.get_profile("P1")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


async def test_a_refused_connection_on_loopback_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now: the real transport gets a refused connection.
    async with KlaviyoClient(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", limiter=AccountLimiter()) as klaviyo:
        with pytest.raises(RetryableDeliveryError, match="connection failed") as info:
            await klaviyo.create_event(event("o-1"))
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("filler", ["x", "é", "😀"])
def test_every_planned_job_is_under_5_mb_whatever_the_characters(filler: str) -> None:
    events = [event(f"u{n}", email=f"b{n}@example.com", blob=filler * 300_000) for n in range(40)]
    jobs = plan_bulk_jobs(events)
    assert [e for job in jobs for e in job] == events
    for job in jobs:
        assert len(bulk_job(job)) <= MAX_BULK_BYTES
    # Four-byte characters take four times the room: fewer events fit in each job.
    assert len(jobs) == {"x": 3, "é": 5, "😀": 10}[filler]


async def test_a_request_is_stamped_as_sent_when_its_headers_leave(serve) -> None:
    stamped: list[str] = []

    class Spy(AccountLimiter):
        async def acquire(self, endpoint: str) -> Callable[[], None]:
            sent = await super().acquire(endpoint)

            def stamp() -> None:
                stamped.append(endpoint)
                sent()

            return stamp

    with serve(fake_klaviyo.create_app()) as base_url:
        async with KlaviyoClient(api_key=API_KEY, base_url=base_url, limiter=Spy()) as klaviyo:
            await klaviyo.create_event(event("o-1"))
            await klaviyo.bulk_create_events([event("o-2"), event("o-3")])
    assert stamped == ["create_event", "bulk_create_events"]
