// The sample Scheduler MCP server as a Container App with its own identity. Its API key and
// webhook secret are Key Vault references resolved with that identity (never literals); the
// identity reads exactly those two secrets and pulls from the registry, nothing else.
param name string
param location string
param tags object
param environmentId string
param registryName string
@description('Image from azd deploy; empty on the first provision (a placeholder serves until then).')
param image string
param keyVaultName string
param apiKeySecretName string
param webhookSecretName string
param clientId string
@description('The app\'s /api/scheduler/callback: the only endpoint the Scheduler may call.')
param callbackUrl string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var port = 8080

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${name}'
  location: location
  tags: tags
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource apiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: apiKeySecretName
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: webhookSecretName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

// Why: the Scheduler authenticates the app's calls with this key; scoped to this one secret.
resource readApiKey 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(apiKeySecret.id, identity.id, keyVaultSecretsUser)
  scope: apiKeySecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// Why: the Scheduler signs its callbacks with this secret; scoped to this one secret.
resource readWebhookSecret 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webhookSecret.id, identity.id, keyVaultSecretsUser)
  scope: webhookSecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// Why: the Container App pulls the Scheduler image azd pushed; pull only, no push.
resource pull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, identity.id, acrPull)
  scope: registry
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
  }
}

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  dependsOn: [readApiKey, readWebhookSecret, pull]
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      ingress: {
        external: true
        targetPort: port
        transport: 'http'
        allowInsecure: false
      }
      registries: [{ server: registry.properties.loginServer, identity: identity.id }]
      // Versioned secret URIs: a rotated secret starts a new revision with the new value.
      secrets: [
        { name: 'api-key', keyVaultUrl: apiKeySecret.properties.secretUriWithVersion, identity: identity.id }
        { name: 'webhook-secret', keyVaultUrl: webhookSecret.properties.secretUriWithVersion, identity: identity.id }
      ]
    }
    template: {
      containers: [
        {
          name: 'scheduler'
          image: empty(image) ? 'mcr.microsoft.com/k8se/quickstart:latest' : image
          resources: { cpu: json('0.25'), memory: '0.5Gi' }
          env: [
            { name: 'SCHEDULER_CLIENT_ID', value: clientId }
            { name: 'SCHEDULER_API_KEY', secretRef: 'api-key' }
            { name: 'SCHEDULER_WEBHOOK_SECRET', secretRef: 'webhook-secret' }
            { name: 'SCHEDULER_ALLOWED_ENDPOINTS', value: callbackUrl }
          ]
          probes: [
            { type: 'Liveness', tcpSocket: { port: port } }
          ]
        }
      ]
      // One replica: schedules live in the replica's SQLite file (a sample; see the README).
      scale: { minReplicas: 1, maxReplicas: 1 }
    }
  }
}

output url string = 'https://${app.properties.configuration.ingress.fqdn}'
output identityPrincipalId string = identity.properties.principalId
