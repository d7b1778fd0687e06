"""Every contract value in the golden histories reads and writes back byte for byte.

Old instances replay with the new code: what an older worker wrote (activity inputs, results,
orchestration inputs and outputs) must read under the current contracts, and what the current
code writes for the same value must be the same JSON text (same keys, order and numbers), or a
replay would schedule work with a different input than the one it recorded. (A version-1 turn
input gains the retry settings version 2 added, after its own keys, as the code before the
converter wrote it too.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as T

from agent.contracts import (
    AnswerTaskInput,
    BatchInput,
    BatchItemOutcome,
    ChatTurnInput,
    ChatTurnOutput,
    ClaimedItem,
    ClaimInput,
    CompactInput,
    CompactionSummary,
    FinishTurnInput,
    LaneInput,
    ModelStepInput,
    PollTaskInput,
    TakenItem,
    TaskAnswered,
    TaskPoll,
    ToolCallInput,
    ToolCallSummary,
)
from agent.loop import StepSummary
from local_host.activities import decode_activity_input
from local_host.history import parse_jtoken
from tests.agent.test_golden_histories import load_executions
from wire import Wire

ACTIVITY_INPUTS: dict[str, type[Wire]] = {
    "model_step": ModelStepInput,
    "tool_call": ToolCallInput,
    "finish_turn": FinishTurnInput,
    "compact": CompactInput,
    "take_batch_item": ClaimInput,
    "claim_batch_item": ClaimInput,
    "record_batch_outcome": BatchItemOutcome,
    "poll_tool_task": PollTaskInput,
    "answer_tool_task": AnswerTaskInput,
}
ACTIVITY_RESULTS: dict[str, type[Wire]] = {
    "model_step": StepSummary,
    "tool_call": ToolCallSummary,
    "compact": CompactionSummary,
    "take_batch_item": TakenItem,
    "claim_batch_item": ClaimedItem,
    "poll_tool_task": TaskPoll,
    "answer_tool_task": TaskAnswered,
}
ORCHESTRATION_INPUTS: dict[str, type[Wire]] = {
    "chat_turn": ChatTurnInput,
    "scheduled_batch": BatchInput,
    "batch_lane": LaneInput,
}
ORCHESTRATION_OUTPUTS: dict[str, type[Wire]] = {"chat_turn": ChatTurnOutput}


def _json_value(raw: str) -> Any:
    """An orchestration's input or output: JSON text, sometimes of JSON text."""
    value = parse_jtoken(raw)
    return json.loads(value) if isinstance(value, str) else value


def recorded_values() -> list[tuple[str, type[Wire], Any]]:
    """(where, contract type, value as recorded) for every contract value in the goldens."""
    found: list[tuple[str, type[Wire], Any]] = []
    for execution in load_executions():
        names = {}
        where = f"{execution.golden}/{execution.instance_id}"
        for event in execution.history:
            kind = event["EventType"]
            if kind == T.TASK_SCHEDULED:
                names[event["EventId"]] = event["Name"]
                value = decode_activity_input(event["Input"])
                found.append((where, ACTIVITY_INPUTS[event["Name"]], value))
            elif kind == T.TASK_COMPLETED and names[event["TaskScheduledId"]] in ACTIVITY_RESULTS:
                contract = ACTIVITY_RESULTS[names[event["TaskScheduledId"]]]
                found.append((where, contract, parse_jtoken(event["Result"])))
            elif kind in (T.EXECUTION_STARTED, T.SUB_ORCHESTRATION_INSTANCE_CREATED):
                if event["Name"] in ORCHESTRATION_INPUTS:
                    contract = ORCHESTRATION_INPUTS[event["Name"]]
                    found.append((where, contract, _json_value(event["Input"])))
            elif kind == T.EXECUTION_COMPLETED and execution.name in ORCHESTRATION_OUTPUTS:
                contract = ORCHESTRATION_OUTPUTS[execution.name]
                found.append((where, contract, _json_value(event["Result"])))
    return found


RECORDED = recorded_values()


def test_the_goldens_hold_every_kind_of_contract_value() -> None:
    kinds = {contract for _, contract, _ in RECORDED}
    expected = {*ACTIVITY_INPUTS.values(), *ACTIVITY_RESULTS.values()}
    assert kinds == expected | {*ORCHESTRATION_INPUTS.values(), *ORCHESTRATION_OUTPUTS.values()}


@pytest.mark.parametrize(("where", "contract", "value"), RECORDED, ids=lambda v: "")
def test_a_recorded_contract_value_is_written_back_as_the_same_json_text(
    where: str, contract: type[Wire], value: Any
) -> None:
    written = contract.from_dict(value).to_dict()
    assert json.dumps(_as_recorded(written, value)) == json.dumps(value), where


# What version 2 added to a turn's input: a version-1 value gains them, and nothing else.
ADDED_IN_V2 = {"model_attempts", "tool_attempts", "retry_base_seconds", "retry_max_delay_seconds"}


def _as_recorded(written: Any, recorded: Any) -> Any:
    """`written` without the keys version 2 added where `recorded` (version 1) lacks them."""
    if isinstance(written, dict) and isinstance(recorded, dict):
        return {
            key: _as_recorded(value, recorded.get(key))
            for key, value in written.items()
            if key in recorded or key not in ADDED_IN_V2
        }
    return written
