"""Orchestration versioning, as the Durable extension applies host.json's settings to a worker.

`extensions.durableTask.defaultVersion` is stamped on new instances (engine.start_instance);
`versionMatchStrategy` says which instances this host may run, compared with its own
`defaultVersion`: `None` any, `Strict` only the same version, `CurrentOrOlder` (the extension's
default) the same or older. `versionFailureStrategy` says what happens to the others: `Reject`
(default) leaves them untouched for a worker that can run them, `Fail` fails them.

Versions compare as DurableTask.Core's `VersioningSettings.CompareVersions` does: empty equals
empty and is older than anything; as `System.Version` when both parse (2 to 4 numeric parts);
otherwise as case-insensitive strings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MatchStrategy(enum.StrEnum):
    NONE = "None"
    STRICT = "Strict"
    CURRENT_OR_OLDER = "CurrentOrOlder"


class FailureStrategy(enum.StrEnum):
    REJECT = "Reject"
    FAIL = "Fail"


def _dotnet_version(text: str) -> tuple[int, ...] | None:
    parts = text.strip().split(".")
    if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def compare_versions(source: str | None, other: str | None) -> int:
    """<0, 0 or >0 as `source` is older than, equal to or newer than `other`."""
    source, other = (source or "").strip(), (other or "").strip()
    if not source or not other:
        return (bool(source) > bool(other)) - (bool(source) < bool(other))
    parsed_source, parsed_other = _dotnet_version(source), _dotnet_version(other)
    if parsed_source is not None and parsed_other is not None:
        # System.Version: missing build/revision parts are -1, so 1.0 < 1.0.0.
        padded_source = parsed_source + (-1,) * (4 - len(parsed_source))
        padded_other = parsed_other + (-1,) * (4 - len(parsed_other))
        return (padded_source > padded_other) - (padded_source < padded_other)
    folded_source, folded_other = source.casefold(), other.casefold()
    return (folded_source > folded_other) - (folded_source < folded_other)


@dataclass(frozen=True)
class VersionPolicy:
    """Which instances this host runs, and what it does with the others."""

    default_version: str = ""
    match: MatchStrategy = MatchStrategy.CURRENT_OR_OLDER
    failure: FailureStrategy = FailureStrategy.REJECT

    def accepts(self, instance_version: str | None) -> bool:
        # Without a defaultVersion this worker has nothing to compare with: it runs everything.
        if self.match == MatchStrategy.NONE or not self.default_version:
            return True
        order = compare_versions(instance_version, self.default_version)
        return order == 0 if self.match == MatchStrategy.STRICT else order <= 0

    def mismatch_message(self, instance_version: str | None) -> str:
        return (
            f"The orchestration version '{instance_version or ''}' does not match the worker "
            f"version '{self.default_version}' ({self.match} versionMatchStrategy)."
        )
