"""The demo server as seed 004 (`azure_mcp_server.py`) describes it, over each real transport
(streamable HTTP at `/mcp`, SSE at `/sse`, stdio): its tools, called the way the seed calls them,
its two `info://` resources and its two prompts; and no test helper in its catalog.

Each check runs in its own test over HTTP and SSE; over stdio (a process start each, ~2 s here)
all of them run in one session."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client

from devkit.mcp_servers import (
    DEMO_TOOLS,
    AsgiServer,
    demo_http_app,
    demo_sse_app,
    demo_stdio_command,
)
from samples.demo_mcp.guide import USAGE_EXAMPLES
from tests.support.helper_mcp import HELPER_TOOLS

SEED_RESOURCES = {"info://server-capabilities", "info://usage-examples"}
SEED_PROMPTS = {"calculation_prompt", "file_operations_prompt"}
READ_ONLY_TOOLS = DEMO_TOOLS - {"save_text_file"}

Check = Callable[[Client], Awaitable[None]]


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    result = await client.call_tool(tool, arguments)
    return bool(result.is_error), result.content[0].text


# --- the checks -------------------------------------------------------------------------------


async def the_demo_lists_the_seeds_tools_and_no_test_helper(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == DEMO_TOOLS
    assert not set(tools) & HELPER_TOOLS
    annotated = {name for name, tool in tools.items() if tool.annotations}
    read_only = {name for name in annotated if tools[name].annotations.read_only_hint}
    assert read_only == READ_ONLY_TOOLS


async def the_tools_take_the_seeds_parameters_and_defaults(client: Client) -> None:
    schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}

    def parameters(tool: str) -> dict[str, Any]:
        return {name: prop.get("default") for name, prop in schemas[tool]["properties"].items()}

    assert parameters("greet") == {"name": "world"}
    assert parameters("calculate") == {"operation": None, "a": None, "b": None}
    assert parameters("get_system_info") == {}
    assert parameters("save_text_file") == {"filename": None, "content": None}
    assert parameters("read_text_file") == {"filename": None}
    assert parameters("get_weather") == {"city": "Seattle"}
    assert parameters("get_knowledge_base") == {"question": ""}  # the seed's takes none


async def seed_style_calls_to_every_tool_succeed(client: Client) -> None:
    add = await call(client, "calculate", {"operation": "add", "a": 2, "b": 3})
    assert add == (False, "Result: 2 add 3 = 5")
    multiply = await call(client, "calculate", {"operation": "multiply", "a": 15, "b": 8})
    assert multiply == (False, "Result: 15 multiply 8 = 120")
    _, weather = await call(client, "get_weather", {})
    assert json.loads(weather)["city"] == "Seattle"
    _, greeting = await call(client, "greet", {"name": "John"})
    assert greeting.startswith("Hello, John! Current time: ")
    _, info = await call(client, "get_system_info", {})
    assert {"os", "python_version", "cpu_count"} <= set(json.loads(info))
    saved = await call(client, "save_text_file", {"filename": "notes.txt", "content": "15*8=120"})
    assert saved == (False, "Successfully saved 8 bytes to notes.txt")
    assert await call(client, "read_text_file", {"filename": "notes.txt"}) == (False, "15*8=120")
    is_error, knowledge = await call(client, "get_knowledge_base", {})
    assert not is_error and "vacation" in knowledge


async def a_division_by_zero_is_an_error_result_with_a_clear_text(client: Client) -> None:
    is_error, text = await call(client, "calculate", {"operation": "divide", "a": 10, "b": 0})
    assert is_error and "division by zero" in text


async def an_unknown_operation_is_an_error_result_naming_the_known_ones(client: Client) -> None:
    is_error, text = await call(client, "calculate", {"operation": "power", "a": 2, "b": 8})
    assert is_error
    assert "unknown operation 'power'; use one of: add, subtract, multiply, divide" in text


async def reading_a_file_outside_the_sandbox_is_an_error_result(client: Client) -> None:
    is_error, text = await call(client, "read_text_file", {"filename": "../../etc/passwd"})
    assert is_error and "'..' is not allowed" in text


async def both_info_resources_read(client: Client) -> None:
    listed = {str(resource.uri) for resource in (await client.list_resources()).resources}
    assert listed >= SEED_RESOURCES
    capabilities = (await client.read_resource("info://server-capabilities")).contents[0].text
    examples = (await client.read_resource("info://usage-examples")).contents[0].text
    assert all(tool in capabilities for tool in DEMO_TOOLS)
    assert examples.startswith('Example tool calls:\n1. greet(name="Azure OpenAI")')
    assert 'calculate(operation="add", a=10, b=5)' in examples


async def both_prompts_render(client: Client) -> None:
    assert {prompt.name for prompt in (await client.list_prompts()).prompts} >= SEED_PROMPTS
    calculation = await client.get_prompt("calculation_prompt")
    files = await client.get_prompt("file_operations_prompt")
    assert "(add, subtract, multiply, divide)" in calculation.messages[0].content.text
    assert "save text to files" in files.messages[0].content.text


async def every_usage_example_the_server_advertises_runs(client: Client) -> None:
    for tool, arguments, _ in USAGE_EXAMPLES:  # in order: the file is saved before it is read
        is_error, text = await call(client, tool, arguments)
        assert not is_error, f"{tool}: {text}"


CHECKS: tuple[Check, ...] = (
    the_demo_lists_the_seeds_tools_and_no_test_helper,
    the_tools_take_the_seeds_parameters_and_defaults,
    seed_style_calls_to_every_tool_succeed,
    a_division_by_zero_is_an_error_result_with_a_clear_text,
    an_unknown_operation_is_an_error_result_naming_the_known_ones,
    reading_a_file_outside_the_sandbox_is_an_error_result,
    both_info_resources_read,
    both_prompts_render,
    every_usage_example_the_server_advertises_runs,
)


# --- over each transport ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-seed-sandbox")


@pytest.fixture(scope="module")
def http_server(sandbox: Path) -> Iterator[AsgiServer]:
    with AsgiServer(lambda: demo_http_app(sandbox)) as server:
        yield server


@pytest.fixture(scope="module")
def sse_server(sandbox: Path) -> Iterator[AsgiServer]:
    with AsgiServer(lambda: demo_sse_app(sandbox)) as server:
        yield server


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_over_streamable_http(check: Check, http_server: AsgiServer) -> None:
    async with Client(http_server.url("/mcp")) as client:
        await check(client)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_over_sse(check: Check, sse_server: AsgiServer) -> None:
    async with Client(sse_client(sse_server.url("/sse"))) as client:
        await check(client)


async def test_every_check_over_stdio(sandbox: Path) -> None:
    command = demo_stdio_command(sandbox)
    parameters = StdioServerParameters(
        command=command.command, args=list(command.args), env=command.env, cwd=command.cwd
    )
    async with Client(parameters) as client:
        for check in CHECKS:
            await check(client)
