"""A host killed with SIGKILL resumes every orchestration from its state file.

The host runs as a subprocess. The orchestration runs `record("a")`, then fans out to
`record("f1")`, `record("f2")` and `block("f3")` (which waits for a release file), then
`record("c")`. The test kills the host while `block` waits, after f1 and f2 have committed,
restarts it on the same state file and checks: the orchestration completes; a, f1 and f2 ran
exactly once; f3 ran again (at-least-once for work in flight at the crash).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from local_host.testing import HostProcess, wait_until

from .conftest import CRASH_APP

TIMEOUT = 20


def _calls(work_dir: Path) -> Counter[str]:
    log = work_dir / "calls.log"
    return Counter(log.read_text(encoding="utf-8").split()) if log.exists() else Counter()


async def _status(http: aiohttp.ClientSession, process: HostProcess, instance_id: str) -> dict:
    url = f"{process.base_url}/durabletask/instances/{instance_id}"
    query = {"showHistory": "true", "showHistoryOutput": "true"}
    headers = {"x-functions-key": process.system_key}
    async with http.get(url, params=query, headers=headers) as response:
        return await response.json() if response.status in (200, 202) else {}


def _completed_functions(status: dict) -> list[str]:
    return [
        e.get("FunctionName")
        for e in status.get("historyEvents", [])
        if e["EventType"] == "TaskCompleted"
    ]


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


async def test_a_killed_host_resumes_and_reruns_only_unfinished_work(
    tmp_path: Path, work_dir: Path, http: aiohttp.ClientSession
) -> None:
    state = tmp_path / "state.sqlite3"
    env = {"CRASH_APP_WORK_DIR": str(work_dir)}
    process = HostProcess(CRASH_APP, state_path=state, env=env)
    try:
        base_url = await process.start()
        async with http.post(f"{base_url}/api/start/crash-1") as response:
            assert response.status == 202

        async def f1_f2_committed_and_f3_blocked() -> bool:
            status = await _status(http, process, "crash-1")
            committed = _completed_functions(status).count("record") == 3  # a, f1, f2
            return committed and _calls(work_dir)["f3:start"] == 1

        await wait_until(
            f1_f2_committed_and_f3_blocked, within=TIMEOUT, message="f1/f2 committed, f3 blocked"
        )
        process.kill()
        base_url = await process.start()  # waits for the killed process first
        assert process.log_text().count("listening on") == 2
        await wait_until(
            lambda: _calls(work_dir)["f3:start"] == 2, within=TIMEOUT, message="f3 restarted"
        )
        (work_dir / "release").touch()

        async def completed() -> dict:
            status = await _status(http, process, "crash-1")
            return status if status.get("runtimeStatus") == "Completed" else {}

        status = await wait_until(completed, within=TIMEOUT, message="orchestration completed")
    finally:
        await process.stop()
    assert status["output"] == ["a", "f1", "f2", "f3", "c"]
    calls = _calls(work_dir)
    assert (calls["a"], calls["f1"], calls["f2"], calls["c"]) == (1, 1, 1, 1)
    assert (calls["f3:start"], calls["f3:end"]) == (2, 1)
