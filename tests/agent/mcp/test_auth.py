"""Credentials reach MCP servers (API key, headers, bearer, managed identity); a rejected one
is a clear error; secret values are resolved at connect time and never logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.errors import SettingsError
from agent.mcp.pool import McpPool
from devkit.mcp_servers import (
    AsgiApp,
    AsgiServer,
    BearerCheck,
    demo_http_app,
    demo_sse_app,
    http_entry,
    require_api_key,
    sse_entry,
    without_timestamp,
)
from tests.agent.mcp.conftest import PoolFactory, connects

CLIENT_ID = "client-7f3a"
API_KEY = "key-9c2e-super-secret"
CONTEXT: dict[str, str] = {}
API_KEY_AUTH = {
    "type": "api_key",
    "client_id": {"secret": "DEMO-CLIENT-ID"},
    "api_key": {"secret": "DEMO-API-KEY"},
}
ENVIRON = {"DEMO_CLIENT_ID": CLIENT_ID, "DEMO_API_KEY": API_KEY}


@pytest.fixture(scope="module")
def guarded_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    sandbox = tmp_path_factory.mktemp("sandbox")
    with AsgiServer(lambda: require_api_key(demo_http_app(sandbox), CLIENT_ID, API_KEY)) as server:
        yield server


@pytest.fixture(scope="module")
def guarded_sse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServer]:
    sandbox = tmp_path_factory.mktemp("sandbox")
    with AsgiServer(lambda: require_api_key(demo_sse_app(sandbox), CLIENT_ID, API_KEY)) as server:
        yield server


async def greet(pool: McpPool, server: str = "demo") -> tuple[bool, str]:
    outcome = await pool.call_tool(
        f"{server}__greet", {"name": "Ada"}, context=CONTEXT, idempotency_key="a"
    )
    return outcome.is_error, without_timestamp(outcome.text)


async def test_api_key_auth_over_streamable_http(
    make_pool: PoolFactory, guarded_http: AsgiServer
) -> None:
    pool = await make_pool(
        http_entry("demo", guarded_http.url(), auth=API_KEY_AUTH), environ=ENVIRON
    )
    assert await greet(pool) == (False, "Hello, Ada!")


async def test_api_key_auth_over_sse(make_pool: PoolFactory, guarded_sse: AsgiServer) -> None:
    pool = await make_pool(
        sse_entry("demo", guarded_sse.url("/sse"), auth=API_KEY_AUTH), environ=ENVIRON
    )
    assert await greet(pool) == (False, "Hello, Ada!")


async def test_custom_header_names_and_static_headers_work_too(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    def app() -> AsgiApp:
        return require_api_key(demo_http_app(tmp_path), "id", "key", "X-Tenant", "X-Secret")

    with AsgiServer(app) as server:
        pool = await make_pool(
            http_entry(
                "custom",
                server.url(),
                auth={
                    "type": "api_key",
                    "client_id": "id",
                    "api_key": "key",
                    "client_id_header": "X-Tenant",
                    "api_key_header": "X-Secret",
                },
            ),
            http_entry(
                "headers",
                server.url(),
                auth={
                    "type": "headers",
                    "headers": {"X-Tenant": "id", "X-Secret": {"secret": "S"}},
                },
            ),
            environ={"S": "key"},
        )
        assert await greet(pool, "custom") == (False, "Hello, Ada!")
        assert await greet(pool, "headers") == (False, "Hello, Ada!")


@pytest.mark.parametrize(
    ("transport", "auth"),
    [
        ("http", None),
        ("http", {**API_KEY_AUTH, "api_key": "wrong-key"}),
        ("sse", None),
        ("sse", {**API_KEY_AUTH, "api_key": "wrong-key"}),
    ],
    ids=["http-no-key", "http-wrong-key", "sse-no-key", "sse-wrong-key"],
)
async def test_a_missing_or_wrong_credential_is_a_clear_error_the_model_sees(
    make_pool: PoolFactory,
    guarded_http: AsgiServer,
    guarded_sse: AsgiServer,
    transport: str,
    auth: dict | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    extra = {} if auth is None else {"auth": auth}
    entry = (
        http_entry("demo", guarded_http.url(), **extra)
        if transport == "http"
        else sse_entry("demo", guarded_sse.url("/sse"), **extra)
    )
    pool = await make_pool(entry, http_entry("open", "http://127.0.0.1:9/mcp"), environ=ENVIRON)
    caplog.set_level(logging.INFO, logger="agent.mcp")

    assert await pool.list_tools() == []  # left out, not raised
    assert any("outcome=auth_error cause=HTTP 401" in r.getMessage() for r in caplog.records)

    # A worker that never listed the server is asked to call one of its tools: the model is told why.
    is_error, text = await greet(pool)
    assert is_error
    assert text == "server demo rejected the app's credentials (HTTP 401); tell the operator"
    assert "wrong-key" not in caplog.text


async def test_a_credential_rejected_mid_session_is_reported_not_retried(
    make_pool: PoolFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = BearerCheck(valid={"token-1"})
    with AsgiServer(lambda: check.wrap(demo_http_app(tmp_path))) as server:
        pool = await make_pool(
            http_entry("demo", server.url(), auth={"type": "bearer", "token": "token-1"})
        )
        assert await greet(pool) == (False, "Hello, Ada!")
        check.valid.clear()  # the server rotated its keys
        caplog.set_level(logging.INFO, logger="agent.mcp")
        is_error, text = await greet(pool)
        assert is_error
        assert text == "server demo rejected the app's credentials (HTTP 401); tell the operator"
        assert "token-1" not in caplog.text


@dataclass
class FakeAzureCredential:
    """Stands in for azure-identity's async credential: hands out the current token per scope."""

    token: str
    scopes: list[str] = field(default_factory=list)

    async def get_token(self, *scopes: str) -> object:
        self.scopes.extend(scopes)

        @dataclass
        class AccessToken:
            token: str
            expires_on: int = 0

        return AccessToken(self.token)


