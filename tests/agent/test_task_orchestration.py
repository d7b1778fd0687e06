"""Tool calls their MCP servers run as tasks (version 4): `chat_turn` waits on durable timers at
the task's poll interval and polls with `poll_tool_task` until the task ends, all of a step's
tasks together; its own timeout turns the next poll into a cancel. Replayed through the local
host's engine with scripted activities (their answers built from the real contracts)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agent.contracts import PendingTask, TaskPoll, ToolCallSummary
from agent.versions import version_text
from tests.agent.test_orchestrators import TURN, final, tools
from tests.support.app import load_function_app
from tests.support.replay import DEFAULT_START_TIME, ReplayDriver

V4 = ReplayDriver(load_function_app().app, default_version=version_text(4))
V3 = ReplayDriver(load_function_app().app, default_version=version_text(3))


def pending(call_id: str, after: float = 5.0, timeout: int = 3600) -> PendingTask:
    return PendingTask(call_id, f"task-{call_id}", "reports", after, timeout)


def script(
    model_replies: list[Any],
    tasks: dict[str, PendingTask],
    polls_until_done: dict[str, int],
    failing_polls: frozenset[tuple[str, int]] = frozenset(),
):
    """tool_call answers a pending task for the calls in `tasks`; each task ends on its
    `polls_until_done[call]`-th poll; a (call, poll) in `failing_polls` raises."""
    replies = iter(model_replies)
    seen: list[tuple[str, Any]] = []
    polls: dict[str, int] = {}

    def call(name: str, data: Any) -> Any:
        seen.append((name, data))
        if name == "model_step":
            return next(replies)
        if name == "tool_call":
            task = tasks.get(data["call_id"]) if data.get("may_await_task") else None
            return ToolCallSummary(data["call_id"], False, task=task).to_dict()
        if name == "poll_tool_task":
            call_id = data["call_id"]
            if (call_id, data["poll"]) in failing_polls:
                raise ConnectionError(f"MCP server 'reports' is unreachable ({call_id})")
            if data.get("give_up"):
                return TaskPoll(call_id, outcome="task_timed_out").to_dict()
            polls[call_id] = polls.get(call_id, 0) + 1
            if polls[call_id] >= polls_until_done[call_id]:
                return TaskPoll(call_id, outcome="completed").to_dict()
            return TaskPoll(call_id, pending=tasks[call_id]).to_dict()
        if name == "finish_turn":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return call, seen


def run(driver: ReplayDriver, activities: Any):
    return driver.run("chat_turn", TURN.to_dict(), activities=activities)


def test_a_task_is_polled_on_timers_at_its_interval_until_it_completes():
    activities, seen = script([tools(1, "a"), final(2)], {"a": pending("a")}, {"a": 6})
    result = run(V4, activities)
    assert result.status == "Completed" and result.output["status"] == "completed"
    names = [name for name, _ in seen]
    assert names == [
        "model_step",
        "tool_call",
        *["poll_tool_task"] * 6,
        "model_step",
        "finish_turn",
    ]
    assert seen[1][1]["may_await_task"] is True
    assert [d["poll"] for n, d in seen if n == "poll_tool_task"] == [0, 1, 2, 3, 4, 5]
    assert result.virtual_time - DEFAULT_START_TIME >= timedelta(seconds=30)  # 6 waits of 5 s
    waiting = [s for s in result.custom_statuses if s.get("phase") == "waiting_for_task"]
    assert waiting[0]["tasks"] == [
        {
            "tool_call_id": "a",
            "task_id": "task-a",
            "server": "reports",
            "status": "working",
        }
    ]


def test_the_tasks_of_one_step_are_polled_together_and_a_plain_call_beside_them_is_not():
    tasks = {"a": pending("a", after=2.0), "b": pending("b", after=2.0)}
    activities, seen = script([tools(1, "a", "b", "c"), final(2)], tasks, {"a": 1, "b": 3})
    result = run(V4, activities)
    assert result.output["status"] == "completed"
    rounds = [d["call_id"] for n, d in seen if n == "poll_tool_task"]
    assert rounds == ["a", "b", "b", "b"]  # a ended on the first round; b polled alone after
    assert "c" not in rounds


def test_a_task_past_the_timeout_is_given_up_with_its_next_poll():
    tasks = {"a": pending("a", after=4.0, timeout=10)}
    activities, seen = script([tools(1, "a"), final(2)], tasks, {"a": 100})
    result = run(V4, activities)
    assert result.output["status"] == "completed"  # the model reads task_timed_out
    give_up = [d.get("give_up", False) for n, d in seen if n == "poll_tool_task"]
    assert give_up == [False, False, True]  # at 4 s, 8 s, then 12 s > 10 s


def test_a_failed_poll_is_polled_again_and_the_task_still_completes():
    tasks = {"a": pending("a", after=1.0)}
    activities, seen = script(
        [tools(1, "a"), final(2)], tasks, {"a": 2}, failing_polls=frozenset({("a", 1)})
    )
    result = run(V4, activities)
    assert result.output["status"] == "completed"
    assert [d["poll"] for n, d in seen if n == "poll_tool_task"] == [0, 1, 2]
    step2 = [d for n, d in seen if n == "model_step"][1]
    assert step2.get("failed_tool_calls", []) == []


def test_a_poll_that_keeps_failing_reaches_the_model_as_a_failed_call():
    tasks = {"a": pending("a", after=1.0)}
    failing = frozenset(("a", poll) for poll in range(10))
    activities, seen = script([tools(1, "a"), final(2)], tasks, {"a": 100}, failing)
    result = run(V4, activities)
    assert result.output["status"] == "completed"
    step2 = [d for n, d in seen if n == "model_step"][1]
    [failed] = step2["failed_tool_calls"]
    assert failed["call_id"] == "a" and "unreachable" in failed["reason"]
    polls = [n for n, _ in seen].count("poll_tool_task")
    assert polls == TURN.tool_attempts


def test_a_version_3_run_never_asks_for_tasks():
    activities, seen = script([tools(1, "a"), final(2)], {"a": pending("a")}, {"a": 1})
    result = run(V3, activities)
    assert result.output["status"] == "completed"
    assert "may_await_task" not in seen[1][1]
    assert "poll_tool_task" not in [n for n, _ in seen]
