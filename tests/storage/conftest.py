"""Storage fixtures: the session's Azurite (tests/conftest.py), a fresh owner per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from azure.storage.blob.aio import ContainerClient

from devkit.azurite import AzuriteInstance
from storage.blob import container_client, ensure_container
from storage.conversations import ConversationStore
from storage.models import ConversationRef

CONTAINER = "conversations-test"


@pytest.fixture(scope="session")
async def container(azurite: AzuriteInstance) -> AsyncIterator[ContainerClient]:
    client = container_client(azurite.connection_string, CONTAINER)
    async with client:
        await ensure_container(client)
        yield client


@pytest.fixture
def store(container: ContainerClient) -> ConversationStore:
    return ConversationStore(container)


@pytest.fixture
def other_store(container: ContainerClient) -> ConversationStore:
    """A second store on the same container: what another Functions instance would see."""
    return ConversationStore(container)


@pytest.fixture
def owner() -> str:
    return f"user-{uuid.uuid4()}"


@pytest.fixture
async def ref(store: ConversationStore, owner: str) -> ConversationRef:
    """A freshly created conversation owned by this test's owner."""
    conversation = ConversationRef(owner, uuid.uuid4().hex)
    await store.create(conversation)
    return conversation


@pytest.fixture
async def counted(
    azurite: AzuriteInstance, container: ContainerClient
) -> AsyncIterator[tuple[ContainerClient, list[str]]]:
    """A client of the `container` fixture's container that records the method of every HTTP
    request it sends."""
    requests: list[str] = []
    client = container_client(
        azurite.connection_string,
        CONTAINER,
        raw_request_hook=lambda request: requests.append(request.http_request.method),
    )
    async with client:
        yield client, requests
