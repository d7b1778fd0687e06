"""Conversations and turns: create, read, ownership, and the one-active-run rule."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.conversations import ConversationStore
from storage.errors import AlreadyExists, InvalidKey, RecordNotFound, TurnInProgress
from storage.models import ConversationMeta, ConversationRef


async def test_a_created_conversation_can_be_read_back(
    store: ConversationStore, owner: str
) -> None:
    ref = ConversationRef(owner, "chat-" + owner[-12:])
    created = await store.create(ref)
    meta = await store.get_meta(ref)
    assert meta == created
    assert (meta.conversation_id, meta.owner, meta.turn_count, meta.active_run_id) == (
        ref.conversation_id,
        owner,
        0,
        None,
    )
    assert meta.etag
    assert await store.read_messages(ref) == []


async def test_creating_an_existing_conversation_says_it_already_exists(
    store: ConversationStore, other_store: ConversationStore, ref: ConversationRef
) -> None:
    with pytest.raises(AlreadyExists, match="already exists"):
        await store.create(ref)
    with pytest.raises(AlreadyExists):
        await other_store.create(ref)


async def test_an_unknown_conversation_is_not_found(store: ConversationStore, owner: str) -> None:
    unknown = ConversationRef(owner, "never-created")
    with pytest.raises(RecordNotFound):
        await store.get_meta(unknown)
    with pytest.raises(RecordNotFound):
        await store.read_messages(unknown)
    with pytest.raises(RecordNotFound):
        await store.begin_turn(unknown, "run-1")


async def test_another_owners_conversation_is_not_found(
    store: ConversationStore, ref: ConversationRef
) -> None:
    intruder = ConversationRef("someone-else", ref.conversation_id)
    with pytest.raises(RecordNotFound):
        await store.get_meta(intruder)
    with pytest.raises(RecordNotFound):
        await store.read_messages(intruder)
    # …and ids are unique across owners: the intruder cannot create one of that id.
    with pytest.raises(AlreadyExists):
        await store.create(intruder)
    assert (await store.get_meta(ref)).owner == ref.owner


async def test_the_owner_of_a_conversation_id_can_be_found(
    store: ConversationStore, ref: ConversationRef
) -> None:
    assert await store.owner_of(ref.conversation_id) == ref.owner
    assert await store.owner_of("no-such-conversation") is None


async def test_a_create_that_crashed_after_claiming_its_id_can_be_repeated(
    store: ConversationStore, owner: str
) -> None:
    ref = ConversationRef(owner, "claimed-" + owner[-12:])
    await store._claim_id(ref)  # the state a crash right after the claim leaves
    assert (await store.create(ref)).owner == owner


@pytest.mark.parametrize(
    "conversation_id", ["", "a/b", "..", "../x", "a b", "é", "x" * 65, "a.b", "a\n"]
)
def test_an_invalid_conversation_id_is_an_invalid_key(conversation_id: str) -> None:
    with pytest.raises(InvalidKey):
        ConversationRef("owner", conversation_id)


def test_an_empty_owner_is_an_invalid_key() -> None:
    with pytest.raises(InvalidKey):
        ConversationRef("", "chat")


@pytest.mark.parametrize(
    "owner", ["alice", "Alice", "a/b/../c", "user@example.com", "ünïcode ∆", "x" * 500]
)
def test_any_owner_maps_to_a_short_safe_key(owner: str) -> None:
    key = paths.owner_key(owner)
    assert len(key) == 32
    assert key.isalnum()
    assert key == paths.owner_key(owner)


def test_different_owners_get_different_keys() -> None:
    owners = ["alice", "Alice", "alice ", "a/b", "a%2Fb"]
    assert len({paths.owner_key(owner) for owner in owners}) == len(owners)


def test_meta_round_trips_through_a_dict() -> None:
    meta = ConversationMeta("c", "o", "2026-01-01T00:00:00+00:00", 3, "run-9", '"0x1"')
    assert ConversationMeta.from_dict(meta.to_dict()) == meta
    assert "etag" not in meta.to_dict()


async def test_begin_turn_counts_turns_and_marks_the_run_active(
    store: ConversationStore, ref: ConversationRef
) -> None:
    assert await store.begin_turn(ref, "run-1") == 1
    assert (await store.get_meta(ref)).active_run_id == "run-1"
    await store.end_turn(ref, "run-1")
    assert await store.begin_turn(ref, "run-2") == 2
    meta = await store.get_meta(ref)
    assert (meta.turn_count, meta.active_run_id) == (2, "run-2")


async def test_begin_turn_while_another_run_is_active_is_a_conflict(
    store: ConversationStore, ref: ConversationRef
) -> None:
    await store.begin_turn(ref, "run-1")
    with pytest.raises(TurnInProgress, match="already running"):
        await store.begin_turn(ref, "run-2")
    assert (await store.get_meta(ref)).active_run_id == "run-1"


async def test_begin_turn_is_idempotent_for_the_same_run(
    store: ConversationStore, other_store: ConversationStore, ref: ConversationRef
) -> None:
    assert await store.begin_turn(ref, "run-1") == 1
    assert await store.begin_turn(ref, "run-1") == 1
    assert await other_store.begin_turn(ref, "run-1") == 1
    assert (await store.get_meta(ref)).turn_count == 1


async def test_end_turn_frees_the_conversation_and_is_idempotent(
    store: ConversationStore, ref: ConversationRef
) -> None:
    await store.begin_turn(ref, "run-1")
    await store.end_turn(ref, "run-1")
    await store.end_turn(ref, "run-1")
    meta = await store.get_meta(ref)
    assert (meta.turn_count, meta.active_run_id) == (1, None)


async def test_end_turn_of_another_run_leaves_the_active_run_alone(
    store: ConversationStore, ref: ConversationRef
) -> None:
    await store.begin_turn(ref, "run-1")
    await store.end_turn(ref, "run-stale")
    assert (await store.get_meta(ref)).active_run_id == "run-1"


async def test_only_one_of_many_concurrent_begin_turns_wins(
    container: ContainerClient, ref: ConversationRef
) -> None:
    # Ten stores: ten independent writers, as if on ten Functions instances.
    stores = [ConversationStore(container) for _ in range(10)]
    runs = [f"run-{uuid.uuid4().hex}" for _ in stores]

    outcomes = await asyncio.gather(
        *(s.begin_turn(ref, run) for s, run in zip(stores, runs, strict=True)),
        return_exceptions=True,
    )

    winners = [run for run, outcome in zip(runs, outcomes, strict=True) if outcome == 1]
    assert len(winners) == 1
    assert all(isinstance(o, TurnInProgress) for o in outcomes if o != 1)
    meta = await stores[0].get_meta(ref)
    assert (meta.turn_count, meta.active_run_id) == (1, winners[0])


async def test_concurrent_end_and_begin_leave_a_consistent_meta(
    container: ContainerClient, ref: ConversationRef
) -> None:
    first, second = ConversationStore(container), ConversationStore(container)
    await first.begin_turn(ref, "run-1")

    outcomes = await asyncio.gather(
        first.end_turn(ref, "run-1"), second.begin_turn(ref, "run-2"), return_exceptions=True
    )

    meta = await first.get_meta(ref)
    if outcomes[1] == 2:  # the end landed first, then the new turn began
        assert (meta.turn_count, meta.active_run_id) == (2, "run-2")
    else:  # the begin saw run-1 still active
        assert isinstance(outcomes[1], TurnInProgress)
        assert (meta.turn_count, meta.active_run_id) == (1, None)


async def test_a_store_whose_copy_of_the_meta_is_stale_still_counts_turns_right(
    store: ConversationStore, other_store: ConversationStore, ref: ConversationRef
) -> None:
    # `store` created the conversation and remembers its meta; another process moves on.
    await other_store.begin_turn(ref, "run-1")
    await other_store.end_turn(ref, "run-1")
    assert await store.begin_turn(ref, "run-2") == 2
    assert (await other_store.get_meta(ref)).active_run_id == "run-2"


async def test_a_stale_copy_of_the_meta_never_lets_a_second_run_in(
    store: ConversationStore, other_store: ConversationStore, ref: ConversationRef
) -> None:
    await other_store.begin_turn(ref, "run-1")
    with pytest.raises(TurnInProgress, match="already running"):
        await store.begin_turn(ref, "run-2")


async def test_a_stale_copy_saying_a_run_is_active_is_checked_before_it_is_believed(
    store: ConversationStore, other_store: ConversationStore, ref: ConversationRef
) -> None:
    await store.begin_turn(ref, "run-1")
    await other_store.end_turn(ref, "run-1")
    await other_store.begin_turn(ref, "run-2")
    with pytest.raises(TurnInProgress, match="already running"):
        await store.begin_turn(ref, "run-1")  # not "turn 1 again": run-1 ended
    await store.end_turn(ref, "run-1")  # a no-op: run-2 stays active
    meta = await other_store.get_meta(ref)
    assert (meta.turn_count, meta.active_run_id) == (2, "run-2")


async def test_a_meta_keeps_keys_a_newer_writer_added_when_a_turn_rewrites_it(
    store: ConversationStore, other_store: ConversationStore, owner: str, container: ContainerClient
) -> None:
    ref = ConversationRef(owner, uuid.uuid4().hex)
    await store.create(ref)
    name = paths.meta_name(ref)
    newer = {**(await store.get_meta(ref)).to_dict(), "title": "plants"}
    await container.upload_blob(name, json.dumps(newer).encode(), overwrite=True)

    await other_store.begin_turn(ref, "run-1")

    stored = json.loads(await (await container.download_blob(name)).readall())
    assert stored.pop("last_active_at") >= newer.pop("last_active_at")  # the turn stamps it
    assert stored == {**newer, "turn_count": 1, "active_run_id": "run-1"}
