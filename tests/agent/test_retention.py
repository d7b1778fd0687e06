"""Retention purges only what is old: conversations idle longer than the retention (by the
store's clock, set by the test) and finished Durable instances created before the cutoff."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy
from azure.storage.blob.aio import ContainerClient

from agent.retention import RetentionIncomplete, purge_expired
from devkit.azurite import AzuriteInstance
from local_host.engine import InstanceQuery
from local_host.history import TERMINAL_STATUSES
from local_host.host import LocalHost
from storage import paths
from storage.blob import container_client, ensure_container
from storage.conversations import META_READ_CONCURRENCY, ConversationStore
from storage.errors import RecordNotFound, StoreContention
from storage.models import ConversationRef
from tests.storage.messages import message

DURABLE_APP = Path(__file__).resolve().parents[1] / "local_host" / "apps" / "durable_app"
RETENTION = timedelta(days=30)
# How long a meta read waits for the others to be under way: only a pass that reads one meta at a
# time ever waits it out (once: the gate then stays open).
GATE_SECONDS = 5.0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def container(azurite: AzuriteInstance) -> AsyncIterator[ContainerClient]:
    """This test's own container: retention judges every conversation in it."""
    client = container_client(azurite.connection_string, f"retention-{uuid.uuid4().hex[:12]}")
    async with client:
        await ensure_container(client)
        yield client
        await client.delete_container()


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[LocalHost]:
    async with LocalHost(DURABLE_APP, port=0, state_path=tmp_path / "state.sqlite3") as running:
        yield running


@pytest.fixture
def client(host: LocalHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_binding())


async def conversation_with_a_run(
    store: ConversationStore, host: LocalHost, client: df.DurableOrchestrationClient
) -> tuple[ConversationRef, str]:
    ref, run_id = ConversationRef("owner", uuid.uuid4().hex), uuid.uuid4().hex
    await store.create(ref)
    await store.begin_turn(ref, run_id)
    await store.append(ref, message(run_id=run_id, role="user"))
    await client.start_new("sequence", run_id, ["Oslo"])
    await host.runtime.wait_for_status(run_id, TERMINAL_STATUSES, within=10)
    await store.end_turn(ref, run_id)
    return ref, run_id


def instance_ids(host: LocalHost) -> set[str]:
    return {record.instance_id for record in host.runtime.query_instances(InstanceQuery())}


async def exists(store: ConversationStore, ref: ConversationRef) -> bool:
    try:
        await store.get_meta(ref)
    except RecordNotFound:
        return False
    return True


async def test_retention_deletes_only_conversations_idle_longer_than_it(
    container: ContainerClient, host: LocalHost, client
):
    now = datetime.now(UTC)
    clock = Clock(now - RETENTION - timedelta(days=1))
    store = ConversationStore(container, clock=clock)
    old, old_run = await conversation_with_a_run(store, host, client)
    clock.now = now - RETENTION + timedelta(days=1)
    recent, recent_run = await conversation_with_a_run(store, host, client)

    outcome = await purge_expired(store, client, now=now, retention=RETENTION)

    assert (await exists(store, old), await exists(store, recent)) == (False, True)
    assert old_run not in instance_ids(host)  # deleted with its conversation
    assert recent_run in instance_ids(host)  # created just now: younger than the cutoff
    assert (outcome.conversations_deleted, outcome.conversations_busy) == (1, 0)


async def test_retention_purges_finished_instances_created_before_the_cutoff_only(
    container: ContainerClient, host: LocalHost, client
):
    finished_old = await client.start_new("sequence", None, ["Oslo"])
    running_old = await client.start_new("approval", None, None)  # waits for an event
    await host.runtime.wait_for_status(finished_old, TERMINAL_STATUSES, within=10)
    cutoff = datetime.now(UTC)
    finished_new = await client.start_new("sequence", None, ["Oslo"])
    await host.runtime.wait_for_status(finished_new, TERMINAL_STATUSES, within=10)

    store = ConversationStore(container)
    outcome = await purge_expired(store, client, now=cutoff + RETENTION, retention=RETENTION)

    assert instance_ids(host) == {running_old, finished_new}
    assert outcome.instances_purged == 1


