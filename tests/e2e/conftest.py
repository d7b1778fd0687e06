"""The whole app, served in-process by the local host, driven over HTTP like a client would.

Real parts: Azurite (Blob), the model server in the Azure OpenAI REST shape (scripted per test,
the offline brain otherwise) behind the real `openai` client, and real MCP servers over each
transport: the demo server on streamable HTTP and SSE, and `mcp-server-time` (PyPI) on stdio.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import azure.durable_functions as df
import pytest
import pytest_asyncio

from agent import runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import TEST_DEPLOYMENT, FakeOpenAI, fake_openai
from devkit.mcp_servers import AsgiServer, demo_http_app, demo_sse_app, time_stdio_command
from devkit.scheduler import API_KEY, CLIENT_ID, WEBHOOK_SECRET, ServedApp, scheduler_config
from local_host.host import LocalHost
from local_host.testing import wait_until
from offline_model.brains import OfflineBrain, ScriptedBrain
from samples.scheduler_mcp import Scheduler
from tests.support.helper_mcp import helper_http_app

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_KEY = "e2e-function-key-7d1f0c2a9b"
TERMINAL = {"completed", "failed", "cancelled", "content_filtered", "budget_exceeded"}


class SchedulerService:
    """The sample Scheduler MCP server, in this loop, on a fixed port so it can be restarted."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.served: ServedApp | None = None
        self.scheduler: Scheduler | None = None
        self.port = 0

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> None:
        config = scheduler_config(self.state_path, tick_seconds=0.05, backoff_base_seconds=0.2)
        self.scheduler = Scheduler(config)
        self.served = await ServedApp(self.scheduler.app, port=self.port).start()
        self.port = self.served.port

    async def stop(self) -> None:
        if self.served is not None:
            await self.served.stop()
            self.served = None

    def schedules_of(self, conversation_id: str) -> list[Any]:
        assert self.scheduler is not None
        return self.scheduler.store.list_schedules(None, conversation_id, 100)


@pytest_asyncio.fixture(scope="package")
async def scheduler(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SchedulerService]:
    service = SchedulerService(tmp_path_factory.mktemp("scheduler") / "schedules.sqlite3")
    await service.start()
    yield service
    await service.stop()


def scheduler_entry(url: str) -> dict[str, Any]:
    """The Scheduler as an operator configures it: API key from secrets, callback pinned."""
    return {
        "name": "scheduler",
        "transport": {"type": "streamable_http", "url": url},
        "auth": {
            "type": "api_key",
            "client_id": {"secret": "SCHEDULER-CLIENT-ID"},
            "api_key": {"secret": "SCHEDULER-API-KEY"},
        },
        "tools": {
            "allow": [
                "schedule_conversation",
                "list_scheduled_conversations",
                "cancel_scheduled_conversation",
            ]
        },
        # The sample Scheduler applies a call at most once per idempotency key (and cancelling
        # twice is harmless): a call cut off mid-flight may simply be sent again.
        "idempotent_calls": True,
        "pinned_arguments": {
            "schedule_conversation": {
                "endpoint": "${callback_url}",
                "conversation_id": "${conversation_id}",
            },
            "list_scheduled_conversations": {"conversation_id": "${conversation_id}"},
            "cancel_scheduled_conversation": {"conversation_id": "${conversation_id}"},
        },
        "timeout_seconds": 5,
        # short, so the test that stops the Scheduler leaves no open circuit to later tests
        "circuit_breaker": {"failures": 3, "cooldown_seconds": 1},
    }


@pytest.fixture(scope="package")
def mcp_servers(
    tmp_path_factory: pytest.TempPathFactory, scheduler: SchedulerService
) -> Iterator[dict[str, Any]]:
    sandbox = tmp_path_factory.mktemp("sandbox")
    with (
        AsgiServer(lambda: demo_http_app(sandbox_dir=sandbox)) as http_server,
        AsgiServer(lambda: demo_sse_app(sandbox_dir=sandbox)) as sse_server,
        AsgiServer(lambda: helper_http_app(sandbox_dir=sandbox)) as helper_server,
    ):
        annotated = ["drop_key", "look_up", "read_outside", "meet"]
        yield {
            "mcp_servers": [
                {"name": "web", "transport": {"type": "streamable_http", "url": http_server.url()}},
                {"name": "sse", "transport": {"type": "sse", "url": sse_server.url("/sse")}},
                {"name": "time", "transport": time_stdio_command().transport_config()},
                scheduler_entry(scheduler.url()),
                {
                    "name": "guarded",
                    "transport": {"type": "streamable_http", "url": http_server.url()},
                    "tools": {
                        "allow": ["greet", "save_text_file"],
                        "require_approval": ["save_text_file"],
                    },
                },
                # Tools whose annotations say what they are (destructive, read-only, closed or
                # open world), and the same server with the destructive question turned off.
                {
                    "name": "annotated",
                    "transport": {"type": "streamable_http", "url": helper_server.url()},
                    "tools": {"allow": annotated},
                },
                # A tool that asks a person for their name mid-call (an MCP elicitation).
                {
                    "name": "asking",
                    "transport": {"type": "streamable_http", "url": helper_server.url()},
                    "tools": {"allow": ["greet_asking"]},
                },
                {
                    "name": "unasked",
                    "transport": {"type": "streamable_http", "url": helper_server.url()},
                    "tools": {"allow": ["drop_key"]},
                    "destructive_requires_approval": False,
                },
            ]
        }


