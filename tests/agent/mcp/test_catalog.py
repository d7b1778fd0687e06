"""The tool catalog alone (`agent.mcp.catalog`): listings turned into the specs the model sees,
cached for a TTL on a hand-moved clock, kept when a fetch fails, and indexed by exposed name.
Fetches are plain functions returning what a server would list."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import mcp_types as types
import pytest

from agent.errors import SettingsError
from agent.mcp.catalog import Catalog, Fetched, build_listing, to_openai_tools
from agent.mcp.config import McpServerConfig, StreamableHttpTransport, ToolPolicy
from agent.mcp.failures import Failure, FailureKind
from tests.agent.mcp.conftest import FakeClock

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def server(name: str = "demo", **fields: Any) -> McpServerConfig:
    return McpServerConfig(name, StreamableHttpTransport("http://127.0.0.1:9/mcp"), **fields)


def tool(name: str, **fields: Any) -> types.Tool:
    fields.setdefault("input_schema", SCHEMA)
    return types.Tool(name=name, **fields)


class Server:
    """What a fetch finds: the tools it lists (or a failure it reports), counted."""

    def __init__(self, *tools: types.Tool) -> None:
        self.answer: Fetched = list(tools)
        self.fetches = 0

    async def fetch(self) -> Fetched:
        self.fetches += 1
        return self.answer


def test_only_allowed_tools_become_specs_and_the_others_are_known_as_not_allowed() -> None:
    config = server(
        tools=ToolPolicy(allow=frozenset({"greet", "wipe"}), require_approval=frozenset({"wipe"}))
    )
    listing = build_listing(config, [tool("greet"), tool("wipe"), tool("secret")], now=5.0)
    assert [(s.exposed_name, s.tool, s.require_approval) for s in listing.specs] == [
        ("demo__greet", "greet", False),
        ("demo__wipe", "wipe", True),
    ]
    assert listing.not_allowed == {"demo__secret"}
    assert listing.listed_at == 5.0


def test_a_spec_carries_the_description_the_read_only_hint_and_the_schema_without_pins() -> None:
    config = server(pinned_arguments={"greet": {"name": "${conversation_id}"}})
    described = tool(
        "greet",
        description="Say hello",
        title="Greeter",
        annotations=types.ToolAnnotations(read_only_hint=True),
    )
    (spec,) = build_listing(config, [described], now=0).specs
    assert spec.description == "Say hello" and spec.read_only
    assert dict(spec.parameters) == {"type": "object", "properties": {}}
    (titled,) = build_listing(server(), [tool("greet", title="Greeter")], now=0).specs
    assert titled.description == "Greeter" and not titled.read_only
    (bare,) = build_listing(server(), [tool("greet")], now=0).specs
    assert bare.description == ""


def test_a_spec_reads_the_servers_annotations_through_the_policy() -> None:
    listed = [
        tool("drop", annotations=types.ToolAnnotations(destructive_hint=True)),
        tool("look", annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False)),
        tool("plain"),
    ]
    drop, look, plain = build_listing(server(), listed, now=0).specs
    assert (drop.require_approval, drop.read_only, drop.open_world) == (True, False, True)
    assert (look.require_approval, look.read_only, look.open_world) == (False, True, False)
    assert (plain.require_approval, plain.read_only, plain.open_world) == (False, False, True)
    opted_out = server(destructive_requires_approval=False)
    (drop_unasked, *_) = build_listing(opted_out, listed, now=0).specs
    assert not drop_unasked.require_approval


def test_operator_mistakes_in_a_listing_are_logged_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = server(
        tools=ToolPolicy(allow=frozenset({"greet", "gone"})),
        pinned_arguments={"greet": {"tenant": "t"}},
    )
    with caplog.at_level(logging.WARNING, logger="agent.mcp"):
        build_listing(config, [tool("greet")], now=0)
    assert "mcp server=demo tool=greet pins arguments its schema does not declare: tenant" in (
        caplog.text
    )
    assert "mcp server=demo does not offer allowed tool(s): gone" in caplog.text


def test_the_models_tools_parameter_is_plain_json() -> None:
    (spec,) = build_listing(server(), [tool("greet", description="hi")], now=0).specs
    (openai_tool,) = to_openai_tools([spec])
    assert json.loads(json.dumps(openai_tool)) == {
        "type": "function",
        "function": {"name": "demo__greet", "description": "hi", "parameters": SCHEMA},
    }


async def test_a_listing_is_reused_until_its_ttl_then_fetched_again(clock: FakeClock) -> None:
    catalog = Catalog([server()], clock, ttl_seconds=300)
    demo = Server(tool("greet"))
    first = await catalog.refresh("demo", demo.fetch)
    clock.advance(299)
    assert await catalog.refresh("demo", demo.fetch) is first
    assert demo.fetches == 1
    clock.advance(1)
    demo.answer = [tool("greet"), tool("wave")]
    await catalog.refresh("demo", demo.fetch)
    assert demo.fetches == 2
    assert [spec.tool for spec in catalog.specs()] == ["greet", "wave"]
    assert catalog.spec("demo__wave") is not None


async def test_a_shorter_max_age_fetches_again_sooner(clock: FakeClock) -> None:
    catalog = Catalog([server()], clock, ttl_seconds=300)
    demo = Server(tool("greet"))
    await catalog.refresh("demo", demo.fetch)
    clock.advance(4)
    await catalog.refresh("demo", demo.fetch, max_age=5)
    assert demo.fetches == 1
    clock.advance(1)
    await catalog.refresh("demo", demo.fetch, max_age=5)
    assert demo.fetches == 2


async def test_concurrent_refreshes_of_one_server_share_one_fetch(clock: FakeClock) -> None:
    catalog = Catalog([server()], clock)
    started, release = asyncio.Event(), asyncio.Event()
    fetches = 0

    async def slow_fetch() -> Fetched:
        nonlocal fetches
        fetches += 1
        started.set()
        await release.wait()
        return [tool("greet")]

    waiting = [asyncio.create_task(catalog.refresh("demo", slow_fetch)) for _ in range(5)]
    await asyncio.wait_for(started.wait(), 10)  # the others queue on the server's lock meanwhile
    release.set()
    listings = await asyncio.gather(*waiting)
    assert fetches == 1
    assert all(listing is listings[0] for listing in listings)


@pytest.mark.parametrize(
    "failure",
    [Failure(FailureKind.TRANSPORT, "ConnectError"), SettingsError("MCP_SERVERS", "no key")],
)
async def test_a_failed_fetch_keeps_the_last_listing_and_says_why_until_one_succeeds(
    clock: FakeClock, failure: Failure | SettingsError
) -> None:
    catalog = Catalog([server()], clock, ttl_seconds=10)
    demo = Server(tool("greet"))
    listed = await catalog.refresh("demo", demo.fetch)
    clock.advance(10)
    demo.answer = failure
    assert await catalog.refresh("demo", demo.fetch) is listed
    assert catalog.error("demo") is failure
    assert catalog.spec("demo__greet") is not None  # the model still sees the tool
    demo.answer = [tool("greet")]
    await catalog.refresh("demo", demo.fetch)
    assert catalog.error("demo") is None


async def test_a_fetch_held_back_by_the_breaker_changes_nothing(clock: FakeClock) -> None:
    catalog = Catalog([server()], clock)
    demo = Server()
    demo.answer = None
    assert await catalog.refresh("demo", demo.fetch) is None
    assert catalog.listing("demo") is None and catalog.error("demo") is None


async def test_specs_come_in_configuration_order_whatever_order_servers_were_listed(
    clock: FakeClock,
) -> None:
    catalog = Catalog([server("first"), server("second")], clock)
    await catalog.refresh("second", Server(tool("b")).fetch)
    await catalog.refresh("first", Server(tool("a")).fetch)
    assert [spec.exposed_name for spec in catalog.specs()] == ["first__a", "second__b"]


async def test_two_tools_with_one_model_facing_name_keep_the_first_servers(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = Catalog([server("a"), server("a__b")], clock)
    await catalog.refresh("a__b", Server(tool("c")).fetch)
    await catalog.refresh("a", Server(tool("b__c")).fetch)  # also exposed as a__b__c
    spec = catalog.spec("a__b__c")
    assert spec is not None and (spec.server, spec.tool) == ("a", "b__c")
    assert "mcp tool name collision: a__b__c (server=a__b)" in caplog.text
