"""The conversation store: metadata, turns, transcripts, tool-call records and tool outputs.

One `ConversationStore` per process, around the process's one `ContainerClient`. Every operation
is scoped by a `ConversationRef` (owner + conversation id); blobs live under the owner's prefix, so
another owner's conversation is simply not found. Expected conditions become `storage.errors`
(`RecordNotFound`, `AlreadyExists`, `TurnInProgress`, ...) with messages that carry ids only,
never content; any other Blob error is raised as is.

Concurrency: metadata changes are ETag-conditional (bounded retry on 412); transcript appends are
position-conditional (see `storage.transcript`); records are create-only. The store remembers the
last metadata it read or wrote (with its ETag), so a turn that begins or ends in the process
that last touched the conversation writes without reading first; a stale copy costs one 412.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
)
from azure.storage.blob import BlobProperties, ContentSettings
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.activity import ActivityIndex, Marker, activity_key, key_time
from storage.aio import all_done
from storage.blob import ensure_container
from storage.errors import (
    AlreadyExists,
    InvalidQuery,
    RecordNotFound,
    StoreContention,
    TurnInProgress,
)
from storage.json_blobs import JsonBlobs, is_blob_not_found
from storage.models import (
    DELETING,
    PREVIEW_CHARS,
    ConversationMeta,
    ConversationOwner,
    ConversationRef,
    StoredMessage,
    ToolCallRecord,
    ToolCallStatus,
    ToolTaskRecord,
    message_id,
)
from storage.recent import Recent
from storage.summaries import SummaryStore
from storage.tail import TailBound
from storage.transcript import (
    MAX_ATTEMPTS,
    MAX_BLOCKS_PER_SEGMENT,
    TranscriptLog,
)

__all__ = [
    "ConversationMeta",
    "ConversationRef",
    "ConversationStore",
    "StoreContention",
    "StoredMessage",
    "TailBound",
    "ToolCallRecord",
]

MAX_LIST_LIMIT = 1000
METAS_CACHED = 1024
DELETE_CONCURRENCY = 16  # blob deletes in flight at once
META_READ_CONCURRENCY = 8  # meta reads in flight at once (retention's pass over every conversation)


# A marker whose conversation has no meta is a create in flight (the marker is put first) for a
# moment; past this age it is left over from a deleted conversation, and the listing removes it.
ORPHAN_GRACE = timedelta(hours=1)
_SPACE = re.compile(r"\s+")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _answered(messages: Sequence[StoredMessage], follows: str) -> bool:
    """`follows` is among the messages, and so is a result of each tool call it made."""
    message = next((m for m in messages if m.id == follows), None)
    if message is None:
        return False
    results = {m.tool_call_id for m in messages if m.role == "tool"}
    return all(call.get("id") in results for call in message.tool_calls or ())


def _confirmed(record: ToolCallRecord, reply: StoredMessage | None) -> ToolCallRecord | None:
    """The record as `reply` asks for its call (confirmed), or None if it does not."""
    for call in (reply.tool_calls or ()) if reply is not None else ():
        function = call.get("function") or {}
        if call.get("id") == record.call_id:
            return replace(
                record,
                tool_name=str(function.get("name", "")),
                arguments=str(function.get("arguments", "")),
                unconfirmed=False,
            )
    return None


def preview_of(text: str | None) -> str | None:
    """`text` on one line, at most PREVIEW_CHARS characters (an ellipsis marks a cut)."""
    if text is None:
        return None
    line = _SPACE.sub(" ", text).strip()
    if len(line) <= PREVIEW_CHARS:
        return line or None
    return line[: PREVIEW_CHARS - 1].rstrip() + "\u2026"


@dataclass(frozen=True)
class ConversationPage:
    """One page of an owner's conversations, most recently active first."""

    conversations: list[ConversationMeta]
    continuation: str | None  # the Blob listing's marker for the next page; None on the last


