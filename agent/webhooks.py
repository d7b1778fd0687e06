"""Standard Webhooks (https://www.standardwebhooks.com) for the Scheduler's callback.

`verify` checks a delivery (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers) before
the app stores or starts anything, with the key `decode_secret` took out of the setting once (in
`agent.settings`); `parse_callback` turns a verified body into a `CallbackBatch`. The app never
signs: the Scheduler does, with the reference `standardwebhooks` library.

Stdlib (and the app's own light modules) only: this runs in the Functions worker, where every
import is paid on a cold start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import BadRequest, SettingsError, Unauthorized
from agent.json_input import parse_json_object
from storage.models import PLAIN_ID

SECRET_SETTING = "SCHEDULER_WEBHOOK_SECRET"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
CALLBACK_TYPE = "conversations.due"
MAX_ITEMS = 1000
MAX_CONTENT_CHARS = 32_000
MAX_SCHEDULE_ID_CHARS = 128
MAX_SCHEDULED_TIME_CHARS = 64
# Enough for a rotation or two; bounds the HMAC work an unauthenticated caller can ask for.
MAX_SIGNATURES = 16
# The app uses the webhook id as a Durable instance id, which must not hold / \ # ? or controls.
WEBHOOK_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,15}")


# --- signatures -----------------------------------------------------------------------------


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside `whsec_<base64>`; a malformed secret is the operator's to fix."""
    if not secret.startswith(SECRET_PREFIX):
        raise SettingsError(SECRET_SETTING, f"must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Secrets are often written without padding; extra "=" is ignored by the decoder.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(SECRET_SETTING, "is not valid base64 after 'whsec_'") from None
    if len(key) < 16:
        raise SettingsError(SECRET_SETTING, "key is shorter than 16 bytes")
    return key


def _signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(key, message, hashlib.sha256).digest()


def _header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive lookup (plain dicts are case-sensitive; HTTP headers are not)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None or not value.strip():
        raise Unauthorized(f"missing {name} header")
    return value.strip()


def _offered_signatures(header: str) -> list[bytes]:
    """The decodable `v1` signatures in the header; other versions and junk are skipped."""
    offered: list[bytes] = []
    for entry in header.split()[:MAX_SIGNATURES]:
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return offered


def verify(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """Check a delivery and return its `webhook-id` (the idempotency key); else `Unauthorized`.

    `key` is the decoded secret (`decode_secret`). Any one valid signature passes, so the sender
    can rotate keys by sending old and new.
    """
    webhook_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signature_header = _header(headers, "webhook-signature")
    if not WEBHOOK_ID_PATTERN.fullmatch(webhook_id):
        raise Unauthorized("malformed webhook-id header")
    if not TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise Unauthorized("malformed webhook-timestamp header (expected Unix seconds)")
    # Checked before the signature so an old, validly signed delivery cannot be replayed.
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise Unauthorized(
            f"webhook-timestamp too old or too new (more than {tolerance_seconds:g} s from now)"
        )
    expected = _signature(key, webhook_id, timestamp, body)
    if not any(
        hmac.compare_digest(expected, offered) for offered in _offered_signatures(signature_header)
    ):
        raise Unauthorized("no valid signature in the webhook-signature header")
    return webhook_id


# --- the callback body ----------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackItem:
    schedule_id: str | None
    conversation_id: str
    content: str = field(repr=False)  # conversation text: kept out of logged reprs
    scheduled_time: str | None


@dataclass(frozen=True)
class CallbackBatch:
    items: tuple[CallbackItem, ...]


def _optional_text(value: Any, where: str, max_chars: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise BadRequest(f"{where} must be a string of 1 to {max_chars} characters, or null")
    return value


def _conversation_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not PLAIN_ID.fullmatch(value):
        raise BadRequest(f"{where} must match ^[A-Za-z0-9_-]{{1,64}}$")
    return value


def _content(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_CONTENT_CHARS:
        raise BadRequest(
            f"{where} must be a non-empty string of at most {MAX_CONTENT_CHARS} characters"
        )
    return value


def _item(value: Any, where: str) -> CallbackItem:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object")
    return CallbackItem(
        schedule_id=_optional_text(
            value.get("schedule_id"), f"{where}.schedule_id", MAX_SCHEDULE_ID_CHARS
        ),
        conversation_id=_conversation_id(value.get("conversation_id"), f"{where}.conversation_id"),
        content=_content(value.get("content"), f"{where}.content"),
        scheduled_time=_optional_text(
            value.get("scheduled_time"), f"{where}.scheduled_time", MAX_SCHEDULED_TIME_CHARS
        ),
    )


def _batch_form(document: dict[str, Any]) -> CallbackBatch:
    if document["type"] != CALLBACK_TYPE:
        raise BadRequest(f"type must be {CALLBACK_TYPE!r}")
    items = document.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ITEMS:
        raise BadRequest(f"items must be a non-empty list of at most {MAX_ITEMS} objects")
    return CallbackBatch(tuple(_item(item, f"items[{index}]") for index, item in enumerate(items)))


def _single_form(document: dict[str, Any]) -> CallbackBatch:
    """The seeds' form: `{"conversationId", "status", "content"}` (status is informational)."""
    status = document.get("status")
    if status is not None and not isinstance(status, str):
        raise BadRequest("status must be a string")
    item = CallbackItem(
        schedule_id=None,
        conversation_id=_conversation_id(document["conversationId"], "conversationId"),
        content=_content(document.get("content"), "content"),
        scheduled_time=None,
    )
    return CallbackBatch((item,))


def parse_callback(body: bytes) -> CallbackBatch:
    """The batch a (verified) callback body asks for; `BadRequest` naming the first problem."""
    document = parse_json_object(body, "the callback body")
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object")
    if "type" in document:
        return _batch_form(document)
    if "conversationId" in document:
        return _single_form(document)
    raise BadRequest(
        f'body must be {{"type": "{CALLBACK_TYPE}", "items": [...]}} '
        'or {"conversationId": ..., "status": ..., "content": ...}'
    )


def parse_seed_callback(document: dict[str, Any]) -> CallbackItem:
    """The seeds' `{"conversationId", "status", "content"}` (a parsed JSON object), as an
    unsigned sender (the function-key route) posts it: the single form only; `status` is
    informational."""
    if "conversationId" not in document:
        raise BadRequest(
            '\'conversationId\' is required: send {"conversationId": ..., "status": ..., '
            '"content": ...}'
        )
    return _single_form(document).items[0]
