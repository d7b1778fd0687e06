"""Route templates match like the Functions host's ASP.NET routing."""

from __future__ import annotations

import pytest

from local_host.routing import RouteTemplateError, compile_route


def test_a_parameter_segment_captures_its_value() -> None:
    assert compile_route("hello/{name}").match("/hello/bob") == {"name": "bob"}


def test_literal_segments_match_case_insensitively() -> None:
    assert compile_route("Hello/{name}").match("/hELLo/Bob") == {"name": "Bob"}


def test_a_missing_required_parameter_does_not_match() -> None:
    assert compile_route("hello/{name}").match("/hello") is None


def test_an_optional_parameter_may_be_absent() -> None:
    template = compile_route("items/{id}/{detail?}")
    assert template.match("/items/5") == {"id": "5"}
    assert template.match("/items/5/full") == {"id": "5", "detail": "full"}


def test_a_default_value_fills_an_absent_parameter() -> None:
    assert compile_route("page/{number=1}").match("/page") == {"number": "1"}


def test_an_int_constraint_rejects_non_numbers() -> None:
    template = compile_route("items/{id:int}")
    assert template.match("/items/42") == {"id": "42"}
    assert template.match("/items/abc") is None
    assert template.match("/items/99999999999") is None  # beyond Int32


def test_an_int_constraint_accepts_exactly_the_int32_range() -> None:
    template = compile_route("items/{id:int}")
    assert template.match("/items/2147483647") == {"id": "2147483647"}
    assert template.match("/items/-2147483648") == {"id": "-2147483648"}
    assert template.match("/items/2147483648") is None
    assert template.match("/items/-2147483649") is None


def test_a_guid_constraint_accepts_only_guids() -> None:
    template = compile_route("orders/{id:guid}")
    assert template.match("/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301") is not None
    assert template.match("/orders/not-a-guid") is None


def test_argument_constraints_are_checked() -> None:
    assert compile_route("x/{n:range(1,5)}").match("/x/6") is None
    assert compile_route("x/{n:range(1,5)}").match("/x/3") == {"n": "3"}
    assert compile_route("x/{s:minlength(3)}").match("/x/ab") is None
    assert compile_route("x/{s:regex(^[a-z]+$)}").match("/x/abc") == {"s": "abc"}
    assert compile_route("x/{s:regex(^[a-z]+$)}").match("/x/ab1") is None


def test_a_catch_all_takes_the_rest_of_the_path() -> None:
    template = compile_route("files/{*path}")
    assert template.match("/files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert template.match("/files") == {}


def test_several_parameters_can_share_a_segment() -> None:
    assert compile_route("doc/{name}.{ext}").match("/doc/report.pdf") == {
        "name": "report",
        "ext": "pdf",
    }


def test_a_trailing_slash_still_matches() -> None:
    assert compile_route("hello/{name}").match("/hello/bob/") == {"name": "bob"}


def test_literals_take_precedence_over_parameters() -> None:
    literal = compile_route("items/special")
    parameter = compile_route("items/{id}")
    constrained = compile_route("items/{id:int}")
    ordered = sorted([parameter, literal, constrained], key=lambda t: t.precedence)
    assert [t.template for t in ordered] == ["items/special", "items/{id:int}", "items/{id}"]


def test_a_catch_all_that_is_not_last_is_refused() -> None:
    with pytest.raises(RouteTemplateError):
        compile_route("files/{*path}/more")


def test_an_unknown_constraint_is_refused() -> None:
    with pytest.raises(RouteTemplateError):
        compile_route("x/{id:banana}")
