"""The OpenAPI document: valid OpenAPI 3.1, in step with the routes function_app.py declares,
and served anonymously with this deployment's limits."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import schemathesis
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from agent import runtime
from agent.http import service
from agent.http.openapi import (
    API_PREFIX,
    FALLBACK_ROUTE,
    FUNCTION_KEY,
    PROBLEM_MEDIA_TYPE,
    allowed_methods,
    build_document,
)
from agent.http.routes import ROUTES, Ok, Operation
from agent.settings import Limits, Settings

ROOT = Path(__file__).resolve().parents[2]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
BASE_ENV = {
    "CONVERSATIONS_STORAGE": "UseDevelopmentStorage=true",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "OPENAI_MODEL": "test-model",
}

# get_functions() may be called once per app object: index in a fresh interpreter, as the worker.
INDEX_HTTP_ROUTES = """
import json, sys
sys.path.insert(0, sys.argv[1])
import function_app
routes = {}
for f in function_app.app.get_functions():
    for b in json.loads(f.get_function_json())["bindings"]:
        if b["type"] == "httpTrigger":
            routes.setdefault(b["route"], []).append(
                {"methods": sorted(m.lower() for m in b.get("methods") or []),
                 "auth": b["authLevel"], "function": f.get_function_name()})
print(json.dumps(routes))
"""


@pytest.fixture(scope="module")
def limits() -> Limits:
    return Settings.from_env(BASE_ENV).limits


@pytest.fixture(scope="module")
def document(limits: Limits) -> dict[str, Any]:
    return build_document(limits)


@pytest.fixture(scope="module")
def app_routes() -> dict[str, list[dict[str, Any]]]:
    """Each route of function_app.py: its functions (one per method or set of methods)."""
    out = subprocess.run(
        [sys.executable, "-c", INDEX_HTTP_ROUTES, str(ROOT)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", **BASE_ENV}, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on any violation of the OpenAPI 3.1 specification


def test_the_validator_would_catch_a_broken_document(document: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(document))
    [parameter] = broken["paths"][f"{API_PREFIX}/runs/{{run_id}}"]["get"]["parameters"]
    parameter["in"] = "body"  # a Swagger 2 location, not OpenAPI 3
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_schemathesis_loads_every_operation(document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    loaded = [result.ok() for result in schema.get_all_operations()]
    assert len(loaded) == sum(1 for _ in operations(document))


def test_every_http_route_of_the_app_is_documented_and_nothing_else(
    document: dict[str, Any], app_routes: dict[str, list[dict[str, Any]]]
) -> None:
    documented = {
        path.removeprefix(f"{API_PREFIX}/"): sorted(m for m in item if m in HTTP_METHODS)
        for path, item in document["paths"].items()
    }
    declared = {
        route: sorted(m for function in functions for m in function["methods"])
        for route, functions in app_routes.items()
        if route != FALLBACK_ROUTE
    }
    undocumented = sorted(set(declared) - set(documented))
    assert not undocumented, f"routes in function_app.py without documentation: {undocumented}"
    unwired = sorted(set(documented) - set(declared))
    assert not unwired, f"documented routes that function_app.py does not declare: {unwired}"
    assert documented == declared


def test_the_fallback_route_takes_every_method_anonymously(
    app_routes: dict[str, list[dict[str, Any]]],
) -> None:
    assert app_routes[FALLBACK_ROUTE] == [
        {"methods": [], "auth": "ANONYMOUS", "function": "unrouted"}
    ]


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/conversations", "GET, POST"),
        ("/api/conversations/abc", "DELETE, GET"),
        ("/api/runs/r1/approvals", "POST"),
        ("/api/health", "GET"),
        ("/api/nothing-here", None),
        ("/api/conversations/a/b", None),
    ],
)
def test_allowed_methods_come_from_the_documented_paths(path: str, allow: str | None) -> None:
    assert allowed_methods(path) == allow


async def test_a_documented_path_with_another_method_is_a_405_problem_with_allow(
    configured: None,
) -> None:
    request = func.HttpRequest("TRACE", "http://h/api/conversations/abc?x=1", body=b"")
    response = await service.unrouted(request)
    body = json.loads(response.get_body())
    assert (response.status_code, response.headers["Allow"]) == (405, "DELETE, GET")
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    assert body["status"] == 405 and "TRACE" in body["detail"] and "GET" in body["detail"]


async def test_a_path_the_api_does_not_have_is_a_404_problem(configured: None) -> None:
    response = await service.unrouted(func.HttpRequest("GET", "http://h/api/nope", body=b""))
    body = json.loads(response.get_body())
    assert response.status_code == 404 and response.mimetype == PROBLEM_MEDIA_TYPE
    assert "/api/nope" in body["detail"] and "openapi.json" in body["detail"]


def test_each_operation_is_named_after_its_function_and_secured_like_it(
    document: dict[str, Any], app_routes: dict[str, list[dict[str, Any]]]
) -> None:
    for path, method, operation in operations(document):
        functions = app_routes.get(path.removeprefix(f"{API_PREFIX}/"), [])
        [route] = [f for f in functions if method in f["methods"]] or [None]
        assert route is not None, f"{method} {path} is not declared in function_app.py"
        assert operation["operationId"] == route["function"]
        expected = [] if route["auth"] == "ANONYMOUS" else FUNCTION_KEY
        assert operation["security"] == expected, path


def test_every_error_response_is_a_problem_with_a_required_detail(
    document: dict[str, Any],
) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem["properties"]["detail"]["minLength"] == 1
    for path, method, operation in operations(document):
        statuses = set(operation["responses"])
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert set(response["content"]) == {PROBLEM_MEDIA_TYPE}, (path, method, status)
                assert response["content"][PROBLEM_MEDIA_TYPE]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
        if "service" not in operation["tags"] and "ui" not in operation["tags"]:
            assert {"401", "500", "503"} <= statuses, (path, method)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "400" in statuses, (path, method)


def test_each_route_documents_the_statuses_its_handler_gives(document: dict[str, Any]) -> None:
    def statuses(path: str, method: str) -> set[str]:
        return set(document["paths"][f"{API_PREFIX}{path}"][method]["responses"])

    assert {"201", "400", "409", "413"} <= statuses("/conversations", "post")
    assert {"200", "400", "404"} <= statuses("/conversations/{id}", "get")
    assert {"200", "202", "400", "404", "409", "413"} <= statuses(
        "/conversations/{id}/messages", "post"
    )
    assert {"200", "400", "404"} <= statuses("/runs/{run_id}", "get")
    assert {"202", "400", "404", "409"} <= statuses("/runs/{run_id}/cancel", "post")
    assert {"202", "400", "404", "409", "413"} <= statuses("/runs/{run_id}/approvals", "post")
    assert {"202", "400", "404", "409", "413"} <= statuses("/runs/{run_id}/input", "post")
    assert {"202", "400", "401", "413"} <= statuses("/scheduler/callback", "post")
    assert {"202", "400", "404", "413"} <= statuses("/schedules", "post")
    assert {"200", "400", "404"} <= statuses("/batches/{batch_id}", "get")
    assert statuses("/health", "get") == {"200", "503"}  # 503: degraded mode


def test_ids_and_webhook_headers_carry_the_handlers_patterns(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["Id"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    callback = document["paths"][f"{API_PREFIX}/scheduler/callback"]["post"]
    headers = {p["name"]: p for p in callback["parameters"] if p["in"] == "header"}
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert all(header["required"] for header in headers.values())
    assert headers["webhook-id"]["schema"]["pattern"] == "^[A-Za-z0-9_.:-]{1,128}$"
    for path, _method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"] == {"$ref": "#/components/schemas/Id"}, path


def test_the_function_key_schemes_are_the_header_and_the_code_query(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {
        ("header", "x-functions-key"),
        ("query", "code"),
    }


def test_the_documented_limits_are_the_deployments(limits: Limits) -> None:
    custom = replace(limits, max_message_chars=1234, wait_seconds_cap=7, max_body_bytes=4096)
    schemas = build_document(custom)["components"]["schemas"]
    assert schemas["MessageContent"]["maxLength"] == 1234
    assert "7 s" in schemas["NewMessage"]["properties"]["wait_seconds"]["description"]
    assert build_document(limits)["components"]["schemas"]["MessageContent"]["maxLength"] == (
        limits.max_message_chars
    )


# --- the handler ---------------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean process environment for `runtime.settings()`; forgotten again afterwards."""
    for name in (
        *BASE_ENV,
        "AzureWebJobsStorage",
        "AZURE_OPENAI_ENDPOINT",
        "AGENT_MAX_MESSAGE_CHARS",
    ):
        monkeypatch.delenv(name, raising=False)
    runtime.use_runtime(None)
    yield monkeypatch
    runtime.use_runtime(None)


