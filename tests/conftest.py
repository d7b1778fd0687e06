"""Fixtures shared by the whole suite: one Azurite per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.azurite import AzuriteInstance, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteInstance]:
    with start_azurite() as instance:
        yield instance
