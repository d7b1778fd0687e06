"""Do a conversation's appends and model-step reads stay flat as it grows? (Azurite, started here.)

    python -m benchmarks.bench_storage          or          python benchmarks/bench_storage.py

For conversations of 10, 1,000 and 5,000 messages (turns of four) it measures, interleaved round
by round so drift hits every size alike:
- a warm append: one message, by a store that has seen the transcript (its cursor makes each
  append one conditional Append Block);
- a cold append: the first append by a fresh process, of a new turn's message (it reads the
  transcript's tail back to the previous turn: a HEAD and one range read);
- a model step, tail: `begin_model_step` bounded to the newest 40 messages (a tail read);
- a model step, full: `begin_model_step` without a bound (the whole transcript, as the model
  sees it today), measured in the same run for comparison.
Medians of time and of Blob bytes downloaded per operation, and each size's ratio to the
10-message baseline of the same run (the target for the tail read and the cold append: <= 1.3).

First, the CPU this process spends per Blob request on each request path (`BLOB_REQUESTS`):
the lean path (`storage.blob_lean`) and the SDK's pipeline, in interleaved rounds of small
uploads, whole and ranged downloads, appends and HEADs (`--cpu-requests` of each per round).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.storage.blob.aio import ContainerClient

from devkit.azurite import AzuriteInstance, start_azurite
from devkit.ledger import BlobRequestCounter
from storage.blob import container_client, ensure_container
from storage.conversations import ConversationStore
from storage.models import ConversationRef, StoredMessage
from storage.tail import TailBound

SIZES = (10, 1_000, 5_000)
PER_TURN = 4
MODEL_TAIL = TailBound(messages=40)
OPERATIONS = ("warm append", "cold append", "step, tail", "step, full")
FLAT_TARGET = 1.3  # the 5,000 / 10 ratio the tail read and the cold append must stay under
FILL_BATCH = 250
CONTENT = "The quick brown fox jumps over the lazy dog. " * 10  # ~450 bytes, a typical reply


def make_message(turn: int, step: int, seq: int) -> StoredMessage:
    return StoredMessage(
        id=f"run-{turn}.{step}.{seq}",
        run_id=f"run-{turn}",
        turn=turn,
        step=step,
        seq=seq,
        role="assistant" if seq == 0 else "tool",
        content=CONTENT,
        tool_calls=None,
        tool_call_id=None if seq == 0 else f"call_{step}_{seq}",
        name=None,
        created_at="2026-01-01T00:00:00+00:00",
        usage={"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960},
        output_ref=None,
        truncated=False,
        is_error=False,
        finish_reason=None,
    )


async def filled_conversation(store: ConversationStore, size: int) -> ConversationRef:
    ref = ConversationRef("bench-owner", f"size-{size}-{uuid.uuid4().hex[:8]}")
    await store.create(ref)
    messages = [make_message(i // PER_TURN + 1, i % PER_TURN, 0) for i in range(size)]
    for start in range(0, size, FILL_BATCH):
        await store.append_many(ref, messages[start : start + FILL_BATCH])
    return ref


Samples = dict[str, dict[int, list[tuple[float, int]]]]
CPU_PATHS = ("lean", "sdk")
CPU_ROUNDS = 5
SMALL_JSON = b'{"x":1}' * 20  # 140 bytes: a meta or claim record
LINE = b"The quick brown fox jumps over the lazy dog.\n" * 8  # ~370 bytes: a transcript line


async def measured(
    meter: BlobRequestCounter, action: Callable[[], Awaitable[object]]
) -> tuple[float, int]:
    """Seconds taken and Blob bytes downloaded (answers' bodies; a HEAD's is not counted)."""
    before = meter.snapshot()["blob_bytes_read"]
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started, meter.snapshot()["blob_bytes_read"] - before


async def _requests_round(container: ContainerClient, tag: str, n: int) -> None:
    """n each of: upload, whole download, ranged download, append, HEAD."""
    for i in range(n):
        await container.upload_blob(f"{tag}-{i}", SMALL_JSON, overwrite=True)
    for i in range(n):
        await (await container.download_blob(f"{tag}-{i}")).readall()
    for i in range(n):
        await (await container.download_blob(f"{tag}-{i}", offset=20, length=40)).readall()
    log = container.get_blob_client(f"{tag}-log")
    await log.create_append_blob()
    for _ in range(n):
        await log.append_block(LINE)
    for _ in range(n):
        await log.get_blob_properties()


async def cpu_per_request(azurite: AzuriteInstance, n: int) -> dict[str, list[float]]:
    """Milliseconds of this process's CPU per Blob request, per path, one sample a round."""
    counters = {path: BlobRequestCounter() for path in CPU_PATHS}
    clients = {
        path: container_client(
            azurite.connection_string,
            "bench-cpu",
            request_policies=[counters[path]],
            lean=path == "lean",
        )
        for path in CPU_PATHS
    }
    samples: dict[str, list[float]] = {path: [] for path in CPU_PATHS}
    try:
        await ensure_container(clients["sdk"])
        for path in CPU_PATHS:  # warm up connections and code paths
            await _requests_round(clients[path], f"warm-{path}", 5)
        for round_ in range(CPU_ROUNDS):
            for path in CPU_PATHS:
                before = counters[path].snapshot()["blob_requests"]
                started = time.process_time()
                await _requests_round(clients[path], f"{path}-{round_}", n)
                spent = time.process_time() - started
                sent = counters[path].snapshot()["blob_requests"] - before
                samples[path].append(spent / sent * 1000)
    finally:
        for client in clients.values():
            await client.close()
    return samples


