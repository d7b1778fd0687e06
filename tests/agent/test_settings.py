"""Settings: parsed once, typed, and every bad value names its setting."""

import base64
import json

import pytest

from agent.errors import InvalidSettings, SettingsError
from agent.settings import ContextSettings, ManagedIdentity, Secret, Settings

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
    assert s.mcp_servers == ()


def test_retention_is_off_unless_conversation_retention_days_is_set():
    assert settings().conversation_retention_days is None
    assert settings(CONVERSATION_RETENTION_DAYS="").conversation_retention_days is None
    assert settings(CONVERSATION_RETENTION_DAYS="90").conversation_retention_days == 90
    with pytest.raises(InvalidSettings, match="CONVERSATION_RETENTION_DAYS: must be between 1"):
        settings(CONVERSATION_RETENTION_DAYS="-5")


def test_blob_requests_take_the_lean_path_unless_blob_requests_says_sdk():
    assert settings().blob_requests == "lean"
    assert settings(BLOB_REQUESTS="SDK").blob_requests == "sdk"
    with pytest.raises(InvalidSettings, match="BLOB_REQUESTS: must be one of lean, sdk"):
        settings(BLOB_REQUESTS="fast")


def test_servers_may_ask_a_person_unless_agent_elicitation_is_off():
    assert settings().elicitation is True
    assert settings(AGENT_ELICITATION="false").elicitation is False
    with pytest.raises(InvalidSettings, match="AGENT_ELICITATION"):
        settings(AGENT_ELICITATION="sometimes")


def test_the_context_window_is_32000_tokens_compacting_at_a_quarter_unless_told_otherwise():
    assert settings().context == ContextSettings(32_000, 8_000, True)
    chosen = settings(AGENT_CONTEXT_TOKENS="128000", AGENT_COMPACTION="off").context
    assert chosen == ContextSettings(128_000, 32_000, False)
    assert settings(AGENT_COMPACTION_TOKENS="500").context.compaction_tokens == 500


def test_an_openai_compatible_endpoint_is_the_alternative():
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_MODEL": "llama",
    }
    s = Settings.from_env(env)
    assert (s.model.kind, s.model.model, s.model.api_version) == ("openai", "llama", None)


def test_azure_speaks_the_v1_api_unless_an_api_version_is_set():
    """Settings written before v1 name an api-version: they keep the client they were for."""
    v1 = settings().model
    assert (v1.azure_api, v1.api_version, v1.model_api) == ("v1", None, "chat")
    legacy = settings(AZURE_OPENAI_API_VERSION="2024-10-21").model
    assert (legacy.azure_api, legacy.api_version) == ("legacy", "2024-10-21")
    chosen = settings(AZURE_OPENAI_API="legacy").model
    assert (chosen.azure_api, chosen.api_version) == ("legacy", "2024-10-21")
    responses = settings(AZURE_OPENAI_API="V1", MODEL_API="responses").model
    assert (responses.azure_api, responses.model_api) == ("v1", "responses")


def test_v1_with_an_api_version_is_a_contradiction_named_at_startup():
    with pytest.raises(InvalidSettings, match="AZURE_OPENAI_API_VERSION: is not used with"):
        settings(AZURE_OPENAI_API="v1", AZURE_OPENAI_API_VERSION="2024-10-21")


def test_legacy_responses_needs_a_preview_api_version_that_has_the_responses_api():
    with pytest.raises(InvalidSettings, match="AZURE_OPENAI_API_VERSION: MODEL_API=responses"):
        settings(AZURE_OPENAI_API="legacy", MODEL_API="responses")
    ok = settings(MODEL_API="responses", AZURE_OPENAI_API_VERSION="2025-04-01-preview").model
    assert (ok.azure_api, ok.model_api, ok.api_version) == (
        "legacy",
        "responses",
        "2025-04-01-preview",
    )


def test_a_reasoning_deployment_may_ask_for_reasoning_from_the_first_step():
    assert settings(MODEL_API="responses").model.reasoning == "auto"
    assert settings(MODEL_API="responses", MODEL_REASONING="On").model.reasoning == "on"
    assert settings(MODEL_API="responses", MODEL_REASONING="off").model.reasoning == "off"
    assert settings(MODEL_REASONING="auto").model.reasoning == "auto"


