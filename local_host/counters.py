"""Counts of the durable work the host ran: episodes, activities, history events (no timings).

On Azure each episode and each activity is a queue or scheduler round trip and each episode
replays the instance's whole history, so these counts, not this machine's milliseconds, say what
a turn costs. They are deterministic for a given run, so tests can pin them.

Keys of a snapshot (a `Counter`, so two snapshots subtract):

- `episodes`, `episodes:<orchestrator>`: orchestrator episodes run;
- `activities`, `activities:<activity>`: activity executions;
- `history_events`: events appended to histories (OrchestratorStarted, the messages consumed,
  the actions' events); `history_bytes`: their JSON size;
- `replayed_events`, `replayed_bytes`: the history each episode hands back to the orchestrator
  (what replay costs: it grows with every episode of an instance).

One object per `DurableRuntime`: nothing is shared between hosts (or tests).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from .history import Event


class DurableCounters:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        # Each live instance's history size so far, so an episode's replay is counted without
        # serialising the history again; dropped when the instance finishes.
        self._history_bytes: dict[str, int] = {}

    def episode(
        self,
        *,
        instance_id: str,
        orchestrator: str,
        replayed: int,
        appended: Sequence[Event],
        finished: bool,
    ) -> None:
        """One episode ran: `replayed` past events were sent, `appended` events were committed.

        `finished` (completed, failed, continued as new): the instance's history starts over."""
        size = sum(len(json.dumps(event)) for event in appended)
        self._counts.update(
            {
                "episodes": 1,
                f"episodes:{orchestrator}": 1,
                "replayed_events": replayed,
                "replayed_bytes": self._history_bytes.get(instance_id, 0),
                "history_events": len(appended),
                "history_bytes": size,
            }
        )
        if finished:
            self._history_bytes.pop(instance_id, None)
        else:
            self._history_bytes[instance_id] = self._history_bytes.get(instance_id, 0) + size

    def activity(self, name: str) -> None:
        self._counts.update({"activities": 1, f"activities:{name}": 1})

    def snapshot(self) -> Counter[str]:
        """A copy: subtract an earlier snapshot to get what ran in between."""
        return Counter(self._counts)
