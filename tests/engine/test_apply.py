"""Applying a compiled mapping to records: values, rules, profiles, skips, limits and errors."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from engine import MappingError, PluginError, load_file, map_record
from engine.compile import Retailer

NOW = datetime(2026, 12, 4, tzinfo=timezone.utc)


class Boom:
    name = "boom"

    def __init__(self, params: dict, *, base_dir: Path) -> None:
        self.params = params

    def apply(self, record: dict) -> dict:
        raise KeyError("softKit")


def retailer(tmp_path: Path, body: str, *, name: str = "acme") -> Retailer:
    header = f"retailer: {name}\nsettings: {{timezone: America/Chicago, date_formats: [iso, '%m/%d/%Y']}}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(header + textwrap.dedent(body), encoding="utf-8")
    return load_file(path, {"boom": Boom})


SALE = """
webhooks:
  OrderWrittenSale:
    fetch: {path: /api/Orders/Detail, record: "data.orders[0]"}
    profile:
      email: customer.email
      phone_number: customer.phone
      external_id: customer.id
    events:
      sale:
        metric: Sale
        time: {path: written, date: true}
        value: total
        unique_id: {template: "order:{{ id }}"}
        properties:
%s
"""


def props(tmp_path: Path, properties: str, record: dict[str, Any]) -> dict[str, Any]:
    body = SALE % textwrap.indent(textwrap.dedent(properties), " " * 10)
    result = map_record(retailer(tmp_path, body), "OrderWrittenSale",
                        {"id": "7", "customer": {"email": "a@b.co"}, **record}, now=NOW)
    return result.events[0].body["data"]["attributes"]["properties"]


def test_list_rule_flattens_drops_empties_and_dedupes_in_first_seen_order(tmp_path: Path) -> None:
    out = props(tmp_path, 'tags: {path: "lines[].tags", list: true}',
                {"lines": [{"tags": ["b", None, "a"]}, {"tags": ["", "b", "c"]}, {"tags": None}]})
    assert out["tags"] == ["b", "a", "c"]


def test_list_rule_wraps_a_single_value_and_options_switch_steps_off(tmp_path: Path) -> None:
    out = props(tmp_path, """
        one: {path: brand, list: true}
        kept: {path: "lines[].x", list: {dedupe: false, compact: false}}
    """, {"brand": "Tropitone", "lines": [{"x": "a"}, {"x": "a"}, {"x": ""}]})
    assert out["one"] == ["Tropitone"]
    assert out["kept"] == ["a", "a", ""]


def test_unknown_values_and_empty_lists_are_left_out_but_false_and_zero_are_kept(tmp_path: Path) -> None:
    out = props(tmp_path, """
        missing: nothing.here
        empty: {path: "lines[].brand", list: true}
        zero: zero
        no: flag
    """, {"lines": [{"brand": None}], "zero": 0, "flag": False})
    assert out == {"zero": 0, "no": False}


def test_dates_use_the_store_zone_and_formats_in_order(tmp_path: Path) -> None:
    out = props(tmp_path, """
        iso: {path: a, date: true}
        us: {path: b, date: true}
        winter: {path: c, date: true}
        explicit: {path: d, date: {formats: ["%d.%m.%Y"], timezone: Europe/Berlin}}
    """, {"a": "2026-07-01T09:30:00", "b": "12/24/2026", "c": "2026-01-15T23:00:00Z", "d": "31.12.2026"})
    assert out == {"iso": "2026-07-01T09:30:00-05:00", "us": "2026-12-24T00:00:00-06:00",
                   "winter": "2026-01-15T17:00:00-06:00", "explicit": "2026-12-31T00:00:00+01:00"}


def test_an_unparseable_date_fails_with_retailer_webhook_event_and_path(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        props(tmp_path, "when_: {path: a, date: true}", {"a": "yesterday"})
    text = str(caught.value)
    for part in ("retailer acme", "webhook OrderWrittenSale", "record 7", "event sale (Sale)",
                 "path webhooks.OrderWrittenSale.events.sale.properties.when_", "acme.yaml:",
                 "'yesterday' matches none of the date formats iso, %m/%d/%Y"):
        assert part in text, text


def test_type_default_lookup_when_const_and_template(tmp_path: Path) -> None:
    out = props(tmp_path, """
        code: {path: code, type: string}
        qty: {path: qty, type: integer}
        price: {path: price, type: number}
        channel: {path: channel, default: In-Store}
        method: {path: kind, lookup: {CustomerPickup: Pickup}}
        other: {path: other, lookup: {CustomerPickup: Pickup}}
        gated: {path: id, when: "flag"}
        shown: {path: id, when: "!flag"}
        fixed: {const: [1, 2]}
        label: {template: "{{ id }}-{{ code }}"}
    """, {"code": 12, "qty": "3", "price": "19.50", "kind": "CustomerPickup", "other": "Delivery", "flag": False})
    assert out == {"code": "12", "qty": 3, "price": 19.5, "channel": "In-Store", "method": "Pickup",
                   "other": "Delivery", "shown": "7", "fixed": [1, 2], "label": "7-12"}


def test_each_builds_objects_per_element_with_the_record_in_reach(tmp_path: Path) -> None:
    out = props(tmp_path, """
        items:
          each: lines
          fields:
            sku: sku
            order: record.id
            kit: {path: isKit, default: false}
    """, {"lines": [{"sku": "A"}, {"sku": "B", "isKit": True}]})
    assert out["items"] == [{"sku": "A", "order": "7", "kit": False}, {"sku": "B", "order": "7", "kit": True}]


def test_profile_is_normalised_and_unusable_identifiers_are_dropped(tmp_path: Path) -> None:
    body = SALE % "          n: id"
    result = map_record(retailer(tmp_path, body), "OrderWrittenSale",
                        {"id": "1", "customer": {"email": "  Maria.Alvarez@Example.COM ", "phone": "(239) 555-0142",
                                                  "id": 42}}, now=NOW)
    profile = result.events[0].body["data"]["attributes"]["profile"]["data"]["attributes"]
    assert profile == {"email": "maria.alvarez@example.com", "phone_number": "+12395550142", "external_id": "42"}
    result = map_record(retailer(tmp_path, body), "OrderWrittenSale",
                        {"id": "2", "customer": {"email": "not-an-email", "phone": "12"}}, now=NOW)
    assert result.events == []
    assert [(s.metric, s.unique_id, s.reason) for s in result.skipped] == [
        ("Sale", "order:2", "no email and no valid phone number")]


def test_phone_alone_is_enough(tmp_path: Path) -> None:
    result = map_record(retailer(tmp_path, SALE % "          n: id"), "OrderWrittenSale",
                        {"id": "3", "customer": {"phone": "+44 20 7946 0958"}}, now=NOW)
    assert result.events[0].body["data"]["attributes"]["profile"]["data"]["attributes"] == {
        "phone_number": "+442079460958"}


FOR_EACH = """
webhooks:
  OrderWrittenSale:
    fetch: {path: /api/Orders/Detail, record: "data.orders[0]"}
    profile: {email: email}
    events:
      line:
        metric: Line
        when: "length(lines) > `1`"
        for_each: lines
        value: total
        unique_id: {template: "order:{{ record.id }}:line:{{ n }}"}
        properties: {n: n, order: record.id}
