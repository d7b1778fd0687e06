"""Scheduled conversations: what the HTTP routes in `agent.http.schedules` and
`agent.http.callbacks` do once a request is parsed.

- A delivery (the Scheduler's signed callback, or the seeds' unsigned one): `start_delivery`
  stores the batch (create-only, keyed by the delivery) and starts its orchestration once, so a
  repeated delivery starts nothing new.
- A batch the caller schedules (`schedule`): through the Scheduler MCP server when one is
  configured (one idempotency key per item, bounded concurrency), else with durable timers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from agent.contracts import BatchInput
from agent.errors import OperatorError, ToolError
from agent.mcp.config import SCHEDULING_TOOL
from agent.mcp.names import exposed_tool_name
from agent.runtime import Runtime
from storage.batches import BatchItem, BatchRecord, ItemRef
from storage.conversations import ConversationRef
from storage.models import MessageOrigin, utc_timestamp


@dataclass(frozen=True)
class CallbackItem:
    """One conversation a delivery asks to run now (as the callback's body named it)."""

    schedule_id: str | None
    conversation_id: str
    content: str = field(repr=False)  # conversation text: kept out of logged reprs
    scheduled_time: str | None


SCHEDULED_BATCH = "scheduled_batch"
SCHEDULER_SERVER = "scheduler"  # the MCP server (in MCP_SERVERS) that schedules conversations
SCHEDULER_CONCURRENCY = 8
LOOKUP_CONCURRENCY = 16  # Blob and status reads one request makes at once
IDEMPOTENCY_WINDOW = timedelta(hours=24)  # a repeat within it starts nothing new


# --- a delivery ------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class RequestedItem:
    """One item of a batch the caller schedules, as parsed from the request."""

    content: str = field(repr=False)  # conversation text: kept out of logged reprs
    scheduled_time: str
    conversation_id: str | None
    error: str | None  # why it will not run (its time has passed), recorded as rejected


async def schedule(
    rt: Runtime,
    client: df.DurableOrchestrationClient,
    owner: str,
    requested: tuple[RequestedItem, ...],
) -> BatchRecord:
    """Store the caller's batch and hand it to the Scheduler (or to durable timers); a named
    conversation that is not the caller's is a NotFound before anything is written."""
    for item in requested:  # every named conversation must be the caller's, before any write
        if item.conversation_id:
            await rt.store.get_meta(ConversationRef(owner, item.conversation_id))
    batch_id = "s" + uuid.uuid4().hex
    items = [await scheduled_item(rt, owner, index, item) for index, item in enumerate(requested)]
    record = BatchRecord(batch_id, "schedule", utc_timestamp(), owner, tuple(items))
    await rt.batches.create(record)
    scheduler = scheduler_name(rt)
    if scheduler is not None:
        record = await schedule_through_scheduler(rt, record, scheduler)
        await rt.batches.replace(record)
    else:
        await schedule_with_timers(rt, client, record)
    return record


async def scheduled_item(rt: Runtime, owner: str, index: int, item: RequestedItem) -> BatchItem:
    """The batch's record of a requested item (in a new conversation when it names none)."""
    conversation_id = item.conversation_id or uuid.uuid4().hex
    if not item.conversation_id:
        await rt.store.create(ConversationRef(owner, conversation_id))
    return BatchItem(
        index,
        conversation_id,
        owner,
        item.content,
        item.scheduled_time,
        origin="scheduled",  # the caller's own words, delivered later
        status="rejected" if item.error else "pending",
        error=item.error,
    )


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
