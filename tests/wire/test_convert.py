"""The converter alone: round trips, unknown keys, defaults, and clear errors on wrong types."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pytest

from wire import Wire, WireError, from_wire, local, omitted_when_default, to_wire, unknown_keys


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Point(Wire):
    x: int
    y: float = 0.0


@dataclass(frozen=True)
class Shape(Wire):
    name: str
    kind: Literal["line", "polygon"]
    points: tuple[Point, ...]
    colour: Colour = Colour.RED
    corner: Point | None = None
    tags: list[str] = field(default_factory=list)
    counts: Mapping[str, int] = field(default_factory=dict)
    note: str | None = omitted_when_default(None)
    hidden: bool = omitted_when_default(False)
    pair: tuple[int, str] | None = None
    etag: str | None = local()


@dataclass(frozen=True)
class Kept(Wire):
    id: str
    status: str
    inner: Point | None = None
    extra: Mapping[str, Any] = unknown_keys()


SHAPE = Shape(
    name="tri",
    kind="polygon",
    points=(Point(0), Point(1, 2.5)),
    colour=Colour.BLUE,
    corner=Point(3, 4),
    tags=["a"],
    counts={"done": 2},
    note="n",
    hidden=True,
    pair=(1, "x"),
)


def test_a_nested_record_survives_a_round_trip_through_json_text() -> None:
    text = json.dumps(SHAPE.to_dict())
    assert Shape.from_dict(json.loads(text)) == SHAPE


def test_fields_are_written_in_declaration_order_with_tuples_as_arrays_and_enums_as_values() -> (
    None
):
    data = Shape("l", "line", (Point(1),)).to_dict()
    assert list(data) == ["name", "kind", "points", "colour", "corner", "tags", "counts", "pair"]
    assert data["points"] == [{"x": 1, "y": 0.0}]
    assert data["colour"] == "red"


def test_a_field_marked_omitted_when_default_is_left_out_only_while_it_holds_the_default() -> None:
    assert "note" not in Shape("l", "line", ()).to_dict()
    assert "hidden" not in Shape("l", "line", ()).to_dict()
    assert SHAPE.to_dict()["note"] == "n" and SHAPE.to_dict()["hidden"] is True


def test_a_local_field_is_never_written_nor_read() -> None:
    shape = replace(SHAPE, etag="0x1")
    assert "etag" not in shape.to_dict()
    assert Shape.from_dict({**shape.to_dict(), "etag": "0x2"}).etag is None


def test_a_missing_optional_field_takes_its_default() -> None:
    shape = Shape.from_dict({"name": "l", "kind": "line", "points": []})
    assert shape == Shape("l", "line", ())


def test_a_null_where_none_is_not_allowed_but_a_default_exists_reads_as_the_default() -> None:
    shape = Shape.from_dict({"name": "l", "kind": "line", "points": [], "tags": None})
    assert shape.tags == []


def test_an_int_stays_an_int_in_a_float_field_so_the_json_is_written_back_unchanged() -> None:
    point = Point.from_dict({"x": 1, "y": 30})
    assert json.dumps(point.to_dict()) == '{"x": 1, "y": 30}'


def test_unknown_keys_are_tolerated_where_the_class_does_not_keep_them() -> None:
    assert Point.from_dict({"x": 1, "y": 2.0, "z": 3}) == Point(1, 2.0)


def test_unknown_keys_are_kept_when_a_record_is_rewritten() -> None:
    newer = {"id": "a", "status": "pending", "added_later": {"deep": [1]}, "inner": None}
    rewritten = replace(Kept.from_dict(newer), status="done").to_dict()
    assert rewritten == {**newer, "status": "done"}


def test_a_known_field_wins_over_a_stale_unknown_key_of_the_same_name() -> None:
    kept = Kept("a", "done", extra={"status": "stale", "other": 1})
    assert kept.to_dict() == {"id": "a", "status": "done", "inner": None, "other": 1}


def test_unknown_keys_do_not_change_equality() -> None:
    assert Kept.from_dict({"id": "a", "status": "s", "more": 1}) == Kept("a", "s")


def test_a_missing_required_field_is_an_error_naming_it() -> None:
    with pytest.raises(WireError, match=r"Shape: the required field 'kind' is missing"):
        Shape.from_dict({"name": "l", "points": []})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": 3, "kind": "line", "points": []}, r"Shape\.name: expected str, got int"),
        ({"name": "l", "kind": "circle", "points": []}, r"Shape\.kind: expected one of 'line'"),
        ({"name": "l", "kind": "line", "points": {}}, r"Shape\.points: expected an array"),
        (
            {"name": "l", "kind": "line", "points": [{"x": "1"}]},
            r"Shape\.points\[0\]\.x: expected int, got a string",
        ),
        (
            {"name": "l", "kind": "line", "points": [{"x": True}]},
            r"Shape\.points\[0\]\.x: expected int, got a boolean",
        ),
        (
            {"name": "l", "kind": "line", "points": [], "colour": "green"},
            r"Shape\.colour: not a Colour value",
        ),
        (
            {"name": "l", "kind": "line", "points": [], "counts": {"a": 1.5}},
            r"Shape\.counts\[.a.\]: expected int",
        ),
        (
            {"name": "l", "kind": "line", "points": [], "pair": [1]},
            r"Shape\.pair: expected 2 items",
        ),
        (
            {"name": "l", "kind": "line", "points": [], "corner": 5},
            r"Shape\.corner: expected an object, got int",
        ),
    ],
)
def test_a_wrong_type_is_a_clear_error_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(WireError, match=message):
        Shape.from_dict(data)


def test_an_error_never_quotes_the_value_which_may_be_conversation_content() -> None:
    with pytest.raises(WireError) as caught:
        Shape.from_dict({"name": "l", "kind": "secret text", "points": []})
    assert "secret text" not in str(caught.value)


def test_a_wire_error_is_a_value_error_so_readers_that_skip_bad_lines_still_do() -> None:
    assert issubclass(WireError, ValueError)


def test_the_functions_and_the_mixin_agree() -> None:
    assert to_wire(SHAPE) == SHAPE.to_dict()
    assert from_wire(Shape, SHAPE.to_dict()) == SHAPE


def test_a_value_json_cannot_hold_is_refused_on_write() -> None:
    with pytest.raises(WireError, match="cannot write a set"):
        to_wire(Shape("l", "line", (), tags={1}))  # type: ignore[arg-type]


# --- the per-type writers and the one-pass array reader (#16: CPU per item) ---------------------


def _checked_plain(value: Any) -> Any:
    """How a value was written before the writers were kept per type: the checks, in order,
    on every value (the reference the kept writers must agree with)."""
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _checked_record(value)
    if isinstance(value, list | tuple):
        return [_checked_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _checked_plain(item) for key, item in value.items()}
    raise WireError(f"cannot write a {type(value).__name__} as JSON")


def _checked_record(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        kind = f.metadata.get("wire")
        if kind in ("local", "unknown_keys"):
            continue
        value = getattr(obj, f.name)
        if kind == "omitted_when_default" and value == f.default:
            continue
        out[f.name] = _checked_plain(value)
    return out


class Size(enum.IntEnum):
    SMALL = 1


class Mood(enum.StrEnum):
    CALM = "calm"


class Pair(enum.Enum):
    ORIGIN = (0, 0)


class Name(str):
    pass


class Items(list[Any]):
    pass


@dataclass(frozen=True)
class Anything(Wire):
    value: Any
    maybe: Point | None = None
    nested: Mapping[str, list[Point]] = field(default_factory=dict)


EDGE_VALUES: list[Any] = [
    None,
    True,
    0,
    1.5,
    "text",
    Name("a str subclass"),
    Size.SMALL,
    Mood.CALM,
    Pair.ORIGIN,
    Colour.BLUE,
    [Colour.RED, (Size.SMALL, None), {"in": [Point(1)]}],
    (Point(1, 2.0), Point(3)),
    {"a": [1, 2, [Mood.CALM]], "b": {"c": (True, None)}},
    types.MappingProxyType({"frozen": [Point(0)]}),
    Items([1, Colour.RED]),
    SHAPE,
    list(range(300)),
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=lambda v: type(v).__name__)
def test_a_value_is_written_as_the_checks_on_every_value_wrote_it_the_first_time_and_after(
    value: Any,
) -> None:
    record = Anything(value, maybe=Point(2), nested={"k": [Point(1), Point(2, 0.5)]})
    expected = _checked_record(record)
    assert to_wire(record) == expected  # the writers are found
    assert to_wire(record) == expected  # and kept
    assert json.dumps(to_wire(record)) == json.dumps(expected)  # the same JSON, key order too


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", Point, object()], ids=repr)
def test_a_value_json_cannot_hold_is_refused_every_time_not_only_the_first(value: Any) -> None:
    for _ in range(2):
        with pytest.raises(WireError, match="cannot write a"):
            to_wire(Anything([value]))


def test_a_bad_item_deep_in_a_long_array_is_named_by_its_index() -> None:
    points = [{"x": i} for i in range(50)] + [{"x": "late"}]
    with pytest.raises(WireError, match=r"Shape\.points\[50\]\.x: expected int, got a string"):
        Shape.from_dict({"name": "l", "kind": "line", "points": points})


def test_a_long_array_of_records_reads_back_whole() -> None:
    shape = replace(SHAPE, points=tuple(Point(i, i / 2) for i in range(200)))
    assert Shape.from_dict(json.loads(json.dumps(shape.to_dict()))) == shape
