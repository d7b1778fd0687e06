"""List and call tools over every transport, against our demo server and servers no one here wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.mcp.pool import to_openai_tools
from devkit.mcp_servers import (
    DEMO_TOOLS,
    AsgiServer,
    EverythingHttpServer,
    demo_stdio_command,
    everything_stdio_command,
    http_entry,
    node_available,
    sse_entry,
    stdio_entry,
    time_stdio_command,
)
from tests.agent.mcp.conftest import PoolFactory, connects

CONTEXT = {"conversation_id": "conv-1"}
needs_node = pytest.mark.skipif(not node_available(), reason="node or server-everything missing")


async def check_demo(pool_factory: PoolFactory, entry: dict) -> None:
    pool = await pool_factory(entry)
    specs = await pool.list_tools()
    assert {spec.tool for spec in specs} == DEMO_TOOLS
    assert {spec.exposed_name for spec in specs} == {f"demo__{tool}" for tool in DEMO_TOOLS}

    greeting = await pool.call_tool(
        "demo__greet", {"name": "Ada"}, context=CONTEXT, idempotency_key="k1"
    )
    assert (greeting.is_error, greeting.truncated) == (False, False)
    assert greeting.text.startswith("Hello, Ada! Current time: ")
    assert greeting.duration_ms > 0
    weather = await pool.call_tool(
        "demo__get_weather", {"city": "Oslo"}, context=CONTEXT, idempotency_key="k2"
    )
    assert json.loads(weather.text)["city"] == "Oslo"  # structured content, rendered once
    assert json.loads(weather.full_output)["structuredContent"]["city"] == "Oslo"


async def test_list_and_call_over_streamable_http(
    make_pool: PoolFactory, demo_http: AsgiServer
) -> None:
    await check_demo(make_pool, http_entry("demo", demo_http.url()))


async def test_list_and_call_over_sse(make_pool: PoolFactory, demo_sse: AsgiServer) -> None:
    await check_demo(make_pool, sse_entry("demo", demo_sse.url("/sse")))


async def test_list_and_call_over_stdio(make_pool: PoolFactory, tmp_path: Path) -> None:
    await check_demo(make_pool, stdio_entry("demo", demo_stdio_command(tmp_path)))


async def test_the_catalog_becomes_openai_tools(
    make_pool: PoolFactory, demo_http: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", demo_http.url(), tools={"allow": ["get_weather"]}))
    (tool,) = to_openai_tools(await pool.list_tools())
    assert tool["type"] == "function"
    function = tool["function"]
    assert function["name"] == "demo__get_weather"
    assert "weather" in function["description"].lower()
    assert function["parameters"]["type"] == "object"
    assert function["parameters"]["properties"]["city"]["default"] == "Seattle"
    assert "required" not in function["parameters"]  # the seed's default city
    json.dumps(tool)  # plain JSON, ready for the chat completions request


async def test_mcp_server_time_from_pypi_over_stdio(make_pool: PoolFactory) -> None:
    pool = await make_pool(stdio_entry("time", time_stdio_command()))
    names = {spec.exposed_name for spec in await pool.list_tools()}
    assert {"time__get_current_time", "time__convert_time"} <= names

    now = await pool.call_tool(
        "time__get_current_time",
        {"timezone": "Europe/Paris"},
        context=CONTEXT,
        idempotency_key="t1",
    )
    assert not now.is_error
    assert json.loads(now.text)["timezone"] == "Europe/Paris"
    converted = await pool.call_tool(
        "time__convert_time",
        {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        context=CONTEXT,
        idempotency_key="t2",
    )
    assert json.loads(converted.text)["target"]["datetime"].endswith("21:00:00+09:00")
    bad_zone = await pool.call_tool(
        "time__get_current_time",
        {"timezone": "Mars/Olympus"},
        context=CONTEXT,
        idempotency_key="t3",
    )
    assert bad_zone.is_error


@needs_node
async def test_server_everything_from_npm_over_stdio_renders_images_resources_and_structure(
    make_pool: PoolFactory,
) -> None:
    pool = await make_pool(stdio_entry("everything", everything_stdio_command()))
    names = {spec.exposed_name for spec in await pool.list_tools()}
    assert {
        "everything__echo",
        "everything__get-tiny-image",
        "everything__get-resource-reference",
    } <= names

    async def call(tool: str, arguments: dict) -> str:
        outcome = await pool.call_tool(
            f"everything__{tool}", arguments, context=CONTEXT, idempotency_key=tool
        )
        assert not outcome.is_error
        return outcome.text

    assert await call("echo", {"message": "hi"}) == "Echo: hi"
    image = await call("get-tiny-image", {})
    assert "[image: image/png, " in image and "iVBOR" not in image  # no base64 for the model
    resource = await call("get-resource-reference", {"resourceType": "Text", "resourceId": 2})
    assert "[resource: demo://resource/dynamic/text/2]" in resource
    assert "Resource 2" in resource
    links = await call("get-resource-links", {"count": 2})
    assert links.count("[resource link: ") == 2
    structured = json.loads(await call("get-structured-content", {"location": "Chicago"}))
    assert structured["conditions"] == "Light rain / drizzle"


@pytest.fixture(scope="module")
def everything_http() -> Iterator[EverythingHttpServer]:
    if not node_available():
        pytest.skip("node or server-everything missing")
    with EverythingHttpServer() as server:
        yield server


@needs_node
async def test_server_everything_over_streamable_http(
    make_pool: PoolFactory, everything_http: EverythingHttpServer
) -> None:
    pool = await make_pool(http_entry("everything", everything_http.url()))
    outcome = await pool.call_tool(
        "everything__get-sum", {"a": 2, "b": 40}, context=CONTEXT, idempotency_key="s1"
    )
    assert not outcome.is_error
    assert "42" in outcome.text
    assert connects(pool, "everything") == 1
