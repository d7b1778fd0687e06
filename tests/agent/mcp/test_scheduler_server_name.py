"""Which MCP server `POST /api/schedules` schedules through: the one named `scheduler`, in any
case (the seeds name it `Scheduler`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from agent.runtime import Runtime
from agent.scheduling import scheduler_name
from devkit.mcp_servers import http_entry
from tests.agent.mcp.conftest import PoolFactory


async def test_the_seeds_capitalised_scheduler_is_the_scheduler(make_pool: PoolFactory) -> None:
    pool = await make_pool(http_entry("Scheduler", "http://127.0.0.1:9/mcp"))
    rt = cast(Runtime, SimpleNamespace(mcp=pool))  # only the pool is read
    assert scheduler_name(rt) == "Scheduler"


async def test_without_a_scheduler_server_there_is_none(make_pool: PoolFactory) -> None:
    pool = await make_pool(http_entry("schedules-elsewhere", "http://127.0.0.1:9/mcp"))
    rt = cast(Runtime, SimpleNamespace(mcp=pool))
    assert scheduler_name(rt) is None
