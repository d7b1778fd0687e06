"""What the MCP client decides without talking to anyone: pure functions over configuration,
tool metadata and failure kinds (no I/O, no clock, no logging).

- exposure: what the model sees of a tool (its schema without pinned arguments), which server
  owns a model-facing name;
- arguments: the pinned arguments, filled from the app's context, win over the model's;
- annotations: what a tool's `annotations` (hints from its server) let the app do: they may only
  add caution (a question, the open-world marking), never lift what the configuration asks;
- approval and repetition: which tools need a person's yes, which cut-off calls may be re-sent;
- failures: whether a failure counts against the server's breaker, whether a retry may fix it,
  and what the model reads instead of a result.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import mcp_types as types

from agent.errors import SettingsError
from agent.mcp.config import PLACEHOLDER_PATTERN, SETTING, McpServerConfig
from agent.mcp.failures import Failure, FailureKind
from agent.mcp.names import SEPARATOR, candidate_servers, exposed_tool_name

# --- exposure --------------------------------------------------------------------------------


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


def owner_of(exposed_name: str, servers: Sequence[str]) -> str | None:
    """The configured server whose `server__` prefix this model-facing name carries, if any
    (the longest such server name: `a__b__tool` belongs to `a__b` when both are configured)."""
    for name in candidate_servers(exposed_name, list(servers)):
        if exposed_name.startswith(f"{name}{SEPARATOR}"):
            return name
    return None


def unknown_pins(config: McpServerConfig, tool: str, schema: Mapping[str, Any] | None) -> list[str]:
    """Pinned arguments of `tool` that its input schema does not declare (an operator's typo)."""
    properties = (schema or {}).get("properties") or {}
    return sorted(set(config.pinned_for(tool)) - set(properties))


def missing_allowed(config: McpServerConfig, offered: Iterable[str]) -> list[str]:
    """Tools the configuration allows by name that the server does not offer."""
    if config.tools.allow is None:
        return []
    return sorted(config.tools.allow - set(offered))


# --- arguments -------------------------------------------------------------------------------


def pinned_arguments(
    config: McpServerConfig, tool: str, context: Mapping[str, str]
) -> dict[str, Any]:
    """The tool's pinned arguments with `${placeholders}` filled from `context`; a placeholder
    the app does not provide is a configuration mistake (`SettingsError`)."""
    return {
        name: _fill(value, context, f"server {config.name!r}, pinned argument {tool}.{name},")
        for name, value in config.pinned_for(tool).items()
    }


def _fill(value: Any, context: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER_PATTERN.sub(lambda match: _placeholder(match, context, where), value)
    if isinstance(value, Mapping):
        return {key: _fill(item, context, where) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(item, context, where) for item in value]
    return value


def _placeholder(match: re.Match[str], context: Mapping[str, str], where: str) -> str:
    name = match.group(1)
    if name not in context:
        provided = ", ".join(sorted(context)) or "nothing"
        raise SettingsError(
            SETTING,
            f"{where} uses ${{{name}}}, which the app does not provide here (it provides: {provided})",
        )
    return context[name]


def merge_arguments(
    arguments: Mapping[str, Any], pinned: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The arguments sent, pinned last so the model cannot override them, and the names of the
    model's values that were overridden (to log: names only, never values)."""
    return {**arguments, **pinned}, sorted(set(arguments) & set(pinned))


# --- annotations -----------------------------------------------------------------------------
# MCP tool annotations are hints from the server, not guarantees. Each is read so that a missing
# or contradictory hint lands on the careful side: destructive only when the server says so
# (asking about every unannotated tool, as the spec's default would, would ask about nearly
# all of them), read-only only when the server says so and does not also call it destructive,
# and open-world unless the server says it is not (the spec's default).


def declares_destructive(annotations: types.ToolAnnotations | None) -> bool:
    """The server says the tool may destroy something (`destructiveHint: true`); said together
    with `readOnlyHint: true`, which the spec says makes it meaningless, it still counts: a
    contradiction is read the careful way."""
    return annotations is not None and annotations.destructive_hint is True


def declares_read_only(annotations: types.ToolAnnotations | None) -> bool:
    """The server says calling the tool changes nothing (`readOnlyHint: true`), and does not
    also call it destructive."""
    return (
        annotations is not None
        and annotations.read_only_hint is True
        and not declares_destructive(annotations)
    )


def reaches_open_world(annotations: types.ToolAnnotations | None) -> bool:
    """The tool's output may come from outside the app's and the server's own data (the web,
    mail, other people's text: `openWorldHint`, true unless the server says false), so it may
    carry text written to steer the model."""
    return annotations is None or annotations.open_world_hint is not False


# --- approval and repetition -----------------------------------------------------------------


def needs_approval(
    config: McpServerConfig, tool: str, annotations: types.ToolAnnotations | None = None
) -> bool:
    """Whether a person must say yes before `tool` on this server runs: the configuration
    names it (`tools.require_approval`), or the server calls it destructive and the server's
    entry does not turn that question off (`destructive_requires_approval: false`)."""
    if tool in config.tools.require_approval:
        return True
    return config.destructive_requires_approval and declares_destructive(annotations)


def requires_approval(
    configs: Iterable[McpServerConfig], exposed_name: str, listed: bool = False
) -> bool:
    """Whether the tool behind this model-facing name needs approval: any configured server's
    `require_approval` list names it (decided from configuration alone, so a server that
    cannot be listed still gets its question asked), or `listed`: its listing here says so
    (`needs_approval` with the tool's annotations)."""
    return listed or any(
        exposed_tool_name(config.name, tool) == exposed_name
        for config in configs
        for tool in config.tools.require_approval
    )


def may_repeat(config: McpServerConfig | None, read_only: bool = False) -> bool:
    """Whether a call whose outcome is unknown (cut off by a crash) may be sent again without
    asking: its server applies a call at most once per idempotency key (`idempotent_calls`),
    or the tool declares itself read-only (`readOnlyHint`). No known server: never."""
    return config is not None and (config.idempotent_calls or read_only)


# --- failures --------------------------------------------------------------------------------


def counts_against_server(kind: FailureKind) -> bool:
    """A failure the breaker records as one; a protocol error is an answer: the server is up."""
    return kind is not FailureKind.SERVER_ERROR


def retry_may_fix(kind: FailureKind) -> bool:
    """Raised for the caller (a Durable activity) to retry, rather than told to the model."""
    return kind in (FailureKind.TIMEOUT, FailureKind.TRANSPORT)


class Unlisted(Enum):
    """How to answer a call to a tool whose server could not be listed in this process."""

    CIRCUIT_OPEN = "circuit_open"  # nothing was tried now: the breaker held it back
    CONFIG = "config"  # raise the configuration mistake
    AUTH = "auth_error"  # tell the model the credentials were rejected
    TIMEOUT = "timeout"  # raise for a retry
    TRANSPORT = "transport_error"  # raise for a retry: the call was never sent


def unlisted(error: Failure | SettingsError | None, just_failed: bool) -> Unlisted:
    """Answer as a call to the server would have, from why its listing failed and whether that
    listing was tried just now (else the breaker held it back)."""
    if isinstance(error, SettingsError):
        return Unlisted.CONFIG
    if error is None or not just_failed:
        return Unlisted.CIRCUIT_OPEN
    if error.kind is FailureKind.AUTH:
        return Unlisted.AUTH
    if error.kind is FailureKind.TIMEOUT:
        return Unlisted.TIMEOUT
    return Unlisted.TRANSPORT


# --- what the model reads --------------------------------------------------------------------

ARGUMENTS_NOT_AN_OBJECT = "arguments must be a JSON object"


@dataclass(frozen=True)
class Refusal:
    """A call answered locally, never sent: the model's text and the outcome label to log."""

    text: str
    label: str
    retry_after: float | None = None  # circuit open: seconds until a probe may go


def not_allowed(exposed_name: str) -> Refusal:
    return Refusal(f"tool {exposed_name!r} is not allowed by this app's configuration", "refused")


def unknown_tool(exposed_name: str) -> Refusal:
    return Refusal(f"unknown tool {exposed_name!r}: call only the tools you were given", "refused")


def circuit_open(server: str, failures: int, retry_after: float) -> Refusal:
    text = (
        f"server {server} is unavailable (circuit open after {failures} failures); try again later"
    )
    return Refusal(text, "circuit_open", retry_after)


def auth_rejected(server: str, failure: Failure) -> Refusal:
    text = f"server {server} rejected the app's credentials ({failure.cause}); tell the operator"
    return Refusal(text, "auth_error")


def told_to_model(server: str, failure: Failure) -> str:
    """What the model reads for a failure no retry fixes: rejected credentials (the operator
    must act), or the server's own refusal of the call."""
    if failure.kind is FailureKind.AUTH:
        return auth_rejected(server, failure).text
    return f"server {server} rejected the call: {failure.server_message}"
