"""Fixtures for the local host tests: test apps, in-process hosts, SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import azure.durable_functions as df
import pytest
import pytest_asyncio

from local_host.host import LocalHost

APPS = Path(__file__).parent / "apps"
HTTP_APP = APPS / "http_app"
DURABLE_APP = APPS / "durable_app"
CRASH_APP = APPS / "crash_app"

TERMINAL = {"Completed", "Failed", "Terminated"}


@pytest_asyncio.fixture(scope="module")
async def durable_host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalHost]:
    """The durable test app, served in-process on an ephemeral port."""
    state = tmp_path_factory.mktemp("durable") / "state.sqlite3"
    async with LocalHost(DURABLE_APP, port=0, state_path=state) as host:
        yield host


@pytest.fixture
def client(durable_host: LocalHost) -> df.DurableOrchestrationClient:
    """The SDK's own client, built from the binding JSON the host passes to functions."""
    return df.DurableOrchestrationClient(durable_host.client_binding())


@pytest_asyncio.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
