"""A run's questions to a person and their answers (storage.questions), against Azurite."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob.aio import ContainerClient

from storage import paths
from storage.errors import AlreadyExists
from storage.models import ConversationRef
from storage.questions import Answer, Question, QuestionStore

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.fixture
def questions(container: ContainerClient) -> QuestionStore:
    return QuestionStore(container)


@pytest.fixture
def ref() -> ConversationRef:
    return ConversationRef(f"user-{uuid.uuid4()}", uuid.uuid4().hex)


def question(
    question_id: str, *, run_id: str = "run1", lasts: float = 60, call_id: str = "call_1"
) -> Question:
    return Question(
        question_id=question_id,
        run_id=run_id,
        step=1,
        call_id=call_id,
        tool_name="asking__greet_asking",
        message="What is your name?",
        requested_schema=SCHEMA,
        asked_at=NOW.isoformat(),
        deadline=(NOW + timedelta(seconds=lasts)).isoformat(),
    )


def answer(action: str = "accept", by: str = "caller") -> Answer:
    content = {"name": "Ada"} if action == "accept" else None
    return Answer(action, NOW.isoformat(), by, content)  # type: ignore[arg-type]


async def test_a_question_reads_back_as_it_was_asked(questions: QuestionStore, ref):
    asked = question("q0001")
    await questions.ask(ref, asked)
    assert await questions.question(ref, "run1", "q0001") == asked
    assert await questions.question(ref, "run1", "q0002") is None


async def test_a_question_and_its_answer_live_under_the_run_of_the_conversation(
    questions: QuestionStore, ref, container: ContainerClient
):
    await questions.ask(ref, question("q0001"))
    await questions.answer(ref, "run1", "q0001", answer())
    names = [
        b.name async for b in container.list_blobs(name_starts_with=paths.conversation_prefix(ref))
    ]
    assert sorted(names) == [
        paths.conversation_prefix(ref) + "runs/run1/input/q0001.answer.json",
        paths.conversation_prefix(ref) + "runs/run1/input/q0001.question.json",
    ]


async def test_the_first_answer_wins_and_a_second_is_refused(questions: QuestionStore, ref):
    await questions.ask(ref, question("q0001"))
    await questions.answer(ref, "run1", "q0001", answer("accept"))
    with pytest.raises(AlreadyExists):
        await questions.answer(ref, "run1", "q0001", answer("decline", by="deadline"))
    assert await questions.answer_of(ref, "run1", "q0001") == answer("accept")


async def test_of_two_answers_at_once_exactly_one_is_written(questions: QuestionStore, ref):
    await questions.ask(ref, question("q0001"))
    outcomes = await asyncio.gather(
        questions.answer(ref, "run1", "q0001", answer("accept")),
        questions.answer(ref, "run1", "q0001", answer("cancel")),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyExists", "NoneType"]
    stored = await questions.answer_of(ref, "run1", "q0001")
    winner = answer("accept") if outcomes[0] is None else answer("cancel")
    assert stored == winner


async def test_the_open_question_is_the_newest_unanswered_one_before_its_deadline(
    questions: QuestionStore, ref
):
    assert await questions.open_question(ref, "run1", NOW) is None
    await questions.ask(ref, question("q0001", call_id="call_1"))
    await questions.ask(ref, question("q0002", call_id="call_2"))
    assert (await questions.open_question(ref, "run1", NOW)).question_id == "q0002"
    await questions.answer(ref, "run1", "q0002", answer())
    assert (await questions.open_question(ref, "run1", NOW)).question_id == "q0001"
    after_deadline = NOW + timedelta(seconds=61)
    assert await questions.open_question(ref, "run1", after_deadline) is None


async def test_a_call_that_asks_again_after_a_crash_leaves_its_old_question_closed(
    questions: QuestionStore, ref
):
    await questions.ask(ref, question("q0001", call_id="call_1"))  # the attempt that died
    await questions.ask(ref, question("q0002", call_id="call_1"))  # the retried call asks again
    assert (await questions.open_question(ref, "run1", NOW)).question_id == "q0002"
    await questions.answer(ref, "run1", "q0002", answer())
    assert await questions.open_question(ref, "run1", NOW) is None


async def test_an_expired_retry_does_not_reopen_the_calls_older_question(
    questions: QuestionStore, ref
):
    await questions.ask(ref, question("q0001", call_id="call_1", lasts=120))
    await questions.ask(ref, question("q0002", call_id="call_1", lasts=30))
    assert await questions.open_question(ref, "run1", NOW + timedelta(seconds=60)) is None


async def test_another_runs_questions_are_not_this_runs(questions: QuestionStore, ref):
    await questions.ask(ref, question("q0001", run_id="run2"))
    assert await questions.open_question(ref, "run1", NOW) is None
    assert await questions.newest_id(ref, "run1") is None
    assert await questions.newest_id(ref, "run2") == "q0001"


async def test_the_newest_question_is_found_even_when_answered(questions: QuestionStore, ref):
    await questions.ask(ref, question("q0001"))
    await questions.ask(ref, question("q0002"))
    await questions.answer(ref, "run1", "q0002", answer("decline", by="deadline"))
    assert await questions.newest_id(ref, "run1") == "q0002"


async def test_asking_twice_under_one_id_is_refused(questions: QuestionStore, ref):
    from azure.core.exceptions import ResourceExistsError

    await questions.ask(ref, question("q0001"))
    with pytest.raises(ResourceExistsError):
        await questions.ask(ref, question("q0001"))


async def test_a_tasks_question_names_its_task_and_request_key_and_an_older_record_reads_without(
    questions: QuestionStore, ref
):
    asked = replace(question("q0001"), task_id="task-1", request_key="name")
    await questions.ask(ref, asked)
    assert await questions.question(ref, "run1", "q0001") == asked
    plain = question("q0002").to_dict()
    assert "task_id" not in plain and "request_key" not in plain  # bytes as before
    assert Question.from_dict(plain).task_id is None


async def test_a_slot_keeps_the_first_question_id_claimed_for_it(questions: QuestionStore, ref):
    assert await questions.claim_slot(ref, "run1", "call_1.0.name", "q0001") == "q0001"
    assert await questions.claim_slot(ref, "run1", "call_1.0.name", "q0002") == "q0001"
    assert await questions.claim_slot(ref, "run1", "call_1.1.name", "q0003") == "q0003"
    assert await questions.newest_id(ref, "run1") is None  # slots are not questions


async def test_only_the_first_claim_sends_an_answer_until_it_is_released(
    questions: QuestionStore, ref
):
    assert await questions.claim_sending(ref, "run1", "q0001")
    assert not await questions.claim_sending(ref, "run1", "q0001")
    await questions.release_sending(ref, "run1", "q0001")
    assert await questions.claim_sending(ref, "run1", "q0001")
