"""The process's long-lived clients, built once on first use and shared by every invocation.

Nothing here runs at import time: `function_app.py` imports this module cheaply, and the first
invocation pays for the clients (cold start is paid on every scale-out). Tests inject their own
`Runtime` with `use_runtime()`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.blob.aio import ContainerClient

    from agent.mcp.config import SecretResolver
    from agent.mcp.pool import McpPool
    from agent.model import ModelClient
    from storage.batches import BatchStore
    from storage.conversations import ConversationStore


@dataclass
class Runtime:
    settings: Settings
    store: ConversationStore
    mcp: McpPool
    model: ModelClient
    container: ContainerClient
    batches: BatchStore
    credential: AsyncTokenCredential | None = None
    secrets: SecretResolver | None = None

    async def aclose(self) -> None:
        await self.mcp.aclose()
        await self.model.aclose()
        await self.container.close()
        if self.secrets is not None:
            from agent.secrets import close_resolver

            await close_resolver(self.secrets)
        if self.credential is not None:
            await self.credential.close()


_settings: Settings | None = None
_runtime: Runtime | None = None
_lock: asyncio.Lock | None = None


def settings() -> Settings:
    """Settings, parsed once per process (raises SettingsError naming a bad setting)."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


async def runtime() -> Runtime:
    global _runtime, _lock
    if _runtime is not None:
        return _runtime
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _runtime is None:
            _runtime = await build_runtime(settings())
    return _runtime


def current() -> Runtime | None:
    """The runtime if one was built (or injected), without building one."""
    return _runtime


def use_runtime(value: Runtime | None) -> None:
    """Inject a runtime (tests, local host); None forgets it so the next call builds anew."""
    global _runtime, _settings
    _runtime = value
    _settings = value.settings if value is not None else None


async def build_runtime(config: Settings) -> Runtime:
    # Heavy imports happen here, on first use, not when function_app.py is imported.
    from agent.credentials import azure_credential
    from agent.mcp.config import parse_mcp_servers
    from agent.mcp.pool import McpPool
    from agent.model import build_model_client
    from agent.secrets import secret_resolver
    from agent.telemetry import configure_telemetry
    from storage.batches import BatchStore
    from storage.blob import container_client
    from storage.conversations import ConversationStore

    # Azure Monitor takes 1-2 s to set up: off the event loop, and only when configured.
    await asyncio.to_thread(configure_telemetry, config)
    needs_credential = (
        config.storage_uses_account_url
        or (config.model.kind == "azure" and config.model.api_key is None)
        or '"managed_identity"' in config.mcp_servers_json
        or config.keyvault_uri is not None
    )
    credential = azure_credential() if needs_credential else None
    container = container_client(
        config.conversations_storage, config.conversations_container, credential
    )
    store = ConversationStore(container)
    await store.ensure_container()
    secrets = secret_resolver(config, credential)
    pool = McpPool(
        parse_mcp_servers(config.mcp_servers_json), secrets=secrets, credential=credential
    )
    model = build_model_client(config.model, credential)
    return Runtime(
        config, store, pool, model, container, BatchStore(container), credential, secrets
    )
