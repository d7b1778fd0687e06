// The storage account: Functions host and Durable task hub (blob, queue, table), the deployment
// package container and the conversations container. No shared keys (identity only), TLS 1.2,
// no anonymous blob access, reachable only through private endpoints from the VNet.
param name string
param location string
param tags object
param containers array
@description('The conversations container: its request-keys/ and owner-schedules/ records are swept by the lifecycle policy.')
param conversationsContainer string
param privateEndpointSubnetId string
@description('Private DNS zone ids for blob, queue and table, in that order.')
param privateDnsZoneIds array

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  // Geo-zone-redundant: neither a zone nor a region outage loses conversations or Durable state.
  sku: { name: 'Standard_GZRS' }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobService
  name: container
  properties: { publicAccess: 'None' }
}]

// The app deletes these records itself when it next touches them; the ones never touched again
// are swept here. request-keys/: a key is void 24 h after its claim (agent/scheduling.py
// IDEMPOTENCY_WINDOW). owner-schedules/: an entry is void 2 days after its due time
// (storage/batches.py OWNER_SCHEDULE_GRACE), and the Scheduler takes due times up to 366 days
// ahead (samples/scheduler_mcp/validation.py MAX_AHEAD), so 400 days after the last write
// no entry can still be live.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expired-request-keys'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: ['${conversationsContainer}/request-keys/'] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: 2 } } }
          }
        }
        {
          name: 'void-owner-schedules'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: ['${conversationsContainer}/owner-schedules/'] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: 400 } } }
          }
        }
      ]
    }
  }
}

var endpoints = ['blob', 'queue', 'table']

module privateEndpoints 'private-endpoint.bicep' = [for (groupId, i) in endpoints: {
  name: 'pe-${name}-${groupId}'
  params: {
    name: 'pe-${name}-${groupId}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetId: account.id
    groupId: groupId
    privateDnsZoneId: privateDnsZoneIds[i]
  }
}]

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
