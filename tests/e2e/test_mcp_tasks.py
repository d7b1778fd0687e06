"""Tool calls an MCP server runs as tasks (agent.mcp.tasks), through the local host in a child
process: the run waits on durable timers, polling the task, until it completes; a SIGKILL
mid-wait resumes polling the same task; a cancelled run cancels the task on the server.

The task server (tests.support.task_mcp) runs here, so its board survives the host's kill; its
tasks take 30 s on their own clock, which each poll moves on by the 5 s it told the client to
wait, so a task completes on its 6th poll while the host waits at most
MCP_TASK_POLL_MAX_SECONDS (0.2 s here) between polls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from agent.http.models import Run
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI, fake_openai
from devkit.mcp_servers import AsgiServer
from local_host.testing import HostProcess, wait_until
from offline_model.brains import OfflineBrain, ScriptedBrain
from tests.e2e.test_crash_recovery import ROOT, Client, host_env
from tests.support.task_mcp import TaskBoard, task_http_app

MESSAGE = '/tool tasks__slow_report {"topic": "rivers"}'
REPORT = "Report on rivers: all good."


@pytest.fixture(scope="module")
def board_and_server() -> Iterator[tuple[TaskBoard, AsgiServer]]:
    board = TaskBoard()
    with AsgiServer(lambda: task_http_app(board)) as server:
        yield board, server


@pytest.fixture
def board(board_and_server: tuple[TaskBoard, AsgiServer]) -> TaskBoard:
    board, _ = board_and_server
    return board.reset()


@pytest_asyncio.fixture(scope="module")
async def model() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(ScriptedBrain(fallback=OfflineBrain())) as fake:
        yield fake


@asynccontextmanager
async def host_with_tasks(
    azurite: AzuriteInstance, model: FakeOpenAI, server: AsgiServer, state: Path, **settings: str
) -> AsyncIterator[Client]:
    """The host in a child process with the task server as its one MCP server."""
    env = host_env(azurite, model, server.url())
    tasks = {"name": "tasks", "transport": {"type": "streamable_http", "url": server.url()}}
    env.update(MCP_SERVERS=json.dumps({"mcp_servers": [tasks]}), **settings)
    env["MCP_TASK_POLL_MAX_SECONDS"] = "0.2"
    async with (
        HostProcess(ROOT, state_path=state, env=env) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host)


@pytest_asyncio.fixture
async def client(
    azurite: AzuriteInstance,
    model: FakeOpenAI,
    board_and_server: tuple[TaskBoard, AsgiServer],
    tmp_path: Path,
) -> AsyncIterator[Client]:
    _, server = board_and_server
    async with host_with_tasks(azurite, model, server, tmp_path / "durable.sqlite3") as client:
        yield client


async def waiting_for_the_task(client: Client, run_id: str) -> dict[str, Any]:
    async def waiting() -> dict[str, Any] | None:
        status, body = await client.call("GET", f"/runs/{run_id}")
        return body if status == 200 and body.get("phase") == "waiting_for_task" else None

    return await wait_until(waiting, within=20, message="the run waits for the task")


async def tool_results(client: Client, conversation: str) -> list[str]:
    return [m[1] for m in await client.transcript(conversation) if m[0] == "tool"]


async def test_a_thirty_second_task_completes_and_its_result_reaches_the_model(
    client: Client, board: TaskBoard
):
    conversation, run_id = await client.start_turn(MESSAGE)
    assert (await client.finished(run_id))["status"] == "completed"
    assert await tool_results(client, conversation) == [REPORT]
    assert board.created == ["task-1"]
    assert board.gets["task-1"] == 6  # 30 s of task clock at the server's 5 s poll interval
    _, events = await client.call("GET", f"/runs/{run_id}/events?wait=0")
    kinds = [e["type"] for e in events["events"]]
    assert kinds.count("task_started") == 1
    assert kinds.count("task_status") == 5
    assert kinds.count("task_finished") == 1
    finished = next(e for e in events["events"] if e["type"] == "task_finished")
    assert (finished["task_id"], finished["outcome"]) == ("task-1", "completed")


async def test_a_waiting_run_shows_its_task_in_the_run_status(client: Client, board: TaskBoard):
    board.stalled = True
    _, run_id = await client.start_turn(MESSAGE)
    view = await waiting_for_the_task(client, run_id)
    Run.model_validate(view)  # as the OpenAPI document describes it
    assert view["status"] == "running"
    [task] = view["pending_tasks"]
    assert (task["task_id"], task["server"], task["status"]) == ("task-1", "tasks", "working")

    async def polled() -> dict[str, Any] | None:  # the server's words come from the event log
        status, body = await client.call("GET", f"/runs/{run_id}")
        tasks = body.get("pending_tasks") or [{}] if status == 200 else [{}]
        return tasks[0] if tasks[0].get("status_message") else None

    told = await wait_until(polled, within=20, message="the run shows the server's words")
    assert told["status_message"] == "0 of 30 s"
    board.stalled = False
    assert (await client.finished(run_id))["status"] == "completed"


async def test_a_host_killed_mid_wait_resumes_polling_the_same_task(
    client: Client, board: TaskBoard
):
    board.stalled = True
    conversation, run_id = await client.start_turn(MESSAGE)
    await waiting_for_the_task(client, run_id)
    client.host.kill()
    await client.host.wait_exit()
    board.stalled = False
    await client.host.start()
    assert (await client.finished(run_id))["status"] == "completed"
    assert board.created == ["task-1"]  # polled again after the restart, never sent again
    assert await tool_results(client, conversation) == [REPORT]


async def test_cancelling_a_run_cancels_its_task_on_the_server(client: Client, board: TaskBoard):
    board.stalled = True
    _, run_id = await client.start_turn(MESSAGE)
    await waiting_for_the_task(client, run_id)
    status, body = await client.call("POST", f"/runs/{run_id}/cancel")
    assert status == 202, body
    assert board.cancelled == ["task-1"]


async def test_a_task_past_the_runs_timeout_is_cancelled_and_the_model_told_it_timed_out(
    azurite: AzuriteInstance,
    model: FakeOpenAI,
    board_and_server: tuple[TaskBoard, AsgiServer],
    board: TaskBoard,
    tmp_path: Path,
):
    _, server = board_and_server
    board.stalled = True  # it never finishes
    state = tmp_path / "durable.sqlite3"
    async with host_with_tasks(
        azurite, model, server, state, MCP_TASK_TIMEOUT_SECONDS="1"
    ) as client:
        conversation, run_id = await client.start_turn(MESSAGE)
        assert (await client.finished(run_id))["status"] == "completed"
        [result] = await tool_results(client, conversation)
    assert result.startswith("task_timed_out: ")
    assert board.cancelled == ["task-1"]
