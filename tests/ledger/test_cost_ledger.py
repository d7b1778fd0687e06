"""What a turn, a step and a scheduled item cost today, in counts: pinned so a cut shows.

Each bound is today's count (issue #16 item 1, measured on main before any cut): a change that
adds a hop, a history event or a Blob request fails here; a change that removes some lowers the
bound in the same commit. A count with no bound must be zero (a new kind of Blob request fails).
Byte counts get 2% of room: a timestamp's text may be shorter (no microseconds at .000000).
"""

from __future__ import annotations

import json
from collections import Counter

from devkit.ledger import format_table
from devkit.scheduler import signed_callback
from local_host.history import TERMINAL_STATUSES
from offline_model.replies import Completion, ToolCallSpec
from tests.ledger.conftest import CountedApp

GREET = ToolCallSpec("web__greet", '{"name": "ledger"}')
BYTE_ROOM = 1.02

# Measured on main at f8eff86 (tail reads and last_active_at in metas landed; before #16's
# cuts). #12's run event log (one append blob per run: keyed events, each a conditional append,
# read back to resume) doubled the Blob requests of a one-tool-call turn: 14 -> 28 (20 steps: 140 -> 244).
# At 273f606 only the bytes differed (metas 52 bytes shorter).
# #16, the event log's cut: a run's first step creates its log and appends (no failed probe
# first), an append that lands proves the writer's cursor current (no read of the log at each
# model step): 28 -> 24 (20 steps: 244 -> 222; batch of 3: 60 -> 51). (A step's last text now
# goes with its end in one append; that saves nothing here, where an answer is one piece.)
# #13's conversation listing (storage.activity): a turn's start and its end each put the
# conversation's new activity marker and delete the old one: +4 requests per turn (24 -> 28;
# 20 steps 222 -> 226; a batch of 3, 51 -> 63), constant in the owner's conversations. The
# first message's preview (at most 120 characters) is kept in the meta.
# POST .../messages counts the conversation's tokens from the process's transcript cursor instead
# of reading the whole transcript: 28 -> 27 (20 steps 226 -> 225).
# Version 4 (durable MCP tasks): each tool_call input carries `may_await_task`, replayed with the
# history: replayed bytes 10445 -> 10691 (20 steps: history 35891 -> 36981, replayed 731502 -> 754392).
# #16 items 2-3 (flatreplay, orchestration version 4): the answering model step ends the turn
# itself (run_finished in its end append, the lock released): no finish_turn activity, episode,
# transcript read or event append; one fresh read of the meta instead (a run cancelled while the
# model answered has given the turn back: its end is not the step's to write). Before -> after:
# activities 4 -> 3, episodes 5 -> 4, history events 20 -> 16 (4545 -> 4077 bytes), replayed
# 40 -> 24 (10691 -> 6823 bytes), Blob 27 -> 26 (get 5 -> 5: the transcript read is now a meta
# read; append 12 -> 11; bytes read 3911 -> 2399). (The pinned 416 of an empty
# transcript's ranged read no longer occurred on main before this change.)
# #16 reqcuts (measured on main at 18c37d0, whose counts were already below some bounds: a
# batch of 3 was 57 requests, 20 appends): a reply whose stream ended before its first text write
# began goes with the step's end in one append (agent.events.TextDeltas.stream_ended): one append
# less per answering step: 26 -> 25 (20 steps 224 -> 223; 30 s task 45 -> 44; batch of 3 57 -> 54).
# The answering step ends its turn without reading the meta first: the release is an
# ETag-conditional write from the meta this process kept since the turn began (a stale copy
# costs a 412 and the read), and decides the run's end, which follows it in the step's end
# append (an append that creates no log: a conversation deleted once the turn was free keeps no
# log). A cancel that gave the turn back first still wins. One get less per turn: 25 -> 24
# (20 steps 223 -> 222; 30 s task 44 -> 43; batch of 3 54 -> 51).
# A model step that follows its run's own writes in this process (the turn's opening message,
# or the previous reply and a result for each of its calls) builds its window from the process's
# copy of the transcript's newest lines (storage.transcript, at most 64 conversations x 256 KB):
# during a turn only its run writes, one activity after another, so nothing else can lie beyond
# them but a reply an earlier attempt of the step stored elsewhere, which the reply's append finds
# (its records are created, not replaced, first). Any doubt reads as before. The run's event log is
# created with the opening message (beside it, one round trip), so a step that finds no log finds
# its conversation gone before it asks the model. One get less per model step: 24 -> 22 (20 steps
# 222 -> 202, bytes read 200797 -> 5084; 30 s task 43 -> 41; batch of 3 51 -> 48).
ONE_TOOL_CALL_TURN = {
    "activities": 3,
    "activities:model_step": 2,
    "activities:tool_call": 1,
    "episodes": 4,
    "episodes:chat_turn": 4,
    "history_events": 16,
    "history_bytes": 4077,
    "replayed_events": 24,
    "replayed_bytes": 6823,
    "blob_requests": 22,
    "blob:get": 2,
    "blob:put": 8,
    "blob:delete": 2,
    "blob:append": 10,
    "blob_bytes_read": 466,
    "blob_bytes_written": 5531,
}
# Version 4 also continues a turn as new every 4 model steps (references-only state): replay
# stops growing with the square of the steps, for one more episode and a restarted history per
# 4 steps. Before -> after: activities 40 -> 39, episodes 41 -> 44, history events 164 -> 176
# (36981 -> 43947 bytes), replayed 3280 -> 688 events (754392 -> 180741 bytes), Blob 225 -> 224
# (get 41 -> 41, append 120 -> 119; bytes read 220408 -> 200998).
TWENTY_STEP_TURN = {
    "activities": 39,
    "activities:model_step": 20,
    "activities:tool_call": 19,
    "episodes": 44,
    "episodes:chat_turn": 44,
    "history_events": 176,
    "history_bytes": 43947,
    "replayed_events": 688,  # flat per episode (tests/ledger/test_replay_stays_flat.py)
    "replayed_bytes": 180741,
    "blob_requests": 202,
    "blob:get": 20,
    "blob:put": 62,
    "blob:delete": 2,
    "blob:append": 118,
    "blob_bytes_read": 5084,  # each reply stores its prompt_estimate (context window)
    "blob_bytes_written": 68386,
}
# #16 batchperf (before -> after, a batch of 3 on one lane): version 4's lane runs four items
# per execution, so the episode that started each next execution goes: episodes 22 -> 19
# (batch_lane 11 -> 8), history events 88 -> 76 (bytes 21974 -> 18269); the lane replays its
# execution's earlier items instead, bounded by the four: replayed events 80 -> 152 (bytes
# 24363 -> 42446). A claim after this process's own claims is one append (no read of the
# queue): blob requests 63 -> 60 (get 17 -> 14; bytes read 5048 -> 4664).
# The answering step ends the turn itself (flatreplay, above) for a scheduled item's turn too:
# its bounds had stayed at the counts before that cut. Brought down to them: activities 10 -> 7
# (no finish_turn), episodes 19 -> 16 (chat_turn 9 -> 6), history events 76 -> 64 (bytes
# 18269 -> 16526), replayed 152 -> 128 (bytes 42446 -> 35297).
SCHEDULED_BATCH_OF_3 = {
    "activities": 7,
    "activities:take_batch_item": 4,  # one per item, and one that finds the queue empty
    "activities:model_step": 3,
    "episodes": 16,
    "episodes:scheduled_batch": 2,
    "episodes:batch_lane": 8,
    "episodes:chat_turn": 6,
    "history_events": 64,
    "history_bytes": 16526,
    "replayed_events": 128,
    "replayed_bytes": 35297,
    "blob_requests": 48,
    "blob:get": 8,
    "blob:put": 17,
    "blob:delete": 6,
    "blob:append": 17,
    "blob:failed:get:404": 4,  # no batch of this webhook yet; no owner schedule per item
    "blob:failed:append:404": 1,  # the queue's claims blob, created on the first claim
    "blob_bytes_read": 1067,
    "blob_bytes_written": 7451,
}


