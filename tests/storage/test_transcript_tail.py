"""Tail reads: a model step and a first append read the transcript's end, not all of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.blob import BlobClient
from azure.storage.blob.aio import ContainerClient

from devkit.azurite import AzuriteInstance
from storage import paths, transcript
from storage.blob import container_client
from storage.conversations import ConversationStore
from storage.models import ConversationRef, StoredMessage
from storage.tail import TailBound, estimated_tokens
from tests.storage.conftest import CONTAINER
from tests.storage.messages import message

FILLER = "The quick brown fox jumps over the lazy dog. " * 6  # ~270 bytes a line's content


async def _conversation(store: ConversationStore, owner: str, name: str) -> ConversationRef:
    ref = ConversationRef(owner, f"{name}-{owner[-12:]}")
    await store.create(ref)
    return ref


def _turns(count: int, per_turn: int = 4, content: str = FILLER) -> list[StoredMessage]:
    """`count` turns of a user message and assistant replies, in the order they happen."""
    return [
        message(turn, step, 0, run_id=f"run-{turn}", role="user" if step == 0 else "assistant",
                content=f"{turn}/{step} {content}")
        for turn in range(1, count + 1)
        for step in range(per_turn)
    ]  # fmt: skip


async def _fill(store: ConversationStore, ref: ConversationRef, messages: list[StoredMessage]):
    for start in range(0, len(messages), 200):
        await store.append_many(ref, messages[start : start + 200])


async def _raw_lines(container: ContainerClient, ref: ConversationRef) -> list[dict[str, Any]]:
    data = await (await container.download_blob(paths.segment_name(ref, 0))).readall()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


async def test_a_tail_read_returns_exactly_the_newest_messages_a_full_read_returns(
    container: ContainerClient, owner: str
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "tail")
    await _fill(writer, ref, _turns(150))  # 600 lines, ~190 KB: several range reads back
    whole = await writer.read_messages(ref)

    for newest in (1, 7, 250, 599, 600, 5_000):
        tail = await ConversationStore(container).read_tail(ref, TailBound(messages=newest))
        assert tail == whole[-newest:], newest


async def test_a_tail_read_by_tokens_reaches_back_at_least_that_many_estimated_tokens(
    container: ContainerClient, owner: str
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "tokens")
    await _fill(writer, ref, _turns(50))
    whole = await writer.read_messages(ref)

    tail = await ConversationStore(container).read_tail(ref, TailBound(tokens=5_000))

    assert tail == whole[-len(tail) :]
    estimates = [estimated_tokens(m) for m in tail]
    assert sum(estimates) >= 5_000 > sum(estimates[1:])  # at least that many, no more than needed


async def test_a_tail_read_keeps_multi_byte_characters_split_by_a_range_read_whole(
    container: ContainerClient, owner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "utf8")
    await _fill(writer, ref, _turns(6, content="é✓🙂 naïve 日本語 " * 3))
    whole = await writer.read_messages(ref)

    # Range reads of every size from 50 to 69 bytes: many of their edges fall inside a two-,
    # three- or four-byte character.
    for chunk in range(50, 70):
        monkeypatch.setattr(transcript, "TAIL_CHUNK_BYTES", chunk)
        tail = await ConversationStore(container).read_tail(ref, TailBound(from_turn=5))
        assert tail == whole[-8:], chunk  # turns 5 and 6


async def test_a_tool_call_and_its_results_at_the_boundary_stay_together(
    container: ContainerClient, owner: str
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "group")
    calls = [{"id": f"call_{i}", "type": "function", "function": {"name": "t", "arguments": "{}"}}
             for i in (1, 2, 3)]  # fmt: skip
    group = [message(39, 1, 0, run_id="run-39", tool_calls=calls, content=None)] + [
        message(39, 1, i, run_id="run-39", role="tool", tool_call_id=f"call_{i}") for i in (1, 2, 3)
    ]
    await _fill(writer, ref, _turns(38) + group + [message(39, 2, 0, run_id="run-39")])

    # The newest two messages would cut between the call and its results: the tail starts at
    # the assistant message that asked for them.
    tail = await ConversationStore(container).read_tail(ref, TailBound(messages=2))

    assert [m.id for m in tail] == [f"run-39.{step}.{seq}" for step, seq in
                                    ((1, 0), (1, 1), (1, 2), (1, 3), (2, 0))]  # fmt: skip


async def test_a_model_step_with_a_bound_sees_its_whole_turn_and_without_one_everything(
    container: ContainerClient, owner: str
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "step")
    await _fill(writer, ref, _turns(30, per_turn=6))
    whole = await writer.read_messages(ref)
    step = ConversationStore(container)

    bounded = await step.begin_model_step(ref, "run-30", 30, {}, TailBound(messages=2))
    assert bounded == [m for m in whole if m.turn == 30]
    assert await step.begin_model_step(ref, "run-30", 30, {}) == whole


async def test_a_tail_read_reads_the_same_few_bytes_however_long_the_conversation(
    azurite: AzuriteInstance, owner: str
) -> None:
    received: list[tuple[str, int]] = []

    def note(response: Any) -> None:
        size = int(response.http_response.headers.get("Content-Length") or 0)
        received.append((response.http_request.method, size))

    client = container_client(azurite.connection_string, CONTAINER, raw_response_hook=note)
    async with client:
        writer = ConversationStore(client)
        seen = {}
        for size in (5, 1_000):  # ~6 KB and ~1.2 MB
            ref = await _conversation(writer, owner, f"flat-{size}")
            await _fill(writer, ref, _turns(size))
            received.clear()
            await ConversationStore(client).read_tail(ref, TailBound(messages=20))
            seen[size] = list(received)
    assert [method for method, _ in seen[5]] == [method for method, _ in seen[1_000]]
    assert [method for method, _ in seen[1_000]] == ["HEAD", "GET"]
    # 20 newest messages of ~330 bytes: one read of about 20 KB (of 1.2 MB).
    assert sum(size for method, size in seen[1_000] if method == "GET") <= 20 * 1024


async def test_a_process_that_knows_the_end_reads_a_tail_in_one_request_and_sees_others_appends(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    container, requests = counted
    writer, reader = ConversationStore(container), ConversationStore(container)
    ref = await _conversation(writer, owner, "hint")
    await _fill(writer, ref, _turns(300))
    await reader.read_tail(ref, TailBound(messages=5))
    await writer.append(ref, message(301, 0, 0, run_id="run-301"))

    requests.clear()
    tail = await reader.read_tail(ref, TailBound(messages=2))
    assert requests == ["GET"]  # from a little before the end it knew, to the end as it is now
    assert [m.id for m in tail] == ["run-300.3.0", "run-301.0.0"]
    requests.clear()
    assert await reader.append(ref, message(301, 1, 0, run_id="run-301"))
    assert requests == ["PUT"]  # the read moved its cursor to the true end


async def test_a_cold_append_to_a_long_transcript_reads_its_tail_and_lands_at_the_end(
    counted: tuple[ContainerClient, list[str]], owner: str
) -> None:
    container, requests = counted
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "cold")
    await _fill(writer, ref, _turns(500))  # 2,000 lines, ~620 KB

    requests.clear()
    assert await ConversationStore(container).append(ref, message(501, 0, 0, run_id="run-501"))
    assert requests == ["HEAD", "GET", "PUT"]  # the end, the last 64 KB, one Append Block

    lines = await _raw_lines(container, ref)
    assert len(lines) == 2_001 and lines[-1]["id"] == "run-501.0.0"
    assert (await writer.read_messages(ref))[-1].id == "run-501.0.0"


async def test_a_cold_append_finds_its_id_anywhere_in_its_own_turn(
    container: ContainerClient, owner: str
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "turn")
    # One long turn of ~600 KB: its first message lies far beyond the first range read back.
    await _fill(writer, ref, _turns(3) + [
        message(4, step, 0, run_id="run-4", content=FILLER) for step in range(2_000)
    ])  # fmt: skip

    again = message(4, 0, 0, run_id="run-4", content="a retried activity's copy")
    assert await ConversationStore(container).append(ref, again) is False
    assert len(await _raw_lines(container, ref)) == 12 + 2_000


@pytest.mark.parametrize("same_id", [True, False])
async def test_a_cold_append_is_refused_where_another_writer_got_first_and_lands_after_it(
    azurite: AzuriteInstance, container: ContainerClient, owner: str, same_id: bool
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "race")
    await _fill(writer, ref, _turns(300))
    theirs = message(301, 0, 0, run_id="run-301", content="theirs")
    mine = message(301, 0 if same_id else 1, 0, run_id="run-301", content="mine")
    blob = BlobClient.from_connection_string(
        azurite.connection_string, CONTAINER, paths.segment_name(ref, 0)
    )
    sent: list[str] = []

    def another_writer_gets_there_first(request: Any) -> None:
        """Just before the cold store's Append Block leaves, another writer appends."""
        sent.append(request.http_request.method)
        if sent.count("PUT") == 1 and request.http_request.method == "PUT":
            blob.append_block(json.dumps(theirs.to_dict()).encode() + b"\n")

    cold_client = container_client(
        azurite.connection_string, CONTAINER, raw_request_hook=another_writer_gets_there_first
    )
    with blob:
        async with cold_client:
            appended = await ConversationStore(cold_client).append(ref, mine)

    # The end it read was taken (412); it read what it missed, then wrote after it, or nothing.
    assert appended is not same_id
    assert sent == ["HEAD", "GET", "PUT", "GET"] + ([] if same_id else ["PUT"])
    lines = await _raw_lines(container, ref)
    expected = [("run-301.0.0", "theirs")] + ([] if same_id else [("run-301.1.0", "mine")])
    assert [(line["id"], line["content"]) for line in lines[1_200:]] == expected


