// The Scheduler's home: a container registry for its image (azd pushes it there) and a
// Container Apps environment in the VNet. The registry takes no anonymous or admin-key pulls:
// the Scheduler's identity pulls with AcrPull.
param environmentName string
param registryName string
param location string
param tags object
param logAnalyticsName string
param infrastructureSubnetId string
param privateEndpointSubnetId string
param registryDnsZoneId string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139: azd builds and pushes the Scheduler image from the developer's machine; pulls go through the private endpoint, and no anonymous or admin-key access exists.
  // checkov:skip=CKV_AZURE_166: quarantine would hold the freshly pushed Scheduler image until an external scanner releases it, so the Container App could never start it.
  name: registryName
  location: location
  tags: tags
  sku: { name: 'Premium' }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    dataEndpointEnabled: true
    publicNetworkAccess: 'Enabled'
    networkRuleBypassOptions: 'AzureServices'
    zoneRedundancy: 'Enabled'
    policies: {
      // Quarantine stays off: it holds every pushed image until an external scanner releases it,
      // so the Scheduler's own image could never be pulled (checkov skip above the resource).
      quarantinePolicy: { status: 'disabled' }
      retentionPolicy: { days: 7, status: 'enabled' }
    }
  }
}

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    // Logs go through Azure Monitor diagnostic settings (below), not the workspace's shared key.
    appLogsConfiguration: { destination: 'azure-monitor' }
    vnetConfiguration: {
      infrastructureSubnetId: infrastructureSubnetId
      internal: false
    }
    workloadProfiles: [{ name: 'Consumption', workloadProfileType: 'Consumption' }]
    zoneRedundant: true
  }
}

resource logs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-workspace'
  scope: managedEnvironment
  properties: {
    workspaceId: workspace.id
    logs: [{ categoryGroup: 'allLogs', enabled: true }]
  }
}

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-${registryName}'
  params: {
    name: 'pe-${registryName}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetId: registry.id
    groupId: 'registry'
    privateDnsZoneId: registryDnsZoneId
  }
}

output environmentId string = managedEnvironment.id
output defaultDomain string = managedEnvironment.properties.defaultDomain
output registryName string = registry.name
output registryLoginServer string = registry.properties.loginServer
