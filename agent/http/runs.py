"""Runs: `GET /api/runs/{run_id}`, `POST .../cancel`, `POST .../approvals`, `POST .../input`,
and the run view other resources show (a message's wait, a batch's items).

Durable's management URLs (they carry the system key) never leave the app: callers get our own
`/api/runs/{id}` URL instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent import elicitation
from agent.contracts import ChatTurnOutput
from agent.errors import BadRequest, Conflict, NotFound
from agent.http.kit import Call, api, json_response
from agent.http.models import ACTIVE, TERMINAL, ApprovalAnswer, InputAnswer
from agent.input_schema import validate_answer
from agent.loop import APPROVAL_EVENT, input_event
from agent.runtime import Runtime
from agent.tool_tasks import cancel_run_tasks
from agent.turn_lock import status_name
from storage.conversations import ConversationRef
from storage.errors import AlreadyExists, RecordNotFound
from storage.questions import Answer, Question

log = logging.getLogger(__name__)

_POLL_INTERVALS = (0.05, 0.1, 0.2, 0.3, 0.5)  # then every 0.5 s while waiting for an answer

# Durable runtime status → our run status (completed runs carry their own outcome).
_DURABLE_TO_RUN = {
    "Pending": "pending",
    "Running": "running",
    "ContinuedAsNew": "running",
    "Failed": "failed",
    "Terminated": "cancelled",
    "Canceled": "cancelled",
    "Suspended": "running",
}
_TASK_PHASES = ("waiting_for_task", "waiting_for_input")
_ASKING_PHASES = ("tools", "waiting_for_input")  # elicitation in a call; a task's question
# How long a cancel waits for Durable to report the run terminated before answering
# "cancelling" instead (a healthy host terminates within a fraction of a second).
CANCEL_WAIT_SECONDS = 3.0


async def run_view(
    rt: Runtime, client: df.DurableOrchestrationClient, run_id: str, owner: str
) -> dict[str, Any]:
    status = await client.get_status(run_id, show_input=True)
    durable = status_name(status)
    turn_input = _input_of(status)
    if durable is None or turn_input is None or turn_input.get("owner") != owner:
        raise NotFound(f"no run {run_id}")
    view: dict[str, Any] = {"run_id": run_id, "conversation_id": turn_input["conversation_id"]}
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    if durable == "Completed" and isinstance(status.output, dict):
        output = ChatTurnOutput.from_dict(status.output)
        view.update(status=output.status, step=output.steps, usage=output.usage.__dict__)
        if output.error:
            view["error"] = output.error
        if output.answer_message_id:
            ref = ConversationRef(owner, output.conversation_id)
            view["answer"] = await answer_text(rt, ref, output.answer_message_id)
        return view
    view["status"] = _DURABLE_TO_RUN.get(durable, "running")
    if view["status"] in TERMINAL:  # Durable's runtime status wins over a stale custom phase
        if durable == "Failed":
            view["error"] = "the run failed unexpectedly"
        return view
    if custom.get("phase") == "waiting_for_approval":
        view["status"] = "waiting_for_approval"
        view["pending_approvals"] = custom.get("pending_approvals", [])
        if custom.get("interrupted_calls"):
            view["interrupted_calls"] = custom["interrupted_calls"]
        if custom.get("question_id"):
            view["question_id"] = custom["question_id"]
    if custom.get("phase") in _TASK_PHASES:  # tool calls their servers run as tasks
        ref = ConversationRef(owner, view["conversation_id"])
        view["pending_tasks"] = await _task_messages(rt, ref, run_id, custom.get("tasks", []))
    if custom.get("phase") in _ASKING_PHASES:  # a tool call (or its task) may ask a person
        await _pending_input(rt, ConversationRef(owner, view["conversation_id"]), view)
    if "step" in custom:
        view["step"] = custom["step"]
    if custom.get("phase"):
        view["phase"] = custom["phase"]
    return view


async def _task_messages(
    rt: Runtime, ref: ConversationRef, run_id: str, tasks: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The pending tasks with each server's latest statusMessage, from the run's event log:
    the server's free text is kept out of Durable history (custom status holds references)."""
    if not tasks:
        return tasks
    latest: dict[str, str | None] = {}
    for event in await rt.events.recorded(ref, run_id):
        if event.type == "task_status":
            latest[event.data.get("tool_call_id", "")] = event.data.get("status_message")
    return [{**task, "status_message": latest.get(task["tool_call_id"])} for task in tasks]


async def _pending_input(rt: Runtime, ref: ConversationRef, view: dict[str, Any]) -> None:
    question = await rt.questions.open_question(ref, view["run_id"], datetime.now(UTC))
    if question is not None:
        view["status"] = "waiting_for_input"
        view["pending_input"] = elicitation.pending_input(question)


