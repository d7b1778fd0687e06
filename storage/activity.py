"""Which conversations of an owner were active most recently: one empty marker blob per
conversation, named so that Blob's lexical listing is newest first.

    owners/{owner_key}/activity/{inverted microseconds, 16 digits}-{conversation_id}

Why markers, not one index blob per owner: a listing page reads only that page (one List Blobs
request of `limit` names, whatever the owner has: 10 or 100,000 conversations), and a turn's
update touches its own conversation's blobs only, so the turns of one owner (a scheduled batch
runs many at once) never contend with each other. An index blob would be rewritten whole on
every turn (its size grows with the owner's conversations) and every turn of the owner would race
on its one ETag.

A marker only says "this conversation was active at t". The conversation's meta is the truth
(its `last_active_at`, ETag-conditional like every meta change); a listing keeps a marker only
when it matches the meta (`ConversationStore.list_page`). The write order keeps the listing
exact: the new marker is put before the meta names it and the old one deleted after, so a crash
leaves at most an extra marker, which the listing skips (and removes once a newer activity is
recorded), never a conversation without one.

Cost per activity update: one Put Blob (empty) and one Delete Blob, beside the meta write.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from azure.core.async_paging import AsyncPageIterator
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.errors import InvalidQuery
from storage.models import PLAIN_ID

_INVERT_FROM = 10**16  # microseconds since 1970: 16 digits last until the year 2286
_DIGITS = 16
_MARKER = re.compile(rf"(\d{{{_DIGITS}}})-(.+)")
MAX_MARKER_CHARS = 1024  # a Blob continuation marker is far shorter; anything longer is not one


def activity_key(timestamp: str) -> str:
    """The sortable part of a marker for an ISO 8601 UTC time: later times sort first."""
    moment = datetime.fromisoformat(timestamp)
    micros = round(moment.timestamp() * 1_000_000)
    return f"{_INVERT_FROM - micros:0{_DIGITS}d}"


def key_time(key: str) -> datetime:
    """The time an `activity_key` records (UTC)."""
    return datetime.fromtimestamp((_INVERT_FROM - int(key)) / 1_000_000, UTC)


def marker_name(owner: str, conversation_id: str, timestamp: str) -> str:
    return f"{paths.activity_prefix(owner)}{activity_key(timestamp)}-{conversation_id}"


@dataclass(frozen=True)
class Marker:
    conversation_id: str
    key: str  # activity_key of the time it records


@dataclass(frozen=True)
class MarkerPage:
    markers: list[Marker]
    continuation: str | None  # Blob's own marker for the next page; None on the last


class ActivityIndex:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    async def mark(self, owner: str, conversation_id: str, timestamp: str) -> None:
        """Record activity at `timestamp` (idempotent: rewriting an empty blob)."""
        name = marker_name(owner, conversation_id, timestamp)
        await self._container.upload_blob(name, b"", overwrite=True)

    async def unmark(self, owner: str, conversation_id: str, key: str) -> None:
        """Remove the marker of `key` (an `activity_key`); nothing to do when it is gone."""
        name = f"{paths.activity_prefix(owner)}{key}-{conversation_id}"
        # Gone before (a retry, or the listing's clean-up): the goal is reached.
        with contextlib.suppress(ResourceNotFoundError):
            await self._container.delete_blob(name)

    async def page(self, owner: str, limit: int, continuation: str | None) -> MarkerPage:
        """Up to `limit` markers, newest first, from where `continuation` left off."""
        if continuation is not None and len(continuation) > MAX_MARKER_CHARS:
            raise InvalidQuery("the continuation token is invalid; list again without it")
        prefix = paths.activity_prefix(owner)
        listing = self._container.list_blobs(name_starts_with=prefix, results_per_page=limit)
        # by_page() is typed as a plain iterator; it is a page iterator with a continuation.
        pages = cast(
            AsyncPageIterator[BlobProperties], listing.by_page(continuation_token=continuation)
        )
        try:
            page = await pages.__anext__()
            names = [item.name async for item in page]
        except StopAsyncIteration:
            return MarkerPage([], None)
        except HttpResponseError as exc:
            if exc.status_code == 400:  # the service refused the marker we passed on
                raise InvalidQuery(
                    "the continuation token is invalid; list again without it"
                ) from None
            raise
        markers = [m for m in (_parse(name[len(prefix) :]) for name in names) if m is not None]
        return MarkerPage(markers, pages.continuation_token or None)


def _parse(relative_name: str) -> Marker | None:
    match = _MARKER.fullmatch(relative_name)
    if match is None or not PLAIN_ID.fullmatch(match.group(2)):
        return None  # not written by this index
    return Marker(match.group(2), match.group(1))
