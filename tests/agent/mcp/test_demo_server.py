"""The demo MCP server's tools, through the SDK's in-process client: safe arithmetic, a file
sandbox that cannot be escaped, deterministic mock weather, the knowledge base, counters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client

from samples.demo_mcp import build_server
from samples.demo_mcp.__main__ import parse_args
from samples.demo_mcp.calculator import CalculationError, evaluate
from samples.demo_mcp.sandbox import SandboxError, resolve_inside


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "sandbox"
    root.mkdir()
    return root


async def call(
    sandbox: Path, tool: str, arguments: dict, meta: dict | None = None
) -> tuple[bool, str]:
    async with Client(build_server(sandbox_dir=sandbox)) as client:
        result = await client.call_tool(tool, arguments, meta=meta)
    return result.is_error, result.content[0].text


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("-2 ** 2", -4),
        ("7 // 2 + 7 % 2", 4),
        ("1 / 4", 0.25),
        ("2 ** 10", 1024),
    ],
)
def test_the_calculator_does_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("__import__('os').system('id')", "unsupported element: Call"),
        ("x + 1", "unsupported element: Name"),
        ("(1).real", "unsupported element: Attribute"),
        ("'a' * 3", "unsupported element: Constant"),
        ("9 ** 9 ** 9", "exponent larger than"),
        ("1 / 0", "division by zero"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 201, "longer than 200"),
        ("(-8) ** 0.5", "not a real number"),
    ],
)
def test_the_calculator_refuses_anything_else(expression: str, complaint: str) -> None:
    with pytest.raises(CalculationError, match=complaint):
        evaluate(expression)


async def test_calculate_reports_a_refusal_to_the_model(sandbox: Path) -> None:
    assert await call(sandbox, "calculate", {"expression": "6 * 7"}) == (False, "6 * 7 = 42")
    is_error, text = await call(sandbox, "calculate", {"expression": "open('/etc/passwd')"})
    assert is_error and "cannot calculate: unsupported element: Call" in text


async def test_files_round_trip_inside_the_sandbox(sandbox: Path) -> None:
    assert await call(
        sandbox, "write_text_file", {"path": "notes/today.txt", "content": "héllo"}
    ) == (
        False,
        "wrote 6 bytes to notes/today.txt",
    )
    assert (sandbox / "notes" / "today.txt").read_text(encoding="utf-8") == "héllo"
    assert await call(sandbox, "read_text_file", {"path": "notes/today.txt"}) == (False, "héllo")


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
        ("read_text_file", {"path": path}),
        ("write_text_file", {"path": path, "content": "x"}),
    ):
        is_error, text = await call(sandbox, tool, arguments)
        assert is_error, tool
        assert complaint in text


async def test_symlinks_cannot_lead_out_of_the_sandbox(sandbox: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    (sandbox / "link.txt").symlink_to(secret)
    (sandbox / "linkdir").symlink_to(tmp_path, target_is_directory=True)

    for arguments in ({"path": "link.txt"}, {"path": "linkdir/secret.txt"}):
        is_error, text = await call(sandbox, "read_text_file", arguments)
        assert is_error and "leads outside the sandbox" in text
    is_error, _ = await call(
        sandbox, "write_text_file", {"path": "linkdir/planted.txt", "content": "x"}
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

    is_error, text = await call(sandbox, "read_text_file", {"path": "hard.txt"})
    assert is_error and "more than one hard link" in text
    assert "top secret" not in text
    is_error, text = await call(
        sandbox, "write_text_file", {"path": "hard.txt", "content": "owned"}
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
        is_error, text = await call(sandbox, "read_text_file", {"path": path})
        assert is_error and "plain file" in text, path
        is_error, text = await call(sandbox, "write_text_file", {"path": path, "content": "x"})
        assert is_error and ("plain file" in text or "symlink" in text), path
    assert (sandbox / "real.txt").read_text(encoding="utf-8") == "ok"


async def test_a_socket_inside_the_sandbox_is_refused(sandbox: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sandbox / "sock"))
        for tool, arguments in (
            ("read_text_file", {"path": "sock"}),
            ("write_text_file", {"path": "sock", "content": "x"}),
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
        await client.call_tool("write_text_file", {"path": "a.txt", "content": "env"})
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


async def test_the_knowledge_base_answers_from_its_json_file(sandbox: Path) -> None:
    _, answer = await call(
        sandbox, "ask_knowledge_base", {"question": "How many vacation days do I get?"}
    )
    assert "25 days of paid vacation" in answer
    _, miss = await call(sandbox, "ask_knowledge_base", {"question": "zzz qqq"})
    assert miss.startswith("No knowledge base entry matches. Known topics: vacation")


async def test_the_topics_resource_and_the_prompt(sandbox: Path) -> None:
    async with Client(build_server(sandbox_dir=sandbox)) as client:
        resource = await client.read_resource("kb://topics")
        prompt = await client.get_prompt("ask_about_policy", {"topic": "expenses"})
    topics = json.loads(resource.contents[0].text)
    assert {"topic": "expenses", "question": "How do I file an expense report?"} in topics
    assert "policy on expenses" in prompt.messages[0].content.text


async def test_the_counter_counts_and_replays_by_idempotency_key(sandbox: Path) -> None:
    async with Client(build_server(sandbox_dir=sandbox)) as client:

        async def count(meta: dict | None) -> dict:
            return (
                await client.call_tool("count_call", {"key": "k"}, meta=meta)
            ).structured_content

        assert await count(None) == {"key": "k", "count": 1, "replayed": False}
        assert await count(None) == {"key": "k", "count": 2, "replayed": False}
        assert await count({"idempotency_key": "once"}) == {
            "key": "k",
            "count": 3,
            "replayed": False,
        }
        assert await count({"idempotency_key": "once"}) == {
            "key": "k",
            "count": 3,
            "replayed": True,
        }


async def test_system_info_describes_this_process(sandbox: Path) -> None:
    _, text = await call(sandbox, "system_info", {})
    assert json.loads(text)["process_id"] == os.getpid()


def test_the_command_line_picks_transport_and_port() -> None:
    args = parse_args(["--transport", "streamable-http", "--port", "8123"])
    assert (args.transport, args.port, args.host) == ("streamable-http", 8123, "127.0.0.1")
    with pytest.raises(SystemExit):
        parse_args(["--transport", "websocket"])
