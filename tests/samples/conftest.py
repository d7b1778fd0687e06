"""Fixtures for the Scheduler tests: a fake clock, a webhook receiver, schedulers to start."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from devkit.scheduler import (
    FakeClock,
    RunningScheduler,
    ServedApp,
    WebhookReceiver,
    scheduler_config,
)
from samples.scheduler_mcp import Scheduler

StartScheduler = Callable[..., Awaitable[RunningScheduler]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "scheduler.sqlite3"


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    instance = await WebhookReceiver().start()
    yield instance
    await instance.stop()


@pytest.fixture
async def start_scheduler(clock: FakeClock, state_path: Path) -> AsyncIterator[StartScheduler]:
    """`await start_scheduler(**config_overrides)`: a served Scheduler on the test's clock and
    state file (call again after `stop()` for a restart); all stopped after the test."""
    running: list[RunningScheduler] = []

    async def start(**overrides: Any) -> RunningScheduler:
        scheduler = Scheduler(scheduler_config(state_path, **overrides), clock=clock)
        served = await ServedApp(scheduler.app).start()
        running.append(RunningScheduler(scheduler, served))
        return running[-1]

    yield start
    for instance in running:
        await instance.stop()
