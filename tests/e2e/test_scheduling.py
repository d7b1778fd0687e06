"""Scheduled conversations end to end on the local host, with the sample Scheduler MCP server
calling the app back on signed, batched webhooks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks import Webhook

from agent import runtime
from agent.http.callers import ANONYMOUS
from agent.transcript import SCHEDULED_BY_ASSISTANT
from devkit.scheduler import WEBHOOK_SECRET
from local_host.testing import wait_until
from storage.batches import batch_id_for_webhook, run_id_of
from storage.conversations import ConversationRef
from tests.e2e.conftest import TERMINAL, App, SchedulerService

CALLBACK = "/scheduler/callback"


def signed(body: dict[str, Any], *, webhook_id: str | None = None, at: float | None = None):
    """Headers and body signed by the reference `standardwebhooks` package."""
    raw = json.dumps(body)
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = datetime.fromtimestamp(at if at is not None else time.time(), tz=UTC)
    signature = Webhook(WEBHOOK_SECRET).sign(webhook_id, timestamp, raw)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return headers, raw


def due(*items: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "conversations.due",
        "items": [
            {"schedule_id": f"s{i}", "conversation_id": c, "content": text, "scheduled_time": None}
            for i, (c, text) in enumerate(items)
        ],
    }


async def turns(app: App, conversation: str) -> list[str]:
    _, body, _ = await app.call("GET", f"/conversations/{conversation}")
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


async def answered(
    app: App, conversation: str, text: str, within: float = 30, **headers: str
) -> dict[str, Any]:
    """Wait until `text` was asked in the conversation and answered."""

    async def check() -> dict[str, Any] | None:
        _, body, _ = await app.call("GET", f"/conversations/{conversation}", headers=headers)
        messages = body["messages"]
        for i, m in enumerate(messages):
            if m["role"] == "user" and m["content"] == text and body["active_run_id"] is None:
                later = [x for x in messages[i + 1 :] if x["role"] == "assistant"]
                return later[-1] if later else None
        return None

    return await wait_until(check, within=within, message=f"{text!r} answered")


async def stored_batch(batch_id: str) -> Any:
    return await runtime.current().batches.get(batch_id)  # type: ignore[union-attr]


async def test_a_signed_callback_runs_each_item_in_its_conversation(app: App):
    first, second = await app.new_conversation(), await app.new_conversation()
    headers, raw = signed(due((first, "scheduled hello"), (second, "scheduled bye")))
    status, body, _ = await app.call("POST", CALLBACK, data=raw, headers=headers)
    assert status == 202, body
    assert body["duplicate"] is False and body["items"] == 2
    assert "[offline model]" in (await answered(app, first, "scheduled hello"))["content"]
    assert "[offline model]" in (await answered(app, second, "scheduled bye"))["content"]


async def test_the_signature_matrix(app: App):
    conversation = await app.new_conversation()
    body = due((conversation, "matrix"))
    good_headers, raw = signed(body)
    other_headers, _ = signed(body, webhook_id=good_headers["webhook-id"])
    cases = {
        "missing": ({"content-type": "application/json"}, raw),
        "tampered body": (good_headers, raw.replace("matrix", "matriX")),
        "tampered signature": (
            {**good_headers, "webhook-signature": good_headers["webhook-signature"][:-4] + "AAA="},
            raw,
        ),
        "old timestamp": signed(body, at=time.time() - 6 * 60),
        "future timestamp": signed(body, at=time.time() + 6 * 60),
    }
    for name, (headers, data) in cases.items():
        status, problem, _ = await app.call("POST", CALLBACK, data=data, headers=headers)
        assert status == 401, name
        assert problem["detail"], name
        webhook_id = headers.get("webhook-id")
        if webhook_id:  # nothing stored for a refused delivery
            assert await stored_batch(batch_id_for_webhook(webhook_id)) is None, name
    assert await turns(app, conversation) == []

    rotated = f"v1,{'A' * 43}= {other_headers['webhook-signature']}"  # an old key's, then ours
    status, _, _ = await app.call(
        "POST", CALLBACK, data=raw, headers={**good_headers, "webhook-signature": rotated}
    )
    assert status == 202
    await answered(app, conversation, "matrix")


async def test_a_hundred_concurrent_deliveries_of_one_webhook_start_exactly_one_batch(app: App):
    conversation = await app.new_conversation()
    headers, raw = signed(due((conversation, "only once")))
    replies = await asyncio.gather(
        *(app.call("POST", CALLBACK, data=raw, headers=headers) for _ in range(100))
    )
    assert [status for status, _, _ in replies] == [202] * 100
    assert sum(not body["duplicate"] for _, body, _ in replies) == 1
    await answered(app, conversation, "only once")
    again = await app.call("POST", CALLBACK, data=raw, headers=headers)  # a late redelivery
    assert again[0] == 202 and again[1]["duplicate"] is True
    assert await turns(app, conversation) == ["only once"]


async def test_the_seeds_single_form_is_accepted(app: App):
    conversation = await app.new_conversation()
    body = {"conversationId": conversation, "status": "due", "content": "single form"}
    headers, raw = signed(body)
    status, reply, _ = await app.call("POST", CALLBACK, data=raw, headers=headers)
    assert status == 202 and reply["items"] == 1
    await answered(app, conversation, "single form")


async def test_an_unknown_conversation_is_rejected_and_the_rest_of_the_batch_runs(app: App):
    owner = {"x-ms-client-principal-id": "batch-owner"}
    known = await app.new_conversation(**owner)
    headers, raw = signed(due(("no-such-conversation", "lost"), (known, "found")))
    status, reply, _ = await app.call("POST", CALLBACK, data=raw, headers=headers)
    assert status == 202
    await answered(app, known, "found", **owner)

    async def settled() -> dict[str, Any] | None:
        _, view, _ = await app.call("GET", f"/batches/{reply['batch_id']}", headers=owner)
        return view if view["items"][0]["status"] == "completed" else None

    view = await wait_until(settled, within=20, message="batch settled")
    # the caller sees only the items in their own conversations
    assert [item["conversation_id"] for item in view["items"]] == [known]
    assert view["counts"] == {"completed": 1}
    assert "[offline model]" in view["items"][0]["answer"]
    stranger = await app.call(
        "GET", f"/batches/{reply['batch_id']}", headers={"x-ms-client-principal-id": "x"}
    )
    assert stranger[0] == 404
    batch = await stored_batch(reply["batch_id"])
    assert batch.items[0].status == "rejected" and "no conversation" in batch.items[0].error


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def schedule_tool_line(text: str, seconds: float, **extra: str) -> str:
    arguments = {"conversation_text": text, "scheduled_time": in_seconds(seconds), **extra}
    return f"/tool scheduler__schedule_conversation {json.dumps(arguments)}"


async def schedule_by_model(
    app: App, conversation: str, line: str, *, approve: bool = True
) -> dict[str, Any]:
    """Send `line`; the model's schedule_conversation waits for approval: answer it; the run's
    final view."""
    status, body, _ = await app.send(conversation, line)
    assert status == 202, body
    run_id = body["run_id"]

    async def waiting() -> list[str] | None:
        _, run, _ = await app.call("GET", f"/runs/{run_id}")
        return run.get("pending_approvals") if run["status"] == "waiting_for_approval" else None

    [call_id] = await wait_until(waiting, within=20, message="scheduling awaits approval")
    status, _, _ = await app.call(
        "POST",
        f"/runs/{run_id}/approvals",
        json={"tool_call_id": call_id, "approved": approve},
    )
    assert status == 202
    return await app.run_until_done(run_id, within=60)


async def test_the_model_schedules_a_conversation_and_its_answer_lands_there(
    app: App, scheduler: SchedulerService
):
    conversation = await app.new_conversation()
    body = await schedule_by_model(app, conversation, schedule_tool_line("ping later", 2))
    assert body["status"] == "completed", body
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    [result] = [m for m in transcript["messages"] if m["role"] == "tool"]
    assert not result["is_error"], result["content"]
    assert "schedule_id" in result["content"]
    assert "[offline model]" in (await answered(app, conversation, "ping later"))["content"]
    [schedule] = scheduler.schedules_of(conversation)
    assert schedule.status == "delivered"


async def test_the_model_cannot_redirect_the_callback_or_the_conversation(app: App):
    mine, other = await app.new_conversation(), await app.new_conversation()
    line = schedule_tool_line(
        "hijack", 2, endpoint="http://attacker.example/hook", conversation_id=other
    )
    assert (await schedule_by_model(app, mine, line))["status"] == "completed"
    # the pinned values win: the scheduled turn arrives in *this* conversation, via our callback
    await answered(app, mine, "hijack")
    assert await turns(app, other) == []


async def test_a_pending_schedule_survives_a_scheduler_restart(
    app: App, scheduler: SchedulerService
):
    conversation = await app.new_conversation()
    body = await schedule_by_model(app, conversation, schedule_tool_line("after restart", 3))
    assert body["status"] == "completed"
    await scheduler.stop()
    await scheduler.start()
    await answered(app, conversation, "after restart")


async def test_a_batch_scheduled_over_http_goes_through_the_scheduler(app: App):
    existing = await app.new_conversation()
    items = [
        {"content": "batch one", "scheduled_time": in_seconds(2)},
        {"content": "batch two", "scheduled_time": in_seconds(2), "conversation_id": existing},
    ]
    status, body, _ = await app.call("POST", "/schedules", json={"items": items})
    assert status == 202, body
    assert [i["status"] for i in body["items"]] == ["scheduled", "scheduled"], body
    assert all(i["schedule_id"] for i in body["items"])
    assert body["items"][1]["conversation_id"] == existing
    new = body["items"][0]["conversation_id"]
    await answered(app, new, "batch one")
    await answered(app, existing, "batch two")

    # The Scheduler's callback ran them under its own batch: this batch still shows each run.
    async def settled() -> dict[str, Any] | None:
        status, view, _ = await app.call("GET", f"/batches/{body['batch_id']}")
        assert status == 200, view
        return view if view["counts"] == {"completed": 2} else None

    view = await wait_until(settled, within=30, message="the scheduled batch shows its runs")
    for item in view["items"]:
        assert item["schedule_id"] and item["run_id"], item
        assert "[offline model]" in item["answer"], item
        _, run, _ = await app.call("GET", f"/runs/{item['run_id']}")
        assert run["conversation_id"] == item["conversation_id"] and run["status"] == "completed"
    assert [await turns(app, item["conversation_id"]) for item in view["items"]] == [
        ["batch one"],
        ["batch two"],
    ]


async def test_bad_schedule_requests_are_refused_before_anything_is_written(app: App):
    cases = [
        ({"items": []}, "'items'"),
        ({"items": [{"content": "x"}]}, "scheduled_time"),
        ({"items": [{"content": "x", "scheduled_time": "tomorrow"}]}, "ISO 8601"),
        ({"items": [{"content": "x", "scheduled_time": "2030-01-01T00:00:00"}]}, "timezone"),
        ({"items": [{"content": "", "scheduled_time": in_seconds(60)}]}, "content"),
        (
            {
                "items": [
                    {"content": "x", "scheduled_time": in_seconds(60), "conversation_id": "../x"}
                ]
            },
            "conversation_id",
        ),
        (
            {
                "items": [
                    {
                        "content": "x",
                        "scheduled_time": in_seconds(60),
                        "conversation_id": "not-mine",
                    }
                ]
            },
            "not-mine",
        ),
    ]
    for request, detail in cases:
        status, problem, _ = await app.call("POST", "/schedules", json=request)
        assert 400 <= status < 500, (request, problem)
        assert detail in problem["detail"], (request, problem)


async def test_a_batch_item_whose_time_has_passed_is_taken_and_shown_rejected(app: App):
    items = [
        {"content": "too late", "scheduled_time": "2001-01-01T00:00:00Z"},
        {"content": "on time", "scheduled_time": in_seconds(2)},
    ]
    status, body, _ = await app.call("POST", "/schedules", json={"items": items})
    assert status == 202, body
    late, on_time = body["items"]
    assert (
        late["status"] == "rejected" and "items[0].scheduled_time is in the past" in late["error"]
    )
    assert "schedule_id" not in late
    assert on_time["status"] == "scheduled"
    await answered(app, on_time["conversation_id"], "on time")
    _, transcript, _ = await app.call("GET", f"/conversations/{late['conversation_id']}")
    assert transcript["messages"] == []


async def test_scheduler_down_gives_the_model_a_clear_tool_error(
    app: App, scheduler: SchedulerService
):
    conversation = await app.new_conversation()
    # The Scheduler was up when the model saw its tools (a first, rejected scheduling lists
    # them whatever ran before this test), then it goes down before the call is made.
    await schedule_by_model(app, conversation, schedule_tool_line("seen", 60), approve=False)
    await scheduler.stop()
    try:
        body = await schedule_by_model(app, conversation, schedule_tool_line("never", 60))
    finally:
        await scheduler.start()
    assert body["status"] == "completed"
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    [_, result] = [m for m in transcript["messages"] if m["role"] == "tool"]
    assert result["is_error"] is True
    assert "scheduler" in result["content"].lower()
    # nothing half-recorded: the Scheduler holds no schedule for this conversation
    assert scheduler.schedules_of(conversation) == []


async def test_a_scheduling_nobody_approved_never_reaches_the_scheduler(
    app: App, scheduler: SchedulerService
):
    conversation = await app.new_conversation()
    line = schedule_tool_line("injected for later", 2)
    body = await schedule_by_model(app, conversation, line, approve=False)
    assert body["status"] == "completed"
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    [result] = [m for m in transcript["messages"] if m["role"] == "tool"]
    assert result["is_error"] and "rejected" in result["content"]
    assert scheduler.schedules_of(conversation) == []


async def user_messages(app: App, conversation: str) -> dict[str, dict[str, Any]]:
    _, body, _ = await app.call("GET", f"/conversations/{conversation}")
    return {m["content"]: m for m in body["messages"] if m["role"] == "user"}


async def test_a_conversation_the_model_scheduled_arrives_as_the_assistants_not_the_users(
    app: App,
):
    conversation = await app.new_conversation()
    marker = f"planned {uuid.uuid4().hex[:8]}"
    line = schedule_tool_line(marker, 2)
    assert (await schedule_by_model(app, conversation, line))["status"] == "completed"
    await answered(app, conversation, marker)

    shown = await user_messages(app, conversation)
    assert "origin" not in shown[line]  # typed by the caller
    assert shown[marker]["origin"] == "scheduled_by_assistant"
    # The turn it opened showed it to the model as the assistant's, fenced.
    last_texts = [str(r.body["messages"][-1].get("content")) for r in app.model.chat_requests()]
    [seen] = [text for text in last_texts if f"\n{marker}\n[end of untrusted" in text]
    assert seen.startswith(SCHEDULED_BY_ASSISTANT)


async def test_a_conversation_its_owner_scheduled_arrives_as_theirs(app: App):
    conversation = await app.new_conversation()
    marker = f"mine {uuid.uuid4().hex[:8]}"
    items = [{"content": marker, "scheduled_time": in_seconds(2), "conversation_id": conversation}]
    status, body, _ = await app.call("POST", "/schedules", json={"items": items})
    assert status == 202, body
    await answered(app, conversation, marker)
    assert (await user_messages(app, conversation))[marker]["origin"] == "scheduled"


async def test_a_delivery_the_app_cannot_trace_to_the_owner_counts_as_the_assistants(app: App):
    conversation = await app.new_conversation()
    headers, raw = signed(due((conversation, "from nowhere")))
    status, _, _ = await app.call("POST", CALLBACK, keyed=False, data=raw, headers=headers)
    assert status == 202
    await answered(app, conversation, "from nowhere")
    shown = await user_messages(app, conversation)
    assert shown["from nowhere"]["origin"] == "scheduled_by_assistant"


async def test_an_owner_schedule_labels_its_own_delivery_and_its_repeats_but_no_later_one(
    app: App,
):
    conversation = await app.new_conversation()
    marker = f"mine once {uuid.uuid4().hex[:8]}"
    when = in_seconds(3600)  # the Scheduler holds it; this test delivers it as the Scheduler will
    items = [{"content": marker, "scheduled_time": when, "conversation_id": conversation}]
    assert (await app.call("POST", "/schedules", json={"items": items}))[0] == 202
    delivery = {
        "type": "conversations.due",
        "items": [
            {"schedule_id": "s0", "conversation_id": conversation, "content": marker,
             "scheduled_time": when}
        ],
    }  # fmt: skip

    async def deliver(headers: dict[str, str], raw: str) -> dict[str, Any]:
        status, body, _ = await app.call("POST", CALLBACK, keyed=False, data=raw, headers=headers)
        assert status == 202, body
        run_id = run_id_of(body["batch_id"], 0)

        async def ended() -> bool:  # (404 until the batch's lane starts the item's run)
            status, run, _ = await app.call("GET", f"/runs/{run_id}")
            return status == 200 and run["status"] in TERMINAL

        await wait_until(ended, within=30, message=f"run {run_id} ended")
        _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
        return next(m for m in transcript["messages"] if m.get("run_id") == run_id)

    first = signed(delivery)
    assert (await deliver(*first))["origin"] == "scheduled"
    assert (await deliver(*first))["origin"] == "scheduled"  # at least once: the same delivery
    # The owner's scheduling is used up: the same text again is not theirs.
    assert (await deliver(*signed(delivery)))["origin"] == "scheduled_by_assistant"


async def test_a_delivery_shows_in_the_batch_item_due_at_its_time_whichever_route_it_came_by(
    app: App,
):
    conversation = await app.new_conversation()
    text = f"weekly {uuid.uuid4().hex[:6]}"
    monday, tuesday = in_seconds(3600), in_seconds(2 * 3600)  # held by the Scheduler meanwhile
    items = [
        {"content": text, "scheduled_time": when, "conversation_id": conversation}
        for when in (monday, tuesday)
    ]
    status, batch, _ = await app.call("POST", "/schedules", json={"items": items})
    assert status == 202 and [i["status"] for i in batch["items"]] == ["scheduled"] * 2, batch
    # Tuesday's comes first, signed and batched, its time written another way (UTC, "Z").
    when = datetime.fromisoformat(tuesday).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "type": "conversations.due",
        "items": [
            {"schedule_id": "s-tue", "conversation_id": conversation, "content": text,
             "scheduled_time": when}
        ],
    }  # fmt: skip
    headers, raw = signed(body)
    assert (await app.call("POST", CALLBACK, data=raw, headers=headers))[0] == 202

    async def statuses() -> list[str] | None:
        _, view, _ = await app.call("GET", f"/batches/{batch['batch_id']}")
        found = [item["status"] for item in view["items"]]
        return found if found[1] == "completed" else None

    assert await wait_until(statuses, within=30, message="tuesday ran") == [
        "scheduled",
        "completed",
    ]
    # then the seeds' unsigned form, with no time, before Monday's is due: it is not Monday's
    # delivery (nor the owner's words), so it fills no item of the batch
    status, reply, _ = await app.call(
        "POST",
        "/scheduler/conversation-callback",
        json={"conversationId": conversation, "status": "due", "content": text},
    )
    assert status == 200, reply

    async def unsigned_ran() -> str | None:
        _, view, _ = await app.call("GET", f"/batches/{reply['batch_id']}")
        status = view["items"][0]["status"]
        return None if status in ("pending", "running") else status

    assert await wait_until(unsigned_ran, within=30, message="the unsigned one ran") == "completed"
    _, transcript, _ = await app.call("GET", f"/conversations/{conversation}")
    [unsigned] = [
        m
        for m in transcript["messages"]
        if m["role"] == "user" and m.get("run_id") == reply["run_id"]
    ]
    assert unsigned["origin"] == "scheduled_by_assistant"
    _, view, _ = await app.call("GET", f"/batches/{batch['batch_id']}")
    assert [item["status"] for item in view["items"]] == ["scheduled", "completed"]
    # Monday's own delivery, signed at its time, fills Monday's item
    body["items"][0].update(schedule_id="s-mon", scheduled_time=monday)
    headers, raw = signed(body)
    status, monday_reply, _ = await app.call("POST", CALLBACK, data=raw, headers=headers)
    assert status == 202, monday_reply

    async def both() -> dict[str, Any] | None:
        _, view, _ = await app.call("GET", f"/batches/{batch['batch_id']}")
        return view if view["counts"] == {"completed": 2} else None

    view = await wait_until(both, within=30, message="monday ran too")
    assert view["items"][0]["run_id"] == run_id_of(monday_reply["batch_id"], 0)
    assert reply["run_id"] not in {item["run_id"] for item in view["items"]}


async def test_a_delivery_to_a_conversation_whose_cancelled_run_nobody_polled_runs_once_it_ended(
    app: App,
):
    from tests.e2e.test_approvals import WRITE, tool_results, waiting_run

    conversation, run_id, _ = await waiting_run(app, WRITE)
    await app.host.runtime.stop()  # Durable's workers stall: the terminate waits in its queue
    try:
        status, body, _ = await app.call("POST", f"/runs/{run_id}/cancel")
        assert status == 202 and body["status"] == "cancelling"  # the run keeps the lock
        headers, raw = signed(due((conversation, "after the cancel")))
        assert (await app.call("POST", CALLBACK, data=raw, headers=headers))[0] == 202
    finally:
        await app.host.runtime.start()

    # Nobody asks about the cancelled run: the delivery's own take must see it ended.
    reply = await answered(app, conversation, "after the cancel", within=60)
    assert "[offline model]" in reply["content"]
    assert (await app.run_until_done(run_id))["status"] == "cancelled"
    assert "guarded__save_text_file" not in await tool_results(app, conversation)


async def test_a_delivery_to_a_conversation_whose_run_failed_runs(app: App):
    conversation = await app.new_conversation()
    run_id = uuid.uuid4().hex
    rt = runtime.current()
    assert rt is not None
    # A turn whose orchestration then failed: Durable runs no `finish_turn` for it, so the lock
    # stays with it (an input the orchestrator cannot read fails it as any unexpected error).
    await rt.store.begin_turn(ConversationRef(ANONYMOUS, conversation), run_id)
    await app.durable_client().start_new("chat_turn", run_id, {"not": "a turn"})
    await app.host.runtime.wait_for_status(run_id, {"Failed"}, within=20)

    headers, raw = signed(due((conversation, "after the failure")))
    assert (await app.call("POST", CALLBACK, data=raw, headers=headers))[0] == 202
    reply = await answered(app, conversation, "after the failure", within=60)
    assert "[offline model]" in reply["content"]
