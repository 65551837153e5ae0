// The one user-assigned identity the function app runs as. It is created
// before everything else so that each resource module can grant it roles, and
// so that the app's first start already finds its permissions in place.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource ID, for the site identity and the deployment storage authentication.')
output id string = identity.id

@description('Client (application) ID, for the __clientId settings.')
output clientId string = identity.properties.clientId

@description('Object (principal) ID, for role assignments.')
output principalId string = identity.properties.principalId

@description('Name of the identity.')
output name string = identity.name
