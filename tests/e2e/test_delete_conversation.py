"""`DELETE /api/conversations/{id}` on the local host: the conversation's blobs and its runs'
Durable instances go; another caller, or a second delete, gets 404; a running turn gets 409."""

from __future__ import annotations

import os

from azure.storage.blob.aio import ContainerClient

from tests.e2e.conftest import App

ALICE = {"x-ms-client-principal-id": "alice-deletes"}
BOB = {"x-ms-client-principal-id": "bob-deletes"}


async def blobs_named(fragment: str) -> list[str]:
    """Every blob of the test's container whose name contains `fragment`."""
    async with ContainerClient.from_connection_string(
        os.environ["CONVERSATIONS_STORAGE"], os.environ["CONVERSATIONS_CONTAINER"]
    ) as container:
        return [blob.name async for blob in container.list_blobs() if fragment in blob.name]


async def test_deleting_a_conversation_leaves_no_blob_and_no_durable_instance(app: App):
    conversation = await app.new_conversation(**ALICE)
    status, run, _ = await app.send(conversation, '/tool web__greet {"name": "Ada"}', 30, **ALICE)
    assert status == 200 and run["status"] == "completed", run
    client = app.durable_client()
    assert (await client.get_status(run["run_id"])).runtime_status is not None
    stored = await blobs_named(conversation)  # meta, id claim, transcript, tool call, run events
    assert any(name.endswith("transcript.jsonl") for name in stored), stored
    assert any(name.endswith("events.jsonl") for name in stored), stored

    status, body, _ = await app.call("DELETE", f"/conversations/{conversation}", headers=BOB)
    assert status == 404, body  # not Bob's: nothing of Alice's goes
    assert await blobs_named(conversation) == stored

    status, body, _ = await app.call("DELETE", f"/conversations/{conversation}", headers=ALICE)
    assert (status, body) == (204, None)
    assert await blobs_named(conversation) == []
    assert (await client.get_status(run["run_id"])).runtime_status is None
    status, _, _ = await app.call("GET", f"/conversations/{conversation}", headers=ALICE)
    assert status == 404
    status, body, _ = await app.call("DELETE", f"/conversations/{conversation}", headers=ALICE)
    assert status == 404 and conversation in body["detail"]


async def test_a_conversation_with_a_running_turn_is_not_deleted(app: App):
    conversation = await app.new_conversation(**ALICE)
    app.model.brain.delay(60, then=None)
    status, first, _ = await app.send(conversation, "slow one", **ALICE)
    assert status == 202
    await app.model.server.wait_for_requests(1)  # the model call is in flight
    status, _, headers = await app.call("DELETE", f"/conversations/{conversation}", headers=ALICE)
    assert status == 409 and headers["Content-Type"].startswith("application/problem+json")
    assert await blobs_named(conversation)  # nothing half-deleted
    status, _, _ = await app.call("POST", f"/runs/{first['run_id']}/cancel", headers=ALICE)
    assert status in (200, 202)
    await app.run_until_done(first["run_id"], **ALICE)
    status, _, _ = await app.call("DELETE", f"/conversations/{conversation}", headers=ALICE)
    assert status == 204
