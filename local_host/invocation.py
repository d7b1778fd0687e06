"""Calling user functions the way the Python worker does.

Arguments are bound by parameter name to the function's bindings; a parameter named `context`
receives an `azure.functions.Context`. Async functions run on the host's event loop, sync
functions in a worker thread. Every invocation logs one line (name, invocation id, outcome,
duration) and never its inputs or outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

import azure.functions as func
from azure.functions import _abc as functions_abc

from .indexing import FunctionInfo

logger = logging.getLogger("local_host.functions")

CONTEXT_PARAMETER = "context"

T = TypeVar("T")


class _TraceContext(functions_abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _NoException(functions_abc.RpcException):
    """The worker's RetryContext.exception before any failure: an empty RpcException message."""

    @property
    def source(self) -> str:
        return ""

    @property
    def stack_trace(self) -> str:
        return ""

    @property
    def message(self) -> str:
        return ""


class _RetryContext(functions_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> functions_abc.RpcException:
        return _NoException()


class InvocationContext(func.Context):
    """The `context` argument: invocation id, function name and directory."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._thread_local_storage = threading.local()
        self._thread_local_storage.invocation_id = invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        # The SDK annotates the class, but its worker (and this host) hands out an instance.
        return cast("type[threading.local]", self._thread_local_storage)

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> functions_abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> functions_abc.RetryContext:
        return _RetryContext()


class _DaemonThreads:
    """Idle daemon threads kept for reuse: starting a thread per call costs more than many an
    orchestrator episode (and blocks the event loop while the new thread takes the GIL).

    Daemon threads, not an executor: a sync function that never returns must not keep the host
    process alive after a shutdown signal (executor threads are joined at interpreter exit). A
    call that never returns holds only its own thread; the next call gets another one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(inbox,), name="local-host-user-code", daemon=True
            ).start()
        inbox.put(job)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            inbox.get()()
            with self._lock:
                self._idle.append(inbox)


_threads = _DaemonThreads()


async def run_in_daemon_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking user code in a (reused) daemon thread; see `_DaemonThreads`."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def runner() -> None:
        try:
            result = context.run(function, *args, **kwargs)
        except BaseException as exc:
            error = exc  # `exc` is unbound when the except block ends
            _call_soon(loop, settle, lambda: future.set_exception(error))
        else:
            _call_soon(loop, settle, lambda: future.set_result(result))

    _threads.run(runner)
    return await future


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    # RuntimeError: the loop closed while the thread ran (host shut down); nobody waits anymore.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


class FunctionInvoker:
    """Binds arguments, invokes user functions and logs one line per invocation."""

    def __init__(self, function_directory: str) -> None:
        self._function_directory = function_directory

    async def invoke(
        self, info: FunctionInfo, arguments: Mapping[str, Any], *, details: str = ""
    ) -> Any:
        with self._invocation(info, details) as invocation_id:
            kwargs = self._bind(info, arguments, invocation_id)
            if info.is_async:
                return await info.user_function(**kwargs)
            result = await run_in_daemon_thread(info.user_function, **kwargs)
            if inspect.isawaitable(result):  # a sync wrapper returning a coroutine
                result = await result
            return result

    def invoke_blocking(
        self, info: FunctionInfo, arguments: Mapping[str, Any], *, details: str = ""
    ) -> Any:
        """Invoke a sync function on the calling thread (orchestrators: deterministic, no I/O)."""
        with self._invocation(info, details) as invocation_id:
            return info.user_function(**self._bind(info, arguments, invocation_id))

    @contextlib.contextmanager
    def _invocation(self, info: FunctionInfo, details: str) -> Iterator[str]:
        """An invocation id, and one log line with the outcome and duration when it ends."""
        invocation_id = str(uuid.uuid4())
        started = time.perf_counter()
        outcome = "Failed"
        try:
            yield invocation_id
            outcome = "Succeeded"
        except asyncio.CancelledError:
            outcome = "Cancelled"
            raise
        finally:
            self._log(info.name, invocation_id, outcome, started, details)

    def _bind(
        self, info: FunctionInfo, arguments: Mapping[str, Any], invocation_id: str
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name in info.parameter_names:
            if name in arguments:
                kwargs[name] = arguments[name]
            elif name == CONTEXT_PARAMETER:
                kwargs[name] = InvocationContext(invocation_id, info.name, self._function_directory)
        return kwargs

    @staticmethod
    def _log(name: str, invocation_id: str, outcome: str, started: float, details: str) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        extra = f", {details}" if details else ""
        logger.info(
            "Executed 'Functions.%s' (%s, Id=%s%s, Duration=%.0fms)",
            name,
            outcome,
            invocation_id,
            extra,
            duration_ms,
        )
