"""One long-lived MCP session per server, usable from any task.

The SDK's transports are anyio context managers whose task groups and cancel scopes belong to
the task that entered them. So each session lives in its own background task (the *owner*),
which enters the transport and the client, hands the client over, and waits for a close signal.
Calls from any task share the session; only the owner ever enters or exits its contexts.

A session that fails (transport error, timeout) is *retired*: new calls get a fresh session at
once, and the retired one closes as soon as the calls still running on it are done, so one
slow or failed call never aborts its siblings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
from mcp import Client
from mcp.client import Transport
from mcp.client.session import ElicitationFnT
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

from agent.mcp.auth import AsyncTokenCredential, HttpCredentials, http_credentials
from agent.mcp.config import (
    McpServerConfig,
    SecretResolver,
    SseTransport,
    StdioTransport,
    StreamableHttpTransport,
)
from agent.mcp.failures import classify
from agent.mcp.tasks import TasksExtension

logger = logging.getLogger("agent.mcp")

CLIENT_INFO = Implementation(name="durable-mcp-agent", version="0.1.0")
STREAM_READ_TIMEOUT_SECONDS = 300.0  # server-to-client event streams idle for long periods
CLOSE_TIMEOUT_SECONDS = 10.0
PYTHON_COMMANDS = ("python", "python3")

T = TypeVar("T")


@dataclass(eq=False)
class _LiveSession:
    client: Client
    owner: asyncio.Task[None]
    closing: asyncio.Event
    in_flight: int = 0
    retired: bool = False

    @property
    def usable(self) -> bool:
        return not self.retired and not self.owner.done()


@dataclass
class _HttpStatusLog:
    """The last HTTP error status seen on a connection (the SDK reports 401 and 500 alike)."""

    last_error_status: int | None = None

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.last_error_status = response.status_code

    def take(self) -> int | None:
        status, self.last_error_status = self.last_error_status, None
        return status


@dataclass(eq=False)
class ServerConnection:
    """The session to one MCP server: opened on first use, shared, reopened after a failure."""

    config: McpServerConfig
    secrets: SecretResolver
    credential: AsyncTokenCredential | None = None
    # Asks a person when the server elicits during a call; None: the capability is not declared
    # (the SDK declares it exactly when a callback is given), so servers do not ask.
    elicitation: ElicitationFnT | None = None
    connects: int = 0  # sessions opened so far (tests and status use it)
    _live: _LiveSession | None = field(default=None, repr=False)
    _retired: set[_LiveSession] = field(default_factory=set, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _http_status: _HttpStatusLog = field(default_factory=_HttpStatusLog, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def connected(self) -> bool:
        return self._live is not None and self._live.usable

    def last_http_error_status(self) -> int | None:
        return self._http_status.take()

    async def use(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        """Run `operation` on the shared session, retiring the session if the transport failed."""
        live = await self._acquire()
        live.in_flight += 1
        try:
            return await operation(live.client)
        except Exception as exc:
            failure = classify(exc)
            if failure is not None and failure.kind.breaks_session:
                self._retire(live)
            raise
        finally:
            live.in_flight -= 1
            if live.retired and live.in_flight == 0:
                live.closing.set()

    async def _acquire(self) -> _LiveSession:
        live = self._live
        if live is not None and live.usable:
            return live
        async with self._lock:  # concurrent first calls open one session, not one each
            if self._closed:
                raise RuntimeError("the MCP pool is closed")
            live = self._live
            if live is None or not live.usable:
                if live is not None:
                    self._retire(live)
                self._live = None
                self._live = live = await self._open()
            return live

    async def _open(self) -> _LiveSession:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Client] = loop.create_future()
        # If the opener gives up first, nobody awaits `ready`: mark its outcome as seen.
        ready.add_done_callback(lambda done: done.cancelled() or done.exception())
        closing = asyncio.Event()
        owner = asyncio.create_task(self._own(ready, closing), name=f"mcp-session:{self.name}")
        self.connects += 1
        self._http_status.take()
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                client = await asyncio.shield(ready)
        except BaseException:
            # Gave up (timeout, failure, or our caller was cancelled): the owner must not linger.
            owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)
            raise
        return _LiveSession(client, owner, closing)

    async def _own(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        """The owner task: enter the transport and client, publish the client, wait to close."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack)
                client = await stack.enter_async_context(
                    Client(
                        transport,
                        read_timeout_seconds=self.config.timeout_seconds,
                        client_info=CLIENT_INFO,
                        elicitation_callback=self.elicitation,
                        cache=None,  # the pool keeps its own catalog, with its own TTL
                        # A server may answer a long call with a task (agent.mcp.tasks).
                        extensions=[TasksExtension()],
                    )
                )
                if ready.done():  # the opener gave up meanwhile
                    return
                ready.set_result(client)
                await closing.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
                return
            failure = classify(exc)
            cause = failure.cause if failure is not None else type(exc).__name__
            # Calls in flight already got their own error; this only records why the session ended.
            logger.warning("mcp session ended server=%s cause=%s", self.name, cause)

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Transport:
        transport = self.config.transport
        timeout = self.config.timeout_seconds
        if isinstance(transport, StdioTransport):
            env = {name: await value.resolve(self.secrets) for name, value in transport.env.items()}
            command = transport.command
            if command in PYTHON_COMMANDS:
                # "python" means this app's interpreter with this app's packages (on Azure they are
                # found through PYTHONPATH, which the SDK does not pass to the child by default).
                command = sys.executable
                if "PYTHONPATH" in os.environ:
                    env.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
            params = StdioServerParameters(
                command=command, args=list(transport.args), env=env or None, cwd=transport.cwd
            )
            return stdio_client(params)
        credentials = await http_credentials(
            self.name, self.config.auth, self.secrets, self.credential
        )
        if isinstance(transport, SseTransport):
            return sse_client(
                transport.url,
                headers=credentials.headers,
                auth=credentials.auth,
                timeout=timeout,
                sse_read_timeout=max(timeout, STREAM_READ_TIMEOUT_SECONDS),
                httpx_client_factory=self._http_client_factory,
            )
        assert isinstance(transport, StreamableHttpTransport)
        http_client = await stack.enter_async_context(self._http_client(credentials, timeout))
        return streamable_http_client(transport.url, http_client=http_client)

    def _http_client(self, credentials: HttpCredentials, timeout: float) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=credentials.headers,
            auth=credentials.auth,
            timeout=httpx2.Timeout(timeout, read=max(timeout, STREAM_READ_TIMEOUT_SECONDS)),
            event_hooks={"response": [self._http_status.on_response]},
        )

    def _http_client_factory(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            auth=auth,
            timeout=timeout,
            event_hooks={"response": [self._http_status.on_response]},
        )

    def _retire(self, live: _LiveSession) -> None:
        if live.retired:
            return
        live.retired = True
        if self._live is live:
            self._live = None
        self._retired.add(live)
        live.owner.add_done_callback(lambda _task: self._retired.discard(live))
        if live.in_flight == 0:
            live.closing.set()

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            if self._live is not None:
                self._retire(self._live)
            sessions = list(self._retired)
            for live in sessions:
                live.closing.set()  # close now, even with calls in flight: the pool is shutting down
            owners = [live.owner for live in sessions]
            if owners:
                _done, pending = await asyncio.wait(owners, timeout=CLOSE_TIMEOUT_SECONDS)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*owners, return_exceptions=True)
