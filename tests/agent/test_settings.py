"""Settings: parsed once, typed, and every bad value names its setting."""

import json

import pytest

from agent.errors import SettingsError
from agent.settings import Settings

BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
}


def settings(**overrides: str) -> Settings:
    return Settings.from_env({**BASE, **overrides})


def test_defaults_are_sensible_and_storage_falls_back_to_webjobs_storage():
    s = settings()
    assert "devstoreaccount1" in s.conversations_storage
    assert s.conversations_container == "conversations"
    assert s.model.kind == "azure" and s.model.api_key is None  # managed identity
    assert s.limits.max_steps == 10
    assert json.loads(s.mcp_servers_json) == {"mcp_servers": []}


def test_an_openai_compatible_endpoint_is_the_alternative():
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_MODEL": "llama",
    }
    s = Settings.from_env(env)
    assert (s.model.kind, s.model.model, s.model.api_version) == ("openai", "llama", None)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"AZURE_OPENAI_DEPLOYMENT": ""}, "AZURE_OPENAI_DEPLOYMENT"),
        ({"AZURE_OPENAI_ENDPOINT": "not a url"}, "AZURE_OPENAI_ENDPOINT"),
        ({"AGENT_MAX_STEPS": "many"}, "AGENT_MAX_STEPS"),
        ({"AGENT_MAX_STEPS": "0"}, "AGENT_MAX_STEPS"),
        ({"CONVERSATIONS_CONTAINER": "Bad_Name"}, "CONVERSATIONS_CONTAINER"),
        ({"CONVERSATIONS_STORAGE": "garbage"}, "CONVERSATIONS_STORAGE"),
        ({"MCP_SERVERS": "{not json"}, "MCP_SERVERS"),
        ({"MCP_SERVERS": "/no/such/file.json"}, "MCP_SERVERS"),
        ({"SCHEDULER_WEBHOOK_SECRET": "plain"}, "SCHEDULER_WEBHOOK_SECRET"),
        ({"REQUIRE_AUTH": "maybe"}, "REQUIRE_AUTH"),
    ],
)
def test_a_malformed_setting_fails_naming_it(overrides, named):
    with pytest.raises(SettingsError) as caught:
        settings(**overrides)
    assert caught.value.name == named
    assert named in str(caught.value)


def test_no_model_configured_fails_naming_what_to_set():
    with pytest.raises(SettingsError, match="AZURE_OPENAI_ENDPOINT"):
        Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})


def test_no_storage_fails_naming_conversations_storage():
    env = {k: v for k, v in BASE.items() if k != "AzureWebJobsStorage"}
    with pytest.raises(SettingsError, match="CONVERSATIONS_STORAGE"):
        Settings.from_env(env)


def test_mcp_servers_may_be_a_path_to_a_json_file(tmp_path):
    path = tmp_path / "mcp.json"
    server = {"name": "x", "transport": {"type": "sse", "url": "http://127.0.0.1:1/sse"}}
    path.write_text(json.dumps({"mcp_servers": [server]}))
    assert (
        json.loads(settings(MCP_SERVERS=str(path)).mcp_servers_json)["mcp_servers"][0]["name"]
        == "x"
    )


def test_secrets_never_show_when_settings_are_printed():
    s = settings(
        AZURE_OPENAI_API_KEY="sk-verysecretvalue123",
        SCHEDULER_WEBHOOK_SECRET="whsec_c2VjcmV0c2VjcmV0",
    )
    assert s.model.api_key is not None and s.model.api_key.value == "sk-verysecretvalue123"
    printed = repr(s) + str(s)
    assert "verysecret" not in printed and "c2VjcmV0" not in printed


def test_settings_are_frozen():
    s = settings()
    with pytest.raises(AttributeError):
        s.conversations_container = "other"  # type: ignore[misc]
