// `azd up` entry point: one resource group holding the Function App (Flex Consumption), its storage,
// Key Vault, monitoring, Azure OpenAI (optional), the Durable Task Scheduler (optional) and the
// sample Scheduler MCP server as a Container App. The Function App uses ONE user-assigned identity
// for everything; the Scheduler has its own. Modules are under ./modules.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of every resource (one that offers Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('true: create an Azure OpenAI account and a model deployment. false: use openAiEndpoint.')
param createOpenAi bool = true

@description('Existing Azure OpenAI endpoint (https://<name>.openai.azure.com), used when createOpenAi is false. Give the app identity the Cognitive Services OpenAI User role on it yourself.')
param openAiEndpoint string = ''

@description('Deployment name: the created one, or the existing one behind openAiEndpoint.')
param openAiDeploymentName string = 'chat'

@description('Model and version of the created deployment.')
param openAiModelName string = 'gpt-4o-mini'
param openAiModelVersion string = '2024-07-18'

@description('Tokens-per-minute capacity (thousands) of the created deployment.')
param openAiCapacity int = 10

@description('true: Durable Functions keeps its state in a Durable Task Scheduler (Consumption SKU) instead of the storage account queues and tables.')
param useDurableTaskScheduler bool = false

@description('Zone-redundant Function App: survives a zone outage, but keeps two always-ready instances per function group billed while idle. false for development.')
param zoneRedundant bool = true

@description('true: callers must sign in (turn on App Service Authentication for the app first).')
param requireAuth bool = false

@description('Client id the app presents to the Scheduler (an identifier, not a secret).')
param schedulerClientId string = 'durable-agent'

@secure()
@description('The Scheduler\'s API key. azd fills it from the environment (scripts/azd_secrets.py makes one on the first `azd up`).')
param schedulerApiKey string

@secure()
@description('Standard Webhooks secret (whsec_<base64>) shared by the Scheduler and the app.')
param schedulerWebhookSecret string

@description('Scheduler image; azd sets it on deploy, the placeholder serves the first provision.')
param schedulerImage string = ''

@description('Object id of the developer running azd: given read access to Key Vault secrets and the conversations container, for debugging. Leave empty for none.')
param principalId string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-${resourceToken}'
var schedulerAppName = 'ca-scheduler-${resourceToken}'
var conversationsContainer = 'conversations'
// Flex Consumption pulls the package from this container (deployment storage).
var deploymentContainer = 'app-package-${take(resourceToken, 20)}'
var taskHubName = 'durableagenthub'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module appIdentity 'modules/identity.bicep' = {
  name: 'app-identity'
  scope: rg
  params: {
    name: 'id-app-${resourceToken}'
    location: location
    tags: tags
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containers: [conversationsContainer, deploymentContainer]
    conversationsContainer: conversationsContainer
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: network.outputs.storageDnsZoneIds
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: network.outputs.keyVaultDnsZoneId
    schedulerApiKey: schedulerApiKey
    schedulerWebhookSecret: schedulerWebhookSecret
  }
}

module openAi 'modules/openai.bicep' = if (createOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    name: 'oai-${resourceToken}'
    location: location
    tags: tags
    deploymentName: openAiDeploymentName
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    capacity: openAiCapacity
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: network.outputs.openAiDnsZoneId
  }
}

module durableTask 'modules/durabletask.bicep' = if (useDurableTaskScheduler) {
  name: 'durabletask'
  scope: rg
  params: {
    name: 'dts-${resourceToken}'
    location: location
    tags: tags
    taskHubName: taskHubName
    principalId: appIdentity.outputs.principalId
  }
}

// The Scheduler's environment comes first: its default domain gives the Scheduler URL the app is
// configured with, and the app's host name is what the Scheduler calls back (no cycle).
module schedulerEnvironment 'modules/container-env.bicep' = {
  name: 'scheduler-environment'
  scope: rg
  params: {
    environmentName: 'cae-${resourceToken}'
    registryName: 'cr${resourceToken}'
    location: location
    tags: tags
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    infrastructureSubnetId: network.outputs.containerAppsSubnetId
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    registryDnsZoneId: network.outputs.registryDnsZoneId
  }
}

var schedulerUrl = 'https://${schedulerAppName}.${schedulerEnvironment.outputs.defaultDomain}'

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    identityId: appIdentity.outputs.id
    identityClientId: appIdentity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainer: deploymentContainer
    conversationsContainer: conversationsContainer
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    keyVaultUri: keyVault.outputs.uri
    webhookSecretUri: keyVault.outputs.webhookSecretUri
    openAiEndpoint: createOpenAi ? openAi.outputs.endpoint : openAiEndpoint
    openAiDeploymentName: openAiDeploymentName
    schedulerUrl: schedulerUrl
    schedulerClientId: schedulerClientId
    requireAuth: requireAuth
    durableTaskEndpoint: useDurableTaskScheduler ? durableTask.outputs.endpoint : ''
    taskHubName: taskHubName
    integrationSubnetId: network.outputs.functionAppSubnetId
    zoneRedundant: zoneRedundant
  }
}

module scheduler 'modules/scheduler.bicep' = {
  name: 'scheduler'
  scope: rg
  params: {
    name: schedulerAppName
    location: location
    tags: union(tags, { 'azd-service-name': 'scheduler' })
    environmentId: schedulerEnvironment.outputs.environmentId
    registryName: schedulerEnvironment.outputs.registryName
    image: schedulerImage
    keyVaultName: keyVault.outputs.name
    apiKeySecretName: keyVault.outputs.apiKeySecretName
    webhookSecretName: keyVault.outputs.webhookSecretName
    clientId: schedulerClientId
    callbackUrl: '${functionApp.outputs.url}/api/scheduler/callback'
  }
}

module appRoles 'modules/app-roles.bicep' = {
  name: 'app-roles'
  scope: rg
  params: {
    principalId: appIdentity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    openAiName: createOpenAi ? openAi.outputs.name : ''
    durableStateInStorage: !useDurableTaskScheduler
    developerPrincipalId: principalId
    conversationsContainer: conversationsContainer
  }
}

// What `azd up` prints, and what azd keeps in the environment for later runs.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = schedulerEnvironment.outputs.registryLoginServer
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_URL string = functionApp.outputs.url
output SERVICE_SCHEDULER_URL string = scheduler.outputs.url
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
