"""The SQLite store: one file in WAL mode, one connection guarded by a lock (see ``engine.store``).

Every write runs in ``BEGIN IMMEDIATE``, so claims stay exclusive even when several processes share the
file, and commits with ``synchronous=FULL``: the HTTP acknowledgement of a webhook promises it survives a
power cut. Under load, webhooks share commits (engine/intake.py), so the flush is paid once per batch.

The schema version lives in ``PRAGMA user_version``; ``_MIGRATIONS[n]`` takes version n to n + 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from engine.event_json import EventJson
from engine.sqlite_consent import MIGRATION as CONSENT_MIGRATION
from engine.sqlite_consent import ConsentTables
from engine.sqlite_rows import Where, lease
from engine.store import (
    ATTEMPT_BODY_LIMIT,
    EVENT_STATUSES,
    JOB_STATUSES,
    SOURCES,
    WEBHOOK_STATUSES,
    Attempt,
    DeadLetter,
    EventRow,
    EventView,
    IncomingWebhook,
    Job,
    NewEvent,
    NewSkip,
    StoreError,
    Webhook,
    WebhookReceipt,
)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE webhooks (
            id INTEGER PRIMARY KEY,
            retailer TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('storis', 'klaviyo')),
            event_type TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            body BLOB NOT NULL,
            entity_ids TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('accepted', 'ignored', 'test')),
            received_at REAL NOT NULL,
            UNIQUE (retailer, source, event_type, sha256))""",
        "CREATE INDEX webhooks_received ON webhooks (received_at)",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            webhook_id INTEGER NOT NULL REFERENCES webhooks (id),
            retailer TEXT NOT NULL,
            event_type TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'dead', 'replayed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        "CREATE INDEX jobs_due ON jobs (status, next_attempt_at)",
        "CREATE INDEX jobs_webhook ON jobs (webhook_id)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            job_id INTEGER REFERENCES jobs (id),
            retailer TEXT NOT NULL,
            metric TEXT NOT NULL,
            unique_id TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'delivered', 'dead', 'dry-run')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_status INTEGER,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            delivered_at REAL,
            UNIQUE (retailer, metric, unique_id))""",
        "CREATE INDEX events_due ON events (status, next_attempt_at)",
        "CREATE INDEX events_job ON events (job_id)",
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            event_id INTEGER NOT NULL REFERENCES events (id),
            at REAL NOT NULL,
            status INTEGER,
            body TEXT NOT NULL)""",
        "CREATE INDEX attempts_event ON attempts (event_id)",
        """CREATE TABLE skips (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            metric TEXT NOT NULL,
            unique_id TEXT,
            reason TEXT NOT NULL,
            created_at REAL NOT NULL)""",
        # is_writable() writes here and rolls back.
        "CREATE TABLE probe (id INTEGER PRIMARY KEY)",
    ),
    CONSENT_MIGRATION,
    # Events kept in the two parts bulk jobs are assembled from (engine/event_json.py), not as whole bodies.
    (
        "ALTER TABLE events ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE events ADD COLUMN profile TEXT NOT NULL DEFAULT '{}'",
        """UPDATE events SET
            attributes = json_remove(json_extract(body, '$.data.attributes'), '$.profile'),
            profile = CASE
                WHEN json_type(body, '$.data.attributes.profile.data.attributes.meta') IS NULL
                THEN json_extract(body, '$.data.attributes.profile.data')
                ELSE json_set(json_remove(json_extract(body, '$.data.attributes.profile.data'), '$.attributes.meta'),
                              '$.meta', json(json_extract(body, '$.data.attributes.profile.data.attributes.meta')))
            END""",
        "ALTER TABLE events DROP COLUMN body",
    ),
    # An accepted webhook's jobs come with it: storing a batch of webhooks is one statement (see record_webhooks).
    (
        """CREATE TRIGGER webhook_jobs AFTER INSERT ON webhooks WHEN NEW.status = 'accepted'
        BEGIN
            INSERT INTO jobs (webhook_id, retailer, event_type, entity_id, status, next_attempt_at, created_at,
                              updated_at)
            SELECT NEW.id, NEW.retailer, NEW.event_type, value, 'pending', NEW.received_at, NEW.received_at,
                   NEW.received_at
            FROM json_each(NEW.entity_ids) ORDER BY key;
        END""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_JOB_COLUMNS = "id, webhook_id, retailer, event_type, entity_id, attempts, status"
_EVENT_ROW_COLUMNS = "id, retailer, metric, unique_id, attributes, profile, attempts, created_at"
_WEBHOOK_COLUMNS = "id, retailer, source, event_type, entity_ids, status, received_at"

# An event already stored keeps its row; only a dead one takes the new body and starts over.
_UPSERT_EVENT = """
    INSERT INTO events (job_id, retailer, metric, unique_id, attributes, profile, status, next_attempt_at, created_at,
                        updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (retailer, metric, unique_id) DO UPDATE SET
        job_id = excluded.job_id, attributes = excluded.attributes, profile = excluded.profile,
        status = excluded.status, attempts = 0,
        next_attempt_at = excluded.next_attempt_at, last_status = NULL, last_error = NULL,
        updated_at = excluded.updated_at, delivered_at = NULL
    WHERE events.status = 'dead'"""

_INSERT_WEBHOOKS = (
    "INSERT INTO webhooks (retailer, source, event_type, sha256, body, entity_ids, status, received_at)",
    "(?, ?, ?, ?, ?, ?, ?, ?)",
    # A re-delivery inserts nothing and returns nothing: the caller looks it up.
    "ON CONFLICT (retailer, source, event_type, sha256) DO NOTHING RETURNING id, retailer, source, event_type, sha256")

# For the events whose ids are in the JSON array bound last: one statement for a whole batch (each statement
# gives up the GIL and wins it back from the busy event loop). Unknown ids and dry-run events are skipped.
_IN_IDS = "id IN (SELECT value FROM json_each(?))"
_INSERT_ATTEMPTS = ("INSERT INTO attempts (event_id, at, status, body)"
                    f" SELECT id, ?, ?, ? FROM events WHERE {_IN_IDS} AND status != 'dry-run'")

# Dead now: a replay marks the dead jobs it supersedes "replayed" and replaces dead events it re-maps.
_DEAD_WEBHOOK = """(
    EXISTS (SELECT 1 FROM jobs j WHERE j.webhook_id = w.id AND j.status = 'dead')
    OR EXISTS (SELECT 1 FROM jobs j JOIN events e ON e.job_id = j.id
               WHERE j.webhook_id = w.id AND e.status = 'dead'))"""


class SqliteStore(ConsentTables):
    """A ``Store`` in one SQLite file. Use ``SqliteStore.open(path)``; safe to share between threads."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self._lock = threading.Lock()
        self._webhooks_per_statement = _rows_per_statement(db, _INSERT_WEBHOOKS)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False,
             busy_timeout: float = 5.0) -> SqliteStore:
        """Open (creating or migrating if needed) the store at ``path``.

        ``read_only`` opens an existing file without ever writing to it, e.g. for CLI queries.
        ``busy_timeout`` is how long to wait for another process's write lock before failing.
        """
        path = Path(path)
        _check_sqlite(path)
        try:
            if read_only:
                db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False, timeout=busy_timeout)
            else:
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open: {exc}") from exc
        try:
            db.execute("PRAGMA foreign_keys = ON")
            if read_only:
                _check_version(db, path, db.execute("PRAGMA user_version").fetchone()[0])
            else:
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"{path}: cannot use WAL mode (journal_mode is {mode!r})")
                # For every commit, not only those acknowledging webhooks: switching the setting around those
                # alone took two more statements on the busiest path, which cost more than the other flushes.
                db.execute("PRAGMA synchronous = FULL")
                _migrate(db, path)
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"{path}: cannot open: {exc}") from exc
        except StoreError:
            db.close()
            raise
        return cls(db, path)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self, what: str, *, write: bool = True, single_write: bool = False
                     ) -> Iterator[sqlite3.Connection]:
        """The block's statements as one transaction. ``single_write``: the block writes with one statement,
        which is a transaction by itself, so no BEGIN and COMMIT are sent."""
        with self._lock:
            db = self._db
            try:
                if single_write:
                    yield db
                    return
                try:
                    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    yield db
                    db.execute("COMMIT")
                finally:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreError(f"{self._path}: {what}: {exc}") from exc

    # -- webhooks -------------------------------------------------------------------------------------------

    def record_webhook(self, *, retailer: str, source: str, event_type: str, body: bytes,
                       entity_ids: list[str], status: str, now: float) -> WebhookReceipt:
        return self.record_webhooks([IncomingWebhook(retailer, source, event_type, body, tuple(entity_ids), status)],
                                    now=now)[0]

    def record_webhooks(self, webhooks: list[IncomingWebhook], *, now: float) -> list[WebhookReceipt]:
        for webhook in webhooks:
            if webhook.source not in SOURCES:
                raise ValueError(f"source must be one of {SOURCES}, got {webhook.source!r}")
            if webhook.status not in WEBHOOK_STATUSES:
                raise ValueError(f"status must be one of {WEBHOOK_STATUSES}, got {webhook.status!r}")
        rows = [(w.retailer, w.source, w.event_type, hashlib.sha256(w.body).hexdigest(), w.body,
                 json.dumps(list(dict.fromkeys(w.entity_ids))), w.status, now) for w in webhooks]
        # Under load this is the busiest write, and each statement lets go of the GIL and has to win it back
        # from the event loop: so a batch is one INSERT (its jobs come by trigger) that commits by itself.
        per_statement = self._webhooks_per_statement
        receipts = []
        with self._transaction("record webhooks", single_write=len(rows) <= per_statement) as db:
            returned = _insert_rows(db, _INSERT_WEBHOOKS, rows, per_statement)
            inserted = {tuple(row[1:]): row[0] for row in returned}
            for row in rows:
                key = row[:4]
                webhook_id = inserted.pop(key, None)
                if webhook_id is None:  # stored before, or earlier in this batch
                    [existing] = db.execute("SELECT id FROM webhooks WHERE retailer = ? AND source = ?"
                                            " AND event_type = ? AND sha256 = ?", key).fetchone()
                    receipts.append(WebhookReceipt(id=existing, duplicate=True))
                else:
                    receipts.append(WebhookReceipt(id=webhook_id, duplicate=False))
        return receipts

    def requeue_webhook(self, webhook_id: int, *, now: float) -> list[Job]:
        with self._transaction("requeue webhook") as db:
            _require(db, "webhooks", webhook_id)
            db.execute("UPDATE jobs SET status = 'replayed', updated_at = ? WHERE webhook_id = ? AND status = 'dead'",
                       (now, webhook_id))
            rows = db.execute(
                "INSERT INTO jobs (webhook_id, retailer, event_type, entity_id, status, next_attempt_at, created_at,"
                " updated_at) SELECT w.id, w.retailer, w.event_type, e.value, 'pending', ?1, ?1, ?1"
                " FROM webhooks w, json_each(w.entity_ids) e WHERE w.id = ?2 ORDER BY e.key"
                f" RETURNING {_JOB_COLUMNS}", (now, webhook_id)).fetchall()
        return sorted((Job(*row) for row in rows), key=lambda job: job.id)

    def list_webhooks(self, *, retailer: str | None = None, since: float | None = None,
                      until: float | None = None, event_type: str | None = None,
                      status: str | None = None) -> list[Webhook]:
        where = Where()
        where.add("w.retailer = ?", retailer)
        where.add("w.received_at >= ?", since)
        where.add("w.received_at < ?", until)
        where.add("w.event_type = ?", event_type)
        if status == "dead":
            where.sql.append(_DEAD_WEBHOOK)
        else:
            where.add("w.status = ?", status)
        sql = f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks w {where} ORDER BY w.received_at, w.id"
        with self._transaction("list webhooks", write=False) as db:
            rows = db.execute(sql, where.params).fetchall()
        return [Webhook(id=r[0], retailer=r[1], source=r[2], event_type=r[3], entity_ids=tuple(json.loads(r[4])),
                        status=r[5], received_at=r[6]) for r in rows]

    # -- jobs -----------------------------------------------------------------------------------------------

    def claim_jobs(self, *, limit: int, now: float, lease_seconds: float) -> list[Job]:
        with self._transaction("claim jobs") as db:
            rows = lease(db, "jobs", Where(), columns=_JOB_COLUMNS, limit=limit, now=now, lease_seconds=lease_seconds,
                         order="next_attempt_at, id")
        return [Job(*row) for row in rows]

    def complete_job(self, job_id: int, *, events: list[NewEvent], skipped: list[NewSkip], now: float) -> None:
        rows = []
        for index, event in enumerate(events):
            parts = EventJson.from_body(event.body, index)
            rows.append((job_id, event.retailer, event.metric, event.unique_id, parts.attributes, parts.profile,
                         "dry-run" if event.dry_run else "pending", now, now, now))
        with self._transaction("complete job") as db:
            _require(db, "jobs", job_id)
            db.executemany(_UPSERT_EVENT, rows)
            db.executemany("INSERT INTO skips (job_id, metric, unique_id, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                           [(job_id, s.metric, s.unique_id, s.reason, now) for s in skipped])
            db.execute("UPDATE jobs SET status = 'done', last_error = NULL, updated_at = ? WHERE id = ?",
                       (now, job_id))

    def fail_job(self, job_id: int, *, error: str, retry_at: float | None, now: float) -> None:
        with self._transaction("fail job") as db:
            _require(db, "jobs", job_id)
            # A job another worker finished (after this one's lease ran out) stays finished.
            db.execute("UPDATE jobs SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
                       " last_error = ?, updated_at = ? WHERE id = ? AND status NOT IN ('done', 'replayed')",
                       ("dead" if retry_at is None else "pending", retry_at, _truncate(error), now, job_id))

    # -- events ---------------------------------------------------------------------------------------------

    def claim_events(self, *, limit: int, now: float, lease_seconds: float,
                     retailer: str | None = None) -> list[EventRow]:
        where = Where()
        where.add("retailer = ?", retailer)
        with self._transaction("claim events") as db:
            rows = lease(db, "events", where, columns=_EVENT_ROW_COLUMNS, limit=limit, now=now,
                         lease_seconds=lease_seconds)
        return [EventRow(id=r[0], retailer=r[1], metric=r[2], unique_id=r[3], event=EventJson(r[3], r[4], r[5]),
                         attempts=r[6], created_at=r[7]) for r in rows]

    def mark_delivered(self, ids: list[int], *, now: float, status: int) -> None:
        id_list = json.dumps(ids)
        with self._transaction("mark delivered") as db:
            db.execute(_INSERT_ATTEMPTS, (now, status, "", id_list))
            db.execute("UPDATE events SET status = 'delivered', last_status = ?, last_error = NULL, delivered_at = ?,"
                       f" updated_at = ? WHERE {_IN_IDS} AND status != 'dry-run'", (status, now, now, id_list))

    def record_failure(self, ids: list[int], *, now: float, status: int | None, body: str,
                       retry_at: float | None) -> None:
        body = _truncate(body)
        new_status = "dead" if retry_at is None else "pending"
        id_list = json.dumps(ids)
        with self._transaction("record failure") as db:
            db.execute(_INSERT_ATTEMPTS, (now, status, body, id_list))
            # Only an event still in flight moves; a late failure never undoes a delivery.
            db.execute("UPDATE events SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
                       f" last_status = ?, last_error = ?, updated_at = ? WHERE {_IN_IDS}"
                       " AND status IN ('pending', 'leased')", (new_status, retry_at, status, body, now, id_list))

    def attempts(self, event_id: int) -> list[Attempt]:
        with self._transaction("list attempts", write=False) as db:
            rows = db.execute("SELECT event_id, at, status, body FROM attempts WHERE event_id = ? ORDER BY id",
                              (event_id,)).fetchall()
        return [Attempt(event_id=r[0], at=r[1], status=r[2], body=r[3]) for r in rows]

    def list_events(self, *, retailer: str | None = None, status: str | None = None,
                    entity_id: str | None = None, limit: int = 200) -> list[EventView]:
        where = Where()
        where.add("e.retailer = ?", retailer)
        where.add("e.status = ?", status)
        where.add("j.entity_id = ?", entity_id)
        sql = ("SELECT e.id, e.retailer, e.metric, e.unique_id, e.status, e.attempts, j.webhook_id, j.event_type,"
               " j.entity_id, e.last_status, e.last_error, e.created_at, e.updated_at, e.next_attempt_at,"
               f" e.delivered_at FROM events e LEFT JOIN jobs j ON j.id = e.job_id {where}"
               " ORDER BY e.id DESC LIMIT ?")
        with self._transaction("list events", write=False) as db:
            rows = db.execute(sql, [*where.params, limit]).fetchall()
        return [EventView(*r[:13], next_attempt_at=r[13] if r[4] == "pending" else None, delivered_at=r[14])
                for r in rows]

    # -- health ---------------------------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        with self._transaction("count", write=False) as db:
            for table, statuses in (("webhooks", WEBHOOK_STATUSES), ("jobs", JOB_STATUSES),
                                    ("events", EVENT_STATUSES)):
                result[table] = dict.fromkeys(statuses, 0)
                result[table].update(db.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status"))
        return result

    def dead_letters_older_than(self, seconds: float, *, now: float) -> list[DeadLetter]:
        cutoff = now - seconds
        with self._transaction("list dead letters", write=False) as db:
            jobs = db.execute("SELECT id, retailer, webhook_id, entity_id, last_error, updated_at FROM jobs"
                              " WHERE status = 'dead' AND updated_at <= ?", (cutoff,)).fetchall()
            events = db.execute(
                "SELECT e.id, e.retailer, j.webhook_id, j.entity_id, e.metric, e.last_error, e.updated_at"
                " FROM events e LEFT JOIN jobs j ON j.id = e.job_id"
                " WHERE e.status = 'dead' AND e.updated_at <= ?", (cutoff,)).fetchall()
            consent = self._consent_dead_letters(db, cutoff)
        letters = [DeadLetter("job", i, r, w, en, None, err, at) for i, r, w, en, err, at in jobs]
        letters += [DeadLetter("event", *row) for row in events]
        letters += consent
        return sorted(letters, key=lambda d: (d.dead_at, d.kind, d.id))

    def is_writable(self) -> bool:
        try:
            with self._transaction("probe"):
                self._db.execute("SAVEPOINT probe")
                self._db.execute("INSERT OR REPLACE INTO probe (id) VALUES (1)")
                self._db.execute("ROLLBACK TO probe")
                self._db.execute("RELEASE probe")
        except StoreError:
            return False
        return True


def _check_sqlite(path: Path) -> None:
    """What the store is built on: RETURNING and DROP COLUMN (SQLite 3.35) and the JSON functions."""
    missing = ["version 3.35 or newer"] if sqlite3.sqlite_version_info < (3, 35) else []
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT value FROM json_each('[1]')")
    except sqlite3.OperationalError:
        missing.append("the JSON functions")
    finally:
        probe.close()
    if missing:
        raise StoreError(f"{path}: the store needs SQLite with {' and '.join(missing)};"
                         f" this Python's SQLite is {sqlite3.sqlite_version}")


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            # Read inside the write lock: another process may be migrating the same file.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            _check_version(db, path, version)
            if version == SCHEMA_VERSION:
                db.execute("COMMIT")
                return
            for statement in _MIGRATIONS[version]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")


def _check_version(db: sqlite3.Connection, path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version} is newer than this engine's ({SCHEMA_VERSION})")


def _rows_per_statement(db: sqlite3.Connection, statement: tuple[str, str, str]) -> int:
    return max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // statement[1].count("?"))


def _insert_rows(db: sqlite3.Connection, statement: tuple[str, str, str], rows: list[tuple],
                 per_statement: int) -> list[tuple]:
    """Run ``head VALUES (row), (row)... tail`` over ``rows``, ``per_statement`` rows a statement (see
    ``_rows_per_statement``); the rows its RETURNING clause gave back (in no particular order)."""
    head, values, tail = statement
    out: list[tuple] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        sql = f"{head} VALUES {', '.join([values] * len(chunk))} {tail}"
        out += db.execute(sql, [value for row in chunk for value in row]).fetchall()
    return out


def _require(db: sqlite3.Connection, table: str, row_id: int) -> None:
    if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is None:
        raise KeyError(f"no {table[:-1]} {row_id}")




def _truncate(text: str, limit: int = ATTEMPT_BODY_LIMIT) -> str:
    # Cut on bytes, then drop a character the cut split in two.
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")
