"""The model of `bench_batch`, in a process of its own as a real model would be.

    python -m benchmarks.latency_model COUNT [SCALE]

Prints its base URL, then answers item N (a user message with a line `item N`) after that item's
latency from `latencies(COUNT, SCALE)`, until its stdin closes.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
from typing import Any

from offline_model.replies import Completion, Delayed
from offline_model.server import ModelServer

API_KEY = "bench-key-0123456789abcdef"
DEPLOYMENT = "bench"
ITEM = re.compile(r"^item (\d+)$", re.MULTILINE)


def latencies(count: int, scale: float = 1.0) -> list[float]:
    """A fixed pseudo-random draw of 50-500 ms per item (the same in every run), times `scale`."""
    draw = random.Random(20261122)
    return [scale * draw.uniform(0.050, 0.500) for _ in range(count)]


class LatencyBrain:
    def __init__(self, table: list[float]) -> None:
        self.table = table

    def __call__(self, request_json: dict[str, Any]) -> Delayed:
        # The app wraps a scheduled message in markers (it is untrusted): find the item's line.
        last = request_json["messages"][-1]["content"]
        found = ITEM.search(last)
        if found is None:
            raise ValueError("the last message names no item")
        index = int(found.group(1))
        return Delayed(self.table[index], Completion(content=f"answer {index}"))


async def serve(count: int, scale: float) -> None:
    brain = LatencyBrain(latencies(count, scale))
    async with ModelServer(brain, api_key=API_KEY, deployments=[DEPLOYMENT]) as server:
        print(server.base_url, flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the benchmark closes our stdin


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0))
