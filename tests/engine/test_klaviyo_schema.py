"""The project's Klaviyo request schemas: messages, pointers, and agreement with Klaviyo's OpenAPI files."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine import klaviyo_schema
from engine.golden import GOLDEN

SHARED_OPENAPI = Path(__file__).resolve().parents[2] / ".." / "shared" / "klaviyo-openapi"
REVISION = "2026-07-15"


def event(**attributes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": {"type": "event", "attributes": {
        "properties": {"orderId": "2001001"},
        "metric": {"data": {"type": "metric", "attributes": {"name": "Completed Purchase"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "ada@example.com"}}},
    }}}
    body["data"]["attributes"].update(attributes)
    return body


def bulk(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": list(entries)}}}}


def bulk_entry(profile: dict[str, Any] | None = None, *events: dict[str, Any]) -> dict[str, Any]:
    events = events or ({"type": "event", "attributes": {
        "properties": {}, "metric": {"data": {"type": "metric", "attributes": {"name": "Received Quote"}}},
        "unique_id": "quote:Q-1"}},)
    return {"type": "event-bulk-create", "attributes": {
        "profile": {"data": profile or {"type": "profile", "attributes": {"email": "ada@example.com"}}},
        "events": {"data": list(events)}}}


def subscribe(*profiles: dict[str, Any], list_id: str | None = "Lxyz") -> dict[str, Any]:
    body: dict[str, Any] = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "profiles": {"data": list(profiles) or [
            {"type": "profile", "attributes": {"email": "ada@example.com",
                                               "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}}}}]},
    }}}
    if list_id is not None:
        body["data"]["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return body


def changed(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the value at dotted ``path`` replaced (``...`` deletes it)."""
    body = copy.deepcopy(body)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = body
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return body


FULL_EVENT = event(
    time="2026-10-09T16:42:05-04:00", value=2812.92, value_currency="USD", unique_id="order:2001001", backfill=None,
    profile={"data": {"type": "profile", "id": None, "attributes": {
        "email": "ada@example.com", "phone_number": "+18435550117", "external_id": "0000500101",
        "first_name": "Ada", "last_name": None, "location": {"latitude": "32.7765", "longitude": -79.9311},
        "properties": None, "meta": {"patch_properties": {"unset": ["a", "b"]}}}}},
)
SUBSCRIBE_SMS_AND_PUSH = subscribe({"type": "profile", "attributes": {
    "phone_number": "+18435550117", "subscriptions": {
        "sms": {"marketing": {"consent": "SUBSCRIBED"}, "transactional": None},
        "push": {"marketing": {"consent": "SUBSCRIBED"}, "tokens": [
            {"token": "abc", "platform": "ios", "vendor": "apns", "enablement_status": None}]}}}})

VALID = [
    ("create_event", event()),
    ("create_event", FULL_EVENT),
    ("create_event", event(time="2026-10-09T20:42:05Z")),
    ("bulk_create_events", bulk(bulk_entry(), bulk_entry({"type": "profile", "attributes": {"phone_number": "+1"},
                                                          "meta": None}))),
    ("bulk_subscribe_profiles", subscribe()),
    ("bulk_subscribe_profiles", subscribe(list_id=None)),
    ("bulk_subscribe_profiles", SUBSCRIBE_SMS_AND_PUSH),
]

