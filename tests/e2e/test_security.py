"""Secrets stay secret, callers stay apart, keys and limits hold — end to end."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from agent import runtime
from devkit.scheduler import API_KEY, WEBHOOK_SECRET
from tests.e2e.conftest import FUNCTION_KEY, App
from tests.e2e.test_scheduling import answered, due, schedule_by_model, schedule_tool_line, signed


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__}")


@contextmanager
def all_logs() -> Iterator[Collect]:
    handler, root = Collect(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextmanager
def settings_changed(**limits: int | bool) -> Iterator[None]:
    """Run with other settings (the runtime is process-wide; restored afterwards)."""
    rt = runtime.current()
    assert rt is not None
    require_auth = limits.pop("require_auth", rt.settings.require_auth)
    changed = replace(
        rt.settings, require_auth=require_auth, limits=replace(rt.settings.limits, **limits)
    )
    runtime.use_runtime(replace(rt, settings=changed))
    try:
        yield
    finally:
        runtime.use_runtime(rt)


async def test_no_secret_appears_in_responses_logs_or_durable_history(app: App):
    secrets = {
        "model API key": app.model.api_key,
        "webhook secret": WEBHOOK_SECRET.removeprefix("whsec_"),
        "scheduler API key": API_KEY,
        "function key": FUNCTION_KEY,
        "system key": app.host.system_key,
    }
    await app.call("GET", "/health")  # the runtime exists before we look
    app.exchanges.clear()
    with all_logs() as logs:
        conversation = await app.new_conversation()
        line = schedule_tool_line("secret check", 1)
        # scheduling waits for an approval (the default): approve it
        content = line + '\n/tool web__greet {"name": "x"}'
        body = await schedule_by_model(app, conversation, content)
        assert body["status"] == "completed"
        await answered(app, conversation, "secret check")
        headers, raw = signed(due((conversation, "and a callback")))
        assert (await app.call("POST", "/scheduler/callback", data=raw, headers=headers))[0] == 202
        await answered(app, conversation, "and a callback")
        _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
        for run_id in {m["run_id"] for m in transcript["messages"]}:
            await app.call("GET", f"/runs/{run_id}")
    client = app.durable_client()
    histories = []
    for run_id in {m["run_id"] for m in transcript["messages"]}:
        status = await client.get_status(
            run_id, show_history=True, show_history_output=True, show_input=True
        )
        histories.append(json.dumps([status.historyEvents, status.input_, status.output]))
    places = {
        "responses": "\n".join(app.exchanges),
        "logs": "\n".join(logs.lines),
        "history": "\n".join(histories),
    }
    assert logs.lines and histories and app.exchanges  # each place was really looked at
    for where, text in places.items():
        for name, value in secrets.items():
            assert value and value not in text, f"the {name} leaked into {where}"
    # and Durable's management URLs (they carry the system key) never reach a caller
    assert "durabletask" not in places["responses"]
    assert "webhooks" not in places["responses"]


async def test_chat_routes_need_the_function_key_and_health_does_not(app: App):
    status, _, _ = await app.call("POST", "/conversations", keyed=False)
    assert status == 401
    status, _, _ = await app.call(
        "POST", "/conversations", keyed=False, headers={"x-functions-key": "wrong"}
    )
    assert status == 401
    assert (await app.call("GET", "/health", keyed=False))[0] == 200


async def test_require_auth_refuses_anonymous_callers(app: App):
    user = {"x-ms-client-principal-id": "someone"}
    with settings_changed(require_auth=True):
        status, problem, _ = await app.call("POST", "/conversations")
        assert status == 401 and "authenticated" in problem["detail"]
        assert (await app.call("POST", "/conversations", headers=user))[0] == 201


@pytest.mark.parametrize("principal", ["not base64 json!", "eyJub3QiOiAiY2xvc2VkIg"])
async def test_a_malformed_principal_header_is_refused(app: App, principal: str):
    status, problem, _ = await app.call(
        "POST", "/conversations", headers={"x-ms-client-principal": principal}
    )
    assert status == 401 and "x-ms-client-principal" in problem["detail"]


async def test_a_conversation_over_its_token_budget_refuses_new_messages(app: App):
    conversation = await app.new_conversation()
    status, body, _ = await app.send(conversation, "use some tokens", wait=30)
    assert status == 200
    used = body["usage"]["total_tokens"]
    with settings_changed(max_tokens_per_conversation=used):
        status, problem, _ = await app.send(conversation, "more")
    assert status == 409
    assert f"{used} of {used} tokens" in problem["detail"]
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    assert len(transcript["messages"]) == 2  # nothing written for the refused message


async def test_a_run_ends_as_budget_exceeded_when_it_crosses_the_conversation_budget(app: App):
    conversation = await app.new_conversation()
    with settings_changed(max_tokens_per_conversation=1):
        status, body, _ = await app.send(conversation, '/tool web__greet {"name": "z"}', wait=30)
    assert status == 200
    assert body["status"] == "budget_exceeded"
    assert "token budget exceeded" in body["error"]


@contextmanager
def public_base_url(value: str | None) -> Iterator[None]:
    rt = runtime.current()
    assert rt is not None
    runtime.use_runtime(replace(rt, settings=replace(rt.settings, public_base_url=value)))
    try:
        yield
    finally:
        runtime.use_runtime(rt)


async def test_links_come_from_public_base_url_and_never_from_the_host_header(app: App):
    evil = {"Host": "evil.example"}
    status, created, headers = await app.call("POST", "/conversations", headers=evil)
    assert status == 201
    assert headers["Location"] == f"{app.host.base_url}/api/conversations/{created['id']}"
    status, accepted, headers = await app.send(created["id"], "hello", **evil)
    assert status == 202
    assert accepted["status_url"] == f"{app.host.base_url}/api/runs/{accepted['run_id']}"
    assert headers["Location"] == accepted["status_url"]
    await app.run_until_done(accepted["run_id"])


async def test_without_public_base_url_links_are_relative(app: App):
    with public_base_url(None):
        status, created, headers = await app.call(
            "POST", "/conversations", headers={"Host": "evil.example"}
        )
        assert status == 201
        assert headers["Location"] == f"/api/conversations/{created['id']}"
        status, accepted, headers = await app.send(created["id"], "hello")
    assert status == 202
    assert accepted["status_url"] == headers["Location"] == f"/api/runs/{accepted['run_id']}"
    await app.run_until_done(accepted["run_id"])


async def test_the_durable_management_api_is_closed_to_callers_holding_the_function_key(
    app: App,
):
    """Even a caller with the function key cannot list runs, read histories, answer approvals or
    start a chat_turn in someone else's name through the host's management API."""
    conversation = await app.new_conversation()
    status, accepted, _ = await app.send(conversation, "hello")
    assert status == 202
    run_id = accepted["run_id"]
    await app.run_until_done(run_id)
    turn = {"owner": "victim", "conversation_id": conversation, "run_id": "forged", "turn": 9}
    attempts = [
        ("GET", "instances/", None),
        ("GET", f"instances/{run_id}?showHistory=true&showHistoryOutput=true", None),
        ("POST", f"instances/{run_id}/raiseEvent/approval", {"approved": True}),
        ("POST", f"instances/{run_id}/terminate", None),
        ("DELETE", f"instances/{run_id}", None),
        ("POST", "orchestrators/chat_turn/forged", turn),
    ]
    for prefix in ("/durabletask/", "/runtime/webhooks/durabletask/"):
        for method, path, body in attempts:
            kwargs = {} if body is None else {"json": body}
            async with app.http.request(
                method,
                f"{app.host.base_url}{prefix}{path}",
                headers={"x-functions-key": FUNCTION_KEY},
                **kwargs,
            ) as response:
                assert response.status == 401, (prefix, method, path)
                assert run_id not in await response.text()
    assert app.host.runtime.get_instance("forged") is None
    assert app.host.runtime.get_instance(run_id) is not None  # not purged
