"""Our sample servers on loopback for the suite: the real apps, served in this process."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from devkit.mcp_servers import AsgiApp, AsgiServer, Receive, Scope, Send, demo_http_app
from samples.scheduler_mcp import Scheduler, SchedulerConfig

WEBHOOK_SECRET = "whsec_" + "Y29uZm9ybWFuY2UtcnVuLW5vdC1hLXJlYWwtc2VjcmV0"  # nothing is delivered


@contextlib.contextmanager
def serve_demo(sandbox: Path) -> Iterator[str]:
    with AsgiServer(lambda: demo_http_app(sandbox_dir=sandbox)) as server:
        yield server.url()


def with_credentials(app: AsgiApp, headers: dict[str, str]) -> AsgiApp:
    """`app` with `headers` added to every HTTP request that lacks them: the suite sends no
    credentials, and the Scheduler's key check comes before (and apart from) the protocol."""
    extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def credentialed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            present = {name for name, _value in scope["headers"]}
            added = [(name, value) for name, value in extra if name not in present]
            scope = {**scope, "headers": [*scope["headers"], *added]}
        await app(scope, receive, send)

    return credentialed


@contextlib.contextmanager
def serve_scheduler(state_path: Path) -> Iterator[str]:
    # A key made for this run only: nothing outside it ever holds one.
    config = SchedulerConfig(
        client_id="conformance",
        api_key=secrets.token_urlsafe(32),
        webhook_secret=WEBHOOK_SECRET,
        state_path=state_path,
        tick_seconds=None,  # nothing is scheduled: no dispatcher
    )
    headers = {"X-Client-ID": config.client_id, "X-API-Key": config.api_key}
    with AsgiServer(lambda: with_credentials(Scheduler(config).app, headers)) as server:
        yield server.url()
