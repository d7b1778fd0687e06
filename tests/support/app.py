"""`function_app` for tests that need the app object without serving it.

The app parses its settings when imported (a bad setting must stop it at startup), so tests
that only index or replay it import it under minimal settings, then forget them: whoever serves
the app later sets its own environment and the settings are parsed again on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from unittest import mock

from agent import runtime
from local_host.indexing import load_app_module

ROOT = Path(__file__).resolve().parents[2]

MINIMAL_SETTINGS = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "OPENAI_BASE_URL": "http://127.0.0.1:8099/v1",
    "OPENAI_MODEL": "offline",
}


def load_function_app() -> ModuleType:
    """The app's `function_app`: the one already imported when it is ours (a test that served
    one of local_host's sample apps leaves that one under the same module name)."""
    missing = {k: v for k, v in MINIMAL_SETTINGS.items() if k not in os.environ}
    with mock.patch.dict(os.environ, missing):
        module = load_app_module(ROOT)
    runtime.use_runtime(None)
    return module
