"""A server's question during a tool call (agent.elicitation), through a real pool to the helper
server's `greet_asking`, with questions and answers in Azurite."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.storage.blob.aio import ContainerClient

from agent import elicitation, events
from agent.elicitation import Asker, asking_for, on_elicitation
from agent.mcp.pool import McpPool, ToolOutcome
from devkit.azurite import AzuriteInstance
from devkit.mcp_servers import AsgiServer, EverythingHttpServer, http_entry, node_available
from local_host.testing import wait_until
from storage.blob import container_client, ensure_container
from storage.events import RunEventLog
from storage.models import ConversationRef
from storage.questions import Answer, Question, QuestionStore
from tests.agent.mcp.conftest import PoolFactory

ROOT = Path(__file__).resolve().parents[3]
TOOL = "asking__greet_asking"


@pytest.fixture(scope="module")
async def container(azurite: AzuriteInstance) -> AsyncIterator[ContainerClient]:
    client = container_client(azurite.connection_string, "elicitation-test")
    async with client:
        await ensure_container(client)
        yield client


@pytest.fixture
def asker(container: ContainerClient) -> Asker:
    ref = ConversationRef(f"user-{uuid.uuid4()}", uuid.uuid4().hex)
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    recorder = events.RunRecorder(RunEventLog(container), ref, run_id)
    return Asker(QuestionStore(container), recorder, ref, run_id, 1, "call_1", TOOL, 30.0)


async def asking_pool(make_pool: PoolFactory, server: AsgiServer, **kwargs: object) -> McpPool:
    entry = http_entry("asking", server.url(), tools={"allow": ["greet_asking"]})
    return await make_pool(entry, **kwargs)


async def greet(pool: McpPool) -> ToolOutcome:
    arguments = {"greeting": "Hi"}
    return await pool.call_tool(TOOL, arguments, context={}, idempotency_key=uuid.uuid4().hex)


async def asking_call(
    make_pool: PoolFactory, server: AsgiServer, asker: Asker
) -> tuple[asyncio.Task[ToolOutcome], Question]:
    """`greet_asking` called for `asker`'s tool call, under way; and the question it asks."""
    pool = await asking_pool(make_pool, server, elicitation=on_elicitation)
    with asking_for(asker):
        call = asyncio.create_task(greet(pool))
    return call, await open_question(asker)


async def open_question(asker: Asker) -> Question:
    async def asked() -> Question | None:
        return await asker.questions.open_question(asker.ref, asker.run_id, datetime.now(UTC))

    return await wait_until(asked, within=10, message="the question is asked")


async def test_without_a_person_to_ask_the_client_declares_no_elicitation_and_the_tool_fails(
    make_pool: PoolFactory, helper_http: AsgiServer
):
    pool = await asking_pool(make_pool, helper_http)  # AGENT_ELICITATION=false
    outcome = await greet(pool)
    assert outcome.is_error and "elicitation" in outcome.text.lower()


async def test_a_question_outside_a_tool_call_of_a_run_is_refused(
    make_pool: PoolFactory, helper_http: AsgiServer
):
    pool = await asking_pool(make_pool, helper_http, elicitation=on_elicitation)
    outcome = await greet(pool)  # no `asking_for`: nobody to ask
    assert outcome.is_error
    assert elicitation.NO_PERSON in outcome.text


async def test_an_answer_written_by_another_process_is_found_by_polling(
    make_pool: PoolFactory, helper_http: AsgiServer, asker: Asker
):
    call, question = await asking_call(make_pool, helper_http, asker)
    assert (question.message, question.call_id, question.step) == (
        "Hi! What is your name?",
        "call_1",
        1,
    )
    answer = Answer("accept", datetime.now(UTC).isoformat(), "caller", {"name": "Ada"})
    # Written straight to Blob, without waking the waiter: as another instance's HTTP edge would.
    await asker.questions.answer(asker.ref, asker.run_id, question.question_id, answer)
    outcome = await asyncio.wait_for(call, timeout=20)
    assert not outcome.is_error and outcome.text == "Hi, Ada! Your colour is red."
    recorded = [(e.type, e.data.get("question_id")) for e in await asker.recorder.recorded()]
    assert recorded == [
        ("input_requested", question.question_id),
        ("input_answered", question.question_id),
    ]


