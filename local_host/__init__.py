"""A local Azure Functions + Durable Functions host for Python v2-model apps.

It stands in for Azure Functions Core Tools (`func start`) where Core Tools cannot run. It loads
`function_app.py`, indexes it the way the Python worker does (`app.get_functions()`), serves HTTP
triggers, and plays the Durable Functions extension's part of the host <-> worker contract:
orchestrators are replayed from their history through the SDK's own entry point, their actions
become durable work (activities, timers, sub-orchestrations, events) kept in SQLite.

Run it with ``python -m local_host``; use :class:`local_host.host.LocalHost` in tests.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
