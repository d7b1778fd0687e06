"""A run's questions to a person and their answers: an MCP server's elicitation during a tool
call, asked of whoever can answer the run (`POST /api/runs/{id}/input`).

Two create-only records per question, side by side under the run (`storage.paths.input_prefix`):

    .../runs/{run}/input/{question}.question.json   what the server asked, and until when
    .../runs/{run}/input/{question}.answer.json     the answer: the caller's, or the deadline's

A question a tool call's *task* asks (the tasks extension's `input_required`) is answered to the
server later, by `tasks/update`, so two more create-only records make that durable wait
idempotent (a retried activity asks once and sends once):

    .../runs/{run}/input/{slot}.slot.json       which question a task's input request became
    .../runs/{run}/input/{question}.sent.json   its answer went to the server (or is going)

Create-only makes "first answer wins" a property of the store: of two answers to one question
(two callers, or a caller racing the deadline) exactly one is written, the other gets
`AlreadyExists`, and both then read the same winner. A question is *open* while it has no answer
and its deadline has not passed; question ids sort by the time they were asked (the asker makes
them so), so the run's open question is its newest unanswered one (of a tool call's questions, only its
newest counts: a call retried after a crash asks again, and its dead attempt's question stays
unanswered).

The records hold what the server asked and what the person answered: conversation content, kept
with the conversation and deleted with it (everything under its prefix goes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.errors import AlreadyExists
from storage.json_blobs import JsonBlobs
from storage.models import ConversationRef
from wire import Wire, WireError, omitted_when_default

QUESTION_SUFFIX = ".question.json"
ANSWER_SUFFIX = ".answer.json"
SLOT_SUFFIX = ".slot.json"
SENT_SUFFIX = ".sent.json"
# A run asks few questions; a listing that finds more than this many unanswered ones looks only
# at the newest (older ones were cut off by a crash, or superseded).
MAX_OPEN_CANDIDATES = 8

Action = Literal["accept", "decline", "cancel"]
AnsweredBy = Literal["caller", "deadline"]
R = TypeVar("R", bound=Wire)


@dataclass(frozen=True)
class Question(Wire):
    """What the server asked during one tool call, and until when a person may answer."""

    question_id: str  # plain, and sorting by the time it was asked
    run_id: str
    step: int
    call_id: str
    tool_name: str
    message: str  # the server's message, shown to the person as is
    requested_schema: dict[str, Any]  # MCP's restricted form schema
    asked_at: str  # ISO 8601, UTC
    deadline: str  # ISO 8601, UTC: no answer by then counts as declined
    # A task's question (status `input_required`): the task, and the key of its input request.
    task_id: str | None = omitted_when_default(None)
    request_key: str | None = omitted_when_default(None)

    def open_at(self, now: datetime) -> bool:
        try:
            return now < datetime.fromisoformat(self.deadline)
        except ValueError:
            return False  # an unreadable deadline has passed: nobody can wait on it


@dataclass(frozen=True)
class Answer(Wire):
    """MCP's elicitation result, and who gave it."""

    action: Action
    answered_at: str  # ISO 8601, UTC
    by: AnsweredBy
    content: dict[str, Any] | None = None  # with `accept` only


class QuestionStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._json = JsonBlobs(container)

    async def ask(self, ref: ConversationRef, question: Question) -> None:
        """Record the question (create-only: asking twice under one id is a bug)."""
        name = paths.question_name(ref, question.run_id, question.question_id)
        await self._json.upload(name, question.to_dict())

    async def question(
        self, ref: ConversationRef, run_id: str, question_id: str
    ) -> Question | None:
        data, _etag = await self._json.download(paths.question_name(ref, run_id, question_id))
        return _read(Question, data)

    async def answer(
        self, ref: ConversationRef, run_id: str, question_id: str, answer: Answer
    ) -> None:
        """Record the answer; `AlreadyExists` if the question has one (the first one wins)."""
        name = paths.answer_name(ref, run_id, question_id)
        try:
            await self._json.upload(name, answer.to_dict())
        except ResourceExistsError:
            raise AlreadyExists(f"question {question_id} is already answered") from None

    async def answer_of(self, ref: ConversationRef, run_id: str, question_id: str) -> Answer | None:
        data, _etag = await self._json.download(paths.answer_name(ref, run_id, question_id))
        return _read(Answer, data)

    async def claim_slot(
        self, ref: ConversationRef, run_id: str, slot: str, question_id: str
    ) -> str:
        """The question id of `slot` (one input request of a task, as one poll saw it): the
        one given if this call claimed the slot first, else the one claimed before (a retry)."""
        name = f"{paths.input_prefix(ref, run_id)}{paths.safe_name(slot)}{SLOT_SUFFIX}"
        try:
            await self._json.upload(name, {"question_id": question_id})
        except ResourceExistsError:
            data, _etag = await self._json.download(name)
            claimed = (data or {}).get("question_id")
            if not isinstance(claimed, str):
                raise
            return claimed
        return question_id

    async def claim_sending(self, ref: ConversationRef, run_id: str, question_id: str) -> bool:
        """True for the first caller only: the one that sends this question's answer on."""
        name = f"{paths.input_prefix(ref, run_id)}{paths.safe_name(question_id)}{SENT_SUFFIX}"
        try:
            await self._json.upload(name, {"question_id": question_id})
        except ResourceExistsError:
            return False
        return True

    async def release_sending(self, ref: ConversationRef, run_id: str, question_id: str) -> None:
        """Undo `claim_sending` after a send that certainly never left (a retry sends it)."""
        name = f"{paths.input_prefix(ref, run_id)}{paths.safe_name(question_id)}{SENT_SUFFIX}"
        await self._container.delete_blob(name)

    async def open_question(
        self, ref: ConversationRef, run_id: str, now: datetime
    ) -> Question | None:
        """The run's newest question with no answer whose deadline has not passed, if any.

        Only a tool call's newest question counts: a call retried after a host crash asks
        again under a new id, and the question the dead attempt left open is nobody's to
        answer (once the new one is answered, the run must not wait on the old one)."""
        asked, answered = await self._listing(ref, run_id)
        newest_first = sorted(asked, reverse=True)[:MAX_OPEN_CANDIDATES]
        asked_again: set[tuple[int, str]] = set()
        for index, question_id in enumerate(newest_first):
            if all(older in answered for older in newest_first[index:]):
                return None  # the rest are answered: no need to read them
            question = await self.question(ref, run_id, question_id)
            if question is None:
                continue
            call = (question.step, question.call_id)
            if question_id not in answered and call not in asked_again and question.open_at(now):
                return question
            asked_again.add(call)
        return None

    async def newest_id(self, ref: ConversationRef, run_id: str) -> str | None:
        """The id of the run's newest question, open or not (None: it asked none)."""
        asked, _answered = await self._listing(ref, run_id)
        return max(asked, default=None)

    async def _listing(self, ref: ConversationRef, run_id: str) -> tuple[list[str], set[str]]:
        prefix = paths.input_prefix(ref, run_id)
        asked: list[str] = []
        answered: set[str] = set()
        async for blob in self._container.list_blobs(name_starts_with=prefix):
            name = blob.name[len(prefix) :]
            if name.endswith(QUESTION_SUFFIX):
                asked.append(name[: -len(QUESTION_SUFFIX)])
            elif name.endswith(ANSWER_SUFFIX):
                answered.add(name[: -len(ANSWER_SUFFIX)])
        return asked, answered


def _read(kind: type[R], data: dict[str, Any] | None) -> R | None:
    if data is None:
        return None
    try:
        return kind.from_dict(data)
    except WireError:
        return None  # unreadable: as if absent (never half a record)
