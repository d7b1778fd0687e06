"""The durable engine: orchestration episodes and management commands over a store transaction.

Everything here is storage-agnostic: it works on a `StoreTransaction` (SQLite in the host,
in-memory in the test driver), so the host and `tests/support/replay.py` share one code path.

Work flows through two queues, like DurableTask's control and work-item queues:

- *messages* (the orchestrator inbox): ExecutionStarted, TaskCompleted/TaskFailed,
  TimerFired (invisible until its fire time), EventRaised, SubOrchestrationInstance
  Completed/Failed, ExecutionTerminated;
- *activities*: scheduled activity calls waiting for a worker.

An episode takes an instance's visible messages, appends them to its history after an
OrchestratorStarted event, runs the orchestrator, and commits atomically: the new history
events, the consumed messages removed, the new activities/timers/sub-orchestrations queued and
the instance status updated. An activity's completion is one transaction too (its queue row
removed, its TaskCompleted queued), so after a crash completed work is never redone and
in-flight work is redone (at-least-once, as on Azure).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from azure.durable_functions.models.history.HistoryEventType import HistoryEventType

from . import history as h
from . import payloads, sdk_timestamps
from .errors import (
    InstanceAlreadyExists,
    InstanceGone,
    InstanceNotFound,
    InstanceNotTerminal,
    InvalidInstanceId,
    UnknownFunction,
    unknown_function_message,
)
from .history import TERMINAL_STATUSES, Event, RuntimeStatus
from .indexing import AppIndex, FunctionInfo
from .replay import (
    OrchestratorCall,
    ReplayOutcome,
    SubOrchestrationDecision,
    TaskDecision,
    TimerDecision,
    build_context_json,
    replay_actions,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ParentRef:
    """The parent of a sub-orchestration: where its completion is reported."""

    instance_id: str
    execution_id: str
    task_id: int
    name: str


@dataclass(frozen=True)
class InstanceRecord:
    instance_id: str
    name: str
    version: str
    execution_id: str
    runtime_status: RuntimeStatus
    input_raw: str | None
    output_raw: str | None
    custom_status_raw: str | None
    created_time: datetime
    last_updated_time: datetime
    parent: ParentRef | None = None


@dataclass(frozen=True)
class Message:
    """An orchestrator inbox message; `execution_id` None targets whatever execution is current."""

    message_id: int
    instance_id: str
    execution_id: str | None
    event: Event
    visible_at: datetime


@dataclass(frozen=True)
class ActivityWork:
    work_id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    parameters_raw: str | None


@dataclass(frozen=True)
class InstanceQuery:
    created_from: datetime | None = None
    created_to: datetime | None = None
    statuses: frozenset[RuntimeStatus] | None = None
    instance_id_prefix: str | None = None


class StoreTransaction(Protocol):
    """What the engine needs from a store, inside one atomic transaction."""

    def get_instance(self, instance_id: str) -> InstanceRecord | None: ...
    def save_instance(self, record: InstanceRecord) -> None: ...
    def delete_instance(self, instance_id: str) -> None: ...  # with its history and queued work
    def query_instances(self, query: InstanceQuery) -> list[InstanceRecord]: ...
    def load_history(self, instance_id: str) -> list[Event]: ...
    def append_history(self, instance_id: str, events: Sequence[Event]) -> None: ...
    def clear_history(self, instance_id: str) -> None: ...
    def enqueue_message(
        self, instance_id: str, execution_id: str | None, event: Event, visible_at: datetime
    ) -> None: ...
    def visible_messages(self, instance_id: str, now: datetime) -> list[Message]: ...
    def delete_messages(self, message_ids: Sequence[int]) -> None: ...
    def delete_queued_work(self, instance_id: str) -> None: ...  # messages and activities
    def enqueue_activity(
        self, instance_id: str, execution_id: str, task_id: int, name: str, parameters_raw: str
    ) -> None: ...
    def delete_activity(self, work_id: int) -> bool: ...


# --------------------------------------------------------------------------- commands


MAX_INSTANCE_ID_LENGTH = 256


def new_instance_id() -> str:
    return uuid.uuid4().hex


def validate_instance_id(instance_id: str) -> None:
    """The extension's instance id rules (DurableClient.ValidateInstanceId)."""
    if not instance_id or len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise InvalidInstanceId(
            f"Instance ID must be between 1 and {MAX_INSTANCE_ID_LENGTH} characters long."
        )
    if instance_id.startswith("@"):
        raise InvalidInstanceId("Orchestration instance ids must not start with @.")
    if any(char in "/\\#?" or ord(char) < 32 or 127 <= ord(char) < 160 for char in instance_id):
        raise InvalidInstanceId("Instance ID must not contain /, \\, #, ?, or control characters.")


