"""Deleting a conversation from the store, and finding idle ones (retention), against Azurite."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob.aio import ContainerClient

from devkit.azurite import AzuriteInstance
from storage import paths
from storage.blob import container_client, ensure_container
from storage.conversations import DELETING, ConversationStore
from storage.errors import RecordNotFound, TurnInProgress
from storage.models import ConversationRef

from .messages import message

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def names_under(container: ContainerClient, prefix: str) -> list[str]:
    return [blob.name async for blob in container.list_blobs(name_starts_with=prefix)]


async def filled(store: ConversationStore, ref: ConversationRef) -> None:
    """A finished turn with a tool output: meta, transcript, a tool-call record, an output."""
    await store.begin_turn(ref, "run-1")
    await store.append(ref, message(run_id="run-1"))
    await store.put_tool_output(ref, "run-1", "call-1", b"output", "text/plain")
    await store.end_turn(ref, "run-1")


async def test_deleting_removes_every_blob_of_the_conversation_and_its_id_claim(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
):
    await filled(store, ref)
    assert len(await names_under(container, paths.conversation_prefix(ref))) >= 3
    assert await store.lock_for_deletion(ref) is not None
    assert await store.delete(ref) is True
    assert await names_under(container, paths.conversation_prefix(ref)) == []
    assert await names_under(container, paths.conversation_index_name(ref.conversation_id)) == []
    with pytest.raises(RecordNotFound):
        await store.get_meta(ref)


async def test_deleting_twice_is_harmless_and_says_nothing_was_left(
    store: ConversationStore, ref: ConversationRef
):
    await store.delete(ref)
    assert await store.lock_for_deletion(ref) is None
    assert await store.delete(ref) is False


async def test_another_owners_deletion_of_the_same_id_removes_nothing(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
):
    await filled(store, ref)
    before = await names_under(container, paths.conversation_prefix(ref))
    intruder = ConversationRef("someone-else", ref.conversation_id)
    assert await store.lock_for_deletion(intruder) is None
    assert await store.delete(intruder) is False
    assert await names_under(container, paths.conversation_prefix(ref)) == before
    assert await store.owner_of(ref.conversation_id) == ref.owner


async def test_a_conversation_is_not_locked_for_deletion_while_a_turn_runs(
    store: ConversationStore, ref: ConversationRef
):
    await store.begin_turn(ref, "run-1")
    with pytest.raises(TurnInProgress, match="run-1"):
        await store.lock_for_deletion(ref)


async def test_no_turn_begins_in_a_conversation_being_deleted(
    store: ConversationStore, other_store: ConversationStore, ref: ConversationRef
):
    await store.lock_for_deletion(ref)
    with pytest.raises(TurnInProgress):
        await other_store.begin_turn(ref, "run-2")
    assert (await store.get_meta(ref)).active_run_id == DELETING
    assert await store.lock_for_deletion(ref) is not None  # an interrupted deletion goes on


async def test_the_run_ids_are_those_of_its_turns(store: ConversationStore, ref: ConversationRef):
    await store.append(ref, message(run_id="run-a", turn=1))
    await store.append(ref, message(run_id="run-b", turn=2))
    assert await store.run_ids(ref) == {"run-a", "run-b"}


async def test_a_turn_beginning_or_ending_stamps_last_activity_with_the_stores_clock(
    container: ContainerClient, owner: str
):
    clock = Clock(T0)
    store = ConversationStore(container, clock=clock)
    ref = ConversationRef(owner, uuid.uuid4().hex)
    await store.create(ref)
    assert (await store.get_meta(ref)).last_active_at == T0.isoformat()
    clock.now = T0 + timedelta(days=1)
    await store.begin_turn(ref, "run-1")
    assert (await store.get_meta(ref)).last_active_at == clock.now.isoformat()
    clock.now = T0 + timedelta(days=2)
    await store.end_turn(ref, "run-1")
    assert (await store.get_meta(ref)).last_active_at == clock.now.isoformat()


@pytest.fixture
async def own_container(azurite: AzuriteInstance) -> AsyncIterator[ContainerClient]:
    """A container of this test's own: idleness is judged over every conversation in it."""
    client = container_client(azurite.connection_string, f"idle-{uuid.uuid4().hex[:12]}")
    async with client:
        await ensure_container(client)
        yield client
        await client.delete_container()


async def test_idle_conversations_are_those_whose_last_activity_is_before_the_cutoff(
    own_container: ContainerClient,
):
    clock = Clock(T0)
    store = ConversationStore(own_container, clock=clock)
    old, recent, revived = (ConversationRef("owner", uuid.uuid4().hex) for _ in range(3))
    await store.create(old)
    await store.create(revived)
    clock.now = T0 + timedelta(days=20)
    await store.begin_turn(revived, "run-1")
    await store.create(recent)
    assert await store.idle_conversations(before=T0 + timedelta(days=10)) == [old]
    assert set(await store.idle_conversations(before=T0 + timedelta(days=21))) == {
        old,
        recent,
        revived,
    }


async def test_a_meta_without_last_activity_is_judged_by_when_its_blob_was_written(
    own_container: ContainerClient,
):
    store = ConversationStore(own_container)
    ref = ConversationRef("owner", uuid.uuid4().hex)
    await store.create(ref)
    meta = await store.get_meta(ref)
    legacy = {k: v for k, v in meta.to_dict().items() if k != "last_active_at"}
    await own_container.upload_blob(paths.meta_name(ref), json.dumps(legacy), overwrite=True)
    now = datetime.now(UTC)
    assert await store.idle_conversations(before=now - timedelta(hours=1)) == []
    assert await store.idle_conversations(before=now + timedelta(hours=1)) == [ref]
