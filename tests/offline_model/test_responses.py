"""ModelServer's Azure v1 and Responses routes over HTTP: where each is served, the events a
streamed response arrives in, and bodies checked against the openai package's request types."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from offline_model import ModelServer
from offline_model.official import chat_body_problem, responses_body_problem
from tests.offline_model.conftest import KEY

HEADERS = {"api-key": KEY}
BODY = {"model": "gpt-test", "input": [{"role": "user", "content": "hi"}], "store": False}


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with http.post(url, json=body, headers=HEADERS if headers is None else headers) as r:
        return r.status, await r.text()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/openai/v1/responses", 200),
        ("/openai/responses?api-version=2025-04-01-preview", 200),
        ("/openai/responses", 404),  # legacy without its api-version: Azure's 404
        ("/openai/v1/responses?api-version=2025-04-01-preview", 400),  # v1 takes none
        ("/openai/v1/chat/completions", 200),
    ],
)
async def test_each_azure_url_shape_is_served_where_azure_serves_it(
    server: ModelServer, http: aiohttp.ClientSession, path: str, status: int
) -> None:
    body = BODY if "responses" in path else {"model": "gpt-test", "messages": BODY["input"]}
    answered, _ = await post(http, server.base_url + path, body)
    assert answered == status


@pytest.mark.parametrize(
    "path", ["/openai/v1/responses", "/openai/responses?api-version=2025-04-01-preview"]
)
async def test_the_responses_routes_need_a_credential_and_a_known_deployment(
    server: ModelServer, http: aiohttp.ClientSession, path: str
) -> None:
    url = server.base_url + path
    assert (await post(http, url, BODY, headers={}))[0] == 401
    status, text = await post(http, url, {**BODY, "model": "other"})
    assert status == 404 and "DeploymentNotFound" in text


async def test_a_response_is_a_response_object_with_usage_in_input_and_output_tokens(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    status, text = await post(http, f"{server.base_url}/openai/v1/responses", BODY)
    response = json.loads(text)
    assert status == 200 and response["object"] == "response"
    assert response["status"] == "completed" and response["store"] is False
    [message] = response["output"]
    assert message["type"] == "message" and message["content"][0]["type"] == "output_text"
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


async def test_a_streamed_response_is_named_events_ending_with_the_whole_response(
    server: ModelServer, http: aiohttp.ClientSession
) -> None:
    status, text = await post(
        http, f"{server.base_url}/openai/v1/responses", {**BODY, "stream": True}
    )
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    names = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    assert status == 200 and "[DONE]" not in text  # chat completions' terminator only
    assert names == [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == events[-1]["response"]["output"][0]["content"][0]["text"]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({**BODY, "messages": []}, "unknown key 'messages'"),
        ({**BODY, "input": [{"role": "user", "content": "hi", "name": "x"}]}, "unknown key"),
        ({**BODY, "tools": [{"type": "function", "name": "f", "parameters": {}}]}, "'strict'"),
        ({**BODY, "store": "no"}, "body.store: expected a boolean"),
        ({k: v for k, v in BODY.items() if k != "model"}, "model parameter"),
        (
            {**BODY, "input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
            "must be a response to a preceeding message",
        ),
    ],
)
async def test_a_responses_body_the_service_would_refuse_is_a_400_saying_why(
    server: ModelServer, http: aiohttp.ClientSession, body: dict[str, Any], said: str
) -> None:
    status, text = await post(http, f"{server.base_url}/openai/v1/responses", body)
    assert status == 400
    assert said in json.loads(text)["error"]["message"]


def test_the_official_types_accept_what_our_client_sends_and_name_what_they_refuse() -> None:
    chat = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c", "type": "function",
                             "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "parallel_tool_calls": True,
        "max_completion_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    assert chat_body_problem(chat) is None
    leaked = {**chat, "messages": [{**chat["messages"][3], "reasoning_items": []}]}
    assert chat_body_problem(leaked) == "body.messages[0]: unknown key 'reasoning_items'"
    assert chat_body_problem({**chat, "stream": "yes"}) is not None
    responses = {
        **BODY,
        "input": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "r"},
        ],
        "include": ["reasoning.encrypted_content"],
    }
    assert responses_body_problem(responses) is None
    assert responses_body_problem({**responses, "include": ["everything"]}) is not None