def test_an_openai_compatible_endpoint_may_use_the_responses_api_too():
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_MODEL": "llama",
        "MODEL_API": "responses",
    }
    assert Settings.from_env(env).model.model_api == "responses"


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
        ({"MCP_SERVERS": "[]"}, "MCP_SERVERS"),
        ({"MCP_SERVERS": '{"mcp_servers": [], "servers": []}'}, "MCP_SERVERS"),
        ({"MODEL_TEMPERATURE": "2.5"}, "MODEL_TEMPERATURE"),
        ({"SCHEDULER_WEBHOOK_SECRET": "plain"}, "SCHEDULER_WEBHOOK_SECRET"),
        ({"REQUIRE_AUTH": "maybe"}, "REQUIRE_AUTH"),
        ({"CONVERSATION_RETENTION_DAYS": "a month"}, "CONVERSATION_RETENTION_DAYS"),
        ({"CONVERSATION_RETENTION_DAYS": "0"}, "CONVERSATION_RETENTION_DAYS"),
        ({"AGENT_CONTEXT_TOKENS": "999"}, "AGENT_CONTEXT_TOKENS"),
        ({"AGENT_CONTEXT_TOKENS": "lots"}, "AGENT_CONTEXT_TOKENS"),
        ({"AGENT_COMPACTION_TOKENS": "0"}, "AGENT_COMPACTION_TOKENS"),
        ({"AGENT_COMPACTION": "sometimes"}, "AGENT_COMPACTION"),
        ({"AZURE_OPENAI_API": "v2"}, "AZURE_OPENAI_API"),
        ({"MODEL_API": "assistants"}, "MODEL_API"),
        ({"MODEL_API": "responses", "MODEL_REASONING": "always"}, "MODEL_REASONING"),
        ({"MODEL_REASONING": "on"}, "MODEL_REASONING"),  # chat has no reasoning items
        ({"MCP_TASK_TIMEOUT_SECONDS": "0"}, "MCP_TASK_TIMEOUT_SECONDS"),
        ({"MCP_TASK_POLL_MAX_SECONDS": "0.01"}, "MCP_TASK_POLL_MAX_SECONDS"),
        ({"MCP_TASK_POLL_MAX_SECONDS": "7200"}, "MCP_TASK_POLL_MAX_SECONDS"),
    ],
)
def test_a_malformed_setting_fails_naming_it(overrides, named):
    with pytest.raises(SettingsError) as caught:
        settings(**overrides)
    assert caught.value.name == named
    assert named in str(caught.value)


def test_mcp_task_limits_default_to_an_hour_and_a_minute_and_may_be_set():
    assert (settings().limits.task_timeout_seconds, settings().limits.task_poll_max_seconds) == (
        3600,
        60.0,
    )
    custom = settings(MCP_TASK_TIMEOUT_SECONDS="120", MCP_TASK_POLL_MAX_SECONDS="0.5").limits
    assert (custom.task_timeout_seconds, custom.task_poll_max_seconds) == (120, 0.5)


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
    assert [server.name for server in settings(MCP_SERVERS=str(path)).mcp_servers] == ["x"]


def test_secrets_never_show_when_settings_are_printed():
    s = settings(
        AZURE_OPENAI_API_KEY="sk-verysecretvalue123",
        SCHEDULER_WEBHOOK_SECRET="whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
    )
    assert s.model.api_key is not None and s.model.api_key.value == "sk-verysecretvalue123"
    printed = repr(s) + str(s)
    assert "verysecret" not in printed and "c2VjcmV0" not in printed


def test_the_webhook_secret_is_decoded_once_at_startup_and_a_short_key_stops_it():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert settings(SCHEDULER_WEBHOOK_SECRET=secret).scheduler_webhook_secret == Secret(b"k" * 32)
    short = "whsec_" + base64.b64encode(b"short").decode()
    with pytest.raises(InvalidSettings, match="SCHEDULER_WEBHOOK_SECRET: key is shorter"):
        settings(SCHEDULER_WEBHOOK_SECRET=short)


