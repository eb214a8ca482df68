"""The fake Klaviyo's profiles: one per person seen in an accepted event, found again by their identifiers.

A profile in an event is matched by Klaviyo id, else email (ignoring case and surrounding spaces), else
phone_number, else external_id. A match gains the identifiers it lacked and the names it was given; an
identifier it already holds is never replaced, so a clash keeps the first value. Values are stored exactly
as sent, so tests can see whether the engine normalised them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

IDENTIFIERS = ("email", "phone_number", "external_id")
FIELDS = (*IDENTIFIERS, "first_name", "last_name")
# Any of these lets Klaviyo place an event on a profile.
ANY_IDENTIFIER = (*IDENTIFIERS, "anonymous_id", "_kx")


def has_identifier(profile_data: dict[str, Any]) -> bool:
    """Whether a profile resource object names someone: a Klaviyo id or any identifier attribute."""
    attributes = profile_data.get("attributes") or {}
    return bool(profile_data.get("id")) or any(attributes.get(name) for name in ANY_IDENTIFIER)


def identity(profile_data: dict[str, Any]) -> tuple[str, str]:
    """The first identifier of a profile resource object, as (kind, value): what a job's dedup keys on."""
    if profile_data.get("id"):
        return "id", str(profile_data["id"])
    attributes = profile_data.get("attributes") or {}
    for name in ANY_IDENTIFIER:
        if attributes.get(name):
            return name, _index_value(name, attributes[name])
    return "none", ""


class Profiles:
    """The profiles an app has seen, by fake Klaviyo id and by identifier."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self._index: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in IDENTIFIERS}

    def upsert(self, profile_data: dict[str, Any]) -> dict[str, Any]:
        """The stored profile for a profile resource object from an event, created or updated."""
        attributes = profile_data.get("attributes") or {}
        given = {name: attributes[name] for name in FIELDS if attributes.get(name) not in (None, "")}
        profile = self.by_id.get(str(profile_data.get("id") or ""))
        for name in IDENTIFIERS:
            if profile is None and name in given:
                profile = self._index[name].get(_index_value(name, given[name]))
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if profile is None:
            # 26 characters like Klaviyo's ULIDs, and obviously fake.
            profile = {"id": f"01FAKE{len(self.by_id) + 1:020d}", **dict.fromkeys(FIELDS), "created": now}
            self.by_id[profile["id"]] = profile
        for name, value in given.items():
            if name in IDENTIFIERS:
                if profile[name] is not None:
                    continue
                self._index[name].setdefault(_index_value(name, value), profile)
            profile[name] = value
        profile["updated"] = now
        return profile

    def resource(self, profile: dict[str, Any], base_url: str) -> dict[str, Any]:
        """``profile`` as the ``data`` of Klaviyo's Get Profile response."""
        attributes = {name: profile[name] for name in FIELDS}
        attributes.update(created=profile["created"], updated=profile["updated"], last_event_date=profile["updated"],
                          properties={})
        return {"type": "profile", "id": profile["id"], "attributes": attributes,
                "links": {"self": f"{base_url}/api/profiles/{profile['id']}/"}}


def _index_value(name: str, value: object) -> str:
    text = str(value)
    return text.strip().lower() if name == "email" else text
