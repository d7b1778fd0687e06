"""Schedules in SQLite (WAL), so they survive a restart.

A schedule goes pending → delivered, failed (dead-lettered after the last attempt) or cancelled.
When it falls due the dispatcher *claims* it into a delivery: a batch of schedules for one endpoint
sharing a `delivery_id`, which is the `webhook-id` of every attempt to send that batch, so the
receiver can drop a repeat. Attempts, last error and next attempt time are kept per schedule
(equal across its delivery).

Methods are synchronous and thread-safe (one connection behind a lock); async callers run them in
a worker thread. Times are Unix seconds (REAL) from the caller's clock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from samples.scheduler_mcp.errors import IdempotencyConflict, NotCancellable, ScheduleNotFound
from samples.scheduler_mcp.validation import NewSchedule

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    schedule_id         TEXT PRIMARY KEY,
    conversation_id     TEXT NOT NULL,
    content             TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    scheduled_time      TEXT NOT NULL,
    due_at              REAL NOT NULL,
    status              TEXT NOT NULL
                        CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    next_attempt_at     REAL,
    delivery_id         TEXT,
    idempotency_key     TEXT UNIQUE,
    request_fingerprint TEXT NOT NULL,
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL,
    finished_at         REAL
);
CREATE INDEX IF NOT EXISTS schedules_unclaimed ON schedules (status, delivery_id, due_at);
CREATE INDEX IF NOT EXISTS schedules_ready ON schedules (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS schedules_delivery ON schedules (delivery_id);
"""
COLUMNS = (
    "schedule_id, conversation_id, content, endpoint, scheduled_time, due_at, status, attempts,"
    " last_error, next_attempt_at, delivery_id, created_at, finished_at"
)
MAX_CLAIM = 10_000  # due schedules claimed per tick; the rest wait for the next one


@dataclass(frozen=True)
class Schedule:
    schedule_id: str
    conversation_id: str
    # Out of repr, so a logged schedule shows neither the text nor a key in the callback URL.
    content: str = field(repr=False)
    endpoint: str = field(repr=False)
    scheduled_time: str
    due_at: float
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    delivery_id: str | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True)
class Delivery:
    """One batch for one endpoint, sent (and retried) under one webhook id."""

    delivery_id: str
    endpoint: str
    attempts: int  # made so far
    items: tuple[Schedule, ...]


