"""An MCP server's question to a person during a tool call (elicitation, form mode).

The MCP client calls `on_elicitation` while a `tools/call` is under way: with the 2026-07-28
revision the server answers the call with an `InputRequiredResult` and the SDK, in the calling
task, asks us and then sends the call again with the answer; an older server sends a request
nested in the call, which the SDK's streamable HTTP transport serves in the caller's context too
(with the call's timeout stopped while the person thinks, `_off_the_clock`). The tool call's
activity binds the call to its run beforehand (`asking_for`, a context variable), so the question
knows its run, step and call without the pool knowing anything of runs; a question asked where
no call is bound (outside a run, or a transport that serves it in another context) is refused.

The question becomes a durable record (`storage.questions`) and an `input_requested` run event;
while it is open `GET /api/runs/{id}` says `waiting_for_input`. `POST /api/runs/{id}/input`
writes the answer (create-only: the first answer wins) and wakes the waiter when it runs in this
process (`answered`); in another process the waiter finds it by polling Blob, backing off to
`POLL_MAX_SECONDS`. No answer by the deadline counts as `decline`, written as an answer too, so a
late caller gets 409 like a second answer would. The model never answers: the question never goes
to the model, only the tool's result does.

The activity is held while it waits. So the wait is bounded by the approval timeout
(`AGENT_APPROVAL_TIMEOUT_SECONDS`) and by `MAX_WAIT_SECONDS`, which leaves the rest of the tool call
room under the Functions timeout (host.json `functionTimeout`, 10 minutes; a test checks the two
agree). If the host dies while a question is open, the question and any answer stay, but the
server's pending request lived on the session: the activity is retried and the call follows the
rules for a call cut off mid-way (sent again only when that is safe, else a person is asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import mcp_types as types

from agent import events
from agent.input_schema import schema_problem
from storage.errors import AlreadyExists
from storage.questions import Answer, Question

if TYPE_CHECKING:
    from mcp.client.session import ClientRequestContext

    from agent.settings import Settings
    from storage.models import ConversationRef
    from storage.questions import QuestionStore

log = logging.getLogger(__name__)

# Functions stops an activity at host.json functionTimeout (600 s): the wait leaves 120 s of it for
# the rest of the call (the tool's own legs, Blob writes).
MAX_WAIT_SECONDS = 480.0
FUNCTION_TIMEOUT_MARGIN_SECONDS = 120.0
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 2.0
NO_PERSON = "this client has no person to ask outside a tool call of a run"
URL_MODE = "URL-mode elicitation is not supported by this client; use form mode"


@dataclass(frozen=True)
class Asker:
    """The tool call a question belongs to, and where its question and answer go."""

    questions: QuestionStore
    recorder: events.RunRecorder
    ref: ConversationRef
    run_id: str
    step: int
    call_id: str
    tool_name: str
    wait_seconds: float


_asking: contextvars.ContextVar[Asker | None] = contextvars.ContextVar("asking", default=None)


@contextlib.contextmanager
def asking_for(asker: Asker) -> Iterator[None]:
    """Questions asked by the MCP call made inside this block belong to `asker`'s tool call."""
    token = _asking.set(asker)
    try:
        yield
    finally:
        _asking.reset(token)


def wait_bound(settings: Settings) -> float:
    return float(min(settings.limits.approval_timeout_seconds, MAX_WAIT_SECONDS))