INVALID = [
    ("create_event", [], ["(root): must be object, not array"]),
    ("create_event", changed(event(), "data.attributes.profile", ...),
     ["/data/attributes/profile: is a required property"]),
    ("create_event", changed(event(), "data.type", "events"), ['/data/type: must be "event"']),
    ("create_event", event(value="2812.92"), ["/data/attributes/value: must be number or null, not string"]),
    ("create_event", event(time="2026-10-09T16:42:05"),
     ["/data/attributes/time: must be a valid date-time with a UTC offset (RFC 3339)"]),
    ("create_event", event(time="10/09/2026"),
     ["/data/attributes/time: must be a valid date-time with a UTC offset (RFC 3339)"]),
    ("create_event", changed(event(), "data.attributes.metric.data.attributes", {}),
     ["/data/attributes/metric/data/attributes/name: is a required property"]),
    ("create_event", changed(event(), "data.attributes.profile.data.attributes.email", 5),
     ["/data/attributes/profile/data/attributes/email: must be string or null, not number"]),
    ("create_event", changed(event(), "data.attributes.properties", None),
     ["/data/attributes/properties: must be object, not null"]),
    ("bulk_create_events", changed(bulk(bulk_entry()), "data.attributes.events-bulk-create.data.0.type", "event"),
     ['/data/attributes/events-bulk-create/data/0/type: must be "event-bulk-create"']),
    ("bulk_create_events",
     changed(bulk(bulk_entry(), bulk_entry()), "data.attributes.events-bulk-create.data.1.attributes.events.data.0"
             ".attributes.metric", ...),
     ["/data/attributes/events-bulk-create/data/1/attributes/events/data/0/attributes/metric: is a required property"]),
    ("bulk_create_events", changed(bulk(bulk_entry()), "data.attributes.events-bulk-create.data.0.attributes.profile",
                                   ...),
     ["/data/attributes/events-bulk-create/data/0/attributes/profile: is a required property"]),
    ("bulk_subscribe_profiles",
     changed(subscribe(), "data.attributes.profiles.data.0.attributes.subscriptions.email.marketing.consent",
             "UNSUBSCRIBED"),
     ['/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consent: must be "SUBSCRIBED"']),
    ("bulk_subscribe_profiles", changed(subscribe(), "data.attributes.profiles.data.0.attributes.subscriptions", ...),
     ["/data/attributes/profiles/data/0/attributes/subscriptions: is a required property"]),
    ("bulk_subscribe_profiles",
     changed(SUBSCRIBE_SMS_AND_PUSH, "data.attributes.profiles.data.0.attributes.subscriptions.push.tokens.0.platform",
             "windows"),
     ['/data/attributes/profiles/data/0/attributes/subscriptions/push/tokens/0/platform: must be one of "android", '
      '"ios"']),
    ("bulk_subscribe_profiles",
     changed(SUBSCRIBE_SMS_AND_PUSH, "data.attributes.profiles.data.0.attributes.subscriptions.push.marketing", ...),
     ["/data/attributes/profiles/data/0/attributes/subscriptions/push/marketing: is a required property"]),
    ("bulk_subscribe_profiles", changed(subscribe(), "data.relationships.list.data", {"type": "list"}),
     ["/data/relationships/list/data/id: is a required property"]),
]

# Limits from the spec's prose, which its schema cannot carry: ours is stricter on purpose.
STRICTER = [
    ("create_event", event(properties={f"p{i}": i for i in range(401)}),
     ["/data/attributes/properties: has 401 properties, at most 400 allowed"]),
    ("create_event", changed(event(), "data.attributes.metric.data.attributes.name", "x" * 128),
     ["/data/attributes/metric/data/attributes/name: is 128 characters long, at most 127 allowed"]),
    ("bulk_subscribe_profiles", subscribe(*subscribe()["data"]["attributes"]["profiles"]["data"] * 1001),
     ["/data/attributes/profiles/data: has 1001 items, at most 1000 allowed"]),
]


@pytest.mark.parametrize("name", klaviyo_schema.NAMES)
def test_schema_is_valid_and_names_its_revision(name: str) -> None:
    schema = klaviyo_schema.validator(name).schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert REVISION in schema["$comment"]


def test_validator_is_built_once() -> None:
    assert klaviyo_schema.validator("create_event") is klaviyo_schema.validator("create_event")


def test_unknown_schema_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="create_events"):
        klaviyo_schema.validator("create_events")


@pytest.mark.parametrize(("name", "body"), VALID)
def test_valid_bodies_have_no_errors(name: str, body: dict[str, Any]) -> None:
    assert klaviyo_schema.errors(name, body) == []


@pytest.mark.parametrize(("name", "body", "expected"), INVALID + STRICTER)
def test_invalid_bodies_name_the_pointer(name: str, body: Any, expected: list[str]) -> None:
    assert klaviyo_schema.errors(name, body) == expected


def test_violations_come_in_document_order_with_numeric_indexes() -> None:
    events = [{"type": "event", "attributes": {"properties": {}, "metric": {}}} for _ in range(11)]
    body = bulk(bulk_entry(None, *events))
    pointers = [where for where, _ in klaviyo_schema.violations("bulk_create_events", body)]
    base = "/data/attributes/events-bulk-create/data/0/attributes/events/data"
    assert pointers == [f"{base}/{i}/attributes/metric/data" for i in range(11)]


def test_pointer_escapes_tilde_and_slash() -> None:
    assert klaviyo_schema.pointer(["data", "a/b", "c~d", 3]) == "/data/a~1b/c~0d/3"
    assert klaviyo_schema.pointer([]) == ""


def test_messages_never_quote_the_value() -> None:
    body = changed(event(), "data.attributes.profile.data.attributes", "ada@example.com")
    assert klaviyo_schema.errors("create_event", body) == [
        "/data/attributes/profile/data/attributes: must be object, not string"]