@pytest_asyncio.fixture(scope="package")
async def model() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(ScriptedBrain(fallback=OfflineBrain())) as fake:
        yield fake


@dataclass
class App:
    host: LocalHost
    http: aiohttp.ClientSession
    model: FakeOpenAI
    exchanges: list[str] = field(default_factory=list)  # every response, for secret scans

    @property
    def api(self) -> str:
        return f"{self.host.base_url}/api"

    def durable_client(self) -> df.DurableOrchestrationClient:
        return df.DurableOrchestrationClient(self.host.client_binding())

    async def call(
        self, method: str, path: str, *, keyed: bool = True, **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """One API call (with the function key unless `keyed=False`); every exchange is kept."""
        headers = {"x-functions-key": FUNCTION_KEY} if keyed else {}
        headers.update(kwargs.pop("headers", None) or {})
        async with self.http.request(
            method, f"{self.api}{path}", headers=headers, **kwargs
        ) as response:
            text = await response.text()
            self.exchanges.append(f"{response.status} {dict(response.headers)} {text}")
            body = json.loads(text) if text else None
            return response.status, body, dict(response.headers)

    async def new_conversation(self, **headers: str) -> str:
        status, body, _ = await self.call("POST", "/conversations", headers=headers)
        assert status == 201, body
        return body["id"]

    async def send(self, conversation_id: str, content: str, wait: float = 0, **headers: str):
        return await self.call(
            "POST",
            f"/conversations/{conversation_id}/messages",
            json={"content": content, "wait_seconds": wait},
            headers=headers,
        )

    async def run_until_done(
        self, run_id: str, within: float = 20.0, **headers: str
    ) -> dict[str, Any]:
        async def finished() -> dict[str, Any] | None:
            status, body, _ = await self.call("GET", f"/runs/{run_id}", headers=headers)
            assert status == 200, body
            return body if body["status"] in TERMINAL else None

        return await wait_until(finished, within=within, message=f"run {run_id} finished")


@pytest_asyncio.fixture(scope="package")
async def app(
    azurite: AzuriteInstance,
    model: FakeOpenAI,
    mcp_servers: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[App]:
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "CONVERSATIONS_STORAGE": azurite.connection_string,
        "CONVERSATIONS_CONTAINER": f"e2e-{uuid.uuid4().hex[:12]}",
        "AZURE_OPENAI_ENDPOINT": model.base_url,
        "AZURE_OPENAI_DEPLOYMENT": TEST_DEPLOYMENT,
        "AZURE_OPENAI_API_KEY": model.api_key or "",
        "MCP_SERVERS": json.dumps(mcp_servers),
        "AGENT_MAX_STEPS": "4",
        "AGENT_MAX_BODY_BYTES": "65536",
        "AGENT_MAX_MESSAGE_CHARS": "60000",
        "SCHEDULER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SCHEDULER_CLIENT_ID": CLIENT_ID,
        "SCHEDULER_API_KEY": API_KEY,
        "BATCH_MAX_CONCURRENCY": "4",
        "AGENT_APPROVAL_TIMEOUT_SECONDS": "3",
        "AGENT_HTTP_STREAMING": "true",  # GET /runs/{id}/events streams (agent.http_streaming)
    }
    state = tmp_path_factory.mktemp("host") / "durable.sqlite3"
    with pytest.MonkeyPatch.context() as env:
        for name in ("OPENAI_BASE_URL", "REQUIRE_AUTH", "KEYVAULT_URI"):
            env.delenv(name, raising=False)
        for name, value in settings.items():
            env.setenv(name, value)
        runtime.use_runtime(None)
        async with (
            LocalHost(
                ROOT,
                port=0,
                state_path=state,
                function_key=FUNCTION_KEY,
                apply_local_settings=False,
            ) as host,
            aiohttp.ClientSession() as http,
        ):
            # Known only now (an ephemeral port); the runtime reads settings on first use.
            env.setenv("PUBLIC_BASE_URL", host.base_url)
            runtime.use_runtime(None)  # settings were parsed at import: parse them again
            yield App(host, http, model)
        built = runtime.current()
        if built is not None:
            await built.aclose()
        runtime.use_runtime(None)
