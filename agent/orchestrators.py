"""Durable orchestrators. They only decide: no I/O, clocks, randomness or env reads.

`chat_turn` runs one user turn: model step → tools (in parallel) → model step … until the pure
`agent.loop.decide` says finish. Every side effect is an activity (`agent.activities`), and only
references travel through history. A tool call its MCP server runs as a task (version 4) is
awaited with durable timers and short polling activities (`await_tool_tasks`), never by holding
an activity open.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Generator, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from agent.backoff import (
    BUSY_ATTEMPTS,
    BUSY_BASE_SECONDS,
    STORE_ATTEMPTS,
    Backoff,
    retryable,
    task_key,
)
from agent.contracts import (
    AnswerTaskInput,
    AskedInput,
    BatchInput,
    BatchItemOutcome,
    BatchItemRef,
    ChatTurnInput,
    ChatTurnOutput,
    ClaimedItem,
    CompactInput,
    CompactionSummary,
    FailedToolCall,
    FinishTurnInput,
    LaneInput,
    ModelStepInput,
    PendingTask,
    PollTaskInput,
    TakenItem,
    TaskPoll,
    ToolCallInput,
    ToolCallSummary,
)
from agent.loop import (
    APPROVAL_EVENT,
    APPROVAL_QUESTION,
    RESEND_QUESTION,
    Compact,
    Finish,
    LoopLimits,
    LoopState,
    StepSummary,
    Usage,
    WaitAndRetry,
    after_step,
    after_throttle,
    before_step,
    circuit_wait,
    decide,
    input_event,
    interrupted_rejections,
    next_step,
    question_id,
    record_decision,
    rejections,
    tokens_left,
)
from agent.versions import runs_at_least

# Activity names (function names in function_app.py).
MODEL_STEP = "model_step"
TOOL_CALL = "tool_call"
POLL_TOOL_TASK = "poll_tool_task"
ANSWER_TOOL_TASK = "answer_tool_task"
FINISH_TURN = "finish_turn"
COMPACT = "compact"
TAKE_BATCH_ITEM = "take_batch_item"
CLAIM_BATCH_ITEM = "claim_batch_item"
RECORD_BATCH_OUTCOME = "record_batch_outcome"
BATCH_LANE = "batch_lane"
CHAT_TURN = "chat_turn"

# The one retry layer: transient model/tool/storage failures raised by activities.
# (429s with retry-after are not raised: the model step returns them and we wait a timer.)
# Version 1 instances: Durable's own retries, a fixed interval (RetryOptions has no backoff
# coefficient). Version 2 on: `call_activity`, exponential backoff with jitter on durable
# timers (agent.backoff); model and tool attempts come from the settings, through the input.
MODEL_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=4)
TOOL_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1_000, max_number_of_attempts=3)
STORE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1_000, max_number_of_attempts=5)
# A scheduled item whose conversation is busy with another turn waits for it, within reason.
BATCH_ITEM_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=8
)
STORE_BACKOFF = Backoff(STORE_ATTEMPTS)
BUSY_BACKOFF = Backoff(BUSY_ATTEMPTS, base_seconds=BUSY_BASE_SECONDS)
Retry = tuple[df.RetryOptions, Backoff]  # how version 1 retries a call, and how version 2 does
STORE: Retry = (STORE_RETRY, STORE_BACKOFF)  # the orchestrators' own bookkeeping writes
# Version 4: a turn continues as new after this many model steps, with its state in the input
# (references and counts), so an episode replays at most this many steps' history.
STEPS_PER_EXECUTION = 4
MAX_TIMER = timedelta(days=6)  # Python Durable timers are limited to 6 days: longer waits loop

Orchestration = Generator[Any, Any, dict[str, Any]]


def _input_object(context: df.DurableOrchestrationContext) -> dict[str, Any]:
    """The orchestration's input: every starter of these orchestrations passes a JSON object."""
    value = context.get_input()
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object as input, got {type(value).__name__}")
    return value


@runtime_checkable
class _Cancellable(Protocol):
    def cancel(self) -> None: ...


