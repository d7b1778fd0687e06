"""The small typed values that travel through Durable history.

Orchestration inputs/outputs and activity inputs are references (ids, counts, step numbers),
never transcripts or tool output, so history stays the same size whatever the messages hold.
Each type converts to and from a plain dict; that dict is what Durable serialises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from agent import backoff
from agent.loop import RunStatus, Usage
from agent.settings import Limits
from storage.models import Record


@dataclass(frozen=True)
class RunRef(Record):
    """Which run of which conversation of which owner."""

    owner: str
    conversation_id: str
    run_id: str
    turn: int


@dataclass(frozen=True)
class ChatTurnInput(Record):
    owner: str
    conversation_id: str
    run_id: str
    turn: int
    max_steps: int
    max_tokens_per_run: int
    approval_timeout_seconds: int = 3600
    # The operator's retry settings (version 2 on; absent from older inputs: the defaults).
    model_attempts: int = backoff.DEFAULT_MODEL_ATTEMPTS
    tool_attempts: int = backoff.DEFAULT_TOOL_ATTEMPTS
    retry_base_seconds: float = backoff.DEFAULT_BASE_SECONDS
    retry_max_delay_seconds: float = backoff.DEFAULT_MAX_DELAY_SECONDS

    @property
    def run(self) -> RunRef:
        return RunRef(self.owner, self.conversation_id, self.run_id, self.turn)

    @property
    def model_retry(self) -> backoff.Backoff:
        return self._retry(self.model_attempts)

    @property
    def tool_retry(self) -> backoff.Backoff:
        return self._retry(self.tool_attempts)

    def _retry(self, attempts: int) -> backoff.Backoff:
        return backoff.Backoff(attempts, self.retry_base_seconds, self.retry_max_delay_seconds)

    @classmethod
    def starting(cls, run: RunRef, limits: Limits, conversation_tokens: int) -> ChatTurnInput:
        """A new turn of `run` under the app's limits: a run may use at most its own token
        budget and what is left of the conversation's."""
        left = limits.max_tokens_per_conversation - conversation_tokens
        return cls(
            owner=run.owner,
            conversation_id=run.conversation_id,
            run_id=run.run_id,
            turn=run.turn,
            max_steps=limits.max_steps,
            max_tokens_per_run=max(0, min(limits.max_tokens_per_run, left)),
            approval_timeout_seconds=limits.approval_timeout_seconds,
            model_attempts=limits.model_retry.attempts,
            tool_attempts=limits.tool_retry.attempts,
            retry_base_seconds=limits.model_retry.base_seconds,
            retry_max_delay_seconds=limits.model_retry.max_delay_seconds,
        )


@dataclass(frozen=True)
class FailedToolCall(Record):
    call_id: str
    reason: str


@dataclass(frozen=True)
class ModelStepInput:
    run: RunRef
    step: int
    # Tool calls of the previous step whose activity failed for good: the model step records
    # them as error results so the model sees them (a failing tool never crashes the run).
    failed_tool_calls: tuple[FailedToolCall, ...] = ()
    # Tokens the run has left (version 2 on): the step caps its completion at this, so one
    # step cannot spend far past the budget. None (version 1 runs): no cap.
    max_output_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run": self.run.to_dict(),
            "step": self.step,
            "failed_tool_calls": [f.to_dict() for f in self.failed_tool_calls],
        }
        if self.max_output_tokens is not None:  # absent for version 1: same input as before
            data["max_output_tokens"] = self.max_output_tokens
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelStepInput:
        cap = data.get("max_output_tokens")
        return cls(
            run=RunRef.from_dict(data["run"]),
            step=int(data["step"]),
            failed_tool_calls=tuple(
                FailedToolCall.from_dict(f) for f in data.get("failed_tool_calls") or ()
            ),
            max_output_tokens=None if cap is None else int(cap),
        )


@dataclass(frozen=True)
class ToolCallInput:
    run: RunRef
    step: int
    call_id: str
    # Set when the call needed approval and did not get it: the tool is not called, and the
    # model is told why.
    rejection: str | None = None
    # Set when the call needed approval and got it. A tool that requires approval runs only
    # with this set, whatever the model step thought it needed.
    approved: bool = False
    # Set by orchestrators that can wait (version 2): instead of storing a result, the activity
    # may defer the call, telling why in its summary (`interrupted`, `retry_after`).
    may_defer: bool = False
    # Set when a person approved calling again a call that was cut off (outcome unknown).
    retry_interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run": self.run.to_dict(),
            "step": self.step,
            "call_id": self.call_id,
        }
        if self.rejection is not None:
            data["rejection"] = self.rejection
        # Flags only when set: version-1 instances keep exactly the inputs they recorded.
        for flag in ("approved", "may_defer", "retry_interrupted"):
            if getattr(self, flag):
                data[flag] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCallInput:
        return cls(
            RunRef.from_dict(data["run"]),
            int(data["step"]),
            str(data["call_id"]),
            data.get("rejection"),
            bool(data.get("approved", False)),
            bool(data.get("may_defer", False)),
            bool(data.get("retry_interrupted", False)),
        )


