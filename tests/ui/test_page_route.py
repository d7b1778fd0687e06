"""The page's routes over HTTP, on the local host that requires a function key: the page is
anonymous, each file has its media type and the strict Content Security Policy, and nothing
else under `/api/ui` is served. (No browser needed: these run without Chromium too.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from agent.ui.page import ASSETS, CONTENT_SECURITY_POLICY, HERE
from tests.ui.conftest import Served

URLS = {"index.html": "/api/ui", "app.js": "/api/ui/app.js", "app.css": "/api/ui/app.css"}


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("name", sorted(URLS))
async def test_each_file_is_served_without_a_key_with_its_type_and_the_policy(
    served: Served, http: aiohttp.ClientSession, name: str
):
    async with http.get(served.base_url + URLS[name]) as response:  # no x-functions-key
        body = await response.read()
        assert response.status == 200
        assert response.content_type == ASSETS[name]
        assert response.charset == "utf-8"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert body == (HERE / name).read_bytes()


async def test_the_api_the_page_calls_still_needs_the_key(
    served: Served, http: aiohttp.ClientSession
):
    async with http.post(f"{served.base_url}/api/conversations", json={}) as response:
        assert response.status == 401


@pytest.mark.parametrize("path", ["/api/ui/page.py", "/api/ui/__init__.py", "/api/ui/x/app.js"])
async def test_nothing_else_under_the_page_is_served(
    served: Served, http: aiohttp.ClientSession, path: str
):
    async with http.get(served.base_url + path) as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_the_page_takes_only_get(served: Served, http: aiohttp.ClientSession):
    async with http.post(f"{served.base_url}/api/ui", data=b"x") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET"
