"""What a run's tool call leaves, however it ran: a plain call (`activities.tool_call`) or a
task polled to its end (`agent.tool_tasks`). Its result as a transcript message (the full
output kept aside when the text is cut), the event that says it ended, and where the questions
its server asks go (an `elicitation.Asker`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent import elicitation, events

if TYPE_CHECKING:
    from agent.contracts import RunRef
    from agent.mcp.pool import ToolOutcome
    from agent.runtime import Runtime
    from storage.conversations import StoredMessage, ToolCallRecord


async def result_message(
    rt: Runtime, run: RunRef, record: ToolCallRecord, outcome: ToolOutcome
) -> StoredMessage:
    """A tool's outcome as its transcript message; a truncated one keeps its full output."""
    output_ref = None
    if outcome.truncated:
        output_ref = await rt.store.put_tool_output(
            ref=run.conversation,
            run_id=run.run_id,
            call_id=record.call_id,
            payload=outcome.full_output,
            content_type="application/json",
        )
    return record.result_message(
        run.turn,
        outcome.text,
        is_error=outcome.is_error,
        truncated=outcome.truncated,
        output_ref=output_ref,
    )


def call_ended(record: ToolCallRecord, result: StoredMessage) -> events.NewEvent:
    return events.tool_call_completed(
        record.step,
        record.call_id,
        record.tool_name,
        record.arguments,
        result.content,
        is_error=result.is_error,
        truncated=result.truncated,
    )


def question_asker(
    rt: Runtime, record: ToolCallRecord, recorder: events.RunRecorder, wait_seconds: float
) -> elicitation.Asker:
    """The call's questions go to the run `recorder` writes (its conversation and run id)."""
    return elicitation.Asker(
        rt.questions,
        recorder,
        recorder.ref,
        recorder.run_id,
        record.step,
        record.call_id,
        record.tool_name,
        wait_seconds,
    )
