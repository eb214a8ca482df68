"""Client-side rate limiting, so we stay within each Klaviyo account's limits by ourselves.

Klaviyo counts requests per account and endpoint in fixed windows of 1 s (burst) and 60 s (steady).
Their windows are not aligned with our clock, so we keep a sliding log: no 1-second span ever holds more
than ``burst`` of our requests and no 60-second span more than ``steady``, which keeps every one of their
fixed windows within limits too. After a 429, ``block`` pauses every request of the account until the
server's ``Retry-After`` has passed.

The limits are the ``x-klaviyo-ratelimit`` values of Klaviyo's OpenAPI files (revision 2026-07-15),
keyed by operation id.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Limit:
    """At most ``burst`` requests in any 1-second span and ``steady`` in any 60-second span."""

    burst: int
    steady: int

    def __post_init__(self) -> None:
        if self.burst < 1 or self.steady < self.burst:
            raise ValueError(f"need 1 <= burst <= steady, got {self!r}")


LIMITS: Mapping[str, Limit] = MappingProxyType({
    "create_event": Limit(burst=350, steady=3_500),
    "bulk_create_events": Limit(burst=10, steady=150),
    "bulk_subscribe_profiles": Limit(burst=75, steady=750),
    "get_profile": Limit(burst=75, steady=750),
    "get_accounts": Limit(burst=1, steady=15),
    "get_list": Limit(burst=75, steady=750),
    "get_event": Limit(burst=10, steady=150),
    "create_webhook": Limit(burst=1, steady=15),
    "get_webhook_topics": Limit(burst=1, steady=15),
})

BURST_SECONDS = 1.0
STEADY_SECONDS = 60.0
# Requests reach Klaviyo a little later than we send them, and not always equally late: a request sent
# exactly one window after another may land inside the server's window. A margin absorbs that jitter.
TRANSIT_MARGIN = 0.05


class _Window:
    """The send times of one endpoint's latest requests: enough of them to check both spans in O(1).

    Each time is a one-item list, so that a request can be stamped again when it actually leaves."""

    __slots__ = ("second", "minute")

    def __init__(self, limit: Limit) -> None:
        # A full deque's oldest entry is the request `burst` (or `steady`) sends ago; appending evicts it.
        self.second: deque[list[float]] = deque(maxlen=limit.burst)
        self.minute: deque[list[float]] = deque(maxlen=limit.steady)

    def wait(self, now: float) -> float:
        wait = 0.0
        if len(self.second) == self.second.maxlen:
            wait = self.second[0][0] + BURST_SECONDS + TRANSIT_MARGIN - now
        if len(self.minute) == self.minute.maxlen:
            wait = max(wait, self.minute[0][0] + STEADY_SECONDS + TRANSIT_MARGIN - now)
        return wait

    def record(self, now: float) -> list[float]:
        stamp = [now]
        self.second.append(stamp)
        self.minute.append(stamp)
        return stamp


class AccountLimiter:
    """Rate limits of one Klaviyo account: one sliding window per endpoint, one 429 block for them all."""

    def __init__(self, *, limits: Mapping[str, Limit] = LIMITS, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._windows: dict[str, _Window] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._blocked_until = float("-inf")

    def __repr__(self) -> str:
        return f"AccountLimiter(endpoints={sorted(self._windows)!r}, blocked_until={self._blocked_until!r})"

    async def acquire(self, endpoint: str) -> Callable[[], None]:
        """Wait until a request to ``endpoint`` (an operation id in ``limits``) may be sent, and count it.

        Call the function returned when the request actually leaves: it may first wait for a connection or
        for a busy event loop, and the requests after it are paced from when it left, as Klaviyo counts."""
        window = self._windows.get(endpoint)
        if window is None:
            if endpoint not in self._limits:
                raise ValueError(f"no rate limit known for endpoint {endpoint!r}; known: {sorted(self._limits)}")
            window = self._windows[endpoint] = _Window(self._limits[endpoint])
        # Waiters queue on a FIFO lock so only the head watches the clock: with thousands of queued
        # requests, waking all of them at every free slot would cost O(n) per request.
        async with self._lock(endpoint):
            while True:
                now = self._clock()
                wait = max(self._blocked_until - now, window.wait(now))
                if wait <= 0:
                    return self._sent(window.record(now))
                await self._sleep(wait)

    def _sent(self, stamp: list[float]) -> Callable[[], None]:
        def sent() -> None:
            stamp[0] = max(stamp[0], self._clock())

        return sent

    def block(self, seconds: float) -> None:
        """Hold every request of this account, any endpoint, for ``seconds`` from now (after a 429)."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def _lock(self, endpoint: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # An asyncio.Lock is bound to the loop it first waited in; a process-wide limiter can outlive a loop.
            self._loop = loop
            self._locks.clear()
        lock = self._locks.get(endpoint)
        if lock is None:
            lock = self._locks[endpoint] = asyncio.Lock()
        return lock


def key_hash(api_key: str) -> str:
    """A stable, non-reversible name for an API key, safe to keep in memory maps and logs."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class LimiterRegistry:
    """One AccountLimiter per API key (by hash), so every client of the same account shares its limits."""

    def __init__(self, *, limits: Mapping[str, Limit] = LIMITS, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._limiters: dict[str, AccountLimiter] = {}

    def __repr__(self) -> str:
        return f"LimiterRegistry(accounts={len(self._limiters)})"

    def for_api_key(self, api_key: str) -> AccountLimiter:
        key = key_hash(api_key)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AccountLimiter(limits=self._limits, clock=self._clock, sleep=self._sleep)
        return limiter


# Klaviyo's limits are per account for the whole process, whichever client or task sends.
SHARED_LIMITERS = LimiterRegistry()
