"""SIGKILL the local host while a run streams its answer, restart it on the same state, and
reconnect with Last-Event-ID: the stream completes, with no gap and no duplicate, and the
streamed text is the whole answer.

The host runs as a child process (`python -m local_host`); the model server and Azurite run
here, so they outlive the kill.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio

from devkit.azurite import AzuriteInstance
from devkit.fake_openai import FakeOpenAI, fake_openai
from local_host.testing import HostProcess
from offline_model import Completion, Paced
from offline_model.brains import OfflineBrain, ScriptedBrain
from tests.e2e.test_crash_recovery import host_env
from tests.e2e.test_run_events import answer_text, read_stream

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "This answer was cut off by a crash and still reads whole on the client. " * 6


@pytest_asyncio.fixture(scope="module")
async def model() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(ScriptedBrain(fallback=OfflineBrain())) as fake:
        yield fake


async def test_a_host_killed_mid_stream_resumes_and_the_reconnected_stream_completes_whole(
    azurite: AzuriteInstance, model: FakeOpenAI, tmp_path: Path
):
    env = host_env(azurite, model, "http://127.0.0.1:9/mcp")
    env.update(MCP_SERVERS=json.dumps({"mcp_servers": []}), AGENT_HTTP_STREAMING="true")
    # The first attempt streams a few pieces, then the model stalls (until released); the
    # attempt Durable runs again after the restart gets the same answer at once.
    model.brain.then(Paced(Completion(content=ANSWER), hold_after_chunks=12, hold_seconds=60))
    model.brain.answer(ANSWER)
    async with (
        HostProcess(ROOT, state_path=tmp_path / "durable.sqlite3", env=env) as host,
        aiohttp.ClientSession() as http,
    ):
        api = f"{host.base_url}/api"
        async with http.post(f"{api}/conversations") as created:
            conversation = (await created.json())["id"]
        async with http.post(
            f"{api}/conversations/{conversation}/messages", json={"content": "go on"}
        ) as sent:
            run_id = (await sent.json())["run_id"]
        _, before, ids = await read_stream(http, api, run_id, until="text_delta")
        assert before[-1]["type"] == "text_delta"

        host.kill()
        await host.wait_exit()
        model.server.release_delays()  # the cut-off stream ends, into a dead connection
        await host.start()
        api = f"{host.base_url}/api"  # a new process, maybe on another port

        status, after, _ = await read_stream(
            http, api, run_id, headers={"Last-Event-ID": ids[-1]}, within=60
        )
        assert status == 200
        events = before + after
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"
        assert answer_text(events, 1) == ANSWER == events[-1]["answer"]
        assert [e["type"] for e in events].count("step_started") == 1
        assert "text_reset" not in [e["type"] for e in events]  # continued, not restarted
        async with http.get(f"{api}/conversations/{conversation}") as read:
            messages = (await read.json())["messages"]
        assert messages[-1]["content"] == ANSWER