"""


def test_for_each_emits_one_event_per_element_in_order_and_when_gates_the_event(tmp_path: Path) -> None:
    plan = retailer(tmp_path, FOR_EACH)
    result = map_record(plan, "OrderWrittenSale",
                        {"id": "9", "email": "a@b.co", "lines": [{"n": 2, "total": 5}, {"n": 1, "total": 7}]}, now=NOW)
    assert [(e.unique_id, e.body["data"]["attributes"]["value"]) for e in result.events] == [
        ("order:9:line:2", 5), ("order:9:line:1", 7)]
    assert result.events[0].body["data"]["attributes"]["properties"] == {"n": 2, "order": "9"}
    single = {"id": "9", "email": "a@b.co", "lines": [{"n": 1}]}
    assert map_record(plan, "OrderWrittenSale", single, now=NOW).events == []


def test_body_shape_is_a_create_event_request(tmp_path: Path) -> None:
    result = map_record(retailer(tmp_path, SALE % "          n: id"), "OrderWrittenSale",
                        {"id": "5", "total": 10.5, "written": "2026-11-28T14:32:10", "customer": {"email": "a@b.co"}},
                        now=NOW)
    assert result.events[0].body == {"data": {"type": "event", "attributes": {
        "properties": {"n": "5"}, "time": "2026-11-28T14:32:10-06:00", "value": 10.5, "unique_id": "order:5",
        "metric": {"data": {"type": "metric", "attributes": {"name": "Sale"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "a@b.co"}}}}}}


@pytest.mark.parametrize(("record", "message"), [
    ({"blob": "x" * (100 * 1024 + 1)}, "path properties.big, unique_id order:7: beyond Klaviyo's limits: "
                                       "string of 102401 bytes"),
    ({"blob": "é" * 60000}, "path properties.big, unique_id order:7: beyond Klaviyo's limits: string of 120000 bytes"),
    ({"many": list(range(4001))}, "path properties.list, unique_id order:7: beyond Klaviyo's limits: 4001 items"),
    ({"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {}}}}}}}}}}}},
     "nested more than 10 levels deep"),
    ({"written": "1999-12-31T17:59:59"}, "1999-12-31T17:59:59-06:00 is before 2000-01-01"),
    ({"written": "2028-01-01T00:00:00"}, "is more than one year ahead"),
])
def test_klaviyo_limits_are_enforced_naming_event_and_property(tmp_path: Path, record: dict, message: str) -> None:
    with pytest.raises(MappingError) as caught:
        props(tmp_path, "big: blob\nlist: many\nnest: deep", record)
    assert message in str(caught.value)
    assert "event sale (Sale)" in str(caught.value)


def test_four_hundred_properties_pass_and_four_hundred_and_one_fail(tmp_path: Path) -> None:
    fields = "\n".join(f"p{i}: {{const: {i}}}" for i in range(400))
    assert len(props(tmp_path, fields, {})) == 400
    with pytest.raises(MappingError, match="401 properties"):
        props(tmp_path, fields + "\np400: {const: 1}", {})


def test_plugin_failure_names_plugin_retailer_and_record_and_fails_that_record_only(tmp_path: Path) -> None:
    plan = retailer(tmp_path, """
        plugins: {boom: {}}
        webhooks:
          OrderWrittenSale:
            fetch: {path: /api/Orders/Detail, record: "data.orders[0]"}
            plugins: [boom]
            profile: {email: email}
            events:
              sale: {metric: Sale, unique_id: {template: "order:{{ id }}"}}
    """)
    with pytest.raises(PluginError) as caught:
        map_record(plan, "OrderWrittenSale", {"id": "77", "email": "a@b.co"})
    assert caught.value.context == {"plugin": "boom", "retailer": "acme", "record": "77",
                                    "webhook": "OrderWrittenSale"}
    assert "KeyError" in str(caught.value)


def test_disabled_or_unknown_webhook_types_are_not_mapped(tmp_path: Path) -> None:
    plan = retailer(tmp_path, """
        webhooks:
          OrderWrittenQuote:
            enabled: false
            fetch: {path: /api/Orders/Detail, record: "data.orders[0]"}
            events: {}
    """)
    assert plan.webhooks["OrderWrittenQuote"].enabled is False
    for kind in ("OrderWrittenQuote", "OrderDeleted"):
        with pytest.raises(MappingError, match="is not mapped"):
            map_record(plan, kind, {"id": "1"})


def test_a_template_naming_a_missing_field_fails_instead_of_sending_an_empty_id(tmp_path: Path) -> None:
    plan = retailer(tmp_path, SALE.replace('"order:{{ id }}"', '"order:{{ orderId }}"') % "          n: id")
    with pytest.raises(MappingError, match="orderId"):
        map_record(plan, "OrderWrittenSale", {"id": "1", "customer": {"email": "a@b.co"}}, now=NOW)
