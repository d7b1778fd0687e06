"""The Scheduler: an MCP server that schedules conversations and calls them back when due.

Run: `python -m samples.scheduler_mcp --port 5146 --state scheduler.sqlite3` (streamable HTTP at
`/mcp`; `SCHEDULER_CLIENT_ID`, `SCHEDULER_API_KEY`, `SCHEDULER_WEBHOOK_SECRET` in the environment).
"""

from samples.scheduler_mcp.config import SchedulerConfig
from samples.scheduler_mcp.dispatcher import Dispatcher, RetryPolicy, TickReport
from samples.scheduler_mcp.server import IDEMPOTENCY_META_KEY, Scheduler, build_mcp_server
from samples.scheduler_mcp.store import Schedule, ScheduleStore

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "Dispatcher",
    "RetryPolicy",
    "Schedule",
    "ScheduleStore",
    "Scheduler",
    "SchedulerConfig",
    "TickReport",
    "build_mcp_server",
]
