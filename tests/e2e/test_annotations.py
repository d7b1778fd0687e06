"""What MCP tool annotations change, end to end: a tool its server calls destructive pauses the
run for approval (unless the server entry turns that off), a read-only one just runs, read-only
calls of one step run at the same time, and open-world output is marked so in what the model
reads. The tools are the helper MCP server's annotated ones (`tests/support/helper_mcp.py`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from agent.transcript import OPEN_WORLD_NOTE, UNTRUSTED_PREFIX
from tests.e2e.conftest import App
from tests.e2e.test_approvals import answer, tool_results, waiting_run


def tool_line(tool: str, **arguments: Any) -> str:
    return f"/tool {tool} {json.dumps(arguments)}"


async def finished_run(app: App, content: str) -> tuple[str, dict[str, Any]]:
    conversation = await app.new_conversation()
    status, body, _ = await app.send(conversation, content)
    assert status == 202, body
    return conversation, await app.run_until_done(body["run_id"])


async def call_ids_by_tool(app: App, conversation: str) -> dict[str, str]:
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    return {
        call["name"]: call["id"]
        for message in transcript["messages"]
        for call in message.get("tool_calls") or ()
    }


async def test_a_destructive_tool_pauses_the_run_for_approval_and_a_read_only_one_beside_it_does_not(
    app: App,
):
    key = uuid.uuid4().hex
    both = (
        tool_line("annotated__drop_key", key=key) + "\n" + tool_line("annotated__look_up", key=key)
    )
    conversation, run_id, run = await waiting_run(app, both)
    ids = await call_ids_by_tool(app, conversation)
    assert run["pending_approvals"] == [ids["annotated__drop_key"]]
    status, _, _ = await answer(app, run_id, ids["annotated__drop_key"], True)
    assert status == 202
    assert (await app.run_until_done(run_id))["status"] == "completed"
    results = await tool_results(app, conversation)
    assert results["annotated__drop_key"]["content"] == f"dropped {key}"
    assert not results["annotated__look_up"]["is_error"]


async def test_a_read_only_tool_runs_without_asking(app: App):
    key = uuid.uuid4().hex
    conversation, run = await finished_run(app, tool_line("annotated__look_up", key=key))
    assert run["status"] == "completed"
    # Had it waited for an approval nobody gives, it would read "nobody approved ...".
    result = (await tool_results(app, conversation))["annotated__look_up"]
    assert not result["is_error"] and result["content"] == f"{key} is kept"


async def test_a_destructive_tool_a_rejection_keeps_from_running_never_runs(app: App):
    key = uuid.uuid4().hex
    conversation, run_id, run = await waiting_run(app, tool_line("annotated__drop_key", key=key))
    [call_id] = run["pending_approvals"]
    assert (await answer(app, run_id, call_id, False))[0] == 202
    await app.run_until_done(run_id)
    checked, _ = await finished_run(app, tool_line("annotated__look_up", key=key))
    assert (await tool_results(app, checked))["annotated__look_up"]["content"] == f"{key} is kept"
    assert (await tool_results(app, conversation))["annotated__drop_key"]["is_error"]


async def test_a_server_entry_can_turn_the_destructive_question_off(app: App):
    key = uuid.uuid4().hex
    conversation, run = await finished_run(app, tool_line("unasked__drop_key", key=key))
    assert run["status"] == "completed"
    result = (await tool_results(app, conversation))["unasked__drop_key"]
    assert not result["is_error"] and result["content"] == f"dropped {key}"


async def test_read_only_calls_of_one_step_run_at_the_same_time(app: App):
    group = uuid.uuid4().hex
    meet = tool_line("annotated__meet", group=group, size=2)
    conversation, run = await finished_run(app, f"{meet}\n{meet}")
    assert run["status"] == "completed"
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    met = [m for m in transcript["messages"] if m["role"] == "tool"]
    assert [(m["is_error"], m["content"]) for m in met] == [(False, f"met 2 in {group}")] * 2


async def test_the_model_reads_open_world_output_as_from_outside_and_closed_world_output_plainly(
    app: App,
):
    topic, key = uuid.uuid4().hex, uuid.uuid4().hex
    both = tool_line("annotated__read_outside", topic=topic) + "\n"
    both += tool_line("annotated__look_up", key=key)
    _, run = await finished_run(app, both)
    assert run["status"] == "completed"
    [request] = [
        r.body
        for r in app.model.chat_requests()
        if any(topic in str(m.get("content")) for m in r.body["messages"] if m["role"] == "tool")
    ]
    seen = [m["content"] for m in request["messages"] if m["role"] == "tool"]
    [outside] = [text for text in seen if topic in text]
    [local] = [text for text in seen if key in text]
    assert OPEN_WORLD_NOTE in outside
    assert UNTRUSTED_PREFIX in local and OPEN_WORLD_NOTE not in local
