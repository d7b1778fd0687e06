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

The pool composes the parts, each with one job: `policy` decides (no I/O), `catalog` keeps the
listings, `guard` puts each request under its server's breaker, `session` holds the connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import mcp_types as types
from mcp import Client
from mcp.client.session import ElicitationFnT
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from agent.errors import SettingsError, ToolTimeout, ToolTransportError
from agent.mcp import policy
from agent.mcp.auth import AsyncTokenCredential
from agent.mcp.breaker import DEFAULT_COOLDOWN_SECONDS, DEFAULT_FAILURE_THRESHOLD, CircuitBreaker
from agent.mcp.catalog import (
    DEFAULT_CATALOG_TTL_SECONDS,
    Catalog,
    Fetched,
    Listing,
    ToolSpec,
    to_openai_tools,
)
from agent.mcp.config import (
    DEFAULT_OUTPUT_LIMIT_CHARS,
    SETTING,
    EnvSecretResolver,
    ManagedIdentityAuth,
    McpServerConfig,
    SecretResolver,
    forget_secrets,
)
from agent.mcp.dispatch import Call, ToolOutcome, error_outcome, refused, send
from agent.mcp.failures import Failure, FailureKind, classify
from agent.mcp.guard import BreakerGuard, CircuitOpen, ServerFailed
from agent.mcp.names import candidate_servers
from agent.mcp.policy import ARGUMENTS_NOT_AN_OBJECT, Refusal, Unlisted
from agent.mcp.session import ServerConnection
from agent.mcp.tasks import TaskState, cancel_task, get_task, update_task

__all__ = ["McpPool", "ServerStatus", "ToolOutcome", "ToolSpec", "to_openai_tools"]

logger = logging.getLogger("agent.mcp")

TaskResultT = TypeVar("TaskResultT")
MIN_RELIST_SECONDS = 5.0  # an unknown tool name triggers a re-list at most this often per server
MAX_LIST_PAGES = 100
# What a caller outside a run (that cannot poll) reads when the server answered with a task.
TASK_NOT_WANTED = (
    "the server ran the call as a task, which this caller cannot wait for; the task was cancelled"
)


@dataclass(frozen=True)
class ServerStatus:
    """Safe to show on a health endpoint: no URLs, no secrets."""

    name: str
    connected: bool
    connects: int
    breaker: str
    consecutive_failures: int
    tools: int | None  # None: never listed successfully


