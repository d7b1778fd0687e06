"""Tool-call records (so a call never fires twice) and full tool outputs."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.conversations import ConversationStore
from storage.errors import InvalidKey, RecordNotFound
from storage.models import ConversationRef, StoredMessage, ToolCallRecord
from tests.storage.messages import message


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


async def test_a_tool_result_is_stored_with_its_record_then_in_the_transcript_once(
    store: ConversationStore, ref: ConversationRef
) -> None:
    await store.put_tool_call(ref, record())
    result = record().result_message(1, "3", is_error=True)

    await store.record_tool_result(ref, record(), result)
    await store.record_tool_result(ref, record(), result)  # a re-run

    stored = await store.get_tool_call(ref, "run-1", "call_abc")
    assert stored == record().completed(result)
    assert stored is not None and stored.result_message_id == "run-1.1.1" and stored.is_error
    assert [m.id for m in await store.read_messages(ref)] == ["run-1.1.1"]
    # Completed stays completed: a late create-only put cannot reset it.
    assert await store.put_tool_call(ref, record()) is False
    assert await store.get_tool_call(ref, "run-1", "call_abc") == stored


async def test_a_completed_record_whose_line_was_lost_gets_the_line_only(
    store: ConversationStore, ref: ConversationRef, container: ContainerClient
) -> None:
    result = record().result_message(1, "3", is_error=False)
    await store.put_tool_call(ref, record().completed(result))  # a crash came before the line
    name = paths.tool_call_name(ref, "run-1", "call_abc")
    etag = (await container.get_blob_client(name).get_blob_properties()).etag
    completed = await store.get_tool_call(ref, "run-1", "call_abc")
    assert completed is not None and completed.result is not None

    await store.record_tool_result(ref, completed, completed.result)

    assert [m.content for m in await store.read_messages(ref)] == ["3"]
    assert (await container.get_blob_client(name).get_blob_properties()).etag == etag


async def test_a_model_reply_is_stored_records_first_and_its_message_last(
    store: ConversationStore, ref: ConversationRef
) -> None:
    reply = record().result_message(1, "x", is_error=False)  # any message will do here
    reply = dataclasses.replace(reply, id="run-1.1.0", role="assistant", seq=0)
    calls = [record("call_a"), record("call_b", seq=2)]

    await store.record_model_reply(ref, reply, calls)
    await store.record_model_reply(ref, reply, calls)  # a re-run

    assert [m.id for m in await store.read_messages(ref)] == ["run-1.1.0"]
    for call in calls:
        assert await store.get_tool_call(ref, "run-1", call.call_id) == call


async def test_a_model_step_begins_by_storing_an_error_result_for_each_failed_call(
    store: ConversationStore, ref: ConversationRef
) -> None:
    await store.put_tool_call(ref, record("call_a"))
    done = record("call_b", seq=2)
    await store.record_tool_result(ref, done, done.result_message(1, "ok", is_error=False))
    failures = {"call_a": "it failed", "call_b": "late", "call_gone": "no record"}

    stored = await store.begin_model_step(ref, "run-1", 1, failures)
    again = await store.begin_model_step(ref, "run-1", 1, failures)  # a re-run

    assert [(m.id, m.content, m.is_error) for m in stored] == [
        ("run-1.1.1", "it failed", True),
        ("run-1.1.2", "ok", False),
    ]
    assert again == stored
    failed = await store.get_tool_call(ref, "run-1", "call_a")
    assert failed is not None and failed.status == "completed" and failed.result == stored[0]


async def test_a_tool_call_record_keeps_keys_a_newer_writer_added_when_it_is_marked(
    store: ConversationStore, ref: ConversationRef, container: ContainerClient
) -> None:
    name = paths.tool_call_name(ref, "run-1", "call_abc")
    newer = {**record().to_dict(), "attempt_log": [{"at": "t0"}]}
    await container.upload_blob(name, json.dumps(newer).encode())

    read = await store.get_tool_call(ref, "run-1", "call_abc")
    assert read is not None
    await store.mark_tool_call(ref, read, "started")

    stored = json.loads(await (await container.download_blob(name)).readall())
    assert stored == {**newer, "status": "started"}


async def test_a_tool_call_record_stored_before_the_converter_reads_its_result_as_a_message(
    store: ConversationStore, ref: ConversationRef, container: ContainerClient
) -> None:
    result = record().result_message(1, "3", is_error=False)
    old = {**record(status="completed").to_dict(), "result": result.to_dict()}
    name = paths.tool_call_name(ref, "run-1", "call_abc")
    await container.upload_blob(name, json.dumps(old).encode())

    read = await store.get_tool_call(ref, "run-1", "call_abc")

    assert read is not None and read.result == result
    assert read.to_dict() == old  # and writes it back as it was


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


def reply_asking(call: ToolCallRecord) -> StoredMessage:
    """The assistant message of run-1's step 1 that asks for `call`."""
    function = {"name": call.tool_name, "arguments": call.arguments}
    return message(
        1,
        1,
        0,
        content=None,
        tool_calls=[{"id": call.call_id, "type": "function", "function": function}],
    )