def assert_at_most(cost: Counter[str], bounds: dict[str, int], title: str) -> None:
    """Every count within its bound (bytes with their room); the table is printed for the note."""
    table = format_table({title: cost})
    print(f"\n{table}")
    over = {
        key: (count, bounds.get(key, 0))
        for key, count in cost.items()
        if count > bounds.get(key, 0) * (BYTE_ROOM if "bytes" in key else 1)
    }
    assert over == {}, f"over today's bound (count, bound): {over}\n{table}"


async def counted_turn(app: CountedApp, steps: int) -> Counter[str]:
    """One turn of `steps` model calls (a greet tool call on each but the last), its cost."""
    brain = app.model.brain
    for _ in range(steps - 1):
        brain.then(Completion(tool_calls=(GREET,)))
    brain.answer("done")
    conversation = (await app.post("/conversations"))["id"]
    before = app.ledger.snapshot()
    reply = await app.post(f"/conversations/{conversation}/messages", json={"content": "go"})
    done = await app.host.runtime.wait_for_status(reply["run_id"], TERMINAL_STATUSES, within=60)
    cost = app.ledger.snapshot() - before
    assert str(done.runtime_status) == "Completed", done.output_raw
    return cost


async def test_a_one_tool_call_turn_costs_at_most_todays_counts(counted: CountedApp) -> None:
    cost = await counted_turn(counted, steps=2)
    assert cost["activities:model_step"] == 2  # the ledger sees the turn at all
    assert_at_most(cost, ONE_TOOL_CALL_TURN, "one-tool-call turn")


