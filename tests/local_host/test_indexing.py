"""The app is indexed from its own decorators (get_functions / get_function_json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_host.errors import AppLoadError
from local_host.indexing import find_function_register, index_app, load_app_module

from .conftest import DURABLE_APP, HTTP_APP


@pytest.fixture(scope="module")
def http_index():
    return index_app(find_function_register(load_app_module(HTTP_APP)))


@pytest.fixture(scope="module")
def durable_index():
    return index_app(find_function_register(load_app_module(DURABLE_APP)))


def _route(index, function_name: str):
    return next(r for r in index.http_routes if r.function.name == function_name)


def test_routes_methods_and_auth_levels_come_from_the_decorators(http_index) -> None:
    hello = _route(http_index, "hello")
    assert hello.template.template == "hello/{name}"
    assert hello.methods == frozenset({"GET"})
    assert (
        hello.auth_level == "FUNCTION"
    )  # the app-wide default of FunctionApp(http_auth_level=...)
    echo = _route(http_index, "echo")
    assert echo.methods == frozenset({"POST", "PUT"})
    assert echo.auth_level == "ANONYMOUS"
    assert _route(http_index, "admin_only").auth_level == "ADMIN"


def test_a_route_without_methods_accepts_every_method(http_index) -> None:
    assert _route(http_index, "item").methods is None


def test_a_route_defaults_to_the_function_name(http_index) -> None:
    assert _route(http_index, "default_route").template.template == "default_route"


def test_durable_functions_are_indexed_by_their_durable_names(durable_index) -> None:
    assert durable_index.orchestrator("SEQUENCE") is not None  # names match case-insensitively
    assert durable_index.activity("say_hello").trigger["name"] == "city"
    assert "probe_async" in durable_index.activity_names()
    starter = _route(durable_index, "start_orchestration")
    assert [b["type"] for b in starter.function.input_bindings()] == [
        "durableClient",
        "httpTrigger",
    ]


def test_a_missing_function_app_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match=r"function_app\.py"):
        load_app_module(tmp_path)


def test_an_import_error_in_the_app_is_reported(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "raise RuntimeError('broken app')\n", encoding="utf-8"
    )
    with pytest.raises(AppLoadError, match="broken app"):
        load_app_module(tmp_path)


def test_an_app_without_a_function_app_object_is_refused(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(AppLoadError, match="exactly one"):
        find_function_register(load_app_module(tmp_path))


def test_an_already_imported_app_module_is_reused_unless_fresh() -> None:
    first = load_app_module(HTTP_APP)
    assert load_app_module(HTTP_APP) is first
    assert load_app_module(HTTP_APP, fresh=True) is not first


def test_an_app_already_indexed_by_someone_else_can_still_be_indexed(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.route(route='r')\n"
        "def r(req: func.HttpRequest) -> str:\n"
        "    return 'ok'\n",
        encoding="utf-8",
    )
    register = find_function_register(load_app_module(tmp_path, fresh=True))
    register.get_functions()  # e.g. a test of the app's own indexing
    assert [route.function.name for route in index_app(register).http_routes] == ["r"]


def test_an_orchestrator_context_name_other_than_context_fails_like_on_the_worker(
    tmp_path: Path,
) -> None:
    (tmp_path / "function_app.py").write_text(
        "import azure.durable_functions as df\n"
        "app = df.DFApp()\n"
        "@app.orchestration_trigger(context_name='ctx')\n"
        "def orchestrator(ctx):\n"
        "    yield ctx.call_activity('a', 1)\n",
        encoding="utf-8",
    )
    register = find_function_register(load_app_module(tmp_path, fresh=True))
    with pytest.raises(
        AppLoadError, match=r"declared in the bindings but not in Python: \['ctx'\]"
    ):
        index_app(register)
