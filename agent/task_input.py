"""A tool call's task that waits for input: the tasks extension's `input_required` as a durable
question (version 4).

A server runs a call as a task (agent.mcp.tasks); when the task needs a person it reports status
`input_required` with `inputRequests`, a map of server-assigned keys to requests. For each
form-mode elicitation among them `poll_tool_task` asks one question (`ask`: the record and the
`input_requested` event of agent.elicitation, with the task id and request key), and returns the
question ids and their deadline instead of a result. Unlike a question asked *during* a
`tools/call` (agent.elicitation), nothing is held while the person thinks: the orchestrator waits
on the `INPUT_EVENT` that `POST /api/runs/{id}/input` raises, raced against a durable timer at the
deadline (the approval timeout). Then `answer_tool_task` (`send`) reads the answers (declining
those still unanswered: the deadline's answer), and sends them to the server in one
`tasks/update`, keyed as the server keyed its requests; polling resumes.

Idempotent: a retried poll finds the questions it asked through create-only slot records (one per
request key and poll), so it never asks twice; a create-only "sent" record per question lets one
attempt send each answer on (released again when the send certainly failed, so a retry sends it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from agent import elicitation, events
from agent.contracts import AnswerTaskInput, AskedInput
from agent.input_schema import schema_problem
from storage.questions import Answer, Question

ELICITATION = "elicitation/create"


class UnsupportedInput(Exception):
    """The task asks for input this client cannot give (not a form-mode elicitation, or a form
    outside MCP's restricted schema): the task is cancelled and the model told why."""


@dataclass(frozen=True)
class _Request:
    key: str
    message: str
    schema: dict[str, Any]


def requests_of(input_requests: dict[str, Any]) -> list[_Request]:
    """The task's input requests, each a form-mode elicitation, in key order."""
    found = []
    for key in sorted(input_requests):
        request = input_requests[key]
        if not isinstance(request, dict) or request.get("method") != ELICITATION:
            method = request.get("method") if isinstance(request, dict) else None
            raise UnsupportedInput(f"input request {key!r} is {method!r}, not {ELICITATION}")
        params = request.get("params")
        if not isinstance(params, dict) or params.get("mode", "form") != "form":
            raise UnsupportedInput(elicitation.URL_MODE)
        message, schema = params.get("message"), params.get("requestedSchema")
        if not isinstance(message, str):
            raise UnsupportedInput(f"input request {key!r} has no message")
        problem = schema_problem(schema)
        if problem is not None or not isinstance(schema, dict):
            raise UnsupportedInput(problem or f"input request {key!r} has no requestedSchema")
        found.append(_Request(key, message, dict(schema)))
    return found


async def ask(
    asker: elicitation.Asker, task_id: str, poll: int, input_requests: dict[str, Any]
) -> AskedInput:
    """One question per input request, asked once however often this poll is retried."""
    requests = requests_of(input_requests)
    if not requests:
        raise UnsupportedInput("the task needs input but named no input request")
    question_ids, deadlines = [], []
    for request in requests:
        question = await _question_for(asker, task_id, poll, request)
        question_ids.append(question.question_id)
        deadlines.append(question.deadline)
    return AskedInput(tuple(question_ids), min(deadlines))


async def _question_for(
    asker: elicitation.Asker, task_id: str, poll: int, request: _Request
) -> Question:
    fresh = replace(
        elicitation.new_question(asker, request.message, request.schema),
        task_id=task_id,
        request_key=request.key,
    )
    slot = f"{asker.call_id}.{poll}.{request.key}"
    question_id = await asker.questions.claim_slot(asker.ref, asker.run_id, slot, fresh.question_id)
    if question_id != fresh.question_id:  # an earlier attempt of this poll claimed the slot
        asked = await asker.questions.question(asker.ref, asker.run_id, question_id)
        if asked is not None:
            return asked  # ...and asked: never twice
        fresh = replace(fresh, question_id=question_id)  # ...and was cut off before asking
    await elicitation.ask(asker, fresh)
    return fresh


Update = Callable[[str, dict[str, Any]], Awaitable[bool]]  # (task id, responses) -> accepted


async def send(asker: elicitation.Asker, job: AnswerTaskInput, update: Update) -> bool:
    """Send the answers of `job`'s questions on to the task (one `tasks/update`); decline those
    without an answer. False if the server refused them (the task ended meanwhile)."""
    store, ref, run_id = asker.questions, asker.ref, asker.run_id
    responses: dict[str, Any] = {}
    claimed: list[str] = []
    task_id = None
    for question_id in job.question_ids:
        question = await store.question(ref, run_id, question_id)
        if question is None or question.task_id is None or question.request_key is None:
            raise LookupError(f"no task question {question_id} in run {run_id}")
        task_id = question.task_id
        answer = await store.answer_of(ref, run_id, question_id)
        if answer is None:
            answer = await elicitation.decline_at_deadline(asker, question)
        if not await store.claim_sending(ref, run_id, question_id):
            continue  # an earlier attempt sent it
        claimed.append(question_id)
        responses[question.request_key] = _response(answer)
        await asker.recorder.record(
            events.input_answered(asker.call_id, question_id, answer.action, answer.by)
        )
    if not responses or task_id is None:
        return True
    try:
        return await update(task_id, responses)
    except Exception as exc:
        if getattr(exc, "maybe_sent", True):
            raise  # it may have arrived: never send it twice
        for question_id in claimed:  # it certainly did not: a retry sends it
            await store.release_sending(ref, run_id, question_id)
        raise


def _response(answer: Answer) -> dict[str, Any]:
    result = elicitation.result_of(answer)
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")
