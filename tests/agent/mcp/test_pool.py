"""The pool end to end against real servers: what the model may call and how (allow lists,
pinned arguments, names, catalog TTL, errors, output capping, the circuit breaker, and the
idempotency key reaching the server). Its parts are tested alone in test_policy, test_catalog
and test_guard."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from mcp.server.mcpserver import MCPServer

from agent.errors import SettingsError, ToolTransportError
from agent.mcp.names import VALID_NAME
from agent.mcp.pool import MIN_RELIST_SECONDS, McpPool, ToolOutcome
from devkit.mcp_servers import AsgiApp, AsgiServer, http_entry
from samples.demo_mcp import build_server
from tests.agent.mcp.conftest import FakeClock, PoolFactory, connects

CONTEXT = {
    "conversation_id": "conv-7",
    "callback_url": "https://app.example/api/scheduler/callback",
}


async def call(pool: McpPool, name: str, arguments: dict, key: str = "k") -> ToolOutcome:
    return await pool.call_tool(name, arguments, context=CONTEXT, idempotency_key=key)


# --- allow list ------------------------------------------------------------------------------


async def test_only_allowed_tools_are_listed_and_callable(
    make_pool: PoolFactory, demo_http: AsgiServer
) -> None:
    pool = await make_pool(
        http_entry(
            "demo",
            demo_http.url(),
            tools={"allow": ["greet", "get_weather"], "require_approval": ["get_weather"]},
        )
    )
    specs = {spec.tool: spec for spec in await pool.list_tools()}
    assert set(specs) == {"greet", "get_weather"}
    assert specs["get_weather"].require_approval and not specs["greet"].require_approval

    refused = await call(pool, "demo__save_text_file", {"filename": "x.txt", "content": "pwned"})
    assert refused.is_error
    assert refused.text == "tool 'demo__save_text_file' is not allowed by this app's configuration"
    assert json.loads(refused.full_output)["isError"] is True


async def test_a_disallowed_tool_is_never_called(
    make_pool: PoolFactory, own_demo_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", own_demo_http.url(), tools={"allow": ["greet"]}))
    await pool.list_tools()
    requests_before = own_demo_http.requests
    outcome = await call(pool, "demo__calculate", {"operation": "add", "a": 1, "b": 2})
    assert outcome.is_error
    assert own_demo_http.requests == requests_before  # refused locally: no request at all


async def test_an_unknown_tool_is_an_error_result_not_an_exception(
    make_pool: PoolFactory, demo_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", demo_http.url()))
    outcome = await call(pool, "demo__launch_rockets", {})
    assert outcome.is_error
    assert "unknown tool 'demo__launch_rockets'" in outcome.text
    not_an_object = await call(pool, "demo__greet", ["Ada"])  # type: ignore[arg-type]
    assert not_an_object.is_error and "JSON object" in not_an_object.text


async def test_a_tool_is_callable_in_a_process_that_never_listed(
    make_pool: PoolFactory, demo_http: AsgiServer
) -> None:
    # The model may see the catalog in one worker and the call may run in another.
    pool = await make_pool(http_entry("demo", demo_http.url()))
    outcome = await call(pool, "demo__greet", {"name": "worker 2"})
    assert outcome.text.startswith("Hello, worker 2! Current time: ")


async def test_each_call_is_logged_without_its_arguments_or_result(
    make_pool: PoolFactory, demo_http: AsgiServer, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await make_pool(http_entry("demo", demo_http.url()))
    caplog.set_level(logging.INFO, logger="agent.mcp")
    await call(pool, "demo__greet", {"name": "Zebediah"})
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mcp call ")]
    assert line.startswith("mcp call server=demo tool=greet outcome=ok duration_ms=")
    assert "Zebediah" not in caplog.text


# --- pinned arguments ------------------------------------------------------------------------

PINNED = {
    "register_callback": {"endpoint": "${callback_url}", "conversation_id": "${conversation_id}"},
}


async def test_pinned_arguments_are_hidden_from_the_model(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("helper", helper_http.url(), pinned_arguments=PINNED))
    (spec,) = [s for s in await pool.list_tools() if s.tool == "register_callback"]
    assert set(spec.parameters["properties"]) == {"note"}
    assert "required" not in spec.parameters


async def test_pinned_arguments_override_whatever_the_model_sends(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("helper", helper_http.url(), pinned_arguments=PINNED))
    outcome = await call(
        pool,
        "helper__register_callback",
        {
            "endpoint": "https://attacker.example/steal",
            "conversation_id": "someone-else",
            "note": "hi",
        },
    )
    assert json.loads(outcome.text) == {
        "endpoint": "https://app.example/api/scheduler/callback",
        "conversation_id": "conv-7",
        "note": "hi",
    }


async def test_a_placeholder_the_app_does_not_provide_is_a_config_error(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pinned = {"register_callback": {"endpoint": "${tenant_url}"}}
    pool = await make_pool(http_entry("helper", helper_http.url(), pinned_arguments=pinned))
    with pytest.raises(SettingsError) as raised:
        await call(pool, "helper__register_callback", {"conversation_id": "c"})
    assert raised.value.name == "MCP_SERVERS"
    assert "register_callback.endpoint" in str(raised.value)
    assert "${tenant_url}" in str(raised.value)


# --- names -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_names_server() -> Iterator[AsgiServer]:
    """A server whose tool names are not valid OpenAI function names."""
    long_name = "lookup_" + "extremely_" * 8 + "detailed_record"

    def app() -> AsgiApp:
        server = MCPServer("odd")
        server.add_tool(lambda: "dotted", name="records.lookup", description="dots")
        server.add_tool(lambda: "long", name=long_name, description="long")
        return server.streamable_http_app()

    with AsgiServer(app) as server:
        yield server


async def test_odd_tool_names_are_sanitised_and_still_call_the_right_tool(
    make_pool: PoolFactory, odd_names_server: AsgiServer
) -> None:
    pool = await make_pool(http_entry("odd", odd_names_server.url()))
    specs = {spec.tool: spec.exposed_name for spec in await pool.list_tools()}
    assert all(VALID_NAME.match(name) for name in specs.values())
    assert len(specs["records.lookup"]) < 64 and specs["records.lookup"].startswith(
        "odd__records_lookup_"
    )
    long_tool = next(tool for tool in specs if tool.startswith("lookup_"))
    assert len(specs[long_tool]) == 64

    assert (await call(pool, specs["records.lookup"], {})).text == "dotted"
    assert (await call(pool, specs[long_tool], {})).text == "long"


# --- catalog TTL -----------------------------------------------------------------------------


async def test_the_catalog_is_cached_until_its_ttl_expires(
    make_pool: PoolFactory, clock: FakeClock
) -> None:
    server_object = build_server()
    with AsgiServer(server_object.streamable_http_app) as server:
        pool = await make_pool(
            http_entry("demo", server.url()), clock=clock, catalog_ttl_seconds=300
        )
        before = {spec.tool for spec in await pool.list_tools()}
        server_object.add_tool(lambda: "new", name="brand_new_tool")

        clock.advance(299)
        assert {spec.tool for spec in await pool.list_tools()} == before
        clock.advance(1)
        assert {spec.tool for spec in await pool.list_tools()} == before | {"brand_new_tool"}


async def test_a_server_that_cannot_be_listed_is_left_out_and_the_others_are_listed(
    make_pool: PoolFactory, demo_http: AsgiServer
) -> None:
    pool = await make_pool(
        http_entry("down", "http://127.0.0.1:9/mcp"),
        http_entry("demo", demo_http.url(), tools={"allow": ["greet"]}),
    )
    assert [spec.exposed_name for spec in await pool.list_tools()] == ["demo__greet"]
    statuses = {status.name: status for status in pool.status()}
    assert statuses["down"].consecutive_failures == 1 and statuses["down"].tools is None
    assert statuses["demo"].tools == 1


async def test_a_tool_that_needs_approval_is_known_to_even_while_its_server_cannot_be_listed(
    make_pool: PoolFactory,
) -> None:
    # The model may still name it (from an earlier step, or an injected instruction): the
    # question is asked from the configuration, never skipped because the listing failed.
    pool = await make_pool(
        http_entry(
            "scheduler",
            "http://127.0.0.1:9/mcp",
            tools={"allow": ["schedule_conversation", "list_scheduled_conversations"]},
        )
    )
    assert await pool.list_tools() == []
    assert pool.requires_approval("scheduler__schedule_conversation")
    assert not pool.requires_approval("scheduler__list_scheduled_conversations")


# --- results ---------------------------------------------------------------------------------


async def test_a_tool_error_is_an_error_result_and_the_server_stays_healthy(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("helper", helper_http.url()))
    outcome = await call(pool, "helper__fail", {"message": "the disk is full"})
    assert outcome.is_error
    assert "the disk is full" in outcome.text
    assert pool.status()[0].breaker == "closed" and pool.status()[0].consecutive_failures == 0


async def test_long_output_is_capped_for_the_model_and_kept_whole_for_storage(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("helper", helper_http.url(), output_limit_chars=1_000))
    outcome = await call(pool, "helper__repeat_text", {"text": "0123456789", "times": 5_000})
    assert outcome.truncated
    assert len(outcome.text) <= 1_000
    assert "[output truncated: showing" in outcome.text and "of 50000 characters]" in outcome.text
    assert json.loads(outcome.full_output)["content"][0]["text"] == "0123456789" * 5_000

    short = await call(pool, "helper__greet", {"name": "Ada"})
    assert not short.truncated


# --- idempotency -----------------------------------------------------------------------------


async def test_the_idempotency_key_reaches_the_server_in_the_request_meta(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("helper", helper_http.url()))

    async def count(key: str) -> dict:
        return json.loads(
            (await call(pool, "helper__count_call", {"key": "emails-sent"}, key=key)).text
        )

    first = await count("run-9:call-1")
    again = await count("run-9:call-1")  # an at-least-once re-run of the same tool call
    other = await count("run-9:call-2")
    assert again == {**first, "replayed": True}
    assert other["count"] == first["count"] + 1 and not other["replayed"]


# --- circuit breaker -------------------------------------------------------------------------


async def test_the_breaker_opens_after_repeated_failures_and_recovers_through_a_probe(
    make_pool: PoolFactory, own_demo_http: AsgiServer, clock: FakeClock
) -> None:
    pool = await make_pool(
        http_entry("demo", own_demo_http.url(), tools={"allow": ["greet"]}),
        clock=clock,
        catalog_ttl_seconds=10,
        failure_threshold=3,
        cooldown_seconds=30,
    )
    assert len(await pool.list_tools()) == 1
    await own_demo_http.astop()
    for _ in range(3):
        with pytest.raises(ToolTransportError):
            await call(pool, "demo__greet", {})
    assert pool.status()[0].breaker == "open"
    opened = connects(pool, "demo")

    blocked = await call(pool, "demo__greet", {})
    assert blocked.is_error
    assert (
        blocked.text
        == "server demo is unavailable (circuit open after 3 failures); try again later"
    )
    assert connects(pool, "demo") == opened  # not even a connection attempt
    clock.advance(15)  # the catalog expired, but the tools stay listed so the model is told
    assert [spec.exposed_name for spec in await pool.list_tools()] == ["demo__greet"]
    assert connects(pool, "demo") == opened

    clock.advance(15)
    with pytest.raises(ToolTransportError):  # after the cooldown one probe goes through, and fails
        await call(pool, "demo__greet", {})
    assert pool.status()[0].breaker == "open"
    assert (await call(pool, "demo__greet", {})).is_error

    clock.advance(30)
    await own_demo_http.astart()
    assert (await call(pool, "demo__greet", {"name": "back"})).text.startswith("Hello, back! ")
    assert pool.status()[0].breaker == "closed"


async def test_a_call_refused_for_an_open_circuit_says_how_long_until_a_probe(
    make_pool: PoolFactory, own_demo_http: AsgiServer, clock: FakeClock
) -> None:
    entry = http_entry("demo", own_demo_http.url(), tools={"allow": ["greet"]})
    listed = await make_pool(entry, clock=clock, failure_threshold=1, cooldown_seconds=30)
    never_listed = await make_pool(entry, clock=clock, failure_threshold=1, cooldown_seconds=30)
    assert len(await listed.list_tools()) == 1
    await own_demo_http.astop()
    for pool in (listed, never_listed):
        with pytest.raises(ToolTransportError):  # opens the circuit
            await call(pool, "demo__greet", {})
    clock.advance(12)
    for pool in (listed, never_listed):
        refused = await call(pool, "demo__greet", {})
        assert refused.is_error and refused.retry_after == 18
    await own_demo_http.astart()


async def test_read_only_tools_and_idempotent_servers_may_be_repeated_others_not(
    make_pool: PoolFactory, helper_http: AsgiServer
) -> None:
    pool = await make_pool(
        http_entry("helper", helper_http.url()),
        http_entry("idem", helper_http.url(), idempotent_calls=True),
    )
    assert await pool.may_repeat("helper__greet")  # readOnlyHint: true
    assert not await pool.may_repeat("helper__count_call")  # changes a counter
    assert not await pool.may_repeat("helper__save_text_file")  # writes a file
    assert await pool.may_repeat("idem__count_call")  # its server honours the key
    assert not await pool.may_repeat("helper__no_such_tool")


async def test_asking_again_about_an_unknown_tool_does_not_list_its_server_each_time(
    make_pool: PoolFactory, own_demo_http: AsgiServer, clock: FakeClock
) -> None:
    pool = await make_pool(http_entry("demo", own_demo_http.url()), clock=clock)
    await pool.list_tools()
    requests = own_demo_http.requests
    assert not await pool.may_repeat("demo__no_such_tool")
    assert not await pool.may_repeat("demo__no_such_tool")
    assert own_demo_http.requests == requests  # the listing is fresh: nothing new to learn
    clock.advance(MIN_RELIST_SECONDS)
    assert not await pool.may_repeat("demo__no_such_tool")
    assert own_demo_http.requests > requests  # re-listed, as often as for an unknown call


async def test_a_call_whose_before_send_fails_is_not_sent_and_leaves_the_probe_to_the_next(
    make_pool: PoolFactory, own_demo_http: AsgiServer, clock: FakeClock
) -> None:
    pool = await make_pool(
        http_entry("demo", own_demo_http.url()),
        clock=clock,
        failure_threshold=1,
        cooldown_seconds=30,
    )
    assert len(await pool.list_tools()) > 0
    await own_demo_http.astop()
    with pytest.raises(ToolTransportError):
        await call(pool, "demo__greet", {})  # opens the circuit
    await own_demo_http.astart()
    clock.advance(30)
    requests = own_demo_http.requests

    async def storage_fails() -> None:
        raise ConnectionResetError("the activity's own write failed")

    with pytest.raises(ConnectionResetError):
        await pool.call_tool(
            "demo__greet", {}, context=CONTEXT, idempotency_key="k", before_send=storage_fails
        )
    assert own_demo_http.requests == requests  # never sent
    assert pool.status()[0].consecutive_failures == 1  # no verdict on the server
    assert (await call(pool, "demo__greet", {"name": "next"})).text.startswith("Hello, next! ")
    assert pool.status()[0].breaker == "closed"
