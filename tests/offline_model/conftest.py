"""Fixtures of the offline model server's HTTP tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from offline_model import ModelServer, OfflineBrain

KEY = "server-test-key"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    """The offline brain behind key `KEY`, with one deployment: gpt-test."""
    async with ModelServer(OfflineBrain(), api_key=KEY, deployments=["gpt-test"]) as running:
        yield running
