"""Batches of scheduled conversations: what each item says and whose conversation it is.

A batch is written once, before its orchestration starts (create-only, so a repeated webhook
delivery finds it there), and holds the items' content so that Durable history carries only the
batch id. Items are addressed by index; their runs have derived ids (`run_id_of`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import BlobClient, ContainerClient

from storage.json_blobs import JsonBlobs
from storage.models import MessageOrigin
from storage.recent import Recent
from wire import Wire, unknown_keys

RUNNING_BATCHES_CACHED = 8
QUEUES_KNOWN = 32  # work queues whose records this process remembers (64 bytes per item)
CLAIM_RECORD_BYTES = 64  # one claim in the work queue (a claim key is lane.number: short)
# An owner's scheduling not delivered within this long after its due time is void (a Scheduler
# retries a failing callback for hours, not days); its record is deleted on the next write.
OWNER_SCHEDULE_GRACE = timedelta(days=2)
MAX_RECORD_WRITES = 8  # ETag-conditional attempts on one owner-schedule record
TIME_TOLERANCE = 1.0  # seconds between an owner's due time and a delivery's (a Scheduler rounds)

BatchSource = Literal["callback", "schedule"]
ItemStatus = Literal["pending", "scheduled", "rejected"]


@dataclass(frozen=True)
class BatchItem(Wire):
    index: int
    conversation_id: str
    owner: str | None  # None: no such conversation (the item is rejected)
    content: str = field(repr=False)
    scheduled_time: str | None = None
    schedule_id: str | None = None
    status: ItemStatus = "pending"
    error: str | None = None
    # Who wrote the text. Unless traced to the conversation's owner, a Scheduler delivery is
    # the assistant's (older records without the field included).
    origin: MessageOrigin = "scheduled_by_assistant"
    unknown: Mapping[str, Any] = unknown_keys()  # kept when the batch is replaced


@dataclass(frozen=True)
class ItemRef(Wire):
    """One item of one batch."""

    batch_id: str
    index: int


@dataclass(frozen=True)
class BatchRecord(Wire):
    batch_id: str
    source: BatchSource
    created_at: str
    owner: str | None  # who scheduled it (POST /api/schedules); None for scheduler callbacks
    items: tuple[BatchItem, ...]
    unknown: Mapping[str, Any] = unknown_keys()  # kept when the batch is replaced

    def visible_to(self, caller: str) -> tuple[BatchItem, ...]:
        """The items a caller may see: all of their own batch, else those in their conversations."""
        if self.owner == caller:
            return self.items
        return tuple(item for item in self.items if item.owner == caller)


@dataclass(frozen=True)
class ItemOutcome(Wire):
    """How an item that never got a run of its own ended (rejected, or failed to start)."""

    status: str
    error: str


@dataclass(frozen=True)
class ScheduleEntry(Wire):
    """One scheduling of a text by its conversation's owner, until a delivery uses it up."""

    due: str | None  # ISO 8601; None: any time (records from before due times)
    expires_at: str
    claimed_by: str | None = None  # the delivery's item that claimed it
    home: ItemRef | None = None  # the batch item that asked for it (POST /api/schedules)
    unknown: Mapping[str, Any] = unknown_keys()


@dataclass(frozen=True)
class OwnerSchedules(Wire):
    """The schedulings of one text in one conversation by its owner."""

    owner: str | None
    entries: tuple[ScheduleEntry, ...] | None = None  # None: one entry, from before entries
    unknown: Mapping[str, Any] = unknown_keys()


Entries = list[ScheduleEntry]


def batch_id_for_webhook(webhook_id: str) -> str:
    """A plain, bounded batch id (and Durable instance id) derived from a webhook id."""
    return "b" + hashlib.sha256(webhook_id.encode("utf-8")).hexdigest()[:31]


