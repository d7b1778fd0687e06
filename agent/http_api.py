"""The chat HTTP API: parse and validate the request, act through the store and the Durable
client, answer JSON (errors as application/problem+json with a `detail`).

Durable's management URLs (they carry the system key) never leave this module: callers get our
own `/api/runs/{id}` URL instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.contracts import ChatTurnInput, ChatTurnOutput, RunRef
from agent.errors import (
    BadRequest,
    Conflict,
    NotFound,
)
from agent.http.callers import caller_of
from agent.http.kit import (
    checked_id,
    error_response,
    json_body,
    json_response,
    misconfigured,
    own_url,
)
from agent.loop import APPROVAL_EVENT
from agent.orchestrators import CHAT_TURN
from agent.runtime import Runtime, runtime, settings_problem
from agent.transcript import usage_of, user_message
from agent.turn_lock import begin_turn, status_name
from storage.conversations import ConversationRef, StoredMessage
from storage.errors import RecordNotFound

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
TERMINAL = {"completed", "failed", "cancelled", "content_filtered", "budget_exceeded"}
ACTIVE = ("pending", "running", "waiting_for_approval")
# How long a cancel waits for Durable to report the run terminated before answering
# "cancelling" instead (a healthy host terminates within a fraction of a second).
CANCEL_WAIT_SECONDS = 3.0

Handler = Callable[..., Awaitable[func.HttpResponse]]


# --- responses ---------------------------------------------------------------------------------


def api(handler: Handler) -> Handler:
    """Turn CallerErrors into their 4xx problem, anything unexpected into a bare 500."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
        try:
            return await handler(*args, **kwargs)
        except Exception as exc:
            return error_response(exc, handler.__name__)

    return wrapper


# --- request parsing ---------------------------------------------------------------------------


def path_id(req: func.HttpRequest, name: str) -> str:
    return checked_id(req.route_params.get(name, ""), name)


def message_content(body: dict[str, Any], rt: Runtime) -> str:
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise BadRequest("'content' is required and must be a non-empty string")
    limit = rt.settings.limits.max_message_chars
    if len(content) > limit:
        # 400, not 413: the document says maxLength, a rule of the schema like any other (413 is
        # for the body's size, which no schema can state).
        raise BadRequest(f"'content' is {len(content)} characters; the limit is {limit}")
    return content


