"""Reading and verifying Klaviyo's consent webhooks (engine.consent)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from engine import consent
from engine.store import NewUnsubscribe

SECRET = "whsec"
NOW = 1_796_000_000.0


def signed(body: dict, *, stamp: str = "2026-11-30T00:53:20Z", header_id: str = "01W", secret: str = SECRET
           ) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw + stamp.encode(), hashlib.sha256).hexdigest()
    return raw, {"klaviyo-signature": signature, "klaviyo-timestamp": stamp, "klaviyo-webhook-id": header_id}


def entry(external_id: str, profile: str, topic: str = "event:klaviyo.unsubscribed_from_email_marketing") -> dict:
    return {"topic": topic, "external_id": external_id,
            "payload": {"data": {"relationships": {"profile": {"data": {"type": "profile", "id": profile}}}}}}


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-30T00:53:20Z", NOW), ("2026-11-30T00:53:20+00:00", NOW), ("2026-11-29T19:53:20-05:00", NOW),
    ("Mon, 30 Nov 2026 00:53:20 GMT", NOW), ("1796000000", NOW), ("", None), ("yesterday", None),
])
def test_timestamps_in_every_form_klaviyo_uses(text: str, expected: float | None) -> None:
    assert consent.parse_timestamp(text) == expected


def test_a_genuine_system_webhook_yields_each_unsubscribe_entry() -> None:
    body, headers = signed({"meta": {"klaviyo_webhook_id": "01W"}, "data": [
        entry("e1", "P1"), entry("e2", "P2", "event:klaviyo.manually_suppressed_from_email_marketing"),
        entry("e3", "P3", "event:klaviyo.placed_order")]})
    assert consent.verify_system(body, headers, SECRET, now=NOW + 299) == [
        NewUnsubscribe("system:e1", None, "P1", None), NewUnsubscribe("system:e2", None, "P2", None)]


@pytest.mark.parametrize(("change", "status", "reason"), [
    ({"secret": "other"}, 401, "bad_signature"),
    ({"stamp": "2026-11-30T00:40:00Z"}, 401, "stale_timestamp"),
    ({"header_id": "01X"}, 401, "webhook_id_mismatch"),
])
def test_forged_stale_or_misaddressed_system_webhooks_are_refused(change: dict, status: int, reason: str) -> None:
    body, headers = signed({"meta": {"klaviyo_webhook_id": "01W"}, "data": [entry("e1", "P1")]}, **change)
    with pytest.raises(consent.Refused) as caught:
        consent.verify_system(body, headers, SECRET, now=NOW)
    assert (caught.value.status, caught.value.reason) == (status, reason)


def test_more_than_a_thousand_entries_are_refused() -> None:
    body, headers = signed({"meta": {"klaviyo_webhook_id": "01W"}, "data": [entry(str(i), "P") for i in range(1001)]})
    with pytest.raises(consent.Refused, match="at most 1000"):
        consent.verify_system(body, headers, SECRET, now=NOW)


def test_no_configured_secret_refuses_everything() -> None:
    body, headers = signed({"meta": {"klaviyo_webhook_id": "01W"}, "data": []})
    with pytest.raises(consent.Refused):
        consent.verify_system(body, headers, None, now=NOW)
    with pytest.raises(consent.Refused):
        consent.verify_flow(b"{}", {"x-webhook-secret": "", "x-action": "customer/unsubscribe"}, None)


def test_a_flow_webhook_normalises_the_email_and_keys_the_unsubscribe_by_its_body() -> None:
    body = json.dumps({"email": " Maria@Example.COM ", "storis_customer_id": "0000123456"}).encode()
    headers = {"x-webhook-secret": SECRET, "x-action": "customer/unsubscribe"}
    [found] = consent.verify_flow(body, headers, SECRET)
    assert (found.email, found.customer_id, found.profile_id) == ("maria@example.com", "0000123456", None)
    assert found.key == "flow:" + hashlib.sha256(body).hexdigest()
    with pytest.raises(consent.Refused, match="X-Action"):
        consent.verify_flow(body, {**headers, "x-action": "customer/delete"}, SECRET)
    with pytest.raises(consent.Refused, match="needs an email"):
        consent.verify_flow(b'{"email": "not an email"}', headers, SECRET)
