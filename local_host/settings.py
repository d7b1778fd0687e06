"""local.settings.json and host.json, read the way Core Tools reads them.

`Values` become environment variables before the app is imported; a variable that is already
set wins over the file (Core Tools logs "Skipping '<name>' ... already defined"). `Host.LocalHttpPort`
gives the default port. From host.json the host honours `extensions.http.routePrefix`,
`extensions.durableTask.hubName`, `extensions.durableTask.defaultVersion` (with
`versionMatchStrategy` and `versionFailureStrategy`, see `local_host.versioning`) and
`extensions.durableTask.maxConcurrentActivityFunctions`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HostSettingsError
from .versioning import FailureStrategy, MatchStrategy, VersionPolicy

logger = logging.getLogger(__name__)

LOCAL_SETTINGS_FILE = "local.settings.json"
HOST_FILE = "host.json"
DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_HUB_NAME = "TestHubName"  # Core Tools' local default task hub


@dataclass(frozen=True)
class LocalSettings:
    values: dict[str, str]
    local_http_port: int | None


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str
    hub_name: str
    max_concurrent_activities: int | None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)

    @property
    def default_version(self) -> str:
        """The version stamped on new instances (`defaultVersion`)."""
        return self.version_policy.default_version


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: files written by Visual Studio often start with a BOM.
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise HostSettingsError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise HostSettingsError(f"{path}: the top level must be a JSON object")
    return data


def read_local_settings(app_dir: Path) -> LocalSettings:
    """Read local.settings.json (absent file: no values)."""
    path = app_dir / LOCAL_SETTINGS_FILE
    if not path.is_file():
        return LocalSettings(values={}, local_http_port=None)
    data = _read_json_object(path)
    if data.get("IsEncrypted") is True:
        raise HostSettingsError(f"{path}: IsEncrypted=true is not supported; decrypt the file")
    raw_values = data.get("Values") or {}
    if not isinstance(raw_values, dict):
        raise HostSettingsError(f"{path}: 'Values' must be an object")
    values: dict[str, str] = {}
    for name, value in raw_values.items():
        if not isinstance(value, str):
            raise HostSettingsError(f"{path}: Values.{name} must be a string")
        values[name] = value
    host_section = data.get("Host") or {}
    if not isinstance(host_section, dict):
        raise HostSettingsError(f"{path}: 'Host' must be an object")
    return LocalSettings(values=values, local_http_port=_optional_port(path, host_section))


def _optional_port(path: Path, host_section: dict[str, Any]) -> int | None:
    port = host_section.get("LocalHttpPort")
    if port is None:
        return None
    try:
        number = int(port)
    except (TypeError, ValueError) as exc:
        raise HostSettingsError(f"{path}: Host.LocalHttpPort must be a number") from exc
    if not 0 <= number <= 65535:
        raise HostSettingsError(f"{path}: Host.LocalHttpPort out of range")
    return number


def apply_values(values: dict[str, str], environ: MutableMapping[str, str] | None = None) -> None:
    """Export Values as environment variables; variables already set win (names logged, not values)."""
    target = os.environ if environ is None else environ
    for name, value in values.items():
        if name in target:
            logger.info(
                "Skipping '%s' from local.settings.json: already set in the environment", name
            )
            continue
        target[name] = value


def read_host_config(app_dir: Path) -> HostConfig:
    """Read the parts of host.json the local host honours (absent file: defaults)."""
    path = app_dir / HOST_FILE
    data = _read_json_object(path) if path.is_file() else {}
    extensions = _section(path, data, "extensions")
    http = _section(path, extensions, "http")
    durable = _section(path, extensions, "durableTask")
    route_prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
    if not isinstance(route_prefix, str):
        raise HostSettingsError(f"{path}: extensions.http.routePrefix must be a string")
    max_activities = durable.get("maxConcurrentActivityFunctions")
    if max_activities is not None and (not isinstance(max_activities, int) or max_activities < 1):
        raise HostSettingsError(
            f"{path}: extensions.durableTask.maxConcurrentActivityFunctions must be a positive integer"
        )
    default_version = str(durable.get("defaultVersion") or "")
    return HostConfig(
        route_prefix=route_prefix.strip("/"),
        hub_name=str(durable.get("hubName") or DEFAULT_HUB_NAME),
        max_concurrent_activities=max_activities,
        version_policy=_version_policy(path, durable, default_version),
    )


def _version_policy(path: Path, durable: dict[str, Any], default_version: str) -> VersionPolicy:
    match = _strategy(path, durable, "versionMatchStrategy", MatchStrategy)
    failure = _strategy(path, durable, "versionFailureStrategy", FailureStrategy)
    return VersionPolicy(
        default_version,
        MatchStrategy(match or MatchStrategy.CURRENT_OR_OLDER),
        FailureStrategy(failure or FailureStrategy.REJECT),
    )


def _strategy(
    path: Path, durable: dict[str, Any], key: str, kind: type[MatchStrategy] | type[FailureStrategy]
) -> str | None:
    """A strategy name, matched case-insensitively as the extension's enum converter does."""
    raw = durable.get(key)
    if raw is None:
        return None
    by_name = {member.value.lower(): member.value for member in kind}
    if not isinstance(raw, str) or raw.lower() not in by_name:
        allowed = ", ".join(by_name.values())
        raise HostSettingsError(f"{path}: extensions.durableTask.{key} must be one of {allowed}")
    return by_name[raw.lower()]


def _section(path: Path, data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name) or {}
    if not isinstance(section, dict):
        raise HostSettingsError(f"{path}: '{name}' must be an object")
    return section


REQUEST_SIZE_LIMIT_VARIABLE = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"  # the Functions host's setting


def request_size_limit(default: int, environ: MutableMapping[str, str] | None = None) -> int:
    """The request body limit in bytes: FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, as on Azure."""
    raw = (os.environ if environ is None else environ).get(REQUEST_SIZE_LIMIT_VARIABLE)
    if raw is None or not raw.strip():
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise HostSettingsError(
            f"{REQUEST_SIZE_LIMIT_VARIABLE} must be a number of bytes"
        ) from None
    if limit < 1:
        raise HostSettingsError(f"{REQUEST_SIZE_LIMIT_VARIABLE} must be positive")
    return limit
