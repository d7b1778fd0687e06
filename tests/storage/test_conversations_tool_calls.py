"""Tool-call records (so a call never fires twice) and full tool outputs."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.conversations import ConversationStore
from storage.errors import InvalidKey, RecordNotFound
from storage.models import ConversationRef, ToolCallRecord


def record(call_id: str = "call_abc", **fields: object) -> ToolCallRecord:
    values: dict[str, object] = {
        "run_id": "run-1",
        "call_id": call_id,
        "step": 1,
        "seq": 1,
        "tool_name": "demo__add",
        "arguments": '{"a": 1, "b": 2}',
        "status": "pending",
        "result_message_id": None,
        "is_error": False,
    }
    values.update(fields)
    return ToolCallRecord(**values)  # type: ignore[arg-type]


async def test_a_tool_call_record_is_create_only(
    store: ConversationStore, other_store: ConversationStore, ref: ConversationRef
) -> None:
    assert await store.put_tool_call(ref, record()) is True
    assert await other_store.put_tool_call(ref, record(arguments='{"other": true}')) is False
    assert await store.get_tool_call(ref, "run-1", "call_abc") == record()


async def test_an_unknown_tool_call_is_none(store: ConversationStore, ref: ConversationRef) -> None:
    assert await store.get_tool_call(ref, "run-1", "call_missing") is None


async def test_completing_a_tool_call_is_idempotent(
    store: ConversationStore, ref: ConversationRef
) -> None:
    await store.put_tool_call(ref, record())
    done = record(result_message_id="run-1.1.1", is_error=True)

    await store.complete_tool_call(ref, done)
    await store.complete_tool_call(ref, done)

    stored = await store.get_tool_call(ref, "run-1", "call_abc")
    assert stored == dataclasses.replace(done, status="completed")
    # Completed stays completed: a late create-only put cannot reset it.
    assert await store.put_tool_call(ref, record()) is False
    assert await store.get_tool_call(ref, "run-1", "call_abc") == stored


@pytest.mark.parametrize("call_id", ["../../meta", "call/with/slashes", "a.b", "~x", "ü" * 200])
async def test_unusual_call_ids_are_stored_under_the_conversation_and_kept_apart(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef, call_id: str
) -> None:
    assert await store.put_tool_call(ref, record(call_id))
    assert await store.put_tool_call(ref, record("plain"))
    assert (await store.get_tool_call(ref, "run-1", call_id)) == record(call_id)
    names = [
        b.name async for b in container.list_blobs(name_starts_with=paths.conversation_prefix(ref))
    ]
    assert len([n for n in names if "/tool-calls/" in n]) == 2
    assert (await store.get_meta(ref)).conversation_id == ref.conversation_id


def test_a_record_round_trips_through_a_dict() -> None:
    assert ToolCallRecord.from_dict(record().to_dict()) == record()
    with pytest.raises(ValueError):
        record(status="running")


async def test_a_tool_output_round_trips_with_its_content_type(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
) -> None:
    output_ref = await store.put_tool_output(
        ref, "run-1", "call_abc", '{"big": "ünï"}', "application/json"
    )
    assert await store.get_tool_output(ref, output_ref) == '{"big": "ünï"}'.encode()
    properties = await container.get_blob_client(output_ref).get_blob_properties()
    assert properties.content_settings.content_type == "application/json"

    # Rewriting (an activity re-run) is fine and keeps the same name.
    again = await store.put_tool_output(
        ref, "run-1", "call_abc", b"\x00\x01", "application/octet-stream"
    )
    assert again == output_ref
    assert await store.get_tool_output(ref, output_ref) == b"\x00\x01"


async def test_an_unknown_tool_output_is_not_found(
    store: ConversationStore, ref: ConversationRef
) -> None:
    missing = paths.tool_output_name(ref, "run-1", "call_never")
    with pytest.raises(RecordNotFound):
        await store.get_tool_output(ref, missing)


@pytest.mark.parametrize(
    "make_ref",
    [
        lambda prefix: prefix + "meta.json",
        lambda prefix: prefix + "transcript.jsonl",
        lambda prefix: prefix + "runs/run-1/tool-calls/call_abc.json",
        lambda prefix: prefix + "runs/run-1/tool-outputs/../../meta.json",
        lambda prefix: prefix + "runs/../../other/runs/run-1/tool-outputs/call_abc",
        lambda prefix: prefix + "runs/run-1/tool-outputs/call_abc/../../../../x",
        lambda prefix: prefix + "runs/run-1/tool-outputs/",
        lambda prefix: "/" + prefix + "runs/run-1/tool-outputs/call_abc",
        lambda prefix: "owners/other/conversations/c/runs/run-1/tool-outputs/call_abc",
        lambda prefix: "https://evil.example/" + prefix + "runs/run-1/tool-outputs/call_abc",
        lambda prefix: prefix + "runs/run-1/tool-outputs/call_abc\n",
    ],
)
async def test_an_output_ref_outside_this_conversations_outputs_is_refused(
    store: ConversationStore, ref: ConversationRef, make_ref: object
) -> None:
    await store.put_tool_output(ref, "run-1", "call_abc", "secret", "text/plain")
    output_ref = make_ref(paths.conversation_prefix(ref))  # type: ignore[operator]
    with pytest.raises(InvalidKey):
        await store.get_tool_output(ref, output_ref)


async def test_another_conversations_output_is_refused(
    store: ConversationStore, ref: ConversationRef, owner: str
) -> None:
    other = ConversationRef("another-owner", uuid.uuid4().hex)
    await store.create(other)
    theirs = await store.put_tool_output(other, "run-1", "call_abc", "theirs", "text/plain")
    with pytest.raises(InvalidKey):
        await store.get_tool_output(ref, theirs)
