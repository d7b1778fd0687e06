"""An MCP server that went down and came back while its circuit was open: the run waits a durable
timer for the breaker's cooldown and then calls it, instead of telling the model it is unavailable.

The host runs as a child process (`python -m local_host`) with real durable timers; the MCP server
runs here on a fixed port, so the test can stop and restart it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI, fake_openai
from devkit.mcp_servers import (
    AsgiServer,
    demo_http_app,
    http_entry,
    mcp_servers_json,
    without_timestamp,
)
from local_host.testing import HostProcess, wait_until
from offline_model.brains import OfflineBrain, ScriptedBrain
from tests.e2e.test_crash_recovery import ROOT, Client, host_env

MESSAGE = '/tool flaky__greet {"name": "Ada"}'
COOLDOWN_SECONDS = 5  # longer than Durable's first retry interval (1 s): the retry lands inside


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    sandbox = tmp_path_factory.mktemp("sandbox")
    with AsgiServer(lambda: demo_http_app(sandbox_dir=sandbox)) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def model() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(ScriptedBrain(fallback=OfflineBrain())) as fake:
        yield fake


@pytest_asyncio.fixture
async def client(
    azurite: AzuriteInstance, model: FakeOpenAI, flaky: AsgiServer, tmp_path: Path
) -> AsyncIterator[Client]:
    env = host_env(azurite, model, flaky.url())
    breaker = {"failures": 1, "cooldown_seconds": COOLDOWN_SECONDS}
    env["MCP_SERVERS"] = mcp_servers_json(http_entry("flaky", flaky.url(), circuit_breaker=breaker))
    async with (
        HostProcess(ROOT, state_path=tmp_path / "durable.sqlite3", env=env) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host)


async def last_tool_result(client: Client, conversation: str) -> str:
    """The last tool result's text (a greeting, without its timestamp)."""
    return without_timestamp(
        [m[1] for m in await client.transcript(conversation) if m[0] == "tool"][-1]
    )


async def test_a_server_back_while_its_circuit_is_open_is_called_after_a_durable_wait(
    client: Client, flaky: AsgiServer
):
    conversation, run_id = await client.start_turn(MESSAGE)  # the host lists and calls it
    assert (await client.finished(run_id))["status"] == "completed"
    assert await last_tool_result(client, conversation) == "Hello, Ada!"

    await flaky.astop()  # the next call fails and opens the circuit (1 failure)
    _, run_id = await client.call(
        "POST", f"/conversations/{conversation}/messages", json={"content": MESSAGE}
    )
    run_id = run_id["run_id"]

    async def waiting_for_server() -> bool:
        _, view = await client.call("GET", f"/runs/{run_id}")
        return view.get("phase") == "waiting_for_server"

    await wait_until(waiting_for_server, within=20, message="the run waits out the cooldown")
    await flaky.astart()  # back, while the circuit is still open

    assert (await client.finished(run_id))["status"] == "completed"
    assert await last_tool_result(client, conversation) == "Hello, Ada!"
