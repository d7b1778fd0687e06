"""The HTTP front door: HTTP-triggered functions, the durable management API and host status.

HTTP triggers are matched against the routes the app declared (route prefix from host.json,
default `api`), the request is turned into `azure.functions.HttpRequest` by the SDK's own
`HttpRequestConverter` and the function's return value into a response by
`HttpResponseConverter`, as the worker does; a starlette streaming response (what the worker
streams in its HTTP v2 mode, see agent.http_streaming) is streamed chunk by chunk. Function keys: when a key is configured,
FUNCTION- and ADMIN-level routes need it in `x-functions-key` or `?code=` (401 otherwise);
ANONYMOUS routes never do. The durable management API (`/durabletask/`, and its public twin
`/runtime/webhooks/durabletask/`) always needs the system key, a key of its own: in
`x-functions-key`, `?code=`, or as the Basic-auth password (how the app's durable client sends
it). An unhandled exception is logged and answered 500 with a generic body.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import BasicAuth, web
from azure.functions import meta

from . import payloads
from .durable_api import RPC_PATH, WEBHOOK_PATH, DurableApi, split_segments
from .indexing import ANONYMOUS, DURABLE_CLIENT, HTTP_OUTPUT, HTTP_TRIGGER, AppIndex, HttpRoute
from .invocation import FunctionInvoker

logger = logging.getLogger(__name__)

STATUS_PATH = "/admin/host/status"
MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's default request size limit
PROBLEM_MEDIA_TYPE = "application/problem+json"
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def _json_response(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class HttpFrontend:
    """Routes every request of the host's single HTTP listener."""

    def __init__(
        self,
        *,
        index: AppIndex,
        invoker: FunctionInvoker,
        durable_api: DurableApi,
        client_binding: Callable[[], str],
        route_prefix: str,
        function_key: str | None,
        system_key: str,
        host_id: str,
        version: str,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self._index = index
        self._invoker = invoker
        self._durable_api = durable_api
        self._client_binding = client_binding
        self._prefix_segments = [s.lower() for s in route_prefix.strip("/").split("/") if s]
        self._function_key = function_key
        self._system_key = system_key
        self._max_request_bytes = max_request_bytes
        self._host_id = host_id
        self._version = version
        self._started = time.monotonic()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._max_request_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Refused before anything runs: by its Content-Length, or (chunked) when reading it
        # crosses the limit. aiohttp's own error for the latter reached the catch-all as a 500.
        if (request.content_length or 0) > self._max_request_bytes:
            return self._too_large()
        try:
            return await self._route(request)
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()

    def _too_large(self) -> web.Response:
        limit = self._max_request_bytes
        body = {
            "type": "about:blank",
            "title": "Payload Too Large",
            "status": 413,
            "detail": f"the request body is over the host's limit of {limit} bytes",
        }
        return web.Response(status=413, text=json.dumps(body), content_type=PROBLEM_MEDIA_TYPE)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if raw_path == STATUS_PATH:
            return self._host_status()
        for management_path in (RPC_PATH, WEBHOOK_PATH):
            if raw_path.startswith(management_path):
                return await self._management_request(request, raw_path[len(management_path) :])
        return await self._function_request(request, split_segments(raw_path.lstrip("/")))

    async def _management_request(self, request: web.Request, rest: str) -> web.Response:
        # The API lists, changes and starts every instance of every caller: never open, whatever
        # the function key, and never with a function key (Azure keeps the two apart too).
        if not _same_key(_supplied_system_key(request), self._system_key):
            return web.Response(status=401)
        return await self._durable_api.handle(request, split_segments(rest))

    def _host_status(self) -> web.Response:
        uptime_ms = int((time.monotonic() - self._started) * 1000)
        body = {
            "id": self._host_id,
            "state": "Running",
            "version": self._version,
            "versionDetails": f"local_host {self._version}",
            "processUptime": uptime_ms,
        }
        return _json_response(200, body)

    def _authorized(self, request: web.Request, auth_level: str) -> bool:
        if self._function_key is None or auth_level == ANONYMOUS:
            return True
        supplied = request.headers.get("x-functions-key") or request.query.get("code") or ""
        return _same_key(supplied, self._function_key)

    def _match(self, segments: list[str], method: str) -> tuple[HttpRoute, dict[str, str]] | None:
        prefix = self._prefix_segments
        if [s.lower() for s in segments[: len(prefix)]] != prefix:
            return None
        path = "/" + "/".join(segments[len(prefix) :])
        for route in self._index.http_routes:
            values = route.template.match(path)
            if values is not None and route.allows(method):
                return route, values
        return None

    async def _function_request(
        self, request: web.Request, segments: list[str]
    ) -> web.StreamResponse:
        found = self._match(segments, request.method)
        if found is None:
            return _json_response(404, {"error": "Not Found"})
        route, route_values = found
        if not self._authorized(request, route.auth_level):
            return web.Response(status=401)
        try:
            arguments = await self._arguments(request, route, route_values)
            result = await self._invoker.invoke(route.function, arguments)
            if _is_streaming(result):
                return await _stream(request, result)
            return _http_response(route, result)
        except web.HTTPRequestEntityTooLarge:
            raise  # the caller's fault, answered 413 by _handle
        except Exception:
            logger.exception("Function '%s' failed", route.function.name)
            return _json_response(500, {"error": "Internal Server Error"})

    async def _arguments(
        self, request: web.Request, route: HttpRoute, route_values: dict[str, str]
    ) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for binding in route.function.input_bindings():
            kind, name = binding["type"], binding["name"]
            if kind == HTTP_TRIGGER:
                datum = await _request_datum(request, route_values)
            elif kind == DURABLE_CLIENT:
                datum = meta.Datum(type="string", value=self._client_binding())
            else:
                raise RuntimeError(
                    f"input binding type '{kind}' is not supported by the local host"
                )
            arguments[name] = payloads.converter(kind).decode(datum, trigger_metadata=None)
        return arguments


def _same_key(supplied: str, expected: str) -> bool:
    return hmac.compare_digest(supplied.encode(), expected.encode())


def _supplied_system_key(request: web.Request) -> str:
    supplied = request.headers.get("x-functions-key") or request.query.get("code")
    if supplied:
        return supplied
    try:
        basic = BasicAuth.decode(request.headers.get("Authorization", ""))
    except ValueError:  # absent, not Basic, or malformed
        return ""
    return str(basic.password)  # a namedtuple field, untyped


async def _request_datum(request: web.Request, route_values: dict[str, str]) -> meta.Datum:
    """The `http` trigger payload the host sends to the worker."""
    body = await request.read()
    return meta.Datum(
        type="http",
        value={
            "method": meta.Datum(type="string", value=request.method),
            "url": meta.Datum(type="string", value=str(request.url)),
            "headers": _string_data(_joined(request.headers.items(), lower_keys=True)),
            "query": _string_data(_joined(request.query.items(), lower_keys=False)),
            "params": _string_data(route_values),
            "body": meta.Datum(type="bytes", value=body),
        },
    )


def _joined(items: Iterable[tuple[str, str]], *, lower_keys: bool) -> dict[str, str]:
    """Repeated headers/query keys arrive comma-joined, as ASP.NET Core presents them."""
    values: dict[str, list[str]] = {}
    for key, value in items:
        values.setdefault(key.lower() if lower_keys else key, []).append(value)
    return {key: ",".join(parts) for key, parts in values.items()}


def _string_data(values: dict[str, str]) -> dict[str, meta.Datum]:
    return {key: meta.Datum(type="string", value=value) for key, value in values.items()}


def _is_streaming(result: Any) -> bool:
    """A streaming response, as the worker takes them in its HTTP v2 mode (a starlette
    `StreamingResponse`: status, headers and an async iterator of body chunks)."""
    return hasattr(result, "body_iterator") and hasattr(result, "status_code")


async def _stream(request: web.Request, result: Any) -> web.StreamResponse:
    """Send each chunk as the function yields it. A client that goes away ends the stream:
    the body's iterator is closed, so the function's generator cleans up."""
    response = web.StreamResponse(status=int(result.status_code))
    for name, value in result.headers.items():
        if name.lower() not in _HOP_BY_HOP:
            response.headers.add(name, value)
    body = result.body_iterator
    try:
        await response.prepare(request)
        async for chunk in body:
            await response.write(chunk if isinstance(chunk, bytes) else str(chunk).encode())
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        logger.debug("the client left a streaming response")
    finally:
        closing = getattr(body, "aclose", None)
        if closing is not None:
            await closing()
    return response


def _http_response(route: HttpRoute, result: Any) -> web.Response:
    if result is None:
        return web.Response(status=204)
    has_http_output = any(b.get("type") == HTTP_OUTPUT for b in route.function.bindings)
    if not has_http_output:
        raise RuntimeError(f"function '{route.function.name}' has no http output binding")
    datum = payloads.converter(HTTP_OUTPUT).encode(result, expected_type=None)
    if datum.type == "string":
        return web.Response(
            status=200, text=datum.value, content_type="text/plain", charset="utf-8"
        )
    value = datum.value
    response = web.Response(status=int(value["status_code"].value), body=value["body"].value)
    for name, header in value["headers"].items():
        if name.lower() not in _HOP_BY_HOP:
            response.headers.add(name, header.value)
    for cookie in value.get("cookies") or []:
        for morsel in cookie.values():
            response.headers.add("Set-Cookie", morsel.OutputString())
    return response
