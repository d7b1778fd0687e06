"""Reading a streamed chat completion (`stream: true`) into the same `ModelReply` a whole one
gives, handing each piece of text to the caller as it arrives.

The chunks (chat.completion.chunk, read as their JSON) carry `choices[0].delta` with a piece of `content`, or tool
calls by `index` (the first piece of a call has its `id` and function `name`, later pieces add
to its `arguments`), then a `finish_reason`; with `stream_options.include_usage` a last chunk with
no choices carries the usage. Azure adds chunks with no choices (prompt filter annotations), and
a completion its filter cuts ends with `finish_reason: content_filter`.

On the Responses API (`MODEL_API=responses`) the stream is named events: each
`response.output_text.delta` is a piece of the answer's text, and the last event
(`response.completed`, `.incomplete` or `.failed`) carries the whole response, read as
`complete()` reads one; an `error` event is the stream breaking off.

Failures keep the split of `agent.model.classify`: the request's own failure (4xx/5xx before the
stream starts) is classified as a whole call's would be; a stream that breaks off midway (the
connection drops, or the service sends an error event) is transient, so the step is retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ContentFiltered, PermanentModelError, TransientModelError
from agent.model import ModelClient, ModelReply, ToolCall, filtered_categories, usage_from

OnText = Callable[[str], Awaitable[None]]


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    type: str = "function"


@dataclass
class StreamedReply:
    """What the chunks said so far."""

    service: str
    text: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Any = None
    model: str = ""

    def add(self, chunk: object) -> str:
        """Take one chunk (its JSON) in; returns its new text ("" when it has none)."""
        if not isinstance(chunk, Mapping):
            return ""  # e.g. `data: null`: nothing a chunk says (the typed chunks skipped it too)
        self.model = self.model or str(chunk.get("model") or "")
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices:
            return ""  # Azure's annotation chunks, and the usage chunk
        choice = choices[0]
        finish_reason = choice.get("finish_reason")
        if finish_reason == "content_filter":
            categories = filtered_categories(choice.get("content_filter_results"))
            raise ContentFiltered(
                f"{self.service}'s content filter blocked the completion{categories}"
            )
        if finish_reason:
            self.finish_reason = str(finish_reason)
        delta = choice.get("delta")
        if delta is None:
            return ""
        for piece in delta.get("tool_calls") or ():
            self._add_call(piece)
        text = delta.get("content") or ""
        if text:
            self.text.append(text)
        return text

    def _add_call(self, piece: Mapping[str, Any]) -> None:
        call = self.calls.setdefault(self._index_of(piece), _Call())
        if piece.get("id"):
            call.id = piece["id"]
        if piece.get("type"):
            call.type = piece["type"]
        function = piece.get("function")
        if function is not None:
            call.name += function.get("name") or ""
            call.arguments.append(function.get("arguments") or "")

    def _index_of(self, piece: Mapping[str, Any]) -> int:
        """Which call a piece belongs to: its `index`. Some OpenAI-compatible servers (Gemini's)
        leave the index out and send each call whole, or its pieces in order: then a piece with
        a new id starts the next call and one without continues the last."""
        index = piece.get("index")
        if isinstance(index, int):
            return index
        last = max(self.calls, default=None)
        if last is None:
            return 0
        return last + 1 if piece.get("id") and piece["id"] != self.calls[last].id else last

    def reply(self) -> ModelReply:
        if self.finish_reason is None:
            raise TransientModelError(f"the stream from {self.service} ended before its answer")
        calls = [self.calls[index] for index in sorted(self.calls)]
        for call in calls:
            if call.type != "function":
                raise PermanentModelError(
                    f"{self.service} proposed an unsupported tool call type: {call.type}"
                )
        return ModelReply(
            content="".join(self.text) or None,
            tool_calls=[ToolCall(c.id, c.name, "".join(c.arguments)) for c in calls],
            finish_reason=self.finish_reason,
            usage=usage_from(self.usage),
            model=self.model,
        )


async def stream(
    client: ModelClient,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    max_output_tokens: int | None = None,
    on_text: OnText | None = None,
) -> ModelReply:
    """`client.complete()` with the model's streaming API: `on_text` gets each piece of the
    answer's text as the model writes it; the reply (and every failure) is as `complete()`'s."""
    chunks = await client.open_stream(messages, tools, max_output_tokens=max_output_tokens)
    if client.uses_responses:
        return await collect_response(chunks, client, on_text)
    return await collect(chunks, client.config.service_name, on_text)


async def collect(chunks: Any, service: str, on_text: OnText | None) -> ModelReply:
    """Read the stream to its end; `on_text` gets each piece of text as it arrives (its own
    failures are its own: they are not model failures)."""
    reply = StreamedReply(service)
    async for chunk in _events(chunks, service):
        text = reply.add(chunk)
        if text and on_text is not None:
            await on_text(text)
    return reply.reply()


FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


async def collect_response(events: Any, client: ModelClient, on_text: OnText | None) -> ModelReply:
    """Read a Responses stream to its last event; `on_text` gets each text delta."""
    service = client.config.service_name
    final: Any = None
    async for event in _events(events, service):
        kind = getattr(event, "type", None)
        if kind == "response.output_text.delta":
            if event.delta and on_text is not None:
                await on_text(event.delta)
        elif kind in FINAL_EVENTS:
            final = event.response
        elif kind == "error":
            raise TransientModelError(f"the stream from {service} broke off midway")
    if final is None:
        raise TransientModelError(f"the stream from {service} ended before its answer")
    return client.read_response(final)


async def _events(events: Any, service: str) -> AsyncIterator[Any]:
    """The stream's items; a stream that breaks off is a transient failure."""
    iterator = events.__aiter__()
    while True:
        try:
            event = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except Exception as error:
            if not broke_off(error):
                raise
            raise TransientModelError(f"the stream from {service} broke off midway") from None
        yield event


def broke_off(error: BaseException) -> bool:
    """A failure while reading the stream: the connection (httpx2's transport errors, which
    openai does not wrap once the stream has started) or an error event from the service."""
    import httpx2
    import openai

    return isinstance(error, httpx2.TransportError | openai.APIError)