async def on_elicitation(
    context: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    """The MCP client's elicitation callback: ask a person, wait for the answer (or deadline)."""
    asker = _asking.get()
    if asker is None:
        return types.ErrorData(code=types.INVALID_REQUEST, message=NO_PERSON)
    if not isinstance(params, types.ElicitRequestFormParams):
        return types.ErrorData(code=types.INVALID_REQUEST, message=URL_MODE)
    schema: Any = params.requested_schema
    problem = schema_problem(schema)
    if problem is not None:
        return types.ErrorData(code=types.INVALID_PARAMS, message=problem)
    question = new_question(asker, params.message, dict(schema))
    # Waiting before the question is out: an answer that comes at once still finds the waiter.
    with _signals.waiting(asker.run_id, question.question_id) as signal, _off_the_clock():
        await ask(asker, question)
        answer = await wait_for_answer(asker, question, signal)
    await asker.recorder.record(
        events.input_answered(asker.call_id, question.question_id, answer.action, answer.by)
    )
    _log("elicitation answered", asker, question, action=answer.action, by=answer.by)
    return result_of(answer)


def result_of(answer: Answer) -> types.ElicitResult:
    """The answer as MCP's elicitation result: content goes with an accept only."""
    content = answer.content if answer.action == "accept" else None
    return types.ElicitResult(action=answer.action, content=content)


def _off_the_clock() -> contextlib.AbstractContextManager[None]:
    """Stop the `tools/call` timeout while a person thinks. A server on a revision before
    2026-07-28 asks with a request nested in the call, so the call's `timeout_seconds` would run
    out under the person; the SDK's helper for this (its OAuth flow uses it) is not public API,
    hence the fallback (then such a question ends at the server's timeout, as a tool timeout)."""
    try:
        from mcp.shared._request_clock import waiting_on_a_person
    except ImportError:  # pragma: no cover - an SDK that moved it
        return contextlib.nullcontext()
    return waiting_on_a_person()


def new_question(asker: Asker, message: str, schema: dict[str, Any]) -> Question:
    now = datetime.now(UTC)
    return Question(
        question_id=new_question_id(now),
        run_id=asker.run_id,
        step=asker.step,
        call_id=asker.call_id,
        tool_name=asker.tool_name,
        message=message,
        requested_schema=schema,
        asked_at=now.isoformat(),
        deadline=(now + timedelta(seconds=asker.wait_seconds)).isoformat(),
    )


async def ask(asker: Asker, question: Question) -> None:
    """Put the question where the run's caller sees it: its record, and a run event."""
    await asker.questions.ask(asker.ref, question)
    await asker.recorder.record(
        events.input_requested(asker.step, asker.call_id, asker.tool_name, pending_input(question))
    )
    _log("elicitation asked", asker, question)


def new_question_id(now: datetime) -> str:
    """Plain, and sorting by when it was asked (the store finds the newest open one so)."""
    return f"q{int(now.timestamp() * 1000):013d}{secrets.token_hex(4)}"


def pending_input(question: Question) -> dict[str, Any]:
    """The question as `GET /api/runs/{id}` and the `input_requested` event show it."""
    return {
        "question_id": question.question_id,
        "tool_call_id": question.call_id,
        "message": question.message,
        "requested_schema": question.requested_schema,
        "deadline": question.deadline,
    }


async def wait_for_answer(
    asker: Asker, question: Question, signal: asyncio.Event | None = None
) -> Answer:
    """The question's answer: the caller's, or `decline` by the deadline, whichever is first.
    `signal` (set by `answered` in this process) cuts a poll's wait short."""
    store, ref, run_id, question_id = asker.questions, asker.ref, asker.run_id, question.question_id
    signal = signal if signal is not None else asyncio.Event()
    deadline = time.monotonic() + asker.wait_seconds
    delay = POLL_FIRST_SECONDS
    while True:
        answer = await store.answer_of(ref, run_id, question_id)
        if answer is not None:
            return answer
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return await decline_at_deadline(asker, question)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(delay, remaining)):
                await signal.wait()
        delay = min(delay * 2, POLL_MAX_SECONDS)


async def decline_at_deadline(asker: Asker, question: Question) -> Answer:
    """Record `decline` as the answer (the deadline's), unless a caller answered first."""
    late = Answer("decline", datetime.now(UTC).isoformat(), "deadline")
    try:
        await asker.questions.answer(asker.ref, asker.run_id, question.question_id, late)
    except AlreadyExists:  # a caller answered just in time: theirs is the answer
        answer = await asker.questions.answer_of(asker.ref, asker.run_id, question.question_id)
        return answer if answer is not None else late
    return late


def answered(run_id: str, question_id: str) -> bool:
    """Wake the waiter of this question if it runs in this process (True if it does)."""
    return _signals.notify(run_id, question_id)


class _Signals:
    """Waiters in this process, by question; a waiter's loop may be another thread's."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    @contextlib.contextmanager
    def waiting(self, run_id: str, question_id: str) -> Iterator[asyncio.Event]:
        key, signal = (run_id, question_id), asyncio.Event()
        self._waiting[key] = (asyncio.get_running_loop(), signal)
        try:
            yield signal
        finally:
            self._waiting.pop(key, None)

    def notify(self, run_id: str, question_id: str) -> bool:
        waiter = self._waiting.get((run_id, question_id))
        if waiter is None:
            return False
        loop, signal = waiter
        with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(signal.set)
        return True


_signals = _Signals()


def _log(what: str, asker: Asker, question: Question, **extra: str) -> None:
    # Ids and the action only: the message and the answer are conversation content.
    log.info(
        what,
        extra={
            "run_id": asker.run_id,
            "tool_call_id": asker.call_id,
            "question_id": question.question_id,
            **extra,
        },
    )
