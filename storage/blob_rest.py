"""A lean request path for the Blob operations the stores send on every turn.

The azure-storage-blob SDK spends about three times the CPU of the request itself on its
pipeline (sixteen policies, a generated serializer, typing checks in azure-core), and the batch
benchmark is CPU-bound on it. `BlobRest` sends the same REST requests signed by hand on one
aiohttp session: whole and ranged downloads, block blob uploads, append blob create and
append, delete and HEAD. Callers (`storage.blob`) keep the SDK's shapes: this module answers
with status, headers and body, and raises exactly the `azure.core.exceptions` the SDK's
`process_storage_error` raises (`storage_error`). Listings and container calls stay on the SDK.

It honours what the SDK client was built with: its signing (SharedKey, SAS, or a bearer token
from an async credential, renewed on a 401 Bearer challenge as the SDK's storage bearer policy
renews it), its `x-ms-version`, its retry policy's numbers (connection errors, timeouts, a
failed token fetch, 408 and 5xx except 501/505, the same exponential backoff; never a 4xx) and
its socket timeouts. `RequestObserver`s (the cost ledger's counter) see every request sent,
retries included, as the SDK's pipeline policies would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable
from urllib.parse import quote, urlsplit

import aiohttp
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies._authentication import (
    MAX_REFRESH_JITTER_SECONDS,
    _should_refresh_token,
)
from azure.storage.blob import StorageErrorCode
from azure.storage.blob._shared.authentication import StorageHttpChallenge
from azure.storage.blob._shared.constants import CONNECTION_TIMEOUT, READ_TIMEOUT
from yarl import URL

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
    from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential

DEFAULT_OAUTH_SCOPE = "/.default"  # what the SDK appends to a challenge's resource_id
# Headers SharedKey signs by position (the rest of the string to sign is x-ms-* and resource).
_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
# The generated layer's own mapping by status, for the types process_storage_error then keeps
# whatever the error code (its 304 ResourceNotModifiedError it types again by code).
_BY_STATUS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
}
# process_storage_error's mapping by error code, for the other statuses.
_BY_CODE: dict[str, type[HttpResponseError]] = {
    StorageErrorCode.CONDITION_NOT_MET: ResourceModifiedError,
    StorageErrorCode.BLOB_OVERWRITTEN: ResourceModifiedError,
    StorageErrorCode.INVALID_AUTHENTICATION_INFO: ClientAuthenticationError,
    StorageErrorCode.AUTHENTICATION_FAILED: ClientAuthenticationError,
    **dict.fromkeys(
        (
            StorageErrorCode.RESOURCE_NOT_FOUND,
            StorageErrorCode.CANNOT_VERIFY_COPY_SOURCE,
            StorageErrorCode.BLOB_NOT_FOUND,
            StorageErrorCode.CONTAINER_NOT_FOUND,
            StorageErrorCode.PARENT_NOT_FOUND,
        ),
        ResourceNotFoundError,
    ),
    **dict.fromkeys(
        (
            StorageErrorCode.RESOURCE_ALREADY_EXISTS,
            StorageErrorCode.RESOURCE_TYPE_MISMATCH,
            StorageErrorCode.BLOB_ALREADY_EXISTS,
            StorageErrorCode.CONTAINER_ALREADY_EXISTS,
            StorageErrorCode.CONTAINER_BEING_DELETED,
        ),
        ResourceExistsError,
    ),
}


@runtime_checkable
class RequestObserver(Protocol):
    """Sees each request the lean path sends (retries included) and each answer: the same
    facts a pipeline policy next to the SDK's transport sees (the cost ledger counts them)."""

    def on_lean_request(self, method: str, url: str, body_size: int) -> None: ...

    def on_lean_response(self, method: str, url: str, status: int, answer_size: int) -> None: ...


