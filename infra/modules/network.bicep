// The virtual network: the Function App's outbound traffic (VNet integration), the Container Apps
// environment, and private endpoints, so storage, Key Vault, Azure OpenAI and the registry take no
// traffic from the internet. Private DNS zones resolve their names to the private endpoints.
param name string
param location string
param tags object

var storageZones = [
  'privatelink.blob.${environment().suffixes.storage}'
  'privatelink.queue.${environment().suffixes.storage}'
  'privatelink.table.${environment().suffixes.storage}'
]
var keyVaultZone = 'privatelink.vaultcore.azure.net'
var openAiZone = 'privatelink.openai.azure.com'
var registryZone = 'privatelink.azurecr.io'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: ['10.40.0.0/16'] }
    subnets: [
      {
        // Flex Consumption VNet integration needs a subnet delegated to Microsoft.App/environments.
        name: 'functions'
        properties: {
          addressPrefix: '10.40.1.0/24'
          // Egress to what has no private endpoint here (Application Insights ingestion, the
          // Durable Task Scheduler, the Scheduler's public endpoint); a NAT gateway is the
          // production choice (fixed egress IPs).
          defaultOutboundAccess: true
          delegations: [{ name: 'flex', properties: { serviceName: 'Microsoft.App/environments' } }]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: '10.40.2.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
      {
        // A workload-profiles Container Apps environment: a delegated subnet, /27 or larger.
        name: 'container-apps'
        properties: {
          addressPrefix: '10.40.4.0/23'
          // Egress for the Scheduler's callbacks to the app's public endpoint.
          defaultOutboundAccess: true
          delegations: [{ name: 'aca', properties: { serviceName: 'Microsoft.App/environments' } }]
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for zone in concat(storageZones, [keyVaultZone, openAiZone, registryZone]): {
  name: zone
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (zone, i) in concat(storageZones, [keyVaultZone, openAiZone, registryZone]): {
  parent: zones[i]
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: { id: vnet.id }
  }
}]

output functionAppSubnetId string = vnet.properties.subnets[0].id
output privateEndpointSubnetId string = vnet.properties.subnets[1].id
output containerAppsSubnetId string = vnet.properties.subnets[2].id
output storageDnsZoneIds array = [zones[0].id, zones[1].id, zones[2].id]
output keyVaultDnsZoneId string = zones[3].id
output openAiDnsZoneId string = zones[4].id
output registryDnsZoneId string = zones[5].id
