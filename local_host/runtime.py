"""The durable runtime: dispatch loops for orchestrator episodes and activities.

Two loops, like DurableTask's orchestration and activity dispatchers. Each wakes when state
changes (a commit) or when the next timer is due, picks ready work from the store and runs it:
episodes one per instance at a time, activities up to `max_activities` at once (async activities
on the event loop, sync ones in threads). Management commands (start, raise event, terminate,
purge) are single transactions. On start-up nothing special is needed to resume: every
in-flight orchestration is a visible message or a queued activity in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from . import engine
from .activities import run_activity
from .counters import DurableCounters
from .engine import ActivityWork, InstanceQuery, InstanceRecord
from .history import Event, RuntimeStatus, utc_now
from .indexing import AppIndex, FunctionInfo
from .invocation import FunctionInvoker, run_in_daemon_thread
from .replay import OrchestratorCall, interpret_orchestrator_result, orchestrator_trigger_datum
from .store import SqliteStore, SqliteTransaction
from .versioning import FailureStrategy, VersionPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_ACTIVITIES = 16
DEFAULT_MAX_ORCHESTRATIONS = 8
DEFAULT_STOP_GRACE_SECONDS = 2.0


class DurableRuntime:
    """Runs orchestrations and activities from the store until stopped."""

    def __init__(
        self,
        *,
        store: SqliteStore,
        index: AppIndex,
        invoker: FunctionInvoker,
        version_policy: VersionPolicy | None = None,
        max_activities: int = DEFAULT_MAX_ACTIVITIES,
        max_orchestrations: int = DEFAULT_MAX_ORCHESTRATIONS,
        client_binding: Callable[[], str] | None = None,
    ) -> None:
        if max_activities < 1 or max_orchestrations < 1:
            raise ValueError("concurrency limits must be at least 1")
        self._store = store
        self._index = index
        self._invoker = invoker
        self._client_binding = client_binding  # for activities with a durableClient binding
        # defaultVersion, stamped on new instances; which instances this worker runs.
        self._versions = version_policy or VersionPolicy()
        self._rejected: set[str] = set()  # instances left for a worker of a newer version
        self._max_activities = max_activities
        self._max_orchestrations = max_orchestrations
        self._orchestration_wake = asyncio.Event()
        self._activity_wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._episodes: dict[str, asyncio.Task[None]] = {}
        self._activities: dict[int, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self.counters = DurableCounters()  # what ran, for tests and benchmarks (no timings)

    @property
    def index(self) -> AppIndex:
        return self._index

    async def start(self) -> None:
        pending = self._store.pending_activities(set(), 1_000_000)
        ready = self._store.ready_instances(utc_now(), set(), 1_000_000)
        if pending or ready:
            logger.info(
                "Resuming durable work: %d instance(s) with messages, %d activity call(s)",
                len(ready),
                len(pending),
            )
        self._loops = [
            asyncio.create_task(self._orchestration_loop(), name="local-host-orchestrations"),
            asyncio.create_task(self._activity_loop(), name="local-host-activities"),
        ]

    async def stop(self, grace: float = DEFAULT_STOP_GRACE_SECONDS) -> None:
        """Cancel the loops and in-flight work; the store keeps everything resumable.

        Waits at most `grace` seconds: user code that ignores cancellation (an activity that
        catches CancelledError and carries on) is left behind rather than holding the shutdown.
        """
        tasks = [*self._loops, *self._episodes.values(), *self._activities.values()]
        for task in tasks:
            task.cancel()
        self._loops.clear()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            logger.warning(
                "%d durable work item(s) ignored cancellation for %.1f s; left behind (they run "
                "again after a restart)",
                len(pending),
                grace,
            )

    # ---- management commands (called on the event loop thread)

    def transact(self, operation: Callable[[SqliteTransaction], T]) -> T:
        with self._store.transaction() as tx:
            result = operation(tx)
        self._notify()
        return result

    def start_new(
        self, name: str, instance_id: str | None, input_raw: str | None, version: str | None
    ) -> InstanceRecord:
        target_id = instance_id or engine.new_instance_id()
        return self.transact(
            lambda tx: engine.start_instance(
                tx,
                self._index,
                name=name,
                instance_id=target_id,
                input_raw=input_raw,
                version=self.default_version if version is None else version,
                now=utc_now(),
            )
        )

    def raise_event(self, instance_id: str, event_name: str, input_raw: str | None) -> None:
        self.transact(
            lambda tx: engine.raise_event(tx, instance_id, event_name, input_raw, utc_now())
        )

    def terminate(self, instance_id: str, reason: str | None) -> None:
        self.transact(lambda tx: engine.terminate(tx, instance_id, reason, utc_now()))

    def purge(self, instance_id: str) -> int:
        return self.transact(lambda tx: engine.purge(tx, instance_id))

    def purge_matching(self, query: InstanceQuery) -> int:
        return self.transact(lambda tx: engine.purge_matching(tx, query))

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        return self._store.get_instance(instance_id)

    def query_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        return self._store.query_instances(query)

    def load_history(self, instance_id: str) -> list[Event]:
        return self._store.load_history(instance_id)

    async def wait_for_status(
        self, instance_id: str, statuses: Collection[RuntimeStatus], within: float
    ) -> InstanceRecord:
        """Wait (without polling) until the instance reaches one of `statuses`; TimeoutError after
        `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                changed = self._changed
                record = self._store.get_instance(instance_id)
                if record is not None and record.runtime_status in statuses:
                    return record
                await changed.wait()

    # ---- dispatch

    def _notify(self) -> None:
        self._orchestration_wake.set()
        self._activity_wake.set()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _orchestration_loop(self) -> None:
        while True:
            self._orchestration_wake.clear()
            now = utc_now()
            free = self._max_orchestrations - len(self._episodes)
            if free > 0:
                busy = set(self._episodes) | self._rejected
                for instance_id in self._store.ready_instances(now, busy, free):
                    self._start_task(self._episodes, instance_id, self._run_episode(instance_id))
            due = self._store.next_message_due(now)
            timeout = None if due is None else max(0.0, (due - utc_now()).total_seconds())
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns normally when the
            # wake-up and a cancellation arrive together, and this loop then outlived stop()
            # (it kept running episodes after "Shutting down" and the host never exited).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._orchestration_wake.wait()

    async def _activity_loop(self) -> None:
        while True:
            self._activity_wake.clear()
            free = self._max_activities - len(self._activities)
            for work in self._store.pending_activities(set(self._activities), free):
                self._start_task(self._activities, work.work_id, self._run_activity(work))
            await self._activity_wake.wait()

    def _start_task(self, registry: dict[Any, asyncio.Task[None]], key: Any, work: Any) -> None:
        task = asyncio.create_task(work)
        registry[key] = task

        def finished(done: asyncio.Task[None]) -> None:
            registry.pop(key, None)
            if not done.cancelled() and done.exception() is not None:
                logger.error("Durable work item %r crashed", key, exc_info=done.exception())
            self._notify()

        task.add_done_callback(finished)

    async def _run_episode(self, instance_id: str) -> None:
        now = utc_now()
        with self._store.transaction() as tx:
            snapshot = engine.begin_episode(tx, instance_id, now)
        if snapshot is None:
            return
        if not self._runs_version_of(snapshot.instance):
            return
        try:
            commit = await run_in_daemon_thread(
                engine.run_episode,
                snapshot,
                index=self._index,
                call_orchestrator=self._call_orchestrator,
                default_version=self.default_version,
                now=now,
            )
        except Exception as exc:
            # A bug of the host, not of the app: fail the instance instead of retrying forever.
            logger.exception("Internal error while running instance %s", instance_id)
            message = f"local host internal error: {type(exc).__name__}: {exc}"
            self.transact(lambda tx: engine.fail_instance(tx, instance_id, message, utc_now()))
            return
        self.transact(lambda tx: engine.apply_episode(tx, commit, self._index, utc_now()))
        self.counters.episode(
            instance_id=instance_id,
            orchestrator=snapshot.instance.name,
            replayed=len(snapshot.history),
            appended=commit.history,
            finished=commit.completion is not None or commit.continue_as_new,
        )

    @property
    def default_version(self) -> str:
        return self._versions.default_version

    def _runs_version_of(self, record: InstanceRecord) -> bool:
        """versionMatchStrategy: may this host run `record`? If not, versionFailureStrategy:
        leave it untouched (Reject) or fail it (Fail)."""
        if self._versions.accepts(record.version):
            return True
        message = self._versions.mismatch_message(record.version)
        if self._versions.failure == FailureStrategy.FAIL:
            self.transact(
                lambda tx: engine.fail_instance(tx, record.instance_id, message, utc_now())
            )
        else:
            logger.warning(
                "Leaving instance %s for a newer worker: %s", record.instance_id, message
            )
            self._rejected.add(record.instance_id)
        return False

    def _call_orchestrator(
        self, info: FunctionInfo, context_json: str, record: InstanceRecord
    ) -> OrchestratorCall:
        arguments = {info.trigger["name"]: orchestrator_trigger_datum(context_json)}
        details = f"InstanceId={record.instance_id}"
        return interpret_orchestrator_result(
            lambda: self._invoker.invoke_blocking(info, arguments, details=details)
        )

    async def _run_activity(self, work: ActivityWork) -> None:
        info = self._index.activity(work.name)
        result = await run_activity(self._invoker, info, work, self._client_binding)
        self.counters.activity(work.name)
        self.transact(lambda tx: engine.complete_activity(tx, work, result, utc_now()))
