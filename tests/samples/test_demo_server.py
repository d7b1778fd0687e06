"""The demo MCP server's tools in detail, through the SDK's in-process client: the seed's
arithmetic with clear refusals, a file sandbox that cannot be escaped, deterministic mock
weather, the knowledge base, system information, the timestamped greeting, the command line.
(`test_demo_seed_surface.py` drives the whole surface over the real transports.)"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mcp import Client

from devstack.__main__ import DEMO_TOOL_LINES
from offline_model.brains import parse_tool_line
from samples.demo_mcp import build_server
from samples.demo_mcp.__main__ import parse_args
from samples.demo_mcp.sandbox import SandboxError, resolve_inside
from samples.demo_mcp.server import load_knowledge_base


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "sandbox"
    root.mkdir()
    return root


async def call(sandbox: Path, tool: str, arguments: dict) -> tuple[bool, str]:
    async with Client(build_server(sandbox_dir=sandbox)) as client:
        result = await client.call_tool(tool, arguments)
    return result.is_error, result.content[0].text


@pytest.mark.parametrize(
    ("operation", "a", "b", "text"),
    [
        ("add", 2, 3, "Result: 2 add 3 = 5"),
        ("subtract", 2, 3.5, "Result: 2 subtract 3.5 = -1.5"),
        ("multiply", 15, 8, "Result: 15 multiply 8 = 120"),
        ("divide", 100, 4, "Result: 100 divide 4 = 25"),
        ("divide", 1, 3, "Result: 1 divide 3 = 0.3333333333333333"),
        (" Multiply ", 6, 7, "Result: 6 multiply 7 = 42"),
        ("*", 6, 7, "Result: 6 multiply 7 = 42"),
    ],
)
async def test_calculate_does_the_seeds_four_operations(
    sandbox: Path, operation: str, a: float, b: float, text: str
) -> None:
    assert await call(sandbox, "calculate", {"operation": operation, "a": a, "b": b}) == (
        False,
        text,
    )


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"operation": "divide", "a": 1, "b": 0}, "division by zero"),
        (
            {"operation": "modulo", "a": 7, "b": 2},
            "unknown operation 'modulo'; use one of: add, subtract, multiply, divide",
        ),
        ({"operation": "multiply", "a": 1e308, "b": 10}, "not a finite number"),
    ],
)
async def test_calculate_refuses_with_an_error_result_the_model_can_read(
    sandbox: Path, arguments: dict, complaint: str
) -> None:
    is_error, text = await call(sandbox, "calculate", arguments)
    assert is_error
    assert complaint in text


async def test_calculate_tells_the_model_which_operations_exist(sandbox: Path) -> None:
    async with Client(build_server(sandbox_dir=sandbox)) as client:
        (tool,) = [t for t in (await client.list_tools()).tools if t.name == "calculate"]
    operation = tool.input_schema["properties"]["operation"]
    assert operation["enum"] == ["add", "subtract", "multiply", "divide"]
    assert tool.input_schema["required"] == ["operation", "a", "b"]


async def test_files_round_trip_inside_the_sandbox(sandbox: Path) -> None:
    assert await call(
        sandbox, "save_text_file", {"filename": "notes/today.txt", "content": "héllo"}
    ) == (
        False,
        "Successfully saved 6 bytes to notes/today.txt",
    )
    assert (sandbox / "notes" / "today.txt").read_text(encoding="utf-8") == "héllo"
    assert await call(sandbox, "read_text_file", {"filename": "notes/today.txt"}) == (
        False,
        "héllo",
    )


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        ("../outside.txt", "'..' is not allowed"),
        ("notes/../../outside.txt", "'..' is not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("C:\\Windows\\win.ini", "absolute paths are not allowed"),
        ("", "a non-empty relative path is required"),
        (".", "names the sandbox itself"),
    ],
)
async def test_paths_that_leave_the_sandbox_are_refused(
    sandbox: Path, path: str, complaint: str
) -> None:
    for tool, arguments in (
        ("read_text_file", {"filename": path}),
        ("save_text_file", {"filename": path, "content": "x"}),
    ):
        is_error, text = await call(sandbox, tool, arguments)
        assert is_error, tool
        assert complaint in text


async def test_symlinks_cannot_lead_out_of_the_sandbox(sandbox: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    (sandbox / "link.txt").symlink_to(secret)
    (sandbox / "linkdir").symlink_to(tmp_path, target_is_directory=True)

    for arguments in ({"filename": "link.txt"}, {"filename": "linkdir/secret.txt"}):
        is_error, text = await call(sandbox, "read_text_file", arguments)
        assert is_error and "leads outside the sandbox" in text
    is_error, _ = await call(
        sandbox, "save_text_file", {"filename": "linkdir/planted.txt", "content": "x"}
    )
    assert is_error
    assert not (tmp_path / "planted.txt").exists()
    assert secret.read_text(encoding="utf-8") == "top secret"


async def test_a_hard_link_to_a_file_outside_the_sandbox_is_neither_read_nor_overwritten(
    sandbox: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    os.link(secret, sandbox / "hard.txt")

    is_error, text = await call(sandbox, "read_text_file", {"filename": "hard.txt"})
    assert is_error and "more than one hard link" in text
    assert "top secret" not in text
    is_error, text = await call(
        sandbox, "save_text_file", {"filename": "hard.txt", "content": "owned"}
    )
    assert is_error and "more than one hard link" in text
    assert secret.read_text(encoding="utf-8") == "top secret"


async def test_fifos_and_symlinks_inside_the_sandbox_are_refused_for_read_and_write(
    sandbox: Path,
) -> None:
    os.mkfifo(sandbox / "pipe")
    (sandbox / "real.txt").write_text("ok", encoding="utf-8")
    (sandbox / "alias.txt").symlink_to(sandbox / "real.txt")

    for path in ("pipe", "alias.txt"):
        is_error, text = await call(sandbox, "read_text_file", {"filename": path})
        assert is_error and "plain file" in text, path
        is_error, text = await call(sandbox, "save_text_file", {"filename": path, "content": "x"})
        assert is_error and ("plain file" in text or "symlink" in text), path
    assert (sandbox / "real.txt").read_text(encoding="utf-8") == "ok"


async def test_a_socket_inside_the_sandbox_is_refused(sandbox: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sandbox / "sock"))
        for tool, arguments in (
            ("read_text_file", {"filename": "sock"}),
            ("save_text_file", {"filename": "sock", "content": "x"}),
        ):
            is_error, text = await call(sandbox, tool, arguments)
            assert is_error and "plain file" in text, tool


def test_a_symlink_inside_the_sandbox_that_stays_inside_is_fine(sandbox: Path) -> None:
    (sandbox / "real.txt").write_text("ok", encoding="utf-8")
    (sandbox / "alias.txt").symlink_to(sandbox / "real.txt")
    assert resolve_inside(sandbox.resolve(), "alias.txt") == (sandbox / "real.txt").resolve()
    with pytest.raises(SandboxError):
        resolve_inside(sandbox.resolve(), "../x")


async def test_the_sandbox_comes_from_the_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_MCP_SANDBOX", str(tmp_path / "from-env"))
    async with Client(build_server()) as client:
        await client.call_tool("save_text_file", {"filename": "a.txt", "content": "env"})
    assert (tmp_path / "from-env" / "a.txt").read_text(encoding="utf-8") == "env"


async def test_weather_is_mock_but_the_same_for_a_city_every_time(sandbox: Path) -> None:
    _, first = await call(sandbox, "get_weather", {"city": "Lisbon"})
    _, again = await call(sandbox, "get_weather", {"city": "Lisbon"})
    _, other = await call(sandbox, "get_weather", {"city": "Reykjavik"})
    assert first == again
    lisbon, reykjavik = json.loads(first), json.loads(other)
    assert lisbon["city"] == "Lisbon"
    assert {**lisbon, "city": ""} != {**reykjavik, "city": ""}  # the weather depends on the city
    assert -5 <= lisbon["temperature_c"] < 35
    assert lisbon["temperature_f"] == round(lisbon["temperature_c"] * 9 / 5 + 32)


async def test_weather_without_a_city_is_seattles_as_in_the_seed(sandbox: Path) -> None:
    _, default = await call(sandbox, "get_weather", {})
    _, seattle = await call(sandbox, "get_weather", {"city": "Seattle"})
    assert json.loads(default)["city"] == "Seattle"
    assert default == seattle
    is_error, text = await call(sandbox, "get_weather", {"city": "  "})
    assert is_error and "a city name is required" in text


async def test_the_knowledge_base_answers_one_question_from_its_json_file(sandbox: Path) -> None:
    _, answer = await call(
        sandbox, "get_knowledge_base", {"question": "How many vacation days do I get?"}
    )
    assert "25 days of paid vacation" in answer
    _, miss = await call(sandbox, "get_knowledge_base", {"question": "zzz qqq"})
    assert miss.startswith("No knowledge base entry matches. Known topics: vacation")


async def test_the_knowledge_base_without_a_question_returns_every_pair_as_the_seed_does(
    sandbox: Path,
) -> None:
    entries = load_knowledge_base()
    is_error, text = await call(sandbox, "get_knowledge_base", {})
    assert not is_error
    assert text.startswith("Here is the retrieved knowledge base:")
    assert f"Q{len(entries)}: {entries[-1]['question']}" in text
    assert all(entry["answer"] in text for entry in entries)


async def test_the_topics_resource_and_the_policy_prompt(sandbox: Path) -> None:
    async with Client(build_server(sandbox_dir=sandbox)) as client:
        resource = await client.read_resource("kb://topics")
        prompt = await client.get_prompt("ask_about_policy", {"topic": "expenses"})
    topics = json.loads(resource.contents[0].text)
    assert {"topic": "expenses", "question": "How do I file an expense report?"} in topics
    assert (
        "get_knowledge_base tool to find our policy on expenses" in prompt.messages[0].content.text
    )


async def test_system_info_has_the_seeds_fields(sandbox: Path) -> None:
    is_error, text = await call(sandbox, "get_system_info", {})
    info = json.loads(text)
    assert not is_error
    assert info["python_version"] == platform.python_version()
    assert info["cpu_count"] == os.cpu_count()
    assert set(info) == {
        "os", "os_version", "architecture", "processor", "python_version", "cpu_count",
        "memory_gb",
    }  # fmt: skip
    assert info["memory_gb"] is None or info["memory_gb"] > 0


async def test_greet_stamps_the_current_utc_time(sandbox: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    _, text = await call(sandbox, "greet", {"name": "Ada"})
    after = datetime.now(UTC)
    greeting, stamp = text.split(" Current time: ")
    assert greeting == "Hello, Ada!"
    stamped = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    assert before <= stamped <= after


def test_the_command_line_picks_transport_and_port() -> None:
    args = parse_args(["--transport", "streamable-http", "--port", "8123"], {})
    assert (args.transport, args.port, args.host) == ("streamable-http", 8123, "127.0.0.1")
    with pytest.raises(SystemExit):
        parse_args(["--transport", "websocket"])


def test_the_seeds_host_and_port_variables_set_the_defaults() -> None:
    seeds = {"MCP_SSE_HOST": "0.0.0.0", "MCP_SSE_PORT": "9001"}
    args = parse_args(["--transport", "sse", "--allow-remote"], seeds)
    assert (args.host, args.port) == ("0.0.0.0", 9001)
    args = parse_args(["--port", "8123"], {"MCP_SSE_PORT": "9001"})
    assert args.port == 8123  # the command line wins


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        ([], {"MCP_SSE_HOST": "0.0.0.0"}),  # as the seeds' documents set it
        (["--host", "0.0.0.0"], {}),
        (["--host", "::"], {}),
        (["--host", "192.168.1.20"], {}),
        (["--host", "myhost.example"], {}),
    ],
)
def test_a_non_loopback_host_is_refused_without_allow_remote(
    transport: str, argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--transport", transport, *argv], environ)
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "refusing to serve" in message and "--allow-remote" in message
    assert "save_text_file" in message
    allowed = parse_args(["--transport", transport, *argv, "--allow-remote"], environ)
    assert allowed.allow_remote and not allowed.host.startswith("127.")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_loopback_host_needs_no_flag(host: str) -> None:
    assert parse_args(["--transport", "sse", "--host", host], {}).host == host


def test_stdio_binds_nothing_so_the_seeds_host_variable_is_no_obstacle() -> None:
    assert parse_args([], {"MCP_SSE_HOST": "0.0.0.0"}).transport == "stdio"


async def test_the_tool_lines_devstack_prints_call_demo_tools_that_succeed(sandbox: Path) -> None:
    lines = ('/tool demo__greet {"name": "Ada"}', *DEMO_TOOL_LINES)
    async with Client(build_server(sandbox_dir=sandbox)) as client:
        available = [f"demo__{tool.name}" for tool in (await client.list_tools()).tools]
        for line in lines:
            call, problem = parse_tool_line(line, available)  # as the offline model reads it
            assert call is not None, problem
            tool = call.name.removeprefix("demo__")
            result = await client.call_tool(tool, json.loads(call.arguments))
            assert not result.is_error, line