@dataclass(frozen=True)
class RetrySettings:
    """The numbers of the SDK's ExponentialRetry (its defaults: 3 retries, 15 s + 3^n s)."""

    total: int = 3
    connect: int = 3
    read: int = 3
    status: int = 3
    initial_backoff: float = 15
    increment_base: float = 3
    jitter: float = 3

    def backoff(self, count: int) -> float:
        """Seconds to wait before retry number `count` (1-based), jittered as the SDK does."""
        backoff = self.initial_backoff + self.increment_base**count
        start = backoff - self.jitter if backoff > self.jitter else 0
        return random.uniform(start, backoff + self.jitter)


@dataclass(frozen=True)
class _Request:
    """One operation as `send` was asked for it; each try sends a signed copy of it."""

    method: str
    url: str
    path: str  # as signed
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    streamed: bool


@dataclass
class Answer:
    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes


class Signer(Protocol):
    async def authorize(
        self, method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str]
    ) -> None: ...

    async def challenged(self, headers: Mapping[str, str]) -> str | None:
        """After a 401 with these headers: the Authorization to send the request again with
        (once), or None to raise the 401."""
        ...


class SharedKey:
    """SharedKey signing (https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key)."""

    def __init__(self, account_name: str, account_key: str) -> None:
        self._account = account_name
        self._key = base64.b64decode(account_key)

    def __repr__(self) -> str:
        return f"SharedKey({self._account!r}, <key>)"

    async def authorize(
        self, method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str]
    ) -> None:
        headers["Authorization"] = self.authorization(method, path, query, headers)

    async def challenged(self, headers: Mapping[str, str]) -> str | None:
        return None  # a key's signature does not change: the 401 stands

    def authorization(
        self, method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str]
    ) -> str:
        """`path` as sent (percent-encoded); `query` the decoded pairs."""
        lowered = {name.lower(): value for name, value in headers.items() if value}
        if lowered.get("content-length") == "0":
            del lowered["content-length"]  # signed as empty since API version 2015-02-21
        positional = "".join(f"{lowered.get(name, '')}\n" for name in _SIGNED_HEADERS)
        x_ms = [(n, v) for n, v in lowered.items() if n.startswith("x-ms-")]
        canonical_headers = "".join(f"{name}:{value}\n" for name, value in _by_service(x_ms))
        resource = f"/{self._account}{path}" + "".join(
            f"\n{name.lower()}:{value}" for name, value in sorted(query)
        )
        to_sign = f"{method}\n{positional}{canonical_headers}{resource}"
        digest = hmac.new(self._key, to_sign.encode("utf-8"), hashlib.sha256).digest()
        return f"SharedKey {self._account}:{base64.b64encode(digest).decode()}"


