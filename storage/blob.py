"""The process's one Blob container client, built from the `CONVERSATIONS_STORAGE` setting.

The setting is either a connection string (Azurite, `UseDevelopmentStorage=true`, or an account
key / SAS) or an account URL (`https://<account>.blob.core.windows.net`) used with an async Azure
credential (managed identity). Build the client once per process and inject it into the stores:
it keeps a connection pool, and a client per call would pay a TLS handshake every time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import BlobClient, ContainerClient

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


def is_account_url(setting: str) -> bool:
    return setting.strip().lower().startswith(("https://", "http://"))


def container_client(
    setting: str,
    container_name: str,
    credential: AsyncTokenCredential | None = None,
    *,
    request_policies: Sequence[AsyncHTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = (),
    **client_options: Any,
) -> ContainerClient:
    """A long-lived async client for `container_name`.

    `setting` is a connection string or an account URL; an account URL needs `credential`
    (e.g. `azure.identity.aio.DefaultAzureCredential()`), a connection string carries its own.
    `client_options` go to the SDK client (e.g. `api_version`, `retry_total`).
    `request_policies` (tests and benchmarks: counting requests; production sets none) run on
    every request sent, retries included: the storage SDK places them last, next to the transport.
    """
    value = setting.strip()
    if not value:
        raise StorageNotConfigured(SETTING, "is empty")
    if request_policies:
        # The storage SDK takes no `per_call_policies`; this is its hook for extra policies.
        client_options["_additional_pipeline_policies"] = list(request_policies)
    if "transport" not in client_options:
        client_options["transport"] = _transport()
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
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._blob_clients: Recent[str, BlobClient] = Recent(BLOB_CLIENTS_KEPT)

    def get_blob_client(
        self, blob: str, snapshot: str | None = None, *, version_id: str | None = None
    ) -> BlobClient:
        if snapshot is not None or version_id is not None or not isinstance(blob, str):
            return super().get_blob_client(blob, snapshot, version_id=version_id)
        client = self._blob_clients.get(blob)
        if client is None:
            client = self._blob_clients.put(blob, super().get_blob_client(blob))
        return client


def _transport() -> AsyncHttpTransport[Any, Any]:
    """aiohttp with the environment trusted only when it names a proxy: a trusting session
    also re-reads `~/.netrc` and the proxy variables on every request, which cost more CPU
    than the rest of a small Blob call."""
    from azure.core.pipeline.transport import AioHttpTransport

    has_proxy = any(os.environ.get(name) for name in PROXY_VARIABLES)
    # the package's lazy __getattr__ hands the class out untyped: say what it is
    transport: AsyncHttpTransport[Any, Any] = AioHttpTransport(use_env_settings=has_proxy)
    return transport


async def ensure_container(container: ContainerClient) -> None:
    """Create the container if it is missing (safe to call from every instance at startup)."""
    try:
        await container.create_container()
    except ResourceExistsError:
        return  # expected: another instance (or an earlier start) created it
