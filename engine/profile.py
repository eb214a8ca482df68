"""Klaviyo profile identifiers, normalised as the event catalog says.

Email: trimmed and lower-cased; something that is not an address is dropped rather than sent (Klaviyo
would refuse the whole event). Phone: E.164, using the retailer's default country for national numbers;
an unparseable or invalid number is dropped, never sent.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if _EMAIL.match(email) else None


@functools.lru_cache(maxsize=4096)
def to_e164(value: object, default_country: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = phonenumbers.parse(value, default_country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_email(email: str) -> str:
    """For logs: ``maria.alvarez@example.com`` -> ``m***@example.com``."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"

