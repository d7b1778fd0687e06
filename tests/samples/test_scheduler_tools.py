"""The Scheduler's MCP tools, through a real MCP client over streamable HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from devkit.scheduler import (
    API_KEY,
    CLIENT_ID,
    FakeClock,
    ServedApp,
    WebhookReceiver,
    mcp_session,
    scheduler_config,
)
from samples.scheduler_mcp import Scheduler
from tests.samples.conftest import StartScheduler


@dataclass(frozen=True)
class SharedScheduler:
    url: str
    clock: FakeClock


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedScheduler]:
    """One Scheduler for the tests that store nothing (auth and bad input): starting one per
    case would cost more than the cases themselves."""
    clock = FakeClock()
    state = tmp_path_factory.mktemp("shared-scheduler") / "scheduler.sqlite3"
    served = await ServedApp(Scheduler(scheduler_config(state), clock=clock).app).start()
    yield SharedScheduler(served.url(), clock)
    await served.stop()


def text_of(result: CallToolResult) -> str:
    return " ".join(part.text for part in result.content if isinstance(part, TextContent))


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return text_of(result)


def structured(result: CallToolResult) -> Any:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def schedule(
    session: ClientSession,
    clock: FakeClock,
    endpoint: str,
    *,
    meta: dict[str, Any] | None = None,
    **arguments: Any,
) -> CallToolResult:
    arguments = {
        "conversation_text": "Remind me to send the report",
        "scheduled_time": clock.iso(3600),
        "endpoint": endpoint,
        **arguments,
    }
    return await session.call_tool("schedule_conversation", arguments, meta=meta)


async def listed(session: ClientSession, **arguments: Any) -> list[dict[str, Any]]:
    return structured(await session.call_tool("list_scheduled_conversations", arguments))["result"]


# --- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Client-ID": CLIENT_ID},
        {"X-API-Key": API_KEY},
        {"X-Client-ID": CLIENT_ID, "X-API-Key": API_KEY + "x"},
        {"X-Client-ID": "someone-else", "X-API-Key": API_KEY},
    ],
)
async def test_a_request_without_the_right_client_id_and_api_key_gets_401(
    shared: SharedScheduler, headers: dict[str, str]
):
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with httpx2.AsyncClient(headers=headers) as http:
        reply = await http.post(shared.url, json=initialize)
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] == "unauthorized"
    assert API_KEY not in reply.text


async def test_an_mcp_client_with_a_wrong_key_cannot_initialize(shared: SharedScheduler):
    statuses: list[int] = []

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    headers = {"X-Client-ID": CLIENT_ID, "X-API-Key": "wrong"}
    async with httpx2.AsyncClient(headers=headers, event_hooks={"response": [record]}) as http:
        # The SDK reports it as an MCPError inside an ExceptionGroup from its task group.
        with pytest.raises(ExceptionGroup):
            async with (
                streamable_http_client(shared.url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
    assert statuses == [401]


# --- schedule, list, cancel -----------------------------------------------------------------


async def test_schedule_list_and_cancel_a_conversation(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    async with mcp_session(running.url) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == {
            "schedule_conversation",
            "list_scheduled_conversations",
            "cancel_scheduled_conversation",
        }
        local_time = "2026-01-01T10:00:00+02:00"
        clock.now = 1_767_240_000.0 - 86_400  # a day before 2026-01-01T04:00:00Z
        created = structured(
            await schedule(
                session, clock, receiver.url(), scheduled_time=local_time, conversation_id="conv-1"
            )
        )
        assert created["status"] == "pending"
        assert created["conversation_id"] == "conv-1"
        assert created["scheduled_time"] == "2026-01-01T08:00:00+00:00"  # normalised to UTC
        assert created["schedule_id"].startswith("sch_")

        [entry] = await listed(session)
        assert entry["schedule_id"] == created["schedule_id"]
        assert entry["status"] == "pending"
        assert entry["attempts"] == 0
        assert entry["last_error"] is None
        assert entry["text_preview"] == "Remind me to send the report"

        cancelled = structured(
            await session.call_tool(
                "cancel_scheduled_conversation", {"schedule_id": created["schedule_id"]}
            )
        )
        assert cancelled == {"schedule_id": created["schedule_id"], "status": "cancelled"}
        assert [e["status"] for e in await listed(session)] == ["cancelled"]
        again = await session.call_tool(
            "cancel_scheduled_conversation", {"schedule_id": created["schedule_id"]}
        )
        assert structured(again)["status"] == "cancelled"  # cancelling twice is harmless
    clock.advance(2 * 86_400)
    report = await running.scheduler.dispatcher.run_once()
    assert report.sent == 0 and receiver.callbacks == []  # a cancelled one is never delivered


async def test_a_conversation_id_is_generated_when_none_is_given(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    async with mcp_session(running.url) as session:
        first = structured(await schedule(session, clock, receiver.url()))
        second = structured(await schedule(session, clock, receiver.url()))
    assert first["conversation_id"] != second["conversation_id"]
    assert first["conversation_id"].isalnum() and len(first["conversation_id"]) == 32


async def test_the_list_filters_by_status_and_conversation_and_hides_the_endpoint_query(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    endpoint = receiver.url(query="code=function-key-secret")
    async with mcp_session(running.url) as session:
        a1 = structured(await schedule(session, clock, endpoint, conversation_id="a"))
        structured(
            await schedule(
                session, clock, endpoint, conversation_id="a", scheduled_time=clock.iso(7200)
            )
        )
        b1 = structured(await schedule(session, clock, endpoint, conversation_id="b"))
        await session.call_tool("cancel_scheduled_conversation", {"schedule_id": b1["schedule_id"]})

        everything = await listed(session)
        assert len(everything) == 3
        assert [e["conversation_id"] for e in await listed(session, conversation_id="a")] == [
            "a",
            "a",
        ]
        assert [e["schedule_id"] for e in await listed(session, status="cancelled")] == [
            b1["schedule_id"]
        ]
        assert [e["schedule_id"] for e in await listed(session, conversation_id="a", limit=1)] == [
            a1["schedule_id"]  # soonest first
        ]
        assert all(e["endpoint"] == receiver.url() for e in everything)
        raw = await session.call_tool("list_scheduled_conversations", {})
        assert "function-key-secret" not in raw.model_dump_json()


async def test_a_schedule_cannot_be_cancelled_through_another_conversation(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    async with mcp_session(running.url) as session:
        created = structured(await schedule(session, clock, receiver.url(), conversation_id="mine"))
        refused = await session.call_tool(
            "cancel_scheduled_conversation",
            {"schedule_id": created["schedule_id"], "conversation_id": "theirs"},
        )
        assert "no scheduled conversation with id" in error_text(refused)
        assert [e["status"] for e in await listed(session)] == ["pending"]


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"scheduled_time": "PAST"}, "is in the past"),
        ({"scheduled_time": "2030-01-31T09:00:00"}, "has no timezone"),
        ({"scheduled_time": "2030-01-31"}, "has no timezone"),
        ({"scheduled_time": "next tuesday at 9"}, "is not an ISO 8601 date-time"),
        ({"scheduled_time": "FAR"}, "more than 366 days ahead"),
        ({"endpoint": "ftp://example.com/callback"}, "endpoint must be an http or https URL"),
        ({"endpoint": "file:///etc/passwd"}, "endpoint must be an http or https URL"),
        ({"endpoint": "not a url"}, "endpoint must be an http or https URL"),
        ({"endpoint": "https://user:pw@example.com/cb"}, "must not carry credentials"),
        ({"endpoint": "http://example.com:99999/cb"}, "not a valid URL"),
        ({"conversation_text": ""}, "conversation_text must not be empty"),
        ({"conversation_text": "  \n "}, "conversation_text must not be empty"),
        ({"conversation_text": "x" * 32_001}, "longer than 32000 characters"),
        ({"conversation_id": "../../etc"}, "conversation_id must be 1 to 64 letters"),
    ],
)
async def test_bad_schedule_input_is_a_tool_error_that_says_what_is_wrong(
    shared: SharedScheduler, arguments: dict[str, str], message: str
):
    clock = shared.clock
    if arguments.get("scheduled_time") == "PAST":
        arguments = {"scheduled_time": clock.iso(-3600)}
    if arguments.get("scheduled_time") == "FAR":
        arguments = {"scheduled_time": clock.iso(400 * 86_400)}
    async with mcp_session(shared.url) as session:
        result = await schedule(
            session, clock, **{"endpoint": "http://127.0.0.1:9/cb", **arguments}
        )
        assert message in error_text(result)
        assert await listed(session) == []  # nothing was stored


async def test_a_time_a_few_seconds_ago_counts_as_now(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    async with mcp_session(running.url) as session:
        created = structured(
            await schedule(session, clock, receiver.url(), scheduled_time=clock.iso(-5))
        )
    assert created["status"] == "pending"


async def test_other_bad_requests_are_clear_tool_errors(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    async with mcp_session(running.url) as session:
        unknown = await session.call_tool(
            "cancel_scheduled_conversation", {"schedule_id": "sch_nope"}
        )
        assert "no scheduled conversation with id 'sch_nope'" in error_text(unknown)
        bad_status = await session.call_tool("list_scheduled_conversations", {"status": "done"})
        assert "status must be one of pending, delivered, failed, cancelled" in error_text(
            bad_status
        )
        bad_limit = await session.call_tool("list_scheduled_conversations", {"limit": 0})
        assert "limit must be between 1 and 1000" in error_text(bad_limit)
        bad_key = await schedule(session, clock, receiver.url(), meta={"idempotency_key": 42})
        assert "idempotency_key must be a string" in error_text(bad_key)

        created = structured(
            await schedule(session, clock, receiver.url(), scheduled_time=clock.iso(1))
        )
        clock.advance(1)
        await running.scheduler.dispatcher.run_once()
        await receiver.wait_for(1)
        delivered = await session.call_tool(
            "cancel_scheduled_conversation", {"schedule_id": created["schedule_id"]}
        )
        assert "was already delivered" in error_text(delivered)
        assert "only a pending one can be cancelled" in error_text(delivered)


# --- idempotency ----------------------------------------------------------------------------


async def test_a_repeated_schedule_with_the_same_idempotency_key_creates_one_schedule(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    meta = {"idempotency_key": "run-42:step-3:call-1"}
    async with mcp_session(running.url) as session:
        first = structured(await schedule(session, clock, receiver.url(), meta=meta))
        second = structured(await schedule(session, clock, receiver.url(), meta=meta))
        assert second == first
        assert len(await listed(session)) == 1
    # A new session (e.g. the app re-running an activity after a crash) replays it too.
    async with mcp_session(running.url) as session:
        third = structured(await schedule(session, clock, receiver.url(), meta=meta))
        assert third == first
        assert len(await listed(session)) == 1


async def test_without_an_idempotency_key_each_call_schedules_anew(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    async with mcp_session(running.url) as session:
        first = structured(await schedule(session, clock, receiver.url()))
        second = structured(await schedule(session, clock, receiver.url()))
        assert first["schedule_id"] != second["schedule_id"]
        assert len(await listed(session)) == 2


async def test_an_idempotency_key_reused_for_a_different_request_is_refused(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    meta = {"idempotency_key": "k-1"}
    async with mcp_session(running.url) as session:
        structured(await schedule(session, clock, receiver.url(), meta=meta))
        other = await schedule(session, clock, receiver.url(), meta=meta, conversation_text="Other")
        assert "already used for a different schedule request" in error_text(other)
        assert len(await listed(session)) == 1
