"""Sessions to stdio servers: a killed process is replaced, `aclose` ends the process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from agent.errors import ToolTransportError
from devkit.mcp_servers import REPO_ROOT, stdio_entry
from tests.agent.mcp.conftest import PoolFactory, connects
from tests.support.helper_mcp import helper_stdio_command

CONTEXT: dict[str, str] = {}


async def test_a_killed_stdio_server_is_restarted_on_the_next_call(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(stdio_entry("helper", helper_stdio_command(tmp_path)))

    async def server_pid() -> int:
        info = await pool.call_tool("helper__process_id", {}, context=CONTEXT, idempotency_key="i")
        return int(info.text)

    first = await server_pid()
    os.kill(first, signal.SIGKILL)
    with pytest.raises(ToolTransportError):
        await server_pid()
    second = await server_pid()
    assert second != first
    assert connects(pool, "helper") == 2


async def test_aclose_stops_the_sessions_and_their_processes(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(stdio_entry("helper", helper_stdio_command(tmp_path)))
    info = await pool.call_tool("helper__process_id", {}, context=CONTEXT, idempotency_key="i")
    pid = int(info.text)
    await pool.aclose()
    assert pool.status()[0].connected is False
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the server process is gone (reaped by the stdio transport)


async def test_python_means_the_apps_interpreter_with_the_apps_packages(
    make_pool: PoolFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run from a directory where `samples` is importable only through the app's PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    transport = {
        "type": "stdio",
        "command": "python",
        "args": ["-m", "samples.demo_mcp", "--sandbox", str(tmp_path)],
        "cwd": str(tmp_path),
    }
    pool = await make_pool({"name": "demo", "transport": transport})
    outcome = await pool.call_tool(
        "demo__greet", {"name": "py"}, context=CONTEXT, idempotency_key="p"
    )
    assert outcome.text.startswith("Hello, py! Current time: ")
