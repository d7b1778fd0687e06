"""checkov (its own venv, requirements-infra.txt) scans infra/: no failed check, at most five
skips, each with its reason written next to the resource."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from tests.infra.bicep import INFRA, INFRA_VENV, parse_templates, require_infra_venv

MAX_SKIPS = 5


def checkov_report() -> dict[str, Any]:
    require_infra_venv()
    checkov = str(INFRA_VENV / "bin" / "checkov")
    # --skip-download: offline, no policies or guidelines fetched from the vendor.
    done = subprocess.run(
        [checkov, "-d", str(INFRA), "--framework", "bicep", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip(), f"checkov printed nothing:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout)


def test_checkov_finds_no_failed_check_in_infra_and_skips_at_most_five_each_with_its_reason():
    report = checkov_report()
    summary, results = report["summary"], report["results"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in results["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert summary["parsing_errors"] == 0
    # Every template with checkable resources was read (a file checkov cannot parse is dropped).
    scanned = {check["file_path"].lstrip("/") for check in results["passed_checks"]}
    assert {"main.bicep", "modules/functionapp.bicep", "modules/storage.bicep"} <= scanned
    assert {"modules/keyvault.bicep", "modules/container-env.bicep"} <= scanned
    skipped = results["skipped_checks"]
    assert len(skipped) <= MAX_SKIPS
    for check in skipped:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) > 20, f"{check['check_id']} is skipped without a reason"


def test_every_skip_is_written_inside_the_resource_it_skips():
    skip = re.compile(r"^\s+// checkov:skip=(CKV\w+): \S")
    count = 0
    for path in parse_templates():
        lines = (INFRA / path).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if "checkov:skip" in line:
                assert skip.match(line), f"{path}:{number + 1}: skip without id and reason"
                above = [text for text in lines[:number] if not text.lstrip().startswith("//")]
                assert above[-1].startswith("resource "), f"{path}:{number + 1}: not in a resource"
                count += 1
    assert count <= MAX_SKIPS
