"""An MCP server that answers long tool calls with tasks (the `io.modelcontextprotocol/tasks`
extension, SEP-2663), built on the SDK's extension surface: `tools/call` of `slow_report` makes
a task, `tasks/get` reports it, `tasks/cancel` stops it.

The task's clock is the server's own and the test drives it: each `tasks/get` moves the asked
task on by the poll interval the server suggested (the client waited that long, as told), so a
"30-second" task completes on the 30 / pollInterval-th poll without the test waiting 30 s. The
`TaskBoard` (shared across restarts of the served app) records what clients did: tasks created,
`tasks/get` per task, `tasks/cancel` seen.

`greeting_card` is a task that needs a person: its `tasks/get` reports `input_required` with one
elicitation request (key `name`) until a `tasks/update` answers it; the card then carries the
name (or says it was declined / cancelled). The board records every `tasks/update`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS

from devkit.mcp_servers import AsgiApp

IDENTIFIER = "io.modelcontextprotocol/tasks"
TASK_TOOL = "slow_report"
INPUT_TOOL = "greeting_card"
NAME_KEY = "name"
NAME_REQUEST: dict[str, Any] = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Whose name goes on the card?",
        "requestedSchema": {
            "type": "object",
            "properties": {"name": {"type": "string", "title": "Name"}},
            "required": ["name"],
        },
    },
}


@dataclass
class _Task:
    task_id: str
    result: dict[str, Any]
    status: str = "working"
    elapsed_ms: int = 0
    occasion: str | None = None  # a greeting card: waits for a name until answered
    answered: bool = False


@dataclass
class TaskBoard:
    """The server's tasks and what clients asked of them."""

    duration_ms: int = 30_000
    poll_interval_ms: int | None = 5_000
    ttl_ms: int | None = 3_600_000
    tasks: dict[str, _Task] = field(default_factory=dict)
    gets: Counter[str] = field(default_factory=Counter)
    cancelled: list[str] = field(default_factory=list)
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    input_request: dict[str, Any] = field(default_factory=lambda: NAME_REQUEST)  # what cards ask
    stalled: bool = False  # tasks never finish (to show a timeout or a cancel)
    get_error: int | None = None  # tasks/get answers this JSON-RPC error code (a failing server)

    @property
    def created(self) -> list[str]:
        return list(self.tasks)

    def reset(self, **settings: Any) -> TaskBoard:
        """No tasks and nothing seen, with the given settings (else the defaults): per test."""
        fresh = TaskBoard(**settings)
        self.__dict__.update(fresh.__dict__)
        return self


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Params(types.RequestParams):
    task_id: str


class _UpdateParams(types.RequestParams):
    task_id: str
    input_responses: dict[str, Any]


class ServerTasks(Extension):
    identifier = IDENTIFIER

    def __init__(self, board: TaskBoard) -> None:
        self.board = board

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", _Params, self._get),
            MethodBinding("tasks/cancel", _Params, self._cancel),
            MethodBinding("tasks/update", _UpdateParams, self._update),
        ]

    def _task(self, task: _Task) -> dict[str, Any]:
        board = self.board
        data: dict[str, Any] = {
            "taskId": task.task_id,
            "status": task.status,
            "statusMessage": f"{task.elapsed_ms // 1000} of {board.duration_ms // 1000} s",
            "createdAt": _now(),
            "lastUpdatedAt": _now(),
            "ttlMs": board.ttl_ms,
        }
        if board.poll_interval_ms is not None:
            data["pollIntervalMs"] = board.poll_interval_ms
        return data

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name not in (TASK_TOOL, INPUT_TOOL):
            return await call_next(ctx)
        result = await call_next(ctx)  # the work itself is quick; its clock is the task's
        assert isinstance(result, types.CallToolResult)
        task = _Task(f"task-{len(self.board.tasks) + 1}", result.model_dump(by_alias=True))
        if params.name == INPUT_TOOL:
            task.occasion = str((params.arguments or {}).get("occasion", ""))
        self.board.tasks[task.task_id] = task
        return {**self._task(task), "resultType": "task"}

    async def _get(self, _ctx: ServerRequestContext[Any, Any], params: _Params) -> HandlerResult:
        if self.board.get_error is not None:
            raise MCPError(self.board.get_error, "tasks/get failed")
        task = self._find(params.task_id)
        self.board.gets[task.task_id] += 1
        if task.occasion is not None and not task.answered and task.status == "working":
            data = {**self._task(task), "status": "input_required"}
            return {
                **data,
                "inputRequests": {NAME_KEY: self.board.input_request},
                "resultType": "complete",
            }
        if task.status == "working" and not self.board.stalled:
            task.elapsed_ms += self.board.poll_interval_ms or 1_000
            if task.elapsed_ms >= self.board.duration_ms:
                task.status = "completed"
        data = self._task(task)
        if task.status == "completed":
            data["result"] = task.result
        return {**data, "resultType": "complete"}

    async def _cancel(self, _ctx: ServerRequestContext[Any, Any], params: _Params) -> HandlerResult:
        task = self._find(params.task_id)
        self.board.cancelled.append(task.task_id)
        if task.status == "working":
            task.status = "cancelled"
        return {"resultType": "complete"}

    async def _update(
        self, _ctx: ServerRequestContext[Any, Any], params: _UpdateParams
    ) -> HandlerResult:
        task = self._find(params.task_id)
        self.board.updates.append((task.task_id, params.input_responses))
        response = params.input_responses.get(NAME_KEY)
        if task.occasion is None or task.answered or not isinstance(response, dict):
            raise MCPError(INVALID_PARAMS, f"task {task.task_id} asks for no such input")
        task.answered = True
        action = response.get("action")
        if action == "cancel":
            task.status = "cancelled"
        else:
            name = (response.get("content") or {}).get("name") if action == "accept" else None
            text = (
                f"A {task.occasion} card for {name}."
                if name
                else (f"A {task.occasion} card with no name (the person {action}d).")
            )
            task.result = types.CallToolResult(
                content=[types.TextContent(type="text", text=text)]
            ).model_dump(by_alias=True)
        return {"resultType": "complete"}

    def _find(self, task_id: str) -> _Task:
        task = self.board.tasks.get(task_id)
        if task is None:
            raise MCPError(INVALID_PARAMS, f"no task {task_id}")
        return task


def build_task_server(board: TaskBoard) -> MCPServer:
    server = MCPServer("tasks", extensions=[ServerTasks(board)])

    @server.tool()
    def slow_report(topic: str) -> str:
        """Write a report on a topic (takes a while: answered as a task)."""
        return f"Report on {topic}: all good."

    @server.tool()
    def greeting_card(occasion: str) -> str:
        """Write a greeting card (asks whose name goes on it: a task that needs input)."""
        return f"A {occasion} card."

    @server.tool()
    def quick_note(text: str) -> str:
        """Echo a note at once."""
        return f"noted: {text}"

    return server


def task_http_app(board: TaskBoard) -> AsgiApp:
    return build_task_server(board).streamable_http_app()
