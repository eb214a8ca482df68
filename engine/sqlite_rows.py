"""SQL pieces both halves of the SQLite store use: optional filters, fetching by id, leasing due rows."""

from __future__ import annotations

import sqlite3
from typing import Any


class Where:
    """A WHERE clause built from optional filters: ``add`` skips a filter whose value is None."""

    def __init__(self, sql: list[str] | None = None, params: list[Any] | None = None) -> None:
        self.sql = sql or []
        self.params = params or []

    def add(self, condition: str, value: Any) -> None:
        if value is not None:
            self.sql.append(condition)
            self.params.append(value)

    def __str__(self) -> str:
        return f"WHERE {' AND '.join(self.sql)}" if self.sql else ""


def lease(db: sqlite3.Connection, table: str, where: Where, *, limit: int, now: float, lease_seconds: float,
          order: str = "id") -> list[int]:
    """Lease up to ``limit`` due rows of ``table`` (pending, or leased with the lease run out) matching
    ``where``: counted as an attempt and hidden from other claims until ``now + lease_seconds``."""
    due = Where(["status IN ('pending', 'leased')", "next_attempt_at <= ?", *where.sql], [now, *where.params])
    ids = [r[0] for r in db.execute(f"SELECT id FROM {table} {due} ORDER BY {order} LIMIT ?", [*due.params, limit])]
    db.executemany(f"UPDATE {table} SET status = 'leased', attempts = attempts + 1, next_attempt_at = ?,"
                   " updated_at = ? WHERE id = ?", [(now + lease_seconds, now, i) for i in ids])
    return ids


def select_ids(db: sqlite3.Connection, select: str, ids: list[int]) -> list[tuple]:
    """The rows ``select`` (a SELECT without WHERE) gives for ``ids``, in id order."""
    if not ids:
        return []
    # SQLite allows 32766 parameters; claims are far smaller.
    marks = ", ".join("?" * len(ids))
    return db.execute(f"{select} WHERE id IN ({marks}) ORDER BY id", ids).fetchall()
