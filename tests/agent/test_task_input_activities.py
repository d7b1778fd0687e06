"""`poll_tool_task` and `answer_tool_task` with a task that asks for input (agent.task_input),
on Azurite and a real task server on loopback (tests.support.task_mcp's `greeting_card`): the
task's input request becomes one question carrying the task id and request key, asked once
however often the poll is retried; its answer (or, unanswered, a decline) reaches the server in
one `tasks/update`, sent once however often the activity is retried; the task's result uses it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent import activities
from agent.contracts import (
    AnswerTaskInput,
    ModelStepInput,
    RunRef,
    TaskAnswered,
    ToolCallInput,
)
from agent.runtime import Runtime
from devkit.fake_openai import FakeOpenAI
from storage.conversations import ConversationRef
from storage.questions import Answer
from tests.agent.conftest import new_run
from tests.agent.test_tool_task_activities import (
    board,
    board_and_server,
    poll,
    rt,
    tool_results,
)
from tests.support.task_mcp import NAME_KEY, NAME_REQUEST, TaskBoard

__all__ = ["board", "board_and_server", "rt"]  # fixtures, used by name

TOOL = "tasks__greeting_card"


async def card_task(rt: Runtime, model: FakeOpenAI) -> tuple[RunRef, str]:
    run = await new_run(rt, "user:cards")
    model.brain.call_tools((TOOL, {"occasion": "birthday"}))
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


def ref_of(run: RunRef) -> ConversationRef:
    return ConversationRef(run.owner, run.conversation_id)


async def answer(rt: Runtime, run: RunRef, call_id: str, question_ids: tuple[str, ...]) -> Any:
    job = AnswerTaskInput(run, 1, call_id, question_ids)
    return TaskAnswered.from_dict(await activities.answer_tool_task(job.to_dict(), rt))


async def test_a_task_waiting_for_input_becomes_a_question_with_its_task_and_request_key(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id = await card_task(rt, model)
    polled = await poll(rt, run, call_id, 0)
    assert polled.pending is not None and polled.pending.status == "input_required"
    assert polled.asked is not None
    [question_id] = polled.asked.question_ids
    question = await rt.questions.question(ref_of(run), run.run_id, question_id)
    assert question is not None
    assert (question.task_id, question.request_key) == ("task-1", NAME_KEY)
    assert (question.call_id, question.tool_name) == (call_id, TOOL)
    assert question.message == NAME_REQUEST["params"]["message"]
    assert question.deadline == polled.asked.deadline
    open_now = await rt.questions.open_question(ref_of(run), run.run_id, datetime.now(UTC))
    assert open_now == question  # what GET /api/runs/{id} shows as pending_input


async def test_a_retried_poll_never_asks_twice(rt: Runtime, model: FakeOpenAI, board: TaskBoard):
    run, call_id = await card_task(rt, model)
    first = await poll(rt, run, call_id, 0)
    again = await poll(rt, run, call_id, 0)  # the same poll, retried
    assert first.asked is not None and again.asked == first.asked
    asked, _answered = await rt.questions._listing(ref_of(run), run.run_id)
    assert asked == list(first.asked.question_ids)


async def test_the_answer_reaches_the_task_once_however_often_it_is_sent_and_the_result_uses_it(
    rt: Runtime, model: FakeOpenAI, board: TaskBoard
):
    run, call_id, question_id = await asked_card(rt, model)
    accept = Answer("accept", datetime.now(UTC).isoformat(), "caller", {"name": "Ada"})
    await rt.questions.answer(ref_of(run), run.run_id, question_id, accept)
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
    recorded = await rt.questions.answer_of(ref_of(run), run.run_id, question_id)
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
