"""The small typed values that travel through Durable history.

Orchestration inputs/outputs and activity inputs are references (ids, counts, step numbers),
never transcripts or tool output, so history stays the same size whatever the messages hold.
Each type converts to and from a plain dict through `wire` (the converter stored records use
too); that dict is what Durable serialises. Fields added after version 1 are written only when
set, so the inputs old instances recorded stay byte for byte what the current code writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent import backoff
from agent.loop import LoopState, RunStatus, Usage
from agent.settings import Limits
from storage.models import ConversationRef
from wire import Wire, omitted_when_default, unknown_keys


@dataclass(frozen=True)
class RunRef(Wire):
    """Which run of which conversation of which owner."""

    owner: str
    conversation_id: str
    run_id: str
    turn: int

    @property
    def conversation(self) -> ConversationRef:
        """The run's conversation (a property: not part of the wire form)."""
        return ConversationRef(self.owner, self.conversation_id)


@dataclass(frozen=True)
class ChatTurnInput(Wire):
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
    # Version 4: where the turn stands when an execution continued as new (None: step 1).
    progress: TurnProgress | None = omitted_when_default(None)
    # A batch lane reads a turn's input and passes it on: keys a newer writer added go too.
    unknown: Mapping[str, Any] = unknown_keys()

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

    def continued(self, state: LoopState, failed: tuple[FailedToolCall, ...]) -> ChatTurnInput:
        """The next execution's input (version 4's continue-as-new): this one, at `state`."""
        progress = TurnProgress(state.step, state.usage, state.throttle_waits, failed)
        return replace(self, progress=progress)

    def loop_state(self) -> tuple[LoopState, tuple[FailedToolCall, ...]]:
        """The loop's state this execution starts from, and the previous step's failed calls."""
        if self.progress is None:
            return LoopState(), ()
        carried = self.progress
        return LoopState(carried.step, carried.usage, carried.throttle_waits), carried.failed

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
class FailedToolCall(Wire):
    call_id: str
    reason: str


@dataclass(frozen=True)
class TurnProgress(Wire):
    """Where a turn stands between two executions (version 4 continues a turn as new every few
    steps, so its history stays a few steps long): the loop's state and the previous step's
    failed tool calls. References and counts only: the transcript holds the rest."""

    step: int  # the model step the next execution runs first
    usage: Usage = field(default_factory=Usage)
    throttle_waits: int = 0
    failed: tuple[FailedToolCall, ...] = ()


@dataclass(frozen=True)
class ModelStepInput(Wire):
    run: RunRef
    step: int
    # Tool calls of the previous step whose activity failed for good: the model step records
    # them as error results so the model sees them (a failing tool never crashes the run).
    failed_tool_calls: tuple[FailedToolCall, ...] = ()
    # Tokens the run has left (version 2 on): the step caps its completion at this, so one
    # step cannot spend far past the budget. None (version 1 runs): no cap.
    max_output_tokens: int | None = omitted_when_default(None)
    # Set by version-3 orchestrators: with enough outside the context window, the step may
    # return "compact" (summarise first) instead of calling the model.
    compaction: bool = omitted_when_default(False)
    # Set by version-4 orchestrators: a final answer within the budget ends the turn in the
    # same activity (the run's last events, the turn lock released): no `finish_turn` hop.
    ends_turn: bool = omitted_when_default(False)


@dataclass(frozen=True)
class CompactInput(Wire):
    """Summarise what lies outside the context window of model step `step` (version 3)."""

    run: RunRef
    step: int


@dataclass(frozen=True)
class CompactionSummary(Wire):
    """What `compact` returns: whether a summary now covers the range, and what it cost."""

    compacted: bool
    usage: Usage = field(default_factory=Usage)
    covered_tokens: int = 0


@dataclass(frozen=True)
class ToolCallInput(Wire):
    run: RunRef
    step: int
    call_id: str
    # Set when the call needed approval and did not get it: the tool is not called, and the
    # model is told why. (This and the flags are written only when set: version-1 instances
    # keep exactly the inputs they recorded.)
    rejection: str | None = omitted_when_default(None)
    # Set when the call needed approval and got it. A tool that requires approval runs only
    # with this set, whatever the model step thought it needed.
    approved: bool = omitted_when_default(False)
    # Set by orchestrators that can wait (version 2): instead of storing a result, the activity
    # may defer the call, telling why in its summary (`interrupted`, `retry_after`).
    may_defer: bool = omitted_when_default(False)
    # Set when a person approved calling again a call that was cut off (outcome unknown).
    retry_interrupted: bool = omitted_when_default(False)
    # Set by version-4 orchestrators: a call its server answers with a task (agent.mcp.tasks)
    # may come back pending (`ToolCallSummary.task`); the orchestrator polls it on timers.
    may_await_task: bool = omitted_when_default(False)


