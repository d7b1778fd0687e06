"""Sample MCP servers that run next to the app (demo tools; the Scheduler lives beside them)."""
