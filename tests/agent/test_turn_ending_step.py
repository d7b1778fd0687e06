"""Version 4: a model step whose reply is the run's final answer ends the turn itself (the run's
last event in the step's end append, the turn lock released), so no `finish_turn` hop follows.
Against real parts (Azurite, the model server through the `openai` client, the helper MCP
server); activities are at-least-once, so each is run again."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from agent import activities
from agent.contracts import FinishTurnInput, ModelStepInput, RunRef
from agent.runtime import Runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import AsgiServer
from offline_model.replies import Completion, ToolCallSpec
from storage import paths
from storage.conversations import ConversationRef, ConversationStore
from storage.events import NewEvent, RunEvent, RunEventLog
from tests.agent.conftest import helper_only, new_run, runtime_on


@pytest_asyncio.fixture(scope="module")
async def rt(
    azurite: AzuriteInstance, model: FakeOpenAI, helper: AsgiServer
) -> AsyncIterator[Runtime]:
    async with runtime_on(azurite, model, "turn-ending-step", helper_only(helper)) as runtime:
        yield runtime


def ending(run: RunRef, cap: int | None = None) -> dict[str, Any]:
    return ModelStepInput(run, 1, max_output_tokens=cap, ends_turn=True).to_dict()


async def logged(rt: Runtime, run: RunRef) -> list[RunEvent]:
    return await RunEventLog(rt.container).read(_ref(run), run.run_id)


async def active_run(rt: Runtime, run: RunRef) -> str | None:
    return (await rt.store.get_meta(_ref(run))).active_run_id


def _ref(run: RunRef) -> ConversationRef:
    return ConversationRef(run.owner, run.conversation_id)


def elsewhere(rt: Runtime) -> Runtime:
    """Another instance: the same clients, its own stores (nothing of this one's copies)."""
    return dataclasses.replace(rt, store=ConversationStore(rt.container), _events=None)


class Stopped(Exception):
    """The worker stopped (a crash) right after the release, before the step's end append."""


async def stop_after_the_release(rt: Runtime, run: RunRef, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the ending step so that it stops once it has released the turn: its end append (the
    one that creates no log) never happens. The turn is free; the log has no run_finished."""
    real = rt.events.append

    async def stops(
        ref: ConversationRef, run_id: str, events: list[NewEvent], **options: bool
    ) -> list[RunEvent]:
        if options.get("create") is False:
            raise Stopped
        return await real(ref, run_id, events, **options)

    with monkeypatch.context() as patched:
        patched.setattr(rt.events, "append", stops)
        with pytest.raises(Stopped):
            await activities.model_step(ending(run), rt)
    assert await active_run(rt, run) is None


async def blobs_of(rt: Runtime, run: RunRef) -> list[str]:
    prefix = paths.conversation_prefix(_ref(run))
    return [blob.name async for blob in rt.container.list_blobs(name_starts_with=prefix)]


async def test_a_final_answer_ends_its_turn_in_the_step_and_again_changes_nothing(rt, model):
    run = await new_run(rt, "user:ending")
    model.brain.answer("all done")
    assert await active_run(rt, run) == run.run_id
    first = await activities.model_step(ending(run), rt)
    assert first["outcome"] == "final" and first["turn_ended"] is True
    assert await active_run(rt, run) is None  # the conversation takes its next turn
    events = await logged(rt, run)
    assert [e.type for e in events][-2:] == ["step_completed", "run_finished"]
    assert events[-1].data == {"status": "completed", "answer": "all done"}
    again = await activities.model_step(ending(run), rt)  # at-least-once: the step again
    assert again == first
    assert await logged(rt, run) == events


async def test_an_answer_over_what_the_run_had_left_leaves_the_turn_to_finish_turn(rt, model):
    run = await new_run(rt, "user:ending")
    model.brain.answer("too dear")
    summary = await activities.model_step(ending(run, cap=1), rt)
    assert summary["outcome"] == "final" and "turn_ended" not in summary
    assert await active_run(rt, run) == run.run_id
    assert "run_finished" not in [e.type for e in await logged(rt, run)]


async def test_a_step_asking_for_tools_does_not_end_its_turn(rt, model):
    run = await new_run(rt, "user:ending")
    model.brain.then(Completion(tool_calls=(ToolCallSpec("helper__greet", '{"name": "x"}'),)))
    summary = await activities.model_step(ending(run), rt)
    assert summary["outcome"] == "tool_calls" and "turn_ended" not in summary
    assert await active_run(rt, run) == run.run_id


async def test_a_step_not_told_it_may_end_the_turn_leaves_it_open(rt, model):
    run = await new_run(rt, "user:ending")
    model.brain.answer("all done")
    summary = await activities.model_step(ModelStepInput(run, 1).to_dict(), rt)
    assert "turn_ended" not in summary
    assert await active_run(rt, run) == run.run_id


async def test_a_step_answering_after_its_run_gave_the_turn_back_does_not_end_it(rt, model):
    """A run cancelled while the model answered: the cancel gave the lock back, so the late
    answer is stored but the run's end stays the cancel's (no run_finished "completed")."""
    run = await new_run(rt, "user:ending")
    await rt.store.end_turn(_ref(run), run.run_id)  # what a cancel does once Durable says so
    model.brain.answer("too late")
    summary = await activities.model_step(ending(run), rt)
    assert summary["outcome"] == "final" and "turn_ended" not in summary
    assert "run_finished" not in [e.type for e in await logged(rt, run)]


async def test_a_turn_another_instance_gave_back_is_not_ended_by_this_ones_stale_copy(rt, model):
    """This process still holds the meta from the turn's start (the release writes from it
    without a read): the conditional write finds it stale, reads, and leaves the turn alone."""
    run = await new_run(rt, "user:ending")
    elsewhere = ConversationStore(rt.container)  # another instance, its own copies
    await elsewhere.end_turn(_ref(run), run.run_id)  # a cancel seen ended, over there
    await elsewhere.begin_turn(_ref(run), "the-next-run")
    model.brain.answer("too late")
    summary = await activities.model_step(ending(run), rt)
    assert summary["outcome"] == "final" and "turn_ended" not in summary
    assert await active_run(rt, run) == "the-next-run"
    assert "run_finished" not in [e.type for e in await logged(rt, run)]


async def test_a_retry_past_the_release_of_a_conversation_deleted_meanwhile_leaves_no_log(
    rt, model, monkeypatch
):
    """The retry runs here, where the step's copy of the transcript still shows its stored
    reply: its end append finds the log gone with the conversation and creates none (nor does
    `finish_turn`), instead of leaving a log behind and failing on a log it cannot reach."""
    run = await new_run(rt, "user:ending")
    model.brain.answer("all done")
    await stop_after_the_release(rt, run, monkeypatch)
    elsewhere = ConversationStore(rt.container)
    await elsewhere.lock_for_deletion(_ref(run))
    await elsewhere.delete(_ref(run))

    summary = await activities.model_step(ending(run), rt)
    await activities.finish_turn(FinishTurnInput(run, "completed").to_dict(), rt)

    assert summary["outcome"] == "final"
    assert await blobs_of(rt, run) == []


async def test_finish_turn_after_the_release_writes_no_log_a_deletion_under_way_removed(
    rt, model, monkeypatch
):
    """The turn was free (a step released it, then stopped), and a deletion has removed the
    run's log but not yet the meta, which goes last: `finish_turn` must not make the log again
    (it would outlive the conversation)."""
    run = await new_run(rt, "user:ending")
    model.brain.answer("all done")
    await stop_after_the_release(rt, run, monkeypatch)
    await rt.container.delete_blob(paths.run_events_name(_ref(run), run.run_id))

    await activities.finish_turn(FinishTurnInput(run, "completed").to_dict(), rt)

    assert paths.run_events_name(_ref(run), run.run_id) not in await blobs_of(rt, run)


async def test_finish_turn_after_a_step_that_stopped_past_the_release_writes_the_runs_end(
    rt, model, monkeypatch
):
    run = await new_run(rt, "user:ending")
    model.brain.answer("all done")
    await stop_after_the_release(rt, run, monkeypatch)

    summary = await activities.model_step(ending(run), elsewhere(rt))
    await activities.finish_turn(FinishTurnInput(run, "completed").to_dict(), rt)

    assert summary["outcome"] == "final"
    assert [e.type for e in await logged(rt, run)].count("run_finished") == 1
