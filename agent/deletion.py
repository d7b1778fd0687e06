"""Deleting a conversation: its blobs (`ConversationStore.delete`) and the Durable history of
its runs, refused while one of its turns runs.

The HTTP edge calls `delete_conversation(store, client, ref)` with the caller's ref: True means
it was deleted (204), False that the caller has no such conversation (404: another owner's
conversation looks the same as none); `storage.errors.TurnInProgress` is the 409.

Order, so that an interrupted deletion is finished by the next call (deleting is idempotent):
the turn lock first (no turn can begin meanwhile), then the runs' Durable instances (found from
the transcript, which is deleted after them), then the blobs with the meta last.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.turn_lock import run_is_live
from storage.errors import TurnInProgress

if TYPE_CHECKING:
    import azure.durable_functions as df

    from storage.conversations import ConversationMeta, ConversationRef, ConversationStore

log = logging.getLogger(__name__)


async def delete_conversation(
    store: ConversationStore, client: df.DurableOrchestrationClient, ref: ConversationRef
) -> bool:
    """Delete everything of the conversation; False if the caller has none of it."""
    meta = await _lock(store, client, ref)
    if meta is not None:
        await purge_runs(client, await store.run_ids(ref))
    deleted = await store.delete(ref)
    if deleted:
        log.info("conversation deleted", extra={"conversation_id": ref.conversation_id})
    return deleted


async def purge_runs(client: df.DurableOrchestrationClient, run_ids: set[str]) -> int:
    """Purge each run's Durable instance (its history, input and output); how many existed."""
    purged = 0
    for run_id in sorted(run_ids):
        result = await client.purge_instance_history(run_id)
        purged += result.instances_deleted
    return purged


async def _lock(
    store: ConversationStore, client: df.DurableOrchestrationClient, ref: ConversationRef
) -> ConversationMeta | None:
    """The deletion lock; a lock still held by a run that is over (cancelled or failed runs
    keep theirs, see agent.turn_lock) is released first. TurnInProgress while a run is live."""
    try:
        return await store.lock_for_deletion(ref)
    except TurnInProgress:
        holder = (await store.get_meta(ref)).active_run_id
        if holder is not None and await run_is_live(client, holder):
            raise
        if holder is not None:
            log.warning("releasing a stale turn lock", extra={"run_id": holder})
            await store.end_turn(ref, holder)  # conditional: a no-op unless it still holds it
        return await store.lock_for_deletion(ref)
