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

from agent.errors import NotFound
from agent.http.kit import Call, api, json_response
from agent.http.models import ScheduleRequest
from agent.http.runs import run_view
from agent.runtime import Runtime
from agent.scheduling import LOOKUP_CONCURRENCY, RequestedItem, schedule
from storage.batches import BatchItem, BatchRecord, ItemRef, run_id_of
from storage.errors import RecordNotFound


@api
async def schedule_batch(call: Call, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    rt, owner = call.rt, call.owner()
    requested = requested_items(call.body(ScheduleRequest))
    record = await schedule(rt, client, owner, requested)
    return json_response(batch_view_of_items(record, record.items), 202)


def requested_items(request: ScheduleRequest) -> tuple[RequestedItem, ...]:
    """The batch to schedule. A time already past is well-formed (the document cannot say
    "future"): the batch takes it and the item says why it will not run, like an item the
    Scheduler refuses."""
    cutoff = datetime.now(UTC) - timedelta(seconds=30)
    return tuple(
        RequestedItem(
            item.content,
            item.scheduled_time.isoformat(),
            item.conversation_id,
            f"items[{index}].scheduled_time is in the past"
            if item.scheduled_time < cutoff
            else None,
        )
        for index, item in enumerate(request.items)
    )


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
