"""What the activities record in a run's event log, against real parts (Azurite, the model server
streaming through the `openai` client, the helper MCP server). Activities are at-least-once, so
each is run again: a second run records nothing new."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from agent import activities
from agent.contracts import FinishTurnInput, ModelStepInput, RunRef, ToolCallInput
from agent.events import RunRecorder, TextDeltas, step_completed
from agent.runtime import Runtime, build_runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import AsgiServer
from offline_model import Completion, Paced
from storage.conversations import ConversationRef
from storage.events import RunEvent
from tests.agent.conftest import new_run as start_run
from tests.agent.conftest import runtime_on

LONG_ANSWER = "Streaming answers arrive piece by piece, and the log keeps each piece once. " * 4


@pytest_asyncio.fixture(scope="module")
async def rt(
    azurite: AzuriteInstance, model: FakeOpenAI, helper: AsgiServer
) -> AsyncIterator[Runtime]:
    servers = {
        "mcp_servers": [
            {"name": "helper", "transport": {"type": "streamable_http", "url": helper.url()}},
            {
                "name": "guarded",
                "transport": {"type": "streamable_http", "url": helper.url()},
                "tools": {"allow": ["greet"], "require_approval": ["greet"]},
            },
        ]
    }
    async with runtime_on(azurite, model, "run-events-test", json.dumps(servers)) as runtime:
        yield runtime


async def new_run(rt: Runtime, content: str = "hello") -> RunRef:
    return await start_run(rt, "user:events", content)


def step(run: RunRef, number: int) -> dict[str, Any]:
    return ModelStepInput(run, number).to_dict()


async def logged(rt: Runtime, run: RunRef) -> list[RunEvent]:
    """The log as a fresh reader sees it (not this process's writer cursor)."""
    from storage.events import RunEventLog

    ref = ConversationRef(run.owner, run.conversation_id)
    return await RunEventLog(rt.container).read(ref, run.run_id)


def text_of(events: list[RunEvent], step_number: int) -> str:
    text = ""
    for event in events:
        if event.data.get("step") != step_number:
            continue
        if event.type == "text_reset":
            text = ""
        elif event.type == "text_delta":
            text += event.data["delta"]
    return text


async def test_a_model_step_records_its_start_its_streamed_text_and_its_end_once(rt, model):
    run = await new_run(rt)
    model.brain.answer(LONG_ANSWER)
    await activities.model_step(step(run, 1), rt)
    first = await logged(rt, run)
    await activities.model_step(step(run, 1), rt)  # at-least-once: the same step again
    assert await logged(rt, run) == first
    types = [e.type for e in first]
    assert types[:2] == ["run_started", "step_started"]
    assert types[-1] == "step_completed" and set(types[2:-1]) == {"text_delta"}
    assert text_of(first, 1) == LONG_ANSWER
    assert [e.seq for e in first] == list(range(1, len(first) + 1))
    assert first[-1].data["finish_reason"] == "stop"


async def test_a_step_cut_off_midway_and_retried_continues_its_text_without_repeating_it(rt, model):
    run = await new_run(rt)
    model.brain.then(Paced(Completion(content=LONG_ANSWER), drop_after_chunks=12))
    model.brain.answer(LONG_ANSWER)
    try:
        await activities.model_step(step(run, 1), rt)
    except Exception as exc:  # transient: Durable would retry the activity
        assert "broke off" in str(exc)
    partial = text_of(await logged(rt, run), 1)
    assert partial and LONG_ANSWER.startswith(partial) and partial != LONG_ANSWER
    await activities.model_step(step(run, 1), rt)
    events = await logged(rt, run)
    assert "text_reset" not in [e.type for e in events]
    assert "".join(e.data["delta"] for e in events if e.type == "text_delta") == LONG_ANSWER


async def test_a_retried_step_that_writes_other_text_resets_the_text_it_streamed(rt, model):
    run = await new_run(rt)
    model.brain.then(
        Paced(Completion(content="First attempt, never finished."), drop_after_chunks=5)
    )
    model.brain.answer("The second attempt says something else.")
    try:
        await activities.model_step(step(run, 1), rt)
    except Exception as exc:
        assert "broke off" in str(exc)
    await activities.model_step(step(run, 1), rt)
    events = await logged(rt, run)
    assert [e.type for e in events].count("text_reset") == 1
    assert text_of(events, 1) == "The second attempt says something else."


async def test_a_step_retried_where_an_earlier_attempt_ran_learns_what_another_process_wrote(
    rt, model
):
    # attempt 1 here, attempt 2 in another process, attempt 3 here again: this process's cursor
    # knows its own step_started, so nothing it appends proves the cursor current; it must read
    # attempt 2's reset and text, or its own reset and text would collide with their keys
    run = await new_run(rt)
    for text in ("First attempt, never finished.", "Second attempt, cut off as well."):
        model.brain.then(Paced(Completion(content=text), drop_after_chunks=5))
    model.brain.answer("The third attempt finishes.")
    other = await build_runtime(rt.settings)
    try:
        for attempt in (rt, other):
            try:
                await activities.model_step(step(run, 1), attempt)
            except Exception as exc:
                assert "broke off" in str(exc)
    finally:
        await other.aclose()
    await activities.model_step(step(run, 1), rt)
    events = await logged(rt, run)
    assert [e.type for e in events].count("text_reset") == 2
    assert text_of(events, 1) == "The third attempt finishes."
    assert [e.type for e in events].count("step_completed") == 1


async def test_tool_calls_record_request_approval_start_and_result_once(rt, model):
    run = await new_run(rt)
    model.brain.call_tools(("helper__greet", {"name": "Ada"}), ("guarded__greet", {"name": "Bo"}))
    summary = await activities.model_step(step(run, 1), rt)
    plain, guarded = summary["tool_call_ids"]
    for call in (ToolCallInput(run, 1, plain), ToolCallInput(run, 1, guarded, approved=True)):
        await activities.tool_call(call.to_dict(), rt)
        await activities.tool_call(call.to_dict(), rt)  # again: records nothing new
    events = await logged(rt, run)
    kinds = [(e.type, e.data.get("tool_call_id")) for e in events if "tool_call_id" in e.data]
    assert kinds == [
        ("tool_call_requested", plain),
        ("tool_call_requested", guarded),
        ("approval_needed", guarded),
        ("tool_call_started", plain),
        ("tool_call_completed", plain),
        ("approval_decided", guarded),
        ("tool_call_started", guarded),
        ("tool_call_completed", guarded),
    ]
    done = next(e for e in events if e.type == "tool_call_completed")
    assert done.data["name"] == "helper__greet" and "Ada" in done.data["result"]
    assert json.loads(done.data["arguments"]) == {"name": "Ada"}


async def test_a_rejected_call_records_the_decision_and_a_failed_call(rt, model):
    run = await new_run(rt)
    model.brain.call_tools(("guarded__greet", {"name": "Cy"}))
    [call_id] = (await activities.model_step(step(run, 1), rt))["tool_call_ids"]
    call = ToolCallInput(run, 1, call_id, rejection="the person said no")
    await activities.tool_call(call.to_dict(), rt)
    events = await logged(rt, run)
    decided = next(e for e in events if e.type == "approval_decided")
    assert decided.data["approved"] is False and decided.data["reason"] == "the person said no"
    assert events[-1].type == "tool_call_failed"
    assert "tool_call_started" not in [e.type for e in events]


async def test_a_rate_limited_step_records_how_long_the_run_waits(rt, model):
    run = await new_run(rt)
    model.brain.rate_limit(retry_after_seconds=3)
    summary = await activities.model_step(step(run, 1), rt)
    assert summary["outcome"] == "throttled"
    throttled = (await logged(rt, run))[-1]
    assert throttled.type == "throttled"
    assert throttled.data == {"wait": 3.0, "reason": "rate_limited", "step": 1}


async def test_finishing_a_turn_records_the_answer_as_the_last_event(rt, model):
    run = await new_run(rt)
    model.brain.answer("all done")
    await activities.model_step(step(run, 1), rt)
    finish = FinishTurnInput(run, "completed").to_dict()
    await activities.finish_turn(finish, rt)
    await activities.finish_turn(finish, rt)
    events = await logged(rt, run)
    assert [e.type for e in events].count("run_finished") == 1
    assert events[-1].type == "run_finished"
    assert events[-1].data == {"status": "completed", "answer": "all done"}


async def test_a_run_stopped_before_its_first_step_still_starts_and_finishes(rt):
    run = await new_run(rt)
    await activities.finish_turn(FinishTurnInput(run, "budget_exceeded").to_dict(), rt)
    assert [e.type for e in await logged(rt, run)] == ["run_started", "run_finished"]


async def test_text_arriving_faster_than_the_interval_is_coalesced_into_few_writes(rt):
    run = await new_run(rt)
    ref = ConversationRef(run.owner, run.conversation_id)
    from storage.events import RunEventLog

    log = RunEventLog(rt.container)
    deltas = TextDeltas(RunRecorder(log, ref, run.run_id), 1, interval=60.0)
    pieces = [f"token{i} " for i in range(500)]
    for piece in pieces:
        await deltas.add(piece)
    await deltas.finish("".join(pieces))
    # the first piece at once, the rest when the text is complete (or the size bound is hit)
    assert log.appends <= 2 + len("".join(pieces)) // deltas.max_chars
    events = await log.read(ref, run.run_id)
    assert "".join(e.data["delta"] for e in events) == "".join(pieces)


class ListRecorder:
    """Keeps what a TextDeltas records, in memory (the log itself is tested above)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Event()

    async def record(self, *events: Any, create: bool = True) -> None:
        self.events.extend(events)
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()


async def test_a_final_answer_that_replaces_streamed_text_resets_it_rather_than_appending():
    """E.g. the content filter cuts a completion midway: the client must drop what streamed, not
    see the filter's answer glued onto it."""
    recorder = ListRecorder()
    deltas = TextDeltas(recorder, 1, interval=60.0)  # type: ignore[arg-type]
    await deltas.add("Hello wor")
    await recorder.wait_for(1)  # the first piece goes at once
    await deltas.finish("[blocked by filter]")
    kinds = [(e.type, e.data.get("delta")) for e in recorder.events]
    assert kinds == [
        ("text_delta", "Hello wor"),
        ("text_reset", None),
        ("text_delta", "[blocked by filter]"),
    ]


async def test_a_final_answer_that_continues_the_streamed_text_only_appends_the_rest():
    recorder = ListRecorder()
    deltas = TextDeltas(recorder, 1, interval=60.0)  # type: ignore[arg-type]
    await deltas.add("Hello ")
    await recorder.wait_for(1)
    await deltas.add("world")
    await deltas.finish("Hello world!")
    assert [e.type for e in recorder.events] == ["text_delta", "text_delta"]
    assert "".join(e.data["delta"] for e in recorder.events) == "Hello world!"


class CallRecorder(ListRecorder):
    """Also counts the appends (calls), not only the events."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def record(self, *events: Any, create: bool = True) -> None:
        self.calls += 1
        await super().record(*events, create=create)


async def test_a_reply_that_arrived_whole_goes_with_the_steps_end_in_one_append():
    """The stream ended before the first piece was written (the writer had no turn yet): the
    text and the step's end share one append instead of a write each."""
    recorder = CallRecorder()
    deltas = TextDeltas(recorder, 1, interval=60.0)  # type: ignore[arg-type]
    await deltas.add("All ")
    await deltas.add("done.")
    deltas.stream_ended()
    await asyncio.sleep(0)  # a yield, not a wait: the writer gets its turn and must start nothing
    await deltas.finish("All done.", step_completed(1, "stop", None, ()))
    assert recorder.calls == 1
    assert [(e.type, e.data.get("delta")) for e in recorder.events] == [
        ("text_delta", "All done."),
        ("step_completed", None),
    ]


async def test_text_streamed_before_the_end_still_went_out_at_once():
    recorder = CallRecorder()
    deltas = TextDeltas(recorder, 1, interval=60.0)  # type: ignore[arg-type]
    await deltas.add("Hello ")
    await recorder.wait_for(1)  # the first piece at once, while the stream goes on
    await deltas.add("world")
    deltas.stream_ended()
    await deltas.finish("Hello world")
    assert recorder.calls == 2
    assert "".join(e.data["delta"] for e in recorder.events) == "Hello world"


async def test_a_run_begun_without_its_log_that_ends_before_its_first_step_gets_one(rt):
    """Its budget stopped it before any step: `finish_turn` makes the log (the run still holds
    the turn, so its conversation is not being deleted) and gives the turn back."""
    import uuid

    from agent.transcript import user_message

    ref = ConversationRef("user:events", uuid.uuid4().hex)
    await rt.store.create(ref)
    run_id = uuid.uuid4().hex
    turn = await rt.store.begin_turn(ref, run_id)
    await rt.store.append(ref, user_message(run_id, turn, "hello"))  # and no log
    run = RunRef(ref.owner, ref.conversation_id, run_id, turn)
    await activities.finish_turn(FinishTurnInput(run, "failed").to_dict(), rt)
    assert [e.type for e in await logged(rt, run)] == ["run_started", "run_finished"]
    assert (await rt.store.get_meta(ref)).active_run_id is None


async def test_a_run_begun_without_its_log_gets_one_at_its_first_step(rt, model):
    """A run started before logs came with their turn's message: no log, yet its conversation
    is there, so the first step creates the log rather than ending the run as gone."""
    import uuid

    from agent.transcript import user_message

    ref = ConversationRef("user:events", uuid.uuid4().hex)
    await rt.store.create(ref)
    run_id = uuid.uuid4().hex
    turn = await rt.store.begin_turn(ref, run_id)
    await rt.store.append(ref, user_message(run_id, turn, "hello"))  # and no log
    model.brain.answer("all done")
    run = RunRef(ref.owner, ref.conversation_id, run_id, turn)
    summary = await activities.model_step(step(run, 1), rt)
    assert summary["outcome"] == "final"
    assert [e.type for e in await logged(rt, run)][:2] == ["run_started", "step_started"]
