"""Consent end to end, with real processes on loopback: Klaviyo unsubscribes reach STORIS, and no purchase
re-subscribes anyone (see engine.consent and engine.consent_worker)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from engine.fakes import klaviyo as fake_klaviyo
from engine.sqlite_store import SqliteStore

# The same values as tests/e2e/conftest.py (test modules cannot import it).
WEBHOOK_SECRET = "e2e-klaviyo-secret"
API_KEY = "pk_e2e_account"
NOT_OK_ORDER = "3100001"
CUSTOMER = "0000500101"
EMAIL = "priya.natarajan@example.com"
SALE = {"environment": "Production", "eventType": "OrderWrittenSale", "clientCode": "DEMO01", "accountName": "demo",
        "data": [{"entityId": "2001001"}]}
UNSUBSCRIBE_TOPIC = "event:klaviyo.unsubscribed_from_email_marketing"


def flow(email: str, customer: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = {"email": email, **({"storis_customer_id": customer} if customer else {})}
    return json.dumps(body).encode(), {"X-Action": "customer/unsubscribe", "X-Webhook-Secret": WEBHOOK_SECRET}


def system(profile_id: str, *, webhook_id: str = "01WEBHOOK", header_id: str | None = None,
           timestamp: str | None = None, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({
        "meta": {"klaviyo_webhook_id": webhook_id, "version": "2026-07-15"},
        "data": [{"topic": UNSUBSCRIBE_TOPIC, "external_id": f"delivery-{profile_id}",
                  "payload": {"data": {"type": "event", "id": "01EVENT", "attributes": {},
                                       "relationships": {"profile": {"data": {"type": "profile",
                                                                              "id": profile_id}}}}}}],
    }).encode()
    stamp = timestamp or formatdate(time.time(), usegmt=True)
    signature = hmac.new(secret.encode(), body + stamp.encode(), hashlib.sha256).hexdigest()
    return body, {"Klaviyo-Signature": signature, "Klaviyo-Timestamp": stamp,
                  "Klaviyo-Webhook-Id": header_id or webhook_id}


def customer_updates(storis: Any) -> list[dict[str, Any]]:
    return [r for r in storis.writes() if r["path"].endswith("/api/Customers/Update")]


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    return response.json()


def test_a_flow_webhook_marks_the_customer_not_ok_to_solicit(start_service, storis, wait_for):
    service = start_service()
    accepted(service.post_klaviyo(*flow(EMAIL, CUSTOMER)))
    [update] = wait_for(lambda: customer_updates(storis), "the STORIS customer update")
    assert (update["method"], update["body"]) == ("PUT", {"customerId": CUSTOMER, "okToSolicit": False})
    wait_for(lambda: service.consent_counts()["unsubscribes"]["done"] == 1, "the unsubscribe done")
    assert service.consent_counts()["suppressions"]["total"] == 1


def test_a_flow_webhook_with_only_an_email_finds_the_customer_first(start_service, storis, wait_for):
    service = start_service()
    accepted(service.post_klaviyo(*flow("  Samuel.Okafor@Example.com ")))
    [update] = wait_for(lambda: customer_updates(storis), "the STORIS customer update")
    assert update["body"] == {"customerId": "0000500102", "okToSolicit": False}
    searches = [r for r in storis.writes() if r["path"].endswith("/api/Customers/Search")]
    assert [s["body"] for s in searches] == [{"emailAddress": "samuel.okafor@example.com"}]


def test_a_signed_system_webhook_fetches_the_profile_and_marks_the_customer(start_service, klaviyo, storis,
                                                                           wait_for):
    service = start_service()
    accepted(service.post(SALE))
    [profile] = wait_for(lambda: klaviyo.profiles(), "the buyer's Klaviyo profile")
    customer_updates_before = len(customer_updates(storis))
    answer = accepted(service.post_klaviyo(*system(profile["id"])))
    assert (answer["unsubscribes"], answer["new"]) == (1, 1)
    updates = wait_for(lambda: customer_updates(storis)[customer_updates_before:], "the STORIS customer update")
    assert updates[0]["body"] == {"customerId": CUSTOMER, "okToSolicit": False}
    assert any(r["path"] == f"/api/profiles/{profile['id']}" for r in klaviyo.requests())
    # The same delivery again (Klaviyo retries): acknowledged, nothing new.
    again = accepted(service.post_klaviyo(*system(profile["id"])))
    assert again["new"] == 0


@pytest.mark.parametrize("forgery", ["bad signature", "stale timestamp", "mismatched webhook id", "wrong secret"])
def test_forged_or_stale_klaviyo_webhooks_are_refused_and_store_nothing(start_service, forgery):
    service = start_service()
    if forgery == "bad signature":
        body, headers = system("01PROFILE")
        headers["Klaviyo-Signature"] = "0" * 64
    elif forgery == "stale timestamp":
        body, headers = system("01PROFILE", timestamp=formatdate(time.time() - 301, usegmt=True))
    elif forgery == "mismatched webhook id":
        body, headers = system("01PROFILE", header_id="01OTHER")
    else:
        body, headers = flow(EMAIL, CUSTOMER)
        headers["X-Webhook-Secret"] = "not-the-secret"
    response = service.post_klaviyo(body, headers)
    assert response.status_code == 401, response.text
    assert sum(service.counts()["webhooks"].values()) == 0
    assert sum(service.consent_counts()["unsubscribes"].values()) == 0


def test_an_iso_timestamp_is_accepted_too(start_service):
    service = start_service()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    accepted(service.post_klaviyo(*system("01PROFILE", timestamp=stamp)))


def test_an_unsubscribed_customer_who_buys_gets_events_but_no_subscription(start_service, klaviyo, wait_for):
    service = start_service()
    accepted(service.post_klaviyo(*flow(EMAIL, CUSTOMER)))
    wait_for(lambda: service.consent_counts()["unsubscribes"]["done"] == 1, "the unsubscribe done")
    accepted(service.post(SALE))
    wait_for(lambda: service.counts()["events"]["delivered"] == 4, "the sale's events delivered")
    # Give the worker the time it would take to subscribe, then check it did not.
    time.sleep(0.5)
    assert klaviyo.subscriptions() == []
    assert sum(service.consent_counts()["subscriptions"].values()) == 0


def test_a_customer_storis_says_not_ok_to_solicit_is_never_subscribed(start_service, klaviyo, wait_for):
    service = start_service()
    accepted(service.post({**SALE, "data": [{"entityId": NOT_OK_ORDER}, {"entityId": "2001001"}]}))
    wait_for(lambda: klaviyo.subscriptions(), "the OK-to-solicit buyer subscribed")
    wait_for(lambda: service.counts()["events"]["delivered"] == 8, "both sales' events delivered")
    assert [s["email"] for s in klaviyo.subscriptions()] == [EMAIL]
    assert [s["list_id"] for s in klaviyo.subscriptions()] == ["LDEMO01"]


def test_storis_down_during_an_unsubscribe_the_update_lands_after_it_recovers(start_service, storis, wait_for):
    service = start_service()
    storis.fail(status=503)
    accepted(service.post_klaviyo(*flow(EMAIL, CUSTOMER)))
    wait_for(lambda: service.consent_counts()["unsubscribes"]["pending"] == 1 and storis.writes(),
             "a failed attempt, retry pending")
    assert customer_updates(storis) == [] or all(u.get("status") != 200 for u in customer_updates(storis))
    storis.fail(mode="ok")
    wait_for(lambda: service.consent_counts()["unsubscribes"]["done"] == 1, "the unsubscribe done", timeout=20)
    assert customer_updates(storis)[-1]["body"] == {"customerId": CUSTOMER, "okToSolicit": False}
    assert service.consent_counts()["unsubscribes"]["dead"] == 0


def test_a_403_on_subscription_is_dead_lettered_naming_the_scopes(start_service, serve, wait_for, tmp_path):
    app = fake_klaviyo.create_app(keys={API_KEY: {"events:write", "profiles:read"}})
    with serve(app) as klaviyo_url:
        service = start_service(DEMO_KLAVIYO_URL=klaviyo_url)
        accepted(service.post(SALE))
        wait_for(lambda: service.consent_counts()["subscriptions"]["dead"] == 1, "the subscription dead-lettered")
        assert service.counts()["events"]["delivered"] == 4
    assert "needs the scopes lists:write, profiles:write, subscriptions:write" in service.process.tail(200)
    with SqliteStore.open(service.db) as store:
        [letter] = store.dead_letters_older_than(0, now=time.time())
    assert letter.kind == "subscription"
    assert "(403)" in letter.error
    assert "needs the scopes lists:write, profiles:write, subscriptions:write" in letter.error


def test_a_dead_subscription_is_replayed_once_the_key_has_the_scopes(start_service, serve, wait_for):
    keys = {API_KEY: {"events:write", "profiles:read"}}
    with serve(fake_klaviyo.create_app(keys=keys)) as klaviyo_url:
        service = start_service(DEMO_KLAVIYO_URL=klaviyo_url)
        accepted(service.post(SALE))
        wait_for(lambda: service.consent_counts()["subscriptions"]["dead"] == 1, "the subscription dead-lettered")
        service.stop()
        keys[API_KEY] |= {"lists:write", "profiles:write", "subscriptions:write"}
        result = service.engine("replay", "--retailer", "demo", "--status", "dead")
        assert "1 dead list subscription(s) to retry" in result.stderr
        assert service.consent_counts()["subscriptions"]["done"] == 1
        assert [s["email"] for s in httpx.get(f"{klaviyo_url}/_subscriptions").json()] == [EMAIL]