def test_settings_are_frozen():
    s = settings()
    with pytest.raises(AttributeError):
        s.conversations_container = "other"  # type: ignore[misc]


# --- every bad setting at once, never a value ---------------------------------------------------


def test_one_parse_names_every_bad_setting_and_none_of_their_values():
    with pytest.raises(InvalidSettings) as caught:
        settings(
            AZURE_OPENAI_DEPLOYMENT="",
            AGENT_MAX_STEPS="secret-ish-1",
            REQUIRE_AUTH="secret-ish-2",
            MODEL_TEMPERATURE="secret-ish-3",
        )
    names = ["AZURE_OPENAI_DEPLOYMENT", "MODEL_TEMPERATURE", "AGENT_MAX_STEPS", "REQUIRE_AUTH"]
    assert sorted(caught.value.names) == sorted(names)
    assert all(f"setting {name}:" in str(caught.value) for name in names)
    assert "secret-ish" not in str(caught.value)


def test_an_out_of_range_limit_says_the_range_without_echoing_the_value():
    with pytest.raises(InvalidSettings, match=r"AGENT_MAX_STEPS: must be between 1 and 100$"):
        settings(AGENT_MAX_STEPS="4242")


def test_an_unresolved_app_service_key_vault_reference_is_named_as_such():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/aoai-key/)"
    with pytest.raises(InvalidSettings) as caught:
        settings(AZURE_OPENAI_API_KEY=reference)
    assert caught.value.names == ("AZURE_OPENAI_API_KEY",)
    assert "Key Vault reference that was not resolved" in str(caught.value)
    assert "aoai-key" not in str(caught.value)


def test_a_resolved_key_vault_reference_arrives_as_the_plain_key():
    assert settings(AZURE_OPENAI_API_KEY="k-123").model.api_key == Secret("k-123")


def test_a_malformed_mcp_servers_entry_is_named_at_startup_not_at_first_use():
    with pytest.raises(InvalidSettings, match=r"MCP_SERVERS: mcp_servers\[0\].*transport"):
        settings(MCP_SERVERS='{"mcp_servers": [{"name": "x"}]}')


# --- identity-based storage and the user-assigned identity --------------------------------------

NO_CONNECTION_STRING = {k: v for k, v in BASE.items() if k != "AzureWebJobsStorage"}
CLIENT_ID = "5b0f6a5e-1c7a-4d1e-9a51-3f0b8e2d4c11"


@pytest.mark.parametrize(
    ("identity_settings", "account_url"),
    [
        (
            {"AzureWebJobsStorage__accountName": "stagent01"},
            "https://stagent01.blob.core.windows.net",
        ),
        (
            {"AzureWebJobsStorage__serviceUri": "https://stagent02.blob.core.usgovcloudapi.net/"},
            "https://stagent02.blob.core.usgovcloudapi.net",
        ),
        (
            {
                "AzureWebJobsStorage__blobServiceUri": "https://stagent03.blob.core.windows.net",
                "AzureWebJobsStorage__serviceUri": "https://other.blob.core.windows.net",
                "AzureWebJobsStorage__accountName": "other",
            },
            "https://stagent03.blob.core.windows.net",
        ),
        (
            {
                "AzureWebJobsStorage__serviceUri": "https://stagent04.blob.core.windows.net",
                "AzureWebJobsStorage__accountName": "other",
            },
            "https://stagent04.blob.core.windows.net",
        ),
    ],
)
def test_identity_based_functions_storage_gives_the_conversation_store_its_account_url(
    identity_settings, account_url
):
    s = Settings.from_env({**NO_CONNECTION_STRING, **identity_settings})
    assert s.conversations_storage == account_url
    assert s.storage_uses_account_url  # built with the managed identity, not a key


