"""The demo MCP server with the surface of the seed's `azure_mcp_server.py`, on the MCP SDK 2.x
`MCPServer`: the tools `greet`, `calculate`, `get_system_info`, `save_text_file`,
`read_text_file`, `get_weather` and the knowledge base's `get_knowledge_base`, the resources
`info://server-capabilities`, `info://usage-examples` and `kb://topics`, and the prompts
`calculation_prompt`, `file_operations_prompt` and `ask_about_policy`.

Every tool that can fail for a reason the model can act on raises `ToolError`, whose message the
model sees as an error result (`is_error`); anything else would come back as a generic error.
Helpers that only tests need (counters, slow, large and failing tools) live in the test suite's
own server (`tests/support/helper_mcp.py`), so no model that uses this server sees them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, TypedDict

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from samples.demo_mcp import calculator, guide, sandbox

# Tools that change nothing say so (`readOnlyHint`): a client may repeat such a call whose answer
# it lost, e.g. to a crash. Saving a file is not one of them.
READ_ONLY = ToolAnnotations(read_only_hint=True)
DEFAULT_CITY = "Seattle"  # the seed's default
WEATHER_CONDITIONS = ("sunny", "partly cloudy", "cloudy", "rainy", "windy", "snowy")
BYTES_PER_GB = 1024**3

Operation = Annotated[
    str,
    # The enum guides a model; the check itself is ours, so a wrong value gets the seed's
    # clear "unknown operation" text rather than a validation dump.
    Field(
        description="add, subtract, multiply or divide",
        json_schema_extra={"enum": list(calculator.OPERATIONS)},
    ),
]
Filename = Annotated[str, Field(description="a path relative to the server's sandbox directory")]


class Weather(TypedDict):
    city: str
    temperature_c: int
    temperature_f: int
    condition: str
    humidity_percent: int


class SystemInfo(TypedDict):
    os: str
    os_version: str
    architecture: str
    processor: str
    python_version: str
    cpu_count: int
    memory_gb: float | None


class KnowledgeEntry(TypedDict):
    topic: str
    question: str
    answer: str


def load_knowledge_base() -> list[KnowledgeEntry]:
    text = resources.files("samples.demo_mcp").joinpath("knowledge_base.json").read_text("utf-8")
    return json.loads(text)


def _words(text: str) -> set[str]:
    return {
        word
        for word in "".join(c.lower() if c.isalnum() else " " for c in text).split()
        if len(word) > 2
    }


def best_answer(entries: list[KnowledgeEntry], question: str) -> KnowledgeEntry | None:
    """The entry sharing the most words with the question (topic words weigh double)."""
    asked = _words(question)

    def score(entry: KnowledgeEntry) -> int:
        return 2 * len(asked & _words(entry["topic"])) + len(asked & _words(entry["question"]))

    best = max(entries, key=score, default=None)
    return best if best is not None and score(best) > 0 else None


def whole_knowledge_base(entries: list[KnowledgeEntry]) -> str:
    """Every question and answer, numbered, as the seed's `get_knowledge_base` returns them."""
    pairs = [
        f"Q{n}: {entry['question']}\nA{n}: {entry['answer']}"
        for n, entry in enumerate(entries, start=1)
    ]
    return "Here is the retrieved knowledge base:\n\n" + "\n\n".join(pairs)


def answer_from(entries: list[KnowledgeEntry], question: str) -> str:
    if not question.strip():
        return whole_knowledge_base(entries)
    entry = best_answer(entries, question)
    if entry is None:
        topics = ", ".join(item["topic"] for item in entries)
        return f"No knowledge base entry matches. Known topics: {topics}."
    return f"{entry['answer']} (topic: {entry['topic']})"


def mock_weather(city: str) -> Weather:
    """Deterministic: the same city always gets the same weather (a hash, not a random draw)."""
    digest = hashlib.sha256(city.strip().lower().encode()).digest()
    celsius = digest[0] % 40 - 5
    return Weather(
        city=city,
        temperature_c=celsius,
        temperature_f=round(celsius * 9 / 5 + 32),
        condition=WEATHER_CONDITIONS[digest[1] % len(WEATHER_CONDITIONS)],
        humidity_percent=30 + digest[2] % 60,
    )


