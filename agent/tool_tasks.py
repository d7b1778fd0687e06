"""A run's tool calls that their MCP server answers with a task (agent.mcp.tasks; version-4
runs), from the task record to the task's end.

`tool_call` (agent.activities) sends the call; when the server answers with a task, `started`
stores a create-only task record and the call comes back pending. The record is what a retried
`tool_call` finds (`already_started`) instead of sending the call again, and what a cancelled
run's tasks are cancelled from (`cancel_run_tasks`). The orchestrator then polls the task on
durable timers through the `poll_tool_task` activity, which stores its result as `tool_call`
stores a plain one (agent.tool_results), or an outcome that names why it has none
(`TASK_OUTCOMES`). A task's questions to a person become durable waits of the orchestrator
(agent.task_input); the `answer_tool_task` activity sends the answers on. An orchestrator
before version 4 cannot wait for a task: the call's task is cancelled (`not_awaited`).

Cancelling is best effort everywhere: a server that cannot be reached keeps the task until its
time to live ends it, and the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp_types import CallToolResult
from pydantic import ValidationError

from agent import events, task_input
from agent.contracts import (
    AnswerTaskInput,
    PendingTask,
    PollTaskInput,
    RunRef,
    TaskAnswered,
    TaskPoll,
)
from agent.errors import ToolTimeout, ToolTransportError
from agent.mcp.dispatch import outcome_of
from agent.mcp.tasks import poll_delay
from agent.tool_results import call_ended, question_asker, result_message
from storage.conversations import ConversationRef, StoredMessage, ToolCallRecord
from storage.models import ToolTaskRecord, utc_timestamp

if TYPE_CHECKING:
    from agent.elicitation import Asker
    from agent.mcp.tasks import TaskHandle, TaskState
    from agent.runtime import Runtime

log = logging.getLogger(__name__)

TASK_NOT_AWAITED = (
    "the tool started a long-running task this run cannot wait for; the task was cancelled"
)
# Outcomes the model reads when a task does not complete:
TASK_OUTCOMES = {
    "task_failed": "the tool's task failed: {detail}",
    "task_cancelled": "the tool's task was cancelled on the server",
    "task_expired": "the tool's task expired on the server before it finished (its time to "
    "live passed); its result is lost",
    "task_timed_out": "the tool's task did not finish within {detail} s; it was cancelled",
    "task_input_unsupported": "the tool's task asked for input this client cannot give "
    "({detail}); it was cancelled",
}


# --- from tool_call ----------------------------------------------------------------------------


async def already_started(
    rt: Runtime, run: RunRef, record: ToolCallRecord, recorder: events.RunRecorder
) -> PendingTask | None:
    """The task an earlier attempt of the call started, pending again (None: it has none).
    Its start is recorded again: the first attempt may have stopped before its event."""
    task = await rt.store.get_tool_task(run.conversation, run.run_id, record.call_id)
    if task is None:
        return None
    await recorder.record(
        events.task_started(task.step, task.call_id, task.task_id, task.server, "working")
    )
    return _pending(rt, task)


async def started(
    rt: Runtime,
    run: RunRef,
    record: ToolCallRecord,
    recorder: events.RunRecorder,
    server: str,
    handle: TaskHandle,
) -> PendingTask:
    """Record the task the server answered the call with (create-only), pending."""
    task = await rt.store.put_tool_task(
        run.conversation,
        ToolTaskRecord(
            run_id=run.run_id,
            step=record.step,
            call_id=record.call_id,
            server=server,
            task_id=handle.task_id,
            created_at=utc_timestamp(),
            ttl_ms=handle.ttl_ms,
            poll_interval_ms=handle.poll_interval_ms,
        ),
    )
    if task.task_id != handle.task_id:  # a concurrent execution's task is the call's: stop ours
        await _cancel_task(rt, server, handle.task_id)
    await recorder.record(
        events.task_started(task.step, task.call_id, task.task_id, task.server, handle.status)
    )
    return _pending(rt, task, handle.status)


async def not_awaited(
    rt: Runtime, run: RunRef, record: ToolCallRecord, server: str, handle: TaskHandle
) -> StoredMessage:
    """The result of a call whose task the run cannot wait for (an orchestrator before
    version 4): the task is stopped rather than left running."""
    await _cancel_task(rt, server, handle.task_id)
    return record.result_message(run.turn, TASK_NOT_AWAITED, is_error=True)


def _pending(
    rt: Runtime,
    task: ToolTaskRecord,
    status: str = "working",
    poll_interval_ms: int | None = None,
    polls: int = 0,
) -> PendingTask:
    limits = rt.settings.limits
    interval = poll_interval_ms if poll_interval_ms is not None else task.poll_interval_ms
    return PendingTask(
        call_id=task.call_id,
        task_id=task.task_id,
        server=task.server,
        poll_after_seconds=poll_delay(interval, polls, limits.task_poll_max_seconds),
        timeout_seconds=limits.task_timeout_seconds,
        status=status,
    )


# --- the poll_tool_task and answer_tool_task activities ------------------------------------------


async def _call_with_task(
    rt: Runtime, run: RunRef, call_id: str
) -> tuple[ToolCallRecord, ToolTaskRecord]:
    ref = run.conversation
    record = await rt.store.get_tool_call(ref, run.run_id, call_id)
    task = await rt.store.get_tool_task(ref, run.run_id, call_id)
    if record is None or task is None:
        raise LookupError(f"no task of tool call {call_id} in run {run.run_id}")
    return record, task


async def poll_tool_task(data: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """Ask the server about a call's task once; store its result when it ended."""
    job = PollTaskInput.from_dict(data)
    ref = job.run.conversation
    record, task = await _call_with_task(rt, job.run, job.call_id)
    if record.status == "completed":  # an earlier attempt stored the result
        if record.result is not None:  # it may have failed before the transcript or the events
            await rt.store.record_tool_result(ref, record, record.result)
            await _task_finished(rt, job.run, record, task, record.result)
        return TaskPoll(job.call_id, outcome="completed").to_dict()
    if job.give_up:
        await _cancel_task(rt, task.server, task.task_id)
        detail = str(rt.settings.limits.task_timeout_seconds)
        return await _task_ended(rt, job, record, task, "task_timed_out", detail=detail)
    state = await rt.mcp.task_state(task.server, task.task_id)
    if state is None:
        return await _task_ended(rt, job, record, task, "task_expired")
    if state.status == "completed":
        return await _task_completed(rt, job, record, task, state)
    if state.status == "failed":
        error = state.error or {}
        detail = str(error.get("message") or "no reason given")[:300]
        return await _task_ended(rt, job, record, task, "task_failed", detail=detail)
    if state.status == "cancelled":
        return await _task_ended(rt, job, record, task, "task_cancelled")
    if task.expired(datetime.now(UTC)):
        return await _task_ended(rt, job, record, task, "task_expired")
    asked = None
    if state.status == "input_required" and state.input_requests:
        try:
            asked = await task_input.ask(
                _task_asker(rt, job.run, record), task.task_id, job.poll, state.input_requests
            )
        except task_input.UnsupportedInput as exc:
            await _cancel_task(rt, task.server, task.task_id)
            return await _task_ended(rt, job, record, task, "task_input_unsupported", str(exc))
    await events.RunRecorder.for_run(rt.events, job.run).record(
        events.task_status(
            task.step, task.call_id, task.task_id, task.server,
            state.status, state.status_message, job.poll,
        )
    )  # fmt: skip
    pending = _pending(rt, task, state.status, state.poll_interval_ms, job.poll + 1)
    return TaskPoll(job.call_id, pending=pending, asked=asked).to_dict()


