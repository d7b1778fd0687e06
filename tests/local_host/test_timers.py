"""Timer triggers on the local host: NCRONTAB schedules, runOnStartup, and a run missed while the
host was down run once at startup with past_due, as the Functions host does. The host's clock is
a ManualClock the test moves: nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.durable_functions as df
import pytest

from local_host.errors import LocalHostError
from local_host.host import LocalHost
from local_host.ncrontab import Schedule
from local_host.timers import ManualClock, TimerStatus, startup_status

from .conftest import APPS

TIMER_APP = APPS / "timer_app"
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NIGHTLY = Schedule.parse("0 0 3 * * *")


@pytest.fixture(autouse=True)
def hourly_failing_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILING_TIMER_SCHEDULE", "0 0 * * * *")


@pytest.fixture
def calls() -> Iterator[list[dict[str, object]]]:
    from local_host.indexing import load_app_module

    module = load_app_module(TIMER_APP)
    module.CALLS.clear()
    yield module.CALLS


def host(state: Path, clock: ManualClock) -> LocalHost:
    return LocalHost(TIMER_APP, port=0, state_path=state, clock=clock)


def named(calls: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [call for call in calls if call["name"] == name]


async def test_a_timer_runs_at_each_occurrence_of_its_schedule(tmp_path: Path, calls):
    clock = ManualClock(T0)
    async with host(tmp_path / "state.sqlite3", clock):
        await clock.wait_for_sleeper(datetime(2026, 1, 2, 3, tzinfo=UTC))
        assert named(calls, "nightly") == []

        clock.set(datetime(2026, 1, 2, 3, tzinfo=UTC))
        await clock.wait_for_sleeper(datetime(2026, 1, 3, 3, tzinfo=UTC))
        [run] = named(calls, "nightly")
        assert run["past_due"] is False
        assert run["status"]["Next"] == "2026-01-02T03:00:00+00:00"  # type: ignore[index]


async def test_run_on_startup_runs_once_when_the_host_starts(tmp_path: Path, calls):
    clock = ManualClock(T0)
    async with host(tmp_path / "state.sqlite3", clock) as running:
        await clock.wait_for_sleeper(T0 + timedelta(minutes=5))
        [run] = named(calls, "every_five_minutes")
        assert run["past_due"] is False
        assert isinstance(run["client"], df.DurableOrchestrationClient)  # its input binding
        assert [i.reason for i in running.timers.invocations] == ["run on startup"]  # type: ignore[union-attr]


async def test_a_run_missed_while_the_host_was_down_runs_once_at_startup_with_past_due(
    tmp_path: Path, calls
):
    state, clock = tmp_path / "state.sqlite3", ManualClock(T0)
    async with host(state, clock):
        await clock.wait_for_sleeper(datetime(2026, 1, 2, 3, tzinfo=UTC))
    clock.set(datetime(2026, 1, 4, 10, tzinfo=UTC))  # down through three nightly occurrences
    calls.clear()
    async with host(state, clock) as restarted:
        await clock.wait_for_sleeper(datetime(2026, 1, 5, 3, tzinfo=UTC))
        [run] = named(calls, "nightly")
        assert run["past_due"] is True
        assert restarted.timers.status("nightly").next == datetime(2026, 1, 5, 3, tzinfo=UTC)  # type: ignore[union-attr]
        # a monitored runOnStartup timer that is past due runs once, as past due
        await clock.wait_for_sleeper(datetime(2026, 1, 4, 10, 5, tzinfo=UTC))
        assert [c["past_due"] for c in named(calls, "every_five_minutes")] == [True]


async def test_a_restart_with_nothing_missed_runs_nothing(tmp_path: Path, calls):
    state, clock = tmp_path / "state.sqlite3", ManualClock(T0)
    async with host(state, clock):
        await clock.wait_for_sleeper(datetime(2026, 1, 2, 3, tzinfo=UTC))
    clock.set(T0 + timedelta(hours=1))
    async with host(state, clock):
        await clock.wait_for_sleeper(datetime(2026, 1, 2, 3, tzinfo=UTC))
        assert named(calls, "nightly") == []


async def test_a_failing_timer_function_keeps_its_schedule(tmp_path: Path, calls):
    clock = ManualClock(T0)
    async with host(tmp_path / "state.sqlite3", clock):
        await clock.wait_for_sleeper(T0 + timedelta(hours=1))
        clock.set(T0 + timedelta(hours=1))
        await clock.wait_for_sleeper(T0 + timedelta(hours=2))
        assert len(named(calls, "failing")) == 1


async def test_an_invalid_schedule_stops_the_host_naming_the_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAILING_TIMER_SCHEDULE", "0 * * * *")  # five fields: no seconds
    with pytest.raises(LocalHostError, match="'failing': invalid timer schedule"):
        async with host(tmp_path / "state.sqlite3", ManualClock(T0)):
            pass


def test_a_timer_with_no_stored_status_is_not_past_due():
    status, past_due = startup_status(None, NIGHTLY, T0)
    assert (status.next, past_due) == (datetime(2026, 1, 2, 3, tzinfo=UTC), False)


def test_a_stored_next_occurrence_in_the_past_is_past_due():
    ran = datetime(2026, 1, 1, 3, tzinfo=UTC)
    stored = TimerStatus(ran, NIGHTLY.next_after(ran), ran)
    _, past_due = startup_status(stored, NIGHTLY, datetime(2026, 1, 2, 4, tzinfo=UTC))
    assert past_due


def test_a_changed_schedule_is_never_past_due_and_starts_from_now():
    ran = datetime(2026, 1, 1, 3, tzinfo=UTC)
    stored = TimerStatus(ran, NIGHTLY.next_after(ran), ran)
    hourly = Schedule.parse("0 0 * * * *")
    now = datetime(2026, 1, 3, 10, 30, tzinfo=UTC)
    status, past_due = startup_status(stored, hourly, now)
    assert (status.next, past_due) == (datetime(2026, 1, 3, 11, tzinfo=UTC), False)
