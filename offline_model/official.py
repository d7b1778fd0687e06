"""Request bodies checked against the `openai` package's own request types.

The package's param TypedDicts (`openai.types.chat.completion_create_params`,
`openai.types.responses.response_create_params`) are generated from the service's OpenAPI
description: a body they do not describe (an unknown key, a missing required one, a wrong
literal) is one the real service would refuse, so the server refuses it too, with a 400 naming
the path. Our own loop sends only what these types allow: a test that sends more fails.

pydantic is not used: its TypedDict validation ignores unknown keys, the very mistake we most
want to catch (a private field of our transcript leaking into a request).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NotRequired, Required, Union

from typing_extensions import is_typeddict

_UNION_TYPES = (Union, types.UnionType)
DISCRIMINATORS = ("type", "role")
_WRAPPERS = (Required, NotRequired, typing.ReadOnly if hasattr(typing, "ReadOnly") else Required)


def chat_body_problem(body: Any) -> str | None:
    """What the chat completions request types say is wrong with `body`, or None."""
    from openai.types.chat import completion_create_params as params

    return _body_problem(
        body, params.CompletionCreateParamsStreaming, params.CompletionCreateParamsNonStreaming
    )


def responses_body_problem(body: Any) -> str | None:
    """What the Responses request types say is wrong with `body`, or None."""
    from openai.types.responses import response_create_params as params

    return _body_problem(
        body, params.ResponseCreateParamsStreaming, params.ResponseCreateParamsNonStreaming
    )


def _body_problem(body: Any, streaming: Any, whole: Any) -> str | None:
    """`body` against the streaming or the non-streaming params type, as `stream` says."""
    streamed = isinstance(body, dict) and body.get("stream") is True
    return problem(body, streaming if streamed else whole, "body")


def problem(value: Any, kind: Any, path: str) -> str | None:
    """The first mismatch between `value` (parsed JSON) and the type `kind`, or None."""
    origin = typing.get_origin(kind)
    if origin is typing.Annotated:
        return problem(value, typing.get_args(kind)[0], path)
    if origin in _WRAPPERS:
        return problem(value, typing.get_args(kind)[0], path)
    if kind is Any or kind is object:
        return None
    if kind is None or kind is type(None):
        return None if value is None else f"{path}: expected null"
    if origin in _UNION_TYPES:
        return _union_problem(value, typing.get_args(kind), path)
    if origin is Literal:
        allowed = typing.get_args(kind)
        return None if value in allowed else f"{path}: {value!r} is not one of {list(allowed)}"
    if is_typeddict(kind):
        return _typeddict_problem(value, kind, path)
    if origin is not None:
        return _generic_problem(value, origin, typing.get_args(kind), path)
    return _plain_problem(value, kind, path)


def _union_problem(value: Any, options: tuple[Any, ...], path: str) -> str | None:
    found = [problem(value, option, path) for option in options]
    if any(p is None for p in found):
        return None
    return max((p for p in found if p), key=lambda p: _relevance(p, path))


def _relevance(found: str, path: str) -> tuple[int, int]:
    """Which option's complaint to report: not a plain type mismatch at this very value, nor a
    discriminator (`role`, `type`) that did not match, when another option got further."""
    where = found.split(": ", 1)[0]
    if where == path and ": expected " in found:
        return (0, 0)
    if where.endswith((".role", ".type")) and " is not one of " in found:
        return (1, len(where))
    return (2, len(where))


def _typeddict_problem(value: Any, kind: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: expected an object"
    fields = _fields(kind)
    for key in DISCRIMINATORS:  # first: the option a value is meant for says so here
        if key in fields and key in value:
            found = problem(value[key], fields[key][0], f"{path}.{key}")
            if found:
                return found
    for key in value:
        if key not in fields:
            return f"{path}: unknown key {key!r}"
    for key, (annotation, required) in fields.items():
        if key not in value:
            if required:
                return f"{path}: missing required key {key!r}"
            continue
        found = problem(value[key], annotation, f"{path}.{key}")
        if found:
            return found
    return None


@functools.cache
def _fields(kind: Any) -> dict[str, tuple[Any, bool]]:
    """The wire keys of a param TypedDict (an alias in `Annotated` metadata wins)."""
    hints = typing.get_type_hints(kind, include_extras=True)
    totality = _totality(kind)
    fields = {}
    for name, annotation in hints.items():
        wire, required = name, totality.get(name, True)
        inner = annotation
        while typing.get_origin(inner) in (typing.Annotated, *_WRAPPERS):
            origin = typing.get_origin(inner)
            if origin is typing.Annotated:
                for meta in typing.get_args(inner)[1:]:
                    wire = getattr(meta, "alias", None) or wire
            elif origin is Required:
                required = True
            elif origin is NotRequired:
                required = False
            inner = typing.get_args(inner)[0]
        fields[wire] = (annotation, required)
    return fields


def _totality(kind: Any) -> dict[str, bool]:
    """Each key's default requiredness: the `total=` of the class that declares it (a streaming
    params class is total, its base's keys are not)."""
    found: dict[str, bool] = {}
    for base in getattr(kind, "__orig_bases__", ()):
        if is_typeddict(base):
            found.update(_totality(base))
    inherited = set(found)  # a subclass's __annotations__ repeats its bases' keys
    for name in inspect.get_annotations(kind):
        if name not in inherited:
            found[name] = bool(getattr(kind, "__total__", True))
    return found


def _generic_problem(value: Any, origin: Any, args: tuple[Any, ...], path: str) -> str | None:
    if origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        if not isinstance(value, dict):
            return f"{path}: expected an object"
        item = args[1] if len(args) == 2 else Any
        for key, entry in value.items():
            found = problem(entry, item, f"{path}.{key}")
            if found:
                return found
        return None
    if origin in (list, tuple) or (
        isinstance(origin, type) and issubclass(origin, Iterable | Sequence)
    ):
        if not isinstance(value, list):
            return f"{path}: expected an array"
        item = args[0] if args else Any
        for index, entry in enumerate(value):
            found = problem(entry, item, f"{path}[{index}]")
            if found:
                return found
        return None
    return None  # a generic we do not model: accepted rather than guessed at


def _plain_problem(value: Any, kind: Any, path: str) -> str | None:
    if kind is bool:
        return None if isinstance(value, bool) else f"{path}: expected a boolean"
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{path}: expected an integer"
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{path}: expected a number"
    if kind is str:
        return None if isinstance(value, str) else f"{path}: expected a string"
    if isinstance(kind, type) and kind.__name__ == "SequenceNotStr":
        return None if isinstance(value, list) else f"{path}: expected an array"
    return None  # files, binary content and the like: not in the bodies we send
