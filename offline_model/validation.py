"""The request checks the real service makes, so a broken agent loop fails here as it would there.

Messages follow OpenAI's 400 texts closely enough to be recognisable; only the first problem found
is reported, like the service does.
"""

from __future__ import annotations

import re
from typing import Any

from offline_model.replies import HttpError, bad_request

ROLES = {"system", "developer", "user", "assistant", "tool"}
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def validate_chat_request(body: Any, *, model_required: bool) -> HttpError | None:
    if not isinstance(body, dict):
        return bad_request("The request body must be a JSON object.")
    if model_required and not body.get("model"):
        return bad_request("you must provide a model parameter", param="model")
    return (
        check_messages(body.get("messages"))
        or check_tools(body.get("tools"))
        or check_parallel_tool_calls(body)
        or check_stream_options(body)
    )


def check_messages(messages: Any) -> HttpError | None:
    if not isinstance(messages, list):
        return bad_request("Missing required parameter: 'messages'.", param="messages")
    if not messages:
        return bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return bad_request(
                f"Invalid value for 'messages[{index}].role': expected one of "
                "'system', 'developer', 'user', 'assistant' or 'tool'.",
                param=f"messages[{index}].role",
            )
    return check_tool_call_pairing(messages)


def check_tool_call_pairing(messages: list[dict[str, Any]]) -> HttpError | None:
    """Every assistant tool call is answered by a tool message, and no tool message is orphaned."""
    unanswered: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in unanswered:
                return bad_request(  # "preceeding" (sic): the service's own wording
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            unanswered.remove(call_id)
            continue
        if unanswered:
            return missing_tool_responses(unanswered)
        if role == "assistant":
            unanswered = [str(call.get("id")) for call in message.get("tool_calls") or []]
    if unanswered:
        return missing_tool_responses(unanswered)
    return None


def missing_tool_responses(call_ids: list[str]) -> HttpError:
    return bad_request(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(call_ids),
        param="messages",
    )


def check_tools(tools: Any) -> HttpError | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return bad_request("Invalid type for 'tools': expected an array.", param="tools")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not function:
            return bad_request(
                f"Invalid 'tools[{index}]': expected a function tool.", param=f"tools[{index}]"
            )
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            return bad_request(
                f"Invalid 'tools[{index}].function.name': string does not match pattern. "
                "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                param=f"tools[{index}].function.name",
            )
    return None


def check_parallel_tool_calls(body: dict[str, Any]) -> HttpError | None:
    if "parallel_tool_calls" in body and not body.get("tools"):
        return bad_request(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
            "when 'tools' are specified.",
            param="parallel_tool_calls",
        )
    return None


def check_stream_options(body: dict[str, Any]) -> HttpError | None:
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return bad_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return None
