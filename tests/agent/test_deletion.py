"""Deleting a conversation: no blob left in Azurite and no Durable instance of its runs left in
the local host's store; idempotent; refused while one of its turns runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import azure.durable_functions as df
import pytest
from azure.storage.blob.aio import ContainerClient

from agent.deletion import delete_conversation
from agent.errors import Conflict
from agent.turn_lock import begin_turn
from devkit.azurite import AzuriteInstance
from local_host.engine import InstanceQuery
from local_host.history import TERMINAL_STATUSES
from local_host.host import LocalHost
from storage import paths
from storage.blob import container_client, ensure_container
from storage.conversations import ConversationStore
from storage.errors import TurnInProgress
from storage.models import ConversationRef
from tests.storage.messages import message

DURABLE_APP = Path(__file__).resolve().parents[1] / "local_host" / "apps" / "durable_app"


@pytest.fixture(scope="module")
async def container(azurite: AzuriteInstance) -> AsyncIterator[ContainerClient]:
    client = container_client(azurite.connection_string, "deletion-test")
    async with client:
        await ensure_container(client)
        yield client


@pytest.fixture
def store(container: ContainerClient) -> ConversationStore:
    return ConversationStore(container)


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[LocalHost]:
    async with LocalHost(DURABLE_APP, port=0, state_path=tmp_path / "state.sqlite3") as running:
        yield running


@pytest.fixture
def client(host: LocalHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_binding())


async def new_conversation(store: ConversationStore, owner: str = "owner") -> ConversationRef:
    ref = ConversationRef(owner, uuid.uuid4().hex)
    await store.create(ref)
    return ref


async def finished_turn(
    store: ConversationStore,
    host: LocalHost,
    client: df.DurableOrchestrationClient,
    ref: ConversationRef,
    turn: int,
) -> str:
    """A turn as the app takes one: the lock, the user message, the run, a tool output."""
    run_id = uuid.uuid4().hex
    await store.begin_turn(ref, run_id)
    await store.append(ref, message(turn=turn, run_id=run_id, role="user"))
    await client.start_new("sequence", run_id, ["Oslo"])
    await host.runtime.wait_for_status(run_id, TERMINAL_STATUSES, within=10)
    await store.put_tool_output(ref, run_id, "call-1", b"output", "text/plain")
    await store.end_turn(ref, run_id)
    return run_id


async def blobs_of(container: ContainerClient, ref: ConversationRef) -> list[str]:
    prefixes = (paths.conversation_prefix(ref), paths.conversation_index_name(ref.conversation_id))
    return [
        blob.name
        for prefix in prefixes
        async for blob in container.list_blobs(name_starts_with=prefix)
    ]


def instance_ids(host: LocalHost) -> set[str]:
    return {record.instance_id for record in host.runtime.query_instances(InstanceQuery())}


async def test_deleting_a_conversation_leaves_no_blob_and_no_durable_instance_of_its_runs(
    store: ConversationStore, container: ContainerClient, host: LocalHost, client
):
    ref = await new_conversation(store)
    runs = {await finished_turn(store, host, client, ref, turn) for turn in (1, 2)}
    kept = await new_conversation(store)
    other_run = await finished_turn(store, host, client, kept, 1)
    assert runs | {other_run} <= instance_ids(host)

    assert await delete_conversation(store, client, ref) is True

    assert await blobs_of(container, ref) == []
    assert instance_ids(host) & runs == set()
    assert other_run in instance_ids(host)  # another conversation's run is untouched
    assert await blobs_of(container, kept) != []


async def test_deleting_twice_is_fine_and_the_second_finds_nothing(
    store: ConversationStore, host: LocalHost, client
):
    ref = await new_conversation(store)
    await finished_turn(store, host, client, ref, 1)
    assert await delete_conversation(store, client, ref) is True
    assert await delete_conversation(store, client, ref) is False


async def test_another_callers_deletion_removes_nothing(
    store: ConversationStore, container: ContainerClient, host: LocalHost, client
):
    ref = await new_conversation(store)
    run_id = await finished_turn(store, host, client, ref, 1)
    before = await blobs_of(container, ref)
    intruder = ConversationRef("someone-else", ref.conversation_id)
    assert await delete_conversation(store, client, intruder) is False
    assert await blobs_of(container, ref) == before
    assert run_id in instance_ids(host)


async def test_deletion_is_refused_while_a_turn_runs_and_nothing_is_removed(
    store: ConversationStore, container: ContainerClient, host: LocalHost, client
):
    ref = await new_conversation(store)
    await finished_turn(store, host, client, ref, 1)
    live = uuid.uuid4().hex
    await store.begin_turn(ref, live)
    await store.append(ref, message(turn=2, run_id=live, role="user"))
    await client.start_new("approval", live, None)  # waits for an event: a live run
    before = await blobs_of(container, ref)
    with pytest.raises(TurnInProgress, match=live):
        await delete_conversation(store, client, ref)
    assert await blobs_of(container, ref) == before
    assert live in instance_ids(host)
    assert (await store.get_meta(ref)).active_run_id == live  # the turn still holds its lock


async def test_a_lock_left_by_a_cancelled_run_does_not_block_deletion(
    store: ConversationStore, container: ContainerClient, host: LocalHost, client
):
    ref = await new_conversation(store)
    cancelled = uuid.uuid4().hex
    await store.begin_turn(ref, cancelled)
    await store.append(ref, message(run_id=cancelled, role="user"))
    await client.start_new("approval", cancelled, None)
    await client.terminate(cancelled, "cancelled by the caller")  # no finish_turn runs
    await host.runtime.wait_for_status(cancelled, TERMINAL_STATUSES, within=10)
    assert await delete_conversation(store, client, ref) is True
    assert await blobs_of(container, ref) == []
    assert cancelled not in instance_ids(host)


async def test_a_message_to_a_conversation_being_deleted_is_refused_saying_so(
    store: ConversationStore, client
):
    ref = await new_conversation(store)
    await store.lock_for_deletion(ref)  # a deletion under way (or interrupted: DELETE again)
    with pytest.raises(Conflict, match="being deleted"):
        await begin_turn(store, client, ref, uuid.uuid4().hex)
