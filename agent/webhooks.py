"""Standard Webhooks (https://www.standardwebhooks.com) for the Scheduler's callback.

`verify` checks a delivery (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers) before
the app stores or starts anything, with the key `decode_secret` took out of the setting once (in
`agent.settings`). The app never signs: the Scheduler does, with the reference `standardwebhooks`
library. The body is read by the route (`agent.http.callbacks.parse_callback`).

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

from agent.errors import SettingsError, Unauthorized

SECRET_SETTING = "SCHEDULER_WEBHOOK_SECRET"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
CALLBACK_TYPE = "conversations.due"
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
