"""The lean path's signing, SAS, bearer tokens and retries (loopback servers and Azurite)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ServiceRequestError
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import AioHttpTransport, HttpRequest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

from devkit.azurite import ACCOUNT_KEY, ACCOUNT_NAME, AzuriteInstance
from devkit.ledger import BlobRequestCounter
from storage.blob import container_client, ensure_container
from storage.blob_rest import BearerToken, BlobRest, NoSigning, SharedKey

STORAGE_SCOPE = "https://storage.azure.com/.default"
NO_WAIT = {"initial_backoff": 0, "increment_base": 0, "random_jitter_range": 0}


@dataclass
class Loopback:
    """A stand-in Blob endpoint: answers each request with the next scripted status (201
    once the script runs out) and records what it received."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.append((request.method, request.raw_path, dict(request.headers)))
        status = self.statuses.pop(0) if self.statuses else 201
        headers = {"ETag": f'"0x{len(self.received)}"', "Content-Length": "0"}
        if status == 409:
            headers["x-ms-error-code"] = "BlobAlreadyExists"
        return web.Response(status=status, headers=headers)


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    server = Loopback()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def _sdk_signature(method: str, url: str, headers: dict[str, str]) -> str:
    """What the SDK's SharedKeyCredentialPolicy writes for this request (aiohttp transport)."""
    request = HttpRequest(method, url, headers=dict(headers))
    pipeline_request = PipelineRequest(request, PipelineContext(AioHttpTransport()))
    SharedKeyCredentialPolicy(ACCOUNT_NAME, ACCOUNT_KEY).on_request(pipeline_request)
    return str(request.headers["Authorization"])


COMMON = {
    "x-ms-version": "2026-10-06",
    "x-ms-date": "Wed, 02 Dec 2026 06:00:00 GMT",
    "x-ms-client-request-id": "0b4e7f2a-ee15-11f1-807a-02fc00000001",
    "Accept": "application/xml",
}


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:10000/devstoreaccount1/c", "https://acct.blob.core.windows.net/c"]
)
@pytest.mark.parametrize(
    ("method", "name", "query", "headers"),
    [
        ("GET", "a.json", (), {"x-ms-range": "bytes=0-33554431"}),
        ("HEAD", "seg 0.jsonl", (), {}),
        ("DELETE", "ümlaut+plus.json", (), {"If-Match": '"0x8D1"'}),
        (
            "PUT",
            "a b.json",
            (),
            {
                "If-None-Match": "*",
                "x-ms-blob-type": "BlockBlob",
                "Content-Length": "12",
                "Content-Type": "application/octet-stream",
                "x-ms-blob-content-type": "application/json",
            },
        ),
        ("PUT", "log.jsonl", (), {"x-ms-blob-type": "AppendBlob", "Content-Length": "0"}),
        (
            "PUT",
            "log.jsonl",
            (("comp", "appendblock"),),
            {"Content-Length": "5", "x-ms-blob-condition-appendpos": "40"},
        ),
    ],
)
def test_the_shared_key_signature_equals_the_sdks_for_the_same_request(
    base: str, method: str, name: str, query: tuple[tuple[str, str], ...], headers: dict[str, str]
) -> None:
    rest = BlobRest(base, signer=NoSigning(), api_version="2026-10-06")
    url = rest.url(name, query)
    sent = {**headers, **COMMON}
    mine = SharedKey(ACCOUNT_NAME, ACCOUNT_KEY).authorization(
        method, urlsplit(url).path, query, sent
    )
    assert mine == _sdk_signature(method, url, sent)


async def test_what_goes_on_the_wire_carries_the_signature_the_sdk_computes_for_it(
    loopback: Loopback,
) -> None:
    base = f"{loopback.url}/{ACCOUNT_NAME}/c"
    rest = BlobRest(base, signer=SharedKey(ACCOUNT_NAME, ACCOUNT_KEY), api_version="2026-10-06")
    try:
        await rest.send("PUT", "a b+ü.json", {"Content-Length": "2"}, b"{}")
        await rest.send("PUT", "log", {"Content-Length": "1"}, b"x", (("comp", "appendblock"),))
        await rest.send("GET", "a b+ü.json", {"x-ms-range": "bytes=0-9"})
    finally:
        await rest.close()
    for method, raw_path, headers in loopback.received:
        signed = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        assert headers["Authorization"] == _sdk_signature(method, loopback.url + raw_path, signed)
        assert headers["x-ms-version"] == "2026-10-06"


