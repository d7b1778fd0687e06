"""The counting policy on the Blob client: each request by kind, and the bytes each way."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

import pytest
from azure.core.exceptions import ResourceNotFoundError

from devkit.azurite import AzuriteInstance
from devkit.ledger import BlobRequestCounter, format_table, request_kind
from storage.blob import container_client, ensure_container


@pytest.mark.parametrize(
    ("method", "url", "kind"),
    [
        ("GET", "http://a/c/b.json", "get"),
        ("PUT", "http://a/c/b.json", "put"),
        ("PUT", "http://a/c/b.jsonl?comp=appendblock", "append"),
        ("GET", "http://a/c?restype=container&comp=list&prefix=x", "list"),
        ("DELETE", "http://a/c/b.json", "delete"),
        ("HEAD", "http://a/c/b.json", "head"),
        ("PUT", "http://a/c/b.json?comp=lease", "put:lease"),
        ("PUT", "http://a/c?restype=container", "put:container"),
    ],
)
def test_a_request_is_named_by_its_method_and_comp(method: str, url: str, kind: str) -> None:
    assert request_kind(method, url) == kind


async def test_the_counter_on_a_client_counts_each_request_by_kind(
    azurite: AzuriteInstance,
) -> None:
    counter = BlobRequestCounter()
    name = f"count-{uuid.uuid4().hex[:12]}"
    async with container_client(
        azurite.connection_string, name, request_policies=[counter]
    ) as client:
        await ensure_container(client)
        await client.upload_blob("a.json", b"0123456789")
        await (await client.download_blob("a.json")).readall()
        append = client.get_blob_client("log.jsonl")
        await append.create_append_blob()
        await append.append_block(b"abc")
        await client.get_blob_client("a.json").get_blob_properties()
        [blob async for blob in client.list_blobs()]
        await client.delete_blob("a.json")
        with pytest.raises(ResourceNotFoundError):
            await client.delete_blob("a.json")
    counts = counter.snapshot()
    print("\n" + format_table({"requests": counts}))
    assert {key: n for key, n in counts.items() if "bytes" not in key} == {
        "blob_requests": 9,
        "blob:put:container": 1,
        "blob:put": 2,  # the JSON blob, and the append blob created empty
        "blob:get": 1,
        "blob:append": 1,
        "blob:head": 1,
        "blob:list": 1,
        "blob:delete": 2,
        "blob:failed:delete:404": 1,
    }
    assert counts["blob_bytes_written"] == 10 + 3


async def test_the_counter_counts_the_bytes_read_of_downloads_and_listings_not_heads(
    azurite: AzuriteInstance,
) -> None:
    counter = BlobRequestCounter()
    name = f"count-{uuid.uuid4().hex[:12]}"
    async with container_client(
        azurite.connection_string, name, request_policies=[counter]
    ) as client:
        await ensure_container(client)
        await client.upload_blob("a.json", b"0123456789")

        async def read_by(operation: Awaitable[object]) -> int:
            before = counter.snapshot()["blob_bytes_read"]
            await operation
            return counter.snapshot()["blob_bytes_read"] - before

        async def download() -> bytes:
            return await (await client.download_blob("a.json")).readall()

        async def listing() -> list[str]:
            return [blob.name async for blob in client.list_blobs()]

        assert await read_by(download()) == 10  # a stream: counted from Content-Length
        assert await read_by(client.get_blob_client("a.json").get_blob_properties()) == 0
        assert await read_by(listing()) > 100  # a chunked XML answer, already read
