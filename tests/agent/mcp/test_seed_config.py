"""The seeds' MCP config, as their users wrote it: the documents' own JSON examples (copied
verbatim into `seed_configs/`, see SOURCES.md) parse into the same typed config as ours, and a
server that mixes the two shapes is refused naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.errors import SettingsError
from agent.mcp.config import (
    SEED_MANAGED_IDENTITY_SCOPE,
    ApiKeyAuth,
    ManagedIdentityAuth,
    McpServerConfig,
    NoAuth,
    SecretValue,
    StreamableHttpTransport,
    ToolPolicy,
    parse_mcp_servers,
    read_mcp_servers,
)

SEED_CONFIGS = Path(__file__).parent / "seed_configs"
SCHEDULER_APPROVAL = ToolPolicy(None, frozenset({"schedule_conversation"}))
APP_SCOPE = "api://6f1c2d3e-0000-4000-8000-00000000abcd/.default"


def seed_document(name: str) -> dict[str, Any]:
    return json.loads((SEED_CONFIGS / name).read_text(encoding="utf-8"))


def parse(document: dict[str, Any]) -> tuple[McpServerConfig, ...]:
    return parse_mcp_servers(json.dumps(document))


def seed_server(**transport_auth: Any) -> dict[str, Any]:
    """One server in the seeds' shape, with `auth` inside `transport`."""
    transport = {"type": "http", "url": "https://h/mcp", "auth": transport_auth}
    return {"mcp": {"mcp_servers": [{"name": "Scheduler", "transport": transport}]}}


def refusal(document: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as caught:
        parse(document)
    return str(caught.value)


# --- the seeds' own examples -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed_file", "url"),
    [
        ("002_azure_scheduler_api_key.json", "https://mcp-scheduler-app.azurecontainerapps.io/mcp"),
        ("000_config_api_key.json", "http://localhost:5146/mcp"),
    ],
)
def test_the_seeds_api_key_scheduler_parses_into_our_api_key_auth(seed_file: str, url: str) -> None:
    mcp_block = {"mcp": seed_document(seed_file)["mcp"]}  # 000 also holds a model block: below

    assert parse(mcp_block) == (
        McpServerConfig(
            name="Scheduler",
            transport=StreamableHttpTransport(url),
            auth=ApiKeyAuth(
                api_key=SecretValue(inline="your_api_key"),
                client_id=SecretValue(inline="your_client_id"),
            ),
            tools=SCHEDULER_APPROVAL,
        ),
    )


def test_the_seeds_whole_config_json_parses_and_startup_names_what_its_model_block_means() -> None:
    document = seed_document("000_config_api_key.json")

    assert parse(document) == parse({"mcp": document["mcp"]})  # the model block is not read
    notices = "\n".join(read_mcp_servers(json.dumps(document))[1])
    assert "'model' is not read" in notices
    assert "AZURE_OPENAI_DEPLOYMENT (model_id)" in notices
    assert "your_azure_openai_api_key" not in notices  # the block's inline key is not echoed


def test_the_seeds_managed_identity_config_parses_as_written_with_the_seeds_arm_scope() -> None:
    document = seed_document("002_azure_scheduler_managed_identity.json")

    [server] = parse(document)

    assert server.auth == ManagedIdentityAuth(SEED_MANAGED_IDENTITY_SCOPE)
    assert server.transport == StreamableHttpTransport(
        "https://mcp-scheduler-app.azurecontainerapps.io/mcp"
    )
    notices = "\n".join(read_mcp_servers(json.dumps(document))[1])
    for mapping in (
        "'azure' is not read",
        "key_vault_name -> KEYVAULT_URI",
        "application_insights_connection_string -> APPLICATIONINSIGHTS_CONNECTION_STRING",
        "use_managed_identity -> on whenever no key is set",
    ):
        assert mapping in notices
    # The ARM token is the seeds' rule, and startup says what it lets the server do.
    assert "server 'Scheduler' is sent an Azure Resource Manager token" in notices
    assert "transport.auth.scope" in notices


def test_a_seed_managed_identity_that_names_its_scope_gets_that_audience_and_no_warning() -> None:
    document = {"mcp": seed_document("002_azure_scheduler_managed_identity.json")["mcp"]}
    document["mcp"]["mcp_servers"][0]["transport"]["auth"]["scope"] = APP_SCOPE

    [server] = parse(document)

    assert server.auth == ManagedIdentityAuth(APP_SCOPE)
    assert read_mcp_servers(json.dumps(document))[1] == ()


def test_the_seeds_private_endpoint_transport_parses_as_written() -> None:
    fragment = seed_document("003_private_endpoint_transport.json")
    document = {"mcp": {"mcp_servers": [{"name": "scheduler", **fragment}]}}

    [server] = parse(document)

    assert server.auth == ManagedIdentityAuth(SEED_MANAGED_IDENTITY_SCOPE)
    assert server.transport == StreamableHttpTransport(
        "https://scheduler-service.privatelink.azurewebsites.net/mcp"
    )


def test_the_seeds_app_blocks_are_only_accepted_beside_the_seeds_wrapper() -> None:
    problem = refusal({"mcp_servers": [], "model": {"model_id": "gpt-4o"}})
    assert "model" in problem


def test_the_arm_scope_is_sent_when_an_operator_names_it_explicitly() -> None:
    [server] = parse(seed_server(use_managed_identity=True, scope=SEED_MANAGED_IDENTITY_SCOPE))
    assert server.auth == ManagedIdentityAuth(SEED_MANAGED_IDENTITY_SCOPE)


# --- the seeds' keys, mapped one by one ------------------------------------------------------


