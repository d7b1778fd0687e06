"""What one model call answered (`ModelReply`), the same on chat completions and the Responses
API: agent.model reads chat completions into it, agent.model_responses responses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wire import Wire

# The assistant message's reasoning items (Responses API), kept on its transcript record and
# sent back on the next step; the chat completions path leaves them out of its requests.
REASONING_KEY = "reasoning_items"


# --- the reply -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall(Wire):
    id: str
    name: str
    arguments: str  # JSON text exactly as the model wrote it (may be invalid JSON)


@dataclass(frozen=True)
class ModelReply(Wire):
    """One completion. `finish_reason` "length" is returned as is: the caller decides."""

    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: dict[str, int]  # prompt_tokens, completion_tokens, total_tokens
    model: str
    # A reasoning model's reasoning items with their encrypted content (Responses API only).
    reasoning: list[dict[str, Any]] | None = None

    def assistant_message(self) -> dict[str, Any]:
        """The message to append to the transcript (chat-completions shape)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        if self.reasoning:
            message[REASONING_KEY] = self.reasoning
        return message


def usage_from(
    usage: Any, prompt_field: str = "prompt_tokens", completion_field: str = "completion_tokens"
) -> dict[str, int]:
    """Token counts under chat completions' names (the Responses API's `input_tokens` and
    `output_tokens` are read through the field names); zeros when the server did not report
    usage (some OpenAI-compatible ones). `usage` is the openai object or its JSON (a streamed
    chat completion's chunks are read as JSON)."""
    prompt = _count(usage, prompt_field)
    completion = _count(usage, completion_field)
    total = _count(usage, "total_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total or prompt + completion,
    }


def _count(usage: Any, name: str) -> Any:
    if usage is None:
        return 0
    value = usage.get(name, 0) if isinstance(usage, Mapping) else getattr(usage, name, 0)
    return value or 0
