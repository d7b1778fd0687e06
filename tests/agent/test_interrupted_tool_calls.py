"""The `tool_call` activity with a call whose outcome is unknown (its record says started, no
result: a crash cut it off) and with a server whose circuit is open, against Azurite and real MCP
servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import replace
from typing import Any

import anyio
import pytest
import pytest_asyncio
from mcp.server.mcpserver import MCPServer

from agent import activities
from agent.contracts import ModelStepInput, RunRef, ToolCallInput
from agent.errors import ToolTimeout, ToolTransportError
from agent.loop import OUTCOME_UNKNOWN
from agent.mcp.config import parse_mcp_servers
from agent.mcp.pool import McpPool
from agent.runtime import Runtime, build_runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import (
    AsgiServer,
    demo_http_app,
    http_entry,
    mcp_servers_json,
    without_timestamp,
)
from storage.conversations import ConversationRef, StoredMessage, ToolCallRecord
from tests.agent.conftest import app_settings, runtime_on
from tests.agent.conftest import new_run as start_run
from tests.agent.mcp.conftest import FakeClock


def slow_app() -> Any:
    """A server whose one tool acts, slowly, and is not read-only."""
    server = MCPServer("slow")

    @server.tool()
    async def slow_write(note: str) -> str:
        """Write a note, taking longer than the app waits."""
        await anyio.sleep(30)  # the server's slowness; the test waits on the client's timeout
        return "written"

    return server.streamable_http_app()


@pytest.fixture(scope="module")
def slow() -> Iterator[AsgiServer]:
    with AsgiServer(slow_app) as server:
        yield server


CONTAINER = "interrupted-calls-test"


@pytest_asyncio.fixture(scope="module")
async def rt(
    azurite: AzuriteInstance, model: FakeOpenAI, helper: AsgiServer, slow: AsgiServer
) -> AsyncIterator[Runtime]:
    servers = mcp_servers_json(
        http_entry("helper", helper.url()),
        # The same server, declared to apply a call at most once per idempotency key.
        http_entry("idem", helper.url(), idempotent_calls=True),
        http_entry("slow", slow.url(), timeout_seconds=0.5),
    )
    async with runtime_on(azurite, model, CONTAINER, servers) as runtime:
        yield runtime


async def new_run(rt: Runtime) -> RunRef:
    return await start_run(rt, "user:test")


def ref_of(run: RunRef) -> ConversationRef:
    return ConversationRef(run.owner, run.conversation_id)


async def proposed_call(rt: Runtime, model: FakeOpenAI, tool: str, arguments: dict[str, Any]):
    """A run whose model step asked for one call of `tool`: (run, call id)."""
    run = await new_run(rt)
    model.brain.call_tools((tool, arguments))
    summary = await activities.model_step(ModelStepInput(run, 1).to_dict(), rt)
    [call_id] = summary["tool_call_ids"]
    return run, call_id


async def cut_off(rt: Runtime, run: RunRef, call_id: str) -> None:
    """The state a crash during the call leaves: the record says started, no result."""
    record = await record_of(rt, run, call_id)
    await rt.store.mark_tool_call(ref_of(run), record, "started")


async def record_of(rt: Runtime, run: RunRef, call_id: str) -> ToolCallRecord:
    record = await rt.store.get_tool_call(ref_of(run), run.run_id, call_id)
    assert record is not None
    return record


async def tool_results(rt: Runtime, run: RunRef) -> list[StoredMessage]:
    return [m for m in await rt.store.read_messages(ref_of(run)) if m.role == "tool"]


async def count_now(rt: Runtime, key: str) -> int:
    """The helper's counter `key` after one more count from outside the app."""
    outcome = await rt.mcp.call_tool(
        "helper__count_call", {"key": key}, context={}, idempotency_key=uuid.uuid4().hex
    )
    return int(re.search(r'"count":\s*(\d+)', outcome.text).group(1))


async def test_a_cut_off_call_to_a_tool_not_safe_to_repeat_is_deferred_for_a_person_not_sent(
    rt, model
):
    key = uuid.uuid4().hex
    run, call_id = await proposed_call(rt, model, "helper__count_call", {"key": key})
    await cut_off(rt, run, call_id)
    call = ToolCallInput(run, 1, call_id, may_defer=True)
    summary = await activities.tool_call(call.to_dict(), rt)
    assert summary == {
        "call_id": call_id,
        "is_error": False,
        "truncated": False,
        "interrupted": True,
    }
    assert (await record_of(rt, run, call_id)).status == "started"  # still undecided
    assert await tool_results(rt, run) == []
    assert await count_now(rt, key) == 1  # the activity did not send it


