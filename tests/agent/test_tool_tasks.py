"""agent.tool_tasks, through the activities that use it (`tool_call`, `poll_tool_task`,
`answer_tool_task`), with a server that answers with tasks (tests.support.task_mcp, the
`io.modelcontextprotocol/tasks` extension), on Azurite and loopback: a task is recorded once and
never sent again, its result is stored like any tool result, and each way a task can end without
completing reaches the model by name. A task that asks for input (agent.task_input, the
`greeting_card` tool): the request becomes one question carrying the task id and request key,
asked once however often the poll is retried; its answer (or, unanswered, a decline) reaches the
server in one `tasks/update`, sent once however often the activity is retried; the task's result
uses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from mcp_types import INTERNAL_ERROR, REQUEST_TIMEOUT

from agent import activities, tool_tasks
from agent.contracts import (
    AnswerTaskInput,
    FailedToolCall,
    ModelStepInput,
    PollTaskInput,
    RunRef,
    TaskAnswered,
    TaskPoll,
    ToolCallInput,
)
from agent.errors import ToolTimeout, ToolTransportError
from agent.mcp.pool import TASK_NOT_WANTED
from agent.runtime import Runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import AsgiServer, http_entry, mcp_servers_json
from storage.conversations import ConversationRef, StoredMessage, ToolTaskRecord
from storage.questions import Answer
from tests.agent.conftest import new_run, runtime_on
from tests.support.task_mcp import NAME_KEY, NAME_REQUEST, TaskBoard, task_http_app

CONTAINER = "tool-task-activities-test"
TOOL = "tasks__slow_report"
CARD_TOOL = "tasks__greeting_card"


@pytest.fixture(scope="module")
def board_and_server() -> Iterator[tuple[TaskBoard, AsgiServer]]:
    board = TaskBoard(duration_ms=10_000)
    with AsgiServer(lambda: task_http_app(board)) as server:
        yield board, server


@pytest.fixture
def board(board_and_server: tuple[TaskBoard, AsgiServer]) -> TaskBoard:
    board, _ = board_and_server
    return board.reset(duration_ms=10_000)


@pytest_asyncio.fixture(scope="module")
async def rt(
    azurite: AzuriteInstance, model: FakeOpenAI, board_and_server: tuple[TaskBoard, AsgiServer]
) -> AsyncIterator[Runtime]:
    _, server = board_and_server
    servers = mcp_servers_json(http_entry("tasks", server.url()))
    settings = {"MCP_TASK_TIMEOUT_SECONDS": "600", "MCP_TASK_POLL_MAX_SECONDS": "30"}
    async with runtime_on(azurite, model, CONTAINER, servers, **settings) as runtime:
        yield runtime


async def proposed_call(rt: Runtime, model: FakeOpenAI) -> tuple[RunRef, str]:
    run = await new_run(rt, "user:tasks")
    model.brain.call_tools((TOOL, {"topic": "lakes"}))
    summary = await activities.model_step(ModelStepInput(run, 1).to_dict(), rt)
    [call_id] = summary["tool_call_ids"]
    return run, call_id


async def started_task(rt: Runtime, model: FakeOpenAI) -> tuple[RunRef, str, dict[str, Any]]:
    run, call_id = await proposed_call(rt, model)
    call = ToolCallInput(run, 1, call_id, may_defer=True, may_await_task=True)
    summary = await activities.tool_call(call.to_dict(), rt)
    return run, call_id, summary


async def poll(rt: Runtime, run: RunRef, call_id: str, n: int, give_up: bool = False) -> TaskPoll:
    job = PollTaskInput(run, 1, call_id, n, give_up=give_up)
    return TaskPoll.from_dict(await tool_tasks.poll_tool_task(job.to_dict(), rt))


async def tool_results(rt: Runtime, run: RunRef) -> list[StoredMessage]:
    ref = ConversationRef(run.owner, run.conversation_id)
    return [m for m in await rt.store.read_messages(ref) if m.role == "tool"]


async def test_a_call_answered_with_a_task_is_recorded_and_comes_back_pending(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, summary = await started_task(rt, model)
    task = summary["task"]
    assert (task["task_id"], task["server"], task["status"]) == ("task-1", "tasks", "working")
    assert task["poll_after_seconds"] == 5.0  # the server's pollInterval
    assert task["timeout_seconds"] == 600
    ref = ConversationRef(run.owner, run.conversation_id)
    [record] = await rt.store.list_tool_tasks(ref, run.run_id)
    assert (record.call_id, record.task_id, record.ttl_ms) == (call_id, "task-1", 3_600_000)
    assert await tool_results(rt, run) == []


async def test_a_retried_tool_call_polls_its_task_and_never_sends_the_call_again(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, first = await started_task(rt, model)
    again = ToolCallInput(run, 1, call_id, may_defer=True, may_await_task=True)
    second = await activities.tool_call(again.to_dict(), rt)
    assert second["task"]["task_id"] == first["task"]["task_id"]
    assert board.created == ["task-1"]


async def test_polls_report_progress_then_store_the_tasks_result_as_the_tool_result(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, _ = await started_task(rt, model)
    working = await poll(rt, run, call_id, 0)
    assert working.pending is not None and working.pending.status == "working"
    assert "5 of 10 s" not in str(working.to_dict())  # the server's words stay out of history
    [told] = [e for e in await rt.events.recorded(_ref(run), run.run_id) if e.type == "task_status"]
    assert told.data["status_message"] == "5 of 10 s"  # the run view reads them here
    done = await poll(rt, run, call_id, 1)
    assert (done.outcome, done.pending) == ("completed", None)
    [result] = await tool_results(rt, run)
    assert (result.content, result.is_error) == ("Report on lakes: all good.", False)
    again = await poll(rt, run, call_id, 2)  # a retried poll: the result is stored once
    assert again.outcome == "completed" and len(await tool_results(rt, run)) == 1
    assert board.gets["task-1"] == 2


async def test_a_server_without_a_poll_interval_is_polled_with_growing_waits(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    board.poll_interval_ms, board.stalled = None, True
    run, call_id, summary = await started_task(rt, model)
    waits = [summary["task"]["poll_after_seconds"]]
    for n in range(3):
        polled = await poll(rt, run, call_id, n)
        assert polled.pending is not None
        waits.append(polled.pending.poll_after_seconds)
    assert waits == [1.0, 2.0, 4.0, 8.0]


async def test_a_task_past_our_timeout_is_cancelled_on_the_server_and_named_timed_out(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    board.stalled = True
    run, call_id, _ = await started_task(rt, model)
    ended = await poll(rt, run, call_id, 0, give_up=True)
    assert ended.outcome == "task_timed_out"
    assert board.cancelled == ["task-1"]
    [result] = await tool_results(rt, run)
    assert result.is_error and result.content.startswith("task_timed_out: ")


async def test_a_task_cancelled_on_the_server_reaches_the_model_as_cancelled(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    board.stalled = True
    run, call_id, _ = await started_task(rt, model)
    board.tasks["task-1"].status = "cancelled"
    assert (await poll(rt, run, call_id, 0)).outcome == "task_cancelled"
    [result] = await tool_results(rt, run)
    assert result.is_error and result.content.startswith("task_cancelled: ")


async def test_a_task_the_server_no_longer_knows_has_expired(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, _ = await started_task(rt, model)
    board.tasks.clear()  # its TTL passed on the server
    assert (await poll(rt, run, call_id, 0)).outcome == "task_expired"
    [result] = await tool_results(rt, run)
    assert result.is_error and result.content.startswith("task_expired: ")


@pytest.mark.parametrize(
    ("code", "raised"), [(REQUEST_TIMEOUT, ToolTimeout), (INTERNAL_ERROR, ToolTransportError)]
)
async def test_a_poll_failing_for_another_reason_than_an_unknown_task_is_asked_again_later(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard, code: int, raised: type[Exception]
):
    run, call_id, _ = await started_task(rt, model)
    board.get_error = code
    with pytest.raises(raised):  # the activity fails: the orchestrator polls again next round
        await poll(rt, run, call_id, 0)
    assert await tool_results(rt, run) == []
    board.get_error = None
    assert (await poll(rt, run, call_id, 1)).pending is not None


async def test_a_run_that_cannot_wait_cancels_the_task_its_call_started(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id = await proposed_call(rt, model)
    summary = await activities.tool_call(
        ToolCallInput(run, 1, call_id, may_defer=True).to_dict(), rt
    )
    assert summary["is_error"] is True and "task" not in summary
    assert board.cancelled == ["task-1"]
    [result] = await tool_results(rt, run)
    assert result.content == tool_tasks.TASK_NOT_AWAITED


async def test_cancelling_a_runs_tasks_skips_those_with_a_result(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, _ = await started_task(rt, model)
    ref = ConversationRef(run.owner, run.conversation_id)
    assert await tool_tasks.cancel_run_tasks(rt, ref, run.run_id) == 1
    assert board.cancelled == ["task-1"]
    board.tasks["task-1"].status = "working"
    board.stalled = False
    await poll(rt, run, call_id, 0)
    await poll(rt, run, call_id, 1)  # completed: its result is stored
    assert await tool_tasks.cancel_run_tasks(rt, ref, run.run_id) == 0
    assert board.cancelled == ["task-1"]


async def test_a_task_that_cannot_be_cancelled_for_any_reason_leaves_the_others_cancelled(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard, monkeypatch: pytest.MonkeyPatch
):
    board.stalled = True
    run, _, _ = await started_task(rt, model)
    model.brain.call_tools((TOOL, {"topic": "rivers"}))
    summary = await activities.model_step(ModelStepInput(run, 2).to_dict(), rt)
    [second] = summary["tool_call_ids"]
    call = ToolCallInput(run, 2, second, may_defer=True, may_await_task=True)
    await activities.tool_call(call.to_dict(), rt)
    cancel = rt.mcp.cancel_task

    async def broken_for_the_first(server: str, task_id: str) -> bool:
        if task_id == "task-1":  # a bug, not a transport failure: still not the cancel's end
            raise RuntimeError("unexpected")
        return await cancel(server, task_id)

    monkeypatch.setattr(rt.mcp, "cancel_task", broken_for_the_first)
    ref = ConversationRef(run.owner, run.conversation_id)
    assert await tool_tasks.cancel_run_tasks(rt, ref, run.run_id) == 1
    assert board.cancelled == ["task-2"]


def failing_to_record(rt: Runtime, monkeypatch: pytest.MonkeyPatch, event_type: str) -> None:
    """The event log fails any write holding `event_type` (a Blob error, a crash): once."""
    append = rt.events.append

    async def append_or_fail(ref: ConversationRef, run_id: str, new: Any, **options: Any) -> Any:
        if any(event.type == event_type for event in new):
            monkeypatch.setattr(rt.events, "append", append)
            raise RuntimeError("the event log failed")
        return await append(ref, run_id, new, **options)

    monkeypatch.setattr(rt.events, "append", append_or_fail)


async def recorded_types(rt: Runtime, run: RunRef) -> list[str]:
    return [event.type for event in await rt.events.recorded(_ref(run), run.run_id)]


def _ref(run: RunRef) -> ConversationRef:
    return ConversationRef(run.owner, run.conversation_id)


async def test_a_repoll_after_the_result_was_stored_still_records_the_tasks_end(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard, monkeypatch: pytest.MonkeyPatch
):
    run, call_id, _ = await started_task(rt, model)
    await poll(rt, run, call_id, 0)
    failing_to_record(rt, monkeypatch, "task_finished")
    with pytest.raises(RuntimeError):
        await poll(rt, run, call_id, 1)  # the result is stored, its events are not
    assert "task_finished" not in await recorded_types(rt, run)
    assert (await poll(rt, run, call_id, 2)).outcome == "completed"
    types_ = await recorded_types(rt, run)
    assert types_.count("task_finished") == 1 and types_.count("tool_call_completed") == 1


async def test_a_retried_tool_call_that_finds_its_task_records_the_tasks_start(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard, monkeypatch: pytest.MonkeyPatch
):
    run, call_id = await proposed_call(rt, model)
    call = ToolCallInput(run, 1, call_id, may_defer=True, may_await_task=True)
    failing_to_record(rt, monkeypatch, "task_started")
    with pytest.raises(RuntimeError):
        await activities.tool_call(call.to_dict(), rt)  # the task is recorded, its event is not
    await activities.tool_call(call.to_dict(), rt)
    assert (await recorded_types(rt, run)).count("task_started") == 1
    assert board.created == ["task-1"]


async def test_a_task_started_beside_the_one_recorded_for_the_call_is_cancelled_on_the_server(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id = await proposed_call(rt, model)
    # Another execution of the same activity recorded its task first.
    theirs = ToolTaskRecord(run.run_id, 1, call_id, "tasks", "task-theirs", "2026-01-01T00:00:00Z")
    await rt.store.put_tool_task(_ref(run), theirs)
    call = ToolCallInput(run, 1, call_id, may_defer=True, may_await_task=True)
    summary = await activities.tool_call(call.to_dict(), rt)
    assert summary["task"]["task_id"] == "task-theirs"
    assert board.cancelled == ["task-1"]


async def test_a_call_whose_polling_failed_for_good_has_its_task_cancelled_by_the_next_step(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    board.stalled = True
    run, call_id, _ = await started_task(rt, model)
    model.brain.answer("The report could not be had.")
    gave_up = (FailedToolCall(call_id, "MCP server 'tasks' is unreachable"),)
    await activities.model_step(ModelStepInput(run, 2, failed_tool_calls=gave_up).to_dict(), rt)
    assert board.cancelled == ["task-1"]


async def test_a_caller_outside_a_run_never_receives_a_task_and_the_task_is_cancelled(
    rt: Runtime, board: TaskBoard
):
    outcome = await rt.mcp.call_tool(TOOL, {"topic": "tides"}, context={}, idempotency_key="k-1")
    assert (outcome.is_error, outcome.task) == (True, None)
    assert outcome.text == TASK_NOT_WANTED
    assert board.cancelled == ["task-1"]


# --- a task that asks for input (agent.task_input) ----------------------------------------------


async def card_task(rt: Runtime, model: FakeOpenAI) -> tuple[RunRef, str]:
    run = await new_run(rt, "user:cards")
    model.brain.call_tools((CARD_TOOL, {"occasion": "birthday"}))
    summary = await activities.model_step(ModelStepInput(run, 1).to_dict(), rt)
    [call_id] = summary["tool_call_ids"]
    call = ToolCallInput(run, 1, call_id, may_defer=True, may_await_task=True)
    started = await activities.tool_call(call.to_dict(), rt)
    assert started["task"]["task_id"] == "task-1"
    return run, call_id


async def asked_card(rt: Runtime, model: FakeOpenAI) -> tuple[RunRef, str, str]:
    """A card task whose first poll asked its one question: (run, call id, question id)."""
    run, call_id = await card_task(rt, model)
    polled = await poll(rt, run, call_id, 0)
    assert polled.asked is not None
    [question_id] = polled.asked.question_ids
    return run, call_id, question_id


async def answer(rt: Runtime, run: RunRef, call_id: str, question_ids: tuple[str, ...]) -> Any:
    job = AnswerTaskInput(run, 1, call_id, question_ids)
    return TaskAnswered.from_dict(await tool_tasks.answer_tool_task(job.to_dict(), rt))


async def test_a_task_waiting_for_input_becomes_a_question_with_its_task_and_request_key(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id = await card_task(rt, model)
    polled = await poll(rt, run, call_id, 0)
    assert polled.pending is not None and polled.pending.status == "input_required"
    assert polled.asked is not None
    [question_id] = polled.asked.question_ids
    question = await rt.questions.question(_ref(run), run.run_id, question_id)
    assert question is not None
    assert (question.task_id, question.request_key) == ("task-1", NAME_KEY)
    assert (question.call_id, question.tool_name) == (call_id, CARD_TOOL)
    assert question.message == NAME_REQUEST["params"]["message"]
    assert question.deadline == polled.asked.deadline
    open_now = await rt.questions.open_question(_ref(run), run.run_id, datetime.now(UTC))
    assert open_now == question  # what GET /api/runs/{id} shows as pending_input


async def test_a_retried_poll_never_asks_twice(rt: Runtime, model: FakeOpenAI, board: TaskBoard):
    run, call_id = await card_task(rt, model)
    first = await poll(rt, run, call_id, 0)
    again = await poll(rt, run, call_id, 0)  # the same poll, retried
    assert first.asked is not None and again.asked == first.asked
    asked, _answered = await rt.questions._listing(_ref(run), run.run_id)
    assert asked == list(first.asked.question_ids)


async def test_the_answer_reaches_the_task_once_however_often_it_is_sent_and_the_result_uses_it(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, question_id = await asked_card(rt, model)
    accept = Answer("accept", datetime.now(UTC).isoformat(), "caller", {"name": "Ada"})
    await rt.questions.answer(_ref(run), run.run_id, question_id, accept)
    assert (await answer(rt, run, call_id, (question_id,))).sent
    assert (await answer(rt, run, call_id, (question_id,))).sent  # a retried activity
    assert board.updates == [
        ("task-1", {NAME_KEY: {"action": "accept", "content": {"name": "Ada"}}})
    ]
    outcomes = [(await poll(rt, run, call_id, n)).outcome for n in (1, 2)]
    assert outcomes == [None, "completed"]  # 10 s of task clock at 5 s a poll
    [result] = await tool_results(rt, run)
    assert result.content == "A birthday card for Ada."


async def test_a_question_nobody_answered_is_declined_when_the_answers_are_sent(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, question_id = await asked_card(rt, model)
    await answer(rt, run, call_id, (question_id,))  # the orchestrator's deadline passed
    recorded = await rt.questions.answer_of(_ref(run), run.run_id, question_id)
    assert recorded is not None and (recorded.action, recorded.by) == ("decline", "deadline")
    assert board.updates == [("task-1", {NAME_KEY: {"action": "decline"}})]


async def test_a_task_asking_for_input_this_client_cannot_give_is_cancelled_and_the_model_told(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    board.input_request = {"method": "sampling/createMessage", "params": {"messages": []}}
    run, call_id = await card_task(rt, model)
    polled = await poll(rt, run, call_id, 0)
    assert polled.outcome == "task_input_unsupported"
    assert board.cancelled == ["task-1"]
    [result] = await tool_results(rt, run)
    assert result.is_error and "sampling/createMessage" in (result.content or "")
