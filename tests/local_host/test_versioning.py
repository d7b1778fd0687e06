"""The local host honours host.json's versionMatchStrategy and versionFailureStrategy."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from local_host.errors import HostSettingsError
from local_host.history import RuntimeStatus
from local_host.host import LocalHost
from local_host.settings import read_host_config
from local_host.versioning import FailureStrategy, MatchStrategy, VersionPolicy, compare_versions
from tests.local_host.conftest import DURABLE_APP

DONE = {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED}


@pytest.mark.parametrize(
    ("older", "newer"),
    [("", "1.0"), ("1.0", "2.0"), ("2.0", "10.0"), ("1.0", "1.0.0"), ("10", "9"), ("a", "B")],
)
def test_versions_compare_as_durable_task_compares_them(older: str, newer: str) -> None:
    assert compare_versions(older, newer) < 0 < compare_versions(newer, older)


def test_empty_versions_are_equal_and_text_ignores_case() -> None:
    assert compare_versions(None, "") == 0
    assert compare_versions("V1-Beta", "v1-beta") == 0


def test_current_or_older_runs_older_and_unversioned_instances_only() -> None:
    policy = VersionPolicy("2.0")
    assert policy.accepts("") and policy.accepts("1.0") and policy.accepts("2.0")
    assert not policy.accepts("3.0")


def test_strict_runs_only_its_own_version_and_none_runs_everything() -> None:
    assert not VersionPolicy("2.0", MatchStrategy.STRICT).accepts("1.0")
    assert VersionPolicy("2.0", MatchStrategy.NONE).accepts("3.0")


def write_host_json(app_dir: Path, durable: dict[str, Any]) -> None:
    (app_dir / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"durableTask": durable}}), encoding="utf-8"
    )


def test_host_json_strategies_are_read_case_insensitively_with_the_extensions_defaults(
    tmp_path: Path,
) -> None:
    write_host_json(tmp_path, {"defaultVersion": "2.0", "versionFailureStrategy": "fail"})
    policy = read_host_config(tmp_path).version_policy
    assert policy == VersionPolicy("2.0", MatchStrategy.CURRENT_OR_OLDER, FailureStrategy.FAIL)


def test_an_unknown_strategy_is_refused_with_the_allowed_ones(tmp_path: Path) -> None:
    write_host_json(tmp_path, {"versionMatchStrategy": "Newest"})
    with pytest.raises(HostSettingsError, match="CurrentOrOlder"):
        read_host_config(tmp_path)


HostFactory = Callable[[dict[str, Any]], Any]


@pytest_asyncio.fixture
async def versioned_host(tmp_path: Path) -> AsyncIterator[HostFactory]:
    """The durable test app under a host.json of the test's choosing."""
    hosts: list[LocalHost] = []

    async def start(durable: dict[str, Any]) -> LocalHost:
        app_dir = tmp_path / "app"
        shutil.copytree(DURABLE_APP, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
        write_host_json(app_dir, {"hubName": "Versions", **durable})
        host = LocalHost(app_dir, port=0, state_path=tmp_path / "state.sqlite3", fresh_import=True)
        await host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        await host.stop()


async def test_a_worker_leaves_an_instance_of_a_newer_version_untouched(
    versioned_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    host = await versioned_host({"defaultVersion": "2.0"})
    caplog.set_level(logging.WARNING, logger="local_host.runtime")
    newer = host.runtime.start_new("sequence", "newer", None, "3.0")
    older = host.runtime.start_new("sequence", "older", None, "1.0")
    done = await host.runtime.wait_for_status(older.instance_id, DONE, within=30)
    assert done.runtime_status == RuntimeStatus.COMPLETED
    # The newer one was picked up first (oldest message first) and left as it was.
    assert host.runtime.get_instance(newer.instance_id).runtime_status == RuntimeStatus.PENDING
    assert host.runtime.load_history(newer.instance_id) == []
    assert any("Leaving instance newer" in r.getMessage() for r in caplog.records)


async def test_with_the_fail_strategy_an_instance_of_a_newer_version_fails(
    versioned_host: HostFactory,
) -> None:
    host = await versioned_host({"defaultVersion": "2.0", "versionFailureStrategy": "Fail"})
    newer = host.runtime.start_new("sequence", "newer", None, "3.0")
    failed = await host.runtime.wait_for_status(newer.instance_id, DONE, within=30)
    assert failed.runtime_status == RuntimeStatus.FAILED
    assert "does not match the worker version '2.0'" in (failed.output_raw or "")
