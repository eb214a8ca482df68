"""Worker pacing read from the environment (engine.service.worker_settings)."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.service import worker_settings
from engine.worker import WorkerSettings


def test_defaults_without_the_variables() -> None:
    settings = worker_settings({})
    defaults = WorkerSettings()
    assert (settings.poll_seconds, settings.lease_seconds, settings.retry.base, settings.retry.max_attempts) == (
        defaults.poll_seconds, defaults.lease_seconds, defaults.retry.base, defaults.retry.max_attempts)


def test_the_variables_shorten_the_waits() -> None:
    settings = worker_settings({"ENGINE_POLL_SECONDS": "0.1", "ENGINE_LEASE_SECONDS": "2",
                                "ENGINE_RETRY_BASE": "0.05"})
    assert (settings.poll_seconds, settings.lease_seconds, settings.retry.base) == (0.1, 2.0, 0.05)


@pytest.mark.parametrize(("name", "value"), [
    ("ENGINE_POLL_SECONDS", "soon"), ("ENGINE_LEASE_SECONDS", "0"), ("ENGINE_RETRY_BASE", "-1"),
    ("ENGINE_RETRY_BASE", "601"), ("ENGINE_POLL_SECONDS", "nan"),
])
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        worker_settings({name: value})
