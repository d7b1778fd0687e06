"""The pure decisions behind scheduled conversations: what an item, a request key, a due time,
a Scheduler's answer and a batch's view come to (the HTTP and Blob paths around them are
tested end to end in tests/e2e)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from agent.errors import BadRequest
from agent.http.callbacks import MAX_IDEMPOTENCY_KEY_CHARS, body_fingerprint, request_key
from agent.http.models import ScheduleRequest, validated
from agent.http.schedules import batch_view_of_items
from agent.scheduling import CallbackItem, batch_item, schedule_id_of
from agent.turn_lock import status_name
from storage.batches import BatchItem, BatchRecord

DELIVERED = CallbackItem("sch_1", "conv-1", "Remind me", "2026-01-01T09:00:00+00:00")


# --- a delivered item -------------------------------------------------------------------------


def test_a_delivered_item_for_an_existing_conversation_is_pending_with_its_origin():
    assert batch_item(3, DELIVERED, "alice", "scheduled") == BatchItem(
        index=3,
        conversation_id="conv-1",
        owner="alice",
        content="Remind me",
        scheduled_time="2026-01-01T09:00:00+00:00",
        schedule_id="sch_1",
        status="pending",
        error=None,
        origin="scheduled",
    )


def test_a_delivered_item_for_no_conversation_is_rejected_and_says_which():
    item = batch_item(0, DELIVERED, None, "scheduled_by_assistant")
    assert (item.status, item.error, item.owner) == ("rejected", "no conversation conv-1", None)


# --- the unsigned callback's idempotency key ------------------------------------------------


def test_the_same_json_is_the_same_body_whatever_its_key_order_or_spacing():
    one = json.loads('{"conversationId": "c1", "content": "hé"}')
    other = json.loads('{ "content":"hé","conversationId":"c1" }')
    assert body_fingerprint(one) == body_fingerprint(other)
    assert body_fingerprint(one) != body_fingerprint({**one, "content": "he"})


def test_the_body_fingerprint_is_the_sha256_of_its_canonical_utf8_json():
    # Stored with each claimed key for 24 hours: a change would make a repeat across a deploy
    # look like another body (a 409).
    canonical = '{"content":"hé","conversationId":"c1"}'
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert body_fingerprint({"conversationId": "c1", "content": "hé"}) == expected


def test_a_request_is_keyed_by_its_header_else_by_its_body_and_always_by_its_caller():
    assert request_key("alice", None, "f1") == "conversation-callback\nalice\nbody\nf1"
    assert request_key("alice", " k-1 ", "f1") == "conversation-callback\nalice\nkey\nk-1"
    assert request_key("bob", "k-1", "f1") != request_key("alice", "k-1", "f1")
    assert request_key("alice", "f1", "f1") != request_key("alice", None, "f1")


@pytest.mark.parametrize("header", ["", "   ", "k" * (MAX_IDEMPOTENCY_KEY_CHARS + 1)])
def test_an_empty_or_overlong_idempotency_key_is_a_bad_request(header: str):
    with pytest.raises(BadRequest, match="Idempotency-Key header must be 1 to 255 characters"):
        request_key("alice", header, "f1")


@pytest.mark.parametrize("key", ["k", "k" * MAX_IDEMPOTENCY_KEY_CHARS])
def test_an_idempotency_key_of_one_to_255_characters_is_taken(key: str):
    assert request_key("alice", key, "f1").endswith("\n" + key)


# --- a due time -----------------------------------------------------------------------------


def parse_time(value: object, where: str) -> datetime:
    """The due time of the item at `where` (items[n]) of a schedule request, as validated."""
    index = int(where.removeprefix("items[").removesuffix("]"))
    fine = {"content": "x", "scheduled_time": "2026-03-01T09:00:00Z"}
    items = [fine] * index + [{"content": "x", "scheduled_time": value}]
    return validated(ScheduleRequest, {"items": items}).items[index].scheduled_time


@pytest.mark.parametrize(
    "text",
    ["2026-03-01T09:00:00Z", "2026-03-01t09:00:00z", "2026-03-01T10:30:00+01:30"],
)
def test_a_due_time_with_a_timezone_is_read_as_utc(text: str):
    assert parse_time(text, "items[0]") == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "items[2].scheduled_time is required (ISO 8601 with a timezone)"),
        (1767258000, "items[2].scheduled_time is required (ISO 8601 with a timezone)"),
        ("tomorrow", "items[2].scheduled_time is not an ISO 8601 date-time"),
        ("2026-03-01T09:00:00", "items[2].scheduled_time needs a timezone"),
        ("0001-01-01T00:00:00+01:00", "items[2].scheduled_time is out of range"),
    ],
)
def test_a_bad_due_time_is_a_bad_request_naming_the_item(value: object, problem: str):
    with pytest.raises(BadRequest) as error:
        parse_time(value, "items[2]")
    assert error.value.detail.startswith(problem)


# --- the Scheduler's answer -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "schedule_id"),
    [
        ('{"schedule_id": "s1"}', "s1"),
        ('{"result": {"schedule_id": 42}}', "42"),
        ('[{"other": 1}, {"schedule_id": "s2"}]', "s2"),
        # an MCP result: the id inside a text block that is itself JSON
        ('{"content": [{"type": "text", "text": " {\\"schedule_id\\": \\"s3\\"}"}]}', "s3"),
    ],
)
def test_the_schedule_id_is_found_wherever_the_scheduler_puts_it(output: str, schedule_id: str):
    assert schedule_id_of(output) == schedule_id


@pytest.mark.parametrize(
    "output",
    [
        "scheduled!",
        '{"status": "ok"}',
        '{"schedule_id": null}',
        '{"content": [{"type": "text", "text": "{not json"}]}',
        '{"content": [{"type": "text", "text": "schedule_id: s4"}]}',
        "7",
    ],
)
def test_an_answer_without_a_schedule_id_has_none(output: str):
    assert schedule_id_of(output) is None


# --- a batch's view -------------------------------------------------------------------------


def record(*items: BatchItem) -> BatchRecord:
    return BatchRecord("s1", "schedule", "2026-01-01T00:00:00+00:00", "alice", items)


PENDING = BatchItem(0, "c0", "alice", "one", "2026-01-02T00:00:00+00:00")
SCHEDULED = BatchItem(1, "c1", "alice", "two", None, schedule_id="sch_1", status="scheduled")
REJECTED = BatchItem(2, "c2", "alice", "three", None, status="rejected", error="in the past")


def test_a_batch_without_runs_shows_each_items_own_status_and_the_counts():
    batch = record(PENDING, SCHEDULED, REJECTED)
    assert batch_view_of_items(batch, batch.items) == {
        "batch_id": "s1",
        "source": "schedule",
        "created_at": "2026-01-01T00:00:00+00:00",
        "counts": {"pending": 1, "scheduled": 1, "rejected": 1},
        "items": [
            {
                "index": 0,
                "conversation_id": "c0",
                "scheduled_time": "2026-01-02T00:00:00+00:00",
                "status": "pending",
            },
            {
                "index": 1,
                "conversation_id": "c1",
                "scheduled_time": None,
                "status": "scheduled",
                "schedule_id": "sch_1",
            },
            {
                "index": 2,
                "conversation_id": "c2",
                "scheduled_time": None,
                "status": "rejected",
                "error": "in the past",
            },
        ],
    }


def test_an_item_with_a_run_shows_the_runs_status_id_answer_and_error():
    batch = record(PENDING, SCHEDULED, REJECTED)
    runs = [
        {"run_id": "s1-0000", "status": "completed", "answer": "Done.", "error": None},
        {"run_id": None, "status": "failed", "error": "could not start"},
        None,
    ]
    view = batch_view_of_items(batch, batch.items, runs)
    assert view["items"][0] == {
        "index": 0,
        "conversation_id": "c0",
        "scheduled_time": "2026-01-02T00:00:00+00:00",
        "status": "completed",
        "run_id": "s1-0000",
        "answer": "Done.",
    }
    assert view["items"][1] == {
        "index": 1,
        "conversation_id": "c1",
        "scheduled_time": None,
        "status": "failed",
        "schedule_id": "sch_1",
        "error": "could not start",
    }
    assert view["items"][2]["status"] == "rejected"
    assert view["counts"] == {"completed": 1, "failed": 1, "rejected": 1}


def test_a_view_of_some_items_shows_only_those():
    batch = record(PENDING, SCHEDULED, REJECTED)
    view = batch_view_of_items(batch, (SCHEDULED,))
    assert [item["index"] for item in view["items"]] == [1]
    assert view["counts"] == {"scheduled": 1}


# --- a run's Durable status -------------------------------------------------------------------


def test_a_runs_status_name_is_durables_runtime_status():
    assert status_name(DurableOrchestrationStatus(runtimeStatus="Terminated")) == "Terminated"
    assert status_name(SimpleNamespace(runtime_status="Suspended")) == "Suspended"


def test_a_run_without_an_instance_has_no_status_name():
    assert status_name(DurableOrchestrationStatus()) is None
    assert status_name(None) is None
