"""End to end over HTTP on the local host: chat turns with tools on real MCP servers, the
transcript in Azurite, and the API's answers to good and bad requests."""

from __future__ import annotations

import json

from tests.e2e.conftest import App

THREE_TRANSPORTS = "\n".join(
    [
        "Please use three tools.",
        '/tool web__greet {"name": "Ada"}',
        '/tool sse__calculate {"operation": "multiply", "a": 6, "b": 7}',
        '/tool time__get_current_time {"timezone": "UTC"}',
    ]
)


async def test_a_turn_calls_tools_on_all_three_transports_and_answers(app: App):
    conversation = await app.new_conversation()
    status, body, _ = await app.send(conversation, THREE_TRANSPORTS, wait=30)
    assert status == 200, body
    assert body["status"] == "completed"
    assert "[offline model]" in body["answer"]
    assert "Ada" in body["answer"] and "42" in body["answer"]
    assert body["usage"]["total_tokens"] > 0

    status, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    assert status == 200
    roles = [m["role"] for m in transcript["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "tool", "assistant"]
    calls = transcript["messages"][1]["tool_calls"]
    assert [c["name"] for c in calls] == ["web__greet", "sse__calculate", "time__get_current_time"]
    results = {m["name"]: m for m in transcript["messages"][2:5]}
    assert not any(m["is_error"] for m in results.values())
    assert "Ada" in results["web__greet"]["content"]
    assert "42" in results["sse__calculate"]["content"]
    assert "UTC" in results["time__get_current_time"]["content"]
    assert transcript["active_run_id"] is None
    assert transcript["usage"]["total_tokens"] == body["usage"]["total_tokens"]


async def test_a_second_turn_sees_the_first(app: App):
    conversation = await app.new_conversation()
    await app.send(conversation, "my name is Grace", wait=30)
    before = len(app.model.chat_requests())
    status, body, _ = await app.send(conversation, "what did I say?", wait=30)
    assert status == 200 and body["status"] == "completed"
    [request] = app.model.chat_requests()[before:]
    sent = [m.get("content") for m in request.body["messages"]]
    assert "my name is Grace" in sent and "what did I say?" in sent
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    assert [m["role"] for m in transcript["messages"]] == ["user", "assistant"] * 2


async def test_without_waiting_a_turn_answers_202_with_our_status_url_only(app: App):
    conversation = await app.new_conversation()
    status, body, headers = await app.send(conversation, "hello")
    assert status == 202
    assert body["status_url"].endswith(f"/api/runs/{body['run_id']}")
    assert headers["Location"] == body["status_url"]
    # Durable's management URLs carry the system key: they must never reach a caller.
    assert "webhooks" not in json.dumps(body) and "code=" not in json.dumps(body)
    done = await app.run_until_done(body["run_id"])
    assert done["status"] == "completed" and "[offline model]" in done["answer"]


async def test_a_second_message_while_a_turn_runs_gets_409_then_cancel_unlocks(app: App):
    conversation = await app.new_conversation()
    app.model.brain.delay(60, then=None)
    status, first, _ = await app.send(conversation, "slow one")
    assert status == 202
    await app.model.server.wait_for_requests(1)  # the model call is in flight
    status, body, headers = await app.send(conversation, "impatient")
    assert status == 409
    assert headers["Content-Type"].startswith("application/problem+json")
    assert first["run_id"] in body["detail"]

    status, cancelled, _ = await app.call("POST", f"/runs/{first['run_id']}/cancel")
    assert status == 202 and cancelled["status"] == "cancelled"
    app.model.server.release_delays()
    assert (await app.run_until_done(first["run_id"]))["status"] == "cancelled"
    status, body, _ = await app.send(conversation, "next", wait=30)
    assert status == 200 and body["status"] == "completed"


async def test_a_tool_error_reaches_the_model_as_a_result_and_the_run_completes(app: App):
    conversation = await app.new_conversation()
    status, body, _ = await app.send(
        conversation, '/tool web__read_text_file {"filename": "../../etc/passwd"}', wait=30
    )
    assert status == 200 and body["status"] == "completed"
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    [result] = [m for m in transcript["messages"] if m["role"] == "tool"]
    assert result["is_error"] is True
    assert "'..' is not allowed" in result["content"] and "root:" not in result["content"]


async def test_a_filtered_completion_ends_the_run_as_content_filtered(app: App):
    conversation = await app.new_conversation()
    app.model.brain.filter_completion()
    status, body, _ = await app.send(conversation, "something bad", wait=30)
    assert status == 200
    assert body["status"] == "content_filtered"
    assert "content filter" in body["answer"]


async def test_durable_history_does_not_grow_with_message_size(app: App):
    client = app.durable_client()
    sizes = []
    for content in ("x" * 100, "y" * 50_000):
        conversation = await app.new_conversation()
        status, body, _ = await app.send(conversation, content, wait=30)
        assert status == 200 and body["status"] == "completed"
        status_record = await client.get_status(
            body["run_id"], show_history=True, show_history_output=True, show_input=True
        )
        history = json.dumps(status_record.historyEvents)
        assert content not in history
        sizes.append(len(history))
    # the same shape of turn: only ids and timestamps differ, whatever the message holds
    assert abs(sizes[1] - sizes[0]) < 200, sizes


async def test_another_caller_cannot_see_a_conversation_or_run(app: App):
    alice = {"x-ms-client-principal-id": "alice"}
    bob = {"x-ms-client-principal-id": "bob"}
    conversation = await app.new_conversation(**alice)
    status, body, _ = await app.send(conversation, "hi", wait=30, **alice)
    assert status == 200
    assert (await app.call("GET", f"/conversations/{conversation}", headers=bob))[0] == 404
    assert (await app.call("GET", f"/runs/{body['run_id']}", headers=bob))[0] == 404
    assert (await app.send(conversation, "hijack", **bob))[0] == 404
    assert (await app.call("GET", f"/conversations/{conversation}", headers=alice))[0] == 200


async def test_bad_requests_get_a_problem_with_a_detail_and_write_nothing(app: App):
    conversation = await app.new_conversation()
    messages = f"/conversations/{conversation}/messages"
    cases = [
        ("POST", messages, {"data": b"{not json"}, 400, "not valid JSON"),
        ("POST", messages, {"json": ["a list"]}, 400, "JSON object"),
        ("POST", messages, {"json": {}}, 400, "'content' is required"),
        ("POST", messages, {"json": {"content": "  "}}, 400, "'content' is required"),
        (
            "POST",
            messages,
            {"json": {"content": "hi", "wait_seconds": "soon"}},
            400,
            "wait_seconds",
        ),
        ("POST", messages, {"json": {"content": "x" * 60_001}}, 400, "limit"),
        ("POST", messages, {"data": b"x" * 70_000}, 413, "limit"),
        ("POST", "/conversations/nope/messages", {"json": {"content": "hi"}}, 404, "nope"),
        ("POST", "/conversations/bad%20id/messages", {"json": {"content": "hi"}}, 400, "id"),
        ("GET", "/conversations/unknown", {}, 404, "unknown"),
        ("GET", "/runs/unknown-run", {}, 404, "unknown-run"),
        ("POST", "/runs/unknown-run/cancel", {}, 404, "unknown-run"),
        ("POST", "/conversations", {"json": {"id": "../escape"}}, 400, "'id'"),
        ("POST", "/conversations", {"json": {"id": conversation}}, 409, "exists"),
    ]
    for method, path, kwargs, expected, detail in cases:
        status, body, headers = await app.call(method, path, **kwargs)
        assert status == expected, (path, kwargs, body)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert detail in body["detail"], (path, body)
        assert "Traceback" not in body["detail"]
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    assert transcript["messages"] == [] and transcript["turns"] == 0


async def test_health_answers_without_secrets(app: App):
    status, body, _ = await app.call("GET", "/health")
    assert status == 200 and body == {"status": "ok"}
