// The Flex Consumption plan and the function app: Linux, the custom-handler
// runtime (the host starts the Go executable host.json names), running as the
// user-assigned identity, with its package in a blob container that the
// platform reads with that same identity.

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the function app (globally unique: it is the host name).')
param name string

@description('Azure region.')
param location string

@description('Resource ID of the user-assigned identity.')
param identityId string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

// Secure because it holds the operator key: a module's parameters are
// otherwise recorded in its deployment's history.
@secure()
@description('Every app setting, as main.bicep lists them.')
param appSettings object

@description('Most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per instance in MB; CPU is allotted in proportion.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Tags for every resource.')
param tags object = {}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // Flex takes the runtime here instead of FUNCTIONS_WORKER_RUNTIME, and
      // rejects that setting; 'custom' is the custom-handler stack.
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// One config resource holds every setting, so the settings are exactly those
// main.bicep lists (it replaces, not merges, what the site had).
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

@description('Name of the function app.')
output name string = site.name

@description('Default host name, <name>.azurewebsites.net or a regional variant.')
output defaultHostName string = site.properties.defaultHostName
