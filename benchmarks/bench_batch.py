"""200 due conversations in one signed Scheduler callback, run at concurrency 20.

    .venv/bin/python -m benchmarks.bench_batch [--items 200] [--concurrency 20]

Each item's scripted model call takes 50-500 ms (a fixed pseudo-random draw). The batch runs
through the local host exactly as in production: callback → `scheduled_batch` → one `chat_turn`
per item (activities, Blob on Azurite, the model through the real `openai` client).

Printed against baselines computed from the same latencies:
- ideal: total model latency / concurrency (a perfect sliding window with zero overhead);
- fixed chunks: the sum, over chunks of `concurrency` items, of each chunk's slowest item
  (what waiting for a whole chunk before starting the next costs, also with zero overhead).

And, to tell the window policy from the cost of each item, from the runs' own timestamps:
- a perfect sliding window over the measured item durations (each item's `chat_turn`, from
  creation to completion, started the moment a slot frees): the measured makespan against it
  shows what the lanes lose between items, at ramp-up and at the tail;
- the mean overhead per item: measured item duration minus its scripted model latency (Durable
  episodes, Blob round trips, the openai client; all in one local-host process here).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import azure.durable_functions as df
from standardwebhooks import Webhook

from agent import runtime as app_runtime
from local_host.host import LocalHost
from offline_model.replies import Completion, Delayed
from storage.batches import run_id_of
from tests.support.azurite import start_azurite
from tests.support.fake_openai import TEST_DEPLOYMENT, fake_openai
from tests.support.scheduler import WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[1]


def latencies(count: int) -> list[float]:
    draw = random.Random(20261122)
    return [draw.uniform(0.050, 0.500) for _ in range(count)]


class LatencyBrain:
    """Answers item N (its user message says `item N`) after that item's latency."""

    def __init__(self, table: list[float]) -> None:
        self.table = table

    def __call__(self, request_json: dict[str, Any]) -> Delayed:
        last = request_json["messages"][-1]["content"]
        index = int(last.rsplit(" ", 1)[-1])
        return Delayed(self.table[index], Completion(content=f"answer {index}"))


def signed_callback(items: list[dict[str, Any]]) -> tuple[dict[str, str], str]:
    body = json.dumps({"type": "conversations.due", "items": items})
    webhook_id = f"msg_bench_{time.time_ns()}"
    now = datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign(webhook_id, now, body),
        "content-type": "application/json",
    }
    return headers, body


@dataclass(frozen=True)
class BatchRun:
    makespan: float
    item_seconds: list[float]  # each item's chat_turn, creation to completion


async def run_batch(host: LocalHost, http: aiohttp.ClientSession, count: int) -> BatchRun:
    api = f"{host.base_url}/api"
    client = df.DurableOrchestrationClient(host.client_binding())
    conversations = []
    for _ in range(count):
        async with http.post(f"{api}/conversations") as response:
            conversations.append((await response.json())["id"])
    items = [
        {
            "schedule_id": f"s{i}",
            "conversation_id": c,
            "content": f"item {i}",
            "scheduled_time": None,
        }
        for i, c in enumerate(conversations)
    ]
    headers, body = signed_callback(items)
    started = time.perf_counter()
    async with http.post(f"{api}/scheduler/callback", data=body, headers=headers) as response:
        batch_id = (await response.json())["batch_id"]
    while True:  # one status read of the batch orchestration: the probe must stay cheap
        status = await client.get_status(batch_id)
        if status.runtime_status is not None and status.runtime_status.value == "Completed":
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    if status.output["counts"] != {"completed": count}:
        raise RuntimeError(f"the batch did not complete as scripted: {status.output}")
    # The host's own records: the management API's times are whole seconds.
    durations = []
    for index in range(count):
        turn = host.runtime.get_instance(run_id_of(batch_id, index))
        if turn is None:
            raise RuntimeError(f"item {index} has no chat_turn")
        durations.append((turn.last_updated_time - turn.created_time).total_seconds())
    return BatchRun(elapsed, durations)


def sliding_window(durations: list[float], concurrency: int) -> float:
    """Makespan of a perfect sliding window: each item starts the moment a slot frees."""
    slots = [0.0] * min(concurrency, len(durations))
    for duration in durations:
        heapq.heappush(slots, heapq.heappop(slots) + duration)
    return max(slots)


async def main(count: int, concurrency: int) -> None:
    table = latencies(count)
    with start_azurite() as azurite, tempfile.TemporaryDirectory() as workdir:
        async with fake_openai(LatencyBrain(table)) as model:
            os.environ.update(
                CONVERSATIONS_STORAGE=azurite.connection_string,
                AzureWebJobsStorage=azurite.connection_string,
                CONVERSATIONS_CONTAINER="bench-batch",
                AZURE_OPENAI_ENDPOINT=model.base_url,
                AZURE_OPENAI_DEPLOYMENT=TEST_DEPLOYMENT,
                AZURE_OPENAI_API_KEY=model.api_key or "",
                MCP_SERVERS='{"mcp_servers": []}',
                SCHEDULER_WEBHOOK_SECRET=WEBHOOK_SECRET,
                BATCH_MAX_CONCURRENCY=str(concurrency),
            )
            os.environ.pop("OPENAI_BASE_URL", None)
            host = LocalHost(
                ROOT,
                port=0,
                state_path=Path(workdir) / "durable.sqlite3",
                max_activities=concurrency * 3,  # activity slots must not be the bottleneck
                apply_local_settings=False,
            )
            async with host, aiohttp.ClientSession() as http:
                run = await run_batch(host, http, count)
                built = app_runtime.current()
                if built is not None:
                    await built.aclose()
    ideal = sum(table) / concurrency
    chunks = sum(max(table[i : i + concurrency]) for i in range(0, count, concurrency))
    print(f"{count} conversations, model 50-500 ms each, concurrency {concurrency}")
    print(f"  ideal (total latency / {concurrency})    {ideal:7.2f} s")
    print(
        f"  fixed chunks of {concurrency} (no overhead)  {chunks:7.2f} s   {chunks / ideal:.2f}x ideal"
    )
    print(
        f"  sliding window, measured         {run.makespan:7.2f} s   {run.makespan / ideal:.2f}x ideal"
    )
    window = sliding_window(run.item_seconds, concurrency)
    overhead = (sum(run.item_seconds) - sum(table)) / count
    print("where the time goes (from the runs' own timestamps):")
    print(
        f"  perfect window over measured item durations {window:7.2f} s;"
        f" measured is {run.makespan / window:.2f}x that"
    )
    print(f"  overhead per item (measured duration - model latency)  {overhead * 1000:7.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.concurrency))
