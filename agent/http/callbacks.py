"""The Scheduler's callbacks: what is parsed and answered over HTTP (the delivery itself is
`agent.scheduling.start_delivery`, shared by both).

- `POST /api/scheduler/callback`: the Standard Webhooks signature is checked before anything is
  read or stored; the `webhook-id` is the idempotency key (the batch id derives from it), so a
  repeated delivery starts nothing new and still answers 202.
- `POST /api/scheduler/conversation-callback`: the seeds' single form from senders that cannot
  sign, with a function key, into the caller's own conversation; the `Idempotency-Key` header
  (else the body) is the idempotency key for 24 hours.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.errors import BadRequest, Conflict, PayloadTooLarge, Unauthorized
from agent.http.kit import Call, Handler, api, json_response
from agent.http.models import CallbackBatch, SeedCallback, SingleCallback, validated
from agent.json_input import parse_json_object
from agent.scheduling import IDEMPOTENCY_WINDOW, CallbackItem, owners_of, start_delivery
from agent.webhooks import CALLBACK_TYPE, verify
from storage.batches import batch_id_for_webhook, run_id_of
from storage.conversations import ConversationRef
from storage.idempotency import RequestKeys

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 4 * 1024 * 1024  # a batch of up to 1,000 items
# One item: its content at its limit, every character JSON-escaped (12 bytes at most), fits.
MAX_SEED_CALLBACK_BYTES = 512 * 1024
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_CHARS = 255


@api
async def scheduler_callback(
    call: Call, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    rt, req = call.rt, call.req
    secret = rt.settings.scheduler_webhook_secret
    if secret is None:
        raise Unauthorized("scheduler callbacks are disabled: SCHEDULER_WEBHOOK_SECRET is not set")
    body = req.get_body() or b""
    if len(body) > MAX_CALLBACK_BYTES:
        raise PayloadTooLarge(
            f"the callback body is {len(body)} bytes; the limit is {MAX_CALLBACK_BYTES}"
        )
    webhook_id = verify(secret.value, req.headers, body, now=time.time())
    items = parse_callback(body)
    batch_id = batch_id_for_webhook(webhook_id)
    owners = await owners_of(rt, items)
    started = await start_delivery(rt, client, batch_id, items, owners)
    log.info(
        "scheduler callback", extra={"batch_id": batch_id, "items": len(items), "started": started}
    )
    return json_response({"batch_id": batch_id, "items": len(items), "duplicate": not started}, 202)


def parse_callback(body: bytes) -> tuple[CallbackItem, ...]:
    """The items a (verified) callback body delivers; `BadRequest` naming the first problem.
    With `type` it is a batch, else the seeds' single form (the document's `Callback`)."""
    document = parse_json_object(body, "the callback body")
    if "type" in document:
        batch = validated(CallbackBatch, document)
        return tuple(
            CallbackItem(item.schedule_id, item.conversation_id, item.content, item.scheduled_time)
            for item in batch.items
        )
    if "conversationId" in document:
        return (seed_item(validated(SingleCallback, document)),)
    raise BadRequest(
        f'body must be {{"type": "{CALLBACK_TYPE}", "items": [...]}} '
        'or {"conversationId": ..., "status": ..., "content": ...}'
    )


def parse_seed_callback(document: dict[str, Any]) -> CallbackItem:
    """The seeds' `{"conversationId", "status", "content"}` (a parsed JSON object), as an
    unsigned sender (the function-key route) posts it: the single form only; `status` is
    informational."""
    if "conversationId" not in document:
        raise BadRequest(
            '\'conversationId\' is required: send {"conversationId": ..., "status": ..., '
            '"content": ...}'
        )
    return seed_item(validated(SeedCallback, document))


def seed_item(seed: SeedCallback) -> CallbackItem:
    return CallbackItem(None, seed.conversationId, seed.content, None)


def seed_answer(handler: Handler) -> Handler:
    """Answer errors as the seeds' senders expect, `{"success": false, "error": ...}`, inside
    the problem document every route answers (so both kinds of client read it)."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
        response = await handler(*args, **kwargs)
        if response.status_code < 400:
            return response
        body = json.loads(response.get_body())
        body.update(success=False, error=body.get("detail", "the request failed"))
        return func.HttpResponse(
            json.dumps(body),
            status_code=response.status_code,
            mimetype=response.mimetype,
            headers=dict(response.headers),
        )

    return wrapper


@seed_answer
@api
async def conversation_callback(
    call: Call, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """`POST /api/scheduler/conversation-callback`: the seeds' `{conversationId, status,
    content}` from a sender that cannot sign (function key instead), into the caller's own
    conversation; a repeat (its `Idempotency-Key`, else its body, within 24 hours) starts
    nothing new and answers the same ids."""
    rt, owner = call.rt, call.owner()
    # Its own limit, one that any body whose content is within its own limit fits under (so
    # an over-long content is a 400 naming it, not a 413).
    document = call.json(limit=MAX_SEED_CALLBACK_BYTES, what="the callback body")
    item = parse_seed_callback(document)
    fingerprint = body_fingerprint(document)
    keyed = call.req.headers.get(IDEMPOTENCY_HEADER)
    key = request_key(owner, keyed, fingerprint)
    await rt.store.get_meta(ConversationRef(owner, item.conversation_id))  # 404: not theirs
    claim = await RequestKeys(rt.container, IDEMPOTENCY_WINDOW).claim(
        key, fingerprint, datetime.now(UTC)
    )
    if not claim.same_body:
        raise Conflict(
            f"this {IDEMPOTENCY_HEADER} was used for another body within the last "
            f"{IDEMPOTENCY_WINDOW.total_seconds() / 3600:g} hours; send a new key"
        )
    started = await start_delivery(rt, client, claim.batch_id, (item,), (owner,))
    run_id = run_id_of(claim.batch_id, 0)
    log.info(
        "conversation callback",
        extra={"batch_id": claim.batch_id, "first": claim.first, "started": started},
    )
    if not started:
        # A dropped repeat must be visible to an operator: without an Idempotency-Key, the
        # same text sent twice to one conversation within the window is taken as one delivery.
        log.warning(
            "conversation callback duplicate: nothing new started",
            extra={
                "batch_id": claim.batch_id,
                "conversation_id": item.conversation_id,
                "deduplicated_by": "body" if keyed is None else "idempotency_key",
            },
        )
    return json_response(
        {
            "success": True,
            "conversationId": item.conversation_id,
            "run_id": run_id,
            "batch_id": claim.batch_id,
            # The batch, not the run: the run exists once the batch's lane takes the item
            # (GET /api/runs/{run_id} is a 404 until then); the batch shows it from the start.
            "status_url": call.url(f"/api/batches/{claim.batch_id}"),
            # Whether this request started the batch (as the signed route answers): a retry
            # after a first attempt that claimed the key but stopped short is not a duplicate.
            "duplicate": not started,
        }
    )


def body_fingerprint(document: dict[str, Any]) -> str:
    """The body's hash, independent of key order and spacing: the same JSON is the same body."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def request_key(owner: str, header: str | None, fingerprint: str) -> str:
    """The idempotency key of a request, scoped to its caller (two callers' keys never meet):
    the `Idempotency-Key` header when sent, else the body."""
    if header is None:
        return f"conversation-callback\n{owner}\nbody\n{fingerprint}"
    value = header.strip()  # as HTTP does: surrounding spaces are not part of a header value
    if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise BadRequest(
            f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        )
    return f"conversation-callback\n{owner}\nkey\n{value}"
