"""A conversation far beyond the context budget, run for real: Azurite, the offline model server
through the `openai` client, the helper MCP server, and `chat_turn` replayed by the local host's
engine (tests/support/replay.py) calling the real activities. The model server records every
request, so the test reads what the model was sent and counts its prompt as the server does."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest_asyncio

from agent import activities, compaction
from agent.contracts import ChatTurnInput, CompactInput, ModelStepInput
from agent.runtime import Runtime
from agent.settings import ContextSettings
from agent.versions import version_text
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import AsgiServer
from offline_model.replies import ToolCallSpec
from offline_model.wire import prompt_tokens_of
from storage.conversations import ConversationRef, StoredMessage
from tests.agent.conftest import helper_only, runtime_on, start_turn
from tests.storage.messages import message
from tests.support.app import load_function_app
from tests.support.replay import ReplayDriver

CONTEXT_TOKENS = 8_000
MESSAGES = 3_000  # 750 turns of four messages: about 20 times CONTEXT_TOKENS
SUMMARY = "Earlier, the user asked 749 numbered questions about words and got answers."


@pytest_asyncio.fixture(scope="module")
async def rt(
    azurite: AzuriteInstance, model: FakeOpenAI, helper: AsgiServer
) -> AsyncIterator[Runtime]:
    async with runtime_on(
        azurite,
        model,
        "long-conversations-test",
        helper_only(helper),
        AGENT_CONTEXT_TOKENS=str(CONTEXT_TOKENS),
        MODEL_MAX_OUTPUT_TOKENS="1000",
    ) as runtime:
        await runtime.store.ensure_container()
        yield runtime


def old_turn(turn: int) -> list[StoredMessage]:
    """A past turn: a question, a tool call with its result, an answer (~55 tokens each)."""
    run, words = f"old{turn}", " ".join(f"w{turn}x{i}" for i in range(30))
    call = {
        "id": f"call_{turn}",
        "type": "function",
        "function": {"name": "helper__greet", "arguments": json.dumps({"name": f"n{turn}"})},
    }
    return [
        message(turn, 0, 0, run, role="user", content=f"question {turn}: {words}"),
        message(turn, 1, 0, run, content=None, tool_calls=[call], usage={"total_tokens": 1}),
        message(turn, 1, 1, run, role="tool", content=f"Hello n{turn} {words}", tool_call_id=f"call_{turn}", name="helper__greet"),
        message(turn, 2, 0, run, content=f"answer {turn}: {words}", usage={"total_tokens": 1}),
    ]  # fmt: skip


async def long_conversation(rt: Runtime, turns: int = MESSAGES // 4) -> ConversationRef:
    ref = ConversationRef("user:long", uuid.uuid4().hex)
    await rt.store.create(ref)
    for turn in range(1, turns + 1):  # the turns counted as the app counts them
        assert await rt.store.begin_turn(ref, f"old{turn}") == turn
        await rt.store.end_turn(ref, f"old{turn}")
    lines = [m for turn in range(1, turns + 1) for m in old_turn(turn)]
    for start in range(0, len(lines), 500):
        await rt.store.append_many(ref, lines[start : start + 500])
    return ref


def real_activities(rt: Runtime, loop: asyncio.AbstractEventLoop) -> Callable[[str, Any], Any]:
    """The app's activities against this test's runtime, run on the test's event loop."""
    handlers: dict[str, Callable[[dict[str, Any], Runtime], Awaitable[Any]]] = {
        "model_step": activities.model_step,
        "compact": compaction.compact,
        "tool_call": activities.tool_call,
        "finish_turn": activities.finish_turn,
    }

    def call(name: str, data: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(handlers[name](data, rt), loop).result(60)

    return call


def pairs_intact(messages: list[dict[str, Any]]) -> bool:
    """Every tool call is answered right after its message, and every result has its call."""
    asked: list[str] = []
    for sent in messages:
        if sent["role"] == "tool":
            if not asked or sent["tool_call_id"] != asked.pop(0):
                return False
        else:
            if asked:
                return False
            asked = [c["id"] for c in sent.get("tool_calls") or ()]
    return not asked


async def test_a_turn_of_a_conversation_twenty_times_the_budget_completes_within_it(rt, model):
    ref = await long_conversation(rt)
    assert len(await rt.store.read_messages(ref)) == MESSAGES
    run = await start_turn(rt, ref, "greet Ada, then tell me what we talked about")
    model.brain.answer(SUMMARY)  # the compaction's request comes first
    model.brain.call_tools(ToolCallSpec("helper__greet", '{"name": "Ada"}'))
    model.brain.answer("Hello Ada, and we talked about words.")
    before = len(model.chat_requests())

    driver = ReplayDriver(load_function_app().app, default_version=version_text(3))
    turn = ChatTurnInput.starting(run, rt.settings.limits, 0)
    script = real_activities(rt, asyncio.get_running_loop())
    result = await asyncio.to_thread(
        driver.run, "chat_turn", turn.to_dict(), activities=script, instance_id=run.run_id
    )

    assert result.status == "Completed" and result.output["status"] == "completed", result.output
    requests = [r.body for r in model.chat_requests()[before:]]
    assert len(requests) == 3  # the summary, the tool step, the answer
    for body in requests:
        assert prompt_tokens_of(body) + 1000 <= CONTEXT_TOKENS  # the answer's room kept too
    summarising, *steps = requests
    oldest_sent = min(int(n) for n in re.findall(r"w(\d+)x0", json.dumps(steps[0]["messages"])))
    summarised = json.dumps(summarising["messages"])
    assert f"question {oldest_sent - 1}:" in summarised  # what lay just outside the window
    assert f"question {oldest_sent}:" not in summarised and "question 1:" not in summarised
    for body in steps:
        assert body["messages"][1]["role"] == "system" and SUMMARY in body["messages"][1]["content"]
        assert pairs_intact(body["messages"])
        assert body["messages"][-1]["role"] != "system"
    assert steps[0]["messages"][-1]["content"].startswith("greet Ada")
    stored = await rt.store.summaries.latest(ref)
    assert stored is not None and stored.text == SUMMARY and stored.covered_tokens > 0
    transcript = await rt.store.read_messages(ref)
    assert len(transcript) == MESSAGES + 4  # whole: the user's message, call, result, answer


async def test_a_compaction_run_twice_asks_the_model_once(rt, model):
    ref = await long_conversation(rt, turns=100)  # about 3 times the budget
    run = await start_turn(rt, ref, "hello again")
    model.brain.answer(SUMMARY)
    before = len(model.chat_requests())
    job = CompactInput(run, 1).to_dict()
    first = await compaction.compact(job, rt)
    again = await compaction.compact(job, rt)
    assert first["compacted"] and again["compacted"]
    assert len(model.chat_requests()) == before + 1
    assert again["usage"]["total_tokens"] == 0 < first["usage"]["total_tokens"]


async def test_a_step_with_little_outside_its_window_is_not_compacted(rt, model):
    ref = ConversationRef("user:long", uuid.uuid4().hex)
    await rt.store.create(ref)
    run = await start_turn(rt, ref, "hi")
    model.brain.answer("hello")
    step = await activities.model_step(ModelStepInput(run, 1, compaction=True).to_dict(), rt)
    assert step["outcome"] == "final"


async def test_a_current_turn_bigger_than_the_budget_ends_the_step_without_calling_the_model(
    rt, model
):
    ref = ConversationRef("user:long", uuid.uuid4().hex)
    await rt.store.create(ref)
    run = await start_turn(rt, ref, "word " * (CONTEXT_TOKENS * 2))
    before = len(model.chat_requests())
    step = await activities.model_step(ModelStepInput(run, 1).to_dict(), rt)
    assert step["outcome"] == "context_exceeded"
    assert "AGENT_CONTEXT_TOKENS=8000" in step["error"]
    assert len(model.chat_requests()) == before


async def test_with_compaction_off_a_long_conversation_gets_only_its_newest_messages(rt, model):
    off = replace(
        rt, settings=replace(rt.settings, context=ContextSettings(CONTEXT_TOKENS, 1, False))
    )
    ref = await long_conversation(rt, turns=100)
    run = await start_turn(rt, ref, "hello once more")
    model.brain.answer("hi")
    before = len(model.chat_requests())
    step = await activities.model_step(ModelStepInput(run, 1, compaction=True).to_dict(), off)
    assert step["outcome"] == "final"
    [body] = [r.body for r in model.chat_requests()[before:]]
    assert prompt_tokens_of(body) + 1000 <= CONTEXT_TOKENS
    assert [m["role"] for m in body["messages"][:2]] != ["system", "system"]  # no summary
    assert "question 100:" in json.dumps(body["messages"]) and "question 1:" not in json.dumps(
        body["messages"]
    )
    assert await rt.store.summaries.latest(ref) is None
