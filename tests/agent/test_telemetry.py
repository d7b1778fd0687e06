"""Telemetry: GenAI spans and metrics for model steps and tool calls, run ids on logs, nothing
that belongs to the conversation, and Azure Monitor configured only when asked.

In-process tests record into in-memory exporters of the OpenTelemetry SDK (never the global
providers). The tests that configure Azure Monitor run in a subprocess, so its global providers
and instrumentations stay out of this process, against an ingestion endpoint on loopback, with an
audit hook that sees every socket the child opens.
"""

from __future__ import annotations

import gzip
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agent import telemetry
from agent.errors import ContentFiltered, ToolTransportError, TransientModelError
from agent.mcp.config import EnvSecretResolver, parse_mcp_servers
from agent.mcp.pool import McpPool
from agent.model import ModelClient, build_model_client
from devkit.fake_openai import TEST_API_KEY, fake_openai
from devkit.mcp_servers import (
    AsgiServer,
    demo_http_app,
    free_port,
    http_entry,
    mcp_servers_json,
)
from offline_model.replies import Completion

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "run-7f3a"
CONVERSATION_ID = "conv-42"
# Conversation content, tool arguments and results, secrets: none may reach telemetry.
USER_SECRET = "my card number is 4111-1111-1111-1111"
ANSWER_SECRET = "the vault code is 9-9-9-tango"
ARGUMENT_SECRET = "Zelda-from-the-arguments"
API_KEY = TEST_API_KEY
FORBIDDEN = (USER_SECRET, ANSWER_SECRET, ARGUMENT_SECRET, API_KEY)
RESPONSE_MODEL = "gpt-4o-2024-08-06"
CONTEXT: dict[str, str] = {}


# --- in-memory OpenTelemetry -------------------------------------------------------------------