@pytest.mark.parametrize("value", ["2026-02-30T10:00:00Z", "2026-10-09T25:00:00+00:00", "2026-10-09 10:00:00Z"])
def test_impossible_date_times_fail(value: str) -> None:
    assert klaviyo_schema.errors("create_event", event(time=value)) != []


# --- agreement with Klaviyo's own OpenAPI files -------------------------------------------------------------------

OPENAPI = {
    "create_event": ("create_event.json", "EventCreateQueryV2"),
    "bulk_create_events": ("bulk_create_events.json", "EventsBulkCreateJob"),
    "bulk_subscribe_profiles": ("bulk_subscribe_profiles.json", "SubscriptionCreateJobCreateQuery"),
}


def _nullable_to_null_type(node: Any) -> Any:
    """OpenAPI 3.0 to JSON Schema, mechanically: ``nullable: true`` becomes ``anyOf [..., null]``."""
    if isinstance(node, list):
        return [_nullable_to_null_type(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_to_null_type(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") is True else converted


def _openapi(name: str) -> dict[str, Any]:
    if not SHARED_OPENAPI.is_dir():
        pytest.skip(f"Klaviyo's OpenAPI files are not beside the repository ({SHARED_OPENAPI})")
    file_name, _ = OPENAPI[name]
    return json.loads((SHARED_OPENAPI / file_name).read_text(encoding="utf-8"))


def _openapi_validator(name: str) -> jsonschema.Draft202012Validator:
    spec = _openapi(name)
    schema = {"$ref": f"#/components/schemas/{OPENAPI[name][1]}",
              "components": _nullable_to_null_type(spec["components"])}
    return jsonschema.Draft202012Validator(schema, format_checker=klaviyo_schema.FORMAT_CHECKER)


@pytest.mark.parametrize(("name", "body"), VALID + [(n, b) for n, b, _ in INVALID],
                         ids=[f"valid-{i}" for i in range(len(VALID))] + [f"invalid-{i}" for i in range(len(INVALID))])
def test_schema_agrees_with_klaviyo_openapi(name: str, body: Any) -> None:
    theirs = _openapi_validator(name).is_valid(body)
    ours = not klaviyo_schema.errors(name, body)
    assert ours == theirs


@pytest.mark.parametrize("name", klaviyo_schema.NAMES)
def test_openapi_files_are_the_revision_our_schemas_follow(name: str) -> None:
    spec = _openapi(name)
    (operation,) = next(iter(spec["paths"].values())).values()
    (revision,) = [p for p in operation["parameters"] if p["name"] == "revision"]
    assert revision["schema"]["default"] == REVISION


@pytest.mark.parametrize(("name", "body"), [(n, b) for n, b, _ in STRICTER], ids=["properties", "metric", "profiles"])
def test_schema_is_stricter_only_where_the_spec_prose_says(name: str, body: Any) -> None:
    assert _openapi_validator(name).is_valid(body)
    assert klaviyo_schema.errors(name, body) != []


def _mutations(body: dict) -> list[dict]:
    """Valid and invalid variants of a Create Event body, for checking the two validators agree."""
    def changed(change) -> dict:
        out = copy.deepcopy(body)
        change(out["data"]["attributes"])
        return out

    return [
        body,
        changed(lambda a: a.pop("metric")),
        changed(lambda a: a.pop("profile")),
        changed(lambda a: a.__setitem__("time", "2026-11-28T14:32:10")),
        changed(lambda a: a.__setitem__("time", "2026-02-30T10:00:00+00:00")),
        changed(lambda a: a.__setitem__("time", "2026-11-28T14:32:10.123456-05:00")),
        changed(lambda a: a.__setitem__("value", "12.5")),
        changed(lambda a: a.__setitem__("value", None)),
        changed(lambda a: a.__setitem__("unique_id", 7)),
        changed(lambda a: a["metric"]["data"].__setitem__("type", "metrics")),
        changed(lambda a: a["profile"]["data"]["attributes"].__setitem__("email", ["x"])),
        changed(lambda a: a.__setitem__("properties", [])),
    ]


def test_the_fast_check_agrees_with_jsonschema() -> None:
    checked = 0
    for expected in sorted(GOLDEN.glob("*/*/expected.json")):
        for body in json.loads(expected.read_text(encoding="utf-8"))[:2]:
            for variant in _mutations(body):
                full = not list(klaviyo_schema.validator("create_event").iter_errors(variant))
                assert klaviyo_schema.is_valid("create_event", variant) == full, variant["data"]["attributes"]
                checked += 1
    assert checked > 100
