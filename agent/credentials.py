"""The process's Azure credentials (managed identity in Azure, developer login locally).

`AZURE_CLIENT_ID` (`Settings.azure_client_id`) selects the user-assigned managed identity for
every credential built here; it is passed explicitly rather than left to the SDK's own reading of
the environment, so that the parsed settings are the one source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential


def azure_credential(client_id: str | None = None) -> AsyncTokenCredential:
    """One DefaultAzureCredential per process: it caches tokens and refreshes them itself.

    `client_id` is the user-assigned managed identity (and workload identity) to use; None means
    the system-assigned one. An explicit None also stops the SDK from reading AZURE_CLIENT_ID
    from the environment behind the settings' back.
    """
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id)


def managed_identity_credential(client_id: str | None) -> TokenCredential:
    """A synchronous managed identity credential (what the Azure Monitor exporter takes)."""
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id)
