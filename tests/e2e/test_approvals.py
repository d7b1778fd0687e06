"""Tools that need approval pause the run until the caller answers, end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import runtime
from agent.errors import Conflict
from agent.http.callers import ANONYMOUS
from agent.http.runs import raise_approval
from local_host.testing import wait_until
from tests.e2e.conftest import App

WRITE = '/tool guarded__save_text_file {"filename": "approved.txt", "content": "hello"}'
BOTH = WRITE + '\n/tool guarded__greet {"name": "Ada"}'


async def waiting_run(app: App, content: str, **headers: str) -> tuple[str, str, dict[str, Any]]:
    conversation = await app.new_conversation(**headers)
    status, body, _ = await app.send(conversation, content, **headers)
    assert status == 202

    async def waiting() -> dict[str, Any] | None:
        _, run, _ = await app.call("GET", f"/runs/{body['run_id']}", headers=headers)
        return run if run["status"] == "waiting_for_approval" else None

    run = await wait_until(waiting, within=20, message="waiting for approval")
    return conversation, body["run_id"], run


async def tool_results(app: App, conversation: str) -> dict[str, dict[str, Any]]:
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    return {m["name"]: m for m in transcript["messages"] if m["role"] == "tool"}


async def answer(app: App, run_id: str, call_id: str, approved: Any, **headers: str):
    return await app.call(
        "POST",
        f"/runs/{run_id}/approvals",
        json={"tool_call_id": call_id, "approved": approved},
        headers=headers,
    )


async def test_an_approved_call_runs(app: App):
    conversation, run_id, run = await waiting_run(app, BOTH)
    [call_id] = run["pending_approvals"]
    status, body, _ = await answer(app, run_id, call_id, True)
    assert status == 202 and body["approved"] is True
    assert (await app.run_until_done(run_id))["status"] == "completed"
    results = await tool_results(app, conversation)
    assert not results["guarded__save_text_file"]["is_error"]
    assert "Successfully saved 5 bytes" in results["guarded__save_text_file"]["content"]
    assert "Ada" in results["guarded__greet"]["content"]  # no approval needed: it just ran


async def test_a_rejected_call_never_runs_and_the_model_is_told(app: App):
    conversation, run_id, run = await waiting_run(app, WRITE)
    [call_id] = run["pending_approvals"]
    assert (await answer(app, run_id, call_id, False))[0] == 202
    done = await app.run_until_done(run_id)
    assert done["status"] == "completed"
    result = (await tool_results(app, conversation))["guarded__save_text_file"]
    assert result["is_error"] and "rejected" in result["content"]
    assert "rejected" in done["answer"]  # the offline model quotes what the tool said


async def test_no_answer_in_time_counts_as_rejected(app: App):
    conversation, run_id, _ = await waiting_run(app, WRITE)
    done = await app.run_until_done(run_id, within=30)  # AGENT_APPROVAL_TIMEOUT_SECONDS=3
    assert done["status"] == "completed"
    result = (await tool_results(app, conversation))["guarded__save_text_file"]
    assert result["is_error"] and "nobody approved" in result["content"]


async def test_bad_approval_answers_are_refused(app: App):
    alice = {"x-ms-client-principal-id": "alice-approver"}
    _, run_id, run = await waiting_run(app, WRITE, **alice)
    [call_id] = run["pending_approvals"]
    cases = [
        ({"tool_call_id": call_id, "approved": "yes"}, alice, 400, "'approved'"),
        ({"approved": True}, alice, 400, "'tool_call_id'"),
        ({"tool_call_id": "call_unknown", "approved": True}, alice, 404, "call_unknown"),
        (
            {"tool_call_id": call_id, "approved": True},
            {"x-ms-client-principal-id": "eve"},
            404,
            run_id,
        ),
    ]
    for body, headers, expected, detail in cases:
        status, problem, _ = await app.call(
            "POST", f"/runs/{run_id}/approvals", data=json.dumps(body), headers=headers
        )
        assert status == expected, (body, problem)
        assert detail in problem["detail"]
    assert (await answer(app, run_id, call_id, True, **alice))[0] == 202
    await app.run_until_done(run_id, **alice)
    status, problem, _ = await answer(app, run_id, call_id, True, **alice)
    assert status == 409 and "not waiting" in problem["detail"]


async def test_a_run_cancelled_while_it_waits_for_approval_is_cancelled_everywhere(app: App):
    conversation, run_id, run = await waiting_run(app, WRITE)
    [call_id] = run["pending_approvals"]

    status, body, _ = await app.call("POST", f"/runs/{run_id}/cancel")
    assert status == 202 and body["status"] == "cancelled"
    status, view, _ = await app.call("GET", f"/runs/{run_id}")
    assert status == 200 and view["status"] == "cancelled"
    assert "pending_approvals" not in view

    status, problem, _ = await app.call("POST", f"/runs/{run_id}/cancel")
    assert status == 409 and "already finished (cancelled)" in problem["detail"]
    status, problem, _ = await answer(app, run_id, call_id, True)
    assert status == 409 and "not waiting for an approval (it is cancelled)" in problem["detail"]

    assert "guarded__save_text_file" not in await tool_results(app, conversation)
    status, _, _ = await app.send(conversation, "hello again")
    assert status == 202  # the conversation's lock went with the run


async def test_an_approval_that_races_the_end_of_its_run_is_a_409_not_a_500(app: App):
    _, run_id, stale = await waiting_run(app, WRITE)  # read while the run was still waiting
    [call_id] = stale["pending_approvals"]
    assert (await app.call("POST", f"/runs/{run_id}/cancel"))[0] == 202

    # Durable refuses the event ("instance ... is gone"): the answer says the run ended.
    rt = await runtime.runtime()
    with pytest.raises(Conflict, match="it is cancelled"):
        await raise_approval(
            rt, app.durable_client(), stale, ANONYMOUS, {"tool_call_id": call_id, "approved": True}
        )


async def test_a_cancel_durable_has_not_carried_out_keeps_the_conversation_locked(app: App):
    conversation, run_id, _ = await waiting_run(app, WRITE)
    await app.host.runtime.stop()  # Durable's workers stall: the terminate waits in its queue
    try:
        status, body, _ = await app.call("POST", f"/runs/{run_id}/cancel")
        assert status == 202 and body["status"] == "cancelling"
        status, problem, _ = await app.send(conversation, "too early")
        assert status == 409 and run_id in problem["detail"]  # no turn beside the old one
    finally:
        await app.host.runtime.start()

    assert (await app.run_until_done(run_id))["status"] == "cancelled"
    _, seen, _ = await app.call("GET", f"/conversations/{conversation}")
    assert seen["active_run_id"] is None  # the GET that saw it end gave the lock back
    assert "guarded__save_text_file" not in await tool_results(app, conversation)


async def test_an_answer_names_the_question_it_answers_and_one_for_another_question_is_a_409(
    app: App,
):
    conversation, run_id, run = await waiting_run(app, WRITE)
    [call_id] = run["pending_approvals"]
    assert run["question_id"] == "step1-approval"
    stale = {"tool_call_id": call_id, "approved": True, "question_id": "step1-resend"}
    status, problem, _ = await app.call("POST", f"/runs/{run_id}/approvals", json=stale)
    assert status == 409 and "not asking question step1-resend" in problem["detail"]

    answer_it = {**stale, "question_id": run["question_id"]}
    assert (await app.call("POST", f"/runs/{run_id}/approvals", json=answer_it))[0] == 202
    assert (await app.run_until_done(run_id))["status"] == "completed"
    assert not (await tool_results(app, conversation))["guarded__save_text_file"]["is_error"]
