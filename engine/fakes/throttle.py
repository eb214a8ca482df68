"""Klaviyo's rate limiting as the fake Klaviyo enforces it.

Requests are counted per API key (one key is one account here) and endpoint, in fixed windows of 1 s (burst)
and 60 s (steady). A window opens with the first request after the previous one closed, rather than on the
clock's second, so a test that sends ``burst + 1`` requests at once reliably sees exactly one 429.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

SPANS = (1.0, 60.0)


class Limits:
    """Requests allowed per API key and endpoint, as ``(per second, per minute)`` by Klaviyo operation id.

    The defaults are the ``x-klaviyo-ratelimit`` values of Klaviyo's OpenAPI files (revision 2026-07-15);
    tests pass smaller ones, e.g. ``Limits(create_event=(2, 5))``.
    """

    def __init__(
        self,
        *,
        create_event: tuple[int, int] = (350, 3_500),
        bulk_create_events: tuple[int, int] = (10, 150),
        bulk_subscribe_profiles: tuple[int, int] = (75, 750),
        get_accounts: tuple[int, int] = (1, 15),
        get_list: tuple[int, int] = (75, 750),
        get_profile: tuple[int, int] = (75, 750),
    ) -> None:
        self.by_endpoint: dict[str, tuple[int, int]] = {
            "create_event": create_event,
            "bulk_create_events": bulk_create_events,
            "bulk_subscribe_profiles": bulk_subscribe_profiles,
            "get_accounts": get_accounts,
            "get_list": get_list,
            "get_profile": get_profile,
        }
        for name, pair in self.by_endpoint.items():
            if (not isinstance(pair, tuple) or len(pair) != 2
                    or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in pair)):
                raise ValueError(f"{name}: expected (per_second, per_minute) as two positive integers, got {pair!r}")

    def __repr__(self) -> str:
        return "Limits(" + ", ".join(f"{name}={pair!r}" for name, pair in self.by_endpoint.items()) + ")"


@dataclass(frozen=True)
class Verdict:
    """The answer for one request: allowed or not, and the ``RateLimit-*`` / ``Retry-After`` numbers.

    ``limit``, ``remaining`` and ``reset`` describe the window closest to its limit; when the request is
    refused, ``reset`` is the whole seconds (at least 1) until every full window has closed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: int


class FixedWindows:
    """Request counts per (API key, endpoint) in the current 1 s and 60 s windows."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        # (key, endpoint) -> [[window start, count] per span in SPANS]
        self._windows: dict[tuple[str, str], list[list[float]]] = {}

    def clear(self) -> None:
        self._windows.clear()

    def now(self) -> float:
        return self._clock()

    def hit(self, key: str, endpoint: str, *, arrived: float | None = None) -> Verdict:
        """Count one request of ``key`` to ``endpoint``, unless a window is full.

        ``arrived`` (from ``now()``) is when the request came in, if it is being counted later."""
        now = self._clock() if arrived is None else arrived
        caps = self.limits.by_endpoint[endpoint]
        windows = self._windows.setdefault((key, endpoint), [[now, 0] for _ in SPANS])
        for window, span in zip(windows, SPANS):
            if now - window[0] >= span:
                window[0], window[1] = now, 0
        resets = [max(1, math.ceil(window[0] + span - now)) for window, span in zip(windows, SPANS)]
        full = [(reset, cap) for window, cap, reset in zip(windows, caps, resets) if window[1] >= cap]
        if full:
            reset, cap = max(full)
            return Verdict(allowed=False, limit=cap, remaining=0, reset=reset)
        for window in windows:
            window[1] += 1
        remaining, cap, reset = min(
            (int(cap - window[1]), cap, reset) for window, cap, reset in zip(windows, caps, resets))
        return Verdict(allowed=True, limit=cap, remaining=remaining, reset=reset)
