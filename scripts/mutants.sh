#!/usr/bin/env bash
# Mutation testing of the pure core (issue #11 item 8): mutmut mutates the modules below and
# runs only their fast unit tests per mutant (config: [tool.mutmut] in pyproject.toml), then
# this prints the score per module set. A habit, not a gate: CI does not run it (one to ten
# minutes on two shared cores, some 1,600 mutants). Target: at least 90% per set.
#
#   scripts/mutants.sh            fresh run (removes mutants/), then the scores
#   scripts/mutants.sh --report   the scores of the last run only
#   .venv/bin/mutmut show <name>  the diff of one surviving mutant
#
# The score counts only the pure decision functions listed in SETS below: a module such as
# agent/scheduling.py also holds HTTP handlers and Blob I/O, tested end to end, whose mutants
# the unit tests never reach (mutmut reports them as "no tests"; they are not counted).
# MUTANTS_CHILDREN (default 2) bounds mutmut's parallelism: the machine is shared.
#
# Surviving mutants reviewed and left, and why (the names change as code moves: read the
# diffs with `mutmut show`):
# - Wording only: "XX..XX" or upper-cased text inside a 4xx detail, an operator message or a
#   run's error (loop.decide, loop.before_step, webhooks.verify, http.callbacks.parse_callback/
#   parse_seed_callback). The tests read the part a reader acts on (the field, the limit, the
#   setting named), not every word of the sentence.
# - Equivalent in this runtime: "utf-8" -> "UTF-8" (same codec); a
#   `.replace("Z", "+00:00")` mutated (3.11's fromisoformat reads "Z" itself);
#   `ensure_ascii=None` (falsy, as False); `decided.get(id, False)` -> `get(id)` (None is as
#   falsy); webhooks `entry.partition` -> `rpartition` (an entry with a second comma fails
#   either way); webhooks `+len % 4` padding (the decoder ignores surplus "="); webhooks
#   `_header` fast path `headers.get(name)` dropped (the case-insensitive scan finds the same).
# - Equivalent by an invariant of the callers: loop.decide `outcome == "final"` mutated (the
#   model step reports "final" exactly when it has no tool calls, agent/activities.py);
#   http.schedules.batch_view_of_items `strict=True` dropped (runs always match the items).
# - Unreachable: http.callbacks.parse_callback's own "body must be a JSON object" (parse_json_object
#   already refuses anything but an object).
# - Host-dependent: http.models._scheduled_time `astimezone(UTC)` -> `astimezone(None)` is the same
#   on a UTC host (Azure Functions, CI); not worth a test that changes the process time zone.
set -euo pipefail
cd "$(dirname "$0")/.."

{ # read whole before it runs: editing this file during a long run cannot derail it
if [[ "${1:-}" != "--report" ]]; then
    rm -rf mutants
    # mutmut draws a progress line per mutant: shown only when the run fails.
    .venv/bin/mutmut run --max-children "${MUTANTS_CHILDREN:-2}" >/tmp/mutants.$$.log 2>&1 \
        || { tail -40 /tmp/mutants.$$.log; rm -f /tmp/mutants.$$.log; exit 1; }
    rm -f /tmp/mutants.$$.log
fi

.venv/bin/python - <<'PY'
"""Score per module set from mutmut's result files (mutants/<module>.py.meta)."""

import json
import re
import sys
from pathlib import Path

# module set -> {module file: functions scored (None: every function in the file)}
SETS: dict[str, dict[str, set[str] | None]] = {
    "loop": {"agent/loop.py": None},
    "webhooks": {"agent/webhooks.py": None},
    "scheduling decisions": {
        "agent/scheduling.py": {"batch_item", "schedule_id_of", "_find_key"},
        "agent/http/callbacks.py": {"body_fingerprint", "request_key"},
        "agent/http/models.py": {"_scheduled_time"},
        "agent/http/schedules.py": {"batch_view_of_items"},
        "storage/batches.py": {
            "BatchRecord.visible_to",
            "batch_id_for_webhook",
            "run_id_of",
            "_live_entries",
            "_claimable",
            "_earliest_due",
            "_expiry",
            "_instant",
        },
        "agent/turn_lock.py": {"status_name"},
    },
    "mcp policy": {"agent/mcp/policy.py": None},
}
KILLED = {1, 3, 36, -24, 24, 152, 255, 37}  # killed, or timed out / caught by the type check
SURVIVED = {0}
MUTANT = re.compile(r"^(?P<module>.+?)\.x(?:ǁ(?P<cls>[^ǁ]+)ǁ|_)(?P<fn>.+)__mutmut_\d+$")


def function_of(name: str) -> str:
    match = MUTANT.match(name)
    if match is None:
        return "?"
    return f"{match['cls']}.{match['fn']}" if match["cls"] else match["fn"]


failing = False
for set_name, modules in SETS.items():
    killed, survivors, untested = 0, [], []
    present = False
    for path, functions in modules.items():
        meta = Path("mutants") / f"{path}.meta"
        if not meta.exists():
            continue
        present = True
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if functions is not None and function_of(name) not in functions:
                continue
            if code in KILLED:
                killed += 1
            elif code in SURVIVED:
                survivors.append(name)
            else:
                untested.append(name)  # no test reached it: counted as not killed
    if not present:
        print(f"{set_name:22} (no module mutated)")
        continue
    total = killed + len(survivors) + len(untested)
    score = 100.0 * killed / total if total else 100.0
    failing |= score < 90.0
    print(f"{set_name:22} {score:5.1f}%  {killed} of {total} killed", end="")
    print(f", {len(untested)} not reached" if untested else "")
    for name in sorted(survivors):
        print(f"    survived: {name}")
    for function in sorted({function_of(name) for name in untested}):
        print(f"    not reached: {function}")
sys.exit(1 if failing else 0)
PY
exit
}
