"""The offline model end to end: the app's model client talking to `OfflineBrain` over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from agent.model import ModelClient, build_model_client
from devkit.fake_openai import FakeOpenAI, fake_openai
from offline_model import LABEL, OfflineBrain

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "demo__add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
    {"type": "function", "function": {"name": "time__now", "parameters": {"type": "object"}}},
]


@pytest.fixture
async def offline() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(OfflineBrain()) as server:
        yield server


@pytest.fixture(params=[("legacy", "chat"), ("v1", "chat"), ("v1", "responses")],
                ids=["legacy-chat", "v1-chat", "v1-responses"])  # fmt: skip
async def client(offline: FakeOpenAI, request: pytest.FixtureRequest) -> AsyncIterator[ModelClient]:
    """The offline model serves every API the app speaks (scripts/run.sh may pick any)."""
    api, model_api = request.param
    config = offline.azure_config(azure_api=api, model_api=model_api)
    async with build_model_client(config) as model:
        yield model


async def test_a_tool_loop_runs_against_the_offline_model(client: ModelClient) -> None:
    messages = [
        {"role": "user", "content": '/tool demo__add {"a": 1, "b": 2}\n/tool time__now'},
    ]

    proposed = await client.complete(messages, TOOLS)

    assert [(c.name, json.loads(c.arguments)) for c in proposed.tool_calls] == [
        ("demo__add", {"a": 1, "b": 2}),
        ("time__now", {}),
    ]
    assert proposed.finish_reason == "tool_calls"
    assert proposed.usage["prompt_tokens"] > 0
    messages.append(proposed.assistant_message())
    messages += [
        {"role": "tool", "tool_call_id": proposed.tool_calls[0].id, "content": "3"},
        {"role": "tool", "tool_call_id": proposed.tool_calls[1].id, "content": "12:00 UTC"},
    ]

    final = await client.complete(messages, TOOLS)

    assert final.content is not None
    assert final.content.startswith(LABEL)
    assert "- demo__add: 3" in final.content
    assert "- time__now: 12:00 UTC" in final.content
    assert final.finish_reason == "stop"


async def test_the_same_request_gets_the_same_reply_from_the_offline_model(
    client: ModelClient,
) -> None:
    messages = [{"role": "user", "content": "/tool time__now"}]

    first = await client.complete(messages, TOOLS)
    second = await client.complete(messages, TOOLS)

    assert first == second


async def test_the_offline_model_explains_itself_over_the_openai_compatible_path(
    offline: FakeOpenAI,
) -> None:
    async with build_model_client(offline.openai_config(model="offline")) as model:
        reply = await model.complete([{"role": "user", "content": "hello"}], TOOLS)

    assert reply.content is not None
    assert reply.content.startswith(LABEL)
    assert "demo__add, time__now" in reply.content
    assert "/tool <name> <json-args>" in reply.content