@dataclass(frozen=True)
class ToolCallSummary(Record):
    call_id: str
    is_error: bool
    truncated: bool = False
    # Deferred (no result stored yet; only with `may_defer`): the call was cut off by a crash
    # and may not be repeated without a person's approval...
    interrupted: bool = False
    # ... or its server's circuit is open: try again after this many seconds.
    retry_after: float | None = None

    @property
    def deferred(self) -> bool:
        return self.interrupted or self.retry_after is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "call_id": self.call_id,
            "is_error": self.is_error,
            "truncated": self.truncated,
        }
        if self.interrupted:
            data["interrupted"] = True
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data


@dataclass(frozen=True)
class FinishTurnInput:
    run: RunRef
    status: RunStatus

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run.to_dict(), "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinishTurnInput:
        return cls(RunRef.from_dict(data["run"]), data["status"])


@dataclass(frozen=True)
class ChatTurnOutput:
    status: RunStatus
    conversation_id: str
    steps: int
    usage: Usage = field(default_factory=Usage)
    answer_message_id: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatTurnOutput:
        return cls(
            status=data["status"],
            conversation_id=data["conversation_id"],
            steps=int(data.get("steps") or 0),
            usage=Usage.from_dict(data.get("usage")),
            answer_message_id=data.get("answer_message_id"),
            error=data.get("error"),
        )


def message_id(run_id: str, step: int, seq: int) -> str:
    """Message ids derive from run and position, so an activity that runs twice writes once."""
    return f"{run_id}.{step}.{seq}"


@dataclass(frozen=True)
class BatchInput:
    """A `scheduled_batch` orchestration: which items of a stored batch to run, and when."""

    batch_id: str
    indices: tuple[int, ...]
    max_concurrency: int
    not_before: str | None = None  # ISO 8601 UTC; the durable timer path of /api/schedules

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "indices": list(self.indices),
            "max_concurrency": self.max_concurrency,
            "not_before": self.not_before,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchInput:
        return cls(
            batch_id=data["batch_id"],
            indices=tuple(int(i) for i in data["indices"]),
            max_concurrency=max(1, int(data["max_concurrency"])),
            not_before=data.get("not_before"),
        )


@dataclass(frozen=True)
class BatchItemRef(Record):
    batch_id: str
    index: int


@dataclass(frozen=True)
class BatchItemOutcome(Record):
    """How an item that never got a run of its own ended."""

    batch_id: str
    index: int
    status: str
    error: str


@dataclass(frozen=True)
class LaneInput:
    """One lane of a `scheduled_batch`: it claims items from the batch until none is left.
    Each item runs in its own execution (continue-as-new), which carries the claim number
    and the counts by outcome so far."""

    batch: BatchInput
    lane: int
    claims: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch.to_dict(),
            "lane": self.lane,
            "claims": self.claims,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaneInput:
        counts = {str(k): int(v) for k, v in (data.get("counts") or {}).items()}
        return cls(
            BatchInput.from_dict(data["batch"]),
            int(data["lane"]),
            int(data.get("claims", 0)),
            counts,
        )

    def claim(self) -> ClaimInput:
        return ClaimInput(self.batch.batch_id, self.batch.indices, f"{self.lane}.{self.claims}")

    def after(self, status: str) -> LaneInput:
        """The next execution's input, once an item ended with `status`."""
        counts = dict(self.counts)
        counts[status] = counts.get(status, 0) + 1
        return replace(self, claims=self.claims + 1, counts=counts)


@dataclass(frozen=True)
class ClaimInput:
    """Take the next unclaimed item; `claim_key` makes a re-run return the same item."""

    batch_id: str
    indices: tuple[int, ...]
    claim_key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "indices": list(self.indices),
            "claim_key": self.claim_key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClaimInput:
        return cls(data["batch_id"], tuple(int(i) for i in data["indices"]), data["claim_key"])
