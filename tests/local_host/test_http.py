"""HTTP triggers: routes, requests and responses pass through as the Functions host does it."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from local_host.errors import LocalHostError
from local_host.host import LocalHost, resolve_port

from .conftest import HTTP_APP

KEY = "test-function-key"


@pytest.fixture(scope="module")
def restore_environment() -> Iterator[None]:
    """The host exports local.settings.json Values into os.environ; undo that afterwards."""
    saved = dict(os.environ)
    os.environ["HTTP_APP_PRESET"] = "from-environment"
    yield
    os.environ.clear()
    os.environ.update(saved)


# local.settings.json is git-ignored (it holds secrets in real apps): the test writes its own.
LOCAL_SETTINGS = {
    "IsEncrypted": False,
    "Values": {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "HTTP_APP_SETTING": "from-local-settings",
        "HTTP_APP_PRESET": "from-local-settings",
    },
    "Host": {"LocalHttpPort": 7399},
}


@pytest.fixture(scope="module")
def http_app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("http_app")
    for source in HTTP_APP.iterdir():
        if source.is_file():
            shutil.copy(source, directory / source.name)
    (directory / "local.settings.json").write_text(json.dumps(LOCAL_SETTINGS), encoding="utf-8")
    return directory


@pytest_asyncio.fixture(scope="module")
async def http_host(
    restore_environment: None, http_app_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalHost]:
    state = tmp_path_factory.mktemp("http") / "state.sqlite3"
    async with LocalHost(http_app_dir, port=0, state_path=state, function_key=KEY) as host:
        yield host


async def test_route_parameters_query_and_headers_reach_the_function(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    url = f"{http_host.base_url}/api/hello/Ada?greeting=hi"
    async with http.get(url, headers={"x-client": "tests", "x-functions-key": KEY}) as response:
        assert response.status == 203
        assert response.headers["x-handled-by"] == "hello"
        assert response.headers["content-type"].startswith("application/json")
        body = await response.json()
    assert body == {"name": "Ada", "greeting": "hi", "client": "tests", "method": "GET"}


async def test_a_json_body_reaches_the_function_and_its_status_comes_back(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.put(f"{http_host.base_url}/api/echo", json={"x": [1, 2]}) as response:
        assert response.status == 201
        body = await response.json()
    assert body == {"received": {"x": [1, 2]}, "content_type": "application/json"}


async def test_a_method_the_route_does_not_accept_is_not_found(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/api/echo") as response:
        assert response.status == 404


async def test_an_unknown_route_is_a_json_404(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/api/nowhere") as response:
        assert response.status == 404
        assert (await response.json()) == {"error": "Not Found"}
    async with http.get(f"{http_host.base_url}/hello/Ada") as response:  # outside the route prefix
        assert response.status == 404


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/items/5", {"id": "5"}),
        ("/api/items/5/full", {"id": "5", "detail": "full"}),
    ],
)
async def test_optional_and_constrained_parameters_are_matched(
    http_host: LocalHost, http: aiohttp.ClientSession, path: str, expected: dict[str, str]
) -> None:
    async with http.get(f"{http_host.base_url}{path}") as response:
        assert response.status == 200
        assert (await response.json()) == expected


async def test_literal_routes_win_and_constraints_reject(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/api/items/special") as response:
        assert (response.status, await response.text()) == (200, "special")
    async with http.get(f"{http_host.base_url}/api/items/abc") as response:
        assert response.status == 404
    guid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    async with http.get(f"{http_host.base_url}/api/orders/{guid}") as response:
        assert (response.status, await response.text()) == (200, guid)
    async with http.get(f"{http_host.base_url}/api/orders/123") as response:
        assert response.status == 404
    async with http.get(f"{http_host.base_url}/api/files/a/b%20c/d.txt") as response:
        assert (response.status, await response.text()) == (200, "a/b c/d.txt")


async def test_an_unhandled_exception_is_a_generic_500_and_is_logged(
    http_host: LocalHost, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with http.get(f"{http_host.base_url}/api/boom") as response:
            assert response.status == 500
            body = await response.text()
    assert "secret detail" not in body
    assert "Traceback" not in body
    assert "Function 'boom' failed" in caplog.text
    assert "Executed 'Functions.boom' (Failed" in caplog.text


async def test_function_level_routes_need_the_key(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    url = f"{http_host.base_url}/api/hello/Ada"
    async with http.get(url) as response:
        assert response.status == 401
    async with http.get(url, headers={"x-functions-key": "wrong"}) as response:
        assert response.status == 401
    async with http.get(f"{url}?code={KEY}") as response:
        assert response.status == 203
    async with http.get(f"{http_host.base_url}/api/admin-only") as response:
        assert response.status == 401
    async with http.get(
        f"{http_host.base_url}/api/admin-only", headers={"x-functions-key": KEY}
    ) as response:
        assert (response.status, await response.text()) == (200, "admin")


async def test_anonymous_routes_never_need_the_key(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/api/items/1") as response:
        assert response.status == 200


async def test_a_str_return_value_becomes_a_text_response(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/api/default_route") as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert await response.text() == "plain text from a str return"


async def test_a_context_parameter_receives_the_invocation_context(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/api/whoami") as response:
        assert await response.text() == "whoami:True"


async def test_local_settings_values_reach_the_app_and_the_environment_wins(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/api/setting?name=HTTP_APP_SETTING") as response:
        assert await response.text() == "from-local-settings"
    async with http.get(f"{http_host.base_url}/api/setting?name=HTTP_APP_PRESET") as response:
        assert await response.text() == "from-environment"


async def test_one_log_line_per_invocation_without_payloads(
    http_host: LocalHost, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="local_host.functions"):
        async with http.put(
            f"{http_host.base_url}/api/echo", json={"token": "payload-marker"}
        ) as response:
            assert response.status == 201
    lines = [r.getMessage() for r in caplog.records if r.name == "local_host.functions"]
    assert len(lines) == 1
    assert lines[0].startswith("Executed 'Functions.echo' (Succeeded, Id=")
    assert "Duration=" in lines[0]
    assert "payload-marker" not in caplog.text


async def test_the_host_status_endpoint_reports_running(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{http_host.base_url}/admin/host/status") as response:
        assert response.status == 200
        assert (await response.json())["state"] == "Running"


def test_the_port_comes_from_the_option_then_local_settings_then_7071() -> None:
    assert resolve_port(0, 7399) == 0
    assert resolve_port(None, 7399) == 7399
    assert resolve_port(None, None) == 7071


async def test_the_public_durable_api_needs_the_system_key_not_the_function_key(
    http_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    url = f"{http_host.base_url}/runtime/webhooks/durabletask/instances/unknown"
    async with http.get(url) as response:
        assert response.status == 401
    async with http.get(f"{url}?code={KEY}") as response:
        assert response.status == 401
    async with http.get(f"{url}?code={http_host.system_key}") as response:
        assert response.status == 404


async def test_a_port_in_use_is_reported_and_nothing_is_left_open(
    http_host: LocalHost, tmp_path: Path
) -> None:
    port = int(http_host.base_url.rsplit(":", 1)[1])
    second = LocalHost(
        HTTP_APP, port=port, state_path=tmp_path / "other.sqlite3", apply_local_settings=False
    )
    with pytest.raises(LocalHostError, match="cannot listen"):
        await second.start()
    assert second._store is None
