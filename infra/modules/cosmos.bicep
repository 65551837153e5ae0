// The Cosmos DB account, the database and one container per entry of
// topology.json. Keys are disabled (disableLocalAuth), so the data plane
// accepts only Entra ID tokens, and a data-plane role cannot create containers:
// that is why every container is created here rather than by the code.

@description('Name of the account (3-44 lowercase letters, digits and hyphens, globally unique).')
@minLength(3)
@maxLength(44)
param name string

@description('Azure region.')
param location string

@description('Name of the SQL database the code reads from COSMOS_DATABASE.')
param databaseName string

@description('The containers of topology.json: name, partitionKey and an optional defaultTtl.')
param containers array

@description('Names of containers the code only ever reads by id, never queries: they are created with no index.')
param unindexedContainers array = []

@description('Serverless (pay per request, nothing when idle) or provisioned autoscale throughput.')
param serverless bool = true

@description('Autoscale maximum RU/s shared by the database when serverless is false.')
@minValue(1000)
param provisionedMaxThroughput int = 1000

@description('Object (principal) ID of the identity the function app runs as.')
param principalId string

@description('Tags for every resource.')
param tags object = {}

// Cosmos DB Built-in Data Contributor is a data-plane role: it is assigned with
// sqlRoleAssignments, not Microsoft.Authorization/roleAssignments.
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002' // Cosmos DB Built-in Data Contributor

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    // Strong: a step on one instance reads the delivery another instance
    // wrote just before queueing its message. Under Session consistency a
    // client outside the writer's session gets only Consistent Prefix and
    // can miss that write; Strong reads return the last committed write
    // (learn.microsoft.com/azure/cosmos-db/consistency-levels). It costs
    // about twice the RUs per read (quorum reads,
    // learn.microsoft.com/azure/cosmos-db/request-units) and needs a single
    // write region, which this account has.
    consistencyPolicy: {
      defaultConsistencyLevel: 'Strong'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: serverless ? [{ name: 'EnableServerless' }] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    // New accounts default to TLS 1.2 already; stated so that no later
    // change lowers it. The property exists from API version 2022-11-15
    // (https://learn.microsoft.com/azure/cosmos-db/self-serve-minimum-tls-enforcement).
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    // Serverless accounts refuse any throughput setting; a provisioned one
    // shares one autoscale budget across the containers.
    options: serverless ? {} : { autoscaleSettings: { maxThroughput: provisionedMaxThroughput } }
  }
}

// defaultTtl is left out (null) where topology.json declares none, so such a
// container keeps its items until they are deleted.
//
// An unindexed container has indexing mode none, which Microsoft describes
// for a container used as a key-value store whose items are read by id only
// (https://learn.microsoft.com/azure/cosmos-db/index-policy#indexing-mode):
// its writes pay for no index, so it is for point reads and writes only.
// The service refuses mode none while automatic indexing is on ("Indexing
// mode value cannot be 'none' when automatic indexing is specified as
// 'true'", quoted in Azure/azure-cosmos-table-dotnet issue 68), so automatic
// is false. Every other container keeps the default policy (null leaves it
// out).
var noIndex = {
  indexingMode: 'none'
  automatic: false
}

resource container 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for c in containers: {
    parent: database
    name: c.name
    properties: {
      resource: {
        id: c.name
        partitionKey: {
          paths: [c.partitionKey]
          kind: 'Hash'
          version: 2
        }
        defaultTtl: c.?defaultTtl
        indexingPolicy: contains(unindexedContainers, c.name) ? noIndex : null
      }
    }
  }
]

resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, principalId, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: principalId
    scope: account.id
  }
}

@description('Name of the account.')
output name string = account.name

@description('Account endpoint, for CosmosDBConnection__accountEndpoint.')
output endpoint string = account.properties.documentEndpoint

@description('Name of the database, for COSMOS_DATABASE.')
output databaseName string = database.name
