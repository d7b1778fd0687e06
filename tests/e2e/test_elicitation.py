"""A tool's server asks a person mid-call (MCP elicitation), end to end on the local host: the run
waits as `waiting_for_input`, `POST /api/runs/{id}/input` answers, the tool's result uses the
answer and the model reads that result (never the question)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from local_host.testing import wait_until
from tests.e2e.conftest import App

ASK = '/tool asking__greet_asking {"greeting": "Hello"}'
ALICE = {"x-ms-client-principal-id": "alice-asked"}
MALLORY = {"x-ms-client-principal-id": "mallory-asked"}
QUESTION = "Hello! What is your name?"


async def asking_run(app: App, **headers: str) -> tuple[str, str, dict[str, Any]]:
    """A run whose tool call is waiting for a person's answer: (conversation, run id, run)."""
    conversation = await app.new_conversation(**headers)
    status, body, _ = await app.send(conversation, ASK, **headers)
    assert status == 202, body

    async def asked() -> dict[str, Any] | None:
        _, run, _ = await app.call("GET", f"/runs/{body['run_id']}", headers=headers)
        return run if run["status"] == "waiting_for_input" else None

    run = await wait_until(asked, within=20, message="waiting for input")
    return conversation, body["run_id"], run


async def answer(app: App, run_id: str, body: dict[str, Any], **headers: str):
    return await app.call("POST", f"/runs/{run_id}/input", json=body, headers=headers)


async def tool_result(app: App, conversation: str, **headers: str) -> dict[str, Any]:
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}", headers=headers)
    [result] = [m for m in transcript["messages"] if m["role"] == "tool"]
    assert all(QUESTION not in (m.get("content") or "") for m in transcript["messages"])
    return result


async def events_of(app: App, run_id: str, kind: str) -> list[dict[str, Any]]:
    status, body, _ = await app.call("GET", f"/runs/{run_id}/events?wait=1")
    assert status == 200, body
    return [event for event in body["events"] if event["type"] == kind]


async def test_an_accepted_answer_reaches_the_tool_and_the_model_reads_its_result(app: App):
    conversation, run_id, run = await asking_run(app)
    pending = run["pending_input"]
    assert pending["message"] == QUESTION
    assert pending["requested_schema"]["required"] == ["name"]
    assert set(pending["requested_schema"]["properties"]) == {"name", "age", "colour"}
    assert datetime.fromisoformat(pending["deadline"]) > datetime.now(UTC)
    content = {"name": "Ada", "age": 36, "colour": "green"}
    status, body, _ = await answer(app, run_id, {"action": "accept", "content": content})
    assert status == 202, body
    assert body == {"run_id": run_id, "question_id": pending["question_id"], "action": "accept"}
    done = await app.run_until_done(run_id)
    assert done["status"] == "completed"
    greeting = "Hello, Ada (36)! Your colour is green."
    assert (await tool_result(app, conversation))["content"] == greeting
    assert greeting in done["answer"]  # the offline model quotes what the tool said
    [asked] = await events_of(app, run_id, "input_requested")
    assert asked["question_id"] == pending["question_id"] and asked["message"] == QUESTION
    [answered] = await events_of(app, run_id, "input_answered")
    assert (answered["action"], answered["by"]) == ("accept", "caller")


async def test_a_declined_question_lets_the_tool_say_so(app: App):
    conversation, run_id, _ = await asking_run(app)
    assert (await answer(app, run_id, {"action": "decline"}))[0] == 202
    assert (await app.run_until_done(run_id))["status"] == "completed"
    result = await tool_result(app, conversation)
    assert result["content"] == "no name given: the person chose decline"


async def test_a_cancelled_question_lets_the_tool_say_so(app: App):
    conversation, run_id, _ = await asking_run(app)
    assert (await answer(app, run_id, {"action": "cancel"}))[0] == 202
    assert (await app.run_until_done(run_id))["status"] == "completed"
    result = await tool_result(app, conversation)
    assert result["content"] == "no name given: the person chose cancel"


