"""What every handler of the HTTP API uses: problem responses, the `api` decorator (errors to
problems, the runtime injected), JSON bodies, ids and our own URLs."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import azure.functions as func

from agent.errors import BadRequest, CallerError, InvalidSettings, OperatorError, PayloadTooLarge
from agent.http.callers import caller_of
from agent.json_input import parse_json_object
from agent.runtime import Runtime, runtime
from storage.errors import (
    AlreadyExists,
    InvalidKey,
    InvalidQuery,
    RecordNotFound,
    RecordTooLarge,
    StorageError,
    StorageNotConfigured,
    StoreContention,
    TurnInProgress,
)
from storage.models import PLAIN_ID

if TYPE_CHECKING:
    from agent.http.models import Body

log = logging.getLogger("agent.http")

API_PREFIX = "/api"  # host.json: extensions.http.routePrefix
PROBLEM_MEDIA_TYPE = "application/problem+json"
P = ParamSpec("P")
B = TypeVar("B", bound="Body")
Handler = Callable[..., Awaitable[func.HttpResponse]]


# --- responses ---------------------------------------------------------------------------------


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def problem(status: int, title: str, detail: str, **extra: Any) -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=PROBLEM_MEDIA_TYPE)


def misconfigured(exc: InvalidSettings) -> func.HttpResponse:
    """Degraded mode's answer on every route: each bad setting named, never a value."""
    detail = f"the app is misconfigured; fix these app settings and restart it: {exc}"
    return problem(503, "Service Unavailable", detail, invalid_settings=list(exc.names))


# What each storage error means to an HTTP caller. The store's messages carry ids only, never
# content or values, so they are the detail as they are.
STORAGE_STATUS: dict[type[StorageError], tuple[int, str]] = {
    InvalidKey: (400, "Bad Request"),
    InvalidQuery: (400, "Bad Request"),
    RecordNotFound: (404, "Not Found"),
    AlreadyExists: (409, "Conflict"),
    TurnInProgress: (409, "Conflict"),
    RecordTooLarge: (413, "Payload Too Large"),
    StorageNotConfigured: (503, "Service Unavailable"),
    StoreContention: (503, "Service Unavailable"),  # busy, not broken: the caller retries
}
# How long a caller should wait after the store was too busy (StoreContention).
CONTENTION_RETRY_AFTER_SECONDS = 1


def storage_problem(exc: StorageError, where: str) -> func.HttpResponse:
    """The one place a storage error becomes a response: a caller's mistake is its 4xx, a
    misconfigured store a 503 naming the setting, a store too busy to take a write (contention)
    a 503 with `Retry-After`, anything else a bare 500."""
    status_title = next(
        (pair for kind, pair in STORAGE_STATUS.items() if isinstance(exc, kind)), None
    )
    if status_title is None:
        log.error("unhandled error in %s", where, exc_info=exc)
        return problem(500, "Internal Server Error", "the server failed; try again later")
    status, title = status_title
    if isinstance(exc, StorageNotConfigured):
        log.error("configuration error in %s: %s", where, exc)
    if isinstance(exc, StoreContention):
        log.warning("store contention in %s: %s", where, exc)
        response = problem(status, title, f"{exc}; the store is busy, retry shortly")
        response.headers["Retry-After"] = str(CONTENTION_RETRY_AFTER_SECONDS)
        return response
    return problem(status, title, str(exc))


def error_response(exc: Exception, where: str) -> func.HttpResponse:
    """The one mapping of an exception to its problem: the caller's 4xx, a storage error's
    (`storage_problem`), the operator's 503, anything unexpected a bare 500 (logged, never
    shown)."""
    if isinstance(exc, CallerError):
        return problem(exc.status, exc.title, exc.detail)
    if isinstance(exc, StorageError):
        return storage_problem(exc, where)
    if isinstance(exc, InvalidSettings):  # degraded mode: logged once, at startup
        return misconfigured(exc)
    if isinstance(exc, OperatorError):  # misconfigured: the message names the setting
        log.error("configuration error in %s: %s", where, exc)
        return problem(503, "Service Unavailable", str(exc))
    log.error("unhandled error in %s", where, exc_info=exc)
    return problem(500, "Internal Server Error", "the server failed; try again later")


# --- the call ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request with the process's runtime: what a handler works from."""

    req: func.HttpRequest
    rt: Runtime

    def owner(self) -> str:
        """Who is calling (401 when authentication is required and missing)."""
        return caller_of(self.req, self.rt.settings.require_auth)

    def path_id(self, name: str) -> str:
        return checked_id(self.req.route_params.get(name, ""), name)

    def json(
        self, *, optional: bool = False, limit: int | None = None, what: str = "the request body"
    ) -> dict[str, Any]:
        return json_body(self.req, self.rt, optional=optional, limit=limit, what=what)

    def body(
        self,
        model: type[B],
        *,
        optional: bool = False,
        limit: int | None = None,
        what: str = "the request body",
    ) -> B:
        """The JSON body as a `model` (validated with this deployment's limits)."""
        from agent.http.models import validated  # pydantic: loaded by the first request

        document = self.json(optional=optional, limit=limit, what=what)
        return validated(model, document, limits=self.rt.settings.limits)

    def url(self, path: str) -> str:
        return own_url(self.rt, path)


def api(
    handler: Callable[Concatenate[Call, P], Awaitable[func.HttpResponse]],
) -> Callable[Concatenate[func.HttpRequest, P], Awaitable[func.HttpResponse]]:
    """A route's handler: called with a `Call` (the runtime resolved), its errors answered as
    problems (see `error_response`)."""

    @functools.wraps(handler)
    async def wrapper(
        req: func.HttpRequest, /, *args: P.args, **kwargs: P.kwargs
    ) -> func.HttpResponse:
        try:
            return await handler(Call(req, await runtime()), *args, **kwargs)
        except Exception as exc:
            return error_response(exc, handler.__name__)

    return wrapper


# --- request parsing ---------------------------------------------------------------------------


def json_body(
    req: func.HttpRequest,
    rt: Runtime,
    *,
    optional: bool = False,
    limit: int | None = None,
    what: str = "the request body",
) -> dict[str, Any]:
    """The JSON object sent, within `limit` bytes (the app's body limit unless a route has
    its own); an empty body is `{}` when `optional`."""
    raw = req.get_body() or b""
    limit = rt.settings.limits.max_body_bytes if limit is None else limit
    if len(raw) > limit:
        raise PayloadTooLarge(f"{what} is {len(raw)} bytes; the limit is {limit}")
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest(f"{what} is empty; send a JSON object")
    return parse_json_object(raw, what)


def checked_id(value: object, name: str) -> str:
    """An id from a path or body: 1-64 plain characters (it becomes part of blob names)."""
    if not isinstance(value, str) or not PLAIN_ID.fullmatch(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits, '-' or '_'")
    return value


def own_url(rt: Runtime, path: str) -> str:
    """A URL of ours: absolute from PUBLIC_BASE_URL, else relative. Never from the request's
    URL, whose host part is the caller's `Host` header (a link to any site the caller names)."""
    base = rt.settings.public_base_url
    return f"{base.rstrip('/')}{path}" if base else path
