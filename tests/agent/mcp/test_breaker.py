"""The circuit breaker's states, driven by an injected clock."""

from __future__ import annotations

import pytest

from agent.mcp.breaker import BreakerState, CircuitBreaker


@pytest.fixture
def breaker(clock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cooldown_seconds=30, clock=clock)


def test_it_opens_after_the_threshold_of_consecutive_failures(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.try_acquire()


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 1


def test_after_the_cooldown_exactly_one_probe_goes_through(breaker: CircuitBreaker, clock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(29.9)
    assert not breaker.try_acquire()
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()
    assert not breaker.try_acquire()  # a second caller waits for the probe's verdict


def test_a_good_probe_closes_and_a_bad_one_reopens_for_another_cooldown(
    breaker: CircuitBreaker, clock
) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(30)
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(29)
    assert not breaker.try_acquire()
    clock.advance(1)
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.try_acquire() and breaker.try_acquire()


def test_a_probe_without_verdict_frees_the_slot_for_the_next(
    breaker: CircuitBreaker, clock
) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(30)
    assert breaker.try_acquire()
    breaker.release()
    assert breaker.try_acquire()


def test_it_tells_how_long_until_a_probe_may_go_through(breaker: CircuitBreaker, clock) -> None:
    assert breaker.seconds_until_probe() == 0
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    assert breaker.seconds_until_probe() == 20
    clock.advance(20)
    assert breaker.seconds_until_probe() == 0
    assert breaker.try_acquire()  # the probe is in flight: its failure would restart the cooldown
    assert breaker.seconds_until_probe() == 30
