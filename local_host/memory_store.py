"""An in-memory StoreTransaction, for driving the engine without SQLite (tests/support/replay.py).

A "transaction" here is just the store itself: the driver is single-threaded and applies each
engine operation completely before the next one, so nothing can observe a half-done change.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .engine import ActivityWork, InstanceQuery, InstanceRecord, Message
from .history import Event


@dataclass
class MemoryStore:
    instances: dict[str, InstanceRecord] = field(default_factory=dict)
    histories: dict[str, list[Event]] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    activities: list[ActivityWork] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- StoreTransaction

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        return self.instances.get(instance_id)

    def save_instance(self, record: InstanceRecord) -> None:
        self.instances[record.instance_id] = record

    def delete_instance(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)
        self.clear_history(instance_id)
        self.delete_queued_work(instance_id)

    def query_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        def matches(record: InstanceRecord) -> bool:
            return (
                (query.created_from is None or record.created_time >= query.created_from)
                and (query.created_to is None or record.created_time <= query.created_to)
                and (query.statuses is None or record.runtime_status in query.statuses)
                and (
                    not query.instance_id_prefix
                    or record.instance_id.startswith(query.instance_id_prefix)
                )
            )

        return sorted(
            (r for r in self.instances.values() if matches(r)),
            key=lambda r: (r.created_time, r.instance_id),
        )

    def load_history(self, instance_id: str) -> list[Event]:
        return copy.deepcopy(self.histories.get(instance_id, []))

    def append_history(self, instance_id: str, events: Sequence[Event]) -> None:
        self.histories.setdefault(instance_id, []).extend(copy.deepcopy(list(events)))

    def clear_history(self, instance_id: str) -> None:
        self.histories.pop(instance_id, None)

    def enqueue_message(
        self, instance_id: str, execution_id: str | None, event: Event, visible_at: datetime
    ) -> None:
        message = Message(
            next(self._ids), instance_id, execution_id, copy.deepcopy(event), visible_at
        )
        self.messages.append(message)

    def visible_messages(self, instance_id: str, now: datetime) -> list[Message]:
        visible = [m for m in self.messages if m.instance_id == instance_id and m.visible_at <= now]
        return sorted(visible, key=lambda m: (m.visible_at, m.message_id))

    def delete_messages(self, message_ids: Sequence[int]) -> None:
        doomed = set(message_ids)
        self.messages = [m for m in self.messages if m.message_id not in doomed]

    def delete_queued_work(self, instance_id: str) -> None:
        self.messages = [m for m in self.messages if m.instance_id != instance_id]
        self.activities = [a for a in self.activities if a.instance_id != instance_id]

    def enqueue_activity(
        self, instance_id: str, execution_id: str, task_id: int, name: str, parameters_raw: str
    ) -> None:
        work = ActivityWork(
            next(self._ids), instance_id, execution_id, task_id, name, parameters_raw
        )
        self.activities.append(work)

    def delete_activity(self, work_id: int) -> bool:
        before = len(self.activities)
        self.activities = [a for a in self.activities if a.work_id != work_id]
        return len(self.activities) < before

    # ---- driver queries

    def ready_instances(self, now: datetime) -> list[str]:
        ordered = sorted(
            (m for m in self.messages if m.visible_at <= now), key=lambda m: m.message_id
        )
        return list(dict.fromkeys(m.instance_id for m in ordered))

    def next_message_due(self, now: datetime) -> datetime | None:
        future = [m.visible_at for m in self.messages if m.visible_at > now]
        return min(future) if future else None
