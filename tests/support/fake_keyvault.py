"""A local Azure Key Vault (secrets, read side) over HTTPS, for the real `azure-keyvault-secrets` client.

    async with FakeKeyVault(tmp_path) as vault:
        vault.set_secret("API-KEY", "v1")
        client = SecretClient(vault.url, vault.credential(), connection_verify=vault.cert_path,
                              verify_challenge_resource=False)

What it speaks, as Key Vault does:
- the challenge flow: a request without (or with a wrong) bearer token gets 401 with
  `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
  resource="https://vault.azure.net"`; the client then asks its credential for a token for
  `https://vault.azure.net/.default` and repeats the request with it;
- `GET /secrets/{name}` (latest version) and `GET /secrets/{name}/{version}`, `api-version`
  required; the secret bundle JSON (`value`, `id`, `attributes`);
- 404 with Key Vault's error JSON (`SecretNotFound`) for a missing secret, 403 (`Forbidden` /
  `SecretDisabled`) for a disabled secret or when access is denied.

The resource in the challenge is Key Vault's, not this server's address, so a client must be
built with `verify_challenge_resource=False` to accept it (the default client refuses: see the
tests). The certificate is self-signed, made at start for 127.0.0.1 and localhost; pass
`cert_path` as `connection_verify`. `reads[name]` counts authorized reads of a secret and
`challenges` the 401 challenges; `set_secret` rotates a value (a new version); `hold_reads()`
holds answers back (each read's name arrives in `held`) until `release_reads()`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import socket
import ssl
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken

HOST = "127.0.0.1"
DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
KEYVAULT_RESOURCE = "https://vault.azure.net"
KEYVAULT_SCOPE = f"{KEYVAULT_RESOURCE}/.default"
_SECRET_PATH = re.compile(r"^/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?/?$")


# --- TLS -------------------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (it is its own CA); (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-keyvault.localhost")])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,  # it signs itself: the client trusts it as its own CA
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-keyvault.crt", directory / "fake-keyvault.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --- the credential ----------------------------------------------------------------------------


@dataclass
class FakeCredential:
    """An async token credential (Entra ID cannot run here): hands out the vault's token and
    records what it was asked for."""

    token: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.requests.append({"scopes": scopes, "tenant_id": kwargs.get("tenant_id")})
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# --- the vault ---------------------------------------------------------------------------------


@dataclass
class _Version:
    version: str
    value: str
    created: int
    enabled: bool = True


class FakeKeyVault:
    """The vault on 127.0.0.1 (ephemeral port, HTTPS), served in the test's event loop."""

    def __init__(self, directory: Path, *, tenant_id: str = DEFAULT_TENANT) -> None:
        self.tenant_id = tenant_id
        self.token = f"fake-keyvault-token-{uuid.uuid4().hex}"
        self.cert_path, self._key_path = self_signed_certificate(directory)
        self.reads: Counter[str] = Counter()  # authorized GETs per secret name (found or not)
        self.challenges = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.denied = False  # True: every authorized read is 403 Forbidden
        self.held: asyncio.Queue[str] = asyncio.Queue()  # names of reads waiting at the gate
        self._gate: asyncio.Event | None = None
        self._secrets: dict[str, list[_Version]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def credential(self) -> FakeCredential:
        return FakeCredential(self.token)

    # --- what a test does ----------------------------------------------------------------------

    def set_secret(self, name: str, value: str) -> str:
        """Add a secret, or rotate it: a new current version with `value`; returns the version."""
        version = uuid.uuid4().hex
        self._secrets.setdefault(name.lower(), []).append(
            _Version(version, value, int(time.time()))
        )
        return version

    def disable(self, name: str) -> None:
        self._secrets[name.lower()][-1].enabled = False

    def delete(self, name: str) -> None:
        self._secrets.pop(name.lower(), None)

    def hold_reads(self) -> None:
        """Hold answers back (each read's name goes to `held`) until `release_reads()`: the
        value is the one at the time of the request, as for a response still on the wire."""
        self._gate = asyncio.Event()

    def release_reads(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    # --- serving -------------------------------------------------------------------------------

    async def start(self) -> FakeKeyVault:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self._key_path)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeKeyVault:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.challenges += 1
            return self._challenge()
        if "api-version" not in request.query:
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        match = _SECRET_PATH.match(request.path)
        if match is None or request.method != "GET":
            return _error(400, "BadParameter", "This fake vault serves GET /secrets/{name} only.")
        name, version = match["name"], match["version"] or None
        self.reads[name] += 1
        response = self._read(name, version)
        gate = self._gate
        if gate is not None:  # answered, but the answer is held back (still "in flight")
            self.held.put_nowait(name)
            await gate.wait()
        return response

    def _challenge(self) -> web.Response:
        authority = f"https://login.microsoftonline.com/{self.tenant_id}"
        response = _error(
            401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."
        )
        response.headers["WWW-Authenticate"] = (
            f'Bearer authorization="{authority}", resource="{KEYVAULT_RESOURCE}"'
        )
        return response

    def _read(self, name: str, version: str | None) -> web.Response:
        if self.denied:
            return _error(
                403,
                "Forbidden",
                "Caller is not authorized to perform action on resource. "
                "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                inner="ForbiddenByRbac",
            )
        versions = self._secrets.get(name.lower(), [])
        found = versions[-1] if versions and version is None else None
        if version is not None:
            found = next((v for v in versions if v.version == version), None)
        if found is None:
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name}{'/' + version if version else ''} was not "
                "found in this key vault. If you recently deleted this secret you may be able "
                "to recover it using the correct recovery command. For help resolving this "
                "issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        if not found.enabled:
            return _error(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                inner="SecretDisabled",
            )
        return web.json_response(
            {
                "value": found.value,
                "id": f"{self.url}/secrets/{name}/{found.version}",
                "attributes": {
                    "enabled": True,
                    "created": found.created,
                    "updated": found.created,
                    "recoveryLevel": "Recoverable+Purgeable",
                    "recoverableDays": 90,
                },
                "tags": {},
            }
        )


def _error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return web.json_response({"error": error}, status=status)