def _input_of(status: Any) -> dict[str, Any] | None:
    raw = getattr(status, "input_", None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


async def answer_text(rt: Runtime, ref: ConversationRef, answer_id: str) -> str | None:
    for message in reversed(await rt.store.read_messages(ref)):
        if message.id == answer_id:
            return message.content
    return None


async def wait_for_run(
    rt: Runtime,
    client: df.DurableOrchestrationClient,
    run_id: str,
    ref: ConversationRef,
    seconds: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        view = await run_view(rt, client, run_id, ref.owner)
        remaining = deadline - time.monotonic()
        if view["status"] in TERMINAL or remaining <= 0:
            return view
        interval = _POLL_INTERVALS[min(attempt, len(_POLL_INTERVALS) - 1)]
        await asyncio.sleep(min(interval, remaining))
        attempt += 1


@api
async def get_run(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    rt, owner = call.rt, call.owner()
    view = await run_view(rt, client, call.path_id("run_id"), owner)
    if view["status"] in TERMINAL:
        await release_ended_run(rt, ConversationRef(owner, view["conversation_id"]), view)
    return json_response(view)


async def release_ended_run(rt: Runtime, ref: ConversationRef, view: dict[str, Any]) -> None:
    """Give back the lock of a run Durable reports ended (idempotent: a no-op unless the run
    still holds it). Durable runs no `finish_turn` for a terminated instance, so a cancel
    answered "cancelling" leaves the lock to whoever sees the run ended: this, or the next
    turn's `agent.turn_lock.begin_turn` (a message's, or a scheduled item's)."""
    with contextlib.suppress(RecordNotFound):  # the conversation is gone: no lock to give back
        await rt.store.end_turn(ref, view["run_id"])


@api
async def cancel_run(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    rt, owner = call.rt, call.owner()
    run_id = call.path_id("run_id")
    view = await run_view(rt, client, run_id, owner)
    if view["status"] in TERMINAL:
        raise Conflict(f"run {run_id} has already finished ({view['status']})")
    await client.terminate(run_id, "cancelled by the caller")
    ref = ConversationRef(owner, view["conversation_id"])
    await _stop_run_work(rt, ref, run_id, view)
    # Durable terminates asynchronously: wait (briefly) for its runtime status to say so, so a
    # GET, a second cancel or an approval right after a "cancelled" all see the run ended.
    ended = await wait_for_run(rt, client, run_id, ref, CANCEL_WAIT_SECONDS)
    if ended["status"] in ACTIVE:
        # Not ended yet: the lock stays with the run (a new turn must not run beside it) and
        # goes when the run is seen ended (`release_ended_run`, or the next `begin_turn`).
        log.info("run cancelling", extra={"run_id": run_id})
        return json_response({"run_id": run_id, "status": "cancelling"}, 202)
    await release_ended_run(rt, ref, ended)
    if ended["status"] != "cancelled":  # it finished on its own meanwhile
        raise Conflict(f"run {run_id} has already finished ({ended['status']})")
    log.info("run cancelled", extra={"run_id": run_id})
    return json_response({"run_id": run_id, "status": "cancelled"}, 202)


@api
async def answer_approval(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    rt, owner = call.rt, call.owner()
    run_id = call.path_id("run_id")
    body = call.body(ApprovalAnswer)
    call_id, approved = body.tool_call_id, body.approved
    view = await run_view(rt, client, run_id, owner)
    if view["status"] != "waiting_for_approval":
        raise Conflict(f"run {run_id} is not waiting for an approval (it is {view['status']})")
    if call_id not in view.get("pending_approvals", ()):
        raise NotFound(f"run {run_id} has no tool call {call_id} awaiting approval")
    event = {"tool_call_id": call_id, "approved": approved, **asked(view, body.question_id)}
    await raise_approval(rt, client, view, owner, event)
    log.info("approval answered", extra={"run_id": run_id, "approved": approved})
    return json_response({"run_id": run_id, "tool_call_id": call_id, "approved": approved}, 202)


def asked(view: dict[str, Any], named: str | None) -> dict[str, str]:
    """The question an answer is for, to stamp on its event: the one the caller names (from
    a GET of the run; a client retrying its answer should), which must be the one the run asks
    now, else the one the run asks now. The run ignores an answer stamped with another one."""
    current = view.get("question_id")
    if named is not None and named != current:
        raise Conflict(
            f"run {view['run_id']} is not asking question {named} now"
            + (f" (it asks {current})" if current else "")
        )
    return {"question_id": current} if current else {}


async def raise_approval(
    rt: Runtime,
    client: df.DurableOrchestrationClient,
    view: dict[str, Any],
    owner: str,
    event: dict[str, Any],
) -> None:
    """Raise the approval event; a run that ended since `view` was read is a 409, not a 500."""
    ended = await _raise_to_run(rt, client, view["run_id"], owner, APPROVAL_EVENT, event)
    if ended is not None:
        raise Conflict(f"run {view['run_id']} is not waiting for an approval (it is {ended})")


async def _raise_to_run(
    rt: Runtime,
    client: df.DurableOrchestrationClient,
    run_id: str,
    owner: str,
    name: str,
    data: dict[str, Any],
) -> str | None:
    """Raise event `name` to the run; None once raised, or the run's status when it ended
    since the caller looked (Durable refuses events for an ended instance: "instance ... is
    gone"). A refusal while the run still goes is raised."""
    try:
        await client.raise_event(run_id, name, data)
    except Exception:
        now = await run_view(rt, client, run_id, owner)
        if now["status"] not in TERMINAL:
            raise
        return str(now["status"])
    return None


@api
async def answer_input(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Answer the question a run's tool call asks (an MCP elicitation): first answer wins."""
    rt, owner = call.rt, call.owner()
    run_id = call.path_id("run_id")
    body = call.body(InputAnswer)
    view = await run_view(rt, client, run_id, owner)
    ref = ConversationRef(owner, view["conversation_id"])
    question_id = await _question_asked(rt, ref, view, body.question_id)
    question = await rt.questions.question(ref, run_id, question_id)
    if question is None:
        raise NotFound(f"run {run_id} has no question {question_id}")
    pending = view.get("pending_input") or {}
    if pending.get("question_id") != question_id:
        raise Conflict(
            f"question {question_id} of run {run_id} is no longer open: it was answered, or "
            "its deadline passed (which counts as declined)"
        )
    answer = Answer(body.action, datetime.now(UTC).isoformat(), "caller", _content(body, question))
    try:
        await rt.questions.answer(ref, run_id, question_id, answer)
    except AlreadyExists:
        raise Conflict(f"question {question_id} of run {run_id} is answered already") from None
    elicitation.answered(run_id, question_id)
    if question.task_id is not None:  # a task's question: the run waits durably for this event
        await _raise_input(rt, client, view, owner, question_id)
    log.info("input answered", extra={"run_id": run_id, "action": body.action})
    reply = {"run_id": run_id, "question_id": question_id, "action": body.action}
    return json_response(reply, 202)


async def _stop_run_work(
    rt: Runtime, ref: ConversationRef, run_id: str, view: dict[str, Any]
) -> None:
    """Stop what a terminated run left going, best effort (the run is cancelled all the same,
    so a failure here is logged, never a 500): first its open question, so the tool call
    holding an activity for it goes now rather than at its deadline; then the tasks its tool
    calls run on their servers (one that cannot be reached keeps its task until its TTL)."""
    pending = view.get("pending_input")
    if pending:
        try:
            await _cancel_question(rt, ref, run_id, pending["question_id"])
        except Exception as exc:
            log.warning(
                "could not cancel the run's open question (%s)",
                type(exc).__name__,
                extra={"run_id": run_id},
            )
    try:
        await cancel_run_tasks(rt, ref, run_id)
    except Exception as exc:
        log.warning(
            "could not cancel the run's tool tasks (%s)",
            type(exc).__name__,
            extra={"run_id": run_id},
        )


async def _raise_input(
    rt: Runtime, client: df.DurableOrchestrationClient, view: dict[str, Any], owner: str, qid: str
) -> None:
    """Wake the run waiting for its task's question. The answer is stored already; a run that
    ended meanwhile has nobody to wake."""
    await _raise_to_run(rt, client, view["run_id"], owner, input_event(qid), {"question_id": qid})


async def _cancel_question(
    rt: Runtime, ref: ConversationRef, run_id: str, question_id: str
) -> None:
    """Answer a cancelled run's open question `cancel` (unless someone answered it first): the
    tool call holding an activity for it ends at once (terminating the run does not stop it)."""
    answer = Answer("cancel", datetime.now(UTC).isoformat(), "caller")
    with contextlib.suppress(AlreadyExists):
        await rt.questions.answer(ref, run_id, question_id, answer)
    elicitation.answered(run_id, question_id)


async def _question_asked(
    rt: Runtime, ref: ConversationRef, view: dict[str, Any], named: str | None
) -> str:
    """The question an answer is for: the one named, else the open one, else the newest one
    (answered or expired: a 409 then says so)."""
    pending = view.get("pending_input")
    question_id = named or (pending["question_id"] if pending else None)
    if question_id is None:
        question_id = await rt.questions.newest_id(ref, view["run_id"])
    if question_id is None:
        raise NotFound(f"run {view['run_id']} asks no question")
    return question_id


def _content(body: InputAnswer, question: Question) -> dict[str, Any] | None:
    if body.action != "accept":
        if body.content is not None:
            raise BadRequest(f"content: only with action 'accept' (not {body.action!r})")
        return None
    if body.content is None:
        raise BadRequest("content is required with action 'accept'")
    return validate_answer(question.requested_schema, body.content)
