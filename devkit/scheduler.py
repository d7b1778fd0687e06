"""Test harness for the Scheduler: served in the test's own event loop, so a test can both talk
to it over MCP and drive its dispatcher (`await scheduler.dispatcher.run_once()`) deterministically.

- `FakeClock`: Unix seconds the test moves by hand; it starts at the real time so signatures
  stay within the 5-minute window the reference verifier checks against the real clock.
- `ServedApp`: an ASGI app under uvicorn on 127.0.0.1, ephemeral port, in this loop.
- `WebhookReceiver`: an aiohttp server that records each callback and answers with scripted
  statuses (200 once the script runs out).
- `mcp_session(url, headers)`: a real MCP `ClientSession` over streamable HTTP.

Readiness and arrivals are awaited as events, each wait bounded: no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from aiohttp import web
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from devkit.mcp_servers import listening_socket
from samples.scheduler_mcp import Scheduler, SchedulerConfig

HOST = "127.0.0.1"
CLIENT_ID = "test-client"
API_KEY = "test-api-key-0123456789"
AUTH_HEADERS = {"X-Client-ID": CLIENT_ID, "X-API-Key": API_KEY}
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"scheduler-test-secret-32-bytes!!").decode()
WAIT_SECONDS = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def iso(self, offset_seconds: float = 0.0) -> str:
        return datetime.fromtimestamp(self.now + offset_seconds, tz=UTC).isoformat()


def free_port() -> int:
    """A port that was free a moment ago (for a server in another process, or none at all)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- serving ASGI in this loop -----------------------------------------------------------


class _ReadyServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


@dataclass
class ServedApp:
    app: Any
    port: int = 0
    _server: _ReadyServer | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def url(self, path: str = "/mcp") -> str:
        return f"http://{HOST}:{self.port}{path}"

    async def start(self) -> ServedApp:
        sock = listening_socket(self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
        )
        self._server = _ReadyServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        await asyncio.wait_for(self._server.ready.wait(), WAIT_SECONDS)
        if not self._server.started:
            await self.stop()
            raise RuntimeError("the ASGI app did not start (see the lifespan error above)")
        return self

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await asyncio.wait_for(self._task, WAIT_SECONDS)
        self._server = self._task = None


# --- the callback receiver ----------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.startswith("webhook-")}

    @property
    def schedule_ids(self) -> list[str]:
        return [item["schedule_id"] for item in self.document["items"]]


class WebhookReceiver:
    def __init__(self) -> None:
        self.callbacks: list[Callback] = []
        # What to answer, in order: a status, or (status, headers); 200 once it runs out.
        self.script: deque[int | tuple[int, dict[str, str]]] = deque()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str = "/api/scheduler/callback", query: str = "") -> str:
        return f"http://{HOST}:{self.port}{path}" + (f"?{query}" if query else "")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = self.script.popleft() if self.script else 200
        status, reply_headers = answer if isinstance(answer, tuple) else (answer, {})
        async with self._arrived:
            self.callbacks.append(Callback(request.path, request.query_string, headers, body))
            self._arrived.notify_all()
        return web.json_response({"status": status}, status=status, headers=reply_headers)

    async def wait_for(self, count: int) -> list[Callback]:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.callbacks) >= count), WAIT_SECONDS
            )
        return list(self.callbacks)


# --- the scheduler -----------------------------------------------------------------------


def scheduler_config(state_path: Path, **overrides: Any) -> SchedulerConfig:
    options: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "api_key": API_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "state_path": state_path,
        "tick_seconds": None,  # tests tick by hand unless they ask for the background loop
        "request_timeout_seconds": 5.0,
    }
    return SchedulerConfig(**{**options, **overrides})


@dataclass
class RunningScheduler:
    scheduler: Scheduler
    served: ServedApp

    @property
    def url(self) -> str:
        return self.served.url()

    async def stop(self) -> None:
        await self.served.stop()


@contextlib.asynccontextmanager
async def mcp_session(
    url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=AUTH_HEADERS if headers is None else headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def signed_callback(items: list[dict[str, Any]]) -> tuple[dict[str, str], str]:
    """Headers and body of a `conversations.due` callback signed as the Scheduler signs it."""
    from standardwebhooks import Webhook

    body = json.dumps({"type": "conversations.due", "items": items})
    webhook_id = f"msg_devkit_{time.time_ns()}"
    now = datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign(webhook_id, now, body),
        "content-type": "application/json",
    }
    return headers, body
