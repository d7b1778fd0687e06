"""One request under its server's circuit breaker (`agent.mcp.guard`): acquire on entry, then
exactly one verdict, or the slot given back; driven by a real breaker on a hand-moved clock."""

from __future__ import annotations

import asyncio

import pytest

from agent.mcp.breaker import BreakerState, CircuitBreaker
from agent.mcp.failures import FailureKind, UnusableResult, classify
from agent.mcp.guard import BreakerGuard, CircuitOpen, ServerFailed
from tests.agent.mcp.conftest import FakeClock


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=2, cooldown_seconds=30, clock=clock)


def half_open(breaker: CircuitBreaker, clock: FakeClock) -> CircuitBreaker:
    """The breaker after it opened and its cooldown passed: one probe may go."""
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(30)
    assert breaker.state is BreakerState.HALF_OPEN
    return breaker


async def answer() -> str:
    return "answer"


async def unreachable() -> str:
    raise ConnectionRefusedError("connect failed")


async def test_a_success_is_returned_and_closes_the_circuit(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    async with BreakerGuard(breaker, classify) as guard:
        assert await guard.call(answer) == "answer"
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 0


async def test_a_transport_failure_counts_against_the_server_and_is_reported_sorted(
    breaker: CircuitBreaker,
) -> None:
    with pytest.raises(ServerFailed) as raised:
        async with BreakerGuard(breaker, classify) as guard:
            await guard.call(unreachable)
    assert raised.value.failure.kind is FailureKind.TRANSPORT
    assert raised.value.failure.cause == "ConnectionRefusedError"
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert breaker.consecutive_failures == 1


async def test_a_protocol_error_is_an_answer_the_server_is_up(breaker: CircuitBreaker) -> None:
    breaker.record_failure()

    async def refused() -> str:
        raise UnusableResult("its result does not match the tool's declared output schema")

    with pytest.raises(ServerFailed) as raised:
        async with BreakerGuard(breaker, classify) as guard:
            await guard.call(refused)
    assert raised.value.failure.kind is FailureKind.SERVER_ERROR
    assert breaker.consecutive_failures == 0


async def test_an_open_circuit_refuses_before_anything_runs_and_says_for_how_long(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(12)
    ran = False
    with pytest.raises(CircuitOpen) as raised:
        async with BreakerGuard(breaker, classify):
            ran = True
    assert not ran
    assert (raised.value.retry_after, raised.value.failures) == (18, 2)
    assert breaker.consecutive_failures == 2  # a refusal is no verdict


async def test_a_failure_before_the_request_gives_the_probe_back_without_a_verdict(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    # e.g. the activity's own write before sending fails with a connection error: that says
    # nothing about the MCP server, though `classify` would call it a transport failure.
    half_open(breaker, clock)
    with pytest.raises(ConnectionResetError):
        async with BreakerGuard(breaker, classify):
            raise ConnectionResetError("storage went away")
    assert breaker.consecutive_failures == 2 and breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()  # the next probe may go


async def test_an_unknown_error_from_the_request_propagates_as_it_is_without_a_verdict(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)

    async def bug() -> str:
        raise KeyError("a bug, not the server")

    with pytest.raises(KeyError):
        async with BreakerGuard(breaker, classify) as guard:
            await guard.call(bug)
    assert breaker.consecutive_failures == 2 and breaker.try_acquire()


async def test_a_cancelled_request_gives_the_probe_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    started = asyncio.Event()

    async def hangs() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def guarded() -> None:
        async with BreakerGuard(breaker, classify) as guard:
            await guard.call(hangs)

    task = asyncio.create_task(guarded())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.consecutive_failures == 2 and breaker.try_acquire()


async def test_without_a_breaker_nothing_is_refused_or_recorded_but_failures_are_sorted() -> None:
    async with BreakerGuard(None, classify) as guard:
        assert await guard.call(answer) == "answer"
    with pytest.raises(ServerFailed) as raised:
        async with BreakerGuard(None, classify) as guard:
            await guard.call(unreachable)
    assert raised.value.failure.kind is FailureKind.TRANSPORT


async def test_a_guard_guards_one_request(breaker: CircuitBreaker) -> None:
    guard = BreakerGuard(breaker, classify)
    with pytest.raises(RuntimeError):
        await guard.call(answer)  # not entered
    async with guard:
        await guard.call(answer)
        with pytest.raises(RuntimeError):
            await guard.call(answer)
    with pytest.raises(RuntimeError):
        async with guard:
            pass
