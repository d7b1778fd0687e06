"""Version 4's `chat_turn`: a final answer ends the turn in its model step (no `finish_turn`
hop), and a long turn continues as new every few steps with references-only state, so no
episode replays more than a few steps of history. Replayed through the local host's engine
(tests/support/replay.py) with scripted activities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agent.contracts import ChatTurnInput, TurnProgress
from agent.loop import APPROVAL_EVENT, APPROVAL_QUESTION, Usage, ends_turn, question_id
from agent.orchestrators import STEPS_PER_EXECUTION
from agent.versions import version_text
from tests.support.app import load_function_app
from tests.support.replay import ExternalEvent, ReplayDriver

TURN = ChatTurnInput(
    owner="user:a",
    conversation_id="c1",
    run_id="r1",
    turn=1,
    max_steps=60,
    max_tokens_per_run=100_000,
)
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
APP = load_function_app().app
V4 = ReplayDriver(APP, default_version=version_text(4))
V3 = ReplayDriver(APP, default_version=version_text(3))


def answer(step: int, ended: bool) -> dict[str, Any]:
    reply = {"outcome": "final", "message_id": f"r1.{step}.0", "usage": USAGE}
    return {**reply, "turn_ended": True} if ended else reply


def tools(step: int, *ids: str, approvals: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "outcome": "tool_calls",
        "message_id": f"r1.{step}.0",
        "tool_call_ids": list(ids),
        "usage": USAGE,
        "approvals_needed": list(approvals),
    }


def turn_of(
    steps: int,
    approval_at: int | None = None,
    failing: frozenset[str] = frozenset(),
) -> Callable[[str, Any], Any]:
    """A turn of `steps` model steps, a tool call on each but the last (which ends the turn
    when the step may); the step at `approval_at` asks a call that needs approval; calls in
    `failing` fail for good (a permanent error: not retried)."""

    def activities(name: str, data: Any) -> Any:
        if name == "model_step":
            step = data["step"]
            if step == steps:
                return answer(step, ended=bool(data.get("ends_turn")))
            needs = (f"c{step}",) if step == approval_at else ()
            return tools(step, f"c{step}", approvals=needs)
        if name == "tool_call":
            if data["call_id"] in failing:
                raise ValueError(f"tool {data['call_id']} rejected its arguments")
            return {"call_id": data["call_id"], "is_error": False, "truncated": False}
        if name == "finish_turn":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return activities


def names(calls: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in calls]


def test_a_final_answer_ends_the_turn_in_its_model_step_without_a_finish_hop() -> None:
    result = V4.run("chat_turn", TURN.to_dict(), activities=turn_of(2))
    assert result.status == "Completed"
    assert names(result.activity_calls) == ["model_step", "tool_call", "model_step"]
    assert all(data["ends_turn"] for name, data in result.activity_calls if name == "model_step")
    assert result.output["status"] == "completed"
    assert result.output["answer_message_id"] == "r1.2.0"
    assert result.output["usage"]["total_tokens"] == 30


def test_a_final_answer_whose_step_did_not_end_the_turn_still_gets_finish_turn() -> None:
    """An answer over the budget, or a worker that did not end it: `finish_turn` closes it."""

    def not_ending(name: str, data: Any) -> Any:
        return answer(1, ended=False) if name == "model_step" else None

    result = V4.run("chat_turn", TURN.to_dict(), activities=not_ending)
    assert names(result.activity_calls) == ["model_step", "finish_turn"]
    assert result.output["status"] == "completed"


def test_a_version_3_turn_keeps_its_finish_hop_and_never_continues_as_new() -> None:
    result = V3.run("chat_turn", TURN.to_dict(), activities=turn_of(10))
    assert result.status == "Completed"
    assert names(result.activity_calls)[-1] == "finish_turn"
    assert not any(data.get("ends_turn") for _, data in result.activity_calls)
    assert result.generations == []
    assert result.output["steps"] == 10


def test_a_long_turn_continues_as_new_every_few_steps_under_the_same_instance() -> None:
    steps = 10
    result = V4.run("chat_turn", TURN.to_dict(), activities=turn_of(steps), instance_id="r1")
    assert result.status == "Completed"
    assert result.instance_id == "r1"
    executions = result.executions["r1"]
    assert len(executions) == -(-steps // STEPS_PER_EXECUTION)  # 4 + 4 + 2 steps
    model_steps = [data["step"] for name, data in result.activity_calls if name == "model_step"]
    assert model_steps == list(range(1, steps + 1))
    assert result.output["steps"] == steps
    assert result.output["usage"]["total_tokens"] == 15 * steps  # usage carried over
    assert "finish_turn" not in names(result.activity_calls)


def test_each_execution_starts_from_references_only_state() -> None:
    result = V4.run("chat_turn", TURN.to_dict(), activities=turn_of(10), instance_id="r1")
    starts = [history[1] for history in result.executions["r1"][1:]]  # ExecutionStarted
    inputs = [ChatTurnInput.from_dict(_json(event["Input"])) for event in starts]
    assert [i.progress.step if i.progress else None for i in inputs] == [5, 9]
    second = inputs[0].progress
    assert second == TurnProgress(5, Usage(40, 20, 60), 0, ())
    assert replace(inputs[0], progress=None) == TURN  # the turn's own input, unchanged
    assert all(len(event["Input"]) < 1_000 for event in starts)  # no message content


def test_no_execution_holds_more_than_a_few_steps_of_history() -> None:
    short = V4.run("chat_turn", TURN.to_dict(), activities=turn_of(6), instance_id="r1")
    long = V4.run("chat_turn", TURN.to_dict(), activities=turn_of(50), instance_id="r1")
    longest = max(len(history) for history in long.executions["r1"])
    assert longest <= max(len(history) for history in short.executions["r1"])


def test_a_tool_call_that_failed_for_good_reaches_the_model_across_the_boundary() -> None:
    last_of_first = STEPS_PER_EXECUTION  # its tool call runs just before continuing as new
    result = V4.run(
        "chat_turn",
        TURN.to_dict(),
        activities=turn_of(6, failing=frozenset({f"c{last_of_first}"})),
        instance_id="r1",
    )
    step_inputs = {
        data["step"]: data for name, data in result.activity_calls if name == "model_step"
    }
    failed = step_inputs[last_of_first + 1]["failed_tool_calls"]
    assert [f["call_id"] for f in failed] == [f"c{last_of_first}"]
    assert "rejected its arguments" in failed[0]["reason"]
    assert step_inputs[last_of_first + 2].get("failed_tool_calls", []) == []


def test_an_approval_wait_in_a_continued_execution_is_answered_by_the_run_id() -> None:
    asked = STEPS_PER_EXECUTION + 1  # the first step of the second execution
    event = ExternalEvent(
        APPROVAL_EVENT,
        {
            "tool_call_id": f"c{asked}",
            "approved": True,
            "question_id": question_id(asked, APPROVAL_QUESTION),
        },
    )
    result = V4.run(
        "chat_turn",
        TURN.to_dict(),
        activities=turn_of(asked + 1, approval_at=asked),
        events=[event],
        instance_id="r1",
    )
    assert result.status == "Completed"
    approved = [data for name, data in result.activity_calls if data.get("call_id") == f"c{asked}"]
    assert [call.get("approved") for call in approved] == [True]
    waits = [
        s for s in result.custom_statuses if isinstance(s, dict) and s.get("pending_approvals")
    ]
    assert waits and waits[0]["step"] == asked


def test_the_step_limit_holds_across_executions() -> None:
    turn = replace(TURN, max_steps=6)
    result = V4.run("chat_turn", turn.to_dict(), activities=turn_of(50), instance_id="r1")
    assert result.output["status"] == "budget_exceeded"
    assert result.output["steps"] == 6
    assert names(result.activity_calls)[-1] == "finish_turn"


def test_a_step_ends_the_turn_only_for_an_answer_within_what_the_run_had_left() -> None:
    from agent.loop import StepSummary

    final = StepSummary("final", usage=Usage(10, 5, 15))
    assert ends_turn(final, 15)
    assert not ends_turn(final, 14)  # decide() finishes it as budget_exceeded
    assert not ends_turn(StepSummary("tool_calls", tool_call_ids=("a",)), 100)
    assert not ends_turn(StepSummary("content_filtered"), 100)
    assert ends_turn(final, None)  # a run without a token budget


def _json(raw: str) -> Any:
    import json

    value = json.loads(raw)
    return json.loads(value) if isinstance(value, str) else value


def test_a_scheduled_item_whose_turn_continues_as_new_reports_its_end_to_its_lane() -> None:
    """A batch lane runs each item's `chat_turn` as a sub-orchestration: the turn's last
    execution, not its first, answers the lane."""
    from agent.contracts import BatchInput
    from storage.batches import run_id_of

    long = turn_of(STEPS_PER_EXECUTION * 2 + 1)
    claims: dict[str, int | None] = {}

    def activities(name: str, data: Any) -> Any:
        if name == "take_batch_item":
            free = [i for i in data["indices"] if i not in claims.values()]
            index = claims.setdefault(data["claim_key"], free[0] if free else None)
            if index is None:
                return {"index": None}
            run = replace(TURN, run_id=run_id_of(data["batch_id"], index))
            return {"index": index, "turn": run.to_dict()}
        return long(name, data)

    batch = BatchInput("b1", (0, 1), 2)
    result = V4.run("scheduled_batch", batch.to_dict(), activities=activities, instance_id="b1")
    assert result.status == "Completed"
    assert result.output["counts"] == {"completed": 2}
    for index in (0, 1):
        assert len(result.executions[run_id_of("b1", index)]) == 3  # 4 + 4 + 1 steps
