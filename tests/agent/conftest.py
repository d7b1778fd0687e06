"""Fixtures shared by the agent's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.mcp_servers import AsgiServer
from tests.support.helper_mcp import helper_http_app


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    """The helper MCP server (demo tools + test helpers) over streamable HTTP, a module's own."""
    sandbox = tmp_path_factory.mktemp("sandbox")
    with AsgiServer(lambda: helper_http_app(sandbox_dir=sandbox)) as server:
        yield server
