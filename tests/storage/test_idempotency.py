"""Idempotency keys of requests, against Azurite."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from azure.storage.blob.aio import ContainerClient

from storage import idempotency
from storage.idempotency import RequestKeys

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)


def new_key() -> str:
    return f"test\n{uuid.uuid4().hex}"


async def test_the_first_request_with_a_key_is_first_and_a_repeat_gets_its_batch(
    container: ContainerClient,
):
    keys, key = RequestKeys(container, WINDOW), new_key()
    first = await keys.claim(key, "body-a", NOW)
    repeat = await keys.claim(key, "body-a", NOW + timedelta(hours=23))
    assert (first.first, first.same_body) == (True, True)
    assert (repeat.first, repeat.same_body, repeat.batch_id) == (False, True, first.batch_id)
    assert first.batch_id.isalnum() and len(first.batch_id) == 32


async def test_a_key_reused_for_another_body_is_reported(container: ContainerClient):
    keys, key = RequestKeys(container, WINDOW), new_key()
    first = await keys.claim(key, "body-a", NOW)
    other = await keys.claim(key, "body-b", NOW)
    assert (other.first, other.same_body, other.batch_id) == (False, False, first.batch_id)


async def test_after_the_window_the_same_key_starts_a_new_batch(container: ContainerClient):
    keys, key = RequestKeys(container, WINDOW), new_key()
    first = await keys.claim(key, "body-a", NOW)
    later = await keys.claim(key, "body-b", NOW + timedelta(hours=24))
    assert (later.first, later.same_body) == (True, True)
    assert later.batch_id != first.batch_id
    again = await keys.claim(key, "body-b", NOW + timedelta(hours=25))
    assert (again.first, again.batch_id) == (False, later.batch_id)


async def test_of_concurrent_requests_with_one_key_exactly_one_is_first(
    container: ContainerClient,
):
    keys, key = RequestKeys(container, WINDOW), new_key()
    claims = await asyncio.gather(*(keys.claim(key, "body", NOW) for _ in range(20)))
    assert sum(claim.first for claim in claims) == 1
    assert len({claim.batch_id for claim in claims}) == 1


async def test_of_concurrent_requests_after_the_window_exactly_one_claims_afresh(
    container: ContainerClient,
):
    keys, key = RequestKeys(container, WINDOW), new_key()
    old = await keys.claim(key, "body", NOW)
    later = NOW + timedelta(days=2)
    claims = await asyncio.gather(*(keys.claim(key, "body", later) for _ in range(20)))
    assert sum(claim.first for claim in claims) == 1
    assert len({claim.batch_id for claim in claims} | {old.batch_id}) == 2


async def test_a_key_record_that_cannot_be_read_is_claimed_afresh(
    container: ContainerClient,
) -> None:
    keys, key = RequestKeys(container, WINDOW), new_key()
    unreadable = {"created_at": 12, "batch_id": "b1"}  # a wrong type: not a record of ours
    await container.upload_blob(idempotency._name(key), json.dumps(unreadable).encode())
    claim = await keys.claim(key, "body-a", NOW)
    assert (claim.first, claim.same_body) == (True, True)
    assert claim.batch_id != "b1"
