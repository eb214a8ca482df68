from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.event_json import EventJson
from engine.sqlite_store import _MIGRATIONS, SCHEMA_VERSION, SqliteStore
from engine.store import IncomingWebhook, Job, NewEvent, NewSkip, Store, StoreError

RETAILER = "sunrise-patio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore.open(tmp_path / "engine.db") as opened:
        yield opened


def _webhook(store: SqliteStore, *entities: str, body: bytes = b'{"id": 1}', status: str = "accepted",
             event_type: str = "OrderWrittenSale", retailer: str = RETAILER, now: float = 0.0) -> int:
    receipt = store.record_webhook(retailer=retailer, source="storis", event_type=event_type, body=body,
                                   entity_ids=list(entities), status=status, now=now)
    assert not receipt.duplicate
    return receipt.id


def _event(unique_id: str = "sale-1", *, properties: dict | None = None, dry_run: bool = False,
           retailer: str = RETAILER) -> NewEvent:
    body = {"data": {"type": "event", "attributes": {
        "properties": properties if properties is not None else {"v": 1}, "unique_id": unique_id,
        "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "ana@example.com"}}}}}}
    return NewEvent(retailer=retailer, metric="Placed Order", unique_id=unique_id, body=body, dry_run=dry_run)


def _one_job(store: SqliteStore, *, now: float = 0.0) -> Job:
    [job] = store.claim_jobs(limit=10, now=now, lease_seconds=60)
    return job


def _produce(store: SqliteStore, *events: NewEvent, now: float = 0.0) -> None:
    """Run the one due job to completion with ``events``."""
    store.complete_job(_one_job(store, now=now).id, events=list(events), skipped=[], now=now)


def test_sqlite_store_implements_the_protocol_exactly() -> None:
    methods = [name for name, value in vars(Store).items() if inspect.isfunction(value) and name[0] != "_"]
    assert "record_webhooks" in methods
    for name in methods:
        assert inspect.signature(getattr(SqliteStore, name)) == inspect.signature(getattr(Store, name)), name


# -- webhooks -------------------------------------------------------------------------------------------------


def test_a_redelivered_webhook_is_a_duplicate_and_adds_nothing(store: SqliteStore) -> None:
    first = _webhook(store, "S1", body=b'{"order": "S1"}')
    again = store.record_webhook(retailer=RETAILER, source="storis", event_type="OrderWrittenSale",
                                 body=b'{"order": "S1"}', entity_ids=["S1"], status="accepted", now=5.0)
    assert (again.id, again.duplicate) == (first, True)
    assert store.counts()["jobs"]["pending"] == 1
    # The same body is a different webhook for another retailer, source or type.
    _webhook(store, "S1", body=b'{"order": "S1"}', retailer="harbor-home")
    _webhook(store, "S1", body=b'{"order": "S1"}', event_type="OrderWrittenQuote")
    assert not store.record_webhook(retailer=RETAILER, source="klaviyo", event_type="OrderWrittenSale",
                                    body=b'{"order": "S1"}', entity_ids=[], status="accepted", now=0).duplicate
    assert store.counts()["webhooks"]["accepted"] == 4


@pytest.mark.parametrize("status", ["ignored", "test"])
def test_ignored_and_test_webhooks_are_stored_without_jobs(store: SqliteStore, status: str) -> None:
    _webhook(store, "S1", "S2", status=status)
    assert store.counts()["webhooks"][status] == 1
    assert store.claim_jobs(limit=10, now=100, lease_seconds=60) == []


def test_an_accepted_webhook_makes_one_job_per_distinct_entity(store: SqliteStore) -> None:
    webhook_id = _webhook(store, "S1", "S2", "S1")
    jobs = store.claim_jobs(limit=10, now=0, lease_seconds=60)
    assert [(j.webhook_id, j.retailer, j.event_type, j.entity_id, j.attempts, j.status) for j in jobs] == [
        (webhook_id, RETAILER, "OrderWrittenSale", "S1", 1, "leased"),
        (webhook_id, RETAILER, "OrderWrittenSale", "S2", 1, "leased"),
    ]


def test_bad_source_or_status_is_refused(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="'shopify'"):
        store.record_webhook(retailer=RETAILER, source="shopify", event_type="x", body=b"", entity_ids=[],
                             status="accepted", now=0)
    with pytest.raises(ValueError, match="'done'"):
        store.record_webhook(retailer=RETAILER, source="storis", event_type="x", body=b"", entity_ids=[],
                             status="done", now=0)


# -- jobs -----------------------------------------------------------------------------------------------------


def test_a_leased_job_is_claimable_again_once_its_lease_runs_out(store: SqliteStore) -> None:
    _webhook(store, "S1")
    first = store.claim_jobs(limit=10, now=0, lease_seconds=30)
    assert store.claim_jobs(limit=10, now=29.9, lease_seconds=30) == []
    again = store.claim_jobs(limit=10, now=30, lease_seconds=30)
    assert [j.id for j in again] == [j.id for j in first]
    assert again[0].attempts == 2


def test_a_failed_job_is_due_at_its_retry_time_and_dead_without_one(store: SqliteStore) -> None:
    _webhook(store, "S1")
    job = _one_job(store)
    store.fail_job(job.id, error="STORIS 503", retry_at=100, now=1)
    assert store.claim_jobs(limit=10, now=99, lease_seconds=60) == []
    job = _one_job(store, now=100)
    assert job.attempts == 2
    store.fail_job(job.id, error="STORIS 404", retry_at=None, now=101)
    assert store.claim_jobs(limit=10, now=10_000, lease_seconds=60) == []
    assert store.counts()["jobs"]["dead"] == 1
    [letter] = store.dead_letters_older_than(0, now=101)
    assert (letter.kind, letter.id, letter.entity_id, letter.error, letter.dead_at) == (
        "job", job.id, "S1", "STORIS 404", 101)


def test_complete_job_stores_events_and_skips_and_marks_it_done(store: SqliteStore) -> None:
    _webhook(store, "S1")
    job = _one_job(store)
    store.complete_job(job.id, events=[_event("a"), _event("b")],
                       skipped=[NewSkip(metric="Ordered Product", unique_id=None, reason="no email")], now=1)
    counts = store.counts()
    assert counts["jobs"]["done"] == 1
    assert counts["events"]["pending"] == 2
    assert {e.unique_id for e in store.list_events()} == {"a", "b"}


def test_complete_job_is_all_or_nothing(store: SqliteStore) -> None:
    _webhook(store, "S1")
    job = _one_job(store)
    # The events are written first; the bad skip (metric is required) then fails the transaction.
    with pytest.raises(StoreError, match="complete job"):
        store.complete_job(job.id, events=[_event("a")],
                           skipped=[NewSkip(metric=None, unique_id=None, reason="x")], now=1)  # type: ignore[arg-type]
    assert store.list_events() == []
    assert store.counts()["jobs"]["leased"] == 1


def test_unknown_jobs_and_webhooks_raise_key_error(store: SqliteStore) -> None:
    with pytest.raises(KeyError):
        store.complete_job(42, events=[], skipped=[], now=0)
    with pytest.raises(KeyError):
        store.fail_job(42, error="x", retry_at=None, now=0)
    with pytest.raises(KeyError):
        store.requeue_webhook(42, now=0)


# -- events ---------------------------------------------------------------------------------------------------


def _claim_events(store: SqliteStore, now: float = 0.0, **kwargs: object) -> list:
    return store.claim_events(limit=100, now=now, lease_seconds=60, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["pending", "delivered", "dry-run", "leased"])
def test_storing_an_event_again_changes_nothing_unless_it_is_dead(store: SqliteStore, state: str) -> None:
    _webhook(store, "S1", body=b"1")
    _produce(store, _event(properties={"v": 1}, dry_run=state == "dry-run"))
    if state in ("delivered", "leased"):
        [row] = _claim_events(store)
        if state == "delivered":
            store.mark_delivered([row.id], now=1, status=202)
    _webhook(store, "S1", body=b"2")
    _produce(store, _event(properties={"v": 2}))
    [view] = store.list_events()
    assert view.status == state
    assert store.counts()["events"][state] == 1


def test_a_dead_event_is_replaced_and_sent_afresh(store: SqliteStore) -> None:
    _webhook(store, "S1", body=b"1")
    _produce(store, _event(properties={"v": 1}))
    [row] = _claim_events(store)
    store.record_failure([row.id], now=1, status=400, body="bad", retry_at=None)
    _webhook(store, "S1", body=b"2", now=2)
    _produce(store, _event(properties={"v": 2}), now=2)
    [again] = _claim_events(store, now=2)
    assert (again.id, json.loads(again.event.attributes)["properties"], again.attempts) == (row.id, {"v": 2}, 1)
    assert len(store.attempts(row.id)) == 1  # the history stays


def test_dry_run_events_are_never_claimed(store: SqliteStore) -> None:
    _webhook(store, "S1")
    _produce(store, _event("dry", dry_run=True), _event("live"))
    assert [e.unique_id for e in _claim_events(store, now=1e9)] == ["live"]
    assert store.counts()["events"]["dry-run"] == 1


def test_events_are_claimed_oldest_first_per_retailer_and_leased(store: SqliteStore) -> None:
    _webhook(store, "S1")
    other = _event("h", retailer="harbor-home")
    _produce(store, _event("a"), other, _event("b"))
    assert [e.unique_id for e in _claim_events(store, retailer=RETAILER)] == ["a", "b"]
    assert _claim_events(store, now=59, retailer=RETAILER) == []
    assert [e.unique_id for e in _claim_events(store, now=60)] == ["a", "h", "b"]


def test_failures_are_retried_then_dead_lettered_with_every_attempt_kept(store: SqliteStore) -> None:
    _webhook(store, "S1")
    _produce(store, _event())
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    [row] = _claim_events(store)
    store.record_failure([row.id], now=1, status=None, body="", retry_at=10)
    assert _claim_events(store, now=9) == []
    [row] = _claim_events(store, now=10)
    assert row.attempts == 2
    store.record_failure([row.id], now=11, status=502, body=html, retry_at=20)
    [row] = _claim_events(store, now=20)
    store.record_failure([row.id], now=21, status=503, body="é" * 20_000, retry_at=None)
    assert _claim_events(store, now=1e9) == []

    attempts = store.attempts(row.id)
    assert [(a.at, a.status) for a in attempts] == [(1, None), (11, 502), (21, 503)]
    assert attempts[0].body == "" and attempts[1].body == html
    assert attempts[2].body == "é" * 5120 and len(attempts[2].body.encode()) == 10 * 1024
    [view] = store.list_events(status="dead")
    assert (view.attempts, view.last_status, view.next_attempt_at) == (3, 503, None)
    [letter] = store.dead_letters_older_than(60, now=81)
    assert (letter.kind, letter.metric, letter.entity_id) == ("event", "Placed Order", "S1")
    assert store.dead_letters_older_than(60, now=80.9) == []


def test_a_late_failure_never_undoes_a_delivery(store: SqliteStore) -> None:
    _webhook(store, "S1")
    _produce(store, _event())
    [row] = _claim_events(store)
    store.mark_delivered([row.id], now=1, status=202)
    store.record_failure([row.id], now=2, status=None, body="timeout", retry_at=None)
    [view] = store.list_events()
    assert (view.status, view.last_status, view.delivered_at) == ("delivered", 202, 1)
    assert [a.status for a in store.attempts(row.id)] == [202, None]


# -- replay ---------------------------------------------------------------------------------------------------


def test_replaying_a_webhook_never_duplicates_a_delivered_event(store: SqliteStore) -> None:
    webhook_id = _webhook(store, "S1")
    _produce(store, _event())
    [row] = _claim_events(store)
    store.mark_delivered([row.id], now=1, status=202)
    [job] = store.requeue_webhook(webhook_id, now=2)
    assert (job.webhook_id, job.entity_id, job.attempts, job.status) == (webhook_id, "S1", 0, "pending")
    _produce(store, _event(), now=2)
    assert [e.status for e in store.list_events()] == ["delivered"]
    assert _claim_events(store, now=1e9) == []


def test_a_dead_webhook_is_listed_until_a_replay_fixes_it(store: SqliteStore) -> None:
    dead_job = _webhook(store, "S1", body=b"1", now=10)
    dead_event = _webhook(store, "S2", body=b"2", now=20)
    _webhook(store, "S3", body=b"3", now=30)
    jobs = store.claim_jobs(limit=10, now=40, lease_seconds=60)
    store.fail_job(jobs[0].id, error="404", retry_at=None, now=41)
    store.complete_job(jobs[1].id, events=[_event("s2")], skipped=[], now=41)
    store.complete_job(jobs[2].id, events=[_event("s3")], skipped=[], now=41)
    [s2, s3] = _claim_events(store, now=42)
    store.record_failure([s2.id], now=43, status=422, body="{}", retry_at=None)
    store.mark_delivered([s3.id], now=43, status=202)
    assert [w.id for w in store.list_webhooks(status="dead")] == [dead_job, dead_event]

    for webhook_id in (dead_job, dead_event):
        store.requeue_webhook(webhook_id, now=50)
    for job in store.claim_jobs(limit=10, now=50, lease_seconds=60):
        unique_id = {"S1": "s1", "S2": "s2"}[job.entity_id]
        store.complete_job(job.id, events=[_event(unique_id)], skipped=[], now=51)
    assert store.list_webhooks(status="dead") == []
    assert store.counts()["jobs"] == {"pending": 0, "leased": 0, "done": 4, "dead": 0, "replayed": 1}
    assert store.dead_letters_older_than(0, now=1e9) == []


def test_list_webhooks_filters(store: SqliteStore) -> None:
    a = _webhook(store, "S1", body=b"a", now=10)
    b = _webhook(store, "Q1", body=b"b", now=20, event_type="OrderWrittenQuote")
    c = _webhook(store, "S2", body=b"c", now=30, status="ignored")
    _webhook(store, "S3", body=b"d", now=40, retailer="harbor-home")
    assert [w.id for w in store.list_webhooks(retailer=RETAILER)] == [a, b, c]
    assert [w.id for w in store.list_webhooks(since=20, until=40)] == [b, c]
    assert [w.id for w in store.list_webhooks(event_type="OrderWrittenQuote")] == [b]
    [ignored] = store.list_webhooks(status="ignored")
    assert (ignored.id, ignored.entity_ids, ignored.source, ignored.received_at) == (c, ("S2",), "storis", 30)


def test_list_events_names_the_webhook_and_entity(store: SqliteStore) -> None:
    first = _webhook(store, "S1", "S2", event_type="OrderWrittenSale")
    for job in store.claim_jobs(limit=10, now=0, lease_seconds=60):
        store.complete_job(job.id, events=[_event(f"{job.entity_id}-a"), _event(f"{job.entity_id}-b")],
                           skipped=[], now=1)
    views = store.list_events(entity_id="S2")
    assert [(v.unique_id, v.webhook_id, v.event_type, v.entity_id) for v in views] == [
        ("S2-b", first, "OrderWrittenSale", "S2"), ("S2-a", first, "OrderWrittenSale", "S2")]
    assert views[0].status == "pending" and views[0].next_attempt_at == 1
    assert len(store.list_events(limit=3)) == 3
    assert store.list_events(retailer="harbor-home") == []


# -- durability, concurrency, health --------------------------------------------------------------------------

_KILLED_WORKER = """
import os, signal, sys
from engine.sqlite_store import SqliteStore
store = SqliteStore.open(sys.argv[1])
store.record_webhook(retailer="sunrise-patio", source="storis", event_type="OrderWrittenSale", body=b"{}",
                     entity_ids=["S1"], status="accepted", now=0.0)
assert len(store.claim_jobs(limit=10, now=0.0, lease_seconds=30)) == 1
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_worker_leaves_its_job_claimable_after_the_lease(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _KILLED_WORKER, str(path)], cwd=root, capture_output=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    with SqliteStore.open(path) as store:
        assert store.counts()["webhooks"]["accepted"] == 1
        assert store.claim_jobs(limit=10, now=29, lease_seconds=30) == []
        [job] = store.claim_jobs(limit=10, now=30, lease_seconds=30)
        assert (job.entity_id, job.attempts) == ("S1", 2)


def test_a_closed_and_reopened_store_keeps_everything(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path / "engine.db") as store:
        _webhook(store, "S1")
    with SqliteStore.open(tmp_path / "engine.db") as store:
        assert [j.entity_id for j in store.claim_jobs(limit=10, now=0, lease_seconds=30)] == ["S1"]


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "store-per-thread"])
def test_two_threads_never_claim_the_same_job(tmp_path: Path, shared: bool) -> None:
    path = tmp_path / "engine.db"
    stores = [SqliteStore.open(path)]
    stores.append(stores[0] if shared else SqliteStore.open(path))
    for n in range(100):
        _webhook(stores[0], f"S{n}", "X", body=str(n).encode())
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def worker(index: int) -> None:
        start.wait()
        while batch := stores[index].claim_jobs(limit=3, now=0, lease_seconds=60):
            claimed[index].extend(job.id for job in batch)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for store in set(stores):
        store.close()
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 200


def test_counts_lists_every_status(store: SqliteStore) -> None:
    _webhook(store, "S1", "S2", body=b"1")
    _webhook(store, "S3", body=b"2", status="test")
    jobs = store.claim_jobs(limit=1, now=0, lease_seconds=60)
    store.complete_job(jobs[0].id, events=[_event("a"), _event("b", dry_run=True)], skipped=[], now=1)
    assert store.counts() == {
        "webhooks": {"accepted": 1, "ignored": 0, "test": 1},
        "jobs": {"pending": 1, "leased": 0, "done": 1, "dead": 0, "replayed": 0},
        "events": {"pending": 1, "leased": 0, "delivered": 0, "dead": 0, "dry-run": 1},
    }


def test_is_writable(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "engine.db")
    assert store.is_writable()
    assert store.counts()["webhooks"]["accepted"] == 0
    store.close()
    assert not store.is_writable()


def test_is_writable_is_false_on_a_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    with SqliteStore.open(path) as store:
        _webhook(store, "S1")
    with SqliteStore.open(path, read_only=True) as store:
        assert not store.is_writable()
        assert store.counts()["jobs"]["pending"] == 1
        with pytest.raises(StoreError, match="readonly"):
            _webhook(store, "S2", body=b"other")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="file modes do not bind root")
def test_is_writable_is_false_when_the_file_mode_forbids_writing(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    SqliteStore.open(path).close()
    path.chmod(0o444)
    with SqliteStore.open(path) as store:
        assert not store.is_writable()


def test_the_schema_is_versioned_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    SqliteStore.open(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this engine"):
        SqliteStore.open(path)


def test_record_webhooks_commits_a_batch_at_once_and_dedupes_within_it(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path / "batch.sqlite3") as store:
        same = IncomingWebhook("acme", "storis", "OrderWrittenSale", b'{"a": 1}', ("1",), "accepted")
        other = IncomingWebhook("acme", "storis", "OrderWrittenSale", b'{"a": 2}', ("2", "3"), "accepted")
        receipts = store.record_webhooks([same, other, same], now=1.0)
        assert [r.duplicate for r in receipts] == [False, False, True]
        assert receipts[2].id == receipts[0].id
        assert sorted(job.entity_id for job in store.claim_jobs(limit=10, now=1.0, lease_seconds=5)) == ["1", "2", "3"]


def test_events_stored_as_whole_bodies_by_an_older_engine_are_split_when_it_opens(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in (*_MIGRATIONS[0], *_MIGRATIONS[1]):
        db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    plain = _event("plain", properties={"note": "café", "n": 1.0}).body
    with_meta = _event("meta").body
    with_meta["data"]["attributes"]["profile"]["data"]["attributes"]["meta"] = {
        "patch_properties": {"append": {"skus": "92538"}}}
    db.execute("INSERT INTO webhooks (retailer, source, event_type, sha256, body, entity_ids, status, received_at)"
               " VALUES (?, 'storis', 'OrderWrittenSale', 'x', x'', '[]', 'accepted', 0)", (RETAILER,))
    for body in (plain, with_meta):
        attributes = body["data"]["attributes"]
        db.execute("INSERT INTO events (retailer, metric, unique_id, body, status, next_attempt_at, created_at,"
                   " updated_at) VALUES (?, 'Placed Order', ?, ?, 'pending', 0, 0, 0)",
                   (RETAILER, attributes["unique_id"], json.dumps(body, ensure_ascii=False)))
    db.close()
    with SqliteStore.open(path) as store:
        rows = _claim_events(store)
    assert [json.loads(row.event.create_event()) for row in rows] == [plain, with_meta]
    assert [(json.loads(row.event.attributes), json.loads(row.event.profile)) for row in rows] == [
        (json.loads(EventJson.from_body(body).attributes), json.loads(EventJson.from_body(body).profile))
        for body in (plain, with_meta)]


def test_an_accepted_webhook_gets_one_job_per_distinct_entity_in_order(store: SqliteStore) -> None:
    accepted = IncomingWebhook(RETAILER, "storis", "OrderWrittenSale", b"1", ("S3", "S1", "S3", "S2"), "accepted")
    ignored = IncomingWebhook(RETAILER, "storis", "OrderWrittenQuote", b"2", ("Q1",), "ignored")
    test = IncomingWebhook(RETAILER, "storis", "OrderWrittenSale", b"3", ("S9",), "test")
    first, _, _ = store.record_webhooks([accepted, ignored, test], now=5.0)
    jobs = store.claim_jobs(limit=10, now=5.0, lease_seconds=60)
    assert [(j.webhook_id, j.entity_id) for j in sorted(jobs, key=lambda j: j.id)] == [
        (first.id, "S3"), (first.id, "S1"), (first.id, "S2")]
    assert sum(store.counts()["jobs"].values()) == 3


def test_an_sqlite_too_old_for_the_store_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(StoreError, match=r"needs SQLite with version 3\.35 or newer; this Python's SQLite is 3\.34\.1"):
        SqliteStore.open(tmp_path / "engine.db")
    assert not (tmp_path / "engine.db").exists()
