"""Key Vault secrets: the real `azure-keyvault-secrets` async client against a local HTTPS vault.

Reads go through the client's challenge flow (401 → token for Key Vault → retry) every time the
resolver is built anew; the cache, TTL, rotation and error paths are observed at the vault by
counting its reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from agent.errors import OperatorError, SettingsError
from agent.keyvault import DEFAULT_TTL_SECONDS, KeyVaultSecretResolver
from devkit.mcp_servers import free_port
from tests.support.fake_keyvault import KEYVAULT_SCOPE, FakeCredential, FakeKeyVault

WAIT = 5.0


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


ResolverFactory = Callable[..., KeyVaultSecretResolver]


@pytest_asyncio.fixture
async def make_resolver(vault: FakeKeyVault, clock: FakeClock) -> AsyncIterator[ResolverFactory]:
    """`make_resolver(**options)`: a resolver with a real SecretClient for the fake vault."""
    made: list[KeyVaultSecretResolver] = []

    def make(url: str | None = None, **options: Any) -> KeyVaultSecretResolver:
        options.setdefault("clock", clock)
        resolver = KeyVaultSecretResolver.for_vault(
            url or vault.url,
            vault.credential(),
            connection_verify=str(vault.cert_path),
            # The fake's challenge names Key Vault's resource, not 127.0.0.1 (see fake_keyvault).
            verify_challenge_resource=False,
            **options,
        )
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        await resolver.aclose()


def unique(name: str, request: pytest.FixtureRequest) -> str:
    """A secret name of this test's own (the vault is shared by the module)."""
    return f"{name}-{request.node.name.replace('_', '-')}"[:127]


async def test_a_secret_is_read_from_the_vault_with_a_token_for_key_vault(
    vault: FakeKeyVault, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "value-one")
    credential = vault.credential()
    resolver = KeyVaultSecretResolver.for_vault(
        vault.url,
        credential,
        connection_verify=str(vault.cert_path),
        verify_challenge_resource=False,
    )
    try:
        assert await resolver.get(name) == "value-one"
    finally:
        await resolver.aclose()
    assert vault.reads[name] == 1
    # The token was asked for Key Vault's scope, in the tenant the vault's challenge named.
    assert credential.requests[0] == {"scopes": (KEYVAULT_SCOPE,), "tenant_id": vault.tenant_id}
    assert not credential.closed  # injected: the process owns it


async def test_many_reads_within_the_ttl_make_one_request(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "cached-value")
    resolver = make_resolver()
    for _ in range(25):
        assert await resolver.get(name) == "cached-value"
    assert vault.reads[name] == 1


async def test_concurrent_first_reads_of_a_name_make_one_request(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "shared-value")
    resolver = make_resolver()
    values = await asyncio.gather(*(resolver.get(name) for _ in range(50)))
    assert values == ["shared-value"] * 50
    assert vault.reads[name] == 1


async def test_a_read_after_the_ttl_reads_the_vault_again(
    vault: FakeKeyVault,
    make_resolver: ResolverFactory,
    clock: FakeClock,
    request: pytest.FixtureRequest,
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "before")
    resolver = make_resolver()
    assert await resolver.get(name) == "before"
    vault.set_secret(name, "after")  # rotated in the vault
    clock.advance(DEFAULT_TTL_SECONDS - 1)
    assert await resolver.get(name) == "before"
    assert vault.reads[name] == 1
    clock.advance(1)
    assert await resolver.get(name) == "after"
    assert vault.reads[name] == 2


async def test_a_custom_ttl_is_honoured(
    vault: FakeKeyVault,
    make_resolver: ResolverFactory,
    clock: FakeClock,
    request: pytest.FixtureRequest,
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "v")
    resolver = make_resolver(ttl_seconds=10)
    await resolver.get(name)
    clock.advance(10)
    await resolver.get(name)
    assert vault.reads[name] == 2