def after_first_look(
    store: ConversationStore, meanwhile: Callable[[], Awaitable[None]], monkeypatch: Any
) -> None:
    """Run `meanwhile` (another attempt's writes) right after the store's first look for a
    reply already stored: the interleaving two attempts racing may have."""
    look = store._stored
    looks = 0

    async def then_meanwhile(*args: Any) -> StoredMessage | None:
        nonlocal looks
        found = await look(*args)
        looks += 1
        if looks == 1:
            await meanwhile()
        return found

    monkeypatch.setattr(store, "_stored", then_meanwhile)


async def test_a_reply_an_earlier_attempt_stores_just_after_this_one_looked_keeps_its_records(
    store: ConversationStore,
    other_store: ConversationStore,
    ref: ConversationRef,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two attempts of one step at once: the other's reply lands between this one's look for it
    and its own records' write. The append returns the other's reply, and the records are the
    calls of that reply (the tool call runs what its record says)."""
    theirs, ours = record(tool_name="files__delete"), record(tool_name="mail__send")
    assert await other_store.put_tool_call(ref, theirs)

    async def their_reply_lands() -> None:
        assert await other_store.append(ref, reply_asking(theirs))

    after_first_look(store, their_reply_lands, monkeypatch)
    stored = await store.record_model_reply(ref, reply_asking(ours), [ours])

    assert stored == reply_asking(theirs)
    assert await other_store.get_tool_call(ref, "run-1", "call_abc") == theirs


async def test_a_record_not_yet_confirmed_is_confirmed_from_the_reply_stored(
    store: ConversationStore, ref: ConversationRef
) -> None:
    """A record an attempt wrote over an earlier one's, whose reply then lost to the earlier
    one's: a tool call confirms it as the stored reply asks for the call."""
    theirs = record(tool_name="files__delete")
    await store.put_tool_call(ref, record(tool_name="mail__send", unconfirmed=True))
    await store.append(ref, reply_asking(theirs))

    confirmed = await store.confirm_tool_call(ref, record(unconfirmed=True), turn=1)

    assert confirmed == theirs
    assert await store.get_tool_call(ref, "run-1", "call_abc") == theirs


async def test_a_record_whose_call_started_while_another_attempt_looked_is_not_written_over(
    store: ConversationStore,
    other_store: ConversationStore,
    ref: ConversationRef,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other attempt's reply lands and its call starts while this attempt looks for that
    reply: its record is not replaced by this attempt's (pending again, the call would run a
    second time)."""
    theirs, ours = record(tool_name="files__delete"), record(tool_name="mail__send")
    assert await other_store.put_tool_call(ref, theirs)

    async def their_reply_lands_and_its_call_starts() -> None:
        assert await other_store.append(ref, reply_asking(theirs))
        await other_store.mark_tool_call(ref, theirs, "started")

    after_first_look(store, their_reply_lands_and_its_call_starts, monkeypatch)
    stored = await store.record_model_reply(ref, reply_asking(ours), [ours])

    assert stored == reply_asking(theirs)
    kept = await store.get_tool_call(ref, "run-1", "call_abc")
    assert kept == dataclasses.replace(theirs, status="started")
