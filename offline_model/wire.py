"""The chat.completion JSON shape, with Azure's content-filter annotations when asked for."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from offline_model.replies import Completion, filter_results


def request_digest(request_json: Any) -> str:
    """A stable hash of a request body: same request, same ids (replays match)."""
    canonical = json.dumps(request_json, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def approx_tokens(text: str) -> int:
    """Roughly four characters per token, like OpenAI's rule of thumb for English."""
    return math.ceil(len(text) / 4)


def prompt_tokens_of(request_json: dict[str, Any]) -> int:
    prompt = json.dumps(request_json.get("messages", []), ensure_ascii=False)
    tools = json.dumps(request_json.get("tools", []), ensure_ascii=False)
    return approx_tokens(prompt) + (approx_tokens(tools) if request_json.get("tools") else 0)


def completion_tokens_of(reply: Completion) -> int:
    written = (reply.content or "") + "".join(c.name + c.arguments for c in reply.tool_calls)
    return approx_tokens(written)


def token_counts(reply: Completion, chat_request: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens: the scripted counts, else estimates."""
    prompt = reply.prompt_tokens
    written = reply.completion_tokens
    return (
        prompt if prompt is not None else prompt_tokens_of(chat_request),
        written if written is not None else completion_tokens_of(reply),
    )


def tool_call_id(digest: str, index: int) -> str:
    return "call_" + hashlib.sha256(f"{digest}:{index}".encode()).hexdigest()[:24]


def completion_body(
    reply: Completion,
    request_json: dict[str, Any],
    *,
    model: str,
    created: int,
    azure: bool,
) -> dict[str, Any]:
    digest = request_digest(request_json)
    prompt_tokens, completion_tokens = token_counts(reply, request_json)
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or tool_call_id(digest, index),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": reply.effective_finish_reason,
        "logprobs": None,
    }
    body: dict[str, Any] = {
        "id": reply.id or f"chatcmpl-{digest[:29]}",
        "object": "chat.completion",
        "created": created,
        "model": reply.model or model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_offline",
    }
    if azure:
        # Azure annotates every prompt and choice with its content filter's verdicts.
        choice["content_filter_results"] = filter_results(reply.filtered_categories)
        body["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": filter_results()}
        ]
    return body


# --- streaming: chat.completion.chunk, as served with `stream: true` ----------------------------

CHARS_PER_CHUNK = 4  # one chunk per (approximate) token, as the service streams


def pieces(text: str, size: int = CHARS_PER_CHUNK) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def completion_chunks(
    reply: Completion,
    request_json: dict[str, Any],
    *,
    model: str,
    created: int,
    azure: bool,
) -> list[dict[str, Any]]:
    """The chunks a streamed completion arrives in: (Azure: an annotation-only chunk with the
    prompt's filter results,) the role, one chunk per token of content, each tool call's name
    then its arguments in pieces, the finish reason, and the usage when
    `stream_options.include_usage` asks for it (a chunk with no choices)."""
    whole = completion_body(reply, request_json, model=model, created=created, azure=azure)
    base = {
        "id": whole["id"],
        "object": "chat.completion.chunk",
        "created": created,
        "model": whole["model"],
        "system_fingerprint": whole["system_fingerprint"],
    }
    filters = filter_results() if azure else None

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "finish_reason": finish_reason,
            "logprobs": None,
        }
        if filters is not None:
            choice["content_filter_results"] = filters
        return {**base, "choices": [choice]}

    chunks: list[dict[str, Any]] = []
    if azure:
        chunks.append(
            {"choices": [], "created": 0, "id": "", "model": "", "object": "",
             "prompt_filter_results": whole["prompt_filter_results"]}
        )  # fmt: skip
    chunks.append(chunk({"content": "", "refusal": None, "role": "assistant"}))
    message = whole["choices"][0]["message"]
    chunks += [chunk({"content": piece}) for piece in pieces(message.get("content") or "")]
    for index, call in enumerate(message.get("tool_calls") or []):
        named = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(
            chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                   "function": named}]})
        )  # fmt: skip
        for piece in pieces(call["function"]["arguments"], 8):
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    last = chunk({}, whole["choices"][0]["finish_reason"])
    if azure:
        last["choices"][0]["content_filter_results"] = whole["choices"][0]["content_filter_results"]
    chunks.append(last)
    if (request_json.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": whole["usage"]})
    return chunks
