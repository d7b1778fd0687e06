"""Unit-test orchestrators by replaying them exactly as the local host does, without HTTP or SQLite.

The driver runs the local host's engine (`local_host.engine`: the same episodes, the same
replay of the SDK's actions, the same history events) over an in-memory store, in virtual time:

- activities are answered by a script, `(activity_name, input) -> result`, or raise to fail
  (the orchestrator then sees TaskFailed with the host's Reason/Details); inputs are decoded and
  results encoded by the SDK's activity converter, as the worker does;
- timers fire as soon as nothing else can happen (the virtual clock jumps to the fire time), so
  retries and timeouts take no real time;
- external events are delivered from a script, in order, whenever the orchestration is idle
  (no activity to run), before any timer fires; payloads go through the same conversions as the
  SDK client's `raise_event`, so the orchestrator receives the JSON text of the data (a `str`),
  as on Azure;
- sub-orchestrations run by name from the same app.

Example:

    import function_app
    from tests.support.replay import ReplayDriver

    driver = ReplayDriver(function_app.app)

    def activities(name, data):
        if name == "model_step":
            return {"final": True}
        raise AssertionError(f"unexpected activity {name}")

    result = driver.run("chat_turn", {"run_id": "r1"}, activities=activities)
    assert result.status == "Completed"
    assert result.activity_calls == [("model_step", {...})]

Use `replay_orchestrator(fn, ...)` for a lone orchestrator function (any activity name is then
accepted; sub-orchestrations need the app-level driver).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType
from azure.durable_functions.models.utils.df_serialization import df_dumps
from azure.functions import FunctionRegister

from local_host import engine, payloads
from local_host.activities import activity_failure, decode_activity_input, encode_activity_result
from local_host.engine import ActivityResult, ActivityWork, InstanceRecord
from local_host.history import TERMINAL_STATUSES, Event, RuntimeStatus, parse_jtoken
from local_host.indexing import (
    AppIndex,
    FunctionInfo,
    build_index,
    find_function_register,
    index_app,
)
from local_host.memory_store import MemoryStore
from local_host.replay import (
    OrchestratorCall,
    interpret_orchestrator_result,
    orchestrator_trigger_datum,
)

ActivityScript = Callable[[str, Any], Any]
"""`(activity_name, input) -> result`; raise to make the activity fail."""

DEFAULT_START_TIME = datetime(2025, 1, 1, tzinfo=UTC)
_EPISODE_TICK = timedelta(
    milliseconds=1
)  # virtual time each episode takes, keeps timestamps ordered


@dataclass(frozen=True)
class ExternalEvent:
    """A scripted `raise_event`: `data` is what a client would pass (JSON-serialisable)."""

    name: str
    data: Any = None
    instance_id: str | None = None  # None: the orchestration under test
    # Held back until the orchestration waits for an event of this name (as a client raises
    # it after seeing the run wait), instead of at the first idle moment.
    when_awaited: bool = False


@dataclass(frozen=True)
class InstanceSummary:
    name: str
    status: str
    output: Any


@dataclass
class ReplayResult:
    """What happened, as the host would have recorded it."""

    instance_id: str
    status: str  # "Completed", "Failed", "Terminated", or "Running" when blocked
    output: Any  # Completed: the return value; Failed: the failure message
    custom_statuses: list[Any]  # distinct consecutive custom statuses of the root instance
    activity_calls: list[tuple[str, Any]]  # every activity execution (retries included), in order
    history: list[Event]  # the root instance's history (its last execution)
    generations: list[list[Event]]  # histories of earlier executions (continue-as-new)
    instances: dict[str, InstanceSummary]  # every instance, sub-orchestrations included
    episodes: int
    waiting_for_events: frozenset[str] = field(default_factory=frozenset)
    virtual_time: datetime = DEFAULT_START_TIME
    # Every execution's history of every instance (sub-orchestrations and continue-as-new
    # included), oldest first: what tests/golden/ records.
    executions: dict[str, list[list[Event]]] = field(default_factory=dict)

    def history_types(self) -> list[str]:
        """Event type names of `history`, handy in assertions."""
        return [HistoryEventType(event["EventType"]).name for event in self.history]


class ReplayDriver:
    """Drives orchestrations of one app through the local host's engine, in memory."""

    def __init__(
        self,
        app: FunctionRegister | ModuleType | AppIndex,
        *,
        start_time: datetime = DEFAULT_START_TIME,
        default_version: str = "",
    ) -> None:
        self.index = _as_index(app)
        self._start_time = start_time
        self._default_version = default_version

    def run(
        self,
        orchestrator: str | Any,
        input: Any = None,
        *,
        activities: ActivityScript | Mapping[str, Callable[[Any], Any]],
        events: Iterable[ExternalEvent | tuple[str, Any]] = (),
        instance_id: str = "replay-instance",
        max_episodes: int = 10_000,
    ) -> ReplayResult:
        """Start `orchestrator` (its name, or the decorated function) with `input`, as
        `client.start_new` would, and run until nothing more can happen."""
        run = _Run(
            index=self.index,
            clock=self._start_time,
            default_version=self._default_version,
            script=_as_script(activities),
            events=[_as_event(e) for e in events],
            max_episodes=max_episodes,
        )
        return run.execute(_orchestrator_name(orchestrator), input, instance_id)

    def real_activities(self) -> ActivityScript:
        """A script that calls the app's own activity functions (async ones in a private loop)."""

        def call(name: str, data: Any) -> Any:
            info = self.index.activity(name)
            if info is None:
                raise LookupError(f"the app has no activity named {name!r}")
            result = info.user_function(**{info.trigger["name"]: data})
            if inspect.isawaitable(result):
                return _run_coroutine(result)
            return result

        return call


