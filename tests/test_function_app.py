"""function_app.py stays loadable by the real Python worker, and the host files are valid."""

from __future__ import annotations

import base64
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
    "list_conversations": ("httpTrigger", "conversations", ["GET"], "FUNCTION"),
    "get_conversation": ("httpTrigger", "conversations/{id}", ["GET"], "FUNCTION"),
    "delete_conversation": ("httpTrigger", "conversations/{id}", ["DELETE"], "FUNCTION"),
    "post_message": ("httpTrigger", "conversations/{id}/messages", ["POST"], "FUNCTION"),
    "get_run": ("httpTrigger", "runs/{run_id}", ["GET"], "FUNCTION"),
    "cancel_run": ("httpTrigger", "runs/{run_id}/cancel", ["POST"], "FUNCTION"),
    "answer_approval": ("httpTrigger", "runs/{run_id}/approvals", ["POST"], "FUNCTION"),
    "answer_input": ("httpTrigger", "runs/{run_id}/input", ["POST"], "FUNCTION"),
    "run_events": ("httpTrigger", "runs/{run_id}/events", ["GET"], "FUNCTION"),
    "health": ("httpTrigger", "health", ["GET"], "ANONYMOUS"),
    "openapi_document": ("httpTrigger", "openapi.json", ["GET"], "ANONYMOUS"),
    "scheduler_callback": ("httpTrigger", "scheduler/callback", ["POST"], "ANONYMOUS"),
    "conversation_callback": (
        "httpTrigger",
        "scheduler/conversation-callback",
        ["POST"],
        "FUNCTION",
    ),
    "schedule_batch": ("httpTrigger", "schedules", ["POST"], "FUNCTION"),
    "get_batch": ("httpTrigger", "batches/{batch_id}", ["GET"], "FUNCTION"),
    "chat_page": ("httpTrigger", "ui", ["GET"], "ANONYMOUS"),
    "chat_page_script": ("httpTrigger", "ui/app.js", ["GET"], "ANONYMOUS"),
    "chat_page_style": ("httpTrigger", "ui/app.css", ["GET"], "ANONYMOUS"),
    "unrouted": ("httpTrigger", "{*path}", [], "ANONYMOUS"),  # every method: 405/404 problems
    "chat_turn": ("orchestrationTrigger", None, None, None),
    "scheduled_batch": ("orchestrationTrigger", None, None, None),
    "take_batch_item": ("activityTrigger", None, None, None),
    "batch_lane": ("orchestrationTrigger", None, None, None),
    "claim_batch_item": ("activityTrigger", None, None, None),
    "record_batch_outcome": ("activityTrigger", None, None, None),
    "model_step": ("activityTrigger", None, None, None),
    "compact": ("activityTrigger", None, None, None),
    "tool_call": ("activityTrigger", None, None, None),
    "poll_tool_task": ("activityTrigger", None, None, None),
    "answer_tool_task": ("activityTrigger", None, None, None),
    "finish_turn": ("activityTrigger", None, None, None),
    "conversation_retention": ("timerTrigger", None, None, None),
}
DURABLE_CLIENT_FUNCTIONS = {
    "delete_conversation",
    "post_message",
    "get_run",
    "cancel_run",
    "answer_approval",
    "answer_input",
    "run_events",
    "scheduler_callback",
    "conversation_callback",
    "schedule_batch",
    "get_batch",
    "take_batch_item",  # to learn whether the run holding a conversation's lock is over
    "conversation_retention",  # purges its runs' Durable history
}

INDEX_LIKE_THE_WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import function_app
functions = {}
for f in function_app.app.get_functions():
    functions[f.get_function_name()] = json.loads(f.get_function_json())
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'mcp', 'httpx2', 'pydantic') or m.startswith(('azure.storage', 'azure.identity')))
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
            assert [m.upper() for m in trigger.get("methods") or []] == methods
            assert trigger["authLevel"] == auth
            assert any(b["type"] == "http" and b["direction"] == "OUT" for b in bindings), name
        clients = [b for b in bindings if b["type"] == "durableClient"]
        assert bool(clients) == (name in DURABLE_CLIENT_FUNCTIONS), name


