// The drone delivery backend in Azure: a Flex Consumption function app (the
// Go custom handler) running as one user-assigned identity, Service Bus queues
// that chain the steps, Cosmos DB for state, its own storage account,
// Application Insights, and Azure Communication Services for customer e-mail
// and SMS. Nothing holds a key or a connection secret: every service has local
// auth off and the identity is granted data roles instead.
//
// Deploy with `make deploy` (docs/deploy.md). infra/infra_test.go reads this
// file as text, so keep one setting per line in appSettings below.

targetScope = 'resourceGroup'

@description('Base name of every resource: 3-20 lowercase letters, digits and hyphens.')
@minLength(3)
@maxLength(20)
param name string = 'dronedelivery'

@description('Azure region; it must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Cosmos DB serverless (true: pay per request, nothing when idle) or provisioned autoscale.')
param cosmosServerless bool = true

@description('Autoscale maximum RU/s when cosmosServerless is false.')
@minValue(1000)
param cosmosProvisionedMaxThroughput int = 1000

@description('Cosmos DB database name; the code reads it from COSMOS_DATABASE.')
param databaseName string = 'dronedelivery'

@description('Most instances the function app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per function app instance in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('How long an unconsumed queue message lives before it is dead-lettered (ISO 8601).')
param messageTimeToLive string = 'P14D'

@description('Where Azure Communication Services (customer e-mail and SMS) keep data at rest, e.g. United States, Europe, UK.')
param communicationDataLocation string = 'United States'

@description('A phone number the Communication Services resource owns, in E.164 form, to send SMS from; empty until one is bought (docs/deploy.md): SMS are then kept in the outbox.')
param smsSender string = ''

@description('Web PubSub tier: Standard_S1 (1,000 connections a unit, billed per unit-day) or Free_F1 (20 connections, no charge; for trials).')
@allowed([
  'Free_F1'
  'Standard_S1'
])
param webPubSubSku string = 'Standard_S1'

@description('Tags for every resource.')
param tags object = {}

// The fleet endpoints' bearer key, the one secret of the deployment. It is a
// secure parameter, so ARM keeps it out of the deployment's history and
// outputs, and it goes into the app settings with everything else: the
// settings resource replaces the whole set, so a key set by a later command
// would be wiped by every redeploy (and the handler would then serve without
// its fleet endpoints). make deploy passes it from OPERATOR_KEY.
@secure()
@minLength(16)
@description('Bearer key of the fleet endpoints (drones, telemetry): at least 16 printable characters, e.g. openssl rand -hex 32. Pass the same one on every deployment; a new one rotates it.')
param operatorKey string

// Settings the template does not know, such as PUBLIC_BASE_URL or the
// OTEL_EXPORTER_OTLP_* settings (docs/deploy.md, "Settings of your own").
// The settings resource replaces the whole set, so a setting added by hand
// is wiped by the next deployment; given here, it is deployed every time.
// Secure because an OTLP header may carry a key. The template's own
// settings win over a setting of the same name here (see functionApp
// below), so this cannot replace the identity, the connections or the
// operator key by accident.
@secure()
@description('App settings to deploy beside the template\'s own, e.g. {"PUBLIC_BASE_URL": "https://drones.example.com"}; make deploy passes them from the file EXTRA_APP_SETTINGS names. A name the template sets itself keeps the template\'s value.')
param extraAppSettings object = {}

// The one list of queues and containers, shared with the Go code, which embeds
// the same file (shared/topology). The path is relative to this file.
var topology = loadJsonContent('../shared/topology/topology.json')

// Containers of topology.json that the code only point-reads, writes and
// deletes by id, never queries (docs/data-layout.md): the proof-of-delivery
// blobs, up to 256 KiB each, which an index would only make dearer to write.
// They get no index (modules/cosmos.bicep). infra/infra_test.go checks that
// every name here is a container of topology.json.
var unindexedContainers = ['confirmations']

// Globally unique names need a suffix; uniqueString is stable per resource
// group and name, so redeploying updates rather than duplicates.
var base = toLower(name)
var suffix = uniqueString(resourceGroup().id, base)
var identityName = 'id-${base}-${suffix}'
var logAnalyticsName = 'log-${base}-${suffix}'
var appInsightsName = 'appi-${base}-${suffix}'
var storageAccountName = 'st${take(replace(base, '-', ''), 9)}${suffix}'
var deploymentContainerName = 'app-package'
var serviceBusName = 'sb-${base}-${suffix}'
var cosmosAccountName = 'cosmos-${base}-${suffix}'
var planName = 'plan-${base}-${suffix}'
var functionAppName = 'func-${base}-${suffix}'
var communicationName = 'acs-${base}-${suffix}'
var emailServiceName = 'acs-email-${base}-${suffix}'
var webPubSubName = 'wps-${base}-${suffix}'

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: logAnalyticsName
    appInsightsName: appInsightsName
    location: location
    retentionInDays: logRetentionDays
    principalId: identity.outputs.principalId
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageAccountName
    location: location
    deploymentContainerName: deploymentContainerName
    principalId: identity.outputs.principalId
    tags: tags
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: serviceBusName
    location: location
    queues: topology.queues
    messageTimeToLive: messageTimeToLive
    principalId: identity.outputs.principalId
    tags: tags
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    name: cosmosAccountName
    location: location
    databaseName: databaseName
    containers: topology.containers
    unindexedContainers: unindexedContainers
    serverless: cosmosServerless
    provisionedMaxThroughput: cosmosProvisionedMaxThroughput
    principalId: identity.outputs.principalId
    tags: tags
  }
}

