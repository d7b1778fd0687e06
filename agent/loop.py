"""The tool loop's decision: given what the last model step produced, what happens next.

Pure and deterministic (no I/O, no clock): the `chat_turn` orchestrator calls `decide()` after
every model step, and the unit tests call it directly. Everything it reads and returns is a small
JSON-serialisable value, because it travels through Durable history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wire import Wire, from_wire, omitted_when_default

RunStatus = Literal[
    "completed", "failed", "cancelled", "content_filtered", "budget_exceeded", "context_exceeded"
]
# "context_exceeded": the current turn alone does not fit AGENT_CONTEXT_TOKENS (nothing sent);
# "compact": (version 3) enough lies outside the context window to summarise it first.
StepOutcome = Literal[
    "final", "tool_calls", "content_filtered", "failed", "throttled", "context_exceeded", "compact"
]

MAX_THROTTLE_WAITS = 5  # 429s honoured per run before giving up
MAX_THROTTLE_SECONDS = 300.0  # never sleep longer than this on one retry-after


@dataclass(frozen=True)
class Usage(Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Usage:
        """None (a message without usage) reads as no tokens."""
        return from_wire(cls, data or {})


@dataclass(frozen=True)
class StepSummary(Wire):
    """What the `model_step` activity returns: references and counts, never text."""

    outcome: StepOutcome
    message_id: str | None = None
    tool_call_ids: tuple[str, ...] = ()
    usage: Usage = field(default_factory=Usage)
    retry_after: float | None = None
    error: str | None = None
    # Tool calls (ids, of tool_call_ids) whose tool is in its server's `require_approval`.
    approvals_needed: tuple[str, ...] = ()
    # Version 4: the step's final answer ended the turn itself (`ModelStepInput.ends_turn`).
    turn_ended: bool = omitted_when_default(False)


@dataclass(frozen=True)
class LoopLimits:
    max_steps: int
    max_tokens_per_run: int


@dataclass(frozen=True)
class LoopState:
    """What the orchestrator carries between steps (rebuilt identically on every replay)."""

    step: int = 1  # the model step about to run / just run, from 1
    usage: Usage = field(default_factory=Usage)
    throttle_waits: int = 0


# --- what happens next ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTools:
    tool_call_ids: tuple[str, ...]
    approvals_needed: tuple[str, ...] = ()


@dataclass(frozen=True)
class WaitAndRetry:
    """The endpoint throttled us (429): wait a durable timer, then run the same step again."""

    seconds: float


@dataclass(frozen=True)
class Finish:
    status: RunStatus
    answer_message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Compact:
    """Summarise what lies outside the context window, then run the same step again."""


Next = RunTools | WaitAndRetry | Finish | Compact


def decide(state: LoopState, summary: StepSummary, limits: LoopLimits) -> Next:
    """Choose the next move after model step `state.step` (whose usage is already in `state`)."""
    if summary.outcome == "throttled":
        if state.throttle_waits >= MAX_THROTTLE_WAITS:
            return Finish(
                "failed",
                error=f"the model endpoint kept throttling (429) after {MAX_THROTTLE_WAITS} waits",
            )
        wait = summary.retry_after if summary.retry_after is not None else 10.0
        return WaitAndRetry(min(max(wait, 1.0), MAX_THROTTLE_SECONDS))
    if summary.outcome == "compact":
        return Compact()
    if summary.outcome == "context_exceeded":
        return Finish(
            "context_exceeded",
            error=summary.error or "the current turn does not fit the context window",
        )
    if summary.outcome == "content_filtered":
        return Finish(
            "content_filtered",
            answer_message_id=summary.message_id,
            error="the response was blocked by the content filter",
        )
    if summary.outcome == "failed":
        return Finish("failed", error=summary.error or "the model call failed")
    if state.usage.total_tokens > limits.max_tokens_per_run:
        return Finish(
            "budget_exceeded",
            answer_message_id=summary.message_id if summary.outcome == "final" else None,
            error=(
                f"token budget exceeded: {state.usage.total_tokens} tokens used, "
                f"limit {limits.max_tokens_per_run} per run"
            ),
        )
    if summary.outcome == "final" or not summary.tool_call_ids:
        return Finish("completed", answer_message_id=summary.message_id)
    if state.step >= limits.max_steps:
        return Finish(
            "budget_exceeded",
            error=(
                f"step limit reached: the model still wanted tools after {limits.max_steps} "
                "steps (AGENT_MAX_STEPS)"
            ),
        )
    return RunTools(summary.tool_call_ids, summary.approvals_needed)


def ends_turn(summary: StepSummary, cap: int | None) -> bool:
    """Whether `decide` will finish the run as completed after this step: a final answer whose
    tokens fit what the run had left (`cap`, the step's `tokens_left`). A model step told it may
    (version 4) ends the turn itself when this holds."""
    if summary.outcome != "final" or summary.tool_call_ids:
        return False
    return cap is None or summary.usage.total_tokens <= cap


def before_step(state: LoopState, limits: LoopLimits) -> Finish | None:
    """Stop before model step `state.step` when the run's token budget (already capped at what
    the conversation had left when the turn began) is spent: checking only after a step let a
    tool step with the budget exactly used, or a scheduled turn of a conversation already out
    of budget, call the model once more."""
    if state.usage.total_tokens < limits.max_tokens_per_run:
        return None
    return Finish(
        "budget_exceeded",
        error=(
            f"token budget exhausted before model step {state.step}: "
            f"{state.usage.total_tokens} tokens used, {limits.max_tokens_per_run} were left "
            "for this run (AGENT_MAX_TOKENS_PER_RUN, or what the conversation had left)"
        ),
    )


def tokens_left(state: LoopState, limits: LoopLimits) -> int:
    """What the next model step may spend at most: its completion is capped at this."""
    return max(0, limits.max_tokens_per_run - state.usage.total_tokens)


def after_step(state: LoopState, summary: StepSummary) -> LoopState:
    """Account for a finished model step (before deciding)."""
    return LoopState(state.step, state.usage + summary.usage, state.throttle_waits)


def after_throttle(state: LoopState) -> LoopState:
    return LoopState(state.step, state.usage, state.throttle_waits + 1)


def next_step(state: LoopState) -> LoopState:
    return LoopState(state.step + 1, state.usage, state.throttle_waits)


# --- approvals --------------------------------------------------------------------------------

APPROVAL_EVENT = "approval"
# A person answered a question a tool call's task asks (agent.task_input); data: its question_id.
INPUT_EVENT = "tool_input"


def input_event(question_id: str) -> str:
    """The event that answers one task question. One name per question: the Durable Python
    SDK keeps an event that arrived while nobody waited for its name and hands it to *every*
    later wait for that name, so a shared name would let a late answer poison the next wait."""
    return f"{INPUT_EVENT}-{question_id}"


REJECTED = "the user rejected this tool call; it was not run"
TIMED_OUT = "nobody approved this tool call in time; it was not run"


# Version 2 names each question a run asks (shown in its status); the HTTP edge stamps the name
# on each answer. Durable hands an event that arrives while nothing waits to the next wait for
# that name, so without it a client's repeated answer to one question (approve call X) was
# taken at once as the answer to the next (call X was cut off: send it again?).
APPROVAL_QUESTION = "approval"
RESEND_QUESTION = "resend"


def question_id(step: int, kind: str) -> str:
    """The id of the `kind` question asked at model step `step` (each is asked once a step)."""
    return f"step{step}-{kind}"


def record_decision(
    pending: tuple[str, ...], decided: dict[str, bool], event: Any, question: str | None = None
) -> dict[str, bool]:
    """Apply one approval event ({"tool_call_id", "approved"}); anything else is ignored, and
    so is an answer to another question than `question` (one naming none was raised before
    questions had ids, and is taken)."""
    if not isinstance(event, dict):
        return decided
    if question is not None and event.get("question_id", question) != question:
        return decided
    call_id, approved = event.get("tool_call_id"), event.get("approved")
    if call_id not in pending or call_id in decided or not isinstance(approved, bool):
        return decided
    return {**decided, call_id: approved}


def rejections(pending: tuple[str, ...], decided: dict[str, bool]) -> dict[str, str]:
    """Why each pending call will not run: rejected, or (never decided) timed out."""
    return {
        call_id: (TIMED_OUT if call_id not in decided else REJECTED)
        for call_id in pending
        if not decided.get(call_id, False)
    }


# --- deferred tool calls (orchestration version 2) --------------------------------------------

# A tool call cut off by a crash (its record says started, no result) whose tool may not be
# sent twice: a person decides whether it is called again; without a yes, the model reads this.
OUTCOME_UNKNOWN = (
    "this tool call was cut off by a restart before its result came back: its outcome is "
    "unknown (it may or may not have taken effect), and it was not repeated"
)
DECLINED_RETRY = "a person decided not to call it again"
NO_RETRY_ANSWER = "nobody approved calling it again in time"
MIN_CIRCUIT_WAIT_SECONDS = 1.0
MAX_CIRCUIT_WAIT_SECONDS = 300.0  # a cooldown longer than this is not waited out in the run


def interrupted_rejections(pending: tuple[str, ...], decided: dict[str, bool]) -> dict[str, str]:
    """Why each interrupted call in `pending` will not be called again (all but approved ones):
    a rejection and an unanswered question both leave it not repeated."""
    return {
        call_id: f"{OUTCOME_UNKNOWN} ({DECLINED_RETRY if call_id in decided else NO_RETRY_ANSWER})"
        for call_id in pending
        if not decided.get(call_id, False)
    }


def circuit_wait(retry_after: list[float]) -> float:
    """How long to wait before trying again calls whose servers' circuits are open: until the
    last cooldown ends, within bounds (one wait for all of a step's calls)."""
    return min(max([MIN_CIRCUIT_WAIT_SECONDS, *retry_after]), MAX_CIRCUIT_WAIT_SECONDS)
