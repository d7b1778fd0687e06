"""Streaming a run's answer: how soon a client sees the first text, and what it costs in Blob writes.

    .venv/bin/python -m benchmarks.bench_stream [--repeats 3] [--tokens 1000] [--ms-per-token 10]

The model (the local model server, through the real openai client) streams an answer of
`--tokens` tokens, one chunk per token, `--ms-per-token` apart. The app runs on the local host
with the real flow (Durable orchestration, the model step activity, Azurite) and a client follows
`GET /api/runs/{id}/events` over SSE. Measured in the same run:

- first token → first `text_delta` at the client: from the moment the model server sends its
  first content chunk to the moment the SSE client has the first text_delta. Baselines: the same
  model stream read directly with the openai client (the transport's floor), and a client
  without streaming, who sees the answer when the run completes (`GET /api/runs/{id}`).
- Blob writes per 1,000 generated tokens: Append Block requests to the run's event log during
  the run, per 1,000 completion tokens. Baseline: one write per token (1,000).
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
from pathlib import Path
from typing import Any

import aiohttp

from agent import runtime as app_runtime
from agent.model import build_model_client
from agent.model_stream import stream
from devkit.azurite import start_azurite
from devkit.fake_openai import TEST_DEPLOYMENT, FakeOpenAI, fake_openai
from local_host.host import LocalHost
from offline_model import Completion, Paced, ScriptedBrain

ROOT = Path(__file__).resolve().parents[1]
WORD = "word"  # four characters: one token for the model server's count


class FirstToken:
    """When the model server sent the first chunk that carries content."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, index: int, chunk: dict[str, Any]) -> None:
        choices = chunk.get("choices") or []
        if self.at is None and choices and choices[0].get("delta", {}).get("content"):
            self.at = time.perf_counter()


def paced_answer(tokens: int, seconds: float, first: FirstToken) -> Paced:
    return Paced(Completion(content=WORD * tokens), seconds_per_chunk=seconds, on_chunk=first)


async def transport_floor(model: FakeOpenAI, tokens: int, seconds: float) -> float:
    """First token sent → first text received, reading the model's stream directly."""
    first = FirstToken()
    model.brain.then(paced_answer(tokens, seconds, first))
    received: list[float] = []

    async def on_text(text: str) -> None:
        if not received:
            received.append(time.perf_counter())

    async with build_model_client(model.azure_config(timeout_seconds=120)) as client:
        await stream(client, [{"role": "user", "content": "go"}], [], on_text=on_text)
    assert first.at is not None
    return received[0] - first.at


async def first_delta(http: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    """Follow the run's events; when the first text_delta arrived, and how many deltas came."""
    first: float | None = None
    deltas = 0
    timeout = aiohttp.ClientTimeout(total=300)
    async with http.get(url, headers={"Accept": "text/event-stream"}, timeout=timeout) as stream:
        async for raw in stream.content:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event["type"] == "text_delta":
                first = first or time.perf_counter()
                deltas += 1
            if event["type"] == "run_finished":
                break
    assert first is not None, "no text_delta arrived"
    return first, deltas


async def one_run(
    host: LocalHost, http: aiohttp.ClientSession, model: FakeOpenAI, tokens: int, seconds: float
) -> dict[str, float]:
    api = f"{host.base_url}/api"
    first = FirstToken()
    model.brain.then(paced_answer(tokens, seconds, first))
    built = app_runtime.current()
    writes_before = built.events.appends if built is not None else 0
    async with http.post(f"{api}/conversations") as response:
        conversation = (await response.json())["id"]
    url = f"{api}/conversations/{conversation}/messages"
    async with http.post(url, json={"content": "go"}) as response:
        run_id = (await response.json())["run_id"]
    seen_at, deltas = await first_delta(http, f"{api}/runs/{run_id}/events")
    async with http.get(f"{api}/runs/{run_id}") as response:
        run = await response.json()
    completed_at = time.perf_counter()  # a poller without streaming sees the answer now
    if run["status"] != "completed":
        raise RuntimeError(f"the benchmark run did not complete: {run}")
    built = app_runtime.current()
    assert built is not None and first.at is not None
    completion_tokens = run["usage"]["completion_tokens"]
    return {
        "first_delta": seen_at - first.at,
        "answer_without_streaming": completed_at - first.at,
        "writes_per_1000_tokens": (built.events.appends - writes_before) / completion_tokens * 1000,
        "deltas": deltas,
        "tokens": completion_tokens,
    }


async def main(repeats: int, tokens: int, ms_per_token: float) -> None:
    seconds = ms_per_token / 1000
    with start_azurite() as azurite, tempfile.TemporaryDirectory() as workdir:
        async with fake_openai(ScriptedBrain()) as model:
            os.environ.update(
                CONVERSATIONS_STORAGE=azurite.connection_string,
                AzureWebJobsStorage=azurite.connection_string,
                CONVERSATIONS_CONTAINER="bench-stream",
                AZURE_OPENAI_ENDPOINT=model.base_url,
                AZURE_OPENAI_DEPLOYMENT=TEST_DEPLOYMENT,
                AZURE_OPENAI_API_KEY=model.api_key or "",
                MODEL_TIMEOUT_SECONDS="300",
                MCP_SERVERS=json.dumps({"mcp_servers": []}),
                AGENT_HTTP_STREAMING="true",
            )
            os.environ.pop("OPENAI_BASE_URL", None)
            state = Path(workdir) / "durable.sqlite3"
            floors, runs = [], []
            async with (
                LocalHost(ROOT, port=0, state_path=state, apply_local_settings=False) as host,
                aiohttp.ClientSession() as http,
            ):
                for _ in range(repeats + 1):  # the first round warms everything up
                    floors.append(await transport_floor(model, tokens, seconds))
                    runs.append(await one_run(host, http, model, tokens, seconds))
                built = app_runtime.current()
                if built is not None:
                    await built.aclose()
    report(floors[1:], runs[1:], repeats, tokens, ms_per_token)


def report(
    floors: list[float], runs: list[dict[str, float]], repeats: int, tokens: int, ms: float
) -> None:
    def median(name: str) -> float:
        return statistics.median(run[name] for run in runs)

    floor, seen, whole = (
        statistics.median(floors),
        median("first_delta"),
        median("answer_without_streaming"),
    )
    writes = median("writes_per_1000_tokens")
    print(f"{tokens}-token answer, {ms:g} ms per token, median of {repeats} runs")
    print("first token -> client has it")
    print(f"  openai client on the model stream  {floor * 1000:9.1f} ms   (floor)")
    print(
        f"  SSE text_delta through the app     {seen * 1000:9.1f} ms   "
        f"{seen / floor:.1f}x the floor"
    )
    print(
        f"  polling GET /runs (no streaming)   {whole * 1000:9.1f} ms   "
        f"the streamed delta arrives {whole / seen:.0f}x sooner"
    )
    print("event log Blob writes per 1,000 generated tokens")
    print(
        f"  {writes:9.1f}   (one write per token: 1000; {1000 / writes:.0f}x fewer); "
        f"text_delta events per run: {median('deltas'):.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--ms-per-token", type=float, default=10.0)
    logging.basicConfig(level=logging.WARNING)
    args = parser.parse_args()
    asyncio.run(main(args.repeats, args.tokens, args.ms_per_token))