module communication 'modules/communication.bicep' = {
  name: 'communication'
  params: {
    name: communicationName
    emailServiceName: emailServiceName
    dataLocation: communicationDataLocation
    principalId: identity.outputs.principalId
    tags: tags
  }
}

module webPubSub 'modules/webpubsub.bicep' = {
  name: 'webpubsub'
  params: {
    name: webPubSubName
    location: location
    skuName: webPubSubSku
    principalId: identity.outputs.principalId
    tags: tags
  }
}

// Every setting the Functions host (the bindings' identity-based connections,
// AzureWebJobsStorage, Application Insights) and the Go code (shared/config)
// read, the operator key included. For each connection prefix: the endpoint, credential=managedidentity and
// the identity's client id, because a user-assigned identity must be named.
// No FUNCTIONS_WORKER_RUNTIME: Flex takes the runtime from functionAppConfig.
var appSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identity.outputs.clientId
  CosmosDBConnection__accountEndpoint: cosmos.outputs.endpoint
  CosmosDBConnection__credential: 'managedidentity'
  CosmosDBConnection__clientId: identity.outputs.clientId
  COSMOS_DATABASE: cosmos.outputs.databaseName
  ACS_ENDPOINT: communication.outputs.endpoint
  ACS_EMAIL_SENDER: communication.outputs.emailSender
  ACS_SMS_SENDER: smsSender
  ACS_CLIENT_ID: identity.outputs.clientId
  WEBPUBSUB_ENDPOINT: webPubSub.outputs.endpoint
  WEBPUBSUB_HUB: webPubSub.outputs.hubName
  WEBPUBSUB_CLIENT_ID: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  OPERATOR_KEY: operatorKey
}

// Taking module outputs as parameters makes this module wait for the others,
// role assignments included, so the app never starts without its permissions.
// union gives a key the value of the last object that has it
// (https://learn.microsoft.com/azure/azure-resource-manager/bicep/bicep-functions-object#union),
// so appSettings, last, wins over extraAppSettings.
module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    planName: planName
    name: functionAppName
    location: location
    identityId: identity.outputs.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appSettings: union(extraAppSettings, appSettings)
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    tags: tags
  }
}

@description('Base URL of the HTTP API (host.json routePrefix is api).')
output apiBaseUrl string = 'https://${functionApp.outputs.defaultHostName}/api'

@description('Name of the function app, which the publish step of make deploy targets.')
output functionAppName string = functionApp.outputs.name

@description('Name of the user-assigned identity the app runs as.')
output identityName string = identity.outputs.name

@description('Client ID of that identity (an identifier, not a secret).')
output identityClientId string = identity.outputs.clientId

@description('Name of the storage account (AzureWebJobsStorage and deployment packages).')
output storageAccountName string = storage.outputs.name

@description('Name of the blob container Flex Consumption deploys from.')
output deploymentContainerName string = storage.outputs.deploymentContainerName

@description('Name of the Service Bus namespace.')
output serviceBusNamespaceName string = serviceBus.outputs.name

@description('Host name of the Service Bus namespace, for ServiceBusConnection__fullyQualifiedNamespace.')
output serviceBusFullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace

@description('Name of the Cosmos DB account.')
output cosmosAccountName string = cosmos.outputs.name

@description('Endpoint of the Cosmos DB account, for CosmosDBConnection__accountEndpoint.')
output cosmosEndpoint string = cosmos.outputs.endpoint

@description('Name of the Cosmos DB database, for COSMOS_DATABASE.')
output cosmosDatabaseName string = cosmos.outputs.databaseName

@description('Name of the Communication Services resource that sends customer e-mail and SMS.')
output communicationServiceName string = communication.outputs.name

@description('The From address of customer e-mail (ACS_EMAIL_SENDER).')
output emailSenderAddress string = communication.outputs.emailSender

@description('Name of the Web PubSub resource that pushes to the tracking pages.')
output webPubSubName string = webPubSub.outputs.name

@description('Name of the Application Insights component.')
output appInsightsName string = monitoring.outputs.appInsightsName

@description('Name of the Log Analytics workspace.')
output logAnalyticsName string = monitoring.outputs.logAnalyticsName
