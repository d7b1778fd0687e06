"""Record the golden Durable histories in this folder from runs of the orchestrators as they are.

    .venv/bin/python -m tests.golden.record NAME [NAME ...]   # writes tests/golden/NAME.json

Each scenario starts one orchestration through the local host's engine (tests/support/replay.py,
the same episodes, replay and history events as `python -m local_host`) at the version it
records: version 1 unversioned (`default_version=""`, as every instance started before host.json
named a version), version 2 stamped "2.0" (host.json's `defaultVersion` when it shipped), with the
activities answering exactly what the real activities return (built with the same contract
classes: `StepSummary`, `ToolCallSummary`, the batch activities' dicts) and approvals raised
as `POST .../approvals` raises them. Every execution of every instance is written, sub-
orchestrations and continue-as-new included.

It refuses to overwrite a recording: a golden history records what an older deployment wrote
into a task hub, and must never be re-recorded or edited to make a test pass. Record a new
scenario under a new name instead.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.contracts import (
    AskedInput,
    BatchInput,
    ChatTurnInput,
    CompactionSummary,
    PendingTask,
    TaskAnswered,
    TaskPoll,
    ToolCallSummary,
)
from agent.loop import (
    APPROVAL_EVENT,
    APPROVAL_QUESTION,
    RESEND_QUESTION,
    StepSummary,
    Usage,
    input_event,
    question_id,
)
from storage.batches import run_id_of
from storage.models import message_id
from tests.support.app import load_function_app
from tests.support.replay import ExternalEvent, ReplayDriver, ReplayResult

GOLDEN_DIR = Path(__file__).parent
# The code each version's scenarios were recorded from (a new version: a new line, never an edit).
RECORDED_FROM = {
    "": "agent/orchestrators.py as on commit c156733 (version 1, unversioned)",
    "2.0": "agent/orchestrators.py as on commit de9b060 (version 2, stamped '2.0')",
    "3.0": "agent/orchestrators.py as on commit 73be7d0 (version 3, stamped '3.0')",
    "4.0": "agent/orchestrators.py as on commit 1fa38f6 (version 4, stamped '4.0'; mcptasks, "
    "re-recorded on branch taskfix: no statusMessage in history), as on 5b2bfb2 "
    "(flatreplay, before mcptasks landed), and as on the taskinput branch rebased on main "
    "(taskinput: a task's questions)",
}
FORMAT = 1
USAGE = Usage(prompt_tokens=812, completion_tokens=64, total_tokens=876)


@dataclass(frozen=True)
class Scenario:
    description: str
    orchestrator: str
    input: dict[str, Any]
    instance_id: str
    activities: Callable[[str, Any], Any]
    events: tuple[ExternalEvent, ...] = field(default=())
    version: str = ""  # what the host stamps on the instances: "" is version 1


def turn_input(
    run_id: str, conversation_id: str = "5f0c2d3a9b8e4f61a7c2d9e0b1f3a4c5"
) -> dict[str, Any]:
    # The defaults of agent.settings (AGENT_MAX_STEPS, AGENT_APPROVAL_TIMEOUT_SECONDS).
    return ChatTurnInput(
        owner="user:7b1e",
        conversation_id=conversation_id,
        run_id=run_id,
        turn=3,
        max_steps=10,
        max_tokens_per_run=50_000,
        approval_timeout_seconds=3600,
    ).to_dict()


def model_replies(replies: dict[int, Callable[[str], StepSummary]]) -> Callable[[Any], Any]:
    """model_step answers by step: `replies[step](run_id)`."""

    def answer(data: dict[str, Any]) -> dict[str, Any]:
        return replies[data["step"]](data["run"]["run_id"]).to_dict()

    return answer


def asks_tools(
    step: int, *ids: str, approvals: tuple[str, ...] = ()
) -> Callable[[str], StepSummary]:
    return lambda run_id: StepSummary(
        "tool_calls",
        message_id=message_id(run_id, step, 0),
        tool_call_ids=ids,
        usage=USAGE,
        approvals_needed=approvals,
    )


def answers(step: int) -> Callable[[str], StepSummary]:
    return lambda run_id: StepSummary("final", message_id=message_id(run_id, step, 0), usage=USAGE)


def throttled(seconds: float) -> StepSummary:
    return StepSummary("throttled", retry_after=seconds)


def tool_results(failing_once: frozenset[str] = frozenset()) -> Callable[[Any], Any]:
    """tool_call: a summary per call; calls in `failing_once` raise on their first attempt
    (a transient MCP failure, which the activity raises so Durable retries it)."""
    failed: set[str] = set()

    def call(data: dict[str, Any]) -> dict[str, Any]:
        call_id = data["call_id"]
        if call_id in failing_once and call_id not in failed:
            failed.add(call_id)
            raise ConnectionError(f"MCP server 'files' unreachable for {call_id}: ConnectError")
        is_error = bool(data.get("rejection"))
        return ToolCallSummary(call_id, is_error=is_error).to_dict()

    return call


def chat_activities(
    model: Callable[[Any], Any], tools: Callable[[Any], Any] | None = None
) -> Callable[[str, Any], Any]:
    tools = tools or tool_results()

    def activities(name: str, data: Any) -> Any:
        if name == "model_step":
            return model(data)
        if name == "tool_call":
            return tools(data)
        if name == "finish_turn":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return activities


def chat_turn_with_tools() -> Scenario:
    run_id = "9d2f6c1e0b7a4e35a1c8f2d4b6e0a913"
    model = model_replies({1: asks_tools(1, "call_Qm3vT8", "call_Zr5wK2"), 2: answers(2)})
    return Scenario(
        "chat_turn: a model step asks for two tool calls, they run in parallel, the next model "
        "step answers, finish_turn closes the turn",
        "chat_turn",
        turn_input(run_id),
        run_id,
        chat_activities(model),
    )


def chat_turn_throttled_and_retried() -> Scenario:
    run_id = "4c8e2a6f1d3b4a7e9c0f5b2d8a6e1c37"
    first_step: dict[str, bool] = {}

    def model(data: dict[str, Any]) -> dict[str, Any]:
        if data["step"] == 1 and not first_step:
            first_step["throttled"] = True
            return throttled(30.0).to_dict()  # a 429 with retry-after: a durable timer
        return model_replies({1: asks_tools(1, "call_Ab12", "call_Cd34"), 2: answers(2)})(data)

    return Scenario(
        "chat_turn: the first model step is throttled (429 retry-after: a timer), then asks for "
        "two tool calls of which one fails once and is retried by Durable (a retry timer), then "
        "the model answers",
        "chat_turn",
        turn_input(run_id),
        run_id,
        chat_activities(model, tool_results(failing_once=frozenset({"call_Cd34"}))),
    )


def chat_turn_tool_failed_for_good() -> Scenario:
    run_id = "d4a7f0b53ac26e9bc6b8a4d5f7e9ab03"
    model = model_replies({1: asks_tools(1, "call_Ok1", "call_Down2"), 2: answers(2)})

    def tools(data: dict[str, Any]) -> dict[str, Any]:
        if data["call_id"] == "call_Down2":
            raise ConnectionError("MCP server 'files' unreachable: ConnectError")
        return ToolCallSummary(data["call_id"], is_error=False).to_dict()

    return Scenario(
        "chat_turn: one of two parallel tool calls keeps failing; Durable retries it until "
        "TOOL_RETRY gives up, each call is then awaited on its own and the failure reaches the "
        "next model step, which answers",
        "chat_turn",
        turn_input(run_id),
        run_id,
        chat_activities(model, tools),
    )


def chat_turn_model_step_failed() -> Scenario:
    run_id = "e5b8a1c64bd37fa0d7c9b5e6a8f0bc14"

    def model(data: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError("model endpoint: 503 Service Unavailable")

    return Scenario(
        "chat_turn: the model step keeps failing until MODEL_RETRY gives up; the run fails and "
        "finish_turn still closes the turn",
        "chat_turn",
        turn_input(run_id),
        run_id,
        chat_activities(model),
    )


def approval_scenario(run_id: str, description: str, events: tuple[ExternalEvent, ...]) -> Scenario:
    model = model_replies(
        {1: asks_tools(1, "call_Del9", "call_Lst4", approvals=("call_Del9",)), 2: answers(2)}
    )
    return Scenario(
        description, "chat_turn", turn_input(run_id), run_id, chat_activities(model), events
    )


def approval(call_id: str, approved: bool) -> ExternalEvent:
    # What POST /api/conversations/{id}/runs/{run_id}/approvals raises.
    return ExternalEvent(APPROVAL_EVENT, {"tool_call_id": call_id, "approved": approved})


def chat_turn_approval_approved() -> Scenario:
    return approval_scenario(
        "a1f4c7e20d9b4b68b3e5f1a2c4d6e8f0",
        "chat_turn: a tool call needs approval; the run waits on the approval event and a timer; "
        "the user approves; both calls run; the model answers",
        (approval("call_Del9", True),),
    )


def chat_turn_approval_rejected() -> Scenario:
    return approval_scenario(
        "b2e5d8f31ea04c79a4f6e2b3d5c7e9a1",
        "chat_turn: a tool call needs approval; the user rejects it; it is reported to the "
        "model as rejected (the tool_call activity records the rejection)",
        (approval("call_Del9", False),),
    )


def chat_turn_approval_timed_out() -> Scenario:
    return approval_scenario(
        "c3f6e9a42fb15d8ab5a7f3c4e6d8fab2",
        "chat_turn: a tool call needs approval; nobody answers; the approval timer fires after "
        "approval_timeout_seconds and the call is reported as timed out",
        (),
    )


def queue_claims() -> Callable[[dict[str, Any]], int | None]:
    """A batch's work queue as storage.batches keeps it: each claim key takes the first index
    no other key holds (None when none is left), and keeps it when it claims again."""
    claims: dict[str, int | None] = {}

    def claim(data: dict[str, Any]) -> int | None:
        if data["claim_key"] not in claims:
            taken = {i for i in claims.values() if i is not None}
            free = [i for i in data["indices"] if i not in taken]
            claims[data["claim_key"]] = free[0] if free else None
        return claims[data["claim_key"]]

    return claim


def batch_activities() -> Callable[[str, Any], Any]:
    """The batch activities over a work queue of claims, as storage.batches keeps it: item 1
    is rejected (its conversation is gone), the others start a chat_turn each."""
    claim = queue_claims()

    chat = chat_activities(model_replies({1: asks_tools(1, "call_Wx7"), 2: answers(2)}))

    def activities(name: str, data: Any) -> Any:
        if name == "take_batch_item":
            index = claim(data)
            if index is None:
                return {"index": None}
            if index == 1:
                return {"index": index, "status": "rejected", "error": "no conversation c-gone"}
            run_id = run_id_of(data["batch_id"], index)
            turn = turn_input(run_id, conversation_id=f"conv{index:02d}")
            return {"index": index, "turn": turn}
        if name == "claim_batch_item":
            return {"index": claim(data)}
        if name == "record_batch_outcome":
            return None
        return chat(name, data)

    return activities


def busy_batch_activities() -> Callable[[str, Any], Any]:
    """The batch's only item cannot start (its conversation stays busy with another turn)."""
    claim = queue_claims()

    def activities(name: str, data: Any) -> Any:
        if name == "take_batch_item":
            index = claim(data)
            if index is None:
                return {"index": None}
            raise RuntimeError(f"conversation conv{index:02d} is busy with another turn")
        if name == "claim_batch_item":
            return {"index": claim(data)}
        if name == "record_batch_outcome":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return activities


