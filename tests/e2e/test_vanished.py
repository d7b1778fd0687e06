"""A conversation whose blobs vanish from storage mid-run (deleted, or lost by storage) ends its
run with a reason that names it, not a generic failure."""

from __future__ import annotations

from agent import runtime
from agent.http.callers import ANONYMOUS
from storage.models import ConversationRef
from storage.paths import conversation_prefix
from tests.e2e.conftest import App
from tests.e2e.test_approvals import WRITE, answer, waiting_run


async def delete_conversation_blobs(conversation_id: str) -> int:
    container = (await runtime.runtime()).container
    prefix = conversation_prefix(ConversationRef(ANONYMOUS, conversation_id))
    names = [blob.name async for blob in container.list_blobs(name_starts_with=prefix)]
    for name in names:
        await container.delete_blob(name)
    return len(names)


async def test_a_conversation_deleted_mid_run_ends_the_run_naming_why(app: App):
    conversation, run_id, run = await waiting_run(app, WRITE)
    assert await delete_conversation_blobs(conversation) > 0

    [call_id] = run["pending_approvals"]
    assert (await answer(app, run_id, call_id, False))[0] == 202
    done = await app.run_until_done(run_id, within=30)

    assert done["status"] == "failed"
    assert (
        done["error"] == f"conversation {conversation} no longer exists in storage; the run ended"
    )
    status, problem, _ = await app.call("GET", f"/conversations/{conversation}")
    assert status == 404, problem