def run_id_of(batch_id: str, index: int) -> str:
    return f"{batch_id}-{index:04d}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BatchStore:
    def __init__(
        self, container: ContainerClient, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._container = container
        self._clock = clock  # owner-schedule due times and expiry (tests move it)
        self._json = JsonBlobs(container)
        self._running: Recent[str, BatchRecord] = Recent(RUNNING_BATCHES_CACHED)
        # The claim records this process appended or read, by queue and offset (see `claim`).
        self._queues: Recent[str, dict[int, bytes]] = Recent(QUEUES_KNOWN)

    async def create(self, batch: BatchRecord) -> bool:
        """Store a new batch; False (nothing written) if one with that id exists."""
        try:
            await self._json.upload(_name(batch.batch_id), batch.to_dict())
        except ResourceExistsError:
            return False
        return True

    async def get(self, batch_id: str) -> BatchRecord | None:
        data, _ = await self._json.download(_name(batch_id))
        return None if data is None else BatchRecord.from_dict(data)

    async def get_running(self, batch_id: str) -> BatchRecord | None:
        """The batch as its orchestration's items see it, read once per process.

        A batch whose orchestration runs is never rewritten (`replace` serves batches handed
        to the Scheduler, whose callbacks start new batches), so a copy stays true; without it
        every item would download and parse the whole batch again.
        """
        record = self._running.get(batch_id)
        if record is None:
            record = await self.get(batch_id)
            if record is not None:
                self._running.put(batch_id, record)
        return record

    async def claim(self, batch_id: str, indices: tuple[int, ...], claim_key: str) -> int | None:
        """The next unclaimed item of `indices` (None when all are taken): the work queue of a
        batch's lanes.

        The queue is an append blob of fixed-size claim records. An append is atomic, so the
        offset where a lane's record lands is its place in the queue whatever the other lanes
        do at that moment: one append and at most one read of the records before it, never a retry.
        A claim repeated with the same key (an at-least-once re-run) finds its earlier record
        and gets the same item; every lane skips such repeats, so no item is lost to them.
        The read is skipped when this process already knows the records before its own.
        """
        name = _cursor_name(batch_id, indices)
        blob = self._container.get_blob_client(name)
        record = claim_key.encode("utf-8").ljust(CLAIM_RECORD_BYTES)[:CLAIM_RECORD_BYTES]
        offset = await _append(blob, record)
        known = self._queues.get(name) or self._queues.put(name, {})
        known[offset] = record
        # Records never change once appended: when this process saw every record before its
        # own (it appended them, or read them before), it needs no read to learn its place.
        # One append is then the whole claim; a record another process (or a claim still in
        # flight here) put in between is read, once.
        earlier = _known_prefix(known, offset)
        if earlier is None:
            earlier = await _read(blob, offset)
            for at in range(0, offset, CLAIM_RECORD_BYTES):
                known[at] = earlier[at : at + CLAIM_RECORD_BYTES]
        keys = [
            earlier[at : at + CLAIM_RECORD_BYTES] for at in range(0, offset, CLAIM_RECORD_BYTES)
        ]
        queue = list(dict.fromkeys(keys))  # first occurrences, in order: repeats take no place
        position = queue.index(record) if record in queue else len(queue)
        return indices[position] if position < len(indices) else None

    async def record_outcome(self, batch_id: str, index: int, status: str, error: str) -> None:
        """How an item that never got a run ended (rejected, or failed to start)."""
        outcome = ItemOutcome(status, error[:500])
        await self._json.upload(_outcome_name(batch_id, index), outcome.to_dict(), overwrite=True)

    async def outcome(self, batch_id: str, index: int) -> ItemOutcome | None:
        data, _ = await self._json.download(_outcome_name(batch_id, index))
        return None if data is None else ItemOutcome.from_dict(data)

    async def remember_owner_schedule(
        self,
        owner: str,
        conversation_id: str,
        text: str,
        scheduled_time: str | None,
        home: ItemRef | None = None,
    ) -> None:
        """Record that the conversation's owner scheduled this text for it (POST /api/schedules),
        before the Scheduler is asked: its delivery can then be told from the assistant's, and
        linked to the batch item that asked for it (`home`), whichever batch it runs under.

        One entry per scheduling (the same text may be due twice), each used up by the one
        delivery it is matched to, and void OWNER_SCHEDULE_GRACE after its due time if none is.
        """
        entry = ScheduleEntry(scheduled_time, _expiry(scheduled_time, self._clock()), home=home)
        await self._update_owner_schedule(
            conversation_id, text, lambda entries: [*entries, entry], owner=owner, take_over=True
        )

    async def claim_owner_schedule(
        self, owner: str, conversation_id: str, text: str, due: str | None, claimant: str
    ) -> MessageOrigin:
        """Who scheduled a delivered text: its owner, if an entry recorded above is free (or
        already this delivery's: `claimant` names the delivery's item, the same on a repeat) and
        due at the delivery's time (a delivery with no time, as the unsigned route's: due by
        now); else the assistant. The entry is marked, not yet deleted:
        `consume_owner_schedule` does that once the delivery has stored its origin."""
        claimed = False

        def claim(entries: Entries) -> Entries:
            nonlocal claimed
            entry = _claimable(entries, due, claimant, self._clock())
            claimed = entry is not None
            if entry is not None and entry.claimed_by != claimant:
                mine = replace(entry, claimed_by=claimant)
                entries = [mine if e is entry else e for e in entries]
            return entries

        await self._update_owner_schedule(conversation_id, text, claim, owner=owner)
        return "scheduled" if claimed else "scheduled_by_assistant"

    async def consume_owner_schedule(
        self, conversation_id: str, text: str, claimant: str, delivered: ItemRef | None = None
    ) -> None:
        """Delete the entry `claimant` claimed (idempotent: none left is fine). First, with the
        item that `delivered` it, link the entry's home to it: before the delete, so that a
        repeat after an interruption still finds the entry to link."""
        if delivered is not None:
            record, _ = await self._owner_schedules(_owner_schedule_name(conversation_id, text))
            for entry in (record.entries if record else None) or ():
                if entry.claimed_by == claimant and entry.home is not None:
                    await self.link_delivery(entry.home, delivered)
        await self._update_owner_schedule(
            conversation_id,
            text,
            lambda entries: [e for e in entries if e.claimed_by != claimant],
        )

    async def link_delivery(self, home: ItemRef, delivered: ItemRef) -> bool:
        """Record that the item `delivered` (of a callback's batch) runs the scheduled item
        `home`, so `home`'s batch shows that run; False when another delivery has it (the first
        wins: create-only; a repeat of the same delivery finds its own link and gets True)."""
        try:
            await self._json.upload(_delivery_name(home), delivered.to_dict())
        except ResourceExistsError:
            return await self.delivery(home) == delivered
        return True

    async def delivery(self, home: ItemRef) -> ItemRef | None:
        """The callback batch item that ran a scheduled item, once the Scheduler called back."""
        data, _ = await self._json.download(_delivery_name(home))
        return None if data is None else ItemRef.from_dict(data)

    async def _update_owner_schedule(
        self,
        conversation_id: str,
        text: str,
        change: Callable[[Entries], Entries],
        owner: str | None = None,
        take_over: bool = False,
    ) -> None:
        """Read, change and write back a record's live entries (expired ones dropped, the blob
        deleted when none is left; no write when nothing changed), ETag-conditional so that
        concurrent deliveries and schedulings lose no entry and claim none twice. `owner` given:
        another owner's record is left alone, or replaced when `take_over`."""
        name = _owner_schedule_name(conversation_id, text)
        for attempt in range(MAX_RECORD_WRITES):
            record, etag = await self._owner_schedules(name)
            if record is not None and owner not in (None, record.owner):
                if not take_over:
                    return
                record = None  # replaced (under its ETag)
            entries = change(_live_entries(record, self._clock()))
            if tuple(entries) == ((record.entries if record else None) or ()):
                return
            if record is None:
                record = OwnerSchedules(owner)
            try:
                changed = replace(record, owner=owner or record.owner, entries=tuple(entries))
                await self._write_owner_schedule(name, changed, etag)
                return
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                if attempt == MAX_RECORD_WRITES - 1:
                    raise

    async def _owner_schedules(self, name: str) -> tuple[OwnerSchedules | None, str | None]:
        data, etag = await self._json.download(name)
        return (None if data is None else OwnerSchedules.from_dict(data)), etag

    async def _write_owner_schedule(
        self, name: str, record: OwnerSchedules, etag: str | None
    ) -> None:
        if not record.entries:
            await self._container.delete_blob(
                name, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        elif etag is None:
            await self._json.upload(name, record.to_dict())
        else:
            await self._json.upload(
                name, record.to_dict(), etag=etag, match_condition=MatchConditions.IfNotModified
            )

    async def replace(self, batch: BatchRecord) -> None:
        """Rewrite a batch (its items' schedule ids, once the Scheduler answered)."""
        await self._json.upload(_name(batch.batch_id), batch.to_dict(), overwrite=True)
        self._running.pop(batch.batch_id)  # never serve this process an outdated copy


async def _append(blob: BlobClient, record: bytes) -> int:
    """Append `record`, creating the blob on first use; the offset where it landed."""
    try:
        result = await blob.append_block(record)
    except ResourceNotFoundError:
        with contextlib.suppress(ResourceExistsError):
            await blob.create_append_blob(if_none_match="*")
        result = await blob.append_block(record)
    # the SDK types response values str | datetime | int; this one is the offset header's text
    return int(str(result["blob_append_offset"]))


def _known_prefix(known: Mapping[int, bytes], length: int) -> bytes | None:
    """The queue's first `length` bytes, if every record in them is known; else None."""
    try:
        return b"".join(known[at] for at in range(0, length, CLAIM_RECORD_BYTES))
    except KeyError:
        return None


async def _read(blob: BlobClient, length: int) -> bytes:
    return await (await blob.download_blob(offset=0, length=length)).readall()


def _name(batch_id: str) -> str:
    return f"batches/{batch_id}.json"


def _owner_schedule_name(conversation_id: str, text: str) -> str:
    digest = hashlib.sha256(f"{conversation_id}\n{text}".encode()).hexdigest()[:40]
    return f"owner-schedules/{digest}.json"


def _live_entries(record: OwnerSchedules | None, now: datetime) -> Entries:
    """A record's entries not yet void. A record from before entries existed is one entry with
    no due time, void OWNER_SCHEDULE_GRACE from now on."""
    if record is None:
        return []
    if record.entries is None:
        return [ScheduleEntry(None, _expiry(None, now))]
    return [e for e in record.entries if (_instant(e.expires_at) or now) > now]


def _claimable(
    entries: Entries, due: str | None, claimant: str, now: datetime
) -> ScheduleEntry | None:
    """The entry a delivery uses: the one it claimed before (a repeat), else the first free one
    due at its time (within TIME_TOLERANCE; an entry with no time matches any). A delivery with
    no time (the unsigned route) takes the earliest free entry already due by `now`: one due
    later is another scheduling, which its own delivery must find."""
    for entry in entries:
        if entry.claimed_by == claimant:
            return entry
    free = [entry for entry in entries if entry.claimed_by is None]
    at = _instant(due)
    if at is None:
        return _earliest_due(free, now)
    for entry in free:
        when = _instant(entry.due)
        if when is None or abs((when - at).total_seconds()) <= TIME_TOLERANCE:
            return entry
    return None


def _earliest_due(entries: Entries, now: datetime) -> ScheduleEntry | None:
    """The entry due earliest among those due by `now` (within TIME_TOLERANCE); an entry with
    no time (a record from before due times) counts as due, before any timed one."""
    cutoff = now + timedelta(seconds=TIME_TOLERANCE)
    due = [(_instant(entry.due), entry) for entry in entries]
    ready = [(when, entry) for when, entry in due if when is None or when <= cutoff]
    if not ready:
        return None
    return min(ready, key=lambda pair: pair[0] or datetime.min.replace(tzinfo=UTC))[1]


def _expiry(due: str | None, now: datetime) -> str:
    return ((_instant(due) or now) + OWNER_SCHEDULE_GRACE).isoformat()


def _instant(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _delivery_name(home: ItemRef) -> str:
    return f"batches/{home.batch_id}/deliveries/{home.index:04d}.json"


def _outcome_name(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/outcomes/{index:04d}.json"


def _cursor_name(batch_id: str, indices: tuple[int, ...]) -> str:
    """One work queue per (batch, set of items): the durable-timer path runs groups apart."""
    group = hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:16]
    return f"batches/{batch_id}/queue-{group}.claims"
