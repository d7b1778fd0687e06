"""The MCP client layer: one pooled session per server, a tool catalog, and guarded tool calls.

    pool = McpPool(parse_mcp_servers(text), secrets=EnvSecretResolver())
    specs = await pool.list_tools()                       # → to_openai_tools(specs) for the model
    outcome = await pool.call_tool("demo__greet", {"name": "Ada"},
                                   context={"conversation_id": "c1"}, idempotency_key="run1:call1")
    await pool.aclose()

`call_tool` returns a `ToolOutcome` the model can read, including for tools it may not call and
servers that are unavailable; it raises `ToolTransportError` / `ToolTimeout` only for failures a
retry may fix (the caller, a Durable activity, decides whether to retry), and `SettingsError`
for a configuration mistake found at call time.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import mcp_types as types
from mcp import Client

from agent.errors import SettingsError, ToolTimeout, ToolTransportError
from agent.mcp.auth import AsyncTokenCredential
from agent.mcp.breaker import (
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_FAILURE_THRESHOLD,
    BreakerState,
    CircuitBreaker,
)
from agent.mcp.config import (
    PLACEHOLDER_PATTERN,
    SETTING,
    EnvSecretResolver,
    ManagedIdentityAuth,
    McpServerConfig,
    SecretResolver,
    forget_secrets,
)
from agent.mcp.failures import Failure, FailureKind, classify, unusable_result
from agent.mcp.names import SEPARATOR, candidate_servers, exposed_tool_name
from agent.mcp.render import cap, render_full, render_text
from agent.mcp.session import ServerConnection

logger = logging.getLogger("agent.mcp")

# The request `_meta` key that carries a tool call's idempotency key to the server.
IDEMPOTENCY_META_KEY = "idempotency_key"
DEFAULT_CATALOG_TTL_SECONDS = 300.0
MIN_RELIST_SECONDS = 5.0  # an unknown tool name triggers a re-list at most this often per server
MAX_LIST_PAGES = 100


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it (`exposed_name`) and as the server knows it (`server`, `tool`)."""

    exposed_name: str
    server: str
    tool: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema, pinned arguments removed
    require_approval: bool = False
    read_only: bool = False  # the server's `readOnlyHint` annotation: calling it changes nothing


@dataclass(frozen=True)
class ToolOutcome:
    is_error: bool
    text: str  # what the model reads, at most the server's output_limit_chars
    full_output: str  # the complete result as JSON, for Blob storage when `truncated`
    truncated: bool
    duration_ms: float
    # Set when the call was not sent because its server's circuit is open: seconds until the
    # breaker lets a probe through (a caller that can wait durably may try again then).
    retry_after: float | None = None


@dataclass(frozen=True)
class ServerStatus:
    """Safe to show on a health endpoint: no URLs, no secrets."""

    name: str
    connected: bool
    connects: int
    breaker: str
    consecutive_failures: int
    tools: int | None  # None: never listed successfully


