"""Sort what can go wrong talking to an MCP server, and describe it without leaking anything.

The SDK reports a broken transport in several shapes: an `MCPError` it synthesised
(`CONNECTION_CLOSED`, "Session terminated" after a server restart, "Server returned an error
response" for a bare HTTP error), an `httpx2` error, an OS error, each possibly wrapped in
exception groups by anyio task groups. Descriptions name the server and the error class or
HTTP status only: never the exception text, which may carry a URL with a query string.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import anyio
import httpx2
import pydantic
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT


class FailureKind(Enum):
    AUTH = "auth_error"  # the server rejected our credentials (HTTP 401/403)
    TIMEOUT = "timeout"
    TRANSPORT = "transport_error"  # unreachable, connection dropped, session lost
    SERVER_ERROR = "server_error"  # the server answered, but with a protocol-level error

    @property
    def breaks_session(self) -> bool:
        return self is not FailureKind.SERVER_ERROR


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    cause: str  # an error class name or "HTTP 401": safe to log and return
    server_message: str | None = None  # SERVER_ERROR only: the server's own words, for the model


# Messages the SDK's HTTP transports put on the errors they synthesise for transport problems.
_TRANSPORT_MESSAGES = ("Server returned an error response", "Session terminated", "Not Found")
_TRANSPORT_PREFIXES = (
    "SSE stream failed",
    "Redirect to",
    "server answered a request with 202",
    "Unexpected content type",
    "Failed to parse",
)
_PRIORITY = (FailureKind.AUTH, FailureKind.TIMEOUT, FailureKind.TRANSPORT, FailureKind.SERVER_ERROR)
AUTH_STATUSES = (401, 403)


class UnusableResult(Exception):
    """The server answered, but the SDK refused the result (e.g. it breaks the output schema)."""

    def __init__(self, complaint: str) -> None:
        super().__init__(complaint)
        self.complaint = complaint


def unusable_result(exc: RuntimeError) -> Exception:
    """Sort a RuntimeError from `Client.call_tool`: a refused result, or a session already closed."""
    message = str(exc)
    if "structured content" in message or "schema" in message:
        return UnusableResult("its result does not match the tool's declared output schema")
    if "InputRequiredResult" in message:
        return UnusableResult("it asked for client input, which this app cannot give")
    return exc


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def _is_synthesised_transport_error(error: MCPError) -> bool:
    message = error.error.message
    return message in _TRANSPORT_MESSAGES or message.startswith(_TRANSPORT_PREFIXES)


def _classify_leaf(exc: BaseException, http_status: int | None) -> Failure | None:
    if isinstance(exc, httpx2.HTTPStatusError):
        status = exc.response.status_code
        kind = FailureKind.AUTH if status in AUTH_STATUSES else FailureKind.TRANSPORT
        return Failure(kind, f"HTTP {status}")
    if isinstance(exc, MCPError):
        if exc.code == REQUEST_TIMEOUT:
            return Failure(FailureKind.TIMEOUT, "request timed out")
        if exc.code == CONNECTION_CLOSED:
            return Failure(FailureKind.TRANSPORT, "connection closed")
        if _is_synthesised_transport_error(exc):
            if http_status in AUTH_STATUSES:
                return Failure(FailureKind.AUTH, f"HTTP {http_status}")
            cause = f"HTTP {http_status}" if http_status else "HTTP error"
            return Failure(FailureKind.TRANSPORT, cause)
        return Failure(FailureKind.SERVER_ERROR, f"MCP error {exc.code}", exc.error.message)
    if isinstance(exc, TimeoutError):
        return Failure(FailureKind.TIMEOUT, "timed out")
    if isinstance(
        exc,
        httpx2.HTTPError
        | OSError
        | anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | anyio.EndOfStream,
    ):
        return Failure(FailureKind.TRANSPORT, type(exc).__name__)
    if isinstance(exc, UnusableResult):
        return Failure(FailureKind.SERVER_ERROR, "unusable result", exc.complaint)
    if isinstance(exc, RuntimeError) and "async context manager" in str(exc):
        return Failure(FailureKind.TRANSPORT, "session closed")  # the session ended under us
    if isinstance(exc, pydantic.ValidationError):
        return Failure(
            FailureKind.SERVER_ERROR, "malformed result", "the server sent a malformed result"
        )
    return None


def classify(exc: BaseException, http_status: int | None = None) -> Failure | None:
    """What kind of failure this is; None for anything unexpected (a bug: let it propagate).

    `http_status` is the last HTTP error status the connection saw, which tells a rejected
    credential apart from other bare HTTP errors that the SDK reports identically.
    """
    found = [
        f for f in (_classify_leaf(leaf, http_status) for leaf in leaves(exc)) if f is not None
    ]
    if not found:
        return None
    return min(found, key=lambda failure: _PRIORITY.index(failure.kind))
