"""The retry policy for deliveries: which failures are worth retrying, and how long to wait between attempts.

A failed attempt waits a random time between 0 and ``min(cap, base * factor ** (attempt - 1))`` seconds
("full jitter", so many failed deliveries do not retry in lockstep). A server's ``Retry-After`` replaces
that wait when it is longer. After ``max_attempts`` attempts the delivery is dead-lettered.

With the defaults (base 2 s, factor 2, cap 600 s, 16 attempts):

    ========================  ==================
    after failed attempt      wait at most
    ========================  ==================
    1                         2 s
    2                         4 s
    3                         8 s
    4                         16 s
    5                         32 s
    6                         64 s
    7                         128 s
    8                         256 s
    9                         512 s
    10                        600 s
    11                        600 s
    12                        600 s
    13                        600 s
    14                        600 s
    15                        600 s
    16                        none: dead letter
    ========================  ==================

so a delivery is given up after at most 4,622 s of waiting (77 minutes; about 39 on average), unless the
server asked for longer with ``Retry-After``: an outage of Klaviyo or STORIS shorter than that loses nothing
to the dead-letter queue, and a longer one is recovered with ``engine replay --status dead``.

What is retried (``classify``): no answer at all (timeout, connection error), 408, 429, 500, 502, 503,
504 and 524. Every other status, including every other 4xx, is dead-lettered at once: sending the same
request again would get the same answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

from engine.errors import DeliveryError, RetryableDeliveryError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 524})


def classify(status: int | None) -> Literal["retry", "dead"]:
    """``"retry"`` for no answer (None) and transient statuses, ``"dead"`` for everything else."""
    if status is None or status in RETRY_STATUSES:
        return "retry"
    return "dead"


class RetryPolicy:
    """Exponential backoff with full jitter; see the module docstring for the default schedule."""

    def __init__(self, *, base: float = 2.0, factor: float = 2.0, cap: float = 600.0, max_attempts: int = 16,
                 jitter: Callable[[], float] = random.random) -> None:
        if not base > 0:
            raise ValueError(f"base must be > 0 seconds, got {base!r}")
        if not factor >= 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if not cap >= base:
            raise ValueError(f"cap must be >= base ({base!r}), got {cap!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        self.base = float(base)
        self.factor = float(factor)
        self.cap = float(cap)
        self.max_attempts = max_attempts
        self._jitter = jitter

    def __repr__(self) -> str:
        return (f"RetryPolicy(base={self.base!r}, factor={self.factor!r}, cap={self.cap!r}, "
                f"max_attempts={self.max_attempts!r})")

    def max_delay(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (1-based), before jitter."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt!r}")
        # float ** int raises OverflowError past ~1e308; by then the cap applies anyway.
        try:
            return min(self.cap, self.base * self.factor ** (attempt - 1))
        except OverflowError:
            return self.cap

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt``; a longer server ``retry_after`` wins."""
        computed = self._jitter() * self.max_delay(attempt)
        if retry_after is not None and retry_after > computed:
            return float(retry_after)
        return computed

    def exhausted(self, attempts: int) -> bool:
        """True once ``attempts`` attempts have been made and none may follow."""
        return attempts >= self.max_attempts

    def retry_at(self, attempt: int, failure: DeliveryError, *, now: float) -> float | None:
        """When to try again after ``failure`` ended attempt ``attempt``; None to dead-letter it now."""
        if not isinstance(failure, RetryableDeliveryError) or self.exhausted(attempt):
            return None
        return now + self.delay(attempt, failure.retry_after)