def replay_orchestrator(
    orchestrator_function: Callable[..., Any],
    input: Any = None,
    *,
    activities: ActivityScript | Mapping[str, Callable[[Any], Any]],
    events: Iterable[ExternalEvent | tuple[str, Any]] = (),
    instance_id: str = "replay-instance",
    start_time: datetime = DEFAULT_START_TIME,
) -> ReplayResult:
    """Replay a lone orchestrator (generator function, `Orchestrator.create` handle or decorated
    function); every activity name is accepted."""
    info = _standalone_orchestrator(orchestrator_function)
    index = _PermissiveIndex(
        functions={info.name: info}, http_routes=(), orchestrators={info.name.lower(): info}
    )
    driver = ReplayDriver(index, start_time=start_time)
    return driver.run(
        info.name, input, activities=activities, events=events, instance_id=instance_id
    )


# --------------------------------------------------------------------------- internals


class _PermissiveIndex(AppIndex):
    """An index that knows one orchestrator and accepts any activity name."""

    def activity(self, name: str) -> FunctionInfo | None:
        return FunctionInfo(
            name=name,
            bindings=({"type": "activityTrigger", "name": "input", "direction": "IN"},),
            trigger={"type": "activityTrigger", "name": "input", "direction": "IN"},
            user_function=lambda input: None,
            is_async=False,
            parameter_names=("input",),
        )


@dataclass
class _Run:
    index: AppIndex
    clock: datetime
    default_version: str
    script: ActivityScript
    events: list[ExternalEvent]
    max_episodes: int
    store: MemoryStore = field(default_factory=MemoryStore)
    activity_calls: list[tuple[str, Any]] = field(default_factory=list)
    custom_statuses: list[Any] = field(default_factory=list)
    generations: list[list[Event]] = field(default_factory=list)
    finished_executions: dict[str, list[list[Event]]] = field(default_factory=dict)
    episodes: int = 0
    last_outcome_events: frozenset[str] = frozenset()

    def execute(self, name: str, input: Any, instance_id: str) -> ReplayResult:
        # What start_new does: the SDK df_dumps the input and posts it as a JSON body.
        body = json.dumps(df_dumps(input)) if input is not None else ""
        engine.start_instance(
            self.store,
            self.index,
            name=name,
            instance_id=instance_id,
            input_raw=payloads.client_body_to_raw_input(body),
            version=self.default_version,
            now=self.clock,
        )
        while self._step(instance_id):
            if self.episodes > self.max_episodes:
                raise RuntimeError(
                    f"more than {self.max_episodes} episodes: a runaway orchestration?"
                )
        return self._result(instance_id)

    def _step(self, root_id: str) -> bool:
        """Make one unit of progress; False when nothing more can happen."""
        ready = self.store.ready_instances(self.clock)
        if ready:
            self._episode(ready[0], root_id)
            return True
        if self.store.activities:
            for work in list(self.store.activities):
                self._activity(work)
            return True
        if self.events and not self._finished(root_id) and self._deliverable(self.events[0]):
            event = self.events.pop(0)
            self._raise(event, root_id)
            return True
        due = self.store.next_message_due(self.clock)
        if due is not None:
            self.clock = max(self.clock, due)
            return True
        return False

    def _episode(self, instance_id: str, root_id: str) -> None:
        self.clock += _EPISODE_TICK
        snapshot = engine.begin_episode(self.store, instance_id, self.clock)
        if snapshot is None:
            return
        self.episodes += 1
        commit = engine.run_episode(
            snapshot,
            index=self.index,
            call_orchestrator=_call_orchestrator,
            default_version=self.default_version,
            now=self.clock,
        )
        if commit.continue_as_new:
            finished = self.store.load_history(instance_id) + commit.history
            self.finished_executions.setdefault(instance_id, []).append(finished)
            if instance_id == root_id:
                self.generations.append(finished)
        if instance_id == root_id and commit.outcome is not None:
            self.last_outcome_events = commit.outcome.awaited_events
        record = engine.apply_episode(self.store, commit, self.index, self.clock)
        if instance_id == root_id and record is not None:
            self._note_custom_status(record)

    def _activity(self, work: ActivityWork) -> None:
        data = decode_activity_input(work.parameters_raw)
        self.activity_calls.append((work.name, data))
        try:
            result = ActivityResult(result_raw=encode_activity_result(self.script(work.name, data)))
        except Exception as exc:
            result = activity_failure(work.name, exc)
        engine.complete_activity(self.store, work, result, self.clock)

    def _raise(self, event: ExternalEvent, root_id: str) -> None:
        # What raise_event does: the SDK posts json.dumps(data) as a JSON body.
        body = json.dumps(json.dumps(event.data))
        target = event.instance_id or root_id
        engine.raise_event(
            self.store, target, event.name, payloads.client_body_to_event_input(body), self.clock
        )

    def _deliverable(self, event: ExternalEvent) -> bool:
        return not event.when_awaited or event.name in self.last_outcome_events

    def _finished(self, root_id: str) -> bool:
        record = self.store.get_instance(root_id)
        return record is None or record.runtime_status in TERMINAL_STATUSES

    def _note_custom_status(self, record: InstanceRecord) -> None:
        status = parse_jtoken(record.custom_status_raw)
        changed = self.custom_statuses[-1] != status if self.custom_statuses else status is not None
        if changed:
            self.custom_statuses.append(status)

    def _result(self, root_id: str) -> ReplayResult:
        record = self.store.get_instance(root_id)
        assert record is not None
        status = record.runtime_status
        if status not in TERMINAL_STATUSES:
            status = RuntimeStatus.RUNNING
        instances = {
            r.instance_id: InstanceSummary(
                r.name, str(r.runtime_status), parse_jtoken(r.output_raw)
            )
            for r in self.store.instances.values()
        }
        return ReplayResult(
            instance_id=root_id,
            status=str(status),
            output=parse_jtoken(record.output_raw),
            custom_statuses=self.custom_statuses,
            activity_calls=self.activity_calls,
            history=self.store.load_history(root_id),
            generations=self.generations,
            instances=instances,
            episodes=self.episodes,
            waiting_for_events=self.last_outcome_events
            if status == RuntimeStatus.RUNNING
            else frozenset(),
            virtual_time=self.clock,
            executions={
                instance_id: [
                    *self.finished_executions.get(instance_id, []),
                    self.store.load_history(instance_id),
                ]
                for instance_id in self.store.instances
            },
        )


