// Log Analytics workspace and a workspace-based Application Insights with
// local (instrumentation key) authentication disabled: telemetry is accepted
// only with an Entra ID token, which the host gets for the app's identity
// because APPLICATIONINSIGHTS_AUTHENTICATION_STRING names it.

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Azure region.')
param location string

@description('Days of log retention; the per-GB price includes up to 31.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Object (principal) ID of the identity that publishes telemetry.')
param principalId string

@description('Tags for every resource.')
param tags object = {}

// Monitoring Metrics Publisher: what an Entra ID caller needs to send telemetry
// to a component whose local auth is disabled.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    // The workspace's shared keys stay unusable too: Application Insights
    // writes to it without them, and nothing else here sends to it
    // (WorkspaceFeatures.disableLocalAuth, Azure/bicep-types-az,
    // generated/operationalinsights/microsoft.operationalinsights/2023-09-01/types.md).
    features: {
      disableLocalAuth: true
    }
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

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The connection string names the ingestion endpoint and the component; with
// local auth disabled it is an address, not a credential (ingestion also needs
// the identity's token), which is why it may sit in an app setting.
@description('Application Insights connection string (endpoint and component id; not a credential once local auth is off).')
output connectionString string = appInsights.properties.ConnectionString

@description('Name of the Application Insights component.')
output appInsightsName string = appInsights.name

@description('Name of the Log Analytics workspace.')
output logAnalyticsName string = workspace.name