def _cancel(timer: TaskBase) -> None:
    """Cancel a timer that lost a race. `create_timer` is typed as returning a TaskBase; it
    returns a TimerTask, or a LongTimerTask for long waits on the newer replay schema."""
    if not isinstance(timer, _Cancellable):
        raise TypeError(f"create_timer returned a {type(timer).__name__}, not a timer")
    timer.cancel()


def chat_turn(context: df.DurableOrchestrationContext) -> Orchestration:
    turn = ChatTurnInput.from_dict(_input_object(context))
    limits = LoopLimits(turn.max_steps, turn.max_tokens_per_run)
    state, failed = turn.loop_state()
    # Version 2: the budget is checked before each step, and a tool call may wait (an open
    # circuit, a person's say on a cut-off call).
    current = runs_at_least(context, 2)
    # Version 3: a step may ask for compaction first (once per step: then it runs as it is).
    compacting, compacted_at = runs_at_least(context, 3), 0
    # Version 4: a tool call its MCP server runs as a task is awaited on durable timers.
    tasks = runs_at_least(context, 4)
    # Version 4: a final answer ends the turn in its model step (no finish hop), and every
    # STEPS_PER_EXECUTION steps the turn continues as new, so no episode replays more.
    flat, first_step = runs_at_least(context, 4), state.step
    while True:
        if flat and state.step - first_step >= STEPS_PER_EXECUTION:
            context.continue_as_new(turn.continued(state, failed).to_dict())
            return {}  # not an output: the next execution carries on
        if current and (spent := before_step(state, limits)) is not None:
            outcome, state = spent, replace(state, step=state.step - 1)  # that step never ran
            break
        context.set_custom_status({"step": state.step, "phase": "model"})
        cap = tokens_left(state, limits) if current else None
        may_compact = compacting and compacted_at != state.step
        step_input = ModelStepInput(
            turn.run, state.step, failed, cap, compaction=may_compact, ends_turn=flat
        )
        task = f"{MODEL_STEP}/{state.step}/{state.throttle_waits}"
        try:
            raw = yield from call_activity(
                context, MODEL_STEP, step_input.to_dict(), (MODEL_RETRY, turn.model_retry), task
            )
        except Exception as exc:  # retries exhausted: the run fails, the turn is still closed
            outcome = Finish("failed", error=f"model step failed: {failure_reason(exc)}")
            break
        summary = StepSummary.from_dict(raw)
        state = after_step(state, summary)
        move = decide(state, summary, limits)
        if isinstance(move, Finish):
            outcome = move
            if summary.turn_ended and move.status == "completed":
                return turn_output(turn, state, move)  # the step ended the turn itself
            break
        if isinstance(move, Compact):
            compacted_at = state.step
            context.set_custom_status({"step": state.step, "phase": "compacting"})
            summarising = yield from compact(context, turn, state.step)
            state = replace(state, usage=state.usage + summarising)
            continue  # the same step again, now with the summary
        if isinstance(move, WaitAndRetry):
            context.set_custom_status({"step": state.step, "phase": "throttled"})
            yield from wait_seconds(context, move.seconds)
            state = after_throttle(state)
            failed = ()
            continue
        rejected: dict[str, str] = {}
        if move.approvals_needed:
            rejected = yield from wait_for_approvals(
                context, turn, state.step, move.approvals_needed
            )
        context.set_custom_status(
            {"step": state.step, "phase": "tools", "tool_calls": len(move.tool_call_ids)}
        )
        calls = [
            ToolCallInput(
                turn.run,
                state.step,
                call_id,
                rejection=rejected.get(call_id),
                approved=call_id in move.approvals_needed and call_id not in rejected,
                may_defer=current,
                may_await_task=tasks,
            )
            for call_id in move.tool_call_ids
        ]
        if current:
            failed = yield from run_tool_calls_settling_deferred(context, turn, state.step, calls)
        else:
            failed, _ = yield from run_tool_calls(context, calls, None)
        state = next_step(state)

    context.set_custom_status({"step": state.step, "phase": "finishing"})
    finish = FinishTurnInput(turn.run, outcome.status).to_dict()
    yield from call_activity(context, FINISH_TURN, finish, STORE, FINISH_TURN)
    return turn_output(turn, state, outcome)


