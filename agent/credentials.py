"""The process's Azure credential (managed identity in Azure, developer login locally)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"


def azure_credential() -> AsyncTokenCredential:
    """One DefaultAzureCredential per process: it caches tokens and refreshes them itself."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()
