"""Klaviyo events kept as JSON text, in the two parts that Create Event and Bulk Create Events share.

A backlog leaves in Bulk Create Events jobs of up to 1,000 events of a few KB each. Decoding every stored
body and encoding each job again was most of delivery's CPU time, and most of its memory; kept as text,
a job is assembled by joining strings and nothing on the way out is decoded.

``attributes`` is the event's ``data.attributes`` without its profile; ``profile`` is the profile resource
in the bulk form, where ``meta`` sits beside ``attributes`` (Create Event keeps it inside them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventJson:
    """One Create Event body as the two JSON texts above, and its unique_id (None when it has none)."""

    unique_id: Any
    attributes: str
    profile: str

    @classmethod
    def from_body(cls, body: Any, index: int = 0) -> EventJson:
        """Split a Create Event request body; ValueError naming event ``index`` when it is not one."""
        data = body.get("data") if isinstance(body, dict) else None
        attributes = data.get("attributes") if isinstance(data, dict) else None
        if not isinstance(attributes, dict):
            raise ValueError(f"event {index} is not a Create Event body (no data.attributes object)")
        wrapper = attributes.get("profile")
        resource = wrapper.get("data") if isinstance(wrapper, dict) else None
        if not isinstance(resource, dict):
            raise ValueError(f"event {index} has no data.attributes.profile.data")
        profile = dict(resource)
        profile["attributes"] = dict(profile.get("attributes") or {})
        if "meta" in profile["attributes"]:
            profile["meta"] = profile["attributes"].pop("meta")
        event = {key: value for key, value in attributes.items() if key != "profile"}
        return cls(attributes.get("unique_id"), compact_json(event), compact_json(profile))

    def create_event(self) -> bytes:
        """The Create Event request body (live traffic: one event, so decoding its small profile is cheap)."""
        profile = json.loads(self.profile)
        if "meta" in profile:
            profile["attributes"]["meta"] = profile.pop("meta")
        return "".join(('{"data":{"type":"event","attributes":', _with_member(self.attributes, "profile"),
                        '{"data":', compact_json(profile), "}}}}")).encode()

    @property
    def size(self) -> int:
        """UTF-8 bytes of both parts."""
        return _utf8_length(self.attributes) + _utf8_length(self.profile)


def bulk_job(events: list[EventJson]) -> bytes:
    """The Bulk Create Events request body: events grouped under their profile, in their order."""
    groups: dict[str, list[str]] = {}
    for event in events:
        groups.setdefault(event.profile, []).append(event.attributes)
    return "".join((_JOB_HEAD, ",".join(_group(profile, attributes) for profile, attributes in groups.items()),
                    _JOB_TAIL)).encode()


def _group(profile: str, attributes: list[str]) -> str:
    events = ",".join(f'{{"type":"event","attributes":{one}}}' for one in attributes)
    return ('{"type":"event-bulk-create","attributes":{"profile":{"data":' + profile
            + '},"events":{"data":[' + events + "]}}}")


_JOB_HEAD = '{"data":{"type":"event-bulk-create-job","attributes":{"events-bulk-create":{"data":['
_JOB_TAIL = "]}}}}"
JOB_ENVELOPE = len(_JOB_HEAD) + len(_JOB_TAIL)
# What one event in a group of its own adds around its two parts, with the comma before it.
GROUP_WRAPPER = len(_group("", [""])) + 1


def compact_json(document: object) -> str:
    # Compact, and UTF-8 rather than \u escapes: the size measured is the size Klaviyo receives.
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _with_member(obj: str, name: str) -> str:
    """``obj`` (a JSON object) opened for one more member, up to its value: ``{"a":1,"name":``."""
    return f'{obj[:-1]}{"," if len(obj) > 2 else ""}"{name}":'


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())
