"""Orchestration versions: how a deployment changes an orchestrator without breaking runs in flight.

Durable replays an orchestrator's code against the history it has recorded so far, so a redeploy
that changes which actions an orchestrator yields would break every run, batch lane and approval
wait that is in flight when it lands. Durable's orchestration versioning answers this: host.json's
`extensions.durableTask.defaultVersion` stamps every new instance (sub-orchestrations and
continue-as-new included) with the version deployed when it started, and the SDK exposes it as
`context.version`. An orchestrator that changes what it yields gates the new behaviour on
`runs_at_least(context, N)` and keeps the old path until instances of older versions have drained.

Version 1 is every instance started before versioning existed (no version recorded). The golden
histories under `tests/golden/` are recorded from older versions and must keep replaying to
completion.

host.json writes version N as "N.0" (`version_text`): the extension compares versions (for
`versionMatchStrategy`) as .NET `System.Version` when both parse, which needs at least two parts,
and otherwise as strings, where "10" sorts before "9". With `CurrentOrOlder` + `Reject`, a worker
still running the previous deployment leaves a newer version's instances alone for a new worker.
"""

from __future__ import annotations

from typing import Any

# The version host.json stamps on new instances (`extensions.durableTask.defaultVersion`).
CURRENT = 4
UNVERSIONED = 1  # started before host.json named a version


def version_text(version: int) -> str:
    """How host.json's `defaultVersion` spells `version` ("2.0"), so the extension compares it
    as a version number."""
    return f"{version}.0"


def version_of(context: Any) -> int:
    """The version recorded when this instance started; unversioned instances are version 1."""
    raw = getattr(context, "version", None)
    if not raw:
        return UNVERSIONED
    try:
        return int(str(raw).split(".", 1)[0])
    except ValueError:
        return UNVERSIONED


def runs_at_least(context: Any, version: int) -> bool:
    """True when this instance started on `version` or later: gate new orchestrator behaviour."""
    return version_of(context) >= version
