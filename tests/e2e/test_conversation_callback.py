"""The seeds' callback from senders that cannot sign: `POST /api/scheduler/conversation-callback`
with a function key, end to end on the local host."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from agent import runtime
from agent.http.callbacks import body_fingerprint, request_key
from agent.scheduling import IDEMPOTENCY_WINDOW
from local_host.testing import wait_until
from storage.idempotency import RequestKeys
from tests.e2e.conftest import App

ROUTE = "/scheduler/conversation-callback"
PROBLEM = "application/problem+json"


def seed_body(conversation: str, content: str, status: str = "due") -> dict[str, Any]:
    return {"conversationId": conversation, "status": status, "content": content}


async def delivered(app: App, reply: dict[str, Any], **headers: str) -> dict[str, Any]:
    """The delivery's batch item once its run has finished (the batch shows it from the start)."""
    assert reply["status_url"].endswith(f"/api/batches/{reply['batch_id']}")

    async def finished() -> dict[str, Any] | None:
        status, view, _ = await app.call("GET", f"/batches/{reply['batch_id']}", headers=headers)
        assert status == 200, view
        [item] = view["items"]
        return item if item["status"] not in ("pending", "running") else None

    return await wait_until(finished, within=30, message="the delivery's run finished")


async def user_turns(app: App, conversation: str, **headers: str) -> list[str]:
    _, body, _ = await app.call("GET", f"/conversations/{conversation}", headers=headers)
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


async def test_the_seeds_callback_with_a_function_key_starts_a_turn(app: App):
    conversation = await app.new_conversation()
    text = f"seed hello {uuid.uuid4().hex[:6]}"
    status, body, _ = await app.call("POST", ROUTE, json=seed_body(conversation, text))
    assert status == 200, body
    assert body["success"] is True and body["duplicate"] is False
    assert body["conversationId"] == conversation
    item = await delivered(app, body)
    assert item["status"] == "completed" and item["run_id"] == body["run_id"]
    run = await app.run_until_done(body["run_id"])
    assert run["status"] == "completed" and "[offline model]" in run["answer"]
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    [message] = [m for m in transcript["messages"] if m["content"] == text]
    assert message["origin"] == "scheduled_by_assistant"  # not traced to the owner


async def test_without_a_function_key_it_is_401_and_starts_nothing(app: App):
    conversation = await app.new_conversation()
    status, _, _ = await app.call(
        "POST", ROUTE, keyed=False, json=seed_body(conversation, "no key")
    )
    assert status == 401
    assert await user_turns(app, conversation) == []


async def test_repeats_with_the_same_idempotency_key_start_nothing_new(app: App):
    conversation = await app.new_conversation()
    key = {"Idempotency-Key": f"delivery-{uuid.uuid4().hex}"}
    body = seed_body(conversation, "keyed once")
    replies = await asyncio.gather(
        *(app.call("POST", ROUTE, json=body, headers=key) for _ in range(10))
    )
    assert [status for status, _, _ in replies] == [200] * 10
    assert sum(not reply["duplicate"] for _, reply, _ in replies) == 1
    assert len({reply["run_id"] for _, reply, _ in replies}) == 1
    await delivered(app, replies[0][1])
    status, late, _ = await app.call("POST", ROUTE, json=body, headers=key)  # after it ran
    assert status == 200 and late["duplicate"] is True
    assert late["run_id"] == replies[0][1]["run_id"]
    assert await user_turns(app, conversation) == ["keyed once"]


async def test_a_repeat_of_the_same_body_without_a_key_starts_nothing_new(app: App):
    conversation = await app.new_conversation()
    body = seed_body(conversation, "same body once")
    status, first, _ = await app.call("POST", ROUTE, json=body)
    assert status == 200 and first["duplicate"] is False
    await delivered(app, first)
    # the same JSON, its keys in another order and spaced otherwise, is the same body
    again = json.dumps(dict(reversed(list(body.items()))), indent=2)
    status, repeat, _ = await app.call(
        "POST", ROUTE, data=again, headers={"content-type": "application/json"}
    )
    assert status == 200 and repeat["duplicate"] is True
    assert repeat["run_id"] == first["run_id"]
    assert await user_turns(app, conversation) == ["same body once"]
    # another text is another delivery
    status, other, _ = await app.call("POST", ROUTE, json=seed_body(conversation, "and another"))
    assert status == 200 and other["duplicate"] is False
    await delivered(app, other)
    assert await user_turns(app, conversation) == ["same body once", "and another"]


async def test_a_key_reused_for_another_body_is_a_409_and_starts_nothing(app: App):
    conversation = await app.new_conversation()
    key = {"Idempotency-Key": f"reused-{uuid.uuid4().hex}"}
    status, first, _ = await app.call(
        "POST", ROUTE, json=seed_body(conversation, "first use"), headers=key
    )
    assert status == 200
    await delivered(app, first)
    status, refused, _ = await app.call(
        "POST", ROUTE, json=seed_body(conversation, "second use"), headers=key
    )
    assert status == 409 and refused["success"] is False
    assert "Idempotency-Key" in refused["error"]
    assert await user_turns(app, conversation) == ["first use"]


