"""Shutting down: the runtime stops even when a wake-up and the stop arrive together, and a
host with work in flight exits on SIGTERM within its grace period, the work resuming after a
restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import azure.durable_functions as df
import pytest

from local_host.host import LocalHost
from local_host.testing import HostProcess, wait_until

from .conftest import CRASH_APP, DURABLE_APP

STOP_BOUND_SECONDS = 10  # a bound on waiting, not a timing claim: before the fix, never
GRACE_SECONDS = 2
EXIT_BOUND_SECONDS = 20
TIMEOUT = 30


async def test_the_runtime_stops_when_a_wake_up_arrives_with_the_stop(tmp_path: Path) -> None:
    host = LocalHost(
        DURABLE_APP, port=0, state_path=tmp_path / "s.sqlite3", apply_local_settings=False
    )
    await host.start()
    try:
        client = df.DurableOrchestrationClient(host.client_binding())
        # A timer due in an hour: the orchestration loop now sleeps with a timeout.
        await client.start_new("timer", "sleeper-1", 3_600_000)
        await client.start_new("wait_forever", "waiter-1")
        await host.runtime.wait_for_status("waiter-1", {"Running"}, within=TIMEOUT)
        await wait_until(
            lambda: (
                host.runtime.get_instance("sleeper-1") is not None
                and any(e["EventType"] == 10 for e in host.runtime.load_history("sleeper-1"))
            ),
            within=TIMEOUT,
            message="the timer was created",
        )
        runtime = host.runtime
        runtime.raise_event("waiter-1", "unrelated", None)  # wakes the loop...
        stopping = asyncio.create_task(runtime.stop())  # ...in the same turn as the cancellation
        done, _ = await asyncio.wait({stopping}, timeout=STOP_BOUND_SECONDS)
        stopping.cancel()  # (a second cancellation gets through where the first one was lost)
        assert stopping in done, "stop() did not return"
        assert not _dispatch_loops(), "a dispatch loop outlived stop()"
    finally:
        await host.stop()


def _dispatch_loops() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("local-host-") and not task.done()
    ]


def _calls(work_dir: Path) -> Counter[str]:
    log = work_dir / "calls.log"
    return Counter(log.read_text(encoding="utf-8").split()) if log.exists() else Counter()


async def _runtime_status(http: aiohttp.ClientSession, process: HostProcess, instance: str) -> str:
    url = f"{process.base_url}/durabletask/instances/{instance}"
    async with http.get(url, headers={"x-functions-key": process.system_key}) as response:
        return (await response.json())["runtimeStatus"] if response.status in (200, 202) else ""


@pytest.mark.parametrize("activity", ["block", "stubborn"])
async def test_sigterm_with_work_in_flight_exits_within_the_grace_period_and_work_resumes(
    tmp_path: Path, http: aiohttp.ClientSession, activity: str
) -> None:
    """`block` holds a thread; `stubborn` is async and swallows its cancellation."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    process = HostProcess(
        CRASH_APP,
        state_path=tmp_path / "state.sqlite3",
        env={"CRASH_APP_WORK_DIR": str(work_dir), "CRASH_APP_SLOW_ACTIVITY": activity},
        extra_args=["--shutdown-grace", str(GRACE_SECONDS)],
    )
    try:
        base_url = await process.start()
        async with http.post(f"{base_url}/api/start/term-{activity}") as response:
            assert response.status == 202
        await wait_until(
            lambda: _calls(work_dir)["f3:start"] == 1, within=TIMEOUT, message="f3 in flight"
        )
        exit_code = await process.stop(grace=EXIT_BOUND_SECONDS)  # SIGKILL only after the bound
        assert exit_code is not None and exit_code != -9, process.log_text()
        assert "Shutting down" in process.log_text()

        (work_dir / "release").touch()
        await process.start()

        async def completed() -> bool:
            return await _runtime_status(http, process, f"term-{activity}") == "Completed"

        await wait_until(completed, within=TIMEOUT, message="orchestration completed")
    finally:
        await process.stop()
    assert _calls(work_dir)["f3:start"] == 2