class ScheduleStore:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._closed = False
        # isolation_level=None: autocommit, with explicit BEGIN IMMEDIATE for multi-step writes.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL + NORMAL: durable across crashes of this process
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"state file schema {version} is newer than this Scheduler ({SCHEMA_VERSION})"
            )
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- the tools ------------------------------------------------------------------------

    def create(
        self, new: NewSchedule, schedule_id: str, idempotency_key: str | None, now: float
    ) -> tuple[Schedule, bool]:
        """Insert a pending schedule; with a known idempotency key, return that one instead."""
        with self._transaction() as db:
            if idempotency_key is not None:
                existing = db.execute(
                    f"SELECT {COLUMNS}, request_fingerprint FROM schedules WHERE idempotency_key = ?",
                    (idempotency_key,),
                ).fetchone()
                if existing is not None:
                    if existing["request_fingerprint"] != new.fingerprint:
                        raise IdempotencyConflict(
                            "this idempotency key was already used for a different schedule request"
                        )
                    return _schedule(existing), False
            db.execute(
                "INSERT INTO schedules (schedule_id, conversation_id, content, endpoint,"
                " scheduled_time, due_at, status, idempotency_key, request_fingerprint,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (
                    schedule_id,
                    new.conversation_id,
                    new.content,
                    new.endpoint,
                    new.scheduled_time,
                    new.due.timestamp(),
                    idempotency_key,
                    new.fingerprint,
                    now,
                    now,
                ),
            )
            return _schedule(_select_one(db, schedule_id)), True

    def get(self, schedule_id: str) -> Schedule:
        with self._lock:
            return _schedule(_select_one(self._db, schedule_id))

    def list_schedules(
        self, status: str | None, conversation_id: str | None, limit: int
    ) -> list[Schedule]:
        where: list[str] = []
        params: list[str] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if conversation_id is not None:
            where.append("conversation_id = ?")
            params.append(conversation_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM schedules {clause} ORDER BY due_at, schedule_id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_schedule(row) for row in rows]

    def cancel(self, schedule_id: str, conversation_id: str | None, now: float) -> Schedule:
        """pending → cancelled; cancelling again is a no-op; delivered or failed cannot be."""
        with self._transaction() as db:
            current = _schedule(_select_one(db, schedule_id))
            if conversation_id is not None and current.conversation_id != conversation_id:
                raise ScheduleNotFound(schedule_id)  # another conversation's: not revealed
            if current.status in ("delivered", "failed"):
                raise NotCancellable(
                    f"scheduled conversation {schedule_id!r} was already {current.status}"
                    f" (after {current.attempts} attempt(s)); only a pending one can be cancelled"
                )
            if current.status == "pending":
                db.execute(
                    "UPDATE schedules SET status = 'cancelled', next_attempt_at = NULL,"
                    " finished_at = ?, updated_at = ? WHERE schedule_id = ?",
                    (now, now, schedule_id),
                )
            return _schedule(_select_one(db, schedule_id))

    # --- the dispatcher -------------------------------------------------------------------

    def claim_due(self, now: float, batch_size: int, new_delivery_id: Callable[[], str]) -> int:
        """Group unclaimed due schedules by endpoint into deliveries of at most `batch_size`."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT schedule_id, endpoint FROM schedules"
                " WHERE status = 'pending' AND delivery_id IS NULL AND due_at <= ?"
                " ORDER BY due_at, schedule_id LIMIT ?",
                (now, MAX_CLAIM),
            ).fetchall()
            by_endpoint: dict[str, list[str]] = {}
            for row in rows:
                by_endpoint.setdefault(row["endpoint"], []).append(row["schedule_id"])
            assignments: list[tuple[str, float, float, str]] = []
            for ids in by_endpoint.values():
                for start in range(0, len(ids), batch_size):
                    delivery_id = new_delivery_id()
                    batch = ids[start : start + batch_size]
                    assignments.extend(
                        (delivery_id, now, now, schedule_id) for schedule_id in batch
                    )
            db.executemany(
                "UPDATE schedules SET delivery_id = ?, next_attempt_at = ?, updated_at = ?"
                " WHERE schedule_id = ?",
                assignments,
            )
            return len(assignments)

    def ready_deliveries(self, now: float) -> list[Delivery]:
        """Claimed deliveries whose next attempt is due (first attempts and retries)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM schedules"
                " WHERE status = 'pending' AND delivery_id IS NOT NULL AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, delivery_id, due_at, schedule_id",
                (now,),
            ).fetchall()
        grouped: dict[str, list[Schedule]] = {}
        for row in rows:
            schedule = _schedule(row)
            grouped.setdefault(schedule.delivery_id or "", []).append(schedule)
        return [
            Delivery(delivery_id, items[0].endpoint, max(i.attempts for i in items), tuple(items))
            for delivery_id, items in grouped.items()
        ]

    def record_delivered(self, delivery_id: str, now: float) -> int:
        """Still-pending items of the delivery → delivered (one cancelled meanwhile stays so)."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE schedules SET status = 'delivered', attempts = attempts + 1,"
                " last_error = NULL, next_attempt_at = NULL, finished_at = ?, updated_at = ?"
                " WHERE delivery_id = ? AND status = 'pending'",
                (now, now, delivery_id),
            ).rowcount

    def record_failed_attempt(
        self, delivery_id: str, error: str, now: float, retry_at: float | None
    ) -> int:
        """Count the attempt; retry at `retry_at`, or dead-letter (failed) when it is None."""
        with self._transaction() as db:
            if retry_at is None:
                return db.execute(
                    "UPDATE schedules SET status = 'failed', attempts = attempts + 1,"
                    " last_error = ?, next_attempt_at = NULL, finished_at = ?, updated_at = ?"
                    " WHERE delivery_id = ? AND status = 'pending'",
                    (error, now, now, delivery_id),
                ).rowcount
            return db.execute(
                "UPDATE schedules SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?, updated_at = ? WHERE delivery_id = ? AND status = 'pending'",
                (error, retry_at, now, delivery_id),
            ).rowcount


def _select_one(db: sqlite3.Connection, schedule_id: str) -> sqlite3.Row:
    row = db.execute(
        f"SELECT {COLUMNS} FROM schedules WHERE schedule_id = ?", (schedule_id,)
    ).fetchone()
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return row


def _schedule(row: sqlite3.Row) -> Schedule:
    return Schedule(**{name: row[name] for name in Schedule.__dataclass_fields__})
