"""`{"secret": NAME}` values read from Azure Key Vault, once, then cached for a while.

    resolver = KeyVaultSecretResolver.for_vault("https://myvault.vault.azure.net", credential)
    api_key = await resolver.get("SCHEDULER-API-KEY")    # one request, then cached (TTL)
    resolver.invalidate("SCHEDULER-API-KEY")             # the server refused it: re-read next time
    await resolver.aclose()

- Each name is read at most once per TTL (default 5 minutes), and concurrent first reads of a
  name share one request. A rotated secret therefore takes effect without a restart: at the
  latest when the TTL runs out, at once for a caller that saw its credentials refused and called
  `invalidate(name)`.
- A missing secret is a `SettingsError` naming it (remembered for a short while, so a missing
  secret does not turn every connect attempt into a vault request). Any other vault failure is
  an `OperatorError` that names the vault, the secret and the cause, never a value.
- `NAME/VERSION` pins a version; a plain `NAME` follows the latest one.
- Values are never logged; only names are.

Imported on first use (when `KEYVAULT_URI` is set), not at cold start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from agent.errors import OperatorError, SettingsError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

logger = logging.getLogger("agent.keyvault")

KEYVAULT_SETTING = "KEYVAULT_URI"
DEFAULT_TTL_SECONDS = 300.0
DEFAULT_MISSING_TTL_SECONDS = 30.0
# Key Vault's own rules: 1-127 letters, digits and dashes; versions are 32 hex digits.
SECRET_NAME_PATTERN = re.compile(r"^[0-9A-Za-z-]{1,127}$")
SECRET_VERSION_PATTERN = re.compile(r"^[0-9A-Za-z]{1,64}$")


class SecretLike(Protocol):
    @property
    def value(self) -> str | None: ...


class SecretReader(Protocol):
    """What the resolver needs of `azure.keyvault.secrets.aio.SecretClient`."""

    # Awaitable, not `async def`: the SDK's method is a decorated def returning an awaitable
    def get_secret(self, name: str, version: str | None = None) -> Awaitable[SecretLike]: ...


@dataclass(frozen=True)
class _Cached:
    value: str | None = field(repr=False)  # None: the vault has no such secret
    expires_at: float


def split_secret_name(name: str) -> tuple[str, str | None]:
    """`NAME` or `NAME/VERSION` → (name, version), checked against Key Vault's naming rules."""
    secret, _, version = name.partition("/")
    if not SECRET_NAME_PATTERN.match(secret):
        raise SettingsError(
            name, "is not a Key Vault secret name (1-127 letters, digits and dashes)"
        )
    if version and not SECRET_VERSION_PATTERN.match(version):
        raise SettingsError(name, "has a malformed Key Vault secret version after '/'")
    return secret, version or None