async def test_a_bad_answer_is_refused_naming_the_field_and_the_question_stays_open(app: App):
    conversation, run_id, _ = await asking_run(app)
    refusals = [
        ({"action": "accept", "content": {"age": 36}}, "content.name: is required"),
        ({"action": "accept", "content": {"name": "Ada", "age": "old"}}, "content.age"),
        ({"action": "accept", "content": {"name": "Ada", "colour": "pink"}}, "content.colour"),
        ({"action": "accept"}, "content is required"),
        ({"action": "decline", "content": {"name": "Ada"}}, "content: only with action"),
        ({"action": "maybe"}, "action"),
    ]
    for body, detail in refusals:
        status, problem, headers = await answer(app, run_id, body)
        assert status == 400, (body, problem)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert detail in problem["detail"], (detail, problem)
    _, run, _ = await app.call("GET", f"/runs/{run_id}")
    assert run["status"] == "waiting_for_input"
    assert (await answer(app, run_id, {"action": "accept", "content": {"name": "Bo"}}))[0] == 202
    assert (await app.run_until_done(run_id))["status"] == "completed"
    assert "Bo" in (await tool_result(app, conversation))["content"]


async def test_only_the_first_answer_counts_and_only_the_runs_caller_may_answer(app: App):
    conversation, run_id, run = await asking_run(app, **ALICE)
    question_id = run["pending_input"]["question_id"]
    status, problem, _ = await answer(app, run_id, {"action": "decline"}, **MALLORY)
    assert status == 404, problem
    status, _, _ = await answer(
        app, run_id, {"action": "accept", "content": {"name": "Alice"}}, **ALICE
    )
    assert status == 202
    second = {"action": "decline", "question_id": question_id}
    status, problem, _ = await answer(app, run_id, second, **ALICE)
    assert status == 409 and question_id in problem["detail"], problem
    assert (await app.run_until_done(run_id, **ALICE))["status"] == "completed"
    assert "Alice" in (await tool_result(app, conversation, **ALICE))["content"]
    status, problem, _ = await answer(app, run_id, {"action": "decline"}, **ALICE)
    assert status == 409, problem  # the run's last question is answered


async def test_no_answer_by_the_deadline_counts_as_declined(app: App):
    # AGENT_APPROVAL_TIMEOUT_SECONDS=3 in these tests: the wait ends on its own, no sleep here.
    conversation, run_id, run = await asking_run(app)
    done = await app.run_until_done(run_id, within=30)
    assert done["status"] == "completed"
    result = await tool_result(app, conversation)
    assert result["content"] == "no name given: the person chose decline"
    [answered] = await events_of(app, run_id, "input_answered")
    assert (answered["action"], answered["by"]) == ("decline", "deadline")
    late = {"action": "accept", "content": {"name": "Late"}}
    status, problem, _ = await answer(app, run_id, late)
    assert status == 409 and run["pending_input"]["question_id"] in problem["detail"]


async def test_cancelling_a_run_that_waits_for_input_closes_its_question(app: App):
    _, run_id, run = await asking_run(app)
    status, body, _ = await app.call("POST", f"/runs/{run_id}/cancel")
    assert status == 202 and body["status"] in ("cancelled", "cancelling"), body
    status, problem, _ = await answer(app, run_id, {"action": "decline"})
    assert status == 409 and run["pending_input"]["question_id"] in problem["detail"], problem
    assert (await app.run_until_done(run_id))["status"] == "cancelled"

    # The question was answered `cancel` for the run, so the tool call holding an activity for
    # it ended then (terminating the run does not stop an activity), not at its deadline.
    async def answered() -> list[dict[str, Any]]:
        return await events_of(app, run_id, "input_answered")

    [closed] = await wait_until(answered, within=20, message="the question closed")
    assert (closed["action"], closed["by"]) == ("cancel", "caller")


async def test_a_run_that_asked_nothing_has_no_question_to_answer(app: App):
    conversation = await app.new_conversation()
    status, body, _ = await app.send(conversation, "hello", wait=20)
    assert status == 200, body
    status, problem, _ = await answer(app, body["run_id"], {"action": "decline"})
    assert status == 404 and "asks no question" in problem["detail"], problem
    status, problem, _ = await answer(app, "no-such-run", {"action": "decline"})
    assert status == 404, problem
