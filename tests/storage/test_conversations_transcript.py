"""Transcripts: order, exactly-once appends under races, flat append cost, robust reads."""

from __future__ import annotations

import asyncio
import json
import random
import re
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.conversations import ConversationStore
from storage.errors import RecordNotFound, RecordTooLarge
from storage.models import ConversationRef, StoredMessage
from storage.transcript import MAX_BLOCK_BYTES
from tests.storage.messages import message


async def _raw_lines(container: ContainerClient, ref: ConversationRef) -> list[dict[str, Any]]:
    """Every JSON line in every transcript segment, duplicates and all."""
    lines: list[dict[str, Any]] = []
    async for blob in container.list_blobs(name_starts_with=paths.transcript_prefix(ref)):
        data = await (await container.download_blob(blob.name)).readall()
        lines += [json.loads(line) for line in data.splitlines() if line.strip()]
    return lines


async def _append_raw(container: ContainerClient, ref: ConversationRef, data: bytes) -> None:
    """Write to the transcript behind the store's back (a foreign or broken writer)."""
    await container.get_blob_client(paths.segment_name(ref, 0)).append_block(data)


async def test_messages_read_back_in_turn_step_seq_order_whatever_the_write_order(
    store: ConversationStore, ref: ConversationRef
) -> None:
    keys = [(turn, step, seq) for turn in (1, 2) for step in (0, 1, 10) for seq in (0, 1, 2)]
    shuffled = random.Random(7).sample(keys, len(keys))
    for turn, step, seq in shuffled:
        assert await store.append(ref, message(turn, step, seq, run_id=f"run-{turn}"))

    read = await store.read_messages(ref)

    assert [m.sort_key for m in read] == sorted(keys)


