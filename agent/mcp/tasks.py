"""MCP tasks (the `io.modelcontextprotocol/tasks` extension, SEP-2663): the wire side.

On the 2026-07-28 revision our sessions negotiate, tasks left the core protocol for this
extension; the SDK (mcp 2.3.0) keeps the 2025-11-25 task types but dispatches none of their
methods, so the few we need are defined here on its public extension surface:

- the client advertises the extension; task creation is then the *server's* choice per call: a
  `tools/call` may answer with a task handle (`resultType: "task"`) instead of a result;
- `tasks/get` reports the task (and, once completed, carries the call's result, or its error);
- `tasks/cancel` asks the server to stop it;
- a task whose status is `input_required` carries `inputRequests` (keyed by the server) in its
  `tasks/get`; the client answers them with `tasks/update`, its `inputResponses` keyed
  identically (the durable question: `agent.task_input`).

The SDK finishes a claimed result through a resolver that must return a `CallToolResult`; ours
raises `TaskCreated` instead, so `client.call_tool` hands the handle up to `dispatch.send`,
which returns it to the activity: nobody waits here. The durable wait (polling on timers) is
the orchestrator's (`agent.orchestrators.await_tool_tasks`).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import mcp_types as types
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession

IDENTIFIER: Final = "io.modelcontextprotocol/tasks"
TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})

# Polling: a backoff from the floor, never sooner than the server's pollInterval, within bounds.
MIN_POLL_SECONDS: Final = 1.0
DEFAULT_POLL_MAX_SECONDS: Final = 60.0
DEFAULT_TASK_TIMEOUT_SECONDS: Final = 3600


class TaskHandle(types.Result):
    """What a `tools/call` answers when the server made the call a task."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str | None = None
    last_updated_at: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskState(types.Result):
    """What `tasks/get` answers: the task, with the call's result once completed (or the
    JSON-RPC error it failed with)."""

    task_id: str
    status: str
    status_message: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None  # with status `input_required`


class TaskIdParams(types.RequestParams):
    task_id: str


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"  # SEP-2663: tasks/* carry the task id in the Mcp-Name header


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class TaskUpdateParams(types.RequestParams):
    task_id: str
    input_responses: dict[str, Any]


class UpdateTask(types.Request[TaskUpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: TaskUpdateParams
    name_param = "taskId"


class TaskCreated(Exception):
    """Raised through `Client.call_tool` when the server answered with a task."""

    def __init__(self, handle: TaskHandle) -> None:
        super().__init__(f"the server started task {handle.task_id}")
        self.handle = handle


async def _hand_up(handle: TaskHandle, _context: ClaimContext) -> types.CallToolResult:
    raise TaskCreated(handle)


class TasksExtension(ClientExtension):
    """Advertises the tasks extension and claims the task-handle result of `tools/call`."""

    identifier = IDENTIFIER

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=_hand_up)]


async def get_task(session: ClientSession, task_id: str, read_timeout: float) -> TaskState:
    request = GetTask(params=TaskIdParams(task_id=task_id))
    return await session.send_request(request, TaskState, request_read_timeout_seconds=read_timeout)


async def cancel_task(session: ClientSession, task_id: str, read_timeout: float) -> None:
    request = CancelTask(params=TaskIdParams(task_id=task_id))
    await session.send_request(request, types.Result, request_read_timeout_seconds=read_timeout)


async def update_task(
    session: ClientSession, task_id: str, responses: dict[str, Any], read_timeout: float
) -> None:
    request = UpdateTask(params=TaskUpdateParams(task_id=task_id, input_responses=responses))
    await session.send_request(request, types.Result, request_read_timeout_seconds=read_timeout)


def poll_delay(poll_interval_ms: int | None, polls: int, max_seconds: float) -> float:
    """Seconds to wait before the next `tasks/get`: doubling from the floor with each poll, never
    sooner than the server's pollInterval, never more than `max_seconds`. The backoff holds even
    with a server interval: each wait is a durable timer and a poll activity in the run's
    history, so a 1 s interval over an hour would be thousands of rounds in one execution
    (its replay growing with each); backing off, it is tens."""
    floor = min(MIN_POLL_SECONDS, max_seconds)
    wanted: float = floor * 2 ** min(polls, 16)
    if poll_interval_ms is not None:
        wanted = max(wanted, poll_interval_ms / 1000)
    return max(floor, min(wanted, max_seconds))