def _task_asker(rt: Runtime, run: RunRef, record: ToolCallRecord) -> Asker:
    """Where a task's questions go: the call's, with the approval timeout as their deadline
    (nothing is held while a person thinks, so no activity's limit bounds it)."""
    wait = float(rt.settings.limits.approval_timeout_seconds)
    return question_asker(rt, record, events.RunRecorder.for_run(rt.events, run), wait)


async def answer_tool_task(data: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """Send a task's answered (or, at the deadline, declined) questions on: `tasks/update`."""
    job = AnswerTaskInput.from_dict(data)
    record, task = await _call_with_task(rt, job.run, job.call_id)

    async def update(task_id: str, responses: dict[str, Any]) -> bool:
        return await rt.mcp.update_task(task.server, task_id, responses)

    sent = await task_input.send(_task_asker(rt, job.run, record), job, update)
    return TaskAnswered(job.call_id, sent).to_dict()


async def _task_completed(
    rt: Runtime, job: PollTaskInput, record: ToolCallRecord, task: ToolTaskRecord, state: TaskState
) -> dict[str, Any]:
    try:
        result = CallToolResult.model_validate(state.result or {}, by_name=False)
    except ValidationError:
        detail = "its result was not a tool result"
        return await _task_ended(rt, job, record, task, "task_failed", detail=detail)
    outcome = outcome_of(result, rt.mcp.output_limit(task.server), time.perf_counter())
    message = await result_message(rt, job.run, record, outcome)
    return await _store_task_result(rt, job, record, task, message, "completed")


async def _task_ended(
    rt: Runtime,
    job: PollTaskInput,
    record: ToolCallRecord,
    task: ToolTaskRecord,
    outcome: str,
    detail: str = "",
) -> dict[str, Any]:
    text = f"{outcome}: {TASK_OUTCOMES[outcome].format(detail=detail)}"
    message = record.result_message(job.run.turn, text, is_error=True)
    return await _store_task_result(rt, job, record, task, message, outcome)


async def _store_task_result(
    rt: Runtime,
    job: PollTaskInput,
    record: ToolCallRecord,
    task: ToolTaskRecord,
    message: StoredMessage,
    outcome: str,
) -> dict[str, Any]:
    await rt.store.record_tool_result(job.run.conversation, record, message)
    await _task_finished(rt, job.run, record, task, message)
    return TaskPoll(job.call_id, outcome=outcome).to_dict()


async def _task_finished(
    rt: Runtime, run: RunRef, record: ToolCallRecord, task: ToolTaskRecord, message: StoredMessage
) -> None:
    """The events of a task's stored result (keyed: a retry that writes them again is a no-op).
    The outcome is read back from the result, which a retry has in hand when the events are
    all that is missing."""
    prefix = (message.content or "").partition(":")[0] if message.is_error else ""
    outcome = prefix if prefix in TASK_OUTCOMES else "completed"
    status = "completed" if outcome == "completed" else outcome.removeprefix("task_")
    await events.RunRecorder.for_run(rt.events, run).record(
        events.task_finished(task.step, task.call_id, task.task_id, task.server, status, outcome),
        call_ended(record, message),
    )


# --- cancelling ----------------------------------------------------------------------------------


async def _cancel_task(rt: Runtime, server: str, task_id: str) -> bool:
    """tasks/cancel, best effort: a server that cannot be reached now keeps the task until its
    TTL ends it; the run goes on (logged, since the work may still run there)."""
    try:
        return await rt.mcp.cancel_task(server, task_id)
    except (ToolTransportError, ToolTimeout) as exc:
        log.warning("could not cancel MCP task on server %s: %s", server, exc)
        return False


async def cancel_tasks_of(rt: Runtime, run: RunRef, call_ids: Iterable[str]) -> None:
    """tasks/cancel, best effort, for those of the calls that have a task (polling it failed
    for good: the run goes on without its result, so the server need not run it on)."""
    ref = run.conversation
    found = await asyncio.gather(
        *(rt.store.get_tool_task(ref, run.run_id, call_id) for call_id in call_ids)
    )
    await asyncio.gather(*(_cancel_task(rt, t.server, t.task_id) for t in found if t is not None))


async def cancel_run_tasks(rt: Runtime, ref: ConversationRef, run_id: str) -> int:
    """Cancel on their servers, all at once, the tasks of a run's calls that have no result yet
    (a cancelled run); how many the servers accepted. Best effort after the run has ended: a
    task that cannot be cancelled, whatever the reason, is logged and the others go on."""
    tasks = await rt.store.list_tool_tasks(ref, run_id)
    done = await asyncio.gather(
        *(_cancel_open_task(rt, ref, task) for task in tasks), return_exceptions=True
    )
    for task, outcome in zip(tasks, done, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            log.warning(
                "could not cancel MCP task on server %s (%s)", task.server, type(outcome).__name__
            )
    return sum(outcome is True for outcome in done)


async def _cancel_open_task(rt: Runtime, ref: ConversationRef, task: ToolTaskRecord) -> bool:
    record = await rt.store.get_tool_call(ref, task.run_id, task.call_id)
    if record is not None and record.status == "completed":
        return False
    return await _cancel_task(rt, task.server, task.task_id)
