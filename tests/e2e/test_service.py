"""End to end: STORIS webhooks into a real ``engine serve`` process, Klaviyo events out at the fake Klaviyo.

Each test asserts where a user would look: the fake Klaviyo's ``/_received`` (events accepted, after its
dedup by unique_id) and ``/_requests`` (every API request with its time and status), the store through
``engine events --json`` and its counts, and the service's ``/metrics``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from engine.sqlite_store import SqliteStore
from engine.worker import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DEMO_RECORDS = ROOT / "demo" / "records"
SALE_EVENTS = [("Completed Purchase", "order:2001001"), ("Purchased Product", "order:2001001:kit:CAY-5PC"),
               ("Purchased Product", "order:2001001:line:3"), ("Purchased Product", "order:2001001:line:4")]
QUOTE_EVENT = ("Received Quote", "quote:Q-700100")
FULFILLMENT_EVENT = ("Fulfillment Completed", "fulfillment:F-90001:Complete")
# How many deliveries the worker keeps in flight at once.
CONCURRENCY = WorkerSettings().concurrency


def envelope(event_type: str, *entity_ids: str) -> dict[str, Any]:
    """A STORIS webhook envelope, shaped like the shared samples (envelope.*.json), for the demo's ids."""
    return {"environment": "Production", "eventType": event_type, "clientCode": "DEMO01", "accountName": "demo",
            "data": [{"entityId": entity_id} for entity_id in entity_ids]}


SALE = envelope("OrderWrittenSale", "2001001")
QUOTE = envelope("OrderWrittenQuote", "Q-700100")
FULFILLMENT = envelope("FulfillmentCompleted", "F-90001")


def sale_events(order_id: str) -> set[tuple[str, str]]:
    return {(metric, unique_id.replace("2001001", order_id)) for metric, unique_id in SALE_EVENTS}


