"""What the demo server says about itself: the seed's two `info://` resources and two prompts.

The usage examples are data, so a test can run every one of them against the server: the
text a model reads cannot drift from the tools it calls.
"""

from __future__ import annotations

import json
from typing import Any

# (tool, arguments, what it shows), in the order the seed lists them, then our additions.
USAGE_EXAMPLES: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("greet", {"name": "Azure OpenAI"}, "Get a personalized greeting with the current time"),
    ("calculate", {"operation": "add", "a": 10, "b": 5}, "Perform math operations"),
    ("get_system_info", {}, "Get system information"),
    ("save_text_file", {"filename": "test.txt", "content": "Hello World"}, "Save a file"),
    ("read_text_file", {"filename": "test.txt"}, "Read a file"),
    ("get_weather", {"city": "San Francisco"}, "Get (mock) weather information"),
    ("get_knowledge_base", {}, "Read every question and answer of the company knowledge base"),
    (
        "get_knowledge_base",
        {"question": "How many vacation days do I get?"},
        "Answer one question from the knowledge base",
    ),
)

SERVER_CAPABILITIES = """\
This MCP server provides the following capabilities:
- Personalized greetings with timestamps (greet)
- Mathematical calculations: add, subtract, multiply, divide (calculate)
- System information retrieval (get_system_info)
- File operations: read and write UTF-8 text files inside a sandbox directory
  (save_text_file, read_text_file); paths outside it, symlinks and special files are refused
- Mock weather information, the same for a city every time (get_weather; default city Seattle)
- A company knowledge base of questions and answers (get_knowledge_base; resource kb://topics)

This server is designed to be used by Azure OpenAI to enhance its capabilities
with real-time data and system operations.
"""

CALCULATION_PROMPT = (
    "What mathematical operation would you like me to perform? Please provide the operation "
    "(add, subtract, multiply, divide) and two numbers."
)
FILE_OPERATIONS_PROMPT = (
    "What file operation would you like me to perform? I can save text to files or read "
    "existing text files."
)


def _call(tool: str, arguments: dict[str, Any]) -> str:
    rendered = ", ".join(f"{name}={json.dumps(value)}" for name, value in arguments.items())
    return f"{tool}({rendered})"


def usage_examples() -> str:
    lines = [
        f"{n}. {_call(tool, args)} - {what}"
        for n, (tool, args, what) in enumerate(USAGE_EXAMPLES, start=1)
    ]
    return "Example tool calls:\n" + "\n".join(lines) + "\n"
