"""The activity concurrency limit holds for sync (thread) and async (event loop) activities alike."""

from __future__ import annotations

from pathlib import Path

import azure.durable_functions as df

from local_host.host import LocalHost
from local_host.testing import wait_until

from .conftest import DURABLE_APP, TERMINAL

LIMIT = 3
FAN_OUT = 10


async def test_no_more_activities_run_at_once_than_the_limit(tmp_path: Path) -> None:
    host = LocalHost(
        DURABLE_APP,
        port=0,
        state_path=tmp_path / "s.sqlite3",
        max_activities=LIMIT,
        fresh_import=True,
    )
    async with host:
        probe = host.app_module.Probe
        client = df.DurableOrchestrationClient(host.client_binding())
        await client.start_new("probe_fan_out", "probe-1", FAN_OUT)
        # Every probe waits at the gate: the running count saturates at the limit.
        await wait_until(lambda: probe.running >= LIMIT, within=10, message="probes running")
        for _ in range(FAN_OUT):
            probe.gate.release()
        record = await host.runtime.wait_for_status("probe-1", TERMINAL, within=10)
    assert str(record.runtime_status) == "Completed"
    assert probe.max_running == LIMIT
