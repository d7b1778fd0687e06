"""The run event log against Azurite: dense sequence numbers, one line per key whoever writes it,
and readers that follow the log from where they stopped."""

from __future__ import annotations

import asyncio
import uuid

from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.events import NewEvent, RunEventLog
from storage.models import ConversationRef


def a_run() -> tuple[ConversationRef, str]:
    return ConversationRef(f"user-{uuid.uuid4()}", uuid.uuid4().hex), uuid.uuid4().hex


def events(*keys: str) -> list[NewEvent]:
    return [NewEvent(key, key.split("/")[0], {"n": key}) for key in keys]


async def test_a_run_that_recorded_nothing_has_no_events(container: ContainerClient):
    ref, run_id = a_run()
    assert await RunEventLog(container).read(ref, run_id) == []


async def test_events_get_dense_sequence_numbers_in_the_order_they_were_appended(
    container: ContainerClient,
):
    log = RunEventLog(container)
    ref, run_id = a_run()
    await log.append(ref, run_id, events("run_started", "step_started/0"))
    await log.append(ref, run_id, events("text/0/0/0"))
    read = await RunEventLog(container).read(ref, run_id)
    assert [(e.seq, e.key, e.type) for e in read] == [
        (1, "run_started", "run_started"),
        (2, "step_started/0", "step_started"),
        (3, "text/0/0/0", "text"),
    ]
    assert read[2].wire()["n"] == "text/0/0/0"
    assert read[2].wire()["type"] == "text" and read[2].wire()["seq"] == 3


async def test_appending_the_same_keys_again_writes_nothing(container: ContainerClient):
    # what a retried activity does: the same events, from a process that knows nothing yet
    ref, run_id = a_run()
    first = await RunEventLog(container).append(ref, run_id, events("a", "b"))
    again = await RunEventLog(container).append(ref, run_id, events("a", "b", "c"))
    assert [e.key for e in first] == ["a", "b"]
    assert [(e.seq, e.key) for e in again] == [(3, "c")]
    assert [e.key for e in await RunEventLog(container).read(ref, run_id)] == ["a", "b", "c"]


async def test_writers_in_two_processes_racing_each_land_once_with_no_gap(
    container: ContainerClient,
):
    ref, run_id = a_run()
    one, two = RunEventLog(container), RunEventLog(container)
    await one.append(ref, run_id, events("start"))
    await two.append(ref, run_id, events("start"))  # both now have a cursor
    batches = [(one if i % 2 else two, events(f"e/{i}", "shared")) for i in range(12)]
    await asyncio.gather(*(log.append(ref, run_id, batch) for log, batch in batches))
    read = await RunEventLog(container).read(ref, run_id)
    assert [e.seq for e in read] == list(range(1, 15))
    assert sorted(e.key for e in read) == sorted(
        ["start", "shared", *(f"e/{i}" for i in range(12))]
    )


async def test_a_reader_returns_only_what_was_recorded_since_its_last_poll(
    container: ContainerClient,
):
    log = RunEventLog(container)
    ref, run_id = a_run()
    reader = log.reader(ref, run_id)
    assert await reader.poll() == []
    await log.append(ref, run_id, events("a", "b"))
    assert [e.seq for e in await reader.poll()] == [1, 2]
    assert await reader.poll() == []
    await log.append(ref, run_id, events("c"))
    assert [(e.seq, e.key) for e in await reader.poll()] == [(3, "c")]


async def test_a_writer_catches_up_with_another_writer_before_it_reports_the_log(
    container: ContainerClient,
):
    ref, run_id = a_run()
    mine, theirs = RunEventLog(container), RunEventLog(container)
    await mine.append(ref, run_id, events("a"))
    await theirs.append(ref, run_id, events("b"))
    assert [e.key for e in await mine.recorded(ref, run_id)] == ["a", "b"]


