// A user-assigned managed identity. The Function App uses one for everything (storage, Key Vault,
// Azure OpenAI, Application Insights, the Durable Task Scheduler); the Scheduler has its own.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
