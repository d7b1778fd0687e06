"""OfflineBrain: what the offline model answers, decided from the request alone."""

from __future__ import annotations

import json
from typing import Any

from offline_model import LABEL, Completion, OfflineBrain, ScriptedBrain
from offline_model.brains import QUOTE_LIMIT
from offline_model.replies import HttpError

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "demo__add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
    {"type": "function", "function": {"name": "time__now", "parameters": {"type": "object"}}},
]


def ask(content: Any, tools: list[dict[str, Any]] = TOOLS, **extra: Any) -> Completion:
    request = {"messages": [{"role": "user", "content": content}], "tools": tools, **extra}
    reply = OfflineBrain()(request)
    assert isinstance(reply, Completion)
    return reply


def test_a_tool_line_becomes_a_tool_call_with_its_arguments() -> None:
    reply = ask('please\n/tool demo__add {"a": 1, "b": 2}')

    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("demo__add", {"a": 1, "b": 2})
    ]
    assert reply.content is None
    assert reply.effective_finish_reason == "tool_calls"


def test_several_tool_lines_become_parallel_tool_calls_and_arguments_may_be_omitted() -> None:
    reply = ask('/tool time__now\n/tool demo__add {"a": 5, "b": 6}')

    assert [c.name for c in reply.tool_calls] == ["time__now", "demo__add"]
    assert json.loads(reply.tool_calls[0].arguments) == {}


def test_arguments_that_are_not_json_get_a_helpful_answer_and_no_call() -> None:
    reply = ask("/tool demo__add {a: 1}")

    assert reply.tool_calls == ()
    assert reply.content is not None
    assert reply.content.startswith(LABEL)
    assert "not valid JSON" in reply.content
    assert '/tool demo__add {"key": "value"}' in reply.content


def test_arguments_that_are_not_an_object_are_refused() -> None:
    reply = ask("/tool demo__add [1, 2]")

    assert reply.tool_calls == ()
    assert "must be a JSON object" in (reply.content or "")


def test_an_unknown_tool_gets_an_answer_listing_the_tools_that_exist() -> None:
    reply = ask("/tool demo__add {}\n/tool weather__today {}")

    assert reply.tool_calls == ()  # one bad line: nothing is called
    assert 'There is no tool named "weather__today".' in (reply.content or "")
    assert "Tools available: demo__add, time__now." in (reply.content or "")


def test_a_tool_line_without_tools_in_the_request_says_none_are_available() -> None:
    reply = ask("/tool demo__add {}", tools=[])

    assert reply.tool_calls == ()
    assert "No tools are available" in (reply.content or "")


def test_a_model_told_not_to_call_in_parallel_proposes_one_call() -> None:
    reply = ask("/tool time__now\n/tool demo__add {}", parallel_tool_calls=False)

    assert [c.name for c in reply.tool_calls] == ["time__now"]


def test_tool_choice_none_gets_text_instead_of_calls() -> None:
    reply = ask("/tool time__now", tool_choice="none")

    assert reply.tool_calls == ()
    assert (reply.content or "").startswith(LABEL)


def test_plain_text_gets_an_echo_with_the_tools_and_the_tool_syntax() -> None:
    reply = ask([{"type": "text", "text": "hello there"}])

    content = reply.content or ""
    assert content.startswith(LABEL)
    assert 'You said: "hello there"' in content
    assert "Tools available: demo__add, time__now." in content
    assert "/tool <name> <json-args>" in content
    assert '/tool demo__add {"a": 1, "b": 1}' in content  # example built from the schema


def test_the_example_uses_values_the_schema_names_so_it_works_as_written() -> None:
    calculate = {
        "type": "function",
        "function": {
            "name": "demo__calculate",
            "parameters": {
                "type": "object",
                "properties": {
                    "operation": {"type": "string", "enum": ["add", "subtract"]},
                    "a": {"type": "number"},
                    "b": {"type": "number"},
                },
                "required": ["operation", "a", "b"],
            },
        },
    }
    weather = {
        "type": "function",
        "function": {
            "name": "demo__get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "default": "Seattle"}},
            },
        },
    }
    calculate_hint = ask("hello", tools=[calculate]).content or ""
    weather_hint = ask("hello", tools=[weather]).content or ""
    assert '/tool demo__calculate {"operation": "add", "a": 1, "b": 1}' in calculate_hint
    assert '/tool demo__get_weather {"city": "Seattle"}' in weather_hint


def test_tool_results_are_quoted_back_truncated_and_labelled() -> None:
    long_result = "x" * (QUOTE_LIMIT + 50)
    request = {
        "messages": [
            {"role": "user", "content": "/tool demo__add {}\n/tool time__now"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "demo__add", "arguments": "{}"},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "time__now", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "3"},
            {
                "role": "tool",
                "tool_call_id": "c2",
                "content": [{"type": "text", "text": long_result}],
            },
        ],
        "tools": TOOLS,
    }

    reply = OfflineBrain()(request)

    assert isinstance(reply, Completion)
    content = reply.content or ""
    assert content.startswith(LABEL)
    assert "- demo__add: 3" in content
    assert f"- time__now: {'x' * QUOTE_LIMIT}…" in content
    assert long_result not in content
    assert reply.tool_calls == ()


def test_the_same_request_always_gets_the_same_reply() -> None:
    request = {"messages": [{"role": "user", "content": "hi\n/tool time__now"}], "tools": TOOLS}

    assert OfflineBrain()(request) == OfflineBrain()(json.loads(json.dumps(request)))


def test_a_scripted_brain_answers_in_order_and_records_what_it_was_asked() -> None:
    brain = (
        ScriptedBrain().answer("one").then(lambda request: Completion(content=str(len(request))))
    )

    first = brain({"messages": [{"role": "user", "content": "a"}]})
    second = brain({"messages": [], "tools": TOOLS})
    third = brain({"messages": []})

    assert first == Completion(content="one")
    assert second == Completion(content="2")
    assert isinstance(third, HttpError)
    assert third.body["error"]["code"] == "ScriptExhausted"
    assert brain.unscripted == 1
    assert brain.tools_sent(1) == ["demo__add", "time__now"]
    assert brain.messages_sent(0) == [{"role": "user", "content": "a"}]
