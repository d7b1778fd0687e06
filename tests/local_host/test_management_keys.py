"""The durable management API is behind a system key of its own, on both of its paths.

It lists every instance with its input, reads histories, raises events, terminates, purges and
starts orchestrations: nobody without the system key may do any of that (a function key is not
enough), the app's own durable client keeps working, and no URL the host hands out carries a key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import azure.durable_functions as df
import pytest
import pytest_asyncio

from local_host.errors import LocalHostError
from local_host.host import LocalHost, check_exposure, is_loopback

from .conftest import DURABLE_APP, TERMINAL

FUNCTION_KEY = "mgmt-function-key-5f1e"
SYSTEM_KEY = "mgmt-system-key-0c9a7d"
PREFIXES = ["/durabletask/", "/runtime/webhooks/durabletask/"]
REPO_ROOT = Path(__file__).resolve().parents[2]

# (method, path after the prefix, JSON body): every kind of thing the API can show or change.
OPERATIONS = [
    ("GET", "instances/", None),
    ("GET", "instances/guarded-1?showHistory=true&showHistoryOutput=true&showInput=true", None),
    ("POST", "instances/guarded-1/raiseEvent/approval", {"approved": True}),
    ("POST", "instances/guarded-1/terminate?reason=x", None),
    ("DELETE", "instances/guarded-1", None),
    ("DELETE", "instances/?createdTimeFrom=2000-01-01T00:00:00Z", None),
    ("POST", "orchestrators/sequence/intruder-1", ["Mallory"]),
]
WRONG_CREDENTIALS = {
    "none": {},
    "function key header": {"x-functions-key": FUNCTION_KEY},
    "wrong key header": {"x-functions-key": "guess"},
    "wrong basic password": {"Authorization": aiohttp.BasicAuth("durabletask", "guess").encode()},
}


@pytest_asyncio.fixture(scope="module")
async def keyed_host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalHost]:
    state = tmp_path_factory.mktemp("keys") / "state.sqlite3"
    async with LocalHost(
        DURABLE_APP,
        port=0,
        state_path=state,
        function_key=FUNCTION_KEY,
        system_key=SYSTEM_KEY,
        apply_local_settings=False,
    ) as host:
        yield host


@pytest_asyncio.fixture
async def waiting(keyed_host: LocalHost) -> AsyncIterator[df.DurableOrchestrationClient]:
    """`guarded-1` waits for its approval event; the app's own client (the binding) started it."""
    client = df.DurableOrchestrationClient(keyed_host.client_binding())
    await client.start_new("approval", "guarded-1")
    await keyed_host.runtime.wait_for_status("guarded-1", {"Running"}, within=10)
    yield client
    status = await client.get_status("guarded-1")
    if status and status.runtime_status and status.runtime_status.value == "Running":
        await client.terminate("guarded-1", "cleanup")
        await keyed_host.runtime.wait_for_status("guarded-1", {"Terminated"}, within=10)
    await client.purge_instance_history("guarded-1")


async def _send(
    http: aiohttp.ClientSession,
    host: LocalHost,
    prefix: str,
    operation: tuple[str, str, object],
    headers: dict[str, str],
) -> tuple[int, str]:
    method, path, body = operation
    kwargs = {} if body is None else {"json": body}
    url = f"{host.base_url}{prefix}{path}"
    async with http.request(method, url, headers=headers, **kwargs) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("credentials", WRONG_CREDENTIALS, ids=str)
async def test_without_the_system_key_no_management_route_shows_or_changes_anything(
    keyed_host: LocalHost,
    waiting: df.DurableOrchestrationClient,
    http: aiohttp.ClientSession,
    prefix: str,
    credentials: str,
) -> None:
    for operation in OPERATIONS:
        status, text = await _send(
            http, keyed_host, prefix, operation, WRONG_CREDENTIALS[credentials]
        )
        assert status in (401, 404), (operation, status)
        assert "guarded-1" not in text and "approval" not in text
    status = await waiting.get_status("guarded-1", show_history=True)
    assert status.runtime_status.value == "Running"
    assert status.custom_status == "waiting for approval"
    assert not [e for e in status.historyEvents if e["EventType"] == "EventRaised"]
    assert keyed_host.runtime.get_instance("intruder-1") is None


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_with_the_system_key_every_management_route_works(
    keyed_host: LocalHost,
    waiting: df.DurableOrchestrationClient,
    http: aiohttp.ClientSession,
    prefix: str,
) -> None:
    keyed = {"x-functions-key": SYSTEM_KEY}
    list_all, history, raise_event, terminate, purge, purge_matching, start = OPERATIONS
    assert (await _send(http, keyed_host, prefix, list_all, keyed))[0] == 200
    status, text = await _send(http, keyed_host, prefix, history, keyed)
    assert status == 202 and "historyEvents" in text
    assert (await _send(http, keyed_host, prefix, raise_event, keyed))[0] == 202
    await keyed_host.runtime.wait_for_status("guarded-1", {"Completed"}, within=10)
    assert (await _send(http, keyed_host, prefix, terminate, keyed))[0] == 410  # already done
    assert (await _send(http, keyed_host, prefix, start, keyed))[0] == 202
    await keyed_host.runtime.wait_for_status("intruder-1", TERMINAL, within=10)
    assert (await _send(http, keyed_host, prefix, purge, keyed))[0] == 200
    assert (await _send(http, keyed_host, prefix, purge_matching, keyed))[0] == 200
    assert keyed_host.runtime.get_instance("intruder-1") is None