async def test_a_rotated_secret_is_read_again_after_invalidate(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "old-key")
    resolver = make_resolver()
    assert await resolver.get(name) == "old-key"
    vault.set_secret(name, "new-key")
    assert await resolver.get(name) == "old-key"  # still cached: nobody said it changed
    resolver.invalidate(name)  # e.g. the MCP server answered 401 with the old key
    assert await resolver.get(name) == "new-key"
    assert await resolver.get(name) == "new-key"
    assert vault.reads[name] == 2


async def test_invalidating_one_name_keeps_the_others_cached(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    first, second = unique("FIRST", request), unique("SECOND", request)
    vault.set_secret(first, "1")
    vault.set_secret(second, "2")
    resolver = make_resolver()
    await asyncio.gather(resolver.get(first), resolver.get(second))
    resolver.invalidate(first)
    await asyncio.gather(resolver.get(first), resolver.get(second))
    assert (vault.reads[first], vault.reads[second]) == (2, 1)


async def test_a_read_in_flight_when_invalidated_does_not_refill_the_cache(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "old-key")
    resolver = make_resolver()
    vault.hold_reads()
    try:
        early = asyncio.create_task(resolver.get(name))
        assert await asyncio.wait_for(vault.held.get(), WAIT) == name
        vault.set_secret(name, "new-key")
        resolver.invalidate(name)  # while the old read is still at the vault
    finally:
        vault.release_reads()
    assert await early == "old-key"  # it asked before the rotation
    assert await resolver.get(name) == "new-key"  # but its answer was not cached
    assert vault.reads[name] == 2


async def test_a_cancelled_caller_does_not_cancel_the_read_for_the_others(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "value")
    resolver = make_resolver()
    vault.hold_reads()
    try:
        first = asyncio.create_task(resolver.get(name))
        second = asyncio.create_task(resolver.get(name))
        await asyncio.wait_for(vault.held.get(), WAIT)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    finally:
        vault.release_reads()
    assert await asyncio.wait_for(second, WAIT) == "value"
    assert first.cancelled()
    assert vault.reads[name] == 1


async def test_a_pinned_version_is_read_and_does_not_follow_rotation(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    version = vault.set_secret(name, "first")
    vault.set_secret(name, "second")
    resolver = make_resolver()
    assert await resolver.get(f"{name}/{version}") == "first"
    assert await resolver.get(name) == "second"


async def test_a_missing_secret_is_a_settings_error_naming_it(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("MISSING", request)
    resolver = make_resolver()
    with pytest.raises(SettingsError) as raised:
        await resolver.get(name)
    assert raised.value.name == name
    assert str(raised.value) == f"setting {name}: not found in Key Vault {vault.url}"


async def test_a_missing_secret_is_remembered_briefly_then_read_again(
    vault: FakeKeyVault,
    make_resolver: ResolverFactory,
    clock: FakeClock,
    request: pytest.FixtureRequest,
) -> None:
    name = unique("MISSING", request)
    resolver = make_resolver(missing_ttl_seconds=30)
    for _ in range(5):  # e.g. every connect attempt of a misconfigured server
        with pytest.raises(SettingsError):
            await resolver.get(name)
    assert vault.reads[name] == 1
    vault.set_secret(name, "added-by-the-operator")
    clock.advance(30)
    assert await resolver.get(name) == "added-by-the-operator"
    assert vault.reads[name] == 2


async def test_an_invalid_secret_name_fails_without_a_request(
    vault: FakeKeyVault, make_resolver: ResolverFactory
) -> None:
    resolver = make_resolver()
    before = len(vault.requests)
    with pytest.raises(SettingsError, match="not a Key Vault secret name") as raised:
        await resolver.get("SCHEDULER_API_KEY")  # underscores: an environment-style name
    assert raised.value.name == "SCHEDULER_API_KEY"
    assert len(vault.requests) == before


async def test_a_denied_read_is_an_operator_error_naming_the_vault_and_secret(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "the-value-itself")
    resolver = make_resolver()
    vault.denied = True
    try:
        with pytest.raises(OperatorError) as raised:
            await resolver.get(name)
    finally:
        vault.denied = False
    assert not isinstance(raised.value, SettingsError)
    message = str(raised.value)
    assert vault.url in message and repr(name) in message
    assert "HTTP 403 Forbidden / ForbiddenByRbac" in message
    assert "Key Vault Secrets User" in message
    # A failure is not cached: the next read asks again.
    assert await resolver.get(name) == "the-value-itself"


async def test_a_disabled_secret_is_an_operator_error(
    vault: FakeKeyVault, make_resolver: ResolverFactory, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "disabled-value")
    vault.disable(name)
    with pytest.raises(OperatorError, match="SecretDisabled"):
        await make_resolver().get(name)


async def test_a_token_the_vault_refuses_is_an_operator_error(
    vault: FakeKeyVault, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "v")
    resolver = KeyVaultSecretResolver.for_vault(
        vault.url,
        FakeCredential("a-token-for-another-tenant"),
        connection_verify=str(vault.cert_path),
        verify_challenge_resource=False,
    )
    try:
        with pytest.raises(OperatorError, match=r"could not authenticate \(HTTP 401\)"):
            await resolver.get(name)
    finally:
        await resolver.aclose()
    assert vault.reads[name] == 0


async def test_an_unreachable_vault_is_an_operator_error(make_resolver: ResolverFactory) -> None:
    resolver = make_resolver(f"https://127.0.0.1:{free_port()}", retry_total=0)
    with pytest.raises(OperatorError, match="the vault is unreachable") as raised:
        await resolver.get("API-KEY")
    assert "'API-KEY'" in str(raised.value)


async def test_no_secret_value_reaches_a_log_record_or_an_exception(
    vault: FakeKeyVault,
    make_resolver: ResolverFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    name = unique("API-KEY", request)
    values = ["s3cret-value-one-9f8e7d", "s3cret-value-two-1a2b3c"]
    vault.set_secret(name, values[0])
    caplog.set_level(logging.DEBUG)  # everything, including azure-core's request logging
    resolver = make_resolver()
    errors: list[BaseException] = []
    assert await resolver.get(name) == values[0]
    vault.set_secret(name, values[1])
    resolver.invalidate(name)
    assert await resolver.get(name) == values[1]
    clock.advance(DEFAULT_TTL_SECONDS)
    vault.denied = True
    try:
        with pytest.raises(OperatorError) as denied:
            await resolver.get(name)
        errors.append(denied.value)
    finally:
        vault.denied = False
    vault.disable(name)
    with pytest.raises(OperatorError) as disabled:
        await resolver.get(name)
    errors.append(disabled.value)

    assert any(r.name == "agent.keyvault" for r in caplog.records), "the reads were not logged"
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records)
    described = "\n".join(_chain_text(error) for error in errors)
    for value in values:
        assert value not in logged
        assert value not in described


def _chain_text(error: BaseException | None) -> str:
    parts = []
    while error is not None:
        parts.append(f"{error!s} {error!r} {getattr(error, 'message', '')}")
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


async def test_aclose_closes_the_client_and_only_an_owned_credential(
    vault: FakeKeyVault, request: pytest.FixtureRequest
) -> None:
    name = unique("API-KEY", request)
    vault.set_secret(name, "v")
    injected, owned = vault.credential(), vault.credential()
    options = {"connection_verify": str(vault.cert_path), "verify_challenge_resource": False}
    borrowing = KeyVaultSecretResolver.for_vault(vault.url, injected, **options)
    owning = KeyVaultSecretResolver.for_vault(vault.url, owned, close_credential=True, **options)
    await borrowing.get(name)
    await owning.get(name)
    await borrowing.aclose()
    await owning.aclose()
    assert (injected.closed, owned.closed) == (False, True)
