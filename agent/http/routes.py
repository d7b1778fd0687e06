"""The route table: every operation of the API with its models, statuses and security. The
OpenAPI document is assembled from it (`agent.http.openapi`), and so is the `Allow` of a 405.

A route here is declared in `function_app.py` too (the Functions host routes by that), with the
same path, method, function name (`operation_id`) and auth level; `tests/agent/test_openapi.py`
holds the two together. Descriptions may name a deployment limit as `{max_body_bytes}`,
`{max_message_chars}` or `{wait_seconds_cap}`: the document fills in the deployment's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agent.http import models as m
from agent.http.callbacks import (
    IDEMPOTENCY_HEADER,
    MAX_CALLBACK_BYTES,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_SEED_CALLBACK_BYTES,
)
from agent.http.paging import MAX_TOKEN_CHARS, TOKEN_PATTERN
from agent.webhooks import TIMESTAMP_PATTERN, WEBHOOK_ID_PATTERN

FALLBACK_ROUTE = "{*path}"  # function_app.py's last route: what no other route takes
PATH_PARAMETERS = {  # every path parameter is an Id
    "id": "The conversation id.",
    "run_id": "The run id (from post_message).",
    "batch_id": "The batch id.",
}
TOO_LARGE = "The body is over {max_body_bytes} bytes."


@dataclass(frozen=True)
class Ok:
    """A success response: its body's model (or a raw schema), its media type (a stream, e.g.
    `text/event-stream`, gives a raw schema) and, when sent, `Location`."""

    description: str
    body: type[BaseModel] | Any
    location: str | None = None
    media_type: str = "application/json"
    also: dict[str, Any] = field(default_factory=dict)  # other media types: model or schema


@dataclass(frozen=True)
class Operation:
    path: str  # as function_app.py routes it, without the /api prefix
    method: str
    operation_id: str  # the function's name in function_app.py
    tag: str
    summary: str
    ok: dict[int, Ok]
    errors: dict[int, str] = field(default_factory=dict)  # status → description ("" generic)
    body: Any = None  # the request model (or a type alias of models)
    body_required: bool = True
    body_description: str = ""
    description: str = ""
    anonymous: bool = False
    headers: tuple[dict[str, Any], ...] = ()
    every_error: bool = True  # with the 401, 500 and 503 any API route can give


WEBHOOK_HEADERS = (
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The delivery id: the idempotency key (a repeat starts nothing new).",
        "schema": {"type": "string", "pattern": f"^{WEBHOOK_ID_PATTERN.pattern}$"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds; more than 5 minutes off is refused.",
        "schema": {"type": "string", "pattern": f"^{TIMESTAMP_PATTERN.pattern}$"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": (
            'Space-separated `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.'
            '{body}">` signatures with the SCHEDULER_WEBHOOK_SECRET key; any one valid '
            "signature passes (key rotation)."
        ),
        "schema": {"type": "string", "minLength": 1},
    },
)
IDEMPOTENCY_KEY = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": "The repeat key (per caller, for 24 hours); without it, the body is, so an "
    "identical body within 24 hours is dropped as a repeat. Recommended: a new key per delivery.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS},
}

LISTING_QUERY = (
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "At most this many conversations (default 20).",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
    },
    {
        "name": "continuation",
        "in": "query",
        "required": False,
        "description": "The `continuation` of the previous page, as it was given.",
        "schema": {
            "type": "string",
            "pattern": f"^{TOKEN_PATTERN}$",
            "maxLength": MAX_TOKEN_CHARS,
        },
    },
)

CONVERSATIONS = (
    Operation(
        "conversations",
        "post",
        "create_conversation",
        "conversations",
        "Create a conversation",
        {201: Ok("Created.", m.ConversationCreated, "The conversation's URL.")},
        {400: "", 409: "A conversation with this id exists.", 413: TOO_LARGE},
        body=m.NewConversation,
        body_required=False,
        body_description="Optional; may be empty.",
    ),
    Operation(
        "conversations",
        "get",
        "list_conversations",
        "conversations",
        "The caller's conversations, most recently active first (paged)",
        {200: Ok("A page of conversations.", m.ConversationList)},
        {
            400: "`limit` is not a whole number from 1 to 100, or `continuation` is not a token "
            "this listing gave the caller."
        },
        description="Each conversation with its preview (the first message, bounded) and "
        "last activity (a turn beginning or ending). Follow `continuation` until it is null; "
        "each conversation comes once in a listing, except one that becomes active meanwhile "
        "(it moves to the front, where a new listing finds it).",
        headers=LISTING_QUERY,
    ),
    Operation(
        "conversations/{id}",
        "get",
        "get_conversation",
        "conversations",
        "A conversation's transcript and token usage",
        {200: Ok("The conversation.", m.Conversation)},
        {400: "", 404: ""},
    ),
    Operation(
        "conversations/{id}",
        "delete",
        "delete_conversation",
        "conversations",
        "Delete a conversation: its transcript, tool outputs, run events and runs' Durable history",
        {204: Ok("Deleted.", None)},
        {
            400: "",
            404: "The caller has no such conversation (or it is already deleted).",
            409: "A turn is running; cancel it or wait for it to finish.",
        },
    ),
    Operation(
        "conversations/{id}/messages",
        "post",
        "post_message",
        "conversations",
        "Send a message: start a turn",
        {
            200: Ok("The turn finished within wait_seconds.", m.Run),
            202: Ok("The turn started; poll status_url.", m.RunAccepted, "The run's status URL."),
        },
        {
            400: "The request is malformed: bad JSON, a missing or invalid field or id, or "
            "content over {max_message_chars} characters.",
            404: "",
            409: "A turn is already running in this conversation, or the conversation has used "
            "its token budget.",
            413: TOO_LARGE,
        },
        body=m.NewMessage,
        description="Starts the agent's turn. Answers 202 with the run's status URL at once, or "
        "200 with the finished run when it ends within `wait_seconds`.",
    ),
)

# Each SSE message of run_events (the shape OpenAPI 3.2 gives an itemSchema): schemathesis
# checks every streamed event against it.
SSE_MESSAGE = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/RunEvent"},
        },
    },
}
RUN_EVENTS_PARAMETERS = (
    {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "The id of the last event received: send the ones after it.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "As Last-Event-ID, for clients that cannot set headers.",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Long poll: answer JSON as soon as there are events after `after`, or "
        "after this many seconds (at most {wait_seconds_cap}).",
        "schema": {"type": "number", "minimum": 0},
    },
)

RUNS = (
    Operation(
        "runs/{run_id}",
        "get",
        "get_run",
        "runs",
        "A run's status, step, and answer or error",
        {200: Ok("The run.", m.Run)},
        {400: "", 404: ""},
    ),
    Operation(
        "runs/{run_id}/approvals",
        "post",
        "answer_approval",
        "runs",
        "Approve or refuse a tool call the run is waiting on",
        {202: Ok("The answer was passed to the run.", m.ApprovalAccepted)},
        {
            400: "",
            404: "No such run, or no such tool call awaiting approval.",
            409: "The run is not waiting for an approval, or not asking the question named.",
            413: "",
        },
        body=m.ApprovalAnswer,
    ),
    Operation(
        "runs/{run_id}/input",
        "post",
        "answer_input",
        "runs",
        "Answer the question a tool's server asks (MCP elicitation): accept, decline or cancel",
        {202: Ok("The answer was recorded and passed to the waiting tool call.", m.InputAccepted)},
        {
            400: "The content does not fit the question's requested_schema (the detail names "
            "the field), or content came with decline or cancel.",
            404: "No such run, or the run asks no question.",
            409: "The question is answered already (the first answer wins) or its deadline "
            "passed (counted as declined).",
            413: "",
        },
        body=m.InputAnswer,
        description="While `GET /runs/{run_id}` says `waiting_for_input`, its `pending_input` "
        "is the question. The model never answers it: no answer by the deadline counts as "
        "declined.",
    ),
    Operation(
        "runs/{run_id}/cancel",
        "post",
        "cancel_run",
        "runs",
        "Cancel a running turn",
        {
            202: Ok(
                "Cancelled; or `cancelling` when the run has not ended yet (it keeps its "
                "conversation until `GET /runs/{run_id}` says `cancelled`).",
                m.RunCancelled,
            )
        },
        {400: "", 404: "", 409: "The run has already finished."},
    ),
)

RUN_EVENTS = Operation(
    "runs/{run_id}/events",
    "get",
    "run_events",
    "runs",
    "A run's events as Server-Sent Events (resumable), or as JSON with `wait`",
    {
        200: Ok(
            "The events: SSE messages (`id` = seq, `event` = type, `data` = the event), or "
            "with `wait` the events so far as JSON.",
            SSE_MESSAGE,
            media_type="text/event-stream",
            also={"application/json": m.RunEvents},
        ),
        204: Ok("The run has finished and there is nothing after the id.", None),
    },
    {400: "", 404: ""},
    description="Resume with `Last-Event-ID` (or `after`); the stream ends after "
    "`run_finished`. Streamed when the app runs with AGENT_HTTP_STREAMING; otherwise each "
    "answer carries the events there are, and EventSource reconnects (`retry`). With `wait`, "
    "JSON instead (long polling).",
    headers=RUN_EVENTS_PARAMETERS,
)

SCHEDULING = (
    Operation(
        "scheduler/callback",
        "post",
        "scheduler_callback",
        "scheduling",
        "The Scheduler's signed webhook (Standard Webhooks)",
        {202: Ok("Accepted (also for a repeated delivery).", m.CallbackAccepted)},
        {
            400: "The (verified) body is malformed.",
            401: "A missing or invalid signature, a timestamp more than 5 minutes off, or "
            "callbacks are disabled (no SCHEDULER_WEBHOOK_SECRET).",
            413: f"The body is over {MAX_CALLBACK_BYTES} bytes.",
        },
        body=m.Callback,
        description="Anonymous at the Functions level: every request must carry a valid "
        "Standard Webhooks signature, checked before anything is read or stored.",
        anonymous=True,
        headers=WEBHOOK_HEADERS,
    ),
    Operation(
        "scheduler/conversation-callback",
        "post",
        "conversation_callback",
        "scheduling",
        "The seeds' callback from a Scheduler that cannot sign",
        {200: Ok("Accepted: the turn starts (also for a repeat).", m.SeedCallbackAccepted)},
        {
            400: "",
            404: "The conversation is not the caller's.",
            409: "The Idempotency-Key was used for another body within 24 hours.",
            413: f"The body is over {MAX_SEED_CALLBACK_BYTES} bytes.",
        },
        body=m.SeedCallback,
        description=(
            "With a function key instead of a signature: starts a turn with `content` in the "
            "caller's own conversation, on the same durable path as the signed callback. A "
            "repeat (the same Idempotency-Key, or without one the same body, within 24 hours) "
            "starts nothing new and answers the first's ids. Without an Idempotency-Key, the "
            "same text sent twice to the same conversation within 24 hours is taken as one "
            'delivery: the second is answered `"duplicate": true` (and logged) and does not '
            "run. Send an Idempotency-Key that is new for each delivery (the same on its "
            "retries). `duplicate` is false for the request that started the delivery. "
            'Errors carry `"success": false` and `error` (= `detail`) besides the problem '
            "fields, as the seeds' senders read them."
        ),
        headers=(IDEMPOTENCY_KEY,),
    ),
    Operation(
        "schedules",
        "post",
        "schedule_batch",
        "scheduling",
        "Schedule a batch of conversations",
        {202: Ok("Scheduled (items the Scheduler refused say why).", m.Batch)},
        {
            400: "The request is malformed: bad JSON, a missing or invalid field, or a content "
            "over {max_message_chars} characters.",
            404: "A named conversation is not the caller's.",
            413: TOO_LARGE,
        },
        body=m.ScheduleRequest,
        description="Through the Scheduler MCP server when one is configured, else with "
        "durable timers. Answers with the batch; follow it at /api/batches/{batch_id}.",
    ),
    Operation(
        "batches/{batch_id}",
        "get",
        "get_batch",
        "scheduling",
        "A batch's per-item progress",
        {200: Ok("The batch.", m.Batch)},
        {400: "", 404: ""},
    ),
)

SERVICE = (
    Operation(
        "health",
        "get",
        "health",
        "service",
        "Liveness (no secrets, no dependencies)",
        {200: Ok("Alive.", m.Health)},
        {
            503: "The app is misconfigured: `detail` names each bad setting, and "
            "`invalid_settings` lists their names."
        },
        anonymous=True,
        every_error=False,
    ),
    Operation(
        "openapi.json",
        "get",
        "openapi_document",
        "service",
        "This document",
        {200: Ok("The OpenAPI 3.1 document.", m.Document)},
        {503: ""},
        anonymous=True,
        every_error=False,
    ),
)


def _page_file(path: str, operation_id: str, summary: str, media_type: str) -> Operation:
    """One file of the chat page (agent/ui/page.py): anonymous and static; the page calls the
    API from the browser with the function key the user pastes."""
    return Operation(
        path,
        "get",
        operation_id,
        "ui",
        summary,
        {
            200: Ok(
                "The file, with a Content Security Policy allowing only the page's own.",
                {"type": "string"},
                media_type=media_type,
            )
        },
        {503: "The app is misconfigured: `detail` names each bad setting."},
        anonymous=True,
        every_error=False,
    )


PAGE = (
    _page_file("ui", "chat_page", "The chat page", "text/html"),
    _page_file("ui/app.js", "chat_page_script", "The chat page's script", "text/javascript"),
    _page_file("ui/app.css", "chat_page_style", "The chat page's style sheet", "text/css"),
)

ROUTES: tuple[Operation, ...] = (*CONVERSATIONS, *RUNS, RUN_EVENTS, *SCHEDULING, *SERVICE, *PAGE)
