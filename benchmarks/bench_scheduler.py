"""How fast does the Scheduler take schedules and deliver them? (all on loopback, started here)

    python -m benchmarks.bench_scheduler          or          python benchmarks/bench_scheduler.py

- schedule: `schedule_conversation` calls on one open MCP session (median latency, calls/s);
- deliver: N due schedules sent by one dispatcher tick to a local receiver that answers 200,
  for several batch sizes (callbacks made, items/s);
- verify: the app's `agent.webhooks.verify` + `agent.http.callbacks.parse_callback` on a 50-item callback body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.http.callbacks import parse_callback
from agent.webhooks import decode_secret, verify
from devkit.scheduler import (
    WEBHOOK_SECRET,
    FakeClock,
    ServedApp,
    WebhookReceiver,
    mcp_session,
    scheduler_config,
)
from samples.scheduler_mcp import Scheduler
from samples.scheduler_mcp.signing import Signer
from samples.scheduler_mcp.validation import new_schedule

TEXT = "Remind me to review the quarterly report with the finance team. " * 3  # ~200 chars


async def bench_schedule(calls: int, state_dir: Path, receiver: WebhookReceiver) -> None:
    clock = FakeClock()
    served = await ServedApp(
        Scheduler(scheduler_config(state_dir / "a.sqlite3"), clock=clock).app
    ).start()
    try:
        async with mcp_session(served.url()) as session:
            latencies = []
            started = time.perf_counter()
            for index in range(calls):
                arguments = {
                    "conversation_text": TEXT,
                    "scheduled_time": clock.iso(3600 + index),
                    "endpoint": receiver.url(),
                    "conversation_id": f"c{index}",
                }
                begin = time.perf_counter()
                result = await session.call_tool(
                    "schedule_conversation", arguments, meta={"idempotency_key": f"k{index}"}
                )
                latencies.append(time.perf_counter() - begin)
                assert not result.is_error, result.content
            elapsed = time.perf_counter() - started
            baseline = []
            for _ in range(50):
                begin = time.perf_counter()
                await session.call_tool("list_scheduled_conversations", {"limit": 1})
                baseline.append(time.perf_counter() - begin)
    finally:
        await served.stop()
    print(
        f"schedule  {calls} calls on one session: median {statistics.median(latencies) * 1000:.2f} ms,"
        f" p95 {sorted(latencies)[int(calls * 0.95)] * 1000:.2f} ms, {calls / elapsed:.0f} calls/s"
        f" (a 1-row list call: median {statistics.median(baseline) * 1000:.2f} ms)"
    )


async def bench_deliver(
    items: int, batch_size: int, state_dir: Path, receiver: WebhookReceiver
) -> None:
    clock = FakeClock()
    config = scheduler_config(state_dir / f"d{batch_size}.sqlite3", batch_size=batch_size)
    scheduler = Scheduler(config, clock=clock)
    now = datetime.fromtimestamp(clock.now, tz=UTC)
    due = (now + timedelta(seconds=1)).isoformat()
    for index in range(items):
        new = new_schedule(TEXT, due, receiver.url(), f"c{index}", now)
        scheduler.store.create(new, f"s{batch_size}-{index}", None, clock.now)
    clock.advance(1)
    before = len(receiver.callbacks)
    started = time.perf_counter()
    report = await scheduler.dispatcher.run_once()
    elapsed = time.perf_counter() - started
    await scheduler.aclose()
    assert report.delivered == items, report
    print(
        f"deliver   {items} due, batch size {batch_size:>3}: {len(receiver.callbacks) - before:>4} callbacks"
        f" in {elapsed * 1000:.0f} ms, {items / elapsed:.0f} items/s"
    )


def bench_verify(rounds: int) -> None:
    items = [
        {
            "schedule_id": f"s{i}",
            "conversation_id": f"c{i}",
            "content": TEXT,
            "scheduled_time": None,
        }
        for i in range(50)
    ]
    body = json.dumps({"type": "conversations.due", "items": items}).encode()
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": Signer(WEBHOOK_SECRET).sign("msg_1", now, body),
    }
    key = decode_secret(WEBHOOK_SECRET)  # once, as Settings does
    started = time.perf_counter()
    for _ in range(rounds):
        verify(key, headers, body, now=now)
        parse_callback(body)
    elapsed = time.perf_counter() - started
    print(
        f"verify    verify + parse of a 50-item body ({len(body)} bytes): {elapsed / rounds * 1e6:.0f} µs"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    # Before any MCPServer exists: it would configure INFO logging (a line per delivery).
    logging.basicConfig(level=logging.WARNING)
    receiver = await WebhookReceiver().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await bench_schedule(args.calls, Path(tmp), receiver)
            for batch_size in (1, 50, 500):
                await bench_deliver(args.items, batch_size, Path(tmp), receiver)
        bench_verify(2000)
    finally:
        await receiver.stop()


if __name__ == "__main__":
    asyncio.run(main())
