"""function_app.py stays loadable by the real Python worker, and the host files are valid."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.app import MINIMAL_SETTINGS

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    # name: (trigger type, route, methods, auth level)
    "create_conversation": ("httpTrigger", "conversations", ["POST"], "FUNCTION"),
    "get_conversation": ("httpTrigger", "conversations/{id}", ["GET"], "FUNCTION"),
    "post_message": ("httpTrigger", "conversations/{id}/messages", ["POST"], "FUNCTION"),
    "get_run": ("httpTrigger", "runs/{run_id}", ["GET"], "FUNCTION"),
    "cancel_run": ("httpTrigger", "runs/{run_id}/cancel", ["POST"], "FUNCTION"),
    "answer_approval": ("httpTrigger", "runs/{run_id}/approvals", ["POST"], "FUNCTION"),
    "health": ("httpTrigger", "health", ["GET"], "ANONYMOUS"),
    "openapi_document": ("httpTrigger", "openapi.json", ["GET"], "ANONYMOUS"),
    "scheduler_callback": ("httpTrigger", "scheduler/callback", ["POST"], "ANONYMOUS"),
    "schedule_batch": ("httpTrigger", "schedules", ["POST"], "FUNCTION"),
    "get_batch": ("httpTrigger", "batches/{batch_id}", ["GET"], "FUNCTION"),
    "chat_turn": ("orchestrationTrigger", None, None, None),
    "scheduled_batch": ("orchestrationTrigger", None, None, None),
    "take_batch_item": ("activityTrigger", None, None, None),
    "batch_lane": ("orchestrationTrigger", None, None, None),
    "claim_batch_item": ("activityTrigger", None, None, None),
    "record_batch_outcome": ("activityTrigger", None, None, None),
    "model_step": ("activityTrigger", None, None, None),
    "tool_call": ("activityTrigger", None, None, None),
    "finish_turn": ("activityTrigger", None, None, None),
}
DURABLE_CLIENT_FUNCTIONS = {
    "post_message",
    "get_run",
    "cancel_run",
    "answer_approval",
    "scheduler_callback",
    "schedule_batch",
    "get_batch",
}

INDEX_LIKE_THE_WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import function_app
functions = {}
for f in function_app.app.get_functions():
    functions[f.get_function_name()] = json.loads(f.get_function_json())
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'mcp', 'httpx2') or m.startswith(('azure.storage', 'azure.identity')))
print(json.dumps({"functions": functions, "heavy": heavy}))
"""


def index_in_a_fresh_interpreter(settings: dict[str, str] = MINIMAL_SETTINGS) -> dict:
    """Import and index the app as the worker does: in its own process."""
    out = subprocess.run(
        [sys.executable, "-c", INDEX_LIKE_THE_WORKER, str(ROOT)],
        capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", **settings}, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_every_function_has_the_bindings_the_host_expects():
    functions = index_in_a_fresh_interpreter()["functions"]
    assert set(functions) == set(EXPECTED)
    for name, (trigger_type, route, methods, auth) in EXPECTED.items():
        bindings = functions[name]["bindings"]
        [trigger] = [b for b in bindings if b["type"].endswith("Trigger")]
        assert trigger["type"] == trigger_type, name
        assert trigger["direction"] == "IN"
        if trigger_type == "httpTrigger":
            assert trigger["route"] == route
            assert [m.upper() for m in trigger["methods"]] == methods
            assert trigger["authLevel"] == auth
            assert any(b["type"] == "http" and b["direction"] == "OUT" for b in bindings), name
        clients = [b for b in bindings if b["type"] == "durableClient"]
        assert bool(clients) == (name in DURABLE_CLIENT_FUNCTIONS), name


def test_importing_the_app_loads_no_heavy_sdk():
    # cold start is paid on every scale-out: the model, MCP and Blob SDKs load on first use
    assert index_in_a_fresh_interpreter()["heavy"] == []


def test_a_missing_setting_stops_the_app_at_startup_naming_it():
    with pytest.raises(subprocess.CalledProcessError) as failed:
        index_in_a_fresh_interpreter({**MINIMAL_SETTINGS, "OPENAI_MODEL": ""})
    assert "OPENAI_MODEL" in failed.value.stderr


def test_host_json_uses_extension_bundle_v4_and_a_named_task_hub():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensionBundle"]["version"].startswith("[4.")
    durable = host["extensions"]["durableTask"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,44}", durable["hubName"])
    assert durable["maxConcurrentActivityFunctions"] >= 1
    assert durable["maxConcurrentOrchestratorFunctions"] >= 1


def test_local_settings_example_lists_every_setting_the_app_reads():
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    source = "\n".join(p.read_text() for p in (ROOT / "agent").glob("*.py"))
    read = set(re.findall(r'read\.\w+\(\s*"([A-Za-z_]+)"', source))
    read |= set(re.findall(r'read\.text\("([A-Za-z_]+)"', source))
    assert read, "found no settings: the pattern no longer matches agent/settings.py"
    assert read <= set(values), sorted(read - set(values))


def test_the_example_settings_parse():
    from agent.settings import Settings

    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    settings = Settings.from_env(values)
    assert settings.model.kind == "openai"
    assert json.loads(settings.mcp_servers_json)["mcp_servers"]
