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

    Refused besides malformed JSON: NaN/Infinity (not JSON), nesting deep enough to exhaust the
    parser, and text with unpaired surrogates (`"\\ud800"`), which cannot be stored as UTF-8.
    """
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
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