def test_conversations_storage_and_a_connection_string_win_over_the_identity_based_form():
    identity = {"AzureWebJobsStorage__accountName": "stagent01"}
    explicit = "https://conversations.blob.core.windows.net"
    assert settings(**identity, CONVERSATIONS_STORAGE=explicit).conversations_storage == explicit
    assert "devstoreaccount1" in settings(**identity).conversations_storage


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AzureWebJobsStorage__accountName", "Not_An_Account"),
        ("AzureWebJobsStorage__blobServiceUri", "stagent01.blob.core.windows.net"),
    ],
)
def test_a_malformed_identity_based_storage_setting_is_named(name, value):
    with pytest.raises(InvalidSettings) as caught:
        Settings.from_env({**NO_CONNECTION_STRING, name: value})
    assert caught.value.names == (name,)


def test_azure_client_id_selects_the_user_assigned_identity():
    assert settings().azure_client_id is None  # system-assigned (or the developer's login)
    assert settings(AZURE_CLIENT_ID=CLIENT_ID).azure_client_id == CLIENT_ID


def test_without_azure_client_id_the_functions_storage_identity_is_used():
    storage_identity = {
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": CLIENT_ID,
    }
    assert settings(**storage_identity).azure_client_id == CLIENT_ID
    other = "00000000-0000-0000-0000-0000000000aa"
    assert settings(**storage_identity, AZURE_CLIENT_ID=other).azure_client_id == other
    assert settings(AzureWebJobsStorage__clientId=CLIENT_ID).azure_client_id is None


def test_a_client_id_that_is_not_a_guid_is_named():
    with pytest.raises(InvalidSettings) as caught:
        settings(AZURE_CLIENT_ID="my-identity")
    assert caught.value.names == ("AZURE_CLIENT_ID",)


# --- model keys from Key Vault ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["AZURE_OPENAI_API_KEY", "OPENAI_API_KEY"])
def test_a_model_key_may_name_a_secret_read_later_through_the_apps_resolver(name):
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_MODEL": "m",
        **({} if name == "OPENAI_API_KEY" else BASE),
        name: '{"secret": "AOAI-KEY"}',
    }
    model = Settings.from_env(env).model
    assert (model.api_key, model.api_key_secret) == (None, "AOAI-KEY")


@pytest.mark.parametrize(
    "value", ['{"secret": ""}', '{"name": "X"}', '{"secret": "X", "v": 1}', "{x"]
)
def test_a_malformed_secret_reference_for_the_model_key_is_named(value):
    with pytest.raises(InvalidSettings) as caught:
        settings(AZURE_OPENAI_API_KEY=value)
    assert caught.value.names == ("AZURE_OPENAI_API_KEY",)


# --- REQUIRE_AUTH and App Service Authentication ------------------------------------------------


@pytest.mark.parametrize(
    "platform", [{"WEBSITE_SITE_NAME": "func-x"}, {"WEBSITE_INSTANCE_ID": "ab12"}]
)
def test_require_auth_on_azure_without_app_service_authentication_is_a_bad_setting(platform):
    with pytest.raises(InvalidSettings) as caught:
        settings(REQUIRE_AUTH="true", **platform)
    assert caught.value.names == ("REQUIRE_AUTH",)
    assert "App Service Authentication is off" in str(caught.value)
    assert "principal headers" in str(caught.value)


def test_require_auth_on_azure_with_app_service_authentication_is_accepted():
    s = settings(REQUIRE_AUTH="true", WEBSITE_SITE_NAME="func-x", WEBSITE_AUTH_ENABLED="True")
    assert (s.require_auth, s.on_azure, s.trusts_client_principal_headers) == (True, True, False)


def test_require_auth_locally_is_accepted_but_known_to_trust_the_headers():
    s = settings(REQUIRE_AUTH="true")
    assert (s.on_azure, s.trusts_client_principal_headers) == (False, True)


# --- Application Insights with Entra ID ---------------------------------------------------------


