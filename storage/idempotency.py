"""Idempotency keys of requests that start work, in Blob: one small record per key.

A request claims its key before it starts anything. The record is created create-only, so of
concurrent requests with one key exactly one is `first`; every one of them gets the same batch
id (recorded with the key), so a repeat can finish what an interrupted first request began
without starting a second run. A key is kept for a window (24 hours by default): after that the
same key claims afresh (ETag-conditional, so again only one request wins) with a new batch id.

The record holds a fingerprint of the request body, never the body: a key reused for another
body is reported (`same_body` False) for the caller's edge to refuse.

Cleanup: a key's record is one blob named by the key, so an expired record is replaced in place
(under its ETag) when its key is next seen; nothing accumulates for keys that recur. A record
whose key is never seen again stays until the storage account's lifecycle rule on
`request-keys/` deletes it (infra/modules/storage.bicep: 2 days after its last write; without
that rule, e.g. on Azurite, such records stay).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.storage.blob.aio import ContainerClient

from storage.json_blobs import JsonBlobs
from wire import Wire, WireError

MAX_CLAIM_ATTEMPTS = 8  # each lost race means another request has just written the key


@dataclass(frozen=True)
class RequestClaim:
    batch_id: str  # the batch every request with this key (in the window) starts
    first: bool  # this request is the first with the key: a repeat is not
    same_body: bool  # the key's first request had this request's body


@dataclass(frozen=True)
class KeyRecord(Wire):
    """What a key's blob holds."""

    created_at: str  # ISO 8601, when the key was claimed for this window
    batch_id: str
    fingerprint: str | None = None


class RequestKeys:
    def __init__(self, container: ContainerClient, window: timedelta) -> None:
        self._json = JsonBlobs(container)
        self._window = window

    async def claim(self, key: str, fingerprint: str, now: datetime) -> RequestClaim:
        """Claim `key` for a request whose body has `fingerprint`, at `now` (timezone-aware)."""
        name = _name(key)
        for attempt in range(MAX_CLAIM_ATTEMPTS):
            record = KeyRecord(now.isoformat(), batch_id_for_request(key, now), fingerprint)
            data, etag = await self._json.download(name)
            held = _readable(data)
            try:
                if data is None:
                    await self._json.upload(name, record.to_dict())  # create-only
                elif held is None or self._expired(held, now):
                    await self._json.upload(
                        name,
                        record.to_dict(),
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                else:
                    return RequestClaim(held.batch_id, False, held.fingerprint == fingerprint)
            except (ResourceExistsError, ResourceModifiedError):
                if attempt == MAX_CLAIM_ATTEMPTS - 1:
                    raise
                continue  # another request wrote the key meanwhile: read what it wrote
            return RequestClaim(record.batch_id, True, True)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _expired(self, held: KeyRecord, now: datetime) -> bool:
        try:
            created = datetime.fromisoformat(held.created_at)
        except ValueError:
            return True  # unreadable: claim it afresh rather than refuse every request
        return now - created >= self._window


def _readable(data: dict[str, Any] | None) -> KeyRecord | None:
    """The key's record; None when there is none, or it cannot be read (claimed afresh)."""
    if data is None:
        return None
    try:
        return KeyRecord.from_dict(data)
    except WireError:
        return None


def batch_id_for_request(key: str, claimed_at: datetime) -> str:
    """A plain, bounded batch id (and Durable instance id): new for each window of a key."""
    digest = hashlib.sha256(f"{key}\n{claimed_at.isoformat()}".encode()).hexdigest()
    return "u" + digest[:31]


def _name(key: str) -> str:
    return f"request-keys/{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"
