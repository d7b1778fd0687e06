"""`python -m offline_model`: the offline model a new user runs, as a real process."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from offline_model import LABEL

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def offline_url() -> AsyncIterator[str]:
    env = {k: v for k, v in os.environ.items() if k != "OFFLINE_MODEL_API_KEY"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "offline_model", "--port", "0", "--api-key", "local-key",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.search(r"listening on (http://\S+)", banner)
        assert match, banner
        yield match.group(1)
    finally:
        process.terminate()
        await process.wait()


async def test_the_offline_model_runs_as_a_module_and_answers_in_the_azure_shape(
    offline_url: str,
) -> None:
    url = f"{offline_url}/openai/deployments/offline/chat/completions?api-version=2024-10-21"
    body = {"messages": [{"role": "user", "content": "hello"}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers={"api-key": "local-key"}) as response:
            answer = await response.json()
        async with http.post(url, json=body, headers={"api-key": "other-key"}) as rejected:
            rejected_status = rejected.status

    assert answer["choices"][0]["message"]["content"].startswith(LABEL)
    assert rejected_status == 401
