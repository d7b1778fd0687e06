"""The HTTP API as an OpenAPI 3.1 document, served at `GET /api/openapi.json` (anonymous):
assembled from the route table (`agent.http.routes`) and the models that validate the requests
(`agent.http.models`), so the document cannot say other than the handlers do.

Built at run time rather than kept as a file because some limits are this deployment's own
(`AGENT_MAX_BODY_BYTES`, `AGENT_MAX_MESSAGE_CHARS`, `AGENT_WAIT_SECONDS_CAP`).
`tests/agent/test_openapi.py` keeps the routes in step with `function_app.py` and
`tests/e2e/test_fuzz.py` checks the handlers keep to the document.

Errors are `application/problem+json` (RFC 9457) with `type`, `title`, `status` and `detail`.
Paths carry the `api` route prefix from host.json.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from agent.http import models
from agent.http.kit import API_PREFIX, PROBLEM_MEDIA_TYPE
from agent.http.routes import FALLBACK_ROUTE, PATH_PARAMETERS, ROUTES, Operation
from agent.settings import Limits

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"
REF = "#/components/schemas/{model}"
FUNCTION_KEY: list[dict[str, list[str]]] = [{"functionKeyHeader": []}, {"functionKeyQuery": []}]
ANONYMOUS: list[dict[str, list[str]]] = []
# Problem (and Id, for path parameters) are documented whether or not a body names them.
ALWAYS = (models.Problem,)
PROBLEM_DESCRIPTIONS = {
    400: "The request is malformed: bad JSON, a missing or invalid field or id.",
    401: "Not authenticated: a missing or invalid function key (the Functions host answers with "
    "an empty body), or no App Service Authentication caller while REQUIRE_AUTH is on.",
    404: "No such resource for this caller (another caller's resources are not found either).",
    409: "Conflict with the current state.",
    413: "The body is over the deployment's size limit.",
    500: "An unexpected failure (logged); try again later.",
    503: "The app is misconfigured (`detail` names the setting), or the store is busy "
    "(`Retry-After` says when to retry).",
}
__all__ = ["FALLBACK_ROUTE", "allowed_methods", "build_document", "document_text"]
SECURITY_SCHEMES = {
    "functionKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "An Azure Functions function (or host) key.",
    },
    "functionKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "code",
        "description": "The function key as a query parameter.",
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


# --- schemas from the models ---------------------------------------------------------------------


class _Schemas(GenerateJsonSchema):
    """pydantic's JSON Schema without the titles it makes up from field names."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _types(routes: tuple[Operation, ...]) -> list[Any]:
    """Every model (or type alias) a route names, and those documented anyway."""
    named = [models.Id, *ALWAYS]
    for operation in routes:
        for ok in operation.ok.values():
            bodies = [ok.body, *ok.also.values()]
            named += [body for body in bodies if body is not None and not isinstance(body, dict)]
        if operation.body is not None:
            named.append(operation.body)
    return list(dict.fromkeys(named))


def _model_schemas(routes: tuple[Operation, ...]) -> dict[str, Any]:
    """The components' schemas, from the models the routes name."""
    adapters: list[tuple[Any, Literal["validation"], TypeAdapter[Any]]] = [
        (named, "validation", TypeAdapter(named)) for named in _types(routes)
    ]
    _, schema = TypeAdapter.json_schemas(adapters, ref_template=REF, schema_generator=_Schemas)
    tidied: dict[str, Any] = _tidy(schema.get("$defs", {}))  # each type named once
    return tidied


def _tidy(value: Any) -> Any:
    """Without pydantic's `title` of a model and a `default` of null (absent is null)."""
    if isinstance(value, dict):
        return {
            key: _tidy(item)
            for key, item in value.items()
            if not (key == "title" and isinstance(item, str))
            and not (key == "default" and item is None)
        }
    if isinstance(value, list):
        return [_tidy(item) for item in value]
    return value


def _schemas(limits: Limits, routes: tuple[Operation, ...]) -> dict[str, Any]:
    """The models' schemas with this deployment's limits filled in."""
    schemas: dict[str, Any] = _with_limits(_model_schemas(routes), limits)
    schemas["MessageContent"]["maxLength"] = limits.max_message_chars
    return schemas


