"""The HTTP API's bodies as types: the request models are the validation (strict: no coercion,
`True` is no number and `"1"` no integer), the request and response models together are the
schemas of `/api/openapi.json`.

A refusal names the field as the API always has (`detail` is read by people and by clients'
tests): each field carries its message (`Says`), formatted with where the field is (`'content'`,
`items[2].content`); a rule that needs the deployment's limits or says more raises its own
`detail` error. pydantic's own wording never reaches a caller.

Limits that are the deployment's (`AGENT_MAX_MESSAGE_CHARS`, `AGENT_WAIT_SECONDS_CAP`) come
through the validation context (`limits`); the document fills them in (`agent.http.openapi`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails, PydanticCustomError
from typing_extensions import TypeAliasType

from agent import webhooks
from agent.errors import BadRequest
from agent.loop import RunStatus
from storage.models import PLAIN_ID, PREVIEW_CHARS

ID_PATTERN = f"^{PLAIN_ID.pattern}$"  # every id in a path or body
MAX_SCHEDULE_ITEMS = 100
# The Scheduler's callback body.
MAX_CALLBACK_ITEMS = 1000
MAX_CALLBACK_CONTENT_CHARS = 32_000
MAX_SCHEDULE_ID_CHARS = 128
MAX_SCHEDULED_TIME_CHARS = 64
WHERE = "{where}"  # in a message: where the field is, e.g. 'content' or items[2].content

# The run statuses, listed once: a run that is going, then how a run ends (the loop's own).
ActiveStatus = Literal["pending", "running", "waiting_for_approval", "waiting_for_input"]
RunState = Literal[ActiveStatus, RunStatus]
ACTIVE: tuple[str, ...] = get_args(ActiveStatus)
TERMINAL: frozenset[str] = frozenset(get_args(RunStatus))
RUN_STATUSES: tuple[str, ...] = get_args(RunState)


# --- refusals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Says:
    """A field's refusal, whatever rule it broke (`{where}`: the field)."""

    detail: str


def refuse(detail: str) -> PydanticCustomError:
    """A refusal with its own detail (`{where}` is filled in), for a rule `Says` cannot word."""
    return PydanticCustomError("detail", detail)


class Body(BaseModel):
    """A request body: strict types; unknown keys are ignored (as they always were)."""

    model_config = ConfigDict(strict=True, frozen=True)
    quoted: ClassVar[bool] = True  # top-level fields named 'like_this' (nested: items[0].name)
    invalid: ClassVar[str] = "{where} must be an object"  # as a list item that is no object


B = TypeVar("B", bound=Body)


def validated(model: type[B], document: Any, **context: Any) -> B:
    """`document` as a `model`, or BadRequest with the first refusal's detail."""
    try:
        return model.model_validate(document, context=context)
    except ValidationError as exc:
        raise BadRequest(detail_of(model, exc.errors()[0])) from None


def detail_of(model: type[Body], error: ErrorDetails) -> str:
    loc = error["loc"]
    where = _where(loc, model.quoted)
    if error["type"] == "detail":
        return error["msg"].replace(WHERE, where)
    return _message(model, loc).replace(WHERE, where)


def _where(loc: Sequence[int | str], quoted: bool) -> str:
    if len(loc) == 1 and quoted:
        return f"'{loc[0]}'"
    parts = [f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc]
    return "".join(parts).removeprefix(".")


def _message(model: type[Body], loc: Sequence[int | str]) -> str:
    """The `Says` of the field at `loc` (a list item that is no object: its model's `invalid`)."""
    current: type[Body] = model
    message = "{where} is invalid"
    for part in loc:
        if isinstance(part, int):
            message = current.invalid
            continue
        field = current.model_fields.get(part)
        if field is None:
            break
        message = next((m.detail for m in field.metadata if isinstance(m, Says)), message)
        current = _item_model(field.annotation) or current
    return message


def _item_model(annotation: Any) -> type[Body] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Body):
            return candidate
    return None


# --- shared types --------------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "blank")  # worded by the field's `Says`
    return value