def scheduled_batch_item_could_not_start() -> Scenario:
    batch_id = "cb-20250101-1200-2b9c"
    plan = BatchInput(batch_id, (0,), 4)
    return Scenario(
        "scheduled_batch: one lane; take_batch_item keeps failing (the conversation is busy) "
        "until BATCH_ITEM_RETRY gives up; the lane learns which item it claimed "
        "(claim_batch_item), records it as failed (record_batch_outcome), continues as new, "
        "and finds no item left",
        "scheduled_batch",
        plan.to_dict(),
        batch_id,
        busy_batch_activities(),
    )


def scheduled_batch_with_lanes() -> Scenario:
    batch_id = "sch-20250101-0900-7f3a"
    plan = BatchInput(batch_id, (0, 1, 2), 2, not_before="2025-01-01T09:00:00+00:00")
    return Scenario(
        "scheduled_batch: waits for not_before (a timer), starts two batch_lane sub-"
        "orchestrations; each lane takes an item, runs its chat_turn sub-orchestration (model, "
        "tool call, model) or records a rejected item, continues as new, and returns its counts "
        "once no item is left",
        "scheduled_batch",
        plan.to_dict(),
        batch_id,
        batch_activities(),
    )


# --------------------------------------------------------------------------- version 2
#
# Version 2 shipped on 2026-12-01 (agent.versions.CURRENT = 2, host.json "2.0"): budgets checked
# before each model step, retries on durable backoff timers (tool calls in rounds), interrupted
# calls resent on a person's say, questions with ids, a durable wait while a circuit is open.