def _with_limits(value: Any, limits: Limits) -> Any:
    """Each `{limit_name}` in a description replaced by the deployment's value."""
    if isinstance(value, dict):
        return {key: _with_limits(item, limits) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_limits(item, limits) for item in value]
    if isinstance(value, str):
        for name, number in dataclasses.asdict(limits).items():
            value = value.replace(f"{{{name}}}", str(number))
    return value


def _schema_of(body: Any) -> dict[str, Any]:
    """A raw schema as it is; a model or a type alias by reference to its component."""
    return body if isinstance(body, dict) else _ref(body.__name__)


# --- operations ----------------------------------------------------------------------------------


def _problem(status: int, description: str = "") -> dict[str, Any]:
    return {
        "description": description or PROBLEM_DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}},
    }


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, ok in operation.ok.items():
        response: dict[str, Any] = {"description": ok.description}
        if ok.body is not None:  # None: no body (a 204)
            bodies = {ok.media_type: ok.body, **ok.also}
            response["content"] = {
                media: {"schema": _schema_of(body)} for media, body in bodies.items()
            }
        if ok.location:
            response["headers"] = {
                "Location": {
                    "description": ok.location,
                    "required": True,
                    "schema": {"type": "string", "format": "uri-reference"},
                }
            }
        responses[str(status)] = response
    statuses = set(operation.errors) | ({401, 500, 503} if operation.every_error else set())
    for status in sorted(statuses):
        responses[str(status)] = _problem(status, operation.errors.get(status, ""))
    return responses


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    in_path = re.findall(r"\{([^/}]+)\}", operation.path)
    return [
        *(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": PATH_PARAMETERS[name],
                "schema": _ref("Id"),
            }
            for name in in_path
        ),
        *operation.headers,
    ]


def _operation(operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
    }
    if operation.description:
        document["description"] = operation.description
    document["security"] = ANONYMOUS if operation.anonymous else FUNCTION_KEY
    if parameters := _parameters(operation):
        document["parameters"] = parameters
    if operation.body is not None:
        body: dict[str, Any] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": _schema_of(operation.body)}},
        }
        if operation.body_description:
            body["description"] = operation.body_description
        document["requestBody"] = body
    document["responses"] = _responses(operation)
    return document


def _paths(routes: tuple[Operation, ...]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for operation in routes:
        item = paths.setdefault(f"{API_PREFIX}/{operation.path}", {})
        item[operation.method] = _operation(operation)
    return paths


# --- the document --------------------------------------------------------------------------------


def build_document(limits: Limits, routes: tuple[Operation, ...] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` for this deployment's limits."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Durable MCP agent",
            "version": API_VERSION,
            "description": (
                "Chat with an Azure OpenAI agent that uses MCP tools, one durable step at a "
                "time; schedule conversations for later. Errors are application/problem+json "
                "with a `detail`. Conversations belong to their caller (the App Service "
                "Authentication principal when present): another caller gets 404."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in routes)],
        "security": FUNCTION_KEY,
        "paths": _with_limits(_paths(routes), limits),
        "components": {"schemas": _schemas(limits, routes), "securitySchemes": SECURITY_SCHEMES},
    }


@functools.cache
def document_text(limits: Limits) -> str:
    return json.dumps(build_document(limits), indent=1)


@functools.cache
def _path_methods() -> tuple[tuple[re.Pattern[str], str], ...]:
    """Each path of the table as a pattern, with its methods as an `Allow` value."""
    methods: dict[str, list[str]] = {}
    for operation in ROUTES:
        methods.setdefault(f"{API_PREFIX}/{operation.path}", []).append(operation.method.upper())
    table = []
    for path, allowed in methods.items():
        literal_parts = re.split(r"\{[^/}]+\}", path)  # around each {parameter}
        pattern = "[^/]+".join(re.escape(part) for part in literal_parts)
        table.append((re.compile(pattern), ", ".join(sorted(allowed))))
    return tuple(table)


def allowed_methods(path: str) -> str | None:
    """The `Allow` value for a path the API serves; None for a path it does not."""
    for pattern, allow in _path_methods():
        if pattern.fullmatch(path):
            return allow
    return None
