"""The activities against real parts: Azurite, the model server through the `openai` client and
the helper MCP server (the demo's tools plus test helpers) over streamable HTTP. Activities are
at-least-once, so each is run twice."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import azure.durable_functions as df
import pytest
import pytest_asyncio

from agent import activities
from agent.contracts import (
    BatchItemOutcome,
    ClaimInput,
    FinishTurnInput,
    ModelStepInput,
    RunRef,
    ToolCallInput,
)
from agent.errors import TransientModelError
from agent.runtime import Runtime, build_runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI
from devkit.mcp_servers import AsgiServer
from offline_model.replies import ToolCallSpec
from storage import paths
from storage.batches import BatchItem, BatchRecord, ItemOutcome, run_id_of
from storage.conversations import ConversationRef, StoredMessage
from tests.agent.conftest import new_run as start_run
from tests.agent.conftest import runtime_on


@pytest_asyncio.fixture(scope="module")
async def rt(
    azurite: AzuriteInstance, model: FakeOpenAI, helper: AsgiServer
) -> AsyncIterator[Runtime]:
    servers = {
        "mcp_servers": [
            {
                "name": "helper",
                "transport": {"type": "streamable_http", "url": helper.url()},
                "output_limit_chars": 500,
            },
            {
                "name": "guarded",
                "transport": {"type": "streamable_http", "url": helper.url()},
                "tools": {"allow": ["greet"], "require_approval": ["greet"]},
            },
        ]
    }
    async with runtime_on(azurite, model, "activities-test", json.dumps(servers)) as runtime:
        yield runtime


async def new_run(rt: Runtime, content: str = "hello") -> RunRef:
    return await start_run(rt, "user:test", content)


async def transcript(rt: Runtime, run: RunRef) -> list[StoredMessage]:
    return await rt.store.read_messages(ConversationRef(run.owner, run.conversation_id))


def step(run: RunRef, number: int, **kwargs: Any) -> dict[str, Any]:
    return ModelStepInput(run, number, **kwargs).to_dict()


async def test_a_model_step_run_twice_calls_the_model_once_and_stores_one_message(rt, model):
    run = await new_run(rt)
    model.brain.answer("hi there")
    before = len(model.chat_requests())
    first = await activities.model_step(step(run, 1), rt)
    again = await activities.model_step(step(run, 1), rt)
    assert first == again
    assert first["outcome"] == "final" and first["usage"]["total_tokens"] > 0
    assert len(model.chat_requests()) == before + 1
    assert [m.content for m in await transcript(rt, run)] == ["hello", "hi there"]


async def test_the_model_sees_the_mcp_tools_as_server__tool_with_the_transcript(rt, model):
    run = await new_run(rt, "what tools?")
    model.brain.answer("these")
    await activities.model_step(step(run, 1), rt)
    request = model.chat_requests()[-1].body
    names = {t["function"]["name"] for t in request["tools"]}
    assert {"helper__greet", "helper__calculate", "helper__count_call"} <= names
    assert request["parallel_tool_calls"] is True
    assert request["messages"][-1] == {"role": "user", "content": "what tools?"}


async def test_a_tool_call_run_twice_calls_the_tool_once(rt, model):
    run = await new_run(rt)
    key = uuid.uuid4().hex
    model.brain.call_tools(("helper__count_call", {"key": key}))
    summary = await activities.model_step(step(run, 1), rt)
    [call_id] = summary["tool_call_ids"]
    call = ToolCallInput(run, 1, call_id).to_dict()
    first = await activities.tool_call(call, rt)
    again = await activities.tool_call(call, rt)
    assert first == again == {"call_id": call_id, "is_error": False, "truncated": False}
    [result] = [m for m in await transcript(rt, run) if m.role == "tool"]
    assert re.search(r'"count":\s*1\b', result.content)
    # the same tool and key called again from outside the app (another idempotency key) counts 2
    outcome = await rt.mcp.call_tool(
        "helper__count_call", {"key": key}, context={}, idempotency_key=uuid.uuid4().hex
    )
    assert re.search(r'"count":\s*2\b', outcome.text)


async def test_reused_tool_call_ids_get_unique_ids_so_every_call_runs(rt, model):
    run = await new_run(rt)
    model.brain.call_tools(ToolCallSpec("helper__greet", '{"name": "a"}', id="call_0"))
    first = await activities.model_step(step(run, 1), rt)
    await activities.tool_call(ToolCallInput(run, 1, first["tool_call_ids"][0]).to_dict(), rt)
    model.brain.call_tools(
        ToolCallSpec("helper__greet", '{"name": "b"}', id="call_0"),
        ToolCallSpec("helper__greet", '{"name": "c"}', id="call_0"),
    )
    second = await activities.model_step(step(run, 2), rt)
    ids = [first["tool_call_ids"][0], *second["tool_call_ids"]]
    assert len(set(ids)) == 3
    for call_id in second["tool_call_ids"]:
        await activities.tool_call(ToolCallInput(run, 2, call_id).to_dict(), rt)
    results = [m.content for m in await transcript(rt, run) if m.role == "tool"]
    assert [("a" in r, "b" in r, "c" in r) for r in results] == [
        (True, False, False), (False, True, False), (False, False, True),
    ]  # fmt: skip


async def test_a_tool_call_whose_record_another_attempt_wrote_over_runs_the_stored_reply(rt, model):
    """Another attempt of the step wrote its record over this reply's (unconfirmed), then lost
    the append: the call runs as the stored reply asks, and its record says so from then on."""
    run = await new_run(rt)
    model.brain.call_tools(ToolCallSpec("helper__greet", '{"name": "stored"}', id="call_0"))
    [call_id] = (await activities.model_step(step(run, 1), rt))["tool_call_ids"]
    ref = ConversationRef(run.owner, run.conversation_id)
    record = await rt.store.get_tool_call(ref, run.run_id, call_id)
    assert record is not None
    other = dataclasses.replace(record, arguments='{"name": "other"}', unconfirmed=True)
    await rt.store.put_tool_call(ref, other, overwrite=True)

    await activities.tool_call(ToolCallInput(run, 1, call_id).to_dict(), rt)

    [result] = [m.content for m in await transcript(rt, run) if m.role == "tool"]
    assert "stored" in result and "other" not in result
    ran = await rt.store.get_tool_call(ref, run.run_id, call_id)
    assert ran is not None and ran.arguments == record.arguments and not ran.unconfirmed


async def test_tool_calls_that_failed_for_good_become_error_results_the_model_sees(rt, model):
    run = await new_run(rt)
    model.brain.call_tools(("helper__greet", {"name": "x"}))
    summary = await activities.model_step(step(run, 1), rt)
    [call_id] = summary["tool_call_ids"]
    model.brain.answer("sorry, the tool failed")
    failed = [{"call_id": call_id, "reason": "server helper: ConnectError"}]
    await activities.model_step(step(run, 2) | {"failed_tool_calls": failed}, rt)
    [result] = [m for m in await transcript(rt, run) if m.role == "tool"]
    assert result.is_error and "ConnectError" in result.content
    sent = model.chat_requests()[-1].body["messages"]
    assert sent[-1]["role"] == "tool" and "status: error" in sent[-1]["content"]
    # the failed call is now completed: a late re-run of it does not call the tool
    assert (await activities.tool_call(ToolCallInput(run, 1, call_id).to_dict(), rt))["is_error"]


async def test_a_large_tool_output_is_capped_for_the_model_and_kept_whole_in_blob(rt, model):
    run = await new_run(rt)
    model.brain.call_tools(("helper__repeat_text", {"text": "abc", "times": 2_000}))
    summary = await activities.model_step(step(run, 1), rt)
    [call_id] = summary["tool_call_ids"]
    assert (await activities.tool_call(ToolCallInput(run, 1, call_id).to_dict(), rt))["truncated"]
    [result] = [m for m in await transcript(rt, run) if m.role == "tool"]
    assert result.truncated and len(result.content) < 1_000
    ref = ConversationRef(run.owner, run.conversation_id)
    full = await rt.store.get_tool_output(ref, result.output_ref)
    assert ("abc" * 2_000).encode() in full.replace(b"\\n", b"")


async def test_throttling_is_returned_with_its_retry_after_and_5xx_is_raised_for_durable(rt, model):
    run = await new_run(rt)
    model.brain.rate_limit(retry_after_seconds=7)
    assert await activities.model_step(step(run, 1), rt) == {
        "outcome": "throttled", "message_id": None, "tool_call_ids": [], "retry_after": 7.0,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, "error": None,
        "approvals_needed": [],
    }  # fmt: skip
    model.brain.fail(503)
    with pytest.raises(TransientModelError):
        await activities.model_step(step(run, 1), rt)
    model.brain.fail(401)
    failed = await activities.model_step(step(run, 1), rt)
    assert failed["outcome"] == "failed" and "401" in failed["error"]
    assert model.api_key not in failed["error"]
    assert [m.role for m in await transcript(rt, run)] == ["user"]  # nothing half-written


async def test_a_filtered_prompt_stores_a_safe_answer_and_ends_as_content_filtered(rt, model):
    run = await new_run(rt)
    model.brain.filter_prompt()
    summary = await activities.model_step(step(run, 1), rt)
    assert summary["outcome"] == "content_filtered"
    answer = (await transcript(rt, run))[-1]
    assert answer.id == summary["message_id"] and "content filter" in answer.content


async def test_a_re_run_after_a_crash_between_completion_and_append_appends_without_calling(
    rt, model
):
    run = await new_run(rt)
    key = uuid.uuid4().hex
    model.brain.call_tools(("helper__count_call", {"key": key}))
    [call_id] = (await activities.model_step(step(run, 1), rt))["tool_call_ids"]
    ref = ConversationRef(run.owner, run.conversation_id)
    record = await rt.store.get_tool_call(ref, run.run_id, call_id)
    # the state a crash leaves: the record completed with its result, the transcript not yet
    result = record.result_message(run.turn, "stored earlier", is_error=False)
    await rt.store.put_tool_call(ref, record.completed(result), overwrite=True)
    await activities.tool_call(ToolCallInput(run, 1, call_id).to_dict(), rt)
    [appended] = [m for m in await transcript(rt, run) if m.role == "tool"]
    assert appended.content == "stored earlier"
    outcome = await rt.mcp.call_tool(
        "helper__count_call", {"key": key}, context={}, idempotency_key=uuid.uuid4().hex
    )
    assert re.search(r'"count":\s*1\b', outcome.text)  # the tool had never been called


async def test_a_tool_that_needs_approval_never_runs_without_it(rt, model):
    run = await new_run(rt)
    model.brain.call_tools(("guarded__greet", {"name": "Eve"}), ("helper__greet", {"name": "Bob"}))
    summary = await activities.model_step(step(run, 1), rt)
    guarded, plain = summary["tool_call_ids"]
    assert summary["approvals_needed"] == [guarded]
    # a tool_call that was not approved (e.g. the step could not list the server) is refused
    refused = await activities.tool_call(ToolCallInput(run, 1, guarded).to_dict(), rt)
    assert refused["is_error"]
    await activities.tool_call(ToolCallInput(run, 1, plain).to_dict(), rt)
    results = {m.name: m for m in await transcript(rt, run) if m.role == "tool"}
    assert results["guarded__greet"].content == activities.NOT_APPROVED
    assert "Bob" in results["helper__greet"].content


async def test_an_approved_tool_runs(rt, model):
    run = await new_run(rt)
    model.brain.call_tools(("guarded__greet", {"name": "Eve"}))
    [call_id] = (await activities.model_step(step(run, 1), rt))["tool_call_ids"]
    done = await activities.tool_call(ToolCallInput(run, 1, call_id, approved=True).to_dict(), rt)
    assert not done["is_error"]
    [result] = [m for m in await transcript(rt, run) if m.role == "tool"]
    assert "Eve" in result.content


async def test_a_destructive_tool_is_asked_about_and_never_runs_unapproved_on_a_fresh_worker(
    rt, model
):
    run = await new_run(rt)
    key = uuid.uuid4().hex
    model.brain.call_tools(("helper__drop_key", {"key": key}), ("helper__look_up", {"key": key}))
    summary = await activities.model_step(step(run, 1), rt)
    drop, look = summary["tool_call_ids"]
    assert summary["approvals_needed"] == [drop]  # annotated destructive; read-only is not
    # Another worker, which has listed nothing yet, refuses it unapproved all the same.
    fresh = await build_runtime(rt.settings)
    try:
        assert not fresh.mcp.requires_approval("helper__drop_key")  # not known without listing
        refused = await activities.tool_call(ToolCallInput(run, 1, drop).to_dict(), fresh)
    finally:
        await fresh.aclose()
    assert refused["is_error"]
    await activities.tool_call(ToolCallInput(run, 1, look).to_dict(), rt)
    results = {m.name: m for m in await transcript(rt, run) if m.role == "tool"}
    assert results["helper__drop_key"].content == activities.NOT_APPROVED
    assert results["helper__look_up"].content == f"{key} is kept"  # it was never dropped


async def new_batch(rt: Runtime, conversations: list[str]) -> str:
    batch_id = "b" + uuid.uuid4().hex[:31]
    items = tuple(
        BatchItem(i, c, "user:test", f"scheduled {i}") for i, c in enumerate(conversations)
    )
    await rt.batches.create(
        BatchRecord(batch_id, "callback", "2026-01-01T00:00:00+00:00", None, items)
    )
    return batch_id


# A take asks Durable only about a conversation's lock holder; these conversations are free.
NO_DURABLE = df.DurableOrchestrationClient(
    json.dumps(
        {
            "taskHubName": "unused",
            "creationUrls": {},
            "managementUrls": {},
            "baseUrl": "http://127.0.0.1:9/runtime/webhooks/durabletask",
            "requiredQueryStringParameters": "",
            "rpcBaseUrl": "http://127.0.0.1:9/durabletask/",
        }
    )
)


async def test_taking_a_batch_item_twice_takes_it_once(rt, model):
    ref = ConversationRef("user:test", uuid.uuid4().hex)
    await rt.store.create(ref)
    batch_id = await new_batch(rt, [ref.conversation_id])
    claim = ClaimInput(batch_id, (0,), "0.0").to_dict()

    first = await activities.take_batch_item(claim, rt, NO_DURABLE)
    again = await activities.take_batch_item(claim, rt, NO_DURABLE)  # at-least-once: a re-run

    assert first == again
    assert first["index"] == 0 and first["turn"]["run_id"] == run_id_of(batch_id, 0)
    assert [m.content for m in await rt.store.read_messages(ref)] == ["scheduled 0"]
    assert (await rt.store.get_meta(ref)).active_run_id == run_id_of(batch_id, 0)
    assert await activities.take_batch_item(
        ClaimInput(batch_id, (0,), "0.1").to_dict(), rt, NO_DURABLE
    ) == {"index": None}


async def test_recording_a_failed_item_gives_back_a_lock_its_take_left_behind(rt, model):
    ref = ConversationRef("user:test", uuid.uuid4().hex)
    await rt.store.create(ref)
    batch_id = await new_batch(rt, [ref.conversation_id, ref.conversation_id])
    await rt.store.begin_turn(ref, run_id_of(batch_id, 0))  # the take locked, then failed

    outcome = BatchItemOutcome(batch_id, 0, "failed", "could not start: storage down")
    await activities.record_batch_outcome(outcome.to_dict(), rt)

    assert (await rt.store.get_meta(ref)).active_run_id is None
    assert await rt.batches.outcome(batch_id, 0) == ItemOutcome("failed", outcome.error)


async def test_recording_a_failed_item_leaves_another_runs_lock_alone(rt, model):
    ref = ConversationRef("user:test", uuid.uuid4().hex)
    await rt.store.create(ref)
    batch_id = await new_batch(rt, [ref.conversation_id, ref.conversation_id])
    await rt.store.begin_turn(ref, "someone-elses-run")  # busy: item 1 never got the lock

    outcome = BatchItemOutcome(batch_id, 1, "failed", "could not start: busy")
    await activities.record_batch_outcome(outcome.to_dict(), rt)

    assert (await rt.store.get_meta(ref)).active_run_id == "someone-elses-run"


async def test_a_model_step_of_a_conversation_gone_from_storage_ends_the_run_naming_why(rt, model):
    run = await new_run(rt)
    prefix = paths.conversation_prefix(ConversationRef(run.owner, run.conversation_id))
    async for blob in rt.container.list_blobs(name_starts_with=prefix):
        await rt.container.delete_blob(blob.name)
    before = len(model.chat_requests())

    summary = await activities.model_step(step(run, 1), rt)
    await activities.finish_turn(FinishTurnInput(run, "failed").to_dict(), rt)  # nothing to unlock

    assert summary["outcome"] == "failed"
    assert summary["error"] == activities.gone_message(run.conversation_id)
    assert len(model.chat_requests()) == before  # the model was never asked
