"""The HTTP request models: one source for validation and the document. A refusal is worded as
the API always worded it (never pydantic's text), types are strict, and whatever a model takes
the document's schema takes, and the other way round."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator

from agent.errors import BadRequest
from agent.http import models
from agent.http.callbacks import parse_callback
from agent.http.models import (
    ApprovalAnswer,
    NewConversation,
    NewMessage,
    ScheduleRequest,
    validated,
)
from agent.http.openapi import build_document
from agent.loop import RunStatus
from agent.settings import Settings

LIMITS = replace(
    Settings.from_env(
        {
            "CONVERSATIONS_STORAGE": "UseDevelopmentStorage=true",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_MODEL": "test-model",
        }
    ).limits,
    max_message_chars=10,
)
LATER = "2030-01-01T09:00:00Z"


def refusal(model: type[models.Body], document: Any) -> str:
    with pytest.raises(BadRequest) as error:
        validated(model, document, limits=LIMITS)
    return error.value.detail


@pytest.mark.parametrize(
    ("model", "document", "detail"),
    [
        (NewConversation, {"id": "../x"}, "'id' must be 1-64 letters, digits, '-' or '_'"),
        (NewConversation, {"id": 7}, "'id' must be 1-64 letters, digits, '-' or '_'"),
        (NewMessage, {}, "'content' is required and must be a non-empty string"),
        (NewMessage, {"content": " \n"}, "'content' is required and must be a non-empty string"),
        (NewMessage, {"content": ["hi"]}, "'content' is required and must be a non-empty string"),
        (NewMessage, {"content": "x" * 11}, "'content' is 11 characters; the limit is 10"),
        (NewMessage, {"content": "hi", "wait_seconds": -1}, "'wait_seconds' must be a non-"),
        (NewMessage, {"content": "hi", "wait_seconds": "2"}, "'wait_seconds' must be a non-"),
        (NewMessage, {"content": "hi", "wait_seconds": True}, "'wait_seconds' must be a non-"),
        (ApprovalAnswer, {"approved": True}, "'tool_call_id' is required: the id of a tool"),
        (ApprovalAnswer, {"tool_call_id": "c1"}, "'approved' is required and must be true or"),
        (ApprovalAnswer, {"tool_call_id": "c1", "approved": 1}, "'approved' is required and"),
        (
            ApprovalAnswer,
            {"tool_call_id": "c1", "approved": True, "question_id": 3},
            "'question_id', when given, must be a string: the run's question_id",
        ),
        (ScheduleRequest, {"items": []}, "'items' must be a list of 1 to 100 items"),
        (ScheduleRequest, {"items": [{"content": "x"}] * 101}, "'items' must be a list of 1 to"),
        (ScheduleRequest, {"items": ["x"]}, "items[0] must be an object"),
        (
            ScheduleRequest,
            {"items": [{"content": "x", "scheduled_time": LATER}, {"content": ""}]},
            "items[1].content is required and must be a non-empty string",
        ),
        (
            ScheduleRequest,
            {"items": [{"content": "x" * 11, "scheduled_time": LATER}]},
            "items[0].content is 11 characters; the limit is 10",
        ),
        (
            ScheduleRequest,
            {"items": [{"content": "x"}]},
            "items[0].scheduled_time is required (ISO 8601 with a timezone)",
        ),
        (
            ScheduleRequest,
            {"items": [{"content": "x", "scheduled_time": "tomorrow"}]},
            "items[0].scheduled_time is not an ISO 8601 date-time",
        ),
        (
            ScheduleRequest,
            {"items": [{"content": "x", "scheduled_time": "2030-01-01T09:00:00"}]},
            "items[0].scheduled_time needs a timezone",
        ),
        (
            ScheduleRequest,
            {"items": [{"content": "x", "scheduled_time": LATER, "conversation_id": "a/b"}]},
            "items[0].conversation_id must be 1-64 letters, digits, '-' or '_'",
        ),
    ],
)
def test_a_refusal_names_the_field_in_the_apis_own_words(
    model: type[models.Body], document: Any, detail: str
) -> None:
    said = refusal(model, document)
    assert said.startswith(detail), said
    assert "Input should" not in said and "validation error" not in said


def test_a_valid_body_becomes_its_model_with_its_defaults() -> None:
    message = validated(NewMessage, {"content": "hi", "extra": "ignored"}, limits=LIMITS)
    assert (message.content, message.wait_seconds) == ("hi", 0)
    schedule = validated(ScheduleRequest, {"items": [{"content": "x", "scheduled_time": LATER}]})
    assert schedule.items[0].scheduled_time.isoformat() == "2030-01-01T09:00:00+00:00"
    assert validated(NewConversation, {}).id is None


def test_the_run_statuses_are_the_loops_endings_after_the_active_ones() -> None:
    assert frozenset(get_args(RunStatus)) == models.TERMINAL
    assert (*models.ACTIVE, *get_args(RunStatus)) == models.RUN_STATUSES
    document = build_document(LIMITS)
    assert document["components"]["schemas"]["Run"]["properties"]["status"]["enum"] == list(
        models.RUN_STATUSES
    )


# --- the model and the document agree ------------------------------------------------------------

BODIES: dict[str, list[Any]] = {
    "NewConversation": [{}, {"id": None}, {"id": "c-1"}, {"id": ""}, {"id": "a b"}, {"id": 1}],
    "NewMessage": [
        {"content": "hi"},
        {"content": "hi", "wait_seconds": 2.5},
        {"content": "hi", "wait_seconds": 3},
        {"content": "x" * 10},
        {"content": "x" * 11},
        {"content": "\t"},
        {"content": ""},
        {"content": "hi", "wait_seconds": -0.5},
        {"content": "hi", "wait_seconds": False},
        {"content": "hi", "wait_seconds": None},
        {"wait_seconds": 1},
    ],
    "ApprovalAnswer": [
        {"tool_call_id": "c", "approved": False},
        {"tool_call_id": "c", "approved": True, "question_id": "q1"},
        {"tool_call_id": "c", "approved": True, "question_id": None},
        {"tool_call_id": "", "approved": True},
        {"tool_call_id": "c", "approved": "yes"},
        {"tool_call_id": 5, "approved": True},
    ],
    "ScheduleRequest": [
        {"items": [{"content": "x", "scheduled_time": LATER}]},
        {"items": [{"content": "x", "scheduled_time": LATER, "conversation_id": None}]},
        {"items": [{"content": "x", "scheduled_time": LATER, "conversation_id": "c_1"}]},
        {"items": [{"content": "x", "scheduled_time": LATER, "conversation_id": "c.1"}]},
        {"items": [{"content": "x", "scheduled_time": 5}]},
        {"items": [{"content": " ", "scheduled_time": LATER}]},
        {"items": []},
        {"items": "x"},
        {},
    ],
    "SeedCallback": [
        {"conversationId": "c1", "content": "hi"},
        {"conversationId": "c1", "content": "hi", "status": None},
        {"conversationId": "c1", "content": "hi", "status": "due"},
        {"conversationId": "c1", "content": "hi", "status": 3},
        {"conversationId": "c 1", "content": "hi"},
        {"conversationId": "c1", "content": "x" * 32_001},
        {"content": "hi"},
    ],
}


@pytest.mark.parametrize(
    ("name", "document"), [(name, body) for name, bodies in BODIES.items() for body in bodies]
)
def test_the_document_takes_a_body_exactly_when_its_model_does(name: str, document: Any) -> None:
    schemas = build_document(LIMITS)["components"]["schemas"]
    schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
    by_schema = Draft202012Validator(schema).is_valid(document)
    try:
        validated(getattr(models, name), document, limits=LIMITS)
        by_model = True
    except BadRequest:
        by_model = False
    assert by_schema == by_model, (name, document)


CALLBACKS: list[Any] = [
    {"type": "conversations.due", "items": [{"conversation_id": "c1", "content": "hi"}]},
    {"type": "conversations.due", "items": []},
    {"type": "conversations.cancelled", "items": [{"conversation_id": "c1", "content": "hi"}]},
    {"conversationId": "c1", "content": "hi"},
    {"conversationId": "c1", "content": "hi", "type": "conversations.due"},  # a batch, no items
    {"conversationId": "c1", "content": " "},
    {"hello": "world"},
]


@pytest.mark.parametrize("document", CALLBACKS)
def test_the_documented_callback_forms_are_the_ones_the_route_takes(document: Any) -> None:
    schemas = build_document(LIMITS)["components"]["schemas"]
    schema = {"$ref": "#/components/schemas/Callback", "components": {"schemas": schemas}}
    by_schema = Draft202012Validator(schema).is_valid(document)
    try:
        parse_callback(json.dumps(document).encode())
        by_route = True
    except BadRequest:
        by_route = False
    assert by_schema == by_route, document
