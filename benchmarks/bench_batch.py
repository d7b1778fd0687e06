"""200 due conversations in one signed Scheduler callback, run at concurrency 20.

    .venv/bin/python -m benchmarks.bench_batch [--items 200] [--concurrency 20] [--latency-scale 1]

Each item's scripted model call takes 50-500 ms (a fixed pseudo-random draw), answered by a
model server in its own process (`benchmarks.latency_model`). The batch runs through the local
host exactly as in production: callback → `scheduled_batch` → one `chat_turn` per item
(activities, Blob on Azurite, the model through the real `openai` client).

Printed against baselines computed from the same latencies:
- ideal: total model latency / concurrency (a perfect sliding window with zero overhead);
- fixed chunks: the sum, over chunks of `concurrency` items, of each chunk's slowest item
  (what waiting for a whole chunk before starting the next costs, also with zero overhead);
- a sliding window with zero overhead, items taken in the batch's order: the floor of any
  schedule that cannot know an item's latency before it runs (1.07x ideal for these latencies);
- the CPU floor: host and Azurite CPU seconds over the machine's cores (on a 2-core machine a
  CPU-bound batch cannot finish sooner, whatever the lanes do).

And, to tell the window policy from the cost of each item, from the runs' own timestamps:
- a perfect sliding window over the measured item durations (each item's `chat_turn`, from
  creation to completion, started the moment a slot frees): the measured makespan against it
  shows what the lanes lose between items (taking the next item: claim it, lock its
  conversation, store its message), at ramp-up and at the tail;
- the mean overhead per item: measured `chat_turn` duration minus its scripted model latency
  (Durable episodes, Blob round trips, the openai client; all in one local-host process here).

Before the batch, one scheduled item warms the host up (its clients, connections and lazy
imports: a cold start is not an item's cost); the counts and times start after it.

And the cost ledger of the batch, from the callback to the batch's completion: Durable episodes,
activities, history events, Blob requests by kind and bytes, in total and per item (counts, the
same on any machine; `BATCH_MAX_CONCURRENCY` lanes may add a lost claim or two).

And the CPU seconds per item of the host process and of Azurite: on a loaded machine the times
stretch, the CPU much less, so it is the figure to compare between runs there.

Then (unless `--unsaturated none`) a batch too small to keep the host busy (60 items at
concurrency 5): its overhead per item is the hops' latency, without a queue for the CPU.

    --profile FILE   cProfile the host process during the batch and write its stats to FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import heapq
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from agent import runtime as app_runtime
from benchmarks.latency_model import API_KEY, DEPLOYMENT, latencies
from devkit.azurite import start_azurite
from devkit.ledger import BlobRequestCounter, Ledger, format_table, install_counting_runtime
from devkit.scheduler import WEBHOOK_SECRET, signed_callback
from local_host.history import TERMINAL_STATUSES
from local_host.host import LocalHost
from storage.batches import run_id_of

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BatchRun:
    makespan: float
    item_seconds: list[float]  # each item's chat_turn, creation to completion
    cost: Counter[str]  # the ledger's counts, callback to completion
    host_cpu: float  # CPU seconds of this process, callback to completion
    store_cpu: float  # CPU seconds of Azurite, the same span


async def warm_up(host: LocalHost, http: aiohttp.ClientSession) -> None:
    """One scheduled item through the whole path before the measured batch: the process's first
    item pays for its clients (openai, Blob, MCP), their connections and the app's lazy imports
    (a cold start, about half a second here), which is not what a batch's items cost."""
    api = f"{host.base_url}/api"
    async with http.post(f"{api}/conversations") as response:
        conversation = (await response.json())["id"]
    item = {"schedule_id": "warm-up", "conversation_id": conversation, "content": "item 0"}
    headers, body = signed_callback([{**item, "scheduled_time": None}])
    async with http.post(f"{api}/scheduler/callback", data=body, headers=headers) as response:
        batch_id = (await response.json())["batch_id"]
    await host.runtime.wait_for_status(batch_id, TERMINAL_STATUSES, within=60)


async def run_batch(
    host: LocalHost, http: aiohttp.ClientSession, count: int, ledger: Ledger, azurite_pid: int
) -> BatchRun:
    api = f"{host.base_url}/api"
    await warm_up(host, http)
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
    before = ledger.snapshot()
    host_cpu, store_cpu = time.process_time(), _azurite_cpu(azurite_pid)
    started = time.perf_counter()
    async with http.post(f"{api}/scheduler/callback", data=body, headers=headers) as response:
        batch_id = (await response.json())["batch_id"]
    # Woken by the host's own commits: polling the management API would cost the host CPU.
    done = await host.runtime.wait_for_status(batch_id, TERMINAL_STATUSES, within=600)
    elapsed = time.perf_counter() - started
    host_cpu = time.process_time() - host_cpu  # (the bench's own client is a small part)
    store_cpu = _azurite_cpu(azurite_pid) - store_cpu
    cost = ledger.snapshot() - before
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
    return BatchRun(elapsed, durations, cost, host_cpu, store_cpu)


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


