"""The Responses API (`MODEL_API=responses`) in our chat-shaped terms: a request from the
transcript's messages, and a `ModelReply` from the response.

Requests are `store: false`: the service keeps nothing, the Blob transcript stays the only
history, so every step sends its whole window (as a chat completion does). Messages map to input
items: system, user and assistant text as messages, an assistant's tool calls as `function_call`
items, tool results as `function_call_output` items. A reasoning model's reasoning items (kept on
the assistant message under `REASONING_KEY`, with their encrypted content) go back just before
that message's items, so the model keeps its chain of thought across the steps of a turn.

Pure: no I/O; `agent.model` makes the call and classifies its failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.errors import ContentFiltered, ModelError, PermanentModelError, TransientModelError
from agent.model_reply import REASONING_KEY, ModelReply, ToolCall, usage_from

ENCRYPTED_REASONING = "reasoning.encrypted_content"
# The Responses API refuses a smaller `max_output_tokens`; a run with less budget left than
# this may overspend by at most the difference.
MIN_OUTPUT_TOKENS = 16
# Why a response stopped early, as chat completions' `finish_reason` says it.
INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


def responses_request(
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    max_output_tokens: int | None,
    temperature: float | None,
    reasoning: bool | None,
) -> dict[str, Any]:
    """The body of `responses.create` for a chat-shaped request. `reasoning`: True, the model
    reasons, so ask for its reasoning back (encrypted) to send on the next step; False, never
    ask (MODEL_REASONING=off); None, ask if the history holds reasoning items."""
    items = input_items(messages)
    request: dict[str, Any] = {"model": model, "input": items, "store": False}
    if tools:
        request["tools"] = [function_tool(tool) for tool in tools]
        request["parallel_tool_calls"] = True
    if max_output_tokens is not None:
        request["max_output_tokens"] = max(MIN_OUTPUT_TOKENS, max_output_tokens)
    if temperature is not None:
        request["temperature"] = temperature
    if reasoning is None:
        reasoning = any(item.get("type") == "reasoning" for item in items)
    if reasoning:
        request["include"] = [ENCRYPTED_REASONING]
    return request


def input_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message["tool_call_id"],
                    "output": message.get("content") or "",
                }
            )
            continue
        if role == "assistant":
            items.extend(message.get(REASONING_KEY) or ())
        content = message.get("content")
        if content or role != "assistant":
            items.append({"role": role, "content": content or ""})
        for call in message.get("tool_calls") or ():
            function = call["function"]
            items.append(
                {
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": function["name"],
                    "arguments": function["arguments"],
                }
            )
    return items


def function_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A chat-completions tool as a Responses function tool. `strict: false`: the Responses API
    defaults to strict schemas, which MCP tools' schemas seldom satisfy (chat's default)."""
    function = tool["function"]
    converted: dict[str, Any] = {
        "type": "function",
        "name": function["name"],
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        "strict": bool(function.get("strict", False)),
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


# --- reading a response ----------------------------------------------------------------------


def reply_from_response(response: Any, *, service: str) -> ModelReply:
    """A `ModelReply` from an openai `Response`; one the filter stopped raises, as does one
    that failed."""
    output = getattr(response, "output", None)
    if not isinstance(output, list):
        raise PermanentModelError(
            f"{service} did not answer with a response (no output): check the endpoint URL"
        )
    status = getattr(response, "status", None)
    if status == "failed":
        raise failed(response, service)
    details = getattr(response, "incomplete_details", None)
    incomplete = getattr(details, "reason", None) if status == "incomplete" else None
    finish = INCOMPLETE_REASONS.get(str(incomplete)) if incomplete else None
    if finish == "content_filter":
        raise ContentFiltered(f"{service}'s content filter blocked the completion")
    text: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[dict[str, Any]] = []
    for item in output:
        kind = getattr(item, "type", None)
        if kind == "message":
            text += [p.text for p in item.content if getattr(p, "type", None) == "output_text"]
        elif kind == "function_call":
            calls.append(ToolCall(id=item.call_id, name=item.name, arguments=item.arguments))
        elif kind == "reasoning":
            kept = reasoning_item(item)
            if kept is not None:
                reasoning.append(kept)
        else:
            raise PermanentModelError(f"{service} answered with an unsupported item: {kind}")
    return ModelReply(
        content="".join(text) if text else None,
        tool_calls=calls,
        finish_reason=finish or ("tool_calls" if calls else "stop"),
        usage=usage_from(getattr(response, "usage", None), "input_tokens", "output_tokens"),
        model=str(getattr(response, "model", "") or ""),
        reasoning=reasoning or None,
    )


def reasoning_item(item: Any) -> dict[str, Any] | None:
    """A reasoning item as it can be sent back: only with its encrypted content (with
    `store: false` the service holds nothing an id alone could point at)."""
    encrypted = getattr(item, "encrypted_content", None)
    if not encrypted:
        return None
    summary = [{"type": "summary_text", "text": part.text} for part in item.summary or ()]
    return {"type": "reasoning", "id": item.id, "summary": summary, "encrypted_content": encrypted}


def has_reasoning(response: Any) -> bool:
    return any(getattr(i, "type", None) == "reasoning" for i in getattr(response, "output", ()))


def failed(response: Any, service: str) -> ModelError:
    """A response the service gave up on (`status: failed`): a server error or rate limit is
    worth a retry, a filtered one is filtered, anything else is not worth a retry. The code
    names it; the message is not copied (it may quote the request)."""
    code = str(getattr(getattr(response, "error", None), "code", "") or "")
    if "content_filter" in code:
        return ContentFiltered(f"{service}'s content filter blocked the response ({code})")
    if code in ("server_error", "rate_limit_exceeded", "vector_store_timeout", ""):
        return TransientModelError(f"{service} failed the response ({code or 'no code'})")
    return PermanentModelError(f"{service} failed the response ({code})")