async def test_retention_leaves_an_idle_conversation_whose_turn_is_still_running(
    container: ContainerClient, host: LocalHost, client
):
    now = datetime.now(UTC)
    store = ConversationStore(container, clock=Clock(now - RETENTION - timedelta(days=1)))
    ref, live = ConversationRef("owner", uuid.uuid4().hex), uuid.uuid4().hex
    await store.create(ref)
    await store.begin_turn(ref, live)
    await client.start_new("approval", live, None)

    outcome = await purge_expired(store, client, now=now, retention=RETENTION)

    assert await exists(store, ref)
    assert live in instance_ids(host)
    assert (outcome.conversations_deleted, outcome.conversations_busy) == (0, 1)


class StoreFailingFor(ConversationStore):
    """The real store, except that deleting one conversation fails (as a store error would)."""

    def __init__(self, container: ContainerClient, failing: set[str], **kwargs: Any) -> None:
        super().__init__(container, **kwargs)
        self.failing = failing

    async def delete(self, ref: ConversationRef) -> bool:
        if ref.conversation_id in self.failing:
            raise StoreContention(f"could not delete {ref.conversation_id}")
        return await super().delete(ref)


async def test_one_conversation_that_cannot_be_deleted_does_not_stop_the_rest_of_the_pass(
    container: ContainerClient, host: LocalHost, client, caplog: pytest.LogCaptureFixture
):
    now = datetime.now(UTC)
    store = StoreFailingFor(container, set(), clock=Clock(now - RETENTION - timedelta(days=1)))
    stuck, _ = await conversation_with_a_run(store, host, client)
    gone, _ = await conversation_with_a_run(store, host, client)
    store.failing.add(stuck.conversation_id)
    finished_old = await client.start_new("sequence", None, ["Oslo"])
    await host.runtime.wait_for_status(finished_old, TERMINAL_STATUSES, within=10)

    with pytest.raises(RetentionIncomplete, match="1 conversations"):
        await purge_expired(store, client, now=datetime.now(UTC) + RETENTION, retention=RETENTION)

    assert (await exists(store, stuck), await exists(store, gone)) == (True, False)
    assert finished_old not in instance_ids(host)  # the instance purge still ran
    assert stuck.conversation_id in caplog.text


class MetaReadsInFlight(AsyncHTTPPolicy[Any, Any]):
    """Counts the meta reads under way at once, on the Blob client's pipeline. Each waits,
    bounded, until `expected` are under way, so reads made one by one count 1 however fast the
    emulator answers, and reads made `expected` at a time count `expected`."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.in_flight = self.most = self.reads = 0
        self._all_under_way = asyncio.Event()

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        if http.method != "GET" or not http.url.split("?")[0].endswith(paths.META_SUFFIX):
            return await self.next.send(request)
        self.reads += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.expected:
            self._all_under_way.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_under_way.wait(), GATE_SECONDS)
            self._all_under_way.set()  # waited out: the reads are not concurrent, stop holding
            return await self.next.send(request)
        finally:
            self.in_flight -= 1


async def test_retention_reads_the_metas_several_at_a_time_and_deletes_the_same_conversations(
    azurite: AzuriteInstance, container: ContainerClient, host: LocalHost, client
):
    now = datetime.now(UTC)
    clock = Clock(now - RETENTION - timedelta(days=1))
    store = ConversationStore(container, clock=clock)
    old = [ConversationRef("owner", uuid.uuid4().hex) for _ in range(META_READ_CONCURRENCY)]
    recent = [ConversationRef("owner", uuid.uuid4().hex) for _ in range(4)]
    for ref in old:
        await store.create(ref)
    clock.now = now - RETENTION + timedelta(days=1)
    for ref in recent:
        await store.create(ref)
    reads = MetaReadsInFlight(expected=META_READ_CONCURRENCY)
    counted = container_client(
        azurite.connection_string, container.container_name, request_policies=[reads]
    )
    async with counted:
        watched = ConversationStore(counted)
        in_listing_order = sorted(old, key=paths.meta_name)
        assert await watched.idle_conversations(before=now - RETENTION) == in_listing_order
        assert reads.most == META_READ_CONCURRENCY  # overlapping, and no more than the bound
        outcome = await purge_expired(watched, client, now=now, retention=RETENTION)

    assert [await exists(store, ref) for ref in old] == [False] * len(old)
    assert [await exists(store, ref) for ref in recent] == [True] * len(recent)
    assert (outcome.conversations_deleted, outcome.conversations_busy) == (len(old), 0)
