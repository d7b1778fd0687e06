"""SCHEDULER_ALLOWED_ENDPOINTS: a Scheduler deployed for one app calls back only that app."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.scheduler import API_KEY, CLIENT_ID, WEBHOOK_SECRET, FakeClock
from samples.scheduler_mcp import SchedulerConfig
from samples.scheduler_mcp.errors import InvalidRequest, SettingsError
from tests.samples.conftest import StartScheduler

CALLBACK = "https://func-example.azurewebsites.net/api/scheduler/callback"


async def test_a_schedule_for_another_endpoint_is_refused_and_nothing_is_stored(
    start_scheduler: StartScheduler, clock: FakeClock
):
    running = await start_scheduler(allowed_endpoints=(CALLBACK,))
    with pytest.raises(InvalidRequest, match="may call back"):
        await running.scheduler.schedule(
            "hi", clock.iso(60), "https://elsewhere.example/hook", None
        )
    assert await running.scheduler.list_schedules(None, None, 100) == []


async def test_the_allowed_callback_is_accepted_whatever_its_query_string(
    start_scheduler: StartScheduler, clock: FakeClock
):
    running = await start_scheduler(allowed_endpoints=(CALLBACK,))
    schedule = await running.scheduler.schedule("hi", clock.iso(60), f"{CALLBACK}?code=k", None)
    assert schedule.endpoint == f"{CALLBACK}?code=k"


def test_the_allowed_endpoints_come_from_the_environment_separated_by_commas_or_spaces(
    tmp_path: Path,
):
    environ = {
        "SCHEDULER_CLIENT_ID": CLIENT_ID,
        "SCHEDULER_API_KEY": API_KEY,
        "SCHEDULER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SCHEDULER_ALLOWED_ENDPOINTS": f"{CALLBACK}, https://other.example/cb",
    }
    config = SchedulerConfig.from_env(environ, tmp_path / "s.sqlite3")
    assert config.allowed_endpoints == (CALLBACK, "https://other.example/cb")


def test_a_malformed_allowed_endpoint_fails_at_startup_naming_the_setting(tmp_path: Path):
    environ = {
        "SCHEDULER_CLIENT_ID": CLIENT_ID,
        "SCHEDULER_API_KEY": API_KEY,
        "SCHEDULER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SCHEDULER_ALLOWED_ENDPOINTS": "ftp://example/cb",
    }
    with pytest.raises(SettingsError, match="SCHEDULER_ALLOWED_ENDPOINTS"):
        SchedulerConfig.from_env(environ, tmp_path / "s.sqlite3")
