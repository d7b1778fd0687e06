"""Batches of scheduled conversations: what each item says and whose conversation it is.

A batch is written once, before its orchestration starts (create-only, so a repeated webhook
delivery finds it there), and holds the items' content so that Durable history carries only the
batch id. Items are addressed by index; their runs have derived ids (`run_id_of`).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobClient, ContainerClient

from storage.json_blobs import JsonBlobs
from storage.models import MessageOrigin
from storage.recent import Recent

RUNNING_BATCHES_CACHED = 8
CLAIM_RECORD_BYTES = 64  # one claim in the work queue (a claim key is lane.number: short)

BatchSource = Literal["callback", "schedule"]
ItemStatus = Literal["pending", "scheduled", "rejected"]


@dataclass(frozen=True)
class BatchItem:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "conversation_id": self.conversation_id,
            "owner": self.owner,
            "content": self.content,
            "scheduled_time": self.scheduled_time,
            "schedule_id": self.schedule_id,
            "status": self.status,
            "error": self.error,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchItem:
        return cls(**data)


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    source: BatchSource
    created_at: str
    owner: str | None  # who scheduled it (POST /api/schedules); None for scheduler callbacks
    items: tuple[BatchItem, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "source": self.source,
            "created_at": self.created_at,
            "owner": self.owner,
            "items": [item.to_dict() for item in self.items],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRecord:
        items = tuple(BatchItem.from_dict(item) for item in data["items"])
        return cls(data["batch_id"], data["source"], data["created_at"], data["owner"], items)

    def visible_to(self, caller: str) -> tuple[BatchItem, ...]:
        """The items a caller may see: all of their own batch, else those in their conversations."""
        if self.owner == caller:
            return self.items
        return tuple(item for item in self.items if item.owner == caller)


def batch_id_for_webhook(webhook_id: str) -> str:
    """A plain, bounded batch id (and Durable instance id) derived from a webhook id."""
    return "b" + hashlib.sha256(webhook_id.encode("utf-8")).hexdigest()[:31]


def run_id_of(batch_id: str, index: int) -> str:
    return f"{batch_id}-{index:04d}"


class BatchStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._json = JsonBlobs(container)
        self._running: Recent[str, BatchRecord] = Recent(RUNNING_BATCHES_CACHED)

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
        do at that moment: one append and one read of the records before it, never a retry.
        A claim repeated with the same key (an at-least-once re-run) finds its earlier record
        and gets the same item; every lane skips such repeats, so no item is lost to them.
        """
        blob = self._container.get_blob_client(_cursor_name(batch_id, indices))
        record = claim_key.encode("utf-8").ljust(CLAIM_RECORD_BYTES)[:CLAIM_RECORD_BYTES]
        offset = await _append(blob, record)
        earlier = await _read(blob, offset) if offset else b""
        keys = [
            earlier[at : at + CLAIM_RECORD_BYTES] for at in range(0, offset, CLAIM_RECORD_BYTES)
        ]
        queue = list(dict.fromkeys(keys))  # first occurrences, in order: repeats take no place
        position = queue.index(record) if record in queue else len(queue)
        return indices[position] if position < len(indices) else None

    async def record_outcome(self, batch_id: str, index: int, status: str, error: str) -> None:
        """How an item that never got a run ended (rejected, or failed to start)."""
        outcome = {"status": status, "error": error[:500]}
        await self._json.upload(_outcome_name(batch_id, index), outcome, overwrite=True)

    async def outcome(self, batch_id: str, index: int) -> dict[str, str] | None:
        data, _ = await self._json.download(_outcome_name(batch_id, index))
        return data

    async def remember_owner_schedule(self, owner: str, conversation_id: str, text: str) -> None:
        """Record that the conversation's owner scheduled this text for it (POST /api/schedules),
        before the Scheduler is asked: its delivery can then be told from the assistant's."""
        name = _owner_schedule_name(conversation_id, text)
        await self._json.upload(name, {"owner": owner}, overwrite=True)

    async def origin_of(self, owner: str, conversation_id: str, text: str) -> MessageOrigin:
        """Who scheduled a delivered text: its owner (recorded above) or else the assistant."""
        data, _ = await self._json.download(_owner_schedule_name(conversation_id, text))
        return (
            "scheduled"
            if data is not None and data.get("owner") == owner
            else ("scheduled_by_assistant")
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
    return int(result["blob_append_offset"])


async def _read(blob: BlobClient, length: int) -> bytes:
    return await (await blob.download_blob(offset=0, length=length)).readall()


def _name(batch_id: str) -> str:
    return f"batches/{batch_id}.json"


def _owner_schedule_name(conversation_id: str, text: str) -> str:
    digest = hashlib.sha256(f"{conversation_id}\n{text}".encode()).hexdigest()[:40]
    return f"owner-schedules/{digest}.json"


def _outcome_name(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/outcomes/{index:04d}.json"


def _cursor_name(batch_id: str, indices: tuple[int, ...]) -> str:
    """One work queue per (batch, set of items): the durable-timer path runs groups apart."""
    group = hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:16]
    return f"batches/{batch_id}/queue-{group}.claims"
