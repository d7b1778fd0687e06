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


class SettingsError(Exception):
    """A missing or malformed Scheduler setting, named (never its value); fixed by the operator.

    Not a SchedulerError: no client request can cause it, and the Scheduler does not start."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name}: {problem}")
        self.name = name
        self.problem = problem