async def test_tail_reads_and_cold_appends_cross_full_segments(
    container: ContainerClient, owner: str
) -> None:
    def store() -> ConversationStore:
        return ConversationStore(container, max_blocks_per_segment=4)

    writer = store()
    ref = await _conversation(writer, owner, "segments")
    for turn in range(1, 5):  # four blocks a segment, one turn a block: segment 0 is full
        await writer.append_many(ref, _turns(4)[(turn - 1) * 4 : turn * 4])
    for turn in range(5, 15):  # one block each: segments 1, 2 and 3
        await writer.append(ref, message(turn, 0, 0, run_id=f"run-{turn}"))
    whole = await writer.read_messages(ref)

    reader = store()
    assert await reader.read_tail(ref, TailBound(messages=19)) == whole[-19:]
    for turn in range(15, 18):  # segment 3 fills up; segment 4 begins behind the reader's back
        await writer.append(ref, message(turn, 0, 0, run_id=f"run-{turn}"))
    assert await reader.read_tail(ref, TailBound(messages=2)) == [
        message(16, 0, 0, run_id="run-16"),
        message(17, 0, 0, run_id="run-17"),
    ]
    assert await store().append(ref, message(2, 1, 0, run_id="run-2")) is False
    assert await store().append(ref, message(18, 0, 0, run_id="run-18"))
    assert (await store().read_messages(ref))[-1].id == "run-18.0.0"


async def test_tokens_used_after_a_cold_append_counts_the_whole_transcript(
    container: ContainerClient, owner: str
) -> None:
    writer = ConversationStore(container)
    ref = await _conversation(writer, owner, "total")
    await _fill(writer, ref, [message(t, 1, 0, run_id=f"run-{t}", usage={"total_tokens": 10},
                                      content=FILLER) for t in range(1, 400)])  # fmt: skip
    cold = ConversationStore(container)
    await cold.append(ref, message(400, 0, 0, run_id="run-400", usage={"total_tokens": 1}))
    assert await cold.tokens_used(ref) == 3_991
