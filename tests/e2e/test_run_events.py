"""A run's events over Server-Sent Events, on the local host with the real flow (Durable
orchestration, activities, Azurite, the model server streaming through the openai client, MCP
servers): what a client reads from the start matches the transcript, a reconnect with
Last-Event-ID continues without gap or duplicate, and another caller gets 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp

from offline_model import Completion, Paced, Reply
from offline_model.brains import last_user_text
from tests.e2e.conftest import FUNCTION_KEY, App

ALICE = {"x-ms-client-principal-id": "alice-events"}
MALLORY = {"x-ms-client-principal-id": "mallory-events"}


async def read_sse(
    app: App,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
) -> tuple[int, list[dict[str, Any]], list[str]]:
    keyed = {"x-functions-key": FUNCTION_KEY, **(headers or {})}
    return await read_stream(app.http, app.api, run_id, headers=keyed, stop_after=stop_after)


async def read_stream(
    http: aiohttp.ClientSession,
    api: str,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    until: str | None = None,
    within: float = 30.0,
) -> tuple[int, list[dict[str, Any]], list[str]]:
    """(status, events, ids) of `GET {api}/runs/{id}/events`, read until the server ends the
    stream, or `stop_after` events or an event of type `until` arrived (then the client hangs
    up)."""
    sent = {"Accept": "text/event-stream", **(headers or {})}
    events: list[dict[str, Any]] = []
    ids: list[str] = []
    timeout = aiohttp.ClientTimeout(total=within)
    url = f"{api}/runs/{run_id}/events"
    async with http.get(url, headers=sent, timeout=timeout) as response:
        if response.status != 200:
            return response.status, [], []
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Length" not in response.headers  # streamed, not buffered
        fields: dict[str, str] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line:
                if not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                event = json.loads(fields["data"])
                assert fields["event"] == event["type"] and fields["id"] == str(event["seq"])
                events.append(event)
                ids.append(fields["id"])
                if (stop_after is not None and len(events) >= stop_after) or event["type"] == until:
                    break
            fields = {}
    return 200, events, ids


@contextmanager
def answering(app: App, content: str, reply: Reply) -> Iterator[None]:
    """The model answers a message of exactly `content` (its first step) with `reply`. Not a
    scripted item: runs of other tests still in flight (scheduled deliveries) would take it."""
    brain = app.model.brain
    previous = brain.fallback

    def route(request: dict[str, Any]) -> Reply:
        messages = request.get("messages") or []
        first_step = messages and messages[-1].get("role") == "user"
        if first_step and last_user_text(messages) == content:
            return reply
        return previous(request)

    brain.fallback = route
    try:
        yield
    finally:
        brain.fallback = previous


async def start(app: App, content: str, **headers: str) -> tuple[str, str]:
    conversation = await app.new_conversation(**headers)
    status, body, _ = await app.send(conversation, content, **headers)
    assert status == 202, body
    return conversation, body["run_id"]


def answer_text(events: list[dict[str, Any]], step: int) -> str:
    text = ""
    for event in events:
        if event.get("step") == step and event["type"] == "text_reset":
            text = ""
        elif event.get("step") == step and event["type"] == "text_delta":
            text += event["delta"]
    return text


async def test_a_client_reading_from_the_start_gets_the_sequence_the_transcript_implies(
    app: App,
):
    conversation, run_id = await start(app, '/tool web__greet {"name": "Ada"}', **ALICE)
    status, events, _ = await read_sse(app, run_id, headers=ALICE)
    assert status == 200
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"

    _, body, _ = await app.call("GET", f"/conversations/{conversation}", headers=ALICE)
    messages = [m for m in body["messages"] if m.get("run_id") == run_id]
    [asked] = [m for m in messages if m["role"] == "assistant" and m.get("tool_calls")]
    [result] = [m for m in messages if m["role"] == "tool"]
    final = messages[-1]
    [call] = asked["tool_calls"]
    by_call = [
        (e["type"], e["name"], e["arguments"])
        for e in events
        if e.get("tool_call_id") == call["id"] and e["type"].startswith("tool_call")
    ]
    assert by_call == [
        (kind, call["name"], call["arguments"])
        for kind in ("tool_call_requested", "tool_call_started", "tool_call_completed")
    ]
    completed = next(e for e in events if e["type"] == "tool_call_completed")
    assert completed["result"] == result["content"]
    steps = [e["step"] for e in events if e["type"] == "step_started"]
    assert steps == [1, 2]
    assert answer_text(events, 2) == final["content"]
    assert events[-1]["status"] == "completed" and events[-1]["answer"] == final["content"]
    types = [e["type"] for e in events]
    assert types.index("step_completed") < types.index("tool_call_started")


async def test_a_client_that_reconnects_with_last_event_id_gets_the_rest_with_no_gap_or_duplicate(
    app: App,
):
    long_answer = "Every piece of this answer arrives once, in order. " * 8
    paced = Paced(Completion(content=long_answer), seconds_per_chunk=0.01)
    with answering(app, "tell me something long", paced):
        _, run_id = await start(app, "tell me something long", **ALICE)
        _, first, first_ids = await read_sse(app, run_id, headers=ALICE, stop_after=4)
    assert len(first) == 4
    resumed = {"Last-Event-ID": first_ids[-1], **ALICE}
    _, rest, _ = await read_sse(app, run_id, headers=resumed)
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1]["type"] == "run_finished"
    assert answer_text(first + rest, 1) == long_answer == rest[-1]["answer"]
    _, whole, _ = await read_sse(app, run_id, headers=ALICE)
    assert whole == first + rest  # the same events, whenever and however they are read


async def test_a_finished_run_read_past_its_last_event_answers_no_content(app: App):
    _, run_id = await start(app, "hello", **ALICE)
    _, events, ids = await read_sse(app, run_id, headers=ALICE)
    assert events[-1]["type"] == "run_finished"
    status, _, _ = await read_sse(app, run_id, headers={"Last-Event-ID": ids[-1], **ALICE})
    assert status == 204  # EventSource stops reconnecting


async def test_the_long_poll_fallback_returns_the_events_as_json(app: App):
    _, run_id = await start(app, "hello", **ALICE)
    await app.run_until_done(run_id, **ALICE)
    status, body, _ = await app.call("GET", f"/runs/{run_id}/events?wait=5", headers=ALICE)
    assert status == 200 and body["finished"] is True
    assert body["events"][-1]["type"] == "run_finished"
    assert body["last_event_id"] == body["events"][-1]["seq"]
    status, later, _ = await app.call(
        "GET", f"/runs/{run_id}/events?wait=5&after={body['events'][1]['seq']}", headers=ALICE
    )
    assert [e["seq"] for e in later["events"]] == [e["seq"] for e in body["events"][2:]]


async def test_another_caller_gets_404_for_a_runs_events(app: App):
    _, run_id = await start(app, "hello", **ALICE)
    status, events, _ = await read_sse(app, run_id, headers=MALLORY)
    assert status == 404 and events == []
    status, problem, _ = await app.call("GET", f"/runs/{run_id}/events?wait=1", headers=MALLORY)
    assert status == 404 and "run_id" not in problem


async def test_a_cancelled_run_ends_its_stream_with_run_finished_cancelled(app: App):
    held = Paced(Completion(content="slow"), hold_after_chunks=2, hold_seconds=20)
    with answering(app, "wait for it", held):
        _, run_id = await start(app, "wait for it", **ALICE)
        _, started, _ = await read_sse(app, run_id, headers=ALICE, stop_after=2)
    assert [e["type"] for e in started] == ["run_started", "step_started"]
    status, body, _ = await app.call("POST", f"/runs/{run_id}/cancel", headers=ALICE)
    assert status == 202, body
    app.model.server.release_delays()
    _, events, _ = await read_sse(app, run_id, headers=ALICE)
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "cancelled"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_a_bad_last_event_id_is_a_400_problem(app: App):
    _, run_id = await start(app, "hello", **ALICE)
    status, problem, headers = await app.call(
        "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "soon", **ALICE}
    )
    assert status == 400 and "Last-Event-ID" in problem["detail"]
    assert headers["Content-Type"].startswith("application/problem+json")


async def test_without_streaming_a_client_reconnecting_on_each_buffered_answer_gets_every_event(
    app: App, monkeypatch
):
    # A host that cannot stream: each answer carries the events there are, then EventSource
    # reconnects with Last-Event-ID (the SSE `retry` hint), until 204 says the run is over.
    monkeypatch.setenv("AGENT_HTTP_STREAMING", "false")
    _, run_id = await start(app, '/tool web__greet {"name": "Bo"}', **ALICE)
    events: list[dict[str, Any]] = []
    for _ in range(50):
        last = {"Last-Event-ID": str(events[-1]["seq"])} if events else {}
        async with app.http.get(
            f"{app.api}/runs/{run_id}/events",
            headers={"x-functions-key": FUNCTION_KEY, **ALICE, **last},
        ) as response:
            if response.status == 204:
                break
            assert response.status == 200 and response.content_length is not None
            text = await response.text()
        assert text.startswith("retry: ")
        events += [
            json.loads(line[len("data: ") :])
            for line in text.splitlines()
            if line.startswith("data: ")
        ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "completed"
