"""A tool call's task that asks for input (agent.task_input), through the local host in a child
process: the run shows `waiting_for_input` with the server's question while it waits holding
nothing; the answer over HTTP reaches the server in a `tasks/update` and the task's result uses
it; a decline, and no answer by the deadline (declined), reach it the same way.

The task server (tests.support.task_mcp) runs here: its `greeting_card` task reports
`input_required` with one elicitation request (key `name`) until a `tasks/update` answers it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.http.models import Run
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import AsgiServer
from local_host.testing import wait_until
from tests.e2e.test_crash_recovery import Client
from tests.e2e.test_mcp_tasks import board, board_and_server, host_with_tasks, model, tool_results
from tests.support.task_mcp import NAME_KEY, TaskBoard

__all__ = ["board", "board_and_server", "model"]  # fixtures, used by name

MESSAGE = '/tool tasks__greeting_card {"occasion": "birthday"}'
Servers = tuple[TaskBoard, AsgiServer]


@dataclass(frozen=True)
class Setup:
    azurite: AzuriteInstance
    model: FakeOpenAI
    server: AsgiServer
    state: Path


@pytest.fixture
def setup(
    azurite: AzuriteInstance, model: FakeOpenAI, board_and_server: Servers, tmp_path: Path
) -> Setup:
    _, server = board_and_server
    return Setup(azurite, model, server, tmp_path / "durable.sqlite3")


@asynccontextmanager
async def host(setup: Setup, approval_seconds: str = "60") -> AsyncIterator[Client]:
    async with host_with_tasks(
        setup.azurite,
        setup.model,
        setup.server,
        setup.state,
        AGENT_APPROVAL_TIMEOUT_SECONDS=approval_seconds,
    ) as client:
        yield client


async def asked(client: Client, run_id: str) -> dict[str, Any]:
    async def waiting() -> dict[str, Any] | None:
        status, body = await client.call("GET", f"/runs/{run_id}")
        return body if status == 200 and body["status"] == "waiting_for_input" else None

    return await wait_until(waiting, within=20, message="the run waits for input")


async def events_of(client: Client, run_id: str, kind: str) -> list[dict[str, Any]]:
    _, body = await client.call("GET", f"/runs/{run_id}/events?wait=0")
    return [e for e in body["events"] if e["type"] == kind]


async def test_a_tasks_question_is_answered_over_http_and_its_result_uses_the_answer(
    setup: Setup, board: TaskBoard
):
    async with host(setup) as client:
        conversation, run_id = await client.start_turn(MESSAGE)
        view = await asked(client, run_id)
        Run.model_validate(view)  # as the OpenAPI document describes it
        pending = view["pending_input"]
        assert pending["message"] == "Whose name goes on the card?"
        assert pending["requested_schema"]["required"] == ["name"]
        [task] = view["pending_tasks"]
        assert (task["task_id"], task["status"]) == ("task-1", "input_required")
        answer = {"action": "accept", "content": {"name": "Ada"}}
        status, body = await client.call("POST", f"/runs/{run_id}/input", json=answer)
        assert status == 202, body
        assert (await client.finished(run_id))["status"] == "completed"
        assert await tool_results(client, conversation) == ["A birthday card for Ada."]
        assert board.updates == [("task-1", {NAME_KEY: answer})]
        [answered] = await events_of(client, run_id, "input_answered")
        assert (answered["action"], answered["by"]) == ("accept", "caller")
        assert len(await events_of(client, run_id, "input_requested")) == 1


async def test_a_declined_question_reaches_the_task_as_a_decline(setup: Setup, board: TaskBoard):
    async with host(setup) as client:
        conversation, run_id = await client.start_turn(MESSAGE)
        await asked(client, run_id)
        status, body = await client.call(
            "POST", f"/runs/{run_id}/input", json={"action": "decline"}
        )
        assert status == 202, body
        assert (await client.finished(run_id))["status"] == "completed"
        [result] = await tool_results(client, conversation)
    assert result == "A birthday card with no name (the person declined)."
    assert board.updates == [("task-1", {NAME_KEY: {"action": "decline"}})]


async def test_no_answer_by_the_deadline_declines_the_tasks_question(
    setup: Setup, board: TaskBoard
):
    async with host(setup, approval_seconds="2") as client:
        conversation, run_id = await client.start_turn(MESSAGE)
        await asked(client, run_id)  # then nobody answers: the durable timer ends the wait
        assert (await client.finished(run_id))["status"] == "completed"
        [result] = await tool_results(client, conversation)
        [answered] = await events_of(client, run_id, "input_answered")
        status, problem = await client.call(
            "POST", f"/runs/{run_id}/input", json={"action": "decline"}
        )
    assert result == "A birthday card with no name (the person declined)."
    assert board.updates == [("task-1", {NAME_KEY: {"action": "decline"}})]
    assert (answered["action"], answered["by"]) == ("decline", "deadline")
    assert status == 409, problem  # the deadline's answer was the first


async def test_a_host_killed_while_a_task_waits_for_input_still_takes_the_answer(
    setup: Setup, board: TaskBoard
):
    async with host(setup) as client:
        conversation, run_id = await client.start_turn(MESSAGE)
        question_id = (await asked(client, run_id))["pending_input"]["question_id"]
        client.host.kill()
        await client.host.wait_exit()
        await client.host.start()
        assert (await asked(client, run_id))["pending_input"]["question_id"] == question_id
        answer = {"action": "accept", "content": {"name": "Grace"}, "question_id": question_id}
        status, body = await client.call("POST", f"/runs/{run_id}/input", json=answer)
        assert status == 202, body
        assert (await client.finished(run_id))["status"] == "completed"
        assert await tool_results(client, conversation) == ["A birthday card for Grace."]
    assert board.created == ["task-1"]  # polled again after the restart, never sent again
    assert board.updates == [
        ("task-1", {NAME_KEY: {"action": "accept", "content": {"name": "Grace"}}})
    ]


async def test_cancelling_a_run_whose_task_waits_for_input_cancels_the_task_and_the_question(
    setup: Setup, board: TaskBoard
):
    async with host(setup) as client:
        _, run_id = await client.start_turn(MESSAGE)
        await asked(client, run_id)
        status, body = await client.call("POST", f"/runs/{run_id}/cancel")
        assert status == 202, body
        status, problem = await client.call(
            "POST", f"/runs/{run_id}/input", json={"action": "decline"}
        )
    assert board.cancelled == ["task-1"]
    assert status == 409, problem
