"""A 20-step turn through the local host versus the same calls in a plain asyncio loop.

    .venv/bin/python -m benchmarks.bench_host [--repeats 3]

The model (scripted, 20 ms per call) asks for one tool (10 ms) on each of 19 steps and answers
on the 20th. The baseline makes the same 20 model calls and 19 tool calls with the same clients
and nothing else; the host adds what durability costs: Durable replay and history in SQLite, the
transcript and tool-call records in Blob (Azurite), HTTP. Both are measured in this run, so the
ratio holds on a noisy machine. The cost ledger of one hosted turn (Durable episodes, activities,
history events, Blob requests by kind and bytes: counts, the same on any machine) is printed
beside the timings, and the CPU both took (this process's: the fake model and the tool server
run in it too), which a loaded machine stretches much less than the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from mcp.server.mcpserver import MCPServer

from agent import runtime as app_runtime
from agent.mcp.config import parse_mcp_servers
from agent.mcp.pool import McpPool, to_openai_tools
from agent.model import build_model_client
from agent.settings import ModelSettings
from devkit.azurite import start_azurite
from devkit.fake_openai import TEST_DEPLOYMENT, fake_openai
from devkit.ledger import BlobRequestCounter, Ledger, format_table, install_counting_runtime
from devkit.mcp_servers import AsgiServer
from local_host.history import TERMINAL_STATUSES
from local_host.host import LocalHost
from offline_model.brains import ScriptedBrain
from offline_model.replies import Completion, ToolCallSpec

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20
MODEL_SECONDS = 0.020
TOOL_SECONDS = 0.010


def bench_mcp_app() -> Any:
    server = MCPServer("bench")

    @server.tool()
    async def work() -> str:
        """Ten milliseconds of pretend work."""
        await anyio.sleep(TOOL_SECONDS)
        return "done"

    return server.streamable_http_app()


def script_turn(brain: ScriptedBrain) -> None:
    tool = Completion(tool_calls=(ToolCallSpec("bench__work", "{}"),))
    for _ in range(STEPS - 1):
        brain.delay(MODEL_SECONDS, then=tool)
    brain.delay(MODEL_SECONDS, then=Completion(content="finished"))


async def plain_loop(config: ModelSettings, pool: McpPool) -> tuple[float, float]:
    """The same calls, one after the other, with nothing durable around them; wall and CPU
    seconds (this process's, which serves the fake model and the tool server too)."""
    client = build_model_client(config)
    tools = to_openai_tools(await pool.list_tools())
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(STEPS):
        reply = await client.complete(messages, tools)
        messages.append(reply.assistant_message())
        for call in reply.tool_calls:
            outcome = await pool.call_tool(
                call.name, {}, context={}, idempotency_key=uuid.uuid4().hex
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.text})
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await client.aclose()
    return elapsed, cpu


async def through_host(
    host: LocalHost, http: aiohttp.ClientSession, ledger: Ledger
) -> tuple[float, float, Counter[str]]:
    api = f"{host.base_url}/api"
    async with http.post(f"{api}/conversations") as response:
        conversation = (await response.json())["id"]
    before = ledger.snapshot()
    started, cpu = time.perf_counter(), time.process_time()
    url = f"{api}/conversations/{conversation}/messages"
    async with http.post(url, json={"content": "go"}) as response:
        run_id = (await response.json())["run_id"]
    # Woken by the host's own commits (the run's orchestration has the run's id): polling
    # GET /api/runs every few ms would cost the host more CPU than the turn itself.
    await host.runtime.wait_for_status(run_id, TERMINAL_STATUSES, within=120)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    cost = ledger.snapshot() - before  # before the status read below, which is not the turn's
    async with http.get(f"{api}/runs/{run_id}") as response:
        run = await response.json()
    if run["status"] != "completed" or run.get("step") != STEPS:
        raise RuntimeError(f"the benchmark turn did not complete as scripted: {run}")
    return elapsed, cpu, cost


async def main(repeats: int) -> None:
    with (
        start_azurite() as azurite,
        AsgiServer(bench_mcp_app) as mcp_server,
        tempfile.TemporaryDirectory() as workdir,
    ):
        servers = {
            "mcp_servers": [
                {"name": "bench", "transport": {"type": "streamable_http", "url": mcp_server.url()}}
            ]
        }
        async with fake_openai(ScriptedBrain()) as model:
            os.environ.update(
                CONVERSATIONS_STORAGE=azurite.connection_string,
                AzureWebJobsStorage=azurite.connection_string,
                CONVERSATIONS_CONTAINER="bench",
                AZURE_OPENAI_ENDPOINT=model.base_url,
                AZURE_OPENAI_DEPLOYMENT=TEST_DEPLOYMENT,
                AZURE_OPENAI_API_KEY=model.api_key or "",
                MCP_SERVERS=json.dumps(servers),
                AGENT_MAX_STEPS=str(STEPS + 5),
            )
            os.environ.pop("OPENAI_BASE_URL", None)
            pool = McpPool(parse_mcp_servers(json.dumps(servers)))
            state = Path(workdir) / "durable.sqlite3"
            plain, hosted, plain_cpu, hosted_cpu = [], [], [], []
            cost: Counter[str] = Counter()
            async with (
                LocalHost(ROOT, port=0, state_path=state, apply_local_settings=False) as host,
                aiohttp.ClientSession() as http,
            ):
                blob = BlobRequestCounter()
                await install_counting_runtime(blob)
                ledger = Ledger(host.runtime.counters, blob)
                for _ in range(repeats + 1):  # the first round warms both paths up
                    script_turn(model.brain)
                    elapsed, cpu = await plain_loop(model.azure_config(), pool)
                    plain.append(elapsed)
                    plain_cpu.append(cpu)
                    script_turn(model.brain)
                    elapsed, cpu, cost = await through_host(host, http, ledger)
                    hosted.append(elapsed)
                    hosted_cpu.append(cpu)
                built = app_runtime.current()
                if built is not None:
                    await built.aclose()
            await pool.aclose()
    base, durable = statistics.median(plain[1:]), statistics.median(hosted[1:])
    ideal = STEPS * MODEL_SECONDS + (STEPS - 1) * TOOL_SECONDS
    print(
        f"20-step turn (model {MODEL_SECONDS * 1000:.0f} ms, tool {TOOL_SECONDS * 1000:.0f} ms), median of {repeats}"
    )
    print(f"  sleep time alone          {ideal * 1000:8.1f} ms")
    print(f"  plain asyncio loop        {base * 1000:8.1f} ms   (baseline)")
    print(f"  through the local host    {durable * 1000:8.1f} ms   ratio {durable / base:.2f}x")
    print(f"  overhead per step         {(durable - base) / STEPS * 1000:8.1f} ms")
    # CPU stretches much less than wall time when other work shares the machine.
    base_cpu, durable_cpu = statistics.median(plain_cpu[1:]), statistics.median(hosted_cpu[1:])
    print(
        f"  CPU (this process)        {base_cpu * 1000:8.1f} ms plain, {durable_cpu * 1000:.1f} ms"
        f" hosted: {(durable_cpu - base_cpu) / STEPS * 1000:.1f} ms more per step"
    )
    print("cost ledger of the last hosted turn (counts: the same on any machine)")
    print(format_table({"turn": cost}, per={"step": STEPS}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    # Before the MCP SDK's server installs a rich console handler at INFO: the host's one line
    # per function call, printed by rich, would cost more than the work (the baseline logs none).
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args().repeats))
