"""The dispatcher: every tick, send what is due to its endpoint as signed webhook batches.

Each delivery (a batch for one endpoint) is POSTed with Standard Webhooks headers; its
`webhook-id` stays the same on every retry so the receiver can drop repeats. 2xx → delivered;
anything else (status, timeout, connection error) → retried with exponential backoff and jitter,
and dead-lettered (failed) after `max_attempts`.

Time comes from an injected clock and `run_once()` does one tick, so tests drive it step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
import httpx2

from samples.scheduler_mcp.signing import Signer
from samples.scheduler_mcp.store import Delivery, ScheduleStore
from samples.scheduler_mcp.validation import redact_endpoint

logger = logging.getLogger("samples.scheduler_mcp.dispatcher")
USER_AGENT = "scheduler-mcp/1"
# The event type of a callback body: the app's contract (agent.webhooks.CALLBACK_TYPE).
CALLBACK_TYPE = "conversations.due"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 1.0
    cap_seconds: float = 300.0

    def delay(self, attempts: int, draw: float, retry_after: float | None = None) -> float:
        """Seconds before the next attempt, after `attempts` failed ones.

        Exponential with "equal jitter" (`draw` in [0, 1)): at least half the step, so retries
        back off, spread so receivers are not hit in lockstep. A `Retry-After` asks for longer.
        """
        step = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
        delay = step / 2 + draw * step / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap_seconds))
        return delay


@dataclass(frozen=True)
class TickReport:
    claimed: int = 0  # schedules newly put into deliveries
    sent: int = 0  # delivery attempts made
    delivered: int = 0  # schedules delivered
    retrying: int = 0  # schedules whose delivery failed and will be retried
    dead_lettered: int = 0  # schedules that failed for good


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    error: str | None = None
    retry_after: float | None = None


def callback_body(delivery: Delivery) -> bytes:
    items = [
        {
            "schedule_id": item.schedule_id,
            "conversation_id": item.conversation_id,
            "content": item.content,
            "scheduled_time": item.scheduled_time,
        }
        for item in delivery.items
    ]
    return json.dumps({"type": CALLBACK_TYPE, "items": items}, separators=(",", ":")).encode()


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from a webhook receiver; the backoff applies
    return seconds if seconds >= 0 else None


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Dispatcher:
    def __init__(
        self,
        store: ScheduleStore,
        http: httpx2.AsyncClient,
        webhook_secret: str,
        *,
        batch_size: int = 50,
        retry: RetryPolicy | None = None,
        max_concurrent_deliveries: int = 8,
        clock: Callable[[], float],
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._http = http
        self._signer = Signer(webhook_secret)
        self._batch_size = batch_size
        self._retry = retry or RetryPolicy()
        self._slots = asyncio.Semaphore(max_concurrent_deliveries)
        self._clock = clock
        self._draw = draw
        self._tick_lock = asyncio.Lock()
        self._wake = asyncio.Event()

    # --- ticking ---------------------------------------------------------------------------

    async def run_forever(self, tick_seconds: float) -> None:
        """Tick until cancelled; a failing tick is logged and the next one tries again."""
        while True:
            try:
                await self.run_once()
            except Exception:
                logger.exception("dispatcher tick failed; retrying on the next tick")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick_seconds)
            self._wake.clear()

    def wake(self) -> None:
        """Tick now rather than at the end of the current interval."""
        self._wake.set()

    async def run_once(self) -> TickReport:
        """One tick: claim due schedules into batches, then attempt every delivery that is due."""
        async with self._tick_lock:
            now = self._clock()
            claimed = await anyio.to_thread.run_sync(
                self._store.claim_due, now, self._batch_size, new_delivery_id
            )
            deliveries = await anyio.to_thread.run_sync(self._store.ready_deliveries, now)
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._attempt(d)) for d in deliveries]
            reports = [task.result() for task in tasks]
            return TickReport(
                claimed=claimed,
                sent=len(reports),
                delivered=sum(r.delivered for r in reports),
                retrying=sum(r.retrying for r in reports),
                dead_lettered=sum(r.dead_lettered for r in reports),
            )

    # --- one delivery ---------------------------------------------------------------------

    async def _attempt(self, delivery: Delivery) -> TickReport:
        async with self._slots:
            outcome = await self._post(delivery)
        attempts = delivery.attempts + 1
        now = self._clock()
        where = redact_endpoint(delivery.endpoint)
        if outcome.ok:
            count = await anyio.to_thread.run_sync(
                self._store.record_delivered, delivery.delivery_id, now
            )
            logger.info(
                "delivered webhook_id=%s items=%d endpoint=%s attempt=%d",
                delivery.delivery_id, count, where, attempts,
            )  # fmt: skip
            return TickReport(delivered=count)
        error = outcome.error or "unknown error"
        if attempts >= self._retry.max_attempts:
            count = await anyio.to_thread.run_sync(
                self._store.record_failed_attempt, delivery.delivery_id, error, now, None
            )
            logger.warning(
                "dead-lettered webhook_id=%s items=%d endpoint=%s attempts=%d error=%s",
                delivery.delivery_id, count, where, attempts, error,
            )  # fmt: skip
            return TickReport(dead_lettered=count)
        retry_at = now + self._retry.delay(attempts, self._draw(), outcome.retry_after)
        count = await anyio.to_thread.run_sync(
            self._store.record_failed_attempt, delivery.delivery_id, error, now, retry_at
        )
        logger.info(
            "delivery failed webhook_id=%s items=%d endpoint=%s attempt=%d error=%s retry_in=%.1fs",
            delivery.delivery_id, count, where, attempts, error, retry_at - now,
        )  # fmt: skip
        return TickReport(retrying=count)

    async def _post(self, delivery: Delivery) -> _Outcome:
        body = callback_body(delivery)
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self._signer.sign(delivery.delivery_id, timestamp, body),
        }
        try:
            # Streamed and never read: the receiver's reply body is not needed, however large.
            async with self._http.stream(
                "POST", delivery.endpoint, content=body, headers=headers
            ) as reply:
                if 200 <= reply.status_code < 300:
                    return _Outcome(ok=True)
                retry_after = _retry_after_seconds(reply.headers.get("retry-after"))
                return _Outcome(
                    ok=False, error=f"HTTP {reply.status_code}", retry_after=retry_after
                )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            # The type only: messages can quote the URL, whose query may hold a function key.
            return _Outcome(ok=False, error=type(exc).__name__)
