"""What a brain answers: a completion, an HTTP error, or one of those after a delay.

The error builders reproduce the bodies and headers Azure OpenAI sends, so the client under test
sees what it would see in production (the openai client reads `error.code`, `error.message` and
the `retry-after` / `retry-after-ms` headers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Azure attaches these to every choice and prompt when its default content filter is on.
FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


@dataclass(frozen=True)
class ToolCallSpec:
    """One tool call the model proposes; `arguments` is the JSON text the model wrote."""

    name: str
    arguments: str = "{}"
    id: str | None = None

    @classmethod
    def of(cls, name: str, arguments: Mapping[str, Any] | None = None) -> ToolCallSpec:
        return cls(name=name, arguments=json.dumps(dict(arguments or {})))


@dataclass(frozen=True)
class Completion:
    """A 200 chat.completion. Unset fields are filled by the server (ids, token counts)."""

    content: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    id: str | None = None
    model: str | None = None
    # Categories the completion filter flagged (Azure: `finish_reason: content_filter`).
    filtered_categories: tuple[str, ...] = ()
    # A reasoning model's thinking (Responses API only: a `reasoning` output item; chat
    # completions never show it).
    reasoning: str | None = None

    @property
    def effective_finish_reason(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


@dataclass(frozen=True)
class HttpError:
    """A non-200 answer with a JSON body, as Azure OpenAI sends them."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delayed:
    """Answer `then` after `seconds` (or as soon as the server is stopped or releases delays)."""

    seconds: float
    then: Completion | HttpError


@dataclass(frozen=True)
class Paced:
    """`then`, streamed at a pace when the request asks for a stream (`stream: true`): a pause
    of `seconds_per_chunk` before each chunk, and after `hold_after_chunks` chunks a wait of up
    to `hold_seconds` (ended at once by the server's `release_delays()` or its stop). A request
    without `stream` gets `then` at once. `drop_after_chunks` cuts the connection after that many
    chunks, as a network failure mid-answer would. `on_chunk(index, chunk)` is called as each
    chunk is sent (benchmarks time the first token from it)."""

    then: Completion
    seconds_per_chunk: float = 0.0
    hold_after_chunks: int | None = None
    hold_seconds: float = 30.0
    drop_after_chunks: int | None = None
    on_chunk: Callable[[int, dict[str, Any]], None] | None = None


Reply = Completion | HttpError | Delayed | Paced


# --- Azure-shaped errors ---------------------------------------------------------------------


def azure_error(status: int, code: str, message: str, **extra: Any) -> HttpError:
    return HttpError(status=status, body={"error": {"code": code, "message": message, **extra}})


def unauthorized() -> HttpError:
    return azure_error(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    )


def resource_not_found() -> HttpError:
    """What Azure answers for an unknown path, e.g. a request without `api-version`."""
    return azure_error(404, "404", "Resource not found")


def deployment_not_found() -> HttpError:
    return azure_error(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
    )


def rate_limited(
    retry_after_seconds: int | None = 1, retry_after_ms: int | None = None
) -> HttpError:
    headers: dict[str, str] = {}
    if retry_after_seconds is not None:
        headers["retry-after"] = str(retry_after_seconds)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    wait = retry_after_seconds if retry_after_seconds is not None else 1
    message = (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
        "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. "
        f"Please retry after {wait} seconds."
    )
    return HttpError(
        status=429, body={"error": {"code": "429", "message": message}}, headers=headers
    )


def server_error(status: int = 500) -> HttpError:
    if status == 503:
        return azure_error(
            503,
            "ServiceUnavailable",
            "The service is temporarily unable to process your request. Please try again later.",
        )
    return azure_error(
        status,
        "InternalServerError",
        "The server had an error while processing your request. Sorry about that!",
    )


def bad_request(message: str, param: str | None = None) -> HttpError:
    """An OpenAI-style invalid request (Azure forwards these from the model service)."""
    return HttpError(
        status=400,
        body={
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": None,
            }
        },
    )


def filter_results(filtered: tuple[str, ...] = ()) -> dict[str, Any]:
    """Azure's `content_filter_results` object; `filtered` categories are marked high severity."""
    return {
        category: (
            {"filtered": True, "severity": "high"}
            if category in filtered
            else {"filtered": False, "severity": "safe"}
        )
        for category in FILTER_CATEGORIES
    }


def prompt_filtered(categories: tuple[str, ...] = ("violence",)) -> HttpError:
    """The 400 Azure sends when its content filter rejects the prompt."""
    return HttpError(
        status=400,
        body={
            "error": {
                "message": (
                    "The response was filtered due to the prompt triggering Azure OpenAI's "
                    "content management policy. Please modify your prompt and retry. To learn "
                    "more about our content filtering policies please read our documentation: "
                    "https://go.microsoft.com/fwlink/?linkid=2198766"
                ),
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": filter_results(categories),
                },
            }
        },
    )


def completion_filtered(categories: tuple[str, ...] = ("violence",)) -> Completion:
    """The 200 Azure sends when its content filter cuts the completion."""
    return Completion(content=None, finish_reason="content_filter", filtered_categories=categories)
