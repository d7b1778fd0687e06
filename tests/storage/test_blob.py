"""Building the container client from the CONVERSATIONS_STORAGE setting."""

from __future__ import annotations

import uuid

import pytest
from azure.core.credentials import AccessToken

from devkit.azurite import ACCOUNT_KEY, AzuriteInstance
from storage.blob import container_client, ensure_container, is_account_url
from storage.errors import StorageNotConfigured


class FakeAsyncCredential:
    """Stands in for DefaultAzureCredential; never called here (no request is sent)."""

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise AssertionError("no token should be requested")

    async def close(self) -> None:
        return None


async def test_a_connection_string_gives_a_working_client_and_ensure_container_is_repeatable(
    azurite: AzuriteInstance,
) -> None:
    name = f"c-{uuid.uuid4().hex[:12]}"
    async with container_client(azurite.connection_string, name) as client:
        await ensure_container(client)
        await ensure_container(client)
        await client.upload_blob("probe", b"ok")
        assert await (await client.download_blob("probe")).readall() == b"ok"


def test_an_account_url_with_a_credential_targets_that_account() -> None:
    client = container_client(
        "https://acct.blob.core.windows.net/",
        "conversations",
        FakeAsyncCredential(),  # type: ignore[arg-type]
    )
    assert client.url == "https://acct.blob.core.windows.net/conversations"
    assert is_account_url(" HTTPS://acct.blob.core.windows.net")


def test_an_account_url_without_a_credential_names_the_setting() -> None:
    with pytest.raises(StorageNotConfigured, match="CONVERSATIONS_STORAGE"):
        container_client("https://acct.blob.core.windows.net", "conversations")


def test_development_storage_points_at_local_azurite() -> None:
    client = container_client("UseDevelopmentStorage=true", "conversations")
    assert client.url == "http://127.0.0.1:10000/devstoreaccount1/conversations"


@pytest.mark.parametrize("setting", ["", "   ", f"AccountKey={ACCOUNT_KEY};garbage", "nonsense"])
def test_a_malformed_setting_names_it_without_echoing_secrets(setting: str) -> None:
    with pytest.raises(StorageNotConfigured, match="CONVERSATIONS_STORAGE") as raised:
        container_client(setting, "conversations")
    assert ACCOUNT_KEY not in str(raised.value)


async def test_a_container_client_builds_one_blob_client_per_name_and_it_keeps_working(
    azurite: AzuriteInstance,
) -> None:
    name = f"c-{uuid.uuid4().hex[:12]}"
    async with container_client(azurite.connection_string, name) as client:
        await ensure_container(client)
        blob = client.get_blob_client("a.json")
        assert client.get_blob_client("a.json") is blob
        assert client.get_blob_client("b.json") is not blob
        await client.upload_blob("a.json", b"one")  # the SDK's own calls by name share it
        await blob.upload_blob(b"two", overwrite=True)
        assert await (await client.download_blob("a.json")).readall() == b"two"
        assert client.get_blob_client("a.json", snapshot="x") is not blob
