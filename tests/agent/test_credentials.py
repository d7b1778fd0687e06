"""The app's Azure credentials use the managed identity the settings name (AZURE_CLIENT_ID, the
App Insights authentication string), asked at a local App Service identity endpoint: the one
App Service and Functions expose (IDENTITY_ENDPOINT + IDENTITY_HEADER), served on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from agent.credentials import azure_credential
from agent.runtime import build_runtime
from agent.settings import Settings
from agent.telemetry import azure_monitor_options
from devkit.azurite import AzuriteInstance
from devkit.mcp_servers import AsgiServer, BearerCheck, demo_http_app

APP_IDENTITY = "5b0f6a5e-1c7a-4d1e-9a51-3f0b8e2d4c11"
OTHER_IDENTITY = "00000000-0000-0000-0000-0000000000bb"
BASE = {
    "AzureWebJobsStorage__accountName": "stagent01",
    "AZURE_OPENAI_ENDPOINT": "https://oai.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
}


class IdentityEndpoint:
    """App Service's managed identity endpoint: a token for any resource; records who asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, str]] = []
        self.url = ""

    async def token(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != "identity-header-secret":
            return web.json_response({"error": "bad header"}, status=401)
        self.asked.append(dict(request.query))
        expires_on = str(int(time.time()) + 3600)
        resource = request.query.get("resource", "")
        body = {"access_token": "t", "expires_on": expires_on, "resource": resource}
        return web.json_response({**body, "token_type": "Bearer"})


@pytest_asyncio.fixture
async def endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[IdentityEndpoint]:
    served = IdentityEndpoint()
    app = web.Application()
    app.router.add_get("/msi/token", served.token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "identity-header-secret")
    # Another identity in the process environment: the parsed settings must win over it.
    monkeypatch.setenv("AZURE_CLIENT_ID", OTHER_IDENTITY)
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield served
    await runner.cleanup()


def settings(**values: str) -> Settings:
    return Settings.from_env({**BASE, **values})


async def test_the_apps_credential_asks_for_the_identity_azure_client_id_names(
    endpoint: IdentityEndpoint,
) -> None:
    config = settings(AZURE_CLIENT_ID=APP_IDENTITY)
    credential = azure_credential(config.azure_client_id)
    try:
        await credential.get_token("https://storage.azure.com/.default")
    finally:
        await credential.close()
    [asked] = endpoint.asked
    assert (asked["client_id"], asked["resource"]) == (APP_IDENTITY, "https://storage.azure.com")


async def test_without_a_client_id_in_the_settings_the_system_assigned_identity_is_asked(
    endpoint: IdentityEndpoint,
) -> None:
    credential = azure_credential(settings().azure_client_id)
    try:
        await credential.get_token("https://vault.azure.net/.default")
    finally:
        await credential.close()
    [asked] = endpoint.asked
    assert "client_id" not in asked  # not the AZURE_CLIENT_ID left in the process environment


async def monitor_token(options: dict[str, Any]) -> None:
    # The exporter's credential is synchronous: ask it off the loop that serves the endpoint.
    await asyncio.to_thread(options["credential"].get_token, "https://monitor.azure.com//.default")


async def test_with_entra_auth_the_azure_monitor_exporter_gets_the_named_managed_identity(
    endpoint: IdentityEndpoint,
) -> None:
    auth = f"Authorization=AAD;ClientId={APP_IDENTITY}"
    options = azure_monitor_options(settings(APPLICATIONINSIGHTS_AUTHENTICATION_STRING=auth))
    assert options["connection_string"] == BASE["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    await monitor_token(options)
    [asked] = endpoint.asked
    assert (asked["client_id"], asked["resource"]) == (APP_IDENTITY, "https://monitor.azure.com/")


async def test_entra_auth_without_a_client_id_uses_the_apps_user_assigned_identity(
    endpoint: IdentityEndpoint,
) -> None:
    config = settings(
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING="Authorization=AAD", AZURE_CLIENT_ID=APP_IDENTITY
    )
    await monitor_token(azure_monitor_options(config))
    assert [asked["client_id"] for asked in endpoint.asked] == [APP_IDENTITY]


def test_without_entra_auth_the_exporter_gets_no_credential() -> None:
    assert "credential" not in azure_monitor_options(settings())


async def test_a_seed_shaped_managed_identity_server_gets_the_apps_token_for_its_scope(
    endpoint: IdentityEndpoint, azurite: AzuriteInstance, tmp_path: Path
) -> None:
    # The seeds write `use_managed_identity: true` inside `transport`: the runtime must still
    # build the app's credential for it (it used to look for "managed_identity" in the JSON).
    check = BearerCheck(valid={"t"})  # the token the identity endpoint hands out
    with AsgiServer(lambda: check.wrap(demo_http_app(tmp_path))) as server:
        auth = {"use_managed_identity": True, "scope": "api://scheduler-app/.default"}
        transport = {"type": "http", "url": server.url(), "auth": auth}
        servers = {"mcp": {"mcp_servers": [{"name": "Scheduler", "transport": transport}]}}
        config = Settings.from_env(
            {
                "CONVERSATIONS_STORAGE": azurite.connection_string,
                "CONVERSATIONS_CONTAINER": "seed-identity",
                "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # never called: keyed, no credential
                "OPENAI_API_KEY": "k",
                "OPENAI_MODEL": "m",
                "MCP_SERVERS": json.dumps(servers),
            }
        )
        rt = await build_runtime(config)
        try:
            tools = await rt.mcp.list_tools()
        finally:
            await rt.aclose()
    assert tools and check.seen and set(check.seen) == {"t"}
    assert [asked["resource"] for asked in endpoint.asked] == ["api://scheduler-app"]