async def test_without_leave_to_defer_a_cut_off_call_gets_an_outcome_unknown_result_unsent(
    rt, model
):
    key = uuid.uuid4().hex
    run, call_id = await proposed_call(rt, model, "helper__count_call", {"key": key})
    await cut_off(rt, run, call_id)
    summary = await activities.tool_call(ToolCallInput(run, 1, call_id).to_dict(), rt)
    assert summary["is_error"] and "interrupted" not in summary
    [result] = await tool_results(rt, run)
    assert (result.content, result.is_error) == (OUTCOME_UNKNOWN, True)
    assert (await record_of(rt, run, call_id)).status == "completed"
    assert await count_now(rt, key) == 1


async def test_a_cut_off_call_to_a_read_only_tool_is_sent_again(rt, model):
    run, call_id = await proposed_call(rt, model, "helper__greet", {"name": "Ada"})
    await cut_off(rt, run, call_id)
    call = ToolCallInput(run, 1, call_id, may_defer=True)
    summary = await activities.tool_call(call.to_dict(), rt)
    assert summary == {"call_id": call_id, "is_error": False, "truncated": False}
    [result] = await tool_results(rt, run)
    assert without_timestamp(result.content) == "Hello, Ada!"


async def test_a_cut_off_call_to_a_server_that_honours_the_key_is_sent_again_with_the_same_key(
    rt, model
):
    key = uuid.uuid4().hex
    run, call_id = await proposed_call(rt, model, "idem__count_call", {"key": key})
    # The first send reached the server (which applied it) before the crash cut it off.
    first = await rt.mcp.call_tool(
        "idem__count_call", {"key": key}, context={}, idempotency_key=f"{run.run_id}:{call_id}"
    )
    await cut_off(rt, run, call_id)
    await activities.tool_call(ToolCallInput(run, 1, call_id, may_defer=True).to_dict(), rt)
    [result] = await tool_results(rt, run)
    assert json.loads(result.content) == {**json.loads(first.text), "replayed": True}
    assert await count_now(rt, key) == 2  # applied once by the app, once by count_now


async def test_a_cut_off_call_a_person_approved_is_sent_again(rt, model):
    key = uuid.uuid4().hex
    run, call_id = await proposed_call(rt, model, "helper__count_call", {"key": key})
    await cut_off(rt, run, call_id)
    again = ToolCallInput(run, 1, call_id, retry_interrupted=True)
    assert not (await activities.tool_call(again.to_dict(), rt))["is_error"]
    [result] = await tool_results(rt, run)
    assert re.search(r'"count":\s*1\b', result.content)


async def test_a_call_resent_on_approval_and_cut_off_again_is_not_sent_a_third_time(rt, model):
    key = uuid.uuid4().hex
    run, call_id = await proposed_call(rt, model, "helper__count_call", {"key": key})
    await cut_off(rt, run, call_id)
    record = await record_of(rt, run, call_id)
    # the state a second crash leaves: resent on the approval, cut off again
    await rt.store.mark_tool_call(ref_of(run), replace(record, resent=True), "started")
    again = ToolCallInput(run, 1, call_id, retry_interrupted=True)  # Durable re-runs it
    assert (await activities.tool_call(again.to_dict(), rt))["is_error"]
    [result] = await tool_results(rt, run)
    assert result.content == OUTCOME_UNKNOWN
    assert await count_now(rt, key) == 1


async def test_a_cut_off_call_a_person_declined_gets_the_reason_and_is_not_sent(rt, model):
    key = uuid.uuid4().hex
    run, call_id = await proposed_call(rt, model, "helper__count_call", {"key": key})
    await cut_off(rt, run, call_id)
    declined = ToolCallInput(run, 1, call_id, rejection=f"{OUTCOME_UNKNOWN} (declined)")
    assert (await activities.tool_call(declined.to_dict(), rt))["is_error"]
    [result] = await tool_results(rt, run)
    assert result.content == f"{OUTCOME_UNKNOWN} (declined)"
    assert await count_now(rt, key) == 1


