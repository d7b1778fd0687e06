"""SQLite persistence for orchestration state (WAL mode, one transaction per state change).

Tables: `instances` (one row per orchestration instance), `history` (the current execution's
events), `messages` (orchestrator inbox; timers are messages invisible until they fire) and
`activities` (scheduled activity calls). WAL with synchronous=NORMAL survives a killed process
(every committed transaction is in the OS page cache); only a power loss may lose the last ones.
A single connection is used from the event loop thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .engine import ActivityWork, InstanceQuery, InstanceRecord, Message, ParentRef
from .history import Event, RuntimeStatus, format_timestamp, parse_timestamp

SCHEMA_VERSION = 1
MAX_SQL_PARAMETERS = 500  # well under SQLite's limit on the parameters of one statement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    runtime_status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    parent_instance_id TEXT,
    parent_execution_id TEXT,
    parent_task_id INTEGER,
    parent_name TEXT
);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, sequence)
);
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    event TEXT NOT NULL,
    visible_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_instance ON messages (instance_id, visible_at);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (visible_at);
CREATE TABLE IF NOT EXISTS activities (
    work_id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    parameters TEXT
);
CREATE INDEX IF NOT EXISTS activities_by_instance ON activities (instance_id);
"""

_INSTANCE_COLUMNS = (
    "instance_id, name, version, execution_id, runtime_status, input, output, custom_status, "
    "created_time, last_updated_time, parent_instance_id, parent_execution_id, parent_task_id, "
    "parent_name"
)


class StoreError(Exception):
    """The state file cannot be used (wrong schema version, not a database)."""


