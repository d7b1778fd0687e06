"""Model-facing tool names: valid OpenAI function names, deterministic, distinct."""

from __future__ import annotations

from agent.mcp.names import VALID_NAME, candidate_servers, exposed_tool_name


def test_a_valid_name_is_simply_server_and_tool() -> None:
    assert exposed_tool_name("demo", "get_weather") == "demo__get_weather"
    assert exposed_tool_name("everything", "get-tiny-image") == "everything__get-tiny-image"


def test_invalid_characters_are_replaced_and_a_hash_keeps_names_apart() -> None:
    dotted = exposed_tool_name("files", "fs.read")
    underscored = exposed_tool_name("files", "fs_read")
    spaced = exposed_tool_name("files", "fs read")
    assert VALID_NAME.match(dotted) and VALID_NAME.match(spaced)
    assert dotted.startswith("files__fs_read_")
    assert len({dotted, underscored, spaced}) == 3


def test_a_long_name_is_cut_to_64_characters_deterministically() -> None:
    tool = "summarise_" + "very_" * 20 + "long_document"
    name = exposed_tool_name("knowledge", tool)
    assert len(name) == 64
    assert VALID_NAME.match(name)
    assert name == exposed_tool_name("knowledge", tool)  # same in every process
    assert name != exposed_tool_name("knowledge", tool + "_v2")


def test_candidate_servers_prefer_the_longest_matching_prefix() -> None:
    servers = ["a", "a__b", "other"]
    assert candidate_servers("a__b__tool", servers) == ["a__b", "a"]
    assert candidate_servers("other__x", servers) == ["other"]
    assert candidate_servers("nobody__x", servers) == servers