def start_instance(
    tx: StoreTransaction,
    index: AppIndex,
    *,
    name: str,
    instance_id: str,
    input_raw: str | None,
    version: str,
    now: datetime,
    parent: ParentRef | None = None,
) -> InstanceRecord:
    """Create (or replace a terminal) instance and queue its ExecutionStarted message."""
    validate_instance_id(instance_id)
    info = index.orchestrator(name)
    if info is None:
        raise UnknownFunction(
            unknown_function_message(name, "orchestrator", index.orchestrator_names())
        )
    existing = tx.get_instance(instance_id)
    if existing is not None:
        if existing.runtime_status not in TERMINAL_STATUSES:
            raise InstanceAlreadyExists(
                f"An Orchestration instance with the status {existing.runtime_status} already exists."
            )
        tx.delete_instance(instance_id)
    execution_id = uuid.uuid4().hex
    record = InstanceRecord(
        instance_id=instance_id,
        name=name,
        version=version,
        execution_id=execution_id,
        runtime_status=RuntimeStatus.PENDING,
        input_raw=input_raw,
        output_raw=None,
        custom_status_raw=None,
        created_time=now,
        last_updated_time=now,
        parent=parent,
    )
    tx.save_instance(record)
    tx.enqueue_message(instance_id, execution_id, _execution_started(record, now), now)
    return record


def _execution_started(record: InstanceRecord, now: datetime) -> Event:
    parent = record.parent
    parent_json = (
        h.parent_instance(
            name=parent.name,
            instance_id=parent.instance_id,
            execution_id=parent.execution_id,
            task_schedule_id=parent.task_id,
        )
        if parent is not None
        else None
    )
    return h.execution_started(
        now,
        name=record.name,
        version=record.version,
        input_raw=record.input_raw,
        instance_id=record.instance_id,
        execution_id=record.execution_id,
        parent=parent_json,
    )


def _require_live(tx: StoreTransaction, instance_id: str) -> InstanceRecord:
    record = tx.get_instance(instance_id)
    if record is None:
        raise InstanceNotFound(f"No instance with ID '{instance_id}' found.")
    if record.runtime_status in TERMINAL_STATUSES:
        raise InstanceGone(f"Instance '{instance_id}' is {record.runtime_status}.")
    return record


def raise_event(
    tx: StoreTransaction, instance_id: str, event_name: str, input_raw: str | None, now: datetime
) -> None:
    _require_live(tx, instance_id)
    tx.enqueue_message(
        instance_id, None, h.event_raised(now, name=event_name, input_raw=input_raw), now
    )


def terminate(tx: StoreTransaction, instance_id: str, reason: str | None, now: datetime) -> None:
    _require_live(tx, instance_id)
    tx.enqueue_message(instance_id, None, h.execution_terminated(now, reason=reason), now)


def purge(tx: StoreTransaction, instance_id: str) -> int:
    record = tx.get_instance(instance_id)
    if record is None:
        raise InstanceNotFound(f"No instance with ID '{instance_id}' found.")
    if record.runtime_status not in TERMINAL_STATUSES:
        raise InstanceNotTerminal(
            "Only orchestrations in a terminal state can be purged, but the orchestration with "
            f"instance ID {instance_id} has status {record.runtime_status}"
        )
    tx.delete_instance(instance_id)
    return 1


def purge_matching(tx: StoreTransaction, query: InstanceQuery) -> int:
    terminal = query.statuses & TERMINAL_STATUSES if query.statuses else TERMINAL_STATUSES
    records = tx.query_instances(replace(query, statuses=frozenset(terminal)))
    for record in records:
        tx.delete_instance(record.instance_id)
    return len(records)


# --------------------------------------------------------------------------- activities


@dataclass(frozen=True)
class ActivityResult:
    result_raw: str | None = None
    failure_reason: str | None = None
    failure_details: str | None = None

    @property
    def failed(self) -> bool:
        return self.failure_reason is not None