def _call_orchestrator(
    info: FunctionInfo, context_json: str, record: InstanceRecord
) -> OrchestratorCall:
    arguments = {info.trigger["name"]: orchestrator_trigger_datum(context_json)}
    return interpret_orchestrator_result(lambda: info.user_function(**arguments))


def _orchestrator_name(orchestrator: str | Any) -> str:
    if isinstance(orchestrator, str):
        return orchestrator
    function = getattr(orchestrator, "_function", None)  # a decorated v2 function (FunctionBuilder)
    if function is None:
        raise TypeError("pass the orchestrator's name or its decorated function")
    trigger = function.get_trigger()
    return getattr(trigger, "orchestration", None) or function.get_function_name()


def _as_index(app: FunctionRegister | ModuleType | AppIndex) -> AppIndex:
    if isinstance(app, AppIndex):
        return app
    if isinstance(app, ModuleType):
        return index_app(find_function_register(app))
    return index_app(app)


def _as_script(activities: ActivityScript | Mapping[str, Callable[[Any], Any]]) -> ActivityScript:
    if isinstance(activities, Mapping):
        handlers = {name.lower(): handler for name, handler in activities.items()}

        def by_name(name: str, data: Any) -> Any:
            handler = handlers.get(name.lower())
            if handler is None:
                raise LookupError(f"no scripted result for activity {name!r}")
            return handler(data)

        return by_name
    return activities


def _as_event(event: ExternalEvent | tuple[str, Any] | Sequence[Any]) -> ExternalEvent:
    if isinstance(event, ExternalEvent):
        return event
    return ExternalEvent(*event)


def _standalone_orchestrator(function: Callable[..., Any]) -> FunctionInfo:
    builder_function = getattr(function, "_function", None)
    if builder_function is not None:  # a decorated v2 function (FunctionBuilder)
        handle = builder_function.get_user_function()
        name = builder_function.get_function_name()
        trigger_name = builder_function.get_trigger().name
    else:
        handle = (
            function
            if hasattr(function, "orchestrator_function")
            else df.Orchestrator.create(function)
        )
        name = getattr(function, "__name__", "orchestrator")
        trigger_name = next(iter(inspect.signature(handle).parameters), "context")
    trigger = {"type": "orchestrationTrigger", "name": trigger_name, "direction": "IN"}
    index = build_index(
        [
            FunctionInfo(
                name,
                (trigger,),
                trigger,
                handle,
                False,
                tuple(inspect.signature(handle).parameters),
            )
        ]
    )
    return next(iter(index.orchestrators.values()))


def _run_coroutine(awaitable: Any) -> Any:
    """Run an async activity to completion even when the caller already runs an event loop."""
    outcome: dict[str, Any] = {}

    async def wrapper() -> Any:
        return await awaitable

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(wrapper())
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="replay-activity")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
