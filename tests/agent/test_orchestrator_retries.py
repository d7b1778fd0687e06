"""Retries of failed activities (version 2): exponential backoff with jitter on durable timers,
read back from the replayed histories' timers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.backoff import JITTER, Backoff
from agent.contracts import BatchInput, ChatTurnInput
from agent.errors import Conflict, InvalidSettings, PermanentModelError, SettingsError
from agent.orchestrators import BUSY_BACKOFF, MODEL_RETRY, STORE_BACKOFF
from local_host.history import parse_jtoken
from tests.agent.test_golden_histories import Execution, decisions, history_before, run_episode
from tests.agent.test_orchestrators import DRIVER, TURN, V1_DRIVER, final, names, script, tools
from tests.agent.test_scheduled_batch import script as batch_script

INSTANCE = "replay-instance"  # the drivers' default instance id


def turn_with(**retries: Any) -> ChatTurnInput:
    return ChatTurnInput(**{**TURN.to_dict(), **retries})


def timer_delays(history: list[dict[str, Any]]) -> list[float]:
    """Seconds from each timer's creation (the orchestration's now) to its FireAt."""
    return [
        round((at(event["FireAt"]) - at(event["Timestamp"])).total_seconds(), 3)
        for event in history
        if event["EventType"] == 10  # TimerCreated
    ]


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def in_band(delay: float, nominal: float) -> bool:
    """Jitter only shortens a wait, by at most JITTER (a millisecond of rounding allowed)."""
    return nominal * (1 - JITTER) - 0.001 <= delay <= nominal + 0.001


def failing(n: int, then: Any, exc: Exception | None = None) -> list[Any]:
    return [exc or RuntimeError(f"model endpoint: 503 ({i})") for i in range(n)] + [then]


# --- the model step -----------------------------------------------------------------------------

CAPPED = {"model_attempts": 6, "retry_base_seconds": 1, "retry_max_delay_seconds": 4}


def test_a_failing_model_step_waits_timers_that_double_up_to_the_cap_then_succeeds():
    result = DRIVER.run(
        "chat_turn", turn_with(**CAPPED).to_dict(), activities=script(failing(5, final(1)))
    )
    assert result.output["status"] == "completed"
    assert names(result) == ["model_step"] * 6 + ["finish_turn"]
    delays = timer_delays(result.history)
    assert len(delays) == 5
    assert all(in_band(d, n) for d, n in zip(delays, [1, 2, 4, 4, 4], strict=True)), delays
    assert delays[0] < delays[1] < delays[2]  # grows until the cap
    assert max(delays) <= 4
    # exactly the pure schedule, keyed by this instance and this step
    assert delays == Backoff(6, 1, 4).schedule(f"{INSTANCE}/model_step/1/0")


def test_the_retry_timers_are_identical_when_the_recorded_history_is_replayed_episode_by_episode():
    recorded = DRIVER.run(
        "chat_turn", turn_with(**CAPPED).to_dict(), activities=script(failing(5, final(1)))
    )
    execution = Execution("retries", INSTANCE, "chat_turn", 0, recorded.history)
    replayed_timers: list[str] = []
    for number, episode in enumerate(execution.episodes):
        # As after a worker restart: the current code replays the history so far, then decides.
        commit = run_episode(execution, history_before(recorded.history, number), episode)
        assert decisions(commit.history) == decisions(episode.decided), f"episode {number}"
        replayed_timers += [e["FireAt"] for e in commit.history if e["EventType"] == 10]
    assert replayed_timers == [e["FireAt"] for e in recorded.history if e["EventType"] == 10]
    assert len(replayed_timers) == 5
    assert parse_jtoken(commit.completion.result_raw) == recorded.output


def test_the_jitter_differs_between_instances_but_not_between_runs_of_one():
    def delays(instance_id: str) -> list[float]:
        result = DRIVER.run(
            "chat_turn",
            turn_with(**CAPPED).to_dict(),
            activities=script(failing(5, final(1))),
            instance_id=instance_id,
        )
        return timer_delays(result.history)

    assert delays("i-1") == delays("i-1")
    assert delays("i-1") != delays("i-2")


def test_a_model_step_that_keeps_failing_is_tried_as_often_as_the_setting_says():
    result = DRIVER.run(
        "chat_turn",
        turn_with(model_attempts=2).to_dict(),
        activities=script(failing(2, final(1))),
    )
    assert result.output["status"] == "failed"
    assert "503 (1)" in result.output["error"]  # the last failure is the one reported
    assert names(result) == ["model_step", "model_step", "finish_turn"]
    assert len(timer_delays(result.history)) == 1


def test_a_model_failure_no_retry_can_fix_fails_the_run_at_once():
    for exc in (
        PermanentModelError("Azure OpenAI rejected the credentials (401)"),
        InvalidSettings((SettingsError("AZURE_OPENAI_ENDPOINT", "is required"),)),
    ):
        result = DRIVER.run("chat_turn", TURN.to_dict(), activities=script([exc]))
        assert result.output["status"] == "failed"
        assert names(result) == ["model_step", "finish_turn"]
        assert timer_delays(result.history) == []


def test_retry_after_from_the_service_still_sets_the_wait_not_the_backoff():
    throttled = {"outcome": "throttled", "retry_after": 7}
    replies = [throttled, RuntimeError("model endpoint: 503"), final(1)]
    result = DRIVER.run("chat_turn", TURN.to_dict(), activities=script(replies))
    assert result.output["status"] == "completed"
    retry_after, backoff_wait = timer_delays(result.history)
    assert retry_after == 7.0  # exactly what the service asked for
    assert in_band(backoff_wait, 1.0)


def test_a_version_1_instance_keeps_durables_fixed_interval_retries():
    result = V1_DRIVER.run("chat_turn", TURN.to_dict(), activities=script(failing(3, final(1))))
    assert result.output["status"] == "completed"
    interval = MODEL_RETRY.first_retry_interval_in_milliseconds / 1000
    assert timer_delays(result.history) == [interval] * 3  # no backoff, no jitter
    assert any(e["EventType"] == 4 for e in result.history)


# --- tool calls: retried in rounds, still in parallel -------------------------------------------


def flaky_tool(failures: dict[str, int], exc: Exception | None = None):
    """A tool_call activity where call `id` fails its first `failures[id]` attempts."""
    seen: dict[str, int] = {}

    def tool(data: dict[str, Any]) -> dict[str, Any]:
        call_id = data["call_id"]
        seen[call_id] = seen.get(call_id, 0) + 1
        if seen[call_id] <= failures.get(call_id, 0):
            raise exc or RuntimeError(f"server demo: ConnectError ({call_id})")
        return {"call_id": call_id, "is_error": False, "truncated": False}

    return tool


def tool_rounds(result: Any) -> list[list[str]]:
    """The tool calls scheduled in each episode that scheduled any, in order."""
    rounds: list[list[str]] = []
    current: list[str] | None = None
    calls = iter(d["call_id"] for n, d in result.activity_calls if n == "tool_call")
    for event in result.history:
        if event["EventType"] == 12:  # OrchestratorStarted: a new episode
            current = None
        elif event["EventType"] == 4 and event["Name"] == "tool_call":
            if current is None:
                current = []
                rounds.append(current)
            current.append(next(calls))
    return rounds


def test_failed_tool_calls_are_retried_together_after_one_growing_backoff_timer():
    tool = flaky_tool({"b": 1, "c": 2})
    result = DRIVER.run(
        "chat_turn", TURN.to_dict(), activities=script([tools(1, "a", "b", "c"), final(2)], tool)
    )
    assert result.output["status"] == "completed"
    assert tool_rounds(result) == [["a", "b", "c"], ["b", "c"], ["c"]]
    first, second = timer_delays(result.history)
    assert in_band(first, 1.0) and in_band(second, 2.0)
    second_step = [d for n, d in result.activity_calls if n == "model_step"][1]
    assert second_step["failed_tool_calls"] == []


def test_a_tool_call_out_of_attempts_is_reported_to_the_model_in_call_order():
    tool = flaky_tool({"a": 9, "b": 9})
    result = DRIVER.run(
        "chat_turn",
        turn_with(tool_attempts=2).to_dict(),
        activities=script([tools(1, "a", "ok", "b"), final(2)], tool),
    )
    assert result.output["status"] == "completed"
    assert tool_rounds(result) == [["a", "ok", "b"], ["a", "b"]]
    second_step = [d for n, d in result.activity_calls if n == "model_step"][1]
    assert [f["call_id"] for f in second_step["failed_tool_calls"]] == ["a", "b"]
    assert "ConnectError (a)" in second_step["failed_tool_calls"][0]["reason"]


def test_a_tool_call_failure_no_retry_can_fix_is_reported_at_once():
    tool = flaky_tool({"a": 9}, SettingsError("MCP_SERVERS", "server demo: no such secret"))
    result = DRIVER.run(
        "chat_turn", TURN.to_dict(), activities=script([tools(1, "a"), final(2)], tool)
    )
    assert result.output["status"] == "completed"
    assert tool_rounds(result) == [["a"]]
    assert timer_delays(result.history) == []
    [failed] = [d for n, d in result.activity_calls if n == "model_step"][1]["failed_tool_calls"]
    assert "MCP_SERVERS" in failed["reason"]


# --- storage: finishing a turn, and a batch item whose conversation is busy ---------------------


def test_finishing_a_turn_is_retried_with_backoff_when_storage_fails():
    activities = script([final(1)])
    failures = iter([RuntimeError("blob: 503"), RuntimeError("blob: 503")])

    def flaky_finish(name: str, data: Any) -> Any:
        if name == "finish_turn" and (exc := next(failures, None)) is not None:
            raise exc
        return activities(name, data)

    result = DRIVER.run("chat_turn", TURN.to_dict(), activities=flaky_finish)
    assert result.status == "Completed"
    assert names(result) == ["model_step"] + ["finish_turn"] * 3
    assert timer_delays(result.history) == STORE_BACKOFF.schedule(f"{INSTANCE}/finish_turn")[:2]


def test_a_batch_item_whose_conversation_stays_busy_waits_longer_each_time_then_fails():
    def busy(item: dict[str, Any]) -> dict[str, Any]:
        raise Conflict("conversation c0 is busy with another turn")

    activities = batch_script(start=busy)
    result = DRIVER.run(
        "scheduled_batch",
        BatchInput("b1", (0,), 1).to_dict(),
        activities=activities,
        instance_id="b1",
    )
    assert result.output["counts"] == {"failed": 1}
    [first_lane_execution, *_] = result.executions["b1-lane0"]
    takes = [e for e in first_lane_execution if e.get("Name") == "take_batch_item"]
    # (version 4: the same execution then takes again, and finds no item left)
    first_claim = [e for e in takes if e["EventType"] == 4 and '\\"0.0\\"' in e["Input"]]
    assert len(first_claim) == BUSY_BACKOFF.attempts
    delays = timer_delays(first_lane_execution)
    assert delays == BUSY_BACKOFF.schedule("b1-lane0/take_batch_item")
    nominal = [min(30.0, 2.0 * 2**n) for n in range(BUSY_BACKOFF.attempts - 1)]
    assert nominal == [2, 4, 8, 16, 30, 30, 30]
    assert all(in_band(d, n) for d, n in zip(delays, nominal, strict=True))
    assert activities.outcomes[0]["status"] == "failed"  # type: ignore[attr-defined]
