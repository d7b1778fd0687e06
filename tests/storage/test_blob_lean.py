"""The lean Blob path against the SDK on the same Azurite blobs: results, errors, counts."""

from __future__ import annotations

import gzip
import io
import re
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.storage.blob import BlobProperties, ContentSettings
from azure.storage.blob.aio import ContainerClient

from devkit.azurite import AzuriteInstance
from devkit.ledger import BlobRequestCounter
from storage.blob import container_client, ensure_container
from storage.blob_lean import LeanBlobClient

JSON = ContentSettings(content_type="application/json")
NDJSON = ContentSettings(content_type="application/x-ndjson")
# Per-request values of an answer: never equal between two requests.
_PER_REQUEST = {"client_request_id", "request_id", "date", "last_modified", "etag"}


@pytest.fixture
async def clients(
    azurite: AzuriteInstance,
) -> AsyncIterator[tuple[ContainerClient, ContainerClient]]:
    """(lean, sdk) on one fresh container."""
    name = f"lean-{uuid.uuid4().hex[:12]}"
    lean = container_client(azurite.connection_string, name)
    sdk = container_client(azurite.connection_string, name, lean=False)
    async with lean, sdk:
        await ensure_container(sdk)
        yield lean, sdk


def _shape(result: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    """Each key's type, and its value unless it differs per request."""
    return {k: (type(v), None if k in _PER_REQUEST else v) for k, v in result.items()}


def _seen(properties: BlobProperties) -> tuple[object, ...]:
    return (
        properties.name,
        properties.container,
        properties.etag,
        properties.size,
        properties.content_range,
        properties.append_blob_committed_block_count,
        properties.blob_type,
        properties.last_modified,
        properties.creation_time,
        properties.server_encrypted,
        properties.content_settings.content_type,
        properties.content_settings.content_md5,
        properties.lease.state,
        properties.metadata,
    )


def test_the_container_client_takes_the_lean_path_unless_told_or_hooked(
    azurite: AzuriteInstance,
) -> None:
    setting = azurite.connection_string
    assert container_client(setting, "c").lean  # type: ignore[attr-defined]
    assert container_client(setting, "c", request_policies=[BlobRequestCounter()]).lean  # type: ignore[attr-defined]
    assert not container_client(setting, "c", lean=False).lean  # type: ignore[attr-defined]
    assert not container_client(setting, "c", raw_request_hook=print).lean  # type: ignore[attr-defined]
    other = SansIOHTTPPolicy[Any, Any]()
    assert not container_client(setting, "c", request_policies=[other]).lean  # type: ignore[attr-defined]
    assert isinstance(container_client(setting, "c").get_blob_client("b"), LeanBlobClient)


async def test_a_lean_blob_client_still_does_all_the_sdks_does_building_its_state_on_need(
    clients: tuple[ContainerClient, ContainerClient],
) -> None:
    lean, sdk = clients
    blob = lean.get_blob_client("state.json")
    assert "_client" not in vars(blob)  # the lean calls need none of the SDK's state
    await blob.upload_blob(b"{}")
    assert "_client" not in vars(blob)
    assert blob.url == sdk.get_blob_client("state.json").url  # anything else builds it
    await blob.set_blob_metadata({"kind": "probe"})  # not lean: the SDK's own method
    await blob.upload_blob(io.BytesIO(b"[]"), overwrite=True, metadata={"kind": "stream"})
    assert await blob.exists()
    mine = await blob.get_blob_properties()
    assert _seen(mine) == _seen(await sdk.get_blob_client("state.json").get_blob_properties())
    assert mine.metadata == {"kind": "stream"}


async def test_an_upload_answers_and_stores_as_the_sdks_does(
    clients: tuple[ContainerClient, ContainerClient],
) -> None:
    lean, sdk = clients
    mine = await lean.get_blob_client("a.json").upload_blob(b'{"a":1}', content_settings=JSON)
    theirs = await sdk.get_blob_client("b.json").upload_blob(b'{"a":1}', content_settings=JSON)
    assert _shape(mine) == _shape(theirs)
    for name in ("a.json", "b.json"):
        lean_read = await lean.download_blob(name)
        sdk_read = await sdk.download_blob(name)
        assert await lean_read.readall() == await sdk_read.readall() == b'{"a":1}'
        assert _seen(lean_read.properties) == _seen(sdk_read.properties)
        assert lean_read.properties.etag == (mine if name == "a.json" else theirs)["etag"]


@pytest.mark.parametrize(
    ("offset", "length"), [(None, None), (0, None), (3, None), (0, 4), (2, 100), (9, 1)]
)
async def test_a_download_whole_or_ranged_reads_as_the_sdks_does(
    clients: tuple[ContainerClient, ContainerClient], offset: int | None, length: int | None
) -> None:
    lean, sdk = clients
    await sdk.upload_blob("ten", b"0123456789")
    mine = await lean.get_blob_client("ten").download_blob(offset, length)
    theirs = await sdk.get_blob_client("ten").download_blob(offset, length)
    assert (mine.size, _seen(mine.properties)) == (theirs.size, _seen(theirs.properties))
    assert await mine.readall() == await theirs.readall()
    chunks = [chunk async for chunk in (await lean.download_blob("ten", offset, length)).chunks()]
    assert b"".join(chunks) == await (await sdk.download_blob("ten", offset, length)).readall()


def _deflate(data: bytes) -> bytes:
    """Raw deflate, as azure-core's download inflates it (no zlib header)."""
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(("encoding", "pack"), [("gzip", gzip.compress), ("deflate", _deflate)])
async def test_a_blob_stored_compressed_downloads_decompressed_as_the_sdks_download(
    clients: tuple[ContainerClient, ContainerClient],
    encoding: str,
    pack: Callable[[bytes], bytes],
) -> None:
    lean, sdk = clients
    stored = ContentSettings(content_type="application/json", content_encoding=encoding)
    await sdk.upload_blob("packed.json", pack(b'{"a":1}'), content_settings=stored)
    mine = await lean.get_blob_client("packed.json").download_blob()
    theirs = await sdk.get_blob_client("packed.json").download_blob()
    assert await mine.readall() == await theirs.readall() == b'{"a":1}'
    assert _seen(mine.properties) == _seen(theirs.properties)


async def test_an_empty_blob_downloads_whole_as_the_sdks_does_with_its_second_request(
    clients: tuple[ContainerClient, ContainerClient],
) -> None:
    lean, sdk = clients
    await sdk.upload_blob("empty", b"")
    mine, theirs = await lean.download_blob("empty"), await sdk.download_blob("empty")
    assert await mine.readall() == await theirs.readall() == b""
    assert _seen(mine.properties) == _seen(theirs.properties)


async def test_append_blob_create_append_and_properties_match_the_sdks(
    clients: tuple[ContainerClient, ContainerClient],
) -> None:
    lean, sdk = clients
    results: dict[str, list[dict[str, Any]]] = {}
    for client, name in ((lean, "lean.jsonl"), (sdk, "sdk.jsonl")):
        blob = client.get_blob_client(name)
        created = await blob.create_append_blob(
            content_settings=NDJSON, match_condition=MatchConditions.IfMissing
        )
        first = await blob.append_block(b"one\n", appendpos_condition=0)
        second = await blob.append_block(b"two\n")
        results[name] = [created, first, second]
    assert [_shape(r) for r in results["lean.jsonl"]] == [_shape(r) for r in results["sdk.jsonl"]]
    assert [r["blob_append_offset"] for r in results["lean.jsonl"][1:]] == ["0", "4"]
    for name in ("lean.jsonl", "sdk.jsonl"):
        mine = await lean.get_blob_client(name).get_blob_properties()
        theirs = await sdk.get_blob_client(name).get_blob_properties()
        assert _seen(mine) == _seen(theirs)
        assert (mine.size, mine.append_blob_committed_block_count) == (8, 2)
        assert mine.etag == results[name][-1]["etag"]


async def test_a_conditional_download_reads_a_blob_whose_etag_still_matches(
    clients: tuple[ContainerClient, ContainerClient],
) -> None:
    lean, sdk = clients
    etag = (await sdk.get_blob_client("same").upload_blob(b"x"))["etag"]
    kept = await lean.download_blob(
        "same", etag=etag, match_condition=MatchConditions.IfNotModified
    )
    assert (await kept.readall(), kept.properties.etag) == (b"x", etag)


async def test_a_conditional_delete_removes_the_blob_and_returns_nothing(
    clients: tuple[ContainerClient, ContainerClient],
) -> None:
    lean, sdk = clients
    etag = (await sdk.get_blob_client("gone").upload_blob(b"x"))["etag"]
    assert (
        await lean.delete_blob("gone", etag=etag, match_condition=MatchConditions.IfNotModified)
        is None
    )
    assert [b.name async for b in sdk.list_blobs()] == []


@pytest.mark.parametrize("name", ["with space", "ümlaut/ñ.json", "a+b", "100%", "q?x#y&z=1"])
async def test_names_that_need_encoding_reach_the_same_blob_both_ways(
    clients: tuple[ContainerClient, ContainerClient], name: str
) -> None:
    lean, sdk = clients
    await lean.upload_blob(name, b"lean")
    assert await (await sdk.download_blob(name)).readall() == b"lean"
    await sdk.upload_blob(name, b"sdk", overwrite=True)
    assert await (await lean.download_blob(name)).readall() == b"sdk"
    assert [b.name async for b in sdk.list_blobs()] == [name]


Operation = Callable[[ContainerClient], Awaitable[object]]


def _errors() -> dict[str, Operation]:
    stale = '"0x8D000000000DEAD"'

    async def create_existing(c: ContainerClient) -> object:
        return await c.get_blob_client("log").create_append_blob(if_none_match="*")

    async def read_unchanged(c: ContainerClient) -> object:
        etag = (await c.get_blob_client("there").get_blob_properties()).etag
        return await c.download_blob("there", etag=etag, match_condition=MatchConditions.IfModified)

    return {
        "404 download": lambda c: c.download_blob("missing"),
        "404 head": lambda c: c.get_blob_client("missing").get_blob_properties(),
        "404 delete": lambda c: c.delete_blob("missing"),
        "404 append": lambda c: c.get_blob_client("missing").append_block(b"x"),
        "409 upload create-only": lambda c: c.upload_blob("there", b"again"),
        "409 create append": create_existing,
        "412 upload stale etag": lambda c: c.get_blob_client("there").upload_blob(
            b"x", overwrite=True, etag=stale, match_condition=MatchConditions.IfNotModified
        ),
        "412 delete stale etag": lambda c: c.delete_blob(
            "there", etag=stale, match_condition=MatchConditions.IfNotModified
        ),
        "412 append position": lambda c: c.get_blob_client("log").append_block(
            b"x", appendpos_condition=99
        ),
        "416 range past the end": lambda c: c.get_blob_client("there").download_blob(offset=50),
        "412 download stale etag": lambda c: c.download_blob(
            "there", etag=stale, match_condition=MatchConditions.IfNotModified
        ),
        "304 download not modified": read_unchanged,
    }


def _comparable(error: HttpResponseError) -> tuple[object, ...]:
    text = re.sub(r"(RequestId:|Time:)[^\n<]*", r"\1", str(error))
    return (type(error), error.status_code, error.error_code, type(error.error_code), text)  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", list(_errors()))
async def test_each_error_is_raised_as_the_sdk_raises_it(
    clients: tuple[ContainerClient, ContainerClient], case: str
) -> None:
    lean, sdk = clients
    await sdk.upload_blob("there", b"0123")
    await sdk.get_blob_client("log").create_append_blob()
    raised = []
    for client in (lean, sdk):
        with pytest.raises(HttpResponseError) as caught:
            await _errors()[case](client)
        raised.append(_comparable(caught.value))
    assert raised[0] == raised[1]
    assert raised[0][1] == int(case[:3])


async def test_the_counter_counts_the_lean_path_as_it_counts_the_sdks(
    azurite: AzuriteInstance,
) -> None:
    snapshots = []
    for lean in (True, False):
        counter = BlobRequestCounter()
        name = f"count-{uuid.uuid4().hex[:12]}"
        client = container_client(
            azurite.connection_string, name, request_policies=[counter], lean=lean
        )
        async with client:
            await ensure_container(client)
            await client.upload_blob("a.json", b"0123456789")
            await client.upload_blob("empty", b"")
            await (await client.download_blob("a.json")).readall()
            await (await client.download_blob("empty")).readall()  # 416, then a whole read
            log = client.get_blob_client("log.jsonl")
            await log.create_append_blob()
            await log.append_block(b"abc")
            with pytest.raises(HttpResponseError):
                await log.append_block(b"abc", appendpos_condition=0)
            await log.get_blob_properties()
            await client.delete_blob("a.json")
            with pytest.raises(HttpResponseError):
                await client.download_blob("a.json")
        snapshots.append(counter.snapshot())
    assert snapshots[0] == snapshots[1]
    assert snapshots[0]["blob:failed:get:416"] == 1
    assert snapshots[0]["blob:failed:append:412"] == 1
