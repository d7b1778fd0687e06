"""The service's own routes, all anonymous and without dependencies: `GET /api/health`,
`GET /api/openapi.json`, and the answer to a request no route took."""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from agent.errors import InvalidSettings
from agent.http.kit import API_PREFIX, json_response, misconfigured, problem
from agent.runtime import settings, settings_problem


async def health(req: func.HttpRequest) -> func.HttpResponse:
    invalid = settings_problem()
    if invalid is not None:
        return misconfigured(invalid)
    return json_response({"status": "ok"})


async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    """`GET /api/openapi.json`: the document, with this deployment's limits."""
    from agent.http.openapi import document_text  # builds from the models: loaded on first call

    try:
        limits = settings().limits
    except InvalidSettings as exc:  # degraded mode: the same 503 as every other route
        return misconfigured(exc)
    return func.HttpResponse(
        document_text(limits),
        status_code=200,
        mimetype="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def unrouted(req: func.HttpRequest) -> func.HttpResponse:
    """A request no route took: a method the path does not serve is a 405 with `Allow` (RFC
    9110), anything else a 404; both problems, like every other error of the API. (The
    Functions host would answer both with an empty 404.)"""
    from agent.http.openapi import allowed_methods

    invalid = settings_problem()
    if invalid is not None:  # degraded mode: the same 503 as every other route
        return misconfigured(invalid)
    path = urlsplit(req.url).path
    allow = allowed_methods(path)
    if allow is None:
        return problem(
            404, "Not Found", f"there is no {path} in this API; see {API_PREFIX}/openapi.json"
        )
    response = problem(
        405, "Method Not Allowed", f"{path} does not take {req.method}; it takes {allow}"
    )
    response.headers["Allow"] = allow
    return response