class ConversationStore:
    def __init__(
        self,
        container: ContainerClient,
        *,
        max_blocks_per_segment: int | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._container = container
        self._clock = clock  # stamps created_at / last_active_at (tests set the time)
        self._json = JsonBlobs(container)
        self._max_attempts = max_attempts
        self._metas: Recent[ConversationRef, ConversationMeta] = Recent(METAS_CACHED)
        self.summaries = SummaryStore(container)  # compaction's records (storage.summaries)
        self._activity = ActivityIndex(container)
        self._transcripts = TranscriptLog(
            container,
            max_blocks_per_segment=max_blocks_per_segment or MAX_BLOCKS_PER_SEGMENT,
            max_attempts=max_attempts,
        )

    async def ensure_container(self) -> None:
        await ensure_container(self._container)

    # --- conversations ------------------------------------------------------------------------

    async def create(self, ref: ConversationRef) -> ConversationMeta:
        """Create the conversation; AlreadyExists if it exists (under any owner)."""
        await self._claim_id(ref)
        # Transcript first (create-if-missing never truncates): a conversation whose meta exists
        # always has a transcript to append to, even if we crash between the two writes.
        await self._transcripts.create(ref)
        now = self._stamp()
        meta = ConversationMeta(
            conversation_id=ref.conversation_id,
            owner=ref.owner,
            created_at=now,
            turn_count=0,
            active_run_id=None,
            last_active_at=now,
        )
        await self._activity.mark(ref.owner, ref.conversation_id, now)  # before the meta
        try:
            result = await self._json.upload(paths.meta_name(ref), meta.to_dict())
        except ResourceExistsError:
            raise AlreadyExists(f"conversation {ref.conversation_id} already exists") from None
        return self._metas.put(ref, meta.with_etag(result["etag"]))

    async def _claim_id(self, ref: ConversationRef) -> None:
        """Conversation ids are unique across owners, so a scheduler callback that names only
        the conversation can find its owner. Create-only; a crashed create of the same owner
        may claim again."""
        name = paths.conversation_index_name(ref.conversation_id)
        try:
            await self._json.upload(name, ConversationOwner(ref.owner).to_dict())
        except ResourceExistsError:
            if await self.owner_of(ref.conversation_id) != ref.owner:
                raise AlreadyExists(f"conversation {ref.conversation_id} already exists") from None

    async def owner_of(self, conversation_id: str) -> str | None:
        """Who owns the conversation, or None if there is no such conversation."""
        data, _ = await self._json.download(paths.conversation_index_name(conversation_id))
        return None if data is None else ConversationOwner.from_dict(data).owner

    async def get_meta(self, ref: ConversationRef) -> ConversationMeta:
        data, etag = await self._json.download(paths.meta_name(ref))
        if data is None:
            self._metas.pop(ref)
            raise RecordNotFound(f"conversation {ref.conversation_id} not found")
        return self._metas.put(ref, ConversationMeta.from_dict(data).with_etag(etag))

    async def list_page(
        self, owner: str, limit: int, continuation: str | None = None
    ) -> ConversationPage:
        """Up to `limit` of the owner's conversations, most recently active first, from where
        `continuation` (a page's) left off. A page may hold fewer than `limit` while more
        follow (markers that no longer match their conversation are skipped, and so are
        conversations being deleted): read on while `continuation` is set. A conversation that
        becomes active while pages are read moves to the front, so that pass may miss it; a new
        listing has it first."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidQuery(f"limit must be 1..{MAX_LIST_LIMIT}")
        page = await self._activity.page(owner, limit, continuation)
        metas = await asyncio.gather(
            *(self._meta_or_none(ConversationRef(owner, m.conversation_id)) for m in page.markers)
        )
        listed: list[ConversationMeta] = []
        stale: list[Marker] = []
        for meta, marker in zip(metas, page.markers, strict=True):
            if meta is not None and activity_key(meta.active_at) == marker.key:
                if meta.active_run_id != DELETING:
                    listed.append(meta)
            elif self._stale(meta, marker):
                stale.append(marker)
        await asyncio.gather(
            *(self._activity.unmark(owner, m.conversation_id, m.key) for m in stale)
        )
        return ConversationPage(listed, page.continuation)

    async def forget(self, owner: str, conversation_id: str) -> None:
        """Take the conversation out of its owner's listing (`delete` calls this before it
        deletes the meta). Idempotent; a conversation without a meta has nothing to forget
        (a leftover marker of it is removed by the listing, see ORPHAN_GRACE)."""
        ref = ConversationRef(owner, conversation_id)
        meta = await self._meta_or_none(ref)
        if meta is not None:
            await self._activity.unmark(owner, conversation_id, activity_key(meta.active_at))

    def _stale(self, meta: ConversationMeta | None, marker: Marker) -> bool:
        """A marker that will never be current: older than its conversation's activity (which
        only moves forward), or left by a conversation that is gone. A newer one may be a
        write in flight (put before the meta), so it stays."""
        if meta is None:
            return key_time(marker.key) < self._clock() - ORPHAN_GRACE
        return marker.key > activity_key(meta.active_at)  # inverted: a larger key is older

    # --- turns --------------------------------------------------------------------------------

    async def begin_turn(
        self, ref: ConversationRef, run_id: str, preview: str | None = None
    ) -> int:
        """Mark `run_id` as the conversation's active run; returns its turn number.

        TurnInProgress if another run is active. Idempotent: the same run gets the same turn back.
        `preview` (the turn's message) becomes the conversation's preview if it has none yet.
        """
        meta = self._metas.get(ref)  # trusted only by a conditional write
        for _ in range(self._max_attempts):
            if meta is None or meta.active_run_id is not None:
                meta = await self.get_meta(ref)
            if meta.active_run_id == run_id:
                return meta.turn_count
            if meta.active_run_id is not None:
                raise TurnInProgress(
                    f"a turn is already running in conversation {ref.conversation_id}"
                )
            started = replace(
                meta,
                turn_count=meta.turn_count + 1,
                active_run_id=run_id,
                last_active_at=self._next_activity(meta),
                preview=meta.preview or preview_of(preview),
            )
            if await self._replace_active_meta(ref, meta, started):
                return started.turn_count
            meta = None
        raise StoreContention(f"could not begin a turn in conversation {ref.conversation_id}")

    async def end_turn(self, ref: ConversationRef, run_id: str) -> bool:
        """Clear the active run if it is `run_id`; otherwise (already ended, or another run)
        no-op. True when this call cleared it. The write is conditional on the meta's ETag, so
        that answer holds even when it is written from the meta this process kept, with no read
        first (as when the process that began the turn ends it)."""
        meta = self._metas.get(ref)  # trusted only by a conditional write
        for _ in range(self._max_attempts):
            if meta is None or meta.active_run_id != run_id:
                meta = await self.get_meta(ref)
            if meta.active_run_id != run_id:
                return False
            ended = replace(meta, active_run_id=None, last_active_at=self._next_activity(meta))
            if await self._replace_active_meta(ref, meta, ended):
                return True
            meta = None
        raise StoreContention(f"could not end the turn in conversation {ref.conversation_id}")

    def _stamp(self) -> str:
        return self._clock().isoformat()

    def _next_activity(self, meta: ConversationMeta) -> str:
        """Now, or just after the meta's last activity if this clock is behind the one that
        wrote it: a conversation's activity only moves forward (the listing's clean-up relies
        on it)."""
        last = datetime.fromisoformat(meta.active_at)
        return max(self._clock(), last + timedelta(microseconds=1)).isoformat()

    async def _replace_active_meta(
        self, ref: ConversationRef, old: ConversationMeta, new: ConversationMeta
    ) -> bool:
        """`_replace_meta` for a change that moves the last activity: the new marker is put
        first (the meta never names a marker that does not exist), the old one deleted after.
        A lost race leaves its new marker to the listing's clean-up: it may be the winner's
        own (same microsecond), so it is not deleted here."""
        await self._activity.mark(ref.owner, ref.conversation_id, new.active_at)
        if not await self._replace_meta(ref, new):
            return False
        await self._activity.unmark(ref.owner, ref.conversation_id, activity_key(old.active_at))
        return True

    async def _replace_meta(self, ref: ConversationRef, meta: ConversationMeta) -> bool:
        """Write `meta` if the blob still has `meta.etag`; False if someone changed it first."""
        try:
            result = await self._json.upload(
                paths.meta_name(ref),
                meta.to_dict(),
                etag=meta.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            self._metas.pop(ref)
            return False
        self._metas.put(ref, meta.with_etag(result["etag"]))
        return True

    # --- transcript ---------------------------------------------------------------------------

    async def append(
        self,
        ref: ConversationRef,
        message: StoredMessage,
        known_ids: Collection[str] | None = None,
    ) -> bool:
        """Append one message; False if a message with its id is already in the transcript.

        `known_ids` (ids the caller just read) short-cuts the check; without it the store knows
        from its own cursor. Either way the write is one conditional Append Block.
        """
        if known_ids is not None and message.id in known_ids:
            return False
        return await self._transcripts.append(ref, [message]) == 1

    async def append_many(self, ref: ConversationRef, messages: Sequence[StoredMessage]) -> int:
        """Append several messages in one block (ids already present are skipped); returns how
        many were written."""
        return await self._transcripts.append(ref, messages)

    async def read_messages(self, ref: ConversationRef) -> list[StoredMessage]:
        """The whole transcript, each id once, sorted by (turn, step, seq)."""
        return await self._transcripts.read(ref)

    async def read_tail(self, ref: ConversationRef, bound: TailBound) -> list[StoredMessage]:
        """The newest messages `bound` asks for, sorted as `read_messages` sorts them and
        exactly its last ones; the Blob bytes read do not grow with the conversation."""
        return await self._transcripts.read_tail(ref, bound)

    async def tokens_used(self, ref: ConversationRef) -> int:
        """Total tokens the conversation's messages used (see `TranscriptLog.tokens_used`: exact
        right after this process appended to it)."""
        return await self._transcripts.tokens_used(ref)

    async def put_tool_call(
        self, ref: ConversationRef, record: ToolCallRecord, *, overwrite: bool = False
    ) -> bool:
        """Store the record if none exists for (run, call) (or replace it, with `overwrite`);
        False if one existed and was kept."""
        name = paths.tool_call_name(ref, record.run_id, record.call_id)
        try:
            await self._json.upload(name, record.to_dict(), overwrite=overwrite)
        except ResourceExistsError:
            return False
        return True

    async def get_tool_call(
        self, ref: ConversationRef, run_id: str, call_id: str
    ) -> ToolCallRecord | None:
        record, _ = await self._tool_call_and_etag(ref, run_id, call_id)
        return record

    async def put_tool_task(self, ref: ConversationRef, record: ToolTaskRecord) -> ToolTaskRecord:
        """Store the call's task record unless one exists; the one stored (a second writer, a
        retry after a crash, gets the first one back: one task per call, ever)."""
        name = paths.tool_task_name(ref, record.run_id, record.call_id)
        try:
            await self._json.upload(name, record.to_dict(), overwrite=False)
        except ResourceExistsError:
            stored = await self.get_tool_task(ref, record.run_id, record.call_id)
            if stored is None:  # deleted in between (the conversation went): nothing to keep
                raise
            return stored
        return record

    async def get_tool_task(
        self, ref: ConversationRef, run_id: str, call_id: str
    ) -> ToolTaskRecord | None:
        data, _ = await self._json.download(paths.tool_task_name(ref, run_id, call_id))
        return None if data is None else ToolTaskRecord.from_dict(data)

    async def list_tool_tasks(self, ref: ConversationRef, run_id: str) -> list[ToolTaskRecord]:
        """Every task record of the run (one listing, then a read per task)."""
        names = [
            blob.name
            async for blob in self._container.list_blobs(
                name_starts_with=paths.tool_task_prefix(ref, run_id)
            )
        ]
        records = []
        for name in names:
            data, _ = await self._json.download(name)
            if data is not None:
                records.append(ToolTaskRecord.from_dict(data))
        return records

    async def mark_tool_call(
        self, ref: ConversationRef, record: ToolCallRecord, status: ToolCallStatus
    ) -> ToolCallRecord:
        """Move a call that has no result yet to "pending" or "started"; returns the new record."""
        if status == "completed":
            raise ValueError("a tool call completes with its result: use record_tool_result")
        marked = replace(record, status=status)
        await self.put_tool_call(ref, marked, overwrite=True)
        return marked

    # --- steps: each one's writes, in the order that keeps a crash between them harmless ---

    async def begin_model_step(
        self,
        ref: ConversationRef,
        run_id: str,
        turn: int,
        failures: Mapping[str, str],
        bound: TailBound | None = None,
        follows: str | None = None,
    ) -> list[StoredMessage]:
        """The transcript a model step reads, once an error result (`failures`: call id ->
        text) is stored for each tool call whose activity failed for good, so the model sees
        them. Calls with no record, or completed after all, are left as they are.

        With a `bound`, only the newest messages it asks for, and always every message of
        `turn` (the step needs its own run's messages: its reply may be there already, and its
        call ids must stay unique in the run): a tail read, flat in the conversation's length.
        Without one, the whole transcript.

        `follows`: the id of the message the step comes after (its turn's opening message, or
        the run's previous reply). When this process's copy of the transcript's newest lines
        holds it and a result for each tool call it made, the copy is the transcript this step
        reads, with no request: during a turn only its run writes to the conversation, one
        activity after another, so nothing of it can lie beyond them but a reply of this very
        step that an earlier attempt stored from another process, which `record_model_reply`
        finds and returns. (And a late line of a cancelled run, which a read may miss too.)
        Any doubt reads: no copy, one that misses either, a step with `failures`."""
        if bound is None:
            stored = await self.read_messages(ref)
        else:
            bound = bound.covering_turn(turn)
            if follows is not None and not failures:
                copy = self._transcripts.recent_tail(ref, bound)
                if copy is not None and _answered(copy, follows):
                    return copy
            stored = await self.read_tail(ref, bound)
        if not failures:  # nearly always: the transcript as read
            return stored
        known = {m.id for m in stored}
        for call_id, text in failures.items():
            record = await self.get_tool_call(ref, run_id, call_id)
            if record is None or record.status == "completed":
                continue
            result = record.result_message(turn, text, is_error=True)
            await self.record_tool_result(ref, record, result, known_ids=known)
            if result.id not in known:
                known.add(result.id)
                stored.append(result)
        return sorted(stored, key=lambda m: m.sort_key)

    async def record_model_reply(
        self, ref: ConversationRef, message: StoredMessage, calls: Sequence[ToolCallRecord]
    ) -> StoredMessage:
        """A model step's reply: its tool-call records first, the message last, so a stored
        assistant message means its calls are recorded. Returns the reply the transcript
        holds: `message`, or the one an earlier attempt of the step stored (found by the
        append; then the records are that reply's).

        Records are created, not replaced, first (in parallel: none depends on another): a
        record already there is an earlier attempt's, which is replaced (`_take_over`) only
        once the transcript shows that attempt's reply was not stored (a re-run asks the model
        again, and no call can run before its message is stored). That attempt may still store
        its reply after the look: so a replaced record is `unconfirmed` until confirmed from
        the reply stored (here, after the append; or by the tool call, should it come first)."""
        created = await all_done(self.put_tool_call(ref, call) for call in calls)
        taken = [call for call, new in zip(calls, created, strict=True) if not new]
        written: dict[str, str] = {}
        if taken:
            outcome = await self._take_over(ref, message, taken)
            if isinstance(outcome, StoredMessage):
                return outcome
            written = outcome
        ours = await self.append(ref, message)
        stored = message if ours else await self._stored(ref, message.id, message.turn) or message
        # The records we wrote over others become the stored reply's calls: ours, or theirs.
        confirmed = [
            replace(c, unconfirmed=False) if ours else _confirmed(c, stored) for c in taken
        ]
        await all_done(
            self._confirm(ref, record, written[call.call_id])
            for call, record in zip(taken, confirmed, strict=True)
        )
        return stored

    async def _take_over(
        self, ref: ConversationRef, message: StoredMessage, calls: Sequence[ToolCallRecord]
    ) -> StoredMessage | dict[str, str]:
        """Earlier records of `calls` (same ids): the earlier attempt's reply when the
        transcript holds it; else each record replaced by this attempt's, unconfirmed, and only
        if unchanged since it was read before the look (one that moved on was run, so its reply
        is stored: the next round finds it). Returns the ETags written, by call id."""
        for _ in range(self._max_attempts):
            found = await asyncio.gather(
                *(self._tool_call_and_etag(ref, c.run_id, c.call_id) for c in calls)
            )
            stored = await self._stored(ref, message.id, message.turn)
            if stored is not None:
                return stored
            etags = await asyncio.gather(
                *(
                    self._replace_tool_call(ref, replace(call, unconfirmed=True), etag)
                    for call, (_, etag) in zip(calls, found, strict=True)
                )
            )
            if all(etags):
                return {c.call_id: e for c, e in zip(calls, etags, strict=True) if e is not None}
        raise StoreContention(
            f"could not record a model reply in conversation {ref.conversation_id}"
        )

    async def confirm_tool_call(
        self, ref: ConversationRef, record: ToolCallRecord, turn: int
    ) -> ToolCallRecord | None:
        """An `unconfirmed` record made the call the stored reply of its step holds (whichever
        attempt's reply that is), marked confirmed; None when that reply holds no such call.
        `turn`: the run's (its reply is read back to it)."""
        for _ in range(self._max_attempts):
            current, etag = await self._tool_call_and_etag(ref, record.run_id, record.call_id)
            if current is None or not current.unconfirmed:
                return current
            reply = await self._stored(ref, message_id(current.run_id, current.step, 0), turn)
            confirmed = _confirmed(current, reply)
            if confirmed is None or await self._replace_tool_call(ref, confirmed, etag):
                return confirmed
        raise StoreContention(f"could not confirm tool call {record.call_id}")

    async def _confirm(
        self, ref: ConversationRef, confirmed: ToolCallRecord | None, etag: str
    ) -> None:
        """Write a call's confirmed record over the one we wrote (`etag`), unless that changed
        since (a tool call confirmed it first) or the reply stored has no such call (None)."""
        if confirmed is not None:
            await self._replace_tool_call(ref, confirmed, etag)

    async def _tool_call_and_etag(
        self, ref: ConversationRef, run_id: str, call_id: str
    ) -> tuple[ToolCallRecord | None, str | None]:
        data, etag = await self._json.download(paths.tool_call_name(ref, run_id, call_id))
        return (None if data is None else ToolCallRecord.from_dict(data)), etag

    async def _replace_tool_call(
        self, ref: ConversationRef, record: ToolCallRecord, etag: str | None
    ) -> str | None:
        """Write the record if the blob still has `etag` (None: if there is none); its new
        ETag, or None when it changed first."""
        name = paths.tool_call_name(ref, record.run_id, record.call_id)
        condition = MatchConditions.IfNotModified if etag else MatchConditions.IfMissing
        try:
            result = await self._json.upload(
                name, record.to_dict(), etag=etag, match_condition=condition
            )
        except (ResourceModifiedError, ResourceExistsError):
            return None
        return str(result["etag"])

    async def _stored(self, ref: ConversationRef, id: str, turn: int) -> StoredMessage | None:
        """The message `id` of `turn` in the transcript, if any (read back to that turn)."""
        for stored in await self.read_tail(ref, TailBound(from_turn=turn)):
            if stored.id == id:
                return stored
        return None

    async def record_tool_result(
        self,
        ref: ConversationRef,
        record: ToolCallRecord,
        result: StoredMessage,
        known_ids: Collection[str] | None = None,
    ) -> None:
        """A tool call's result: its record completed with the result inside first (from then
        on the tool is never called again), then the transcript line. Idempotent; a record
        already completed with this result (a crash came before the line) gets the line only."""
        if record.status != "completed" or record.result != result:
            await self.put_tool_call(ref, record.completed(result), overwrite=True)
        await self.append(ref, result, known_ids)

    # --- tool outputs -------------------------------------------------------------------------

    async def put_tool_output(
        self,
        ref: ConversationRef,
        run_id: str,
        call_id: str,
        payload: bytes | str,
        content_type: str,
    ) -> str:
        """Store a tool's full output; returns its blob name (the message's `output_ref`)."""
        name = paths.tool_output_name(ref, run_id, call_id)
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        await self._container.upload_blob(
            name,
            data,
            overwrite=True,  # the same call's output: a re-run may rewrite it
            content_settings=ContentSettings(content_type=content_type),
        )
        return name

    async def get_tool_output(self, ref: ConversationRef, output_ref: str) -> bytes:
        """The stored output named by `output_ref`, which must belong to this conversation."""
        name = paths.checked_tool_output_name(ref, output_ref)
        try:
            download = await self._container.download_blob(name)
        except HttpResponseError as exc:
            if is_blob_not_found(exc):
                raise RecordNotFound("tool output not found") from None
            raise
        return await download.readall()

    # --- blobs --------------------------------------------------------------------------------

    async def _meta_or_none(self, ref: ConversationRef) -> ConversationMeta | None:
        try:
            return await self.get_meta(ref)
        except RecordNotFound:
            return None  # a create that crashed before its meta: not a conversation yet

    # --- deletion and retention ---------------------------------------------------------------

    async def lock_for_deletion(self, ref: ConversationRef) -> ConversationMeta | None:
        """Take the conversation's turn lock for its deletion (DELETING), so no turn begins
        while its blobs go. None when it has no meta (never existed, another owner's, or a
        deletion that got past it). TurnInProgress while a run holds the lock (the caller
        decides whether that run is over); a deletion that was interrupted takes it again."""
        for _ in range(self._max_attempts):
            try:
                meta = await self.get_meta(ref)
            except RecordNotFound:
                return None
            if meta.active_run_id == DELETING:
                return meta
            if meta.active_run_id is not None:
                raise TurnInProgress(
                    f"a turn is running in conversation {ref.conversation_id} "
                    f"(run {meta.active_run_id}); wait for it to finish or cancel it"
                )
            locked = replace(meta, active_run_id=DELETING)
            if await self._replace_meta(ref, locked):
                return locked
        raise StoreContention(f"could not lock conversation {ref.conversation_id} for deletion")

    async def run_ids(self, ref: ConversationRef) -> set[str]:
        """Every run that took a turn in the conversation: each turn's first message, stored
        before its run starts, names it."""
        try:
            messages = await self.read_messages(ref)
        except RecordNotFound:
            return set()
        return {m.run_id for m in messages if m.run_id}

    async def delete(self, ref: ConversationRef) -> bool:
        """Delete every blob of the conversation: all under its prefix (transcript segments,
        tool-call records and outputs, run events, and any later per-conversation record),
        its meta last (so an interrupted deletion is still found and finished by the next),
        then its id's claim when that names this owner. True if anything was there.

        The caller holds the deletion lock (`lock_for_deletion`): no turn writes meanwhile."""
        meta_name = paths.meta_name(ref)
        names = [
            blob.name
            async for blob in self._container.list_blobs(
                name_starts_with=paths.conversation_prefix(ref)
            )
            if blob.name != meta_name
        ]
        deleted = await self._delete_blobs(names)
        await self.forget(
            ref.owner, ref.conversation_id
        )  # its listing marker, while the meta says which
        deleted = await self._delete_blob(meta_name) or deleted
        self._metas.pop(ref)
        self._transcripts.forget(ref)  # a conversation created again under its id starts empty
        if await self.owner_of(ref.conversation_id) == ref.owner:
            deleted = (
                await self._delete_blob(paths.conversation_index_name(ref.conversation_id))
                or deleted
            )
        return deleted

    async def idle_conversations(self, before: datetime) -> list[ConversationRef]:
        """Every conversation (of any owner) whose last activity is before `before`: its
        meta's `last_active_at`, or for a meta written before that field, the meta blob's
        Last-Modified (every turn rewrites it). In listing order; the metas of a listing page
        are read META_READ_CONCURRENCY at a time (one by one, a pass over many conversations
        would wait one round trip each)."""
        limit = asyncio.Semaphore(META_READ_CONCURRENCY)

        async def idle(blob: BlobProperties) -> ConversationRef | None:
            async with limit:
                return await self._idle_since(blob, before)

        found: list[ConversationRef] = []
        listing = self._container.list_blobs(name_starts_with=paths.OWNERS_PREFIX)
        async for page in listing.by_page():
            metas = [blob async for blob in page if blob.name.endswith(paths.META_SUFFIX)]
            refs = await asyncio.gather(*(idle(blob) for blob in metas))
            found.extend(ref for ref in refs if ref is not None)
        return found

    async def _idle_since(self, blob: BlobProperties, before: datetime) -> ConversationRef | None:
        """The conversation of the listed meta `blob`, if it has been idle since `before`."""
        data, _ = await self._json.download(blob.name)
        if data is None:
            return None  # deleted since it was listed
        meta = ConversationMeta.from_dict(data)
        ref = ConversationRef(meta.owner, meta.conversation_id)
        if paths.meta_name(ref) != blob.name:
            return None  # not written by this store
        last = (
            datetime.fromisoformat(meta.last_active_at)
            if meta.last_active_at
            else blob.last_modified
        )
        return ref if last < before else None

    async def _delete_blobs(self, names: Sequence[str]) -> bool:
        limit = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def delete(name: str) -> bool:
            async with limit:
                return await self._delete_blob(name)

        return any(await asyncio.gather(*(delete(name) for name in names)))

    async def _delete_blob(self, name: str) -> bool:
        """Delete one blob; False if it was not there (someone else deleted it first)."""
        try:
            await self._container.delete_blob(name)
        except HttpResponseError as exc:
            if is_blob_not_found(exc):
                return False
            raise
        return True
