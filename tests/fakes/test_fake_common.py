"""The failure switch and path helper both fakes share."""

from __future__ import annotations

from typing import Any

import pytest

from engine.fakes.common import BadRequest, Failure, FailureSwitch, relative_path


@pytest.mark.parametrize(("spec", "failure", "count"), [
    ({"status": 503, "count": 3}, Failure(status=503), 3),
    ({"status": 429, "retry_after": 2, "count": 1}, Failure(status=429, retry_after=2), 1),
    ({"mode": "empty", "status": 502}, Failure(mode="empty", status=502), None),
    ({"mode": "html", "status": 503, "count": None}, Failure(mode="html", status=503), None),
    ({"mode": "timeout", "seconds": 30}, Failure(mode="timeout", seconds=30.0), None),
    ({"mode": "ok"}, None, None),
])
def test_failure_specs(spec: dict[str, Any], failure: Failure | None, count: int | None) -> None:
    assert Failure.parse(spec) == (failure, count)


@pytest.mark.parametrize(("spec", "message"), [
    ([], "expected a JSON object"),
    ({"mode": "slow"}, "mode: expected one of ok, status, empty, html, timeout; got 'slow'"),
    ({"status": 99}, "status: expected an HTTP status from 200 to 599, got 99"),
    ({"status": "503"}, "status: .* got '503'"),
    ({"status": 503, "count": 0}, "count: expected a positive integer or null, got 0"),
    ({"status": 429, "retry_after": 1.5}, "retry_after: expected whole seconds, got 1.5"),
    ({"mode": "timeout", "seconds": True}, "seconds: expected a number of seconds, got True"),
    ({"status": 503, "times": 2}, r"unknown keys \['times'\]"),
])
def test_bad_failure_specs_name_the_key(spec: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Failure.parse(spec)


def test_switch_counts_down_then_clears() -> None:
    switch = FailureSwitch()
    switch.set({"status": 500, "count": 2})
    assert switch.describe() == {"mode": "status", "status": 500, "retry_after": None, "seconds": 0.0, "count": 2}
    assert [switch.take() is not None for _ in range(3)] == [True, True, False]
    assert switch.describe() is None


def test_switch_without_count_stays_until_cleared() -> None:
    switch = FailureSwitch()
    switch.set({"mode": "html"})
    assert all(switch.take() == Failure(mode="html") for _ in range(5))
    switch.set({"mode": "ok"})
    assert switch.take() is None


@pytest.mark.parametrize(("scope", "expected"), [
    ({"path": "/api/events"}, "/api/events"),
    ({"path": "/fake/klaviyo/api/events", "root_path": "/fake/klaviyo"}, "/api/events"),
    ({"path": "/fake/klaviyo", "root_path": "/fake/klaviyo"}, "/"),
])
def test_relative_path(scope: dict[str, Any], expected: str) -> None:
    assert relative_path(scope) == expected
