// An Azure OpenAI account with one model deployment. Keys are disabled (Entra only: the app
// identity has Cognitive Services OpenAI User); reachable only through its private endpoint.
param name string
param location string
param tags object
param deploymentName string
param modelName string
param modelVersion string
param capacity int
param privateEndpointSubnetId string
param privateDnsZoneId string

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: { name: 'S0' }
  identity: { type: 'SystemAssigned' }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Disabled'
    restrictOutboundNetworkAccess: true
    allowedFqdnList: []
    networkAcls: { defaultAction: 'Deny' }
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: { name: 'GlobalStandard', capacity: capacity }
  properties: {
    model: { format: 'OpenAI', name: modelName, version: modelVersion }
  }
}

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetId: account.id
    groupId: 'account'
    privateDnsZoneId: privateDnsZoneId
  }
}

output name string = account.name
output endpoint string = account.properties.endpoint
