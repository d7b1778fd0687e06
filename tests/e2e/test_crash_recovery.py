"""SIGKILL the local host mid-turn, restart it on the same state: the turn completes with the
same transcript as a run without the crash, and no completed tool call runs twice. A call cut off
by the kill is sent again only when that is safe (a read-only tool, a server declared
`idempotent_calls`); otherwise a person decides, and the servers count every execution.

The host runs as a child process (`python -m local_host`); the model server, the MCP server and
Azurite run here, so they survive the kill and can count what they saw.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import pytest_asyncio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations

from agent.loop import OUTCOME_UNKNOWN
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import TEST_DEPLOYMENT, FakeOpenAI, fake_openai
from devkit.mcp_servers import AsgiServer
from devkit.scheduler import WEBHOOK_SECRET
from local_host.testing import HostProcess, wait_until
from offline_model.brains import OfflineBrain, ScriptedBrain
from tests.e2e.test_scheduling import due, signed

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "cancelled", "content_filtered", "budget_exceeded"}
# `idem` is the ledger again, declared to honour idempotency keys (it does not: it counts).
MESSAGE = '/tool ledger__record {"key": "fast"}\n/tool idem__hold {"key": "slow"}'


class Ledger:
    """An MCP server that counts executions per idempotency key, without deduplicating: each
    call acts. `hold` and `look` (read-only) block until released while `hold_enabled`."""

    def __init__(self) -> None:
        self.executions: Counter[str] = Counter()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.hold_enabled = False

    def app(self) -> Any:
        server = MCPServer("ledger")

        def count(ctx: Context) -> int:
            key = (ctx.request_context.meta or {}).get("idempotency_key", "none")
            first = key not in self.executions
            self.executions[key] += 1
            return 1 if first else 0

        @server.tool()
        def record(key: str, ctx: Context) -> str:
            """Record an event."""
            count(ctx)
            return f"recorded {key}"

        async def slowly() -> None:
            if self.hold_enabled:
                self.holding.set()
                await anyio.to_thread.run_sync(self.release.wait, 30)

        @server.tool()
        async def hold(key: str, ctx: Context) -> str:
            """Record an event, slowly."""
            await slowly()
            count(ctx)
            return f"held {key}"

        @server.tool(annotations=ToolAnnotations(read_only_hint=True))
        async def look(key: str, ctx: Context) -> str:
            """Look an event up, slowly (changes nothing)."""
            await slowly()
            count(ctx)
            return f"looked {key} up"

        return server.streamable_http_app()


@pytest.fixture(scope="module")
def ledger() -> Iterator[tuple[Ledger, AsgiServer]]:
    ledger = Ledger()
    with AsgiServer(ledger.app) as server:
        yield ledger, server


@pytest_asyncio.fixture(scope="module")
async def model() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(ScriptedBrain(fallback=OfflineBrain())) as fake:
        yield fake


def host_env(azurite: AzuriteInstance, model: FakeOpenAI, mcp_url: str) -> dict[str, str]:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    env = dict.fromkeys(example, "")  # a developer's local.settings.json must not leak in
    env.update(
        FUNCTIONS_WORKER_RUNTIME="python",
        AzureWebJobsStorage=azurite.connection_string,
        CONVERSATIONS_STORAGE=azurite.connection_string,
        CONVERSATIONS_CONTAINER=f"crash-{uuid.uuid4().hex[:12]}",
        AZURE_OPENAI_ENDPOINT=model.base_url,
        AZURE_OPENAI_DEPLOYMENT=TEST_DEPLOYMENT,
        AZURE_OPENAI_API_KEY=model.api_key or "",
        SCHEDULER_WEBHOOK_SECRET=WEBHOOK_SECRET,
        BATCH_MAX_CONCURRENCY="3",
        MCP_SERVERS=json.dumps(
            {
                "mcp_servers": [
                    {"name": "ledger", "transport": {"type": "streamable_http", "url": mcp_url}},
                    {
                        "name": "idem",
                        "transport": {"type": "streamable_http", "url": mcp_url},
                        "idempotent_calls": True,
                    },
                ]
            }
        ),
    )
    return env


class Client:
    def __init__(self, http: aiohttp.ClientSession, host: HostProcess) -> None:
        self.http, self.host = http, host

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.host.base_url}/api{path}", **kwargs) as r:
            return r.status, await r.json(content_type=None)

    async def start_turn(self, content: str) -> tuple[str, str]:
        _, created = await self.call("POST", "/conversations")
        status, body = await self.call(
            "POST", f"/conversations/{created['id']}/messages", json={"content": content}
        )
        assert status == 202, body
        return created["id"], body["run_id"]

    async def finished(self, run_id: str, within: float = 30) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            status, body = await self.call("GET", f"/runs/{run_id}")
            return body if status == 200 and body["status"] in TERMINAL else None

        return await wait_until(done, within=within, message=f"run {run_id} finished")

    async def transcript(self, conversation: str) -> list[tuple[Any, ...]]:
        """What the conversation says, without ids and times (which differ between runs)."""
        _, body = await self.call("GET", f"/conversations/{conversation}")
        return [
            (m["role"], m["content"], tuple(c["name"] for c in m.get("tool_calls", ())))
            for m in body["messages"]
        ]


@pytest_asyncio.fixture
async def client(
    azurite: AzuriteInstance, model: FakeOpenAI, ledger, tmp_path: Path
) -> AsyncIterator[Client]:
    _, server = ledger
    env = host_env(azurite, model, server.url())
    async with (
        HostProcess(ROOT, state_path=tmp_path / "durable.sqlite3", env=env) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host)


async def reference_transcript(client: Client, message: str = MESSAGE) -> list[tuple[Any, ...]]:
    conversation, run_id = await client.start_turn(message)
    assert (await client.finished(run_id))["status"] == "completed"
    return await client.transcript(conversation)


async def kill_during_the_slow_call(client: Client, state: Ledger, message: str):
    """Start a turn, SIGKILL the host while its slow call runs (after the fast one completed),
    let the cut-off call finish on the server, restart the host: (conversation, run id)."""
    state.hold_enabled, state.holding, state.release = True, threading.Event(), threading.Event()
    conversation, run_id = await client.start_turn(message)
    await wait_until(state.holding.is_set, within=20, message="the slow tool call started")

    async def fast_call_stored() -> bool:
        return any("recorded fast" in str(m[1]) for m in await client.transcript(conversation))

    await wait_until(fast_call_stored, within=20, message="the fast tool call completed")
    client.host.kill()
    await client.host.wait_exit()
    state.release.set()  # the in-flight call finishes on the server after its caller died
    state.hold_enabled = False
    await client.host.start()
    return conversation, run_id


def executions_of(state: Ledger, run_id: str) -> list[int]:
    """How many times each of the run's calls acted on the server (fast call first)."""
    keys = sorted(k for k in state.executions if k.startswith(f"{run_id}:"))
    return [state.executions[k] for k in keys]


