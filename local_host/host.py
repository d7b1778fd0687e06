"""LocalHost: the whole local host (settings, app, store, runtime, HTTP) in one object.

Used by the CLI (`python -m local_host`) and, in-process, by tests:

    async with LocalHost(app_dir, port=0, state_path=tmp_path / "state.sqlite3") as host:
        ...  # host.base_url, host.runtime, host.client_binding()
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
import uuid
from pathlib import Path
from types import ModuleType, TracebackType

from aiohttp import web

from . import __version__
from .durable_api import DurableApi, DurableUrls
from .errors import LocalHostError
from .http_server import MAX_REQUEST_BYTES, HttpFrontend
from .indexing import AppIndex, describe_routes, find_function_register, index_app, load_app_module
from .invocation import FunctionInvoker
from .runtime import DEFAULT_MAX_ACTIVITIES, DurableRuntime
from .settings import apply_values, read_host_config, read_local_settings, request_size_limit
from .store import SqliteStore
from .timers import Clock, SystemClock, TimerStatusStore, TimerTriggers, timer_function

logger = logging.getLogger(__name__)

DEFAULT_PORT = 7071
DEFAULT_STATE_PATH = Path(".local") / "durable.sqlite3"
FUNCTION_KEY_VARIABLE = "LOCAL_HOST_FUNCTION_KEY"
SYSTEM_KEY_VARIABLE = "LOCAL_HOST_SYSTEM_KEY"
SHUTDOWN_GRACE_SECONDS = 2.0  # in-flight HTTP requests get this long to finish on shutdown


class LocalHost:
    """A running local Functions host; start/stop it or use it as an async context manager."""

    def __init__(
        self,
        app_dir: Path | str = ".",
        *,
        port: int | None = None,
        bind_host: str = "127.0.0.1",
        state_path: Path | str | None = None,
        function_key: str | None = None,
        system_key: str | None = None,
        max_activities: int | None = None,
        apply_local_settings: bool = True,
        fresh_import: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self._requested_port = port
        self._bind_host = bind_host
        self._state_path = (
            Path(state_path) if state_path is not None else self.app_dir / DEFAULT_STATE_PATH
        )
        self._function_key = function_key
        self._system_key = system_key
        self._max_activities = max_activities
        self._apply_local_settings = apply_local_settings
        self._fresh_import = fresh_import
        self._clock: Clock = clock or SystemClock()  # timer triggers' time (tests set it)
        self.timers: TimerTriggers | None = None
        self._runner: web.AppRunner | None = None
        self._socket: socket.socket | None = None
        self._store: SqliteStore | None = None
        self._runtime: DurableRuntime | None = None
        self._urls: DurableUrls | None = None
        self.app_module: ModuleType | None = None
        self.index: AppIndex | None = None
        self.base_url = ""
        self.system_key = ""  # known once started (given, from the environment, or random)

    @property
    def runtime(self) -> DurableRuntime:
        if self._runtime is None:
            raise LocalHostError("the host is not started")
        return self._runtime

    def client_binding(self) -> str:
        """The durable client binding JSON (for `DurableOrchestrationClient(...)` in tests)."""
        if self._urls is None:
            raise LocalHostError("the host is not started")
        return self._urls.client_binding()

    async def __aenter__(self) -> LocalHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()  # release whatever was set up (socket, store, loops)
            raise

    async def _start(self) -> None:
        local_settings = read_local_settings(self.app_dir)
        if self._apply_local_settings:
            apply_values(local_settings.values)  # before the import: the app reads them at import
        function_key = self._function_key or os.environ.get(FUNCTION_KEY_VARIABLE) or None
        check_exposure(self._bind_host, function_key)
        max_request_bytes = request_size_limit(MAX_REQUEST_BYTES)
        self.system_key = resolve_system_key(self._system_key, function_key)
        host_config = read_host_config(self.app_dir)
        self.app_module = load_app_module(self.app_dir, fresh=self._fresh_import)
        self.index = index_app(find_function_register(self.app_module))
        timer_functions = [timer_function(info) for info in self.index.timers]  # checks schedules
        sock = _bind(
            self._bind_host, resolve_port(self._requested_port, local_settings.local_http_port)
        )
        self._socket = sock
        self.base_url = f"http://{_url_host(self._bind_host)}:{sock.getsockname()[1]}"
        self._urls = DurableUrls(
            base_url=self.base_url, hub_name=host_config.hub_name, system_key=self.system_key
        )
        self._store = SqliteStore(self._state_path)
        invoker = FunctionInvoker(str(self.app_dir))
        max_activities = (
            self._max_activities or host_config.max_concurrent_activities or DEFAULT_MAX_ACTIVITIES
        )
        self._runtime = DurableRuntime(
            store=self._store,
            index=self.index,
            invoker=invoker,
            version_policy=host_config.version_policy,
            max_activities=max_activities,
            client_binding=self._urls.client_binding,
        )
        frontend = HttpFrontend(
            index=self.index,
            invoker=invoker,
            durable_api=DurableApi(self._runtime, self._urls),
            client_binding=self._urls.client_binding,
            route_prefix=host_config.route_prefix,
            function_key=function_key,
            system_key=self.system_key,
            host_id=uuid.uuid4().hex,
            version=__version__,
            max_request_bytes=max_request_bytes,
        )
        # access_log=None: request lines would log query strings, which may carry keys.
        self._runner = web.AppRunner(
            frontend.application(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._socket = None  # the site owns it now
        await self._runtime.start()
        self.timers = TimerTriggers(
            timer_functions,
            invoker=invoker,
            status_store=TimerStatusStore(self._state_path),
            clock=self._clock,
            client_binding=self._urls.client_binding,
        )
        self.timers.start()
        logger.info("Functions:")
        for line in describe_routes(self.index, self.base_url, host_config.route_prefix):
            logger.info("  %s", line)
        logger.info(
            "Host started on %s (state %s, max %d concurrent activities)",
            self.base_url,
            self._state_path,
            max_activities,
        )

    async def stop(self) -> None:
        """Stop accepting requests, cancel in-flight work; the state file stays resumable."""
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
        if self.timers is not None:
            await self.timers.stop()
            self.timers = None
        if self._runtime is not None:
            await self._runtime.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self._runtime = None
        await _close_sdk_client_session()


def resolve_port(requested: int | None, settings_port: int | None) -> int:
    """--port wins, then local.settings.json Host.LocalHttpPort, then 7071 (like Core Tools)."""
    if requested is not None:
        return requested
    return settings_port if settings_port is not None else DEFAULT_PORT


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


def check_exposure(bind_host: str, function_key: str | None) -> None:
    """Without a function key every FUNCTION route is open: fine on loopback (like `func start`),
    not on an address other machines can reach."""
    if function_key is None and not is_loopback(bind_host):
        raise LocalHostError(
            f"refusing to listen on {bind_host} without a function key: every function would be "
            f"open to the network; set --function-key or {FUNCTION_KEY_VARIABLE}, or listen on "
            "127.0.0.1"
        )


def resolve_system_key(given: str | None, function_key: str | None) -> str:
    """The key of the durable management API: given, from the environment, else random for this
    run (the app's own client gets it through its binding; nobody else needs it)."""
    key = given or os.environ.get(SYSTEM_KEY_VARIABLE) or secrets.token_urlsafe(32)
    if key == function_key:
        raise LocalHostError(
            "the system key must differ from the function key: a function key would open the "
            "durable management API"
        )
    return key


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LocalHostError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _close_sdk_client_session() -> None:
    """Close the SDK client's shared aiohttp session (it is module-global and never closed)."""
    try:
        from azure.durable_functions.models.utils import http_utils
    except ImportError:
        return
    await http_utils._close_session()
