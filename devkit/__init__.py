"""Fakes and fixtures that the tests and the benchmarks share: Azurite started on a free port,
the offline model server behind the `openai` client, MCP servers on loopback, the sample
Scheduler with a webhook receiver.

Development only (never deployed: see .funcignore). It may import the app and the samples, never
`tests` or `benchmarks`, so both of those can import it (tests/test_import_graph.py checks).
"""
