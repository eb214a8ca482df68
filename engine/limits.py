"""Klaviyo's documented ingestion limits, checked on every body before it leaves the engine.

At most 400 properties, strings of at most 100 KB, arrays of at most 4,000 items, nesting at most 10
levels, and ``time`` from 2000-01-01 to one year ahead. Klaviyo would refuse (or silently truncate) an
event beyond them; refusing here names the event and the property instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

MAX_PROPERTIES = 400
MAX_STRING_BYTES = 100 * 1024
MAX_ARRAY_ITEMS = 4000
MAX_DEPTH = 10
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
# A UTF-8 character is at most 4 bytes, so shorter strings need no encoding to be known safe.
_SAFE_CHARS = MAX_STRING_BYTES // 4


class LimitError(ValueError):
    """A body beyond Klaviyo's limits; ``path`` is where, e.g. ``properties.items[3].productName``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def check(attributes: dict[str, Any], now: datetime) -> None:
    """Raise LimitError for the first limit the event ``attributes`` exceed."""
    properties = attributes["properties"]
    if len(properties) > MAX_PROPERTIES:
        raise LimitError("properties", f"{len(properties)} properties, Klaviyo accepts at most {MAX_PROPERTIES}")
    _walk(properties, "properties", 0)
    for key in ("unique_id", "value_currency"):
        value = attributes.get(key)
        if isinstance(value, str) and len(value) > _SAFE_CHARS:
            _check_string(value, key)
    when = attributes.get("time")
    if when is not None:
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        if moment < EARLIEST:
            raise LimitError("time", f"{when} is before 2000-01-01")
        if moment > now + timedelta(days=365):
            raise LimitError("time", f"{when} is more than one year ahead")


def _walk(value: Any, path: str, depth: int) -> None:
    if isinstance(value, str):
        if len(value) > _SAFE_CHARS:
            _check_string(value, path)
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise LimitError(path, f"nested more than {MAX_DEPTH} levels deep")
        for key, item in value.items():
            if isinstance(item, (dict, list)) or isinstance(item, str) and len(item) > _SAFE_CHARS:
                _walk(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise LimitError(path, f"nested more than {MAX_DEPTH} levels deep")
        if len(value) > MAX_ARRAY_ITEMS:
            raise LimitError(path, f"{len(value)} items, Klaviyo accepts at most {MAX_ARRAY_ITEMS}")
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)) or isinstance(item, str) and len(item) > _SAFE_CHARS:
                _walk(item, f"{path}[{i}]", depth + 1)


def _check_string(value: str, path: str) -> None:
    size = len(value.encode("utf-8"))
    if size > MAX_STRING_BYTES:
        raise LimitError(path, f"string of {size} bytes, Klaviyo accepts at most {MAX_STRING_BYTES}")
