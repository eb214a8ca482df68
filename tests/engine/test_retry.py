from __future__ import annotations

import re

import pytest

from engine import retry
from engine.errors import DeliveryError, RetryableDeliveryError
from engine.retry import RetryPolicy, classify


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504, 524])
def test_transient_failures_are_retried(status: int | None) -> None:
    assert classify(status) == "retry"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451, 501, 505, 200, 302])
def test_everything_else_is_dead_lettered(status: int) -> None:
    assert classify(status) == "dead"


def test_delay_is_full_jitter_over_a_doubling_capped_ceiling() -> None:
    top = RetryPolicy(jitter=lambda: 1.0)
    assert [top.delay(n) for n in range(1, 12)] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
    assert RetryPolicy(jitter=lambda: 0.0).delay(5) == 0.0
    assert RetryPolicy(jitter=lambda: 0.25).delay(3) == 2.0


def test_a_longer_retry_after_wins_and_a_shorter_one_does_not() -> None:
    policy = RetryPolicy(jitter=lambda: 0.5)
    assert policy.delay(1, retry_after=30) == 30.0
    assert policy.delay(4, retry_after=1) == 8.0
    assert policy.delay(4, retry_after=None) == 8.0


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert RetryPolicy(jitter=lambda: 1.0).delay(5_000) == 600.0


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (0, 1, 2, 3, 4)] == [False, False, False, True, True]


def test_docstring_table_matches_the_defaults() -> None:
    rows = re.findall(r"^\s+(\d+)\s+(\d+) s$", retry.__doc__ or "", flags=re.MULTILINE)
    policy = RetryPolicy(jitter=lambda: 1.0)
    assert rows, "the schedule table is missing from the module docstring"
    assert [(int(a), float(w)) for a, w in rows] == [(n, policy.delay(n)) for n in range(1, policy.max_attempts)]
    assert policy.exhausted(policy.max_attempts)


def test_repr_shows_the_settings() -> None:
    assert repr(RetryPolicy(max_attempts=3)) == "RetryPolicy(base=2.0, factor=2.0, cap=600.0, max_attempts=3)"


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"base": 0}, "base"), ({"factor": 0.5}, "factor"), ({"cap": 1.0}, "cap"),
    ({"max_attempts": 0}, "max_attempts"), ({"max_attempts": 2.5}, "max_attempts"),
])
def test_bad_settings_name_the_parameter_and_value(kwargs: dict, names: str) -> None:
    with pytest.raises(ValueError, match=names) as info:
        RetryPolicy(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_attempts_are_counted_from_one() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().delay(0)


def test_retry_at_schedules_retryable_failures_until_the_attempts_run_out() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=lambda: 1.0)
    assert policy.retry_at(1, RetryableDeliveryError("503", status=503), now=100.0) == 102.0
    assert policy.retry_at(2, RetryableDeliveryError("429", status=429, retry_after=30), now=100.0) == 130.0
    assert policy.retry_at(3, RetryableDeliveryError("503", status=503), now=100.0) is None
    assert policy.retry_at(1, DeliveryError("400", status=400), now=100.0) is None
