"""ModelServer over HTTP: the Azure OpenAI REST shape, its errors, and the test hooks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from devkit.fake_openai import fake_openai
from offline_model import ModelServer, OfflineBrain, ScriptedBrain
from tests.offline_model.conftest import KEY

API_VERSION = "2024-10-21"
USER = {"messages": [{"role": "user", "content": "hi"}]}


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any = USER,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], Any]:
    async with http.post(url, json=body, headers=headers or {}) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, headers, await response.json()


def azure_url(
    server: ModelServer, deployment: str = "gpt-test", api_version: str = API_VERSION
) -> str:
    return f"{server.base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}"


# --- the Azure shape --------------------------------------------------------------------------


async def test_an_azure_completion_has_the_chat_completion_shape_with_filter_results(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    status, headers, body = await post(http, azure_url(server), headers={"api-key": KEY})

    assert status == 200
    assert set(body) >= {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "prompt_filter_results",
    }
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    assert choice["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert "apim-request-id" in headers


async def test_the_openai_shape_has_no_azure_filter_annotations_and_echoes_the_model(
    http: aiohttp.ClientSession,
) -> None:
    async with ModelServer(OfflineBrain()) as open_server:
        status, _, body = await post(
            http, f"{open_server.openai_base_url}/chat/completions", {**USER, "model": "llama3"}
        )

    assert status == 200
    assert body["model"] == "llama3"
    assert "prompt_filter_results" not in body
    assert "content_filter_results" not in body["choices"][0]


async def test_a_request_without_api_version_gets_azures_404(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.base_url}/openai/deployments/gpt-test/chat/completions"

    status, _, body = await post(http, url, headers={"api-key": KEY})

    assert status == 404
    assert body == {"error": {"code": "404", "message": "Resource not found"}}


@pytest.mark.parametrize(
    "headers",
    [{}, {"api-key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}],
)
async def test_missing_or_wrong_credentials_get_azures_401(
    server: ModelServer, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, _, body = await post(http, azure_url(server), headers=headers)

    assert status == 401
    assert body["error"]["code"] == "401"
    assert "Access denied" in body["error"]["message"]


async def test_only_the_configured_bearer_tokens_are_accepted(http: aiohttp.ClientSession) -> None:
    async with ModelServer(OfflineBrain(), bearer_tokens=["good-token"]) as entra:
        good, _, _ = await post(
            http, azure_url(entra), headers={"Authorization": "Bearer good-token"}
        )
        bad, _, _ = await post(http, azure_url(entra), headers={"Authorization": "Bearer other"})

    assert (good, bad) == (200, 401)


async def test_an_unknown_deployment_gets_deployment_not_found(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    status, _, body = await post(http, azure_url(server, "nope"), headers={"api-key": KEY})

    assert status == 404
    assert body["error"]["code"] == "DeploymentNotFound"


async def test_an_unknown_path_gets_a_json_404(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    status, _, body = await post(http, f"{server.base_url}/openai/embeddings?api-version=x")

    assert status == 404
    assert body["error"]["message"] == "Resource not found"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": []}, "empty array"),
        ({}, "Missing required parameter: 'messages'"),
        ({**USER, "parallel_tool_calls": True}, "only allowed when 'tools' are specified"),
        (
            {**USER, "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "does not match pattern",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "c1", "content": "r"},
                ]
            },
            "must be a response to a preceeding message",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "t", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "user", "content": "y"},
                ]
            },
            "did not have response messages: c1",
        ),
    ],
)
async def test_requests_the_real_service_rejects_are_rejected_with_its_400(
    server: ModelServer, http: aiohttp.ClientSession, body: dict[str, Any], fragment: str
) -> None:
    status, _, answer = await post(http, azure_url(server), body, headers={"api-key": KEY})

    assert status == 400
    assert fragment in answer["error"]["message"]
    assert answer["error"]["type"] == "invalid_request_error"


async def test_the_openai_path_requires_a_model(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    status, _, body = await post(
        http,
        f"{server.base_url}/openai/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
    )

    assert status == 400
    assert body["error"]["param"] == "model"


# --- scripted errors and test hooks ---------------------------------------------------------


async def test_a_scripted_429_carries_both_retry_after_headers(http: aiohttp.ClientSession) -> None:
    async with fake_openai(ScriptedBrain().rate_limit(4, 3500), api_key=None) as fake:
        status, headers, body = await post(http, azure_url(fake.server), headers={"api-key": "any"})

    assert status == 429
    assert headers["retry-after"] == "4"
    assert headers["retry-after-ms"] == "3500"
    assert body["error"]["code"] == "429"


async def test_every_request_is_recorded_with_its_headers_even_when_rejected(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    await post(http, azure_url(server), headers={"api-key": "wrong"})
    await post(http, azure_url(server), headers={"api-key": KEY})

    assert [r.api_key for r in server.requests] == ["wrong", KEY]
    assert server.requests[1].body == USER
    assert server.requests[1].query == {"api-version": API_VERSION}


async def test_a_delayed_reply_is_answered_at_once_when_released(
    http: aiohttp.ClientSession,
) -> None:
    async with fake_openai(ScriptedBrain().delay(60), api_key=None) as fake:
        started = time.monotonic()
        pending = asyncio.create_task(post(http, azure_url(fake.server), headers={"api-key": "k"}))
        await fake.server.wait_for_requests(1)
        fake.server.release_delays()
        status, _, body = await pending

    assert status == 200
    assert body["choices"][0]["message"]["content"] == "late answer"
    assert time.monotonic() - started < 5


async def test_stopping_the_server_does_not_wait_for_a_delayed_reply(
    http: aiohttp.ClientSession,
) -> None:
    brain = ScriptedBrain().delay(60)
    server = ModelServer(brain)
    await server.start()
    pending = asyncio.create_task(post(http, azure_url(server), headers={"api-key": "k"}))
    await server.wait_for_requests(1)
    started = time.monotonic()

    await server.stop()

    assert time.monotonic() - started < 5
    status, _, _ = await pending
    assert status == 200


async def test_the_fixture_fails_a_test_whose_request_found_no_scripted_reply(
    http: aiohttp.ClientSession,
) -> None:
    with pytest.raises(AssertionError, match="found no scripted reply"):
        async with fake_openai(api_key=None) as fake:
            status, _, body = await post(http, azure_url(fake.server), headers={"api-key": "k"})
            assert (status, body["error"]["code"]) == (500, "ScriptExhausted")


async def test_the_fixture_reraises_an_exception_raised_by_the_brain(
    http: aiohttp.ClientSession,
) -> None:
    def broken(request: dict[str, Any]) -> Any:
        raise LookupError("brain bug")

    with pytest.raises(LookupError, match="brain bug"):
        async with fake_openai(broken, api_key=None) as fake:
            status, _, _ = await post(http, azure_url(fake.server), headers={"api-key": "k"})
            assert status == 500
