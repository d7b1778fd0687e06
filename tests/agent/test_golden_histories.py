"""Golden Durable histories (tests/golden/) replay to completion against the current code.

A redeploy lands while runs, approval waits and batch lanes are in flight: the task hub then
holds histories written by the older code, and the new code must replay them exactly. Each
golden history is split into its episodes (OrchestratorStarted … OrchestratorCompleted). For
every point where the recorded run was waiting (after each episode), the history up to there is
handed to the current orchestrator through the Durable SDK's own entry point, as the worker
gets it, and the events that arrived next in the recording (activity results, timers, approval
events, sub-orchestration results) are delivered episode by episode, each time to the history
the *current* code has written so far. Every episode must schedule the same activities,
timers and sub-orchestrations, by name and position, as the recording did (the extension's
non-determinism check, which the local host's engine applies to the past, plus the same check
on the new decisions), and the run must end as recorded.

Each execution replays at the version recorded in its ExecutionStarted event (version 1: none;
version 2: "2.0"), as the extension hands it to the worker, so every version still in flight
takes its own path through the current code.

Never edit a golden history to make this pass: gate the change (agent.versions).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as T

from agent.contracts import (
    AnswerTaskInput,
    BatchItemOutcome,
    ClaimInput,
    CompactInput,
    FinishTurnInput,
    ModelStepInput,
    PollTaskInput,
    ToolCallInput,
)
from agent.versions import CURRENT, version_text
from local_host import engine
from local_host.activities import decode_activity_input
from local_host.engine import EpisodeCommit, EpisodeSnapshot, InstanceRecord, Message, ParentRef
from local_host.history import Event, RuntimeStatus, parse_jtoken, parse_timestamp
from local_host.indexing import AppIndex, FunctionInfo
from local_host.replay import (
    OrchestratorCall,
    interpret_orchestrator_result,
    orchestrator_trigger_datum,
)
from local_host.settings import read_host_config
from tests.support.app import load_function_app
from tests.support.replay import ReplayDriver

GOLDEN_DIR = Path(__file__).parents[1] / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))
APP_DIR = Path(__file__).parents[2]

SCHEDULING = {T.TASK_SCHEDULED, T.TIMER_CREATED, T.SUB_ORCHESTRATION_INSTANCE_CREATED}
ENDINGS = {T.EXECUTION_COMPLETED, T.CONTINUE_AS_NEW}
MARKERS = {T.ORCHESTRATOR_STARTED, T.ORCHESTRATOR_COMPLETED}

INDEX: AppIndex = ReplayDriver(load_function_app().app).index
# What the new deployment's host stamps on the sub-orchestrations an old instance starts.
DEPLOYED_VERSION = read_host_config(APP_DIR).default_version


@dataclass(frozen=True)
class Episode:
    started_at: datetime
    arrived: list[Event]  # what the host delivered: ExecutionStarted, results, timers, events
    decided: list[Event]  # what the orchestrator wrote: scheduling events and its ending


@dataclass(frozen=True)
class Execution:
    golden: str
    instance_id: str
    name: str
    number: int  # continue-as-new generation
    history: list[Event]

    @property
    def episodes(self) -> list[Episode]:
        return split_episodes(self.history)

    def record(self) -> InstanceRecord:
        started = next(e for e in self.history if e["EventType"] == T.EXECUTION_STARTED)
        return InstanceRecord(
            instance_id=self.instance_id,
            name=self.name,
            version=started.get("Version") or "",
            execution_id=started["OrchestrationInstance"]["ExecutionId"],
            runtime_status=RuntimeStatus.RUNNING,
            input_raw=started.get("Input"),
            output_raw=None,
            custom_status_raw=None,
            created_time=parse_timestamp(started["Timestamp"]),
            last_updated_time=parse_timestamp(started["Timestamp"]),
            parent=_parent_of(started),
        )


def _parent_of(started: Event) -> ParentRef | None:
    parent = started.get("ParentInstance")
    if not parent:
        return None
    instance = parent["OrchestrationInstance"]
    return ParentRef(
        instance["InstanceId"], instance["ExecutionId"], parent["TaskScheduleId"], parent["Name"]
    )


def split_episodes(history: list[Event]) -> list[Episode]:
    """The episodes of a history, each with what arrived and what the orchestrator decided."""
    episodes: list[Episode] = []
    for event in history:
        kind = T(event["EventType"])
        if kind == T.ORCHESTRATOR_STARTED:
            episodes.append(Episode(parse_timestamp(event["Timestamp"]), [], []))
        elif kind in SCHEDULING or kind in ENDINGS:
            episodes[-1].decided.append(event)
        elif kind not in MARKERS:
            episodes[-1].arrived.append(event)
    return episodes


def load_executions() -> list[Execution]:
    executions = []
    for path in GOLDEN_FILES:
        document = json.loads(path.read_text(encoding="utf-8"))
        for instance in document["instances"]:
            for number, history in enumerate(instance["executions"]):
                executions.append(
                    Execution(path.stem, instance["instance_id"], instance["name"], number, history)
                )
    return executions


EXECUTIONS = load_executions()
CUTS = [(execution, cut) for execution in EXECUTIONS for cut in range(len(execution.episodes))]


def cut_id(case: tuple[Execution, int]) -> str:
    execution, cut = case
    return f"{execution.golden}:{execution.instance_id}#{execution.number}@{cut}"


# --------------------------------------------------------------------------- replay


def call_orchestrator(info: FunctionInfo, context_json: str, _: InstanceRecord) -> OrchestratorCall:
    """As the worker calls an orchestrator: the orchestrationTrigger converter, then the
    function the app registered (the SDK's Orchestrator handle)."""
    arguments = {info.trigger["name"]: orchestrator_trigger_datum(context_json)}
    return interpret_orchestrator_result(lambda: info.user_function(**arguments))


def run_episode(execution: Execution, history: list[Event], episode: Episode) -> EpisodeCommit:
    record = execution.record()
    messages = [
        Message(n, record.instance_id, record.execution_id, event, episode.started_at)
        for n, event in enumerate(episode.arrived)
    ]
    snapshot = EpisodeSnapshot(record, list(history), messages)
    return engine.run_episode(
        snapshot,
        index=INDEX,
        call_orchestrator=call_orchestrator,
        default_version=DEPLOYED_VERSION,
        now=episode.started_at,
    )


def resume_from(execution: Execution, cut: int) -> EpisodeCommit:
    """Hand the current code the recorded history up to episode `cut` (what the task hub held
    when the redeploy landed), then deliver what arrived next, episode by episode, checking
    each episode's decisions; returns the last episode's commit."""
    episodes = execution.episodes
    history = history_before(execution.history, cut)
    commit = None
    for number in range(cut, len(episodes)):
        commit = run_episode(execution, history, episodes[number])
        where = f"{execution.golden}: {execution.name} {execution.instance_id}, episode {number}"
        assert_not_failed_by_host(commit, episodes[number], where)
        assert decisions(commit.history) == decisions(episodes[number].decided), (
            f"{where}: the current code schedules other actions than the recorded run did "
            "(an ungated change of what an orchestrator yields? see agent/versions.py)"
        )
        history += commit.history
    assert commit is not None
    return commit


def history_before(history: list[Event], cut: int) -> list[Event]:
    """The events of the first `cut` episodes."""
    if cut == 0:
        return []
    seen = 0
    for position, event in enumerate(history):
        if event["EventType"] == T.ORCHESTRATOR_COMPLETED:
            seen += 1
            if seen == cut:
                return history[: position + 1]
    raise AssertionError(f"the history has fewer than {cut} episodes")


def decisions(events: list[Event]) -> list[tuple[str, int, str]]:
    """What an episode scheduled, as the extension's non-determinism check compares it."""
    return [
        (T(e["EventType"]).name, e["EventId"], str(e.get("Name") or "").lower())
        for e in events
        if e["EventType"] in SCHEDULING
    ]


def assert_not_failed_by_host(commit: EpisodeCommit, episode: Episode, where: str) -> None:
    recorded_failure = any(
        e["EventType"] == T.EXECUTION_COMPLETED
        and e.get("OrchestrationStatus") == 3  # DurableTask OrchestrationStatus.Failed
        for e in episode.decided
    )
    if commit.completion is not None and commit.completion.status == RuntimeStatus.FAILED:
        assert recorded_failure, f"{where}: the replay failed: {commit.completion.result_raw}"


def assert_contains(recorded: Any, replayed: Any, path: str = "output") -> None:
    """`replayed` holds everything `recorded` held (a newer version may add fields)."""
    if isinstance(recorded, dict):
        assert isinstance(replayed, dict), f"{path}: {replayed!r} is not an object"
        for key, value in recorded.items():
            assert key in replayed, f"{path}.{key} is gone"
            assert_contains(value, replayed[key], f"{path}.{key}")
    else:
        assert replayed == recorded, f"{path}: {replayed!r} != recorded {recorded!r}"


def assert_ends_as_recorded(execution: Execution, commit: EpisodeCommit) -> None:
    [ending] = [e for e in execution.episodes[-1].decided if e["EventType"] in ENDINGS]
    if ending["EventType"] == T.CONTINUE_AS_NEW:
        assert commit.continue_as_new, f"{execution.golden}: did not continue as new"
        assert_contains(
            parse_jtoken(ending["Result"]), parse_jtoken(commit.continue_as_new_input), "input"
        )
        return
    assert commit.completion is not None, f"{execution.golden}: the run did not finish"
    assert commit.completion.status == RuntimeStatus.COMPLETED
    assert_contains(parse_jtoken(ending["Result"]), parse_jtoken(commit.completion.result_raw))


# --------------------------------------------------------------------------- tests


def test_there_are_golden_histories_of_a_turn_an_approval_wait_and_a_batch_lane():
    names = {e.name for e in EXECUTIONS}
    assert {"chat_turn", "scheduled_batch", "batch_lane"} <= names
    assert any(e.name == "batch_lane" and e.number > 0 for e in EXECUTIONS)  # continue-as-new
    approvals = [e for e in EXECUTIONS if any(x.get("Name") == "approval" for x in e.history)]
    assert approvals, "no golden history waits for an approval"


def recorded_versions() -> set[str]:
    return {e.record().version for e in EXECUTIONS}


def test_the_current_version_and_every_older_one_in_flight_have_golden_histories():
    """Raising CURRENT without recording the new version's histories would leave its runs
    unprotected from the next change (tests/golden/README.md: record them when it ships)."""
    assert {"", *(version_text(v) for v in range(2, CURRENT + 1))} <= recorded_versions(), (
        f"record golden histories of version {CURRENT} (python -m tests.golden.record)"
    )


def scheduled_after(execution: Execution, kind: T, name: str) -> list[T]:
    """What each `kind` event for activity `name` was followed by (the next scheduling)."""
    names = {e["EventId"]: e.get("Name") for e in execution.history if e["EventType"] in SCHEDULING}
    follows: list[T] = []
    events = execution.history
    for position, event in enumerate(events):
        if event["EventType"] == kind and names.get(event.get("TaskScheduledId")) == name:
            later = [
                T(e["EventType"]) for e in events[position + 1 :] if e["EventType"] in SCHEDULING
            ]
            follows.append(later[0] if later else T.EXECUTION_COMPLETED)
    return follows


def approval_answers(execution: Execution) -> list[dict[str, Any]]:
    return [
        json.loads(parse_jtoken(e["Input"]))
        for e in execution.history
        if e["EventType"] == T.EVENT_RAISED and e.get("Name") == "approval"
    ]


def test_version_2_golden_histories_cover_what_version_2_added():
    v2 = [e for e in EXECUTIONS if e.record().version == version_text(2)]
    assert {"chat_turn", "scheduled_batch", "batch_lane"} <= {e.name for e in v2}
    assert any(e.name == "batch_lane" and e.number > 0 for e in v2)  # continue-as-new
    assert any(  # a chat_turn sub-orchestration of a lane
        e.name == "chat_turn" and e.record().parent is not None for e in v2
    )
    # Backoff timers after a failed model step, tool call round, and batch item.
    for activity in ("model_step", "tool_call", "take_batch_item"):
        assert any(T.TIMER_CREATED in scheduled_after(e, T.TASK_FAILED, activity) for e in v2), (
            activity
        )
    questions = {answer.get("question_id") for e in v2 for answer in approval_answers(e)}
    assert {"step1-approval", "step1-resend"} <= questions
    outputs = [
        json.loads(GOLDEN_DIR.joinpath(f"{e.golden}.json").read_text())["outcome"] for e in v2
    ]
    assert any(o["output"].get("status") == "budget_exceeded" for o in outputs)


@pytest.mark.parametrize("execution", EXECUTIONS, ids=lambda e: cut_id((e, 0)))
def test_a_golden_history_replays_from_the_start_to_its_recorded_outcome(execution: Execution):
    assert_ends_as_recorded(execution, resume_from(execution, 0))


@pytest.mark.parametrize("case", [c for c in CUTS if c[1] > 0], ids=cut_id)
def test_a_run_in_flight_at_a_redeploy_continues_to_its_recorded_outcome(
    case: tuple[Execution, int],
):
    execution, cut = case
    assert_ends_as_recorded(execution, resume_from(execution, cut))


# How each activity reads its input (agent/activities.py).
ACTIVITY_INPUTS: dict[str, Any] = {
    "model_step": ModelStepInput,
    "compact": CompactInput,
    "tool_call": ToolCallInput,
    "finish_turn": FinishTurnInput,
    "take_batch_item": ClaimInput,
    "claim_batch_item": ClaimInput,
    "record_batch_outcome": BatchItemOutcome,
    "poll_tool_task": PollTaskInput,
    "answer_tool_task": AnswerTaskInput,
}


def test_an_activity_queued_by_the_old_code_reads_its_input_under_the_current_code():
    """Activities scheduled before a redeploy run on the new workers with the recorded input."""
    scheduled = [e for x in EXECUTIONS for e in x.history if e["EventType"] == T.TASK_SCHEDULED]
    assert {e["Name"] for e in scheduled} == set(ACTIVITY_INPUTS)
    for event in scheduled:
        ACTIVITY_INPUTS[event["Name"]].from_dict(decode_activity_input(event["Input"]))


def test_golden_histories_are_as_recorded():
    """Editing a recording to make the replay pass would hide a break of runs in flight: the
    checksums written when each file was recorded must still match."""
    sums = dict(
        reversed(line.split(maxsplit=1))
        for line in (GOLDEN_DIR / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    )
    assert set(sums) == {path.name for path in GOLDEN_FILES}
    for path in GOLDEN_FILES:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[path.name], path.name


@pytest.mark.parametrize("golden", ["chat_turn_with_tools", "v2_chat_turn_tools_retried_in_rounds"])
def test_replaying_the_recorded_past_with_other_actions_is_caught_as_non_determinism(golden: str):
    """The check itself can fail: a history whose first activity was renamed no longer
    replays (as when an orchestrator yields something else at that position)."""
    execution = next(e for e in EXECUTIONS if e.golden == golden)
    tampered = [
        {**e, "Name": "renamed_step"} if e["EventType"] == T.TASK_SCHEDULED else e
        for e in execution.history
    ]
    changed = Execution(execution.golden, execution.instance_id, execution.name, 0, tampered)
    with pytest.raises(AssertionError, match="Non-Deterministic workflow detected"):
        resume_from(changed, 1)


def test_a_version_2_history_replayed_as_version_1_is_caught():
    """The recorded version decides the path: the same history without its version takes
    version 1's path (no budget check before a step) and schedules a model step where the
    recording closed the turn."""
    execution = next(e for e in EXECUTIONS if e.golden == "v2_chat_turn_budget_stop_before_step")
    unversioned = [
        {**e, "Version": ""} if e["EventType"] == T.EXECUTION_STARTED else e
        for e in execution.history
    ]
    changed = Execution(execution.golden, execution.instance_id, execution.name, 0, unversioned)
    with pytest.raises(AssertionError, match="schedules other actions"):
        resume_from(changed, 0)
