"""The test suite's own MCP server: the demo server's tools plus helpers only tests need.

The demo server (`samples/demo_mcp`) is what a user's model sees, so it carries no test helpers;
this server adds them to a fresh demo server, so one server entry gives a test both everyday
tools (`greet`, ...) and:

- `count_call(key)`: increments a counter; a repeated request `_meta.idempotency_key` replays the
  first reply (a server that honours the app's idempotency key);
- `register_callback(endpoint, conversation_id, note)`: echoes its arguments (pinned arguments);
- `wait(seconds)`, `repeat_text(text, times)`, `fail(message)`: slow, large and failing tools;
- `process_id()`: the server's process id (to show a stdio server was restarted);
- tools whose annotations say what they are: `drop_key(key)` (`destructiveHint`), `look_up(key)`
  (read-only, `openWorldHint: false`), `read_outside(topic)` (read-only, open-world), and
  `meet(group, size)` (read-only): answers once `size` calls of `group` are in flight together,
  or fails after `MEET_TIMEOUT_SECONDS`: calls made one after another never meet;
- `greet_asking(greeting)` (read-only): asks a person for their name (an MCP elicitation, form
  mode: `name` required, `age` an integer 0-150, `colour` a choice) and greets them by it, or says
  how the question was declined or cancelled.

`helper_http_app` and `helper_stdio_command` serve it as `mcp_servers.py` serves the demo; on
stdio: `python -m tests.support.helper_mcp [--sandbox DIR]` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Annotated, Any, Literal, TypedDict

import anyio
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from devkit.mcp_servers import REPO_ROOT, AsgiApp, StdioCommand
from samples.demo_mcp import build_server
from samples.demo_mcp.server import READ_ONLY

# The app puts its idempotency key for a tool call in the request `_meta` under this name
# (agent.mcp.dispatch.IDEMPOTENCY_META_KEY); spelled out so a change there fails the tests using it.
IDEMPOTENCY_META_KEY = "idempotency_key"
MAX_WAIT_SECONDS = 60.0
MAX_REPEAT_CHARS = 1_000_000
HELPER_TOOLS = frozenset(
    {"count_call", "register_callback", "wait", "repeat_text", "fail", "process_id"}
    | {"drop_key", "look_up", "read_outside", "meet", "greet_asking"}
)
MEET_TIMEOUT_SECONDS = 10.0
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True)
CLOSED_WORLD_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
OPEN_WORLD_READ = ToolAnnotations(read_only_hint=True, open_world_hint=True)


class Counter(TypedDict):
    key: str
    count: int
    replayed: bool


def build_helper_server(
    name: str = "helper", sandbox_dir: str | os.PathLike[str] | None = None
) -> MCPServer:
    """A fresh demo server (own sandbox, own counters) with the test helpers added."""
    server = build_server(name, sandbox_dir=sandbox_dir)
    _add_counters(server)
    _add_stand_ins(server)
    _add_annotated(server)
    _add_asking(server)
    return server


def _add_counters(server: MCPServer) -> None:
    counters: dict[str, int] = {}
    replies_by_idempotency_key: dict[str, Counter] = {}

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


class Person(BaseModel):
    """What `greet_asking` asks a person (MCP's restricted form: flat primitives)."""

    name: str = Field(description="Your name", min_length=1)
    age: int | None = Field(default=None, ge=0, le=150)
    colour: Literal["red", "green", "blue"] = "red"


def _ask_name(greeting: str) -> Elicit[Person]:
    return Elicit(f"{greeting}! What is your name?", Person)


def _add_asking(server: MCPServer) -> None:
    @server.tool(annotations=CLOSED_WORLD_READ)
    async def greet_asking(
        greeting: str, answer: Annotated[ElicitationResult[Person], Resolve(_ask_name)]
    ) -> str:
        """Ask the person for their name, then greet them by it."""
        if isinstance(answer, AcceptedElicitation):
            person = answer.data
            age = f" ({person.age})" if person.age is not None else ""
            return f"{greeting}, {person.name}{age}! Your colour is {person.colour}."
        return f"no name given: the person chose {answer.action}"


def _add_stand_ins(server: MCPServer) -> None:
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

    @server.tool(annotations=READ_ONLY)
    def process_id() -> int:
        """The id of the process serving this session."""
        return os.getpid()


def _add_annotated(server: MCPServer) -> None:
    dropped: set[str] = set()

    @server.tool(annotations=DESTRUCTIVE)
    def drop_key(key: str) -> str:
        """Drop `key` for good (annotated destructive)."""
        dropped.add(key)
        return f"dropped {key}"

    @server.tool(annotations=CLOSED_WORLD_READ)
    def look_up(key: str) -> str:
        """Look `key` up in this server's own data (read-only, closed world)."""
        return f"{key} is {'dropped' if key in dropped else 'kept'}"

    @server.tool(annotations=OPEN_WORLD_READ)
    def read_outside(topic: str) -> str:
        """What the outside world says about `topic` (read-only, open world)."""
        return f"the outside world says: {topic}"

    groups: dict[str, tuple[list[int], anyio.Event]] = {}

    @server.tool(annotations=CLOSED_WORLD_READ)
    async def meet(group: str, size: int) -> str:
        """Wait until `size` calls of `group` are here at once (read-only)."""
        arrived, everyone = groups.setdefault(group, ([], anyio.Event()))
        arrived.append(len(arrived) + 1)
        if len(arrived) >= size:
            everyone.set()
        with anyio.move_on_after(MEET_TIMEOUT_SECONDS):
            await everyone.wait()
            return f"met {len(arrived)} in {group}"
        raise ToolError(f"only {len(arrived)} of {size} calls of {group} came at once")


def helper_http_app(
    sandbox_dir: str | os.PathLike[str] | None = None, **server_kwargs: Any
) -> AsgiApp:
    """The helper server over streamable HTTP at `/mcp` (a new server, new state, each call)."""
    return build_helper_server(sandbox_dir=sandbox_dir, **server_kwargs).streamable_http_app()


def helper_stdio_command(sandbox_dir: str | os.PathLike[str] | None = None) -> StdioCommand:
    """The helper server on stdio (this module run with `-m`)."""
    args = ["-m", "tests.support.helper_mcp"]
    if sandbox_dir is not None:
        args += ["--sandbox", str(sandbox_dir)]
    return StdioCommand(sys.executable, tuple(args), {"PYTHONPATH": str(REPO_ROOT)}, str(REPO_ROOT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.helper_mcp")
    parser.add_argument("--sandbox", default=None, help="directory for the file tools")
    build_helper_server(sandbox_dir=parser.parse_args(argv).sandbox).run()


if __name__ == "__main__":
    main()
