"""A run's event log: what a run did, in order, as JSON lines in one append blob beside its
transcript (`.../runs/{run}/events.jsonl`).

Why this shape (the transcript's technique, `storage.transcript`, for a smaller record)
- Append blobs: an event (or a batch of them) is one Append Block, so the cost of a write does
  not grow with the run, and a block is atomic: readers see all of a batch or none of it.
- Exactly once without a lock: every event carries a `key` its writer derives from what it
  records (`step_started/2`, `text/2/0/140`, `tool_call_started/call_x`). A writer appends at the
  position it believes is the end (`appendpos_condition`); a 412 means another writer got there
  first, so it reads only the bytes it missed, learns their keys, drops its events already there
  and tries again. A retried or replayed activity therefore finds its keys and writes nothing.
- Dense sequence numbers: an event's `seq` is its ordinal among the log's unique keys (1, 2, …),
  the first line of each key winning. Writers stamp it (they know the count at the position they
  append at), and readers number lines the same way, so both always agree.
- Few requests: this process's writer keeps a cursor per run (its length and keys), so it reads
  only when it has none or an append tells it another writer got there first; an append that
  lands proves the cursor was at the end, so "the log so far" after one needs no read
  (`append_and_read`). A writer that knows it starts the log (`new_log`: a run's first step)
  creates it without probing first: one create and one append, instead of a failed read, a
  failed append, a create and an append.
- Readers follow the log with range reads from the byte offset they reached (`EventReader`):
  polling a log that has not grown is one small GET answered 416.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import ContentSettings, StorageErrorCode
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.errors import EventLogFull, RecordNotFound, RecordTooLarge, StoreContention
from storage.models import ConversationRef, utc_timestamp
from storage.recent import KeyedLocks, Recent

NDJSON = "application/x-ndjson"
MAX_BLOCK_BYTES = 4 * 1024 * 1024  # Append Block limit on every service version
MAX_ATTEMPTS = 32
CURSORS_CACHED = 256
_JSON = json.JSONDecoder()


@dataclass(frozen=True)
class NewEvent:
    """An event to record: `key` makes it idempotent (one line per key, whoever writes it)."""

    key: str
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunEvent:
    """An event as recorded: `seq` is its dense sequence number (from 1)."""

    seq: int
    key: str
    type: str
    at: str
    data: Mapping[str, Any]

    def wire(self) -> dict[str, Any]:
        """The client's view: one JSON object with at least `type` and `seq`."""
        return {**self.data, "type": self.type, "seq": self.seq, "at": self.at}


@dataclass
class _Cursor:
    """What this process knows about the end of one run's log."""

    length: int = 0  # bytes
    keys: set[str] = field(default_factory=set)
    events: list[RunEvent] = field(default_factory=list)  # in seq order
    torn_tail: bool = False  # the blob ends mid-line (never written by us)
    missing: bool = False  # the blob is known not to exist: create it before appending
    syncs: int = 0  # times the cursor was proven at the blob's end (a read, a landed append)

    def restart(self) -> None:
        """Know nothing of the log (to read it from its start)."""
        self.length, self.keys, self.events = 0, set(), []
        self.torn_tail = self.missing = False

    def learn(self, lines: Iterable[dict[str, Any]]) -> list[RunEvent]:
        fresh = []
        for line in lines:
            key = line["key"]
            if key in self.keys:
                continue
            self.keys.add(key)
            event = RunEvent(
                len(self.events) + 1, key, line["type"], line.get("at", ""), line["data"]
            )
            self.events.append(event)
            fresh.append(event)
        return fresh