@pytest.fixture
def configured(environment: pytest.MonkeyPatch) -> None:
    for name, value in BASE_ENV.items():
        environment.setenv(name, value)


def get(url: str) -> func.HttpRequest:
    return func.HttpRequest(method="GET", url=url, headers={}, params={}, body=b"")


async def test_the_handler_serves_the_document_with_the_deployments_limits(
    environment: pytest.MonkeyPatch,
) -> None:
    for name, value in {**BASE_ENV, "AGENT_MAX_MESSAGE_CHARS": "777"}.items():
        environment.setenv(name, value)
    response = await service.openapi_document(get("http://localhost/api/openapi.json"))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    served = json.loads(response.get_body())
    validate(served)
    assert served["components"]["schemas"]["MessageContent"]["maxLength"] == 777


async def test_a_misconfigured_deployment_gets_a_503_problem_naming_the_setting(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("CONVERSATIONS_STORAGE", "UseDevelopmentStorage=true")  # but no model
    response = await service.openapi_document(get("http://localhost/api/openapi.json"))
    assert response.status_code == 503
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    problem = json.loads(response.get_body())
    assert "AZURE_OPENAI_ENDPOINT" in problem["detail"]


def test_a_new_route_is_documented_from_one_table_entry(limits: Limits) -> None:
    events = Operation(
        "runs/{run_id}/trace",
        "get",
        "run_trace",
        "runs",
        "A run's trace (a route that does not exist)",
        {200: Ok("Server-Sent Events.", {"type": "string"}, media_type="text/event-stream")},
        {400: "", 404: ""},
    )
    document = build_document(limits, (*ROUTES, events))
    validate(document)
    operation = document["paths"][f"{API_PREFIX}/runs/{{run_id}}/trace"]["get"]
    assert operation["operationId"] == "run_trace" and operation["security"] == FUNCTION_KEY
    assert operation["parameters"][0]["schema"] == {"$ref": "#/components/schemas/Id"}
    assert set(operation["responses"]) == {"200", "400", "401", "404", "500", "503"}
    assert set(operation["responses"]["200"]["content"]) == {"text/event-stream"}
    assert f"{API_PREFIX}/runs/{{run_id}}/trace" not in build_document(limits)["paths"]


def test_the_run_events_route_is_documented_as_server_sent_events_or_json(
    document: dict[str, Any],
) -> None:
    operation = document["paths"][f"{API_PREFIX}/runs/{{run_id}}/events"]["get"]
    assert set(operation["responses"]) >= {"200", "204", "400", "404"}
    assert "content" not in operation["responses"]["204"]
    content = operation["responses"]["200"]["content"]
    assert set(content) == {"text/event-stream", "application/json"}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/RunEvents"}
    assert {p["name"] for p in operation["parameters"]} == {
        "run_id",
        "Last-Event-ID",
        "after",
        "wait",
    }
    types = document["components"]["schemas"]["RunEvent"]["properties"]["type"]["enum"]
    must = {"run_started", "step_started", "text_delta", "tool_call_started"}
    assert must | {"tool_call_completed", "approval_needed", "throttled", "run_finished"} <= set(
        types
    )
