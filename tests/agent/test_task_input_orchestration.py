"""A tool call's task that asks for input (version 4, agent.task_input): the orchestrator waits
for the answer holding nothing (an external event raced against a durable timer at the
question's deadline), then `answer_tool_task` sends the answers, and polling resumes. Replayed
through the local host's engine with scripted activities (answers built from the real contracts).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agent.contracts import AskedInput, PendingTask, TaskAnswered, TaskPoll, ToolCallSummary
from agent.loop import input_event
from tests.agent.test_orchestrators import TURN, final, tools
from tests.agent.test_task_orchestration import V4, pending, run
from tests.support.replay import DEFAULT_START_TIME, ExternalEvent

DEADLINE = DEFAULT_START_TIME + timedelta(hours=1)


def asking_task(asked: dict[int, AskedInput], polls_until_done: int):
    """tool_call answers a pending task; poll n answers `asked[n]` when given (the task waits
    for input), the task completes on poll `polls_until_done` (counted from 1)."""
    replies = iter([tools(1, "a"), final(2)])
    seen: list[tuple[str, Any]] = []
    task: PendingTask = pending("a", after=2.0)

    def call(name: str, data: Any) -> Any:
        seen.append((name, data))
        if name == "model_step":
            return next(replies)
        if name == "tool_call":
            return ToolCallSummary("a", False, task=task).to_dict()
        if name == "poll_tool_task":
            if data["poll"] + 1 >= polls_until_done:
                return TaskPoll("a", outcome="completed").to_dict()
            waiting = asked.get(data["poll"])
            state = "input_required" if waiting else "working"
            return TaskPoll("a", pending=PendingTask(**{**task.__dict__, "status": state}),
                            asked=waiting).to_dict()  # fmt: skip
        if name == "answer_tool_task":
            return TaskAnswered("a", True).to_dict()
        if name == "finish_turn":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return call, seen


def answered(question_id: str) -> ExternalEvent:
    """What POST /api/runs/{id}/input raises, once the run waits for it."""
    return ExternalEvent(input_event(question_id), {"question_id": question_id}, when_awaited=True)


def names(seen: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in seen]


def test_a_task_asking_for_input_waits_for_the_answer_then_sends_it_and_polls_on():
    asked = AskedInput(("q1",), DEADLINE.isoformat())
    activities, seen = asking_task({0: asked}, polls_until_done=3)
    events = [answered("q1")]
    result = V4.run("chat_turn", TURN.to_dict(), activities=activities, events=events)
    assert result.output["status"] == "completed"
    assert names(seen) == [
        "model_step", "tool_call", "poll_tool_task", "answer_tool_task",
        "poll_tool_task", "poll_tool_task", "model_step", "finish_turn",
    ]  # fmt: skip
    answer = next(data for name, data in seen if name == "answer_tool_task")
    assert (answer["call_id"], answer["question_ids"]) == ("a", ["q1"])
    assert result.virtual_time < DEADLINE  # the answer, not the deadline, ended the wait
    waiting = [s for s in result.custom_statuses if s.get("phase") == "waiting_for_input"]
    assert waiting and waiting[0]["question_ids"] == ["q1"]
    assert waiting[0]["tasks"][0]["status"] == "input_required"


def test_no_answer_by_the_deadline_sends_the_task_a_decline_at_the_deadline():
    asked = AskedInput(("q1",), DEADLINE.isoformat())
    activities, seen = asking_task({0: asked}, polls_until_done=2)
    result = run(V4, activities)
    assert result.output["status"] == "completed"
    assert names(seen).count("answer_tool_task") == 1
    assert result.virtual_time >= DEADLINE  # the durable timer at the deadline ended the wait


def test_an_answer_to_another_question_does_not_end_the_wait():
    asked = AskedInput(("q1",), DEADLINE.isoformat())
    activities, seen = asking_task({0: asked}, polls_until_done=2)
    events = [ExternalEvent(input_event("other"), {"question_id": "other"})]  # a late one
    result = V4.run("chat_turn", TURN.to_dict(), activities=activities, events=events)
    assert result.output["status"] == "completed"
    assert result.virtual_time >= DEADLINE  # q1 was never answered: its deadline ended the wait
    assert names(seen).count("answer_tool_task") == 1


def test_a_task_that_asks_twice_is_answered_twice_once_by_the_person_once_by_the_deadline():
    first = AskedInput(("q1",), DEADLINE.isoformat())
    later = DEADLINE + timedelta(hours=1)
    second = AskedInput(("q2",), later.isoformat())
    activities, seen = asking_task({0: first, 1: second}, polls_until_done=3)
    events = [answered("q1")]
    result = V4.run("chat_turn", TURN.to_dict(), activities=activities, events=events)
    assert result.output["status"] == "completed"
    sent = [data["question_ids"] for name, data in seen if name == "answer_tool_task"]
    assert sent == [["q1"], ["q2"]]
    assert result.virtual_time >= later


def test_an_answer_that_cannot_be_sent_fails_the_call_and_the_turn_goes_on():
    asked = AskedInput(("q1",), DEADLINE.isoformat())
    activities, seen = asking_task({0: asked}, polls_until_done=5)

    def failing(name: str, data: Any) -> Any:
        if name == "answer_tool_task":
            seen.append((name, data))
            raise ValueError("no task question q1 in run r")  # not retryable
        return activities(name, data)

    result = run(V4, failing)
    assert result.output["status"] == "completed"
    step2 = [d for n, d in seen if n == "model_step"][1]
    [failed] = step2["failed_tool_calls"]
    assert failed["call_id"] == "a"
    assert names(seen).count("poll_tool_task") == 1  # not polled again


def test_a_task_with_two_questions_waits_for_both_answers_and_sends_them_together():
    asked = AskedInput(("q1", "q2"), DEADLINE.isoformat())
    activities, seen = asking_task({0: asked}, polls_until_done=2)
    events = [answered("q2"), answered("q1")]
    result = V4.run("chat_turn", TURN.to_dict(), activities=activities, events=events)
    assert result.output["status"] == "completed"
    assert result.virtual_time < DEADLINE
    sent = [data["question_ids"] for name, data in seen if name == "answer_tool_task"]
    assert sent == [["q1", "q2"]]