def turn_output(turn: ChatTurnInput, state: LoopState, outcome: Finish) -> dict[str, Any]:
    return ChatTurnOutput(
        status=outcome.status,
        conversation_id=turn.conversation_id,
        steps=state.step,
        usage=state.usage,
        answer_message_id=outcome.answer_message_id,
        error=outcome.error,
    ).to_dict()


def compact(
    context: df.DurableOrchestrationContext, turn: ChatTurnInput, step: int
) -> Generator[Any, Any, Usage]:
    """Version 3: summarise what lies outside the context window of model step `step`; the
    tokens that cost. A compaction that fails for good leaves the step to run without a new
    summary (it still fits the window, the newest messages do): the failure is in the
    activity's history, and the run goes on rather than failing for a summary."""
    job = CompactInput(turn.run, step).to_dict()
    retry = (MODEL_RETRY, turn.model_retry)
    try:
        raw = yield from call_activity(context, COMPACT, job, retry, f"{COMPACT}/{step}")
    except Exception:  # see the docstring: the run goes on without it
        return Usage()
    return CompactionSummary.from_dict(raw).usage


def call_activity(
    context: df.DurableOrchestrationContext, name: str, data: Any, retry: Retry, task: str
) -> Generator[Any, Any, Any]:
    """Run activity `name` until it succeeds, retrying transient failures; what it returned,
    or its last failure raised. `task` names the call within the instance (its jitter key).

    Version 1 keeps Durable's own retries (`call_activity_with_retry`, a fixed interval), as
    its recorded histories expect. Version 2 waits a durable timer between attempts, growing
    exponentially with jitter (agent.backoff), and does not retry what cannot get better.
    """
    legacy, policy = retry
    if not runs_at_least(context, 2):
        return (yield context.call_activity_with_retry(name, legacy, data))
    key = task_key(context.instance_id, task)
    attempt = 1
    while True:
        try:
            return (yield context.call_activity(name, data))
        except Exception as exc:
            if attempt >= policy.attempts or not retryable(str(exc)):
                raise
            yield from wait_seconds(context, policy.delay(attempt, key))
            attempt += 1


def wait_seconds(
    context: df.DurableOrchestrationContext, seconds: float
) -> Generator[Any, Any, None]:
    """A durable timer `seconds` from the orchestration's (replay-safe) now."""
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=seconds))


def wait_for_approvals(
    context: df.DurableOrchestrationContext,
    turn: ChatTurnInput,
    step: int,
    pending: tuple[str, ...],
) -> Generator[Any, Any, dict[str, str]]:
    """Pause until every call in `pending` is approved or rejected (POST .../approvals raises
    the event), or the approval timeout passes; returns why each call that will not run won't.

    Each round waits on a fresh event task *and* a fresh timer for the same deadline: a
    `task_any` that mixes new tasks with already-scheduled ones reaches the host as a wait on
    the new ones only (see `scheduled_batch`).
    """
    decided = yield from wait_for_decisions(context, turn, step, pending)
    return rejections(pending, decided)


def wait_for_decisions(
    context: df.DurableOrchestrationContext,
    turn: ChatTurnInput,
    step: int,
    pending: tuple[str, ...],
    interrupted: bool = False,
) -> Generator[Any, Any, dict[str, bool]]:
    """The approval wait itself: each call's yes/no, for those answered before the deadline.
    `interrupted` marks the calls in the run's status as cut off with their outcome unknown."""
    deadline = context.current_utc_datetime + timedelta(seconds=turn.approval_timeout_seconds)
    question = asked_question(context, step, interrupted)
    decided: dict[str, bool] = {}
    while len(decided) < len(pending) and context.current_utc_datetime < deadline:
        waiting = [c for c in pending if c not in decided]
        status: dict[str, Any] = {
            "step": step,
            "phase": "waiting_for_approval",
            "pending_approvals": waiting,
        }
        if interrupted:
            status["interrupted_calls"] = waiting
        if question is not None:
            status["question_id"] = question
        context.set_custom_status(status)
        event = context.wait_for_external_event(APPROVAL_EVENT)
        timer = context.create_timer(deadline)
        winner = yield context.task_any([event, timer])
        if winner is timer:
            break
        _cancel(timer)
        decided = record_decision(pending, decided, _event_data(winner.result), question)
    return decided


