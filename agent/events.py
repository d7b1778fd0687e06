"""Run events: what the activities record in a run's event log (`storage.events`), and the one
place their types, fields and idempotency keys are defined.

Types (on the wire each is one JSON object with `type`, `seq` and `at`, plus):
- `run_started` {run_id, conversation_id}
- `step_started` {step}: a model step begins
- `text_delta` {step, delta}: new text of the step's answer, coalesced (see `TextDeltas`)
- `text_reset` {step}: drop the text this step streamed so far; it is streamed again (an
  attempt cut off midway was retried and the model wrote something else)
- `step_completed` {step, finish_reason, usage, tool_call_ids}; `step_failed` {step, error}
- `tool_call_requested` {step, tool_call_id, name, arguments, needs_approval}
- `approval_needed` {step, tool_call_id, name, arguments, reason}: reason "approval", or
  "interrupted" (a call cut off with its outcome unknown: may it be sent again?)
- `approval_decided` {tool_call_id, approved, kind, reason?}
- `tool_call_started` {step, tool_call_id, name, arguments}
- `input_requested` {step, tool_call_id, name, question_id, message, requested_schema, deadline}:
  the tool's server asks a person (an MCP elicitation; answer with `POST /api/runs/{id}/input`)
- `input_answered` {tool_call_id, question_id, action, by}: accept, decline or cancel, by the
  caller or by the deadline (the content goes to the server, not into the log)
- `tool_call_completed` / `tool_call_failed` {step, tool_call_id, name, arguments, result,
  truncated}: the result is cut to `RESULT_PREVIEW_CHARS` (the transcript has it whole)
- `throttled` {wait, reason, step?, tool_call_id?}: rate limited, or a tool's circuit is open
- `run_finished` {status, answer?}: the last event of every run

Every event has a key derived from what it records, so an activity that runs again (Durable
activities are at-least-once) records nothing twice. Event payloads carry ids, tool names,
arguments and results: conversation content, as the transcript does; never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from storage.events import NewEvent as NewEvent
from storage.events import RunEvent as RunEvent

if TYPE_CHECKING:
    from agent.contracts import RunRef
    from storage.events import RunEventLog
    from storage.models import ConversationRef

RESULT_PREVIEW_CHARS = 1_000
ARGUMENTS_CHARS = 4_000
# Text deltas: the first piece of a step goes out at once (time to first token); after that at
# most one write per interval, or sooner when this much text is waiting. A 2,000-token answer
# streamed over 40 s is then about 80 writes at the interval (fewer when the model is faster).
DELTA_INTERVAL_SECONDS = 0.5
DELTA_MAX_CHARS = 4_000

TERMINAL_TYPE = "run_finished"


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


# --- the events ---------------------------------------------------------------------------------


def run_started(run_id: str, conversation_id: str) -> NewEvent:
    return NewEvent(
        "run_started", "run_started", {"run_id": run_id, "conversation_id": conversation_id}
    )


def step_started(step: int) -> NewEvent:
    return NewEvent(f"step_started/{step}", "step_started", {"step": step})


def text_delta(step: int, generation: int, offset: int, delta: str) -> NewEvent:
    return NewEvent(
        f"text/{step}/{generation}/{offset}", "text_delta", {"step": step, "delta": delta}
    )


def text_reset(step: int, generation: int) -> NewEvent:
    return NewEvent(f"text_reset/{step}/{generation}", "text_reset", {"step": step})


def step_completed(
    step: int, finish_reason: str, usage: Mapping[str, int] | None, call_ids: Sequence[str]
) -> NewEvent:
    data = {
        "step": step,
        "finish_reason": finish_reason,
        "usage": dict(usage or {}),
        "tool_call_ids": list(call_ids),
    }
    return NewEvent(f"step_completed/{step}", "step_completed", data)


def step_failed(step: int, error: str) -> NewEvent:
    return NewEvent(f"step_failed/{step}", "step_failed", {"step": step, "error": error})


def _call(step: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "step": step,
        "tool_call_id": call_id,
        "name": name,
        "arguments": _cut(arguments, ARGUMENTS_CHARS),
    }


def tool_call_requested(
    step: int, call_id: str, name: str, arguments: str, needs_approval: bool
) -> NewEvent:
    data = {**_call(step, call_id, name, arguments), "needs_approval": needs_approval}
    return NewEvent(f"tool_call_requested/{call_id}", "tool_call_requested", data)


def approval_needed(
    step: int, call_id: str, name: str, arguments: str, reason: str = "approval"
) -> NewEvent:
    data = {**_call(step, call_id, name, arguments), "reason": reason}
    return NewEvent(f"approval_needed/{call_id}/{reason}", "approval_needed", data)


def approval_decided(
    call_id: str, approved: bool, reason: str | None = None, *, kind: str = "approval"
) -> NewEvent:
    """`kind` "approval" (to run a call that needs it) or "interrupted" (to send a cut-off
    call again): a call can be asked both, once each."""
    data: dict[str, Any] = {"tool_call_id": call_id, "approved": approved, "kind": kind}
    if reason is not None:
        data["reason"] = reason
    return NewEvent(f"approval_decided/{call_id}/{kind}", "approval_decided", data)


def input_requested(step: int, call_id: str, name: str, question: Mapping[str, Any]) -> NewEvent:
    """`question`: its id, message, requested_schema and deadline."""
    data = {"step": step, "tool_call_id": call_id, "name": name, **question}
    return NewEvent(f"input_requested/{question['question_id']}", "input_requested", data)


def input_answered(call_id: str, question_id: str, action: str, by: str) -> NewEvent:
    data = {"tool_call_id": call_id, "question_id": question_id, "action": action, "by": by}
    return NewEvent(f"input_answered/{question_id}", "input_answered", data)


def tool_call_started(step: int, call_id: str, name: str, arguments: str) -> NewEvent:
    return NewEvent(
        f"tool_call_started/{call_id}", "tool_call_started", _call(step, call_id, name, arguments)
    )


def tool_call_completed(
    step: int,
    call_id: str,
    name: str,
    arguments: str,
    result: str | None,
    *,
    is_error: bool,
    truncated: bool,
) -> NewEvent:
    """`tool_call_failed` when the result is an error: one key either way, so a call ends once."""
    preview = _cut(result, RESULT_PREVIEW_CHARS)
    data = {
        **_call(step, call_id, name, arguments),
        "result": preview,
        "truncated": truncated or preview != result,
    }
    kind = "tool_call_failed" if is_error else "tool_call_completed"
    return NewEvent(f"tool_call_ended/{call_id}", kind, data)


def _task(step: int, call_id: str, task_id: str, server: str, status: str) -> dict[str, Any]:
    return {
        "step": step,
        "tool_call_id": call_id,
        "task_id": task_id,
        "server": server,
        "status": status,
    }


def task_started(step: int, call_id: str, task_id: str, server: str, status: str) -> NewEvent:
    data = _task(step, call_id, task_id, server, status)
    return NewEvent(f"task_started/{call_id}", "task_started", data)


def task_status(
    step: int, call_id: str, task_id: str, server: str, status: str, message: str | None, poll: int
) -> NewEvent:
    """One poll's answer (keyed by the poll number, so a retried poll writes it once)."""
    data = {**_task(step, call_id, task_id, server, status), "status_message": message}
    return NewEvent(f"task_status/{call_id}/{poll}", "task_status", data)


