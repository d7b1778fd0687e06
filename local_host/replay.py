"""Replay: the host's half of running an orchestrator episode.

An episode has two halves, as in the Durable Functions extension:

1. *The worker half*: the orchestrator function (the SDK's `Orchestrator.create` handle) is
   called with the context JSON `{"history", "instanceId", "isReplaying", "parentInstanceId",
   "input", "upperSchemaVersion", ...}` through the `orchestrationTrigger` converter and returns
   the orchestrator state JSON (`isDone`, `actions`, `output`, `error`, `customStatus`). An
   uncaught exception comes back as an exception whose message carries the state after a
   `$OutOfProcData$:` marker.

2. *The host half*: the extension replays the returned actions against a DurableTask context
   (OutOfProcOrchestrationShim): each action calls the matching DurableTask API in order,
   awaiting it before the next one (schema V2/V3); DurableTask gives every scheduled task,
   timer and sub-orchestration the next sequence id, matches them against the scheduling events
   already in the history (non-determinism check), resolves them as completion events are
   replayed, and records whatever is left as new decisions. Retries are DurableTask's
   RetryInterceptor: attempt, on failure a timer, then the next attempt.

`_ShimReplay` below simulates that host half with a small deterministic coroutine scheduler, so
sequence ids, retry timers and completion order match what the real host produces.
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType
from azure.functions import meta

from . import payloads
from .errors import unknown_function_message
from .history import Event, event_type_of, parse_timestamp
from .indexing import AppIndex

OUT_OF_PROC_DATA_MARKER = "$OutOfProcData$:"

# What the extension tells the SDK about replay schemas and timers (Azure Storage backend).
UPPER_SCHEMA_VERSION = 1
UPPER_SCHEMA_VERSION_NEW = 2
MAXIMUM_SHORT_TIMER_DURATION = timedelta(days=6)
LONG_RUNNING_TIMER_INTERVAL = timedelta(days=3)
DEFAULT_HTTP_ASYNC_SLEEP_MS = 30000


class HostReplayError(Exception):
    """The host half refused the actions (unknown function, non-determinism, unsupported API)."""


@dataclass(frozen=True)
class OrchestratorState:
    """The state JSON an orchestrator invocation returns."""

    is_done: bool
    actions: list[dict[str, Any]]
    output: Any
    error: str | None
    custom_status: Any


@dataclass(frozen=True)
class OrchestratorCall:
    """Result of one orchestrator invocation: a state, and the failure if it raised."""

    state: OrchestratorState | None
    failure: str | None = None
    failure_details: str | None = None


# --------------------------------------------------------------------------- worker half


def build_context_json(
    *,
    instance_id: str,
    parent_instance_id: str | None,
    input_raw: str | None,
    past_events: Iterable[Event],
    new_events: Iterable[Event],
) -> str:
    """The orchestration trigger payload, as OrchestrationTriggerAttributeBindingProvider builds it."""
    past = [{**event, "IsPlayed": True} for event in past_events]
    new = [{**event, "IsPlayed": False} for event in new_events]
    context = {
        "history": past + new,
        "input": payloads.raw_input_to_context_input(input_raw),
        "instanceId": instance_id,
        "isReplaying": bool(past),
        "parentInstanceId": parent_instance_id,
        "upperSchemaVersion": UPPER_SCHEMA_VERSION,
        "upperSchemaVersionNew": UPPER_SCHEMA_VERSION_NEW,
        "longRunningTimerIntervalDuration": _timespan(LONG_RUNNING_TIMER_INTERVAL),
        "maximumShortTimerDuration": _timespan(MAXIMUM_SHORT_TIMER_DURATION),
        "defaultHttpAsyncRequestSleepTimeMillseconds": DEFAULT_HTTP_ASYNC_SLEEP_MS,
    }
    return json.dumps(context)


def _timespan(span: timedelta) -> str:
    """.NET TimeSpan "c" format (d.hh:mm:ss), which the SDK parses."""
    hours, remainder = divmod(span.seconds, 3600)
    minutes, seconds = divmod(remainder, 60)
    return f"{span.days}.{hours:02d}:{minutes:02d}:{seconds:02d}"


def orchestrator_trigger_datum(context_json: str) -> Any:
    """The argument the worker passes for an orchestrationTrigger binding."""
    converter = payloads.converter("orchestrationTrigger")
    return converter.decode(meta.Datum(type="json", value=context_json), trigger_metadata=None)


def interpret_orchestrator_result(
    call: Callable[[], Any],
) -> OrchestratorCall:
    """Run `call` (the orchestrator invocation) and read its state, as the extension does."""
    try:
        returned = call()
    except Exception as exc:
        return _state_from_failure(exc)
    converter = payloads.converter("orchestrationTrigger")
    datum = converter.encode(returned, expected_type=None)
    try:
        return OrchestratorCall(state=_parse_state(datum.value))
    except (TypeError, ValueError) as exc:
        message = f"Out of proc orchestrators must return a valid JSON schema ({exc})"
        return OrchestratorCall(state=None, failure=message)


def _state_from_failure(exc: Exception) -> OrchestratorCall:
    message = str(exc)
    details = "".join(traceback.format_exception(exc)).strip()
    marker = message.find(OUT_OF_PROC_DATA_MARKER)
    if marker < 0:
        return OrchestratorCall(
            state=None,
            failure=message or type(exc).__name__,
            failure_details=f"Message: {message}, StackTrace: {details}",
        )
    state = _parse_state(message[marker + len(OUT_OF_PROC_DATA_MARKER) :])
    error = state.error or message[:marker].strip()
    return OrchestratorCall(
        state=state, failure=error, failure_details=f"Message: {error}, StackTrace: {details}"
    )


def _parse_state(value: Any) -> OrchestratorState:
    data = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(data, dict):
        raise ValueError("the orchestrator state is not a JSON object")
    return OrchestratorState(
        is_done=bool(data.get("isDone")),
        actions=_flatten_actions(data),
        output=data.get("output"),
        error=data.get("error"),
        custom_status=data.get("customStatus"),
    )


def _flatten_actions(data: dict[str, Any]) -> list[dict[str, Any]]:
    actions = data.get("actions") or []
    schema = data.get("schemaVersion", 0)
    if not schema:
        raise ValueError(
            "the orchestrator returned replay schema V1; the local host speaks V2/V3 "
            "(azure-functions-durable >= 1.1)"
        )
    if len(actions) > 1:
        raise ValueError(f"schema {schema} expects one action list, got {len(actions)}")
    return list(actions[0]) if actions else []


# --------------------------------------------------------------------------- host half


@dataclass
class TaskDecision:
    task_id: int
    name: str
    parameters_raw: str
    recorded: bool = False


@dataclass
class TimerDecision:
    task_id: int
    fire_at: datetime
    recorded: bool = False


@dataclass
class SubOrchestrationDecision:
    task_id: int
    name: str
    instance_id: str
    input_raw: str | None
    version: str
    recorded: bool = False


Decision = TaskDecision | TimerDecision | SubOrchestrationDecision


@dataclass(frozen=True)
class ReplayOutcome:
    """What the host half concluded from a full replay of the history."""

    new_decisions: list[Decision]
    completed: bool  # every action replayed: the state's isDone/error now applies
    continue_as_new: bool
    continue_as_new_input: str | None
    host_failure: str | None
    awaited_events: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class RetryPolicy:
    """DurableTask RetryOptions as the extension reads them from a with-retry action."""

    first_retry_interval: timedelta
    max_attempts: int
    backoff_coefficient: float = 1.0
    max_retry_interval: timedelta | None = None
    retry_timeout: timedelta | None = None

    @classmethod
    def from_action(cls, options: dict[str, Any]) -> RetryPolicy:
        def millis(key: str) -> timedelta | None:
            value = options.get(key)
            return None if value is None else timedelta(milliseconds=float(value))

        first = millis("firstRetryIntervalInMilliseconds")
        if first is None or first <= timedelta(0):
            raise HostReplayError("retry options: firstRetryInterval must be greater than 0")
        return cls(
            first_retry_interval=first,
            max_attempts=max(1, int(options.get("maxNumberOfAttempts", 1))),
            backoff_coefficient=float(options.get("backoffCoefficient", 1.0)),
            max_retry_interval=millis("maxRetryIntervalInMilliseconds"),
            retry_timeout=millis("retryTimeoutInMilliseconds"),
        )

    def next_delay(self, attempt: int, first_attempt: datetime, now: datetime) -> timedelta | None:
        """RetryInterceptor.ComputeNextDelay; None stops retrying."""
        if self.retry_timeout is not None and now >= first_attempt + self.retry_timeout:
            return None
        delay = self.first_retry_interval * (self.backoff_coefficient**attempt)
        if self.max_retry_interval is not None and delay > self.max_retry_interval:
            delay = self.max_retry_interval
        return delay


class TaskFailure(Exception):
    """A durable task (activity, sub-orchestration) that failed, as seen by the host half."""

    def __init__(self, reason: str, details: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class _TaskCanceled(Exception):
    pass


_PENDING, _SUCCEEDED, _FAILED, _CANCELED = range(4)


class _Future:
    """A DurableTask task: completed by history events, awaited by shim coroutines."""

    def __init__(self, task_id: int | None = None) -> None:
        self.task_id = task_id
        self.state = _PENDING
        self.value: Any = None
        self._callbacks: list[Callable[[_Future], None]] = []

    @property
    def done(self) -> bool:
        return self.state != _PENDING

    def settle(self, state: int, value: Any = None) -> None:
        if self.done:
            return  # a late completion (e.g. a canceled timer firing): DurableTask ignores it
        self.state, self.value = state, value
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def on_done(self, callback: Callable[[_Future], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def __await__(self) -> Generator[_Future, None, Any]:
        if not self.done:
            yield self
        if self.state == _FAILED:
            raise self.value
        if self.state == _CANCELED:
            raise _TaskCanceled()
        return self.value


class _Scheduler:
    """Runs shim coroutines deterministically; continuations run in completion order."""

    def __init__(self) -> None:
        self._ready: deque[Callable[[], None]] = deque()

    def spawn(self, coroutine: Coroutine[_Future, None, Any]) -> _Future:
        result = _Future()

        def step() -> None:
            try:
                awaited = coroutine.send(None)
            except StopIteration as stop:
                result.settle(_SUCCEEDED, stop.value)
                return
            except TaskFailure as failure:
                result.settle(_FAILED, failure)
                return
            except _TaskCanceled:
                result.settle(_CANCELED)
                return
            awaited.on_done(lambda _: self._ready.append(step))

        # Like a .NET async method: run synchronously up to the first incomplete await, so
        # sequence ids are allocated in call order (a retry's first attempt before its siblings).
        step()
        return result

    def run_ready(self) -> None:
        while self._ready:
            self._ready.popleft()()


class _ShimReplay:
    """Replays the SDK's actions against the history like OutOfProcOrchestrationShim + DurableTask."""

    def __init__(
        self,
        *,
        actions: list[dict[str, Any]],
        index: AppIndex,
        instance_id: str,
        parent_instance_id: str | None,
        execution_id: str,
        default_version: str,
    ) -> None:
        self._actions = actions
        self._index = index
        self._instance_id = instance_id
        self._parent_instance_id = parent_instance_id
        self._execution_id = execution_id
        self._default_version = default_version
        self._scheduler = _Scheduler()
        self._next_id = 0
        self._decisions: dict[int, Decision] = {}
        self._open: dict[int, _Future] = {}
        self._event_waiters: defaultdict[str, deque[_Future]] = defaultdict(deque)
        self._event_buffer: defaultdict[str, deque[str | None]] = defaultdict(deque)
        self._main: _Future | None = None
        self._continue_as_new = False
        self._continue_as_new_input: str | None = None
        self.current_time: datetime | None = None

    # ---- history processing

    def process(self, event: Event) -> None:
        kind = event_type_of(event)
        if kind == HistoryEventType.ORCHESTRATOR_STARTED:
            self.current_time = parse_timestamp(event["Timestamp"])
        elif kind == HistoryEventType.EXECUTION_STARTED:
            self._main = self._scheduler.spawn(self._run_actions())
        elif kind in _SCHEDULING_EVENTS:
            self._match_scheduled(kind, event)
        elif kind in (
            HistoryEventType.TASK_COMPLETED,
            HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
        ):
            self._settle(event["TaskScheduledId"], _SUCCEEDED, event.get("Result"))
        elif kind in (
            HistoryEventType.TASK_FAILED,
            HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        ):
            failure = TaskFailure(event.get("Reason") or "", event.get("Details"))
            self._settle(event["TaskScheduledId"], _FAILED, failure)
        elif kind == HistoryEventType.TIMER_FIRED:
            self._settle(event["TimerId"], _SUCCEEDED, None)
        elif kind == HistoryEventType.EVENT_RAISED:
            self._deliver_event(event.get("Name") or "", event.get("Input"))
        self._scheduler.run_ready()

    def outcome(self) -> ReplayOutcome:
        new = [d for _, d in sorted(self._decisions.items()) if not d.recorded]
        return ReplayOutcome(
            new_decisions=new,
            completed=self._main is not None and self._main.done,
            continue_as_new=self._continue_as_new,
            continue_as_new_input=self._continue_as_new_input,
            host_failure=None,
            awaited_events=frozenset(
                name for name, waiters in self._event_waiters.items() if waiters
            ),
        )

    def _match_scheduled(self, kind: HistoryEventType, event: Event) -> None:
        task_id = event["EventId"]
        decision = self._decisions.get(task_id)
        expected_type = _DECISION_TYPES[kind]
        name_matches = not hasattr(decision, "name") or (
            str(getattr(decision, "name", "")).lower() == str(event.get("Name", "")).lower()
        )
        if decision is None or not isinstance(decision, expected_type) or not name_matches:
            raise HostReplayError(
                "Non-Deterministic workflow detected: a previous execution of this orchestration "
                f"recorded {HistoryEventType(kind).name} #{task_id} "
                f"{event.get('Name') or ''}".rstrip()
                + ", but the current replay did not schedule the same thing at that position. "
                "Orchestrator code must be deterministic."
            )
        decision.recorded = True

    def _settle(self, task_id: int, state: int, value: Any) -> None:
        future = self._open.pop(task_id, None)
        if future is not None:
            future.settle(state, value)

    def _deliver_event(self, name: str, input_raw: str | None) -> None:
        key = name.lower()  # the extension matches event names case-insensitively
        waiters = self._event_waiters[key]
        if waiters:
            waiters.popleft().settle(_SUCCEEDED, input_raw)
        else:
            self._event_buffer[key].append(input_raw)

    # ---- the actions, as InvokeAPIFromAction maps them to DurableTask calls

    async def _run_actions(self) -> None:
        for action in self._actions:
            # Failures reach the SDK through the history: the host only waits for completion.
            with contextlib.suppress(TaskFailure, _TaskCanceled):
                await self._invoke(action)

    def _invoke(self, action: dict[str, Any]) -> _Future:
        kind = action.get("actionType")
        if kind == ActionType.CALL_ACTIVITY:
            return self._schedule_task(action)
        if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
            policy = RetryPolicy.from_action(action.get("retryOptions") or {})
            self._validate_delay(policy.first_retry_interval)
            return self._scheduler.spawn(
                self._with_retry(lambda: self._schedule_task(action), policy)
            )
        if kind == ActionType.CALL_SUB_ORCHESTRATOR:
            return self._create_sub_orchestration(action)
        if kind == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
            policy = RetryPolicy.from_action(action.get("retryOptions") or {})
            self._validate_delay(policy.first_retry_interval)
            attempt = lambda: self._create_sub_orchestration(action)  # noqa: E731
            return self._scheduler.spawn(self._with_retry(attempt, policy))
        if kind == ActionType.CREATE_TIMER:
            return self._create_timer_action(action)
        if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            return self._wait_for_event(str(action.get("externalEventName") or ""))
        if kind == ActionType.CONTINUE_AS_NEW:
            self._continue_as_new = True
            self._continue_as_new_input = payloads.action_input_to_raw_input(action.get("input"))
            return _completed_future()
        if kind == ActionType.WHEN_ALL:
            return self._when(action, all_of=True)
        if kind == ActionType.WHEN_ANY:
            return self._when(action, all_of=False)
        name = ActionType(kind).name if kind in set(ActionType) else repr(kind)
        raise HostReplayError(
            f"the local host does not support the {name} action (entities, durable HTTP)"
        )

    def _allocate(self, decision_factory: Callable[[int], Decision]) -> _Future:
        task_id = self._next_id
        self._next_id += 1
        self._decisions[task_id] = decision_factory(task_id)
        future = _Future(task_id)
        self._open[task_id] = future
        return future

    def _schedule_task(self, action: dict[str, Any]) -> _Future:
        name = str(action.get("functionName") or "")
        if self._index.activity(name) is None:
            raise HostReplayError(
                unknown_function_message(name, "activity", self._index.activity_names())
            )
        parameters = payloads.action_input_to_task_parameters(action.get("input"))
        return self._allocate(lambda task_id: TaskDecision(task_id, name, parameters))

    def _create_sub_orchestration(self, action: dict[str, Any]) -> _Future:
        name = str(action.get("functionName") or "")
        if self._index.orchestrator(name) is None:
            raise HostReplayError(
                unknown_function_message(name, "orchestrator", self._index.orchestrator_names())
            )
        requested_id = action.get("instanceId")
        if requested_id is not None:
            requested_id = str(requested_id)
            if requested_id.lower() in {
                self._instance_id.lower(),
                (self._parent_instance_id or "").lower(),
            }:
                raise HostReplayError(
                    "The instance ID of a sub-orchestration must be different than the instance ID "
                    "of a parent orchestration."
                )
            if requested_id.startswith("@"):
                raise HostReplayError("Orchestration instance ids must not start with @")
        input_raw = payloads.action_input_to_raw_input(action.get("input"))
        version = str(action.get("version") or self._default_version)

        def decision(task_id: int) -> Decision:
            # DurableTask names an unnamed sub-orchestration "<executionId>:<taskId>".
            instance_id = requested_id or f"{self._execution_id}:{task_id}"
            return SubOrchestrationDecision(task_id, name, instance_id, input_raw, version)

        return self._allocate(decision)

    def _create_timer_action(self, action: dict[str, Any]) -> _Future:
        fire_at = parse_timestamp(str(action["fireAt"]))
        self._validate_delay(fire_at - self._now())
        future = self._create_timer(fire_at)
        if action.get("isCanceled"):
            # The extension cancels the token right away: the timer is still created, its task
            # completes as canceled and a later TimerFired is ignored.
            if future.task_id is not None:  # always: _allocate numbered it
                self._open.pop(future.task_id, None)
            future.settle(_CANCELED)
        return future

    def _create_timer(self, fire_at: datetime) -> _Future:
        return self._allocate(lambda task_id: TimerDecision(task_id, fire_at))

    def _wait_for_event(self, name: str) -> _Future:
        future = _Future()
        key = name.lower()
        if self._event_buffer[key]:
            future.settle(_SUCCEEDED, self._event_buffer[key].popleft())
        else:
            self._event_waiters[key].append(future)
        return future

    def _when(self, action: dict[str, Any], *, all_of: bool) -> _Future:
        children = [self._invoke(child) for child in action.get("compoundActions") or []]
        combined = _Future()
        if not children:
            combined.settle(_SUCCEEDED)
            return combined

        def child_done(_: _Future) -> None:
            if combined.done:
                return
            if not all_of or all(child.done for child in children):
                combined.settle(_SUCCEEDED)

        for child in children:
            child.on_done(child_done)
        return combined

    async def _with_retry(self, attempt: Callable[[], _Future], policy: RetryPolicy) -> Any:
        first_attempt = self._now()
        last_failure: TaskFailure | None = None
        for retry_count in range(policy.max_attempts):
            try:
                return await attempt()
            except TaskFailure as failure:
                last_failure = failure
            delay = policy.next_delay(retry_count, first_attempt, self._now())
            if delay is None:
                break
            self._validate_delay(delay)
            await self._create_timer(self._now() + delay)
        assert last_failure is not None
        raise last_failure

    def _validate_delay(self, delay: timedelta) -> None:
        if delay > MAXIMUM_SHORT_TIMER_DURATION:
            raise HostReplayError(
                "The Azure Storage provider supports a maximum of "
                f"{MAXIMUM_SHORT_TIMER_DURATION.days} days for time-based delays"
            )

    def _now(self) -> datetime:
        if self.current_time is None:
            raise HostReplayError("history does not start with OrchestratorStarted")
        return self.current_time