def asked_question(
    context: df.DurableOrchestrationContext, step: int, interrupted: bool
) -> str | None:
    """Version 2: the id of this question, so an answer meant for another one is not taken
    for it; version 1 takes any answer for a pending call, as it always has."""
    if not runs_at_least(context, 2):
        return None
    return question_id(step, RESEND_QUESTION if interrupted else APPROVAL_QUESTION)


def _event_data(raw: Any) -> Any:
    """Event data arrives as the JSON text of what the client sent."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw


ToolCallsRun = Generator[Any, Any, tuple[tuple[FailedToolCall, ...], list[Any]]]


def run_tool_calls(
    context: df.DurableOrchestrationContext, calls: list[ToolCallInput], policy: Backoff | None
) -> ToolCallsRun:
    """Run one step's tool calls in parallel; return those that failed for good, and what the
    others returned (left unparsed: version-1 histories recorded results it never read).

    Version 1 (`policy` None) lets Durable retry each call (`call_activity_with_retry`).
    Version 2 retries in rounds: every call at once; then, after one backoff timer, the calls
    whose failure may pass, again at once; and so on until none is left or each is out of
    attempts. Why rounds, and not one retrying generator per call: Durable Python cannot run
    generators side by side, and a `task_any` loop over a changing set of calls and timers
    reaches the host as a wait on the newest task only (see `scheduled_batch`); a
    sub-orchestration per call would work but adds an instance and a history per tool call.
    A round waits for all its calls, which costs the retried calls the time of the slowest
    call in the round; the step waits for all of them anyway. The calls of a round have
    failed equally often, so they share the attempt number; the round waits the longest of
    their own delays.
    """
    if policy is None:
        tasks = [
            context.call_activity_with_retry(TOOL_CALL, TOOL_RETRY, c.to_dict()) for c in calls
        ]
        outcomes = yield from settle_all(context, tasks)
        failed = [
            FailedToolCall(call.call_id, failure_reason(out))
            for call, out in zip(calls, outcomes, strict=True)
            if isinstance(out, Exception)
        ]
        return tuple(failed), [out for out in outcomes if not isinstance(out, Exception)]
    return (yield from run_tool_calls_in_rounds(context, calls, policy))


def run_tool_calls_in_rounds(
    context: df.DurableOrchestrationContext, calls: list[ToolCallInput], policy: Backoff
) -> ToolCallsRun:
    """Version 2's retries of a step's tool calls (see `run_tool_calls`)."""
    failed: dict[str, FailedToolCall] = {}
    done: list[Any] = []
    pending, attempt = list(calls), 1
    while pending:
        tasks = [context.call_activity(TOOL_CALL, call.to_dict()) for call in pending]
        outcomes = yield from settle_all(context, tasks)
        again = []
        for call, out in zip(pending, outcomes, strict=True):
            if not isinstance(out, Exception):
                done.append(out)
            elif attempt < policy.attempts and retryable(str(out)):
                again.append(call)
            else:
                failed[call.call_id] = FailedToolCall(call.call_id, failure_reason(out))
        if again:
            keys = [task_key(context.instance_id, f"{TOOL_CALL}/{c.call_id}") for c in again]
            yield from wait_seconds(context, max(policy.delay(attempt, key) for key in keys))
        pending, attempt = again, attempt + 1
    in_call_order = tuple(failed[c.call_id] for c in calls if c.call_id in failed)
    return in_call_order, done


def settle_all(
    context: df.DurableOrchestrationContext, tasks: list[Any]
) -> Generator[Any, Any, list[Any]]:
    """Wait for every task; what each returned, or the exception it failed with.

    `task_all` fails as soon as one child fails, so after a failure each task is awaited on its
    own: the others still finish, and each failure is reported by itself.
    """
    try:
        return list((yield context.task_all(tasks)))
    except Exception:
        pass  # find out which ones failed, below
    outcomes: list[Any] = []
    for task in tasks:
        try:
            outcomes.append((yield task))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def run_tool_calls_settling_deferred(
    context: df.DurableOrchestrationContext,
    turn: ChatTurnInput,
    step: int,
    calls: list[ToolCallInput],
) -> Generator[Any, Any, tuple[FailedToolCall, ...]]:
    """Version 2: run the step's calls; then settle, once, those the activity deferred: wait
    out an open circuit (a durable timer) or ask a person about a cut-off call, and run them
    again without leave to defer (so an open circuit now reaches the model)."""
    failed, done = yield from run_tool_calls(context, calls, turn.tool_retry)
    summaries = [ToolCallSummary.from_dict(result) for result in done]
    deferred = [summary for summary in summaries if summary.deferred]
    if deferred:
        again = yield from settle_deferred(context, turn, step, calls, deferred)
        failed_again, done_again = yield from run_tool_calls(context, again, turn.tool_retry)
        failed += failed_again
        summaries += [ToolCallSummary.from_dict(result) for result in done_again]
    running = [summary.task for summary in summaries if summary.task is not None]
    if running:  # only version 4 asks for tasks (`may_await_task`)
        failed += yield from await_tool_tasks(context, turn, step, running)
    return failed


def await_tool_tasks(
    context: df.DurableOrchestrationContext,
    turn: ChatTurnInput,
    step: int,
    running: list[PendingTask],
) -> Generator[Any, Any, tuple[FailedToolCall, ...]]:
    """Version 4: wait for the step's tool calls that their servers run as tasks
    (agent.mcp.tasks), all together: a durable timer until the soonest poll is due, then one
    `poll_tool_task` per task at once, until each has ended (its result stored by the poll) or
    failed for good. Nothing holds an activity or a worker while a task runs.

    Each task's own deadline (MCP_TASK_TIMEOUT_SECONDS, from when this wait began) turns its
    next poll into a cancel, which the model reads as `task_timed_out`. A poll that fails (the
    server unreachable) is simply polled again after the next wait; `tool_attempts` failures in
    a row give up on that call. A task that asks for input (agent.task_input) is answered
    before it is polled again (`answer_task_questions`).
    """
    now = context.current_utc_datetime
    pending = {task.call_id: task for task in running}
    deadlines = {task.call_id: now + timedelta(seconds=task.timeout_seconds) for task in running}
    failures = dict.fromkeys(pending, 0)
    failed: list[FailedToolCall] = []
    poll = 0
    while pending:
        context.set_custom_status(
            {"step": step, "phase": "waiting_for_task", "tasks": task_view(pending.values())}
        )
        yield from wait_seconds(context, min(t.poll_after_seconds for t in pending.values()))
        now = context.current_utc_datetime
        jobs = [
            PollTaskInput(turn.run, step, call_id, poll, give_up=now >= deadlines[call_id])
            for call_id in pending
        ]
        outcomes = yield from settle_all(
            context, [context.call_activity(POLL_TOOL_TASK, job.to_dict()) for job in jobs]
        )
        asking: dict[str, AskedInput] = {}
        for job, out in zip(jobs, outcomes, strict=True):
            if isinstance(out, Exception):
                failures[job.call_id] += 1
                if failures[job.call_id] >= turn.tool_attempts or not retryable(str(out)):
                    failed.append(FailedToolCall(job.call_id, failure_reason(out)))
                    del pending[job.call_id]
                continue
            failures[job.call_id] = 0
            polled = TaskPoll.from_dict(out)
            if polled.pending is None:
                del pending[job.call_id]
            else:
                pending[job.call_id] = polled.pending
                if polled.asked is not None:
                    asking[job.call_id] = polled.asked
        if asking:
            for call_id in (yield from answer_task_questions(context, turn, step, pending, asking)):
                failed.append(FailedToolCall(call_id, "its task's questions could not be answered"))
                del pending[call_id]
        poll += 1
    return tuple(failed)


def answer_task_questions(
    context: df.DurableOrchestrationContext,
    turn: ChatTurnInput,
    step: int,
    pending: dict[str, PendingTask],
    asking: dict[str, AskedInput],
) -> Generator[Any, Any, list[str]]:
    """Version 4: tasks wait for a person (status `input_required`, agent.task_input). Wait,
    holding nothing, until each question is answered (POST /api/runs/{id}/input raises
    its `input_event`) or its deadline passes (a durable timer; no answer counts as declined); then
    send each task its answers (`answer_tool_task`). Returns the calls whose answers could not
    be sent."""
    deadlines = {
        question: _at(context, asked.deadline)
        for asked in asking.values()
        for question in asked.question_ids
    }
    answered: set[str] = set()
    while True:
        now = context.current_utc_datetime
        waiting = [q for q, due in deadlines.items() if q not in answered and now < due]
        if not waiting:
            break
        context.set_custom_status(
            {
                "step": step,
                "phase": "waiting_for_input",
                "tasks": task_view(pending.values()),
                "question_ids": waiting,
            }
        )
        events = [context.wait_for_external_event(input_event(q)) for q in waiting]
        timer = context.create_timer(min(deadlines[q] for q in waiting))
        winner = yield context.task_any([*events, timer])
        if winner is timer:
            continue
        _cancel(timer)
        answered.add(waiting[events.index(winner)])
    unanswerable = []
    for call_id, asked in asking.items():
        job = AnswerTaskInput(turn.run, step, call_id, asked.question_ids)
        try:
            yield from call_activity(
                context, ANSWER_TOOL_TASK, job.to_dict(), STORE, f"{ANSWER_TOOL_TASK}/{call_id}"
            )
        except Exception:  # the call fails (the model reads why); the other tasks go on
            unanswerable.append(call_id)
    return unanswerable


def _at(context: df.DurableOrchestrationContext, iso: str) -> datetime:
    """An ISO 8601 time from an activity, comparable with the context's clock (which may be
    naive UTC)."""
    moment = datetime.fromisoformat(iso)
    if context.current_utc_datetime.tzinfo is None and moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def task_view(tasks: Iterable[PendingTask]) -> list[dict[str, Any]]:
    """The pending tasks as the run's status shows them."""
    return [
        {
            "tool_call_id": task.call_id,
            "task_id": task.task_id,
            "server": task.server,
            "status": task.status,
        }
        for task in tasks
    ]


