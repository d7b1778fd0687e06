"""The Scheduler's callback bodies, as the HTTP routes read them (`agent.http.callbacks`): the
request models validate, and a refusal names the field in the callbacks' own wording."""

from __future__ import annotations

import json

import pytest

from agent.errors import BadRequest
from agent.http.callbacks import parse_callback, parse_seed_callback
from agent.scheduling import CallbackItem

# --- parse_callback -----------------------------------------------------------------------


def test_a_batch_callback_parses_into_items():
    body = json.dumps(
        {
            "type": "conversations.due",
            "items": [
                {
                    "schedule_id": "s1",
                    "conversation_id": "c-1",
                    "content": "one",
                    "scheduled_time": "2025-01-01T00:00:00Z",
                },
                {"conversation_id": "c_2", "content": "two"},
            ],
            "extra": "ignored",
        }
    ).encode()
    assert parse_callback(body) == (
        CallbackItem("s1", "c-1", "one", "2025-01-01T00:00:00Z"),
        CallbackItem(None, "c_2", "two", None),
    )


def test_the_seeds_single_form_becomes_one_item():
    body = json.dumps({"conversationId": "abc123", "status": "due", "content": "hello"}).encode()
    assert parse_callback(body) == (CallbackItem(None, "abc123", "hello", None),)


def test_the_largest_allowed_batch_and_content_are_accepted():
    item = {"conversation_id": "c" * 64, "content": "x" * 32_000}
    body = json.dumps({"type": "conversations.due", "items": [item] * 1000}).encode()
    assert len(parse_callback(body)) == 1000


def batch(*items: object) -> dict[str, object]:
    return {"type": "conversations.due", "items": list(items)}


GOOD_ITEM = {"conversation_id": "c1", "content": "hi"}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe\xfa", "body is not UTF-8"),
        ([GOOD_ITEM], "body must be a JSON object"),
        ({"hello": "world"}, "body must be {"),
        (
            {"type": "conversations.cancelled", "items": [GOOD_ITEM]},
            "type must be 'conversations.due'",
        ),
        ({"type": "conversations.due"}, "items must be a non-empty list"),
        (batch(), "items must be a non-empty list"),
        (
            {"type": "conversations.due", "items": {"0": GOOD_ITEM}},
            "items must be a non-empty list",
        ),
        (batch(*[GOOD_ITEM] * 1001), "at most 1000"),
        (batch(GOOD_ITEM, "text"), "items[1] must be an object"),
        (batch({"conversation_id": "c1"}), "items[0].content must be a non-empty string"),
        (
            batch({"conversation_id": "c1", "content": "   "}),
            "items[0].content must be a non-empty string",
        ),
        (batch({"conversation_id": "c1", "content": 7}), "items[0].content"),
        (batch({"conversation_id": "c1", "content": "x" * 32_001}), "at most 32000 characters"),
        (batch({"content": "hi"}), "items[0].conversation_id must match"),
        (
            batch({"conversation_id": "../etc", "content": "hi"}),
            "items[0].conversation_id must match",
        ),
        (
            batch({"conversation_id": "c" * 65, "content": "hi"}),
            "items[0].conversation_id must match",
        ),
        (batch({**GOOD_ITEM, "schedule_id": 5}), "items[0].schedule_id must be a string"),
        (batch({**GOOD_ITEM, "scheduled_time": ""}), "items[0].scheduled_time must be a string"),
        ({"conversationId": "a b", "content": "hi"}, "conversationId must match"),
        ({"conversationId": "ab", "content": ""}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": "hi", "status": 3}, "status must be a string"),
    ],
)
def test_a_malformed_callback_is_a_bad_request_naming_the_problem(document: object, problem: str):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(BadRequest) as error:
        parse_callback(body)
    assert problem in error.value.detail


# --- parse_seed_callback (the unsigned route) ------------------------------------------------


def test_the_seeds_body_from_an_unsigned_sender_becomes_one_item():
    document = {"conversationId": "abc123", "status": "due", "content": "hello"}
    assert parse_seed_callback(document) == CallbackItem(None, "abc123", "hello", None)
    assert parse_seed_callback({"conversationId": "abc123", "content": "hi"}).content == "hi"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "'conversationId' is required"),
        ({"content": "hi", "status": "due"}, "'conversationId' is required"),
        ({"conversationId": "", "content": "hi"}, "conversationId must match"),
        ({"conversationId": "../x", "content": "hi"}, "conversationId must match"),
        ({"conversationId": "ab"}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": " \n"}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": ["hi"]}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": "hi", "status": {}}, "status must be a string"),
    ],
)
def test_a_bad_seed_body_is_a_bad_request_naming_the_field(document: dict, problem: str):
    with pytest.raises(BadRequest) as error:
        parse_seed_callback(document)
    assert problem in error.value.detail


# --- what the mutation run (scripts/mutants.sh) found untested ---------------------------------


@pytest.mark.parametrize("length", [1, 128])
def test_a_schedule_id_of_one_to_128_characters_is_accepted(length: int):
    body = json.dumps(batch({**GOOD_ITEM, "schedule_id": "s" * length})).encode()
    assert parse_callback(body)[0].schedule_id == "s" * length


def test_a_body_that_is_not_json_is_named_the_callback_body():
    with pytest.raises(BadRequest) as error:
        parse_callback(b"{not json")
    assert error.value.detail.startswith("the callback body is not valid JSON")


def test_a_body_of_neither_form_shows_both_forms_with_their_field_names():
    with pytest.raises(BadRequest) as error:
        parse_callback(json.dumps({"hello": "world"}).encode())
    assert '{"type": "conversations.due", "items": [...]}' in error.value.detail
    assert '{"conversationId": ..., "status": ..., "content": ...}' in error.value.detail


def test_a_seed_body_without_conversation_id_shows_the_form_to_send():
    with pytest.raises(BadRequest) as error:
        parse_seed_callback({"content": "hi"})
    assert '{"conversationId": ..., "status": ..., "content": ...}' in error.value.detail