_SCHEDULING_EVENTS = frozenset(
    {
        HistoryEventType.TASK_SCHEDULED,
        HistoryEventType.TIMER_CREATED,
        HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
    }
)

_DECISION_TYPES: dict[HistoryEventType, type] = {
    HistoryEventType.TASK_SCHEDULED: TaskDecision,
    HistoryEventType.TIMER_CREATED: TimerDecision,
    HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED: SubOrchestrationDecision,
}


def _completed_future() -> _Future:
    future = _Future()
    future.settle(_SUCCEEDED)
    return future


def replay_actions(
    history: list[Event],
    actions: list[dict[str, Any]],
    *,
    index: AppIndex,
    instance_id: str,
    parent_instance_id: str | None,
    execution_id: str,
    default_version: str,
) -> ReplayOutcome:
    """Replay the whole history (past and new events) against the orchestrator's actions."""
    shim = _ShimReplay(
        actions=actions,
        index=index,
        instance_id=instance_id,
        parent_instance_id=parent_instance_id,
        execution_id=execution_id,
        default_version=default_version,
    )
    try:
        for event in history:
            shim.process(event)
    except HostReplayError as exc:
        return ReplayOutcome(
            new_decisions=[],
            completed=True,
            continue_as_new=False,
            continue_as_new_input=None,
            host_failure=str(exc),
        )
    return shim.outcome()