def _within_message_limit(value: str, info: ValidationInfo) -> str:
    """The deployment's limit, from the validation context (400, not 413: the document says
    maxLength, a rule of the schema like any other; 413 is for the body's size)."""
    limits = (info.context or {}).get("limits")
    if limits is not None and len(value) > limits.max_message_chars:
        raise refuse(f"{WHERE} is {len(value)} characters; the limit is {limits.max_message_chars}")
    return value


NOT_BLANK = {"not": {"pattern": r"^\s*$"}}

Id = TypeAliasType(
    "Id",
    Annotated[str, Field(pattern=ID_PATTERN, description="1-64 letters, digits, '-' or '_'.")],
)
MessageContent = TypeAliasType(
    "MessageContent",
    Annotated[
        str,
        Field(
            min_length=1,
            description="The user's message: at least one non-space character.",
            json_schema_extra=NOT_BLANK,  # maxLength: the deployment's (see agent.http.openapi)
        ),
        AfterValidator(_not_blank),
        AfterValidator(_within_message_limit),
    ],
)
CallbackContent = Annotated[
    str,
    Field(min_length=1, max_length=MAX_CALLBACK_CONTENT_CHARS, json_schema_extra=NOT_BLANK),
    AfterValidator(_not_blank),
]
CONTENT_REQUIRED = Says("{where} is required and must be a non-empty string")
CALLBACK_CONTENT = Says(
    f"{WHERE} must be a non-empty string of at most {MAX_CALLBACK_CONTENT_CHARS} characters"
)
DATE_TIME = {"type": "string", "format": "date-time"}


# --- conversations -------------------------------------------------------------------------------


class NewConversation(Body):
    id: Annotated[
        Id | None,
        Field(description="The conversation id to use; a random one when absent or null."),
        Says("{where} must be 1-64 letters, digits, '-' or '_'"),
    ] = None


class NewMessage(Body):
    content: Annotated[MessageContent, CONTENT_REQUIRED]
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            description="Wait up to this long for the answer (200) instead of answering 202 at "
            "once; capped at {wait_seconds_cap} s.",
        ),
        Says("{where} must be a non-negative number"),
    ] = 0


class ApprovalAnswer(Body):
    tool_call_id: Annotated[
        str,
        Field(min_length=1, description="A tool call in the run's pending_approvals."),
        Says("{where} is required: the id of a tool call awaiting approval"),
    ]
    approved: Annotated[bool, Says("{where} is required and must be true or false")]
    question_id: Annotated[
        str | None,
        Field(
            description="Optional: the run's question_id this answers (409 if the run asks "
            "another question now)."
        ),
        Says("{where}, when given, must be a string: the run's question_id"),
    ] = None


InputAction = Literal["accept", "decline", "cancel"]


class InputAnswer(Body):
    """The answer to a run's pending_input: MCP's elicitation result."""

    action: Annotated[
        InputAction,
        Field(description="accept (with content), decline, or cancel."),
        Says("{where} is required: 'accept', 'decline' or 'cancel'"),
    ]
    content: Annotated[
        dict[str, Any] | None,
        Field(
            description="With accept: a value for each field of pending_input.requested_schema "
            "(checked against it: 400 naming the first bad field)."
        ),
        Says("{where}, when given, must be an object"),
    ] = None
    question_id: Annotated[
        str | None,
        Field(
            description="Optional: the pending_input.question_id this answers (409 if that "
            "question is answered already or the run asks another one now)."
        ),
        Says("{where}, when given, must be a string: pending_input.question_id"),
    ] = None


# --- schedules -----------------------------------------------------------------------------------


