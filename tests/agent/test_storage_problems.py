"""The HTTP edge is the one place a storage error becomes a response (agent.http.kit)."""

from __future__ import annotations

import inspect
import json
import logging

import pytest

from agent.http.kit import storage_problem
from storage import errors
from storage.errors import StorageError, StorageNotConfigured, StoreContention

EXPECTED = {
    "InvalidKey": (400, "Bad Request"),
    "InvalidQuery": (400, "Bad Request"),
    "RecordNotFound": (404, "Not Found"),
    "AlreadyExists": (409, "Conflict"),
    "TurnInProgress": (409, "Conflict"),
    "RecordTooLarge": (413, "Payload Too Large"),
    "StorageNotConfigured": (503, "Service Unavailable"),
    "StoreContention": (503, "Service Unavailable"),
    "EventLogFull": (500, "Internal Server Error"),  # never from a route: activities write logs
}


def _storage_errors() -> list[type[StorageError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, StorageError) and cls is not StorageError
    ]


def test_every_storage_error_has_a_decided_status() -> None:
    assert sorted(cls.__name__ for cls in _storage_errors()) == sorted(EXPECTED)


@pytest.mark.parametrize("kind", _storage_errors(), ids=lambda cls: cls.__name__)
def test_a_storage_error_becomes_its_problem_with_the_stores_message(
    kind: type[StorageError],
) -> None:
    exc = kind("SETTING", "is wrong") if kind is StorageNotConfigured else kind("conversation c1")
    response = storage_problem(exc, "handler")
    body = json.loads(response.get_body())
    status, title = EXPECTED[kind.__name__]
    assert (response.status_code, body["status"], body["title"]) == (status, status, title)
    assert response.mimetype == "application/problem+json"
    if status != 500:
        assert body["detail"].startswith(str(exc))


def test_contention_is_a_503_that_asks_the_caller_to_retry_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.http"):
        response = storage_problem(StoreContention("could not append to c1"), "send_message")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert json.loads(response.get_body())["detail"] == (
        "could not append to c1; the store is busy, retry shortly"
    )
    assert "send_message" in caplog.text
