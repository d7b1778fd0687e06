"""A conversation's transcript: JSON lines in append blobs, written with conditional appends.

Why this shape
- Append blobs: adding a message is one Append Block of that message only, so its cost does not
  grow with the conversation (no read-modify-write of a whole transcript). A block is atomic:
  readers see all of a line or none of it.
- Exactly-once lines without a lock: each writer appends at the position it believes is the end
  (`appendpos_condition`). If another writer got there first the service answers 412; the writer
  then reads only the bytes it missed (a range read of the new tail), learns their ids, drops its
  messages that are already there, and tries again. So a repeated append finds its id and writes
  nothing, and two writers racing with the same id produce one line. Every 412 means another
  writer made progress, so a bounded number of attempts is enough.
- A per-process cursor (end position, block count, ids seen) makes the next append one request.
  The first append for a conversation in a process has no cursor: it reads the transcript's
  tail, back to the turn of the messages it appends (a message id can only be among the lines
  of its own turn), so its cost does not grow with the conversation: one HEAD for the exact end
  position and block count, then range reads back from that end (16 KB, doubling until a line
  of an earlier turn is read). A process that created the conversation knows it to be empty and
  reads nothing. (The one gap: a late line from a cancelled run of an earlier turn, written in
  the middle of the current turn, makes the tail stop early; at worst a retried append of a
  line before it is written twice, which reads show once.)
- Conversation ids are the client's: a conversation deleted and created again has new blobs of
  the same names. A cursor (and its copy) goes when this process deletes or creates the
  conversation; one that another instance's delete and create left behind is found out by the
  first append, whose 412 catch-up must continue the blob the cursor knows (a line end where
  the cursor ends one, the same creation time) or starts over from a full read. (The one gap:
  an append that lands because the new transcript is exactly as long as the old one was.)
- Model steps read a tail too (`read_tail`, bounded by a `storage.tail.TailBound`; the first
  range is sized from the bound, and a process that knows the end skips the HEAD); a full read
  (`read`) is for the API that returns every message, and for the token total, which a tail
  cannot know (`tokens_used` reads whole once per process).
- A process keeps a copy of the newest lines of the transcripts it writes (`_Copy`: the messages
  of every line from some line on to its cursor's end, grown by its own appends and by what its
  reads learn, bounded in bytes and in conversations), so a model step that follows its run's own
  writes in this process builds its window without a read (`recent_tail`; when the copy may
  stand for the transcript is the caller's to know: `ConversationStore.begin_model_step`).
- Reads always dedupe by id (first line wins) and skip lines that do not parse, so even a foreign
  writer or a torn tail cannot show a message twice or crash a read.
- An append blob holds at most 50,000 blocks; when a segment is full the log continues in the next
  one (`transcript-0001.jsonl`, …). Readers list the segments (only when segment 0 is full)
  and read them in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobProperties, ContentSettings, StorageErrorCode
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.errors import RecordNotFound, RecordTooLarge, StoreContention
from storage.models import ConversationRef, StoredMessage
from storage.recent import KeyedLocks, Recent
from storage.tail import BYTES_PER_TOKEN, TailBound, tail_start

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
MAX_BLOCK_BYTES = 4 * 1024 * 1024  # Append Block limit on every service version
MAX_BLOCKS_PER_SEGMENT = 50_000  # Append blob limit
READ_CHUNK_BYTES = 8 * 1024 * 1024  # one GET per chunk; no ETag pinning across chunks
TAIL_CHUNK_BYTES = 16 * 1024  # the least a tail read reads back from the end; each next doubles
TAIL_BYTES_PER_MESSAGE = 1024  # a guess that sizes the first read for a bound in messages
MAX_ATTEMPTS = 32
CURSOR_CACHE_SIZE = 256
# The newest lines a process keeps of the transcripts it writes (`_Copy`), so a model step that
# follows this process's own writes builds its window without a read: of this many
# conversations (the least recently used drops its copy), each up to this many bytes of lines.
COPIES_KEPT = 64
COPY_BYTES = 256 * 1024
_JSON = json.JSONDecoder()


@dataclass
class _Cursor:
    """What this process knows about the end of a transcript."""

    segment: int = 0
    length: int = 0  # bytes in `segment`
    blocks: int = 0  # committed blocks in `segment`
    ids: set[str] = field(default_factory=set)  # every message id seen, all segments
    # Total tokens of the transcript's messages (each model reply records its usage); None when
    # only a tail was read, which cannot know the total.
    tokens: int | None = 0
    needs_separator: bool = False  # the segment ends mid-line (never written by us)
    # `ids` holds every id of this turn onwards (0: of the whole transcript). A cursor learnt
    # from a tail read knows only the turns the tail reaches back to.
    ids_from_turn: int = 0
    # When `segment`'s blob was created (None until a request tells): which blob the cursor is
    # of. A conversation deleted and created again under its id has new blobs of the same names.
    created: datetime | None = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.segment, self.length)

    def take(self, other: _Cursor) -> None:
        self.segment, self.length, self.blocks = other.segment, other.length, other.blocks
        self.ids, self.tokens = other.ids, other.tokens
        self.needs_separator = other.needs_separator
        self.ids_from_turn = other.ids_from_turn
        self.created = other.created

    def is_of(self, created: datetime | None) -> bool:
        """Whether a blob created at `created` may be the one this cursor is of (either time
        unknown: it may)."""
        return created is None or self.created is None or created == self.created

    def outdated_by(self, other: _Cursor) -> bool:
        """Whether `other`, learnt from a read, is of another blob of this cursor's segment:
        this one is of a transcript deleted since."""
        return other.segment == self.segment and not self.is_of(other.created)

    def knows_all_of(self, turn: int) -> bool:
        return turn >= self.ids_from_turn

    def learn(self, messages: Iterable[StoredMessage]) -> list[StoredMessage]:
        """Note messages read from the transcript; returns those not seen before (the first
        line of each id wins), which alone are counted."""
        fresh = []
        for message in messages:
            if message.id not in self.ids:
                self.ids.add(message.id)
                if self.tokens is not None:
                    self.tokens += _tokens(message)
                fresh.append(message)
        return fresh


@dataclass
class _Copy:
    """What this process last saw of a transcript's end: the message of every line from some
    line on up to `end` (the first line of each id, in file order), at most COPY_BYTES of them
    (estimated; the oldest go first). Kept for model steps (`TranscriptLog.recent_tail`)."""

    end: tuple[int, int]  # (segment, length) of the cursor it belongs to
    messages: list[StoredMessage] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    from_start: bool = True  # the first line of the transcript is among them
    size: int = 0

    def add(self, messages: Iterable[StoredMessage]) -> None:
        for message in messages:
            weight = _weight(message)
            self.messages.append(message)
            self.sizes.append(weight)
            self.size += weight
        drop = 0
        while self.size > COPY_BYTES and drop < len(self.messages):
            self.size -= self.sizes[drop]
            drop += 1
        if drop:
            del self.messages[:drop], self.sizes[:drop]
            self.from_start = False


def _weight(message: StoredMessage) -> int:
    """About the bytes a message takes (its text parts; the fields around them, roughly)."""
    size = 256 + len(message.content or "")
    for call in message.tool_calls or ():
        function = call.get("function") or {}
        size += len(str(function.get("arguments", ""))) + len(str(function.get("name", "")))
    if message.reasoning:  # rare, and may be large (encrypted reasoning items)
        size += len(json.dumps(message.reasoning))
    return size


@dataclass(frozen=True)
class _Parsed:
    messages: list[StoredMessage]
    skipped_lines: int


@dataclass(frozen=True)
class _SegmentRead:
    data: bytes
    blocks: int | None  # None when the service did not say (nothing new at the offset)
    created: datetime | None = None  # the blob's creation time, when the service said


class TranscriptLog:
    """Appends and reads transcripts; one instance per process (it caches cursors)."""

    def __init__(
        self,
        container: ContainerClient,
        *,
        max_blocks_per_segment: int = MAX_BLOCKS_PER_SEGMENT,
        cursor_cache_size: int = CURSOR_CACHE_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        copies_kept: int = COPIES_KEPT,
    ) -> None:
        if not 1 <= max_blocks_per_segment <= MAX_BLOCKS_PER_SEGMENT:
            raise ValueError(f"max_blocks_per_segment must be 1..{MAX_BLOCKS_PER_SEGMENT}")
        self._container = container
        self._max_blocks = max_blocks_per_segment
        self._max_attempts = max_attempts
        self._cursors: Recent[str, _Cursor] = Recent(cursor_cache_size)
        # Each valid only while it ends where its transcript's cursor does (`_copy_of`).
        self._copies: Recent[str, _Copy] = Recent(copies_kept)
        # One writer per conversation per process: in-process racers would only 412 each other.
        self._locks = KeyedLocks()

    # --- public -------------------------------------------------------------------------------

    async def create(self, ref: ConversationRef) -> None:
        """Create segment 0 if missing (never truncates an existing transcript). What this
        process knew of a transcript of that name before is dropped: a conversation deleted
        and created again under its id (ids are the client's) starts empty."""
        made, created = await self._create_segment(ref, 0)
        if made:  # we made it, so it is empty: the first append needs no read
            key = paths.transcript_prefix(ref)
            self._cursors.put(key, _Cursor(created=created))
            self._copies.put(key, _Copy((0, 0)))
        else:
            self.forget(ref)

    def forget(self, ref: ConversationRef) -> None:
        """Drop what this process knows of the transcript (its conversation is deleted)."""
        key = paths.transcript_prefix(ref)
        self._cursors.pop(key)
        self._copies.pop(key)

    async def read(self, ref: ConversationRef) -> list[StoredMessage]:
        """Every message once (first line wins), sorted by (turn, step, seq)."""
        messages, cursor = await self._load(ref)
        self._offer_cursor(ref, cursor, _whole_copy(cursor, messages))
        return sorted(messages, key=lambda m: m.sort_key)

    async def read_tail(self, ref: ConversationRef, bound: TailBound) -> list[StoredMessage]:
        """The newest messages `bound` asks for (sorted as `read` sorts them), read back from the
        end of the transcript: the bytes read grow with the tail, not with the conversation."""
        tail = await self._load_tail(ref, bound)
        self._offer_tail(ref, tail)
        # None only when the read reached the transcript's start: then it all belongs to the tail.
        return tail.messages[tail_start(tail.messages, bound) or 0 :]

    def recent_tail(self, ref: ConversationRef, bound: TailBound) -> list[StoredMessage] | None:
        """The tail `bound` asks for (as `read_tail` returns it) from this process's copy of the
        transcript's newest lines, without a request; None when there is no copy that holds it
        (none kept, a write in flight, or it does not reach back far enough).

        The copy ends where this process last saw the transcript end (its own appends, and
        what its reads learnt): whether another writer appended since, the caller must know
        (`ConversationStore.begin_model_step` does, for a step that follows its run's own
        writes)."""
        key = paths.transcript_prefix(ref)
        cursor = self._cursors.get(key)
        if cursor is None or self._locks.held(key):
            return None
        copy = self._copy_of(key, cursor)
        if copy is None:
            return None
        ordered = sorted(copy.messages, key=lambda m: m.sort_key)
        start = tail_start(ordered, bound)
        if start is None and not copy.from_start:
            return None  # older lines it no longer holds might belong to the tail
        return ordered[start or 0 :]

    async def tokens_used(self, ref: ConversationRef) -> int:
        """Total tokens of the transcript's messages as far as this process knows (one read
        when it knows nothing yet). Exact right after an append: appends land only at the
        transcript's true end, having caught up with every other writer."""
        cursor = self._cursors.get(paths.transcript_prefix(ref))
        if cursor is None or cursor.tokens is None:
            messages, cursor = await self._load(ref)
            self._offer_cursor(ref, cursor, _whole_copy(cursor, messages))
        assert cursor.tokens is not None  # a whole read counts every message
        return cursor.tokens

    async def append(self, ref: ConversationRef, messages: Sequence[StoredMessage]) -> int:
        """Append the messages whose ids are not in the transcript yet; returns how many."""
        lines = _encode_unique(messages)
        if not lines:
            return 0
        key = paths.transcript_prefix(ref)
        oldest_turn = min(line.turn for line in lines)
        async with self._locks(key):
            cursor = self._cursors.get(key)
            if cursor is None or not cursor.knows_all_of(oldest_turn):
                # A message's id can only be in the transcript among the lines of its own turn,
                # so the tail back to that turn is all a first append needs to read.
                tail = await self._load_tail(ref, TailBound(from_turn=oldest_turn))
                cursor = self._cursors.put(key, tail.cursor)
                self._copies.put(key, tail.copy)
            return await self._append_lines(ref, cursor, lines)

    # --- appending ----------------------------------------------------------------------------

    async def _append_lines(self, ref: ConversationRef, cursor: _Cursor, lines: list[_Line]) -> int:
        written = 0
        failures = 0
        while True:
            pending = [line for line in lines if line.id not in cursor.ids]
            if not pending:
                return written
            if failures >= self._max_attempts:
                raise StoreContention(
                    f"could not append to conversation {ref.conversation_id}: "
                    f"{failures} concurrent-writer conflicts in a row"
                )
            if cursor.blocks >= self._max_blocks:
                await self._roll_over(ref, cursor)
                continue
            block = _first_block(pending, cursor.needs_separator)
            if await self._try_append(ref, cursor, block):
                written += len(block.ids)
            else:
                failures += 1

    async def _try_append(self, ref: ConversationRef, cursor: _Cursor, block: _Block) -> bool:
        """One conditional Append Block; False (after catching up) when we lost a race."""
        blob = self._container.get_blob_client(paths.segment_name(ref, cursor.segment))
        start, torn = cursor.position, cursor.needs_separator
        try:
            result = await blob.append_block(block.data, appendpos_condition=cursor.length)
        except HttpResponseError as exc:
            if _is(exc, 412, StorageErrorCode.APPEND_POSITION_CONDITION_NOT_MET):
                await self._catch_up(ref, cursor)
                return False
            if _is(exc, 409, StorageErrorCode.BLOCK_COUNT_EXCEEDS_LIMIT):
                cursor.blocks = self._max_blocks  # full: the next round rolls over
                return False
            if _is(exc, 404, StorageErrorCode.BLOB_NOT_FOUND):
                self.forget(ref)
                raise RecordNotFound("conversation not found") from None
            raise
        cursor.length += len(block.data)
        # the SDK types response values str | datetime | int; this one is a count
        cursor.blocks = int(str(result.get("blob_committed_block_count") or cursor.blocks + 1))
        cursor.ids.update(block.ids)
        if cursor.tokens is not None:
            cursor.tokens += block.tokens
        cursor.needs_separator = False
        self._extend_copy(ref, cursor, start, block.messages, torn)
        return True

    async def _catch_up(self, ref: ConversationRef, cursor: _Cursor) -> None:
        """Read what other writers appended after our cursor, so we know their ids.

        The read starts a byte early where the cursor ends a line, so it shows the blob still
        ends a line there. The service said our position is wrong; a blob with nothing beyond
        it, no line end there or another creation time is not the one the cursor knows (the
        conversation was deleted and created again under its id): start over from a full read,
        or its bytes from our position on would join the old ones (the copy too)."""
        back = 1 if cursor.length and not cursor.needs_separator else 0
        name = paths.segment_name(ref, cursor.segment)
        read = await self._read_segment(name, cursor.length - back)
        if not _continues(cursor, read, back):
            messages, fresh = await self._load(ref)
            cursor.take(fresh)
            self._copies.put(paths.transcript_prefix(ref), _whole_copy(cursor, messages))
            return
        data = read.data[back:]
        cursor.created = cursor.created or read.created
        start, torn = cursor.position, cursor.needs_separator
        parsed = _parse(data)
        learnt = cursor.learn(parsed.messages)
        cursor.length += len(data)
        if read.blocks is not None:
            cursor.blocks = read.blocks
        cursor.needs_separator = not data.endswith(b"\n")
        self._extend_copy(ref, cursor, start, learnt, torn)

    async def _roll_over(self, ref: ConversationRef, cursor: _Cursor) -> None:
        # Pick up anything appended to the full segment since we last looked (cheap: a range
        # read of the tail, once per 50,000 blocks), then continue in the next segment.
        read = await self._read_segment(paths.segment_name(ref, cursor.segment), cursor.length)
        cursor.learn(_parse(read.data).messages)
        self._copies.pop(paths.transcript_prefix(ref))  # once per 50,000 blocks: read next time
        _, cursor.created = await self._create_segment(ref, cursor.segment + 1)
        cursor.segment += 1
        cursor.length = cursor.blocks = 0
        cursor.needs_separator = False

    async def _create_segment(
        self, ref: ConversationRef, index: int
    ) -> tuple[bool, datetime | None]:
        """Create segment `index` unless it exists; whether this call created it, and then
        when (its Last-Modified, which a new blob's creation time is; were they to differ, the
        first catch-up would read the transcript whole once, then know)."""
        blob = self._container.get_blob_client(paths.segment_name(ref, index))
        try:
            result = await blob.create_append_blob(
                content_settings=ContentSettings(content_type=NDJSON),
                match_condition=MatchConditions.IfMissing,
            )
        except ResourceExistsError:
            return False, None  # expected: made by `create` or a writer that rolled over first
        created = result.get("last_modified")
        return True, created if isinstance(created, datetime) else None

    # --- reading ------------------------------------------------------------------------------

    async def _load(self, ref: ConversationRef) -> tuple[list[StoredMessage], _Cursor]:
        """All segments, in order: the messages (deduped, file order) and a fresh cursor."""
        # Segment 0 always exists, and a writer starts segment N+1 only once segment N is full:
        # while segment 0 has room (nearly always) there is nothing to list.
        first_name = paths.segment_name(ref, 0)
        first = await self._read_segment(first_name, 0)
        segments = [(0, first_name)]
        reads = [first]
        if first.blocks is None or first.blocks >= self._max_blocks:
            later = [(index, name) for index, name in await self._segments(ref) if index > 0]
            segments += later
            reads += await asyncio.gather(*(self._read_segment(n, 0) for _, n in later))
        last = reads[-1]
        cursor = _Cursor(
            segment=segments[-1][0],
            length=len(last.data),
            blocks=last.blocks or 0,
            needs_separator=bool(last.data) and not last.data.endswith(b"\n"),
            created=last.created,
        )
        messages: list[StoredMessage] = []
        skipped = 0
        for read in reads:
            parsed = _parse(read.data)
            skipped += parsed.skipped_lines
            messages += cursor.learn(parsed.messages)
        if skipped:
            log.warning(
                "skipped unreadable transcript lines",
                extra={"conversation_id": ref.conversation_id, "skipped_lines": skipped},
            )
        return messages, cursor

    async def _load_tail(self, ref: ConversationRef, bound: TailBound) -> _Tail:
        """Read back from the transcript's end until the whole lines read hold the tail `bound`
        asks for (or the transcript's start is reached), and a cursor for appending after it."""
        step = _first_read(bound)
        segment, size, blocks, spans, created = await self._tail_end(ref, step)
        while True:
            in_file_order = _window_messages(spans, ref)
            from_start = spans[0].segment == 0 and spans[0].start == 0
            ordered = sorted(_first_of_each_id(in_file_order), key=lambda m: m.sort_key)
            if from_start or tail_start(ordered, bound) is not None:
                break
            step = min(step * 2, READ_CHUNK_BYTES)
            await self._extend(ref, spans, step)
        cursor = _Cursor(
            segment=segment,
            length=size,
            blocks=blocks,
            tokens=0 if from_start else None,
            needs_separator=size > 0 and not spans[-1].data.endswith(b"\n"),
            ids_from_turn=0 if from_start else min((m.turn for m in ordered), default=0) + 1,
            created=created,
        )
        copy = _Copy(cursor.position, from_start=from_start)
        copy.add(cursor.learn(in_file_order))
        first = spans[0]
        return _Tail(ordered, cursor, from_start, (first.segment, first.start), copy)

    async def _tail_end(
        self, ref: ConversationRef, step: int
    ) -> tuple[int, int, int, list[_Span], datetime | None]:
        """(segment, size, committed blocks) of the transcript's end, its last `step` bytes
        or more, and its blob's creation time. With a cursor known, one range read from a
        little before the cursor to the end tells all of it; without one, a HEAD finds the end
        first."""
        known = self._cursors.get(paths.transcript_prefix(ref))
        if known is not None:
            start = max(0, known.length - step)
            read = await self._read_segment(paths.segment_name(ref, known.segment), start)
            ends = start + len(read.data)
            # Unusable when the segment is full (a later one may exist) or shorter than known.
            if read.blocks is not None and read.blocks < self._max_blocks and ends >= known.length:
                span = _Span(known.segment, start, read.data)
                return known.segment, ends, read.blocks, [span], read.created
        segment, properties = await self._last_segment(ref)
        spans = [_Span(segment, properties.size, b"")]
        await self._extend(ref, spans, step)
        blocks = properties.append_blob_committed_block_count or 0
        return segment, properties.size, blocks, spans, properties.creation_time

    async def _extend(self, ref: ConversationRef, spans: list[_Span], step: int) -> None:
        """Read `step` more bytes before the oldest byte read (from the previous segment once
        the oldest one read is read whole)."""
        first = spans[0]
        if first.start == 0 and first.segment > 0:
            properties = await self._properties(paths.segment_name(ref, first.segment - 1))
            first = _Span(first.segment - 1, properties.size, b"")
            spans.insert(0, first)
        start = max(0, first.start - step)
        name = paths.segment_name(ref, first.segment)
        first.data = await self._read_range(name, start, first.start) + first.data
        first.start = start

    async def _last_segment(self, ref: ConversationRef) -> tuple[int, BlobProperties]:
        """The index and properties of the segment appends go to now."""
        properties = await self._properties(paths.segment_name(ref, 0))
        blocks = properties.append_blob_committed_block_count or 0
        if blocks < self._max_blocks:  # nearly always: segment 0 has room, nothing to list
            return 0, properties
        index, name = (await self._segments(ref))[-1]
        return index, await self._properties(name)

    async def _properties(self, name: str) -> BlobProperties:
        try:
            return await self._container.get_blob_client(name).get_blob_properties()
        except HttpResponseError as exc:
            if exc.status_code == 404:  # a HEAD has no body, so no error code to check
                raise RecordNotFound("conversation not found") from None
            raise

    async def _read_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes start..end (exclusive) of `name`: existing bytes of an append blob never
        change, so ranges read at different times fit together."""
        if end <= start:
            return b""
        try:
            download = await self._container.get_blob_client(name).download_blob(
                offset=start, length=end - start
            )
        except HttpResponseError as exc:
            if _is(exc, 404, StorageErrorCode.BLOB_NOT_FOUND):
                raise RecordNotFound("conversation not found") from None
            raise
        return await download.readall()

    async def _segments(self, ref: ConversationRef) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        async for item in self._container.list_blobs(name_starts_with=paths.transcript_prefix(ref)):
            index = paths.segment_index(ref, item.name)
            if index is not None:
                found.append((index, item.name))
        return sorted(found)

    async def _read_segment(self, name: str, offset: int) -> _SegmentRead:
        """The bytes of `name` from `offset` to its end, in bounded range reads.

        Each chunk is a separate GET without an ETag condition: an append blob only grows and
        never changes its existing bytes, so chunks read while others append still fit together.
        """
        blob = self._container.get_blob_client(name)
        chunks: list[bytes] = []
        position = offset
        blocks: int | None = 0 if offset == 0 else None
        created: datetime | None = None
        while True:
            try:
                download = await blob.download_blob(offset=position, length=READ_CHUNK_BYTES)
            except HttpResponseError as exc:
                if exc.status_code == 416:  # nothing at or after `position` (or an empty blob)
                    break
                if _is(exc, 404, StorageErrorCode.BLOB_NOT_FOUND):
                    raise RecordNotFound("conversation not found") from None
                raise
            chunk = await download.readall()
            chunks.append(chunk)
            position += len(chunk)
            blocks = download.properties.append_blob_committed_block_count
            created = download.properties.creation_time
            if not chunk or position >= _total_size(download.properties.content_range):
                break
        return _SegmentRead(b"".join(chunks), blocks, created)

    # --- cursor cache -------------------------------------------------------------------------

    def _copy_of(self, key: str, cursor: _Cursor) -> _Copy | None:
        copy = self._copies.get(key)
        return copy if copy is not None and copy.end == cursor.position else None

    def _extend_copy(
        self,
        ref: ConversationRef,
        cursor: _Cursor,
        start: tuple[int, int],
        messages: Sequence[StoredMessage],
        torn: bool,
    ) -> None:
        """The messages of the lines from `start` to the cursor's end (file order, first of
        each id) join the copy that ended at `start`; a copy that ended elsewhere, or beside a
        line cut in two (a foreign writer's), is dropped."""
        key = paths.transcript_prefix(ref)
        copy = self._copies.get(key)
        if copy is None:
            return
        if copy.end != start or torn:
            self._copies.pop(key)
            return
        copy.add(messages)
        copy.end = cursor.position

    def _offer_cursor(self, ref: ConversationRef, cursor: _Cursor, copy: _Copy) -> None:
        """Keep a cursor learnt from a read (and its copy), unless a writer holds the
        conversation's lock."""
        key = paths.transcript_prefix(ref)
        if self._locks.held(key):
            return  # the writer keeps its own cursor exact; don't move it under its feet
        known = self._cursors.get(key)
        if known is None or known.outdated_by(cursor):
            self._cursors.put(key, cursor)
            self._copies.put(key, copy)
        elif cursor.position > known.position or not known.knows_all_of(0):
            known.take(cursor)  # further on, or knows what a tail cursor did not
            self._copies.put(key, copy)

    def _offer_tail(self, ref: ConversationRef, tail: _Tail) -> None:
        """Keep what a tail read learnt: a cursor where none is known; where one is, and the
        tail covers every byte after it, the known cursor moves to the end (its ids stay
        complete); else, if the tail is further on, the tail's cursor replaces it."""
        key = paths.transcript_prefix(ref)
        if self._locks.held(key):
            return  # the writer keeps its own cursor exact; don't move it under its feet
        known = self._cursors.get(key)
        if known is None or known.outdated_by(tail.cursor):
            self._cursors.put(key, tail.cursor)
        elif tail.cursor.position <= known.position:
            return
        elif tail.window <= known.position:
            known.learn(m for m in tail.messages if m.id not in known.ids)
            known.segment, known.length = tail.cursor.segment, tail.cursor.length
            known.blocks, known.needs_separator = tail.cursor.blocks, tail.cursor.needs_separator
            known.created = known.created or tail.cursor.created
        else:
            known.take(tail.cursor)
        self._copies.put(key, tail.copy)  # it ends where the kept cursor now does


@dataclass
class _Span:
    """Bytes `start`.. of one segment, read back from its end (up to its size at the time)."""

    segment: int
    start: int
    data: bytes

    def whole_lines(self) -> bytes:
        """The data without its first line when that may be cut (it starts mid-segment)."""
        if self.start == 0:
            return self.data
        cut = self.data.find(b"\n")
        return b"" if cut < 0 else self.data[cut + 1 :]


@dataclass(frozen=True)
class _Tail:
    messages: list[StoredMessage]  # every message of the whole lines read, sorted
    cursor: _Cursor
    from_start: bool  # the read reached the transcript's first byte
    window: tuple[int, int]  # (segment, offset) of the first byte read
    copy: _Copy  # the messages of the lines read, for `recent_tail`


def _continues(cursor: _Cursor, read: _SegmentRead, back: int) -> bool:
    """Whether a catch-up's read (from `back` bytes before the cursor's end) continues the blob
    the cursor knows: bytes beyond its end, the line end it knows there, the same blob."""
    if len(read.data) <= back or (back and read.data[back - 1 : back] != b"\n"):
        return False
    return cursor.is_of(read.created)


def _whole_copy(cursor: _Cursor, messages: Sequence[StoredMessage]) -> _Copy:
    """The copy a whole read gives: every message (first of each id, file order)."""
    copy = _Copy(cursor.position)
    copy.add(messages)
    return copy


def _window_messages(spans: list[_Span], ref: ConversationRef) -> list[StoredMessage]:
    """The messages of the spans' whole lines, in file order (duplicates kept)."""
    messages: list[StoredMessage] = []
    skipped = 0
    for span in spans:
        # Whole lines are cut from bytes, then decoded: a character split across two range
        # reads is joined before it is decoded.
        parsed = _parse(span.whole_lines())
        messages += parsed.messages
        skipped += parsed.skipped_lines
    if skipped:
        log.warning(
            "skipped unreadable transcript lines",
            extra={"conversation_id": ref.conversation_id, "skipped_lines": skipped},
        )
    return messages


def _first_read(bound: TailBound) -> int:
    """How many bytes back from the end the first read of a tail takes: enough for the bound
    in one read, with lines of a usual size."""
    wanted = bound.messages * TAIL_BYTES_PER_MESSAGE + bound.tokens * BYTES_PER_TOKEN
    return min(max(TAIL_CHUNK_BYTES, wanted), READ_CHUNK_BYTES)


def _first_of_each_id(messages: Iterable[StoredMessage]) -> list[StoredMessage]:
    seen: set[str] = set()
    first = []
    for message in messages:
        if message.id not in seen:
            seen.add(message.id)
            first.append(message)
    return first


# --- lines ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    id: str
    turn: int
    data: bytes  # the message as one JSON line
    tokens: int
    message: StoredMessage


@dataclass(frozen=True)
class _Block:
    data: bytes
    ids: tuple[str, ...]
    tokens: int
    messages: tuple[StoredMessage, ...]


def _tokens(message: StoredMessage) -> int:
    total = (message.usage or {}).get("total_tokens")
    return total if isinstance(total, int) else 0


def _encode_unique(messages: Iterable[StoredMessage]) -> list[_Line]:
    """One line per message, first of each id only; refuses lines no block can hold."""
    lines: list[_Line] = []
    seen: set[str] = set()
    for message in messages:
        if message.id in seen:
            continue
        seen.add(message.id)
        line = json.dumps(message.to_dict(), ensure_ascii=False, separators=(",", ":"))
        data = line.encode("utf-8") + b"\n"
        if len(data) + 1 > MAX_BLOCK_BYTES:  # +1: room for a separator before it
            raise RecordTooLarge(
                f"message {message.id} is {len(data)} bytes; a transcript line holds at most "
                f"{MAX_BLOCK_BYTES - 1} (store large tool output with put_tool_output)"
            )
        lines.append(_Line(message.id, message.turn, data, _tokens(message), message))
    return lines


def _first_block(pending: list[_Line], needs_separator: bool) -> _Block:
    """As many pending lines as fit in one Append Block (at least one)."""
    parts = [b"\n"] if needs_separator else []
    size = len(parts)
    taken: list[_Line] = []
    for line in pending:
        if taken and size + len(line.data) > MAX_BLOCK_BYTES:
            break
        parts.append(line.data)
        size += len(line.data)
        taken.append(line)
    return _Block(
        b"".join(parts),
        tuple(t.id for t in taken),
        sum(t.tokens for t in taken),
        tuple(t.message for t in taken),
    )


def _parse(data: bytes) -> _Parsed:
    """Messages in line order; lines that are not a valid message are counted and skipped."""
    messages: list[StoredMessage] = []
    skipped = 0
    for line in _text_lines(data):
        if line is None:
            skipped += 1
            continue
        if not line.strip():
            continue
        try:
            messages.append(StoredMessage.from_dict(_JSON.decode(line)))
        except (ValueError, TypeError, AttributeError):
            skipped += 1  # a torn tail or a foreign line: never expected, never fatal
    return _Parsed(messages, skipped)


def _text_lines(data: bytes) -> list[str | None]:
    """The lines as text (None for a line that is not UTF-8); one decode for the common case."""
    try:
        return list(data.decode("utf-8").split("\n"))
    except UnicodeDecodeError:
        return [_utf8_or_none(raw) for raw in data.split(b"\n")]


def _utf8_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _total_size(content_range: str | None) -> int:
    """The blob's size from a Content-Range such as "bytes 0-99/1234"."""
    if not content_range or "/" not in content_range:
        raise ValueError("the service sent no usable Content-Range for a range read")
    return int(content_range.rsplit("/", 1)[1])


def _is(exc: HttpResponseError, status: int, code: StorageErrorCode) -> bool:
    # getattr: only errors the storage SDK processed carry error_code (not azure-core's own)
    return exc.status_code == status and getattr(exc, "error_code", None) == code