async def test_managed_identity_asks_the_credential_on_every_request(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    check = BearerCheck(valid={"aad-token-1", "aad-token-2"})
    credential = FakeAzureCredential("aad-token-1")
    with AsgiServer(lambda: check.wrap(demo_http_app(tmp_path))) as server:
        pool = await make_pool(
            http_entry(
                "demo",
                server.url(),
                auth={"type": "managed_identity", "scope": "api://demo/.default"},
            ),
            credential=credential,
        )
        assert await greet(pool) == (False, "Hello, Ada!")
        credential.token = "aad-token-2"  # azure-identity refreshed its cached token
        assert await greet(pool) == (False, "Hello, Ada!")
        assert check.seen[-1] == "aad-token-2"
        assert connects(pool, "demo") == 1  # same session, fresh token
        assert set(credential.scopes) == {"api://demo/.default"}


async def test_managed_identity_without_a_credential_fails_at_construction(
    make_pool: PoolFactory,
) -> None:
    from agent.errors import SettingsError

    with pytest.raises(SettingsError, match="uses managed_identity but no Azure credential"):
        await make_pool(
            http_entry("demo", "https://h/mcp", auth={"type": "managed_identity", "scope": "s"})
        )


@dataclass
class CountingResolver:
    values: dict[str, str]
    asked: list[str] = field(default_factory=list)

    async def get(self, name: str) -> str:
        self.asked.append(name)
        return self.values[name]


async def test_secrets_are_resolved_at_connect_time_not_before(
    make_pool: PoolFactory, guarded_http: AsgiServer
) -> None:
    resolver = CountingResolver({"DEMO-CLIENT-ID": CLIENT_ID, "DEMO-API-KEY": API_KEY})
    pool = await make_pool(
        http_entry("demo", guarded_http.url(), auth=API_KEY_AUTH), secrets=resolver
    )
    assert resolver.asked == []
    await greet(pool)
    await greet(pool)
    assert sorted(resolver.asked) == ["DEMO-API-KEY", "DEMO-CLIENT-ID"]  # once per connect


async def test_a_missing_secret_leaves_the_server_out_and_names_the_variable(
    make_pool: PoolFactory, guarded_http: AsgiServer, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await make_pool(http_entry("demo", guarded_http.url(), auth=API_KEY_AUTH), environ={})
    caplog.set_level(logging.INFO, logger="agent.mcp")
    assert await pool.list_tools() == []
    expected = "setting DEMO_API_KEY: secret 'DEMO-API-KEY' named in MCP_SERVERS is not set"
    assert expected in caplog.text
    with pytest.raises(SettingsError, match=expected):  # a call to it fails loudly, not silently
        await greet(pool)


async def test_secret_values_never_reach_logs_or_errors(
    make_pool: PoolFactory, guarded_http: AsgiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.mcp")
    pool = await make_pool(
        http_entry("demo", guarded_http.url(), auth=API_KEY_AUTH),
        http_entry("gone", "http://127.0.0.1:9/mcp?sig=url-secret-value"),
        environ=ENVIRON,
    )
    await pool.list_tools()
    await greet(pool)
    messages = caplog.text + repr(pool.status())
    assert API_KEY not in messages and CLIENT_ID not in messages
    assert "url-secret-value" not in messages
