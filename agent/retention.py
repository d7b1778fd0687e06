"""Retention (`CONVERSATION_RETENTION_DAYS`): purge what has been idle or finished for longer.

Run daily by the `conversation_retention` timer function. With retention days N and the time
`now`, it deletes every conversation whose last activity (a turn beginning or ending, or its
creation) is more than N days old, as `DELETE /api/conversations/{id}` would (its blobs and its
runs' Durable history; one with a live turn is left for the next run), then purges the Durable
history of every finished instance (runs, batches, lanes) created more than N days ago.
Running instances are never touched. `now` is a parameter so tests set the time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from agent.deletion import delete_conversation
from storage.errors import TurnInProgress

if TYPE_CHECKING:
    import azure.durable_functions as df

    from storage.conversations import ConversationStore

log = logging.getLogger(__name__)

# Durable's `purge_instance_history_by` requires a lower bound: before any instance of this app.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FINISHED = ("Completed", "Failed", "Terminated", "Canceled")  # never Running or Pending


@dataclass(frozen=True)
class RetentionOutcome:
    conversations_deleted: int
    conversations_busy: int  # idle by their meta, but a live run holds the turn lock
    instances_purged: int
    conversations_failed: int = 0  # logged each; the pass went on, and failed at its end


class RetentionIncomplete(Exception):
    """Some conversations could not be deleted (each was logged); the rest of the pass ran."""


async def purge_expired(
    store: ConversationStore,
    client: df.DurableOrchestrationClient,
    *,
    now: datetime,
    retention: timedelta,
) -> RetentionOutcome:
    """Delete conversations idle since before `now - retention`, and purge the Durable history
    of finished instances created before it."""
    cutoff = now - retention
    deleted = busy = failed = 0
    for ref in await store.idle_conversations(before=cutoff):
        try:
            if await delete_conversation(store, client, ref):
                deleted += 1
        except TurnInProgress:
            busy += 1  # a live turn: idle by its meta only; the next run looks again
        except Exception:
            # One conversation that cannot be deleted (a store error, a purge that fails) must
            # not keep every other one, and the instance purge below, from running: it is
            # logged (by id only) and the pass fails at its end, so the timer shows the failure.
            failed += 1
            log.exception("retention: could not delete conversation %s", ref.conversation_id)
    purged = await purge_finished_instances(client, created_before=cutoff)
    outcome = RetentionOutcome(deleted, busy, purged, failed)
    log.info(
        "retention: %d conversations deleted, %d busy, %d failed, %d Durable instances purged",
        outcome.conversations_deleted,
        outcome.conversations_busy,
        outcome.conversations_failed,
        outcome.instances_purged,
    )
    if failed:
        raise RetentionIncomplete(f"{failed} conversations could not be deleted (logged)")
    return outcome


async def purge_finished_instances(
    client: df.DurableOrchestrationClient, *, created_before: datetime
) -> int:
    from azure.durable_functions.models.OrchestrationRuntimeStatus import (
        OrchestrationRuntimeStatus,
    )

    result = await client.purge_instance_history_by(
        created_time_from=EARLIEST,
        created_time_to=created_before,
        runtime_status=[OrchestrationRuntimeStatus(name) for name in FINISHED],
    )
    return int(result.instances_deleted)


async def run_retention(client: df.DurableOrchestrationClient, *, past_due: bool) -> None:
    """The timer function's body: nothing when retention is off (the default)."""
    from agent.runtime import runtime, settings

    days = settings().conversation_retention_days
    if days is None:
        return
    if past_due:
        log.info("retention: running late (the host was down at its scheduled time)")
    rt = await runtime()
    await purge_expired(rt.store, client, now=datetime.now(UTC), retention=timedelta(days=days))
