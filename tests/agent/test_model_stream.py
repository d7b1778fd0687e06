"""The model client's streaming API against the local model server (chat.completion.chunk events,
as Azure OpenAI streams them), through the real openai client: the reply is the one a whole
completion gives, text arrives piece by piece, and failures keep their classification."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.errors import ContentFiltered, PermanentModelError, TransientModelError
from agent.model import ModelClient, build_model_client
from agent.model_stream import collect, stream
from devkit.fake_openai import FakeOpenAI, fake_openai
from offline_model import Completion, Paced, ToolCallSpec

USER = [{"role": "user", "content": "hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "demo__add", "parameters": {"type": "object", "properties": {}}},
    }
]
ANSWER = "A streamed answer, long enough to arrive in many small pieces."


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as server:
        yield server


@pytest.fixture(params=["azure", "openai"])
async def client(request: pytest.FixtureRequest, fake: FakeOpenAI) -> AsyncIterator[ModelClient]:
    config = fake.azure_config() if request.param == "azure" else fake.openai_config()
    async with build_model_client(config) as built:
        yield built


async def test_streamed_text_arrives_in_pieces_that_make_the_whole_answer(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.answer(ANSWER)
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    reply = await stream(client, USER, TOOLS, on_text=on_text)
    assert reply.content == ANSWER
    assert "".join(pieces) == ANSWER and len(pieces) > 5
    assert reply.finish_reason == "stop"
    assert reply.usage["total_tokens"] > 0  # stream_options.include_usage
    sent = fake.chat_requests()[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_streamed_tool_calls_are_assembled_from_their_pieces(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.call_tools(
        ToolCallSpec("demo__add", '{"a": 1, "b": 2, "note": "long enough to split"}', "call_a"),
        ToolCallSpec("demo__add", '{"a": 3, "b": 4}', "call_b"),
    )
    reply = await stream(client, USER, TOOLS)
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_a", "demo__add", '{"a": 1, "b": 2, "note": "long enough to split"}'),
        ("call_b", "demo__add", '{"a": 3, "b": 4}'),
    ]
    assert reply.content is None and reply.finish_reason == "tool_calls"


async def test_a_filtered_streamed_completion_is_content_filtered(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.filter_completion(("violence",))
    with pytest.raises(ContentFiltered):
        await stream(client, USER, TOOLS)


async def test_a_filtered_prompt_is_content_filtered_before_any_stream(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.filter_prompt()
    with pytest.raises(ContentFiltered):
        await stream(client, USER, TOOLS)


async def test_a_rate_limited_stream_request_carries_its_retry_after(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.rate_limit(retry_after_seconds=7)
    with pytest.raises(TransientModelError) as raised:
        await stream(client, USER, TOOLS)
    assert raised.value.retry_after == 7


async def test_a_bad_streamed_request_is_permanent(fake: FakeOpenAI, client: ModelClient):
    fake.brain.fail(400)
    with pytest.raises(PermanentModelError):
        await stream(client, USER, TOOLS)


async def test_a_stream_cut_off_midway_is_transient(fake: FakeOpenAI, client: ModelClient):
    fake.brain.then(Paced(Completion(content=ANSWER), drop_after_chunks=5))
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    with pytest.raises(TransientModelError):
        await stream(client, USER, TOOLS, on_text=on_text)
    assert pieces  # it broke off after some text had arrived


async def _chunks(*items: object) -> AsyncIterator[object]:
    for item in items:
        yield item


def _tool_chunk(*pieces: dict[str, object], finish: str | None = None) -> dict[str, object]:
    delta = {"tool_calls": list(pieces)}
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_streamed_tool_calls_without_an_index_are_read_one_call_per_id() -> None:
    # Gemini's OpenAI-compatible stream leaves `index` out: each call whole, or its pieces in order.
    reply = await collect(
        _chunks(
            _tool_chunk(
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x"'}}
            ),
            _tool_chunk({"function": {"arguments": ": 1}"}}),
            _tool_chunk(
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                finish="tool_calls",
            ),
        ),
        "svc",
        None,
    )
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("c1", "a", '{"x": 1}'),
        ("c2", "b", "{}"),
    ]


async def test_a_chunk_that_is_not_an_object_says_nothing_and_the_stream_reads_on() -> None:
    text = {
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    reply = await collect(_chunks(None, "noise", text), "svc", None)
    assert reply.content == "hi"