class RunEventLog:
    """Appends to and reads run event logs; one instance per process (it caches cursors)."""

    def __init__(
        self,
        container: ContainerClient,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        cursors_cached: int = CURSORS_CACHED,
    ) -> None:
        self._container = container
        self._max_attempts = max_attempts
        self._cursors: Recent[str, _Cursor] = Recent(cursors_cached)
        # One writer per run per process: in-process racers would only 412 each other.
        self._locks = KeyedLocks()
        self.appends = 0  # Append Block requests sent (the benchmark counts them)

    # --- writing --------------------------------------------------------------------------------

    async def append(
        self,
        ref: ConversationRef,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        new_log: bool = False,
        create: bool = True,
    ) -> list[RunEvent]:
        """Record the events whose keys are not in the log yet; returns those it wrote.
        `new_log`: the caller expects the log not to exist yet (a hint: it is still correct,
        at the cost of one failed create, when it does). `create=False`: a log that is not
        there is not created, and nothing is written (a writer that may come after its
        conversation was deleted must not leave a log behind it)."""
        name = paths.run_events_name(ref, run_id)
        async with self._locks(name):
            cursor = await self._writer_cursor(name, new_log)
            return await self._append(name, cursor, _unique(events), create)

    async def create(self, ref: ConversationRef, run_id: str) -> None:
        """Create the run's log, empty, unless it exists: with its turn's opening message,
        before the run starts, so its steps append to a log that is there (one that is not
        then means its conversation is gone: `append_and_read(must_exist=True)`)."""
        name = paths.run_events_name(ref, run_id)
        async with self._locks(name):
            cursor = _Cursor()
            # A retry finds it there: what it holds is read when it is next written.
            if await self._create(name, cursor):
                self._cursors.put(name, cursor)  # made just now: empty, the cursor is exact

    async def append_and_read(
        self,
        ref: ConversationRef,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        new_log: bool = False,
        must_exist: bool = False,
    ) -> list[RunEvent]:
        """Record the events (as `append`), then return every event in the log: what a writer
        resuming a step needs to know. Reads only when nothing in this call proved the
        cursor at the end of the log (all the events were there already, as on a retry).
        `must_exist`: RecordNotFound when the log is not there (nothing is written)."""
        name = paths.run_events_name(ref, run_id)
        async with self._locks(name):
            known = self._cursors.get(name)
            syncs = known.syncs if known is not None else 0
            cursor = await self._writer_cursor(name, new_log)
            await self._append(name, cursor, _unique(events), create=not must_exist)
            if cursor.missing:
                raise RecordNotFound("the run's event log is not there")
            if cursor.syncs == syncs:
                await self._catch_up(name, cursor)
            return list(cursor.events)

    async def recorded(self, ref: ConversationRef, run_id: str) -> list[RunEvent]:
        """Every event so far, as this process's writer sees the log (one read when it has
        no cursor yet): what a writer resuming a step needs to know."""
        name = paths.run_events_name(ref, run_id)
        async with self._locks(name):
            cursor = self._cursors.get(name)
            if cursor is None:
                return list((await self._writer_cursor(name)).events)  # read just now
            await self._catch_up(name, cursor)
            return list(cursor.events)

    async def _writer_cursor(self, name: str, new_log: bool = False) -> _Cursor:
        cursor = self._cursors.get(name)
        if cursor is None:
            cursor = _Cursor(missing=new_log)
            if not new_log:
                await self._catch_up(name, cursor)
            self._cursors.put(name, cursor)
        return cursor

    async def _append(
        self, name: str, cursor: _Cursor, events: list[NewEvent], create: bool
    ) -> list[RunEvent]:
        written: list[RunEvent] = []
        for _ in range(self._max_attempts):
            pending = [event for event in events if event.key not in cursor.keys]
            if not pending or (cursor.missing and not create):
                return written
            if cursor.missing:
                await self._create(name, cursor)
            lines = _encode(pending, len(cursor.events) + 1, cursor.torn_tail)
            if await self._try_append(name, cursor, lines, create):
                written += cursor.learn(json.loads(line) for line in lines.splitlines() if line)
                cursor.length += len(lines)
                cursor.torn_tail = False
                cursor.syncs += 1
        raise StoreContention(
            f"could not append to a run's event log: {self._max_attempts} conflicts in a row"
        )

    async def _try_append(self, name: str, cursor: _Cursor, data: bytes, create: bool) -> bool:
        """One conditional Append Block; False (after catching up, or creating the log) when
        it did not land."""
        blob = self._container.get_blob_client(name)
        self.appends += 1
        try:
            await blob.append_block(data, appendpos_condition=cursor.length)
        except HttpResponseError as exc:
            if _is(exc, 404, StorageErrorCode.BLOB_NOT_FOUND):
                cursor.restart()  # a log that is not there holds nothing
                cursor.missing = True  # with `create`, made now; else the append stops here
                if create:
                    await self._create(name, cursor)
                return False
            if _is(exc, 412, StorageErrorCode.APPEND_POSITION_CONDITION_NOT_MET):
                await self._after_conflict(name, cursor)
                return False
            if _is(exc, 409, StorageErrorCode.BLOCK_COUNT_EXCEEDS_LIMIT):
                raise EventLogFull("a run's event log is full (50,000 appends)") from None
            raise
        return True

    async def _after_conflict(self, name: str, cursor: _Cursor) -> None:
        """Catch up after a 412. The log only grows, so one with nothing past our position is
        shorter than the cursor knows: not the log it knew (deleted, and made again). Read that
        one from its start, or every append would meet the same 412."""
        length = cursor.length
        await self._catch_up(name, cursor)
        if cursor.length == length and not cursor.missing:
            cursor.restart()
            await self._catch_up(name, cursor)

    async def _create(self, name: str, cursor: _Cursor) -> bool:
        """Create the blob unless it exists; whether this made it. (An append blob's create
        takes no content, so a new log costs a create and an append.)"""
        blob = self._container.get_blob_client(name)
        cursor.missing = False
        try:
            await blob.create_append_blob(
                content_settings=ContentSettings(content_type=NDJSON),
                match_condition=MatchConditions.IfMissing,
            )
        except ResourceExistsError:
            return False  # another writer created it first: the append's position condition tells
        return True

    async def _catch_up(self, name: str, cursor: _Cursor) -> None:
        """Read what other writers appended after our cursor."""
        data = await _read_from(self._container, name, cursor.length)
        cursor.syncs += 1
        if data is None:
            cursor.restart()  # a log that is not there holds nothing
            cursor.missing = True  # the first append creates it (no failed append first)
            return
        cursor.learn(_parse(data, cursor.torn_tail))
        cursor.length += len(data)
        cursor.torn_tail = bool(data) and not data.endswith(b"\n")

    # --- reading --------------------------------------------------------------------------------

    def reader(self, ref: ConversationRef, run_id: str) -> EventReader:
        """A follower of one run's log, from its start."""
        return EventReader(self._container, paths.run_events_name(ref, run_id))

    async def read(self, ref: ConversationRef, run_id: str) -> list[RunEvent]:
        """Every event recorded so far (none when the run has recorded nothing yet)."""
        return await self.reader(ref, run_id).poll()


