"""HTTP response streaming on Azure Functions (Python): opt-in, because it changes every route.

The Python worker streams responses only in its "HTTP v2" mode, which the
`azurefunctions-extensions-http-fastapi` package turns on when it is imported while the app is
indexed (with the app setting `PYTHON_ENABLE_INIT_INDEXING=1`). In that mode the worker hands
*every* HTTP function a FastAPI (starlette) `Request` instead of `func.HttpRequest`, and sends
whatever it returns as a starlette `Response`. So:

- `AGENT_HTTP_STREAMING=true` makes `function_app.py` import the extension (`enable_worker`),
  and `adapt(app)` wraps each HTTP function: a starlette request becomes the `func.HttpRequest`
  our handlers take, and their `func.HttpResponse` becomes a starlette response; a handler that
  returns a starlette response (the run event stream) is passed through.
- Off (the default), nothing of FastAPI is imported: importing it costs the worker's cold start
  about a second here, and `GET /api/runs/{id}/events` answers in buffered SSE (and `?wait=`
  JSON), which clients follow by reconnecting with Last-Event-ID.

The local host streams a starlette streaming response whatever the mode (local_host.http_server),
so the same handler code streams there.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import azure.functions as func

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

SETTING = "AGENT_HTTP_STREAMING"
HTTP_TRIGGER = "httpTrigger"
_TRUE = {"1", "true", "yes", "on"}


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the app streams HTTP responses (read at startup, like every app setting)."""
    value = (os.environ if environ is None else environ).get(SETTING, "")
    return value.strip().lower() in _TRUE


def enable_worker() -> bool:
    """At import of function_app.py: turn the worker's HTTP v2 mode on when streaming is
    enabled (the import itself registers it). Returns whether it did."""
    if not enabled():
        return False
    import azurefunctions.extensions.http.fastapi  # noqa: F401  (registers HTTP v2)

    return True


def streaming_response(
    body: AsyncIterator[bytes], media_type: str, headers: Mapping[str, str]
) -> Response:
    from starlette.responses import StreamingResponse

    return StreamingResponse(body, media_type=media_type, headers=dict(headers))


def adapt(app: Any) -> None:
    """Wrap every HTTP function of `app` to take and give starlette objects (see the module
    docstring). A no-op unless streaming is enabled."""
    if not enabled():
        return
    # Through the builders: `get_functions()` may run only once (the worker's indexing; a
    # second call fails on "duplicate" names), and each builder holds the Function it builds.
    # `is_http_function()` is only known after the build: look at the trigger itself.
    for builder in app._function_builders:
        function = builder._function
        trigger = function.get_trigger()
        if trigger is not None and trigger.get_binding_name() == HTTP_TRIGGER:
            function._func = converting(function.get_user_function())


Handler = Callable[..., Awaitable[Any]]


def converting(handler: Handler) -> Handler:
    """`handler` (taking `func.HttpRequest`, giving `func.HttpResponse`) for the worker's HTTP
    v2 mode. The signature stays the handler's (the worker binds arguments by name)."""

    @functools.wraps(handler)
    async def handle(**arguments: Any) -> Any:
        started = {name: value for name, value in arguments.items() if _is_starlette(value)}
        if not started:
            return await handler(**arguments)  # func.HttpRequest (the local host): as is
        for name, request in started.items():
            arguments[name] = await functions_request(request)
        return to_starlette(await handler(**arguments))

    handle.http_v2_adapter = True  # type: ignore[attr-defined]  # (tests tell it apart)
    return handle


def _is_starlette(value: Any) -> bool:
    try:
        from starlette.requests import Request
    except ImportError:  # streaming not installed: nothing can be a starlette request
        return False
    return isinstance(value, Request)


async def functions_request(request: Request) -> func.HttpRequest:
    return func.HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=dict(request.headers),
        params=dict(request.query_params),
        route_params={name: str(value) for name, value in request.path_params.items()},
        body=await request.body(),
    )


def to_starlette(result: Any) -> Any:
    """A handler's `func.HttpResponse` as a starlette response; anything else as it is."""
    if not isinstance(result, func.HttpResponse):
        return result
    from starlette.responses import Response

    headers = dict(result.headers)
    media_type = None if any(k.lower() == "content-type" for k in headers) else result.mimetype
    return Response(
        content=result.get_body(),
        status_code=result.status_code,
        headers=headers,
        media_type=media_type,
    )
