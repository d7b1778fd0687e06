"""JSON from outside (request bodies, webhook bodies), parsed strictly: what is accepted here
can be stored and echoed back without surprises further down."""

from __future__ import annotations

import json
from typing import Any

from agent.errors import BadRequest


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json_object(raw: bytes, what: str = "the request body") -> dict[str, Any]:
    """A JSON object, or BadRequest saying what is wrong with it.

    Refused besides malformed JSON: bytes that are not UTF-8 (JSON between systems is UTF-8,
    RFC 8259; `json.loads` would guess UTF-16 or UTF-32 from the first bytes), NaN/Infinity (not
    JSON), nesting deep enough to exhaust the parser, and text with unpaired surrogates
    (`"\\ud800"`), which cannot be stored as UTF-8.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"{what} is not UTF-8 (invalid byte at position {exc.start}); send JSON as UTF-8"
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} contains text that is not valid Unicode") from None
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    return value
