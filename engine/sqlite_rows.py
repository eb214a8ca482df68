"""SQL pieces both halves of the SQLite store use: optional filters and leasing due rows."""

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


def lease(db: sqlite3.Connection, table: str, where: Where, *, columns: str, limit: int, now: float,
          lease_seconds: float, order: str = "id") -> list[tuple]:
    """Lease up to ``limit`` due rows of ``table`` (pending, or leased with the lease run out) matching
    ``where``: counted as an attempt and hidden from other claims until ``now + lease_seconds``.

    Returns their ``columns`` (id first) as leased, in id order. One statement however many rows: a claim
    then lets go of the GIL once, not once per row."""
    due = Where(["status IN ('pending', 'leased')", "next_attempt_at <= ?", *where.sql], [now, *where.params])
    rows = db.execute(f"UPDATE {table} SET status = 'leased', attempts = attempts + 1, next_attempt_at = ?,"
                      f" updated_at = ? WHERE id IN (SELECT id FROM {table} {due} ORDER BY {order} LIMIT ?)"
                      f" RETURNING {columns}", [now + lease_seconds, now, *due.params, limit]).fetchall()
    return sorted(rows, key=lambda row: row[0])
