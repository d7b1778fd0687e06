"""HTTP credentials for an MCP server: static headers, or an Azure token asked for per request.

Secrets are resolved here, at connect time, and only ever travel in request headers: they are
not kept on the config, logged, or put into exception messages.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

import httpx2

from agent.errors import SettingsError
from agent.mcp.config import (
    SETTING,
    ApiKeyAuth,
    Auth,
    BearerAuth,
    HeadersAuth,
    ManagedIdentityAuth,
    NoAuth,
    SecretResolver,
)


class AccessTokenLike(Protocol):
    @property
    def token(self) -> str: ...  # read-only: azure-core's AccessToken is a NamedTuple


class AsyncTokenCredential(Protocol):
    """What we need of an azure-identity async credential (e.g. `DefaultAzureCredential`)."""

    async def get_token(self, *scopes: str) -> AccessTokenLike: ...


class AzureTokenAuth(httpx2.Auth):
    """Adds `Authorization: Bearer <token>` to every request, asking the credential each time.

    azure-identity caches tokens and refreshes them before they expire, so asking per request
    costs a dictionary lookup and a long-lived session never sends an expired token.
    """

    def __init__(self, credential: AsyncTokenCredential, scope: str) -> None:
        self._credential = credential
        self._scope = scope

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self._credential.get_token(self._scope)
        request.headers["Authorization"] = f"Bearer {token.token}"
        yield request


@dataclass(frozen=True)
class HttpCredentials:
    headers: dict[str, str]
    auth: httpx2.Auth | None = None

    def __repr__(self) -> str:  # header values are secrets
        return f"HttpCredentials(headers={sorted(self.headers)}, auth={type(self.auth).__name__})"


async def http_credentials(
    server: str,
    auth: Auth,
    secrets: SecretResolver,
    credential: AsyncTokenCredential | None,
) -> HttpCredentials:
    """Resolve the server's auth config into request headers and/or an httpx2 auth flow."""
    if isinstance(auth, NoAuth):
        return HttpCredentials({})
    if isinstance(auth, HeadersAuth):
        return HttpCredentials(
            {name: await value.resolve(secrets) for name, value in auth.headers.items()}
        )
    if isinstance(auth, ApiKeyAuth):
        headers = {auth.api_key_header: await auth.api_key.resolve(secrets)}
        if auth.client_id is not None:
            headers[auth.client_id_header] = await auth.client_id.resolve(secrets)
        return HttpCredentials(headers)
    if isinstance(auth, BearerAuth):
        return HttpCredentials({"Authorization": f"Bearer {await auth.token.resolve(secrets)}"})
    if isinstance(auth, ManagedIdentityAuth):
        if credential is None:
            raise SettingsError(
                SETTING,
                f"server {server!r} uses managed_identity but the app has no Azure credential",
            )
        return HttpCredentials({}, AzureTokenAuth(credential, auth.scope))
    raise TypeError(f"unknown auth config {type(auth).__name__}")
