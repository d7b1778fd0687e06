"""host.json stamps the version `agent.versions` gates on, in a form the extension compares right."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from agent.versions import CURRENT, UNVERSIONED, runs_at_least, version_of, version_text
from local_host.versioning import compare_versions

HOST_JSON = json.loads((Path(__file__).parents[2] / "host.json").read_text(encoding="utf-8"))
DURABLE = HOST_JSON["extensions"]["durableTask"]


def context(version: str | None) -> SimpleNamespace:
    return SimpleNamespace(version=version)


def test_host_json_stamps_the_current_version_on_new_instances():
    assert DURABLE["defaultVersion"] == version_text(CURRENT)
    assert version_of(context(DURABLE["defaultVersion"])) == CURRENT


def test_the_stamped_version_compares_as_a_number_not_as_text():
    # Azure compares as System.Version only when both sides have two parts or more: as text,
    # "10" would sort before "9" and old workers would run newer instances.
    assert compare_versions(version_text(CURRENT + 8), version_text(CURRENT + 7)) > 0
    assert compare_versions("10", "9") < 0  # why a bare number is not used


def test_old_workers_leave_newer_instances_to_new_workers_during_a_rolling_deploy():
    assert DURABLE["versionMatchStrategy"] == "CurrentOrOlder"
    assert DURABLE["versionFailureStrategy"] == "Reject"


def test_the_extension_bundle_is_one_that_knows_orchestration_versions():
    low = HOST_JSON["extensionBundle"]["version"].strip("[(").split(",")[0].strip()
    assert tuple(int(p) for p in low.split(".")) >= (4, 26, 0)


def test_instances_started_before_versioning_are_version_1():
    assert version_of(context(None)) == UNVERSIONED == 1
    assert version_of(context("")) == 1
    assert not runs_at_least(context(None), 2)
    assert runs_at_least(context("2.0"), 2)
    assert runs_at_least(context("2"), 2)  # the local test drivers stamp str(CURRENT)