def report_cpu(samples: dict[str, list[float]]) -> None:
    lean, sdk = (statistics.median(samples[path]) for path in CPU_PATHS)
    print(f"{'request path':<12} {'CPU ms/request':>15}  (median of {CPU_ROUNDS} rounds)")
    for path in CPU_PATHS:
        print(f"{path:<12} {statistics.median(samples[path]):>15.3f}")
    print(f"sdk / lean: {sdk / lean:.2f}x")


async def run(rounds: int, read_rounds: int, cpu_requests: int) -> Samples:
    results: Samples = {name: {size: [] for size in SIZES} for name in OPERATIONS}
    meter = BlobRequestCounter()
    with start_azurite() as azurite:
        if cpu_requests:
            report_cpu(await cpu_per_request(azurite, cpu_requests))
        if not rounds:
            return {}
        container: ContainerClient = container_client(
            azurite.connection_string, "bench", request_policies=[meter]
        )
        async with container:
            await ensure_container(container)
            store = ConversationStore(container)
            refs = {size: await filled_conversation(store, size) for size in SIZES}
            # Warm appends go to conversations of their own: the others keep their size.
            warm_refs = {size: await filled_conversation(store, size) for size in SIZES}
            for ref in warm_refs.values():
                await store.read_messages(ref)  # warms the cursor, as a full read leaves it
            turn = {size: size // PER_TURN + 1 for size in SIZES}

            def next_message(size: int) -> StoredMessage:
                turn[size] += 1  # every append opens a turn, as a user's message does
                return make_message(turn[size], 0, 0)

            async def warm_append(size: int) -> None:
                assert await store.append(warm_refs[size], next_message(size))

            async def cold_append(size: int) -> None:
                fresh = ConversationStore(container)
                assert await fresh.append(refs[size], next_message(size))

            async def model_step(size: int, bound: TailBound | None) -> None:
                run_id = f"run-{turn[size]}"
                await store.begin_model_step(refs[size], run_id, turn[size], {}, bound)

            for size in SIZES:  # warm up connections and Azurite's code paths
                for _ in range(5):
                    await warm_append(size)
            for _ in range(rounds):
                for size in SIZES:
                    sample = await measured(meter, functools.partial(warm_append, size))
                    results["warm append"][size].append(sample)
            for _ in range(read_rounds):
                for size in SIZES:
                    actions: dict[str, Callable[[], Awaitable[None]]] = {
                        "cold append": functools.partial(cold_append, size),
                        "step, tail": functools.partial(model_step, size, MODEL_TAIL),
                        "step, full": functools.partial(model_step, size, None),
                    }
                    for name, action in actions.items():
                        results[name][size].append(await measured(meter, action))
    return results


def report(results: Samples) -> None:
    print(
        f"{'operation':<12} {'messages':>9} {'median ms':>10} {'p90 ms':>8} {'ratio':>7} "
        f"{'KB read':>9} {'ratio':>7}  n"
    )
    for name, by_size in results.items():
        base_time = statistics.median(t for t, _ in by_size[SIZES[0]])
        base_bytes = statistics.median(b for _, b in by_size[SIZES[0]])
        for size, samples in by_size.items():
            times = [t for t, _ in samples]
            median = statistics.median(times)
            read = statistics.median(b for _, b in samples)
            p90 = statistics.quantiles(times, n=10)[-1]
            bytes_ratio = f"{read / base_bytes:>6.2f}x" if base_bytes else f"{'-':>7}"
            print(
                f"{name:<12} {size:>9,} {median * 1000:>10.2f} {p90 * 1000:>8.2f} "
                f"{median / base_time:>6.2f}x {read / 1024:>9.1f} {bytes_ratio}  {len(samples)}"
            )
    for name in ("cold append", "step, tail"):
        by_size = results[name]
        ratio = statistics.median(t for t, _ in by_size[SIZES[-1]]) / statistics.median(
            t for t, _ in by_size[SIZES[0]]
        )
        verdict = "ok" if ratio <= FLAT_TARGET else "over"
        print(
            f"{name}: {SIZES[-1]:,} / {SIZES[0]} time ratio {ratio:.2f} ({verdict}, <= {FLAT_TARGET})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="warm appends per size")
    parser.add_argument(
        "--read-rounds", type=int, default=25, help="cold appends and model steps per size"
    )
    parser.add_argument(
        "--cpu-requests",
        type=int,
        default=100,
        help="requests of each kind per round of the CPU comparison (0: skip it)",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds, args.read_rounds, args.cpu_requests))
    if results:
        report(results)


if __name__ == "__main__":
    main()
