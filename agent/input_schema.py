"""MCP's restricted elicitation schema: checking what a server asks for, and an answer against it.

A form-mode elicitation asks for a flat object whose properties are primitives (MCP 2025-06-18 and
later, `PrimitiveSchemaDefinition`):

- `string`, with optional `minLength`, `maxLength` and `format` (`email`, `uri`, `date`, `date-time`);
- `number` / `integer`, with optional `minimum`, `maximum`;
- `boolean`;
- a single choice: `string` with `enum` (or `oneOf` of `{const, title}`);
- a multiple choice: `array` whose `items` carry `enum` (or `anyOf` of `{const, title}`), with
  optional `minItems`, `maxItems`;

and `required` names the properties an answer must have. Anything else (nesting, `$ref`,
combinators at the top) is not a form a person can be shown: the question is refused.

`validate_answer` checks an accepted answer's content before it reaches the server, so a person
learns at once which field is wrong (the HTTP edge answers 400 naming it); the server checks again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, TypeGuard

from agent.errors import BadRequest

PRIMITIVE_TYPES = frozenset({"string", "number", "integer", "boolean", "array"})
STRING_FORMATS = frozenset({"email", "uri", "date", "date-time"})
CHOICE_KEYS = ("enum", "oneOf", "anyOf")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


def schema_problem(schema: object) -> str | None:
    """What makes `schema` not MCP's restricted form (None: it is one)."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return "the requested schema is not an object schema"
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return "the requested schema has no properties"
    for name, prop in properties.items():
        problem = _property_problem(prop)
        if problem is not None:
            return f"property {name!r} {problem}"
    required = schema.get("required", [])
    if not isinstance(required, list) or any(
        not isinstance(name, str) or name not in properties for name in required
    ):
        return "the requested schema's required names a property it does not have"
    return None


def _property_problem(prop: object) -> str | None:
    # The values are checked as well as the keys: an answer is compared with them later, and a
    # bound of the wrong type would fail there (a 500) instead of here (the server's mistake).
    if not isinstance(prop, Mapping):
        return "is not a string, number, integer, boolean or choice"
    kind = prop.get("type")
    if not isinstance(kind, str) or kind not in PRIMITIVE_TYPES:
        return "is not a string, number, integer, boolean or choice"
    if kind == "array":
        return _array_problem(prop)
    if kind != "string" and any(key in prop for key in CHOICE_KEYS):
        return "offers choices, which only a string may"  # MCP: `enum` is for strings only
    if kind == "string":
        return _string_problem(prop)
    if kind in ("number", "integer") and not all(
        _is_number(prop[key]) for key in ("minimum", "maximum") if key in prop
    ):
        return "has a minimum or maximum that is not a number"
    return None


def _string_problem(prop: Mapping[str, Any]) -> str | None:
    form = prop.get("format", "email")
    if not isinstance(form, str) or form not in STRING_FORMATS:
        return "has an unknown string format"
    if not _are_counts(prop, "minLength", "maxLength"):
        return "has a minLength or maxLength that is not a whole number of at least 0"
    if any(key in prop for key in CHOICE_KEYS) and _choices(prop) is None:
        return "has choices that are not strings"
    return None


def _array_problem(prop: Mapping[str, Any]) -> str | None:
    items = prop.get("items")
    if not isinstance(items, Mapping) or items.get("type", "string") != "string":
        return "is an array without choices"
    if not _choices(items):
        return "is an array without choices"
    if not _are_counts(prop, "minItems", "maxItems"):
        return "has a minItems or maxItems that is not a whole number of at least 0"
    return None


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number we can compare: not a bool, not inf/nan (a huge int is fine: `isfinite`
    would overflow converting it to a float)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _are_counts(prop: Mapping[str, Any], *keys: str) -> bool:
    return all(
        isinstance(prop[key], int) and not isinstance(prop[key], bool) and prop[key] >= 0
        for key in keys
        if key in prop
    )


def _choices(prop: object) -> list[str] | None:
    """The strings a choice allows (`enum`, or `oneOf`/`anyOf` of `const`), None if no choice
    (or one whose values are not all strings, which `schema_problem` refuses)."""
    if not isinstance(prop, Mapping):
        return None
    for key in CHOICE_KEYS:
        options = prop.get(key)
        if not isinstance(options, list):
            continue
        if key != "enum":
            if not all(isinstance(option, Mapping) and "const" in option for option in options):
                return None
            options = [option["const"] for option in options]
        return options if all(isinstance(value, str) for value in options) else None
    return None


def validate_answer(schema: Mapping[str, Any], content: object) -> dict[str, Any]:
    """`content` as the server gets it; BadRequest naming the first field that is wrong."""
    if not isinstance(content, Mapping):
        raise BadRequest("content: must be an object (the answer to each field)")
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in content:
        if name not in properties:
            raise BadRequest(f"content.{name}: not a field of this question")
    for name in schema.get("required", []):
        if name not in content:
            raise BadRequest(f"content.{name}: is required")
    return {name: _field(name, properties[name], value) for name, value in content.items()}


def _field(name: str, prop: Mapping[str, Any], value: object) -> Any:
    kind = prop.get("type")
    if kind == "array":
        return _many(name, prop, _choices(prop.get("items")) or [], value)
    choices = _choices(prop)
    if choices is not None:
        if value not in choices:
            raise BadRequest(f"content.{name}: must be one of {', '.join(map(repr, choices))}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise BadRequest(f"content.{name}: must be true or false")
        return value
    if kind in ("number", "integer"):
        return _number(name, prop, value, integer=kind == "integer")
    return _string(name, prop, value)


def _many(name: str, prop: Mapping[str, Any], choices: list[str], value: object) -> list[str]:
    if not isinstance(value, list) or any(item not in choices for item in value):
        raise BadRequest(f"content.{name}: must be a list of {', '.join(map(repr, choices))}")
    _bounded(name, len(value), prop.get("minItems"), prop.get("maxItems"), "choices")
    return value


def _number(name: str, prop: Mapping[str, Any], value: object, *, integer: bool) -> float | int:
    if not _is_number(value):
        raise BadRequest(f"content.{name}: must be a number")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise BadRequest(f"content.{name}: must be a whole number")
        value = int(value)
    minimum, maximum = prop.get("minimum"), prop.get("maximum")
    if minimum is not None and value < minimum:
        raise BadRequest(f"content.{name}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise BadRequest(f"content.{name}: must be at most {maximum}")
    return value


def _string(name: str, prop: Mapping[str, Any], value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"content.{name}: must be a string")
    _bounded(name, len(value), prop.get("minLength"), prop.get("maxLength"), "characters")
    form = prop.get("format")
    if form is not None and not _formatted(form, value):
        raise BadRequest(f"content.{name}: must be a valid {form}")
    return value


def _bounded(name: str, size: int, least: object, most: object, unit: str) -> None:
    if isinstance(least, int) and size < least:
        raise BadRequest(f"content.{name}: must have at least {least} {unit}")
    if isinstance(most, int) and size > most:
        raise BadRequest(f"content.{name}: must have at most {most} {unit}")


def _formatted(form: str, value: str) -> bool:
    if form == "email":
        return _EMAIL.fullmatch(value) is not None
    if form == "uri":
        return _URI.fullmatch(value) is not None
    parse = date.fromisoformat if form == "date" else datetime.fromisoformat
    try:
        parse(value)
    except ValueError:
        return False
    return True
