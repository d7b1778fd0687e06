"""The MCP client layer: config (`MCP_SERVERS`), auth, pooled sessions, tool catalog and calls.

Import the submodules (`agent.mcp.pool`, `agent.mcp.config`): this package module stays empty so
that importing the settings does not pull in the MCP SDK (cold start).
"""