@dataclass(frozen=True)
class PendingTask(Wire):
    """A tool call its MCP server runs as a task, still running: poll again after
    `poll_after_seconds` (the server's pollInterval, bounded); give up `timeout_seconds` after
    it started (MCP_TASK_TIMEOUT_SECONDS)."""

    call_id: str
    task_id: str
    server: str
    poll_after_seconds: float
    timeout_seconds: int
    status: str = "working"  # the server's free text (statusMessage) stays out of history


@dataclass(frozen=True)
class ToolCallSummary(Wire):
    call_id: str
    is_error: bool
    truncated: bool = False
    # Deferred (no result stored yet; only with `may_defer`): the call was cut off by a crash
    # and may not be repeated without a person's approval...
    interrupted: bool = omitted_when_default(False)
    # ... or its server's circuit is open: try again after this many seconds.
    retry_after: float | None = omitted_when_default(None)
    # Set (only with `may_await_task`) when the server runs the call as a task: no result yet.
    task: PendingTask | None = omitted_when_default(None)

    @property
    def deferred(self) -> bool:
        return self.interrupted or self.retry_after is not None


@dataclass(frozen=True)
class PollTaskInput(Wire):
    """Ask the server about a tool call's task once (version 4); with `give_up` (our timeout
    passed), cancel it instead and tell the model it timed out. `poll` numbers the polls."""

    run: RunRef
    step: int
    call_id: str
    poll: int
    give_up: bool = omitted_when_default(False)


@dataclass(frozen=True)
class AskedInput(Wire):
    """A task waits for input (status `input_required`): the questions its input requests
    became (storage.questions), and until when a person may answer (then: declined)."""

    question_ids: tuple[str, ...]
    deadline: str  # ISO 8601, UTC


@dataclass(frozen=True)
class TaskPoll(Wire):
    """What `poll_tool_task` returns: the task ended (its result is stored, `outcome` names how)
    or is still `pending` (poll again after its `poll_after_seconds`), or, with `asked`, pending
    until its questions are answered and the answers sent (`answer_tool_task`)."""

    call_id: str
    outcome: str | None = omitted_when_default(None)  # completed, task_failed, ... when ended
    pending: PendingTask | None = omitted_when_default(None)
    asked: AskedInput | None = omitted_when_default(None)


@dataclass(frozen=True)
class AnswerTaskInput(Wire):
    """Send a task the answers to its questions (`tasks/update`); those unanswered by now are
    declined (the orchestrator calls this once all are answered, or at the deadline)."""

    run: RunRef
    step: int
    call_id: str
    question_ids: tuple[str, ...]


@dataclass(frozen=True)
class TaskAnswered(Wire):
    """What `answer_tool_task` returns: whether this attempt (or an earlier one) sent them."""

    call_id: str
    sent: bool


@dataclass(frozen=True)
class FinishTurnInput(Wire):
    run: RunRef
    status: RunStatus


@dataclass(frozen=True)
class ChatTurnOutput(Wire):
    status: RunStatus
    conversation_id: str
    steps: int
    usage: Usage = field(default_factory=Usage)
    answer_message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class BatchInput(Wire):
    """A `scheduled_batch` orchestration: which items of a stored batch to run, and when."""

    batch_id: str
    indices: tuple[int, ...]
    max_concurrency: int
    not_before: str | None = None  # ISO 8601 UTC; the durable timer path of /api/schedules
    unknown: Mapping[str, Any] = unknown_keys()  # passed on to every lane


@dataclass(frozen=True)
class BatchItemRef(Wire):
    batch_id: str
    index: int


@dataclass(frozen=True)
class BatchItemOutcome(Wire):
    """How an item that never got a run of its own ended."""

    batch_id: str
    index: int
    status: str
    error: str


@dataclass(frozen=True)
class ClaimedItem(Wire):
    """What `claim_batch_item` returns: the claimed item, None when no item is left."""

    index: int | None


@dataclass(frozen=True)
class TakenItem(Wire):
    """What `take_batch_item` returns: no index when no item is left; else the item's turn to
    run, or (no turn) how the item ended without one."""

    index: int | None
    turn: ChatTurnInput | None = omitted_when_default(None)
    status: str | None = omitted_when_default(None)
    error: str | None = omitted_when_default(None)


@dataclass(frozen=True)
class LaneInput(Wire):
    """One lane of a `scheduled_batch`: it claims items from the batch until none is left.
    Each item runs in its own execution (continue-as-new), which carries the claim number
    and the counts by outcome so far."""

    batch: BatchInput
    lane: int
    claims: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)
    unknown: Mapping[str, Any] = unknown_keys()  # each execution passes its input on

    def claim(self) -> ClaimInput:
        return ClaimInput(self.batch.batch_id, self.batch.indices, f"{self.lane}.{self.claims}")

    def after(self, status: str) -> LaneInput:
        """The next execution's input, once an item ended with `status`."""
        counts = dict(self.counts)
        counts[status] = counts.get(status, 0) + 1
        return replace(self, claims=self.claims + 1, counts=counts)


@dataclass(frozen=True)
class ClaimInput(Wire):
    """Take the next unclaimed item; `claim_key` makes a re-run return the same item."""

    batch_id: str
    indices: tuple[int, ...]
    claim_key: str
