"""A conversation's turn lock, taken from whichever run last held it once that run is over.

`ConversationStore.begin_turn` refuses a conversation whose lock another run holds. Durable runs
no `finish_turn` for an instance that was terminated (a cancel) or that failed, so such a run
keeps the lock after it is over. Every path that starts a turn (an HTTP message, a scheduled
batch item) therefore takes the lock through `begin_turn` here, which asks Durable about the
holder and releases the lock only when Durable reports the holder's instance ended: never for a
run that is still going, nor for one with no instance *yet* (between the lock and the start).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent.errors import Conflict
from storage.aio import all_done
from storage.errors import TurnInProgress
from storage.models import DELETING

if TYPE_CHECKING:  # the Blob SDK loads on first use, not when the app is indexed
    import azure.durable_functions as df

    from agent.runtime import Runtime
    from storage.conversations import ConversationRef, ConversationStore, StoredMessage

log = logging.getLogger(__name__)

ENDED = ("Completed", "Failed", "Terminated", "Canceled")  # Durable's runtime statuses


async def begin_turn(
    store: ConversationStore,
    client: df.DurableOrchestrationClient,
    ref: ConversationRef,
    run_id: str,
    preview: str | None = None,
) -> int:
    """Lock the conversation for `run_id`; its turn number. A lock held by a run that is over
    is released first; one held by a live run is a Conflict naming it. `preview`: the turn's
    message (the conversation's preview when it has none yet)."""
    try:
        return await store.begin_turn(ref, run_id, preview)
    except TurnInProgress:
        active = (await store.get_meta(ref)).active_run_id
        if active == DELETING:
            raise Conflict("this conversation is being deleted") from None
        if active is None or await run_is_live(client, active):
            raise Conflict(
                f"a turn is already running in this conversation (run {active}); "
                "wait for it to finish or cancel it"
            ) from None
        log.warning("releasing a stale turn lock", extra={"run_id": active})
        await store.end_turn(ref, active)  # conditional: a no-op unless `active` still holds it
        return await store.begin_turn(ref, run_id, preview)


async def run_is_live(client: df.DurableOrchestrationClient, run_id: str) -> bool:
    """Only a run that is over releases its lock: a run with no instance *yet* (between the lock
    and the start, or a batch item waiting for its turn) still holds it."""
    return status_name(await client.get_status(run_id)) not in ENDED


def status_name(status: Any) -> str | None:
    """Durable's runtime status name in a `get_status` answer; None without an instance."""
    runtime_status = getattr(status, "runtime_status", None)
    return getattr(runtime_status, "value", None) or (
        str(runtime_status) if runtime_status else None
    )


async def open_turn(rt: Runtime, ref: ConversationRef, opening: StoredMessage) -> None:
    """Store a turn's opening message and create its run's event log, together: neither
    depends on the other (the turn is locked already, and the run starts only after both),
    so they take one round trip's time. Both are idempotent; either failing is raised once
    both are done (none left running)."""
    assert opening.run_id is not None  # an opening message names its run
    await all_done([rt.store.append(ref, opening), rt.events.create(ref, opening.run_id)])