V2 = "2.0"


def v2_scenario(
    run_id: str,
    description: str,
    activities: Callable[[str, Any], Any],
    events: tuple[ExternalEvent, ...] = (),
    turn: dict[str, Any] | None = None,
) -> Scenario:
    return Scenario(
        description,
        "chat_turn",
        turn or turn_input(run_id),
        run_id,
        activities,
        events,
        version=V2,
    )


def v2_chat_turn_tools_retried_in_rounds() -> Scenario:
    run_id = "f1a3c5e7092b4d6f8a0c2e4b6d8f0a12"
    model = model_replies(
        {1: asks_tools(1, "call_Ok7", "call_Flaky3", "call_Down5"), 2: answers(2)}
    )
    failures: Counter[str] = Counter()

    def tools(data: dict[str, Any]) -> dict[str, Any]:
        call_id = data["call_id"]
        failures[call_id] += 1
        if call_id == "call_Down5" or (call_id == "call_Flaky3" and failures[call_id] == 1):
            raise ConnectionError(f"MCP server 'files' unreachable for {call_id}: ConnectError")
        return ToolCallSummary(call_id, is_error=False).to_dict()

    return v2_scenario(
        run_id,
        "chat_turn v2: a model step asks for three tool calls, run in parallel; two fail; after "
        "a backoff timer both run again in a second round, where one succeeds; after a longer "
        "timer the last one fails its third and last attempt (tool_attempts) and reaches the "
        "next model step as failed, which answers",
        chat_activities(model, tools),
    )