def test_retention_runs_daily_never_on_startup_and_catches_up_a_missed_run():
    functions = index_in_a_fresh_interpreter()["functions"]
    [trigger] = [
        b for b in functions["conversation_retention"]["bindings"] if b["type"] == "timerTrigger"
    ]
    assert trigger["schedule"] == "0 30 3 * * *"  # NCRONTAB: seconds first; 03:30 UTC daily
    assert trigger["runOnStartup"] is False  # a restart (a deploy, a scale-out) must not purge
    assert trigger["useMonitor"] is True


def test_importing_the_app_loads_no_heavy_sdk():
    # cold start is paid on every scale-out: the model, MCP and Blob SDKs (and pydantic, for the
    # HTTP models) load on first use
    assert index_in_a_fresh_interpreter()["heavy"] == []


# Imports the app as the worker does, then calls every function the way the host would: each
# HTTP route with a request (and a durable client), each activity with an input.
CALL_EVERY_FUNCTION = """
import asyncio, inspect, json, sys
sys.path.insert(0, sys.argv[1])
import azure.functions as func
import function_app

CLIENT = json.dumps({"taskHubName": "hub", "creationUrls": {}, "managementUrls": {},
                     "baseUrl": "http://127.0.0.1:9/runtime/webhooks/durabletask",
                     "requiredQueryStringParameters": "", "rpcBaseUrl": "http://127.0.0.1:9/durabletask/"})

async def call_route(function, trigger):
    route = trigger["route"].replace("{*path}", "x1")  # the catch-all: any path
    method = (trigger.get("methods") or ["GET"])[0].upper()
    params = {n: "x1" for n in ("id", "run_id", "batch_id") if "{" + n + "}" in route}
    url = "http://127.0.0.1/api/" + route.format(**params)
    req = func.HttpRequest(method=method, url=url, route_params=params,
                           body=b"{}" if method == "POST" else b"",
                           headers={"content-type": "application/json"})
    user = function.get_user_function()
    kwargs = {"req": req}
    if "client" in inspect.signature(user).parameters:
        kwargs["client"] = CLIENT  # the binding string, as the host passes it
    response = await user(**kwargs)
    return {"status": response.status_code, "mimetype": response.mimetype,
            "body": json.loads(response.get_body())}

async def call_activity(function):
    user = function.get_user_function()
    kwargs = {"data": {}}
    if "client" in inspect.signature(user).parameters:
        kwargs["client"] = CLIENT  # the binding string, as the host passes it
    try:
        await user(**kwargs)
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}
    return {"raised": None}

async def main():
    routes, activities = {}, {}
    for function in function_app.app.get_functions():
        name = function.get_function_name()
        [trigger] = [b for b in json.loads(function.get_function_json())["bindings"]
                     if b["type"].endswith("Trigger")]
        if trigger["type"] == "httpTrigger":
            routes[name] = await call_route(function, trigger)
        elif trigger["type"] == "activityTrigger":
            activities[name] = await call_activity(function)
    print(json.dumps({"routes": routes, "activities": activities}))

asyncio.run(main())
"""