async def test_a_stored_message_keeps_every_field(
    store: ConversationStore, ref: ConversationRef
) -> None:
    original = message(
        role="assistant",
        content="naïve ✓ \n multi-line \u2028 text",
        tool_calls=[
            {"id": "call_1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
        ],
        usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        finish_reason="tool_calls",
    )
    await store.append(ref, original)
    assert await store.read_messages(ref) == [original]
    assert StoredMessage.from_dict(original.to_dict()) == original


async def test_a_repeated_append_writes_once(
    store: ConversationStore,
    other_store: ConversationStore,
    container: ContainerClient,
    ref: ConversationRef,
) -> None:
    first = message(content="first")
    assert await store.append(ref, first) is True
    assert await store.append(ref, message(content="again")) is False
    # A fresh process (no cursor) finds it too.
    assert await other_store.append(ref, message(content="again")) is False

    assert [m.content for m in await store.read_messages(ref)] == ["first"]
    assert len(await _raw_lines(container, ref)) == 1


async def test_known_ids_skip_the_append(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
) -> None:
    assert await store.append(ref, message(), known_ids={"run-1.0.0"}) is False
    assert await _raw_lines(container, ref) == []


async def test_two_concurrent_writers_with_the_same_id_store_it_once(
    container: ContainerClient, ref: ConversationRef
) -> None:
    writers = [ConversationStore(container) for _ in range(2)]
    for writer in writers:  # both know the (empty) transcript: both race for position 0
        await writer.read_messages(ref)

    outcomes = await asyncio.gather(
        *(w.append(ref, message(content=f"from {i}")) for i, w in enumerate(writers))
    )

    assert sorted(outcomes) == [False, True]
    assert len(await _raw_lines(container, ref)) == 1
    assert len(await writers[0].read_messages(ref)) == 1


async def test_concurrent_appends_of_different_ids_are_all_kept(
    container: ContainerClient, ref: ConversationRef
) -> None:
    writers = [ConversationStore(container) for _ in range(4)]
    for writer in writers:
        await writer.read_messages(ref)

    async def write(index: int, writer: ConversationStore) -> list[bool]:
        return [await writer.append(ref, message(1, index, seq)) for seq in range(8)]

    outcomes = await asyncio.gather(*(write(i, w) for i, w in enumerate(writers)))
    # …and the same store from many tasks at once (parallel tool calls in one process).
    same_store = await asyncio.gather(
        *(writers[0].append(ref, message(2, 0, s, run_id="run-2")) for s in range(8))
    )

    assert all(all(results) for results in outcomes) and all(same_store)
    read = await writers[1].read_messages(ref)
    assert len(read) == 4 * 8 + 8
    assert len(await _raw_lines(container, ref)) == 4 * 8 + 8


async def test_append_many_writes_one_block_and_skips_ids_already_there(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
) -> None:
    await store.append(ref, message(1, 1, 1))
    results = [message(1, 1, seq) for seq in (1, 2, 3)] + [message(1, 1, 2, content="dup")]

    assert await store.append_many(ref, results) == 2
    assert await store.append_many(ref, results) == 0

    blob = container.get_blob_client(paths.segment_name(ref, 0))
    assert (await blob.get_blob_properties()).append_blob_committed_block_count == 2
    assert [(m.seq, m.content) for m in await store.read_messages(ref)] == [
        (1, "message 1/1/1"),
        (2, "message 1/1/2"),
        (3, "message 1/1/3"),
    ]


async def test_a_duplicate_line_from_a_racing_writer_is_shown_once_first_wins(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
) -> None:
    await store.append(ref, message(content="first"))
    duplicate = json.dumps(message(content="second").to_dict()).encode() + b"\n"
    await _append_raw(container, ref, duplicate)

    assert [m.content for m in await store.read_messages(ref)] == ["first"]


async def test_a_torn_last_line_is_ignored_and_later_appends_still_read(
    store: ConversationStore,
    other_store: ConversationStore,
    container: ContainerClient,
    ref: ConversationRef,
) -> None:
    await store.append(ref, message(1, 0, 0))
    torn = json.dumps(message(1, 0, 1).to_dict()).encode()[:40]
    await _append_raw(container, ref, torn)

    assert [m.seq for m in await store.read_messages(ref)] == [0]
    # Both a writer that read the torn tail and one that only catches up on it keep lines whole.
    assert await other_store.append(ref, message(1, 0, 2))
    assert await store.append(ref, message(1, 0, 3))
    assert [m.seq for m in await other_store.read_messages(ref)] == [0, 2, 3]


async def test_a_foreign_line_in_the_transcript_is_skipped(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
) -> None:
    await _append_raw(container, ref, b'{"not": "a message"}\n[1, 2]\n\xff\xfe\n')
    await store.append(ref, message())
    assert [m.id for m in await store.read_messages(ref)] == ["run-1.0.0"]


async def test_appending_to_an_unknown_conversation_is_not_found(
    store: ConversationStore, owner: str
) -> None:
    with pytest.raises(RecordNotFound):
        await store.append(ConversationRef(owner, "nope"), message())


async def test_a_message_too_large_for_one_block_is_refused(
    store: ConversationStore, ref: ConversationRef
) -> None:
    with pytest.raises(RecordTooLarge, match=re.escape("run-1.0.0")):
        await store.append(ref, message(content="x" * MAX_BLOCK_BYTES))
    assert await store.read_messages(ref) == []


async def test_a_full_segment_rolls_over_to_the_next_blob(
    container: ContainerClient, owner: str
) -> None:
    store = ConversationStore(container, max_blocks_per_segment=3)
    ref = ConversationRef(owner, "long-" + owner[-12:])
    await store.create(ref)
    for seq in range(7):
        assert await store.append(ref, message(1, 0, seq))

    names = [
        b.name async for b in container.list_blobs(name_starts_with=paths.conversation_prefix(ref))
    ]
    assert sorted(n.rsplit("/", 1)[1] for n in names if "transcript" in n) == [
        "transcript-0001.jsonl",
        "transcript-0002.jsonl",
        "transcript.jsonl",
    ]
    fresh = ConversationStore(container, max_blocks_per_segment=3)
    assert [m.seq for m in await fresh.read_messages(ref)] == list(range(7))
    # Ids in earlier segments are still known to a fresh process…
    assert await fresh.append(ref, message(1, 0, 0)) is False
    # …and two writers racing into a full segment both land in the next one.
    a, b = ConversationStore(container, max_blocks_per_segment=3), fresh
    await a.read_messages(ref)
    assert await asyncio.gather(*(s.append(ref, message(1, 1, i)) for i, s in enumerate((a, b))))
    assert [m.sort_key for m in await a.read_messages(ref)][-2:] == [(1, 1, 0), (1, 1, 1)]


async def test_an_append_to_a_long_conversation_is_one_request(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    container, requests = counted
    store = ConversationStore(container)
    ref = ConversationRef(owner, "long-counted-" + owner[-12:])
    await store.create(ref)
    await store.append_many(ref, [message(1, step, 0) for step in range(300)])
    await store.read_messages(ref)  # what a model step does anyway

    requests.clear()
    assert await store.append(ref, message(2, 0, 0, run_id="run-2"))
    assert await store.append(ref, message(2, 0, 0, run_id="run-2")) is False
    assert requests == ["PUT"]  # one Append Block; the repeat needed no request at all


async def test_tokens_used_sums_each_messages_usage_once(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    container, requests = counted
    writer, reader = ConversationStore(container), ConversationStore(container)
    ref = ConversationRef(owner, "tokens-" + owner[-12:])
    await writer.create(ref)
    await writer.append(ref, message(1, 0, 0, usage={"total_tokens": 12}))
    await writer.append(ref, message(1, 1, 0, usage={"total_tokens": 25}))
    await writer.append(ref, message(1, 1, 0, usage={"total_tokens": 25}))  # a repeat: skipped
    await writer.append(ref, message(1, 1, 1, role="tool"))

    requests.clear()
    assert await writer.tokens_used(ref) == 37
    assert requests == []  # the writer knows from its own appends
    assert await reader.tokens_used(ref) == 37  # another process reads once
    assert requests == ["GET"]


async def test_tokens_used_is_exact_after_an_append_that_caught_up_with_another_writer(
    container: ContainerClient, owner: str
) -> None:
    first, second = ConversationStore(container), ConversationStore(container)
    ref = ConversationRef(owner, "tokens-race-" + owner[-12:])
    await first.create(ref)
    assert await first.tokens_used(ref) == 0
    await second.append(ref, message(1, 0, 0, usage={"total_tokens": 40}))
    await first.append(ref, message(2, 0, 0, run_id="run-2", usage={"total_tokens": 2}))
    assert await first.tokens_used(ref) == 42


async def test_the_first_append_to_a_conversation_this_process_created_is_one_request(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    container, requests = counted
    store = ConversationStore(container)
    ref = ConversationRef(owner, "fresh-" + owner[-12:])
    await store.create(ref)
    requests.clear()
    assert await store.append(ref, message(1, 0, 0))
    assert requests == ["PUT"]  # it made the transcript, so it knows it is empty
    assert [m.id for m in await ConversationStore(container).read_messages(ref)] == [
        message(1, 0, 0).id
    ]