async def test_a_sas_connection_string_sends_its_token_in_every_url_and_azurite_accepts_it(
    azurite: AzuriteInstance,
) -> None:
    name = f"sas-{uuid.uuid4().hex[:12]}"
    async with container_client(azurite.connection_string, name, lean=False) as owner:
        await ensure_container(owner)
    sas = generate_container_sas(
        ACCOUNT_NAME,
        name,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(
            read=True, write=True, create=True, add=True, delete=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    setting = f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={sas}"
    counter = BlobRequestCounter(trace=True)
    async with container_client(setting, name, request_policies=[counter]) as client:
        assert client.lean  # type: ignore[attr-defined]
        assert "sig=" in client._rest.url("x")  # type: ignore[attr-defined]
        await client.upload_blob("a.json", b"{}")
        log = client.get_blob_client("log")
        await log.create_append_blob()
        await log.append_block(b"one\n", appendpos_condition=0)
        assert await (await client.download_blob("a.json")).readall() == b"{}"
        await client.delete_blob("a.json")
    assert counter.snapshot()["blob_requests"] == 5
    assert not any("failed" in key for key in counter.snapshot())


class Credential:
    """An async credential that counts its tokens; each lives `lifetime` seconds."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(time.time()) + self.lifetime)

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("lifetime", "tokens"), [(3600, ["token-1"] * 3), (120, ["token-1", "token-2", "token-3"])]
)
async def test_a_bearer_token_is_kept_until_shortly_before_it_expires(
    loopback: Loopback, lifetime: int, tokens: list[str]
) -> None:
    credential = Credential(lifetime)
    signer = BearerToken(credential, [STORAGE_SCOPE], allow_http=True)  # type: ignore[arg-type]
    rest = BlobRest(f"{loopback.url}/c", signer=signer, api_version="2026-10-06")
    try:
        for _ in range(3):
            await rest.send("HEAD", "a.json", {})
    finally:
        await rest.close()
    assert [h["Authorization"] for _, _, h in loopback.received] == [f"Bearer {t}" for t in tokens]
    assert set(credential.scopes) == {(STORAGE_SCOPE,)}


def test_an_account_url_signs_with_a_token_for_storage_from_its_credential() -> None:
    client = container_client("https://acct.blob.core.windows.net", "c", Credential(3600))  # type: ignore[arg-type]
    assert client.lean  # type: ignore[attr-defined]
    signer = client._rest._signer  # type: ignore[attr-defined]
    assert isinstance(signer, BearerToken)
    assert signer._scopes == (STORAGE_SCOPE,)


async def test_a_bearer_token_is_never_sent_over_plain_http(loopback: Loopback) -> None:
    credential = Credential(3600)
    signer = BearerToken(credential, [STORAGE_SCOPE])  # type: ignore[arg-type]
    rest = BlobRest(f"{loopback.url}/c", signer=signer, api_version="2026-10-06")
    with pytest.raises(ServiceRequestError, match="non-https"):
        await rest.send("HEAD", "a.json", {})
    await rest.close()
    assert (loopback.received, credential.scopes) == ([], [])


async def _loopback_client(loopback: Loopback, lean: bool, **options: Any) -> Any:
    setting = (
        f"BlobEndpoint={loopback.url}/{ACCOUNT_NAME};SharedAccessSignature=sv=2025-01-05&sig=x"
    )
    return container_client(setting, "c", lean=lean, **NO_WAIT, **options)


@pytest.mark.parametrize("lean", [True, False])
async def test_a_503_is_retried_and_the_answer_after_it_is_the_result(
    loopback: Loopback, lean: bool
) -> None:
    loopback.statuses = [503, 500]
    async with await _loopback_client(loopback, lean) as client:
        result = await client.get_blob_client("a.json").upload_blob(b"{}", overwrite=True)
    assert result["etag"] == '"0x3"'
    assert [method for method, _, _ in loopback.received] == ["PUT"] * 3


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize("status", [409, 412, 400, 501])
async def test_a_client_error_or_501_is_never_retried(
    loopback: Loopback, lean: bool, status: int
) -> None:
    loopback.statuses = [status]
    async with await _loopback_client(loopback, lean) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.get_blob_client("a.json").upload_blob(b"{}", overwrite=True)
    assert caught.value.status_code == status
    assert isinstance(caught.value, ResourceExistsError) is (status == 409)
    assert len(loopback.received) == 1


@pytest.mark.parametrize("lean", [True, False])
async def test_retries_stop_after_retry_total_with_the_last_answers_error(
    loopback: Loopback, lean: bool
) -> None:
    loopback.statuses = [503] * 10
    async with await _loopback_client(loopback, lean, retry_total=2) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.download_blob("a.json")
    assert caught.value.status_code == 503
    assert len(loopback.received) == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("lean", [True, False])
async def test_a_refused_connection_is_retried_as_the_sdk_retries_it_then_raised(
    lean: bool,
) -> None:
    counter = BlobRequestCounter()
    setting = (
        f"BlobEndpoint=http://127.0.0.1:{_closed_port()}/{ACCOUNT_NAME};SharedAccessSignature=sig=x"
    )
    client = container_client(
        setting, "c", lean=lean, request_policies=[counter], retry_total=2, **NO_WAIT
    )
    async with client:
        with pytest.raises(ServiceRequestError):
            await client.download_blob("a.json")
    assert counter.snapshot()["blob_requests"] == 3
