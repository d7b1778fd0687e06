"""Test helpers: run the host as a subprocess (for kill/restart tests) and bounded polling.

    async with HostProcess(app_dir, state_path=path) as process:
        base_url = process.base_url
        ...
        process.kill()              # SIGKILL, no cleanup: the crash case
        await process.start()       # waits for the old process, then resumes from the state file

For in-process use see :class:`local_host.host.LocalHost`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import aiohttp

from .__main__ import READY_PREFIX
from .host import SYSTEM_KEY_VARIABLE, LocalHost

__all__ = ["HostProcess", "LocalHost", "wait_until"]

T = TypeVar("T")

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_LOG_LINES_KEPT = 400


@overload
async def wait_until(
    condition: Callable[[], Awaitable[T]],
    *,
    within: float,
    interval: float = ...,
    message: str = ...,
) -> T: ...


@overload
async def wait_until(
    condition: Callable[[], T],
    *,
    within: float,
    interval: float = ...,
    message: str = ...,
) -> T: ...


async def wait_until(
    condition: Callable[[], Any],
    *,
    within: float,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `condition` until it returns something truthy; TimeoutError after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not met within {within} s")
        await asyncio.sleep(interval)


class HostProcess:
    """`python -m local_host` in a child process, with readiness and kill control."""

    def __init__(
        self,
        app_dir: Path,
        *,
        state_path: Path,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._app_dir = Path(app_dir)
        self._state_path = Path(state_path)
        self._port = port
        self._env = dict(env or {})
        self._extra_args = list(extra_args)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[str] | None = None
        self._killed = False
        self.output: collections.deque[str] = collections.deque(maxlen=_LOG_LINES_KEPT)
        self.base_url = ""
        # Known to the test, kept across restarts: the durable management API needs it.
        self.system_key = self._env.setdefault(SYSTEM_KEY_VARIABLE, secrets.token_urlsafe(24))

    async def __aenter__(self) -> HostProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, ready_within: float = 30.0) -> str:
        """Start the host and wait until `/admin/host/status` answers; returns the base URL.

        After `kill()` this first waits for the killed process to be gone (a restart).
        """
        if self._killed:
            await self.wait_exit()
        if self.running:
            raise RuntimeError("the host process is already running")
        self._killed = False
        env = {**os.environ, **self._env}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        self._ready = asyncio.get_running_loop().create_future()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "local_host",
            "--app-dir",
            str(self._app_dir),
            "--state",
            str(self._state_path),
            "--port",
            str(self._port),
            *self._extra_args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=str(_PACKAGE_ROOT),
        )
        self._reader = asyncio.create_task(self._read_output(self._process, self._ready))
        try:
            async with asyncio.timeout(ready_within):
                self.base_url = await asyncio.shield(self._ready)
                await wait_until(self._status_ok, within=ready_within, message="host status")
        except BaseException:
            self.kill()
            await self.wait_exit()
            raise
        return self.base_url

    def kill(self) -> None:
        """SIGKILL: the process dies without any cleanup."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._killed = True

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after `grace` seconds)."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await self._process.wait()
            except TimeoutError:
                self.kill()
        return await self.wait_exit()

    async def wait_exit(self) -> int | None:
        if self._process is None:
            return None
        code = await self._process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None
        return code

    def log_text(self) -> str:
        return "\n".join(self.output)

    async def _status_ok(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.base_url}/admin/host/status") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def _read_output(
        self, process: asyncio.subprocess.Process, ready: asyncio.Future[str]
    ) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            if line.startswith(READY_PREFIX) and not ready.done():
                ready.set_result(line[len(READY_PREFIX) :].strip())
        if not ready.done():
            ready.set_exception(
                RuntimeError(f"host exited before it was ready:\n{self.log_text()}")
            )
