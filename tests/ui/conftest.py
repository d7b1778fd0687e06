"""The chat page in a real browser: Debian's headless Chromium, driven by Playwright's Python
package, against the whole app served by the local host.

Real parts, as in tests/e2e: Azurite, the model server in the Azure OpenAI REST shape with the
offline brain (it calls a tool for each `/tool <server>__<tool> <json>` line) behind the real
`openai` client, and the demo MCP server on streamable HTTP under the name `demo`, as
`scripts/run.sh` configures it, with `save_text_file` needing approval, and the test helper
server's `greet_asking` (it asks the person for their name) under the name `asking`. The host requires a
function key, so the page is used as on Azure: the user pastes the key.

Skipped, saying why, only when Chromium is not installed. Screenshots go to `.artifacts/ui/`
(gitignored); each test prints the path of its own.
"""

from __future__ import annotations

import json
import os
import shutil
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
from devkit.mcp_servers import AsgiServer, demo_http_app
from local_host.host import LocalHost
from offline_model.brains import OfflineBrain
from tests.support.helper_mcp import helper_http_app

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts" / "ui"
FUNCTION_KEY = "ui-function-key-3b9e51d07c"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAS_CHROMIUM = Path(CHROMIUM).exists()
PHONE = {"width": 375, "height": 812}
EVENTS_PATH = "/api/runs/{run_id}/events"


@dataclass(frozen=True)
class Served:
    """The app as the browser reaches it."""

    base_url: str
    host: LocalHost
    serves_events: bool  # GET /api/runs/{id}/events is there (else the page polls)

    @property
    def page_url(self) -> str:
        return f"{self.base_url}/api/ui"


@pytest.fixture(scope="package")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sandbox = tmp_path_factory.mktemp("ui-sandbox")
    with AsgiServer(lambda: demo_http_app(sandbox_dir=sandbox)) as server:
        yield {
            "name": "demo",
            "transport": {"type": "streamable_http", "url": server.url()},
            "tools": {"require_approval": ["save_text_file"]},
        }


@pytest.fixture(scope="package")
def asking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sandbox = tmp_path_factory.mktemp("ui-asking")
    with AsgiServer(lambda: helper_http_app(sandbox_dir=sandbox)) as server:
        yield {
            "name": "asking",
            "transport": {"type": "streamable_http", "url": server.url()},
            "tools": {"allow": ["greet_asking"]},
        }


@pytest_asyncio.fixture(scope="package")
async def offline_model() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(OfflineBrain()) as fake:
        yield fake


@pytest_asyncio.fixture(scope="package")
async def served(
    azurite: AzuriteInstance,
    offline_model: FakeOpenAI,
    demo_server: dict[str, Any],
    asking_server: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Served]:
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "CONVERSATIONS_STORAGE": azurite.connection_string,
        "CONVERSATIONS_CONTAINER": f"ui-{uuid.uuid4().hex[:12]}",
        "AZURE_OPENAI_ENDPOINT": offline_model.base_url,
        "AZURE_OPENAI_DEPLOYMENT": TEST_DEPLOYMENT,
        "AZURE_OPENAI_API_KEY": offline_model.api_key or "",
        "MCP_SERVERS": json.dumps({"mcp_servers": [demo_server, asking_server]}),
        "AGENT_MAX_STEPS": "4",
        # A person answers: long enough that a loaded machine never times the question out.
        "AGENT_APPROVAL_TIMEOUT_SECONDS": "600",
        # GET /runs/{id}/events streams (read per request: a test may switch to buffered SSE)
        "AGENT_HTTP_STREAMING": "true",
    }
    state = tmp_path_factory.mktemp("ui-host") / "durable.sqlite3"
    with pytest.MonkeyPatch.context() as env:
        for name in ("OPENAI_BASE_URL", "REQUIRE_AUTH", "KEYVAULT_URI", "MCP_SERVERS"):
            env.delenv(name, raising=False)
        for name, value in settings.items():
            env.setenv(name, value)
        runtime.use_runtime(None)
        async with LocalHost(
            ROOT, port=0, state_path=state, function_key=FUNCTION_KEY, apply_local_settings=False
        ) as host:
            env.setenv("PUBLIC_BASE_URL", host.base_url)
            runtime.use_runtime(None)  # settings were parsed at import: parse them again
            yield Served(host.base_url, host, await documents_events(host.base_url))
        built = runtime.current()
        if built is not None:
            await built.aclose()
        runtime.use_runtime(None)


@pytest_asyncio.fixture(scope="package")
async def browser() -> AsyncIterator[Any]:
    if not HAS_CHROMIUM:
        pytest.skip(
            f"Chromium is not installed ({CHROMIUM}): `apt-get install chromium` "
            "(scripts/bootstrap.sh does it when run as root)"
        )
    from playwright.async_api import async_playwright

    # As root, Chromium refuses to start with its sandbox on.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield launched
        await launched.close()


async def documents_events(base_url: str) -> bool:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base_url}/api/openapi.json") as response,
    ):
        return EVENTS_PATH in (await response.json())["paths"]


SAVED: list[Path] = []  # screenshots this session took, listed at the end of the run


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    SAVED.append(path)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SAVED:
        terminalreporter.write_sep("-", "chat page screenshots (test artefacts)")
        for path in SAVED:
            terminalreporter.write_line(str(path))
