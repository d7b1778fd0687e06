"""The process's long-lived clients, built once on first use and shared by every invocation.

Nothing here runs at import time: `function_app.py` imports this module cheaply, and the first
invocation pays for the clients (cold start is paid on every scale-out). Tests inject their own
`Runtime` with `use_runtime()`.

Degraded mode: when the settings do not parse, `check_settings()` (called once when
`function_app.py` is imported) logs every bad setting and returns; it never raises, so the worker
still indexes every function. From then on `settings()` and `runtime()` raise `InvalidSettings`
with the same detail: HTTP routes answer 503 naming the settings, activities fail with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.errors import InvalidSettings
from agent.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from azure.core.credentials_async import AsyncTokenCredential
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from azure.storage.blob.aio import ContainerClient

    from agent.mcp.config import SecretResolver
    from agent.mcp.pool import McpPool
    from agent.model import ModelClient
    from storage.batches import BatchStore
    from storage.conversations import ConversationStore
    from storage.events import RunEventLog
    from storage.questions import QuestionStore


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
    _events: RunEventLog | None = field(default=None, repr=False)
    _questions: QuestionStore | None = field(default=None, repr=False)

    @property
    def events(self) -> RunEventLog:
        """Run event logs, beside the transcripts in the same container (built on first use)."""
        if self._events is None:
            from storage.events import RunEventLog

            self._events = RunEventLog(self.container)
        return self._events

    @property
    def questions(self) -> QuestionStore:
        """Runs' questions to a person (MCP elicitations) and their answers (built on first use)."""
        if self._questions is None:
            from storage.questions import QuestionStore

            self._questions = QuestionStore(self.container)
        return self._questions

    async def aclose(self) -> None:
        await self.mcp.aclose()
        await self.model.aclose()
        await self.container.close()
        if self.secrets is not None:
            from agent.secrets import close_resolver

            await close_resolver(self.secrets)
        if self.credential is not None:
            await self.credential.close()


log = logging.getLogger("agent.runtime")

_settings: Settings | None = None
_invalid: InvalidSettings | None = None  # degraded mode: what was wrong when parsing
_runtime: Runtime | None = None
_lock: asyncio.Lock | None = None


def settings() -> Settings:
    """Settings, parsed once per process; in degraded mode raises InvalidSettings naming each
    bad setting (the process keeps it: app settings only change with a restart on Azure)."""
    global _settings, _invalid
    if _settings is None and _invalid is None:
        try:
            _settings = Settings.from_env()
        except InvalidSettings as exc:
            _invalid = exc
    if _invalid is not None:
        raise InvalidSettings(_invalid.problems)  # a fresh one: no traceback piles up per raise
    assert _settings is not None
    return _settings


def settings_problem() -> InvalidSettings | None:
    """What is wrong with the settings (degraded mode), or None when they parsed."""
    try:
        settings()
    except InvalidSettings as exc:
        return exc
    return None


def check_settings() -> Settings | None:
    """Parse the settings at startup and say once what is wrong; never raises (degraded mode)."""
    problem = settings_problem()
    if problem is not None:
        log.error(
            "the app is misconfigured; every route answers 503 until it is fixed: %s", problem
        )
        return None
    config = settings()
    for notice in config.notices:
        log.warning("settings: %s", notice)
    if config.trusts_client_principal_headers:
        # On Azure this is a settings problem (above); locally it is allowed, and said.
        log.warning(
            "REQUIRE_AUTH=true without App Service Authentication (WEBSITE_AUTH_ENABLED): caller "
            "principal headers (x-ms-client-principal*) are trusted as the client sent them"
        )
    return config


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
    """Inject a runtime (tests, local host); None forgets it (and the settings, good or bad) so
    the next call parses and builds anew."""
    global _runtime, _settings, _invalid
    _runtime = value
    _settings = value.settings if value is not None else None
    _invalid = None


async def build_runtime(
    config: Settings, *, blob_policies: Sequence[SansIOHTTPPolicy[Any, Any]] = ()
) -> Runtime:
    """`blob_policies` run on every Blob request (tests and benchmarks count them; production
    passes none)."""
    # Heavy imports happen here, on first use, not when function_app.py is imported.
    from agent.credentials import azure_credential
    from agent.elicitation import on_elicitation
    from agent.mcp.pool import McpPool
    from agent.model import build_model_client
    from agent.secrets import close_resolver, resolve_model_key, secret_resolver
    from agent.telemetry import configure_telemetry
    from storage.batches import BatchStore
    from storage.blob import container_client
    from storage.conversations import ConversationStore

    # Azure Monitor takes 1-2 s to set up: off the event loop, and only when configured.
    await asyncio.to_thread(configure_telemetry, config)
    credential = azure_credential(config.azure_client_id) if _needs_credential(config) else None
    secrets = secret_resolver(config, credential)
    # Until the runtime is built, whatever fails closes what was opened: a failing build (e.g.
    # while role assignments still spread after a deployment) is retried on every request.
    async with contextlib.AsyncExitStack() as opened:
        if credential is not None:
            opened.push_async_callback(credential.close)
        opened.push_async_callback(close_resolver, secrets)
        # The model key first: a `{"secret": NAME}` key that cannot be read fails the build
        # before any client is opened.
        model_settings = await resolve_model_key(config.model, secrets)
        container = container_client(
            config.conversations_storage,
            config.conversations_container,
            credential,
            request_policies=blob_policies,
            lean=config.blob_requests == "lean",
        )
        opened.push_async_callback(container.close)
        store = ConversationStore(container)
        await store.ensure_container()
        pool = McpPool(
            config.mcp_servers,
            secrets=secrets,
            credential=credential,
            elicitation=on_elicitation if config.elicitation else None,
        )
        model = build_model_client(model_settings, credential)
        opened.pop_all()  # built: the runtime owns them now and closes them in aclose()
    return Runtime(
        config, store, pool, model, container, BatchStore(container), credential, secrets
    )


def _needs_credential(config: Settings) -> bool:
    model = config.model
    return (
        config.storage_uses_account_url
        or model.uses_managed_identity
        or _mcp_uses_managed_identity(config)
        or config.keyvault_uri is not None
    )


def _mcp_uses_managed_identity(config: Settings) -> bool:
    # From the parsed servers, not the JSON text: the seeds' shape says `use_managed_identity`.
    from agent.mcp.config import ManagedIdentityAuth

    return any(isinstance(server.auth, ManagedIdentityAuth) for server in config.mcp_servers)
