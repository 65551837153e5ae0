// The Service Bus namespace and one queue per entry of topology.json. Standard
// is the cheapest tier with duplicate detection, which the chain relies on:
// every message id is deliveryId:step, so a redelivered send is dropped by the
// broker before any step sees it.

@description('Name of the namespace (6-50 characters, globally unique).')
@minLength(6)
@maxLength(50)
param name string

@description('Azure region.')
param location string

@description('The queues of topology.json: name, maxDeliveryCount, lockDuration, duplicateDetectionHistoryTimeWindow.')
param queues array

@description('How long an unconsumed message lives before it is dead-lettered (ISO 8601).')
param messageTimeToLive string = 'P14D'

@description('Object (principal) ID of the identity the function app runs as.')
param principalId string

@description('Tags for every resource.')
param tags object = {}

// The steps both consume (trigger bindings) and publish (the azservicebus
// client in the handlers), so the identity gets both data roles. It also gets
// Data Owner, whose Manage right the scale controller needs to read a queue's
// length: without it GetQueueRuntimePropertiesAsync is refused and the
// extension falls back to incremental scaling
// (Azure/azure-sdk-for-net, sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/Listeners/ServiceBusMetricsProvider.cs,
// GetMessageCountAsync); the Functions docs list Data Receiver and Data
// Owner for a Service Bus trigger on an identity
// (learn.microsoft.com/azure/azure-functions/functions-reference#grant-permission-to-the-identity).
var serviceBusDataSenderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
var serviceBusDataReceiverRoleId = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
var serviceBusDataOwnerRoleId = '090c5cfd-751d-490a-894a-3ce6f1109419' // Azure Service Bus Data Owner

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

// requiresDuplicateDetection cannot be changed on an existing queue: turning it
// on later means deleting and recreating the queue.
resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [
  for q in queues: {
    parent: namespace
    name: q.name
    properties: {
      maxDeliveryCount: q.maxDeliveryCount
      lockDuration: q.lockDuration
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: q.duplicateDetectionHistoryTimeWindow
      deadLetteringOnMessageExpiration: true
      defaultMessageTimeToLive: messageTimeToLive
    }
  }
]

resource dataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, serviceBusDataSenderRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSenderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource dataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, serviceBusDataReceiverRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiverRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource dataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, serviceBusDataOwnerRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Name of the namespace.')
output name string = namespace.name

// serviceBusEndpoint reads https://<ns>.servicebus.windows.net:443/ and the
// setting wants the bare host name; taking it from the endpoint rather than
// appending .servicebus.windows.net keeps sovereign clouds right.
var endpointHostAndPort = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), '/')[0]

@description('Host name of the namespace, for ServiceBusConnection__fullyQualifiedNamespace.')
output fullyQualifiedNamespace string = split(endpointHostAndPort, ':')[0]
