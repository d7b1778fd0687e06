"""Is pooling MCP sessions worth it? Per-call latency, pooled session vs connect-per-call.

    python -m benchmarks.bench_mcp [--calls 200] [--transport streamable_http|sse|stdio]

Runs the demo MCP server on loopback in its own process (HTTP, SSE or stdio) and times
`greet` calls three ways, interleaved in a shuffled order round by round so drift hits each alike:
- pooled: `McpPool.call_tool` on the pool's long-lived session (what the app does);
- raw pooled: the SDK's `Client.call_tool` on one open session (the floor: no pool overhead);
- connect-per-call: open a session (connect + initialize), call, close: what a client per call costs.
Prints medians / p95 and the ratio connect-per-call ÷ pooled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from agent.mcp.config import parse_mcp_servers
from agent.mcp.pool import McpPool
from devkit.mcp_servers import REPO_ROOT, demo_stdio_command, free_port

Timer = Callable[[], Awaitable[None]]  # one timed operation


@asynccontextmanager
async def demo_server(transport: str, sandbox: Path) -> AsyncIterator[dict[str, Any]]:
    """The demo server for `transport`, in its own process; yields its MCP_SERVERS `transport`.

    A separate process, as in production: a server thread in this process would compete with the
    client for the GIL and add its own latency to every call.
    """
    if transport == "stdio":
        yield demo_stdio_command(sandbox).transport_config()
        return
    port = free_port()
    cli_transport = "streamable-http" if transport == "streamable_http" else "sse"
    args = ["-m", "samples.demo_mcp", "--transport", cli_transport, "--port", str(port)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        "--sandbox",
        str(sandbox),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for_port(port, process)
        path = "/mcp" if transport == "streamable_http" else "/sse"
        yield {"type": transport, "url": f"http://127.0.0.1:{port}{path}"}
    finally:
        process.terminate()
        await process.wait()


async def wait_for_port(port: int, process: asyncio.subprocess.Process, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start") from None
            await asyncio.sleep(0.05)  # a bounded poll for a process we get no event from
        else:
            writer.close()
            await writer.wait_closed()
            return


def sdk_transport(config: dict[str, Any]) -> Any:
    if config["type"] == "streamable_http":
        return streamable_http_client(config["url"])
    if config["type"] == "sse":
        return sse_client(config["url"])
    return stdio_client(
        StdioServerParameters(
            command=config["command"],
            args=config["args"],
            env=config.get("env"),
            cwd=config.get("cwd"),
        )
    )


async def timed(operation: Timer) -> float:
    started = time.perf_counter()
    await operation()
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ordered)})"


async def run(transport: str, calls: int, connect_calls: int) -> dict[str, float]:
    sandbox = Path(".local") / "bench-sandbox"
    async with demo_server(transport, sandbox) as transport_config:
        text = json.dumps({"mcp_servers": [{"name": "demo", "transport": transport_config}]})
        pool = McpPool(parse_mcp_servers(text))
        raw = Client(sdk_transport(transport_config), cache=None)
        await raw.__aenter__()
        try:

            async def pooled() -> None:
                outcome = await pool.call_tool(
                    "demo__greet", {"name": "b"}, context={}, idempotency_key="k"
                )
                assert not outcome.is_error

            async def raw_pooled() -> None:
                result = await raw.call_tool("greet", {"name": "b"})
                assert not result.is_error

            async def connect_per_call() -> None:
                async with Client(sdk_transport(transport_config), cache=None) as client:
                    result = await client.call_tool("greet", {"name": "b"})
                    assert not result.is_error

            # A log line per call written to a terminal would dominate the numbers.
            logging.getLogger().setLevel(logging.WARNING)
            await pooled()  # warm up: open the pool's session, list the catalog
            await raw_pooled()
            samples: dict[str, list[float]] = {"pooled": [], "raw": [], "connect": []}
            shuffle = random.Random(7).shuffle  # a fixed seed: the same order every run
            for index in range(calls):
                variants: list[tuple[str, Timer]] = [("pooled", pooled), ("raw", raw_pooled)]
                if index < connect_calls:
                    variants.append(("connect", connect_per_call))
                shuffle(variants)  # no variant always goes first (or right after a connect)
                for name, operation in variants:
                    samples[name].append(await timed(operation))
        finally:
            await raw.__aexit__(None, None, None)
            await pool.aclose()

    print(f"\nMCP tool call latency over {transport} (demo server, loopback)")
    print(f"  pooled (McpPool)       {summary(samples['pooled'])}")
    print(f"  pooled (raw SDK)       {summary(samples['raw'])}")
    print(f"  connect per call       {summary(samples['connect'])}")
    pooled_median = statistics.median(samples["pooled"])
    connect_median = statistics.median(samples["connect"])
    ratio = connect_median / pooled_median
    print(f"  connect-per-call / pooled = {ratio:.1f}x (medians)")
    print(
        f"  pool overhead over raw SDK = {pooled_median - statistics.median(samples['raw']):+.2f} ms"
    )
    return {"pooled_ms": pooled_median, "connect_ms": connect_median, "ratio": ratio}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transport", choices=("streamable_http", "sse", "stdio"), default="streamable_http"
    )
    parser.add_argument("--calls", type=int, default=200, help="pooled calls per variant")
    parser.add_argument(
        "--connect-calls",
        type=int,
        default=None,
        help="connect-per-call samples (default: calls, 10 for stdio)",
    )
    args = parser.parse_args(argv)
    connect_calls = args.connect_calls
    if connect_calls is None:
        connect_calls = 10 if args.transport == "stdio" else args.calls
    asyncio.run(run(args.transport, args.calls, min(connect_calls, args.calls)))


if __name__ == "__main__":
    main()
