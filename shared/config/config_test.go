package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/config"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string // a setting name the error must mention; "" for success
		check   func(t *testing.T, c *config.Config)
	}{
		{name: "nothing means embedded", env: map[string]string{}, check: func(t *testing.T, c *config.Config) {
			assert.False(t, c.Azure)
			assert.Equal(t, ".data", c.DataDir)
			assert.Equal(t, "dronedelivery", c.Database)
			assert.Equal(t, float64(config.DefaultConfirmationRadiusMeters), c.ConfirmationRadiusMeters)
		}},
		{name: "confirmation radius", env: map[string]string{"CONFIRMATION_RADIUS_M": " 250.5 "}, check: func(t *testing.T, c *config.Config) {
			assert.Equal(t, 250.5, c.ConfirmationRadiusMeters)
		}},
		{name: "webhooks refuse private targets by default", env: map[string]string{}, check: func(t *testing.T, c *config.Config) {
			assert.Equal(t, config.Webhooks{}, c.Webhooks)
		}},
		{name: "webhook settings", env: map[string]string{"WEBHOOK_ALLOW_PRIVATE": "TRUE", "WEBHOOK_TIMEOUT": "2m", "WEBHOOK_CONCURRENCY": "2",
			"WEBHOOK_SLOW_CONCURRENCY": "6", "WEBHOOK_BREAKER_FAILURES": "3", "WEBHOOK_BREAKER_COOLDOWN": "1s"}, check: func(t *testing.T, c *config.Config) {
			assert.Equal(t, config.Webhooks{AllowPrivate: true, Timeout: 2 * time.Minute, PerAccount: 2, SlowTotal: 6, FailuresToOpen: 3, CoolDown: time.Second}, c.Webhooks)
		}},
		{name: "webhook private setting not a boolean", env: map[string]string{"WEBHOOK_ALLOW_PRIVATE": "yes"}, wantErr: "WEBHOOK_ALLOW_PRIVATE"},
		{name: "webhook timeout not a duration", env: map[string]string{"WEBHOOK_TIMEOUT": "5"}, wantErr: "WEBHOOK_TIMEOUT"},
		{name: "webhook timeout too short", env: map[string]string{"WEBHOOK_TIMEOUT": "1ms"}, wantErr: "WEBHOOK_TIMEOUT"},
		{name: "webhook concurrency zero", env: map[string]string{"WEBHOOK_CONCURRENCY": "0"}, wantErr: "WEBHOOK_CONCURRENCY"},
		{name: "webhook slow concurrency not a number", env: map[string]string{"WEBHOOK_SLOW_CONCURRENCY": "half"}, wantErr: "WEBHOOK_SLOW_CONCURRENCY"},
		{name: "webhook breaker failures not a number", env: map[string]string{"WEBHOOK_BREAKER_FAILURES": "five"}, wantErr: "WEBHOOK_BREAKER_FAILURES"},
		{name: "webhook cool-down too long", env: map[string]string{"WEBHOOK_BREAKER_COOLDOWN": "2h"}, wantErr: "WEBHOOK_BREAKER_COOLDOWN"},
		{name: "confirmation radius not a number", env: map[string]string{"CONFIRMATION_RADIUS_M": "100m"}, wantErr: "CONFIRMATION_RADIUS_M"},
		{name: "confirmation radius zero", env: map[string]string{"CONFIRMATION_RADIUS_M": "0"}, wantErr: "CONFIRMATION_RADIUS_M"},
		{name: "confirmation radius too far", env: map[string]string{"CONFIRMATION_RADIUS_M": "20000"}, wantErr: "CONFIRMATION_RADIUS_M"},
		{name: "telemetry clock skew", env: map[string]string{"TELEMETRY_CLOCK_SKEW": " 2h "}, check: func(t *testing.T, c *config.Config) {
			assert.Equal(t, 2*time.Hour, c.TelemetryClockSkew)
		}},
		{name: "telemetry clock skew not a duration", env: map[string]string{"TELEMETRY_CLOCK_SKEW": "300"}, wantErr: "TELEMETRY_CLOCK_SKEW"},
		{name: "telemetry clock skew beyond a day", env: map[string]string{"TELEMETRY_CLOCK_SKEW": "25h"}, wantErr: "TELEMETRY_CLOCK_SKEW"},
		{name: "identity-based connections", env: map[string]string{
			"CosmosDBConnection__accountEndpoint":           "https://acct.documents.azure.com:443/",
			"ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
			"COSMOS_DATABASE":                               "db1",
		}, check: func(t *testing.T, c *config.Config) {
			assert.True(t, c.Azure)
			assert.Equal(t, "db1", c.Database)
			assert.False(t, c.Cosmos.ManagedIdentity)
			assert.Equal(t, "ns.servicebus.windows.net", c.ServiceBus.Endpoint)
		}},
		{name: "user-assigned identity", env: map[string]string{
			"CosmosDBConnection__accountEndpoint":           "https://acct.documents.azure.com:443/",
			"CosmosDBConnection__credential":                "managedidentity",
			"CosmosDBConnection__clientId":                  "11111111-2222-3333-4444-555555555555",
			"ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
			"ServiceBusConnection__clientId":                "11111111-2222-3333-4444-555555555555",
		}, check: func(t *testing.T, c *config.Config) {
			assert.True(t, c.Cosmos.ManagedIdentity)
			assert.Equal(t, "11111111-2222-3333-4444-555555555555", c.Cosmos.ClientID)
			assert.True(t, c.ServiceBus.ManagedIdentity, "a client id implies managed identity")
		}},
		{name: "connection strings for local doubles", env: map[string]string{
			"CosmosDBConnection":   "AccountEndpoint=http://127.0.0.1:8081/;AccountKey=a2V5;",
			"ServiceBusConnection": "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;",
		}, check: func(t *testing.T, c *config.Config) {
			assert.True(t, c.Azure)
			assert.NotEmpty(t, c.Cosmos.ConnectionString)
		}},
		{name: "cosmos without service bus", env: map[string]string{"CosmosDBConnection__accountEndpoint": "https://a.documents.azure.com/"}, wantErr: "ServiceBusConnection"},
		{name: "service bus without cosmos", env: map[string]string{"ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net"}, wantErr: "CosmosDBConnection"},
		{name: "both endpoint and connection string", env: map[string]string{
			"CosmosDBConnection__accountEndpoint": "https://a.documents.azure.com/",
			"CosmosDBConnection":                  "AccountEndpoint=http://x/;AccountKey=a2V5;",
		}, wantErr: "CosmosDBConnection__accountEndpoint"},
		{name: "unknown credential", env: map[string]string{
			"CosmosDBConnection__accountEndpoint":           "https://a.documents.azure.com/",
			"CosmosDBConnection__credential":                "password",
			"ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
		}, wantErr: "CosmosDBConnection__credential"},
		{name: "namespace given as URL", env: map[string]string{
			"CosmosDBConnection__accountEndpoint":           "https://a.documents.azure.com/",
			"ServiceBusConnection__fullyQualifiedNamespace": "https://ns.servicebus.windows.net/",
		}, wantErr: "ServiceBusConnection__fullyQualifiedNamespace"},
		{name: "endpoint not a URL", env: map[string]string{
			"CosmosDBConnection__accountEndpoint":           "acct",
			"ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
		}, wantErr: "CosmosDBConnection__accountEndpoint"},
		{name: "client id without endpoint", env: map[string]string{
			"ServiceBusConnection":           "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;",
			"ServiceBusConnection__clientId": "x",
			"CosmosDBConnection":             "AccountEndpoint=http://x/;AccountKey=a2V5;",
		}, wantErr: "ServiceBusConnection__fullyQualifiedNamespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(envOf(tc.env))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}
