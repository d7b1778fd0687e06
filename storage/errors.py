"""The store's own exceptions: what happened to a record, never an HTTP status.

    StorageError
    ├── InvalidKey            an id, owner or reference that cannot name a record of the store
    ├── InvalidQuery          a listing asked for something out of range (a page limit)
    ├── RecordNotFound        no such conversation (or not this owner's), or no such tool output
    ├── AlreadyExists         a conversation with this id exists (under any owner)
    ├── TurnInProgress        another run holds the conversation's turn lock
    ├── RecordTooLarge        a message too large for one transcript line
    ├── StoreContention       concurrent writers kept winning the race; retry later
    ├── EventLogFull          a run's event log reached the append blob's 50,000 blocks
    └── StorageNotConfigured  the storage setting cannot make a client (names it, never its value)

The store knows nothing of who called it: the HTTP edge (`agent.http.kit.storage_problem`) maps
these to responses, activities decide what each means for a run. Messages carry ids only, never
content or secrets, so they are safe to log, to return and to keep in Durable history.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the store raises on purpose."""


class InvalidKey(StorageError):
    pass


class InvalidQuery(StorageError):
    pass


class RecordNotFound(StorageError):
    pass


class AlreadyExists(StorageError):
    pass


class TurnInProgress(StorageError):
    pass


class RecordTooLarge(StorageError):
    pass


class StoreContention(StorageError):
    """Too many concurrent writers kept winning the race; the caller should retry later."""


class EventLogFull(StorageError):
    """A run's event log holds no more appends (no real run gets near 50,000)."""


class StorageNotConfigured(StorageError):
    """The storage setting `name` cannot make a client; `problem` says why (never the value)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name}: {problem}")
        self.name = name
        self.problem = problem
