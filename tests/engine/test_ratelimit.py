from __future__ import annotations

import asyncio
import random
import time

import pytest

from engine.ratelimit import LIMITS, TRANSIT_MARGIN, AccountLimiter, Limit, LimiterRegistry, key_hash

pytestmark = pytest.mark.anyio



class FakeClock:
    """A clock that only moves when someone sleeps on it, so tests never really wait."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def limiter(clock: FakeClock, **limits: Limit) -> AccountLimiter:
    return AccountLimiter(limits=limits or LIMITS, clock=clock, sleep=clock.sleep)


def assert_within(times: list[float], limit: Limit) -> None:
    """No 1-second span holds more than burst, no 60-second span more than steady."""
    for count, span in ((limit.burst, 1.0), (limit.steady, 60.0)):
        for first, last in zip(times, times[count:]):
            assert last - first >= span - 1e-9, f"{count + 1} requests within {last - first} s"


def test_published_limits() -> None:
    assert LIMITS["create_event"] == Limit(burst=350, steady=3_500)
    assert LIMITS["bulk_create_events"] == Limit(burst=10, steady=150)
    assert LIMITS["bulk_subscribe_profiles"] == Limit(burst=75, steady=750)
    assert LIMITS["get_accounts"] == Limit(burst=1, steady=15)


async def test_the_351st_create_event_in_a_second_waits_for_the_first_to_leave_the_window() -> None:
    clock = FakeClock(100.0)
    account = limiter(clock)
    for _ in range(350):
        await account.acquire("create_event")
    assert clock.sleeps == []
    await account.acquire("create_event")
    assert clock.sleeps == [pytest.approx(1.0 + TRANSIT_MARGIN)]
    assert clock.now == pytest.approx(101.0 + TRANSIT_MARGIN)


async def test_the_window_slides_instead_of_resetting_on_whole_seconds() -> None:
    clock = FakeClock(0.5)
    account = limiter(clock, e=Limit(burst=2, steady=100))
    await account.acquire("e")
    await account.acquire("e")
    clock.now = 1.2  # a new fixed second, but only 0.7 s since the first request
    await account.acquire("e")
    assert clock.now == pytest.approx(1.5 + TRANSIT_MARGIN)


async def test_the_3501st_create_event_in_a_minute_waits_for_the_minute() -> None:
    clock = FakeClock()
    account = limiter(clock)
    for _ in range(3_500):
        await account.acquire("create_event")
    assert clock.now == pytest.approx(9 * (1.0 + TRANSIT_MARGIN))  # ten bursts of 350, one a second
    await account.acquire("create_event")
    assert clock.now == pytest.approx(60.0 + TRANSIT_MARGIN)


async def test_block_holds_every_endpoint_of_the_account_but_not_other_accounts() -> None:
    clock = FakeClock()
    registry = LimiterRegistry(clock=clock, sleep=clock.sleep)
    blocked, other = registry.for_api_key("pk_one"), registry.for_api_key("pk_two")
    await blocked.acquire("create_event")
    blocked.block(2)
    await other.acquire("create_event")
    assert clock.now == 0.0
    await blocked.acquire("get_profile")
    assert clock.now == 2.0
    await blocked.acquire("create_event")
    assert clock.now == 2.0  # the block is over; the next request goes at once


async def test_a_shorter_block_does_not_shorten_a_longer_one() -> None:
    clock = FakeClock()
    account = limiter(clock)
    account.block(5)
    account.block(1)
    await account.acquire("create_event")
    assert clock.now == 5.0


async def test_a_block_arriving_while_requests_wait_holds_them_too() -> None:
    clock = FakeClock()
    account = limiter(clock, e=Limit(burst=1, steady=100))
    await account.acquire("e")
    waiting = asyncio.ensure_future(account.acquire("e"))
    await asyncio.sleep(0)  # the waiter is now asleep until its slot, just after t=1
    assert clock.sleeps == [pytest.approx(1.0 + TRANSIT_MARGIN)]
    account.block(3)  # a 429 elsewhere, as the slot comes
    await waiting
    assert clock.sleeps == [pytest.approx(1.0 + TRANSIT_MARGIN), 3.0]
    assert clock.now == pytest.approx(4.0 + TRANSIT_MARGIN)


async def test_concurrent_callers_stay_within_both_windows_in_arrival_order() -> None:
    clock = FakeClock()
    limit = Limit(burst=4, steady=30)
    account = limiter(clock, e=limit)
    rng = random.Random(7)
    granted: list[tuple[float, int]] = []

    async def caller(n: int) -> None:
        await account.acquire("e")
        granted.append((clock.now, n))

    tasks = []
    for n in range(200):
        clock.now += rng.choice([0.0, 0.0, 0.05, 0.3, 2.0])
        tasks.append(asyncio.ensure_future(caller(n)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    times = [t for t, _ in granted]
    assert times == sorted(times)
    assert [n for _, n in granted] == list(range(200))
    assert_within(times, limit)


async def test_unknown_endpoints_are_refused() -> None:
    with pytest.raises(ValueError, match="no rate limit known for endpoint 'nope'"):
        await limiter(FakeClock()).acquire("nope")


def test_registry_shares_one_limiter_per_key_and_keeps_no_key() -> None:
    registry = LimiterRegistry()
    assert registry.for_api_key("pk_a") is registry.for_api_key("pk_a")
    assert registry.for_api_key("pk_a") is not registry.for_api_key("pk_b")
    assert "pk_a" not in key_hash("pk_a") and len(key_hash("pk_a")) == 16


async def test_draining_20000_events_is_cheap() -> None:
    clock = FakeClock()
    account = limiter(clock)
    started = time.perf_counter()
    for _ in range(20_000):
        await account.acquire("create_event")
    assert time.perf_counter() - started < 2.0
    # 3,500 a minute (ten bursts of 350, one a second): request 20,000 goes in minute 5, second 7
    # (a little later: each wait carries the transit margin).
    assert 5 * 60 + 7 < clock.now < 5 * 60 + 8


def test_limiter_works_across_event_loops() -> None:
    clock = FakeClock()
    account = limiter(clock, e=Limit(burst=1, steady=100))

    async def two_concurrent() -> None:
        await asyncio.gather(account.acquire("e"), account.acquire("e"))

    asyncio.run(two_concurrent())
    asyncio.run(two_concurrent())
    assert clock.now == pytest.approx(3 * (1.0 + TRANSIT_MARGIN))


def test_limits_must_make_sense() -> None:
    with pytest.raises(ValueError, match="burst"):
        Limit(burst=0, steady=10)
    with pytest.raises(ValueError, match="steady"):
        Limit(burst=10, steady=5)


async def test_the_next_window_counts_from_when_a_request_actually_left() -> None:
    clock = FakeClock()
    account = limiter(clock, e=Limit(burst=2, steady=100))
    first_sent = await account.acquire("e")
    await account.acquire("e")
    clock.now = 0.3  # the first request waited for a connection: it left only now
    first_sent()
    await account.acquire("e")
    assert clock.now == pytest.approx(1.3 + TRANSIT_MARGIN)


async def test_stamping_a_request_as_sent_never_moves_it_earlier() -> None:
    clock = FakeClock(5.0)
    account = limiter(clock, e=Limit(burst=1, steady=100))
    sent = await account.acquire("e")
    clock.now = 4.0  # a clock read out of order must not free the slot early
    sent()
    clock.now = 5.0
    await account.acquire("e")
    assert clock.now == pytest.approx(6.0 + TRANSIT_MARGIN)