@dataclass
class Recorded:
    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    log_exporter: InMemoryLogRecordExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def only_span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, metric_name: str) -> list[HistogramDataPoint]:
        data = self.metric_reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == metric_name
            for point in metric.data.data_points
        ]

    def everything_exported(self) -> str:
        spans = [span.to_json() for span in self.spans()]
        data = self.metric_reader.get_metrics_data()
        logs = [log.to_json() for log in self.log_exporter.get_finished_logs()]
        return "\n".join([*spans, data.to_json() if data else "", *logs])


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """Telemetry on, into in-memory exporters; `agent` loggers exported like Azure Monitor does."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    handler = LoggingHandler(logger_provider=logger_provider)  # the handler the distro installs
    agent_logger = logging.getLogger("agent")
    level = agent_logger.level
    agent_logger.addHandler(handler)
    agent_logger.setLevel(logging.INFO)
    telemetry.enable_telemetry(tracer_provider, meter_provider)
    try:
        yield Recorded(spans, reader, logs)
    finally:
        telemetry.disable_telemetry()
        agent_logger.removeHandler(handler)
        agent_logger.setLevel(level)
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()


# --- real model and MCP servers on loopback ----------------------------------------------------


@pytest.fixture(scope="module")
async def model() -> Any:
    """A scripted Azure OpenAI and a real client, shared: each test scripts what it consumes."""
    async with fake_openai() as fake:
        client = build_model_client(fake.azure_config())
        try:
            yield fake, client
        finally:
            await client.aclose()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    sandbox = tmp_path_factory.mktemp("telemetry-demo")
    with AsgiServer(lambda: demo_http_app(sandbox)) as server:
        yield server


async def make_pool(*entries: dict[str, Any]) -> McpPool:
    configs = parse_mcp_servers(mcp_servers_json(*entries))
    return McpPool(configs, secrets=EnvSecretResolver({}))


async def complete_step(client: ModelClient, step: int = 1) -> None:
    """One model step as the model_step activity runs it, inside its span."""
    provider = telemetry.provider_name(client.config.kind)
    with telemetry.model_span(RUN_ID, CONVERSATION_ID, step, provider, client.config.model) as span:
        reply = await client.complete([{"role": "user", "content": USER_SECRET}], [])
        span.record_reply(reply)


async def call_tool(pool: McpPool, tool: str, arguments: dict[str, Any], server: str) -> None:
    """One tool call as the tool_call activity runs it; the server is named once resolved."""
    with telemetry.tool_span(RUN_ID, CONVERSATION_ID, 2, tool, call_id="call_1") as span:
        outcome = await pool.call_tool(tool, arguments, context=CONTEXT, idempotency_key="k")
        span.record_outcome(outcome, server=server)


# --- model steps -------------------------------------------------------------------------------


async def test_a_model_step_records_a_chat_client_span_with_usage_and_finish_reason(
    recorded: Recorded, model: Any
) -> None:
    fake, client = model
    fake.brain.then(
        Completion(
            content=ANSWER_SECRET, prompt_tokens=42, completion_tokens=7, model=RESPONSE_MODEL
        )
    )

    await complete_step(client, step=3)

    span = recorded.only_span()
    assert span.name == f"chat {client.config.model}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "azure.ai.openai",
        "gen_ai.system": "azure.ai.openai",
        "gen_ai.request.model": client.config.model,
        "gen_ai.response.model": RESPONSE_MODEL,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 42,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.conversation.id": CONVERSATION_ID,
        "agent.run_id": RUN_ID,
        "agent.conversation_id": CONVERSATION_ID,
        "agent.step": 3,
    }


async def test_a_model_step_records_token_usage_and_duration_metrics(
    recorded: Recorded, model: Any
) -> None:
    fake, client = model
    fake.brain.then(Completion(content="ok", prompt_tokens=42, completion_tokens=7))

    await complete_step(client)

    usage = {
        p.attributes["gen_ai.token.type"]: p for p in recorded.points("gen_ai.client.token.usage")
    }
    assert set(usage) == {"input", "output"}
    assert (usage["input"].sum, usage["input"].count) == (42, 1)
    assert (usage["output"].sum, usage["output"].count) == (7, 1)
    assert usage["input"].attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert usage["input"].attributes["gen_ai.request.model"] == client.config.model
    assert "agent.run_id" not in usage["input"].attributes  # ids would explode metric cardinality
    (duration,) = recorded.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and duration.sum > 0
    assert duration.attributes["gen_ai.operation.name"] == "chat"
    assert "error.type" not in duration.attributes


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (lambda brain: brain.rate_limit(retry_after_seconds=3), TransientModelError),
        (lambda brain: brain.filter_prompt(), ContentFiltered),
    ],
    ids=["throttled", "content-filtered"],
)
async def test_a_failed_model_call_records_its_error_type_and_nothing_else(
    recorded: Recorded, model: Any, script: Any, error: type[Exception]
) -> None:
    fake, client = model
    script(fake.brain)

    with pytest.raises(error):
        await complete_step(client)

    span = recorded.only_span()
    assert span.attributes is not None
    assert span.attributes["error.type"] == error.__name__
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is None  # a description would be the exception's message
    assert span.events == ()  # no exception event: it would carry message and stack
    assert "gen_ai.usage.input_tokens" not in span.attributes
    (duration,) = recorded.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == error.__name__
    assert recorded.points("gen_ai.client.token.usage") == []


def test_an_explicitly_recorded_error_marks_the_span_without_an_exception(
    recorded: Recorded,
) -> None:
    # The model_step activity may turn a failure into a returned summary instead of raising.
    with telemetry.model_span(RUN_ID, CONVERSATION_ID, 1, "openai", "llama3") as span:
        span.record_error(ContentFiltered("filtered"))

    finished = recorded.only_span()
    assert finished.attributes is not None
    assert finished.attributes["error.type"] == "ContentFiltered"
    assert finished.attributes["gen_ai.provider.name"] == "openai"
    assert finished.status.status_code is StatusCode.ERROR


# --- tool calls --------------------------------------------------------------------------------


async def test_a_tool_call_records_an_execute_tool_span_and_mcp_duration(
    recorded: Recorded, demo_server: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", demo_server.url()))
    try:
        await call_tool(pool, "demo__greet", {"name": ARGUMENT_SECRET}, "demo")
    finally:
        await pool.aclose()

    span = recorded.only_span()
    assert span.name == "execute_tool demo__greet"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "demo__greet",
        "gen_ai.tool.call.id": "call_1",
        "mcp.method.name": "tools/call",
        "mcp.server.name": "demo",
        "agent.tool.outcome": "ok",
        "gen_ai.conversation.id": CONVERSATION_ID,
        "agent.run_id": RUN_ID,
        "agent.conversation_id": CONVERSATION_ID,
        "agent.step": 2,
    }
    (duration,) = recorded.points("mcp.client.operation.duration")
    assert duration.count == 1
    assert duration.attributes["gen_ai.tool.name"] == "demo__greet"
    assert duration.attributes["mcp.server.name"] == "demo"


async def test_a_tool_error_result_is_recorded_as_tool_error(
    recorded: Recorded, demo_server: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", demo_server.url()))
    try:
        await call_tool(pool, "demo__get_weather", {"city": ""}, "demo")  # the tool refuses
    finally:
        await pool.aclose()

    span = recorded.only_span()
    assert span.attributes is not None
    assert span.attributes["agent.tool.outcome"] == "error"
    assert span.attributes["error.type"] == "tool_error"
    assert span.status.status_code is StatusCode.ERROR
    (duration,) = recorded.points("mcp.client.operation.duration")
    assert duration.attributes["error.type"] == "tool_error"


async def test_a_truncated_tool_result_is_recorded_as_truncated(
    recorded: Recorded, demo_server: AsgiServer
) -> None:
    pool = await make_pool(http_entry("demo", demo_server.url(), output_limit_chars=200))
    try:
        await call_tool(pool, "demo__greet", {"name": ARGUMENT_SECRET * 20}, "demo")
    finally:
        await pool.aclose()

    span = recorded.only_span()
    assert span.attributes is not None
    assert span.attributes["agent.tool.outcome"] == "truncated"
    assert span.status.status_code is StatusCode.UNSET


async def test_an_unreachable_tool_server_records_the_transport_error_type(
    recorded: Recorded,
) -> None:
    closed_port = free_port()
    pool = await make_pool(http_entry("gone", f"http://127.0.0.1:{closed_port}/mcp"))
    try:
        with (
            pytest.raises(ToolTransportError),
            telemetry.tool_span(RUN_ID, CONVERSATION_ID, 2, "gone__greet", "gone"),
        ):
            await pool.call_tool("gone__greet", {}, context=CONTEXT, idempotency_key="k")
    finally:
        await pool.aclose()

    span = recorded.only_span()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ToolTransportError"
    assert span.attributes["mcp.server.name"] == "gone"
    assert "agent.tool.outcome" not in span.attributes
    assert span.status.status_code is StatusCode.ERROR
    assert span.events == ()


# --- what must never be recorded ---------------------------------------------------------------


async def test_no_content_argument_result_or_secret_reaches_spans_metrics_or_logs(
    recorded: Recorded, model: Any, demo_server: AsgiServer
) -> None:
    fake, client = model
    fake.brain.call_tools(("demo__greet", {"name": ARGUMENT_SECRET})).answer(ANSWER_SECRET)
    pool = await make_pool(http_entry("demo", demo_server.url()))
    log = logging.getLogger("agent.activities")
    try:
        await complete_step(client, step=1)
        await call_tool(pool, "demo__greet", {"name": ARGUMENT_SECRET}, "demo")
        await complete_step(client, step=2)
        # An exception whose message holds content:
        with (
            pytest.raises(RuntimeError),
            telemetry.model_span(RUN_ID, CONVERSATION_ID, 3, "openai", "m"),
        ):
            raise RuntimeError(f"failed on {USER_SECRET}")
        log.info("step finished", extra=telemetry.log_context(RUN_ID, CONVERSATION_ID, step=2))
    finally:
        await pool.aclose()

    exported = recorded.everything_exported()
    assert len(recorded.spans()) == 4
    assert RUN_ID in exported and "step finished" in exported  # the check can see what it checks
    for forbidden in FORBIDDEN:
        assert forbidden not in exported


# --- logs --------------------------------------------------------------------------------------


def test_log_context_puts_the_run_ids_beside_the_records_own_fields(recorded: Recorded) -> None:
    log = logging.getLogger("agent.activities")

    log.info(
        "tool call finished",
        extra=telemetry.log_context(RUN_ID, CONVERSATION_ID, call_id="call_1", step=2),
    )

    (record,) = recorded.log_exporter.get_finished_logs()
    attributes = dict(record.log_record.attributes or {})
    assert attributes["run_id"] == RUN_ID
    assert attributes["conversation_id"] == CONVERSATION_ID
    assert attributes["call_id"] == "call_1"
    assert attributes["step"] == 2


def test_log_context_becomes_custom_dimensions_in_the_azure_monitor_envelope(
    recorded: Recorded,
) -> None:
    from azure.monitor.opentelemetry.exporter.export.logs._exporter import (
        _convert_log_to_envelope,
    )

    logging.getLogger("agent.activities").warning(
        "turn finished", extra=telemetry.log_context(RUN_ID, CONVERSATION_ID, status="completed")
    )

    (record,) = recorded.log_exporter.get_finished_logs()
    envelope = _convert_log_to_envelope(record)  # what AzureMonitorLogExporter sends
    properties = envelope.data.base_data.properties
    assert properties["run_id"] == RUN_ID
    assert properties["conversation_id"] == CONVERSATION_ID
    assert properties["status"] == "completed"
    assert envelope.data.base_data.message == "turn finished"


# --- telemetry off -----------------------------------------------------------------------------


def test_spans_are_shared_no_ops_when_telemetry_is_off() -> None:
    assert not telemetry.telemetry_enabled()
    first = telemetry.model_span(RUN_ID, CONVERSATION_ID, 1, "openai", "m")
    again = telemetry.model_span("other", "other", 2, "openai", "m")
    tool = telemetry.tool_span(RUN_ID, CONVERSATION_ID, 1, "demo__greet", "demo")

    assert first is again  # nothing allocated per call
    assert type(first) is telemetry.ModelSpan and type(tool) is telemetry.ToolSpan
    with pytest.raises(ToolTransportError), tool as span:  # errors still propagate
        span.record_error(ToolTransportError("x"))
        raise ToolTransportError("down")


# --- configuring Azure Monitor (in a subprocess) -----------------------------------------------

BASE_SETTINGS = {
    "CONVERSATIONS_STORAGE": "UseDevelopmentStorage=true",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "OPENAI_MODEL": "m",
}


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `code` in a fresh interpreter at the repo root; it prints a JSON report last."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("APPLICATIONINSIGHTS_", "PYTHON_APPLICATIONINSIGHTS_", "OTEL_"))
    }
    environ.update(env or {})
    environ["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(BASE_SETTINGS), *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


IMPORTS_CHILD = """
import json, os, sys
from agent.settings import Settings
import agent.telemetry as telemetry
report = {"after_import": sorted({m.split(".")[0] for m in sys.modules if m.startswith(("opentelemetry", "azure"))})}
report["configured"] = telemetry.configure_telemetry(Settings.from_env(json.loads(sys.argv[1])))
report["azure_monitor_loaded"] = "azure.monitor.opentelemetry" in sys.modules
report["enabled"] = telemetry.telemetry_enabled()
print(json.dumps(report))
"""


def test_without_the_connection_string_nothing_heavy_is_imported_or_configured() -> None:
    report = run_child(IMPORTS_CHILD)

    assert report == {
        "after_import": [],  # neither opentelemetry nor any azure package
        "configured": False,
        "azure_monitor_loaded": False,
        "enabled": False,
    }


WORKER_CHILD = """
import json, os, sys
from agent.settings import Settings
import agent.telemetry as telemetry
settings = Settings.from_env({**json.loads(sys.argv[1]), "APPLICATIONINSIGHTS_CONNECTION_STRING": sys.argv[2]})
report = {"configured": telemetry.configure_telemetry(settings)}
report["azure_monitor_loaded"] = "azure.monitor.opentelemetry" in sys.modules
report["enabled"] = telemetry.telemetry_enabled()
print(json.dumps(report))
"""


def test_when_the_worker_configures_azure_monitor_we_do_not_configure_it_again() -> None:
    report = run_child(
        WORKER_CHILD,
        "InstrumentationKey=00000000-0000-0000-0000-000000000001",
        env={"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"},
    )

    assert report == {"configured": True, "azure_monitor_loaded": False, "enabled": True}


def test_when_another_tracer_provider_is_installed_we_use_it_instead_of_configuring() -> None:
    preinstalled = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
    )
    report = run_child(
        preinstalled + WORKER_CHILD, "InstrumentationKey=00000000-0000-0000-0000-000000000001"
    )

    assert report == {"configured": True, "azure_monitor_loaded": False, "enabled": True}


class IngestionEndpoint:
    """Application Insights' ingestion (and live metrics) API on loopback: accepts and keeps
    every envelope posted to it."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.paths: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                owner.paths.append(self.path)
                if self.path.endswith("/track"):
                    owner.envelopes.extend(json.loads(body))
                reply = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def connection_string(self) -> str:
        url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        return (
            "InstrumentationKey=00000000-0000-0000-0000-000000000001;"
            f"IngestionEndpoint={url};LiveEndpoint={url}"
        )

    def __enter__(self) -> IngestionEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


