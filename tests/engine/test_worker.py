"""The worker's delivery against the fake Klaviyo on a real server: bulk jobs for a backlog, one bad event
dead-lettered alone, dry-run events never sent."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path

import httpx

from engine.connections import Connections
from engine.fakes import klaviyo as fake_klaviyo
from engine.golden import GOLDEN
from engine.sqlite_store import SqliteStore
from engine.store import NewEvent
from engine.worker import BATCHES_OUT, Worker, WorkerSettings


def _body(n: int) -> dict:
    body = copy.deepcopy(json.loads((GOLDEN / "sunrise-patio" / "sale-kit-and-cushions" / "expected.json")
                                    .read_text(encoding="utf-8"))[0])
    attributes = body["data"]["attributes"]
    attributes["unique_id"] = f"order:{n}"
    attributes["profile"]["data"]["attributes"]["email"] = f"buyer{n}@example.com"
    return body


def _store(tmp_path: Path, bodies: list[dict], *, dry_run: bool = False) -> SqliteStore:
    store = SqliteStore.open(tmp_path / "worker.sqlite3")
    store.record_webhook(retailer="demo", source="storis", event_type="OrderWrittenSale", body=b"{}",
                         entity_ids=["1"], status="accepted", now=time.time())
    [job] = store.claim_jobs(limit=1, now=time.time(), lease_seconds=60)
    events = [NewEvent("demo", "Completed Purchase", b["data"]["attributes"]["unique_id"], b, dry_run) for b in bodies]
    store.complete_job(job.id, events=events, skipped=[], now=time.time())
    return store


def _connections(base_url: str) -> dict[str, Connections]:
    return {"demo": Connections(
        retailer="demo", webhook_mode="shared_secret", webhook_header="X-Webhook-Secret", webhook_secret=None,
        storis_base_url=None, storis_client_id=None, storis_client_secret=None, klaviyo_base_url=base_url,
        klaviyo_api_key="pk_worker_test", klaviyo_revision="2026-07-15")}


def _worker(store: SqliteStore, base_url: str) -> Worker:
    return Worker(store=store, retailers={}, connections=_connections(base_url),
                  settings=WorkerSettings(bulk_threshold=10))


def _deliver(store: SqliteStore, base_url: str) -> int:
    async def run() -> int:
        worker = _worker(store, base_url)
        try:
            return await worker.deliver()
        finally:
            await worker.close()

    return asyncio.run(run())


def test_a_backlog_goes_in_bulk_and_one_bad_event_is_dead_lettered_alone(tmp_path: Path, serve) -> None:
    bodies = [_body(n) for n in range(30)]
    del bodies[7]["data"]["attributes"]["metric"]
    store = _store(tmp_path, bodies)
    with serve(fake_klaviyo.create_app()) as base_url:
        _deliver(store, base_url)
        requests = httpx.get(f"{base_url}/_requests").json()
        received = httpx.get(f"{base_url}/_received").json()
    assert [(r["path"], r["status"]) for r in requests][:1] == [("/api/event-bulk-create-jobs", 400)]
    assert sorted(r["status"] for r in requests[1:]) == [202] * 29 + [400]
    assert len(received) == 29
    counts = store.counts()["events"]
    assert (counts["delivered"], counts["dead"]) == (29, 1)
    [dead] = [e for e in store.list_events(status="dead")]
    assert dead.unique_id == "order:7" and dead.last_status == 400


def test_a_clean_backlog_is_sent_as_one_bulk_job(tmp_path: Path, serve) -> None:
    store = _store(tmp_path, [_body(n) for n in range(25)])
    with serve(fake_klaviyo.create_app()) as base_url:
        _deliver(store, base_url)
        requests = httpx.get(f"{base_url}/_requests").json()
        received = httpx.get(f"{base_url}/_received").json()
    assert [(r["path"], r["status"]) for r in requests] == [("/api/event-bulk-create-jobs", 202)]
    assert sorted(e["data"]["attributes"]["unique_id"] for e in received) == sorted(f"order:{n}" for n in range(25))
    assert store.counts()["events"]["delivered"] == 25


def test_dry_run_events_are_stored_but_never_sent(tmp_path: Path, serve) -> None:
    store = _store(tmp_path, [_body(n) for n in range(3)], dry_run=True)
    with serve(fake_klaviyo.create_app()) as base_url:
        assert _deliver(store, base_url) == 0
        assert httpx.get(f"{base_url}/_requests").json() == []
    assert store.counts()["events"]["dry-run"] == 3


def test_a_long_backlog_keeps_a_few_batches_out_at_most_and_sends_each_event_once(tmp_path: Path) -> None:
    store = _store(tmp_path, [_body(n) for n in range(40)])
    in_flight, most, sent = 0, 0, []

    async def klaviyo(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        for group in json.loads(request.content)["data"]["attributes"]["events-bulk-create"]["data"]:
            sent.extend(e["attributes"]["unique_id"] for e in group["attributes"]["events"]["data"])
        return httpx.Response(202)

    async def run(deliver_seconds: float) -> int:
        worker = Worker(store=store, retailers={}, connections=_connections("https://klaviyo.test"),
                        settings=WorkerSettings(batch=4, bulk_threshold=2, deliver_seconds=deliver_seconds),
                        transport=httpx.MockTransport(klaviyo))
        try:
            return await worker.deliver()
        finally:
            await worker.close()

    # Past its time, a call claims no more: the rest waits for the next call, so new work is never held up.
    first = asyncio.run(run(deliver_seconds=0.01))
    assert 4 <= first < 40
    assert asyncio.run(run(deliver_seconds=60)) == 40 - first
    assert most == BATCHES_OUT
    assert sorted(sent) == sorted(f"order:{n}" for n in range(40))
    assert store.counts()["events"]["delivered"] == 40
