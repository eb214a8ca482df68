"""No log line carries a full email address or phone number."""

from __future__ import annotations

import logging

import pytest

from engine.logs import RedactingFormatter, redact


@pytest.mark.parametrize(("text", "expected"), [
    ("Klaviyo said: maria.alvarez@example.com is invalid", "Klaviyo said: m***@example.com is invalid"),
    ("phone +12395550142 refused", "phone +*******0142 refused"),
    ("call (239) 555-0142 or 239-555-0100", "call ******0142 or ******0100"),
    ("order 1004417, customer 0000123456", "order 1004417, customer 0000123456"),
])
def test_redact_masks_emails_and_phone_numbers_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_formatter_masks_arguments_and_exception_text() -> None:
    try:
        raise ValueError("refused a.b@example.org")
    except ValueError:
        record = logging.LogRecord("engine", logging.ERROR, __file__, 1, "event for %s failed", ("c.d@example.net",),
                                   exc_info=__import__("sys").exc_info())
    line = RedactingFormatter("%(message)s").format(record)
    assert "c***@example.net" in line and "a***@example.org" in line
    assert "c.d@example.net" not in line and "a.b@example.org" not in line
