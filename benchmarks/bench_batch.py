"""200 due conversations in one signed Scheduler callback, run at concurrency 20.

    .venv/bin/python -m benchmarks.bench_batch [--items 200] [--concurrency 20] [--latency-scale 1]

Each item's scripted model call takes 50-500 ms (a fixed pseudo-random draw), answered by a
model server in its own process (`benchmarks.latency_model`). The batch runs through the local
host exactly as in production: callback → `scheduled_batch` → one `chat_turn` per item
(activities, Blob on Azurite, the model through the real `openai` client).

Printed against baselines computed from the same latencies:
- ideal: total model latency / concurrency (a perfect sliding window with zero overhead);
- fixed chunks: the sum, over chunks of `concurrency` items, of each chunk's slowest item
  (what waiting for a whole chunk before starting the next costs, also with zero overhead).

And, to tell the window policy from the cost of each item, from the runs' own timestamps:
- a perfect sliding window over the measured item durations (each item's `chat_turn`, from
  creation to completion, started the moment a slot frees): the measured makespan against it
  shows what the lanes lose between items (taking the next item: claim it, lock its
  conversation, store its message), at ramp-up and at the tail;
- the mean overhead per item: measured `chat_turn` duration minus its scripted model latency
  (Durable episodes, Blob round trips, the openai client; all in one local-host process here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from agent import runtime as app_runtime
from benchmarks.latency_model import API_KEY, DEPLOYMENT, latencies
from devkit.azurite import start_azurite
from devkit.scheduler import WEBHOOK_SECRET, signed_callback
from local_host.history import TERMINAL_STATUSES
from local_host.host import LocalHost
from storage.batches import run_id_of

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BatchRun:
    makespan: float
    item_seconds: list[float]  # each item's chat_turn, creation to completion


async def run_batch(host: LocalHost, http: aiohttp.ClientSession, count: int) -> BatchRun:
    api = f"{host.base_url}/api"
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
    # Woken by the host's own commits: polling the management API would cost the host CPU.
    done = await host.runtime.wait_for_status(batch_id, TERMINAL_STATUSES, within=600)
    elapsed = time.perf_counter() - started
    output = json.loads(done.output_raw or "null")
    if str(done.runtime_status) != "Completed" or output["counts"] != {"completed": count}:
        raise RuntimeError(f"the batch did not complete as scripted: {output}")
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


@contextlib.contextmanager
def model_process(count: int, scale: float) -> Iterator[str]:
    """The scripted model in a child process (see `benchmarks.latency_model`); its base URL."""
    command = [sys.executable, "-m", "benchmarks.latency_model", str(count), str(scale)]
    child = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        base_url = child.stdout.readline().strip()
        if not base_url.startswith("http://"):
            raise RuntimeError("the model process did not start (see its output above)")
        yield base_url
    finally:
        child.stdin.close()
        child.wait(timeout=30)


async def main(count: int, concurrency: int, scale: float) -> None:
    table = latencies(count, scale)
    with (
        start_azurite() as azurite,
        tempfile.TemporaryDirectory() as workdir,
        model_process(count, scale) as model_url,
    ):
        os.environ.update(
            CONVERSATIONS_STORAGE=azurite.connection_string,
            AzureWebJobsStorage=azurite.connection_string,
            CONVERSATIONS_CONTAINER="bench-batch",
            AZURE_OPENAI_ENDPOINT=model_url,
            AZURE_OPENAI_DEPLOYMENT=DEPLOYMENT,
            AZURE_OPENAI_API_KEY=API_KEY,
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
    low, high = 50 * scale, 500 * scale
    print(f"{count} conversations, model {low:.0f}-{high:.0f} ms each, concurrency {concurrency}")
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
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=1.0,
        help="multiply every model latency (10: 0.5-5 s, closer to real model calls)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.items, args.concurrency, args.latency_scale))
