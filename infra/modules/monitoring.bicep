// Log Analytics and a workspace-based Application Insights that takes telemetry only from Entra
// identities (local auth off): the app identity publishes with Monitoring Metrics Publisher.
param logAnalyticsName string
param appInsightsName string
param location string
param tags object

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output logAnalyticsName string = workspace.name
output appInsightsName string = appInsights.name
// Not a secret: with local auth off it only names the resource; sending needs an Entra token.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
