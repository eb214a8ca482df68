"""The consent half of the SQLite store: unsubscribes from Klaviyo, the suppression list, purchase subscriptions.

Kept apart from ``engine.sqlite_store`` (which it extends: same file, same connection, same transactions)
because it is its own concept: who may be contacted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from engine.sqlite_rows import Where, lease
from engine.store import (
    DeadLetter,
    NewUnsubscribe,
    SubscriptionTask,
    UnsubscribeTask,
    WebhookReceipt,
)

MIGRATION: tuple[str, ...] = (
    """CREATE TABLE unsubscribes (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL REFERENCES webhooks (id),
        retailer TEXT NOT NULL,
        key TEXT NOT NULL,
        email TEXT,
        profile_id TEXT,
        customer_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (retailer, key))""",
    "CREATE INDEX unsubscribes_due ON unsubscribes (status, next_attempt_at)",
    """CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY,
        retailer TEXT NOT NULL,
        email TEXT,
        customer_id TEXT,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL)""",
    "CREATE INDEX suppressions_email ON suppressions (retailer, email)",
    "CREATE INDEX suppressions_customer ON suppressions (retailer, customer_id)",
    """CREATE TABLE subscriptions (
        id INTEGER PRIMARY KEY,
        retailer TEXT NOT NULL,
        list_id TEXT NOT NULL,
        email TEXT NOT NULL,
        phone_number TEXT,
        customer_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'dead', 'suppressed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (retailer, list_id, email))""",
    "CREATE INDEX subscriptions_due ON subscriptions (status, next_attempt_at)",
)

UNSUBSCRIBE_STATUSES = ("pending", "leased", "done", "dead")
SUBSCRIPTION_STATUSES = ("pending", "leased", "done", "dead", "suppressed")
_UNSUBSCRIBE_COLUMNS = "id, retailer, key, email, profile_id, customer_id, attempts"
_SUBSCRIPTION_COLUMNS = "id, retailer, list_id, email, phone_number, customer_id, attempts"


