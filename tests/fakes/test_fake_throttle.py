"""Fixed rate-limit windows of the fake Klaviyo, on a hand-driven clock."""

from __future__ import annotations

from engine.fakes.throttle import FixedWindows, Limits, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_window_opens_with_the_first_request() -> None:
    clock = Clock()
    windows = FixedWindows(Limits(create_event=(2, 100)), clock=clock)
    clock.now = 1000.7  # not on a clock second: the window still lasts a full second from here
    assert windows.hit("k", "create_event") == Verdict(allowed=True, limit=2, remaining=1, reset=1)
    assert windows.hit("k", "create_event").remaining == 0
    clock.now = 1001.6
    assert windows.hit("k", "create_event") == Verdict(allowed=False, limit=2, remaining=0, reset=1)
    clock.now = 1001.7
    assert windows.hit("k", "create_event").allowed


def test_steady_window_sets_retry_after_in_whole_seconds() -> None:
    clock = Clock()
    windows = FixedWindows(Limits(get_profile=(5, 6)), clock=clock)
    for step in range(6):
        clock.now = 1000.0 + step * 1.5
        assert windows.hit("k", "get_profile").allowed
    clock.now = 1010.2
    assert windows.hit("k", "get_profile") == Verdict(allowed=False, limit=6, remaining=0, reset=50)
    clock.now = 1060.0
    assert windows.hit("k", "get_profile").allowed


def test_headers_describe_the_window_closest_to_its_limit() -> None:
    clock = Clock()
    windows = FixedWindows(Limits(get_list=(10, 12)), clock=clock)
    for _ in range(9):
        windows.hit("k", "get_list")
    clock.now = 1001.5
    # Second window: 1 of 10 used; minute window: 10 of 12 used.
    assert windows.hit("k", "get_list") == Verdict(allowed=True, limit=12, remaining=2, reset=59)


def test_keys_and_endpoints_count_apart() -> None:
    windows = FixedWindows(Limits(create_event=(1, 1), get_list=(1, 1)), clock=Clock())
    assert windows.hit("a", "create_event").allowed
    assert windows.hit("b", "create_event").allowed
    assert windows.hit("a", "get_list").allowed
    assert not windows.hit("a", "create_event").allowed
    windows.clear()
    assert windows.hit("a", "create_event").allowed


def test_defaults_are_klaviyos_published_limits() -> None:
    assert Limits().by_endpoint == {
        "create_event": (350, 3500), "bulk_create_events": (10, 150), "bulk_subscribe_profiles": (75, 750),
        "get_accounts": (1, 15), "get_list": (75, 750), "get_profile": (75, 750)}
    assert repr(Limits(get_list=(1, 2))).startswith("Limits(create_event=(350, 3500), ")


def test_a_request_counted_late_counts_from_when_it_arrived() -> None:
    clock = Clock()
    windows = FixedWindows(Limits(bulk_create_events=(1, 100)), clock=clock)
    first = windows.now()
    clock.now += 0.3  # the fake was busy: it counts the first request 0.3 s after it arrived
    assert windows.hit("k", "bulk_create_events", arrived=first).allowed
    clock.now = first + 1.05  # a client pacing by its own sending time sends the second one now
    assert windows.hit("k", "bulk_create_events", arrived=windows.now()).allowed