def v2_chat_turn_model_step_retried() -> Scenario:
    run_id = "a2b4c6d8e0f24a6c8e0b2d4f6a8c0e13"
    failed: set[int] = set()
    replies = model_replies({1: answers(1)})

    def model(data: dict[str, Any]) -> dict[str, Any]:
        if data["step"] not in failed:
            failed.add(data["step"])
            raise TimeoutError("model endpoint: 503 Service Unavailable")
        return replies(data)

    return v2_scenario(
        run_id,
        "chat_turn v2: the model step fails transiently (503), waits a backoff timer, is tried "
        "again and answers; finish_turn closes the turn",
        chat_activities(model),
    )


def v2_chat_turn_throttled() -> Scenario:
    run_id = "b3c5d7e9f1a34b5d7f9a1c3e5b7d9f14"
    throttled_once: set[int] = set()
    replies = model_replies({1: asks_tools(1, "call_Gh56"), 2: answers(2)})

    def model(data: dict[str, Any]) -> dict[str, Any]:
        if data["step"] == 1 and not throttled_once:
            throttled_once.add(1)
            return throttled(30.0).to_dict()  # a 429 with retry-after: a durable timer
        return replies(data)

    return v2_scenario(
        run_id,
        "chat_turn v2: the first model step is throttled (429 retry-after 30 s: a timer), is "
        "asked again, asks for a tool call, and the next step answers",
        chat_activities(model),
    )


def v2_approval_activities() -> Callable[[str, Any], Any]:
    model = model_replies(
        {1: asks_tools(1, "call_Rm8", "call_Ls2", approvals=("call_Rm8",)), 2: answers(2)}
    )
    return chat_activities(model)


def answer(call_id: str, approved: bool, question: str) -> ExternalEvent:
    # What POST .../approvals raises on version 2: the question the run asks is stamped on.
    return ExternalEvent(
        APPROVAL_EVENT, {"tool_call_id": call_id, "approved": approved, "question_id": question}
    )


def v2_chat_turn_approval_answered() -> Scenario:
    run_id = "c4d6e8f0a2b44c6e8a0d2f4b6c8e0a15"
    return v2_scenario(
        run_id,
        "chat_turn v2: a tool call needs approval; the run waits on the approval event and a "
        "timer, asking question step1-approval; an answer to another question is ignored (the "
        "run waits again), then the user approves with the question id; both calls run; the "
        "model answers",
        v2_approval_activities(),
        (
            answer("call_Rm8", False, "step0-approval"),
            answer("call_Rm8", True, question_id(1, APPROVAL_QUESTION)),
        ),
    )


def v2_chat_turn_approval_timed_out() -> Scenario:
    run_id = "d5e7f9a1b3c54d7f9b1e3a5c7d9f1b16"
    return v2_scenario(
        run_id,
        "chat_turn v2: a tool call needs approval; nobody answers; the approval timer fires and "
        "the call is reported to the model as timed out; the model answers",
        v2_approval_activities(),
    )


def v2_chat_turn_interrupted_call_resent() -> Scenario:
    run_id = "e6f8a0b2c4d64e8a0c2f4b6d8e0a2c17"
    model = model_replies({1: asks_tools(1, "call_Sv4", "call_Rd6"), 2: answers(2)})

    def tools(data: dict[str, Any]) -> dict[str, Any]:
        # call_Sv4 was cut off by a crash on an earlier attempt: its outcome is unknown, so the
        # activity defers it (it may not be repeated without a person's say).
        if data["call_id"] == "call_Sv4" and data.get("may_defer"):
            return ToolCallSummary("call_Sv4", is_error=False, interrupted=True).to_dict()
        return ToolCallSummary(data["call_id"], is_error=False).to_dict()

    return v2_scenario(
        run_id,
        "chat_turn v2: one of two tool calls was interrupted (cut off by a crash, outcome "
        "unknown); the run asks question step1-resend and waits; the user approves resending; "
        "the call runs again (retry_interrupted, no leave to defer); the model answers",
        chat_activities(model, tools),
        (answer("call_Sv4", True, question_id(1, RESEND_QUESTION)),),
    )


def v2_chat_turn_circuit_open_wait() -> Scenario:
    run_id = "f7a9b1c3d5e74f9b1d3a5c7e9f1b3d18"
    model = model_replies({1: asks_tools(1, "call_Wt2"), 2: answers(2)})

    def tools(data: dict[str, Any]) -> dict[str, Any]:
        if data.get("may_defer"):  # the server's circuit is open: try again after its cooldown
            return ToolCallSummary(data["call_id"], is_error=False, retry_after=20.0).to_dict()
        return ToolCallSummary(data["call_id"], is_error=False).to_dict()

    return v2_scenario(
        run_id,
        "chat_turn v2: the tool's server has its circuit open; the activity defers the call "
        "with the cooldown; the run waits a durable timer (waiting_for_server), runs the call "
        "again without leave to defer, and the model answers",
        chat_activities(model, tools),
    )


