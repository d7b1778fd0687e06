"""The values the conversation store keeps: frozen, JSON-serialisable, validated on construction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from storage.errors import InvalidKey
from wire import Wire, local, omitted_when_default, unknown_keys

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
# The turn lock's holder while a conversation is being deleted: never a run id (those are plain
# ids), so no turn can begin meanwhile (`agent.turn_lock` answers 409, saying so).
DELETING = "~deleting"
PREVIEW_CHARS = 120  # a conversation's preview: its first message, cut to this many characters
_ROLES = frozenset(get_args(Role))
_ORIGINS = frozenset(get_args(MessageOrigin))


def utc_timestamp() -> str:
    """Now, as the ISO 8601 UTC text every stored record carries."""
    return datetime.now(UTC).isoformat()


_STATUSES = frozenset(get_args(ToolCallStatus))


def message_id(run_id: str, step: int, seq: int) -> str:
    """Message ids derive from run and position, so a step that runs twice writes once."""
    return f"{run_id}.{step}.{seq}"


def validate_conversation_id(conversation_id: object) -> str:
    if not isinstance(conversation_id, str) or not PLAIN_ID.fullmatch(conversation_id):
        raise InvalidKey("conversation id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return conversation_id


@dataclass(frozen=True)
class ConversationRef(Wire):
    """Which conversation of which owner; every store operation is scoped by it."""

    owner: str
    conversation_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.owner, str) or not self.owner:
            raise InvalidKey("owner must be a non-empty string")
        validate_conversation_id(self.conversation_id)


@dataclass(frozen=True)
class ConversationOwner(Wire):
    """Who owns a conversation id (ids are unique across owners)."""

    owner: str


@dataclass(frozen=True)
class ConversationMeta(Wire):
    conversation_id: str
    owner: str
    created_at: str  # ISO 8601, UTC
    turn_count: int
    active_run_id: str | None
    # When a turn last began or ended (ISO 8601, UTC): what retention measures idleness by.
    # None in metas written before it existed (the meta blob's Last-Modified stands in).
    last_active_at: str | None = None
    etag: str | None = local()  # the meta blob's ETag when read; never stored in the blob
    unknown: Mapping[str, Any] = unknown_keys()  # kept when a turn rewrites the meta
    preview: str | None = omitted_when_default(None)  # the first message, bounded (PREVIEW_CHARS)

    def with_etag(self, etag: str | None) -> ConversationMeta:
        return replace(self, etag=etag)

    @property
    def active_at(self) -> str:
        """When the conversation was last active (its creation, in a meta without the field)."""
        return self.last_active_at or self.created_at


@dataclass(frozen=True)
class StoredMessage(Wire):
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
    # A model reply: our estimate of the prompt it answered, beside `usage.prompt_tokens` (the
    # model's exact count), so the next step can correct its estimates (agent.context_window).
    prompt_estimate: int | None = omitted_when_default(None)
    # A reasoning model's reasoning items (the Responses API's, with their encrypted content),
    # sent back with this message on the next step; chat completions requests leave them out.
    reasoning: list[dict[str, Any]] | None = omitted_when_default(None)
    unknown: Mapping[str, Any] = unknown_keys()  # kept when a record's result is appended

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
class ToolTaskRecord(Wire):
    """A tool call its MCP server runs as a task: created once (create-only) when the server
    answers with the task, so a retried activity or a restarted host polls this task and never
    sends the call again; and `POST /api/runs/{id}/cancel` knows which tasks to cancel."""

    run_id: str
    step: int
    call_id: str
    server: str
    task_id: str
    created_at: str  # when we learnt of it (ISO 8601 UTC): the TTL counts from here
    ttl_ms: int | None = None  # the server keeps the task this long (None: no limit)
    poll_interval_ms: int | None = None  # the server's suggested polling interval

    def expired(self, now: datetime) -> bool:
        if self.ttl_ms is None:
            return False
        return (now - datetime.fromisoformat(self.created_at)).total_seconds() * 1000 > self.ttl_ms


@dataclass(frozen=True)
class ToolCallRecord(Wire):
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
    # The result message, kept with the record so a re-run after a crash between "completed"
    # and the transcript append can still append it, without calling the tool again.
    result: StoredMessage | None = None
    # Sent again after being cut off, because a person approved: a second cut-off is not
    # resent on that approval.
    resent: bool = False
    # Written over an earlier attempt's record of the call before this attempt's reply was
    # stored, which that attempt's reply may beat: the call runs as the stored reply has it
    # (`ConversationStore.confirm_tool_call`), never as an unconfirmed record says.
    unconfirmed: bool = omitted_when_default(False)
    unknown: Mapping[str, Any] = unknown_keys()  # kept when the call is marked or completed

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"unknown tool call status {self.status!r}")
        for name in ("run_id", "call_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"a tool call record needs a non-empty {name}")

    def result_message(
        self,
        turn: int,
        text: str,
        *,
        is_error: bool,
        truncated: bool = False,
        output_ref: str | None = None,
    ) -> StoredMessage:
        """The tool-role message that answers this call in the transcript."""
        return StoredMessage(
            id=message_id(self.run_id, self.step, self.seq),
            run_id=self.run_id,
            turn=turn,
            step=self.step,
            seq=self.seq,
            role="tool",
            content=text,
            tool_calls=None,
            tool_call_id=self.call_id,
            name=self.tool_name,
            created_at=utc_timestamp(),
            usage=None,
            output_ref=output_ref,
            truncated=truncated,
            is_error=is_error,
            finish_reason=None,
        )

    def completed(self, result: StoredMessage) -> ToolCallRecord:
        """This call with its outcome: from then on the tool is never called again."""
        return replace(
            self,
            status="completed",
            result_message_id=result.id,
            is_error=result.is_error,
            result=result,
        )
