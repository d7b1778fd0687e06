"""The Scheduler's dispatcher: signed callbacks, batching, retries, dead letters, restarts.

Time is the test's `FakeClock`; each tick is `await dispatcher.run_once()`, so nothing waits on
the wall clock (only the background-loop test waits, on an event, with a bound).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mcp import ClientSession
from mcp.types import CallToolResult
from standardwebhooks import Webhook

from agent.http.callbacks import parse_callback
from agent.webhooks import decode_secret, verify
from devkit.scheduler import (
    HOST,
    WEBHOOK_SECRET,
    FakeClock,
    RunningScheduler,
    WebhookReceiver,
    free_port,
    mcp_session,
)
from samples.scheduler_mcp import Scheduler, TickReport
from tests.samples.conftest import StartScheduler


async def schedule(
    session: ClientSession,
    endpoint: str,
    when: str,
    *,
    conversation_id: str = "conv-1",
    text: str = "Remind me to send the report",
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    arguments = {
        "conversation_text": text,
        "scheduled_time": when,
        "endpoint": endpoint,
        "conversation_id": conversation_id,
    }
    result = await session.call_tool("schedule_conversation", arguments, meta=meta)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def entries(session: ClientSession) -> dict[str, dict[str, Any]]:
    result: CallToolResult = await session.call_tool("list_scheduled_conversations", {})
    assert result.structured_content is not None
    return {entry["schedule_id"]: entry for entry in result.structured_content["result"]}


async def tick(running: RunningScheduler) -> TickReport:
    return await running.scheduler.dispatcher.run_once()


async def test_a_due_conversation_is_delivered_signed_so_the_reference_library_verifies_it(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    endpoint = receiver.url(query="code=function-key")
    async with mcp_session(running.url) as session:
        created = await schedule(session, endpoint, clock.iso(60), conversation_id="conv-7")
        assert await tick(running) == TickReport()  # not due yet
        clock.advance(60)
        report = await tick(running)
        assert report == TickReport(claimed=1, sent=1, delivered=1)
        [callback] = receiver.callbacks
        listed = (await entries(session))[created["schedule_id"]]

    assert (callback.path, callback.query) == ("/api/scheduler/callback", "code=function-key")
    assert callback.headers["content-type"] == "application/json"
    assert Webhook(WEBHOOK_SECRET).verify(callback.body, callback.webhook_headers) == {
        "type": "conversations.due",
        "items": [
            {
                "schedule_id": created["schedule_id"],
                "conversation_id": "conv-7",
                "content": "Remind me to send the report",
                "scheduled_time": created["scheduled_time"],
            }
        ],
    }
    # The app's own verifier and parser accept it too.
    webhook_id = verify(
        decode_secret(WEBHOOK_SECRET), callback.headers, callback.body, now=clock.now
    )
    assert webhook_id == callback.headers["webhook-id"] and webhook_id.startswith("msg_")
    assert parse_callback(callback.body)[0].conversation_id == "conv-7"
    assert (listed["status"], listed["attempts"], listed["next_attempt_time"]) == (
        "delivered",
        1,
        None,
    )
    assert await tick(running) == TickReport()  # delivered once, never again


async def test_due_conversations_are_batched_per_endpoint(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler(batch_size=3)
    first, second = receiver.url("/first"), receiver.url("/second")
    async with mcp_session(running.url) as session:
        for index in range(7):
            await schedule(session, first, clock.iso(10 + index), conversation_id=f"a{index}")
        for index in range(2):
            await schedule(session, second, clock.iso(10), conversation_id=f"b{index}")
        clock.advance(60)
        report = await tick(running)
        listed = await entries(session)

    assert report == TickReport(claimed=9, sent=4, delivered=9)
    sizes = sorted((c.path, len(c.schedule_ids)) for c in receiver.callbacks)
    assert sizes == [("/first", 1), ("/first", 3), ("/first", 3), ("/second", 2)]
    delivered = [sid for callback in receiver.callbacks for sid in callback.schedule_ids]
    assert sorted(delivered) == sorted(listed)  # each exactly once
    assert len({c.headers["webhook-id"] for c in receiver.callbacks}) == 4
    for callback in receiver.callbacks:
        assert Webhook(WEBHOOK_SECRET).verify(callback.body, callback.webhook_headers)
    first_batches = [c for c in receiver.callbacks if c.path == "/first"]
    in_order = [item["conversation_id"] for c in first_batches for item in c.document["items"]]
    assert sorted(in_order) == [f"a{i}" for i in range(7)]
    assert all(entry["status"] == "delivered" for entry in listed.values())


async def test_a_failed_delivery_is_retried_with_backoff_under_the_same_webhook_id(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler(backoff_base_seconds=10)
    receiver.script.append(500)
    async with mcp_session(running.url) as session:
        created = await schedule(session, receiver.url(), clock.iso(0))
        assert await tick(running) == TickReport(claimed=1, sent=1, retrying=1)
        waiting = (await entries(session))[created["schedule_id"]]
        assert (waiting["status"], waiting["attempts"], waiting["last_error"]) == (
            "pending",
            1,
            "HTTP 500",
        )
        assert waiting["next_attempt_time"] is not None

        assert await tick(running) == TickReport()  # backing off
        clock.advance(4.9)  # equal jitter: the first retry waits 5 to 10 s
        assert await tick(running) == TickReport()
        clock.advance(5.1)
        assert await tick(running) == TickReport(sent=1, delivered=1)
        done = (await entries(session))[created["schedule_id"]]

    first, retry = receiver.callbacks
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]  # the receiver can dedupe
    assert first.body == retry.body
    assert int(retry.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert Webhook(WEBHOOK_SECRET).verify(retry.body, retry.webhook_headers)
    assert (done["status"], done["attempts"], done["last_error"]) == ("delivered", 2, None)


async def test_a_retry_after_from_the_receiver_is_honoured(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler(backoff_base_seconds=1)
    receiver.script.append((503, {"Retry-After": "120"}))
    async with mcp_session(running.url) as session:
        await schedule(session, receiver.url(), clock.iso(0))
    assert (await tick(running)).retrying == 1
    clock.advance(119)
    assert await tick(running) == TickReport()
    clock.advance(1)
    assert await tick(running) == TickReport(sent=1, delivered=1)


async def test_a_delivery_that_keeps_failing_is_dead_lettered_after_max_attempts(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler(max_attempts=3, backoff_base_seconds=1, backoff_cap_seconds=4)
    receiver.script.extend([500] * 10)
    async with mcp_session(running.url) as session:
        created = await schedule(session, receiver.url(), clock.iso(0))
        reports = []
        for _ in range(3):
            reports.append(await tick(running))
            clock.advance(4)  # at least the capped backoff
        assert [r.retrying for r in reports] == [1, 1, 0]
        assert reports[-1].dead_lettered == 1
        assert await tick(running) == TickReport()  # dead letters are not retried
        failed = (await entries(session))[created["schedule_id"]]
        cancel = await session.call_tool(
            "cancel_scheduled_conversation", {"schedule_id": created["schedule_id"]}
        )

    assert (failed["status"], failed["attempts"], failed["last_error"]) == ("failed", 3, "HTTP 500")
    assert failed["next_attempt_time"] is None
    assert len(receiver.callbacks) == 3
    assert len({c.headers["webhook-id"] for c in receiver.callbacks}) == 1
    assert cancel.is_error and "already failed" in str(cancel.content)


async def test_an_unreachable_endpoint_counts_as_a_failed_attempt(
    start_scheduler: StartScheduler, clock: FakeClock
):
    running = await start_scheduler()
    async with mcp_session(running.url) as session:
        created = await schedule(session, f"http://{HOST}:{free_port()}/cb", clock.iso(0))
        assert (await tick(running)).retrying == 1
        entry = (await entries(session))[created["schedule_id"]]
    assert (entry["status"], entry["attempts"], entry["last_error"]) == (
        "pending",
        1,
        "ConnectError",
    )


async def test_a_conversation_cancelled_while_its_delivery_backs_off_is_not_sent_again(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler()
    receiver.script.append(500)
    async with mcp_session(running.url) as session:
        created = await schedule(session, receiver.url(), clock.iso(0))
        await tick(running)
        await session.call_tool(
            "cancel_scheduled_conversation", {"schedule_id": created["schedule_id"]}
        )
        clock.advance(600)
        assert await tick(running) == TickReport()
        assert (await entries(session))[created["schedule_id"]]["status"] == "cancelled"
    assert len(receiver.callbacks) == 1


async def test_pending_conversations_survive_a_restart_and_are_delivered_after_it(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    first_run = await start_scheduler(backoff_base_seconds=1)
    receiver.script.append(500)
    async with mcp_session(first_run.url) as session:
        retrying = await schedule(session, receiver.url(), clock.iso(0), conversation_id="r")
        await tick(first_run)  # failed once: mid-backoff when the server goes down
        later = await schedule(
            session,
            receiver.url(),
            clock.iso(300),
            conversation_id="l",
            meta={"idempotency_key": "k"},
        )
    await first_run.stop()

    second_run = await start_scheduler(backoff_base_seconds=1)
    async with mcp_session(second_run.url) as session:
        before = await entries(session)
        assert {sid: e["status"] for sid, e in before.items()} == {
            retrying["schedule_id"]: "pending",
            later["schedule_id"]: "pending",
        }
        assert before[retrying["schedule_id"]]["attempts"] == 1
        replayed = await schedule(
            session,
            receiver.url(),
            later["scheduled_time"],
            conversation_id="l",
            meta={"idempotency_key": "k"},
        )
        assert replayed == later  # the idempotency key survived too
        clock.advance(300)
        assert await tick(second_run) == TickReport(claimed=1, sent=2, delivered=2)
        after = await entries(session)

    assert all(entry["status"] == "delivered" for entry in after.values())
    failed_attempt, *after_restart = receiver.callbacks
    retried = next(c for c in after_restart if c.schedule_ids == [retrying["schedule_id"]])
    assert retried.headers["webhook-id"] == failed_attempt.headers["webhook-id"]


async def test_the_background_dispatcher_delivers_without_being_driven(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler(tick_seconds=0.02)
    async with mcp_session(running.url) as session:
        created = await schedule(session, receiver.url(), clock.iso(0))
        [callback] = await receiver.wait_for(1)
    assert callback.schedule_ids == [created["schedule_id"]]
    assert json.loads(callback.body)["type"] == "conversations.due"


async def test_a_conversation_scheduled_for_now_is_sent_without_waiting_for_the_next_tick(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler(tick_seconds=3600)  # the loop's first tick is at startup
    async with mcp_session(running.url) as session:
        later = await schedule(session, receiver.url(), clock.iso(60), conversation_id="later")
        now = await schedule(session, receiver.url(), clock.iso(0), conversation_id="now")
        [callback] = await receiver.wait_for(1)
    assert callback.schedule_ids == [now["schedule_id"]]
    assert later["status"] == "pending"


async def test_stopping_the_server_stops_the_dispatcher_and_closes_the_state_file(
    start_scheduler: StartScheduler, clock: FakeClock, receiver: WebhookReceiver
):
    running = await start_scheduler(tick_seconds=0.02)
    scheduler: Scheduler = running.scheduler
    await running.stop()
    assert all(task.get_name() != "scheduler-dispatcher" for task in asyncio.all_tasks())
    assert scheduler.store.closed
