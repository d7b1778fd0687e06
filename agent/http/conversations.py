"""Conversations and their messages: `POST /api/conversations`, `GET /api/conversations/{id}`,
`POST /api/conversations/{id}/messages` (start a turn)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.contracts import ChatTurnInput, RunRef
from agent.errors import BadRequest, Conflict
from agent.http.kit import Call, api, checked_id, json_response
from agent.http.runs import TERMINAL, wait_for_run
from agent.orchestrators import CHAT_TURN
from agent.runtime import Runtime
from agent.transcript import usage_of, user_message
from agent.turn_lock import begin_turn
from storage.conversations import ConversationRef, StoredMessage

log = logging.getLogger(__name__)


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


@api
async def create_conversation(call: Call) -> func.HttpResponse:
    rt, owner = call.rt, call.owner()
    body = call.json(optional=True)
    requested = body.get("id")  # absent or null: we choose one
    conversation_id = uuid.uuid4().hex if requested is None else checked_id(requested, "'id'")
    meta = await rt.store.create(ConversationRef(owner, conversation_id))
    location = call.url(f"/api/conversations/{conversation_id}")
    return json_response(
        {"id": conversation_id, "created_at": meta.created_at}, 201, {"Location": location}
    )


@api
async def get_conversation(call: Call) -> func.HttpResponse:
    rt = call.rt
    ref = ConversationRef(call.owner(), call.path_id("id"))
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
async def post_message(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    rt = call.rt
    ref = ConversationRef(call.owner(), call.path_id("id"))
    body = call.json()
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
    status_url = call.url(f"/api/runs/{run_id}")
    return json_response(
        {"run_id": run_id, "conversation_id": ref.conversation_id, "status_url": status_url},
        202,
        {"Location": status_url},
    )
