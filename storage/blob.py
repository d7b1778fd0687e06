"""The process's one Blob container client, built from the `CONVERSATIONS_STORAGE` setting.

The setting is either a connection string (Azurite, `UseDevelopmentStorage=true`, or an account
key / SAS) or an account URL (`https://<account>.blob.core.windows.net`) used with an async Azure
credential (managed identity). Build the client once per process and inject it into the stores:
it keeps a connection pool, and a client per call would pay a TLS handshake every time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import ContainerClient

from agent.errors import SettingsError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

SETTING = "CONVERSATIONS_STORAGE"
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"


def is_account_url(setting: str) -> bool:
    return setting.strip().lower().startswith(("https://", "http://"))


def container_client(
    setting: str,
    container_name: str,
    credential: AsyncTokenCredential | None = None,
    **client_options: Any,
) -> ContainerClient:
    """A long-lived async client for `container_name`.

    `setting` is a connection string or an account URL; an account URL needs `credential`
    (e.g. `azure.identity.aio.DefaultAzureCredential()`), a connection string carries its own.
    `client_options` go to the SDK client (e.g. `api_version`, `retry_total`).
    """
    value = setting.strip()
    if not value:
        raise SettingsError(SETTING, "is empty")
    if is_account_url(value):
        if credential is None:
            raise SettingsError(SETTING, "an account URL needs a credential (managed identity)")
        return ContainerClient(
            account_url=value.rstrip("/"),
            container_name=container_name,
            credential=credential,
            **client_options,
        )
    try:
        return ContainerClient.from_connection_string(value, container_name, **client_options)
    except ValueError as exc:
        # The SDK's own message is safe, but never echo the setting: it carries the account key.
        raise SettingsError(SETTING, f"is not a valid storage connection string ({exc})") from None


async def ensure_container(container: ContainerClient) -> None:
    """Create the container if it is missing (safe to call from every instance at startup)."""
    try:
        await container.create_container()
    except ResourceExistsError:
        return  # expected: another instance (or an earlier start) created it
