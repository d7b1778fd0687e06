"""The HTTP kit: the one mapping of exceptions to problem responses, and the `api` decorator
that resolves the runtime for a handler and answers whatever it raises as a problem."""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
import pytest

from agent import runtime
from agent.errors import (
    Conflict,
    InvalidSettings,
    NotFound,
    OperatorError,
    PayloadTooLarge,
    SettingsError,
)
from agent.http.kit import Call, api, error_response
from storage.errors import AlreadyExists, RecordNotFound


def body_of(response: func.HttpResponse) -> dict[str, Any]:
    assert response.mimetype == "application/problem+json"
    body = json.loads(response.get_body())
    assert body["status"] == response.status_code and body["detail"]
    return body


@pytest.mark.parametrize(
    ("error", "status", "title"),
    [
        (NotFound("no run r1"), 404, "Not Found"),
        (Conflict("busy"), 409, "Conflict"),
        (PayloadTooLarge("too big"), 413, "Payload Too Large"),
        (RecordNotFound("no conversation c1"), 404, "Not Found"),  # the store's, mapped here too
        (AlreadyExists("conversation c1 exists"), 409, "Conflict"),
    ],
)
def test_a_callers_error_is_its_own_problem_with_its_detail(
    error: Exception, status: int, title: str
) -> None:
    body = body_of(error_response(error, "handler"))
    assert (body["status"], body["title"], body["detail"]) == (status, title, str(error))


def test_bad_settings_are_a_503_naming_each_setting_never_a_value() -> None:
    invalid = InvalidSettings((SettingsError("OPENAI_MODEL", "is required"),))
    body = body_of(error_response(invalid, "handler"))
    assert body["status"] == 503 and body["invalid_settings"] == ["OPENAI_MODEL"]
    assert "setting OPENAI_MODEL: is required" in body["detail"]


def test_an_operator_error_is_a_503_with_its_message() -> None:
    body = body_of(error_response(OperatorError("PUBLIC_BASE_URL must be set"), "handler"))
    assert (body["status"], body["detail"]) == (503, "PUBLIC_BASE_URL must be set")


def test_an_unexpected_error_is_a_bare_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="agent.http"):
        body = body_of(error_response(KeyError("secret-ish internals"), "get_run"))
    assert body["status"] == 500 and "secret-ish" not in json.dumps(body)
    assert "unhandled error in get_run" in caplog.text and "KeyError" in caplog.text


async def test_api_hands_the_handler_the_runtime_and_answers_its_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Call] = []

    @api
    async def handler(call: Call, extra: str) -> func.HttpResponse:
        seen.append(call)
        raise NotFound(f"no {extra}")

    fake = object()

    async def fake_runtime() -> object:
        return fake

    monkeypatch.setattr("agent.http.kit.runtime", fake_runtime)
    request = func.HttpRequest("GET", "http://h/api/x", body=b"")
    response = await handler(request, "thing")
    assert body_of(response)["detail"] == "no thing" and response.status_code == 404
    assert seen[0].req is request and seen[0].rt is fake


async def test_api_answers_503_when_the_runtime_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @api
    async def handler(call: Call) -> func.HttpResponse:
        raise AssertionError("not reached: the runtime failed first")

    for name in ("CONVERSATIONS_STORAGE", "AzureWebJobsStorage", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    runtime.use_runtime(None)
    try:
        response = await handler(func.HttpRequest("GET", "http://h/api/x", body=b""))
    finally:
        runtime.use_runtime(None)
    assert response.status_code == 503 and body_of(response)["invalid_settings"]
