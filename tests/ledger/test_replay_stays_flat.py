"""A long turn's episodes replay no more than a short turn's (issue #16 item 3): the history an
episode replays at model step 50 is within 1.5x of what it replays at step 2, in events and
bytes, counted by the local host as it runs the turn (counts, not timings). Version 4 keeps it
flat by continuing the turn as new every few steps; before it, step 50 replayed ~25x step 2."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from local_host.activities import decode_activity_input
from local_host.counters import DurableCounters
from local_host.history import TERMINAL_STATUSES, Event
from offline_model.brains import tool_names
from offline_model.replies import Completion, Reply
from tests.ledger.conftest import CountedApp
from tests.ledger.test_cost_ledger import GREET

STEPS = 50
FLAT = 1.5  # the bound: step 50 within 1.5x of step 2
TASK_SCHEDULED = 4


@dataclass(frozen=True)
class Replay:
    """What the episode that scheduled a model step replayed: its execution's history so far."""

    events: int
    bytes: int


@contextmanager
def replays_by_step(
    counters: DurableCounters, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[int, Replay]]:
    """For each model step, what the chat_turn episode that scheduled it replayed (the host's
    own per-instance history size, read just before it counts the episode)."""
    seen: dict[int, Replay] = {}
    count = counters.episode

    def episode(**fields: Any) -> None:
        history_bytes = counters._history_bytes.get(fields["instance_id"], 0)  # what it replayed
        appended: Sequence[Event] = fields["appended"]
        for event in appended:
            if event.get("EventType") == TASK_SCHEDULED and event.get("Name") == "model_step":
                step = decode_activity_input(event["Input"])["step"]
                seen[step] = Replay(fields["replayed"], history_bytes)
        count(**fields)

    monkeypatch.setattr(counters, "episode", episode)
    yield seen


async def unscripted_turn(app: CountedApp) -> None:
    """One turn, answered by the model's fallback (nothing scripted), to its end."""
    conversation = (await app.post("/conversations"))["id"]
    reply = await app.post(f"/conversations/{conversation}/messages", json={"content": "go"})
    done = await app.host.runtime.wait_for_status(reply["run_id"], TERMINAL_STATUSES, within=120)
    assert str(done.runtime_status) == "Completed", done.output_raw
    assert json.loads(done.output_raw or "{}")["status"] == "completed", done.output_raw


class LongTurn:
    """The model of a turn of `steps` model steps: a greet tool call on each but the last,
    which answers. A request offering no tools (compaction's summary: a 50-step turn outgrows
    the context window) gets a summary and is no step."""

    def __init__(self, steps: int) -> None:
        self.steps, self.answered = steps, 0

    def __call__(self, request_json: dict[str, Any]) -> Reply:
        if not tool_names(request_json):
            return Completion(content="a summary of the greetings so far")
        self.answered += 1
        if self.answered < self.steps:
            return Completion(tool_calls=(GREET,))
        return Completion(content="done")


async def test_an_episode_at_step_50_replays_within_1_5x_of_one_at_step_2(
    counted: CountedApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(counted.model.brain, "fallback", LongTurn(STEPS))
    with replays_by_step(counted.host.runtime.counters, monkeypatch) as replays:
        await unscripted_turn(counted)
    assert max(replays) == STEPS
    early, late = replays[2], replays[STEPS]
    print(f"\nreplayed at step 2: {early}; at step {STEPS}: {late}")
    assert early.events > 0 and early.bytes > 0  # the counting sees the episodes at all
    assert late.events <= FLAT * early.events
    assert late.bytes <= FLAT * early.bytes
    # And no episode of the whole turn replays more than the flat bound of step 2's.
    assert max(r.events for r in replays.values()) <= FLAT * early.events * 2


async def test_a_run_that_continued_as_new_reads_the_same_through_the_run_view(
    counted: CountedApp,
) -> None:
    steps = 10  # three executions: steps 1-4, 5-8, 9-10
    for _ in range(steps - 1):
        counted.model.brain.then(Completion(tool_calls=(GREET,)))
    counted.model.brain.answer("done")
    conversation = (await counted.post("/conversations"))["id"]
    reply = await counted.post(f"/conversations/{conversation}/messages", json={"content": "go"})
    run_id = reply["run_id"]
    await counted.host.runtime.wait_for_status(run_id, TERMINAL_STATUSES, within=60)

    record = counted.host.runtime.get_instance(run_id)
    assert record is not None and record.instance_id == run_id
    stored = json.loads(record.input_raw or "{}")
    stored = json.loads(stored) if isinstance(stored, str) else stored  # JSON of JSON text
    assert stored["progress"]["step"] == 9  # its last execution
    async with counted.http.get(f"{counted.api}/runs/{run_id}") as response:
        view = await response.json()
    assert view["status"] == "completed" and view["step"] == steps
    assert view["conversation_id"] == conversation and view["answer"] == "done"
    async with counted.http.get(f"{counted.api}/runs/{run_id}/events?wait=0") as response:
        events = (await response.json())["events"]
    started = [e["step"] for e in events if e["type"] == "step_started"]
    assert started == list(range(1, steps + 1))
    assert [e["type"] for e in events].count("run_finished") == 1
    assert events[-1]["type"] == "run_finished"
    assert (events[-1]["status"], events[-1]["answer"]) == ("completed", "done")
    counted.model.brain.answer("hello")
    again = await counted.post(f"/conversations/{conversation}/messages", json={"content": "hi"})
    assert again["run_id"] != run_id  # the turn's lock was released by its last step
    await counted.host.runtime.wait_for_status(again["run_id"], TERMINAL_STATUSES, within=60)