def v2_chat_turn_budget_stop_before_step() -> Scenario:
    run_id = "a8b0c2d4e6f84a0c2e4b6d8f0a2c4e19"
    model = model_replies({1: asks_tools(1, "call_Bg1")})
    turn = {**turn_input(run_id), "max_tokens_per_run": USAGE.total_tokens}
    return v2_scenario(
        run_id,
        "chat_turn v2: the first model step spends exactly the run's token budget and asks for "
        "a tool call, which runs; before model step 2 the budget is found spent and the run "
        "stops (budget_exceeded) without calling the model; finish_turn closes the turn",
        chat_activities(model),
        turn=turn,
    )


def v2_scheduled_batch_with_lanes() -> Scenario:
    batch_id = "sch-20261201-0900-4c1d"
    plan = BatchInput(batch_id, (0, 1, 2), 2, not_before="2025-01-01T09:00:00+00:00")
    return Scenario(
        "scheduled_batch v2: waits for not_before (a timer), starts two batch_lane sub-"
        "orchestrations; each lane takes an item, runs its chat_turn sub-orchestration (model, "
        "tool call, model) or records a rejected item, continues as new, and returns its counts "
        "once no item is left",
        "scheduled_batch",
        plan.to_dict(),
        batch_id,
        batch_activities(),
        version=V2,
    )


def v2_scheduled_batch_item_could_not_start() -> Scenario:
    batch_id = "cb-20261201-1200-8e2f"
    plan = BatchInput(batch_id, (0,), 4)
    return Scenario(
        "scheduled_batch v2: one lane; take_batch_item keeps failing (the conversation is "
        "busy), waiting growing backoff timers between attempts until BUSY_ATTEMPTS; the lane "
        "learns which item it claimed (claim_batch_item), records it as failed "
        "(record_batch_outcome), continues as new, and finds no item left",
        "scheduled_batch",
        plan.to_dict(),
        batch_id,
        busy_batch_activities(),
        version=V2,
    )


# --------------------------------------------------------------------------- version 3
#
# Version 3 (agent.versions.CURRENT = 3, host.json "3.0"): a model step may ask for compaction
# (`ModelStepInput.compaction`); the run then calls `compact` and runs the same step again.

V3 = "3.0"
SUMMARY_USAGE = Usage(prompt_tokens=6_100, completion_tokens=420, total_tokens=6_520)


def v3_scenario(run_id: str, description: str, activities: Callable[[str, Any], Any]) -> Scenario:
    return Scenario(description, "chat_turn", turn_input(run_id), run_id, activities, version=V3)


