"""MCP_SERVERS parsing: the design's example parses; each kind of mistake names itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.errors import SettingsError
from agent.mcp.config import (
    DEFAULT_OUTPUT_LIMIT_CHARS,
    DEFAULT_TIMEOUT_SECONDS,
    ApiKeyAuth,
    BearerAuth,
    EnvSecretResolver,
    HeadersAuth,
    ManagedIdentityAuth,
    NoAuth,
    SecretValue,
    SseTransport,
    StdioTransport,
    StreamableHttpTransport,
    parse_mcp_servers,
    placeholders_in,
)

DESIGN_EXAMPLE = {
    "mcp_servers": [
        {
            "name": "scheduler",
            "transport": {"type": "streamable_http", "url": "http://127.0.0.1:5146/mcp"},
            "auth": {
                "type": "api_key",
                "client_id": {"secret": "SCHEDULER-CLIENT-ID"},
                "api_key": {"secret": "SCHEDULER-API-KEY"},
            },
            "tools": {
                "allow": [
                    "schedule_conversation",
                    "list_scheduled_conversations",
                    "cancel_scheduled_conversation",
                ],
                "require_approval": ["cancel_scheduled_conversation"],
            },
            "pinned_arguments": {
                "schedule_conversation": {
                    "endpoint": "${callback_url}",
                    "conversation_id": "${conversation_id}",
                }
            },
            "timeout_seconds": 30,
        },
        {"name": "demo", "transport": {"type": "sse", "url": "http://127.0.0.1:8000/sse"}},
        {
            "name": "time",
            "transport": {"type": "stdio", "command": "python", "args": ["-m", "mcp_server_time"]},
        },
    ]
}


def parse(document: Any) -> Any:
    return parse_mcp_servers(json.dumps(document))


def one_server(**fields: Any) -> dict[str, Any]:
    server = {"name": "s", "transport": {"type": "streamable_http", "url": "https://h/mcp"}}
    server.update(fields)
    return {"mcp_servers": [server]}


def test_the_design_example_parses_into_typed_configs() -> None:
    scheduler, demo, time_server = parse(DESIGN_EXAMPLE)

    assert scheduler.transport == StreamableHttpTransport("http://127.0.0.1:5146/mcp")
    assert scheduler.auth == ApiKeyAuth(
        api_key=SecretValue(secret_name="SCHEDULER-API-KEY"),
        client_id=SecretValue(secret_name="SCHEDULER-CLIENT-ID"),
    )
    assert scheduler.auth.client_id_header == "X-Client-ID"
    assert scheduler.auth.api_key_header == "X-API-Key"
    assert scheduler.tools.allows("schedule_conversation")
    assert not scheduler.tools.allows("delete_everything")
    # scheduling needs approval by default, though the example names only cancelling
    assert scheduler.tools.require_approval == {
        "cancel_scheduled_conversation",
        "schedule_conversation",
    }
    assert dict(scheduler.pinned_for("schedule_conversation")) == {
        "endpoint": "${callback_url}",
        "conversation_id": "${conversation_id}",
    }
    assert scheduler.timeout_seconds == 30
    assert demo.transport == SseTransport("http://127.0.0.1:8000/sse")
    assert demo.auth == NoAuth()
    assert demo.tools.allow is None
    assert demo.timeout_seconds == DEFAULT_TIMEOUT_SECONDS
    assert demo.output_limit_chars == DEFAULT_OUTPUT_LIMIT_CHARS
    assert time_server.transport == StdioTransport("python", ("-m", "mcp_server_time"))


def test_every_auth_type_parses() -> None:
    def auth_of(auth: dict[str, Any]) -> Any:
        return parse(one_server(auth=auth))[0].auth

    assert auth_of({"type": "none"}) == NoAuth()
    assert auth_of({"type": "headers", "headers": {"X-Token": {"secret": "T"}}}) == HeadersAuth(
        {"X-Token": SecretValue(secret_name="T")}
    )
    assert auth_of({"type": "bearer", "token": "inline"}) == BearerAuth(
        SecretValue(inline="inline")
    )
    assert auth_of(
        {"type": "managed_identity", "scope": "api://x/.default"}
    ) == ManagedIdentityAuth("api://x/.default")
    custom = auth_of(
        {"type": "api_key", "api_key": "k", "client_id_header": "X-Id", "api_key_header": "X-Key"}
    )
    assert (custom.client_id, custom.client_id_header, custom.api_key_header) == (
        None,
        "X-Id",
        "X-Key",
    )


def test_a_stdio_server_takes_env_and_cwd() -> None:
    document = {
        "mcp_servers": [
            {
                "name": "local",
                "transport": {
                    "type": "stdio",
                    "command": "node",
                    "args": ["server.js"],
                    "env": {"TOKEN": {"secret": "LOCAL-TOKEN"}, "MODE": "test"},
                    "cwd": "/srv",
                },
            }
        ]
    }
    (local,) = parse(document)
    assert local.transport.env == {
        "TOKEN": SecretValue(secret_name="LOCAL-TOKEN"),
        "MODE": SecretValue(inline="test"),
    }
    assert local.transport.cwd == "/srv"


def test_empty_or_absent_setting_means_no_servers() -> None:
    assert parse_mcp_servers(None) == ()
    assert parse_mcp_servers("  ") == ()
    assert parse({"mcp_servers": []}) == ()


def test_the_setting_may_be_a_path_to_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(DESIGN_EXAMPLE), encoding="utf-8")
    assert [c.name for c in parse_mcp_servers(str(path))] == [
        "scheduler",
        "demo",
        "time",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "is not valid JSON (line 1"),
        ("/no/such/file.json", "is neither JSON nor a readable file"),
        ('{"servers": []}', "the top level: unknown key(s) servers"),
        ('{"mcp_servers": {}}', "mcp_servers: must be an array"),
    ],
)
def test_an_unreadable_document_is_named(text: str, expected: str) -> None:
    with pytest.raises(SettingsError) as raised:
        parse_mcp_servers(text)
    assert raised.value.name == "MCP_SERVERS"
    assert expected in str(raised.value)


BAD_SERVERS = [
    ({"name": "bad name!"}, "mcp_servers[0] (bad name!).name: must be 1-40 characters"),
    ({"name": "x" * 41}, "must be 1-40 characters"),
    (
        {"transport": {"type": "websocket", "url": "ws://h"}},
        "transport.type: 'websocket' is not one of",
    ),
    (
        {"transport": {"type": "sse", "url": "ftp://h/sse"}},
        "transport.url: must be an http:// or https://",
    ),
    ({"transport": {"type": "streamable_http"}}, "transport: 'url' is required"),
    (
        {"transport": {"type": "stdio", "command": ""}},
        "transport.command: must be a non-empty string",
    ),
    (
        {"transport": {"type": "stdio", "command": "x", "args": "-m x"}},
        "transport.args: must be an array",
    ),
    (
        {"transport": {"type": "stdio", "command": "x"}, "auth": {"type": "bearer", "token": "t"}},
        "auth: applies to HTTP transports",
    ),
    ({"auth": {"type": "oauth"}}, "auth.type: 'oauth' is not one of none, headers"),
    ({"auth": {"type": "api_key"}}, "auth: 'api_key' is required"),
    (
        {"auth": {"type": "api_key", "api_key": {"vault": "X"}}},
        "auth.api_key: unknown key(s) vault",
    ),
    (
        {"auth": {"type": "api_key", "api_key": 42}},
        'auth.api_key: must be a non-empty string or {"secret"',
    ),
    (
        {"auth": {"type": "api_key", "api_key": "k", "api_key_header": "X Key"}},
        "is not a valid HTTP header",
    ),
    ({"auth": {"type": "headers", "headers": {}}}, "auth.headers: must name at least one header"),
    ({"auth": {"type": "managed_identity"}}, "auth: 'scope' is required"),
    ({"tools": {"allow": "greet"}}, "tools.allow: must be an array of strings"),
    (
        {"tools": {"allow": ["a"], "require_approval": ["b"]}},
        "require_approval: names tools that are not allowed: b",
    ),
    ({"tools": {"deny": ["a"]}}, "tools: unknown key(s) deny"),
    (
        {"tools": {"allow": ["a"]}, "pinned_arguments": {"b": {"x": 1}}},
        "pinned_arguments.b: pins arguments of a tool that is not allowed",
    ),
    (
        {"pinned_arguments": {"t": {"url": "${callback url}"}}},
        "pinned_arguments.t.url: has a malformed placeholder",
    ),
    ({"pinned_arguments": {"t": "x"}}, "pinned_arguments.t: must be a JSON object"),
    ({"timeout_seconds": 0}, "timeout_seconds: must be a positive number"),
    ({"timeout_seconds": "30"}, "timeout_seconds: must be a number, not a string"),
    ({"output_limit_chars": 10}, "output_limit_chars: must be at least 200"),
    ({"output_limit_chars": 1000.5}, "output_limit_chars: must be an integer"),
    ({"timeout": 30}, "mcp_servers[0] (s): unknown key(s) timeout"),
    (
        {"scheduling_requires_approval": "no"},
        "scheduling_requires_approval: must be true or false, not a string",
    ),
    ({"idempotent_calls": "yes"}, "idempotent_calls: must be true or false, not a string"),
    (
        {"destructive_requires_approval": "false"},
        "mcp_servers[0] (s).destructive_requires_approval: must be true or false, not a string",
    ),
    (
        {"destructive_requires_approval": None},
        "mcp_servers[0] (s).destructive_requires_approval: must be true or false, not null",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), BAD_SERVERS)
def test_each_malformed_server_entry_names_the_problem_and_place(
    fields: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        parse(one_server(**fields))
    assert raised.value.name == "MCP_SERVERS"
    assert expected in str(raised.value)


def test_a_server_name_must_be_unique() -> None:
    document = {"mcp_servers": [one_server()["mcp_servers"][0], one_server()["mcp_servers"][0]]}
    with pytest.raises(
        SettingsError, match=r"mcp_servers\[1\].name: 's' is used by another server"
    ):
        parse(document)


def test_secret_values_stay_out_of_reprs_and_errors() -> None:
    document = one_server(
        transport={"type": "streamable_http", "url": "https://h/mcp?code=url-secret"},
        auth={"type": "api_key", "client_id": "inline-client-id", "api_key": "inline-api-key"},
    )
    (config,) = parse(document)
    shown = repr(config)
    assert "inline-api-key" not in shown
    assert "inline-client-id" not in shown
    assert "url-secret" not in shown
    assert "https://h/mcp" in shown
    assert repr(SecretValue(secret_name="NAME")) == "SecretValue(secret='NAME')"

    bad = one_server(auth={"type": "bearer", "token": "inline-token", "extra": "x"})
    with pytest.raises(SettingsError) as raised:
        parse(bad)
    assert "inline-token" not in str(raised.value)


async def test_env_secrets_map_dashes_to_underscores_and_name_a_missing_one() -> None:
    resolver = EnvSecretResolver({"SCHEDULER_API_KEY": "k-123"})
    assert await SecretValue(secret_name="SCHEDULER-API-KEY").resolve(resolver) == "k-123"
    assert await SecretValue(inline="plain").resolve(resolver) == "plain"
    with pytest.raises(SettingsError) as raised:
        await SecretValue(secret_name="SCHEDULER-CLIENT-ID").resolve(resolver)
    assert raised.value.name == "SCHEDULER_CLIENT_ID"
    assert "SCHEDULER-CLIENT-ID" in str(raised.value)


def test_placeholders_are_found_in_nested_pinned_values() -> None:
    value = {"url": "${callback_url}?c=${conversation_id}", "list": ["${run_id}", 3], "n": 1}
    assert placeholders_in(value) == {"callback_url", "conversation_id", "run_id"}


def test_the_transport_aliases_from_the_seeds_are_accepted() -> None:
    (config,) = parse(one_server(transport={"type": "http", "url": "http://h/mcp"}))
    assert isinstance(config.transport, StreamableHttpTransport)


def test_a_server_may_set_its_own_circuit_breaker():
    [server] = parse_mcp_servers(
        '{"mcp_servers": [{"name": "s", "transport": {"type": "sse", "url": "http://h/sse"},'
        ' "circuit_breaker": {"failures": 5, "cooldown_seconds": 2.5}}]}'
    )
    assert (server.breaker_failures, server.breaker_cooldown_seconds) == (5, 2.5)


@pytest.mark.parametrize(
    "breaker", ['{"failures": 0}', '{"failures": true}', '{"cooldown_seconds": -1}', '{"x": 1}']
)
def test_a_bad_circuit_breaker_names_the_problem(breaker):
    text = (
        '{"mcp_servers": [{"name": "s", "transport": {"type": "sse", "url": "http://h/sse"},'
        f' "circuit_breaker": {breaker}}}]}}'
    )
    with pytest.raises(SettingsError, match="circuit_breaker"):
        parse_mcp_servers(text)


def test_scheduling_a_conversation_needs_approval_unless_the_server_turns_it_off() -> None:
    [default] = parse(one_server())
    [off] = parse(one_server(scheduling_requires_approval=False))
    [not_allowed] = parse(one_server(tools={"allow": ["greet"]}))
    assert "schedule_conversation" in default.tools.require_approval
    assert "schedule_conversation" not in off.tools.require_approval
    assert not_allowed.tools.require_approval == frozenset()


def test_destructive_tools_need_approval_unless_the_server_entry_turns_it_off() -> None:
    [default] = parse(one_server())
    [on] = parse(one_server(destructive_requires_approval=True))
    [off] = parse(one_server(destructive_requires_approval=False))
    assert (default.destructive_requires_approval, on.destructive_requires_approval) == (True, True)
    assert off.destructive_requires_approval is False


def test_a_server_may_declare_that_it_honours_idempotency_keys():
    [plain, idempotent] = parse(
        {
            "mcp_servers": [
                one_server()["mcp_servers"][0],
                {**one_server()["mcp_servers"][0], "name": "i", "idempotent_calls": True},
            ]
        }
    )
    assert (plain.idempotent_calls, idempotent.idempotent_calls) == (False, True)