async def test_a_twenty_step_turn_costs_at_most_todays_counts(counted: CountedApp) -> None:
    cost = await counted_turn(counted, steps=20)
    assert cost["activities:model_step"] == 20
    assert_at_most(cost, TWENTY_STEP_TURN, "20-step turn")


TASK_REPORT = ToolCallSpec("tasks__slow_report", '{"topic": "ledger"}')
# A tool call its server runs as a 30-second task (pollInterval 5 s: six polls), start to end:
# the waiting costs one timer episode, one poll activity and its episode per poll, not an
# activity held open for 30 s. Measured at mcptasks 0c49720+.
# Per poll: a timer episode and the poll's episode, two Blob reads (the call's record and its task
# record) and one event append (task_status).
TASK_WAIT_TURN = {
    "activities": 10,
    "activities:model_step": 2,
    "activities:tool_call": 1,
    "activities:poll_tool_task": 6,
    "activities:finish_turn": 1,
    "episodes": 17,
    "episodes:chat_turn": 17,
    "history_events": 68,
    "history_bytes": 12782,
    "replayed_events": 544,
    "replayed_bytes": 107876,
    "blob_requests": 41,
    "blob:get": 14,
    "blob:put": 9,
    "blob:delete": 2,
    "blob:append": 16,
    "blob_bytes_read": 3391,
    "blob_bytes_written": 7641,
}


async def test_a_thirty_second_task_costs_one_small_activity_per_poll(counted: CountedApp) -> None:
    brain = counted.model.brain
    brain.then(Completion(tool_calls=(TASK_REPORT,)))
    brain.answer("done")
    conversation = (await counted.post("/conversations"))["id"]
    before = counted.ledger.snapshot()
    reply = await counted.post(f"/conversations/{conversation}/messages", json={"content": "go"})
    run_id = reply["run_id"]
    done = await counted.host.runtime.wait_for_status(run_id, TERMINAL_STATUSES, within=60)
    cost = counted.ledger.snapshot() - before
    assert str(done.runtime_status) == "Completed", done.output_raw
    print(format_table({"30 s task turn": cost}))
    assert cost["activities:poll_tool_task"] == 6  # 30 s of task at its 5 s interval
    assert_at_most(cost, TASK_WAIT_TURN, "30-second task turn")


ITEMS = 3  # one lane (BATCH_MAX_CONCURRENCY=1): per item is the batch's count / 3


async def counted_batch(app: CountedApp, items: int) -> Counter[str]:
    """One signed Scheduler callback of `items` due conversations (one answer each), its cost."""
    for _ in range(items):
        app.model.brain.answer("done")
    conversations = [(await app.post("/conversations"))["id"] for _ in range(items)]
    due = [
        {
            "schedule_id": f"s{i}",
            "conversation_id": c,
            "content": f"item {i}",
            "scheduled_time": None,
        }
        for i, c in enumerate(conversations)
    ]
    headers, body = signed_callback(due)
    before = app.ledger.snapshot()
    reply = await app.post("/scheduler/callback", data=body, headers=headers)
    done = await app.host.runtime.wait_for_status(reply["batch_id"], TERMINAL_STATUSES, within=60)
    cost = app.ledger.snapshot() - before
    assert json.loads(done.output_raw or "null")["counts"] == {"completed": items}
    return cost


async def test_a_scheduled_item_costs_at_most_todays_counts(counted: CountedApp) -> None:
    cost = await counted_batch(counted, ITEMS)
    assert cost["activities:model_step"] == ITEMS
    assert_at_most(cost, SCHEDULED_BATCH_OF_3, f"batch of {ITEMS}")
