"""Where `{"secret": NAME}` values come from.

Without a vault: the environment variable NAME (dashes → underscores). Key Vault
(`KEYVAULT_URI`) is a planned resolver with the same interface (`agent.mcp.config.SecretResolver`).
"""

from __future__ import annotations

from agent.errors import SettingsError
from agent.mcp.config import EnvSecretResolver, SecretResolver
from agent.settings import Settings


def secret_resolver(config: Settings) -> SecretResolver:
    if config.keyvault_uri:
        raise SettingsError(
            "KEYVAULT_URI",
            "Key Vault secrets are not supported yet; unset it and pass secrets as app settings",
        )
    return EnvSecretResolver()
