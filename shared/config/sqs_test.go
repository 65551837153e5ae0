package config_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/config"
)

func TestLoadSQS(t *testing.T) {
	t.Parallel()
	const cosmos = "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=a2V5;"
	cases := []struct {
		name    string
		env     map[string]string
		wantErr []string // setting names the error must mention; nil for success
		check   func(t *testing.T, c *config.Config)
	}{
		{name: "on AWS", env: map[string]string{"MESSAGE_BUS": "sqs", "CosmosDBConnection": cosmos, "AWS_REGION": "eu-west-1"},
			check: func(t *testing.T, c *config.Config) {
				assert.True(t, c.AWS)
				assert.False(t, c.Azure)
				assert.Equal(t, config.SQS{Region: "eu-west-1"}, c.SQS)
				assert.Equal(t, cosmos, c.Cosmos.ConnectionString)
			}},
		{name: "a local server", env: map[string]string{"MESSAGE_BUS": "SQS", "CosmosDBConnection": cosmos, "AWS_DEFAULT_REGION": "us-east-1",
			"SQS_ENDPOINT": "http://127.0.0.1:4100", "SQS_CREATE_QUEUES": "true", "SQS_QUEUE_PREFIX": "dev-"},
			check: func(t *testing.T, c *config.Config) {
				assert.True(t, c.AWS)
				assert.Equal(t, config.SQS{Region: "us-east-1", Endpoint: "http://127.0.0.1:4100", QueuePrefix: "dev-", CreateQueues: true}, c.SQS)
			}},
		{name: "bad prefix", env: map[string]string{"MESSAGE_BUS": "sqs", "CosmosDBConnection": cosmos, "AWS_REGION": "eu-west-1",
			"SQS_QUEUE_PREFIX": "my.stack"}, wantErr: []string{"SQS_QUEUE_PREFIX"}},
		{name: "prefix without the choice", env: map[string]string{"SQS_QUEUE_PREFIX": "dev-"}, wantErr: []string{"SQS_QUEUE_PREFIX", "MESSAGE_BUS"}},
		{name: "no cosmos", env: map[string]string{"MESSAGE_BUS": "sqs", "AWS_REGION": "eu-west-1"}, wantErr: []string{"CosmosDBConnection"}},
		{name: "cosmos by identity", env: map[string]string{"MESSAGE_BUS": "sqs", "AWS_REGION": "eu-west-1",
			"CosmosDBConnection__accountEndpoint": "https://acct.documents.azure.com:443/"}, wantErr: []string{"CosmosDBConnection", "connection string"}},
		{name: "no region", env: map[string]string{"MESSAGE_BUS": "sqs", "CosmosDBConnection": cosmos}, wantErr: []string{"AWS_REGION"}},
		{name: "and service bus", env: map[string]string{"MESSAGE_BUS": "sqs", "CosmosDBConnection": cosmos, "AWS_REGION": "eu-west-1",
			"ServiceBusConnection": "Endpoint=sb://x;SharedAccessKeyName=k;SharedAccessKey=v;"}, wantErr: []string{"MESSAGE_BUS", "ServiceBusConnection"}},
		{name: "another bus", env: map[string]string{"MESSAGE_BUS": "kafka"}, wantErr: []string{"MESSAGE_BUS"}},
		{name: "endpoint without the choice", env: map[string]string{"SQS_ENDPOINT": "http://127.0.0.1:4100"}, wantErr: []string{"SQS_ENDPOINT", "MESSAGE_BUS"}},
		{name: "bad endpoint", env: map[string]string{"MESSAGE_BUS": "sqs", "CosmosDBConnection": cosmos, "AWS_REGION": "eu-west-1",
			"SQS_ENDPOINT": "127.0.0.1:4100"}, wantErr: []string{"SQS_ENDPOINT"}},
		{name: "bad create flag", env: map[string]string{"SQS_CREATE_QUEUES": "yes"}, wantErr: []string{"SQS_CREATE_QUEUES"}},
		{name: "bad cosmos connection string", env: map[string]string{"MESSAGE_BUS": "sqs", "CosmosDBConnection": "AccountKey=a2V5;", "AWS_REGION": "eu-west-1"},
			wantErr: []string{"CosmosDBConnection"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(envOf(tc.env))
			if tc.wantErr != nil {
				require.Error(t, err)
				for _, s := range tc.wantErr {
					assert.Contains(t, err.Error(), s)
				}
				assert.Nil(t, c)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}
