"""Fixtures shared by the agent's tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio

from agent.contracts import RunRef
from agent.runtime import Runtime, build_runtime
from agent.settings import Settings
from agent.transcript import user_message
from agent.turn_lock import open_turn
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import TEST_DEPLOYMENT, FakeOpenAI, fake_openai
from devkit.mcp_servers import AsgiServer
from storage.conversations import ConversationRef
from tests.support.helper_mcp import helper_http_app


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    """The helper MCP server (demo tools + test helpers) over streamable HTTP, a module's own."""
    sandbox = tmp_path_factory.mktemp("sandbox")
    with AsgiServer(lambda: helper_http_app(sandbox_dir=sandbox)) as server:
        yield server


def helper_only(helper: AsgiServer) -> str:
    """MCP_SERVERS text naming the helper server alone, as `helper`."""
    transport = {"type": "streamable_http", "url": helper.url()}
    return json.dumps({"mcp_servers": [{"name": "helper", "transport": transport}]})


@pytest_asyncio.fixture(scope="module")
async def model() -> AsyncIterator[FakeOpenAI]:
    """The model server in Azure OpenAI's REST shape, scripted per test, a module's own."""
    async with fake_openai() as fake:
        yield fake


def app_settings(
    azurite: AzuriteInstance,
    model: FakeOpenAI,
    container: str,
    mcp_servers: str,
    **more_settings: str,
) -> Settings:
    """The app's settings on Azurite (in `container`), the fake model and these MCP servers
    (MCP_SERVERS text), with any further settings."""
    return Settings.from_env(
        {
            "CONVERSATIONS_STORAGE": azurite.connection_string,
            "CONVERSATIONS_CONTAINER": container,
            "AZURE_OPENAI_ENDPOINT": model.base_url,
            "AZURE_OPENAI_DEPLOYMENT": TEST_DEPLOYMENT,
            "AZURE_OPENAI_API_KEY": model.api_key or "",
            "MCP_SERVERS": mcp_servers,
            **more_settings,
        }
    )


@asynccontextmanager
async def runtime_on(
    azurite: AzuriteInstance,
    model: FakeOpenAI,
    container: str,
    mcp_servers: str,
    **more_settings: str,
) -> AsyncIterator[Runtime]:
    """The app's runtime on `app_settings`; closed on leaving."""
    runtime = await build_runtime(
        app_settings(azurite, model, container, mcp_servers, **more_settings)
    )
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def start_turn(rt: Runtime, ref: ConversationRef, content: str = "hello") -> RunRef:
    """A turn of the conversation begun as the app begins one: locked, its message stored."""
    run_id = uuid.uuid4().hex
    turn = await rt.store.begin_turn(ref, run_id)
    await open_turn(rt, ref, user_message(run_id, turn, content))  # and the run's event log
    return RunRef(ref.owner, ref.conversation_id, run_id, turn)


async def new_run(rt: Runtime, owner: str, content: str = "hello") -> RunRef:
    """A new conversation of `owner` with its first turn begun."""
    ref = ConversationRef(owner, uuid.uuid4().hex)
    await rt.store.create(ref)
    return await start_turn(rt, ref, content)