class SqliteStore:
    """The durable store of the local host."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self._connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute("PRAGMA busy_timeout=5000")
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(f"{path}: state schema version {version}, expected {SCHEMA_VERSION}")
        self._connection.executescript(_SCHEMA)
        self._connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._connection.close()

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(self._connection)
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    # ---- dispatcher queries (read-only, outside transactions)

    def ready_instances(self, now: datetime, exclude: set[str], limit: int) -> list[str]:
        """Instances with a visible message, oldest message first."""
        rows = self._connection.execute(
            "SELECT instance_id FROM messages WHERE visible_at <= ? "
            "GROUP BY instance_id ORDER BY MIN(message_id)",
            (format_timestamp(now),),
        ).fetchall()
        ready = [row[0] for row in rows if row[0] not in exclude]
        return ready[:limit]

    def next_message_due(self, now: datetime) -> datetime | None:
        row = self._connection.execute(
            "SELECT MIN(visible_at) FROM messages WHERE visible_at > ?", (format_timestamp(now),)
        ).fetchone()
        return parse_timestamp(row[0]) if row and row[0] else None

    def pending_activities(self, exclude: set[int], limit: int) -> list[ActivityWork]:
        if limit <= 0:
            return []
        # The ids first: the loop asks after every commit, and most of the time every queued
        # call is already running (`exclude`); only the calls to start are read whole.
        ids = self._connection.execute("SELECT work_id FROM activities ORDER BY work_id")
        wanted = [row[0] for row in ids.fetchall() if row[0] not in exclude][:limit]
        if not wanted:
            return []
        columns = "work_id, instance_id, execution_id, task_id, name, parameters"
        if len(wanted) > MAX_SQL_PARAMETERS:  # a backlog (a restart): read them all
            rows = self._connection.execute(
                f"SELECT {columns} FROM activities ORDER BY work_id"
            ).fetchall()
            chosen = set(wanted)
            return [ActivityWork(*row) for row in rows if row[0] in chosen]
        marks = ",".join("?" * len(wanted))
        rows = self._connection.execute(
            f"SELECT {columns} FROM activities WHERE work_id IN ({marks}) ORDER BY work_id",
            wanted,
        ).fetchall()
        return [ActivityWork(*row) for row in rows]

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        return SqliteTransaction(self._connection).get_instance(instance_id)

    def query_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        return SqliteTransaction(self._connection).query_instances(query)

    def load_history(self, instance_id: str) -> list[Event]:
        return SqliteTransaction(self._connection).load_history(instance_id)


class SqliteTransaction:
    """The engine's StoreTransaction over an open SQLite transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        row = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return _record_from_row(row) if row else None

    def save_instance(self, record: InstanceRecord) -> None:
        parent = record.parent
        self._db.execute(
            f"INSERT OR REPLACE INTO instances ({_INSTANCE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.instance_id,
                record.name,
                record.version,
                record.execution_id,
                str(record.runtime_status),
                record.input_raw,
                record.output_raw,
                record.custom_status_raw,
                format_timestamp(record.created_time),
                format_timestamp(record.last_updated_time),
                parent.instance_id if parent else None,
                parent.execution_id if parent else None,
                parent.task_id if parent else None,
                parent.name if parent else None,
            ),
        )

    def delete_instance(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
        self.clear_history(instance_id)
        self.delete_queued_work(instance_id)

    def query_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        clauses: list[str] = []
        parameters: list[str] = []
        if query.created_from is not None:
            clauses.append("created_time >= ?")
            parameters.append(format_timestamp(query.created_from))
        if query.created_to is not None:
            clauses.append("created_time <= ?")
            parameters.append(format_timestamp(query.created_to))
        if query.statuses is not None:
            if not query.statuses:
                return []
            clauses.append(f"runtime_status IN ({', '.join('?' for _ in query.statuses)})")
            parameters.extend(str(status) for status in sorted(query.statuses))
        if query.instance_id_prefix:
            # substr instead of LIKE: instance ids may contain % or _.
            clauses.append("substr(instance_id, 1, ?) = ?")
            parameters.extend([str(len(query.instance_id_prefix)), query.instance_id_prefix])
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances{where} ORDER BY created_time, instance_id",
            parameters,
        ).fetchall()
        return [_record_from_row(row) for row in rows]

    def load_history(self, instance_id: str) -> list[Event]:
        rows = self._db.execute(
            "SELECT event FROM history WHERE instance_id = ? ORDER BY sequence", (instance_id,)
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def append_history(self, instance_id: str, events: Sequence[Event]) -> None:
        row = self._db.execute(
            "SELECT COALESCE(MAX(sequence), -1) FROM history WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        start = row[0] + 1
        self._db.executemany(
            "INSERT INTO history (instance_id, sequence, event) VALUES (?, ?, ?)",
            [
                (instance_id, start + offset, json.dumps(event))
                for offset, event in enumerate(events)
            ],
        )

    def clear_history(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))

    def enqueue_message(
        self, instance_id: str, execution_id: str | None, event: Event, visible_at: datetime
    ) -> None:
        self._db.execute(
            "INSERT INTO messages (instance_id, execution_id, event, visible_at) VALUES (?, ?, ?, ?)",
            (instance_id, execution_id, json.dumps(event), format_timestamp(visible_at)),
        )

    def visible_messages(self, instance_id: str, now: datetime) -> list[Message]:
        rows = self._db.execute(
            "SELECT message_id, instance_id, execution_id, event, visible_at FROM messages "
            "WHERE instance_id = ? AND visible_at <= ? ORDER BY visible_at, message_id",
            (instance_id, format_timestamp(now)),
        ).fetchall()
        return [
            Message(row[0], row[1], row[2], json.loads(row[3]), parse_timestamp(row[4]))
            for row in rows
        ]

    def delete_messages(self, message_ids: Sequence[int]) -> None:
        self._db.executemany(
            "DELETE FROM messages WHERE message_id = ?", [(i,) for i in message_ids]
        )

    def delete_queued_work(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM messages WHERE instance_id = ?", (instance_id,))
        self._db.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))

    def enqueue_activity(
        self, instance_id: str, execution_id: str, task_id: int, name: str, parameters_raw: str
    ) -> None:
        self._db.execute(
            "INSERT INTO activities (instance_id, execution_id, task_id, name, parameters) "
            "VALUES (?, ?, ?, ?, ?)",
            (instance_id, execution_id, task_id, name, parameters_raw),
        )

    def delete_activity(self, work_id: int) -> bool:
        cursor = self._db.execute("DELETE FROM activities WHERE work_id = ?", (work_id,))
        return cursor.rowcount > 0


def _record_from_row(row: Sequence[object]) -> InstanceRecord:
    (
        instance_id,
        name,
        version,
        execution_id,
        status,
        input_raw,
        output_raw,
        custom_status_raw,
        created,
        updated,
        parent_instance_id,
        parent_execution_id,
        parent_task_id,
        parent_name,
    ) = row
    parent = (
        ParentRef(
            str(parent_instance_id),
            str(parent_execution_id),
            int(str(parent_task_id)),
            str(parent_name),
        )
        if parent_instance_id is not None
        else None
    )
    return InstanceRecord(
        instance_id=str(instance_id),
        name=str(name),
        version=str(version),
        execution_id=str(execution_id),
        runtime_status=RuntimeStatus(str(status)),
        input_raw=None if input_raw is None else str(input_raw),
        output_raw=None if output_raw is None else str(output_raw),
        custom_status_raw=None if custom_status_raw is None else str(custom_status_raw),
        created_time=parse_timestamp(str(created)),
        last_updated_time=parse_timestamp(str(updated)),
        parent=parent,
    )