def compacting_first(replies: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """model_step: step 1 asks for compaction while it may, then answers from `replies`."""

    def answer(data: dict[str, Any]) -> dict[str, Any]:
        if data.get("compaction") and data["step"] == 1:
            return StepSummary("compact").to_dict()
        return replies(data)

    return answer


def compaction_activities(
    model: Callable[[Any], Any], compact: Callable[[Any], Any]
) -> Callable[[str, Any], Any]:
    chat = chat_activities(model)

    def activities(name: str, data: Any) -> Any:
        return compact(data) if name == "compact" else chat(name, data)

    return activities


def v3_chat_turn_compacted() -> Scenario:
    run_id = "c4d6e8f0a2b44c6e8a0b2d4f6a8c0e21"
    model = compacting_first(model_replies({1: asks_tools(1, "call_Cp1"), 2: answers(2)}))

    def compact(data: dict[str, Any]) -> dict[str, Any]:
        return CompactionSummary(True, SUMMARY_USAGE, 24_000).to_dict()

    return v3_scenario(
        run_id,
        "chat_turn v3: model step 1 (compaction allowed) finds enough outside the context "
        "window and asks for compaction; compact stores a summary; step 1 runs again without "
        "leave to compact and asks for a tool call, which runs; step 2 answers; finish_turn",
        compaction_activities(model, compact),
    )


def v3_chat_turn_compaction_failed() -> Scenario:
    run_id = "d5e7f9a1b3c54d7f9b1c3e5a7b9d1f22"
    model = compacting_first(model_replies({1: answers(1)}))

    def compact(data: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError("model endpoint: 503 Service Unavailable")

    return v3_scenario(
        run_id,
        "chat_turn v3: step 1 asks for compaction; compact fails transiently on every attempt "
        "(backoff timers between them); the run goes on without a summary: step 1 runs again "
        "and answers; finish_turn",
        compaction_activities(model, compact),
    )


def v3_chat_turn_context_exceeded() -> Scenario:
    run_id = "e6f8a0b2c4d64e8a0c2d4f6b8c0e2a23"

    def model(data: dict[str, Any]) -> dict[str, Any]:
        error = "the current turn does not fit the context window: AGENT_CONTEXT_TOKENS=32000"
        return StepSummary("context_exceeded", error=error).to_dict()

    return v3_scenario(
        run_id,
        "chat_turn v3: the current turn alone does not fit the context window: model step 1 "
        "says context_exceeded without calling the model; finish_turn closes the turn",
        chat_activities(model),
    )


# --- version 4 (mcptasks): tool calls their MCP servers run as tasks, polled on timers --------
#
# Version 4 (agent.versions.CURRENT = 4, host.json "4.0"), flatreplay: a model step may end the
# turn itself (`ModelStepInput.ends_turn`; its summary says `turn_ended`: no finish_turn), and a
# turn continues as new every `STEPS_PER_EXECUTION` (4) model steps with `progress` in its input.

V4 = "4.0"


def v4_scenario(run_id: str, description: str, activities: Callable[[str, Any], Any]) -> Scenario:
    return Scenario(description, "chat_turn", turn_input(run_id), run_id, activities, version=V4)


def task_activities(
    model: Callable[[Any], Any], task: PendingTask, polls: Callable[[dict[str, Any]], TaskPoll]
) -> Callable[[str, Any], Any]:
    """tool_call: the task's call comes back pending (the others run); poll_tool_task: `polls`."""
    chat = chat_activities(model)

    def activities(name: str, data: Any) -> Any:
        if name == "tool_call" and data["call_id"] == task.call_id:
            return ToolCallSummary(task.call_id, is_error=False, task=task).to_dict()
        if name == "poll_tool_task":
            return polls(data).to_dict()
        return chat(name, data)

    return activities


def v4_mcptasks_task_completed() -> Scenario:
    run_id = "f1a3c5e7b9d14f3a5c7e9b1d3f5a7c41"
    model = model_replies({1: asks_tools(1, "call_Tk1", "call_Tk2"), 2: answers(2)})
    task = PendingTask("call_Tk1", "task-7f3a", "reports", 5.0, 3600)
    failed_once: set[int] = set()

    def polls(data: dict[str, Any]) -> TaskPoll:
        if data["poll"] == 1 and not failed_once:
            failed_once.add(1)
            raise ConnectionError("MCP server 'reports' is unreachable (ConnectError)")
        if data["poll"] < 2:
            return TaskPoll(task.call_id, pending=task)
        return TaskPoll(task.call_id, outcome="completed")

    return v4_scenario(
        run_id,
        "chat_turn v4: model step 1 asks two tool calls; the server runs one as a task (the "
        "other answers at once); the run waits a 5 s timer and polls it (working), waits again, "
        "the poll fails (server unreachable), waits again, polls: completed; step 2 answers",
        task_activities(model, task, polls),
    )


def v4_mcptasks_task_timed_out() -> Scenario:
    run_id = "a2b4d6f8c0e24a4b6d8f0c2e4a6b8d42"
    model = model_replies({1: asks_tools(1, "call_To1"), 2: answers(2)})
    task = PendingTask("call_To1", "task-9c1d", "reports", 40.0, 100)

    def polls(data: dict[str, Any]) -> TaskPoll:
        if data.get("give_up"):
            return TaskPoll(task.call_id, outcome="task_timed_out")
        return TaskPoll(task.call_id, pending=task)

    return v4_scenario(
        run_id,
        "chat_turn v4: a tool call the server runs as a task never finishes; polls at 40 s and "
        "80 s find it working; at 120 s (past MCP_TASK_TIMEOUT_SECONDS=100) the poll gives up "
        "(cancels it: task_timed_out); step 2 answers",
        task_activities(model, task, polls),
    )


def input_task_activities(
    model: Callable[[Any], Any], task: PendingTask, asked: AskedInput
) -> Callable[[str, Any], Any]:
    """poll 0: the task waits for input (`asked`); answer_tool_task sends the answers; poll 1:
    completed."""
    waiting = replace(task, status="input_required")

    def polls(data: dict[str, Any]) -> TaskPoll:
        if data["poll"] == 0:
            return TaskPoll(task.call_id, pending=waiting, asked=asked)
        return TaskPoll(task.call_id, outcome="completed")

    polled = task_activities(model, task, polls)

    def activities(name: str, data: Any) -> Any:
        if name == "answer_tool_task":
            return TaskAnswered(data["call_id"], sent=True).to_dict()
        return polled(name, data)

    return activities


# 2025-01-01 (the replay's start) + the approval timeout (turn_input: 3600 s).
TASK_QUESTION_DEADLINE = "2025-01-01T01:00:00+00:00"


def v4_taskinput_question_answered() -> Scenario:
    run_id = "c3d5e7f9a1b34c5d7e9f1a3b5c7d9e43"
    model = model_replies({1: asks_tools(1, "call_Ti1"), 2: answers(2)})
    task = PendingTask("call_Ti1", "task-5e2b", "cards", 2.0, 3600)
    question = "q1735693202000a1b2c3d4"
    asked = AskedInput((question,), TASK_QUESTION_DEADLINE)
    return Scenario(
        "chat_turn v4: the server runs the call as a task; the first poll finds it waiting for "
        "input (one question); the run waits on the question's event or its deadline timer and "
        "the person answers (POST .../input raises the event); answer_tool_task sends it; the "
        "next poll finds it completed; step 2 answers",
        "chat_turn",
        turn_input(run_id),
        run_id,
        input_task_activities(model, task, asked),
        (ExternalEvent(input_event(question), {"question_id": question}, when_awaited=True),),
        version=V4,
    )


def v4_taskinput_question_timed_out() -> Scenario:
    run_id = "d4e6f8a0b2c44d6e8f0a2b4c6d8e0f44"
    model = model_replies({1: asks_tools(1, "call_Tj1"), 2: answers(2)})
    task = PendingTask("call_Tj1", "task-8a4c", "cards", 2.0, 7200)
    asked = AskedInput(("q1735693202000e5f6a7b8",), TASK_QUESTION_DEADLINE)
    return v4_scenario(
        run_id,
        "chat_turn v4: the first poll finds the task waiting for input; nobody answers: the "
        "deadline timer ends the wait and answer_tool_task sends a decline; the next poll finds "
        "it completed; step 2 answers",
        input_task_activities(model, task, asked),
    )


def v4_model(answer_at: int, approval_at: int | None = None) -> Callable[[Any], Any]:
    """model_step: a tool call per step until `answer_at`, whose answer ends the turn when the
    step may; the call of step `approval_at` needs approval."""

    def reply(data: dict[str, Any]) -> dict[str, Any]:
        step, run_id = data["step"], data["run"]["run_id"]
        if step == answer_at:
            summary = answers(step)(run_id)
            return replace(summary, turn_ended=bool(data.get("ends_turn"))).to_dict()
        approvals = (f"call_S{step}",) if step == approval_at else ()
        return asks_tools(step, f"call_S{step}", approvals=approvals)(run_id).to_dict()

    return reply


def v4_flatreplay_chat_turn_answer_ends_turn() -> Scenario:
    run_id = "f7a9b1c3d5e74f9b1d3e5a7c9e1b3d31"
    return Scenario(
        "chat_turn v4: model step 1 asks a tool call, which runs; step 2 (told it may end the "
        "turn) answers and ends the turn itself: no finish_turn",
        "chat_turn",
        turn_input(run_id),
        run_id,
        chat_activities(v4_model(answer_at=2)),
        version=V4,
    )


def v4_flatreplay_chat_turn_continued_with_approval() -> Scenario:
    run_id = "a8b0c2d4e6f84a0c2e4f6b8d0f2c4e32"
    return Scenario(
        "chat_turn v4: steps 1-4 each ask a tool call, which runs; the turn continues as new "
        "(progress: step 5, usage, no failed calls); step 5 asks a call that needs approval, "
        "the run waits (question step5-approval) and is approved; the call runs; step 6 answers "
        "and ends the turn itself: no finish_turn",
        "chat_turn",
        turn_input(run_id),
        run_id,
        chat_activities(v4_model(answer_at=6, approval_at=5)),
        (answer("call_S5", True, question_id(5, APPROVAL_QUESTION)),),
        version=V4,
    )


# --- version 4 (batchperf): a batch lane runs ITEMS_PER_LANE_EXECUTION (4) items per execution
# before it continues as new. Recorded from commit ed2e2d6 of branch batchperf (22d4101 once
# rebased on main). The items here never reach a chat_turn (rejected, or could not start):
# these recordings cover the lane alone, whatever version 4 changes in chat_turn.


def v4_lane_activities() -> Callable[[str, Any], Any]:
    """Every item's conversation is gone (rejected), but item 2's, which stays busy."""
    claim = queue_claims()

    def activities(name: str, data: Any) -> Any:
        if name == "take_batch_item":
            index = claim(data)
            if index is None:
                return {"index": None}
            if index == 2:
                raise RuntimeError(f"conversation conv{index:02d} is busy with another turn")
            return {"index": index, "status": "rejected", "error": f"no conversation c{index}"}
        if name == "claim_batch_item":
            return {"index": claim(data)}
        if name == "record_batch_outcome":
            return None
        raise AssertionError(f"unexpected activity {name}")

    return activities


def v4_batchperf_lane_runs_items_per_execution() -> Scenario:
    batch_id = "cb-20261202-0400-5a7e"
    plan = BatchInput(batch_id, (0, 1, 2, 3, 4, 5), 1)
    return Scenario(
        "scheduled_batch v4: one lane of six items runs four in its first execution (items 0, 1 "
        "rejected and recorded; item 2's take failing with growing backoff timers until "
        "BUSY_ATTEMPTS, then claim_batch_item and record_batch_outcome; item 3 rejected), "
        "continues as new, runs items 4 and 5, and finds no item left",
        "scheduled_batch",
        plan.to_dict(),
        batch_id,
        v4_lane_activities(),
        version=V4,
    )


def v4_batchperf_two_lanes() -> Scenario:
    batch_id = "sch-20261202-0400-9b3c"
    plan = BatchInput(batch_id, (0, 1, *range(3, 11)), 2, not_before="2025-01-01T09:00:00+00:00")
    return Scenario(
        "scheduled_batch v4: waits for not_before (a timer), starts two lanes that share nine "
        "rejected items, each running four in its first execution, continuing as new, and "
        "returning its counts once no item is left",
        "scheduled_batch",
        plan.to_dict(),
        batch_id,
        v4_lane_activities(),
        version=V4,
    )


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "chat_turn_with_tools": chat_turn_with_tools,
    "chat_turn_throttled_and_retried": chat_turn_throttled_and_retried,
    "chat_turn_tool_failed_for_good": chat_turn_tool_failed_for_good,
    "chat_turn_model_step_failed": chat_turn_model_step_failed,
    "chat_turn_approval_approved": chat_turn_approval_approved,
    "chat_turn_approval_rejected": chat_turn_approval_rejected,
    "chat_turn_approval_timed_out": chat_turn_approval_timed_out,
    "scheduled_batch_with_lanes": scheduled_batch_with_lanes,
    "scheduled_batch_item_could_not_start": scheduled_batch_item_could_not_start,
    "v2_chat_turn_tools_retried_in_rounds": v2_chat_turn_tools_retried_in_rounds,
    "v2_chat_turn_model_step_retried": v2_chat_turn_model_step_retried,
    "v2_chat_turn_throttled": v2_chat_turn_throttled,
    "v2_chat_turn_approval_answered": v2_chat_turn_approval_answered,
    "v2_chat_turn_approval_timed_out": v2_chat_turn_approval_timed_out,
    "v2_chat_turn_interrupted_call_resent": v2_chat_turn_interrupted_call_resent,
    "v2_chat_turn_circuit_open_wait": v2_chat_turn_circuit_open_wait,
    "v2_chat_turn_budget_stop_before_step": v2_chat_turn_budget_stop_before_step,
    "v2_scheduled_batch_with_lanes": v2_scheduled_batch_with_lanes,
    "v2_scheduled_batch_item_could_not_start": v2_scheduled_batch_item_could_not_start,
    "v3_chat_turn_compacted": v3_chat_turn_compacted,
    "v3_chat_turn_compaction_failed": v3_chat_turn_compaction_failed,
    "v3_chat_turn_context_exceeded": v3_chat_turn_context_exceeded,
    "v4_mcptasks_task_completed": v4_mcptasks_task_completed,
    "v4_mcptasks_task_timed_out": v4_mcptasks_task_timed_out,
    "v4_taskinput_question_answered": v4_taskinput_question_answered,
    "v4_taskinput_question_timed_out": v4_taskinput_question_timed_out,
    "v4_flatreplay_chat_turn_answer_ends_turn": v4_flatreplay_chat_turn_answer_ends_turn,
    "v4_flatreplay_chat_turn_continued_with_approval": (
        v4_flatreplay_chat_turn_continued_with_approval
    ),
    "v4_batchperf_lane_runs_items_per_execution": v4_batchperf_lane_runs_items_per_execution,
    "v4_batchperf_two_lanes": v4_batchperf_two_lanes,
}


def record(name: str) -> dict[str, Any]:
    scenario = SCENARIOS[name]()
    driver = ReplayDriver(load_function_app().app, default_version=scenario.version)
    result = driver.run(
        scenario.orchestrator,
        scenario.input,
        activities=scenario.activities,
        events=scenario.events,
        instance_id=scenario.instance_id,
    )
    if result.status != "Completed":
        raise RuntimeError(f"{name} ended {result.status}: {result.output}")
    return golden_document(name, scenario, result)


def golden_document(name: str, scenario: Scenario, result: ReplayResult) -> dict[str, Any]:
    order = [result.instance_id, *sorted(i for i in result.executions if i != result.instance_id)]
    return {
        "format": FORMAT,
        "name": name,
        "description": scenario.description,
        "recorded_from": RECORDED_FROM[scenario.version],
        "engine": (
            "local_host engine via tests/support/replay.py "
            f"ReplayDriver(default_version={scenario.version!r})"
        ),
        "root_instance_id": result.instance_id,
        "outcome": {"status": result.status, "output": result.output},
        "instances": [
            {
                "instance_id": instance_id,
                "name": result.instances[instance_id].name,
                "executions": result.executions[instance_id],
            }
            for instance_id in order
        ],
    }


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in SCENARIOS]
    if not names or unknown:
        print(f"usage: python -m tests.golden.record NAME...; names: {', '.join(SCENARIOS)}")
        return 2
    for name in names:
        path = GOLDEN_DIR / f"{name}.json"
        if path.exists():
            print(f"{path} exists: golden histories are never re-recorded; use a new name")
            return 1
        path.write_text(json.dumps(record(name), indent=1) + "\n", encoding="utf-8")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with (GOLDEN_DIR / "SHA256SUMS").open("a", encoding="utf-8") as sums:
            sums.write(f"{digest}  {path.name}\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
