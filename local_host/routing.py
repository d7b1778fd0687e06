"""ASP.NET Core route templates, as the Functions host matches HTTP trigger routes.

Supported: literal segments (case-insensitive), `{name}`, optional `{name?}`, defaults
`{name=value}`, catch-all `{*name}` / `{**name}`, several parameters in one segment
(`{file}.{ext}`) and the inline constraints `int`, `long`, `bool`, `guid`, `alpha`, `datetime`,
`decimal`, `double`, `float`, `min(n)`, `max(n)`, `range(a,b)`, `minlength(n)`, `maxlength(n)`,
`length(n)`, `length(a,b)`, `regex(expr)` and `required`. When several routes match, the most
specific wins (literal > constrained parameter > parameter > optional > catch-all), like
ASP.NET's route precedence.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

_PARAMETER = re.compile(r"\{([^{}]*)\}")
_CONSTRAINT = re.compile(r"(\w+)(?:\((.*)\))?$", re.DOTALL)

# Precedence of one segment, lower is more specific (ASP.NET RoutePrecedence.ComputeInbound).
_LITERAL, _COMPLEX, _CONSTRAINED, _PLAIN, _OPTIONAL, _CATCH_ALL = range(6)


class RouteTemplateError(ValueError):
    """A route template the host would refuse."""


@dataclass(frozen=True)
class _Parameter:
    name: str
    optional: bool
    catch_all: bool
    default: str | None
    constraints: tuple[Callable[[str], bool], ...]


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template; `match` returns the route values or None."""

    template: str
    regex: re.Pattern[str]
    parameters: tuple[_Parameter, ...]
    precedence: tuple[int, ...] = field(compare=False)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for parameter in self.parameters:
            value = found.group(_group_name(parameter.name))
            if value is None or value == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                elif not (parameter.optional or parameter.catch_all):
                    return None
                continue
            if not all(check(value) for check in parameter.constraints):
                return None
            values[parameter.name] = value
        return values


def compile_route(template: str) -> RouteTemplate:
    """Compile a route template (without the route prefix) into a matcher."""
    cleaned = template.strip().strip("/")
    if cleaned.startswith("~"):
        raise RouteTemplateError(f"route {template!r}: '~' routes are not supported")
    segments = cleaned.split("/") if cleaned else []
    pattern_parts: list[str] = []
    parameters: list[_Parameter] = []
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        is_last = index == len(segments) - 1
        part, segment_parameters, rank = _compile_segment(template, segment, is_last)
        pattern_parts.append(part)
        parameters.extend(segment_parameters)
        precedence.append(rank)
    names = [parameter.name.lower() for parameter in parameters]
    if len(names) != len(set(names)):
        raise RouteTemplateError(f"route {template!r}: a parameter name is used twice")
    regex = re.compile("".join(pattern_parts) + "/?", re.IGNORECASE | re.DOTALL)
    return RouteTemplate(template, regex, tuple(parameters), tuple(precedence))


def _compile_segment(
    template: str, segment: str, is_last: bool
) -> tuple[str, list[_Parameter], int]:
    if segment == "":
        raise RouteTemplateError(f"route {template!r}: empty segment")
    pieces = _PARAMETER.split(segment)
    literals, specs = pieces[0::2], pieces[1::2]
    if not specs:
        return "/" + re.escape(segment), [], _LITERAL
    parameters = [_parse_parameter(template, spec) for spec in specs]
    only_parameter = len(parameters) == 1 and literals == ["", ""]
    if only_parameter:
        parameter = parameters[0]
        group = _group_name(parameter.name)
        if parameter.catch_all:
            if not is_last:
                raise RouteTemplateError(f"route {template!r}: a catch-all must be last")
            return f"(?:/(?P<{group}>.*))?", parameters, _CATCH_ALL
        if parameter.optional or parameter.default is not None:
            return f"(?:/(?P<{group}>[^/]+))?", parameters, _OPTIONAL
        rank = _CONSTRAINED if parameter.constraints else _PLAIN
        return f"/(?P<{group}>[^/]+)", parameters, rank
    if any(parameter.catch_all for parameter in parameters):
        raise RouteTemplateError(f"route {template!r}: a catch-all must be a whole segment")
    pattern = "/"
    for literal, slot in zip(literals, [*parameters, None], strict=True):
        pattern += re.escape(literal)
        if slot is not None:
            suffix = "?" if slot.optional else ""
            pattern += f"(?P<{_group_name(slot.name)}>[^/]+?){suffix}"
    return pattern, parameters, _COMPLEX


def _parse_parameter(template: str, spec: str) -> _Parameter:
    catch_all = spec.startswith("*")
    body = spec.lstrip("*")
    default: str | None = None
    if "=" in body:
        body, default = body.split("=", 1)
    optional = body.endswith("?")
    body = body.rstrip("?")
    name, *constraint_specs = _split_constraints(body)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"route {template!r}: bad parameter name {name!r}")
    constraints = tuple(_parse_constraint(template, item) for item in constraint_specs)
    return _Parameter(name, optional, catch_all, default, constraints)


def _split_constraints(body: str) -> list[str]:
    """Split `name:c1:c2(a:b)` on colons outside parentheses (regex constraints hold colons)."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in body:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _parse_constraint(template: str, text: str) -> Callable[[str], bool]:
    found = _CONSTRAINT.match(text)
    if found is None:
        raise RouteTemplateError(f"route {template!r}: bad constraint {text!r}")
    kind, argument = found.group(1).lower(), found.group(2)
    simple = _SIMPLE_CONSTRAINTS.get(kind)
    if simple is not None and argument is None:
        return simple
    if kind == "regex" and argument is not None:
        expression = re.compile(argument, re.IGNORECASE)
        return lambda value: expression.search(value) is not None
    numbers = [int(item) for item in (argument or "").split(",") if item.strip()]
    factory = _ARGUMENT_CONSTRAINTS.get((kind, len(numbers)))
    if factory is None:
        raise RouteTemplateError(f"route {template!r}: unsupported constraint {text!r}")
    return factory(*numbers)


def _is_int(value: str, bits: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", value):
        return False
    bound = 1 << (bits - 1)  # an int; `2 ** n` is typed Any (a negative n would give a float)
    return -bound <= int(value) < bound


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value.strip("{}()"))
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_SIMPLE_CONSTRAINTS: Mapping[str, Callable[[str], bool]] = {
    "int": lambda value: _is_int(value, 32),
    "long": lambda value: _is_int(value, 64),
    "bool": lambda value: value.lower() in {"true", "false"},
    "guid": _is_guid,
    "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
    "datetime": _is_datetime,
    "decimal": _is_float,
    "double": _is_float,
    "float": _is_float,
    "required": lambda value: value != "",
}

_ARGUMENT_CONSTRAINTS: Mapping[tuple[str, int], Callable[..., Callable[[str], bool]]] = {
    ("min", 1): lambda low: lambda value: _is_int(value, 64) and int(value) >= low,
    ("max", 1): lambda high: lambda value: _is_int(value, 64) and int(value) <= high,
    ("range", 2): lambda low, high: lambda value: _is_int(value, 64) and low <= int(value) <= high,
    ("minlength", 1): lambda low: lambda value: len(value) >= low,
    ("maxlength", 1): lambda high: lambda value: len(value) <= high,
    ("length", 1): lambda size: lambda value: len(value) == size,
    ("length", 2): lambda low, high: lambda value: low <= len(value) <= high,
}


def _group_name(name: str) -> str:
    # Regex group names must be identifiers; prefix to keep them apart from anything else.
    return f"p_{name}"
