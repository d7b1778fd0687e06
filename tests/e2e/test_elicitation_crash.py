"""SIGKILL the local host while a tool's question waits for a person: what is durable and what is
not. The question and any answer are Blob records, but the server's pending request lived on the
killed host's session. Durable runs the tool call's activity again, and the call follows the rules
for a call cut off mid-way: `greet_asking` is read-only, so it is sent again, and the server asks
again, as a new question; the old one can no longer be answered.

The host runs as a child process (`python -m local_host`); the model server, the MCP server and
Azurite run here, so they survive the kill.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from devkit.azurite import AzuriteInstance
from devkit.mcp_servers import AsgiServer
from local_host.testing import HostProcess, wait_until
from tests.e2e.test_crash_recovery import Client, host_env
from tests.support.helper_mcp import helper_http_app

ROOT = Path(__file__).resolve().parents[2]
ASK = '/tool asking__greet_asking {"greeting": "Hello"}'


@pytest.fixture(scope="module")
def asking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    sandbox = tmp_path_factory.mktemp("asking-crash")
    with AsgiServer(lambda: helper_http_app(sandbox_dir=sandbox)) as server:
        yield server


@pytest_asyncio.fixture
async def client(
    azurite: AzuriteInstance, model: Any, asking_server: AsgiServer, tmp_path: Path
) -> AsyncIterator[Client]:
    env = host_env(azurite, model, asking_server.url())
    entry = {
        "name": "asking",
        "transport": {"type": "streamable_http", "url": asking_server.url()},
        "tools": {"allow": ["greet_asking"]},
    }
    env["MCP_SERVERS"] = json.dumps({"mcp_servers": [entry]})
    async with (
        HostProcess(ROOT, state_path=tmp_path / "durable.sqlite3", env=env) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host)


async def question_other_than(client: Client, run_id: str, earlier: str | None) -> str:
    async def asked() -> str | None:
        _, view = await client.call("GET", f"/runs/{run_id}")
        pending = view.get("pending_input") if view["status"] == "waiting_for_input" else None
        return pending["question_id"] if pending and pending["question_id"] != earlier else None

    return await wait_until(asked, within=60, message=f"run {run_id} asks a new question")


async def test_a_question_cut_off_by_a_kill_is_asked_again_and_the_old_one_is_closed(
    client: Client,
):
    conversation, run_id = await client.start_turn(ASK)
    first = await question_other_than(client, run_id, None)
    client.host.kill()
    await client.host.wait_exit()
    await client.host.start()

    # The activity ran again; the read-only call was sent again, and the server asked again.
    second = await question_other_than(client, run_id, first)
    status, problem = await client.call(
        "POST", f"/runs/{run_id}/input", json={"action": "decline", "question_id": first}
    )
    assert status == 409 and first in problem["detail"], problem
    answer = {"action": "accept", "content": {"name": "Ada"}, "question_id": second}
    status, body = await client.call("POST", f"/runs/{run_id}/input", json=answer)
    assert status == 202, body
    assert (await client.finished(run_id, within=60))["status"] == "completed"
    [result] = [m for m in await client.transcript(conversation) if m[0] == "tool"]
    assert result[1] == "Hello, Ada! Your colour is red."
