"""The app's one exception tree, split by who must act.

    AgentError
    ├── CallerError          the HTTP caller sent something wrong → a 4xx problem+json
    │   ├── BadRequest       400: malformed JSON, missing/invalid field
    │   ├── NotFound         404: unknown (or someone else's) conversation, run or batch
    │   ├── Conflict         409: a turn is already running
    │   ├── PayloadTooLarge  413: body or message over the limit
    │   └── Unauthorized     401: missing/invalid credentials or webhook signature
    ├── OperatorError        the deployment is wrong; fail fast and name the setting
    │   └── SettingsError    a missing or malformed setting
    │       └── InvalidSettings  every bad setting found at startup: the app runs degraded (503)
    ├── ModelError           Azure OpenAI / OpenAI-compatible endpoint failed
    │   ├── TransientModelError  429, 5xx, timeout, connection: retried (agent.backoff)
    │   ├── ContentFiltered      the prompt or completion was filtered: ends the run
    │   └── PermanentModelError  auth / bad request: fails the run, never retried
    └── ToolError            an MCP tool failed; the *model* acts on it (it sees an is_error result)
        ├── ToolTransportError   connection/protocol failure talking to the server (transient)
        └── ToolTimeout          the call exceeded the server's timeout_seconds

The store has its own tree (`storage.errors`: what happened to a record, no HTTP status); the
HTTP edge maps it (`agent.http.kit.storage_problem`), so `storage` never imports `agent`.

Messages never carry secrets or conversation content: they are safe to log, to return to a
caller (CallerError) and to store in Durable history (activity failures are recorded there).
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error this app raises on purpose."""


# --- the caller must act -------------------------------------------------------------------


class CallerError(AgentError):
    status: int = 400
    title: str = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(CallerError):
    status, title = 400, "Bad Request"


class Unauthorized(CallerError):
    status, title = 401, "Unauthorized"


class NotFound(CallerError):
    status, title = 404, "Not Found"


class Conflict(CallerError):
    status, title = 409, "Conflict"


class PayloadTooLarge(CallerError):
    status, title = 413, "Payload Too Large"


# --- the operator must act -----------------------------------------------------------------


class OperatorError(AgentError):
    """The deployment is misconfigured."""


class SettingsError(OperatorError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name}: {problem}")
        self.name = name
        self.problem = problem

    @property
    def problems(self) -> tuple[SettingsError, ...]:
        return (self,)


class InvalidSettings(SettingsError):
    """Every missing or malformed setting found when the settings were parsed (names, never
    values). The app still indexes every function; each route answers 503 with this detail."""

    def __init__(self, problems: tuple[SettingsError, ...]) -> None:
        assert problems, "InvalidSettings needs at least one problem"
        OperatorError.__init__(self, "; ".join(str(p) for p in problems))
        self.name = problems[0].name
        self.problem = problems[0].problem
        self._problems = problems

    @property
    def problems(self) -> tuple[SettingsError, ...]:
        return self._problems

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.name for p in self._problems))


# --- the model endpoint failed --------------------------------------------------------------


class ModelError(AgentError):
    pass


class TransientModelError(ModelError):
    """Worth retrying later; `retry_after` (seconds) when the service said how long to wait."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ContentFiltered(ModelError):
    """Azure OpenAI's content filter refused the prompt or the completion."""


class PermanentModelError(ModelError):
    """Authentication or a bad request: retrying cannot help."""


# --- a tool failed (the model is told) -------------------------------------------------------


class ToolError(AgentError):
    pass


class ToolTransportError(ToolError):
    """The server could not be reached, or the connection failed during the call.

    `maybe_sent`: the request may have reached the server (a connection dropped or a session
    lost during the call), so whether it acted is unknown; False only when it certainly never
    left this process (no session could be opened, the server could not be listed)."""

    def __init__(self, message: str, *, maybe_sent: bool = True) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class ToolTimeout(ToolError):
    pass
