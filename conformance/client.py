"""The client under test for the suite's client scenarios: our real `McpPool` and its sessions.

The suite starts a scenario server and runs `python -m conformance.client <server-url>` with the
scenario's name in `MCP_CONFORMANCE_SCENARIO`. The client does what the app does with a server:
list its tools through the pool (which opens the session), then call one by its model-facing name.
Exit code 0 when the pool answered; the suite judges the wire traffic.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from agent.mcp.config import parse_mcp_servers
from agent.mcp.pool import McpPool

SERVER = "conformance"
TIMEOUT_SECONDS = 10
# The tool each scenario's server offers, and the arguments to call it with.
CALLS: dict[str, tuple[str, dict[str, object]]] = {
    "tools_call": ("add_numbers", {"a": 5, "b": 3}),
    "sse-retry": ("test_reconnection", {}),
}


def servers_json(url: str) -> str:
    """`MCP_SERVERS` for one streamable-HTTP server, as an operator would write it."""
    server = {
        "name": SERVER,
        "transport": {"type": "streamable_http", "url": url},
        "timeout_seconds": TIMEOUT_SECONDS,
    }
    return json.dumps({"mcp_servers": [server]})


async def run(scenario: str, url: str) -> int:
    async with McpPool(parse_mcp_servers(servers_json(url))) as pool:
        specs = await pool.list_tools()
        print(f"listed {len(specs)} tool(s)")
        if scenario not in CALLS:
            return 0
        tool, arguments = CALLS[scenario]
        outcome = await pool.call_tool(
            f"{SERVER}__{tool}",
            arguments,
            context={"conversation_id": "conformance"},
            idempotency_key=f"conformance:{scenario}",
        )
        print(f"called {tool}: is_error={outcome.is_error} text={outcome.text[:200]!r}")
        return 1 if outcome.is_error else 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m conformance.client <server-url>", file=sys.stderr)
        return 2
    return asyncio.run(run(os.environ.get("MCP_CONFORMANCE_SCENARIO", ""), argv[-1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
