"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
package.json) against our sample servers and our MCP client: `python -m conformance`."""