def settle_deferred(
    context: df.DurableOrchestrationContext,
    turn: ChatTurnInput,
    step: int,
    calls: list[ToolCallInput],
    deferred: list[ToolCallSummary],
) -> Generator[Any, Any, list[ToolCallInput]]:
    """Wait for what the deferred calls need; return them as they run again."""
    waits = [s.retry_after for s in deferred if s.retry_after is not None]
    if waits:
        seconds = circuit_wait(waits)
        context.set_custom_status({"step": step, "phase": "waiting_for_server", "seconds": seconds})
        yield from wait_seconds(context, seconds)
    cut_off = tuple(s.call_id for s in deferred if s.interrupted)
    not_repeated: dict[str, str] = {}
    if cut_off:
        decided = yield from wait_for_decisions(context, turn, step, cut_off, interrupted=True)
        not_repeated = interrupted_rejections(cut_off, decided)
    by_id = {call.call_id: call for call in calls}
    return [
        replace(
            by_id[s.call_id],
            may_defer=False,
            rejection=not_repeated.get(s.call_id),
            retry_interrupted=s.interrupted and s.call_id not in not_repeated,
        )
        for s in deferred
    ]


def failure_reason(exc: BaseException) -> str:
    """First line of an activity failure, bounded: activity errors are written to be safe."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def scheduled_batch(context: df.DurableOrchestrationContext) -> Orchestration:
    """Run a batch's items as `chat_turn`s, at most `max_concurrency` at once, each new item
    starting as soon as any running one finishes (a shared work queue, not fixed chunks).

    Why lanes and not a `task_any` loop: the SDK leaves already-scheduled children out of a
    compound action, so a `task_any([old…, new])` reaches the host as "wait for `new`", and the
    host awaits actions in order: every new item would wait for the previous one to finish.
    Instead `max_concurrency` lanes (sub-orchestrations) each take the next unclaimed item
    from the batch's cursor until none is left. One failing item does not stop the others.
    """
    batch = BatchInput.from_dict(_input_object(context))
    if batch.not_before:
        yield from sleep_until(context, datetime.fromisoformat(batch.not_before))
    lanes = [
        context.call_sub_orchestrator(
            BATCH_LANE, LaneInput(batch, lane).to_dict(), f"{context.instance_id}-lane{lane}"
        )
        for lane in range(min(batch.max_concurrency, len(batch.indices)))
    ]
    context.set_custom_status({"total": len(batch.indices), "lanes": len(lanes)})
    counts: Counter[str] = Counter()
    for lane_counts in (yield context.task_all(lanes)) if lanes else []:
        counts.update(lane_counts)
    context.set_custom_status({"total": len(batch.indices), "lanes": len(lanes), **counts})
    return {"batch_id": batch.batch_id, "total": len(batch.indices), "counts": dict(counts)}


# Version 4: a lane execution runs this many items before it continues as new. Each item in
# the same execution saves the episode that starts the next execution (a queue round trip on
# Azure); the history replayed per episode grows by about nine events per item, so it stays
# bounded (#16: replay that does not grow with the batch).
ITEMS_PER_LANE_EXECUTION = 4


def batch_lane(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, int]]:
    """One lane of a batch: take the next item and run it, then continue as new with the
    counts so far; returns the counts by outcome once no item is left.

    Continuing as new keeps the lane's history a few items long: replaying a history that grew
    with every item made a lane's episodes cost more the further it got. Versions 1-3 continue
    as new after every item; version 4 after ITEMS_PER_LANE_EXECUTION.
    """
    lane = LaneInput.from_dict(_input_object(context))
    items = ITEMS_PER_LANE_EXECUTION if runs_at_least(context, 4) else 1
    for _ in range(items):
        taken = yield from take_batch_item(context, lane)
        if taken.index is None:
            return dict(lane.counts)
        status = yield from run_batch_item(
            context, BatchItemRef(lane.batch.batch_id, taken.index), taken
        )
        lane = lane.after(status)
    context.continue_as_new(lane.to_dict())
    return {}  # not an output: the next execution carries on


def take_batch_item(
    context: df.DurableOrchestrationContext, lane: LaneInput
) -> Generator[Any, Any, TakenItem]:
    """The lane's next item, claimed and made ready for its turn (no index: none is left)."""
    claim = lane.claim().to_dict()
    take = (BATCH_ITEM_RETRY, BUSY_BACKOFF)
    try:
        result = yield from call_activity(context, TAKE_BATCH_ITEM, claim, take, TAKE_BATCH_ITEM)
    except Exception as exc:  # e.g. the conversation stayed busy: that item failed, go on
        # The same claim key claims the same item: learn which one it was.
        claimed = yield from call_activity(
            context, CLAIM_BATCH_ITEM, claim, STORE, CLAIM_BATCH_ITEM
        )
        error = f"could not start: {failure_reason(exc)}"
        return TakenItem(ClaimedItem.from_dict(claimed).index, status="failed", error=error)
    return TakenItem.from_dict(result)


def run_batch_item(
    context: df.DurableOrchestrationContext, item: BatchItemRef, taken: TakenItem
) -> Generator[Any, Any, str]:
    """Run a taken item's `chat_turn`; how it ended. One failing item stops nothing."""
    turn = taken.turn
    if turn is None:  # no run will tell how it ended: record it for the batch view
        status = taken.status or "failed"
        outcome = BatchItemOutcome(item.batch_id, item.index, status, taken.error or "")
        record = outcome.to_dict()
        yield from call_activity(context, RECORD_BATCH_OUTCOME, record, STORE, RECORD_BATCH_OUTCOME)
        return status
    try:
        ended = yield context.call_sub_orchestrator(CHAT_TURN, turn.to_dict(), turn.run_id)
    except Exception:  # the turn crashed: its run shows it; go on
        return "failed"
    return str(ended["status"])


def sleep_until(
    context: df.DurableOrchestrationContext, when: datetime
) -> Generator[Any, Any, None]:
    while context.current_utc_datetime < when:
        step = min(when, context.current_utc_datetime + MAX_TIMER)
        yield context.create_timer(step)
