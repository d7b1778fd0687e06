"""The lean path's signing, SAS, bearer tokens and retries (loopback servers and Azurite)."""

from __future__ import annotations

import asyncio
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
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import AioHttpTransport, HttpRequest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

from devkit.azurite import ACCOUNT_KEY, ACCOUNT_NAME, AzuriteInstance
from devkit.ledger import BlobRequestCounter
from storage.blob import container_client, ensure_container
from storage.blob_rest import BearerToken, BlobRest, NoSigning, RetrySettings, SharedKey

STORAGE_SCOPE = "https://storage.azure.com/.default"
NO_WAIT = {"initial_backoff": 0, "increment_base": 0, "random_jitter_range": 0}
CHALLENGE = (
    "Bearer authorization_uri=https://login.microsoftonline.com/tenant2/oauth2/authorize"
    " resource_id=https://storage.azure.com"
)


@dataclass
class Loopback:
    """A stand-in Blob endpoint: answers each request with the next scripted status (201
    once the script runs out) and records what it received."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    challenge: str = ""  # the WWW-Authenticate a 401 carries, if any
    stalled: bool = False  # answer nothing until `released`
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.append((request.method, request.raw_path, dict(request.headers)))
        if self.stalled:
            await self.released.wait()
        status = self.statuses.pop(0) if self.statuses else 201
        headers = {"ETag": f'"0x{len(self.received)}"', "Content-Length": "0"}
        if status == 409:
            headers["x-ms-error-code"] = "BlobAlreadyExists"
        if status == 401 and self.challenge:
            headers["WWW-Authenticate"] = self.challenge
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
    server.released.set()
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
    """An async credential that counts its tokens; each lives `lifetime` seconds. Its first
    `failures` fetches fail as a managed identity endpoint's hiccup does."""

    def __init__(self, lifetime: int, failures: int = 0) -> None:
        self.lifetime = lifetime
        self.failures = failures
        self.scopes: list[tuple[str, ...]] = []
        self.tenants: list[str | None] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        self.tenants.append(kwargs.get("tenant_id"))
        if len(self.scopes) <= self.failures:
            raise ClientAuthenticationError("the identity endpoint did not answer")
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


def _bearer_rest(loopback: Loopback, credential: object, **retry: Any) -> BlobRest:
    signer = BearerToken(credential, [STORAGE_SCOPE], allow_http=True)  # type: ignore[arg-type]
    settings = RetrySettings(initial_backoff=0, increment_base=0, jitter=0, **retry)
    return BlobRest(f"{loopback.url}/c", signer=signer, api_version="2026-10-06", retry=settings)


def _tokens_sent(loopback: Loopback) -> list[str]:
    return [headers["Authorization"] for _, _, headers in loopback.received]


async def test_a_401_bearer_challenge_gets_a_token_for_its_tenant_and_one_more_send(
    loopback: Loopback,
) -> None:
    loopback.statuses, loopback.challenge = [401], CHALLENGE
    credential = Credential(3600)
    rest = _bearer_rest(loopback, credential)
    try:
        await rest.send("HEAD", "a.json", {})
        await rest.send("HEAD", "a.json", {})  # the challenge's token is kept
    finally:
        await rest.close()
    assert _tokens_sent(loopback) == ["Bearer token-1", "Bearer token-2", "Bearer token-2"]
    assert credential.scopes == [(STORAGE_SCOPE,), (STORAGE_SCOPE,)]
    assert credential.tenants == [None, "tenant2"]


@pytest.mark.parametrize(
    ("challenge", "sent"), [("", 1), (CHALLENGE, 2)], ids=["no-challenge", "challenge-refused"]
)
async def test_a_401_that_stands_is_raised_and_the_next_request_fetches_a_new_token(
    loopback: Loopback, challenge: str, sent: int
) -> None:
    """Without a challenge, or when the challenge's token is refused too: no more sends."""
    loopback.statuses, loopback.challenge = [401] * sent, challenge
    credential = Credential(3600)
    rest = _bearer_rest(loopback, credential)
    try:
        with pytest.raises(ClientAuthenticationError):
            await rest.send("HEAD", "a.json", {})
        assert len(loopback.received) == sent
        await rest.send("HEAD", "a.json", {})
    finally:
        await rest.close()
    # token-1 is dropped; token-2 is fetched for the next request, or kept from the challenge
    # (as azure-core keeps it: only the first answer's 401 drops a token)
    assert _tokens_sent(loopback)[-1] == "Bearer token-2"
    assert len(credential.scopes) == 2