def _scheduled_time(value: Any) -> datetime:
    """ISO 8601 with a timezone (a trailing `Z` too), in UTC."""
    if not isinstance(value, str):
        raise refuse(f"{WHERE} is required (ISO 8601 with a timezone)")
    try:
        when = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise refuse(f"{WHERE} is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        raise refuse(f"{WHERE} needs a timezone (e.g. 2026-01-01T09:00:00Z)")
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise refuse(f"{WHERE} is out of range") from None


class ScheduleItem(Body):
    content: Annotated[MessageContent, CONTENT_REQUIRED]
    conversation_id: Annotated[
        Id | None,
        Field(
            description="An existing conversation of the caller's; a new conversation when "
            "absent or null."
        ),
        Says("{where} must be 1-64 letters, digits, '-' or '_'"),
    ] = None
    scheduled_time: Annotated[
        datetime,
        BeforeValidator(_scheduled_time),
        Field(
            description="When to run it: ISO 8601 with a timezone. An item whose time has "
            "passed is taken and shown rejected."
        ),
        Says("{where} is required (ISO 8601 with a timezone)"),
    ]


class ScheduleRequest(Body):
    items: Annotated[
        list[ScheduleItem],
        Field(min_length=1, max_length=MAX_SCHEDULE_ITEMS),
        Says(f"{WHERE} must be a list of 1 to {MAX_SCHEDULE_ITEMS} items"),
    ]


# --- the Scheduler's callbacks -------------------------------------------------------------------


class CallbackBody(Body):
    quoted: ClassVar[bool] = False  # the callbacks' own wording: `items[0].content must ...`


ScheduleId = Annotated[
    Annotated[str, Field(min_length=1, max_length=MAX_SCHEDULE_ID_CHARS)] | None,
    Says(f"{WHERE} must be a string of 1 to {MAX_SCHEDULE_ID_CHARS} characters, or null"),
]
ScheduledTimeText = Annotated[
    Annotated[str, Field(min_length=1, max_length=MAX_SCHEDULED_TIME_CHARS)] | None,
    Says(f"{WHERE} must be a string of 1 to {MAX_SCHEDULED_TIME_CHARS} characters, or null"),
]
CALLBACK_ID = Says(f"{WHERE} must match {ID_PATTERN}")


class CallbackItem(CallbackBody):
    schedule_id: ScheduleId = None
    conversation_id: Annotated[Id, CALLBACK_ID]
    content: Annotated[CallbackContent, CALLBACK_CONTENT]
    scheduled_time: ScheduledTimeText = None


class CallbackBatch(CallbackBody):
    """`{"type": "conversations.due", "items": [...]}`: what the Scheduler sends."""

    type: Annotated[
        Literal["conversations.due"], Says(f"{WHERE} must be {webhooks.CALLBACK_TYPE!r}")
    ]
    items: Annotated[
        list[CallbackItem],
        Field(min_length=1, max_length=MAX_CALLBACK_ITEMS),
        Says(f"{WHERE} must be a non-empty list of at most {MAX_CALLBACK_ITEMS} objects"),
    ]


class SeedCallback(CallbackBody):
    """The seeds' callback body, as a Scheduler that cannot sign sends it."""

    status: Annotated[
        str | None,
        Field(description="Informational (e.g. `due`)."),
        Says(f"{WHERE} must be a string"),
    ] = None
    conversationId: Annotated[Id, CALLBACK_ID]
    content: Annotated[CallbackContent, CALLBACK_CONTENT]


class SingleCallback(SeedCallback):
    """The seeds' form on the signed route: a body without `type` (with one, it is a batch)."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["type"]}})


Callback = TypeAliasType(
    "Callback",
    Annotated[
        CallbackBatch | SingleCallback,
        Field(
            description='A batch `{"type": "conversations.due", "items": [...]}`, or the '
            'single form `{"conversationId", "status", "content"}`.'
        ),
    ],
)


# --- responses -----------------------------------------------------------------------------------


class Reply(BaseModel):
    """A response body (documented, not validated: the handlers build them)."""


class Problem(Reply):
    """An error (RFC 9457 problem details); `detail` says what is wrong."""

    type: str
    title: Annotated[str, Field(min_length=1)]
    status: Annotated[int, Field(ge=400, le=599)]
    detail: Annotated[str, Field(min_length=1)]


NonNegative = Annotated[int, Field(ge=0)]


class Usage(Reply):
    prompt_tokens: NonNegative
    completion_tokens: NonNegative
    total_tokens: NonNegative


Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
UriReference = Annotated[str, Field(json_schema_extra={"format": "uri-reference"})]


class ConversationCreated(Reply):
    id: Id
    created_at: Timestamp


class ToolCall(Reply):
    id: str
    name: str
    arguments: Annotated[str, Field(description="JSON text")]


class Message(Reply):
    id: str
    role: Literal["user", "assistant", "tool", "system"]
    content: str | None
    created_at: Timestamp
    run_id: str | SkipJsonSchema[None] = None
    origin: Annotated[
        Literal["scheduled", "scheduled_by_assistant"] | SkipJsonSchema[None],
        Field(
            description="present when the caller did not type this message: scheduled by the "
            "conversation's owner, or by the assistant through schedule_conversation"
        ),
    ] = None
    tool_calls: list[ToolCall] | SkipJsonSchema[None] = None
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool | SkipJsonSchema[None] = None
    truncated: bool | SkipJsonSchema[None] = None
    output_ref: str | None = None
    usage: Usage | SkipJsonSchema[None] = None


class Conversation(Reply):
    id: Id
    created_at: Timestamp
    turns: NonNegative
    active_run_id: str | None
    messages: list[Message]
    usage: Usage


class ConversationSummary(Reply):
    id: Id
    created_at: Timestamp
    last_activity: Annotated[
        Timestamp, Field(description="When a turn last began or ended (else: created_at).")
    ]
    preview: Annotated[
        str | None,
        Field(
            max_length=PREVIEW_CHARS,
            description=f"The first message on one line, at most {PREVIEW_CHARS} characters "
            "(null before the first message).",
        ),
    ]
    turns: NonNegative
    active_run_id: Annotated[str | None, Field(description="The running turn's run, if any.")]


class ConversationList(Reply):
    conversations: Annotated[
        list[ConversationSummary], Field(description="Most recently active first.")
    ]
    continuation: Annotated[
        str | None,
        Field(
            description="Pass as `continuation` for the next page; null on the last page. A "
            "page may hold fewer than `limit` while more follow."
        ),
    ]


class RunAccepted(Reply):
    run_id: str
    conversation_id: Id
    status_url: Annotated[
        UriReference, Field(description="Absolute from PUBLIC_BASE_URL when set, else relative.")
    ]


class PendingToolTask(Reply):
    """A tool call its MCP server runs as a task, while the run waits for it."""

    tool_call_id: str
    task_id: str
    server: str
    status: Annotated[str, Field(description="The server's: working or input_required.")]
    status_message: str | None = None


class PendingInput(Reply):
    """A question the run's tool call asks a person (an MCP elicitation, form mode)."""

    question_id: str
    tool_call_id: str
    message: Annotated[str, Field(description="The MCP server's message, to show as is.")]
    requested_schema: Annotated[
        dict[str, Any],
        Field(
            description="MCP's restricted form schema: a flat object of string, number, "
            "integer, boolean and choice fields, with `required`."
        ),
    ]
    deadline: Annotated[
        str, Field(description="ISO 8601, UTC: no answer by then counts as declined.")
    ]


class Run(Reply):
    run_id: str
    conversation_id: Id
    status: RunState
    step: NonNegative | SkipJsonSchema[None] = None
    phase: str | SkipJsonSchema[None] = None
    usage: Usage | SkipJsonSchema[None] = None
    answer: str | None = None
    error: str | SkipJsonSchema[None] = None
    pending_approvals: Annotated[
        list[str] | SkipJsonSchema[None],
        Field(description="While waiting_for_approval: the tool calls to answer."),
    ] = None
    interrupted_calls: Annotated[
        list[str] | SkipJsonSchema[None],
        Field(
            description="Those of pending_approvals that were cut off by a restart with their "
            "outcome unknown: approve to call them again, reject (or let the approval time "
            "out) to tell the model they were not repeated."
        ),
    ] = None
    question_id: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description="While waiting_for_approval: which question the run asks now. Send it "
            "with the answer, so that an answer repeated after the run moved on is refused "
            "(409) instead of being taken for a later question."
        ),
    ] = None
    pending_tasks: Annotated[
        list[PendingToolTask] | SkipJsonSchema[None],
        Field(
            description="In phase waiting_for_task (or waiting_for_input, when a task asks a "
            "person): the tool calls their MCP servers run as tasks, polled until they end (see "
            "README, Long-running tools)."
        ),
    ] = None
    pending_input: Annotated[
        PendingInput | SkipJsonSchema[None],
        Field(description="While waiting_for_input: the question to answer (POST .../input)."),
    ] = None


