"""Version 4: a model step whose reply is the run's final answer ends the turn itself (the run's
last event in the step's end append, the turn lock released), so no `finish_turn` hop follows.
Against real parts (Azurite, the model server through the `openai` client, the helper MCP
server); activities are at-least-once, so each is run again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from agent import activities
from agent.contracts import ModelStepInput, RunRef
from agent.runtime import Runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import AsgiServer
from offline_model.replies import Completion, ToolCallSpec
from storage.conversations import ConversationRef, ConversationStore
from storage.events import RunEvent, RunEventLog
from tests.agent.conftest import new_run, runtime_on


@pytest_asyncio.fixture(scope="module")
async def rt(
    azurite: AzuriteInstance, model: FakeOpenAI, helper: AsgiServer
) -> AsyncIterator[Runtime]:
    servers = {
        "mcp_servers": [
            {"name": "helper", "transport": {"type": "streamable_http", "url": helper.url()}}
        ]
    }
    async with runtime_on(azurite, model, "turn-ending-step", json.dumps(servers)) as runtime:
        yield runtime


def ending(run: RunRef, cap: int | None = None) -> dict[str, Any]:
    return ModelStepInput(run, 1, max_output_tokens=cap, ends_turn=True).to_dict()


async def logged(rt: Runtime, run: RunRef) -> list[RunEvent]:
    return await RunEventLog(rt.container).read(_ref(run), run.run_id)


async def active_run(rt: Runtime, run: RunRef) -> str | None:
    return (await rt.store.get_meta(_ref(run))).active_run_id


def _ref(run: RunRef) -> ConversationRef:
    return ConversationRef(run.owner, run.conversation_id)


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