async def test_the_system_key_is_also_accepted_as_code_and_as_a_basic_password(
    keyed_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    url = f"{keyed_host.base_url}/durabletask/instances/"
    async with http.get(url, params={"code": SYSTEM_KEY}) as response:
        assert response.status == 200
    async with http.get(url, auth=aiohttp.BasicAuth("durabletask", SYSTEM_KEY)) as response:
        assert response.status == 200


async def test_no_url_or_header_the_management_api_hands_out_carries_a_key(
    keyed_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    start_url = (
        f"{keyed_host.base_url}/runtime/webhooks/durabletask/orchestrators/wait_forever/links-2"
    )
    async with http.post(start_url, params={"code": SYSTEM_KEY}) as response:
        assert response.status == 202
        started = f"{dict(response.headers)} {await response.text()}"
        payload = json.loads(await response.text())
    await keyed_host.runtime.wait_for_status("links-2", {"Running"}, within=10)
    status_url = payload["statusQueryGetUri"]
    async with http.get(status_url, params={"code": SYSTEM_KEY}) as response:
        assert response.status == 202
        running = f"{dict(response.headers)} {await response.text()}"
    async with http.get(status_url) as response:
        assert response.status == 401  # the URL alone opens nothing
    for text in (started, running):
        assert SYSTEM_KEY not in text and FUNCTION_KEY not in text
        assert "code=" not in text
    client = df.DurableOrchestrationClient(keyed_host.client_binding())
    await client.terminate("links-2", "cleanup")


async def test_the_apps_client_binding_carries_the_system_key_and_nothing_else_does(
    keyed_host: LocalHost,
) -> None:
    binding = json.loads(keyed_host.client_binding())
    assert SYSTEM_KEY in binding["rpcBaseUrl"]  # as the Basic-auth password, for the SDK
    assert f"code={SYSTEM_KEY}" in binding["managementUrls"]["statusQueryGetUri"]  # as on Azure
    assert FUNCTION_KEY not in json.dumps(binding)


async def test_a_host_without_a_system_key_makes_up_one_of_its_own(tmp_path: Path) -> None:
    async with LocalHost(
        DURABLE_APP, port=0, state_path=tmp_path / "s.sqlite3", apply_local_settings=False
    ) as host:
        assert len(host.system_key) >= 32
        client = df.DurableOrchestrationClient(host.client_binding())
        await client.start_new("sequence", "own-key-1", ["Oslo"])
        record = await host.runtime.wait_for_status("own-key-1", {"Completed"}, within=10)
    assert json.loads(record.output_raw or "null") == ["Hello Oslo!"]


async def test_the_system_key_must_differ_from_the_function_key(tmp_path: Path) -> None:
    host = LocalHost(
        DURABLE_APP,
        port=0,
        state_path=tmp_path / "s.sqlite3",
        function_key="same",
        system_key="same",
        apply_local_settings=False,
    )
    with pytest.raises(LocalHostError, match="must differ"):
        await host.start()


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_need_no_function_key(address: str) -> None:
    assert is_loopback(address)
    check_exposure(address, None)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.10", "myhost.example"])
def test_an_address_other_machines_reach_needs_a_function_key(address: str) -> None:
    with pytest.raises(LocalHostError, match="without a function key"):
        check_exposure(address, None)
    check_exposure(address, FUNCTION_KEY)


def test_the_cli_refuses_to_listen_on_all_interfaces_without_a_function_key() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("LOCAL_HOST_FUNCTION_KEY", None)
    command = [sys.executable, "-m", "local_host", "--app-dir", str(DURABLE_APP)]
    completed = subprocess.run(
        [*command, "--port", "0", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert "refusing to listen on 0.0.0.0 without a function key" in completed.stderr
    assert completed.stdout == ""