async def test_a_call_that_timed_out_keeps_its_outcome_unknown_so_the_retry_defers_it(rt, model):
    run, call_id = await proposed_call(rt, model, "slow__slow_write", {"note": "x"})
    call = ToolCallInput(run, 1, call_id, may_defer=True)
    with pytest.raises(ToolTimeout):  # Durable retries this attempt
        await activities.tool_call(call.to_dict(), rt)
    assert (await record_of(rt, run, call_id)).status == "started"
    assert (await activities.tool_call(call.to_dict(), rt))["interrupted"]


async def test_a_server_restarted_inside_the_breaker_cooldown_is_waited_for_then_called(
    azurite: AzuriteInstance, model: FakeOpenAI, tmp_path
):
    """The red-team case: the server went down (the breaker opened), came back within a
    second, and the retry landed inside the cooldown. The call is deferred (the orchestrator
    waits a durable timer for the cooldown), then succeeds."""
    clock = FakeClock()
    with AsgiServer(lambda: demo_http_app(sandbox_dir=tmp_path)) as flaky:
        servers = mcp_servers_json(http_entry("flaky", flaky.url()))
        base = await build_runtime(app_settings(azurite, model, CONTAINER, servers))
        pool = McpPool(
            parse_mcp_servers(servers), clock=clock, failure_threshold=1, cooldown_seconds=30
        )
        rt = replace(base, mcp=pool)
        try:
            run, call_id = await proposed_call(rt, model, "flaky__greet", {"name": "Ada"})
            call = ToolCallInput(run, 1, call_id, may_defer=True)
            await flaky.astop()
            with pytest.raises(ToolTransportError):  # Durable retries this attempt
                await activities.tool_call(call.to_dict(), rt)
            # (the session's request may have left before the connection failed)
            assert (await record_of(rt, run, call_id)).status == "started"
            await flaky.astart()  # back within a second; the breaker is open for 30 s

            deferred = await activities.tool_call(call.to_dict(), rt)
            assert deferred["retry_after"] == 30.0 and not deferred["is_error"]
            assert await tool_results(rt, run) == []  # the model is not told "unavailable"

            clock.advance(deferred["retry_after"])  # what the orchestrator's timer waits
            again = replace(call, may_defer=False)
            assert not (await activities.tool_call(again.to_dict(), rt))["is_error"]
            [result] = await tool_results(rt, run)
            assert without_timestamp(result.content) == "Hello, Ada!"
        finally:
            await pool.aclose()
            await base.aclose()


# --- a connection dropped during a call, a server that cannot be reached ----------------------


class Holding:
    """A server whose one tool acts (counted) and, while `hold` is set, then waits until the
    test drops its connection; `entered` is set once a call has acted."""

    def __init__(self) -> None:
        self.executions = 0
        self.hold = True
        self.entered = threading.Event()

    def app(self) -> Any:
        server = MCPServer("holding")

        @server.tool()
        async def act(note: str) -> str:
            """Act once per call, not read-only."""
            self.executions += 1
            self.entered.set()
            if self.hold:
                await anyio.sleep(30)  # never reached: the test drops the connection first
            return "acted"

        return server.streamable_http_app()


@contextlib.asynccontextmanager
async def holding_runtime(
    azurite: AzuriteInstance, model: FakeOpenAI
) -> AsyncIterator[tuple[Runtime, AsgiServer, Holding]]:
    holding = Holding()
    with AsgiServer(holding.app) as server:
        servers = mcp_servers_json(http_entry("hold", server.url(), timeout_seconds=10))
        runtime = await build_runtime(app_settings(azurite, model, CONTAINER, servers))
        try:
            yield runtime, server, holding
        finally:
            await runtime.aclose()


async def dropped_during(server: AsgiServer, holding: Holding, call: Awaitable[Any]) -> None:
    """Run `call` and, once the tool has acted, drop the server (as a crash or network cut does)."""
    task = asyncio.ensure_future(call)
    assert await asyncio.to_thread(holding.entered.wait, 10)
    await server.astop()
    with pytest.raises(ToolTransportError):  # Durable retries this attempt
        await task
    holding.hold = False
    await server.astart()


