"""Summary records against Azurite: one per range, written once; the newest only moves forward;
the transcript is never touched."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from storage import paths
from storage.conversations import ConversationStore
from storage.models import ConversationRef
from storage.summaries import ConversationSummary, SummaryStore
from tests.storage.messages import message


def summary(text: str, first: str, last: str, key: tuple[int, int, int]) -> ConversationSummary:
    return ConversationSummary(
        text=text,
        first_message_id=first,
        last_message_id=last,
        last_turn=key[0],
        last_step=key[1],
        last_seq=key[2],
        tokens=12,
        covered_tokens=900,
        created_at="2026-12-02T00:00:00+00:00",
    )


async def test_a_conversation_without_compaction_has_no_summary(store, ref):
    assert await store.summaries.latest(ref) is None


async def test_a_summary_is_stored_under_its_range_and_becomes_the_newest(store, ref, container):
    first = summary("turns 1-3", "r1.0.0", "r3.2.0", (3, 2, 0))
    assert await store.summaries.put(ref, first) == first
    assert await store.summaries.latest(ref) == first
    assert await store.summaries.find(ref, "r1.0.0", "r3.2.0") == first
    names = [b.name async for b in container.list_blobs(paths.conversation_prefix(ref))]
    assert paths.summary_record_name(ref, "r1.0.0", "r3.2.0") in names


async def test_the_same_range_written_again_keeps_the_first_summary(store, ref):
    """A retried compaction that asked the model again (a crash after the record, say) cannot
    replace what later steps may already have sent."""
    first = summary("first words", "r1.0.0", "r3.2.0", (3, 2, 0))
    await store.summaries.put(ref, first)
    again = await store.summaries.put(ref, replace(first, text="other words"))
    assert again == first and (await store.summaries.latest(ref)) == first


async def test_racing_writers_of_one_range_store_one_summary(container, ref):
    stores = [SummaryStore(container) for _ in range(4)]
    written = await asyncio.gather(
        *(
            s.put(ref, summary(f"writer {i}", "r1.0.0", "r2.2.0", (2, 2, 0)))
            for i, s in enumerate(stores)
        )
    )
    assert len({w.text for w in written}) == 1
    assert (await stores[0].latest(ref)) == written[0]


async def test_the_newest_summary_never_moves_back_to_one_covering_less(store, ref):
    newer = summary("turns 1-5", "r4.0.0", "r5.2.0", (5, 2, 0))
    older = summary("turns 1-3", "r1.0.0", "r3.2.0", (3, 2, 0))
    await store.summaries.put(ref, newer)
    await store.summaries.put(ref, older)  # a late retry of an earlier compaction
    assert await store.summaries.latest(ref) == newer
    assert await store.summaries.find(ref, "r1.0.0", "r3.2.0") == older


async def test_summaries_leave_the_transcript_whole(store: ConversationStore, ref: ConversationRef):
    lines = [message(1, 0, 0, "r1", role="user"), message(1, 1, 0, "r1")]
    await store.append_many(ref, lines)
    await store.summaries.put(ref, summary("all of it", "r1.0.0", "r1.1.0", (1, 1, 0)))
    assert [m.id for m in await store.read_messages(ref)] == ["r1.0.0", "r1.1.0"]
