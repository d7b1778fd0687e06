"""Which resolver a deployment gets, and Key Vault secrets feeding real MCP connections.

The MCP pool resolves `{"secret": NAME}` values when it opens a session. These tests rotate an
MCP server's API key (in the vault and at the server) and show the app picks the new key up
without a restart: when the cached value expires, or at once when the server's secrets are
forgotten after an auth failure (`forget_secrets`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import agent.credentials
from agent.errors import OperatorError, SettingsError
from agent.keyvault import KeyVaultSecretResolver
from agent.mcp.config import (
    EnvSecretResolver,
    McpServerConfig,
    RefreshableSecretResolver,
    forget_secrets,
    parse_mcp_servers,
    secret_names,
)
from agent.mcp.pool import McpPool
from agent.model import build_model_client
from agent.secrets import close_resolver, resolve_model_key, secret_resolver
from agent.settings import Settings
from devkit.fake_openai import TEST_API_KEY, TEST_DEPLOYMENT, fake_openai
from devkit.mcp_servers import AsgiServer, demo_http_app, http_entry, without_timestamp
from tests.support.fake_keyvault import FakeCredential, FakeKeyVault

BASE_ENV = {
    "CONVERSATIONS_STORAGE": "UseDevelopmentStorage=true",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "OPENAI_MODEL": "test-model",
}


def settings(**values: str) -> Settings:
    return Settings.from_env({**BASE_ENV, **values})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest_asyncio.fixture(scope="module")
async def vault(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FakeKeyVault]:
    async with FakeKeyVault(tmp_path_factory.mktemp("keyvault")) as served:
        yield served


def trusting(vault: FakeKeyVault) -> dict[str, Any]:
    """Client options a test needs for the fake: trust its certificate, accept its challenge."""
    return {"connection_verify": str(vault.cert_path), "verify_challenge_resource": False}


# --- choosing the resolver ---------------------------------------------------------------------


async def test_without_keyvault_uri_secrets_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULER_API_KEY", "from-the-environment")
    resolver = secret_resolver(settings())
    assert isinstance(resolver, EnvSecretResolver)
    assert await resolver.get("SCHEDULER-API-KEY") == "from-the-environment"


async def test_with_keyvault_uri_secrets_come_from_the_vault_with_the_injected_credential(
    vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEDULER_API_KEY", "from-the-environment")
    vault.set_secret("SCHEDULER-API-KEY", "from-the-vault")
    credential = vault.credential()
    resolver = secret_resolver(settings(KEYVAULT_URI=vault.url), credential, **trusting(vault))
    try:
        assert isinstance(resolver, KeyVaultSecretResolver)
        assert isinstance(resolver, RefreshableSecretResolver)
        assert resolver.vault_url == vault.url
        # The vault name is kept as given (dashes are valid there), not turned into a variable.
        assert await resolver.get("SCHEDULER-API-KEY") == "from-the-vault"
    finally:
        await close_resolver(resolver)
    assert credential.requests, "the injected credential was not used"
    assert not credential.closed


async def test_the_default_client_refuses_a_vault_whose_challenge_names_another_resource(
    vault: FakeKeyVault,
) -> None:
    # In production the client checks the challenge's resource against the vault's domain:
    # the fake on 127.0.0.1 names vault.azure.net, which a real client must not trust.
    vault.set_secret("SOME-KEY", "must-not-be-read")
    resolver = secret_resolver(
        settings(KEYVAULT_URI=vault.url),
        vault.credential(),
        connection_verify=str(vault.cert_path),
    )
    try:
        with pytest.raises(OperatorError, match="KEYVAULT_URI must be a Key Vault URI"):
            await resolver.get("SOME-KEY")
    finally:
        await close_resolver(resolver)
    assert vault.reads["SOME-KEY"] == 0


@pytest.mark.parametrize(
    "uri",
    ["http://myvault.vault.azure.net", "https://myvault.vault.azure.net/secrets/x"],
)
def test_keyvault_uri_must_be_a_vaults_https_base_url(uri: str) -> None:
    with pytest.raises(SettingsError) as raised:
        secret_resolver(settings(KEYVAULT_URI=uri), FakeCredential("unused"))
    assert raised.value.name == "KEYVAULT_URI"


async def test_without_a_credential_the_resolver_makes_its_own_for_the_apps_identity_and_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[str | None, FakeCredential]] = []

    def azure_credential(client_id: str | None = None) -> FakeCredential:
        made.append((client_id, FakeCredential("token")))
        return made[-1][1]

    monkeypatch.setattr(agent.credentials, "azure_credential", azure_credential)
    client_id = "00000000-0000-0000-0000-0000000000c1"
    resolver = secret_resolver(
        settings(KEYVAULT_URI="https://myvault.vault.azure.net/", AZURE_CLIENT_ID=client_id)
    )
    assert isinstance(resolver, KeyVaultSecretResolver)
    assert resolver.vault_url == "https://myvault.vault.azure.net"
    await close_resolver(resolver)
    [(used_client_id, credential)] = made
    assert used_client_id == client_id and credential.closed


# --- which secrets a server uses ----------------------------------------------------------------


def configs(*servers: dict[str, Any]) -> tuple[McpServerConfig, ...]:
    return parse_mcp_servers(json.dumps({"mcp_servers": list(servers)}))


def test_secret_names_lists_every_secret_a_server_config_uses() -> None:
    api_key, headers, bearer, stdio, inline = configs(
        http_entry(
            "a",
            "http://127.0.0.1:1/mcp",
            auth={
                "type": "api_key",
                "client_id": {"secret": "A-CLIENT-ID"},
                "api_key": {"secret": "A-API-KEY"},
            },
        ),
        http_entry(
            "h",
            "http://127.0.0.1:1/mcp",
            auth={
                "type": "headers",
                "headers": {"X-One": {"secret": "H-ONE"}, "X-Two": "inline-value"},
            },
        ),
        http_entry(
            "b", "http://127.0.0.1:1/mcp", auth={"type": "bearer", "token": {"secret": "B"}}
        ),
        {
            "name": "s",
            "transport": {"type": "stdio", "command": "x", "env": {"TOKEN": {"secret": "S-TOKEN"}}},
        },
        http_entry("i", "http://127.0.0.1:1/mcp", auth={"type": "api_key", "api_key": "inline"}),
    )
    assert secret_names(api_key) == {"A-CLIENT-ID", "A-API-KEY"}
    assert secret_names(headers) == {"H-ONE"}
    assert secret_names(bearer) == {"B"}
    assert secret_names(stdio) == {"S-TOKEN"}
    assert secret_names(inline) == frozenset()


async def test_forget_secrets_makes_the_vault_resolver_read_that_servers_secrets_again(
    vault: FakeKeyVault,
) -> None:
    vault.set_secret("FORGET-KEY", "old")
    vault.set_secret("OTHER-KEY", "other")
    [server] = configs(
        http_entry(
            "f",
            "http://127.0.0.1:1/mcp",
            auth={"type": "bearer", "token": {"secret": "FORGET-KEY"}},
        )
    )
    resolver = KeyVaultSecretResolver.for_vault(vault.url, vault.credential(), **trusting(vault))
    try:
        await resolver.get("FORGET-KEY")
        await resolver.get("OTHER-KEY")
        vault.set_secret("FORGET-KEY", "new")
        assert forget_secrets(resolver, server) == {"FORGET-KEY"}
        assert await resolver.get("FORGET-KEY") == "new"
        await resolver.get("OTHER-KEY")
    finally:
        await resolver.aclose()
    assert (vault.reads["FORGET-KEY"], vault.reads["OTHER-KEY"]) == (2, 1)


def test_forget_secrets_is_a_no_op_for_the_environment_resolver() -> None:
    [server] = configs(
        http_entry("e", "http://127.0.0.1:1/mcp", auth={"type": "bearer", "token": {"secret": "E"}})
    )
    assert forget_secrets(EnvSecretResolver({}), server) == {"E"}


# --- a rotated MCP server key, end to end -------------------------------------------------------


@dataclass
class RotatingApiKey:
    """The MCP server's side of the key: 401 unless `X-API-Key` is the current key."""

    key: str

    def wrap(self, app: Any) -> Any:
        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                sent = dict(scope["headers"]).get(b"x-api-key", b"")
                if not hmac.compare_digest(sent, self.key.encode()):
                    body = b'{"error": "invalid API key"}'
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 401,
                            "headers": [(b"content-type", b"application/json")],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            await app(scope, receive, send)

        return guarded