class InputAccepted(Reply):
    run_id: str
    question_id: str
    action: InputAction


class ApprovalAccepted(Reply):
    run_id: str
    tool_call_id: str
    approved: bool


EventType = Literal[
    "run_started",
    "step_started",
    "text_delta",
    "text_reset",
    "step_completed",
    "step_failed",
    "tool_call_requested",
    "approval_needed",
    "approval_decided",
    "tool_call_started",
    "input_requested",
    "input_answered",
    "tool_call_completed",
    "tool_call_failed",
    "throttled",
    "task_started",
    "task_status",
    "task_finished",
    "run_finished",
]


class RunEvent(Reply):
    """One event of a run (agent.events). Beside `type`, `seq` and `at`, each type has its own
    fields: text_delta {step, delta}; tool_call_* {step, tool_call_id, name, arguments,
    result?, truncated?}; approval_needed {tool_call_id, name, arguments, reason};
    approval_decided {tool_call_id, approved, kind}; input_requested {tool_call_id, question_id,
    message, requested_schema, deadline}; input_answered {question_id, action, by}; throttled
    {wait, reason}; run_finished {status, answer?}; text_reset {step}: drop the step's text so far
    (it streams again); task_started / task_status / task_finished {step, tool_call_id, task_id,
    server, status, status_message?, outcome?}: a tool call its MCP server runs as a task
    (agent.mcp.tasks)."""

    model_config = ConfigDict(extra="allow")

    type: EventType
    seq: Annotated[int, Field(ge=1, description="Dense, from 1: the SSE id.")]
    at: str


