"""One request to an MCP server under its circuit breaker: acquire, then exactly one verdict.

    async with BreakerGuard(breaker, classify) as guard:   # CircuitOpen if the breaker refuses
        await before_send()                                 # fails: released, no verdict
        result = await guard.call(operation)                # ServerFailed on a known failure

On entry the guard asks the breaker for a slot. `call` runs the request and records its verdict:
a success, or a failure sorted by `classify` (a protocol error counts as an answer: the server is
up). Leaving without a verdict (cancelled, a configuration mistake, an unexpected bug, or a failure
before the request) releases the slot, so a half-open breaker lets the next probe through.

With no breaker (`breaker=None`) the guard never refuses and records nothing: for a request that
must be made whatever the circuit says and whose outcome should not move it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

from agent.mcp.breaker import CircuitBreaker
from agent.mcp.failures import Failure
from agent.mcp.policy import counts_against_server

T = TypeVar("T")

Classify = Callable[[BaseException], Failure | None]


class CircuitOpen(Exception):
    """The breaker refused: nothing was sent. `retry_after`: seconds until it lets a probe by."""

    def __init__(self, retry_after: float, failures: int) -> None:
        super().__init__(f"circuit open after {failures} failures")
        self.retry_after = retry_after
        self.failures = failures


class ServerFailed(Exception):
    """The request failed in a way `classify` knows; the breaker has its verdict."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.cause)
        self.failure = failure


class BreakerGuard:
    def __init__(self, breaker: CircuitBreaker | None, classify: Classify) -> None:
        self._breaker = breaker
        self._classify = classify
        self._entered = False
        self._called = False
        self._verdict_given = False

    async def __aenter__(self) -> BreakerGuard:
        if self._entered:
            raise RuntimeError("a BreakerGuard guards one request: make a new one")
        self._entered = True
        breaker = self._breaker
        if breaker is not None and not breaker.try_acquire():
            raise CircuitOpen(breaker.seconds_until_probe(), breaker.consecutive_failures)
        return self

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run the request and record its verdict; a failure `classify` does not know (a bug)
        propagates as it is, with no verdict."""
        if not self._entered or self._called:
            raise RuntimeError("call once, inside `async with`")
        self._called = True
        try:
            result = await operation()
        except Exception as exc:
            failure = self._classify(exc)
            if failure is None:
                raise
            self._record(success=not counts_against_server(failure.kind))
            raise ServerFailed(failure) from exc
        self._record(success=True)
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._verdict_given and self._breaker is not None:
            self._breaker.release()

    def _record(self, *, success: bool) -> None:
        self._verdict_given = True
        if self._breaker is None:
            return
        if success:
            self._breaker.record_success()
        else:
            self._breaker.record_failure()
