"""Continuation tokens of a paged listing: the store's own position (a Blob listing marker),
wrapped so that a caller cannot tell or edit it, and bound to the caller it was given to.

    token = base64url(JSON {"v": 1, "m": marker}) "." base64url(sha256(owner key, payload)[:12])

Without a server secret the checksum is tamper-evident, not forgery-proof: someone who knows the
scheme can build a token for their own listing. That is harmless: a position only ever reads
inside the caller's own prefix, and the store refuses a marker the service does not take. What
the checksum buys is a clear 400 for a token that was edited, cut short, or is another caller's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

from agent.errors import BadRequest
from storage.paths import owner_key

MAX_TOKEN_CHARS = 512  # an Azure listing marker makes about 400 (a blob name of 130 chars)
TOKEN_PATTERN = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}"
_TOKEN = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{16})")  # TOKEN_PATTERN, in groups
_VERSION = 1
INVALID = (
    "'continuation' is not a token this listing gave you (edited, cut short, or another "
    "caller's); list again without it"
)


def encode(owner: str, position: str) -> str:
    payload = _b64(json.dumps({"v": _VERSION, "m": position}, separators=(",", ":")).encode())
    return f"{payload}.{_checksum(owner, payload)}"


def decode(owner: str, token: str) -> str:
    """The position inside `token`, or BadRequest when it is not one we gave `owner`."""
    match = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
    if match is None or match.group(2) != _checksum(owner, match.group(1)):
        raise BadRequest(INVALID)
    try:
        document = json.loads(base64.urlsafe_b64decode(_padded(match.group(1))))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(INVALID) from None
    if not isinstance(document, dict) or document.get("v") != _VERSION:
        raise BadRequest(INVALID)
    position = document.get("m")
    if not isinstance(position, str) or not position:
        raise BadRequest(INVALID)
    return position


def _checksum(owner: str, payload: str) -> str:
    digest = hashlib.sha256(f"{owner_key(owner)}|{payload}".encode()).digest()
    return _b64(digest[:12])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)