def _by_service(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """x-ms-* headers in the service's order: by name ignoring '-' first (our names are
    lower-case letters and '-', for which that is the whole of its collation)."""
    return sorted(headers, key=lambda item: (item[0].replace("-", ""), item[0]))


class BearerToken:
    """A token from an async credential (managed identity), kept and renewed as azure-core's
    bearer policy keeps it: until its `refresh_on`, else until five minutes before expiry
    (less a jitter of up to a minute); a 401 drops it, and a Bearer challenge that names the
    resource gets a fresh one (for the challenge's tenant), as the storage SDK's policy does."""

    def __init__(
        self, credential: AsyncTokenCredential, scopes: Sequence[str], *, allow_http: bool = False
    ) -> None:
        self._credential = credential
        self._scopes = tuple(scopes)
        # Kept for the tests only (Azurite on loopback speaks plain HTTP, and the bearer
        # token's tests sign against it): elsewhere a token must never go in clear.
        self.allow_http = allow_http
        self._token: AccessToken | AccessTokenInfo | None = None
        self._jitter = 0
        self._lock = asyncio.Lock()

    async def authorize(
        self, method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str]
    ) -> None:
        headers["Authorization"] = f"Bearer {await self.token()}"

    async def token(self) -> str:
        token = self._token
        if token is None or _should_refresh_token(token, self._jitter):
            async with self._lock:  # one refresh for every request waiting on it
                token = self._token
                if token is None or _should_refresh_token(token, self._jitter):
                    token = await self._fetch(self._scopes)
        return token.token

    async def challenged(self, headers: Mapping[str, str]) -> str | None:
        self._token = None  # as azure-core: any kept token is invalid after a 401
        try:
            header = headers.get("WWW-Authenticate")
            challenge = StorageHttpChallenge(header)  # type: ignore[no-untyped-call]
        except ValueError:
            return None  # no Bearer challenge the SDK follows: the 401 stands
        scope = f"{challenge.resource_id}{DEFAULT_OAUTH_SCOPE}"  # its parser made sure of both
        async with self._lock:
            token = await self._fetch((scope,), str(challenge.tenant_id))
        return f"Bearer {token.token}"

    async def _fetch(
        self, scopes: Sequence[str], tenant_id: str | None = None
    ) -> AccessToken | AccessTokenInfo:
        """A new token, by `get_token_info` when the credential has it (its `refresh_on`
        then says when to renew), kept for the requests after this one."""
        token: AccessToken | AccessTokenInfo
        if hasattr(self._credential, "get_token_info"):
            options: TokenRequestOptions = {} if tenant_id is None else {"tenant_id": tenant_id}
            info = cast("AsyncSupportsTokenInfo", self._credential)
            token = await info.get_token_info(*scopes, options=options)
        elif tenant_id is None:
            token = await self._credential.get_token(*scopes)
        else:
            token = await self._credential.get_token(*scopes, tenant_id=tenant_id)
        self._token = token
        self._jitter = random.randint(0, MAX_REFRESH_JITTER_SECONDS)
        return token


class NoSigning:
    """SAS (the token rides in every URL's query) or a public container."""

    async def authorize(
        self, method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str]
    ) -> None:
        return None

    async def challenged(self, headers: Mapping[str, str]) -> str | None:
        return None


