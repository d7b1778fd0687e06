"""A demo MCP server with the seed's surface (greet, calculate, system info, files in a sandbox,
weather, a knowledge base; two info resources, two prompts).

Run: `python -m samples.demo_mcp --transport {stdio,sse,streamable-http} --port N`.
"""

from samples.demo_mcp.server import build_server

__all__ = ["build_server"]