def test_seed_auth_values_may_name_secrets_like_ours() -> None:
    [server] = parse(
        seed_server(
            client_id={"secret": "SCHEDULER-CLIENT-ID"}, api_key={"secret": "SCHEDULER-API-KEY"}
        )
    )
    assert server.auth == ApiKeyAuth(
        api_key=SecretValue(secret_name="SCHEDULER-API-KEY"),
        client_id=SecretValue(secret_name="SCHEDULER-CLIENT-ID"),
    )


def test_an_api_key_without_a_client_id_and_an_empty_or_disabled_auth_parse() -> None:
    [key_only] = parse(seed_server(api_key="k"))
    [empty] = parse(seed_server())
    [disabled] = parse(seed_server(use_managed_identity=False, api_key="k"))

    assert key_only.auth == ApiKeyAuth(api_key=SecretValue(inline="k"))
    assert empty.auth == NoAuth()
    assert disabled.auth == key_only.auth


@pytest.mark.parametrize(
    ("transport_auth", "expected"),
    [
        ({"use_managed_identity": True, "api_key": "k"}, "keep one way to authenticate"),
        ({"client_id": "c"}, "'client_id' without 'api_key'"),
        ({"scope": APP_SCOPE}, "applies only with use_managed_identity: true"),
        ({"use_managed_identity": "yes", "scope": APP_SCOPE}, "must be true or false"),
        ({"api_key": "k", "password": "p"}, "unknown key(s) password"),
        ({"api_key": ""}, "must be a non-empty string"),
    ],
)
def test_a_bad_seed_auth_names_the_problem_and_place(
    transport_auth: dict[str, Any], expected: str
) -> None:
    problem = refusal(seed_server(**transport_auth))
    assert "mcp.mcp_servers[0] (Scheduler).transport.auth" in problem
    assert expected in problem


# --- mixing the two shapes -------------------------------------------------------------------


def test_auth_both_beside_and_inside_transport_is_refused_naming_the_server() -> None:
    document = seed_server(api_key="k")
    document["mcp"]["mcp_servers"][0]["auth"] = {"type": "bearer", "token": "t"}

    problem = refusal(document)

    assert "(Scheduler)" in problem
    assert "gives 'auth' both beside 'transport' (this app's shape) and inside it" in problem


def test_our_typed_auth_inside_transport_is_refused_as_a_mix() -> None:
    problem = refusal(seed_server(type="managed_identity", scope=APP_SCOPE))
    assert "(Scheduler).transport.auth: mixes the two shapes" in problem


def test_the_seeds_auth_keys_beside_transport_are_refused_as_a_mix() -> None:
    server = {
        "name": "Scheduler",
        "transport": {"type": "streamable_http", "url": "https://h/mcp"},
        "auth": {"use_managed_identity": True},
    }
    problem = refusal({"mcp_servers": [server]})
    assert "mcp_servers[0] (Scheduler).auth: mixes the two shapes" in problem


def test_a_list_both_at_the_top_level_and_in_the_seeds_wrapper_is_refused() -> None:
    document = {**seed_server(api_key="k"), "mcp_servers": []}
    assert "both at the top level and inside 'mcp'" in refusal(document)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"mcp": {"mcp_servers": [], "servers": []}}, "mcp: unknown key(s) servers"),
        ({"mcp": []}, "mcp: must be a JSON object"),
        ({"mcp": {}}, "mcp: 'mcp_servers' is required"),
        ({"mcp": {"mcp_servers": {}}}, "mcp.mcp_servers: must be an array"),
        ({"mcp": {"mcp_servers": []}, "logging": {}}, "unknown key(s) logging"),
    ],
)
def test_a_malformed_seed_wrapper_names_the_problem(
    document: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(document)


def test_a_stdio_server_with_auth_inside_transport_is_told_to_use_env() -> None:
    transport = {"type": "stdio", "command": "python", "auth": {"api_key": "k"}}
    problem = refusal({"mcp": {"mcp_servers": [{"name": "local", "transport": transport}]}})
    assert "(local).transport.auth: applies to HTTP transports" in problem


def test_the_same_servers_in_either_shape_parse_to_the_same_config() -> None:
    ours = {
        "mcp_servers": [
            {
                "name": "Scheduler",
                "transport": {"type": "streamable_http", "url": "https://h/mcp"},
                "auth": {"type": "api_key", "client_id": "c", "api_key": "k"},
                "tools": {"allow": ["schedule_conversation"]},
            }
        ]
    }
    seeds = seed_server(client_id="c", api_key="k")
    seeds["mcp"]["mcp_servers"][0]["tools"] = {"allow": ["schedule_conversation"]}

    assert parse(seeds) == parse(ours)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://scheduler.example/mcp", False),
        ("http://10.0.0.4/mcp", False),
        ("https://scheduler.example/mcp", True),
        ("http://127.0.0.1:5146/mcp", True),
        ("http://localhost:5146/mcp", True),
    ],
)
def test_a_managed_identity_token_is_never_sent_in_clear_over_a_network(
    url: str, accepted: bool
) -> None:
    for document in (
        {"mcp": {"mcp_servers": [{"name": "s", "transport": {
            "type": "http", "url": url, "auth": {"use_managed_identity": True}}}]}},
        {"mcp_servers": [{"name": "s", "transport": {"type": "streamable_http", "url": url},
                          "auth": {"type": "managed_identity", "scope": APP_SCOPE}}]},
    ):  # fmt: skip
        if accepted:
            [server] = parse(document)
            assert isinstance(server.auth, ManagedIdentityAuth)
        else:
            assert "must be https://" in refusal(document)