def complete_activity(
    tx: StoreTransaction, work: ActivityWork, result: ActivityResult, now: datetime
) -> bool:
    """Record an activity's outcome; False when its work item is gone (instance purged/restarted)."""
    if not tx.delete_activity(work.work_id):
        return False
    if result.failed:
        event = h.task_failed(
            now,
            task_id=work.task_id,
            reason=result.failure_reason or "",
            details=result.failure_details,
        )
    else:
        event = h.task_completed(now, task_id=work.task_id, result=result.result_raw)
    tx.enqueue_message(work.instance_id, work.execution_id, event, now)
    return True


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class EpisodeSnapshot:
    instance: InstanceRecord
    history: list[Event]
    messages: list[Message]


@dataclass(frozen=True)
class Completion:
    status: RuntimeStatus  # Completed, Failed or Terminated
    result_raw: str | None
    details: str | None = None


@dataclass
class EpisodeCommit:
    instance_id: str
    execution_id: str
    consumed_message_ids: list[int]
    history: list[Event] = field(default_factory=list)
    custom_status_raw: str | None = None
    keep_custom_status: bool = False
    activities: list[TaskDecision] = field(default_factory=list)
    timers: list[TimerDecision] = field(default_factory=list)
    sub_orchestrations: list[SubOrchestrationDecision] = field(default_factory=list)
    completion: Completion | None = None
    continue_as_new: bool = False
    continue_as_new_input: str | None = None
    outcome: ReplayOutcome | None = None  # for drivers and diagnostics


OrchestratorCaller = Callable[[FunctionInfo, str, InstanceRecord], OrchestratorCall]


def begin_episode(tx: StoreTransaction, instance_id: str, now: datetime) -> EpisodeSnapshot | None:
    """Read what an episode needs; drops messages that can no longer be delivered."""
    messages = tx.visible_messages(instance_id, now)
    if not messages:
        return None
    record = tx.get_instance(instance_id)
    if record is None or record.runtime_status in TERMINAL_STATUSES:
        tx.delete_messages([m.message_id for m in messages])
        return None
    current = [m for m in messages if m.execution_id in (None, record.execution_id)]
    stale = [m.message_id for m in messages if m not in current]
    if stale:
        tx.delete_messages(stale)
    history = tx.load_history(instance_id)
    starts = [m for m in current if _is(m.event, HistoryEventType.EXECUTION_STARTED)]
    if not history and not starts:
        logger.warning("Dropping messages for instance %s that has not started", instance_id)
        tx.delete_messages([m.message_id for m in current])
        return None
    ordered = starts[:1] + [m for m in current if m not in starts[:1]]
    return EpisodeSnapshot(record, history, ordered)


def run_episode(
    snapshot: EpisodeSnapshot,
    *,
    index: AppIndex,
    call_orchestrator: OrchestratorCaller,
    default_version: str,
    now: datetime,
) -> EpisodeCommit:
    """Run one orchestrator episode (no storage access: safe to run in a worker thread)."""
    record = snapshot.instance
    consumed = [m.message_id for m in snapshot.messages]
    commit = EpisodeCommit(record.instance_id, record.execution_id, consumed)
    new_events = [h.orchestrator_started(now)]
    new_events += [m.event for m in snapshot.messages]
    terminated = next(
        (e for e in new_events if _is(e, HistoryEventType.EXECUTION_TERMINATED)), None
    )
    if terminated is not None:
        reason = terminated.get("Input")
        _finish(commit, new_events, Completion(RuntimeStatus.TERMINATED, reason), now)
        commit.keep_custom_status = True
        return commit
    info = index.orchestrator(record.name)
    if info is None:
        message = f"The orchestrator function '{record.name}' no longer exists in the app."
        _finish(commit, new_events, _failure(record.name, message, None), now)
        commit.keep_custom_status = True
        return commit
    sdk_timestamps.install()  # the SDK parses every history timestamp of every episode
    context_json = build_context_json(
        instance_id=record.instance_id,
        parent_instance_id=record.parent.instance_id if record.parent else None,
        input_raw=record.input_raw,
        past_events=snapshot.history,
        new_events=new_events,
    )
    call = call_orchestrator(info, context_json, record)
    return _conclude(commit, snapshot, new_events, call, index, default_version, now)


