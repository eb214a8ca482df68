from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable

import httpx
import pytest

from engine.errors import DeliveryError, RetryableDeliveryError
from engine.storis import DEFAULT_TIMEOUT, StorisClient

pytestmark = pytest.mark.anyio

CLIENT_ID = "sunrise-patio"
SECRET = "s3cr3t-client-secret"
BASE = "https://storis.test/storisapi"
ORDERS = {"success": True, "message": None, "data": {"orders": [{"id": "S-100"}]}}



class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeStoris:
    """Issues numbered tokens; answers API calls through ``api`` when the bearer token is current."""

    def __init__(self, api: Callable[[httpx.Request], httpx.Response] | None = None, *, expires_in: float = 1) -> None:
        self.api = api or (lambda request: httpx.Response(200, json=ORDERS))
        self.expires_in = expires_in
        self.auth_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        self.valid: set[str] = set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let concurrent callers interleave, as over a network
        if request.url.path.endswith("/api/authenticate"):
            self.auth_requests.append(request)
            token = f"tok-{len(self.auth_requests)}"
            self.valid = {token}
            return httpx.Response(200, json={"success": True, "message": None, "token": {
                "access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}})
        self.api_requests.append(request)
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json={"success": False, "message": "Authorization has been denied."})
        return self.api(request)

    def revoke(self) -> None:
        self.valid = set()


def storis(handler: Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response],
           clock: Clock | None = None) -> StorisClient:
    return StorisClient(base_url=BASE, client_id=CLIENT_ID, client_secret=SECRET,
                        transport=httpx.MockTransport(handler), clock=clock or Clock())


async def test_authenticates_with_basic_then_calls_with_the_bearer_token() -> None:
    fake = FakeStoris()
    async with storis(fake) as client:
        assert await client.get("/api/Orders/Detail", {"OrderIds": "S-100"}) == ORDERS
    (auth,) = fake.auth_requests
    assert auth.method == "POST" and str(auth.url) == f"{BASE}/api/authenticate"
    assert auth.headers["Authorization"] == "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    (call,) = fake.api_requests
    assert str(call.url) == f"{BASE}/api/Orders/Detail?OrderIds=S-100"
    assert call.headers["Authorization"] == "Bearer tok-1"


async def test_repeated_query_parameters_are_kept() -> None:
    fake = FakeStoris()
    async with storis(fake) as client:
        await client.get("api/Products/Detail", [("ProductIds", "P1"), ("ProductIds", "P2")])
    assert str(fake.api_requests[0].url) == f"{BASE}/api/Products/Detail?ProductIds=P1&ProductIds=P2"


async def test_the_token_is_reused_until_shortly_before_it_expires() -> None:
    fake, clock = FakeStoris(expires_in=1), Clock()
    async with storis(fake, clock) as client:
        await client.get("/api/Orders/Detail")
        clock.now += 86_400 - 301  # still more than five minutes left
        await client.get("/api/Orders/Detail")
        assert len(fake.auth_requests) == 1
        clock.now += 1  # five minutes left: refresh now rather than mid-call
        await client.get("/api/Orders/Detail")
    assert len(fake.auth_requests) == 2
    assert fake.api_requests[-1].headers["Authorization"] == "Bearer tok-2"


async def test_a_short_lived_token_is_refreshed_at_half_its_life() -> None:
    fake, clock = FakeStoris(expires_in=0.001), Clock()  # 86.4 s
    async with storis(fake, clock) as client:
        await client.get("/api/Orders/Detail")
        clock.now += 43.0
        await client.get("/api/Orders/Detail")
        assert len(fake.auth_requests) == 1
        clock.now += 0.5
        await client.get("/api/Orders/Detail")
    assert len(fake.auth_requests) == 2


async def test_a_401_reauthenticates_once_and_retries_the_call_once() -> None:
    fake = FakeStoris()
    async with storis(fake) as client:
        await client.get("/api/Orders/Detail")
        fake.revoke()
        assert await client.get("/api/Orders/Detail") == ORDERS
    assert len(fake.auth_requests) == 2
    assert [r.headers["Authorization"] for r in fake.api_requests] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


async def test_a_second_401_is_an_error_not_a_loop() -> None:
    fake = FakeStoris(api=lambda request: httpx.Response(401, json={"success": False, "message": "Denied."}))
    async with storis(fake) as client:
        with pytest.raises(DeliveryError, match="answered 401: Denied.") as info:
            await client.get("/api/Orders/Detail")
    assert info.value.status == 401 and not isinstance(info.value, RetryableDeliveryError)
    assert (len(fake.auth_requests), len(fake.api_requests)) == (2, 2)


async def test_concurrent_callers_share_one_authentication() -> None:
    fake = FakeStoris()
    async with storis(fake) as client:
        await asyncio.gather(*(client.get("/api/Orders/Detail") for _ in range(10)))
        assert len(fake.auth_requests) == 1
        fake.revoke()
        await asyncio.gather(*(client.get("/api/Orders/Detail") for _ in range(10)))
    assert len(fake.auth_requests) == 2
    assert len(fake.api_requests) == 30


@pytest.mark.parametrize("answer", [
    httpx.Response(401, json={"success": False, "message": "Invalid client."}),
    httpx.Response(403, text=""),
    httpx.Response(200, json={"success": False, "message": "Invalid client credentials.", "token": None}),
])
async def test_wrong_credentials_get_a_plain_message(answer: httpx.Response) -> None:
    async with storis(lambda request: answer) as client:
        with pytest.raises(DeliveryError) as info:
            await client.get("/api/Orders/Detail")
    assert str(info.value).startswith("STORIS rejected the client id/secret")
    assert not isinstance(info.value, RetryableDeliveryError)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("payload", [
    {"success": True, "message": None},
    {"success": True, "token": {"access_token": "", "expires_in": 1}},
    {"success": True, "token": {"access_token": "t", "expires_in": "1"}},
    {"success": True, "token": {"access_token": "t", "expires_in": True}},
])
async def test_an_unusable_token_answer_is_an_error(payload: dict) -> None:
    async with storis(lambda request: httpx.Response(200, json=payload)) as client:
        with pytest.raises(DeliveryError, match="no usable token"):
            await client.get("/api/Orders/Detail")


async def test_an_unavailable_authentication_is_retryable() -> None:
    async with storis(lambda request: httpx.Response(503, headers={"Retry-After": "30"}, text="")) as client:
        with pytest.raises(RetryableDeliveryError) as info:
            await client.get("/api/Orders/Detail")
    assert (info.value.status, info.value.retry_after) == (503, 30.0)


async def test_success_false_carries_storis_message() -> None:
    refused = {"success": False, "message": "Webhook events are not enabled for this account."}
    fake = FakeStoris(api=lambda request: httpx.Response(200, json=refused))
    async with storis(fake) as client:
        with pytest.raises(DeliveryError, match="events are not enabled for this account") as info:
            await client.request("POST", "/api/Webhooks/Subscriptions", json={"eventType": "OrderWrittenSale",
                                                                             "url": "https://hooks.test/x"})
    assert not isinstance(info.value, RetryableDeliveryError)
    assert json.loads(info.value.body) == refused


async def test_request_sends_json_writes() -> None:
    fake = FakeStoris(api=lambda request: httpx.Response(200, json={"success": True, "message": "Updated"}))
    async with storis(fake) as client:
        answer = await client.request("put", "/api/Customers/Update", json={"customerId": "C1", "okToSolicit": False})
    assert answer == {"success": True, "message": "Updated"}
    (call,) = fake.api_requests
    assert call.method == "PUT"
    assert json.loads(call.content) == {"customerId": "C1", "okToSolicit": False}
    assert call.headers["Content-Type"] == "application/json"


async def test_an_empty_success_is_an_empty_dict() -> None:
    async with storis(FakeStoris(api=lambda request: httpx.Response(204))) as client:
        assert await client.request("DELETE", "/api/Webhooks/Subscriptions/1") == {}


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"null"])
async def test_json_that_is_not_an_object_is_an_error(payload: bytes) -> None:
    async with storis(FakeStoris(api=lambda request: httpx.Response(200, content=payload))) as client:
        with pytest.raises(DeliveryError, match="not an object"):
            await client.get("/api/Orders/Detail")


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
@pytest.mark.parametrize("during", ["authenticate", "call"])
async def test_network_failures_are_translated_like_klaviyos(exc_type: type[httpx.HTTPError], during: str) -> None:
    fake = FakeStoris()

    async def flaky(request: httpx.Request) -> httpx.Response:
        if (during == "authenticate") == request.url.path.endswith("/api/authenticate"):
            raise exc_type("boom", request=request)
        return await fake(request)

    async with storis(flaky) as client:
        with pytest.raises(RetryableDeliveryError) as info:
            await client.get("/api/Orders/Detail")
    assert info.value.status is None and isinstance(info.value.__cause__, exc_type)
    assert str(info.value).startswith("STORIS ")


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (502, True), (429, True), (404, False), (400, False)])
async def test_statuses_are_classified(status: int, retryable: bool) -> None:
    fake = FakeStoris(api=lambda request: httpx.Response(status, json={"success": False, "message": "Nope."}))
    async with storis(fake) as client:
        with pytest.raises(DeliveryError, match=f"STORIS GET /storisapi/api/Orders/Detail answered {status}: ") as info:
            await client.get("/api/Orders/Detail")
    assert str(info.value).endswith(f"answered {status}: Nope.")
    assert isinstance(info.value, RetryableDeliveryError) is retryable


async def test_the_secret_and_token_never_reach_logs_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeStoris()
    async with storis(fake) as client:
        await client.get("/api/Orders/Detail")
        fake.revoke()
        await client.get("/api/Orders/Detail")
        assert SECRET not in repr(client)
    assert "STORIS authenticated client id sunrise-patio" in caplog.text
    for secret in (SECRET, "tok-1", "tok-2", base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()):
        assert secret not in caplog.text


def test_timeouts_are_explicit() -> None:
    timeout = DEFAULT_TIMEOUT
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (5, 30, 15, 5)


def test_credentials_are_required() -> None:
    with pytest.raises(ValueError, match="client_id and client_secret"):
        StorisClient(base_url=BASE, client_id=CLIENT_ID, client_secret="")
