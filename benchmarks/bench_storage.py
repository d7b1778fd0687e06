"""Does appending to a conversation stay flat as it grows? (Azurite, started here.)

    python -m benchmarks.bench_storage          or          python benchmarks/bench_storage.py

For conversations of 10, 1,000 and 5,000 messages it times, interleaved round by round so drift
hits every size alike:
- a warm append: one message, by a store that has seen the transcript (the usual case: the model
  step reads it; the store's cursor then makes each append one conditional Append Block);
- a cold append: the first append by a fresh process (it reads the transcript once);
- read_messages: the whole transcript, deduped and sorted.
Medians, and each size's ratio to the 10-message baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.storage.blob.aio import ContainerClient

from devkit.azurite import start_azurite
from storage.blob import container_client, ensure_container
from storage.conversations import ConversationStore
from storage.models import ConversationRef, StoredMessage

SIZES = (10, 1_000, 5_000)
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
    messages = [make_message(1, index, 0) for index in range(size)]
    for start in range(0, size, FILL_BATCH):
        await store.append_many(ref, messages[start : start + FILL_BATCH])
    return ref


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def run(rounds: int, read_rounds: int) -> dict[str, dict[int, list[float]]]:
    results: dict[str, dict[int, list[float]]] = {
        name: {size: [] for size in SIZES} for name in ("warm append", "cold append", "read")
    }
    with start_azurite() as azurite:
        container: ContainerClient = container_client(azurite.connection_string, "bench")
        async with container:
            await ensure_container(container)
            store = ConversationStore(container)
            refs = {size: await filled_conversation(store, size) for size in SIZES}
            for ref in refs.values():
                await store.read_messages(ref)  # warms the cursor, as a model step would
            next_step = dict.fromkeys(SIZES, 0)

            async def warm_append(size: int) -> None:
                next_step[size] += 1
                assert await store.append(refs[size], make_message(2, next_step[size], 1))

            async def cold_append(size: int) -> None:
                next_step[size] += 1
                fresh = ConversationStore(container)
                assert await fresh.append(refs[size], make_message(2, next_step[size], 1))

            for size in SIZES:  # warm up connections and Azurite's code paths
                for _ in range(5):
                    await warm_append(size)
            for _ in range(rounds):
                for size in SIZES:
                    results["warm append"][size].append(await timed(lambda s=size: warm_append(s)))
            for _ in range(read_rounds):
                for size in SIZES:
                    results["cold append"][size].append(await timed(lambda s=size: cold_append(s)))
                    results["read"][size].append(
                        await timed(lambda s=size: store.read_messages(refs[s]))
                    )
    return results


def report(results: dict[str, dict[int, list[float]]]) -> None:
    print(f"{'operation':<12} {'messages':>9} {'median ms':>10} {'p90 ms':>8} {'ratio':>7}  n")
    for name, by_size in results.items():
        baseline = statistics.median(by_size[SIZES[0]])
        for size, samples in by_size.items():
            median = statistics.median(samples)
            p90 = statistics.quantiles(samples, n=10)[-1]
            print(
                f"{name:<12} {size:>9,} {median * 1000:>10.2f} {p90 * 1000:>8.2f} "
                f"{median / baseline:>6.2f}x  {len(samples)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="warm appends per size")
    parser.add_argument("--read-rounds", type=int, default=25, help="reads and cold appends")
    args = parser.parse_args()
    report(asyncio.run(run(args.rounds, args.read_rounds)))


if __name__ == "__main__":
    main()
