"""MCP servers on loopback for tests and benchmarks.

- `AsgiServer`: any ASGI app (the demo server over streamable HTTP or SSE) served by uvicorn in a
  background thread on an ephemeral port; `start()` returns once it accepts connections, `stop()`
  kills it (open streams are dropped, as when a process dies) and `start()` again restarts it on
  the same port.
- `demo_http_app` / `demo_sse_app`: the demo server's ASGI apps (what a user runs; the test
  helpers' server, `helper_mcp.py`, has its own), optionally behind `require_api_key` (401 unless
  `X-Client-ID` / `X-API-Key` match) or `BearerCheck`.
- `demo_stdio_command`, `time_stdio_command`, `everything_stdio_command`: commands that start a
  server on stdio (the demo; `mcp-server-time` from PyPI; `@modelcontextprotocol/server-everything`
  from node_modules).
- `EverythingHttpServer`: server-everything over streamable HTTP as a node subprocess.

Readiness is an event (uvicorn's startup hook, a log line), each wait bounded: no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from samples.demo_mcp import build_server

REPO_ROOT = Path(__file__).resolve().parents[1]
EVERYTHING_ENTRY = (
    REPO_ROOT / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- serving an ASGI app --------------------------------------------------------------------


class _SignallingServer(uvicorn.Server):
    """A uvicorn server that sets an event once it is listening (or failed to start)."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self._ready.set()


# The demo server's tools (seed 004's six, and seed 001's knowledge base tool): what every
# transport lists.
DEMO_TOOLS = frozenset(
    {
        "greet",
        "calculate",
        "get_system_info",
        "save_text_file",
        "read_text_file",
        "get_weather",
        "get_knowledge_base",
    }
)


def listening_socket(port: int) -> socket.socket:
    """A TCP socket bound on loopback for uvicorn's `serve(sockets=...)`.

    Made with `IPPROTO_TCP`, not the default protocol 0: asyncio turns Nagle off only on
    connections whose socket says TCP (`base_events._set_nodelay` checks `sock.proto`), and
    accepted connections inherit the listener's. Without it every request waited for the
    client's delayed ACK: 44 ms per request on loopback (1 ms with it), 45 ms of every MCP
    tool call in tests and benchmarks.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.set_inheritable(True)
    return sock


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class AsgiServer:
    """Serve `app_factory()` on 127.0.0.1; a fresh app per start (an MCP session manager runs once)."""

    app_factory: Callable[[], AsgiApp]
    port: int = 0
    requests: int = 0  # HTTP requests seen, counted by a thin wrapper around the app
    _server: _SignallingServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def url(self, path: str = "/mcp") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def _counting(self, app: AsgiApp) -> AsgiApp:
        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.requests += 1
            await app(scope, receive, send)

        return counted

    def start(self) -> AsgiServer:
        if self._thread is not None:
            raise RuntimeError("already running")
        sock = listening_socket(self.port)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        config = uvicorn.Config(
            self._counting(self.app_factory()),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = _SignallingServer(config, ready)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            daemon=True,
            name=f"asgi-{self.port}",
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_SECONDS) or not self._server.started:
            self.stop()
            raise RuntimeError(f"the ASGI server on port {self.port} did not start")
        return self

    def stop(self) -> None:
        """Stop at once, dropping open connections and streams (like a crashed server)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            raise RuntimeError(f"the ASGI server on port {self.port} did not stop")
        self._server = None
        self._thread = None

    def restart(self) -> AsgiServer:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def astart(self) -> AsgiServer:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the demo server's apps, with optional auth ---------------------------------------------