def task_finished(
    step: int, call_id: str, task_id: str, server: str, status: str, outcome: str
) -> NewEvent:
    """`outcome`: completed, task_failed, task_cancelled, task_expired or task_timed_out."""
    data = {**_task(step, call_id, task_id, server, status), "outcome": outcome}
    return NewEvent(f"task_finished/{call_id}", "task_finished", data)


def throttled(seconds: float, reason: str, key: str, **where: Any) -> NewEvent:
    return NewEvent(f"throttled/{key}", "throttled", {"wait": seconds, "reason": reason, **where})


def run_finished(status: str, answer: str | None = None) -> NewEvent:
    data: dict[str, Any] = {"status": status}
    if answer is not None:
        data["answer"] = answer
    return NewEvent(TERMINAL_TYPE, TERMINAL_TYPE, data)


# --- recording ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecorder:
    """One run's log, as the activities write it."""

    log: RunEventLog
    ref: ConversationRef
    run_id: str

    @classmethod
    def for_run(cls, log: RunEventLog, run: RunRef) -> Self:
        """The run's event log (what clients following the run see)."""
        return cls(log, run.conversation, run.run_id)

    async def record(self, *events: NewEvent, create: bool = True) -> list[RunEvent]:
        """`create=False`: a log that is not there stays so (see `RunEventLog.append`)."""
        return await self.log.append(self.ref, self.run_id, events, create=create)

    async def record_and_read(
        self, *events: NewEvent, new_log: bool = False, must_exist: bool = False
    ) -> list[RunEvent]:
        """Record the events, then every event so far (read only when the append did not
        prove this process's view current). `new_log`: the run's first write, most likely.
        `must_exist`: RecordNotFound when the log is not there."""
        return await self.log.append_and_read(
            self.ref, self.run_id, events, new_log=new_log, must_exist=must_exist
        )

    async def recorded(self) -> list[RunEvent]:
        return await self.log.recorded(self.ref, self.run_id)