class BlobRest:
    """Sends one container's blob requests; one aiohttp session, opened on first use."""

    def __init__(
        self,
        container_url: str,
        *,
        signer: Signer,
        api_version: str,
        sas_query: str = "",
        retry: RetrySettings | None = None,
        observers: Sequence[RequestObserver] = (),
        connection_timeout: float = CONNECTION_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        trust_env: bool = False,
    ) -> None:
        self._base = container_url.rstrip("/")
        self._base_path = urlsplit(self._base).path
        self._signer = signer
        self._api_version = api_version
        self._sas = [tuple(pair.split("=", 1)) for pair in sas_query.lstrip("?").split("&") if pair]
        self._retry = retry or RetrySettings()
        self._observers = tuple(observers)
        self._timeout = aiohttp.ClientTimeout(
            sock_connect=connection_timeout, sock_read=read_timeout
        )
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        # As the SDK's bearer policy: a token is never sent over plain HTTP.
        self._token_in_clear = (
            isinstance(signer, BearerToken)
            and not signer.allow_http
            and not self._base.lower().startswith("https://")
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, blob: str, query: Sequence[tuple[str, str]] = ()) -> str:
        """The blob's URL as sent (percent-encoded, SAS included)."""
        pairs = [*query, *self._sas]
        tail = "?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else ""
        return f"{self._base}/{quote(blob, safe='~/')}{tail}"

    async def send(
        self,
        method: str,
        blob: str,
        headers: dict[str, str],
        body: bytes = b"",
        query: Sequence[tuple[str, str]] = (),
        *,
        streamed: bool = False,
    ) -> Answer:
        """One operation, retried as the SDK retries; an answer of 300 or more is raised as
        the SDK raises it. `streamed`: the SDK reads this answer as a stream (a download), so
        a counting observer sees its size only from Content-Length."""
        if self._token_in_clear:
            raise ServiceRequestError(
                "Bearer token authentication is not permitted for non-TLS protected (non-https) URLs."
            )
        request = _Request(
            method,
            self.url(blob, query),
            f"{self._base_path}/{quote(blob, safe='~/')}",
            tuple(query),
            dict(headers),
            body,
            streamed,
        )
        attempts = _Attempts(self._retry)
        while True:
            try:
                answer = await self._attempt(request)
            except AzureError as exc:  # as the SDK's retry policy: a failed token fetch too
                if not attempts.after_error(exc):
                    raise
            else:
                if not _is_retry(answer.status) or not attempts.after_status():
                    break
            await asyncio.sleep(self._retry.backoff(attempts.count))
        if answer.status >= 300:
            raise storage_error(answer)
        return answer

    async def _attempt(self, request: _Request) -> Answer:
        """One try, as the SDK's credential policy makes it: sent once, and sent again once
        with the new authorization a 401's challenge asked for."""
        answer = await self._send_once(request)
        if answer.status == 401:
            authorization = await self._signer.challenged(answer.headers)
            if authorization is not None:
                answer = await self._send_once(request, authorization)
        return answer

    async def _send_once(self, request: _Request, authorization: str | None = None) -> Answer:
        method, url, body = request.method, request.url, request.body
        headers = dict(request.headers)  # each send signs its own copy
        headers["x-ms-version"] = self._api_version
        headers["x-ms-date"] = formatdate(usegmt=True)
        headers["x-ms-client-request-id"] = str(uuid.uuid4())
        headers["Accept"] = "application/xml"
        if authorization is None:
            await self._signer.authorize(method, request.path, request.query, headers)
        else:
            headers["Authorization"] = authorization
        for observer in self._observers:
            observer.on_lean_request(method, url, len(body))
        answer = await self._exchange(method, URL(url, encoded=True), headers, body)
        size = _answer_size(answer, method, request.streamed)
        for observer in self._observers:
            observer.on_lean_response(method, url, answer.status, size)
        return answer

    async def _exchange(
        self, method: str, url: URL, headers: dict[str, str], body: bytes
    ) -> Answer:
        session = self._open()
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                timeout=self._timeout,
                allow_redirects=False,  # Blob never redirects; a redirect must not carry our key
            ) as response:
                data = await response.read()
                return Answer(response.status, response.reason or "", response.headers, data)
        except aiohttp.ClientResponseError as exc:
            raise ServiceResponseError(exc, error=exc) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ServiceRequestTimeoutError(exc, error=exc) from exc
        except TimeoutError as exc:
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except aiohttp.ClientPayloadError as exc:
            raise ServiceResponseError(exc, error=exc) from exc
        except aiohttp.ClientError as exc:
            raise ServiceRequestError(exc, error=exc) from exc

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # As azure-core's aiohttp transport: no cookies, bodies as sent (no decompression).
            self._session = aiohttp.ClientSession(
                trust_env=self._trust_env,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("Content-Type",),
            )
        return self._session


class _Attempts:
    """The SDK's retry bookkeeping: total, connect, read and status budgets."""

    def __init__(self, retry: RetrySettings) -> None:
        self._left = {"total": retry.total, "connect": retry.connect, "read": retry.read}
        self._left["status"] = retry.status
        self.count = 0

    def after_error(self, exc: AzureError) -> bool:
        """As the SDK's increment: a connection error spends the connect budget, one after
        the request went out the read budget, any other (a token fetch) only the total."""
        if isinstance(exc, ServiceRequestError):
            return self._spend("connect")
        if isinstance(exc, ServiceResponseError):
            return self._spend("read")
        return self._spend(None)

    def after_status(self) -> bool:
        return self._spend("status")

    def _spend(self, bucket: str | None) -> bool:
        self._left["total"] -= 1
        if bucket is not None:
            self._left[bucket] -= 1
        # As azure.storage's is_exhausted: budgets at zero do not count, one below zero ends it.
        if min([n for n in self._left.values() if n] or [0]) < 0:
            return False
        self.count += 1
        return True


def _is_retry(status: int) -> bool:
    """408 and server errors except 501 and 505 (the SDK's is_retry on the primary)."""
    return status == 408 or (status >= 500 and status not in (501, 505))