def wait_seconds(body: dict[str, Any], rt: Runtime) -> float:
    value = body.get("wait_seconds", 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest("'wait_seconds' must be a non-negative number")
    return min(float(value), float(rt.settings.limits.wait_seconds_cap))


# --- conversations -----------------------------------------------------------------------------


@api
async def create_conversation(req: func.HttpRequest) -> func.HttpResponse:
    rt = await runtime()
    owner = caller_of(req, rt.settings.require_auth)
    body = json_body(req, rt, optional=True)
    requested = body.get("id")  # absent or null: we choose one
    conversation_id = uuid.uuid4().hex if requested is None else checked_id(requested, "'id'")
    meta = await rt.store.create(ConversationRef(owner, conversation_id))
    location = own_url(rt, f"/api/conversations/{conversation_id}")
    return json_response(
        {"id": conversation_id, "created_at": meta.created_at}, 201, {"Location": location}
    )


@api
async def get_conversation(req: func.HttpRequest) -> func.HttpResponse:
    rt = await runtime()
    ref = ConversationRef(caller_of(req, rt.settings.require_auth), path_id(req, "id"))
    meta = await rt.store.get_meta(ref)
    messages = await rt.store.read_messages(ref)
    usage = usage_of(messages)
    return json_response(
        {
            "id": meta.conversation_id,
            "created_at": meta.created_at,
            "turns": meta.turn_count,
            "active_run_id": meta.active_run_id,
            "messages": [public_message(m) for m in messages],
            "usage": usage.__dict__,
        }
    )


def public_message(m: StoredMessage) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "created_at": m.created_at,
    }
    if m.run_id:
        view["run_id"] = m.run_id
    if m.origin:  # not typed by the caller: scheduled (by them, or by the assistant)
        view["origin"] = m.origin
    if m.tool_calls:
        view["tool_calls"] = [
            {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        view.update(tool_call_id=m.tool_call_id, name=m.name, is_error=m.is_error)
        if m.truncated:
            view.update(truncated=True, output_ref=m.output_ref)
    if m.usage:
        view["usage"] = m.usage
    return view


@api
async def post_message(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    rt = await runtime()
    ref = ConversationRef(caller_of(req, rt.settings.require_auth), path_id(req, "id"))
    body = json_body(req, rt)
    content = message_content(body, rt)
    wait = wait_seconds(body, rt)
    await rt.store.get_meta(ref)  # 404 before anything is written
    used = usage_of(await rt.store.read_messages(ref)).total_tokens
    if used >= rt.settings.limits.max_tokens_per_conversation:
        raise Conflict(  # the request is fine; the conversation's state refuses it
            f"this conversation has used its token budget ({used} of "
            f"{rt.settings.limits.max_tokens_per_conversation} tokens); start a new one"
        )

    run_id = uuid.uuid4().hex
    turn = await begin_turn(rt.store, client, ref, run_id)
    user = user_message(run_id, turn, content)
    try:
        await rt.store.append(ref, user)
        turn_input = ChatTurnInput.starting(
            RunRef(ref.owner, ref.conversation_id, run_id, turn), rt.settings.limits, used
        )
        await client.start_new(CHAT_TURN, run_id, turn_input.to_dict())
    except BaseException:
        await rt.store.end_turn(ref, run_id)  # don't leave the conversation locked
        raise
    log.info("turn started", extra={"run_id": run_id, "conversation_id": ref.conversation_id})

    if wait > 0:
        view = await wait_for_run(rt, client, run_id, ref, wait)
        if view["status"] in TERMINAL:
            return json_response(view, 200)
    status_url = own_url(rt, f"/api/runs/{run_id}")
    return json_response(
        {"run_id": run_id, "conversation_id": ref.conversation_id, "status_url": status_url},
        202,
        {"Location": status_url},
    )


# --- runs --------------------------------------------------------------------------------------


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
    if "step" in custom:
        view["step"] = custom["step"]
    if custom.get("phase"):
        view["phase"] = custom["phase"]
    return view


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
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    rt = await runtime()
    owner = caller_of(req, rt.settings.require_auth)
    view = await run_view(rt, client, path_id(req, "run_id"), owner)
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
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    rt = await runtime()
    owner = caller_of(req, rt.settings.require_auth)
    run_id = path_id(req, "run_id")
    view = await run_view(rt, client, run_id, owner)
    if view["status"] in TERMINAL:
        raise Conflict(f"run {run_id} has already finished ({view['status']})")
    await client.terminate(run_id, "cancelled by the caller")
    ref = ConversationRef(owner, view["conversation_id"])
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
async def answer_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    rt = await runtime()
    owner = caller_of(req, rt.settings.require_auth)
    run_id = path_id(req, "run_id")
    body = json_body(req, rt)
    call_id, approved = body.get("tool_call_id"), body.get("approved")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("'tool_call_id' is required: the id of a tool call awaiting approval")
    if not isinstance(approved, bool):
        raise BadRequest("'approved' is required and must be true or false")
    view = await run_view(rt, client, run_id, owner)
    if view["status"] != "waiting_for_approval":
        raise Conflict(f"run {run_id} is not waiting for an approval (it is {view['status']})")
    if call_id not in view.get("pending_approvals", ()):
        raise NotFound(f"run {run_id} has no tool call {call_id} awaiting approval")
    event = {"tool_call_id": call_id, "approved": approved, **asked(view, body)}
    await raise_approval(rt, client, view, owner, event)
    log.info("approval answered", extra={"run_id": run_id, "approved": approved})
    return json_response({"run_id": run_id, "tool_call_id": call_id, "approved": approved}, 202)


def asked(view: dict[str, Any], body: dict[str, Any]) -> dict[str, str]:
    """The question an answer is for, to stamp on its event: the one the caller names (from
    a GET of the run; a client retrying its answer should), which must be the one the run asks
    now, else the one the run asks now. The run ignores an answer stamped with another one."""
    named, current = body.get("question_id"), view.get("question_id")
    if named is not None and not isinstance(named, str):
        raise BadRequest("'question_id', when given, must be a string: the run's question_id")
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
    """Raise the approval event; a run that ended since `view` was read is a 409, not a 500
    (Durable refuses events for an ended instance: "instance ... is gone")."""
    run_id = view["run_id"]
    try:
        await client.raise_event(run_id, APPROVAL_EVENT, event)
    except Exception:
        now = await run_view(rt, client, run_id, owner)
        if now["status"] not in TERMINAL:
            raise
        raise Conflict(
            f"run {run_id} is not waiting for an approval (it is {now['status']})"
        ) from None


async def health(req: func.HttpRequest) -> func.HttpResponse:
    invalid = settings_problem()
    if invalid is not None:
        return misconfigured(invalid)
    return json_response({"status": "ok"})
