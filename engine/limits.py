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
    problem = _walk(properties, 0)
    if problem is not None:
        where, message = problem
        raise LimitError("properties" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where), message)
    for key in ("unique_id", "value_currency"):
        value = attributes.get(key)
        if isinstance(value, str) and len(value) > _SAFE_CHARS and _too_long(value):
            raise LimitError(key, _too_long(value))
    when = attributes.get("time")
    if when is not None:
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        if moment < EARLIEST:
            raise LimitError("time", f"{when} is before 2000-01-01")
        if moment > now + timedelta(days=365):
            raise LimitError("time", f"{when} is more than one year ahead")


def _walk(container: dict | list, depth: int) -> tuple[list[str | int], str] | None:
    """(where, message) for the first limit exceeded inside ``container``; None when all is well.

    On the hot path: exact class checks (decoded JSON is plain dicts, lists and strings), no paths built
    unless something is wrong."""
    if depth >= MAX_DEPTH:
        return [], f"nested more than {MAX_DEPTH} levels deep"
    if container.__class__ is dict:
        items: Any = container.items()
    else:
        if len(container) > MAX_ARRAY_ITEMS:
            return [], f"{len(container)} items, Klaviyo accepts at most {MAX_ARRAY_ITEMS}"
        items = enumerate(container)
    for key, item in items:
        kind = item.__class__
        if kind is str:
            if len(item) > _SAFE_CHARS:
                message = _too_long(item)
                if message:
                    return [key], message
        elif kind is dict or kind is list:
            problem = _walk(item, depth + 1)
            if problem is not None:
                problem[0].insert(0, key)
                return problem
    return None


def _too_long(value: str) -> str | None:
    size = len(value.encode("utf-8"))
    return f"string of {size} bytes, Klaviyo accepts at most {MAX_STRING_BYTES}" if size > MAX_STRING_BYTES else None
