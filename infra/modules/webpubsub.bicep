// Azure Web PubSub, which holds the tracking pages' WebSocket connections:
// a Functions instance cannot hold a long connection, so under the Functions
// host the app sends each change of a delivery to the service (its REST API,
// send to group) and the service pushes it to the pages watching it
// (shared/adapters/webpubsub). Access keys are disabled, so only Entra ID
// tokens work: the app's identity gets the role below, and the pages get
// client tokens the app asks the service for (generateToken), each good for
// its delivery's group alone.
// Resource format: https://learn.microsoft.com/azure/templates/microsoft.signalrservice/2023-02-01/webpubsub

@description('Name of the Web PubSub resource (3-63 letters, digits and hyphens, globally unique: it is the host name).')
@minLength(3)
@maxLength(63)
param name string

@description('Region of the resource.')
param location string

@description('The hub the tracking pages connect to (WEBPUBSUB_HUB).')
param hubName string = 'tracking'

@description('Pricing tier: Free_F1 (20 connections, for trials) or Standard_S1 (1,000 connections a unit).')
@allowed([
  'Free_F1'
  'Standard_S1'
])
param skuName string = 'Standard_S1'

@description('Units of Standard_S1 (1 for Free_F1).')
param capacity int = 1

@description('Object (principal) ID of the identity the function app runs as.')
param principalId string

@description('Tags for every resource.')
param tags object = {}

// Sending to groups and generating client tokens with an Entra ID token
// needs the data actions of this built-in role
// (https://learn.microsoft.com/azure/azure-web-pubsub/howto-generate-client-access-url).
var webPubSubServiceOwnerRoleId = '12cf5a90-567b-43ae-8102-96cf46c7d9b4' // Web PubSub Service Owner

resource webPubSub 'Microsoft.SignalRService/webPubSub@2023-02-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName == 'Free_F1' ? 'Free' : 'Standard'
    capacity: skuName == 'Free_F1' ? 1 : capacity
  }
  properties: {
    disableLocalAuth: true
    disableAadAuth: false
    publicNetworkAccess: 'Enabled'
  }
}

// Only clients holding a token connect; the app sends, they only receive.
resource hub 'Microsoft.SignalRService/webPubSub/hubs@2023-02-01' = {
  parent: webPubSub
  name: hubName
  properties: {
    anonymousConnectPolicy: 'deny'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webPubSub.id, principalId, webPubSubServiceOwnerRoleId)
  scope: webPubSub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', webPubSubServiceOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Name of the Web PubSub resource.')
output name string = webPubSub.name

@description('Data-plane endpoint, for WEBPUBSUB_ENDPOINT.')
output endpoint string = 'https://${webPubSub.properties.hostName}'

@description('The hub, for WEBPUBSUB_HUB.')
output hubName string = hub.name
