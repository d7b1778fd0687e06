"""Conversation summaries: what compaction wrote, kept beside the transcript (never in it).

A summary covers a range of the transcript, from its start (or where the previous summary
ended) to the last message it summarised; the transcript itself stays whole, and the API still
returns every message. Each range has one record, written create-only under a name derived from
the range, so a compaction retried after a crash finds its record instead of summarising again.
`summary.json` holds a copy of the newest one: a model step reads that one small blob.
It only moves forward (a conditional write that never replaces a summary reaching further),
so a late retry of an older compaction cannot take a newer summary's place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.errors import RecordNotFound, StoreContention
from storage.json_blobs import JsonBlobs
from storage.models import ConversationRef
from wire import Wire, unknown_keys

MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class ConversationSummary(Wire):
    text: str
    first_message_id: str  # the oldest message summarised in this round
    last_message_id: str  # the newest: later steps send only what comes after it
    last_turn: int
    last_step: int
    last_seq: int
    tokens: int  # the summary's own size (the model's count of what it wrote)
    covered_tokens: int  # estimated size of the messages it summarised in this round
    created_at: str
    previous: str | None = None  # the range of the summary this one extends, if any
    made_for: str | None = None  # the model step that asked for it ("{run_id}/{step}")
    unknown: Mapping[str, Any] = unknown_keys()

    @property
    def last_key(self) -> tuple[int, int, int]:
        return (self.last_turn, self.last_step, self.last_seq)

    @property
    def range(self) -> str:
        return f"{self.first_message_id}..{self.last_message_id}"


class SummaryStore:
    def __init__(self, container: ContainerClient) -> None:
        self._json = JsonBlobs(container)

    async def latest(self, ref: ConversationRef) -> ConversationSummary | None:
        data, _ = await self._json.download(paths.summary_name(ref))
        return None if data is None else ConversationSummary.from_dict(data)

    async def find(
        self, ref: ConversationRef, first_id: str, last_id: str
    ) -> ConversationSummary | None:
        """The summary of exactly this range, if one was written."""
        data, _ = await self._json.download(paths.summary_record_name(ref, first_id, last_id))
        return None if data is None else ConversationSummary.from_dict(data)

    async def put(self, ref: ConversationRef, summary: ConversationSummary) -> ConversationSummary:
        """Store the summary of its range (the one already there wins: same range, same
        summary) and make it the newest unless one reaching further is; returns the stored."""
        name = paths.summary_record_name(ref, summary.first_message_id, summary.last_message_id)
        try:
            await self._json.upload(name, summary.to_dict())
        except ResourceExistsError:
            found = await self.find(ref, summary.first_message_id, summary.last_message_id)
            if found is None:  # deleted in between: the conversation is going away
                raise RecordNotFound(
                    f"conversation {ref.conversation_id} lost its summary record"
                ) from None
            summary = found
        await self._advance(ref, summary)
        return summary

    async def _advance(self, ref: ConversationRef, summary: ConversationSummary) -> None:
        name = paths.summary_name(ref)
        for _ in range(MAX_ATTEMPTS):
            data, etag = await self._json.download(name)
            current = None if data is None else ConversationSummary.from_dict(data)
            if current is not None and current.last_key >= summary.last_key:
                return
            try:
                if etag is None:
                    await self._json.upload(name, summary.to_dict())
                else:
                    await self._json.upload(
                        name,
                        summary.to_dict(),
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another writer moved it: look again
        raise StoreContention(f"could not store the summary of conversation {ref.conversation_id}")
