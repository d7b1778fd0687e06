"""The model client against a local Azure-OpenAI-shaped server, through the real openai client."""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import AsyncIterator

import pytest
from azure.core.exceptions import ClientAuthenticationError

from agent.errors import ContentFiltered, PermanentModelError, TransientModelError
from agent.model import AZURE_OPENAI_SCOPE, ModelClient, build_model_client
from devkit.fake_openai import (
    TEST_API_KEY,
    TEST_API_VERSION,
    TEST_DEPLOYMENT,
    FakeAsyncCredential,
    FakeOpenAI,
    fake_openai,
    model_settings,
)
from offline_model import ToolCallSpec
from offline_model.replies import azure_error, bad_request

USER = [{"role": "user", "content": "add 1 and 2, and tell the time"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "demo__add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "time__now", "parameters": {"type": "object", "properties": {}}},
    },
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(deployments=[TEST_DEPLOYMENT]) as server:
        yield server


@pytest.fixture
async def azure(fake: FakeOpenAI) -> AsyncIterator[ModelClient]:
    async with build_model_client(fake.azure_config()) as client:
        yield client


# --- Azure with an API key -------------------------------------------------------------------


async def test_an_azure_call_uses_the_deployment_path_api_version_and_api_key_header(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.answer("hello")

    await azure.complete(USER, [])

    (request,) = fake.chat_requests()
    assert request.path == f"/openai/deployments/{TEST_DEPLOYMENT}/chat/completions"
    assert request.query == {"api-version": TEST_API_VERSION}
    assert request.api_key == TEST_API_KEY
    assert request.bearer_token is None


async def test_tools_are_sent_with_parallel_tool_calls_and_the_calls_come_back_parsed(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.call_tools(
        ToolCallSpec("demo__add", '{"a": 1, "b": 2}', id="call_add"),
        ToolCallSpec("time__now", "{}", id="call_now"),
        prompt_tokens=120,
        completion_tokens=30,
    )

    reply = await azure.complete(USER, TOOLS)

    sent = fake.chat_requests()[0].body
    assert sent["tools"] == TOOLS
    assert sent["parallel_tool_calls"] is True
    assert sent["messages"] == USER
    assert sent["model"] == TEST_DEPLOYMENT
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_add", "demo__add", '{"a": 1, "b": 2}'),
        ("call_now", "time__now", "{}"),
    ]
    assert reply.finish_reason == "tool_calls"
    assert reply.content is None
    assert reply.usage == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    assert reply.model == "offline-model"


async def test_a_call_without_tools_sends_neither_tools_nor_parallel_tool_calls(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.answer("no tools needed")

    reply = await azure.complete(USER, [])

    sent = fake.chat_requests()[0].body
    assert "tools" not in sent
    assert "parallel_tool_calls" not in sent
    assert reply.content == "no tools needed"
    assert reply.finish_reason == "stop"
    assert reply.tool_calls == []


async def test_output_token_limit_and_temperature_are_sent_only_when_configured(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.answer("a").answer("b")

    await azure.complete(USER, [])
    async with build_model_client(
        fake.azure_config(max_output_tokens=256, temperature=0.2)
    ) as tuned:
        await tuned.complete(USER, [])

    default, configured = (r.body for r in fake.chat_requests())
    assert "max_completion_tokens" not in default
    assert "temperature" not in default
    assert configured["max_completion_tokens"] == 256
    assert configured["temperature"] == 0.2


async def test_a_runs_budget_caps_the_completion_below_the_configured_cap(
    fake: FakeOpenAI,
) -> None:
    fake.brain.answer("a").answer("b").answer("c")
    async with build_model_client(fake.azure_config(max_output_tokens=256)) as client:
        await client.complete(USER, [], max_output_tokens=40)
        await client.complete(USER, [], max_output_tokens=1_000)
        await client.complete(USER, [], max_output_tokens=0)

    caps = [r.body["max_completion_tokens"] for r in fake.chat_requests()]
    assert caps == [40, 256, 1]


async def test_a_reply_cut_by_the_length_limit_is_returned_as_is(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.answer("the answer was cut", finish_reason="length")

    reply = await azure.complete(USER, [])

    assert reply.finish_reason == "length"
    assert reply.content == "the answer was cut"


async def test_the_assistant_message_of_a_reply_is_in_chat_completions_shape(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.call_tools(ToolCallSpec("time__now", "{}", id="call_1"))

    reply = await azure.complete(USER, TOOLS)

    assert reply.assistant_message() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "time__now", "arguments": "{}"},
            }
        ],
    }


# --- Azure with Microsoft Entra ID (managed identity) ------------------------------------------


async def test_without_an_api_key_azure_is_called_with_a_bearer_token_from_the_credential() -> None:
    credential = FakeAsyncCredential(token="token-from-entra")
    async with fake_openai(api_key=None, bearer_tokens=["token-from-entra"]) as fake:
        fake.brain.answer("hi")
        async with build_model_client(fake.azure_config(api_key=None), credential) as client:
            reply = await client.complete(USER, [])

    (request,) = fake.chat_requests()
    assert request.bearer_token == "token-from-entra"
    assert request.api_key is None
    assert credential.scopes_requested == [(AZURE_OPENAI_SCOPE,)]
    assert reply.content == "hi"
    assert not credential.closed  # injected, so the caller owns it


async def test_a_credential_that_cannot_get_a_token_is_a_permanent_error_before_any_request() -> (
    None
):
    class BrokenCredential(FakeAsyncCredential):
        async def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise ClientAuthenticationError("ManagedIdentityCredential: no identity assigned")

    async with (
        fake_openai(api_key=None) as fake,
        build_model_client(fake.azure_config(api_key=None), BrokenCredential()) as client,
    ):
        with pytest.raises(PermanentModelError, match="Entra ID token") as caught:
            await client.complete(USER, [])

    assert "ClientAuthenticationError" in str(caught.value)
    assert fake.requests == []


# --- OpenAI-compatible endpoints ---------------------------------------------------------------


async def test_an_openai_compatible_endpoint_gets_the_v1_path_model_name_and_bearer_key(
    fake: FakeOpenAI,
) -> None:
    fake.brain.answer("from a compatible server")
    async with build_model_client(fake.openai_config(model="llama3.2")) as client:
        reply = await client.complete(USER, TOOLS)

    (request,) = fake.chat_requests()
    assert request.path == "/v1/chat/completions"
    assert request.query == {}
    assert request.bearer_token == TEST_API_KEY
    assert request.api_key is None
    assert request.body["model"] == "llama3.2"
    assert request.body["parallel_tool_calls"] is True
    assert reply.content == "from a compatible server"
    assert reply.model == "llama3.2"


async def test_an_openai_compatible_endpoint_without_a_key_still_works() -> None:
    async with fake_openai(api_key=None) as fake:
        fake.brain.answer("ollama style")
        async with build_model_client(fake.openai_config(api_key=None)) as client:
            reply = await client.complete(USER, [])

    assert reply.content == "ollama style"


# --- failures: classified once, one HTTP attempt each ----------------------------------------


@pytest.mark.parametrize(
    ("retry_after_seconds", "retry_after_ms", "expected"),
    [(7, None, 7.0), (2, 1500, 1.5), (None, 250, 0.25)],
)
async def test_a_429_is_transient_with_the_wait_the_service_asked_for(
    fake: FakeOpenAI,
    azure: ModelClient,
    retry_after_seconds: int | None,
    retry_after_ms: int | None,
    expected: float,
) -> None:
    fake.brain.rate_limit(retry_after_seconds, retry_after_ms)

    with pytest.raises(TransientModelError) as caught:
        await azure.complete(USER, [])

    assert caught.value.retry_after == expected
    assert "429" in str(caught.value)
    assert len(fake.chat_requests()) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_is_transient_and_not_retried_by_the_client(
    fake: FakeOpenAI, azure: ModelClient, status: int
) -> None:
    fake.brain.fail(status)

    with pytest.raises(TransientModelError, match=str(status)) as caught:
        await azure.complete(USER, [])

    assert caught.value.retry_after is None
    assert len(fake.chat_requests()) == 1


async def test_a_model_slower_than_the_timeout_is_transient(fake: FakeOpenAI) -> None:
    fake.brain.delay(30)
    started = time.monotonic()

    async with build_model_client(fake.azure_config(timeout_seconds=0.3)) as client:
        with pytest.raises(TransientModelError, match="did not answer in time"):
            await client.complete(USER, [])

    assert time.monotonic() - started < 5
    assert len(fake.chat_requests()) == 1
    fake.server.release_delays()


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = model_settings(
        kind="azure",
        endpoint=f"http://127.0.0.1:{port}",
        model=TEST_DEPLOYMENT,
        api_version=TEST_API_VERSION,
        api_key=TEST_API_KEY,
        timeout_seconds=2.0,
    )

    async with build_model_client(closed) as client:
        with pytest.raises(TransientModelError, match="could not connect") as caught:
            await client.complete(USER, [])

    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_a_prompt_rejected_by_the_content_filter_is_content_filtered(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.filter_prompt(("hate", "violence"))

    with pytest.raises(ContentFiltered, match="prompt") as caught:
        await azure.complete(USER, [])

    assert "hate, violence" in str(caught.value)
    assert len(fake.chat_requests()) == 1


async def test_a_completion_cut_by_the_content_filter_is_content_filtered(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.filter_completion(("sexual",))

    with pytest.raises(ContentFiltered, match="completion") as caught:
        await azure.complete(USER, [])

    assert "sexual" in str(caught.value)
    assert len(fake.chat_requests()) == 1


async def test_wrong_credentials_are_permanent_and_the_message_carries_no_key(
    fake: FakeOpenAI,
) -> None:
    wrong_key = "wrong-key-5f1d2c3b4a"
    async with build_model_client(fake.azure_config(api_key=wrong_key)) as client:
        with pytest.raises(
            PermanentModelError, match=r"rejected the credentials \(401\)"
        ) as caught:
            await client.complete(USER, [])

    printed = "".join(traceback.format_exception(caught.value))
    assert wrong_key not in printed
    assert "api-key" not in printed.lower()
    assert len(fake.requests) == 1


async def test_an_unknown_deployment_is_permanent(fake: FakeOpenAI) -> None:
    async with build_model_client(fake.azure_config(deployment="no-such-model")) as client:
        with pytest.raises(PermanentModelError, match=r"not found \(404\)") as caught:
            await client.complete(USER, [])

    assert "deployment" in str(caught.value)
    assert len(fake.requests) == 1


async def test_another_bad_request_is_permanent_with_the_services_message(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.then(bad_request("Invalid 'messages[0].content': string too long.", "messages"))

    with pytest.raises(PermanentModelError) as caught:
        await azure.complete(USER, [])

    assert str(caught.value).startswith("bad request (400)")
    assert "Invalid 'messages[0].content': string too long." in str(caught.value)
    assert len(fake.chat_requests()) == 1


async def test_a_service_message_that_quotes_the_key_is_redacted(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.then(azure_error(400, "invalid_key", f"key {TEST_API_KEY} is malformed"))

    with pytest.raises(PermanentModelError) as caught:
        await azure.complete(USER, [])

    assert TEST_API_KEY not in str(caught.value)
    assert "[redacted]" in str(caught.value)


async def test_the_raised_error_does_not_chain_the_openai_exception_text(
    fake: FakeOpenAI, azure: ModelClient
) -> None:
    fake.brain.fail(503)

    with pytest.raises(TransientModelError) as caught:
        await azure.complete(USER, [])

    printed = "".join(traceback.format_exception(caught.value))
    assert "Error code: 503" not in printed  # openai's own str, which quotes the body
    assert caught.value.__context__ is not None  # still there for in-process debugging
