"""`chat_turn`, replayed through the Durable SDK's orchestrator entry point by the local host's
engine (tests/support/replay.py), with scripted activities."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from agent.contracts import ChatTurnInput
from agent.loop import DECLINED_RETRY, NO_RETRY_ANSWER, OUTCOME_UNKNOWN
from agent.orchestrators import MODEL_RETRY, TOOL_RETRY
from agent.versions import CURRENT, version_text
from tests.support.app import load_function_app
from tests.support.replay import ReplayDriver

TURN = ChatTurnInput(
    owner="user:a",
    conversation_id="c1",
    run_id="r1",
    turn=1,
    max_steps=4,
    max_tokens_per_run=10_000,
)
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def final(step: int) -> dict[str, Any]:
    return {"outcome": "final", "message_id": f"r1.{step}.0", "usage": USAGE}


def tools(step: int, *ids: str) -> dict[str, Any]:
    return {
        "outcome": "tool_calls",
        "message_id": f"r1.{step}.0",
        "tool_call_ids": list(ids),
        "usage": USAGE,
    }


def script(model_replies: list[Any], tool: Callable[[dict[str, Any]], Any] | None = None):
    """Activities: model_step answers from the list in order (an Exception is raised)."""
    replies = iter(model_replies)

    def activities(name: str, data: Any) -> Any:
        if name == "model_step":
            reply = next(replies)
            if isinstance(reply, Exception):
                raise reply
            return reply
        if name == "tool_call":
            if tool is not None:
                return tool(data)
            return {"call_id": data["call_id"], "is_error": False, "truncated": False}
        if name == "finish_turn":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return activities


# Indexes the app once, as the worker does; new instances get the version host.json stamps.
DRIVER = ReplayDriver(load_function_app().app, default_version=version_text(CURRENT))


# Instances started before host.json named a version (version 1): their old path must hold.
V1_DRIVER = ReplayDriver(load_function_app().app, default_version="")


def run(activities, turn: ChatTurnInput = TURN, driver: ReplayDriver = DRIVER):
    return driver.run("chat_turn", turn.to_dict(), activities=activities)


def episode_of_each_scheduled_task(history: list[dict[str, Any]]) -> dict[str, list[int]]:
    """For each activity name, the episode (OrchestratorStarted count) that scheduled it."""
    episode, seen = 0, {}
    for event in history:
        if event["EventType"] == 12:  # OrchestratorStarted
            episode += 1
        elif event["EventType"] == 4:  # TaskScheduled
            seen.setdefault(event["Name"], []).append(episode)
    return seen


def names(result) -> list[str]:
    return [name for name, _ in result.activity_calls]


def test_a_turn_runs_model_then_tools_in_parallel_then_model_until_a_final_answer():
    result = run(script([tools(1, "a", "b"), final(2)]))
    assert result.status == "Completed"
    assert names(result) == ["model_step", "tool_call", "tool_call", "model_step", "finish_turn"]
    assert result.output["status"] == "completed"
    assert result.output["answer_message_id"] == "r1.2.0"
    assert result.output["steps"] == 2
    assert result.output["usage"]["total_tokens"] == 30
    # both tool calls were scheduled in the same episode (fan-out), not one after the other
    episodes = episode_of_each_scheduled_task(result.history)
    assert episodes["tool_call"][0] == episodes["tool_call"][1]
    assert {"step": 1, "phase": "tools", "tool_calls": 2} in result.custom_statuses
    assert result.activity_calls[-1][1]["status"] == "completed"


def test_activity_inputs_are_references_not_content():
    result = run(script([tools(1, "a"), final(2)]))
    for _, data in result.activity_calls:
        assert set(data) <= {
            "run", "step", "call_id", "failed_tool_calls", "status", "max_output_tokens", "may_defer",
            "compaction", "may_await_task", "ends_turn",
        }  # fmt: skip
        assert data["run"] == {
            "owner": "user:a",
            "conversation_id": "c1",
            "run_id": "r1",
            "turn": 1,
        }


def test_a_tool_that_keeps_failing_is_retried_then_reported_to_the_model_not_crashing_the_run():
    def tool(data: dict[str, Any]) -> Any:
        if data["call_id"] == "bad":
            raise RuntimeError("server demo: ConnectError")
        return {"call_id": data["call_id"], "is_error": False}

    result = run(script([tools(1, "good", "bad"), final(2)], tool))
    assert result.output["status"] == "completed"
    bad_attempts = [
        d for n, d in result.activity_calls if n == "tool_call" and d["call_id"] == "bad"
    ]
    assert len(bad_attempts) == TOOL_RETRY.max_number_of_attempts
    second_step = [d for n, d in result.activity_calls if n == "model_step"][1]
    assert second_step["step"] == 2
    [failed] = second_step["failed_tool_calls"]
    assert failed["call_id"] == "bad"
    assert "server demo: ConnectError" in failed["reason"]


def test_a_model_step_that_keeps_failing_fails_the_run_and_still_unlocks_the_conversation():
    result = run(script([RuntimeError("model endpoint: 503")] * MODEL_RETRY.max_number_of_attempts))
    assert result.status == "Completed"
    assert result.output["status"] == "failed"
    assert "503" in result.output["error"]
    assert names(result).count("model_step") == MODEL_RETRY.max_number_of_attempts
    assert result.activity_calls[-1] == (
        "finish_turn",
        {"run": TURN.run.to_dict(), "status": "failed"},
    )


def test_a_transient_model_failure_is_retried_by_durable_and_the_turn_completes():
    result = run(script([RuntimeError("timeout"), final(1)]))
    assert result.output["status"] == "completed"
    assert names(result) == ["model_step", "model_step", "finish_turn"]


def test_throttling_waits_a_durable_timer_of_the_retry_after_then_repeats_the_step():
    result = run(script([{"outcome": "throttled", "retry_after": 7}, final(1)]))
    assert result.output["status"] == "completed"
    model_steps = [d for n, d in result.activity_calls if n == "model_step"]
    assert [d["step"] for d in model_steps] == [1, 1]
    timers = [e for e in result.history if e["EventType"] == 10]
    assert len(timers) == 1
    assert {"step": 1, "phase": "throttled"} in result.custom_statuses


def test_the_step_limit_ends_the_run_as_budget_exceeded_without_running_more_tools():
    turn = ChatTurnInput(**{**TURN.to_dict(), "max_steps": 2})
    result = run(script([tools(1, "a"), tools(2, "b")]), turn)
    assert result.output["status"] == "budget_exceeded"
    assert "AGENT_MAX_STEPS" in result.output["error"]
    assert [d["call_id"] for n, d in result.activity_calls if n == "tool_call"] == ["a"]


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ({"outcome": "content_filtered", "message_id": "r1.1.0"}, "content_filtered"),
        ({"outcome": "failed", "error": "Azure OpenAI rejected the credentials (401)"}, "failed"),
    ],
)
def test_a_non_retryable_model_outcome_ends_the_run_at_once(reply, status):
    result = run(script([reply]))
    assert result.output["status"] == status
    assert names(result) == ["model_step", "finish_turn"]


def test_history_holds_no_message_content():
    secret_words = "the quick brown fox"
    result = run(script([tools(1, "a"), final(2)]))
    assert secret_words not in json.dumps(result.history)
    assert len(json.dumps(result.history)) < 8_000


def guarded_tools(step: int) -> dict[str, Any]:
    """Two calls, of which `w` needs approval."""
    return {**tools(step, "r", "w"), "approvals_needed": ["w"]}


def tool_inputs(result) -> dict[str, Any]:
    return {d["call_id"]: d.get("rejection") for n, d in result.activity_calls if n == "tool_call"}


def test_a_call_that_needs_approval_waits_and_runs_once_approved():
    result = DRIVER.run(
        "chat_turn",
        TURN.to_dict(),
        activities=script([guarded_tools(1), final(2)]),
        events=[("approval", {"tool_call_id": "w", "approved": True})],
    )
    assert result.output["status"] == "completed"
    assert tool_inputs(result) == {"r": None, "w": None}
    waiting = [s for s in result.custom_statuses if s.get("phase") == "waiting_for_approval"]
    assert waiting == [
        {
            "step": 1,
            "phase": "waiting_for_approval",
            "pending_approvals": ["w"],
            "question_id": "step1-approval",
        }
    ]


def test_a_rejected_call_is_not_run_and_the_model_is_told():
    events = [
        ("approval", {"tool_call_id": "not-pending", "approved": True}),  # ignored
        ("approval", {"tool_call_id": "w", "approved": False}),
    ]
    result = DRIVER.run(
        "chat_turn", TURN.to_dict(), activities=script([guarded_tools(1), final(2)]), events=events
    )
    assert result.output["status"] == "completed"
    assert tool_inputs(result)["w"] == "the user rejected this tool call; it was not run"
    assert tool_inputs(result)["r"] is None


def test_no_answer_within_the_timeout_counts_as_rejected():
    turn = ChatTurnInput(**{**TURN.to_dict(), "approval_timeout_seconds": 60})
    result = run(script([guarded_tools(1), final(2)]), turn)
    assert result.output["status"] == "completed"
    assert "nobody approved" in tool_inputs(result)["w"]
    timers = [e for e in result.history if e["EventType"] == 10]
    assert len(timers) == 1


# --- the token budget holds inside a turn (version 2) ------------------------------------------


def test_a_turn_that_spent_its_budget_on_a_tool_step_stops_before_the_next_model_step():
    turn = ChatTurnInput(**{**TURN.to_dict(), "max_tokens_per_run": 15})
    result = run(script([tools(1, "a"), final(2)]), turn)
    assert names(result) == ["model_step", "tool_call", "finish_turn"]
    assert result.output["status"] == "budget_exceeded"
    assert result.output["usage"]["total_tokens"] == 15
    assert result.output["steps"] == 1
    assert "15 tokens used, 15 were left" in result.output["error"]
    assert result.activity_calls[-1][1]["status"] == "budget_exceeded"


def test_a_turn_with_no_budget_left_never_calls_the_model():
    turn = ChatTurnInput(**{**TURN.to_dict(), "max_tokens_per_run": 0})
    result = run(script([final(1)]), turn)
    assert names(result) == ["finish_turn"]
    assert result.output["status"] == "budget_exceeded"
    assert result.output["steps"] == 0


def test_each_model_step_is_capped_at_what_the_run_has_left():
    turn = ChatTurnInput(**{**TURN.to_dict(), "max_tokens_per_run": 100})
    result = run(script([tools(1, "a"), final(2)]), turn)
    caps = [d["max_output_tokens"] for n, d in result.activity_calls if n == "model_step"]
    assert caps == [100, 85]


def test_a_version_1_run_keeps_the_old_path_checking_only_after_each_step():
    turn = ChatTurnInput(**{**TURN.to_dict(), "max_tokens_per_run": 15})
    result = run(script([tools(1, "a"), final(2)]), turn, V1_DRIVER)
    assert names(result) == ["model_step", "tool_call", "model_step", "finish_turn"]
    assert result.output["status"] == "budget_exceeded"
    assert all("max_output_tokens" not in d for n, d in result.activity_calls)


# --- deferred tool calls: cut off by a crash, or circuit open (version 2) ---------------------


def deferring_tool(first: dict[str, Any]):
    """A tool_call activity that defers each call the first time (with `first`), if allowed."""

    def tool(data: dict[str, Any]) -> dict[str, Any]:
        done = {"call_id": data["call_id"], "is_error": False, "truncated": False}
        return {**done, **first} if data.get("may_defer") else done

    return tool


def tool_call_inputs(result) -> list[dict[str, Any]]:
    return [data for name, data in result.activity_calls if name == "tool_call"]


def test_a_call_cut_off_by_a_crash_waits_for_a_person_and_is_called_again_once_approved():
    result = DRIVER.run(
        "chat_turn",
        TURN.to_dict(),
        activities=script([tools(1, "a", "b"), final(2)], deferring_tool({"interrupted": True})),
        events=[("approval", {"tool_call_id": "a", "approved": True})],
    )
    assert result.output["status"] == "completed"
    waiting = [s for s in result.custom_statuses if s.get("phase") == "waiting_for_approval"]
    assert waiting == [
        {
            "step": 1,
            "phase": "waiting_for_approval",
            "pending_approvals": ["a", "b"],
            "interrupted_calls": ["a", "b"],
            "question_id": "step1-resend",
        },
        {
            "step": 1,
            "phase": "waiting_for_approval",
            "pending_approvals": ["b"],
            "interrupted_calls": ["b"],
            "question_id": "step1-resend",
        },
    ]
    again = tool_call_inputs(result)[2:]
    assert [(d["call_id"], d.get("retry_interrupted"), d.get("rejection")) for d in again] == [
        ("a", True, None),
        ("b", None, f"{OUTCOME_UNKNOWN} ({NO_RETRY_ANSWER})"),
    ]
    assert not any(d.get("may_defer") for d in again)  # asked once: never deferred again


def test_a_rejected_cut_off_call_is_not_called_again_and_the_model_is_told_its_outcome_is_unknown():
    result = DRIVER.run(
        "chat_turn",
        TURN.to_dict(),
        activities=script([tools(1, "a"), final(2)], deferring_tool({"interrupted": True})),
        events=[("approval", {"tool_call_id": "a", "approved": False})],
    )
    assert result.output["status"] == "completed"
    [_, again] = tool_call_inputs(result)
    assert again["rejection"] == f"{OUTCOME_UNKNOWN} ({DECLINED_RETRY})"
    assert "retry_interrupted" not in again


def cut_off_once(call_id: str):
    """A tool_call activity for which `call_id` was cut off by a crash (the first time it may
    defer): it asks to be asked about."""

    def tool(data: dict[str, Any]) -> dict[str, Any]:
        done = {"call_id": data["call_id"], "is_error": False, "truncated": False}
        cut = data["call_id"] == call_id and data.get("may_defer")
        return {**done, "interrupted": True} if cut else done

    return tool


def approve(call_id: str, question: str) -> tuple[str, dict[str, Any]]:
    """The event POST /approvals raises: the answer, stamped with the question it answers."""
    return ("approval", {"tool_call_id": call_id, "approved": True, "question_id": question})


def test_a_repeated_approval_of_a_call_is_not_taken_as_leave_to_resend_it_after_a_cut_off():
    """A client retried its POST approving `w`: Durable hands the second event to the next
    wait, which is the question whether to send `w` again after it was cut off."""
    result = DRIVER.run(
        "chat_turn",
        TURN.to_dict(),
        activities=script([guarded_tools(1), final(2)], cut_off_once("w")),
        events=[approve("w", "step1-approval"), approve("w", "step1-approval")],
    )
    assert result.output["status"] == "completed"
    [resend] = [d for d in tool_call_inputs(result)[2:] if d["call_id"] == "w"]
    assert "retry_interrupted" not in resend
    assert resend["rejection"] == f"{OUTCOME_UNKNOWN} ({NO_RETRY_ANSWER})"


def test_an_answer_to_the_resend_question_itself_sends_a_cut_off_call_again():
    result = DRIVER.run(
        "chat_turn",
        TURN.to_dict(),
        activities=script([guarded_tools(1), final(2)], cut_off_once("w")),
        events=[approve("w", "step1-approval"), approve("w", "step1-resend")],
    )
    [resend] = [d for d in tool_call_inputs(result)[2:] if d["call_id"] == "w"]
    assert resend["retry_interrupted"] is True and "rejection" not in resend
    questions = [s.get("question_id") for s in result.custom_statuses if "question_id" in s]
    assert questions == ["step1-approval", "step1-resend"]


def test_a_version_1_run_takes_any_answer_and_names_no_question():
    result = V1_DRIVER.run(
        "chat_turn",
        TURN.to_dict(),
        activities=script([guarded_tools(1), final(2)]),
        events=[approve("w", "step9-other")],
    )
    assert result.output["status"] == "completed"
    assert tool_inputs(result) == {"r": None, "w": None}
    assert not any("question_id" in s for s in result.custom_statuses if isinstance(s, dict))


def test_a_call_whose_servers_circuit_is_open_waits_out_the_cooldown_once_then_runs_again():
    result = run(script([tools(1, "a", "b"), final(2)], deferring_tool({"retry_after": 7.5})))
    assert result.output["status"] == "completed"
    assert names(result) == ["model_step", *["tool_call"] * 4, "model_step", "finish_turn"]
    [timer] = [e for e in result.history if e["EventType"] == 10]  # one wait for both calls
    started = next(e for e in result.history if e["EventType"] == 0)
    waited = datetime.fromisoformat(timer["FireAt"]) - datetime.fromisoformat(started["Timestamp"])
    assert timedelta(seconds=7.5) <= waited < timedelta(seconds=8)
    assert {"step": 1, "phase": "waiting_for_server", "seconds": 7.5} in result.custom_statuses
    # tried once more without leave to defer: if the circuit is still open, the model is told
    assert [d.get("may_defer") for d in tool_call_inputs(result)] == [True, True, None, None]


def test_an_unversioned_instance_keeps_the_old_path_neither_deferring_nor_waiting():
    activities = script([tools(1, "a"), final(2)], deferring_tool({"retry_after": 7.5}))
    result = run(activities, driver=V1_DRIVER)  # instances started before versioning
    assert result.output["status"] == "completed"
    assert names(result) == ["model_step", "tool_call", "model_step", "finish_turn"]
    assert "may_defer" not in tool_call_inputs(result)[0]
    assert not [e for e in result.history if e["EventType"] == 10]


def test_a_turn_started_without_an_object_input_fails_saying_what_it_expected():
    result = DRIVER.run("chat_turn", None, activities=script([final(1)]))
    assert result.status == "Failed"
    assert "expected a JSON object as input, got NoneType" in str(result.output)
