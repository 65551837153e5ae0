// Azure Communication Services, which sends customers their e-mail and SMS:
// an Email Communication Service with an Azure-managed domain (a
// <guid>.azurecomm.net subdomain whose SPF and DKIM Azure sets up), a
// Communication Services resource linked to that domain, with access keys
// disabled so that only Entra ID tokens work, and a role for the app's
// identity on it. The code calls the data-plane REST API with that identity's
// token (shared/adapters/acs).
//
// SMS needs a phone number, which is bought, not declared: buy one for the
// resource after the first deployment and pass it as main.bicep's smsSender
// (docs/deploy.md).

@description('Name of the Communication Services resource (1-63 letters, digits and hyphens, globally unique: it is the host name).')
@minLength(1)
@maxLength(63)
param name string

@description('Name of the Email Communication Service.')
@minLength(1)
@maxLength(63)
param emailServiceName string

@description('Where both services keep their data at rest: a geography such as United States, Europe or UK.')
param dataLocation string = 'United States'

@description('Object (principal) ID of the identity the function app runs as.')
param principalId string

@description('Tags for every resource.')
param tags object = {}

// Sending e-mail and SMS with an Entra ID token is authorised by a role on the
// Communication Services resource (Microsoft asks for Contributor or a role with
// Microsoft.Communication/CommunicationServices/Read and Write and
// Microsoft.Communication/EmailServices/write); this built-in role carries those
// and nothing outside Communication Services.
var communicationServiceOwnerRoleId = '09976791-48a7-449e-bb21-39d1a415f350' // Communication and Email Service Owner

// Both services are global resources: their data stays in dataLocation.
resource emailService 'Microsoft.Communication/emailServices@2025-09-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

// An Azure-managed domain needs no DNS of ours; the sender becomes
// DoNotReply@<guid>.azurecomm.net (fromSenderDomain is the domain recipients
// see in From). A custom domain would be verified by DNS
// records first (docs/deploy.md).
resource managedDomain 'Microsoft.Communication/emailServices/domains@2025-09-01' = {
  parent: emailService
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    // No tracking pixels or rewritten links in a delivery notice; rewriting
    // would also break the unsubscribe link's token.
    userEngagementTracking: 'Disabled'
  }
}

// disableLocalAuth needs an API version from 2025 on
// (https://learn.microsoft.com/rest/api/communication/resourcemanager/communication-services/update?view=rest-communication-resourcemanager-2025-09-01);
// the three resources use the same one.
resource communication 'Microsoft.Communication/communicationServices@2025-09-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: [
      managedDomain.id
    ]
    disableLocalAuth: true
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communication.id, principalId, communicationServiceOwnerRoleId)
  scope: communication
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', communicationServiceOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Name of the Communication Services resource.')
output name string = communication.name

@description('Data-plane endpoint, for ACS_ENDPOINT.')
output endpoint string = 'https://${communication.properties.hostName}'

@description('Sender address in the managed domain, for ACS_EMAIL_SENDER.')
output emailSender string = 'DoNotReply@${managedDomain.properties.fromSenderDomain}'

@description('Name of the Email Communication Service.')
output emailServiceName string = emailService.name
