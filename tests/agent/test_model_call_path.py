"""The model client's own path through the openai client (#16: CPU per model call), pinned to
what the plain path gives. A chat request goes out as `chat.completions.create` would send it,
byte for byte (the body is posted without openai's per-call pass over the typed params): URL,
query, headers and the body's keys in order. A streamed answer, read from the chunks' JSON
rather than openai's typed chunks, is the reply the whole completion gives. Real openai
client, real local model server (which checks each body against the openai types)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from agent.model import ModelClient, build_model_client
from agent.model_stream import stream
from devkit.fake_openai import FakeOpenAI, fake_openai
from offline_model import ToolCallSpec
from offline_model.server import RecordedRequest

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "add 1 and 2, then tell me ✓"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "demo__add", "arguments": '{"a": 1, "b": 2}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "3"},
    {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "demo__add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }
]
# Each request has its own idempotency key (a fresh uuid): the one header that differs.
PER_REQUEST_HEADERS = {"idempotency-key"}
CONFIGS = {
    "azure-v1": lambda fake: fake.azure_config(azure_api="v1", temperature=0.2),
    "azure-legacy": lambda fake: fake.azure_config(max_output_tokens=200),
    "openai": lambda fake: fake.openai_config(),
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as server:
        yield server


@pytest.fixture(params=sorted(CONFIGS))
async def client(request: pytest.FixtureRequest, fake: FakeOpenAI) -> AsyncIterator[ModelClient]:
    async with build_model_client(CONFIGS[request.param](fake)) as built:
        yield built


async def _create(client: ModelClient, body: Mapping[str, Any]) -> None:
    """What the openai client's own `create` sends for `body` (read to its end)."""
    answer = await client._client.chat.completions.create(**body)
    if body.get("stream"):
        async for _ in answer:
            pass


def _sent(request: RecordedRequest) -> tuple[str, str, dict[str, str], str]:
    headers = {k: v for k, v in request.headers.items() if k not in PER_REQUEST_HEADERS}
    return request.path, json.dumps(dict(request.query)), headers, json.dumps(request.body)


@pytest.mark.parametrize("max_output_tokens", [None, 50])
async def test_a_streamed_chat_request_is_sent_as_create_sends_it(
    fake: FakeOpenAI, client: ModelClient, max_output_tokens: int | None
) -> None:
    fake.brain.answer("three")
    fake.brain.answer("three")
    await stream(client, MESSAGES, TOOLS, max_output_tokens=max_output_tokens)
    ours = fake.chat_requests()[-1]
    await _create(client, ours.body)
    assert _sent(fake.chat_requests()[-1]) == _sent(ours)


async def test_a_whole_chat_request_without_tools_is_sent_as_create_sends_it(
    fake: FakeOpenAI, client: ModelClient
) -> None:
    fake.brain.answer("three")
    fake.brain.answer("three")
    reply = await client.complete(MESSAGES, [])
    ours = fake.chat_requests()[-1]
    await _create(client, ours.body)
    assert _sent(fake.chat_requests()[-1]) == _sent(ours)
    assert reply.content == "three" and "tools" not in ours.body


@pytest.mark.parametrize("streamed_first", [True, False])
async def test_a_streamed_answer_reads_as_the_whole_completion_reads(
    fake: FakeOpenAI, client: ModelClient, streamed_first: bool
) -> None:
    """Text, tool calls (assembled from pieces), finish reason, usage and model alike; Azure's
    annotation chunk (no choices, no model) and its filter results on every choice included."""
    for _ in range(2):
        fake.brain.call_tools(
            ToolCallSpec("demo__add", '{"a": 1, "b": 2, "note": "long enough to split"}', "c1"),
            ToolCallSpec("demo__add", '{"a": 3, "b": 4}', "c2"),
            content="Adding both pairs now.",
        )
    if streamed_first:
        streamed = await stream(client, MESSAGES, TOOLS)
        whole = await client.complete(MESSAGES, TOOLS)
    else:
        whole = await client.complete(MESSAGES, TOOLS)
        streamed = await stream(client, MESSAGES, TOOLS)
    assert streamed == whole
    assert [c.id for c in streamed.tool_calls] == ["c1", "c2"]
    assert streamed.content == "Adding both pairs now." and streamed.usage["total_tokens"] > 0