async def test_a_writer_told_the_log_is_new_finds_it_there_and_writes_no_duplicate(
    container: ContainerClient,
):
    # a run's first step retried in another process: it expects a new log, and is wrong
    ref, run_id = a_run()
    await RunEventLog(container).append(ref, run_id, events("run_started", "a"), new_log=True)
    again = RunEventLog(container)
    written = await again.append(ref, run_id, events("run_started", "a", "b"), new_log=True)
    assert [(e.seq, e.key) for e in written] == [(3, "b")]
    assert [e.key for e in await RunEventLog(container).read(ref, run_id)] == [
        "run_started",
        "a",
        "b",
    ]


async def test_a_writer_with_nothing_new_to_append_still_reads_what_others_appended(
    container: ContainerClient,
):
    # its cursor is stale and no append of its own landed to prove otherwise: it must read
    ref, run_id = a_run()
    mine, theirs = RunEventLog(container), RunEventLog(container)
    await mine.append(ref, run_id, events("a"), new_log=True)
    await theirs.append(ref, run_id, events("b"))
    assert [e.key for e in await mine.append_and_read(ref, run_id, events("a"))] == ["a", "b"]


async def test_a_writer_whose_append_landed_after_a_lost_race_reports_the_whole_log(
    container: ContainerClient,
):
    ref, run_id = a_run()
    mine, theirs = RunEventLog(container), RunEventLog(container)
    await mine.append(ref, run_id, events("a"), new_log=True)
    await theirs.append(ref, run_id, events("b"))
    read = await mine.append_and_read(ref, run_id, events("c"))
    assert [(e.seq, e.key) for e in read] == [(1, "a"), (2, "b"), (3, "c")]


async def test_an_append_told_not_to_create_leaves_a_missing_log_missing(
    container: ContainerClient, ref: ConversationRef
) -> None:
    """A run's end written once its turn is free: its conversation may be gone, and a log
    written after the deletion would outlive it."""
    blob = container.get_blob_client(paths.run_events_name(ref, "run-gone"))
    writer = RunEventLog(container)
    await writer.append(ref, "run-gone", [NewEvent("a", "step_completed")], new_log=True)
    await blob.delete_blob()  # the conversation went, after the turn was released
    end = [NewEvent("b", "run_finished")]
    assert await writer.append(ref, "run-gone", end, create=False) == []  # knew the log
    assert await RunEventLog(container).append(ref, "run-gone", end, create=False) == []
    assert not await blob.exists()


async def test_a_writer_whose_log_was_deleted_and_made_again_shorter_reads_it_from_its_start(
    container: ContainerClient,
):
    """Its cursor ends past the new log's end: the 412 catch-up finds nothing beyond it, so the
    writer reads the log from its start instead of meeting the same 412 until it gives up."""
    ref, run_id = a_run()
    writer = RunEventLog(container)
    await writer.append(ref, run_id, events("run_started", "step_started/1", "text/1/0/0"))
    await container.delete_blob(paths.run_events_name(ref, run_id))
    await RunEventLog(container).append(ref, run_id, events("a"))

    written = await writer.append(ref, run_id, events("b"))

    assert [(e.seq, e.key) for e in written] == [(2, "b")]
    assert [e.key for e in await RunEventLog(container).read(ref, run_id)] == ["a", "b"]


async def test_a_writer_whose_log_was_deleted_makes_it_again_from_its_start(
    counted: tuple[ContainerClient, list[str]],
):
    """Its cursor's position is in a log that is gone: the new log starts empty, so the events
    go at its start (no append at the old position, refused first)."""
    container, requests = counted
    ref, run_id = a_run()
    writer = RunEventLog(container)
    await writer.append(ref, run_id, events("run_started", "step_started/1"))
    await container.delete_blob(paths.run_events_name(ref, run_id))
    requests.clear()

    written = await writer.append(ref, run_id, events("b"))

    assert [(e.seq, e.key) for e in written] == [(1, "b")]
    assert requests == ["PUT", "PUT", "PUT"]  # the append refused (404), the create, the append
