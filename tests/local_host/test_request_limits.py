"""A body over the host's limit is a 413 problem with a detail on every route, never a 500.

The limit is FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (the Functions host's setting; 100 MB when
unset), small here so the tests send kilobytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from local_host.errors import HostSettingsError
from local_host.host import LocalHost
from local_host.settings import request_size_limit

from .conftest import HTTP_APP

LIMIT = 1024
ROUTES = [
    ("PUT", "/api/echo"),  # an anonymous function
    ("GET", "/api/items/1"),  # a function that never reads its body
    ("POST", "/api/no-such-route"),
    ("POST", "/durabletask/orchestrators/anything"),
    ("POST", "/runtime/webhooks/durabletask/orchestrators/anything"),
]


@pytest_asyncio.fixture(scope="module")
async def small_host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalHost]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", str(LIMIT))
        state = tmp_path_factory.mktemp("limits") / "state.sqlite3"
        async with LocalHost(
            HTTP_APP, port=0, state_path=state, apply_local_settings=False
        ) as host:
            yield host


def _chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 256):
        yield b"x" * 256


async def _chunked(size: int) -> AsyncIterator[bytes]:
    for chunk in _chunks(size):
        yield chunk


@pytest.mark.parametrize("method_path", ROUTES, ids=lambda r: r[1])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_limit_is_a_413_problem_with_a_detail(
    small_host: LocalHost, http: aiohttp.ClientSession, method_path: tuple[str, str], framing: str
) -> None:
    method, path = method_path
    size = 4 * LIMIT
    body = b"".join(_chunks(size)) if framing == "content-length" else _chunked(size)
    headers = {"x-functions-key": small_host.system_key, "Content-Type": "application/json"}
    async with http.request(
        method, f"{small_host.base_url}{path}", data=body, headers=headers
    ) as response:
        text = await response.text()
        if framing == "chunked" and response.status != 413:
            # A route that never reads its body cannot see that the body is too long.
            assert method == "GET" or "no-such-route" in path, (response.status, text)
            return
        assert response.status == 413, text
        assert response.content_type == "application/problem+json"
        problem = json.loads(text)
    assert problem["status"] == 413 and f"limit of {LIMIT} bytes" in problem["detail"]


async def test_a_body_at_the_limit_is_accepted(
    small_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    body = json.dumps({"pad": "x" * (LIMIT - 11)}).encode()
    assert len(body) == LIMIT
    async with http.put(f"{small_host.base_url}/api/echo", data=body) as response:
        assert response.status == 201


def test_the_limit_setting_must_be_a_positive_number(tmp_path: Path) -> None:
    assert request_size_limit(7, {}) == 7
    assert request_size_limit(7, {"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "2048"}) == 2048
    for bad in ("lots", "0", "-1"):
        with pytest.raises(HostSettingsError, match="FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"):
            request_size_limit(7, {"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": bad})
