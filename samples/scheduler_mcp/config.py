"""The Scheduler's settings: checked once at startup; a bad one names itself."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samples.scheduler_mcp.errors import InvalidRequest, SettingsError
from samples.scheduler_mcp.signing import decode_secret
from samples.scheduler_mcp.validation import parse_endpoint

CLIENT_ID_SETTING = "SCHEDULER_CLIENT_ID"
API_KEY_SETTING = "SCHEDULER_API_KEY"
WEBHOOK_SECRET_SETTING = "SCHEDULER_WEBHOOK_SECRET"
# Space- or comma-separated callback URLs; when set, the only endpoints schedules may name.
ALLOWED_ENDPOINTS_SETTING = "SCHEDULER_ALLOWED_ENDPOINTS"
MAX_BATCH_SIZE = 1000  # what the app's callback accepts in one body


@dataclass(frozen=True)
class SchedulerConfig:
    # Secrets are left out of repr so a logged or printed config shows none of them.
    client_id: str = field(repr=False)
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    state_path: Path
    host: str = "127.0.0.1"
    port: int = 5146
    batch_size: int = 50
    tick_seconds: float | None = 0.5  # None: no background ticking (tests call run_once)
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
    request_timeout_seconds: float = 10.0
    max_concurrent_deliveries: int = 8
    # Empty: any http(s) endpoint. Deployed next to one app, only its callback URL, so a leaked
    # API key cannot make the Scheduler post to other hosts.
    allowed_endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.client_id:
            raise SettingsError(CLIENT_ID_SETTING, "is required (or --client-id)")
        if not self.api_key:
            raise SettingsError(API_KEY_SETTING, "is required (or --api-key)")
        if not self.webhook_secret:
            raise SettingsError(WEBHOOK_SECRET_SETTING, "is required: whsec_<base64>")
        decode_secret(self.webhook_secret)  # raises SettingsError naming the setting
        _at_least("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _at_least("max_attempts", self.max_attempts, 1)
        _at_least("max_concurrent_deliveries", self.max_concurrent_deliveries, 1)
        for name in ("backoff_base_seconds", "backoff_cap_seconds", "request_timeout_seconds"):
            _positive(name, getattr(self, name))
        if self.tick_seconds is not None:
            _positive("tick_seconds", self.tick_seconds)
        for endpoint in self.allowed_endpoints:
            _endpoint(endpoint)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], state_path: Path, **options: object
    ) -> SchedulerConfig:
        """Secrets from the environment unless given in `options` (e.g. from CLI flags)."""
        secrets = {
            "client_id": environ.get(CLIENT_ID_SETTING, ""),
            "api_key": environ.get(API_KEY_SETTING, ""),
            "webhook_secret": environ.get(WEBHOOK_SECRET_SETTING, ""),
        }
        allowed = environ.get(ALLOWED_ENDPOINTS_SETTING, "").replace(",", " ").split()
        given = {name: value for name, value in options.items() if value is not None}
        # Any: the values come typed by argparse or the environment; __post_init__ checks them.
        fields: dict[str, Any] = {"allowed_endpoints": tuple(allowed), **secrets, **given}
        return cls(state_path=state_path, **fields)


def _at_least(name: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingsError(name, f"must be {bound}, got {value}")


def _endpoint(endpoint: str) -> None:
    try:
        parse_endpoint(endpoint)
    except InvalidRequest as exc:
        raise SettingsError(ALLOWED_ENDPOINTS_SETTING, str(exc)) from None


def _positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(name, f"must be a positive number of seconds, got {value}")
