"""Durable Task history events, shaped like the ones the Functions host sends to the worker.

The host serialises DurableTask.Core `HistoryEvent` objects with Newtonsoft defaults: PascalCase
properties, `EventType` as an integer, `EventId` (the task id for scheduling events, -1 for the
others) and `Timestamp`. `IsPlayed` is not stored: it is added when a history is sent to the
orchestrator (past episodes are played, the current one is not).

Payload conventions follow what DurableTask.Core stores (the "raw" strings):

- `ExecutionStarted.Input` and `SubOrchestrationInstanceCreated.Input`: the input serialised once
  more by the host, usually a JSON string literal wrapping the JSON the SDK produced;
- `TaskScheduled.Input`: the activity parameters array, `[<input>]`;
- `TaskCompleted.Result` / `SubOrchestrationInstanceCompleted.Result`: the JSON text of the value;
- `EventRaised.Input`: the JSON text of the event payload as the management API received it.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

from azure.durable_functions.models.history.HistoryEventType import HistoryEventType

Event = dict[str, Any]


class RuntimeStatus(enum.StrEnum):
    """Orchestration runtime statuses as the management API reports them."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    FAILED = "Failed"
    TERMINATED = "Terminated"
    CANCELED = "Canceled"
    SUSPENDED = "Suspended"


TERMINAL_STATUSES = frozenset(
    {
        RuntimeStatus.COMPLETED,
        RuntimeStatus.FAILED,
        RuntimeStatus.TERMINATED,
        RuntimeStatus.CANCELED,
    }
)

# DurableTask.Core.OrchestrationStatus values, as ExecutionCompleted events carry them.
_ORCHESTRATION_STATUS_CODES = {
    RuntimeStatus.RUNNING: 0,
    RuntimeStatus.COMPLETED: 1,
    RuntimeStatus.CONTINUED_AS_NEW: 2,
    RuntimeStatus.FAILED: 3,
    RuntimeStatus.CANCELED: 4,
    RuntimeStatus.TERMINATED: 5,
    RuntimeStatus.PENDING: 6,
    RuntimeStatus.SUSPENDED: 7,
}

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the shape the SDK parses and also writes (`fireAt`).

    Every history event, instance row and dispatcher query writes one: `isoformat` gives the
    same text as strftime with `_TIMESTAMP_FORMAT` in about half the time, except for years
    before 1000 (strftime does not pad them), which keep strftime's text."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    if utc.year < 1000:
        return utc.strftime(_TIMESTAMP_FORMAT)
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"  # without "+00:00"


def parse_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_status_time(moment: datetime) -> str:
    """`createdTime` / `lastUpdatedTime` as the management API writes them (`ToString("s") + "Z"`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def serialize_jtoken(value: Any) -> str:
    """JSON text the way Newtonsoft's `JToken.ToString(Formatting.None)` writes it (compact)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_jtoken(text: str | None) -> Any:
    """`ParseToJToken`: JSON when the text is JSON, else the text itself as a string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _event(event_type: HistoryEventType, moment: datetime, event_id: int = -1) -> Event:
    return {
        "EventType": int(event_type),
        "EventId": event_id,
        "Timestamp": format_timestamp(moment),
    }


def orchestrator_started(moment: datetime) -> Event:
    return _event(HistoryEventType.ORCHESTRATOR_STARTED, moment)


def orchestrator_completed(moment: datetime) -> Event:
    return _event(HistoryEventType.ORCHESTRATOR_COMPLETED, moment)


def execution_started(
    moment: datetime,
    *,
    name: str,
    version: str,
    input_raw: str | None,
    instance_id: str,
    execution_id: str,
    parent: dict[str, Any] | None,
) -> Event:
    return {
        **_event(HistoryEventType.EXECUTION_STARTED, moment),
        "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
        "ParentInstance": parent,
        "Name": name,
        "Version": version,
        "Input": input_raw,
        "Tags": None,
        "ScheduledStartTime": None,
    }


def parent_instance(
    *, name: str, instance_id: str, execution_id: str, task_schedule_id: int
) -> dict[str, Any]:
    """The `ParentInstance` of a sub-orchestration's ExecutionStarted event."""
    return {
        "Name": name,
        "Version": "",
        "TaskScheduleId": task_schedule_id,
        "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
    }


def execution_completed(
    moment: datetime, *, status: RuntimeStatus, result: str | None, details: str | None = None
) -> Event:
    return {
        **_event(HistoryEventType.EXECUTION_COMPLETED, moment),
        "OrchestrationStatus": _ORCHESTRATION_STATUS_CODES[status],
        "Result": result,
        "Details": details,
    }


def execution_terminated(moment: datetime, *, reason: str | None) -> Event:
    return {**_event(HistoryEventType.EXECUTION_TERMINATED, moment), "Input": reason}


def continue_as_new(moment: datetime, *, input_raw: str | None) -> Event:
    return {
        **_event(HistoryEventType.CONTINUE_AS_NEW, moment),
        "OrchestrationStatus": _ORCHESTRATION_STATUS_CODES[RuntimeStatus.CONTINUED_AS_NEW],
        "Result": input_raw,
    }


def task_scheduled(moment: datetime, *, task_id: int, name: str, input_raw: str | None) -> Event:
    return {
        **_event(HistoryEventType.TASK_SCHEDULED, moment, task_id),
        "Name": name,
        "Version": "",
        "Input": input_raw,
    }


def task_completed(moment: datetime, *, task_id: int, result: str | None) -> Event:
    return {
        **_event(HistoryEventType.TASK_COMPLETED, moment),
        "TaskScheduledId": task_id,
        "Result": result,
    }


def task_failed(moment: datetime, *, task_id: int, reason: str, details: str | None) -> Event:
    return {
        **_event(HistoryEventType.TASK_FAILED, moment),
        "TaskScheduledId": task_id,
        "Reason": reason,
        "Details": details,
    }


def timer_created(moment: datetime, *, timer_id: int, fire_at: datetime) -> Event:
    return {
        **_event(HistoryEventType.TIMER_CREATED, moment, timer_id),
        "FireAt": format_timestamp(fire_at),
    }


def timer_fired(moment: datetime, *, timer_id: int, fire_at: datetime) -> Event:
    return {
        **_event(HistoryEventType.TIMER_FIRED, moment),
        "TimerId": timer_id,
        "FireAt": format_timestamp(fire_at),
    }


def sub_orchestration_created(
    moment: datetime,
    *,
    task_id: int,
    name: str,
    instance_id: str,
    input_raw: str | None,
    version: str,
) -> Event:
    return {
        **_event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED, moment, task_id),
        "Name": name,
        "Version": version,
        "InstanceId": instance_id,
        "Input": input_raw,
    }


def sub_orchestration_completed(moment: datetime, *, task_id: int, result: str | None) -> Event:
    return {
        **_event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, moment),
        "TaskScheduledId": task_id,
        "Result": result,
    }


def sub_orchestration_failed(
    moment: datetime, *, task_id: int, reason: str, details: str | None
) -> Event:
    return {
        **_event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED, moment),
        "TaskScheduledId": task_id,
        "Reason": reason,
        "Details": details,
    }


def event_raised(moment: datetime, *, name: str, input_raw: str | None) -> Event:
    return {**_event(HistoryEventType.EVENT_RAISED, moment), "Name": name, "Input": input_raw}


def event_type_of(event: Event) -> HistoryEventType:
    return HistoryEventType(event["EventType"])
