// Key Vault in RBAC mode with soft delete and purge protection, reachable only through its private
// endpoint. It holds the Scheduler's API key and webhook secret; the app reads them with its
// identity (Key Vault reference and {"secret": NAME}), the Scheduler with its own.
param name string
param location string
param tags object
param privateEndpointSubnetId string
param privateDnsZoneId string
@secure()
param schedulerApiKey string
@secure()
param schedulerWebhookSecret string
@description('Secrets expire a year after the last provision: every `azd provision` moves it on.')
param secretExpiry int = dateTimeToEpoch(dateTimeAdd(utcNow(), 'P365D'))

// Secret names as the app's MCP_SERVERS names them ({"secret": "SCHEDULER-API-KEY"}).
var apiKeySecretName = 'SCHEDULER-API-KEY'
var webhookSecretName = 'SCHEDULER-WEBHOOK-SECRET'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
  }
}

resource apiKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: apiKeySecretName
  properties: {
    value: schedulerApiKey
    contentType: 'text/plain'
    attributes: { exp: secretExpiry }
  }
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: webhookSecretName
  properties: {
    value: schedulerWebhookSecret
    contentType: 'text/plain'
    attributes: { exp: secretExpiry }
  }
}

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetId: vault.id
    groupId: 'vault'
    privateDnsZoneId: privateDnsZoneId
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
output apiKeySecretName string = apiKey.name
output webhookSecretName string = webhookSecret.name
// Versioned: a rotated secret changes the app setting, so the app restarts with the new value
// at once instead of after the platform's 24-hour Key Vault reference refresh.
output webhookSecretUri string = webhookSecret.properties.secretUriWithVersion
