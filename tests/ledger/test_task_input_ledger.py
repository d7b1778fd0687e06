"""What a task's question costs (agent.task_input): nothing while the person thinks. A tool call's
task asks for a name and nobody answers; the 2 s wait (AGENT_APPROVAL_TIMEOUT_SECONDS here) is
one durable timer, so from the moment the run shows `waiting_for_input` to the turn's end the
ledger counts only the answer's activity, the polls after it and the turn's last step (which ends it): no
activity held and no episode per second of the wait."""

from __future__ import annotations

from typing import Any

from devkit.ledger import format_table
from local_host.history import TERMINAL_STATUSES
from local_host.testing import wait_until
from offline_model.replies import Completion, ToolCallSpec
from tests.ledger.conftest import CountedApp

CARD = ToolCallSpec("tasks__greeting_card", '{"occasion": "ledger"}')
# Measured at taskinput (greeting card: 30 s of task clock at 5 s a poll, after its answer).
WAIT_AND_AFTER = {
    "activities": 8,
    "activities:answer_tool_task": 1,
    "activities:poll_tool_task": 6,
    "activities:model_step": 1,  # its answer ends the turn (no finish_turn)
}


async def run_view(app: CountedApp, run_id: str) -> dict[str, Any]:
    async with app.http.get(f"{app.api}/runs/{run_id}") as response:
        body: dict[str, Any] = await response.json()
        return body


async def test_a_tasks_question_costs_no_activity_while_nobody_answers(counted: CountedApp):
    counted.model.brain.then(Completion(tool_calls=(CARD,)))
    counted.model.brain.answer("done")
    conversation = (await counted.post("/conversations"))["id"]
    start = counted.ledger.snapshot()
    reply = await counted.post(f"/conversations/{conversation}/messages", json={"content": "go"})
    run_id = reply["run_id"]

    async def waiting() -> dict[str, Any] | None:
        view = await run_view(counted, run_id)
        return view if view["status"] == "waiting_for_input" else None

    await wait_until(waiting, within=20, message="the run waits for input")
    asked = counted.ledger.snapshot()
    done = await counted.host.runtime.wait_for_status(run_id, TERMINAL_STATUSES, within=60)
    end = counted.ledger.snapshot()
    assert str(done.runtime_status) == "Completed", done.output_raw
    before, after = asked - start, end - asked
    print(format_table({"task question: turn to asked": before, "asked to end": after}))
    activities = {k: v for k, v in after.items() if k.startswith("activities")}
    assert activities == WAIT_AND_AFTER  # the 2 s wait itself ran nothing
    # Episodes: the wait's timer firing (1), the answer (1), six polls each after a timer (12),
    # the last step (1): the wait costs one episode however long it is.
    assert after["episodes:chat_turn"] == 15
    assert before["activities:poll_tool_task"] == 1  # the poll that found the question
