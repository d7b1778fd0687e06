"""A per-server circuit breaker: stop calling a server that keeps failing, then probe it again.

closed ──N consecutive failures──► open ──cooldown elapsed──► half-open (one probe allowed)
   ▲                                 ▲                                   │
   └──────────── probe succeeds ─────┼───────────── probe fails ─────────┘
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_COOLDOWN_SECONDS = 30.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown_seconds < 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_seconds >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probe_in_flight or self._clock() - self._opened_at >= self.cooldown_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def seconds_until_probe(self) -> float:
        """How long until a probe may go through: 0 unless the circuit is open (a probe in
        flight counts as the whole cooldown: its verdict may reopen the circuit)."""
        if self._opened_at is None:
            return 0.0
        if self._probe_in_flight:
            return self.cooldown_seconds
        return max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))

    def try_acquire(self) -> bool:
        """May a request go to the server now? In half-open state only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probe_in_flight or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()  # (re)open: a failed probe restarts the cooldown
        self._probe_in_flight = False

    def release(self) -> None:
        """The request ended without a verdict (cancelled): let another probe through."""
        self._probe_in_flight = False