@pytest.fixture
def guarded_server(tmp_path: Path) -> Iterator[tuple[AsgiServer, RotatingApiKey]]:
    guard = RotatingApiKey("")
    with AsgiServer(lambda: guard.wrap(demo_http_app(sandbox_dir=tmp_path))) as server:
        yield server, guard


async def greet(pool: McpPool) -> Any:
    return await pool.call_tool(
        "demo__greet", {"name": "Ada"}, context={}, idempotency_key="rotation-test"
    )


async def pool_with_vault_key(
    vault: FakeKeyVault, server: AsgiServer, secret: str, clock: FakeClock
) -> tuple[McpPool, KeyVaultSecretResolver]:
    resolver = KeyVaultSecretResolver.for_vault(
        vault.url, vault.credential(), clock=clock, **trusting(vault)
    )
    entry = http_entry(
        "demo", server.url(), auth={"type": "api_key", "api_key": {"secret": secret}}
    )
    return McpPool(configs(entry), secrets=resolver), resolver


def rotate(vault: FakeKeyVault, guard: RotatingApiKey, secret: str, key: str) -> None:
    vault.set_secret(secret, key)
    guard.key = key


async def test_after_an_auth_failure_the_next_call_uses_the_rotated_key(
    vault: FakeKeyVault, guarded_server: tuple[AsgiServer, RotatingApiKey]
) -> None:
    server, guard = guarded_server
    rotate(vault, guard, "DEMO-KEY-NOW", "key-one")
    pool, resolver = await pool_with_vault_key(vault, server, "DEMO-KEY-NOW", FakeClock())
    try:
        assert without_timestamp((await greet(pool)).text) == "Hello, Ada!"
        rotate(vault, guard, "DEMO-KEY-NOW", "key-two")
        refused = await greet(pool)  # the open session still sends key-one: 401
        assert refused.is_error and "rejected the app's credentials" in refused.text
        # the pool forgot the server's secrets on that 401: no TTL to wait for, no restart
        assert without_timestamp((await greet(pool)).text) == "Hello, Ada!"
    finally:
        await pool.aclose()
        await resolver.aclose()
    assert vault.reads["DEMO-KEY-NOW"] == 2


