"""Logging for the service: one format, and no full email address or phone number in any line.

Messages are built from many sources (Klaviyo's error details quote the email they refused, exceptions
quote STORIS answers), so the masking is a filter on the handler, applied to every formatted line.
"""

from __future__ import annotations

import logging
import re

from engine.profile import mask_email

_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d{8,15}\b|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")


def redact(text: str) -> str:
    """``text`` with emails and phone numbers masked (``m***@example.com``, ``+*******0142``)."""
    text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    return _PHONE.sub(lambda m: _mask_phone(m.group()), text)


def _mask_phone(number: str) -> str:
    digits = re.sub(r"\D", "", number)
    return ("+" if number.startswith("+") else "") + "*" * (len(digits) - 4) + digits[-4:]


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; the worker reports what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
