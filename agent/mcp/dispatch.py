"""One tool call sent on its server's session, and what comes back shaped as a `ToolOutcome`:
a result or a failure the model reads, or an exception for the caller to retry.

Logs name the server, the tool, the outcome and the duration: never the arguments or the
result, which may hold conversation content.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Final

import mcp_types as types
from mcp import Client

from agent.errors import ToolTimeout, ToolTransportError
from agent.mcp import policy
from agent.mcp.catalog import ToolSpec
from agent.mcp.config import McpServerConfig
from agent.mcp.failures import Failure, FailureKind, unusable_result
from agent.mcp.guard import BreakerGuard, ServerFailed
from agent.mcp.render import cap, render_full, render_text
from agent.mcp.session import ServerConnection
from agent.mcp.tasks import TaskCreated, TaskHandle

logger = logging.getLogger("agent.mcp")

# The request `_meta` key that carries a tool call's idempotency key to the server.
IDEMPOTENCY_META_KEY: Final = "idempotency_key"


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
    # Set when the server made the call a task (agent.mcp.tasks): no result yet; `text` is empty.
    task: TaskHandle | None = None


@dataclass(frozen=True)
class Call:
    """A tool call ready to send: checked, its pinned arguments merged in."""

    spec: ToolSpec
    arguments: dict[str, Any]
    idempotency_key: str
    started: float  # time.perf_counter() when the pool was asked


def _meta(idempotency_key: str) -> types.RequestParamsMeta:
    # RequestParamsMeta is an open map (`extra_items=Any`, PEP 728), which mypy does not read yet
    return {IDEMPOTENCY_META_KEY: idempotency_key}  # type: ignore[typeddict-unknown-key]


async def send(
    call: Call, connection: ServerConnection, config: McpServerConfig, guard: BreakerGuard
) -> ToolOutcome:
    """Send the call under `guard`; raises `ToolTimeout` / `ToolTransportError` when a retry
    may fix the failure (`maybe_sent` False while no session was up to carry the request)."""
    session_open = False  # until a session is up, the request certainly has not left

    async def request(client: Client) -> types.CallToolResult | TaskHandle:
        nonlocal session_open
        session_open = True
        try:
            return await client.call_tool(
                call.spec.tool,
                call.arguments,
                read_timeout_seconds=config.timeout_seconds,
                meta=_meta(call.idempotency_key),
            )
        except TaskCreated as created:  # the server runs it as a task: the caller polls
            return created.handle
        except RuntimeError as exc:
            raise unusable_result(exc) from None

    try:
        result = await guard.call(partial(connection.use, request))
    except ServerFailed as failed:
        return _failed(call, config, failed.failure, maybe_sent=session_open)
    if isinstance(result, TaskHandle):
        log_call(call.spec.server, call.spec.tool, "task", elapsed_ms(call.started))
        return ToolOutcome(False, "", "", False, elapsed_ms(call.started), task=result)
    outcome = outcome_of(result, config.output_limit_chars, call.started)
    label = "tool_error" if result.is_error else "ok"
    log_call(call.spec.server, call.spec.tool, label, outcome.duration_ms)
    return outcome


def outcome_of(result: types.CallToolResult, limit: int, started: float) -> ToolOutcome:
    """A tool's result as the model reads it (also a completed task's, agent.mcp.tasks)."""
    text, truncated = cap(render_text(result), limit)
    return ToolOutcome(result.is_error, text, render_full(result), truncated, elapsed_ms(started))


def _failed(
    call: Call, config: McpServerConfig, failure: Failure, *, maybe_sent: bool
) -> ToolOutcome:
    """A failure the model is told about, or raised for the caller to retry."""
    name, tool = call.spec.server, call.spec.tool
    log_call(name, tool, failure.kind.value, elapsed_ms(call.started), failure.cause)
    if failure.kind is FailureKind.TIMEOUT:
        raise ToolTimeout(
            f"MCP server {name!r} did not answer tool {tool!r} within "
            f"{config.timeout_seconds:g} s ({failure.cause})"
        ) from None
    if policy.retry_may_fix(failure.kind):
        raise ToolTransportError(
            f"MCP server {name!r} is unreachable ({failure.cause})", maybe_sent=maybe_sent
        ) from None
    if failure.kind is FailureKind.AUTH:
        logger.error("mcp server=%s rejected the app's credentials (%s)", name, failure.cause)
    text = policy.told_to_model(name, failure)
    return error_outcome(text, config.output_limit_chars, call.started)


def refused(exposed_name: str, refusal: policy.Refusal, started: float) -> ToolOutcome:
    """A call answered locally, never sent."""
    log_call("-", exposed_name, refusal.label, elapsed_ms(started))
    outcome = error_outcome(refusal.text, len(refusal.text), started)
    return replace(outcome, retry_after=refusal.retry_after)


def error_outcome(text: str, limit: int, started: float) -> ToolOutcome:
    result = types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
    capped, truncated = cap(text, limit)
    return ToolOutcome(True, capped, render_full(result), truncated, elapsed_ms(started))


def log_call(server: str, tool: str, outcome: str, duration_ms: float, cause: str = "") -> None:
    logger.info(
        "mcp call server=%s tool=%s outcome=%s duration_ms=%.1f%s",
        server,
        tool,
        outcome,
        duration_ms,
        f" cause={cause}" if cause else "",
    )


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
