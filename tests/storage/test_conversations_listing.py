"""An owner's conversations, most recently active first, paged (storage.activity markers),
against Azurite."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.activity import ActivityIndex, activity_key
from storage.conversations import ORPHAN_GRACE, ConversationStore, preview_of
from storage.errors import InvalidQuery
from storage.models import PREVIEW_CHARS, ConversationRef


async def new_conversations(store: ConversationStore, owner: str, count: int) -> list[str]:
    ids = [f"c{i}-{uuid.uuid4().hex[:8]}" for i in range(count)]
    for conversation_id in ids:  # one after the other: each is newer than the one before
        await store.create(ConversationRef(owner, conversation_id))
    return ids


async def listed(store: ConversationStore, owner: str, limit: int = 100) -> list[str]:
    """Every page, followed to the end."""
    ids: list[str] = []
    continuation: str | None = None
    while True:
        page = await store.list_page(owner, limit, continuation)
        ids += [meta.conversation_id for meta in page.conversations]
        if page.continuation is None:
            return ids
        continuation = page.continuation


async def markers(container: ContainerClient, owner: str) -> list[str]:
    prefix = paths.activity_prefix(owner)
    return [b.name[len(prefix) :] async for b in container.list_blobs(name_starts_with=prefix)]


async def test_new_conversations_are_listed_newest_first(
    store: ConversationStore, owner: str
) -> None:
    ids = await new_conversations(store, owner, 3)
    page = await store.list_page(owner, 10)
    assert [m.conversation_id for m in page.conversations] == ids[::-1]
    assert page.continuation is None
    first = page.conversations[-1]
    assert first.active_at == first.created_at and first.preview is None


async def test_a_turn_beginning_or_ending_moves_its_conversation_to_the_front(
    store: ConversationStore, owner: str
) -> None:
    a, b, c = await new_conversations(store, owner, 3)
    await store.begin_turn(ConversationRef(owner, a), "run-a")
    assert await listed(store, owner) == [a, c, b]
    await store.begin_turn(ConversationRef(owner, b), "run-b")
    await store.end_turn(ConversationRef(owner, a), "run-a")
    assert await listed(store, owner) == [a, b, c]


async def test_paging_covers_every_conversation_exactly_once(
    store: ConversationStore, owner: str
) -> None:
    ids = await new_conversations(store, owner, 7)
    await store.begin_turn(ConversationRef(owner, ids[2]), "run-1")
    pages = []
    continuation: str | None = None
    while True:
        page = await store.list_page(owner, 3, continuation)
        pages.append([m.conversation_id for m in page.conversations])
        if page.continuation is None:
            break
        continuation = page.continuation
    assert [len(p) for p in pages] == [3, 3, 1]
    everything = [i for p in pages for i in p]
    assert everything == [ids[2], ids[6], ids[5], ids[4], ids[3], ids[1], ids[0]]


async def test_another_owner_sees_none_of_my_conversations(
    store: ConversationStore, owner: str
) -> None:
    await new_conversations(store, owner, 2)
    assert await listed(store, f"{owner}-other") == []


async def test_the_preview_is_the_first_message_on_one_bounded_line(
    store: ConversationStore, ref: ConversationRef
) -> None:
    first = "Plan my\n\ttrip to Lisbon " + "please " * 100
    await store.begin_turn(ref, "run-1", preview=first)
    await store.end_turn(ref, "run-1")
    await store.begin_turn(ref, "run-2", preview="a later message")
    [meta] = (await store.list_page(ref.owner, 10)).conversations
    assert meta.preview is not None and len(meta.preview) == PREVIEW_CHARS
    assert meta.preview.startswith("Plan my trip to Lisbon please") and meta.preview[-1] == "…"
    assert "\n" not in meta.preview


def test_a_short_preview_is_kept_whole_and_blank_text_gives_none() -> None:
    assert preview_of("  hello   there ") == "hello there"
    assert preview_of(" \n ") is None
    assert preview_of(None) is None
    assert len(preview_of("x" * 1000) or "") == PREVIEW_CHARS


async def test_a_limit_outside_its_bounds_is_an_invalid_query(
    store: ConversationStore, owner: str
) -> None:
    for limit in (0, 1001):
        with pytest.raises(InvalidQuery, match="limit"):
            await store.list_page(owner, limit)


async def test_markers_left_by_a_crash_never_list_a_conversation_twice(
    store: ConversationStore, container: ContainerClient, ref: ConversationRef
) -> None:
    """A crash after the new marker and before the meta leaves a newer extra marker; one after
    the meta and before the old marker's delete, an older one. Either way: listed once, at the
    meta's time; the older one is removed, the newer one (maybe a write in flight) kept."""
    index = ActivityIndex(container)
    meta = await store.get_meta(ref)
    now = datetime.fromisoformat(meta.active_at)
    older, newer = (
        (now - timedelta(seconds=5)).isoformat(),
        (now + timedelta(seconds=5)).isoformat(),
    )
    await index.mark(ref.owner, ref.conversation_id, older)
    await index.mark(ref.owner, ref.conversation_id, newer)

    assert await listed(store, ref.owner, limit=1) == [ref.conversation_id]
    left = await markers(container, ref.owner)
    assert sorted(left) == sorted(
        f"{activity_key(t)}-{ref.conversation_id}" for t in (meta.active_at, newer)
    )


