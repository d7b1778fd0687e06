"""`scheduled_batch`, replayed through the Durable SDK by the local host's engine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agent.contracts import BatchInput, ChatTurnInput, LaneInput
from agent.orchestrators import ITEMS_PER_LANE_EXECUTION
from agent.versions import version_text
from tests.agent.test_orchestrators import DRIVER
from tests.support.app import load_function_app
from tests.support.replay import DEFAULT_START_TIME, ReplayDriver

V3_DRIVER = ReplayDriver(load_function_app().app, default_version=version_text(3))


def turn_for(index: int) -> dict[str, Any]:
    return ChatTurnInput("user:a", f"c{index}", f"b1-{index:04d}", 1, 4, 10_000).to_dict()


def script(start: Any = None, model: Any = None):
    """A work queue of the batch's items; take_batch_item claims one and starts it (with
    `start`, by default every item starts); each item's chat_turn answers from `model`."""
    claims: dict[str, int | None] = {}
    outcomes: list[dict[str, Any]] = []  # what record_batch_outcome was given

    def claim(data: dict[str, Any]) -> int | None:
        if data["claim_key"] not in claims:
            position = len(claims)
            indices = data["indices"]
            claims[data["claim_key"]] = indices[position] if position < len(indices) else None
        return claims[data["claim_key"]]

    def activities(name: str, data: Any) -> Any:
        if name == "claim_batch_item":
            return {"index": claim(data)}
        if name == "take_batch_item":
            index = claim(data)
            if index is None:
                return {"index": None}
            item = {"batch_id": data["batch_id"], "index": index}
            return {"index": index, **(start(item) if start else {"turn": turn_for(index)})}
        if name == "model_step":
            return model(data) if model else {"outcome": "final", "message_id": "m"}
        if name == "record_batch_outcome":
            outcomes.append(data)
            return None
        if name == "finish_turn":
            return None
        raise AssertionError(name)

    activities.outcomes = outcomes  # type: ignore[attr-defined]
    activities.claims = claims  # type: ignore[attr-defined]
    return activities


def run(plan: BatchInput, activities) -> Any:
    return DRIVER.run("scheduled_batch", plan.to_dict(), activities=activities, instance_id="b1")


def test_every_item_runs_as_a_chat_turn_and_the_counts_add_up():
    result = run(BatchInput("b1", tuple(range(5)), 2), script())
    assert result.status == "Completed"
    assert result.output == {"batch_id": "b1", "total": 5, "counts": {"completed": 5}}
    turns = {i for i, s in result.instances.items() if s.name == "chat_turn"}
    assert turns == {f"b1-{i:04d}" for i in range(5)}  # run ids derive from the batch


def test_at_most_max_concurrency_lanes_share_the_items_and_each_runs_once():
    result = run(BatchInput("b1", tuple(range(7)), 3), script())
    lanes = sorted(i for i, s in result.instances.items() if s.name == "batch_lane")
    assert lanes == ["b1-lane0", "b1-lane1", "b1-lane2"]
    claims = [d["claim_key"] for n, d in result.activity_calls if n == "take_batch_item"]
    assert len(claims) == len(set(claims)) == 7 + 3  # each item once, then one "none left" per lane
    # the lanes were all started at once, in the batch's first episode
    created = [e for e in result.history if e["EventType"] == 7]
    assert len(created) == 3
    assert result.history.index(created[-1]) < next(
        i for i, e in enumerate(result.history) if e["EventType"] == 13
    )


def test_a_lane_continues_as_new_every_few_items_so_its_history_stays_a_few_items_long():
    lane = LaneInput(BatchInput("b1", tuple(range(9)), 1), 0)
    result = DRIVER.run("batch_lane", lane.to_dict(), activities=script(), instance_id="b1-lane0")
    assert result.output == {"completed": 9}
    assert ITEMS_PER_LANE_EXECUTION == 4
    assert len(result.generations) == 2  # items 0-3, 4-7; then 8 and "none left"
    assert len({len(history) for history in result.generations}) == 1
    assert len(result.history) < len(result.generations[0])
    claims = [d["claim_key"] for n, d in result.activity_calls if n == "take_batch_item"]
    assert claims == [f"0.{n}" for n in range(10)]  # the claim numbers carry across executions


def test_a_version_3_lane_continues_as_new_after_each_item():
    lane = LaneInput(BatchInput("b1", tuple(range(6)), 1), 0)
    result = V3_DRIVER.run(
        "batch_lane", lane.to_dict(), activities=script(), instance_id="b1-lane0"
    )
    assert result.output == {"completed": 6}
    assert len(result.generations) == 6  # one execution per item, then the one that found none
    assert len({len(history) for history in result.generations}) == 1
    assert len(result.history) < len(result.generations[0])


def test_a_slow_item_holds_only_its_own_lane():
    def model(data: dict[str, Any]) -> dict[str, Any]:
        slow = data["run"]["run_id"].endswith("0000") and data["step"] == 1
        if slow and not model.waited:  # type: ignore[attr-defined]
            model.waited = True  # type: ignore[attr-defined]
            return {"outcome": "throttled", "retry_after": 90}  # item 0 takes 90 s
        return {"outcome": "final", "message_id": "m"}

    model.waited = False  # type: ignore[attr-defined]
    activities = script(model=model)
    result = run(BatchInput("b1", (0, 1, 2), 2), activities)
    assert result.output["counts"] == {"completed": 3}
    # lane 1 ran items 1 and 2 while lane 0 waited on item 0: no item was bound to a busy lane
    assert {k: v for k, v in activities.claims.items() if v is not None} == {
        "0.0": 0,
        "1.0": 1,
        "1.1": 2,
    }


def test_fewer_items_than_the_limit_start_one_lane_each():
    result = run(BatchInput("b1", (4, 9), 20), script())
    assert sum(s.name == "batch_lane" for s in result.instances.values()) == 2
    assert result.output["counts"] == {"completed": 2}


def test_a_failing_item_does_not_stop_the_others():
    def start(data: dict[str, Any]) -> dict[str, Any]:
        if data["index"] == 1:
            raise RuntimeError("conversation c1 is busy with another turn")
        if data["index"] == 2:
            return {"status": "rejected"}
        return {"turn": turn_for(data["index"])}

    activities = script(start=start)
    result = run(BatchInput("b1", (0, 1, 2, 3), 2), activities)
    assert result.output["counts"] == {"completed": 2, "failed": 1, "rejected": 1}
    # items that never got a run have their outcome recorded for GET /api/batches/{id}
    recorded = {o["index"]: (o["status"], o["error"]) for o in activities.outcomes}
    assert recorded[2] == ("rejected", "")
    assert recorded[1][0] == "failed" and "busy" in recorded[1][1]
    assert set(recorded) == {1, 2}
    busy_key = next(key for key, index in activities.claims.items() if index == 1)
    busy_attempts = [
        d for n, d in result.activity_calls if n == "take_batch_item" and d["claim_key"] == busy_key
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
    first_lane = next(e for e in result.history if e["EventType"] == 7)  # sub-orch. created
    assert first_lane["Timestamp"] >= due.isoformat().replace("+00:00", "")[:19]
