// The Function App on Flex Consumption (Python 3.11, host.json as shipped), running as the one
// user-assigned identity. Its package lives in a blob container the identity reads; its outbound
// traffic goes through the VNet to the private endpoints.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainer string
param conversationsContainer string
param appInsightsConnectionString string
param keyVaultUri string
@description('Versioned URI of the webhook secret in Key Vault.')
param webhookSecretUri string
param openAiEndpoint string
param openAiDeploymentName string
param schedulerUrl string
param schedulerClientId string
param requireAuth bool
@description('Durable Task Scheduler endpoint; empty keeps Durable state in the storage account.')
param durableTaskEndpoint string
param taskHubName string
param integrationSubnetId string
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40
@description('Spread instances over availability zones. On Flex Consumption the platform then keeps two always-ready instances per function group, billed while idle (README: idle cost).')
param zoneRedundant bool = true

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// The default host name, known before the site exists so the settings can name it (the app's own
// PUBLIC_BASE_URL, from which it builds the Scheduler callback URL).
var hostName = '${name}.azurewebsites.net'

// MCP_SERVERS: the Scheduler, with its key read from Key Vault by the app ({"secret": NAME}) and
// the callback URL and conversation pinned so the model can neither redirect nor cross over.
var mcpServers = {
  mcp_servers: [
    {
      name: 'scheduler'
      transport: { type: 'streamable_http', url: '${schedulerUrl}/mcp' }
      auth: { type: 'api_key', client_id: schedulerClientId, api_key: { secret: 'SCHEDULER-API-KEY' } }
      tools: {
        allow: ['schedule_conversation', 'list_scheduled_conversations', 'cancel_scheduled_conversation']
        require_approval: ['cancel_scheduled_conversation']
      }
      pinned_arguments: {
        schedule_conversation: { endpoint: '\${callback_url}', conversation_id: '\${conversation_id}' }
        list_scheduled_conversations: { conversation_id: '\${conversation_id}' }
        cancel_scheduled_conversation: { conversation_id: '\${conversation_id}' }
      }
      timeout_seconds: 30
      // The sample Scheduler applies a call at most once per idempotency key: a call cut off
      // mid-flight is sent again instead of asking a person (README: "Tool calls cut off by a crash").
      idempotent_calls: true
    }
  ]
}

var baseSettings = {
  // Host storage and Durable's task hub through the identity: no connection string, no key.
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // DefaultAzureCredential in the app (Blob, Key Vault, Azure OpenAI) picks this identity.
  AZURE_CLIENT_ID: identityClientId
  // CONVERSATIONS_STORAGE is left unset: the app derives the account URL from
  // AzureWebJobsStorage__accountName and uses the identity.
  CONVERSATIONS_CONTAINER: conversationsContainer
  AZURE_OPENAI_ENDPOINT: openAiEndpoint
  AZURE_OPENAI_DEPLOYMENT: openAiDeploymentName
  // Azure OpenAI's v1 API: no api-version to keep current (the app's default; said here so a
  // stray AZURE_OPENAI_API_VERSION fails at startup instead of quietly choosing legacy).
  AZURE_OPENAI_API: 'v1'
  // No AZURE_OPENAI_API_KEY: the app calls Azure OpenAI with its identity.
  KEYVAULT_URI: keyVaultUri
  SCHEDULER_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${webhookSecretUri})'
  PUBLIC_BASE_URL: 'https://${hostName}'
  MCP_SERVERS: string(mcpServers)
  REQUIRE_AUTH: requireAuth ? 'true' : 'false'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  // Local auth is off on Application Insights: the host and the app send with the identity.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  // GET /api/runs/{id}/events streams as the run goes: the Python worker's HTTP streaming mode,
  // which the FastAPI extension (requirements.txt) turns on while the app is indexed at init
  // (agent/http_streaming.py). Without it the route still answers, buffered.
  PYTHON_ENABLE_INIT_INDEXING: '1'
  AGENT_HTTP_STREAMING: 'true'
}

// host.json stays as shipped; these app settings override its storage provider (the platform maps
// AzureFunctionsJobHost__a__b to host.json's a.b) to move Durable's state to the scheduler.
var durableTaskSettings = empty(durableTaskEndpoint) ? {} : {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  AzureFunctionsJobHost__extensions__durableTask__hubName: taskHubName
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
}

var appSettings = union(baseSettings, durableTaskSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP endpoint and rejects siteConfig.ftpsState; FTP and SCM basic auth are switched off below.
  // checkov:skip=CKV_AZURE_222: the app IS the public HTTP API (function keys, App Service Authentication and webhook signatures guard it); its own outbound traffic is private.
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no worker count; it scales out per demand, and always-ready instances would bill while idle.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references (SCHEDULER_WEBHOOK_SECRET) resolve with the app identity.
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: integrationSubnetId
    // Callers may present a client certificate (browsers are not prompted); function keys, App
    // Service Authentication and the callback's signature stay the gate.
    clientCertEnabled: true
    clientCertMode: 'OptionalInteractiveUser'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      healthCheckPath: '/api/health'
      appSettings: [for setting in items(appSettings): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// No publishing with user names and passwords: deployments authenticate with Entra ID.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: { allow: false }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: { allow: false }
}

output name string = site.name
output url string = 'https://${hostName}'
output hostName string = hostName
