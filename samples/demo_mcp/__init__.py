"""A demo MCP server (greet, calculate, weather, files, knowledge base, counters).

Run: `python -m samples.demo_mcp --transport {stdio,sse,streamable-http} --port N`.
"""

from samples.demo_mcp.server import IDEMPOTENCY_META_KEY, build_server

__all__ = ["IDEMPOTENCY_META_KEY", "build_server"]
