"""The SQLite store: WAL, atomic transactions, state that survives a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from local_host.engine import InstanceRecord
from local_host.history import RuntimeStatus, orchestrator_started
from local_host.store import MAX_SQL_PARAMETERS, SqliteStore, StoreError
from tests.support.replay import DEFAULT_START_TIME as T0


def _record(instance_id: str = "i-1") -> InstanceRecord:
    return InstanceRecord(
        instance_id=instance_id,
        name="o",
        version="",
        execution_id="e",
        runtime_status=RuntimeStatus.PENDING,
        input_raw=None,
        output_raw=None,
        custom_status_raw=None,
        created_time=T0,
        last_updated_time=T0,
    )


def test_the_journal_is_in_wal_mode(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.sqlite3").close()
    with sqlite3.connect(tmp_path / "s.sqlite3") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_committed_state_survives_a_reopen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    with store.transaction() as tx:
        tx.save_instance(_record())
        tx.append_history("i-1", [orchestrator_started(T0)])
        tx.enqueue_activity("i-1", "e", 0, "act", "[null]")
    store.close()
    reopened = SqliteStore(tmp_path / "s.sqlite3")
    assert reopened.get_instance("i-1") == _record()
    assert len(reopened.load_history("i-1")) == 1
    assert [w.name for w in reopened.pending_activities(set(), 10)] == ["act"]


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.save_instance(_record())
        raise RuntimeError("crash in the middle")
    assert store.get_instance("i-1") is None


def test_timer_messages_stay_invisible_until_due(tmp_path: Path) -> None:
    from datetime import timedelta

    store = SqliteStore(tmp_path / "s.sqlite3")
    with store.transaction() as tx:
        tx.enqueue_message("i-1", "e", orchestrator_started(T0), T0 + timedelta(minutes=5))
    assert store.ready_instances(T0, set(), 10) == []
    assert store.next_message_due(T0) == T0 + timedelta(minutes=5)
    assert store.ready_instances(T0 + timedelta(minutes=5), set(), 10) == ["i-1"]


def test_a_state_file_from_another_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "s.sqlite3") as connection:
        connection.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(tmp_path / "s.sqlite3")


@pytest.mark.parametrize("queued", [5, MAX_SQL_PARAMETERS + 3])  # a few; a restart's backlog
def test_pending_activities_leave_out_the_running_ones_oldest_first_up_to_the_limit(
    tmp_path: Path, queued: int
) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    with store.transaction() as tx:
        for task in range(queued):
            tx.enqueue_activity("i-1", "e", task, f"act{task}", f'["{task}"]')
    everything = store.pending_activities(set(), queued + 10)
    assert [w.task_id for w in everything] == list(range(queued))
    running = {everything[0].work_id, everything[2].work_id}
    next_ones = store.pending_activities(running, queued - 3)
    assert [w.task_id for w in next_ones] == [1, *range(3, queued - 1)]
    assert next_ones[0].parameters_raw == '["1"]' and next_ones[0].name == "act1"
    assert store.pending_activities({w.work_id for w in everything}, 10) == []
