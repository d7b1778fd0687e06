"""Checks on what a client asks to schedule; each failure says what to send instead.

Limits match what the app's callback accepts (`agent.webhooks.parse_callback`), so nothing the
Scheduler takes can be refused at delivery time.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import SplitResult, urlsplit

from samples.scheduler_mcp.errors import InvalidRequest

MAX_TEXT_CHARS = 32_000
MAX_ENDPOINT_CHARS = 2_048
MAX_IDEMPOTENCY_KEY_CHARS = 255
CONVERSATION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Clocks differ a little between the app and the Scheduler: "now" from the caller must not fail.
PAST_TOLERANCE = timedelta(seconds=30)
MAX_AHEAD = timedelta(days=366)
STATUSES = ("pending", "delivered", "failed", "cancelled")
EXAMPLE_TIME = "2030-01-31T09:00:00+01:00"


@dataclass(frozen=True)
class NewSchedule:
    """A validated request; `fingerprint` identifies it for idempotency-key reuse checks."""

    conversation_id: str
    content: str = field(repr=False)
    endpoint: str = field(repr=False)
    due: datetime  # UTC
    fingerprint: str

    @property
    def scheduled_time(self) -> str:
        return iso_utc(self.due)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def from_epoch(seconds: float) -> str:
    return iso_utc(datetime.fromtimestamp(seconds, tz=UTC))


def parse_scheduled_time(text: str, now: datetime) -> datetime:
    shown = text[:64]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(
            f"scheduled_time {shown!r} is not an ISO 8601 date-time; use e.g. {EXAMPLE_TIME}"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRequest(
            f"scheduled_time {shown!r} has no timezone; add one, e.g. {EXAMPLE_TIME} or ...Z for UTC"
        )
    if moment < now - PAST_TOLERANCE:
        raise InvalidRequest(
            f"scheduled_time {shown!r} is in the past (the Scheduler's clock says {iso_utc(now)})"
        )
    if moment > now + MAX_AHEAD:
        raise InvalidRequest(f"scheduled_time {shown!r} is more than {MAX_AHEAD.days} days ahead")
    return moment.astimezone(UTC)


def parse_endpoint(text: str) -> str:
    endpoint = text.strip()
    if len(endpoint) > MAX_ENDPOINT_CHARS or any(c.isspace() or ord(c) < 32 for c in endpoint):
        raise InvalidRequest(
            f"endpoint must be an http or https URL of at most {MAX_ENDPOINT_CHARS} characters"
        )
    try:
        parts = urlsplit(endpoint)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise InvalidRequest("endpoint is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise InvalidRequest(
            "endpoint must be an http or https URL, e.g. https://example.com/api/scheduler/callback"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("endpoint must not carry credentials (user:password@)")
    return endpoint


def check_allowed(endpoint: str, allowed: tuple[str, ...]) -> None:
    """Refuse an endpoint outside `allowed` (compared without the query, which may carry a key)."""
    if allowed and _without_query(endpoint) not in {_without_query(a) for a in allowed}:
        raise InvalidRequest("endpoint is not one this Scheduler may call back")


def _without_query(endpoint: str) -> tuple[str, str, str]:
    parts = urlsplit(endpoint)
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


def redact_endpoint(endpoint: str) -> str:
    """Scheme, host and path only: a Functions callback URL carries its key in `?code=`."""
    parts = urlsplit(endpoint)
    return SplitResult(parts.scheme, parts.netloc, parts.path, "", "").geturl()


def parse_text(text: str) -> str:
    if not text.strip():
        raise InvalidRequest("conversation_text must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"conversation_text is longer than {MAX_TEXT_CHARS} characters")
    return text


def parse_conversation_id(conversation_id: str | None) -> str:
    if conversation_id is None:
        return uuid.uuid4().hex
    if not CONVERSATION_ID_PATTERN.fullmatch(conversation_id):
        raise InvalidRequest("conversation_id must be 1 to 64 letters, digits, '_' or '-'")
    return conversation_id


def parse_status(status: str | None) -> str | None:
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
    return status


def parse_idempotency_key(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidRequest(
            f"_meta idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        )
    return value


def new_schedule(
    conversation_text: str,
    scheduled_time: str,
    endpoint: str,
    conversation_id: str | None,
    now: datetime,
) -> NewSchedule:
    content = parse_text(conversation_text)
    due = parse_scheduled_time(scheduled_time, now)
    url = parse_endpoint(endpoint)
    # The caller's own conversation_id (or None) is fingerprinted, not the one generated here,
    # so a retry without an id matches the first request.
    fingerprint = hashlib.sha256(
        json.dumps([content, iso_utc(due), url, conversation_id]).encode()
    ).hexdigest()
    return NewSchedule(parse_conversation_id(conversation_id), content, url, due, fingerprint)
