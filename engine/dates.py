"""STORIS dates in, ISO 8601 with offset out.

Tenants write dates differently (ISO local time without a zone, ``MM/DD/YYYY``, bare dates), always in the
store's local time. A ``DateRule`` holds the formats to try, in order, and the store's zone; both are checked
once at load time.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ISO = "iso"
_DIRECTIVE = re.compile(r"%(.)")
_STRPTIME_DIRECTIVES = set("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_ANALYST_TOKENS = {"YYYY": "%Y", "YY": "%y", "MM": "%m", "DD": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}


def check_format(fmt: str) -> None:
    """Raise ValueError, with the fix, when ``fmt`` is neither ``iso`` nor a usable strptime pattern."""
    if fmt == ISO:
        return
    directives = _DIRECTIVE.findall(fmt)
    bad = sorted({d for d in directives if d not in _STRPTIME_DIRECTIVES})
    if bad:
        raise ValueError(f"date format {fmt!r}: unknown directive(s) {', '.join('%' + d for d in bad)}")
    if not directives:
        suggestion = fmt
        for token, directive in _ANALYST_TOKENS.items():
            suggestion = suggestion.replace(token, directive)
        hint = f" (did you mean {suggestion!r}?)" if suggestion != fmt else ""
        raise ValueError(f"date format {fmt!r} is not 'iso' or a strptime pattern{hint}")


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as America/New_York)") from exc


class DateRule:
    """Parses a date string with the first matching format and returns ISO 8601 in the store's zone."""

    __slots__ = ("formats", "tz", "_last")

    def __init__(self, *, formats: tuple[str, ...], tz: ZoneInfo) -> None:
        self.formats = formats
        self.tz = tz
        # Events of one record repeat its dates (every Purchased Product carries the order's): remember the last.
        self._last: tuple[str, str] = ("", "")

    def __repr__(self) -> str:
        return f"DateRule(formats={self.formats!r}, tz={self.tz.key!r})"

    def __call__(self, value: object) -> str:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, date):
            parsed = datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            last_in, last_out = self._last
            if value == last_in:
                return last_out
            parsed = self._parse(value.strip())
            out = (parsed.replace(tzinfo=self.tz) if parsed.tzinfo is None else parsed.astimezone(self.tz)).isoformat()
            self._last = (value, out)
            return out
        else:
            raise ValueError(f"expected a date string, got {type(value).__name__} {value!r}")
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=self.tz).isoformat()
        return parsed.astimezone(self.tz).isoformat()

    def _parse(self, text: str) -> datetime:
        for fmt in self.formats:
            try:
                if fmt == ISO:
                    return datetime.fromisoformat(text)
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise ValueError(f"{text!r} matches none of the date formats {', '.join(self.formats)}")
