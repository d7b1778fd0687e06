"""Timer triggers: functions run on their NCRONTAB schedules, as the Functions host runs them.

What the real host does (Microsoft.Azure.WebJobs.Extensions `TimerListener` and
`ScheduleMonitor.CheckPastDueAsync`), and so this host too:

- With `useMonitor` (the default, except for schedules that fire more than once a minute) the
  schedule's status, `{Last, Next, LastUpdated}`, is kept in storage (there: a blob per function;
  here: the state file), written after every invocation.
- At startup, with a stored status: if `Next` is no longer what the schedule gives after `Last`
  (or `LastUpdated`), the schedule changed, and `Next` is recomputed (from now if it would be in
  the past, so a changed schedule is never past due). Then, if now is after `Next`, at least one
  occurrence was missed while the host was down: the function runs **once**, at once, with
  `IsPastDue` true, however many occurrences were missed. Without a stored status one is written
  and nothing runs.
- Otherwise, `runOnStartup` runs it once at startup (`IsPastDue` false). A past-due run replaces
  the startup run; there is never both.
- After any run, the next occurrence is computed from the time the run started (from the
  scheduled time if it fired early), so occurrences passed while a run was late are skipped.
- A failing function is logged and its schedule goes on.

The function gets the host's JSON (`{"Schedule", "ScheduleStatus", "IsPastDue"}`) through the SDK's
own converter (an `azure.functions.TimerRequest`), and any `durableClient` input binding. Times
are UTC. A `Clock` decides what "now" is and how to wait: `SystemClock`, or in tests
`ManualClock`, which only moves when told (no test sleeps).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from azure.functions import meta

from .activities import durable_clients
from .errors import AppLoadError
from .indexing import FunctionInfo
from .invocation import FunctionInvoker
from .ncrontab import Schedule, ScheduleError

logger = logging.getLogger(__name__)

TIMER_TRIGGER = "timerTrigger"
_APP_SETTING = re.compile(r"%([A-Za-z0-9_.:-]+)%")  # `%NAME%` in a schedule: an app setting


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    """The wall clock (UTC). Sleeps in naps, re-reading the clock, so a clock that jumps (a
    suspended laptop, an NTP step) delays a run by at most one nap."""

    MAX_NAP_SECONDS = 60.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        # The wall clock signals nothing: re-reading it after each nap is the point.
        while (left := (moment - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, self.MAX_NAP_SECONDS))


class ManualClock:
    """A clock that moves only when a test moves it; sleepers wake when it passes their time."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []
        self._changed: asyncio.Event | None = None

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, moment: datetime) -> None:
        if moment <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((moment, future))
        self._notify()
        try:
            await future
        finally:
            self._sleepers = [(m, f) for m, f in self._sleepers if f is not future]

    def set(self, moment: datetime) -> None:
        """Move to `moment` (never backwards) and wake everyone whose time has come."""
        if moment < self._now:
            raise ValueError("a ManualClock does not go backwards")
        self._now = moment
        for due, future in self._sleepers:
            if due <= moment and not future.done():
                future.set_result(None)

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)

    async def wait_for_sleeper(self, until: datetime, *, within: float = 10.0) -> None:
        """Wait (bounded) until some task sleeps until `until`: the scheduler is idle again and
        has planned that occurrence."""
        async with asyncio.timeout(within):
            while not any(m == until and not f.done() for m, f in self._sleepers):
                await self._changes().wait()
                self._changes().clear()

    def _changes(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        self._changes().set()


@dataclass(frozen=True)
class TimerStatus:
    """The schedule status the real host keeps per timer (its `ScheduleStatus`)."""

    last: datetime | None  # when it last ran (None: never since the schedule last changed)
    next: datetime | None  # the occurrence it waits for (None: the schedule never fires)
    last_updated: datetime | None

    def to_json(self) -> dict[str, str | None]:
        def text(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {
            "Last": text(self.last),
            "Next": text(self.next),
            "LastUpdated": text(self.last_updated),
        }


@dataclass(frozen=True)
class TimerFunction:
    info: FunctionInfo
    schedule: Schedule
    run_on_startup: bool
    use_monitor: bool

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def argument(self) -> str:
        return str(self.info.trigger["name"])


def timer_function(info: FunctionInfo, env: dict[str, str] | None = None) -> TimerFunction:
    """A timerTrigger function's schedule and options from its binding; AppLoadError when the
    schedule is not valid NCRONTAB (the real host refuses to load it too)."""
    trigger = info.trigger
    try:
        schedule = Schedule.parse(_resolve_settings(str(trigger.get("schedule") or ""), env))
    except ScheduleError as exc:
        raise AppLoadError(f"function {info.name!r}: invalid timer schedule: {exc}") from exc
    use_monitor = trigger.get("useMonitor")
    return TimerFunction(
        info=info,
        schedule=schedule,
        run_on_startup=bool(trigger.get("runOnStartup")),
        use_monitor=_fires_at_most_once_a_minute(schedule)
        if use_monitor is None
        else bool(use_monitor),
    )


def _resolve_settings(schedule: str, env: dict[str, str] | None) -> str:
    values = os.environ if env is None else env

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ScheduleError(f"app setting {name} (named by the schedule) is not set")
        return values[name]

    return _APP_SETTING.sub(setting, schedule)


def _fires_at_most_once_a_minute(schedule: Schedule) -> bool:
    """The host's default for useMonitor: off for schedules that fire more often."""
    first = schedule.next_after(datetime(2001, 1, 1, tzinfo=UTC))
    second = schedule.next_after(first) if first is not None else None
    return first is None or second is None or second - first >= timedelta(minutes=1)


def startup_status(
    stored: TimerStatus | None, schedule: Schedule, now: datetime
) -> tuple[TimerStatus, bool]:
    """(the status to go on from, whether an occurrence was missed): CheckPastDueAsync."""
    if stored is None:
        return TimerStatus(None, schedule.next_after(now), now), False
    base = stored.last or stored.last_updated or now
    expected = schedule.next_after(base)
    status = stored
    if stored.next != expected:  # the schedule changed since the status was written
        if expected is not None and now > expected:
            base, expected = now, schedule.next_after(now)
        status = TimerStatus(None, expected, base)
    return status, status.next is not None and now > status.next


class TimerStatusStore:
    """Each monitored timer's status, in the host's state file (its own table)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(str(path), isolation_level=None)
        self._connection.execute("PRAGMA busy_timeout=5000")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS timer_status ("
            " name TEXT PRIMARY KEY, last TEXT, next TEXT, last_updated TEXT)"
        )

    def get(self, name: str) -> TimerStatus | None:
        row = self._connection.execute(
            "SELECT last, next, last_updated FROM timer_status WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        last, next_, updated = (datetime.fromisoformat(v) if v else None for v in row)
        return TimerStatus(last, next_, updated)

    def put(self, name: str, status: TimerStatus) -> None:
        values = status.to_json()
        self._connection.execute(
            "INSERT OR REPLACE INTO timer_status (name, last, next, last_updated)"
            " VALUES (?, ?, ?, ?)",
            (name, values["Last"], values["Next"], values["LastUpdated"]),
        )

    def close(self) -> None:
        self._connection.close()


@dataclass(frozen=True)
class TimerInvocation:
    name: str
    at: datetime
    past_due: bool
    reason: str  # "schedule", "past due" or "run on startup"


class TimerTriggers:
    """Runs every timer function of the app on its schedule, one task per function."""

    def __init__(
        self,
        timers: Sequence[TimerFunction],
        *,
        invoker: FunctionInvoker,
        status_store: TimerStatusStore,
        clock: Clock,
        client_binding: Callable[[], str] | None,
    ) -> None:
        self._timers = tuple(timers)
        self._invoker = invoker
        self._store = status_store
        self._clock = clock
        self._client_binding = client_binding
        self._tasks: list[asyncio.Task[None]] = []
        self._status: dict[str, TimerStatus] = {}
        self.invocations: list[TimerInvocation] = []  # what ran, for logs and tests

    def status(self, name: str) -> TimerStatus:
        return self._status[name]

    def start(self) -> None:
        now = self._clock.now()
        for timer in self._timers:
            stored = self._store.get(timer.name) if timer.use_monitor else None
            status, past_due = startup_status(stored, timer.schedule, now)
            if timer.use_monitor and status != stored:
                self._store.put(timer.name, status)
            self._status[timer.name] = status
            logger.info(
                "Timer '%s' (%s): next run %s%s",
                timer.name,
                timer.schedule.expression,
                status.next.isoformat() if status.next else "never",
                ", past due: running now" if past_due else "",
            )
            self._tasks.append(asyncio.create_task(self._run(timer, past_due)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._store.close()

    async def _run(self, timer: TimerFunction, past_due: bool) -> None:
        if past_due:
            await self._invoke(timer, "past due")
        elif timer.run_on_startup:
            await self._invoke(timer, "run on startup")
        while (due := self._status[timer.name].next) is not None:
            await self._clock.sleep_until(due)
            await self._invoke(timer, "schedule")

    async def _invoke(self, timer: TimerFunction, reason: str) -> None:
        started = self._clock.now()
        status = self._status[timer.name]
        past_due = reason == "past due"
        payload = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": status.to_json() if timer.use_monitor else None,
            "IsPastDue": past_due,
        }
        try:
            await self._invoker.invoke(
                timer.info, self._arguments(timer, payload), details=f"Reason={reason}"
            )
        except Exception as exc:  # the schedule goes on, as on the real host; the error is logged
            logger.warning("Timer '%s' failed: %s: %s", timer.name, type(exc).__name__, exc)
        self.invocations.append(TimerInvocation(timer.name, started, past_due, reason))
        # From the scheduled time when it fired early (never twice for one occurrence), else
        # from when it ran: occurrences passed meanwhile are skipped.
        base = (
            status.next
            if reason == "schedule" and status.next and status.next > started
            else started
        )
        updated = TimerStatus(base, timer.schedule.next_after(base), base)
        self._status[timer.name] = updated
        if timer.use_monitor:
            self._store.put(timer.name, updated)

    def _arguments(self, timer: TimerFunction, payload: dict[str, Any]) -> dict[str, object]:
        datum = meta.Datum(type="json", value=json.dumps(payload))
        converter = meta.get_binding_registry().get(TIMER_TRIGGER)
        request = converter.decode(datum, trigger_metadata=None)
        return {timer.argument: request, **durable_clients(timer.info, self._client_binding)}
