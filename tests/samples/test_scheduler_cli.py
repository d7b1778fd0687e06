"""`python -m samples.scheduler_mcp`: starts, serves, delivers, stops, and logs no secrets or text."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx2

from devkit.scheduler import (
    API_KEY,
    CLIENT_ID,
    WEBHOOK_SECRET,
    WebhookReceiver,
    free_port,
    mcp_session,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 20.0
SECRET_TEXT = "Ask Ada about the quarterly numbers"
FUNCTION_KEY = "function-key-that-must-not-be-logged"


def scheduler_env(**overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "SCHEDULER_CLIENT_ID": CLIENT_ID,
        "SCHEDULER_API_KEY": API_KEY,
        "SCHEDULER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **overrides,
    }


@asynccontextmanager
async def scheduler_process(port: int, state: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "samples.scheduler_mcp",
        "--port",
        str(port),
        "--state",
        str(state),
        "--tick-seconds",
        "0.05",
        cwd=REPO_ROOT,
        env=scheduler_env(),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_until(stream: asyncio.StreamReader, marker: bytes, seen: bytearray) -> None:
    while marker not in seen:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"the process ended before printing {marker!r}: {seen.decode()}")
        seen.extend(line)


async def test_the_module_serves_mcp_delivers_and_logs_no_secret_or_conversation_text(
    tmp_path: Path, receiver: WebhookReceiver
):
    port = free_port()
    log = bytearray()
    async with scheduler_process(port, tmp_path / "cli.sqlite3") as process:
        assert process.stderr is not None
        await asyncio.wait_for(
            read_until(process.stderr, b"Application startup complete", log), START_SECONDS
        )
        url = f"http://127.0.0.1:{port}/mcp"
        async with httpx2.AsyncClient() as http:
            assert (await http.post(url, json={})).status_code == 401
        async with mcp_session(url) as session:
            arguments = {
                "conversation_text": SECRET_TEXT,
                "scheduled_time": datetime.now(UTC).isoformat(),
                "endpoint": receiver.url(query=f"code={FUNCTION_KEY}"),
                "conversation_id": "cli-1",
            }
            result = await session.call_tool("schedule_conversation", arguments)
            assert not result.is_error, result.content
            [callback] = await receiver.wait_for(1)
        assert callback.document["items"][0]["content"] == SECRET_TEXT
        process.send_signal(signal.SIGINT)
        _, rest = await asyncio.wait_for(process.communicate(), START_SECONDS)
        log.extend(rest)
    assert process.returncode == 0
    text = log.decode()
    assert "delivered webhook_id=" in text  # it does log what happened...
    for secret in (SECRET_TEXT, FUNCTION_KEY, API_KEY, WEBHOOK_SECRET.removeprefix("whsec_")):
        assert secret not in text  # ...but never the text, the callback key or the secrets


async def test_the_module_refuses_to_start_without_its_secrets_and_names_the_missing_one(
    tmp_path: Path,
):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "samples.scheduler_mcp",
        "--state",
        str(tmp_path / "x.sqlite3"),
        cwd=REPO_ROOT,
        env=scheduler_env(SCHEDULER_WEBHOOK_SECRET=""),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), START_SECONDS)
    assert process.returncode == 1
    assert b"SCHEDULER_WEBHOOK_SECRET" in stderr
