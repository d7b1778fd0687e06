// Optional Durable Functions backend: a Durable Task Scheduler (Consumption SKU) with the app's
// task hub. The app identity gets Durable Task Data Contributor on that hub only: the app is both
// the client (start, query, raise events, terminate) and the worker (orchestrators, activities).
param name string
param location string
param tags object
param taskHubName string
param principalId string

var durableTaskDataContributor = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: { name: 'Consumption' }
    // Required by the resource provider (an empty list denies everything). Flex Consumption has
    // no fixed egress IP without a NAT gateway; every caller still needs an Entra token and the
    // role below.
    ipAllowlist: ['0.0.0.0/0']
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

// Why: the app's Durable client and worker read and write this hub's orchestrations; scoped to the
// hub, not the scheduler, so another hub on it stays out of reach.
resource dataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, principalId, durableTaskDataContributor)
  scope: taskHub
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
  }
}

output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
