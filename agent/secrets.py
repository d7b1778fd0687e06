"""Where `{"secret": NAME}` values in `MCP_SERVERS` (and a model key written so) come from.

- `KEYVAULT_URI` set: Azure Key Vault (`agent.keyvault.KeyVaultSecretResolver`), read with the
  process's Azure credential, cached for a while; the vault secret is named exactly `NAME`.
- Otherwise: the environment variable `NAME`, dashes → underscores (`EnvSecretResolver`).

The MCP pool asks the resolver when it opens a session. A server that refuses the app's
credentials may have had its key rotated: `forget_secrets(resolver, server_config)` makes the next
connect read that server's secrets again (a no-op for resolvers without a cache).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from agent.errors import SettingsError
from agent.mcp.config import (
    ApiKeyAuth,
    BearerAuth,
    EnvSecretResolver,
    HeadersAuth,
    McpServerConfig,
    SecretResolver,
    SecretValue,
    StdioTransport,
)
from agent.settings import ModelSettings, Secret, Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

KEYVAULT_SETTING = "KEYVAULT_URI"


@runtime_checkable
class RefreshableSecretResolver(Protocol):
    """A resolver that caches, and can be told to forget a value (e.g. after a 401 with it)."""

    async def get(self, name: str) -> str: ...

    def invalidate(self, name: str) -> None: ...


def secret_resolver(
    config: Settings,
    credential: AsyncTokenCredential | None = None,
    **client_options: Any,
) -> SecretResolver:
    """The resolver for this deployment. With `KEYVAULT_URI` the vault is read with `credential`
    (the process's `DefaultAzureCredential`); without one given, the resolver makes its own and
    closes it in `aclose()`. `client_options` go to the Key Vault `SecretClient`."""
    if not config.keyvault_uri:
        return EnvSecretResolver()
    vault_url = keyvault_url(config.keyvault_uri)
    from agent.keyvault import KeyVaultSecretResolver  # the Key Vault SDK only when it is used

    owns_credential = credential is None
    if credential is None:
        from agent.credentials import azure_credential

        credential = azure_credential(config.azure_client_id)
    return KeyVaultSecretResolver.for_vault(
        vault_url, credential, close_credential=owns_credential, **client_options
    )


async def resolve_model_key(model: ModelSettings, resolver: SecretResolver) -> ModelSettings:
    """The model settings with a `{"secret": NAME}` key read through `resolver` (Key Vault or
    the environment, as for MCP secrets); unchanged when the key is inline or absent.

    Read once, when the runtime is built: a rotated model key takes effect on the next restart
    (as with App Service Key Vault references)."""
    if model.api_key_secret is None:
        return model
    value = await SecretValue(secret_name=model.api_key_secret).resolve(resolver)
    return replace(model, api_key=Secret(value), api_key_secret=None)


def keyvault_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise SettingsError(
            KEYVAULT_SETTING, "must be an https:// URL (e.g. https://<name>.vault.azure.net)"
        )
    if parts.path.strip("/") or parts.query:
        raise SettingsError(
            KEYVAULT_SETTING, "must be the vault's base URL, without a path or query"
        )
    return f"https://{parts.netloc}"


def secret_names(config: McpServerConfig) -> frozenset[str]:
    """Every `{"secret": NAME}` the server's config uses (auth headers, keys, tokens, stdio env)."""
    values: list[SecretValue] = []
    auth = config.auth
    if isinstance(auth, HeadersAuth):
        values.extend(auth.headers.values())
    elif isinstance(auth, ApiKeyAuth):
        values.append(auth.api_key)
        if auth.client_id is not None:
            values.append(auth.client_id)
    elif isinstance(auth, BearerAuth):
        values.append(auth.token)
    if isinstance(config.transport, StdioTransport):
        values.extend(config.transport.env.values())
    return frozenset(v.secret_name for v in values if v.secret_name is not None)


def forget_secrets(resolver: SecretResolver, config: McpServerConfig) -> frozenset[str]:
    """Make the resolver re-read the server's secrets on the next connect; returns their names."""
    names = secret_names(config)
    if isinstance(resolver, RefreshableSecretResolver):
        for name in names:
            resolver.invalidate(name)
    return names


async def close_resolver(resolver: SecretResolver) -> None:
    """Close a resolver that holds clients (Key Vault); others have nothing to close."""
    aclose = getattr(resolver, "aclose", None)
    if aclose is not None:
        await aclose()