async def test_an_approved_resend_whose_connection_drops_is_not_sent_a_third_time_by_the_retry(
    azurite: AzuriteInstance, model: FakeOpenAI
):
    async with holding_runtime(azurite, model) as (rt, server, holding):
        run, call_id = await proposed_call(rt, model, "hold__act", {"note": "x"})
        await cut_off(rt, run, call_id)  # the first send: cut off by a crash
        again = ToolCallInput(run, 1, call_id, retry_interrupted=True)  # a person said resend
        await dropped_during(server, holding, activities.tool_call(again.to_dict(), rt))
        record = await record_of(rt, run, call_id)
        assert (record.status, record.resent) == ("started", True)

        assert (await activities.tool_call(again.to_dict(), rt))["is_error"]  # Durable's retry
        [result] = await tool_results(rt, run)
        assert result.content == OUTCOME_UNKNOWN
        assert holding.executions == 1  # the resend only: not sent again without asking


async def test_a_call_whose_connection_drops_after_it_was_sent_keeps_its_outcome_unknown(
    azurite: AzuriteInstance, model: FakeOpenAI
):
    async with holding_runtime(azurite, model) as (rt, server, holding):
        run, call_id = await proposed_call(rt, model, "hold__act", {"note": "x"})
        call = ToolCallInput(run, 1, call_id, may_defer=True)
        await dropped_during(server, holding, activities.tool_call(call.to_dict(), rt))
        assert (await record_of(rt, run, call_id)).status == "started"

        assert (await activities.tool_call(call.to_dict(), rt))["interrupted"]  # a person decides
        assert holding.executions == 1
        assert await tool_results(rt, run) == []


async def test_a_call_that_could_not_reach_its_server_goes_back_to_pending_and_the_retry_sends_it(
    azurite: AzuriteInstance, model: FakeOpenAI
):
    async with holding_runtime(azurite, model) as (rt, server, holding):
        holding.hold = False
        run, call_id = await proposed_call(rt, model, "hold__act", {"note": "x"})
        await server.astop()
        with pytest.raises(ToolTransportError):  # another call finds it gone: its session retires
            await rt.mcp.call_tool("hold__act", {"note": "y"}, context={}, idempotency_key="other")
        call = ToolCallInput(run, 1, call_id, may_defer=True)
        with pytest.raises(ToolTransportError) as raised:
            await activities.tool_call(call.to_dict(), rt)
        assert not raised.value.maybe_sent
        assert (await record_of(rt, run, call_id)).status == "pending"  # certainly never sent

        await server.astart()
        assert not (await activities.tool_call(call.to_dict(), rt))["is_error"]
        assert holding.executions == 1


async def test_a_cut_off_read_only_call_whose_servers_circuit_is_open_waits_instead_of_asking(
    azurite: AzuriteInstance, model: FakeOpenAI, tmp_path
):
    """A process that never listed the server (it restarted after the crash) and whose
    breaker opened while the server was down: the tool is still known to be read-only."""
    clock = FakeClock()
    with AsgiServer(lambda: demo_http_app(sandbox_dir=tmp_path)) as flaky:
        servers = mcp_servers_json(http_entry("flaky", flaky.url()))
        base = await build_runtime(app_settings(azurite, model, CONTAINER, servers))
        pool = McpPool(
            parse_mcp_servers(servers), clock=clock, failure_threshold=1, cooldown_seconds=30
        )
        try:
            run, call_id = await proposed_call(base, model, "flaky__greet", {"name": "Ada"})
            await cut_off(base, run, call_id)
            await flaky.astop()
            assert await pool.list_tools() == []  # the breaker opens
            await flaky.astart()  # back, inside the cooldown

            rt = replace(base, mcp=pool)
            call = ToolCallInput(run, 1, call_id, may_defer=True)
            deferred = await activities.tool_call(call.to_dict(), rt)
            assert deferred["retry_after"] == 30.0 and "interrupted" not in deferred

            clock.advance(deferred["retry_after"])
            again = replace(call, may_defer=False)
            assert not (await activities.tool_call(again.to_dict(), rt))["is_error"]
            [result] = await tool_results(rt, run)
            assert without_timestamp(result.content) == "Hello, Ada!"
        finally:
            await pool.aclose()
            await base.aclose()
