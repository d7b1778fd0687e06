"""The pure parts of batch storage: record shapes, ids, who sees what, and which owner-schedule
entry a delivery uses (no Azurite: tests/storage/test_batches.py covers the Blob paths)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from storage.batches import (
    OWNER_SCHEDULE_GRACE,
    BatchItem,
    BatchRecord,
    ItemRef,
    OwnerSchedules,
    ScheduleEntry,
    _claimable,
    _earliest_due,
    _expiry,
    _instant,
    _live_entries,
    batch_id_for_webhook,
    run_id_of,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ITEM = BatchItem(
    2, "c1", "alice", "hello", "2026-01-01T09:00:00+00:00", "sch_1", "scheduled", None, "scheduled"
)


# --- records as stored --------------------------------------------------------------------


def test_a_batch_is_stored_in_its_recorded_shape_and_read_back():
    # The blob a batch is kept in: batches written by an older deploy must still read.
    batch = BatchRecord("s1", "schedule", "2026-01-01T00:00:00+00:00", "alice", (ITEM,))
    stored = {
        "batch_id": "s1",
        "source": "schedule",
        "created_at": "2026-01-01T00:00:00+00:00",
        "owner": "alice",
        "items": [
            {
                "index": 2,
                "conversation_id": "c1",
                "owner": "alice",
                "content": "hello",
                "scheduled_time": "2026-01-01T09:00:00+00:00",
                "schedule_id": "sch_1",
                "status": "scheduled",
                "error": None,
                "origin": "scheduled",
            }
        ],
    }
    assert batch.to_dict() == stored
    assert BatchRecord.from_dict(stored) == batch


def test_an_item_reference_is_stored_as_batch_and_index():
    assert ItemRef("b1", 3).to_dict() == {"batch_id": "b1", "index": 3}
    assert ItemRef.from_dict({"batch_id": "b1", "index": 3}) == ItemRef("b1", 3)


def test_an_owner_sees_their_whole_batch_and_others_only_their_own_conversations():
    bob = BatchItem(0, "c0", "bob", "x")
    carol = BatchItem(1, "c1", "carol", "y")
    scheduled = BatchRecord("s1", "schedule", "t", "bob", (bob, carol))
    delivered = BatchRecord("b1", "callback", "t", None, (bob, carol))
    assert scheduled.visible_to("bob") == (bob, carol)
    assert scheduled.visible_to("carol") == (carol,)
    assert delivered.visible_to("bob") == (bob,)
    assert delivered.visible_to("mallory") == ()


def test_a_webhooks_batch_id_is_fixed_by_its_webhook_id():
    # The Durable instance id of the delivery: a repeat, even after a deploy, finds the same.
    digest = hashlib.sha256(b"msg_1").hexdigest()
    assert batch_id_for_webhook("msg_1") == "b" + digest[:31]
    assert len(batch_id_for_webhook("x" * 500)) == 32


def test_an_items_run_id_is_its_batch_and_four_digit_index():
    assert run_id_of("b1", 7) == "b1-0007"
    assert run_id_of("b1", 12345) == "b1-12345"


# --- times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T12:00:00+00:00",
        "2026-01-01T12:00:00Z",
        " 2026-01-01t12:00:00z ",
        "2026-01-01T13:00:00+01:00",
    ],
)
def test_an_instant_with_a_timezone_is_read(text: str):
    assert _instant(text) == NOW


@pytest.mark.parametrize("value", [None, 5, "", "soon", "2026-01-01T12:00:00"])
def test_anything_else_is_no_instant(value: object):
    assert _instant(value) is None


def test_an_entry_expires_its_grace_after_its_due_time_or_after_now_without_one():
    assert (
        _expiry("2026-01-01T09:00:00Z", NOW)
        == (datetime(2026, 1, 1, 9, tzinfo=UTC) + OWNER_SCHEDULE_GRACE).isoformat()
    )
    assert _expiry(None, NOW) == (NOW + OWNER_SCHEDULE_GRACE).isoformat()


# --- which owner-schedule entry a delivery uses --------------------------------------------


def entry(
    due: str | None, claimed_by: str | None = None, expires: str | None = None
) -> ScheduleEntry:
    return ScheduleEntry(due, expires or _expiry(due, NOW), claimed_by)


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


def test_only_entries_not_yet_expired_are_live():
    live = entry(at(0), expires=at(1))
    record = OwnerSchedules("alice", (entry(at(0), expires=at(0)), live))
    assert _live_entries(record, NOW) == [live]
    unreadable = OwnerSchedules("alice", (entry(None, expires="not a time"),))
    assert _live_entries(unreadable, NOW) == []
    assert _live_entries(OwnerSchedules("alice", ()), NOW) == []
    assert _live_entries(None, NOW) == []


def test_a_record_from_before_entries_is_one_untimed_entry_void_after_the_grace():
    assert _live_entries(OwnerSchedules("alice"), NOW) == [
        ScheduleEntry(None, (NOW + OWNER_SCHEDULE_GRACE).isoformat())
    ]


def test_a_repeat_delivery_uses_the_entry_it_claimed_before():
    mine = entry(at(60), claimed_by="b1:0")
    entries = [entry(at(0)), mine]
    assert _claimable(entries, at(0), "b1:0", NOW) is mine


def test_a_timed_delivery_takes_the_first_free_entry_due_within_a_second():
    claimed = entry(at(0), claimed_by="other")
    later = entry(at(10))
    close = entry((NOW + timedelta(seconds=1)).isoformat())
    assert _claimable([claimed, later, close], at(0), "b1:0", NOW) is close
    assert _claimable([claimed, later], at(0), "b1:0", NOW) is None
    too_far = entry((NOW + timedelta(seconds=1.5)).isoformat())
    assert _claimable([too_far], at(0), "b1:0", NOW) is None


def test_two_schedulings_of_one_text_are_each_taken_by_their_own_delivery():
    first, second = entry(at(-120)), entry(at(-60))
    assert _claimable([first, second], at(-60), "b2:0", NOW) is second
    assert _claimable([first, second], at(-120), "b1:0", NOW) is first


def test_an_untimed_entry_matches_any_delivery_time():
    untimed = entry(None)
    assert _claimable([entry(at(30)), untimed], at(0), "b1:0", NOW) is untimed


def test_an_untimed_delivery_takes_the_earliest_free_entry_already_due():
    due_earlier = entry(at(-30))
    due_now = entry(at(0))
    not_yet = entry(at(5))
    assert _claimable([not_yet, due_now, due_earlier], None, "b1:0", NOW) is due_earlier
    assert _claimable([not_yet], None, "b1:0", NOW) is None


def test_the_earliest_due_counts_a_second_of_rounding_and_puts_untimed_entries_first():
    within = entry((NOW + timedelta(seconds=1)).isoformat())
    beyond = entry((NOW + timedelta(seconds=2)).isoformat())
    assert _earliest_due([beyond, within], NOW) is within
    assert _earliest_due([beyond], NOW) is None
    untimed = entry(None)
    assert _earliest_due([entry(at(-60)), untimed], NOW) is untimed
