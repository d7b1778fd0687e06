"""The Scheduler MCP server: schedule, list and cancel conversations; a dispatcher calls them back.

`Scheduler(config)` holds the SQLite store, the dispatcher and the MCP server; `scheduler.app`
is the ASGI app (streamable HTTP at `/mcp`, API-key auth in front, the dispatcher started and
stopped with the app's lifespan). A tool refuses bad input with `ToolError`, whose message the
client sees; anything else would come back as a generic error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
import httpx2
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from typing_extensions import TypedDict  # pydantic needs it for TypedDicts on Python < 3.12

from samples.scheduler_mcp import validation
from samples.scheduler_mcp.auth import ApiKeyAuth
from samples.scheduler_mcp.config import SchedulerConfig
from samples.scheduler_mcp.dispatcher import Dispatcher, RetryPolicy
from samples.scheduler_mcp.errors import InvalidRequest, SchedulerError
from samples.scheduler_mcp.store import Schedule, ScheduleStore

logger = logging.getLogger("samples.scheduler_mcp")

# The app puts the idempotency key of a tool call in the request `_meta` under this name.
IDEMPOTENCY_META_KEY = "idempotency_key"
PREVIEW_CHARS = 80
MAX_LIST = 1000
INSTRUCTIONS = (
    "Schedules conversations for later. At the scheduled time the conversation text is sent to "
    "the endpoint as a signed webhook. Times are ISO 8601 with a timezone."
)


class ScheduledConversation(TypedDict):
    schedule_id: str
    conversation_id: str
    scheduled_time: str
    status: str


class ScheduleSummary(TypedDict):
    schedule_id: str
    conversation_id: str
    scheduled_time: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_time: str | None
    endpoint: str  # without its query string (it may hold a key)
    text_preview: str
    created_at: str


class CancelledConversation(TypedDict):
    schedule_id: str
    status: str


def _scheduled(schedule: Schedule) -> ScheduledConversation:
    return ScheduledConversation(
        schedule_id=schedule.schedule_id,
        conversation_id=schedule.conversation_id,
        scheduled_time=schedule.scheduled_time,
        status=schedule.status,
    )


def _summary(schedule: Schedule) -> ScheduleSummary:
    preview = schedule.content[:PREVIEW_CHARS] + (
        "…" if len(schedule.content) > PREVIEW_CHARS else ""
    )
    next_attempt = schedule.next_attempt_at if schedule.status == "pending" else None
    return ScheduleSummary(
        schedule_id=schedule.schedule_id,
        conversation_id=schedule.conversation_id,
        scheduled_time=schedule.scheduled_time,
        status=schedule.status,
        attempts=schedule.attempts,
        last_error=schedule.last_error,
        next_attempt_time=validation.from_epoch(next_attempt) if next_attempt is not None else None,
        endpoint=validation.redact_endpoint(schedule.endpoint),
        text_preview=preview,
        created_at=validation.from_epoch(schedule.created_at),
    )


@contextlib.contextmanager
def _refusals_as_tool_errors() -> Iterator[None]:
    try:
        yield
    except SchedulerError as exc:
        raise ToolError(str(exc)) from None


class Scheduler:
    """One Scheduler instance: serve `app` once (its MCP session manager runs once)."""

    def __init__(
        self,
        config: SchedulerConfig,
        *,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self.store = ScheduleStore(config.state_path)
        self._owns_http = http_client is None
        self._http = http_client or httpx2.AsyncClient(
            timeout=config.request_timeout_seconds, follow_redirects=False
        )
        self.dispatcher = Dispatcher(
            self.store,
            self._http,
            config.webhook_secret,
            batch_size=config.batch_size,
            retry=RetryPolicy(
                config.max_attempts, config.backoff_base_seconds, config.backoff_cap_seconds
            ),
            max_concurrent_deliveries=config.max_concurrent_deliveries,
            clock=clock,
            draw=draw,
        )
        self.mcp = build_mcp_server(self)
        self.app = self._build_app()

    # --- what the tools do ------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    async def schedule(
        self,
        conversation_text: str,
        scheduled_time: str,
        endpoint: str,
        conversation_id: str | None,
        idempotency_key: object = None,
    ) -> Schedule:
        key = validation.parse_idempotency_key(idempotency_key)
        new = validation.new_schedule(
            conversation_text, scheduled_time, endpoint, conversation_id, self._now()
        )
        validation.check_allowed(new.endpoint, self.config.allowed_endpoints)
        schedule_id = f"sch_{uuid.uuid4().hex}"
        schedule, created = await anyio.to_thread.run_sync(
            self.store.create, new, schedule_id, key, self._clock()
        )
        logger.info(
            "%s schedule_id=%s conversation_id=%s due=%s endpoint=%s",
            "scheduled" if created else "replayed (idempotency key)",
            schedule.schedule_id, schedule.conversation_id, schedule.scheduled_time,
            validation.redact_endpoint(schedule.endpoint),
        )  # fmt: skip
        if created and schedule.due_at <= self._clock():
            self.dispatcher.wake()  # due already: send it now rather than on the next tick
        return schedule

    async def list_schedules(
        self, status: str | None, conversation_id: str | None, limit: int
    ) -> list[Schedule]:
        if not 0 < limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST}")
        return await anyio.to_thread.run_sync(
            self.store.list_schedules, validation.parse_status(status), conversation_id, limit
        )

    async def cancel(self, schedule_id: str, conversation_id: str | None) -> Schedule:
        schedule = await anyio.to_thread.run_sync(
            self.store.cancel, schedule_id, conversation_id, self._clock()
        )
        logger.info("cancelled schedule_id=%s", schedule.schedule_id)
        return schedule

    # --- serving --------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        mcp_app = self.mcp.streamable_http_app(host=self.config.host)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            # A mounted app gets no lifespan events: run the MCP session manager's here, inside
            # ours, so its sessions (and their tool calls) end before the store closes.
            async with self.running(), mcp_app.router.lifespan_context(mcp_app):
                yield

        return Starlette(
            routes=[Mount("/", app=mcp_app)],
            middleware=[
                Middleware(ApiKeyAuth, client_id=self.config.client_id, api_key=self.config.api_key)
            ],
            lifespan=lifespan,
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        """The dispatcher ticks while inside (unless `tick_seconds` is None); closes on exit."""
        ticking = None
        if self.config.tick_seconds is not None:
            ticking = asyncio.create_task(
                self.dispatcher.run_forever(self.config.tick_seconds), name="scheduler-dispatcher"
            )
        try:
            yield self
        finally:
            if ticking is not None:
                ticking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking
            await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        self.store.close()


def build_mcp_server(scheduler: Scheduler) -> MCPServer:
    server = MCPServer("scheduler", instructions=INSTRUCTIONS)

    @server.tool()
    async def schedule_conversation(
        conversation_text: Annotated[
            str, Field(description="What the conversation at the scheduled time starts with.")
        ],
        scheduled_time: Annotated[
            str,
            Field(description="When, ISO 8601 with a timezone, e.g. 2030-01-31T09:00:00+01:00."),
        ],
        endpoint: Annotated[
            str, Field(description="The http(s) URL that receives the conversation when due.")
        ],
        ctx: Context,
        conversation_id: Annotated[
            str | None, Field(description="The conversation to continue; a new id if omitted.")
        ] = None,
    ) -> ScheduledConversation:
        """Schedule a conversation to be sent to `endpoint` at `scheduled_time`."""
        meta: Any = ctx.request_context.meta or {}
        with _refusals_as_tool_errors():
            schedule = await scheduler.schedule(
                conversation_text,
                scheduled_time,
                endpoint,
                conversation_id,
                meta.get(IDEMPOTENCY_META_KEY),
            )
        return _scheduled(schedule)

    @server.tool()
    async def list_scheduled_conversations(
        status: Annotated[
            str | None,
            Field(description="Only this status: pending, delivered, failed or cancelled."),
        ] = None,
        conversation_id: Annotated[
            str | None, Field(description="Only this conversation's schedules.")
        ] = None,
        limit: Annotated[int, Field(description=f"At most this many (1 to {MAX_LIST}).")] = 100,
    ) -> list[ScheduleSummary]:
        """List scheduled conversations, soonest first, with their delivery status."""
        with _refusals_as_tool_errors():
            schedules = await scheduler.list_schedules(status, conversation_id, limit)
        return [_summary(schedule) for schedule in schedules]

    @server.tool()
    async def cancel_scheduled_conversation(
        schedule_id: Annotated[str, Field(description="The id schedule_conversation returned.")],
        conversation_id: Annotated[
            str | None, Field(description="If given, the schedule must belong to it.")
        ] = None,
    ) -> CancelledConversation:
        """Cancel a pending scheduled conversation (cancelling twice is harmless)."""
        with _refusals_as_tool_errors():
            schedule = await scheduler.cancel(schedule_id, conversation_id)
        return CancelledConversation(schedule_id=schedule.schedule_id, status=schedule.status)

    return server