async def _reject(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"error": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def require_api_key(
    app: AsgiApp,
    client_id: str,
    api_key: str,
    client_id_header: str = "X-Client-ID",
    api_key_header: str = "X-API-Key",
) -> AsgiApp:
    """401 unless both headers match (compared in constant time); lifespan passes through."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            sent_id = _header(scope, client_id_header) or ""
            sent_key = _header(scope, api_key_header) or ""
            id_ok = hmac.compare_digest(sent_id.encode(), client_id.encode())
            key_ok = hmac.compare_digest(sent_key.encode(), api_key.encode())
            if not (id_ok and key_ok):
                await _reject(send, 401, "missing or invalid client id / API key")
                return
        await app(scope, receive, send)

    return guarded


@dataclass
class BearerCheck:
    """Accepts any token in `valid`; records the tokens it saw (to show refreshes reach the server)."""

    valid: set[str]
    seen: list[str] = field(default_factory=list)

    def wrap(self, app: AsgiApp) -> AsgiApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                header = _header(scope, "Authorization") or ""
                token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
                self.seen.append(token)
                if token not in self.valid:
                    await _reject(send, 401, "missing or invalid bearer token")
                    return
            await app(scope, receive, send)

        return guarded


def demo_http_app(
    sandbox_dir: str | os.PathLike[str] | None = None, **server_kwargs: Any
) -> AsgiApp:
    """The demo server over streamable HTTP at `/mcp` (a new server, new state, each call)."""
    return build_server(sandbox_dir=sandbox_dir, **server_kwargs).streamable_http_app()


def demo_sse_app(
    sandbox_dir: str | os.PathLike[str] | None = None, **server_kwargs: Any
) -> AsgiApp:
    """The demo server over SSE at `/sse` (+ `/messages/`)."""
    return build_server(sandbox_dir=sandbox_dir, **server_kwargs).sse_app()


# The demo's greet stamps the time ("Hello, Ada! Current time: 2026-12-01 23:10:00 UTC").
GREETING_TIMESTAMP = re.compile(r" Current time: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$")


def without_timestamp(text: str) -> str:
    """A greeting without its timestamp ("Hello, Ada!"), for tests that compare whole texts."""
    return GREETING_TIMESTAMP.sub("", text)


# --- stdio servers --------------------------------------------------------------------------


@dataclass(frozen=True)
class StdioCommand:
    command: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def transport_config(self) -> dict[str, Any]:
        """The `transport` object of an MCP_SERVERS entry that starts this command."""
        config: dict[str, Any] = {"type": "stdio", "command": self.command, "args": list(self.args)}
        if self.env:
            config["env"] = dict(self.env)
        if self.cwd:
            config["cwd"] = self.cwd
        return config


def demo_stdio_command(sandbox_dir: str | os.PathLike[str] | None = None) -> StdioCommand:
    args = ["-m", "samples.demo_mcp", "--transport", "stdio"]
    if sandbox_dir is not None:
        args += ["--sandbox", str(sandbox_dir)]
    return StdioCommand(sys.executable, tuple(args), {"PYTHONPATH": str(REPO_ROOT)}, str(REPO_ROOT))


def time_stdio_command() -> StdioCommand:
    """`mcp-server-time` (PyPI), a server no one here wrote."""
    return StdioCommand(sys.executable, ("-m", "mcp_server_time", "--local-timezone", "UTC"))


def node_available() -> bool:
    return shutil.which("node") is not None and EVERYTHING_ENTRY.is_file()


def everything_stdio_command() -> StdioCommand:
    """`@modelcontextprotocol/server-everything` (npm) on stdio."""
    return StdioCommand(shutil.which("node") or "node", (str(EVERYTHING_ENTRY), "stdio"))


@dataclass
class EverythingHttpServer:
    """server-everything over streamable HTTP (`node dist/index.js streamableHttp`, `PORT` env)."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _drain: threading.Thread | None = field(default=None, repr=False)

    def url(self) -> str:
        return f"http://{HOST}:{self.port}/mcp"

    def start(self) -> EverythingHttpServer:
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [shutil.which("node") or "node", str(EVERYTHING_ENTRY), "streamableHttp"],
            env={**os.environ, "PORT": str(self.port)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # it logs every request there
            stderr=subprocess.PIPE,
        )
        listening = threading.Event()
        self._drain = threading.Thread(target=self._watch_stderr, args=(listening,), daemon=True)
        self._drain.start()
        if not listening.wait(START_TIMEOUT_SECONDS) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("server-everything did not start listening")
        return self

    def _watch_stderr(self, listening: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None
        # Read to the end so the pipe never fills; readiness is the "listening on port" line.
        for line in self.process.stderr:
            if b"listening on port" in line:
                listening.set()
        listening.set()  # exited: unblock start(), which then sees the process is gone

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(STOP_TIMEOUT_SECONDS)
        if self._drain is not None:
            self._drain.join(STOP_TIMEOUT_SECONDS)
        self.process = None

    def __enter__(self) -> EverythingHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_entry(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """An MCP_SERVERS entry for a streamable HTTP server (`extra`: auth, tools, ...)."""
    return {"name": name, "transport": {"type": "streamable_http", "url": url}, **extra}


def sse_entry(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": {"type": "sse", "url": url}, **extra}


def stdio_entry(name: str, command: StdioCommand, **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": command.transport_config(), **extra}


def mcp_servers_json(*servers: dict[str, Any]) -> str:
    """MCP_SERVERS text for the given server entries."""
    return json.dumps({"mcp_servers": list(servers)})


@contextlib.contextmanager
def serving(app_factory: Callable[[], AsgiApp]) -> Any:
    """`with serving(demo_http_app) as server: server.url()`."""
    server = AsgiServer(app_factory).start()
    try:
        yield server
    finally:
        server.stop()