class TokenInfoCredential(Credential):
    """A credential with `get_token_info`, whose tokens say to renew them already."""

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        self.scopes.append(scopes)
        self.tenants.append((options or {}).get("tenant_id"))
        now = int(time.time())
        # past by more than azure-core's refresh jitter (up to a minute)
        return AccessTokenInfo(f"info-{len(self.scopes)}", now + 3600, refresh_on=now - 120)


async def test_a_credential_with_get_token_info_is_asked_by_it_and_renewed_at_its_refresh_on(
    loopback: Loopback,
) -> None:
    loopback.statuses, loopback.challenge = [201, 401], CHALLENGE
    credential = TokenInfoCredential(3600)
    rest = _bearer_rest(loopback, credential)
    try:
        await rest.send("HEAD", "a.json", {})
        await rest.send("HEAD", "a.json", {})
    finally:
        await rest.close()
    assert _tokens_sent(loopback) == ["Bearer info-1", "Bearer info-2", "Bearer info-3"]
    assert credential.tenants == [None, None, "tenant2"]


@pytest.mark.parametrize(("failures", "total", "succeeds"), [(2, 3, True), (2, 1, False)])
async def test_a_failed_token_fetch_is_retried_within_the_retry_budget(
    loopback: Loopback, failures: int, total: int, succeeds: bool
) -> None:
    credential = Credential(3600, failures=failures)
    rest = _bearer_rest(loopback, credential, total=total)
    try:
        if succeeds:
            await rest.send("HEAD", "a.json", {})
        else:
            with pytest.raises(ClientAuthenticationError, match="did not answer"):
                await rest.send("HEAD", "a.json", {})
    finally:
        await rest.close()
    assert len(credential.scopes) == min(failures + 1, total + 1)
    assert _tokens_sent(loopback) == (["Bearer token-3"] if succeeds else [])


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize(
    ("options", "expected"),
    [({}, (20, 60)), ({"connection_timeout": 5, "read_timeout": 7}, (5, 7))],
)
def test_both_paths_use_the_storage_sdks_socket_timeouts_or_the_clients_options(
    lean: bool, options: dict[str, float], expected: tuple[float, float]
) -> None:
    setting = "BlobEndpoint=http://127.0.0.1:9/acct;SharedAccessSignature=sig=x"
    client: Any = container_client(setting, "c", lean=lean, **options)
    connection = client._config.transport.connection_config
    assert (connection.timeout, connection.read_timeout) == expected
    if lean:
        timeout = client._rest._timeout
        assert (timeout.sock_connect, timeout.sock_read) == expected


@pytest.mark.parametrize("lean", [True, False])
async def test_a_stalled_answer_ends_at_the_read_timeout_on_both_paths(
    loopback: Loopback, lean: bool
) -> None:
    loopback.stalled = True
    async with await _loopback_client(loopback, lean, read_timeout=0.2, retry_total=0) as client:
        with pytest.raises(ServiceResponseError):
            # bounded: azure-core's own 300 s read timeout would outlast it
            await asyncio.wait_for(client.get_blob_client("a.json").get_blob_properties(), 30)
    assert len(loopback.received) == 1


async def test_an_account_key_with_a_sas_in_the_endpoint_is_signed_over_that_query_too(
    loopback: Loopback,
) -> None:
    setting = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={loopback.url}/{ACCOUNT_NAME}?sv=2020-01-01&sig=abc%2Bd"
    )
    client: Any = container_client(setting, "c", retry_total=0)
    assert not client.lean  # the lean signature leaves the endpoint's query out
    async with client:
        await client.get_blob_client("a b.json").upload_blob(b"{}", overwrite=True)
    [(method, raw_path, headers)] = loopback.received
    assert "sig=abc%2Bd" in raw_path
    signed = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    assert headers["Authorization"] == _sdk_signature(method, loopback.url + raw_path, signed)
