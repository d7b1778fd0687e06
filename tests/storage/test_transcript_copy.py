"""A model step that follows its run's own writes in this process builds its window from the
process's copy of the transcript's newest lines, without a request; any doubt reads."""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from storage import transcript
from storage.conversations import ConversationStore
from storage.errors import RecordNotFound
from storage.models import ConversationRef, StoredMessage, ToolCallRecord
from storage.tail import TailBound
from tests.storage.messages import message

RUN = "run-1"
BOUND = TailBound(tokens=40_000)  # a model step's: more than these conversations hold


def opening(turn: int = 1, run_id: str = RUN) -> StoredMessage:
    return message(turn, 0, 0, run_id=run_id, role="user", content="hello")


def asking(step: int, *call_ids: str, turn: int = 1) -> StoredMessage:
    calls = [
        {"id": c, "type": "function", "function": {"name": "web__greet", "arguments": "{}"}}
        for c in call_ids
    ]
    return message(turn, step, 0, run_id=RUN, tool_calls=calls, content=None)


def result(step: int, seq: int, call_id: str, turn: int = 1) -> StoredMessage:
    return message(
        turn, step, seq, run_id=RUN, role="tool", tool_call_id=call_id, content="hi", name="g"
    )


def record(step: int, seq: int, call_id: str, arguments: str = "{}") -> ToolCallRecord:
    return ToolCallRecord(RUN, call_id, step, seq, "web__greet", arguments, "pending", None, False)


async def step_reads(
    store: ConversationStore, ref: ConversationRef, step: int, turn: int = 1
) -> list[StoredMessage]:
    """What model step `step` of RUN reads, as `agent.compaction.step_window` asks."""
    follows = f"{RUN}.{step - 1}.0"
    return await store.begin_model_step(ref, RUN, turn, {}, BOUND, follows)


async def new_conversation(store: ConversationStore, owner: str, name: str) -> ConversationRef:
    ref = ConversationRef(owner, f"{name}-{owner[-12:]}")
    await store.create(ref)
    return ref


