"""tests/support/replay.py: the in-memory driver replays orchestrators exactly as the host does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from local_host.host import LocalHost
from local_host.indexing import load_app_module
from tests.support.replay import (
    DEFAULT_START_TIME,
    ExternalEvent,
    ReplayDriver,
    replay_orchestrator,
)

from .conftest import DURABLE_APP, TERMINAL


@pytest.fixture(scope="module")
def driver() -> ReplayDriver:
    return ReplayDriver(load_app_module(DURABLE_APP))


def scripted(name: str, data: Any) -> Any:
    if name == "say_hello":
        return f"Hello {data}!"
    if name == "double":
        return data * 2
    if name == "always_fails":
        raise ValueError(data)
    raise AssertionError(f"unexpected activity {name}")


def _shape(history: list[dict]) -> list[tuple]:
    """History without timestamps (and generated ids), for comparing two runs."""
    return [
        (e["EventType"], e["EventId"], e.get("TaskScheduledId"), e.get("Name"), e.get("Result"))
        for e in history
    ]


async def test_the_driver_writes_the_same_history_as_the_host(
    durable_host: LocalHost, client: df.DurableOrchestrationClient, driver: ReplayDriver
) -> None:
    await client.start_new("sequence", "same-history-1", ["x", "y"])
    await durable_host.runtime.wait_for_status("same-history-1", TERMINAL, within=10)
    host_history = durable_host.runtime.load_history("same-history-1")
    result = driver.run("sequence", ["x", "y"], activities=scripted)
    assert _shape(result.history) == _shape(host_history)


def test_activities_are_called_with_their_inputs_in_order(driver: ReplayDriver) -> None:
    decorated = load_app_module(DURABLE_APP).sequence  # the decorated function works as a name
    result = driver.run(decorated, ["Tokyo", "Lima"], activities=scripted)
    assert result.status == "Completed"
    assert result.output == ["Hello Tokyo!", "Hello Lima!"]
    assert result.activity_calls == [("say_hello", "Tokyo"), ("say_hello", "Lima")]


def test_the_history_has_the_events_the_host_appends(driver: ReplayDriver) -> None:
    result = driver.run("sequence", ["A"], activities=scripted)
    assert result.history_types() == [
        "ORCHESTRATOR_STARTED",
        "EXECUTION_STARTED",
        "TASK_SCHEDULED",
        "ORCHESTRATOR_COMPLETED",
        "ORCHESTRATOR_STARTED",
        "TASK_COMPLETED",
        "EXECUTION_COMPLETED",
        "ORCHESTRATOR_COMPLETED",
    ]
    scheduled, completed = result.history[2], result.history[5]
    assert (scheduled["EventId"], scheduled["Name"], scheduled["Input"]) == (
        0,
        "say_hello",
        '["\\"A\\""]',
    )
    assert (completed["TaskScheduledId"], completed["Result"]) == (0, '"Hello A!"')


def test_a_failing_activity_is_seen_by_the_orchestrator(driver: ReplayDriver) -> None:
    result = driver.run("catch_failure", activities=scripted)
    assert result.output == {
        "caught": "Activity function 'always_fails' failed: ValueError: bad input"
    }
    assert result.custom_statuses == ["recovered"]


def test_retries_use_a_timer_after_each_failed_attempt(driver: ReplayDriver) -> None:
    attempts: list[int] = []

    def failing(name: str, data: Any) -> Any:
        attempts.append(1)
        raise ConnectionError("down")

    result = driver.run(
        "retry_then_succeed", {"key": "k", "failures": 9, "max_attempts": 3}, activities=failing
    )
    assert result.output == {"failed": "Activity function 'flaky' failed: ConnectionError: down"}
    assert len(attempts) == 3
    types = result.history_types()
    # DurableTask's RetryInterceptor waits once more after the last attempt before giving up.
    assert (
        types.count("TASK_FAILED")
        == types.count("TIMER_CREATED")
        == types.count("TIMER_FIRED")
        == 3
    )


def test_a_retry_that_eventually_succeeds_returns_the_result(driver: ReplayDriver) -> None:
    calls = iter([ConnectionError("1"), ConnectionError("2"), "third time lucky"])

    def flaky(name: str, data: Any) -> Any:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = driver.run(
        "retry_then_succeed", {"key": "k", "failures": 2, "max_attempts": 5}, activities=flaky
    )
    assert result.output == {"result": "third time lucky"}
    assert [name for name, _ in result.activity_calls] == ["flaky"] * 3


def test_timers_fire_in_virtual_time(driver: ReplayDriver) -> None:
    result = driver.run("timer", 3_600_000, activities=scripted)
    assert result.output == "timer fired"
    assert result.virtual_time >= DEFAULT_START_TIME + timedelta(hours=1)


def test_external_events_arrive_as_json_text_like_on_azure(driver: ReplayDriver) -> None:
    result = driver.run("approval", activities=scripted, events=[("approval", {"approved": True})])
    assert result.output == {"decision": '{"approved": true}'}
    assert result.custom_statuses == ["waiting for approval", "decided"]


def test_when_any_picks_the_event_when_it_comes_before_the_timer(driver: ReplayDriver) -> None:
    result = driver.run("race", 60, activities=scripted, events=[ExternalEvent("go", "now")])
    assert result.output == {"winner": "event", "value": '"now"'}


def test_when_any_picks_the_timer_when_no_event_comes(driver: ReplayDriver) -> None:
    assert driver.run("race", 60, activities=scripted).output == {"winner": "timer"}


def test_when_any_of_activities_takes_the_first_completion(driver: ReplayDriver) -> None:
    assert driver.run("first_of_activities", activities=scripted).output == "Hello first!"


def test_sub_orchestrations_run_by_name_from_the_same_app(driver: ReplayDriver) -> None:
    result = driver.run("parent", activities=scripted, instance_id="p")
    assert result.output == [["Hello A!", "Hello B!"], ["Hello C!"]]
    children = {iid: s for iid, s in result.instances.items() if iid != "p"}
    assert children["p-child"].output == ["Hello C!"]
    unnamed = [
        iid for iid in children if iid.endswith(":0")
    ]  # DurableTask: "<executionId>:<taskId>"
    assert len(unnamed) == 1 and children[unnamed[0]].status == "Completed"


def test_a_failing_sub_orchestration_surfaces_in_the_parent(driver: ReplayDriver) -> None:
    result = driver.run("parent_of_failure", activities=scripted)
    assert result.output == {
        "caught": "Orchestrator function 'uncaught_failure' failed: orchestrator gave up"
    }


def test_continue_as_new_keeps_the_earlier_generations(driver: ReplayDriver) -> None:
    result = driver.run("counter", {"n": 0, "limit": 2}, activities=scripted)
    assert result.output == {"n": 2, "doubled": 4}
    assert len(result.generations) == 2
    assert all(g[-2]["EventType"] == 16 for g in result.generations)  # ContinueAsNew
    assert [data for _, data in result.activity_calls] == [0, 1, 2]


def test_custom_statuses_are_recorded_in_order(driver: ReplayDriver) -> None:
    result = driver.run("progress", activities=scripted)
    assert result.custom_statuses == [
        {"step": "one"},
        {"step": "two"},
        {"step": "three"},
        {"step": "done"},
    ]


def test_an_uncaught_exception_fails_the_orchestration(driver: ReplayDriver) -> None:
    result = driver.run("uncaught_failure", activities=scripted)
    assert (result.status, result.output) == (
        "Failed",
        "Orchestrator function 'uncaught_failure' failed: orchestrator gave up",
    )


def test_a_blocked_orchestration_reports_what_it_waits_for(driver: ReplayDriver) -> None:
    result = driver.run("wait_forever", activities=scripted)
    assert (result.status, result.waiting_for_events) == ("Running", frozenset({"never"}))


def test_an_activity_result_that_is_not_json_fails_like_on_the_worker(driver: ReplayDriver) -> None:
    result = driver.run("sequence", ["x"], activities=lambda name, data: object())
    assert result.status == "Failed"
    assert "json serializable" in result.output


def test_a_mapping_of_activity_handlers_is_accepted(driver: ReplayDriver) -> None:
    result = driver.run("fan_out_fan_in", 3, activities={"double": lambda value: value * 10})
    assert result.output == {"sum": 30, "count": 3}


def test_the_apps_own_activities_can_be_used(driver: ReplayDriver) -> None:
    result = driver.run(
        "fan_out_fan_in", 3, activities=driver.real_activities()
    )  # `double` is async
    assert result.output == {"sum": 6, "count": 3}


def test_a_lone_orchestrator_function_can_be_replayed() -> None:
    def orchestrator(context):
        first = yield context.call_activity("anything", context.get_input())
        both = yield context.task_all(
            [context.call_activity("other", first), context.call_activity("other", 2)]
        )
        return both

    result = replay_orchestrator(orchestrator, 1, activities=lambda name, data: f"{name}:{data}")
    assert result.output == ["other:anything:1", "other:2"]


def test_a_failed_sub_orchestration_is_retried_as_a_new_instance(driver: ReplayDriver) -> None:
    failures = iter([True, False])

    def fails_once(name: str, data: Any) -> Any:
        if next(failures):
            raise ConnectionError("child step failed")
        return f"Hello {data}!"

    result = driver.run("parent_with_retry", activities=fails_once, instance_id="p")
    assert (result.status, result.output) == ("Completed", "Hello retried!")
    children = sorted((iid, s.status) for iid, s in result.instances.items() if iid != "p")
    assert [status for _, status in children] == ["Failed", "Completed"]
    assert result.history_types().count("SUB_ORCHESTRATION_INSTANCE_FAILED") == 1
