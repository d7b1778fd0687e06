"""The MCP client's decisions without I/O (`agent.mcp.policy`): what the model sees of a tool,
which arguments are sent, what needs approval or may be repeated, and what a failure means."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import ToolAnnotations

from agent.errors import SettingsError
from agent.mcp import policy
from agent.mcp.config import McpServerConfig, StreamableHttpTransport, ToolPolicy
from agent.mcp.failures import Failure, FailureKind
from agent.mcp.names import exposed_tool_name
from agent.mcp.policy import Refusal, Unlisted


def server(name: str = "demo", **fields: Any) -> McpServerConfig:
    return McpServerConfig(name, StreamableHttpTransport("http://127.0.0.1:9/mcp"), **fields)


# --- exposure --------------------------------------------------------------------------------


def test_the_models_schema_hides_pinned_arguments_and_an_emptied_required_list() -> None:
    schema = {
        "type": "object",
        "properties": {"endpoint": {"type": "string"}, "note": {"type": "string"}},
        "required": ["endpoint"],
        "additionalProperties": False,
    }
    assert policy.model_parameters(schema, ["endpoint"]) == {
        "type": "object",
        "properties": {"note": {"type": "string"}},
        "additionalProperties": False,
    }
    assert schema["required"] == ["endpoint"]  # the server's schema is left as it was


def test_the_models_schema_shares_nothing_with_the_servers() -> None:
    schema = {"properties": {"note": {"type": "string"}}}
    policy.model_parameters(schema, [])["properties"]["note"]["type"] = "integer"
    assert schema == {"properties": {"note": {"type": "string"}}}


def test_the_models_schema_keeps_the_required_arguments_it_may_send() -> None:
    schema = {"properties": {"a": {}, "b": {}, "c": {}}, "required": ["a", "b"]}
    assert policy.model_parameters(schema, ["b"]) == {
        "type": "object",
        "properties": {"a": {}, "c": {}},
        "required": ["a"],
    }


@pytest.mark.parametrize("schema", [None, {}, {"properties": ["not", "an", "object"]}])
def test_a_schema_without_usable_properties_becomes_an_empty_object_schema(
    schema: dict[str, Any] | None,
) -> None:
    assert policy.model_parameters(schema, []) == {"type": "object", "properties": {}}


def test_a_name_belongs_to_the_longest_configured_server_whose_prefix_it_carries() -> None:
    servers = ["a", "a__b", "other"]
    assert policy.owner_of("a__b__tool", servers) == "a__b"
    assert policy.owner_of("a__tool", servers) == "a"
    assert policy.owner_of("other__tool", servers) == "other"
    assert policy.owner_of("a_tool", servers) is None  # one underscore is not the separator
    assert policy.owner_of("nobody__tool", servers) is None


def test_pins_the_schema_does_not_declare_are_found_in_name_order() -> None:
    config = server(pinned_arguments={"t": {"zeta": 1, "alpha": 2, "known": 3}})
    schema = {"properties": {"known": {}}}
    assert policy.unknown_pins(config, "t", schema) == ["alpha", "zeta"]
    assert policy.unknown_pins(config, "t", None) == ["alpha", "known", "zeta"]
    assert policy.unknown_pins(config, "other", schema) == []


def test_allowed_tools_the_server_does_not_offer_are_found_in_name_order() -> None:
    config = server(tools=ToolPolicy(allow=frozenset({"greet", "zap", "add"})))
    assert policy.missing_allowed(config, ["greet"]) == ["add", "zap"]
    assert policy.missing_allowed(config, ["greet", "zap", "add", "extra"]) == []
    assert policy.missing_allowed(server(), ["anything"]) == []  # no allow list: nothing missing


# --- arguments -------------------------------------------------------------------------------


def test_pinned_placeholders_are_filled_from_the_context_inside_nested_values() -> None:
    pinned = {
        "register": {
            "endpoint": "${callback_url}?c=${conversation_id}",
            "tags": ["${conversation_id}", 7],
            "nested": {"id": "${conversation_id}", "plain": True},
        }
    }
    context = {"callback_url": "https://app.example/cb", "conversation_id": "c-1"}
    assert policy.pinned_arguments(server(pinned_arguments=pinned), "register", context) == {
        "endpoint": "https://app.example/cb?c=c-1",
        "tags": ["c-1", 7],
        "nested": {"id": "c-1", "plain": True},
    }
    assert policy.pinned_arguments(server(pinned_arguments=pinned), "other", context) == {}


@pytest.mark.parametrize(
    ("context", "provided"),
    [
        ({}, "nothing"),
        ({"conversation_id": "c", "callback_url": "u"}, "callback_url, conversation_id"),
    ],
)
def test_a_placeholder_missing_from_the_context_names_the_argument_and_what_is_provided(
    context: dict[str, str], provided: str
) -> None:
    config = server("sched", pinned_arguments={"register": {"endpoint": "${tenant_url}"}})
    with pytest.raises(SettingsError) as raised:
        policy.pinned_arguments(config, "register", context)
    assert raised.value.name == "MCP_SERVERS"
    assert str(raised.value) == (
        "setting MCP_SERVERS: server 'sched', pinned argument register.endpoint, uses "
        f"${{tenant_url}}, which the app does not provide here (it provides: {provided})"
    )


@pytest.mark.parametrize(
    "value", [{"nested": "${tenant_url}"}, ["${tenant_url}"], ("x", {"deep": ["${tenant_url}"]})]
)
def test_a_missing_placeholder_deep_inside_a_value_still_names_its_argument(value: Any) -> None:
    config = server("sched", pinned_arguments={"register": {"endpoint": value}})
    with pytest.raises(SettingsError, match=r"server 'sched', pinned argument register\.endpoint,"):
        policy.pinned_arguments(config, "register", {})


def test_pinned_arguments_win_over_the_models_and_the_overridden_names_are_reported() -> None:
    merged, overridden = policy.merge_arguments(
        {"note": "hi", "endpoint": "https://attacker.example", "id": "x"},
        {"id": "c-1", "endpoint": "https://app.example/cb"},
    )
    assert merged == {"note": "hi", "endpoint": "https://app.example/cb", "id": "c-1"}
    assert overridden == ["endpoint", "id"]
    assert policy.merge_arguments({"a": 1}, {}) == ({"a": 1}, [])


# --- approval and repetition -----------------------------------------------------------------


def test_approval_is_known_from_the_configuration_by_model_facing_name() -> None:
    odd_tool = "records.delete"  # not a valid function name: exposed with a hash
    configs = [
        server("demo"),
        server("ops", tools=ToolPolicy(require_approval=frozenset({"reboot", odd_tool}))),
    ]
    assert policy.requires_approval(configs, "ops__reboot")
    assert policy.requires_approval(configs, exposed_tool_name("ops", odd_tool))
    assert not policy.requires_approval(configs, "ops__status")
    assert not policy.requires_approval(configs, "demo__reboot")  # another server's tool
    assert not policy.requires_approval([], "ops__reboot")
    assert policy.needs_approval(configs[1], "reboot")
    assert not policy.needs_approval(configs[0], "reboot")


DESTRUCTIVE = ToolAnnotations(destructive_hint=True)


@pytest.mark.parametrize(
    ("annotations", "destructive"),
    [
        (None, False),  # unannotated: not assumed destructive (the spec's default is not taken)
        (ToolAnnotations(), False),
        (ToolAnnotations(destructive_hint=False), False),
        (DESTRUCTIVE, True),
        (ToolAnnotations(read_only_hint=True, destructive_hint=True), True),  # contradiction
    ],
)
def test_a_tool_is_destructive_only_when_its_server_says_so(
    annotations: ToolAnnotations | None, destructive: bool
) -> None:
    assert policy.declares_destructive(annotations) is destructive


@pytest.mark.parametrize(
    ("annotations", "read_only"),
    [
        (None, False),
        (ToolAnnotations(), False),
        (ToolAnnotations(read_only_hint=False), False),
        (ToolAnnotations(read_only_hint=True), True),
        (ToolAnnotations(read_only_hint=True, destructive_hint=False), True),
        (ToolAnnotations(read_only_hint=True, destructive_hint=True), False),  # contradiction
    ],
)
def test_a_tool_is_read_only_when_its_server_says_so_and_does_not_also_call_it_destructive(
    annotations: ToolAnnotations | None, read_only: bool
) -> None:
    assert policy.declares_read_only(annotations) is read_only


@pytest.mark.parametrize(
    ("annotations", "open_world"),
    [
        (None, True),  # the spec's default: open world
        (ToolAnnotations(), True),
        (ToolAnnotations(open_world_hint=True), True),
        (ToolAnnotations(open_world_hint=False), False),
    ],
)
def test_a_tool_reaches_the_open_world_unless_its_server_says_it_does_not(
    annotations: ToolAnnotations | None, open_world: bool
) -> None:
    assert policy.reaches_open_world(annotations) is open_world


def test_a_destructive_tool_needs_approval_unless_its_server_entry_turns_that_off() -> None:
    assert policy.needs_approval(server(), "drop", DESTRUCTIVE)
    assert not policy.needs_approval(server(), "drop")
    assert not policy.needs_approval(server(), "drop", ToolAnnotations(read_only_hint=True))
    assert not policy.needs_approval(
        server(destructive_requires_approval=False), "drop", DESTRUCTIVE
    )


def test_the_opt_out_never_lifts_approval_the_configuration_asks_for() -> None:
    listed = server(
        destructive_requires_approval=False, tools=ToolPolicy(require_approval=frozenset({"drop"}))
    )
    assert policy.needs_approval(listed, "drop", DESTRUCTIVE)
    assert policy.needs_approval(listed, "drop", ToolAnnotations(read_only_hint=True))
    assert policy.requires_approval([listed], "demo__drop", listed=False)


def test_approval_said_by_a_tools_listing_counts_for_any_name() -> None:
    assert policy.requires_approval([], "demo__drop", listed=True)
    assert policy.requires_approval([server()], "demo__drop", listed=True)
    assert not policy.requires_approval([server()], "demo__drop", listed=False)
    assert not policy.requires_approval([server()], "demo__drop")


@pytest.mark.parametrize(
    ("idempotent", "read_only", "repeat"),
    [(False, False, False), (False, True, True), (True, False, True), (True, True, True)],
)
def test_a_cut_off_call_may_be_repeated_on_an_idempotent_server_or_for_a_read_only_tool(
    idempotent: bool, read_only: bool, repeat: bool
) -> None:
    assert policy.may_repeat(server(idempotent_calls=idempotent), read_only) is repeat


def test_a_call_to_no_known_server_is_never_repeated() -> None:
    assert policy.may_repeat(None, read_only=True) is False
    assert policy.may_repeat(server()) is False  # read-only unknown: not assumed


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "counts", "retry"),
    [
        (FailureKind.SERVER_ERROR, False, False),  # it answered: up, and the model is told
        (FailureKind.AUTH, True, False),  # the operator must act: the model is told
        (FailureKind.TIMEOUT, True, True),
        (FailureKind.TRANSPORT, True, True),
    ],
)
def test_each_kind_of_failure_counts_against_the_server_and_goes_to_a_retry_or_not(
    kind: FailureKind, counts: bool, retry: bool
) -> None:
    assert policy.counts_against_server(kind) is counts
    assert policy.retry_may_fix(kind) is retry


@pytest.mark.parametrize(
    ("error", "just_failed", "verdict"),
    [
        (None, False, Unlisted.CIRCUIT_OPEN),
        (None, True, Unlisted.CIRCUIT_OPEN),
        (Failure(FailureKind.TRANSPORT, "x"), False, Unlisted.CIRCUIT_OPEN),  # an old failure
        (Failure(FailureKind.AUTH, "HTTP 401"), False, Unlisted.CIRCUIT_OPEN),
        (Failure(FailureKind.AUTH, "HTTP 401"), True, Unlisted.AUTH),
        (Failure(FailureKind.TIMEOUT, "x"), True, Unlisted.TIMEOUT),
        (Failure(FailureKind.TRANSPORT, "x"), True, Unlisted.TRANSPORT),
        (Failure(FailureKind.SERVER_ERROR, "x"), True, Unlisted.TRANSPORT),
        (SettingsError("MCP_SERVERS", "bad"), False, Unlisted.CONFIG),
        (SettingsError("MCP_SERVERS", "bad"), True, Unlisted.CONFIG),
    ],
)
def test_a_call_to_a_server_that_could_not_be_listed_is_answered_as_its_listing_failed(
    error: Failure | SettingsError | None, just_failed: bool, verdict: Unlisted
) -> None:
    assert policy.unlisted(error, just_failed) is verdict


def test_the_model_reads_who_refused_a_call_and_why() -> None:
    assert policy.not_allowed("demo__rm") == Refusal(
        "tool 'demo__rm' is not allowed by this app's configuration", "refused"
    )
    assert policy.unknown_tool("demo__x") == Refusal(
        "unknown tool 'demo__x': call only the tools you were given", "refused"
    )
    assert policy.circuit_open("demo", 3, retry_after=12.5) == Refusal(
        "server demo is unavailable (circuit open after 3 failures); try again later",
        "circuit_open",
        retry_after=12.5,
    )
    assert policy.not_allowed("demo__rm").retry_after is None  # no use waiting
    rejected = Failure(FailureKind.AUTH, "HTTP 401")
    assert policy.auth_rejected("demo", rejected) == Refusal(
        "server demo rejected the app's credentials (HTTP 401); tell the operator", "auth_error"
    )


def test_a_failure_no_retry_fixes_is_told_to_the_model_with_its_server() -> None:
    answered = Failure(FailureKind.SERVER_ERROR, "MCP error -32602", "bad arguments: a")
    assert (
        policy.told_to_model("demo", answered) == "server demo rejected the call: bad arguments: a"
    )
    rejected = Failure(FailureKind.AUTH, "HTTP 403")
    assert policy.told_to_model("demo", rejected) == (
        "server demo rejected the app's credentials (HTTP 403); tell the operator"
    )
