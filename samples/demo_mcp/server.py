"""The demo MCP server: a few everyday tools, a resource and a prompt, on the MCP SDK 2.x `MCPServer`.

Every tool that can fail for a reason the model can act on raises `ToolError`, whose message the
model sees; anything else would come back as a generic error.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import resources
from pathlib import Path
from typing import TypedDict

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from samples.demo_mcp import calculator, sandbox

# The app puts its idempotency key for a tool call in the request `_meta` under this name
# (agent.mcp.pool.IDEMPOTENCY_META_KEY); duplicated here so the sample does not import the app.
IDEMPOTENCY_META_KEY = "idempotency_key"
MAX_WAIT_SECONDS = 60.0
MAX_REPEAT_CHARS = 1_000_000
# Tools that change nothing say so (`readOnlyHint`): a client may repeat such a call whose answer
# it lost, e.g. to a crash. The others (writing a file, counting) are not safe to repeat.
READ_ONLY = ToolAnnotations(read_only_hint=True)
WEATHER_CONDITIONS = ("sunny", "partly cloudy", "cloudy", "rainy", "windy", "snowy")


class Weather(TypedDict):
    city: str
    temperature_c: int
    condition: str
    humidity_percent: int


class SystemInfo(TypedDict):
    os: str
    os_release: str
    machine: str
    python_version: str
    cpu_count: int
    process_id: int


class Counter(TypedDict):
    key: str
    count: int
    replayed: bool


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


def mock_weather(city: str) -> Weather:
    """Deterministic: the same city always gets the same weather (a hash, not a random draw)."""
    digest = hashlib.sha256(city.strip().lower().encode()).digest()
    return Weather(
        city=city,
        temperature_c=digest[0] % 40 - 5,
        condition=WEATHER_CONDITIONS[digest[1] % len(WEATHER_CONDITIONS)],
        humidity_percent=30 + digest[2] % 60,
    )


def build_server(
    name: str = "demo", sandbox_dir: str | os.PathLike[str] | None = None
) -> MCPServer:
    """A fresh server with its own state (counters); `sandbox_dir` overrides `DEMO_MCP_SANDBOX`."""
    server = MCPServer(
        name, instructions="Demo tools: greetings, arithmetic, weather, files, a knowledge base."
    )
    knowledge = load_knowledge_base()
    counters: dict[str, int] = {}
    replies_by_idempotency_key: dict[str, Counter] = {}

    def files_root() -> Path:
        return sandbox.sandbox_root(sandbox_dir)

    @server.tool(annotations=READ_ONLY)
    def greet(name: str = "world") -> str:
        """Greet someone by name."""
        return f"Hello, {name}!"

    @server.tool(annotations=READ_ONLY)
    def calculate(expression: str) -> str:
        """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses."""
        try:
            return f"{expression} = {calculator.evaluate(expression)}"
        except calculator.CalculationError as exc:
            raise ToolError(f"cannot calculate: {exc}") from None

    @server.tool(annotations=READ_ONLY)
    def system_info() -> SystemInfo:
        """Describe the machine and process this server runs on."""
        return SystemInfo(
            os=platform.system(),
            os_release=platform.release(),
            machine=platform.machine(),
            python_version=platform.python_version(),
            cpu_count=os.cpu_count() or 1,
            process_id=os.getpid(),
        )

    @server.tool(annotations=READ_ONLY)
    def get_weather(city: str) -> Weather:
        """Current weather for a city (mock data, the same for a city every time)."""
        if not city.strip():
            raise ToolError("a city name is required")
        return mock_weather(city)

    @server.tool(annotations=READ_ONLY)
    def ask_knowledge_base(question: str) -> str:
        """Answer a question about company policies from the knowledge base."""
        entry = best_answer(knowledge, question)
        if entry is None:
            topics = ", ".join(item["topic"] for item in knowledge)
            return f"No knowledge base entry matches. Known topics: {topics}."
        return f"{entry['answer']} (topic: {entry['topic']})"

    @server.tool(annotations=READ_ONLY)
    def read_text_file(path: str) -> str:
        """Read a UTF-8 text file from the sandbox directory (path relative to it)."""
        try:
            return sandbox.read_text(files_root(), path)
        except sandbox.SandboxError as exc:
            raise ToolError(str(exc)) from None

    @server.tool()
    def write_text_file(path: str, content: str) -> str:
        """Write a UTF-8 text file in the sandbox directory (path relative to it), replacing it."""
        try:
            written = sandbox.write_text(files_root(), path, content)
        except sandbox.SandboxError as exc:
            raise ToolError(str(exc)) from None
        return f"wrote {written} bytes to {path}"

    @server.tool()
    def count_call(key: str, ctx: Context) -> Counter:
        """Increment and return the counter `key`; a repeated idempotency key replays the first reply."""
        meta = ctx.request_context.meta or {}
        idempotency_key = meta.get(IDEMPOTENCY_META_KEY)
        if isinstance(idempotency_key, str) and idempotency_key in replies_by_idempotency_key:
            return Counter(**{**replies_by_idempotency_key[idempotency_key], "replayed": True})
        counters[key] = counters.get(key, 0) + 1
        reply = Counter(key=key, count=counters[key], replayed=False)
        if isinstance(idempotency_key, str):
            replies_by_idempotency_key[idempotency_key] = reply
        return reply

    @server.tool()
    def register_callback(endpoint: str, conversation_id: str, note: str = "") -> dict[str, str]:
        """Pretend to register a callback; echoes what it received (the app pins endpoint and id)."""
        return {"endpoint": endpoint, "conversation_id": conversation_id, "note": note}

    @server.tool(annotations=READ_ONLY)
    async def wait(seconds: float) -> str:
        """Wait for `seconds` (at most 60) and say so: a stand-in for a slow operation."""
        if not 0 <= seconds <= MAX_WAIT_SECONDS:
            raise ToolError(f"seconds must be between 0 and {MAX_WAIT_SECONDS:g}")
        await anyio.sleep(seconds)
        return f"waited {seconds:g} s"

    @server.tool(annotations=READ_ONLY)
    def repeat_text(text: str, times: int) -> str:
        """Repeat `text` `times` times (a large output, up to 1,000,000 characters)."""
        if times < 0 or len(text) * times > MAX_REPEAT_CHARS:
            raise ToolError(f"the output would exceed {MAX_REPEAT_CHARS} characters")
        return text * times

    @server.tool(annotations=READ_ONLY)
    def fail(message: str) -> str:
        """Always fail with `message` (for trying out error handling)."""
        raise ToolError(message)

    @server.resource(
        "kb://topics", mime_type="application/json", description="Knowledge base topics"
    )
    def topics() -> str:
        return json.dumps([{"topic": e["topic"], "question": e["question"]} for e in knowledge])

    @server.prompt(description="Ask the assistant about a company policy topic")
    def ask_about_policy(topic: str) -> str:
        return f"Use the ask_knowledge_base tool to find our policy on {topic}, then summarise it briefly."

    return server
