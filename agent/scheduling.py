"""Scheduled conversations over HTTP: the Scheduler's signed callback, scheduling a batch, and
a batch's progress.

- `POST /api/scheduler/callback`: Standard Webhooks signature checked before anything is read or
  stored; the `webhook-id` is the idempotency key (the batch id derives from it, the batch blob is
  create-only and the orchestration's instance id is the batch id), so a repeated delivery
  starts nothing new and still answers 202.
- `POST /api/scheduler/conversation-callback`: the seeds' single form from senders that cannot
  sign, with a function key, into the caller's own conversation; the `Idempotency-Key` header
  (else the body) is the idempotency key for 24 hours. Both callbacks share `start_delivery`.
- `POST /api/schedules`: through the Scheduler MCP server when one is configured (one
  idempotency key per item, bounded concurrency), else with durable timers.
- `GET /api/batches/{id}`: per-item status, from each item's run; an item handed to the
  Scheduler shows the run its delivery started, under whichever batch that delivery ran.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.contracts import BatchInput
from agent.errors import (
    BadRequest,
    Conflict,
    NotFound,
    OperatorError,
    PayloadTooLarge,
    ToolError,
    Unauthorized,
)
from agent.http.callers import caller_of
from agent.http_api import (
    Handler,
    api,
    checked_id,
    json_body,
    json_response,
    own_url,
    path_id,
    run_view,
)
from agent.mcp.config import SCHEDULING_TOOL
from agent.mcp.names import exposed_tool_name
from agent.runtime import Runtime, runtime
from agent.webhooks import CallbackItem, parse_callback, parse_seed_callback, verify
from storage.batches import (
    BatchItem,
    BatchRecord,
    ItemRef,
    batch_id_for_webhook,
    run_id_of,
)
from storage.conversations import ConversationRef
from storage.errors import RecordNotFound
from storage.idempotency import RequestKeys
from storage.models import MessageOrigin, utc_timestamp

log = logging.getLogger(__name__)

SCHEDULED_BATCH = "scheduled_batch"
SCHEDULER_SERVER = "scheduler"  # the MCP server (in MCP_SERVERS) that schedules conversations
MAX_CALLBACK_BYTES = 4 * 1024 * 1024  # a batch of up to 1,000 items
# One item: its content at its limit, every character JSON-escaped (12 bytes at most), fits.
MAX_SEED_CALLBACK_BYTES = 512 * 1024
MAX_SCHEDULE_ITEMS = 100
SCHEDULER_CONCURRENCY = 8
LOOKUP_CONCURRENCY = 16  # Blob and status reads one request makes at once
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_WINDOW = timedelta(hours=24)  # a repeat within it starts nothing new
MAX_IDEMPOTENCY_KEY_CHARS = 255


# --- the Scheduler's callback ------------------------------------------------------------------


@api
async def scheduler_callback(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    rt = await runtime()
    secret = rt.settings.scheduler_webhook_secret
    if secret is None:
        raise Unauthorized("scheduler callbacks are disabled: SCHEDULER_WEBHOOK_SECRET is not set")
    body = req.get_body() or b""
    if len(body) > MAX_CALLBACK_BYTES:
        raise PayloadTooLarge(
            f"the callback body is {len(body)} bytes; the limit is {MAX_CALLBACK_BYTES}"
        )
    webhook_id = verify(secret.value, req.headers, body, now=time.time())
    callback = parse_callback(body)
    batch_id = batch_id_for_webhook(webhook_id)
    owners = await owners_of(rt, callback.items)
    started = await start_delivery(rt, client, batch_id, callback.items, owners)
    log.info(
        "scheduler callback",
        extra={"batch_id": batch_id, "items": len(callback.items), "started": started},
    )
    return json_response(
        {"batch_id": batch_id, "items": len(callback.items), "duplicate": not started}, 202
    )


async def owners_of(rt: Runtime, items: tuple[CallbackItem, ...]) -> tuple[str | None, ...]:
    """Whose conversation each item names (None: no such conversation), a few reads at once."""
    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def owner_of(conversation_id: str) -> str | None:
        async with gate:
            return await rt.store.owner_of(conversation_id)

    return tuple(await asyncio.gather(*(owner_of(item.conversation_id) for item in items)))


async def start_delivery(
    rt: Runtime,
    client: df.DurableOrchestrationClient,
    batch_id: str,
    delivered: tuple[CallbackItem, ...],
    owners: tuple[str | None, ...],
) -> bool:
    """The one durable path of both callback routes; False when the batch had started already.

    Claim each item's owner-schedule entry (who scheduled it), store the batch (create-only),
    link each item to the scheduled batch item it delivers (so `GET /api/batches/{that batch}`
    shows its run) as its entry is used up, and start the batch's orchestration once. A repeat
    (same batch id) keeps the first one's record and origins and claims nothing, so an owner's
    later scheduling of the same text is left for its own delivery; it finishes what an
    interrupted first attempt began and starts nothing new.
    """
    record = await rt.batches.get(batch_id)
    if record is None:
        origins = await origins_of(rt, batch_id, delivered, owners)
        items = tuple(
            batch_item(index, item, owner, origin)
            for index, (item, owner, origin) in enumerate(
                zip(delivered, owners, origins, strict=True)
            )
        )
        record = BatchRecord(batch_id, "callback", utc_timestamp(), None, items)
        if not await rt.batches.create(record):  # a concurrent repeat stored its record first
            record = await rt.batches.get(batch_id) or record
    await use_up_owner_schedules(rt, record)
    plan = BatchInput(
        batch_id, tuple(range(len(record.items))), rt.settings.limits.batch_max_concurrency
    )
    return await start_once(client, batch_id, plan)


async def origins_of(
    rt: Runtime,
    batch_id: str,
    items: tuple[CallbackItem, ...],
    owners: tuple[str | None, ...],
) -> list[MessageOrigin]:
    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def origin_of(index: int, item: CallbackItem, owner: str | None) -> MessageOrigin:
        if owner is None:
            return "scheduled_by_assistant"
        async with gate:
            return await rt.batches.claim_owner_schedule(
                owner,
                item.conversation_id,
                item.content,
                item.scheduled_time,
                f"{batch_id}:{index}",
            )

    return list(
        await asyncio.gather(
            *(
                origin_of(index, item, owner)
                for index, (item, owner) in enumerate(zip(items, owners, strict=True))
            )
        )
    )


def batch_item(
    index: int, item: CallbackItem, owner: str | None, origin: MessageOrigin
) -> BatchItem:
    return BatchItem(
        index=index,
        conversation_id=item.conversation_id,
        owner=owner,
        content=item.content,
        scheduled_time=item.scheduled_time,
        schedule_id=item.schedule_id,
        status="pending" if owner else "rejected",
        error=None if owner else f"no conversation {item.conversation_id}",
        origin=origin,
    )


# --- the seeds' callback, from unsigned senders --------------------------------------------------


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
async def conversation_callback(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """`POST /api/scheduler/conversation-callback`: the seeds' `{conversationId, status,
    content}` from a sender that cannot sign (function key instead), into the caller's own
    conversation; a repeat (its `Idempotency-Key`, else its body, within 24 hours) starts
    nothing new and answers the same ids."""
    rt = await runtime()
    owner = caller_of(req, rt.settings.require_auth)
    # Its own limit, one that any body whose content is within its own limit fits under (so
    # an over-long content is a 400 naming it, not a 413).
    document = json_body(req, rt, limit=MAX_SEED_CALLBACK_BYTES, what="the callback body")
    item = parse_seed_callback(document)
    fingerprint = body_fingerprint(document)
    keyed = req.headers.get(IDEMPOTENCY_HEADER)
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
            "status_url": own_url(rt, f"/api/batches/{claim.batch_id}"),
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


async def use_up_owner_schedules(rt: Runtime, record: BatchRecord) -> None:
    """Delete the owner-schedule entries this delivery claimed, now that its record keeps their
    origin (again on a repeat: a first attempt may have stopped before this), each linking the
    scheduled batch item it came from to the item that delivers it."""
    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def use_up(item: BatchItem) -> None:
        async with gate:
            await rt.batches.consume_owner_schedule(
                item.conversation_id,
                item.content,
                f"{record.batch_id}:{item.index}",
                ItemRef(record.batch_id, item.index),
            )

    await asyncio.gather(*(use_up(item) for item in record.items if item.origin == "scheduled"))


async def start_once(
    client: df.DurableOrchestrationClient, instance_id: str, plan: BatchInput
) -> bool:
    """Start the batch orchestration unless it exists; False when another delivery did."""
    if await instance_exists(client, instance_id):
        return False
    try:
        await client.start_new(SCHEDULED_BATCH, instance_id, plan.to_dict())
    except Exception as exc:
        # Two deliveries raced past the check: the extension refuses the second start.
        if "already exists" in str(exc).lower() or await instance_exists(client, instance_id):
            return False
        raise
    return True


async def instance_exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return getattr(status, "runtime_status", None) is not None


# --- scheduling a batch ------------------------------------------------------------------------


@api
async def schedule_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    rt = await runtime()
    owner = caller_of(req, rt.settings.require_auth)
    requested = parse_schedule_request(json_body(req, rt), rt)
    for item in requested:  # every named conversation must be the caller's, before any write
        if item["conversation_id"]:
            await rt.store.get_meta(ConversationRef(owner, item["conversation_id"]))
    batch_id = "s" + uuid.uuid4().hex
    items = []
    for index, item in enumerate(requested):
        conversation_id = item["conversation_id"] or uuid.uuid4().hex
        if not item["conversation_id"]:
            await rt.store.create(ConversationRef(owner, conversation_id))
        error = item["error"]
        items.append(
            BatchItem(
                index,
                conversation_id,
                owner,
                item["content"],
                item["scheduled_time"],
                origin="scheduled",  # the caller's own words, delivered later
                status="rejected" if error else "pending",
                error=error,
            )
        )
    record = BatchRecord(batch_id, "schedule", utc_timestamp(), owner, tuple(items))
    await rt.batches.create(record)
    scheduler = scheduler_name(rt)
    if scheduler is not None:
        record = await schedule_through_scheduler(rt, record, scheduler)
        await rt.batches.replace(record)
    else:
        await schedule_with_timers(rt, client, record)
    return json_response(batch_view_of_items(record, record.items), 202)


def parse_schedule_request(body: dict[str, Any], rt: Runtime) -> list[dict[str, Any]]:
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_SCHEDULE_ITEMS:
        raise BadRequest(f"'items' must be a list of 1 to {MAX_SCHEDULE_ITEMS} items")
    parsed = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise BadRequest(f"{where}.content is required and must be a non-empty string")
        if len(content) > rt.settings.limits.max_message_chars:
            raise BadRequest(
                f"{where}.content is longer than {rt.settings.limits.max_message_chars} characters"
            )
        conversation_id = item.get("conversation_id")
        if conversation_id is not None:
            checked_id(conversation_id, f"{where}.conversation_id")
        when = parse_time(item.get("scheduled_time"), where)
        # A time already past is well-formed (the document cannot say "future"): the batch takes
        # it and the item says why it will not run, like an item the Scheduler refuses.
        past = when < datetime.now(UTC) - timedelta(seconds=30)
        parsed.append(
            {
                "content": content,
                "scheduled_time": when.isoformat(),
                "conversation_id": conversation_id,
                "error": f"{where}.scheduled_time is in the past" if past else None,
            }
        )
    return parsed


def parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise BadRequest(f"{where}.scheduled_time is required (ISO 8601 with a timezone)")
    try:
        when = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{where}.scheduled_time is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        raise BadRequest(f"{where}.scheduled_time needs a timezone (e.g. 2026-01-01T09:00:00Z)")
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise BadRequest(f"{where}.scheduled_time is out of range") from None


def scheduler_name(rt: Runtime) -> str | None:
    """The configured Scheduler server's name: `scheduler`, in any case (the seeds write
    `Scheduler`); None when there is none."""
    names = [s.name for s in rt.mcp.status() if s.name.casefold() == SCHEDULER_SERVER]
    return min(names, default=None)  # a deterministic choice should both spellings be present


async def schedule_through_scheduler(
    rt: Runtime, record: BatchRecord, scheduler: str
) -> BatchRecord:
    """One `schedule_conversation` call per item, a few at a time, each with its own
    idempotency key (a retried request schedules once). An item the Scheduler refuses, or that
    cannot reach it, is recorded as rejected with the reason."""
    if not rt.settings.public_base_url:
        raise OperatorError("PUBLIC_BASE_URL must be set for the Scheduler to call the app back")
    callback_url = f"{rt.settings.public_base_url}/api/scheduler/callback"
    tool = exposed_tool_name(scheduler, SCHEDULING_TOOL)
    gate = asyncio.Semaphore(SCHEDULER_CONCURRENCY)

    async def schedule(item: BatchItem) -> BatchItem:
        if item.status == "rejected":
            return item
        arguments = {
            "conversation_text": item.content,
            "scheduled_time": item.scheduled_time,
            "endpoint": callback_url,
            "conversation_id": item.conversation_id,
        }
        context = {"callback_url": callback_url, "conversation_id": item.conversation_id}
        async with gate:
            if item.owner is not None:  # (always: the caller's own batch)
                # Before the Scheduler holds it: its delivery may come at any time after.
                await rt.batches.remember_owner_schedule(
                    item.owner,
                    item.conversation_id,
                    item.content,
                    item.scheduled_time,
                    home=ItemRef(record.batch_id, item.index),
                )
            try:
                outcome = await rt.mcp.call_tool(
                    tool,
                    arguments,
                    context=context,
                    idempotency_key=f"{record.batch_id}:{item.index}",
                )
            except ToolError as exc:
                return replace(
                    item, status="rejected", error=f"the Scheduler is unreachable ({exc})"[:500]
                )
        if outcome.is_error:
            return replace(item, status="rejected", error=outcome.text[:500])
        return replace(item, status="scheduled", schedule_id=schedule_id_of(outcome.full_output))

    items = await asyncio.gather(*(schedule(item) for item in record.items))
    return BatchRecord(
        record.batch_id, record.source, record.created_at, record.owner, tuple(items)
    )


def schedule_id_of(full_output: str) -> str | None:
    """The schedule id in a `schedule_conversation` result (structured content or its text)."""
    try:
        result = json.loads(full_output)
    except ValueError:
        return None
    found = _find_key(result, "schedule_id")
    return str(found) if found is not None else None


def _find_key(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        values = list(value.values())
    elif isinstance(value, list):
        values = value
    elif isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            return _find_key(json.loads(value), key)
        except ValueError:
            return None
    else:
        return None
    for child in values:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


async def schedule_with_timers(
    rt: Runtime, client: df.DurableOrchestrationClient, record: BatchRecord
) -> None:
    """No Scheduler: one orchestration per distinct due time, each waiting on durable timers."""
    by_time: dict[str, list[int]] = {}
    for item in record.items:
        if item.status == "rejected":
            continue
        by_time.setdefault(item.scheduled_time or utc_timestamp(), []).append(item.index)
    for group, (due, indices) in enumerate(sorted(by_time.items())):
        plan = BatchInput(
            record.batch_id, tuple(indices), rt.settings.limits.batch_max_concurrency, due
        )
        await client.start_new(SCHEDULED_BATCH, f"{record.batch_id}-t{group}", plan.to_dict())


# --- a batch's progress ------------------------------------------------------------------------


@api
async def get_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    rt = await runtime()
    caller = caller_of(req, rt.settings.require_auth)
    batch_id = path_id(req, "batch_id")
    record = await rt.batches.get(batch_id)
    visible = record.visible_to(caller) if record else ()
    if record is None or not visible:
        raise NotFound(f"no batch {batch_id}")
    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def run_of(item: BatchItem) -> dict[str, Any] | None:
        if item.status == "rejected":
            return None  # never runs
        async with gate:
            where: ItemRef | None = ItemRef(batch_id, item.index)
            if item.status == "scheduled":  # handed to the Scheduler: it runs where delivered
                where = await rt.batches.delivery(ItemRef(batch_id, item.index))
            return None if where is None else await item_run(rt, client, where, caller)

    runs = await asyncio.gather(*(run_of(item) for item in visible))
    return json_response(batch_view_of_items(record, visible, runs))


async def item_run(
    rt: Runtime, client: df.DurableOrchestrationClient, item: ItemRef, caller: str
) -> dict[str, Any] | None:
    """A batch item's run as the batch view shows it; None before it has one."""
    try:
        return await run_view(rt, client, run_id_of(item.batch_id, item.index), caller)
    except (
        NotFound,
        RecordNotFound,
    ):  # not started yet, or never will: its recorded outcome says which
        outcome = await rt.batches.outcome(item.batch_id, item.index)
        return None if outcome is None else {"run_id": None, **outcome.to_dict()}


def batch_view_of_items(
    record: BatchRecord,
    items: tuple[BatchItem, ...],
    runs: list[dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    views = []
    for item, run in zip(items, runs or [None] * len(items), strict=True):
        view: dict[str, Any] = {
            "index": item.index,
            "conversation_id": item.conversation_id,
            "scheduled_time": item.scheduled_time,
            "status": item.status if run is None else run["status"],
        }
        if item.schedule_id:
            view["schedule_id"] = item.schedule_id
        if item.error:
            view["error"] = item.error
        if run is not None:
            if run["run_id"]:
                view["run_id"] = run["run_id"]
            for key in ("answer", "error"):
                if run.get(key):
                    view[key] = run[key]
        views.append(view)
    return {
        "batch_id": record.batch_id,
        "source": record.source,
        "created_at": record.created_at,
        "counts": dict(Counter(view["status"] for view in views)),
        "items": views,
    }