AZURE_MONITOR_CHILD = """
import json, logging, sys
outbound = []
def audit(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple):
        outbound.append(args[1][0])
    elif event == "socket.getaddrinfo":
        outbound.append(str(args[0]))
sys.addaudithook(audit)

from agent.errors import SettingsError
from agent.settings import Settings
import agent.telemetry as telemetry
base = json.loads(sys.argv[1])
report = {}
try:
    telemetry.configure_telemetry(Settings.from_env({**base, "APPLICATIONINSIGHTS_CONNECTION_STRING": sys.argv[3]}))
except SettingsError as exc:
    report["malformed"] = str(exc)
settings = Settings.from_env({**base, "APPLICATIONINSIGHTS_CONNECTION_STRING": sys.argv[2]})
report["first"] = telemetry.configure_telemetry(settings)
from opentelemetry import _logs, metrics, trace
provider = trace.get_tracer_provider()
report["second"] = telemetry.configure_telemetry(settings)
report["same_provider"] = trace.get_tracer_provider() is provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
report["handlers"] = {
    name or "root": sum(isinstance(h, LoggingHandler) for h in logging.getLogger(name).handlers)
    for name in ("agent", "storage", "")
}

class Reply:
    content = sys.argv[4]; tool_calls = []; finish_reason = "stop"; model = "gpt-4o-2024-08-06"
    usage = {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}

logging.getLogger("agent").setLevel(logging.INFO)
logging.getLogger("storage").setLevel(logging.INFO)
with telemetry.model_span("run-1", "conv-1", 1, "azure.ai.openai", "gpt-4o") as span:
    span.record_reply(Reply())
    logging.getLogger("agent.activities").info("model step done", extra=telemetry.log_context("run-1", "conv-1"))
    logging.getLogger("storage.transcript").info("stored", extra=telemetry.log_context("run-1", "conv-1"))
    logging.getLogger("somebody.else").warning("not ours")
trace.get_tracer_provider().force_flush()
_logs.get_logger_provider().force_flush()
metrics.get_meter_provider().force_flush()
report["outbound"] = sorted(set(outbound))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def azure_monitor_child() -> Iterator[tuple[dict[str, Any], IngestionEndpoint]]:
    with IngestionEndpoint() as endpoint:
        report = run_child(
            AZURE_MONITOR_CHILD,
            endpoint.connection_string,
            f"InstrumentationKey={API_KEY}",  # malformed (not a UUID), and a secret
            USER_SECRET,
            env={
                # Keep the SDK's own calls home: no statsbeat, no remote configuration.
                "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
                "FUNCTIONS_WORKER_RUNTIME": "python",  # as on Azure (also skips the VM probe)
                "OTEL_TRACES_SAMPLER": "always_on",
            },
        )
        yield report, endpoint


def test_a_malformed_connection_string_fails_naming_the_setting_not_its_value(
    azure_monitor_child: tuple[dict[str, Any], IngestionEndpoint],
) -> None:
    report, _ = azure_monitor_child

    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in report["malformed"]
    assert API_KEY not in report["malformed"]
    assert report["first"] is True  # a later call with a good value still configures


def test_azure_monitor_is_configured_once_and_exports_only_to_the_ingestion_endpoint(
    azure_monitor_child: tuple[dict[str, Any], IngestionEndpoint],
) -> None:
    report, endpoint = azure_monitor_child

    assert report["second"] is True and report["same_provider"] is True
    assert report["handlers"] == {"agent": 1, "storage": 1, "root": 0}
    assert report["outbound"] == ["127.0.0.1"]  # no DNS lookup, no connection anywhere else
    assert any(path.endswith("/v2.1/track") for path in endpoint.paths)


def test_exported_envelopes_carry_the_genai_dependency_and_the_run_ids_but_no_content(
    azure_monitor_child: tuple[dict[str, Any], IngestionEndpoint],
) -> None:
    _, endpoint = azure_monitor_child
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for envelope in endpoint.envelopes:
        by_kind.setdefault(envelope["name"].rsplit(".", 1)[-1], []).append(envelope)

    (dependency,) = by_kind["RemoteDependency"]
    data = dependency["data"]["baseData"]
    assert data["name"] == "chat gpt-4o"
    assert data["type"] == "GenAI | azure.ai.openai"
    assert data["properties"]["agent.run_id"] == "run-1"
    assert data["properties"]["gen_ai.usage.output_tokens"] == "7"
    messages = {m["data"]["baseData"]["message"]: m for m in by_kind["Message"]}
    assert set(messages) == {"model step done", "stored"}  # not the third-party logger's
    for message in messages.values():
        assert message["data"]["baseData"]["properties"]["run_id"] == "run-1"
        assert message["tags"]["ai.operation.id"] == dependency["tags"]["ai.operation.id"]
    metric_names = {
        metric["name"]
        for envelope in by_kind["Metric"]
        for metric in envelope["data"]["baseData"]["metrics"]
    }
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= metric_names
    assert USER_SECRET not in json.dumps(endpoint.envelopes)
