"""Where `{"secret": NAME}` values in `MCP_SERVERS` (and a model key written so) come from.

- `KEYVAULT_URI` set: Azure Key Vault (`agent.keyvault.KeyVaultSecretResolver`), read with the
  process's Azure credential, cached for a while; the vault secret is named exactly `NAME`.
- Otherwise: the environment variable `NAME`, dashes → underscores (`EnvSecretResolver`).

The MCP pool asks the resolver when it opens a session. A server that refuses the app's
credentials may have had its key rotated: `agent.mcp.config.forget_secrets` makes the next
connect read that server's secrets again (a no-op for resolvers without a cache).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent.mcp.config import EnvSecretResolver, SecretResolver, SecretValue
from agent.settings import ModelSettings, Secret, Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential


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
    vault_url = config.keyvault_uri  # checked and normalised by Settings
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


async def close_resolver(resolver: SecretResolver) -> None:
    """Close a resolver that holds clients (Key Vault); others have nothing to close."""
    aclose = getattr(resolver, "aclose", None)
    if aclose is not None:
        await aclose()
