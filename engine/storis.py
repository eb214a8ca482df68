"""The STORIS API client: bearer-token authentication, and reads and writes of wrapped JSON responses.

``POST /api/authenticate`` with HTTP Basic (client id, secret) returns a token valid for ``expires_in``
DAYS. The token is cached until shortly before it expires; concurrent callers share one authentication;
a 401 from any call re-authenticates once and retries that call once. Responses are wrapped as
``{"success", "message", "data"}``; ``success: false`` becomes a DeliveryError carrying STORIS's message.
Failures are translated like Klaviyo's (engine/http_errors.py). The secret and token are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from types import TracebackType

import httpx

from engine.errors import DeliveryError
from engine.http_errors import MAX_BODY_CHARS, decode_json, raise_for_status, send

SERVICE = "STORIS"
AUTH_PATH = "/api/authenticate"
# STORIS detail calls can be slow on large orders; reads get more time than Klaviyo's.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=15.0, pool=5.0)
SECONDS_PER_DAY = 86_400.0
# Refresh this long before expiry (or at half the lifetime, if shorter), so no call carries a dying token.
REFRESH_MARGIN = 300.0

logger = logging.getLogger(__name__)


class StorisClient:
    """One STORIS tenant. Use as ``async with StorisClient(base_url=..., client_id=..., client_secret=...) as s:``."""

    def __init__(self, *, base_url: str, client_id: str, client_secret: str,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must both be non-empty")
        self.base_url = base_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport,
                                       headers={"Accept": "application/json"})
        self._auth_lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = float("-inf")

    def __repr__(self) -> str:
        return f"StorisClient(base_url={self.base_url!r}, client_id={self.client_id!r})"

    async def __aenter__(self) -> StorisClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: dict | list[tuple] | None = None) -> dict:
        """GET ``path`` (e.g. ``/api/Orders/Detail``) and return the decoded, successful wrapped response."""
        return await self._call("GET", path, params=params)

    async def request(self, method: str, path: str, json: object = None) -> dict:
        """Send a write (customer update, webhook subscription) and return the decoded wrapped response."""
        return await self._call(method.upper(), path, json=json)

    async def _call(self, method: str, path: str, *, params: dict | list[tuple] | None = None,
                    json: object = None) -> dict:
        token = await self._bearer()
        response = await self._send(method, path, token, params, json)
        if response.status_code == 401:
            # The token may have been revoked or expired early: authenticate again, once.
            await self._forget(token)
            token = await self._bearer()
            response = await self._send(method, path, token, params, json)
        raise_for_status(response, service=SERVICE)
        return _unwrap(response)

    async def _send(self, method: str, path: str, token: str, params: dict | list[tuple] | None,
                    json: object) -> httpx.Response:
        request = self._http.build_request(method, path, params=params, json=json,
                                           headers={"Authorization": f"Bearer {token}"})
        return await send(self._http, request, service=SERVICE)

    async def _bearer(self) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._auth_lock:
            # Whoever held the lock before us may already have authenticated.
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            return await self._authenticate()

    async def _forget(self, token: str) -> None:
        async with self._auth_lock:
            # Only drop the token that failed: a concurrent caller may have replaced it already.
            if self._token == token:
                self._token = None

    async def _authenticate(self) -> str:
        basic = base64.b64encode(f"{self.client_id}:{self._client_secret}".encode()).decode()
        request = self._http.build_request("POST", AUTH_PATH, headers={"Authorization": f"Basic {basic}"})
        response = await send(self._http, request, service=SERVICE)
        if response.status_code in (401, 403):
            raise DeliveryError(f"STORIS rejected the client id/secret (client id {self.client_id!r}, "
                                f"answer {response.status_code})", status=response.status_code)
        raise_for_status(response, service=SERVICE)
        document = decode_json(response, service=SERVICE)
        if not isinstance(document, dict) or document.get("success") is not True:
            message = document.get("message") if isinstance(document, dict) else None
            raise DeliveryError(f"STORIS rejected the client id/secret (client id {self.client_id!r})"
                                + (f": {message}" if message else ""), status=response.status_code)
        token = document.get("token")
        access_token = token.get("access_token") if isinstance(token, dict) else None
        expires_in = token.get("expires_in") if isinstance(token, dict) else None
        if (not isinstance(access_token, str) or not access_token
                or isinstance(expires_in, bool) or not isinstance(expires_in, (int, float))):
            raise DeliveryError("STORIS authenticated but sent no usable token (token.access_token, "
                                "token.expires_in)", status=response.status_code)
        lifetime = float(expires_in) * SECONDS_PER_DAY
        self._token = access_token
        self._refresh_at = self._clock() + lifetime - min(REFRESH_MARGIN, lifetime / 2)
        logger.info("STORIS authenticated client id %s; token valid for %s day(s)", self.client_id, expires_in)
        return access_token


def _unwrap(response: httpx.Response) -> dict:
    if not response.content.strip():
        return {}
    document = decode_json(response, service=SERVICE)
    where = f"{SERVICE} {response.request.method} {response.request.url.path}"
    body = response.text[:MAX_BODY_CHARS]
    if not isinstance(document, dict):
        raise DeliveryError(f"{where} answered with JSON that is not an object", status=response.status_code, body=body)
    if document.get("success") is False:
        message = document.get("message") or "no message"
        raise DeliveryError(f"{where} failed: {message}", status=response.status_code, body=body)
    return document