def test_appinsights_entra_auth_names_its_identity_else_azure_client_id_else_system_assigned():
    other = "00000000-0000-0000-0000-0000000000bb"
    named = f"Authorization=AAD;ClientId={other}"
    assert settings(APPLICATIONINSIGHTS_AUTHENTICATION_STRING=named).appinsights_identity == (
        ManagedIdentity(other)
    )
    plain = {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD"}
    assert settings(**plain, AZURE_CLIENT_ID=CLIENT_ID).appinsights_identity == (
        ManagedIdentity(CLIENT_ID)
    )
    assert settings(**plain).appinsights_identity == ManagedIdentity(None)
    assert settings().appinsights_identity is None  # key-based ingestion


@pytest.mark.parametrize(
    "value", ["Authorization=Key", "ClientId=" + CLIENT_ID, "Authorization=AAD;ClientId=me", "AAD"]
)
def test_a_malformed_appinsights_authentication_string_is_named(value):
    with pytest.raises(InvalidSettings) as caught:
        settings(APPLICATIONINSIGHTS_AUTHENTICATION_STRING=value)
    assert caught.value.names == ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING",)


def test_a_malformed_appinsights_connection_string_is_named_at_startup_without_its_value():
    with pytest.raises(InvalidSettings) as caught:
        settings(APPLICATIONINSIGHTS_CONNECTION_STRING="https://dc.services.visualstudio.com")
    assert caught.value.names == ("APPLICATIONINSIGHTS_CONNECTION_STRING",)
    assert "visualstudio" not in str(caught.value)


# --- the seeds' setting names ----------------------------------------------------------------


def without_deployment(**values: str) -> Settings:
    env = {key: value for key, value in BASE.items() if key != "AZURE_OPENAI_DEPLOYMENT"}
    return Settings.from_env({**env, **values})


def test_the_seeds_deployment_name_setting_is_read_when_ours_is_unset():
    s = without_deployment(AZURE_OPENAI_DEPLOYMENT_NAME="seed-deployment")
    assert s.model.model == "seed-deployment"
    assert s.notices == ()


def test_our_deployment_setting_wins_over_the_seeds_and_says_so_by_name_only():
    s = settings(AZURE_OPENAI_DEPLOYMENT_NAME="seed-deployment")
    assert s.model.model == "gpt-4o"
    [notice] = s.notices
    assert "AZURE_OPENAI_DEPLOYMENT_NAME (the seeds' name) is ignored" in notice
    assert "gpt-4o" not in notice and "seed-deployment" not in notice


def test_an_ignored_alias_is_not_parsed_so_it_cannot_stop_the_app():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/dep/)"
    s = settings(AZURE_OPENAI_DEPLOYMENT_NAME=reference)
    assert s.model.model == "gpt-4o" and len(s.notices) == 1


def test_without_either_deployment_setting_the_problem_names_ours_and_the_alias():
    with pytest.raises(InvalidSettings) as caught:
        without_deployment(AZURE_OPENAI_DEPLOYMENT_NAME=" ")
    assert caught.value.names == ("AZURE_OPENAI_DEPLOYMENT",)
    assert "AZURE_OPENAI_DEPLOYMENT_NAME is read too" in str(caught.value)


def test_an_unresolved_key_vault_reference_in_the_alias_is_named_as_the_alias():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/dep/)"
    with pytest.raises(InvalidSettings) as caught:
        without_deployment(AZURE_OPENAI_DEPLOYMENT_NAME=reference)
    assert "AZURE_OPENAI_DEPLOYMENT_NAME" in caught.value.names


def test_the_readme_settings_table_documents_every_seed_alias():
    from pathlib import Path

    from agent.settings import SETTING_ALIASES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.startswith("|")]
    for ours, alias in SETTING_ALIASES.items():
        assert any(f"`{alias}`" in row and f"`{ours}`" in row for row in table), alias


def test_a_seed_server_sent_an_arm_token_is_a_startup_notice_naming_the_server():
    seed = {
        "mcp": {
            "mcp_servers": [
                {
                    "name": "Scheduler",
                    "transport": {
                        "type": "http",
                        "url": "https://scheduler.example/mcp",
                        "auth": {"use_managed_identity": True},
                    },
                }
            ]
        }
    }
    s = settings(MCP_SERVERS=json.dumps(seed))
    [notice] = s.notices
    assert "'Scheduler' is sent an Azure Resource Manager token" in notice
