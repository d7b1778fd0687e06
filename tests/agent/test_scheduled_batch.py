"""`scheduled_batch`, replayed through the Durable SDK by the local host's engine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agent.contracts import BatchInput, ChatTurnInput
from tests.agent.test_orchestrators import DRIVER
from tests.support.replay import DEFAULT_START_TIME


def turn_for(index: int) -> dict[str, Any]:
    return ChatTurnInput("user:a", f"c{index}", f"b1-{index:04d}", 1, 4, 10_000).to_dict()


def script(start: Any = None, model: Any = None):
    """start_batch_item starts every item; each item's chat_turn answers from `model`."""

    def activities(name: str, data: Any) -> Any:
        if name == "start_batch_item":
            return start(data) if start else {"turn": turn_for(data["index"])}
        if name == "model_step":
            return model(data) if model else {"outcome": "final", "message_id": "m"}
        if name == "finish_turn":
            return None
        raise AssertionError(name)

    return activities


def run(plan: BatchInput, activities) -> Any:
    return DRIVER.run("scheduled_batch", plan.to_dict(), activities=activities, instance_id="b1")


def test_every_item_runs_as_a_chat_turn_and_the_counts_add_up():
    result = run(BatchInput("b1", tuple(range(5)), 2), script())
    assert result.status == "Completed"
    assert result.output == {"batch_id": "b1", "total": 5, "counts": {"completed": 5}}
    turns = {i for i, s in result.instances.items() if s.name == "chat_turn"}
    assert turns == {f"b1-{i:04d}" for i in range(5)}  # run ids derive from the batch


def test_the_window_never_exceeds_the_limit_and_refills_as_soon_as_one_finishes():
    result = run(BatchInput("b1", tuple(range(6)), 2), script())
    starts_per_episode, episode = [], 0
    for event in result.history:
        if event["EventType"] == 12:
            episode += 1
        elif event["EventType"] == 4 and event["Name"] == "start_batch_item":
            starts_per_episode.append(episode)
    # two at once at first; afterwards each finished item frees exactly one slot
    assert starts_per_episode[:2] == [1, 1]
    assert len(set(starts_per_episode)) == 5
    running = [s.get("running") for s in result.custom_statuses if isinstance(s, dict)]
    assert max(running) == 2


def test_a_failing_item_does_not_stop_the_others():
    def start(data: dict[str, Any]) -> dict[str, Any]:
        if data["index"] == 1:
            raise RuntimeError("conversation c1 is busy with another turn")
        if data["index"] == 2:
            return {"status": "rejected"}
        return {"turn": turn_for(data["index"])}

    result = run(BatchInput("b1", (0, 1, 2, 3), 2), script(start=start))
    assert result.output["counts"] == {"completed": 2, "failed": 1, "rejected": 1}
    busy_attempts = [
        d for n, d in result.activity_calls if n == "start_batch_item" and d["index"] == 1
    ]
    assert len(busy_attempts) == 8  # BATCH_ITEM_RETRY: a busy conversation is waited for


def test_a_turn_that_fails_counts_as_failed():
    def model(data: dict[str, Any]) -> dict[str, Any]:
        if data["run"]["run_id"].endswith("0001"):
            return {"outcome": "failed", "error": "401"}
        return {"outcome": "final", "message_id": "m"}

    result = run(BatchInput("b1", (0, 1, 2), 3), script(model=model))
    assert result.output["counts"] == {"completed": 2, "failed": 1}


def test_a_batch_due_in_ten_days_waits_on_timers_of_at_most_six_days():
    due = DEFAULT_START_TIME + timedelta(days=10)
    result = run(BatchInput("b1", (0,), 1, due.isoformat()), script())
    assert result.output["counts"] == {"completed": 1}
    fire_times = [e["FireAt"] for e in result.history if e["EventType"] == 10]
    assert len(fire_times) == 2
    first_start = next(e for e in result.history if e["EventType"] == 4)
    assert first_start["Timestamp"] >= due.isoformat().replace("+00:00", "")[:19]
