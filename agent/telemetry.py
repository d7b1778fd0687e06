"""Telemetry: OpenTelemetry spans and metrics for model steps and tool calls, logs that carry the
run and conversation ids, exported to Application Insights when
APPLICATIONINSIGHTS_CONNECTION_STRING is set.

    configure_telemetry(settings)                 # once per process (runtime.build_runtime)
    with model_span(run_id, conversation_id, step, provider, model) as span:
        reply = await model.complete(...)
        span.record_reply(reply)                  # an exception leaving the block is recorded
    with tool_span(run_id, conversation_id, step, exposed_name, server) as span:
        span.record_outcome(await pool.call_tool(...))
    log.info("turn finished", extra=log_context(run_id, conversation_id, status=status))

Names follow the OpenTelemetry GenAI and MCP semantic conventions (`gen_ai.*`, `mcp.*`,
`error.type`); ours are `agent.*` and `mcp.server.name`. `gen_ai.system` is deprecated in favour
of `gen_ai.provider.name` but set as well: the Azure Monitor exporter keys GenAI dependencies on it.

What is recorded is ids, names, counts, durations and error *types*: never message content, tool
arguments or results, exception messages, or secrets. That is why spans are not left to record
exceptions themselves (`record_exception` would store the message and the stack).

Cold start: this module imports only the standard library (and agent.errors). OpenTelemetry is
imported when telemetry is enabled, and `azure.monitor.opentelemetry` (~1 s) only when the
connection string is set. Until then `model_span` / `tool_span` return shared no-op objects.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from agent.errors import SettingsError

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import Histogram, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from agent.mcp.pool import ToolOutcome
    from agent.model import ModelReply
    from agent.settings import Settings

INSTRUMENTATION_NAME = "agent"
CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# The Functions worker calls configure_azure_monitor itself when this app setting is "true";
# configuring twice is unsupported, so we then only use the providers it installed.
WORKER_TELEMETRY_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
# Loggers whose records are exported: ours only. Third-party loggers can carry URLs, headers or
# message bodies, and the Functions host already collects every record without attributes.
EXPORTED_LOGGERS = ("agent", "storage")

# --- attribute names (semantic conventions, and ours) -----------------------------------------

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
CONVERSATION_ID = "gen_ai.conversation.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
MCP_METHOD_NAME = "mcp.method.name"
MCP_SERVER_NAME = "mcp.server.name"
SERVER_ADDRESS = "server.address"
ERROR_TYPE = "error.type"
AGENT_RUN_ID = "agent.run_id"
AGENT_CONVERSATION_ID = "agent.conversation_id"
AGENT_STEP = "agent.step"
TOOL_OUTCOME = "agent.tool.outcome"

CHAT = "chat"
EXECUTE_TOOL = "execute_tool"
TOOLS_CALL = "tools/call"
TOOL_ERROR = "tool_error"  # error.type for an is_error tool result (MCP conventions)

# --- metric names and buckets (the conventions' advice) ----------------------------------------

TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"
OPERATION_DURATION_METRIC = "gen_ai.client.operation.duration"
MCP_DURATION_METRIC = "mcp.client.operation.duration"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96)

PROVIDERS = {"azure": "azure.ai.openai", "openai": "openai"}


def provider_name(model_kind: str) -> str:
    """`gen_ai.provider.name` for a `ModelSettings.kind` ("azure" / "openai")."""
    return PROVIDERS.get(model_kind, model_kind)


def error_type(error: BaseException) -> str:
    """The error's class name: what telemetry says about a failure (never its message)."""
    return type(error).__qualname__


# --- set-up ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instruments:
    tracer: Tracer
    token_usage: Histogram
    operation_duration: Histogram
    tool_duration: Histogram


_instruments: _Instruments | None = None
_azure_monitor_configured = False
_lock = threading.Lock()


def configure_telemetry(settings: Settings) -> bool:
    """Export to Application Insights when the connection string is set; True when telemetry is on.

    Idempotent: Azure Monitor is configured at most once per process. Without the setting nothing
    is imported and spans stay no-ops. A malformed connection string raises SettingsError.
    """
    global _azure_monitor_configured
    connection = settings.appinsights_connection_string
    if connection is None:
        return False
    with _lock:
        if not _azure_monitor_configured:
            if not _providers_already_installed():
                _configure_azure_monitor(azure_monitor_options(settings))
            _azure_monitor_configured = True
        if _instruments is None:
            enable_telemetry()
    return True