def _conclude(
    commit: EpisodeCommit,
    snapshot: EpisodeSnapshot,
    new_events: list[Event],
    call: OrchestratorCall,
    index: AppIndex,
    default_version: str,
    now: datetime,
) -> EpisodeCommit:
    record = snapshot.instance
    if call.state is None:
        commit.keep_custom_status = True
        _finish(
            commit, new_events, _failure(record.name, call.failure or "", call.failure_details), now
        )
        return commit
    state = call.state
    commit.custom_status_raw = (
        h.serialize_jtoken(state.custom_status) if state.custom_status is not None else None
    )
    outcome = replay_actions(
        snapshot.history + new_events,
        state.actions,
        index=index,
        instance_id=record.instance_id,
        parent_instance_id=record.parent.instance_id if record.parent else None,
        execution_id=record.execution_id,
        default_version=default_version,
    )
    commit.outcome = outcome
    if outcome.host_failure is not None:
        _finish(commit, new_events, _failure(record.name, outcome.host_failure, None), now)
        return commit
    if outcome.completed and call.failure is not None:
        _finish(commit, new_events, _failure(record.name, call.failure, call.failure_details), now)
        return commit
    if outcome.completed and state.is_done and outcome.continue_as_new:
        commit.continue_as_new = True
        commit.continue_as_new_input = outcome.continue_as_new_input
        commit.history = [
            *new_events,
            h.continue_as_new(now, input_raw=outcome.continue_as_new_input),
            h.orchestrator_completed(now),
        ]
        return commit
    if outcome.completed and state.is_done:
        output_raw = payloads.orchestrator_output_to_raw(state.output)
        _finish(commit, new_events, Completion(RuntimeStatus.COMPLETED, output_raw), now)
        return commit
    if outcome.completed:
        logger.warning(
            "Orchestrator '%s' (instance %s) replayed all its actions but did not finish; "
            "it will wait forever, as on Azure",
            record.name,
            record.instance_id,
        )
    commit.history = [*new_events, *_decision_events(outcome, now), h.orchestrator_completed(now)]
    commit.activities = [d for d in outcome.new_decisions if isinstance(d, TaskDecision)]
    commit.timers = [d for d in outcome.new_decisions if isinstance(d, TimerDecision)]
    commit.sub_orchestrations = [
        d for d in outcome.new_decisions if isinstance(d, SubOrchestrationDecision)
    ]
    return commit


def _failure(name: str, message: str, details: str | None) -> Completion:
    # DurableTask stores the OrchestrationFailureException message as the output.
    return Completion(
        RuntimeStatus.FAILED, f"Orchestrator function '{name}' failed: {message}", details
    )


def _finish(
    commit: EpisodeCommit, new_events: list[Event], completion: Completion, now: datetime
) -> None:
    completed = h.execution_completed(
        now, status=completion.status, result=completion.result_raw, details=completion.details
    )
    commit.history = [*new_events, completed, h.orchestrator_completed(now)]
    commit.completion = completion


def _decision_events(outcome: ReplayOutcome, now: datetime) -> list[Event]:
    events: list[Event] = []
    for decision in outcome.new_decisions:
        if isinstance(decision, TaskDecision):
            events.append(
                h.task_scheduled(
                    now,
                    task_id=decision.task_id,
                    name=decision.name,
                    input_raw=decision.parameters_raw,
                )
            )
        elif isinstance(decision, TimerDecision):
            events.append(h.timer_created(now, timer_id=decision.task_id, fire_at=decision.fire_at))
        else:
            events.append(
                h.sub_orchestration_created(
                    now,
                    task_id=decision.task_id,
                    name=decision.name,
                    instance_id=decision.instance_id,
                    input_raw=decision.input_raw,
                    version=decision.version,
                )
            )
    return events


