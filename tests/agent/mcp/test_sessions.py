"""Pooled sessions: reused, opened once under concurrency, reopened after a failure, closed cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.errors import ToolTimeout, ToolTransportError
from agent.mcp.config import EnvSecretResolver, parse_mcp_servers
from agent.mcp.pool import McpPool
from agent.mcp.session import ServerConnection
from devkit.mcp_servers import (
    AsgiServer,
    http_entry,
    mcp_servers_json,
    sse_entry,
    without_timestamp,
)
from tests.agent.mcp.conftest import PoolFactory, connects

CONTEXT: dict[str, str] = {}


async def greet(pool: McpPool, name: str = "demo") -> str:
    outcome = await pool.call_tool(
        f"{name}__greet", {"name": "x"}, context=CONTEXT, idempotency_key="g"
    )
    assert not outcome.is_error
    return without_timestamp(outcome.text)


async def test_one_session_serves_many_calls(make_pool: PoolFactory, demo_http: AsgiServer) -> None:
    pool = await make_pool(http_entry("demo", demo_http.url()))
    await pool.list_tools()
    for _ in range(5):
        await greet(pool)
    await asyncio.gather(*(greet(pool) for _ in range(10)))
    assert connects(pool, "demo") == 1


async def test_concurrent_first_calls_open_a_single_session(demo_http: AsgiServer) -> None:
    (config,) = parse_mcp_servers(mcp_servers_json(http_entry("demo", demo_http.url())))
    connection = ServerConnection(config, EnvSecretResolver({}))
    try:
        listings = await asyncio.gather(
            *(connection.use(lambda c: c.list_tools()) for _ in range(10))
        )
        assert all(len(listing.tools) == len(listings[0].tools) > 0 for listing in listings)
        assert connection.connects == 1
    finally:
        await connection.aclose()


async def test_concurrent_first_tool_calls_on_a_fresh_pool_connect_once(
    make_pool: PoolFactory, demo_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", demo_http.url()))
    texts = await asyncio.gather(*(greet(pool) for _ in range(8)))
    assert set(texts) == {"Hello, x!"}
    assert connects(pool, "demo") == 1


async def test_a_restarted_http_server_is_reconnected_on_the_next_call(
    make_pool: PoolFactory, own_demo_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", own_demo_http.url()))
    await greet(pool)
    await own_demo_http.astop()
    with pytest.raises(ToolTransportError) as raised:
        await greet(pool)
    assert str(raised.value).startswith("MCP server 'demo' is unreachable")

    await own_demo_http.astart()  # same port, new process state: the old MCP session is gone
    assert await greet(pool) == "Hello, x!"
    assert connects(pool, "demo") == 2


async def test_a_transport_error_says_whether_the_request_may_have_reached_the_server(
    make_pool: PoolFactory, own_demo_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", own_demo_http.url()))
    await greet(pool)
    await own_demo_http.astop()
    with pytest.raises(ToolTransportError) as on_the_session:
        await greet(pool)
    assert on_the_session.value.maybe_sent  # sent on a live session: cannot tell
    with pytest.raises(ToolTransportError) as no_session:
        await greet(pool)
    assert not no_session.value.maybe_sent  # no session could be opened: never left

    never_listed = await make_pool(http_entry("demo", own_demo_http.url()))
    with pytest.raises(ToolTransportError) as unlisted:
        await greet(never_listed)
    assert not unlisted.value.maybe_sent


async def test_a_restarted_sse_server_is_reconnected_on_the_next_call(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    from devkit.mcp_servers import demo_sse_app

    server = AsgiServer(lambda: demo_sse_app(tmp_path)).start()
    try:
        pool = await make_pool(sse_entry("demo", server.url("/sse")))
        await greet(pool)
        await server.astop()
        with pytest.raises(ToolTransportError):
            await greet(pool)
        await server.astart()
        assert await greet(pool) == "Hello, x!"
        assert connects(pool, "demo") == 2
    finally:
        server.stop()


async def test_a_timed_out_call_raises_and_the_next_call_gets_a_fresh_session(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("helper", helper_http.url(), timeout_seconds=1.0))
    await greet(pool, "helper")
    with pytest.raises(ToolTimeout) as raised:
        await pool.call_tool("helper__wait", {"seconds": 5}, context=CONTEXT, idempotency_key="w")
    assert "did not answer tool 'wait' within 1 s" in str(raised.value)
    assert await greet(pool, "helper") == "Hello, x!"
    assert connects(pool, "helper") == 2


async def test_a_timeout_does_not_abort_other_calls_on_the_same_session(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("helper", helper_http.url(), timeout_seconds=1.5))
    await greet(pool, "helper")

    async def slow(seconds: float) -> str:
        outcome = await pool.call_tool(
            "helper__wait", {"seconds": seconds}, context=CONTEXT, idempotency_key="s"
        )
        return outcome.text

    finishes = asyncio.create_task(slow(0.3))
    with pytest.raises(ToolTimeout):
        await slow(5)
    assert await finishes == "waited 0.3 s"


async def test_an_unreachable_server_raises_a_safe_transport_error(make_pool: PoolFactory) -> None:
    pool = await make_pool(http_entry("gone", "http://127.0.0.1:9/mcp?code=query-secret"))
    with pytest.raises(ToolTransportError) as raised:
        await pool.call_tool("gone__greet", {}, context=CONTEXT, idempotency_key="u")
    assert str(raised.value) == "MCP server 'gone' is unreachable (ConnectError)"
    error = raised.value  # no chained exception carrying the URL into logs or Durable history
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert (await pool.list_tools()) == []
    assert pool.status()[0].consecutive_failures == 2
