"""The HTTP API as an OpenAPI 3.1 document, served at `GET /api/openapi.json` (anonymous).

Built from code rather than kept as a static file because the request limits are this
deployment's own (`AGENT_MAX_BODY_BYTES`, `AGENT_MAX_MESSAGE_CHARS`, `AGENT_WAIT_SECONDS_CAP`):
the document states the limits the handlers enforce. Everything else mirrors the handlers in
`agent/http_api.py` and `agent/scheduling.py`; `tests/agent/test_openapi.py` keeps the routes in
step with `function_app.py` and `tests/e2e/test_fuzz.py` checks the handlers keep to it.

Errors are `application/problem+json` (RFC 9457) with `type`, `title`, `status` and `detail`.
Paths carry the `api` route prefix from host.json.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from agent import webhooks
from agent.http import callbacks, schedules
from agent.settings import Limits
from storage.models import PLAIN_ID

API_PREFIX = "/api"  # host.json: extensions.http.routePrefix
ID_PATTERN = f"^{PLAIN_ID.pattern}$"  # every id in a path or body
OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"
PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_SCHEDULE_ITEMS = schedules.MAX_SCHEDULE_ITEMS
MAX_CALLBACK_ITEMS = webhooks.MAX_ITEMS
MAX_CALLBACK_CONTENT_CHARS = webhooks.MAX_CONTENT_CHARS
MAX_CALLBACK_BYTES = callbacks.MAX_CALLBACK_BYTES
WEBHOOK_ID_PATTERN = f"^{webhooks.WEBHOOK_ID_PATTERN.pattern}$"
WEBHOOK_TIMESTAMP_PATTERN = f"^{webhooks.TIMESTAMP_PATTERN.pattern}$"
RUN_STATUSES = [
    "pending",
    "running",
    "waiting_for_approval",
    "completed",
    "failed",
    "cancelled",
    "content_filtered",
    "budget_exceeded",
]
FALLBACK_ROUTE = "{*path}"  # function_app.py's last route: what no other route takes
FUNCTION_KEY = [{"functionKeyHeader": []}, {"functionKeyQuery": []}]
ANONYMOUS: list[dict[str, list[str]]] = []


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


# --- reusable parts ------------------------------------------------------------------------------


def _schemas(limits: Limits) -> dict[str, Any]:
    content = {
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_message_chars,
        "not": {"pattern": r"^\s*$"},  # not blank
        "description": "The user's message: at least one non-space character.",
    }
    usage = {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {
            name: {"type": "integer", "minimum": 0}
            for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        },
    }
    return {
        "Id": {
            "type": "string",
            "pattern": ID_PATTERN,
            "description": "1-64 letters, digits, '-' or '_'.",
        },
        "Problem": {
            "type": "object",
            "description": "An error (RFC 9457 problem details); `detail` says what is wrong.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string", "minLength": 1},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string", "minLength": 1},
            },
        },
        "Usage": usage,
        "MessageContent": content,
        "NewConversation": {
            "type": "object",
            "properties": {
                "id": {
                    "anyOf": [_ref("Id"), {"type": "null"}],
                    "description": "The conversation id to use; a random one when absent or null.",
                }
            },
        },
        "ConversationCreated": {
            "type": "object",
            "required": ["id", "created_at"],
            "properties": {
                "id": _ref("Id"),
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "Message": {
            "type": "object",
            "required": ["id", "role", "content", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "role": {"enum": ["user", "assistant", "tool", "system"]},
                "content": _nullable({"type": "string"}),
                "created_at": {"type": "string", "format": "date-time"},
                "run_id": {"type": "string"},
                "origin": {
                    "enum": ["scheduled", "scheduled_by_assistant"],
                    "description": "present when the caller did not type this message: "
                    "scheduled by the conversation's owner, or by the assistant through "
                    "schedule_conversation",
                },
                "tool_calls": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "name", "arguments"],
                        "properties": {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "arguments": {"type": "string", "description": "JSON text"},
                        },
                    },
                },
                "tool_call_id": _nullable({"type": "string"}),
                "name": _nullable({"type": "string"}),
                "is_error": {"type": "boolean"},
                "truncated": {"type": "boolean"},
                "output_ref": _nullable({"type": "string"}),
                "usage": _ref("Usage"),
            },
        },
        "Conversation": {
            "type": "object",
            "required": ["id", "created_at", "turns", "active_run_id", "messages", "usage"],
            "properties": {
                "id": _ref("Id"),
                "created_at": {"type": "string", "format": "date-time"},
                "turns": {"type": "integer", "minimum": 0},
                "active_run_id": _nullable({"type": "string"}),
                "messages": {"type": "array", "items": _ref("Message")},
                "usage": _ref("Usage"),
            },
        },
        "NewMessage": {
            "type": "object",
            "required": ["content"],
            "properties": {
                "content": _ref("MessageContent"),
                "wait_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "default": 0,
                    "description": (
                        "Wait up to this long for the answer (200) instead of answering 202 at "
                        f"once; capped at {limits.wait_seconds_cap} s."
                    ),
                },
            },
        },
        "RunAccepted": {
            "type": "object",
            "required": ["run_id", "conversation_id", "status_url"],
            "properties": {
                "run_id": {"type": "string"},
                "conversation_id": _ref("Id"),
                "status_url": {
                    "type": "string",
                    "format": "uri-reference",
                    "description": "Absolute from PUBLIC_BASE_URL when set, else relative.",
                },
            },
        },
        "Run": {
            "type": "object",
            "required": ["run_id", "conversation_id", "status"],
            "properties": {
                "run_id": {"type": "string"},
                "conversation_id": _ref("Id"),
                "status": {"enum": RUN_STATUSES},
                "step": {"type": "integer", "minimum": 0},
                "phase": {"type": "string"},
                "usage": _ref("Usage"),
                "answer": _nullable({"type": "string"}),
                "error": {"type": "string"},
                "pending_approvals": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "While waiting_for_approval: the tool calls to answer.",
                },
                "interrupted_calls": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": (
                        "Those of pending_approvals that were cut off by a restart with their "
                        "outcome unknown: approve to call them again, reject (or let the "
                        "approval time out) to tell the model they were not repeated."
                    ),
                },
                "question_id": {
                    "type": "string",
                    "description": (
                        "While waiting_for_approval: which question the run asks now. Send "
                        "it with the answer, so that an answer repeated after the run moved "
                        "on is refused (409) instead of being taken for a later question."
                    ),
                },
            },
        },
        "ApprovalAnswer": {
            "type": "object",
            "required": ["tool_call_id", "approved"],
            "properties": {
                "tool_call_id": {
                    "type": "string",
                    "minLength": 1,
                    "description": "A tool call in the run's pending_approvals.",
                },
                "approved": {"type": "boolean"},
                "question_id": {
                    "type": "string",
                    "description": "Optional: the run's question_id this answers (409 if the "
                    "run asks another question now).",
                },
            },
        },
        "ApprovalAccepted": {
            "type": "object",
            "required": ["run_id", "tool_call_id", "approved"],
            "properties": {
                "run_id": {"type": "string"},
                "tool_call_id": {"type": "string"},
                "approved": {"type": "boolean"},
            },
        },
        "RunCancelled": {
            "type": "object",
            "required": ["run_id", "status"],
            "properties": {
                "run_id": {"type": "string"},
                # cancelling: Durable has not yet reported the run ended; it still holds its
                # conversation until GET /runs/{run_id} says cancelled.
                "status": {"enum": ["cancelled", "cancelling"]},
            },
        },
        "ScheduleRequest": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_SCHEDULE_ITEMS,
                    "items": {
                        "type": "object",
                        "required": ["content", "scheduled_time"],
                        "properties": {
                            "content": _ref("MessageContent"),
                            "scheduled_time": {
                                "type": "string",
                                "format": "date-time",
                                "description": "When to run it: ISO 8601 with a timezone. "
                                "An item whose time has passed is taken and shown rejected.",
                            },
                            "conversation_id": {
                                "anyOf": [_ref("Id"), {"type": "null"}],
                                "description": "An existing conversation of the caller's; a new "
                                "conversation when absent or null.",
                            },
                        },
                    },
                }
            },
        },
        "BatchItem": {
            "type": "object",
            "required": ["index", "conversation_id", "scheduled_time", "status"],
            "properties": {
                "index": {"type": "integer", "minimum": 0},
                "conversation_id": _ref("Id"),
                "scheduled_time": _nullable({"type": "string"}),
                "status": {
                    "type": "string",
                    "description": "pending, scheduled, rejected, or the status of its run.",
                },
                "schedule_id": {"type": "string"},
                "error": {"type": "string"},
                "run_id": {"type": "string"},
                "answer": _nullable({"type": "string"}),
            },
        },
        "Batch": {
            "type": "object",
            "required": ["batch_id", "source", "created_at", "counts", "items"],
            "properties": {
                "batch_id": {"type": "string"},
                "source": {"enum": ["callback", "schedule"]},
                "created_at": {"type": "string", "format": "date-time"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "items": {"type": "array", "items": _ref("BatchItem")},
            },
        },
        "CallbackItem": {
            "type": "object",
            "required": ["conversation_id", "content"],
            "properties": {
                "schedule_id": _nullable(
                    {"type": "string", "minLength": 1, "maxLength": webhooks.MAX_SCHEDULE_ID_CHARS}
                ),
                "conversation_id": _ref("Id"),
                "content": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_CALLBACK_CONTENT_CHARS,
                    "not": {"pattern": r"^\s*$"},  # not blank
                },
                "scheduled_time": _nullable(
                    {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": webhooks.MAX_SCHEDULED_TIME_CHARS,
                    }
                ),
            },
        },
        "Callback": {
            "description": (
                'A batch `{"type": "conversations.due", "items": [...]}`, or the single form '
                '`{"conversationId", "status", "content"}`.'
            ),
            "anyOf": [
                {
                    "type": "object",
                    "required": ["type", "items"],
                    "properties": {
                        "type": {"const": "conversations.due"},
                        "items": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_CALLBACK_ITEMS,
                            "items": _ref("CallbackItem"),
                        },
                    },
                },
                {
                    "type": "object",
                    "required": ["conversationId", "content"],
                    "not": {"required": ["type"]},
                    "properties": {
                        "conversationId": _ref("Id"),
                        "status": _nullable({"type": "string"}),
                        "content": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_CALLBACK_CONTENT_CHARS,
                            "not": {"pattern": r"^\s*$"},  # not blank
                        },
                    },
                },
            ],
        },
        "CallbackAccepted": {
            "type": "object",
            "required": ["batch_id", "items", "duplicate"],
            "properties": {
                "batch_id": {"type": "string"},
                "items": {"type": "integer", "minimum": 0},
                "duplicate": {
                    "type": "boolean",
                    "description": "True for a repeated delivery (same webhook-id): nothing new "
                    "was started.",
                },
            },
        },
        "SeedCallback": {
            "type": "object",
            "description": "The seeds' callback body, as a Scheduler that cannot sign sends it.",
            "required": ["conversationId", "content"],
            "properties": {
                "conversationId": _ref("Id"),
                "status": _nullable(
                    {"type": "string", "description": "Informational (e.g. `due`)."}
                ),
                "content": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_CALLBACK_CONTENT_CHARS,
                    "not": {"pattern": r"^\s*$"},  # not blank
                },
            },
        },
        "SeedCallbackAccepted": {
            "type": "object",
            "required": [
                "success",
                "conversationId",
                "run_id",
                "batch_id",
                "status_url",
                "duplicate",
            ],
            "properties": {
                "success": {"const": True},
                "conversationId": _ref("Id"),
                "run_id": {
                    "type": "string",
                    "description": "The turn's run: at /api/runs/{run_id} once it has started.",
                },
                "batch_id": {"type": "string"},
                "status_url": {
                    "type": "string",
                    "format": "uri-reference",
                    "description": "The delivery's batch: the item's status from the start, "
                    "then its run's status and answer.",
                },
                "duplicate": {
                    "type": "boolean",
                    "description": "False for the request that started the delivery; true "
                    "for a repeat (same Idempotency-Key, or else the same body, within 24 "
                    "hours): nothing new was started; the ids are the first's.",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
    }


PROBLEM_DESCRIPTIONS = {
    400: "The request is malformed: bad JSON, a missing or invalid field or id.",
    401: "Not authenticated: a missing or invalid function key (the Functions host answers with "
    "an empty body), or no App Service Authentication caller while REQUIRE_AUTH is on.",
    404: "No such resource for this caller (another caller's resources are not found either).",
    409: "Conflict with the current state.",
    413: "The body is over the deployment's size limit.",
    500: "An unexpected failure (logged); try again later.",
    503: "The app is misconfigured; `detail` names the setting.",
}


def _problem(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or PROBLEM_DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}},
    }


def _ok(description: str, schema: dict[str, Any], location: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(schema)}
    if location:
        response["headers"] = {
            "Location": {
                "description": location,
                "required": True,
                "schema": {"type": "string", "format": "uri-reference"},
            }
        }
    return response


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": _ref("Id"),
    }


def _body(schema: str, *, required: bool = True, description: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"required": required, "content": _json(_ref(schema))}
    if description:
        body["description"] = description
    return body


def _errors(*statuses: int, described: dict[int, str] | None = None) -> dict[str, Any]:
    """Problem responses: `statuses`, plus the 401, 500 and 503 every API route can give;
    `described` overrides the generic description of a status."""
    described = described or {}
    every = sorted({*statuses, 401, 500, 503})
    return {str(status): _problem(status, described.get(status)) for status in every}


# --- operations ----------------------------------------------------------------------------------


def _conversations(limits: Limits) -> dict[str, Any]:
    too_large = f"The body is over {limits.max_body_bytes} bytes."
    return {
        f"{API_PREFIX}/conversations": {
            "post": {
                "operationId": "create_conversation",
                "tags": ["conversations"],
                "summary": "Create a conversation",
                "security": FUNCTION_KEY,
                "requestBody": _body(
                    "NewConversation", required=False, description="Optional; may be empty."
                ),
                "responses": {
                    "201": _ok("Created.", _ref("ConversationCreated"), "The conversation's URL."),
                    **_errors(
                        400,
                        409,
                        413,
                        described={409: "A conversation with this id exists.", 413: too_large},
                    ),
                },
            }
        },
        f"{API_PREFIX}/conversations/{{id}}": {
            "get": {
                "operationId": "get_conversation",
                "tags": ["conversations"],
                "summary": "A conversation's transcript and token usage",
                "security": FUNCTION_KEY,
                "parameters": [_path_id("id", "The conversation id.")],
                "responses": {
                    "200": _ok("The conversation.", _ref("Conversation")),
                    **_errors(400, 404),
                },
            }
        },
        f"{API_PREFIX}/conversations/{{id}}/messages": {
            "post": {
                "operationId": "post_message",
                "tags": ["conversations"],
                "summary": "Send a message: start a turn",
                "description": (
                    "Starts the agent's turn. Answers 202 with the run's status URL at once, or "
                    "200 with the finished run when it ends within `wait_seconds`."
                ),
                "security": FUNCTION_KEY,
                "parameters": [_path_id("id", "The conversation id.")],
                "requestBody": _body("NewMessage"),
                "responses": {
                    "200": _ok("The turn finished within wait_seconds.", _ref("Run")),
                    "202": _ok(
                        "The turn started; poll status_url.",
                        _ref("RunAccepted"),
                        "The run's status URL.",
                    ),
                    **_errors(
                        400,
                        404,
                        409,
                        413,
                        described={
                            400: "The request is malformed: bad JSON, a missing or invalid "
                            f"field or id, or content over {limits.max_message_chars} characters.",
                            409: "A turn is already running in this conversation, or the "
                            "conversation has used its token budget.",
                            413: f"The body is over {limits.max_body_bytes} bytes.",
                        },
                    ),
                },
            }
        },
    }


def _runs() -> dict[str, Any]:
    run_id = _path_id("run_id", "The run id (from post_message).")
    return {
        f"{API_PREFIX}/runs/{{run_id}}": {
            "get": {
                "operationId": "get_run",
                "tags": ["runs"],
                "summary": "A run's status, step, and answer or error",
                "security": FUNCTION_KEY,
                "parameters": [run_id],
                "responses": {"200": _ok("The run.", _ref("Run")), **_errors(400, 404)},
            }
        },
        f"{API_PREFIX}/runs/{{run_id}}/approvals": {
            "post": {
                "operationId": "answer_approval",
                "tags": ["runs"],
                "summary": "Approve or refuse a tool call the run is waiting on",
                "security": FUNCTION_KEY,
                "parameters": [run_id],
                "requestBody": _body("ApprovalAnswer"),
                "responses": {
                    "202": _ok("The answer was passed to the run.", _ref("ApprovalAccepted")),
                    **_errors(
                        400,
                        404,
                        409,
                        413,
                        described={
                            404: "No such run, or no such tool call awaiting approval.",
                            409: (
                                "The run is not waiting for an approval, or not asking the "
                                "question named."
                            ),
                        },
                    ),
                },
            }
        },
        f"{API_PREFIX}/runs/{{run_id}}/cancel": {
            "post": {
                "operationId": "cancel_run",
                "tags": ["runs"],
                "summary": "Cancel a running turn",
                "security": FUNCTION_KEY,
                "parameters": [run_id],
                "responses": {
                    "202": _ok(
                        "Cancelled; or `cancelling` when the run has not ended yet (it keeps"
                        " its conversation until `GET /runs/{run_id}` says `cancelled`).",
                        _ref("RunCancelled"),
                    ),
                    **_errors(400, 404, 409, described={409: "The run has already finished."}),
                },
            }
        },
    }


def _scheduling(limits: Limits) -> dict[str, Any]:
    webhook_headers = [
        {
            "name": "webhook-id",
            "in": "header",
            "required": True,
            "description": "The delivery id: the idempotency key (a repeat starts nothing new).",
            "schema": {"type": "string", "pattern": WEBHOOK_ID_PATTERN},
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": True,
            "description": "Unix seconds; more than 5 minutes off is refused.",
            "schema": {"type": "string", "pattern": WEBHOOK_TIMESTAMP_PATTERN},
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
    ]
    return {
        f"{API_PREFIX}/scheduler/callback": {
            "post": {
                "operationId": "scheduler_callback",
                "tags": ["scheduling"],
                "summary": "The Scheduler's signed webhook (Standard Webhooks)",
                "description": (
                    "Anonymous at the Functions level: every request must carry a valid "
                    "Standard Webhooks signature, checked before anything is read or stored."
                ),
                "security": ANONYMOUS,
                "parameters": webhook_headers,
                "requestBody": _body("Callback"),
                "responses": {
                    "202": _ok(
                        "Accepted (also for a repeated delivery).", _ref("CallbackAccepted")
                    ),
                    **_errors(
                        400,
                        413,
                        described={
                            400: "The (verified) body is malformed.",
                            401: "A missing or invalid signature, a timestamp more than 5 "
                            "minutes off, or callbacks are disabled (no SCHEDULER_WEBHOOK_SECRET).",
                            413: f"The body is over {MAX_CALLBACK_BYTES} bytes.",
                        },
                    ),
                },
            }
        },
        f"{API_PREFIX}/scheduler/conversation-callback": {
            "post": {
                "operationId": "conversation_callback",
                "tags": ["scheduling"],
                "summary": "The seeds' callback from a Scheduler that cannot sign",
                "description": (
                    "With a function key instead of a signature: starts a turn with `content` "
                    "in the caller's own conversation, on the same durable path as the signed "
                    "callback. A repeat (the same Idempotency-Key, or without one the same "
                    "body, within 24 hours) starts nothing new and answers the first's ids. "
                    "Without an Idempotency-Key, the same text sent twice to the same "
                    "conversation within 24 hours is taken as one delivery: the second is "
                    'answered `"duplicate": true` (and logged) and does not run. Send an '
                    "Idempotency-Key that is new for each delivery (the same on its retries). "
                    "`duplicate` is false for the request that started the delivery. "
                    'Errors carry `"success": false` and `error` (= `detail`) besides the '
                    "problem fields, as the seeds' senders read them."
                ),
                "security": FUNCTION_KEY,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "The repeat key (per caller, for 24 hours); without it, "
                        "the body is, so an identical body within 24 hours is dropped as a "
                        "repeat. Recommended: a new key per delivery.",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": callbacks.MAX_IDEMPOTENCY_KEY_CHARS,
                        },
                    }
                ],
                "requestBody": _body("SeedCallback"),
                "responses": {
                    "200": _ok(
                        "Accepted: the turn starts (also for a repeat).",
                        _ref("SeedCallbackAccepted"),
                    ),
                    **_errors(
                        400,
                        404,
                        409,
                        413,
                        described={
                            404: "The conversation is not the caller's.",
                            409: "The Idempotency-Key was used for another body within 24 hours.",
                            413: f"The body is over {callbacks.MAX_SEED_CALLBACK_BYTES} bytes.",
                        },
                    ),
                },
            }
        },
        f"{API_PREFIX}/schedules": {
            "post": {
                "operationId": "schedule_batch",
                "tags": ["scheduling"],
                "summary": "Schedule a batch of conversations",
                "description": (
                    "Through the Scheduler MCP server when one is configured, else with durable "
                    "timers. Answers with the batch; follow it at /api/batches/{batch_id}."
                ),
                "security": FUNCTION_KEY,
                "requestBody": _body("ScheduleRequest"),
                "responses": {
                    "202": _ok("Scheduled (items the Scheduler refused say why).", _ref("Batch")),
                    **_errors(
                        400,
                        404,
                        413,
                        described={
                            400: "The request is malformed: bad JSON, a missing or invalid "
                            f"field, or a content over {limits.max_message_chars} characters.",
                            404: "A named conversation is not the caller's.",
                            413: f"The body is over {limits.max_body_bytes} bytes.",
                        },
                    ),
                },
            }
        },
        f"{API_PREFIX}/batches/{{batch_id}}": {
            "get": {
                "operationId": "get_batch",
                "tags": ["scheduling"],
                "summary": "A batch's per-item progress",
                "security": FUNCTION_KEY,
                "parameters": [_path_id("batch_id", "The batch id.")],
                "responses": {"200": _ok("The batch.", _ref("Batch")), **_errors(400, 404)},
            }
        },
    }


def _service() -> dict[str, Any]:
    return {
        f"{API_PREFIX}/health": {
            "get": {
                "operationId": "health",
                "tags": ["service"],
                "summary": "Liveness (no secrets, no dependencies)",
                "security": ANONYMOUS,
                "responses": {
                    "200": _ok("Alive.", _ref("Health")),
                    "503": _problem(
                        503,
                        "The app is misconfigured: `detail` names each bad setting, and "
                        "`invalid_settings` lists their names.",
                    ),
                },
            }
        },
        f"{API_PREFIX}/openapi.json": {
            "get": {
                "operationId": "openapi_document",
                "tags": ["service"],
                "summary": "This document",
                "security": ANONYMOUS,
                "responses": {
                    "200": _ok(
                        "The OpenAPI 3.1 document.",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    ),
                    "503": _problem(503),
                },
            }
        },
    }


def build_document(limits: Limits) -> dict[str, Any]:
    """The OpenAPI 3.1 document for this deployment's limits."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Durable MCP agent",
            "version": API_VERSION,
            "description": (
                "Chat with an Azure OpenAI agent that uses MCP tools, one durable step at a "
                "time; schedule conversations for later. Errors are application/problem+json "
                "with a `detail`. Conversations belong to their caller (the App Service "
                "Authentication principal when present): another caller gets 404."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "conversations"},
            {"name": "runs"},
            {"name": "scheduling"},
            {"name": "service"},
        ],
        "security": FUNCTION_KEY,
        "paths": {
            **_conversations(limits),
            **_runs(),
            **_scheduling(limits),
            **_service(),
        },
        "components": {
            "schemas": _schemas(limits),
            "securitySchemes": {
                "functionKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "An Azure Functions function (or host) key.",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "The function key as a query parameter.",
                },
            },
        },
    }


@functools.cache
def document_text(limits: Limits) -> str:
    return json.dumps(build_document(limits), indent=1)


@functools.cache
def _path_methods() -> tuple[tuple[re.Pattern[str], str], ...]:
    """Each documented path as a pattern, with its methods as an `Allow` value. The paths and
    methods do not depend on the limits, so any deployment's document gives the same table."""
    limits = Limits(
        max_steps=1,
        max_tokens_per_run=1,
        max_tokens_per_conversation=1,
        batch_max_concurrency=1,
        max_body_bytes=1024,
        max_message_chars=16,
        wait_seconds_cap=1,
        approval_timeout_seconds=1,
    )
    table = []
    for path, item in build_document(limits)["paths"].items():
        literal_parts = re.split(r"\{[^/}]+\}", path)  # around each {parameter}
        pattern = "[^/]+".join(re.escape(part) for part in literal_parts)
        table.append((re.compile(pattern), ", ".join(sorted(m.upper() for m in item))))
    return tuple(table)


def allowed_methods(path: str) -> str | None:
    """The `Allow` value for a path the API serves; None for a path it does not."""
    for pattern, allow in _path_methods():
        if pattern.fullmatch(path):
            return allow
    return None
