from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from engine.errors import DeliveryError, RetryableDeliveryError
from engine.http_errors import MAX_BODY_CHARS, decode_json, describe_body, parse_retry_after, raise_for_status, send

pytestmark = pytest.mark.anyio

REQUEST = httpx.Request("POST", "https://example.test/api/events")

# Every httpx exception `send` catches, by the class it is caught as, and whether a retry may help.
FOREIGN = [
    (httpx.ConnectTimeout("t", request=REQUEST), True),
    (httpx.ReadTimeout("t", request=REQUEST), True),
    (httpx.WriteTimeout("t", request=REQUEST), True),
    (httpx.PoolTimeout("t", request=REQUEST), True),
    (httpx.ConnectError("refused", request=REQUEST), True),
    (httpx.ReadError("reset", request=REQUEST), True),
    (httpx.WriteError("broken pipe", request=REQUEST), True),
    (httpx.CloseError("close", request=REQUEST), True),
    (httpx.RemoteProtocolError("bad", request=REQUEST), True),
    (httpx.LocalProtocolError("bad", request=REQUEST), True),
    (httpx.ProxyError("proxy", request=REQUEST), True),
    (httpx.DecodingError("gzip", request=REQUEST), True),
    (httpx.UnsupportedProtocol("ftp", request=REQUEST), False),
]



@pytest.mark.parametrize(("exc", "retryable"), FOREIGN, ids=[type(e).__name__ for e, _ in FOREIGN])
async def test_every_caught_httpx_exception_is_translated(exc: Exception, retryable: bool) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(DeliveryError) as info:
            await send(client, client.build_request("GET", "https://example.test/api/x"), service="Klaviyo")
    assert isinstance(info.value, RetryableDeliveryError) is retryable
    assert info.value.status is None
    assert info.value.__cause__ is exc
    assert str(info.value).startswith("Klaviyo GET /api/x: ")


def response(status: int, body: bytes | str = b"", headers: dict | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers=headers, request=REQUEST)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_success_passes(status: int) -> None:
    raise_for_status(response(status), service="Klaviyo")


@pytest.mark.parametrize(("status", "retryable"), [
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (524, True),
    (400, False), (401, False), (403, False), (404, False), (409, False), (410, False), (422, False), (501, False),
])
def test_statuses_become_delivery_errors(status: int, retryable: bool) -> None:
    with pytest.raises(DeliveryError) as info:
        raise_for_status(response(status, "oops"), service="Klaviyo", hint="a hint")
    assert isinstance(info.value, RetryableDeliveryError) is retryable
    assert (info.value.status, info.value.body) == (status, "oops")
    assert str(info.value) == f"Klaviyo POST /api/events answered {status}: oops (a hint)"


def test_retry_after_is_carried_on_retryable_errors() -> None:
    with pytest.raises(RetryableDeliveryError) as info:
        raise_for_status(response(503, "", {"Retry-After": "12"}), service="Klaviyo")
    assert info.value.retry_after == 12.0


def test_bodies_are_kept_bounded() -> None:
    with pytest.raises(DeliveryError) as info:
        raise_for_status(response(400, "x" * (MAX_BODY_CHARS * 2)), service="Klaviyo")
    assert len(info.value.body) == MAX_BODY_CHARS
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(("body", "expected"), [
    ('{"errors": [{"id": "1", "code": "invalid", "title": "Invalid input.", "detail": "The email is invalid."},'
     ' {"id": "2", "code": "invalid", "title": "Invalid input.", "detail": "time is in the future."}]}',
     "The email is invalid.; time is in the future."),
    ('{"errors": [{"code": "throttled", "title": "Request was throttled."}]}', "Request was throttled."),
    ('{"success": false, "message": "Events are not enabled for this account."}',
     "Events are not enabled for this account."),
    ("", "(empty body)"),
    ("   \n", "(empty body)"),
    ("<html><head><title>Just a moment...</title></head><body><script>x()</script></body></html>",
     "Just a moment..."),
    ("<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>", "502 Bad Gateway nginx"),
    ('{"errors": "not a list"}', '{"errors": "not a list"}'),
    ("[1, 2]", "[1, 2]"),
    ("{not json", "{not json"),
])
def test_describe_body_reads_what_it_can(body: str, expected: str) -> None:
    assert describe_body(body) == expected


def test_describe_body_cuts_long_text() -> None:
    described = describe_body("word " * 1_000)
    assert len(described) == 200 and described.endswith("…")


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("7", 7.0), (" 0 ", 0.0), ("soon", None), ("-3", None), ("1.5", None),
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: go now
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize("content", [b"<html>challenge</html>", b"", b"\xff\xfe\xfa not utf-8 {"])
def test_decode_json_translates_undecodable_bodies(content: bytes) -> None:
    with pytest.raises(DeliveryError, match="not JSON") as info:
        decode_json(response(200, content), service="STORIS")
    assert info.value.status == 200
    assert info.value.__cause__ is not None
