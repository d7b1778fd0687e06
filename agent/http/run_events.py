"""`GET /api/runs/{run_id}/events`: a run's events (agent.events) as Server-Sent Events.

Each event is one SSE message: `id: <seq>`, `event: <type>`, `data: <one JSON object with
type and seq>`. A client resumes after the last id it saw with the `Last-Event-ID` header (what
EventSource sends when it reconnects) or `?after=N`. The stream ends after `run_finished`.

How it is served
- Streaming (`AGENT_HTTP_STREAMING` on; see agent.http_streaming): the response is a streaming
  body that follows the run's log as it grows (a small range read per poll, quicker while events
  flow, slower while idle), with a comment line as heartbeat. A stream ends after
  `MAX_STREAM_SECONDS` (under the 230 s a front end allows an HTTP response) with a `retry:`
  hint: the client reconnects with Last-Event-ID and loses nothing.
- Without streaming (a host that buffers responses): the same SSE body, ended as soon as some
  events are there (or after a bounded wait), with a short `retry:`, so EventSource simply
  reconnects: long polling in SSE's clothes.
- `?wait=<seconds>`: the long-poll fallback for clients that do not speak SSE: JSON
  `{run_id, events: [...], last_event_id, finished}` as soon as there are events after `after`,
  or when `wait` passes (capped like a message's `wait_seconds`).

The log is written by activities; a run that ended without writing `run_finished` (cancelled,
or crashed: Durable runs no `finish_turn` then) gets one here, numbered after the log's last
event, from Durable's status. Nothing is written on a GET.

Caller isolation: the run is looked up as `GET /api/runs/{id}` does (another caller's run is
404) before anything is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.errors import BadRequest
from agent.events import TERMINAL_TYPE
from agent.http.kit import Call, api, json_response
from agent.http.models import TERMINAL
from agent.http.runs import run_view
from agent.runtime import Runtime
from storage.events import EventReader
from storage.models import ConversationRef

log = logging.getLogger(__name__)

SSE_MEDIA_TYPE = "text/event-stream"
MAX_STREAM_SECONDS = 200.0
BUFFERED_WAIT_SECONDS = 20.0  # without streaming: how long one response waits for events
HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 1_000
BUFFERED_RETRY_MILLISECONDS = 250
STATUS_EVERY_SECONDS = 2.0  # how often an idle follower asks Durable whether the run ended
POLL_MIN_SECONDS = 0.05
POLL_MAX_SECONDS = 0.5
# While the model writes (a step started, text flowing), text is due any moment: poll at most
# this far apart, so the time to the first delta is not a slow idle poll.
POLL_STREAMING_MAX_SECONDS = 0.1
STREAMING_TYPES = frozenset({"step_started", "text_delta"})
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --- request --------------------------------------------------------------------------------------


def last_event_id(req: func.HttpRequest) -> int:
    """Where to resume: `Last-Event-ID` (EventSource's reconnect) or `?after=`; 0 = the start."""
    raw = req.headers.get("last-event-id") or req.params.get("after") or "0"
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise BadRequest("Last-Event-ID (or 'after') must be an event id: a whole number >= 0")
    return value


def wait_parameter(req: func.HttpRequest, rt: Runtime) -> float | None:
    raw = req.params.get("wait")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise BadRequest("'wait' must be a number of seconds >= 0")
    return min(seconds, float(rt.settings.limits.wait_seconds_cap))


# --- following a run --------------------------------------------------------------------------------


@dataclass
class RunFollower:
    """A run's events after `after`, as they are recorded, ending with `run_finished`."""

    rt: Runtime
    client: df.DurableOrchestrationClient
    run_id: str
    owner: str
    reader: EventReader
    after: int
    finished: bool = False
    seen: int = 0  # events in the log so far (the next one is seen + 1)
    last_type: str = ""
    _status_checked: float = field(default_factory=time.monotonic)

    async def poll(self) -> list[dict[str, Any]]:
        """Events recorded since the last poll (and after `after`)."""
        fresh = await self.reader.poll()
        if fresh:
            self.seen, self.last_type = fresh[-1].seq, fresh[-1].type
        wire = [event.wire() for event in fresh if event.seq > self.after]
        if any(event.type == TERMINAL_TYPE for event in fresh):
            self.finished = True
        if wire:
            self.after = wire[-1]["seq"]
        return wire

    async def ended_without_saying(self) -> list[dict[str, Any]]:
        """When Durable says the run is over but its log has no `run_finished` (cancelled, or
        the orchestration failed), that event, numbered after the log's last one."""
        self._status_checked = time.monotonic()
        view = await run_view(self.rt, self.client, self.run_id, self.owner)
        if view["status"] not in TERMINAL:
            return []
        late = await self.poll()  # it may have finished writing meanwhile
        if self.finished:
            return late
        self.finished = True
        event: dict[str, Any] = {
            "type": TERMINAL_TYPE,
            "seq": self.seen + 1,
            "status": view["status"],
        }
        for name in ("answer", "error"):
            if view.get(name) is not None:
                event[name] = view[name]
        return [*late, event] if self.seen + 1 > self.after else late

    def status_due(self) -> bool:
        return time.monotonic() - self._status_checked >= STATUS_EVERY_SECONDS

    async def wait_for_events(self, seconds: float) -> list[dict[str, Any]]:
        """The next events, waiting up to `seconds` for some (none when it passes)."""
        deadline = time.monotonic() + seconds
        pause = POLL_MIN_SECONDS
        while not self.finished:
            events = await self.poll()
            if not events and self.status_due():
                events = await self.ended_without_saying()
            if events:
                return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await asyncio.sleep(min(pause, remaining))
            most = (
                POLL_STREAMING_MAX_SECONDS
                if self.last_type in STREAMING_TYPES
                else POLL_MAX_SECONDS
            )
            pause = min(pause * 2, most)
        return []


def sse_message(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n".encode()


async def sse_stream(
    follower: RunFollower, seconds: float, first: list[dict[str, Any]]
) -> AsyncIterator[bytes]:
    """The streaming body: events as they come, a heartbeat while idle, for `seconds` at most."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    for event in first:
        yield sse_message(event)
    deadline = time.monotonic() + seconds
    try:
        while not follower.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return  # the client reconnects with Last-Event-ID
            events = await follower.wait_for_events(min(HEARTBEAT_SECONDS, remaining))
            if not events:
                yield b": keep-alive\n\n"
            for event in events:
                yield sse_message(event)
    except Exception:
        # The response has started: no status to send any more. End the stream; the client
        # reconnects from the last id it got.
        log.exception("run event stream failed", extra={"run_id": follower.run_id})


# --- the route ----------------------------------------------------------------------------------------


@api
async def run_events(call: Call, client: df.DurableOrchestrationClient) -> Any:
    """A func.HttpResponse, or (streaming) a starlette streaming response."""
    from agent import http_streaming

    rt, owner = call.rt, call.owner()
    run_id = call.path_id("run_id")
    after = last_event_id(call.req)
    wait = wait_parameter(call.req, rt)
    view = await run_view(rt, client, run_id, owner)  # 404 for a run that is not the caller's
    ref = ConversationRef(owner, view["conversation_id"])
    follower = RunFollower(rt, client, run_id, owner, rt.events.reader(ref, run_id), after)
    first = await follower.poll()
    if not follower.finished and view["status"] in TERMINAL:
        first += await follower.ended_without_saying()
    if wait is not None:
        events = first or await follower.wait_for_events(wait)
        return json_response(
            {
                "run_id": run_id,
                "events": events,
                "last_event_id": follower.after,
                "finished": follower.finished,
            }
        )
    if follower.finished and not first:
        # Nothing after the last event of a finished run: 204 tells EventSource to stop
        # reconnecting (any other end of a stream makes it come back).
        return func.HttpResponse(status_code=204)
    if http_streaming.enabled():
        return http_streaming.streaming_response(
            sse_stream(follower, MAX_STREAM_SECONDS, first), SSE_MEDIA_TYPE, SSE_HEADERS
        )
    return await buffered_sse(follower, first)


async def buffered_sse(follower: RunFollower, first: list[dict[str, Any]]) -> func.HttpResponse:
    """For hosts that cannot stream: what is there (waiting a little for something), then
    end with a short retry so EventSource comes back for the rest."""
    events = first or await follower.wait_for_events(BUFFERED_WAIT_SECONDS)
    retry = RETRY_MILLISECONDS if follower.finished else BUFFERED_RETRY_MILLISECONDS
    body = f"retry: {retry}\n\n".encode() + b"".join(sse_message(e) for e in events)
    if not events:
        body += b": no events yet\n\n"
    return func.HttpResponse(body, status_code=200, mimetype=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