# --- the model key as {"secret": NAME} ----------------------------------------------------------


async def test_a_model_key_written_as_a_secret_is_read_from_key_vault_and_reaches_the_model(
    vault: FakeKeyVault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault.set_secret("AOAI-KEY", TEST_API_KEY)
    async with fake_openai() as model:
        model.brain.answer("hello")
        config = Settings.from_env(
            {
                "CONVERSATIONS_STORAGE": "UseDevelopmentStorage=true",
                "AZURE_OPENAI_ENDPOINT": model.base_url,
                "AZURE_OPENAI_DEPLOYMENT": TEST_DEPLOYMENT,
                "AZURE_OPENAI_API_KEY": '{"secret": "AOAI-KEY"}',
                "KEYVAULT_URI": vault.url,
            }
        )
        resolver = secret_resolver(config, vault.credential(), **trusting(vault))
        try:
            resolved = await resolve_model_key(config.model, resolver)
        finally:
            await close_resolver(resolver)
        async with build_model_client(resolved) as client:
            await client.complete([{"role": "user", "content": "hi"}], [])
    assert vault.reads["AOAI-KEY"] == 1  # through the same resolver as MCP secrets
    assert [r.api_key for r in model.chat_requests()] == [TEST_API_KEY]
    assert TEST_API_KEY not in repr(resolved) + caplog.text


async def test_without_key_vault_a_model_key_secret_is_the_environment_variable_of_that_name() -> (
    None
):
    model = settings(OPENAI_API_KEY='{"secret": "MODEL-KEY"}').model
    resolved = await resolve_model_key(model, EnvSecretResolver({"MODEL_KEY": "k-from-env"}))
    assert resolved.api_key is not None and resolved.api_key.value == "k-from-env"
    assert resolved.api_key_secret is None


async def test_a_model_key_secret_missing_from_key_vault_is_a_settings_error_naming_it(
    vault: FakeKeyVault,
) -> None:
    model = settings(KEYVAULT_URI=vault.url, OPENAI_API_KEY='{"secret": "NO-SUCH-KEY"}').model
    resolver = KeyVaultSecretResolver.for_vault(vault.url, vault.credential(), **trusting(vault))
    try:
        with pytest.raises(SettingsError, match=r"NO-SUCH-KEY.*not found in Key Vault"):
            await resolve_model_key(model, resolver)
    finally:
        await resolver.aclose()


async def test_an_inline_model_key_is_left_as_it_is() -> None:
    model = settings(OPENAI_API_KEY="k-inline").model
    assert await resolve_model_key(model, EnvSecretResolver({})) is model
