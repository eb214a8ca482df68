"""Turn httpx failures and non-2xx answers into our DeliveryError tree; shared by every outbound client.

    httpx.TimeoutException, httpx.TransportError, httpx.DecodingError  -> RetryableDeliveryError(status=None)
    httpx.UnsupportedProtocol (a base URL that is not http/https)       -> DeliveryError(status=None)
    a status ``retry.classify`` retries (408, 429, 5xx...)              -> RetryableDeliveryError(status, retry_after)
    any other non-2xx                                                   -> DeliveryError(status)
    a 2xx whose body is not JSON                                        -> DeliveryError(status)

Bodies are kept as text (bounded) because they may be empty, JSON, or a proxy's HTML page.
"""

from __future__ import annotations

import email.utils
import json
import re
from datetime import datetime, timezone

import httpx

from engine.errors import DeliveryError, RetryableDeliveryError
from engine.retry import classify

MAX_BODY_CHARS = 10_000
EXCERPT_CHARS = 200

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


async def send(client: httpx.AsyncClient, request: httpx.Request, *, service: str) -> httpx.Response:
    """Send ``request``; a failure to get any answer becomes a DeliveryError naming ``service``."""
    where = _where(service, request)
    try:
        return await client.send(request)
    except httpx.TimeoutException as exc:
        raise RetryableDeliveryError(f"{where}: timed out ({type(exc).__name__})") from exc
    except httpx.UnsupportedProtocol as exc:
        # A configuration mistake (e.g. "ftp://" or a missing scheme): retrying cannot help.
        raise DeliveryError(f"{where}: unsupported URL scheme in {request.url}") from exc
    except httpx.TransportError as exc:
        raise RetryableDeliveryError(f"{where}: connection failed ({type(exc).__name__}: {exc})") from exc
    except httpx.DecodingError as exc:
        # The answer arrived garbled (bad Content-Encoding), typically a proxy hiccup.
        raise RetryableDeliveryError(f"{where}: undecodable response ({exc})") from exc


def raise_for_status(response: httpx.Response, *, service: str, hint: str = "") -> None:
    """Raise the DeliveryError a non-2xx ``response`` deserves; ``hint`` is appended to the message."""
    if response.is_success:
        return
    status = response.status_code
    body = response.text[:MAX_BODY_CHARS]
    message = f"{_where(service, response.request)} answered {status}: {describe_body(body)}"
    if hint:
        message = f"{message} ({hint})"
    if classify(status) == "retry":
        raise RetryableDeliveryError(message, status=status, body=body,
                                     retry_after=parse_retry_after(response.headers.get("Retry-After")))
    raise DeliveryError(message, status=status, body=body)


def decode_json(response: httpx.Response, *, service: str) -> object:
    """The decoded JSON body of a successful ``response``."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        body = response.text[:MAX_BODY_CHARS]
        raise DeliveryError(f"{_where(service, response.request)} answered {response.status_code} "
                            f"with a body that is not JSON: {describe_body(body)}",
                            status=response.status_code, body=body) from exc


def describe_body(body: str) -> str:
    """A short human message for an error body: Klaviyo ``errors[].detail``, STORIS ``message``, else an excerpt."""
    text = body.strip()
    if not text:
        return "(empty body)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list):
            details = [str(e.get("detail") or e.get("title") or e.get("code"))
                       for e in errors if isinstance(e, dict) and (e.get("detail") or e.get("title") or e.get("code"))]
            if details:
                return "; ".join(details)
        message = data.get("message")
        if isinstance(message, str) and message.strip():
            return message.strip()
    return _excerpt(text)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _where(service: str, request: httpx.Request) -> str:
    # The path only: query strings can carry customer identifiers.
    return f"{service} {request.method} {request.url.path}"


def _excerpt(text: str) -> str:
    title = _TITLE.search(text)
    if title and title.group(1).strip():
        text = title.group(1)
    text = _SPACE.sub(" ", _TAG.sub(" ", text)).strip()
    if len(text) > EXCERPT_CHARS:
        return text[:EXCERPT_CHARS - 1] + "…"
    return text or "(no text in body)"