def call_every_function_in_a_fresh_interpreter(settings: dict[str, str]) -> tuple[dict, str]:
    """(what each route answered and each activity raised, the log on stderr)."""
    out = subprocess.run(
        [sys.executable, "-c", CALL_EVERY_FUNCTION, str(ROOT)],
        capture_output=True, text=True, check=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", **settings}, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout), out.stderr


BAD_SETTINGS = {**MINIMAL_SETTINGS, "OPENAI_MODEL": "", "AGENT_MAX_STEPS": "many-7f3a"}


@pytest.fixture(scope="module")
def degraded() -> tuple[dict, str]:
    return call_every_function_in_a_fresh_interpreter(BAD_SETTINGS)


def test_a_missing_or_malformed_setting_never_stops_indexing():
    functions = index_in_a_fresh_interpreter(BAD_SETTINGS)["functions"]
    assert set(functions) == set(EXPECTED)


def test_with_bad_settings_health_and_every_route_answer_503_naming_each_setting(degraded):
    routes = degraded[0]["routes"]
    assert set(routes) == {n for n, (kind, *_) in EXPECTED.items() if kind == "httpTrigger"}
    health = routes["health"]
    print("503 health answer:", json.dumps(health["body"]))  # shown with -s: the report quotes it
    assert (health["status"], health["mimetype"]) == (503, "application/problem+json")
    assert health["body"]["invalid_settings"] == ["OPENAI_MODEL", "AGENT_MAX_STEPS"]
    detail = health["body"]["detail"]
    assert "setting OPENAI_MODEL: is required" in detail
    assert "setting AGENT_MAX_STEPS: must be an integer" in detail
    assert "many-7f3a" not in json.dumps(routes)  # names and what is wrong, never values
    seeds = routes["conversation_callback"]["body"]  # the seeds' senders read these two too
    assert (seeds.pop("success"), seeds.pop("error")) == (False, detail)
    for name, answer in routes.items():
        assert answer == health, name  # the same 503 and detail on every route


def test_with_bad_settings_every_activity_fails_naming_them_and_the_log_says_it_once(degraded):
    answers, log = degraded
    assert set(answers["activities"]) == {
        n for n, (kind, *_) in EXPECTED.items() if kind == "activityTrigger"
    }
    for name, outcome in answers["activities"].items():
        assert outcome["raised"] == "InvalidSettings", name
        assert "OPENAI_MODEL" in outcome["message"] and "AGENT_MAX_STEPS" in outcome["message"]
    assert log.count("the app is misconfigured") == 1, log
    assert "OPENAI_MODEL" in log and "many-7f3a" not in log


IDENTITY_CLIENT_ID = "5b0f6a5e-1c7a-4d1e-9a51-3f0b8e2d4c11"
# What the Function App gets on Azure with managed identity everywhere: no connection string, no key.
IDENTITY_ONLY_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage__accountName": "stagentprod01",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": IDENTITY_CLIENT_ID,
    "AZURE_CLIENT_ID": IDENTITY_CLIENT_ID,
    "AZURE_OPENAI_ENDPOINT": "https://oai-agent-prod.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    "KEYVAULT_URI": "https://kv-agent-prod.vault.azure.net/",
    "MCP_SERVERS": json.dumps({"mcp_servers": [{
        "name": "scheduler",
        "transport": {"type": "streamable_http", "url": "https://ca-scheduler.example.net/mcp"},
        "auth": {"type": "api_key", "client_id": {"secret": "SCHEDULER-CLIENT-ID"},
                 "api_key": {"secret": "SCHEDULER-API-KEY"}}}]}),
    "PUBLIC_BASE_URL": "https://func-agent-prod.azurewebsites.net",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"Authorization=AAD;ClientId={IDENTITY_CLIENT_ID}",
    "WEBSITE_SITE_NAME": "func-agent-prod",
    "WEBSITE_INSTANCE_ID": "0123456789abcdef",
}  # fmt: skip

PARSE_LIKE_THE_APP = """
import json, sys
sys.path.insert(0, sys.argv[1])
import function_app
from agent.runtime import settings
s = settings()
print(json.dumps({"functions": sorted(f.get_function_name() for f in function_app.app.get_functions()),
                  "storage": s.conversations_storage, "account_url": s.storage_uses_account_url,
                  "client_id": s.azure_client_id, "model_key": s.model.api_key is not None,
                  "keyvault": s.keyvault_uri, "appinsights_identity": s.appinsights_identity.client_id}))
"""


def test_identity_based_settings_alone_index_every_function_and_give_the_account_url():
    out = subprocess.run(
        [sys.executable, "-c", PARSE_LIKE_THE_APP, str(ROOT)],
        capture_output=True, text=True, check=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", **IDENTITY_ONLY_SETTINGS}, cwd=ROOT,
    )  # fmt: skip
    parsed = json.loads(out.stdout)
    assert parsed["functions"] == sorted(EXPECTED)
    assert parsed["storage"] == "https://stagentprod01.blob.core.windows.net"
    assert parsed["account_url"] is True  # the store is built with the managed identity
    assert parsed["client_id"] == IDENTITY_CLIENT_ID
    assert parsed["model_key"] is False  # Azure OpenAI through the identity too
    assert parsed["keyvault"] == "https://kv-agent-prod.vault.azure.net"
    assert parsed["appinsights_identity"] == IDENTITY_CLIENT_ID
    assert "misconfigured" not in out.stderr


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


