"""Frozen dataclasses <-> the JSON-able dicts that Durable history and Blob storage keep.

One set of rules for every contract and stored record:
- fields are written in declaration order, nested dataclasses as objects, tuples and lists as
  arrays, enums as their values; `omitted_when_default` fields are left out while they hold their
  default (so adding one keeps older JSON byte for byte), `local` fields are never written;
- on read every value is checked against its annotation (a wrong type is a `WireError` naming
  the field, never a half-built value); a missing field with a default takes it, and so does a
  null where the annotation does not allow None (older writers used null for "nothing");
- unknown keys are tolerated; a class with an `unknown_keys()` field keeps them and writes them
  back, so a record rewritten by older code loses nothing a newer writer added.
Values are never quoted in errors: a field may hold conversation content.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Literal, Self, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")
Reader = Callable[[Any], Any]

_KIND = "wire"
_OMIT_DEFAULT = "omitted_when_default"
_LOCAL = "local"
_UNKNOWN = "unknown_keys"


class WireError(ValueError):
    """A dict does not fit the dataclass it is read as (the message names the field)."""

    def __init__(self, problem: str, where: str = "") -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.problem = problem
        self.where = where

    def within(self, outer: str) -> WireError:
        """The same error, seen from the value that holds this one (its path built only now,
        on the way out: reading a valid value formats no paths)."""
        return WireError(self.problem, outer + self.where)


# --- field markers ------------------------------------------------------------------------------


def omitted_when_default(default: Any) -> Any:
    """A field left out of the JSON while it holds `default` (an immutable value)."""
    return dataclasses.field(default=default, metadata={_KIND: _OMIT_DEFAULT})


def local(default: Any = None) -> Any:
    """A field that lives in memory only (an ETag read with the blob): never written or read."""
    return dataclasses.field(default=default, compare=False, metadata={_KIND: _LOCAL})


def unknown_keys() -> Any:
    """The keys a read did not know, written back as they were (declare it last)."""
    return dataclasses.field(
        default_factory=dict, compare=False, repr=False, metadata={_KIND: _UNKNOWN}
    )


class Wire:
    """`to_dict` / `from_dict` for a frozen dataclass, through this module's converter."""

    def to_dict(self) -> dict[str, Any]:
        return to_wire(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return from_wire(cls, data)


# --- writing -------------------------------------------------------------------------------------


def to_wire(obj: Any) -> dict[str, Any]:
    """The JSON-able dict of a dataclass instance."""
    plan = _plan(type(obj))
    out: dict[str, Any] = {}
    for spec in plan.written:
        value = getattr(obj, spec.name)
        if spec.omit_default and value == spec.default:
            continue
        out[spec.name] = value if type(value) in _JSON_SCALARS else _plain(value)
    if plan.unknown is not None:
        for key, value in getattr(obj, plan.unknown).items():
            out.setdefault(key, value)  # a known field always wins over a stale copy
    return out


_SCALARS = (str, int, float, bool, type(None))
# Exactly these types are written as they are, checked with one set lookup (no call) per value:
# contracts carry long arrays of them (a batch's item indices, in every claim).
_JSON_SCALARS = frozenset(_SCALARS)
Writer = Callable[[Any], Any]


def _plain(value: Any) -> Any:
    write = _WRITERS.get(type(value))
    if write is None:
        write = _writer(type(value))
    return write(value)


def _writer(tp: type) -> Writer:
    """How to write a value of type `tp`, found by the checks below in this order (a str enum
    is a str) and kept for the type: the checks cost more than the writing."""
    if issubclass(tp, _SCALARS):
        write: Writer = _same
    elif issubclass(tp, enum.Enum):
        write = _enum_value
    elif dataclasses.is_dataclass(tp) and not issubclass(tp, type):
        write = to_wire
    elif issubclass(tp, list | tuple):
        write = _plain_array
    elif issubclass(tp, Mapping):
        write = _plain_mapping
    else:
        raise WireError(f"cannot write a {tp.__name__} as JSON")
    _WRITERS[tp] = write
    return write


def _same(value: Any) -> Any:
    return value


def _enum_value(value: enum.Enum) -> Any:
    return value.value


def _plain_array(value: Any) -> list[Any]:
    return [item if type(item) in _JSON_SCALARS else _plain(item) for item in value]


def _plain_mapping(value: Any) -> dict[Any, Any]:
    return {k: item if type(item) in _JSON_SCALARS else _plain(item) for k, item in value.items()}


_WRITERS: dict[type, Writer] = {}


# --- reading -------------------------------------------------------------------------------------


def from_wire(cls: type[T], data: Any) -> T:
    """An instance of dataclass `cls` read from `data` (see the module's rules)."""
    try:
        return _object(cls, data)
    except WireError as exc:
        raise exc.within(cls.__name__) from None


def _object(cls: type[T], data: Any) -> T:
    plan = _plan(cls)
    if not isinstance(data, Mapping):
        raise WireError(f"expected an object, got {_kind(data)}")
    values: dict[str, Any] = {}
    for spec in plan.read:
        if spec.name not in data:
            if spec.required:
                raise WireError(f"the required field {spec.name!r} is missing")
            continue
        value = data[spec.name]
        if value is None and not spec.nullable and not spec.required:
            continue  # null for "nothing": the default
        try:
            values[spec.name] = spec.reader(value)
        except WireError as exc:
            raise exc.within(f".{spec.name}") from None
    if plan.unknown is not None and not data.keys() <= plan.names:
        values[plan.unknown] = {k: v for k, v in data.items() if k not in plan.names}
    return cls(**values)


@dataclass(frozen=True)
class _Field:
    name: str
    reader: Reader
    required: bool
    nullable: bool
    omit_default: bool
    default: Any


@dataclass(frozen=True)
class _Plan:
    read: tuple[_Field, ...]
    written: tuple[_Field, ...]
    names: frozenset[str]  # every declared field: none of them is an unknown key
    unknown: str | None  # the field that keeps unknown keys


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """How to read and write `cls`, worked out once (transcripts read thousands of lines)."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _new_plan(cls)
    return plan


def _new_plan(cls: type) -> _Plan:
    if not dataclasses.is_dataclass(cls):
        raise WireError(f"{cls.__name__} is not a dataclass")
    hints = get_type_hints(cls)
    read: list[_Field] = []
    written: list[_Field] = []
    unknown = None
    for f in dataclasses.fields(cls):
        kind = f.metadata.get(_KIND)
        if kind == _UNKNOWN:
            unknown = f.name
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        spec = _Field(
            name=f.name,
            reader=_reader(hints[f.name]),
            required=default is MISSING,
            nullable=_allows_none(hints[f.name]),
            omit_default=kind == _OMIT_DEFAULT,
            default=default,
        )
        if kind != _LOCAL:
            read.append(spec)
            written.append(spec)
    names = frozenset(f.name for f in dataclasses.fields(cls))
    return _Plan(tuple(read), tuple(written), names, unknown)


def _allows_none(tp: Any) -> bool:
    return tp is Any or tp is None or type(None) in get_args(tp)


def _reader(tp: Any) -> Reader:
    """A function that checks (and converts) a JSON value for annotation `tp`."""
    origin = get_origin(tp)
    if tp is Any:
        return _any
    if tp is None or tp is type(None):
        return _exact(type(None), "null")
    if origin is Literal:
        return _literal(get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return _union(tuple(_reader(arm) for arm in get_args(tp)), get_args(tp))
    if origin is tuple:
        return _tuple(get_args(tp))
    if origin is list:
        return _list(_reader(get_args(tp)[0]))
    if origin in (dict, Mapping):
        return _dict(_reader(get_args(tp)[1]))
    if isinstance(tp, type):
        return _type(tp)
    raise WireError(f"no conversion for the annotation {tp!r}")


def _type(tp: type) -> Reader:
    if dataclasses.is_dataclass(tp):
        return lambda value: _object(tp, value)
    if issubclass(tp, enum.Enum):
        return _enum(tp)
    if tp is float:
        return _number
    if tp is dict:
        return _dict(_any)
    if tp in (str, int, bool):
        return _exact(tp, tp.__name__)
    raise WireError(f"no conversion for the type {tp.__name__}")


def _any(value: Any) -> Any:
    return value


def _exact(tp: type, name: str) -> Reader:
    def read(value: Any) -> Any:
        # type(), not isinstance: a bool is no int here, and an int no bool.
        if type(value) is not tp:
            raise WireError(f"expected {name}, got {_kind(value)}")
        return value

    return read


def _number(value: Any) -> Any:
    # An int stays an int: JSON written as 30 is written back as 30, not 30.0.
    if type(value) not in (int, float):
        raise WireError(f"expected a number, got {_kind(value)}")
    return value


def _literal(allowed: tuple[Any, ...]) -> Reader:
    def read(value: Any) -> Any:
        if not any(type(value) is type(a) and value == a for a in allowed):
            choices = ", ".join(repr(a) for a in allowed)
            raise WireError(f"expected one of {choices}")
        return value

    return read


def _enum(tp: type[enum.Enum]) -> Reader:
    def read(value: Any) -> Any:
        try:
            return tp(value)
        except ValueError:
            raise WireError(f"not a {tp.__name__} value") from None

    return read


def _union(readers: tuple[Reader, ...], arms: tuple[Any, ...]) -> Reader:
    if len(arms) == 2 and type(None) in arms:  # Optional: the common case, checked directly
        inner = readers[0] if arms[1] is type(None) else readers[1]
        return lambda value: None if value is None else inner(value)

    def read(value: Any) -> Any:
        for reader in readers:
            try:
                return reader(value)
            except WireError:
                continue
        raise WireError(f"{_kind(value)} fits none of {arms!r}")

    return read


def _tuple(args: tuple[Any, ...]) -> Reader:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _reader(args[0])

        def read_all(value: Any) -> Any:
            _array(value)
            return tuple(_items(item, value))

        return read_all
    items = tuple(_reader(arg) for arg in args)

    def read_fixed(value: Any) -> Any:
        _array(value)
        if len(value) != len(items):
            raise WireError(f"expected {len(items)} items, got {len(value)}")
        return tuple(_at(i, r, v) for i, (r, v) in enumerate(zip(items, value, strict=True)))

    return read_fixed


def _list(item: Reader) -> Reader:
    def read(value: Any) -> Any:
        _array(value)
        if item is _any:
            return value
        return list(_items(item, value))

    return read


def _dict(item: Reader) -> Reader:
    def read(value: Any) -> Any:
        if not isinstance(value, dict):
            raise WireError(f"expected an object, got {_kind(value)}")
        if item is _any:
            return value
        values = {}
        for key, v in value.items():
            try:
                values[key] = item(v)
            except WireError as exc:
                raise exc.within(f"[{key!r}]") from None
        return values

    return read


def _items(item: Reader, values: Any) -> list[Any]:
    try:
        return [item(v) for v in values]
    except WireError:
        # Read again one by one to name the first bad index: readers are pure, and paying
        # for the index on every item made long arrays (a batch's indices) cost twice.
        return [_at(i, item, v) for i, v in enumerate(values)]


def _at(index: int, item: Reader, value: Any) -> Any:
    try:
        return item(value)
    except WireError as exc:
        raise exc.within(f"[{index}]") from None


def _array(value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise WireError(f"expected an array, got {_kind(value)}")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), type(value).__name__)
