"""Exceptions of the local host, split by who has to act."""

from __future__ import annotations

from collections.abc import Iterable


class LocalHostError(Exception):
    """Base of every error the local host raises on purpose."""


class AppLoadError(LocalHostError):
    """The function app cannot be loaded or indexed (the developer must fix the app)."""


class HostSettingsError(LocalHostError):
    """local.settings.json or host.json is malformed (names the file and the key)."""


class DurableApiError(LocalHostError):
    """A management operation was refused; `status` is the HTTP status the real extension uses."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InstanceNotFound(DurableApiError):
    status = 404


class InstanceGone(DurableApiError):
    """The instance is in a terminal state (Completed, Failed, Terminated)."""

    status = 410


class InstanceAlreadyExists(DurableApiError):
    status = 409


class InstanceNotTerminal(DurableApiError):
    """Only terminal instances may be purged."""

    status = 412


class InvalidInstanceId(DurableApiError):
    """An instance id DurableTask refuses (too long, starts with @, reserved characters)."""

    status = 400


class UnknownFunction(DurableApiError):
    """An orchestrator or activity name that the app does not define."""

    status = 400


def unknown_function_message(name: str, kind: str, known: Iterable[str]) -> str:
    """The extension's words for a call to a function that is not an `kind` function."""
    names = ", ".join(f"'{n}'" for n in known)
    return (
        f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. "
        f"Additional info: the following are the known {kind} functions: {names}."
    )
