"""What the fake STORIS and the fake Klaviyo share: the failure switch, JSON bodies, mount-relative paths.

The failure switch is set with ``POST /_fail`` and applies to the fake's API routes only:

    {"status": 503, "count": 3}                    the next 3 requests get 503 and the fake's usual error body
    {"status": 429, "retry_after": 2, "count": 1}  ...with ``Retry-After: 2``
    {"mode": "empty", "status": 502}               an empty body
    {"mode": "html", "status": 503}                a proxy's HTML challenge page
    {"mode": "timeout", "seconds": 30}             sleep, then answer as usual (the client has usually given up)
    {"mode": "ok"}                                 back to normal

``count`` omitted or null means "until {"mode": "ok"}".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope

MODES = ("status", "empty", "html", "timeout")

CHALLENGE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><title>Just a moment...</title></head>
<body><h1>Checking your browser before accessing the site.</h1>
<p>This process is automatic. Your browser will redirect to your requested content shortly.</p></body></html>
"""

ErrorResponse = Callable[[int, int | None], Response]
"""Builds a fake's own error answer for ``(status, retry_after)``."""


class BadRequest(Exception):
    """A request body the fake cannot act on; each fake answers it in its own error shape with 400."""


@dataclass(frozen=True)
class Failure:
    """One way to fail a request, as set by ``POST /_fail``."""

    mode: str = "status"
    status: int = 503
    retry_after: int | None = None
    seconds: float = 0.0

    @classmethod
    def parse(cls, spec: object) -> tuple[Failure | None, int | None]:
        """The failure ``spec`` asks for (None for {"mode": "ok"}) and how many requests it applies to."""
        if not isinstance(spec, dict):
            raise BadRequest(f"expected a JSON object, got {type(spec).__name__}")
        unknown = sorted(set(spec) - {"mode", "status", "count", "retry_after", "seconds"})
        if unknown:
            raise BadRequest(f"unknown keys {unknown}; allowed: mode, status, count, retry_after, seconds")
        mode = spec.get("mode", "status")
        if mode == "ok":
            return None, None
        if mode not in MODES:
            raise BadRequest(f"mode: expected one of ok, {', '.join(MODES)}; got {mode!r}")
        status = spec.get("status", 503)
        if not _is_int(status) or not 200 <= status <= 599:
            raise BadRequest(f"status: expected an HTTP status from 200 to 599, got {status!r}")
        count = spec.get("count")
        if count is not None and (not _is_int(count) or count < 1):
            raise BadRequest(f"count: expected a positive integer or null, got {count!r}")
        retry_after = spec.get("retry_after")
        if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
            raise BadRequest(f"retry_after: expected whole seconds, got {retry_after!r}")
        seconds = spec.get("seconds", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise BadRequest(f"seconds: expected a number of seconds, got {seconds!r}")
        return cls(mode=mode, status=status, retry_after=retry_after, seconds=float(seconds)), count

    async def respond(self, error: ErrorResponse) -> Response | None:
        """The failing answer, or None after a timeout's sleep, when the request goes on as usual."""
        if self.mode == "timeout":
            await asyncio.sleep(self.seconds)
            return None
        if self.mode == "empty":
            response: Response = Response(b"", status_code=self.status)
        elif self.mode == "html":
            response = HTMLResponse(CHALLENGE_PAGE, status_code=self.status)
        else:
            response = error(self.status, self.retry_after)
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        return response


class FailureSwitch:
    """The failure currently set, and how many more requests it applies to (None: until cleared)."""

    def __init__(self) -> None:
        self._failure: Failure | None = None
        self._remaining: int | None = None

    def __repr__(self) -> str:
        return f"FailureSwitch({self.describe()!r})"

    def set(self, spec: object) -> None:
        """Apply a ``POST /_fail`` body; raises BadRequest naming the bad key."""
        self._failure, self._remaining = Failure.parse(spec)

    def clear(self) -> None:
        self._failure, self._remaining = None, None

    def take(self) -> Failure | None:
        """The failure for the request arriving now, counting it against ``count``."""
        failure = self._failure
        if failure is not None and self._remaining is not None:
            self._remaining -= 1
            if self._remaining == 0:
                self.clear()
        return failure

    def describe(self) -> dict[str, Any] | None:
        if self._failure is None:
            return None
        return {**asdict(self._failure), "count": self._remaining}


def fail_endpoint(switch: FailureSwitch) -> Callable[[Request], Awaitable[Response]]:
    """The ``POST /_fail`` handler for ``switch``."""
    async def endpoint(request: Request) -> Response:
        try:
            switch.set(parse_json(await request.body()))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"failure": switch.describe()})
    return endpoint


def parse_json(raw: bytes) -> Any:
    """The decoded JSON body; raises BadRequest when it is not JSON."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc


def relative_path(scope: Scope) -> str:
    """The request path below where the fake is mounted, so logs read the same standalone and in demo mode."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
