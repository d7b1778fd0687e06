"""Batch records and the lanes' work queue, against Azurite."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob.aio import ContainerClient

from devkit.azurite import AzuriteInstance
from devkit.ledger import BlobRequestCounter
from storage.batches import (
    OWNER_SCHEDULE_GRACE,
    BatchItem,
    BatchRecord,
    BatchStore,
    ItemOutcome,
    ItemRef,
    batch_id_for_webhook,
    run_id_of,
)
from storage.batches import _owner_schedule_name as owner_schedule_name
from storage.blob import container_client
from wire import WireError

SOON = "2099-01-01T00:00:00+00:00"


def record(batch_id: str, owners: list[str | None]) -> BatchRecord:
    items = tuple(
        BatchItem(i, f"c{i}", owner, f"text {i}", status="pending" if owner else "rejected")
        for i, owner in enumerate(owners)
    )
    return BatchRecord(batch_id, "callback", "2026-01-01T00:00:00+00:00", None, items)


async def test_a_batch_is_created_once_and_read_back(container: ContainerClient):
    store = BatchStore(container)
    batch = record(uuid.uuid4().hex, ["alice", None])
    assert await store.create(batch) is True
    assert await store.create(record(batch.batch_id, ["mallory"])) is False  # the first stays
    assert await store.get(batch.batch_id) == batch
    assert await store.get("no-such-batch") is None


async def test_a_running_batch_is_read_once_per_process(container: ContainerClient):
    store = BatchStore(container)
    batch = record(uuid.uuid4().hex, ["alice"])
    assert await store.get_running(batch.batch_id) is None  # nothing cached for a missing batch
    await store.create(batch)
    assert await store.get_running(batch.batch_id) == batch
    await container.delete_blob(f"batches/{batch.batch_id}.json")
    assert await store.get_running(batch.batch_id) == batch  # from memory: no second read
    assert await BatchStore(container).get_running(batch.batch_id) is None


async def test_a_rewritten_batch_is_read_again(container: ContainerClient):
    store = BatchStore(container)
    batch = record(uuid.uuid4().hex, ["alice"])
    await store.create(batch)
    await store.get_running(batch.batch_id)
    rewritten = record(batch.batch_id, ["bob"])
    await store.replace(rewritten)
    assert await store.get_running(batch.batch_id) == rewritten


def test_callers_see_only_items_in_their_own_conversations():
    batch = record("b", ["alice", "bob", "alice"])
    assert [i.index for i in batch.visible_to("alice")] == [0, 2]
    assert batch.visible_to("carol") == ()


def test_ids_derived_from_a_webhook_are_plain_bounded_and_stable():
    first = batch_id_for_webhook("msg_2Lz:weird/chars..")
    assert first == batch_id_for_webhook("msg_2Lz:weird/chars..")
    assert first.isalnum() and len(first) == 32
    assert run_id_of(first, 7) == f"{first}-0007"


async def test_concurrent_lanes_claim_every_item_exactly_once(container: ContainerClient):
    store = BatchStore(container)
    batch_id, indices = uuid.uuid4().hex, tuple(range(100, 130))

    async def lane(number: int) -> list[int]:
        taken = []
        for claim in range(100):
            index = await store.claim(batch_id, indices, f"{number}.{claim}")
            if index is None:
                return taken
            taken.append(index)
        raise AssertionError("the queue never ran dry")

    lanes = await asyncio.gather(*(lane(n) for n in range(8)))
    claimed = [index for taken in lanes for index in taken]
    assert sorted(claimed) == list(indices)
    assert sum(1 for taken in lanes if taken) > 1  # the work was shared


async def test_a_repeated_claim_returns_the_same_item(container: ContainerClient):
    store = BatchStore(container)
    batch_id, indices = uuid.uuid4().hex, (5, 6, 7)
    first = await store.claim(batch_id, indices, "0.0")
    assert await store.claim(batch_id, indices, "1.0") == 6
    assert await store.claim(batch_id, indices, "0.0") == first == 5
    assert await store.claim(batch_id, indices, "2.0") == 7
    assert await store.claim(batch_id, indices, "3.0") is None


async def test_a_claim_after_this_processs_own_claims_is_one_append(azurite: AzuriteInstance):
    counter = BlobRequestCounter()
    client = container_client(
        azurite.connection_string, "conversations-test", request_policies=[counter]
    )
    async with client:
        store = BatchStore(client)
        batch_id, indices = uuid.uuid4().hex, (5, 6, 7)
        assert await store.claim(batch_id, indices, "0.0") == 5  # creates the queue
        before = counter.snapshot()
        assert await store.claim(batch_id, indices, "1.0") == 6
        assert await store.claim(batch_id, indices, "0.0") == 5  # a repeat: the same item
        assert await store.claim(batch_id, indices, "2.0") == 7
        cost = counter.snapshot() - before
    assert cost["blob_requests"] == cost["blob:append"] == 3  # and no read


async def test_claims_from_two_processes_read_what_the_other_appended(container: ContainerClient):
    mine, other = BatchStore(container), BatchStore(container)  # two Functions instances
    batch_id, indices = uuid.uuid4().hex, (5, 6, 7, 8)
    assert await mine.claim(batch_id, indices, "0.0") == 5
    assert await other.claim(batch_id, indices, "1.0") == 6
    assert await mine.claim(batch_id, indices, "1.0") == 6  # other's claim, repeated here
    assert await mine.claim(batch_id, indices, "0.1") == 7
    assert await other.claim(batch_id, indices, "0.0") == 5  # mine, repeated there
    assert await other.claim(batch_id, indices, "1.1") == 8
    assert await mine.claim(batch_id, indices, "0.2") is None


async def test_an_items_outcome_is_recorded_and_read_back(container: ContainerClient):
    store = BatchStore(container)
    batch_id = uuid.uuid4().hex
    assert await store.outcome(batch_id, 3) is None
    await store.record_outcome(batch_id, 3, "failed", "could not start: busy")
    await store.record_outcome(batch_id, 3, "failed", "could not start: busy")  # a re-run
    assert await store.outcome(batch_id, 3) == ItemOutcome("failed", "could not start: busy")
    assert await store.outcome(batch_id, 4) is None


async def test_only_text_its_owner_scheduled_for_a_conversation_counts_as_theirs(
    container: ContainerClient,
):
    store = BatchStore(container)
    conversation = uuid.uuid4().hex
    await store.remember_owner_schedule("alice", conversation, "water the plants", SOON)

    async def origin(owner: str, conversation_id: str, text: str, claimant: str) -> str:
        return await store.claim_owner_schedule(owner, conversation_id, text, SOON, claimant)

    assert await origin("alice", conversation, "water the plants!", "d:0") == (
        "scheduled_by_assistant"
    )
    assert await origin("mallory", conversation, "water the plants", "d:1") == (
        "scheduled_by_assistant"
    )
    assert await origin("alice", uuid.uuid4().hex, "water the plants", "d:2") == (
        "scheduled_by_assistant"
    )
    assert await origin("alice", conversation, "water the plants", "d:3") == "scheduled"


async def owner_schedule_blobs(container: ContainerClient, conversation: str, text: str):
    name = owner_schedule_name(conversation, text)
    return [found async for found in container.list_blob_names(name_starts_with=name)]


async def test_an_owner_schedule_is_used_up_by_the_one_delivery_matched_to_it(
    container: ContainerClient,
):
    store = BatchStore(container)
    conversation = uuid.uuid4().hex
    await store.remember_owner_schedule("alice", conversation, "water the plants", SOON)
    claim = functools.partial(store.claim_owner_schedule, "alice", conversation, "water the plants")

    assert await claim(SOON, "first:0") == "scheduled"
    assert await claim(SOON, "first:0") == "scheduled"  # the same delivery, repeated
    assert await claim(SOON, "other:0") == "scheduled_by_assistant"  # taken
    await store.consume_owner_schedule(conversation, "water the plants", "first:0")
    await store.consume_owner_schedule(conversation, "water the plants", "first:0")  # a re-run
    assert await owner_schedule_blobs(container, conversation, "water the plants") == []
    assert await claim(SOON, "later:0") == "scheduled_by_assistant"


async def test_the_same_text_scheduled_twice_is_matched_by_its_due_time(
    container: ContainerClient,
):
    store = BatchStore(container)
    conversation = uuid.uuid4().hex
    morning, evening = "2099-01-01T09:00:00+00:00", "2099-01-01T21:00:00Z"
    for when in (morning, evening):
        await store.remember_owner_schedule("alice", conversation, "take the pills", when)
    claim = functools.partial(store.claim_owner_schedule, "alice", conversation, "take the pills")

    assert await claim("2099-01-01T21:00:00.400Z", "evening:0") == "scheduled"
    assert await claim("2099-01-01T12:00:00Z", "noon:0") == "scheduled_by_assistant"
    assert await claim(morning, "morning:0") == "scheduled"
    assert await claim(morning, "again:0") == "scheduled_by_assistant"


async def test_an_owner_schedule_never_delivered_expires_and_is_deleted(
    container: ContainerClient,
):
    store = BatchStore(container)
    conversation = uuid.uuid4().hex
    long_ago = (datetime.now(UTC) - OWNER_SCHEDULE_GRACE - timedelta(minutes=1)).isoformat()
    await store.remember_owner_schedule("alice", conversation, "water the plants", long_ago)
    claim = store.claim_owner_schedule("alice", conversation, "water the plants", long_ago, "d:0")

    assert await claim == "scheduled_by_assistant"
    assert await owner_schedule_blobs(container, conversation, "water the plants") == []


async def test_a_record_from_before_entries_is_one_owner_schedule(container: ContainerClient):
    store = BatchStore(container)
    conversation = uuid.uuid4().hex
    name = owner_schedule_name(conversation, "water the plants")
    await container.upload_blob(name, json.dumps({"owner": "alice"}).encode())

    claim = functools.partial(store.claim_owner_schedule, "alice", conversation, "water the plants")
    assert await claim(SOON, "d:0") == "scheduled"
    await store.consume_owner_schedule(conversation, "water the plants", "d:0")
    assert await claim(SOON, "d:1") == "scheduled_by_assistant"


async def test_a_batch_item_stored_before_provenance_existed_reads_as_the_assistants():
    old = {
        "index": 0, "conversation_id": "c", "owner": "o", "content": "x",
        "scheduled_time": None, "schedule_id": "s", "status": "pending", "error": None,
    }  # fmt: skip
    assert BatchItem.from_dict(old).origin == "scheduled_by_assistant"


async def test_using_up_a_claimed_schedule_links_its_batch_item_to_the_delivery(
    container: ContainerClient,
):
    store = BatchStore(container)
    conversation, text = uuid.uuid4().hex, "take the pills"
    morning, evening = "2099-01-01T09:00:00+00:00", "2099-01-01T21:00:00+00:00"
    scheduled = uuid.uuid4().hex  # the POST /api/schedules batch
    for index, when in enumerate((morning, evening)):
        home = ItemRef(scheduled, index)
        await store.remember_owner_schedule("alice", conversation, text, when, home=home)
    delivered = ItemRef(uuid.uuid4().hex, 3)  # the evening's delivery, item 3 of its batch
    claimant = f"{delivered.batch_id}:{delivered.index}"
    assert await store.claim_owner_schedule("alice", conversation, text, evening, claimant) == (
        "scheduled"
    )

    await store.consume_owner_schedule(conversation, text, claimant, delivered)
    await store.consume_owner_schedule(conversation, text, claimant, delivered)  # a re-run
    assert await store.delivery(ItemRef(scheduled, 1)) == delivered
    assert await store.delivery(ItemRef(scheduled, 0)) is None  # the morning's: not delivered


async def test_the_first_delivery_of_a_scheduled_item_is_the_one_linked(
    container: ContainerClient,
):
    store = BatchStore(container)
    home = ItemRef(uuid.uuid4().hex, 2)
    assert await store.delivery(home) is None
    assert await store.link_delivery(home, ItemRef("b-first", 0)) is True
    assert await store.link_delivery(home, ItemRef("b-first", 0)) is True  # a repeat: its own
    assert await store.link_delivery(home, ItemRef("b-later", 5)) is False
    assert await store.delivery(home) == ItemRef("b-first", 0)


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_delivery_with_no_time_takes_only_the_earliest_entry_already_due(
    container: ContainerClient,
):
    monday = datetime(2099, 1, 5, 9, 0, tzinfo=UTC)
    clock = Clock(monday - timedelta(hours=1))
    store = BatchStore(container, clock=clock)
    conversation, text, scheduled = uuid.uuid4().hex, "weekly review", uuid.uuid4().hex
    # Recorded latest first: the order of the record is not the order of their times.
    for index, when in ((2, monday + timedelta(days=2)), (1, monday + timedelta(days=1))):
        home = ItemRef(scheduled, index)
        await store.remember_owner_schedule("alice", conversation, text, when.isoformat(), home)
    await store.remember_owner_schedule(
        "alice", conversation, text, monday.isoformat(), ItemRef(scheduled, 0)
    )
    claim = functools.partial(store.claim_owner_schedule, "alice", conversation, text, None)

    # Before Monday nothing is due: an unsigned delivery now is not the owner's scheduling.
    assert await claim("early:0") == "scheduled_by_assistant"
    clock.now = monday + timedelta(seconds=0.5)  # within the tolerance of a Scheduler's rounding
    assert await claim("monday:0") == "scheduled"
    await store.consume_owner_schedule(conversation, text, "monday:0", ItemRef("monday", 0))
    assert await store.delivery(ItemRef(scheduled, 0)) == ItemRef("monday", 0)
    assert await claim("again:0") == "scheduled_by_assistant"  # Tuesday's is not due yet
    clock.now = monday + timedelta(days=2, hours=1)  # both later ones due: the earliest first
    assert await claim("late:0") == "scheduled"
    await store.consume_owner_schedule(conversation, text, "late:0", ItemRef("late", 0))
    assert await store.delivery(ItemRef(scheduled, 1)) == ItemRef("late", 0)
    assert await store.delivery(ItemRef(scheduled, 2)) is None


async def test_an_owner_schedule_claimed_keeps_keys_a_newer_writer_added(
    container: ContainerClient,
) -> None:
    store = BatchStore(container)
    conversation, text = uuid.uuid4().hex, "water the plants"
    name = owner_schedule_name(conversation, text)
    entry = {"due": SOON, "expires_at": "2099-01-03T00:00:00+00:00", "claimed_by": None,
             "home": None, "priority": 2}  # fmt: skip
    newer = {"owner": "alice", "entries": [entry], "region": "eu"}
    await container.upload_blob(name, json.dumps(newer).encode())

    assert await store.claim_owner_schedule("alice", conversation, text, SOON, "d:0") == "scheduled"

    stored = json.loads(await (await container.download_blob(name)).readall())
    assert stored == {**newer, "entries": [{**entry, "claimed_by": "d:0"}]}


async def test_a_replaced_batch_keeps_keys_a_newer_writer_added_to_it_and_its_items(
    container: ContainerClient,
) -> None:
    store = BatchStore(container)
    batch_id = uuid.uuid4().hex
    newer = record(batch_id, ["alice"]).to_dict()
    newer["items"][0]["priority"] = 2
    newer["region"] = "eu"
    await container.upload_blob(f"batches/{batch_id}.json", json.dumps(newer).encode())

    batch = await store.get(batch_id)
    assert batch is not None
    items = (dataclasses.replace(batch.items[0], schedule_id="s-1"),)
    await store.replace(dataclasses.replace(batch, items=items))

    stored = json.loads(await (await container.download_blob(f"batches/{batch_id}.json")).readall())
    assert stored["region"] == "eu"
    assert stored["items"][0]["priority"] == 2
    assert stored["items"][0]["schedule_id"] == "s-1"


async def test_a_batch_record_with_a_wrong_type_is_an_error_naming_the_field() -> None:
    data = record("b", ["alice"]).to_dict()
    data["items"][0]["index"] = "0"
    with pytest.raises(WireError, match=r"BatchRecord\.items\[0\]\.index: expected int"):
        BatchRecord.from_dict(data)
