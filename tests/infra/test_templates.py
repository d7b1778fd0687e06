"""The Azure templates read against the code: what the Function App is configured with parses as
the app's settings, every role the code needs is assigned and none is broader, the Scheduler gets
its secrets from Key Vault. Azure is not reachable here: these read the parsed Bicep."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.mcp.config import ApiKeyAuth, parse_mcp_servers
from agent.scheduling import IDEMPOTENCY_WINDOW
from agent.settings import Settings
from samples.scheduler_mcp.validation import MAX_AHEAD
from storage.batches import OWNER_SCHEDULE_GRACE
from storage.batches import _owner_schedule_name as owner_schedule_name
from storage.idempotency import _name as request_key_name
from tests.infra.bicep import (
    INFRA,
    Scope,
    accessor_path,
    body,
    parse_templates,
    resources_of_type,
)

ROLE = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "81a9662b-bebf-436f-a333-f67b29880f12": "Storage Account Key Operator Service Role",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "00482a5a-887f-4fb3-b363-3baf46b4b16b": "Key Vault Administrator",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68": "Cognitive Services Contributor",
    "a001fd3d-188f-4b5d-821b-7da978bf7442": "Cognitive Services OpenAI Contributor",
    "8311e382-0749-4cb8-b61a-304f252e45ec": "AcrPush",
    # What the templates may grant:
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd": "Cognitive Services OpenAI User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "0ad04412-c4d5-4796-b79c-f76d14c8d402": "Durable Task Data Contributor",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
}
# Each allowed role, with the only resource type it may be granted on.
ALLOWED = {
    "Storage Blob Data Contributor": "Microsoft.Storage/storageAccounts",
    "Storage Blob Data Reader": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Storage Queue Data Contributor": "Microsoft.Storage/storageAccounts",
    "Storage Table Data Contributor": "Microsoft.Storage/storageAccounts",
    "Key Vault Secrets User": ("Microsoft.KeyVault/vaults", "Microsoft.KeyVault/vaults/secrets"),
    "Cognitive Services OpenAI User": "Microsoft.CognitiveServices/accounts",
    "Monitoring Metrics Publisher": "Microsoft.Insights/components",
    "Durable Task Data Contributor": "Microsoft.DurableTask/schedulers/taskHubs",
    "AcrPull": "Microsoft.ContainerRegistry/registries",
}

STORAGE_ACCOUNT = "stexampletoken1"
CLIENT_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
# The function app module's parameters and resource properties, as main.bicep passes them.
FUNCTION_APP_VALUES: dict[str, Any] = {
    "name": "func-exampletoken1",
    "storage.name": STORAGE_ACCOUNT,
    "identityClientId": CLIENT_ID,
    "conversationsContainer": "conversations",
    "openAiEndpoint": "https://oai-exampletoken1.openai.azure.com/",
    "openAiDeploymentName": "chat",
    "keyVaultUri": "https://kv-exampletoken1.vault.azure.net/",
    "webhookSecretUri": "https://kv-exampletoken1.vault.azure.net/secrets/SCHEDULER-WEBHOOK-SECRET/0a1b",
    "schedulerUrl": "https://ca-scheduler-exampletoken1.example.westeurope.azurecontainerapps.io",
    "schedulerClientId": "durable-agent",
    "requireAuth": False,
    "appInsightsConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/",
    "durableTaskEndpoint": "",
    "taskHubName": "durableagenthub",
}
# What App Service adds on Azure, and the values Key Vault references resolve to there.
PLATFORM = {"WEBSITE_SITE_NAME": "func-exampletoken1", "WEBSITE_INSTANCE_ID": "0" * 64}


def function_app_settings(**overrides: Any) -> dict[str, str]:
    scope = Scope(parse_templates()["modules/functionapp.bicep"], FUNCTION_APP_VALUES | overrides)
    return scope.variable("appSettings")


def as_resolved_on_azure(settings: dict[str, str]) -> dict[str, str]:
    """The environment the worker sees: Key Vault references resolved, platform settings added."""
    resolved = {
        name: (WEBHOOK_SECRET if value.startswith("@Microsoft.KeyVault(") else value)
        for name, value in settings.items()
    }
    return PLATFORM | resolved


def role_assignments() -> list[dict[str, Any]]:
    """Every role assignment in every template: file, role name, principal, scope type."""
    found = []
    for path, template in parse_templates().items():
        variables = template.get("variables", {})
        for name, resource in resources_of_type(
            template, "Microsoft.Authorization/roleAssignments"
        ).items():
            config = body(resource)
            role_ref = config["properties"]["roleDefinitionId"]["function"]["parameters"]
            role_id = _role_id(role_ref["resource_name_1"], variables)
            principal = config["properties"]["principalId"]
            if isinstance(principal, dict):
                principal = accessor_path(principal["operator"])
            scope_resource = template["resources"][config["scope"]]
            found.append(
                {
                    "where": f"{path}:{name}",
                    "role": ROLE.get(role_id, role_id),
                    "principal": f"{path}:{principal}",
                    "scope": scope_resource["type"],
                }
            )
    return found


def _role_id(reference: Any, variables: dict[str, Any]) -> str:
    if isinstance(reference, dict):  # roles.<name>: a property of an object variable
        head, _, key = accessor_path(reference["operator"]).partition(".")
        return variables[head]["value"][key]
    return variables[reference]["value"] if reference in variables else reference


# --- parsing -----------------------------------------------------------------------------------


def test_every_bicep_file_parses_and_declares_what_it_is_for():
    templates = parse_templates()
    assert "main.bicep" in templates
    for path, template in templates.items():
        assert template.get("resources") or template.get("modules"), f"{path} declares nothing"


def test_main_outputs_the_app_url_the_scheduler_url_and_the_key_vault_name():
    outputs = parse_templates()["main.bicep"]["outputs"]
    assert {"SERVICE_API_URL", "SERVICE_SCHEDULER_URL", "AZURE_KEY_VAULT_NAME"} <= set(outputs)


# --- the Function App's settings, against agent.settings ---------------------------------------


def test_the_function_app_settings_parse_as_the_apps_settings_with_the_identitys_account_url():
    settings = Settings.from_env(as_resolved_on_azure(function_app_settings()))
    assert settings.conversations_storage == f"https://{STORAGE_ACCOUNT}.blob.core.windows.net"
    assert settings.storage_uses_account_url
    assert settings.azure_client_id == CLIENT_ID
    assert settings.model.kind == "azure" and settings.model.api_key is None
    assert (settings.model.azure_api, settings.model.api_version) == ("v1", None)
    assert settings.keyvault_uri == FUNCTION_APP_VALUES["keyVaultUri"].rstrip("/")
    assert settings.scheduler_webhook_secret is not None
    assert settings.scheduler_webhook_secret.value == b"k" * 32
    assert settings.public_base_url == "https://func-exampletoken1.azurewebsites.net"
    assert settings.appinsights_identity is not None


def test_storage_is_reached_by_identity_only_with_no_connection_string_or_key():
    settings = function_app_settings()
    assert "AzureWebJobsStorage" not in settings and "CONVERSATIONS_STORAGE" not in settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == CLIENT_ID
    assert "AZURE_OPENAI_API_KEY" not in settings
    account = parse_templates()["modules/storage.bicep"]["resources"]["account"]["config"]
    assert account["properties"]["allowSharedKeyAccess"] is False
    assert account["properties"]["allowBlobPublicAccess"] is False
    assert account["properties"]["minimumTlsVersion"] == "TLS1_2"


def test_the_function_app_streams_run_events_with_the_fastapi_extension_indexed_at_init():
    from agent import http_streaming

    settings = as_resolved_on_azure(function_app_settings())
    assert settings["PYTHON_ENABLE_INIT_INDEXING"] == "1"  # the worker's HTTP v2 mode needs it
    assert http_streaming.enabled(settings)
    root = Path(__file__).resolve().parents[2]
    pins = (root / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("azurefunctions-extensions-http-fastapi==") for line in pins)


def test_the_webhook_secret_is_a_key_vault_reference_never_a_value():
    settings = function_app_settings()
    assert settings["SCHEDULER_WEBHOOK_SECRET"] == (
        f"@Microsoft.KeyVault(SecretUri={FUNCTION_APP_VALUES['webhookSecretUri']})"
    )


def test_the_scheduler_in_mcp_servers_reads_its_key_from_key_vault_and_pins_the_callback():
    settings = function_app_settings()
    (server,) = parse_mcp_servers(settings["MCP_SERVERS"])
    assert server.name == "scheduler"
    assert isinstance(server.auth, ApiKeyAuth)
    keyvault = parse_templates()["modules/keyvault.bicep"]["variables"]
    assert server.auth.api_key.secret_name == keyvault["apiKeySecretName"]["value"]
    assert server.pinned_for("schedule_conversation")["endpoint"] == "${callback_url}"
    for tool in server.tools.allow or ():
        assert server.pinned_for(tool)["conversation_id"] == "${conversation_id}"
    # The sample Scheduler dedupes by idempotency key: a cut-off call is resent, not asked about.
    assert server.idempotent_calls


def test_the_durable_task_scheduler_switches_the_storage_provider_through_app_settings():
    endpoint = "https://dts-exampletoken1.westeurope.durabletask.io"
    settings = function_app_settings(durableTaskEndpoint=endpoint)
    prefix = "AzureFunctionsJobHost__extensions__durableTask__"
    assert settings[f"{prefix}storageProvider__type"] == "azureManaged"
    connection_name = settings[f"{prefix}storageProvider__connectionStringName"]
    assert settings[connection_name] == (
        f"Endpoint={endpoint};Authentication=ManagedIdentity;ClientID={CLIENT_ID}"
    )
    assert settings[f"{prefix}hubName"] == FUNCTION_APP_VALUES["taskHubName"]
    assert not any(name.startswith(prefix) for name in function_app_settings())


# --- roles ---------------------------------------------------------------------------------------


def test_no_role_is_broader_than_its_allowed_use():
    assignments = role_assignments()
    assert len(assignments) >= 9
    for assignment in assignments:
        role, scope = assignment["role"], assignment["scope"]
        assert role in ALLOWED, f"{assignment['where']} grants {role}"
        allowed_scopes = ALLOWED[role] if isinstance(ALLOWED[role], tuple) else (ALLOWED[role],)
        assert scope in allowed_scopes, f"{assignment['where']}: {role} on {scope}"


def test_every_role_assignment_says_why_just_above_it():
    declaration = re.compile(r"^resource (\w+) 'Microsoft\.Authorization/roleAssignments@", re.M)
    for path in parse_templates():
        text = (INFRA / path).read_text(encoding="utf-8")
        for match in declaration.finditer(text):
            above = text[: match.start()].rstrip().split("\n\n")[-1]
            assert "// Why:" in above, f"{path}: {match.group(1)} does not say why"


def test_every_role_the_code_needs_is_granted_to_the_app_identity():
    app = "modules/app-roles.bicep:principalId"
    granted = {(a["role"], a["scope"]) for a in role_assignments() if a["principal"] == app} | {
        (a["role"], a["scope"])
        for a in role_assignments()
        if a["principal"] == "modules/durabletask.bicep:principalId"
    }
    settings = function_app_settings(durableTaskEndpoint="https://dts.example")
    needs = {("Storage Blob Data Contributor", "Microsoft.Storage/storageAccounts")}
    needs.add(("Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts"))
    needs.add(("Storage Table Data Contributor", "Microsoft.Storage/storageAccounts"))
    if settings.get("KEYVAULT_URI") or any("@Microsoft.KeyVault(" in v for v in settings.values()):
        needs.add(("Key Vault Secrets User", "Microsoft.KeyVault/vaults"))
    if "AZURE_OPENAI_ENDPOINT" in settings and "AZURE_OPENAI_API_KEY" not in settings:
        needs.add(("Cognitive Services OpenAI User", "Microsoft.CognitiveServices/accounts"))
    if "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in settings:
        needs.add(("Monitoring Metrics Publisher", "Microsoft.Insights/components"))
    if "DURABLE_TASK_SCHEDULER_CONNECTION_STRING" in settings:
        needs.add(("Durable Task Data Contributor", "Microsoft.DurableTask/schedulers/taskHubs"))
    assert needs <= granted, f"missing: {needs - granted}"


# --- the Scheduler's Container App ---------------------------------------------------------------


def scheduler_container() -> tuple[dict[str, Any], dict[str, Any]]:
    template = parse_templates()["modules/scheduler.bicep"]
    app = template["resources"]["app"]["config"]["properties"]
    return app["configuration"], app["template"]["containers"][0]


def test_the_scheduler_gets_its_secrets_as_key_vault_references_never_literals():
    configuration, container = scheduler_container()
    secrets = {secret["name"]: secret for secret in configuration["secrets"]}
    for secret in secrets.values():
        assert "value" not in secret, f"secret {secret['name']} has a literal value"
        assert isinstance(secret["keyVaultUrl"], dict)  # a reference to the vault secret
        assert accessor_path(secret["keyVaultUrl"]["operator"]).endswith("secretUriWithVersion")
        assert accessor_path(secret["identity"]["operator"]) == "identity.id"
    env = {item["name"]: item for item in container["env"]}
    for name in ("SCHEDULER_API_KEY", "SCHEDULER_WEBHOOK_SECRET"):
        assert "value" not in env[name] and env[name]["secretRef"] in secrets


def test_the_scheduler_is_told_the_apps_callback_url_by_the_deployment_not_a_literal():
    _, container = scheduler_container()
    env = {item["name"]: item for item in container["env"]}
    parameters = parse_templates()["modules/scheduler.bicep"]["parameters"]
    assert env["SCHEDULER_ALLOWED_ENDPOINTS"]["value"] in parameters
    module = body(parse_templates()["main.bicep"]["modules"]["scheduler"])["params"]
    assert module["callbackUrl"] == "${functionApp.outputs.url}/api/scheduler/callback"


def test_the_scheduler_and_the_app_read_the_same_webhook_secret():
    main = parse_templates()["main.bicep"]["modules"]
    scheduler = body(main["scheduler"])["params"]
    assert accessor_path(scheduler["webhookSecretName"]["operator"]) == (
        "keyVault.outputs.webhookSecretName"
    )
    app = body(main["functionApp"])["params"]
    assert accessor_path(app["webhookSecretUri"]["operator"]) == "keyVault.outputs.webhookSecretUri"


def test_every_module_call_passes_each_required_parameter_and_no_unknown_one():
    templates = parse_templates()
    for path, template in templates.items():
        base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        for name, module in template.get("modules", {}).items():
            target = templates[_normalise(base + module["detail"]["path"])]
            declared = target.get("parameters", {})
            given = set(body(module)["params"])
            required = {p for p, spec in declared.items() if spec.get("default") is None}
            assert given <= set(declared), f"{path}:{name} passes unknown {given - set(declared)}"
            assert required <= given, f"{path}:{name} misses {required - given}"


def _normalise(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def test_the_callback_url_the_scheduler_allows_is_the_one_the_app_builds():
    settings = Settings.from_env(as_resolved_on_azure(function_app_settings()))
    built_by_app = f"{settings.public_base_url}/api/scheduler/callback"  # agent/scheduling.py
    template = parse_templates()["modules/functionapp.bicep"]
    app_url = Scope(template, FUNCTION_APP_VALUES).value(template["outputs"]["url"]["value"])
    passed = body(parse_templates()["main.bicep"]["modules"]["scheduler"])["params"]["callbackUrl"]
    assert passed.replace("${functionApp.outputs.url}", app_url) == built_by_app


def test_the_lifecycle_policy_sweeps_only_request_keys_and_owner_schedules_already_void():
    templates = parse_templates()
    [policy] = resources_of_type(
        templates["modules/storage.bicep"], "Microsoft.Storage/storageAccounts/managementPolicies"
    ).values()
    swept = {}
    for rule in body(policy)["properties"]["policy"]["rules"]:
        definition = rule["definition"]
        [prefix] = definition["filters"]["prefixMatch"]
        days = definition["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]
        assert rule["enabled"] is True and prefix.startswith("${conversationsContainer}/")
        swept[prefix.removeprefix("${conversationsContainer}/")] = timedelta(days=days)
    # the prefixes the code writes, and nothing else of the conversations container
    assert set(swept) == {
        request_key_name("k").split("/")[0] + "/",
        owner_schedule_name("c", "t").split("/")[0] + "/",
    }
    assert swept["request-keys/"] > IDEMPOTENCY_WINDOW
    # an entry written today may be due MAX_AHEAD later and live OWNER_SCHEDULE_GRACE after that
    assert swept["owner-schedules/"] > MAX_AHEAD + OWNER_SCHEDULE_GRACE
    storage = body(templates["main.bicep"]["modules"]["storage"])
    assert storage["params"]["conversationsContainer"] == "conversationsContainer"
