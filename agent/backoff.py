"""Retry schedule for failed activities: exponential backoff with deterministic jitter.

Pure (no clock, no randomness, no I/O): orchestrators replay, so the delay before attempt n+1
must come out the same on every replay. The "random" part is a hash of the instance id, the
task and the attempt: different instances that failed together (one endpoint down for all)
spread their retries, while one instance always computes the same timers.

    nominal(n) = min(max_delay, base * factor ** (n - 1))      n = the attempt that failed, from 1
    delay(n)   = nominal(n) * (1 - jitter * u)                 u in [0, 1) from the hash

Jitter only shortens a delay, so `max_delay` is a true ceiling, and with factor * (1 - jitter)
> 1 the delays grow attempt after attempt until they reach the cap.

A `retry-after` from the service is not handled here: the model step returns a 429 with its
retry-after as a `throttled` outcome (`agent.loop.decide` waits exactly that long) and a tool
whose server's circuit is open is deferred with its cooldown, so the service's word wins.

Which failures are retried: an activity returns what retrying cannot fix (content filter, bad
request, auth: `StepSummary` outcomes) and raises what it might. A few errors still arrive as
activity failures and are known not to get better by retrying (a broken setting, a refused
credential); the orchestrator sees only the failure's text, where the worker writes
"<ExceptionType>: <message>", so they are recognised by their type names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

FACTOR = 2.0  # each wait doubles
JITTER = 0.2  # a wait is up to 20 % shorter than nominal, never longer
DEFAULT_BASE_SECONDS = 1.0  # AGENT_RETRY_BASE_SECONDS
DEFAULT_MAX_DELAY_SECONDS = 30.0  # AGENT_RETRY_MAX_DELAY_SECONDS: one wait never exceeds it
DEFAULT_MODEL_ATTEMPTS = 4  # AGENT_MODEL_MAX_ATTEMPTS
DEFAULT_TOOL_ATTEMPTS = 3  # AGENT_TOOL_MAX_ATTEMPTS
STORE_ATTEMPTS = 5  # Blob writes of the orchestrators' own bookkeeping (finish, batch records)
# A scheduled item whose conversation is busy with another turn waits for it, within reason
# (about two minutes in all with these numbers).
BUSY_BASE_SECONDS = 2.0
BUSY_ATTEMPTS = 8

# Failures no retry can fix (type names as the worker writes them into the failure text).
NOT_RETRIED = (
    "ContentFiltered",  # agent.errors: the prompt or completion was filtered
    "PermanentModelError",  # agent.errors: bad request or refused credentials
    "SettingsError",  # agent.errors: the deployment is misconfigured (names the setting)
    "InvalidSettings",  # agent.errors: the app runs degraded until a setting is fixed
    "ClientAuthenticationError",  # azure-core: storage or Key Vault refused the identity
)


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently one kind of activity is tried."""

    attempts: int  # in all, the first one included
    base_seconds: float = DEFAULT_BASE_SECONDS
    max_delay_seconds: float = DEFAULT_MAX_DELAY_SECONDS
    factor: float = FACTOR
    jitter: float = JITTER

    def delay(self, attempt: int, key: str) -> float:
        """Seconds to wait after attempt `attempt` (from 1) failed; `key` names the instance
        and the task, so the jitter differs between them and never between replays."""
        exponent = min(attempt - 1, 64)  # far past any cap; keeps the power finite
        nominal = min(self.max_delay_seconds, self.base_seconds * self.factor**exponent)
        shortened = nominal * (1.0 - self.jitter * unit_hash(f"{key}#{attempt}"))
        return round(shortened, 3)  # whole milliseconds: what a timer's FireAt can hold

    def schedule(self, key: str) -> list[float]:
        """Every wait a task that keeps failing goes through (for docs and tests)."""
        return [self.delay(attempt, key) for attempt in range(1, self.attempts)]


MODEL_BACKOFF = Backoff(DEFAULT_MODEL_ATTEMPTS)  # the defaults of the settings
TOOL_BACKOFF = Backoff(DEFAULT_TOOL_ATTEMPTS)


def unit_hash(text: str) -> float:
    """A number in [0, 1) that depends only on `text` (stable across processes and
    versions of Python, unlike `hash()`)."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# "Type: message" as the worker reports an exception (a source line in a traceback, such as
# `except ContentFiltered:`, ends the line after its colon and does not match).
_NOT_RETRIED_FAILURE = re.compile(rf"(?<!\w)(?:{'|'.join(NOT_RETRIED)}): ")


def retryable(failure: str) -> bool:
    """May an activity that failed with this text be tried again?"""
    return _NOT_RETRIED_FAILURE.search(failure) is None


def task_key(instance_id: str, task: str) -> str:
    return f"{instance_id}/{task}"
