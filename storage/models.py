"""The values the conversation store keeps: frozen, JSON-serialisable, validated on construction."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, Self, get_args

from storage.errors import InvalidKey

Role = Literal["user", "assistant", "tool", "system"]
# Where a user-role message came from when the caller did not type it just now (None: typed):
# "scheduled" by the conversation's owner (POST /api/schedules), or "scheduled_by_assistant"
# (the model's schedule_conversation, or any Scheduler delivery the app cannot trace to the owner).
MessageOrigin = Literal["scheduled", "scheduled_by_assistant"]
# pending: recorded, not sent; started: about to be sent to its server (so a record still
# "started" after a crash means the outcome is unknown); completed: the result is stored.
ToolCallStatus = Literal["pending", "started", "completed"]

# Conversation, run and tool-call ids: 1-64 characters that are safe in blob names.
PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ROLES = frozenset(get_args(Role))
_ORIGINS = frozenset(get_args(MessageOrigin))


def utc_timestamp() -> str:
    """Now, as the ISO 8601 UTC text every stored record carries."""
    return datetime.now(UTC).isoformat()


_STATUSES = frozenset(get_args(ToolCallStatus))


class Record:
    """to_dict/from_dict for flat frozen dataclasses (unknown keys are ignored on read); the
    stored records here and the Durable contracts in `agent.contracts` share it."""

    def to_dict(self) -> dict[str, Any]:
        if not is_dataclass(self):  # every Record is one; this also tells the type checker
            raise TypeError(f"{type(self).__name__} is not a dataclass")
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = _field_names(cls)
        if data.keys() == names:  # the common case: no filtering needed
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in names})


@cache
def _field_names(cls: type) -> frozenset[str]:
    # Cached: transcripts parse thousands of lines, and dataclasses.fields() is slow.
    return frozenset(f.name for f in fields(cls))


def validate_conversation_id(conversation_id: object) -> str:
    if not isinstance(conversation_id, str) or not PLAIN_ID.fullmatch(conversation_id):
        raise InvalidKey("conversation id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return conversation_id


@dataclass(frozen=True)
class ConversationRef(Record):
    """Which conversation of which owner; every store operation is scoped by it."""

    owner: str
    conversation_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.owner, str) or not self.owner:
            raise InvalidKey("owner must be a non-empty string")
        validate_conversation_id(self.conversation_id)


@dataclass(frozen=True)
class ConversationMeta(Record):
    conversation_id: str
    owner: str
    created_at: str  # ISO 8601, UTC
    turn_count: int
    active_run_id: str | None
    etag: str | None = None  # the meta blob's ETag when read; never stored in the blob

    def stored_dict(self) -> dict[str, Any]:
        data = self.to_dict()
        del data["etag"]
        return data

    def with_etag(self, etag: str | None) -> ConversationMeta:
        return replace(self, etag=etag)


@dataclass(frozen=True)
class StoredMessage(Record):
    """One transcript entry; sorted by (turn, step, seq). Ids are f"{run_id}.{step}.{seq}"."""

    id: str
    run_id: str | None
    turn: int
    step: int
    seq: int
    role: Role
    content: str | None
    tool_calls: list[dict[str, Any]] | None  # OpenAI: {id, type: "function", function: {...}}
    tool_call_id: str | None
    name: str | None
    created_at: str
    usage: dict[str, int] | None  # {prompt_tokens, completion_tokens, total_tokens}
    output_ref: str | None  # blob name of the full tool output when `content` was truncated
    truncated: bool
    is_error: bool
    finish_reason: str | None
    origin: MessageOrigin | None = None  # absent in lines written before provenance existed

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("a stored message needs a non-empty string id")
        if self.role not in _ROLES:
            raise ValueError(f"unknown message role {self.role!r}")
        if self.origin is not None and self.origin not in _ORIGINS:
            raise ValueError(f"unknown message origin {self.origin!r}")
        if type(self.turn) is not int or type(self.step) is not int or type(self.seq) is not int:
            raise ValueError("message turn, step and seq must be integers")

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.turn, self.step, self.seq)


@dataclass(frozen=True)
class ToolCallRecord(Record):
    """A tool call the model asked for; stored before it runs so it never fires twice."""

    run_id: str
    call_id: str
    step: int
    seq: int
    tool_name: str
    arguments: str  # the model's JSON arguments, verbatim
    status: ToolCallStatus
    result_message_id: str | None
    is_error: bool
    # The result message (StoredMessage.to_dict()), kept with the record so a re-run after a
    # crash between "completed" and the transcript append can still append it, without
    # calling the tool again.
    result: dict[str, Any] | None = None
    # Sent again after being cut off, because a person approved: a second cut-off is not
    # resent on that approval.
    resent: bool = False

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"unknown tool call status {self.status!r}")
        for name in ("run_id", "call_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"a tool call record needs a non-empty {name}")
