"""Standard Webhooks signatures on the callbacks, made by the `standardwebhooks` library (the
specification's reference implementation).

The Scheduler is a deployable of its own and imports nothing of the app: the app verifies with
its own code (`agent.webhooks`), so every delivery checks one implementation against the other.
The secret is checked and decoded once, when the Scheduler starts.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from samples.scheduler_mcp.errors import SettingsError

SECRET_SETTING = "SCHEDULER_WEBHOOK_SECRET"
SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 16


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside `whsec_<base64>`, strictly decoded (the library's own decoding skips
    characters that are not base64, so a mistyped secret would sign with another key)."""
    if not secret.startswith(SECRET_PREFIX):
        raise SettingsError(SECRET_SETTING, f"must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Secrets are often written without padding.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(SECRET_SETTING, "is not valid base64 after 'whsec_'") from None
    if len(key) < MIN_KEY_BYTES:
        raise SettingsError(SECRET_SETTING, f"key is shorter than {MIN_KEY_BYTES} bytes")
    return key


class Signer:
    """Signs deliveries with one secret, decoded once."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(decode_secret(secret))

    def __repr__(self) -> str:  # the key stays out of logs
        return "Signer(***)"

    def sign(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
        when = datetime.fromtimestamp(timestamp, UTC)
        return self._webhook.sign(msg_id=webhook_id, timestamp=when, data=body.decode("utf-8"))
