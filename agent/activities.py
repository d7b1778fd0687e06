"""Durable activities: every side effect of a chat turn (Blob, model, MCP) happens here.

Activities are at-least-once, so each one is idempotent: messages have ids derived from the run
and step, a model step whose assistant message is already stored returns it without calling the
model again, and a tool call whose record is completed returns without calling the tool again
(the MCP request also carries an idempotency key for servers that deduplicate).

A tool call's record says "started" from just before the call is sent until its result is
stored. Found "started" by a later attempt, the call was cut off (a crash, a timeout) and its
outcome is unknown: it is sent again only if that is safe (a read-only tool, or a server declared
`idempotent_calls`); otherwise a version-2 orchestrator asks a person, and without one the model
is told the outcome is unknown.

A call its MCP server answers with a task (agent.mcp.tasks; version-4 runs) is not waited for
here: `tool_call` stores a create-only task record and returns the task pending, and the
orchestrator polls it through the `poll_tool_task` activity (agent.tool_tasks, which holds a
task's whole life from its record on).

Failure policy (the single retry layer is the orchestrator's, see agent.backoff):
- transient model/tool failures are raised, so the orchestrator retries them with backoff;
- a 429 with retry-after is returned as `throttled`, so the orchestrator waits exactly that long;
- content filter and permanent model errors are returned, and end the run without retrying;
- tool-level errors become an `is_error` tool result the model sees.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent import elicitation, events, model_stream, telemetry, tool_tasks
from agent.compaction import StepContext, exceeded_error, step_window
from agent.context_window import compaction_due, estimate, messages_tokens, request_messages
from agent.contracts import (
    BatchItemOutcome,
    ChatTurnInput,
    ClaimedItem,
    ClaimInput,
    FinishTurnInput,
    ModelStepInput,
    RunRef,
    TakenItem,
    ToolCallInput,
    ToolCallSummary,
)
from agent.errors import (
    Conflict,
    ContentFiltered,
    PermanentModelError,
    ToolTransportError,
    TransientModelError,
)
from agent.loop import OUTCOME_UNKNOWN, LoopState, StepSummary, Usage, ends_turn
from agent.runtime import Runtime
from agent.tool_results import call_ended, question_asker, result_message
from agent.transcript import parse_arguments, user_message
from agent.turn_lock import begin_turn, open_turn
from storage.batches import run_id_of
from storage.conversations import ConversationRef, StoredMessage, ToolCallRecord
from storage.errors import RecordNotFound
from storage.models import PLAIN_ID, message_id, utc_timestamp

if TYPE_CHECKING:
    import azure.durable_functions as df

    from agent.mcp.pool import ToolOutcome
    from agent.mcp.tasks import TaskHandle
    from agent.model import ModelReply

log = logging.getLogger(__name__)


FIRST_STEP = LoopState().step
NOT_APPROVED = "this tool needs approval, which was not asked for; it was not run"
FILTERED_ANSWER = "Sorry, I can't help with that: the response was blocked by the content filter."


# --- model_step --------------------------------------------------------------------------------

Activity = Callable[[dict[str, Any], Runtime], Awaitable[dict[str, Any]]]


def gone_message(conversation_id: str) -> str:
    return f"conversation {conversation_id} no longer exists in storage; the run ended"


def ends_if_conversation_gone(step_activity: Activity) -> Activity:
    """A conversation deleted (or lost by storage) mid-run cannot take another step: say so as
    the step's outcome, so the run ends naming why, instead of retrying a read that cannot
    succeed until the run fails with no reason."""

    @functools.wraps(step_activity)
    async def step(data: dict[str, Any], rt: Runtime) -> dict[str, Any]:
        try:
            return await step_activity(data, rt)
        except RecordNotFound:
            run = ModelStepInput.from_dict(data).run
            log.warning("conversation vanished mid-run", extra={"run_id": run.run_id})
            return StepSummary("failed", error=gone_message(run.conversation_id)).to_dict()

    return step


@ends_if_conversation_gone
async def model_step(data: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    step = ModelStepInput.from_dict(data)
    ref = step.run.conversation
    recorder = events.RunRecorder.for_run(rt.events, step.run)
    failures = {f.call_id: f"the tool call failed: {f.reason}" for f in step.failed_tool_calls}
    if failures:  # a call the run gave up polling may still run as a task on its server
        await tool_tasks.cancel_tasks_of(rt, step.run, failures)
    tools = await rt.mcp.list_tools()
    # The tail read (or this process's copy of it, when the step follows the run's writes here)
    # Step 1: the turn's opening message; later: the previous step's reply.
    follows = message_id(step.run.run_id, step.step - 1, 0)
    context = await step_window(rt, step.run, tools, failures, follows)
    stored = context.stored
    assistant_id = message_id(step.run.run_id, step.step, 0)
    done = next((m for m in stored if m.id == assistant_id), None)
    if done is not None:  # this step already ran (an at-least-once re-run): don't call again
        summary = _summary_of(done, rt.mcp.requires_approval)
        recorded = await recorder.recorded()  # its events may not all be there yet
        # An attempt that ended the turn wrote the run's end once it had released the turn.
        ended = any(e.type == events.TERMINAL_TYPE for e in recorded)
        ends = await _end_turn(rt, step, summary, ended=ended)
        # No log is created: it was made with the turn's message, so one that is not there went
        # with its conversation (deleted once an earlier attempt had released the turn).
        await events.TextDeltas.resuming(recorder, step.step, recorded).finish(
            done.content,
            *_step_end(step, done, rt.mcp.requires_approval),
            *_turn_end(ends, done),
            create=False,
        )
        return _ending(summary, ends).to_dict()
    wanted = rt.settings.context
    if step.compaction and compaction_due(
        context.window, wanted.compaction_tokens, wanted.compaction
    ):
        return StepSummary("compact").to_dict()  # the orchestrator summarises, then asks again
    recorded = await _record_step_start(rt, recorder, step)
    if context.window.exceeded:  # the model would refuse it (400): end the run naming why
        error = exceeded_error(rt, context.budget)
        await recorder.record(events.step_failed(step.step, error))
        return StepSummary("context_exceeded", error=error).to_dict()
    deltas = events.TextDeltas.resuming(recorder, step.step, recorded)
    try:
        reply, prompt_estimate = await _complete(rt, step, context, deltas.add)
    except ContentFiltered:
        message = _assistant(step, content=FILTERED_ANSWER, finish_reason="content_filter")
        await _store_then_end(rt, ref, step, deltas, message, ())
        return StepSummary("content_filtered", message_id=message.id).to_dict()
    except PermanentModelError as exc:
        await deltas.abandon()
        await recorder.record(events.step_failed(step.step, str(exc)))
        return StepSummary("failed", error=str(exc)).to_dict()
    except TransientModelError as exc:
        await deltas.abandon()
        if exc.retry_after is None:
            raise  # Durable retries it
        await recorder.record(_throttled_step(step, exc.retry_after, recorded))
        return StepSummary("throttled", retry_after=exc.retry_after).to_dict()
    except BaseException:
        await deltas.abandon()
        raise
    deltas.stream_ended()
    message, records = _stored_reply(step, reply, stored, prompt_estimate)
    message, ends = await _store_then_end(rt, ref, step, deltas, message, records, may_end=True)
    return _ending(_summary_of(message, rt.mcp.requires_approval), ends).to_dict()


async def _end_turn(
    rt: Runtime, step: ModelStepInput, summary: StepSummary, ended: bool = False
) -> bool:
    """Whether this step ends the turn itself (version 4), releasing it if so: its reply is the
    final answer within the budget, and the run still holds the conversation's turn, which the
    release itself tells (an ETag-conditional write of the meta: no read first when this
    process holds the current meta, as the one that began the turn does). A run cancelled while
    the model answered has given the turn back (or lost it to the next turn): the release
    changes nothing, its end is not this step's to write, and the answer stays a reply of a
    cancelled run. (`ended`: an earlier attempt of this step wrote the run's end, which it did
    once it had released the turn.)"""
    if not (step.ends_turn and ends_turn(summary, step.max_output_tokens)):
        return False
    return await _release_turn(rt, step.run, "completed") or ended


def _turn_end(ends: bool, message: StoredMessage) -> list[events.NewEvent]:
    """The run's last event when this step ended the turn: it goes in the step's end append,
    after the release (which decides it); that append creates no log, so a conversation
    deleted once the turn was free keeps no log of it."""
    return [events.run_finished("completed", message.content)] if ends else []


def _ending(summary: StepSummary, ends: bool) -> StepSummary:
    """The summary, saying whether the step ended the turn (what `finish_turn` did after it)."""
    return replace(summary, turn_ended=True) if ends else summary


async def _store_then_end(
    rt: Runtime,
    ref: ConversationRef,
    step: ModelStepInput,
    deltas: events.TextDeltas,
    message: StoredMessage,
    records: Sequence[ToolCallRecord],
    may_end: bool = False,
) -> tuple[StoredMessage, bool]:
    """Store the reply; if it `may_end` the turn, end it if it does (`_end_turn`); then write
    the rest of its text and the step's end (the run's too, if it ended) in one append. The
    end follows the store: a log saying which tool calls a step asked for must never name
    calls of an attempt whose reply was lost (its retry asks the model again). Returns the
    reply stored (an earlier attempt's, if one got there first: that is the step's reply) and
    whether the step ended the turn."""
    try:
        message = await rt.store.record_model_reply(ref, message, records)
    except BaseException:
        await deltas.abandon()
        raise
    ends = may_end and await _end_turn(rt, step, _summary_of(message, rt.mcp.requires_approval))
    await deltas.finish(
        message.content,
        *_step_end(step, message, rt.mcp.requires_approval),
        *_turn_end(ends, message),
        create=not ends,
    )
    return message, ends


async def _record_step_start(
    rt: Runtime, recorder: events.RunRecorder, step: ModelStepInput
) -> list[events.RunEvent]:
    """The run's first events (on its first step) and the step's; returns the log so far
    (read only when the append did not land: a retried step, or another writer's race).

    The log is created with the turn's opening message (`open_turn`), so a log that is not
    there means the conversation is gone (RecordNotFound: the run ends naming why, before the
    model is asked; a window from this process's copy read nothing that would have told).
    Unless its meta is still there: a run started before logs were created with their turn,
    whose log this step creates."""
    started = [events.step_started(step.step)]
    first = step.step == FIRST_STEP
    if first:
        started.insert(0, events.run_started(step.run.run_id, step.run.conversation_id))

    async def conversation_there() -> bool:
        await rt.store.get_meta(step.run.conversation)  # RecordNotFound when it is gone
        return True

    return await _record_in_log(recorder, started, conversation_there, new_log=first)


async def _record_in_log(
    recorder: events.RunRecorder,
    written: Sequence[events.NewEvent],
    may_make_log: Callable[[], Awaitable[bool]],
    *,
    new_log: bool = False,
) -> list[events.RunEvent]:
    """Record the events in the run's log if it is there; if not, make it and record them
    only when `may_make_log` says so (else RecordNotFound). Returns the log so far."""
    try:
        return await recorder.record_and_read(*written, must_exist=True)
    except RecordNotFound:
        if not await may_make_log():
            raise
        return await recorder.record_and_read(*written, new_log=new_log)


def _throttled_step(
    step: ModelStepInput, seconds: float, recorded: list[events.RunEvent]
) -> events.NewEvent:
    """A rate-limited attempt: the step's n-th, so each wait is one event."""
    earlier = sum(
        1
        for e in recorded
        if e.type == "throttled"
        and e.data.get("step") == step.step
        and "tool_call_id" not in e.data
    )
    key = f"model/{step.step}/{earlier}"
    return events.throttled(seconds, "rate_limited", key, step=step.step)


def _step_end(
    step: ModelStepInput,
    message: StoredMessage,
    needs_approval: Callable[[str], bool],
) -> list[events.NewEvent]:
    """What the step decided: the tool calls it asks for (and which need a person's say)."""
    ended: list[events.NewEvent] = []
    for call in message.tool_calls or ():
        call_id, name = call["id"], call["function"]["name"]
        arguments = call["function"]["arguments"]
        approval = needs_approval(name)
        ended.append(events.tool_call_requested(step.step, call_id, name, arguments, approval))
        if approval:
            ended.append(events.approval_needed(step.step, call_id, name, arguments))
    ids = [call["id"] for call in message.tool_calls or ()]
    reason = message.finish_reason or ("tool_calls" if ids else "stop")
    ended.append(events.step_completed(step.step, reason, message.usage, ids))
    return ended


async def _complete(
    rt: Runtime,
    step: ModelStepInput,
    context: StepContext,
    on_text: Callable[[str], Awaitable[None]],
) -> tuple[ModelReply, int]:
    """Ask the model for the step's reply (the context window's messages) with its streaming
    API (`on_text` gets the text as it comes), inside the step's telemetry span; with it, our
    estimate of the prompt sent, which the next step's window compares with the model's count."""
    messages = request_messages(rt.settings.system_prompt, context.window, context.closed_world)
    with telemetry.model_span(
        step.run.run_id,
        step.run.conversation_id,
        step.step,
        telemetry.provider_name(rt.model.config.kind),
        rt.model.config.model,
        server_address=urlsplit(rt.model.config.endpoint).hostname,
    ) as span:
        reply = await model_stream.stream(
            rt.model,
            messages,
            context.tools,
            max_output_tokens=step.max_output_tokens,
            on_text=on_text,
        )
        span.record_reply(reply)
    return reply, messages_tokens(messages) + (estimate(context.tools) if context.tools else 0)


def _stored_reply(
    step: ModelStepInput,
    reply: ModelReply,
    stored: list[StoredMessage],
    prompt_estimate: int | None = None,
) -> tuple[StoredMessage, list[ToolCallRecord]]:
    """The reply as the store keeps it: the assistant message and a record per tool call."""
    call_ids = unique_call_ids(step, [c.id for c in reply.tool_calls], stored)
    calls = list(zip(call_ids, reply.tool_calls, strict=True))
    message = _assistant(
        step,
        content=reply.content,
        tool_calls=[
            {
                "id": call_id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for call_id, c in calls
        ]
        or None,
        usage=reply.usage,
        finish_reason=reply.finish_reason,
        prompt_estimate=prompt_estimate,
        reasoning=reply.reasoning,
    )
    records = [
        ToolCallRecord(
            run_id=step.run.run_id,
            call_id=call_id,
            step=step.step,
            seq=seq,
            tool_name=call.name,
            arguments=call.arguments,
            status="pending",
            result_message_id=None,
            is_error=False,
        )
        for seq, (call_id, call) in enumerate(calls, 1)
    ]
    return message, records


def unique_call_ids(step: ModelStepInput, ids: list[str], stored: list[StoredMessage]) -> list[str]:
    """The model's tool call ids, made unique within the run and safe as blob names.

    Some OpenAI-compatible servers reuse ids across steps (e.g. `call_0` every time); a reused id
    would look like an already completed call and never run. Ours keep the model's id when it is
    unique and plain, and replace it otherwise (the transcript uses the replacement throughout).
    """
    taken = {c["id"] for m in stored if m.run_id == step.run.run_id for c in m.tool_calls or ()}
    unique = []
    for seq, call_id in enumerate(ids, start=1):
        if call_id in taken or not PLAIN_ID.fullmatch(call_id or ""):
            call_id = f"call_{step.step}_{seq}_{step.run.run_id[:12]}"
        taken.add(call_id)
        unique.append(call_id)
    return unique


def _assistant(step: ModelStepInput, **fields: Any) -> StoredMessage:
    return StoredMessage(
        id=message_id(step.run.run_id, step.step, 0),
        run_id=step.run.run_id,
        turn=step.run.turn,
        step=step.step,
        seq=0,
        role="assistant",
        content=fields.get("content"),
        tool_calls=fields.get("tool_calls"),
        tool_call_id=None,
        name=None,
        created_at=utc_timestamp(),
        usage=fields.get("usage"),
        output_ref=None,
        truncated=False,
        is_error=False,
        finish_reason=fields.get("finish_reason"),
        prompt_estimate=fields.get("prompt_estimate"),
        reasoning=fields.get("reasoning"),
    )


def _summary_of(message: StoredMessage, needs_approval: Callable[[str], bool]) -> StepSummary:
    usage = Usage.from_dict(message.usage)
    if message.finish_reason == "content_filter":
        return StepSummary("content_filtered", message_id=message.id, usage=usage)
    calls = message.tool_calls or ()
    ids = tuple(call["id"] for call in calls)
    approvals = tuple(c["id"] for c in calls if needs_approval(c["function"]["name"]))
    return StepSummary(
        "tool_calls" if ids else "final",
        message_id=message.id,
        tool_call_ids=ids,
        usage=usage,
        approvals_needed=approvals,
    )


# --- tool_call ---------------------------------------------------------------------------------


async def tool_call(data: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    call = ToolCallInput.from_dict(data)
    ref = call.run.conversation
    recorder = events.RunRecorder.for_run(rt.events, call.run)
    record = await rt.store.get_tool_call(ref, call.run.run_id, call.call_id)
    if record is not None and record.unconfirmed:  # two attempts of its step raced: see the reply
        record = await rt.store.confirm_tool_call(ref, record, call.run.turn)
    if record is None:
        raise LookupError(f"no record of tool call {call.call_id} in run {call.run.run_id}")
    if record.status == "completed":  # already ran: never call the tool twice
        if record.result is not None:  # a crash may have come before the transcript append
            await rt.store.record_tool_result(ref, record, record.result)
            await recorder.record(call_ended(record, record.result))
        return ToolCallSummary(record.call_id, record.is_error).to_dict()
    # A call the server answered with a task was sent ("started"), so only such a record may
    # have one (a fresh call costs no extra read). Found: poll it, never send the call again.
    if call.may_await_task and record.status == "started":
        pending = await tool_tasks.already_started(rt, call.run, record, recorder)
        if pending is not None:
            return ToolCallSummary(record.call_id, False, task=pending).to_dict()

    await _record_decision(recorder, call, record)
    if await _cut_off_and_unsafe(rt, call, record):
        if call.may_defer:  # the orchestrator asks a person whether to call it again
            log.warning(
                "tool call cut off earlier, outcome unknown: asking before calling it again",
                extra=_call_context(call, record),
            )
            await recorder.record(
                events.approval_needed(
                    record.step, record.call_id, record.tool_name, record.arguments, "interrupted"
                )
            )
            return ToolCallSummary(record.call_id, False, interrupted=True).to_dict()
        result = record.result_message(call.run.turn, OUTCOME_UNKNOWN, is_error=True)
    else:
        ran = await _run_tool(rt, call, record, recorder)
        if isinstance(ran, CircuitOpen):  # not sent: the orchestrator waits, then tries again
            await recorder.record(
                events.throttled(
                    ran.seconds,
                    "circuit_open",
                    f"tool/{record.call_id}",
                    step=record.step,
                    tool_call_id=record.call_id,
                )
            )
            return ToolCallSummary(record.call_id, False, retry_after=ran.seconds).to_dict()
        if isinstance(ran, TaskStarted):
            pending = await tool_tasks.started(
                rt, call.run, record, recorder, ran.server, ran.handle
            )
            return ToolCallSummary(record.call_id, False, task=pending).to_dict()
        result = ran
    await rt.store.record_tool_result(ref, record, result)
    await recorder.record(call_ended(record, result))
    return ToolCallSummary(record.call_id, result.is_error, result.truncated).to_dict()


async def _record_decision(
    recorder: events.RunRecorder, call: ToolCallInput, record: ToolCallRecord
) -> None:
    """A person's say on this call, as the orchestrator passed it on: an approval (or its
    absence before the deadline), or whether to send a cut-off call again."""
    if call.retry_interrupted:
        await recorder.record(events.approval_decided(record.call_id, True, kind="interrupted"))
    elif call.rejection is not None:
        kind = "interrupted" if record.status == "started" else "approval"
        await recorder.record(
            events.approval_decided(record.call_id, False, call.rejection, kind=kind)
        )
    elif call.approved:
        await recorder.record(events.approval_decided(record.call_id, True))


@dataclass(frozen=True)
class TaskStarted:
    """The server runs the call as a task (agent.mcp.tasks): no result yet."""

    server: str
    handle: TaskHandle


@dataclass(frozen=True)
class CircuitOpen:
    """The call was not sent: its server's circuit is open for `seconds` more."""

    seconds: float


async def _cut_off_and_unsafe(rt: Runtime, call: ToolCallInput, record: ToolCallRecord) -> bool:
    """Was this call sent before without a result coming back, and may it not simply be sent
    again? (A call that will not run anyway, or that a person said to resend once, is no
    question.)"""
    if record.status != "started" or call.rejection is not None:
        return False
    if call.retry_interrupted and not record.resent:
        return False
    return not await rt.mcp.may_repeat(record.tool_name)


def _call_context(call: ToolCallInput, record: ToolCallRecord) -> dict[str, Any]:
    return telemetry.log_context(
        call.run.run_id, call.run.conversation_id, call_id=record.call_id, tool=record.tool_name
    )


async def _run_tool(
    rt: Runtime, call: ToolCallInput, record: ToolCallRecord, recorder: events.RunRecorder
) -> StoredMessage | CircuitOpen | TaskStarted:
    """Call the tool (unless it may not run) and turn what happened into its result message."""
    if call.rejection is not None:  # needed approval and did not get it: never called
        return record.result_message(call.run.turn, call.rejection, is_error=True)
    if not call.approved and await rt.mcp.approval_needed(record.tool_name):
        # Fail safe: never run without the approval it needs, whatever the step asked for.
        return record.result_message(call.run.turn, NOT_APPROVED, is_error=True)
    try:
        arguments = parse_arguments(record.arguments)
    except ValueError as exc:
        return record.result_message(call.run.turn, str(exc), is_error=True)
    with telemetry.tool_span(
        call.run.run_id, call.run.conversation_id, record.step, record.tool_name,
        call_id=record.call_id,
    ) as span:  # fmt: skip
        outcome = await _send(rt, call, record, arguments, recorder)
        span.record_outcome(outcome, server=rt.mcp.server_of(record.tool_name))
    if outcome.retry_after is not None and call.may_defer:
        return CircuitOpen(outcome.retry_after)
    if outcome.task is not None:
        server = rt.mcp.server_of(record.tool_name) or ""
        if call.may_await_task:
            return TaskStarted(server, outcome.task)
        # An orchestrator before version 4 cannot wait for it: stop it rather than leave it.
        return await tool_tasks.not_awaited(rt, call.run, record, server, outcome.task)
    return await result_message(rt, call.run, record, outcome)


async def _send(
    rt: Runtime,
    call: ToolCallInput,
    record: ToolCallRecord,
    arguments: dict[str, Any],
    recorder: events.RunRecorder,
) -> ToolOutcome:
    """Send the call, with its record saying "started" from just before it goes out."""
    ref = call.run.conversation

    async def mark_started() -> None:
        await recorder.record(
            events.tool_call_started(
                record.step, record.call_id, record.tool_name, record.arguments
            )
        )
        if record.status == "started" and call.retry_interrupted:  # resent on approval
            await rt.store.mark_tool_call(ref, replace(record, resent=True), "started")
        elif record.status != "started":
            await rt.store.mark_tool_call(ref, record, "started")

    try:
        with elicitation.asking_for(_asker(rt, call, record, recorder)):
            return await rt.mcp.call_tool(
                record.tool_name,
                arguments,
                context=_pinned_context(rt, call.run),
                idempotency_key=f"{call.run.run_id}:{record.call_id}",
                before_send=mark_started,
                accept_task=True,  # polled, or cancelled when the run cannot wait
            )
    except ToolTransportError as exc:
        # Durable retries this attempt. A request that certainly never left gets its record
        # back as it was before this attempt, so the retry simply sends it. One that may have
        # reached the server keeps "started" as `mark_started` wrote it (with `resent`): its
        # outcome is unknown, so the retry sends it again only if that is safe, or asks (like
        # a timeout, or a crash).
        if not exc.maybe_sent:
            await rt.store.mark_tool_call(ref, record, record.status)
        raise


def _asker(
    rt: Runtime, call: ToolCallInput, record: ToolCallRecord, recorder: events.RunRecorder
) -> elicitation.Asker:
    """Where a question the server asks during this call goes (an MCP elicitation)."""
    return question_asker(rt, record, recorder, elicitation.wait_bound(rt.settings))


def _pinned_context(rt: Runtime, run: RunRef) -> dict[str, str]:
    """Values the app fills into pinned tool arguments (the model never chooses them)."""
    context = {"conversation_id": run.conversation_id, "run_id": run.run_id}
    if rt.settings.public_base_url:
        context["callback_url"] = f"{rt.settings.public_base_url}/api/scheduler/callback"
    return context


# --- finish_turn -------------------------------------------------------------------------------


async def finish_turn(data: dict[str, Any], rt: Runtime) -> None:
    finish = FinishTurnInput.from_dict(data)
    try:
        answer = await _answer(rt, finish.run)
        # The events before the lock goes: once it is released the conversation may be deleted,
        # and a log written after that would outlive it. run_started too: a run stopped before
        # its first step (its budget) never wrote it.
        await _record_run_end(
            rt,
            finish.run,
            events.run_started(finish.run.run_id, finish.run.conversation_id),
            events.run_finished(finish.status, answer),
        )
    except RecordNotFound:  # the conversation vanished mid-run: its lock (and its log) went with it
        log.warning("conversation vanished mid-run", extra={"run_id": finish.run.run_id})
    else:
        await _release_turn(rt, finish.run, finish.status)


async def _record_run_end(rt: Runtime, run: RunRef, *end: events.NewEvent) -> None:
    """The run's last events, in its log only if that is there: made with the turn's opening
    message, a log is gone only with its conversation (deleted once the turn was free, as after
    a step that released it and stopped before writing the run's end), and one written then
    would outlive it: RecordNotFound. Unless the run still holds the turn (no deletion can be
    under way): a run begun before logs were made with their turn gets its log here."""

    async def holds_turn() -> bool:
        return (await rt.store.get_meta(run.conversation)).active_run_id == run.run_id

    await _record_in_log(events.RunRecorder.for_run(rt.events, run), end, holds_turn)


async def _release_turn(rt: Runtime, run: RunRef, status: str) -> bool:
    """Give the conversation's turn lock back (idempotent: a lock no longer this run's stays);
    whether this call released it."""
    try:
        released = await rt.store.end_turn(run.conversation, run.run_id)
    except RecordNotFound:  # the conversation vanished mid-run: its lock (and its log) went with it
        log.warning("conversation vanished mid-run", extra={"run_id": run.run_id})
        return False
    log.info(
        "turn finished",
        extra=telemetry.log_context(run.run_id, run.conversation_id, status=status),
    )
    return released


async def _answer(rt: Runtime, run: RunRef) -> str | None:
    """The run's answer: its last assistant message, unless that one asked for tools."""
    for message in reversed(await rt.store.read_messages(run.conversation)):
        if message.run_id == run.run_id and message.role == "assistant":
            return None if message.tool_calls else message.content
    return None


# --- batch items -------------------------------------------------------------------------------


async def take_batch_item(
    data: dict[str, Any], rt: Runtime, client: df.DurableOrchestrationClient
) -> dict[str, Any]:
    """A lane's next item, made ready for its turn: claim it, lock its conversation, store
    its message.

    Returns a TakenItem: no index when no item is left; else the item's turn to run, or why it
    cannot run (no such conversation). A conversation busy with another turn raises Conflict, so Durable retries a
    little later; the retry's claim, under the same key, takes the same item again.

    A lock held by a run that is over (cancelled, or failed: Durable runs no `finish_turn` for
    either) is taken over, as a message's turn does: `client` asks Durable about the holder.
    Why a client here, and not the lane orchestrator learning the holder's status: an
    orchestrator cannot read another instance's status deterministically (no such action;
    `call_http` to the management API would put the system key in history and the local host
    does not run it), and an activity may do I/O. The client binding is an ordinary input
    binding, which the extension and the local host bind on an activity trigger as on any other.
    """
    claim = ClaimInput.from_dict(data)
    index = await rt.batches.claim(claim.batch_id, claim.indices, claim.claim_key)
    if index is None:
        return TakenItem(None).to_dict()
    return (await _start_batch_item(claim.batch_id, index, rt, client)).to_dict()


async def _start_batch_item(
    batch_id: str, index: int, rt: Runtime, client: df.DurableOrchestrationClient
) -> TakenItem:
    batch = await rt.batches.get_running(batch_id)
    if batch is None:
        raise LookupError(f"no batch {batch_id}")
    item = batch.items[index]
    if item.owner is None or item.status == "rejected":
        return TakenItem(index, status="rejected", error=item.error or "the item was rejected")
    ref = ConversationRef(item.owner, item.conversation_id)
    run_id = run_id_of(batch.batch_id, item.index)
    try:
        turn = await begin_turn(rt.store, client, ref, run_id, preview=item.content)
    except RecordNotFound:
        error = f"no conversation {item.conversation_id}"
        return TakenItem(index, status="rejected", error=error)
    except Conflict:
        raise Conflict(f"conversation {item.conversation_id} is busy with another turn") from None
    await open_turn(rt, ref, user_message(run_id, turn, item.content, item.origin))
    used = await rt.store.tokens_used(ref)  # exact: the append caught up with the transcript
    chat = ChatTurnInput.starting(
        RunRef(item.owner, item.conversation_id, run_id, turn), rt.settings.limits, used
    )
    return TakenItem(index, turn=chat)


async def claim_batch_item(data: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """The next item for a batch lane (no index when none is left)."""
    claim = ClaimInput.from_dict(data)
    index = await rt.batches.claim(claim.batch_id, claim.indices, claim.claim_key)
    return ClaimedItem(index).to_dict()


async def record_batch_outcome(data: dict[str, Any], rt: Runtime) -> None:
    """Record how an item that got no run ended. An item whose take failed midway (its
    conversation locked, then a write failed for good) also gets its lock back: nothing else
    would release a lock held by a run that never started."""
    outcome = BatchItemOutcome.from_dict(data)
    await rt.batches.record_outcome(outcome.batch_id, outcome.index, outcome.status, outcome.error)
    if outcome.status != "failed":
        return
    batch = await rt.batches.get_running(outcome.batch_id)
    item = batch.items[outcome.index] if batch is not None else None
    if item is not None and item.owner is not None:
        with contextlib.suppress(RecordNotFound):  # the conversation is gone: no lock to give back
            run_id = run_id_of(outcome.batch_id, outcome.index)
            await rt.store.end_turn(ConversationRef(item.owner, item.conversation_id), run_id)