async def test_two_turns_of_one_owner_racing_keep_every_entry(
    container: ContainerClient, owner: str
) -> None:
    """Turns of one owner start and end at once on several instances (a scheduled batch):
    every conversation stays listed exactly once, with its latest activity."""
    stores = [ConversationStore(container) for _ in range(4)]
    ids = await new_conversations(stores[0], owner, 8)
    refs = [ConversationRef(owner, i) for i in ids]
    await asyncio.gather(*(stores[n % 4].begin_turn(r, f"run-{n}") for n, r in enumerate(refs)))
    await asyncio.gather(*(stores[(n + 1) % 4].end_turn(r, f"run-{n}") for n, r in enumerate(refs)))

    everything = await listed(stores[0], owner, limit=3)
    assert sorted(everything) == sorted(ids)
    metas = [await stores[0].get_meta(r) for r in refs]
    assert all(m.turn_count == 1 and m.active_run_id is None for m in metas)
    assert len(await markers(container, owner)) == len(ids)  # the old markers are gone


async def test_forget_takes_a_conversation_out_of_the_listing(
    store: ConversationStore, container: ContainerClient, owner: str
) -> None:
    keep, drop = await new_conversations(store, owner, 2)
    await store.forget(owner, drop)
    await store.forget(owner, drop)  # idempotent
    await store.forget(owner, "never-existed")
    assert await listed(store, owner) == [keep]
    assert [m.split("-", 1)[1] for m in await markers(container, owner)] == [keep]


async def test_a_marker_without_its_conversation_is_removed_once_past_the_grace(
    store: ConversationStore, container: ContainerClient, owner: str
) -> None:
    """A create puts its marker before its meta, so a fresh marker without a meta is kept (a
    create in flight); an old one is a deleted conversation's leftover."""
    index = ActivityIndex(container)
    past = (datetime.now(UTC) - ORPHAN_GRACE - timedelta(minutes=1)).isoformat()
    await index.mark(owner, "gone-long-ago", past)
    await index.mark(owner, "being-created", datetime.now(UTC).isoformat())
    assert await listed(store, owner) == []
    [left] = await markers(container, owner)
    assert left.endswith("-being-created")


async def test_a_continuation_the_service_refuses_is_an_invalid_query(
    store: ConversationStore, owner: str
) -> None:
    await new_conversations(store, owner, 2)
    with pytest.raises(InvalidQuery, match="continuation"):
        await store.list_page(owner, 1, "x" * 5000)


async def test_a_deleted_conversation_leaves_no_marker_and_is_not_listed_while_it_goes(
    store: ConversationStore, container: ContainerClient, owner: str
) -> None:
    keep, drop = await new_conversations(store, owner, 2)
    ref = ConversationRef(owner, drop)
    await store.lock_for_deletion(ref)
    assert await listed(store, owner) == [keep]  # being deleted: not offered any more
    await store.delete(ref)
    assert await listed(store, owner) == [keep]
    assert [m.split("-", 1)[1] for m in await markers(container, owner)] == [keep]