@dataclass(eq=False)
class _Server:
    config: McpServerConfig
    connection: ServerConnection
    breaker: CircuitBreaker


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
        elicitation: ElicitationFnT | None = None,
    ) -> None:
        """`elicitation`: asks a person when a server elicits mid-call (`agent.elicitation`);
        without it servers are told this client cannot be asked."""
        secrets = secrets if secrets is not None else EnvSecretResolver()
        for config in configs:
            if isinstance(config.auth, ManagedIdentityAuth) and credential is None:
                raise SettingsError(
                    SETTING,
                    f"server {config.name!r} uses managed_identity but no Azure credential was given",
                )
        self._servers = {
            config.name: _Server(
                config,
                ServerConnection(config, secrets, credential, elicitation),
                CircuitBreaker(
                    config.breaker_failures or failure_threshold,
                    config.breaker_cooldown_seconds or cooldown_seconds,
                    clock,
                ),
            )
            for config in configs
        }
        self._catalog = Catalog(configs, clock, catalog_ttl_seconds)

    async def __aenter__(self) -> McpPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- catalog ------------------------------------------------------------------------------

    async def list_tools(self) -> list[ToolSpec]:
        """Every allowed tool of every server that could be listed (servers in config order)."""
        await asyncio.gather(*(self._refresh(server) for server in self._servers.values()))
        return self._catalog.specs()

    async def _refresh(self, server: _Server, max_age: float | None = None) -> Listing | None:
        fetch = partial(self._fetch, server, server.breaker)
        return await self._catalog.refresh(server.config.name, fetch, max_age)

    async def _fetch(self, server: _Server, breaker: CircuitBreaker | None) -> Fetched:
        """List the server's tools under `breaker` (None: whatever the circuit says, and giving
        it no verdict); a failure is logged and reported, not raised."""
        name = server.config.name
        try:
            async with BreakerGuard(breaker, partial(self._classify, server)) as guard:
                return await guard.call(partial(server.connection.use, _list_all))
        except CircuitOpen:
            return None
        except SettingsError as exc:  # the configuration is wrong, not the server
            logger.error("mcp list_tools server=%s left out: %s", name, exc)
            return exc
        except ServerFailed as failed:
            logger.warning(
                "mcp list_tools server=%s failed outcome=%s cause=%s",
                name,
                failed.failure.kind.value,
                failed.failure.cause,
            )
            return failed.failure

    def server_of(self, exposed_name: str) -> str | None:
        """The configured server behind a model-facing tool name, once this process listed it."""
        spec = self._catalog.spec(exposed_name)
        return spec.server if spec is not None else None

    def requires_approval(self, exposed_name: str) -> bool:
        """Whether a person must approve the tool behind this name before it runs: its
        server's `require_approval` list (known without listing the server), or its listing
        here (annotated destructive, `policy.needs_approval`)."""
        spec = self._catalog.spec(exposed_name)
        configs = (s.config for s in self._servers.values())
        return policy.requires_approval(
            configs, exposed_name, spec is not None and spec.require_approval
        )

    async def approval_needed(self, exposed_name: str) -> bool:
        """`requires_approval`, after listing the tool's server if this process has not yet
        (as a call would): the check a tool call makes before it is sent, so a destructive
        tool never runs unasked on a worker that had not seen its annotations. Raises as a
        call would when the server cannot be listed for a reason a retry may fix."""
        if self.requires_approval(exposed_name):
            return True
        spec = await self._resolve(exposed_name)
        return isinstance(spec, ToolSpec) and spec.require_approval

    async def may_repeat(self, exposed_name: str) -> bool:
        """Whether a call to this tool whose outcome is unknown (cut off by a crash) may be sent
        again (`policy.may_repeat`).

        Decided from the server's configuration and the tool's spec whatever the server's
        circuit says: this asks what the tool is, not whether it can be called now (a call
        that cannot waits for the server anyway), and a cut-off read-only call is asked
        about only when its tool list cannot be had at all."""
        owner = self._owner(exposed_name)
        if owner is not None and policy.may_repeat(owner.config):  # its server honours the key
            return True
        spec = self._catalog.spec(exposed_name)
        if spec is None and owner is not None:
            spec = await self._spec_past_breaker(owner, exposed_name)
        if spec is None:
            return False
        return policy.may_repeat(self._servers[spec.server].config, spec.read_only)

    async def _spec_past_breaker(self, server: _Server, exposed_name: str) -> ToolSpec | None:
        """The tool's spec from a listing made whatever the breaker says (listing changes
        nothing on the server), which gives the breaker no verdict either; None if the server
        cannot be listed. Re-listed at most every `MIN_RELIST_SECONDS`, like an unknown name."""
        name = server.config.name
        fetch = partial(self._fetch, server, None)
        await self._catalog.refresh(name, fetch, max_age=MIN_RELIST_SECONDS)
        error = self._catalog.error(name)
        if isinstance(error, SettingsError):
            raise error
        return self._catalog.spec(exposed_name)

    def _owner(self, exposed_name: str) -> _Server | None:
        """The configured server whose prefix this model-facing name carries, if any."""
        name = policy.owner_of(exposed_name, list(self._servers))
        return self._servers[name] if name is not None else None

    async def _resolve(self, exposed_name: str) -> ToolSpec | Refusal:
        """The tool behind a model-facing name, listing servers if this process has not yet;
        else why the call is answered locally. Raises like a call would when the owning server
        could not be listed for a reason a retry may fix."""
        spec = self._catalog.spec(exposed_name)
        if spec is not None:
            return spec
        owner_known = self._owner(exposed_name) is not None
        for name in candidate_servers(exposed_name, list(self._servers)):
            server = self._servers[name]
            # Another worker may have listed (and shown the model) a tool this process has not seen.
            failures_before = server.breaker.consecutive_failures
            listing = await self._refresh(server, max_age=MIN_RELIST_SECONDS)
            spec = self._catalog.spec(exposed_name)
            if spec is not None:
                return spec
            if listing is not None and exposed_name in listing.not_allowed:
                return policy.not_allowed(exposed_name)
            if owner_known and listing is None:
                just_failed = server.breaker.consecutive_failures > failures_before
                return self._unlisted(server, just_failed)
        return policy.unknown_tool(exposed_name)

    def _unlisted(self, server: _Server, just_failed: bool) -> Refusal:
        """The name's server could not be listed here: answer as a call to it would have."""
        name = server.config.name
        error = self._catalog.error(name)
        verdict = policy.unlisted(error, just_failed)
        if verdict is Unlisted.CIRCUIT_OPEN:
            breaker = server.breaker
            return policy.circuit_open(
                name, breaker.consecutive_failures, breaker.seconds_until_probe()
            )
        if isinstance(error, SettingsError):
            raise error
        assert isinstance(error, Failure)  # policy.unlisted says so for the other verdicts
        if verdict is Unlisted.AUTH:
            return policy.auth_rejected(name, error)
        if verdict is Unlisted.TIMEOUT:
            raise ToolTimeout(f"MCP server {name!r} did not list its tools in time ({error.cause})")
        # The call waits on this listing: it was never sent.
        raise ToolTransportError(
            f"MCP server {name!r} is unreachable ({error.cause})", maybe_sent=False
        )

    # --- calls --------------------------------------------------------------------------------

    async def call_tool(
        self,
        exposed_name: str,
        arguments: object,  # the model's JSON: refused unless it is an object
        *,
        context: Mapping[str, str],
        idempotency_key: str,
        before_send: Callable[[], Awaitable[None]] | None = None,
        accept_task: bool = False,
    ) -> ToolOutcome:
        """Call the tool. `before_send` runs once the call is sure to go to the server (it
        passed every check and the breaker), just before it is sent: the activity records
        there that the call's outcome is unknown until its result is stored.

        Every session advertises tasks, so any server may answer with one; only a caller
        that polls (`accept_task`: the run's tool-call activity) gets it. Anyone else gets an
        error outcome and the task is cancelled: no caller outside a run waits for a task."""
        started = time.perf_counter()
        spec = await self._resolve(exposed_name)
        if isinstance(spec, Refusal):
            return refused(exposed_name, spec, started)
        if not isinstance(arguments, dict):
            return refused(exposed_name, Refusal(ARGUMENTS_NOT_AN_OBJECT, "refused"), started)
        server = self._servers[spec.server]
        call = Call(
            spec, self._arguments(server, spec, arguments, context), idempotency_key, started
        )
        try:
            async with BreakerGuard(server.breaker, partial(self._classify, server)) as guard:
                if before_send is not None:
                    await before_send()  # fails: nothing was sent, the guard gives no verdict
                outcome = await send(call, server.connection, server.config, guard)
        except CircuitOpen as open_circuit:
            refusal = policy.circuit_open(
                spec.server, open_circuit.failures, open_circuit.retry_after
            )
            return refused(exposed_name, refusal, started)
        if outcome.task is None or accept_task:
            return outcome
        await self._cancel_unwanted(spec.server, outcome.task.task_id)
        return error_outcome(TASK_NOT_WANTED, len(TASK_NOT_WANTED), started)

    async def _cancel_unwanted(self, server_name: str, task_id: str) -> None:
        try:
            await self.cancel_task(server_name, task_id)
        except (ToolTransportError, ToolTimeout) as exc:  # its TTL ends it; the caller is told
            logger.warning("mcp tasks/cancel server=%s failed: %s", server_name, exc)

    # --- tasks (agent.mcp.tasks): a call the server made a task is polled, or cancelled -------

    async def task_state(self, server_name: str, task_id: str) -> TaskState | None:
        """The task as its server reports it; None when the server no longer knows it (its
        TTL passed, or it was lost) or is no longer configured. Raises `ToolTransportError` /
        `ToolTimeout` when asking again later may get an answer."""
        server = self._servers.get(server_name)
        if server is None:
            return None
        timeout = server.config.timeout_seconds
        try:
            return await self._task_request(server, lambda c: get_task(c.session, task_id, timeout))
        except MCPError as exc:
            # SEP-2663: an unknown (or expired) task id is answered with Invalid params. The SDK
            # raises MCPError for its own transport failures too, and a server may fail a get
            # for a passing reason: those are asked again next round, never taken as expiry.
            if exc.error.code != INVALID_PARAMS:
                raise self._task_failure(server, exc) from None
            logger.info("mcp tasks/get server=%s unknown task", server_name)
            return None

    async def cancel_task(self, server_name: str, task_id: str) -> bool:
        """Ask the server to cancel the task; False if it answered with an error (e.g. the
        task is unknown or already ended). Raises like `task_state` when it cannot be reached."""
        server = self._servers.get(server_name)
        if server is None:
            return False
        timeout = server.config.timeout_seconds
        try:
            await self._task_request(server, lambda c: cancel_task(c.session, task_id, timeout))
        except MCPError as exc:
            logger.info("mcp tasks/cancel server=%s refused (%s)", server_name, exc.error.code)
            return False
        return True

    async def update_task(self, server_name: str, task_id: str, responses: dict[str, Any]) -> bool:
        """Send the answers to a task's input requests (`tasks/update`); False if the server
        answered with an error (the task ended, or no longer waits for them). Raises like
        `task_state` when it cannot be reached."""
        server = self._servers.get(server_name)
        if server is None:
            return False
        timeout = server.config.timeout_seconds

        async def send(c: Client) -> None:
            await update_task(c.session, task_id, responses, timeout)

        try:
            await self._task_request(server, send)
        except MCPError as exc:
            logger.info("mcp tasks/update server=%s refused (%s)", server_name, exc.error.code)
            return False
        return True

    def output_limit(self, server_name: str) -> int:
        """How many characters of a result from this server the model reads."""
        server = self._servers.get(server_name)
        return (
            server.config.output_limit_chars if server is not None else DEFAULT_OUTPUT_LIMIT_CHARS
        )

    async def _task_request(
        self, server: _Server, operation: Callable[[Client], Awaitable[TaskResultT]]
    ) -> TaskResultT:
        """A tasks/* request on the server's session, failures shaped as a tool call's.

        Not under the server's breaker: a poll that fails is simply asked again at the next
        interval by the orchestrator (and a cancel is best effort), so an open circuit would
        only delay learning that a task ended."""
        try:
            return await server.connection.use(operation)
        except MCPError:
            raise
        except Exception as exc:
            if self._classify(server, exc) is None:
                raise
            raise self._task_failure(server, exc) from None

    def _task_failure(self, server: _Server, exc: Exception) -> ToolTimeout | ToolTransportError:
        """A tasks/* request that failed in a way a later request may not: a timeout, or else
        a transport error (an error the server answered with included: asked again later)."""
        name = server.config.name
        failure = self._classify(server, exc)
        if failure is not None and failure.kind is FailureKind.TIMEOUT:
            return ToolTimeout(f"MCP server {name!r} did not answer about a task")
        cause = failure.cause if failure is not None else type(exc).__name__
        return ToolTransportError(f"MCP server {name!r} is unreachable ({cause})", maybe_sent=True)

    @staticmethod
    def _arguments(
        server: _Server, spec: ToolSpec, arguments: dict[str, Any], context: Mapping[str, str]
    ) -> dict[str, Any]:
        pinned = policy.pinned_arguments(server.config, spec.tool, context)
        merged, overridden = policy.merge_arguments(arguments, pinned)
        if overridden:
            logger.info(
                "mcp call server=%s tool=%s ignored model values for pinned argument(s): %s",
                spec.server,
                spec.tool,
                ", ".join(overridden),
            )
        return merged

    def _classify(self, server: _Server, exc: BaseException) -> Failure | None:
        failure = classify(exc, server.connection.last_http_error_status())
        if failure is not None and failure.kind is FailureKind.AUTH:
            # Perhaps a rotated key: the next connect reads this server's secrets again.
            forget_secrets(server.connection.secrets, server.config)
        return failure

    # --- lifecycle and status -----------------------------------------------------------------

    def status(self) -> list[ServerStatus]:
        return [self._status(name, server) for name, server in self._servers.items()]

    def _status(self, name: str, server: _Server) -> ServerStatus:
        listing = self._catalog.listing(name)
        return ServerStatus(
            name=name,
            connected=server.connection.connected,
            connects=server.connection.connects,
            breaker=server.breaker.state.value,
            consecutive_failures=server.breaker.consecutive_failures,
            tools=None if listing is None else len(listing.specs),
        )

    async def aclose(self) -> None:
        await asyncio.gather(*(server.connection.aclose() for server in self._servers.values()))


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
