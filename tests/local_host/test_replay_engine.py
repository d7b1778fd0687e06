"""The replay engine speaks the SDK's contract: context JSON in, state JSON out, DurableTask ids."""

from __future__ import annotations

import json
from datetime import timedelta

import azure.durable_functions as df
from azure.durable_functions.models.utils.df_serialization import df_dumps

from local_host import history as h
from local_host import payloads
from local_host.activities import decode_activity_input, encode_activity_result
from local_host.indexing import find_function_register, index_app, load_app_module
from local_host.replay import (
    build_context_json,
    interpret_orchestrator_result,
    replay_actions,
)
from tests.support.replay import DEFAULT_START_TIME, replay_orchestrator

from .conftest import DURABLE_APP

T0 = DEFAULT_START_TIME


def test_the_context_json_has_the_fields_the_sdk_reads() -> None:
    past = [h.orchestrator_started(T0), h.orchestrator_completed(T0)]
    new = [h.orchestrator_started(T0 + timedelta(seconds=1))]
    context = json.loads(
        build_context_json(
            instance_id="i-1",
            parent_instance_id=None,
            input_raw='"{\\"a\\": 1}"',
            past_events=past,
            new_events=new,
        )
    )
    assert context["instanceId"] == "i-1"
    assert context["input"] == '{"a": 1}'  # the SDK df_loads this text
    assert (context["upperSchemaVersion"], context["upperSchemaVersionNew"]) == (1, 2)
    assert context["maximumShortTimerDuration"] == "6.00:00:00"
    assert [e["IsPlayed"] for e in context["history"]] == [True, True, False]
    assert context["isReplaying"] is True


def test_the_sdk_reads_the_context_the_host_builds() -> None:
    events = [
        h.orchestrator_started(T0),
        h.execution_started(
            T0,
            name="o",
            version="v1",
            input_raw=None,
            instance_id="i",
            execution_id="e",
            parent=None,
        ),
    ]
    context_json = build_context_json(
        instance_id="i",
        parent_instance_id="p",
        input_raw=payloads.client_body_to_raw_input(json.dumps(df_dumps([1]))),
        past_events=[],
        new_events=events,
    )
    context = df.DurableOrchestrationContext.from_json(context_json)
    assert (context.instance_id, context.parent_instance_id, context.version) == ("i", "p", "v1")
    assert context.get_input() == [1]
    assert context.current_utc_datetime == T0


def test_an_uncaught_exception_state_is_read_after_the_marker() -> None:
    state = {
        "isDone": False,
        "schemaVersion": 2,
        "actions": [[]],
        "error": "boom",
        "customStatus": "s",
    }

    def failing() -> str:
        raise Exception(f"boom\n\n$OutOfProcData$:{json.dumps(state)}")

    call = interpret_orchestrator_result(failing)
    assert call.failure == "boom"
    assert call.state is not None and call.state.custom_status == "s"


def test_a_changed_orchestrator_is_detected_as_non_deterministic() -> None:
    index = index_app(find_function_register(load_app_module(DURABLE_APP)))
    history = [
        h.orchestrator_started(T0),
        h.execution_started(
            T0, name="o", version="", input_raw=None, instance_id="i", execution_id="e", parent=None
        ),
        h.task_scheduled(T0, task_id=0, name="say_hello", input_raw="[null]"),
        h.orchestrator_completed(T0),
        h.orchestrator_started(T0),
        h.task_completed(T0, task_id=0, result='"x"'),
    ]
    now_calls_double = [{"actionType": 0, "functionName": "double", "input": "1"}]
    outcome = replay_actions(
        history,
        now_calls_double,
        index=index,
        instance_id="i",
        parent_instance_id=None,
        execution_id="e",
        default_version="",
    )
    assert outcome.host_failure is not None and "Non-Deterministic" in outcome.host_failure


def test_parallel_retries_get_durable_task_sequence_ids() -> None:
    failures = {"a": 1, "b": 2}

    def activities(name: str, data: str) -> str:
        if failures[data]:
            failures[data] -= 1
            raise ConnectionError(data)
        return data.upper()

    def orchestrator(context):
        options = df.RetryOptions(1000, 5)
        results = yield context.task_all(
            [
                context.call_activity_with_retry("work", options, "a"),
                context.call_activity_with_retry("work", options, "b"),
            ]
        )
        after = yield context.call_activity("work_done", results)
        return [results, after]

    failures["c"] = 0
    result = replay_orchestrator(
        orchestrator, activities=lambda n, d: activities(n, d) if n == "work" else "done"
    )
    assert result.status == "Completed", result.output
    assert result.output == [["A", "B"], "done"]
    scheduled = [e["EventId"] for e in result.history if e["EventType"] in (4, 10)]
    assert scheduled == sorted(scheduled) and len(set(scheduled)) == len(scheduled)


def test_a_timer_longer_than_six_days_is_split_into_intervals() -> None:
    def orchestrator(context):
        yield context.create_timer(context.current_utc_datetime + timedelta(days=10))
        return "woke up"

    result = replay_orchestrator(orchestrator, activities=lambda n, d: None)
    assert result.output == "woke up"
    timers = [e for e in result.history if e["EventType"] == 10]
    assert len(timers) >= 2  # the SDK splits it (3-day intervals), as the extension tells it to
    assert result.virtual_time >= T0 + timedelta(days=10)


def test_a_canceled_timer_does_not_hold_the_orchestration() -> None:
    def orchestrator(context):
        timeout = context.create_timer(context.current_utc_datetime + timedelta(days=1))
        done = context.call_activity("work", None)
        winner = yield context.task_any([done, timeout])
        timeout.cancel()
        second = yield context.call_activity("work", None)
        return [winner == done, second]

    result = replay_orchestrator(orchestrator, activities=lambda n, d: "ok")
    assert result.output == [True, "ok"]
    assert result.virtual_time < T0 + timedelta(hours=1)


def test_activity_payloads_round_trip_like_the_worker() -> None:
    for value in [{"a": [1, 2]}, "text", 3, None]:
        action_input = df_dumps(value)  # what the SDK puts in the action
        parameters = payloads.action_input_to_task_parameters(action_input)
        assert decode_activity_input(parameters) == value
        assert json.loads(encode_activity_result(value)) == value


def test_raise_event_data_reaches_the_orchestrator_as_json_text() -> None:
    body = json.dumps(json.dumps({"ok": True}))  # what the SDK client posts
    event_input = payloads.client_body_to_event_input(body)
    assert json.loads(event_input) == '{"ok": true}'


def test_a_retry_task_next_to_a_plain_task_keeps_the_sdk_sequence_ids() -> None:
    attempts = {"a": 0}

    def activities(name: str, data: str) -> str:
        if data == "a":
            attempts["a"] += 1
            if attempts["a"] == 1:
                raise ConnectionError("first attempt fails")
        return data.upper()

    def orchestrator(context):
        options = df.RetryOptions(1000, 3)
        retried = context.call_activity_with_retry("work", options, "a")
        plain = context.call_activity("work", "b")
        return (yield context.task_all([retried, plain]))

    result = replay_orchestrator(orchestrator, activities=activities)
    assert (result.status, result.output) == ("Completed", ["A", "B"])
    first_episode = [(e["EventId"], e["Input"]) for e in result.history[:4] if e["EventType"] == 4]
    assert first_episode == [(0, '["\\"a\\""]'), (1, '["\\"b\\""]')]
