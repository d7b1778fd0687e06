"""Batches of scheduled conversations: `POST /api/schedules` (schedule a batch) and
`GET /api/batches/{batch_id}` (its per-item progress: an item handed to the Scheduler shows the
run its delivery started, under whichever batch that delivery ran)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.errors import BadRequest, NotFound
from agent.http.kit import Call, api, checked_id, json_response
from agent.http.runs import run_view
from agent.runtime import Runtime
from agent.scheduling import LOOKUP_CONCURRENCY, RequestedItem, schedule
from storage.batches import BatchItem, BatchRecord, ItemRef, run_id_of
from storage.errors import RecordNotFound

MAX_SCHEDULE_ITEMS = 100


@api
async def schedule_batch(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    rt, owner = call.rt, call.owner()
    requested = parse_schedule_request(call.json(), rt)
    record = await schedule(rt, client, owner, requested)
    return json_response(batch_view_of_items(record, record.items), 202)


def parse_schedule_request(body: dict[str, Any], rt: Runtime) -> tuple[RequestedItem, ...]:
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
        error = f"{where}.scheduled_time is in the past" if past else None
        parsed.append(RequestedItem(content, when.isoformat(), conversation_id, error))
    return tuple(parsed)


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


@api
async def get_batch(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    rt, caller = call.rt, call.owner()
    batch_id = call.path_id("batch_id")
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
    except (NotFound, RecordNotFound):  # not started yet, or never will: its outcome says which
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