@pytest.mark.parametrize("slow_call", ["idem__hold", "ledger__look"])
async def test_a_call_cut_off_by_a_kill_is_sent_again_when_safe_and_no_completed_call_twice(
    client: Client, ledger, slow_call: str
):
    state, _ = ledger
    message = MESSAGE.replace("idem__hold", slow_call)
    expected = await reference_transcript(client, message)
    conversation, run_id = await kill_during_the_slow_call(client, state, message)

    assert (await client.finished(run_id))["status"] == "completed"
    assert await client.transcript(conversation) == expected
    # One idempotency key per tool call, stable across the restart. The fast call completed
    # before the kill and was not called again. The slow one was cut off: its server honours
    # the key (idem) or the tool is read-only (look), so it was sent again, with the same key.
    assert sorted(executions_of(state, run_id)) == [1, 2]


async def waiting_for_a_person(client: Client, run_id: str) -> dict[str, Any]:
    async def asked() -> dict[str, Any] | None:
        _, view = await client.call("GET", f"/runs/{run_id}")
        return view if view["status"] == "waiting_for_approval" else None

    return await wait_until(asked, within=30, message=f"run {run_id} waits for approval")


@pytest.mark.parametrize(("approved", "slow_runs"), [(False, 1), (True, 2)])
async def test_a_cut_off_call_not_safe_to_repeat_is_sent_again_only_if_a_person_approves(
    client: Client, ledger, approved: bool, slow_runs: int
):
    state, _ = ledger
    message = MESSAGE.replace("idem__hold", "ledger__hold")  # a plain server: not safe
    conversation, run_id = await kill_during_the_slow_call(client, state, message)

    view = await waiting_for_a_person(client, run_id)
    [call_id] = view["pending_approvals"]
    assert view["interrupted_calls"] == [call_id]
    assert executions_of(state, run_id) == [1, 1]  # nothing sent again while it waits
    status, _ = await client.call(
        "POST",
        f"/runs/{run_id}/approvals",
        json={"tool_call_id": call_id, "approved": approved},
    )
    assert status == 202
    assert (await client.finished(run_id))["status"] == "completed"
    assert sorted(executions_of(state, run_id)) == [1, slow_runs]
    slow_result = [m[1] for m in await client.transcript(conversation) if m[0] == "tool"][-1]
    if approved:
        assert slow_result == "held slow"
    else:  # the model is told the outcome is unknown and that it was not repeated
        assert slow_result.startswith(OUTCOME_UNKNOWN)


async def test_a_host_killed_during_a_model_call_resumes_with_the_same_transcript(
    client: Client, model: FakeOpenAI, ledger
):
    expected = await reference_transcript(client)
    arrived = len(model.requests)
    model.brain.delay(60)  # the first model call of the next turn hangs
    conversation, run_id = await client.start_turn(MESSAGE)
    await model.server.wait_for_requests(arrived + 1)
    client.host.kill()
    await client.host.wait_exit()
    model.server.release_delays()

    await client.host.start()
    assert (await client.finished(run_id))["status"] == "completed"
    assert await client.transcript(conversation) == expected


async def test_a_host_killed_mid_batch_resumes_and_runs_every_item_exactly_once(
    client: Client, model: FakeOpenAI
):
    conversations = [(await client.call("POST", "/conversations"))[1]["id"] for _ in range(9)]
    arrived = len(model.requests)
    model.brain.delay(60)  # one lane's model call hangs; the other lanes go on
    headers, body = signed(due(*((c, f"item {i}") for i, c in enumerate(conversations))))
    status, accepted = await client.call("POST", "/scheduler/callback", data=body, headers=headers)
    assert status == 202, accepted
    await model.server.wait_for_requests(arrived + 5, within_seconds=20)
    client.host.kill()  # items done, one hanging, others between their steps
    await client.host.wait_exit()
    model.server.release_delays()

    await client.host.start()

    async def settled() -> dict[str, Any] | None:
        _, view = await client.call("GET", f"/batches/{accepted['batch_id']}")
        return view if view["counts"].get("completed") == 9 else None

    await wait_until(settled, within=60, message="every item of the batch completed")
    for i, conversation in enumerate(conversations):
        roles = [(m[0], m[1]) for m in await client.transcript(conversation)]
        assert [r for r in roles if r[0] == "user"] == [("user", f"item {i}")]
        assert [r[0] for r in roles] == ["user", "assistant"]  # one answer, none twice
