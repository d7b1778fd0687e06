"""Compaction in `chat_turn` (version 3), and the named end of a turn too big for the window:
replayed through the local host's engine with scripted activities."""

from __future__ import annotations

from typing import Any

from agent.loop import Compact, Finish, LoopLimits, LoopState, StepSummary, decide
from agent.versions import version_text
from tests.agent.test_orchestrators import TURN, USAGE, final, tools
from tests.support.app import load_function_app
from tests.support.replay import ReplayDriver

V3 = ReplayDriver(load_function_app().app, default_version=version_text(3))
V2 = ReplayDriver(load_function_app().app, default_version=version_text(2))
COMPACT = {"outcome": "compact"}
SUMMARY_USAGE = {"prompt_tokens": 900, "completion_tokens": 100, "total_tokens": 1000}


def activities(model_replies: list[Any], compact: Any = None):
    replies = iter(model_replies)
    seen: list[tuple[str, Any]] = []

    def call(name: str, data: Any) -> Any:
        seen.append((name, data))
        if name == "model_step":
            return next(replies)
        if name == "compact":
            if isinstance(compact, Exception):
                raise compact
            return compact or {"compacted": True, "usage": SUMMARY_USAGE, "covered_tokens": 5000}
        if name == "tool_call":
            return {"call_id": data["call_id"], "is_error": False}
        if name == "finish_turn":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return call, seen


def run(driver: ReplayDriver, script: Any):
    return driver.run("chat_turn", TURN.to_dict(), activities=script)


def test_a_step_that_asks_for_compaction_gets_it_then_runs_again_without_asking():
    script, seen = activities([COMPACT, final(1)])
    result = run(V3, script)
    assert result.status == "Completed" and result.output["status"] == "completed"
    names = [name for name, _ in seen]
    assert names == ["model_step", "compact", "model_step", "finish_turn"]
    assert seen[0][1]["compaction"] is True and "compaction" not in seen[2][1]
    assert seen[1][1] == {"run": seen[0][1]["run"], "step": 1}
    assert result.output["steps"] == 1
    assert result.output["usage"]["total_tokens"] == 1000 + USAGE["total_tokens"]  # counted
    assert {"step": 1, "phase": "compacting"} in result.custom_statuses


def test_each_step_may_compact_once():
    script, seen = activities([tools(1, "a"), COMPACT, final(2)])
    result = run(V3, script)
    assert result.output["status"] == "completed"
    steps = [(d["step"], d.get("compaction", False)) for n, d in seen if n == "model_step"]
    assert steps == [(1, True), (2, True), (2, False)]


def test_a_compaction_that_fails_for_good_leaves_the_step_to_run_without_it():
    script, seen = activities([COMPACT, final(1)], compact=RuntimeError("bad request (400)"))
    result = run(V3, script)
    assert result.output["status"] == "completed"
    assert [n for n, _ in seen].count("model_step") == 2


def test_a_turn_too_big_for_the_window_ends_context_exceeded_and_closes_the_turn():
    error = "the current turn does not fit the context window: AGENT_CONTEXT_TOKENS=1000 ..."
    script, seen = activities([{"outcome": "context_exceeded", "error": error}])
    result = run(V3, script)
    assert result.output["status"] == "context_exceeded"
    assert result.output["error"] == error
    assert [n for n, _ in seen] == ["model_step", "finish_turn"]
    assert seen[-1][1]["status"] == "context_exceeded"


def test_a_version_2_run_never_asks_for_compaction():
    script, seen = activities([tools(1, "a"), final(2)])
    assert run(V2, script).output["status"] == "completed"
    assert all("compaction" not in d for n, d in seen if n == "model_step")
    assert "compact" not in [n for n, _ in seen]


def test_the_decision_compacts_on_compact_and_finishes_on_context_exceeded():
    limits = LoopLimits(4, 10_000)
    assert decide(LoopState(), StepSummary("compact"), limits) == Compact()
    ended = decide(LoopState(), StepSummary("context_exceeded", error="too big"), limits)
    assert ended == Finish("context_exceeded", error="too big")