def record(name: str, collection: str) -> dict[str, Any]:
    return json.loads((DEMO_RECORDS / name).read_text(encoding="utf-8"))["data"][collection][0]


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """``body`` as an iterator, which httpx sends chunked, without a Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def accepted(response: httpx.Response, *, duplicate: bool = False) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["status"], answer["duplicate"]) == ("accepted", duplicate), answer
    return answer


def test_sale_quote_and_fulfillment_webhooks_become_their_klaviyo_events(start_service, klaviyo, wait_for):
    service = start_service()

    for body in (SALE, QUOTE, FULFILLMENT):
        accepted(service.post(body))

    wait_for(lambda: len(klaviyo.received()) >= 6, "six events at the fake Klaviyo")
    assert sorted(klaviyo.received_ids()) == sorted([*SALE_EVENTS, QUOTE_EVENT, FULFILLMENT_EVENT])
    by_id = {e["data"]["attributes"]["unique_id"]: e["data"]["attributes"] for e in klaviyo.received()}
    sale, quote = record("orders-detail.sale.json", "orders"), record("orders-detail.quote.json", "orders")
    purchase = by_id["order:2001001"]
    assert (purchase["value"], purchase["properties"]["orderId"]) == (sale["totals"]["grandTotal"], "2001001")
    assert purchase["profile"]["data"]["attributes"]["external_id"] == sale["customer"]["id"]
    assert by_id["quote:Q-700100"]["value"] == quote["totals"]["grandTotal"]
    assert by_id["fulfillment:F-90001:Complete"]["properties"]["fulfillmentId"] == "F-90001"
    assert [r["status"] for r in klaviyo.event_posts()] == [202] * 6

    wait_for(lambda: service.counts()["events"]["delivered"] == 6, "six events marked delivered in the store")
    stored = service.events()
    assert sorted((e["metric"], e["unique_id"], e["status"], e["entity_id"]) for e in stored) == sorted(
        [(m, u, "delivered", "2001001") for m, u in SALE_EVENTS]
        + [(*QUOTE_EVENT, "delivered", "Q-700100"), (*FULFILLMENT_EVENT, "delivered", "F-90001")])
    assert service.metric("engine_webhooks_received_total", retailer="demo", source="storis") == 3
    assert service.metric("engine_events_delivered_total", retailer="demo") == 6
    assert service.metric("engine_delivery_latency_seconds_count") == 6


def test_a_webhook_posted_three_times_yields_each_event_once(start_service, klaviyo, wait_for):
    service = start_service()

    first = accepted(service.post(SALE))
    second = accepted(service.post(SALE), duplicate=True)
    wait_for(lambda: service.counts()["events"]["delivered"] == 4, "the sale's four events delivered")
    # The third copy comes after delivery, as STORIS's retries can; a quote posted after it is the barrier:
    # once the quote is delivered, the worker has had its chance to (wrongly) do the sale again.
    third = accepted(service.post(SALE), duplicate=True)
    accepted(service.post(QUOTE))
    wait_for(lambda: service.counts()["events"]["delivered"] == 5, "the quote delivered")

    assert first["webhook_id"] == second["webhook_id"] == third["webhook_id"]
    assert sorted(klaviyo.received_ids()) == sorted([*SALE_EVENTS, QUOTE_EVENT])
    # Each event was sent once, not merely deduplicated by the fake.
    assert len(klaviyo.event_posts()) == 5
    counts = service.counts()
    assert (counts["webhooks"]["accepted"], sum(counts["jobs"].values())) == (2, 2)
    assert Counter(e["unique_id"] for e in service.events()) == Counter(u for _, u in [*SALE_EVENTS, QUOTE_EVENT])
    assert service.metric("engine_webhooks_received_total", retailer="demo", source="storis") == 2


def test_kill_9_after_the_acknowledgement_loses_nothing_and_delivers_once(start_service, klaviyo, wait_for,
                                                                           many_orders):
    # A short lease, so a restarted worker takes over the dead one's jobs and events in a second.
    service = start_service(ENGINE_LEASE_SECONDS="1.5")
    expected = set().union(*(sale_events(order) for order in many_orders))
    # Slow answers keep deliveries in flight, so the second kill lands between sending and marking.
    klaviyo.fail(mode="timeout", seconds=0.25)

    accepted(service.post(envelope("OrderWrittenSale", *many_orders)))
    service.kill()
    counts = service.counts()
    assert counts["webhooks"]["accepted"] == 1, "a 202 promises the webhook is stored"
    assert sum(counts["jobs"].values()) == len(many_orders)

    service.restart()
    wait_for(lambda: len(klaviyo.received()) > CONCURRENCY, "some events delivered after the first restart")
    service.kill()
    marked = service.counts()["events"]["delivered"]
    assert 0 < marked < len(expected), f"the kill should land mid-delivery, {marked} of {len(expected)} marked"

    klaviyo.fail(mode="ok")
    restarted_at = time.time()
    service.restart()
    wait_for(lambda: service.counts()["events"]["delivered"] == len(expected), "every event marked delivered",
             timeout=20)

    received = klaviyo.received_ids()
    assert len(received) == len(set(received)) and set(received) == expected
    stored = service.events()
    assert sorted((e["metric"], e["unique_id"]) for e in stored) == sorted(expected)
    assert {e["status"] for e in stored} == {"delivered"}
    assert service.counts()["jobs"]["done"] == len(many_orders)
    # The fake logs no bodies, but counting does it: each event not yet marked delivered at the kill needs one
    # POST after the restart to become delivered, so exactly that many POSTs means none went out twice and
    # none of the marked ones again. (Those in flight at the kill were sent before it too; Klaviyo dropped
    # the second copy by unique_id, as /_received shows.)
    posts = klaviyo.event_posts()
    assert {p["status"] for p in posts} == {202}
    assert len([p for p in posts if p["t"] >= restarted_at]) == len(expected) - marked


def test_klaviyo_503s_are_retried_until_everything_arrives(start_service, klaviyo, wait_for):
    service = start_service()
    # Every event's first attempt fails, then three retries more. At most 1 + 3 failures per event stay
    # below the policy's 16 attempts, so nothing may be dead-lettered.
    failures = len(SALE_EVENTS) + 3
    klaviyo.fail(status=503, count=failures)

    accepted(service.post(SALE))
    wait_for(lambda: service.counts()["events"]["delivered"] == len(SALE_EVENTS), "the sale's events delivered")

    assert sorted(klaviyo.received_ids()) == sorted(SALE_EVENTS)
    # The sale also subscribes its buyer to the demo list: that request may draw some of the 503s too.
    wait_for(lambda: any(r["status"] == 202 for r in klaviyo.requests() if "subscription" in r["path"]),
             "the purchase subscription delivered")
    assert Counter(r["status"] for r in klaviyo.requests())[503] == failures
    statuses = Counter(p["status"] for p in klaviyo.event_posts())
    assert statuses[202] == len(SALE_EVENTS)
    stored = service.events()
    assert {e["status"] for e in stored} == {"delivered"}
    assert sum(e["attempts"] for e in stored) == statuses[503] + len(SALE_EVENTS)
    assert service.counts()["events"]["dead"] == 0
    assert service.metric("engine_events_retried_total", retailer="demo") == statuses[503]
    assert service.metric("engine_events_dead_lettered_total", retailer="demo") == 0


def test_a_429_with_retry_after_holds_every_request_of_the_account(start_service, klaviyo, wait_for):
    service = start_service()
    klaviyo.fail(status=429, retry_after=2, count=1)

    accepted(service.post(QUOTE))
    throttled = wait_for(lambda: [p for p in klaviyo.event_posts() if p["status"] == 429], "the 429")[0]
    # Another event of the same account, ready well within the 2 s: it must wait too.
    accepted(service.post(FULFILLMENT))
    wait_for(lambda: service.counts()["events"]["delivered"] == 2, "both events delivered")

    requests = sorted(klaviyo.requests(), key=lambda r: r["t"])
    assert requests[0] == throttled
    later = [r["t"] - throttled["t"] for r in requests[1:]]
    # 20 ms of slack for the two processes' clocks; the pause itself starts only when the 429 arrives.
    assert later and min(later) >= 2.0 - 0.02, later
    fulfillment = next(e for e in service.events() if e["unique_id"] == FULFILLMENT_EVENT[1])
    assert fulfillment["created_at"] < throttled["t"] + 2.0, "the fulfillment was ready before the pause ended"
    assert sorted(klaviyo.received_ids()) == sorted([QUOTE_EVENT, FULFILLMENT_EVENT])


def test_a_400_is_dead_lettered_with_its_body_and_replay_delivers_it(start_service, klaviyo, wait_for):
    service = start_service()
    klaviyo.fail(status=400, count=1)

    accepted(service.post(QUOTE))
    wait_for(lambda: service.counts()["events"]["dead"] == 1, "the quote's event dead-lettered")

    [event] = service.events()
    assert (event["metric"], event["unique_id"], event["status"], event["last_status"]) == (*QUOTE_EVENT, "dead", 400)
    assert json.loads(event["last_error"])["errors"][0]["status"] == 400, "Klaviyo's answer is kept as it came"
    assert [(a.status, a.body) for a in service.attempts(event["id"])] == [(400, event["last_error"])]
    assert klaviyo.received() == []
    assert service.metric("engine_events_dead_lettered_total", retailer="demo") == 1
    assert service.metric("engine_events_retried_total", retailer="demo") == 0

    # The "fix" (the failure switch is spent) ships with a restart; the replay runs while the service is
    # down, so the delivery below is the replay's own.
    service.stop()
    # --dry-run prints what would be sent (fetched and mapped again) and changes nothing.
    dry = service.engine("replay", "--retailer", "demo", "--status", "dead", "--dry-run")
    assert [b["data"]["attributes"]["unique_id"] for b in json.loads(dry.stdout)] == [QUOTE_EVENT[1]]
    assert klaviyo.received() == [] and service.counts()["events"]["dead"] == 1
    replay = service.engine("replay", "--retailer", "demo", "--status", "dead")
    assert "1 webhook(s) to replay" in replay.stderr

    assert klaviyo.received_ids() == [QUOTE_EVENT]
    [event] = service.events()
    assert (event["status"], event["last_status"], event["last_error"]) == ("delivered", 202, None)
    assert "0 webhook(s) to replay" in service.engine("replay", "--retailer", "demo", "--status", "dead").stderr


def test_bad_webhooks_get_their_status_and_store_nothing(start_service, klaviyo):
    service = start_service()
    over_limit = json.dumps({**SALE, "padding": "x" * (1024 * 1024)}).encode()
    cases = [
        ("wrong secret", service.post(SALE, secret="not-the-secret"), 401, "unauthorized"),
        ("no secret", service.post(SALE, secret=None), 401, "unauthorized"),
        ("retailer without a configured secret", service.post(SALE, retailer="harbor-home"), 401, "unauthorized"),
        ("malformed JSON", service.post(b'{"eventType": "OrderWrittenSale", "data": ['), 400, "malformed_json"),
        ("envelope without entityId", service.post({"eventType": "OrderWrittenSale", "data": [{"id": "2001001"}]}),
         400, "invalid_envelope"),
        ("over 1 MiB", service.post(over_limit), 413, "too_large"),
        ("over 1 MiB, chunked (no Content-Length)", service.post(chunks(over_limit)), 413, "too_large"),
        ("not JSON", service.post(json.dumps(SALE).encode(), content_type="text/plain"), 415,
         "unsupported_media_type"),
        ("no content type", service.post(json.dumps(SALE).encode(), content_type=""), 415, "unsupported_media_type"),
        ("unknown retailer", service.post(SALE, retailer="no-such-store"), 404, "unknown_retailer"),
    ]

    for name, response, status, reason in cases:
        assert (response.status_code, response.json()["error"]) == (status, reason), f"{name}: {response.text}"
    envelope_error = cases[4][1].json()["detail"]
    assert "data/0" in envelope_error and "entityId" in envelope_error, envelope_error

    counts = service.counts()
    assert all(n == 0 for table in counts.values() for n in table.values()), counts
    assert service.events() == []
    assert klaviyo.requests() == []
    rejected = Counter(reason for _, _, _, reason in cases)
    for reason, count in rejected.items():
        assert service.metric("engine_webhooks_rejected_total", reason=reason) == count, reason
    assert service.metric("engine_webhooks_received_total", retailer="demo", source="storis") == 0


def test_an_unmapped_event_type_is_acknowledged_and_recorded_as_ignored(start_service, klaviyo):
    service = start_service()

    response = service.post(envelope("OrderDeleted", "2001001"))

    assert response.status_code == 202, response.text
    assert (response.json()["status"], response.json()["duplicate"]) == ("ignored", False)
    counts = service.counts()
    assert counts["webhooks"] == {"accepted": 0, "ignored": 1, "test": 0}
    assert sum(counts["jobs"].values()) == sum(counts["events"].values()) == 0
    assert service.metric("engine_webhooks_ignored_total", retailer="demo") == 1
    assert service.metric("engine_webhooks_received_total", retailer="demo", source="storis") == 0


def test_readyz_and_metrics(start_service, wait_for):
    service = start_service()

    ready = httpx.get(f"{service.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["store_writable"] is True
    assert "demo" in ready.json()["retailers"]

    accepted(service.post(SALE))
    wait_for(lambda: service.counts()["events"]["delivered"] == len(SALE_EVENTS), "the sale delivered")
    text = httpx.get(f"{service.url}/metrics", timeout=5).text
    for family, kind in [("engine_webhooks_received_total", "counter"), ("engine_webhooks_ignored_total", "counter"),
                         ("engine_webhooks_rejected_total", "counter"), ("engine_events_delivered_total", "counter"),
                         ("engine_events_retried_total", "counter"), ("engine_events_dead_lettered_total", "counter"),
                         ("engine_queue_depth", "gauge"), ("engine_delivery_latency_seconds", "histogram")]:
        assert f"# TYPE {family} {kind}" in text, family
    assert service.metric("engine_queue_depth", kind="jobs") == 0
    assert service.metric("engine_queue_depth", kind="events") == 0
    assert service.metric("engine_delivery_latency_seconds_count") == len(SALE_EVENTS)


def test_a_plugin_failing_on_one_record_fails_that_record_only(start_service, klaviyo, wait_for):
    service = start_service()
    broken = "3200001"  # tests/e2e/conftest.py BROKEN_KIT_ORDER: a soft kit with quantityPerKit 0
    accepted(service.post(envelope("OrderWrittenSale", broken, "2001001")))
    wait_for(lambda: service.counts()["events"]["delivered"] == len(SALE_EVENTS), "the good sale delivered")
    wait_for(lambda: service.counts()["jobs"]["dead"] == 1, "the broken sale's job dead-lettered")
    assert sorted(klaviyo.received_ids()) == sorted(SALE_EVENTS)
    with SqliteStore.open(service.db) as store:
        [letter] = store.dead_letters_older_than(0, now=time.time())
    assert (letter.kind, letter.entity_id) == ("job", broken)
    for part in ("plugin soft_kits", "retailer demo", f"record {broken}", "quantityPerKit"):
        assert part in letter.error, letter.error
