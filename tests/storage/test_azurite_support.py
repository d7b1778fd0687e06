"""The Azurite launcher used by the storage tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit import azurite as azurite_support
from devkit.azurite import AzuriteError, AzuriteInstance


def test_a_missing_azurite_says_to_run_npm_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(azurite_support, "AZURITE_BLOB", tmp_path / "azurite-blob")
    with pytest.raises(AzuriteError, match="npm ci"):
        azurite_support.start_azurite()


def test_the_connection_string_names_the_ephemeral_port(azurite: AzuriteInstance) -> None:
    assert azurite.port > 0
    assert f"BlobEndpoint=http://127.0.0.1:{azurite.port}/devstoreaccount1;" in (
        azurite.connection_string
    )
    assert azurite.process.poll() is None