class Profiler:
    """cProfile of the host process: the event loop thread while the batch runs, and every thread
    started after `watch_threads()` (the daemon threads that run orchestrator episodes and sync
    functions: cProfile sees one thread per profile, so each gets its own, merged at the end).

    Timed in CPU time of each thread: waiting (for a socket, for work) costs nothing, so the
    ranking shows what the host spends its CPU on, the scarce resource under a batch."""

    def __init__(self) -> None:
        self._main = cProfile.Profile(time.thread_time)
        self._threads: list[cProfile.Profile] = []

    def watch_threads(self) -> None:
        def start(*_: object) -> None:  # the new thread's first profile event
            profile = cProfile.Profile(time.thread_time)
            self._threads.append(profile)
            profile.enable()  # replaces this hook for the rest of the thread

        threading.setprofile(start)

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        self._main.enable()
        try:
            yield
        finally:
            self._main.disable()
            threading.setprofile(None)  # type: ignore[arg-type]

    def report(self, path: str, top: int = 10) -> None:
        stats = pstats.Stats(self._main)
        for profile in self._threads:
            stats.add(_Finished(profile))
        stats.dump_stats(path)
        for order in ("cumulative", "tottime"):
            print(f"profile: top {top} by {order} (all threads; {path})")
            stats.sort_stats(order).print_stats(top)


class _Finished:
    """A worker thread's profile of finished calls only. `pstats` would first disable it from
    this thread, closing the worker's call in progress (a wait for work) with this thread's CPU
    clock: a wait then shows as tens of seconds of CPU."""

    def __init__(self, profile: cProfile.Profile) -> None:
        profile.snapshot_stats()  # type: ignore[attr-defined]
        self.stats = profile.stats  # type: ignore[attr-defined]

    def create_stats(self) -> None:
        """Already made (pstats calls this)."""


def _azurite_cpu(pid: int) -> float:
    """CPU seconds the Azurite process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    count: int, concurrency: int, scale: float, profiler: Profiler | None
) -> BatchRun:
    """One batch on a fresh host (with the CPU seconds the host process and Azurite spent on
    it, from the callback on: CPU stretches much less than wall time on a shared machine)."""
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
        if profiler is not None:
            profiler.watch_threads()
        async with host, aiohttp.ClientSession() as http:
            blob = BlobRequestCounter()
            await install_counting_runtime(blob)
            ledger = Ledger(host.runtime.counters, blob)
            with profiler.measuring() if profiler is not None else contextlib.nullcontext():
                run = await run_batch(host, http, count, ledger, azurite.process.pid)
            built = app_runtime.current()
            if built is not None:
                await built.aclose()
    return run


def report(count: int, concurrency: int, scale: float, run: BatchRun) -> None:
    host_cpu, store_cpu = run.host_cpu, run.store_cpu
    table = latencies(count, scale)
    ideal = sum(table) / concurrency
    chunks = sum(max(table[i : i + concurrency]) for i in range(0, count, concurrency))
    low, high = 50 * scale, 500 * scale
    print(f"{count} conversations, model {low:.0f}-{high:.0f} ms each, concurrency {concurrency}")
    print(f"  ideal (total latency / {concurrency})    {ideal:7.2f} s")
    print(
        f"  fixed chunks of {concurrency} (no overhead)  {chunks:7.2f} s   {chunks / ideal:.2f}x ideal"
    )
    # Items start in their batch order and no lane knows a latency in advance: even with zero
    # overhead, the last items' latencies decide the tail. This is the best any in-order window
    # can do with these latencies, so no measured run can be below it.
    in_order = sliding_window(table, concurrency)
    print(
        f"  sliding window, no overhead      {in_order:7.2f} s   {in_order / ideal:.2f}x ideal"
        " (the floor for items taken in order)"
    )
    print(
        f"  sliding window, measured         {run.makespan:7.2f} s   {run.makespan / ideal:.2f}x ideal"
        f", {run.makespan / in_order:.2f}x the floor"
    )
    window = sliding_window(run.item_seconds, concurrency)
    overhead = (sum(run.item_seconds) - sum(table)) / count
    print("where the time goes (from the runs' own timestamps):")
    print(
        f"  perfect window over measured item durations {window:7.2f} s;"
        f" measured is {run.makespan / window:.2f}x that"
    )
    print(f"  overhead per item (measured duration - model latency)  {overhead * 1000:7.0f} ms")
    print(
        f"  CPU per item: host process {host_cpu / count * 1000:5.1f} ms,"
        f" Azurite {store_cpu / count * 1000:5.1f} ms (less load-sensitive than the times)"
    )
    cores = os.cpu_count() or 1
    floor = (host_cpu + store_cpu) / cores
    print(
        f"  CPU floor: (host + Azurite CPU) / {cores} cores = {floor:5.2f} s"
        f" = {floor / ideal:.2f}x ideal (no schedule beats it on this machine)"
    )
    print("cost ledger, callback to completion (counts: the same on any machine)")
    print(format_table({"batch": run.cost}, per={"item": count}))


async def main(
    count: int,
    concurrency: int,
    scale: float,
    profile_path: str | None,
    unsaturated: tuple[int, int] | None,
) -> None:
    profiler = Profiler() if profile_path else None
    report(count, concurrency, scale, await measure(count, concurrency, scale, profiler))
    if profiler is not None and profile_path is not None:
        profiler.report(profile_path)
    if unsaturated is not None:
        # Few items at low concurrency: the host is never busy, so what an item costs here is
        # its hops' latency, not a queue for the host's CPU.
        few, lanes = unsaturated
        print("\nnot saturated:")
        report(few, lanes, scale, await measure(few, lanes, scale, None))


def _items_at(text: str) -> tuple[int, int] | None:
    if text == "none":
        return None
    items, concurrency = text.split(":")
    return int(items), int(concurrency)


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
    parser.add_argument("--profile", metavar="FILE", help="cProfile the host; stats to FILE")
    parser.add_argument(
        "--unsaturated",
        type=_items_at,
        default=(60, 5),
        metavar="ITEMS:CONCURRENCY",
        help="then a batch too small to keep the host busy (default 60:5; none: skip)",
    )
    args = parser.parse_args()
    asyncio.run(
        main(args.items, args.concurrency, args.latency_scale, args.profile, args.unsaturated)
    )
