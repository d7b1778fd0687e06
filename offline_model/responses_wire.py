"""The Responses API shape (`POST /openai/v1/responses`), served over the same brains.

A brain reads chat-completions requests, so a Responses request is read as one
(`chat_request_of`: `instructions` and system/developer messages, user and assistant messages,
`function_call` items joined onto the assistant message before them, `function_call_output`
items as tool messages); the brain's `Completion` is written back as a `response` object
(`response_body`) or its stream of events (`response_events`). Reasoning items a request sends
back are kept on the chat request under `reasoning_items` (tests read what came back).
"""

from __future__ import annotations

import hashlib
from typing import Any

from offline_model.replies import Completion
from offline_model.wire import pieces, request_digest, token_counts, tool_call_id

ENCRYPTED_REASONING = "reasoning.encrypted_content"


# --- the request, as a brain reads it ---------------------------------------------------------


def chat_request_of(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions request a Responses request amounts to."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    reasoning: list[dict[str, Any]] = []
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item["role"], "content": _text(item.get("content"))})
        elif kind == "function_call":
            _assistant_for_call(messages)["tool_calls"].append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]},
                }
            )
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": _text(output)}
            )
        elif kind == "reasoning":
            reasoning.append(item)
    request: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools = [_chat_tool(tool) for tool in body.get("tools") or []]
    if tools:
        request["tools"] = tools
    for name in ("stream", "temperature"):
        if name in body:
            request[name] = body[name]
    if "max_output_tokens" in body:
        request["max_completion_tokens"] = body["max_output_tokens"]
    if reasoning:
        request["reasoning_items"] = reasoning
    return request


def _assistant_for_call(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message a function_call item belongs to: the one just before it, or a
    new one (a reply of only tool calls has no message item)."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", [])
        return last
    message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": []}
    messages.append(message)
    return message


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
    return {"type": "function", "function": function}


# --- the reply --------------------------------------------------------------------------------


def response_body(
    reply: Completion,
    body: dict[str, Any],
    chat_request: dict[str, Any],
    *,
    model: str,
    created: int,
) -> dict[str, Any]:
    """The `response` object for `reply` (status completed, or incomplete with its reason)."""
    digest = request_digest(body)
    prompt, written = token_counts(reply, chat_request)
    reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(
        reply.effective_finish_reason
    )
    return {
        "id": reply.id or f"resp_{digest[:32]}",
        "object": "response",
        "created_at": created,
        "status": "incomplete" if reason else "completed",
        "incomplete_details": {"reason": reason} if reason else None,
        "error": None,
        "model": reply.model or model,
        "output": output_items(reply, body, digest),
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
        "tool_choice": "auto",
        "tools": list(body.get("tools") or []),
        "store": bool(body.get("store", True)),
        "temperature": body.get("temperature"),
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": written,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + written,
        },
    }


def output_items(reply: Completion, body: dict[str, Any], digest: str) -> list[dict[str, Any]]:
    """Reasoning (when scripted), the message (when there is text), then each function call."""
    items: list[dict[str, Any]] = []
    if reply.reasoning is not None:
        encrypted = ENCRYPTED_REASONING in (body.get("include") or [])
        items.append(
            {
                "type": "reasoning",
                "id": f"rs_{digest[:24]}",
                "summary": [{"type": "summary_text", "text": reply.reasoning}],
                # Opaque to the client; the text is recoverable here only so tests can check
                # what came back.
                "encrypted_content": f"enc:{reply.reasoning}" if encrypted else None,
            }
        )
    if reply.content is not None:
        items.append(
            {
                "type": "message",
                "id": f"msg_{digest[:24]}",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": reply.content, "annotations": [],
                     "logprobs": []}
                ],
            }
        )  # fmt: skip
    for index, call in enumerate(reply.tool_calls):
        items.append(
            {
                "type": "function_call",
                "id": "fc_" + hashlib.sha256(f"{digest}:{index}".encode()).hexdigest()[:24],
                "call_id": call.id or tool_call_id(digest, index),
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
        )
    return items


# --- streaming: the events of `stream: true` ------------------------------------------------


def response_events(
    reply: Completion,
    body: dict[str, Any],
    chat_request: dict[str, Any],
    *,
    model: str,
    created: int,
) -> list[dict[str, Any]]:
    """The events a streamed response arrives in: created, each output item added, its text or
    arguments in pieces, done, and last `response.completed` (or `.incomplete`) with the whole
    response, as the service sends them."""
    whole = response_body(reply, body, chat_request, model=model, created=created)
    events: list[dict[str, Any]] = []

    def event(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    started = {**whole, "status": "in_progress", "output": [], "incomplete_details": None}
    event("response.created", response=started)
    event("response.in_progress", response=started)
    for index, item in enumerate(whole["output"]):
        where = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "message":
            event("response.output_item.added", output_index=index, item={**item, "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            event("response.content_part.added", content_index=0, part=part, **where)
            text = item["content"][0]["text"]
            for piece in pieces(text):
                event("response.output_text.delta", content_index=0, delta=piece, logprobs=[],
                      **where)  # fmt: skip
            event("response.output_text.done", content_index=0, text=text, logprobs=[], **where)
            event("response.content_part.done", content_index=0, part=item["content"][0],
                  **where)  # fmt: skip
        elif item["type"] == "function_call":
            event("response.output_item.added", output_index=index,
                  item={**item, "arguments": "", "status": "in_progress"})  # fmt: skip
            for piece in pieces(item["arguments"], 8):
                event("response.function_call_arguments.delta", delta=piece, **where)
            event("response.function_call_arguments.done", arguments=item["arguments"],
                  name=item["name"], **where)  # fmt: skip
        else:
            event("response.output_item.added", output_index=index, item=item)
        event("response.output_item.done", output_index=index, item=item)
    final = "response.incomplete" if whole["status"] == "incomplete" else "response.completed"
    event(final, response=whole)
    return events