async def test_an_answer_in_this_process_wakes_the_waiting_call(
    make_pool: PoolFactory, helper_http: AsgiServer, asker: Asker
):
    call, question = await asking_call(make_pool, helper_http, asker)
    answer = Answer("cancel", datetime.now(UTC).isoformat(), "caller")
    await asker.questions.answer(asker.ref, asker.run_id, question.question_id, answer)
    assert elicitation.answered(asker.run_id, question.question_id)  # a waiter was there
    outcome = await asyncio.wait_for(call, timeout=20)
    assert outcome.text == "no name given: the person chose cancel"
    assert not elicitation.answered(asker.run_id, question.question_id)  # and is gone


async def test_a_deadline_answer_loses_to_an_answer_already_written(asker: Asker):
    question = elicitation.new_question(replace(asker, wait_seconds=0), "Name?", {"type": "object"})
    await elicitation.ask(asker, question)
    given = Answer("accept", datetime.now(UTC).isoformat(), "caller", {"name": "Ada"})
    await asker.questions.answer(asker.ref, asker.run_id, question.question_id, given)
    assert await elicitation.wait_for_answer(replace(asker, wait_seconds=0), question) == given


async def test_no_answer_by_the_deadline_is_written_as_a_decline(asker: Asker):
    quick = replace(asker, wait_seconds=0.2)
    question = elicitation.new_question(quick, "Name?", {"type": "object"})
    await elicitation.ask(quick, question)
    answer = await elicitation.wait_for_answer(quick, question)
    assert (answer.action, answer.by, answer.content) == ("decline", "deadline", None)
    assert await asker.questions.answer_of(asker.ref, asker.run_id, question.question_id) == answer


def test_question_ids_are_plain_and_sort_by_when_they_were_asked():
    earlier = elicitation.new_question_id(datetime(2030, 1, 1, 9, 59, 59, tzinfo=UTC))
    later = elicitation.new_question_id(datetime(2030, 1, 1, 10, 0, 0, tzinfo=UTC))
    assert earlier < later and re.fullmatch(r"[A-Za-z0-9_-]{1,100}", later)


def test_the_wait_leaves_the_rest_of_the_call_room_under_the_functions_timeout():
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    function_timeout = hours * 3600 + minutes * 60 + seconds
    assert (
        function_timeout
    ) >= elicitation.MAX_WAIT_SECONDS + elicitation.FUNCTION_TIMEOUT_MARGIN_SECONDS


@pytest.mark.skipif(not node_available(), reason="server-everything needs Node.js")
async def test_an_older_servers_nested_question_outlasts_the_calls_timeout(
    make_pool: PoolFactory, asker: Asker
):
    # server-everything (npm, 2025-11-25) asks with a request nested in the tools/call: the
    # call's 1 s timeout must not run while the person thinks.
    with EverythingHttpServer() as everything:
        entry = http_entry(
            "everything",
            everything.url(),
            tools={"allow": ["trigger-elicitation-request"]},
            timeout_seconds=1,
        )
        pool = await make_pool(entry, elicitation=on_elicitation)
        name = "everything__trigger-elicitation-request"
        with asking_for(replace(asker, tool_name=name)):
            call = asyncio.create_task(
                pool.call_tool(name, {}, context={}, idempotency_key=uuid.uuid4().hex)
            )
        question = await open_question(asker)
        asked = time.monotonic()
        # The person takes longer than the call's timeout_seconds to answer.
        await wait_until(lambda: time.monotonic() - asked > 1.5, within=5, message="a pause")
        answer = Answer("accept", datetime.now(UTC).isoformat(), "caller", {"name": "Ada"})
        await asker.questions.answer(asker.ref, asker.run_id, question.question_id, answer)
        elicitation.answered(asker.run_id, question.question_id)
        outcome = await asyncio.wait_for(call, timeout=20)
    assert not outcome.is_error and "Ada" in outcome.text
