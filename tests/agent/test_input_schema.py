"""MCP's restricted elicitation schema: which questions can be shown, which answers fit them."""

from __future__ import annotations

from typing import Any

import pytest

from agent.errors import BadRequest
from agent.input_schema import schema_problem, validate_answer

FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "email": {"type": "string", "format": "email"},
        "born": {"type": "string", "format": "date"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "height": {"type": "number", "minimum": 0.5},
        "subscribe": {"type": "boolean"},
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
        "size": {"type": "string", "oneOf": [{"const": "s", "title": "Small"}, {"const": "l"}]},
        "toppings": {
            "type": "array",
            "items": {"type": "string", "enum": ["ham", "egg"]},
            "maxItems": 1,
        },
    },
    "required": ["name", "age"],
}


def form(**field: Any) -> dict[str, Any]:
    """A form of one field, `a`."""
    return {"type": "object", "properties": {"a": field}}


def refusal(content: object) -> str:
    with pytest.raises(BadRequest) as caught:
        validate_answer(FORM, content)
    return caught.value.detail


def test_a_flat_form_of_primitives_and_choices_is_a_question_a_person_can_be_shown():
    assert schema_problem(FORM) is None


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ([], "not an object schema"),
        ({"type": "array"}, "not an object schema"),
        ({"type": "object"}, "has no properties"),
        (
            {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}},
            "property 'a' is not a string, number, integer, boolean or choice",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/defs/x"}}},
            "property 'a' is not a string",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}},
            "property 'a' is an array without choices",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "format": "ipv4"}}},
            "property 'a' has an unknown string format",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
            "required names a property it does not have",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": [["a"]]},
            "required names a property it does not have",
        ),
        (form(type="integer", minimum="5"), "has a minimum or maximum that is not a number"),
        (form(type="number", maximum=True), "has a minimum or maximum that is not a number"),
        (form(type="number", maximum=float("inf")), "minimum or maximum that is not a number"),
        (form(type="string", minLength=1.5), "minLength or maxLength that is not a whole"),
        (form(type="string", maxLength=-1), "minLength or maxLength that is not a whole"),
        (form(type="string", format=["email"]), "has an unknown string format"),
        (form(type="integer", enum=[1, 2]), "offers choices, which only a string may"),
        (form(type="boolean", oneOf=[{"const": True}]), "offers choices, which only a string"),
        (form(type="string", enum=["a", 1]), "has choices that are not strings"),
        (form(type="string", oneOf=[{"const": 1}]), "has choices that are not strings"),
        (form(type="array", items={"enum": ["a"]}, maxItems="2"), "minItems or maxItems that"),
        (form(type="array", items={"type": "integer", "enum": [1]}), "an array without choices"),
        (form(type="array", items={"enum": [1, 2]}), "is an array without choices"),
    ],
)
def test_a_schema_outside_the_restricted_form_is_refused_saying_why(schema, problem):
    assert problem in (schema_problem(schema) or "")


def test_a_complete_answer_is_passed_on_as_it_was_given():
    content = {
        "name": "Ada",
        "email": "ada@example.org",
        "born": "1815-12-10",
        "age": 36,
        "height": 1.6,
        "subscribe": False,
        "colour": "green",
        "size": "s",
        "toppings": ["egg"],
    }
    assert validate_answer(FORM, content) == content


def test_only_the_required_fields_are_needed():
    assert validate_answer(FORM, {"name": "Ada", "age": 36}) == {"name": "Ada", "age": 36}


def test_a_number_too_big_for_a_float_is_compared_not_refused_with_an_error():
    assert refusal({"name": "Ada", "age": 10**400}) == "content.age: must be at most 150"
    assert validate_answer(form(type="integer"), {"a": 10**400}) == {"a": 10**400}


def test_a_whole_number_sent_as_a_float_is_an_integer():
    assert validate_answer(FORM, {"name": "Ada", "age": 36.0})["age"] == 36


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("Ada", "content: must be an object"),
        ({"age": 36}, "content.name: is required"),
        ({"name": "Ada"}, "content.age: is required"),
        ({"name": "Ada", "age": 36, "nick": "A"}, "content.nick: not a field of this question"),
        ({"name": 7, "age": 36}, "content.name: must be a string"),
        ({"name": "", "age": 36}, "content.name: must have at least 1 characters"),
        ({"name": "A" * 21, "age": 36}, "content.name: must have at most 20 characters"),
        ({"name": "Ada", "age": "36"}, "content.age: must be a number"),
        ({"name": "Ada", "age": True}, "content.age: must be a number"),
        ({"name": "Ada", "age": 36.5}, "content.age: must be a whole number"),
        ({"name": "Ada", "age": -1}, "content.age: must be at least 0"),
        ({"name": "Ada", "age": 151}, "content.age: must be at most 150"),
        ({"name": "Ada", "age": 1, "height": 0.1}, "content.height: must be at least 0.5"),
        ({"name": "Ada", "age": 1, "subscribe": "yes"}, "content.subscribe: must be true or"),
        ({"name": "Ada", "age": 1, "colour": "pink"}, "content.colour: must be one of 'red'"),
        ({"name": "Ada", "age": 1, "size": "m"}, "content.size: must be one of 's', 'l'"),
        ({"name": "Ada", "age": 1, "email": "ada"}, "content.email: must be a valid email"),
        ({"name": "Ada", "age": 1, "born": "10/12/1815"}, "content.born: must be a valid date"),
        ({"name": "Ada", "age": 1, "toppings": ["jam"]}, "content.toppings: must be a list of"),
        (
            {"name": "Ada", "age": 1, "toppings": ["ham", "egg"]},
            "content.toppings: must have at most 1 choices",
        ),
    ],
)
def test_a_bad_answer_is_refused_naming_the_field(content, detail):
    assert detail in refusal(content)