class EventReader:
    """Follows one log: each `poll()` returns the events recorded since the previous one."""

    def __init__(self, container: ContainerClient, name: str) -> None:
        self._container = container
        self._name = name
        self._cursor = _Cursor()
        self._partial = b""  # a line whose end has not been written yet

    async def poll(self) -> list[RunEvent]:
        data = await _read_from(self._container, self._name, self._cursor.length)
        if not data:
            return []
        self._cursor.length += len(data)
        complete, _, self._partial = (self._partial + data).rpartition(b"\n")
        return self._cursor.learn(_parse(complete, False)) if complete else []


# --- lines ----------------------------------------------------------------------------------------


def _unique(events: Iterable[NewEvent]) -> list[NewEvent]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.key not in seen:
            seen.add(event.key)
            unique.append(event)
    return unique


def _encode(events: list[NewEvent], first_seq: int, torn_tail: bool) -> bytes:
    """The events as JSON lines (one block), stamped with the seq they get if this lands."""
    at = utc_timestamp()
    lines = [b"\n"] if torn_tail else []
    for seq, event in enumerate(events, first_seq):
        line = {"key": event.key, "seq": seq, "type": event.type, "at": at, "data": event.data}
        lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    block = b"".join(lines)
    if len(block) > MAX_BLOCK_BYTES:
        raise RecordTooLarge(f"events of {len(block)} bytes do not fit one append block")
    return block


def _parse(data: bytes, skip_first: bool) -> list[dict[str, Any]]:
    """Valid event lines in order; a torn or foreign line is skipped (never fatal)."""
    lines = data.split(b"\n")
    if skip_first:
        lines = lines[1:]  # the rest of a line a foreign writer left unfinished
    parsed = []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            line = _JSON.decode(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if (
            isinstance(line, dict)
            and isinstance(line.get("key"), str)
            and isinstance(line.get("type"), str)
            and isinstance(line.get("data"), dict)
        ):
            parsed.append(line)
    return parsed


async def _read_from(container: ContainerClient, name: str, offset: int) -> bytes | None:
    """The bytes of `name` from `offset` to its end; None when the blob does not exist."""
    blob = container.get_blob_client(name)
    try:
        download = await blob.download_blob(offset=offset)
    except HttpResponseError as exc:
        if exc.status_code == 416:  # nothing at or after `offset` (or an empty blob)
            return b""
        if _is(exc, 404, StorageErrorCode.BLOB_NOT_FOUND):
            return None
        raise
    return bytes(await download.readall())


def _is(exc: HttpResponseError, status: int, code: StorageErrorCode) -> bool:
    # error_code: set by the storage SDK on its errors (not declared on azure-core's class)
    return exc.status_code == status and getattr(exc, "error_code", None) == code