def apply_episode(
    tx: StoreTransaction, commit: EpisodeCommit, index: AppIndex, now: datetime
) -> InstanceRecord | None:
    """Commit an episode; returns the updated instance (None when the instance moved on)."""
    record = tx.get_instance(commit.instance_id)
    tx.delete_messages(commit.consumed_message_ids)
    if record is None or record.execution_id != commit.execution_id:
        return None  # purged or restarted while the episode ran: its result is obsolete
    custom_status = (
        record.custom_status_raw if commit.keep_custom_status else commit.custom_status_raw
    )
    if commit.continue_as_new:
        return _apply_continue_as_new(tx, record, commit, now)
    tx.append_history(record.instance_id, commit.history)
    if commit.completion is not None:
        updated = replace(
            record,
            runtime_status=commit.completion.status,
            output_raw=commit.completion.result_raw,
            custom_status_raw=custom_status,
            last_updated_time=now,
        )
        tx.save_instance(updated)
        tx.delete_queued_work(record.instance_id)
        _notify_parent(tx, updated, commit.completion, now)
        return updated
    updated = replace(
        record,
        runtime_status=RuntimeStatus.RUNNING,
        custom_status_raw=custom_status,
        last_updated_time=now,
    )
    tx.save_instance(updated)
    _queue_decisions(tx, updated, commit, index, now)
    return updated


def _apply_continue_as_new(
    tx: StoreTransaction, record: InstanceRecord, commit: EpisodeCommit, now: datetime
) -> InstanceRecord:
    # The finished execution's history is replaced by the new execution's, as on Azure Storage;
    # messages aimed at the old execution id are dropped when they arrive.
    tx.clear_history(record.instance_id)
    updated = replace(
        record,
        execution_id=uuid.uuid4().hex,
        runtime_status=RuntimeStatus.CONTINUED_AS_NEW,
        input_raw=commit.continue_as_new_input,
        output_raw=None,
        custom_status_raw=None,
        last_updated_time=now,
    )
    tx.save_instance(updated)
    tx.enqueue_message(
        updated.instance_id, updated.execution_id, _execution_started(updated, now), now
    )
    return updated


def _queue_decisions(
    tx: StoreTransaction,
    record: InstanceRecord,
    commit: EpisodeCommit,
    index: AppIndex,
    now: datetime,
) -> None:
    for activity in commit.activities:
        tx.enqueue_activity(
            record.instance_id,
            record.execution_id,
            activity.task_id,
            activity.name,
            activity.parameters_raw,
        )
    for timer in commit.timers:
        fired = h.timer_fired(timer.fire_at, timer_id=timer.task_id, fire_at=timer.fire_at)
        tx.enqueue_message(record.instance_id, record.execution_id, fired, timer.fire_at)
    for sub in commit.sub_orchestrations:
        parent = ParentRef(record.instance_id, record.execution_id, sub.task_id, record.name)
        try:
            start_instance(
                tx,
                index,
                name=sub.name,
                instance_id=sub.instance_id,
                input_raw=sub.input_raw,
                version=sub.version,
                now=now,
                parent=parent,
            )
        except (InstanceAlreadyExists, InvalidInstanceId, UnknownFunction) as exc:
            failed = h.sub_orchestration_failed(
                now, task_id=sub.task_id, reason=exc.message, details=None
            )
            tx.enqueue_message(record.instance_id, record.execution_id, failed, now)


def _notify_parent(
    tx: StoreTransaction, record: InstanceRecord, completion: Completion, now: datetime
) -> None:
    parent = record.parent
    if parent is None:
        return
    if completion.status == RuntimeStatus.COMPLETED:
        event = h.sub_orchestration_completed(
            now, task_id=parent.task_id, result=completion.result_raw
        )
    else:
        event = h.sub_orchestration_failed(
            now,
            task_id=parent.task_id,
            reason=completion.result_raw or "",
            details=completion.details,
        )
    tx.enqueue_message(parent.instance_id, parent.execution_id, event, now)


def fail_instance(tx: StoreTransaction, instance_id: str, message: str, now: datetime) -> None:
    """Mark an instance Failed after an internal host error, so it does not spin forever."""
    record = tx.get_instance(instance_id)
    if record is None or record.runtime_status in TERMINAL_STATUSES:
        return
    completion = _failure(record.name, message, None)
    failed = h.execution_completed(now, status=RuntimeStatus.FAILED, result=completion.result_raw)
    tx.append_history(
        instance_id, [h.orchestrator_started(now), failed, h.orchestrator_completed(now)]
    )
    updated = replace(
        record,
        runtime_status=RuntimeStatus.FAILED,
        output_raw=completion.result_raw,
        last_updated_time=now,
    )
    tx.save_instance(updated)
    tx.delete_queued_work(instance_id)
    _notify_parent(tx, updated, completion, now)


def _is(event: Event, kind: HistoryEventType) -> bool:
    return event.get("EventType") == int(kind)