def test_the_readme_documents_the_azure_only_settings_the_example_leaves_out():
    from agent.settings import AZURE_ONLY_SETTINGS

    readme = (ROOT / "README.md").read_text()
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    for name in AZURE_ONLY_SETTINGS:
        suffix = name.partition("__")[2]  # the table lists `AzureWebJobsStorage__x` as `__x`
        assert f"`{name}`" in readme or (suffix and f"`__{suffix}`" in readme), name
        assert name not in values, f"{name} does nothing locally; keep it out of the example"


def test_the_example_settings_parse():
    from agent.settings import Settings

    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    settings = Settings.from_env(values)
    assert settings.model.kind == "openai"
    assert settings.mcp_servers


ASK_HEALTH = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
import azure.functions as func
import function_app
[health] = [f for f in function_app.app.get_functions() if f.get_function_name() == "health"]
req = func.HttpRequest(method="GET", url="http://127.0.0.1/api/health", body=b"")
response = asyncio.run(health.get_user_function()(req=req))
print(json.dumps({"status": response.status_code, "body": json.loads(response.get_body())}))
"""


def health_in_a_fresh_interpreter(settings: dict[str, str]) -> tuple[dict, str]:
    out = subprocess.run(
        [sys.executable, "-c", ASK_HEALTH, str(ROOT)],
        capture_output=True, text=True, check=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", **settings}, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout), out.stderr


def test_require_auth_on_azure_without_app_service_authentication_runs_degraded_naming_it():
    on_azure = {**MINIMAL_SETTINGS, "REQUIRE_AUTH": "true", "WEBSITE_SITE_NAME": "func-agent"}
    health, log = health_in_a_fresh_interpreter(on_azure)
    assert health["status"] == 503
    assert health["body"]["invalid_settings"] == ["REQUIRE_AUTH"]
    assert "App Service Authentication is off" in health["body"]["detail"]
    assert log.count("the app is misconfigured") == 1


def test_require_auth_on_azure_with_app_service_authentication_is_healthy():
    protected = {
        **MINIMAL_SETTINGS,
        "REQUIRE_AUTH": "true",
        "WEBSITE_SITE_NAME": "func-agent",
        "WEBSITE_AUTH_ENABLED": "True",
    }
    health, log = health_in_a_fresh_interpreter(protected)
    assert health == {"status": 200, "body": {"status": "ok"}}
    assert "REQUIRE_AUTH" not in log


def test_require_auth_locally_is_healthy_and_the_startup_log_warns_once_that_headers_are_trusted():
    health, log = health_in_a_fresh_interpreter({**MINIMAL_SETTINGS, "REQUIRE_AUTH": "true"})
    assert health == {"status": 200, "body": {"status": "ok"}}
    assert log.count("REQUIRE_AUTH=true without App Service Authentication") == 1, log
    assert "trusted as the client sent them" in log


def test_an_empty_mcp_list_or_a_short_webhook_key_is_the_503_health_detail_from_startup():
    short_key = "whsec_" + base64.b64encode(b"short").decode()
    bad = {**MINIMAL_SETTINGS, "MCP_SERVERS": "[]", "SCHEDULER_WEBHOOK_SECRET": short_key}
    health, _ = health_in_a_fresh_interpreter(bad)
    assert health["status"] == 503
    assert health["body"]["invalid_settings"] == ["MCP_SERVERS", "SCHEDULER_WEBHOOK_SECRET"]
    assert "setting MCP_SERVERS: the top level: must be a JSON object" in health["body"]["detail"]
    assert "SCHEDULER_WEBHOOK_SECRET: key is shorter than 16 bytes" in health["body"]["detail"]