async def test_a_step_after_this_processs_own_writes_reads_nothing(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    container, requests = counted
    store = ConversationStore(container)
    ref = await new_conversation(store, owner, "copy")
    await store.append(ref, opening())
    requests.clear()
    assert [m.id for m in await step_reads(store, ref, 1)] == [f"{RUN}.0.0"]
    assert requests == []

    await store.append(ref, asking(1, "call_a", "call_b"))
    await store.append_many(ref, [result(1, 1, "call_a"), result(1, 2, "call_b")])
    requests.clear()
    window = await step_reads(store, ref, 2)
    assert requests == []
    assert window == await ConversationStore(container).read_messages(ref)  # what a read sees


async def test_a_result_written_by_another_instance_makes_the_step_read(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    """The previous step's tool call ran elsewhere: the copy holds its call, not its result."""
    container, requests = counted
    store, elsewhere = ConversationStore(container), ConversationStore(container)
    ref = await new_conversation(store, owner, "elsewhere")
    await store.append_many(ref, [opening(), asking(1, "call_a")])
    await elsewhere.append(ref, result(1, 1, "call_a"))
    requests.clear()
    window = await step_reads(store, ref, 2)
    assert requests == ["GET"]
    assert [m.id for m in window][-1] == f"{RUN}.1.1"


async def test_a_step_whose_previous_reply_was_stored_elsewhere_reads(
    container: ContainerClient, owner: str
) -> None:
    store, elsewhere = ConversationStore(container), ConversationStore(container)
    ref = await new_conversation(store, owner, "reply-elsewhere")
    await store.append(ref, opening())
    await elsewhere.append_many(ref, [asking(1, "call_a"), result(1, 1, "call_a")])
    window = await step_reads(store, ref, 2)
    assert [m.id for m in window] == [f"{RUN}.0.0", f"{RUN}.1.0", f"{RUN}.1.1"]


async def test_a_reply_an_earlier_attempt_stored_elsewhere_is_the_one_returned_and_kept(
    container: ContainerClient, owner: str
) -> None:
    """The step ran before on another instance and stored its reply; this attempt's copy did
    not know it, so it asked the model again: the stored reply stands, records and all."""
    store, elsewhere = ConversationStore(container), ConversationStore(container)
    ref = await new_conversation(store, owner, "earlier")
    await store.append(ref, opening())
    earlier = asking(1, "call_0")
    await elsewhere.record_model_reply(ref, earlier, [record(1, 1, "call_0", '{"n": 1}')])

    assert [m.id for m in await step_reads(store, ref, 1)] == [f"{RUN}.0.0"]  # stale, no read
    again = message(1, 1, 0, run_id=RUN, content="another answer", tool_calls=[
        {"id": "call_0", "type": "function", "function": {"name": "web__greet", "arguments": "{}"}}
    ])  # fmt: skip
    stored = await store.record_model_reply(ref, again, [record(1, 1, "call_0", '{"n": 2}')])
    assert stored == earlier
    kept = await store.get_tool_call(ref, RUN, "call_0")
    assert kept is not None and kept.arguments == '{"n": 1}'
    assert await store.read_messages(ref) == [opening(), earlier]


async def test_a_retry_after_records_without_their_reply_replaces_the_records(
    container: ContainerClient, owner: str
) -> None:
    """An attempt stored its records, then stopped before its reply: the next one's stand."""
    store = ConversationStore(container)
    ref = await new_conversation(store, owner, "retry")
    await store.append(ref, opening())
    await store.put_tool_call(ref, record(1, 1, "call_0", '{"n": 1}'))
    reply = asking(1, "call_0")
    assert await store.record_model_reply(ref, reply, [record(1, 1, "call_0", '{"n": 2}')]) == reply
    kept = await store.get_tool_call(ref, RUN, "call_0")
    assert kept is not None and kept.arguments == '{"n": 2}'
    assert not kept.unconfirmed  # its reply is stored: the tool call need not look


async def test_a_copy_that_no_longer_reaches_back_far_enough_reads(
    counted: tuple[ContainerClient, list[str]], owner: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(transcript, "COPY_BYTES", 4 * 1024)  # about a dozen lines
    container, requests = counted
    store = ConversationStore(container)
    ref = await new_conversation(store, owner, "long")
    filler = "x" * 300
    earlier = [
        message(t, s, 0, run_id=f"run-{t}", content=filler) for t in range(2, 12) for s in range(3)
    ]
    await store.append_many(ref, earlier)
    await store.append(ref, opening(turn=12))
    requests.clear()
    small = TailBound(messages=4)
    assert len(await store.begin_model_step(ref, RUN, 12, {}, small, f"{RUN}.0.0")) >= 4
    assert requests == []  # the copy holds the newest 4 and something older
    everything = TailBound(messages=1_000)
    window = await store.begin_model_step(ref, RUN, 12, {}, everything, f"{RUN}.0.0")
    assert requests == ["GET"] and len(window) == len(earlier) + 1


async def test_a_step_with_failed_calls_reads(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    container, requests = counted
    store = ConversationStore(container)
    ref = await new_conversation(store, owner, "failures")
    await store.append_many(ref, [opening(), asking(1, "call_a")])
    requests.clear()
    await store.begin_model_step(ref, RUN, 1, {"call_a": "it failed"}, BOUND, f"{RUN}.1.0")
    assert "GET" in requests


async def test_a_conversation_created_again_elsewhere_under_its_id_shows_none_of_the_old_one(
    container: ContainerClient, owner: str
) -> None:
    """This process kept a copy of the transcript; the conversation was deleted and created
    again under its id by another instance, and grew past the copy's end there. The next append
    here catches up on a blob that is not the one the copy is of: it starts over from it."""
    store, elsewhere = ConversationStore(container), ConversationStore(container)
    ref = await new_conversation(store, owner, "again")
    await store.append_many(ref, [opening(run_id="old"), message(1, 1, 0, run_id="old")])
    await elsewhere.lock_for_deletion(ref)
    await elsewhere.delete(ref)
    await elsewhere.create(ref)
    long_question = message(1, 0, 0, run_id="new", role="user", content="n" * 2_000)
    await elsewhere.append_many(ref, [long_question, message(1, 1, 0, run_id="new")])

    await store.append(ref, opening(turn=2))
    window = await step_reads(store, ref, 1, turn=2)

    assert [m.id for m in window] == ["new.0.0", "new.1.0", f"{RUN}.0.0"]
    assert window == await ConversationStore(container).read_messages(ref)


async def test_a_conversation_deleted_in_this_process_is_not_stepped_on_from_its_copy(
    container: ContainerClient, owner: str
) -> None:
    store = ConversationStore(container)
    ref = await new_conversation(store, owner, "deleted")
    await store.append(ref, opening())
    await store.lock_for_deletion(ref)
    await store.delete(ref)
    with pytest.raises(RecordNotFound):
        await step_reads(store, ref, 1)


async def test_a_conversation_created_again_in_this_process_counts_none_of_the_old_tokens(
    container: ContainerClient, owner: str
) -> None:
    """Deleted elsewhere, created again here: what this process knew of the old one goes."""
    store, elsewhere = ConversationStore(container), ConversationStore(container)
    ref = await new_conversation(store, owner, "recreated")
    await store.append(ref, message(1, 1, 0, usage={"total_tokens": 500}))
    assert await store.tokens_used(ref) == 500
    await elsewhere.lock_for_deletion(ref)
    await elsewhere.delete(ref)
    await store.create(ref)
    assert await store.tokens_used(ref) == 0
    assert await step_reads(store, ref, 1) == []
