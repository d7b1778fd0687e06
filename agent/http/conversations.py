"""Conversations and their messages: `POST /api/conversations`, `GET /api/conversations` (the
caller's, paged), `GET /api/conversations/{id}`, `DELETE /api/conversations/{id}`,
`POST /api/conversations/{id}/messages` (start a turn)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent import deletion
from agent.contracts import ChatTurnInput, RunRef
from agent.errors import BadRequest, Conflict, NotFound
from agent.http import paging
from agent.http.kit import Call, api, json_response
from agent.http.models import TERMINAL, NewConversation, NewMessage
from agent.http.runs import wait_for_run
from agent.orchestrators import CHAT_TURN
from agent.transcript import usage_of, user_message
from agent.turn_lock import begin_turn, open_turn
from storage.conversations import ConversationMeta, ConversationRef, StoredMessage

log = logging.getLogger(__name__)

DEFAULT_PAGE = 20
MAX_PAGE = 100
_DIGITS = frozenset("0123456789")


@api
async def create_conversation(call: Call) -> func.HttpResponse:
    rt, owner = call.rt, call.owner()
    requested = call.body(NewConversation, optional=True).id  # absent or null: we choose one
    conversation_id = uuid.uuid4().hex if requested is None else requested
    meta = await rt.store.create(ConversationRef(owner, conversation_id))
    location = call.url(f"/api/conversations/{conversation_id}")
    return json_response(
        {"id": conversation_id, "created_at": meta.created_at}, 201, {"Location": location}
    )


@api
async def list_conversations(call: Call) -> func.HttpResponse:
    owner = call.owner()
    limit = page_limit(call.req.params.get("limit"))
    token = call.req.params.get("continuation")
    position = None if token is None else paging.decode(owner, token)
    page = await call.rt.store.list_page(owner, limit, position)
    following = None if page.continuation is None else paging.encode(owner, page.continuation)
    return json_response(
        {
            "conversations": [summary(meta) for meta in page.conversations],
            "continuation": following,
        }
    )


def page_limit(raw: str | None) -> int:
    """`limit` from the query: 1..MAX_PAGE (DEFAULT_PAGE when absent)."""
    if raw is None:
        return DEFAULT_PAGE
    if not raw or len(raw) > 3 or not set(raw) <= _DIGITS or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"'limit' must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def summary(meta: ConversationMeta) -> dict[str, Any]:
    return {
        "id": meta.conversation_id,
        "created_at": meta.created_at,
        "last_activity": meta.active_at,
        "preview": meta.preview,
        "turns": meta.turn_count,
        "active_run_id": meta.active_run_id,
    }


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


@api
async def delete_conversation(
    call: Call, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Everything of the conversation goes (agent.deletion); 409 while a turn runs. Deleting it
    again, or another caller's, is a 404: the caller has no such conversation (any more)."""
    ref = ConversationRef(call.owner(), call.path_id("id"))
    if not await deletion.delete_conversation(call.rt.store, client, ref):
        raise NotFound(f"no conversation {ref.conversation_id}")
    return func.HttpResponse(status_code=204)


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
    body = call.body(NewMessage)
    content = body.content
    wait = min(body.wait_seconds, float(rt.settings.limits.wait_seconds_cap))
    await rt.store.get_meta(ref)  # 404 before anything is written
    # As far as this process knows (a whole read only when it knows nothing of the transcript):
    # a count another instance has since raised lets the turn start, and its first model step
    # then stops it (`loop.before_step`, from the exact count taken after the append below).
    used = await rt.store.tokens_used(ref)
    if used >= rt.settings.limits.max_tokens_per_conversation:
        raise Conflict(  # the request is fine; the conversation's state refuses it
            f"this conversation has used its token budget ({used} of "
            f"{rt.settings.limits.max_tokens_per_conversation} tokens); start a new one"
        )

    run_id = uuid.uuid4().hex
    turn = await begin_turn(rt.store, client, ref, run_id, preview=content)
    user = user_message(run_id, turn, content)
    try:
        await open_turn(rt, ref, user)
        used = await rt.store.tokens_used(ref)  # exact: the append caught up with the transcript
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
