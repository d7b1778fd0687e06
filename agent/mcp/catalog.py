"""The tool catalog: each server's listing as specs the model may see, cached for a TTL, and the
index from model-facing names to the tools behind them.

The catalog does not talk to servers: `refresh` is handed a `fetch` that lists one server (under
its breaker, or not) and reports what happened. A failed or refused listing keeps the last one,
so the model still sees the tools of a server that is down and is told so when it calls one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import mcp_types as types

from agent.errors import SettingsError
from agent.mcp import policy
from agent.mcp.config import McpServerConfig
from agent.mcp.failures import Failure
from agent.mcp.names import exposed_tool_name

logger = logging.getLogger("agent.mcp")

DEFAULT_CATALOG_TTL_SECONDS = 300.0


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it (`exposed_name`) and as the server knows it (`server`, `tool`)."""

    exposed_name: str
    server: str
    tool: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema, pinned arguments removed
    require_approval: bool = False  # configured, or annotated destructive (policy.needs_approval)
    read_only: bool = False  # annotated read-only: calling it changes nothing
    # Not annotated `openWorldHint: false`: its output may come from anyone (the model is told).
    open_world: bool = True


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


@dataclass(frozen=True)
class Listing:
    """One successful listing of one server."""

    specs: tuple[ToolSpec, ...]
    not_allowed: frozenset[str]  # exposed names of tools the server offers but we don't allow
    listed_at: float


# What a fetch reports: the server's tools; why listing failed; or None: not tried (the breaker
# held it back).
Fetched = list[types.Tool] | Failure | SettingsError | None
Fetch = Callable[[], Awaitable[Fetched]]


def build_listing(config: McpServerConfig, tools: Sequence[types.Tool], now: float) -> Listing:
    """The specs of the tools the configuration allows, the names of those it does not."""
    specs = tuple(_spec(config, tool) for tool in tools if config.tools.allows(tool.name))
    not_allowed = frozenset(
        exposed_tool_name(config.name, tool.name)
        for tool in tools
        if not config.tools.allows(tool.name)
    )
    missing = policy.missing_allowed(config, (tool.name for tool in tools))
    if missing:
        logger.warning(
            "mcp server=%s does not offer allowed tool(s): %s", config.name, ", ".join(missing)
        )
    return Listing(specs, not_allowed, now)


def _spec(config: McpServerConfig, tool: types.Tool) -> ToolSpec:
    unknown = policy.unknown_pins(config, tool.name, tool.input_schema)
    if unknown:
        logger.warning(
            "mcp server=%s tool=%s pins arguments its schema does not declare: %s",
            config.name,
            tool.name,
            ", ".join(unknown),
        )
    return ToolSpec(
        exposed_name=exposed_tool_name(config.name, tool.name),
        server=config.name,
        tool=tool.name,
        description=tool.description or tool.title or "",
        parameters=MappingProxyType(
            policy.model_parameters(tool.input_schema, config.pinned_for(tool.name))
        ),
        require_approval=policy.needs_approval(config, tool.name, tool.annotations),
        read_only=policy.declares_read_only(tool.annotations),
        open_world=policy.reaches_open_world(tool.annotations),
    )


@dataclass(eq=False)
class _Entry:
    config: McpServerConfig
    listing: Listing | None = None
    error: Failure | SettingsError | None = None  # why the last listing failed, if it did
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Catalog:
    """The listings of all configured servers (in configuration order) and their name index."""

    def __init__(
        self,
        configs: Sequence[McpServerConfig],
        clock: Callable[[], float] = time.monotonic,
        ttl_seconds: float = DEFAULT_CATALOG_TTL_SECONDS,
    ) -> None:
        self._entries = {config.name: _Entry(config) for config in configs}
        self._clock = clock
        self._ttl = ttl_seconds
        self._index: dict[str, ToolSpec] = {}

    def spec(self, exposed_name: str) -> ToolSpec | None:
        """The tool behind a model-facing name, once its server was listed here."""
        return self._index.get(exposed_name)

    def listing(self, server: str) -> Listing | None:
        return self._entries[server].listing

    def error(self, server: str) -> Failure | SettingsError | None:
        """Why the server's last listing failed (None once one succeeds)."""
        return self._entries[server].error

    def specs(self) -> list[ToolSpec]:
        """Every listed spec, servers in configuration order."""
        return [
            spec
            for entry in self._entries.values()
            for spec in (entry.listing.specs if entry.listing else ())
        ]

    async def refresh(
        self, server: str, fetch: Fetch, max_age: float | None = None
    ) -> Listing | None:
        """The server's listing, fetched again if older than `max_age` (default: the TTL); one
        fetch at a time per server, and callers waiting on it share its result."""
        entry = self._entries[server]
        max_age = self._ttl if max_age is None else max_age
        if self._fresh(entry, max_age):
            return entry.listing
        async with entry.lock:
            if not self._fresh(entry, max_age):
                self._keep(entry, await fetch())
            return entry.listing

    def _fresh(self, entry: _Entry, max_age: float) -> bool:
        listing = entry.listing
        return listing is not None and self._clock() - listing.listed_at < max_age

    def _keep(self, entry: _Entry, fetched: Fetched) -> None:
        if fetched is None:
            return
        if isinstance(fetched, Failure | SettingsError):
            entry.error = fetched
            return
        entry.listing = build_listing(entry.config, fetched, self._clock())
        entry.error = None
        self._reindex()

    def _reindex(self) -> None:
        index: dict[str, ToolSpec] = {}
        for spec in self.specs():
            if spec.exposed_name in index:
                logger.error(
                    "mcp tool name collision: %s (server=%s)", spec.exposed_name, spec.server
                )
                continue
            index[spec.exposed_name] = spec
        self._index = index