async def test_callers_are_kept_apart_their_conversations_and_their_keys(app: App):
    alice, bob = {"x-ms-client-principal-id": "alice-cb"}, {"x-ms-client-principal-id": "bob-cb"}
    alices, bobs = await app.new_conversation(**alice), await app.new_conversation(**bob)
    key = f"shared-{uuid.uuid4().hex}"
    status, refused, _ = await app.call(
        "POST", ROUTE, json=seed_body(alices, "not bob's"), headers=bob
    )
    assert status == 404 and refused["success"] is False
    assert await user_turns(app, alices, **alice) == []
    # one key, two callers, each their own conversation: two deliveries
    for caller, conversation in ((alice, alices), (bob, bobs)):
        status, body, _ = await app.call(
            "POST",
            ROUTE,
            json=seed_body(conversation, "mine"),
            headers={**caller, "Idempotency-Key": key},
        )
        assert status == 200 and body["duplicate"] is False, body
        assert (await delivered(app, body, **caller))["status"] == "completed"
    assert await user_turns(app, alices, **alice) == ["mine"]
    assert await user_turns(app, bobs, **bob) == ["mine"]


async def test_bad_requests_get_the_seeds_error_shape_with_a_4xx_and_start_nothing(app: App):
    conversation = await app.new_conversation()
    json_type = {"content-type": "application/json"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("{not json", json_type, 400, "not valid JSON"),
        ("", json_type, 400, "empty"),
        ("[]", json_type, 400, "JSON object"),
        (json.dumps({"content": "hi", "status": "due"}), json_type, 400, "conversationId"),
        (json.dumps(seed_body(conversation, "")), json_type, 400, "content"),
        (json.dumps(seed_body("../etc", "hi")), json_type, 400, "conversationId"),
        (json.dumps(seed_body(conversation, "hi", status=7)), json_type, 400, "status"),  # type: ignore[arg-type]
        (json.dumps(seed_body("no-such-conversation", "hi")), json_type, 404, "no-such"),
        (
            json.dumps(seed_body(conversation, "hi")),
            {**json_type, "Idempotency-Key": "k" * 256},
            400,
            "Idempotency-Key",
        ),
        (json.dumps(seed_body(conversation, "x" * 32_001)), json_type, 400, "32000"),
        (json.dumps(seed_body(conversation, "x" * 600_000)), json_type, 413, "limit"),
    ]
    for data, headers, expected, detail in cases:
        status, body, answered = await app.call("POST", ROUTE, data=data, headers=headers)
        assert status == expected, (data[:80], body)
        assert answered["Content-Type"].startswith(PROBLEM), data[:80]
        assert body["success"] is False and detail in body["error"], (data[:80], body)
        assert body["error"] == body["detail"]
    assert await user_turns(app, conversation) == []


async def test_a_retry_that_starts_what_a_failed_first_attempt_claimed_is_not_a_duplicate(
    app: App,
):
    caller = {"x-ms-client-principal-id": "retry-cb"}
    conversation = await app.new_conversation(**caller)
    body = seed_body(conversation, "claimed, then the first attempt died")
    key = f"retry-{uuid.uuid4().hex}"
    # The first attempt claimed its key and stopped before it started anything.
    rt = runtime.current()
    assert rt is not None
    fingerprint = body_fingerprint(body)
    claimed = await RequestKeys(rt.container, IDEMPOTENCY_WINDOW).claim(
        request_key("user:retry-cb", key, fingerprint), fingerprint, datetime.now(UTC)
    )
    assert claimed.first
    status, retry, _ = await app.call(
        "POST", ROUTE, json=body, headers={**caller, "Idempotency-Key": key}
    )
    assert status == 200 and retry["batch_id"] == claimed.batch_id
    assert retry["duplicate"] is False  # this request started the delivery
    assert (await delivered(app, retry, **caller))["status"] == "completed"
    status, again, _ = await app.call(
        "POST", ROUTE, json=body, headers={**caller, "Idempotency-Key": key}
    )
    assert status == 200 and again["duplicate"] is True


async def test_a_repeat_dropped_as_a_duplicate_is_logged_with_ids_and_no_content(
    app: App, caplog: pytest.LogCaptureFixture
):
    conversation = await app.new_conversation()
    text = f"twice on purpose {uuid.uuid4().hex}"
    status, first, _ = await app.call("POST", ROUTE, json=seed_body(conversation, text))
    assert status == 200 and first["duplicate"] is False
    await delivered(app, first)
    with caplog.at_level(logging.INFO, logger="agent.http.callbacks"):
        status, repeat, _ = await app.call("POST", ROUTE, json=seed_body(conversation, text))
    assert status == 200 and repeat["duplicate"] is True
    [record] = [r for r in caplog.records if "duplicate" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert (record.batch_id, record.conversation_id) == (first["batch_id"], conversation)
    assert record.deduplicated_by == "body"
    assert all(text not in str(value) for value in vars(record).values())