class KeyVaultSecretResolver:
    """A `SecretResolver` (agent.mcp.config) backed by one vault; long-lived, one per process."""

    def __init__(
        self,
        client: SecretReader,
        *,
        vault_url: str,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        missing_ttl_seconds: float = DEFAULT_MISSING_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._client = client
        self._vault_url = vault_url.rstrip("/")
        self._ttl = ttl_seconds
        self._missing_ttl = missing_ttl_seconds
        self._clock = clock
        self._closers = tuple(closers)
        self._cache: dict[str, _Cached] = {}
        self._reads: dict[str, asyncio.Task[_Cached]] = {}
        # Bumped by invalidate(): a read that started before it must not refill the cache.
        self._generations: dict[str, int] = {}

    @classmethod
    def for_vault(
        cls,
        vault_url: str,
        credential: AsyncTokenCredential,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        missing_ttl_seconds: float = DEFAULT_MISSING_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        close_credential: bool = False,
        **client_options: Any,
    ) -> KeyVaultSecretResolver:
        """A resolver with its own `SecretClient`. `client_options` go to the client (azure-core
        options such as `connection_verify`, `retry_total`, `api_version`)."""
        from azure.keyvault.secrets.aio import SecretClient

        client = SecretClient(vault_url, credential, **client_options)
        closers: list[Callable[[], Awaitable[None]]] = [client.close]
        if close_credential:
            closers.append(credential.close)
        return cls(
            client,
            vault_url=vault_url,
            ttl_seconds=ttl_seconds,
            missing_ttl_seconds=missing_ttl_seconds,
            clock=clock,
            closers=closers,
        )

    @property
    def vault_url(self) -> str:
        return self._vault_url

    async def get(self, name: str) -> str:
        cached = self._cache.get(name)
        if cached is None or self._clock() >= cached.expires_at:
            cached = await asyncio.shield(self._read_once(name))
        if cached.value is None:
            raise SettingsError(name, f"not found in Key Vault {self._vault_url}")
        return cached.value

    def invalidate(self, name: str) -> None:
        """Forget `name`: the next `get` reads the vault again (e.g. after a 401 with it)."""
        self._generations[name] = self._generations.get(name, 0) + 1
        self._cache.pop(name, None)
        self._reads.pop(name, None)  # callers already waiting on it still get its answer

    def _read_once(self, name: str) -> asyncio.Task[_Cached]:
        """The read in flight for `name`, or a new one: concurrent callers share one request."""
        task = self._reads.get(name)
        if task is None:
            generation = self._generations.get(name, 0)
            task = asyncio.create_task(self._read(name, generation), name=f"keyvault:{name}")
            self._reads[name] = task
            task.add_done_callback(lambda done: self._settle(name, done))
        return task

    def _settle(self, name: str, task: asyncio.Task[_Cached]) -> None:
        if self._reads.get(name) is task:
            del self._reads[name]
        if not task.cancelled():
            task.exception()  # every waiter may have gone: mark the outcome as seen

    async def _read(self, name: str, generation: int) -> _Cached:
        secret_name, version = split_secret_name(name)
        try:
            secret = await self._client.get_secret(secret_name, version)
        except ResourceNotFoundError:
            cached = _Cached(None, self._clock() + self._missing_ttl)
        except Exception as exc:
            raise self._failure(name, exc) from exc
        else:
            if not secret.value:
                raise SettingsError(name, f"is empty in Key Vault {self._vault_url}")
            cached = _Cached(secret.value, self._clock() + self._ttl)
            logger.info("key vault secret read name=%s ttl_seconds=%g", name, self._ttl)
        if self._generations.get(name, 0) == generation:
            self._cache[name] = cached
        return cached

    def _failure(self, name: str, exc: Exception) -> OperatorError:
        """A clear operator-facing error: vault, secret name and cause; never a value."""
        where = f"Key Vault {self._vault_url}, secret {name!r}"
        if isinstance(exc, ClientAuthenticationError):
            return OperatorError(
                f"{where}: the app could not authenticate ({_status(exc)}); check the app's "
                "managed identity (or developer login) and its tenant"
            )
        if isinstance(exc, HttpResponseError) and exc.status_code == 403:
            return OperatorError(
                f"{where}: access denied (HTTP 403 {_error_code(exc)}); give the app's identity "
                "the 'Key Vault Secrets User' role, and check the secret is enabled"
            )
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            return OperatorError(
                f"{where}: the vault answered HTTP {exc.status_code} {_error_code(exc)}"
            )
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return OperatorError(f"{where}: the vault is unreachable ({type(exc).__name__})")
        if isinstance(exc, ValueError) and "challenge" in str(exc):
            # The client refuses a token challenge for a resource other than the vault's domain.
            return OperatorError(
                f"{where}: the server's authentication challenge does not match the vault's "
                f"domain; {KEYVAULT_SETTING} must be a Key Vault URI "
                "(https://<name>.vault.azure.net)"
            )
        return OperatorError(f"{where}: reading it failed ({type(exc).__name__})")

    async def aclose(self) -> None:
        reads = list(self._reads.values())
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        self._reads.clear()
        self._cache.clear()
        for close in self._closers:
            await close()


def _status(exc: HttpResponseError) -> str:
    return f"HTTP {exc.status_code}" if exc.status_code else type(exc).__name__


def _error_code(exc: HttpResponseError) -> str:
    """Key Vault's error code (`Forbidden`, `SecretDisabled`, `Throttled`, ...), if it sent one."""
    error = exc.error
    code = getattr(error, "code", None) if error is not None else None
    inner = getattr(error, "innererror", None) if error is not None else None
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    return " / ".join(c for c in (code, inner_code) if c) or (exc.reason or "")