class ConsentTables:
    """Methods SqliteStore gains for consent; they run in its transactions."""

    _transaction: Callable[..., AbstractContextManager[sqlite3.Connection]]

    def record_unsubscribes(self, *, retailer: str, event_type: str, body: bytes,
                            unsubscribes: list[NewUnsubscribe], now: float) -> tuple[WebhookReceipt, int]:
        digest = hashlib.sha256(body).hexdigest()
        with self._transaction("record unsubscribes") as db:
            row = db.execute("SELECT id FROM webhooks WHERE retailer = ? AND source = 'klaviyo' AND event_type = ?"
                             " AND sha256 = ?", (retailer, event_type, digest)).fetchone()
            if row is not None:
                return WebhookReceipt(id=row[0], duplicate=True), 0
            webhook_id = db.execute(
                "INSERT INTO webhooks (retailer, source, event_type, sha256, body, entity_ids, status, received_at)"
                " VALUES (?, 'klaviyo', ?, ?, ?, ?, 'accepted', ?)",
                (retailer, event_type, digest, body, json.dumps([u.key for u in unsubscribes]), now)).lastrowid
            created = 0
            for item in unsubscribes:
                created += db.execute(
                    "INSERT INTO unsubscribes (webhook_id, retailer, key, email, profile_id, customer_id, status,"
                    " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
                    " ON CONFLICT (retailer, key) DO NOTHING",
                    (webhook_id, retailer, item.key, item.email, item.profile_id, item.customer_id, now, now,
                     now)).rowcount
            return WebhookReceipt(id=webhook_id, duplicate=False), created

    def claim_unsubscribes(self, *, limit: int, now: float, lease_seconds: float) -> list[UnsubscribeTask]:
        with self._transaction("claim unsubscribes") as db:
            rows = lease(db, "unsubscribes", Where(), columns=_UNSUBSCRIBE_COLUMNS, limit=limit, now=now,
                         lease_seconds=lease_seconds)
        return [UnsubscribeTask(*row) for row in rows]

    def complete_unsubscribe(self, task_id: int, *, email: str | None, customer_id: str | None, note: str,
                             now: float) -> None:
        with self._transaction("complete unsubscribe") as db:
            retailer = db.execute("SELECT retailer FROM unsubscribes WHERE id = ?", (task_id,)).fetchone()
            if retailer is None:
                raise KeyError(f"no unsubscribe {task_id}")
            db.execute("UPDATE unsubscribes SET status = 'done', email = ?, customer_id = ?, last_error = ?,"
                       " updated_at = ? WHERE id = ?", (email, customer_id, note or None, now, task_id))
            db.execute("INSERT INTO suppressions (retailer, email, customer_id, reason, created_at)"
                       " VALUES (?, ?, ?, 'unsubscribed in Klaviyo', ?)", (retailer[0], email, customer_id, now))

    def fail_unsubscribe(self, task_id: int, *, error: str, retry_at: float | None, now: float) -> None:
        with self._transaction("fail unsubscribe") as db:
            _fail(db, "unsubscribes", task_id, error, retry_at, now)

    def is_suppressed(self, retailer: str, *, email: str | None, customer_id: str | None) -> bool:
        with self._transaction("check suppression", write=False) as db:
            return db.execute(
                "SELECT 1 FROM suppressions WHERE retailer = ? AND ((email IS NOT NULL AND email = ?)"
                " OR (customer_id IS NOT NULL AND customer_id = ?)) LIMIT 1",
                (retailer, email, customer_id)).fetchone() is not None

    def queue_subscription(self, *, retailer: str, list_id: str, email: str, phone_number: str | None,
                           customer_id: str | None, now: float) -> bool:
        with self._transaction("queue subscription") as db:
            return db.execute(
                "INSERT INTO subscriptions (retailer, list_id, email, phone_number, customer_id, status,"
                " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
                " ON CONFLICT (retailer, list_id, email) DO NOTHING",
                (retailer, list_id, email, phone_number, customer_id, now, now, now)).rowcount == 1

    def claim_subscriptions(self, *, limit: int, now: float, lease_seconds: float) -> list[SubscriptionTask]:
        with self._transaction("claim subscriptions") as db:
            rows = lease(db, "subscriptions", Where(), columns=_SUBSCRIPTION_COLUMNS, limit=limit, now=now,
                         lease_seconds=lease_seconds)
        return [SubscriptionTask(*row) for row in rows]

    def finish_subscriptions(self, ids: list[int], *, status: str, now: float) -> None:
        if status not in ("done", "suppressed"):
            raise ValueError(f"status must be done or suppressed, got {status!r}")
        with self._transaction("finish subscriptions") as db:
            db.executemany("UPDATE subscriptions SET status = ?, updated_at = ? WHERE id = ?",
                           [(status, now, i) for i in ids])

    def fail_subscriptions(self, ids: list[int], *, status: int | None, error: str, retry_at: float | None,
                           now: float) -> None:
        with self._transaction("fail subscriptions") as db:
            for task_id in ids:
                _fail(db, "subscriptions", task_id, error, retry_at, now)
                db.execute("UPDATE subscriptions SET last_status = ? WHERE id = ?", (status, task_id))

    def _consent_dead_letters(self, db: sqlite3.Connection, cutoff: float) -> list[DeadLetter]:
        unsubscribes = db.execute("SELECT id, retailer, webhook_id, last_error, updated_at FROM unsubscribes"
                                  " WHERE status = 'dead' AND updated_at <= ?", (cutoff,)).fetchall()
        subscriptions = db.execute("SELECT id, retailer, list_id, last_error, updated_at FROM subscriptions"
                                   " WHERE status = 'dead' AND updated_at <= ?", (cutoff,)).fetchall()
        return ([DeadLetter("unsubscribe", i, r, w, None, None, err, at) for i, r, w, err, at in unsubscribes]
                + [DeadLetter("subscription", i, r, None, f"list {lst}", None, err, at)
                   for i, r, lst, err, at in subscriptions])

    def requeue_dead_consent(self, retailer: str, *, now: float) -> tuple[int, int]:
        with self._transaction("requeue consent") as db:
            counts = tuple(db.execute(f"UPDATE {table} SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                                      " updated_at = ? WHERE retailer = ? AND status = 'dead'",
                                      (now, now, retailer)).rowcount for table in ("unsubscribes", "subscriptions"))
        return counts[0], counts[1]

    def consent_counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        with self._transaction("count consent", write=False) as db:
            for table, statuses in (("unsubscribes", UNSUBSCRIBE_STATUSES),
                                    ("subscriptions", SUBSCRIPTION_STATUSES)):
                result[table] = dict.fromkeys(statuses, 0)
                result[table].update(db.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status"))
            result["suppressions"] = {"total": db.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0]}
        return result


def _fail(db: sqlite3.Connection, table: str, task_id: int, error: str, retry_at: float | None, now: float) -> None:
    status, when = ("pending", retry_at) if retry_at is not None else ("dead", now)
    if db.execute(f"UPDATE {table} SET status = ?, next_attempt_at = ?, last_error = ?, updated_at = ?"
                  " WHERE id = ? AND status = 'leased'", (status, when, error[:10_240], now, task_id)).rowcount == 0:
        if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (task_id,)).fetchone() is None:
            raise KeyError(f"no {table[:-1]} {task_id}")
