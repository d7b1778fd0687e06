"""Fixtures for the MCP client tests: the demo and helper servers on loopback, pools that close
themselves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.mcp.config import EnvSecretResolver, parse_mcp_servers
from agent.mcp.pool import McpPool
from devkit.mcp_servers import AsgiServer, demo_http_app, demo_sse_app
from tests.support.helper_mcp import helper_http_app


class FakeClock:
    """A monotonic clock the test moves by hand (catalog TTL, breaker cooldown)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def demo_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-sandbox")


@pytest.fixture(scope="session")
def demo_http(demo_sandbox: Path) -> Iterator[AsgiServer]:
    """The demo server over streamable HTTP, shared by the tests that don't stop it."""
    with AsgiServer(lambda: demo_http_app(demo_sandbox)) as server:
        yield server


@pytest.fixture(scope="session")
def demo_sse(demo_sandbox: Path) -> Iterator[AsgiServer]:
    with AsgiServer(lambda: demo_sse_app(demo_sandbox)) as server:
        yield server


@pytest.fixture(scope="session")
def helper_http(demo_sandbox: Path) -> Iterator[AsgiServer]:
    """The helper server (demo tools + test helpers) over streamable HTTP, shared."""
    with AsgiServer(lambda: helper_http_app(demo_sandbox)) as server:
        yield server


@pytest.fixture
def own_demo_http(demo_sandbox: Path) -> Iterator[AsgiServer]:
    """A demo server this test may stop and restart."""
    server = AsgiServer(lambda: demo_http_app(demo_sandbox)).start()
    yield server
    server.stop()


PoolFactory = Callable[..., Awaitable[McpPool]]


def connects(pool: McpPool, server: str) -> int:
    """How many sessions the pool has opened to `server`, as its status reports."""
    (status,) = [status for status in pool.status() if status.name == server]
    return status.connects


@pytest.fixture
async def make_pool() -> AsyncIterator[PoolFactory]:
    """`await make_pool(server_entry, ..., environ=..., **pool_kwargs)`; closed after the test."""
    pools: list[McpPool] = []

    async def make(
        *servers: dict[str, Any], environ: dict[str, str] | None = None, **kwargs: Any
    ) -> McpPool:
        configs = parse_mcp_servers(json.dumps({"mcp_servers": list(servers)}))
        kwargs.setdefault("secrets", EnvSecretResolver(environ or {}))
        pool = McpPool(configs, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.aclose()