def memory_gb() -> float | None:
    """Physical memory without psutil (the seed's optional dependency); None where unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or the name is unknown
        return None
    return round(total / BYTES_PER_GB, 2)


def system_info() -> SystemInfo:
    return SystemInfo(
        os=platform.system(),
        os_version=platform.version(),
        architecture=platform.architecture()[0],
        processor=platform.processor() or platform.machine(),
        python_version=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
        memory_gb=memory_gb(),
    )


def greeting(name: str, now: datetime) -> str:
    return f"Hello, {name}! Current time: {now:%Y-%m-%d %H:%M:%S} UTC"


def build_server(
    name: str = "demo", sandbox_dir: str | os.PathLike[str] | None = None
) -> MCPServer:
    """A fresh server; `sandbox_dir` overrides `DEMO_MCP_SANDBOX` for the file tools."""
    server = MCPServer(
        name,
        instructions=(
            "Demo tools: greetings, arithmetic, system information, text files in a sandbox, "
            "mock weather and a company knowledge base."
        ),
    )
    _add_everyday_tools(server)
    _add_file_tools(server, sandbox_dir)
    _add_knowledge_base(server, load_knowledge_base())
    _add_guide(server)
    return server


def _add_everyday_tools(server: MCPServer) -> None:
    @server.tool(annotations=READ_ONLY)
    def greet(name: str = "world") -> str:
        """Return a personalized greeting with the current timestamp (UTC)."""
        return greeting(name, datetime.now(UTC))

    @server.tool(annotations=READ_ONLY)
    def calculate(operation: Operation, a: float, b: float) -> str:
        """Perform mathematical operations (add, subtract, multiply, divide) on two numbers."""
        try:
            return calculator.describe(operation, a, b)
        except calculator.CalculationError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(annotations=READ_ONLY)
    def get_system_info() -> SystemInfo:
        """Get basic system information: OS, architecture, processor, Python, CPUs, memory."""
        return system_info()

    @server.tool(annotations=READ_ONLY)
    def get_weather(city: str = DEFAULT_CITY) -> Weather:
        """Get mock weather information for a city (the same for a city every time)."""
        if not city.strip():
            raise ToolError("a city name is required")
        return mock_weather(city)


def _add_file_tools(server: MCPServer, sandbox_dir: str | os.PathLike[str] | None) -> None:
    def files_root() -> Path:
        return sandbox.sandbox_root(sandbox_dir)

    @server.tool()
    def save_text_file(filename: Filename, content: str) -> str:
        """Save text content to a UTF-8 file in the sandbox directory, replacing it."""
        try:
            written = sandbox.write_text(files_root(), filename, content)
        except sandbox.SandboxError as exc:
            raise ToolError(str(exc)) from None
        return f"Successfully saved {written} bytes to {filename}"

    @server.tool(annotations=READ_ONLY)
    def read_text_file(filename: Filename) -> str:
        """Read text content from a UTF-8 file in the sandbox directory."""
        try:
            return sandbox.read_text(files_root(), filename)
        except sandbox.SandboxError as exc:
            raise ToolError(str(exc)) from None


def _add_knowledge_base(server: MCPServer, knowledge: list[KnowledgeEntry]) -> None:
    @server.tool(annotations=READ_ONLY)
    def get_knowledge_base(question: str = "") -> str:
        """Retrieve the company knowledge base (policies): every Q&A pair, or with `question`
        only the entry that answers it."""
        return answer_from(knowledge, question)

    @server.resource(
        "kb://topics", mime_type="application/json", description="Knowledge base topics"
    )
    def topics() -> str:
        return json.dumps([{"topic": e["topic"], "question": e["question"]} for e in knowledge])

    @server.prompt(description="Ask the assistant about a company policy topic")
    def ask_about_policy(topic: str) -> str:
        return (
            f"Use the get_knowledge_base tool to find our policy on {topic}, "
            "then summarise it briefly."
        )


def _add_guide(server: MCPServer) -> None:
    @server.resource("info://server-capabilities", mime_type="text/plain")
    def server_capabilities() -> str:
        """Information about this MCP server's capabilities"""
        return guide.SERVER_CAPABILITIES

    @server.resource("info://usage-examples", mime_type="text/plain")
    def usage_examples() -> str:
        """Examples of how to use this MCP server"""
        return guide.usage_examples()

    @server.prompt(description="Ask user what they want to calculate")
    def calculation_prompt() -> str:
        return guide.CALCULATION_PROMPT

    @server.prompt(description="Ask user for file operations")
    def file_operations_prompt() -> str:
        return guide.FILE_OPERATIONS_PROMPT
