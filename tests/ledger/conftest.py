"""One host of the whole app, alone in its package: nothing else runs while a count is taken.

The e2e package's shared host carries other tests' timers and retries; counts taken beside them
would not be deterministic. This host has the counting policy on its Blob client from the start.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from agent import runtime
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import TEST_DEPLOYMENT, FakeOpenAI, fake_openai
from devkit.ledger import BlobRequestCounter, Ledger, install_counting_runtime
from devkit.mcp_servers import AsgiServer, demo_http_app
from devkit.scheduler import WEBHOOK_SECRET
from local_host.host import LocalHost
from offline_model.brains import ScriptedBrain
from tests.support.task_mcp import TaskBoard, task_http_app

ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 60  # a 50-step turn (test_replay_stays_flat) fits


@dataclass
class CountedApp:
    host: LocalHost
    http: aiohttp.ClientSession
    model: FakeOpenAI
    ledger: Ledger

    @property
    def api(self) -> str:
        return f"{self.host.base_url}/api"

    async def post(self, path: str, **kwargs: Any) -> Any:
        async with self.http.post(f"{self.api}{path}", **kwargs) as response:
            assert response.status < 300, await response.text()
            return await response.json()


@pytest.fixture(scope="package")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    sandbox = tmp_path_factory.mktemp("sandbox")
    with AsgiServer(lambda: demo_http_app(sandbox_dir=sandbox)) as server:
        yield server


@pytest.fixture(scope="package")
def task_board() -> TaskBoard:
    return TaskBoard()


@pytest.fixture(scope="package")
def task_server(task_board: TaskBoard) -> Iterator[AsgiServer]:
    """A server that answers `slow_report` with a 30-second task (tests.support.task_mcp)."""
    with AsgiServer(lambda: task_http_app(task_board)) as server:
        yield server


@pytest_asyncio.fixture(scope="package")
async def counted(
    azurite: AzuriteInstance,
    demo_server: AsgiServer,
    task_server: AsgiServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[CountedApp]:
    servers = {
        "mcp_servers": [
            {"name": "web", "transport": {"type": "streamable_http", "url": demo_server.url()}},
            {"name": "tasks", "transport": {"type": "streamable_http", "url": task_server.url()}},
        ]
    }
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "CONVERSATIONS_STORAGE": azurite.connection_string,
        "CONVERSATIONS_CONTAINER": f"ledger-{uuid.uuid4().hex[:12]}",
        "MCP_SERVERS": json.dumps(servers),
        "AGENT_MAX_STEPS": str(MAX_STEPS),
        "AGENT_MAX_TOKENS_PER_RUN": "1000000",  # a 50-step turn's growing prompts fit
        "SCHEDULER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # One lane: a scheduled item's count does not depend on how its lanes interleave.
        "BATCH_MAX_CONCURRENCY": "1",
        # A task's poll interval (5 s) is waited at most 0.2 s: its clock is the polls'.
        "MCP_TASK_POLL_MAX_SECONDS": "0.2",
        # A task's question nobody answers is declined after 2 s (a durable timer's wait).
        "AGENT_APPROVAL_TIMEOUT_SECONDS": "2",
    }
    state = tmp_path_factory.mktemp("host") / "durable.sqlite3"
    async with fake_openai(ScriptedBrain()) as model:
        settings.update(
            AZURE_OPENAI_ENDPOINT=model.base_url,
            AZURE_OPENAI_DEPLOYMENT=TEST_DEPLOYMENT,
            AZURE_OPENAI_API_KEY=model.api_key or "",
        )
        with pytest.MonkeyPatch.context() as env:
            for name in ("OPENAI_BASE_URL", "REQUIRE_AUTH", "KEYVAULT_URI"):
                env.delenv(name, raising=False)
            for name, value in settings.items():
                env.setenv(name, value)
            runtime.use_runtime(None)
            async with (
                LocalHost(ROOT, port=0, state_path=state, apply_local_settings=False) as host,
                aiohttp.ClientSession() as http,
            ):
                env.setenv("PUBLIC_BASE_URL", host.base_url)
                counter = BlobRequestCounter()
                built = await install_counting_runtime(counter)
                try:
                    yield CountedApp(host, http, model, Ledger(host.runtime.counters, counter))
                finally:
                    await built.aclose()
                    runtime.use_runtime(None)
