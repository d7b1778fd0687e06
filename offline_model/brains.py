"""Brains decide what the local model server answers: `brain(request_json) -> Reply`.

- `OfflineBrain`: a deterministic stand-in for a real model, for people who run the app before
  they have a model endpoint. It calls tools when told to (`/tool <name> <json-args>` lines),
  quotes tool results back, and otherwise explains itself. Every answer says "[offline model]".
- `ScriptedBrain`: a queue of replies scripted by a test, recording each request it answers.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from offline_model.replies import (
    Completion,
    Delayed,
    HttpError,
    Reply,
    ToolCallSpec,
    azure_error,
    completion_filtered,
    prompt_filtered,
    rate_limited,
    server_error,
    unauthorized,
)

LABEL = "[offline model]"
OFFLINE_MODEL_NAME = "offline-model"
TOOL_LINE = re.compile(r"^\s*/tool(?:\s+(?P<name>\S+))?\s*(?P<args>.*)$")
QUOTE_LIMIT = 300  # characters of each tool result quoted back
ECHO_LIMIT = 200  # characters of the user's message echoed back


class Brain(Protocol):
    def __call__(self, request_json: dict[str, Any]) -> Reply: ...


# --- reading a chat request ------------------------------------------------------------------


def text_of(content: Any) -> str:
    """Text of a message's `content`: a string, or a list of parts (`{"type": "text", ...}`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def tool_names(request_json: Mapping[str, Any]) -> list[str]:
    names = []
    for tool in request_json.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def tool_schemas(request_json: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    schemas = {}
    for tool in request_json.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            schemas[function["name"]] = parameters if isinstance(parameters, dict) else {}
    return schemas


def trailing_tool_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """The `role: tool` messages at the end of the conversation (results not yet answered)."""
    trailing: list[dict[str, Any]] = []
    for message in reversed(messages):
        if not (isinstance(message, dict) and message.get("role") == "tool"):
            break
        trailing.append(message)
    return list(reversed(trailing))


def tool_call_names(messages: list[Any]) -> dict[str, str]:
    """tool_call_id → function name, from the assistant messages that proposed the calls."""
    names: dict[str, str] = {}
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                names[str(call.get("id"))] = str(function.get("name", "?"))
    return names


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# --- the offline brain -----------------------------------------------------------------------


class OfflineBrain:
    """Deterministic: the same request always gets the same reply (ids come from its hash)."""

    model_name = OFFLINE_MODEL_NAME

    def __call__(self, request_json: dict[str, Any]) -> Reply:
        messages = request_json.get("messages") or []
        results = trailing_tool_messages(messages)
        if results:
            return Completion(content=summarize_tool_results(results, messages))
        user_text = last_user_text(messages)
        lines = [line for line in user_text.splitlines() if TOOL_LINE.match(line)]
        if lines and request_json.get("tool_choice") != "none":
            return tool_calls_for(lines, request_json)
        return Completion(content=help_text(user_text, request_json))


def summarize_tool_results(results: list[dict[str, Any]], messages: list[Any]) -> str:
    names = tool_call_names(messages)
    quoted = [
        f"- {names.get(str(result.get('tool_call_id')), '?')}: "
        f"{truncate(text_of(result.get('content')), QUOTE_LIMIT)}"
        for result in results
    ]
    return "\n".join(
        [
            f"{LABEL} The tools returned:",
            *quoted,
            "(I am the offline model: I quote tool results, I do not interpret them.)",
        ]
    )


def tool_calls_for(lines: list[str], request_json: Mapping[str, Any]) -> Completion:
    available = tool_names(request_json)
    calls: list[ToolCallSpec] = []
    problems: list[str] = []
    for line in lines:
        call, problem = parse_tool_line(line, available)
        if problem:
            problems.append(problem)
        elif call:
            calls.append(call)
    if problems:
        return Completion(
            content="\n".join(
                [
                    f"{LABEL} I did not call any tool:",
                    *(f"- {problem}" for problem in problems),
                    tools_sentence(available),
                ]
            )
        )
    if request_json.get("parallel_tool_calls") is False:
        calls = calls[:1]  # a model told not to call tools in parallel proposes one at a time
    return Completion(tool_calls=tuple(calls))


def parse_tool_line(line: str, available: list[str]) -> tuple[ToolCallSpec | None, str | None]:
    match = TOOL_LINE.match(line)
    if match is None or not match.group("name"):
        return None, "A /tool line needs a tool name: /tool <name> <json-args>."
    name, raw_args = match.group("name"), match.group("args").strip() or "{}"
    if name not in available:
        return None, f'There is no tool named "{name}".'
    try:
        arguments = json.loads(raw_args)
    except json.JSONDecodeError as error:
        return None, (
            f"The arguments of /tool {name} are not valid JSON ({error.msg} at column "
            f'{error.colno}). Write one JSON object, e.g. /tool {name} {{"key": "value"}}.'
        )
    if not isinstance(arguments, dict):
        return None, f"The arguments of /tool {name} must be a JSON object, e.g. {{}}."
    return ToolCallSpec(name=name, arguments=json.dumps(arguments, ensure_ascii=False)), None


def tools_sentence(available: list[str]) -> str:
    if not available:
        return "No tools are available in this conversation."
    return "Tools available: " + ", ".join(available) + "."


def help_text(user_text: str, request_json: Mapping[str, Any]) -> str:
    available = tool_names(request_json)
    lines = [
        f"{LABEL} No model endpoint is configured, so the offline model answers: it echoes "
        "and calls tools on request.",
        f'You said: "{truncate(user_text.strip(), ECHO_LIMIT)}"',
        tools_sentence(available),
    ]
    if available:
        example = available[0]
        arguments = example_arguments(tool_schemas(request_json).get(example, {}))
        lines += [
            "To call a tool, send a line: /tool <name> <json-args>, for example",
            f"/tool {example} {json.dumps(arguments, ensure_ascii=False)}",
            "Several /tool lines call several tools in parallel.",
        ]
    return "\n".join(lines)


PLACEHOLDERS: dict[str, Any] = {"string": "text", "integer": 1, "number": 1, "boolean": True}


def example_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Example arguments from a JSON schema (required properties, else all of them)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    required = schema.get("required")
    names = required if isinstance(required, list) and required else list(properties)
    return {str(name): example_value(properties.get(name)) for name in names}


def example_value(prop: Any) -> Any:
    """A value the tool accepts where the schema says so (its first `enum` value, its
    `default`), so the example works as written; otherwise a placeholder of the right type."""
    if not isinstance(prop, dict):
        return {}
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in prop:
        return prop["default"]
    kind = prop.get("type")
    return PLACEHOLDERS.get(kind, [] if kind == "array" else {})


# --- the scripted brain ----------------------------------------------------------------------

ScriptItem = Reply | Callable[[dict[str, Any]], Reply]


class ScriptedBrain:
    """Replies scripted per test, in order; records every request body it answers.

    A request that finds the script empty goes to `fallback` when one is set, else gets a 500
    `ScriptExhausted` and is counted in `unscripted` (the test fixture fails on it).
    """

    def __init__(self, *items: ScriptItem, fallback: Brain | None = None) -> None:
        self._script: deque[ScriptItem] = deque(items)
        self.fallback = fallback
        self.requests: list[dict[str, Any]] = []
        self.unscripted = 0

    def __call__(self, request_json: dict[str, Any]) -> Reply:
        self.requests.append(request_json)
        if self._script:
            item = self._script.popleft()
            return item(request_json) if callable(item) else item
        if self.fallback is not None:
            return self.fallback(request_json)
        self.unscripted += 1
        return azure_error(
            500,
            "ScriptExhausted",
            f"ScriptedBrain has no reply scripted for request #{len(self.requests)}",
        )

    @property
    def pending(self) -> int:
        return len(self._script)

    # --- scripting (each returns self, so calls chain) ---

    def then(self, *items: ScriptItem) -> ScriptedBrain:
        self._script.extend(items)
        return self

    def answer(self, content: str, **fields: Any) -> ScriptedBrain:
        return self.then(Completion(content=content, **fields))

    def call_tools(
        self, *calls: ToolCallSpec | tuple[str, Mapping[str, Any]], **fields: Any
    ) -> ScriptedBrain:
        specs = tuple(
            call if isinstance(call, ToolCallSpec) else ToolCallSpec.of(*call) for call in calls
        )
        return self.then(Completion(tool_calls=specs, **fields))

    def filter_completion(self, categories: tuple[str, ...] = ("violence",)) -> ScriptedBrain:
        return self.then(completion_filtered(categories))

    def filter_prompt(self, categories: tuple[str, ...] = ("violence",)) -> ScriptedBrain:
        return self.then(prompt_filtered(categories))

    def rate_limit(
        self, retry_after_seconds: int | None = 1, retry_after_ms: int | None = None
    ) -> ScriptedBrain:
        return self.then(rate_limited(retry_after_seconds, retry_after_ms))

    def fail(self, status: int) -> ScriptedBrain:
        """An HTTP error as Azure sends it: 401, 429, 5xx; other codes get a generic body."""
        if status == 401:
            return self.then(unauthorized())
        if status == 429:
            return self.then(rate_limited())
        if status >= 500:
            return self.then(server_error(status))
        return self.then(azure_error(status, str(status), f"scripted HTTP {status}"))

    def delay(self, seconds: float, then: Completion | HttpError | None = None) -> ScriptedBrain:
        return self.then(Delayed(seconds, then or Completion(content="late answer")))

    # --- reading what was sent ---

    def messages_sent(self, index: int = -1) -> list[dict[str, Any]]:
        return list(self.requests[index].get("messages", []))

    def tools_sent(self, index: int = -1) -> list[str]:
        return tool_names(self.requests[index])