class RunEvents(Reply):
    """The long-poll answer (`?wait=`): the events after `after`, as they were there."""

    run_id: str
    events: list[RunEvent]
    last_event_id: Annotated[
        NonNegative, Field(description="Pass as `after` to get the next events.")
    ]
    finished: Annotated[bool, Field(description="run_finished is among the events sent.")]


class RunCancelled(Reply):
    run_id: str
    # cancelling: Durable has not yet reported the run ended; it still holds its conversation
    # until GET /runs/{run_id} says cancelled.
    status: Literal["cancelled", "cancelling"]


class BatchItem(Reply):
    index: NonNegative
    conversation_id: Id
    scheduled_time: str | None
    status: Annotated[
        str, Field(description="pending, scheduled, rejected, or the status of its run.")
    ]
    schedule_id: str | SkipJsonSchema[None] = None
    error: str | SkipJsonSchema[None] = None
    run_id: str | SkipJsonSchema[None] = None
    answer: str | None = None


class Batch(Reply):
    batch_id: str
    source: Literal["callback", "schedule"]
    created_at: Timestamp
    counts: Mapping[str, int]
    items: list[BatchItem]


class CallbackAccepted(Reply):
    batch_id: str
    items: NonNegative
    duplicate: Annotated[
        bool,
        Field(
            description="True for a repeated delivery (same webhook-id): nothing new was started."
        ),
    ]


class SeedCallbackAccepted(Reply):
    success: Literal[True]
    conversationId: Id
    run_id: Annotated[
        str, Field(description="The turn's run: at /api/runs/{run_id} once it has started.")
    ]
    batch_id: str
    status_url: Annotated[
        UriReference,
        Field(
            description="The delivery's batch: the item's status from the start, then its "
            "run's status and answer."
        ),
    ]
    duplicate: Annotated[
        bool,
        Field(
            description="False for the request that started the delivery; true for a repeat "
            "(same Idempotency-Key, or else the same body, within 24 hours): nothing new was "
            "started; the ids are the first's."
        ),
    ]


class Health(Reply):
    status: Literal["ok"]


class Document(Reply):
    """The OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