def to_openai_tools(specs: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """The chat completions `tools` parameter for these tools."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.exposed_name,
                "description": spec.description,
                "parameters": _plain(spec.parameters),
            },
        }
        for spec in specs
    ]


def _plain(value: Any) -> Any:
    """Read-only mappings and tuples back into JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def model_parameters(
    input_schema: Mapping[str, Any] | None, pinned: Iterable[str]
) -> dict[str, Any]:
    """The tool's input schema without the pinned arguments, as an object schema."""
    schema = copy.deepcopy(dict(input_schema or {}))
    hidden = set(pinned)
    schema["type"] = "object"
    properties = schema.get("properties")
    schema["properties"] = {
        name: value
        for name, value in (properties.items() if isinstance(properties, dict) else ())
        if name not in hidden
    }
    required = schema.get("required")
    if isinstance(required, list):
        kept = [name for name in required if name not in hidden]
        if kept:
            schema["required"] = kept
        else:
            schema.pop("required")
    return schema


def _fill(value: Any, context: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def substitute(match: Any) -> str:
            name = match.group(1)
            if name not in context:
                provided = ", ".join(sorted(context)) or "nothing"
                raise SettingsError(
                    SETTING,
                    f"{where} uses ${{{name}}}, which the app does not provide here "
                    f"(it provides: {provided})",
                )
            return context[name]

        return PLACEHOLDER_PATTERN.sub(substitute, value)
    if isinstance(value, Mapping):
        return {key: _fill(item, context, where) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(item, context, where) for item in value]
    return value


def pinned_arguments(
    config: McpServerConfig, tool: str, context: Mapping[str, str]
) -> dict[str, Any]:
    """The tool's pinned arguments with `${placeholders}` filled from `context`."""
    return {
        name: _fill(value, context, f"server {config.name!r}, pinned argument {tool}.{name},")
        for name, value in config.pinned_for(tool).items()
    }


@dataclass(frozen=True)
class _Catalog:
    specs: tuple[ToolSpec, ...]
    not_allowed: frozenset[str]  # exposed names of tools the server offers but we don't allow
    listed_at: float


@dataclass(eq=False)
class _Server:
    config: McpServerConfig
    connection: ServerConnection
    breaker: CircuitBreaker
    catalog: _Catalog | None = None
    catalog_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    list_error: Failure | SettingsError | None = None  # why the last listing failed, if it did


class McpPool:
    """Long-lived (one per process): sessions, catalogs and breakers for all configured servers."""

    def __init__(
        self,
        configs: Sequence[McpServerConfig],
        secrets: SecretResolver | None = None,
        credential: AsyncTokenCredential | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        catalog_ttl_seconds: float = DEFAULT_CATALOG_TTL_SECONDS,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
    ) -> None:
        secrets = secrets if secrets is not None else EnvSecretResolver()
        for config in configs:
            if isinstance(config.auth, ManagedIdentityAuth) and credential is None:
                raise SettingsError(
                    SETTING,
                    f"server {config.name!r} uses managed_identity but no Azure credential was given",
                )
        self._clock = clock
        self._catalog_ttl = catalog_ttl_seconds
        self._servers = {
            config.name: _Server(
                config,
                ServerConnection(config, secrets, credential),
                CircuitBreaker(
                    config.breaker_failures or failure_threshold,
                    config.breaker_cooldown_seconds or cooldown_seconds,
                    clock,
                ),
            )
            for config in configs
        }
        self._by_exposed_name: dict[str, ToolSpec] = {}

    async def __aenter__(self) -> McpPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- catalog ------------------------------------------------------------------------------

    async def list_tools(self) -> list[ToolSpec]:
        """Every allowed tool of every server that could be listed (servers in config order)."""
        catalogs = await asyncio.gather(
            *(self._catalog(server) for server in self._servers.values())
        )
        return [spec for catalog in catalogs if catalog is not None for spec in catalog.specs]

    def _fresh(self, catalog: _Catalog | None, max_age: float) -> bool:
        return catalog is not None and self._clock() - catalog.listed_at < max_age

    async def _catalog(self, server: _Server, max_age: float | None = None) -> _Catalog | None:
        max_age = self._catalog_ttl if max_age is None else max_age
        if self._fresh(server.catalog, max_age):
            return server.catalog
        async with server.catalog_lock:  # one listing at a time per server
            if self._fresh(server.catalog, max_age):
                return server.catalog
            if not server.breaker.try_acquire():
                # Circuit open: keep the last listing, so the model still sees the tools and is
                # told the server is unavailable when it calls one.
                return server.catalog
            tools = await self._list_guarded(server)
            if tools is not None:
                server.catalog = self._build_catalog(server.config, tools)
                self._index()
            return server.catalog

    async def _list_guarded(self, server: _Server) -> list[types.Tool] | None:
        """List the server's tools, keeping its breaker and `list_error` up to date; None if it failed."""
        name = server.config.name
        try:
            tools = await server.connection.use(self._list_all)
        except SettingsError as exc:
            server.breaker.release()  # the configuration is wrong, not the server
            server.list_error = exc
            logger.error("mcp list_tools server=%s left out: %s", name, exc)
            return None
        except Exception as exc:
            failure = self._classify(server, exc)
            if failure is None:
                server.breaker.release()
                raise
            server.breaker.record_failure()
            server.list_error = failure
            _log_list_failure(name, failure)
            return None
        except BaseException:
            server.breaker.release()
            raise
        server.breaker.record_success()
        server.list_error = None
        return tools

    @staticmethod
    async def _list_all(client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    def _build_catalog(self, config: McpServerConfig, tools: list[types.Tool]) -> _Catalog:
        specs: list[ToolSpec] = []
        not_allowed: set[str] = set()
        for tool in tools:
            exposed = exposed_tool_name(config.name, tool.name)
            if not config.tools.allows(tool.name):
                not_allowed.add(exposed)
                continue
            pinned = config.pinned_for(tool.name)
            properties = (tool.input_schema or {}).get("properties") or {}
            unknown = sorted(set(pinned) - set(properties))
            if unknown:
                logger.warning(
                    "mcp server=%s tool=%s pins arguments its schema does not declare: %s",
                    config.name,
                    tool.name,
                    ", ".join(unknown),
                )
            specs.append(
                ToolSpec(
                    exposed_name=exposed,
                    server=config.name,
                    tool=tool.name,
                    description=tool.description or tool.title or "",
                    parameters=MappingProxyType(model_parameters(tool.input_schema, pinned)),
                    require_approval=tool.name in config.tools.require_approval,
                    read_only=bool(tool.annotations and tool.annotations.read_only_hint),
                )
            )
        if config.tools.allow is not None:
            missing = sorted(config.tools.allow - {tool.name for tool in tools})
            if missing:
                logger.warning(
                    "mcp server=%s does not offer allowed tool(s): %s",
                    config.name,
                    ", ".join(missing),
                )
        return _Catalog(tuple(specs), frozenset(not_allowed), self._clock())

    def _index(self) -> None:
        index: dict[str, ToolSpec] = {}
        for server in self._servers.values():
            for spec in server.catalog.specs if server.catalog else ():
                if spec.exposed_name in index:
                    logger.error(
                        "mcp tool name collision: %s (server=%s)", spec.exposed_name, spec.server
                    )
                    continue
                index[spec.exposed_name] = spec
        self._by_exposed_name = index

    def server_of(self, exposed_name: str) -> str | None:
        """The configured server behind a model-facing tool name, once this process listed it."""
        spec = self._by_exposed_name.get(exposed_name)
        return spec.server if spec is not None else None

    def requires_approval(self, exposed_name: str) -> bool:
        """Whether the configuration asks a person before the tool behind this name runs (its
        server's `require_approval` list), known without listing the server: a server that
        cannot be listed right now still gets its question asked."""
        return any(
            exposed_tool_name(server.config.name, tool) == exposed_name
            for server in self._servers.values()
            for tool in server.config.tools.require_approval
        )

    async def may_repeat(self, exposed_name: str) -> bool:
        """Whether a call to this tool whose outcome is unknown (cut off by a crash) may be sent
        again: the tool says it is read-only, or its server is declared to apply a call at most
        once per idempotency key (`idempotent_calls`).

        Decided from the server's configuration and the tool's spec whatever the server's
        circuit says: this asks what the tool is, not whether it can be called now (a call
        that cannot waits for the server anyway), and a cut-off read-only call is asked
        about only when its tool list cannot be had at all."""
        owner = self._owner(exposed_name)
        if owner is not None and owner.config.idempotent_calls:
            return True
        spec = self._by_exposed_name.get(exposed_name)
        if spec is None and owner is not None:
            spec = await self._spec_past_breaker(owner, exposed_name)
        if spec is None:
            return False
        return spec.read_only or self._servers[spec.server].config.idempotent_calls

    async def _spec_past_breaker(self, server: _Server, exposed_name: str) -> ToolSpec | None:
        """The tool's spec from a listing made whatever the breaker says (listing changes
        nothing on the server), which gives the breaker no verdict either; None if the server
        cannot be listed."""
        async with server.catalog_lock:
            if exposed_name not in self._by_exposed_name:
                try:
                    tools = await server.connection.use(self._list_all)
                except Exception as exc:
                    failure = self._classify(server, exc)
                    if failure is None:
                        raise
                    _log_list_failure(server.config.name, failure)
                    return None
                server.catalog = self._build_catalog(server.config, tools)
                self._index()
        return self._by_exposed_name.get(exposed_name)

    def _owner(self, exposed_name: str) -> _Server | None:
        """The configured server whose prefix this model-facing name carries, if any."""
        for name in candidate_servers(exposed_name, list(self._servers)):
            if exposed_name.startswith(f"{name}{SEPARATOR}"):
                return self._servers[name]
        return None

    async def _resolve(self, exposed_name: str) -> tuple[ToolSpec | None, str, str]:
        """The tool behind a model-facing name, listing servers if this process has not yet.

        Returns (spec, refusal, outcome): a refusal text for the model when there is no spec.
        Raises like a call would when the owning server could not be listed for a transport reason.
        """
        spec = self._by_exposed_name.get(exposed_name)
        if spec is not None:
            return spec, "", ""
        owners = candidate_servers(exposed_name, list(self._servers))
        owner_known = any(exposed_name.startswith(f"{name}{SEPARATOR}") for name in owners)
        for name in owners:
            server = self._servers[name]
            # Another worker may have listed (and shown the model) a tool this process has not seen.
            failures_before = server.breaker.consecutive_failures
            await self._catalog(server, max_age=MIN_RELIST_SECONDS)
            spec = self._by_exposed_name.get(exposed_name)
            if spec is not None:
                return spec, "", ""
            if server.catalog is not None and exposed_name in server.catalog.not_allowed:
                return (
                    None,
                    f"tool {exposed_name!r} is not allowed by this app's configuration",
                    "refused",
                )
            if owner_known and server.catalog is None:
                just_failed = server.breaker.consecutive_failures > failures_before
                return self._unlisted(server, just_failed)
        return None, f"unknown tool {exposed_name!r}: call only the tools you were given", "refused"

    def _unlisted(self, server: _Server, just_failed: bool) -> tuple[None, str, str]:
        """The name's server could not be listed here: answer as a call to it would have."""
        name = server.config.name
        error = server.list_error
        if isinstance(error, SettingsError):
            raise error
        if error is None or not just_failed:  # nothing tried now: the breaker held it back
            return None, self._circuit_open_text(server), "circuit_open"
        if error.kind is FailureKind.AUTH:
            return None, self._auth_text(name, error), "auth_error"
        if error.kind is FailureKind.TIMEOUT:
            raise ToolTimeout(f"MCP server {name!r} did not list its tools in time ({error.cause})")
        # The call waits on this listing: it was never sent.
        raise ToolTransportError(
            f"MCP server {name!r} is unreachable ({error.cause})", maybe_sent=False
        )

    @staticmethod
    def _circuit_open_text(server: _Server) -> str:
        return (
            f"server {server.config.name} is unavailable (circuit open after "
            f"{server.breaker.consecutive_failures} failures); try again later"
        )

    @staticmethod
    def _auth_text(name: str, failure: Failure) -> str:
        return f"server {name} rejected the app's credentials ({failure.cause}); tell the operator"

    # --- calls --------------------------------------------------------------------------------

    async def call_tool(
        self,
        exposed_name: str,
        arguments: dict[str, Any],
        *,
        context: Mapping[str, str],
        idempotency_key: str,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> ToolOutcome:
        """Call the tool. `before_send` runs once the call is sure to go to the server (it
        passed every check and the breaker), just before it is sent: the activity records
        there that the call's outcome is unknown until its result is stored."""
        started = time.perf_counter()
        spec, refusal, label = await self._resolve(exposed_name)
        if spec is None:
            owner = self._owner(exposed_name) if label == "circuit_open" else None
            wait = owner.breaker.seconds_until_probe() if owner is not None else None
            return self._refuse(exposed_name, refusal, label, started, retry_after=wait)
        server = self._servers[spec.server]
        if not isinstance(arguments, dict):
            return self._refuse(exposed_name, "arguments must be a JSON object", "refused", started)
        pinned = pinned_arguments(server.config, spec.tool, context)
        overridden = sorted(set(arguments) & set(pinned))
        if overridden:
            logger.info(
                "mcp call server=%s tool=%s ignored model values for pinned argument(s): %s",
                spec.server,
                spec.tool,
                ", ".join(overridden),
            )
        merged = {**arguments, **pinned}  # pinned last: the model cannot override them
        if not server.breaker.try_acquire():
            return self._refuse(
                exposed_name,
                self._circuit_open_text(server),
                "circuit_open",
                started,
                retry_after=server.breaker.seconds_until_probe(),
            )
        if before_send is not None:
            try:
                await before_send()
            except BaseException:
                server.breaker.release()  # nothing was sent: no verdict on the server
                raise
        return await self._call(server, spec, merged, idempotency_key, started)

    async def _call(
        self,
        server: _Server,
        spec: ToolSpec,
        arguments: dict[str, Any],
        idempotency_key: str,
        started: float,
    ) -> ToolOutcome:
        config = server.config
        session_open = False  # until a session is up, the request certainly has not left

        async def call(client: Client) -> types.CallToolResult:
            nonlocal session_open
            session_open = True
            try:
                return await client.call_tool(
                    spec.tool,
                    arguments,
                    read_timeout_seconds=config.timeout_seconds,
                    meta={IDEMPOTENCY_META_KEY: idempotency_key},
                )
            except RuntimeError as exc:
                raise unusable_result(exc) from None

        try:
            result = await server.connection.use(call)
        except SettingsError:
            server.breaker.release()
            raise
        except Exception as exc:
            failure = self._classify(server, exc)
            if failure is None:
                server.breaker.release()
                raise
            return self._failed(server, spec, failure, started, maybe_sent=session_open)
        except BaseException:
            server.breaker.release()
            raise
        server.breaker.record_success()
        text, truncated = cap(render_text(result), config.output_limit_chars)
        outcome = ToolOutcome(result.is_error, text, render_full(result), truncated, _ms(started))
        self._log(
            spec.server, spec.tool, "tool_error" if result.is_error else "ok", outcome.duration_ms
        )
        return outcome

    def _failed(
        self,
        server: _Server,
        spec: ToolSpec,
        failure: Failure,
        started: float,
        *,
        maybe_sent: bool = True,
    ) -> ToolOutcome:
        """A server that answered with an error, or rejected our credentials → the model is told;
        a transport failure or timeout → raised for the caller to retry. `maybe_sent` is False
        when the failure came before the request could leave (opening the session)."""
        name = spec.server
        self._log(name, spec.tool, failure.kind.value, _ms(started), failure.cause)
        if failure.kind is FailureKind.SERVER_ERROR:
            server.breaker.record_success()  # it answered: the server itself is up
            text = f"server {name} rejected the call: {failure.server_message}"
            return self._error_outcome(text, server.config.output_limit_chars, started)
        server.breaker.record_failure()
        if failure.kind is FailureKind.AUTH:
            logger.error("mcp server=%s rejected the app's credentials (%s)", name, failure.cause)
            text = self._auth_text(name, failure)
            return self._error_outcome(text, server.config.output_limit_chars, started)
        if failure.kind is FailureKind.TIMEOUT:
            raise ToolTimeout(
                f"MCP server {name!r} did not answer tool {spec.tool!r} within "
                f"{server.config.timeout_seconds:g} s ({failure.cause})"
            ) from None
        raise ToolTransportError(
            f"MCP server {name!r} is unreachable ({failure.cause})", maybe_sent=maybe_sent
        ) from None

    def _classify(self, server: _Server, exc: BaseException) -> Failure | None:
        failure = classify(exc, server.connection.last_http_error_status())
        if failure is not None and failure.kind is FailureKind.AUTH:
            # Perhaps a rotated key: the next connect reads this server's secrets again.
            forget_secrets(server.connection.secrets, server.config)
        return failure

    def _refuse(
        self,
        exposed_name: str,
        text: str,
        outcome: str,
        started: float,
        retry_after: float | None = None,
    ) -> ToolOutcome:
        self._log("-", exposed_name, outcome, _ms(started))
        refused = self._error_outcome(text, len(text), started)
        return replace(refused, retry_after=retry_after) if retry_after is not None else refused

    @staticmethod
    def _error_outcome(text: str, limit: int, started: float) -> ToolOutcome:
        result = types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
        capped, truncated = cap(text, limit)
        return ToolOutcome(True, capped, render_full(result), truncated, _ms(started))

    @staticmethod
    def _log(server: str, tool: str, outcome: str, duration_ms: float, cause: str = "") -> None:
        # Never the arguments or the result: they may hold conversation content.
        logger.info(
            "mcp call server=%s tool=%s outcome=%s duration_ms=%.1f%s",
            server,
            tool,
            outcome,
            duration_ms,
            f" cause={cause}" if cause else "",
        )

    # --- lifecycle and status -----------------------------------------------------------------

    def status(self) -> list[ServerStatus]:
        return [
            ServerStatus(
                name=name,
                connected=server.connection.connected,
                connects=server.connection.connects,
                breaker=server.breaker.state.value,
                consecutive_failures=server.breaker.consecutive_failures,
                tools=None if server.catalog is None else len(server.catalog.specs),
            )
            for name, server in self._servers.items()
        ]

    def breaker_state(self, server: str) -> BreakerState:
        return self._servers[server].breaker.state

    def connects(self, server: str) -> int:
        """How many sessions have been opened to `server` (for tests and diagnostics)."""
        return self._servers[server].connection.connects

    async def aclose(self) -> None:
        await asyncio.gather(*(server.connection.aclose() for server in self._servers.values()))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _log_list_failure(server: str, failure: Failure) -> None:
    logger.warning(
        "mcp list_tools server=%s failed outcome=%s cause=%s",
        server,
        failure.kind.value,
        failure.cause,
    )
