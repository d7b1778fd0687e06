"""The process's one Blob container client, built from the `CONVERSATIONS_STORAGE` setting.

The setting is either a connection string (Azurite, `UseDevelopmentStorage=true`, or an account
key / SAS) or an account URL (`https://<account>.blob.core.windows.net`) used with an async Azure
credential (managed identity). Build the client once per process and inject it into the stores:
it keeps a connection pool, and a client per call would pay a TLS handshake every time.

The hot blob operations (reads, uploads, appends, deletes, properties) take a lean request path
by default (`storage.blob_lean` over `storage.blob_rest`; `BLOB_REQUESTS=sdk` turns it off):
the same requests, results and errors as the SDK's, for about a third of its CPU. Listings and
container calls, and any call shape the lean path does not handle, stay on the SDK. So do
clients the lean path cannot sign for: a credential policy or retry policy of another kind, or
an account key together with a SAS in the endpoint's query (the service signs that query too).
Both paths use the same socket timeouts: the storage SDK's (20 s to connect, 60 s per read) or
the client's `connection_timeout` / `read_timeout`.

What the lean path does not do (redirects, decompression, rare property fields): see
`storage.blob_lean`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobType
from azure.storage.blob._shared.constants import CONNECTION_TIMEOUT, DATA_BLOCK_SIZE, READ_TIMEOUT
from azure.storage.blob.aio import BlobClient, ContainerClient, StorageStreamDownloader

from storage.blob_lean import LeanBlobClient
from storage.blob_rest import (
    BlobRest,
    RequestObserver,
    SharedKey,
    retry_from,
    signer_from,
)
from storage.errors import StorageNotConfigured
from storage.recent import Recent

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.core.pipeline.policies import AsyncHTTPPolicy, SansIOHTTPPolicy
    from azure.core.pipeline.transport import AsyncHttpTransport

SETTING = "CONVERSATIONS_STORAGE"
BLOB_CLIENTS_KEPT = 1024  # blob clients a container keeps for reuse (a few KB each)
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
# Client options the lean path honours (it reads them back from the SDK client it was built
# with); any other option, a hook or a transport of the caller's keeps the SDK path.
LEAN_OPTIONS = frozenset(
    {
        "api_version",
        "retry_total",
        "retry_connect",
        "retry_read",
        "retry_status",
        "initial_backoff",
        "increment_base",
        "random_jitter_range",
        "max_single_get_size",
        "max_chunk_get_size",
        "max_single_put_size",
        "connection_timeout",
        "read_timeout",
        "audience",
    }
)


def is_account_url(setting: str) -> bool:
    return setting.strip().lower().startswith(("https://", "http://"))


def container_client(
    setting: str,
    container_name: str,
    credential: AsyncTokenCredential | None = None,
    *,
    request_policies: Sequence[AsyncHTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = (),
    lean: bool = True,
    **client_options: Any,
) -> ContainerClient:
    """A long-lived async client for `container_name`.

    `setting` is a connection string or an account URL; an account URL needs `credential`
    (e.g. `azure.identity.aio.DefaultAzureCredential()`), a connection string carries its own.
    `client_options` go to the SDK client (e.g. `api_version`, `retry_total`).
    `request_policies` (tests and benchmarks: counting requests; production sets none) run on
    every request sent, retries included: the storage SDK places them last, next to the transport.
    With `lean` (the `BLOB_REQUESTS=lean` default) the hot blob operations skip the SDK's
    pipeline (`storage.blob_lean`), unless an option or policy needs it: then every request
    takes the SDK path. Policies that are `RequestObserver`s (the ledger's counter) see both.
    """
    value = setting.strip()
    if not value:
        raise StorageNotConfigured(SETTING, "is empty")
    lean = lean and _lean_can_serve(request_policies, client_options)
    timeouts = _timeouts(client_options)
    client = _sdk_client(
        value, container_name, credential, request_policies, client_options, timeouts
    )
    if lean:
        client.use_lean_path(
            request_policies,  # type: ignore[arg-type]  # checked: all are RequestObservers
            *timeouts,
        )
    return client


def _timeouts(options: dict[str, Any]) -> tuple[float, float]:
    """(connect, read) seconds for both paths: the client's options, else the storage SDK's
    defaults (which it gives only the transport it builds itself, never ours)."""
    connect, read = options.get("connection_timeout"), options.get("read_timeout")
    return (
        CONNECTION_TIMEOUT if connect is None else connect,
        READ_TIMEOUT if read is None else read,
    )


def _lean_can_serve(policies: Sequence[object], options: dict[str, Any]) -> bool:
    return set(options) <= LEAN_OPTIONS and all(isinstance(p, RequestObserver) for p in policies)


def _sdk_client(
    value: str,
    container_name: str,
    credential: AsyncTokenCredential | None,
    request_policies: Sequence[AsyncHTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]],
    client_options: dict[str, Any],
    timeouts: tuple[float, float],
) -> ReusingContainerClient:
    if request_policies:
        # The storage SDK takes no `per_call_policies`; this is its hook for extra policies.
        client_options["_additional_pipeline_policies"] = list(request_policies)
    if "transport" not in client_options:
        client_options["transport"] = _transport(*timeouts)
    if is_account_url(value):
        if credential is None:
            raise StorageNotConfigured(
                SETTING, "an account URL needs a credential (managed identity)"
            )
        return ReusingContainerClient(
            account_url=value.rstrip("/"),
            container_name=container_name,
            credential=credential,
            **client_options,
        )
    try:
        return ReusingContainerClient.from_connection_string(
            value, container_name, **client_options
        )
    except ValueError as exc:
        # The SDK's own message is safe, but never echo the setting: it carries the account key.
        raise StorageNotConfigured(
            SETTING, f"is not a valid storage connection string ({exc})"
        ) from None


class ReusingContainerClient(ContainerClient):
    """A container client that hands out one client per blob name, built once.

    The SDK builds a new `BlobClient` on every `get_blob_client` (its own calls by name, such
    as `upload_blob`, go through it too): a pipeline and a generated client whose serializer
    scans the model module, about a millisecond of CPU, more than the rest of a small request
    to the emulator. A blob client holds no per-request state, so one per name serves every
    caller; the most recently used names are kept.

    After `use_lean_path`, the blob clients it hands out are `LeanBlobClient`s, and its own
    upload, download and delete by name go straight to them (skipping the SDK's tracing
    wrappers of the container's methods).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._blob_clients: Recent[str, BlobClient] = Recent(BLOB_CLIENTS_KEPT)
        self._rest: BlobRest | None = None

    def use_lean_path(
        self,
        observers: Sequence[RequestObserver],
        connection_timeout: float,
        read_timeout: float,
    ) -> None:
        """Send the hot operations through `BlobRest`, signed and retried as this client's
        pipeline would; nothing changes when its credential or retry policy is one the lean
        path does not know."""
        signer = signer_from(self._credential_policy)
        retry = retry_from(self._config.retry_policy)
        sas_query: str = self._query_str  # type: ignore[attr-defined]  # not in the SDK's stubs
        if signer is None or retry is None or (isinstance(signer, SharedKey) and sas_query):
            return  # a key signs the SAS query as well: the SDK's signature covers it
        self._rest = BlobRest(
            f"{self.scheme}://{self.primary_hostname}/{quote(self.container_name)}",
            signer=signer,
            api_version=self.api_version,
            sas_query=sas_query,
            retry=retry,
            observers=observers,
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
            trust_env=_has_proxy(),
        )

    @property
    def lean(self) -> bool:
        """Whether the hot operations skip the SDK's pipeline."""
        return self._rest is not None

    def get_blob_client(
        self, blob: str, snapshot: str | None = None, *, version_id: str | None = None
    ) -> BlobClient:
        if snapshot is not None or version_id is not None or not isinstance(blob, str):
            return super().get_blob_client(blob, snapshot, version_id=version_id)
        client = self._blob_clients.get(blob)
        if client is None:
            client = self._blob_clients.put(blob, self._new_blob_client(blob))
        return client

    def _new_blob_client(self, blob: str) -> BlobClient:
        if self._rest is None:
            return super().get_blob_client(blob)
        # The SDK's state comes from its own construction, made only if a call needs it.
        return LeanBlobClient.deferred(
            blob,
            self.container_name,
            self._rest,
            self._config,
            functools.partial(ContainerClient.get_blob_client, self, blob),
        )

    async def upload_blob(
        self,
        name: str,
        data: Any,
        blob_type: str | BlobType = BlobType.BLOCKBLOB,
        length: int | None = None,
        metadata: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> BlobClient:
        if self._rest is None or not isinstance(name, str):
            return await super().upload_blob(name, data, blob_type, length, metadata, **kwargs)
        blob = self.get_blob_client(name)
        await blob.upload_blob(data, blob_type, length, metadata, **kwargs)
        return blob

    async def download_blob(
        self, blob: str, offset: int | None = None, length: int | None = None, **kwargs: Any
    ) -> StorageStreamDownloader[Any]:
        if self._rest is None or not isinstance(blob, str):
            sdk: StorageStreamDownloader[Any] = await super().download_blob(
                blob, offset, length, **kwargs
            )
            return sdk
        client = self.get_blob_client(blob)
        lean: StorageStreamDownloader[Any] = await client.download_blob(offset, length, **kwargs)
        return lean

    async def delete_blob(
        self, blob: str, delete_snapshots: str | None = None, **kwargs: Any
    ) -> None:
        if self._rest is None or not isinstance(blob, str):
            return await super().delete_blob(blob, delete_snapshots, **kwargs)
        await self.get_blob_client(blob).delete_blob(delete_snapshots, **kwargs)

    async def close(self) -> None:
        await super().close()
        await self._close_lean()

    async def __aexit__(self, *args: Any) -> None:
        await super().__aexit__(*args)
        await self._close_lean()

    async def _close_lean(self) -> None:
        if self._rest is not None:
            await self._rest.close()


def _transport(connection_timeout: float, read_timeout: float) -> AsyncHttpTransport[Any, Any]:
    """aiohttp with the environment trusted only when it names a proxy: a trusting session
    also re-reads `~/.netrc` and the proxy variables on every request, which cost more CPU
    than the rest of a small Blob call. It gets what the storage SDK gives the transport it
    builds itself (azure-core's own defaults are 300 s timeouts and 4 KiB stream blocks)."""
    from azure.core.pipeline.transport import AioHttpTransport

    # the package's lazy __getattr__ hands the class out untyped: say what it is
    transport: AsyncHttpTransport[Any, Any] = AioHttpTransport(
        use_env_settings=_has_proxy(),
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
        connection_data_block_size=DATA_BLOCK_SIZE,
    )
    return transport


def _has_proxy() -> bool:
    return any(os.environ.get(name) for name in PROXY_VARIABLES)


async def ensure_container(container: ContainerClient) -> None:
    """Create the container if it is missing (safe to call from every instance at startup)."""
    try:
        await container.create_container()
    except ResourceExistsError:
        return  # expected: another instance (or an earlier start) created it
