"""What the Scheduler refuses, in words a model can act on (sent to the client as a tool error)."""

from __future__ import annotations


class SchedulerError(Exception):
    """A request the Scheduler refuses; the message is safe to show (no secrets, no text)."""


class InvalidRequest(SchedulerError):
    """A bad argument: a time in the past or without a timezone, a non-http(s) endpoint, ..."""


class ScheduleNotFound(SchedulerError):
    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no scheduled conversation with id {schedule_id!r}")


class NotCancellable(SchedulerError):
    """The schedule already finished (delivered or failed)."""


class IdempotencyConflict(SchedulerError):
    """The idempotency key was used before for a different request."""
