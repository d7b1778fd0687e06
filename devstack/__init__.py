"""Run the whole app locally: Azurite, the sample MCP servers, the offline model and the host."""