def step_text(events: Iterable[RunEvent], step: int) -> tuple[int, str]:
    """The step's current generation (text resets so far) and the text it has streamed."""
    generation = 0
    text: list[str] = []
    for event in events:
        if event.data.get("step") != step:
            continue
        if event.type == "text_reset":
            generation, text = generation + 1, []
        elif event.type == "text_delta":
            text.append(str(event.data.get("delta", "")))
    return generation, "".join(text)


@dataclass
class TextDeltas:
    """Streams one step's text into the log in coalesced, idempotent pieces.

    A piece's key is its offset in the step's text, so writing the same text again writes
    nothing. A step that ran before (an attempt cut off midway) may have streamed some text
    already: as long as this attempt writes the same text it continues where that one stopped;
    if it writes something else, a `text_reset` says so and its text streams from the start.

    Writes happen in a background task so that a slow write never slows the model's stream;
    text arriving meanwhile is coalesced into the next write.
    """

    recorder: RunRecorder
    step: int
    generation: int = 0
    logged: str = ""  # the log's text for this step and generation (an earlier attempt's too)
    interval: float = DELTA_INTERVAL_SECONDS
    max_chars: int = DELTA_MAX_CHARS
    clock: Callable[[], float] = time.monotonic
    _text: list[str] = field(default_factory=list)
    _generated: int = 0  # characters received
    _written: int = 0  # characters of this attempt's text written (or found in the log)
    _last_write: float | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False
    _pump: asyncio.Task[None] | None = None

    @classmethod
    def resuming(
        cls, recorder: RunRecorder, step: int, recorded: Iterable[RunEvent], **options: Any
    ) -> Self:
        generation, logged = step_text(recorded, step)
        return cls(recorder, step, generation, logged, **options)

    async def add(self, text: str) -> None:
        self._text.append(text)
        self._generated += len(text)
        if self._pump is None:
            self._pump = asyncio.create_task(self._run())
        elif self._pump.done():
            self._pump.result()  # a write failed: fail the step now
        self._wake.set()

    def stream_ended(self) -> None:
        """The model's stream is over: start no write of its own; `finish` writes what is left
        with the step's end. A reply that arrived whole before the first write began (a short
        answer, often) then costs one append instead of two; text that streamed over time has
        gone out already (the first piece at once, then each interval)."""
        self._closed = True
        self._wake.set()

    async def finish(self, final: str | None, *then: NewEvent, create: bool = True) -> None:
        """The step's whole text is `final`: write what is not in the log yet, and the events
        that follow it (`then`: the step's end) in the same append, and wait. `create=False`:
        once the turn is released, a log that is gone (with its conversation) stays gone."""
        self._closed = True
        self._wake.set()
        if self._pump is not None:
            await self._pump
        whole = final or ""
        if "".join(self._text) != whole:  # e.g. the content filter's answer replaces it
            self._text, self._generated = [whole], len(whole)
        await self._write(then, create)

    async def abandon(self) -> None:
        """The step failed: stop writing (what was written stays; a retry reconciles it)."""
        self._closed = True
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            delay = self._delay()
            if delay > 0 and not self._closed:
                with contextlib.suppress(TimeoutError):  # the interval passed: write now
                    await asyncio.wait_for(self._closing_or_full(), delay)
            if self._closed_meanwhile():
                return  # `finish` writes the rest
            await self._write()

    def _closed_meanwhile(self) -> bool:
        # A method, not the attribute: `finish` may set it while this task awaited, which mypy's
        # narrowing of `self._closed` across the await cannot see.
        return self._closed

    async def _closing_or_full(self) -> None:
        while not self._closed and self._generated - self._written < self.max_chars:
            await self._wake.wait()
            self._wake.clear()

    def _delay(self) -> float:
        if self._last_write is None:
            return 0.0  # the first piece at once
        return self._last_write + self.interval - self.clock()

    async def _write(self, then: Sequence[NewEvent] = (), create: bool = True) -> None:
        text = "".join(self._text)
        self._text = [text]
        events, logged = self._pending(text)
        events += then
        self._last_write = self.clock()
        if events:
            await self.recorder.record(*events, create=create)
        self.logged, self._written = logged, len(text)

    def _pending(self, text: str) -> tuple[list[NewEvent], str]:
        """The events that bring the log's text for this step up to `text`, and the log's text
        for this step after them. Any text that does not continue what the log holds (a retried
        attempt that answers otherwise, or the content filter's answer replacing streamed text)
        starts a new generation with a `text_reset`, so no client keeps text the step took back."""
        events: list[NewEvent] = []
        logged = self.logged
        common = min(len(text), len(logged))
        shorter_at_the_end = self._closed and len(text) < len(logged)
        if text[:common] != logged[:common] or shorter_at_the_end:
            self.generation += 1
            events.append(text_reset(self.step, self.generation))
            logged = ""
        if len(text) > len(logged):
            events.append(text_delta(self.step, self.generation, len(logged), text[len(logged) :]))
            logged = text
        return events, logged
