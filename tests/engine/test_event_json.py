from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.event_json import GROUP_WRAPPER, JOB_ENVELOPE, EventJson, bulk_job

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner,
                                                                                                  max_size=4),
                         max_leaves=20)


def body(properties: object, profile: dict, unique_id: str | None = "o-1") -> dict:
    attributes: dict = {"properties": properties,
                        "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
                        "profile": {"data": {"type": "profile", "attributes": profile}}}
    if unique_id is not None:
        attributes["unique_id"] = unique_id
    return {"data": {"type": "event", "attributes": attributes}}


@given(properties=st.dictionaries(st.text(), documents, max_size=6),
       profile=st.dictionaries(st.sampled_from(["email", "phone_number", "first_name", "meta"]), documents),
       unique_id=st.none() | st.text())
def test_create_event_gives_back_the_body_it_was_split_from(properties: dict, profile: dict,
                                                            unique_id: str | None) -> None:
    original = body(properties, profile, unique_id)
    kept = copy.deepcopy(original)
    event = EventJson.from_body(original)
    assert original == kept
    assert json.loads(event.create_event()) == original
    assert event.unique_id == unique_id


def test_a_bulk_job_groups_events_under_their_profile_with_meta_beside_its_attributes() -> None:
    ana = {"email": "ana@example.com", "meta": {"patch_properties": {"append": {"skus": "92538"}}}}
    events = [EventJson.from_body(body({"n": n}, ana if n != 1 else {"email": "bo@example.com"}, f"o-{n}"))
              for n in range(3)]
    job = json.loads(bulk_job(events))
    groups = job["data"]["attributes"]["events-bulk-create"]["data"]
    assert [g["attributes"]["profile"]["data"] for g in groups] == [
        {"type": "profile", "attributes": {"email": "ana@example.com"},
         "meta": {"patch_properties": {"append": {"skus": "92538"}}}},
        {"type": "profile", "attributes": {"email": "bo@example.com"}}]
    assert [[e["attributes"]["unique_id"] for e in g["attributes"]["events"]["data"]] for g in groups] == [
        ["o-0", "o-2"], ["o-1"]]
    assert groups[0]["attributes"]["events"]["data"][1] == {"type": "event", "attributes": {
        "properties": {"n": 2}, "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
        "unique_id": "o-2"}}


@given(st.lists(st.tuples(st.text(max_size=30), st.sampled_from(["a@x.io", "b@x.io", "ç@x.io"])), max_size=8))
def test_a_job_is_never_larger_than_its_planned_size(events: list[tuple[str, str]]) -> None:
    parts = [EventJson.from_body(body({"note": note}, {"email": email}, f"o-{n}"))
             for n, (note, email) in enumerate(events)]
    assert len(bulk_job(parts)) <= JOB_ENVELOPE + sum(p.size + GROUP_WRAPPER for p in parts)


@pytest.mark.parametrize(("bad", "message"), [
    ([], "event 3 is not a Create Event body"),
    ({"data": {"type": "event"}}, "event 3 is not a Create Event body"),
    ({"data": {"type": "event", "attributes": {"properties": {}}}}, "event 3 has no data.attributes.profile.data"),
    ({"data": {"attributes": {"profile": {"data": "ana"}}}}, "event 3 has no data.attributes.profile.data"),
])
def test_what_is_not_a_create_event_body_is_refused(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventJson.from_body(bad, 3)