def _answer_size(answer: Answer, method: str, streamed: bool) -> int:
    """What a counting policy at the SDK's transport reads: Content-Length, else the body it
    has read already (never a HEAD's, never a stream's)."""
    if method == "HEAD":
        return 0
    length = answer.headers.get("Content-Length")
    if length is not None:
        return int(length)
    return 0 if streamed else len(answer.body)


class ErrorAnswer:
    """The failed answer an error carries as `.response`: status, reason, headers, body."""

    def __init__(self, answer: Answer) -> None:
        self.status_code = answer.status
        self.reason = answer.reason
        self.headers = answer.headers
        self.content_type = answer.headers.get("Content-Type", "")
        self._body = answer.body

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode(encoding or "utf-8", errors="replace")


def storage_error(answer: Answer) -> HttpResponseError:
    """The exception the SDK raises for this failed answer: the generated layer's type by
    status (401, 404, 409), else process_storage_error's by error code, with its message
    (the service's, then `ErrorCode:` and any further details), `error_code` and
    `additional_info`."""
    by_status = _BY_STATUS.get(answer.status)
    code: str | None = answer.headers.get("x-ms-error-code")
    message = f"Operation returned an invalid status '{answer.reason}'"
    details: dict[str, Any] = {}
    body = _error_body(answer)
    if isinstance(body, dict):
        code, message = body.pop("code", None), body.pop("message", None) or ""
        details = body
    elif not code:
        message = body  # no code anywhere: the SDK's message is the body (or the reason)
    kind = by_status
    if kind is None:  # typed by its code, which then is a StorageErrorCode when known
        code = _known(code)
        kind = _BY_CODE.get(code, HttpResponseError) if code else HttpResponseError
    message += f"\nErrorCode:{getattr(code, 'value', code)}"
    message += "".join(f"\n{name}:{info}" for name, info in details.items())
    error = kind(message=message, response=ErrorAnswer(answer))  # type: ignore[arg-type]
    error.error_code = code  # type: ignore[attr-defined]
    error.additional_info = details  # type: ignore[attr-defined]
    return error


def _known(code: str | None) -> str | None:
    try:
        return StorageErrorCode(code) if code else code
    except ValueError:
        return code  # an error code this SDK version does not know: kept as text


def _error_body(answer: Answer) -> dict[str, Any] | str:
    """The XML error's elements by lower-case name (code, message, ...), else its text, else
    the reason (a HEAD's answer has no body)."""
    if answer.body.lstrip().startswith(b"<"):
        try:
            elements = {c.tag.lower(): c.text for c in ElementTree.fromstring(answer.body)}
        except ElementTree.ParseError:
            elements = {}
        if elements:
            return elements
    return answer.body.decode("utf-8", errors="replace") or answer.reason


def signer_from(policy: object) -> Signer | None:
    """The lean signer for the SDK client's credential policy; None when it has one we do not
    sign for (the caller keeps the SDK path)."""
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
    from azure.storage.blob._shared.policies_async import AsyncStorageBearerTokenCredentialPolicy

    if policy is None:
        return NoSigning()
    if type(policy) is SharedKeyCredentialPolicy:
        return SharedKey(policy.account_name, policy.account_key)
    if type(policy) is AsyncStorageBearerTokenCredentialPolicy:
        return BearerToken(cast("AsyncTokenCredential", policy._credential), policy._scopes)
    return None


def retry_from(policy: object) -> RetrySettings | None:
    """The numbers of the SDK client's retry policy; None for one of another kind."""
    from azure.storage.blob.aio import ExponentialRetry

    if type(policy) is not ExponentialRetry or policy.retry_to_secondary:
        return None
    return RetrySettings(
        total=policy.total_retries,
        connect=policy.connect_retries,
        read=policy.read_retries,
        status=policy.status_retries,
        initial_backoff=policy.initial_backoff,
        increment_base=policy.increment_base,
        jitter=policy.random_jitter_range,
    )