def enable_telemetry(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Record spans and metrics with these providers (default: the global ones).

    `configure_telemetry` calls it after installing Azure Monitor; tests and local tools call it
    with their own providers (e.g. in-memory exporters).
    """
    global _instruments
    from opentelemetry import metrics, trace

    meter = metrics.get_meter(INSTRUMENTATION_NAME, meter_provider=meter_provider)
    _instruments = _Instruments(
        tracer=trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider),
        token_usage=meter.create_histogram(
            TOKEN_USAGE_METRIC,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        ),
        operation_duration=meter.create_histogram(
            OPERATION_DURATION_METRIC,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        ),
        tool_duration=meter.create_histogram(
            MCP_DURATION_METRIC,
            unit="s",
            description="The duration of the MCP request or notification as observed by the sender.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        ),
    )


def disable_telemetry() -> None:
    """Stop recording (spans become no-ops again). Azure Monitor, once configured, stays so."""
    global _instruments
    _instruments = None


def telemetry_enabled() -> bool:
    return _instruments is not None


def _providers_already_installed() -> bool:
    """True when the worker (or anyone) already installed real providers: don't configure twice."""
    if os.environ.get(WORKER_TELEMETRY_SETTING, "").strip().lower() == "true":
        return True
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return type(provider).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider")


def azure_monitor_options(settings: Settings) -> dict[str, Any]:
    """What `configure_azure_monitor` gets. With APPLICATIONINSIGHTS_AUTHENTICATION_STRING
    (`Authorization=AAD[;ClientId=<id>]`) the exporter authenticates with the managed identity,
    so the Application Insights resource can refuse local (key-only) authentication. The
    exporter would read that variable itself, but silently sends unauthenticated when it is
    malformed; parsed in the settings, a malformed one is a named setting problem instead."""
    connection = settings.appinsights_connection_string
    assert connection is not None, "only called when the connection string is set"
    options: dict[str, Any] = {
        "connection_string": connection.value,
        "logger_name": EXPORTED_LOGGERS[0],
    }
    if settings.appinsights_identity is not None:
        from agent.credentials import managed_identity_credential

        options["credential"] = managed_identity_credential(settings.appinsights_identity.client_id)
    return options


def _configure_azure_monitor(options: dict[str, Any]) -> None:
    # Imported here only: ~1 s, paid by the first invocation of a process with telemetry on.
    from azure.monitor.opentelemetry import configure_azure_monitor

    try:
        configure_azure_monitor(**options)
    except ValueError:
        # The exporter's message may quote the connection string: name the setting instead.
        raise SettingsError(
            CONNECTION_STRING_SETTING, "is not a valid Application Insights connection string"
        ) from None
    _export_logs_of(EXPORTED_LOGGERS[0], EXPORTED_LOGGERS[1:])


def _export_logs_of(configured: str, others: tuple[str, ...]) -> None:
    """Attach the exporting handler Azure Monitor put on one logger to our other loggers too."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    handlers = [h for h in logging.getLogger(configured).handlers if isinstance(h, LoggingHandler)]
    for name in others:
        logger = logging.getLogger(name)
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)


# --- spans -------------------------------------------------------------------------------------


class _Span:
    """What both spans share; this base records nothing (telemetry off)."""

    def record_error(self, error: BaseException) -> None:
        """The failure's type (never its message)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


class ModelSpan(_Span):
    """A model step's telemetry. This base does nothing: it is what you get when telemetry is off."""

    def record_reply(self, reply: ModelReply) -> None:
        """The response model, token usage and finish reason (never the content)."""


class ToolSpan(_Span):
    """A tool call's telemetry. This base does nothing: it is what you get when telemetry is off."""

    def record_outcome(self, outcome: ToolOutcome, *, server: str | None = None) -> None:
        """ok / error / truncated (never the arguments or the result), and the server if known."""


_NO_MODEL_SPAN = ModelSpan()
_NO_TOOL_SPAN = ToolSpan()


def model_span(
    run_id: str,
    conversation_id: str,
    step: int,
    provider: str,
    model: str,
    *,
    server_address: str | None = None,
) -> ModelSpan:
    """A `chat {model}` client span around one model call; `provider` from `provider_name()`."""
    instruments = _instruments
    if instruments is None:
        return _NO_MODEL_SPAN
    operation = {OPERATION_NAME: CHAT, PROVIDER_NAME: provider, REQUEST_MODEL: model}
    attributes: dict[str, Any] = {
        **operation,
        SYSTEM: provider,
        **_run_attributes(run_id, conversation_id, step),
    }
    if server_address:
        attributes[SERVER_ADDRESS] = server_address
    return _LiveModelSpan(instruments, f"{CHAT} {model}", attributes, operation)


def tool_span(
    run_id: str,
    conversation_id: str,
    step: int,
    tool_name: str,
    server: str | None = None,
    *,
    call_id: str | None = None,
) -> ToolSpan:
    """An `execute_tool {tool_name}` client span around one MCP tool call.

    `tool_name` is the name the model sees (`server__tool`); `server` the MCP server's configured
    name, here or later in `record_outcome` (the pool may only resolve it during the call).
    """
    instruments = _instruments
    if instruments is None:
        return _NO_TOOL_SPAN
    operation: dict[str, Any] = {
        OPERATION_NAME: EXECUTE_TOOL,
        MCP_METHOD_NAME: TOOLS_CALL,
        TOOL_NAME: tool_name,
    }
    if server:
        operation[MCP_SERVER_NAME] = server
    attributes = {**operation, **_run_attributes(run_id, conversation_id, step)}
    if call_id:
        attributes[TOOL_CALL_ID] = call_id
    return _LiveToolSpan(instruments, f"{EXECUTE_TOOL} {tool_name}", attributes, operation)


def _run_attributes(run_id: str, conversation_id: str, step: int) -> dict[str, Any]:
    return {
        AGENT_RUN_ID: run_id,
        AGENT_CONVERSATION_ID: conversation_id,
        CONVERSATION_ID: conversation_id,
        AGENT_STEP: step,
    }


class _LiveSpan:
    """Starts a current client span on enter; on exit records any escaping error, the duration
    metric, and ends the span. Exceptions always propagate."""

    def __init__(
        self,
        instruments: _Instruments,
        name: str,
        attributes: Mapping[str, Any],
        metric_attributes: Mapping[str, Any],
    ) -> None:
        self._instruments = instruments
        self._name = name
        self._attributes = attributes
        self._metric_attributes = dict(metric_attributes)
        self._span: Span | None = None
        self._token: Token[Context] | None = None
        self._started = 0.0

    def _duration(self) -> Histogram:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(exc, self._duration())

    def _start(self) -> None:
        from opentelemetry import context, trace

        self._span = self._instruments.tracer.start_span(
            self._name, kind=trace.SpanKind.CLIENT, attributes=self._attributes
        )
        self._token = context.attach(trace.set_span_in_context(self._span))
        self._started = time.perf_counter()

    def _finish(self, error: BaseException | None, duration: Histogram) -> None:
        from opentelemetry import context

        elapsed = time.perf_counter() - self._started
        if error is not None:
            self._set_error(error_type(error))
        if self._token is not None:  # None only if _start failed before attaching
            context.detach(self._token)
        duration.record(elapsed, self._metric_attributes)
        if self._span is not None:
            self._span.end()

    def _set_error(self, kind: str) -> None:
        from opentelemetry.trace import StatusCode

        self._metric_attributes[ERROR_TYPE] = kind
        if self._span is not None:
            self._span.set_attribute(ERROR_TYPE, kind)
            self._span.set_status(StatusCode.ERROR)  # no description: it would be a message


class _LiveModelSpan(_LiveSpan, ModelSpan):
    def _duration(self) -> Histogram:
        return self._instruments.operation_duration

    def record_reply(self, reply: ModelReply) -> None:
        input_tokens = int(reply.usage.get("prompt_tokens", 0) or 0)
        output_tokens = int(reply.usage.get("completion_tokens", 0) or 0)
        if reply.model:
            self._metric_attributes[RESPONSE_MODEL] = reply.model
        if self._span is not None:
            if reply.model:
                self._span.set_attribute(RESPONSE_MODEL, reply.model)
            self._span.set_attribute(FINISH_REASONS, (reply.finish_reason,))
            self._span.set_attribute(INPUT_TOKENS, input_tokens)
            self._span.set_attribute(OUTPUT_TOKENS, output_tokens)
        if input_tokens or output_tokens:  # both 0: the server did not report usage
            usage = self._instruments.token_usage
            usage.record(input_tokens, {**self._metric_attributes, TOKEN_TYPE: "input"})
            usage.record(output_tokens, {**self._metric_attributes, TOKEN_TYPE: "output"})

    def record_error(self, error: BaseException) -> None:
        self._set_error(error_type(error))


class _LiveToolSpan(_LiveSpan, ToolSpan):
    def _duration(self) -> Histogram:
        return self._instruments.tool_duration

    def record_outcome(self, outcome: ToolOutcome, *, server: str | None = None) -> None:
        label = "error" if outcome.is_error else "truncated" if outcome.truncated else "ok"
        if server:
            self._metric_attributes[MCP_SERVER_NAME] = server
        if self._span is not None:
            self._span.set_attribute(TOOL_OUTCOME, label)
            if server:
                self._span.set_attribute(MCP_SERVER_NAME, server)
        if outcome.is_error:
            self._set_error(TOOL_ERROR)

    def record_error(self, error: BaseException) -> None:
        self._set_error(error_type(error))


# --- logs --------------------------------------------------------------------------------------


def log_context(
    run_id: str, conversation_id: str, **fields: str | int | float | bool
) -> dict[str, Any]:
    """`extra=` for a log record about a run: the exporter turns these into customDimensions.

    Field names must not clash with LogRecord attributes (`message`, `args`, `name`, ...).
    """
    return {"run_id": run_id, "conversation_id": conversation_id, **fields}
