"""Orchestration patterns run end to end on the in-process host (real timers, real activities)."""

from __future__ import annotations

import json

import azure.durable_functions as df

from local_host.history import parse_timestamp
from local_host.host import LocalHost

from .conftest import TERMINAL


async def _run(
    host: LocalHost, client: df.DurableOrchestrationClient, name: str, instance_id: str, data=None
):
    await client.start_new(name, instance_id, data)
    await host.runtime.wait_for_status(instance_id, TERMINAL, within=10)
    return await client.get_status(instance_id, show_history=True, show_history_output=True)


def _types(status) -> list[str]:
    return [event["EventType"] for event in status.historyEvents]


async def test_a_sequence_runs_its_activities_in_order(durable_host: LocalHost, client) -> None:
    status = await _run(durable_host, client, "sequence", "seq-1", ["a", "b", "c"])
    assert status.output == ["Hello a!", "Hello b!", "Hello c!"]


async def test_fan_out_fan_in_collects_every_result(durable_host: LocalHost, client) -> None:
    status = await _run(durable_host, client, "fan_out_fan_in", "fan-1", 10)
    assert status.output == {"sum": 90, "count": 10}
    assert _types(status).count("TaskCompleted") == 10


async def test_retries_after_failures_then_succeeds(durable_host: LocalHost, client) -> None:
    request = {"key": "retry-1", "failures": 2, "max_attempts": 3}
    status = await _run(durable_host, client, "retry_then_succeed", "retry-1", request)
    assert status.output == {"result": "succeeded after 3 attempts"}
    assert durable_host.app_module.FLAKY_ATTEMPTS["retry-1"] == 3
    # DurableTask's retry: a timer between attempts.
    assert _types(status)[1:-1] == ["TaskFailed", "TimerCreated", "TimerFired"] * 2 + [
        "TaskCompleted"
    ]


async def test_retries_stop_after_the_maximum_attempts(durable_host: LocalHost, client) -> None:
    request = {"key": "retry-2", "failures": 5, "max_attempts": 2}
    status = await _run(durable_host, client, "retry_then_succeed", "retry-2", request)
    assert status.output == {
        "failed": "Activity function 'flaky' failed: ConnectionError: attempt 2 failed"
    }
    assert durable_host.app_module.FLAKY_ATTEMPTS["retry-2"] == 2


async def test_a_failing_activity_can_be_caught_by_the_orchestrator(
    durable_host: LocalHost, client
) -> None:
    status = await _run(durable_host, client, "catch_failure", "catch-1")
    assert status.runtime_status.value == "Completed"
    assert status.output == {
        "caught": "Activity function 'always_fails' failed: ValueError: bad input"
    }
    assert status.custom_status == "recovered"
    failed = next(e for e in status.historyEvents if e["EventType"] == "TaskFailed")
    details = json.loads(failed["Details"])
    assert details["Message"] == "ValueError: bad input"
    assert "always_fails" in details["StackTraceString"]


async def test_an_uncaught_orchestrator_exception_fails_the_instance(
    durable_host: LocalHost, client
) -> None:
    status = await _run(durable_host, client, "uncaught_failure", "uncaught-1")
    assert status.runtime_status.value == "Failed"
    assert status.output == "Orchestrator function 'uncaught_failure' failed: orchestrator gave up"


async def test_a_timer_fires_at_its_time(durable_host: LocalHost, client) -> None:
    status = await _run(durable_host, client, "timer", "timer-1", 150)
    assert status.output == "timer fired"
    created = next(e for e in status.historyEvents if e["EventType"] == "TimerCreated")
    fired = next(e for e in status.historyEvents if e["EventType"] == "TimerFired")
    completed = next(e for e in status.historyEvents if e["EventType"] == "ExecutionCompleted")
    assert fired["FireAt"] == created["FireAt"]
    assert parse_timestamp(completed["Timestamp"]) >= parse_timestamp(created["FireAt"])


async def test_when_any_returns_the_external_event_before_the_timer(
    durable_host: LocalHost, client
) -> None:
    await client.start_new("race", "race-event-1", 30)
    await durable_host.runtime.wait_for_status("race-event-1", {"Running"}, within=10)
    await client.raise_event("race-event-1", "go", 42)
    await durable_host.runtime.wait_for_status("race-event-1", TERMINAL, within=10)
    assert (await client.get_status("race-event-1")).output == {"winner": "event", "value": "42"}


async def test_when_any_returns_the_timer_when_no_event_comes(
    durable_host: LocalHost, client
) -> None:
    status = await _run(durable_host, client, "race", "race-timer-1", 0.05)
    assert status.output == {"winner": "timer"}


async def test_when_any_of_activities_returns_the_first_result(
    durable_host: LocalHost, client
) -> None:
    status = await _run(durable_host, client, "first_of_activities", "first-1")
    assert status.output in ("Hello first!", 42)


async def test_sub_orchestrations_run_and_return_their_output(
    durable_host: LocalHost, client
) -> None:
    status = await _run(durable_host, client, "parent", "parent-1")
    assert status.output == [["Hello A!", "Hello B!"], ["Hello C!"]]
    child = await client.get_status("parent-1-child")
    assert (child.runtime_status.value, child.output) == ("Completed", ["Hello C!"])
    created = [
        e for e in status.historyEvents if e["EventType"] == "SubOrchestrationInstanceCompleted"
    ]
    assert [e["FunctionName"] for e in created] == ["sequence", "sequence"]


async def test_a_failing_sub_orchestration_can_be_caught(durable_host: LocalHost, client) -> None:
    status = await _run(durable_host, client, "parent_of_failure", "parent-fail-1")
    assert status.output == {
        "caught": "Orchestrator function 'uncaught_failure' failed: orchestrator gave up"
    }


async def test_continue_as_new_restarts_with_the_new_input(durable_host: LocalHost, client) -> None:
    status = await _run(durable_host, client, "counter", "counter-1", {"n": 0, "limit": 3})
    assert status.output == {"n": 3, "doubled": 6}
    assert json.loads(status._input) == {"n": 3, "limit": 3}
    # Only the last execution's history is kept.
    assert _types(status).count("ExecutionStarted") == 1


async def test_a_sub_orchestration_that_continues_as_new_reports_its_last_output(
    durable_host: LocalHost, client
) -> None:
    status = await _run(
        durable_host, client, "count_in_a_child", "count-parent-1", {"n": 0, "limit": 2}
    )
    assert status.output == {"n": 2, "doubled": 4}
    child = await client.get_status("counting-child")
    assert json.loads(child._input) == {"n": 2, "limit": 2}


async def test_custom_status_is_reported(durable_host: LocalHost, client) -> None:
    status = await _run(durable_host, client, "progress", "progress-1")
    assert (status.output, status.custom_status) == ("finished", {"step": "done"})


async def test_an_instance_terminated_before_it_ran_is_terminated(
    durable_host: LocalHost, client
) -> None:
    instance_id = "terminate-pending-1"
    await client.start_new("wait_forever", instance_id)
    await client.terminate(instance_id, "stop")
    record = await durable_host.runtime.wait_for_status(instance_id, TERMINAL, within=10)
    assert str(record.runtime_status) == "Terminated"


async def test_calling_an_unknown_activity_fails_the_orchestration(
    durable_host: LocalHost, client
) -> None:
    status = await _run(durable_host, client, "calls_missing_activity", "missing-1")
    assert status.runtime_status.value == "Failed"
    assert "The function 'no_such_activity' doesn't exist" in status.output
    assert (
        "the following are the known activity functions: 'always_fails', 'double'," in status.output
    )
